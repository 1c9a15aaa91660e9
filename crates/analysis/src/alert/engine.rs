//! The engine: the checked rules, a window per (rule, series) and every alert instance. The
//! server calls [`Engine::on_point`] from the ingest path for each point (so that a threshold
//! crossed with `for = 0s` fires on the point that crossed it) and [`Engine::tick`] from a timer
//! (absence, `for` elapsing, `keep_firing_for` ending, windows emptying, retention); both return
//! the events to publish, store and dispatch. The server persists [`Engine::snapshot`] and
//! hands it to [`Engine::restore`] after a restart, so a firing alert keeps its original `since`.
//!
//! Which rules judge a series is decided once per series and cached under the series id the
//! caller gives (the same id must always mean the same series), and recomputed only after the
//! rules change; a point of a series no rule selects costs one hash lookup. Windows are in the
//! points' own time (`ts_ms`), states in the caller's clock (`now_ms`); the two are expected to
//! be close, as they are for live ingest.
//!
//! Instance labels are the series' tags, `__name__` = `measurement.field` and the rule's labels
//! (the rule's win). An absence rule additionally has one selector-level instance, labelled
//! with the selector's `=` matchers, that fires when no matching series has been seen at all for
//! the window since the rule was loaded: it covers the source that never reported.

use std::collections::{BTreeMap, HashMap};

use pulsewire_model::{Ack, AlertEvent, AlertState, DEFAULT_TENANT, Severity, tenant_alert_id};
use pulsewire_proto::{Agg, MatchOp};
use serde::{Deserialize, Serialize};

use super::AlertError;
use super::correlate::{CORRELATION_ANNOTATION, CorrelationConfig, Correlator};
use super::rule::{Rule, RuleKind};
use super::state::{InstanceState, Phase, Timing, Transition};
use super::window::{SeriesWindow, WINDOW_CAP};

/// The version of [`EngineSnapshot`]'s layout.
pub const SNAPSHOT_VERSION: u32 = 1;

/// Engine-wide settings (rules carry their own durations).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineConfig {
    /// How long resolved instances stay listed, in ms.
    pub resolved_retention_ms: i64,
    /// Flap detection: `flap_threshold` starts of firing within `flap_window_ms`.
    pub flap_window_ms: i64,
    pub flap_threshold: usize,
    /// Cells per window (see [`super::window`]).
    pub window_cap: usize,
    /// A series without points for this long (or twice the longest rule window, if more) is
    /// forgotten by the cache.
    pub series_idle_ms: i64,
    pub correlation: CorrelationConfig,
}

impl Default for EngineConfig {
    fn default() -> EngineConfig {
        let t = Timing::default();
        EngineConfig {
            resolved_retention_ms: t.resolved_retention_ms,
            flap_window_ms: t.flap_window_ms,
            flap_threshold: t.flap_threshold,
            window_cap: WINDOW_CAP,
            series_idle_ms: 3_600_000,
            correlation: CorrelationConfig::default(),
        }
    }
}

/// The series a point belongs to, as the ingest path has it.
#[derive(Debug, Clone, Copy)]
pub struct SeriesRef<'a> {
    pub measurement: &'a str,
    pub field: &'a str,
    /// Tag pairs; order does not matter, keys should be unique.
    pub tags: &'a [(String, String)],
}

/// One alert instance, as persisted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    pub id: String,
    pub rule: String,
    pub labels: BTreeMap<String, String>,
    pub state: InstanceState,
    pub severity: Severity,
    /// The value of the last evaluation.
    pub value: f64,
    /// The annotations of the last event (kept so that an instance whose rule was removed still
    /// shows them).
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// Timestamp of the series' last point (absence rules measure from it).
    pub last_seen: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ack: Option<Ack>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation: Option<String>,
    /// The selector-level instance of an absence rule.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub selector_level: bool,
    /// The tick that last evaluated it; instances no series evaluates are judged on their own.
    #[serde(skip)]
    evaluated_tick: u64,
}

/// What [`Engine::alerts`] lists: the instance as an event would show it, plus flapping.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertInfo {
    #[serde(flatten)]
    pub alert: AlertEvent,
    pub flapping: bool,
}

/// Which instances [`Engine::alerts`] lists; every `None` field lets everything through.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertFilter {
    pub state: Option<AlertState>,
    pub severity: Option<Severity>,
    pub rule: Option<String>,
    /// Only instances having every one of these labels with these values.
    pub labels: BTreeMap<String, String>,
    /// `Some(false)` hides acknowledged instances, `Some(true)` shows only them.
    pub acked: Option<bool>,
}

/// Everything the engine needs to resume after a restart (rules are persisted by the server
/// separately; windows refill from new points).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EngineSnapshot {
    pub version: u32,
    pub instances: Vec<Instance>,
    #[serde(default)]
    pub correlator: Correlator,
}

#[derive(Debug, Clone)]
struct RuleEntry {
    rule: Rule,
    /// Bumped whenever the rule is replaced in a way that changes what it matches.
    version: u64,
    /// First tick after loading; absence of any matching series is measured from it.
    loaded_at: Option<i64>,
    /// The id of the selector-level instance (absence rules), computed once rather than on
    /// every point.
    selector_id: String,
}

#[derive(Debug, Clone)]
struct Slot {
    rule: String,
    rule_version: u64,
    instance_id: String,
    labels: BTreeMap<String, String>,
    /// `None` for absence rules, which only need `last_seen`.
    window: Option<SeriesWindow>,
}

#[derive(Debug, Clone)]
struct SeriesEntry {
    generation: u64,
    last_seen: i64,
    slots: Vec<Slot>,
}

/// The alert-rule engine of one tenant: its rules, the windows of its series and its alert
/// instances, whose ids and events carry the tenant. The server keeps one per tenant and feeds
/// each only its tenant's series, so a rule never sees another tenant's points. Not thread-safe
/// by design: the server wraps it in a mutex.
#[derive(Debug, Clone)]
pub struct Engine {
    config: EngineConfig,
    rules: BTreeMap<String, RuleEntry>,
    /// Bumped on every rule change; series caches built under an older one are rebuilt.
    generation: u64,
    next_version: u64,
    series: HashMap<u64, SeriesEntry>,
    book: Book,
    /// When [`Engine::restore`] ran: instances restored without a series get one window to see
    /// their series again before being judged without data.
    restored_at: Option<i64>,
}

/// The instances and what their transitions need, apart from the rules so that a rule can be
/// borrowed while an instance changes.
#[derive(Debug, Clone)]
struct Book {
    tenant: String,
    config: EngineConfig,
    instances: BTreeMap<String, Instance>,
    correlator: Correlator,
    tick_no: u64,
}

/// The judgement of one instance at one moment.
struct Verdict {
    active: bool,
    value: f64,
}

impl Engine {
    /// An engine of the `default` tenant.
    pub fn new(config: EngineConfig, rules: Vec<Rule>) -> Engine {
        Engine::for_tenant(DEFAULT_TENANT, config, rules)
    }

    /// An engine of `tenant`. Every rule given or upserted must belong to it.
    pub fn for_tenant(tenant: &str, config: EngineConfig, rules: Vec<Rule>) -> Engine {
        let correlator = Correlator::new(config.correlation.clone());
        let mut engine = Engine {
            config: config.clone(),
            rules: BTreeMap::new(),
            generation: 0,
            next_version: 0,
            series: HashMap::new(),
            book: Book {
                tenant: tenant.to_string(),
                config: config.clone(),
                instances: BTreeMap::new(),
                correlator,
                tick_no: 0,
            },
            restored_at: None,
        };
        for rule in rules {
            engine.insert_rule(rule);
        }
        engine
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// The tenant this engine judges for.
    pub fn tenant(&self) -> &str {
        &self.book.tenant
    }

    pub fn rules(&self) -> impl Iterator<Item = &Rule> {
        self.rules.values().map(|e| &e.rule)
    }

    pub fn rule(&self, name: &str) -> Option<&Rule> {
        self.rules.get(name).map(|e| &e.rule)
    }

    /// Replaces the whole rule set (a configuration reload). Instances of rules that are gone
    /// are resolved (firing) or dropped (pending); the returned events say so.
    pub fn set_rules(&mut self, rules: Vec<Rule>, now: i64) -> Vec<AlertEvent> {
        let keep: std::collections::BTreeSet<String> = rules.iter().map(|r| r.name().to_string()).collect();
        let gone: Vec<String> = self.rules.keys().filter(|n| !keep.contains(*n)).cloned().collect();
        let mut events = Vec::new();
        for name in gone {
            events.extend(self.remove(&name, now).unwrap_or_default());
        }
        for rule in rules {
            events.extend(self.upsert(rule, now));
        }
        events
    }

    /// Adds or replaces one rule. A replacement that changes only presentation (severity,
    /// annotations, `for`, `keep_firing_for`) keeps the instances and windows; one that changes
    /// what the rule selects or how it judges starts afresh, resolving the old instances.
    pub fn upsert(&mut self, rule: Rule, now: i64) -> Vec<AlertEvent> {
        let Some(old) = self.rules.get_mut(rule.name()) else {
            self.insert_rule(rule);
            return Vec::new();
        };
        if old.rule == rule {
            return Vec::new();
        }
        let (a, b) = (&old.rule.spec, &rule.spec);
        let same_judgement = a.kind == b.kind
            && a.expr == b.expr
            && a.window == b.window
            && a.op == b.op
            && a.threshold == b.threshold
            && a.labels == b.labels;
        if same_judgement {
            old.rule = rule;
            return Vec::new();
        }
        let events = self.remove(rule.name(), now).unwrap_or_default();
        self.insert_rule(rule);
        events
    }

    /// Removes a rule; its firing instances are resolved and reported, its pending ones dropped.
    pub fn remove(&mut self, name: &str, now: i64) -> Result<Vec<AlertEvent>, AlertError> {
        let entry = self
            .rules
            .remove(name)
            .ok_or_else(|| AlertError::UnknownRule(name.to_string()))?;
        self.generation += 1;
        let ids: Vec<String> = self
            .book
            .instances
            .values()
            .filter(|i| i.rule == name)
            .map(|i| i.id.clone())
            .collect();
        let timing = Timing {
            keep_firing_for_ms: 0,
            ..self.book.timing(Some(&entry.rule))
        };
        let mut events = Vec::new();
        for id in ids {
            events.extend(
                self.book
                    .apply(&id, Some(&entry.rule), now, &timing, Step::Observe(false)),
            );
        }
        Ok(events)
    }

    fn insert_rule(&mut self, rule: Rule) {
        debug_assert_eq!(rule.tenant(), self.book.tenant, "a rule of another tenant");
        self.generation += 1;
        self.next_version += 1;
        self.rules.insert(
            rule.name().to_string(),
            RuleEntry {
                selector_id: tenant_alert_id(&self.book.tenant, rule.name(), &selector_labels(&rule)),
                rule,
                version: self.next_version,
                loaded_at: None,
            },
        );
    }

    /// One point of series `series` of this engine's tenant (the caller's stable id for it). `anomaly_score` is the
    /// detector's score for the point, if the series has a detector; anomaly rules skip points
    /// without one.
    pub fn on_point(
        &mut self,
        series: u64,
        sref: &SeriesRef<'_>,
        ts_ms: i64,
        value: f64,
        anomaly_score: Option<f64>,
        now_ms: i64,
    ) -> Vec<AlertEvent> {
        let generation = self.generation;
        // One time base for every verdict, the timer's: windows are judged as of now (a point
        // from a lagging clock, or a backfill older than the window, falls outside the window
        // instead of firing on its own time and resolving at the next tick), and a series was
        // last seen when its point arrived.
        let eval_at = now_ms.max(ts_ms);
        let restored_at = self.restored_at;
        let entry = self.series.entry(series).or_insert_with(|| SeriesEntry {
            generation: generation.wrapping_sub(1),
            last_seen: now_ms,
            slots: Vec::new(),
        });
        entry.last_seen = entry.last_seen.max(now_ms);
        if entry.generation != generation {
            rebuild_slots(&self.book.tenant, entry, sref, &self.rules, self.config.window_cap);
            entry.generation = generation;
        }
        let mut events = Vec::new();
        for slot in &mut entry.slots {
            let Some(rule_entry) = self.rules.get(&slot.rule) else {
                continue;
            };
            let rule = &rule_entry.rule;
            let verdict = match (rule.kind, slot.window.as_mut()) {
                (RuleKind::Threshold, Some(w)) => {
                    w.push(ts_ms, value);
                    w.aggregate(eval_at, rule.agg.unwrap_or(Agg::Last)).map(|v| Verdict {
                        active: rule.holds(v),
                        value: v,
                    })
                }
                (RuleKind::Rate, Some(w)) => {
                    w.push(ts_ms, value);
                    w.change_per_second(eval_at).map(|v| Verdict {
                        active: rule.holds(v),
                        value: v,
                    })
                }
                (RuleKind::Anomaly, Some(w)) => match anomaly_score {
                    Some(s) if w.push(ts_ms, s) => Some(Verdict {
                        active: rule.holds(s),
                        value: s,
                    }),
                    _ => None,
                },
                (RuleKind::Absence, _) => {
                    // A point of any matching series ends the selector-level absence too.
                    let id = &rule_entry.selector_id;
                    if self.book.instances.get(id).is_some_and(|i| i.selector_level) {
                        let timing = self.book.timing(Some(rule));
                        events.extend(self.book.apply(id, Some(rule), now_ms, &timing, Step::Observe(false)));
                    }
                    Some(Verdict {
                        active: false,
                        value: 0.0,
                    })
                }
                (_, None) => None,
            };
            if let Some(v) = verdict {
                if !v.active && restored_early(restored_at, rule, &self.book, slot, now_ms) {
                    continue;
                }
                events.extend(self.book.judge(rule, slot, v, now_ms, now_ms));
            }
        }
        events
    }

    /// The timer: judges what changes with time alone and returns the resulting events.
    pub fn tick(&mut self, now_ms: i64) -> Vec<AlertEvent> {
        self.book.tick_no += 1;
        for e in self.rules.values_mut() {
            e.loaded_at.get_or_insert(now_ms);
        }
        let mut events = Vec::new();
        let mut has_series: HashMap<&str, bool> = HashMap::new();
        for entry in self.series.values_mut() {
            for slot in &mut entry.slots {
                let Some(rule_entry) = self.rules.get(&slot.rule) else {
                    continue;
                };
                if rule_entry.version != slot.rule_version {
                    continue;
                }
                let rule = &rule_entry.rule;
                let verdict = match slot.window.as_mut() {
                    None => {
                        has_series.insert(rule.name(), true);
                        let age = now_ms - entry.last_seen;
                        Verdict {
                            active: age >= rule.window_ms,
                            value: age as f64 / 1000.0,
                        }
                    }
                    Some(w) => {
                        let value = match rule.kind {
                            RuleKind::Rate => w.change_per_second(now_ms),
                            RuleKind::Anomaly => w.aggregate(now_ms, Agg::Last),
                            _ => w.aggregate(now_ms, rule.agg.unwrap_or(Agg::Last)),
                        };
                        match value {
                            Some(v) => Verdict {
                                active: rule.holds(v),
                                value: v,
                            },
                            // Nothing left in the window: the condition no longer holds. The
                            // event keeps the last real value rather than reporting NaN.
                            None => Verdict {
                                active: false,
                                value: self.book.instances.get(&slot.instance_id).map_or(0.0, |i| i.value),
                            },
                        }
                    }
                };
                if !verdict.active && restored_early(self.restored_at, rule, &self.book, slot, now_ms) {
                    continue;
                }
                events.extend(self.book.judge(rule, slot, verdict, entry.last_seen, now_ms));
            }
        }
        for e in self.rules.values() {
            if e.rule.kind == RuleKind::Absence && !has_series.contains_key(e.rule.name()) {
                events.extend(
                    self.book
                        .selector_absence(&e.rule, e.loaded_at.unwrap_or(now_ms), now_ms),
                );
            }
        }
        events.extend(self.judge_orphans(now_ms));
        let ids: Vec<String> = self.book.instances.keys().cloned().collect();
        for id in ids {
            let rule = self
                .book
                .instances
                .get(&id)
                .and_then(|i| self.rules.get(&i.rule))
                .map(|e| &e.rule);
            let timing = self.book.timing(rule);
            events.extend(self.book.apply(&id, rule, now_ms, &timing, Step::Advance));
        }
        self.forget_idle_series(now_ms);
        events
    }

    /// Instances no cached series evaluated this tick: their series went quiet long enough to be
    /// forgotten, they were restored from a snapshot, or their rule is gone.
    fn judge_orphans(&mut self, now: i64) -> Vec<AlertEvent> {
        let tick_no = self.book.tick_no;
        let orphans: Vec<(String, String, i64)> = self
            .book
            .instances
            .values()
            .filter(|i| i.evaluated_tick != tick_no && matches!(i.state.phase, Phase::Pending | Phase::Firing))
            .map(|i| (i.id.clone(), i.rule.clone(), i.last_seen))
            .collect();
        let mut events = Vec::new();
        for (id, rule_name, last_seen) in orphans {
            let Some(rule) = self.rules.get(&rule_name).map(|e| &e.rule) else {
                let timing = self.book.timing(None);
                events.extend(self.book.apply(&id, None, now, &timing, Step::Observe(false)));
                continue;
            };
            let active = match rule.kind {
                RuleKind::Absence => Some(now - last_seen >= rule.window_ms),
                _ => {
                    let since = self.restored_at.map_or(last_seen, |r| r.max(last_seen));
                    (now - since >= rule.window_ms).then_some(false)
                }
            };
            let Some(active) = active else { continue };
            if let Some(inst) = self.book.instances.get_mut(&id) {
                inst.evaluated_tick = tick_no;
                if rule.kind == RuleKind::Absence {
                    inst.value = (now - last_seen) as f64 / 1000.0;
                }
            }
            let timing = self.book.timing(Some(rule));
            events.extend(self.book.apply(&id, Some(rule), now, &timing, Step::Observe(active)));
        }
        events
    }

    fn forget_idle_series(&mut self, now: i64) {
        let longest = self.rules.values().map(|e| e.rule.window_ms).max().unwrap_or(0);
        let idle = self.config.series_idle_ms.max(longest.saturating_mul(2));
        self.series.retain(|_, e| now - e.last_seen <= idle);
    }

    /// Series the cache knows (for the server's metrics).
    pub fn series_count(&self) -> usize {
        self.series.len()
    }

    /// The instances passing `filter`, as of `now`.
    pub fn alerts(&self, filter: &AlertFilter, now: i64) -> Vec<AlertInfo> {
        self.book
            .instances
            .values()
            .filter(|inst| {
                inst.state
                    .alert_state()
                    .is_some_and(|s| filter.state.is_none_or(|f| f == s))
                    && filter.severity.is_none_or(|s| s == inst.severity)
                    && filter.rule.as_deref().is_none_or(|r| r == inst.rule)
                    && filter.labels.iter().all(|(k, v)| inst.labels.get(k) == Some(v))
                    && filter.acked.is_none_or(|a| a == inst.ack.is_some())
            })
            .filter_map(|inst| self.info(inst, now))
            .collect()
    }

    /// One instance by id.
    pub fn alert(&self, id: &str, now: i64) -> Option<AlertInfo> {
        self.info(self.book.instances.get(id)?, now)
    }

    fn info(&self, inst: &Instance, now: i64) -> Option<AlertInfo> {
        let timing = self.book.timing(self.rules.get(&inst.rule).map(|e| &e.rule));
        Some(AlertInfo {
            alert: event_of(&self.book.tenant, inst, inst.state.alert_state()?, now),
            flapping: inst.state.is_flapping(now, &timing),
        })
    }

    /// Acknowledges an instance (until its next episode starts).
    pub fn ack(&mut self, id: &str, by: &str, comment: &str, now: i64) -> Result<AlertInfo, AlertError> {
        if by.trim().is_empty() {
            return Err(AlertError::invalid("by", "required"));
        }
        let inst = self
            .book
            .instances
            .get_mut(id)
            .ok_or_else(|| AlertError::UnknownAlert(id.to_string()))?;
        inst.ack = Some(Ack {
            by: by.to_string(),
            at: now,
            comment: comment.to_string(),
        });
        self.alert(id, now)
            .ok_or_else(|| AlertError::UnknownAlert(id.to_string()))
    }

    /// Withdraws an acknowledgement.
    pub fn unack(&mut self, id: &str) -> Result<(), AlertError> {
        let inst = self
            .book
            .instances
            .get_mut(id)
            .ok_or_else(|| AlertError::UnknownAlert(id.to_string()))?;
        inst.ack = None;
        Ok(())
    }

    /// Everything to persist.
    pub fn snapshot(&self) -> EngineSnapshot {
        EngineSnapshot {
            version: SNAPSHOT_VERSION,
            instances: self.book.instances.values().cloned().collect(),
            correlator: self.book.correlator.clone(),
        }
    }

    /// Resumes from a snapshot taken by [`Engine::snapshot`], keeping every firing and resolved
    /// instance's `since` and `active_since`. Produces no events: the states were reported
    /// before the restart. Pending instances are not restored: their `for` starts again with new
    /// evidence, rather than firing on the strength of points seen before the restart.
    pub fn restore(&mut self, snapshot: EngineSnapshot, now: i64) {
        self.book.instances = snapshot
            .instances
            .into_iter()
            .filter(|i| !matches!(i.state.phase, Phase::Inactive | Phase::Pending))
            .map(|i| (i.id.clone(), i))
            .collect();
        // Open clusters keep their ids; the settings are the current configuration's.
        let mut correlator = snapshot.correlator;
        correlator.set_config(self.config.correlation.clone());
        self.book.correlator = correlator;
        self.restored_at = Some(now);
    }
}

impl Book {
    fn timing(&self, rule: Option<&Rule>) -> Timing {
        Timing {
            for_ms: rule.map_or(0, |r| r.for_ms),
            keep_firing_for_ms: rule.map_or(0, |r| r.keep_firing_for_ms),
            resolved_retention_ms: self.config.resolved_retention_ms,
            flap_window_ms: self.config.flap_window_ms,
            flap_threshold: self.config.flap_threshold,
        }
    }

    /// Feeds a verdict on `slot`'s series to its instance, creating the instance when the
    /// condition starts holding.
    fn judge(&mut self, rule: &Rule, slot: &Slot, v: Verdict, last_seen: i64, now: i64) -> Option<AlertEvent> {
        // An infinite or NaN aggregate (a sum past f64's range, a rate over no time) is no
        // verdict: it could neither be compared meaningfully nor stored as JSON.
        if !v.value.is_finite() {
            return None;
        }
        let tick_no = self.tick_no;
        match self.instances.get_mut(&slot.instance_id) {
            Some(inst) => {
                inst.value = v.value;
                inst.last_seen = inst.last_seen.max(last_seen);
                inst.evaluated_tick = tick_no;
            }
            None if v.active => {
                self.instances.insert(
                    slot.instance_id.clone(),
                    Instance {
                        id: slot.instance_id.clone(),
                        rule: slot.rule.clone(),
                        labels: slot.labels.clone(),
                        state: InstanceState::new(),
                        severity: rule.severity,
                        value: v.value,
                        annotations: BTreeMap::new(),
                        last_seen,
                        ack: None,
                        correlation: None,
                        selector_level: false,
                        evaluated_tick: tick_no,
                    },
                );
            }
            None => return None,
        }
        let timing = self.timing(Some(rule));
        self.apply(&slot.instance_id, Some(rule), now, &timing, Step::Observe(v.active))
    }

    /// An absence rule no cached series matches: its selector-level instance is active once the
    /// rule has been loaded for its window.
    fn selector_absence(&mut self, rule: &Rule, loaded_at: i64, now: i64) -> Option<AlertEvent> {
        let labels = selector_labels(rule);
        let id = tenant_alert_id(&self.tenant, rule.name(), &labels);
        if now - loaded_at < rule.window_ms && !self.instances.contains_key(&id) {
            return None;
        }
        let tick_no = self.tick_no;
        let inst = self.instances.entry(id.clone()).or_insert_with(|| Instance {
            id: id.clone(),
            rule: rule.name().to_string(),
            labels,
            state: InstanceState::new(),
            severity: rule.severity,
            value: 0.0,
            annotations: BTreeMap::new(),
            last_seen: loaded_at,
            ack: None,
            correlation: None,
            selector_level: true,
            evaluated_tick: tick_no,
        });
        inst.evaluated_tick = tick_no;
        inst.value = (now - inst.last_seen) as f64 / 1000.0;
        let timing = self.timing(Some(rule));
        self.apply(&id, Some(rule), now, &timing, Step::Observe(true))
    }

    /// Runs one step of instance `id`'s state machine and turns the transition into an event;
    /// forgets the instance on the silent transitions.
    fn apply(&mut self, id: &str, rule: Option<&Rule>, now: i64, timing: &Timing, step: Step) -> Option<AlertEvent> {
        let inst = self.instances.get_mut(id)?;
        let before = inst.state.phase;
        let transition = match step {
            Step::Observe(active) => inst.state.observe(now, active, timing),
            Step::Advance => inst.state.advance(now, timing),
        }?;
        let Some(state) = transition.reported() else {
            self.instances.remove(id);
            return None;
        };
        if matches!(before, Phase::Inactive | Phase::Resolved) {
            // A new episode: the last one's acknowledgement and cluster do not carry over.
            inst.ack = None;
            inst.correlation = None;
        }
        if let Some(rule) = rule {
            inst.severity = rule.severity;
            inst.annotations = rule.render_annotations(inst.value, &inst.labels);
        }
        if transition == Transition::Firing {
            inst.correlation = self.correlator.correlate(&inst.id, &inst.labels, inst.state.since);
        }
        Some(event_of(&self.tenant, inst, state, now))
    }
}

#[derive(Debug, Clone, Copy)]
enum Step {
    Observe(bool),
    Advance,
}

fn event_of(tenant: &str, inst: &Instance, state: AlertState, now: i64) -> AlertEvent {
    let mut annotations = inst.annotations.clone();
    if let Some(c) = &inst.correlation {
        annotations.insert(CORRELATION_ANNOTATION.to_string(), c.clone());
    }
    AlertEvent {
        id: inst.id.clone(),
        tenant: tenant.to_string(),
        rule: inst.rule.clone(),
        state,
        severity: inst.severity,
        labels: inst.labels.clone(),
        value: inst.value,
        since: inst.state.since,
        annotations,
        at: now,
        active_since: inst.state.active_since,
        ack: inst.ack.clone(),
    }
}

/// Whether a verdict that the condition stopped holding comes too soon after a restart to be
/// trusted for an instance restored from the snapshot: its window is refilling from new points
/// only, and judging on a part of it would resolve (and then re-fire, with a new `since`) an
/// alert that never stopped.
fn restored_early(restored_at: Option<i64>, rule: &Rule, book: &Book, slot: &Slot, now: i64) -> bool {
    restored_at.is_some_and(|r| now - r < rule.window_ms) && book.instances.contains_key(&slot.instance_id)
}

/// The labels of an instance of `rule` on a series.
fn series_labels(rule: &Rule, sref: &SeriesRef<'_>) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = sref.tags.iter().cloned().collect();
    labels.insert("__name__".to_string(), format!("{}.{}", sref.measurement, sref.field));
    labels.extend(rule.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
    labels
}

/// The labels of an absence rule's selector-level instance: what the selector pins down.
fn selector_labels(rule: &Rule) -> BTreeMap<String, String> {
    let sel = &rule.selector;
    let mut labels: BTreeMap<String, String> = sel
        .matchers
        .iter()
        .filter(|m| m.op == MatchOp::Eq)
        .map(|m| (m.tag.clone(), m.value.clone()))
        .collect();
    let name = match &sel.field {
        Some(f) => format!("{}.{f}", sel.measurement),
        None => sel.measurement.clone(),
    };
    labels.insert("__name__".to_string(), name);
    labels.extend(rule.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
    labels
}

/// Recomputes which rules judge a series, keeping the windows of rules that did not change.
fn rebuild_slots(
    tenant: &str,
    entry: &mut SeriesEntry,
    sref: &SeriesRef<'_>,
    rules: &BTreeMap<String, RuleEntry>,
    cap: usize,
) {
    let mut old: HashMap<String, Slot> = entry.slots.drain(..).map(|s| (s.rule.clone(), s)).collect();
    for (name, e) in rules {
        if !e.rule.matches(sref.measurement, sref.field, sref.tags) {
            continue;
        }
        if let Some(slot) = old.remove(name).filter(|s| s.rule_version == e.version) {
            entry.slots.push(slot);
            continue;
        }
        let labels = series_labels(&e.rule, sref);
        entry.slots.push(Slot {
            rule: name.clone(),
            rule_version: e.version,
            instance_id: tenant_alert_id(tenant, name, &labels),
            labels,
            window: (e.rule.kind != RuleKind::Absence).then(|| SeriesWindow::new(e.rule.window_ms, cap)),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::rule::{RuleSpec, validate};
    use pulsewire_model::alert_id;

    fn spec(name: &str, kind: &str, expr: &str) -> RuleSpec {
        RuleSpec {
            name: name.into(),
            tenant: None,
            kind: kind.into(),
            expr: expr.into(),
            window: Some("1m".into()),
            op: None,
            threshold: None,
            for_: None,
            keep_firing_for: None,
            severity: None,
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
        }
    }

    fn threshold(name: &str, expr: &str, op: &str, t: f64) -> RuleSpec {
        RuleSpec {
            op: Some(op.into()),
            threshold: Some(t),
            ..spec(name, "threshold", expr)
        }
    }

    fn rules(specs: Vec<RuleSpec>) -> Vec<Rule> {
        validate(&specs).unwrap_or_else(|e| panic!("{e:?}"))
    }

    fn engine(specs: Vec<RuleSpec>) -> Engine {
        Engine::new(EngineConfig::default(), rules(specs))
    }

    fn tags(host: &str) -> Vec<(String, String)> {
        vec![("host".to_string(), host.to_string())]
    }

    /// A point of `cpu.usage_user{host}` at `t` (ms), judged at `t`.
    fn cpu(e: &mut Engine, host: &str, t: i64, v: f64) -> Vec<AlertEvent> {
        let tags = tags(host);
        let sref = SeriesRef {
            measurement: "cpu",
            field: "usage_user",
            tags: &tags,
        };
        e.on_point(sid(host), &sref, t, v, None, t)
    }

    /// The caller's id of a host's cpu series.
    fn sid(host: &str) -> u64 {
        host.bytes()
            .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)))
    }

    fn states(events: &[AlertEvent]) -> Vec<AlertState> {
        events.iter().map(|e| e.state).collect()
    }

    #[test]
    fn a_crossing_point_fires_at_once_with_labels_and_annotations() {
        let mut s = threshold("high_cpu", "avg(cpu.usage_user{host=~\"web.*\"})", ">", 90.0);
        s.severity = Some("critical".into());
        s.labels.insert("team".into(), "ops".into());
        s.labels.insert("host".into(), "overridden".into());
        s.annotations
            .insert("summary".into(), "CPU {{ $value }} on {{ $labels.host }}".into());
        let mut e = engine(vec![s]);
        assert!(cpu(&mut e, "web1", 1_000, 50.0).is_empty());
        assert!(cpu(&mut e, "db1", 1_000, 99.0).is_empty(), "not selected");
        let ev = cpu(&mut e, "web1", 2_000, 150.0);
        assert_eq!(states(&ev), vec![AlertState::Firing]);
        let ev = &ev[0];
        assert_eq!(ev.value, 100.0);
        assert_eq!(ev.severity, Severity::Critical);
        assert_eq!((ev.since, ev.active_since, ev.at), (2_000, 2_000, 2_000));
        assert_eq!(ev.labels["__name__"], "cpu.usage_user");
        assert_eq!(ev.labels["team"], "ops");
        assert_eq!(ev.labels["host"], "overridden", "rule labels win");
        assert_eq!(ev.annotations["summary"], "CPU 100 on overridden");
        assert_eq!(ev.id, alert_id("high_cpu", &ev.labels));
        // Still above: no new event (deduplicated at the source).
        assert!(cpu(&mut e, "web1", 3_000, 150.0).is_empty());
        // Back below: resolved, once.
        let ev = cpu(&mut e, "web1", 4_000, 0.0);
        assert_eq!(states(&ev), vec![AlertState::Resolved]);
        assert_eq!((ev[0].since, ev[0].active_since), (4_000, 2_000));
        assert!(cpu(&mut e, "web1", 5_000, 0.0).is_empty());
        // Listed while retained, forgotten after.
        assert_eq!(e.alerts(&AlertFilter::default(), 5_000).len(), 1);
        assert!(e.tick(4_000 + 15 * 60_000).is_empty());
        assert!(e.alerts(&AlertFilter::default(), 4_000 + 15 * 60_000).is_empty());
    }

    #[test]
    fn engines_of_two_tenants_give_their_alerts_their_own_ids_and_tenant() {
        let mut a = threshold("high_cpu", "last(cpu.usage_user)", ">", 90.0);
        a.tenant = Some("acme".into());
        let mut b = a.clone();
        b.tenant = Some("globex".into());
        let mut ea = Engine::for_tenant("acme", EngineConfig::default(), rules(vec![a]));
        let mut eb = Engine::for_tenant("globex", EngineConfig::default(), rules(vec![b]));
        let (fa, fb) = (cpu(&mut ea, "h", 0, 95.0), cpu(&mut eb, "h", 0, 95.0));
        assert_eq!((fa.len(), fb.len()), (1, 1));
        assert_eq!((fa[0].tenant.as_str(), fb[0].tenant.as_str()), ("acme", "globex"));
        assert_ne!(fa[0].id, fb[0].id, "same rule and labels, other tenant, other id");
        assert_eq!(fa[0].id, tenant_alert_id("acme", "high_cpu", &fa[0].labels));
        assert!(ea.alert(&fb[0].id, 0).is_none());
        assert_eq!(ea.tenant(), "acme");
        // The default engine keeps the ids of before tenants.
        let mut d = engine(vec![threshold("high_cpu", "last(cpu.usage_user)", ">", 90.0)]);
        let fd = cpu(&mut d, "h", 0, 95.0);
        assert_eq!(fd[0].id, alert_id("high_cpu", &fd[0].labels));
        assert_eq!(fd[0].tenant, "default");
    }

    #[test]
    fn for_holds_pending_and_a_short_blip_is_dropped_silently() {
        let mut s = threshold("hot", "max(cpu.usage_user)", ">", 90.0);
        s.for_ = Some("30s".into());
        s.window = Some("5s".into());
        let mut e = engine(vec![s]);
        assert_eq!(states(&cpu(&mut e, "h", 0, 95.0)), vec![AlertState::Pending]);
        assert!(cpu(&mut e, "h", 10_000, 95.0).is_empty());
        // Clears before `for`: dropped, no event, not listed.
        assert!(cpu(&mut e, "h", 20_000, 10.0).is_empty());
        assert!(e.alerts(&AlertFilter::default(), 20_000).is_empty());
        // Holds again: pending from the new start, firing on the tick once `for` elapsed.
        assert_eq!(states(&cpu(&mut e, "h", 30_000, 95.0)), vec![AlertState::Pending]);
        assert!(cpu(&mut e, "h", 34_000, 95.0).is_empty());
        let ev = cpu(&mut e, "h", 60_000, 95.0);
        assert_eq!(states(&ev), vec![AlertState::Firing]);
        assert_eq!((ev[0].since, ev[0].active_since), (60_000, 30_000));
    }

    #[test]
    fn the_timer_fires_pending_alerts_and_resolves_emptied_windows() {
        let mut s = threshold("hot", "avg(cpu.usage_user)", ">", 90.0);
        s.for_ = Some("30s".into());
        let mut e = engine(vec![s]);
        assert_eq!(states(&cpu(&mut e, "h", 0, 95.0)), vec![AlertState::Pending]);
        assert!(e.tick(29_999).is_empty());
        let ev = e.tick(30_000);
        assert_eq!(states(&ev), vec![AlertState::Firing]);
        assert_eq!(ev[0].since, 30_000);
        // No more points: once the window is empty the condition no longer holds.
        assert!(e.tick(59_999).is_empty());
        let ev = e.tick(60_000);
        assert_eq!(states(&ev), vec![AlertState::Resolved]);
        assert_eq!(ev[0].value, 95.0, "the last real value, not NaN");
    }

    #[test]
    fn keep_firing_for_delays_the_resolution() {
        let mut s = threshold("hot", "last(cpu.usage_user)", ">", 90.0);
        s.keep_firing_for = Some("20s".into());
        let mut e = engine(vec![s]);
        assert_eq!(states(&cpu(&mut e, "h", 0, 95.0)), vec![AlertState::Firing]);
        assert!(cpu(&mut e, "h", 1_000, 10.0).is_empty());
        assert!(e.tick(20_999).is_empty());
        assert_eq!(states(&e.tick(21_000)), vec![AlertState::Resolved]);
    }

    #[test]
    fn absence_per_series_and_for_a_selector_nothing_matches() {
        let a = spec("silent", "absence", "cpu.usage_user");
        let mut never = spec("never", "absence", "heartbeat.up{host=\"db9\"}");
        never.window = Some("2m".into());
        let mut e = engine(vec![a, never]);
        assert!(e.tick(0).is_empty());
        assert!(cpu(&mut e, "h1", 0, 1.0).is_empty());
        assert!(e.tick(59_999).is_empty());
        let ev = e.tick(60_000);
        assert_eq!(states(&ev), vec![AlertState::Firing]);
        assert_eq!((ev[0].rule.as_str(), ev[0].labels["host"].as_str()), ("silent", "h1"));
        assert_eq!(ev[0].value, 60.0);
        // The selector-level instance of the rule nothing matches.
        let ev = e.tick(120_000);
        assert_eq!(states(&ev), vec![AlertState::Firing]);
        assert_eq!(ev[0].rule, "never");
        assert_eq!(ev[0].labels["host"], "db9");
        assert_eq!(ev[0].labels["__name__"], "heartbeat.up");
        // Data again: resolved on the point.
        let ev = cpu(&mut e, "h1", 130_000, 1.0);
        assert_eq!(states(&ev), vec![AlertState::Resolved]);
        assert_eq!(ev[0].rule, "silent");
        // The first heartbeat ends the selector-level absence.
        let t = tags("db9");
        let sref = SeriesRef {
            measurement: "heartbeat",
            field: "up",
            tags: &t,
        };
        let ev = e.on_point(99, &sref, 140_000, 1.0, None, 140_000);
        assert_eq!(states(&ev), vec![AlertState::Resolved]);
        assert_eq!(ev[0].rule, "never");
        assert!(e.tick(150_000).is_empty());
    }

    #[test]
    fn rate_and_anomaly_rules() {
        let mut r = spec("climb", "rate", "cpu.usage_user");
        r.op = Some(">".into());
        r.threshold = Some(1.0);
        let an = spec("odd", "anomaly", "cpu.usage_user");
        let mut e = engine(vec![r, an]);
        assert!(cpu(&mut e, "h", 0, 10.0).is_empty());
        // 5 per second over 10 s.
        let ev = cpu(&mut e, "h", 10_000, 60.0);
        assert_eq!(states(&ev), vec![AlertState::Firing]);
        assert_eq!((ev[0].rule.as_str(), ev[0].value), ("climb", 5.0));
        let t = tags("h");
        let sref = SeriesRef {
            measurement: "cpu",
            field: "usage_user",
            tags: &t,
        };
        let id = sid("h");
        let ev = e.on_point(id, &sref, 11_000, 60.0, Some(0.95), 11_000);
        assert_eq!(states(&ev), vec![AlertState::Firing]);
        assert_eq!((ev[0].rule.as_str(), ev[0].value), ("odd", 0.95));
        let ev = e.on_point(id, &sref, 12_000, 60.0, Some(0.2), 12_000);
        assert_eq!(states(&ev), vec![AlertState::Resolved]);
        assert_eq!(ev[0].rule, "odd");
        // No score, no judgement.
        assert!(e.on_point(id, &sref, 13_000, 60.0, None, 13_000).is_empty());
    }

    #[test]
    fn rule_changes() {
        let mut s = threshold("hot", "last(cpu.usage_user)", ">", 90.0);
        s.annotations.insert("s".into(), "v={{ $value }}".into());
        let other = threshold("other", "last(cpu.usage_user)", ">", 50.0);
        let mut e = engine(vec![s.clone(), other.clone()]);
        assert_eq!(cpu(&mut e, "h", 0, 95.0).len(), 2);
        // Presentation only: the instance stays, the next event uses the new annotation.
        let mut s2 = s.clone();
        s2.annotations.insert("s".into(), "now {{ $value }}".into());
        assert!(e.upsert(rules(vec![s2.clone()]).remove(0), 1_000).is_empty());
        assert_eq!(e.alerts(&AlertFilter::default(), 1_000).len(), 2);
        assert!(cpu(&mut e, "h", 2_000, 96.0).is_empty());
        let ev = cpu(&mut e, "h", 3_000, 60.0);
        assert_eq!(ev[0].annotations["s"], "now 60");
        assert_eq!(states(&cpu(&mut e, "h", 4_000, 95.0)), vec![AlertState::Firing]);
        // A new threshold starts afresh: the old instance is resolved.
        let mut s3 = s2.clone();
        s3.threshold = Some(99.0);
        let ev = e.upsert(rules(vec![s3]).remove(0), 5_000);
        assert_eq!(states(&ev), vec![AlertState::Resolved]);
        assert!(cpu(&mut e, "h", 6_000, 95.0).is_empty());
        // Removing resolves; removing twice is an error naming the rule.
        let ev = e.remove("other", 7_000).unwrap_or_default();
        assert_eq!(states(&ev), vec![AlertState::Resolved]);
        assert_eq!(e.remove("other", 7_000), Err(AlertError::UnknownRule("other".into())));
        // A reload with an empty set removes the rest.
        assert!(e.set_rules(Vec::new(), 8_000).is_empty());
        assert_eq!(e.rules().count(), 0);
        assert!(cpu(&mut e, "h", 9_000, 100.0).is_empty());
    }

    #[test]
    fn snapshot_and_restore_keep_since() {
        let mut s = threshold("hot", "last(cpu.usage_user)", ">", 90.0);
        s.for_ = Some("10s".into());
        let specs = vec![s];
        let mut e = engine(specs.clone());
        cpu(&mut e, "a", 0, 95.0);
        cpu(&mut e, "a", 10_000, 95.0);
        cpu(&mut e, "b", 10_000, 95.0);
        let before = e.alerts(&AlertFilter::default(), 10_000);
        assert_eq!(before.len(), 2);
        let json = serde_json::to_string(&e.snapshot()).unwrap_or_default();
        let snap: EngineSnapshot = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}"));

        let mut r = engine(specs);
        r.restore(snap, 20_000);
        let after = r.alerts(&AlertFilter::default(), 10_000);
        let firing: Vec<AlertInfo> = before
            .into_iter()
            .filter(|i| i.alert.state == AlertState::Firing)
            .collect();
        assert_eq!(after, firing);
        // The firing one keeps firing on new points without a second `firing` event.
        assert!(cpu(&mut r, "a", 21_000, 95.0).is_empty());
        // The pending one was not restored: nothing fires on the timer without new evidence,
        // and new evidence starts its `for` afresh.
        assert!(r.tick(21_000).is_empty());
        assert_eq!(states(&cpu(&mut r, "b", 22_000, 95.0)), vec![AlertState::Pending]);
        // `a` keeps its original since.
        let a = r.alerts(&AlertFilter::default(), 21_000);
        assert!(
            a.iter()
                .any(|i| i.alert.since == 10_000 && i.alert.state == AlertState::Firing)
        );
        // Within a window of the restore, a point below the threshold does not resolve the
        // restored alert (its window is refilling); after one, it does.
        assert!(cpu(&mut r, "a", 23_000, 50.0).is_empty());
        let ev = cpu(&mut r, "a", 81_000, 50.0);
        assert_eq!(states(&ev), vec![AlertState::Resolved]);
        assert_eq!(ev[0].since, 81_000);
    }

    #[test]
    fn ack_filter_correlation_and_flapping() {
        let a = threshold("cpu_hot", "last(cpu.usage_user)", ">", 90.0);
        let mut b = threshold("cpu_crit", "last(cpu.usage_user)", ">", 95.0);
        b.severity = Some("critical".into());
        let mut e = engine(vec![a, b]);
        let first = cpu(&mut e, "h", 0, 92.0);
        let second = cpu(&mut e, "h", 30_000, 99.0);
        let other_host = cpu(&mut e, "z", 30_000, 99.0);
        assert_eq!(first[0].annotations["correlation"], first[0].id);
        assert_eq!(second[0].annotations["correlation"], first[0].id);
        assert_eq!(other_host[0].annotations["correlation"], other_host[0].id);

        let crit = AlertFilter {
            severity: Some(Severity::Critical),
            ..AlertFilter::default()
        };
        assert_eq!(e.alerts(&crit, 30_000).len(), 2);
        let id = second[0].id.clone();
        let info = e.ack(&id, "ana", "on it", 31_000).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(info.alert.ack.as_ref().map(|a| a.by.as_str()), Some("ana"));
        let unacked = AlertFilter {
            acked: Some(false),
            ..AlertFilter::default()
        };
        assert_eq!(e.alerts(&unacked, 31_000).len(), 3);
        assert!(matches!(e.ack("nope", "ana", "", 0), Err(AlertError::UnknownAlert(_))));
        assert!(e.ack(&id, " ", "", 0).is_err());
        // A new episode forgets the acknowledgement; four starts in ten minutes is flapping.
        let mut t = 40_000;
        for _ in 0..4 {
            cpu(&mut e, "h", t, 0.0);
            let ev = cpu(&mut e, "h", t + 1_000, 99.0);
            assert!(ev.iter().all(|ev| ev.ack.is_none()));
            t += 10_000;
        }
        let info = e.alert(&id, t).unwrap_or_else(|| panic!("listed"));
        assert!(info.flapping);
        assert!(info.alert.ack.is_none());
        let json = serde_json::to_value(&info).unwrap_or_default();
        assert_eq!(json["flapping"], true);
        assert_eq!(json["state"], "firing");
    }

    #[test]
    fn series_no_rule_selects_are_cheap_and_forgotten() {
        let mut e = engine(vec![threshold("hot", "last(mem.used)", ">", 1.0)]);
        for i in 0..100 {
            assert!(cpu(&mut e, &format!("h{i}"), 0, 100.0).is_empty());
        }
        assert_eq!(e.series_count(), 100);
        e.tick(2 * 3_600_000);
        assert_eq!(e.series_count(), 0);
    }

    proptest::proptest! {
        /// With `for = 0s` and `last(...)`, the events are exactly the threshold crossings, and
        /// whatever the points and ticks, states only move along the documented transitions.
        #[test]
        fn events_follow_the_crossings(
            steps in proptest::collection::vec((0i64..5_000, 0.0f64..100.0, proptest::bool::ANY), 1..200),
        ) {
            let mut e = engine(vec![threshold("hot", "last(cpu.usage_user)", ">", 50.0)]);
            let mut t = 0;
            let mut firing = false;
            for (dt, v, tick) in steps {
                t += dt;
                let ev = if tick { e.tick(t) } else { cpu(&mut e, "h", t, v) };
                for x in &ev {
                    match x.state {
                        AlertState::Firing => proptest::prop_assert!(!firing),
                        AlertState::Resolved => proptest::prop_assert!(firing),
                        AlertState::Pending => proptest::prop_assert!(false, "no pending with for = 0"),
                    }
                    firing = x.state == AlertState::Firing;
                }
                if !tick {
                    // The point decides: above fires (or keeps firing), at or below resolves.
                    proptest::prop_assert_eq!(firing, v > 50.0);
                }
            }
        }
    }
}
