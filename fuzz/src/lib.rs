//! The properties the fuzz targets check, one function per parser. Each runs the parser on
//! arbitrary bytes and panics (which libFuzzer reports as a crash, with the input saved under
//! `fuzz/artifacts/<target>/`) if the parser panics or breaks one of its documented promises.

use std::collections::HashSet;
use std::fmt;

use pulsewire_proto::{
    Agg, ClientCommand, ErrorCode, FieldValue, JSON_INGEST_PRECISION, Line, LineError, MAX_SELECTOR_LEN, MAX_STEP_MS,
    MatchOp, Precision, decode_command, parse_duration, parse_json_ingest, parse_lines, parse_selector, parse_step,
    parse_time, write_line,
};
use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// A WebSocket text frame (always UTF-8: the transport refuses anything else before decoding).
///
/// - Errors carry one of the codes the decoder documents (`bad_json`, `unknown_type`,
///   `bad_request`), `bad_json` exactly when the frame is not JSON, and an `id` only if the
///   frame's own `id` is that number.
/// - A decoded command's `id` is the frame's, and `publish` data is the frame's `data` value.
/// - The decoder depends on the JSON value, not its spelling: a frame and its canonical
///   re-serialization (no whitespace, no escapes that are not needed) decode alike. Frames with
///   a repeated key anywhere are left out, as the canonical form keeps only one of them.
pub fn client_frame(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let decoded = decode_command(text);
    // The JSON grammar; serde_json's `Value` also refuses numbers beyond f64 (1e999), so it is
    // only used for the checks it can make.
    let is_json = serde_json::from_str::<IgnoredAny>(text).is_ok();
    let value: Option<Value> = serde_json::from_str(text).ok();
    match &decoded {
        Ok(cmd) => {
            assert!(is_json, "{text:?} decoded as {cmd:?} but is not JSON");
            if let Some(v) = &value {
                assert_eq!(command_id(cmd), v.get("id").and_then(Value::as_u64), "{text:?}");
                if let ClientCommand::Publish { data, .. } = cmd {
                    let data: Value = serde_json::from_slice(data).expect("publish data is JSON");
                    assert!(v.get("data").is_some_and(|d| close(d, &data)), "{text:?}");
                }
            }
        }
        Err(e) => {
            assert!(
                matches!(
                    e.code,
                    ErrorCode::BadJson | ErrorCode::UnknownType | ErrorCode::BadRequest
                ),
                "{text:?}: unexpected code {:?}",
                e.code
            );
            assert!(!e.message.is_empty(), "{text:?}");
            assert_eq!(
                e.code == ErrorCode::BadJson,
                !is_json,
                "{text:?}: {:?} {}",
                e.code,
                e.message
            );
            if let (Some(id), Some(v)) = (e.id, &value) {
                assert_eq!(v.get("id").and_then(Value::as_u64), Some(id), "{text:?}");
            }
        }
    }
    let Some(v) = value else { return };
    if serde_json::from_str::<NoRepeatedKeys>(text).is_err() {
        return;
    }
    let canonical = v.to_string();
    let again = decode_command(&canonical);
    match (&decoded, &again) {
        (Ok(a), Ok(b)) => assert!(
            same_command(a, b),
            "{text:?} decoded as {a:?}, its canonical form {canonical:?} as {b:?}"
        ),
        (Err(a), Err(b)) => assert_eq!(
            (a.id, a.code),
            (b.id, b.code),
            "{text:?} ({}) and its canonical form {canonical:?} ({}) fail differently",
            a.message,
            b.message
        ),
        _ => panic!("{text:?} gave {decoded:?}, its canonical form {canonical:?} gave {again:?}"),
    }
}

fn command_id(cmd: &ClientCommand) -> Option<u64> {
    match cmd {
        ClientCommand::Subscribe { id, .. }
        | ClientCommand::Unsubscribe { id, .. }
        | ClientCommand::Publish { id, .. }
        | ClientCommand::History { id, .. }
        | ClientCommand::Ping { id }
        | ClientCommand::Connect { id, .. }
        | ClientCommand::Refresh { id, .. }
        | ClientCommand::Presence { id, .. } => *id,
    }
}

/// Equal, except that `publish` data is compared as JSON values (its spelling is kept as sent).
fn same_command(a: &ClientCommand, b: &ClientCommand) -> bool {
    match (a, b) {
        (
            ClientCommand::Publish {
                id,
                channel,
                data,
                priority,
            },
            ClientCommand::Publish {
                id: id2,
                channel: channel2,
                data: data2,
                priority: priority2,
            },
        ) => {
            let json = |d: &[u8]| serde_json::from_slice::<Value>(d).ok();
            (id, channel, priority) == (id2, channel2, priority2)
                && match (json(data), json(data2)) {
                    (Some(x), Some(y)) => close(&x, &y),
                    (x, y) => x.is_none() && y.is_none(),
                }
        }
        _ => a == b,
    }
}

/// Equal JSON values, numbers within a relative 1e-15: serde_json (without its
/// `float_roundtrip` feature) may read a long number and its shortest rewrite one unit in the
/// last place apart.
fn close(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => x == y || (x - y).abs() <= 1e-15 * x.abs().max(y.abs()),
            _ => x == y,
        },
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| close(x, y)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| close(v, w)))
        }
        _ => a == b,
    }
}

/// Deserializes any JSON value, failing if an object anywhere in it repeats a key.
struct NoRepeatedKeys;

impl<'de> Deserialize<'de> for NoRepeatedKeys {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NoRepeatedKeysVisitor)
    }
}

struct NoRepeatedKeysVisitor;

impl<'de> Visitor<'de> for NoRepeatedKeysVisitor {
    type Value = NoRepeatedKeys;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<NoRepeatedKeys, E> {
        Ok(NoRepeatedKeys)
    }
    fn visit_i64<E>(self, _: i64) -> Result<NoRepeatedKeys, E> {
        Ok(NoRepeatedKeys)
    }
    fn visit_u64<E>(self, _: u64) -> Result<NoRepeatedKeys, E> {
        Ok(NoRepeatedKeys)
    }
    fn visit_f64<E>(self, _: f64) -> Result<NoRepeatedKeys, E> {
        Ok(NoRepeatedKeys)
    }
    fn visit_str<E>(self, _: &str) -> Result<NoRepeatedKeys, E> {
        Ok(NoRepeatedKeys)
    }
    fn visit_unit<E>(self) -> Result<NoRepeatedKeys, E> {
        Ok(NoRepeatedKeys)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<NoRepeatedKeys, A::Error> {
        while seq.next_element::<NoRepeatedKeys>()?.is_some() {}
        Ok(NoRepeatedKeys)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NoRepeatedKeys, A::Error> {
        let mut keys = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !keys.insert(key) {
                return Err(de::Error::custom("repeated key"));
            }
            map.next_value::<NoRepeatedKeys>()?;
        }
        Ok(NoRepeatedKeys)
    }
}

/// A line protocol body. The first byte picks the precision check (or none), the rest is the body.
///
/// - `next` and `next_into` agree.
/// - Entries tile the body: each starts where the previous one ended, past blank and comment
///   lines only, and `last_entry` gives its line number and its exact length in bytes (the
///   server's `ingest.max_line_bytes` check uses that length, so a line can only be accepted if
///   all of its bytes were counted). An entry ends with a newline or at the end of the body.
/// - An entry parsed on its own (from the start of its line) gives the same line, or an error:
///   the same one, numbered from 1, unless it was found in a string that went on past the entry.
/// - An error's line number is the entry's last physical line.
/// - An accepted line passes `Line::validate`, its timestamp converts in the precision, and its
///   canonical text (`write_line`) parses back to the same line.
pub fn line_protocol(data: &[u8]) {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let precision = [
        Precision::Ns,
        Precision::Us,
        Precision::Ms,
        Precision::S,
        Precision::M,
        Precision::H,
    ]
    .get(usize::from(pick % 8))
    .copied();
    let parser = |b| {
        let it = parse_lines(b);
        match precision {
            Some(p) => it.with_precision(p),
            None => it,
        }
    };
    let mut iter = parser(body);
    let mut reusing = parser(body);
    let mut reused = Line::default();
    let mut end = 0;
    let mut previous_line = 0;
    while let Some(item) = iter.next() {
        let again = reusing.next_into(&mut reused).expect("next_into ends with next");
        match (&item, &again) {
            (Ok(line), Ok(())) => assert_eq!(line, &reused, "next and next_into differ"),
            (Err(a), Err(b)) => assert_eq!(a, b, "next and next_into differ"),
            _ => panic!("next gave {item:?}, next_into {again:?}"),
        }
        assert_eq!(iter.last_entry(), reusing.last_entry());

        let start = next_entry(body, end).expect("an entry where only blank and comment lines were expected");
        let (first, len) = iter.last_entry();
        assert!(len > 0 && start + len <= body.len(), "entry at {start} of length {len}");
        end = start + len;
        let entry = &body[start..end];
        assert!(
            end == body.len() || entry.ends_with(b"\n"),
            "entry {:?} does not end at a line end",
            String::from_utf8_lossy(entry)
        );
        assert_eq!(first, line_of(body, start), "line number of the entry at {start}");
        assert!(first > previous_line);
        previous_line = first;

        // From the start of its physical line, so that columns count the same.
        let line_start = body[..start].iter().rposition(|&c| c == b'\n').map_or(0, |k| k + 1);
        let mut alone = parser(&body[line_start..end]);
        let single = alone.next().expect("the entry alone has an entry");
        assert!(alone.next().is_none(), "the entry alone has more than one entry");
        match (&item, &single) {
            (Ok(line), Ok(single)) => assert_eq!(line, single),
            // Alone, a string that the body closed on a later line (and found invalid UTF-8
            // in) is cut at the entry's end; any other error is the same.
            (Err(_), Err(s)) if s.message.starts_with("unterminated string") => {}
            (Err(e), Err(s)) => {
                assert_eq!(e.message, s.message);
                assert_eq!(e.line, s.line + first - 1);
            }
            _ => panic!(
                "{:?}: {item:?} in the body, {single:?} alone",
                String::from_utf8_lossy(entry)
            ),
        }

        match item {
            Ok(line) => check_line(&line, precision),
            Err(LineError { line, message }) => {
                let last = if entry.ends_with(b"\n") { end - 1 } else { end };
                assert_eq!(line, line_of(body, last), "error line of {message:?}");
                assert!(message.contains(" at column "), "{message:?}");
            }
        }
    }
    assert!(
        reusing.next_into(&mut reused).is_none(),
        "next_into goes on after next ended"
    );
    assert!(next_entry(body, end).is_none(), "an entry after the last one");
}

/// Where the next entry starts at or after `pos`, skipping what the parser skips: spaces and
/// tabs, empty lines (`\n` or `\r\n`) and comment lines; None if only those remain.
fn next_entry(b: &[u8], mut pos: usize) -> Option<usize> {
    loop {
        while pos < b.len() && matches!(b[pos], b' ' | b'\t') {
            pos += 1;
        }
        match b.get(pos)? {
            b'\n' => pos += 1,
            b'\r' if matches!(b.get(pos + 1), None | Some(b'\n')) => pos += 2,
            b'#' => pos += b[pos..].iter().position(|&c| c == b'\n')? + 1,
            _ => return Some(pos),
        }
    }
}

/// The 1-based physical line holding byte `pos`.
fn line_of(b: &[u8], pos: usize) -> usize {
    1 + b[..pos].iter().filter(|&&c| c == b'\n').count()
}

fn check_line(line: &Line<'_>, precision: Option<Precision>) {
    if let Err(e) = line.validate() {
        panic!("accepted {line:?}, which is not valid: {e}");
    }
    if let (Some(p), Some(ts)) = (precision, line.timestamp) {
        assert!(p.to_nanos(ts).is_some(), "timestamp {ts} {p} accepted but not storable");
    }
    let mut text = String::new();
    write_line(line, &mut text);
    let mut back = parse_lines(text.as_bytes());
    match back.next() {
        Some(Ok(parsed)) => {
            assert_eq!(&parsed, line, "{text:?} does not parse back to the line");
            for ((_, a), (_, b)) in parsed.fields.iter().zip(&line.fields) {
                if let (FieldValue::Float(a), FieldValue::Float(b)) = (a, b) {
                    assert_eq!(a.to_bits(), b.to_bits(), "{text:?}: sign or rounding");
                }
            }
        }
        other => panic!("{line:?} written as {text:?} parses as {other:?}"),
    }
    assert!(back.next().is_none(), "{text:?} is more than one line");
}

/// A body of `POST /api/v1/metrics/ingest`.
///
/// - A body refused whole is not an object or an array of them.
/// - Otherwise there is one result per object, errors name their own index, and each accepted
///   object is a valid line with the `source` tag, a storable millisecond timestamp, and a
///   canonical line protocol text that parses back to it.
pub fn json_ingest(data: &[u8]) {
    // The JSON grammar, without serde_json's `Value` limits (a number such as 1e999999 is JSON,
    // and refused per object, not for the whole body;
    // and is UTF-8, which `IgnoredAny` does not check inside strings).
    let is_json = std::str::from_utf8(data).is_ok() && serde_json::from_slice::<IgnoredAny>(data).is_ok();
    let first = data.iter().find(|b| !b.is_ascii_whitespace()).copied();
    match parse_json_ingest(data) {
        Err(message) => {
            assert!(!message.is_empty());
            assert!(
                !is_json || !matches!(first, Some(b'{' | b'[')),
                "{:?} refused whole: {message}",
                String::from_utf8_lossy(data)
            );
        }
        Ok(results) => {
            assert!(is_json, "{:?} accepted but is not JSON", String::from_utf8_lossy(data));
            let objects = match first {
                Some(b'[') => serde_json::from_slice::<Vec<IgnoredAny>>(data).expect("an array").len(),
                Some(b'{') => 1,
                _ => panic!("accepted {:?}", String::from_utf8_lossy(data)),
            };
            assert_eq!(results.len(), objects);
            for (index, result) in results.iter().enumerate() {
                match result {
                    Ok(line) => {
                        assert!(
                            line.tags.iter().any(|(k, _)| k == "source"),
                            "{line:?} has no source tag"
                        );
                        check_line(line, Some(JSON_INGEST_PRECISION));
                    }
                    Err(e) => {
                        assert_eq!(e.index, index);
                        assert!(!e.message.is_empty());
                    }
                }
            }
        }
    }
}

/// A selector (`q`), and the same text as the other query parameters.
///
/// - A parsed selector's `Display` parses back to the same selector, is its own `Display`, and
///   is no longer than the input (so a selector within the length limit is shown within it).
/// - Regex matchers carry their compiled regex; errors are the `q` parameter's and point at a
///   column inside the selector (or just after it).
/// - Accepted steps and durations are positive, steps at most `MAX_STEP_MS`; an accepted
///   aggregation's name parses back to it.
pub fn selector(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    match parse_selector(s) {
        Ok(sel) => {
            assert!(s.len() <= MAX_SELECTOR_LEN);
            for m in &sel.matchers {
                let regex_op = matches!(m.op, MatchOp::Re | MatchOp::NotRe);
                assert_eq!(m.regex.is_some(), regex_op, "{m:?}");
            }
            let text = sel.to_string();
            assert!(
                text.len() <= s.len(),
                "{s:?} shown as the longer {text:?}, which could be over MAX_SELECTOR_LEN"
            );
            match parse_selector(&text) {
                Ok(back) => {
                    assert_eq!(back, sel, "{s:?} shown as {text:?}");
                    assert_eq!(back.to_string(), text);
                }
                Err(e) => panic!("{s:?} parsed as {sel:?}, shown as {text:?}, which does not parse: {e}"),
            }
        }
        Err(e) => {
            assert_eq!(e.param, "q");
            if let Some(rest) = e.message.split(" at column ").nth(1) {
                let column: usize = rest
                    .split(|c: char| !c.is_ascii_digit())
                    .next()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_else(|| panic!("{:?}", e.message));
                assert!((1..=s.len() + 1).contains(&column), "{s:?}: {}", e.message);
            }
        }
    }
    let now = 1_795_687_200_000;
    let _ = parse_time(s, now);
    let _ = parse_time(s, i64::MIN);
    let _ = parse_time(s, i64::MAX);
    if let Ok(ms) = parse_step(s) {
        assert!(ms > 0 && ms <= MAX_STEP_MS, "{s:?}: step {ms}");
    }
    if let Ok(ms) = parse_duration(s) {
        assert!(ms > 0, "{s:?}: duration {ms}");
    }
    if let Ok(agg) = Agg::parse(s) {
        assert_eq!(Agg::parse(agg.name()), Ok(agg));
    }
}
