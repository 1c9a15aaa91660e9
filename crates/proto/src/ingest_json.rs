//! The JSON body of `POST /api/v1/metrics/ingest`, sent by Pulsewire's host agents, mapped to the
//! same [`Line`]s as line protocol so the store has one ingest path.
//!
//! A body is one object or an array of them:
//! `{"source":"host-1","timestamp":1700000000000,"tags":{"k":"v"},"metrics":{"cpu":75.5}}`.
//! Each object becomes one line, or one [`ObjectError`] naming its index, so one bad object does
//! not cost the others; only a body that is not JSON, or not an object or array, fails whole.
//! Names follow the line protocol rules ([`Line::validate`]) so every point can also be written
//! and read as line protocol. docs/ingest.md is the user-facing description.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::line::{FieldValue, Line, Precision};

/// The measurement of objects that do not name one.
pub const DEFAULT_MEASUREMENT: &str = "agent";

/// The unit of [`Line::timestamp`] in lines from this format: the JSON `timestamp` is Unix
/// milliseconds.
pub const JSON_INGEST_PRECISION: Precision = Precision::Ms;

/// Why one object of a body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("object {index}: {message}")]
pub struct ObjectError {
    /// 0-based position in the body's array (0 for a body that is a single object).
    pub index: usize,
    pub message: String,
}

/// Parses an ingest body: Err (one message) if it is not JSON or not an object or an array;
/// otherwise one result per object, in order. Timestamps are in [`JSON_INGEST_PRECISION`].
///
/// Every JSON number becomes [`FieldValue::Float`], whether written `75` or `75.5`: agents do not
/// say which numbers are integers, and a metric that reads 75 one minute and 75.5 the next must
/// not change type (the store refuses a field whose type changes).
pub fn parse_json_ingest(body: &[u8]) -> Result<Vec<Result<Line<'static>, ObjectError>>, String> {
    let raw: &RawValue = serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}"))?;
    let text = raw.get().trim_start();
    match text.as_bytes().first() {
        Some(b'{') => Ok(vec![
            parse_object(text).map_err(|message| ObjectError { index: 0, message }),
        ]),
        Some(b'[') => {
            let items: Vec<&RawValue> = serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
            Ok(items
                .into_iter()
                .enumerate()
                .map(|(index, item)| {
                    parse_object(item.get().trim_start()).map_err(|message| ObjectError { index, message })
                })
                .collect())
        }
        _ => Err(format!(
            "expected a JSON object or an array of objects, found {}",
            kind(text)
        )),
    }
}

/// The keys the format knows; others are ignored, so that agents may send more than this
/// version reads.
#[derive(Deserialize)]
struct AgentObject<'a> {
    source: Option<Value>,
    #[serde(rename = "serverId")]
    server_id: Option<Value>,
    timestamp: Option<Value>,
    measurement: Option<Value>,
    tags: Option<Value>,
    #[serde(borrow)]
    metrics: Option<&'a RawValue>,
}

fn parse_object(text: &str) -> Result<Line<'static>, String> {
    if !text.starts_with('{') {
        return Err(format!("expected an object, found {}", kind(text)));
    }
    let obj: AgentObject<'_> = serde_json::from_str(text).map_err(|e| format!("invalid object: {e}"))?;

    let source = match (obj.source, obj.server_id) {
        (Some(s), id) => {
            let s = source_text(s, "source")?;
            if let Some(id) = id {
                let id = source_text(id, "serverId")?;
                if id != s {
                    return Err(format!("source {s:?} and serverId {id:?} differ; send one of them"));
                }
            }
            s
        }
        (None, Some(id)) => source_text(id, "serverId")?,
        (None, None) => return Err("missing source (or serverId)".into()),
    };

    let measurement = match obj.measurement {
        None => DEFAULT_MEASUREMENT.to_owned(),
        Some(Value::String(m)) => m,
        Some(other) => return Err(format!("measurement must be a string, found {}", value_kind(&other))),
    };

    let mut tags: Vec<(Cow<'static, str>, Cow<'static, str>)> = Vec::new();
    match obj.tags {
        None => {}
        // serde_json's map is sorted by key, which is the order a line's tags must have.
        Some(Value::Object(map)) => {
            for (k, v) in map {
                let Value::String(v) = v else {
                    return Err(format!("tag {k:?} must be a string, found {}", value_kind(&v)));
                };
                if k == "source" {
                    if v != source {
                        return Err(format!("tag source {v:?} differs from source {source:?}"));
                    }
                    continue;
                }
                tags.push((Cow::Owned(k), Cow::Owned(v)));
            }
        }
        Some(other) => return Err(format!("tags must be an object, found {}", value_kind(&other))),
    }
    let at = tags.partition_point(|(k, _)| k.as_ref() < "source");
    tags.insert(at, (Cow::Borrowed("source"), Cow::Owned(source)));

    let Some(metrics) = obj.metrics else {
        return Err("missing metrics".into());
    };
    let metrics_text = metrics.get().trim_start();
    if !metrics_text.starts_with('{') {
        return Err(format!(
            "metrics must be an object of names to values, found {}",
            kind(metrics_text)
        ));
    }
    let Ordered(metrics) = serde_json::from_str(metrics_text).map_err(|e| format!("invalid metrics: {e}"))?;
    if metrics.is_empty() {
        return Err("metrics must not be empty".into());
    }
    let mut fields: Vec<(Cow<'static, str>, FieldValue<'static>)> = Vec::with_capacity(metrics.len());
    for (k, v) in metrics {
        if k == "time" {
            return Err("metric name \"time\" is reserved".into());
        }
        let value = match v {
            Value::Number(n) => match n.as_f64() {
                Some(f) if f.is_finite() => FieldValue::Float(f),
                _ => return Err(format!("metric {k:?} is not a finite number")),
            },
            Value::Bool(b) => FieldValue::Bool(b),
            Value::String(s) => FieldValue::Str(Cow::Owned(s)),
            other => {
                return Err(format!(
                    "metric {k:?} must be a number, boolean or string, found {}",
                    value_kind(&other)
                ));
            }
        };
        // A repeated name keeps the last value, as in line protocol.
        match fields.iter_mut().find(|(name, _)| *name == k) {
            Some(slot) => slot.1 = value,
            None => fields.push((Cow::Owned(k), value)),
        }
    }

    let timestamp = match obj.timestamp {
        None => None,
        Some(v) => Some(timestamp_ms(&v)?),
    };

    let line = Line {
        measurement: Cow::Owned(measurement),
        tags,
        fields,
        timestamp,
    };
    line.validate()?;
    Ok(line)
}

/// `source` or `serverId` as text: a non-empty string, or for `serverId` also a number.
fn source_text(v: Value, name: &str) -> Result<String, String> {
    match v {
        Value::String(s) if !s.is_empty() => Ok(s),
        Value::Number(n) if name == "serverId" => Ok(n.to_string()),
        other => Err(format!(
            "{name} must be a non-empty string{}, found {}",
            if name == "serverId" { " or a number" } else { "" },
            value_kind(&other)
        )),
    }
}

fn timestamp_ms(v: &Value) -> Result<i64, String> {
    let ms = match v {
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Some(i),
            // Some agents send whole milliseconds as floats (1.7e12); a fraction is a mistake.
            (None, Some(f)) if f.fract() == 0.0 && (-9.2e18..=9.2e18).contains(&f) => Some(f as i64),
            _ => None,
        },
        _ => None,
    };
    let Some(ms) = ms else {
        return Err(format!(
            "timestamp must be an integer number of milliseconds since the Unix epoch, found {v}"
        ));
    };
    if JSON_INGEST_PRECISION.to_nanos(ms).is_none() {
        return Err(format!(
            "timestamp {ms} ms is outside the storable range (1677-09-21 to 2262-04-11)"
        ));
    }
    Ok(ms)
}

fn kind(text: &str) -> &'static str {
    match text.as_bytes().first() {
        Some(b'{') => "an object",
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        Some(_) => "a number",
        None => "nothing",
    }
}

fn value_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// An object's entries in the order written (serde_json's map would sort them), so that fields
/// keep the agent's order as they do in line protocol.
struct Ordered(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for Ordered {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Ordered;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Ordered, A::Error> {
                let mut out = Vec::with_capacity(map.size_hint().unwrap_or(0));
                while let Some(entry) = map.next_entry::<String, Value>()? {
                    out.push(entry);
                }
                Ok(Ordered(out))
            }
        }
        d.deserialize_map(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(body: &str) -> Result<Line<'static>, String> {
        let mut all = parse_json_ingest(body.as_bytes())?;
        assert_eq!(all.len(), 1, "{body}");
        all.remove(0).map_err(|e| {
            assert_eq!(e.index, 0);
            e.message
        })
    }

    fn tags(line: &Line<'_>) -> Vec<(String, String)> {
        line.tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn fields(line: &Line<'_>) -> Vec<(String, FieldValue<'static>)> {
        line.fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone().into_owned()))
            .collect()
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn valid_objects() {
        use FieldValue::{Bool, Float, Str};
        // (body, measurement, tags, fields, timestamp)
        type Case = (
            &'static str,
            &'static str,
            &'static [(&'static str, &'static str)],
            Vec<(&'static str, FieldValue<'static>)>,
            Option<i64>,
        );
        let cases: Vec<Case> = vec![
            (
                r#"{"source":"host-1","timestamp":1700000000000,"tags":{"k":"v"},"metrics":{"cpu":75.5,"memory":82.3}}"#,
                "agent",
                &[("k", "v"), ("source", "host-1")],
                vec![("cpu", Float(75.5)), ("memory", Float(82.3))],
                Some(1_700_000_000_000),
            ),
            // Integers are floats too; metrics keep the order written.
            (
                r#"{"source":"h","metrics":{"zeta":75,"alpha":-1,"big":18446744073709551615}}"#,
                "agent",
                &[("source", "h")],
                vec![
                    ("zeta", Float(75.0)),
                    ("alpha", Float(-1.0)),
                    ("big", Float(18446744073709551615.0)),
                ],
                None,
            ),
            (
                r#"{"serverId":42,"measurement":"host","metrics":{"up":true,"state":"ok \"fine\"\n"}}"#,
                "host",
                &[("source", "42")],
                vec![("up", Bool(true)), ("state", Str("ok \"fine\"\n".into()))],
                None,
            ),
            (
                r#"{"serverId":"srv-7","metrics":{"a":1}}"#,
                "agent",
                &[("source", "srv-7")],
                vec![("a", Float(1.0))],
                None,
            ),
            // source and serverId may both be given if they agree; so may a source tag.
            (
                r#"{"source":"7","serverId":7,"tags":{"source":"7","zone":"a b,c=d"},"metrics":{"a":1}}"#,
                "agent",
                &[("source", "7"), ("zone", "a b,c=d")],
                vec![("a", Float(1.0))],
                None,
            ),
            // Tags sort around source; unknown keys are ignored; null means absent.
            (
                r#"{"source":"h","tags":{"z":"1","a":"2"},"extra":[1,2],"timestamp":null,"metrics":{"a":1,"a":2}}"#,
                "agent",
                &[("a", "2"), ("source", "h"), ("z", "1")],
                vec![("a", Float(2.0))],
                None,
            ),
            (
                r#"{"source":"h","timestamp":1.7e12,"metrics":{"a":0.5}}"#,
                "agent",
                &[("source", "h")],
                vec![("a", Float(0.5))],
                Some(1_700_000_000_000),
            ),
            (
                r#"{"source":"h","timestamp":-5,"metrics":{"a":0.5}}"#,
                "agent",
                &[("source", "h")],
                vec![("a", Float(0.5))],
                Some(-5),
            ),
            (
                r#"  {"source":"h","metrics":{"é ü":1}}  "#,
                "agent",
                &[("source", "h")],
                vec![("é ü", Float(1.0))],
                None,
            ),
        ];
        for (body, m, t, f, ts) in cases {
            let line = one(body).unwrap_or_else(|e| panic!("{body}: {e}"));
            assert_eq!(line.measurement, m, "{body}");
            assert_eq!(tags(&line), pairs(t), "{body}");
            let want: Vec<(String, FieldValue<'static>)> = f.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
            assert_eq!(fields(&line), want, "{body}");
            assert_eq!(line.timestamp, ts, "{body}");
        }
    }

    #[test]
    fn invalid_objects() {
        let cases = [
            (r#"{"metrics":{"a":1}}"#, "missing source"),
            (
                r#"{"source":"","metrics":{"a":1}}"#,
                "source must be a non-empty string, found a string",
            ),
            (
                r#"{"source":5,"metrics":{"a":1}}"#,
                "source must be a non-empty string, found a number",
            ),
            (
                r#"{"serverId":true,"metrics":{"a":1}}"#,
                "serverId must be a non-empty string or a number",
            ),
            (r#"{"source":"a","serverId":"b","metrics":{"a":1}}"#, "differ"),
            (
                r#"{"source":"a","tags":{"source":"b"},"metrics":{"a":1}}"#,
                "tag source \"b\" differs",
            ),
            (r#"{"source":"a"}"#, "missing metrics"),
            (r#"{"source":"a","metrics":{}}"#, "metrics must not be empty"),
            (
                r#"{"source":"a","metrics":[1]}"#,
                "metrics must be an object of names to values, found an array",
            ),
            (
                r#"{"source":"a","metrics":{"x":null}}"#,
                "metric \"x\" must be a number, boolean or string, found null",
            ),
            (r#"{"source":"a","metrics":{"x":{"y":1}}}"#, "found an object"),
            (r#"{"source":"a","metrics":{"x":[1]}}"#, "found an array"),
            (
                r#"{"source":"a","metrics":{"time":1}}"#,
                "metric name \"time\" is reserved",
            ),
            (r#"{"source":"a","metrics":{"":1}}"#, "field key must not be empty"),
            (r#"{"source":"a","metrics":{"a\\":1}}"#, "ends with a backslash"),
            (r#"{"source":"a","metrics":{"a\tb":1}}"#, "control character U+0009"),
            (
                r#"{"source":"a","tags":{"k":1},"metrics":{"a":1}}"#,
                "tag \"k\" must be a string, found a number",
            ),
            (
                r#"{"source":"a","tags":{"k":""},"metrics":{"a":1}}"#,
                "tag value must not be empty",
            ),
            (
                r#"{"source":"a","tags":{"":"v"},"metrics":{"a":1}}"#,
                "tag key must not be empty",
            ),
            (
                r#"{"source":"a","tags":{"time":"v"},"metrics":{"a":1}}"#,
                "tag key \"time\" is not allowed",
            ),
            (
                r#"{"source":"a","tags":[],"metrics":{"a":1}}"#,
                "tags must be an object, found an array",
            ),
            (
                r#"{"source":"a","measurement":"","metrics":{"a":1}}"#,
                "measurement must not be empty",
            ),
            (
                r##"{"source":"a","measurement":"#m","metrics":{"a":1}}"##,
                "reads as a comment",
            ),
            (
                r#"{"source":"a","measurement":3,"metrics":{"a":1}}"#,
                "measurement must be a string, found a number",
            ),
            (
                r#"{"source":"a","timestamp":"1","metrics":{"a":1}}"#,
                "timestamp must be an integer number of milliseconds",
            ),
            (
                r#"{"source":"a","timestamp":1.5,"metrics":{"a":1}}"#,
                "timestamp must be an integer",
            ),
            (
                r#"{"source":"a","timestamp":9223372036854775807,"metrics":{"a":1}}"#,
                "outside the storable range",
            ),
            (
                r#"{"source":"a","timestamp":18446744073709551615,"metrics":{"a":1}}"#,
                "timestamp must be an integer",
            ),
            (
                r#"{"source":"a","timestamp":1e300,"metrics":{"a":1}}"#,
                "timestamp must be an integer",
            ),
        ];
        for (body, want) in cases {
            match one(body) {
                Ok(line) => panic!("{body} parsed as {line:?}"),
                Err(e) => assert!(e.contains(want), "{body}: {e:?} does not contain {want:?}"),
            }
        }
    }

    #[test]
    fn arrays_report_errors_per_object() {
        let body =
            br#"[{"source":"a","metrics":{"x":1}}, 5, {"metrics":{"x":1}}, {"source":"b","metrics":{"y":false}}]"#;
        let all = parse_json_ingest(body).expect("a JSON array");
        assert_eq!(all.len(), 4);
        assert!(all[0].is_ok());
        assert_eq!(
            all[1],
            Err(ObjectError {
                index: 1,
                message: "expected an object, found a number".into()
            })
        );
        assert_eq!(
            all[2].as_ref().map_err(|e| (e.index, e.message.as_str())),
            Err((2, "missing source (or serverId)"))
        );
        assert_eq!(
            all[3].as_ref().map(|l| l.fields.clone()),
            Ok(vec![(Cow::Borrowed("y"), FieldValue::Bool(false))])
        );
        assert_eq!(parse_json_ingest(b"[]"), Ok(vec![]));
    }

    #[test]
    fn whole_body_errors() {
        for (body, want) in [
            (&b"not json"[..], "invalid JSON"),
            (b"", "invalid JSON"),
            (b"{\"source\":", "invalid JSON"),
            (b"[1,", "invalid JSON"),
            (b"42", "expected a JSON object or an array of objects, found a number"),
            (b"\"x\"", "found a string"),
            (b"null", "found null"),
            (b"\xff", "invalid JSON"),
        ] {
            match parse_json_ingest(body) {
                Ok(v) => panic!("{body:?} parsed as {v:?}"),
                Err(e) => assert!(e.contains(want), "{body:?}: {e:?} does not contain {want:?}"),
            }
        }
    }

    #[test]
    fn lines_round_trip_through_line_protocol() {
        let body = br#"[{"source":"h 1,x=y","measurement":"m,n o","tags":{"a=b":"c d"},"metrics":{"s":"q\"\\ \n","f":1.25,"b":true}}]"#;
        let line = parse_json_ingest(body).expect("JSON").remove(0).expect("valid");
        let mut text = String::new();
        crate::write_line(&line, &mut text);
        let back = crate::parse_lines(text.as_bytes())
            .next()
            .expect("a line")
            .expect("parses");
        assert_eq!(back, line, "{text}");
    }
}
