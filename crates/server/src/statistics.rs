//! Rolling statistics per series over the sliding windows of `analysis.windows`: the
//! statistics of one window (`window_stats`, pure), `GET /api/v1/metrics/statistics`,
//! `GET /api/v1/metrics/summary`, and the task that publishes every window of every series of a
//! measurement on `stats:<measurement>` while someone subscribes. Everything is computed from
//! the store when asked, never from state kept per ingested point: ingest pays nothing for it,
//! and no memory is held per series beyond what the store already holds.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use bytes::Bytes;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use pulsewire_codec::{Kind, Sketch, Values};
use pulsewire_model::{Priority, TenantId};
use pulsewire_proto::{parse_duration, parse_selector};
use pulsewire_tsdb::{SeriesId, SeriesMeta, Store};
use serde::Serialize;
use serde::ser::SerializeStruct;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::AnalysisConfig;
use crate::AppState;
use crate::auth::Tenant;
use crate::query::{QueryFailure, now_ms, on_store, series_head, value_json};

/// The channel the window summaries of `measurement` are published to.
pub fn channel_for(measurement: &str) -> String {
    format!("stats:{measurement}")
}

/// Series one statistics request may cover. Lower than the query API's bound because every
/// matched series costs a read of its whole window (3,600 points for an hour of 1 s data).
pub const MAX_STATS_SERIES: usize = 2_000;

/// Up to this many points in a window, median, p95 and p99 are exact (a sort of a copy of the
/// values, which the read already holds); above it they come from a DDSketch with 1% relative
/// error, whose cost per point does not grow with the window. 10,000 covers an hour of 1 s data.
pub const EXACT_QUANTILES_UP_TO: usize = 10_000;

/// Default and upper bound of `limit` on `/api/v1/metrics/summary`.
const SUMMARY_LIMIT: usize = 1_000;
const MAX_SUMMARY_LIMIT: usize = 10_000;

/// Room left in a connection's queue bound for what a message frame adds to a publication.
const FRAME_ROOM: usize = 2048;

/// Statistics of one series over one window. Empty windows have `count` 0 and every other
/// field `None` (JSON `null`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    pub count: u64,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub avg: Option<f64>,
    pub median: Option<f64>,
    /// Population standard deviation.
    pub stddev: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
    /// Reset-aware counter increase between the window's points, per second of window.
    pub rate: Option<f64>,
    /// The latest point of the window (ms, value).
    pub last: Option<(i64, f64)>,
}

/// A number as JSON; `None` and non-finite values (an overflowing sum) are `null`.
struct Num(Option<f64>);

impl Serialize for Num {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Some(v) if v.is_finite() => ser.serialize_f64(v),
            _ => ser.serialize_none(),
        }
    }
}

impl Serialize for Stats {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        let mut st = ser.serialize_struct("Stats", 10)?;
        st.serialize_field("count", &self.count)?;
        st.serialize_field("min", &Num(self.min))?;
        st.serialize_field("max", &Num(self.max))?;
        st.serialize_field("avg", &Num(self.avg))?;
        st.serialize_field("median", &Num(self.median))?;
        st.serialize_field("stddev", &Num(self.stddev))?;
        st.serialize_field("p95", &Num(self.p95))?;
        st.serialize_field("p99", &Num(self.p99))?;
        st.serialize_field("rate", &Num(self.rate))?;
        st.serialize_field("last", &self.last.map(|(t, v)| (t, Num(Some(v)))))?;
        st.end()
    }
}

/// The quantiles every window reports.
const QUANTILES: [f64; 3] = [0.5, 0.95, 0.99];

/// Statistics of the points `(ts[i], values[i])` of one window of `window_ms`, ascending by
/// time (as the store returns them). NaN values are skipped, as the store's summaries skip them.
/// Quantiles are the value at rank `⌊q·(n−1)⌋` of the sorted values (the rank the query API's
/// exact and sketch quantiles use): exact up to `exact_up_to` points, from a sketch beyond.
/// `scratch` is reused between calls to spare an allocation per series.
pub fn window_stats(ts: &[i64], values: &[f64], window_ms: i64, exact_up_to: usize, scratch: &mut Vec<f64>) -> Stats {
    let mut count = 0u64;
    let (mut mean, mut m2) = (0.0f64, 0.0f64);
    let (mut min, mut max) = (f64::INFINITY, f64::NEG_INFINITY);
    let mut increase = 0.0;
    let mut last: Option<(i64, f64)> = None;
    scratch.clear();
    for (&t, &v) in ts.iter().zip(values) {
        if v.is_nan() {
            continue;
        }
        if let Some((_, prev)) = last {
            // A drop is a counter reset: the counter restarted from zero and reached `v`.
            increase += if v >= prev { v - prev } else { v };
        }
        last = Some((t, v));
        count += 1;
        min = min.min(v);
        max = max.max(v);
        // Welford: one pass, and no catastrophic cancellation for large, close values.
        let delta = v - mean;
        mean += delta / count as f64;
        m2 += delta * (v - mean);
        scratch.push(v);
    }
    if count == 0 {
        return Stats::default();
    }
    let [median, p95, p99] = quantiles(scratch, exact_up_to);
    Stats {
        count,
        min: Some(min),
        max: Some(max),
        avg: Some(mean),
        median,
        stddev: Some((m2 / count as f64).max(0.0).sqrt()),
        p95,
        p99,
        rate: Some(increase / (window_ms.max(1) as f64 / 1000.0)),
        last,
    }
}

/// [`QUANTILES`] of `values` (not empty), exactly or from a sketch; reorders `values`.
fn quantiles(values: &mut [f64], exact_up_to: usize) -> [Option<f64>; 3] {
    if values.len() <= exact_up_to {
        values.sort_unstable_by(f64::total_cmp);
        let n = values.len();
        QUANTILES.map(|q| values.get((q * (n - 1) as f64).floor() as usize).copied())
    } else {
        let mut sketch = Sketch::new();
        for &v in values.iter() {
            sketch.add(v);
        }
        QUANTILES.map(|q| sketch.quantile(q))
    }
}

/// A configured window: its length and the name it goes by (`1m`, `5m`, `1h30m`).
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    pub name: String,
    pub ms: i64,
}

/// The configured windows, shortest first, without duplicates.
pub fn windows(config: &AnalysisConfig) -> Vec<Window> {
    let mut ms: Vec<i64> = config.windows.iter().map(|w| (w.as_millis() as i64).max(1)).collect();
    ms.sort_unstable();
    ms.dedup();
    ms.into_iter()
        .map(|ms| Window {
            name: duration_name(ms),
            ms,
        })
        .collect()
}

/// A duration in the query API's spelling (largest unit first, each unit once).
pub fn duration_name(mut ms: i64) -> String {
    const UNITS: [(&str, i64); 6] = [
        ("w", 604_800_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ];
    if ms <= 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, len) in UNITS {
        if ms >= len {
            out.push_str(&format!("{}{unit}", ms / len));
            ms %= len;
        }
    }
    out
}

/// The window a request names (5m, or the shortest configured one, when it names none).
fn pick_window(windows: &[Window], asked: Option<&str>) -> Result<Window, QueryFailure> {
    let listed = || windows.iter().map(|w| w.name.as_str()).collect::<Vec<_>>().join(", ");
    let want = match asked.map(str::trim) {
        None | Some("") => {
            return windows
                .iter()
                .find(|w| w.ms == 300_000)
                .or_else(|| windows.first())
                .cloned()
                .ok_or_else(|| QueryFailure(StatusCode::INTERNAL_SERVER_ERROR, "no windows configured".into()));
        }
        Some(s) => parse_duration(s).map_err(|e| {
            QueryFailure(
                StatusCode::BAD_REQUEST,
                format!("window: {}; the configured windows are {}", e.message, listed()),
            )
        })?,
    };
    windows.iter().find(|w| w.ms == want).cloned().ok_or_else(|| {
        QueryFailure(
            StatusCode::BAD_REQUEST,
            format!(
                "window: {} is not a configured window; the configured windows are {}",
                duration_name(want),
                listed()
            ),
        )
    })
}

/// Timestamps (ms, ascending) and values of one series.
type Points = (Vec<i64>, Vec<f64>);

/// The numeric points of one series in `[from, to)`; `None` for string fields, which have no
/// statistics.
fn numeric_points(
    store: &Store,
    id: SeriesId,
    meta: &SeriesMeta,
    from: i64,
    to: i64,
) -> Result<Option<Points>, pulsewire_tsdb::Error> {
    if meta.kind == Kind::Str {
        return Ok(None);
    }
    let (ts, values) = store.read_raw(id, meta, from, to)?;
    let vals = match values {
        Values::Float(v) => v,
        other => (0..ts.len()).map(|i| other.as_f64(i).unwrap_or(f64::NAN)).collect(),
    };
    Ok(Some((ts, vals)))
}

#[derive(serde::Deserialize)]
pub struct StatisticsArgs {
    q: Option<String>,
    window: Option<String>,
    db: Option<String>,
}

/// `GET /api/v1/metrics/statistics?q=<selector>[&window=5m][&db=]`.
pub async fn statistics(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Query(args): Query<StatisticsArgs>,
) -> Result<Json<Value>, QueryFailure> {
    let q = args
        .q
        .filter(|q| !q.trim().is_empty())
        .ok_or_else(|| QueryFailure(StatusCode::BAD_REQUEST, "q: missing; expected a selector".into()))?;
    let selector = parse_selector(&q)?;
    let window = pick_window(&windows(&state.config().analysis), args.window.as_deref())?;
    let db = args.db.filter(|d| !d.is_empty());
    on_store(&state, move |store| {
        let to = now_ms();
        let from = to - window.ms;
        let matched = store.select(&tenant, db.as_deref(), &selector);
        if matched.len() > MAX_STATS_SERIES {
            return Err(QueryFailure(
                StatusCode::BAD_REQUEST,
                format!(
                    "q: the selector matches {} series, more than the {MAX_STATS_SERIES} statistics cover at once; add tag matchers",
                    matched.len()
                ),
            ));
        }
        let mut scratch = Vec::new();
        let mut out = Vec::with_capacity(matched.len());
        for (id, meta) in &matched {
            let Some((ts, vals)) = numeric_points(&store, *id, meta, from, to)? else {
                continue;
            };
            let stats = window_stats(&ts, &vals, window.ms, EXACT_QUANTILES_UP_TO, &mut scratch);
            let mut e = series_head(meta);
            e.insert("stats".into(), json!(stats));
            out.push(Value::Object(e));
        }
        Ok(Json(
            json!({ "window": window.name, "from": from, "to": to, "series": out }),
        ))
    })
    .await
}

#[derive(serde::Deserialize)]
pub struct SummaryArgs {
    db: Option<String>,
    limit: Option<String>,
}

/// `GET /api/v1/metrics/summary[?db=][&limit=1000]`: every series of the key's tenant, its
/// latest value (within the longest window) and its statistics over 5m (or the shortest
/// window when 5m is not configured).
pub async fn summary(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Query(args): Query<SummaryArgs>,
) -> Result<Json<Value>, QueryFailure> {
    let limit = match args.limit.as_deref().map(str::trim) {
        None | Some("") => SUMMARY_LIMIT,
        Some(s) => s
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_SUMMARY_LIMIT).contains(n))
            .ok_or_else(|| {
                QueryFailure(
                    StatusCode::BAD_REQUEST,
                    format!("limit: expected a whole number from 1 to {MAX_SUMMARY_LIMIT}, got {s:?}"),
                )
            })?,
    };
    let all = windows(&state.config().analysis);
    let window = pick_window(&all, None)?;
    let lookback = all.last().map_or(window.ms, |w| w.ms.max(window.ms));
    let db = args.db.filter(|d| !d.is_empty());
    on_store(&state, move |store| {
        let to = now_ms();
        let from = to - window.ms;
        let mut series = store.all_series(&tenant);
        // Anomaly scores are derived series: the summary shows what was written.
        series.retain(|(_, m)| !crate::watch::is_derived(&m.line.measurement));
        if let Some(db) = &db {
            series.retain(|(_, m)| &m.line.db == db);
        }
        series.sort_by(|(_, a), (_, b)| {
            (&a.line.measurement, &a.field, &a.line.tags, &a.line.db).cmp(&(
                &b.line.measurement,
                &b.field,
                &b.line.tags,
                &b.line.db,
            ))
        });
        let truncated = series.len() > limit;
        series.truncate(limit);
        let mut scratch = Vec::new();
        let mut out = Vec::with_capacity(series.len());
        for (id, meta) in &series {
            let mut e = series_head(meta);
            e.insert("db".into(), Value::String(meta.line.db.clone()));
            // The newest point in `[lo, hi)` as `[ms, value]`, or null.
            let latest_in = |lo: i64, hi: i64| -> Result<Value, QueryFailure> {
                let (ts, values) = store.read_raw(*id, meta, lo, hi)?;
                let last = ts.len().checked_sub(1);
                Ok(last
                    .and_then(|i| Some(json!([ts.get(i)?, values.get(i).map(value_json)?])))
                    .unwrap_or(Value::Null))
            };
            if meta.kind == Kind::Str {
                e.insert("latest".into(), latest_in(to - lookback, to)?);
                e.insert("stats".into(), Value::Null);
            } else if let Some((ts, vals)) = numeric_points(&store, *id, meta, from, to)? {
                let stats = window_stats(&ts, &vals, window.ms, EXACT_QUANTILES_UP_TO, &mut scratch);
                // Only a series silent for the whole window costs the longer read.
                let latest = match stats.last {
                    Some((t, v)) => json!([t, Num(Some(v))]),
                    None if lookback > window.ms => latest_in(to - lookback, from)?,
                    None => Value::Null,
                };
                e.insert("latest".into(), latest);
                e.insert("stats".into(), json!(stats));
            }
            out.push(Value::Object(e));
        }
        Ok(Json(json!({
            "window": window.name,
            "from": from,
            "to": to,
            "series": out,
            "truncated": truncated,
        })))
    })
    .await
}

/// What the publisher did, for `/api/v1/stats` and `/metrics`.
#[derive(Default)]
pub struct PublisherCounters {
    /// Ticks at which at least one measurement had subscribers and was computed.
    pub ticks_computed: Counter,
    /// Publications made on `stats:<measurement>` channels.
    pub publications: Counter,
}

impl PublisherCounters {
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "pulsewire_stats_ticks_computed",
            "Rolling-statistics ticks that computed at least one stats:<measurement> publication",
            self.ticks_computed.clone(),
        );
        r.register(
            "pulsewire_stats_publications",
            "Publications made on stats:<measurement> channels",
            self.publications.clone(),
        );
    }
}

/// Publishes the window summaries of every measurement someone subscribes to, every
/// `analysis.stats_interval`, until `stop`. Each tick computes one publication per measurement,
/// however many connections (or patterns) receive it, on a blocking thread.
pub fn spawn_publisher(state: AppState, stop: CancellationToken) -> JoinHandle<()> {
    tokio::spawn(async move {
        let interval = state.config().analysis.stats_interval;
        let mut tick = tokio::time::interval(interval);
        // A tick that overran (a slow store) is not made up for with a burst.
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            // Nobody subscribes to anything: not even the series list is worth reading.
            if state.metrics().subscriptions.get() <= 0 {
                continue;
            }
            let task_state = state.clone();
            // Per tenant: each tenant's subscribers get its own series, on its own channels.
            let computed = tokio::task::spawn_blocking(move || {
                let at = now_ms();
                task_state
                    .hub()
                    .tenants_subscribed_in("stats")
                    .into_iter()
                    .flat_map(|tenant| {
                        publications(&task_state, &tenant, at, interval)
                            .into_iter()
                            .map(move |(m, data)| (tenant.clone(), m, data))
                    })
                    .collect::<Vec<_>>()
            })
            .await;
            let ready = match computed {
                Ok(ready) => ready,
                Err(e) => {
                    tracing::error!("rolling statistics task failed: {e}");
                    continue;
                }
            };
            if ready.is_empty() {
                continue;
            }
            state.stats_counters().ticks_computed.inc();
            for (tenant, measurement, data) in ready {
                let channel = channel_for(&measurement);
                match state
                    .hub()
                    .publish(&tenant, &channel, Bytes::from(data), Priority::Normal)
                    .await
                {
                    Ok(_) => {
                        state.stats_counters().publications.inc();
                    }
                    Err(e) => tracing::debug!(channel, "statistics publication refused: {}", e.message),
                }
            }
        }
    })
}

/// One publication per measurement of `tenant` that has subscribers of `tenant` on
/// `stats:<measurement>` (directly or through a pattern), as of `at`, from `tenant`'s series
/// only (the store's tenant-keyed index).
fn publications(state: &AppState, tenant: &TenantId, at: i64, interval: Duration) -> Vec<(String, Vec<u8>)> {
    let store = state.store();
    let all = windows(&state.config().analysis);
    let Some(longest) = all.last().map(|w| w.ms) else {
        return Vec::new();
    };
    let budget = state.config().hub.queue.max_bytes.saturating_sub(FRAME_ROOM);
    let series = store.all_series(tenant);
    let mut by_measurement: BTreeMap<&str, Vec<&(SeriesId, SeriesMeta)>> = BTreeMap::new();
    for s in &series {
        if s.1.kind != Kind::Str {
            by_measurement.entry(&s.1.line.measurement).or_default().push(s);
        }
    }
    let mut out = Vec::new();
    let mut scratch = Vec::new();
    for (measurement, list) in by_measurement {
        if !state.hub().has_subscribers(tenant, &channel_for(measurement)) {
            continue;
        }
        let mut entries: Vec<u8> = Vec::new();
        let mut truncated = false;
        for (n, (id, meta)) in list.into_iter().enumerate() {
            if n >= MAX_STATS_SERIES {
                truncated = true;
                break;
            }
            let (ts, vals) = match numeric_points(store, *id, meta, at - longest, at) {
                Ok(Some(points)) => points,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(measurement, field = %meta.field, error = %e, "cannot read a series for its statistics");
                    continue;
                }
            };
            let mut per_window = serde_json::Map::new();
            for w in &all {
                let start = ts.partition_point(|&t| t < at - w.ms);
                let stats = window_stats(
                    ts.get(start..).unwrap_or_default(),
                    vals.get(start..).unwrap_or_default(),
                    w.ms,
                    EXACT_QUANTILES_UP_TO,
                    &mut scratch,
                );
                per_window.insert(w.name.clone(), json!(stats));
            }
            let mut e = series_head(meta);
            e.remove("measurement");
            e.insert("db".into(), Value::String(meta.line.db.clone()));
            e.insert("windows".into(), Value::Object(per_window));
            let Ok(bytes) = serde_json::to_vec(&e) else { continue };
            // A publication larger than a connection's queue bound would reach nobody.
            if entries.len() + bytes.len() + 1 > budget.saturating_sub(512) {
                truncated = true;
                break;
            }
            if !entries.is_empty() {
                entries.push(b',');
            }
            entries.extend_from_slice(&bytes);
        }
        let window_ms: serde_json::Map<String, Value> =
            all.iter().map(|w| (w.name.clone(), Value::from(w.ms))).collect();
        let head = json!({
            "measurement": measurement,
            "at": at,
            "interval_ms": interval.as_millis() as u64,
            "window_ms": window_ms,
            "truncated": truncated,
        })
        .to_string();
        // `head` is a JSON object: open it again (drop its one closing brace) to append the
        // series, which were encoded one by one to keep within the budget.
        let head = head.strip_suffix('}').unwrap_or(&head);
        let mut data = Vec::with_capacity(head.len() + entries.len() + 16);
        data.extend_from_slice(head.as_bytes());
        data.extend_from_slice(b",\"series\":[");
        data.extend_from_slice(&entries);
        data.extend_from_slice(b"]}");
        out.push((measurement.to_string(), data));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The statistics computed the obvious way: sorted copy, two-pass variance, every step.
    fn reference(values: &[f64], window_ms: i64) -> Stats {
        if values.is_empty() {
            return Stats::default();
        }
        let n = values.len() as f64;
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let at = |q: f64| sorted[(q * (sorted.len() - 1) as f64).floor() as usize];
        let mean = values.iter().sum::<f64>() / n;
        let var = values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
        let mut increase = 0.0;
        for w in values.windows(2) {
            increase += if w[1] >= w[0] { w[1] - w[0] } else { w[1] };
        }
        Stats {
            count: values.len() as u64,
            min: Some(sorted[0]),
            max: Some(sorted[sorted.len() - 1]),
            avg: Some(mean),
            median: Some(at(0.5)),
            stddev: Some(var.sqrt()),
            p95: Some(at(0.95)),
            p99: Some(at(0.99)),
            rate: Some(increase / (window_ms as f64 / 1000.0)),
            last: None,
        }
    }

    fn close(a: Option<f64>, b: Option<f64>, scale: f64) -> bool {
        match (a, b) {
            (Some(a), Some(b)) => (a - b).abs() <= 1e-9 * scale.max(1.0),
            (None, None) => true,
            _ => false,
        }
    }

    /// Points one second apart on average, ascending by time.
    fn timestamps(n: usize, gaps: &[i64]) -> Vec<i64> {
        let mut t = 1_795_600_000_000i64;
        (0..n)
            .map(|i| {
                t += gaps.get(i).copied().unwrap_or(1000);
                t
            })
            .collect()
    }

    /// Values of a gauge: hundredths in ±10,000.
    fn gauge() -> impl Strategy<Value = Vec<f64>> {
        prop::collection::vec((-1_000_000i64..1_000_000).prop_map(|x| x as f64 / 100.0), 0..400)
    }

    /// Values of a counter: increments, with an occasional reset to a small value.
    fn counter() -> impl Strategy<Value = Vec<f64>> {
        prop::collection::vec((0u32..1000, prop::bool::weighted(0.05), 0u32..50), 0..400).prop_map(|steps| {
            let mut c = 0.0;
            steps
                .into_iter()
                .map(|(inc, reset, after)| {
                    c = if reset { f64::from(after) } else { c + f64::from(inc) };
                    c
                })
                .collect()
        })
    }

    fn check_exact(values: &[f64], gaps: &[i64], window_ms: i64) -> Result<(), TestCaseError> {
        let ts = timestamps(values.len(), gaps);
        let got = window_stats(&ts, values, window_ms, usize::MAX, &mut Vec::new());
        let want = reference(values, window_ms);
        let scale = values.iter().fold(0.0f64, |a, v| a.max(v.abs())) * values.len().max(1) as f64;
        prop_assert_eq!(got.count, want.count);
        prop_assert_eq!((got.min, got.max), (want.min, want.max));
        // Exactly computed quantiles are values of the input at the right rank.
        prop_assert_eq!((got.median, got.p95, got.p99), (want.median, want.p95, want.p99));
        prop_assert!(close(got.avg, want.avg, scale), "avg {:?} vs {:?}", got.avg, want.avg);
        prop_assert!(
            close(got.stddev, want.stddev, scale),
            "stddev {:?} vs {:?}",
            got.stddev,
            want.stddev
        );
        prop_assert!(
            close(got.rate, want.rate, scale),
            "rate {:?} vs {:?}",
            got.rate,
            want.rate
        );
        prop_assert_eq!(got.last, ts.last().copied().zip(values.last().copied()));
        Ok(())
    }

    proptest! {
        #[test]
        fn gauge_windows_match_a_brute_force_reference(
            values in gauge(),
            gaps in prop::collection::vec(1i64..5000, 400),
            window_s in 1i64..4000,
        ) {
            check_exact(&values, &gaps, window_s * 1000)?;
        }

        #[test]
        fn counter_rates_count_resets_like_the_reference(
            values in counter(),
            window_s in 1i64..4000,
        ) {
            check_exact(&values, &[], window_s * 1000)?;
        }

        /// Beyond the exact limit, quantiles come from the sketch: within its relative accuracy
        /// of the exact value at the same rank; every other statistic stays exact.
        #[test]
        fn sketch_quantiles_stay_within_one_percent(
            values in prop::collection::vec(
                (-3.0f64..6.0, prop::bool::ANY).prop_map(|(e, neg)| if neg { -(10f64.powf(e)) } else { 10f64.powf(e) }),
                1..600,
            ),
        ) {
            let ts = timestamps(values.len(), &[]);
            let got = window_stats(&ts, &values, 60_000, 0, &mut Vec::new());
            let exact = window_stats(&ts, &values, 60_000, usize::MAX, &mut Vec::new());
            prop_assert_eq!((got.count, got.min, got.max, got.avg, got.stddev, got.rate),
                (exact.count, exact.min, exact.max, exact.avg, exact.stddev, exact.rate));
            for (g, e) in [(got.median, exact.median), (got.p95, exact.p95), (got.p99, exact.p99)] {
                let (g, e) = (g.unwrap_or(f64::NAN), e.unwrap_or(f64::NAN));
                prop_assert!((g - e).abs() <= pulsewire_codec::DEFAULT_ALPHA * e.abs() * (1.0 + 1e-9),
                    "sketch {} vs exact {}", g, e);
            }
        }

        /// The sketch's bound holds at any quantile, not only the three reported.
        #[test]
        fn sketch_error_is_bounded_at_every_rank(
            values in prop::collection::vec(1e-3f64..1e6, 1..2000),
            q in 0.0f64..=1.0,
        ) {
            let mut sketch = Sketch::new();
            for &v in &values {
                sketch.add(v);
            }
            let mut sorted = values.clone();
            sorted.sort_by(f64::total_cmp);
            let exact = sorted[(q * (sorted.len() - 1) as f64).floor() as usize];
            let got = sketch.quantile(q).unwrap_or(f64::NAN);
            prop_assert!((got - exact).abs() <= sketch.alpha() * exact * (1.0 + 1e-9), "q {}: {} vs {}", q, got, exact);
        }
    }

    #[test]
    fn empty_windows_and_nan_points_have_no_statistics() {
        let empty = window_stats(&[], &[], 60_000, usize::MAX, &mut Vec::new());
        assert_eq!(empty, Stats::default());
        assert_eq!(
            json!(empty),
            json!({"count":0,"min":null,"max":null,"avg":null,"median":null,"stddev":null,"p95":null,"p99":null,"rate":null,"last":null})
        );
        let nan = window_stats(&[1, 2], &[f64::NAN, 4.0], 1000, usize::MAX, &mut Vec::new());
        assert_eq!((nan.count, nan.last, nan.rate), (1, Some((2, 4.0)), Some(0.0)));
    }

    #[test]
    fn windows_are_named_as_the_query_api_spells_durations() {
        for (ms, name) in [
            (60_000, "1m"),
            (300_000, "5m"),
            (3_600_000, "1h"),
            (90_000, "1m30s"),
            (1_500, "1s500ms"),
            (691_200_000, "1w1d"),
        ] {
            assert_eq!(duration_name(ms), name);
            assert_eq!(parse_duration(name).ok(), Some(ms), "{name}");
        }
    }

    #[test]
    fn the_window_parameter_picks_a_configured_window() {
        let config = AnalysisConfig::default();
        let all = windows(&config);
        assert_eq!(
            all.iter().map(|w| w.name.as_str()).collect::<Vec<_>>(),
            ["1m", "5m", "1h"]
        );
        let name = |asked| pick_window(&all, asked).map(|w| w.name).map_err(|e| (e.0, e.1));
        assert_eq!(name(None), Ok("5m".into()));
        assert_eq!(name(Some("")), Ok("5m".into()));
        assert_eq!(name(Some("60m")), Ok("1h".into()));
        let (status, message) = name(Some("2m")).unwrap_err();
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(
            message.starts_with("window: 2m is not") && message.ends_with("1m, 5m, 1h"),
            "{message}"
        );
        let (_, message) = name(Some("soon")).unwrap_err();
        assert!(message.starts_with("window: "), "{message}");
        let short = windows(&AnalysisConfig {
            windows: vec![Duration::from_secs(3600).into(), Duration::from_secs(30).into()],
            ..AnalysisConfig::default()
        });
        assert_eq!(pick_window(&short, None).map(|w| w.name).ok(), Some("30s".into()));
    }
}
