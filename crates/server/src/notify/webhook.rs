//! A webhook: its bounded, ordered queue and the one task that drains it. Notifications go out
//! one at a time in the order they were queued; one that keeps failing holds the queue back
//! until it is delivered or given up on (then it goes to the dead-letter log), so a receiver
//! never sees them out of order.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::dead_letter::{DeadLetter, DeadLetterLog};
use super::payload::{now_ms, rfc3339};
use super::retry::{Outcome, RetryPolicy, post_with_retries};
use super::{Error, Result};
use crate::WebhookConfig;

/// The header receivers can drop duplicates by: the same for every attempt and every replay of
/// one notification.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// One notification as a webhook sends it.
pub(crate) struct Job {
    /// The tenant of the notification (its dead letter is listed to that tenant only).
    pub tenant: String,
    pub key: String,
    pub body: Bytes,
}

/// Counters of one webhook.
#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    retried: AtomicU64,
    failed: AtomicU64,
    dead_lettered: AtomicU64,
    replayed: AtomicU64,
}

/// What one webhook has done since start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WebhookStats {
    pub name: String,
    /// Notifications delivered (answered 2xx).
    pub sent: u64,
    /// Attempts repeated after a failure that may pass (connection, timeout, 429, 5xx).
    pub retried: u64,
    /// Notifications given up on: retries exhausted, or refused with a 4xx other than 429.
    pub failed: u64,
    /// Notifications written to the dead-letter log: the failed ones, those that found the
    /// queue full, and those still queued when shutdown's deadline passed.
    pub dead_lettered: u64,
    /// Dead letters queued again by a replay.
    pub replayed: u64,
    /// Notifications waiting in the queue now.
    pub queued: u64,
}

pub(crate) struct Webhook {
    pub name: String,
    url: String,
    client: reqwest::Client,
    headers: HeaderMap,
    policy: RetryPolicy,
    queue: mpsc::Sender<Job>,
    counters: Counters,
}

impl Webhook {
    pub fn new(cfg: &WebhookConfig, queue_size: usize) -> Result<(Arc<Webhook>, mpsc::Receiver<Job>)> {
        let config_error = |what: String| Error::Config(format!("webhook {:?}: {what}", cfg.name));
        let client = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .user_agent(concat!("Pulsewire/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| config_error(format!("cannot build its HTTP client: {e}")))?;
        let mut headers = HeaderMap::new();
        for (name, value) in &cfg.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| config_error(format!("{name:?} is not a valid header name")))?;
            let value = HeaderValue::from_str(value)
                .map_err(|_| config_error(format!("header {name} has an invalid value")))?;
            headers.insert(name, value);
        }
        let (queue, rx) = mpsc::channel(queue_size.max(1));
        let hook = Webhook {
            name: cfg.name.clone(),
            url: cfg.url.clone(),
            client,
            headers,
            policy: RetryPolicy {
                max_retries: cfg.max_retries,
                initial_backoff: cfg.initial_backoff,
                max_backoff: cfg.max_backoff,
            },
            queue,
            counters: Counters::default(),
        };
        Ok((Arc::new(hook), rx))
    }

    /// Queues `job` without waiting; gives it back if the queue is full or the sender stopped.
    pub fn try_enqueue(&self, job: Job) -> std::result::Result<(), Job> {
        self.queue.try_send(job).map_err(|e| match e {
            mpsc::error::TrySendError::Full(j) | mpsc::error::TrySendError::Closed(j) => j,
        })
    }

    pub fn requeue(&self, d: &DeadLetter) -> bool {
        let job = Job {
            tenant: d.tenant.clone(),
            key: d.idempotency_key.clone(),
            body: Bytes::from(d.payload.get().to_owned()),
        };
        let queued = self.try_enqueue(job).is_ok();
        if queued {
            self.counters.replayed.fetch_add(1, Ordering::Relaxed);
        }
        queued
    }

    pub fn stats(&self) -> WebhookStats {
        let c = &self.counters;
        WebhookStats {
            name: self.name.clone(),
            sent: c.sent.load(Ordering::Relaxed),
            retried: c.retried.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            dead_lettered: c.dead_lettered.load(Ordering::Relaxed),
            replayed: c.replayed.load(Ordering::Relaxed),
            queued: (self.queue.max_capacity() - self.queue.capacity()) as u64,
        }
    }

    /// Writes `jobs` (each with its attempts and last error) to the dead-letter log. Blocking.
    pub fn dead_letter(&self, log: &DeadLetterLog, jobs: Vec<(Job, u32, String)>) {
        if jobs.is_empty() {
            return;
        }
        let at = rfc3339(now_ms());
        let mut entries = Vec::with_capacity(jobs.len());
        for (job, attempts, last_error) in jobs {
            let payload = match String::from_utf8(job.body.to_vec())
                .map_err(|e| e.to_string())
                .and_then(|s| serde_json::value::RawValue::from_string(s).map_err(|e| e.to_string()))
            {
                Ok(p) => p,
                Err(e) => {
                    // Bodies are made from JSON by this module; this is a bug, said loudly.
                    tracing::error!(webhook = %self.name, key = %job.key, "notification body is not JSON ({e}); dropped");
                    continue;
                }
            };
            entries.push(DeadLetter {
                tenant: job.tenant,
                webhook: self.name.clone(),
                idempotency_key: job.key,
                payload,
                attempts,
                last_error,
                at: at.clone(),
            });
        }
        match log.append(&entries) {
            Ok(()) => {
                self.counters
                    .dead_lettered
                    .fetch_add(entries.len() as u64, Ordering::Relaxed);
            }
            Err(e) => {
                tracing::error!(webhook = %self.name, lost = entries.len(), "cannot write the dead-letter log, notifications lost: {e}")
            }
        }
    }

    /// Sends what is queued, in order, until `closing` and the queue is empty; when `abort`
    /// comes first, what is in flight and still queued goes to the dead-letter log.
    pub async fn run(
        self: Arc<Self>,
        mut rx: mpsc::Receiver<Job>,
        log: Arc<DeadLetterLog>,
        closing: CancellationToken,
        abort: CancellationToken,
    ) {
        loop {
            let job = tokio::select! {
                j = rx.recv() => match j {
                    Some(j) => j,
                    None => return,
                },
                _ = closing.cancelled() => match rx.try_recv() {
                    Ok(j) => j,
                    Err(_) => return,
                },
            };
            let mut headers = self.headers.clone();
            match HeaderValue::from_str(&job.key) {
                Ok(v) => {
                    headers.insert(IDEMPOTENCY_KEY, v);
                }
                // Keys are made here or read back from the log; a bad one is still sent on.
                Err(_) => tracing::warn!(webhook = %self.name, "idempotency key is not a valid header value"),
            }
            let outcome = post_with_retries(
                &self.client,
                &self.url,
                &headers,
                &job.body,
                self.policy,
                &self.counters.retried,
                &abort,
            )
            .await;
            match outcome {
                Outcome::Delivered { .. } => {
                    self.counters.sent.fetch_add(1, Ordering::Relaxed);
                }
                Outcome::GaveUp { attempts, error, .. } => {
                    self.counters.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(webhook = %self.name, key = %job.key, attempts, %error, "notification not delivered; kept in the dead-letter log");
                    self.spill(&log, vec![(job, attempts, error)]).await;
                }
                Outcome::Aborted { attempts, error } => {
                    rx.close();
                    let mut left = vec![(job, attempts, error)];
                    while let Ok(j) = rx.try_recv() {
                        left.push((j, 0, "shut down before delivery".into()));
                    }
                    tracing::warn!(webhook = %self.name, left = left.len(), "shutdown deadline passed; undelivered notifications kept in the dead-letter log");
                    self.spill(&log, left).await;
                    return;
                }
            }
        }
    }

    async fn spill(self: &Arc<Self>, log: &Arc<DeadLetterLog>, jobs: Vec<(Job, u32, String)>) {
        let (hook, log) = (self.clone(), log.clone());
        if let Err(e) = tokio::task::spawn_blocking(move || hook.dead_letter(&log, jobs)).await {
            tracing::error!(webhook = %self.name, "dead-letter write failed: {e}");
        }
    }
}
