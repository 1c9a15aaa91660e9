//! One POST with retries, as both notifiers do it: exponential backoff with jitter on what may
//! pass (connection errors, timeouts, 429, 5xx), no retry on what will not (other 4xx), and an
//! abort signal so shutdown's deadline can cut a long backoff short.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use rand::Rng as _;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Copy)]
pub(crate) struct RetryPolicy {
    pub max_retries: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl RetryPolicy {
    /// The wait before retry number `retry` (1 for the first): the initial backoff doubled per
    /// retry, capped, then drawn from its upper half so that many notifiers failing together
    /// do not retry together.
    pub fn backoff(&self, retry: u32) -> Duration {
        let factor = 2u32.saturating_pow(retry.saturating_sub(1));
        let full = self.initial_backoff.saturating_mul(factor).min(self.max_backoff);
        let half = full / 2;
        half + full.saturating_sub(half).mul_f64(rand::rng().random_range(0.0..=1.0))
    }
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Delivered {
        attempts: u32,
    },
    /// The last attempt failed; `retryable` tells whether it was a failure that may pass.
    GaveUp {
        attempts: u32,
        error: String,
        retryable: bool,
    },
    /// The abort signal came before delivery.
    Aborted {
        attempts: u32,
        error: String,
    },
}

/// What one failed attempt says about the next.
struct Failure {
    error: String,
    retryable: bool,
    retry_after: Option<Duration>,
}

pub(crate) async fn post_with_retries(
    client: &reqwest::Client,
    url: &str,
    headers: &HeaderMap,
    body: &Bytes,
    policy: RetryPolicy,
    retried: &AtomicU64,
    abort: &CancellationToken,
) -> Outcome {
    let mut attempts = 0;
    loop {
        attempts += 1;
        let attempt = tokio::select! {
            r = attempt(client, url, headers, body) => r,
            _ = abort.cancelled() => {
                return Outcome::Aborted { attempts, error: "shut down before delivery".into() };
            }
        };
        let failure = match attempt {
            Ok(()) => return Outcome::Delivered { attempts },
            Err(f) => f,
        };
        if !failure.retryable || attempts > policy.max_retries {
            return Outcome::GaveUp {
                attempts,
                error: failure.error,
                retryable: failure.retryable,
            };
        }
        tracing::debug!(url, attempts, error = %failure.error, "notification not delivered; retrying");
        let mut wait = policy.backoff(attempts);
        if let Some(after) = failure.retry_after {
            // The receiver knows best when it can take more, up to our own bound.
            wait = wait.max(after.min(policy.max_backoff));
        }
        retried.fetch_add(1, Ordering::Relaxed);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = abort.cancelled() => return Outcome::Aborted { attempts, error: failure.error },
        }
    }
}

async fn attempt(client: &reqwest::Client, url: &str, headers: &HeaderMap, body: &Bytes) -> Result<(), Failure> {
    let resp = client
        .post(url)
        .headers(headers.clone())
        .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
        .body(body.clone())
        .send()
        .await
        .map_err(|e| Failure {
            // Builder errors (a bad URL) will not mend; everything else is the network's.
            retryable: !e.is_builder(),
            error: error_chain(&e),
            retry_after: None,
        })?;
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    let retry_after = resp
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    // A short excerpt of the answer is what tells an operator why a receiver refused.
    let text = resp.text().await.unwrap_or_default();
    let excerpt: String = text.chars().take(200).collect();
    Err(Failure {
        retryable: status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error(),
        error: format!("HTTP {status}: {excerpt}")
            .trim_end()
            .trim_end_matches(':')
            .to_owned(),
        retry_after,
    })
}

/// reqwest's top-level message rarely says what happened ("error sending request"); the
/// sources do ("connection refused", "operation timed out").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_within_jitter_and_caps() {
        let p = RetryPolicy {
            max_retries: 10,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
        };
        for (retry, full_ms) in [
            (1, 100),
            (2, 200),
            (3, 400),
            (4, 800),
            (5, 1000),
            (30, 1000),
            (100, 1000),
        ] {
            for _ in 0..50 {
                let b = p.backoff(retry);
                let full = Duration::from_millis(full_ms);
                assert!(
                    b >= full / 2 && b <= full,
                    "retry {retry}: {b:?} not in [{:?}, {full:?}]",
                    full / 2
                );
            }
        }
    }
}
