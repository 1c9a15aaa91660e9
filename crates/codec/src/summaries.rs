//! The columnar codec for a run of one series' rollup buckets: each [`Summary`] field becomes a
//! column across the buckets, coded with the sealed-block machinery, so what neighbouring
//! buckets and neighbouring fields share is paid for once. [`Summary::encode`] spends ~100 bytes
//! on every bucket (eight raw f64s and a sketch); this codec spends a few bytes on a bucket of
//! host metrics.
//!
//! - Bucket starts, point counts, and the first and last timestamps (as offsets from the bucket
//!   start and from the first) are integer sections: on a scrape grid they cost next to nothing.
//! - Each float column takes the smallest of Gorilla XOR, ordered bit patterns, decimal
//!   mantissas (exact, as in sealed blocks) and decimal mantissas plus a correction in units in
//!   the last place, which is what a float sum of decimals needs. Each may be coded as the
//!   difference from a prediction made of columns decoded before it: `first` from the previous
//!   bucket's `last`, `min` and `max` from `first` and `last`, `sum` from `count × (first +
//!   last) / 2`, `increase` from `last − first` (exact for a counter without resets), `mean` from
//!   `sum / count` (off by a few ulps at most, so the correction is tiny).
//! - `m2` (the sum of squared deviations) is the one field not kept bit for bit: it is stored as
//!   the integer `m2 × count × 10^(2d)` (exact for decimal data with `d` decimals, up to the
//!   float error of the original) or rounded to 36 significant bits, whichever is smaller, and
//!   only when the decoded value is within 2^-36 (1.5e-11) relative of the original; otherwise
//!   as is. Variance and standard deviation therefore come back within ~1e-11 relative.
//! - The sketch of a bucket is not stored where it follows from the other fields. `first`,
//!   `last`, `min` and `max` are values of actual points, so their cells are known; every other
//!   point lies in a cell between those of `min` and `max`. What is stored is the multiset of the
//!   remaining points' cells as (cell, count) pairs, the cells relative to `min`'s. A bucket of
//!   one or two points, or whose points share a cell (counters, memory, constants), then costs
//!   nothing, and a bucket of 6 noisy points a few bits per point. A summary whose sketch does
//!   not fit this (another accuracy, bins rebinned by a lossy merge) keeps its full encoding.
//!   Keeping the few exact values of small buckets instead (they merge exactly too) was
//!   weighed against the measurements and dropped: in 6-point buckets of 10 s data the cells
//!   take 1.1 bytes per bucket for 2-decimal percentages and for full-noise floats, 2.2 for
//!   durations, i.e. 4-9 bits per point not otherwise known, where the exact values would take
//!   their full entropy (~9-10 bits for a percentage, ~6 bytes for a noisy float).
//! - zstd over the whole block, when smaller.
//!
//! The byte layout is [`FORMAT`].
//!
//! # Measured size
//!
//! Bytes per bucket / per raw sample for one day of synthetic series (generators in
//! `tests/common`), 1-minute buckets built from the points and 5-minute and 1-hour ones by
//! merging them, as the store does, in blocks of 512 buckets (the store's compacted parts) and,
//! for 1-minute buckets, of 5 (a part written by a 5-minute checkpoint); last, the per-summary
//! encoding. Printed by
//! `cargo run -p pulsewire-codec --release --example codec_report`.
//!
//! ```text
//! 10 s grid            1m/512          5m/512          1h/512          1m/5            per-summary
//! Percent2dp           12.6 / 2.10     19.0 / 0.64     35.3 / 0.10     29.1 / 4.86     102 / 17.0
//! FloatNoise           43.1 / 7.19     49.0 / 1.64     64.5 / 0.19     57.3 / 9.55     102 / 17.0
//! Duration9dp          24.4 / 4.06     36.9 / 1.24     79.1 / 0.23     41.9 / 6.99     106 / 17.6
//! MemBytes             11.4 / 1.90     14.7 / 0.49     21.2 / 0.06     29.3 / 4.89      96 / 16.0
//! CounterCpuSeconds     8.9 / 1.48      9.6 / 0.32     14.7 / 0.04     21.9 / 3.65      96 / 16.0
//! Constant              0.1 / 0.02      0.2 / 0.01      2.4 / 0.01      8.0 / 1.34      96 / 16.0
//! host mix              7.5 / 1.26      9.8 / 0.33     19.0 / 0.06     18.7 / 3.12      98 / 16.3
//! host mix ±2 ms       10.5 / 1.75     13.0 / 0.43     23.6 / 0.07     22.4 / 3.74      98 / 16.3
//!
//! 1 s grid
//! Percent2dp           22.4 / 0.37     29.4 / 0.10     48.0 / 0.01     40.3 / 0.67     122 / 2.04
//! FloatNoise           51.5 / 0.86     57.5 / 0.19     75.8 / 0.02     68.9 / 1.15     122 / 2.04
//! Duration9dp          45.5 / 0.76     72.0 / 0.24    114.6 / 0.03     65.6 / 1.09     176 / 2.94
//! host mix             10.5 / 0.18     14.0 / 0.05     23.7 / 0.01     22.5 / 0.38     106 / 1.76
//! host mix ±2 ms       13.1 / 0.22     16.9 / 0.06     28.4 / 0.01     25.5 / 0.43     107 / 1.78
//! ```
//!
//! The host mix is that of the sealed-block measurements. Noise costs what it costs: a
//! full-noise float gauge keeps four sample values, a sum, an increase and `m2` of ~6 bytes
//! each. Everything that moves predictably (counters, constants, memory in pages) comes to a
//! few bytes per bucket. With ±2 ms of jitter a grid point at a minute boundary falls in either
//! bucket, so counts and first offsets vary. Blocks of a few buckets pay ~30 bytes of fixed
//! cost (absolute start, first values of each column); compaction merges them.
//!
//! Encoding takes ~1-1.7 µs per bucket in blocks of 512 (~2.5-3.7 µs in blocks of 5: the
//! search over codings per column has a fixed cost), decoding ~0.35-0.6 µs (~0.6-0.9); the
//! per-summary encoding took ~0.1-0.2 µs either way, for 7-13 times the bytes (`speed` in the
//! same test file, on the development VM).

use crate::bits::{BitWriter, ByteReader, bit_len, put_uvarint, varint_into, zigzag};
use crate::block::{MAX_DECIMALS, POW10, decimals, from_decimal, ordered_bits};
use crate::error::{Error, Result};
use crate::gorilla::XorEncoder;
use crate::ints::{IntTransform, ResidualCoding, Search, decode_ints, encode_ints_among};
use crate::sketch::{DEFAULT_ALPHA, DEFAULT_MAX_BINS, Sketch};
use crate::summary::Summary;
use crate::zstd_ctx;

/// Byte layout of a summaries block, for docs/storage.md. `ints(n)` and the varint and zigzag
/// conventions are those of the sealed-block [`crate::block::FORMAT`].
pub const FORMAT: &str = r#"
summaries := tag:u8 payload
  tag 0x11 (TAG_PLAIN): payload = body
  tag 0x12 (TAG_ZSTD):  payload = body_len:varint zstd_frame(body)
body     := n:varint starts:ints(n) counts:ints(n) [columns]      (nothing may follow)
  n <= MAX_BUCKETS (65536); starts are the bucket starts (ms), ascending; counts are u64 as i64.
  Buckets with count 0 decode as Summary::new(); the columns hold the m others, in order.
columns  := first_off:ints(m) last_off:ints(m)        first.ts - start, last.ts - first.ts
            last:fcol first:fcol min:fcol max:fcol sum:fcol increase:fcol mean:fcol
            m2:m2col sketches
fcol     := mode:u8 [d:u8] data         mode = kind | pred << 4; p[i] is the prediction
                                        (0.0 when pred = 0), ord() the order-preserving map
                                        of f64 bits to i64 (bits 0-62 flipped when negative)
  kind 0 XOR       Gorilla XOR bit stream of the values, padded to a byte (pred must be 0)
  kind 1 BITS      ints(m) of ord(v) - ord(p)
  kind 2 DECIMAL   d <= 18, ints(m) of mant - pm(p): v = mant / 10^d exactly
  kind 3 DEC_ULP   d <= 18, ints(m) of mant - pm(p), then ints(m) of
                   ord(v) - ord(mant / 10^d)
  kind 4 REPEAT    pred = 0: v:f64 (LE), every value is v; otherwise every value is p[i]
  pm(p) = round(p * 10^d) as i64 when finite and below 2^63 in magnitude, else 0
  predictions, by column (1-based pred):
    first:    1 previous non-empty bucket's last (0.0 for the first), 2 this bucket's last
    min:      1 min(first, last)
    max:      1 max(first, last)
    sum:      1 count * (first + last) * 0.5, 2 count * (min + max) * 0.5
    increase: 1 last - first
    mean:     1 sum / count
    (last has none)
m2col    := 0x00 d:u8 ints(m)    m2 = k / (count * 10^d * 10^d)   (f64 arithmetic)
          | 0x01 ints(m)         m2 = ord^-1(q << 16)
          | 0x02 fcol            exact
          | 0x03                 every m2 is 0.0
sketches := flags:u8 [alpha:f64 max_bins:varint] [modes:ints(m)] cells full*
  flags bit 0: alpha and max_bins follow (else 0.01 and 2048); every compact sketch has them
  flags bit 1: modes follow, 0 compact or 1 full per bucket (else all compact)
  compact bucket: known = key(first); key(last) if last.ts != first.ts; key(min) if
    min < first and min < last; key(max) if max > first and max > last. lo = key(min),
    hi = key(max), r = count - |known|. The sketch is the known cells plus r points in
    cells within [lo, hi]: one cell (lo, r) when lo = hi; none when r = 0; else "spread":
  cells    := ncells:ints(s) keys:ints(C) counts:ints(C - s)
    s spread buckets, c = ncells + 1 cells each, C = sum of c; per bucket its c keys
    ascending, the first as key - lo, the others as key - previous - 1 (all <= hi); its
    counts - 1 for all cells but the last, which holds the rest of r (at least 1)
  key(v): the cell of v as an ordered integer: 0 for |v| < f64::MIN_POSITIVE, otherwise
    +-(1 + bin(|v|) - bin_min) by sign, bin as in the sketch's mapping
  full     := Sketch::encode of each full bucket, in order
"#;

/// Tag of a summaries block stored as is.
pub const TAG_PLAIN: u8 = 0x11;
/// Tag of a zstd-compressed summaries block.
pub const TAG_ZSTD: u8 = 0x12;
/// Upper bound on buckets in one block; decoders reject larger counts so a corrupt length
/// cannot make them allocate without bound.
pub const MAX_BUCKETS: usize = 1 << 16;
/// Upper bound on sketch cells stored in one block, bounding the work a corrupt block causes.
/// Host metrics need a few per bucket, a day of 1 s data ~20 per 1-minute bucket, so 512
/// buckets stay far below; only values spread over most of a sketch's range come near.
const MAX_CELLS: usize = 1 << 22;
/// zstd level for the whole block. The columns are entropy-coded already, so zstd only finds
/// what they miss (bimodal offsets of jittered points near bucket edges, repeats): measured, it
/// took 1% off a day of the 10 s host mix, 4% with ±2 ms jitter, so the attempt is kept cheap.
const ZSTD_LEVEL: i32 = 3;
/// Bodies shorter than this are not worth a zstd attempt (it shrank 1.4% of 5-bucket blocks,
/// by a byte or two).
const ZSTD_MIN_BODY: usize = 256;

const KIND_XOR: u8 = 0;
const KIND_BITS: u8 = 1;
const KIND_DECIMAL: u8 = 2;
const KIND_DEC_ULP: u8 = 3;
const KIND_REPEAT: u8 = 4;

const M2_SCALED: u8 = 0;
const M2_QUANT: u8 = 1;
const M2_EXACT: u8 = 2;
const M2_ZERO: u8 = 3;
/// Low bits of `m2`'s ordered bit pattern dropped by [`M2_QUANT`]: 36 significant bits remain.
const M2_SHIFT: u32 = 16;
/// Largest relative error accepted for a stored `m2`.
const M2_TOLERANCE: f64 = 1.0 / (1u64 << 36) as f64;

const FLAG_LIMITS: u8 = 1;
const FLAG_MODES: u8 = 2;

/// Transforms tried for the integer sections of a summaries block: a rollup column is either
/// level (`Raw`) or drifts from bucket to bucket (`Delta`); the other two never won in the
/// measurements and would double the encoding time.
const TRANSFORMS: [IntTransform; 2] = [IntTransform::Raw, IntTransform::Delta];

fn put_ints(vals: &[i64], out: &mut Vec<u8>) {
    encode_ints_among(
        vals,
        &TRANSFORMS,
        &[ResidualCoding::Rice, ResidualCoding::Varint],
        Search::Quick,
        out,
    );
}

/// Encodes ascending (bucket start ms, summary) pairs of one series.
///
/// Err if the starts are not strictly ascending, if there are more than [`MAX_BUCKETS`], or if
/// a summary's sketch does not count as many points as the summary does (such a summary could
/// not be decoded).
pub fn encode_summaries(buckets: &[(i64, Summary)], out: &mut Vec<u8>) -> Result<()> {
    if buckets.len() > MAX_BUCKETS {
        return Err(Error::TooManyPoints(buckets.len()));
    }
    for w in buckets.windows(2) {
        if let [(a, _), (b, _)] = w
            && b <= a
        {
            return Err(Error::OutOfOrder { ts: *b, last: *a });
        }
    }
    if buckets.iter().any(|(_, s)| s.count != s.sketch.count()) {
        return Err(Error::Invalid("summary count differs from its sketch"));
    }
    let mut body = Vec::with_capacity(64 + buckets.len() * 8);
    put_uvarint(&mut body, buckets.len() as u64);
    let starts: Vec<i64> = buckets.iter().map(|(t, _)| *t).collect();
    put_ints(&starts, &mut body);
    let counts: Vec<i64> = buckets.iter().map(|(_, s)| s.count as i64).collect();
    put_ints(&counts, &mut body);
    let full: Vec<(i64, &Summary)> = buckets
        .iter()
        .filter(|(_, s)| s.count > 0)
        .map(|(t, s)| (*t, s))
        .collect();
    if !full.is_empty() {
        encode_columns(&full, &mut body);
    }

    let mut len = [0u8; 10];
    let len = varint_into(&mut len, body.len() as u64);
    let compressed = body.len() >= ZSTD_MIN_BODY
        && zstd_ctx::compress(&body, ZSTD_LEVEL, |frame| {
            let keep = len.len() + frame.len() < body.len();
            if keep {
                out.push(TAG_ZSTD);
                out.extend_from_slice(len);
                out.extend_from_slice(frame);
            }
            keep
        })?;
    if !compressed {
        out.push(TAG_PLAIN);
        out.extend_from_slice(&body);
    }
    Ok(())
}

/// Whether a decode rebuilds each bucket's quantile sketch. The sketches are the last and by
/// far the costliest section to decode (about 0.3 us a bucket, most of a block's decode time),
/// and only quantile aggregations read them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sketches {
    Decode,
    /// Leave every sketch empty (its count then differs from the summary's): for readers that
    /// use no quantiles. The sketch section is not read, so it is not checked either.
    Skip,
}

/// Decodes a block written by [`encode_summaries`], appending its buckets to `out`. On error
/// `out` is left as it was.
pub fn decode_summaries(bytes: &[u8], out: &mut Vec<(i64, Summary)>) -> Result<()> {
    decode_summaries_with(bytes, Sketches::Decode, out)
}

/// [`decode_summaries`], with the sketches decoded or skipped.
pub fn decode_summaries_with(bytes: &[u8], sketches: Sketches, out: &mut Vec<(i64, Summary)>) -> Result<()> {
    let before = out.len();
    let res = decode_tagged(bytes, sketches, out);
    if res.is_err() {
        out.truncate(before);
    }
    res
}

fn decode_tagged(bytes: &[u8], sketches: Sketches, out: &mut Vec<(i64, Summary)>) -> Result<()> {
    let mut br = ByteReader::new(bytes);
    match br.u8()? {
        TAG_PLAIN => decode_body(br.remaining(), sketches, out),
        TAG_ZSTD => {
            // Far above any real block; the frame's own size header is checked against it too.
            let len = br.len(64 << 20)?;
            zstd_ctx::decompress(br.remaining(), len, |body| decode_body(body, sketches, out))
        }
        tag => Err(Error::UnknownTag(tag)),
    }
}

fn decode_body(body: &[u8], sketches: Sketches, out: &mut Vec<(i64, Summary)>) -> Result<()> {
    let mut br = ByteReader::new(body);
    let n = br.len(MAX_BUCKETS)?;
    let starts = read_ints(&mut br, n)?;
    let counts = read_ints(&mut br, n)?;
    let m = counts.iter().filter(|&&c| c != 0).count();
    let mut full = if m > 0 {
        decode_columns(&mut br, &counts, &starts, m, sketches)?
    } else {
        Vec::new()
    };
    if sketches == Sketches::Decode && br.position() != body.len() {
        return Err(Error::Corrupt("trailing bytes after summaries"));
    }
    if m == n {
        // No empty buckets (the usual case): one bulk move instead of one per summary.
        out.append(&mut full);
        return Ok(());
    }
    out.reserve(n);
    let mut full = full.into_iter();
    for (&start, &count) in starts.iter().zip(&counts) {
        let s = if count == 0 {
            Summary::new()
        } else {
            full.next().ok_or(Error::Corrupt("missing summary"))?.1
        };
        out.push((start, s));
    }
    Ok(())
}

fn read_ints(br: &mut ByteReader<'_>, n: usize) -> Result<Vec<i64>> {
    // A constant section holds any count in a few bytes: reserve modestly and let a long one
    // grow, so a corrupt count costs time bounded by the caller's limits, not memory up front.
    let mut v = Vec::with_capacity(n.min(1 << 16));
    decode_ints(br, n, |x| v.push(x))?;
    Ok(v)
}

/// Which sample cells of a bucket's sketch follow from its other fields (see the module docs).
struct Known {
    keys: [Option<i64>; 4],
    lo: i64,
    hi: i64,
}

impl Known {
    /// `None` when the values have no cells (NaN) or `min` lies above `max`.
    fn of(s: &Summary, sketch: &Sketch) -> Option<Known> {
        let (first, last) = (s.first.1, s.last.1);
        let lo = sketch.key(s.min)?;
        let hi = sketch.key(s.max)?;
        if lo > hi {
            return None;
        }
        let keys = [
            Some(sketch.key(first)?),
            if s.last.0 != s.first.0 {
                Some(sketch.key(last)?)
            } else {
                None
            },
            (s.min < first && s.min < last).then_some(lo),
            (s.max > first && s.max > last).then_some(hi),
        ];
        Some(Known { keys, lo, hi })
    }

    fn len(&self) -> u64 {
        self.keys.iter().flatten().count() as u64
    }
}

/// The compact form of one bucket's sketch: cells of the points other than the known ones.
enum Cells {
    /// Every other point is in cell `lo` (or there are none).
    Implied,
    /// (key, count) ascending, at least one.
    Spread(Vec<(i64, u64)>),
}

/// The sketch's cells without the known points, if they all lie within `[lo, hi]`.
fn compact_cells(s: &Summary, limits: &Sketch) -> Option<(Known, Cells)> {
    if !s.sketch.same_limits(limits) {
        return None;
    }
    let known = Known::of(s, &s.sketch)?;
    let mut cells: Vec<(i64, u64)> = s.sketch.cells().collect();
    for key in known.keys.iter().flatten() {
        let at = cells.binary_search_by_key(key, |c| c.0).ok()?;
        let cell = cells.get_mut(at)?;
        cell.1 = cell.1.checked_sub(1)?;
    }
    cells.retain(|c| c.1 > 0);
    if cells.iter().any(|&(k, _)| k < known.lo || k > known.hi) {
        return None;
    }
    let implied = known.lo == known.hi || cells.is_empty();
    Some((known, if implied { Cells::Implied } else { Cells::Spread(cells) }))
}

fn encode_columns(full: &[(i64, &Summary)], out: &mut Vec<u8>) {
    let col = |f: &dyn Fn(&Summary) -> f64| full.iter().map(|(_, s)| f(s)).collect::<Vec<f64>>();
    let first_off: Vec<i64> = full.iter().map(|(t, s)| s.first.0.wrapping_sub(*t)).collect();
    let last_off: Vec<i64> = full.iter().map(|(_, s)| s.last.0.wrapping_sub(s.first.0)).collect();
    put_ints(&first_off, out);
    put_ints(&last_off, out);

    let counts = col(&|s| s.count as f64);
    let last = col(&|s| s.last.1);
    let first = col(&|s| s.first.1);
    let min = col(&|s| s.min);
    let max = col(&|s| s.max);
    let preds = Preds::new(&counts, &last, &first, &min, &max);
    let mut hint = None;
    for (vals, preds) in [
        (&last, Vec::new()),
        (&first, vec![preds.prev_last.as_slice(), &last]),
        (&min, vec![preds.lower.as_slice()]),
        (&max, vec![preds.upper.as_slice()]),
    ] {
        let d = encode_fcol(vals, &preds, None, out);
        hint = hint.max(d);
    }
    let sum = col(&|s| s.sum);
    encode_fcol(&sum, &[&preds.sum_ends, &preds.sum_range], hint, out);
    encode_fcol(&col(&|s| s.increase), &[&preds.rise], hint, out);
    let mean_pred: Vec<f64> = sum.iter().zip(&counts).map(|(s, c)| s / c).collect();
    encode_fcol(&col(&|s| s.mean), &[&mean_pred], hint, out);
    encode_m2(&col(&|s| s.m2), &counts, hint, out);
    encode_sketches(full, out);
}

/// Predictions shared by encoder and decoder, from columns decoded earlier.
struct Preds {
    prev_last: Vec<f64>,
    lower: Vec<f64>,
    upper: Vec<f64>,
    sum_ends: Vec<f64>,
    sum_range: Vec<f64>,
    rise: Vec<f64>,
}

impl Preds {
    fn new(counts: &[f64], last: &[f64], first: &[f64], min: &[f64], max: &[f64]) -> Preds {
        let ends = || first.iter().zip(last);
        Preds {
            prev_last: std::iter::once(0.0)
                .chain(last.iter().copied())
                .take(last.len())
                .collect(),
            lower: ends().map(|(f, l)| f.min(*l)).collect(),
            upper: ends().map(|(f, l)| f.max(*l)).collect(),
            sum_ends: ends().zip(counts).map(|((f, l), c)| c * (f + l) * 0.5).collect(),
            sum_range: min
                .iter()
                .zip(max)
                .zip(counts)
                .map(|((a, b), c)| c * (a + b) * 0.5)
                .collect(),
            rise: ends().map(|(f, l)| l - f).collect(),
        }
    }
}

fn decode_columns(
    br: &mut ByteReader<'_>,
    counts: &[i64],
    starts: &[i64],
    m: usize,
    sketches: Sketches,
) -> Result<Vec<(i64, Summary)>> {
    let first_off = read_ints(br, m)?;
    let last_off = read_ints(br, m)?;
    let nonzero: Vec<(i64, u64)> = starts
        .iter()
        .zip(counts)
        .filter(|(_, c)| **c != 0)
        .map(|(t, c)| (*t, *c as u64))
        .collect();
    let countf: Vec<f64> = nonzero.iter().map(|(_, c)| *c as f64).collect();
    let last = decode_fcol(br, m, &[])?;
    let prev_last: Vec<f64> = std::iter::once(0.0).chain(last.iter().copied()).take(m).collect();
    let first = decode_fcol(br, m, &[&prev_last, &last])?;
    let lower: Vec<f64> = first.iter().zip(&last).map(|(f, l)| f.min(*l)).collect();
    let upper: Vec<f64> = first.iter().zip(&last).map(|(f, l)| f.max(*l)).collect();
    let min = decode_fcol(br, m, &[&lower])?;
    let max = decode_fcol(br, m, &[&upper])?;
    let preds = Preds::new(&countf, &last, &first, &min, &max);
    let sum = decode_fcol(br, m, &[&preds.sum_ends, &preds.sum_range])?;
    let increase = decode_fcol(br, m, &[&preds.rise])?;
    let mean_pred: Vec<f64> = sum.iter().zip(&countf).map(|(s, c)| s / c).collect();
    let mean = decode_fcol(br, m, &[&mean_pred])?;
    let m2 = decode_m2(br, &countf)?;

    let mut out = Vec::with_capacity(m);
    for i in 0..m {
        let at = |v: &[f64]| v.get(i).copied().ok_or(Error::Corrupt("short column"));
        let (start, count) = nonzero.get(i).copied().ok_or(Error::Corrupt("short column"))?;
        let first_ts = start.wrapping_add(first_off.get(i).copied().unwrap_or(0));
        let last_ts = first_ts.wrapping_add(last_off.get(i).copied().unwrap_or(0));
        let mut s = Summary::new();
        s.count = count;
        s.first = (first_ts, at(&first)?);
        s.last = (last_ts, at(&last)?);
        s.min = at(&min)?;
        s.max = at(&max)?;
        s.sum = at(&sum)?;
        s.increase = at(&increase)?;
        s.mean = at(&mean)?;
        s.m2 = at(&m2)?;
        out.push((start, s));
    }
    if sketches == Sketches::Decode {
        decode_sketches(br, &mut out)?;
    }
    Ok(out)
}

/// The mantissa of prediction `p` at `d` decimals (0 when out of range), as both sides compute it.
#[inline]
fn pred_mantissa(p: f64, d: usize) -> i64 {
    let scaled = (p * POW10.get(d).copied().unwrap_or(1.0)).round();
    if scaled.is_finite() && scaled.abs() < 2f64.powi(63) {
        scaled as i64
    } else {
        0
    }
}

#[inline]
fn ord(v: f64) -> i64 {
    ordered_bits(v.to_bits() as i64)
}

#[inline]
fn unord(o: i64) -> f64 {
    f64::from_bits(ordered_bits(o) as u64)
}

/// Rough bits of an integer section of `r`: the cheaper of the values' spread around their
/// mean and their successive differences, each value costing its zigzagged bit length plus one
/// (what Rice coding of a well-chosen parameter spends, give or take). Ranks candidate codings
/// so only the most promising are encoded for real.
fn estimate_bits(r: &[i64]) -> u64 {
    if r.len() < 2 {
        return 0;
    }
    let mean = r.iter().map(|&x| i128::from(x)).sum::<i128>() / r.len() as i128;
    let mean = mean.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64;
    let raw: u64 = r
        .iter()
        .map(|&x| u64::from(bit_len(zigzag(x.wrapping_sub(mean)))) + 1)
        .sum();
    let delta: u64 = r
        .windows(2)
        .map(|w| match w {
            [a, b] => u64::from(bit_len(zigzag(b.wrapping_sub(*a)))) + 1,
            _ => 0,
        })
        .sum();
    raw.min(delta)
}

/// Candidates encoded for real per float column, best first by [`estimate_bits`]; the second
/// only when its estimate is within an eighth of the best's.
const TRIED: usize = 2;

/// One way to code a float column as integers (see [`FORMAT`]).
#[derive(Clone, Copy)]
struct Candidate {
    kind: u8,
    pred: usize,
    /// Decimal exponent, for the decimal kinds.
    d: usize,
    estimate: u64,
}

/// Appends the smallest coding of `vals` (see [`FORMAT`]) found; returns its decimal exponent if
/// it chose exact decimals, as a hint for later columns of float sums of the same values.
fn encode_fcol(vals: &[f64], preds: &[&[f64]], hint: Option<usize>, out: &mut Vec<u8>) -> Option<usize> {
    let pred_at = |p: usize, i: usize| match p {
        0 => 0.0,
        p => preds.get(p - 1).and_then(|v| v.get(i)).copied().unwrap_or(0.0),
    };
    // A column equal to a prediction (or constant) throughout takes its mode byte alone (or
    // one value): what most columns of constants and counters come to in a block of a few
    // buckets, where an integer section's fixed cost would dominate.
    for p in 1..=preds.len() {
        if vals
            .iter()
            .enumerate()
            .all(|(i, v)| v.to_bits() == pred_at(p, i).to_bits())
        {
            out.push(KIND_REPEAT | (p as u8) << 4);
            return None;
        }
    }
    if let Some(first) = vals.first()
        && vals.iter().all(|v| v.to_bits() == first.to_bits())
    {
        out.push(KIND_REPEAT);
        out.extend_from_slice(&first.to_le_bytes());
        return None;
    }

    let exact = decimals(vals);
    // Float sums of decimals are decimals give or take a few ulps (or exact only at 15-17
    // decimals, which costs more than the ulps).
    let ulp_mant: Option<(usize, Vec<i64>)> = hint
        .filter(|&d| exact.as_ref().is_none_or(|(exact_d, _)| *exact_d > d))
        .and_then(|d| {
            vals.iter()
                .map(|&v| {
                    let scaled = (v * POW10.get(d)?).round();
                    (scaled.is_finite() && scaled.abs() < 2f64.powi(63)).then_some(scaled as i64)
                })
                .collect::<Option<Vec<i64>>>()
                .map(|m| (d, m))
        });
    let mut ulp_section = Vec::new();
    if let Some((d, mant)) = &ulp_mant {
        let ulps: Vec<i64> = vals
            .iter()
            .zip(mant)
            .map(|(&v, &m)| ord(v).wrapping_sub(ord(from_decimal(m, *d))))
            .collect();
        put_ints(&ulps, &mut ulp_section);
    }
    // The integers a candidate codes, into `buf`.
    let fill = |c: &Candidate, buf: &mut Vec<i64>| {
        buf.clear();
        let mant = match c.kind {
            KIND_DECIMAL => exact.as_ref().map(|e| e.1.as_slice()),
            KIND_DEC_ULP => ulp_mant.as_ref().map(|e| e.1.as_slice()),
            _ => None,
        };
        match mant {
            Some(mant) => buf.extend(
                mant.iter()
                    .enumerate()
                    .map(|(i, &m)| m.wrapping_sub(pred_mantissa(pred_at(c.pred, i), c.d))),
            ),
            None => buf.extend(
                vals.iter()
                    .enumerate()
                    .map(|(i, &v)| ord(v).wrapping_sub(ord(pred_at(c.pred, i)))),
            ),
        }
    };

    let mut cands: Vec<Candidate> = Vec::new();
    let mut kinds = vec![(KIND_BITS, 0, 0)];
    if let Some((d, _)) = &exact {
        kinds.push((KIND_DECIMAL, *d, 0));
    }
    if let Some((d, _)) = &ulp_mant {
        kinds.push((KIND_DEC_ULP, *d, ulp_section.len()));
    }
    let mut buf = Vec::with_capacity(vals.len());
    for (kind, d, extra) in kinds {
        for pred in 0..=preds.len() {
            let mut c = Candidate {
                kind,
                pred,
                d,
                estimate: 0,
            };
            fill(&c, &mut buf);
            c.estimate = estimate_bits(&buf) + 8 * extra as u64;
            cands.push(c);
        }
    }

    // Gorilla XOR is sized exactly: writing it costs less than estimating it.
    let mut w = BitWriter::from_vec(Vec::with_capacity(8 + vals.len() * 4));
    w.write(u64::from(KIND_XOR), 8);
    let mut enc = XorEncoder::new();
    for &v in vals {
        enc.encode(&mut w, v);
    }
    let mut best: (Vec<u8>, Option<usize>) = (w.finish(), None);
    cands.sort_by_key(|c| c.estimate);
    let cutoff = cands.first().map_or(0, |c| c.estimate + c.estimate / 8);
    let mut bytes = Vec::new();
    for c in cands.iter().take(TRIED).filter(|c| c.estimate <= cutoff) {
        bytes.clear();
        bytes.push(c.kind | (c.pred as u8) << 4);
        if c.kind != KIND_BITS {
            bytes.push(c.d as u8);
        }
        fill(c, &mut buf);
        put_ints(&buf, &mut bytes);
        if c.kind == KIND_DEC_ULP {
            bytes.extend_from_slice(&ulp_section);
        }
        if bytes.len() < best.0.len() {
            best = (std::mem::take(&mut bytes), (c.kind == KIND_DECIMAL).then_some(c.d));
        }
    }
    out.extend_from_slice(&best.0);
    best.1
}

fn decode_fcol(br: &mut ByteReader<'_>, n: usize, preds: &[&[f64]]) -> Result<Vec<f64>> {
    let mode = br.u8()?;
    let (kind, p) = (mode & 0x0f, usize::from(mode >> 4));
    if p > preds.len() || (kind == KIND_XOR && p != 0) {
        return Err(Error::Corrupt("unknown float column prediction"));
    }
    let pred_at = |i: usize| match p {
        0 => 0.0,
        p => preds.get(p - 1).and_then(|v| v.get(i)).copied().unwrap_or(0.0),
    };
    let mut out = Vec::with_capacity(n);
    match kind {
        KIND_XOR => crate::gorilla::decode_xor_section(br, n, &mut out)?,
        KIND_BITS => {
            let mut i = 0;
            decode_ints(br, n, |x| {
                out.push(unord(x.wrapping_add(ord(pred_at(i)))));
                i += 1;
            })?;
        }
        KIND_DECIMAL | KIND_DEC_ULP => {
            let d = usize::from(br.u8()?);
            if d > MAX_DECIMALS {
                return Err(Error::Corrupt("decimal exponent out of range"));
            }
            let mut i = 0;
            decode_ints(br, n, |x| {
                out.push(from_decimal(x.wrapping_add(pred_mantissa(pred_at(i), d)), d));
                i += 1;
            })?;
            if kind == KIND_DEC_ULP {
                let mut vals = out.iter_mut();
                decode_ints(br, n, |e| {
                    if let Some(v) = vals.next() {
                        *v = unord(ord(*v).wrapping_add(e));
                    }
                })?;
            }
        }
        KIND_REPEAT if p == 0 => {
            let v = br.f64()?;
            out.resize(n, v);
        }
        KIND_REPEAT => out.extend((0..n).map(pred_at)),
        _ => return Err(Error::Corrupt("unknown float column coding")),
    }
    Ok(out)
}

/// `m2 × count × 10^(2d)` as it is scaled for [`M2_SCALED`].
#[inline]
fn m2_scale(count: f64, d: usize) -> f64 {
    let p = POW10.get(d).copied().unwrap_or(1.0);
    count * p * p
}

#[inline]
fn m2_close(decoded: f64, m2: f64) -> bool {
    decoded.to_bits() == m2.to_bits() || (decoded - m2).abs() <= M2_TOLERANCE * m2.abs()
}

fn encode_m2(m2: &[f64], counts: &[f64], hint: Option<usize>, out: &mut Vec<u8>) {
    if m2.iter().all(|v| v.to_bits() == 0) {
        out.push(M2_ZERO);
        return;
    }
    let scaled: Option<Vec<i64>> = hint.and_then(|d| {
        m2.iter()
            .zip(counts)
            .map(|(&v, &c)| {
                let s = m2_scale(c, d);
                let k = (v * s).round();
                let ok = k.is_finite() && k.abs() < 2f64.powi(62) && m2_close(k / s, v);
                ok.then_some(k as i64)
            })
            .collect()
    });
    let quant: Option<Vec<i64>> = m2
        .iter()
        .map(|&v| {
            let q = ord(v).wrapping_add(1 << (M2_SHIFT - 1)) >> M2_SHIFT;
            (v.is_finite() && m2_close(unord(q.wrapping_shl(M2_SHIFT)), v)).then_some(q)
        })
        .collect();
    let mut cands: Vec<(u64, [u8; 2], usize, Vec<i64>)> = Vec::new();
    if let (Some(k), Some(d)) = (scaled, hint) {
        cands.push((estimate_bits(&k), [M2_SCALED, d as u8], 2, k));
    }
    if let Some(q) = quant {
        cands.push((estimate_bits(&q), [M2_QUANT, 0], 1, q));
    }
    cands.sort_by_key(|c| c.0);
    let cutoff = cands.first().map_or(0, |c| c.0 + c.0 / 8);
    let mut best: Option<Vec<u8>> = None;
    for (_, header, len, vals) in cands.iter().filter(|c| c.0 <= cutoff) {
        let mut cand = header.get(..*len).unwrap_or(&[]).to_vec();
        put_ints(vals, &mut cand);
        if best.as_ref().is_none_or(|b| cand.len() < b.len()) {
            best = Some(cand);
        }
    }
    // Kept as is only when neither lossy form is close enough (infinities, NaN).
    let best = best.unwrap_or_else(|| {
        let mut exact = vec![M2_EXACT];
        encode_fcol(m2, &[], None, &mut exact);
        exact
    });
    out.extend_from_slice(&best);
}

fn decode_m2(br: &mut ByteReader<'_>, counts: &[f64]) -> Result<Vec<f64>> {
    let n = counts.len();
    match br.u8()? {
        M2_SCALED => {
            let d = usize::from(br.u8()?);
            if d > MAX_DECIMALS {
                return Err(Error::Corrupt("decimal exponent out of range"));
            }
            let mut out = Vec::with_capacity(n);
            let mut c = counts.iter();
            decode_ints(br, n, |k| {
                out.push(k as f64 / m2_scale(c.next().copied().unwrap_or(1.0), d))
            })?;
            Ok(out)
        }
        M2_QUANT => {
            let mut out = Vec::with_capacity(n);
            decode_ints(br, n, |q| out.push(unord(q.wrapping_shl(M2_SHIFT))))?;
            Ok(out)
        }
        M2_EXACT => decode_fcol(br, n, &[]),
        M2_ZERO => Ok(vec![0.0; n]),
        _ => Err(Error::Corrupt("unknown m2 coding")),
    }
}

fn encode_sketches(full: &[(i64, &Summary)], out: &mut Vec<u8>) {
    let limits = full.first().map_or_else(Sketch::new, |(_, s)| s.sketch.empty_like());
    let compact: Vec<Option<(Known, Cells)>> = full.iter().map(|(_, s)| compact_cells(s, &limits)).collect();
    let all_compact = compact.iter().all(Option::is_some);
    let default = limits.same_limits(&Sketch::new());
    out.push(if default { 0 } else { FLAG_LIMITS } | if all_compact { 0 } else { FLAG_MODES });
    if !default {
        limits.encode_limits(out);
    }
    if !all_compact {
        let modes: Vec<i64> = compact.iter().map(|c| i64::from(c.is_none())).collect();
        put_ints(&modes, out);
    }
    let (mut ncells, mut keys, mut counts) = (Vec::new(), Vec::new(), Vec::new());
    for (known, cells) in compact.iter().flatten() {
        let Cells::Spread(cells) = cells else { continue };
        ncells.push(cells.len() as i64 - 1);
        let mut prev = None;
        for &(key, _) in cells {
            keys.push(match prev {
                None => key - known.lo,
                Some(p) => key - p - 1,
            });
            prev = Some(key);
        }
        let (_, init) = cells.split_last().unwrap_or((&(0, 0), &[]));
        counts.extend(init.iter().map(|&(_, c)| c as i64 - 1));
    }
    put_ints(&ncells, out);
    put_ints(&keys, out);
    put_ints(&counts, out);
    for ((_, s), c) in full.iter().zip(&compact) {
        if c.is_none() {
            s.sketch.encode(out);
        }
    }
}

fn decode_sketches(br: &mut ByteReader<'_>, out: &mut [(i64, Summary)]) -> Result<()> {
    let flags = br.u8()?;
    if flags & !(FLAG_LIMITS | FLAG_MODES) != 0 {
        return Err(Error::Corrupt("unknown sketch flags"));
    }
    let limits = if flags & FLAG_LIMITS != 0 {
        Sketch::decode_limits(br)?
    } else {
        Sketch::with_limits(DEFAULT_ALPHA, DEFAULT_MAX_BINS)
    };
    let m = out.len();
    let full_mode: Vec<bool> = if flags & FLAG_MODES != 0 {
        let mut v = Vec::with_capacity(m);
        let mut bad = false;
        decode_ints(br, m, |x| {
            bad |= !(0..=1).contains(&x);
            v.push(x == 1);
        })?;
        if bad {
            return Err(Error::Corrupt("unknown sketch mode"));
        }
        v
    } else {
        vec![false; m]
    };

    // Known cells of every compact bucket, and the most cells each spread one can hold.
    let mut plans = Vec::with_capacity(m);
    let mut spread_room = Vec::new();
    for ((_, s), &is_full) in out.iter().zip(&full_mode) {
        if is_full {
            plans.push(None);
            continue;
        }
        let known = Known::of(s, &limits).ok_or(Error::Corrupt("summary values have no sketch cells"))?;
        let r = s
            .count
            .checked_sub(known.len())
            .ok_or(Error::Corrupt("summary counts fewer points than it names"))?;
        if r > 0 && known.lo < known.hi {
            let width = known.hi.abs_diff(known.lo).saturating_add(1);
            spread_room.push(r.min(width));
        }
        plans.push(Some((known, r)));
    }
    let spread = spread_room.len();
    let ncells = read_ints(br, spread)?;
    let mut total = 0usize;
    for (&c, &room) in ncells.iter().zip(&spread_room) {
        let c = u64::try_from(c)
            .ok()
            .and_then(|c| c.checked_add(1))
            .filter(|&c| c <= room)
            .ok_or(Error::Corrupt("sketch cell count out of range"))?;
        total = total
            .checked_add(c as usize)
            .filter(|&t| t <= MAX_CELLS)
            .ok_or(Error::Corrupt("too many sketch cells"))?;
    }
    let keys = read_ints(br, total)?;
    let counts = read_ints(br, total - spread)?;
    let (mut keys, mut counts, mut ncells) = (keys.iter(), counts.iter(), ncells.iter());

    for ((_, s), plan) in out.iter_mut().zip(plans) {
        let Some((known, r)) = plan else {
            let (sketch, used) = Sketch::decode(br.remaining())?;
            br.advance(used)?;
            if sketch.count() != s.count {
                return Err(Error::Corrupt("summary count differs from its sketch"));
            }
            s.sketch = sketch;
            continue;
        };
        let mut sketch = limits.empty_like();
        for &key in known.keys.iter().flatten() {
            sketch.add_cell(key, 1)?;
        }
        if r > 0 && known.lo == known.hi {
            sketch.add_cell(known.lo, r)?;
        } else if r > 0 {
            let c = ncells.next().copied().unwrap_or(0) as u64 + 1;
            if c > r {
                return Err(Error::Corrupt("more sketch cells than points"));
            }
            let (mut key, mut left) = (known.lo, r);
            for j in 0..c {
                let step = keys.next().copied().ok_or(Error::Corrupt("short sketch cells"))?;
                key = if j == 0 {
                    key.checked_add(step)
                } else {
                    key.checked_add(step).and_then(|k| k.checked_add(1))
                }
                .filter(|&k| step >= 0 && k <= known.hi)
                .ok_or(Error::Corrupt("sketch cell outside its bucket's range"))?;
                let count = if j + 1 == c {
                    left
                } else {
                    let count = counts
                        .next()
                        .and_then(|&x| u64::try_from(x).ok())
                        .and_then(|x| x.checked_add(1))
                        .ok_or(Error::Corrupt("bad sketch cell count"))?;
                    // The last cell must keep at least one point.
                    left = left
                        .checked_sub(count)
                        .filter(|&l| l > 0)
                        .ok_or(Error::Corrupt("sketch cells hold more points than the bucket"))?;
                    count
                };
                sketch.add_cell(key, count)?;
            }
        }
        s.sketch = sketch;
    }
    Ok(())
}
