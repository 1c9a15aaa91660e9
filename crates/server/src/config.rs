//! The whole server configuration: one typed struct per subsystem, each field with a default
//! and a doc line. The binary fills it from defaults, a TOML file, `PULSEWIRE_*` variables and
//! flags (in that order); `Config::problems` then lists every invalid value by its key.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use pulsewire_hub::HubConfig;
use pulsewire_tsdb::StoreConfig;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on for HTTP, WebSocket and SSE.
    pub listen: SocketAddr,
    /// Directory for Pulsewire's data; created at start if missing.
    pub data_dir: PathBuf,
    /// Logging.
    pub log: LogConfig,
    /// WebSocket transport.
    pub websocket: WebSocketConfig,
    /// Server-Sent Events transport.
    pub sse: SseConfig,
    /// HTTP API.
    pub http: HttpConfig,
    /// Graceful shutdown.
    pub shutdown: ShutdownConfig,
    /// Channels, history and per-connection queues.
    pub hub: HubConfig,
    /// Metrics ingestion (line protocol and JSON).
    pub ingest: IngestConfig,
    /// The embedded time-series store.
    pub tsdb: StoreConfig,
    /// Live analysis of ingested series: rolling statistics, anomaly detection, alert rules.
    pub analysis: AnalysisConfig,
    /// Authentication of the HTTP API with API keys (docs/security.md).
    pub auth: AuthConfig,
    /// Rate and connection limits per user, address, tenant and connection (docs/security.md).
    pub limits: LimitsConfig,
    /// HTTPS and WSS on the same listener (docs/security.md, "TLS"); off unless both files are set.
    pub tls: TlsConfig,
    /// The append-only audit log (docs/security.md, "Audit log").
    pub audit: AuditConfig,
    /// The host collector: this machine's CPU, memory, load, disk and network into the store.
    pub collector: CollectorConfig,
    /// The live dashboard served at `/` (docs/dashboard.md).
    pub dashboard: DashboardConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DashboardConfig {
    /// Serve the dashboard's page at `/` and its files at `/assets/*` (without authentication;
    /// the page asks for a credential when the API answers 401).
    pub enabled: bool,
}

impl Default for DashboardConfig {
    fn default() -> Self {
        Self { enabled: true }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CollectorConfig {
    /// Record this machine's figures (Telegraf's `cpu`, `mem`, `system`, `diskio`, `net`).
    pub enabled: bool,
    /// Time between two readings.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Database the points are written to (in the `default` tenant).
    pub database: String,
}

impl Default for CollectorConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval: Duration::from_secs(1),
            database: "pulsewire".into(),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./pulsewire-data"),
            log: LogConfig::default(),
            websocket: WebSocketConfig::default(),
            sse: SseConfig::default(),
            http: HttpConfig::default(),
            shutdown: ShutdownConfig::default(),
            hub: HubConfig::default(),
            ingest: IngestConfig::default(),
            tsdb: StoreConfig::default(),
            analysis: AnalysisConfig::default(),
            auth: AuthConfig::default(),
            limits: LimitsConfig::default(),
            collector: CollectorConfig::default(),
            dashboard: DashboardConfig::default(),
            tls: TlsConfig::default(),
            audit: AuditConfig::default(),
        }
    }
}

/// TLS for the one listener: set both files to serve HTTPS and WSS (HTTP/2 and HTTP/1.1 by
/// ALPN); leave both empty to serve plain HTTP. The files are re-read on SIGHUP.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, the server's certificate first (`--tls-cert`).
    pub cert_file: PathBuf,
    /// PEM private key: PKCS#8, PKCS#1 (RSA) or SEC1 (EC) (`--tls-key`).
    pub key_file: PathBuf,
}

impl TlsConfig {
    /// Both files are set.
    pub fn enabled(&self) -> bool {
        !self.cert_file.as_os_str().is_empty() && !self.key_file.as_os_str().is_empty()
    }
}

/// The audit log: JSON lines appended by one writer task, rotated by size.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    /// Record authentication failures, refusals, limit trips, key changes, admin actions and
    /// server start and stop.
    pub enabled: bool,
    /// The log file; empty means `<data_dir>/audit/audit.log`.
    pub file: PathBuf,
    /// The file is rotated (`audit.log.1`, `.2`, ...) once it reaches this size.
    pub max_bytes: u64,
    /// Rotated files kept; older ones are deleted.
    pub keep: usize,
    /// Records waiting for the writer at most; past it records are dropped and counted in
    /// `pulsewire_audit_dropped_total`, so a request never waits for the log.
    pub queue: usize,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            file: PathBuf::new(),
            max_bytes: 64 << 20,
            keep: 5,
            queue: 8192,
        }
    }
}

/// What one user, address, tenant or connection may take of a shared node. A rate of 0 turns
/// that limit off; so does a maximum of 0.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// New WebSocket and SSE connections one user may open per minute (the API key; without a
    /// key, the remote address). 429 `rate_limited` above.
    pub new_connections_per_user_per_minute: u32,
    /// New WebSocket and SSE connections one remote address may open per minute. 429
    /// `rate_limited` above.
    pub new_connections_per_ip_per_minute: u32,
    /// WebSocket and SSE connections one user may hold open at once. 429 `too_many_connections`.
    pub max_connections_per_user: usize,
    /// WebSocket and SSE connections one tenant may hold open at once. 429 `too_many_connections`.
    pub max_connections_per_tenant: usize,
    /// Frames one WebSocket connection may send per second; over it a frame is answered with an
    /// `error` frame `rate_limited` and dropped.
    pub messages_per_second: u32,
    /// Frames a WebSocket connection may send at once above the steady rate.
    pub message_burst: u32,
    /// A connection that sends more than `flood_factor` times `messages_per_second` over one
    /// `flood_window` is closed with 4029.
    pub flood_factor: u32,
    #[serde(with = "humantime_serde")]
    pub flood_window: Duration,
    /// Points (lines, or JSON objects) one API key may write per second (one tenant's writes
    /// together when authentication is off). 429 with `Retry-After` above.
    pub ingest_points_per_second: u32,
    /// Points one key may write at once above the steady rate; a single write larger than this
    /// waits for a full bucket and takes all of it.
    pub ingest_points_burst: u32,
    /// Keys (users, addresses, API keys) each rate limiter tracks at most; once full, keys it
    /// does not hold share one bucket until pruning makes room.
    pub max_tracked_keys: usize,
    /// How often rate limiters forget keys whose budget is full again.
    #[serde(with = "humantime_serde")]
    pub prune_interval: Duration,
    /// Clients on a loopback address without an API key (local tools, benchmarks) are not
    /// counted against the per-user, per-address, per-tenant and ingest limits.
    pub exempt_loopback: bool,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            new_connections_per_user_per_minute: 10,
            new_connections_per_ip_per_minute: 60,
            max_connections_per_user: 5,
            max_connections_per_tenant: 1000,
            messages_per_second: 100,
            message_burst: 20,
            flood_factor: 3,
            flood_window: Duration::from_secs(5),
            ingest_points_per_second: 1_000_000,
            ingest_points_burst: 2_000_000,
            max_tracked_keys: 100_000,
            prune_interval: Duration::from_secs(60),
            exempt_loopback: true,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Every HTTP API request needs an API key (except `/health`, `/ping`, `/ready`, `/metrics`).
    /// Off: no authentication, which is allowed only on a loopback address (or with `insecure`).
    pub enabled: bool,
    /// The keys file written by `pulsewire keys`; empty means `<data_dir>/auth/keys.json`.
    pub keys_file: PathBuf,
    /// Serve without authentication on a non-loopback address anyway (`--insecure`); warned
    /// about at start and in `/ready`.
    pub insecure: bool,
    /// JWT connection tokens for WebSocket and SSE (docs/security.md).
    pub jwt: JwtConfig,
    /// Tenant of WebSocket and SSE connections without credentials (where a namespace rule is
    /// `any`).
    pub anonymous_tenant: String,
    /// What connections may do on the channels of a namespace that has no entry in `namespaces`.
    pub channel_defaults: ChannelPermissions,
    /// Channel permissions per namespace (`[[auth.namespaces]]`, `name` = the part of a channel
    /// name before the first `:`; `""` names the channels without one).
    pub namespaces: Vec<NamespacePermissions>,
    /// The tenant whose `admin` keys operate the node: snapshots (every tenant's data),
    /// checkpoints, rollups, compaction and node-wide statistics. Other tenants' `admin` keys
    /// administer their own tenant only.
    pub operator_tenant: String,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            keys_file: PathBuf::new(),
            insecure: false,
            anonymous_tenant: "default".into(),
            jwt: JwtConfig::default(),
            channel_defaults: ChannelPermissions::default(),
            namespaces: Vec::new(),
            operator_tenant: "default".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct JwtConfig {
    /// Secret of HS256 tokens; empty: HS256 is not accepted.
    pub hmac_secret: String,
    /// PEM public key of RS256 tokens without a `kid`; empty: none.
    pub rsa_public_key_file: PathBuf,
    /// PEM public key (P-256) of ES256 tokens without a `kid`; empty: none.
    pub ecdsa_public_key_file: PathBuf,
    /// PEM public key (Ed25519) of EdDSA tokens without a `kid`; empty: none.
    pub ed25519_public_key_file: PathBuf,
    /// JWKS file of keys chosen by the token's `kid` (RS256, ES256, EdDSA, HS256), re-read
    /// within a second of a change; empty: none.
    pub jwks_file: PathBuf,
    /// When set, tokens must carry this `iss`.
    pub issuer: String,
    /// When set, tokens must carry this `aud`.
    pub audience: String,
    /// Clock skew allowed on `exp` and `nbf`; a connection is closed this long after `exp`.
    #[serde(with = "humantime_serde")]
    pub leeway: Duration,
    /// Tenant of tokens without a `tenant` claim; empty: such tokens are refused.
    pub default_tenant: String,
    /// How long before its token expires a WebSocket connection gets `token_expiring`.
    #[serde(with = "humantime_serde")]
    pub expiry_warning: Duration,
}

impl Default for JwtConfig {
    fn default() -> Self {
        Self {
            hmac_secret: String::new(),
            rsa_public_key_file: PathBuf::new(),
            ecdsa_public_key_file: PathBuf::new(),
            ed25519_public_key_file: PathBuf::new(),
            jwks_file: PathBuf::new(),
            issuer: String::new(),
            audience: String::new(),
            leeway: Duration::from_secs(5),
            default_tenant: String::new(),
            expiry_warning: Duration::from_secs(30),
        }
    }
}

impl JwtConfig {
    /// True if any key is configured, i.e. connection tokens are accepted at all.
    pub fn has_keys(&self) -> bool {
        !self.hmac_secret.is_empty()
            || !self.rsa_public_key_file.as_os_str().is_empty()
            || !self.ecdsa_public_key_file.as_os_str().is_empty()
            || !self.ed25519_public_key_file.as_os_str().is_empty()
            || !self.jwks_file.as_os_str().is_empty()
    }
}

/// Who may do something on a namespace's channels.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// Every connection, even one without credentials.
    Any,
    /// Every authenticated connection of the tenant (an API key needs its scope).
    #[default]
    Authenticated,
    /// Only tokens whose `channels` (or, to publish, `publish`) claim has a pattern covering
    /// the channel, or the `admin` role (an API key needs its scope).
    Claim,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ChannelPermissions {
    pub subscribe: Access,
    pub publish: Access,
    pub history: Access,
    pub presence: Access,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct NamespacePermissions {
    pub name: String,
    pub subscribe: Access,
    pub publish: Access,
    pub history: Access,
    pub presence: Access,
}

impl NamespacePermissions {
    pub fn permissions(&self) -> ChannelPermissions {
        ChannelPermissions {
            subscribe: self.subscribe,
            publish: self.publish,
            history: self.history,
            presence: self.presence,
        }
    }
}

impl AuthConfig {
    /// Every invalid value, each prefixed with its key relative to this section.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut names = std::collections::BTreeSet::new();
        for (i, ns) in self.namespaces.iter().enumerate() {
            let valid =
                ns.name.is_empty() || (!ns.name.contains(':') && pulsewire_model::ChannelName::parse(&ns.name).is_ok());
            if !valid {
                out.push(format!(
                    "namespaces[{i}].name: {:?} is not a valid namespace name",
                    ns.name
                ));
            } else if !names.insert(ns.name.as_str()) {
                out.push(format!("namespaces[{i}].name: {:?} is listed twice", ns.name));
            }
        }
        let jwt = &self.jwt;
        if jwt.has_keys() && !self.enabled {
            out.push("jwt: keys are configured but auth.enabled is false".into());
        }
        if crate::auth::check_tenant(&self.anonymous_tenant).is_err() {
            out.push("anonymous_tenant: use 1 to 64 letters, digits, `-` or `_`".into());
        }
        if !jwt.default_tenant.is_empty() && crate::auth::check_tenant(&jwt.default_tenant).is_err() {
            out.push("jwt.default_tenant: use 1 to 64 letters, digits, `-` or `_`".into());
        }
        if !jwt.hmac_secret.is_empty() && jwt.hmac_secret.len() < 32 {
            out.push("jwt.hmac_secret: must be at least 32 bytes".into());
        }
        if jwt.leeway > Duration::from_secs(300) {
            out.push("jwt.leeway: must be at most 5m".into());
        }
        out
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `text` (human-readable) or `json`.
    pub format: LogFormat,
    /// Filter in `tracing` syntax, e.g. `info` or `pulsewire_server=debug,info`.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WebSocketConfig {
    /// How often the server sends a WebSocket ping.
    #[serde(with = "humantime_serde")]
    pub ping_interval: Duration,
    /// How long the server waits for an answer to a ping before closing with 4005.
    #[serde(with = "humantime_serde")]
    pub pong_timeout: Duration,
    /// With authentication enabled, how long a connection opened without credentials has to
    /// send its first frame (normally `connect`) before it is closed with 4011.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Largest frame a client may send; larger ones close the connection with 4009.
    pub max_frame_bytes: usize,
    /// Read buffer per connection, in bytes (memory per idle connection depends on it).
    pub read_buffer_bytes: usize,
    /// Most queued messages written to the socket in one go.
    pub write_batch: usize,
}

impl Default for WebSocketConfig {
    fn default() -> Self {
        Self {
            ping_interval: Duration::from_secs(25),
            pong_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            max_frame_bytes: 64 * 1024,
            read_buffer_bytes: 256,
            write_batch: 64,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SseConfig {
    /// How often an idle stream gets a comment line, so proxies keep it open.
    #[serde(with = "humantime_serde")]
    pub heartbeat: Duration,
    /// The `retry:` reconnection delay sent to clients.
    #[serde(with = "humantime_serde")]
    pub retry: Duration,
}

impl Default for SseConfig {
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_secs(15),
            retry: Duration::from_secs(2),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Largest request body accepted by the publish API, in bytes (413 above).
    pub max_body_bytes: usize,
    /// A connection whose sent data stays unacknowledged this long (a dead peer, or one that
    /// stopped reading) is closed by the kernel (TCP_USER_TIMEOUT); keepalive probes find idle
    /// dead peers in the same time.
    #[serde(with = "humantime_serde")]
    pub tcp_user_timeout: Duration,
    /// Browser origins allowed to open WebSocket and SSE connections and to call the HTTP API
    /// across origins (CORS): full origins such as `https://app.example.com`, `loopback` (http
    /// or https on localhost, 127.0.0.0/8 or [::1], any port), or `*` for any. Same-origin
    /// requests and requests without an `Origin` header (non-browser clients) always pass.
    pub allowed_origins: Vec<String>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 64 * 1024,
            tcp_user_timeout: Duration::from_secs(30),
            allowed_origins: vec!["loopback".into()],
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ShutdownConfig {
    /// Upper bound on the whole graceful shutdown; what is left is closed at once.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Connections told to reconnect per batch, so they do not all reconnect at once.
    pub batch_size: usize,
    /// Pause between batches.
    #[serde(with = "humantime_serde")]
    pub batch_interval: Duration,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            batch_size: 1000,
            batch_interval: Duration::from_millis(50),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct IngestConfig {
    /// Largest write body, in bytes after gzip decompression (413 above).
    pub max_body_bytes: usize,
    /// Longest line of line protocol, in bytes; longer lines are refused one by one.
    pub max_line_bytes: usize,
    /// Ingested points are published live to `metrics:<measurement>`, gathered over this window
    /// so that a busy measurement makes one publication per window, not one per write.
    #[serde(with = "humantime_serde")]
    pub live_window: Duration,
    /// Points per live publication at most; more are split over several publications.
    pub live_max_points: usize,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 32 << 20,
            max_line_bytes: 64 << 10,
            live_window: Duration::from_millis(3),
            live_max_points: 5000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AnalysisConfig {
    /// Sliding windows of the rolling statistics (`/api/v1/metrics/statistics?window=`, and the
    /// summaries on `stats:<measurement>`).
    pub windows: Vec<humantime_serde::Serde<Duration>>,
    /// How often `stats:<measurement>` carries each series' window summaries (computed once per
    /// tick for all of its subscribers, and only for measurements someone subscribes to).
    #[serde(with = "humantime_serde")]
    pub stats_interval: Duration,
    /// Streaming anomaly detection on every ingested numeric series.
    pub anomaly: AnomalyConfig,
    /// Alert rules from the configuration (`[[analysis.rules]]`); more can be added over the API.
    pub rules: Vec<pulsewire_analysis::alert::RuleSpec>,
    /// Evaluation timing, grouping and throttling of alert notifications.
    pub alerts: AlertsConfig,
    /// Where alert notifications go: webhooks and Prometheus Alertmanagers.
    pub notify: NotifyConfig,
}

impl Default for AnalysisConfig {
    fn default() -> Self {
        Self {
            windows: [60, 300, 3600]
                .into_iter()
                .map(|s| Duration::from_secs(s).into())
                .collect(),
            stats_interval: Duration::from_secs(10),
            anomaly: AnomalyConfig::default(),
            rules: Vec::new(),
            alerts: AlertsConfig::default(),
            notify: NotifyConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AlertsConfig {
    /// How often time alone is checked (absence, `for` elapsing, `keep_firing_for` ending) and
    /// due notifications are sent; thresholds crossed by a point fire as the point arrives.
    #[serde(with = "humantime_serde")]
    pub tick: Duration,
    /// How long resolved alerts stay listed.
    #[serde(with = "humantime_serde")]
    pub resolved_retention: Duration,
    /// Labels whose values group alerts into one notification (`alertname` = the rule's name,
    /// `...` = every label).
    pub group_by: Vec<String>,
    /// How long a new group waits before its first notification, so alerts starting together
    /// are sent together.
    #[serde(with = "humantime_serde")]
    pub group_wait: Duration,
    /// How often a group with changes is notified again.
    #[serde(with = "humantime_serde")]
    pub group_interval: Duration,
    /// How often an unchanged, unacknowledged firing group is notified again.
    #[serde(with = "humantime_serde")]
    pub repeat_interval: Duration,
    /// Alerts that start firing within this of each other on the same source (the first of
    /// `correlation_labels` an alert has) share a `correlation` annotation; 0 turns it off.
    #[serde(with = "humantime_serde")]
    pub correlation_window: Duration,
    pub correlation_labels: Vec<String>,
    /// How far back the alert log is kept for `/api/v1/alerts/stats`.
    #[serde(with = "humantime_serde")]
    pub log_retention: Duration,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            tick: Duration::from_millis(250),
            resolved_retention: Duration::from_secs(15 * 60),
            group_by: vec!["alertname".into()],
            group_wait: Duration::from_secs(30),
            group_interval: Duration::from_secs(5 * 60),
            repeat_interval: Duration::from_secs(4 * 3600),
            correlation_window: Duration::from_secs(60),
            correlation_labels: vec!["host".into(), "source".into()],
            log_retention: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AnomalyConfig {
    /// Score every point of every numeric series as it arrives.
    pub enabled: bool,
    /// The detector (`kind` = `surprise`, `zscore`, `mad` or `ewma`, with its parameters).
    pub detector: pulsewire_analysis::DetectorKind,
    /// Points scoring at least this are published on the `anomalies` channel (0.5 is every
    /// detector's own threshold; anomaly rules choose their own for alerts).
    pub threshold: f64,
    /// Scores at least this high are stored beside the sample (same field, tags and time, in the
    /// measurement `<measurement>:anomaly`); lower ones (ordinary points) are not kept.
    pub store_min_score: f64,
    /// A series without a sample for this long is forgotten (its detector state freed); it
    /// starts a new warm-up if it comes back.
    #[serde(with = "humantime_serde")]
    pub forget_after: Duration,
}

impl Default for AnomalyConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            detector: pulsewire_analysis::DetectorKind::default(),
            threshold: 0.5,
            store_min_score: crate::watch::DEFAULT_STORE_MIN_SCORE,
            forget_after: Duration::from_secs(3600),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct NotifyConfig {
    /// URL of this Pulsewire as people reach it; sent as `externalURL` to webhooks and as each
    /// alert's `generatorURL`. Empty: not sent.
    pub external_url: String,
    /// Notifications waiting per webhook at most; one that finds the queue full goes straight to
    /// the dead-letter log.
    pub queue_size: usize,
    /// Webhooks (`[[analysis.notify.webhooks]]`), each with its own ordered queue.
    pub webhooks: Vec<WebhookConfig>,
    /// Prometheus Alertmanagers (`[[analysis.notify.alertmanagers]]`), fed over their v2 API.
    pub alertmanagers: Vec<AlertmanagerConfig>,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        Self {
            external_url: String::new(),
            queue_size: 1024,
            webhooks: Vec::new(),
            alertmanagers: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookConfig {
    /// Names the webhook in dead letters, stats and the payload's `receiver`; unique.
    pub name: String,
    /// Where notifications are POSTed (http only).
    pub url: String,
    /// Limit on one attempt, connection and answer included.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Attempts after the first before a notification goes to the dead-letter log.
    pub max_retries: u32,
    /// Wait before the first retry; it doubles with every retry (with jitter).
    #[serde(with = "humantime_serde")]
    pub initial_backoff: Duration,
    /// Longest wait between retries.
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
    /// Extra request headers (e.g. `Authorization`).
    pub headers: std::collections::BTreeMap<String, String>,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            url: String::new(),
            timeout: Duration::from_secs(10),
            max_retries: 8,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            headers: Default::default(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AlertmanagerConfig {
    /// Base URL of the Alertmanager, e.g. `http://127.0.0.1:9093` (http only).
    pub url: String,
    /// Limit on one attempt, connection and answer included.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// How often every firing alert is sent again; Alertmanager resolves alerts that are not
    /// refreshed.
    #[serde(with = "humantime_serde")]
    pub resend_interval: Duration,
    /// Attempts after the first before a batch is left for the next re-send.
    pub max_retries: u32,
    /// Wait before the first retry; it doubles with every retry (with jitter).
    #[serde(with = "humantime_serde")]
    pub initial_backoff: Duration,
    /// Longest wait between retries.
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
}

impl Default for AlertmanagerConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            timeout: Duration::from_secs(10),
            resend_interval: Duration::from_secs(60),
            max_retries: 8,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
        }
    }
}

impl NotifyConfig {
    /// Every invalid value, each prefixed with its key relative to this section.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.queue_size == 0 {
            out.push("queue_size: must be at least 1".into());
        }
        if !self.external_url.is_empty() && reqwest::Url::parse(&self.external_url).is_err() {
            out.push("external_url: not a URL".into());
        }
        let retries = |out: &mut Vec<String>, key: &str, timeout: Duration, initial: Duration, max: Duration| {
            if timeout.is_zero() {
                out.push(format!("{key}.timeout: must be above zero"));
            }
            if initial.is_zero() {
                out.push(format!("{key}.initial_backoff: must be above zero"));
            }
            if max < initial {
                out.push(format!("{key}.max_backoff: must be at least initial_backoff"));
            }
        };
        let mut names = std::collections::BTreeSet::new();
        for (i, w) in self.webhooks.iter().enumerate() {
            let key = format!("webhooks[{i}]");
            if w.name.is_empty() {
                out.push(format!("{key}.name: must not be empty"));
            } else if !names.insert(w.name.as_str()) {
                out.push(format!("{key}.name: {:?} is used by another webhook", w.name));
            }
            if let Err(e) = check_http_url(&w.url) {
                out.push(format!("{key}.url: {e}"));
            }
            retries(&mut out, &key, w.timeout, w.initial_backoff, w.max_backoff);
            for (name, value) in &w.headers {
                if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                    out.push(format!("{key}.headers: {name:?} is not a valid header name"));
                } else if reqwest::header::HeaderValue::from_str(value).is_err() {
                    out.push(format!("{key}.headers.{name}: not a valid header value"));
                }
            }
        }
        for (i, a) in self.alertmanagers.iter().enumerate() {
            let key = format!("alertmanagers[{i}]");
            if let Err(e) = check_http_url(&a.url) {
                out.push(format!("{key}.url: {e}"));
            }
            if a.resend_interval.is_zero() {
                out.push(format!("{key}.resend_interval: must be above zero"));
            }
            retries(&mut out, &key, a.timeout, a.initial_backoff, a.max_backoff);
        }
        out
    }
}

/// Notifiers speak plain HTTP: this build carries no TLS stack.
fn check_http_url(url: &str) -> Result<(), String> {
    match reqwest::Url::parse(url) {
        Ok(u) if u.scheme() == "http" && u.host().is_some() => Ok(()),
        Ok(u) if u.scheme() == "https" => Err("https is not supported; use http (e.g. behind a local proxy)".into()),
        Ok(_) => Err("must be an http:// URL with a host".into()),
        Err(e) => Err(format!("not a URL ({e})")),
    }
}

/// Room left in `hub.queue.max_bytes` for what a message frame adds to its payload.
const FRAME_OVERHEAD: usize = 1024;

impl Config {
    /// Every invalid value, each prefixed with its key.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let positive = |out: &mut Vec<String>, key: &str, d: Duration| {
            if d.is_zero() {
                out.push(format!("{key}: must be above zero"));
            }
        };
        positive(&mut out, "websocket.ping_interval", self.websocket.ping_interval);
        positive(&mut out, "websocket.pong_timeout", self.websocket.pong_timeout);
        positive(&mut out, "websocket.connect_timeout", self.websocket.connect_timeout);
        out.extend(self.auth.problems().into_iter().map(|p| format!("auth.{p}")));
        if self.collector.enabled && self.collector.interval < Duration::from_millis(100) {
            out.push("collector.interval: must be at least 100ms".into());
        }
        if self.collector.database.is_empty() {
            out.push("collector.database: must not be empty".into());
        }
        positive(&mut out, "sse.heartbeat", self.sse.heartbeat);
        positive(&mut out, "shutdown.timeout", self.shutdown.timeout);
        positive(&mut out, "http.tcp_user_timeout", self.http.tcp_user_timeout);
        if self.websocket.max_frame_bytes < 256 {
            out.push("websocket.max_frame_bytes: must be at least 256".into());
        }
        if !(256..=1 << 20).contains(&self.websocket.read_buffer_bytes) {
            out.push("websocket.read_buffer_bytes: must be between 256 and 1048576".into());
        }
        if self.websocket.write_batch == 0 {
            out.push("websocket.write_batch: must be at least 1".into());
        }
        if self.ingest.max_body_bytes < 1024 {
            out.push("ingest.max_body_bytes: must be at least 1024".into());
        }
        if self.ingest.max_line_bytes < 256 {
            out.push("ingest.max_line_bytes: must be at least 256".into());
        }
        positive(&mut out, "ingest.live_window", self.ingest.live_window);
        if self.ingest.live_max_points == 0 {
            out.push("ingest.live_max_points: must be at least 1".into());
        }
        out.extend(self.tsdb.problems().into_iter().map(|p| format!("tsdb.{p}")));
        positive(&mut out, "analysis.stats_interval", self.analysis.stats_interval);
        if self.analysis.windows.is_empty() || self.analysis.windows.iter().any(|w| w.is_zero()) {
            out.push("analysis.windows: must list at least one window, each above zero".into());
        }
        if !(self.analysis.anomaly.threshold > 0.0 && self.analysis.anomaly.threshold <= 1.0) {
            out.push("analysis.anomaly.threshold: must be above 0 and at most 1".into());
        }
        if !(0.0..=1.0).contains(&self.analysis.anomaly.store_min_score) {
            out.push("analysis.anomaly.store_min_score: must be between 0 and 1".into());
        }
        if let Err(e) = self.analysis.anomaly.detector.validate() {
            out.push(format!("analysis.anomaly.detector: {e}"));
        }
        if let Err(errors) = pulsewire_analysis::alert::validate(&self.analysis.rules) {
            out.extend(errors.into_iter().map(|e| format!("analysis.{e}")));
        }
        if !self.analysis.anomaly.enabled {
            for (i, r) in self.analysis.rules.iter().enumerate() {
                if r.kind == "anomaly" {
                    out.push(format!(
                        "analysis.rules[{i}].kind: anomaly rules need anomaly detection (analysis.anomaly.enabled is false)"
                    ));
                }
            }
        }
        positive(&mut out, "analysis.alerts.tick", self.analysis.alerts.tick);
        positive(
            &mut out,
            "analysis.anomaly.forget_after",
            self.analysis.anomaly.forget_after,
        );
        if self.analysis.alerts.group_by.is_empty() {
            out.push("analysis.alerts.group_by: must name at least one label (or `...`)".into());
        }
        out.extend(
            self.analysis
                .notify
                .problems()
                .into_iter()
                .map(|p| format!("analysis.notify.{p}")),
        );
        if self.http.max_body_bytes < 256 {
            out.push("http.max_body_bytes: must be at least 256".into());
        }
        // A publication must fit in a connection's queue, or it would be dropped for everyone;
        // its frame adds up to ~1 KiB (envelope, channel name, pattern) to the payload.
        let queue_bytes = self.hub.queue.max_bytes.saturating_sub(FRAME_OVERHEAD);
        if self.http.max_body_bytes > queue_bytes {
            out.push(format!(
                "http.max_body_bytes: {} is above hub.queue.max_bytes less 1024 ({queue_bytes})",
                self.http.max_body_bytes
            ));
        }
        if self.websocket.max_frame_bytes > queue_bytes {
            out.push(format!(
                "websocket.max_frame_bytes: {} is above hub.queue.max_bytes less 1024 ({queue_bytes})",
                self.websocket.max_frame_bytes
            ));
        }
        if self.shutdown.batch_size == 0 {
            out.push("shutdown.batch_size: must be at least 1".into());
        }
        out.extend(self.hub.problems("hub."));
        for (i, o) in self.http.allowed_origins.iter().enumerate() {
            if let Err(e) = crate::limits::check_origin_entry(o) {
                out.push(format!("http.allowed_origins[{i}]: {e}"));
            }
        }
        let l = &self.limits;
        if l.messages_per_second > 0 && l.message_burst == 0 {
            out.push("limits.message_burst: must be at least 1".into());
        }
        if l.ingest_points_per_second > 0 && l.ingest_points_burst == 0 {
            out.push("limits.ingest_points_burst: must be at least 1".into());
        }
        if l.flood_factor < 2 {
            out.push("limits.flood_factor: must be at least 2".into());
        }
        positive(&mut out, "limits.flood_window", l.flood_window);
        positive(&mut out, "limits.prune_interval", l.prune_interval);
        if l.max_tracked_keys == 0 {
            out.push("limits.max_tracked_keys: must be at least 1".into());
        }
        match (
            self.tls.cert_file.as_os_str().is_empty(),
            self.tls.key_file.as_os_str().is_empty(),
        ) {
            (false, true) => out.push("tls.key_file: must be set with tls.cert_file".into()),
            (true, false) => out.push("tls.cert_file: must be set with tls.key_file".into()),
            _ => {}
        }
        if self.audit.max_bytes < 4096 {
            out.push("audit.max_bytes: must be at least 4096".into());
        }
        if self.audit.queue == 0 {
            out.push("audit.queue: must be at least 1".into());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(Config::default().problems(), Vec::<String>::new());
    }

    #[test]
    fn every_problem_is_named() {
        let mut c = Config::default();
        c.websocket.ping_interval = Duration::ZERO;
        c.http.max_body_bytes = 1;
        c.hub.queue.max_messages = 0;
        c.hub.namespaces.insert("bad ns".into(), Default::default());
        assert_eq!(
            c.problems(),
            vec![
                "websocket.ping_interval: must be above zero",
                "http.max_body_bytes: must be at least 256",
                "hub.namespaces.bad ns: not a valid namespace name",
                "hub.queue.max_messages: must be at least 1",
            ]
        );
    }

    #[test]
    fn notifier_problems_are_named_by_key() {
        let mut c = Config::default();
        c.analysis.notify.webhooks = vec![
            WebhookConfig {
                name: "ops".into(),
                url: "http://127.0.0.1:1/hook".into(),
                ..Default::default()
            },
            WebhookConfig {
                name: "ops".into(),
                url: "ftp://x".into(),
                max_backoff: Duration::from_millis(1),
                headers: [("bad header".to_string(), "v".to_string())].into(),
                ..Default::default()
            },
        ];
        c.analysis.notify.alertmanagers = vec![AlertmanagerConfig {
            url: "https://am:9093".into(),
            resend_interval: Duration::ZERO,
            ..Default::default()
        }];
        assert_eq!(
            c.problems(),
            vec![
                "analysis.notify.webhooks[1].name: \"ops\" is used by another webhook",
                "analysis.notify.webhooks[1].url: must be an http:// URL with a host",
                "analysis.notify.webhooks[1].max_backoff: must be at least initial_backoff",
                "analysis.notify.webhooks[1].headers: \"bad header\" is not a valid header name",
                "analysis.notify.alertmanagers[0].url: https is not supported; use http (e.g. behind a local proxy)",
                "analysis.notify.alertmanagers[0].resend_interval: must be above zero",
            ]
        );
    }
}
