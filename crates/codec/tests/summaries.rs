//! Property tests of the mergeable summaries: sketch quantiles stay within the relative
//! accuracy of the exact quantile, merging sketches or summaries of the parts of a sequence
//! equals summarising the whole, and both round-trip through their encodings (and reject damaged
//! bytes without panicking).

use proptest::prelude::*;
use pulsewire_codec::{Error, Sketch, Summary};

fn magnitude() -> impl Strategy<Value = f64> {
    prop_oneof![1e-9f64..1e-3, 1e-3f64..1e3, 1e3f64..1e12]
}

fn value() -> impl Strategy<Value = f64> {
    prop_oneof![
        8 => magnitude(),
        4 => magnitude().prop_map(|v| -v),
        1 => Just(0.0),
        1 => Just(-0.0),
    ]
}

fn sketch_of(values: &[f64], alpha: f64, bins: usize) -> Sketch {
    let mut s = Sketch::with_limits(alpha, bins);
    values.iter().for_each(|&v| s.add(v));
    s
}

/// A counter: integer increments with occasional resets, on increasing timestamps.
fn counter() -> impl Strategy<Value = Vec<(i64, f64)>> {
    prop::collection::vec((1i64..20_000, 0u32..2_000, prop::bool::weighted(0.05)), 1..200).prop_map(|steps| {
        let (mut ts, mut v) = (-50_000i64, 100.0f64);
        steps
            .into_iter()
            .map(|(dt, inc, reset)| {
                ts += dt;
                v = if reset { f64::from(inc % 10) } else { v + f64::from(inc) };
                (ts, v)
            })
            .collect()
    })
}

fn summary_of(points: &[(i64, f64)]) -> Summary {
    let mut s = Summary::new();
    points.iter().for_each(|&(t, v)| s.add(t, v));
    s
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

fn assert_same(merged: &Summary, whole: &Summary) {
    assert_eq!(merged.count, whole.count);
    assert_eq!(merged.sum, whole.sum);
    assert_eq!(merged.min, whole.min);
    assert_eq!(merged.max, whole.max);
    assert_eq!(merged.first, whole.first);
    assert_eq!(merged.last, whole.last);
    assert_eq!(merged.increase, whole.increase);
    assert!(close(merged.mean, whole.mean), "mean {} vs {}", merged.mean, whole.mean);
    assert!(
        (merged.m2 - whole.m2).abs() <= 1e-9 * whole.m2.abs().max(1.0) * (whole.count as f64),
        "m2 {} vs {}",
        merged.m2,
        whole.m2
    );
    assert_eq!(merged.sketch, whole.sketch);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn quantiles_within_relative_accuracy(values in prop::collection::vec(value(), 1..400), alpha in prop::sample::select(vec![0.001, 0.01, 0.05])) {
        // Enough bins for the 1e21 range of the inputs at every accuracy, so nothing collapses.
        let s = sketch_of(&values, alpha, 65536);
        let mut sorted = values.clone();
        sorted.sort_by(f64::total_cmp);
        prop_assert_eq!(s.count(), values.len() as u64);
        for q in [0.0, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0] {
            let exact = sorted[(q * (sorted.len() - 1) as f64).floor() as usize];
            let got = s.quantile(q).unwrap();
            prop_assert!((got - exact).abs() <= alpha * exact.abs() * (1.0 + 1e-9), "q {} got {} exact {}", q, got, exact);
        }
    }

    #[test]
    fn sketch_merge_equals_sketch_of_concatenation(
        a in prop::collection::vec(value(), 0..200),
        b in prop::collection::vec(value(), 0..200),
        bins in prop::sample::select(vec![8usize, 64, 2048]),
    ) {
        // Small bin bounds force collapsing, which must not break merge-consistency.
        let mut merged = sketch_of(&a, 0.01, bins);
        merged.merge(&sketch_of(&b, 0.01, bins)).unwrap();
        let whole: Vec<f64> = a.iter().chain(&b).copied().collect();
        prop_assert_eq!(&merged, &sketch_of(&whole, 0.01, bins));
        let mut other_way = sketch_of(&b, 0.01, bins);
        other_way.merge(&sketch_of(&a, 0.01, bins)).unwrap();
        prop_assert_eq!(&other_way, &merged);
    }

    #[test]
    fn sketch_encoding_round_trips(values in prop::collection::vec(value(), 0..300), bins in prop::sample::select(vec![16usize, 2048])) {
        let s = sketch_of(&values, 0.02, bins);
        let mut out = vec![];
        s.encode(&mut out);
        out.extend_from_slice(b"tail");
        let (d, used) = Sketch::decode(&out).unwrap();
        prop_assert_eq!(used, out.len() - 4);
        prop_assert_eq!(&d, &s);
        for cut in 0..used {
            prop_assert!(Sketch::decode(&out[..cut]).is_err());
        }
    }

    #[test]
    fn sketch_decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..80)) {
        let mut input = 0.01f64.to_le_bytes().to_vec();
        input.extend(bytes);
        let _ = Sketch::decode(&input);
    }

    #[test]
    fn summary_of_split_merges_to_summary_of_whole(points in counter(), cuts in prop::collection::vec(any::<prop::sample::Index>(), 1..4), reverse in any::<bool>()) {
        let whole = summary_of(&points);
        let mut at: Vec<usize> = cuts.iter().map(|c| c.index(points.len() + 1)).collect();
        at.extend([0, points.len()]);
        at.sort_unstable();
        let mut parts: Vec<Summary> = at.windows(2).map(|w| summary_of(&points[w[0]..w[1]])).collect();
        if reverse {
            parts.reverse();
        }
        // Fold left-to-right: when reversed, each merge sees the earlier bucket as `other`.
        let mut merged = Summary::new();
        for p in &parts {
            merged.merge(p);
        }
        assert_same(&merged, &whole);
    }

    #[test]
    fn summary_encoding_round_trips(points in counter()) {
        let s = summary_of(&points);
        let mut out = vec![];
        s.encode(&mut out);
        let (d, used) = Summary::decode(&out).unwrap();
        prop_assert_eq!(used, out.len());
        assert_same(&d, &s);
        prop_assert_eq!(d.m2.to_bits(), s.m2.to_bits());
        prop_assert_eq!(d.mean.to_bits(), s.mean.to_bits());
        for cut in 0..used {
            prop_assert!(Summary::decode(&out[..cut]).is_err());
        }
    }

    #[test]
    fn summary_decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..120)) {
        let _ = Summary::decode(&bytes);
    }
}

#[test]
fn sketch_basics() {
    let mut s = Sketch::new();
    assert_eq!(s.quantile(0.5), None);
    s.add(f64::NAN);
    assert_eq!(s.count(), 0);
    for v in 1..=100 {
        s.add(f64::from(v));
    }
    assert_eq!(s.quantile(1.5), None);
    assert_eq!(s.quantile(-0.1), None);
    let median = s.quantile(0.5).unwrap();
    assert!((median - 50.0).abs() <= 0.5, "{median}");
    s.add(f64::INFINITY);
    assert!(s.quantile(1.0).unwrap() > 1e300);
    assert!(s.heap_bytes() > 0);
    let other = Sketch::with_accuracy(0.02);
    assert_eq!(s.merge(&other), Err(Error::AccuracyMismatch(0.01, 0.02)));
}

#[test]
fn summary_statistics() {
    let mut s = Summary::new();
    assert_eq!(s.avg(), None);
    assert_eq!(s.variance(), None);
    for (t, v) in [(3, 4.0), (1, 2.0), (2, f64::NAN), (4, 6.0)] {
        s.add(t, v);
    }
    assert_eq!(s.count, 3);
    assert_eq!(s.first, (1, 2.0));
    assert_eq!(s.last, (4, 6.0));
    assert_eq!(s.avg(), Some(4.0));
    assert!((s.variance().unwrap() - 8.0 / 3.0).abs() < 1e-12);
    assert!((s.stddev().unwrap() - (8.0f64 / 3.0).sqrt()).abs() < 1e-12);
    // The out-of-order point (ts 1) contributed to everything but the increase.
    assert_eq!(s.increase, 2.0);
    let mut empty = Summary::new();
    empty.merge(&s);
    assert_eq!(empty.count, 3);
    s.merge(&Summary::new());
    assert_eq!(s.count, 3);
}

#[test]
fn counter_reset_counts_as_restart() {
    let mut s = Summary::new();
    for (t, v) in [(1, 10.0), (2, 15.0), (3, 3.0), (4, 5.0)] {
        s.add(t, v);
    }
    assert_eq!(s.increase, 5.0 + 3.0 + 2.0);
}

#[test]
fn summary_merges_across_accuracies() {
    let mut a = Summary::new();
    a.add(1, 10.0);
    let mut b = Summary::new();
    b.sketch = Sketch::with_accuracy(0.05);
    b.add(2, 20.0);
    b.count = 1;
    a.merge(&b);
    assert_eq!(a.sketch.count(), 2);
    let q = a.sketch.quantile(1.0).unwrap();
    assert!((q - 20.0).abs() <= 20.0 * 0.07, "{q}");
}
