//! The time window a rule aggregates one series over: points pushed in arrival order, the ones
//! at or before `now - window` evicted, and every aggregation of `pulsewire_proto::Agg` answered
//! over the rest with the same definitions as the store's raw-point queries (population standard
//! deviation, lower nearest-rank quantiles, reset-aware counter `rate` = increase / window
//! seconds), so an alert and a dashboard over the same window agree.
//!
//! Memory is bounded by a cap on stored cells (default [`WINDOW_CAP`]). Below the cap each cell
//! is one point and every answer is exact. When a push would exceed the cap, adjacent cells are
//! merged pairwise and later points are grouped twice as coarsely (the "stride" doubles; it halves
//! again once the window holds few cells). A merged cell keeps a mergeable summary (count, mean
//! and squared deviations, min, max, first, last, reset-aware increase), so past the cap `count`,
//! `sum`, `avg`, `min`, `max`, `last`, `stddev` and `rate` stay exact over the cells kept; what
//! gets coarse is (1) eviction, which drops a cell only once its newest point leaves the window,
//! so up to one cell of older points may still count, and (2) quantiles, which are computed from
//! cell means weighted by their counts.

use std::collections::VecDeque;

use pulsewire_proto::Agg;

/// The most cells one window keeps.
pub const WINDOW_CAP: usize = 4096;

/// A run of consecutive points, summarized.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Cell {
    t0: i64,
    t1: i64,
    n: u64,
    mean: f64,
    /// Sum of squared deviations from `mean`.
    m2: f64,
    min: f64,
    max: f64,
    first: f64,
    last: f64,
    /// Counter increase inside the cell, a drop counted as a reset to zero.
    increase: f64,
}

impl Cell {
    fn point(ts: i64, v: f64) -> Cell {
        Cell {
            t0: ts,
            t1: ts,
            n: 1,
            mean: v,
            m2: 0.0,
            min: v,
            max: v,
            first: v,
            last: v,
            increase: 0.0,
        }
    }

    /// `self` followed by `next` (Chan et al.'s parallel variance update).
    fn merge(&mut self, next: &Cell) {
        let n = self.n + next.n;
        let delta = next.mean - self.mean;
        let nf = n as f64;
        self.mean += delta * next.n as f64 / nf;
        self.m2 += next.m2 + delta * delta * self.n as f64 * next.n as f64 / nf;
        self.increase += reset_aware(self.last, next.first) + next.increase;
        self.n = n;
        self.t1 = next.t1;
        self.min = self.min.min(next.min);
        self.max = self.max.max(next.max);
        self.last = next.last;
    }
}

fn reset_aware(prev: f64, next: f64) -> f64 {
    if next >= prev { next - prev } else { next }
}

/// One series' points over the last `window_ms`.
#[derive(Debug, Clone)]
pub struct SeriesWindow {
    window_ms: i64,
    cap: usize,
    cells: VecDeque<Cell>,
    /// Points a new cell may absorb before the next one starts; 1 while exact.
    stride: u64,
    scratch: Vec<(f64, u64)>,
}

impl SeriesWindow {
    /// A window of `window_ms` keeping at most `cap` cells (at least 4).
    pub fn new(window_ms: i64, cap: usize) -> SeriesWindow {
        SeriesWindow {
            window_ms: window_ms.max(1),
            cap: cap.max(4),
            cells: VecDeque::new(),
            stride: 1,
            scratch: Vec::new(),
        }
    }

    pub fn window_ms(&self) -> i64 {
        self.window_ms
    }

    /// Cells held (points while exact).
    pub fn len(&self) -> usize {
        self.cells.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }

    /// Whether every answer is exact (no cell summarizes more than one point).
    pub fn is_exact(&self) -> bool {
        self.cells.iter().all(|c| c.n == 1)
    }

    /// Timestamp of the newest point, if any is still in the window.
    pub fn last_ts(&self) -> Option<i64> {
        self.cells.back().map(|c| c.t1)
    }

    /// Adds a point. Non-finite values are ignored (one infinity would poison the window until it
    /// left it); a point older than the newest one counts as arriving at the newest timestamp,
    /// since the window only moves forward. Returns whether the point was taken.
    pub fn push(&mut self, ts_ms: i64, value: f64) -> bool {
        if !value.is_finite() {
            return false;
        }
        let ts = self.last_ts().map_or(ts_ms, |last| ts_ms.max(last));
        self.evict(ts);
        let cell = Cell::point(ts, value);
        match self.cells.back_mut() {
            Some(last) if last.n < self.stride => last.merge(&cell),
            _ => self.cells.push_back(cell),
        }
        if self.cells.len() > self.cap {
            self.compact();
        } else if self.stride > 1 && self.cells.len() <= self.cap / 4 {
            self.stride /= 2;
        }
        true
    }

    /// Drops the cells whose newest point is at or before `now_ms - window`.
    pub fn evict(&mut self, now_ms: i64) {
        let start = now_ms.saturating_sub(self.window_ms);
        while self.cells.front().is_some_and(|c| c.t1 <= start) {
            self.cells.pop_front();
        }
    }

    fn compact(&mut self) {
        let old = std::mem::take(&mut self.cells);
        let mut it = old.into_iter();
        while let Some(mut a) = it.next() {
            if let Some(b) = it.next() {
                a.merge(&b);
            }
            self.cells.push_back(a);
        }
        self.stride = self.stride.saturating_mul(2);
    }

    /// `agg` over the points in `(now - window, now]`; `None` when there are none.
    pub fn aggregate(&mut self, now_ms: i64, agg: Agg) -> Option<f64> {
        self.evict(now_ms);
        let first = self.cells.front()?;
        Some(match agg {
            Agg::Count => self.count() as f64,
            Agg::Sum => self.sum(),
            Agg::Avg => self.sum() / self.count() as f64,
            Agg::Min => self.cells.iter().fold(first.min, |a, c| a.min(c.min)),
            Agg::Max => self.cells.iter().fold(first.max, |a, c| a.max(c.max)),
            Agg::Last => self.cells.back().map_or(first.last, |c| c.last),
            Agg::Stddev => {
                let mut acc = *first;
                for c in self.cells.iter().skip(1) {
                    acc.merge(c);
                }
                (acc.m2 / acc.n as f64).max(0.0).sqrt()
            }
            Agg::Rate => self.increase() / (self.window_ms as f64 / 1000.0),
            Agg::Median | Agg::P95 | Agg::P99 => self.quantile(agg.quantile().unwrap_or(0.5))?,
        })
    }

    /// `(last - first) / seconds` between the oldest and newest point in the window: how fast a
    /// gauge moves. `None` with fewer than two points or when they share a timestamp.
    pub fn change_per_second(&mut self, now_ms: i64) -> Option<f64> {
        self.evict(now_ms);
        let (first, last) = (self.cells.front()?, self.cells.back()?);
        let span = last.t1 - first.t0;
        (span > 0).then(|| (last.last - first.first) / (span as f64 / 1000.0))
    }

    fn count(&self) -> u64 {
        self.cells.iter().map(|c| c.n).sum()
    }

    fn sum(&self) -> f64 {
        self.cells
            .iter()
            .map(|c| if c.n == 1 { c.mean } else { c.mean * c.n as f64 })
            .sum()
    }

    fn increase(&self) -> f64 {
        let mut total = 0.0;
        let mut prev: Option<f64> = None;
        for c in &self.cells {
            if let Some(p) = prev {
                total += reset_aware(p, c.first);
            }
            total += c.increase;
            prev = Some(c.last);
        }
        total
    }

    /// Lower nearest-rank quantile over the points (cell means when cells were merged).
    fn quantile(&mut self, q: f64) -> Option<f64> {
        self.scratch.clear();
        self.scratch.extend(self.cells.iter().map(|c| (c.mean, c.n)));
        self.scratch.sort_by(|a, b| a.0.total_cmp(&b.0));
        let total: u64 = self.scratch.iter().map(|c| c.1).sum();
        let rank = (q * (total.saturating_sub(1)) as f64).floor() as u64;
        let mut seen = 0;
        for &(v, n) in &self.scratch {
            seen += n;
            if seen > rank {
                return Some(v);
            }
        }
        self.scratch.last().map(|c| c.0)
    }

    /// Bytes of heap this window owns.
    pub fn heap_bytes(&self) -> usize {
        self.cells.capacity() * std::mem::size_of::<Cell>() + self.scratch.capacity() * 16
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The store's definitions, over the raw points in the window.
    fn brute(points: &[(i64, f64)], now: i64, window: i64, agg: Agg) -> Option<f64> {
        let vals: Vec<f64> = points.iter().filter(|(t, _)| *t > now - window).map(|p| p.1).collect();
        let (&first, _) = vals.split_first()?;
        let n = vals.len() as f64;
        Some(match agg {
            Agg::Avg => vals.iter().sum::<f64>() / n,
            Agg::Sum => vals.iter().sum(),
            Agg::Count => n,
            Agg::Min => vals.iter().fold(first, |a, &b| a.min(b)),
            Agg::Max => vals.iter().fold(first, |a, &b| a.max(b)),
            Agg::Last => *vals.last()?,
            Agg::Stddev => {
                let m = vals.iter().sum::<f64>() / n;
                (vals.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / n).sqrt()
            }
            Agg::Rate => {
                let inc: f64 = vals.windows(2).map(|w| reset_aware(w[0], w[1])).sum();
                inc / (window as f64 / 1000.0)
            }
            Agg::Median | Agg::P95 | Agg::P99 => {
                let mut s = vals.clone();
                s.sort_by(f64::total_cmp);
                let rank = (agg.quantile()? * (s.len() - 1) as f64).floor() as usize;
                s[rank]
            }
        })
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-6 * (1.0 + a.abs().max(b.abs()))
    }

    proptest! {
        #[test]
        fn below_the_cap_every_aggregate_is_exact(
            window in 1i64..20_000,
            steps in prop::collection::vec((0i64..3_000, -1e3f64..1e3), 1..200),
        ) {
            let mut w = SeriesWindow::new(window, WINDOW_CAP);
            let mut points = Vec::new();
            let mut t = 1_000_000;
            for (dt, v) in steps {
                t += dt;
                w.push(t, v);
                points.push((t, v));
                for agg in Agg::ALL {
                    let got = w.aggregate(t, agg);
                    let want = brute(&points, t, window, agg);
                    match (got, want) {
                        (Some(g), Some(x)) => prop_assert!(close(g, x), "{agg}: {g} vs {x}"),
                        (g, x) => prop_assert_eq!(g, x, "{}", agg),
                    }
                }
            }
            prop_assert!(w.is_exact());
            // Later, with no new points, old ones leave the window.
            let later = t + window / 2;
            for agg in Agg::ALL {
                let got = w.aggregate(later, agg);
                let want = brute(&points, later, window, agg);
                match (got, want) {
                    (Some(g), Some(x)) => prop_assert!(close(g, x), "{agg}: {g} vs {x}"),
                    (g, x) => prop_assert_eq!(g, x, "{}", agg),
                }
            }
        }

        #[test]
        fn past_the_cap_summaries_stay_exact_and_memory_bounded(
            cap in 4usize..32,
            steps in prop::collection::vec((0i64..100, -1e3f64..1e3), 1..400),
        ) {
            // A window long enough that nothing is evicted: only the cap is at work.
            let window = 1_000_000_000;
            let mut w = SeriesWindow::new(window, cap);
            let mut points = Vec::new();
            let mut t = 0;
            for (dt, v) in steps {
                t += dt;
                w.push(t, v);
                points.push((t, v));
                prop_assert!(w.len() <= cap);
            }
            for agg in [Agg::Count, Agg::Sum, Agg::Avg, Agg::Min, Agg::Max, Agg::Last, Agg::Stddev, Agg::Rate] {
                let got = w.aggregate(t, agg).unwrap_or(f64::NAN);
                let want = brute(&points, t, window, agg).unwrap_or(f64::NAN);
                prop_assert!(close(got, want), "{agg}: {got} vs {want}");
            }
            let (lo, hi) = (w.aggregate(t, Agg::Min).unwrap_or(0.0), w.aggregate(t, Agg::Max).unwrap_or(0.0));
            for agg in [Agg::Median, Agg::P95, Agg::P99] {
                let q = w.aggregate(t, agg).unwrap_or(f64::NAN);
                prop_assert!(q >= lo - 1e-9 && q <= hi + 1e-9, "{agg}: {q} outside {lo}..{hi}");
            }
        }

        #[test]
        fn past_the_cap_eviction_keeps_at_most_one_extra_cell(
            steps in prop::collection::vec((1i64..50, -1e3f64..1e3), 50..600),
        ) {
            let window = 2_000;
            let mut w = SeriesWindow::new(window, 8);
            let mut points = Vec::new();
            let mut t = 0;
            for (dt, v) in steps {
                t += dt;
                w.push(t, v);
                points.push((t, v));
            }
            let got = w.aggregate(t, Agg::Count).unwrap_or(0.0);
            let exact = brute(&points, t, window, Agg::Count).unwrap_or(0.0);
            // Never fewer than the exact count, and the extra are from the one straddling cell.
            prop_assert!(got >= exact, "{got} < {exact}");
            prop_assert!(w.len() <= 8);
        }
    }

    #[test]
    fn rate_counts_resets_and_change_per_second_is_signed() {
        let mut w = SeriesWindow::new(60_000, WINDOW_CAP);
        for (t, v) in [(0, 10.0), (10_000, 20.0), (20_000, 5.0), (30_000, 15.0)] {
            w.push(t, v);
        }
        // 10 + 5 (reset to zero, then 5) + 10 over 60s.
        assert_eq!(w.aggregate(30_000, Agg::Rate), Some(25.0 / 60.0));
        assert_eq!(w.change_per_second(30_000), Some(5.0 / 30.0));
        let mut d = SeriesWindow::new(60_000, WINDOW_CAP);
        d.push(0, 100.0);
        assert_eq!(d.change_per_second(0), None);
        d.push(10_000, 50.0);
        assert_eq!(d.change_per_second(10_000), Some(-5.0));
    }

    #[test]
    fn ignores_non_finite_and_clamps_late_points() {
        let mut w = SeriesWindow::new(1_000, WINDOW_CAP);
        assert!(!w.push(0, f64::NAN));
        assert!(w.push(5_000, 1.0));
        assert!(w.push(100, 2.0));
        assert_eq!(w.last_ts(), Some(5_000));
        assert_eq!(w.aggregate(5_000, Agg::Count), Some(2.0));
        assert_eq!(w.aggregate(6_000, Agg::Count), None);
    }
}
