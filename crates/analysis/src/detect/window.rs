//! The rolling window the detectors share: the last N values of a series in a ring allocated
//! once, with mean and variance kept incrementally (O(1) per point) and, when asked for, a
//! sorted copy kept by insertion so the median and the median absolute deviation cost O(N)
//! without allocating. Its memory is fixed at construction: a series' state never grows.

/// The last `capacity` values of a series and their statistics.
#[derive(Debug, Clone)]
pub struct Rolling {
    ring: Box<[f64]>,
    /// Same values in ascending order; empty when order statistics were not requested.
    sorted: Box<[f64]>,
    next: usize,
    len: usize,
    mean: f64,
    /// Sum of squared deviations from `mean` (Welford's M2).
    m2: f64,
    /// Points since the last exact recomputation: incremental updates drift (and can overflow
    /// on extreme inputs), so the sums are rebuilt from the ring once per turn of the ring.
    since_exact: usize,
}

impl Rolling {
    /// A window of `capacity` values (at least 2); `order_stats` keeps the sorted copy that
    /// [`Rolling::median`] and [`Rolling::mad`] need.
    pub fn new(capacity: usize, order_stats: bool) -> Self {
        let capacity = capacity.max(2);
        Rolling {
            ring: vec![0.0; capacity].into_boxed_slice(),
            sorted: if order_stats {
                vec![0.0; capacity].into_boxed_slice()
            } else {
                Box::new([])
            },
            next: 0,
            len: 0,
            mean: 0.0,
            m2: 0.0,
            since_exact: 0,
        }
    }

    pub fn capacity(&self) -> usize {
        self.ring.len()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn is_full(&self) -> bool {
        self.len == self.ring.len()
    }

    /// Bytes of heap this window owns (its struct size is counted by whoever holds it).
    pub fn heap_bytes(&self) -> usize {
        (self.ring.len() + self.sorted.len()) * std::mem::size_of::<f64>()
    }

    /// Adds a value, evicting the oldest once full. Non-finite values must be filtered by the
    /// caller: one infinity would poison every statistic until it leaves the window.
    pub fn push(&mut self, x: f64) {
        debug_assert!(x.is_finite());
        let cap = self.ring.len();
        if self.len < cap {
            self.ring[self.next] = x;
            self.len += 1;
            let delta = x - self.mean;
            self.mean += delta / self.len as f64;
            self.m2 += delta * (x - self.mean);
            if !self.sorted.is_empty() {
                let n = self.len - 1;
                let at = self.sorted[..n].partition_point(|v| v.total_cmp(&x).is_lt());
                self.sorted.copy_within(at..n, at + 1);
                self.sorted[at] = x;
            }
        } else {
            let old = std::mem::replace(&mut self.ring[self.next], x);
            let n = cap as f64;
            let old_mean = self.mean;
            self.mean += (x - old) / n;
            self.m2 += (x - old) * (x - self.mean + old - old_mean);
            if !self.sorted.is_empty() {
                self.replace_sorted(old, x);
            }
        }
        // A compare instead of `% cap`: the integer division was a visible part of scoring a
        // sample at full ingest.
        self.next += 1;
        if self.next == cap {
            self.next = 0;
        }
        self.since_exact += 1;
        if self.since_exact >= cap || !self.mean.is_finite() || !self.m2.is_finite() || self.m2 < 0.0 {
            self.recompute();
        }
    }

    /// Moves `old`'s slot to `new`'s place in the sorted copy by shifting the values between.
    /// Both places are found by binary search (`total_cmp` is equal only for equal bits, so it
    /// finds `old` itself) and the values between move as one block, instead of a linear scan
    /// and a value-by-value shift. Only windows with order statistics (the `mad` detector) keep
    /// a sorted copy; the default detector's windows do not.
    fn replace_sorted(&mut self, old: f64, new: f64) {
        let Ok(i) = self.sorted.binary_search_by(|v| v.total_cmp(&old)) else {
            // Unreachable while ring and sorted copy agree; rebuilding keeps them honest anyway.
            self.sorted.copy_from_slice(&self.ring);
            self.sorted.sort_by(f64::total_cmp);
            return;
        };
        if new.total_cmp(&old).is_ge() {
            let j = i + 1 + self.sorted[i + 1..].partition_point(|v| v.total_cmp(&new).is_lt());
            self.sorted.copy_within(i + 1..j, i);
            self.sorted[j - 1] = new;
        } else {
            let j = self.sorted[..i].partition_point(|v| v.total_cmp(&new).is_le());
            self.sorted.copy_within(j..i, j + 1);
            self.sorted[j] = new;
        }
    }

    /// Exact mean and M2 from the ring, two passes. The mean is accumulated as a running
    /// average so values near f64::MAX do not overflow a plain sum, and a constant window's mean
    /// is exactly its value (a sum divided by the count can be an ulp off, and a constant series
    /// would then show a spread); each step multiplies by a reciprocal that does not depend on
    /// the running mean, so the divisions are off the chain of dependent operations (dividing
    /// inside it made this the costliest step of a push).
    fn recompute(&mut self) {
        self.since_exact = 0;
        let values = &self.ring[..self.len];
        let mut mean = 0.0;
        for (k, &v) in values.iter().enumerate() {
            mean += (v - mean) * (1.0 / (k + 1) as f64);
        }
        let m2 = values.iter().map(|&v| (v - mean) * (v - mean)).sum::<f64>();
        self.mean = mean;
        self.m2 = m2;
    }

    pub fn mean(&self) -> f64 {
        self.mean
    }

    /// Sample variance (n - 1 in the denominator); 0 with fewer than two values.
    pub fn variance(&self) -> f64 {
        if self.len < 2 {
            0.0
        } else {
            (self.m2 / (self.len - 1) as f64).max(0.0)
        }
    }

    pub fn std_dev(&self) -> f64 {
        self.variance().sqrt()
    }

    /// The value `back` points before the newest one (0 is the newest), if held.
    pub fn recent(&self, back: usize) -> Option<f64> {
        if back >= self.len {
            return None;
        }
        let cap = self.ring.len();
        Some(self.ring[(self.next + cap - 1 - back) % cap])
    }

    /// Median of the window (mean of the two middle values for an even count); NaN when empty
    /// or when the window keeps no order statistics.
    pub fn median(&self) -> f64 {
        let s = self.sorted_values();
        median_of_sorted(s)
    }

    /// Median absolute deviation from the median (unscaled); NaN like [`Rolling::median`].
    pub fn mad(&self) -> f64 {
        let s = self.sorted_values();
        mad_of_sorted(s, median_of_sorted(s))
    }

    /// Mean absolute deviation from the median: the fallback spread when more than half the
    /// window sits on one value and the MAD is 0.
    pub fn mean_abs_dev_from(&self, center: f64) -> f64 {
        if self.len == 0 {
            return f64::NAN;
        }
        self.ring[..self.len].iter().map(|v| (v - center).abs()).sum::<f64>() / self.len as f64
    }

    fn sorted_values(&self) -> &[f64] {
        if self.sorted.is_empty() {
            &[]
        } else {
            &self.sorted[..self.len]
        }
    }
}

fn median_of_sorted(s: &[f64]) -> f64 {
    let n = s.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        s[n / 2]
    } else {
        s[n / 2 - 1] / 2.0 + s[n / 2] / 2.0
    }
}

/// The deviations |s[i] - m| form two ascending runs walking outwards from the median, so
/// merging them finds the middle deviation in O(n) without a scratch buffer.
fn mad_of_sorted(s: &[f64], m: f64) -> f64 {
    let n = s.len();
    if n == 0 {
        return f64::NAN;
    }
    let split = s.partition_point(|v| *v < m);
    let (mut left, mut right) = (split, split);
    let mut take = || {
        let l = if left > 0 { Some(m - s[left - 1]) } else { None };
        let r = if right < n { Some(s[right] - m) } else { None };
        match (l, r) {
            (Some(a), Some(b)) if a <= b => {
                left -= 1;
                a
            }
            (Some(a), None) => {
                left -= 1;
                a
            }
            (_, Some(b)) => {
                right += 1;
                b
            }
            (None, None) => f64::NAN,
        }
    };
    let lo_rank = (n - 1) / 2;
    let mut value = f64::NAN;
    for _ in 0..=lo_rank {
        value = take();
    }
    if n % 2 == 1 { value } else { value / 2.0 + take() / 2.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_mad_of_small_windows() {
        let mut w = Rolling::new(5, true);
        for x in [1.0, 2.0, 3.0, 4.0, 100.0] {
            w.push(x);
        }
        assert_eq!(w.median(), 3.0);
        // deviations 2, 1, 0, 1, 97 -> median 1
        assert_eq!(w.mad(), 1.0);
        w.push(5.0); // evicts 1.0: 2 3 4 5 100
        assert_eq!(w.median(), 4.0);
        assert_eq!(w.mad(), 1.0);
        assert_eq!(w.recent(0), Some(5.0));
        assert_eq!(w.recent(4), Some(2.0));
        assert_eq!(w.recent(5), None);
    }

    /// The sorted copy stays the ring's values in order through evictions of every kind:
    /// values moving up and down, duplicates, signed zeros, a window of two.
    #[test]
    fn the_sorted_copy_follows_the_ring() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for cap in [2, 3, 7, 64] {
            let mut w = Rolling::new(cap, true);
            for step in 0..2_000 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let x = match state % 5 {
                    0 => 0.0,
                    1 => -0.0,
                    _ => (state % 21) as f64 - 10.0,
                };
                w.push(x);
                let mut want: Vec<f64> = w.ring[..w.len].to_vec();
                want.sort_by(f64::total_cmp);
                let got: Vec<u64> = w.sorted_values().iter().map(|v| v.to_bits()).collect();
                let want: Vec<u64> = want.iter().map(|v| v.to_bits()).collect();
                assert_eq!(got, want, "window {cap}, step {step}");
            }
        }
    }

    #[test]
    fn even_count_takes_the_mean_of_the_middle_pair() {
        let mut w = Rolling::new(4, true);
        for x in [4.0, 1.0, 3.0, 2.0] {
            w.push(x);
        }
        assert_eq!(w.median(), 2.5);
        // deviations 1.5 0.5 0.5 1.5 -> 1.0
        assert_eq!(w.mad(), 1.0);
    }
}
