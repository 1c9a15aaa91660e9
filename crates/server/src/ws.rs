//! The WebSocket transport: one task per connection that reads client commands and writes the
//! client's outbound queue in batches; and the one heartbeat task that probes every connection.
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
use pulsewire_proto::{ClientCommand, CloseCode, ErrorCode, encode_error};
use std::sync::Arc;

use crate::AppState;
use crate::api;
use crate::transport::{DisconnectGuard, record_delivered};
use tokio::time::Instant;

pub async fn upgrade(
    ws: WebSocketUpgrade,
    State(state): State<AppState>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    crate::auth::Tenant(tenant): crate::auth::Tenant,
    crate::auth::Publisher(may_publish): crate::auth::Publisher,
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
            let _permit = permit;
            run(socket, state, remote, tenant, may_publish).await
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

async fn run(socket: WebSocket, state: AppState, remote: SocketAddr, tenant: TenantId, may_publish: bool) {
    if state.is_shutting_down() {
        let (mut sink, _) = socket.split();
        let _ = close(&mut sink, CloseCode::ShuttingDown).await;
        return;
    }
    let client = state
        .hub()
        .connect(tenant, pulsewire_hub::Transport::WebSocket, Some(remote));
    let _guard = DisconnectGuard::new(state.hub().clone(), client.clone());
    let (mut sink, mut stream) = socket.split();
    let exit = serve(&state, &client, may_publish, &mut sink, &mut stream).await;
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
    may_publish: bool,
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
            msg = stream.next() => {
                // Any frame from the peer proves it alive.
                client.touch();
                let msg = match msg {
                    Some(Ok(m)) => m,
                    Some(Err(e)) if is_capacity_error(&e) => {
                        let message = "frame exceeds websocket.max_frame_bytes";
                        return Box::pin(refuse(state, client, sink, ErrorCode::FrameTooLarge, message, CloseCode::FrameTooLarge)).await;
                    }
                    Some(Err(_)) => return Exit::Gone,
                    None => return Exit::Gone,
                };
                match msg {
                    Message::Text(text) => {
                        if text.len() > cfg.max_frame_bytes {
                            let message = format!("frame of {} bytes exceeds the limit of {}", text.len(), cfg.max_frame_bytes);
                            return Box::pin(refuse(state, client, sink, ErrorCode::FrameTooLarge, &message, CloseCode::FrameTooLarge)).await;
                        }
                        match gate.check() {
                            crate::limits::Verdict::Pass => {}
                            crate::limits::Verdict::Drop => {
                                state.limits().refused(crate::limits::Limit::messages_per_connection);
                                let message = "frame dropped: over limits.messages_per_second for this connection";
                                client.push_control(encode_error(None, ErrorCode::RateLimited, message));
                                continue;
                            }
                            crate::limits::Verdict::Close => {
                                state.limits().refused(crate::limits::Limit::message_flood);
                                let message = "frames keep arriving far over limits.messages_per_second";
                                return Box::pin(refuse(state, client, sink, ErrorCode::RateLimited, message, CloseCode::RateLimited)).await;
                            }
                        }
                        // Boxed, like every rarely used large future here: a connection's task
                        // keeps the space of every future it may await inline, and idle
                        // connections should not pay for commands they are not running.
                        Box::pin(handle_text(state, client, may_publish, text.as_str())).await;
                    }
                    Message::Binary(_) => {
                        let message = "binary frames are not supported; send JSON text frames";
                        return Box::pin(refuse(state, client, sink, ErrorCode::BinaryUnsupported, message, CloseCode::BinaryUnsupported)).await;
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
    sink: &mut Sink,
    code: ErrorCode,
    message: &str,
    close: CloseCode,
) -> Exit {
    state.limits().count_code(code, crate::limits::Limit::frame_bytes);
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

async fn handle_text(state: &AppState, client: &Arc<Client>, may_publish: bool, text: &str) {
    let cmd = match pulsewire_proto::decode_command(text) {
        Ok(cmd) => cmd,
        Err(e) => {
            client.push_control(encode_error(e.id, e.code, &e.message));
            return;
        }
    };
    if let ClientCommand::Publish { id, .. } = &cmd
        && !may_publish
    {
        client.push_control(encode_error(
            *id,
            ErrorCode::Forbidden,
            "this connection's API key lacks the `publish` scope",
        ));
        return;
    }
    if let Err((id, e)) = api::execute(state, client, cmd).await {
        state.limits().count_code(e.code, crate::limits::Limit::frame_bytes);
        client.push_control(encode_error(id, e.code, &e.message));
    }
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
