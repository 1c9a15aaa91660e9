//! Helpers shared by the tests that run the real binary as a child process.

use std::time::{Duration, Instant};

/// Polls `GET {base}/ready` until it answers 200; past `deadline` fails with `context` and the
/// server's log (`log()`), so a start that hangs says why.
pub async fn wait_ready(
    http: &reqwest::Client,
    base: &str,
    deadline: Instant,
    context: &str,
    log: impl Fn() -> String,
) {
    loop {
        if let Ok(resp) = http.get(format!("{base}/ready")).send().await
            && resp.status().as_u16() == 200
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{context}: /ready did not answer 200 in time; log:\n{}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
