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

#[inline]
fn low_mask(n: u32) -> u64 {
    if n >= 64 { u64::MAX } else { (1u64 << n) - 1 }
}

pub(crate) fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub(crate) fn put_ivarint(out: &mut Vec<u8>, v: i64) {
    put_uvarint(out, zigzag(v));
}

/// Appends bits most-significant first. The last byte of `buf` may be partly filled; `bits` says
/// how many bits are valid in total.
#[derive(Default, Clone, Debug)]
pub(crate) struct BitWriter {
    buf: Vec<u8>,
    bits: usize,
}

impl BitWriter {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Continues writing at the end of `buf` (which must hold only whole bytes).
    pub(crate) fn from_vec(buf: Vec<u8>) -> Self {
        let bits = buf.len() * 8;
        Self { buf, bits }
    }

    pub(crate) fn bit_len(&self) -> usize {
        self.bits
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.buf
    }

    pub(crate) fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Spare capacity in bits before the next reallocation.
    pub(crate) fn spare_bits(&self) -> usize {
        (self.buf.capacity() - self.buf.len()) * 8 + (self.buf.len() * 8 - self.bits)
    }

    /// Grows the buffer by exactly `bytes` more bytes of capacity (no doubling), so a head chunk's
    /// footprint stays close to its content.
    pub(crate) fn reserve_exact(&mut self, bytes: usize) {
        self.buf.reserve_exact(bytes);
    }

    pub(crate) fn shrink_to_fit(&mut self) {
        self.buf.shrink_to_fit();
    }

    #[inline]
    pub(crate) fn write_bit(&mut self, bit: bool) {
        self.write(bit as u64, 1);
    }

    /// Writes the low `n` bits of `value` (n <= 64).
    #[inline]
    pub(crate) fn write(&mut self, value: u64, n: u32) {
        if n == 0 {
            return;
        }
        let v = value & low_mask(n);
        let mut rem = n;
        let used = (self.bits % 8) as u32;
        if used != 0 {
            let free = 8 - used;
            let take = free.min(rem);
            let chunk = (v >> (rem - take)) & low_mask(take);
            if let Some(last) = self.buf.last_mut() {
                *last |= (chunk << (free - take)) as u8;
            }
            rem -= take;
            self.bits += take as usize;
        }
        while rem >= 8 {
            rem -= 8;
            self.buf.push((v >> rem) as u8);
            self.bits += 8;
        }
        if rem > 0 {
            self.buf.push(((v & low_mask(rem)) << (8 - rem)) as u8);
            self.bits += rem as usize;
        }
    }

    /// Appends whole bytes (after padding to a byte boundary).
    pub(crate) fn write_bytes(&mut self, bytes: &[u8]) {
        if self.bits.is_multiple_of(8) {
            self.buf.extend_from_slice(bytes);
            self.bits += bytes.len() * 8;
        } else {
            for &b in bytes {
                self.write(u64::from(b), 8);
            }
        }
    }

    /// Pads to a byte boundary and returns the bytes.
    pub(crate) fn finish(self) -> Vec<u8> {
        self.buf
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
