//! Annotation templates: text with `{{ $value }}`, `{{ $labels.NAME }}`, `{{ $rule }}` and
//! `{{ $severity }}` holes, parsed once when a rule is validated (so a typo is a validation error
//! that names the annotation, not a silently empty field in a page at 3 a.m.) and filled at each
//! event. Deliberately not a template language: no conditionals, no loops. The one thing beyond
//! holes is formatting `$value`, with Prometheus's spelling:
//!
//! - `{{ $value | printf "%.1f" }}` (or `{{ printf "%.1f" $value }}`): one `%f`, `%e` or `%g`
//!   verb with an optional precision, as Go's `fmt` writes it, and any text around it (`%%` is
//!   a percent sign);
//! - `{{ $value | humanize }}`: four significant digits with an SI prefix (`1.235k`, `93.29`,
//!   `12.5m`), as Prometheus's `humanize`;
//! - `{{ $value | humanizePercentage }}`: a ratio as a percentage with four significant digits
//!   (`0.4213` is `42.13%`).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// A parsed template; serializes as its source text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Template {
    source: String,
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Value(Format),
    Rule,
    Severity,
    Label(String),
}

impl Template {
    /// Parses `source`; the error says what is wrong and at which byte.
    pub fn parse(source: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = source;
        let mut offset = 0;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_string()));
            }
            let after = &rest[open + 2..];
            let Some(close) = after.find("}}") else {
                return Err(format!("unclosed `{{{{` at byte {}", offset + open));
            };
            let var = after[..close].trim();
            let at = offset + open;
            let part = match var {
                "$value" => Part::Value(Format::Plain),
                v if v.contains('|') || v.starts_with("printf") => Part::Value(Format::parse(v, at)?),
                "$rule" => Part::Rule,
                "$severity" => Part::Severity,
                v => match v.strip_prefix("$labels.") {
                    Some(name) if !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') => {
                        Part::Label(name.to_string())
                    }
                    _ => {
                        return Err(format!(
                            "unknown variable `{v}` at byte {at}; expected $value, $labels.NAME, $rule or $severity"
                        ));
                    }
                },
            };
            parts.push(part);
            let consumed = open + 2 + close + 2;
            offset += consumed;
            rest = &rest[consumed..];
        }
        if rest.contains("}}") {
            return Err(format!(
                "`}}}}` without `{{{{` at byte {}",
                offset + rest.find("}}").unwrap_or(0)
            ));
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(Template {
            source: source.to_string(),
            parts,
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Fills the holes. A label the instance does not have renders as the empty string, as in
    /// Prometheus.
    pub fn render(&self, value: f64, rule: &str, severity: &str, labels: &BTreeMap<String, String>) -> String {
        let mut out = String::with_capacity(self.source.len() + 16);
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Value(format) => format.write(&mut out, value),
                Part::Rule => out.push_str(rule),
                Part::Severity => out.push_str(severity),
                Part::Label(name) => out.push_str(labels.get(name).map_or("", String::as_str)),
            }
        }
        out
    }
}

/// How `$value` is written.
#[derive(Debug, Clone, PartialEq)]
enum Format {
    /// Rust's shortest representation that reads back as the same number (`93.2871828`).
    Plain,
    Printf(Printf),
    Humanize,
    HumanizePercentage,
}

/// A `printf` format with exactly one float verb.
#[derive(Debug, Clone, PartialEq)]
struct Printf {
    before: String,
    verb: char,
    precision: Option<usize>,
    after: String,
}

/// Printf precisions past this are refused (Go allows more, but no alert needs them).
const MAX_PRECISION: usize = 17;

impl Format {
    /// Parses what stands between `{{` and `}}` when it formats `$value`: `$value | FUNC` or
    /// `printf "FORMAT" $value`. `at` is the byte of the `{{`, for errors.
    fn parse(hole: &str, at: usize) -> Result<Format, String> {
        let call = match hole.split_once('|') {
            Some((var, call)) => {
                let var = var.trim();
                if var != "$value" {
                    return Err(format!(
                        "`{var} | ...` at byte {at}: only $value can be formatted (printf, humanize, humanizePercentage)"
                    ));
                }
                let call = call.trim();
                if call.contains('|') {
                    return Err(format!("`{hole}` at byte {at}: one function only"));
                }
                call.to_string()
            }
            // `printf "FORMAT" $value`, the function-call spelling.
            None => match hole.strip_suffix("$value") {
                Some(call) => call.trim().to_string(),
                None => {
                    return Err(format!(
                        "`{hole}` at byte {at}: printf formats $value: `printf \"%.1f\" $value`"
                    ));
                }
            },
        };
        let (name, arg) = match call.split_once(char::is_whitespace) {
            Some((name, arg)) => (name, Some(arg.trim())),
            None => (call.as_str(), None),
        };
        match (name, arg) {
            ("humanize", None) => Ok(Format::Humanize),
            ("humanizePercentage", None) => Ok(Format::HumanizePercentage),
            ("printf", Some(arg)) => {
                let Some(format) = arg.strip_prefix('"').and_then(|a| a.strip_suffix('"')) else {
                    return Err(format!(
                        "printf at byte {at} takes one double-quoted format, e.g. printf \"%.1f\"; got `{arg}`"
                    ));
                };
                Printf::parse(format)
                    .map(Format::Printf)
                    .map_err(|e| format!("printf at byte {at}: {e}"))
            }
            ("humanize" | "humanizePercentage", Some(arg)) => {
                Err(format!("{name} at byte {at} takes no argument; got `{arg}`"))
            }
            ("printf", None) => Err(format!("printf at byte {at} needs a format, e.g. printf \"%.1f\"")),
            (other, _) => Err(format!(
                "unknown function `{other}` at byte {at}; expected printf, humanize or humanizePercentage"
            )),
        }
    }

    fn write(&self, out: &mut String, v: f64) {
        match self {
            Format::Plain => {
                let _ = write!(out, "{v}");
            }
            Format::Printf(p) => {
                out.push_str(&p.before);
                match p.verb {
                    'f' => out.push_str(&go_f(v, p.precision.unwrap_or(6))),
                    'e' => out.push_str(&go_e(v, p.precision.unwrap_or(6))),
                    _ => out.push_str(&go_g(v, p.precision)),
                }
                out.push_str(&p.after);
            }
            Format::Humanize => out.push_str(&humanize(v)),
            Format::HumanizePercentage => {
                out.push_str(&go_g(v * 100.0, Some(4)));
                out.push('%');
            }
        }
    }
}

impl Printf {
    fn parse(format: &str) -> Result<Printf, String> {
        let mut before = String::new();
        let mut after = String::new();
        let mut verb: Option<(char, Option<usize>)> = None;
        let mut chars = format.chars().peekable();
        while let Some(c) = chars.next() {
            let text = if verb.is_some() { &mut after } else { &mut before };
            if c != '%' {
                text.push(c);
                continue;
            }
            if chars.peek() == Some(&'%') {
                chars.next();
                text.push('%');
                continue;
            }
            // `%`, then an optional `.N`, then the verb.
            let mut spec = String::from("%");
            let mut precision = None;
            if chars.peek() == Some(&'.') {
                chars.next();
                spec.push('.');
                let mut digits = String::new();
                while let Some(d) = chars.peek().copied().filter(char::is_ascii_digit) {
                    chars.next();
                    digits.push(d);
                }
                spec.push_str(&digits);
                // Go reads `%.f` as precision 0.
                let n = if digits.is_empty() {
                    0
                } else {
                    digits
                        .parse::<usize>()
                        .map_err(|_| format!("precision `{digits}` is too large"))?
                };
                if n > MAX_PRECISION {
                    return Err(format!("precision {n} in `{spec}` is above {MAX_PRECISION}"));
                }
                precision = Some(n);
            }
            let v = chars.next();
            if let Some(v) = v {
                spec.push(v);
            }
            match v {
                Some(v @ ('f' | 'e' | 'g')) => {
                    if verb.is_some() {
                        return Err(format!("`{format}` has more than one verb; $value fills exactly one"));
                    }
                    verb = Some((v, precision));
                }
                _ => {
                    return Err(format!(
                        "unsupported verb `{spec}` in `{format}`: use %f, %e or %g with an optional precision (%.1f), or %% for a percent sign"
                    ));
                }
            }
        }
        let Some((verb, precision)) = verb else {
            return Err(format!(
                "`{format}` has no verb for $value: add %f, %e or %g (e.g. %.1f)"
            ));
        };
        Ok(Printf {
            before,
            verb,
            precision,
            after,
        })
    }
}

/// Go's spelling of infinities and NaN in `fmt`.
fn non_finite(v: f64) -> Option<String> {
    if v.is_nan() {
        Some("NaN".into())
    } else if v.is_infinite() {
        Some(if v > 0.0 { "+Inf" } else { "-Inf" }.into())
    } else {
        None
    }
}

/// Go's `%.Nf`.
fn go_f(v: f64, precision: usize) -> String {
    non_finite(v).unwrap_or_else(|| format!("{v:.precision$}"))
}

/// Splits Rust's `{:e}` output (`9.3287e1`) into mantissa and exponent.
fn split_exp(s: &str) -> (&str, i32) {
    match s.split_once('e') {
        Some((m, e)) => (m, e.parse().unwrap_or(0)),
        None => (s, 0),
    }
}

/// Go's exponent: a sign and at least two digits (`e+01`).
fn go_exp(mantissa: &str, exp: i32) -> String {
    let sign = if exp < 0 { '-' } else { '+' };
    format!("{mantissa}e{sign}{:02}", exp.unsigned_abs())
}

/// Go's `%.Ne`.
fn go_e(v: f64, precision: usize) -> String {
    if let Some(s) = non_finite(v) {
        return s;
    }
    let s = format!("{v:.precision$e}");
    let (m, e) = split_exp(&s);
    go_exp(m, e)
}

fn trim_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

/// Go's `%g` (`None`: the shortest representation) and `%.Ng`: `%e` when the exponent is below
/// -4 or at least the precision (6 for the shortest), else `%f`; trailing zeros dropped.
fn go_g(v: f64, precision: Option<usize>) -> String {
    if let Some(s) = non_finite(v) {
        return s;
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0".into() } else { "0".into() };
    }
    let (sci, eprec) = match precision {
        // Go treats %.0g as %.1g.
        Some(p) => {
            let p = p.max(1);
            (format!("{:.*e}", p - 1, v), p as i32)
        }
        None => (format!("{v:e}"), 6),
    };
    let (mantissa, exp) = split_exp(&sci);
    if exp < -4 || exp >= eprec {
        return go_exp(trim_zeros(mantissa), exp);
    }
    // Fixed notation with the significant digits of the rounded mantissa.
    let digits = mantissa.chars().filter(char::is_ascii_digit).count() as i32;
    let decimals = (digits - 1 - exp).max(0) as usize;
    trim_zeros(&format!("{v:.decimals$}")).to_string()
}

/// Prometheus's `humanize`: four significant digits and an SI prefix.
fn humanize(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return go_g(v, Some(4));
    }
    let mut v = v;
    let mut prefix = "";
    if v.abs() >= 1.0 {
        for p in ["k", "M", "G", "T", "P", "E", "Z", "Y"] {
            if v.abs() < 1000.0 {
                break;
            }
            prefix = p;
            v /= 1000.0;
        }
    } else {
        for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
            if v.abs() >= 1.0 {
                break;
            }
            prefix = p;
            v *= 1000.0;
        }
    }
    format!("{}{prefix}", go_g(v, Some(4)))
}

impl TryFrom<String> for Template {
    type Error = String;

    fn try_from(s: String) -> Result<Template, String> {
        Template::parse(&s)
    }
}

impl From<Template> for String {
    fn from(t: Template) -> String {
        t.source
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_every_kind_of_hole() {
        let t =
            Template::parse("CPU {{ $value }} on {{$labels.host}} ({{ $rule }}, {{ $severity }}){{ $labels.nope }}.");
        let t = t.unwrap_or_else(|e| panic!("{e}"));
        let mut labels = BTreeMap::new();
        labels.insert("host".to_string(), "web1".to_string());
        assert_eq!(
            t.render(91.5, "high_cpu", "critical", &labels),
            "CPU 91.5 on web1 (high_cpu, critical)."
        );
        assert_eq!(t.render(90.0, "r", "s", &labels), "CPU 90 on web1 (r, s).");
    }

    #[test]
    fn rejects_what_it_cannot_fill() {
        for (src, needle) in [
            ("a {{ $value", "unclosed"),
            ("{{ $values }}", "unknown variable `$values`"),
            ("{{ $labels. }}", "unknown variable"),
            ("{{ value }}", "unknown variable"),
            ("x }} y", "without"),
        ] {
            let err = Template::parse(src).err().unwrap_or_default();
            assert!(err.contains(needle), "{src}: {err}");
        }
        assert!(Template::parse("no holes at all").is_ok());
    }

    fn one(src: &str, value: f64) -> String {
        Template::parse(src)
            .unwrap_or_else(|e| panic!("{src}: {e}"))
            .render(value, "r", "s", &BTreeMap::new())
    }

    #[test]
    fn printf_formats_the_value_as_go_does() {
        let v = 93.287_182_8;
        assert_eq!(one("CPU {{ $value | printf \"%.1f\" }} %", v), "CPU 93.3 %");
        assert_eq!(one("{{ printf \"%.2f\" $value }}", v), "93.29");
        assert_eq!(one("{{$value|printf \"%.0f\"}}", v), "93");
        assert_eq!(one("{{ $value | printf \"%.f\" }}", 2.5), "2");
        assert_eq!(one("{{ $value | printf \"%f\" }}", 1.0 / 3.0), "0.333333");
        assert_eq!(one("{{ $value | printf \"%.1f%%\" }}", v), "93.3%");
        assert_eq!(one("{{ $value | printf \"at %.3e now\" }}", v), "at 9.329e+01 now");
        assert_eq!(one("{{ $value | printf \"%e\" }}", 0.000_123), "1.230000e-04");
        assert_eq!(one("{{ $value | printf \"%g\" }}", v), "93.2871828");
        assert_eq!(one("{{ $value | printf \"%g\" }}", 1e6), "1e+06");
        assert_eq!(one("{{ $value | printf \"%g\" }}", 123_456.0), "123456");
        assert_eq!(one("{{ $value | printf \"%g\" }}", 0.000_01), "1e-05");
        assert_eq!(one("{{ $value | printf \"%.3g\" }}", v), "93.3");
        assert_eq!(one("{{ $value | printf \"%.3g\" }}", -1234.5), "-1.23e+03");
        assert_eq!(one("{{ $value | printf \"%.4g\" }}", 50.0), "50");
        assert_eq!(one("{{ $value | printf \"%.1f\" }}", f64::NAN), "NaN");
        assert_eq!(one("{{ $value | printf \"%.1f\" }}", f64::INFINITY), "+Inf");
        assert_eq!(one("{{ $value | printf \"%g\" }}", f64::NEG_INFINITY), "-Inf");
        // Plain `$value` is unchanged: the shortest text that reads back as the same number.
        assert_eq!(one("{{ $value }}", v), "93.2871828");
    }

    #[test]
    fn humanize_uses_si_prefixes_and_four_digits() {
        for (v, want) in [
            (0.0, "0"),
            (93.287_182_8, "93.29"),
            (999.0, "999"),
            (1234.0, "1.234k"),
            (1_234_567.0, "1.235M"),
            (-2_500_000_000.0, "-2.5G"),
            (0.0125, "12.5m"),
            (0.000_002_5, "2.5u"),
            (f64::INFINITY, "+Inf"),
        ] {
            assert_eq!(one("{{ $value | humanize }}", v), want, "{v}");
        }
        assert_eq!(one("{{ $value | humanizePercentage }}", 0.4213), "42.13%");
        assert_eq!(one("{{ $value | humanizePercentage }}", 1.0), "100%");
    }

    #[test]
    fn the_examples_of_docs_analysis_md_hold() {
        let table: [(&str, [&str; 3]); 6] = [
            ("{{ $value }}", ["93.2871828", "1234567", "0.0125"]),
            ("{{ $value | printf \"%.1f\" }}", ["93.3", "1234567.0", "0.0"]),
            (
                "{{ $value | printf \"%.3e\" }}",
                ["9.329e+01", "1.235e+06", "1.250e-02"],
            ),
            ("{{ $value | printf \"%.3g\" }}", ["93.3", "1.23e+06", "0.0125"]),
            ("{{ $value | humanize }}", ["93.29", "1.235M", "12.5m"]),
            ("{{ $value | humanizePercentage }}", ["9329%", "1.235e+08%", "1.25%"]),
        ];
        for (src, want) in table {
            for (v, w) in [93.287_182_8, 1_234_567.0, 0.0125].into_iter().zip(want) {
                assert_eq!(one(src, v), w, "{src} with {v}");
            }
        }
        assert_eq!(one("{{ $value | printf \"%.1f%%\" }}", 93.287_182_8), "93.3%");
    }

    #[test]
    fn formats_it_cannot_apply_are_validation_errors() {
        for (src, needle) in [
            ("{{ $value | printf }}", "needs a format"),
            ("{{ $value | printf %.1f }}", "one double-quoted format"),
            ("{{ $value | printf \"%d\" }}", "unsupported verb `%d`"),
            ("{{ $value | printf \"%5.1f\" }}", "unsupported verb `%5`"),
            ("{{ $value | printf \"%s\" }}", "unsupported verb"),
            ("{{ $value | printf \"value\" }}", "has no verb"),
            ("{{ $value | printf \"%f %f\" }}", "more than one verb"),
            ("{{ $value | printf \"%.99f\" }}", "above 17"),
            ("{{ $value | printf \"%.1f\" | humanize }}", "one function only"),
            ("{{ $value | round }}", "unknown function `round`"),
            ("{{ $value | humanize 2 }}", "takes no argument"),
            ("{{ $labels.host | humanize }}", "only $value can be formatted"),
            ("{{ printf \"%.1f\" $labels.host }}", "printf formats $value"),
            ("x {{ $value | nope }}", "at byte 2"),
        ] {
            let err = Template::parse(src).err().unwrap_or_default();
            assert!(err.contains(needle), "{src}: {err}");
        }
    }
}
