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

/// Worst-case bits for one value: control (2) + lead (5) + length (6) + 64.
pub(crate) const MAX_XOR_BITS: usize = 77;

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
        let bits = v.to_bits();
        if !self.started {
            self.started = true;
            self.prev = bits;
            w.write(bits, 64);
            return;
        }
        let x = bits ^ self.prev;
        self.prev = bits;
        if x == 0 {
            w.write_bit(false);
            return;
        }
        // The lead field has 5 bits, so at most 31 leading zeros are recorded.
        let lz = x.leading_zeros().min(31) as u8;
        let tz = x.trailing_zeros() as u8;
        if self.lead != 0xff && lz >= self.lead && tz >= self.trail {
            let sig = 64 - u32::from(self.lead) - u32::from(self.trail);
            w.write(0b10, 2);
            w.write(x >> self.trail, sig);
        } else {
            let sig = 64 - u32::from(lz) - u32::from(tz);
            w.write(0b11, 2);
            w.write(u64::from(lz), 5);
            // A 64-bit window is written as 0; a window is never empty because x != 0.
            w.write(u64::from(sig & 63), 6);
            w.write(x >> tz, sig);
            self.lead = lz;
            self.trail = tz;
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
