//! Annotation templates: text with `{{ $value }}`, `{{ $labels.NAME }}`, `{{ $rule }}` and
//! `{{ $severity }}` holes, parsed once when a rule is validated (so a typo is a validation error
//! that names the annotation, not a silently empty field in a page at 3 a.m.) and filled at each
//! event. Deliberately not a template language: no conditionals, no functions.

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
    Value,
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
            let part = match var {
                "$value" => Part::Value,
                "$rule" => Part::Rule,
                "$severity" => Part::Severity,
                v => match v.strip_prefix("$labels.") {
                    Some(name) if !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') => {
                        Part::Label(name.to_string())
                    }
                    _ => {
                        return Err(format!(
                            "unknown variable `{v}` at byte {}; expected $value, $labels.NAME, $rule or $severity",
                            offset + open
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
                Part::Value => {
                    let _ = write!(out, "{value}");
                }
                Part::Rule => out.push_str(rule),
                Part::Severity => out.push_str(severity),
                Part::Label(name) => out.push_str(labels.get(name).map_or("", String::as_str)),
            }
        }
        out
    }
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
}
