//! The robust detector: distance from the rolling median in units of the median absolute
//! deviation (scaled by 1.4826 so it estimates a standard deviation under Gaussian noise). One
//! outlier moves neither the median nor the MAD, so a burst of anomalies does not hide the ones
//! after it the way it does for the z-score.

use serde::{Deserialize, Serialize};

use super::{Detector, Rolling, Score, band_problem, guarded_spread, score_from_deviation, window_problem};

/// MAD of a Gaussian times this is its standard deviation.
const MAD_TO_SIGMA: f64 = 1.4826;
/// Mean absolute deviation of a Gaussian times this is its standard deviation.
const MEAN_AD_TO_SIGMA: f64 = 1.2533;

/// Parameters of [`Mad`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MadConfig {
    /// Points in the rolling window.
    pub window: usize,
    /// Points seen before scoring starts (at least 3, at most `window`).
    pub warmup: usize,
    /// Robust sigmas at which a point is an anomaly (score 0.5).
    pub threshold: f64,
    /// Robust sigmas at which the anomaly is of high severity.
    pub high: f64,
    /// Floor of the spread relative to |median|: the constant-series guard.
    pub min_relative_spread: f64,
}

impl Default for MadConfig {
    fn default() -> Self {
        MadConfig {
            window: 64,
            warmup: 64,
            threshold: 3.5,
            high: 5.0,
            min_relative_spread: 1e-3,
        }
    }
}

impl MadConfig {
    pub(crate) fn problem(&self) -> Option<String> {
        window_problem(self.window, self.warmup, 3, 1024)
            .or_else(|| band_problem(self.threshold, self.high, self.min_relative_spread))
    }
}

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct Mad {
    config: MadConfig,
    window: Rolling,
}

impl Mad {
    pub fn new(config: MadConfig) -> Self {
        let window = Rolling::new(config.window, true);
        Mad { config, window }
    }
}

impl Detector for Mad {
    fn observe(&mut self, _ts_ms: i64, value: f64) -> Score {
        if !value.is_finite() {
            return Score::none(self.name());
        }
        let score = if self.window.len() < self.config.warmup {
            Score::none(self.name())
        } else {
            let c = &self.config;
            let median = self.window.median();
            let mut spread = MAD_TO_SIGMA * self.window.mad();
            if spread.is_nan() || spread <= 0.0 {
                // More than half the window on one value (counters that are mostly 0): the
                // mean absolute deviation still sees the rest.
                spread = MEAN_AD_TO_SIGMA * self.window.mean_abs_dev_from(median);
            }
            let spread = guarded_spread(spread, median, c.min_relative_spread);
            let d = (value - median).abs() / spread;
            score_from_deviation(self.name(), d, c.threshold, c.high, median, spread)
        };
        self.window.push(value);
        score
    }

    fn name(&self) -> &'static str {
        "mad"
    }

    fn state_bytes(&self) -> usize {
        std::mem::size_of_val(self) + self.window.heap_bytes()
    }
}
