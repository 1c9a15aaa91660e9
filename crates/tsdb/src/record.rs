//! Binary records shared by the WAL and the series log: series definitions (an id and
//! everything that names the series) and batches of samples. A batch's definitions come before
//! its samples, so a reader always knows a sample's kind.

use pulsewire_codec::{Kind, ValueRef};

use crate::bytes::{Reader, put_ivarint, put_str, put_uvarint};
use crate::index::{LineKey, SeriesId};
use crate::{Error, Result};

/// Counts as varints, before the definitions.
const BATCH_V1: u8 = 1;
/// Counts as fixed `u32 LE` (number of definitions, then of samples), so that a batch is built
/// in place behind a reserved frame and header, without copying it again at the end.
const BATCH_V2: u8 = 2;
/// The reserved start of a batch buffer: the WAL frame (length, CRC) and the V2 header.
const HEADER: usize = 8 + 1 + 4 + 4;

pub fn kind_code(kind: Kind) -> u8 {
    kind.code()
}

pub fn kind_from(code: u8) -> Result<Kind> {
    Kind::from_code(code).map_err(|_| Error::Corrupt(format!("unknown value kind {code}")))
}

pub fn put_def(out: &mut Vec<u8>, id: SeriesId, line: &LineKey, field: &str, kind: Kind) {
    put_uvarint(out, u64::from(id));
    put_str(out, line.tenant.as_str());
    put_str(out, &line.db);
    put_str(out, &line.measurement);
    put_uvarint(out, line.tags.len() as u64);
    for (k, v) in &line.tags {
        put_str(out, k);
        put_str(out, v);
    }
    put_str(out, field);
    out.push(kind_code(kind));
}

pub struct Def {
    pub id: SeriesId,
    pub line: LineKey,
    pub field: String,
    pub kind: Kind,
}

pub fn read_def(r: &mut Reader<'_>) -> Result<Def> {
    let id = SeriesId::try_from(r.uvarint()?).map_err(|_| Error::Corrupt("series id out of range".into()))?;
    let tenant = pulsewire_model::TenantId::new(r.str()?);
    let db = r.str()?.to_string();
    let measurement = r.str()?.to_string();
    let n = r.len()?;
    let mut tags = Vec::with_capacity(n);
    for _ in 0..n {
        tags.push((r.str()?.to_string(), r.str()?.to_string()));
    }
    let field = r.str()?.to_string();
    let kind = kind_from(r.u8()?)?;
    Ok(Def {
        id,
        line: LineKey {
            tenant,
            db,
            measurement,
            tags,
        },
        field,
        kind,
    })
}

pub fn put_value(out: &mut Vec<u8>, v: ValueRef<'_>) {
    match v {
        ValueRef::Float(f) => out.extend_from_slice(&f.to_bits().to_le_bytes()),
        ValueRef::Int(i) => put_ivarint(out, i),
        ValueRef::UInt(u) => put_uvarint(out, u),
        ValueRef::Bool(b) => out.push(u8::from(b)),
        ValueRef::Str(s) => put_str(out, s),
    }
}

pub fn read_value<'a>(r: &mut Reader<'a>, kind: Kind) -> Result<ValueRef<'a>> {
    Ok(match kind {
        Kind::Float => ValueRef::Float(f64::from_bits(r.u64_le()?)),
        Kind::Int => ValueRef::Int(r.ivarint()?),
        Kind::UInt => ValueRef::UInt(r.uvarint()?),
        Kind::Bool => ValueRef::Bool(r.u8()? != 0),
        Kind::Str => ValueRef::Str(r.str()?),
    })
}

/// Bytes of a typical sample record: id and millisecond timestamp varints, an 8-byte float.
const SAMPLE_BYTES_HINT: usize = 18;

/// Builds one framed batch record: definitions of series new in this batch, then samples. The
/// samples are written straight into the final buffer behind room for the frame and header
/// (building the payload and then framing a copy of it cost two copies of every write).
pub struct BatchBuilder {
    defs: Vec<u8>,
    ndefs: u64,
    /// `HEADER` reserved bytes, then the samples.
    buf: Vec<u8>,
    nsamples: u64,
}

impl Default for BatchBuilder {
    fn default() -> Self {
        BatchBuilder::with_capacity(0)
    }
}

impl BatchBuilder {
    /// A builder with room for about `samples` float samples, so that a large write does not
    /// grow (and copy) its buffer again and again.
    pub fn with_capacity(samples: usize) -> BatchBuilder {
        let mut buf = Vec::with_capacity(HEADER + samples.saturating_mul(SAMPLE_BYTES_HINT));
        buf.resize(HEADER, 0);
        BatchBuilder {
            defs: Vec::new(),
            ndefs: 0,
            buf,
            nsamples: 0,
        }
    }

    pub fn def(&mut self, id: SeriesId, line: &LineKey, field: &str, kind: Kind) {
        put_def(&mut self.defs, id, line, field, kind);
        self.ndefs += 1;
    }

    pub fn sample(&mut self, id: SeriesId, ts: i64, v: ValueRef<'_>) {
        // Id and timestamp varints, and a float's bytes, through one small stack buffer: one
        // capacity check per sample instead of one per byte.
        let mut tmp = [0u8; 28];
        let mut n = uvarint_into(&mut tmp, 0, u64::from(id));
        n = uvarint_into(&mut tmp, n, ((ts << 1) ^ (ts >> 63)) as u64);
        match v {
            ValueRef::Float(f) => {
                if let Some(dst) = tmp.get_mut(n..n + 8) {
                    dst.copy_from_slice(&f.to_bits().to_le_bytes());
                }
                n += 8;
                self.buf.extend_from_slice(tmp.get(..n).unwrap_or_default());
            }
            other => {
                self.buf.extend_from_slice(tmp.get(..n).unwrap_or_default());
                put_value(&mut self.buf, other);
            }
        }
        self.nsamples += 1;
    }

    pub fn samples(&self) -> u64 {
        self.nsamples
    }

    pub fn defs(&self) -> u64 {
        self.ndefs
    }

    /// The framed record, ready to append to the WAL.
    pub fn finish(self) -> Vec<u8> {
        let mut out = if self.defs.is_empty() {
            self.buf
        } else {
            let mut out = Vec::with_capacity(self.buf.len() + self.defs.len());
            out.extend_from_slice(self.buf.get(..HEADER).unwrap_or_default());
            out.extend_from_slice(&self.defs);
            out.extend_from_slice(self.buf.get(HEADER..).unwrap_or_default());
            out
        };
        // A write is bounded by the request body limit, far below 2^32 samples.
        debug_assert!(self.ndefs <= u64::from(u32::MAX) && self.nsamples <= u64::from(u32::MAX));
        let count = |n: u64| u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes();
        let mut head = [0u8; HEADER];
        head[8] = BATCH_V2;
        head[9..13].copy_from_slice(&count(self.ndefs));
        head[13..17].copy_from_slice(&count(self.nsamples));
        if let Some(dst) = out.get_mut(8..HEADER) {
            dst.copy_from_slice(&head[8..]);
        }
        let payload = out.get(8..).unwrap_or_default();
        head[..4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        head[4..8].copy_from_slice(&crc32fast::hash(payload).to_le_bytes());
        if let Some(dst) = out.get_mut(..8) {
            dst.copy_from_slice(&head[..8]);
        }
        out
    }
}

/// Writes `v` as a varint into `buf` at `at`; returns the end. Bytes past `buf` are dropped:
/// callers size `buf` for the varints they write (10 bytes each at most).
fn uvarint_into(buf: &mut [u8], mut at: usize, mut v: u64) -> usize {
    while v >= 0x80 {
        if let Some(b) = buf.get_mut(at) {
            *b = (v as u8) | 0x80;
        }
        at += 1;
        v >>= 7;
    }
    if let Some(b) = buf.get_mut(at) {
        *b = v as u8;
    }
    at + 1
}

/// Replays one batch payload: its definitions into `index`, then `on_sample` for each sample
/// with the series' kind.
pub fn replay_batch(
    payload: &[u8],
    index: &mut crate::index::Index,
    mut on_sample: impl FnMut(SeriesId, Kind, i64, ValueRef<'_>),
) -> Result<()> {
    let mut r = Reader::new(payload, "wal batch");
    let version = r.u8()?;
    let ndefs = match version {
        BATCH_V1 => r.uvarint()?,
        BATCH_V2 => u64::from(r.u32_le()?),
        _ => return Err(Error::Corrupt("unknown WAL batch version".into())),
    };
    let nsamples_v2 = if version == BATCH_V2 { u64::from(r.u32_le()?) } else { 0 };
    for _ in 0..ndefs {
        index.add_def(read_def(&mut r)?)?;
    }
    let nsamples = if version == BATCH_V1 { r.uvarint()? } else { nsamples_v2 };
    for _ in 0..nsamples {
        let id = SeriesId::try_from(r.uvarint()?).map_err(|_| Error::Corrupt("series id out of range".into()))?;
        let ts = r.ivarint()?;
        let kind = index
            .meta(id)
            .map(|m| m.kind)
            .ok_or_else(|| Error::Corrupt(format!("sample for unknown series {id}")))?;
        let v = read_value(&mut r, kind)?;
        on_sample(id, kind, ts, v);
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::index::Index;

    fn key(m: &str) -> LineKey {
        LineKey {
            tenant: pulsewire_model::TenantId::default_tenant(),
            db: "db".into(),
            measurement: m.into(),
            tags: vec![("host".into(), "a".into())],
        }
    }

    fn replayed(payload: &[u8], index: &mut Index) -> Vec<(SeriesId, i64, String)> {
        let mut out = Vec::new();
        replay_batch(payload, index, |id, _, ts, v| out.push((id, ts, format!("{v:?}")))).unwrap();
        out
    }

    #[test]
    fn a_framed_batch_replays_its_definitions_then_its_samples() {
        let mut b = BatchBuilder::with_capacity(2);
        b.def(0, &key("m"), "f", Kind::Float);
        b.def(1, &key("m"), "s", Kind::Str);
        b.sample(0, 1_795_694_400_123, ValueRef::Float(-2.5));
        b.sample(1, -5, ValueRef::Str("x y"));
        b.sample(0, i64::MAX, ValueRef::Float(f64::MIN_POSITIVE));
        let framed = b.finish();
        let (records, clean) = crate::wal::read_frames(&framed);
        assert!(clean);
        let [payload] = records.as_slice() else {
            panic!("one record")
        };
        let mut index = Index::default();
        let got = replayed(payload, &mut index);
        assert_eq!(index.len(), 2);
        assert_eq!(
            got,
            vec![
                (0, 1_795_694_400_123, format!("{:?}", ValueRef::Float(-2.5))),
                (1, -5, format!("{:?}", ValueRef::Str("x y"))),
                (0, i64::MAX, format!("{:?}", ValueRef::Float(f64::MIN_POSITIVE))),
            ]
        );
        // Samples only (the usual write): the same record without a copy.
        let mut b = BatchBuilder::default();
        b.sample(1, 7, ValueRef::Str("z"));
        let (records, _) = crate::wal::read_frames(&b.finish());
        let [payload] = records.as_slice() else {
            panic!("one record")
        };
        assert_eq!(
            replayed(payload, &mut index),
            vec![(1, 7, format!("{:?}", ValueRef::Str("z")))]
        );
    }

    #[test]
    fn first_format_batches_still_replay() {
        // A batch as earlier versions wrote it: varint counts, one definition, two samples.
        let mut payload = vec![BATCH_V1];
        put_uvarint(&mut payload, 1);
        put_def(&mut payload, 0, &key("m"), "f", Kind::Int);
        put_uvarint(&mut payload, 2);
        for (ts, v) in [(10, -3i64), (20, 4)] {
            put_uvarint(&mut payload, 0);
            put_ivarint(&mut payload, ts);
            put_value(&mut payload, ValueRef::Int(v));
        }
        let mut index = Index::default();
        assert_eq!(
            replayed(&payload, &mut index),
            vec![
                (0, 10, format!("{:?}", ValueRef::Int(-3))),
                (0, 20, format!("{:?}", ValueRef::Int(4))),
            ]
        );
    }
}
