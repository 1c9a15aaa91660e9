//! The EWMA detector: exponentially weighted mean and variance, no window at all, so its state
//! is a handful of numbers. It follows drifts smoothly and remembers a series' noise level for
//! about 1/alpha points, which also means a level shift keeps alarming until it is absorbed.

use serde::{Deserialize, Serialize};

use super::{Detector, Score, band_problem, check, guarded_spread, score_from_deviation};

/// Parameters of [`Ewma`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EwmaConfig {
    /// Weight of the newest point in the mean and variance (0 < alpha < 1).
    pub alpha: f64,
    /// Points seen before scoring starts.
    pub warmup: usize,
    /// Sigmas at which a point is an anomaly (score 0.5).
    pub threshold: f64,
    /// Sigmas at which the anomaly is of high severity.
    pub high: f64,
    /// Floor of the standard deviation relative to |mean|: the constant-series guard.
    pub min_relative_spread: f64,
}

impl Default for EwmaConfig {
    fn default() -> Self {
        EwmaConfig {
            alpha: 0.01,
            warmup: 64,
            threshold: 3.0,
            high: 4.0,
            min_relative_spread: 1e-3,
        }
    }
}

impl EwmaConfig {
    pub(crate) fn problem(&self) -> Option<String> {
        check(self.alpha > 0.0 && self.alpha < 1.0, "alpha must be in (0, 1)")
            .or_else(|| check(self.warmup >= 2, "warmup must be at least 2"))
            .or_else(|| band_problem(self.threshold, self.high, self.min_relative_spread))
    }
}

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct Ewma {
    config: EwmaConfig,
    seen: u64,
    mean: f64,
    var: f64,
}

impl Ewma {
    pub fn new(config: EwmaConfig) -> Self {
        Ewma {
            config,
            seen: 0,
            mean: 0.0,
            var: 0.0,
        }
    }
}

impl Detector for Ewma {
    fn observe(&mut self, _ts_ms: i64, value: f64) -> Score {
        if !value.is_finite() {
            return Score::none(self.name());
        }
        let c = &self.config;
        let score = if self.seen < c.warmup as u64 {
            Score::none("ewma")
        } else {
            let sd = guarded_spread(self.var.sqrt(), self.mean, c.min_relative_spread);
            let z = (value - self.mean).abs() / sd;
            score_from_deviation("ewma", z, c.threshold, c.high, self.mean, sd)
        };
        if self.seen == 0 {
            self.mean = value;
            self.var = 0.0;
        } else {
            // West's incremental form of the exponentially weighted variance.
            let diff = value - self.mean;
            let incr = c.alpha * diff;
            self.mean += incr;
            self.var = (1.0 - c.alpha) * (self.var + diff * incr);
        }
        if !self.mean.is_finite() || !self.var.is_finite() {
            // Only reachable with values near f64::MAX; restart from this point rather than
            // carry an infinity forever.
            self.mean = value;
            self.var = 0.0;
        }
        self.seen += 1;
        score
    }

    fn name(&self) -> &'static str {
        "ewma"
    }

    fn state_bytes(&self) -> usize {
        std::mem::size_of_val(self)
    }
}
