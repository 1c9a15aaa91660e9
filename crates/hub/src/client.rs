//! A connected client as the hub sees it: identity, subscriptions, and its bounded outbound
//! queue with the drop and slow-consumer policy.
//!
//! Policy when the queue is over its message or byte bound: drop the oldest queued message of
//! the lowest priority present (the incoming one itself if it is the lowest), count it, and
//! remember since when the queue has been full. A queue that stays full for `slow_timeout` marks
//! the client for closing as a slow consumer (close code 4008). Order is first-in first-out
//! across priorities: priority decides what is dropped, never what overtakes, so a channel's
//! offsets always arrive in order (with a visible gap if something was dropped).
//! Control frames (replies and errors) are never dropped.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use parking_lot::Mutex;
use pulsewire_model::{ChannelName, Priority, TenantId};
use tokio::sync::Notify;

use crate::config::QueueConfig;
use crate::metrics::HubMetrics;

/// A publication encoded once, shared by every subscriber that receives it.
#[derive(Debug, Clone)]
pub struct Encoded {
    pub channel: ChannelName,
    pub epoch: Arc<str>,
    pub offset: u64,
    pub priority: Priority,
    /// The pattern subscription this copy is for; `None` for a channel subscription.
    pub pattern: Option<Arc<str>>,
    /// The JSON `message` frame.
    pub frame: Bytes,
    /// When the hub received it from the broker, for the publish-to-write latency histogram.
    pub received: Instant,
}

impl Encoded {
    /// Encodes a publication (for a pattern subscription, the frame names the pattern).
    pub fn new(p: &pulsewire_model::Publication, pattern: Option<Arc<str>>, received: Instant) -> Self {
        Self {
            channel: p.channel.clone(),
            epoch: p.epoch.clone(),
            offset: p.offset,
            priority: p.priority,
            frame: pulsewire_proto::encode_message(p, pattern.as_deref()),
            pattern,
            received,
        }
    }
}

/// One queued item.
#[derive(Debug, Clone)]
pub enum Outbound {
    Message(Arc<Encoded>),
    /// A reply or error frame for this client only.
    Control(Bytes),
    /// A transport-level keepalive probe (a WebSocket ping frame).
    Ping,
}

static NO_BYTES: Bytes = Bytes::from_static(b"");

impl Outbound {
    pub fn frame(&self) -> &Bytes {
        match self {
            Outbound::Message(m) => &m.frame,
            Outbound::Control(b) => b,
            Outbound::Ping => &NO_BYTES,
        }
    }

    fn len(&self) -> usize {
        self.frame().len()
    }

    /// Drop rank: lower is dropped first; control frames are never dropped.
    fn rank(&self) -> Option<Priority> {
        match self {
            Outbound::Message(m) => Some(m.priority),
            Outbound::Control(_) | Outbound::Ping => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    WebSocket,
    Sse,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::WebSocket => "websocket",
            Transport::Sse => "sse",
        }
    }
}

/// Why a client is being closed by the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    SlowConsumer,
    /// Graceful: flush what is queued, then close with "reconnect".
    Shutdown,
    /// End now, without flushing (the graceful shutdown ran out of time).
    Abort,
    /// The peer did not answer a keepalive probe in time.
    HeartbeatTimeout,
    /// An operator asked the server to drop the connection: close now with "disconnected,
    /// reconnect", without flushing the queue (the client recovers it by resubscribing with
    /// its last positions).
    Disconnected,
}

/// A subscription entry: a channel or a pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Sub {
    Channel(ChannelName),
    Pattern(Arc<str>),
}

impl Sub {
    pub fn as_str(&self) -> &str {
        match self {
            Sub::Channel(c) => c.as_str(),
            Sub::Pattern(p) => p,
        }
    }
}

#[derive(Default)]
struct Queue {
    items: VecDeque<Outbound>,
    bytes: usize,
    /// Queued messages (not control frames) and their bytes, per priority.
    count: [u32; 4],
    prio_bytes: [usize; 4],
    full_since: Option<Instant>,
    /// Channels being subscribed with recovery: their live messages wait here until history is
    /// in. Bounded by `max_messages`; past it the recovery is reported as not recovered.
    recovering: Recovering,
    close: Option<CloseReason>,
}

/// The channels in recovery: a handful at most, and none almost always, so a plain list (no
/// allocation while empty, which every idle connection is) rather than a map.
#[derive(Default)]
struct Recovering(Vec<(ChannelName, RecoveryBuffer)>);

impl Recovering {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn get_mut(&mut self, channel: &ChannelName) -> Option<&mut RecoveryBuffer> {
        self.0.iter_mut().find(|(c, _)| c == channel).map(|(_, b)| b)
    }

    fn insert(&mut self, channel: ChannelName, buffer: RecoveryBuffer) {
        self.remove(&channel);
        self.0.push((channel, buffer));
    }

    fn remove(&mut self, channel: &ChannelName) -> Option<RecoveryBuffer> {
        let i = self.0.iter().position(|(c, _)| c == channel)?;
        Some(self.0.swap_remove(i).1)
    }

    fn drain(&mut self) -> impl Iterator<Item = (ChannelName, RecoveryBuffer)> + '_ {
        self.0.drain(..)
    }
}

#[derive(Default)]
struct RecoveryBuffer {
    items: Vec<Arc<Encoded>>,
    bytes: usize,
    overflowed: bool,
}

impl Queue {
    fn push_message(&mut self, m: Arc<Encoded>) {
        let i = m.priority.index();
        self.count[i] += 1;
        self.prio_bytes[i] += m.frame.len();
        self.bytes += m.frame.len();
        self.items.push_back(Outbound::Message(m));
    }

    /// Accounts for an item leaving the queue; returns 1 for a message, 0 for a control frame.
    fn forget(&mut self, item: &Outbound) -> u64 {
        self.bytes -= item.len();
        match item {
            Outbound::Message(m) => {
                let i = m.priority.index();
                self.count[i] -= 1;
                self.prio_bytes[i] -= m.frame.len();
                1
            }
            Outbound::Control(_) | Outbound::Ping => 0,
        }
    }
}

pub struct Client {
    pub id: u64,
    pub tenant: TenantId,
    pub transport: Transport,
    pub remote: Option<SocketAddr>,
    pub connected_at: SystemTime,
    /// Who the connection authenticated as (a connection token's `sub`), set once after it
    /// authenticated; unset for API keys and anonymous connections. Shown by presence.
    pub user: std::sync::OnceLock<Arc<str>>,
    /// Shared by every client of the hub: one copy, not one per connection.
    config: Arc<QueueConfig>,
    metrics: Arc<HubMetrics>,
    queue: Mutex<Queue>,
    notify: Notify,
    closing: Notify,
    /// Channels and patterns subscribed. A list sized exactly (most connections hold one or a
    /// few), since a set's table would cost every connection several times more.
    pub(crate) subs: Mutex<Vec<Sub>>,
    dropped: AtomicU64,
    delivered: AtomicU64,
    /// When the peer last sent anything, and when the outstanding probe was sent (0: none), in
    /// milliseconds of [`mono_ms`]. One heartbeat task checks every connection with these, so
    /// connections need no timer of their own.
    last_seen: AtomicU64,
    probe_sent: AtomicU64,
    /// A probe is queued and not written yet: its answer cannot be due.
    probe_queued: std::sync::atomic::AtomicBool,
    /// The writer is in the middle of a socket write (and so not reading answers).
    writing: std::sync::atomic::AtomicBool,
}

/// Milliseconds since the first call, on a monotonic clock.
pub fn mono_ms() -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

/// What [`Client::heartbeat`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heartbeat {
    Fine,
    /// A probe was queued.
    Probed,
    /// The peer did not answer the last probe in time; the client is being closed.
    TimedOut,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("id", &self.id)
            .field("transport", &self.transport)
            .finish()
    }
}

/// What a writer takes from the queue in one go.
pub struct Batch {
    pub items: Vec<Outbound>,
    pub close: Option<CloseReason>,
}

impl Client {
    pub(crate) fn new(
        id: u64,
        tenant: TenantId,
        transport: Transport,
        remote: Option<SocketAddr>,
        config: Arc<QueueConfig>,
        metrics: Arc<HubMetrics>,
    ) -> Self {
        Self {
            id,
            tenant,
            transport,
            remote,
            connected_at: SystemTime::now(),
            user: std::sync::OnceLock::new(),
            config,
            metrics,
            queue: Mutex::new(Queue::default()),
            notify: Notify::new(),
            closing: Notify::new(),
            subs: Mutex::new(Vec::new()),
            dropped: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            last_seen: AtomicU64::new(mono_ms()),
            probe_sent: AtomicU64::new(0),
            probe_queued: Default::default(),
            writing: Default::default(),
        }
    }

    /// Waits until there is something to write or the client is to be closed.
    pub async fn ready(&self) {
        self.notify.notified().await
    }

    /// Records that the peer sent something: it is alive.
    pub fn touch(&self) {
        self.last_seen.store(mono_ms(), Ordering::Relaxed);
    }

    /// The keepalive check, run periodically for every connection that uses probes: queue a
    /// probe when `interval` has passed since the last one, and close the client when a written
    /// probe has gone unanswered (nothing received since) for `timeout`. The probe goes to the
    /// front of the queue, and its clock starts when the writer reports it written
    /// ([`Client::probe_written`]); while a write is in progress nothing times out, since the
    /// writer is not reading answers then (a stuck write has its own bound).
    pub fn heartbeat(&self, now: u64, interval: u64, timeout: u64) -> Heartbeat {
        if self.probe_queued.load(Ordering::Relaxed) || self.writing.load(Ordering::Relaxed) {
            return Heartbeat::Fine;
        }
        let sent = self.probe_sent.load(Ordering::Relaxed);
        let seen = self.last_seen.load(Ordering::Relaxed);
        if sent != 0 && seen < sent {
            // A probe is outstanding: wait for its answer (never re-probe, which would move the
            // deadline), or give up on the peer.
            if now.saturating_sub(sent) >= timeout {
                let mut q = self.queue.lock();
                self.mark_close(&mut q, CloseReason::HeartbeatTimeout);
                return Heartbeat::TimedOut;
            }
            return Heartbeat::Fine;
        }
        let last_probe = if sent == 0 { seen } else { sent };
        if now.saturating_sub(last_probe) >= interval {
            self.probe_queued.store(true, Ordering::Relaxed);
            let mut q = self.queue.lock();
            q.items.push_front(Outbound::Ping);
            drop(q);
            self.notify.notify_one();
            return Heartbeat::Probed;
        }
        Heartbeat::Fine
    }

    /// Called by the writer once a probe is on the wire: its answer is due from now.
    pub fn probe_written(&self) {
        self.probe_sent.store(mono_ms(), Ordering::Relaxed);
        self.probe_queued.store(false, Ordering::Relaxed);
    }

    /// Called by the writer around each socket write.
    pub fn set_writing(&self, writing: bool) {
        self.writing.store(writing, Ordering::Relaxed);
    }

    /// Resolves, with the reason, when the client is to be closed without flushing (a slow
    /// consumer, or an abort); writers race their socket writes against it, since a stalled
    /// socket never finishes a write.
    pub async fn aborted(&self) -> CloseReason {
        loop {
            if let Some(
                reason @ (CloseReason::SlowConsumer
                | CloseReason::Abort
                | CloseReason::HeartbeatTimeout
                | CloseReason::Disconnected),
            ) = self.queue.lock().close
            {
                return reason;
            }
            self.closing.notified().await;
        }
    }

    /// Ends the connection at once, whatever else was asked of it before.
    pub fn abort(&self) {
        let mut q = self.queue.lock();
        q.close = Some(CloseReason::Abort);
        drop(q);
        self.notify.notify_one();
        self.closing.notify_one();
    }

    /// Marks the client a slow consumer if its queue has been full for `slow_timeout`; for
    /// writers blocked on a stalled socket, when no new publication comes to trigger the check.
    /// Returns the reason when the client is to be closed without flushing.
    pub fn check_slow(&self) -> Option<CloseReason> {
        let mut q = self.queue.lock();
        if let Some(since) = q.full_since
            && since.elapsed() >= self.config.slow_timeout
        {
            self.mark_close(&mut q, CloseReason::SlowConsumer);
        }
        q.close.filter(|r| *r != CloseReason::Shutdown)
    }

    pub fn slow_timeout(&self) -> std::time::Duration {
        self.config.slow_timeout
    }

    /// Queues a reply or error frame. Control frames are never dropped.
    pub fn push_control(&self, frame: Bytes) {
        let mut q = self.queue.lock();
        q.bytes += frame.len();
        q.items.push_back(Outbound::Control(frame));
        drop(q);
        self.notify.notify_one();
    }

    /// Queues a live message, applying the recovery buffer and the drop policy.
    pub(crate) fn push_message(&self, m: &Arc<Encoded>) {
        let mut q = self.queue.lock();
        if q.close.is_some() {
            self.metrics.dropped_closed(1);
            return;
        }
        if m.pattern.is_none()
            && !q.recovering.is_empty()
            && let Some(buf) = q.recovering.get_mut(&m.channel)
        {
            if buf.items.len() < self.config.max_messages && buf.bytes + m.frame.len() <= self.config.max_bytes {
                buf.bytes += m.frame.len();
                buf.items.push(m.clone());
            } else {
                buf.overflowed = true;
                self.count_drop();
            }
            return;
        }
        self.enqueue(&mut q, m.clone());
        drop(q);
        self.notify.notify_one();
    }

    /// The drop policy (see the module docs).
    fn enqueue(&self, q: &mut Queue, m: Arc<Encoded>) {
        let len = m.frame.len();
        let (max_n, max_b) = (self.config.max_messages, self.config.max_bytes);
        if len > max_b {
            // Can never fit; says nothing about how fast this client reads.
            self.count_drop();
            return;
        }
        let fits = |q: &Queue| q.items.len() < max_n && q.bytes + len <= max_b;
        if fits(q) {
            q.push_message(m);
            self.metrics.queued.inc();
            return;
        }
        let now = Instant::now();
        let since = *q.full_since.get_or_insert(now);
        if now.duration_since(since) >= self.config.slow_timeout {
            self.mark_close(q, CloseReason::SlowConsumer);
            self.metrics.dropped_closed(1);
            return;
        }
        // Would evicting every queued message of lower priority make room? If not, the incoming
        // message is the one dropped, and nothing else is.
        let inc = m.priority.index();
        let lower_n = q.count[..inc].iter().sum::<u32>() as usize;
        let lower_b: usize = q.prio_bytes[..inc].iter().sum();
        if q.items.len() - lower_n >= max_n || q.bytes - lower_b + len > max_b {
            self.count_drop();
            return;
        }
        while !fits(q) {
            let Some(low) = (0..inc).find(|&i| q.count[i] > 0) else {
                break;
            };
            let Some(pos) = q.items.iter().position(|i| i.rank().map(Priority::index) == Some(low)) else {
                break;
            };
            if let Some(old) = q.items.remove(pos) {
                q.forget(&old);
                self.metrics.queued.dec();
                self.count_drop();
            }
        }
        q.push_message(m);
        self.metrics.queued.inc();
    }

    fn count_drop(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
        self.metrics.dropped_queue_full.inc();
    }

    fn mark_close(&self, q: &mut Queue, reason: CloseReason) {
        if q.close.is_none() {
            q.close = Some(reason);
            if reason == CloseReason::SlowConsumer {
                self.metrics.slow_consumer_closes.inc();
            }
            self.notify.notify_one();
            self.closing.notify_one();
        }
    }

    /// Asks the writer to close the connection (after flushing what is queued, for shutdown).
    pub fn close(&self, reason: CloseReason) {
        let mut q = self.queue.lock();
        self.mark_close(&mut q, reason);
    }

    /// Takes up to `max` queued items. The queue stops counting as full once the writer has
    /// drained it below half of both bounds.
    pub fn take_batch(&self, max: usize) -> Batch {
        let mut q = self.queue.lock();
        let n = q.items.len().min(max);
        let items: Vec<Outbound> = q.items.drain(..n).collect();
        let mut messages = 0;
        for item in &items {
            messages += q.forget(item);
        }
        if q.items.len() < self.config.max_messages / 2 && q.bytes < self.config.max_bytes / 2 {
            q.full_since = None;
        }
        let more = !q.items.is_empty();
        let close = q.close;
        drop(q);
        self.metrics.queued.dec_by(messages as i64);
        if more {
            // Leave a permit so the writer comes back for the rest.
            self.notify.notify_one();
        }
        Batch { items, close }
    }

    /// Counts the messages of items taken from the queue that will never be written (the
    /// connection ended first) as dropped for a closed connection.
    pub fn abandon(&self, items: &[Outbound]) {
        let n = items.iter().filter(|i| matches!(i, Outbound::Message(_))).count() as u64;
        if n > 0 {
            self.metrics.dropped_closed(n);
        }
    }

    /// Discards everything still queued as dropped for a closed connection.
    pub(crate) fn discard_all(&self) {
        let batch = self.take_batch(usize::MAX);
        self.abandon(&batch.items);
        let mut q = self.queue.lock();
        let buffered: usize = q.recovering.drain().map(|(_, b)| b.items.len()).sum();
        drop(q);
        self.metrics.dropped_closed(buffered as u64);
    }

    /// Removes the queued messages of a channel just unsubscribed (not those delivered for a
    /// pattern), so that a later resubscribe with `since` cannot deliver them twice.
    pub(crate) fn purge_channel(&self, channel: &ChannelName) {
        let mut q = self.queue.lock();
        let before = q.items.len();
        let mut removed = Vec::new();
        q.items.retain(|i| match i {
            Outbound::Message(m) if m.pattern.is_none() && m.channel == *channel => {
                removed.push(i.clone());
                false
            }
            _ => true,
        });
        for item in &removed {
            q.forget(item);
        }
        debug_assert_eq!(before - q.items.len(), removed.len());
        drop(q);
        if !removed.is_empty() {
            self.metrics.queued.dec_by(removed.len() as i64);
            self.metrics.dropped_unsubscribed(removed.len() as u64);
        }
    }

    /// Called by the writer after it wrote `n` messages.
    pub fn count_delivered(&self, n: u64) {
        self.delivered.fetch_add(n, Ordering::Relaxed);
    }

    pub fn queue_depth(&self) -> (usize, usize) {
        let q = self.queue.lock();
        (q.items.len(), q.bytes)
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }

    pub fn subscriptions(&self) -> Vec<String> {
        let mut v: Vec<String> = self.subs.lock().iter().map(|s| s.as_str().to_owned()).collect();
        v.sort();
        v
    }

    /// Abandons the recovery of channels whose subscribe failed: what was held back for them is
    /// discarded (counted as dropped for an unsubscribe), never sent.
    pub(crate) fn cancel_recovery(&self, channels: &[ChannelName]) {
        let mut q = self.queue.lock();
        let held: usize = channels
            .iter()
            .filter_map(|c| q.recovering.remove(c))
            .map(|b| b.items.len())
            .sum();
        drop(q);
        self.metrics.dropped_unsubscribed(held as u64);
    }

    pub(crate) fn begin_recovery(&self, channel: &ChannelName) {
        self.queue
            .lock()
            .recovering
            .insert(channel.clone(), RecoveryBuffer::default());
    }

    /// Ends the recovery of several channels at once. For each channel it checks that what
    /// arrived live while history was read continues the replay without a gap, in the same
    /// epoch (a broker that delivers in order always does), then queues the reply built from
    /// those answers (none when the subscribe failed), then per channel the replayed messages
    /// and the live ones not already replayed. The hub bounds the replay by the queue's bounds
    /// before calling this; live messages follow the normal policy.
    pub(crate) fn end_recovery(&self, channels: Vec<Recovery>, reply: impl FnOnce(&[bool]) -> Option<Bytes>) {
        let mut q = self.queue.lock();
        let mut work = Vec::with_capacity(channels.len());
        let mut contiguous = Vec::with_capacity(channels.len());
        for r in channels {
            let buffered = q.recovering.remove(&r.channel).unwrap_or_default();
            let mut last = r.last_offset;
            let mut ok = !buffered.overflowed;
            for m in &buffered.items {
                if m.epoch != r.epoch {
                    ok = false;
                } else if m.offset > last {
                    ok &= m.offset == last + 1;
                    last = m.offset;
                }
            }
            contiguous.push(ok);
            work.push((r, buffered.items));
        }
        if let Some(reply) = reply(&contiguous) {
            q.bytes += reply.len();
            q.items.push_back(Outbound::Control(reply));
        }
        let mut queued = 0i64;
        for (r, buffered) in work {
            for m in r.replay {
                q.push_message(m);
                queued += 1;
            }
            let mut last = r.last_offset;
            for m in buffered {
                // A message of another epoch is kept: the channel was reset meanwhile and the
                // client, told `recovered: false`, must see it.
                if m.epoch != r.epoch || m.offset > last {
                    if m.epoch == r.epoch {
                        last = m.offset;
                    }
                    self.enqueue(&mut q, m);
                }
            }
        }
        drop(q);
        self.metrics.queued.inc_by(queued);
        self.notify.notify_one();
    }
}

/// One channel's part in [`Client::end_recovery`].
pub(crate) struct Recovery {
    pub channel: ChannelName,
    /// The epoch the history was read in.
    pub epoch: Arc<str>,
    pub replay: Vec<Arc<Encoded>>,
    /// The offset of the last replayed publication (or the position the client was given).
    pub last_offset: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn client(max_messages: usize, slow_ms: u64) -> Client {
        client_with(QueueConfig {
            max_messages,
            max_bytes: 1 << 20,
            slow_timeout: Duration::from_millis(slow_ms),
        })
    }

    pub(super) fn client_with(config: QueueConfig) -> Client {
        Client::new(
            1,
            TenantId::default_tenant(),
            Transport::WebSocket,
            None,
            Arc::new(config),
            Arc::default(),
        )
    }

    fn msg(offset: u64, priority: Priority) -> Arc<Encoded> {
        Arc::new(Encoded {
            channel: ChannelName::parse("c").unwrap(),
            epoch: Arc::from("E"),
            offset,
            priority,
            pattern: None,
            frame: Bytes::from(format!("{offset}")),
            received: Instant::now(),
        })
    }

    fn recovery(replay: Vec<Arc<Encoded>>, last_offset: u64) -> Recovery {
        Recovery {
            channel: ChannelName::parse("c").unwrap(),
            epoch: Arc::from("E"),
            replay,
            last_offset,
        }
    }

    fn drain(c: &Client) -> Vec<String> {
        c.take_batch(usize::MAX)
            .items
            .iter()
            .map(|i| match i {
                Outbound::Message(m) => format!("{}{}", m.priority.as_str().chars().next().unwrap(), m.offset),
                Outbound::Control(b) => String::from_utf8_lossy(b).into_owned(),
                Outbound::Ping => "ping".into(),
            })
            .collect()
    }

    #[test]
    fn full_queue_drops_lowest_priority_first_and_keeps_order() {
        use Priority::*;
        let c = client(4, 60_000);
        for (o, p) in [(1, Normal), (2, Low), (3, High), (4, Low)] {
            c.push_message(&msg(o, p));
        }
        // Full: a critical message evicts the oldest low one.
        c.push_message(&msg(5, Critical));
        assert_eq!(drain(&c), ["n1", "h3", "l4", "c5"]);
        assert_eq!(c.dropped(), 1);
        for (o, p) in [(6, High), (7, High), (8, Normal), (9, Critical)] {
            c.push_message(&msg(o, p));
        }
        // An incoming low message when nothing lower is queued is itself dropped.
        c.push_message(&msg(10, Low));
        // A normal one evicts the (only) normal one: equal priority drops the incoming.
        c.push_message(&msg(11, Normal));
        assert_eq!(drain(&c), ["h6", "h7", "n8", "c9"]);
        assert_eq!(c.dropped(), 3);
    }

    #[test]
    fn control_frames_are_never_dropped() {
        let c = client(2, 60_000);
        c.push_message(&msg(1, Priority::Low));
        c.push_message(&msg(2, Priority::Low));
        c.push_control(Bytes::from_static(b"reply"));
        c.push_message(&msg(3, Priority::High));
        // The reply counts toward the bound, so both low messages make way for the high one.
        assert_eq!(drain(&c), ["reply", "h3"]);
        assert_eq!(c.dropped(), 2);
    }

    #[test]
    fn staying_full_past_the_timeout_closes_as_slow_consumer() {
        let c = client(2, 30);
        for o in 1..=3 {
            c.push_message(&msg(o, Priority::Normal));
        }
        assert_eq!(c.check_slow(), None);
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(c.check_slow(), Some(CloseReason::SlowConsumer));
        assert_eq!(c.take_batch(usize::MAX).close, Some(CloseReason::SlowConsumer));
        // A client that drains in time is not closed.
        let c = client(2, 30);
        for o in 1..=3 {
            c.push_message(&msg(o, Priority::Normal));
        }
        drain(&c);
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(c.check_slow(), None);
    }

    #[test]
    fn recovery_merges_replay_and_live_without_duplicates() {
        let c = client(100, 60_000);
        let ch = ChannelName::parse("c").unwrap();
        c.begin_recovery(&ch);
        // Live publications arrive while history is being read; 5 is also in the history read.
        c.push_message(&msg(5, Priority::Normal));
        c.push_message(&msg(6, Priority::Normal));
        // A copy delivered for a pattern subscription is not held back nor deduplicated.
        let pattern_copy = Arc::new(Encoded {
            pattern: Some(Arc::from("c:>")),
            ..(*msg(6, Priority::Normal)).clone()
        });
        c.push_message(&pattern_copy);
        assert_eq!(drain(&c), ["n6"], "only the pattern copy goes out before the reply");
        let mut answers = Vec::new();
        let replay = vec![
            msg(3, Priority::Normal),
            msg(4, Priority::Normal),
            msg(5, Priority::Normal),
        ];
        c.end_recovery(vec![recovery(replay, 5)], |ok| {
            answers = ok.to_vec();
            Some(Bytes::from_static(b"subscribed"))
        });
        assert_eq!(answers, [true]);
        assert_eq!(drain(&c), ["subscribed", "n3", "n4", "n5", "n6"]);

        // A gap between replay and live is reported.
        c.begin_recovery(&ch);
        c.push_message(&msg(9, Priority::Normal));
        c.end_recovery(vec![recovery(vec![], 7)], |ok| {
            answers = ok.to_vec();
            Some(Bytes::from_static(b"subscribed"))
        });
        assert_eq!(answers, [false]);
        assert_eq!(drain(&c), ["subscribed", "n9"]);

        // A channel reset meanwhile (another epoch): its messages are kept, and reported.
        c.begin_recovery(&ch);
        let reset = Arc::new(Encoded {
            epoch: Arc::from("F"),
            ..(*msg(1, Priority::Normal)).clone()
        });
        c.push_message(&reset);
        c.end_recovery(vec![recovery(vec![], 9)], |ok| {
            answers = ok.to_vec();
            None
        });
        assert_eq!(answers, [false]);
        assert_eq!(drain(&c), ["n1"]);
    }

    #[test]
    fn recovery_buffer_is_bounded() {
        let c = client(3, 60_000);
        let ch = ChannelName::parse("c").unwrap();
        c.begin_recovery(&ch);
        for o in 1..=5 {
            c.push_message(&msg(o, Priority::Normal));
        }
        let mut answers = Vec::new();
        c.end_recovery(vec![recovery(vec![], 0)], |ok| {
            answers = ok.to_vec();
            None
        });
        assert_eq!(answers, [false]);
        assert_eq!(c.dropped(), 2);
    }

    #[test]
    fn eviction_happens_only_when_it_makes_room() {
        // Byte bound: a big high message cannot fit even if the small low one goes, so the low
        // one stays and the incoming one is dropped.
        let c = client_with(QueueConfig {
            max_messages: 10,
            max_bytes: 1024,
            slow_timeout: Duration::from_secs(60),
        });
        let sized = |o: u64, p: Priority, n: usize| {
            Arc::new(Encoded {
                frame: Bytes::from(vec![b'x'; n]),
                ..(*msg(o, p)).clone()
            })
        };
        c.push_message(&sized(1, Priority::High, 900));
        c.push_message(&sized(2, Priority::Low, 100));
        c.push_message(&sized(3, Priority::Normal, 200));
        assert_eq!(c.dropped(), 1);
        assert_eq!(drain(&c), ["h1", "l2"]);
    }

    #[test]
    fn an_oversized_message_does_not_make_a_client_slow() {
        let c = client_with(QueueConfig {
            max_messages: 10,
            max_bytes: 1024,
            slow_timeout: Duration::from_millis(1),
        });
        let big = Arc::new(Encoded {
            frame: Bytes::from(vec![b'x'; 2000]),
            ..(*msg(1, Priority::Critical)).clone()
        });
        c.push_message(&big);
        std::thread::sleep(Duration::from_millis(5));
        c.push_message(&big);
        assert_eq!(c.dropped(), 2);
        assert_eq!(c.check_slow(), None);
    }

    #[test]
    fn full_state_ends_only_when_drained_below_half() {
        let c = client(4, 30);
        for o in 1..=5 {
            c.push_message(&msg(o, Priority::Normal));
        }
        // The writer takes one message: the queue has room again but is not below half, so the
        // client that keeps it full stays on the clock.
        c.take_batch(1);
        c.push_message(&msg(6, Priority::Normal));
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(c.check_slow(), Some(CloseReason::SlowConsumer));
    }

    #[test]
    fn purge_removes_only_that_channels_copies() {
        let c = client(10, 60_000);
        let other = Arc::new(Encoded {
            channel: ChannelName::parse("d").unwrap(),
            ..(*msg(1, Priority::Normal)).clone()
        });
        let pattern_copy = Arc::new(Encoded {
            pattern: Some(Arc::from("*")),
            ..(*msg(2, Priority::Low)).clone()
        });
        c.push_message(&msg(1, Priority::Normal));
        c.push_message(&other);
        c.push_message(&pattern_copy);
        c.push_message(&msg(2, Priority::High));
        c.purge_channel(&ChannelName::parse("c").unwrap());
        assert_eq!(drain(&c), ["n1", "l2"]);
    }
}

#[cfg(test)]
mod heartbeat_tests {
    use super::*;

    /// Stands in for the writer putting the probe on the wire at `at`.
    fn written(c: &Client, at: u64) {
        let batch = c.take_batch(10);
        assert!(matches!(batch.items[..], [Outbound::Ping, ..]), "the probe goes first");
        c.probe_sent.store(at, Ordering::Relaxed);
        c.probe_queued.store(false, Ordering::Relaxed);
    }

    #[test]
    fn probes_then_times_out_unless_answered() {
        let c = super::tests::client_with(QueueConfig::default());
        let t0 = c.last_seen.load(Ordering::Relaxed);
        assert_eq!(c.heartbeat(t0 + 50, 100, 30), Heartbeat::Fine);
        c.push_control(Bytes::from_static(b"queued before"));
        assert_eq!(c.heartbeat(t0 + 100, 100, 30), Heartbeat::Probed);
        // Not written yet: its answer is not due, however long the queue takes.
        assert_eq!(c.heartbeat(t0 + 1000, 100, 30), Heartbeat::Fine);
        written(&c, t0 + 1000);
        assert_eq!(c.heartbeat(t0 + 1020, 100, 30), Heartbeat::Fine);
        // Answered: no timeout, next probe one interval after the last.
        c.last_seen.store(t0 + 1025, Ordering::Relaxed);
        assert_eq!(c.heartbeat(t0 + 1090, 100, 30), Heartbeat::Fine);
        assert_eq!(c.heartbeat(t0 + 1100, 100, 30), Heartbeat::Probed);
        written(&c, t0 + 1100);
        // While a write is in progress the writer reads nothing: no timeout then.
        c.set_writing(true);
        assert_eq!(c.heartbeat(t0 + 1200, 100, 30), Heartbeat::Fine);
        c.set_writing(false);
        // Not answered within the timeout: closed. An outstanding probe is not repeated
        // (that would move the deadline).
        assert_eq!(c.heartbeat(t0 + 1129, 100, 30), Heartbeat::Fine);
        assert_eq!(c.heartbeat(t0 + 1130, 100, 30), Heartbeat::TimedOut);
        assert_eq!(c.take_batch(10).close, Some(CloseReason::HeartbeatTimeout));
        let c = super::tests::client_with(QueueConfig::default());
        let t0 = c.last_seen.load(Ordering::Relaxed);
        assert_eq!(c.heartbeat(t0 + 100, 100, 250), Heartbeat::Probed);
        written(&c, t0 + 100);
        assert_eq!(c.heartbeat(t0 + 200, 100, 250), Heartbeat::Fine);
        assert_eq!(c.heartbeat(t0 + 350, 100, 250), Heartbeat::TimedOut);
    }
}
