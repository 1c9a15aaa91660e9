//! The `fanout` scenario: N WebSocket subscribers on one channel, R HTTP
//! publications per second, publish-to-receive latency, delivery counts,
//! seq gaps, and the CPU/RSS of the generator and (optionally) the server.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;

use crate::CommonArgs;
use crate::procstat::Proc;
use crate::publish::{self, PublishPlan, PublishStats};
use crate::scan::for_each_stamp;
use crate::session::{self, Target, keepalive_reply};
use crate::stats::{LatencySummary, SHARDS, Shared, now_us};

/// Arguments of `bench fanout`.
#[derive(Debug, Clone, clap::Args)]
pub struct FanoutArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Number of subscriber connections.
    #[arg(short = 'n', long, default_value_t = 1000)]
    pub connections: usize,
    /// Publications per second.
    #[arg(short = 'r', long, default_value_t = 100.0)]
    pub rate: f64,
    /// Measured seconds of publishing (after the warm-up).
    #[arg(short = 'd', long, default_value_t = 30)]
    pub duration: u64,
    /// Seconds of publishing before measuring (not counted).
    #[arg(long, default_value_t = 5)]
    pub warmup: u64,
    /// Approximate size of each pushed frame, in bytes.
    #[arg(long, default_value_t = 100)]
    pub payload_bytes: usize,
    /// Channel all subscribers join.
    #[arg(long, default_value = "bench")]
    pub channel: String,
    /// Max seconds to wait for outstanding deliveries after the last publication.
    #[arg(long, default_value_t = 10)]
    pub drain: u64,
    /// Max concurrent publish requests.
    #[arg(long, default_value_t = 128)]
    pub max_inflight: usize,
}

/// CPU samples taken when the measured window starts.
struct WindowStart {
    at: Instant,
    at_us: u64,
    self_cpu: Option<Duration>,
    server_cpu: Option<Duration>,
}

fn sample_start(server: Option<Proc>) -> WindowStart {
    WindowStart {
        at: Instant::now(),
        at_us: now_us(),
        self_cpu: Proc::Myself.cpu(),
        server_cpu: server.and_then(Proc::cpu),
    }
}

pub async fn run(args: FanoutArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.rate > 0.0, "--rate must be positive");
    anyhow::ensure!(args.connections > 0, "--connections must be positive");
    let addr = args.common.resolve()?;
    let target = args.common.target;
    let ws_url = args.common.ws_url();
    let publish_url = args.common.publish_url();
    let server = args.common.server_pid.map(Proc::Pid);
    let n = args.connections;

    let warmup_pubs = (args.warmup as f64 * args.rate).round() as u64;
    let measured_pubs = (args.duration as f64 * args.rate).round().max(1.0) as u64;
    let measured = warmup_pubs..warmup_pubs + measured_pubs;
    let pad_len = args
        .payload_bytes
        .saturating_sub(target.envelope_bytes(&args.channel) + 42);

    eprintln!(
        "fanout: target={} ws={ws_url} publish={publish_url} connections={n} rate={}/s warmup={}s duration={}s threads={}",
        target.name(),
        args.rate,
        args.warmup,
        args.duration,
        args.common.threads
    );

    let server_rss_before = server.and_then(Proc::rss_kib);
    let shared = Arc::new(Shared::new(true));
    let mut tasks = JoinSet::new();
    let ramp_start = Instant::now();
    let timeout = Duration::from_secs(args.common.connect_timeout);
    for i in 0..n {
        let due = ramp_start + Duration::from_secs_f64(i as f64 / f64::from(args.common.connect_rate.max(1)));
        tokio::time::sleep_until(due.into()).await;
        let shared = shared.clone();
        let url = ws_url.clone();
        let channel = args.channel.clone();
        let measured = measured.clone();
        tasks.spawn(async move {
            let opened = session::open(target, addr, &url, &channel, timeout).await;
            shared
                .track(i, opened, |ws| receive(ws, target, &shared, i, measured))
                .await;
        });
    }
    // Wait until every connection is subscribed or failed.
    shared
        .wait_settled(n, Instant::now() + timeout + Duration::from_secs(5))
        .await;
    let ramp = ramp_start.elapsed();
    let subscribed = shared.count(&shared.subscribed);
    let failed = n - subscribed;
    eprintln!(
        "fanout: {subscribed}/{n} subscribed ({failed} failed) in {:.1}s",
        ramp.as_secs_f64()
    );
    if subscribed == 0 {
        let errs = shared.errors.lock().expect("errors lock").clone();
        anyhow::bail!("no connection subscribed; first errors: {errs:#?}");
    }
    let server_rss_connected = server.and_then(Proc::rss_kib);
    let self_rss_connected = Proc::Myself.rss_kib();

    // Publish.
    let pub_stats = Arc::new(PublishStats::default());
    let window: Arc<Mutex<Option<WindowStart>>> = Arc::new(Mutex::new(None));
    let plan = PublishPlan {
        url: publish_url.clone(),
        channel: args.channel.clone(),
        rate: args.rate,
        total: measured.end,
        measured_from: measured.start,
        pad: "x".repeat(pad_len),
        max_inflight: args.max_inflight,
    };
    let w = window.clone();
    let publisher = tokio::spawn(publish::run(plan, pub_stats.clone(), move || {
        *w.lock().expect("window lock") = Some(sample_start(server));
    }));
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    tick.tick().await;
    tokio::pin!(publisher);
    let lag = loop {
        tokio::select! {
            res = &mut publisher => break res??,
            _ = tick.tick() => {
                eprintln!(
                    "fanout: published {} (+{} warm-up, {} failed, {} skipped), delivered {}",
                    pub_stats.ok_measured.load(Ordering::Relaxed),
                    pub_stats.ok_warmup.load(Ordering::Relaxed),
                    pub_stats.failed.load(Ordering::Relaxed),
                    pub_stats.skipped_measured.load(Ordering::Relaxed)
                        + pub_stats.skipped_warmup.load(Ordering::Relaxed),
                    shared.delivered()
                );
            }
        }
    };
    let published = pub_stats.ok_measured.load(Ordering::Relaxed);
    let expected = subscribed as u64 * published;

    // Drain outstanding deliveries.
    let drain_start = Instant::now();
    let mut last_progress = (shared.delivered(), Instant::now());
    loop {
        let d = shared.delivered();
        if d >= expected || drain_start.elapsed() > Duration::from_secs(args.drain) {
            break;
        }
        if d != last_progress.0 {
            last_progress = (d, Instant::now());
        } else if last_progress.1.elapsed() > Duration::from_secs(2) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let end = Instant::now();
    let self_cpu_end = Proc::Myself.cpu();
    let server_cpu_end = server.and_then(Proc::cpu);
    let server_rss_end = server.and_then(Proc::rss_kib);
    let self_rss_end = Proc::Myself.rss_kib();
    let start = window
        .lock()
        .expect("window lock")
        .take()
        .ok_or_else(|| anyhow::anyhow!("measured window never started"))?;

    let m = shared.merged();
    let dropped = shared.count(&shared.dropped);
    // Throughput window: first measured send to last measured delivery.
    let last_us = m.last_delivery_us;
    let window_secs = if last_us > start.at_us {
        (last_us - start.at_us) as f64 / 1e6
    } else {
        (end - start.at).as_secs_f64()
    }
    .max(args.duration as f64);
    let cpu_secs = |a: Option<Duration>, b: Option<Duration>| match (a, b) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a).as_secs_f64()),
        _ => None,
    };
    let wall = (end - start.at).as_secs_f64();
    let self_cpu = cpu_secs(start.self_cpu, self_cpu_end);
    let server_cpu = cpu_secs(start.server_cpu, server_cpu_end);
    let latency = LatencySummary::from_us(&m.hist);
    let rtt = pub_stats
        .rtt
        .lock()
        .expect("rtt lock")
        .as_ref()
        .map(LatencySummary::from_us);
    let missing = expected.saturating_sub(m.delivered);
    // A late (out-of-order) arrival fills a gap counted earlier.
    // Skipped/failed publications leave legitimate gaps in every subscriber.
    let not_published = pub_stats.skipped_measured.load(Ordering::Relaxed)
        + pub_stats.skipped_warmup.load(Ordering::Relaxed)
        + pub_stats.failed.load(Ordering::Relaxed);
    let seq_gaps = m
        .gaps
        .saturating_sub(m.reordered)
        .saturating_sub(not_published * subscribed as u64);
    let delivered_per_sec = m.delivered as f64 / window_secs;
    let mean_frame = if m.frames > 0 {
        m.frame_bytes as f64 / m.frames as f64
    } else {
        0.0
    };
    let self_cpu_pct = self_cpu.map(|c| 100.0 * c / wall);
    let server_cpu_pct = server_cpu.map(|c| 100.0 * c / wall);
    let server_cpu_us_per_delivery = server_cpu
        .filter(|_| m.delivered > 0)
        .map(|c| c * 1e6 / m.delivered as f64);
    let kib_per_conn = match (server_rss_before, server_rss_connected) {
        (Some(a), Some(b)) => Some((b as f64 - a as f64) / subscribed as f64),
        _ => None,
    };
    let errors = shared.errors.lock().expect("errors lock").clone();
    let publish_failed = pub_stats.failed.load(Ordering::Relaxed);
    let skipped = pub_stats.skipped_measured.load(Ordering::Relaxed);
    let publish_error = pub_stats.first_error.lock().expect("error lock").clone();

    // Human report.
    println!("== Pulsewire bench: fanout ({}) ==", target.name());
    println!("target              {ws_url}  (publish {publish_url})");
    println!(
        "connections         {subscribed} established, {failed} failed, {dropped} dropped during run  (ramp {:.1} s at {}/s)",
        ramp.as_secs_f64(),
        args.common.connect_rate
    );
    println!(
        "publications        {published} measured ok at {}/s for {} s (+{} warm-up), {publish_failed} failed, {skipped} skipped (>{} in flight), max send lag {:.1} ms",
        args.rate,
        args.duration,
        pub_stats.ok_warmup.load(Ordering::Relaxed),
        args.max_inflight,
        lag.as_secs_f64() * 1e3
    );
    if let Some(e) = &publish_error {
        println!("publish error       {e}");
    }
    println!("expected deliveries {expected}  ({subscribed} x {published})");
    println!(
        "delivered           {}  ({:.0}/s sustained over {:.1} s; target {:.0}/s)",
        m.delivered,
        delivered_per_sec,
        window_secs,
        subscribed as f64 * args.rate
    );
    println!(
        "missing             {missing}  (unexplained seq gaps {seq_gaps}, out-of-order {} [concurrent publish requests may reorder], warm-up msgs {})",
        m.reordered, m.unmeasured
    );
    println!(
        "frames              mean {:.0} bytes (--payload-bytes {}), {} frames",
        mean_frame, args.payload_bytes, m.frames
    );
    println!("latency             {}", latency.line());
    if let Some(r) = &rtt {
        println!("publish HTTP rtt    {}", r.line());
    }
    if let Some(c) = self_cpu {
        let pct = self_cpu_pct.unwrap_or(0.0);
        let sat = if pct > 85.0 * args.common.threads as f64 {
            "  << generator near saturation"
        } else {
            ""
        };
        println!(
            "generator           cpu {c:.2} s over {wall:.1} s = {pct:.0}% ({} worker thread(s)), rss {} MiB{sat}",
            args.common.threads,
            self_rss_end.unwrap_or(0) / 1024
        );
    }
    if let Some(pid) = args.common.server_pid {
        println!(
            "server pid {pid}      cpu {:.2} s = {:.0}%, {:.2} µs/delivery; rss {} MiB idle -> {} MiB connected ({:.1} KiB/conn) -> {} MiB end",
            server_cpu.unwrap_or(f64::NAN),
            server_cpu_pct.unwrap_or(f64::NAN),
            server_cpu_us_per_delivery.unwrap_or(f64::NAN),
            server_rss_before.unwrap_or(0) / 1024,
            server_rss_connected.unwrap_or(0) / 1024,
            kib_per_conn.unwrap_or(f64::NAN),
            server_rss_end.unwrap_or(0) / 1024
        );
    }
    for e in &errors {
        println!("error               {e}");
    }

    let summary = serde_json::json!({
        "bench": "fanout",
        "target": target,
        "connections": n,
        "established": subscribed,
        "failed": failed,
        "dropped": dropped,
        "rate": args.rate,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "published": published,
        "publish_failed": publish_failed,
        "publish_skipped": skipped,
        "expected": expected,
        "delivered": m.delivered,
        "missing": missing,
        "seq_gaps": seq_gaps,
        "out_of_order": m.reordered,
        "delivered_per_s": delivered_per_sec.round(),
        "mean_frame_bytes": mean_frame.round(),
        "latency_ms": latency,
        "publish_rtt_ms": rtt,
        "generator_threads": args.common.threads,
        "generator_cpu_s": self_cpu,
        "generator_cpu_pct": self_cpu_pct.map(f64::round),
        "generator_rss_kib": self_rss_end.or(self_rss_connected),
        "server_cpu_s": server_cpu,
        "server_cpu_pct": server_cpu_pct.map(f64::round),
        "server_cpu_us_per_delivery": server_cpu_us_per_delivery,
        "server_rss_kib_before": server_rss_before,
        "server_rss_kib_connected": server_rss_connected,
        "server_rss_kib_end": server_rss_end,
    });
    println!("{summary}");

    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// Receive loop of one subscriber: stamps are scanned from each frame and
/// recorded into the connection's shard under one lock per frame.
async fn receive(
    mut ws: session::Ws,
    target: Target,
    shared: &Shared,
    index: usize,
    measured: std::ops::Range<u64>,
) -> anyhow::Result<()> {
    let shard = &shared.shards[index % SHARDS];
    let mut last: Option<u64> = None;
    while let Some(msg) = ws.next().await {
        let msg = msg?;
        let frame: &[u8] = match &msg {
            Message::Text(t) => {
                if let Some(reply) = keepalive_reply(target, t.as_str()) {
                    ws.send(Message::text(reply)).await?;
                    continue;
                }
                t.as_bytes()
            }
            Message::Binary(b) => b,
            Message::Close(frame) => {
                shared.error(format!("conn {index}: closed by server: {frame:?}"));
                return Ok(());
            }
            _ => continue,
        };
        let now = now_us();
        let mut any_measured = false;
        let mut s = shard.lock().expect("shard lock");
        let found = for_each_stamp(frame, |t, seq| {
            match last {
                Some(l) if seq <= l => s.reordered += 1,
                Some(l) => s.gaps += seq - l - 1,
                None => {}
            }
            last = Some(last.map_or(seq, |l| l.max(seq)));
            if measured.contains(&seq) {
                s.hist.saturating_record(now.saturating_sub(t));
                s.delivered += 1;
                any_measured = true;
            } else {
                s.unmeasured += 1;
            }
        });
        if found > 0 {
            s.frames += 1;
            s.frame_bytes += frame.len() as u64;
        }
        if any_measured {
            s.last_delivery_us = s.last_delivery_us.max(now);
        }
    }
    Ok(())
}
