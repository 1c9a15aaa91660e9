//! `pulsewire demo` end to end: the real binary starts with its synthetic fleet, history is
//! there at once, and within a minute an alert fires and resolves.

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_pulsewire");

async fn get(http: &reqwest::Client, url: &str) -> Value {
    http.get(url).send().await.expect("request").json().await.expect("json")
}

#[tokio::test]
async fn the_demo_fleet_has_history_live_points_and_alerts_that_fire_and_resolve() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .args(["demo", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("PULSEWIRE_COLLECTOR__ENABLED", "false")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some((_, url)) = line.split_once("is serving on ") {
                return url.trim().to_owned();
            }
        }
        panic!("pulsewire demo ended without serving");
    })
    .await
    .expect("pulsewire demo starts within 20 s");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let http = reqwest::Client::new();
    let started = Instant::now();

    // The last hour is there: web-1's CPU has points from about an hour ago.
    let hour_ago = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        - 3_600_000;
    let history = loop {
        let v = get(
            &http,
            &format!(
                "{url}/api/v1/query?q=cpu.usage_active{{host=\"web-1\"}}&from={hour_ago}&to={}&step=5m&agg=avg",
                hour_ago + 1_800_000
            ),
        )
        .await;
        let n = v["series"][0]["points"].as_array().map_or(0, Vec::len);
        if n >= 5 || started.elapsed() > Duration::from_secs(15) {
            break n;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(history >= 5, "history of the last hour: {history} buckets");

    // The configured rules are listed.
    let rules = get(&http, &format!("{url}/api/v1/rules")).await;
    let names: Vec<&str> = rules["rules"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    for want in [
        "high_cpu",
        "memory_high",
        "host_silent",
        "checkout_slow",
        "latency_anomaly",
    ] {
        assert!(names.contains(&want), "{want} in {names:?}");
    }

    // web-2's CPU spike (10 s to 45 s into the run) fires high_cpu, which then resolves.
    let deadline = started + Duration::from_secs(75);
    let mut fired = false;
    loop {
        let v = get(&http, &format!("{url}/api/v1/alerts?rule=high_cpu")).await;
        let alerts = v["alerts"].as_array().cloned().unwrap_or_default();
        let web2 = alerts.iter().find(|a| a["labels"]["host"] == "web-2");
        match web2.and_then(|a| a["state"].as_str()) {
            Some("firing") => {
                fired = true;
                // The summary reads as a person would write it: one decimal, not 93.2871828.
                let summary = web2
                    .and_then(|a| a["annotations"]["summary"].as_str())
                    .unwrap_or_default();
                let figure = summary
                    .strip_prefix("CPU ")
                    .and_then(|s| s.strip_suffix(" % on web-2"))
                    .unwrap_or_else(|| panic!("high_cpu's summary: {summary:?}"));
                let (whole, tenths) = figure.split_once('.').unwrap_or_else(|| panic!("{summary:?}"));
                assert!(
                    whole.parse::<u32>().is_ok() && tenths.len() == 1 && tenths.parse::<u8>().is_ok(),
                    "high_cpu's summary has the value with one decimal: {summary:?}"
                );
            }
            Some("resolved") if fired => break,
            _ => {}
        }
        assert!(
            Instant::now() < deadline,
            "high_cpu on web-2 did not fire and resolve in time (fired: {fired}): {v}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // Anomaly detection scores the fleet too: some points were pushed as anomalies and their
    // scores stored beside the series, where the dashboard draws them.
    let stats = get(&http, &format!("{url}/api/v1/stats")).await;
    assert!(stats["analysis"]["anomalies"].as_u64() > Some(0), "{stats}");
    assert!(stats["analysis"]["scores_stored"].as_u64() > Some(0), "{stats}");
}
