//! The rolling z-score detector: how many standard deviations a point sits from the mean of the
//! window before it. The classic baseline (NAB's windowedGaussian is this idea): cheap and easy
//! to explain, but one outlier inflates the deviation for a whole window and it has no notion of
//! a series' usual noise beyond that window.

use serde::{Deserialize, Serialize};

use super::{Detector, Rolling, Score, band_problem, guarded_spread, score_from_deviation, window_problem};

/// Parameters of [`ZScore`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ZScoreConfig {
    /// Points in the rolling window.
    pub window: usize,
    /// Points seen before scoring starts (at least 2, at most `window`).
    pub warmup: usize,
    /// Sigmas at which a point is an anomaly (score 0.5).
    pub threshold: f64,
    /// Sigmas at which the anomaly is of high severity.
    pub high: f64,
    /// Floor of the standard deviation relative to |mean|: the constant-series guard.
    pub min_relative_spread: f64,
}

impl Default for ZScoreConfig {
    fn default() -> Self {
        ZScoreConfig {
            window: 64,
            warmup: 64,
            threshold: 2.5,
            high: 3.5,
            min_relative_spread: 1e-3,
        }
    }
}

impl ZScoreConfig {
    pub(crate) fn problem(&self) -> Option<String> {
        window_problem(self.window, self.warmup, 2, 4096)
            .or_else(|| band_problem(self.threshold, self.high, self.min_relative_spread))
    }
}

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct ZScore {
    config: ZScoreConfig,
    window: Rolling,
}

impl ZScore {
    pub fn new(config: ZScoreConfig) -> Self {
        let window = Rolling::new(config.window, false);
        ZScore { config, window }
    }
}

impl Detector for ZScore {
    fn observe(&mut self, _ts_ms: i64, value: f64) -> Score {
        if !value.is_finite() {
            return Score::none(self.name());
        }
        let score = if self.window.len() < self.config.warmup {
            Score::none(self.name())
        } else {
            let c = &self.config;
            let mean = self.window.mean();
            let sd = guarded_spread(self.window.std_dev(), mean, c.min_relative_spread);
            let z = (value - mean).abs() / sd;
            score_from_deviation(self.name(), z, c.threshold, c.high, mean, sd)
        };
        self.window.push(value);
        score
    }

    fn name(&self) -> &'static str {
        "zscore"
    }

    fn state_bytes(&self) -> usize {
        std::mem::size_of_val(self) + self.window.heap_bytes()
    }
}
