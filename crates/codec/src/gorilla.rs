//! Gorilla XOR float compression (Pelkonen et al., VLDB 2015), used for every float in a head
//! chunk and for sealed blocks whose floats are not short decimals. Each value is XOR-ed with the
//! previous one; an equal value costs one bit, and otherwise only the meaningful middle bits of
//! the XOR are written, reusing the previous leading/trailing-zero window when it still fits.

use crate::bits::{BitReader, BitWriter};
use crate::error::{Error, Result};

/// Encoder state between values.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct XorEncoder {
    prev: u64,
    /// Leading zeros of the current window; 0xff before any window exists.
    lead: u8,
    trail: u8,
    started: bool,
}

impl XorEncoder {
    pub(crate) fn new() -> Self {
        Self {
            prev: 0,
            lead: 0xff,
            trail: 0,
            started: false,
        }
    }

    #[inline]
    pub(crate) fn encode(&mut self, w: &mut BitWriter, v: f64) {
        let (code, n) = self.code(v);
        w.write_wide(code, n);
    }

    /// The bits for `v` (at most 77) as `(code, bit count)`, updating the state; callers can join
    /// them with other codes into one write.
    #[inline(always)]
    pub(crate) fn code(&mut self, v: f64) -> (u128, u32) {
        let bits = v.to_bits();
        if !self.started {
            self.started = true;
            self.prev = bits;
            return (u128::from(bits), 64);
        }
        let x = bits ^ self.prev;
        self.prev = bits;
        if x == 0 {
            return (0, 1);
        }
        // The lead field has 5 bits, so at most 31 leading zeros are recorded. Before the first
        // window `lead` is 0xff, which no `lz` reaches.
        let lz = x.leading_zeros().min(31);
        let tz = x.trailing_zeros();
        let (lead, trail) = (u32::from(self.lead), u32::from(self.trail));
        if lz >= lead && tz >= trail {
            let sig = 64 - lead - trail;
            ((0b10 << sig) | u128::from(x >> trail), sig + 2)
        } else {
            let sig = 64 - lz - tz;
            self.lead = lz as u8;
            self.trail = tz as u8;
            // A 64-bit window is written as 0; a window is never empty because x != 0.
            let header = (0b11 << 11) | (lz << 6) | (sig & 63);
            ((u128::from(header) << sig) | u128::from(x >> tz), sig + 13)
        }
    }
}

/// Decoder state between values.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct XorDecoder {
    prev: u64,
    lead: u32,
    trail: u32,
    has_window: bool,
    started: bool,
}

impl XorDecoder {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    #[inline]
    pub(crate) fn decode(&mut self, r: &mut BitReader<'_>) -> Result<f64> {
        if !self.started {
            self.started = true;
            self.prev = r.read(64);
            return Ok(f64::from_bits(self.prev));
        }
        if !r.read_bit() {
            return Ok(f64::from_bits(self.prev));
        }
        if r.read_bit() {
            let lead = r.read(5) as u32;
            let mut sig = r.read(6) as u32;
            if sig == 0 {
                sig = 64;
            }
            if lead + sig > 64 {
                return Err(Error::Corrupt("xor window exceeds 64 bits"));
            }
            self.lead = lead;
            self.trail = 64 - lead - sig;
            self.has_window = true;
        } else if !self.has_window {
            return Err(Error::Corrupt("xor window reused before one was set"));
        }
        let sig = 64 - self.lead - self.trail;
        let x = r.read(sig) << self.trail;
        self.prev ^= x;
        Ok(f64::from_bits(self.prev))
    }
}

/// Decodes `n` Gorilla XOR floats from the byte-aligned section at the reader's position,
/// appending them to `out`, and moves the reader past the section.
pub(crate) fn decode_xor_section(br: &mut crate::bits::ByteReader<'_>, n: usize, out: &mut Vec<f64>) -> Result<()> {
    let mut r = crate::bits::BitReader::new(br.remaining());
    let mut dec = XorDecoder::new();
    for _ in 0..n {
        out.push(dec.decode(&mut r)?);
    }
    r.check()?;
    br.advance(r.bytes_consumed())
}
