//! The `pulsewire` binary: command line, configuration loading, logging, signals, and wiring of
//! the server. Everything it runs lives in the library crates.

mod analyze;
mod backup;
mod demo;
mod keys;
mod restore;
mod settings;

use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use pulsewire_server::auth::Exposure;
use pulsewire_server::{Config, LogFormat, Server};

#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(name = "pulsewire", version, about = "A real-time metrics and events hub")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a Pulsewire node.
    Serve(settings::ServeArgs),
    /// Run a node fed by a synthetic fleet (hosts, services, incidents) with alert rules, to
    /// see Pulsewire at work; data goes to a new temporary directory unless --data-dir is given.
    Demo(settings::ServeArgs),
    /// Print the default configuration as TOML.
    DefaultConfig,
    /// Load generators and benchmark scenarios.
    #[command(subcommand)]
    Bench(pulsewire_bench::BenchCommand),
    /// Back up a running node over HTTP into a new directory.
    Backup(backup::BackupArgs),
    /// Restore a backup into the data directory of a stopped node.
    Restore(restore::RestoreArgs),
    /// Run an anomaly detector over a `timestamp,value` CSV as the server would, writing scores.
    Analyze(analyze::AnalyzeArgs),
    /// Create, list and revoke API keys.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => run_node(&args, false),
        Command::Demo(mut args) => {
            if args.data_dir.is_none() {
                args.data_dir = Some(std::env::temp_dir().join(format!("pulsewire-demo-{}", std::process::id())));
            }
            run_node(&args, true)
        }
        Command::DefaultConfig => match settings::default_toml() {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("pulsewire: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Bench(cmd) => match pulsewire_bench::run_blocking(cmd) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("pulsewire bench: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Backup(args) => exit_code("backup", backup::run(args)),
        Command::Restore(args) => exit_code("restore", restore::run(args)),
        Command::Analyze(args) => exit_code("analyze", analyze::run(args)),
        Command::Keys(cmd) => exit_code("keys", keys::run(cmd)),
    }
}

fn run_node(args: &settings::ServeArgs, demo: bool) -> ExitCode {
    let (mut config, source) = match settings::load(args) {
        Ok(c) => c,
        Err(problems) => {
            eprintln!("pulsewire: invalid configuration:");
            for p in problems {
                eprintln!("  - {p}");
            }
            return ExitCode::from(2);
        }
    };
    if demo {
        config.analysis.rules.extend(demo::rules());
    }
    init_tracing(&config);
    match serve(config, source, demo) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("pulsewire: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn exit_code(command: &str, result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pulsewire {command}: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log.level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn serve(config: Config, source: String, demo: bool) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(async move {
        // Before the start lines are printed: whoever reads them may signal at once, and a
        // SIGHUP that arrived before its handler existed would end the process.
        let signals = Signals::listen();
        let server = Server::start(config.clone()).await?;
        let addr = server.local_addr();
        let (http, ws) = if server.tls() { ("https", "wss") } else { ("http", "ws") };
        tracing::info!(config = %source, data_dir = %config.data_dir.display(), "pulsewire {} started", env!("CARGO_PKG_VERSION"));
        println!("Pulsewire {} is serving on {http}://{addr}", env!("CARGO_PKG_VERSION"));
        if config.dashboard.enabled {
            println!("  dashboard    {http}://{addr}/");
        }
        println!("  WebSocket    {ws}://{addr}/ws");
        println!("  SSE          {http}://{addr}/sse?channels=NAME");
        println!("  publish      POST {http}://{addr}/api/v1/publish");
        println!("  stats        {http}://{addr}/api/v1/stats   metrics {http}://{addr}/metrics");
        println!("  health       {http}://{addr}/health   ready {http}://{addr}/ready");
        let auth = match server.state().exposure() {
            Exposure::Authenticated => "API keys (`pulsewire keys`)",
            Exposure::Loopback => "none: serving without authentication on loopback",
            Exposure::Insecure => "NONE (--insecure): anyone who can reach this address can write, read and administer",
        };
        println!("  authentication: {auth}");
        match server.state().tls() {
            Some(t) => {
                let info = t.info();
                println!(
                    "  TLS: {} (expires {}), HTTP/2 and HTTP/1.1; SIGHUP reloads {} and {}",
                    info.subject,
                    info.not_after,
                    config.tls.cert_file.display(),
                    config.tls.key_file.display()
                );
            }
            None => println!("  TLS: off (plain HTTP; set --tls-cert and --tls-key to serve HTTPS)"),
        }
        println!("  configuration: {source}");
        println!("  data directory: {}", config.data_dir.display());
        let fleet = demo.then(|| demo::spawn(server.state().clone()));
        if fleet.is_some() {
            println!(
                "  demo: 6 hosts and 3 services in database `{}`, incidents every 3 minutes, rules: high_cpu, memory_high, host_silent, checkout_slow, latency_anomaly",
                demo::DATABASE
            );
        }
        wait_for_signal(&server, signals).await;
        tracing::info!("signal received: shutting down");
        server.shutdown();
        if let Some(fleet) = fleet {
            fleet.abort();
        }
        server.wait().await?;
        tracing::info!("stopped");
        Ok(())
    })
}

/// Waits for SIGINT or SIGTERM; SIGHUP meanwhile reloads the TLS certificate.
/// SIGTERM and SIGHUP listeners, installed before the node announces itself.
struct Signals {
    #[cfg(unix)]
    streams: std::io::Result<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl Signals {
    fn listen() -> Signals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Signals {
                streams: signal(SignalKind::terminate()).and_then(|t| Ok((t, signal(SignalKind::hangup())?))),
            }
        }
        #[cfg(not(unix))]
        Signals {}
    }
}

async fn wait_for_signal(server: &Server, signals: Signals) {
    #[cfg(unix)]
    {
        let (mut term, mut hup) = match signals.streams {
            Ok(streams) => streams,
            Err(e) => {
                tracing::warn!("cannot listen for SIGTERM and SIGHUP: {e}");
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => return,
                _ = term.recv() => return,
                _ = hup.recv() => match server.reload_tls() {
                    Ok(Some(info)) => tracing::info!(subject = %info.subject, not_after = %info.not_after, "SIGHUP: TLS certificate reloaded"),
                    Ok(None) => tracing::info!("SIGHUP: no TLS configured, nothing to reload"),
                    Err(e) => tracing::error!("SIGHUP: TLS certificate not reloaded, keeping the previous one: {e:#}"),
                },
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (server, signals);
        let _ = tokio::signal::ctrl_c().await;
    }
}
