//! CPU cost of scoring one sample, with as many series as the ingest benchmark holds: every
//! round observes one point of each series in id order (as one write of the benchmark does), so
//! each detector's state is cold in the cache when its turn comes, as in the server.
//!
//! `cargo run -p pulsewire-analysis --release --example detect_cost -- [SERIES] [ROUNDS]`
//! (defaults 100,000 and 200) `[DETECTOR]` (default: each). Prints ns per observed sample per
//! detector and its state size.

use std::time::Instant;

use pulsewire_analysis::{Detector, DetectorKind};

fn main() {
    let mut args = std::env::args().skip(1);
    let series: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    // At least 2: the first half of the rounds is warm-up and not timed.
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(200).max(2);
    let only = args.next();
    for name in DetectorKind::NAMES {
        if only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        let kind: DetectorKind = name.parse().unwrap_or_default();
        let factory = kind.factory();
        let mut detectors: Vec<_> = (0..series).map(|_| factory.build()).collect();
        // Host-like values: a random walk per series with two-decimal noise, from a cheap
        // deterministic generator so that runs compare.
        let mut levels: Vec<f64> = (0..series).map(|i| 20.0 + (i % 60) as f64).collect();
        let mut rng = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            (rng >> 11) as f64 / (1u64 << 53) as f64
        };
        let mut sink = 0.0;
        let mut timed = std::time::Duration::ZERO;
        let mut samples = 0u64;
        let mut values = vec![0.0; series];
        for round in 0..rounds {
            for (v, level) in values.iter_mut().zip(&mut levels) {
                *level += next() - 0.5;
                *v = (*level * 100.0).round() / 100.0;
            }
            let ts = round as i64 * 10_000;
            let start = Instant::now();
            for (d, &v) in detectors.iter_mut().zip(&values) {
                sink += d.observe(ts, v).score;
            }
            // The first rounds are warm-up for every detector: time the scored rounds only.
            if round >= rounds / 2 {
                timed += start.elapsed();
                samples += series as u64;
            }
        }
        let state = detectors.first().map_or(0, |d| d.state_bytes());
        println!(
            "{name:>9}: {:>6.1} ns/sample over {series} series ({samples} samples timed), state {state} bytes/series (score sum {sink:.1})",
            timed.as_nanos() as f64 / samples as f64
        );
    }
}
