//! Size and speed of the rollup summaries codec on synthetic host metrics, against the
//! per-summary encoding ([`Summary::encode`] back to back, as rollup blocks held them before).
//! Buckets are built as the store builds them: 1-minute summaries from raw points, 5-minute and
//! 1-hour ones by merging those. The test holds the targets (the host mix's 1-minute
//! tier under 3 bytes per raw sample at 10 s and under 0.5 at 1 s); `report` (not a test; the `codec_report` example runs it) prints
//! the table quoted in the summaries module docs:
//! `cargo run -p pulsewire-codec --release --example codec_report`.

mod common;

use std::time::Instant;

use common::{CLOCKS, Clock, HOST_MIX, Rng, SHAPES, Shape, timestamps, values};
use pulsewire_codec::{Summary, decode_summaries, encode_summaries};

/// Buckets per stored block, as the store writes them (`BLOCK_BUCKETS` in tsdb).
const BLOCK_BUCKETS: usize = 512;
const MINUTE: i64 = 60_000;
const TIERS: [(&str, i64); 3] = [("1m", MINUTE), ("5m", 5 * MINUTE), ("1h", 60 * MINUTE)];

/// Raw points of one series as floats, as the store summarises them.
fn raw(shape: Shape, clock: Clock, n: usize, seed: u64) -> (Vec<i64>, Vec<f64>) {
    let mut rng = Rng::new(seed);
    let ts = timestamps(clock, n, &mut rng);
    let v = values(shape, n, clock.interval_ms, &mut rng);
    let v = (0..v.len()).map(|i| v.as_f64(i).unwrap()).collect();
    (ts, v)
}

/// Buckets of `width` ms: 1-minute ones from the points, wider ones by merging 1-minute ones.
fn buckets(ts: &[i64], vals: &[f64], width: i64) -> Vec<(i64, Summary)> {
    let mut m1: Vec<(i64, Summary)> = Vec::new();
    for (&t, &v) in ts.iter().zip(vals) {
        let b = t.div_euclid(MINUTE) * MINUTE;
        match m1.last_mut() {
            Some((start, s)) if *start == b => s.add(t, v),
            _ => {
                let mut s = Summary::new();
                s.add(t, v);
                m1.push((b, s));
            }
        }
    }
    if width == MINUTE {
        return m1;
    }
    let mut out: Vec<(i64, Summary)> = Vec::new();
    for (t, s) in m1 {
        let b = t.div_euclid(width) * width;
        match out.last_mut() {
            Some((start, acc)) if *start == b => acc.merge(&s),
            _ => out.push((b, s)),
        }
    }
    out
}

fn assert_same(a: &Summary, b: &Summary) {
    assert_eq!(a.count, b.count);
    for (x, y) in [
        (a.sum, b.sum),
        (a.min, b.min),
        (a.max, b.max),
        (a.mean, b.mean),
        (a.first.1, b.first.1),
        (a.last.1, b.last.1),
        (a.increase, b.increase),
    ] {
        assert_eq!(x.to_bits(), y.to_bits());
    }
    assert_eq!((a.first.0, a.last.0), (b.first.0, b.last.0));
    assert!((a.m2 - b.m2).abs() <= 1e-10 * b.m2.abs(), "m2 {} vs {}", a.m2, b.m2);
    assert_eq!(a.sketch, b.sketch);
}

/// Encoded bytes of `buckets` in blocks of `block`, checking that each block round-trips.
fn columnar_bytes(buckets: &[(i64, Summary)], block: usize) -> usize {
    let mut total = 0;
    for chunk in buckets.chunks(block) {
        let mut out = Vec::new();
        encode_summaries(chunk, &mut out).unwrap();
        let mut back = Vec::new();
        decode_summaries(&out, &mut back).unwrap();
        assert_eq!(back.len(), chunk.len());
        for ((ta, a), (tb, b)) in back.iter().zip(chunk) {
            assert_eq!(ta, tb);
            assert_same(a, b);
        }
        total += out.len();
    }
    total
}

/// Bytes of the per-summary encoding: a count per block, then per bucket its start as a
/// varint delta and [`Summary::encode`].
fn per_summary_bytes(buckets: &[(i64, Summary)], block: usize) -> usize {
    let varint = |v: u64| ((64 - v.leading_zeros()).max(1) as usize).div_ceil(7);
    let mut total = 0;
    for chunk in buckets.chunks(block) {
        total += varint(chunk.len() as u64);
        let mut prev = 0i64;
        for (t, s) in chunk {
            let d = t.wrapping_sub(prev);
            total += varint(((d << 1) ^ (d >> 63)) as u64);
            prev = *t;
            let mut out = Vec::new();
            s.encode(&mut out);
            total += out.len();
        }
    }
    total
}

/// (bytes, buckets, raw samples) of the host mix for one tier, `copies` series per shape.
fn mix(clock: Clock, n: usize, width: i64, block: usize, copies: u64, columnar: bool) -> (f64, f64, f64) {
    let (mut bytes, mut nb, mut samples) = (0.0, 0.0, 0.0);
    for (s, (shape, weight)) in HOST_MIX.iter().enumerate() {
        for c in 0..copies {
            let (ts, v) = raw(*shape, clock, n, 1000 * s as u64 + c);
            let b = buckets(&ts, &v, width);
            let size = if columnar {
                columnar_bytes(&b, block)
            } else {
                per_summary_bytes(&b, block)
            };
            bytes += (*weight * size) as f64;
            nb += (*weight * b.len()) as f64;
            samples += (*weight * n) as f64;
        }
    }
    (bytes, nb, samples)
}

#[test]
fn host_mix_rollups_fit_targets() {
    // Six hours of two series per shape keeps this quick in debug builds.
    for (name, clock, limit) in [("10s", CLOCKS[0].1, 3.0), ("1s", CLOCKS[2].1, 0.5)] {
        let n = (6 * 3_600_000 / clock.interval_ms) as usize;
        let (bytes, _, samples) = mix(clock, n, MINUTE, BLOCK_BUCKETS, 2, true);
        let per_sample = bytes / samples;
        eprintln!("host mix {name}, 1m tier: {per_sample:.3} bytes per raw sample (limit {limit})");
        assert!(
            per_sample <= limit,
            "{name}: {per_sample:.3} bytes per raw sample exceeds {limit}"
        );
    }
}

/// A measurement, not a test: `cargo run -p pulsewire-codec --release --example codec_report`.
#[allow(dead_code)]
pub fn report() {
    let day_ms = 86_400_000;
    for (cname, clock) in [CLOCKS[0], CLOCKS[1], CLOCKS[2], CLOCKS[3]] {
        let n = (day_ms / clock.interval_ms) as usize;
        println!("\n{cname}: one day per series; bytes per bucket / per raw sample");
        print!("{:<18}", "shape");
        for (tier, _) in TIERS {
            print!("{:>22}", format!("{tier} (blocks of 512)"));
        }
        print!("{:>22}", "1m (blocks of 5)");
        println!("{:>22}", "1m per-summary");
        let row = |label: &str, cells: &[(f64, f64, f64)]| {
            print!("{label:<18}");
            for (bytes, nb, samples) in cells {
                print!("{:>22}", format!("{:.1} / {:.3}", bytes / nb, bytes / samples));
            }
            println!();
        };
        for shape in SHAPES {
            if matches!(shape, Shape::StrState | Shape::StrEvents) {
                continue;
            }
            let (ts, v) = raw(shape, clock, n, 7);
            let mut cells = Vec::new();
            for (_, width) in TIERS {
                let b = buckets(&ts, &v, width);
                cells.push((columnar_bytes(&b, BLOCK_BUCKETS) as f64, b.len() as f64, n as f64));
            }
            let b = buckets(&ts, &v, MINUTE);
            cells.push((columnar_bytes(&b, 5) as f64, b.len() as f64, n as f64));
            cells.push((per_summary_bytes(&b, BLOCK_BUCKETS) as f64, b.len() as f64, n as f64));
            row(&format!("{shape:?}"), &cells);
        }
        let mut cells: Vec<(f64, f64, f64)> = TIERS
            .iter()
            .map(|(_, width)| mix(clock, n, *width, BLOCK_BUCKETS, 1, true))
            .collect();
        cells.push(mix(clock, n, MINUTE, 5, 1, true));
        cells.push(mix(clock, n, MINUTE, BLOCK_BUCKETS, 1, false));
        row("host mix", &cells);
    }
    speed();
}

/// Encode and decode time per bucket, printed by `report`.
/// A measurement, not a test: `cargo run -p pulsewire-codec --release --example codec_report`.
#[allow(dead_code)]
pub fn speed() {
    let day_ms = 86_400_000;
    println!("\nspeed: one day of each host-mix shape, 1m buckets, best of 5 (ns per bucket)");
    for (cname, clock) in [CLOCKS[0], CLOCKS[2]] {
        let n = (day_ms / clock.interval_ms) as usize;
        let all: Vec<Vec<(i64, Summary)>> = HOST_MIX
            .iter()
            .enumerate()
            .map(|(s, (shape, _))| {
                let (ts, v) = raw(*shape, clock, n, s as u64);
                buckets(&ts, &v, MINUTE)
            })
            .collect();
        let nbuckets: usize = all.iter().map(Vec::len).sum();
        let per = |t: f64| t * 1e9 / nbuckets as f64;
        for block in [BLOCK_BUCKETS, 5] {
            let encode_all = || -> Vec<Vec<u8>> {
                all.iter()
                    .flat_map(|b| b.chunks(block))
                    .map(|c| {
                        let mut out = Vec::new();
                        encode_summaries(c, &mut out).unwrap();
                        out
                    })
                    .collect()
            };
            let blocks = encode_all();
            let (mut enc, mut dec) = (f64::MAX, f64::MAX);
            for _ in 0..5 {
                let t0 = Instant::now();
                encode_all();
                enc = enc.min(t0.elapsed().as_secs_f64());
                let t0 = Instant::now();
                let mut back = Vec::new();
                for b in &blocks {
                    back.clear();
                    decode_summaries(b, &mut back).unwrap();
                }
                dec = dec.min(t0.elapsed().as_secs_f64());
            }
            println!(
                "{cname}, blocks of {block}: encode {:.0}, decode {:.0}",
                per(enc),
                per(dec)
            );
        }
        let (mut enc, mut dec) = (f64::MAX, f64::MAX);
        for _ in 0..5 {
            let t0 = Instant::now();
            let old: Vec<Vec<u8>> = all
                .iter()
                .map(|b| {
                    let mut out = Vec::new();
                    b.iter().for_each(|(_, s)| s.encode(&mut out));
                    out
                })
                .collect();
            enc = enc.min(t0.elapsed().as_secs_f64());
            let t0 = Instant::now();
            for (b, bytes) in all.iter().zip(&old) {
                let mut at = 0;
                for _ in b {
                    let (_, used) = Summary::decode(&bytes[at..]).unwrap();
                    at += used;
                }
            }
            dec = dec.min(t0.elapsed().as_secs_f64());
        }
        println!(
            "{cname}, per-summary encoding: encode {:.0}, decode {:.0}",
            per(enc),
            per(dec)
        );
    }
}
