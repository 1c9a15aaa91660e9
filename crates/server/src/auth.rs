//! API keys and the HTTP API's authentication: the keys file (created, listed and revoked by
//! `pulsewire keys`, read by the server and re-read when it changes), the middleware that turns
//! a presented key into a [`Principal`] and checks the scope each route needs, the [`Tenant`]
//! extractor handlers use to scope what they touch, and the start-up decision on whether this
//! server may serve without authentication at all. For WebSocket and SSE it resolves the
//! credential (API key or JWT connection token, `jwt.rs`) into the connection's
//! [`Identity`], whose channel permissions `permissions.rs` checks.

use std::collections::HashMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use axum::Json;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use parking_lot::Mutex;
use pulsewire_model::TenantId;
use pulsewire_proto::ErrorCode;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::audit::{Actor, event, outcome};
use crate::config::AuthConfig;
use crate::permissions::Identity;
use crate::{ApiError, AppState};

/// What a key may do. Each route needs exactly one (see [`required_scope`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Write metrics: `/write`, `/api/v2/write`, `/api/v1/metrics/ingest`, and `/query`'s
    /// `CREATE DATABASE`.
    Ingest,
    /// Publish to channels: `/api/v1/publish`.
    Publish,
    /// Read: queries, series, statistics, history, alerts, rules and silences.
    Read,
    /// Operate: broadcast, clients, channels, rule and silence changes, snapshots, replays.
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Ingest => "ingest",
            Scope::Publish => "publish",
            Scope::Read => "read",
            Scope::Admin => "admin",
        }
    }

    /// Parses a comma-separated list such as `ingest,read`; every scope must be known.
    pub fn parse_list(s: &str) -> Result<Vec<Scope>, String> {
        let mut out = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let scope = match part {
                "ingest" => Scope::Ingest,
                "publish" => Scope::Publish,
                "read" => Scope::Read,
                "admin" => Scope::Admin,
                other => return Err(format!("unknown scope {other:?} (ingest, publish, read, admin)")),
            };
            if !out.contains(&scope) {
                out.push(scope);
            }
        }
        if out.is_empty() {
            return Err("at least one scope is needed (ingest, publish, read, admin)".into());
        }
        out.sort();
        Ok(out)
    }
}

/// Who made a request: the key's tenant, what it may do, and which key it was (for logs).
#[derive(Debug, Clone)]
pub struct Principal {
    pub tenant: TenantId,
    pub scopes: Vec<Scope>,
    pub key_id: String,
    /// The key's name (`keys create --name`), for the audit log.
    pub name: String,
}

/// The tenant a request acts for: its key's tenant, or the default tenant when authentication
/// is disabled (the middleware then inserts no [`Principal`]).
pub struct Tenant(pub TenantId);

impl<S: Send + Sync> FromRequestParts<S> for Tenant {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Tenant(
            parts
                .extensions
                .get::<Principal>()
                .map(|p| p.tenant.clone())
                .unwrap_or_else(TenantId::default_tenant),
        ))
    }
}

/// One key as the keys file stores it: never the key itself, only its SHA-256.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KeyRecord {
    pub id: String,
    pub name: String,
    pub tenant: String,
    pub scopes: Vec<Scope>,
    /// RFC 3339, UTC.
    pub created_at: String,
    pub revoked: bool,
    /// Hex SHA-256 of the key. A fast hash is enough because keys are 256 random bits: there
    /// is no dictionary to try, so a slow password hash would only slow every request down.
    pub sha256: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    keys: Vec<KeyRecord>,
}

/// Where the keys file is: `auth.keys_file`, or `<data_dir>/auth/keys.json` when that is empty.
pub fn keys_path(auth: &AuthConfig, data_dir: &Path) -> PathBuf {
    if auth.keys_file.as_os_str().is_empty() {
        data_dir.join("auth").join("keys.json")
    } else {
        auth.keys_file.clone()
    }
}

/// Every key in the file; a missing file has none.
pub fn read_keys(path: &Path) -> anyhow::Result<Vec<KeyRecord>> {
    match std::fs::read(path) {
        Ok(bytes) => {
            let file: KeyFile = serde_json::from_slice(&bytes)
                .with_context(|| format!("{} is not a valid keys file", path.display()))?;
            Ok(file.keys)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Creates a key and returns its record and the key, which exists nowhere else afterwards.
pub fn create_key(path: &Path, name: &str, tenant: &str, scopes: Vec<Scope>) -> anyhow::Result<(KeyRecord, String)> {
    check_tenant(tenant).map_err(anyhow::Error::msg)?;
    if scopes.is_empty() {
        anyhow::bail!("at least one scope is needed");
    }
    // ThreadRng is a CSPRNG (ChaCha) seeded from the operating system.
    let secret: [u8; 32] = rand::random();
    let key = format!("pw_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret));
    let id_bytes: [u8; 6] = rand::random();
    let id = hex(&id_bytes);
    let created_at = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .context("cannot format the time")?;
    let record = KeyRecord {
        id,
        name: name.to_owned(),
        tenant: tenant.to_owned(),
        scopes,
        created_at,
        revoked: false,
        sha256: hash_key(&key),
    };
    let out = record.clone();
    update_keys(path, move |keys| {
        keys.push(record);
        Ok(())
    })?;
    Ok((out, key))
}

/// Marks a key revoked (kept in the file, so `keys list` still shows it). False: no such id.
pub fn revoke_key(path: &Path, id: &str) -> anyhow::Result<bool> {
    let mut found = false;
    update_keys(path, |keys| {
        for k in keys.iter_mut().filter(|k| k.id == id) {
            k.revoked = true;
            found = true;
        }
        Ok(())
    })?;
    Ok(found)
}

/// Read, change, write atomically (temporary file, fsync, rename, fsync of the directory),
/// under a lock file so that two `pulsewire keys` runs cannot lose each other's change.
fn update_keys(path: &Path, change: impl FnOnce(&mut Vec<KeyRecord>) -> anyhow::Result<()>) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    private_dir(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let lock_path = path.with_extension("lock");
    let lock = private_file()
        .truncate(false)
        .open(&lock_path)
        .with_context(|| format!("cannot open {}", lock_path.display()))?;
    lock.lock()
        .with_context(|| format!("cannot lock {}", lock_path.display()))?;
    let mut keys = read_keys(path)?;
    change(&mut keys)?;
    let text = serde_json::to_vec_pretty(&KeyFile { keys })?;
    let tmp = path.with_extension("tmp");
    let mut f = private_file()
        .truncate(true)
        .open(&tmp)
        .with_context(|| format!("cannot create {}", tmp.display()))?;
    f.write_all(&text)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))?;
    if let Ok(d) = std::fs::File::open(dir) {
        // The rename is only durable once the directory is; failure here is not worth failing for.
        if let Err(e) = d.sync_all() {
            tracing::debug!("cannot sync {}: {e}", dir.display());
        }
    }
    Ok(())
}

/// Options that create a file only its owner can read: the keys file holds no key, but it names
/// every tenant and key, which is nobody else's business.
fn private_file() -> std::fs::OpenOptions {
    let mut o = std::fs::OpenOptions::new();
    o.create(true).write(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        o.mode(0o600);
    }
    o
}

/// Creates `dir` (and its parents) for the owner only, if it does not exist.
fn private_dir(dir: &Path) -> std::io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        b.mode(0o700);
    }
    b.create(dir)
}

/// Tenants name storage namespaces and channels: keep them to a plain, bounded alphabet.
pub fn check_tenant(t: &str) -> Result<(), String> {
    if t.is_empty() || t.len() > 64 || !t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Err(format!("tenant {t:?}: use 1 to 64 letters, digits, `-` or `_`"));
    }
    Ok(())
}

pub fn hash_key(key: &str) -> String {
    hex(&Sha256::digest(key.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What the server knows of a presented key.
#[derive(Debug)]
pub enum Lookup {
    Valid(Principal),
    /// The key, which has been revoked.
    Revoked(Principal),
    Unknown,
}

/// The keys file as the server sees it, re-read when its modification time or size changes;
/// checked at most once a second, so keys created or revoked by `pulsewire keys` take effect
/// within about a second without a restart.
pub struct KeyStore {
    path: PathBuf,
    cache: Mutex<Cache>,
}

struct Cache {
    checked: Instant,
    stamp: Option<(SystemTime, u64)>,
    /// By hex SHA-256. Looking up a hash, not comparing keys, so timing says nothing useful.
    by_hash: HashMap<String, KeyRecord>,
}

const RECHECK: Duration = Duration::from_secs(1);

impl KeyStore {
    /// Loads the keys file; a file that exists but cannot be read is an error at start.
    pub fn open(path: PathBuf) -> anyhow::Result<KeyStore> {
        let stamp = stamp(&path);
        let keys = read_keys(&path)?;
        Ok(KeyStore {
            path,
            cache: Mutex::new(Cache {
                checked: Instant::now(),
                stamp,
                by_hash: index(keys),
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn lookup(&self, key: &str) -> Lookup {
        let hash = hash_key(key);
        let mut cache = self.cache.lock();
        if cache.checked.elapsed() >= RECHECK {
            cache.checked = Instant::now();
            // A small file, read at most once a second: cheap enough to do inline.
            let now = stamp(&self.path);
            if now != cache.stamp {
                match read_keys(&self.path) {
                    Ok(keys) => {
                        cache.by_hash = index(keys);
                        cache.stamp = now;
                        tracing::info!(path = %self.path.display(), keys = cache.by_hash.len(), "keys file reloaded");
                    }
                    // Keep serving with the keys we had rather than locking everyone out.
                    Err(e) => tracing::warn!("keeping the previous keys: {e:#}"),
                }
            }
        }
        match cache.by_hash.get(&hash) {
            None => Lookup::Unknown,
            Some(k) => {
                let p = Principal {
                    tenant: TenantId::new(&k.tenant),
                    scopes: k.scopes.clone(),
                    key_id: k.id.clone(),
                    name: k.name.clone(),
                };
                if k.revoked {
                    Lookup::Revoked(p)
                } else {
                    Lookup::Valid(p)
                }
            }
        }
    }
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

fn index(keys: Vec<KeyRecord>) -> HashMap<String, KeyRecord> {
    keys.into_iter().map(|k| (k.sha256.clone(), k)).collect()
}

/// The server's authentication state: its keys (when enabled) and how it is exposed.
pub struct Auth {
    pub keys: Option<KeyStore>,
    pub exposure: Exposure,
    /// Connection-token keys, when enabled and configured.
    pub jwt: Option<crate::jwt::Verifier>,
    pub permissions: crate::permissions::Permissions,
}

/// Why a WebSocket or SSE credential was refused, with its stable code.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub code: ErrorCode,
    pub message: String,
    /// The key, when a known key was refused (revoked, or lacking `read`).
    pub key: Option<Principal>,
}

/// Resolves a credential presented by a WebSocket or SSE connection (upgrade request, or the
/// `connect` frame): a JWT connection token when it has a JWT's shape and tokens are
/// configured, else an API key, which needs the `read` scope.
pub fn resolve(state: &AppState, credential: &str) -> Result<Identity, Refusal> {
    let Some(keys) = state.keys() else {
        return Ok(Identity::Open);
    };
    if let Some(verifier) = state.jwt()
        && crate::jwt::looks_like_jwt(credential)
    {
        return match verifier.verify(credential) {
            Ok(claims) => Ok(Identity::Token(std::sync::Arc::new(claims))),
            Err(e) => {
                tracing::debug!(reason = %e.message(), "connection token refused");
                Err(Refusal {
                    code: match e {
                        crate::jwt::TokenError::Expired => ErrorCode::TokenExpired,
                        crate::jwt::TokenError::Invalid(_) => ErrorCode::Unauthorized,
                    },
                    message: e.message(),
                    key: None,
                })
            }
        };
    }
    let unauthorized = |m: &str, key: Option<Principal>| Refusal {
        code: ErrorCode::Unauthorized,
        message: m.into(),
        key,
    };
    match keys.lookup(credential) {
        Lookup::Unknown => Err(unauthorized("unknown API key", None)),
        Lookup::Revoked(p) => Err(unauthorized("the API key has been revoked", Some(p))),
        Lookup::Valid(p) if !p.scopes.contains(&Scope::Read) => Err(Refusal {
            code: ErrorCode::Forbidden,
            message: "this API key lacks the `read` scope this request needs".into(),
            key: Some(p),
        }),
        Lookup::Valid(p) => Ok(Identity::Key(p)),
    }
}

/// The identity of a WebSocket or SSE connection, as the middleware resolved it:
/// [`Identity::Open`] without authentication.
pub struct Connection(pub Identity);

impl<S: Send + Sync> FromRequestParts<S> for Connection {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Connection(
            parts.extensions.get::<Identity>().cloned().unwrap_or(Identity::Open),
        ))
    }
}

/// How this server is exposed, decided once at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exposure {
    /// `auth.enabled`: every HTTP API request needs a key.
    Authenticated,
    /// No authentication, but only reachable from this machine.
    Loopback,
    /// No authentication on a reachable address, because `--insecure` said so.
    Insecure,
}

/// Refuses to serve unauthenticated on an address other machines can reach, unless told to.
pub fn exposure(auth: &AuthConfig, addr: SocketAddr) -> Result<Exposure, String> {
    if auth.enabled {
        Ok(Exposure::Authenticated)
    } else if addr.ip().is_loopback() {
        Ok(Exposure::Loopback)
    } else if auth.insecure {
        Ok(Exposure::Insecure)
    } else {
        Err(format!(
            "refusing to serve without authentication on {addr}, which is not a loopback address: \
             set auth.enabled = true (create keys with `pulsewire keys create`), listen on 127.0.0.1, \
             or pass --insecure to serve unauthenticated anyway"
        ))
    }
}

/// The scope a request needs, or `None` for the open endpoints (health, readiness, metrics,
/// the dashboard's page and assets).
/// WebSocket and SSE connections are resolved apart (see [`authenticate`]): an API key needs
/// `read` to connect, and the channel permissions (`permissions.rs`) decide per command.
pub fn required_scope(method: &Method, path: &str) -> Option<Scope> {
    let reading = method == Method::GET || method == Method::HEAD;
    match path {
        "/health" | "/ping" | "/ready" | "/metrics" => None,
        // The dashboard's page and files: it asks for a credential when the API answers 401.
        "/" if reading => None,
        p if reading && p.starts_with("/assets/") => None,
        // `/query` takes only the `CREATE DATABASE` that writers send before writing.
        "/write" | "/query" | "/api/v2/write" | "/api/v1/metrics/ingest" => Some(Scope::Ingest),
        "/api/v1/publish" => Some(Scope::Publish),
        "/api/v1/broadcast"
        | "/api/v1/clients"
        | "/api/v1/channels"
        | "/api/v1/notify/dead-letter/replay"
        | "/api/v1/stats"
        | "/api/v1/notify/stats" => Some(Scope::Admin),
        p if p.starts_with("/api/v1/admin/") || p.starts_with("/api/v1/clients/") => Some(Scope::Admin),
        "/api/v1/audit" => Some(Scope::Admin),
        // Changing rules and silences and acknowledging alerts are operator actions.
        p if (p.starts_with("/api/v1/rules")
            || p.starts_with("/api/v1/silences")
            || p.starts_with("/api/v1/alerts"))
            && !reading =>
        {
            Some(Scope::Admin)
        }
        // Everything else (queries, series, statistics, history, alerts, stats, and unknown
        // paths, which then get their 404) needs at least a key that may read.
        _ => Some(Scope::Read),
    }
}

/// Axum middleware: with authentication enabled, finds the key, checks the route's scope and
/// leaves a [`Principal`] in the request's extensions; refusals take the endpoint's error shape.
pub async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let remote = req
        .extensions()
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let Some(keys) = state.keys() else {
        // Open serving is allowed on loopback only; a web page whose name an attacker rebinds
        // to 127.0.0.1 would still send its own name as Host: refused, so such a page cannot
        // reach an unauthenticated node through the visitor's browser.
        if state.exposure() == Exposure::Loopback && !host_is_loopback(&req) {
            let path = req.uri().path().to_owned();
            return refuse(
                Shape::of(&path),
                StatusCode::FORBIDDEN,
                "this node serves without authentication on loopback only: the Host must be localhost or a loopback address".into(),
            );
        }
        // Without authentication, administrative requests are still recorded.
        if required_scope(req.method(), req.uri().path()) == Some(Scope::Admin) {
            let actor = Actor::anonymous(TenantId::default_tenant(), remote);
            return audited_admin(&state, actor, req, next).await;
        }
        return next.run(req).await;
    };
    let path = req.uri().path();
    let Some(scope) = required_scope(req.method(), path) else {
        return next.run(req).await;
    };
    let what = serde_json::json!({ "method": req.method().as_str(), "path": path });
    let refused = |ev: &str, actor: &Actor, status: StatusCode, reason: &str| {
        let mut detail = what.clone();
        detail["status"] = status.as_u16().into();
        detail["reason"] = reason.into();
        state.audit_record(ev, outcome::REFUSED, actor, detail);
    };
    let anonymous = || Actor::anonymous(TenantId::new(&state.config().auth.anonymous_tenant), remote);
    if matches!(path, "/ws" | "/sse") {
        // A connection token or an API key, in a header or (browsers cannot set headers on a
        // WebSocket or an EventSource) the query; none at all makes the connection anonymous:
        // a WebSocket may then still authenticate with a `connect` frame.
        let presented = presented_key(req.headers())
            .or_else(|| query_param(req.uri().query(), "token"))
            .or_else(|| access_token(req.uri().query()));
        let identity = match presented {
            // An EventSource cannot authenticate later: without any rule open to `any`, it
            // is refused now.
            None if path == "/sse" && !state.permissions().anonymous_possible() => {
                refused(
                    event::AUTH_FAILURE,
                    &anonymous(),
                    StatusCode::UNAUTHORIZED,
                    "no credential",
                );
                return ApiError::new(
                    ErrorCode::Unauthorized,
                    "a connection token or API key is required (?token=, ?access_token= or Authorization: Bearer)",
                )
                .into_response();
            }
            None => Identity::Anonymous(TenantId::new(&state.config().auth.anonymous_tenant)),
            Some(credential) => match resolve(&state, &credential) {
                Ok(identity) => identity,
                Err(r) => {
                    let actor = r.key.as_ref().map_or_else(anonymous, |p| Actor::key(p, remote));
                    let resp = ApiError::new(r.code, r.message.clone()).into_response();
                    let ev = if r.code == ErrorCode::Forbidden {
                        event::PERMISSION_DENIED
                    } else {
                        event::AUTH_FAILURE
                    };
                    refused(ev, &actor, resp.status(), &r.message);
                    return resp;
                }
            },
        };
        req.extensions_mut().insert(identity);
        return next.run(req).await;
    }
    let shape = Shape::of(path);
    // The v1 `u`/`p` parameters are what InfluxDB 1.x clients send; only /write and /query
    // speak 1.x.
    // Browsers cannot set headers on a WebSocket or an EventSource: those take the key as
    // `?access_token=`.
    let presented = presented_key(req.headers())
        .or_else(|| speaks_influx_v1(path).then(|| v1_password(req.uri().query())).flatten())
        .or_else(|| {
            matches!(path, "/ws" | "/sse")
                .then(|| access_token(req.uri().query()))
                .flatten()
        });
    let Some(key) = presented else {
        let reason = "an API key is required (Authorization: Bearer <key>)";
        refused(
            event::AUTH_FAILURE,
            &anonymous(),
            StatusCode::UNAUTHORIZED,
            "no API key",
        );
        return refuse(shape, StatusCode::UNAUTHORIZED, reason.into());
    };
    match keys.lookup(&key) {
        Lookup::Unknown => {
            let reason = "unknown API key";
            refused(event::AUTH_FAILURE, &anonymous(), StatusCode::UNAUTHORIZED, reason);
            refuse(shape, StatusCode::UNAUTHORIZED, reason.into())
        }
        Lookup::Revoked(p) => {
            let reason = "the API key has been revoked";
            refused(
                event::AUTH_FAILURE,
                &Actor::key(&p, remote),
                StatusCode::UNAUTHORIZED,
                reason,
            );
            refuse(shape, StatusCode::UNAUTHORIZED, reason.into())
        }
        Lookup::Valid(p) if !p.scopes.contains(&scope) => {
            tracing::debug!(key = %p.key_id, scope = scope.as_str(), path, "key lacks the scope");
            let reason = format!("this API key lacks the `{}` scope this request needs", scope.as_str());
            refused(
                event::PERMISSION_DENIED,
                &Actor::key(&p, remote),
                StatusCode::FORBIDDEN,
                &reason,
            );
            refuse(shape, StatusCode::FORBIDDEN, reason)
        }
        Lookup::Valid(p) if node_wide(path) && p.tenant.as_str() != state.config().auth.operator_tenant => {
            let reason = format!(
                "{path} acts on the whole node (every tenant): only an admin key of the operator tenant `{}` may use it",
                state.config().auth.operator_tenant
            );
            refused(
                event::PERMISSION_DENIED,
                &Actor::key(&p, remote),
                StatusCode::FORBIDDEN,
                &reason,
            );
            refuse(shape, StatusCode::FORBIDDEN, reason)
        }
        Lookup::Valid(p) if scope == Scope::Admin => {
            let actor = Actor::key(&p, remote);
            req.extensions_mut().insert(p);
            audited_admin(&state, actor, req, next).await
        }
        Lookup::Valid(p) => {
            req.extensions_mut().insert(p);
            next.run(req).await
        }
    }
}

/// Whether the request names a loopback host (`Host`, or the HTTP/2 authority): localhost,
/// 127.0.0.0/8 or ::1. A request without either (HTTP/1.0) passes.
pub fn host_is_loopback(req: &Request) -> bool {
    let host = req
        .headers()
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| req.uri().authority().map(|a| a.as_str().to_owned()));
    let Some(host) = host else { return true };
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host.as_str(), |(h, _)| h),
    };
    name.eq_ignore_ascii_case("localhost")
        || name.to_ascii_lowercase().ends_with(".localhost")
        || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Endpoints that act on or report the whole node, across tenants: only the operator tenant's
/// admin keys may use them.
pub fn node_wide(path: &str) -> bool {
    path.starts_with("/api/v1/admin/") || matches!(path, "/api/v1/stats" | "/api/v1/notify/stats")
}

/// Runs a request that needed the `admin` scope and records it with its status.
async fn audited_admin(state: &AppState, actor: Actor, req: Request, next: Next) -> Response {
    let method = req.method().as_str().to_owned();
    let path = req.uri().path().to_owned();
    let resp = next.run(req).await;
    let status = resp.status();
    let result = if status.is_success() || status.is_redirection() {
        outcome::OK
    } else {
        outcome::FAILED
    };
    state.audit_record(
        event::ADMIN,
        result,
        &actor,
        serde_json::json!({ "method": method, "path": path, "status": status.as_u16() }),
    );
    resp
}

/// `Authorization: Bearer <key>`, `Token <key>` (InfluxDB 2.x) or `Basic base64(user:key)`.
fn presented_key(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, rest) = value.split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("token") {
        return Some(rest.to_owned()).filter(|k| !k.is_empty());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD.decode(rest).ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (_user, password) = text.split_once(':')?;
        return Some(password.to_owned()).filter(|k| !k.is_empty());
    }
    None
}

fn access_token(query: Option<&str>) -> Option<String> {
    query_param(query, "access_token")
}

fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    form_param(query?.as_bytes(), name).filter(|p| !p.is_empty())
}

fn v1_password(query: Option<&str>) -> Option<String> {
    query_param(query, "p")
}

/// The value of `name` in a URL query string or a form body (the last one, if repeated).
pub(crate) fn form_param(bytes: &[u8], name: &str) -> Option<String> {
    form_urlencoded::parse(bytes)
        .filter(|(k, _)| k == name)
        .last()
        .map(|(_, v)| v.into_owned())
}

/// The paths that speak InfluxDB 1.x: its `u`/`p` credentials and its error shape.
fn speaks_influx_v1(path: &str) -> bool {
    matches!(path, "/write" | "/query")
}

/// Which error body a refusal takes: InfluxDB 1.x's, or the `{code, message}` of InfluxDB 2.x
/// and of the rest of the API (the same shape).
#[derive(Clone, Copy)]
enum Shape {
    InfluxV1,
    Coded,
}

impl Shape {
    fn of(path: &str) -> Shape {
        if speaks_influx_v1(path) {
            Shape::InfluxV1
        } else {
            Shape::Coded
        }
    }
}

fn refuse(shape: Shape, status: StatusCode, message: String) -> Response {
    match shape {
        Shape::InfluxV1 => (status, Json(serde_json::json!({ "error": message }))).into_response(),
        Shape::Coded => {
            let code = if status == StatusCode::FORBIDDEN {
                ErrorCode::Forbidden
            } else {
                ErrorCode::Unauthorized
            };
            ApiError::new(code, message).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposure_refuses_open_non_loopback_addresses() {
        let open = AuthConfig::default();
        let insecure = AuthConfig {
            insecure: true,
            ..AuthConfig::default()
        };
        let enabled = AuthConfig {
            enabled: true,
            ..AuthConfig::default()
        };
        let any: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        let lo: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let lo6: SocketAddr = "[::1]:8080".parse().unwrap();
        assert_eq!(exposure(&open, lo), Ok(Exposure::Loopback));
        assert_eq!(exposure(&open, lo6), Ok(Exposure::Loopback));
        let err = exposure(&open, any).unwrap_err();
        assert!(
            err.contains("refusing to serve without authentication on 0.0.0.0:8080"),
            "{err}"
        );
        assert_eq!(exposure(&insecure, any), Ok(Exposure::Insecure));
        assert_eq!(exposure(&enabled, any), Ok(Exposure::Authenticated));
        assert_eq!(exposure(&enabled, lo), Ok(Exposure::Authenticated));
    }

    #[test]
    fn routes_need_their_scopes() {
        let cases = [
            (Method::GET, "/health", None),
            (Method::GET, "/ready", None),
            (Method::GET, "/metrics", None),
            (Method::GET, "/ws", Some(Scope::Read)),
            (Method::GET, "/sse", Some(Scope::Read)),
            (Method::POST, "/write", Some(Scope::Ingest)),
            (Method::POST, "/query", Some(Scope::Ingest)),
            (Method::POST, "/api/v2/write", Some(Scope::Ingest)),
            (Method::POST, "/api/v1/metrics/ingest", Some(Scope::Ingest)),
            (Method::POST, "/api/v1/publish", Some(Scope::Publish)),
            (Method::GET, "/api/v1/query", Some(Scope::Read)),
            (Method::GET, "/api/v1/history", Some(Scope::Read)),
            (Method::GET, "/api/v1/rules", Some(Scope::Read)),
            (Method::POST, "/api/v1/rules", Some(Scope::Admin)),
            (Method::DELETE, "/api/v1/silences/x", Some(Scope::Admin)),
            (Method::POST, "/api/v1/alerts/x/ack", Some(Scope::Admin)),
            (Method::POST, "/api/v1/broadcast", Some(Scope::Admin)),
            (Method::GET, "/api/v1/clients", Some(Scope::Admin)),
            (Method::DELETE, "/api/v1/clients/7", Some(Scope::Admin)),
            (Method::GET, "/api/v1/clients/7", Some(Scope::Admin)),
            (Method::GET, "/api/v1/channels", Some(Scope::Admin)),
            (Method::POST, "/api/v1/admin/checkpoint", Some(Scope::Admin)),
            (Method::POST, "/api/v1/admin/rollup", Some(Scope::Admin)),
            (Method::GET, "/api/v1/stats", Some(Scope::Admin)),
            (Method::GET, "/api/v1/notify/stats", Some(Scope::Admin)),
            (Method::POST, "/api/v1/admin/compact", Some(Scope::Admin)),
            (Method::POST, "/api/v1/notify/dead-letter/replay", Some(Scope::Admin)),
            (Method::GET, "/api/v1/audit", Some(Scope::Admin)),
            (Method::GET, "/nowhere", Some(Scope::Read)),
            (Method::GET, "/", None),
            (Method::GET, "/assets/index-0123abcd.js", None),
            (Method::POST, "/", Some(Scope::Read)),
        ];
        for (method, path, want) in cases {
            assert_eq!(required_scope(&method, path), want, "{method} {path}");
        }
    }

    #[test]
    fn keys_are_read_from_every_accepted_header_form() {
        let b64 = base64::engine::general_purpose::STANDARD;
        let cases = [
            ("Bearer pw_abc", Some("pw_abc")),
            ("bearer  pw_abc ", Some("pw_abc")),
            ("Token pw_abc", Some("pw_abc")),
            (&*format!("Basic {}", b64.encode("telegraf:pw_abc")), Some("pw_abc")),
            (&*format!("Basic {}", b64.encode("nocolon")), None),
            ("Basic !!!", None),
            ("Digest x", None),
            ("Bearer", None),
        ];
        for (value, want) in cases {
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, value.parse().unwrap());
            assert_eq!(presented_key(&h).as_deref(), want, "{value}");
        }
        assert_eq!(v1_password(Some("db=x&u=me&p=pw_a%2Bb")).as_deref(), Some("pw_a+b"));
        assert_eq!(v1_password(Some("db=x")), None);
    }

    #[test]
    fn scopes_parse_and_refuse_unknown_ones() {
        assert_eq!(
            Scope::parse_list("read, ingest,read"),
            Ok(vec![Scope::Ingest, Scope::Read])
        );
        assert!(Scope::parse_list("ingest,write").unwrap_err().contains("\"write\""));
        assert!(Scope::parse_list("").is_err());
    }

    #[test]
    fn the_file_keeps_hashes_and_revocations_not_keys() {
        let dir = std::env::temp_dir().join(format!("pulsewire-auth-{}", std::process::id()));
        let path = dir.join("auth").join("keys.json");
        let (rec, key) = create_key(&path, "agent", "acme", vec![Scope::Ingest]).unwrap();
        assert!(key.starts_with("pw_") && key.len() > 40, "{key}");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&key) && text.contains(&hash_key(&key)), "{text}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&path), 0o600, "the keys file is the owner's only");
            assert_eq!(mode(path.parent().unwrap()), 0o700);
        }
        let store = KeyStore::open(path.clone()).unwrap();
        match store.lookup(&key) {
            Lookup::Valid(p) => assert_eq!((p.tenant.as_str(), p.key_id.as_str()), ("acme", rec.id.as_str())),
            other => panic!("{other:?}"),
        }
        assert!(matches!(store.lookup("pw_other"), Lookup::Unknown));
        assert!(revoke_key(&path, &rec.id).unwrap());
        assert!(!revoke_key(&path, "nope").unwrap());
        assert!(read_keys(&path).unwrap()[0].revoked);
        assert!(create_key(&path, "x", "bad tenant", vec![Scope::Read]).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
