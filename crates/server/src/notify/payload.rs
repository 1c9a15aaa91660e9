//! What notifiers put on the wire: the webhook body (Alertmanager's webhook format, version 4,
//! so receivers written for Alertmanager read it unchanged) and the alerts of Alertmanager's v2
//! API. Pure functions of a notification, so the same notification always gives the same bytes.

use std::collections::BTreeMap;

use pulsewire_model::{AlertEvent, AlertState, Severity};
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::Notification;

/// Alertmanager's "no end" time, as its own webhook sends for firing alerts.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WebhookPayload<'a> {
    version: &'static str,
    group_key: &'a str,
    truncated_alerts: u32,
    status: &'static str,
    receiver: &'a str,
    group_labels: &'a BTreeMap<String, String>,
    common_labels: BTreeMap<String, String>,
    common_annotations: BTreeMap<String, String>,
    #[serde(rename = "externalURL")]
    external_url: &'a str,
    alerts: Vec<WebhookAlert<'a>>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct WebhookAlert<'a> {
    status: &'static str,
    labels: BTreeMap<String, String>,
    annotations: &'a BTreeMap<String, String>,
    starts_at: String,
    ends_at: String,
    #[serde(rename = "generatorURL")]
    generator_url: &'a str,
    fingerprint: &'a str,
    value: f64,
    severity: Severity,
}

/// The alerts of a notification that notifiers send: pending ones are not (as in Prometheus,
/// an alert is only notified once it fires).
pub(crate) fn notified(n: &Notification) -> impl Iterator<Item = &AlertEvent> {
    n.alerts.iter().filter(|a| a.state != AlertState::Pending)
}

/// The webhook body for `n` as `receiver` sends it, or `None` if nothing in it is notified.
pub(crate) fn webhook_body(n: &Notification, receiver: &str, external_url: &str) -> Option<Vec<u8>> {
    let alerts: Vec<WebhookAlert<'_>> = notified(n)
        .map(|a| WebhookAlert {
            status: a.state.as_str(),
            labels: alert_labels(a),
            annotations: &a.annotations,
            starts_at: rfc3339(starts_at(a)),
            ends_at: match a.state {
                AlertState::Resolved => rfc3339(a.at),
                _ => ZERO_TIME.to_owned(),
            },
            generator_url: external_url,
            fingerprint: &a.id,
            value: a.value,
            severity: a.severity,
        })
        .collect();
    if alerts.is_empty() {
        return None;
    }
    // Alertmanager's rule: the group fires while any of its alerts does.
    let status = if alerts.iter().any(|a| a.status == "firing") {
        "firing"
    } else {
        "resolved"
    };
    let payload = WebhookPayload {
        version: "4",
        group_key: &n.group_key,
        truncated_alerts: 0,
        status,
        receiver,
        group_labels: &n.group_labels,
        common_labels: common(alerts.iter().map(|a| &a.labels)),
        common_annotations: common(alerts.iter().map(|a| a.annotations)),
        external_url,
        alerts,
    };
    // Maps with string keys and plain fields cannot fail to serialize.
    serde_json::to_vec(&payload).ok()
}

/// One alert as Alertmanager's `POST /api/v2/alerts` takes it.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AmAlert {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub starts_at: String,
    /// Set when the alert is sent: the resolution time, or for a firing alert a time a few
    /// re-sends ahead, after which Alertmanager resolves it if Pulsewire stopped sending.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ends_at: Option<String>,
    #[serde(rename = "generatorURL", skip_serializing_if = "String::is_empty")]
    pub generator_url: String,
    /// The instance's id and when it resolved, kept for bookkeeping; not part of the API.
    #[serde(skip)]
    pub id: String,
    #[serde(skip)]
    pub resolved_at: Option<i64>,
}

pub(crate) fn am_alert(a: &AlertEvent, generator_url: &str) -> AmAlert {
    AmAlert {
        labels: alert_labels(a),
        annotations: a.annotations.clone(),
        starts_at: rfc3339(starts_at(a)),
        ends_at: None,
        generator_url: generator_url.to_owned(),
        id: a.id.clone(),
        resolved_at: (a.state == AlertState::Resolved).then_some(a.at),
    }
}

/// An event's labels as notifications carry them: with `alertname` (the rule) and `severity`,
/// the two labels Alertmanager routes and groups on in most setups.
fn alert_labels(a: &AlertEvent) -> BTreeMap<String, String> {
    let mut labels = a.labels.clone();
    labels.insert("alertname".into(), a.rule.clone());
    // Webhooks and Alertmanagers are the operator's, shared by every tenant: the label says
    // whose alert it is.
    labels.insert("tenant".into(), a.tenant.clone());
    labels.insert("severity".into(), a.severity.as_str().into());
    labels
}

/// When the episode began: `since` is when a firing alert started firing; a resolved one
/// carries its episode's start in `active_since` (0 if the producer did not know it).
fn starts_at(a: &AlertEvent) -> i64 {
    match a.state {
        AlertState::Resolved if a.active_since > 0 => a.active_since,
        AlertState::Resolved => a.at,
        _ => a.since,
    }
}

/// The pairs every map has with the same value.
fn common<'a>(mut maps: impl Iterator<Item = &'a BTreeMap<String, String>>) -> BTreeMap<String, String> {
    let Some(first) = maps.next() else {
        return BTreeMap::new();
    };
    let mut out = first.clone();
    for m in maps {
        out.retain(|k, v| m.get(k) == Some(v));
    }
    out
}

/// Unix ms as RFC 3339 (UTC, millisecond precision); out-of-range times become the epoch,
/// which a receiver shows as obviously wrong instead of failing the whole notification.
pub(crate) fn rfc3339(ms: i64) -> String {
    let t = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    t.format(&Rfc3339).unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_owned())
}

pub(crate) fn now_ms() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str, state: AlertState, host: &str) -> AlertEvent {
        AlertEvent {
            id: id.into(),
            tenant: "default".into(),
            rule: "high_cpu".into(),
            state,
            severity: Severity::Critical,
            labels: [
                ("host".to_string(), host.to_string()),
                ("dc".to_string(), "fra".to_string()),
            ]
            .into(),
            value: 97.5,
            since: 1_700_000_000_000,
            annotations: [("summary".to_string(), "CPU high".to_string())].into(),
            at: 1_700_000_060_500,
            active_since: 1_699_999_990_000,
            ack: None,
        }
    }

    #[test]
    fn webhook_body_has_alertmanagers_shape() {
        let n = Notification {
            tenant: "default".into(),
            group_key: "{}:{alertname=\"high_cpu\"}".into(),
            group_labels: [("alertname".to_string(), "high_cpu".to_string())].into(),
            alerts: vec![
                event("a1", AlertState::Firing, "h1"),
                event("a2", AlertState::Resolved, "h2"),
                event("a3", AlertState::Pending, "h3"),
            ],
        };
        let body = webhook_body(&n, "ops", "http://pw:8080").expect("something to send");
        let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
        let expected = serde_json::json!({
            "version": "4",
            "groupKey": "{}:{alertname=\"high_cpu\"}",
            "truncatedAlerts": 0,
            "status": "firing",
            "receiver": "ops",
            "groupLabels": {"alertname": "high_cpu"},
            "commonLabels": {"alertname": "high_cpu", "dc": "fra", "severity": "critical", "tenant": "default"},
            "commonAnnotations": {"summary": "CPU high"},
            "externalURL": "http://pw:8080",
            "alerts": [
                {
                    "status": "firing",
                    "labels": {"alertname": "high_cpu", "dc": "fra", "host": "h1", "severity": "critical", "tenant": "default"},
                    "annotations": {"summary": "CPU high"},
                    "startsAt": "2023-11-14T22:13:20Z",
                    "endsAt": "0001-01-01T00:00:00Z",
                    "generatorURL": "http://pw:8080",
                    "fingerprint": "a1",
                    "value": 97.5,
                    "severity": "critical"
                },
                {
                    "status": "resolved",
                    "labels": {"alertname": "high_cpu", "dc": "fra", "host": "h2", "severity": "critical", "tenant": "default"},
                    "annotations": {"summary": "CPU high"},
                    "startsAt": "2023-11-14T22:13:10Z",
                    "endsAt": "2023-11-14T22:14:20.5Z",
                    "generatorURL": "http://pw:8080",
                    "fingerprint": "a2",
                    "value": 97.5,
                    "severity": "critical"
                }
            ]
        });
        assert_eq!(v, expected);
    }

    #[test]
    fn only_pending_alerts_send_nothing() {
        let n = Notification {
            tenant: "default".into(),
            group_key: "g".into(),
            group_labels: BTreeMap::new(),
            alerts: vec![event("a", AlertState::Pending, "h")],
        };
        assert_eq!(webhook_body(&n, "ops", ""), None);
        let resolved = Notification {
            alerts: vec![event("a", AlertState::Resolved, "h")],
            ..n
        };
        let v: serde_json::Value =
            serde_json::from_slice(&webhook_body(&resolved, "ops", "").expect("body")).expect("json");
        assert_eq!(v["status"], "resolved");
    }

    #[test]
    fn alertmanager_alerts_carry_rule_and_severity() {
        let a = am_alert(&event("a", AlertState::Firing, "h1"), "");
        let v = serde_json::to_value(&a).expect("json");
        assert_eq!(
            v,
            serde_json::json!({
                "labels": {"alertname": "high_cpu", "dc": "fra", "host": "h1", "severity": "critical", "tenant": "default"},
                "annotations": {"summary": "CPU high"},
                "startsAt": "2023-11-14T22:13:20Z",
            })
        );
        assert_eq!(
            am_alert(&event("a", AlertState::Resolved, "h1"), "").resolved_at,
            Some(1_700_000_060_500)
        );
    }

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_500), "1970-01-01T00:00:01.5Z");
        assert_eq!(rfc3339(i64::MAX), "1970-01-01T00:00:00Z");
    }
}
