//! Pulsewire's hub: channels and subscriptions, history and resume, fan-out of each publication
//! to every subscriber through bounded per-connection queues, and the broker interface that
//! assigns positions. It knows nothing of HTTP or sockets: transports (in the server crate) read
//! a [`Client`]'s queue and write it to their socket.

mod broker;
mod client;
mod config;
mod history;
mod hub;
mod memory;
mod metrics;
mod sharded;

pub use broker::{Broker, BrokerError, Delivery};
pub use client::{Batch, Client, CloseReason, Encoded, Heartbeat, Outbound, Sub, Transport, mono_ms};
pub use config::{HistoryConfig, HubConfig, QueueConfig};
pub use history::{HistoryRing, HistorySlice};
pub use hub::{ChannelInfo, Hub, HubError};
pub use memory::{MemoryBroker, now_ms};
pub use metrics::{HubMetrics, metrics_labels};
