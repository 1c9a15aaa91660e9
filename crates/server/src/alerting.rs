//! Alert rules in the server: the rule engine (`pulsewire_analysis::alert`) fed from the ingest
//! path and from a timer, its state kept on disk so alerts survive a restart, every state change
//! pushed on the `alerts` channel and appended to the alert log, and notifications grouped by
//! the dispatcher and handed to the notifiers.
//!
//! On disk, under `<data_dir>/alerts/`: `rules.json` (rules created over the API; rules from the
//! configuration file are not stored, the file is their home), `state.json` (alert instances,
//! silences and what the dispatcher has notified, replaced atomically after every change, so a
//! `kill -9` loses at most the changes of the last `analysis.alerts.tick`) and `events.jsonl` (the
//! alert log, one event per line, trimmed to `analysis.alerts.log_retention` at start).
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

#[derive(Default, Serialize, Deserialize)]
struct Persisted {
    engine: Option<EngineSnapshot>,
    #[serde(default)]
    silences: Vec<Silence>,
    #[serde(default)]
    dispatcher: Option<Dispatcher>,
}

struct Inner {
    engine: Engine,
    silences: Silences,
    dispatcher: Dispatcher,
    /// Rules created over the API, as given.
    api_rules: BTreeMap<String, RuleSpec>,
    config_rules: HashSet<String>,
    /// The alert log of the last `log_retention`, oldest first.
    log: VecDeque<AlertEvent>,
}

/// The alerting side of the server.
pub struct Alerting {
    dir: PathBuf,
    config: AnalysisConfig,
    inner: Mutex<Inner>,
    log_file: Mutex<Option<fs::File>>,
    /// Whether any rule exists: when none does, the ingest path skips the engine entirely.
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
        let mut rules: Vec<Rule> = pulsewire_analysis::alert::validate(&config.rules)
            .map_err(|e| anyhow::anyhow!("analysis.rules: {}", AlertingError::Invalid(e)))?;
        let config_rules: HashSet<String> = rules.iter().map(|r| r.name().to_string()).collect();
        let api_rules: BTreeMap<String, RuleSpec> = match read_json::<Vec<RuleSpec>>(&dir.join("rules.json"))? {
            Some(specs) => specs.into_iter().map(|s| (s.name.clone(), s)).collect(),
            None => BTreeMap::new(),
        };
        for spec in api_rules.values() {
            if config_rules.contains(&spec.name) {
                tracing::warn!(rule = %spec.name, "a rule of the configuration file has the name of a stored API rule; the file's rule wins");
                continue;
            }
            match validate_one(spec) {
                Ok(rule) => rules.push(rule),
                Err(e) => {
                    tracing::error!(rule = %spec.name, "stored rule no longer valid, skipped: {}", AlertingError::Invalid(e))
                }
            }
        }
        let now = now_ms();
        let mut engine = Engine::new(engine_config, rules);
        let persisted = match read_json::<Persisted>(&dir.join("state.json")) {
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
        if let Some(snapshot) = persisted.engine {
            engine.restore(snapshot, now);
        }
        let mut silences = Silences::new();
        for s in persisted.silences {
            if let Err(e) = silences.insert(s) {
                tracing::warn!("stored silence skipped: {}", AlertingError::Invalid(e));
            }
        }
        let dispatch = DispatchConfig {
            group_by: a.group_by.clone(),
            group_wait_ms: ms(a.group_wait),
            group_interval_ms: ms(a.group_interval),
            repeat_interval_ms: ms(a.repeat_interval),
        };
        let dispatcher = match persisted.dispatcher {
            Some(d) if d.config() == &dispatch => d,
            _ => Dispatcher::new(dispatch),
        };
        let log = load_log(&dir.join("events.jsonl"), now.saturating_sub(ms(a.log_retention)))?.into();
        let log_file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("events.jsonl"))
            .with_context(|| format!("cannot open {}", dir.join("events.jsonl").display()))?;
        let has_rules = engine.rules().next().is_some();
        let (events, events_rx) = tokio::sync::mpsc::unbounded_channel();
        Ok(Alerting {
            dir,
            config: config.clone(),
            inner: Mutex::new(Inner {
                engine,
                silences,
                dispatcher,
                api_rules,
                config_rules,
                log,
            }),
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

    /// Feeds the samples of one write to the rules; returns how many alert events they caused
    /// (the events themselves go out through [`spawn_publisher`]).
    pub fn on_points(&self, points: &[(u64, SeriesMeta, i64, f64, Option<f64>)]) -> usize {
        if points.is_empty() || !self.has_rules() {
            return 0;
        }
        let mut inner = self.inner.lock();
        let now = now_ms();
        let mut events = Vec::new();
        for (series, meta, ts, value, score) in points {
            let (series, ts, value, score) = (*series, *ts, *value, *score);
            let r = SeriesRef {
                measurement: &meta.line.measurement,
                field: &meta.field,
                tags: &meta.line.tags,
            };
            events.extend(inner.engine.on_point(series, &r, ts, value, score, now));
        }
        self.record(&mut inner, &events, now);
        events.len()
    }

    /// What time alone changes, and the notifications now due; writes the state if it changed.
    pub fn tick(&self) -> Vec<Notification> {
        let mut inner = self.inner.lock();
        let now = now_ms();
        let events = inner.engine.tick(now);
        self.record(&mut inner, &events, now);
        let Inner {
            dispatcher, silences, ..
        } = &mut *inner;
        silences.gc(now, ms(self.config.alerts.resolved_retention));
        let due = dispatcher.due(now, silences);
        if !due.is_empty() {
            // What was notified is part of the state: not re-notified after a restart.
            self.dirty.store(true, Ordering::Relaxed);
        }
        drop(inner);
        self.save_if_dirty();
        due.into_iter()
            .map(|n| Notification {
                group_key: n.group_key,
                group_labels: n.group_labels,
                alerts: n.alerts,
            })
            .collect()
    }

    /// Logs events, hands them to the dispatcher and the publisher and marks the state dirty,
    /// all under the lock, so every consumer sees the engine's order.
    fn record(&self, inner: &mut Inner, events: &[AlertEvent], now: i64) {
        if events.is_empty() {
            return;
        }
        for e in events {
            // Only fails once the publisher is gone (shutdown); the log and state still hold it.
            let _ = self.events.send(e.clone());
        }
        inner.dispatcher.push(events.iter().cloned(), now);
        inner.log.extend(events.iter().cloned());
        let retention = now.saturating_sub(ms(self.config.alerts.log_retention));
        while inner.log.len() > MAX_LOG_EVENTS || inner.log.front().is_some_and(|e| e.at < retention) {
            inner.log.pop_front();
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
                engine: Some(inner.engine.snapshot()),
                silences: inner.silences.snapshot(),
                dispatcher: Some(inner.dispatcher.clone()),
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

    pub fn rules(&self) -> Vec<(RuleSpec, RuleSource)> {
        let inner = self.inner.lock();
        let mut out: Vec<(RuleSpec, RuleSource)> = inner
            .engine
            .rules()
            .map(|r| {
                let source = if inner.config_rules.contains(r.name()) {
                    RuleSource::Config
                } else {
                    RuleSource::Api
                };
                (r.spec.clone(), source)
            })
            .collect();
        out.sort_by(|a, b| a.0.name.cmp(&b.0.name));
        out
    }

    pub fn rule(&self, name: &str) -> Option<(RuleSpec, RuleSource)> {
        self.rules().into_iter().find(|(r, _)| r.name == name)
    }

    /// Writes the API's rules as they will be after a change, before the change takes effect:
    /// a failed write leaves both the file and the running rules as they were.
    fn write_rules(&self, change: impl FnOnce(&mut BTreeMap<String, RuleSpec>)) -> Result<(), AlertingError> {
        let mut rules = self.inner.lock().api_rules.clone();
        change(&mut rules);
        let specs: Vec<&RuleSpec> = rules.values().collect();
        write_json(&self.dir.join("rules.json"), &specs).map_err(|e| AlertingError::Storage(e.to_string()))
    }

    /// Creates (`create`) or replaces a rule given over the API.
    pub fn put_rule(&self, spec: RuleSpec, create: bool) -> Result<(), AlertingError> {
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
            if inner.config_rules.contains(&spec.name) {
                return Err(AlertingError::Conflict(format!(
                    "rule `{}` is defined in the configuration file; change it there",
                    spec.name
                )));
            }
            if create && inner.engine.rule(&spec.name).is_some() {
                return Err(AlertingError::Conflict(format!("rule `{}` already exists", spec.name)));
            }
        }
        self.write_rules(|r| {
            r.insert(spec.name.clone(), spec.clone());
        })?;
        let mut inner = self.inner.lock();
        let now = now_ms();
        inner.api_rules.insert(spec.name.clone(), spec);
        let events = inner.engine.upsert(rule, now);
        self.has_rules.store(true, Ordering::Relaxed);
        self.record(&mut inner, &events, now);
        drop(inner);
        self.save_if_dirty();
        Ok(())
    }

    pub fn delete_rule(&self, name: &str) -> Result<(), AlertingError> {
        let _changing = self.rule_changes.lock();
        {
            let inner = self.inner.lock();
            if inner.config_rules.contains(name) {
                return Err(AlertingError::Conflict(format!(
                    "rule `{name}` is defined in the configuration file; remove it there"
                )));
            }
            if !inner.api_rules.contains_key(name) {
                return Err(AlertingError::NotFound(format!("no rule named `{name}`")));
            }
        }
        self.write_rules(|r| {
            r.remove(name);
        })?;
        let mut inner = self.inner.lock();
        let now = now_ms();
        inner.api_rules.remove(name);
        let events = inner
            .engine
            .remove(name, now)
            .map_err(|e| AlertingError::NotFound(e.to_string()))?;
        self.has_rules
            .store(inner.engine.rules().next().is_some(), Ordering::Relaxed);
        self.record(&mut inner, &events, now);
        drop(inner);
        self.save_if_dirty();
        Ok(())
    }

    pub fn alerts(&self, filter: &AlertFilter) -> Vec<AlertInfo> {
        self.inner.lock().engine.alerts(filter, now_ms())
    }

    /// Firing alerts no silence covers, as events (to seed the Alertmanagers at start).
    pub fn firing_unsilenced(&self) -> Vec<AlertEvent> {
        let now = now_ms();
        let inner = self.inner.lock();
        let filter = AlertFilter {
            state: Some(pulsewire_model::AlertState::Firing),
            ..AlertFilter::default()
        };
        inner
            .engine
            .alerts(&filter, now)
            .into_iter()
            .map(|i| i.alert)
            .filter(|a| inner.silences.silencing(a, now).is_none())
            .collect()
    }

    pub fn alert(&self, id: &str) -> Option<AlertInfo> {
        self.inner.lock().engine.alert(id, now_ms())
    }

    pub fn ack(&self, id: &str, by: &str, comment: &str) -> Result<AlertInfo, AlertingError> {
        let mut inner = self.inner.lock();
        let now = now_ms();
        let info = inner
            .engine
            .ack(id, by, comment, now)
            .map_err(|e| AlertingError::NotFound(e.to_string()))?;
        // The dispatcher learns of the acknowledgement (it stops repeats) through the event.
        inner.dispatcher.push([info.alert.clone()], now);
        self.dirty.store(true, Ordering::Relaxed);
        drop(inner);
        self.save_if_dirty();
        Ok(info)
    }

    pub fn stats(&self, from: i64, to: i64) -> pulsewire_analysis::alert::AlertStats {
        let inner = self.inner.lock();
        let start = inner.log.partition_point(|e| e.at < from);
        let events: Vec<AlertEvent> = inner.log.range(start..).cloned().collect();
        drop(inner);
        pulsewire_analysis::alert::stats(&events, from, to)
    }

    pub fn silences(&self) -> Vec<Silence> {
        let inner = self.inner.lock();
        let mut v: Vec<Silence> = inner.silences.list().cloned().collect();
        v.sort_by(|a, b| a.starts_at.cmp(&b.starts_at).then_with(|| a.id.cmp(&b.id)));
        v
    }

    pub fn add_silence(&self, spec: SilenceSpec) -> Result<Silence, AlertingError> {
        let s = {
            let mut inner = self.inner.lock();
            inner.silences.add(spec, now_ms()).map_err(AlertingError::Invalid)?
        };
        self.dirty.store(true, Ordering::Relaxed);
        self.save_if_dirty();
        Ok(s)
    }

    pub fn expire_silence(&self, id: &str) -> Result<(), AlertingError> {
        {
            let mut inner = self.inner.lock();
            inner
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

/// The publisher: pushes every alert event on [`ALERTS_CHANNEL`], one publication per event, in
/// the engine's order. Ends once the alerting side is dropped or the server stops.
pub fn spawn_publisher(state: AppState, stop: CancellationToken) -> JoinHandle<()> {
    let rx = state.alerting().take_events();
    state
        .notifiers()
        .alertmanager_sync(state.alerting().firing_unsilenced());
    tokio::spawn(async move {
        let Some(mut rx) = rx else { return };
        let tenant = TenantId::default_tenant();
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
