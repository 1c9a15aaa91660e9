//! Active series per database: what `tsdb.limits.max_series_per_database` counts. A series is
//! active while it has received points within the last `tsdb.limits.active_series_window`
//! (default 1 h), so a database that churns through series (containers, short jobs, rotating
//! hosts) is limited by the series it writes now, not by every series it ever had.
//!
//! Kept off the write path: a series' last active minute is set when it is created and when a
//! checkpoint seals a head holding its points (every series of a head was written since the
//! previous checkpoint). A series therefore stays active for up to one checkpoint interval
//! longer than the window, and one that comes back after a quiet spell counts again from the
//! next checkpoint on. Per database, the number of series by last active minute is kept in a
//! ring of one window's minutes, with a running total that drops the minutes leaving the window
//! when it is read: every operation is O(1) amortized.

use std::collections::HashMap;

use pulsewire_model::TenantId;

use crate::index::{Index, SeriesId};

/// A minute no series has been active in (not since the store opened).
const NEVER: i64 = i64::MIN;

#[derive(Debug)]
pub(crate) struct ActiveSeries {
    /// The window, in whole minutes (at least 1).
    window: i64,
    /// By series id (ids are dense): the database and the last minute the series was active.
    series: Vec<Seen>,
    slots: HashMap<(TenantId, String), u32>,
    dbs: Vec<DbActive>,
}

#[derive(Debug, Clone, Copy)]
struct Seen {
    db: u32,
    minute: i64,
}

/// One database's active series.
#[derive(Debug)]
struct DbActive {
    /// `(minute, series last active in it)` at `minute mod window`.
    ring: Vec<(i64, usize)>,
    /// Series whose last active minute is at or after `live_from`.
    total: usize,
    /// The oldest minute still counted in `total`.
    live_from: i64,
    /// The latest minute seen: a clock that goes back is taken as standing still, so the ring
    /// only ever moves forward (a series touched meanwhile stays a little longer).
    latest: i64,
}

impl DbActive {
    fn new(window: i64) -> DbActive {
        DbActive {
            ring: vec![(NEVER, 0); window as usize],
            total: 0,
            live_from: NEVER,
            latest: NEVER,
        }
    }

    /// The slot of `minute` (always there: the ring holds at least one minute).
    fn at(&mut self, minute: i64) -> Option<&mut (i64, usize)> {
        let len = self.ring.len() as i64;
        self.ring.get_mut(minute.rem_euclid(len.max(1)) as usize)
    }

    /// Moves to minute `now` (or stays, if it is not later than the latest) and drops the
    /// minutes that have left the window ending there; returns the minute it stands at.
    fn advance(&mut self, now: i64) -> i64 {
        if now <= self.latest {
            return self.latest;
        }
        self.latest = now;
        let window = self.ring.len() as i64;
        let floor = now.saturating_sub(window - 1);
        if floor.saturating_sub(self.live_from) >= window {
            for e in &mut self.ring {
                if e.0 < floor {
                    self.total -= e.1;
                    *e = (NEVER, 0);
                }
            }
        } else {
            for m in self.live_from..floor {
                if let Some(e) = self.at(m).filter(|e| e.0 == m) {
                    let n = std::mem::replace(e, (NEVER, 0)).1;
                    self.total -= n;
                }
            }
        }
        self.live_from = floor;
        now
    }

    fn add(&mut self, minute: i64) {
        let Some(e) = self.at(minute) else { return };
        // `minute` is the latest: an older minute in its slot has left the window and was
        // subtracted when it did.
        if e.0 != minute {
            *e = (minute, 0);
        }
        e.1 += 1;
        self.total += 1;
    }

    fn remove(&mut self, minute: i64) {
        if minute < self.live_from {
            return;
        }
        if let Some(e) = self.at(minute).filter(|e| e.0 == minute && e.1 > 0) {
            e.1 -= 1;
            self.total -= 1;
        }
    }
}

impl ActiveSeries {
    /// Tracks every series of `index`, none of them active yet.
    pub(crate) fn new(window_minutes: i64, index: &Index) -> ActiveSeries {
        let mut out = ActiveSeries {
            window: window_minutes.max(1),
            series: Vec::with_capacity(index.len()),
            slots: HashMap::new(),
            dbs: Vec::new(),
        };
        // Series of one database mostly follow each other: their slot is looked up (a key
        // allocated and hashed) only when the database changes.
        let mut previous: Option<(&TenantId, &str, u32)> = None;
        for id in index.ids() {
            let Some(meta) = index.meta(id) else { continue };
            let (tenant, db) = (&meta.line.tenant, meta.line.db.as_str());
            let slot = match previous {
                Some((t, d, slot)) if t == tenant && d == db => slot,
                _ => out.slot(tenant, db),
            };
            previous = Some((tenant, db, slot));
            out.add(slot);
        }
        out
    }

    /// A new series (ids come in order), not active until [`ActiveSeries::touch`]ed.
    pub(crate) fn register(&mut self, id: SeriesId, tenant: &TenantId, db: &str) {
        debug_assert_eq!(id as usize, self.series.len(), "series ids are dense");
        let slot = self.slot(tenant, db);
        self.add(slot);
    }

    /// The next series, of database `slot`, not active yet.
    fn add(&mut self, slot: u32) {
        self.series.push(Seen {
            db: slot,
            minute: NEVER,
        });
    }

    /// The slot of a database, made on first use.
    fn slot(&mut self, tenant: &TenantId, db: &str) -> u32 {
        let next = self.dbs.len() as u32;
        let slot = *self.slots.entry((tenant.clone(), db.to_string())).or_insert(next);
        if slot == next {
            self.dbs.push(DbActive::new(self.window));
        }
        slot
    }

    /// `id` received points in minute `now` (ms since the epoch / 60,000).
    pub(crate) fn touch(&mut self, id: SeriesId, now: i64) {
        let Some(seen) = self.series.get_mut(id as usize) else {
            return;
        };
        let Some(db) = self.dbs.get_mut(seen.db as usize) else {
            return;
        };
        let now = db.advance(now);
        if seen.minute >= now {
            return;
        }
        let before = std::mem::replace(&mut seen.minute, now);
        if before != NEVER {
            db.remove(before);
        }
        db.add(now);
    }

    /// Series of a database active within the window ending at minute `now`.
    pub(crate) fn count(&mut self, tenant: &TenantId, db: &str, now: i64) -> usize {
        let Some(&slot) = self.slots.get(&(tenant.clone(), db.to_string())) else {
            return 0;
        };
        let Some(db) = self.dbs.get_mut(slot as usize) else {
            return 0;
        };
        db.advance(now);
        db.total
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    fn tracker(window: i64, dbs: &[&str]) -> ActiveSeries {
        let mut a = ActiveSeries {
            window,
            series: Vec::new(),
            slots: HashMap::new(),
            dbs: Vec::new(),
        };
        for (id, db) in dbs.iter().enumerate() {
            a.register(id as SeriesId, &TenantId::default_tenant(), db);
        }
        a
    }

    #[test]
    fn series_leave_the_count_a_window_after_their_last_minute() {
        let mut a = tracker(60, &["a", "a", "b"]);
        let t = TenantId::default_tenant();
        assert_eq!(a.count(&t, "a", 0), 0);
        a.touch(0, 10);
        a.touch(1, 20);
        a.touch(2, 20);
        assert_eq!((a.count(&t, "a", 20), a.count(&t, "b", 20)), (2, 1));
        assert_eq!(a.count(&t, "a", 69), 2);
        assert_eq!(a.count(&t, "a", 70), 1, "series 0 was last active in minute 10");
        a.touch(0, 75);
        assert_eq!(a.count(&t, "a", 75), 2, "it is back");
        assert_eq!(a.count(&t, "a", 80), 1);
        assert_eq!(a.count(&t, "a", 10_000), 0);
        assert_eq!(a.count(&t, "nowhere", 10), 0);
    }

    #[test]
    fn a_clock_that_goes_back_stands_still() {
        let mut a = tracker(60, &["a", "a"]);
        let t = TenantId::default_tenant();
        a.touch(0, 100);
        // Back an hour: the tracker stays at minute 100; series 1 counts as active in it.
        a.touch(1, 40);
        assert_eq!(a.count(&t, "a", 40), 2);
        assert_eq!(a.count(&t, "a", 159), 2);
        assert_eq!(a.count(&t, "a", 160), 0);
    }

    proptest! {
        /// Against a brute-force count over every series' last active minute, with time moving
        /// forward in steps of up to several windows.
        #[test]
        fn matches_a_brute_force_count(
            window in 1i64..8,
            events in prop::collection::vec((0u32..12, 0i64..20, prop::bool::ANY), 1..200),
        ) {
            let dbs = ["x", "y", "x", "z", "y", "x", "x", "y", "z", "x", "y", "x"];
            let mut a = tracker(window, &dbs);
            let t = TenantId::default_tenant();
            let mut last: BTreeMap<u32, i64> = BTreeMap::new();
            let mut now = 100i64;
            for (id, step, touch) in events {
                now += step;
                if touch {
                    a.touch(id, now);
                    let m = last.entry(id).or_insert(now);
                    *m = (*m).max(now);
                }
                for db in ["x", "y", "z"] {
                    let expect = last
                        .iter()
                        .filter(|(id, m)| dbs.get(**id as usize) == Some(&db) && **m > now - window)
                        .count();
                    prop_assert_eq!(a.count(&t, db, now), expect, "db {} at {}", db, now);
                }
            }
        }
    }
}
