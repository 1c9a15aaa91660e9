//! Receive-side accounting shared by the connection tasks: a fixed number of
//! mutex-protected shards (each with one HDR latency histogram and counters),
//! so 10,000 connections share 64 histograms instead of owning one each and
//! no single lock is contended. Also the latency summary used in reports.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use hdrhistogram::Histogram;

/// Number of stat shards; connection `i` uses shard `i % SHARDS`.
pub const SHARDS: usize = 64;
/// Highest latency the histograms track (60 s, in microseconds).
const MAX_LATENCY_US: u64 = 60_000_000;

/// New latency histogram in microseconds, 3 significant digits.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds")
}

/// Per-shard counters.
pub struct Shard {
    /// Publish-to-receive latency of measured messages (µs).
    pub hist: Histogram<u64>,
    /// Measured-window messages received.
    pub delivered: u64,
    /// Warm-up (or post-window) messages received.
    pub unmeasured: u64,
    /// Sum of seq jumps (`seq > last + 1`).
    pub gaps: u64,
    /// Messages whose seq was not above the last one seen (reordered/duplicate).
    pub reordered: u64,
    /// Frames carrying at least one stamped message, and their bytes.
    pub frames: u64,
    pub frame_bytes: u64,
    /// Last time (µs since epoch) a measured message arrived.
    pub last_delivery_us: u64,
}

impl Shard {
    fn new() -> Self {
        Shard {
            hist: latency_histogram(),
            delivered: 0,
            unmeasured: 0,
            gaps: 0,
            reordered: 0,
            frames: 0,
            frame_bytes: 0,
            last_delivery_us: 0,
        }
    }
}

/// Shared state of a scenario's connection tasks.
pub struct Shared {
    pub shards: Vec<Mutex<Shard>>,
    /// Connections that completed connect + subscribe.
    pub subscribed: AtomicUsize,
    /// Connections that failed to connect or subscribe.
    pub failed: AtomicUsize,
    /// Subscribed connections that later ended (server close or error).
    pub dropped: AtomicUsize,
    /// First few error messages, for the report.
    pub errors: Mutex<Vec<String>>,
}

impl Shared {
    pub fn new(with_histograms: bool) -> Self {
        let n = if with_histograms { SHARDS } else { 0 };
        Shared {
            shards: (0..n).map(|_| Mutex::new(Shard::new())).collect(),
            subscribed: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            dropped: AtomicUsize::new(0),
            errors: Mutex::new(Vec::new()),
        }
    }

    /// Records an error message (keeps the first 8).
    pub fn error(&self, e: String) {
        let mut errs = self.errors.lock().expect("errors lock");
        if errs.len() < 8 {
            errs.push(e);
        }
    }

    /// Sum of measured deliveries over all shards.
    pub fn delivered(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| s.lock().expect("shard lock").delivered)
            .sum()
    }

    /// Merges all shards into one.
    pub fn merged(&self) -> Shard {
        let mut out = Shard::new();
        for s in &self.shards {
            let s = s.lock().expect("shard lock");
            out.hist.add(&s.hist).expect("same histogram bounds");
            out.delivered += s.delivered;
            out.unmeasured += s.unmeasured;
            out.gaps += s.gaps;
            out.reordered += s.reordered;
            out.frames += s.frames;
            out.frame_bytes += s.frame_bytes;
            out.last_delivery_us = out.last_delivery_us.max(s.last_delivery_us);
        }
        out
    }

    pub fn count(&self, c: &AtomicUsize) -> usize {
        c.load(Ordering::Relaxed)
    }

    /// Accounts for one connection's life: subscribed (or failed) when it opens, dropped when
    /// `serve` returns, with its error recorded.
    pub async fn track<F, Fut>(&self, i: usize, opened: anyhow::Result<crate::session::Ws>, serve: F)
    where
        F: FnOnce(crate::session::Ws) -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<()>>,
    {
        match opened {
            Ok(ws) => {
                self.subscribed.fetch_add(1, Ordering::Relaxed);
                if let Err(e) = serve(ws).await {
                    self.error(format!("conn {i}: {e:#}"));
                }
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                self.error(format!("conn {i}: {e:#}"));
            }
        }
    }

    /// Waits until `n` connections have subscribed or failed, or `deadline` passes.
    pub async fn wait_settled(&self, n: usize, deadline: std::time::Instant) {
        while self.count(&self.subscribed) + self.count(&self.failed) < n && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

/// Latency percentiles in milliseconds.
#[derive(Debug, serde::Serialize)]
pub struct LatencySummary {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl LatencySummary {
    pub fn from_us(h: &Histogram<u64>) -> Self {
        let ms = |us: u64| us as f64 / 1000.0;
        LatencySummary {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
            mean_ms: h.mean() / 1000.0,
        }
    }

    pub fn line(&self) -> String {
        format!(
            "p50 {:.3} ms  p90 {:.3} ms  p99 {:.3} ms  p99.9 {:.3} ms  max {:.3} ms  (mean {:.3} ms, n={})",
            self.p50_ms, self.p90_ms, self.p99_ms, self.p999_ms, self.max_ms, self.mean_ms, self.count
        )
    }
}

/// Microseconds since the UNIX epoch (wall clock, shared with the publisher).
pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}
