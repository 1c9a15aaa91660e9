//! The audit log: who was refused, who tripped a limit, which keys were created and revoked,
//! every administrative request, and when the server started and stopped, as JSON lines in an
//! append-only file (`<data_dir>/audit/audit.log` by default), rotated by size, and published
//! live on each tenant's admin-only `audit` channel.
//!
//! Requests never wait for the log: [`Audit::record`] puts the record in a bounded queue that
//! one writer task drains; a full queue drops the record and counts it in
//! `pulsewire_audit_dropped_total`. The writer appends each batch under an exclusive lock on
//! `<file>.lock` and rotates under the same lock ([`append`]), which `pulsewire keys` takes too
//! when it appends its own records to the same file, so the two processes never interleave
//! half lines or rotate under each other.

use std::io::{BufRead as _, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use axum::Json;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use pulsewire_hub::Hub;
use pulsewire_model::{Priority, TenantId};
use pulsewire_proto::ErrorCode;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::auth::Principal;
use crate::config::AuditConfig;
use crate::permissions::Identity;
use crate::{ApiError, AppState};

/// The hub channel (in each tenant) that carries that tenant's audit records, live.
pub const AUDIT_CHANNEL: &str = "audit";

/// Event names: stable, documented in docs/security.md.
pub mod event {
    /// A credential was missing, unknown, revoked, expired or invalid (401, WebSocket
    /// `connect`/`refresh` refusals, JWT refusals).
    pub const AUTH_FAILURE: &str = "auth.failure";
    /// A known identity was refused an action (403: scope, channel permission).
    pub const PERMISSION_DENIED: &str = "permission.denied";
    /// A limit refused a request, connection, frame or line (`pulsewire_limit_refusals_total`).
    pub const LIMIT: &str = "limit.refused";
    /// `pulsewire keys create`.
    pub const KEY_CREATED: &str = "key.created";
    /// `pulsewire keys revoke`.
    pub const KEY_REVOKED: &str = "key.revoked";
    /// A request to a route that needs the `admin` scope, with its status.
    pub const ADMIN: &str = "admin.action";
    /// The TLS certificate was reloaded (SIGHUP), or a reload failed.
    pub const TLS_RELOAD: &str = "tls.reload";
    pub const SERVER_START: &str = "server.start";
    pub const SERVER_STOP: &str = "server.stop";
}

/// Outcomes.
pub mod outcome {
    pub const REFUSED: &str = "refused";
    pub const OK: &str = "ok";
    pub const FAILED: &str = "failed";
}

/// One line of the audit log.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Record {
    /// RFC 3339, UTC, milliseconds.
    pub ts: String,
    pub event: String,
    pub outcome: String,
    /// `key:<id> (<name>)`, `sub:<subject>`, `anonymous`, `cli:<user>` or `server`.
    pub who: String,
    pub tenant: String,
    /// The remote `ip:port`, when there is a peer.
    pub from: Option<String>,
    pub detail: serde_json::Value,
}

/// Who did something, as a record names them.
#[derive(Debug, Clone)]
pub struct Actor {
    pub who: String,
    pub tenant: TenantId,
    pub from: Option<SocketAddr>,
}

impl Actor {
    pub fn anonymous(tenant: TenantId, from: Option<SocketAddr>) -> Actor {
        Actor {
            who: "anonymous".into(),
            tenant,
            from,
        }
    }

    pub fn server() -> Actor {
        Actor {
            who: "server".into(),
            tenant: TenantId::default_tenant(),
            from: None,
        }
    }

    pub fn key(p: &Principal, from: Option<SocketAddr>) -> Actor {
        Actor {
            who: key_who(&p.key_id, &p.name),
            tenant: p.tenant.clone(),
            from,
        }
    }

    pub fn of_identity(identity: &Identity, from: Option<SocketAddr>) -> Actor {
        match identity {
            Identity::Open => Actor::anonymous(TenantId::default_tenant(), from),
            Identity::Anonymous(t) => Actor::anonymous(t.clone(), from),
            Identity::Key(p) => Actor::key(p, from),
            Identity::Token(c) => Actor {
                who: format!("sub:{}", c.sub),
                tenant: c.tenant.clone(),
                from,
            },
        }
    }
}

/// `key:<id> (<name>)`, or `key:<id>` for a key without a name.
pub fn key_who(id: &str, name: &str) -> String {
    if name.is_empty() {
        format!("key:{id}")
    } else {
        format!("key:{id} ({name})")
    }
}

/// The current time as a record's `ts`.
pub fn now() -> String {
    let t = time::OffsetDateTime::now_utc();
    format_ts(t)
}

fn format_ts(t: time::OffsetDateTime) -> String {
    // Fixed width (milliseconds, `Z`), so records sort and compare as text.
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

impl Record {
    pub fn new(event: &str, outcome: &str, actor: &Actor, detail: serde_json::Value) -> Record {
        Record {
            ts: now(),
            event: event.into(),
            outcome: outcome.into(),
            who: actor.who.clone(),
            tenant: actor.tenant.as_str().to_owned(),
            from: actor.from.map(|a| a.to_string()),
            detail,
        }
    }
}

/// Where the audit log is: `audit.file`, or `<data_dir>/audit/audit.log`.
pub fn audit_path(cfg: &AuditConfig, data_dir: &Path) -> PathBuf {
    if cfg.file.as_os_str().is_empty() {
        data_dir.join("audit").join("audit.log")
    } else {
        cfg.file.clone()
    }
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// The `n`th rotated file: `audit.log.1` is the newest.
pub fn rotated(path: &Path, n: usize) -> PathBuf {
    with_suffix(path, &format!(".{n}"))
}

/// Appends `text` (whole lines) to the log under the exclusive lock on `<file>.lock`; first
/// rotates when the text would take the file past `max_bytes` (`file` → `file.1` → ... →
/// `file.<keep>`, the oldest deleted). The server's writer and `pulsewire keys` both append
/// through here.
pub fn append(path: &Path, text: &[u8], max_bytes: u64, keep: usize) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        b.mode(0o700);
    }
    b.create(dir)?;
    let lock = private_open(&with_suffix(path, ".lock"), false)?;
    lock.lock()?;
    let mut len = match std::fs::metadata(path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(e),
    };
    let mut f = private_open(path, true)?;
    // Whole lines per file: the text goes out in runs that fit, with a rotation between runs.
    let mut rest = text;
    while !rest.is_empty() {
        let mut take = 0;
        for line in rest.split_inclusive(|b| *b == b'\n') {
            if len + (take + line.len()) as u64 > max_bytes && (len > 0 || take > 0) {
                break;
            }
            take += line.len();
        }
        if take == 0 {
            drop(f);
            rotate(path, keep)?;
            f = private_open(path, true)?;
            len = 0;
            continue;
        }
        f.write_all(&rest[..take])?;
        len += take as u64;
        rest = &rest[take..];
    }
    f.flush()?;
    Ok(())
}

fn private_open(path: &Path, append: bool) -> std::io::Result<std::fs::File> {
    let mut o = std::fs::OpenOptions::new();
    o.create(true);
    if append {
        o.append(true);
    } else {
        o.write(true).truncate(false);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        o.mode(0o600);
    }
    o.open(path)
}

fn rotate(path: &Path, keep: usize) -> std::io::Result<()> {
    let ignore_missing = |r: std::io::Result<()>| match r {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    };
    if keep == 0 {
        return ignore_missing(std::fs::remove_file(path));
    }
    ignore_missing(std::fs::remove_file(rotated(path, keep)))?;
    for n in (1..keep).rev() {
        ignore_missing(std::fs::rename(rotated(path, n), rotated(path, n + 1)))?;
    }
    std::fs::rename(path, rotated(path, 1))
}

/// Appends one record from outside the server (`pulsewire keys`).
pub fn append_record(path: &Path, record: &Record, max_bytes: u64, keep: usize) -> anyhow::Result<()> {
    let mut line = serde_json::to_vec(record)?;
    line.push(b'\n');
    append(path, &line, max_bytes, keep).with_context(|| format!("cannot append to the audit log {}", path.display()))
}

/// The audit log's counters on `/metrics`.
#[derive(Debug, Default)]
pub struct AuditMetrics {
    pub written: Counter,
    pub dropped: Counter,
    pub write_errors: Counter,
}

impl AuditMetrics {
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "pulsewire_audit_records",
            "Audit records written to the audit log",
            self.written.clone(),
        );
        r.register(
            "pulsewire_audit_dropped",
            "Audit records dropped because the writer's queue was full (audit.queue)",
            self.dropped.clone(),
        );
        r.register(
            "pulsewire_audit_write_errors",
            "Batches of audit records the writer failed to append to the file",
            self.write_errors.clone(),
        );
    }
}

/// The request side of the audit log: a bounded queue to the writer task.
pub struct Audit {
    tx: Option<mpsc::Sender<Record>>,
    path: PathBuf,
    metrics: AuditMetrics,
}

impl Audit {
    /// The log and its queue; the writer starts with [`Audit::spawn_writer`]. Disabled: records
    /// go nowhere.
    pub fn new(cfg: &AuditConfig, data_dir: &Path) -> (Audit, Option<mpsc::Receiver<Record>>) {
        let path = audit_path(cfg, data_dir);
        if !cfg.enabled {
            return (
                Audit {
                    tx: None,
                    path,
                    metrics: AuditMetrics::default(),
                },
                None,
            );
        }
        let (tx, rx) = mpsc::channel(cfg.queue.max(1));
        (
            Audit {
                tx: Some(tx),
                path,
                metrics: AuditMetrics::default(),
            },
            Some(rx),
        )
    }

    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn metrics(&self) -> &AuditMetrics {
        &self.metrics
    }

    /// Queues a record without waiting; a full queue drops it (counted).
    pub fn record(&self, event: &str, outcome: &str, actor: &Actor, detail: serde_json::Value) {
        let Some(tx) = &self.tx else { return };
        let record = Record::new(event, outcome, actor, detail);
        if tx.try_send(record).is_err() {
            self.metrics.dropped.inc();
        }
    }

    /// Starts the one writer: appends what is queued in batches (each batch one locked append
    /// and one flush), then publishes each record on its tenant's `audit` channel. It ends once
    /// every sender is gone or `stop` fires and the queue is drained.
    pub fn spawn_writer(
        state: AppState,
        mut rx: mpsc::Receiver<Record>,
        stop: tokio_util::sync::CancellationToken,
    ) -> JoinHandle<()> {
        tokio::spawn(async move {
            let cfg = state.config().audit.clone();
            let path = state.audit().path.clone();
            let hub = state.hub().clone();
            let mut batch = Vec::with_capacity(BATCH);
            loop {
                let first = tokio::select! {
                    r = rx.recv() => r,
                    () = stop.cancelled() => {
                        // Whatever was queued before the stop still goes out.
                        rx.close();
                        rx.recv().await
                    }
                };
                let Some(first) = first else { return };
                batch.push(first);
                while batch.len() < BATCH {
                    match rx.try_recv() {
                        Ok(r) => batch.push(r),
                        Err(_) => break,
                    }
                }
                write_batch(&state, &hub, &path, &cfg, std::mem::take(&mut batch)).await;
            }
        })
    }
}

const BATCH: usize = 256;

async fn write_batch(state: &AppState, hub: &Hub, path: &Path, cfg: &AuditConfig, batch: Vec<Record>) {
    let mut text = Vec::with_capacity(batch.len() * 256);
    for r in &batch {
        if serde_json::to_writer(&mut text, r).is_ok() {
            text.push(b'\n');
        }
    }
    let n = batch.len() as u64;
    let (max_bytes, keep) = (cfg.max_bytes, cfg.keep);
    let file = path.to_owned();
    match tokio::task::spawn_blocking(move || append(&file, &text, max_bytes, keep)).await {
        Ok(Ok(())) => {
            state.audit().metrics.written.inc_by(n);
        }
        Ok(Err(e)) => {
            state.audit().metrics.write_errors.inc();
            tracing::error!(path = %path.display(), error = %e, lost = n, "cannot append to the audit log");
        }
        Err(e) => tracing::error!("audit write task failed: {e}"),
    }
    for r in batch {
        let tenant = TenantId::new(&r.tenant);
        // Only while someone listens, as for `metrics:*`: the file is the record, the channel
        // a live view of it.
        if !hub.has_subscribers(&tenant, AUDIT_CHANNEL) {
            continue;
        }
        let Ok(data) = serde_json::to_vec(&r) else { continue };
        if let Err(e) = hub
            .publish(&tenant, AUDIT_CHANNEL, Bytes::from(data), Priority::Critical)
            .await
        {
            tracing::debug!(error = %e, "audit record not published");
        }
    }
}

/// True if `name` (a channel or a pattern) can reach the `audit` channel.
pub fn reaches_audit(name: &str) -> bool {
    if name == AUDIT_CHANNEL {
        return true;
    }
    if !pulsewire_model::is_pattern(name) {
        return false;
    }
    pulsewire_model::Pattern::parse(name).is_ok_and(|p| p.matches(AUDIT_CHANNEL))
}

#[derive(Debug, Deserialize)]
pub struct AuditQuery {
    /// RFC 3339: only records at or after it.
    since: Option<String>,
    /// Newest records at most (default 100, at most 10,000).
    limit: Option<usize>,
}

/// `GET /api/v1/audit?since=&limit=` (admin): the newest records of the caller's tenant (every
/// tenant without authentication), oldest first, from the current file and the newest rotated
/// one.
pub async fn read_back(
    State(state): State<AppState>,
    crate::auth::Tenant(tenant): crate::auth::Tenant,
    Query(q): Query<AuditQuery>,
) -> Result<Response, ApiError> {
    let since = match q.since.as_deref() {
        None => None,
        Some(s) => {
            let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                .map_err(|e| ApiError::new(ErrorCode::BadRequest, format!("since: not an RFC 3339 time ({e})")))?;
            Some(format_ts(t))
        }
    };
    let limit = q.limit.unwrap_or(100).clamp(1, 10_000);
    let only = state.keys().is_some().then(|| tenant.as_str().to_owned());
    let path = state.audit().path.clone();
    let records = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        for file in [rotated(&path, 1), path.clone()] {
            let Ok(f) = std::fs::File::open(&file) else { continue };
            for line in std::io::BufReader::new(f).lines() {
                let Ok(line) = line else { break };
                let Ok(r) = serde_json::from_str::<Record>(&line) else {
                    continue;
                };
                if only.as_deref().is_some_and(|t| t != r.tenant) {
                    continue;
                }
                if since.as_deref().is_some_and(|s| r.ts.as_str() < s) {
                    continue;
                }
                out.push(r);
            }
        }
        let skip = out.len().saturating_sub(limit);
        out.split_off(skip)
    })
    .await
    .map_err(|e| ApiError::new(ErrorCode::Internal, format!("audit read failed: {e}")))?;
    Ok(Json(serde_json::json!({ "records": records })).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_have_a_fixed_width() {
        let t = time::OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_005_000_000).unwrap();
        assert_eq!(format_ts(t), "2023-11-14T22:13:20.005Z");
        assert_eq!(now().len(), 24);
    }

    #[test]
    fn append_rotates_at_the_size_limit_and_keeps_so_many_files() {
        let dir = std::env::temp_dir().join(format!("pulsewire-audit-{}", std::process::id()));
        let path = dir.join("audit.log");
        let line = [b'x'; 99].iter().copied().chain([b'\n']).collect::<Vec<u8>>();
        for _ in 0..5 {
            append(&path, &line, 250, 2).unwrap();
        }
        // A batch larger than the limit is split over files too.
        append(&path, &line.repeat(5), 250, 2).unwrap();
        // 10 lines of 100 bytes, 2 per file: the current file and two rotated ones remain.
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 200);
        assert_eq!(std::fs::metadata(rotated(&path, 1)).unwrap().len(), 200);
        assert_eq!(std::fs::metadata(rotated(&path, 2)).unwrap().len(), 200);
        assert!(!rotated(&path, 3).exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_audit_channel_is_reached_by_name_and_by_covering_patterns() {
        assert!(reaches_audit("audit"));
        assert!(reaches_audit(">"));
        assert!(reaches_audit("*"));
        assert!(!reaches_audit("audit:x"));
        assert!(!reaches_audit("news"));
        assert!(!reaches_audit("chat:>"));
    }
}
