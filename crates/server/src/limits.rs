//! The limits that let many tenants share one node: new connections per user and per address,
//! open connections per user and per tenant, frames per WebSocket connection, ingested points per
//! API key; browser origin checks for WebSocket and SSE and CORS for the HTTP API; and the
//! `pulsewire_limit_refusals_total{limit}` counter every refusal (these and the older size and
//! series limits) is counted in. Rate limits are `governor` buckets (GCRA); the keyed ones are
//! capped in size and pruned on a timer, so a flood of distinct keys cannot grow them without
//! bound.
//!
//! The transports call in at three places: [`admit`] (a middleware on `/ws` and `/sse`, after
//! authentication) hands out a [`ConnectionPermit`] the connection holds until it ends, and a
//! WebSocket connection asks its [`MessageGate`] about every frame.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock as _, DefaultClock};
use governor::nanos::Nanos;
use governor::state::keyed::{DashMapStateStore, ShrinkableKeyedStateStore};
use governor::state::{InMemoryState, NotKeyed, StateStore};
use governor::{Quota, RateLimiter};
use parking_lot::Mutex;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use pulsewire_model::TenantId;
use pulsewire_proto::ErrorCode;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::AppState;
use crate::audit::Actor;
use crate::auth::Principal;
use crate::config::Config;

/// Every limit, as the `limit` label of `pulsewire_limit_refusals_total`. Stable names.
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum Limit {
    /// `limits.new_connections_per_user_per_minute`.
    new_connections_per_user,
    /// `limits.new_connections_per_ip_per_minute`.
    new_connections_per_ip,
    /// `limits.max_connections_per_user`.
    connections_per_user,
    /// `limits.max_connections_per_tenant`.
    connections_per_tenant,
    /// `limits.messages_per_second`: one frame dropped.
    messages_per_connection,
    /// `limits.flood_factor` over `limits.flood_window`: one connection closed (4029).
    message_flood,
    /// `hub.max_subscriptions_per_client`: one subscribe refused.
    subscriptions_per_connection,
    /// `websocket.max_frame_bytes`: one connection closed (4009).
    frame_bytes,
    /// `http.max_body_bytes`: one request refused (413).
    http_body_bytes,
    /// `ingest.max_body_bytes`: one write refused (413).
    ingest_body_bytes,
    /// `ingest.max_line_bytes`: one line refused.
    ingest_line_bytes,
    /// `limits.ingest_points_per_second`: one write refused (429).
    ingest_points,
    /// `tsdb.limits.max_tags_per_series`: one line refused.
    tags_per_series,
    /// `tsdb.limits.max_series_per_database`: one line refused.
    series_per_database,
    /// `tsdb.limits.max_new_series_per_minute`: one line refused.
    new_series_per_minute,
    /// `tsdb.limits.max_series_per_tenant` (or the tenant's own quota): one line refused.
    series_per_tenant,
    /// `http.allowed_origins`: one WebSocket or SSE connection refused (403).
    origin,
}

impl Limit {
    const ALL: [Limit; 17] = [
        Limit::new_connections_per_user,
        Limit::new_connections_per_ip,
        Limit::connections_per_user,
        Limit::connections_per_tenant,
        Limit::messages_per_connection,
        Limit::message_flood,
        Limit::subscriptions_per_connection,
        Limit::frame_bytes,
        Limit::http_body_bytes,
        Limit::ingest_body_bytes,
        Limit::ingest_line_bytes,
        Limit::ingest_points,
        Limit::tags_per_series,
        Limit::series_per_database,
        Limit::new_series_per_minute,
        Limit::series_per_tenant,
        Limit::origin,
    ];

    /// The label of a store refusal's limit.
    pub fn of_store(l: pulsewire_tsdb::StoreLimit) -> Limit {
        match l {
            pulsewire_tsdb::StoreLimit::TagsPerSeries => Limit::tags_per_series,
            pulsewire_tsdb::StoreLimit::SeriesPerDatabase => Limit::series_per_database,
            pulsewire_tsdb::StoreLimit::NewSeriesPerMinute => Limit::new_series_per_minute,
            pulsewire_tsdb::StoreLimit::SeriesPerTenant => Limit::series_per_tenant,
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabels {
    pub limit: Limit,
}

/// The keyed rate limiters, as the `limiter` label of `pulsewire_limiter_keys`.
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum LimiterName {
    new_connections_per_user,
    new_connections_per_ip,
    ingest_points,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimiterLabels {
    pub limiter: LimiterName,
}

/// The limits' counters and gauges.
#[derive(Debug, Default)]
pub struct LimitMetrics {
    pub refusals: Family<LimitLabels, Counter>,
    pub tracked_keys: Family<LimiterLabels, Gauge>,
}

impl LimitMetrics {
    pub fn register(&self, r: &mut Registry) {
        // Every label exists from the start, so a scrape shows each limit at 0.
        for limit in Limit::ALL {
            let _ = self.refusals.get_or_create(&LimitLabels { limit });
        }
        r.register(
            "pulsewire_limit_refusals",
            "Requests, connections, frames and lines refused by a limit, by limit",
            self.refusals.clone(),
        );
        r.register(
            "pulsewire_limiter_keys",
            "Keys (users, addresses, API keys) a keyed rate limiter tracks, as of its last pruning",
            self.tracked_keys.clone(),
        );
    }
}

/// Keys that cannot be a real key (those all have a `kind:` prefix): the shared bucket of keys a
/// full limiter does not hold.
const OVERFLOW: &str = "overflow";

/// A keyed state store holding at most `cap` keys (plus the overflow bucket): once full, a key
/// it does not hold is measured against the one shared overflow bucket instead of being added,
/// so a flood of distinct keys is rate limited as one until pruning makes room.
pub struct CappedStore {
    map: DashMapStateStore<String>,
    cap: usize,
    overflow: String,
}

impl CappedStore {
    fn new(cap: usize) -> Self {
        Self {
            map: DashMapStateStore::default(),
            cap,
            overflow: OVERFLOW.to_owned(),
        }
    }
}

impl StateStore for CappedStore {
    type Key = String;

    fn measure_and_replace<T, F, E>(&self, key: &String, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        // Concurrent first uses may each add a key past the check: the map can exceed `cap` by
        // at most the number of threads, which is still a bound.
        if self.map.len() >= self.cap && !self.map.contains_key(key) {
            return self.map.measure_and_replace(&self.overflow, f);
        }
        self.map.measure_and_replace(key, f)
    }
}

impl ShrinkableKeyedStateStore<String> for CappedStore {
    fn retain_recent(&self, drop_below: Nanos) {
        self.map.retain_recent(drop_below);
    }

    fn shrink_to_fit(&self) {
        ShrinkableKeyedStateStore::shrink_to_fit(&self.map);
    }

    fn len(&self) -> usize {
        ShrinkableKeyedStateStore::len(&self.map)
    }

    fn is_empty(&self) -> bool {
        ShrinkableKeyedStateStore::is_empty(&self.map)
    }
}

type Keyed = RateLimiter<String, CappedStore, DefaultClock>;
type Direct = RateLimiter<NotKeyed, InMemoryState, DefaultClock>;

fn keyed(quota: Option<Quota>, cap: usize, clock: &DefaultClock) -> Option<Keyed> {
    quota.map(|q| RateLimiter::new(q, CappedStore::new(cap), clock.clone()))
}

/// Whole seconds to wait, at least one (for `Retry-After`).
fn retry_secs(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

/// `Retry-After` for a refusal that no timer ends (an open connection must close first).
const CONNECTIONS_RETRY_SECS: u64 = 5;

/// The node's limits and their state.
pub struct Limits {
    cfg: crate::config::LimitsConfig,
    clock: DefaultClock,
    per_user: Option<Keyed>,
    per_ip: Option<Keyed>,
    ingest: Option<Keyed>,
    ingest_burst: u32,
    open: Mutex<OpenCounts>,
    origins: Arc<Origins>,
    metrics: LimitMetrics,
    /// Where each refusal is also recorded (set once the server's state exists).
    audit: std::sync::OnceLock<Arc<crate::audit::Audit>>,
    /// Refusals not yet in the audit log, per (who, where from, limit), with the time of the
    /// last record: at most one record per second each, carrying the count, so a flood of
    /// refused frames cannot rotate the log's history away.
    audit_pending: Mutex<HashMap<AuditKey, (std::time::Instant, u64)>>,
}

/// Who was refused, from where, by which limit.
type AuditKey = (String, Option<SocketAddr>, Limit);

/// Most (who, limit) pairs whose refusals are being summed for the audit log; past it the
/// table is cleared (losing at most a second's counts of some pairs).
const AUDIT_PENDING_MAX: usize = 10_000;

#[derive(Default)]
struct OpenCounts {
    per_user: HashMap<String, usize>,
    per_tenant: HashMap<String, usize>,
}

impl Limits {
    pub fn new(config: &Config) -> Arc<Limits> {
        let cfg = config.limits.clone();
        let clock = DefaultClock::default();
        let per_minute = |n: u32| NonZeroU32::new(n).map(Quota::per_minute);
        let cap = cfg.max_tracked_keys.max(1);
        let ingest_burst = cfg.ingest_points_burst.max(1);
        let ingest_quota = NonZeroU32::new(cfg.ingest_points_per_second)
            .map(|r| Quota::per_second(r).allow_burst(NonZeroU32::new(ingest_burst).unwrap_or(r)));
        Arc::new(Limits {
            per_user: keyed(per_minute(cfg.new_connections_per_user_per_minute), cap, &clock),
            per_ip: keyed(per_minute(cfg.new_connections_per_ip_per_minute), cap, &clock),
            ingest: keyed(ingest_quota, cap, &clock),
            ingest_burst,
            clock,
            open: Mutex::new(OpenCounts::default()),
            origins: Arc::new(Origins::new(&config.http.allowed_origins)),
            metrics: LimitMetrics::default(),
            audit: std::sync::OnceLock::new(),
            audit_pending: Mutex::new(HashMap::new()),
            cfg,
        })
    }

    pub fn metrics(&self) -> &LimitMetrics {
        &self.metrics
    }

    pub fn set_audit(&self, audit: Arc<crate::audit::Audit>) {
        let _ = self.audit.set(audit);
    }

    /// Counts one refusal by `limit`, and records it in the audit log.
    pub fn refused(&self, limit: Limit, who: &Actor) {
        self.refused_n(limit, 1, who);
    }

    /// Counts `n` refusals by `limit` (lines of one write), recorded as one audit record.
    pub fn refused_n(&self, limit: Limit, n: u64, who: &Actor) {
        if n > 0 {
            self.metrics.refusals.get_or_create(&LimitLabels { limit }).inc_by(n);
            if let Some(audit) = self.audit.get() {
                let count = {
                    let mut pending = self.audit_pending.lock();
                    if pending.len() >= AUDIT_PENDING_MAX {
                        pending.clear();
                    }
                    let now = std::time::Instant::now();
                    let key = (who.who.clone(), who.from, limit);
                    let entry = pending
                        .entry(key)
                        .or_insert((now - std::time::Duration::from_secs(2), 0));
                    entry.1 += n;
                    if now.duration_since(entry.0) >= std::time::Duration::from_secs(1) {
                        entry.0 = now;
                        Some(std::mem::take(&mut entry.1))
                    } else {
                        None
                    }
                };
                if let Some(count) = count {
                    // The variants are named as their labels.
                    let label = format!("{limit:?}");
                    audit.record(
                        crate::audit::event::LIMIT,
                        crate::audit::outcome::REFUSED,
                        who,
                        serde_json::json!({ "limit": label, "count": count }),
                    );
                }
            }
        }
    }

    /// Counts a refusal known by its error code, for the limits enforced elsewhere (the hub's
    /// subscriptions per connection, frame and body sizes).
    pub fn count_code(&self, code: ErrorCode, limit_for_size: Limit, who: &Actor) {
        match code {
            ErrorCode::TooManySubscriptions => self.refused(Limit::subscriptions_per_connection, who),
            ErrorCode::FrameTooLarge => self.refused(limit_for_size, who),
            _ => {}
        }
    }

    /// Keys each keyed limiter holds now.
    pub fn tracked_keys(&self) -> [(LimiterName, usize); 3] {
        let len = |l: &Option<Keyed>| l.as_ref().map_or(0, |l| l.len());
        [
            (LimiterName::new_connections_per_user, len(&self.per_user)),
            (LimiterName::new_connections_per_ip, len(&self.per_ip)),
            (LimiterName::ingest_points, len(&self.ingest)),
        ]
    }

    /// Forgets the keys whose budget is full again, and publishes how many are left.
    pub fn prune(&self) {
        for l in [&self.per_user, &self.per_ip, &self.ingest].into_iter().flatten() {
            l.retain_recent();
            l.shrink_to_fit();
        }
        for (limiter, n) in self.tracked_keys() {
            self.metrics
                .tracked_keys
                .get_or_create(&LimiterLabels { limiter })
                .set(n as i64);
        }
    }

    fn check(&self, limiter: &Option<Keyed>, key: &String) -> Result<(), u64> {
        let Some(l) = limiter else { return Ok(()) };
        l.check_key(key)
            .map_err(|not_until| retry_secs(not_until.wait_time_from(self.clock.now())))
    }

    /// The new-connection rate limits and the open-connection limits for `caller`, in that
    /// order; the permit releases its counts when dropped.
    pub fn admit_connection(self: &Arc<Self>, caller: &Caller) -> Result<ConnectionPermit, Refusal> {
        if caller.exempt {
            return Ok(ConnectionPermit::none());
        }
        let ip = format!("ip:{}", caller.ip);
        if let Err(secs) = self.check(&self.per_ip, &ip) {
            self.refused(Limit::new_connections_per_ip, &caller.actor);
            return Err(Refusal::rate_limited(
                secs,
                format!(
                    "too many new connections from {}: the limit is {} per minute",
                    caller.ip, self.cfg.new_connections_per_ip_per_minute
                ),
            ));
        }
        if let Err(secs) = self.check(&self.per_user, &caller.user) {
            self.refused(Limit::new_connections_per_user, &caller.actor);
            return Err(Refusal::rate_limited(
                secs,
                format!(
                    "too many new connections for this user: the limit is {} per minute",
                    self.cfg.new_connections_per_user_per_minute
                ),
            ));
        }
        let mut open = self.open.lock();
        let user_open = open.per_user.get(&caller.user).copied().unwrap_or(0);
        let max_user = self.cfg.max_connections_per_user;
        if max_user > 0 && user_open >= max_user {
            drop(open);
            self.refused(Limit::connections_per_user, &caller.actor);
            return Err(Refusal::too_many(format!(
                "this user already holds {user_open} connections, the limit is {max_user}"
            )));
        }
        let tenant = caller.tenant.as_str().to_owned();
        let tenant_open = open.per_tenant.get(&tenant).copied().unwrap_or(0);
        let max_tenant = self.cfg.max_connections_per_tenant;
        if max_tenant > 0 && tenant_open >= max_tenant {
            drop(open);
            self.refused(Limit::connections_per_tenant, &caller.actor);
            return Err(Refusal::too_many(format!(
                "tenant {tenant} already holds {tenant_open} connections, the limit is {max_tenant}"
            )));
        }
        *open.per_user.entry(caller.user.clone()).or_default() += 1;
        *open.per_tenant.entry(tenant.clone()).or_default() += 1;
        Ok(ConnectionPermit {
            held: Some((self.clone(), caller.user.clone(), tenant)),
        })
    }

    fn release(&self, user: &str, tenant: &str) {
        let mut open = self.open.lock();
        let open = &mut *open;
        for (map, key) in [(&mut open.per_user, user), (&mut open.per_tenant, tenant)] {
            if let Some(n) = map.get_mut(key) {
                *n -= 1;
                if *n == 0 {
                    map.remove(key);
                }
            }
        }
    }

    /// Open connections counted for a user and a tenant (for tests and diagnostics).
    pub fn open_connections(&self, user: &str, tenant: &str) -> (usize, usize) {
        let open = self.open.lock();
        (
            open.per_user.get(user).copied().unwrap_or(0),
            open.per_tenant.get(tenant).copied().unwrap_or(0),
        )
    }

    /// The ingest rate limit: `points` more points for `caller`; `Err` holds the seconds to wait.
    /// A write larger than the burst waits for a full bucket and takes all of it.
    pub fn check_ingest(&self, caller: &Caller, points: usize) -> Result<(), u64> {
        if caller.exempt || points == 0 {
            return Ok(());
        }
        let Some(l) = &self.ingest else { return Ok(()) };
        let n = u32::try_from(points).unwrap_or(u32::MAX).min(self.ingest_burst);
        let n = NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
        match l.check_key_n(&caller.ingest_key, n) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => {
                self.refused(Limit::ingest_points, &caller.actor);
                Err(retry_secs(not_until.wait_time_from(self.clock.now())))
            }
            // Cannot happen: `n` is at most the burst.
            Err(_) => Ok(()),
        }
    }

    pub fn ingest_points_per_second(&self) -> u32 {
        self.cfg.ingest_points_per_second
    }

    /// The frame gate of one new WebSocket connection.
    pub fn message_gate(&self) -> MessageGate {
        let cfg = &self.cfg;
        let limiter = NonZeroU32::new(cfg.messages_per_second).map(|r| {
            let burst = NonZeroU32::new(cfg.message_burst).unwrap_or(NonZeroU32::MIN);
            Box::new(RateLimiter::direct_with_clock(
                Quota::per_second(r).allow_burst(burst),
                self.clock.clone(),
            ))
        });
        let window = cfg.flood_window;
        let max_in_window = (u64::from(cfg.messages_per_second) * u64::from(cfg.flood_factor))
            .saturating_mul(window.as_millis() as u64)
            / 1000;
        MessageGate {
            limiter,
            window,
            window_start: tokio::time::Instant::now(),
            seen: 0,
            max_in_window: max_in_window.max(1),
        }
    }

    pub fn origins(&self) -> &Arc<Origins> {
        &self.origins
    }
}

/// A refused connection: status 429 with `Retry-After` and `{"code", "message"}`.
#[derive(Debug)]
pub struct Refusal {
    pub code: ErrorCode,
    pub retry_after: u64,
    pub message: String,
}

impl Refusal {
    fn rate_limited(retry_after: u64, message: String) -> Self {
        Self {
            code: ErrorCode::RateLimited,
            retry_after,
            message,
        }
    }

    fn too_many(message: String) -> Self {
        Self {
            code: ErrorCode::TooManyConnections,
            retry_after: CONNECTIONS_RETRY_SECS,
            message,
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let retry = self.retry_after.to_string();
        let mut resp = crate::ApiError::new(self.code, self.message).into_response();
        if let Ok(v) = HeaderValue::from_str(&retry) {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    }
}

/// One WebSocket or SSE connection's place in the per-user and per-tenant counts, given back
/// when dropped (when the connection ends, or when an upgrade never happens).
pub struct ConnectionPermit {
    held: Option<(Arc<Limits>, String, String)>,
}

impl std::fmt::Debug for ConnectionPermit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let held = self.held.as_ref().map(|(_, user, tenant)| (user, tenant));
        f.debug_struct("ConnectionPermit").field("held", &held).finish()
    }
}

impl ConnectionPermit {
    fn none() -> Self {
        Self { held: None }
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        if let Some((limits, user, tenant)) = self.held.take() {
            limits.release(&user, &tenant);
        }
    }
}

/// The permit [`admit`] left for the handler, taken out of the request by the handler (an empty
/// one where no admission ran).
pub struct Permit(pub ConnectionPermit);

#[derive(Clone)]
struct PermitSlot(Arc<Mutex<Option<ConnectionPermit>>>);

impl<S: Send + Sync> FromRequestParts<S> for Permit {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let permit = parts.extensions.remove::<PermitSlot>().and_then(|s| s.0.lock().take());
        Ok(Permit(permit.unwrap_or_else(ConnectionPermit::none)))
    }
}

/// Who a request counts against.
#[derive(Debug, Clone)]
pub struct Caller {
    /// `key:<id>` for an API key, else `ip:<address>`. (Where connection tokens name a
    /// subject, that subject is the user.)
    pub user: String,
    pub ip: IpAddr,
    pub tenant: TenantId,
    /// The ingest bucket: `key:<id>`, or `tenant:<name>` without authentication.
    pub ingest_key: String,
    /// A loopback client without a key while `limits.exempt_loopback` is on.
    pub exempt: bool,
    /// Who the audit log names for this caller.
    pub actor: Actor,
}

impl Caller {
    /// The server itself (the host collector, the demo fleet): never limited.
    pub fn server(tenant: TenantId) -> Caller {
        Caller {
            user: "server".into(),
            ip: IpAddr::from([127, 0, 0, 1]),
            ingest_key: format!("tenant:{}", tenant.as_str()),
            tenant,
            exempt: true,
            actor: crate::audit::Actor::server(),
        }
    }

    fn of(parts: &Parts, exempt_loopback: bool) -> Caller {
        let remote = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
        // WebSocket and SSE requests carry the connection's identity.
        let identity = parts.extensions.get::<crate::permissions::Identity>();
        Caller::of_identity(identity, parts.extensions.get::<Principal>(), remote, exempt_loopback)
    }

    /// Who a connection or request counts against, from its identity (WebSocket and SSE) or its
    /// API key (HTTP): a token's user is its `sub` within its tenant.
    pub fn of_identity(
        identity: Option<&crate::permissions::Identity>,
        principal: Option<&Principal>,
        remote: Option<SocketAddr>,
        exempt_loopback: bool,
    ) -> Caller {
        let ip = remote.map_or(IpAddr::from([0, 0, 0, 0]), |c| c.ip().to_canonical());
        if let Some(crate::permissions::Identity::Token(claims)) = identity {
            let user = format!("sub:{}/{}", claims.tenant.as_str(), claims.sub);
            return Caller {
                ingest_key: user.clone(),
                user,
                ip,
                tenant: claims.tenant.clone(),
                exempt: false,
                actor: Actor {
                    who: format!("sub:{}", claims.sub),
                    tenant: claims.tenant.clone(),
                    from: remote,
                },
            };
        }
        let principal = principal.or(match identity {
            Some(crate::permissions::Identity::Key(p)) => Some(p),
            _ => None,
        });
        let tenant = match (principal, identity) {
            (Some(p), _) => p.tenant.clone(),
            (None, Some(id)) => id.tenant(),
            (None, None) => TenantId::default_tenant(),
        };
        match principal {
            Some(p) => Caller {
                user: format!("key:{}", p.key_id),
                ip,
                ingest_key: format!("key:{}", p.key_id),
                actor: Actor::key(p, remote),
                tenant,
                exempt: false,
            },
            None => Caller {
                user: format!("ip:{ip}"),
                ip,
                ingest_key: format!("tenant:{}", tenant.as_str()),
                actor: Actor::anonymous(tenant.clone(), remote),
                tenant,
                exempt: exempt_loopback && ip.is_loopback(),
            },
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        Ok(Caller::of(parts, state.config().limits.exempt_loopback))
    }
}

/// Middleware on `/ws` and `/sse`, after authentication: the browser origin check (403
/// `origin_not_allowed`), then the connection limits (429 `rate_limited` or
/// `too_many_connections`, with `Retry-After`), before any upgrade or stream starts.
pub async fn admit(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let limits = state.limits();
    let (mut parts, body) = req.into_parts();
    let caller = Caller::of(&parts, state.config().limits.exempt_loopback);
    if let Some(origin) = parts.headers.get(header::ORIGIN) {
        let host = parts
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| parts.uri.authority().map(|a| a.as_str()));
        let allowed = origin.to_str().is_ok_and(|o| limits.origins.allows(o, host));
        if !allowed {
            limits.refused(Limit::origin, &caller.actor);
            let shown = String::from_utf8_lossy(origin.as_bytes()).into_owned();
            tracing::debug!(origin = %shown, path = parts.uri.path(), "origin refused");
            let message = format!("origin {shown:?} is not allowed (http.allowed_origins)");
            let body = serde_json::json!({ "code": ErrorCode::OriginNotAllowed.as_str(), "message": message });
            return (StatusCode::FORBIDDEN, Json(body)).into_response();
        }
    }
    match limits.admit_connection(&caller) {
        Ok(permit) => {
            parts.extensions.insert(PermitSlot(Arc::new(Mutex::new(Some(permit)))));
            next.run(Request::from_parts(parts, body)).await
        }
        Err(refusal) => {
            tracing::debug!(user = %caller.user, code = refusal.code.as_str(), "connection refused");
            refusal.into_response()
        }
    }
}

/// What to do with one frame from a WebSocket client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    /// Over the rate: answer `rate_limited` and drop the frame.
    Drop,
    /// Flooding: close the connection with 4029.
    Close,
}

/// Per-connection frame limit: a `governor` bucket of `messages_per_second` with
/// `message_burst`, and a count of frames per `flood_window` past which the connection is closed.
pub struct MessageGate {
    limiter: Option<Box<Direct>>,
    window: Duration,
    window_start: tokio::time::Instant,
    seen: u64,
    max_in_window: u64,
}

impl MessageGate {
    pub fn check(&mut self) -> Verdict {
        let Some(limiter) = &self.limiter else {
            return Verdict::Pass;
        };
        let now = tokio::time::Instant::now();
        if now.duration_since(self.window_start) >= self.window {
            self.window_start = now;
            self.seen = 0;
        }
        self.seen += 1;
        if self.seen > self.max_in_window {
            return Verdict::Close;
        }
        if limiter.check().is_ok() {
            Verdict::Pass
        } else {
            Verdict::Drop
        }
    }
}

/// Origins allowed for browsers (`http.allowed_origins`).
#[derive(Debug, Default)]
pub struct Origins {
    any: bool,
    loopback: bool,
    exact: HashSet<String>,
}

/// Splits `scheme://host[:port]` into its scheme and authority; `None` for anything else.
fn split_origin(origin: &str) -> Option<(&str, &str)> {
    let (scheme, authority) = origin.split_once("://")?;
    if authority.is_empty() || authority.contains(['/', '?', '#', '@', ' ']) {
        return None;
    }
    Some((scheme, authority))
}

/// The host of an authority, without port or IPv6 brackets.
fn host_of(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    authority.rsplit_once(':').map_or(authority, |(h, _)| h)
}

fn is_loopback_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost") || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Whether an `http.allowed_origins` entry is one we understand.
pub fn check_origin_entry(entry: &str) -> Result<(), String> {
    if entry == "*" || entry == "loopback" {
        return Ok(());
    }
    match split_origin(entry) {
        Some(("http" | "https", _)) => Ok(()),
        _ => Err(format!(
            "{entry:?} is not an origin (scheme://host[:port], no path), `loopback` or `*`"
        )),
    }
}

impl Origins {
    pub fn new(entries: &[String]) -> Self {
        let mut o = Origins::default();
        for e in entries {
            match e.as_str() {
                "*" => o.any = true,
                "loopback" => o.loopback = true,
                other => {
                    o.exact.insert(other.trim_end_matches('/').to_ascii_lowercase());
                }
            }
        }
        o
    }

    /// Whether a request with this `Origin` (and `Host`) may go on: same-origin requests, listed
    /// origins, loopback origins when `loopback` is listed, anything with `*`.
    pub fn allows(&self, origin: &str, host: Option<&str>) -> bool {
        if self.any {
            return true;
        }
        let Some((scheme, authority)) = split_origin(origin) else {
            // `null` (sandboxed frames, file pages) and garbage.
            return false;
        };
        if host.is_some_and(|h| h.eq_ignore_ascii_case(authority)) {
            return true;
        }
        if self.loopback && matches!(scheme, "http" | "https") && is_loopback_host(host_of(authority)) {
            return true;
        }
        self.exact.contains(&origin.to_ascii_lowercase())
    }
}

/// CORS for the HTTP API from `http.allowed_origins`: preflights are answered here (before
/// authentication, which a preflight never carries), and allowed origins may send the
/// `Authorization` header and read `Retry-After`.
pub fn cors_layer(limits: &Limits) -> tower_http::cors::CorsLayer {
    use tower_http::cors::{AllowOrigin, CorsLayer};
    let origins = limits.origins.clone();
    CorsLayer::new()
        .allow_origin(AllowOrigin::predicate(move |origin: &HeaderValue, parts: &Parts| {
            let host = parts
                .headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .or_else(|| parts.uri.authority().map(|a| a.as_str()));
            origin.to_str().is_ok_and(|o| origins.allows(o, host))
        }))
        .allow_methods([Method::GET, Method::HEAD, Method::POST, Method::PUT, Method::DELETE])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::CONTENT_ENCODING,
            header::HeaderName::from_static("last-event-id"),
        ])
        .expose_headers([header::RETRY_AFTER])
        .allow_credentials(true)
        .max_age(Duration::from_secs(3600))
}

/// Prunes the keyed rate limiters every `limits.prune_interval`.
pub fn spawn_pruner(state: AppState, stop: CancellationToken) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(state.config().limits.prune_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => state.limits().prune(),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        let o = Origins::new(&["loopback".into(), "https://app.example.com/".into()]);
        assert!(o.allows("http://localhost:3000", None));
        assert!(o.allows("http://127.0.0.1", None));
        assert!(o.allows("https://[::1]:8443", None));
        assert!(o.allows("https://APP.example.com", None));
        assert!(o.allows("https://pulse.example.net", Some("pulse.example.net")));
        assert!(!o.allows("https://evil.example.com", Some("pulse.example.net")));
        assert!(!o.allows("http://app.example.com", None), "scheme matters");
        assert!(!o.allows("null", None));
        assert!(!o.allows("http://localhost.evil.com", None));
        let none = Origins::new(&[]);
        assert!(!none.allows("http://localhost:3000", Some("127.0.0.1:8080")));
        assert!(none.allows("http://127.0.0.1:8080", Some("127.0.0.1:8080")));
        assert!(Origins::new(&["*".into()]).allows("null", None));
        assert!(check_origin_entry("https://a.b:1").is_ok());
        assert!(check_origin_entry("a.b").is_err());
        assert!(check_origin_entry("https://a.b/path").is_err());
    }

    fn limits(f: impl FnOnce(&mut crate::config::LimitsConfig)) -> Arc<Limits> {
        let mut c = Config::default();
        f(&mut c.limits);
        Limits::new(&c)
    }

    fn caller(user: &str, ip: [u8; 4]) -> Caller {
        Caller {
            user: user.into(),
            ip: IpAddr::from(ip),
            tenant: TenantId::new("t"),
            ingest_key: user.into(),
            exempt: false,
            actor: Actor::anonymous(TenantId::new("t"), None),
        }
    }

    #[test]
    fn keyed_limiters_stay_bounded_under_a_flood_of_distinct_keys() {
        let l = limits(|c| {
            c.max_tracked_keys = 100;
            c.new_connections_per_ip_per_minute = 1000;
            c.new_connections_per_user_per_minute = 1000;
            c.max_connections_per_user = 0;
            c.max_connections_per_tenant = 0;
        });
        for i in 0..10_000u32 {
            let b = i.to_be_bytes();
            let _ = l.admit_connection(&caller(&format!("key:{i}"), [10, b[1], b[2], b[3]]));
        }
        for (name, n) in l.tracked_keys() {
            // The cap, plus the shared overflow bucket.
            assert!(n <= 101, "{name:?} holds {n} keys");
        }
        // Keys past the cap share one bucket, so that flood is rate limited as one.
        let mut refused = 0;
        for i in 0..2000u32 {
            let b = (i + 50_000).to_be_bytes();
            if l.admit_connection(&caller(&format!("key:x{i}"), [10, b[1], b[2], b[3]]))
                .is_err()
            {
                refused += 1;
            }
        }
        assert!(refused > 0, "the overflow bucket limits new keys");
    }

    #[test]
    fn open_connections_are_counted_and_released() {
        let l = limits(|c| {
            c.max_connections_per_user = 2;
            c.max_connections_per_tenant = 3;
        });
        let a1 = l.admit_connection(&caller("key:a", [10, 0, 0, 1])).unwrap();
        let _a2 = l.admit_connection(&caller("key:a", [10, 0, 0, 1])).unwrap();
        let e = l.admit_connection(&caller("key:a", [10, 0, 0, 1])).unwrap_err();
        assert_eq!(e.code, ErrorCode::TooManyConnections);
        let _b1 = l.admit_connection(&caller("key:b", [10, 0, 0, 2])).unwrap();
        let e = l.admit_connection(&caller("key:c", [10, 0, 0, 3])).unwrap_err();
        assert!(e.message.contains("tenant t"), "{}", e.message);
        drop(a1);
        assert_eq!(l.open_connections("key:a", "t"), (1, 2));
        let _c = l.admit_connection(&caller("key:c", [10, 0, 0, 3])).unwrap();
    }

    #[test]
    fn the_gate_drops_then_closes() {
        let l = limits(|c| {
            c.messages_per_second = 10;
            c.message_burst = 5;
            c.flood_factor = 3;
            c.flood_window = Duration::from_secs(10);
        });
        let mut g = l.message_gate();
        let verdicts: Vec<Verdict> = (0..301).map(|_| g.check()).collect();
        assert!(verdicts[..5].iter().all(|v| *v == Verdict::Pass));
        assert_eq!(verdicts[5], Verdict::Drop);
        assert_eq!(verdicts[299], Verdict::Drop);
        assert_eq!(verdicts[300], Verdict::Close);
    }
}
