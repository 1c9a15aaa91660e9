//! Wire protocols of the benchmark targets: URLs, the connect + subscribe
//! handshake over a raw WebSocket, and per-frame keepalive handling
//! (Socket.IO `2`/`3` pings, centrifuge `{}` pings). WebSocket Ping frames are
//! answered by tungstenite itself while the connection keeps being read.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// A client WebSocket connection.
pub type Ws = WebSocketStream<TcpStream>;

/// Which server/protocol to drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// Pulsewire's own JSON protocol at /ws; publish via /api/v1/publish.
    Pulsewire,
    /// Socket.IO 4 / Engine.IO v4 over WebSocket (bench/socketio/server.js).
    Socketio,
    /// Go centrifuge v0.15 JSON client protocol (bench/centrifuge/main.go).
    Centrifuge,
}

impl Target {
    /// Path of the WebSocket endpoint.
    pub fn ws_path(self) -> &'static str {
        match self {
            Target::Pulsewire => "/ws",
            Target::Socketio => "/socket.io/?EIO=4&transport=websocket",
            Target::Centrifuge => "/connection/websocket",
        }
    }

    /// Path of the HTTP publish endpoint.
    pub fn publish_path(self) -> &'static str {
        match self {
            Target::Pulsewire => "/api/v1/publish",
            Target::Socketio | Target::Centrifuge => "/publish",
        }
    }

    /// Estimated bytes a pushed frame adds around the publication's data.
    pub fn envelope_bytes(self, channel: &str) -> usize {
        match self {
            // {"type":"message","channel":"..","epoch":"<~16>","offset":N,"ts":<13>,"data":...}
            Target::Pulsewire => 99 + channel.len(),
            // 42["message",...]
            Target::Socketio => 14,
            // {"result":{"channel":"..","data":{"data":...}}}
            Target::Centrifuge => 42 + channel.len(),
        }
    }

    /// Name as used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Target::Pulsewire => "pulsewire",
            Target::Socketio => "socketio",
            Target::Centrifuge => "centrifuge",
        }
    }
}

/// Small buffers: 10,000 connections must fit in one process.
fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_message_size(Some(1 << 20))
        .max_frame_size(Some(1 << 20))
}

/// Opens a WebSocket to `url` (TCP to `addr`) and subscribes to `channel`.
/// Returns once the server confirmed the subscription.
pub async fn open(target: Target, addr: SocketAddr, url: &str, channel: &str, timeout: Duration) -> anyhow::Result<Ws> {
    tokio::time::timeout(timeout, open_inner(target, addr, url, channel))
        .await
        .map_err(|_| anyhow::anyhow!("connect+subscribe timed out after {timeout:?}"))?
}

async fn open_inner(target: Target, addr: SocketAddr, url: &str, channel: &str) -> anyhow::Result<Ws> {
    let tcp = TcpStream::connect(addr).await.context("tcp connect")?;
    tcp.set_nodelay(true)?;
    let (mut ws, _resp) = tokio_tungstenite::client_async_with_config(url, tcp, Some(ws_config()))
        .await
        .context("websocket handshake")?;
    match target {
        Target::Pulsewire => {
            let sub = serde_json::json!({"type":"subscribe","id":1,"channels":[channel]});
            ws.send(Message::text(sub.to_string())).await?;
            wait_for(&mut ws, target, |t| {
                if t.contains("\"type\":\"subscribed\"") && t.contains("\"id\":1") {
                    Ok(true)
                } else if t.contains("\"type\":\"error\"") {
                    bail!("subscribe rejected: {t}")
                } else {
                    Ok(false)
                }
            })
            .await?;
        }
        Target::Socketio => {
            // Engine.IO open packet `0{...}`.
            wait_for(&mut ws, target, |t| Ok(t.starts_with('0'))).await?;
            ws.send(Message::text("40")).await?;
            wait_for(&mut ws, target, |t| {
                if t.starts_with("44") {
                    bail!("namespace connect refused: {t}")
                }
                Ok(t.starts_with("40"))
            })
            .await?;
            let channel_json = serde_json::to_string(channel)?;
            ws.send(Message::text(format!("421[\"subscribe\",{channel_json}]")))
                .await?;
            wait_for(&mut ws, target, |t| {
                if let Some(rest) = t.strip_prefix("431") {
                    if rest.contains("true") {
                        return Ok(true);
                    }
                    bail!("subscribe refused: {t}");
                }
                Ok(false)
            })
            .await?;
        }
        Target::Centrifuge => {
            ws.send(Message::text(r#"{"id":1,"params":{}}"#)).await?;
            wait_for(&mut ws, target, |t| centrifuge_reply(t, 1)).await?;
            let sub = serde_json::json!({"id":2,"method":1,"params":{"channel":channel}});
            ws.send(Message::text(sub.to_string())).await?;
            wait_for(&mut ws, target, |t| centrifuge_reply(t, 2)).await?;
        }
    }
    Ok(ws)
}

/// Checks (possibly newline-batched) centrifuge replies for the one with `id`.
fn centrifuge_reply(frame: &str, id: u32) -> anyhow::Result<bool> {
    let key = format!("\"id\":{id},");
    let key_end = format!("\"id\":{id}}}");
    for line in frame.lines() {
        if line.contains(&key) || line.contains(&key_end) {
            if line.contains("\"error\"") {
                bail!("centrifuge command {id} failed: {line}");
            }
            return Ok(true);
        }
    }
    Ok(false)
}

/// Reads frames until `done` accepts one, answering protocol pings meanwhile.
async fn wait_for(
    ws: &mut Ws,
    target: Target,
    mut done: impl FnMut(&str) -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    while let Some(msg) = ws.next().await {
        match msg? {
            Message::Text(t) => {
                if let Some(reply) = keepalive_reply(target, t.as_str()) {
                    ws.send(Message::text(reply)).await?;
                    continue;
                }
                if done(t.as_str())? {
                    return Ok(());
                }
            }
            Message::Close(frame) => bail!("server closed during handshake: {frame:?}"),
            _ => {}
        }
    }
    bail!("connection ended during handshake")
}

/// The reply a protocol-level keepalive text frame needs, if it is one.
pub fn keepalive_reply(target: Target, text: &str) -> Option<&'static str> {
    match (target, text) {
        (Target::Socketio, "2") => Some("3"),
        (Target::Centrifuge, "{}") => Some("{}"),
        _ => None,
    }
}
