//! What an alert is once a rule has judged a series: its state, severity and the event every
//! state change produces. The rule engine (analysis) makes these, the server pushes them on the
//! `alerts` channel and stores them, and the notifiers send them on; the JSON shape is the one
//! clients see.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// How bad an alert is, as operators rank it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// The state of one alert instance (one rule and one label set), with Prometheus' meaning:
/// `Pending` while the condition holds for less than the rule's `for`, `Firing` after, and
/// `Resolved` once it stopped holding (a pending instance that clears is dropped silently and
/// never becomes `Resolved`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    Pending,
    Firing,
    Resolved,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
            AlertState::Resolved => "resolved",
        }
    }
}

/// Who acknowledged an alert, when and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ack {
    pub by: String,
    /// Unix ms.
    pub at: i64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub comment: String,
}

/// One state change of one alert instance: what is pushed on `alerts`, kept in the alert log
/// and handed to notifiers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertEvent {
    /// Stable id of the instance: the same tenant, rule and label set always give the same id.
    pub id: String,
    /// The tenant whose rule judged whose series; events of older versions (without it) belong
    /// to `default`.
    #[serde(default = "default_tenant_name")]
    pub tenant: String,
    pub rule: String,
    pub state: AlertState,
    pub severity: Severity,
    /// The rule's labels merged with the series' labels (tags, `__name__` = measurement.field).
    pub labels: BTreeMap<String, String>,
    /// The value that decided this state (the window aggregate, the anomaly score, ...).
    pub value: f64,
    /// Unix ms since when the instance has been in `state` (for `firing`: when it started
    /// firing; kept across restarts).
    pub since: i64,
    /// Annotations with their templates filled in.
    pub annotations: BTreeMap<String, String>,
    /// Unix ms of this change.
    pub at: i64,
    /// When the instance became active (pending or firing) first, for `resolved` events the
    /// start of the episode that ended.
    #[serde(default)]
    pub active_since: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ack: Option<Ack>,
}

/// The tenant of everything written before tenants existed.
pub const DEFAULT_TENANT: &str = "default";

fn default_tenant_name() -> String {
    DEFAULT_TENANT.to_string()
}

/// The id of the instance of `rule` with `labels` in the `default` tenant: a 64-bit FNV-1a hash
/// of the rule name and the sorted labels, in hex. Stable across restarts and versions.
pub fn alert_id(rule: &str, labels: &BTreeMap<String, String>) -> String {
    tenant_alert_id(DEFAULT_TENANT, rule, labels)
}

/// The id of the instance of `tenant`'s `rule` with `labels`. The tenant is hashed first, so two
/// tenants with the same rule over the same labels get different ids; the `default` tenant
/// hashes as ids did before tenants, so its alerts keep their ids across the upgrade.
pub fn tenant_alert_id(tenant: &str, rule: &str, labels: &BTreeMap<String, String>) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        // A separator no name or value can contain.
        h ^= 0xff;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    };
    if tenant != DEFAULT_TENANT {
        // A byte no tenant name contains marks the tenant apart from a rule name.
        eat(b"\0tenant");
        eat(tenant.as_bytes());
    }
    eat(rule.as_bytes());
    for (k, v) in labels {
        eat(k.as_bytes());
        eat(v.as_bytes());
    }
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_depend_on_rule_and_every_label() {
        let mut a = BTreeMap::new();
        a.insert("host".to_string(), "h1".to_string());
        let mut b = a.clone();
        b.insert("dc".to_string(), "x".to_string());
        let id = alert_id("high_cpu", &a);
        assert_eq!(id, alert_id("high_cpu", &a.clone()));
        assert_eq!(id.len(), 16);
        assert_ne!(id, alert_id("high_mem", &a));
        assert_ne!(id, alert_id("high_cpu", &b));
        // Boundaries between names and values matter.
        let mut c = BTreeMap::new();
        c.insert("hos".to_string(), "th1".to_string());
        assert_ne!(id, alert_id("high_cpu", &c));
    }

    #[test]
    fn ids_depend_on_the_tenant_and_default_keeps_the_old_ids() {
        let mut a = BTreeMap::new();
        a.insert("host".to_string(), "h1".to_string());
        let default = alert_id("high_cpu", &a);
        assert_eq!(tenant_alert_id("default", "high_cpu", &a), default);
        let acme = tenant_alert_id("acme", "high_cpu", &a);
        let globex = tenant_alert_id("globex", "high_cpu", &a);
        assert_ne!(acme, default);
        assert_ne!(acme, globex);
        assert_eq!(acme, tenant_alert_id("acme", "high_cpu", &a.clone()));
        // Moving bytes between tenant and rule changes the id.
        assert_ne!(tenant_alert_id("ab", "c", &a), tenant_alert_id("a", "bc", &a));
    }

    #[test]
    fn events_without_a_tenant_belong_to_default() {
        let json = r#"{"id":"x","rule":"r","state":"firing","severity":"info","labels":{},"value":1.0,"since":1,"annotations":{},"at":1}"#;
        let ev: AlertEvent = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ev.tenant, "default");
    }

    #[test]
    fn events_have_the_documented_json_shape() {
        let ev = AlertEvent {
            id: "x".into(),
            tenant: "default".into(),
            rule: "r".into(),
            state: AlertState::Firing,
            severity: Severity::Critical,
            labels: BTreeMap::new(),
            value: 91.5,
            since: 10,
            annotations: BTreeMap::new(),
            at: 12,
            active_since: 5,
            ack: None,
        };
        let v = serde_json::to_value(&ev).unwrap_or_default();
        assert_eq!(v["state"], "firing");
        assert_eq!(v["severity"], "critical");
        assert_eq!(v["since"], 10);
        assert!(v.get("ack").is_none());
    }
}
