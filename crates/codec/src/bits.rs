//! Bit and byte plumbing shared by every codec: an MSB-first bit writer that appends to a byte
//! vector (so a head chunk can keep writing into the same buffer between pushes), a bit reader
//! that refills 64 bits at a time for fast decoding, varints, zigzag, and a byte cursor whose
//! every read is bounds-checked.

use crate::error::{Error, Result};

/// Maps signed to unsigned so small magnitudes of either sign become small numbers.
#[inline]
pub(crate) fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

#[inline]
pub(crate) fn unzigzag(z: u64) -> i64 {
    ((z >> 1) as i64) ^ -((z & 1) as i64)
}

/// Number of significant bits of `v` (0 for 0).
#[inline]
pub(crate) fn bit_len(v: u64) -> u32 {
    64 - v.leading_zeros()
}

pub(crate) fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Writes `v` as a varint into `buf` and returns the bytes used.
pub(crate) fn varint_into(buf: &mut [u8; 10], mut v: u64) -> &[u8] {
    let mut n = 0;
    for slot in buf.iter_mut() {
        n += 1;
        if v < 0x80 {
            *slot = v as u8;
            break;
        }
        *slot = (v as u8) | 0x80;
        v >>= 7;
    }
    buf.get(..n).unwrap_or(&[])
}

pub(crate) fn put_ivarint(out: &mut Vec<u8>, v: i64) {
    put_uvarint(out, zigzag(v));
}

/// Appends bits most-significant first to a byte vector.
///
/// Bits collect in a 64-bit accumulator and reach the vector eight bytes at a time, so a write is
/// a few register operations and the buffer is touched once per 64 bits. That matters for head
/// chunks: with 100k series appended round-robin, each chunk's buffer has left the CPU caches
/// since its previous point, and writing into its last byte on every append cost a cache miss
/// (plus a capacity check per byte pushed).
///
/// The buffer grows by half its length (at least [`MIN_GROWTH`] bytes) while small and by an
/// eighth past [`GROWTH_KNEE`], rather than doubling: a head chunk's footprint stays within ~1.5x
/// of its content, yet it reallocates 3-5 times on its way to 1 KiB. Growing by a quarter from
/// 32 bytes took 12, and each reallocation among 100k interleaved chunks costs a few hundred ns
/// of allocator work on cold memory, a fifth of all push time.
#[derive(Default, Clone, Debug)]
pub(crate) struct BitWriter {
    /// Whole 64-bit words (and, after [`BitWriter::from_vec`], any earlier bytes) written so far.
    buf: Vec<u8>,
    /// Pending bits, left-aligned: the top `nacc` bits are valid, the rest are zero.
    acc: u64,
    /// Number of pending bits, always below 64.
    nacc: u32,
}

/// Length past which the writer's buffer grows by an eighth instead of a half: beyond a typical
/// head chunk, where slack costs more than the occasional copy.
const GROWTH_KNEE: usize = 2048;
/// Smallest growth step, so the first allocation holds a constant series' whole chunk (16 bytes
/// for the first point, then ~2 bits per point) and a noisy one's first dozen points.
const MIN_GROWTH: usize = 128;

impl BitWriter {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Continues writing at the end of `buf` (which must hold only whole bytes).
    pub(crate) fn from_vec(buf: Vec<u8>) -> Self {
        Self { buf, acc: 0, nacc: 0 }
    }

    pub(crate) fn bit_len(&self) -> usize {
        self.buf.len() * 8 + self.nacc as usize
    }

    /// Everything written so far, the last byte zero-padded; borrowed when it ends on a word.
    pub(crate) fn bytes(&self) -> std::borrow::Cow<'_, [u8]> {
        if self.nacc == 0 {
            return std::borrow::Cow::Borrowed(&self.buf);
        }
        let mut out = Vec::with_capacity(self.buf.len() + 8);
        out.extend_from_slice(&self.buf);
        self.push_pending(&mut out);
        std::borrow::Cow::Owned(out)
    }

    /// Heap bytes held.
    pub(crate) fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    pub(crate) fn shrink_to_fit(&mut self) {
        self.buf.shrink_to_fit();
    }

    #[inline]
    pub(crate) fn write_bit(&mut self, bit: bool) {
        self.write(bit as u64, 1);
    }

    /// Writes the low `n` bits of `value` (n <= 64; higher bits of `value` are ignored).
    #[inline]
    pub(crate) fn write(&mut self, value: u64, n: u32) {
        debug_assert!(n <= 64);
        // Left-aligning drops the bits above the low `n`; n = 0 shifts everything out.
        let v = value.checked_shl(64 - n).unwrap_or(0);
        self.acc |= v >> self.nacc;
        let total = self.nacc + n;
        if total >= 64 {
            self.flush_word();
            // The bits that did not fit; none when the accumulator was empty (n = 64).
            self.acc = v.checked_shl(64 - self.nacc).unwrap_or(0);
            self.nacc = total - 64;
        } else {
            self.nacc = total;
        }
    }

    /// Writes the low `n` bits of `value` (n <= 128; higher bits of `value` are ignored), for
    /// codes joined from several parts.
    #[inline(always)]
    pub(crate) fn write_wide(&mut self, value: u128, n: u32) {
        debug_assert!(n <= 128);
        let v = value.checked_shl(128 - n).unwrap_or(0);
        self.acc |= ((v >> 64) as u64) >> self.nacc;
        let total = self.nacc + n;
        if total < 64 {
            self.nacc = total;
            return;
        }
        self.flush_word();
        // What did not fit, left-aligned: the first 64 - nacc bits went out.
        let rest = v << (64 - self.nacc);
        let left = total - 64;
        self.acc = (rest >> 64) as u64;
        if left >= 64 {
            self.flush_word();
            self.acc = rest as u64;
            self.nacc = left - 64;
        } else {
            self.nacc = left;
        }
    }

    #[inline]
    fn flush_word(&mut self) {
        if self.buf.capacity() - self.buf.len() < 8 {
            self.grow();
        }
        self.buf.extend_from_slice(&self.acc.to_be_bytes());
    }

    #[cold]
    #[inline(never)]
    fn grow(&mut self) {
        let len = self.buf.len();
        let step = if len < GROWTH_KNEE { len / 2 } else { len / 8 };
        self.buf.reserve_exact(step.max(MIN_GROWTH));
    }

    /// Appends the pending bits to `out` as whole bytes, zero-padded.
    fn push_pending(&self, out: &mut Vec<u8>) {
        let bytes = self.acc.to_be_bytes();
        out.extend_from_slice(bytes.get(..self.nacc.div_ceil(8) as usize).unwrap_or(&bytes));
    }

    /// Appends whole bytes (at any bit position).
    pub(crate) fn write_bytes(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            let mut w = [0u8; 8];
            w.copy_from_slice(word);
            self.write(u64::from_be_bytes(w), 64);
        }
        for &b in words.remainder() {
            self.write(u64::from(b), 8);
        }
    }

    /// Pads to a byte boundary and returns the bytes.
    pub(crate) fn finish(mut self) -> Vec<u8> {
        let mut buf = std::mem::take(&mut self.buf);
        self.push_pending(&mut buf);
        buf
    }
}

/// Reads bits most-significant first. Reads past the end yield zeros and are detected by
/// [`BitReader::check`], so inner loops carry no error branches; every loop that reads is bounded
/// by a count, so a corrupt stream cannot spin.
pub(crate) struct BitReader<'a> {
    data: &'a [u8],
    /// Next byte to load into `acc`.
    pos: usize,
    /// Unread bits, left-aligned.
    acc: u64,
    /// Number of valid bits in `acc`.
    nacc: u32,
    /// Bits the stream really holds (the last byte may be partly padding).
    limit_bits: usize,
}

impl<'a> BitReader<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Self::with_bit_len(data, data.len() * 8)
    }

    pub(crate) fn with_bit_len(data: &'a [u8], limit_bits: usize) -> Self {
        Self {
            data,
            pos: 0,
            acc: 0,
            nacc: 0,
            limit_bits: limit_bits.min(data.len() * 8),
        }
    }

    /// Bits consumed so far.
    #[inline]
    pub(crate) fn position(&self) -> usize {
        self.pos * 8 - self.nacc as usize
    }

    /// Bytes consumed, counting a partly read byte as consumed.
    pub(crate) fn bytes_consumed(&self) -> usize {
        self.position().div_ceil(8)
    }

    /// Err if anything read so far lay beyond the stream.
    pub(crate) fn check(&self) -> Result<()> {
        if self.position() > self.limit_bits {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    /// Makes at least 56 bits available (zeros past the end).
    #[inline]
    fn refill(&mut self) {
        if let Some(chunk) = self.data.get(self.pos..self.pos + 8) {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            // Bits already in `acc` past `nacc` were loaded from the same bytes, so OR-ing the
            // word over them is harmless.
            self.acc |= u64::from_be_bytes(word) >> self.nacc;
            let bytes = (63 - self.nacc) / 8;
            self.pos += bytes as usize;
            self.nacc += bytes * 8;
        } else {
            while self.nacc <= 56 {
                let b = self.data.get(self.pos).copied().unwrap_or(0);
                self.acc |= u64::from(b) << (56 - self.nacc);
                self.nacc += 8;
                self.pos += 1;
            }
        }
    }

    #[inline]
    fn consume(&mut self, n: u32) {
        // n <= nacc <= 63 here, so the shift is in range.
        self.acc <<= n;
        self.nacc -= n;
    }

    /// Reads `n` bits (n <= 64).
    #[inline]
    pub(crate) fn read(&mut self, n: u32) -> u64 {
        if n == 0 {
            return 0;
        }
        if n > 56 {
            let hi = self.read(n - 32);
            let lo = self.read(32);
            return (hi << 32) | lo;
        }
        if self.nacc < n {
            self.refill();
        }
        let v = self.acc >> (64 - n);
        self.consume(n);
        v
    }

    #[inline]
    pub(crate) fn read_bit(&mut self) -> bool {
        self.read(1) == 1
    }

    /// Counts leading zero bits, up to `max` (<= 56), consuming them, plus the terminating one bit
    /// if it came before `max`. Returns the count.
    #[inline]
    pub(crate) fn read_unary(&mut self, max: u32) -> u32 {
        if self.nacc <= max {
            self.refill();
        }
        let lz = self.acc.leading_zeros();
        if lz >= max {
            self.consume(max);
            max
        } else {
            self.consume(lz + 1);
            lz
        }
    }

    /// Reads whole bytes into `out` (appending).
    pub(crate) fn read_bytes(&mut self, n: usize, out: &mut Vec<u8>) {
        for _ in 0..n {
            out.push(self.read(8) as u8);
        }
    }
}

/// A bounds-checked cursor over bytes.
pub(crate) struct ByteReader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> ByteReader<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }

    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    pub(crate) fn remaining(&self) -> &'a [u8] {
        self.data.get(self.pos..).unwrap_or(&[])
    }

    pub(crate) fn advance(&mut self, n: usize) -> Result<()> {
        if n > self.data.len() - self.pos {
            return Err(Error::Truncated);
        }
        self.pos += n;
        Ok(())
    }

    pub(crate) fn u8(&mut self) -> Result<u8> {
        let b = *self.data.get(self.pos).ok_or(Error::Truncated)?;
        self.pos += 1;
        Ok(b)
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).ok_or(Error::Truncated)?;
        let s = self.data.get(self.pos..end).ok_or(Error::Truncated)?;
        self.pos = end;
        Ok(s)
    }

    pub(crate) fn f64(&mut self) -> Result<f64> {
        let s = self.take(8)?;
        let mut b = [0u8; 8];
        b.copy_from_slice(s);
        Ok(f64::from_le_bytes(b))
    }

    pub(crate) fn uvarint(&mut self) -> Result<u64> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            let part = u64::from(b & 0x7f);
            if shift == 63 && part > 1 {
                return Err(Error::Corrupt("varint overflows 64 bits"));
            }
            v |= part << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(Error::Corrupt("varint longer than 10 bytes"))
    }

    pub(crate) fn ivarint(&mut self) -> Result<i64> {
        Ok(unzigzag(self.uvarint()?))
    }

    /// A varint that must fit `usize` and not exceed `max`.
    pub(crate) fn len(&mut self, max: usize) -> Result<usize> {
        let v = self.uvarint()?;
        match usize::try_from(v) {
            Ok(n) if n <= max => Ok(n),
            _ => Err(Error::Corrupt("length out of range")),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    /// Writes a pseudo-random mix of narrow, wide and byte writes, then reads every field back.
    #[test]
    fn writer_and_reader_agree() {
        let mut state = 0x1234_5678_9abc_def0u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for start in [0usize, 3] {
            let mut w = BitWriter::from_vec(vec![0xa5; start]);
            let mut expect: Vec<(u128, u32)> = Vec::new();
            for _ in 0..5000 {
                let r = next();
                let value = (u128::from(next()) << 64) | u128::from(next());
                match r % 3 {
                    0 => {
                        let n = (r >> 8) as u32 % 65;
                        w.write(value as u64, n);
                        expect.push((value & ((1u128 << n) - 1), n));
                    }
                    1 => {
                        let n = (r >> 8) as u32 % 129;
                        w.write_wide(value, n);
                        let mask = if n == 128 { u128::MAX } else { (1u128 << n) - 1 };
                        expect.push((value & mask, n));
                    }
                    _ => {
                        let bytes: Vec<u8> = (0..(r >> 8) % 20).map(|_| next() as u8).collect();
                        w.write_bytes(&bytes);
                        expect.extend(bytes.iter().map(|&b| (u128::from(b), 8)));
                    }
                }
            }
            let bits = w.bit_len();
            assert_eq!(bits, start * 8 + expect.iter().map(|e| e.1 as usize).sum::<usize>());
            let snapshot = w.bytes().into_owned();
            let bytes = w.finish();
            assert_eq!(snapshot, bytes);
            assert_eq!(bytes.len(), bits.div_ceil(8));
            assert!(bytes[..start].iter().all(|&b| b == 0xa5));
            let mut r = BitReader::with_bit_len(&bytes[start..], bits - start * 8);
            for (i, &(value, n)) in expect.iter().enumerate() {
                let got = if n > 64 {
                    (u128::from(r.read(n - 64)) << 64) | u128::from(r.read(64))
                } else {
                    u128::from(r.read(n))
                };
                assert_eq!(got, value, "field {i} of {n} bits");
            }
            r.check().unwrap();
        }
    }
}
