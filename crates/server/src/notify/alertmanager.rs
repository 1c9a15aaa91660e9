//! A Prometheus Alertmanager, fed as Prometheus feeds it: `POST /api/v2/alerts` with what
//! changed as soon as it changes, and every firing alert again each `resend_interval`, because
//! Alertmanager resolves alerts that stop being refreshed. Resolved alerts are sent (with
//! `endsAt`) until one send succeeds.
//!
//! There is no queue to overflow: the task works from the current state, the firing alerts and
//! the latest change of each instance not sent yet, which is bounded by the number of alert
//! instances, and a newer change of an instance replaces an older one that was never sent.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use pulsewire_model::AlertState;
use reqwest::header::HeaderMap;
use serde::Serialize;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::payload::{AmAlert, am_alert, notified, now_ms, rfc3339};
use super::retry::{Outcome, RetryPolicy, post_with_retries};
use super::{Error, Notification, Result};
use crate::AlertmanagerConfig;

/// Firing alerts are valid for this many re-sends; as Prometheus does, so that an
/// Alertmanager resolves them on its own if Pulsewire goes away.
const VALID_FOR_RESENDS: u32 = 4;

/// What one Alertmanager target has done since start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AlertmanagerStats {
    pub url: String,
    /// Batches accepted (2xx).
    pub sent: u64,
    /// Alerts in those batches (re-sends included).
    pub alerts_sent: u64,
    /// Attempts repeated after a failure that may pass.
    pub retried: u64,
    /// Batches given up on; their changes are tried again at the next re-send if the failure
    /// may pass, dropped if Alertmanager refused them (4xx).
    pub failed: u64,
    /// Alerts firing now, as this target knows them.
    pub firing: u64,
}

#[derive(Default)]
struct State {
    firing: BTreeMap<String, AmAlert>,
    /// The latest change per instance not sent yet.
    changed: BTreeMap<String, AmAlert>,
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    alerts_sent: AtomicU64,
    retried: AtomicU64,
    failed: AtomicU64,
}

pub(crate) struct Alertmanager {
    base: String,
    endpoint: String,
    client: reqwest::Client,
    policy: RetryPolicy,
    resend_interval: Duration,
    generator_url: String,
    state: Mutex<State>,
    wake: Notify,
    counters: Counters,
}

impl Alertmanager {
    pub fn new(cfg: &AlertmanagerConfig, generator_url: &str) -> Result<Arc<Self>> {
        let client = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .user_agent(concat!("Pulsewire/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Config(format!("alertmanager {}: cannot build its HTTP client: {e}", cfg.url)))?;
        let base = cfg.url.trim_end_matches('/').to_owned();
        Ok(Arc::new(Self {
            endpoint: format!("{base}/api/v2/alerts"),
            base,
            client,
            policy: RetryPolicy {
                max_retries: cfg.max_retries,
                initial_backoff: cfg.initial_backoff,
                max_backoff: cfg.max_backoff,
            },
            resend_interval: cfg.resend_interval,
            generator_url: generator_url.to_owned(),
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            counters: Counters::default(),
        }))
    }

    /// Takes the notification's firing and resolved alerts into the state and wakes the task.
    pub fn update(&self, n: &Notification) {
        let mut changed = false;
        {
            let mut s = self.state.lock();
            for a in notified(n) {
                let alert = am_alert(a, &self.generator_url);
                if a.state == AlertState::Firing {
                    s.firing.insert(a.id.clone(), alert.clone());
                } else {
                    s.firing.remove(&a.id);
                }
                s.changed.insert(a.id.clone(), alert);
                changed = true;
            }
        }
        if changed {
            self.wake.notify_one();
        }
    }

    pub fn stats(&self) -> AlertmanagerStats {
        let c = &self.counters;
        AlertmanagerStats {
            url: self.base.clone(),
            sent: c.sent.load(Ordering::Relaxed),
            alerts_sent: c.alerts_sent.load(Ordering::Relaxed),
            retried: c.retried.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            firing: self.state.lock().firing.len() as u64,
        }
    }

    /// The changes not sent yet, and with `resend` every other firing alert too.
    fn take(&self, resend: bool) -> Vec<AmAlert> {
        let mut s = self.state.lock();
        let changed = std::mem::take(&mut s.changed);
        let mut out: Vec<AmAlert> = Vec::with_capacity(changed.len() + if resend { s.firing.len() } else { 0 });
        if resend {
            out.extend(
                s.firing
                    .iter()
                    .filter(|(id, _)| !changed.contains_key(*id))
                    .map(|(_, a)| a.clone()),
            );
        }
        out.extend(changed.into_values());
        out
    }

    /// Sends changes as they come and everything firing each `resend_interval`, until
    /// `closing` (then what changed is sent once more) or `abort`.
    pub async fn run(self: Arc<Self>, closing: CancellationToken, abort: CancellationToken) {
        let start = tokio::time::Instant::now() + self.resend_interval;
        let mut tick = tokio::time::interval_at(start, self.resend_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let (batch, last) = tokio::select! {
                _ = self.wake.notified() => (self.take(false), false),
                _ = tick.tick() => (self.take(true), false),
                _ = closing.cancelled() => (self.take(false), true),
            };
            if !batch.is_empty() {
                self.post(batch, &abort).await;
            }
            if last {
                return;
            }
        }
    }

    async fn post(&self, batch: Vec<AmAlert>, abort: &CancellationToken) {
        let valid_until = rfc3339(now_ms().saturating_add(
            i64::try_from((self.resend_interval * VALID_FOR_RESENDS).as_millis()).unwrap_or(i64::MAX / 2),
        ));
        let wire: Vec<AmAlert> = batch
            .iter()
            .map(|a| AmAlert {
                ends_at: Some(a.resolved_at.map_or_else(|| valid_until.clone(), rfc3339)),
                ..a.clone()
            })
            .collect();
        let body = match serde_json::to_vec(&wire) {
            Ok(b) => Bytes::from(b),
            Err(e) => {
                tracing::error!(alertmanager = %self.base, "cannot encode alerts: {e}");
                return;
            }
        };
        let outcome = post_with_retries(
            &self.client,
            &self.endpoint,
            &HeaderMap::new(),
            &body,
            self.policy,
            &self.counters.retried,
            abort,
        )
        .await;
        match outcome {
            Outcome::Delivered { .. } => {
                self.counters.sent.fetch_add(1, Ordering::Relaxed);
                self.counters
                    .alerts_sent
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
            }
            Outcome::GaveUp {
                attempts,
                error,
                retryable,
            } => {
                self.counters.failed.fetch_add(1, Ordering::Relaxed);
                if retryable {
                    tracing::warn!(alertmanager = %self.base, attempts, %error, "alerts not delivered; trying again at the next re-send");
                    let mut s = self.state.lock();
                    for a in batch {
                        // A change made meanwhile is newer; firing alerts are re-sent anyway.
                        if a.resolved_at.is_some() {
                            s.changed.entry(a.id.clone()).or_insert(a);
                        }
                    }
                } else {
                    tracing::error!(alertmanager = %self.base, attempts, %error, "Alertmanager refused the alerts; dropped");
                }
            }
            Outcome::Aborted { error, .. } => {
                self.counters.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(alertmanager = %self.base, %error, "shutdown deadline passed; alerts not sent");
            }
        }
    }
}
