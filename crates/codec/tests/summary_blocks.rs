//! Property tests of the columnar summaries codec: runs of buckets built from counters, decimal
//! gauges, noisy and extreme floats (by adding points and by merging finer buckets, with empty
//! buckets, other sketch accuracies and lossy merges mixed in) come back with every field bit
//! for bit except `m2`, which comes back within 1e-10 relative, and with identical sketches;
//! every truncation of a block is an error and no damaged block panics.

use proptest::prelude::*;
use pulsewire_codec::{Error, Sketch, Sketches, Summary, decode_summaries, decode_summaries_with, encode_summaries};

/// How a run's values are drawn.
#[derive(Clone, Copy, Debug)]
enum Shape {
    /// Integer increments with occasional resets.
    Counter,
    /// Decimals with `d` digits drifting around a level.
    Decimal(u32),
    /// Arbitrary finite floats of any sign and magnitude.
    Noise,
    /// Zeros, signed zeros, subnormals, infinities and extremes.
    Special,
    Constant,
}

fn shape() -> impl Strategy<Value = Shape> {
    prop_oneof![
        Just(Shape::Counter),
        (0u32..6).prop_map(Shape::Decimal),
        Just(Shape::Noise),
        Just(Shape::Special),
        Just(Shape::Constant),
    ]
}

fn magnitude() -> impl Strategy<Value = f64> {
    prop_oneof![1e-9f64..1e-3, 1e-3f64..1e3, 1e3f64..1e15]
}

/// `n` points of `shape` with increasing timestamps (steps of 0 now and then: equal timestamps
/// are allowed in a summary).
fn points(shape: Shape) -> impl Strategy<Value = Vec<(i64, f64)>> {
    let steps = prop::collection::vec((prop_oneof![9 => 1i64..30_000, 1 => Just(0i64)], any::<u32>()), 1..300);
    (steps, magnitude(), any::<bool>()).prop_map(move |(steps, level, negative)| {
        let mut ts = 1_700_000_000_000i64 - 3_600_000;
        let mut acc = if negative { -level } else { level };
        let specials = [
            0.0,
            -0.0,
            f64::MIN_POSITIVE / 4.0,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::MAX,
            -f64::MAX,
            1e-300,
        ];
        steps
            .into_iter()
            .map(|(dt, r)| {
                ts += dt;
                let v = match shape {
                    Shape::Counter => {
                        acc = if r % 50 == 0 {
                            f64::from(r % 7)
                        } else {
                            acc.abs().round() + f64::from(r % 2000)
                        };
                        acc
                    }
                    Shape::Decimal(d) => {
                        let p = 10f64.powi(d as i32);
                        acc += (f64::from(r % 1000) - 500.0) / p;
                        (acc * p).round() / p
                    }
                    Shape::Noise => acc * (1.0 + f64::from(r) / f64::from(u32::MAX)),
                    Shape::Special => specials[r as usize % specials.len()],
                    Shape::Constant => level,
                };
                (ts, v)
            })
            .collect()
    })
}

/// Buckets of `width` ms over `pts`; when `merged`, built from 10 s buckets merged together as
/// the store builds its coarser tiers.
fn buckets(pts: &[(i64, f64)], width: i64, merged: bool, alpha: Option<f64>) -> Vec<(i64, Summary)> {
    let fine = if merged { 10_000 } else { width };
    let mut out: Vec<(i64, Summary)> = Vec::new();
    for &(t, v) in pts {
        let b = t.div_euclid(fine) * fine;
        match out.last_mut() {
            Some((start, s)) if *start == b => s.add(t, v),
            _ => {
                let mut s = Summary::new();
                if let Some(a) = alpha {
                    s.sketch = Sketch::with_accuracy(a);
                }
                s.add(t, v);
                out.push((b, s));
            }
        }
    }
    if !merged {
        return out;
    }
    let mut coarse: Vec<(i64, Summary)> = Vec::new();
    for (t, s) in out {
        let b = t.div_euclid(width) * width;
        match coarse.last_mut() {
            Some((start, acc)) if *start == b => acc.merge(&s),
            _ => coarse.push((b, s)),
        }
    }
    coarse
}

/// A run of buckets with the twists the store can produce.
fn run() -> impl Strategy<Value = Vec<(i64, Summary)>> {
    (
        shape().prop_flat_map(points),
        prop::sample::select(vec![1_000i64, 60_000, 300_000, 3_600_000]),
        any::<bool>(),
        prop::sample::select(vec![None, Some(0.02)]),
        prop::collection::vec(any::<prop::sample::Index>(), 0..3),
        prop::collection::vec(any::<prop::sample::Index>(), 0..2),
    )
        .prop_map(|(pts, width, merged, alpha, empties, lossy)| {
            let mut b = buckets(&pts, width, merged, alpha);
            for i in empties {
                let at = i.index(b.len());
                b[at].1 = Summary::new();
            }
            for i in lossy {
                // A bucket that absorbed a summary of another accuracy: its sketch no longer
                // follows from its values.
                let at = i.index(b.len());
                let mut other = Summary::new();
                other.sketch = Sketch::with_accuracy(0.05);
                other.add(b[at].0, 12.5);
                b[at].1.merge(&other);
            }
            b
        })
}

fn assert_same(got: &[(i64, Summary)], want: &[(i64, Summary)]) {
    assert_eq!(got.len(), want.len());
    for ((ta, a), (tb, b)) in got.iter().zip(want) {
        assert_eq!(ta, tb);
        assert_eq!(a.count, b.count);
        for (name, x, y) in [
            ("sum", a.sum, b.sum),
            ("min", a.min, b.min),
            ("max", a.max, b.max),
            ("mean", a.mean, b.mean),
            ("first", a.first.1, b.first.1),
            ("last", a.last.1, b.last.1),
            ("increase", a.increase, b.increase),
        ] {
            assert_eq!(x.to_bits(), y.to_bits(), "{name}: {x} vs {y} at {tb}");
        }
        assert_eq!((a.first.0, a.last.0), (b.first.0, b.last.0));
        assert!(
            a.m2.to_bits() == b.m2.to_bits() || (a.m2 - b.m2).abs() <= 1e-10 * b.m2.abs(),
            "m2 {} vs {}",
            a.m2,
            b.m2
        );
        if let (Some(va), Some(vb)) = (a.variance(), b.variance()) {
            assert!(va.to_bits() == vb.to_bits() || (va - vb).abs() <= 1e-9 * vb.abs());
        }
        assert_eq!(a.sketch, b.sketch);
        for q in [0.0, 0.1, 0.5, 0.9, 0.99, 1.0] {
            assert_eq!(
                a.sketch.quantile(q).map(f64::to_bits),
                b.sketch.quantile(q).map(f64::to_bits)
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn summaries_round_trip(b in run(), block in prop::sample::select(vec![1usize, 5, 512])) {
        for chunk in b.chunks(block) {
            let mut out = vec![];
            encode_summaries(chunk, &mut out).unwrap();
            // Decoding appends.
            let mut back = vec![(-1, Summary::new())];
            decode_summaries(&out, &mut back).unwrap();
            assert_same(&back[1..], chunk);
        }
    }

    /// Skipping the sketches gives the same summaries with empty sketches.
    #[test]
    fn summaries_without_sketches(b in run(), block in prop::sample::select(vec![1usize, 5, 512])) {
        for chunk in b.chunks(block) {
            let mut out = vec![];
            encode_summaries(chunk, &mut out).unwrap();
            let mut back = vec![];
            decode_summaries_with(&out, Sketches::Skip, &mut back).unwrap();
            let mut expected = chunk.to_vec();
            for (_, s) in &mut expected {
                s.sketch = Sketch::new();
            }
            assert_same(&back, &expected);
        }
    }

    #[test]
    fn damaged_blocks_are_errors(b in run(), flips in prop::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..4)) {
        let chunk = &b[..b.len().min(64)];
        let mut out = vec![];
        encode_summaries(chunk, &mut out).unwrap();
        let mut back = vec![];
        for cut in 0..out.len() {
            prop_assert!(decode_summaries(&out[..cut], &mut back).is_err(), "prefix of {} of {} bytes decoded", cut, out.len());
            prop_assert!(back.is_empty());
        }
        // Without a checksum a flip may still decode (to other values); it must not panic.
        let mut bad = out.clone();
        for (at, x) in flips {
            let i = at.index(bad.len());
            bad[i] ^= x;
        }
        let _ = decode_summaries(&bad, &mut back);
    }

    #[test]
    fn random_bytes_never_panic(tag in prop::sample::select(vec![0x11u8, 0x12]), bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let mut input = vec![tag];
        input.extend(bytes);
        let _ = decode_summaries(&input, &mut vec![]);
    }
}

#[test]
fn encoder_refuses_what_it_cannot_store() {
    let mut a = Summary::new();
    a.add(1, 1.0);
    let out = &mut vec![];
    assert!(matches!(
        encode_summaries(&[(60_000, a.clone()), (0, a.clone())], out),
        Err(Error::OutOfOrder { .. })
    ));
    assert!(matches!(
        encode_summaries(&[(0, a.clone()), (0, a.clone())], out),
        Err(Error::OutOfOrder { .. })
    ));
    let mut wrong = a.clone();
    wrong.count = 2;
    assert!(matches!(encode_summaries(&[(0, wrong)], out), Err(Error::Invalid(_))));
    assert!(out.is_empty());
    encode_summaries(&[], out).unwrap();
    let mut back = vec![];
    decode_summaries(out, &mut back).unwrap();
    assert!(back.is_empty());
    assert!(matches!(
        decode_summaries(&[0x7f], &mut back),
        Err(Error::UnknownTag(0x7f))
    ));
}

#[test]
fn empty_and_single_point_buckets() {
    let mut one = Summary::new();
    one.add(61_000, 42.5);
    let b = vec![(0, Summary::new()), (60_000, one), (120_000, Summary::new())];
    let mut out = vec![];
    encode_summaries(&b, &mut out).unwrap();
    let mut back = vec![];
    decode_summaries(&out, &mut back).unwrap();
    assert_same(&back, &b);
    // A single point's sketch and statistics follow from its value: a handful of bytes.
    assert!(out.len() < 40, "{} bytes", out.len());
}
