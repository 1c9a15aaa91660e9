//! Streaming anomaly detectors: what a detector is ([`Detector`]: one point in, one [`Score`]
//! out, no look-ahead), the configuration that picks one by name ([`DetectorKind`], which the
//! server's configuration deserializes), and the mapping every detector shares from its own
//! measure of surprise to a score in [0, 1] and a [`Severity`].
//!
//! Every detector keeps fixed-size state per series (rings allocated once at construction),
//! scores 0 during its warm-up, and guards against series that are constant over its window
//! (the spread it divides by has a floor), so that nothing it sees, however large, makes a score
//! leave [0, 1] or become NaN. The convention for scores is the same everywhere: 0.5 is the
//! detector's own threshold (the point where it calls an anomaly), higher is more surprising,
//! and the mapping is strictly increasing so a benchmark can sweep a threshold over it.

mod ewma;
mod mad;
mod surprise;
mod window;
mod zscore;

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use ewma::{Ewma, EwmaConfig};
pub use mad::{Mad, MadConfig};
pub use surprise::{Surprise, SurpriseConfig};
pub use window::Rolling;
pub use zscore::{ZScore, ZScoreConfig};

/// How bad an anomaly is, in the detector's own units (sigmas for the z-score).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Below the detector's threshold: not an anomaly.
    Normal,
    /// At or above the threshold.
    Low,
    /// At or above the detector's high mark.
    High,
}

/// The band of values the detector considered normal just before this point.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ExpectedRange {
    pub low: f64,
    pub high: f64,
}

/// A detector's verdict on one point.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Score {
    /// Anomaly score in [0, 1]; 0.5 is the detector's threshold.
    pub score: f64,
    pub severity: Severity,
    /// What the detector expected; `None` during warm-up or for a non-finite input.
    pub expected: Option<ExpectedRange>,
    /// The detector's name as in [`DetectorKind`] (`zscore`, `mad`, `ewma`, `surprise`).
    pub detector: &'static str,
}

impl Score {
    /// The score of a point the detector cannot judge (warm-up, non-finite value).
    pub fn none(detector: &'static str) -> Self {
        Score {
            score: 0.0,
            severity: Severity::Normal,
            expected: None,
            detector,
        }
    }

    pub fn is_anomaly(&self) -> bool {
        self.severity != Severity::Normal
    }
}

/// A streaming detector for one series. `observe` sees each point once, in order, and judges it
/// against the points before it only.
pub trait Detector: Send {
    fn observe(&mut self, ts_ms: i64, value: f64) -> Score;

    /// The name it is configured by.
    fn name(&self) -> &'static str;

    /// Memory this detector holds for its series: its struct plus what it owns on the heap.
    fn state_bytes(&self) -> usize;
}

/// Which detector to run, with its parameters; `FromStr` takes a bare name (defaults), serde
/// takes `{ kind = "zscore", window = 120 }` and fills the rest with defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum DetectorKind {
    /// Rolling mean and standard deviation.
    Zscore(ZScoreConfig),
    /// Rolling median and median absolute deviation.
    Mad(MadConfig),
    /// Exponentially weighted mean and variance.
    Ewma(EwmaConfig),
    /// The default: several cheap signals turned into surprise relative to the series' own
    /// history, with repeated alarms damped.
    Surprise(SurpriseConfig),
}

impl Default for DetectorKind {
    fn default() -> Self {
        DetectorKind::Surprise(SurpriseConfig::default())
    }
}

/// A configuration that cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("unknown detector {0:?} (expected one of: zscore, mad, ewma, surprise)")]
    UnknownDetector(String),
    #[error("{detector}: {problem}")]
    Invalid { detector: &'static str, problem: String },
}

impl DetectorKind {
    /// Every detector name, default first.
    pub const NAMES: [&'static str; 4] = ["surprise", "zscore", "mad", "ewma"];

    pub fn name(&self) -> &'static str {
        match self {
            DetectorKind::Zscore(_) => "zscore",
            DetectorKind::Mad(_) => "mad",
            DetectorKind::Ewma(_) => "ewma",
            DetectorKind::Surprise(_) => "surprise",
        }
    }

    /// Checks the parameters; [`DetectorKind::build`] assumes they passed.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let problem = match self {
            DetectorKind::Zscore(c) => c.problem(),
            DetectorKind::Mad(c) => c.problem(),
            DetectorKind::Ewma(c) => c.problem(),
            DetectorKind::Surprise(c) => c.problem(),
        };
        match problem {
            None => Ok(()),
            Some(problem) => Err(ConfigError::Invalid {
                detector: self.name(),
                problem,
            }),
        }
    }

    /// A fresh detector for one series.
    pub fn build(&self) -> AnyDetector {
        match self {
            DetectorKind::Zscore(c) => AnyDetector::Zscore(ZScore::new(c.clone())),
            DetectorKind::Mad(c) => AnyDetector::Mad(Mad::new(c.clone())),
            DetectorKind::Ewma(c) => AnyDetector::Ewma(Ewma::new(c.clone())),
            DetectorKind::Surprise(c) => AnyDetector::Surprise(Surprise::new(c.clone())),
        }
    }
}

/// Builds the detectors of many series from one [`DetectorKind`], sharing its parameters
/// between them where the detector supports it (the default, `surprise`).
#[derive(Debug, Clone)]
pub struct DetectorFactory(Factory);

#[derive(Debug, Clone)]
enum Factory {
    Surprise(Arc<SurpriseConfig>),
    Other(DetectorKind),
}

impl DetectorKind {
    /// A factory for detectors of this kind (what [`DetectorKind::build`] makes, once per series).
    pub fn factory(&self) -> DetectorFactory {
        DetectorFactory(match self {
            DetectorKind::Surprise(c) => {
                // Clamped here as `Surprise::shared` would, so the detectors share this one copy.
                let mut c = c.clone();
                c.bins = c.bins.min(16);
                Factory::Surprise(Arc::new(c))
            }
            other => Factory::Other(other.clone()),
        })
    }
}

impl DetectorFactory {
    pub fn build(&self) -> AnyDetector {
        match &self.0 {
            Factory::Surprise(c) => AnyDetector::Surprise(Surprise::shared(Arc::clone(c))),
            Factory::Other(kind) => kind.build(),
        }
    }
}

impl FromStr for DetectorKind {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "zscore" | "z-score" => Ok(DetectorKind::Zscore(ZScoreConfig::default())),
            "mad" => Ok(DetectorKind::Mad(MadConfig::default())),
            "ewma" => Ok(DetectorKind::Ewma(EwmaConfig::default())),
            "surprise" | "default" => Ok(DetectorKind::Surprise(SurpriseConfig::default())),
            _ => Err(ConfigError::UnknownDetector(s.to_owned())),
        }
    }
}

impl fmt::Display for DetectorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Any detector, by value: the server keeps one per series without a box or virtual call.
#[derive(Debug, Clone)]
pub enum AnyDetector {
    Zscore(ZScore),
    Mad(Mad),
    Ewma(Ewma),
    Surprise(Surprise),
}

impl Detector for AnyDetector {
    fn observe(&mut self, ts_ms: i64, value: f64) -> Score {
        match self {
            AnyDetector::Zscore(d) => d.observe(ts_ms, value),
            AnyDetector::Mad(d) => d.observe(ts_ms, value),
            AnyDetector::Ewma(d) => d.observe(ts_ms, value),
            AnyDetector::Surprise(d) => d.observe(ts_ms, value),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            AnyDetector::Zscore(d) => d.name(),
            AnyDetector::Mad(d) => d.name(),
            AnyDetector::Ewma(d) => d.name(),
            AnyDetector::Surprise(d) => d.name(),
        }
    }

    fn state_bytes(&self) -> usize {
        // The enum's own size already includes the variant's struct; add only the heap.
        let inner = match self {
            AnyDetector::Zscore(d) => d.state_bytes() - std::mem::size_of_val(d),
            AnyDetector::Mad(d) => d.state_bytes() - std::mem::size_of_val(d),
            AnyDetector::Ewma(d) => d.state_bytes() - std::mem::size_of_val(d),
            AnyDetector::Surprise(d) => d.state_bytes() - std::mem::size_of_val(d),
        };
        std::mem::size_of::<AnyDetector>() + inner
    }
}

/// Maps a deviation measured in units of the detector's threshold (1.0 = at the threshold) to a
/// score: x / (1 + x), so the threshold lands on 0.5, twice the threshold on 2/3, and the score
/// keeps rising for larger deviations instead of saturating (a benchmark sweeping a threshold
/// must still tell 50 sigmas from 500). NaN and negatives give 0, infinity gives 1.
pub(crate) fn ratio_score(x: f64) -> f64 {
    if x.is_nan() || x <= 0.0 {
        return 0.0;
    }
    if x.is_infinite() {
        return 1.0;
    }
    (x / (1.0 + x)).clamp(0.0, 1.0)
}

/// Severity of a deviation `d` in the detector's units.
pub(crate) fn severity(d: f64, threshold: f64, high: f64) -> Severity {
    if d >= high {
        Severity::High
    } else if d >= threshold {
        Severity::Low
    } else {
        Severity::Normal
    }
}

/// The spread a detector divides by, never 0: on a constant window the sample spread is 0 (or
/// rounding noise), and without a floor any later change, however small, would be infinitely
/// surprising while the constant value itself would be 0/0. The floor is relative to the
/// series' level, with an absolute minimum for series sitting at 0.
pub(crate) fn guarded_spread(spread: f64, center: f64, min_relative: f64) -> f64 {
    let floor = (center.abs() * min_relative).max(f64::MIN_POSITIVE * 1e6);
    if spread.is_finite() && spread > floor {
        spread
    } else {
        floor
    }
}

/// Builds a finished score from a deviation `d` (in the detector's units, e.g. sigmas).
pub(crate) fn score_from_deviation(
    detector: &'static str,
    d: f64,
    threshold: f64,
    high: f64,
    center: f64,
    spread: f64,
) -> Score {
    let d = if d.is_nan() { 0.0 } else { d };
    let half = threshold * spread;
    let expected = if center.is_finite() && half.is_finite() {
        Some(ExpectedRange {
            low: center - half,
            high: center + half,
        })
    } else {
        None
    };
    Score {
        score: ratio_score(d / threshold),
        severity: severity(d, threshold, high),
        expected,
        detector,
    }
}

pub(crate) fn check(ok: bool, problem: &str) -> Option<String> {
    if ok { None } else { Some(problem.to_owned()) }
}

/// The checks of a detector with a rolling window of `window` points scored after `warmup`:
/// the window within `min..=max`, the warm-up at least `min` and at most the window.
pub(crate) fn window_problem(window: usize, warmup: usize, min: usize, max: usize) -> Option<String> {
    check(
        (min..=max).contains(&window),
        &format!("window must be between {min} and {max}"),
    )
    .or_else(|| {
        check(
            warmup >= min && warmup <= window,
            &format!("warmup must be in {min}..=window"),
        )
    })
}

/// The checks every threshold-and-spread detector shares: a positive threshold, a high mark at
/// or above it, and a non-negative constant-series guard.
pub(crate) fn band_problem(threshold: f64, high: f64, min_relative_spread: f64) -> Option<String> {
    check(threshold > 0.0 && high >= threshold, "need 0 < threshold <= high")
        .or_else(|| check(min_relative_spread >= 0.0, "min_relative_spread must be >= 0"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_to_defaults_and_back() {
        for name in DetectorKind::NAMES {
            let kind: DetectorKind = name.parse().unwrap();
            assert_eq!(kind.name(), name);
            assert!(kind.validate().is_ok());
            assert_eq!(kind.build().name(), name);
        }
        assert!("nope".parse::<DetectorKind>().is_err());
    }

    #[test]
    fn config_deserializes_with_defaults_for_missing_fields() {
        let kind: DetectorKind = serde_json::from_str(r#"{"kind":"zscore","window":30}"#).unwrap();
        let DetectorKind::Zscore(c) = &kind else {
            panic!("{kind:?}")
        };
        assert_eq!(c.window, 30);
        assert_eq!(c.threshold, ZScoreConfig::default().threshold);
        let kind: DetectorKind = serde_json::from_str(r#"{"kind":"surprise"}"#).unwrap();
        assert_eq!(kind, DetectorKind::default());
        assert!(serde_json::from_str::<DetectorKind>(r#"{"kind":"zscore","windw":30}"#).is_err());
        let bad: DetectorKind = serde_json::from_str(r#"{"kind":"mad","window":1}"#).unwrap();
        assert!(bad.validate().is_err());
    }

    #[test]
    fn ratio_score_is_monotone_and_bounded() {
        assert_eq!(ratio_score(0.0), 0.0);
        assert_eq!(ratio_score(f64::NAN), 0.0);
        assert_eq!(ratio_score(1.0), 0.5);
        assert_eq!(ratio_score(3.0), 0.75);
        assert_eq!(ratio_score(f64::INFINITY), 1.0);
        assert!(ratio_score(3.0) < ratio_score(3.1));
        assert!(ratio_score(1e6) < ratio_score(1e7));
    }
}
