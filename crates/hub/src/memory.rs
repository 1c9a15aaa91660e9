//! The in-process broker: offsets, history rings and delivery for a single node.
//!
//! Channels live in sharded maps so publishes to different channels rarely share a lock. A
//! publish appends to the ring and hands the publication to the delivery while holding its
//! shard's lock: that is what keeps delivery in offset order per channel, and what lets a
//! subscriber's history read and its live feed meet without a gap (see `Hub::subscribe`).
//! History is in memory only, so every channel gets a fresh random epoch when it is created:
//! after a restart, or after an idle channel was swept, old positions can never match.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use pulsewire_model::{ChannelName, Position, Priority, Publication, TenantId};
use rand::Rng;

use crate::broker::{Broker, BrokerError, Delivery};
use crate::config::HubConfig;
use crate::history::{HistoryRing, HistorySlice};
use crate::sharded::Sharded;

type Key = (TenantId, ChannelName);

struct Entry {
    ring: HistoryRing,
    last_used_ms: u64,
}

pub struct MemoryBroker {
    channels: Sharded<Key, Entry>,
    config: HubConfig,
    delivery: OnceLock<Arc<dyn Delivery>>,
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A fresh epoch: 8 random base62 characters.
fn new_epoch() -> Arc<str> {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut rng = rand::rng();
    let s: String = (0..8)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect();
    Arc::from(s)
}

impl MemoryBroker {
    pub fn new(config: HubConfig) -> Self {
        Self {
            channels: Sharded::new(),
            config,
            delivery: OnceLock::new(),
        }
    }

    fn new_entry(&self) -> Entry {
        Entry {
            ring: HistoryRing::new(new_epoch()),
            last_used_ms: now_ms(),
        }
    }

    /// The history TTL of a channel, from its namespace's config (looked up rather than kept
    /// per channel: every byte per channel counts when each connection has its own).
    fn ttl_ms(&self, channel: &ChannelName) -> u64 {
        self.config.history_for(channel.namespace()).ttl.as_millis() as u64
    }

    /// Drops expired publications everywhere, and forgets channels that have kept nothing and
    /// seen no publication for their TTL. Returns how many channels were forgotten.
    pub fn sweep(&self) -> usize {
        let now = now_ms();
        let mut removed = 0;
        for shard in self.channels.shards() {
            let mut map = shard.lock();
            map.retain(|(_, channel), e| {
                let ttl_ms = self.ttl_ms(channel);
                e.ring.trim_older_than(now.saturating_sub(ttl_ms));
                let keep = !e.ring.is_empty() || now.saturating_sub(e.last_used_ms) < ttl_ms;
                removed += usize::from(!keep);
                keep
            });
        }
        removed
    }

    /// How often [`MemoryBroker::sweep`] should run.
    pub fn sweep_interval(&self) -> Duration {
        Duration::from_secs(1)
    }
}

#[async_trait]
impl Broker for MemoryBroker {
    async fn publish(
        &self,
        tenant: &TenantId,
        channel: &ChannelName,
        data: Bytes,
        priority: Priority,
    ) -> Result<Publication, BrokerError> {
        let key = (tenant.clone(), channel.clone());
        let mut map = self.channels.shard(&key).lock();
        let entry = map.entry(key).or_insert_with(|| self.new_entry());
        let ts = now_ms();
        entry.last_used_ms = ts;
        let bounds = self.config.history_for(channel.namespace());
        entry
            .ring
            .trim_older_than(ts.saturating_sub(bounds.ttl.as_millis() as u64));
        let p = entry.ring.append(bounds.size, |epoch, offset| Publication {
            channel: channel.clone(),
            epoch,
            offset,
            ts,
            priority,
            data,
        });
        if let Some(d) = self.delivery.get() {
            d.deliver(tenant, &p);
        }
        Ok(p)
    }

    async fn history(
        &self,
        tenant: &TenantId,
        channel: &ChannelName,
        since: Option<&Position>,
        limit: usize,
        create: bool,
    ) -> Result<HistorySlice, BrokerError> {
        let key = (tenant.clone(), channel.clone());
        let mut map = self.channels.shard(&key).lock();
        let now = now_ms();
        let entry = match map.get_mut(&key) {
            Some(e) => e,
            None if create => map.entry(key).or_insert_with(|| self.new_entry()),
            None => return Ok(HistoryRing::new(Arc::from("")).read(since, limit)),
        };
        if create {
            // A new subscriber keeps the channel from being swept right away.
            entry.last_used_ms = now;
        }
        entry.ring.trim_older_than(now.saturating_sub(self.ttl_ms(channel)));
        Ok(entry.ring.read(since, limit))
    }

    fn set_delivery(&self, delivery: Arc<dyn Delivery>) {
        // Only the first call takes effect, by contract.
        let _ = self.delivery.set(delivery);
    }

    fn history_stats(&self) -> (usize, usize) {
        let mut channels = 0;
        let mut kept = 0;
        for shard in self.channels.shards() {
            let map = shard.lock();
            channels += map.len();
            kept += map.values().map(|e| e.ring.len()).sum::<usize>();
        }
        (channels, kept)
    }

    fn channels(&self) -> Vec<(TenantId, ChannelName, usize, Position)> {
        let mut out = Vec::new();
        for shard in self.channels.shards() {
            let map = shard.lock();
            out.extend(
                map.iter()
                    .map(|((t, c), e)| (t.clone(), c.clone(), e.ring.len(), e.ring.position())),
            );
        }
        out
    }
}
