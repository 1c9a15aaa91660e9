//! Synthetic host metrics shared by the integration tests: deterministic generators for the
//! series shapes a host agent scrapes (gauges with 1-2 decimals or full float noise, memory
//! bytes, counters of bytes, CPU seconds and rare errors, constants) on a 10 s or 1 s grid with
//! or without scrape jitter. Deterministic so size regressions reproduce exactly.
#![allow(dead_code)]

use pulsewire_codec::Values;

/// splitmix64: tiny, fast and good enough for test data.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u = self.f64().max(1e-300);
        let v = self.f64();
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }

    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next_u64() % ((hi - lo + 1) as u64)) as i64
    }
}

/// How timestamps are spaced.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    pub interval_ms: i64,
    /// Each timestamp lands uniformly within ±jitter of its grid point (it does not accumulate,
    /// as with a scheduler that aims at a fixed grid).
    pub jitter_ms: i64,
}

pub const CLOCKS: [(&str, Clock); 4] = [
    (
        "10s",
        Clock {
            interval_ms: 10_000,
            jitter_ms: 0,
        },
    ),
    (
        "10s±2ms",
        Clock {
            interval_ms: 10_000,
            jitter_ms: 2,
        },
    ),
    (
        "1s",
        Clock {
            interval_ms: 1_000,
            jitter_ms: 0,
        },
    ),
    (
        "1s±2ms",
        Clock {
            interval_ms: 1_000,
            jitter_ms: 2,
        },
    ),
];

pub fn timestamps(clock: Clock, n: usize, rng: &mut Rng) -> Vec<i64> {
    let start = 1_700_000_000_000i64;
    (0..n as i64)
        .map(|i| {
            start
                + i * clock.interval_ms
                + if clock.jitter_ms > 0 {
                    rng.range(-clock.jitter_ms, clock.jitter_ms)
                } else {
                    0
                }
        })
        .collect()
}

fn round_to(v: f64, decimals: i32) -> f64 {
    let p = 10f64.powi(decimals);
    (v * p).round() / p
}

/// The series shapes measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// CPU/utilisation percentage, mean-reverting noise, 2 decimals.
    Percent2dp,
    /// Same with 1 decimal (load averages, temperatures).
    Percent1dp,
    /// A gauge computed in floating point (rates, EWMA): every bit noisy.
    FloatNoise,
    /// A duration measured in nanoseconds and reported in seconds (`ns / 1e9`, as Go's
    /// `Duration::Seconds` does for scrape and GC durations): 9 decimals, heavy-tailed.
    Duration9dp,
    /// Memory/filesystem bytes: integer-valued floats moving by whole pages, often unchanged.
    MemBytes,
    /// Network/disk byte counter: steady rate with noise.
    CounterBytes,
    /// CPU seconds counter: 2 decimals (USER_HZ ticks), steady rate.
    CounterCpuSeconds,
    /// Error/drop counter: increments rarely.
    CounterSparse,
    /// Constant gauge (memory total, filesystem size, `up`).
    Constant,
    /// Integer gauge (process count), Int kind.
    IntGauge,
    /// Health flag, Bool kind: flips rarely.
    BoolFlag,
    /// State name, Str kind: a handful of values, changes rarely.
    StrState,
    /// Event text, Str kind: a log-like line per point, mostly distinct.
    StrEvents,
}

pub const SHAPES: [Shape; 13] = [
    Shape::Percent2dp,
    Shape::Percent1dp,
    Shape::FloatNoise,
    Shape::Duration9dp,
    Shape::MemBytes,
    Shape::CounterBytes,
    Shape::CounterCpuSeconds,
    Shape::CounterSparse,
    Shape::Constant,
    Shape::IntGauge,
    Shape::BoolFlag,
    Shape::StrState,
    Shape::StrEvents,
];

/// Series per 100 of a host agent's output, after a census of node_exporter on a small Linux
/// host (~700 series): most are constants or counters that never move (unused modes, error and
/// drop counters, sizes, info gauges), then steady counters (CPU seconds, netstat, interrupts),
/// a few busy byte counters, memory and filesystem bytes, decimal gauges (load, temperatures),
/// durations in seconds from nanoseconds, and floats computed in floating point.
pub const HOST_MIX: [(Shape, usize); 9] = [
    (Shape::Constant, 40),
    (Shape::CounterSparse, 14),
    (Shape::CounterCpuSeconds, 17),
    (Shape::CounterBytes, 4),
    (Shape::MemBytes, 6),
    (Shape::Percent2dp, 4),
    (Shape::Percent1dp, 3),
    (Shape::Duration9dp, 6),
    (Shape::FloatNoise, 6),
];

/// `n` values of `shape` sampled every `interval_ms`.
pub fn values(shape: Shape, n: usize, interval_ms: i64, rng: &mut Rng) -> Values {
    let secs = interval_ms as f64 / 1000.0;
    match shape {
        Shape::Percent2dp | Shape::Percent1dp | Shape::FloatNoise => {
            let decimals = match shape {
                Shape::Percent2dp => Some(2),
                Shape::Percent1dp => Some(1),
                _ => None,
            };
            let mean = 20.0 + 40.0 * rng.f64();
            let mut x = mean;
            Values::Float(
                (0..n)
                    .map(|_| {
                        x = mean + 0.9 * (x - mean) + 2.0 * rng.normal();
                        let v = x.clamp(0.0, 100.0);
                        decimals.map_or(v, |d| round_to(v, d))
                    })
                    .collect(),
            )
        }
        Shape::Duration9dp => {
            let median_ns = 2e5 + 2e6 * rng.f64();
            Values::Float(
                (0..n)
                    .map(|_| {
                        let ns = (median_ns * (0.4 * rng.normal()).exp()).round();
                        ns / 1e9
                    })
                    .collect(),
            )
        }
        Shape::MemBytes => {
            let mut pages: i64 = 2_000_000 + rng.range(0, 1_000_000);
            Values::Float(
                (0..n)
                    .map(|_| {
                        if rng.f64() < 0.4 {
                            pages += rng.range(-300, 300);
                        }
                        (pages * 4096) as f64
                    })
                    .collect(),
            )
        }
        Shape::CounterBytes => {
            let rate = 1e4 + 1e5 * rng.f64();
            let mut c = rng.range(0, 1 << 40) as f64;
            Values::Float(
                (0..n)
                    .map(|_| {
                        c += (rate * secs * (1.0 + 0.3 * rng.normal())).max(0.0).round();
                        c
                    })
                    .collect(),
            )
        }
        Shape::CounterCpuSeconds => {
            let util = 0.05 + 0.5 * rng.f64();
            let mut ticks = rng.range(0, 1 << 30);
            Values::Float(
                (0..n)
                    .map(|_| {
                        ticks += (100.0 * secs * util * (1.0 + 0.2 * rng.normal())).max(0.0).round() as i64;
                        ticks as f64 / 100.0
                    })
                    .collect(),
            )
        }
        Shape::CounterSparse => {
            let mut c = rng.range(0, 50) as f64;
            let p = 0.002 * secs.min(10.0);
            Values::Float(
                (0..n)
                    .map(|_| {
                        if rng.f64() < p {
                            c += 1.0;
                        }
                        c
                    })
                    .collect(),
            )
        }
        Shape::Constant => {
            let v = (rng.range(1, 1 << 20) * 4096) as f64;
            Values::Float(vec![v; n])
        }
        Shape::IntGauge => {
            let mut procs = rng.range(150, 400);
            Values::Int(
                (0..n)
                    .map(|_| {
                        if rng.f64() < 0.3 {
                            procs += rng.range(-3, 3);
                        }
                        procs
                    })
                    .collect(),
            )
        }
        Shape::BoolFlag => {
            let mut up = true;
            Values::Bool(
                (0..n)
                    .map(|_| {
                        if rng.f64() < 0.001 {
                            up = !up;
                        }
                        up
                    })
                    .collect(),
            )
        }
        Shape::StrEvents => {
            const PATHS: [&str; 5] = [
                "/api/v1/items",
                "/api/v1/users",
                "/healthz",
                "/api/v1/orders",
                "/metrics",
            ];
            Values::Str(
                (0..n)
                    .map(|_| {
                        let path = PATHS[rng.range(0, 4) as usize];
                        let status = if rng.f64() < 0.95 { 200 } else { 503 };
                        format!("GET {path}/{} {status} {}ms", rng.range(1, 99_999), rng.range(1, 900))
                    })
                    .collect(),
            )
        }
        Shape::StrState => {
            const STATES: [&str; 4] = ["running", "degraded", "recovering", "stopped"];
            let mut s = 0usize;
            Values::Str(
                (0..n)
                    .map(|_| {
                        if rng.f64() < 0.002 {
                            s = (s + 1) % STATES.len();
                        }
                        STATES[s].to_owned()
                    })
                    .collect(),
            )
        }
    }
}

/// Values `lo..hi` of `values`.
pub fn slice(values: &Values, lo: usize, hi: usize) -> Values {
    match values {
        Values::Float(v) => Values::Float(v[lo..hi].to_vec()),
        Values::Int(v) => Values::Int(v[lo..hi].to_vec()),
        Values::UInt(v) => Values::UInt(v[lo..hi].to_vec()),
        Values::Bool(v) => Values::Bool(v[lo..hi].to_vec()),
        Values::Str(v) => Values::Str(v[lo..hi].to_vec()),
    }
}
