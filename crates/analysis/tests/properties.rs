//! Properties of the detectors that must hold for any input: the rolling statistics agree with a
//! brute-force computation over the same window, warm-up and constant series score 0, and every
//! score is a finite number in [0, 1] whatever the values (huge, tiny, non-finite, mixed).

use proptest::prelude::*;
use pulsewire_analysis::detect::Rolling;
use pulsewire_analysis::{Detector, DetectorKind};

fn brute_mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

fn brute_std(v: &[f64]) -> f64 {
    if v.len() < 2 {
        return 0.0;
    }
    let m = brute_mean(v);
    (v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (v.len() - 1) as f64).sqrt()
}

fn brute_median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        s[n / 2 - 1] / 2.0 + s[n / 2] / 2.0
    }
}

fn brute_mad(v: &[f64]) -> f64 {
    let m = brute_median(v);
    let d: Vec<f64> = v.iter().map(|x| (x - m).abs()).collect();
    brute_median(&d)
}

fn close(a: f64, b: f64, scale: f64) -> bool {
    (a - b).abs() <= 1e-9 * scale.max(1.0)
}

fn all_kinds() -> Vec<DetectorKind> {
    DetectorKind::NAMES.iter().map(|n| n.parse().unwrap()).collect()
}

proptest! {
    #[test]
    fn rolling_statistics_match_brute_force(
        cap in 2usize..40,
        values in prop::collection::vec(prop_oneof![-1e3f64..1e3, (-5i32..5).prop_map(f64::from)], 1..300),
    ) {
        let mut w = Rolling::new(cap, true);
        for (i, &x) in values.iter().enumerate() {
            w.push(x);
            let start = (i + 1).saturating_sub(cap);
            let window = &values[start..=i];
            let scale = window.iter().fold(0.0f64, |a, x| a.max(x.abs()));
            prop_assert_eq!(w.len(), window.len());
            prop_assert!(close(w.mean(), brute_mean(window), scale), "mean {} vs {}", w.mean(), brute_mean(window));
            // Compared as variances: the running sums carry rounding of order 1e-16 x scale^2,
            // which the square root turns into ~3e-8 x scale on a window that is constant.
            prop_assert!(
                close(w.std_dev().powi(2), brute_std(window).powi(2), scale * scale),
                "std {} vs {}",
                w.std_dev(),
                brute_std(window)
            );
            prop_assert_eq!(w.median(), brute_median(window));
            prop_assert_eq!(w.mad(), brute_mad(window));
            prop_assert_eq!(w.recent(0), Some(x));
        }
    }

    #[test]
    fn scores_are_finite_and_in_unit_range_for_any_input(
        values in prop::collection::vec(
            prop_oneof![
                4 => -1e6f64..1e6,
                1 => prop::num::f64::ANY,
                1 => Just(f64::MAX),
                1 => Just(-f64::MAX),
                1 => Just(1e300),
                1 => Just(5e-324),
                1 => Just(0.0),
            ],
            0..400,
        ),
    ) {
        for kind in all_kinds() {
            let mut d = kind.build();
            for (i, &x) in values.iter().enumerate() {
                let s = d.observe(i as i64 * 1000, x);
                prop_assert!(s.score.is_finite() && (0.0..=1.0).contains(&s.score), "{kind}: {x} -> {s:?}");
                if let Some(r) = s.expected {
                    prop_assert!(!r.low.is_nan() && !r.high.is_nan(), "{kind}: {r:?}");
                }
            }
        }
    }

    #[test]
    fn constant_series_score_zero(c in prop_oneof![-1e9f64..1e9, Just(0.0), Just(1e300)], n in 1usize..500) {
        for kind in all_kinds() {
            let mut d = kind.build();
            for i in 0..n {
                let s = d.observe(i as i64, c);
                prop_assert_eq!(s.score, 0.0, "{} at point {} of constant {}", kind, i, c);
                prop_assert!(!s.is_anomaly());
            }
        }
    }
}

#[test]
fn warm_up_scores_zero_even_for_wild_values() {
    for kind in all_kinds() {
        let warmup = match &kind {
            DetectorKind::Zscore(c) => c.warmup,
            DetectorKind::Mad(c) => c.warmup,
            DetectorKind::Ewma(c) => c.warmup,
            DetectorKind::Surprise(c) => c.warmup,
        };
        let mut d = kind.build();
        for i in 0..warmup {
            let x = if i % 2 == 0 { 1e9 } else { -1e9 * i as f64 };
            let s = d.observe(i as i64, x);
            assert_eq!(s.score, 0.0, "{kind} at {i}");
            assert!(s.expected.is_none(), "{kind} at {i}");
        }
    }
}

#[test]
fn a_spike_after_noise_is_an_anomaly_and_high_for_the_z_score() {
    for kind in all_kinds() {
        let mut d = kind.build();
        for i in 0..300 {
            let noise = ((i * 7919) % 11) as f64 / 11.0 - 0.5;
            d.observe(i, 10.0 + noise);
        }
        let s = d.observe(300, 30.0);
        assert!(s.score >= 0.5 && s.is_anomaly(), "{kind}: {s:?}");
        assert_eq!(s.detector, kind.name());
        let r = s.expected.expect("expected range after warm-up");
        assert!(r.low < 10.0 && 10.0 < r.high && r.high < 30.0, "{kind}: {r:?}");
    }
    // 2.5 sigma is an anomaly of low severity, 3.5 sigma a high one.
    let mut z: pulsewire_analysis::AnyDetector = "zscore".parse::<DetectorKind>().unwrap().build();
    for i in 0..64 {
        z.observe(i, if i % 2 == 0 { 1.0 } else { -1.0 });
    }
    // The window holds 32 of each: mean 0, sample std sqrt(64/63).
    let sd = (64.0f64 / 63.0).sqrt();
    let mut probe = z.clone();
    let s = probe.observe(64, 3.0 * sd);
    assert_eq!(s.severity, pulsewire_analysis::Severity::Low, "{s:?}");
    let mut probe = z.clone();
    let s = probe.observe(64, 2.0 * sd);
    assert_eq!(s.severity, pulsewire_analysis::Severity::Normal, "{s:?}");
    let s = z.observe(64, 4.0 * sd);
    assert_eq!(s.severity, pulsewire_analysis::Severity::High, "{s:?}");
}

#[test]
fn state_stays_small_and_fixed() {
    for kind in all_kinds() {
        let mut d = kind.build();
        let before = d.state_bytes();
        for i in 0..10_000 {
            d.observe(i, (i as f64 * 0.1).sin());
        }
        assert_eq!(d.state_bytes(), before, "{kind}: state grew");
        if kind == DetectorKind::default() {
            assert!(before <= 1024, "default detector holds {before} bytes per series");
        }
    }
}
