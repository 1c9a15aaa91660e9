//! Binary records shared by the WAL and the series log: series definitions (an id and
//! everything that names the series) and batches of samples. A batch's definitions come before
//! its samples, so a reader always knows a sample's kind.

use pulsewire_codec::{Kind, ValueRef};

use crate::bytes::{Reader, put_ivarint, put_str, put_uvarint};
use crate::index::{LineKey, SeriesId};
use crate::{Error, Result};

const BATCH_V1: u8 = 1;

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

/// Builds one batch record: definitions of series new in this batch, then samples.
#[derive(Default)]
pub struct BatchBuilder {
    defs: Vec<u8>,
    ndefs: u64,
    samples: Vec<u8>,
    nsamples: u64,
}

impl BatchBuilder {
    /// A builder with room for about `samples` float samples, so that a large write does not
    /// grow (and copy) its buffer again and again while the store's write lock is held.
    pub fn with_capacity(samples: usize) -> BatchBuilder {
        BatchBuilder {
            samples: Vec::with_capacity(samples.saturating_mul(SAMPLE_BYTES_HINT)),
            ..BatchBuilder::default()
        }
    }

    pub fn def(&mut self, id: SeriesId, line: &LineKey, field: &str, kind: Kind) {
        put_def(&mut self.defs, id, line, field, kind);
        self.ndefs += 1;
    }

    pub fn sample(&mut self, id: SeriesId, ts: i64, v: ValueRef<'_>) {
        put_uvarint(&mut self.samples, u64::from(id));
        put_ivarint(&mut self.samples, ts);
        put_value(&mut self.samples, v);
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
        let mut payload = Vec::with_capacity(self.defs.len() + self.samples.len() + 24);
        payload.push(BATCH_V1);
        put_uvarint(&mut payload, self.ndefs);
        payload.extend_from_slice(&self.defs);
        put_uvarint(&mut payload, self.nsamples);
        payload.extend_from_slice(&self.samples);
        let mut framed = Vec::with_capacity(payload.len() + 8);
        crate::wal::frame(&payload, &mut framed);
        framed
    }
}

/// Replays one batch payload: its definitions into `index`, then `on_sample` for each sample
/// with the series' kind.
pub fn replay_batch(
    payload: &[u8],
    index: &mut crate::index::Index,
    mut on_sample: impl FnMut(SeriesId, Kind, i64, ValueRef<'_>),
) -> Result<()> {
    let mut r = Reader::new(payload, "wal batch");
    if r.u8()? != BATCH_V1 {
        return Err(Error::Corrupt("unknown WAL batch version".into()));
    }
    let ndefs = r.uvarint()?;
    for _ in 0..ndefs {
        index.add_def(read_def(&mut r)?)?;
    }
    let nsamples = r.uvarint()?;
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
