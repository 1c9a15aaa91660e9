//! The HTTP publisher of the fan-out scenario: POSTs `{"channel":..,"data":
//! {"t":<µs>,"seq":n,"pad":".."}}` on a fixed schedule (R per second), with a
//! bounded number of requests in flight so a slow server does not slow the
//! schedule (publications that would exceed it are skipped and counted), and
//! counts successes/failures per seq range.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::sync::Semaphore;

use crate::stats::{latency_histogram, now_us};

/// What to publish and when.
pub struct PublishPlan {
    pub url: String,
    pub channel: String,
    pub rate: f64,
    /// Total publications (warm-up + measured).
    pub total: u64,
    /// Publications with `seq < measured_from` are warm-up.
    pub measured_from: u64,
    pub pad: String,
    pub max_inflight: usize,
}

/// Outcome counters (shared with the reporter).
#[derive(Default)]
pub struct PublishStats {
    pub ok_measured: AtomicU64,
    pub ok_warmup: AtomicU64,
    pub failed: AtomicU64,
    /// Publications not sent because `max_inflight` requests were pending.
    pub skipped_measured: AtomicU64,
    pub skipped_warmup: AtomicU64,
    /// HTTP round-trip of successful publishes (µs).
    pub rtt: Mutex<Option<Histogram<u64>>>,
    pub first_error: Mutex<Option<String>>,
}

/// Builds the JSON payload for one publication.
pub fn payload(seq: u64, pad: &str) -> String {
    format!("{{\"t\":{},\"seq\":{seq},\"pad\":\"{pad}\"}}", now_us())
}

/// Runs the schedule to completion (then waits up to the 15 s request timeout
/// for pending requests). `on_measure_start` fires just before the first
/// measured publication is sent. Returns the worst lag of a send behind its
/// slot.
pub async fn run(
    plan: PublishPlan,
    stats: Arc<PublishStats>,
    on_measure_start: impl FnOnce(),
) -> anyhow::Result<Duration> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(plan.max_inflight)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(15))
        // Below Node's 5 s keep-alive timeout, so a pooled connection is not
        // reused just as the server closes it.
        .pool_idle_timeout(Duration::from_secs(3))
        .build()?;
    *stats.rtt.lock().expect("rtt lock") = Some(latency_histogram());
    let sem = Arc::new(Semaphore::new(plan.max_inflight.max(1)));
    let channel_json = serde_json::to_string(&plan.channel)?;
    let start = Instant::now();
    let mut on_measure_start = Some(on_measure_start);
    let mut lag = Duration::ZERO;
    for seq in 0..plan.total {
        let slot = start + Duration::from_secs_f64(seq as f64 / plan.rate);
        tokio::time::sleep_until(slot.into()).await;
        if seq == plan.measured_from
            && let Some(f) = on_measure_start.take()
        {
            f();
        }
        // Never let a slow server stretch the schedule: when the in-flight
        // limit is reached the publication is skipped (and reported).
        let Ok(permit) = sem.clone().try_acquire_owned() else {
            if seq >= plan.measured_from {
                stats.skipped_measured.fetch_add(1, Ordering::Relaxed);
            } else {
                stats.skipped_warmup.fetch_add(1, Ordering::Relaxed);
            }
            continue;
        };
        lag = lag.max(Instant::now().saturating_duration_since(slot));
        let body = format!("{{\"channel\":{channel_json},\"data\":{}}}", payload(seq, &plan.pad));
        let client = client.clone();
        let url = plan.url.clone();
        let stats = stats.clone();
        let measured = seq >= plan.measured_from;
        tokio::spawn(async move {
            let sent = Instant::now();
            let res = client
                .post(&url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await;
            let outcome = match res {
                Ok(resp) if resp.status().is_success() => {
                    let _ = resp.bytes().await;
                    Ok(())
                }
                Ok(resp) => {
                    let status = resp.status();
                    let text = resp.text().await.unwrap_or_default();
                    Err(format!("HTTP {status}: {}", text.chars().take(200).collect::<String>()))
                }
                Err(e) => Err(error_chain(&e)),
            };
            match outcome {
                Ok(()) => {
                    let us = sent.elapsed().as_micros() as u64;
                    if let Some(h) = stats.rtt.lock().expect("rtt lock").as_mut() {
                        h.saturating_record(us);
                    }
                    if measured {
                        stats.ok_measured.fetch_add(1, Ordering::Relaxed);
                    } else {
                        stats.ok_warmup.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(e) => {
                    stats.failed.fetch_add(1, Ordering::Relaxed);
                    let mut first = stats.first_error.lock().expect("error lock");
                    if first.is_none() {
                        *first = Some(e);
                    }
                }
            }
            drop(permit);
        });
    }
    if let Some(f) = on_measure_start.take() {
        f();
    }
    // Wait for the in-flight requests to finish.
    let _all = sem.acquire_many(plan.max_inflight.max(1) as u32).await?;
    Ok(lag)
}

/// `error: cause: cause...` for an error and its sources.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        out.push_str(": ");
        out.push_str(&s.to_string());
        src = s.source();
    }
    out
}
