//! A channel's history: the last publications, bounded by count and by age.
//!
//! Invariants (checked by the property test below): offsets in the ring are consecutive and end
//! at `top`; nothing older than the TTL or beyond the size survives a trim; `since` answers
//! `recovered: true` only if it returns every publication after the given offset.

use std::collections::VecDeque;
use std::sync::Arc;

use pulsewire_model::{Position, Publication};

/// What a history read returns.
#[derive(Debug, Clone)]
pub struct HistorySlice {
    /// The channel's current position (epoch and the offset of its last publication).
    pub top: Position,
    /// The publications asked for, oldest first.
    pub publications: Vec<Publication>,
    /// With a `since` position: true if `publications` holds every publication after it.
    pub recovered: bool,
}

#[derive(Debug)]
pub struct HistoryRing {
    epoch: Arc<str>,
    top: u64,
    ring: VecDeque<Publication>,
}

impl HistoryRing {
    pub fn new(epoch: Arc<str>) -> Self {
        Self {
            epoch,
            top: 0,
            ring: VecDeque::new(),
        }
    }

    pub fn epoch(&self) -> &Arc<str> {
        &self.epoch
    }

    pub fn top(&self) -> u64 {
        self.top
    }

    pub fn position(&self) -> Position {
        Position {
            epoch: self.epoch.clone(),
            offset: self.top,
        }
    }

    pub fn len(&self) -> usize {
        self.ring.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }

    /// Takes the next offset for a publication; `make` builds it from (epoch, offset).
    pub fn append(&mut self, max_len: usize, make: impl FnOnce(Arc<str>, u64) -> Publication) -> Publication {
        self.top += 1;
        let p = make(self.epoch.clone(), self.top);
        if max_len > 0 {
            self.ring.push_back(p.clone());
            while self.ring.len() > max_len {
                self.ring.pop_front();
            }
        }
        p
    }

    /// Drops publications older than `min_ts` (milliseconds).
    pub fn trim_older_than(&mut self, min_ts: u64) {
        while self.ring.front().is_some_and(|p| p.ts < min_ts) {
            self.ring.pop_front();
        }
    }

    /// The oldest offset still kept, or `top + 1` when nothing is kept.
    fn first_kept(&self) -> u64 {
        self.ring.front().map_or(self.top + 1, |p| p.offset)
    }

    /// Reads history: with `since`, everything after it (if it can be told, see `recovered`);
    /// without, the newest `limit` publications. `limit` caps the count returned in both cases;
    /// a `since` read cut by `limit` is not a recovery.
    pub fn read(&self, since: Option<&Position>, limit: usize) -> HistorySlice {
        let top = self.position();
        match since {
            None => {
                let skip = self.ring.len().saturating_sub(limit);
                HistorySlice {
                    top,
                    publications: self.ring.range(skip..).cloned().collect(),
                    recovered: false,
                }
            }
            Some(since) => {
                let valid =
                    *since.epoch == *self.epoch && since.offset <= self.top && since.offset + 1 >= self.first_kept();
                if !valid {
                    return HistorySlice {
                        top,
                        publications: Vec::new(),
                        recovered: false,
                    };
                }
                let after: Vec<Publication> = self
                    .ring
                    .iter()
                    .filter(|p| p.offset > since.offset)
                    .take(limit)
                    .cloned()
                    .collect();
                let recovered = self.top - since.offset == after.len() as u64;
                HistorySlice {
                    top,
                    publications: after,
                    recovered,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use proptest::prelude::*;
    use pulsewire_model::{ChannelName, Priority};

    fn publication(epoch: Arc<str>, offset: u64, ts: u64) -> Publication {
        Publication {
            channel: ChannelName::parse("c").unwrap(),
            epoch,
            offset,
            ts,
            priority: Priority::Normal,
            data: Bytes::from_static(b"1"),
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Append { ts: u64 },
        Trim { min_ts: u64 },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u64..100).prop_map(|ts| Op::Append { ts }),
            1 => (0u64..100).prop_map(|min_ts| Op::Trim { min_ts }),
        ]
    }

    proptest! {
        /// Against a reference that keeps every publication and applies the bounds on read.
        #[test]
        fn ring_matches_reference(
            ops in proptest::collection::vec(op(), 0..60),
            max_len in 0usize..8,
            since in 0u64..70,
            limit in 1usize..10,
            wrong_epoch in any::<bool>(),
        ) {
            let epoch: Arc<str> = Arc::from("E");
            let mut ring = HistoryRing::new(epoch.clone());
            // Reference: every publication ever, plus the set of offsets removed.
            let mut all: Vec<(u64, u64)> = Vec::new();
            let mut removed_below = 1u64;
            for op in ops {
                match op {
                    Op::Append { ts } => {
                        let p = ring.append(max_len, |e, o| publication(e, o, ts));
                        all.push((p.offset, ts));
                        let len = all.len() as u64;
                        if max_len == 0 { removed_below = len + 1 } else {
                            removed_below = removed_below.max((len + 1).saturating_sub(max_len as u64));
                        }
                    }
                    Op::Trim { min_ts } => {
                        ring.trim_older_than(min_ts);
                        // The ring trims from the front while the oldest is too old.
                        while removed_below <= all.len() as u64 && all[(removed_below - 1) as usize].1 < min_ts {
                            removed_below += 1;
                        }
                    }
                }
            }
            let top = all.len() as u64;
            prop_assert_eq!(ring.top(), top);
            prop_assert!(ring.len() <= max_len);
            let kept: Vec<u64> = (removed_below..=top).collect();
            let got: Vec<u64> = ring.read(None, usize::MAX).publications.iter().map(|p| p.offset).collect();
            prop_assert_eq!(&got, &kept);

            let pos = Position { epoch: if wrong_epoch { Arc::from("X") } else { epoch }, offset: since };
            let slice = ring.read(Some(&pos), limit);
            let want_valid = !wrong_epoch && since <= top && since + 1 >= removed_below;
            let want: Vec<u64> = if want_valid { ((since + 1)..=top).take(limit).collect() } else { vec![] };
            let got: Vec<u64> = slice.publications.iter().map(|p| p.offset).collect();
            prop_assert_eq!(&got, &want);
            prop_assert_eq!(slice.recovered, want_valid && top - since <= limit as u64);
        }
    }
}
