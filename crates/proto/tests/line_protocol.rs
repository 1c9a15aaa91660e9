//! Conformance of the line protocol parser with InfluxDB's grammar: a table of valid lines with
//! their expected parse, a table of invalid lines with the expected error, multi-line bodies for
//! line numbers and recovery, and properties: written lines parse back unchanged, and whatever
//! the parser accepts from arbitrary bytes is valid and survives a write and re-parse.

use std::borrow::Cow;

use proptest::prelude::*;
use pulsewire_proto::{FieldValue, Line, LineError, Precision, parse_lines, write_line};

fn fl(v: f64) -> FieldValue<'static> {
    FieldValue::Float(v)
}
fn int(v: i64) -> FieldValue<'static> {
    FieldValue::Int(v)
}
fn uint(v: u64) -> FieldValue<'static> {
    FieldValue::UInt(v)
}
fn boolean(v: bool) -> FieldValue<'static> {
    FieldValue::Bool(v)
}
fn string(v: &'static str) -> FieldValue<'static> {
    FieldValue::Str(Cow::Borrowed(v))
}

struct Valid {
    input: &'static str,
    measurement: &'static str,
    tags: Vec<(&'static str, &'static str)>,
    fields: Vec<(&'static str, FieldValue<'static>)>,
    timestamp: Option<i64>,
}

macro_rules! valid {
    ($input:expr, $m:expr, [$(($tk:expr, $tv:expr)),*], [$(($fk:expr, $fv:expr)),+], $ts:expr) => {
        Valid {
            input: $input,
            measurement: $m,
            tags: vec![$(($tk, $tv)),*],
            fields: vec![$(($fk, $fv)),+],
            timestamp: $ts,
        }
    };
}

fn valid_cases() -> Vec<Valid> {
    vec![
        // The basics, from the InfluxDB line protocol reference.
        valid!("cpu value=1", "cpu", [], [("value", fl(1.0))], None),
        valid!(
            r#"myMeasurement,tag1=value1,tag2=value2 fieldKey="fieldValue" 1556813561098000000"#,
            "myMeasurement",
            [("tag1", "value1"), ("tag2", "value2")],
            [("fieldKey", string("fieldValue"))],
            Some(1556813561098000000)
        ),
        valid!(
            "cpu,cpu=cpu0,host=server01 usage_idle=98.59154929577464,usage_user=0.7042253521126761 1700000000000000000",
            "cpu",
            [("cpu", "cpu0"), ("host", "server01")],
            [
                ("usage_idle", fl(98.59154929577464)),
                ("usage_user", fl(0.7042253521126761))
            ],
            Some(1700000000000000000)
        ),
        // Floats.
        valid!("m f=1.0", "m", [], [("f", fl(1.0))], None),
        valid!("m f=-1.234456e+78", "m", [], [("f", fl(-1.234456e78))], None),
        valid!("m f=1e3", "m", [], [("f", fl(1000.0))], None),
        valid!("m f=1E3", "m", [], [("f", fl(1000.0))], None),
        valid!("m f=1.5e-3", "m", [], [("f", fl(0.0015))], None),
        valid!("m f=.5", "m", [], [("f", fl(0.5))], None),
        valid!("m f=-.5", "m", [], [("f", fl(-0.5))], None),
        valid!("m f=1.", "m", [], [("f", fl(1.0))], None),
        valid!("m f=-0", "m", [], [("f", fl(-0.0))], None),
        valid!("m f=00012.50", "m", [], [("f", fl(12.5))], None),
        valid!("m f=1.7976931348623157e308", "m", [], [("f", fl(f64::MAX))], None),
        valid!("m f=1e-400", "m", [], [("f", fl(0.0))], None),
        valid!(
            "m f=123456789012345678901234567890",
            "m",
            [],
            [("f", fl(1.2345678901234568e29))],
            None
        ),
        // Integers and unsigned integers.
        valid!("m i=1i", "m", [], [("i", int(1))], None),
        valid!("m i=-12485903i", "m", [], [("i", int(-12485903))], None),
        valid!("m i=9223372036854775807i", "m", [], [("i", int(i64::MAX))], None),
        valid!("m i=-9223372036854775808i", "m", [], [("i", int(i64::MIN))], None),
        valid!("m i=007i", "m", [], [("i", int(7))], None),
        valid!("m u=0u", "m", [], [("u", uint(0))], None),
        valid!("m u=18446744073709551615u", "m", [], [("u", uint(u64::MAX))], None),
        // Booleans, every accepted spelling.
        valid!(
            "m a=t,b=T,c=true,d=True,e=TRUE",
            "m",
            [],
            [
                ("a", boolean(true)),
                ("b", boolean(true)),
                ("c", boolean(true)),
                ("d", boolean(true)),
                ("e", boolean(true))
            ],
            None
        ),
        valid!(
            "m a=f,b=F,c=false,d=False,e=FALSE",
            "m",
            [],
            [
                ("a", boolean(false)),
                ("b", boolean(false)),
                ("c", boolean(false)),
                ("d", boolean(false)),
                ("e", boolean(false))
            ],
            None
        ),
        // Strings: only \" and \\ are escapes; anything else, newlines included, is as written.
        valid!(
            r#"m s="this is a string""#,
            "m",
            [],
            [("s", string("this is a string"))],
            None
        ),
        valid!(
            r#"m s="\"string\" within a string""#,
            "m",
            [],
            [("s", string(r#""string" within a string"#))],
            None
        ),
        valid!(r#"m s="a\\b""#, "m", [], [("s", string(r"a\b"))], None),
        valid!(r#"m s="a\b""#, "m", [], [("s", string(r"a\b"))], None),
        valid!(r#"m s="a\\\\b""#, "m", [], [("s", string(r"a\\b"))], None),
        valid!(r#"m s="a\\\b""#, "m", [], [("s", string(r"a\\b"))], None),
        valid!(r#"m s="ends\\""#, "m", [], [("s", string(r"ends\"))], None),
        valid!(r#"m s="tab\there""#, "m", [], [("s", string(r"tab\there"))], None),
        valid!(r#"m s="""#, "m", [], [("s", string(""))], None),
        valid!(
            r#"m s="a,b c=d",n=1i"#,
            "m",
            [],
            [("s", string("a,b c=d")), ("n", int(1))],
            None
        ),
        valid!("m s=\"two\nlines\" 5", "m", [], [("s", string("two\nlines"))], Some(5)),
        valid!(
            "m s=\"tab\tand\u{7f}\"",
            "m",
            [],
            [("s", string("tab\tand\u{7f}"))],
            None
        ),
        // Escapes in names, from the InfluxDB docs.
        valid!(
            r#"my\ Measurement fieldKey="string value""#,
            "my Measurement",
            [],
            [("fieldKey", string("string value"))],
            None
        ),
        valid!(
            r"myMeasurement,tag\ Key1=tag\ Value1,tag\ Key2=tag\ Value2 fieldKey=100",
            "myMeasurement",
            [("tag Key1", "tag Value1"), ("tag Key2", "tag Value2")],
            [("fieldKey", fl(100.0))],
            None
        ),
        valid!(
            r#""measurement\ with\ quotes",tag\ key\ with\ spaces=tag\,value\,with"commas" field_k\=y="string field value, only \" need be escaped""#,
            r#""measurement with quotes""#,
            [("tag key with spaces", r#"tag,value,with"commas""#)],
            [("field_k=y", string(r#"string field value, only " need be escaped"#))],
            None
        ),
        valid!(
            r"weather,location=us\,midwest temperature=82 1465839830100400200",
            "weather",
            [("location", "us,midwest")],
            [("temperature", fl(82.0))],
            Some(1465839830100400200)
        ),
        valid!(
            r"weather,location=us-midwest temp\=rature=82 1465839830100400200",
            "weather",
            [("location", "us-midwest")],
            [("temp=rature", fl(82.0))],
            Some(1465839830100400200)
        ),
        valid!(
            r"weather,location\ place=us-midwest temperature=82",
            "weather",
            [("location place", "us-midwest")],
            [("temperature", fl(82.0))],
            None
        ),
        valid!(
            r"wea\,ther,location=us temperature=82",
            "wea,ther",
            [("location", "us")],
            [("temperature", fl(82.0))],
            None
        ),
        valid!(
            r"wea\ ther temperature=82",
            "wea ther",
            [],
            [("temperature", fl(82.0))],
            None
        ),
        valid!(
            r#"myMeasurement,tagKey=🍭 fieldKey="Launch 🚀" 1556813561098000000"#,
            "myMeasurement",
            [("tagKey", "🍭")],
            [("fieldKey", string("Launch 🚀"))],
            Some(1556813561098000000)
        ),
        // '=' needs no escape in a measurement, so there "\=" is a backslash and an '='.
        valid!("m=x f=1", "m=x", [], [("f", fl(1.0))], None),
        valid!(r"m\=x f=1", r"m\=x", [], [("f", fl(1.0))], None),
        valid!(
            r"m,k\=x=v\=y f\,k\=x\ y=1",
            "m",
            [("k=x", "v=y")],
            [("f,k=x y", fl(1.0))],
            None
        ),
        // A backslash before anything its part does not escape stays, so "\\" is two of them.
        valid!(
            r"m,path=C:\temp f=1",
            "m",
            [("path", r"C:\temp")],
            [("f", fl(1.0))],
            None
        ),
        valid!(r"m,k=a\\b f=1", "m", [("k", r"a\\b")], [("f", fl(1.0))], None),
        valid!(r"m,k=a\\,b f=1", "m", [("k", r"a\,b")], [("f", fl(1.0))], None),
        valid!(r"m\\\ x f=1", r"m\\ x", [], [("f", fl(1.0))], None),
        valid!(r"\#m f=1", r"\#m", [], [("f", fl(1.0))], None),
        valid!(r"m,k=\n f=1", "m", [("k", r"\n")], [("f", fl(1.0))], None),
        // Quotes are ordinary characters in names.
        valid!(
            r#""m",'k'="v" 'f'=1,"g"=2"#,
            r#""m""#,
            [("'k'", r#""v""#)],
            [("'f'", fl(1.0)), (r#""g""#, fl(2.0))],
            None
        ),
        valid!("m#1,t#=#v f#=1", "m#1", [("t#", "#v")], [("f#", fl(1.0))], None),
        valid!(
            "温度,地点=北京 值=1",
            "温度",
            [("地点", "北京")],
            [("值", fl(1.0))],
            None
        ),
        // Tags are sorted by key.
        valid!(
            "m,b=2,a=1,c=3 f=1",
            "m",
            [("a", "1"), ("b", "2"), ("c", "3")],
            [("f", fl(1.0))],
            None
        ),
        valid!(
            "m,B=1,a=2,_=3 f=1",
            "m",
            [("B", "1"), ("_", "3"), ("a", "2")],
            [("f", fl(1.0))],
            None
        ),
        // Timestamps.
        valid!("m f=1 0", "m", [], [("f", fl(1.0))], Some(0)),
        valid!("m f=1 -1", "m", [], [("f", fl(1.0))], Some(-1)),
        valid!("m f=1 01", "m", [], [("f", fl(1.0))], Some(1)),
        valid!("m f=1 9223372036854775807", "m", [], [("f", fl(1.0))], Some(i64::MAX)),
        valid!("m f=1 -9223372036854775808", "m", [], [("f", fl(1.0))], Some(i64::MIN)),
        // Whitespace: leading, repeated separators, trailing, CRLF, a CR at the very end.
        valid!("  m f=1", "m", [], [("f", fl(1.0))], None),
        valid!("\t m f=1", "m", [], [("f", fl(1.0))], None),
        valid!("m,t=1   f=1    7   ", "m", [("t", "1")], [("f", fl(1.0))], Some(7)),
        valid!("m f=1 ", "m", [], [("f", fl(1.0))], None),
        valid!("m f=1 5\r\n", "m", [], [("f", fl(1.0))], Some(5)),
        valid!("m f=1\r", "m", [], [("f", fl(1.0))], None),
        valid!("m f=\"x\"\r\n", "m", [], [("f", string("x"))], None),
        // A field named "time" is dropped, as InfluxDB does, if the line has others.
        valid!("m time=1,f=2", "m", [], [("f", fl(2.0))], None),
        valid!("m f=1,time=2i 3", "m", [], [("f", fl(1.0))], Some(3)),
        // A repeated field key keeps the last value, at the first position.
        valid!("m a=1,b=2,a=3", "m", [], [("a", fl(3.0)), ("b", fl(2.0))], None),
        valid!(r#"m a=1,a="x""#, "m", [], [("a", string("x"))], None),
        // Names that are keywords elsewhere are ordinary here.
        valid!("time f=1", "time", [], [("f", fl(1.0))], None),
        valid!("m,Time=x TIME=1", "m", [("Time", "x")], [("TIME", fl(1.0))], None),
    ]
}

fn parse_one(input: &[u8]) -> Result<Line<'_>, LineError> {
    let mut it = parse_lines(input);
    let first = it
        .next()
        .unwrap_or_else(|| panic!("{:?}: no line", String::from_utf8_lossy(input)));
    assert!(
        it.next().is_none(),
        "{:?}: more than one line",
        String::from_utf8_lossy(input)
    );
    first
}

#[test]
fn valid_lines() {
    for case in valid_cases() {
        let line = parse_one(case.input.as_bytes()).unwrap_or_else(|e| panic!("{:?}: {e}", case.input));
        assert_eq!(line.measurement, case.measurement, "{:?}", case.input);
        let tags: Vec<(&str, &str)> = line.tags.iter().map(|(k, v)| (k.as_ref(), v.as_ref())).collect();
        assert_eq!(tags, case.tags, "{:?}", case.input);
        let fields: Vec<(&str, FieldValue<'_>)> = line.fields.iter().map(|(k, v)| (k.as_ref(), v.clone())).collect();
        assert_eq!(fields, case.fields, "{:?}", case.input);
        for ((_, got), (_, want)) in line.fields.iter().zip(&case.fields) {
            if let (FieldValue::Float(g), FieldValue::Float(w)) = (got, want) {
                assert_eq!(g.to_bits(), w.to_bits(), "{:?}: sign or rounding", case.input);
            }
        }
        assert_eq!(line.timestamp, case.timestamp, "{:?}", case.input);
        line.validate().unwrap_or_else(|e| panic!("{:?}: {e}", case.input));
    }
}

#[test]
fn names_without_escapes_borrow_from_the_body() {
    let body = br#"cpu,host=a,zone=b\ c usage=1,msg="x",esc="a\"b" 1"#;
    let line = parse_one(body).expect("valid");
    assert!(matches!(line.measurement, Cow::Borrowed(_)));
    assert!(matches!(line.tags[0].1, Cow::Borrowed(_)));
    assert!(matches!(line.tags[1].1, Cow::Owned(_)));
    assert!(matches!(line.fields[1].1, FieldValue::Str(Cow::Borrowed(_))));
    assert!(matches!(line.fields[2].1, FieldValue::Str(Cow::Owned(_))));
}

/// (input, fragment the error message must contain)
const INVALID: &[(&str, &str)] = &[
    // Structure.
    ("cpu", "missing fields at column 4"),
    ("cpu ", "missing fields at column 5"),
    ("cpu,host=a", "missing fields at column 11"),
    ("cpu,host=a   ", "missing fields"),
    (r"cpu\ ", "missing fields"),
    (",host=a f=1", "missing measurement at column 1"),
    (" ,f=1", "missing measurement at column 2"),
    // Tags.
    (
        "cpu,host f=1",
        "missing tag value at column 9: tag key \"host\" must be followed by '='",
    ),
    ("cpu,host", "missing tag value"),
    (
        "cpu,host= f=1",
        "missing tag value at column 10: tag \"host\" has an empty value",
    ),
    ("cpu,host=,a=b f=1", "missing tag value"),
    ("cpu,=a f=1", "missing tag key at column 5"),
    ("cpu, f=1", "missing tag key"),
    ("cpu,,a=b f=1", "missing tag key"),
    ("cpu,host=a, f=1", "missing tag key at column 12"),
    ("cpu,host=a,", "missing tag key"),
    ("cpu,host=a,host=b f=1", "duplicate tag key at column 12: \"host\""),
    ("cpu,b=1,a=1,b=2 f=1", "duplicate tag key"),
    ("cpu,a=b=c f=1", "invalid tag value at column 8: unescaped '='"),
    (
        "cpu,time=1 f=1",
        "invalid tag key at column 5: input tag \"time\" on measurement \"cpu\" is invalid",
    ),
    // Field keys and missing values.
    (
        "cpu f",
        "missing field value at column 6: field key \"f\" must be followed by '='",
    ),
    ("cpu f,g=1", "missing field value"),
    ("cpu f=", "missing field value at column 7: field \"f\" has no value"),
    ("cpu f=,g=1", "missing field value"),
    ("cpu f= 1", "missing field value"),
    ("cpu f=\r\n", "missing field value"),
    ("cpu =1", "missing field key at column 5"),
    ("cpu f=1,", "missing field key at column 9"),
    ("cpu f=1,,g=2", "missing field key"),
    ("cpu f=1, g=2", "missing field key"),
    (
        "cpu time=1",
        "invalid field name at column 5: input field \"time\" on measurement \"cpu\" is invalid",
    ),
    ("cpu time=1,time=2", "input field \"time\""),
    // Field values.
    (
        "cpu f=abc",
        "invalid field value at column 7: expected number, boolean or quoted string, found \"abc\"",
    ),
    ("cpu f=+1", "invalid field value"),
    ("cpu f='x'", "invalid field value"),
    ("cpu f=NaN", "NaN and infinity are not supported"),
    ("cpu f=nan", "NaN and infinity are not supported"),
    ("cpu f=-nan", "NaN and infinity are not supported"),
    ("cpu f=inf", "NaN and infinity are not supported"),
    ("cpu f=-Inf", "NaN and infinity are not supported"),
    ("cpu f=+Inf", "NaN and infinity are not supported"),
    ("cpu f=Infinity", "NaN and infinity are not supported"),
    (
        "cpu f=1.2.3",
        "invalid number at column 7: \"1.2.3\" for field \"f\": more than one decimal point",
    ),
    ("cpu f=.", "invalid number"),
    ("cpu f=-", "invalid number"),
    ("cpu f=1e", "invalid number"),
    ("cpu f=1e+", "invalid number"),
    ("cpu f=1x", "invalid number"),
    ("cpu f=1-2", "invalid number"),
    ("cpu f=0x10", "invalid number"),
    ("cpu f=1_000", "invalid number"),
    ("cpu f=1i5", "invalid number"),
    ("cpu f=1.5i", "invalid number"),
    ("cpu f=1e3i", "invalid number"),
    ("cpu f=i", "invalid field value"),
    ("cpu f=-i", "invalid number"),
    ("cpu f=1.5u", "invalid number"),
    ("cpu f=-1u", "an unsigned integer cannot be negative"),
    ("cpu f=1e400", "float out of range at column 7: \"1e400\""),
    ("cpu f=-1e400", "float out of range"),
    ("cpu f=9223372036854775808i", "integer out of range at column 7"),
    ("cpu f=-9223372036854775809i", "integer out of range"),
    ("cpu f=18446744073709551616u", "unsigned integer out of range"),
    ("cpu f=tru", "invalid boolean at column 7: \"tru\" for field \"f\""),
    ("cpu f=TRue", "invalid boolean"),
    ("cpu f=FALSE1", "invalid boolean"),
    ("cpu f=yes", "invalid field value"),
    (
        "cpu f=\"abc",
        "unterminated string at column 7: the value of field \"f\" has no closing quote",
    ),
    (r#"cpu f="abc\""#, "unterminated string"),
    (
        r#"cpu f="abc"x"#,
        "unexpected character at column 12: 'x' after the value of field \"f\"",
    ),
    (r#"cpu f="abc""def""#, "unexpected character"),
    ("cpu f=1\r2", "invalid number"),
    // Timestamps.
    (
        "cpu f=1 abc",
        "invalid timestamp at column 9: expected an integer, found \"abc\"",
    ),
    ("cpu f=1 1.5", "invalid timestamp"),
    ("cpu f=1 +1", "invalid timestamp"),
    ("cpu f=1 -", "invalid timestamp"),
    ("cpu f=1 1e9", "invalid timestamp"),
    ("cpu f=1 g=2", "invalid timestamp"),
    ("cpu f=1 1,2", "invalid timestamp"),
    ("cpu f=1 1 2", "unexpected text after the timestamp at column 11: \"2\""),
    ("cpu f=1 99999999999999999999", "timestamp out of range at column 9"),
    ("cpu f=1 -9223372036854775809", "timestamp out of range"),
    // Control characters are refused in names.
    ("cpu,ho\tst=a f=1", "invalid character U+0009 in tag key at column 7"),
    ("c\u{1}pu f=1", "invalid character U+0001 in measurement at column 2"),
    ("cpu,k=v\u{7f} f=1", "invalid character U+007F in tag value"),
    ("cpu f\u{0}=1", "invalid character U+0000 in field key"),
    ("cpu\rx f=1", "invalid character U+000D in measurement"),
    // Columns count characters, not bytes.
    ("温度 值=abc", "invalid field value at column 6"),
];

#[test]
fn invalid_lines() {
    for (input, want) in INVALID {
        match parse_one(input.as_bytes()) {
            Ok(line) => panic!("{input:?} parsed as {line:?}"),
            Err(e) => {
                assert_eq!(e.line, 1, "{input:?}");
                assert!(
                    e.message.contains(want),
                    "{input:?}: {:?} does not contain {want:?}",
                    e.message
                );
            }
        }
    }
}

#[test]
fn invalid_utf8_fails_only_its_line() {
    let cases: &[(&[u8], &str)] = &[
        (b"cpu,host=\xff f=1", "invalid UTF-8 in tag value at column 10"),
        (b"cp\xc3u f=1", "invalid UTF-8 in measurement at column 1"),
        (b"cpu,\xe2\x82=a f=1", "invalid UTF-8 in tag key"),
        (b"cpu f\xff=1", "invalid UTF-8 in field key"),
        (b"cpu f=\"a\xffb\"", "invalid UTF-8 in string field value at column 8"),
    ];
    for (bad, want) in cases {
        let mut body = b"ok f=1\n".to_vec();
        body.extend_from_slice(bad);
        body.extend_from_slice(b"\nok f=2\n\xfe\nok f=3");
        let results: Vec<_> = parse_lines(&body).collect();
        assert_eq!(results.len(), 5, "{bad:?}");
        assert!(results[0].is_ok());
        let err = results[1].as_ref().expect_err("the bad line");
        assert_eq!(err.line, 2);
        assert!(
            err.message.contains(want),
            "{bad:?}: {:?} does not contain {want:?}",
            err.message
        );
        assert_eq!(results[2].as_ref().map(|l| l.fields[0].1.clone()), Ok(fl(2.0)));
        assert_eq!(results[3].as_ref().map_err(|e| e.line), Err(4));
        assert_eq!(results[4].as_ref().map(|l| l.fields[0].1.clone()), Ok(fl(3.0)));
    }
    // Invalid UTF-8 in a comment is not an error.
    assert_eq!(parse_lines(b"# \xff\xfe\nm f=1").filter(Result::is_ok).count(), 1);
}

/// The line number of each result, and whether it parsed.
fn outline(body: &[u8]) -> Vec<Result<String, usize>> {
    parse_lines(body)
        .map(|r| r.map(|l| l.measurement.into_owned()).map_err(|e| e.line))
        .collect()
}

#[test]
fn line_numbers_count_blank_and_comment_lines() {
    let body = b"# comment\n\ncpu f=1\n  # indented comment\n\t\nbad\r\n\r\nmem f=2\n   \n#end";
    assert_eq!(outline(body), vec![Ok("cpu".into()), Err(6), Ok("mem".into())]);
    let err = parse_lines(body).nth(1).and_then(Result::err);
    assert_eq!(
        err,
        Some(LineError {
            line: 6,
            message: "missing fields at column 4: a point needs a space and at least one field_key=value".into()
        })
    );
}

#[test]
fn crlf_bodies() {
    let body = b"a f=1\r\nb,t=x f=2 3\r\n\r\nc f=\"s\"\r\n";
    let lines: Vec<Line<'_>> = parse_lines(body).collect::<Result<_, _>>().expect("all valid");
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[1].timestamp, Some(3));
    assert_eq!(lines[2].fields[0].1, string("s"));
}

#[test]
fn strings_may_span_lines_and_line_numbers_follow() {
    let body = b"a s=\"x\ny\" 5\nb f=1\nc\nd s=\"p\nq\",f=z\ne f=1";
    assert_eq!(
        outline(body),
        vec![Ok("a".into()), Ok("b".into()), Err(4), Err(6), Ok("e".into())]
    );
    let errors: Vec<String> = parse_lines(body).filter_map(Result::err).map(|e| e.message).collect();
    // The error after the multi-line string is placed on the line where it is.
    assert!(errors[1].starts_with("invalid field value at column 6"), "{errors:?}");
}

#[test]
fn errors_resume_at_the_next_line() {
    // An unterminated string does not swallow the rest of the body.
    assert_eq!(
        outline(b"a s=\"oops\nb f=1\nc f=2"),
        vec![Err(1), Ok("b".into()), Ok("c".into())]
    );
    assert_eq!(outline(b"a f=x\nb f=1"), vec![Err(1), Ok("b".into())]);
    assert_eq!(outline(b"a,b=c=d f=1\nb f=1\n"), vec![Err(1), Ok("b".into())]);
    assert_eq!(outline(b"a f=\"x\"y\nb f=1\n"), vec![Err(1), Ok("b".into())]);
}

#[test]
fn empty_bodies() {
    assert_eq!(outline(b""), vec![]);
    assert_eq!(outline(b"\n\n  \r\n# only comments\n#"), vec![]);
}

#[test]
fn precision_check_refuses_timestamps_that_cannot_be_stored() {
    let body = b"a f=1 9223372036854775\nb f=1 9223372036854775806\nc f=1 -9223372036854775807";
    let plain: Vec<_> = parse_lines(body).map(|r| r.is_ok()).collect();
    assert_eq!(plain, vec![true, true, true]);
    let ns: Vec<_> = parse_lines(body)
        .with_precision(Precision::Ns)
        .map(|r| r.map_err(|e| e.line))
        .collect();
    assert!(ns[0].is_ok() && ns[1].is_ok());
    assert_eq!(ns[2].as_ref().map(|_| ()), Err(&3));
    let s: Vec<_> = parse_lines(body).with_precision(Precision::S).collect();
    let err = s[0].as_ref().expect_err("out of range in seconds");
    assert!(
        err.message
            .starts_with("timestamp out of range at column 7: 9223372036854775 s is outside"),
        "{err}"
    );
    assert!(s[1].is_err() && s[2].is_err());
}

#[test]
fn next_into_reuses_one_line() {
    let body = b"a,t=1 f=1,g=2\nbad\nb s=\"x\" 4\n";
    let mut it = parse_lines(body);
    let mut line = Line::default();
    assert_eq!(it.next_into(&mut line), Some(Ok(())));
    assert_eq!(line.fields.len(), 2);
    assert!(matches!(it.next_into(&mut line), Some(Err(LineError { line: 2, .. }))));
    assert_eq!(it.next_into(&mut line), Some(Ok(())));
    assert_eq!(line.measurement, "b");
    assert!(line.tags.is_empty());
    assert_eq!(line.fields, vec![(Cow::Borrowed("s"), string("x"))]);
    assert_eq!(line.timestamp, Some(4));
    assert_eq!(it.next_into(&mut line), None);
}

#[test]
fn precision_parameters() {
    for (s, p) in [
        ("", Precision::Ns),
        ("n", Precision::Ns),
        ("ns", Precision::Ns),
        ("u", Precision::Us),
    ] {
        assert_eq!(Precision::parse_v1(s), Ok(p));
    }
    for (s, p) in [
        ("us", Precision::Us),
        ("µ", Precision::Us),
        ("ms", Precision::Ms),
        ("s", Precision::S),
    ] {
        assert_eq!(Precision::parse_v1(s), Ok(p));
    }
    assert_eq!(Precision::parse_v1("m"), Ok(Precision::M));
    assert_eq!(Precision::parse_v1("h"), Ok(Precision::H));
    assert_eq!(
        Precision::parse_v1("x"),
        Err("invalid precision \"x\" (use n, ns, u, us, µ, ms, s, m or h)".into())
    );
    assert!(Precision::parse_v1("NS").is_err());
    for (s, p) in [
        ("", Precision::Ns),
        ("ns", Precision::Ns),
        ("us", Precision::Us),
        ("ms", Precision::Ms),
        ("s", Precision::S),
    ] {
        assert_eq!(Precision::parse_v2(s), Ok(p));
    }
    for bad in ["n", "u", "µ", "m", "h", "sec"] {
        assert_eq!(
            Precision::parse_v2(bad),
            Err(format!("invalid precision {bad:?} (use ns, us, ms or s)"))
        );
    }
    assert_eq!(
        Precision::Ms.to_nanos(1_700_000_000_000),
        Some(1_700_000_000_000_000_000)
    );
    assert_eq!(Precision::M.to_nanos(1), Some(60_000_000_000));
}

#[test]
fn canonical_text() {
    let line = parse_one(br#"m\ 1,z=2,a\,b=x\ y\=z f\=1=1,g=-2.5e-10,h=3i,i=4u,j=T,k="q\"\\\z" -7"#).expect("valid");
    let mut out = String::new();
    write_line(&line, &mut out);
    assert_eq!(
        out,
        "m\\ 1,a\\,b=x\\ y\\=z,z=2 f\\=1=1.0,g=-2.5e-10,h=3i,i=4u,j=true,k=\"q\\\"\\\\\\\\z\" -7\n"
    );
    let large = Line {
        fields: vec![(Cow::Borrowed("f"), fl(1e300))],
        measurement: Cow::Borrowed("m"),
        ..Line::default()
    };
    out.clear();
    write_line(&large, &mut out);
    assert_eq!(out, "m f=1e300\n");
}

#[test]
fn the_valid_table_round_trips_through_write_line() {
    for case in valid_cases() {
        let line = parse_one(case.input.as_bytes()).unwrap_or_else(|e| panic!("{:?}: {e}", case.input));
        let mut text = String::new();
        write_line(&line, &mut text);
        let back = parse_one(text.as_bytes()).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        assert_eq!(back, line, "{:?} wrote {text:?}", case.input);
    }
}

/// Characters that need escaping somewhere, plus ordinary and multi-byte ones.
const NAME_CHARS: &[char] = &[
    'a', 'Z', '0', '_', '.', ' ', ',', '=', '"', '\'', '\\', '#', 'é', '🚀', 'n', 't',
];
const STRING_CHARS: &[char] = &['a', ' ', ',', '=', '"', '\\', '\n', '\r', '\t', 'é', '🚀', '#', 'i'];

fn text_from(chars: &'static [char], len: std::ops::Range<usize>) -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(chars), len).prop_map(|v| v.into_iter().collect())
}

/// A name line protocol can carry: not empty, not ending in a backslash, not "time".
fn name() -> impl Strategy<Value = String> {
    text_from(NAME_CHARS, 1..8).prop_filter("representable", |s| !s.ends_with('\\') && s != "time")
}

fn value() -> impl Strategy<Value = FieldValue<'static>> {
    use proptest::num::f64 as f;
    prop_oneof![
        (f::POSITIVE | f::NEGATIVE | f::NORMAL | f::SUBNORMAL | f::ZERO).prop_map(FieldValue::Float),
        any::<i64>().prop_map(FieldValue::Int),
        any::<u64>().prop_map(FieldValue::UInt),
        any::<bool>().prop_map(FieldValue::Bool),
        text_from(STRING_CHARS, 0..12).prop_map(|s| FieldValue::Str(Cow::Owned(s))),
    ]
}

fn line() -> impl Strategy<Value = Line<'static>> {
    (
        name().prop_filter("not a comment", |m| !m.starts_with('#')),
        prop::collection::btree_map(name(), name(), 0..4),
        prop::collection::vec((name(), value()), 1..6),
        any::<Option<i64>>(),
    )
        .prop_map(|(m, tags, fields, timestamp)| {
            let mut seen = std::collections::HashSet::new();
            Line {
                measurement: Cow::Owned(m),
                tags: tags.into_iter().map(|(k, v)| (Cow::Owned(k), Cow::Owned(v))).collect(),
                fields: fields
                    .into_iter()
                    .filter(|(k, _)| seen.insert(k.clone()))
                    .map(|(k, v)| (Cow::Owned(k), v))
                    .collect(),
                timestamp,
            }
        })
}

/// Bytes biased towards the characters the grammar cares about.
fn body_bytes() -> impl Strategy<Value = Vec<u8>> {
    let special = prop::sample::select(&b" ,=\"\\\n\r\t#-.0123456789eEiutfTF\xff\xc3"[..]);
    prop::collection::vec(
        prop_oneof![3 => special, 2 => prop::sample::select(&b"abcxyz"[..]), 1 => any::<u8>()],
        0..80,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn written_lines_parse_back_unchanged(line in line()) {
        prop_assert_eq!(line.validate(), Ok(()));
        let mut text = String::new();
        write_line(&line, &mut text);
        let parsed: Vec<_> = parse_lines(text.as_bytes()).collect();
        prop_assert_eq!(parsed.len(), 1, "{:?}", text);
        prop_assert_eq!(parsed[0].as_ref(), Ok(&line), "{:?}", text);
    }

    #[test]
    fn whatever_parses_is_valid_and_round_trips(body in body_bytes()) {
        let mut count = 0;
        for result in parse_lines(&body) {
            count += 1;
            match result {
                Ok(line) => {
                    prop_assert_eq!(line.validate(), Ok(()), "{:?}", String::from_utf8_lossy(&body));
                    let mut text = String::new();
                    write_line(&line, &mut text);
                    let back: Vec<_> = parse_lines(text.as_bytes()).collect();
                    prop_assert_eq!(back.len(), 1);
                    prop_assert_eq!(back[0].as_ref(), Ok(&line), "{:?}", text);
                }
                Err(e) => prop_assert!(e.line >= 1 && !e.message.is_empty()),
            }
        }
        // Each line yields at most one result.
        prop_assert!(count <= body.iter().filter(|&&c| c == b'\n').count() + 1);
    }
}
