//! Live analysis on the ingest path: every numeric sample the store accepts is scored by the
//! configured anomaly detector of its series (state kept per series, sharded so concurrent
//! writes rarely meet on a lock), scores worth keeping are written back to the store beside the
//! sample (same field, tags and time, in the measurement `<measurement>:anomaly`), and anomalies
//! become events on the `anomalies` channel. Detector state lives here and not in the store: it is derived, rebuilt from new
//! points after a restart (each detector has a warm-up), and costs nothing for series nobody
//! writes to any more.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use parking_lot::Mutex;
use pulsewire_analysis::{AnyDetector, Detector, DetectorFactory, Score};
use pulsewire_model::TenantId;
use pulsewire_proto::{FieldValue, Line, Precision};
use pulsewire_tsdb::{SeriesId, SeriesMeta, Store};
use serde::Serialize;

use crate::alerting::Alerting;
use crate::config::AnalysisConfig;

/// The channel anomaly events are published on.
pub const ANOMALIES_CHANNEL: &str = "anomalies";

/// Suffix of the measurement that keeps a series' anomaly scores: the scores of
/// `cpu.usage{host="a"}` are `cpu:anomaly.usage{host="a"}`.
pub const SCORE_SUFFIX: &str = ":anomaly";

/// Whether a measurement holds derived data (anomaly scores) rather than what clients wrote.
pub fn is_derived(measurement: &str) -> bool {
    measurement.ends_with(SCORE_SUFFIX)
}

/// Shards of the per-series state: writes of different series take different locks.
const SHARDS: usize = 16;

struct Watched {
    meta: SeriesMeta,
    /// Server time of the series' last sample here, for forgetting series that stopped.
    last_ms: i64,
    /// `None` while anomaly detection is off (the series is watched for alert rules only).
    detector: Option<AnyDetector>,
}

/// The series of one shard, by `id / SHARDS`: ids are dense, so a vector serves without
/// hashing (with a hash map, `observe` itself took 19 % of the server's CPU at full ingest of
/// 100,000 series, by `perf`).
#[derive(Default)]
struct Shard {
    series: Vec<Option<Watched>>,
    len: usize,
}

/// Counters of the analysis, for `/api/v1/stats`.
#[derive(Debug, Default, Serialize)]
pub struct WatchStats {
    pub points_scored: u64,
    pub anomalies: u64,
    pub scores_stored: u64,
    pub series_watched: u64,
}

/// Per-series detectors over the ingest stream.
pub struct Watch {
    config: AnalysisConfig,
    /// Builds each series' detector, sharing the configured parameters between them.
    detectors: DetectorFactory,
    shards: Vec<Mutex<Shard>>,
    points_scored: AtomicU64,
    anomalies: AtomicU64,
    scores_stored: AtomicU64,
}

/// What one write produced: anomaly events to publish once the write is durable (alert events
/// leave through the alerting publisher, in the engine's order).
#[derive(Default)]
pub struct Findings {
    pub anomalies: Vec<Bytes>,
}

/// One anomaly as published on [`ANOMALIES_CHANNEL`].
#[derive(Serialize)]
struct AnomalyEvent<'a> {
    measurement: &'a str,
    field: &'a str,
    tags: serde_json::Map<String, serde_json::Value>,
    db: &'a str,
    ts: i64,
    value: f64,
    score: f64,
    severity: pulsewire_analysis::Severity,
    expected: Option<pulsewire_analysis::ExpectedRange>,
    detector: &'static str,
}

impl Watch {
    pub fn new(config: AnalysisConfig) -> Watch {
        Watch {
            detectors: config.anomaly.detector.factory(),
            config,
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            points_scored: AtomicU64::new(0),
            anomalies: AtomicU64::new(0),
            scores_stored: AtomicU64::new(0),
        }
    }

    pub fn enabled(&self) -> bool {
        self.config.anomaly.enabled
    }

    /// Whether a write's samples are needed here: for anomaly detection or for alert rules.
    pub fn wants(&self, alerting: &Alerting) -> bool {
        self.enabled() || alerting.has_rules()
    }

    pub fn stats(&self) -> WatchStats {
        WatchStats {
            points_scored: self.points_scored.load(Ordering::Relaxed),
            anomalies: self.anomalies.load(Ordering::Relaxed),
            scores_stored: self.scores_stored.load(Ordering::Relaxed),
            series_watched: self.shards.iter().map(|s| s.lock().len as u64).sum(),
        }
    }

    /// Scores the samples one write stored, writes the scores worth keeping back to the store,
    /// runs the alert rules over them and returns the anomalies and alert changes to publish.
    /// Runs on the blocking thread of the write.
    pub fn observe(
        &self,
        store: &Store,
        alerting: &Alerting,
        tenant: &TenantId,
        observed: &[(SeriesId, i64, f64)],
    ) -> Findings {
        let mut findings = Findings::default();
        let detect = self.enabled();
        let rules = alerting.has_rules();
        if !(detect || rules) || observed.is_empty() {
            return findings;
        }
        let now = crate::alerting::now_ms();
        // Samples for the alert rules: series, what it is, time, value, anomaly score.
        let mut points: Vec<(u64, SeriesMeta, i64, f64, Option<f64>)> = Vec::new();
        let threshold = self.config.anomaly.threshold;
        let keep = self.config.anomaly.store_min_score;
        // (series meta, ts, score) of scores to write back.
        let mut kept: Vec<(SeriesMeta, i64, f64)> = Vec::new();
        // One lock per shard per write rather than per sample: the samples are visited shard
        // by shard, each series' samples still in the order written.
        for (shard, indices) in self.shards.iter().zip(by_shard(observed)) {
            if indices.is_empty() {
                continue;
            }
            let mut guard = shard.lock();
            let shard = &mut *guard;
            for &(id, ts, value) in indices.iter().filter_map(|&i| observed.get(i as usize)) {
                let slot = id as usize / SHARDS;
                if shard.series.len() <= slot {
                    shard.series.resize_with(slot + 1, || None);
                }
                let Some(entry) = shard.series.get_mut(slot) else {
                    continue;
                };
                if entry.is_none() {
                    let Some(meta) = store.meta(id) else { continue };
                    if is_derived(&meta.line.measurement) {
                        // Scores are not scored again (a client may write such a measurement too).
                        continue;
                    }
                    *entry = Some(Watched {
                        meta,
                        last_ms: now,
                        detector: None,
                    });
                    shard.len += 1;
                }
                let Some(watched) = entry.as_mut() else { continue };
                watched.last_ms = now;
                if detect && watched.detector.is_none() {
                    watched.detector = Some(self.detectors.build());
                }
                let score = watched.detector.as_mut().map(|d| d.observe(ts, value));
                if let Some(score) = &score {
                    if score.score >= keep {
                        kept.push((watched.meta.clone(), ts, score.score));
                    }
                    if score.score >= threshold {
                        self.anomalies.fetch_add(1, Ordering::Relaxed);
                        findings.anomalies.push(anomaly_json(&watched.meta, ts, value, score));
                    }
                }
                if rules {
                    points.push((u64::from(id), watched.meta.clone(), ts, value, score.map(|s| s.score)));
                }
            }
        }
        if detect {
            self.points_scored.fetch_add(observed.len() as u64, Ordering::Relaxed);
        }
        if !kept.is_empty() {
            self.store_scores(store, tenant, &kept);
        }
        alerting.on_points(&points);
        findings
    }

    /// Forgets series with no sample for `analysis.anomaly.forget_after`: their detector state
    /// would otherwise stay for good as series come and go (containers, pods). A series that
    /// comes back starts a new warm-up. Returns how many were forgotten.
    pub fn sweep(&self, now_ms: i64) -> usize {
        let idle = i64::try_from(self.config.anomaly.forget_after.as_millis()).unwrap_or(i64::MAX);
        let mut forgotten = 0;
        for shard in &self.shards {
            let mut shard = shard.lock();
            let mut n = 0;
            for entry in &mut shard.series {
                if entry.as_ref().is_some_and(|w| now_ms.saturating_sub(w.last_ms) > idle) {
                    *entry = None;
                    n += 1;
                }
            }
            shard.len -= n;
            forgotten += n;
        }
        forgotten
    }

    /// Writes scores to the same field, tags and database in the measurement
    /// `<measurement>:anomaly`. Not waited for: scores are derived data, and a lost score is not
    /// a lost sample.
    fn store_scores(&self, store: &Store, tenant: &TenantId, kept: &[(SeriesMeta, i64, f64)]) {
        let mut by_db: HashMap<&str, Vec<(usize, Line<'_>)>> = HashMap::new();
        let names: Vec<String> = kept
            .iter()
            .map(|(m, _, _)| format!("{}{SCORE_SUFFIX}", m.line.measurement))
            .collect();
        for (i, ((meta, ts, score), name)) in kept.iter().zip(&names).enumerate() {
            let line = Line {
                measurement: Cow::Borrowed(name.as_str()),
                tags: meta
                    .line
                    .tags
                    .iter()
                    .map(|(k, v)| (Cow::Borrowed(k.as_str()), Cow::Borrowed(v.as_str())))
                    .collect(),
                fields: vec![(Cow::Borrowed(&*meta.field), FieldValue::Float(*score))],
                timestamp: Some(*ts),
            };
            by_db.entry(meta.line.db.as_str()).or_default().push((i + 1, line));
        }
        for (db, lines) in by_db {
            match store.write_derived(tenant, db, Precision::Ms, &lines) {
                Ok(out) => {
                    self.scores_stored.fetch_add(out.samples, Ordering::Relaxed);
                    if let Some(r) = out.refused.first() {
                        tracing::warn!(refused = out.refused.len(), first = %r.message, "anomaly scores not stored");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "anomaly scores not stored"),
            }
        }
    }
}

/// Indices of `observed` per shard, in written order within each shard.
fn by_shard(observed: &[(SeriesId, i64, f64)]) -> [Vec<u32>; SHARDS] {
    let mut groups: [Vec<u32>; SHARDS] = Default::default();
    for (i, &(id, _, _)) in observed.iter().enumerate() {
        groups[id as usize % SHARDS].push(i as u32);
    }
    groups
}

/// Scores to keep at least this high by default: below it a point is ordinary, and storing a
/// score for every point would double what the store writes.
pub const DEFAULT_STORE_MIN_SCORE: f64 = 0.25;

fn anomaly_json(meta: &SeriesMeta, ts: i64, value: f64, score: &Score) -> Bytes {
    let tags = meta
        .line
        .tags
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect();
    let ev = AnomalyEvent {
        measurement: &meta.line.measurement,
        field: &meta.field,
        tags,
        db: &meta.line.db,
        ts,
        value,
        score: score.score,
        severity: score.severity,
        expected: score.expected,
        detector: score.detector,
    };
    Bytes::from(serde_json::to_vec(&ev).unwrap_or_default())
}

/// Publishes what a write found, once it is durable.
pub async fn publish(hub: &pulsewire_hub::Hub, tenant: &TenantId, findings: Findings) {
    for data in findings.anomalies {
        if let Err(e) = hub
            .publish(tenant, ANOMALIES_CHANNEL, data, pulsewire_model::Priority::High)
            .await
        {
            tracing::warn!(error = %e, "anomaly event not published");
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use pulsewire_proto::parse_lines;

    use super::*;

    #[test]
    fn samples_are_grouped_by_shard_in_written_order() {
        let observed: Vec<(SeriesId, i64, f64)> = [3u32, 19, 3, 4, 35, 20, 3]
            .iter()
            .enumerate()
            .map(|(t, &id)| (id, t as i64, 0.0))
            .collect();
        let order: Vec<u32> = by_shard(&observed).concat();
        let ids: Vec<(SeriesId, i64)> = order
            .iter()
            .map(|&i| (observed[i as usize].0, observed[i as usize].1))
            .collect();
        // Shard 3: ids 3, 19, 3, 35, 3 in written order; shard 4: 4, 20.
        assert_eq!(ids, vec![(3, 0), (19, 1), (3, 2), (35, 4), (3, 6), (4, 3), (20, 5)]);
    }

    #[test]
    fn series_that_stop_writing_are_forgotten() {
        let dir = std::env::temp_dir().join(format!("pulsewire-watch-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Store::open(&dir.join("tsdb"), pulsewire_tsdb::StoreConfig::default()).unwrap();
        let mut config = AnalysisConfig::default();
        config.anomaly.forget_after = Duration::from_secs(60);
        let watch = Watch::new(config.clone());
        let alerting = Alerting::open(&dir, &config).unwrap();
        let tenant = TenantId::default_tenant();
        let now = crate::alerting::now_ms();
        let body = format!("cpu,host=a usage=1 {now}\ncpu,host=b usage=2 {now}\n");
        let lines: Vec<(usize, Line<'_>)> = parse_lines(body.as_bytes())
            .with_precision(Precision::Ms)
            .enumerate()
            .map(|(i, l)| (i + 1, l.unwrap()))
            .collect();
        let out = store.write_observed(&tenant, "d", Precision::Ms, &lines).unwrap();
        watch.observe(&store, &alerting, &tenant, &out.observed);
        assert_eq!(watch.stats().series_watched, 2);
        assert_eq!(watch.sweep(now + 30_000), 0, "not idle long enough");
        assert_eq!(watch.sweep(now + 120_000), 2);
        assert_eq!(watch.stats().series_watched, 0);
        // A series that comes back is watched again.
        watch.observe(&store, &alerting, &tenant, &out.observed);
        assert_eq!(watch.stats().series_watched, 2);
        store.close().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
