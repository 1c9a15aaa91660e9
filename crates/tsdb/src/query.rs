//! Tiers and aggregation. Buckets are aligned to multiples of the step (from the epoch), so a
//! bucket of a coarser step is exactly a union of buckets of every tier that divides it: that
//! is what lets a query take the coarsest rollup tier that answers its step exactly. Raw points
//! are aggregated exactly (quantiles by rank over the bucket's sorted values); rollups answer
//! quantiles from merged sketches (within the sketch's relative accuracy).

use pulsewire_codec::{Sketches, Summary};
use pulsewire_proto::Agg;
use serde::{Deserialize, Serialize};

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Tier {
    #[serde(rename = "raw")]
    Raw,
    #[serde(rename = "1m")]
    M1,
    #[serde(rename = "5m")]
    M5,
    #[serde(rename = "1h")]
    H1,
}

impl Tier {
    pub const ROLLUPS: [Tier; 3] = [Tier::M1, Tier::M5, Tier::H1];

    pub fn name(self) -> &'static str {
        match self {
            Tier::Raw => "raw",
            Tier::M1 => "1m",
            Tier::M5 => "5m",
            Tier::H1 => "1h",
        }
    }

    /// Bucket width of a rollup tier (0 for raw).
    pub fn resolution_ms(self) -> i64 {
        match self {
            Tier::Raw => 0,
            Tier::M1 => MINUTE,
            Tier::M5 => 5 * MINUTE,
            Tier::H1 => HOUR,
        }
    }

    /// Width of the time partitions its parts are cut into (and retention drops whole).
    pub fn partition_ms(self) -> i64 {
        match self {
            Tier::Raw | Tier::M1 => DAY,
            Tier::M5 => 7 * DAY,
            Tier::H1 => 30 * DAY,
        }
    }

    pub fn partition_of(self, ts: i64) -> i64 {
        ts.div_euclid(self.partition_ms()) * self.partition_ms()
    }
}

/// One output point of an aggregated query.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    pub start: i64,
    pub value: f64,
}

pub fn bucket_of(ts: i64, step: i64) -> i64 {
    ts.div_euclid(step) * step
}

/// Evaluates an aggregation over a rollup summary of one bucket.
pub fn eval_summary(agg: Agg, s: &Summary, step_ms: i64) -> Option<f64> {
    if s.count == 0 {
        return None;
    }
    match agg {
        Agg::Avg => s.avg(),
        Agg::Min => Some(s.min),
        Agg::Max => Some(s.max),
        Agg::Sum => Some(s.sum),
        Agg::Count => Some(s.count as f64),
        Agg::Last => Some(s.last.1),
        Agg::Stddev => s.stddev(),
        Agg::Rate => Some(s.increase / (step_ms as f64 / 1000.0)),
        Agg::Median | Agg::P95 | Agg::P99 => s.sketch.quantile(agg.quantile().unwrap_or(0.5)),
    }
}

/// Evaluates an aggregation exactly over one bucket of raw points (ascending by time).
pub fn eval_raw(agg: Agg, values: &[f64], step_ms: i64, scratch: &mut Vec<f64>) -> Option<f64> {
    let (&first, rest) = values.split_first()?;
    let n = values.len() as f64;
    Some(match agg {
        Agg::Avg => values.iter().sum::<f64>() / n,
        Agg::Min => rest.iter().fold(first, |a, &b| a.min(b)),
        Agg::Max => rest.iter().fold(first, |a, &b| a.max(b)),
        Agg::Sum => values.iter().sum(),
        Agg::Count => n,
        Agg::Last => values.last().copied().unwrap_or(first),
        Agg::Stddev => {
            let mean = values.iter().sum::<f64>() / n;
            (values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n).sqrt()
        }
        Agg::Rate => {
            let mut increase = 0.0;
            let mut prev = first;
            for &v in rest {
                // A drop is a counter reset: the counter restarted from zero and reached `v`.
                increase += if v >= prev { v - prev } else { v };
                prev = v;
            }
            increase / (step_ms as f64 / 1000.0)
        }
        Agg::Median | Agg::P95 | Agg::P99 => {
            scratch.clear();
            scratch.extend_from_slice(values);
            let q = agg.quantile().unwrap_or(0.5);
            let rank = (q * (scratch.len() - 1) as f64).floor() as usize;
            if rank >= scratch.len() {
                return None;
            }
            *scratch.select_nth_unstable_by(rank, f64::total_cmp).1
        }
    })
}

/// Aggregates ascending raw points into buckets of `step` (aligned to the epoch).
pub fn aggregate_raw(agg: Agg, ts: &[i64], values: &[f64], step: i64) -> Vec<Bucket> {
    let mut out = Vec::new();
    let mut scratch = Vec::new();
    let mut start = 0;
    while start < ts.len() {
        let Some(&t0) = ts.get(start) else { break };
        let b = bucket_of(t0, step);
        let end = start
            + ts.get(start..)
                .map_or(0, |rest| rest.partition_point(|&t| t < b + step));
        if let Some(v) = values
            .get(start..end)
            .and_then(|vals| eval_raw(agg, vals, step, &mut scratch))
        {
            out.push(Bucket { start: b, value: v });
        }
        start = end.max(start + 1);
    }
    out
}

/// Summaries per bucket of `res` from ascending raw points.
pub fn summarize_raw(ts: &[i64], values: &[f64], res: i64, sketches: Sketches) -> Vec<(i64, Summary)> {
    let mut out: Vec<(i64, Summary)> = Vec::new();
    for (&t, &v) in ts.iter().zip(values) {
        let b = bucket_of(t, res);
        if !matches!(out.last(), Some((start, _)) if *start == b) {
            out.push((b, Summary::new()));
        }
        if let Some((_, s)) = out.last_mut() {
            match sketches {
                Sketches::Decode => s.add(t, v),
                Sketches::Skip => {
                    s.add_without_sketch(t, v);
                }
            }
        }
    }
    out
}

/// Merges ascending `(bucket, summary)` runs re-bucketed to `step` (a multiple of their width).
pub fn rebucket(runs: Vec<(i64, Summary)>, step: i64) -> Vec<(i64, Summary)> {
    let mut sorted = runs;
    // Already one summary per output bucket, in order (a query at the tier's own step over one
    // part): nothing to move. A summary is a few hundred bytes, and moving 1,441 of them twice
    // was a tenth of a one-day 1-minute query.
    if sorted
        .windows(2)
        .all(|w| matches!(w, [(a, _), (b, _)] if bucket_of(*a, step) < bucket_of(*b, step)))
    {
        if sorted.iter().all(|(t, _)| bucket_of(*t, step) == *t) {
            return sorted;
        }
    } else if !sorted.is_sorted_by_key(|(t, _)| *t) {
        sorted.sort_by_key(|(t, _)| *t);
    }
    let mut out: Vec<(i64, Summary)> = Vec::new();
    for (t, s) in sorted {
        let b = bucket_of(t, step);
        match out.last_mut() {
            Some((start, acc)) if *start == b => acc.merge(&s),
            _ => out.push((b, s)),
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn raw_aggregation_by_epoch_aligned_buckets() {
        let ts = [0, 10, 59_999, 60_000, 60_001, 180_000];
        let vals = [1.0, 2.0, 3.0, 10.0, 20.0, 5.0];
        let avg = aggregate_raw(Agg::Avg, &ts, &vals, 60_000);
        assert_eq!(
            avg,
            vec![
                Bucket { start: 0, value: 2.0 },
                Bucket {
                    start: 60_000,
                    value: 15.0
                },
                Bucket {
                    start: 180_000,
                    value: 5.0
                }
            ]
        );
        let rate = aggregate_raw(Agg::Rate, &[0, 1000, 2000, 3000], &[10.0, 20.0, 5.0, 15.0], 60_000);
        // 10 up, reset to 5 (counts 5), 10 up: 25 over 60 s.
        assert_eq!(
            rate,
            vec![Bucket {
                start: 0,
                value: 25.0 / 60.0
            }]
        );
        let p = aggregate_raw(Agg::Median, &[1, 2, 3, 4], &[4.0, 1.0, 3.0, 2.0], 60_000);
        assert_eq!(p, vec![Bucket { start: 0, value: 2.0 }]);
    }
}
