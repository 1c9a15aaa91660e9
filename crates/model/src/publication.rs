//! Publications and where they sit in a channel's stream.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::ChannelName;

/// The tenant a channel belongs to. Every channel key includes one, so that channels of two
/// tenants never meet, by construction. Until authentication exists everything is `default`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TenantId(Arc<str>);

impl TenantId {
    pub fn new(s: &str) -> Self {
        Self(Arc::from(s))
    }

    pub fn default_tenant() -> Self {
        Self::new("default")
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

/// A place in a channel's stream. `offset` is the offset of the last publication seen (0 before
/// the first); `epoch` names one unbroken run of the channel's history: when history is lost the
/// epoch changes, so a stale position can never be taken for a valid one.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Position {
    pub epoch: Arc<str>,
    pub offset: u64,
}

/// Delivery priority. When a connection's outbound queue is full the lowest-priority queued
/// messages are dropped first.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    Low = 0,
    #[default]
    Normal = 1,
    High = 2,
    Critical = 3,
}

impl Priority {
    pub const ALL: [Priority; 4] = [Priority::Low, Priority::Normal, Priority::High, Priority::Critical];

    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Normal => "normal",
            Priority::High => "high",
            Priority::Critical => "critical",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// One message published to a channel, with the position the broker assigned to it.
#[derive(Clone, Debug)]
pub struct Publication {
    pub channel: ChannelName,
    pub epoch: Arc<str>,
    pub offset: u64,
    /// Milliseconds since the UNIX epoch at which the broker accepted it.
    pub ts: u64,
    pub priority: Priority,
    /// The payload: one valid JSON value, kept as its bytes so it is never re-parsed.
    pub data: Bytes,
}

impl Publication {
    pub fn position(&self) -> Position {
        Position {
            epoch: self.epoch.clone(),
            offset: self.offset,
        }
    }
}
