//! Alert rules: the shape they have in the configuration file and in the rules API
//! ([`RuleSpec`], kept as written so that `GET /api/v1/rules` returns what was sent) and their
//! checked form ([`Rule`]) that the engine runs. Every field that can be wrong is checked in one
//! pass and every fault is reported with its path (`rules[2].expr: ...`), so that fixing a rules
//! file takes one round trip, not one per mistake. Kinds, durations, operators and severities
//! are strings in the spec for the same reason: an enum would make serde stop at the first bad
//! value with a message that names no rule.

use std::collections::BTreeMap;
use std::fmt;

use pulsewire_model::Severity;
use pulsewire_proto::{Agg, Selector, parse_duration, parse_selector};
use serde::{Deserialize, Serialize};

use super::AlertError;
use super::template::Template;

/// The longest window or duration a rule may ask for. A window holds at most
/// [`super::WINDOW_CAP`] cells whatever its length, so this bounds how coarse a long window gets,
/// not memory.
pub const MAX_DURATION_MS: i64 = 7 * 24 * 3_600_000;
/// The staleness window of anomaly rules that do not set one.
pub const DEFAULT_ANOMALY_WINDOW_MS: i64 = 5 * 60_000;
/// The score above which an anomaly rule fires when it does not set `threshold`.
pub const DEFAULT_ANOMALY_THRESHOLD: f64 = 0.9;
const MAX_NAME_LEN: usize = 200;

/// One rule as written in `[[alerts.rules]]` or sent to `POST /api/v1/rules`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    pub name: String,
    /// The tenant the rule belongs to: it judges only that tenant's series and its alerts are
    /// that tenant's. `None` is `default` in the configuration file; over the API the request's
    /// tenant is filled in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// `threshold`, `absence`, `rate` or `anomaly`.
    pub kind: String,
    /// `AGG(selector)` for `threshold`, a bare selector for the other kinds.
    pub expr: String,
    /// Aggregation window (threshold, rate), silence that counts as absence (absence), how long a
    /// score stays valid (anomaly, default 5m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
    /// `>`, `>=`, `<`, `<=`, `==` or `!=`; anomaly defaults to `>=`, absence takes none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op: Option<String>,
    /// Threshold: the aggregate's bound; rate: change per second; anomaly: score in 0..=1
    /// (default 0.9).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// How long the condition must hold before the alert fires; default `0s`.
    #[serde(default, rename = "for", skip_serializing_if = "Option::is_none")]
    pub for_: Option<String>,
    /// How long a firing alert stays firing after the condition stopped holding; default `0s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_firing_for: Option<String>,
    /// `info`, `warning` (default) or `critical`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl RuleSpec {
    /// The tenant the rule belongs to (`default` when none is named).
    pub fn tenant(&self) -> &str {
        self.tenant.as_deref().unwrap_or(pulsewire_model::DEFAULT_TENANT)
    }
}

/// What a rule judges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleKind {
    /// An aggregate of each series over the window compared with a threshold.
    Threshold,
    /// No point of a series (or of any matching series) for the window.
    Absence,
    /// `(last - first) / seconds` between the first and last point in the window, compared with
    /// a threshold (signed: a drop is negative).
    Rate,
    /// The anomaly score the caller computed for the point, compared with a threshold.
    Anomaly,
}

impl RuleKind {
    pub const ALL: [RuleKind; 4] = [
        RuleKind::Threshold,
        RuleKind::Absence,
        RuleKind::Rate,
        RuleKind::Anomaly,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RuleKind::Threshold => "threshold",
            RuleKind::Absence => "absence",
            RuleKind::Rate => "rate",
            RuleKind::Anomaly => "anomaly",
        }
    }
}

/// How a value is compared with the rule's threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CmpOp {
    #[serde(rename = ">")]
    Gt,
    #[serde(rename = ">=")]
    Ge,
    #[serde(rename = "<")]
    Lt,
    #[serde(rename = "<=")]
    Le,
    #[serde(rename = "==")]
    Eq,
    #[serde(rename = "!=")]
    Ne,
}

impl CmpOp {
    pub const ALL: [CmpOp; 6] = [CmpOp::Gt, CmpOp::Ge, CmpOp::Lt, CmpOp::Le, CmpOp::Eq, CmpOp::Ne];

    pub fn as_str(self) -> &'static str {
        match self {
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
        }
    }

    pub fn parse(s: &str) -> Option<CmpOp> {
        CmpOp::ALL.into_iter().find(|op| op.as_str() == s.trim())
    }

    /// `value <op> threshold`. NaN never satisfies a rule, whatever the operator: a broken
    /// sensor should not page as "not equal to 0".
    pub fn holds(self, value: f64, threshold: f64) -> bool {
        if value.is_nan() {
            return false;
        }
        match self {
            CmpOp::Gt => value > threshold,
            CmpOp::Ge => value >= threshold,
            CmpOp::Lt => value < threshold,
            CmpOp::Le => value <= threshold,
            CmpOp::Eq => value == threshold,
            CmpOp::Ne => value != threshold,
        }
    }
}

impl fmt::Display for CmpOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A checked rule. Serializes as its [`RuleSpec`].
#[derive(Debug, Clone)]
pub struct Rule {
    pub spec: RuleSpec,
    pub kind: RuleKind,
    pub selector: Selector,
    /// The aggregation of a threshold rule; `None` for the other kinds.
    pub agg: Option<Agg>,
    pub window_ms: i64,
    /// `None` for absence rules.
    pub op: Option<CmpOp>,
    pub threshold: f64,
    pub for_ms: i64,
    pub keep_firing_for_ms: i64,
    pub severity: Severity,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, Template>,
}

impl Rule {
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// The tenant the rule belongs to (`default` when the spec names none).
    pub fn tenant(&self) -> &str {
        self.spec.tenant()
    }

    /// Whether the rule's condition holds for `value` (for absence rules, `value` is the time
    /// without data and the condition is checked by the caller).
    pub fn holds(&self, value: f64) -> bool {
        self.op.is_some_and(|op| op.holds(value, self.threshold))
    }

    /// Whether a series of `measurement.field` with `tags` is one the rule judges.
    pub fn matches(&self, measurement: &str, field: &str, tags: &[(String, String)]) -> bool {
        let sel = &self.selector;
        sel.measurement == measurement
            && sel.field.as_deref().is_none_or(|f| f == field)
            && sel.matchers.iter().all(|m| {
                let value = tags.iter().find(|(k, _)| *k == m.tag).map(|(_, v)| v.as_str());
                m.matches(value)
            })
    }

    /// The annotations of an instance with `labels` whose deciding value is `value`.
    pub fn render_annotations(&self, value: f64, labels: &BTreeMap<String, String>) -> BTreeMap<String, String> {
        self.annotations
            .iter()
            .map(|(k, t)| (k.clone(), t.render(value, self.name(), self.severity.as_str(), labels)))
            .collect()
    }
}

impl PartialEq for Rule {
    fn eq(&self, other: &Rule) -> bool {
        self.spec == other.spec
    }
}

impl Serialize for Rule {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.spec.serialize(s)
    }
}

/// Checks a whole rule set (the configuration's, or the API's after a change): every rule on
/// its own and the names' uniqueness. Paths are `rules[i].<field>`.
pub fn validate(specs: &[RuleSpec]) -> Result<Vec<Rule>, Vec<AlertError>> {
    let mut errors = Vec::new();
    let mut rules = Vec::with_capacity(specs.len());
    // Names are unique per tenant: two tenants may each have a `high_cpu`.
    let mut seen: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for (i, spec) in specs.iter().enumerate() {
        let prefix = format!("rules[{i}].");
        if let Some(first) = seen.insert((spec.tenant(), spec.name.as_str()), i) {
            errors.push(AlertError::invalid(
                format!("{prefix}name"),
                format!(
                    "duplicate name `{}` in tenant `{}` (also rules[{first}])",
                    spec.name,
                    spec.tenant()
                ),
            ));
        }
        match check(spec, &prefix) {
            Ok(rule) => rules.push(rule),
            Err(mut e) => errors.append(&mut e),
        }
    }
    if errors.is_empty() { Ok(rules) } else { Err(errors) }
}

/// Checks one rule (the body of `POST`/`PUT /api/v1/rules`). Paths are the bare field names.
pub fn validate_one(spec: &RuleSpec) -> Result<Rule, Vec<AlertError>> {
    check(spec, "")
}

fn check(spec: &RuleSpec, prefix: &str) -> Result<Rule, Vec<AlertError>> {
    let mut errors = Vec::new();
    let mut err = |field: &str, message: String| errors.push(AlertError::invalid(format!("{prefix}{field}"), message));

    if let Err(m) = check_name(&spec.name) {
        err("name", m);
    }
    if let Some(t) = &spec.tenant
        && let Err(m) = check_tenant(t)
    {
        err("tenant", m);
    }

    let kind = RuleKind::ALL.into_iter().find(|k| k.as_str() == spec.kind.trim());
    if kind.is_none() {
        err(
            "kind",
            format!(
                "unknown kind `{}`; expected threshold, absence, rate or anomaly",
                clip(&spec.kind)
            ),
        );
    }

    let (agg, selector) = match parse_expr(&spec.expr, kind) {
        Ok((agg, sel)) => (agg, Some(sel)),
        Err(m) => {
            err("expr", m);
            (None, None)
        }
    };

    let window_ms = match (&spec.window, kind) {
        (Some(w), _) => match parse_duration(w) {
            Ok(ms) if ms > MAX_DURATION_MS => {
                err("window", format!("`{}` is longer than the maximum 7d", clip(w)));
                None
            }
            Ok(ms) => Some(ms),
            Err(_) if is_zero_duration(w) => {
                err("window", "must be above zero".to_string());
                None
            }
            Err(e) => {
                err("window", e.message);
                None
            }
        },
        (None, Some(RuleKind::Anomaly)) => Some(DEFAULT_ANOMALY_WINDOW_MS),
        (None, Some(k)) => {
            err("window", format!("required for {} rules, e.g. `1m`", k.as_str()));
            None
        }
        (None, None) => None,
    };

    let op = match (&spec.op, kind) {
        (Some(_), Some(RuleKind::Absence)) => {
            err("op", "absence rules take no `op`".to_string());
            None
        }
        (Some(o), _) => {
            let op = CmpOp::parse(o);
            if op.is_none() {
                err(
                    "op",
                    format!("unknown operator `{}`; expected >, >=, <, <=, == or !=", clip(o)),
                );
            }
            op
        }
        (None, Some(RuleKind::Anomaly)) => Some(CmpOp::Ge),
        (None, Some(k @ (RuleKind::Threshold | RuleKind::Rate))) => {
            err("op", format!("required for {} rules, e.g. `>`", k.as_str()));
            None
        }
        (None, _) => None,
    };

    let threshold = match (spec.threshold, kind) {
        (Some(_), Some(RuleKind::Absence)) => {
            err("threshold", "absence rules take no `threshold`".to_string());
            0.0
        }
        (Some(t), _) if !t.is_finite() => {
            err("threshold", "must be a finite number".to_string());
            0.0
        }
        (Some(t), Some(RuleKind::Anomaly)) if !(0.0..=1.0).contains(&t) => {
            err(
                "threshold",
                format!("{t} is outside 0..1 (anomaly scores are in [0, 1])"),
            );
            0.0
        }
        (Some(t), _) => t,
        (None, Some(RuleKind::Anomaly)) => DEFAULT_ANOMALY_THRESHOLD,
        (None, Some(k @ (RuleKind::Threshold | RuleKind::Rate))) => {
            err("threshold", format!("required for {} rules", k.as_str()));
            0.0
        }
        (None, _) => 0.0,
    };

    let mut duration_or_zero = |field: &str, v: &Option<String>| match v {
        None => 0,
        Some(s) if is_zero_duration(s) => 0,
        Some(s) => match parse_duration(s) {
            Ok(ms) if ms > MAX_DURATION_MS => {
                err(field, format!("`{}` is longer than the maximum 7d", clip(s)));
                0
            }
            Ok(ms) => ms,
            Err(e) => {
                err(field, e.message);
                0
            }
        },
    };
    let for_ms = duration_or_zero("for", &spec.for_);
    let keep_firing_for_ms = duration_or_zero("keep_firing_for", &spec.keep_firing_for);

    let severity = match spec.severity.as_deref().map(str::trim) {
        None => Some(Severity::Warning),
        Some("info") => Some(Severity::Info),
        Some("warning") => Some(Severity::Warning),
        Some("critical") => Some(Severity::Critical),
        Some(other) => {
            err(
                "severity",
                format!("unknown severity `{}`; expected info, warning or critical", clip(other)),
            );
            None
        }
    };

    for key in spec.labels.keys() {
        if let Err(m) = check_label_name(key) {
            err(&format!("labels.{key}"), m);
        }
    }
    let mut annotations = BTreeMap::new();
    for (key, text) in &spec.annotations {
        if key.is_empty() {
            err("annotations", "empty annotation name".to_string());
            continue;
        }
        match Template::parse(text) {
            Ok(t) => {
                annotations.insert(key.clone(), t);
            }
            Err(m) => err(&format!("annotations.{key}"), m),
        }
    }

    match (kind, selector, window_ms, severity) {
        (Some(kind), Some(selector), Some(window_ms), Some(severity)) if errors.is_empty() => Ok(Rule {
            spec: spec.clone(),
            kind,
            selector,
            agg,
            window_ms,
            op,
            threshold,
            for_ms,
            keep_firing_for_ms,
            severity,
            labels: spec.labels.clone(),
            annotations,
        }),
        _ => Err(errors),
    }
}

fn check_name(name: &str) -> Result<(), String> {
    let mut b = name.bytes();
    let ok = b.next().is_some_and(|c| c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b':' | b'.' | b'-'));
    if !ok {
        return Err(format!(
            "`{}` is not a valid rule name; use letters, digits, `_`, `:`, `.`, `-`, starting with a letter or `_`",
            clip(name)
        ));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!("longer than {MAX_NAME_LEN} bytes"));
    }
    Ok(())
}

/// Tenant names as keys and tokens carry them: 1 to 64 letters, digits, `-`, `_`.
fn check_tenant(tenant: &str) -> Result<(), String> {
    let ok = !tenant.is_empty()
        && tenant.len() <= 64
        && tenant
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{}` is not a valid tenant; use 1 to 64 letters, digits, `-`, `_`",
            clip(tenant)
        ))
    }
}

fn check_label_name(name: &str) -> Result<(), String> {
    let mut b = name.bytes();
    let ok = b.next().is_some_and(|c| c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_');
    if !ok {
        return Err("label names are letters, digits and `_`, starting with a letter or `_`".to_string());
    }
    if name.starts_with("__") {
        return Err("names starting with `__` are reserved (`__name__` is the series' name)".to_string());
    }
    Ok(())
}

/// Splits `AGG(selector)` (threshold) or takes a bare selector (the other kinds). With an
/// unknown kind the expression is still checked, in whichever form it has.
fn parse_expr(expr: &str, kind: Option<RuleKind>) -> Result<(Option<Agg>, Selector), String> {
    let e = expr.trim();
    let call = e.find('(').and_then(|open| {
        let name = e[..open].trim();
        let is_ident = !name.is_empty() && name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_');
        (is_ident && e.ends_with(')')).then(|| (name, &e[open + 1..e.len() - 1]))
    });
    match (kind, call) {
        (Some(RuleKind::Threshold), None) => Err(format!(
            "threshold rules take `AGG(selector)`, e.g. `avg(cpu.usage_user{{host=~\"web.*\"}})`; got `{}`",
            clip(e)
        )),
        (Some(RuleKind::Threshold) | None, Some((name, inner))) => {
            let agg = Agg::parse(name).map_err(|e| e.message)?;
            let sel = parse_selector(inner).map_err(|e| e.message)?;
            Ok((Some(agg), sel))
        }
        (Some(k), Some(_)) => Err(format!(
            "{} rules take a bare selector such as `cpu.usage_user{{host=\"a\"}}`, not an aggregation",
            k.as_str()
        )),
        (_, None) => Ok((None, parse_selector(e).map_err(|e| e.message)?)),
    }
}

/// `0`, `0s`, `0m`...: the proto parser only takes positive durations, and `for = "0s"` is the
/// natural way to write "fire at once". The unit is still checked by parsing the same text with a
/// one in place of the zeros.
fn is_zero_duration(s: &str) -> bool {
    let s = s.trim();
    if s == "0" {
        return true;
    }
    let has_digit = s.bytes().any(|c| c.is_ascii_digit());
    has_digit && s.bytes().all(|c| c == b'0' || !c.is_ascii_digit()) && parse_duration(&s.replace('0', "1")).is_ok()
}

fn clip(s: &str) -> String {
    const MAX: usize = 64;
    if s.len() <= MAX {
        return s.to_string();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, kind: &str, expr: &str) -> RuleSpec {
        RuleSpec {
            name: name.into(),
            tenant: None,
            kind: kind.into(),
            expr: expr.into(),
            window: Some("1m".into()),
            op: Some(">".into()),
            threshold: Some(90.0),
            for_: None,
            keep_firing_for: None,
            severity: None,
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
        }
    }

    fn errors(specs: &[RuleSpec]) -> Vec<String> {
        validate(specs)
            .err()
            .unwrap_or_default()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn the_documented_example_parses_from_json() {
        let json = r#"{
            "name": "high_cpu", "kind": "threshold", "expr": "avg(cpu.usage_user{host=~\"web.*\"})",
            "window": "1m", "op": ">", "threshold": 90.0, "for": "30s", "keep_firing_for": "0s",
            "severity": "critical", "labels": {"team": "ops"},
            "annotations": {"summary": "CPU {{ $value }} on {{ $labels.host }}"}
        }"#;
        let spec: RuleSpec = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}"));
        let rules = validate(std::slice::from_ref(&spec)).unwrap_or_else(|e| panic!("{e:?}"));
        let r = &rules[0];
        assert_eq!(r.kind, RuleKind::Threshold);
        assert_eq!(r.agg, Some(Agg::Avg));
        assert_eq!(r.selector.measurement, "cpu");
        assert_eq!(r.selector.field.as_deref(), Some("usage_user"));
        assert_eq!((r.window_ms, r.for_ms, r.keep_firing_for_ms), (60_000, 30_000, 0));
        assert_eq!(r.severity, Severity::Critical);
        assert!(r.holds(90.5) && !r.holds(90.0));
        assert!(r.matches("cpu", "usage_user", &[("host".into(), "web1".into())]));
        assert!(!r.matches("cpu", "usage_user", &[("host".into(), "db1".into())]));
        assert!(!r.matches("cpu", "usage_system", &[("host".into(), "web1".into())]));
        // Serializes back as written.
        let back = serde_json::to_value(r).unwrap_or_default();
        assert_eq!(back["for"], "30s");
        assert_eq!(back["expr"], "avg(cpu.usage_user{host=~\"web.*\"})");
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let json = r#"{"name": "a", "kind": "absence", "expr": "x", "windw": "1m"}"#;
        assert!(serde_json::from_str::<RuleSpec>(json).is_err());
    }

    #[test]
    fn defaults_per_kind() {
        let mut a = spec("gone", "absence", "heartbeat.up{host=\"a\"}");
        a.op = None;
        a.threshold = None;
        let mut an = spec("odd", "anomaly", "cpu.usage_user");
        an.op = None;
        an.threshold = None;
        an.window = None;
        let rules = validate(&[a, an]).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(rules[0].op, None);
        assert_eq!(rules[0].severity, Severity::Warning);
        assert_eq!(rules[1].op, Some(CmpOp::Ge));
        assert_eq!(rules[1].threshold, DEFAULT_ANOMALY_THRESHOLD);
        assert_eq!(rules[1].window_ms, DEFAULT_ANOMALY_WINDOW_MS);
    }

    #[test]
    fn every_fault_is_reported_with_its_path() {
        let ok = spec("ok", "threshold", "avg(cpu.x)");
        let mut bad = spec("9bad", "threshold", "avg(cpu.x)");
        bad.window = Some("0s".into());
        bad.op = Some("=>".into());
        bad.severity = Some("page".into());
        bad.for_ = Some("5 minutes".into());
        bad.labels.insert("__name__".into(), "x".into());
        bad.annotations.insert("summary".into(), "{{ $valu }}".into());
        let dup = spec("ok", "threshold", "p42(cpu.x)");
        let mut sel = spec("sel", "rate", "cpu.x{host=~\"(\"}");
        sel.kind = "rate".into();
        let mut anom = spec("anom", "anomaly", "cpu.x");
        anom.threshold = Some(1.5);
        let mut kind = spec("kind", "spike", "cpu.x");
        kind.window = None;
        let thr = spec("thr", "threshold", "cpu.x");
        let errs = errors(&[ok, bad, dup, sel, anom, kind, thr]);
        let has = |needle: &str| errs.iter().any(|e| e.contains(needle));
        assert!(has("rules[1].name: `9bad` is not a valid rule name"), "{errs:#?}");
        assert!(has("rules[1].window: must be above zero"), "{errs:#?}");
        assert!(has("rules[1].op: unknown operator `=>`"), "{errs:#?}");
        assert!(has("rules[1].severity: unknown severity `page`"), "{errs:#?}");
        assert!(has("rules[1].for: "), "{errs:#?}");
        assert!(has("rules[1].labels.__name__: "), "{errs:#?}");
        assert!(
            has("rules[1].annotations.summary: unknown variable `$valu`"),
            "{errs:#?}"
        );
        assert!(
            has("rules[2].name: duplicate name `ok` in tenant `default` (also rules[0])"),
            "{errs:#?}"
        );
        assert!(has("rules[2].expr: unknown aggregation `p42`"), "{errs:#?}");
        assert!(has("rules[3].expr: invalid regex"), "{errs:#?}");
        assert!(has("rules[4].threshold: 1.5 is outside 0..1"), "{errs:#?}");
        assert!(has("rules[5].kind: unknown kind `spike`"), "{errs:#?}");
        assert!(has("rules[6].expr: threshold rules take `AGG(selector)`"), "{errs:#?}");
        assert!(!errs.iter().any(|e| e.starts_with("rules[0]")), "{errs:#?}");
    }

    #[test]
    fn names_are_unique_per_tenant_and_tenants_are_checked() {
        let a = spec("high_cpu", "threshold", "avg(cpu.x)");
        let mut a = RuleSpec {
            op: Some(">".into()),
            threshold: Some(1.0),
            ..a
        };
        let mut b = a.clone();
        b.tenant = Some("acme".into());
        assert!(errors(&[a.clone(), b.clone()]).is_empty());
        let mut c = b.clone();
        c.tenant = Some("acme".into());
        let errs = errors(&[a.clone(), b, c]);
        assert!(
            errs.iter()
                .any(|e| e.contains("duplicate name `high_cpu` in tenant `acme`")),
            "{errs:#?}"
        );
        a.tenant = Some("no/slash".into());
        let errs = errors(&[a]);
        assert!(errs.iter().any(|e| e.starts_with("rules[0].tenant: ")), "{errs:#?}");
    }

    #[test]
    fn kind_specific_fields() {
        let mut a = spec("a", "absence", "hb.up");
        a.threshold = Some(1.0);
        let r = spec("r", "rate", "avg(cpu.x)");
        let mut t = spec("t", "threshold", "avg(cpu.x)");
        t.op = None;
        t.threshold = None;
        t.window = None;
        let errs = errors(&[a, r, t]);
        let has = |needle: &str| errs.iter().any(|e| e.contains(needle));
        assert!(has("rules[0].op: absence rules take no `op`"), "{errs:#?}");
        assert!(
            has("rules[0].threshold: absence rules take no `threshold`"),
            "{errs:#?}"
        );
        assert!(has("rules[1].expr: rate rules take a bare selector"), "{errs:#?}");
        assert!(has("rules[2].op: required"), "{errs:#?}");
        assert!(has("rules[2].threshold: required"), "{errs:#?}");
        assert!(has("rules[2].window: required"), "{errs:#?}");
        let one = validate_one(&spec("", "rate", "cpu.x")).err().unwrap_or_default();
        assert_eq!(one[0].path(), Some("name"));
    }

    #[test]
    fn zero_durations() {
        for z in ["0", "0s", "0ms", "00m"] {
            assert!(is_zero_duration(z), "{z}");
        }
        for nz in ["", "1s", "0x", "10s", "s"] {
            assert!(!is_zero_duration(nz), "{nz}");
        }
    }

    #[test]
    fn nan_never_holds() {
        for op in CmpOp::ALL {
            assert!(!op.holds(f64::NAN, 0.0), "{op}");
        }
    }
}
