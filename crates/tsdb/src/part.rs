//! Sealed parts: immutable files holding the compressed blocks of many series for one time
//! partition of one tier (raw points, or 1m/5m/1h rollups). A part is written to a temporary
//! name, synced and renamed; it becomes visible only when the manifest lists it.
//!
//! Layout: `"PWPART01"`, then the blocks back to back, then the index, then a 24-byte footer.
//! Index: for each series (ascending id) `id, kind, block count` and per block
//! `min_ts, max_ts, count, offset, len, crc32` (varints). Footer: index offset (u64 LE), index
//! length (u32 LE), crc32 of the index (u32 LE), `"PWPEND01"`. Raw blocks are
//! `pulsewire_codec` blocks; rollup blocks are `pulsewire_codec::encode_summaries` columns (bucket
//! starts, counts, sums, extremes, first/last points, increases, sketches).

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use pulsewire_codec::{
    BlockOptions, Kind, Sketches, Summary, Values, decode_block, decode_summaries_with, encode_block_with,
    encode_summaries,
};

use crate::bytes::{Reader, put_ivarint, put_uvarint};
use crate::index::SeriesId;
use crate::record::{kind_code, kind_from};
use crate::{Error, Result};

const MAGIC: &[u8; 8] = b"PWPART01";
const END: &[u8; 8] = b"PWPEND01";
const FOOTER: usize = 24;
/// Kind code of rollup blocks.
const SUMMARY_KIND: u8 = 0xff;

/// Points per raw block: large enough to amortise per-block headers and let the codec find
/// structure, small enough that a short query decodes little it does not need.
pub const BLOCK_POINTS: usize = 1024;
/// Buckets per rollup block.
pub const BLOCK_BUCKETS: usize = 512;

#[derive(Debug, Clone, Copy)]
pub struct BlockRef {
    pub min_ts: i64,
    pub max_ts: i64,
    pub count: u32,
    offset: u64,
    len: u32,
    crc: u32,
}

pub struct PartWriter {
    tmp: PathBuf,
    path: PathBuf,
    out: BufWriter<File>,
    offset: u64,
    index: Vec<u8>,
    series: u64,
    last_id: Option<SeriesId>,
    buf: Vec<u8>,
    min_ts: i64,
    max_ts: i64,
    /// How hard raw blocks are encoded.
    opts: BlockOptions,
}

impl PartWriter {
    pub fn create(path: &Path) -> Result<PartWriter> {
        let tmp = path.with_extension("tmp");
        let file = File::create(&tmp).map_err(|e| Error::io(format!("creating {}", tmp.display()), e))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        out.write_all(MAGIC).map_err(|e| Error::io("writing a part", e))?;
        Ok(PartWriter {
            tmp,
            path: path.to_path_buf(),
            out,
            offset: MAGIC.len() as u64,
            index: Vec::new(),
            series: 0,
            last_id: None,
            buf: Vec::new(),
            min_ts: i64::MAX,
            max_ts: i64::MIN,
            opts: BlockOptions::default(),
        })
    }

    /// Encodes raw blocks with less effort ([`BlockOptions::fast`]): for parts written at
    /// checkpoints, where sealing competes with ingest for the cores. The blocks come out the
    /// same size to 0.1 % on the codec's host mix (`codec_report`, `fast/720`); parts that
    /// compaction merges are rewritten with full effort.
    pub fn fast(mut self) -> PartWriter {
        self.opts.fast = true;
        self
    }

    fn start_series(&mut self, id: SeriesId, kind: u8, blocks: usize) -> Result<()> {
        if self.last_id.is_some_and(|l| l >= id) {
            return Err(Error::Invalid(format!("series {id} written to a part out of order")));
        }
        self.last_id = Some(id);
        self.series += 1;
        put_uvarint(&mut self.index, u64::from(id));
        self.index.push(kind);
        put_uvarint(&mut self.index, blocks as u64);
        Ok(())
    }

    fn block(&mut self, min_ts: i64, max_ts: i64, count: usize) -> Result<()> {
        put_ivarint(&mut self.index, min_ts);
        put_ivarint(&mut self.index, max_ts);
        put_uvarint(&mut self.index, count as u64);
        put_uvarint(&mut self.index, self.offset);
        put_uvarint(&mut self.index, self.buf.len() as u64);
        put_uvarint(&mut self.index, u64::from(crc32fast::hash(&self.buf)));
        self.out
            .write_all(&self.buf)
            .map_err(|e| Error::io("writing a part", e))?;
        self.offset += self.buf.len() as u64;
        self.min_ts = self.min_ts.min(min_ts);
        self.max_ts = self.max_ts.max(max_ts);
        Ok(())
    }

    /// Adds one series' raw points (ascending, unique timestamps), split into blocks.
    pub fn add_raw(&mut self, id: SeriesId, ts: &[i64], values: &Values) -> Result<()> {
        if ts.is_empty() {
            return Ok(());
        }
        let blocks = ts.len().div_ceil(BLOCK_POINTS);
        self.start_series(id, kind_code(values.kind()), blocks)?;
        for (b, chunk) in ts.chunks(BLOCK_POINTS).enumerate() {
            let start = b * BLOCK_POINTS;
            let vals = slice_values(values, start..start + chunk.len());
            self.buf.clear();
            encode_block_with(chunk, &vals, &self.opts, &mut self.buf)
                .map_err(|e| Error::Invalid(format!("encoding a block: {e}")))?;
            let (Some(&lo), Some(&hi)) = (chunk.first(), chunk.last()) else {
                continue;
            };
            self.block(lo, hi, chunk.len())?;
        }
        Ok(())
    }

    /// Adds one series' rollup buckets (ascending bucket starts).
    pub fn add_summaries(&mut self, id: SeriesId, buckets: &[(i64, Summary)]) -> Result<()> {
        if buckets.is_empty() {
            return Ok(());
        }
        self.start_series(id, SUMMARY_KIND, buckets.len().div_ceil(BLOCK_BUCKETS))?;
        for chunk in buckets.chunks(BLOCK_BUCKETS) {
            self.buf.clear();
            encode_summaries(chunk, &mut self.buf).map_err(|e| Error::Invalid(format!("encoding rollups: {e}")))?;
            let (Some(lo), Some(hi)) = (chunk.first(), chunk.last()) else {
                continue;
            };
            self.block(lo.0, hi.0, chunk.len())?;
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.series == 0
    }

    /// Writes the index and footer, syncs, and renames into place.
    pub fn finish(mut self) -> Result<()> {
        let mut footer = Vec::with_capacity(FOOTER);
        footer.extend_from_slice(&self.offset.to_le_bytes());
        footer.extend_from_slice(&(self.index.len() as u32).to_le_bytes());
        footer.extend_from_slice(&crc32fast::hash(&self.index).to_le_bytes());
        footer.extend_from_slice(END);
        let err = |e| Error::io("writing a part", e);
        self.out.write_all(&self.index).map_err(err)?;
        self.out.write_all(&footer).map_err(err)?;
        let file = self
            .out
            .into_inner()
            .map_err(|e| Error::io("writing a part", e.into_error()))?;
        file.sync_all().map_err(|e| Error::io("syncing a part", e))?;
        fs::rename(&self.tmp, &self.path).map_err(|e| Error::io("renaming a part", e))?;
        Ok(())
    }

    pub fn abandon(self) {
        let _ = fs::remove_file(&self.tmp);
    }
}

struct SeriesEntry {
    id: SeriesId,
    kind: u8,
    first_block: u32,
    blocks: u32,
}

/// An open part: its index in memory, its blocks read on demand.
pub struct Part {
    file: File,
    series: Vec<SeriesEntry>,
    blocks: Vec<BlockRef>,
    pub min_ts: i64,
    pub max_ts: i64,
    pub bytes: u64,
}

impl Part {
    pub fn open(path: &Path) -> Result<Part> {
        let ctx = |what: &str| format!("{what} {}", path.display());
        let file = File::open(path).map_err(|e| Error::io(ctx("opening"), e))?;
        let bytes = file.metadata().map_err(|e| Error::io(ctx("reading"), e))?.len();
        let footer_at = bytes
            .checked_sub(FOOTER as u64)
            .ok_or_else(|| Error::Corrupt(ctx("too short:")))?;
        let mut footer = [0u8; FOOTER];
        file.read_exact_at(&mut footer, footer_at)
            .map_err(|e| Error::io(ctx("reading"), e))?;
        let mut r = Reader::new(&footer, "part footer");
        let index_at = r.u64_le()?;
        let index_len = r.u32_le()?;
        let crc = r.u32_le()?;
        if r.array::<8>()? != *END {
            return Err(Error::Corrupt(ctx("bad footer in")));
        }
        if index_at.checked_add(u64::from(index_len)) != Some(footer_at) {
            return Err(Error::Corrupt(ctx("bad index position in")));
        }
        let mut index = vec![0u8; index_len as usize];
        file.read_exact_at(&mut index, index_at)
            .map_err(|e| Error::io(ctx("reading"), e))?;
        if crc32fast::hash(&index) != crc {
            return Err(Error::Corrupt(ctx("index checksum mismatch in")));
        }
        let mut r = Reader::new(&index, "part index");
        let mut series = Vec::new();
        let mut blocks = Vec::new();
        let (mut min_ts, mut max_ts) = (i64::MAX, i64::MIN);
        while !r.is_empty() {
            let id = SeriesId::try_from(r.uvarint()?).map_err(|_| Error::Corrupt(ctx("series id out of range in")))?;
            let kind = r.u8()?;
            let n = r.len()?;
            series.push(SeriesEntry {
                id,
                kind,
                first_block: blocks.len() as u32,
                blocks: n as u32,
            });
            for _ in 0..n {
                let b = BlockRef {
                    min_ts: r.ivarint()?,
                    max_ts: r.ivarint()?,
                    count: r.uvarint()? as u32,
                    offset: r.uvarint()?,
                    len: r.uvarint()? as u32,
                    crc: r.uvarint()? as u32,
                };
                min_ts = min_ts.min(b.min_ts);
                max_ts = max_ts.max(b.max_ts);
                blocks.push(b);
            }
        }
        // Built by pushing; without this, the growth slack (up to half) of every open part's
        // index stays resident: 82 MB of a 395 MB heap at full ingest of 100,000 series.
        series.shrink_to_fit();
        blocks.shrink_to_fit();
        Ok(Part {
            file,
            series,
            blocks,
            min_ts,
            max_ts,
            bytes,
        })
    }

    pub fn series_ids(&self) -> impl Iterator<Item = SeriesId> + '_ {
        self.series.iter().map(|s| s.id)
    }

    pub fn points(&self) -> u64 {
        self.blocks.iter().map(|b| u64::from(b.count)).sum()
    }

    fn entry(&self, id: SeriesId) -> Option<&SeriesEntry> {
        let i = self.series.binary_search_by_key(&id, |s| s.id).ok()?;
        self.series.get(i)
    }

    /// Blocks of a series overlapping `[from, to)`.
    pub fn blocks(&self, id: SeriesId, from: i64, to: i64) -> &[BlockRef] {
        let Some(e) = self.entry(id) else { return &[] };
        let all = self
            .blocks
            .get(e.first_block as usize..(e.first_block + e.blocks) as usize)
            .unwrap_or(&[]);
        let start = all.partition_point(|b| b.max_ts < from);
        let end = all.partition_point(|b| b.min_ts < to);
        all.get(start..end.max(start)).unwrap_or(&[])
    }

    fn read_block(&self, b: &BlockRef, buf: &mut Vec<u8>) -> Result<()> {
        buf.resize(b.len as usize, 0);
        self.file
            .read_exact_at(buf, b.offset)
            .map_err(|e| Error::io("reading a block", e))?;
        if crc32fast::hash(buf) != b.crc {
            return Err(Error::Corrupt("block checksum mismatch".into()));
        }
        Ok(())
    }

    pub fn kind(&self, id: SeriesId) -> Option<Result<Kind>> {
        self.entry(id)
            .filter(|e| e.kind != SUMMARY_KIND)
            .map(|e| kind_from(e.kind))
    }

    /// Appends the raw points of one series in `[from, to)` to `ts`/`values`.
    pub fn read_raw(&self, id: SeriesId, from: i64, to: i64, ts: &mut Vec<i64>, values: &mut Values) -> Result<()> {
        let mut buf = Vec::new();
        let mut bts = Vec::new();
        let mut bvals = Values::new(values.kind());
        for b in self.blocks(id, from, to) {
            self.read_block(b, &mut buf)?;
            decode_block(&buf, &mut bts, &mut bvals).map_err(|e| Error::Corrupt(format!("decoding a block: {e}")))?;
            let start = bts.partition_point(|&t| t < from);
            let end = bts.partition_point(|&t| t < to);
            if start < end {
                extend_values(values, &bvals, start..end)?;
                ts.extend_from_slice(bts.get(start..end).unwrap_or_default());
            }
        }
        Ok(())
    }

    /// Appends the rollup buckets of one series starting in `[from, to)`, with or without
    /// their quantile sketches.
    pub fn read_summaries(
        &self,
        id: SeriesId,
        from: i64,
        to: i64,
        sketches: Sketches,
        out: &mut Vec<(i64, Summary)>,
    ) -> Result<()> {
        let mut buf = Vec::new();
        for b in self.blocks(id, from, to) {
            self.read_block(b, &mut buf)?;
            // Decoded in place and trimmed to the range: a summary is a few hundred bytes, and
            // copying each from a block vector into `out` cost as much as decoding it.
            let before = out.len();
            decode_summaries_with(&buf, sketches, out)
                .map_err(|e| Error::Corrupt(format!("decoding a rollup block: {e}")))?;
            let tail = out.get(before..).unwrap_or_default();
            let lo = before + tail.partition_point(|(ts, _)| *ts < from);
            let hi = before + tail.partition_point(|(ts, _)| *ts < to);
            out.truncate(hi);
            out.drain(before..lo);
        }
        Ok(())
    }
}

/// A copy of `values[range]` (blocks are encoded from slices of one series' run).
pub(crate) fn slice_values(values: &Values, range: std::ops::Range<usize>) -> Values {
    fn cut<T: Clone>(v: &[T], range: std::ops::Range<usize>) -> Vec<T> {
        v.get(range).map(<[T]>::to_vec).unwrap_or_default()
    }
    match values {
        Values::Float(v) => Values::Float(cut(v, range)),
        Values::Int(v) => Values::Int(cut(v, range)),
        Values::UInt(v) => Values::UInt(cut(v, range)),
        Values::Bool(v) => Values::Bool(cut(v, range)),
        Values::Str(v) => Values::Str(cut(v, range)),
    }
}

/// Appends `src[range]` to `dst` (same kind), a typed slice copy rather than value by value.
pub(crate) fn extend_values(dst: &mut Values, src: &Values, range: std::ops::Range<usize>) -> Result<()> {
    fn ext<T: Clone>(d: &mut Vec<T>, s: &[T], range: std::ops::Range<usize>) {
        d.extend_from_slice(s.get(range).unwrap_or_default());
    }
    match (dst, src) {
        (Values::Float(d), Values::Float(s)) => ext(d, s, range),
        (Values::Int(d), Values::Int(s)) => ext(d, s, range),
        (Values::UInt(d), Values::UInt(s)) => ext(d, s, range),
        (Values::Bool(d), Values::Bool(s)) => ext(d, s, range),
        (Values::Str(d), Values::Str(s)) => ext(d, s, range),
        _ => return Err(Error::Corrupt("block of another kind than its series".into())),
    }
    Ok(())
}
