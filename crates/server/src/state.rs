//! Shared state of the running server, and the background task that turns counters into
//! per-second rates for `/api/v1/stats`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use prometheus_client::registry::Registry;
use pulsewire_hub::{CloseReason, Hub, HubMetrics};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::Config;
use crate::alerting::Alerting;
use crate::auth::{Auth, Exposure, KeyStore};
use crate::limits::Limits;
use crate::live::Live;
use crate::notify::Notifiers;
use crate::statistics::PublisherCounters;
use crate::watch::Watch;
use pulsewire_tsdb::Store;

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

struct Inner {
    hub: Hub,
    store: Store,
    live: Arc<Live>,
    watch: Arc<Watch>,
    stats_counters: PublisherCounters,
    notifiers: Notifiers,
    alerting: Arc<Alerting>,
    config: Config,
    auth: Auth,
    limits: Arc<Limits>,
    metrics: Arc<HubMetrics>,
    registry: Registry,
    rates: Mutex<Rates>,
    shutting_down: AtomicBool,
    audit: Arc<crate::audit::Audit>,
    tls: Option<Arc<crate::tls::Tls>>,
}

/// Messages per second in (publications) and out (deliveries), over the last sampled second.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rates {
    pub in_per_sec: f64,
    pub out_per_sec: f64,
}

impl AppState {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        hub: Hub,
        store: Store,
        notifiers: Notifiers,
        alerting: Arc<Alerting>,
        config: Config,
        metrics: Arc<HubMetrics>,
        auth: Auth,
        audit: Arc<crate::audit::Audit>,
        tls: Option<Arc<crate::tls::Tls>>,
    ) -> Self {
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        let stats_counters = PublisherCounters::default();
        stats_counters.register(&mut registry);
        let limits = Limits::new(&config);
        limits.metrics().register(&mut registry);
        audit.metrics().register(&mut registry);
        limits.set_audit(audit.clone());
        if let Some(t) = &tls {
            t.metrics.register(&mut registry);
        }
        let live = Live::new(hub.clone(), config.ingest.live_window, config.ingest.live_max_points);
        let watch = Arc::new(Watch::new(config.analysis.clone()));
        Self(Arc::new(Inner {
            hub,
            store,
            live,
            watch,
            stats_counters,
            notifiers,
            alerting,
            config,
            auth,
            limits,
            metrics,
            registry,
            rates: Mutex::new(Rates::default()),
            shutting_down: AtomicBool::new(false),
            audit,
            tls,
        }))
    }

    pub fn hub(&self) -> &Hub {
        &self.0.hub
    }

    pub fn store(&self) -> &Store {
        &self.0.store
    }

    pub fn live(&self) -> &Arc<Live> {
        &self.0.live
    }

    pub fn watch(&self) -> &Arc<Watch> {
        &self.0.watch
    }

    pub fn alerting(&self) -> &Arc<Alerting> {
        &self.0.alerting
    }

    /// What the `stats:<measurement>` publisher has done.
    pub fn stats_counters(&self) -> &PublisherCounters {
        &self.0.stats_counters
    }

    /// Where alert notifications go.
    pub fn notifiers(&self) -> &Notifiers {
        &self.0.notifiers
    }

    pub fn config(&self) -> &Config {
        &self.0.config
    }

    /// The API keys, when authentication is enabled.
    pub fn keys(&self) -> Option<&KeyStore> {
        self.0.auth.keys.as_ref()
    }

    /// The JWT connection-token keys, when authentication is enabled and keys are configured.
    pub fn jwt(&self) -> Option<&crate::jwt::Verifier> {
        self.0.auth.jwt.as_ref()
    }

    /// The channel permissions of `[auth]`.
    pub fn permissions(&self) -> &crate::permissions::Permissions {
        &self.0.auth.permissions
    }

    /// How this server is exposed (decided at start).
    pub fn exposure(&self) -> Exposure {
        self.0.auth.exposure
    }

    /// Rate, connection and origin limits (docs/security.md, "Limits").
    pub fn limits(&self) -> &Arc<Limits> {
        &self.0.limits
    }

    /// The audit log (docs/security.md, "Audit log").
    pub fn audit(&self) -> &crate::audit::Audit {
        &self.0.audit
    }

    /// Queues an audit record (never waits).
    pub fn audit_record(&self, event: &str, outcome: &str, actor: &crate::audit::Actor, detail: serde_json::Value) {
        self.0.audit.record(event, outcome, actor, detail);
    }

    /// TLS, when configured.
    pub fn tls(&self) -> Option<&Arc<crate::tls::Tls>> {
        self.0.tls.as_ref()
    }

    pub fn metrics(&self) -> &HubMetrics {
        &self.0.metrics
    }

    pub fn registry(&self) -> &Registry {
        &self.0.registry
    }

    pub fn rates(&self) -> Rates {
        *self.0.rates.lock()
    }

    pub fn is_shutting_down(&self) -> bool {
        self.0.shutting_down.load(Ordering::Relaxed)
    }

    /// Marks the server not ready; HTTP handlers and new connections see it at once.
    pub fn begin_shutdown(&self) {
        self.0.shutting_down.store(true, Ordering::SeqCst);
    }

    /// Tells connected clients to reconnect, in batches of `shutdown.batch_size` every
    /// `shutdown.batch_interval`, so they do not all come back at once. Each connection first
    /// flushes what it has queued, then sends its close.
    pub async fn close_clients_in_batches(&self) {
        let cfg = &self.config().shutdown;
        let clients = self.hub().clients();
        tracing::info!(
            connections = clients.len(),
            "shutting down: asking clients to reconnect"
        );
        for (i, batch) in clients.chunks(cfg.batch_size).enumerate() {
            if i > 0 {
                tokio::time::sleep(cfg.batch_interval).await;
            }
            for c in batch {
                c.close(CloseReason::Shutdown);
            }
        }
    }

    /// Resolves when every client connection has been removed from the hub, telling any that
    /// registered after the batches went out to close too.
    pub async fn wait_for_clients(&self) {
        while self.hub().client_count() > 0 {
            // Closing is idempotent: only connections not told yet are affected.
            self.hub().for_each_client(|c| c.close(CloseReason::Shutdown));
            tokio::time::sleep(crate::DRAIN_POLL).await;
        }
    }
}

pub fn spawn_rate_sampler(state: AppState, stop: CancellationToken) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let m = state.metrics();
        let mut last = (Instant::now(), m.publications.get(), m.delivered.get());
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {
                    let now = (Instant::now(), m.publications.get(), m.delivered.get());
                    let secs = now.0.duration_since(last.0).as_secs_f64();
                    if secs > 0.0 {
                        *state.0.rates.lock() = Rates {
                            in_per_sec: (now.1 - last.1) as f64 / secs,
                            out_per_sec: (now.2 - last.2) as f64 / secs,
                        };
                    }
                    last = now;
                }
            }
        }
    })
}
