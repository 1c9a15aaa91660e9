//! What the WebSocket and SSE transports share: removing a connection from the hub however it
//! ends, and counting what was written.

use std::sync::Arc;
use std::time::Instant;

use pulsewire_hub::{Client, Hub, Outbound};

use crate::AppState;

/// Removes a connection from the hub when its transport ends, however it ends.
pub struct DisconnectGuard {
    hub: Hub,
    client: Arc<Client>,
}

impl DisconnectGuard {
    pub fn new(hub: Hub, client: Arc<Client>) -> Self {
        Self { hub, client }
    }
}

impl Drop for DisconnectGuard {
    fn drop(&mut self) {
        self.hub.disconnect(&self.client);
    }
}

/// Counts the messages of a write that reached the socket, and observes the publish-to-write
/// latency of its oldest message.
pub fn record_delivered(state: &AppState, client: &Client, items: &[Outbound]) {
    let mut messages = 0u64;
    let mut oldest: Option<Instant> = None;
    for item in items {
        if let Outbound::Message(m) = item {
            messages += 1;
            oldest = Some(oldest.map_or(m.received, |o| o.min(m.received)));
        }
    }
    if messages > 0 {
        client.count_delivered(messages);
        state.metrics().delivered.inc_by(messages);
    }
    if let Some(o) = oldest {
        state.metrics().publish_to_write.observe(o.elapsed().as_secs_f64());
    }
}
