//! The store end to end on a real directory: writes, refusals, reads across the head, a
//! checkpoint and a reopen (WAL replay), rollups and retention against brute-force references.

use std::borrow::Cow;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use proptest::prelude::*;
use pulsewire_model::TenantId;
use pulsewire_proto::{Agg, FieldValue, Line, Precision, parse_selector};
use pulsewire_tsdb::{Aggregation, Clock, RefusalKind, RetentionRule, Store, StoreConfig, Tier};

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;
/// A fixed "now" for tests that set the clock: 2026-11-26T12:00:00Z.
const NOW: i64 = 1_795_694_400_000;

fn line(measurement: &str, tags: &[(&str, &str)], fields: Vec<(&str, FieldValue<'static>)>, ts: i64) -> Line<'static> {
    let mut tags: Vec<(Cow<'static, str>, Cow<'static, str>)> = tags
        .iter()
        .map(|(k, v)| (Cow::Owned(k.to_string()), Cow::Owned(v.to_string())))
        .collect();
    tags.sort();
    Line {
        measurement: Cow::Owned(measurement.to_string()),
        tags,
        fields: fields
            .into_iter()
            .map(|(k, v)| (Cow::Owned(k.to_string()), v))
            .collect(),
        timestamp: Some(ts),
    }
}

fn clock_at(t: i64) -> (Clock, Arc<AtomicI64>) {
    let now = Arc::new(AtomicI64::new(t));
    let c = now.clone();
    (Arc::new(move || c.load(Ordering::SeqCst)), now)
}

fn config() -> StoreConfig {
    StoreConfig {
        // Tests checkpoint explicitly.
        checkpoint_interval: Duration::from_secs(3600),
        ..StoreConfig::default()
    }
}

fn write(store: &Store, db: &str, lines: Vec<Line<'static>>) -> pulsewire_tsdb::WriteOutcome {
    let numbered: Vec<(usize, Line<'static>)> = lines.into_iter().enumerate().map(|(i, l)| (i + 1, l)).collect();
    let out = store
        .write(&TenantId::default_tenant(), db, Precision::Ms, &numbered)
        .unwrap();
    if let Some(ack) = out.ack {
        ack.blocking_recv().unwrap().unwrap();
    }
    pulsewire_tsdb::WriteOutcome { ack: None, ..out }
}

fn raw(store: &Store, sel: &str) -> Vec<(String, Vec<(i64, f64)>)> {
    let sel = parse_selector(sel).unwrap();
    store
        .select(&TenantId::default_tenant(), None, &sel)
        .into_iter()
        .map(|(id, meta)| {
            let (ts, values) = store.read_raw(id, &meta, i64::MIN / 2, i64::MAX / 2).unwrap();
            let pts = ts
                .iter()
                .enumerate()
                .map(|(i, &t)| (t, values.as_f64(i).unwrap()))
                .collect();
            (
                format!("{}.{}{:?}", meta.line.measurement, meta.field, meta.line.tags),
                pts,
            )
        })
        .collect()
}

#[test]
fn points_survive_checkpoint_reopen_and_replay() {
    let dir = tempfile::tempdir().unwrap();
    let (clock, _) = clock_at(NOW);
    let store = Store::open_with_clock(dir.path(), config(), clock.clone()).unwrap();
    let t0 = NOW - HOUR;
    let mut lines = Vec::new();
    for i in 0..100 {
        lines.push(line(
            "cpu",
            &[("host", "a")],
            vec![("usage", FieldValue::Float(i as f64 * 0.5))],
            t0 + i * 1000,
        ));
    }
    let out = write(&store, "db", lines);
    assert_eq!(out.accepted.len(), 100);
    assert_eq!(out.samples, 100);
    store.checkpoint().unwrap();
    // More after the checkpoint, including a late point and an overwrite of a sealed timestamp.
    write(
        &store,
        "db",
        vec![
            line(
                "cpu",
                &[("host", "a")],
                vec![("usage", FieldValue::Float(1000.0))],
                t0 + 100_000,
            ),
            line(
                "cpu",
                &[("host", "a")],
                vec![("usage", FieldValue::Float(-1.0))],
                t0 + 5_000,
            ),
            line(
                "cpu",
                &[("host", "b")],
                vec![("usage", FieldValue::Float(7.0)), ("n", FieldValue::Int(3))],
                t0,
            ),
        ],
    );
    let before = raw(&store, "cpu");
    let a = &before
        .iter()
        .find(|(k, _)| k.contains("usage") && k.contains("\"a\""))
        .unwrap()
        .1;
    assert_eq!(a.len(), 101);
    assert_eq!(a[5], (t0 + 5_000, -1.0), "a later write wins at an equal timestamp");
    assert_eq!(a[100], (t0 + 100_000, 1000.0));
    // Dropped without closing: the head since the checkpoint comes back from the WAL.
    drop(store);
    let store = Store::open_with_clock(dir.path(), config(), clock.clone()).unwrap();
    assert_eq!(raw(&store, "cpu"), before);
    // Closed: everything is sealed, nothing to replay.
    store.close().unwrap();
    let store = Store::open_with_clock(dir.path(), config(), clock).unwrap();
    assert_eq!(raw(&store, "cpu"), before);
    assert_eq!(store.stats().head_points, 0);
    assert_eq!(store.stats().series, 3);
}

#[test]
fn refusals_name_the_reason_and_spare_the_other_lines() {
    let dir = tempfile::tempdir().unwrap();
    let (clock, now) = clock_at(NOW);
    let mut cfg = config();
    cfg.limits.max_series_per_database = 3;
    cfg.limits.max_new_series_per_minute = 2;
    let store = Store::open_with_clock(dir.path(), cfg, clock).unwrap();
    let out = write(
        &store,
        "db",
        vec![
            line("m", &[("h", "1")], vec![("f", FieldValue::Float(1.0))], NOW),
            line("m", &[("h", "1")], vec![("f", FieldValue::Int(1))], NOW + 1),
            line("m", &[("h", "2")], vec![("f", FieldValue::Str("x".into()))], NOW),
            line("m", &[("h", "3")], vec![("f", FieldValue::Float(2.0))], NOW - 8 * DAY),
            line("m", &[("h", "4")], vec![("f", FieldValue::Float(2.0))], NOW),
            line("m", &[("h", "5")], vec![("f", FieldValue::Float(2.0))], NOW),
        ],
    );
    let kinds: Vec<(usize, RefusalKind)> = out.refused.iter().map(|r| (r.line, r.kind)).collect();
    assert_eq!(
        kinds,
        vec![
            (2, RefusalKind::Conflict),
            (3, RefusalKind::Conflict),
            (4, RefusalKind::Retention),
            (6, RefusalKind::RateLimited)
        ],
        "{:?}",
        out.refused
    );
    assert!(
        out.refused[0]
            .message
            .contains("field type conflict: input field \"f\" is type integer, already exists as type float")
    );
    assert_eq!(out.accepted, vec![0, 4]);
    // A new minute lifts the rate limit; the series limit still holds.
    now.fetch_add(60_000, Ordering::SeqCst);
    let out = write(
        &store,
        "db",
        vec![
            line("m", &[("h", "5")], vec![("f", FieldValue::Float(2.0))], NOW + 60_000),
            line("m", &[("h", "6")], vec![("f", FieldValue::Float(2.0))], NOW + 60_000),
        ],
    );
    assert_eq!(out.accepted, vec![0]);
    assert_eq!(out.refused[0].kind, RefusalKind::Limit);
    assert!(
        out.refused[0].message.contains("max-series-per-database"),
        "{}",
        out.refused[0].message
    );
    // Another database has its own count.
    let out = write(
        &store,
        "other",
        vec![line("m", &[("h", "6")], vec![("f", FieldValue::Float(2.0))], NOW)],
    );
    assert_eq!(out.accepted, vec![0]);
}

/// `max_series_per_database` counts active series: those written within the window. A series
/// that has gone quiet leaves the count (here: once a window has passed since the checkpoint
/// that last saw it), also across a restart.
#[test]
fn the_series_limit_counts_series_written_within_the_window() {
    const MIN: i64 = 60_000;
    let dir = tempfile::tempdir().unwrap();
    let (clock, now) = clock_at(NOW);
    let mut cfg = config();
    cfg.limits.max_series_per_database = 2;
    cfg.limits.active_series_window = Duration::from_secs(3600);
    let host = |h: &'static str, t: i64| line("m", &[("h", h)], vec![("f", FieldValue::Float(1.0))], t);
    let limited = |out: &pulsewire_tsdb::WriteOutcome| {
        out.refused.len() == 1
            && out.refused[0].kind == RefusalKind::Limit
            && out.refused[0].message.contains("active series (written within 1h)")
    };
    let store = Store::open_with_clock(dir.path(), cfg.clone(), clock.clone()).unwrap();
    let out = write(&store, "db", vec![host("1", NOW), host("2", NOW), host("3", NOW)]);
    assert_eq!(out.accepted, vec![0, 1]);
    assert!(limited(&out), "{:?}", out.refused);
    store.checkpoint().unwrap();
    // Host 1 goes on writing; host 2 stops.
    now.store(NOW + 30 * MIN, Ordering::SeqCst);
    assert_eq!(write(&store, "db", vec![host("1", NOW + 30 * MIN)]).accepted, vec![0]);
    store.checkpoint().unwrap();
    // Still within the hour of host 2's last write.
    now.store(NOW + 59 * MIN, Ordering::SeqCst);
    assert!(limited(&write(&store, "db", vec![host("3", NOW + 59 * MIN)])));
    // An hour on, host 2 no longer counts: host 3 may start; host 4 may not.
    now.store(NOW + 61 * MIN, Ordering::SeqCst);
    let out = write(&store, "db", vec![host("3", NOW + 61 * MIN), host("4", NOW + 61 * MIN)]);
    assert_eq!(out.accepted, vec![0]);
    assert!(limited(&out), "{:?}", out.refused);
    // Host 2 may still write (it exists); it counts again from the next checkpoint.
    assert_eq!(write(&store, "db", vec![host("2", NOW + 61 * MIN)]).accepted, vec![0]);
    store.checkpoint().unwrap();
    now.store(NOW + 62 * MIN, Ordering::SeqCst);
    let out = write(&store, "db", vec![host("4", NOW + 62 * MIN)]);
    assert!(
        limited(&out) && out.refused[0].message.contains("has 3 active series"),
        "{:?}",
        out.refused
    );
    store.close().unwrap();
    drop(store);

    // After a restart the count comes from the points' timestamps. At +95 host 1 (last point
    // at +30) is quiet, hosts 2 and 3 (+61) are not: with a limit of 3, one more may start.
    cfg.limits.max_series_per_database = 3;
    now.store(NOW + 95 * MIN, Ordering::SeqCst);
    let store = Store::open_with_clock(dir.path(), cfg.clone(), clock.clone()).unwrap();
    let out = write(&store, "db", vec![host("4", NOW + 95 * MIN), host("5", NOW + 95 * MIN)]);
    assert_eq!(out.accepted, vec![0]);
    assert!(
        out.refused[0].message.contains("has 3 active series"),
        "{:?}",
        out.refused
    );
    // Without a checkpoint since the restart, host 4 counts from its creation and the others
    // from their points: an hour after each, all are quiet.
    now.store(NOW + 156 * MIN, Ordering::SeqCst);
    let t = NOW + 156 * MIN;
    let out = write(
        &store,
        "db",
        vec![host("5", t), host("6", t), host("7", t), host("8", t)],
    );
    assert_eq!(out.accepted, vec![0, 1, 2]);
    assert!(
        out.refused[0].message.contains("has 3 active series"),
        "{:?}",
        out.refused
    );
    assert_eq!(
        raw(&store, "m.f{h=\"2\"}")[0].1.len(),
        2,
        "quiet series keep their points"
    );
}

fn brute(agg: Agg, pts: &[(i64, f64)], step: i64) -> Vec<(i64, f64)> {
    let mut buckets: std::collections::BTreeMap<i64, Vec<f64>> = Default::default();
    for &(t, v) in pts {
        buckets.entry(t.div_euclid(step) * step).or_default().push(v);
    }
    buckets
        .into_iter()
        .map(|(b, vals)| {
            let n = vals.len() as f64;
            let v = match agg {
                Agg::Count => n,
                Agg::Sum => vals.iter().sum(),
                Agg::Min => vals.iter().cloned().fold(f64::INFINITY, f64::min),
                Agg::Max => vals.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
                Agg::Avg => vals.iter().sum::<f64>() / n,
                Agg::Last => *vals.last().unwrap(),
                Agg::Stddev => {
                    let m = vals.iter().sum::<f64>() / n;
                    (vals.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / n).sqrt()
                }
                Agg::Rate => {
                    let mut inc = 0.0;
                    for w in vals.windows(2) {
                        inc += if w[1] >= w[0] { w[1] - w[0] } else { w[1] };
                    }
                    inc / (step as f64 / 1000.0)
                }
                Agg::Median | Agg::P95 | Agg::P99 => {
                    let mut s = vals.clone();
                    s.sort_by(f64::total_cmp);
                    s[(agg.quantile().unwrap() * (s.len() - 1) as f64).floor() as usize]
                }
            };
            (b, v)
        })
        .collect()
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * a.abs().max(b.abs()) + 1e-9
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Rollup tiers (1m, 5m, 1h; built per day, late points added at checkpoints, merged with
    /// the unsealed head and with the raw points of days not rolled up yet) answer exactly what
    /// the raw points give, quantiles within the sketch's relative accuracy; without tiers of
    /// the series in the range, the raw points answer (exactly). The points span midnight.
    #[test]
    fn rollups_match_brute_force(
        points in prop::collection::btree_map(0i64..3 * HOUR, 0.0f64..1000.0, 1..400),
        split in 0usize..400,
        // 0: no tiers built; 1: the first part's days rolled up, the rest in the head; 2: as 1,
        // then the rest sealed into the built tiers; 3: everything sealed, then yesterday
        // rolled up as a quiet, finished day while today waits (its raw points summarised).
        phase in 0u8..4,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let (clock, now) = clock_at(NOW);
        let mut cfg = config();
        cfg.retention.rollup_after = Some(Duration::from_secs(3600));
        let store = Store::open_with_clock(dir.path(), cfg, clock).unwrap();
        let midnight = NOW / DAY * DAY;
        let base = midnight - 2 * HOUR;
        let pts: Vec<(i64, f64)> = points.into_iter().map(|(t, v)| (base + t, (v * 100.0).round() / 100.0)).collect();
        let split = if phase == 3 { pts.len() } else { split.min(pts.len()) };
        let lines = |range: &[(i64, f64)]| {
            range.iter().map(|&(t, v)| line("m", &[("h", "x")], vec![("f", FieldValue::Float(v))], t)).collect::<Vec<_>>()
        };
        write(&store, "db", lines(&pts[..split]));
        store.checkpoint().unwrap();
        if phase == 1 || phase == 2 {
            store.roll_up().unwrap();
        }
        write(&store, "db", lines(&pts[split..]));
        if phase == 2 {
            store.checkpoint().unwrap();
        }
        if phase == 3 {
            now.store(NOW + 11 * 60_000, Ordering::SeqCst);
            store.maintain().unwrap();
        }
        let tiers_built = part_files(dir.path(), "1m-") > 0;
        let yesterday = pts.iter().any(|&(t, _)| t < midnight);
        prop_assert_eq!(tiers_built, match phase {
            0 => false,
            3 => yesterday,
            _ => split > 0,
        });
        let sel = parse_selector("m.f").unwrap();
        let (id, meta) = store.select(&TenantId::default_tenant(), None, &sel).pop().unwrap();
        for (step, tier) in [(60_000, Tier::M1), (300_000, Tier::M5), (HOUR, Tier::H1), (2 * HOUR, Tier::H1), (30_000, Tier::Raw)] {
            for agg in Agg::ALL {
                let (used, got) = store.aggregate(id, &meta, &Aggregation { from: base, to: base + 4 * HOUR, step, agg, force_raw: false }).unwrap();
                // Without tiers of the series, its raw points answer (exactly).
                let tier = if tiers_built { tier } else { Tier::Raw };
                prop_assert_eq!(used, tier);
                let want = brute(agg, &pts, step);
                prop_assert_eq!(got.len(), want.len(), "{:?} step {}", agg, step);
                for (g, w) in got.iter().zip(&want) {
                    prop_assert_eq!(g.start, w.0);
                    let tol = match agg {
                        Agg::Median | Agg::P95 | Agg::P99 if tier != Tier::Raw => 0.021,
                        _ => 1e-9,
                    };
                    prop_assert!(close(g.value, w.1, tol), "{:?} step {} bucket {}: got {} want {}", agg, step, w.0, g.value, w.1);
                }
            }
        }
    }

    /// Retention drops whole expired partitions from disk, and reads never return points older
    /// than their series' retention, whatever has been dropped physically yet.
    #[test]
    fn retention_matches_brute_force(
        points in prop::collection::vec((0i64..6 * DAY, 0u8..2), 1..200),
        advance_days in 0i64..8,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let (clock, now) = clock_at(NOW);
        let mut cfg = config();
        cfg.retention.raw = Duration::from_secs(7 * 86_400);
        cfg.retention.rules = vec![RetentionRule { db: None, measurement: Some("short".into()), raw: Duration::from_secs(2 * 86_400) }];
        let store = Store::open_with_clock(dir.path(), cfg, clock).unwrap();
        // Points of the last ~6 days for "long"; "short" only keeps 2 days, so write within it.
        let mut written = Vec::new();
        for (t, which) in &points {
            let m = if *which == 0 { "long" } else { "short" };
            let ts = if *which == 0 { NOW - 6 * DAY + t } else { NOW - 2 * DAY + t / 3 };
            let out = write(&store, "db", vec![line(m, &[], vec![("f", FieldValue::Float(1.0))], ts)]);
            prop_assert_eq!(out.accepted.len(), 1);
            written.push((m, ts));
        }
        store.checkpoint().unwrap();
        let later = NOW + advance_days * DAY;
        now.store(later, Ordering::SeqCst);
        store.maintain().unwrap();
        for m in ["long", "short"] {
            let keep = if m == "long" { 7 * DAY } else { 2 * DAY };
            let mut want: Vec<i64> = written.iter().filter(|(w, t)| *w == m && *t >= later - keep).map(|(_, t)| *t).collect();
            want.sort_unstable();
            want.dedup();
            let got: Vec<i64> = raw(&store, m).into_iter().flat_map(|(_, pts)| pts.into_iter().map(|(t, _)| t)).collect();
            prop_assert_eq!(got, want, "{}", m);
        }
        // Physically: no raw part of a partition that ended before the longest retention.
        for entry in std::fs::read_dir(dir.path().join("parts")).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            if let Some(rest) = name.strip_prefix("raw-") {
                let partition: i64 = rest.split('-').next().unwrap().parse().unwrap();
                prop_assert!(partition + DAY > later - 7 * DAY, "expired partition {} still on disk", name);
            }
        }
    }
}

fn part_files(dir: &std::path::Path, prefix: &str) -> usize {
    std::fs::read_dir(dir.join("parts"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with(prefix))
        .count()
}

/// A past day that is still being written (a back-fill) is merged size-tiered like today's,
/// not rewritten whole at every maintenance pass; once no checkpoint has added to it for ten
/// minutes it is merged into one part.
#[test]
fn a_day_being_back_filled_is_merged_whole_only_once_quiet() {
    let dir = tempfile::tempdir().unwrap();
    let (clock, now) = clock_at(NOW);
    let store = Store::open_with_clock(dir.path(), config(), clock).unwrap();
    let yesterday = (NOW / DAY - 1) * DAY;
    for i in 0..3i64 {
        write(
            &store,
            "db",
            vec![line(
                "m",
                &[],
                vec![("f", FieldValue::Float(i as f64))],
                yesterday + 1000 * i,
            )],
        );
        store.checkpoint().unwrap();
    }
    store.maintain().unwrap();
    assert_eq!(
        part_files(dir.path(), "raw-"),
        3,
        "three small parts of a day still being written"
    );
    now.store(NOW + 11 * 60_000, Ordering::SeqCst);
    store.maintain().unwrap();
    assert_eq!(part_files(dir.path(), "raw-"), 1, "quiet for 11 minutes: one part");
    let got: Vec<(i64, f64)> = raw(&store, "m.f")[0].1.clone();
    assert_eq!(
        got,
        vec![(yesterday, 0.0), (yesterday + 1000, 1.0), (yesterday + 2000, 2.0)]
    );
}

#[test]
fn compaction_merges_parts_and_keeps_the_latest_write() {
    let dir = tempfile::tempdir().unwrap();
    let (clock, now) = clock_at(NOW);
    let mut cfg = config();
    cfg.retention.rollup_after = Some(Duration::from_secs(3600));
    let store = Store::open_with_clock(dir.path(), cfg.clone(), clock).unwrap();
    let t0 = NOW - 2 * HOUR;
    // Six checkpoints of one point each, every one overwriting the same timestamp as well.
    let mut want = Vec::new();
    for i in 0..6i64 {
        write(
            &store,
            "db",
            vec![
                line("m", &[], vec![("f", FieldValue::Float(i as f64))], t0),
                line(
                    "m",
                    &[],
                    vec![("f", FieldValue::Float(100.0 + i as f64))],
                    t0 + 1000 * (i + 1),
                ),
            ],
        );
        want.push((t0 + 1000 * (i + 1), 100.0 + i as f64));
        store.checkpoint().unwrap();
    }
    want.insert(0, (t0, 5.0));
    assert_eq!(part_files(dir.path(), "raw-"), 6);
    assert_eq!(raw(&store, "m.f")[0].1, want);
    store.maintain().unwrap();
    // Six parts of one size class: four consecutive ones merged, then the result and the rest.
    assert!(part_files(dir.path(), "raw-") < 6);
    assert_eq!(raw(&store, "m.f")[0].1, want);
    // Once the day is over and an hour has passed, the partition is one part.
    now.store(NOW + DAY, Ordering::SeqCst);
    store.maintain().unwrap();
    assert_eq!(part_files(dir.path(), "raw-"), 1);
    assert_eq!(raw(&store, "m.f")[0].1, want);
    let (id, meta) = store
        .select(&TenantId::default_tenant(), None, &parse_selector("m.f").unwrap())
        .pop()
        .unwrap();
    let (used, sums) = store
        .aggregate(
            id,
            &meta,
            &Aggregation {
                from: t0,
                to: t0 + HOUR,
                step: HOUR,
                agg: Agg::Count,
                force_raw: false,
            },
        )
        .unwrap();
    // The day's rollups are built from its merged raw points once it is over (an hour after,
    // here): an overwritten point counts once.
    assert_eq!((used, sums[0].value), (Tier::H1, 7.0));
    drop(store);
    let store = Store::open_with_clock(dir.path(), cfg, Arc::new(move || NOW + DAY)).unwrap();
    assert_eq!(raw(&store, "m.f")[0].1, want);
}

/// Checkpoints and compactions run on their own threads and apply their changes to the
/// current manifest: racing them against each other and against writes must lose nothing,
/// in memory or after a reopen.
#[test]
fn checkpoints_and_compactions_racing_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (clock, _) = clock_at(NOW);
    let store = Store::open_with_clock(dir.path(), config(), clock.clone()).unwrap();
    let t0 = NOW - 2 * HOUR;
    let rounds = 60i64;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers: Vec<_> = [false, true]
        .into_iter()
        .map(|compacting| {
            let (store, stop) = (store.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    if compacting {
                        store.maintain().unwrap();
                    } else {
                        store.checkpoint().unwrap();
                    }
                }
            })
        })
        .collect();
    for i in 0..rounds {
        let lines = (0..20)
            .map(|s| {
                line(
                    "m",
                    &[("s", &format!("s{s}"))],
                    vec![("f", FieldValue::Float((i * 100 + s) as f64))],
                    t0 + i * 1000,
                )
            })
            .collect();
        write(&store, "db", lines);
    }
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.join().unwrap();
    }
    let check = |store: &Store| {
        let got = raw(store, "m.f");
        assert_eq!(got.len(), 20);
        for (_, pts) in &got {
            assert_eq!(pts.len(), rounds as usize);
            assert!(pts.iter().enumerate().all(|(i, (t, _))| *t == t0 + i as i64 * 1000));
        }
    };
    check(&store);
    store.close().unwrap();
    drop(store);
    let store = Store::open_with_clock(dir.path(), config(), clock).unwrap();
    check(&store);
}

/// Writers resolve series concurrently and create them under a separate lock, with checkpoints
/// rotating the WAL meanwhile (measurement `m`), then without checkpoints (`n`, only in the WAL):
/// after a crash (dropped without closing) and a replay, every series is defined before its
/// samples and every acknowledged point is there.
#[test]
fn concurrent_writers_creating_series_across_checkpoints_replay_whole() {
    let dir = tempfile::tempdir().unwrap();
    let (clock, _) = clock_at(NOW);
    let store = Store::open_with_clock(dir.path(), config(), clock.clone()).unwrap();
    let t0 = NOW - 2 * HOUR;
    let (writers, rounds, hosts, fields) = (4i64, 40i64, 8i64, 5i64);
    // Each round brings a new host for every writer at once (the same series created by several
    // of them) and a field the host may not have yet.
    let point = move |w: i64, r: i64, h: i64| {
        (
            (r + h) % fields,
            t0 + r * 1000 + w,
            (w * 1_000_000 + r * 100 + h) as f64,
        )
    };
    let run = |measurement: &'static str, checkpointing: bool| {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let checkpoints = checkpointing.then(|| {
            let (store, stop) = (store.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    store.checkpoint().unwrap();
                }
            })
        });
        let threads: Vec<_> = (0..writers)
            .map(|w| {
                let store = store.clone();
                std::thread::spawn(move || {
                    for r in 0..rounds {
                        let lines = (0..=r.min(hosts - 1))
                            .map(|h| {
                                let (f, ts, v) = point(w, r, h);
                                let field: &'static str = Box::leak(format!("f{f}").into_boxed_str());
                                line(
                                    measurement,
                                    &[("host", &format!("h{h}"))],
                                    vec![(field, FieldValue::Float(v))],
                                    ts,
                                )
                            })
                            .collect();
                        write(&store, "db", lines);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        stop.store(true, Ordering::SeqCst);
        if let Some(c) = checkpoints {
            c.join().unwrap();
        }
    };
    run("m", true);
    run("n", false);
    let mut expected: std::collections::BTreeMap<(i64, i64), Vec<(i64, f64)>> = Default::default();
    for w in 0..writers {
        for r in 0..rounds {
            for h in 0..=r.min(hosts - 1) {
                let (f, ts, v) = point(w, r, h);
                expected.entry((h, f)).or_default().push((ts, v));
            }
        }
    }
    for pts in expected.values_mut() {
        pts.sort_by_key(|p| p.0);
    }
    let check = |store: &Store| {
        for m in ["m", "n"] {
            let got = raw(store, m);
            assert_eq!(got.len(), expected.len());
            for ((h, f), pts) in &expected {
                let key = format!("{m}.f{f}[(\"host\", \"h{h}\")]");
                let series = got
                    .iter()
                    .find(|(k, _)| *k == key)
                    .unwrap_or_else(|| panic!("{key} missing"));
                assert_eq!(&series.1, pts, "{key}");
            }
        }
    };
    check(&store);
    assert!(
        store.stats().head_points > 0,
        "measurement n is only in the head and the WAL"
    );
    drop(store);
    let store = Store::open_with_clock(dir.path(), config(), clock).unwrap();
    check(&store);
    assert_eq!(store.stats().series, 2 * expected.len());
}

#[test]
fn old_ranges_are_answered_from_the_tier_that_still_holds_them() {
    let dir = tempfile::tempdir().unwrap();
    let (clock, now) = clock_at(NOW);
    let store = Store::open_with_clock(dir.path(), config(), clock).unwrap();
    let lines = (0..10)
        .map(|i| line("m", &[], vec![("f", FieldValue::Float(i as f64))], NOW - 1000 * i))
        .collect();
    write(&store, "db", lines);
    store.checkpoint().unwrap();
    // Ten days later the raw points are past their 7 days; the rollups are not.
    now.store(NOW + 10 * DAY, Ordering::SeqCst);
    store.maintain().unwrap();
    let (id, meta) = store
        .select(&TenantId::default_tenant(), None, &parse_selector("m.f").unwrap())
        .pop()
        .unwrap();
    for (from, step, tier) in [
        (NOW - 3 * 365 * DAY, HOUR, Tier::H1),
        (NOW - 40 * DAY, 300_000, Tier::M5),
    ] {
        let q = Aggregation {
            from,
            to: NOW + 10 * DAY,
            step,
            agg: Agg::Count,
            force_raw: false,
        };
        let (used, buckets) = store.aggregate(id, &meta, &q).unwrap();
        assert_eq!(used, tier);
        assert_eq!(buckets.iter().map(|b| b.value).sum::<f64>(), 10.0, "{tier:?}");
    }
    assert!(store.read_raw(id, &meta, 0, i64::MAX).unwrap().0.is_empty());
    let q = Aggregation {
        from: i64::MIN,
        to: i64::MAX,
        step: HOUR,
        agg: Agg::Count,
        force_raw: false,
    };
    assert_eq!(
        store
            .aggregate(id, &meta, &q)
            .unwrap()
            .1
            .iter()
            .map(|b| b.value)
            .sum::<f64>(),
        10.0
    );
}

#[test]
fn a_missing_manifest_with_parts_refuses_to_open() {
    let dir = tempfile::tempdir().unwrap();
    let (clock, _) = clock_at(NOW);
    let store = Store::open_with_clock(dir.path(), config(), clock.clone()).unwrap();
    write(
        &store,
        "db",
        vec![line("m", &[], vec![("f", FieldValue::Float(1.0))], NOW)],
    );
    store.close().unwrap();
    drop(store);
    std::fs::remove_file(dir.path().join("MANIFEST")).unwrap();
    let err = Store::open_with_clock(dir.path(), config(), clock)
        .err()
        .expect("refused");
    assert!(err.to_string().contains("MANIFEST is missing"), "{err}");
    assert!(part_files(dir.path(), "raw-") > 0, "parts kept");
}

/// A new store writes its (empty) manifest at once: parts that a crash during the first
/// checkpoint left behind are leftovers at the next start, not a reason to refuse it.
#[test]
fn a_crash_during_the_first_checkpoint_leaves_a_store_that_opens() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), config()).unwrap();
    assert!(dir.path().join("MANIFEST").exists());
    drop(store);
    // What a checkpoint killed before its manifest update leaves: a part nothing names.
    std::fs::write(dir.path().join("parts").join("raw-0-0000000001.pwp"), b"torn").unwrap();
    let store = Store::open(dir.path(), config()).unwrap();
    assert_eq!(part_files(dir.path(), "raw-"), 0, "the leftover is removed");
    drop(store);
}

/// A day's tiers are built once it has ended (`rollup_after` ago: here 1h) and no checkpoint has
/// written to it for a while, not while it is still being filled; until then aggregates come
/// from its raw points.
#[test]
fn a_day_is_rolled_up_once_it_has_gone_quiet() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config();
    cfg.retention.rollup_after = Some(Duration::from_secs(3600));
    let (store, now, yesterday, sum) = yesterday_store(dir.path(), cfg.clone());
    store.maintain().unwrap();
    assert_eq!(part_files(dir.path(), "1m-"), 0, "just written: not quiet yet");
    assert_eq!(sum(&store), 4950.0);
    now.store(NOW + 11 * 60_000, Ordering::SeqCst);
    store.maintain().unwrap();
    assert!(part_files(dir.path(), "1m-") > 0, "quiet for 11 minutes: rolled up");
    assert_eq!(sum(&store), 4950.0);
    // A late point for the rolled-up day is summarised as it is sealed.
    write(
        &store,
        "db",
        vec![line("m", &[], vec![("f", FieldValue::Float(50.0))], yesterday + 30_000)],
    );
    store.checkpoint().unwrap();
    assert_eq!(sum(&store), 5000.0);
    drop(store);
    let store = Store::open_with_clock(dir.path(), cfg, Arc::new(move || NOW + 11 * 60_000)).unwrap();
    assert_eq!(sum(&store), 5000.0);
}

/// A store holding 100 points (0..99, a minute apart) of yesterday for `m.f`, checkpointed;
/// returns the clock's handle, the day's start and the day's sum at one-hour steps.
fn yesterday_store(dir: &Path, cfg: StoreConfig) -> (Store, Arc<AtomicI64>, i64, impl Fn(&Store) -> f64) {
    let (clock, now) = clock_at(NOW);
    let store = Store::open_with_clock(dir, cfg, clock).unwrap();
    let yesterday = (NOW / DAY - 1) * DAY;
    let lines = (0..100)
        .map(|i| {
            line(
                "m",
                &[],
                vec![("f", FieldValue::Float(i as f64))],
                yesterday + 60_000 * i,
            )
        })
        .collect();
    write(&store, "db", lines);
    store.checkpoint().unwrap();
    let (id, meta) = store
        .select(&TenantId::default_tenant(), None, &parse_selector("m.f").unwrap())
        .pop()
        .unwrap();
    let q = Aggregation {
        from: yesterday,
        to: yesterday + DAY,
        step: HOUR,
        agg: Agg::Sum,
        force_raw: false,
    };
    let sum = move |store: &Store| {
        store
            .aggregate(id, &meta, &q)
            .unwrap()
            .1
            .iter()
            .map(|b| b.value)
            .sum::<f64>()
    };
    (store, now, yesterday, sum)
}

/// `retention.rollup_after` holds a quiet day's tiers back until that long after it ended (by
/// default an hour less than the raw retention: 7 days less an hour); aggregated reads
/// meanwhile come from its raw points, with the same answer.
#[test]
fn rollups_wait_for_rollup_after() {
    for (after, delay) in [(Some(3 * 86_400), 3 * DAY), (None, 7 * DAY - HOUR)] {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config();
        cfg.retention.rollup_after = after.map(Duration::from_secs);
        let (store, now, yesterday, sum) = yesterday_store(dir.path(), cfg);
        let due = yesterday + DAY + delay;
        // An hour short of the delay after it ended, quiet for long: not yet.
        now.store(due - HOUR, Ordering::SeqCst);
        store.maintain().unwrap();
        assert_eq!(part_files(dir.path(), "1m-"), 0, "{after:?}: no tiers yet");
        assert_eq!(sum(&store), 4950.0);
        // The delay after it ended: built.
        now.store(due + 60_000, Ordering::SeqCst);
        store.maintain().unwrap();
        assert!(part_files(dir.path(), "1m-") > 0, "{after:?}: tiers built");
        assert_eq!(sum(&store), 4950.0);
    }
}

/// Where the tier holds nothing of a series in the range (today, days whose tiers wait) and the
/// range is within the raw retention, an aggregated read is answered from raw points; a range
/// that touches a day with tiers, or begins before the raw retention, from the tier, the raw
/// points of days without tiers summarised (all of them, as the tiers will hold them).
#[test]
fn aggregated_reads_take_raw_points_where_the_tier_has_none() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config();
    cfg.retention.rollup_after = Some(Duration::from_secs(3600));
    let (store, now, yesterday, _) = yesterday_store(dir.path(), cfg);
    let today = yesterday + DAY;
    let lines = (0..10)
        .map(|i| line("m", &[], vec![("f", FieldValue::Float(1.0))], today + 60_000 * i))
        .collect();
    write(&store, "db", lines);
    // `m.f`'s hourly sums over `[from, to)`, and what answered.
    fn read(store: &Store, from: i64, to: i64) -> (Tier, f64) {
        let (id, meta) = store
            .select(&TenantId::default_tenant(), None, &parse_selector("m.f").unwrap())
            .pop()
            .unwrap();
        let q = Aggregation {
            from,
            to,
            step: HOUR,
            agg: Agg::Sum,
            force_raw: false,
        };
        let (used, got) = store.aggregate(id, &meta, &q).unwrap();
        (used, got.iter().map(|b| b.value).sum::<f64>())
    }
    assert_eq!(read(&store, yesterday, NOW), (Tier::Raw, 4960.0), "no tiers yet");
    now.store(NOW + 11 * 60_000, Ordering::SeqCst);
    store.maintain().unwrap();
    assert!(part_files(dir.path(), "1m-") > 0, "yesterday rolled up");
    assert_eq!(read(&store, today, NOW), (Tier::Raw, 10.0), "today alone");
    assert_eq!(read(&store, yesterday, NOW), (Tier::H1, 4960.0), "touching yesterday");

    // Raw retention 2 days, the clock a day on: yesterday's points (its first 100 minutes) are
    // past it for raw reads, but their day has no tiers yet, so aggregated reads summarise them.
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config();
    cfg.retention.raw = Duration::from_secs(2 * 86_400);
    let (store, now, yesterday, sum) = yesterday_store(dir.path(), cfg);
    now.store(NOW + DAY, Ordering::SeqCst);
    assert!(
        raw(&store, "m.f")[0].1.is_empty(),
        "past the raw retention for raw reads"
    );
    assert_eq!(read(&store, yesterday, yesterday + DAY), (Tier::H1, 4950.0));
    assert_eq!(sum(&store), 4950.0);
}

/// Whatever `rollup_after` says, a day's tiers are built before retention takes its raw points
/// (here a rollup delay beyond the raw retention, which the server's configuration check
/// refuses, so that only retention can trigger the build), and its sums survive the drop.
#[test]
fn retention_builds_the_tiers_before_dropping_raw_points() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config();
    cfg.retention.raw = Duration::from_secs(2 * 86_400);
    cfg.retention.rollup_after = Some(Duration::from_secs(30 * 86_400));
    let (store, now, yesterday, sum) = yesterday_store(dir.path(), cfg);
    now.store(yesterday + 2 * DAY, Ordering::SeqCst);
    store.maintain().unwrap();
    assert_eq!(
        part_files(dir.path(), "1m-"),
        0,
        "a day after it ended: not pressed yet"
    );
    // The day's end is now two days (the raw retention) ago.
    now.store(yesterday + 3 * DAY, Ordering::SeqCst);
    store.maintain().unwrap();
    assert!(part_files(dir.path(), "1m-") > 0, "pressed by retention: tiers built");
    assert_eq!(part_files(dir.path(), "raw-"), 0, "and the raw day dropped");
    assert_eq!(sum(&store), 4950.0);
}

/// A checkpoint that fails poisons the store: every writer then gets the refusal, including
/// those held back waiting for that checkpoint to make room, and the points acknowledged
/// before are there after a restart (from the WAL). The fault is staged with a FIFO where the
/// checkpoint writes its new manifest: opening it blocks the checkpoint (so writers fill the
/// WAL and wait) until the test opens and closes the other end, and then writing or syncing
/// it fails, as a full or failing disk would.
#[test]
fn a_failed_checkpoint_refuses_writers_instead_of_holding_them() {
    use std::sync::atomic::AtomicU64;

    let dir = tempfile::tempdir().unwrap();
    let (clock, _) = clock_at(NOW);
    let cfg = StoreConfig {
        // Small, so that a checkpoint starts (and writers wait for room) after ~1 MiB of WAL.
        checkpoint_wal_bytes: 1 << 20,
        ..config()
    };
    let store = Arc::new(Store::open_with_clock(dir.path(), cfg.clone(), clock.clone()).unwrap());
    write(
        &store,
        "db",
        vec![line(
            "m",
            &[("h", "a")],
            vec![("v", FieldValue::Float(1.0))],
            NOW - 1000,
        )],
    );
    let fifo = dir.path().join("MANIFEST.tmp");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success(), "mkfifo failed");

    let writes = Arc::new(AtomicU64::new(0));
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    for w in 0..2 {
        let (store, writes, done_tx) = (store.clone(), writes.clone(), done_tx.clone());
        std::thread::spawn(move || {
            let fields: Vec<String> = (0..20).map(|f| format!("f{f}")).collect();
            for round in 0..100_000i64 {
                let lines: Vec<(usize, Line<'static>)> = (0..200)
                    .map(|i| {
                        let host = format!("w{w}h{i}");
                        let values = fields
                            .iter()
                            .map(|f| (f.as_str(), FieldValue::Float((round * 7 + i) as f64)))
                            .collect();
                        (
                            i as usize + 1,
                            line("load", &[("host", &host)], values, NOW - 3_600_000 + round),
                        )
                    })
                    .collect();
                if let Err(e) = store.write(&TenantId::default_tenant(), "db", Precision::Ms, &lines) {
                    done_tx.send(Some(e.to_string())).unwrap();
                    return;
                }
                writes.fetch_add(1, Ordering::Relaxed);
            }
            done_tx.send(None).unwrap();
        });
    }
    // The checkpoint is blocked on the FIFO; once the WAL has grown past the limit again, the
    // writers wait for room and stop making progress.
    let mut last = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let now = writes.load(Ordering::Relaxed);
        if now > 0 && now == last {
            break;
        }
        last = now;
        assert!(std::time::Instant::now() < deadline, "the writers were never held back");
    }
    // Held, not finished: a writer that stopped early would leave no checkpoint on the FIFO's
    // other end, and opening it would block.
    assert!(
        matches!(done_rx.try_recv(), Err(std::sync::mpsc::TryRecvError::Empty)),
        "a writer stopped before the checkpoint failed"
    );
    // Let the checkpoint's open succeed, then leave it a pipe nobody reads: its write or sync
    // fails and the checkpoint with it.
    drop(std::fs::File::open(&fifo).unwrap());

    for _ in 0..2 {
        let refusal = done_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("a writer is still held 30 s after the checkpoint failed");
        let refusal = refusal.expect("2 x 100,000 writes of 4,000 samples and no refusal");
        assert!(refusal.contains("refuses writes until restarted"), "{refusal}");
    }
    assert!(store.poisoned().is_some());
    drop(store);

    std::fs::remove_file(&fifo).unwrap();
    let store = Store::open_with_clock(dir.path(), cfg, clock).unwrap();
    assert_eq!(
        raw(&store, "m.v"),
        vec![("m.v[(\"h\", \"a\")]".to_string(), vec![(NOW - 1000, 1.0)])]
    );
}
