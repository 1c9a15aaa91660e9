//! The broker interface: where publications get their positions, where history lives, and how
//! publications reach every node's hub.
//!
//! The hub never assigns offsets itself. A broker assigns them, keeps history, and hands every
//! publication (its own node's and, for shared brokers, other nodes') to a [`Delivery`] in
//! offset order per channel. This crate ships the in-process broker ([`crate::MemoryBroker`]);
//! brokers over Redis or NATS implement the same trait.

use async_trait::async_trait;
use bytes::Bytes;
use pulsewire_model::{ChannelName, Position, Priority, Publication, TenantId};

use crate::history::HistorySlice;

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("broker unavailable: {0}")]
    Unavailable(String),
}

/// Receives publications from the broker, in offset order per channel.
pub trait Delivery: Send + Sync + 'static {
    fn deliver(&self, tenant: &TenantId, publication: &Publication);
}

#[async_trait]
pub trait Broker: Send + Sync + 'static {
    /// Assigns the next position on the channel, stores the publication in history and hands
    /// it to the delivery (the in-process broker does so before returning; a broker shared
    /// between nodes delivers when the publication comes back from the shared log).
    async fn publish(
        &self,
        tenant: &TenantId,
        channel: &ChannelName,
        data: Bytes,
        priority: Priority,
    ) -> Result<Publication, BrokerError>;

    /// Reads history: with `since`, the publications after it; without, the newest `limit`.
    /// With `create`, a channel not known yet is created (a subscriber needs a position that
    /// stays valid); without, an unknown channel reads as empty, with an empty epoch.
    async fn history(
        &self,
        tenant: &TenantId,
        channel: &ChannelName,
        since: Option<&Position>,
        limit: usize,
        create: bool,
    ) -> Result<HistorySlice, BrokerError>;

    /// Sets where publications go. Called once, before the first publish.
    fn set_delivery(&self, delivery: std::sync::Arc<dyn Delivery>);

    /// Number of channels with history kept, and publications kept in all.
    fn history_stats(&self) -> (usize, usize);

    /// The channels this broker knows on this node: tenant, name, publications kept and the
    /// current position.
    fn channels(&self) -> Vec<(TenantId, ChannelName, usize, Position)>;
}
