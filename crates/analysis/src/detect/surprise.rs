//! The default detector, `surprise`: it asks not "how far is this point from the mean" but "is
//! the series behaving unlike it usually does". Raw deviations (of the level against a rolling
//! window, and of the step from the previous point against the usual step) are squashed into
//! [0, 1); their short moving average is compared with that average's own long-run distribution,
//! and the Gaussian tail probability of the comparison becomes the score (the "anomaly
//! likelihood" idea of Numenta's HTM detector, applied to cheaper raw signals). A series that
//! is always noisy thus stops alarming on its noise, and a quiet one alarms on a small change.
//! A value outside everything seen so far (by a margin) scores 1 at once. After an alarm,
//! scores are damped for a while: one event is one alarm, not a run of them.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{Detector, ExpectedRange, Rolling, Score, Severity, check, guarded_spread};

/// Parameters of [`Surprise`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SurpriseConfig {
    /// Points in the rolling window of values (level statistics).
    pub window: usize,
    /// Points seen before scoring starts.
    pub warmup: usize,
    /// Deviation (in window sigmas) that maps a raw signal to 0.5.
    pub raw_scale: f64,
    /// Weight of the newest raw signal in its short moving average.
    pub short_alpha: f64,
    /// Weight of the newest short average in its long-run mean and variance.
    pub long_alpha: f64,
    /// Margin, as a fraction of the range seen so far, beyond which a new extreme scores 1.
    pub range_tolerance: f64,
    /// Score (before the final mapping) at which an alarm is raised.
    pub alarm: f64,
    /// Points after an alarm during which scores are damped; an alarm-worthy point inside the
    /// quiet period starts it again, so a long event stays one alarm.
    pub quiet: u32,
    /// Factor applied to scores during the quiet period.
    pub damp: f64,
    /// Floor of the window's standard deviation relative to |mean|.
    pub min_relative_spread: f64,
    /// Bins the value range is cut into for the context signal (0 turns it off, at most 16).
    pub bins: usize,
    /// Raw signal given to a never-seen context (three consecutive bins).
    pub novelty: f64,
}

impl Default for SurpriseConfig {
    fn default() -> Self {
        SurpriseConfig {
            window: 48,
            warmup: 64,
            raw_scale: 3.0,
            short_alpha: 0.2,
            long_alpha: 0.0005,
            range_tolerance: 0.01,
            alarm: 0.5,
            quiet: 30,
            damp: 0.0,
            min_relative_spread: 1e-3,
            bins: 6,
            novelty: 1.0,
        }
    }
}

impl SurpriseConfig {
    pub(crate) fn problem(&self) -> Option<String> {
        check(
            (4..=96).contains(&self.window),
            "window must be between 4 and 96 (state stays under 1 KiB)",
        )
        .or_else(|| check(self.warmup >= 4, "warmup must be at least 4"))
        .or_else(|| check(self.raw_scale > 0.0, "raw_scale must be > 0"))
        .or_else(|| {
            check(
                self.short_alpha > 0.0 && self.short_alpha <= 1.0,
                "short_alpha must be in (0, 1]",
            )
        })
        .or_else(|| {
            check(
                self.long_alpha > 0.0 && self.long_alpha < 1.0,
                "long_alpha must be in (0, 1)",
            )
        })
        .or_else(|| check(self.range_tolerance >= 0.0, "range_tolerance must be >= 0"))
        .or_else(|| check(self.alarm > 0.0 && self.alarm < 1.0, "alarm must be in (0, 1)"))
        .or_else(|| check((0.0..=1.0).contains(&self.damp), "damp must be in [0, 1]"))
        .or_else(|| check(self.min_relative_spread >= 0.0, "min_relative_spread must be >= 0"))
        .or_else(|| check(self.bins <= 16, "bins must be at most 16"))
    }
}

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct Surprise {
    /// Shared by every series built from one configuration ([`DetectorKind::factory`]): a copy
    /// per series was ~100 bytes of state and cache lines of its own on every sample.
    config: Arc<SurpriseConfig>,
    window: Rolling,
    seen: u64,
    prev: f64,
    /// Exponentially weighted mean of |step| between consecutive points.
    step_mean: f64,
    short: f64,
    long_mean: f64,
    long_var: f64,
    /// Updates of the long-run statistics so far: until `1 / long_alpha` of them, each weighs
    /// `1 / n` (a plain mean), so they start from what the series did and not from zero.
    long_n: u64,
    min: f64,
    max: f64,
    quiet_left: u32,
    /// Grid of the context signal: its low edge and bin width, fixed when learning starts and
    /// redrawn (forgetting every context) only when the series leaves it by a wide margin.
    grid_low: f64,
    grid_width: f64,
    /// The last two bins, as the start of the next context.
    last_bins: [u8; 2],
    /// One bit per context seen (bins^3 bits).
    contexts: ContextBits,
}

/// The seen-context bits: inline up to 6 bins (216 bits, the default), where they share the
/// detector's cache lines; a separate allocation was a cache miss of its own on every sample
/// (a third of this detector's time at 100,000 series, by `perf`).
#[derive(Debug, Clone)]
enum ContextBits {
    Inline([u64; INLINE_WORDS]),
    Heap(Box<[u64]>),
}

const INLINE_WORDS: usize = 4;

impl ContextBits {
    fn new(bits: usize) -> Self {
        let words = bits.div_ceil(64);
        if words <= INLINE_WORDS {
            ContextBits::Inline([0; INLINE_WORDS])
        } else {
            ContextBits::Heap(vec![0; words].into_boxed_slice())
        }
    }

    fn words(&mut self) -> &mut [u64] {
        match self {
            ContextBits::Inline(w) => w,
            ContextBits::Heap(w) => w,
        }
    }

    fn heap_bytes(&self) -> usize {
        match self {
            ContextBits::Inline(_) => 0,
            ContextBits::Heap(w) => std::mem::size_of_val(&**w),
        }
    }
}

/// Lower bounds of the long-run statistics, as in HTM's anomaly likelihood: without them a
/// perfectly predictable stretch makes the first tiny wobble look infinitely unlikely.
const MIN_LONG_MEAN: f64 = 0.03;
const MIN_LONG_VAR: f64 = 0.0003;
/// The log-likelihood score saturates at this tail probability.
const MIN_TAIL: f64 = 1e-10;

impl Surprise {
    pub fn new(config: SurpriseConfig) -> Self {
        Surprise::shared(Arc::new(config))
    }

    /// A detector whose parameters are shared with others built from the same `config`.
    pub fn shared(mut config: Arc<SurpriseConfig>) -> Self {
        // `validate` rejects more than 16 bins; a detector built without it must still not
        // allocate bins^3 bits for an absurd value.
        if config.bins > 16 {
            Arc::make_mut(&mut config).bins = 16;
        }
        let window = Rolling::new(config.window, false);
        let contexts = ContextBits::new(config.bins.pow(3));
        Surprise {
            config,
            window,
            seen: 0,
            prev: 0.0,
            step_mean: 0.0,
            short: 0.0,
            long_mean: MIN_LONG_MEAN,
            long_var: MIN_LONG_VAR,
            long_n: 0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            quiet_left: 0,
            grid_low: 0.0,
            grid_width: 0.0,
            last_bins: [0; 2],
            contexts,
        }
    }

    /// Bins `value` and reports whether the context it closes was never seen before. The grid
    /// is drawn over the range seen so far; a value far outside it redraws the grid.
    fn novel_context(&mut self, value: f64) -> bool {
        let bins = self.config.bins;
        if bins == 0 {
            return false;
        }
        let range = self.max - self.min;
        let fresh = self.grid_width <= 0.0;
        let outside = value < self.grid_low - self.grid_width * bins as f64
            || value > self.grid_low + 2.0 * self.grid_width * bins as f64;
        if (fresh || outside) && range > 0.0 && range.is_finite() {
            self.grid_low = self.min;
            self.grid_width = range / bins as f64;
            self.contexts.words().fill(0);
        }
        if self.grid_width <= 0.0 {
            return false;
        }
        let b = ((value - self.grid_low) / self.grid_width)
            .floor()
            .clamp(0.0, (bins - 1) as f64) as usize;
        let key = (self.last_bins[0] as usize * bins + self.last_bins[1] as usize) * bins + b;
        let (word, bit) = (key / 64, key % 64);
        let words = self.contexts.words();
        let novel = words.get(word).is_some_and(|w| w & (1 << bit) == 0);
        if let Some(w) = words.get_mut(word) {
            *w |= 1 << bit;
        }
        self.last_bins = [self.last_bins[1], b as u8];
        novel
    }

    /// Folds the short average into the long-run mean and variance (exponentially weighted,
    /// with a plain mean's weights while fewer than `1 / long_alpha` updates were seen).
    fn update_long(&mut self) {
        self.long_n += 1;
        let alpha = self.config.long_alpha.max(1.0 / self.long_n as f64);
        let d = self.short - self.long_mean;
        self.long_mean += alpha * d;
        self.long_var = (1.0 - alpha) * (self.long_var + d * alpha * d);
    }

    fn raw(&self, value: f64) -> (f64, f64, f64) {
        let c = &self.config;
        let mean = self.window.mean();
        let sd = guarded_spread(self.window.std_dev(), mean, c.min_relative_spread);
        let level = (value - mean).abs() / sd;
        let step_spread = guarded_spread(self.step_mean * 1.2533, mean, c.min_relative_spread);
        let step = (value - self.prev).abs() / step_spread;
        let d = level.max(step);
        let raw = if d.is_nan() {
            0.0
        } else {
            1.0 - (-d / c.raw_scale).exp2()
        };
        (raw, mean, sd)
    }
}

impl Detector for Surprise {
    fn observe(&mut self, _ts_ms: i64, value: f64) -> Score {
        if !value.is_finite() {
            return Score::none("surprise");
        }
        let (warmup, window) = (self.config.warmup as u64, self.config.window as u64);
        let mut result = Score::none("surprise");
        if self.seen >= warmup / 2 && self.seen < warmup {
            // The second half of the warm-up primes the signal statistics without scoring: the
            // first scored points would otherwise be judged against long-run statistics that
            // had seen nothing, and every new series would raise an alarm as it left warm-up.
            let (raw, _, _) = self.raw(value);
            let raw = if self.novel_context(value) {
                raw.max(self.config.novelty)
            } else {
                raw
            };
            self.short += self.config.short_alpha * (raw - self.short);
            self.update_long();
        }
        if self.seen >= warmup {
            let (raw, mean, sd) = self.raw(value);
            let novel = self.novel_context(value);
            let c = &self.config;
            let raw = if novel { raw.max(c.novelty) } else { raw };
            self.short += c.short_alpha * (raw - self.short);
            let lm = self.long_mean.max(MIN_LONG_MEAN);
            let lsd = self.long_var.max(MIN_LONG_VAR).sqrt();
            let z = (self.short - lm) / lsd;
            // Behaving as usual or calmer than usual is no surprise at all (the log-likelihood
            // would still give a small positive score to a series at rest).
            let mut s = if z > 0.0 {
                (gaussian_tail(z) + MIN_TAIL).ln() / MIN_TAIL.ln()
            } else {
                0.0
            };
            let range = self.max - self.min;
            let margin = c.range_tolerance * range;
            if value > self.max + margin || value < self.min - margin {
                s = 1.0;
            }
            self.update_long();
            let c = &self.config;
            if self.quiet_left > 0 {
                self.quiet_left -= 1;
                if s >= c.alarm {
                    self.quiet_left = c.quiet;
                }
                s *= c.damp;
            } else if s >= c.alarm {
                self.quiet_left = c.quiet;
            }
            let s = if s.is_finite() { s.clamp(0.0, 1.0) } else { 0.0 };
            let half = 3.0 * sd;
            result = Score {
                score: s,
                severity: if s >= 0.8 {
                    Severity::High
                } else if s >= c.alarm {
                    Severity::Low
                } else {
                    Severity::Normal
                },
                expected: (mean.is_finite() && half.is_finite()).then_some(ExpectedRange {
                    low: mean - half,
                    high: mean + half,
                }),
                detector: "surprise",
            };
        }
        if self.seen > 0 {
            let step = (value - self.prev).abs();
            if step.is_finite() {
                self.step_mean += (step - self.step_mean) / self.seen.min(window) as f64;
            }
        }
        if self.seen >= warmup / 2 {
            self.min = self.min.min(value);
            self.max = self.max.max(value);
        }
        self.prev = value;
        self.window.push(value);
        self.seen += 1;
        result
    }

    fn name(&self) -> &'static str {
        "surprise"
    }

    fn state_bytes(&self) -> usize {
        std::mem::size_of_val(self) + self.window.heap_bytes() + self.contexts.heap_bytes()
    }
}

/// Upper tail of the standard normal, P(Z > z), through erfc (Numerical Recipes' Chebyshev fit,
/// relative error under 1.2e-7, which is far below what the score can resolve).
pub(crate) fn gaussian_tail(z: f64) -> f64 {
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98 + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaussian_tail_matches_known_values() {
        assert!((gaussian_tail(0.0) - 0.5).abs() < 1e-7);
        assert!((gaussian_tail(1.0) - 0.158_655_25).abs() < 1e-7);
        assert!((gaussian_tail(3.0) - 0.001_349_898).abs() < 1e-8);
        assert!((gaussian_tail(-2.0) - 0.977_249_87).abs() < 1e-7);
        assert_eq!(gaussian_tail(f64::INFINITY), 0.0);
    }
}
