//! Little helpers for the store's binary records (WAL, series log, part indexes): varints,
//! zigzag, length-prefixed strings, and a bounds-checked reader that turns truncation and
//! corruption into errors instead of panics.

use crate::{Error, Result};

pub fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub fn put_ivarint(out: &mut Vec<u8>, v: i64) {
    put_uvarint(out, ((v << 1) ^ (v >> 63)) as u64);
}

pub fn put_str(out: &mut Vec<u8>, s: &str) {
    put_uvarint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8], what: &'static str) -> Self {
        Self { buf, pos: 0, what }
    }

    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn corrupt(&self, why: &str) -> Error {
        Error::Corrupt(format!("{}: {why} at byte {}", self.what, self.pos))
    }

    pub fn u8(&mut self) -> Result<u8> {
        let b = *self.buf.get(self.pos).ok_or_else(|| self.corrupt("truncated"))?;
        self.pos += 1;
        Ok(b)
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).ok_or_else(|| self.corrupt("length overflow"))?;
        let s = self.buf.get(self.pos..end).ok_or_else(|| self.corrupt("truncated"))?;
        self.pos = end;
        Ok(s)
    }

    pub fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let s = self.bytes(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    pub fn u32_le(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub fn u64_le(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    pub fn uvarint(&mut self) -> Result<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(self.corrupt("varint too long"))
    }

    pub fn ivarint(&mut self) -> Result<i64> {
        let u = self.uvarint()?;
        Ok(((u >> 1) as i64) ^ -((u & 1) as i64))
    }

    pub fn len(&mut self) -> Result<usize> {
        let n = self.uvarint()?;
        usize::try_from(n)
            .ok()
            .filter(|&n| n <= self.buf.len())
            .ok_or_else(|| self.corrupt("bad length"))
    }

    pub fn str(&mut self) -> Result<&'a str> {
        let n = self.len()?;
        let b = self.bytes(n)?;
        std::str::from_utf8(b).map_err(|_| self.corrupt("invalid UTF-8"))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_and_truncation_is_an_error() {
        let values = [0i64, 1, -1, 63, -64, 1 << 40, i64::MIN, i64::MAX];
        let mut buf = Vec::new();
        for v in values {
            put_ivarint(&mut buf, v);
        }
        put_str(&mut buf, "héllo");
        let mut r = Reader::new(&buf, "test");
        for v in values {
            assert_eq!(r.ivarint().ok(), Some(v));
        }
        assert_eq!(r.str().ok(), Some("héllo"));
        assert!(r.is_empty());
        let mut short = Reader::new(&buf[..buf.len() - 1], "test");
        for _ in values {
            assert!(short.ivarint().is_ok());
        }
        assert!(short.str().is_err());
    }
}
