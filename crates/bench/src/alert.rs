//! `bench alert`: point-to-alert latency. Creates a threshold rule with `for = 0s` over the API,
//! subscribes one WebSocket client to `alerts`, writes background load through `/write`, and
//! every `--probe-every` writes one point over the threshold for a new series (a new alert
//! instance each time); records the time from sending that write to receiving its `firing`
//! event. The rule is deleted at the end.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures_util::{SinkExt as _, StreamExt as _};
use parking_lot::Mutex;
use tokio_tungstenite::tungstenite::Message;

use crate::stats::{LatencySummary, latency_histogram};

/// `bench alert` takes the same arguments as `bench live`.
pub type AlertArgs = crate::live::LiveArgs;

const RULE: &str = "bench_alert_latency";

pub async fn run(args: AlertArgs) -> anyhow::Result<()> {
    let base = format!("http://{}", args.addr);
    let http = reqwest::Client::new();
    let rule = serde_json::json!({
        "name": RULE, "kind": "threshold", "expr": "max(alertprobe.v)", "window": "1m",
        "op": ">", "threshold": 100.0, "for": "0s", "severity": "warning"
    });
    let _ = http.delete(format!("{base}/api/v1/rules/{RULE}")).send().await;
    let resp = http.post(format!("{base}/api/v1/rules")).json(&rule).send().await?;
    if resp.status().as_u16() != 201 {
        bail!(
            "creating the rule failed: {} {}",
            resp.status(),
            resp.text().await.unwrap_or_default()
        );
    }
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", args.addr))
        .await
        .context("connect")?;
    ws.send(Message::text(r#"{"type":"subscribe","id":1,"channels":["alerts"]}"#))
        .await?;
    let sent: Arc<Mutex<HashMap<u64, Instant>>> = Arc::default();
    let hist = Arc::new(Mutex::new(latency_histogram()));
    let received = {
        let (sent, hist) = (sent.clone(), hist.clone());
        tokio::spawn(async move {
            while let Some(Ok(msg)) = ws.next().await {
                let Message::Text(text) = msg else { continue };
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
                    continue;
                };
                let a = &v["data"];
                if a["rule"] != RULE || a["state"] != "firing" {
                    continue;
                }
                let now = Instant::now();
                let Some(seq) = a["labels"]["probe"].as_str().and_then(|p| p.parse::<u64>().ok()) else {
                    continue;
                };
                if let Some(at) = sent.lock().remove(&seq) {
                    let _ = hist.lock().record(now.duration_since(at).as_micros().max(1) as u64);
                }
            }
        })
    };
    let stop = Instant::now() + Duration::from_secs(args.duration);
    let background =
        crate::live::spawn_background(http.clone(), base.clone(), args.background, args.batch, stop, "alertbg");
    let probes = crate::live::probe(&http, &base, stop, args.probe_every, &sent, |n| {
        format!("alertprobe,probe={n} v=1000")
    })
    .await?;
    let failures = background.await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    received.abort();
    let _ = http.delete(format!("{base}/api/v1/rules/{RULE}")).send().await;
    let lost = sent.lock().len();
    let lat = LatencySummary::from_us(&hist.lock());
    println!(
        "alert               {} background points/s in batches of {}, a new alert every {} ms for {} s",
        args.background, args.batch, args.probe_every, args.duration
    );
    println!("write-to-alert      {}", lat.line());
    println!("probes              {probes} sent, {lost} without an alert, {failures} background writes failed");
    println!(
        "{}",
        serde_json::json!({"bench":"alert","background_points_per_s":args.background,"probes":probes,"lost":lost,
            "background_failures":failures,"latency_ms":lat})
    );
    Ok(())
}
