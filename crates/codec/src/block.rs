//! The sealed-block codec: one self-describing byte string per series block, holding its
//! timestamps and values, with every codec chosen per block by encoded size.
//!
//! Timestamps and integers go through the integer section coder: the best of four transforms
//! (raw, delta, delta-of-delta, distance from a line), division by the residuals' common factor,
//! and partitioned Rice coding (or varints, when smaller). Floats are first tried as decimals
//! (`mantissa / 10^d` with one `d` per block, kept only if every value round-trips bit for bit,
//! as VictoriaMetrics does) so percentages, byte counts, CPU seconds and nanosecond durations
//! become small integers; any other block of floats takes the smaller of Gorilla XOR and the
//! integer coder over the floats' order-preserving bit patterns (smoothly drifting noise differs
//! in few high bits). Strings become a dictionary plus an index per point. Finally the body is
//! zstd-compressed when that is smaller, which in practice happens for strings only. The byte
//! layout is [`FORMAT`].
//!
//! # Measured size
//!
//! Bytes per sample on disk, timestamps (ms) included, for one day of synthetic series per shape
//! (generators in `tests/common`), printed by
//! `cargo run -p pulsewire-codec --release --example codec_report`.
//! Columns: this codec with blocks of 720 / 30 / 120 / 1000 points; then at 720 points, pinned
//! to delta-of-delta + Rice without zstd, pinned to delta-of-delta + varint + zstd (`dod+vi+zs`,
//! VictoriaMetrics-like), and floats pinned to Gorilla XOR; last, the head chunk's own
//! encoding in chunks of 120 (Prometheus-like Gorilla). Blocks carry ~20-25 bytes of fixed
//! overhead (absolute first timestamp and value, parameters), hence the cost of small blocks.
//!
//! ```text
//! 10 s grid              auto/720    auto/30   auto/120  auto/1000   dod+rice  dod+vi+zs gorilla-fl   head/120
//! Percent2dp                1.262      1.877      1.396      1.256      1.333      1.634      4.606      7.026
//! Percent1dp                0.857      1.470      0.992      0.849      0.912      1.033      3.218      6.853
//! FloatNoise                6.311      7.186      6.499      6.301      6.384      6.891      6.874      7.051
//! Duration9dp               2.771      3.490      2.927      2.763      2.934      3.410      7.028      7.256
//! MemBytes                  0.646      1.434      0.816      0.637      0.936      1.208      0.864      1.074
//! CounterBytes              2.597      3.362      2.763      2.588      2.654      3.047      3.796      3.948
//! CounterCpuSeconds         1.147      1.885      1.309      1.137      1.212      1.474      5.147      5.591
//! CounterSparse             0.094      0.690      0.222      0.087      0.097      0.122      0.122      0.435
//! Constant                  0.032      0.733      0.183      0.024      0.032      0.046      0.050      0.408
//! IntGauge                  0.268      0.816      0.387      0.260      0.330      0.417      0.268      0.775
//! BoolFlag                  0.027      0.534      0.135      0.022      0.027      0.044      0.027      0.342
//! StrState                  0.064      0.894      0.240      0.053      0.064      0.087      0.064      9.399
//! StrEvents                 6.652     11.895      7.838      6.598     32.040      6.652      6.652     32.753
//! host mix                  0.915      1.619      1.068      0.907      0.963      1.109      2.166      2.683
//!
//! host mix by clock      auto/720    auto/30   auto/120  auto/1000   dod+rice  dod+vi+zs gorilla-fl   head/120
//! 10 s                      0.915      1.619      1.068      0.907      0.963      1.109      2.166      2.683
//! 10 s ± 2 ms jitter        1.277      2.064      1.448      1.268      1.523      1.808      2.554      3.527
//! 1 s                       0.822      1.490      0.966      0.814      0.868      1.018      1.967      2.589
//! 1 s ± 2 ms jitter         1.157      1.914      1.322      1.147      1.401      1.637      2.351      3.350
//! ```
//!
//! The host mix weights shapes as a node_exporter census does (`HOST_MIX` in the tests): 40%
//! constants, 14% rare counters, 17% CPU-seconds-like counters, 4% busy byte counters, 6% memory
//! bytes, 7% decimal gauges, 6% nanosecond durations, 6% full-noise floats. Noisy values cost
//! what their entropy costs (a full-noise float ~6.3 bytes, a 2-decimal percentage moving by
//! ~2 points ~1.2 bytes); the 1-byte target holds because most host series barely move.
//! Timestamps on an exact grid cost next to nothing (a constant series takes 0.03 bytes per
//! sample, all of it block overhead); ±2 ms of uniform jitter costs ~0.31 bytes
//! (its entropy alone is 0.29), which is why aligning scrape timestamps to the grid, as
//! Prometheus does within 2 ms, matters more than any value codec.

use crate::bits::{BitWriter, ByteReader, put_uvarint, varint_into};
use crate::error::{Error, Result};
use crate::gorilla::XorEncoder;
use crate::ints::{IntChoice, Search, decode_ints, encode_ints};
pub use crate::ints::{IntTransform, ResidualCoding};
use crate::value::{Kind, Values};
use crate::zstd_ctx;

/// Byte layout of a sealed block (version 1), for docs/storage.md. Varints are LEB128; "zz"
/// means zigzag-mapped first; bit streams are MSB first.
pub const FORMAT: &str = r#"
block    := tag:u8 payload
  tag 0x01 (TAG_PLAIN): payload = body
  tag 0x02 (TAG_ZSTD):  payload = body_len:varint zstd_frame(body)
body     := kind:u8 n:varint ts:ints(n) values          (nothing may follow)
  kind: 0 Float, 1 Int, 2 UInt, 3 Bool, 4 Str;  n <= MAX_BLOCK_POINTS (2^20)
values   := Float: 0x00 d:u8 ints(n)     decimal: value = (m as f64) / 10^d, d <= 18
          | Float: 0x01 xor_bits(n)       Gorilla XOR, padded to a byte
          | Float: 0x02 ints(n)           ordered bit patterns: the f64 bits as i64,
                                          bits 0-62 flipped when negative
          | Int:   ints(n)
          | UInt:  ints(n)                u64 reinterpreted as i64
          | Bool:  ints(n)                0 or 1
          | Str:   k:varint (len:varint utf8-bytes){k} ints(n)
                                          dictionary of distinct strings in first-seen
                                          order, then each point's index into it
ints(n)  := nothing                                   if n = 0
          | first:zz-varint                           if n = 1
          | first:zz-varint hdr:u8 c:zz-varint [b:zz-varint] [g:varint] residuals
  hdr bits 0-2, transform of v[1..n-1] into residuals r (all arithmetic wraps at 64 bits):
      0 Raw     r[i] = v[i] - c
      1 Delta   r[i] = v[i] - v[i-1] - c
      2 DoD     r[i] = d[i] - d[i-1], d[i] = v[i] - v[i-1], d[0] = c
      3 Linear  r[i] = v[i] - (v[0] + b + i*c)        (b present only for Linear)
  hdr bit 5: residuals were divided by g (g present, g >= 2): r = g * stored
  hdr bit 7: every residual is 0 and nothing follows hdr's parameters
  hdr bit 6: residuals are zz-varints, one per point
  otherwise: bit stream, padded to a byte, of partitions of 32 residuals (last shorter);
  each partition's parameters are given anew or repeated from the previous partition
  (before the first: mode 0, k 0):
      partition := '0'                           all zero
                 | '10' value{len}               same parameters as the previous partition
                 | '11' 0b00 k:6 value{len}      Rice:      value := code(z)
                 | '11' 0b01 k:6 value{len}      zero flag: value := '0' if z = 0
                                                                   | '1' code(z - 1)
                 | '11' 0b10 e:6 max_low:e value{len}
                                                 bounded:   max = 2^e + max_low < 2^32,
                                                 value := truncated binary of z in [0, max]
      where z = zigzag(r);
      code(z)   := q x '0', '1', low k bits of z     when q = z >> k < 20
                 | 20 x '0', e:6, low e bits of q, low k bits of z
                                         escape: q has e+1 bits, its top bit implied
      truncated binary over [0, max]: m = max + 1, t = floor(log2 m), u = 2^(t+1) - m;
                 z < u: z in t bits;  otherwise z + u in t + 1 bits
xor_bits := first:64, then per value: '0' same as previous
          | '10' meaningful bits in the previous window
          | '11' lead:5 len:6 meaningful bits   (len 0 means 64)
"#;

/// Tag of a block whose body is stored as is.
pub const TAG_PLAIN: u8 = 0x01;
/// Tag of a block whose body is zstd-compressed.
pub const TAG_ZSTD: u8 = 0x02;

/// Upper bound on points in one block or head chunk; decoders reject larger counts so a corrupt
/// length cannot make them allocate without bound.
pub const MAX_BLOCK_POINTS: usize = 1 << 20;

/// zstd level for numeric blocks. Measured, zstd never shrank a numeric block of the synthetic
/// host series (the Rice-coded body has little redundancy left), so the attempt is kept cheap.
const ZSTD_LEVEL: i32 = 3;
/// zstd level for string blocks, where it does pay (log-like events: 32 -> ~6.5 bytes/point);
/// level 9 gets most of level 19's gain at a tenth of its sealing time.
const ZSTD_LEVEL_STR: i32 = 9;

const FLOAT_DECIMAL: u8 = 0;
const FLOAT_XOR: u8 = 1;
const FLOAT_BITS: u8 = 2;
pub(crate) const MAX_DECIMALS: usize = 18;
pub(crate) const POW10: [f64; MAX_DECIMALS + 1] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18,
];

/// How floats are stored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FloatCodec {
    /// Decimal when every value of the block round-trips, else Gorilla XOR.
    #[default]
    Auto,
    /// Always Gorilla XOR.
    Gorilla,
    /// Never decimal: the smaller of Gorilla XOR and ordered bit patterns.
    NoDecimal,
}

/// Pins codec choices that [`encode_block`] otherwise makes by size (measurement and tests), and
/// sets the effort (`fast`, used by the store at checkpoints).
#[derive(Clone, Copy, Debug, Default)]
pub struct BlockOptions {
    /// Transform for the timestamp section (`None`: smallest).
    pub ts_transform: Option<IntTransform>,
    /// Transform for integer value sections (`None`: smallest).
    pub value_transform: Option<IntTransform>,
    /// Residual coding of every integer section (`None`: smallest).
    pub coding: Option<ResidualCoding>,
    pub float: FloatCodec,
    /// `Some(true)`: always zstd; `Some(false)`: never; `None`: when smaller (with `fast`, for
    /// strings only).
    pub zstd: Option<bool>,
    /// Less effort: candidate Rice codings are sized by estimate instead of exactly, candidate
    /// transforms are compared on a section's first 128 values (medians of a sample, the search
    /// ended by all-zero residuals) and the chosen one applied to the whole section, and numeric
    /// blocks are not offered to zstd (it pays for strings only in practice). For sealing at
    /// checkpoints and hot merges, where full effort took ~20 % of the server's CPU at full
    /// ingest (`perf`); about half the encoding time of full effort (host mix: 44/33/24 against
    /// 95/65/55 ns per point in blocks of 30/120/720) for the same size to 0.1 %
    /// (`cargo run -p pulsewire-codec --release --example encode_speed`; `codec_report`'s
    /// `fast/720` column).
    pub fast: bool,
}

/// Encodes one series block (timestamps strictly increasing, one value per timestamp), choosing
/// every codec by size.
pub fn encode_block(ts: &[i64], values: &Values, out: &mut Vec<u8>) -> Result<()> {
    encode_block_with(ts, values, &BlockOptions::default(), out)
}

/// [`encode_block`] with some choices pinned.
pub fn encode_block_with(ts: &[i64], values: &Values, opts: &BlockOptions, out: &mut Vec<u8>) -> Result<()> {
    if ts.len() != values.len() {
        return Err(Error::LengthMismatch {
            ts: ts.len(),
            values: values.len(),
        });
    }
    if ts.len() > MAX_BLOCK_POINTS {
        return Err(Error::TooManyPoints(ts.len()));
    }
    for w in ts.windows(2) {
        if let [a, b] = *w
            && b <= a
        {
            return Err(Error::OutOfOrder { ts: b, last: a });
        }
    }
    let search = if opts.fast { Search::Sampled } else { Search::Exact };
    let mut body = Vec::with_capacity(16 + ts.len() * 2);
    body.push(values.kind().code());
    put_uvarint(&mut body, ts.len() as u64);
    encode_ints(
        ts,
        &IntChoice {
            transform: opts.ts_transform,
            coding: opts.coding,
            search,
        },
        &mut body,
    );
    let ints = IntChoice {
        transform: opts.value_transform,
        coding: opts.coding,
        search,
    };
    match values {
        Values::Float(v) => encode_floats(v, opts.float, &ints, &mut body),
        Values::Int(v) => encode_ints(v, &ints, &mut body),
        Values::UInt(v) => {
            let v: Vec<i64> = v.iter().map(|&x| x as i64).collect();
            encode_ints(&v, &ints, &mut body);
        }
        Values::Bool(v) => {
            let v: Vec<i64> = v.iter().map(|&x| i64::from(x)).collect();
            encode_ints(&v, &ints, &mut body);
        }
        Values::Str(v) => encode_strings(v, &ints, &mut body),
    }

    let compressed = match opts.zstd {
        Some(false) => false,
        None if opts.fast && values.kind() != Kind::Str => false,
        force => {
            let level = if values.kind() == Kind::Str {
                ZSTD_LEVEL_STR
            } else {
                ZSTD_LEVEL
            };
            zstd_ctx::compress(&body, level, |frame| {
                let mut len = [0u8; 10];
                let len = varint_into(&mut len, body.len() as u64);
                let keep = force == Some(true) || len.len() + frame.len() < body.len();
                if keep {
                    out.push(TAG_ZSTD);
                    out.extend_from_slice(len);
                    out.extend_from_slice(frame);
                }
                keep
            })?
        }
    };
    if !compressed {
        out.push(TAG_PLAIN);
        out.extend_from_slice(&body);
    }
    Ok(())
}

#[inline]
pub(crate) fn from_decimal(m: i64, d: usize) -> f64 {
    match POW10.get(d) {
        Some(&p) if d > 0 => m as f64 / p,
        _ => m as f64,
    }
}

/// Mantissa of `v` at `d` decimals, if it round-trips bit for bit.
#[inline]
pub(crate) fn to_decimal(v: f64, d: usize) -> Option<i64> {
    let scaled = (v * POW10.get(d)?).round();
    // Anything at or beyond 2^63 does not fit an i64.
    if !scaled.is_finite() || scaled.abs() >= 2f64.powi(63) {
        return None;
    }
    let m = scaled as i64;
    (from_decimal(m, d).to_bits() == v.to_bits()).then_some(m)
}

/// Decimal mantissas of the whole block at one exponent, if every value round-trips.
pub(crate) fn decimals(v: &[f64]) -> Option<(usize, Vec<i64>)> {
    let mut d = 0;
    for &x in v {
        // Fewest decimals for this value, at least the block's current count.
        d = (d..=MAX_DECIMALS).find(|&d| to_decimal(x, d).is_some())?;
    }
    let m: Option<Vec<i64>> = v.iter().map(|&x| to_decimal(x, d)).collect();
    m.map(|m| (d, m))
}

/// Maps a float's bits to an integer whose order follows the float's (negative values have
/// their magnitude bits flipped), so close values give close integers. Its own inverse.
#[inline]
pub(crate) fn ordered_bits(bits: i64) -> i64 {
    if bits < 0 { bits ^ i64::MAX } else { bits }
}

fn encode_floats(v: &[f64], codec: FloatCodec, ints: &IntChoice, out: &mut Vec<u8>) {
    if codec == FloatCodec::Auto
        && let Some((d, m)) = decimals(v)
    {
        out.push(FLOAT_DECIMAL);
        out.push(d as u8);
        encode_ints(&m, ints, out);
        return;
    }
    let start = out.len();
    out.push(FLOAT_XOR);
    let mut w = BitWriter::from_vec(std::mem::take(out));
    let mut enc = XorEncoder::new();
    for &x in v {
        enc.encode(&mut w, x);
    }
    *out = w.finish();
    if codec == FloatCodec::Gorilla {
        return;
    }
    // Noisy floats that drift smoothly cost less as differences of their ordered bit patterns
    // than as XORs: the XOR of two close values still has every low mantissa bit set.
    let ordered: Vec<i64> = v.iter().map(|x| ordered_bits(x.to_bits() as i64)).collect();
    let mut alt = vec![FLOAT_BITS];
    encode_ints(&ordered, ints, &mut alt);
    if alt.len() < out.len() - start {
        out.truncate(start);
        out.extend_from_slice(&alt);
    }
}

fn encode_strings(v: &[String], ints: &IntChoice, out: &mut Vec<u8>) {
    let mut dict: Vec<&str> = Vec::new();
    let mut index: std::collections::HashMap<&str, i64> = std::collections::HashMap::new();
    let ids: Vec<i64> = v
        .iter()
        .map(|s| {
            *index.entry(s.as_str()).or_insert_with(|| {
                dict.push(s.as_str());
                dict.len() as i64 - 1
            })
        })
        .collect();
    put_uvarint(out, dict.len() as u64);
    for s in &dict {
        put_uvarint(out, s.len() as u64);
        out.extend_from_slice(s.as_bytes());
    }
    encode_ints(&ids, ints, out);
}

/// Decodes a block written by [`encode_block`] into `ts` and `values` (both cleared first;
/// `values` takes the block's kind).
pub fn decode_block(bytes: &[u8], ts: &mut Vec<i64>, values: &mut Values) -> Result<()> {
    ts.clear();
    values.clear();
    decode_block_with(bytes, ts, values, true)
}

/// Decodes a block written by [`encode_block`] after what `ts` and `values` hold (as many
/// points in each; `values` of the block's kind, else [`Error::KindMismatch`]), so a reader
/// that wants a block's points whole appends them to its answer instead of copying them from
/// a block's vectors. On an error the vectors may hold part of the block.
pub fn decode_block_append(bytes: &[u8], ts: &mut Vec<i64>, values: &mut Values) -> Result<()> {
    if ts.len() != values.len() {
        return Err(Error::Corrupt("appending to columns of different lengths"));
    }
    decode_block_with(bytes, ts, values, false)
}

fn decode_block_with(bytes: &[u8], ts: &mut Vec<i64>, values: &mut Values, adopt_kind: bool) -> Result<()> {
    let mut br = ByteReader::new(bytes);
    match br.u8()? {
        TAG_PLAIN => decode_body(br.remaining(), ts, values, adopt_kind),
        TAG_ZSTD => {
            // A body never needs more than ~10 bytes per point for timestamps and values, plus
            // strings; bounding it keeps a corrupt length from allocating without limit.
            let len = br.len(64 << 20)?;
            zstd_ctx::decompress(br.remaining(), len, |body| decode_body(body, ts, values, adopt_kind))
        }
        tag => Err(Error::UnknownTag(tag)),
    }
}

fn decode_body(body: &[u8], ts: &mut Vec<i64>, values: &mut Values, adopt_kind: bool) -> Result<()> {
    let mut br = ByteReader::new(body);
    let kind = Kind::from_code(br.u8()?)?;
    if adopt_kind {
        values.reset(kind);
    } else if values.kind() != kind {
        return Err(Error::KindMismatch {
            expected: values.kind(),
            got: kind,
        });
    }
    let n = br.len(MAX_BLOCK_POINTS)?;
    ts.reserve(n);
    decode_ints(&mut br, n, |t| ts.push(t))?;
    let mut bad = false;
    match values {
        Values::Float(out) => {
            out.reserve(n);
            match br.u8()? {
                FLOAT_DECIMAL => {
                    let d = usize::from(br.u8()?);
                    if d > MAX_DECIMALS {
                        return Err(Error::Corrupt("decimal exponent out of range"));
                    }
                    decode_ints(&mut br, n, |m| out.push(from_decimal(m, d)))?;
                }
                FLOAT_XOR => crate::gorilla::decode_xor_section(&mut br, n, out)?,
                FLOAT_BITS => {
                    decode_ints(&mut br, n, |b| out.push(f64::from_bits(ordered_bits(b) as u64)))?;
                }
                _ => return Err(Error::Corrupt("unknown float codec")),
            }
        }
        Values::Int(out) => {
            out.reserve(n);
            decode_ints(&mut br, n, |v| out.push(v))?;
        }
        Values::UInt(out) => {
            out.reserve(n);
            decode_ints(&mut br, n, |v| out.push(v as u64))?;
        }
        Values::Bool(out) => {
            out.reserve(n);
            decode_ints(&mut br, n, |v| {
                bad |= !(0..=1).contains(&v);
                out.push(v == 1);
            })?;
        }
        Values::Str(out) => {
            let k = br.len(n)?;
            let mut dict = Vec::with_capacity(k);
            for _ in 0..k {
                let len = br.len(body.len())?;
                let s = std::str::from_utf8(br.take(len)?).map_err(|_| Error::Corrupt("string is not UTF-8"))?;
                dict.push(s);
            }
            out.reserve(n);
            decode_ints(&mut br, n, |i| {
                match usize::try_from(i).ok().and_then(|i| dict.get(i)) {
                    Some(s) => out.push((*s).to_owned()),
                    None => bad = true,
                }
            })?;
        }
    }
    if bad {
        return Err(Error::Corrupt("value out of range for its kind"));
    }
    if br.position() != body.len() {
        return Err(Error::Corrupt("trailing bytes after block"));
    }
    if values.len() != ts.len() {
        return Err(Error::Corrupt("value count differs from timestamp count"));
    }
    Ok(())
}
