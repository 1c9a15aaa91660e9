//! The summary behind `GET /api/v1/alerts/stats?range=24h`: how many state changes of which
//! kind, severity and rule an alert log holds over a range, and how long alerts took to resolve.
//! Computed from the events themselves (the log the server keeps), so it needs no state of its
//! own and gives the same answer after a restart.

use std::collections::BTreeMap;

use pulsewire_model::{AlertEvent, AlertState};
use serde::{Deserialize, Serialize};

/// Per-rule figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RuleStats {
    pub pending: u64,
    pub firing: u64,
    pub resolved: u64,
    /// Mean of `at - active_since` over the rule's `resolved` events, in ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mean_time_to_resolve_ms: Option<f64>,
}

/// The summary of the events whose `at` lies in `[from, to)`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AlertStats {
    pub from: i64,
    pub to: i64,
    pub events: u64,
    /// Events per state (`pending`, `firing`, `resolved`).
    pub by_state: BTreeMap<String, u64>,
    /// `firing` events per severity: how many alerts of each severity started.
    pub firing_by_severity: BTreeMap<String, u64>,
    pub by_rule: BTreeMap<String, RuleStats>,
    /// Distinct instances that fired.
    pub instances_fired: u64,
    /// Time from the start of an episode (`active_since`, which includes any pending time) to
    /// its resolution, averaged over the `resolved` events in range; `None` without any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mean_time_to_resolve_ms: Option<f64>,
}

/// Summarizes `events` (in any order) over `[from, to)`.
pub fn stats(events: &[AlertEvent], from: i64, to: i64) -> AlertStats {
    let mut out = AlertStats {
        from,
        to,
        ..AlertStats::default()
    };
    let mut fired = std::collections::BTreeSet::new();
    let (mut ttr_sum, mut ttr_n) = (0.0, 0u64);
    let mut rule_ttr: BTreeMap<&str, (f64, u64)> = BTreeMap::new();
    for ev in events.iter().filter(|e| e.at >= from && e.at < to) {
        out.events += 1;
        *out.by_state.entry(ev.state.as_str().to_string()).or_default() += 1;
        let rule = out.by_rule.entry(ev.rule.clone()).or_default();
        match ev.state {
            AlertState::Pending => rule.pending += 1,
            AlertState::Firing => {
                rule.firing += 1;
                *out.firing_by_severity
                    .entry(ev.severity.as_str().to_string())
                    .or_default() += 1;
                fired.insert(ev.id.as_str());
            }
            AlertState::Resolved => {
                rule.resolved += 1;
                let ttr = (ev.at - ev.active_since).max(0) as f64;
                ttr_sum += ttr;
                ttr_n += 1;
                let r = rule_ttr.entry(ev.rule.as_str()).or_default();
                r.0 += ttr;
                r.1 += 1;
            }
        }
    }
    out.instances_fired = fired.len() as u64;
    out.mean_time_to_resolve_ms = (ttr_n > 0).then(|| ttr_sum / ttr_n as f64);
    for (name, (sum, n)) in rule_ttr {
        if let Some(r) = out.by_rule.get_mut(name) {
            r.mean_time_to_resolve_ms = Some(sum / n as f64);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use pulsewire_model::Severity;

    fn ev(id: &str, rule: &str, state: AlertState, severity: Severity, at: i64, active_since: i64) -> AlertEvent {
        AlertEvent {
            id: id.into(),
            tenant: "default".into(),
            rule: rule.into(),
            state,
            severity,
            labels: BTreeMap::new(),
            value: 0.0,
            since: at,
            annotations: BTreeMap::new(),
            at,
            active_since,
            ack: None,
        }
    }

    #[test]
    fn counts_and_mean_time_to_resolve() {
        use AlertState::*;
        let events = vec![
            ev("a", "cpu", Pending, Severity::Critical, 0, 0),
            ev("a", "cpu", Firing, Severity::Critical, 30, 0),
            ev("a", "cpu", Resolved, Severity::Critical, 100, 0),
            ev("b", "disk", Firing, Severity::Warning, 50, 50),
            ev("b", "disk", Resolved, Severity::Warning, 350, 50),
            ev("b", "disk", Firing, Severity::Warning, 400, 400),
            ev("c", "disk", Firing, Severity::Warning, 10_000, 10_000),
        ];
        let s = stats(&events, 0, 1_000);
        assert_eq!(s.events, 6);
        assert_eq!(s.by_state["firing"], 3);
        assert_eq!(s.by_state["resolved"], 2);
        assert_eq!(s.by_state["pending"], 1);
        assert_eq!(s.firing_by_severity["critical"], 1);
        assert_eq!(s.firing_by_severity["warning"], 2);
        assert_eq!(s.instances_fired, 2);
        assert_eq!(s.mean_time_to_resolve_ms, Some(200.0));
        assert_eq!(s.by_rule["cpu"].mean_time_to_resolve_ms, Some(100.0));
        assert_eq!(s.by_rule["disk"].firing, 2);
        assert_eq!(s.by_rule["disk"].mean_time_to_resolve_ms, Some(300.0));
        let empty = stats(&events, 20_000, 30_000);
        assert_eq!(empty.events, 0);
        assert_eq!(empty.mean_time_to_resolve_ms, None);
    }
}
