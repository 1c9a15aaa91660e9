//! The parameters of the query API (`GET /api/v1/query` and `GET /api/v1/series`): the series
//! selector `measurement.field{tag="v",other=~"re.*"}`, the time range, the bucket step and the
//! aggregation. Everything a client can get wrong is caught here, before the store is touched,
//! and each error names the parameter and, for selectors, points at the offending byte.
//! docs/query.md is the user-facing description of everything here; keep them in step.

use std::fmt;
use std::str::FromStr;

use regex::{Regex, RegexBuilder};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// `from` defaults to this long before `to`.
pub const DEFAULT_RANGE_MS: i64 = HOUR_MS;
/// The longest `step`: one bucket per leap year is coarser than any dashboard needs.
pub const MAX_STEP_MS: i64 = 366 * DAY_MS;
/// The longest selector accepted, in bytes. Long enough for a regex alternation of a few hundred
/// host names; the limit keeps error messages (which echo the selector) and regex compilation
/// bounded.
pub const MAX_SELECTOR_LEN: usize = 16 * 1024;
/// The compiled size a regex matcher may take. The pattern comes from the network; the `regex`
/// crate's own default (10 MiB) would let one request make the server compile a very large program.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

const SECOND_MS: i64 = 1_000;
const MINUTE_MS: i64 = 60 * SECOND_MS;
const HOUR_MS: i64 = 60 * MINUTE_MS;
const DAY_MS: i64 = 24 * HOUR_MS;
const WEEK_MS: i64 = 7 * DAY_MS;

/// A parameter the client got wrong. `Display` is `"<param>: <message>"`, the text of a
/// `bad_request` response.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{param}: {message}")]
pub struct QueryError {
    /// The query-string parameter at fault: `q`, `from`, `to`, `step`, `agg`, or `time`/`range`
    /// from the stand-alone parsers (callers may overwrite it with their own parameter's name).
    pub param: &'static str,
    pub message: String,
}

impl QueryError {
    fn new(param: &'static str, message: impl Into<String>) -> QueryError {
        QueryError {
            param,
            message: message.into(),
        }
    }
}

/// How a tag matcher compares the tag's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MatchOp {
    /// `=`: equal.
    Eq,
    /// `!=`: not equal.
    Ne,
    /// `=~`: the whole value matches the regex.
    Re,
    /// `!~`: the whole value does not match the regex.
    NotRe,
}

impl MatchOp {
    pub fn as_str(self) -> &'static str {
        match self {
            MatchOp::Eq => "=",
            MatchOp::Ne => "!=",
            MatchOp::Re => "=~",
            MatchOp::NotRe => "!~",
        }
    }
}

/// One `tag<op>"value"` term of a selector.
#[derive(Clone, Debug)]
pub struct Matcher {
    pub tag: String,
    pub op: MatchOp,
    /// The value as written (unescaped); for `Re`/`NotRe` the pattern before anchoring.
    pub value: String,
    /// For `Re` and `NotRe`: `value` compiled and anchored at both ends. `None` for `Eq`/`Ne`.
    pub regex: Option<Regex>,
}

impl Matcher {
    /// Builds a matcher, compiling the regex of `Re`/`NotRe`. The error's `param` is `q`.
    pub fn new(tag: impl Into<String>, op: MatchOp, value: impl Into<String>) -> Result<Matcher, QueryError> {
        let value = value.into();
        let regex = match op {
            MatchOp::Eq | MatchOp::Ne => None,
            MatchOp::Re | MatchOp::NotRe => Some(compile_anchored(&value).map_err(|m| QueryError::new("q", m))?),
        };
        Ok(Matcher {
            tag: tag.into(),
            op,
            value,
            regex,
        })
    }

    /// Whether a series whose tag `self.tag` has `value` passes. A missing tag counts as the empty
    /// string, as in PromQL: `host=""` selects series without a `host` tag, `host!=""` those with one.
    pub fn matches(&self, value: Option<&str>) -> bool {
        let value = value.unwrap_or("");
        // A hand-built matcher without its regex matches nothing with `=~` (and so everything with
        // `!~`) rather than panicking on a series lookup; `Matcher::new` and the parser always set it.
        let re = || self.regex.as_ref().is_some_and(|r| r.is_match(value));
        match self.op {
            MatchOp::Eq => value == self.value,
            MatchOp::Ne => value != self.value,
            MatchOp::Re => re(),
            MatchOp::NotRe => !re(),
        }
    }
}

/// The regex is derived from `op` and `value`, so those (with `tag`) are the whole identity.
impl PartialEq for Matcher {
    fn eq(&self, other: &Matcher) -> bool {
        self.tag == other.tag && self.op == other.op && self.value == other.value
    }
}

impl Eq for Matcher {}

/// Compiles `pattern` so that it must match the whole value, like PromQL's `=~`.
fn compile_anchored(pattern: &str) -> Result<Regex, String> {
    let build = |p: &str| RegexBuilder::new(p).size_limit(REGEX_SIZE_LIMIT).build();
    // Validated alone first: a pattern such as `a)|(b` is not valid by itself but would become a
    // valid, no longer anchored, regex once wrapped in `\A(?:...)\z`.
    build(pattern).map_err(regex_message)?;
    build(&format!(r"\A(?:{pattern})\z")).map_err(regex_message)
}

/// The one-line reason out of the `regex` crate's error, whose `Display` is a multi-line report
/// with its own caret (relative to the pattern, not to the selector).
fn regex_message(err: regex::Error) -> String {
    match err {
        regex::Error::CompiledTooBig(limit) => format!("regex too large (compiled size limit {limit} bytes)"),
        regex::Error::Syntax(text) => {
            let reason = text
                .lines()
                .find_map(|l| l.trim().strip_prefix("error: "))
                .or_else(|| text.lines().map(str::trim).rfind(|l| !l.is_empty()))
                .unwrap_or("syntax error");
            format!("invalid regex: {reason}")
        }
        other => format!("invalid regex: {other}"),
    }
}

/// A parsed `q`: which series of which measurement, and which of their fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selector {
    pub measurement: String,
    /// `None` selects every field of the measurement.
    pub field: Option<String>,
    /// All must hold; the same tag may appear more than once.
    pub matchers: Vec<Matcher>,
}

impl FromStr for Selector {
    type Err = QueryError;

    fn from_str(s: &str) -> Result<Selector, QueryError> {
        parse_selector(s)
    }
}

/// The canonical spelling, which parses back to the same selector: names quoted only when they
/// are not bare identifiers, no whitespace.
impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_name(f, &self.measurement)?;
        if let Some(field) = &self.field {
            f.write_str(".")?;
            write_name(f, field)?;
        }
        if !self.matchers.is_empty() {
            f.write_str("{")?;
            for (i, m) in self.matchers.iter().enumerate() {
                if i > 0 {
                    f.write_str(",")?;
                }
                write_name(f, &m.tag)?;
                f.write_str(m.op.as_str())?;
                write_quoted(f, &m.value)?;
            }
            f.write_str("}")?;
        }
        Ok(())
    }
}

fn is_bare(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(is_name_start) && bytes.all(is_name_char)
}

fn write_name(f: &mut fmt::Formatter<'_>, name: &str) -> fmt::Result {
    if is_bare(name) {
        f.write_str(name)
    } else {
        write_quoted(f, name)
    }
}

/// Escapes only what must be: every `"`, and a `\` that ends the string or stands before a `"`
/// or another `\` (elsewhere a backslash is kept as written), so that the text is never longer
/// than the selector it came from, whose length was within `MAX_SELECTOR_LEN`; and regexes read
/// as written (`"10\.0\..*"`).
fn write_quoted(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    f.write_str("\"")?;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        let escape = match c {
            '"' => true,
            '\\' => matches!(chars.peek(), None | Some('"' | '\\')),
            _ => false,
        };
        if escape {
            f.write_str("\\")?;
        }
        write!(f, "{c}")?;
    }
    f.write_str("\"")
}

fn is_name_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

fn is_name_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b':' | b'-')
}

/// Parses a selector: `measurement[.field][{matcher, ...}]`. See docs/query.md for the grammar.
pub fn parse_selector(s: &str) -> Result<Selector, QueryError> {
    if s.len() > MAX_SELECTOR_LEN {
        return Err(QueryError::new(
            "q",
            format!("selector is {} bytes; the limit is {MAX_SELECTOR_LEN}", s.len()),
        ));
    }
    if s.trim().is_empty() {
        return Err(QueryError::new(
            "q",
            "empty selector; expected e.g. `cpu.usage{host=\"a\"}`",
        ));
    }
    let mut p = Parser { src: s, pos: 0 };
    p.skip_ws();
    if !p.at_name() {
        return Err(p.error(p.pos, "expected a measurement name"));
    }
    let measurement = p.name()?;
    let field = if p.peek() == Some(b'.') {
        p.pos += 1;
        if !p.at_name() {
            return Err(p.error(p.pos, "expected a field name after `.`"));
        }
        Some(p.name()?)
    } else {
        None
    };
    p.skip_ws();
    let mut matchers = Vec::new();
    let braces = p.peek() == Some(b'{');
    if braces {
        p.pos += 1;
        p.matchers(&mut matchers)?;
        p.skip_ws();
    }
    match p.peek() {
        None => {}
        Some(_) if braces => return Err(p.error(p.pos, "expected the end of the selector")),
        Some(b'.') if field.is_some() => {
            return Err(p.error(
                p.pos,
                "unexpected `.` after the field name (quote a name with dots: `\"a.b\"`)",
            ));
        }
        Some(_) => {
            let what = if field.is_some() { "`{`" } else { "`.field`, `{`" };
            return Err(p.error(p.pos, format!("expected {what} or the end of the selector")));
        }
    }
    Ok(Selector {
        measurement,
        field,
        matchers,
    })
}

/// A cursor over the selector. Every token of the grammar is ASCII, so it steps over bytes and
/// only quoted strings (which may hold any UTF-8) are decoded as chars.
struct Parser<'a> {
    src: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.src.as_bytes().get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_whitespace()) {
            self.pos += 1;
        }
    }

    fn at_name(&self) -> bool {
        self.peek().is_some_and(|b| is_name_start(b) || b == b'"')
    }

    /// A bare or quoted name; the caller has checked `at_name`.
    fn name(&mut self) -> Result<String, QueryError> {
        let start = self.pos;
        if self.peek() == Some(b'"') {
            let name = self.quoted()?;
            if name.is_empty() {
                return Err(self.error(start, "empty name"));
            }
            return Ok(name);
        }
        while self.peek().is_some_and(is_name_char) {
            self.pos += 1;
        }
        Ok(self.src[start..self.pos].to_string())
    }

    /// A double-quoted string at `self.pos`. `\"` and `\\` are escapes; a backslash before any
    /// other character is kept, so that regexes such as `"10\.0\..*"` need no doubled backslashes.
    fn quoted(&mut self) -> Result<String, QueryError> {
        let start = self.pos;
        let mut out = String::new();
        let mut chars = self.src[start + 1..].char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    self.pos = start + 1 + i + 1;
                    return Ok(out);
                }
                '\\' => match chars.next() {
                    Some((_, e @ ('"' | '\\'))) => out.push(e),
                    Some((_, other)) => {
                        out.push('\\');
                        out.push(other);
                    }
                    None => break,
                },
                c => out.push(c),
            }
        }
        Err(self.error(start, "unterminated string starting"))
    }

    /// The matchers after `{`, up to and including `}`.
    fn matchers(&mut self, out: &mut Vec<Matcher>) -> Result<(), QueryError> {
        loop {
            self.skip_ws();
            if self.peek() == Some(b'}') {
                self.pos += 1;
                return Ok(());
            }
            if !self.at_name() {
                return Err(self.error(self.pos, "expected a tag name or `}`"));
            }
            let tag = self.name()?;
            self.skip_ws();
            let rest = &self.src.as_bytes()[self.pos..];
            let op = if rest.starts_with(b"=~") {
                MatchOp::Re
            } else if rest.starts_with(b"!=") {
                MatchOp::Ne
            } else if rest.starts_with(b"!~") {
                MatchOp::NotRe
            } else if rest.starts_with(b"=") {
                MatchOp::Eq
            } else {
                return Err(self.error(self.pos, "expected `=`, `!=`, `=~` or `!~` after tag name"));
            };
            self.pos += op.as_str().len();
            self.skip_ws();
            let value_at = self.pos;
            match self.peek() {
                Some(b'"') => {}
                Some(b'\'') => return Err(self.error(value_at, "values are written in double quotes, not single")),
                _ => {
                    let op = op.as_str();
                    return Err(self.error(value_at, format!("expected a double-quoted value after `{op}`")));
                }
            }
            let value = self.quoted()?;
            let matcher = Matcher::new(tag, op, value).map_err(|e| self.error(value_at, e.message))?;
            out.push(matcher);
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return Err(self.error(self.pos, "expected `,` or `}`")),
            }
        }
    }

    /// `"<what> at column N"` followed by the selector and a caret under byte `at` (which may be
    /// the end of the input). Columns count bytes from 1; the caret line counts chars so that it
    /// still lines up under non-ASCII names.
    fn error(&self, at: usize, what: impl fmt::Display) -> QueryError {
        // Control characters (a `%0A` in the URL) would break the two-line picture; each is shown
        // as one space so the caret stays aligned.
        let shown: String = self.src.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
        let pad = " ".repeat(self.src[..at].chars().count());
        QueryError::new("q", format!("{what} at column {}\n  {shown}\n  {pad}^", at + 1))
    }
}

/// An aggregation applied to the points of each bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Agg {
    Avg,
    Min,
    Max,
    Sum,
    Count,
    Last,
    Median,
    P95,
    P99,
    Stddev,
    Rate,
}

impl Agg {
    pub const ALL: [Agg; 11] = [
        Agg::Avg,
        Agg::Min,
        Agg::Max,
        Agg::Sum,
        Agg::Count,
        Agg::Last,
        Agg::Median,
        Agg::P95,
        Agg::P99,
        Agg::Stddev,
        Agg::Rate,
    ];

    /// Parses an `agg` value, ignoring ASCII case; `p50` is accepted for `median`.
    pub fn parse(s: &str) -> Result<Agg, QueryError> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("p50") {
            return Ok(Agg::Median);
        }
        Agg::ALL
            .into_iter()
            .find(|a| t.eq_ignore_ascii_case(a.name()))
            .ok_or_else(|| {
                QueryError::new(
                    "agg",
                    format!(
                        "unknown aggregation `{}`; expected one of avg, min, max, sum, count, last, median (or p50), \
                     p95, p99, stddev, rate",
                        clip(t)
                    ),
                )
            })
    }

    /// The canonical name, as accepted by `parse` and shown in responses.
    pub fn name(self) -> &'static str {
        match self {
            Agg::Avg => "avg",
            Agg::Min => "min",
            Agg::Max => "max",
            Agg::Sum => "sum",
            Agg::Count => "count",
            Agg::Last => "last",
            Agg::Median => "median",
            Agg::P95 => "p95",
            Agg::P99 => "p99",
            Agg::Stddev => "stddev",
            Agg::Rate => "rate",
        }
    }

    /// The quantile (0..1) for the quantile aggregations, `None` for the others.
    pub fn quantile(self) -> Option<f64> {
        match self {
            Agg::Median => Some(0.5),
            Agg::P95 => Some(0.95),
            Agg::P99 => Some(0.99),
            _ => None,
        }
    }
}

impl fmt::Display for Agg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Everything `GET /api/v1/query` asks for, validated.
///
/// - `agg` and `step_ms` both `None`: raw points.
/// - `agg` set, `step_ms` set: one aggregated point per `step_ms` bucket.
/// - `agg` set, `step_ms` `None`: a single bucket spanning `from_ms..to_ms` (a summary of the range).
///
/// A `step` without `agg` has already been given `Agg::Avg`, so `step_ms` set implies `agg` set.
#[derive(Clone, Debug, PartialEq)]
pub struct QueryParams {
    pub selector: Selector,
    /// Unix milliseconds; always `< to_ms`.
    pub from_ms: i64,
    /// Unix milliseconds.
    pub to_ms: i64,
    pub step_ms: Option<i64>,
    pub agg: Option<Agg>,
}

impl QueryParams {
    /// The width of an aggregation bucket: `step_ms`, or the whole range when aggregating without a
    /// step; `None` for raw queries.
    pub fn bucket_ms(&self) -> Option<i64> {
        self.agg?;
        Some(self.step_ms.unwrap_or(self.to_ms - self.from_ms))
    }
}

/// Parses the raw query-string values (`None` = absent) against a given `now_ms`.
///
/// Empty `from`, `to`, `step` and `agg` count as absent, since HTML forms send empty fields.
pub fn parse_query(
    q: Option<&str>,
    from: Option<&str>,
    to: Option<&str>,
    step: Option<&str>,
    agg: Option<&str>,
    now_ms: i64,
) -> Result<QueryParams, QueryError> {
    let q = q.ok_or_else(|| QueryError::new("q", "missing; expected a selector such as `cpu.usage{host=\"a\"}`"))?;
    let selector = parse_selector(q)?;
    let to_ms = match present(to) {
        Some(s) => time_param("to", s, now_ms)?,
        None => now_ms,
    };
    let from_ms = match present(from) {
        Some(s) => time_param("from", s, now_ms)?,
        None => to_ms
            .checked_sub(DEFAULT_RANGE_MS)
            .ok_or_else(|| QueryError::new("to", "out of range"))?,
    };
    if from_ms >= to_ms {
        return Err(QueryError::new(
            "from",
            format!(
                "must be before `to`: {} is not before {}",
                show_ms(from_ms),
                show_ms(to_ms)
            ),
        ));
    }
    let step_ms = present(step).map(parse_step).transpose()?;
    let mut agg = present(agg).map(Agg::parse).transpose()?;
    if step_ms.is_some() && agg.is_none() {
        agg = Some(Agg::Avg);
    }
    Ok(QueryParams {
        selector,
        from_ms,
        to_ms,
        step_ms,
        agg,
    })
}

/// Parses a point in time to unix milliseconds: RFC 3339 (`2026-11-26T10:00:00Z`, with an offset
/// and/or a fraction), integer unix milliseconds, `now`, or `now-<duration>` / `now+<duration>`.
/// The error's `param` is `time`.
pub fn parse_time(s: &str, now_ms: i64) -> Result<i64, QueryError> {
    time_param("time", s, now_ms)
}

fn time_param(param: &'static str, s: &str, now_ms: i64) -> Result<i64, QueryError> {
    let s = s.trim();
    let err = |m: String| QueryError::new(param, m);
    if s.is_empty() {
        return Err(err(format!("empty; expected {TIME_FORMS}")));
    }
    if let Some(rest) = s.strip_prefix("now") {
        let rest = rest.trim_start();
        if rest.is_empty() {
            return Ok(now_ms);
        }
        // An unencoded `+` in a query string arrives as a space, so `now 5m` is `now+5m`.
        let (sign, dur) = match rest.as_bytes()[0] {
            b'-' => (-1, &rest[1..]),
            b'+' => (1, &rest[1..]),
            _ if s.as_bytes()[3] == b' ' => (1, rest),
            _ => return Err(err(format!("`{}` is not a time: expected {TIME_FORMS}", clip(s)))),
        };
        let dur = dur.trim();
        if dur.is_empty() {
            return Err(err(format!(
                "`{}` needs a duration after the sign, e.g. `now-1h`",
                clip(s)
            )));
        }
        let ms = duration_ms(dur).map_err(err)?;
        return now_ms
            .checked_add(sign * ms)
            .ok_or_else(|| err(format!("`{}` is out of range", clip(s))));
    }
    let digits = s.strip_prefix('-').unwrap_or(s);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return s
            .parse::<i64>()
            .map_err(|_| err(format!("`{}` is out of range for unix milliseconds", clip(s))));
    }
    if let Some((int, frac)) = digits.split_once('.')
        && !int.is_empty()
        && int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
    {
        return Err(err(format!("`{}`: unix time is given in whole milliseconds", clip(s))));
    }
    let fixed = restore_offset_plus(s);
    match OffsetDateTime::parse(&fixed, &Rfc3339) {
        Ok(t) => {
            // Floor, not truncate, so that a pre-1970 time with a fraction does not round up.
            let ms = t.unix_timestamp_nanos().div_euclid(1_000_000);
            i64::try_from(ms).map_err(|_| err(format!("`{}` is out of range", clip(s))))
        }
        Err(e) if looks_like_date(s) => {
            let s = clip(s);
            if OffsetDateTime::parse(&format!("{fixed}Z"), &Rfc3339).is_ok() {
                return Err(err(format!("`{s}` has no offset: add `Z` for UTC or `+hh:mm`")));
            }
            // A well-formed time with an impossible value says which ("day was not in range"); the
            // crate's reports of a malformed one name its internals, so the expected form is shown.
            Err(err(match e {
                time::error::Parse::TryFromParsed(range) => format!("`{s}` is not a valid RFC 3339 time: {range}"),
                _ => format!(
                    "`{s}` is not a valid RFC 3339 time: expected the form `2026-11-26T10:00:00Z` or \
                     `2026-11-26T12:00:00.5+02:00` (seconds and an offset are required)"
                ),
            }))
        }
        Err(_) => Err(err(format!("`{}` is not a time: expected {TIME_FORMS}", clip(s)))),
    }
}

const TIME_FORMS: &str = "RFC 3339 (`2026-11-26T10:00:00Z`), unix milliseconds or `now-1h`";

fn looks_like_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 5 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-'
}

/// `2026-11-26T10:00:00+02:00` sent without percent-encoding arrives as `...10:00:00 02:00`: a
/// space followed by `hh:mm` at the very end can only have been a `+`.
fn restore_offset_plus(s: &str) -> std::borrow::Cow<'_, str> {
    let b = s.as_bytes();
    let n = b.len();
    if n > 6
        && b[n - 6] == b' '
        && b[n - 5].is_ascii_digit()
        && b[n - 4].is_ascii_digit()
        && b[n - 3] == b':'
        && b[n - 2].is_ascii_digit()
        && b[n - 1].is_ascii_digit()
    {
        std::borrow::Cow::Owned(format!("{}+{}", &s[..n - 6], &s[n - 5..]))
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

/// RFC 3339 for messages, falling back to milliseconds outside the years RFC 3339 can show.
fn show_ms(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| format!("{ms} ms"))
}

/// Parses a `step`: a positive duration of at most `MAX_STEP_MS`. The error's `param` is `step`.
pub fn parse_step(s: &str) -> Result<i64, QueryError> {
    let s = s.trim();
    let ms = positive_duration("step", s)?;
    if ms > MAX_STEP_MS {
        return Err(QueryError::new(
            "step",
            format!("`{}` is longer than the maximum 366d", clip(s)),
        ));
    }
    Ok(ms)
}

/// Parses a positive duration to milliseconds, e.g. the dashboards' `range=1h`. The error's
/// `param` is `range`.
pub fn parse_duration(s: &str) -> Result<i64, QueryError> {
    positive_duration("range", s.trim())
}

fn positive_duration(param: &'static str, s: &str) -> Result<i64, QueryError> {
    let ms = duration_ms(s).map_err(|m| QueryError::new(param, m))?;
    if ms == 0 {
        return Err(QueryError::new(param, format!("`{}` must be positive", clip(s))));
    }
    Ok(ms)
}

const UNITS: [(&str, i64); 6] = [
    ("w", WEEK_MS),
    ("d", DAY_MS),
    ("h", HOUR_MS),
    ("m", MINUTE_MS),
    ("s", SECOND_MS),
    ("ms", 1),
];

/// A duration such as `500ms`, `10s`, `1h30m`: whole numbers each followed by a unit, units from
/// largest to smallest, each at most once (as in PromQL). Zero is allowed here; callers that need
/// a positive duration check.
fn duration_ms(s: &str) -> Result<i64, String> {
    let bad = |why: &str| format!("`{}` is not a duration: {why}", clip(s));
    if s.is_empty() {
        return Err("empty; expected a duration such as `10s`, `5m`, `1h`".to_string());
    }
    if s.starts_with('-') {
        return Err(format!("`{}` must be positive", clip(s)));
    }
    let b = s.as_bytes();
    let mut pos = 0;
    let mut total: i64 = 0;
    // Index into UNITS of the last unit used; the next must come strictly after it.
    let mut last_unit: Option<usize> = None;
    while pos < b.len() {
        let start = pos;
        while pos < b.len() && b[pos].is_ascii_digit() {
            pos += 1;
        }
        if pos == start {
            return Err(bad("expected a number, e.g. `10s`"));
        }
        let number: i64 = s[start..pos].parse().map_err(|_| bad("number too large"))?;
        if b.get(pos) == Some(&b'.') {
            return Err(bad("use whole numbers with a smaller unit, e.g. `90m` for 1.5h"));
        }
        let unit_start = pos;
        while pos < b.len() && b[pos].is_ascii_alphabetic() {
            pos += 1;
        }
        let unit = &s[unit_start..pos];
        if unit.is_empty() {
            return Err(bad("missing unit (ms, s, m, h, d or w), e.g. `10s`"));
        }
        let Some(idx) = UNITS.iter().position(|(name, _)| *name == unit) else {
            return Err(bad(&format!("unknown unit `{}`; use ms, s, m, h, d or w", clip(unit))));
        };
        if last_unit.is_some_and(|last| idx <= last) {
            return Err(bad("units must go from largest to smallest, each once, e.g. `1h30m`"));
        }
        last_unit = Some(idx);
        total = number
            .checked_mul(UNITS[idx].1)
            .and_then(|ms| total.checked_add(ms))
            .ok_or_else(|| bad("too large"))?;
    }
    Ok(total)
}

/// Empty and blank values count as absent.
fn present(v: Option<&str>) -> Option<&str> {
    v.filter(|s| !s.trim().is_empty())
}

/// Echoes of client input in messages are cut short: a query string can be long.
fn clip(s: &str) -> String {
    const MAX: usize = 64;
    match s.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn m(tag: &str, op: MatchOp, value: &str) -> Matcher {
        Matcher::new(tag, op, value).expect("valid matcher")
    }

    fn sel(measurement: &str, field: Option<&str>, matchers: Vec<Matcher>) -> Selector {
        Selector {
            measurement: measurement.into(),
            field: field.map(Into::into),
            matchers,
        }
    }

    #[test]
    fn valid_selectors() {
        use MatchOp::*;
        let cases: Vec<(&str, Selector)> = vec![
            ("cpu", sel("cpu", None, vec![])),
            ("cpu.usage", sel("cpu", Some("usage"), vec![])),
            ("cpu{}", sel("cpu", None, vec![])),
            ("  cpu.usage { }  ", sel("cpu", Some("usage"), vec![])),
            ("_x:y-z.a_1", sel("_x:y-z", Some("a_1"), vec![])),
            (r#"cpu{host="a"}"#, sel("cpu", None, vec![m("host", Eq, "a")])),
            (
                r#"cpu.usage{host="a",dc!="eu",rack=~"r1.*",os!~"win.*"}"#,
                sel(
                    "cpu",
                    Some("usage"),
                    vec![
                        m("host", Eq, "a"),
                        m("dc", Ne, "eu"),
                        m("rack", Re, "r1.*"),
                        m("os", NotRe, "win.*"),
                    ],
                ),
            ),
            (
                "cpu{ host = \"a\" ,\n\tdc=~ \"x\" , }",
                sel("cpu", None, vec![m("host", Eq, "a"), m("dc", Re, "x")]),
            ),
            (r#"cpu{host="a",}"#, sel("cpu", None, vec![m("host", Eq, "a")])),
            (
                r#"cpu{host!="a",host!="b"}"#,
                sel("cpu", None, vec![m("host", Ne, "a"), m("host", Ne, "b")]),
            ),
            (
                r#""my measurement"."field.with.dots"{"tag key"="v"}"#,
                sel("my measurement", Some("field.with.dots"), vec![m("tag key", Eq, "v")]),
            ),
            (r#""a\"b\\c".x"#, sel("a\"b\\c", Some("x"), vec![])),
            (
                r#"cpu{host="say \"hi\" \\o/"}"#,
                sel("cpu", None, vec![m("host", Eq, r#"say "hi" \o/"#)]),
            ),
            // A backslash before anything else is kept, so regexes need no doubling.
            (
                r#"net{ip=~"10\.0\..*"}"#,
                sel("net", None, vec![m("ip", Re, r"10\.0\..*")]),
            ),
            (r#"cpu{host=""}"#, sel("cpu", None, vec![m("host", Eq, "")])),
            (r#"cpu{host="ünï ✓"}"#, sel("cpu", None, vec![m("host", Eq, "ünï ✓")])),
            (r#"cpu {host="a"}"#, sel("cpu", None, vec![m("host", Eq, "a")])),
        ];
        for (input, want) in cases {
            let got = parse_selector(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
            assert_eq!(got, want, "{input:?}");
            // The canonical spelling parses back to the same selector.
            assert_eq!(parse_selector(&got.to_string()).ok(), Some(want), "{input:?} -> {got}");
        }
    }

    #[test]
    fn canonical_spelling() {
        let s = parse_selector(r#" "my m".usage { host = "a\"b" , "x y"=~"\d+" , } "#).expect("valid");
        assert_eq!(s.to_string(), r#""my m".usage{host="a\"b","x y"=~"\d+"}"#);
        assert_eq!(parse_selector("cpu{}").expect("valid").to_string(), "cpu");
    }

    #[test]
    fn invalid_selectors() {
        // (input, message, column); the caret must sit under that column.
        let cases: &[(&str, &str, usize)] = &[
            ("", "empty selector", 0),
            ("   ", "empty selector", 0),
            ("{host=\"a\"}", "expected a measurement name", 1),
            ("1cpu", "expected a measurement name", 1),
            ("cpu.", "expected a field name after `.`", 5),
            ("cpu.1x", "expected a field name after `.`", 5),
            ("cpu usage", "expected `.field`, `{` or the end of the selector", 5),
            ("cpu.usage idle", "expected `{` or the end of the selector", 11),
            ("cpu.usage.idle", "unexpected `.` after the field name", 10),
            ("cpu$", "expected `.field`, `{` or the end of the selector", 4),
            ("cpu{host~\"a\"}", "expected `=`, `!=`, `=~` or `!~` after tag name", 9),
            ("cpu{host}", "expected `=`, `!=`, `=~` or `!~` after tag name", 9),
            ("cpu{host=a}", "expected a double-quoted value after `=`", 10),
            ("cpu{host=~}", "expected a double-quoted value after `=~`", 11),
            ("cpu{host='a'}", "values are written in double quotes, not single", 10),
            ("cpu{host=\"a}", "unterminated string starting", 10),
            ("cpu{host=\"a\\\"}", "unterminated string starting", 10),
            ("\"cpu", "unterminated string starting", 1),
            ("cpu{host=\"a\"", "expected `,` or `}`", 13),
            ("cpu{host=\"a\" dc=\"b\"}", "expected `,` or `}`", 14),
            ("cpu{,}", "expected a tag name or `}`", 5),
            ("cpu{host=\"a\",,}", "expected a tag name or `}`", 14),
            ("cpu{1=\"a\"}", "expected a tag name or `}`", 5),
            ("cpu{host=\"a\"} x", "expected the end of the selector", 15),
            ("cpu{} x", "expected the end of the selector", 7),
            ("\"\".x", "empty name", 1),
            ("cpu{\"\"=\"a\"}", "empty name", 5),
            ("cpu{host=~\"(a\"}", "invalid regex: unclosed group", 11),
            ("cpu{host!~\"a)|(b\"}", "invalid regex: unopened group", 11),
        ];
        for &(input, message, column) in cases {
            let err = parse_selector(input).expect_err(input);
            assert_eq!(err.param, "q", "{input:?}");
            assert!(err.message.starts_with(message), "{input:?}: {}", err.message);
            if column == 0 {
                continue;
            }
            let mut lines = err.message.lines();
            let first = lines.next().unwrap_or_default();
            assert!(first.ends_with(&format!(" at column {column}")), "{input:?}: {first}");
            assert_eq!(
                lines.next(),
                Some(format!("  {}", input.replace(char::is_control, " ")).as_str())
            );
            let caret = format!("  {}^", " ".repeat(column - 1));
            assert_eq!(lines.next(), Some(caret.as_str()), "{input:?}: {}", err.message);
            assert_eq!(lines.next(), None);
        }
    }

    #[test]
    fn error_display_points_at_the_problem() {
        let err = parse_selector("cpu{host~\"a\"}").expect_err("invalid");
        assert_eq!(
            err.to_string(),
            "q: expected `=`, `!=`, `=~` or `!~` after tag name at column 9\n  cpu{host~\"a\"}\n          ^"
        );
        // The caret counts characters, not bytes, before the problem.
        let err = parse_selector("\"ü\"{x~\"a\"}").expect_err("invalid");
        assert_eq!(
            err.message,
            "expected `=`, `!=`, `=~` or `!~` after tag name at column 7\n  \"ü\"{x~\"a\"}\n       ^"
        );
        // A newline in the selector is shown as a space so the caret still lines up.
        let err = parse_selector("cpu{\nx~\"a\"}").expect_err("invalid");
        assert_eq!(
            err.message,
            "expected `=`, `!=`, `=~` or `!~` after tag name at column 7\n  cpu{ x~\"a\"}\n        ^"
        );
    }

    #[test]
    fn canonical_spelling_is_never_longer() {
        // Backslashes are doubled only where they must be: a selector just under the length
        // limit used to be shown as text over it, which did not parse back.
        for (input, shown) in [
            (r#"m{t=~"10\.0\..*"}"#, r#"m{t=~"10\.0\..*"}"#),
            (r#"m{t=~"10\\.0"}"#, r#"m{t=~"10\.0"}"#),
            (r#"m{t="a\\"}"#, r#"m{t="a\\"}"#),
            (r#"m{t="\\\""}"#, r#"m{t="\\\""}"#),
            (r#"m{t="\\\\"}"#, r#"m{t="\\\\"}"#),
            (r#""a\b\\".f{t="x"}"#, r#""a\b\\".f{t="x"}"#),
        ] {
            let s = parse_selector(input).expect(input);
            assert_eq!(s.to_string(), shown, "{input}");
            assert_eq!(parse_selector(shown).as_ref(), Ok(&s), "{shown}");
        }
        let value = r"\.".repeat(MAX_SELECTOR_LEN / 2 - 8);
        let input = format!(r#"m{{t=~"{value}"}}"#);
        assert!(input.len() <= MAX_SELECTOR_LEN);
        let s = parse_selector(&input).expect("within the limit");
        assert_eq!(s.matchers[0].value, value);
        assert_eq!(parse_selector(&s.to_string()), Ok(s));
    }

    #[test]
    fn selector_length_is_limited() {
        let long = format!("cpu{{host=~\"{}\"}}", "a|".repeat(MAX_SELECTOR_LEN));
        let err = parse_selector(&long).expect_err("too long");
        assert!(err.message.contains("the limit is 16384"), "{}", err.message);
        assert!(err.message.len() < 100);
    }

    #[test]
    fn oversized_regex_is_refused() {
        let err = parse_selector(r#"cpu{host=~"\w{1000}\w{1000}"}"#).expect_err("too big");
        assert!(err.message.starts_with("regex too large"), "{}", err.message);
    }

    #[test]
    fn matcher_semantics() {
        use MatchOp::*;
        // (matcher, tag value (None = tag missing), expected)
        let cases: &[(MatchOp, &str, Option<&str>, bool)] = &[
            (Eq, "a", Some("a"), true),
            (Eq, "a", Some("ab"), false),
            (Eq, "a", None, false),
            (Eq, "", None, true),
            (Eq, "", Some(""), true),
            (Eq, "", Some("a"), false),
            (Ne, "a", Some("b"), true),
            (Ne, "a", Some("a"), false),
            (Ne, "a", None, true),
            (Ne, "", None, false),
            (Ne, "", Some("x"), true),
            // Regexes are anchored at both ends.
            (Re, "re.*", Some("regex"), true),
            (Re, "re.*", Some("are"), false),
            (Re, "b", Some("abc"), false),
            (Re, "a|ab", Some("ab"), true),
            (Re, "a|b", Some("b"), true),
            (Re, "a|b", Some("ab"), false),
            (Re, ".*", None, true),
            (Re, ".+", None, false),
            (Re, "", Some(""), true),
            (Re, "", Some("x"), false),
            (Re, "(?i)WEB-\\d+", Some("web-12"), true),
            (Re, "(?m)a$", Some("a\nb"), false),
            (NotRe, "win.*", Some("windows"), false),
            (NotRe, "win.*", Some("darwin"), true),
            (NotRe, "win.*", None, true),
            (NotRe, ".*", None, false),
        ];
        for &(op, value, tag, want) in cases {
            let matcher = m("t", op, value);
            assert_eq!(matcher.matches(tag), want, "{op:?} {value:?} on {tag:?}");
        }
        // A matcher built by hand without its regex matches nothing rather than panicking.
        let bare = Matcher {
            tag: "t".into(),
            op: Re,
            value: ".*".into(),
            regex: None,
        };
        assert!(!bare.matches(Some("x")));
        // A verbose-mode comment would swallow the closing anchor: refused, never silently unanchored.
        assert!(Matcher::new("t", Re, "(?x)a # comment").is_err());
    }

    #[test]
    fn matchers_on_one_tag_all_hold() {
        let s = parse_selector(r#"cpu{host=~"web-.*",host!="web-2"}"#).expect("valid");
        let all = |v: &str| s.matchers.iter().all(|m| m.matches(Some(v)));
        assert!(all("web-1"));
        assert!(!all("web-2"));
        assert!(!all("db-1"));
    }

    const NOW: i64 = 1_795_687_200_000; // 2026-11-26T10:00:00Z

    #[test]
    fn times() {
        let cases: &[(&str, i64)] = &[
            ("2026-11-26T10:00:00Z", NOW),
            ("2026-11-26t10:00:00z", NOW),
            ("2026-11-26 10:00:00Z", NOW),
            ("2026-11-26T12:00:00+02:00", NOW),
            ("2026-11-26T12:00:00 02:00", NOW), // `+` decoded as a space
            ("2026-11-26T05:30:00-04:30", NOW),
            ("2026-11-26T10:00:00-00:00", NOW),
            ("2026-11-26T10:00:00.5Z", NOW + 500),
            ("2026-11-26T10:00:00.123456789Z", NOW + 123),
            ("1969-12-31T23:59:59.9995Z", -1),
            ("1970-01-01T00:00:00Z", 0),
            ("1795687200000", NOW),
            ("0", 0),
            ("-1000", -1000),
            ("  1795687200000 ", NOW),
            ("now", NOW),
            ("now-1h", NOW - 3_600_000),
            ("now-90s", NOW - 90_000),
            ("now-1h30m", NOW - 5_400_000),
            ("now+5m", NOW + 300_000),
            ("now 5m", NOW + 300_000), // `+` decoded as a space
            ("now - 1d", NOW - 86_400_000),
            ("now-0s", NOW),
        ];
        for &(input, want) in cases {
            assert_eq!(parse_time(input, NOW), Ok(want), "{input:?}");
        }
    }

    #[test]
    fn bad_times() {
        let cases: &[(&str, &str)] = &[
            ("", "empty; expected RFC 3339"),
            ("yesterday", "`yesterday` is not a time: expected RFC 3339"),
            ("now-", "`now-` needs a duration after the sign"),
            ("now-1", "`1` is not a duration: missing unit"),
            ("now*2", "`now*2` is not a time"),
            ("nowish", "`nowish` is not a time"),
            ("now-1y", "`1y` is not a duration: unknown unit `y`"),
            (
                "1795687200.5",
                "`1795687200.5`: unix time is given in whole milliseconds",
            ),
            (
                "99999999999999999999",
                "`99999999999999999999` is out of range for unix milliseconds",
            ),
            ("2026-11-26T10:00:00", "`2026-11-26T10:00:00` has no offset: add `Z`"),
            (
                "2026-02-30T10:00:00Z",
                "`2026-02-30T10:00:00Z` is not a valid RFC 3339 time: day",
            ),
            ("2026-11-26", "`2026-11-26` is not a valid RFC 3339 time"),
            ("2026-11-26T10:00Z", "is not a valid RFC 3339 time: expected the form"),
            ("10:00:00", "is not a time"),
        ];
        for &(input, want) in cases {
            let err = parse_time(input, NOW).expect_err(input);
            assert_eq!(err.param, "time");
            assert!(err.message.contains(want), "{input:?}: {}", err.message);
        }
        let long = "x".repeat(500);
        let err = parse_time(&long, NOW).expect_err("garbage");
        assert!(err.message.len() < 200, "{}", err.message);
    }

    #[test]
    fn steps_and_durations() {
        let cases: &[(&str, i64)] = &[
            ("500ms", 500),
            ("10s", 10_000),
            ("1m", 60_000),
            ("5m", 300_000),
            ("1h", 3_600_000),
            ("1d", 86_400_000),
            ("1w", 604_800_000),
            ("1h30m", 5_400_000),
            ("1m500ms", 60_500),
            ("366d", MAX_STEP_MS),
            (" 15s ", 15_000),
        ];
        for &(input, want) in cases {
            assert_eq!(parse_step(input), Ok(want), "{input:?}");
            assert_eq!(parse_duration(input), Ok(want), "{input:?}");
        }
        let bad: &[(&str, &str)] = &[
            ("", "empty"),
            ("0s", "`0s` must be positive"),
            ("-5m", "`-5m` must be positive"),
            ("10", "`10` is not a duration: missing unit"),
            ("1.5h", "`1.5h` is not a duration: use whole numbers"),
            ("5M", "unknown unit `M`"),
            ("5min", "unknown unit `min`"),
            ("30m1h", "units must go from largest to smallest"),
            ("1m1m", "units must go from largest to smallest"),
            ("1h 30m", "expected a number"),
            ("h", "expected a number"),
            ("367d", "`367d` is longer than the maximum 366d"),
            ("99999999999999999999s", "number too large"),
            ("9999999999999999w", "too large"),
        ];
        for &(input, want) in bad {
            let err = parse_step(input).expect_err(input);
            assert_eq!(err.param, "step");
            assert!(err.message.contains(want), "{input:?}: {}", err.message);
        }
        assert_eq!(parse_duration("400d"), Ok(400 * DAY_MS));
        assert_eq!(parse_duration("0s").map_err(|e| e.param), Err("range"));
    }

    #[test]
    fn aggs() {
        for agg in Agg::ALL {
            assert_eq!(Agg::parse(agg.name()), Ok(agg));
            assert_eq!(Agg::parse(&agg.name().to_uppercase()), Ok(agg));
        }
        assert_eq!(Agg::parse("p50"), Ok(Agg::Median));
        assert_eq!(Agg::parse("P99"), Ok(Agg::P99));
        assert_eq!(Agg::Median.quantile(), Some(0.5));
        assert_eq!(Agg::P95.quantile(), Some(0.95));
        assert_eq!(Agg::P99.quantile(), Some(0.99));
        assert_eq!(Agg::Avg.quantile(), None);
        assert_eq!(Agg::Rate.to_string(), "rate");
        for bad in ["", "mean", "p90", "average"] {
            let err = Agg::parse(bad).expect_err(bad);
            assert_eq!(err.param, "agg");
            assert!(
                err.message.starts_with(&format!("unknown aggregation `{bad}`")),
                "{}",
                err.message
            );
        }
    }

    #[test]
    fn query_defaults_and_combinations() {
        let q = Some("cpu.usage");
        let p = parse_query(q, None, None, None, None, NOW).expect("valid");
        assert_eq!((p.from_ms, p.to_ms, p.step_ms, p.agg), (NOW - HOUR_MS, NOW, None, None));
        assert_eq!(p.bucket_ms(), None);
        assert_eq!(p.selector, sel("cpu", Some("usage"), vec![]));

        // `from` defaults to an hour before an explicit `to`.
        let p = parse_query(q, None, Some("2026-11-26T09:00:00Z"), None, None, NOW).expect("valid");
        assert_eq!((p.from_ms, p.to_ms), (NOW - 2 * HOUR_MS, NOW - HOUR_MS));

        // Empty values count as absent.
        let p = parse_query(q, Some(""), Some(" "), Some(""), Some(""), NOW).expect("valid");
        assert_eq!((p.from_ms, p.to_ms, p.step_ms, p.agg), (NOW - HOUR_MS, NOW, None, None));

        // A step without agg averages.
        let p = parse_query(q, Some("now-6h"), None, Some("5m"), None, NOW).expect("valid");
        assert_eq!(
            (p.from_ms, p.step_ms, p.agg),
            (NOW - 6 * HOUR_MS, Some(300_000), Some(Agg::Avg))
        );
        assert_eq!(p.bucket_ms(), Some(300_000));

        // An agg without step is one bucket over the whole range.
        let p = parse_query(q, Some("now-1d"), Some("now"), None, Some("p95"), NOW).expect("valid");
        assert_eq!((p.step_ms, p.agg), (None, Some(Agg::P95)));
        assert_eq!(p.bucket_ms(), Some(DAY_MS));

        let p = parse_query(
            q,
            Some("1795680000000"),
            Some("1795687200000"),
            Some("1m"),
            Some("max"),
            NOW,
        )
        .expect("valid");
        assert_eq!(
            (p.from_ms, p.to_ms, p.step_ms, p.agg),
            (NOW - 2 * HOUR_MS, NOW, Some(60_000), Some(Agg::Max))
        );
    }

    #[test]
    fn query_errors() {
        let q = Some("cpu");
        // (q, from, to, step, agg, the start of the error's Display)
        type Case<'a> = (
            Option<&'a str>,
            Option<&'a str>,
            Option<&'a str>,
            Option<&'a str>,
            Option<&'a str>,
            &'a str,
        );
        let cases: &[Case<'_>] = &[
            (None, None, None, None, None, "q: missing"),
            (Some(""), None, None, None, None, "q: empty selector"),
            (
                Some("cpu{"),
                None,
                None,
                None,
                None,
                "q: expected a tag name or `}` at column 5",
            ),
            (q, Some("soon"), None, None, None, "from: `soon` is not a time"),
            (q, None, Some("later"), None, None, "to: `later` is not a time"),
            (
                q,
                Some("now"),
                None,
                None,
                None,
                "from: must be before `to`: 2026-11-26T10:00:00Z is not before 2026-11-26T10:00:00Z",
            ),
            (
                q,
                Some("2026-11-26T11:00:00Z"),
                Some("2026-11-26T10:00:00Z"),
                None,
                None,
                "from: must be before `to`",
            ),
            (q, None, None, Some("0s"), None, "step: `0s` must be positive"),
            (
                q,
                None,
                None,
                Some("10"),
                None,
                "step: `10` is not a duration: missing unit",
            ),
            (q, None, None, None, Some("mean"), "agg: unknown aggregation `mean`"),
        ];
        for &(q, from, to, step, agg, want) in cases {
            let err = parse_query(q, from, to, step, agg, NOW).expect_err(want);
            assert!(err.to_string().starts_with(want), "{want:?}: {err}");
        }
        // Times before year 0 cannot be shown in RFC 3339; the message falls back to milliseconds.
        let err = parse_query(
            q,
            Some("-99999999999999999"),
            Some("-99999999999999999"),
            None,
            None,
            NOW,
        )
        .expect_err("empty range");
        assert!(err.message.ends_with("-99999999999999999 ms"), "{}", err.message);
    }

    fn name_strategy() -> impl Strategy<Value = String> {
        prop_oneof!["[A-Za-z_][A-Za-z0-9_:-]{0,8}", "\\PC{1,10}", "[ .\"\\\\{}=,~!a]{1,8}"]
    }

    proptest! {
        #[test]
        fn display_round_trips(
            measurement in name_strategy(),
            field in proptest::option::of(name_strategy()),
            matchers in proptest::collection::vec(
                (name_strategy(), prop_oneof![Just(MatchOp::Eq), Just(MatchOp::Ne)], "\\PC{0,10}"),
                0..4,
            ),
        ) {
            let s = Selector {
                measurement,
                field,
                matchers: matchers.into_iter().map(|(t, op, v)| m(&t, op, &v)).collect(),
            };
            prop_assert_eq!(parse_selector(&s.to_string()), Ok(s));
        }

        #[test]
        fn never_panics(input in "\\PC{0,40}", now in any::<i64>()) {
            let _ = parse_selector(&input);
            let _ = parse_time(&input, now);
            let _ = parse_step(&input);
            let _ = Agg::parse(&input);
        }
    }
}
