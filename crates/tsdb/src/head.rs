//! The head: points written since the last checkpoint, one compressed chunk per series in
//! memory. Points that arrive out of time order for their series go to a small side buffer;
//! reads merge both, and at equal timestamps the later write wins (as in InfluxDB).

use pulsewire_codec::{HeadChunk, Kind, ValueRef, Values};

use crate::index::SeriesId;

struct HeadSeries {
    chunk: HeadChunk,
    /// Out-of-order points, in arrival order.
    late: Option<Box<(Vec<i64>, Values)>>,
}

#[derive(Default)]
pub struct Head {
    series: Vec<Option<HeadSeries>>,
    points: u64,
    active: usize,
}

impl Head {
    pub fn points(&self) -> u64 {
        self.points
    }

    /// Series with at least one point in this head.
    pub fn active_series(&self) -> usize {
        self.active
    }

    pub fn push(&mut self, id: SeriesId, kind: Kind, ts: i64, v: ValueRef<'_>) {
        let idx = id as usize;
        if self.series.len() <= idx {
            self.series.resize_with(idx + 1, || None);
        }
        let Some(slot) = self.series.get_mut(idx) else { return };
        let s = slot.get_or_insert_with(|| {
            self.active += 1;
            HeadSeries {
                chunk: HeadChunk::new(kind),
                late: None,
            }
        });
        if s.chunk.last_ts().is_none_or(|last| ts > last) && s.chunk.push(ts, v).is_ok() {
        } else {
            let late = s.late.get_or_insert_with(|| Box::new((Vec::new(), Values::new(kind))));
            if late.1.push(v).is_ok() {
                late.0.push(ts);
            }
        }
        self.points += 1;
    }

    pub fn has(&self, id: SeriesId) -> bool {
        matches!(self.series.get(id as usize), Some(Some(_)))
    }

    /// Ids of series with points here, ascending.
    pub fn ids(&self) -> impl Iterator<Item = SeriesId> + '_ {
        self.series
            .iter()
            .enumerate()
            .filter(|(_, s)| s.is_some())
            .map(|(i, _)| i as SeriesId)
    }

    /// All points of one series, ascending, duplicates resolved (later write wins).
    pub fn read(&self, id: SeriesId, kind: Kind) -> (Vec<i64>, Values) {
        let mut ts = Vec::new();
        let mut values = Values::new(kind);
        let Some(Some(s)) = self.series.get(id as usize) else {
            return (ts, values);
        };
        if s.chunk.decode_into(&mut ts, &mut values).is_err() {
            // A chunk we encoded ourselves cannot fail to decode; if it ever did, the WAL still
            // holds the points and a restart recovers them.
            tracing::error!(series = id, "head chunk failed to decode");
            ts.clear();
            values = Values::new(kind);
        }
        match &s.late {
            None => (ts, values),
            Some(late) => merge(&[(&ts, &values), (&late.0, &late.1)], kind),
        }
    }

    pub fn heap_bytes(&self) -> usize {
        self.series.capacity() * std::mem::size_of::<Option<HeadSeries>>()
            + self
                .series
                .iter()
                .flatten()
                .map(|s| s.chunk.heap_bytes() + s.late.as_ref().map_or(0, |l| l.0.capacity() * 16 + 32))
                .sum::<usize>()
    }
}

/// Merges several runs of points (each in any order) into one ascending run; at equal
/// timestamps the point from the later run wins, and within a run the later point.
pub fn merge(runs: &[(&[i64], &Values)], kind: Kind) -> (Vec<i64>, Values) {
    let ascending = |ts: &[i64]| ts.windows(2).all(|w| matches!(w, [a, b] if a < b));
    // Fast path: runs each strictly ascending and following one another in time (the common
    // case: parts of consecutive partitions, then the head) concatenate without sorting.
    let mut order_by_start: Vec<usize> = (0..runs.len())
        .filter(|&r| runs.get(r).is_some_and(|(t, _)| !t.is_empty()))
        .collect();
    order_by_start.sort_by_key(|&r| runs.get(r).and_then(|(t, _)| t.first().copied()));
    let disjoint = order_by_start.windows(2).all(|w| {
        let last = w
            .first()
            .and_then(|&r| runs.get(r))
            .and_then(|(t, _)| t.last().copied());
        let next = w
            .get(1)
            .and_then(|&r| runs.get(r))
            .and_then(|(t, _)| t.first().copied());
        matches!((last, next), (Some(a), Some(b)) if a < b)
    });
    if disjoint
        && order_by_start
            .iter()
            .all(|&r| runs.get(r).is_some_and(|(t, _)| ascending(t)))
    {
        let total = order_by_start
            .iter()
            .filter_map(|&r| runs.get(r))
            .map(|(t, _)| t.len())
            .sum();
        let mut out_ts = Vec::with_capacity(total);
        let mut out = Values::with_capacity(kind, total);
        for &r in &order_by_start {
            let Some((ts, values)) = runs.get(r) else { continue };
            out_ts.extend_from_slice(ts);
            let _ = crate::part::extend_values(&mut out, values, 0..ts.len());
        }
        return (out_ts, out);
    }
    if runs.len() > MERGE_RUNS {
        return merge_by_sorting(runs, kind);
    }
    // Each run in ascending time, keeping the later of equal timestamps within it (a run already
    // strictly ascending, like a head chunk, as it is; late points are sorted on their own), then
    // a merge of the runs that takes, at equal timestamps, the latest run's point. Sorting every
    // point as (time, run, index) instead was ~2.5 % of the server's CPU at full ingest, in
    // checkpoints: concurrent writers leave a few late points in most series.
    let orders: Vec<Option<Vec<usize>>> = runs
        .iter()
        .map(|(ts, _)| {
            if ascending(ts) {
                return None;
            }
            let mut idx: Vec<usize> = (0..ts.len()).collect();
            // Stable: equal timestamps stay in write order, and the last of them is kept.
            idx.sort_by_key(|&i| ts.get(i).copied());
            let keep = |n: usize| {
                let this = idx.get(n).and_then(|&i| ts.get(i));
                idx.get(n + 1).and_then(|&j| ts.get(j)) != this
            };
            Some(
                (0..idx.len())
                    .filter(|&n| keep(n))
                    .filter_map(|n| idx.get(n).copied())
                    .collect(),
            )
        })
        .collect();
    let index_at = |r: usize, p: usize| -> Option<usize> {
        match orders.get(r)? {
            None => runs.get(r).and_then(|(ts, _)| (p < ts.len()).then_some(p)),
            Some(order) => order.get(p).copied(),
        }
    };
    let head_ts = |r: usize, p: usize| index_at(r, p).and_then(|i| runs.get(r).and_then(|(ts, _)| ts.get(i).copied()));
    let total = runs.iter().map(|(ts, _)| ts.len()).sum();
    let mut out_ts = Vec::with_capacity(total);
    let mut out = Values::with_capacity(kind, total);
    let mut pos = vec![0usize; runs.len()];
    loop {
        // The earliest next point; of equal ones the later run's (`<=` as runs go up).
        let mut best: Option<(i64, usize)> = None;
        for (r, &p) in pos.iter().enumerate() {
            if let Some(t) = head_ts(r, p)
                && best.is_none_or(|(b, _)| t <= b)
            {
                best = Some((t, r));
            }
        }
        let Some((t, r)) = best else { break };
        if let Some(v) = pos
            .get(r)
            .and_then(|&p| index_at(r, p))
            .and_then(|i| runs.get(r).and_then(|(_, vals)| vals.get(i)))
            && out.push(v).is_ok()
        {
            out_ts.push(t);
        }
        for (q, p) in pos.iter_mut().enumerate() {
            if head_ts(q, *p) == Some(t) {
                *p += 1;
            }
        }
    }
    (out_ts, out)
}

/// Up to this many runs (a head chunk and its late points, a few parts) are merged run by run,
/// each step looking at every run; more are sorted point by point instead.
const MERGE_RUNS: usize = 4;

/// [`merge`] for many runs: every point sorted as (time, run, index), the last of equal times
/// kept.
fn merge_by_sorting(runs: &[(&[i64], &Values)], kind: Kind) -> (Vec<i64>, Values) {
    let mut order: Vec<(i64, usize, usize)> = Vec::new();
    for (r, (ts, _)) in runs.iter().enumerate() {
        order.extend(ts.iter().enumerate().map(|(i, &t)| (t, r, i)));
    }
    order.sort_unstable();
    let mut out_ts = Vec::with_capacity(order.len());
    let mut out = Values::with_capacity(kind, order.len());
    for (n, &(t, r, idx)) in order.iter().enumerate() {
        if order.get(n + 1).is_some_and(|next| next.0 == t) {
            continue;
        }
        if let Some(v) = runs.get(r).and_then(|(_, vals)| vals.get(idx))
            && out.push(v).is_ok()
        {
            out_ts.push(t);
        }
    }
    (out_ts, out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn late_points_and_overwrites_merge_with_the_later_write_winning() {
        let mut head = Head::default();
        for (ts, v) in [
            (10, 1.0),
            (20, 2.0),
            (30, 3.0),
            (15, 1.5),
            (20, 2.5),
            (5, 0.5),
            (30, 3.5),
        ] {
            head.push(7, Kind::Float, ts, ValueRef::Float(v));
        }
        let (ts, values) = head.read(7, Kind::Float);
        assert_eq!(ts, vec![5, 10, 15, 20, 30]);
        assert_eq!(values, Values::Float(vec![0.5, 1.0, 1.5, 2.5, 3.5]));
        assert_eq!(head.points(), 7);
        assert_eq!(head.active_series(), 1);
        assert!(!head.has(3));
    }

    proptest::proptest! {
        /// Any runs, in any order, with repeated timestamps within and across runs: the merge
        /// equals writing every point into a map in run order (the later write wins).
        #[test]
        fn merge_matches_last_write_wins(
            runs in proptest::collection::vec(proptest::collection::vec((0i64..40, -1e3f64..1e3), 0..30), 0..8),
            sorted in proptest::collection::vec(proptest::bool::ANY, 8),
        ) {
            let runs: Vec<(Vec<i64>, Values)> = runs
                .into_iter()
                .zip(sorted)
                .map(|(mut pts, sorted)| {
                    if sorted {
                        // The head chunk's shape: strictly ascending.
                        pts.sort_by_key(|p| p.0);
                        pts.dedup_by_key(|p| p.0);
                    }
                    (pts.iter().map(|p| p.0).collect(), Values::Float(pts.iter().map(|p| p.1).collect()))
                })
                .collect();
            let mut reference = std::collections::BTreeMap::new();
            for (ts, values) in &runs {
                let Values::Float(vals) = values else { unreachable!() };
                for (t, v) in ts.iter().zip(vals) {
                    reference.insert(*t, *v);
                }
            }
            let refs: Vec<(&[i64], &Values)> = runs.iter().map(|(t, v)| (t.as_slice(), v)).collect();
            let (ts, values) = merge(&refs, Kind::Float);
            proptest::prop_assert_eq!(ts, reference.keys().copied().collect::<Vec<_>>());
            proptest::prop_assert_eq!(values, Values::Float(reference.values().copied().collect()));
        }
    }
}
