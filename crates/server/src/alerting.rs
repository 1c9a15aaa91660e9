//! Alert rules in the server: the rule engine (`pulsewire_analysis::alert`) fed from the ingest
//! path and from a timer, its state kept on disk so alerts survive a restart, every state change
//! pushed on the `alerts` channel and appended to the alert log, and notifications grouped by
//! the dispatcher and handed to the notifiers.
//!
//! Everything is kept per tenant ([`TenantAlerts`]): each tenant has its own engine (its rules,
//! keyed by name within the tenant, and its alert instances, whose ids hash the tenant), its
//! silences, its dispatcher and its log. A point reaches only the engine of its series' tenant,
//! taken from the store's tenant-keyed series key, and an event is published on its own
//! tenant's `alerts` channel; the API reaches only the requesting tenant's entry.
//!
//! On disk, under `<data_dir>/alerts/`: `rules.json` (rules created over the API, each with its
//! tenant; rules from the configuration file are not stored, the file is their home),
//! `state.json` (per tenant: alert instances, silences and what the dispatcher has notified,
//! replaced atomically after every change, so a `kill -9` loses at most the changes of the last
//! `analysis.alerts.tick`) and `events.jsonl` (the alert log, one event per line with its tenant,
//! trimmed to `analysis.alerts.log_retention` at start). Files written before tenants (no tenant
//! field) are read as the `default` tenant's.
//!
//! Nothing here writes to disk while holding the lock the ingest path takes: changes mark the
//! state dirty and the timer (or the API request that made them) writes a snapshot taken under
//! the lock. Events leave in the order the engine made them, through one channel drained by one
//! publisher task, so `firing` and `resolved` of an alert cannot swap on `alerts` and an event
//! is not lost with the request that caused it.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use parking_lot::Mutex;
use pulsewire_analysis::alert::{
    AlertError, AlertFilter, AlertInfo, CorrelationConfig, DispatchConfig, Dispatcher, Engine, EngineConfig,
    EngineSnapshot, Rule, RuleKind, RuleSpec, SeriesRef, Silence, SilenceSpec, Silences, validate_one,
};
use pulsewire_model::{AlertEvent, Priority, TenantId};
use pulsewire_tsdb::SeriesMeta;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::AppState;
use crate::config::AnalysisConfig;
use crate::notify::Notification;

/// The channel every alert state change is pushed on.
pub const ALERTS_CHANNEL: &str = "alerts";

/// Events kept in memory for `/api/v1/alerts/stats` at most (the log on disk keeps more).
const MAX_LOG_EVENTS: usize = 200_000;

/// Where a rule came from: the configuration file's rules cannot be changed over the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleSource {
    Config,
    Api,
}

/// Why an alerting request was refused.
#[derive(Debug, thiserror::Error)]
pub enum AlertingError {
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<AlertError>),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Storage(String),
}

/// `state.json`: each tenant's alert instances, silences and what its dispatcher notified. Files
/// written before tenants had the default tenant's state at the top level; they are read into
/// `default` and written back in this layout.
#[derive(Default, Serialize, Deserialize)]
struct Persisted {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    engine: Option<EngineSnapshot>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    silences: Vec<Silence>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dispatcher: Option<Dispatcher>,
    #[serde(default)]
    tenants: BTreeMap<String, PersistedTenant>,
}

#[derive(Default, Serialize, Deserialize)]
struct PersistedTenant {
    engine: Option<EngineSnapshot>,
    #[serde(default)]
    silences: Vec<Silence>,
    #[serde(default)]
    dispatcher: Option<Dispatcher>,
}

/// Everything alerting keeps for one tenant. Tenants share nothing here: a tenant's engine holds
/// only its rules and is fed only its series, its silences silence only its alerts, its
/// dispatcher groups only its alerts and its log counts only its events.
struct TenantAlerts {
    engine: Engine,
    silences: Silences,
    dispatcher: Dispatcher,
    /// Rules created over the API, as given, by name.
    api_rules: BTreeMap<String, RuleSpec>,
    /// Names of the configuration file's rules.
    config_rules: HashSet<String>,
    /// The alert log of the last `log_retention`, oldest first.
    log: VecDeque<AlertEvent>,
}

struct Inner {
    /// By tenant name; a tenant appears once it has a rule, a silence or stored state.
    tenants: BTreeMap<String, TenantAlerts>,
}

/// The alerting side of the server.
pub struct Alerting {
    dir: PathBuf,
    config: AnalysisConfig,
    engine_config: EngineConfig,
    dispatch_config: DispatchConfig,
    inner: Mutex<Inner>,
    log_file: Mutex<Option<fs::File>>,
    /// Whether any tenant has a rule: when none does, the ingest path skips the engines entirely.
    has_rules: AtomicBool,
    /// Changed since the state was last written.
    dirty: AtomicBool,
    /// Serialises state writes, so a later snapshot is never overwritten by an earlier one.
    saving: Mutex<()>,
    /// Serialises rule changes over the API (each writes `rules.json` before it takes effect).
    rule_changes: Mutex<()>,
    events: tokio::sync::mpsc::UnboundedSender<AlertEvent>,
    events_rx: Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<AlertEvent>>>,
}

fn ms(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Inner {
    /// The tenant's alerting, created empty on first use.
    fn tenant(&mut self, tenant: &str, engine: &EngineConfig, dispatch: &DispatchConfig) -> &mut TenantAlerts {
        self.tenants.entry(tenant.to_string()).or_insert_with(|| TenantAlerts {
            engine: Engine::for_tenant(tenant, engine.clone(), Vec::new()),
            silences: Silences::new(),
            dispatcher: Dispatcher::new(dispatch.clone()),
            api_rules: BTreeMap::new(),
            config_rules: HashSet::new(),
            log: VecDeque::new(),
        })
    }

    fn any_rules(&self) -> bool {
        self.tenants.values().any(|t| t.engine.rules().next().is_some())
    }
}

impl Alerting {
    /// Loads rules, state and the alert log from `<data_dir>/alerts/`.
    pub fn open(data_dir: &Path, config: &AnalysisConfig) -> anyhow::Result<Alerting> {
        use anyhow::Context as _;
        let dir = data_dir.join("alerts");
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let a = &config.alerts;
        let engine_config = EngineConfig {
            resolved_retention_ms: ms(a.resolved_retention),
            correlation: CorrelationConfig {
                window_ms: ms(a.correlation_window),
                source_labels: a.correlation_labels.clone(),
            },
            ..EngineConfig::default()
        };
        let dispatch = DispatchConfig {
            group_by: a.group_by.clone(),
            group_wait_ms: ms(a.group_wait),
            group_interval_ms: ms(a.group_interval),
            repeat_interval_ms: ms(a.repeat_interval),
        };
        let mut inner = Inner {
            tenants: BTreeMap::new(),
        };
        // Rules by tenant: the file's first, then the stored API rules whose (tenant, name) the
        // file does not take.
        let mut rules: BTreeMap<String, Vec<Rule>> = BTreeMap::new();
        for rule in pulsewire_analysis::alert::validate(&config.rules)
            .map_err(|e| anyhow::anyhow!("analysis.rules: {}", AlertingError::Invalid(e)))?
        {
            let t = inner.tenant(rule.tenant(), &engine_config, &dispatch);
            t.config_rules.insert(rule.name().to_string());
            rules.entry(rule.tenant().to_string()).or_default().push(rule);
        }
        // Stored without a tenant (before tenants): the default tenant's.
        for mut spec in read_json::<Vec<RuleSpec>>(&dir.join("rules.json"))?.unwrap_or_default() {
            let tenant = spec.tenant().to_string();
            spec.tenant = Some(tenant.clone());
            let t = inner.tenant(&tenant, &engine_config, &dispatch);
            if t.config_rules.contains(&spec.name) {
                tracing::warn!(tenant, rule = %spec.name, "a rule of the configuration file has the name of a stored API rule; the file's rule wins");
                continue;
            }
            match validate_one(&spec) {
                Ok(rule) => {
                    t.api_rules.insert(spec.name.clone(), spec);
                    rules.entry(tenant).or_default().push(rule);
                }
                Err(e) => {
                    tracing::error!(tenant, rule = %spec.name, "stored rule no longer valid, skipped: {}", AlertingError::Invalid(e))
                }
            }
        }
        for (tenant, list) in rules {
            let t = inner.tenant(&tenant, &engine_config, &dispatch);
            t.engine = Engine::for_tenant(&tenant, engine_config.clone(), list);
        }
        let now = now_ms();
        let mut persisted = match read_json::<Persisted>(&dir.join("state.json")) {
            Ok(p) => p.unwrap_or_default(),
            Err(e) => {
                // Alert state is rebuilt from new points; refusing to start over it would stop
                // ingest too. Kept aside for a look, and said loudly.
                let aside = dir.join(format!("state.json.damaged-{now}"));
                let _ = fs::rename(dir.join("state.json"), &aside);
                tracing::error!("{e}; moved to {} and starting without alert state", aside.display());
                Persisted::default()
            }
        };
        if persisted.engine.is_some() || !persisted.silences.is_empty() || persisted.dispatcher.is_some() {
            persisted
                .tenants
                .entry(pulsewire_model::DEFAULT_TENANT.to_string())
                .or_insert(PersistedTenant {
                    engine: persisted.engine.take(),
                    silences: std::mem::take(&mut persisted.silences),
                    dispatcher: persisted.dispatcher.take(),
                });
        }
        for (tenant, p) in persisted.tenants {
            if check_tenant(&tenant).is_err() {
                tracing::warn!(tenant, "stored alert state of an invalid tenant name skipped");
                continue;
            }
            let t = inner.tenant(&tenant, &engine_config, &dispatch);
            if let Some(snapshot) = p.engine {
                t.engine.restore(snapshot, now);
            }
            for s in p.silences {
                if let Err(e) = t.silences.insert(s) {
                    tracing::warn!(tenant, "stored silence skipped: {}", AlertingError::Invalid(e));
                }
            }
            if let Some(d) = p.dispatcher.filter(|d| d.config() == &dispatch) {
                t.dispatcher = d;
            }
        }
        for e in load_log(&dir.join("events.jsonl"), now.saturating_sub(ms(a.log_retention)))? {
            if check_tenant(&e.tenant).is_ok() {
                inner
                    .tenant(&e.tenant.clone(), &engine_config, &dispatch)
                    .log
                    .push_back(e);
            }
        }
        let log_file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("events.jsonl"))
            .with_context(|| format!("cannot open {}", dir.join("events.jsonl").display()))?;
        let has_rules = inner.any_rules();
        let (events, events_rx) = tokio::sync::mpsc::unbounded_channel();
        Ok(Alerting {
            dir,
            config: config.clone(),
            engine_config,
            dispatch_config: dispatch,
            inner: Mutex::new(inner),
            log_file: Mutex::new(Some(log_file)),
            has_rules: AtomicBool::new(has_rules),
            dirty: AtomicBool::new(false),
            saving: Mutex::new(()),
            rule_changes: Mutex::new(()),
            events,
            events_rx: Mutex::new(Some(events_rx)),
        })
    }

    pub fn has_rules(&self) -> bool {
        self.has_rules.load(Ordering::Relaxed)
    }

    /// Feeds the samples of one write to the rules of the series' tenant (the tenant of the
    /// store's series key, not of the request); returns how many alert events they caused (the
    /// events themselves go out through [`spawn_publisher`]).
    pub fn on_points(&self, points: &[(u64, SeriesMeta, i64, f64, Option<f64>)]) -> usize {
        if points.is_empty() || !self.has_rules() {
            return 0;
        }
        let mut inner = self.inner.lock();
        let now = now_ms();
        let mut count = 0;
        for (series, meta, ts, value, score) in points {
            // A tenant without alerting state has no rule to judge its series.
            let Some(t) = inner.tenants.get_mut(meta.line.tenant.as_str()) else {
                continue;
            };
            let (series, ts, value, score) = (*series, *ts, *value, *score);
            let r = SeriesRef {
                measurement: &meta.line.measurement,
                field: &meta.field,
                tags: &meta.line.tags,
            };
            let events = t.engine.on_point(series, &r, ts, value, score, now);
            count += events.len();
            self.record(t, &events, now);
        }
        count
    }

    /// What time alone changes, and the notifications now due; writes the state if it changed.
    pub fn tick(&self) -> Vec<Notification> {
        let mut inner = self.inner.lock();
        let now = now_ms();
        let mut notes = Vec::new();
        for (tenant, t) in &mut inner.tenants {
            let events = t.engine.tick(now);
            self.record(t, &events, now);
            t.silences.gc(now, ms(self.config.alerts.resolved_retention));
            let due = t.dispatcher.due(now, &t.silences);
            if !due.is_empty() {
                // What was notified is part of the state: not re-notified after a restart.
                self.dirty.store(true, Ordering::Relaxed);
            }
            notes.extend(due.into_iter().map(|n| Notification::of_tenant(tenant, n)));
        }
        drop(inner);
        self.save_if_dirty();
        notes
    }

    /// Logs events, hands them to the tenant's dispatcher and to the publisher and marks the
    /// state dirty, all under the lock, so every consumer sees the engine's order.
    fn record(&self, t: &mut TenantAlerts, events: &[AlertEvent], now: i64) {
        if events.is_empty() {
            return;
        }
        for e in events {
            // Only fails once the publisher is gone (shutdown); the log and state still hold it.
            let _ = self.events.send(e.clone());
        }
        t.dispatcher.push(events.iter().cloned(), now);
        t.log.extend(events.iter().cloned());
        let retention = now.saturating_sub(ms(self.config.alerts.log_retention));
        while t.log.len() > MAX_LOG_EVENTS || t.log.front().is_some_and(|e| e.at < retention) {
            t.log.pop_front();
        }
        if let Some(f) = self.log_file.lock().as_mut() {
            let mut buf = Vec::new();
            for e in events {
                if serde_json::to_writer(&mut buf, e).is_ok() {
                    buf.push(b'\n');
                }
            }
            if let Err(e) = f.write_all(&buf) {
                tracing::error!("cannot append to the alert log: {e}");
            }
        }
        self.dirty.store(true, Ordering::Relaxed);
    }

    /// Writes the state if it changed since the last write: a snapshot taken under the lock,
    /// written after it is released.
    pub fn save_if_dirty(&self) {
        let _saving = self.saving.lock();
        if !self.dirty.swap(false, Ordering::Relaxed) {
            return;
        }
        let p = {
            let inner = self.inner.lock();
            Persisted {
                tenants: inner
                    .tenants
                    .iter()
                    .map(|(name, t)| {
                        (
                            name.clone(),
                            PersistedTenant {
                                engine: Some(t.engine.snapshot()),
                                silences: t.silences.snapshot(),
                                dispatcher: Some(t.dispatcher.clone()),
                            },
                        )
                    })
                    .collect(),
                ..Persisted::default()
            }
        };
        if let Err(e) = write_json(&self.dir.join("state.json"), &p) {
            self.dirty.store(true, Ordering::Relaxed);
            tracing::error!("cannot write the alert state: {e}");
        }
    }

    /// Takes the receiving end of the event channel (once).
    fn take_events(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<AlertEvent>> {
        self.events_rx.lock().take()
    }

    /// The tenant's rules, by name, each with its tenant filled in.
    pub fn rules(&self, tenant: &TenantId) -> Vec<(RuleSpec, RuleSource)> {
        let inner = self.inner.lock();
        let Some(t) = inner.tenants.get(tenant.as_str()) else {
            return Vec::new();
        };
        let mut out: Vec<(RuleSpec, RuleSource)> = t
            .engine
            .rules()
            .map(|r| {
                let source = if t.config_rules.contains(r.name()) {
                    RuleSource::Config
                } else {
                    RuleSource::Api
                };
                let mut spec = r.spec.clone();
                spec.tenant = Some(tenant.as_str().to_string());
                (spec, source)
            })
            .collect();
        out.sort_by(|a, b| a.0.name.cmp(&b.0.name));
        out
    }

    pub fn rule(&self, tenant: &TenantId, name: &str) -> Option<(RuleSpec, RuleSource)> {
        self.rules(tenant).into_iter().find(|(r, _)| r.name == name)
    }

    /// Writes the API's rules (of every tenant) as they will be after a change to `tenant`'s,
    /// before the change takes effect: a failed write leaves both the file and the running rules
    /// as they were.
    fn write_rules(
        &self,
        tenant: &str,
        change: impl FnOnce(&mut BTreeMap<String, RuleSpec>),
    ) -> Result<(), AlertingError> {
        let mut all: BTreeMap<String, BTreeMap<String, RuleSpec>> = self
            .inner
            .lock()
            .tenants
            .iter()
            .map(|(name, t)| (name.clone(), t.api_rules.clone()))
            .collect();
        change(all.entry(tenant.to_string()).or_default());
        let specs: Vec<&RuleSpec> = all.values().flat_map(BTreeMap::values).collect();
        write_json(&self.dir.join("rules.json"), &specs).map_err(|e| AlertingError::Storage(e.to_string()))
    }

    /// Creates (`create`) or replaces a rule of `tenant` given over the API. The rule belongs to
    /// `tenant`; a body naming another tenant is refused.
    pub fn put_rule(&self, tenant: &TenantId, mut spec: RuleSpec, create: bool) -> Result<(), AlertingError> {
        match spec.tenant.as_deref() {
            None => spec.tenant = Some(tenant.as_str().to_string()),
            Some(t) if t == tenant.as_str() => {}
            Some(_) => {
                return Err(AlertingError::Invalid(vec![AlertError::Invalid {
                    path: "tenant".into(),
                    message: "a rule belongs to the tenant of the key or token that creates it; leave `tenant` out"
                        .into(),
                }]));
            }
        }
        let rule = validate_one(&spec).map_err(AlertingError::Invalid)?;
        if rule.kind == RuleKind::Anomaly && !self.config.anomaly.enabled {
            return Err(AlertingError::Invalid(vec![AlertError::Invalid {
                path: "kind".into(),
                message: "anomaly rules need anomaly detection (analysis.anomaly.enabled is false)".into(),
            }]));
        }
        let _changing = self.rule_changes.lock();
        {
            let inner = self.inner.lock();
            if let Some(t) = inner.tenants.get(tenant.as_str()) {
                if t.config_rules.contains(&spec.name) {
                    return Err(AlertingError::Conflict(format!(
                        "rule `{}` is defined in the configuration file; change it there",
                        spec.name
                    )));
                }
                if create && t.engine.rule(&spec.name).is_some() {
                    return Err(AlertingError::Conflict(format!("rule `{}` already exists", spec.name)));
                }
            }
        }
        self.write_rules(tenant.as_str(), |r| {
            r.insert(spec.name.clone(), spec.clone());
        })?;
        let mut inner = self.inner.lock();
        let now = now_ms();
        let t = inner.tenant(tenant.as_str(), &self.engine_config, &self.dispatch_config);
        t.api_rules.insert(spec.name.clone(), spec);
        let events = t.engine.upsert(rule, now);
        self.has_rules.store(true, Ordering::Relaxed);
        self.record(t, &events, now);
        drop(inner);
        self.save_if_dirty();
        Ok(())
    }

    pub fn delete_rule(&self, tenant: &TenantId, name: &str) -> Result<(), AlertingError> {
        let _changing = self.rule_changes.lock();
        {
            let inner = self.inner.lock();
            let t = inner.tenants.get(tenant.as_str());
            if t.is_some_and(|t| t.config_rules.contains(name)) {
                return Err(AlertingError::Conflict(format!(
                    "rule `{name}` is defined in the configuration file; remove it there"
                )));
            }
            if !t.is_some_and(|t| t.api_rules.contains_key(name)) {
                return Err(AlertingError::NotFound(format!("no rule named `{name}`")));
            }
        }
        self.write_rules(tenant.as_str(), |r| {
            r.remove(name);
        })?;
        let mut inner = self.inner.lock();
        let now = now_ms();
        let t = inner.tenant(tenant.as_str(), &self.engine_config, &self.dispatch_config);
        t.api_rules.remove(name);
        let events = t
            .engine
            .remove(name, now)
            .map_err(|e| AlertingError::NotFound(e.to_string()))?;
        self.record(t, &events, now);
        self.has_rules.store(inner.any_rules(), Ordering::Relaxed);
        drop(inner);
        self.save_if_dirty();
        Ok(())
    }

    pub fn alerts(&self, tenant: &TenantId, filter: &AlertFilter) -> Vec<AlertInfo> {
        self.inner
            .lock()
            .tenants
            .get(tenant.as_str())
            .map(|t| t.engine.alerts(filter, now_ms()))
            .unwrap_or_default()
    }

    /// Firing alerts no silence of their tenant covers, of every tenant, as events (to seed the
    /// Alertmanagers at start: they are operator-level configuration).
    pub fn firing_unsilenced(&self) -> Vec<AlertEvent> {
        let now = now_ms();
        let inner = self.inner.lock();
        let filter = AlertFilter {
            state: Some(pulsewire_model::AlertState::Firing),
            ..AlertFilter::default()
        };
        inner
            .tenants
            .values()
            .flat_map(|t| {
                t.engine
                    .alerts(&filter, now)
                    .into_iter()
                    .map(|i| i.alert)
                    .filter(|a| t.silences.silencing(a, now).is_none())
            })
            .collect()
    }

    /// One of the tenant's alerts; another tenant's id is as unknown as an id nobody has.
    pub fn alert(&self, tenant: &TenantId, id: &str) -> Option<AlertInfo> {
        self.inner
            .lock()
            .tenants
            .get(tenant.as_str())?
            .engine
            .alert(id, now_ms())
    }

    pub fn ack(&self, tenant: &TenantId, id: &str, by: &str, comment: &str) -> Result<AlertInfo, AlertingError> {
        let mut inner = self.inner.lock();
        let now = now_ms();
        let t = inner
            .tenants
            .get_mut(tenant.as_str())
            .ok_or_else(|| AlertingError::NotFound(format!("no alert with id `{id}`")))?;
        let info = t
            .engine
            .ack(id, by, comment, now)
            .map_err(|e| AlertingError::NotFound(e.to_string()))?;
        // The dispatcher learns of the acknowledgement (it stops repeats) through the event.
        t.dispatcher.push([info.alert.clone()], now);
        self.dirty.store(true, Ordering::Relaxed);
        drop(inner);
        self.save_if_dirty();
        Ok(info)
    }

    pub fn stats(&self, tenant: &TenantId, from: i64, to: i64) -> pulsewire_analysis::alert::AlertStats {
        let inner = self.inner.lock();
        let events: Vec<AlertEvent> = inner
            .tenants
            .get(tenant.as_str())
            .map(|t| {
                let start = t.log.partition_point(|e| e.at < from);
                t.log.range(start..).cloned().collect()
            })
            .unwrap_or_default();
        drop(inner);
        pulsewire_analysis::alert::stats(&events, from, to)
    }

    pub fn silences(&self, tenant: &TenantId) -> Vec<Silence> {
        let inner = self.inner.lock();
        let mut v: Vec<Silence> = inner
            .tenants
            .get(tenant.as_str())
            .map(|t| t.silences.list().cloned().collect())
            .unwrap_or_default();
        v.sort_by(|a, b| a.starts_at.cmp(&b.starts_at).then_with(|| a.id.cmp(&b.id)));
        v
    }

    pub fn add_silence(&self, tenant: &TenantId, spec: SilenceSpec) -> Result<Silence, AlertingError> {
        let s = {
            let mut inner = self.inner.lock();
            inner
                .tenant(tenant.as_str(), &self.engine_config, &self.dispatch_config)
                .silences
                .add(spec, now_ms())
                .map_err(AlertingError::Invalid)?
        };
        self.dirty.store(true, Ordering::Relaxed);
        self.save_if_dirty();
        Ok(s)
    }

    pub fn expire_silence(&self, tenant: &TenantId, id: &str) -> Result<(), AlertingError> {
        {
            let mut inner = self.inner.lock();
            inner
                .tenants
                .get_mut(tenant.as_str())
                .ok_or_else(|| AlertingError::NotFound(format!("no silence with id `{id}`")))?
                .silences
                .expire(id, now_ms())
                .map_err(|e| AlertingError::NotFound(e.to_string()))?;
        }
        self.dirty.store(true, Ordering::Relaxed);
        self.save_if_dirty();
        Ok(())
    }

    /// Writes the state one last time (at shutdown).
    pub fn flush(&self) {
        self.dirty.store(true, Ordering::Relaxed);
        self.save_if_dirty();
        if let Some(f) = self.log_file.lock().as_mut() {
            let _ = f.sync_data();
        }
    }
}

/// Tenant names as keys and tokens carry them: 1 to 64 letters, digits, `-`, `_`.
fn check_tenant(tenant: &str) -> Result<(), ()> {
    let ok = !tenant.is_empty()
        && tenant.len() <= 64
        && tenant
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-'));
    if ok { Ok(()) } else { Err(()) }
}

/// The publisher: pushes every alert event on its tenant's [`ALERTS_CHANNEL`], one publication
/// per event, in the engine's order. Ends once the alerting side is dropped or the server stops.
pub fn spawn_publisher(state: AppState, stop: CancellationToken) -> JoinHandle<()> {
    let rx = state.alerting().take_events();
    state
        .notifiers()
        .alertmanager_sync(state.alerting().firing_unsilenced());
    tokio::spawn(async move {
        let Some(mut rx) = rx else { return };
        loop {
            let event = tokio::select! {
                e = rx.recv() => e,
                _ = stop.cancelled() => None,
            };
            let Some(e) = event else { break };
            if e.state == pulsewire_model::AlertState::Resolved {
                state.notifiers().alertmanager_sync(vec![e.clone()]);
            }
            let Ok(data) = serde_json::to_vec(&e) else { continue };
            let tenant = TenantId::new(&e.tenant);
            if let Err(err) = state
                .hub()
                .publish(&tenant, ALERTS_CHANNEL, Bytes::from(data), Priority::Critical)
                .await
            {
                tracing::warn!(error = %err, "alert event not published");
            }
        }
    })
}

/// The timer: time-driven transitions and due notifications, every `analysis.alerts.tick`.
pub fn spawn_ticker(state: AppState, stop: CancellationToken) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(state.config().analysis.alerts.tick);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_sweep = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = every.tick() => {}
            }
            if last_sweep.elapsed() >= std::time::Duration::from_secs(60) {
                last_sweep = tokio::time::Instant::now();
                let watch = state.watch().clone();
                let _ = tokio::task::spawn_blocking(move || watch.sweep(now_ms())).await;
            }
            let alerting: Arc<Alerting> = state.alerting().clone();
            let Ok(notes) = tokio::task::spawn_blocking(move || alerting.tick()).await else {
                continue;
            };
            for n in notes {
                state.notifiers().send(n);
            }
        }
        let alerting = state.alerting().clone();
        let _ = tokio::task::spawn_blocking(move || alerting.flush()).await;
    })
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<Option<T>> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| anyhow::anyhow!("{} is damaged: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow::anyhow!("cannot read {}: {e}", path.display())),
    }
}

/// Replaces `path` atomically: a crash leaves the old file or the new one, never a mix.
fn write_json<T: Serialize + ?Sized>(path: &Path, value: &T) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let bytes = serde_json::to_vec(value).map_err(std::io::Error::other)?;
    let mut f = fs::File::create(&tmp)?;
    f.write_all(&bytes)?;
    f.sync_data()?;
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// The alert log since `from`; older lines are dropped by rewriting the file. A torn last line
/// (a crash while appending) is skipped.
fn load_log(path: &Path, from: i64) -> anyhow::Result<Vec<AlertEvent>> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(anyhow::anyhow!("cannot read {}: {e}", path.display())),
    };
    let all: Vec<AlertEvent> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<AlertEvent>(l).ok())
        .collect();
    let kept: Vec<AlertEvent> = all.iter().filter(|e| e.at >= from).cloned().collect();
    if kept.len() < all.len() {
        let mut buf = Vec::new();
        for e in &kept {
            if serde_json::to_writer(&mut buf, e).is_ok() {
                buf.push(b'\n');
            }
        }
        let tmp = path.with_extension("tmp");
        fs::write(&tmp, &buf)?;
        fs::rename(&tmp, path)?;
    }
    let start = kept.len().saturating_sub(MAX_LOG_EVENTS);
    Ok(kept.get(start..).map(<[AlertEvent]>::to_vec).unwrap_or_default())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("pulsewire-alerting-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(d.join("alerts")).unwrap();
        d
    }

    fn spec(name: &str, tenant: Option<&str>) -> RuleSpec {
        serde_json::from_value(serde_json::json!({
            "name": name, "kind": "threshold", "expr": "last(cpu.usage)", "window": "1m", "op": ">", "threshold": 1.0,
            "tenant": tenant,
        }))
        .unwrap()
    }

    #[test]
    fn files_written_before_tenants_load_as_the_default_tenants() {
        let d = dir("old");
        // rules.json, state.json and events.jsonl as they were written before tenants.
        fs::write(
            d.join("alerts/rules.json"),
            r#"[{"name":"old_rule","kind":"threshold","expr":"last(cpu.usage)","window":"1m","op":">","threshold":1.0}]"#,
        )
        .unwrap();
        fs::write(
            d.join("alerts/state.json"),
            r#"{"engine":{"version":1,"instances":[]},"silences":[{"id":"s1","matchers":[{"name":"host","op":"=","value":"a"}],"starts_at":0,"ends_at":99999999999999,"created_by":"x","comment":""}]}"#,
        )
        .unwrap();
        let now = now_ms();
        fs::write(
            d.join("alerts/events.jsonl"),
            format!(
                "{{\"id\":\"x\",\"rule\":\"old_rule\",\"state\":\"firing\",\"severity\":\"info\",\"labels\":{{}},\"value\":1.0,\"since\":{now},\"annotations\":{{}},\"at\":{now}}}\n"
            ),
        )
        .unwrap();
        let a = Alerting::open(&d, &AnalysisConfig::default()).unwrap();
        let default = TenantId::default_tenant();
        let rules = a.rules(&default);
        assert_eq!(rules.len(), 1);
        assert_eq!((rules[0].0.name.as_str(), rules[0].0.tenant()), ("old_rule", "default"));
        assert_eq!(a.silences(&default).len(), 1);
        assert_eq!(a.stats(&default, now - 1, now + 1).events, 1);
        let other = TenantId::new("acme");
        assert!(a.rules(&other).is_empty() && a.silences(&other).is_empty());
        assert_eq!(a.stats(&other, now - 1, now + 1).events, 0);
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn rules_of_the_same_name_in_two_tenants_survive_a_restart_apart() {
        let d = dir("two");
        let config = AnalysisConfig::default();
        let (acme, globex) = (TenantId::new("acme"), TenantId::new("globex"));
        {
            let a = Alerting::open(&d, &config).unwrap();
            a.put_rule(&acme, spec("high", None), true).unwrap();
            a.put_rule(&globex, spec("high", None), true).unwrap();
            a.put_rule(&acme, spec("acme_only", None), true).unwrap();
            // Taken in its own tenant, free in another.
            assert!(matches!(
                a.put_rule(&acme, spec("high", None), true),
                Err(AlertingError::Conflict(_))
            ));
            assert!(matches!(
                a.put_rule(&acme, spec("x", Some("globex")), true),
                Err(AlertingError::Invalid(_))
            ));
            assert!(matches!(
                a.delete_rule(&globex, "acme_only"),
                Err(AlertingError::NotFound(_))
            ));
            a.add_silence(
                &globex,
                serde_json::from_value(serde_json::json!({
                    "matchers": [{"name": "host", "value": "a"}], "ends_at": now_ms() + 60_000, "created_by": "g"
                }))
                .unwrap(),
            )
            .unwrap();
            a.flush();
        }
        let a = Alerting::open(&d, &config).unwrap();
        let names = |t: &TenantId| -> Vec<String> { a.rules(t).into_iter().map(|(r, _)| r.name).collect() };
        assert_eq!(names(&acme), vec!["acme_only".to_string(), "high".to_string()]);
        assert_eq!(names(&globex), vec!["high".to_string()]);
        assert!(names(&TenantId::default_tenant()).is_empty());
        assert_eq!((a.silences(&acme).len(), a.silences(&globex).len()), (0, 1));
        let _ = fs::remove_dir_all(&d);
    }
}
