//! The hub's configuration: history bounds per namespace and the per-connection queue policy.
//! Every field has a default and a doc line; docs/config.md shows the defaults (a test in the
//! binary keeps its TOML block equal to `pulsewire default-config`) and explains each key.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// History kept for the channels of one namespace.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct HistoryConfig {
    /// How many publications each channel keeps for history and resume (0 keeps none).
    pub size: usize,
    /// How long a publication is kept for history and resume.
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        Self {
            size: 100,
            ttl: Duration::from_secs(300),
        }
    }
}

/// The bounds and policy of each connection's outbound queue.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct QueueConfig {
    /// Most messages a connection may have queued; past it the lowest-priority ones are dropped.
    pub max_messages: usize,
    /// Most bytes a connection may have queued; past it the lowest-priority ones are dropped.
    pub max_bytes: usize,
    /// A connection whose queue stays full this long is closed as a slow consumer (4008).
    #[serde(with = "humantime_serde")]
    pub slow_timeout: Duration,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            max_messages: 1024,
            max_bytes: 1 << 20,
            slow_timeout: Duration::from_secs(10),
        }
    }
}

/// Everything the hub needs to know.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct HubConfig {
    /// History for channels whose namespace has no entry in `namespaces`.
    pub history: HistoryConfig,
    /// History per namespace (the first `:`-separated segment of a channel name).
    pub namespaces: BTreeMap<String, HistoryConfig>,
    /// The outbound queue of every connection.
    pub queue: QueueConfig,
    /// Most channels and patterns one connection may subscribe to.
    pub max_subscriptions_per_client: usize,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            history: HistoryConfig::default(),
            namespaces: BTreeMap::new(),
            queue: QueueConfig::default(),
            max_subscriptions_per_client: 1024,
        }
    }
}

impl HubConfig {
    pub fn history_for(&self, namespace: &str) -> &HistoryConfig {
        self.namespaces.get(namespace).unwrap_or(&self.history)
    }

    /// Every problem with the values, each naming its key.
    pub fn problems(&self, prefix: &str) -> Vec<String> {
        let mut out = Vec::new();
        let check_history = |out: &mut Vec<String>, key: String, h: &HistoryConfig| {
            if h.size > 100_000 {
                out.push(format!("{key}.size: {} is above the maximum 100000", h.size));
            }
            if h.ttl.is_zero() {
                out.push(format!("{key}.ttl: must be above zero"));
            }
        };
        check_history(&mut out, format!("{prefix}history"), &self.history);
        for (ns, h) in &self.namespaces {
            if pulsewire_model::ChannelName::parse(ns).is_err() || ns.contains(':') {
                out.push(format!("{prefix}namespaces.{ns}: not a valid namespace name"));
            }
            check_history(&mut out, format!("{prefix}namespaces.{ns}"), h);
        }
        if self.queue.max_messages == 0 {
            out.push(format!("{prefix}queue.max_messages: must be at least 1"));
        }
        if self.queue.max_bytes < 1024 {
            out.push(format!("{prefix}queue.max_bytes: must be at least 1024"));
        }
        if self.queue.slow_timeout.is_zero() {
            out.push(format!("{prefix}queue.slow_timeout: must be above zero"));
        }
        if self.max_subscriptions_per_client == 0 {
            out.push(format!("{prefix}max_subscriptions_per_client: must be at least 1"));
        }
        out
    }
}
