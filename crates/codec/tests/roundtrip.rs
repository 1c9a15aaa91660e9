//! Property tests of the time-series codecs: head chunks and sealed blocks round-trip every kind
//! of value bit for bit (NaN payloads, ±0, ±inf, extreme integers, huge and negative timestamp
//! jumps, single points), and damaged blocks decode to an error instead of panicking.

use proptest::prelude::*;
use pulsewire_codec::block::{IntTransform, ResidualCoding};
use pulsewire_codec::{
    BlockOptions, Error, FloatCodec, HeadChunk, Kind, MAX_BLOCK_POINTS, ValueRef, Values, decode_block,
    decode_block_append, encode_block, encode_block_with,
};

/// Equality that tells NaN payloads and signed zeros apart.
fn same(a: &Values, b: &Values) -> bool {
    match (a, b) {
        (Values::Float(x), Values::Float(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| p.to_bits() == q.to_bits())
        }
        _ => a == b,
    }
}

fn timestamps(n: usize) -> impl Strategy<Value = Vec<i64>> {
    prop_oneof![
        // A scrape grid with jitter, anywhere in time (negative too).
        (any::<i32>(), 1i64..100_000, 0i64..50).prop_flat_map(move |(start, step, jitter)| {
            prop::collection::vec(-jitter..=jitter, n).prop_map(move |js| {
                let base = i64::from(start) * 1000;
                let mut out: Vec<i64> = js
                    .iter()
                    .enumerate()
                    .map(|(i, j)| base + i as i64 * step * 2 + j)
                    .collect();
                out.sort_unstable();
                out.dedup();
                out
            })
        }),
        // Arbitrary distinct instants: huge jumps across the whole i64 range.
        prop::collection::btree_set(any::<i64>(), n..=n).prop_map(|s| s.into_iter().collect()),
        // Extremes.
        Just(vec![i64::MIN, -1, 0, 1, i64::MAX]),
    ]
    .prop_map(move |mut v: Vec<i64>| {
        v.truncate(n);
        v
    })
}

fn float() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>(),
        any::<u64>().prop_map(f64::from_bits),
        // NaNs with arbitrary payloads and sign.
        any::<u64>().prop_map(|m| f64::from_bits(0x7ff0_0000_0000_0001 | (m & 0x800f_ffff_ffff_ffff))),
        prop::sample::select(vec![
            0.0,
            -0.0,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::MIN,
            f64::MAX,
            f64::MIN_POSITIVE,
            5e-324
        ]),
        (-100_000i64..100_000).prop_map(|m| m as f64 / 100.0),
        (any::<i32>(), 0u32..10).prop_map(|(m, d)| f64::from(m) / 10f64.powi(d as i32)),
    ]
}

fn int() -> impl Strategy<Value = i64> {
    prop_oneof![any::<i64>(), Just(i64::MIN), Just(i64::MAX), -1000i64..1000]
}

fn values(kind: Kind, n: usize) -> BoxedStrategy<Values> {
    match kind {
        Kind::Float => prop_oneof![
            prop::collection::vec(float(), n),
            // Smooth series, where the decimal and bit-pattern codecs kick in.
            (float(), -5.0f64..5.0).prop_map(move |(start, step)| (0..n).map(|i| start + step * i as f64).collect()),
        ]
        .prop_map(Values::Float)
        .boxed(),
        Kind::Int => prop::collection::vec(int(), n).prop_map(Values::Int).boxed(),
        Kind::UInt => prop::collection::vec(any::<u64>(), n).prop_map(Values::UInt).boxed(),
        Kind::Bool => prop::collection::vec(any::<bool>(), n).prop_map(Values::Bool).boxed(),
        Kind::Str => prop::collection::vec(prop_oneof![".{0,12}", Just(String::new()), Just("ok".to_owned())], n)
            .prop_map(Values::Str)
            .boxed(),
    }
}

fn series() -> impl Strategy<Value = (Vec<i64>, Values)> {
    (
        prop::sample::select(vec![Kind::Float, Kind::Int, Kind::UInt, Kind::Bool, Kind::Str]),
        1usize..300,
    )
        .prop_flat_map(|(kind, n)| timestamps(n).prop_flat_map(move |ts| (Just(ts.clone()), values(kind, ts.len()))))
}

fn options() -> impl Strategy<Value = BlockOptions> {
    let transform = prop::option::of(prop::sample::select(IntTransform::ALL.to_vec()));
    let coding = prop::option::of(prop::sample::select(vec![ResidualCoding::Rice, ResidualCoding::Varint]));
    let float = prop::sample::select(vec![FloatCodec::Auto, FloatCodec::Gorilla, FloatCodec::NoDecimal]);
    (
        transform.clone(),
        transform,
        coding,
        float,
        prop::option::of(any::<bool>()),
        any::<bool>(),
    )
        .prop_map(
            |(ts_transform, value_transform, coding, float, zstd, fast)| BlockOptions {
                ts_transform,
                value_transform,
                coding,
                float,
                zstd,
                fast,
            },
        )
}

fn head_of(ts: &[i64], vals: &Values) -> HeadChunk {
    let mut h = HeadChunk::new(vals.kind());
    for (i, &t) in ts.iter().enumerate() {
        h.push(t, vals.get(i).unwrap()).unwrap();
    }
    h
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn head_chunk_round_trips((ts, vals) in series()) {
        let h = head_of(&ts, &vals);
        prop_assert_eq!(h.len(), ts.len());
        prop_assert_eq!(h.first_ts(), ts.first().copied());
        prop_assert_eq!(h.last_ts(), ts.last().copied());
        let (mut dts, mut dvals) = (vec![42], Values::new(Kind::Bool));
        h.decode_into(&mut dts, &mut dvals).unwrap();
        prop_assert_eq!(&dts, &ts);
        prop_assert!(same(&dvals, &vals), "{:?} != {:?}", dvals, vals);
    }

    #[test]
    fn block_round_trips((ts, vals) in series(), opts in options()) {
        let mut out = Vec::new();
        encode_block_with(&ts, &vals, &opts, &mut out).unwrap();
        let (mut dts, mut dvals) = (vec![7, 8], Values::Str(vec!["x".into()]));
        decode_block(&out, &mut dts, &mut dvals).unwrap();
        prop_assert_eq!(&dts, &ts);
        prop_assert!(same(&dvals, &vals), "{:?} != {:?}", dvals, vals);
    }

    /// Appending a block after another gives the two blocks' points in order, as decoding each
    /// and concatenating does; a block of another kind is refused.
    #[test]
    fn blocks_append_after_each_other((ts, vals) in series(), opts in options()) {
        let mut out = Vec::new();
        encode_block_with(&ts, &vals, &opts, &mut out).unwrap();
        let (mut dts, mut dvals) = (Vec::new(), Values::new(vals.kind()));
        decode_block_append(&out, &mut dts, &mut dvals).unwrap();
        decode_block_append(&out, &mut dts, &mut dvals).unwrap();
        let twice_ts: Vec<i64> = ts.iter().chain(&ts).copied().collect();
        let mut twice = vals.clone();
        for i in 0..vals.len() {
            twice.push(vals.get(i).unwrap()).unwrap();
        }
        prop_assert_eq!(&dts, &twice_ts);
        prop_assert!(same(&dvals, &twice), "{:?} != {:?}", dvals, twice);
        let other = if vals.kind() == Kind::Bool { Kind::Int } else { Kind::Bool };
        let (mut ots, mut ovals) = (Vec::new(), Values::new(other));
        let refused = matches!(
            decode_block_append(&out, &mut ots, &mut ovals),
            Err(Error::KindMismatch { .. })
        );
        prop_assert!(refused);
    }

    #[test]
    fn truncated_block_is_an_error((ts, vals) in series(), cut in any::<prop::sample::Index>()) {
        let mut out = Vec::new();
        encode_block(&ts, &vals, &mut out).unwrap();
        let cut = cut.index(out.len());
        let (mut dts, mut dvals) = (Vec::new(), Values::new(Kind::Float));
        prop_assert!(decode_block(&out[..cut], &mut dts, &mut dvals).is_err());
    }

    #[test]
    fn corrupt_block_never_panics((ts, vals) in series(), flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4)) {
        let mut out = Vec::new();
        encode_block(&ts, &vals, &mut out).unwrap();
        for (at, x) in flips {
            let i = at.index(out.len());
            out[i] ^= x.max(1);
        }
        let (mut dts, mut dvals) = (Vec::new(), Values::new(Kind::Float));
        if decode_block(&out, &mut dts, &mut dvals).is_ok() {
            prop_assert_eq!(dts.len(), dvals.len());
        }
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..64), tag in 0u8..4) {
        let mut input = vec![tag];
        input.extend(bytes);
        let (mut dts, mut dvals) = (Vec::new(), Values::new(Kind::Float));
        let _ = decode_block(&input, &mut dts, &mut dvals);
    }
}

#[test]
fn head_chunk_rejects_disorder_and_wrong_kind() {
    let mut h = HeadChunk::new(Kind::Float);
    assert!(h.is_empty());
    assert_eq!(h.first_ts(), None);
    h.push(10, ValueRef::Float(1.0)).unwrap();
    assert_eq!(
        h.push(10, ValueRef::Float(2.0)),
        Err(Error::OutOfOrder { ts: 10, last: 10 })
    );
    assert_eq!(
        h.push(5, ValueRef::Float(2.0)),
        Err(Error::OutOfOrder { ts: 5, last: 10 })
    );
    assert_eq!(
        h.push(11, ValueRef::Int(2)),
        Err(Error::KindMismatch {
            expected: Kind::Float,
            got: Kind::Int
        })
    );
    assert_eq!(h.len(), 1);
}

#[test]
fn encode_block_validates_input() {
    let mut out = Vec::new();
    assert_eq!(
        encode_block(&[1, 2], &Values::Int(vec![1]), &mut out),
        Err(Error::LengthMismatch { ts: 2, values: 1 })
    );
    assert_eq!(
        encode_block(&[1, 1], &Values::Int(vec![1, 2]), &mut out),
        Err(Error::OutOfOrder { ts: 1, last: 1 })
    );
    let n = MAX_BLOCK_POINTS + 1;
    let ts: Vec<i64> = (0..n as i64).collect();
    assert_eq!(
        encode_block(&ts, &Values::Bool(vec![true; n]), &mut out),
        Err(Error::TooManyPoints(n))
    );
}

#[test]
fn empty_block_round_trips() {
    let mut out = Vec::new();
    encode_block(&[], &Values::Str(Vec::new()), &mut out).unwrap();
    let (mut ts, mut vals) = (vec![1], Values::Float(vec![1.0]));
    decode_block(&out, &mut ts, &mut vals).unwrap();
    assert!(ts.is_empty());
    assert_eq!(vals, Values::Str(Vec::new()));
}

#[test]
fn unknown_tag_is_reported() {
    let (mut ts, mut vals) = (Vec::new(), Values::new(Kind::Float));
    assert_eq!(
        decode_block(&[0x7f, 0], &mut ts, &mut vals),
        Err(Error::UnknownTag(0x7f))
    );
    assert_eq!(decode_block(&[], &mut ts, &mut vals), Err(Error::Truncated));
}

#[test]
fn values_accessors() {
    let mut v = Values::new(Kind::Bool);
    v.push(ValueRef::Bool(true)).unwrap();
    assert_eq!(
        v.push(ValueRef::Int(1)),
        Err(Error::KindMismatch {
            expected: Kind::Bool,
            got: Kind::Int
        })
    );
    assert_eq!(v.len(), 1);
    assert_eq!(v.get(0), Some(ValueRef::Bool(true)));
    assert_eq!(v.as_f64(0), Some(1.0));
    assert_eq!(v.get(1), None);
    let s = Values::Str(vec!["a".into()]);
    assert_eq!(s.as_f64(0), None);
    assert_eq!(s.get(0), Some(ValueRef::Str("a")));
}

#[test]
fn head_chunk_grows_gently() {
    // A steady counter: the buffer should stay within a quarter (plus slack) of its content.
    let mut h = HeadChunk::new(Kind::Float);
    for i in 0..240i64 {
        h.push(i * 10_000, ValueRef::Float((i * 37) as f64)).unwrap();
    }
    assert!(
        h.heap_bytes() <= h.encoded_bytes() * 5 / 4 + 64,
        "{} vs {}",
        h.heap_bytes(),
        h.encoded_bytes()
    );
}
