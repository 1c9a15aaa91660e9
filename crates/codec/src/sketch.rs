//! A mergeable quantile sketch with a relative-error guarantee, after DDSketch (Masson, Rim and
//! Lee, VLDB 2019). Rollups keep one per bucket and merge them into coarser buckets; anomaly
//! detection reads quantiles from them.
//!
//! A positive value `v` falls in bin `i = ceil(ln v / ln γ)` with `γ = (1 + α) / (1 − α)`, and a
//! bin reports `2γ^i / (1 + γ)`, which is within relative error `α` of every value in it.
//! Negative values use a second store keyed by `|v|`; zeros (and subnormals, which the mapping
//! cannot tell from zero) are counted apart. Infinities land in the largest-magnitude bin.
//!
//! Each store holds a dense run of counters from its lowest to its highest bin, limited to
//! `max_bins` (default [`DEFAULT_MAX_BINS`]). When a value would widen a store beyond that, the
//! lowest-magnitude bins are collapsed into the lowest bin kept, so accuracy is kept for the large
//! magnitudes and lost only for values more than `γ^max_bins` (about 10^17 at the defaults)
//! below the largest. Because the bound follows the highest bin, merging collapsed sketches gives
//! exactly the sketch of the concatenated input.

use crate::bits::{ByteReader, put_ivarint, put_uvarint};
use crate::error::{Error, Result};

/// Default relative accuracy.
pub const DEFAULT_ALPHA: f64 = 0.01;
/// Default bound on bins per store (positive and negative each).
pub const DEFAULT_MAX_BINS: usize = 2048;
/// Largest bin bound a decoded sketch may declare.
const MAX_SKETCH_BINS: u64 = 1 << 16;
const MIN_ALPHA: f64 = 1e-6;
const MAX_ALPHA: f64 = 0.5;

/// Dense run of bin counters starting at bin `offset`.
#[derive(Clone, Debug, Default)]
struct Store {
    offset: i32,
    counts: Vec<u64>,
}

impl Store {
    /// Highest bin (meaningful when not empty).
    fn hi(&self) -> i64 {
        i64::from(self.offset) + self.counts.len() as i64 - 1
    }

    fn bins(&self) -> impl DoubleEndedIterator<Item = (i32, u64)> + '_ {
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(i, &c)| (self.offset.wrapping_add(i as i32), c))
    }

    fn slot(&mut self, idx: i64) -> Option<&mut u64> {
        usize::try_from(idx - i64::from(self.offset))
            .ok()
            .and_then(|i| self.counts.get_mut(i))
    }

    fn add(&mut self, idx: i32, c: u64, max_bins: u32) {
        let idx64 = i64::from(idx);
        let max_bins = i64::from(max_bins.max(1));
        if self.counts.is_empty() {
            self.offset = idx;
            self.counts = vec![c];
            return;
        }
        let lo = i64::from(self.offset);
        let target = if idx64 > self.hi() {
            // Widen upwards; bins that fall below the new floor collapse into it.
            let floor = (idx64 - max_bins + 1).max(lo);
            if floor > lo {
                let drop = ((floor - lo) as usize).min(self.counts.len());
                let collapsed: u64 = self.counts.drain(..drop).fold(0, u64::wrapping_add);
                self.offset = floor as i32;
                if self.counts.is_empty() {
                    self.counts.push(0);
                }
                if let Some(first) = self.counts.first_mut() {
                    *first = first.wrapping_add(collapsed);
                }
            }
            let len = (idx64 - i64::from(self.offset) + 1) as usize;
            self.counts.reserve_exact(len - self.counts.len());
            self.counts.resize(len, 0);
            idx64
        } else if idx64 < lo {
            // Widen downwards, but never below the floor the highest bin allows.
            let target = idx64.max(self.hi() - max_bins + 1);
            if target < lo {
                let extra = (lo - target) as usize;
                let mut grown = Vec::with_capacity(extra + self.counts.len());
                grown.resize(extra, 0);
                grown.extend_from_slice(&self.counts);
                self.counts = grown;
                self.offset = target as i32;
            }
            target
        } else {
            idx64
        };
        if let Some(slot) = self.slot(target) {
            *slot = slot.wrapping_add(c);
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        let bins: Vec<(i32, u64)> = self.bins().collect();
        put_uvarint(out, bins.len() as u64);
        let mut prev: Option<i32> = None;
        for (idx, c) in bins {
            match prev {
                None => put_ivarint(out, i64::from(idx)),
                Some(p) => put_uvarint(out, (i64::from(idx) - i64::from(p)) as u64),
            }
            put_uvarint(out, c);
            prev = Some(idx);
        }
    }

    fn decode(br: &mut ByteReader<'_>, max_bins: u32, (min_idx, max_idx): (i32, i32)) -> Result<(Store, u64)> {
        let m = br.len(max_bins as usize)?;
        if m == 0 {
            return Ok((Store::default(), 0));
        }
        let mut bins = Vec::with_capacity(m);
        let mut idx = br.ivarint()?;
        let mut total = 0u64;
        for i in 0..m {
            if i > 0 {
                let gap = br.uvarint()?;
                if gap == 0 || gap > u64::from(max_bins) {
                    return Err(Error::Corrupt("sketch bins out of order"));
                }
                idx += gap as i64;
            }
            if idx < i64::from(min_idx) || idx > i64::from(max_idx) {
                return Err(Error::Corrupt("sketch bin out of range"));
            }
            let c = br.uvarint()?;
            if c == 0 {
                return Err(Error::Corrupt("empty sketch bin"));
            }
            total = total.checked_add(c).ok_or(Error::Corrupt("sketch count overflows"))?;
            bins.push((idx, c));
        }
        let (Some(&(lo, _)), Some(&(hi, _))) = (bins.first(), bins.last()) else {
            return Ok((Store::default(), 0));
        };
        if hi - lo >= i64::from(max_bins) {
            return Err(Error::Corrupt("sketch wider than its bin bound"));
        }
        let mut store = Store {
            offset: lo as i32,
            counts: vec![0; (hi - lo + 1) as usize],
        };
        for (idx, c) in bins {
            if let Some(slot) = store.slot(idx) {
                *slot = c;
            }
        }
        Ok((store, total))
    }
}

/// Mergeable quantile sketch with relative accuracy `alpha`; see the module docs.
#[derive(Clone, Debug)]
pub struct Sketch {
    alpha: f64,
    ln_gamma: f64,
    max_bins: u32,
    zero: u64,
    count: u64,
    pos: Store,
    neg: Store,
}

impl Default for Sketch {
    fn default() -> Self {
        Self::new()
    }
}

impl PartialEq for Sketch {
    /// Same accuracy, bound and bin counts (however the dense stores happen to be laid out).
    fn eq(&self, other: &Self) -> bool {
        self.alpha.to_bits() == other.alpha.to_bits()
            && self.max_bins == other.max_bins
            && self.zero == other.zero
            && self.count == other.count
            && self.pos.bins().eq(other.pos.bins())
            && self.neg.bins().eq(other.neg.bins())
    }
}

impl Sketch {
    /// A sketch with relative accuracy [`DEFAULT_ALPHA`] (1%).
    pub fn new() -> Self {
        Self::with_limits(DEFAULT_ALPHA, DEFAULT_MAX_BINS)
    }

    /// A sketch with relative accuracy `alpha`, clamped to [1e-6, 0.5] (NaN means the default).
    pub fn with_accuracy(alpha: f64) -> Self {
        Self::with_limits(alpha, DEFAULT_MAX_BINS)
    }

    /// A sketch with relative accuracy `alpha` (as in [`Sketch::with_accuracy`]) and at most
    /// `max_bins` bins per sign (clamped to [1, 65536]).
    pub fn with_limits(alpha: f64, max_bins: usize) -> Self {
        let alpha = if alpha.is_nan() {
            DEFAULT_ALPHA
        } else {
            alpha.clamp(MIN_ALPHA, MAX_ALPHA)
        };
        Self {
            alpha,
            ln_gamma: ((1.0 + alpha) / (1.0 - alpha)).ln(),
            max_bins: max_bins.clamp(1, MAX_SKETCH_BINS as usize) as u32,
            zero: 0,
            count: 0,
            pos: Store::default(),
            neg: Store::default(),
        }
    }

    pub fn alpha(&self) -> f64 {
        self.alpha
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bin range of magnitudes from the smallest normal float to the largest float.
    fn index_range(&self) -> (i32, i32) {
        let lo = (f64::MIN_POSITIVE.ln() / self.ln_gamma).ceil();
        let hi = (f64::MAX.ln() / self.ln_gamma).ceil();
        (lo as i32, hi as i32)
    }

    fn index(&self, magnitude: f64) -> i32 {
        let (lo, hi) = self.index_range();
        let i = (magnitude.ln() / self.ln_gamma).ceil();
        // `as` saturates, and infinity maps to the top bin.
        (i as i32).clamp(lo, hi)
    }

    fn value(&self, idx: i32) -> f64 {
        let gamma = self.ln_gamma.exp();
        let v = (f64::from(idx - 1) * self.ln_gamma).exp() * (2.0 * gamma / (1.0 + gamma));
        v.min(f64::MAX)
    }

    /// Adds one value; NaN is ignored.
    pub fn add(&mut self, v: f64) {
        self.add_n(v, 1);
    }

    fn add_n(&mut self, v: f64, n: u64) {
        if v.is_nan() || n == 0 {
            return;
        }
        let magnitude = v.abs();
        if magnitude < f64::MIN_POSITIVE {
            self.zero = self.zero.wrapping_add(n);
        } else if v > 0.0 {
            let idx = self.index(magnitude);
            self.pos.add(idx, n, self.max_bins);
        } else {
            let idx = self.index(magnitude);
            self.neg.add(idx, n, self.max_bins);
        }
        self.count = self.count.wrapping_add(n);
    }

    /// Adds every value counted in `other`. Err if the accuracies differ (bins would not line up).
    pub fn merge(&mut self, other: &Sketch) -> Result<()> {
        if self.alpha.to_bits() != other.alpha.to_bits() {
            return Err(Error::AccuracyMismatch(self.alpha, other.alpha));
        }
        for (mine, theirs) in [(&mut self.pos, &other.pos), (&mut self.neg, &other.neg)] {
            // Widen once to the other's extremes, then fill in, so merging costs one allocation.
            let (first, last) = (theirs.bins().next(), theirs.bins().next_back());
            if let (Some((hi, _)), Some((lo, _))) = (last, first) {
                mine.add(hi, 0, self.max_bins);
                mine.add(lo, 0, self.max_bins);
            }
            for (idx, c) in theirs.bins() {
                mine.add(idx, c, self.max_bins);
            }
        }
        self.zero = self.zero.wrapping_add(other.zero);
        self.count = self.count.wrapping_add(other.count);
        Ok(())
    }

    /// Merges a sketch of another accuracy by re-adding each of its bins' representative values;
    /// the result's error is up to about the sum of both accuracies.
    pub(crate) fn merge_lossy(&mut self, other: &Sketch) {
        if self.merge(other).is_ok() {
            return;
        }
        for (idx, c) in other.pos.bins() {
            self.add_n(other.value(idx), c);
        }
        for (idx, c) in other.neg.bins() {
            self.add_n(-other.value(idx), c);
        }
        self.add_n(0.0, other.zero);
    }

    /// The value at rank `q × (count − 1)` (0-based, rounded down) of the sorted input, within
    /// relative error `alpha`. `None` if empty or `q` is outside [0, 1].
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 || !(0.0..=1.0).contains(&q) {
            return None;
        }
        let rank = (q * (self.count - 1) as f64).floor();
        let mut seen = 0u64;
        for (idx, c) in self.neg.bins().rev() {
            seen = seen.saturating_add(c);
            if seen as f64 > rank {
                return Some(-self.value(idx));
            }
        }
        seen = seen.saturating_add(self.zero);
        if seen as f64 > rank {
            return Some(0.0);
        }
        let mut last = None;
        for (idx, c) in self.pos.bins() {
            seen = seen.saturating_add(c);
            last = Some(idx);
            if seen as f64 > rank {
                return Some(self.value(idx));
            }
        }
        // Only reachable through rounding of huge counts: answer with the largest value.
        last.map(|i| self.value(i)).or(Some(0.0))
    }

    /// Whether `other` was made with the same accuracy and bin bound.
    pub(crate) fn same_limits(&self, other: &Sketch) -> bool {
        self.alpha.to_bits() == other.alpha.to_bits() && self.max_bins == other.max_bins
    }

    /// The cell `v` is counted in, as a key that orders cells as their values order: negative
    /// bins from the largest magnitude up to `-1`, zero as `0`, positive bins from `1` up.
    /// `None` for NaN, which is never counted.
    pub(crate) fn key(&self, v: f64) -> Option<i64> {
        if v.is_nan() {
            return None;
        }
        let magnitude = v.abs();
        if magnitude < f64::MIN_POSITIVE {
            return Some(0);
        }
        let (lo, _) = self.index_range();
        let offset = i64::from(self.index(magnitude)) - i64::from(lo);
        Some(if v > 0.0 { 1 + offset } else { -1 - offset })
    }

    /// Every non-empty cell as `(key, count)` (see [`Sketch::key`]), keys ascending.
    pub(crate) fn cells(&self) -> impl Iterator<Item = (i64, u64)> + '_ {
        let lo = i64::from(self.index_range().0);
        let neg = self.neg.bins().rev().map(move |(i, c)| (-1 - (i64::from(i) - lo), c));
        let zero = (self.zero > 0).then_some((0, self.zero));
        let pos = self.pos.bins().map(move |(i, c)| (1 + (i64::from(i) - lo), c));
        neg.chain(zero).chain(pos)
    }

    /// An empty sketch with the accuracy and bin bound of `self`.
    pub(crate) fn empty_like(&self) -> Sketch {
        Sketch {
            alpha: self.alpha,
            ln_gamma: self.ln_gamma,
            max_bins: self.max_bins,
            zero: 0,
            count: 0,
            pos: Store::default(),
            neg: Store::default(),
        }
    }

    /// Adds `count` values to the cell `key`. Err if the key lies outside the sketch's range,
    /// the count overflows, or a store would span more than its bin bound (a sketch built by
    /// adding values never does, so decoded cells that would must be corrupt).
    pub(crate) fn add_cell(&mut self, key: i64, count: u64) -> Result<()> {
        let (lo, hi) = self.index_range();
        let span = i64::from(hi) - i64::from(lo);
        if key.unsigned_abs() > span.unsigned_abs() + 1 {
            return Err(Error::Corrupt("sketch cell out of range"));
        }
        self.count = self
            .count
            .checked_add(count)
            .ok_or(Error::Corrupt("sketch count overflows"))?;
        let store = match key.cmp(&0) {
            std::cmp::Ordering::Equal => {
                self.zero += count;
                return Ok(());
            }
            std::cmp::Ordering::Less => &mut self.neg,
            std::cmp::Ordering::Greater => &mut self.pos,
        };
        // In range, so the bin fits i32.
        let idx = (i64::from(lo) + key.abs() - 1) as i32;
        if !store.counts.is_empty() {
            let (first, last) = (i64::from(store.offset), store.hi());
            if i64::from(idx).max(last) - i64::from(idx).min(first) >= i64::from(self.max_bins) {
                return Err(Error::Corrupt("sketch wider than its bin bound"));
            }
        }
        store.add(idx, count, self.max_bins);
        Ok(())
    }

    /// Bytes of heap held by the bin counters.
    pub fn heap_bytes(&self) -> usize {
        (self.pos.counts.capacity() + self.neg.counts.capacity()) * std::mem::size_of::<u64>()
    }

    /// Appends the sketch: alpha (f64 LE), max_bins, zero count, then the positive and negative
    /// stores, each as its number of non-empty bins, the first bin index (zigzag varint) and
    /// count, then (gap to previous bin, count) varint pairs.
    pub fn encode(&self, out: &mut Vec<u8>) {
        self.encode_limits(out);
        put_uvarint(out, self.zero);
        self.pos.encode(out);
        self.neg.encode(out);
    }

    /// Reads an accuracy (f64 LE) and a bin bound (varint), rejecting values no sketch has, and
    /// returns an empty sketch with them.
    pub(crate) fn decode_limits(br: &mut ByteReader<'_>) -> Result<Sketch> {
        let alpha = br.f64()?;
        if !(MIN_ALPHA..=MAX_ALPHA).contains(&alpha) {
            return Err(Error::Corrupt("sketch accuracy out of range"));
        }
        let max_bins = br.uvarint()?;
        if max_bins == 0 || max_bins > MAX_SKETCH_BINS {
            return Err(Error::Corrupt("sketch bin bound out of range"));
        }
        Ok(Sketch::with_limits(alpha, max_bins as usize))
    }

    /// Appends the accuracy and bin bound as [`Sketch::decode_limits`] reads them.
    pub(crate) fn encode_limits(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.alpha.to_le_bytes());
        put_uvarint(out, u64::from(self.max_bins));
    }

    /// Reads a sketch written by [`Sketch::encode`]; returns it and the bytes consumed.
    pub fn decode(bytes: &[u8]) -> Result<(Sketch, usize)> {
        let mut br = ByteReader::new(bytes);
        let mut s = Sketch::decode_limits(&mut br)?;
        s.zero = br.uvarint()?;
        let range = s.index_range();
        let (pos, np) = Store::decode(&mut br, s.max_bins, range)?;
        let (neg, nn) = Store::decode(&mut br, s.max_bins, range)?;
        s.count = s
            .zero
            .checked_add(np)
            .and_then(|c| c.checked_add(nn))
            .ok_or(Error::Corrupt("sketch count overflows"))?;
        s.pos = pos;
        s.neg = neg;
        Ok((s, br.position()))
    }
}
