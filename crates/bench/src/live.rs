//! `bench live`: ingest-to-subscriber latency. One WebSocket client subscribes to
//! `metrics:<probe measurement>`; background writers push `--background` points per second of
//! another measurement through `/write`; a probe writes one point every `--probe-every` and the
//! time from sending its write to receiving it on the WebSocket is recorded.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures_util::{SinkExt as _, StreamExt as _};
use parking_lot::Mutex;
use tokio_tungstenite::tungstenite::Message;

use crate::stats::{LatencySummary, latency_histogram};

/// Arguments of the latency benchmarks, `bench live` and `bench alert`.
#[derive(Debug, Clone, clap::Args)]
pub struct LiveArgs {
    /// Server address (host:port).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: String,
    /// Background points per second (one field each) written to another measurement.
    #[arg(long, default_value_t = 100_000)]
    pub background: usize,
    /// Lines per background request.
    #[arg(long, default_value_t = 5000)]
    pub batch: usize,
    /// Interval between probe points, in milliseconds.
    #[arg(long, default_value_t = 10)]
    pub probe_every: u64,
    /// Seconds measured.
    #[arg(long, default_value_t = 30)]
    pub duration: u64,
}

pub async fn run(args: LiveArgs) -> anyhow::Result<()> {
    let base = format!("http://{}", args.addr);
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", args.addr))
        .await
        .context("connect")?;
    ws.send(Message::text(
        // The background measurement too, so its points go through the same publication path
        // (a measurement nobody watches is not published at all).
        r#"{"type":"subscribe","id":1,"channels":["metrics:liveprobe","metrics:livebg"]}"#,
    ))
    .await?;
    let sent: Arc<Mutex<HashMap<u64, Instant>>> = Arc::default();
    let hist = Arc::new(Mutex::new(latency_histogram()));
    let received = {
        let (sent, hist) = (sent.clone(), hist.clone());
        tokio::spawn(async move {
            let mut n = 0u64;
            while let Some(Ok(msg)) = ws.next().await {
                let Message::Text(text) = msg else { continue };
                // Only the probe channel's frames are decoded: the background's 100,000 points/s
                // still travel the same socket, but decoding them took this one-thread client
                // about half a core on a 2-core machine and queued the probes behind it.
                if !text.contains("liveprobe") {
                    continue;
                }
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
                    continue;
                };
                let Some(points) = v["data"]["points"].as_array() else {
                    continue;
                };
                let now = Instant::now();
                for p in points {
                    let Some(seq) = p["fields"]["seq"].as_u64() else {
                        continue;
                    };
                    if let Some(at) = sent.lock().remove(&seq) {
                        let _ = hist.lock().record(now.duration_since(at).as_micros().max(1) as u64);
                        n += 1;
                    }
                }
            }
            n
        })
    };
    let http = reqwest::Client::new();
    let stop = Instant::now() + Duration::from_secs(args.duration);
    let background = spawn_background(http.clone(), base.clone(), args.background, args.batch, stop, "livebg");
    // Let the subscription settle before probing.
    let probes = probe(&http, &base, stop, args.probe_every, &sent, |n| {
        format!("liveprobe,src=bench seq={n}u")
    })
    .await?;
    let failures = background.await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    received.abort();
    let lost = sent.lock().len();
    let lat = LatencySummary::from_us(&hist.lock());
    println!(
        "live                {} background points/s in batches of {}, probe every {} ms for {} s",
        args.background, args.batch, args.probe_every, args.duration
    );
    println!("write-to-receive    {}", lat.line());
    println!("probes              {probes} sent, {lost} not received, {failures} background writes failed");
    println!(
        "{}",
        serde_json::json!({"bench":"live","background_points_per_s":args.background,"probes":probes,"lost":lost,
            "background_failures":failures,"latency_ms":lat})
    );
    Ok(())
}

/// Background load for the latency benchmarks: requests of `batch` lines of `measurement`
/// (1,000 hosts, one integer field), paced to `per_sec` points per second until `stop`; resolves
/// to the number of failed requests.
pub(crate) fn spawn_background(
    http: reqwest::Client,
    base: String,
    per_sec: usize,
    batch: usize,
    stop: Instant,
    measurement: &'static str,
) -> tokio::task::JoinHandle<u64> {
    let per_sec = per_sec.max(1);
    let batch = batch.max(1);
    tokio::spawn(async move {
        let interval = Duration::from_secs_f64(batch as f64 / per_sec as f64);
        let mut tick = tokio::time::interval(interval);
        let mut round = 0u64;
        let mut failures = 0u64;
        while Instant::now() < stop {
            tick.tick().await;
            let ts = crate::stats::now_us() * 1000;
            let mut body = String::with_capacity(batch * 40);
            for i in 0..batch {
                body.push_str(&format!(
                    "{measurement},host=h{} v={}i {}\n",
                    i % 1000,
                    round,
                    ts + i as u64
                ));
            }
            round += 1;
            match http.post(format!("{base}/write?db=live")).body(body).send().await {
                Ok(r) if r.status().as_u16() == 204 => {}
                _ => failures += 1,
            }
        }
        failures
    })
}

/// The probes of the latency benchmarks: after the subscription settles, one write of
/// `line(n)` every `every_ms` until `stop`, each noted in `sent` with its send time (the
/// receiving side removes what arrives); returns how many were sent.
pub(crate) async fn probe(
    http: &reqwest::Client,
    base: &str,
    stop: Instant,
    every_ms: u64,
    sent: &Mutex<HashMap<u64, Instant>>,
    line: impl Fn(u64) -> String,
) -> anyhow::Result<u64> {
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut probes = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(every_ms.max(1)));
    while Instant::now() < stop {
        tick.tick().await;
        probes += 1;
        sent.lock().insert(probes, Instant::now());
        let resp = http
            .post(format!("{base}/write?db=live"))
            .body(line(probes))
            .send()
            .await?;
        if resp.status().as_u16() != 204 {
            bail!("probe write failed: {}", resp.status());
        }
    }
    Ok(probes)
}
