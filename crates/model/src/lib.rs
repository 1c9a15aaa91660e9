//! Pulsewire's domain types, shared by every other crate: channel names and patterns with their
//! grammar, stream positions, priorities and publications, alerts and their events. Nothing here does IO or knows about
//! async, HTTP or the wire format.

mod alert;
mod channel;
mod publication;

pub use alert::{Ack, AlertEvent, AlertState, DEFAULT_TENANT, Severity, alert_id, tenant_alert_id};
pub use channel::{ChannelError, ChannelName, MAX_CHANNEL_LEN, MAX_SEGMENTS, Pattern, is_pattern};
pub use publication::{Position, Priority, Publication, TenantId};
