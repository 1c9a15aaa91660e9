//! InfluxDB line protocol: parsing the bodies of `/write` and `/api/v2/write` into [`Line`]s, and
//! writing [`Line`]s back as canonical text.
//!
//! The grammar and its edge cases are those of the InfluxDB 1.x/2.x servers (their Go parser and
//! the published line-protocol grammar), so that Telegraf and the official client libraries work
//! unchanged; docs/ingest.md lists the rules, the few deliberate differences and every error
//! message. Parsing is on the ingest hot path, so it is one forward pass over the bytes with table
//! lookups: names and string values borrow from the body unless they contain escapes, numbers are
//! converted while they are validated, the body's UTF-8 is checked once rather than per token, and
//! nothing is allocated per field beyond the two vectors of a line, which
//! [`LineIter::next_into`] lets a caller reuse.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::iter::FusedIterator;

/// A field value, typed as line protocol writes it: `1.5`, `1i`, `1u`, `true`, `"text"`.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue<'a> {
    Float(f64),
    Int(i64),
    UInt(u64),
    Bool(bool),
    Str(Cow<'a, str>),
}

impl FieldValue<'_> {
    pub fn into_owned(self) -> FieldValue<'static> {
        match self {
            FieldValue::Float(v) => FieldValue::Float(v),
            FieldValue::Int(v) => FieldValue::Int(v),
            FieldValue::UInt(v) => FieldValue::UInt(v),
            FieldValue::Bool(v) => FieldValue::Bool(v),
            FieldValue::Str(s) => FieldValue::Str(Cow::Owned(s.into_owned())),
        }
    }

    /// The type's name as InfluxDB spells it in field type conflict messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            FieldValue::Float(_) => "float",
            FieldValue::Int(_) => "integer",
            FieldValue::UInt(_) => "unsigned",
            FieldValue::Bool(_) => "boolean",
            FieldValue::Str(_) => "string",
        }
    }
}

/// One point: a parsed line of line protocol, or a JSON agent object mapped to the same shape.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Line<'a> {
    pub measurement: Cow<'a, str>,
    /// Sorted by key (parser sorts if the writer did not), unescaped.
    pub tags: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    /// In the order written, unescaped. If a key repeats, the last value wins (as in InfluxDB),
    /// kept at the position where the key first appeared.
    pub fields: Vec<(Cow<'a, str>, FieldValue<'a>)>,
    /// The timestamp as written, in the request's precision unit; None = server time.
    pub timestamp: Option<i64>,
}

impl Line<'_> {
    pub fn into_owned(self) -> Line<'static> {
        Line {
            measurement: Cow::Owned(self.measurement.into_owned()),
            tags: self
                .tags
                .into_iter()
                .map(|(k, v)| (Cow::Owned(k.into_owned()), Cow::Owned(v.into_owned())))
                .collect(),
            fields: self
                .fields
                .into_iter()
                .map(|(k, v)| (Cow::Owned(k.into_owned()), v.into_owned()))
                .collect(),
            timestamp: self.timestamp,
        }
    }

    /// Checks what the parser guarantees for the lines it returns, for lines built some other way
    /// (the JSON agent format, tests): non-empty names that line protocol can carry, tags sorted
    /// and unique, at least one field, unique field keys, no `time` key, finite floats.
    /// [`write_line`] writes a line that passes this so that parsing the text gives it back.
    pub fn validate(&self) -> Result<(), String> {
        check_name(Part::Measurement, &self.measurement)?;
        for (i, (k, v)) in self.tags.iter().enumerate() {
            check_name(Part::TagKey, k)?;
            check_name(Part::TagValue, v)?;
            if k == "time" {
                return Err("tag key \"time\" is not allowed".into());
            }
            if i > 0 && self.tags[i - 1].0 >= *k {
                return Err(format!(
                    "tag keys must be sorted and unique (at tag key {:?})",
                    k.as_ref()
                ));
            }
        }
        if self.fields.is_empty() {
            return Err("a line needs at least one field".into());
        }
        for (i, (k, v)) in self.fields.iter().enumerate() {
            check_name(Part::FieldKey, k)?;
            if k == "time" {
                return Err("field key \"time\" is not allowed".into());
            }
            if self.fields[..i].iter().any(|(prev, _)| prev == k) {
                return Err(format!("duplicate field key {:?}", k.as_ref()));
            }
            if let FieldValue::Float(f) = v
                && !f.is_finite()
            {
                return Err(format!(
                    "field {:?} is {f}: NaN and infinity are not supported",
                    k.as_ref()
                ));
            }
        }
        Ok(())
    }
}

/// The unit of the timestamps in a write request, from its `precision` query parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Precision {
    #[default]
    Ns,
    Us,
    Ms,
    S,
    M,
    H,
}

/// The nanosecond range InfluxDB stores: the two lowest values are its sentinels and the highest
/// is reserved, so a point outside it would be refused by any InfluxDB as well.
const MIN_NANOS: i64 = i64::MIN + 2;
const MAX_NANOS: i64 = i64::MAX - 1;

impl Precision {
    /// Parses the `precision` query parameter of /write (1.x: n, ns, u, us, µ, ms, s, m, h) and /api/v2/write (ns, us, ms, s).
    ///
    /// The v1 set is what InfluxDB 1.x accepts (`n`, `u`, `ms`, `s`, `m`, `h`) plus the spellings
    /// InfluxDB 2.x's v1-compatible endpoint documents (`ns`, `us`, `µ`). An empty value, as in
    /// `?precision=`, means nanoseconds, as in InfluxDB.
    pub fn parse_v1(s: &str) -> Result<Precision, String> {
        match s {
            "" | "n" | "ns" => Ok(Precision::Ns),
            // U+00B5 MICRO SIGN, and U+03BC GREEK SMALL LETTER MU, which keyboards often produce.
            "u" | "us" | "\u{b5}" | "\u{3bc}" => Ok(Precision::Us),
            "ms" => Ok(Precision::Ms),
            "s" => Ok(Precision::S),
            "m" => Ok(Precision::M),
            "h" => Ok(Precision::H),
            _ => Err(format!("invalid precision {s:?} (use n, ns, u, us, µ, ms, s, m or h)")),
        }
    }

    /// See [`Precision::parse_v1`]; the v2 API has no minutes or hours and no one-letter forms.
    pub fn parse_v2(s: &str) -> Result<Precision, String> {
        match s {
            "" | "ns" => Ok(Precision::Ns),
            "us" => Ok(Precision::Us),
            "ms" => Ok(Precision::Ms),
            "s" => Ok(Precision::S),
            _ => Err(format!("invalid precision {s:?} (use ns, us, ms or s)")),
        }
    }

    /// Nanoseconds in one unit.
    pub const fn nanos_per_unit(self) -> i64 {
        match self {
            Precision::Ns => 1,
            Precision::Us => 1_000,
            Precision::Ms => 1_000_000,
            Precision::S => 1_000_000_000,
            Precision::M => 60_000_000_000,
            Precision::H => 3_600_000_000_000,
        }
    }

    /// Converts a timestamp in this unit to nanoseconds, None on overflow.
    ///
    /// "Overflow" is leaving the range InfluxDB can store, -9223372036854775806 to
    /// 9223372036854775806 ns (1677-09-21 to 2262-04-11), not just the range of `i64`.
    pub fn to_nanos(self, ts: i64) -> Option<i64> {
        let ns = ts.checked_mul(self.nanos_per_unit())?;
        (MIN_NANOS..=MAX_NANOS).contains(&ns).then_some(ns)
    }

    /// The canonical spelling (the v2 one where there is one).
    pub const fn as_str(self) -> &'static str {
        match self {
            Precision::Ns => "ns",
            Precision::Us => "us",
            Precision::Ms => "ms",
            Precision::S => "s",
            Precision::M => "m",
            Precision::H => "h",
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why one line of a body was refused. The other lines of the body are unaffected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct LineError {
    /// 1-based line number in the body (blank and comment lines count).
    pub line: usize,
    /// What is wrong and where, e.g. "invalid field value at column 17: expected number, boolean
    /// or quoted string, found \"abc\"". Columns are 1-based and count characters.
    pub message: String,
}

/// Iterates the lines of a request body, skipping blank lines and comments; each item is a parsed line or its error.
pub fn parse_lines(body: &[u8]) -> LineIter<'_> {
    LineIter::new(body)
}

/// Writes `line` as canonical line protocol, terminated by `\n`, appending to `out`: the escapes
/// each part needs, tags in the order given, floats in their shortest exact form, strings quoted.
/// Parsing the text gives the line back if it passes [`Line::validate`]; a line that does not
/// (a NaN, a name ending in a backslash, a measurement starting with `#`) has no faithful text.
pub fn write_line(line: &Line<'_>, out: &mut String) {
    escape_into(out, &line.measurement, Part::Measurement);
    for (k, v) in &line.tags {
        out.push(',');
        escape_into(out, k, Part::TagKey);
        out.push('=');
        escape_into(out, v, Part::TagValue);
    }
    let mut sep = ' ';
    for (k, v) in &line.fields {
        out.push(sep);
        sep = ',';
        escape_into(out, k, Part::FieldKey);
        out.push('=');
        // Writing to a String cannot fail.
        let _ = match v {
            // Debug is the shortest text that parses back to the same f64, with an exponent for
            // very large or small magnitudes instead of hundreds of digits.
            FieldValue::Float(f) => write!(out, "{f:?}"),
            FieldValue::Int(i) => write!(out, "{i}i"),
            FieldValue::UInt(u) => write!(out, "{u}u"),
            FieldValue::Bool(b) => write!(out, "{b}"),
            FieldValue::Str(s) => {
                out.push('"');
                for c in s.chars() {
                    if c == '"' || c == '\\' {
                        out.push('\\');
                    }
                    out.push(c);
                }
                out.push('"');
                Ok(())
            }
        };
    }
    if let Some(ts) = line.timestamp {
        let _ = write!(out, " {ts}");
    }
    out.push('\n');
}

/// The parts of a line that are names; they differ in which characters a backslash escapes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Part {
    Measurement,
    TagKey,
    TagValue,
    FieldKey,
}

impl Part {
    fn name(self) -> &'static str {
        match self {
            Part::Measurement => "measurement",
            Part::TagKey => "tag key",
            Part::TagValue => "tag value",
            Part::FieldKey => "field key",
        }
    }

    /// Whether `\c` is an escape sequence in this part; before any other character a backslash is
    /// an ordinary character (so `\\` stays two backslashes, as in InfluxDB).
    fn escapes(self, c: u8) -> bool {
        match self {
            Part::Measurement => c == b',' || c == b' ',
            _ => c == b',' || c == b' ' || c == b'=',
        }
    }
}

fn escape_into(out: &mut String, s: &str, part: Part) {
    if !s.bytes().any(|c| part.escapes(c)) {
        out.push_str(s);
        return;
    }
    for c in s.chars() {
        if c.is_ascii() && part.escapes(c as u8) {
            out.push('\\');
        }
        out.push(c);
    }
}

/// The rules a name must follow to survive a trip through line protocol text (see
/// [`Line::validate`]); the parser never produces a name that breaks them.
pub(crate) fn check_name(part: Part, s: &str) -> Result<(), String> {
    let what = part.name();
    if s.is_empty() {
        return Err(format!("{what} must not be empty"));
    }
    if let Some(c) = s.chars().find(|c| c.is_ascii_control()) {
        return Err(format!(
            "{what} {s:?} contains the control character U+{:04X}",
            c as u32
        ));
    }
    if s.ends_with('\\') {
        return Err(format!(
            "{what} {s:?} ends with a backslash, which line protocol cannot carry"
        ));
    }
    if part == Part::Measurement && s.starts_with('#') {
        return Err(format!(
            "{what} {s:?} starts with '#', which line protocol reads as a comment"
        ));
    }
    Ok(())
}

/// Bytes that end the fast scan of a name: delimiters, the escape character and control
/// characters (refused in names, and `\n`/`\r` end the line).
const NAME_STOP: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = true;
        i += 1;
    }
    t[0x7f] = true;
    t[b' ' as usize] = true;
    t[b',' as usize] = true;
    t[b'=' as usize] = true;
    t[b'\\' as usize] = true;
    t
};

/// Bytes that end the fast scan of a quoted string: the closing quote, the escape character, and
/// newlines, which are allowed inside strings but must be counted for line numbers.
const STRING_STOP: [bool; 256] = {
    let mut t = [false; 256];
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t[b'\n' as usize] = true;
    t
};

/// Powers of ten that are exact in an f64, for the fast float conversion.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20,
    1e21, 1e22,
];

/// Past this many fields in one line, duplicate keys are found with a hash map instead of a scan
/// over the earlier keys, so a huge line cannot make parsing quadratic.
const LINEAR_DEDUP_MAX: usize = 64;

/// Where and why a line failed, before it is turned into a [`LineError`].
struct Fail {
    /// Offset in the body; parsing resumes after the first newline from here.
    pos: usize,
    line: usize,
    message: String,
}

/// The iterator returned by [`parse_lines`].
pub struct LineIter<'a> {
    body: &'a [u8],
    pos: usize,
    /// 1-based number of the physical line holding `pos`, and the offset where it starts.
    line_no: usize,
    line_start: usize,
    /// Line number and length in bytes of the entry last returned.
    last_entry: (usize, usize),
    /// `body[utf8_start..utf8_start + utf8.len()]`, known to be valid UTF-8: checked once for the
    /// whole body, so that tokens inside it become `&str` without another check. It ends at the
    /// first invalid byte; tokens past that are checked one by one, and the next line starts a
    /// new window.
    utf8_start: usize,
    utf8: &'a str,
    precision: Option<Precision>,
    /// Sizes of the previous line, so a new line's vectors are allocated once at the right size.
    tag_hint: usize,
    field_hint: usize,
    /// Fingerprints of the current line's field keys, for finding repeated keys cheaply.
    field_prints: Vec<u64>,
    /// The current line's field keys and positions, once it has more than [`LINEAR_DEDUP_MAX`].
    field_map: Option<HashMap<String, usize>>,
}

impl<'a> LineIter<'a> {
    fn new(body: &'a [u8]) -> Self {
        let mut it = LineIter {
            body,
            pos: 0,
            line_no: 1,
            last_entry: (0, 0),
            line_start: 0,
            utf8_start: 0,
            utf8: "",
            precision: None,
            tag_hint: 0,
            field_hint: 0,
            field_prints: Vec::new(),
            field_map: None,
        };
        it.check_utf8_from(0);
        it
    }

    /// Also refuses, as errors of their lines, timestamps that [`Precision::to_nanos`] cannot
    /// convert in `precision`, so callers can convert the rest without another check.
    pub fn with_precision(mut self, precision: Precision) -> Self {
        self.precision = Some(precision);
        self
    }

    /// The line number where the entry last returned (parsed or refused) starts, and its length
    /// in bytes up to the next entry (a quoted string may span several physical lines, so this
    /// is how callers number good lines and apply a length limit per entry).
    pub fn last_entry(&self) -> (usize, usize) {
        self.last_entry
    }

    /// Like [`Iterator::next`], but parses into `line`, reusing its vectors: the cheapest way to
    /// parse a large body when each line is consumed before the next is parsed. `line` is
    /// overwritten; on an error its contents are unspecified. None at the end of the body.
    pub fn next_into(&mut self, line: &mut Line<'a>) -> Option<Result<(), LineError>> {
        if !self.skip_to_entry() {
            return None;
        }
        line.measurement = Cow::Borrowed("");
        line.tags.clear();
        line.fields.clear();
        line.timestamp = None;
        let (first, start) = (self.line_no, self.pos);
        let result = self.parse_or_recover(line);
        self.last_entry = (first, self.pos.saturating_sub(start));
        Some(result)
    }

    fn parse_or_recover(&mut self, line: &mut Line<'a>) -> Result<(), LineError> {
        match self.parse_entry(line) {
            Ok(()) => {
                self.tag_hint = line.tags.len();
                self.field_hint = line.fields.len();
                Ok(())
            }
            Err(f) => {
                let err = LineError {
                    line: f.line,
                    message: f.message,
                };
                // Resume after the first newline from the error, as the line's end cannot be
                // known once its syntax is broken (a stray quote would otherwise swallow the
                // rest of the body).
                match self.body[f.pos.min(self.body.len())..].iter().position(|&c| c == b'\n') {
                    Some(k) => {
                        self.line_no = f.line;
                        self.next_line(f.pos + k + 1);
                    }
                    None => self.pos = self.body.len(),
                }
                Err(err)
            }
        }
    }

    /// Moves to the start of the next line that holds a point, past blank lines and comments;
    /// false at the end of the body.
    fn skip_to_entry(&mut self) -> bool {
        let b = self.body;
        loop {
            let mut i = self.pos;
            while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
                i += 1;
            }
            match b.get(i) {
                None => {
                    self.pos = b.len();
                    return false;
                }
                Some(b'\n') => self.next_line(i + 1),
                Some(b'\r') if self.is_eol(i) => self.next_line((i + 2).min(b.len())),
                Some(b'#') => match b[i..].iter().position(|&c| c == b'\n') {
                    Some(k) => self.next_line(i + k + 1),
                    None => {
                        self.pos = b.len();
                        return false;
                    }
                },
                Some(_) => {
                    self.pos = i;
                    return true;
                }
            }
        }
    }

    /// Moves to `start`, the first byte after a newline.
    fn next_line(&mut self, start: usize) {
        self.pos = start;
        self.line_no += 1;
        self.line_start = start;
        if start > self.utf8_start + self.utf8.len() {
            self.check_utf8_from(start);
        }
    }

    fn check_utf8_from(&mut self, start: usize) {
        let rest = &self.body[start.min(self.body.len())..];
        self.utf8_start = start;
        self.utf8 = match std::str::from_utf8(rest) {
            Ok(s) => s,
            Err(e) => std::str::from_utf8(&rest[..e.valid_up_to()]).unwrap_or_default(),
        };
    }

    /// `body[a..b]` as text, None if it is not valid UTF-8.
    fn text(&self, a: usize, b: usize) -> Option<&'a str> {
        let s = self.utf8_start;
        if a >= s
            && b <= s + self.utf8.len()
            && let Some(t) = self.utf8.get(a - s..b - s)
        {
            return Some(t);
        }
        std::str::from_utf8(self.body.get(a..b)?).ok()
    }

    /// Whether `i` is the end of the line: end of body, `\n`, or `\r` before either.
    fn is_eol(&self, i: usize) -> bool {
        match self.body.get(i) {
            None | Some(b'\n') => true,
            Some(b'\r') => matches!(self.body.get(i + 1), None | Some(b'\n')),
            Some(_) => false,
        }
    }

    fn column(&self, pos: usize) -> usize {
        let from = self.line_start.min(pos);
        // Counting the bytes that start a character gives the character column, and something
        // sensible for invalid UTF-8.
        self.body[from..pos.min(self.body.len())]
            .iter()
            .filter(|&&c| c & 0xc0 != 0x80)
            .count()
            + 1
    }

    /// A failure at `pos`: "<what> at column N" and, if `detail` is not empty, ": <detail>".
    fn fail(&self, pos: usize, what: impl fmt::Display, detail: impl fmt::Display) -> Fail {
        let mut message = format!("{what} at column {}", self.column(pos));
        let len = message.len();
        let _ = write!(message, ": {detail}");
        if message.len() == len + 2 {
            message.truncate(len);
        }
        Fail {
            pos,
            line: self.line_no,
            message,
        }
    }

    fn parse_entry(&mut self, line: &mut Line<'a>) -> Result<(), Fail> {
        let b = self.body;
        let start = self.pos;

        let (measurement, mut i) = self.scan_name(start, Part::Measurement)?;
        if measurement.is_empty() {
            return Err(self.fail(start, "missing measurement", ""));
        }
        line.measurement = measurement;

        if b.get(i) == Some(&b',') {
            self.parse_tags(line, &mut i)?;
        }

        if self.is_eol(i) {
            return Err(self.fail(
                i,
                "missing fields",
                "a point needs a space and at least one field_key=value",
            ));
        }
        // The name scanners stop only at a space, a comma, '=' or the line's end, and the comma
        // and '=' cases were handled above, so this is the space before the fields.
        while b.get(i) == Some(&b' ') {
            i += 1;
        }
        if self.is_eol(i) {
            return Err(self.fail(i, "missing fields", "a point needs at least one field_key=value"));
        }

        let has_timestamp = self.parse_fields(line, &mut i)?;

        if has_timestamp {
            while b.get(i) == Some(&b' ') {
                i += 1;
            }
            if !self.is_eol(i) {
                line.timestamp = Some(self.parse_timestamp(&mut i)?);
            }
        }
        self.finish_line(i);
        Ok(())
    }

    /// Parses `,key=value...` from the comma after the measurement; leaves `i` at the space or
    /// line end after the last tag value.
    fn parse_tags(&mut self, line: &mut Line<'a>, i: &mut usize) -> Result<(), Fail> {
        let b = self.body;
        let tags_start = *i;
        let mut sorted = true;
        line.tags.reserve(self.tag_hint);
        loop {
            *i += 1; // the comma
            let key_pos = *i;
            let (key, end) = self.scan_name(key_pos, Part::TagKey)?;
            *i = end;
            if key.is_empty() {
                return Err(self.fail(key_pos, "missing tag key", ""));
            }
            if b.get(*i) != Some(&b'=') {
                return Err(self.fail(
                    *i,
                    "missing tag value",
                    format_args!("tag key {:?} must be followed by '=' and a value", key.as_ref()),
                ));
            }
            *i += 1;
            let (value, end) = self.scan_name(*i, Part::TagValue)?;
            if value.is_empty() {
                return Err(self.fail(
                    *i,
                    "missing tag value",
                    format_args!("tag {:?} has an empty value", key.as_ref()),
                ));
            }
            *i = end;
            if b.get(*i) == Some(&b'=') {
                return Err(self.fail(
                    *i,
                    "invalid tag value",
                    format_args!("unescaped '=' in the value of tag {:?} (write it as \\=)", key.as_ref()),
                ));
            }
            if key == "time" {
                return Err(self.fail(
                    key_pos,
                    "invalid tag key",
                    format_args!(
                        "input tag \"time\" on measurement {:?} is invalid",
                        line.measurement.as_ref()
                    ),
                ));
            }
            if sorted && let Some((prev, _)) = line.tags.last() {
                match prev.as_ref().cmp(key.as_ref()) {
                    std::cmp::Ordering::Less => {}
                    std::cmp::Ordering::Equal => {
                        return Err(self.fail(key_pos, "duplicate tag key", format_args!("{:?}", key.as_ref())));
                    }
                    std::cmp::Ordering::Greater => sorted = false,
                }
            }
            line.tags.push((key, value));
            if b.get(*i) != Some(&b',') {
                break;
            }
        }
        if !sorted {
            line.tags.sort_unstable_by(|x, y| x.0.cmp(&y.0));
            if let Some(w) = line.tags.windows(2).find(|w| w[0].0 == w[1].0) {
                return Err(self.fail(
                    tags_start + 1,
                    "duplicate tag key",
                    format_args!("{:?}", w[0].0.as_ref()),
                ));
            }
        }
        Ok(())
    }

    /// Parses the field set starting at its first key; leaves `i` after the last value and
    /// reports whether a space (and so maybe a timestamp) follows.
    fn parse_fields(&mut self, line: &mut Line<'a>, i: &mut usize) -> Result<bool, Fail> {
        let b = self.body;
        line.fields.reserve(self.field_hint);
        self.field_prints.clear();
        self.field_map = None;
        let mut time_pos = None;
        loop {
            let key_pos = *i;
            let (key, end) = self.scan_name(key_pos, Part::FieldKey)?;
            *i = end;
            if key.is_empty() {
                return Err(self.fail(key_pos, "missing field key", ""));
            }
            if b.get(*i) != Some(&b'=') {
                return Err(self.fail(
                    *i,
                    "missing field value",
                    format_args!("field key {:?} must be followed by '=' and a value", key.as_ref()),
                ));
            }
            *i += 1;
            let (value, end) = self.parse_value(*i, &key)?;
            *i = end;
            let more = match b.get(*i) {
                Some(b',') => true,
                Some(&c) if c != b' ' && !self.is_eol(*i) => {
                    return Err(self.fail(
                        *i,
                        "unexpected character",
                        format_args!(
                            "{} after the value of field {:?}: expected ',', a space or the end of the line",
                            show_char(c),
                            key.as_ref()
                        ),
                    ));
                }
                _ => false,
            };

            if key == "time" {
                // InfluxDB drops a field named "time" and keeps the rest of the point.
                time_pos = Some(key_pos);
            } else if let Some(j) = self.find_field(&line.fields, &key) {
                line.fields[j].1 = value;
            } else {
                line.fields.push((key, value));
            }

            if !more {
                break;
            }
            *i += 1;
        }
        if line.fields.is_empty()
            && let Some(pos) = time_pos
        {
            return Err(self.fail(
                pos,
                "invalid field name",
                format_args!(
                    "input field \"time\" on measurement {:?} is invalid",
                    line.measurement.as_ref()
                ),
            ));
        }
        Ok(b.get(*i) == Some(&b' '))
    }

    /// The index of an earlier field named `key`, or None after noting `key` as the next field.
    fn find_field(&mut self, fields: &[(Cow<'a, str>, FieldValue<'a>)], key: &str) -> Option<usize> {
        if let Some(map) = &mut self.field_map {
            if let Some(&j) = map.get(key) {
                return Some(j);
            }
            map.insert(key.to_owned(), fields.len());
            return None;
        }
        let print = fingerprint(key.as_bytes());
        for (j, &p) in self.field_prints.iter().enumerate() {
            if p == print && fields.get(j).is_some_and(|(k, _)| k == key) {
                return Some(j);
            }
        }
        self.field_prints.push(print);
        if self.field_prints.len() > LINEAR_DEDUP_MAX {
            let mut map: HashMap<String, usize> = fields
                .iter()
                .enumerate()
                .map(|(j, (k, _))| (k.to_string(), j))
                .collect();
            map.insert(key.to_owned(), fields.len());
            self.field_map = Some(map);
        }
        None
    }

    /// Scans a name from `start` to the first unescaped delimiter of its part (or the line's end)
    /// and unescapes it; returns it with the delimiter's offset.
    fn scan_name(&self, start: usize, part: Part) -> Result<(Cow<'a, str>, usize), Fail> {
        let b = self.body;
        let mut i = start;
        let mut escaped = false;
        loop {
            while i < b.len() && !NAME_STOP[b[i] as usize] {
                i += 1;
            }
            let Some(&c) = b.get(i) else { break };
            match c {
                b'\\' => {
                    if b.get(i + 1).is_some_and(|&n| part.escapes(n)) {
                        escaped = true;
                        i += 2;
                    } else {
                        i += 1;
                    }
                }
                b'=' if part == Part::Measurement => i += 1,
                b' ' | b',' | b'=' | b'\n' => break,
                b'\r' if self.is_eol(i) => break,
                _ => {
                    return Err(self.fail(
                        i,
                        format_args!("invalid character U+{c:04X} in {}", part.name()),
                        "control characters are only allowed inside string field values",
                    ));
                }
            }
        }
        let Some(raw) = self.text(start, i) else {
            return Err(self.fail(start, format_args!("invalid UTF-8 in {}", part.name()), ""));
        };
        let name = if escaped {
            Cow::Owned(unescape_name(raw, part))
        } else {
            Cow::Borrowed(raw)
        };
        Ok((name, i))
    }

    /// Parses the field value at `i`; returns it with the offset just after it.
    fn parse_value(&mut self, i: usize, key: &str) -> Result<(FieldValue<'a>, usize), Fail> {
        let b = self.body;
        match b.get(i) {
            Some(b'"') => return self.parse_string(i, key),
            None | Some(b',' | b' ') => {
                return Err(self.fail(i, "missing field value", format_args!("field {key:?} has no value")));
            }
            Some(_) if self.is_eol(i) => {
                return Err(self.fail(i, "missing field value", format_args!("field {key:?} has no value")));
            }
            _ => {}
        }
        if let b'-' | b'0'..=b'9' | b'.' = b[i] {
            return self.parse_number_at(i, key);
        }
        let end = self.token_end(i, true);
        let tok = &b[i..end];
        let value = match tok {
            b"t" | b"T" | b"true" | b"True" | b"TRUE" => FieldValue::Bool(true),
            b"f" | b"F" | b"false" | b"False" | b"FALSE" => FieldValue::Bool(false),
            [b't' | b'T' | b'f' | b'F', ..] => {
                return Err(self.fail(
                    i,
                    "invalid boolean",
                    format_args!(
                        "{} for field {key:?} (use t, T, true, True, TRUE, f, F, false, False or FALSE)",
                        show(tok)
                    ),
                ));
            }
            _ if is_nan_or_inf(tok) => {
                return Err(self.fail(
                    i,
                    "invalid field value",
                    format_args!("{} for field {key:?}: NaN and infinity are not supported", show(tok)),
                ));
            }
            _ => {
                return Err(self.fail(
                    i,
                    "invalid field value",
                    format_args!("expected number, boolean or quoted string, found {}", show(tok)),
                ));
            }
        };
        Ok((value, end))
    }

    /// Parses the number at `i` in one pass over its bytes, then checks that a delimiter follows.
    fn parse_number_at(&self, i: usize, key: &str) -> Result<(FieldValue<'a>, usize), Fail> {
        let b = self.body;
        let (result, len) = scan_number(&b[i..]);
        let end = i + len;
        let terminated = match b.get(end) {
            None | Some(b',' | b' ' | b'\n') => true,
            Some(_) => self.is_eol(end),
        };
        let err = match (result, terminated) {
            (Ok(v), true) => return Ok((v, end)),
            (Err(e @ NumError::Syntax(_)), _) | (Err(e), true) => e,
            (_, false) => NumError::Syntax(match b[end] {
                b'.' => "more than one decimal point",
                _ if matches!(b[end - 1], b'i' | b'u') => "a type suffix must be the last character",
                _ => "not a number",
            }),
        };
        let tok = &b[i..self.token_end(i, true)];
        Err(self.number_fail(i, tok, key, err))
    }

    fn number_fail(&self, i: usize, tok: &[u8], key: &str, e: NumError) -> Fail {
        let t = show(tok);
        match e {
            _ if is_nan_or_inf(tok) => self.fail(
                i,
                "invalid field value",
                format_args!("{t} for field {key:?}: NaN and infinity are not supported"),
            ),
            NumError::Syntax(why) => self.fail(i, "invalid number", format_args!("{t} for field {key:?}: {why}")),
            NumError::IntRange => self.fail(
                i,
                "integer out of range",
                format_args!("{t} for field {key:?} is outside -9223372036854775808i..9223372036854775807i"),
            ),
            NumError::UIntRange => self.fail(
                i,
                "unsigned integer out of range",
                format_args!("{t} for field {key:?} is outside 0u..18446744073709551615u"),
            ),
            NumError::Negative => self.fail(
                i,
                "invalid number",
                format_args!("{t} for field {key:?}: an unsigned integer cannot be negative"),
            ),
            NumError::FloatRange => self.fail(
                i,
                "float out of range",
                format_args!("{t} for field {key:?} is too large for a 64-bit float"),
            ),
        }
    }

    /// Parses the quoted string whose opening quote is at `open`.
    fn parse_string(&mut self, open: usize, key: &str) -> Result<(FieldValue<'a>, usize), Fail> {
        let b = self.body;
        let (line_no, line_start) = (self.line_no, self.line_start);
        let mut j = open + 1;
        let mut escaped = false;
        loop {
            while j < b.len() && !STRING_STOP[b[j] as usize] {
                j += 1;
            }
            match b.get(j) {
                Some(b'"') => break,
                Some(b'\\') => {
                    if matches!(b.get(j + 1), Some(b'"' | b'\\')) {
                        escaped = true;
                        j += 2;
                    } else {
                        j += 1;
                    }
                }
                Some(_) => {
                    // A newline inside the string: allowed, as InfluxDB does and Telegraf sends.
                    j += 1;
                    self.line_no += 1;
                    self.line_start = j;
                }
                None => {
                    (self.line_no, self.line_start) = (line_no, line_start);
                    return Err(self.fail(
                        open,
                        "unterminated string",
                        format_args!("the value of field {key:?} has no closing quote"),
                    ));
                }
            }
        }
        let Some(raw) = self.text(open + 1, j) else {
            (self.line_no, self.line_start) = (line_no, line_start);
            return Err(self.fail(
                open + 1,
                "invalid UTF-8 in string field value",
                format_args!("field {key:?}"),
            ));
        };
        let value = if escaped {
            Cow::Owned(unescape_string(raw))
        } else {
            Cow::Borrowed(raw)
        };
        Ok((FieldValue::Str(value), j + 1))
    }

    /// Parses the timestamp at `i`, then checks that only spaces follow it on the line.
    fn parse_timestamp(&self, i: &mut usize) -> Result<i64, Fail> {
        let b = self.body;
        let start = *i;
        let digits = start + usize::from(b.get(start) == Some(&b'-'));
        let mut end = digits;
        while end < b.len() && b[end].is_ascii_digit() {
            end += 1;
        }
        if end == digits || !(b.get(end) == Some(&b' ') || self.is_eol(end)) {
            end = self.token_end(start, false);
        }
        let tok = &b[start..end];
        let ts = match parse_timestamp(tok) {
            Some(Ok(ts)) => ts,
            Some(Err(())) => {
                return Err(self.fail(
                    start,
                    "timestamp out of range",
                    format_args!("{} does not fit in a signed 64-bit integer", show(tok)),
                ));
            }
            None => {
                return Err(self.fail(
                    start,
                    "invalid timestamp",
                    format_args!("expected an integer, found {}", show(tok)),
                ));
            }
        };
        if let Some(p) = self.precision
            && p.to_nanos(ts).is_none()
        {
            return Err(self.fail(
                start,
                "timestamp out of range",
                format_args!("{ts} {p} is outside the storable range, -9223372036854775806 to 9223372036854775806 ns"),
            ));
        }
        *i = end;
        while b.get(*i) == Some(&b' ') {
            *i += 1;
        }
        if !self.is_eol(*i) {
            let extra = &b[*i..self.token_end(*i, false)];
            return Err(self.fail(*i, "unexpected text after the timestamp", show(extra)));
        }
        Ok(ts)
    }

    /// The end of the token at `i`: the next space or line end, and also the next comma if
    /// `comma`.
    fn token_end(&self, mut i: usize, comma: bool) -> usize {
        let b = self.body;
        while i < b.len() {
            match b[i] {
                b' ' | b'\n' => break,
                b',' if comma => break,
                b'\r' if self.is_eol(i) => break,
                _ => i += 1,
            }
        }
        i
    }

    /// Moves past the line end at `i`.
    fn finish_line(&mut self, i: usize) {
        match self.body.get(i) {
            None => self.pos = self.body.len(),
            Some(b'\r') => self.next_line((i + 2).min(self.body.len())),
            Some(_) => self.next_line(i + 1),
        }
    }
}

impl<'a> Iterator for LineIter<'a> {
    type Item = Result<Line<'a>, LineError>;

    fn next(&mut self) -> Option<Self::Item> {
        if !self.skip_to_entry() {
            return None;
        }
        let mut line = Line {
            measurement: Cow::Borrowed(""),
            tags: Vec::with_capacity(self.tag_hint),
            fields: Vec::with_capacity(self.field_hint),
            timestamp: None,
        };
        let (first, start) = (self.line_no, self.pos);
        let result = self.parse_or_recover(&mut line).map(|()| line);
        self.last_entry = (first, self.pos.saturating_sub(start));
        Some(result)
    }
}

impl FusedIterator for LineIter<'_> {}

fn unescape_name(raw: &str, part: Part) -> String {
    let bytes = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    let mut seg = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && bytes.get(i + 1).is_some_and(|&n| part.escapes(n)) {
            // Both offsets are at ASCII bytes, so they are character boundaries.
            out.push_str(&raw[seg..i]);
            seg = i + 1;
            i += 2;
        } else {
            i += 1;
        }
    }
    out.push_str(&raw[seg..]);
    out
}

/// `\"` is a quote and `\\` a backslash; any other backslash is kept as written, as in InfluxDB.
fn unescape_string(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    let mut seg = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && matches!(bytes.get(i + 1), Some(b'"' | b'\\')) {
            out.push_str(&raw[seg..i]);
            seg = i + 1;
            i += 2;
        } else {
            i += 1;
        }
    }
    out.push_str(&raw[seg..]);
    out
}

/// A cheap stand-in for a field key when looking for repeats: equal keys have equal prints.
fn fingerprint(k: &[u8]) -> u64 {
    let n = k.len() as u64;
    match (k.first_chunk::<8>(), k.last_chunk::<8>()) {
        (Some(head), Some(tail)) => {
            u64::from_le_bytes(*head)
                ^ u64::from_le_bytes(*tail).rotate_left(29)
                ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15)
        }
        // Shifting in registers: copying into a stack buffer and loading it back stalls the CPU.
        _ => k.iter().fold(n << 59, |h, &c| (h << 8) | u64::from(c)),
    }
}

#[derive(Debug, PartialEq)]
enum NumError {
    Syntax(&'static str),
    IntRange,
    UIntRange,
    Negative,
    FloatRange,
}

/// Scans the number at the start of `s`, in the published grammar's forms: `[-]digits i`,
/// `digits u`, or a float `[-](digits[.[digits]]|.digits)[(e|E)[+|-]digits]`. Returns the value,
/// or why the bytes are not one, and how many bytes were taken; the caller checks what follows.
///
/// Floats are converted exactly with one multiplication or division when the significant digits
/// and the power of ten are both exact in an f64 (most metrics), and by the standard library
/// otherwise.
fn scan_number(s: &[u8]) -> (Result<FieldValue<'static>, NumError>, usize) {
    let neg = s.first() == Some(&b'-');
    let mut p = usize::from(neg);
    // The integer part exactly (for i and u), and the first 19 significant digits with their
    // power of ten (for floats).
    let mut exact: Option<u64> = Some(0);
    let mut mant: u64 = 0;
    let mut sig = 0u32;
    let mut exp10: i64 = 0;
    let int_start = p;
    while let Some(&c) = s.get(p) {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            break;
        }
        let d = u64::from(d);
        exact = exact.and_then(|v| v.checked_mul(10)?.checked_add(d));
        if mant != 0 || d != 0 {
            sig += 1;
            if sig <= 19 {
                mant = mant * 10 + d;
            } else {
                exp10 += 1;
            }
        }
        p += 1;
    }
    let int_digits = p - int_start;
    match s.get(p) {
        Some(b'i') if int_digits > 0 => {
            let v = match exact {
                Some(m) if neg && m <= 1 << 63 => Ok(FieldValue::Int((m as i64).wrapping_neg())),
                Some(m) if !neg => i64::try_from(m).map(FieldValue::Int).map_err(|_| NumError::IntRange),
                _ => Err(NumError::IntRange),
            };
            return (v, p + 1);
        }
        Some(b'u') if int_digits > 0 => {
            let v = if neg {
                Err(NumError::Negative)
            } else {
                exact.map(FieldValue::UInt).ok_or(NumError::UIntRange)
            };
            return (v, p + 1);
        }
        _ => {}
    }
    let mut frac_digits = 0;
    if s.get(p) == Some(&b'.') {
        p += 1;
        while let Some(&c) = s.get(p) {
            let d = c.wrapping_sub(b'0');
            if d > 9 {
                break;
            }
            if mant != 0 || d != 0 {
                sig += 1;
                if sig <= 19 {
                    mant = mant * 10 + u64::from(d);
                    exp10 -= 1;
                }
            } else {
                exp10 -= 1;
            }
            frac_digits += 1;
            p += 1;
        }
    }
    if int_digits + frac_digits == 0 {
        return (Err(NumError::Syntax("expected digits")), p);
    }
    if let Some(b'e' | b'E') = s.get(p) {
        p += 1;
        let eneg = s.get(p) == Some(&b'-');
        if let Some(b'-' | b'+') = s.get(p) {
            p += 1;
        }
        let estart = p;
        let mut e: i64 = 0;
        while let Some(&c) = s.get(p) {
            if !c.is_ascii_digit() {
                break;
            }
            // Saturate: anything this large is out of range (or zero) either way.
            e = (e * 10 + i64::from(c - b'0')).min(1_000_000);
            p += 1;
        }
        if p == estart {
            return (Err(NumError::Syntax("expected digits after the exponent")), p);
        }
        exp10 += if eneg { -e } else { e };
    }
    if let Some(b'i' | b'u') = s.get(p) {
        return (
            Err(NumError::Syntax(
                "an integer cannot have a decimal point or an exponent",
            )),
            p + 1,
        );
    }
    let v = if sig <= 19 && mant <= 1 << 53 && (-22..=22).contains(&exp10) {
        // Both operands are exact, so the one rounding of the operation is the correct result.
        let m = mant as f64;
        let e = exp10.unsigned_abs() as usize;
        if exp10 < 0 { m / POW10[e] } else { m * POW10[e] }
    } else {
        // The grammar checked above is a subset of what the standard library parses.
        match std::str::from_utf8(&s[usize::from(neg)..p])
            .ok()
            .and_then(|t| t.parse::<f64>().ok())
        {
            Some(v) => v,
            None => return (Err(NumError::Syntax("not a number")), p),
        }
    };
    if !v.is_finite() {
        return (Err(NumError::FloatRange), p);
    }
    (Ok(FieldValue::Float(if neg { -v } else { v })), p)
}

/// Decimal digits to u64: None if `d` is empty or not all digits, Some(None) on overflow.
fn parse_digits(d: &[u8]) -> Option<Option<u64>> {
    if d.is_empty() {
        return None;
    }
    let mut v: u64 = 0;
    for (n, &c) in d.iter().enumerate() {
        let x = c.wrapping_sub(b'0');
        if x > 9 {
            return None;
        }
        // Up to 19 digits cannot overflow a u64; only longer numbers need the checks.
        v = if n < 19 {
            v * 10 + u64::from(x)
        } else {
            match v.checked_mul(10).and_then(|v| v.checked_add(u64::from(x))) {
                Some(v) => v,
                None => {
                    return if d[n..].iter().all(u8::is_ascii_digit) {
                        Some(None)
                    } else {
                        None
                    };
                }
            }
        };
    }
    Some(Some(v))
}

/// `[-]digits`: None if that is not the token's form, Some(Err) if it does not fit in an i64.
fn parse_timestamp(tok: &[u8]) -> Option<Result<i64, ()>> {
    let (neg, digits) = match tok.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, tok),
    };
    let mag = parse_digits(digits)?;
    Some(match mag {
        Some(m) if neg && m <= 1 << 63 => Ok((m as i64).wrapping_neg()),
        Some(m) if !neg => i64::try_from(m).map_err(|_| ()),
        _ => Err(()),
    })
}

fn is_nan_or_inf(tok: &[u8]) -> bool {
    let t = match tok.split_first() {
        Some((b'-' | b'+', rest)) => rest,
        _ => tok,
    };
    t.eq_ignore_ascii_case(b"nan") || t.eq_ignore_ascii_case(b"inf") || t.eq_ignore_ascii_case(b"infinity")
}

/// A token for an error message: quoted, escaped, and cut short if long.
fn show(tok: &[u8]) -> String {
    const MAX: usize = 40;
    let text = String::from_utf8_lossy(tok);
    if text.chars().count() <= MAX {
        format!("{text:?}")
    } else {
        let cut: String = text.chars().take(MAX).collect();
        format!("{cut:?}...")
    }
}

fn show_char(c: u8) -> String {
    if c.is_ascii_graphic() {
        format!("'{}'", c as char)
    } else {
        format!("byte 0x{c:02X}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The number that is the whole of `tok`.
    fn parse_number(tok: &[u8]) -> Result<FieldValue<'static>, NumError> {
        match scan_number(tok) {
            (Ok(v), n) if n == tok.len() => Ok(v),
            (Ok(_), _) => Err(NumError::Syntax("trailing bytes")),
            (Err(e), _) => Err(e),
        }
    }

    fn float(s: &str) -> Result<f64, NumError> {
        match parse_number(s.as_bytes())? {
            FieldValue::Float(f) => Ok(f),
            other => panic!("{s} parsed as {other:?}"),
        }
    }

    #[test]
    fn fast_float_path_is_exact() {
        for s in [
            "0",
            "1",
            "-1",
            "0.1",
            "98.59154929577464",
            "0.7042253521126761",
            "1e22",
            "1e-22",
            "123456789012345678",
            "1234567890123456789012",
            "0.000000000000000000000000001",
            "9007199254740993",
            "1.7976931348623157e308",
            "2.2250738585072014e-308",
            "4.9e-324",
            "1.",
            ".5",
            "-.5",
            "00012.50",
            "1E+3",
            "1e-3",
        ] {
            let want: f64 = s.parse().unwrap_or_else(|_| panic!("{s}"));
            assert_eq!(float(s).map(f64::to_bits), Ok(want.to_bits()), "{s}");
        }
        assert_eq!(float("-0.0").map(f64::to_bits), Ok((-0.0f64).to_bits()));
        assert_eq!(float("1e400"), Err(NumError::FloatRange));
        assert_eq!(float("1e-400"), Ok(0.0));
    }

    #[test]
    fn float_grammar() {
        for bad in [
            "", "-", ".", "-.", "1e", "1e+", "1.2.3", "1-2", "+1", "1f", "0x10", "1_000", "1e5.5", "e5",
        ] {
            assert!(
                matches!(parse_number(bad.as_bytes()), Err(NumError::Syntax(_))),
                "{bad:?} should be refused"
            );
        }
    }

    #[test]
    fn integer_bounds() {
        assert_eq!(parse_number(b"9223372036854775807i"), Ok(FieldValue::Int(i64::MAX)));
        assert_eq!(parse_number(b"-9223372036854775808i"), Ok(FieldValue::Int(i64::MIN)));
        assert_eq!(parse_number(b"9223372036854775808i"), Err(NumError::IntRange));
        assert_eq!(parse_number(b"-9223372036854775809i"), Err(NumError::IntRange));
        assert_eq!(parse_number(b"99999999999999999999999i"), Err(NumError::IntRange));
        assert_eq!(parse_number(b"18446744073709551615u"), Ok(FieldValue::UInt(u64::MAX)));
        assert_eq!(parse_number(b"18446744073709551616u"), Err(NumError::UIntRange));
        assert_eq!(parse_number(b"-1u"), Err(NumError::Negative));
        assert!(matches!(parse_number(b"1.0i"), Err(NumError::Syntax(_))));
        assert!(matches!(parse_number(b"1i1"), Err(NumError::Syntax(_))));
        assert!(matches!(parse_number(b"-i"), Err(NumError::Syntax(_))));
    }

    #[test]
    fn fingerprints_of_equal_keys_are_equal() {
        for k in [
            "a",
            "usage_idle",
            "usage_nice",
            "exactly8",
            "a much longer key with spaces",
        ] {
            assert_eq!(fingerprint(k.as_bytes()), fingerprint(k.to_string().as_bytes()));
        }
        assert_ne!(fingerprint(b"usage_idle"), fingerprint(b"usage_nice"));
    }

    #[test]
    fn many_fields_use_the_map_and_still_find_repeats() {
        let mut text = String::from("m ");
        for i in 0..200 {
            let _ = write!(text, "f{i}={i}i,");
        }
        text.push_str("f7=-1i,f150=-2i");
        let line = parse_lines(text.as_bytes())
            .next()
            .and_then(Result::ok)
            .expect("parses");
        assert_eq!(line.fields.len(), 200);
        assert_eq!(line.fields[7], (Cow::Borrowed("f7"), FieldValue::Int(-1)));
        assert_eq!(line.fields[150], (Cow::Borrowed("f150"), FieldValue::Int(-2)));
    }

    #[test]
    fn precision_conversion() {
        assert_eq!(Precision::S.to_nanos(1), Some(1_000_000_000));
        assert_eq!(Precision::H.to_nanos(-2), Some(-7_200_000_000_000));
        assert_eq!(Precision::S.to_nanos(i64::MAX / 1_000_000_000 + 1), None);
        assert_eq!(Precision::Ns.to_nanos(i64::MAX), None);
        assert_eq!(Precision::Ns.to_nanos(i64::MAX - 1), Some(i64::MAX - 1));
        assert_eq!(Precision::Ns.to_nanos(i64::MIN + 1), None);
        assert_eq!(Precision::Ns.to_nanos(i64::MIN + 2), Some(i64::MIN + 2));
    }
}
