//! The `idle` scenario: N connections, each subscribed to its own channel
//! (`idle-<offset+i>`) or to one shared channel, held open for `--hold`
//! seconds while keepalives are answered; reports how many stayed up and the
//! server's RSS before/after and per connection. Several processes can run it
//! at once (use distinct `--id-offset`s) to go beyond one process's fd limit.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;

use crate::CommonArgs;
use crate::procstat::Proc;
use crate::session::{self, Target, keepalive_reply};
use crate::stats::Shared;

/// Arguments of `bench idle`.
#[derive(Debug, Clone, clap::Args)]
pub struct IdleArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Number of connections this process opens.
    #[arg(short = 'n', long, default_value_t = 1000)]
    pub connections: usize,
    /// Seconds to hold the connections once all are subscribed.
    #[arg(long, default_value_t = 30)]
    pub hold: u64,
    /// Subscribe every connection to --channel instead of its own channel.
    #[arg(long)]
    pub shared_channel: bool,
    /// The shared channel (with --shared-channel).
    #[arg(long, default_value = "bench")]
    pub channel: String,
    /// Prefix of the per-connection channels.
    #[arg(long, default_value = "idle-")]
    pub channel_prefix: String,
    /// First per-connection channel index (for running several processes).
    #[arg(long, default_value_t = 0)]
    pub id_offset: usize,
    /// Seconds to wait after the ramp before sampling the server's RSS.
    #[arg(long, default_value_t = 3)]
    pub settle: u64,
}

pub async fn run(args: IdleArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.connections > 0, "--connections must be positive");
    let addr = args.common.resolve()?;
    let target = args.common.target;
    let ws_url = args.common.ws_url();
    let server = args.common.server_pid.map(Proc::Pid);
    let n = args.connections;
    eprintln!(
        "idle: target={} ws={ws_url} connections={n} offset={} hold={}s channel={}",
        target.name(),
        args.id_offset,
        args.hold,
        if args.shared_channel {
            args.channel.clone()
        } else {
            format!("{}<i>", args.channel_prefix)
        }
    );

    let server_rss_before = server.and_then(Proc::rss_kib);
    let shared = Arc::new(Shared::new(false));
    let mut tasks = JoinSet::new();
    let timeout = Duration::from_secs(args.common.connect_timeout);
    let ramp_start = Instant::now();
    for i in 0..n {
        let due = ramp_start + Duration::from_secs_f64(i as f64 / f64::from(args.common.connect_rate.max(1)));
        tokio::time::sleep_until(due.into()).await;
        let channel = if args.shared_channel {
            args.channel.clone()
        } else {
            format!("{}{}", args.channel_prefix, args.id_offset + i)
        };
        let shared = shared.clone();
        let url = ws_url.clone();
        tasks.spawn(async move {
            let opened = session::open(target, addr, &url, &channel, timeout).await;
            // `hold` returning means the server ended the connection.
            let held = |ws| async move {
                hold(ws, target)
                    .await
                    .and_then(|()| Err(anyhow::anyhow!("closed by server")))
            };
            shared.track(i, opened, held).await;
        });
    }
    shared
        .wait_settled(n, Instant::now() + timeout + Duration::from_secs(5))
        .await;
    let ramp = ramp_start.elapsed();
    let established = shared.count(&shared.subscribed);
    let failed = n - established;
    eprintln!(
        "idle: {established}/{n} subscribed ({failed} failed) in {:.1}s; holding {}s",
        ramp.as_secs_f64(),
        args.hold
    );

    let hold_start = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.settle.min(args.hold))).await;
    let server_rss_after = server.and_then(Proc::rss_kib);
    let server_fds = server.and_then(Proc::open_fds);
    let self_rss = Proc::Myself.rss_kib();
    let hold_end = hold_start + Duration::from_secs(args.hold);
    while Instant::now() < hold_end {
        let left = hold_end.saturating_duration_since(Instant::now());
        tokio::time::sleep(left.min(Duration::from_secs(10))).await;
        eprintln!(
            "idle: {} open ({} dropped), {:.0}s left",
            established - shared.count(&shared.dropped),
            shared.count(&shared.dropped),
            hold_end.saturating_duration_since(Instant::now()).as_secs_f64()
        );
    }
    let dropped = shared.count(&shared.dropped);
    let open_at_end = established - dropped;
    let server_rss_end = server.and_then(Proc::rss_kib);
    let per_conn = match (server_rss_before, server_rss_after) {
        (Some(a), Some(b)) if established > 0 => Some((b as f64 - a as f64) / established as f64),
        _ => None,
    };
    let errors = shared.errors.lock().expect("errors lock").clone();

    println!("== Pulsewire bench: idle ({}) ==", target.name());
    println!("target              {ws_url}");
    println!(
        "connections         {established} established, {failed} failed (ramp {:.1} s at {}/s)",
        ramp.as_secs_f64(),
        args.common.connect_rate
    );
    println!(
        "after {:>3} s hold    {open_at_end} still open, {dropped} dropped",
        args.hold
    );
    println!(
        "generator           rss {} MiB ({:.1} KiB/conn)",
        self_rss.unwrap_or(0) / 1024,
        self_rss.unwrap_or(0) as f64 / established.max(1) as f64
    );
    if let Some(pid) = args.common.server_pid {
        println!(
            "server pid {pid}      rss {} KiB before -> {} KiB after ramp (+{:.1} KiB/conn of this process) -> {} KiB at end; {} open fds",
            server_rss_before.unwrap_or(0),
            server_rss_after.unwrap_or(0),
            per_conn.unwrap_or(f64::NAN),
            server_rss_end.unwrap_or(0),
            server_fds.unwrap_or(0)
        );
    }
    for e in &errors {
        println!("error               {e}");
    }
    let summary = serde_json::json!({
        "bench": "idle",
        "target": target,
        "connections": n,
        "id_offset": args.id_offset,
        "shared_channel": args.shared_channel,
        "established": established,
        "failed": failed,
        "dropped": dropped,
        "open_at_end": open_at_end,
        "hold_s": args.hold,
        "ramp_s": (ramp.as_secs_f64() * 10.0).round() / 10.0,
        "generator_rss_kib": self_rss,
        "server_rss_kib_before": server_rss_before,
        "server_rss_kib_after": server_rss_after,
        "server_rss_kib_end": server_rss_end,
        "server_kib_per_conn": per_conn,
        "server_open_fds": server_fds,
    });
    println!("{summary}");
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// Keeps one connection open: reads (so WebSocket pings get ponged) and
/// answers protocol keepalives. Returns when the server closes it.
async fn hold(mut ws: session::Ws, target: Target) -> anyhow::Result<()> {
    while let Some(msg) = ws.next().await {
        match msg? {
            Message::Text(t) => {
                if let Some(reply) = keepalive_reply(target, t.as_str()) {
                    ws.send(Message::text(reply)).await?;
                }
            }
            Message::Close(frame) => anyhow::bail!("closed by server: {frame:?}"),
            _ => {}
        }
    }
    Ok(())
}
