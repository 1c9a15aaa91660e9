//! The in-memory head chunk: the open, append-only tail of one series, kept as a single bit
//! stream so an active series costs a few hundred bytes rather than two vectors. Timestamps are
//! delta-of-delta coded with Prometheus-style variable-length buckets, floats Gorilla XOR coded,
//! integers delta-of-delta zigzag coded, booleans one bit each and strings length-prefixed.
//!
//! A push turns the timestamp and the value into one code each and writes them together through
//! the bit writer's 64-bit accumulator, so the chunk's buffer is touched once per 64 bits; the
//! buffer grows by half its length (at least 128 bytes), not doubling. Appending 10M points
//! round-robin across 100k chunks, as the store does (`examples/head_push.rs`), costs ~30 ns
//! per point on the development VM (most of it cache misses on the chunks), ~17 ns with the
//! chunks in cache.
//!
//! Measured heap bytes at 120 / 240 points (10 s ± 2 ms clock, report in
//! `tests/block_size.rs`): noisy floats (2-decimal percentages, full-noise gauges, durations)
//! ~1.3 KiB / ~1.9 KiB, steady counters 0.6-0.9 / 1.3-1.9 KiB, memory bytes 256 / 576,
//! constants and rare counters 256 / 384, plus 104 bytes for the struct itself.
//! So a head chunk should be sealed at 120 points to keep an active series within 2 KiB.

use crate::bits::{BitReader, BitWriter, bit_len, unzigzag, zigzag};
use crate::block::MAX_BLOCK_POINTS;
use crate::error::{Error, Result};
use crate::gorilla::{XorDecoder, XorEncoder};
use crate::value::{Kind, ValueRef, Values};

/// Variable-length buckets for a zigzagged delta-of-delta after the leading '0' (zero) case:
/// (prefix, prefix bits, payload bits). Sized for millisecond timestamps with jitter: a few ms of
/// jitter lands in the 8-bit bucket, a missed scrape in the 15- or 22-bit one.
const BUCKETS: [(u64, u32, u32); 5] = [
    (0b10, 2, 6),
    (0b110, 3, 12),
    (0b1110, 4, 20),
    (0b11110, 5, 32),
    (0b11111, 5, 64),
];

/// Code of a zigzagged delta-of-delta by its bit length (0 to 32): the bucket's prefix already
/// shifted above the payload, and the total bits. A table lookup instead of a chain of compares,
/// because jittered timestamps make the bucket unpredictable from one series to the next.
// Built at compile time, where an out-of-range index fails the build rather than a push.
#[allow(clippy::indexing_slicing)]
const DOD_CODES: [(u64, u32); 33] = {
    let mut t = [(0u64, 1u32); 33];
    let mut bl = 1;
    while bl <= 32 {
        let mut b = 0;
        while BUCKETS[b].2 < bl as u32 {
            b += 1;
        }
        let (prefix, plen, payload) = BUCKETS[b];
        t[bl] = (prefix << payload, plen + payload);
        bl += 1;
    }
    t
};

/// The bits of a delta-of-delta as `(code, bit count)`: at most 37, or 69 for jumps of 2^31 and
/// more.
#[inline(always)]
fn dod_code(v: i64) -> (u128, u32) {
    let z = zigzag(v);
    match DOD_CODES.get(bit_len(z) as usize) {
        Some(&(prefix, n)) => (u128::from(prefix | z), n),
        None => ((0b11111 << 64) | u128::from(z), 69),
    }
}

#[inline]
fn read_dod(r: &mut BitReader<'_>) -> i64 {
    let mut ones = 0usize;
    while ones < 4 && r.read_bit() {
        ones += 1;
    }
    if ones == 0 {
        return 0;
    }
    // After four ones the fifth bit picks between the 32- and 64-bit buckets.
    let idx = if ones == 4 {
        if r.read_bit() { 4 } else { 3 }
    } else {
        ones - 1
    };
    let payload = BUCKETS.get(idx).map_or(64, |b| b.2);
    unzigzag(r.read(payload))
}

/// In-memory head chunk of one series; see the module docs for the encoding.
#[derive(Clone, Debug)]
pub struct HeadChunk {
    kind: Kind,
    count: u32,
    first_ts: i64,
    last_ts: i64,
    last_delta: i64,
    last_int: i64,
    last_int_delta: i64,
    xor: XorEncoder,
    bits: BitWriter,
}

impl HeadChunk {
    pub fn new(kind: Kind) -> Self {
        Self {
            kind,
            count: 0,
            first_ts: 0,
            last_ts: 0,
            last_delta: 0,
            last_int: 0,
            last_int_delta: 0,
            xor: XorEncoder::new(),
            bits: BitWriter::new(),
        }
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    pub fn len(&self) -> usize {
        self.count as usize
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn first_ts(&self) -> Option<i64> {
        (self.count > 0).then_some(self.first_ts)
    }

    pub fn last_ts(&self) -> Option<i64> {
        (self.count > 0).then_some(self.last_ts)
    }

    /// Bytes of heap this chunk holds (for memory accounting).
    pub fn heap_bytes(&self) -> usize {
        self.bits.capacity()
    }

    /// Bytes of encoded data (without spare capacity).
    pub fn encoded_bytes(&self) -> usize {
        self.bits.bit_len().div_ceil(8)
    }

    /// Releases spare capacity, e.g. for a series that went quiet.
    pub fn shrink_to_fit(&mut self) {
        self.bits.shrink_to_fit();
    }

    /// Appends; Err if `ts` is not after the last timestamp (the store handles out-of-order
    /// points itself), if the kind differs, or if the chunk already holds [`MAX_BLOCK_POINTS`].
    pub fn push(&mut self, ts: i64, v: ValueRef<'_>) -> Result<()> {
        if v.kind() != self.kind {
            return Err(Error::KindMismatch {
                expected: self.kind,
                got: v.kind(),
            });
        }
        if self.count > 0 && ts <= self.last_ts {
            return Err(Error::OutOfOrder { ts, last: self.last_ts });
        }
        if self.count as usize >= MAX_BLOCK_POINTS {
            return Err(Error::TooManyPoints(self.count as usize + 1));
        }
        // Each part of the point is first turned into a code, and the codes go out together:
        // chained writes would each wait on the previous one's accumulator update.
        let (ts_code, ts_bits) = if self.count == 0 {
            self.first_ts = ts;
            (u128::from(ts as u64), 64)
        } else {
            // Wrapping arithmetic keeps huge jumps (up to the whole i64 range) lossless.
            let delta = ts.wrapping_sub(self.last_ts);
            let code = dod_code(delta.wrapping_sub(self.last_delta));
            self.last_delta = delta;
            code
        };
        self.last_ts = ts;
        let (code, bits) = match v {
            ValueRef::Float(x) => self.xor.code(x),
            ValueRef::Int(x) => self.int_code(x),
            ValueRef::UInt(x) => self.int_code(x as i64),
            ValueRef::Bool(b) => (u128::from(b), 1),
            ValueRef::Str(s) => {
                self.bits.write_wide(ts_code, ts_bits);
                let (len_code, len_bits) = dod_code(s.len() as i64);
                self.bits.write_wide(len_code, len_bits);
                self.bits.write_bytes(s.as_bytes());
                self.count += 1;
                return Ok(());
            }
        };
        if ts_bits + bits <= 128 {
            self.bits.write_wide((ts_code << bits) | code, ts_bits + bits);
        } else {
            self.bits.write_wide(ts_code, ts_bits);
            self.bits.write_wide(code, bits);
        }
        self.count += 1;
        Ok(())
    }

    #[inline(always)]
    fn int_code(&mut self, x: i64) -> (u128, u32) {
        let code = if self.count == 0 {
            (u128::from(x as u64), 64)
        } else {
            let delta = x.wrapping_sub(self.last_int);
            let code = dod_code(delta.wrapping_sub(self.last_int_delta));
            self.last_int_delta = delta;
            code
        };
        self.last_int = x;
        code
    }

    /// Decodes everything appended so far into the given buffers (cleared first).
    pub fn decode_into(&self, ts: &mut Vec<i64>, values: &mut Values) -> Result<()> {
        ts.clear();
        values.reset(self.kind);
        let n = self.count as usize;
        ts.reserve(n);
        let bytes = self.bits.bytes();
        let mut r = BitReader::with_bit_len(&bytes, self.bits.bit_len());
        let mut t = 0i64;
        let mut delta = 0i64;
        let mut read_ts = |r: &mut BitReader<'_>, i: usize| {
            if i == 0 {
                t = r.read(64) as i64;
            } else {
                delta = delta.wrapping_add(read_dod(r));
                t = t.wrapping_add(delta);
            }
            t
        };
        match values {
            Values::Float(out) => {
                out.reserve(n);
                let mut dec = XorDecoder::new();
                for i in 0..n {
                    ts.push(read_ts(&mut r, i));
                    out.push(dec.decode(&mut r)?);
                }
            }
            Values::Int(out) => {
                out.reserve(n);
                let mut ints = IntDecoder::default();
                for i in 0..n {
                    ts.push(read_ts(&mut r, i));
                    out.push(ints.decode(&mut r, i));
                }
            }
            Values::UInt(out) => {
                out.reserve(n);
                let mut ints = IntDecoder::default();
                for i in 0..n {
                    ts.push(read_ts(&mut r, i));
                    out.push(ints.decode(&mut r, i) as u64);
                }
            }
            Values::Bool(out) => {
                out.reserve(n);
                for i in 0..n {
                    ts.push(read_ts(&mut r, i));
                    out.push(r.read_bit());
                }
            }
            Values::Str(out) => {
                out.reserve(n);
                let mut buf = Vec::new();
                for i in 0..n {
                    ts.push(read_ts(&mut r, i));
                    let len = read_dod(&mut r);
                    let remaining = self.bits.bit_len().saturating_sub(r.position()) / 8;
                    let len = usize::try_from(len)
                        .ok()
                        .filter(|&l| l <= remaining)
                        .ok_or(Error::Truncated)?;
                    buf.clear();
                    r.read_bytes(len, &mut buf);
                    let s = String::from_utf8(std::mem::take(&mut buf))
                        .map_err(|_| Error::Corrupt("string is not UTF-8"))?;
                    out.push(s);
                }
            }
        }
        r.check()
    }
}

#[derive(Default)]
struct IntDecoder {
    last: i64,
    delta: i64,
}

impl IntDecoder {
    #[inline]
    fn decode(&mut self, r: &mut BitReader<'_>, i: usize) -> i64 {
        if i == 0 {
            self.last = r.read(64) as i64;
        } else {
            self.delta = self.delta.wrapping_add(read_dod(r));
            self.last = self.last.wrapping_add(self.delta);
        }
        self.last
    }
}
