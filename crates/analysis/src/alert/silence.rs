//! Silences: an operator's "I know, stop telling me" for the alerts whose labels match a set of
//! matchers (`=`, `!=`, `=~`, `!~`, with the query API's regex rules: anchored, size-limited),
//! between `starts_at` and `ends_at`. A silence mutes notifications only; the alerts themselves
//! keep their states and stay listed. Expired silences are ignored and kept for a while so the
//! API can show them (the caller decides how long with [`Silences::gc`]). A silence whose every
//! matcher also matches the empty label is refused: it would mute every alert.

use std::collections::BTreeMap;

use pulsewire_model::{AlertEvent, alert_id};
use pulsewire_proto::{MatchOp, Matcher};
use serde::{Deserialize, Serialize};

use super::AlertError;
use super::dispatch::{ALERTNAME, SEVERITY};

/// One matcher as written in the API: `{"name": "host", "op": "=~", "value": "web.*"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SilenceMatcher {
    pub name: String,
    /// `=` (default), `!=`, `=~` or `!~`.
    #[serde(default = "eq_op")]
    pub op: String,
    pub value: String,
}

fn eq_op() -> String {
    "=".to_string()
}

/// The body of `POST /api/v1/silences`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SilenceSpec {
    pub matchers: Vec<SilenceMatcher>,
    /// Unix ms; default now.
    #[serde(default)]
    pub starts_at: Option<i64>,
    /// Unix ms.
    pub ends_at: i64,
    pub created_by: String,
    #[serde(default)]
    pub comment: String,
}

/// A stored silence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Silence {
    pub id: String,
    pub matchers: Vec<SilenceMatcher>,
    pub starts_at: i64,
    pub ends_at: i64,
    pub created_by: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub comment: String,
}

impl Silence {
    pub fn is_active(&self, now: i64) -> bool {
        self.starts_at <= now && now < self.ends_at
    }
}

#[derive(Debug, Clone)]
struct Entry {
    silence: Silence,
    compiled: Vec<Matcher>,
}

/// Every silence, active, pending or expired.
#[derive(Debug, Clone, Default)]
pub struct Silences {
    entries: BTreeMap<String, Entry>,
    created: u64,
}

impl Silences {
    pub fn new() -> Silences {
        Silences::default()
    }

    /// Validates and stores a new silence; its id is derived from its content, the creation time
    /// and a sequence number, so two identical requests still get two silences.
    pub fn add(&mut self, spec: SilenceSpec, now: i64) -> Result<Silence, Vec<AlertError>> {
        self.created += 1;
        let mut seed = BTreeMap::new();
        seed.insert("created_by".to_string(), spec.created_by.clone());
        seed.insert("n".to_string(), self.created.to_string());
        seed.insert("now".to_string(), now.to_string());
        for (i, m) in spec.matchers.iter().enumerate() {
            seed.insert(format!("m{i}"), format!("{}{}{}", m.name, m.op, m.value));
        }
        let silence = Silence {
            id: alert_id("silence", &seed),
            matchers: spec.matchers,
            starts_at: spec.starts_at.unwrap_or(now),
            ends_at: spec.ends_at,
            created_by: spec.created_by,
            comment: spec.comment,
        };
        self.insert(silence.clone())?;
        Ok(silence)
    }

    /// Stores `silence` as it is (a restore, or an edit keeping its id), replacing any with the
    /// same id.
    pub fn insert(&mut self, silence: Silence) -> Result<(), Vec<AlertError>> {
        let compiled = check(&silence)?;
        self.entries.insert(silence.id.clone(), Entry { silence, compiled });
        Ok(())
    }

    /// Ends a silence now (Alertmanager's "expire"); it stays listed until [`Silences::gc`].
    pub fn expire(&mut self, id: &str, now: i64) -> Result<(), AlertError> {
        let e = self
            .entries
            .get_mut(id)
            .ok_or_else(|| AlertError::UnknownSilence(id.to_string()))?;
        e.silence.ends_at = e.silence.ends_at.min(now);
        e.silence.starts_at = e.silence.starts_at.min(e.silence.ends_at);
        Ok(())
    }

    pub fn remove(&mut self, id: &str) -> Result<Silence, AlertError> {
        self.entries
            .remove(id)
            .map(|e| e.silence)
            .ok_or_else(|| AlertError::UnknownSilence(id.to_string()))
    }

    pub fn get(&self, id: &str) -> Option<&Silence> {
        self.entries.get(id).map(|e| &e.silence)
    }

    pub fn list(&self) -> impl Iterator<Item = &Silence> {
        self.entries.values().map(|e| &e.silence)
    }

    /// The id of an active silence that mutes an alert with `labels` at `now`.
    pub fn silenced_by(&self, labels: &BTreeMap<String, String>, now: i64) -> Option<&str> {
        self.find(|tag| labels.get(tag).map(String::as_str), now)
    }

    /// The id of an active silence that mutes `event` at `now`. Besides its labels, a matcher on
    /// `alertname` sees the rule's name and one on `severity` the alert's severity (unless the
    /// alert has a label of that name), so a rule or a severity can be silenced as in
    /// Alertmanager.
    pub fn silencing(&self, event: &AlertEvent, now: i64) -> Option<&str> {
        self.find(
            |tag| match event.labels.get(tag) {
                Some(v) => Some(v.as_str()),
                None if tag == ALERTNAME => Some(event.rule.as_str()),
                None if tag == SEVERITY => Some(event.severity.as_str()),
                None => None,
            },
            now,
        )
    }

    fn find<'a>(&self, label: impl Fn(&str) -> Option<&'a str>, now: i64) -> Option<&str> {
        self.entries
            .values()
            .find(|e| e.silence.is_active(now) && e.compiled.iter().all(|m| m.matches(label(&m.tag))))
            .map(|e| e.silence.id.as_str())
    }

    /// Forgets the silences that ended more than `keep_ms` before `now`.
    pub fn gc(&mut self, now: i64, keep_ms: i64) {
        self.entries.retain(|_, e| now - e.silence.ends_at <= keep_ms);
    }

    /// Everything, for the server to persist; [`Silences::insert`] each to restore.
    pub fn snapshot(&self) -> Vec<Silence> {
        self.list().cloned().collect()
    }
}

fn check(s: &Silence) -> Result<Vec<Matcher>, Vec<AlertError>> {
    let mut errors = Vec::new();
    let mut compiled = Vec::with_capacity(s.matchers.len());
    if s.matchers.is_empty() {
        errors.push(AlertError::invalid("matchers", "at least one matcher is required"));
    }
    for (i, m) in s.matchers.iter().enumerate() {
        if m.name.is_empty() {
            errors.push(AlertError::invalid(format!("matchers[{i}].name"), "empty label name"));
        }
        let op = match m.op.trim() {
            "=" => MatchOp::Eq,
            "!=" => MatchOp::Ne,
            "=~" => MatchOp::Re,
            "!~" => MatchOp::NotRe,
            other => {
                errors.push(AlertError::invalid(
                    format!("matchers[{i}].op"),
                    format!("unknown operator `{other}`; expected =, !=, =~ or !~"),
                ));
                continue;
            }
        };
        match Matcher::new(m.name.clone(), op, m.value.clone()) {
            Ok(c) => compiled.push(c),
            Err(e) => errors.push(AlertError::invalid(format!("matchers[{i}].value"), e.message)),
        }
    }
    if errors.is_empty() && compiled.iter().all(|m| m.matches(None)) {
        errors.push(AlertError::invalid(
            "matchers",
            "every matcher matches an absent label, so this would silence every alert; add one that \
             requires a value",
        ));
    }
    if s.ends_at <= s.starts_at {
        errors.push(AlertError::invalid("ends_at", "must be after starts_at"));
    }
    if s.created_by.trim().is_empty() {
        errors.push(AlertError::invalid("created_by", "required"));
    }
    if errors.is_empty() { Ok(compiled) } else { Err(errors) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(name: &str, op: &str, value: &str) -> SilenceMatcher {
        SilenceMatcher {
            name: name.into(),
            op: op.into(),
            value: value.into(),
        }
    }

    fn spec(matchers: Vec<SilenceMatcher>, starts: i64, ends: i64) -> SilenceSpec {
        SilenceSpec {
            matchers,
            starts_at: Some(starts),
            ends_at: ends,
            created_by: "ops".into(),
            comment: "maintenance".into(),
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn matches_with_every_operator_while_active() {
        let mut s = Silences::new();
        let a = s
            .add(
                spec(
                    vec![
                        m("host", "=~", "web.*"),
                        m("env", "!=", "prod"),
                        m("rule", "!~", "disk.*"),
                        m("team", "=", "ops"),
                    ],
                    100,
                    200,
                ),
                50,
            )
            .unwrap_or_else(|e| panic!("{e:?}"));
        let hit = labels(&[("host", "web1"), ("env", "dev"), ("rule", "cpu"), ("team", "ops")]);
        assert_eq!(s.silenced_by(&hit, 150), Some(a.id.as_str()));
        assert_eq!(s.silenced_by(&hit, 99), None, "not started");
        assert_eq!(s.silenced_by(&hit, 200), None, "expired");
        let mut miss = hit.clone();
        miss.insert("env".into(), "prod".into());
        assert_eq!(s.silenced_by(&miss, 150), None);
        let mut miss = hit.clone();
        miss.insert("rule".into(), "disk_full".into());
        assert_eq!(s.silenced_by(&miss, 150), None);
        // `alertname` is the rule's name.
        let by_rule = s
            .add(spec(vec![m("alertname", "=", "disk_full")], 100, 200), 50)
            .unwrap_or_else(|e| panic!("{e:?}"));
        let ev = AlertEvent {
            id: "x".into(),
            tenant: "default".into(),
            rule: "disk_full".into(),
            state: pulsewire_model::AlertState::Firing,
            severity: pulsewire_model::Severity::Info,
            labels: labels(&[("host", "db1")]),
            value: 0.0,
            since: 0,
            annotations: BTreeMap::new(),
            at: 0,
            active_since: 0,
            ack: None,
        };
        assert_eq!(s.silencing(&ev, 150), Some(by_rule.id.as_str()));
        assert_eq!(s.silenced_by(&ev.labels, 150), None);
        s.remove(&by_rule.id).unwrap_or_else(|e| panic!("{e}"));
        // `severity` is the alert's severity.
        let by_severity = s
            .add(spec(vec![m("severity", "=~", "info|warning")], 100, 200), 50)
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(s.silencing(&ev, 150), Some(by_severity.id.as_str()));
        let critical = AlertEvent {
            severity: pulsewire_model::Severity::Critical,
            ..ev.clone()
        };
        assert_eq!(s.silencing(&critical, 150), None);
        s.remove(&by_severity.id).unwrap_or_else(|e| panic!("{e}"));
        // Expire early, then collect.
        s.expire(&a.id, 120).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.silenced_by(&hit, 150), None);
        s.gc(1_000, 10_000);
        assert_eq!(s.list().count(), 1);
        s.gc(1_000_000, 10_000);
        assert_eq!(s.list().count(), 0);
        assert!(s.expire(&a.id, 0).is_err());
    }

    #[test]
    fn rejects_silences_that_cannot_work_naming_the_field() {
        let mut s = Silences::new();
        let errs = s
            .add(spec(vec![m("host", "=~", "("), m("", "~", "x")], 10, 5), 0)
            .err()
            .unwrap_or_default();
        let text: Vec<String> = errs.iter().map(ToString::to_string).collect();
        let has = |n: &str| text.iter().any(|t| t.contains(n));
        assert!(has("matchers[0].value: invalid regex"), "{text:?}");
        assert!(has("matchers[1].name: empty"), "{text:?}");
        assert!(has("matchers[1].op: unknown operator"), "{text:?}");
        assert!(has("ends_at: must be after starts_at"), "{text:?}");
        let errs = s
            .add(spec(vec![m("host", "=~", ".*")], 0, 10), 0)
            .err()
            .unwrap_or_default();
        assert!(errs[0].to_string().contains("silence every alert"), "{errs:?}");
        assert!(s.add(spec(vec![], 0, 10), 0).is_err());
    }

    #[test]
    fn snapshot_round_trips() {
        let mut s = Silences::new();
        let a = s
            .add(spec(vec![m("host", "=", "h")], 0, 10), 0)
            .unwrap_or_else(|e| panic!("{e:?}"));
        let b = s
            .add(spec(vec![m("host", "=", "h")], 0, 10), 0)
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert_ne!(a.id, b.id);
        let json = serde_json::to_string(&s.snapshot()).unwrap_or_default();
        let back: Vec<Silence> = serde_json::from_str(&json).unwrap_or_default();
        let mut r = Silences::new();
        for x in back {
            r.insert(x).unwrap_or_else(|e| panic!("{e:?}"));
        }
        assert_eq!(r.snapshot(), s.snapshot());
    }
}
