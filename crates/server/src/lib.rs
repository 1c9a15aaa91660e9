//! Pulsewire's HTTP surface and the server's lifecycle: the axum router (WebSocket, SSE,
//! publish API, operations endpoints), the background tasks, and graceful shutdown. This is the
//! only crate that knows HTTP; the hub behind it knows nothing of sockets.

mod admin;
mod alert_routes;
mod alerting;
mod api;
pub mod audit;
pub mod auth;
pub mod collector;
mod config;
mod dashboard;
mod error;
mod ingest;
pub use ingest::write_own;
pub mod jwt;
pub mod limits;
mod live;
pub mod notify;
pub mod permissions;
mod query;
mod sse;
mod state;
mod statistics;
pub mod tls;
mod transport;
mod watch;
mod ws;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::routing::{delete, get, post};
use axum::serve::ListenerExt as _;
use pulsewire_hub::{Hub, HubMetrics, MemoryBroker};
use pulsewire_tsdb::Store;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use config::{
    Access, AlertmanagerConfig, AlertsConfig, AnalysisConfig, AnomalyConfig, AuditConfig, AuthConfig,
    ChannelPermissions, CollectorConfig, Config, DashboardConfig, HttpConfig, IngestConfig, JwtConfig, LimitsConfig,
    LogConfig, LogFormat, NamespacePermissions, NotifyConfig, ShutdownConfig, SseConfig, TlsConfig, WebSocketConfig,
    WebhookConfig,
};
pub use error::ApiError;
pub use live::channel_for as live_channel_for;
pub use state::AppState;
pub use statistics::channel_for as stats_channel_for;

/// A running server.
pub struct Server {
    addr: SocketAddr,
    shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
    state: AppState,
    /// Held for the server's lifetime so that no second node and no `pulsewire restore` uses
    /// the data directory underneath it.
    _data_lock: std::fs::File,
}

impl Server {
    /// Binds `config.listen` (port 0 picks a free port) and starts serving.
    pub async fn start(config: Config) -> anyhow::Result<Server> {
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        Self::start_on(listener, config).await
    }

    pub async fn start_on(listener: TcpListener, config: Config) -> anyhow::Result<Server> {
        let addr = listener.local_addr()?;
        // Decided before anything is opened, so a refused start leaves nothing behind.
        let exposure = auth::exposure(&config.auth, addr).map_err(anyhow::Error::msg)?;
        let tls = tls::Tls::from_config(&config.tls)?;
        let transport = if tls.is_some() { "TLS" } else { "plain HTTP" };
        match exposure {
            auth::Exposure::Authenticated => tracing::info!(%addr, transport, "serving with authentication"),
            auth::Exposure::Loopback => tracing::info!(%addr, transport, "serving without authentication on loopback"),
            auth::Exposure::Insecure => tracing::warn!(
                %addr,
                transport,
                "INSECURE: serving WITHOUT AUTHENTICATION on a non-loopback address (--insecure); anyone who can reach it can write, read and administer"
            ),
        }
        if let Some(t) = &tls {
            let info = t.info();
            tracing::info!(
                subject = %info.subject,
                not_after = %info.not_after,
                cert_file = %config.tls.cert_file.display(),
                "TLS certificate loaded (HTTP/2 and HTTP/1.1 by ALPN)"
            );
        }
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("cannot create data directory {}", config.data_dir.display()))?;
        let data_lock = lock_data_dir(&config.data_dir)?;
        // Snapshots belong to backups in progress; none can be in progress before we start, so
        // what is left was abandoned (a killed backup) and only pins disk space.
        let snapshots = config.data_dir.join("snapshots");
        if snapshots.exists() {
            match std::fs::remove_dir_all(&snapshots) {
                Ok(()) => tracing::info!("removed snapshots left by interrupted backups"),
                Err(e) => tracing::warn!("cannot remove {}: {e}", snapshots.display()),
            }
        }
        let metrics = Arc::new(HubMetrics::default());
        let broker = Arc::new(MemoryBroker::new(config.hub.clone()));
        let hub = Hub::new(broker.clone(), config.hub.clone(), metrics.clone());
        let store_dir = config.data_dir.join("tsdb");
        let store_config = config.tsdb.clone();
        let store = tokio::task::spawn_blocking(move || Store::open(&store_dir, store_config))
            .await
            .context("store task panicked")?
            .context("cannot open the time-series store")?;
        let notifiers = notify::Notifiers::start(&config.analysis.notify, &config.data_dir)
            .context("cannot start the alert notifiers")?;
        let alerting = Arc::new(
            alerting::Alerting::open(&config.data_dir, &config.analysis)
                .context("cannot load the alert rules and state")?,
        );
        let keys = match exposure {
            auth::Exposure::Authenticated => {
                let path = auth::keys_path(&config.auth, &config.data_dir);
                let keys = auth::KeyStore::open(path).context("cannot load the API keys")?;
                tracing::info!(keys_file = %keys.path().display(), "HTTP API requires API keys");
                Some(keys)
            }
            auth::Exposure::Loopback | auth::Exposure::Insecure => None,
        };
        let jwt = match exposure {
            auth::Exposure::Authenticated => {
                let v = jwt::Verifier::from_config(&config.auth.jwt).context("cannot load the JWT keys")?;
                if v.is_some() {
                    tracing::info!("WebSocket and SSE accept JWT connection tokens");
                }
                v
            }
            auth::Exposure::Loopback | auth::Exposure::Insecure => None,
        };
        let permissions = permissions::Permissions::new(&config.auth);
        let (audit, audit_rx) = audit::Audit::new(&config.audit, &config.data_dir);
        let audit = Arc::new(audit);
        let state = AppState::new(
            hub,
            store,
            notifiers,
            alerting,
            config,
            metrics,
            auth::Auth {
                keys,
                exposure,
                jwt,
                permissions,
            },
            audit,
            tls.clone(),
        );
        let shutdown = CancellationToken::new();

        let router = router(state.clone());
        let tasks = CancellationToken::new();
        let sweeper = spawn_sweeper(broker, tasks.clone());
        let sampler = state::spawn_rate_sampler(state.clone(), tasks.clone());
        let heartbeat = ws::spawn_heartbeat(state.clone(), tasks.clone());
        let live = state.live().clone().spawn(tasks.clone());
        let stats_publisher = statistics::spawn_publisher(state.clone(), tasks.clone());
        let alert_ticker = alerting::spawn_ticker(state.clone(), tasks.clone());
        let alert_publisher = alerting::spawn_publisher(state.clone(), tasks.clone());
        let pruner = limits::spawn_pruner(state.clone(), tasks.clone());
        let collector = collector::spawn(state.clone(), tasks.clone());
        // Stopped last, after everything that may still record something.
        let audit_stop = CancellationToken::new();
        let audit_writer = audit_rx.map(|rx| audit::Audit::spawn_writer(state.clone(), rx, audit_stop.clone()));
        state.audit_record(
            audit::event::SERVER_START,
            audit::outcome::OK,
            &audit::Actor::server(),
            serde_json::json!({
                "listen": addr.to_string(),
                "tls": tls.is_some(),
                "authentication": format!("{exposure:?}").to_lowercase(),
                "version": env!("CARGO_PKG_VERSION"),
            }),
        );
        // Without TCP_NODELAY, Nagle's algorithm holds a small frame back until the previous one
        // is acknowledged: at 1,000 subscribers x 100/s, p50 was 20 ms without it and 4 ms with.
        let user_timeout = state.config().http.tcp_user_timeout;
        let tune = move |tcp: &tokio::net::TcpStream| {
            if let Err(e) = tune_socket(tcp, user_timeout) {
                tracing::debug!("cannot tune an accepted socket: {e}");
            }
        };
        let task_state = state.clone();
        let task_state_addr = addr;
        let server_shutdown = shutdown.clone();
        let task = tokio::spawn(async move {
            let stopping = {
                let state = task_state.clone();
                let shutdown = server_shutdown.clone();
                async move {
                    shutdown.cancelled().await;
                    state.begin_shutdown();
                }
            };
            let serve = async {
                match task_state.tls().cloned() {
                    None => axum::serve(
                        listener.tap_io(move |tcp| tune(tcp)),
                        router.into_make_service_with_connect_info::<SocketAddr>(),
                    )
                    .with_graceful_shutdown(stopping)
                    .await
                    .map_err(anyhow::Error::from),
                    Some(tls) => {
                        tls::serve(listener, router, tls, tune, stopping).await;
                        Ok(())
                    }
                }
            };
            let limit = task_state.config().shutdown.timeout;
            // Once shutdown starts: tell the connections to go (in batches), then wait for them;
            // WebSocket connections are not tracked by the HTTP server once upgraded.
            let drain = async {
                server_shutdown.cancelled().await;
                task_state.close_clients_in_batches().await;
                task_state.wait_for_clients().await;
            };
            let result = tokio::select! {
                (r, ()) = async { tokio::join!(serve, drain) } => r.context("server failed"),
                // Bounded: whatever is still open when the timeout passes is dropped.
                _ = async { server_shutdown.cancelled().await; tokio::time::sleep(limit).await } => {
                    tracing::warn!(left = task_state.hub().client_count(), "shutdown timeout: ending remaining connections");
                    task_state.hub().for_each_client(|c| c.abort());
                    // Aborted connections wake and end at once; give their tasks a moment to go.
                    let _ = tokio::time::timeout(DRAIN_POLL * 10, task_state.wait_for_clients()).await;
                    Ok(())
                }
            };
            tasks.cancel();
            for (name, task) in [
                ("sweeper", sweeper),
                ("rate sampler", sampler),
                ("heartbeat", heartbeat),
                ("live publisher", live),
                ("statistics publisher", stats_publisher),
                ("alert ticker", alert_ticker),
                ("alert publisher", alert_publisher),
                ("limits pruner", pruner),
            ]
            .into_iter()
            .chain(collector.map(|c| ("host collector", c)))
            {
                if let Err(e) = task.await {
                    tracing::error!("{name} task failed: {e}");
                }
            }
            // After the connections, so alerts raised while they drained still go out; bounded by
            // the same timeout again, and what is left then is kept in the dead-letter log.
            task_state
                .notifiers()
                .shutdown(task_state.config().shutdown.timeout)
                .await;
            // Seals the head so the next start has no WAL to replay.
            let store = task_state.store().clone();
            match tokio::task::spawn_blocking(move || store.close()).await {
                Ok(Ok(())) => tracing::info!("store closed"),
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "store failed to close cleanly; the WAL will be replayed at the next start")
                }
                Err(e) => tracing::error!("store close task failed: {e}"),
            }
            task_state.audit_record(
                audit::event::SERVER_STOP,
                if result.is_ok() {
                    audit::outcome::OK
                } else {
                    audit::outcome::FAILED
                },
                &audit::Actor::server(),
                serde_json::json!({ "listen": task_state_addr.to_string() }),
            );
            audit_stop.cancel();
            if let Some(w) = audit_writer
                && let Err(e) = w.await
            {
                tracing::error!("audit writer task failed: {e}");
            }
            result
        });
        Ok(Server {
            addr,
            shutdown,
            task,
            state,
            _data_lock: data_lock,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serving TLS.
    pub fn tls(&self) -> bool {
        self.state.tls().is_some()
    }

    /// Re-reads the TLS certificate and key (SIGHUP): new handshakes use the new certificate,
    /// open connections keep theirs; if the files do not load, the previous certificate stays
    /// and the error is returned. `Ok(None)`: TLS is not configured.
    pub fn reload_tls(&self) -> anyhow::Result<Option<tls::CertInfo>> {
        let Some(t) = self.state.tls() else { return Ok(None) };
        let result = t.reload();
        let (out, detail) = match &result {
            Ok(info) => (
                audit::outcome::OK,
                serde_json::json!({ "subject": info.subject, "not_after": info.not_after }),
            ),
            Err(e) => (
                audit::outcome::FAILED,
                serde_json::json!({ "reason": format!("{e:#}") }),
            ),
        };
        self.state
            .audit_record(audit::event::TLS_RELOAD, out, &audit::Actor::server(), detail);
        result.map(Some)
    }

    /// Starts a graceful shutdown; [`Server::wait`] returns when it is done.
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    pub async fn wait(self) -> anyhow::Result<()> {
        self.task.await.context("server task panicked")?
    }
}

/// Takes the exclusive lock on `<data_dir>/LOCK` that marks a data directory as in use; it is
/// released when the returned file is dropped, and by the OS when the process ends, even by a
/// crash, so a stale LOCK file never blocks a restart.
pub fn lock_data_dir(data_dir: &std::path::Path) -> anyhow::Result<std::fs::File> {
    let path = data_dir.join("LOCK");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "data directory {} is in use by another Pulsewire process",
            data_dir.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => Err(e).with_context(|| format!("cannot lock {}", path.display())),
    }
}

/// TCP_NODELAY, so small frames leave at once; a user timeout and keepalive, so the kernel
/// closes connections to dead peers and to peers that stopped reading (their data stays
/// unacknowledged), which also ends SSE streams that the server could not close otherwise.
fn tune_socket(tcp: &tokio::net::TcpStream, user_timeout: Duration) -> std::io::Result<()> {
    tcp.set_nodelay(true)?;
    let sock = socket2::SockRef::from(tcp);
    let probe = (user_timeout / 3).max(Duration::from_secs(1));
    sock.set_tcp_keepalive(&socket2::TcpKeepalive::new().with_time(probe).with_interval(probe))?;
    #[cfg(any(target_os = "linux", target_os = "android"))]
    sock.set_tcp_user_timeout(Some(user_timeout))?;
    Ok(())
}

fn spawn_sweeper(broker: Arc<MemoryBroker>, stop: CancellationToken) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(broker.sweep_interval());
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {
                    let removed = broker.sweep();
                    if removed > 0 {
                        tracing::debug!(removed, "forgot idle channels");
                    }
                }
            }
        }
    })
}

/// Every route the server answers.
pub fn router(state: AppState) -> Router {
    // Origin checks and connection limits run after authentication, which names the user.
    let admit = || axum::middleware::from_fn_with_state(state.clone(), limits::admit);
    Router::new()
        .route("/ws", get(ws::upgrade).route_layer(admit()))
        .route("/sse", get(sse::stream).route_layer(admit()))
        .route("/api/v1/publish", post(api::publish))
        .route("/api/v1/broadcast", post(api::broadcast))
        .route("/api/v1/history", get(api::history))
        .route("/api/v1/stats", get(api::stats))
        .route("/api/v1/channels", get(api::channels))
        .route("/api/v1/clients", get(api::clients))
        .route("/api/v1/clients/{id}", delete(api::disconnect_client))
        .route("/health", get(api::health))
        .route("/ping", get(api::ping).head(api::ping))
        .route("/ready", get(api::ready))
        .route("/metrics", get(api::metrics))
        .route("/write", post(ingest::write_v1))
        .route("/query", get(ingest::influxql).post(ingest::influxql))
        .route("/api/v2/write", post(ingest::write_v2))
        .route("/api/v1/metrics/ingest", post(ingest::ingest_json))
        .route("/api/v1/query", get(query::query))
        .route("/api/v1/series", get(query::series))
        .route("/api/v1/metrics/realtime/{source}", get(query::realtime))
        .route("/api/v1/metrics/dashboard", get(query::dashboard))
        .route("/api/v1/metrics/statistics", get(statistics::statistics))
        .route(
            "/api/v1/rules",
            get(alert_routes::list_rules).post(alert_routes::create_rule),
        )
        .route(
            "/api/v1/rules/{name}",
            get(alert_routes::get_rule)
                .put(alert_routes::put_rule)
                .delete(alert_routes::delete_rule),
        )
        .route("/api/v1/alerts", get(alert_routes::list_alerts))
        .route("/api/v1/alerts/stats", get(alert_routes::stats))
        .route("/api/v1/alerts/{id}", get(alert_routes::get_alert))
        .route("/api/v1/alerts/{id}/ack", post(alert_routes::ack))
        .route(
            "/api/v1/silences",
            get(alert_routes::list_silences).post(alert_routes::create_silence),
        )
        .route("/api/v1/silences/{id}", delete(alert_routes::delete_silence))
        .route("/api/v1/metrics/summary", get(statistics::summary))
        .route("/api/v1/notify/dead-letter", get(notify::routes::dead_letters))
        .route("/api/v1/notify/dead-letter/replay", post(notify::routes::replay))
        .route("/api/v1/notify/stats", get(notify::routes::stats))
        .route("/api/v1/admin/checkpoint", post(admin::checkpoint))
        .route("/api/v1/admin/rollup", post(admin::rollup))
        .route("/api/v1/admin/compact", post(admin::compact))
        .route("/api/v1/admin/snapshots", post(admin::create))
        .route("/api/v1/admin/snapshots/{id}", delete(admin::delete))
        .route("/api/v1/admin/snapshots/{id}/files/{*path}", get(admin::file))
        .route("/api/v1/audit", get(audit::read_back))
        .merge(dashboard_routes(state.config().dashboard.enabled))
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth::authenticate))
        // Outermost: preflights are answered before authentication.
        .layer(limits::cors_layer(state.limits()))
        .with_state(state)
}

/// `/` and `/assets/*`: the embedded dashboard, unless `dashboard.enabled` is off.
fn dashboard_routes(enabled: bool) -> Router<AppState> {
    if !enabled {
        return Router::new();
    }
    Router::new()
        .route("/", get(dashboard::index))
        .route("/assets/{*path}", get(dashboard::asset))
}

/// Time to wait between checks while draining; short, since it only bounds shutdown latency.
pub(crate) const DRAIN_POLL: Duration = Duration::from_millis(20);
