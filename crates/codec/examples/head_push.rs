//! Cost of [`HeadChunk::push`] as the store pays it: 10M samples appended across 100k head
//! chunks in round-robin order (one point per series per scrape, as line-protocol ingest
//! delivers them), so every push touches a chunk that has left the CPU caches since its last
//! point. Reports ns per sample and the chunks' heap.
//!
//! `cargo run -p pulsewire-codec --release --example head_push [series] [samples] [rounds]`
//!
//! The series follow a host mix (constants, steady counters, 2-decimal gauges, full-noise
//! floats) on a 10 s grid with ±2 ms of jitter. Each scrape's points are generated into a batch
//! first and only the pushes are timed, so the figure is the push's own cost.

use std::time::Instant;

use pulsewire_codec::{HeadChunk, Kind, ValueRef};

/// splitmix64, enough for test data.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

const TABLE: usize = 4096;

/// Per-series parameters; the value of step `i` is computed from them and the shared tables.
#[derive(Clone, Copy)]
struct Series {
    shape: u8,
    base: f64,
    rate: f64,
    phase: usize,
}

struct Tables {
    percent: Vec<f64>,
    noise: Vec<f64>,
    jitter: Vec<i64>,
}

impl Tables {
    fn new(rng: &mut Rng) -> Self {
        let mut x = 50.0f64;
        let percent = (0..TABLE)
            .map(|_| {
                x = (50.0 + 0.9 * (x - 50.0) + 4.0 * (rng.f64() - 0.5)).clamp(0.0, 100.0);
                (x * 100.0).round() / 100.0
            })
            .collect();
        let noise = (0..TABLE).map(|_| 20.0 + 40.0 * rng.f64()).collect();
        let jitter = (0..TABLE).map(|_| (rng.next_u64() % 5) as i64 - 2).collect();
        Self { percent, noise, jitter }
    }

    #[inline]
    fn value(&self, s: &Series, i: usize) -> f64 {
        let at = (i + s.phase) % TABLE;
        match s.shape {
            // Constants: 40% of a host's series.
            0..=3 => s.base,
            // Steady counters with integer noise.
            4..=5 => s.base + (i as f64) * s.rate + self.jitter.get(at).copied().unwrap_or(0) as f64,
            // 2-decimal gauges.
            6..=7 => self.percent.get(at).copied().unwrap_or(0.0),
            // Floats computed in floating point: every bit noisy.
            _ => self.noise.get(at).copied().unwrap_or(0.0),
        }
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let series: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let samples: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000_000);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let steps = samples / series;

    let mut rng = Rng(7);
    let tables = Tables::new(&mut rng);
    let params: Vec<Series> = (0..series)
        .map(|_| Series {
            shape: (rng.next_u64() % 10) as u8,
            base: ((rng.next_u64() % (1 << 20)) * 4096) as f64,
            rate: (rng.next_u64() % 5000) as f64,
            phase: (rng.next_u64() as usize) % TABLE,
        })
        .collect();
    let start = 1_700_000_000_000i64;
    let ts_of =
        |i: usize, s: usize| start + i as i64 * 10_000 + tables.jitter.get((i + s) % TABLE).copied().unwrap_or(0);

    // Each scrape's points are generated into a batch first (as the parser hands the store a
    // batch), and only pushing the batch is timed. Best and median of a few rounds, each on
    // fresh chunks, since the noise of a shared machine only ever adds time.
    let mut times = Vec::new();
    let mut chunks = Vec::new();
    let mut batch: Vec<(i64, f64)> = Vec::with_capacity(series);
    for _ in 0..rounds {
        drop(std::mem::take(&mut chunks));
        chunks = (0..series).map(|_| HeadChunk::new(Kind::Float)).collect::<Vec<_>>();
        let mut elapsed = 0.0;
        for i in 0..steps {
            batch.clear();
            batch.extend(
                params
                    .iter()
                    .enumerate()
                    .map(|(s, p)| (ts_of(i, s), tables.value(p, i))),
            );
            let t0 = Instant::now();
            for (&(t, v), chunk) in batch.iter().zip(chunks.iter_mut()) {
                if chunk.push(t, ValueRef::Float(v)).is_err() {
                    eprintln!("push refused");
                    return;
                }
            }
            elapsed += t0.elapsed().as_secs_f64();
        }
        times.push(elapsed);
    }
    times.sort_by(f64::total_cmp);
    let best = times.first().copied().unwrap_or(0.0);
    let median = times.get(times.len() / 2).copied().unwrap_or(0.0);
    let n = (steps * series) as f64;
    let heap: usize = chunks.iter().map(HeadChunk::heap_bytes).sum();
    let encoded: usize = chunks.iter().map(HeadChunk::encoded_bytes).sum();
    println!(
        "{series} series x {steps} points: {:.1} ns/sample, best of {rounds} rounds (median {:.1})",
        best * 1e9 / n,
        median * 1e9 / n,
    );
    println!(
        "heap {:.0} B/series ({:.0} B encoded, {:.0}% slack), struct {} B",
        heap as f64 / series as f64,
        encoded as f64 / series as f64,
        100.0 * (heap as f64 / encoded.max(1) as f64 - 1.0),
        std::mem::size_of::<HeadChunk>()
    );
}
