//! The hub: who is subscribed to what, and fan-out of every publication to them.
//!
//! Subscriptions live in sharded maps keyed by (tenant, channel), so a publish takes one shard
//! lock and never a global one; patterns are kept per tenant, indexed by their first segment, and
//! matched against the publications of their namespace. Each publication is encoded once (once more per matching pattern, since the
//! frame names the pattern) and the same bytes are queued to every subscriber.
//!
//! Subscribing with recovery never loses or repeats a publication: the client first buffers
//! live messages for the channel, then joins the subscriber set, then reads history from the
//! broker, and finally queues the reply, the replay, and the buffered live messages after the
//! last replayed offset (see `Client::end_recovery`). This only needs the broker to deliver
//! each channel in offset order, which every broker must.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Instant;

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use pulsewire_model::{ChannelName, Pattern, Position, Priority, Publication, TenantId, is_pattern};
use pulsewire_proto::{ErrorCode, SubscribeReply, SubscribedChannel, encode_reply};

use crate::broker::{Broker, Delivery};
use crate::client::{Client, Encoded, Recovery, Sub, Transport};
use crate::config::HubConfig;
use crate::history::HistorySlice;
use crate::metrics::{HubMetrics, TransportLabels};
use crate::sharded::Sharded;

type Key = (TenantId, ChannelName);

/// A refused hub operation, with the protocol error code it maps to.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct HubError {
    pub code: ErrorCode,
    pub message: String,
}

impl HubError {
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

pub type Result<T, E = HubError> = std::result::Result<T, E>;

/// Subscribers of one channel or pattern. Removal swaps with the last; past `INDEX_FROM`
/// subscribers an id index makes it O(1), below it a scan is cheaper than the index's memory
/// (most channels have a handful of subscribers, and idle connections pay for every byte).
#[derive(Default)]
struct Subscribers {
    list: Vec<Arc<Client>>,
    // Boxed so that the common case (no index) costs one pointer per channel, not a whole map.
    #[allow(clippy::box_collection)]
    index: Option<Box<HashMap<u64, usize>>>,
}

const INDEX_FROM: usize = 16;

impl Subscribers {
    fn position(&self, id: u64) -> Option<usize> {
        match &self.index {
            Some(index) => index.get(&id).copied(),
            None => self.list.iter().position(|c| c.id == id),
        }
    }

    fn insert(&mut self, c: &Arc<Client>) -> bool {
        if self.position(c.id).is_some() {
            return false;
        }
        self.list.push(c.clone());
        match &mut self.index {
            Some(index) => {
                index.insert(c.id, self.list.len() - 1);
            }
            None if self.list.len() > INDEX_FROM => {
                self.index = Some(Box::new(self.list.iter().enumerate().map(|(i, c)| (c.id, i)).collect()));
            }
            None => {}
        }
        true
    }

    fn remove(&mut self, id: u64) -> bool {
        let Some(pos) = self.position(id) else { return false };
        self.list.swap_remove(pos);
        if let Some(index) = &mut self.index {
            index.remove(&id);
            if let Some(moved) = self.list.get(pos) {
                index.insert(moved.id, pos);
            }
        }
        true
    }
}

/// A tenant's pattern subscriptions, indexed by the pattern's first segment when it is a
/// literal (`metrics:*:cpu` under `metrics`), so that a publication is matched only against the
/// patterns of its own namespace plus those that start with a wildcard.
#[derive(Default)]
struct PatternIndex {
    by_first: HashMap<Box<str>, Vec<PatternSubs>>,
    wild: Vec<PatternSubs>,
}

impl PatternIndex {
    fn bucket_mut(&mut self, p: &Pattern) -> &mut Vec<PatternSubs> {
        match p.literal_prefix() {
            Some(first) => self.by_first.entry(first.into()).or_default(),
            None => &mut self.wild,
        }
    }

    fn add(&mut self, p: &Pattern, client: &Arc<Client>) {
        let bucket = self.bucket_mut(p);
        match bucket.iter_mut().find(|ps| ps.pattern == *p) {
            Some(ps) => {
                ps.subs.insert(client);
            }
            None => {
                let mut subs = Subscribers::default();
                subs.insert(client);
                bucket.push(PatternSubs {
                    pattern: p.clone(),
                    subs,
                });
            }
        }
    }

    fn remove(&mut self, p: &Pattern, client_id: u64) {
        let bucket = self.bucket_mut(p);
        if let Some(i) = bucket.iter().position(|ps| ps.pattern == *p) {
            bucket[i].subs.remove(client_id);
            if bucket[i].subs.list.is_empty() {
                bucket.swap_remove(i);
            }
        }
        if let Some(first) = p.literal_prefix()
            && self.by_first.get(first).is_some_and(Vec::is_empty)
        {
            self.by_first.remove(first);
        }
    }

    fn is_empty(&self) -> bool {
        self.by_first.is_empty() && self.wild.is_empty()
    }

    /// The pattern subscriptions that match `channel`.
    fn matching<'a>(&'a self, channel: &'a str) -> impl Iterator<Item = &'a PatternSubs> + 'a {
        let first = channel.split(':').next().unwrap_or(channel);
        self.by_first
            .get(first)
            .into_iter()
            .flatten()
            .chain(&self.wild)
            .filter(move |ps| !ps.subs.list.is_empty() && ps.pattern.matches(channel))
    }
}

struct PatternSubs {
    pattern: Pattern,
    subs: Subscribers,
}

struct Inner {
    broker: Arc<dyn Broker>,
    config: HubConfig,
    queue_config: Arc<crate::QueueConfig>,
    metrics: Arc<HubMetrics>,
    subscriptions: Sharded<Key, Subscribers>,
    patterns: RwLock<HashMap<TenantId, PatternIndex>>,
    clients: Mutex<HashMap<u64, Arc<Client>>>,
    next_id: AtomicU64,
}

/// Handle to the hub; cheap to clone.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

/// One channel's entry in `GET /api/v1/channels`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ChannelInfo {
    pub tenant: String,
    pub name: String,
    pub subscribers: usize,
    pub history_size: usize,
    pub epoch: Option<String>,
    pub offset: Option<u64>,
}

struct HubDelivery(Weak<Inner>);

impl Delivery for HubDelivery {
    fn deliver(&self, tenant: &TenantId, p: &Publication) {
        if let Some(inner) = self.0.upgrade() {
            inner.deliver(tenant, p);
        }
    }
}

impl Inner {
    fn deliver(&self, tenant: &TenantId, p: &Publication) {
        let received = Instant::now();
        let encode = |pattern: Option<&Arc<str>>| Arc::new(Encoded::new(p, pattern.cloned(), received));
        let key = (tenant.clone(), p.channel.clone());
        {
            let map = self.subscriptions.shard(&key).lock();
            if let Some(subs) = map.get(&key)
                && !subs.list.is_empty()
            {
                let m = encode(None);
                for c in &subs.list {
                    c.push_message(&m);
                }
            }
        }
        let patterns = self.patterns.read();
        if let Some(index) = patterns.get(tenant) {
            for ps in index.matching(p.channel.as_str()) {
                let m = encode(Some(ps.pattern.arc()));
                for c in &ps.subs.list {
                    c.push_message(&m);
                }
            }
        }
    }
}

/// The offset of the last message of a replay, or 0 for none.
fn replay_last(replay: &[Arc<Encoded>]) -> u64 {
    replay.last().map_or(0, |m| m.offset)
}

fn parse_channel(name: &str) -> Result<ChannelName> {
    ChannelName::parse(name).map_err(|e| HubError::new(ErrorCode::BadChannel, format!("{name:?}: {e}")))
}

impl Hub {
    pub fn new(broker: Arc<dyn Broker>, config: HubConfig, metrics: Arc<HubMetrics>) -> Self {
        let inner = Arc::new(Inner {
            broker,
            queue_config: Arc::new(config.queue.clone()),
            config,
            metrics,
            subscriptions: Sharded::new(),
            patterns: RwLock::new(HashMap::new()),
            clients: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
        });
        inner.broker.set_delivery(Arc::new(HubDelivery(Arc::downgrade(&inner))));
        Self { inner }
    }

    pub fn metrics(&self) -> &Arc<HubMetrics> {
        &self.inner.metrics
    }

    pub fn config(&self) -> &HubConfig {
        &self.inner.config
    }

    pub fn broker(&self) -> &Arc<dyn Broker> {
        &self.inner.broker
    }

    /// Registers a new connection.
    pub fn connect(&self, tenant: TenantId, transport: Transport, remote: Option<SocketAddr>) -> Arc<Client> {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let client = Arc::new(Client::new(
            id,
            tenant,
            transport,
            remote,
            self.inner.queue_config.clone(),
            self.inner.metrics.clone(),
        ));
        self.inner.clients.lock().insert(id, client.clone());
        let labels = TransportLabels::from(transport);
        self.inner.metrics.connections.get_or_create(&labels).inc();
        self.inner.metrics.connections_opened.get_or_create(&labels).inc();
        client
    }

    /// Removes a closed connection and all its subscriptions. Idempotent.
    pub fn disconnect(&self, client: &Arc<Client>) {
        if self.inner.clients.lock().remove(&client.id).is_none() {
            return;
        }
        let subs: Vec<Sub> = std::mem::take(&mut *client.subs.lock());
        for sub in &subs {
            self.remove_sub(client, sub);
        }
        self.inner.metrics.subscriptions.dec_by(subs.len() as i64);
        client.discard_all();
        let labels = TransportLabels::from(client.transport);
        self.inner.metrics.connections.get_or_create(&labels).dec();
        self.inner.metrics.connections_closed.get_or_create(&labels).inc();
    }

    fn remove_sub(&self, client: &Client, sub: &Sub) {
        match sub {
            Sub::Channel(ch) => {
                let key = (client.tenant.clone(), ch.clone());
                let mut map = self.inner.subscriptions.shard(&key).lock();
                if let Some(s) = map.get_mut(&key) {
                    s.remove(client.id);
                    if s.list.is_empty() {
                        map.remove(&key);
                    }
                }
            }
            Sub::Pattern(p) => {
                // The text was parsed when subscribed, so it parses again.
                let Ok(p) = Pattern::parse(p) else { return };
                let mut patterns = self.inner.patterns.write();
                if let Some(index) = patterns.get_mut(&client.tenant) {
                    index.remove(&p, client.id);
                    if index.is_empty() {
                        patterns.remove(&client.tenant);
                    }
                }
            }
        }
    }

    /// Calls `f` for every connected client, without copying the registry (for periodic checks
    /// over every connection). `f` must not connect or disconnect clients.
    pub fn for_each_client(&self, mut f: impl FnMut(&Arc<Client>)) {
        for c in self.inner.clients.lock().values() {
            f(c);
        }
    }

    pub fn client_count(&self) -> usize {
        self.inner.clients.lock().len()
    }

    /// The connected client with this id, if any.
    pub fn client(&self, id: u64) -> Option<Arc<Client>> {
        self.inner.clients.lock().get(&id).cloned()
    }

    /// Every connected client, in connection order (a copy of the registry).
    pub fn clients(&self) -> Vec<Arc<Client>> {
        let mut v: Vec<Arc<Client>> = self.inner.clients.lock().values().cloned().collect();
        v.sort_by_key(|c| c.id);
        v
    }

    /// Subscribes `client` to channels and patterns, replaying from `since` where given, and
    /// queues the `subscribed` reply (followed by any replay) on the client. All or nothing:
    /// one bad name or an existing subscription refuses the whole command.
    ///
    /// Returns, per channel, the position that delivery continues from: the `since` position
    /// when it was recovered, else the channel's current position.
    pub async fn subscribe(
        &self,
        client: &Arc<Client>,
        id: Option<u64>,
        names: &[String],
        since: &BTreeMap<String, Position>,
    ) -> Result<Vec<(ChannelName, Position)>> {
        if names.is_empty() {
            return Err(HubError::new(ErrorCode::BadRequest, "`channels` is empty"));
        }
        let mut channels = Vec::new();
        let mut patterns = Vec::new();
        let mut seen = HashSet::new();
        for name in names {
            if !seen.insert(name.as_str()) {
                return Err(HubError::new(
                    ErrorCode::BadRequest,
                    format!("{name:?} is listed twice"),
                ));
            }
            if is_pattern(name) {
                let p =
                    Pattern::parse(name).map_err(|e| HubError::new(ErrorCode::BadChannel, format!("{name:?}: {e}")))?;
                if since.contains_key(name) {
                    return Err(HubError::new(
                        ErrorCode::BadRequest,
                        format!("{name:?}: `since` is not supported for patterns"),
                    ));
                }
                patterns.push(p);
            } else {
                channels.push(parse_channel(name)?);
            }
        }
        if let Some(extra) = since.keys().find(|k| !seen.contains(k.as_str())) {
            return Err(HubError::new(
                ErrorCode::BadRequest,
                format!("`since` names {extra:?}, which is not in `channels`"),
            ));
        }
        {
            let mut subs = client.subs.lock();
            let limit = self.inner.config.max_subscriptions_per_client;
            if subs.len() + names.len() > limit {
                return Err(HubError::new(
                    ErrorCode::TooManySubscriptions,
                    format!("at most {limit} subscriptions per connection"),
                ));
            }
            let new: Vec<Sub> = channels
                .iter()
                .map(|c| Sub::Channel(c.clone()))
                .chain(patterns.iter().map(|p| Sub::Pattern(p.arc().clone())))
                .collect();
            if let Some(dup) = new.iter().find(|s| subs.contains(*s)) {
                return Err(HubError::new(
                    ErrorCode::AlreadySubscribed,
                    format!("already subscribed to {:?}", dup.as_str()),
                ));
            }
            subs.reserve_exact(new.len());
            subs.extend(new);
        }
        self.inner.metrics.subscriptions.inc_by(names.len() as i64);

        // Channels: buffer live messages, join, read history, then queue reply + replay + live.
        for ch in &channels {
            client.begin_recovery(ch);
            let key = (client.tenant.clone(), ch.clone());
            self.inner
                .subscriptions
                .shard(&key)
                .lock()
                .entry(key)
                .or_default()
                .insert(client);
        }
        let mut slices: Vec<HistorySlice> = Vec::with_capacity(channels.len());
        for ch in &channels {
            let from = since.get(ch.as_str());
            // Without `since` only the current position is needed.
            let limit = if from.is_some() { usize::MAX } else { 0 };
            match self.inner.broker.history(&client.tenant, ch, from, limit, true).await {
                Ok(slice) => slices.push(slice),
                Err(e) => {
                    client.cancel_recovery(&channels);
                    let all: Vec<Sub> = channels
                        .iter()
                        .map(|c| Sub::Channel(c.clone()))
                        .chain(patterns.iter().map(|p| Sub::Pattern(p.arc().clone())))
                        .collect();
                    self.drop_subs(client, &all);
                    return Err(HubError::new(ErrorCode::Unavailable, e.to_string()));
                }
            }
        }
        // Replay is bounded by the connection's queue bounds: a channel whose replay does not
        // fit in what is left is answered `recovered: false` and replays nothing.
        let queue = &self.inner.config.queue;
        let (queued_n, queued_b) = client.queue_depth();
        let (mut room_n, mut room_b) = (
            queue.max_messages.saturating_sub(queued_n),
            queue.max_bytes.saturating_sub(queued_b),
        );
        let received = Instant::now();
        let mut recovered = Vec::with_capacity(channels.len());
        let mut recoveries = Vec::with_capacity(channels.len());
        for (ch, s) in channels.iter().zip(&slices) {
            let asked = since.get(ch.as_str());
            // Nothing to encode when history cannot recover the channel anyway.
            let replay: Vec<Arc<Encoded>> = if s.recovered {
                s.publications
                    .iter()
                    .map(|p| Arc::new(Encoded::new(p, None, received)))
                    .collect()
            } else {
                Vec::new()
            };
            let bytes: usize = replay.iter().map(|m| m.frame.len()).sum();
            let fits = replay.len() <= room_n && bytes <= room_b;
            let ok = s.recovered && fits;
            let (replay, last_offset) = match asked {
                Some(p) if ok => {
                    room_n -= replay.len();
                    room_b -= bytes;
                    let last = p.offset.max(replay_last(&replay));
                    (replay, last)
                }
                _ => (Vec::new(), s.top.offset),
            };
            recovered.push(ok);
            recoveries.push(Recovery {
                channel: ch.clone(),
                epoch: s.top.epoch.clone(),
                replay,
                last_offset,
            });
        }
        let mut starts = Vec::with_capacity(channels.len());
        client.end_recovery(recoveries, |contiguous| {
            let mut out = BTreeMap::new();
            for (((ch, s), ok), contiguous) in channels.iter().zip(&slices).zip(&recovered).zip(contiguous) {
                let asked = since.get(ch.as_str());
                let ok_replay = *ok;
                let ok = *ok && *contiguous;
                let start = match asked {
                    Some(p) if ok => p.clone(),
                    _ => s.top.clone(),
                };
                starts.push((ch.clone(), start));
                out.insert(
                    ch.as_str().to_owned(),
                    SubscribedChannel {
                        epoch: Some(s.top.epoch.to_string()),
                        offset: Some(s.top.offset),
                        recovered: asked.map(|_| ok),
                        // The replay was queued when history recovered and fit, even if live
                        // delivery then showed a gap.
                        replayed: asked.map(|_| if ok_replay { s.publications.len() } else { 0 }),
                    },
                );
            }
            for p in &patterns {
                out.insert(p.as_str().to_owned(), SubscribedChannel::default());
            }
            Some(encode_reply(&SubscribeReply {
                kind: "subscribed".into(),
                id,
                channels: out,
            }))
        });
        // Patterns are live only; they join after the reply is queued, so that no pattern
        // frame can precede it.
        if !patterns.is_empty() {
            let mut map = self.inner.patterns.write();
            let index = map.entry(client.tenant.clone()).or_default();
            for p in &patterns {
                index.add(p, client);
            }
        }
        Ok(starts)
    }

    fn drop_subs(&self, client: &Client, subs: &[Sub]) {
        let mut removed = 0;
        {
            let mut mine = client.subs.lock();
            for s in subs {
                if let Some(i) = mine.iter().position(|m| m == s) {
                    mine.swap_remove(i);
                    removed += 1;
                }
            }
        }
        for s in subs {
            self.remove_sub(client, s);
        }
        self.inner.metrics.subscriptions.dec_by(removed);
    }

    /// Unsubscribes from channels and patterns; names not subscribed are ignored.
    pub fn unsubscribe(&self, client: &Client, names: &[String]) -> Result<()> {
        let mut subs = Vec::with_capacity(names.len());
        for name in names {
            if is_pattern(name) {
                let p =
                    Pattern::parse(name).map_err(|e| HubError::new(ErrorCode::BadChannel, format!("{name:?}: {e}")))?;
                subs.push(Sub::Pattern(p.arc().clone()));
            } else {
                subs.push(Sub::Channel(parse_channel(name)?));
            }
        }
        let mine: Vec<Sub> = {
            let held = client.subs.lock();
            subs.into_iter().filter(|s| held.contains(s)).collect()
        };
        self.drop_subs(client, &mine);
        for sub in &mine {
            if let Sub::Channel(ch) = sub {
                client.purge_channel(ch);
            }
        }
        Ok(())
    }

    /// Publishes through the broker; returns the publication with its assigned position.
    pub async fn publish(
        &self,
        tenant: &TenantId,
        channel: &str,
        data: Bytes,
        priority: Priority,
    ) -> Result<Publication> {
        let channel = parse_channel(channel)?;
        let p = self
            .inner
            .broker
            .publish(tenant, &channel, pulsewire_proto::single_line(data), priority)
            .await
            .map_err(|e| HubError::new(ErrorCode::Unavailable, e.to_string()))?;
        self.inner.metrics.publications.inc();
        Ok(p)
    }

    /// Reads a channel's history; `limit` defaults to everything kept.
    pub async fn history(
        &self,
        tenant: &TenantId,
        channel: &str,
        since: Option<&Position>,
        limit: Option<usize>,
    ) -> Result<HistorySlice> {
        let channel = parse_channel(channel)?;
        self.inner
            .broker
            .history(tenant, &channel, since, limit.unwrap_or(usize::MAX), false)
            .await
            .map_err(|e| HubError::new(ErrorCode::Unavailable, e.to_string()))
    }

    /// Every channel with subscribers or with a position kept by the broker, for
    /// `GET /api/v1/channels`.
    pub fn channels(&self) -> Vec<ChannelInfo> {
        let mut subscribers: HashMap<Key, usize> = HashMap::new();
        for shard in self.inner.subscriptions.shards() {
            subscribers.extend(shard.lock().iter().map(|(k, s)| (k.clone(), s.list.len())));
        }
        let mut out = Vec::new();
        for (tenant, ch, kept, pos) in self.inner.broker.channels() {
            let n = subscribers.remove(&(tenant.clone(), ch.clone())).unwrap_or(0);
            out.push(ChannelInfo {
                tenant: tenant.as_str().to_owned(),
                name: ch.as_str().to_owned(),
                subscribers: n,
                history_size: kept,
                epoch: Some(pos.epoch.to_string()),
                offset: Some(pos.offset),
            });
        }
        // Subscribed channels the broker does not know (yet, or any more).
        for ((tenant, ch), n) in subscribers {
            out.push(ChannelInfo {
                tenant: tenant.as_str().to_owned(),
                name: ch.as_str().to_owned(),
                subscribers: n,
                history_size: 0,
                epoch: None,
                offset: None,
            });
        }
        out.sort_by(|a, b| (&a.tenant, &a.name).cmp(&(&b.tenant, &b.name)));
        out
    }

    /// True if a publication on `channel` would reach anyone now, directly or through a
    /// pattern. Producers of high-volume channels (ingested metrics) use it to skip encoding
    /// what nobody reads.
    pub fn has_subscribers(&self, tenant: &TenantId, channel: &str) -> bool {
        let Ok(name) = ChannelName::parse(channel) else {
            return false;
        };
        let key = (tenant.clone(), name);
        let direct = self
            .inner
            .subscriptions
            .shard(&key)
            .lock()
            .get(&key)
            .is_some_and(|s| !s.list.is_empty());
        direct
            || self
                .inner
                .patterns
                .read()
                .get(tenant)
                .is_some_and(|index| index.matching(channel).next().is_some())
    }

    /// The connections subscribed to `channel` by name (pattern subscribers are not listed: a
    /// pattern says nothing about interest in one channel), as (client id, user), by id.
    pub fn presence(&self, tenant: &TenantId, channel: &str) -> Result<Vec<(u64, Option<Arc<str>>)>> {
        let name = parse_channel(channel)?;
        let key = (tenant.clone(), name);
        let mut out: Vec<(u64, Option<Arc<str>>)> = self
            .inner
            .subscriptions
            .shard(&key)
            .lock()
            .get(&key)
            .map(|s| s.list.iter().map(|c| (c.id, c.user.get().cloned())).collect())
            .unwrap_or_default();
        out.sort_by_key(|(id, _)| *id);
        Ok(out)
    }

    /// The tenants with a subscriber in `namespace` (a channel named `<namespace>:...`, or a
    /// pattern that can match one), sorted. Producers that publish per tenant (statistics)
    /// compute only for these.
    pub fn tenants_subscribed_in(&self, namespace: &str) -> Vec<TenantId> {
        let prefix = format!("{namespace}:");
        let mut out: HashSet<TenantId> = HashSet::new();
        for shard in self.inner.subscriptions.shards() {
            out.extend(
                shard
                    .lock()
                    .iter()
                    .filter(|((_, ch), s)| !s.list.is_empty() && ch.as_str().starts_with(&prefix))
                    .map(|((t, _), _)| t.clone()),
            );
        }
        for (tenant, index) in self.inner.patterns.read().iter() {
            if !index.wild.is_empty() || index.by_first.get(namespace).is_some_and(|b| !b.is_empty()) {
                out.insert(tenant.clone());
            }
        }
        let mut out: Vec<TenantId> = out.into_iter().collect();
        out.sort();
        out
    }

    /// Number of channels with at least one subscriber.
    pub fn channel_count(&self) -> usize {
        self.inner.subscriptions.shards().map(|s| s.lock().len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryBroker;

    fn hub() -> Hub {
        let config = HubConfig::default();
        Hub::new(Arc::new(MemoryBroker::new(config.clone())), config, Arc::default())
    }

    fn frames(c: &Client) -> Vec<String> {
        c.take_batch(usize::MAX)
            .items
            .iter()
            .map(|i| String::from_utf8_lossy(i.frame()).into_owned())
            .collect()
    }

    #[tokio::test]
    async fn tenants_never_see_each_other() {
        let hub = hub();
        let a = hub.connect(TenantId::new("a"), Transport::WebSocket, None);
        let b = hub.connect(TenantId::new("b"), Transport::WebSocket, None);
        let chans = vec!["shared".to_string(), "shared:>".to_string()];
        hub.subscribe(&a, Some(1), &chans[..1], &BTreeMap::new()).await.unwrap();
        hub.subscribe(&b, Some(1), &chans, &BTreeMap::new()).await.unwrap();
        frames(&a);
        frames(&b);
        let p = hub
            .publish(
                &TenantId::new("a"),
                "shared",
                Bytes::from_static(b"1"),
                Priority::Normal,
            )
            .await
            .unwrap();
        assert_eq!(p.offset, 1);
        hub.publish(
            &TenantId::new("a"),
            "shared:x",
            Bytes::from_static(b"2"),
            Priority::Normal,
        )
        .await
        .unwrap();
        assert_eq!(frames(&a).len(), 1);
        assert_eq!(frames(&b), Vec::<String>::new(), "tenant b saw tenant a's publications");
        // Same channel name, separate streams: tenant b's first publication is its offset 1.
        let p = hub
            .publish(
                &TenantId::new("b"),
                "shared",
                Bytes::from_static(b"3"),
                Priority::Normal,
            )
            .await
            .unwrap();
        assert_eq!(p.offset, 1);
        let h = hub.history(&TenantId::new("b"), "shared", None, None).await.unwrap();
        assert_eq!(h.publications.len(), 1);
        assert_eq!(frames(&b).len(), 1);
        assert!(frames(&a).is_empty());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// Any tenants, any subscriptions (names and patterns, alike across tenants), any
        /// publications: a client gets exactly its own tenant's publications that its
        /// subscriptions match, and `tenants_subscribed_in` names exactly the tenants with a
        /// subscription that can reach the namespace.
        #[test]
        fn deliveries_never_cross_tenants(
            subs in proptest::collection::vec((0usize..4, proptest::sample::subsequence(vec!["news", "stats:cpu", "stats:*", "chat:a", "chat:>"], 1..=3)), 1..8),
            pubs in proptest::collection::vec((0usize..4, proptest::sample::select(vec!["news", "stats:cpu", "stats:mem", "chat:a", "chat:b:c"])), 0..30),
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            rt.block_on(async {
                let hub = hub();
                let tenant = |i: usize| TenantId::new(&format!("t{i}"));
                let mut clients = Vec::new();
                for (t, chans) in &subs {
                    let c = hub.connect(tenant(*t), Transport::WebSocket, None);
                    let chans: Vec<String> = chans.iter().map(|s| s.to_string()).collect();
                    hub.subscribe(&c, Some(1), &chans, &BTreeMap::new()).await.unwrap();
                    frames(&c);
                    clients.push((*t, chans, c));
                }
                let mut want_stats: Vec<TenantId> = subs
                    .iter()
                    .filter(|(_, ch)| ch.iter().any(|c| c.starts_with("stats:")))
                    .map(|(t, _)| tenant(*t))
                    .collect();
                want_stats.sort();
                want_stats.dedup();
                proptest::prop_assert_eq!(hub.tenants_subscribed_in("stats"), want_stats);
                for (n, (t, ch)) in pubs.iter().enumerate() {
                    let data = Bytes::from(format!("\"t{t}-{n}\""));
                    hub.publish(&tenant(*t), ch, data, Priority::Normal).await.unwrap();
                }
                for (t, chans, c) in &clients {
                    let got = frames(c);
                    // One frame per matching subscription (a name and a pattern both deliver).
                    let want: usize = pubs
                        .iter()
                        .filter(|(pt, _)| pt == t)
                        .map(|(_, ch)| {
                            chans
                                .iter()
                                .filter(|s| Pattern::parse(s).map(|p| p.matches(ch)).unwrap_or(*s == ch))
                                .count()
                        })
                        .sum();
                    proptest::prop_assert_eq!(got.len(), want, "{:?}", got);
                    let own = format!("\"t{t}-");
                    proptest::prop_assert!(got.iter().all(|f| f.contains(&own)), "{:?}", got);
                }
                Ok(())
            })?;
        }
    }

    #[test]
    fn subscriber_sets_with_and_without_index_agree() {
        let hub = hub();
        let clients: Vec<_> = (0..40)
            .map(|_| hub.connect(TenantId::default_tenant(), Transport::WebSocket, None))
            .collect();
        let mut set = Subscribers::default();
        for c in &clients {
            assert!(set.insert(c));
            assert!(!set.insert(c));
        }
        assert!(set.index.is_some());
        for c in clients.iter().step_by(3) {
            assert!(set.remove(c.id));
            assert!(!set.remove(c.id));
        }
        let mut want: Vec<u64> = clients
            .iter()
            .map(|c| c.id)
            .filter(|id| (id - clients[0].id) % 3 != 0)
            .collect();
        let mut got: Vec<u64> = set.list.iter().map(|c| c.id).collect();
        want.sort();
        got.sort();
        assert_eq!(got, want);
        for c in &set.list {
            assert_eq!(set.position(c.id).map(|p| set.list[p].id), Some(c.id));
        }
    }

    /// A broker whose history reads fail on demand, standing in for a shared broker (Redis,
    /// NATS) that is unreachable: the in-process broker itself never fails.
    struct FlakyBroker {
        inner: MemoryBroker,
        fail: std::sync::atomic::AtomicBool,
    }

    #[async_trait::async_trait]
    impl Broker for FlakyBroker {
        async fn publish(
            &self,
            tenant: &TenantId,
            channel: &ChannelName,
            data: Bytes,
            priority: Priority,
        ) -> Result<Publication, crate::BrokerError> {
            self.inner.publish(tenant, channel, data, priority).await
        }

        async fn history(
            &self,
            tenant: &TenantId,
            channel: &ChannelName,
            since: Option<&Position>,
            limit: usize,
            create: bool,
        ) -> Result<HistorySlice, crate::BrokerError> {
            if self.fail.load(Ordering::Relaxed) {
                return Err(crate::BrokerError::Unavailable("history store down".into()));
            }
            self.inner.history(tenant, channel, since, limit, create).await
        }

        fn set_delivery(&self, delivery: Arc<dyn Delivery>) {
            self.inner.set_delivery(delivery)
        }

        fn history_stats(&self) -> (usize, usize) {
            self.inner.history_stats()
        }

        fn channels(&self) -> Vec<(TenantId, ChannelName, usize, Position)> {
            self.inner.channels()
        }
    }

    #[tokio::test]
    async fn a_failed_subscribe_leaves_nothing_behind() {
        let config = HubConfig::default();
        let broker = Arc::new(FlakyBroker {
            inner: MemoryBroker::new(config.clone()),
            fail: std::sync::atomic::AtomicBool::new(true),
        });
        let hub = Hub::new(broker.clone(), config, Arc::default());
        let c = hub.connect(TenantId::default_tenant(), Transport::WebSocket, None);
        let names = vec!["a".to_string(), "b:*".to_string()];
        let err = hub.subscribe(&c, Some(1), &names, &BTreeMap::new()).await.unwrap_err();
        assert_eq!(err.code, ErrorCode::Unavailable);
        assert!(c.subscriptions().is_empty());
        assert_eq!(hub.metrics().subscriptions.get(), 0);
        assert_eq!(hub.channel_count(), 0);
        hub.publish(
            &TenantId::default_tenant(),
            "a",
            Bytes::from_static(b"1"),
            Priority::Normal,
        )
        .await
        .unwrap();
        hub.publish(
            &TenantId::default_tenant(),
            "b:x",
            Bytes::from_static(b"2"),
            Priority::Normal,
        )
        .await
        .unwrap();
        assert!(
            frames(&c).is_empty(),
            "nothing may reach a client whose subscribe failed"
        );
        // Once the broker is back, the same subscribe works.
        broker.fail.store(false, Ordering::Relaxed);
        hub.subscribe(&c, Some(2), &names, &BTreeMap::new()).await.unwrap();
        assert_eq!(c.subscriptions(), ["a", "b:*"]);
    }

    #[test]
    fn pattern_index_finds_exactly_the_matching_patterns() {
        let hub = hub();
        let c = hub.connect(TenantId::default_tenant(), Transport::WebSocket, None);
        let texts = ["a:*", "a:>", "*:x", "*:*:y", ">", "b:>", "a:b:*", "*"];
        let patterns: Vec<Pattern> = texts.iter().map(|t| Pattern::parse(t).unwrap()).collect();
        let mut index = PatternIndex::default();
        for p in &patterns {
            index.add(p, &c);
        }
        for channel in ["a", "a:x", "a:b:y", "b", "b:x", "c:d:y", "x:x", "a:b:c:d"] {
            let mut got: Vec<&str> = index.matching(channel).map(|ps| ps.pattern.as_str()).collect();
            let mut want: Vec<&str> = patterns
                .iter()
                .filter(|p| p.matches(channel))
                .map(Pattern::as_str)
                .collect();
            got.sort();
            want.sort();
            assert_eq!(got, want, "channel {channel}");
        }
        for p in &patterns {
            index.remove(p, c.id);
        }
        assert!(index.is_empty());
    }

    #[tokio::test]
    async fn disconnect_removes_every_subscription() {
        let hub = hub();
        let c = hub.connect(TenantId::default_tenant(), Transport::Sse, None);
        let names = vec!["x".to_string(), "y:*".to_string()];
        hub.subscribe(&c, None, &names, &BTreeMap::new()).await.unwrap();
        assert_eq!(hub.metrics().subscriptions.get(), 2);
        hub.disconnect(&c);
        hub.disconnect(&c);
        assert_eq!(hub.metrics().subscriptions.get(), 0);
        assert_eq!(hub.channel_count(), 0);
        assert!(hub.clients().is_empty());
        assert!(hub.inner.patterns.read().is_empty());
    }
}
