//! Load generator for Pulsewire and its comparison servers (Socket.IO 4 and
//! the Go centrifuge library for fan-out; VictoriaMetrics and InfluxDB 1.x for
//! ingest). It exposes the [`BenchCommand`] clap subcommand that the
//! `pulsewire` binary wires as `pulsewire bench fanout|idle|ingest`, and
//! [`run`] / [`run_blocking`] which execute one scenario, print a human report
//! and finish with a one-line JSON summary on stdout.
//!
//! * `fanout`: N WebSocket subscribers on one channel, R publications/s by
//!   HTTP POST, publish-to-receive latency in HDR histograms, delivery counts
//!   and gaps, generator and (with `--server-pid`) server CPU/RSS.
//! * `idle`: N subscribed connections held open, server RSS per connection.
//! * `nab`: the anomaly detectors of `pulsewire-analysis` over the Numenta Anomaly Benchmark,
//!   scored as NAB scores them, with their cost per point and state per series.
//! * `ingest`: concurrent HTTP writers of InfluxDB line protocol (synthetic
//!   host metrics), accepted samples/s, request latency, rejections by status,
//!   generator CPU and (with `--server-pid`) server CPU/RSS.

mod alert;
mod fanout;
mod idle;
mod ingest;
mod lineproto;
mod live;
pub mod nab;
mod procstat;
mod publish;
mod query;
mod scan;
mod session;
mod stats;

use std::net::SocketAddr;

pub use alert::AlertArgs;
pub use fanout::FanoutArgs;
pub use idle::IdleArgs;
pub use ingest::IngestArgs;
pub use live::LiveArgs;
pub use nab::NabArgs;
pub use query::QueryArgs;
pub use session::Target;

/// Benchmark scenarios (`pulsewire bench <scenario> ...`).
#[derive(Debug, Clone, clap::Subcommand)]
pub enum BenchCommand {
    /// Fan-out latency/throughput: N subscribers on one channel, R publications/s.
    Fanout(FanoutArgs),
    /// Idle connections: N subscribed connections held open, server memory per connection.
    Idle(IdleArgs),
    /// Ingest throughput: concurrent writers of InfluxDB line protocol to one write URL.
    Ingest(IngestArgs),
    /// Query latency over one stored series: one day of 1 s data aggregated to 1-minute steps.
    Query(QueryArgs),
    /// Ingest-to-subscriber latency of points written over HTTP, under background load.
    Live(LiveArgs),
    /// Point-to-alert latency: a threshold rule fired by points written over HTTP, under load.
    Alert(AlertArgs),
    /// Anomaly detectors on the Numenta Anomaly Benchmark: NAB scores per profile, cost per point.
    Nab(NabArgs),
}

/// Options shared by every scenario.
#[derive(Debug, Clone, clap::Args)]
pub struct CommonArgs {
    /// Wire protocol / server flavour to drive.
    #[arg(long, value_enum, default_value_t = Target::Pulsewire)]
    pub target: Target,
    /// Server address (host:port). WebSocket and publish URLs are derived from it.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: String,
    /// Override the WebSocket URL (default depends on --target).
    #[arg(long)]
    pub ws_url: Option<String>,
    /// Override the publish URL (default depends on --target).
    #[arg(long)]
    pub publish_url: Option<String>,
    /// New connections opened per second during the ramp.
    #[arg(long, default_value_t = 2000)]
    pub connect_rate: u32,
    /// Seconds allowed for one connection's WebSocket handshake + subscribe.
    #[arg(long, default_value_t = 15)]
    pub connect_timeout: u64,
    /// PID of the server process: adds its CPU time and RSS to the report.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Tokio worker threads of the load generator.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Allow a target that is not a loopback address.
    #[arg(long)]
    pub allow_non_loopback: bool,
}

impl CommonArgs {
    /// Resolves `--addr` and refuses non-loopback targets unless allowed.
    pub(crate) fn resolve(&self) -> anyhow::Result<SocketAddr> {
        use std::net::ToSocketAddrs;
        let addr = self
            .addr
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| anyhow::anyhow!("cannot resolve {}", self.addr))?;
        if !addr.ip().is_loopback() && !self.allow_non_loopback {
            anyhow::bail!("{addr} is not a loopback address; pass --allow-non-loopback to load it anyway");
        }
        Ok(addr)
    }

    pub(crate) fn ws_url(&self) -> String {
        self.ws_url
            .clone()
            .unwrap_or_else(|| format!("ws://{}{}", self.addr, self.target.ws_path()))
    }

    pub(crate) fn publish_url(&self) -> String {
        self.publish_url
            .clone()
            .unwrap_or_else(|| format!("http://{}{}", self.addr, self.target.publish_path()))
    }
}

impl BenchCommand {
    fn threads(&self) -> usize {
        match self {
            BenchCommand::Fanout(a) => a.common.threads,
            BenchCommand::Idle(a) => a.common.threads,
            BenchCommand::Ingest(a) => a.threads,
            BenchCommand::Query(_) | BenchCommand::Live(_) | BenchCommand::Alert(_) | BenchCommand::Nab(_) => 1,
        }
    }
}

/// Runs one scenario on a dedicated tokio runtime with `--threads` workers
/// (on its own OS thread, so it can be awaited from any runtime) and prints
/// the report.
pub async fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new().name("bench-main".into()).spawn(move || {
        let _ = tx.send(run_blocking(cmd));
    })?;
    rx.await.map_err(|_| anyhow::anyhow!("benchmark thread panicked"))?
}

/// Blocking variant of [`run`]: builds the runtime and runs the scenario.
/// Must not be called from inside a tokio runtime.
pub fn run_blocking(cmd: BenchCommand) -> anyhow::Result<()> {
    // Pure computation: no runtime, and no worker thread competing with the timed loop.
    let cmd = match cmd {
        BenchCommand::Nab(args) => return nab::run(args),
        other => other,
    };
    let threads = cmd.threads().max(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name("bench-worker")
        .enable_all()
        .build()?;
    let result = rt.block_on(async move {
        match cmd {
            BenchCommand::Fanout(args) => fanout::run(args).await,
            BenchCommand::Idle(args) => idle::run(args).await,
            BenchCommand::Ingest(args) => ingest::run(args).await,
            BenchCommand::Query(args) => query::run(args).await,
            BenchCommand::Live(args) => live::run(args).await,
            BenchCommand::Alert(args) => alert::run(args).await,
            BenchCommand::Nab(args) => nab::run(args),
        }
    });
    // Connection tasks are aborted by the scenarios; don't wait for stragglers.
    rt.shutdown_timeout(std::time::Duration::from_secs(2));
    result
}
