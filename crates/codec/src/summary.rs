//! The rollup aggregate of one series over one time bucket. Every field merges, so 1-minute
//! summaries combine into 5-minute and 1-hour ones without revisiting raw points: counts, sums
//! and extremes add or compare, mean and the sum of squared deviations combine with Chan's
//! formula, and the counter increase joins across the seam between two buckets.

use crate::bits::{ByteReader, put_ivarint, put_uvarint};
use crate::error::{Error, Result};
use crate::sketch::Sketch;

/// Rollup aggregate of one series over one time bucket; every field mergeable.
///
/// Points should be added in time order: `increase` adds the step from the latest point to each
/// new one, so a point older than the latest (out of order) still counts towards every other
/// field but not towards `increase`. `first` and `last` compare timestamps, so they are right in
/// any order. NaN values (e.g. staleness markers) are skipped entirely.
#[derive(Clone, Debug)]
pub struct Summary {
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    /// Sum of squared deviations from the mean (Welford/Chan).
    pub m2: f64,
    /// Earliest point (timestamp, value).
    pub first: (i64, f64),
    /// Latest point (timestamp, value).
    pub last: (i64, f64),
    /// Counter increase inside the bucket, counting a drop as a reset (Prometheus semantics).
    pub increase: f64,
    pub sketch: Sketch,
}

impl Default for Summary {
    fn default() -> Self {
        Self::new()
    }
}

/// Increase of a counter from `prev` to `next`: a drop means it restarted from zero.
#[inline]
fn counter_step(prev: f64, next: f64) -> f64 {
    if next >= prev { next - prev } else { next }
}

impl Summary {
    pub fn new() -> Self {
        Self {
            count: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            mean: 0.0,
            m2: 0.0,
            first: (0, f64::NAN),
            last: (0, f64::NAN),
            increase: 0.0,
            sketch: Sketch::new(),
        }
    }

    /// Adds the point (`ts`, `v`); see the type docs for ordering.
    pub fn add(&mut self, ts: i64, v: f64) {
        if self.add_without_sketch(ts, v) {
            self.sketch.add(v);
        }
    }

    /// [`Summary::add`] leaving the sketch out (its count then differs from the summary's),
    /// for readers that use no quantiles: the sketch's logarithm is most of the cost of adding
    /// a point. Returns whether the point counted (it is not NaN).
    pub fn add_without_sketch(&mut self, ts: i64, v: f64) -> bool {
        if v.is_nan() {
            return false;
        }
        if self.count == 0 {
            self.first = (ts, v);
            self.last = (ts, v);
        } else {
            if ts > self.last.0 {
                self.increase += counter_step(self.last.1, v);
                self.last = (ts, v);
            }
            if ts < self.first.0 {
                self.first = (ts, v);
            }
        }
        self.count += 1;
        self.sum += v;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        let delta = v - self.mean;
        self.mean += delta / self.count as f64;
        self.m2 += delta * (v - self.mean);
        true
    }

    /// Merges another bucket's summary; either may be the earlier one. `increase` adds both
    /// increases plus the step from the earlier bucket's last value to the later one's first
    /// (skipped if the two overlap in time, where no seam exists).
    pub fn merge(&mut self, other: &Summary) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            *self = other.clone();
            return;
        }
        let (early, late) = if other.first.0 < self.first.0 {
            (other, &*self)
        } else {
            (&*self, other)
        };
        let seam = if early.last.0 < late.first.0 {
            counter_step(early.last.1, late.first.1)
        } else {
            0.0
        };
        let increase = early.increase + late.increase + seam;
        let first = early.first;
        let last = if late.last.0 >= early.last.0 {
            late.last
        } else {
            early.last
        };

        let (na, nb) = (self.count as f64, other.count as f64);
        let n = na + nb;
        let delta = other.mean - self.mean;
        self.mean += delta * nb / n;
        self.m2 += other.m2 + delta * delta * na * nb / n;
        self.count += other.count;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.first = first;
        self.last = last;
        self.increase = increase;
        self.sketch.merge_lossy(&other.sketch);
    }

    /// Population variance, `None` if empty.
    pub fn variance(&self) -> Option<f64> {
        (self.count > 0).then(|| (self.m2 / self.count as f64).max(0.0))
    }

    pub fn stddev(&self) -> Option<f64> {
        self.variance().map(f64::sqrt)
    }

    /// Mean, `None` if empty.
    pub fn avg(&self) -> Option<f64> {
        (self.count > 0).then_some(self.mean)
    }

    /// Appends the summary: count (varint); if non-zero then sum, min, max, mean, m2 (f64 LE),
    /// first and last as (zigzag varint ts, f64 LE), increase (f64 LE) and the sketch.
    pub fn encode(&self, out: &mut Vec<u8>) {
        put_uvarint(out, self.count);
        if self.count == 0 {
            return;
        }
        for f in [self.sum, self.min, self.max, self.mean, self.m2] {
            out.extend_from_slice(&f.to_le_bytes());
        }
        for (ts, v) in [self.first, self.last] {
            put_ivarint(out, ts);
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&self.increase.to_le_bytes());
        self.sketch.encode(out);
    }

    /// Reads a summary written by [`Summary::encode`]; returns it and the bytes consumed.
    pub fn decode(bytes: &[u8]) -> Result<(Summary, usize)> {
        let mut br = ByteReader::new(bytes);
        let mut s = Summary::new();
        s.count = br.uvarint()?;
        if s.count == 0 {
            return Ok((s, br.position()));
        }
        s.sum = br.f64()?;
        s.min = br.f64()?;
        s.max = br.f64()?;
        s.mean = br.f64()?;
        s.m2 = br.f64()?;
        s.first = (br.ivarint()?, br.f64()?);
        s.last = (br.ivarint()?, br.f64()?);
        s.increase = br.f64()?;
        let (sketch, used) = Sketch::decode(br.remaining())?;
        br.advance(used)?;
        if sketch.count() != s.count {
            return Err(Error::Corrupt("summary count differs from its sketch"));
        }
        s.sketch = sketch;
        Ok((s, br.position()))
    }
}
