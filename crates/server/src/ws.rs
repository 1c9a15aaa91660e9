//! The WebSocket transport: one task per connection that reads client commands and writes the
//! client's outbound queue in batches; and the one heartbeat task that probes every connection.
//!
//! With authentication enabled, a connection opened without credentials authenticates with a
//! first `connect` frame (or, where some namespace is open to `any`, goes on anonymously); one
//! whose token expires is warned (`token_expiring`), may `refresh`, and is closed with 4002 at
//! expiry otherwise.
//!
//! Writes race against the client's abort signal, so a stalled peer (whose socket never accepts
//! another byte) is dropped as soon as the hub marks it a slow consumer, without waiting for TCP.

use std::net::SocketAddr;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::response::Response;
use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt as _, StreamExt as _};
use pulsewire_hub::{Client, CloseReason, Outbound};
use pulsewire_model::TenantId;
use pulsewire_proto::{ClientCommand, CloseCode, ErrorCode, encode_error, encode_reply};
use serde::Serialize;
use std::sync::Arc;

use crate::AppState;
use crate::api;
use crate::audit::{Actor, event, outcome};
use crate::permissions::{Action, Identity};
use crate::transport::{DisconnectGuard, record_delivered};
use tokio::time::Instant;

pub async fn upgrade(
    ws: WebSocketUpgrade,
    State(state): State<AppState>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    crate::auth::Connection(identity): crate::auth::Connection,
    crate::limits::Permit(permit): crate::limits::Permit,
) -> Response {
    let cfg = &state.config().websocket;
    // The library limit is a backstop well above ours, so that an oversized frame normally
    // reaches our own check and gets a proper error and close code; past the backstop the frame
    // is refused unread, which bounds what one connection can make us buffer.
    let backstop = cfg.max_frame_bytes.saturating_mul(16);
    ws.read_buffer_size(cfg.read_buffer_bytes)
        // Frames of one batch are gathered and written with one syscall on flush; the buffer
        // holds nothing while the connection is idle.
        .write_buffer_size(WRITE_BUFFER)
        .max_message_size(backstop)
        .max_frame_size(backstop)
        .on_upgrade(move |socket| async move {
            // Held while the connection lives: its place in the per-user and per-tenant counts.
            run(socket, state, remote, identity, permit).await
        })
}

type Sink = SplitSink<WebSocket, Message>;

/// Bytes gathered before a write is forced even before the batch's flush.
const WRITE_BUFFER: usize = 16 * 1024;

/// How long a closing connection waits for the peer's close frame.
const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

enum Exit {
    Close(CloseCode),
    /// The peer went away or the socket failed: nothing more can be sent.
    Gone,
}

/// The connection's authentication as its task keeps it: who it is, and when its token expires.
struct Session {
    identity: Identity,
    /// The peer, for the audit log.
    remote: SocketAddr,
    /// When the connection is closed with 4002 unless it refreshes: `exp` plus the leeway.
    expires: Option<Instant>,
    /// When `token_expiring` is due; `None` once sent (and for connections without a token).
    warn: Option<Instant>,
}

impl Session {
    fn new(state: &AppState, identity: Identity, remote: SocketAddr) -> Session {
        let mut s = Session {
            identity,
            remote,
            expires: None,
            warn: None,
        };
        s.schedule(state);
        s
    }

    fn schedule(&mut self, state: &AppState) {
        (self.expires, self.warn) = match self.identity.expires_at() {
            None => (None, None),
            Some(exp) => {
                let leeway = state.jwt().map_or(std::time::Duration::ZERO, |v| v.leeway());
                let left = crate::jwt::until_unix(exp) + leeway;
                let now = Instant::now();
                let warn_before = state.config().auth.jwt.expiry_warning;
                (Some(now + left), Some(now + left.saturating_sub(warn_before)))
            }
        };
    }

    /// Who the audit log names for this connection.
    fn actor(&self) -> Actor {
        Actor::of_identity(&self.identity, Some(self.remote))
    }

    /// The next timer: the warning, then the expiry.
    fn next_timer(&self) -> Option<Instant> {
        self.warn.or(self.expires)
    }
}

#[derive(Serialize)]
struct TokenFrame<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tenant: Option<&'a str>,
    /// The token's `exp` (seconds since the Unix epoch).
    #[serde(skip_serializing_if = "Option::is_none")]
    exp: Option<u64>,
    /// Milliseconds until the connection is closed unless it refreshes.
    #[serde(skip_serializing_if = "Option::is_none")]
    in_ms: Option<u64>,
}

impl TokenFrame<'_> {
    fn new(kind: &'static str) -> Self {
        TokenFrame {
            kind,
            id: None,
            client: None,
            user: None,
            tenant: None,
            exp: None,
            in_ms: None,
        }
    }
}

/// What the first frame of a connection opened without credentials decided.
struct Admitted {
    identity: Identity,
    /// `Some(id)` when it authenticated with `connect` (answered with `connected`).
    connect_id: Option<Option<u64>>,
    /// The first frame, when it was a command of an anonymous connection.
    first: Option<Utf8Bytes>,
}

/// Waits for the first frame of a connection opened without credentials, within
/// `websocket.connect_timeout`. `None`: the connection was refused (and closed) or went away.
async fn admit(
    state: &AppState,
    sink: &mut Sink,
    stream: &mut SplitStream<WebSocket>,
    remote: SocketAddr,
) -> Option<Admitted> {
    let cfg = &state.config().websocket;
    let anonymous = Actor::anonymous(TenantId::new(&state.config().auth.anonymous_tenant), Some(remote));
    let refused = |reason: &str, code: ErrorCode| {
        let ev = if code == ErrorCode::Forbidden {
            event::PERMISSION_DENIED
        } else {
            event::AUTH_FAILURE
        };
        state.audit_record(
            ev,
            outcome::REFUSED,
            &anonymous,
            serde_json::json!({ "transport": "websocket", "stage": "connect", "code": code.as_str(), "reason": reason }),
        );
    };
    let deadline = Instant::now() + cfg.connect_timeout;
    loop {
        let msg = match tokio::time::timeout_at(deadline, stream.next()).await {
            Err(_) => {
                let message = "no connect frame within websocket.connect_timeout";
                refused(message, ErrorCode::Unauthorized);
                refuse_unregistered(
                    sink,
                    stream,
                    None,
                    ErrorCode::Unauthorized,
                    message,
                    CloseCode::ConnectTimeout,
                )
                .await;
                return None;
            }
            Ok(Some(Ok(m))) => m,
            Ok(_) => return None,
        };
        let text = match msg {
            Message::Ping(_) | Message::Pong(_) => continue,
            Message::Close(_) => return None,
            Message::Binary(_) => {
                let message = "binary frames are not supported; send JSON text frames";
                refuse_unregistered(
                    sink,
                    stream,
                    None,
                    ErrorCode::BinaryUnsupported,
                    message,
                    CloseCode::BinaryUnsupported,
                )
                .await;
                return None;
            }
            Message::Text(t) => t,
        };
        if text.len() > cfg.max_frame_bytes {
            let message = "frame exceeds websocket.max_frame_bytes";
            refuse_unregistered(
                sink,
                stream,
                None,
                ErrorCode::FrameTooLarge,
                message,
                CloseCode::FrameTooLarge,
            )
            .await;
            return None;
        }
        let cmd = pulsewire_proto::decode_command(text.as_str());
        if let Ok(ClientCommand::Connect { id, token }) = &cmd {
            return match crate::auth::resolve(state, token) {
                Ok(identity) => Some(Admitted {
                    identity,
                    connect_id: Some(*id),
                    first: None,
                }),
                Err(r) => {
                    refused(&r.message, r.code);
                    let close = if r.code == ErrorCode::TokenExpired {
                        CloseCode::TokenExpired
                    } else {
                        CloseCode::Unauthorized
                    };
                    refuse_unregistered(sink, stream, *id, r.code, &r.message, close).await;
                    None
                }
            };
        }
        if state.permissions().anonymous_possible() {
            return Some(Admitted {
                identity: Identity::Anonymous(TenantId::new(&state.config().auth.anonymous_tenant)),
                connect_id: None,
                first: Some(text),
            });
        }
        let id = match &cmd {
            Ok(c) => command_id(c),
            Err(e) => e.id,
        };
        let message = "authenticate first: send {\"type\":\"connect\",\"token\":\"...\"} or connect with ?token=";
        refused(message, ErrorCode::Unauthorized);
        refuse_unregistered(
            sink,
            stream,
            id,
            ErrorCode::Unauthorized,
            message,
            CloseCode::Unauthorized,
        )
        .await;
        return None;
    }
}

fn command_name(cmd: &ClientCommand) -> &'static str {
    match cmd {
        ClientCommand::Subscribe { .. } => "subscribe",
        ClientCommand::Unsubscribe { .. } => "unsubscribe",
        ClientCommand::Publish { .. } => "publish",
        ClientCommand::History { .. } => "history",
        ClientCommand::Ping { .. } => "ping",
        ClientCommand::Connect { .. } => "connect",
        ClientCommand::Refresh { .. } => "refresh",
        ClientCommand::Presence { .. } => "presence",
    }
}

fn command_id(cmd: &ClientCommand) -> Option<u64> {
    match cmd {
        ClientCommand::Subscribe { id, .. }
        | ClientCommand::Unsubscribe { id, .. }
        | ClientCommand::Publish { id, .. }
        | ClientCommand::History { id, .. }
        | ClientCommand::Ping { id }
        | ClientCommand::Connect { id, .. }
        | ClientCommand::Refresh { id, .. }
        | ClientCommand::Presence { id, .. } => *id,
    }
}

/// Refuses a connection that is not registered with the hub yet: the error frame, the close,
/// and the peer's close within the grace.
async fn refuse_unregistered(
    sink: &mut Sink,
    stream: &mut SplitStream<WebSocket>,
    id: Option<u64>,
    code: ErrorCode,
    message: &str,
    close_code: CloseCode,
) {
    let frame = encode_error(id, code, message);
    let _ = Box::pin(tokio::time::timeout(CLOSE_GRACE, async {
        if let Ok(text) = Utf8Bytes::try_from(frame)
            && sink.send(Message::Text(text)).await.is_ok()
            && close(sink, close_code).await.is_ok()
        {
            while let Some(Ok(m)) = stream.next().await {
                if matches!(m, Message::Close(_)) {
                    break;
                }
            }
        }
    }))
    .await;
}

async fn run(
    socket: WebSocket,
    state: AppState,
    remote: SocketAddr,
    identity: Identity,
    // Held while the connection lives: its place in the per-user and per-tenant counts.
    mut _permit: crate::limits::ConnectionPermit,
) {
    if state.is_shutting_down() {
        let (mut sink, _) = socket.split();
        let _ = close(&mut sink, CloseCode::ShuttingDown).await;
        return;
    }
    let (mut sink, mut stream) = socket.split();
    let admitted = if matches!(identity, Identity::Anonymous(_)) {
        let admitted = match Box::pin(admit(&state, &mut sink, &mut stream, remote)).await {
            Some(a) => a,
            None => return,
        };
        // Admitted at the upgrade as an anonymous client of its address: now that the
        // `connect` frame named the user and tenant, it counts against theirs instead.
        if !matches!(admitted.identity, Identity::Anonymous(_)) {
            let caller = crate::limits::Caller::of_identity(Some(&admitted.identity), None, Some(remote), false);
            match state.limits().admit_connection(&caller) {
                Ok(permit) => _permit = permit,
                Err(refusal) => {
                    let id = admitted.connect_id.flatten();
                    refuse_unregistered(
                        &mut sink,
                        &mut stream,
                        id,
                        refusal.code,
                        &refusal.message,
                        CloseCode::RateLimited,
                    )
                    .await;
                    return;
                }
            }
        }
        admitted
    } else {
        Admitted {
            identity,
            connect_id: None,
            first: None,
        }
    };
    let client = state.hub().connect(
        admitted.identity.tenant(),
        pulsewire_hub::Transport::WebSocket,
        Some(remote),
    );
    if let Some(user) = admitted.identity.user() {
        let _ = client.user.set(Arc::from(user));
    }
    let mut session = Session::new(&state, admitted.identity, remote);
    if let Some(id) = admitted.connect_id {
        client.push_control(encode_reply(&TokenFrame {
            id,
            client: Some(client.id),
            user: session.identity.user(),
            tenant: Some(session.identity.tenant().as_str()),
            exp: session.identity.expires_at(),
            ..TokenFrame::new("connected")
        }));
    }
    if let Some(first) = admitted.first {
        Box::pin(handle_text(&state, &client, &mut session, first.as_str())).await;
    }
    let _guard = DisconnectGuard::new(state.hub().clone(), client.clone());
    let exit = serve(&state, &client, &mut session, &mut sink, &mut stream).await;
    match exit {
        Exit::Close(code) => {
            if code == CloseCode::HeartbeatTimeout {
                state.metrics().heartbeat_timeouts.inc();
            }
            tracing::debug!(client = client.id, code = code.code(), "closing connection");
            // The closing handshake: send our close, then wait for the peer's before dropping
            // the socket, so the peer reads our close frame instead of a reset. Bounded, since a
            // peer that stopped reading must not hold the task.
            let _ = Box::pin(tokio::time::timeout(CLOSE_GRACE, async {
                if close(&mut sink, code).await.is_ok() {
                    while let Some(Ok(m)) = stream.next().await {
                        if matches!(m, Message::Close(_)) {
                            break;
                        }
                    }
                }
            }))
            .await;
        }
        Exit::Gone => tracing::debug!(client = client.id, "connection gone"),
    }
}

/// Runs a socket write, giving up when the client is marked a slow consumer, when its queue
/// has been full for the slow timeout while this write is stuck, when the write has not
/// completed within `ping_interval + pong_timeout` (the peer is not reading), or when the
/// connection is aborted (the server's shutdown ran out of time).
async fn guarded<F>(client: &Client, cfg: &crate::WebSocketConfig, write: F) -> Option<Exit>
where
    F: std::future::Future<Output = Result<(), axum::Error>>,
{
    let started = Instant::now();
    let dead_after = cfg.ping_interval + cfg.pong_timeout;
    let check_every = (client.slow_timeout() / 2).min(dead_after);
    tokio::pin!(write);
    loop {
        tokio::select! {
            r = &mut write => return r.is_err().then_some(Exit::Gone),
            reason = client.aborted() => return Some(exit_for(reason)),
            _ = tokio::time::sleep(check_every) => {
                if let Some(reason) = client.check_slow() {
                    return Some(exit_for(reason));
                }
                if started.elapsed() >= dead_after {
                    return Some(Exit::Close(CloseCode::HeartbeatTimeout));
                }
            }
        }
    }
}

/// Writes a batch under [`guarded`]; if it does not complete, its messages count as dropped.
async fn guarded_write(
    state: &AppState,
    client: &Client,
    sink: &mut Sink,
    items: &[Outbound],
    cfg: &crate::WebSocketConfig,
) -> Option<Exit> {
    client.set_writing(true);
    let exit = guarded(client, cfg, write_batch(state, client, sink, items)).await;
    client.set_writing(false);
    if exit.is_some() {
        client.abandon(items);
    }
    exit
}

/// How a connection ends when the hub closes it for `reason` (after flushing, for a shutdown).
fn exit_for(reason: CloseReason) -> Exit {
    match reason {
        CloseReason::SlowConsumer => Exit::Close(CloseCode::SlowConsumer),
        CloseReason::HeartbeatTimeout => Exit::Close(CloseCode::HeartbeatTimeout),
        CloseReason::Shutdown => Exit::Close(CloseCode::ShuttingDown),
        CloseReason::Disconnected => Exit::Close(CloseCode::Disconnected),
        CloseReason::Abort => Exit::Gone,
    }
}

async fn close(sink: &mut Sink, code: CloseCode) -> Result<(), axum::Error> {
    sink.send(Message::Close(Some(CloseFrame {
        code: code.code(),
        reason: Utf8Bytes::from_static(code.reason()),
    })))
    .await
}

async fn serve(
    state: &AppState,
    client: &Arc<Client>,
    session: &mut Session,
    sink: &mut Sink,
    stream: &mut SplitStream<WebSocket>,
) -> Exit {
    let cfg = &state.config().websocket;
    let mut gate = state.limits().message_gate();
    // No timer here: the heartbeat task (`spawn_heartbeat`) checks every connection and queues
    // pings, so an idle connection is just this future, waiting on its queue and its socket.
    loop {
        tokio::select! {
            _ = client.ready() => loop {
                let batch = client.take_batch(cfg.write_batch);
                // Boxed: the write future is large and lives only while writing, so idle
                // connections do not carry its space in their task.
                if !batch.items.is_empty()
                    && let Some(exit) = Box::pin(guarded_write(state, client, sink, &batch.items, cfg)).await
                {
                    return exit;
                }
                match batch.close {
                    // A shutdown flushes the whole queue before saying goodbye.
                    Some(CloseReason::Shutdown) if !batch.items.is_empty() => continue,
                    Some(reason) => return exit_for(reason),
                    // More queued items leave a permit on `ready`.
                    None => break,
                }
            },
            _ = tokio::time::sleep_until(session.next_timer().unwrap_or_else(Instant::now)), if session.next_timer().is_some() => {
                if session.warn.take().is_some() {
                    let left = session.expires.map_or(0, |e| e.saturating_duration_since(Instant::now()).as_millis() as u64);
                    client.push_control(encode_reply(&TokenFrame {
                        exp: session.identity.expires_at(),
                        in_ms: Some(left),
                        ..TokenFrame::new("token_expiring")
                    }));
                } else {
                    let message = "the connection token expired; reconnect with a new token";
                    return Box::pin(refuse(state, client, &session.actor(), sink, ErrorCode::TokenExpired, message, CloseCode::TokenExpired)).await;
                }
            }
            msg = stream.next() => {
                // Any frame from the peer proves it alive.
                client.touch();
                let msg = match msg {
                    Some(Ok(m)) => m,
                    Some(Err(e)) if is_capacity_error(&e) => {
                        let message = "frame exceeds websocket.max_frame_bytes";
                        return Box::pin(refuse(state, client, &session.actor(), sink, ErrorCode::FrameTooLarge, message, CloseCode::FrameTooLarge)).await;
                    }
                    Some(Err(_)) => return Exit::Gone,
                    None => return Exit::Gone,
                };
                match msg {
                    Message::Text(text) => {
                        if text.len() > cfg.max_frame_bytes {
                            let message = format!("frame of {} bytes exceeds the limit of {}", text.len(), cfg.max_frame_bytes);
                            return Box::pin(refuse(state, client, &session.actor(), sink, ErrorCode::FrameTooLarge, &message, CloseCode::FrameTooLarge)).await;
                        }
                        match gate.check() {
                            crate::limits::Verdict::Pass => {}
                            crate::limits::Verdict::Drop => {
                                state.limits().refused(crate::limits::Limit::messages_per_connection, &session.actor());
                                let message = "frame dropped: over limits.messages_per_second for this connection";
                                client.push_control(encode_error(None, ErrorCode::RateLimited, message));
                                continue;
                            }
                            crate::limits::Verdict::Close => {
                                state.limits().refused(crate::limits::Limit::message_flood, &session.actor());
                                let message = "frames keep arriving far over limits.messages_per_second";
                                return Box::pin(refuse(state, client, &session.actor(), sink, ErrorCode::RateLimited, message, CloseCode::RateLimited)).await;
                            }
                        }
                        // Boxed, like every rarely used large future here: a connection's task
                        // keeps the space of every future it may await inline, and idle
                        // connections should not pay for commands they are not running.
                        Box::pin(handle_text(state, client, session, text.as_str())).await;
                    }
                    Message::Binary(_) => {
                        let message = "binary frames are not supported; send JSON text frames";
                        return Box::pin(refuse(state, client, &session.actor(), sink, ErrorCode::BinaryUnsupported, message, CloseCode::BinaryUnsupported)).await;
                    }
                    Message::Close(_) => return Exit::Gone,
                    Message::Ping(_) | Message::Pong(_) => {}
                }
            }
        }
    }
}

/// True if the read failed because the frame exceeded the transport's size limit.
fn is_capacity_error(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(err) = source {
        if let Some(tungstenite::Error::Capacity(_)) = err.downcast_ref::<tungstenite::Error>() {
            return true;
        }
        source = err.source();
    }
    false
}

/// Answers a frame the connection cannot go on after: the error, then (by the returned exit)
/// the close. What is queued goes out first, within the close grace.
async fn refuse(
    state: &AppState,
    client: &Arc<Client>,
    who: &Actor,
    sink: &mut Sink,
    code: ErrorCode,
    message: &str,
    close: CloseCode,
) -> Exit {
    state.limits().count_code(code, crate::limits::Limit::frame_bytes, who);
    client.push_control(encode_error(None, code, message));
    let batch = client.take_batch(usize::MAX);
    let written = tokio::time::timeout(CLOSE_GRACE, write_batch(state, client, sink, &batch.items)).await;
    if !matches!(written, Ok(Ok(()))) {
        client.abandon(&batch.items);
    }
    Exit::Close(close)
}

async fn write_batch(
    state: &AppState,
    client: &Client,
    sink: &mut Sink,
    items: &[Outbound],
) -> Result<(), axum::Error> {
    for item in items {
        let message = match item {
            Outbound::Ping => {
                sink.feed(Message::Ping(Bytes::new())).await?;
                sink.flush().await?;
                client.probe_written();
                continue;
            }
            // Frames come from our encoders, so this never fails; checking is cheap next to the
            // syscall and keeps `unsafe` out.
            _ => Message::Text(Utf8Bytes::try_from(item.frame().clone()).map_err(axum::Error::new)?),
        };
        sink.feed(message).await?;
    }
    sink.flush().await?;
    record_delivered(state, client, items);
    Ok(())
}

async fn handle_text(state: &AppState, client: &Arc<Client>, session: &mut Session, text: &str) {
    let cmd = match pulsewire_proto::decode_command(text) {
        Ok(cmd) => cmd,
        Err(e) => {
            client.push_control(encode_error(e.id, e.code, &e.message));
            return;
        }
    };
    let perms = state.permissions();
    let who = &session.identity;
    let checked = match &cmd {
        ClientCommand::Subscribe { id, channels, .. } => channels
            .iter()
            .try_for_each(|c| perms.check(who, Action::Subscribe, c))
            .map_err(|e| (*id, e)),
        ClientCommand::Publish { id, channel, .. } => perms.check(who, Action::Publish, channel).map_err(|e| (*id, e)),
        ClientCommand::History { id, channel, .. } => perms.check(who, Action::History, channel).map_err(|e| (*id, e)),
        ClientCommand::Presence { id, channel } => perms.check(who, Action::Presence, channel).map_err(|e| (*id, e)),
        ClientCommand::Refresh { id, token } => {
            refresh(state, client, session, *id, token);
            return;
        }
        ClientCommand::Connect { id, .. } => {
            let message = "`connect` is only accepted as the first frame of a connection opened without credentials";
            client.push_control(encode_error(*id, ErrorCode::BadRequest, message));
            return;
        }
        ClientCommand::Unsubscribe { .. } | ClientCommand::Ping { .. } => Ok(()),
    };
    if let Err((id, message)) = checked {
        tracing::debug!(client = client.id, %message, "command refused");
        state.audit_record(
            event::PERMISSION_DENIED,
            outcome::REFUSED,
            &session.actor(),
            serde_json::json!({ "transport": "websocket", "command": command_name(&cmd), "code": "forbidden", "reason": message }),
        );
        client.push_control(encode_error(id, ErrorCode::Forbidden, &message));
        return;
    }
    if let Err((id, e)) = api::execute(state, client, cmd).await {
        state
            .limits()
            .count_code(e.code, crate::limits::Limit::frame_bytes, &session.actor());
        client.push_control(encode_error(id, e.code, &e.message));
    }
}

/// Replaces the connection's token: same `sub` and tenant; subscriptions stay, later commands
/// follow the new token's claims, and the expiry timers restart from its `exp`.
fn refresh(state: &AppState, client: &Client, session: &mut Session, id: Option<u64>, token: &str) {
    let Identity::Token(current) = &session.identity else {
        let message = "only connections authenticated with a connection token can refresh";
        client.push_control(encode_error(id, ErrorCode::BadRequest, message));
        return;
    };
    let refused = |code: ErrorCode, reason: &str| {
        let ev = if code == ErrorCode::Forbidden {
            event::PERMISSION_DENIED
        } else {
            event::AUTH_FAILURE
        };
        state.audit_record(
            ev,
            outcome::REFUSED,
            &session.actor(),
            serde_json::json!({ "transport": "websocket", "stage": "refresh", "code": code.as_str(), "reason": reason }),
        );
    };
    if !crate::jwt::looks_like_jwt(token) {
        refused(ErrorCode::Unauthorized, "`token` is not a connection token");
        client.push_control(encode_error(
            id,
            ErrorCode::Unauthorized,
            "`token` is not a connection token",
        ));
        return;
    }
    let fresh = match crate::auth::resolve(state, token) {
        Ok(Identity::Token(c)) => c,
        Ok(_) => {
            refused(ErrorCode::Unauthorized, "`token` is not a connection token");
            client.push_control(encode_error(
                id,
                ErrorCode::Unauthorized,
                "`token` is not a connection token",
            ));
            return;
        }
        Err(r) => {
            refused(r.code, &r.message);
            client.push_control(encode_error(id, r.code, &r.message));
            return;
        }
    };
    if fresh.sub != current.sub || fresh.tenant != current.tenant {
        let message = "a refreshed token must have the same `sub` and tenant as the connection's";
        refused(ErrorCode::Forbidden, message);
        client.push_control(encode_error(id, ErrorCode::Forbidden, message));
        return;
    }
    let exp = fresh.exp;
    session.identity = Identity::Token(fresh);
    session.schedule(state);
    client.push_control(encode_reply(&TokenFrame {
        id,
        exp: Some(exp),
        ..TokenFrame::new("refreshed")
    }));
}

/// The WebSocket heartbeat for every connection at once: queues a ping on each connection every
/// `websocket.ping_interval`, and closes (4005) those that sent nothing within
/// `websocket.pong_timeout` of one. One task and one timer instead of one per connection.
pub fn spawn_heartbeat(state: AppState, stop: tokio_util::sync::CancellationToken) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let cfg = &state.config().websocket;
        let tick = (cfg.ping_interval.min(cfg.pong_timeout) / 4)
            .clamp(std::time::Duration::from_millis(10), std::time::Duration::from_secs(1));
        let interval = cfg.ping_interval.as_millis() as u64;
        let timeout = cfg.pong_timeout.as_millis() as u64;
        let mut ticker = tokio::time::interval(tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = ticker.tick() => {
                    let now = pulsewire_hub::mono_ms();
                    state.hub().for_each_client(|c| {
                        if c.transport == pulsewire_hub::Transport::WebSocket {
                            c.heartbeat(now, interval, timeout);
                        }
                    });
                }
            }
        }
    })
}
