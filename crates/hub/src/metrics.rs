//! Every counter and gauge the hub keeps, named once. The server registers them for
//! `/metrics` and reads them for `/api/v1/stats`, so both report the same numbers.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::client::Transport;

// Variant names are the label values Prometheus users see, hence lower case.
#[allow(non_camel_case_types)]
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum TransportLabel {
    websocket,
    sse,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransportLabels {
    pub transport: TransportLabel,
}

impl From<Transport> for TransportLabels {
    fn from(t: Transport) -> Self {
        let transport = match t {
            Transport::WebSocket => TransportLabel::websocket,
            Transport::Sse => TransportLabel::sse,
        };
        Self { transport }
    }
}

#[allow(non_camel_case_types)]
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum DropReason {
    /// Dropped by the queue policy because the connection's queue was full.
    queue_full,
    /// Still queued (or taken for a write that never happened) when a connection closed.
    closed,
    /// Still queued for a channel when the client unsubscribed from it.
    unsubscribed,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DropLabels {
    pub reason: DropReason,
}

#[derive(Debug)]
pub struct HubMetrics {
    pub connections: Family<TransportLabels, Gauge>,
    pub connections_opened: Family<TransportLabels, Counter>,
    pub connections_closed: Family<TransportLabels, Counter>,
    pub slow_consumer_closes: Counter,
    pub heartbeat_timeouts: Counter,
    pub subscriptions: Gauge,
    pub publications: Counter,
    pub delivered: Counter,
    pub dropped: Family<DropLabels, Counter>,
    pub dropped_queue_full: Counter,
    pub queued: Gauge,
    pub publish_to_write: Histogram,
}

impl Default for HubMetrics {
    fn default() -> Self {
        let buckets = [
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
        ];
        let dropped = Family::<DropLabels, Counter>::default();
        let dropped_queue_full = dropped
            .get_or_create(&DropLabels {
                reason: DropReason::queue_full,
            })
            .clone();
        Self {
            connections: Default::default(),
            connections_opened: Default::default(),
            connections_closed: Default::default(),
            slow_consumer_closes: Default::default(),
            heartbeat_timeouts: Default::default(),
            subscriptions: Default::default(),
            publications: Default::default(),
            delivered: Default::default(),
            dropped,
            dropped_queue_full,
            queued: Default::default(),
            publish_to_write: Histogram::new(buckets),
        }
    }
}

impl HubMetrics {
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "pulsewire_connections",
            "Open client connections",
            self.connections.clone(),
        );
        r.register(
            "pulsewire_connections_opened",
            "Client connections opened",
            self.connections_opened.clone(),
        );
        r.register(
            "pulsewire_connections_closed",
            "Client connections closed",
            self.connections_closed.clone(),
        );
        r.register(
            "pulsewire_slow_consumer_closes",
            "Connections closed as slow consumers",
            self.slow_consumer_closes.clone(),
        );
        r.register(
            "pulsewire_heartbeat_timeouts",
            "Connections closed for missing heartbeats",
            self.heartbeat_timeouts.clone(),
        );
        r.register(
            "pulsewire_subscriptions",
            "Active subscriptions (channels and patterns)",
            self.subscriptions.clone(),
        );
        r.register(
            "pulsewire_publications",
            "Publications accepted",
            self.publications.clone(),
        );
        r.register(
            "pulsewire_messages_delivered",
            "Messages written to client connections",
            self.delivered.clone(),
        );
        r.register(
            "pulsewire_messages_dropped",
            "Messages dropped, by reason",
            self.dropped.clone(),
        );
        r.register(
            "pulsewire_queued_messages",
            "Messages waiting in connection queues",
            self.queued.clone(),
        );
        r.register(
            "pulsewire_publish_to_write_seconds",
            "Time from a publication reaching the hub to its write to a socket (oldest message of each write)",
            self.publish_to_write.clone(),
        );
    }

    /// Messages dropped so far, by reason: `queue_full`, `closed`, `unsubscribed`.
    pub fn dropped_counts(&self) -> [(&'static str, u64); 3] {
        let get = |reason| self.dropped.get_or_create(&DropLabels { reason }).get();
        [
            ("queue_full", get(DropReason::queue_full)),
            ("closed", get(DropReason::closed)),
            ("unsubscribed", get(DropReason::unsubscribed)),
        ]
    }

    pub fn dropped_unsubscribed(&self, n: u64) {
        self.dropped
            .get_or_create(&DropLabels {
                reason: DropReason::unsubscribed,
            })
            .inc_by(n);
    }

    pub fn dropped_closed(&self, n: u64) {
        self.dropped
            .get_or_create(&DropLabels {
                reason: DropReason::closed,
            })
            .inc_by(n);
    }
}

/// The label set for a transport, for reading the per-transport families.
pub fn metrics_labels(t: Transport) -> TransportLabels {
    TransportLabels::from(t)
}
