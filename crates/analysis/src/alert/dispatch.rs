//! From alert events to notifications, with Alertmanager's semantics. Firing alerts are grouped
//! by the values of the `group_by` labels (`alertname` stands for the rule's name, `...` for all
//! labels, so one group per alert); a new group waits `group_wait` before its first notification
//! so that alerts starting together arrive together; after that the group is looked at every
//! `group_interval` and notified only when something changed: an alert started firing (or fired
//! again, a new episode), or an alert it had notified as firing was resolved. A group whose
//! alerts are all unchanged is notified again only after `repeat_interval`, and only if one of
//! its firing alerts is not acknowledged. A notification carries every current firing alert of
//! the group plus the newly resolved ones; a resolved alert is notified once and then leaves the
//! group, and one whose firing was never notified (it cleared within `group_wait`, or while
//! silenced) leaves without a word. Pending alerts are never notified.
//!
//! Silences are applied when a group is flushed: a silenced alert is left out of notifications
//! (and, resolved, forgotten), and one still firing when its silence ends is notified as new.
//! Events for the same alert and episode deduplicate: the latest replaces the previous one.

use std::collections::BTreeMap;

use pulsewire_model::{AlertEvent, AlertState};
use serde::{Deserialize, Serialize};

use super::silence::Silences;

/// The `group_by` entry that stands for the rule's name.
pub const ALERTNAME: &str = "alertname";
/// The `group_by` (and silence matcher) name that stands for the alert's severity.
pub const SEVERITY: &str = "severity";
/// The `group_by` entry that groups by every label.
pub const ALL_LABELS: &str = "...";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DispatchConfig {
    pub group_by: Vec<String>,
    pub group_wait_ms: i64,
    pub group_interval_ms: i64,
    pub repeat_interval_ms: i64,
}

impl Default for DispatchConfig {
    /// Alertmanager's defaults, grouped by rule.
    fn default() -> DispatchConfig {
        DispatchConfig {
            group_by: vec![ALERTNAME.to_string()],
            group_wait_ms: 30_000,
            group_interval_ms: 5 * 60_000,
            repeat_interval_ms: 4 * 3_600_000,
        }
    }
}

/// One message to send: a group and its alerts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// Stable identity of the group, e.g. `{alertname="high_cpu",host="web1"}`.
    pub group_key: String,
    pub group_labels: BTreeMap<String, String>,
    /// Firing alerts and newly resolved ones, by id.
    pub alerts: Vec<AlertEvent>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Tracked {
    event: AlertEvent,
    /// `since` of the firing episode last notified, if any.
    notified_since: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Group {
    labels: BTreeMap<String, String>,
    alerts: BTreeMap<String, Tracked>,
    next_flush: i64,
    last_sent: Option<i64>,
}

/// The groups and what each has notified. Serializable so the server can persist it and not
/// re-notify everything after a restart.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Dispatcher {
    config: DispatchConfig,
    groups: BTreeMap<String, Group>,
}

impl Dispatcher {
    pub fn new(config: DispatchConfig) -> Dispatcher {
        Dispatcher {
            config,
            groups: BTreeMap::new(),
        }
    }

    pub fn config(&self) -> &DispatchConfig {
        &self.config
    }

    /// Takes the engine's events.
    pub fn push(&mut self, events: impl IntoIterator<Item = AlertEvent>, now: i64) {
        for event in events {
            self.push_one(event, now);
        }
    }

    fn push_one(&mut self, event: AlertEvent, now: i64) {
        let (key, labels) = self.group_of(&event);
        match event.state {
            AlertState::Pending => {}
            AlertState::Firing => {
                let wait = self.config.group_wait_ms;
                let group = self.groups.entry(key).or_insert_with(|| Group {
                    labels,
                    alerts: BTreeMap::new(),
                    next_flush: now + wait,
                    last_sent: None,
                });
                match group.alerts.get_mut(&event.id) {
                    Some(t) => t.event = event,
                    None => {
                        group.alerts.insert(
                            event.id.clone(),
                            Tracked {
                                event,
                                notified_since: None,
                            },
                        );
                    }
                }
            }
            AlertState::Resolved => {
                if let Some(t) = self.groups.get_mut(&key).and_then(|g| g.alerts.get_mut(&event.id)) {
                    t.event = event;
                }
            }
        }
    }

    fn group_of(&self, event: &AlertEvent) -> (String, BTreeMap<String, String>) {
        let mut labels = BTreeMap::new();
        for name in &self.config.group_by {
            if name == ALL_LABELS {
                labels.extend(event.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
                labels.insert(ALERTNAME.to_string(), event.rule.clone());
            } else if let Some(v) = event.labels.get(name) {
                labels.insert(name.clone(), v.clone());
            } else if name == ALERTNAME {
                labels.insert(ALERTNAME.to_string(), event.rule.clone());
            } else if name == SEVERITY {
                labels.insert(SEVERITY.to_string(), event.severity.as_str().to_string());
            }
        }
        let body: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
        (format!("{{{}}}", body.join(",")), labels)
    }

    /// When the next group is due, for the caller's timer.
    pub fn next_due(&self) -> Option<i64> {
        self.groups.values().map(|g| g.next_flush).min()
    }

    /// The notifications due at `now`.
    pub fn due(&mut self, now: i64, silences: &Silences) -> Vec<Notification> {
        let mut out = Vec::new();
        let (interval, repeat) = (self.config.group_interval_ms, self.config.repeat_interval_ms);
        for (key, group) in &mut self.groups {
            if now < group.next_flush {
                continue;
            }
            group.next_flush = now + interval.max(1);
            // Silenced alerts are muted; silenced resolved ones are forgotten unsent.
            let visible = |t: &Tracked| silences.silencing(&t.event, now).is_none();
            let mut changed = false;
            let mut unacked_firing = false;
            for t in group.alerts.values().filter(|t| visible(t)) {
                match t.event.state {
                    AlertState::Firing => {
                        changed |= t.notified_since != Some(t.event.since);
                        unacked_firing |= t.event.ack.is_none();
                    }
                    AlertState::Resolved => changed |= t.notified_since.is_some(),
                    AlertState::Pending => {}
                }
            }
            let repeat_due = group.last_sent.is_some_and(|at| now - at >= repeat) && unacked_firing;
            let mut alerts = Vec::new();
            if changed || repeat_due {
                for t in group.alerts.values_mut().filter(|t| visible(t)) {
                    match t.event.state {
                        AlertState::Firing => {
                            t.notified_since = Some(t.event.since);
                            alerts.push(t.event.clone());
                        }
                        AlertState::Resolved if t.notified_since.is_some() => alerts.push(t.event.clone()),
                        _ => {}
                    }
                }
            }
            group.alerts.retain(|_, t| t.event.state != AlertState::Resolved);
            if !alerts.is_empty() {
                group.last_sent = Some(now);
                out.push(Notification {
                    group_key: key.clone(),
                    group_labels: group.labels.clone(),
                    alerts,
                });
            }
        }
        self.groups.retain(|_, g| !g.alerts.is_empty());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::silence::{SilenceMatcher, SilenceSpec};
    use pulsewire_model::Severity;

    fn ev(rule: &str, host: &str, state: AlertState, since: i64) -> AlertEvent {
        let labels: BTreeMap<String, String> = [("host".to_string(), host.to_string())].into_iter().collect();
        AlertEvent {
            id: pulsewire_model::alert_id(rule, &labels),
            tenant: "default".into(),
            rule: rule.into(),
            state,
            severity: Severity::Warning,
            labels,
            value: 1.0,
            since,
            annotations: BTreeMap::new(),
            at: since,
            active_since: since,
            ack: None,
        }
    }

    fn cfg() -> DispatchConfig {
        DispatchConfig {
            group_by: vec![ALERTNAME.into()],
            group_wait_ms: 30,
            group_interval_ms: 100,
            repeat_interval_ms: 1_000,
        }
    }

    fn hosts(n: &Notification) -> Vec<(String, AlertState)> {
        n.alerts.iter().map(|a| (a.labels["host"].clone(), a.state)).collect()
    }

    use AlertState::{Firing, Pending, Resolved};

    #[test]
    fn group_wait_interval_dedup_repeat_and_resolve_once() {
        let none = Silences::new();
        let mut d = Dispatcher::new(cfg());
        d.push([ev("cpu", "a", Pending, 0)], 0);
        assert_eq!(d.next_due(), None, "pending is never notified");
        d.push([ev("cpu", "a", Firing, 0)], 0);
        d.push([ev("cpu", "b", Firing, 10)], 10);
        assert_eq!(d.next_due(), Some(30));
        assert!(d.due(29, &none).is_empty());
        let n = d.due(30, &none);
        assert_eq!(n.len(), 1);
        assert_eq!(n[0].group_key, "{alertname=\"cpu\"}");
        let mut got = hosts(&n[0]);
        got.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(got, vec![("a".into(), Firing), ("b".into(), Firing)]);
        assert_eq!(n[0].alerts.len(), 2);
        // The same firing again (a duplicate) changes nothing.
        d.push([ev("cpu", "a", Firing, 0)], 50);
        assert!(d.due(130, &none).is_empty());
        // Unchanged: repeated after repeat_interval, at a group_interval boundary.
        assert!(d.due(930, &none).is_empty());
        let n = d.due(1_030, &none);
        assert_eq!(n.len(), 1);
        assert_eq!(n[0].alerts.len(), 2);
        // One resolves: notified with the one still firing, then never again.
        d.push([ev("cpu", "a", Resolved, 1_050)], 1_050);
        let n = d.due(1_130, &none);
        let mut got = hosts(&n[0]);
        got.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(got, vec![("a".into(), Resolved), ("b".into(), Firing)]);
        d.push([ev("cpu", "b", Resolved, 1_140)], 1_140);
        let n = d.due(1_230, &none);
        assert_eq!(hosts(&n[0]), vec![("b".into(), Resolved)]);
        assert!(d.due(1_330, &none).is_empty());
        assert_eq!(d.next_due(), None, "empty groups are dropped");
    }

    #[test]
    fn a_blip_within_group_wait_is_not_notified_and_a_new_episode_is() {
        let none = Silences::new();
        let mut d = Dispatcher::new(cfg());
        d.push([ev("cpu", "a", Firing, 0), ev("cpu", "a", Resolved, 10)], 10);
        assert!(d.due(30, &none).is_empty());
        d.push([ev("cpu", "a", Firing, 100)], 100);
        assert_eq!(d.due(130, &none).len(), 1);
        // Resolved then firing again before the next flush: a new episode, notified.
        d.push([ev("cpu", "a", Resolved, 150), ev("cpu", "a", Firing, 160)], 160);
        let n = d.due(230, &none);
        assert_eq!(hosts(&n[0]), vec![("a".into(), Firing)]);
        assert_eq!(n[0].alerts[0].since, 160);
    }

    #[test]
    fn silenced_alerts_are_muted_until_the_silence_ends() {
        let mut s = Silences::new();
        let spec = SilenceSpec {
            matchers: vec![SilenceMatcher {
                name: "host".into(),
                op: "=".into(),
                value: "a".into(),
            }],
            starts_at: Some(0),
            ends_at: 200,
            created_by: "ops".into(),
            comment: String::new(),
        };
        s.add(spec, 0).unwrap_or_else(|e| panic!("{e:?}"));
        let mut d = Dispatcher::new(cfg());
        d.push([ev("cpu", "a", Firing, 0), ev("cpu", "b", Firing, 0)], 0);
        let n = d.due(30, &s);
        assert_eq!(hosts(&n[0]), vec![("b".into(), Firing)]);
        assert!(d.due(130, &s).is_empty());
        // The silence has ended and `a` still fires: notified as new.
        let n = d.due(230, &s);
        let mut got = hosts(&n[0]);
        got.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(got, vec![("a".into(), Firing), ("b".into(), Firing)]);
    }

    #[test]
    fn grouping_by_labels_and_acknowledged_alerts_are_not_repeated() {
        let none = Silences::new();
        let mut d = Dispatcher::new(DispatchConfig {
            group_by: vec!["host".into()],
            ..cfg()
        });
        let mut acked = ev("cpu", "a", Firing, 0);
        acked.ack = Some(pulsewire_model::Ack {
            by: "ana".into(),
            at: 0,
            comment: String::new(),
        });
        d.push([acked, ev("mem", "b", Firing, 0), ev("disk", "b", Firing, 0)], 0);
        let n = d.due(30, &none);
        assert_eq!(n.len(), 2);
        assert_eq!(n[0].group_labels["host"], "a");
        assert_eq!(n[1].alerts.len(), 2);
        // After repeat_interval only the group with an unacknowledged alert repeats.
        let n = d.due(1_030, &none);
        assert_eq!(n.len(), 1);
        assert_eq!(n[0].group_key, "{host=\"b\"}");

        let mut all = Dispatcher::new(DispatchConfig {
            group_by: vec![ALL_LABELS.into()],
            ..cfg()
        });
        all.push([ev("cpu", "a", Firing, 0), ev("cpu", "b", Firing, 0)], 0);
        assert_eq!(all.due(30, &none).len(), 2);
    }

    #[test]
    fn state_round_trips() {
        let mut d = Dispatcher::new(cfg());
        d.push([ev("cpu", "a", Firing, 0)], 0);
        let json = serde_json::to_string(&d).unwrap_or_default();
        let back: Dispatcher = serde_json::from_str(&json).unwrap_or_default();
        assert_eq!(back, d);
    }
}
