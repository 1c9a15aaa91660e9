//! Sealed parts: immutable files holding the compressed blocks of many series for one time
//! partition of one tier (raw points, or 1m/5m/1h rollups). A part is written to a temporary
//! name, synced and renamed; it becomes visible only when the manifest lists it.
//!
//! Layout (format 2, the one written): `"PWPART02"`, the blocks back to back, the index as one
//! zstd frame, then a 28-byte footer: index offset (u64 LE), stored index length (u32 LE),
//! decompressed index length (u32 LE), crc32 of the stored index (u32 LE), `"PWPEND02"`.
//! Decompressed, the index lists per series (ascending id) `id - previous id, kind, block count`
//! and per block `min_ts - previous block's min_ts` (zigzag, across series), `max_ts - min_ts`,
//! `count`, `len` (varints) and the block's crc32 (4 bytes LE). Offsets are not stored: blocks
//! are in index order, the first right after the magic, each right after the previous one.
//! Raw blocks are `pulsewire_codec` blocks; rollup blocks are `pulsewire_codec::encode_summaries`
//! columns (bucket starts, counts, sums, extremes, first/last points, increases, sketches).
//!
//! Opening checks, each failure an [`Error::Corrupt`] naming the file, never a panic: a known
//! magic, the end magic, the index ending where the footer starts, its crc32, a decompressed
//! length of at most 45 bytes (`MAX_INDEX_BYTES_PER_BLOCK`) per byte of blocks and equal to what
//! the zstd frame states (both before allocating it), ascending series ids, no series without
//! blocks, no empty or reversed block, and blocks that fill the blocks section exactly.
//!
//! Format 1 (`"PWPART01"`) is read, never written: the same blocks, an uncompressed index of
//! absolute varints (`id, kind, block count`, per block `min_ts, max_ts, count, offset, len,
//! crc32`) and a 24-byte footer without the decompressed length, ending `"PWPEND01"`; its
//! offsets must lie inside the blocks section. Compaction rewrites such parts in format 2.
//!
//! On the ingest benchmark's largest part (~178,700 blocks), format 1's index took 5,121,894
//! bytes (28.7 per series, 21 % of the 24.6 MB file); format 2's takes 2,390,595 before
//! compression and 691,088 after (3.9 per series, 3.4 % of the 20.2 MB file), most of it the
//! block checksums, which only shrink where blocks are identical
//! (`cargo run -p pulsewire-tsdb --release --example part_report -- PARTS`).

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use pulsewire_codec::{
    BlockOptions, Kind, Sketches, Summary, Values, decode_block, decode_block_append, decode_summaries_with,
    encode_block_with, encode_summaries,
};

use crate::bytes::{Reader, put_ivarint, put_uvarint};
use crate::index::SeriesId;
use crate::record::{kind_code, kind_from};
use crate::{Error, Result};

/// Format 2, the one written.
const MAGIC: &[u8; 8] = b"PWPART02";
const END: &[u8; 8] = b"PWPEND02";
/// Index offset, stored and decompressed index lengths, index crc32, end magic.
const FOOTER: usize = 28;
/// Format 1, read only.
const MAGIC_V1: &[u8; 8] = b"PWPART01";
const END_V1: &[u8; 8] = b"PWPEND01";
const FOOTER_V1: usize = 24;
/// Where the blocks start, in both formats (right after the magic).
const BLOCKS_AT: u64 = 8;
/// zstd level of the index. On the ingest benchmark's largest part (178,705 blocks, an index of
/// 2,391,055 bytes before compression; `cargo run -p pulsewire-tsdb --release --example
/// part_report -- PART`, fastest of 3 on a busy 2-core machine): level 1 gives 689,452 bytes in
/// 9.5 ms, level 3 711,602 in 15 ms, level 9 656,797 in 151 ms, level 19 627,233 in 1.5 s;
/// decompressing takes 2-7 ms at every level. Most of the compressed index is block checksums,
/// which no level shrinks, so higher levels buy little (9 saves 33 KB, 0.16 % of that part,
/// over 1) for 15 times the time; level 1 is both smaller and faster than 3 on this index.
const INDEX_LEVEL: i32 = 1;
/// Most bytes one block can take in the decompressed index, its share of a series header
/// included: series header `id delta (5), kind (1), block count (5)`, then `min_ts delta (10),
/// span (10), count (5), len (5), crc32 (4)`. Blocks are at least one byte, so an index longer
/// than this many bytes per byte of blocks is corrupt (and is refused before decompressing).
const MAX_INDEX_BYTES_PER_BLOCK: u64 = 45;
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

/// The decompressed format 2 index, built entry by entry: series ids as the difference from
/// the previous series' id, block `min_ts` as the (zigzag) difference from the previous block's
/// (across series), `max_ts` as the span from `min_ts`, no offsets (the blocks are back to back
/// in index order), crc32 in 4 fixed bytes (a varint of a random u32 takes 5).
#[derive(Default)]
struct IndexEncoder {
    out: Vec<u8>,
    prev_id: u64,
    prev_min_ts: i64,
}

impl IndexEncoder {
    /// `id` must be above the previous series' (the first may be 0).
    fn series(&mut self, id: SeriesId, kind: u8, blocks: u32) {
        let id = u64::from(id);
        put_uvarint(&mut self.out, id.wrapping_sub(self.prev_id));
        self.prev_id = id;
        self.out.push(kind);
        put_uvarint(&mut self.out, u64::from(blocks));
    }

    fn block(&mut self, b: &BlockRef) {
        put_ivarint(&mut self.out, b.min_ts.wrapping_sub(self.prev_min_ts));
        self.prev_min_ts = b.min_ts;
        // max_ts >= min_ts: the span fits a u64 even across the whole i64 range.
        put_uvarint(&mut self.out, b.max_ts.wrapping_sub(b.min_ts) as u64);
        put_uvarint(&mut self.out, u64::from(b.count));
        put_uvarint(&mut self.out, u64::from(b.len));
        self.out.extend_from_slice(&b.crc.to_le_bytes());
    }
}

pub struct PartWriter {
    tmp: PathBuf,
    path: PathBuf,
    out: BufWriter<File>,
    offset: u64,
    index: IndexEncoder,
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
            offset: BLOCKS_AT,
            index: IndexEncoder::default(),
            series: 0,
            last_id: None,
            buf: Vec::new(),
            min_ts: i64::MAX,
            max_ts: i64::MIN,
            opts: BlockOptions::default(),
        })
    }

    /// Encodes raw blocks with less effort ([`BlockOptions::fast`]): for parts written at
    /// checkpoints and merges of partitions still being written, where sealing competes with
    /// ingest for the cores. The blocks come out the same size to 0.1 % on the codec's host mix
    /// (`codec_report`, `fast/720`); the merge of a partition gone cold rewrites them with full
    /// effort, a partition that is one part by then keeps them.
    pub fn fast(mut self) -> PartWriter {
        self.opts.fast = true;
        self
    }

    fn start_series(&mut self, id: SeriesId, kind: u8, blocks: usize) -> Result<()> {
        if self.last_id.is_some_and(|l| l >= id) {
            return Err(Error::Invalid(format!("series {id} written to a part out of order")));
        }
        let blocks =
            u32::try_from(blocks).map_err(|_| Error::Invalid(format!("series {id} has too many blocks for a part")))?;
        self.last_id = Some(id);
        self.series += 1;
        self.index.series(id, kind, blocks);
        Ok(())
    }

    fn block(&mut self, min_ts: i64, max_ts: i64, count: usize) -> Result<()> {
        // Never empty (a block has a header): the reader relies on it to bound the index.
        let len = u32::try_from(self.buf.len())
            .ok()
            .filter(|&l| l > 0)
            .ok_or_else(|| Error::Invalid(format!("a block of {} bytes cannot be stored", self.buf.len())))?;
        let count = u32::try_from(count).map_err(|_| Error::Invalid(format!("a block of {count} points")))?;
        if max_ts < min_ts {
            // The reader refuses such a block: never rename a part it could not open.
            return Err(Error::Invalid(format!(
                "a block ending at {max_ts} before it starts at {min_ts}"
            )));
        }
        self.index.block(&BlockRef {
            min_ts,
            max_ts,
            count,
            offset: self.offset,
            len,
            crc: crc32fast::hash(&self.buf),
        });
        self.out
            .write_all(&self.buf)
            .map_err(|e| Error::io("writing a part", e))?;
        self.offset += u64::from(len);
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
                return Err(Error::Invalid("an empty block".into()));
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
                return Err(Error::Invalid("an empty rollup block".into()));
            };
            self.block(lo.0, hi.0, chunk.len())?;
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.series == 0
    }

    /// Writes the compressed index and the footer, syncs, and renames into place.
    pub fn finish(mut self) -> Result<()> {
        let plain = &self.index.out;
        let too_large = || Error::Invalid(format!("a part index of {} bytes", plain.len()));
        let plain_len = u32::try_from(plain.len()).map_err(|_| too_large())?;
        let stored = compress_part_index(plain, INDEX_LEVEL)?;
        let stored_len = u32::try_from(stored.len()).map_err(|_| too_large())?;
        let mut footer = Vec::with_capacity(FOOTER);
        footer.extend_from_slice(&self.offset.to_le_bytes());
        footer.extend_from_slice(&stored_len.to_le_bytes());
        footer.extend_from_slice(&plain_len.to_le_bytes());
        footer.extend_from_slice(&crc32fast::hash(&stored).to_le_bytes());
        footer.extend_from_slice(END);
        let err = |e| Error::io("writing a part", e);
        self.out.write_all(&stored).map_err(err)?;
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

/// The decoded index of a part.
#[derive(Default)]
struct Index {
    series: Vec<SeriesEntry>,
    blocks: Vec<BlockRef>,
}

impl Index {
    fn push_series(&mut self, id: SeriesId, kind: u8, blocks: usize) -> Result<()> {
        if self.series.last().is_some_and(|s| s.id >= id) {
            return Err(Error::Corrupt(format!("series {id} out of order in the index")));
        }
        let many = || Error::Corrupt(format!("series {id}: too many blocks"));
        self.series.push(SeriesEntry {
            id,
            kind,
            first_block: u32::try_from(self.blocks.len()).map_err(|_| many())?,
            blocks: u32::try_from(blocks).map_err(|_| many())?,
        });
        Ok(())
    }

    /// Checks that the block lies inside the blocks section (`BLOCKS_AT..blocks_end`) and that
    /// its time range is not reversed, then adds it to the last series.
    fn push_block(&mut self, b: BlockRef, blocks_end: u64) -> Result<()> {
        let id = self.series.last().map_or(0, |s| s.id);
        let end = b.offset.checked_add(u64::from(b.len));
        if b.offset < BLOCKS_AT || end.is_none_or(|end| end > blocks_end) {
            return Err(Error::Corrupt(format!(
                "a block of series {id} at bytes {}..{} lies outside the blocks section {BLOCKS_AT}..{blocks_end}",
                b.offset,
                u128::from(b.offset) + u128::from(b.len),
            )));
        }
        if b.min_ts > b.max_ts {
            return Err(Error::Corrupt(format!(
                "a block of series {id} ends ({}) before it starts ({})",
                b.max_ts, b.min_ts
            )));
        }
        self.blocks.push(b);
        Ok(())
    }

    /// Format 2: `plain` is the decompressed index.
    fn parse_v2(plain: &[u8], blocks_end: u64) -> Result<Index> {
        let mut r = Reader::new(plain, "part index");
        let mut index = Index::default();
        let mut prev_min_ts = 0i64;
        let mut offset = BLOCKS_AT;
        while !r.is_empty() {
            let delta = r.uvarint()?;
            let id = match index.series.last() {
                None => Some(delta),
                Some(_) if delta == 0 => None,
                Some(s) => u64::from(s.id).checked_add(delta),
            };
            let id = id
                .and_then(|id| SeriesId::try_from(id).ok())
                .ok_or_else(|| Error::Corrupt(format!("series id delta {delta} out of range in the index")))?;
            let kind = r.u8()?;
            let n = r.len()?;
            if n == 0 {
                return Err(Error::Corrupt(format!("series {id} has no blocks in the index")));
            }
            index.push_series(id, kind, n)?;
            for _ in 0..n {
                let min_ts = prev_min_ts.wrapping_add(r.ivarint()?);
                prev_min_ts = min_ts;
                let span = r.uvarint()?;
                let max_ts = min_ts
                    .checked_add_unsigned(span)
                    .ok_or_else(|| Error::Corrupt(format!("a block of series {id} spans past the time range")))?;
                let count = r.uvarint()?;
                let len = r.uvarint()?;
                let crc = r.u32_le()?;
                let (Ok(count), Ok(len)) = (u32::try_from(count), u32::try_from(len)) else {
                    return Err(Error::Corrupt(format!(
                        "a block of series {id} has {count} points in {len} bytes"
                    )));
                };
                if len == 0 {
                    return Err(Error::Corrupt(format!("an empty block of series {id} in the index")));
                }
                index.push_block(
                    BlockRef {
                        min_ts,
                        max_ts,
                        count,
                        offset,
                        len,
                        crc,
                    },
                    blocks_end,
                )?;
                offset += u64::from(len);
            }
        }
        if offset != blocks_end {
            return Err(Error::Corrupt(format!(
                "the index accounts for {} of the {} bytes of blocks",
                offset - BLOCKS_AT,
                blocks_end - BLOCKS_AT
            )));
        }
        Ok(index)
    }

    /// Format 1: absolute varints, offsets stored.
    fn parse_v1(plain: &[u8], blocks_end: u64) -> Result<Index> {
        let mut r = Reader::new(plain, "part index");
        let mut index = Index::default();
        while !r.is_empty() {
            let id = SeriesId::try_from(r.uvarint()?)
                .map_err(|_| Error::Corrupt("series id out of range in the index".into()))?;
            let kind = r.u8()?;
            let n = r.len()?;
            index.push_series(id, kind, n)?;
            for _ in 0..n {
                let min_ts = r.ivarint()?;
                let max_ts = r.ivarint()?;
                let count = r.uvarint()?;
                let offset = r.uvarint()?;
                let len = r.uvarint()?;
                let crc = r.uvarint()?;
                let (Ok(count), Ok(len), Ok(crc)) = (u32::try_from(count), u32::try_from(len), u32::try_from(crc))
                else {
                    return Err(Error::Corrupt(format!(
                        "a block of series {id} has {count} points, {len} bytes, crc {crc}"
                    )));
                };
                index.push_block(
                    BlockRef {
                        min_ts,
                        max_ts,
                        count,
                        offset,
                        len,
                        crc,
                    },
                    blocks_end,
                )?;
            }
        }
        Ok(index)
    }
}

/// Decompresses a format 2 index, refusing before it allocates a length that the blocks
/// section cannot account for or that the zstd frame does not state.
fn decompress_index(stored: &[u8], plain_len: u32, blocks_bytes: u64) -> Result<Vec<u8>> {
    let most = blocks_bytes.saturating_mul(MAX_INDEX_BYTES_PER_BLOCK);
    if u64::from(plain_len) > most {
        return Err(Error::Corrupt(format!(
            "an index of {plain_len} bytes for {blocks_bytes} bytes of blocks (at most {most})"
        )));
    }
    match zstd::zstd_safe::get_frame_content_size(stored) {
        Ok(Some(n)) if n == u64::from(plain_len) => {}
        Ok(Some(n)) => {
            return Err(Error::Corrupt(format!(
                "the index frame holds {n} bytes, the footer says {plain_len}"
            )));
        }
        Ok(None) | Err(_) => return Err(Error::Corrupt("the index is not a zstd frame of known size".into())),
    }
    let plain = zstd::bulk::decompress(stored, plain_len as usize)
        .map_err(|e| Error::Corrupt(format!("the index does not decompress: {e}")))?;
    if plain.len() != plain_len as usize {
        return Err(Error::Corrupt(format!(
            "the index decompressed to {} bytes, the footer says {plain_len}",
            plain.len()
        )));
    }
    Ok(plain)
}

/// An open part: its index in memory, its blocks read on demand.
pub struct Part {
    file: File,
    series: Vec<SeriesEntry>,
    blocks: Vec<BlockRef>,
    pub min_ts: i64,
    pub max_ts: i64,
    pub bytes: u64,
    /// 1 or 2.
    format: u8,
    /// The index as stored (compressed in format 2).
    index_bytes: u64,
}

impl Part {
    /// Opens a part of either format. Anything inconsistent is [`Error::Corrupt`], naming the
    /// file; only a failing read is [`Error::Io`].
    pub fn open(path: &Path) -> Result<Part> {
        let named = |e: Error| match e {
            Error::Corrupt(why) => Error::Corrupt(format!("part {}: {why}", path.display())),
            e => e,
        };
        Part::open_unnamed(path).map_err(named)
    }

    fn open_unnamed(path: &Path) -> Result<Part> {
        let file = File::open(path).map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        let read_at = |buf: &mut [u8], at: u64| {
            file.read_exact_at(buf, at)
                .map_err(|e| Error::io(format!("reading {}", path.display()), e))
        };
        let bytes = file
            .metadata()
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?
            .len();
        let too_short = || Error::Corrupt(format!("too short ({bytes} bytes)"));
        if bytes < BLOCKS_AT {
            return Err(too_short());
        }
        let mut magic = [0u8; 8];
        read_at(&mut magic, 0)?;
        let (format, footer_len, end_magic) = match &magic {
            m if m == MAGIC => (2, FOOTER, END),
            m if m == MAGIC_V1 => (1, FOOTER_V1, END_V1),
            m => {
                return Err(Error::Corrupt(format!(
                    "unknown format {:?}",
                    String::from_utf8_lossy(m)
                )));
            }
        };
        let footer_at = bytes
            .checked_sub(footer_len as u64)
            .filter(|&at| at >= BLOCKS_AT)
            .ok_or_else(too_short)?;
        let mut footer = [0u8; FOOTER];
        let footer = footer.get_mut(..footer_len).ok_or_else(too_short)?;
        read_at(footer, footer_at)?;
        let mut r = Reader::new(footer, "part footer");
        let index_at = r.u64_le()?;
        let stored_len = r.u32_le()?;
        let plain_len = if format == 2 { Some(r.u32_le()?) } else { None };
        let crc = r.u32_le()?;
        if r.array::<8>()? != *end_magic {
            return Err(Error::Corrupt("bad footer (end magic)".into()));
        }
        if index_at < BLOCKS_AT || index_at.checked_add(u64::from(stored_len)) != Some(footer_at) {
            return Err(Error::Corrupt(format!(
                "bad index position (index at {index_at}, {stored_len} bytes, footer at {footer_at})"
            )));
        }
        let mut stored = vec![0u8; stored_len as usize];
        read_at(&mut stored, index_at)?;
        if crc32fast::hash(&stored) != crc {
            return Err(Error::Corrupt("index checksum mismatch".into()));
        }
        let index = match plain_len {
            Some(plain_len) => {
                let plain = decompress_index(&stored, plain_len, index_at - BLOCKS_AT)?;
                Index::parse_v2(&plain, index_at)?
            }
            None => Index::parse_v1(&stored, index_at)?,
        };
        let Index { mut series, mut blocks } = index;
        let min_ts = blocks.iter().map(|b| b.min_ts).min().unwrap_or(i64::MAX);
        let max_ts = blocks.iter().map(|b| b.max_ts).max().unwrap_or(i64::MIN);
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
            format,
            index_bytes: u64::from(stored_len),
        })
    }

    /// What the part holds and what its index takes (see [`inspect_part`]).
    pub fn stats(&self) -> PartStats {
        let mut plain = IndexEncoder::default();
        for s in &self.series {
            plain.series(s.id, s.kind, s.blocks);
            for b in self
                .blocks
                .get(s.first_block as usize..(s.first_block + s.blocks) as usize)
                .unwrap_or_default()
            {
                plain.block(b);
            }
        }
        PartStats {
            format: self.format,
            file_bytes: self.bytes,
            index_bytes: self.index_bytes,
            series: self.series.len(),
            blocks: self.blocks.len(),
            points: self.points(),
            plain_index: plain.out,
        }
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
        let blocks = self.blocks(id, from, to);
        // Room for every point of the blocks at once: growing by doubling copied the run again
        // and again (a week of 1 s data: ~40 % of a raw aggregation's time in reallocation and
        // the page faults of its fresh memory, `perf`).
        let most: usize = blocks.iter().map(|b| b.count as usize).sum();
        ts.reserve(most);
        values.reserve(most);
        for b in blocks {
            self.read_block(b, &mut buf)?;
            if from <= b.min_ts && b.max_ts < to {
                // Wholly in the range: decoded straight into the answer instead of into the
                // block's vectors and copied over (one day of 1 s data aggregated from raw
                // points: p50 3.04-3.38 against 3.30-3.48 ms in four alternated runs).
                decode_block_append(&buf, ts, values).map_err(|e| Error::Corrupt(format!("decoding a block: {e}")))?;
                continue;
            }
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

/// What a part file holds and what its index takes, for measurements
/// (`cargo run -p pulsewire-tsdb --release --example part_report -- PART...`).
#[derive(Debug, Clone)]
pub struct PartStats {
    /// 1 (`PWPART01`) or 2 (`PWPART02`).
    pub format: u8,
    pub file_bytes: u64,
    /// The index as stored: compressed in format 2, plain varints in format 1.
    pub index_bytes: u64,
    pub series: usize,
    pub blocks: usize,
    pub points: u64,
    /// The index in format 2's encoding before compression (re-encoded for a format 1 part).
    pub plain_index: Vec<u8>,
}

/// Opens the part at `path` (either format, with every check of a store's open) and describes it.
pub fn inspect_part(path: &Path) -> Result<PartStats> {
    Ok(Part::open(path)?.stats())
}

/// Compresses a decompressed index as format 2 stores it, at zstd `level` (parts use level 1).
pub fn compress_part_index(plain: &[u8], level: i32) -> Result<Vec<u8>> {
    zstd::bulk::compress(plain, level).map_err(|e| Error::io("compressing a part index", e))
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use std::borrow::Cow;
    use std::sync::Arc;
    use std::time::Duration;

    use pulsewire_model::TenantId;
    use pulsewire_proto::{FieldValue, Line, Precision};

    use super::*;
    use crate::{Store, StoreConfig};

    enum Data {
        Raw(Vec<i64>, Values),
        Rollup(Vec<(i64, Summary)>),
    }

    fn ts(start: i64, step: i64, n: usize) -> Vec<i64> {
        (0..n as i64).map(|i| start + i * step).collect()
    }

    fn rollups(start: i64, n: usize) -> Vec<(i64, Summary)> {
        (0..n as i64)
            .map(|i| {
                let t = start + i * 60_000;
                let mut s = Summary::new();
                for k in 0..3 {
                    s.add(t + k * 10_000, (i * 3 + k) as f64 * 0.5);
                }
                (t, s)
            })
            .collect()
    }

    /// Raw series of every kind and rollup series, ids with gaps up to `u32::MAX`, series of
    /// several blocks, timestamps far apart and negative (the index codes them as differences).
    fn sample() -> Vec<(SeriesId, Data)> {
        const T: i64 = 1_795_694_400_000;
        vec![
            (
                0,
                Data::Raw(
                    ts(T, 10_000, 10),
                    Values::Float((0..10).map(|i| i as f64 * 1.5).collect()),
                ),
            ),
            (
                3,
                Data::Raw(
                    ts(T, 1_000, 2_500),
                    Values::Int((0..2_500).map(|i| i * i - 7).collect()),
                ),
            ),
            (4, Data::Rollup(rollups(T - 86_400_000, 1_100))),
            (
                1_000,
                Data::Raw(ts(-5_000, 1, 5), Values::Str((0..5).map(|i| format!("s{i}")).collect())),
            ),
            (70_000, Data::Raw(vec![-(1 << 50)], Values::Bool(vec![true]))),
            (
                1 << 31,
                Data::Raw(ts(T + 7, 3, 1_030), Values::UInt((0..1_030).map(|i| i * 3).collect())),
            ),
            (
                SeriesId::MAX,
                Data::Raw(vec![-(1 << 60), 0, 1 << 60], Values::Float(vec![1.0, 2.0, 3.0])),
            ),
        ]
    }

    fn write(path: &Path, data: &[(SeriesId, Data)]) {
        let mut w = PartWriter::create(path).unwrap();
        for (id, d) in data {
            match d {
                Data::Raw(ts, values) => w.add_raw(*id, ts, values).unwrap(),
                Data::Rollup(buckets) => w.add_summaries(*id, buckets).unwrap(),
            }
        }
        w.finish().unwrap();
    }

    fn check(part: &Part, data: &[(SeriesId, Data)]) {
        assert_eq!(
            part.series_ids().collect::<Vec<_>>(),
            data.iter().map(|(id, _)| *id).collect::<Vec<_>>()
        );
        let mut points = 0;
        for (id, d) in data {
            match d {
                Data::Raw(want_ts, want) => {
                    assert_eq!(part.kind(*id).unwrap().unwrap(), want.kind());
                    let (mut ts, mut values) = (Vec::new(), Values::new(want.kind()));
                    part.read_raw(*id, i64::MIN, i64::MAX, &mut ts, &mut values).unwrap();
                    assert_eq!(&ts, want_ts, "series {id}");
                    assert_eq!(&values, want, "series {id}");
                    points += ts.len() as u64;
                }
                Data::Rollup(want) => {
                    assert!(part.kind(*id).is_none());
                    let mut got = Vec::new();
                    part.read_summaries(*id, i64::MIN, i64::MAX, Sketches::Decode, &mut got)
                        .unwrap();
                    assert_eq!(got.len(), want.len());
                    for ((t, s), (wt, w)) in got.iter().zip(want) {
                        assert_eq!((t, s.count, s.sum, s.min, s.max), (wt, w.count, w.sum, w.min, w.max));
                        assert_eq!((s.first, s.last), (w.first, w.last));
                    }
                    points += got.len() as u64;
                }
            }
        }
        assert_eq!(part.points(), points);
    }

    /// Format 1 as Pulsewire wrote it before format 2: the same blocks, an uncompressed index of
    /// absolute varints with offsets, and a 24-byte footer.
    fn write_v1(part: &Part, path: &Path) {
        let mut file = MAGIC_V1.to_vec();
        let mut index = Vec::new();
        for s in &part.series {
            put_uvarint(&mut index, u64::from(s.id));
            index.push(s.kind);
            put_uvarint(&mut index, u64::from(s.blocks));
            for b in &part.blocks[s.first_block as usize..(s.first_block + s.blocks) as usize] {
                let mut buf = Vec::new();
                part.read_block(b, &mut buf).unwrap();
                put_ivarint(&mut index, b.min_ts);
                put_ivarint(&mut index, b.max_ts);
                put_uvarint(&mut index, u64::from(b.count));
                put_uvarint(&mut index, file.len() as u64);
                put_uvarint(&mut index, buf.len() as u64);
                put_uvarint(&mut index, u64::from(crc32fast::hash(&buf)));
                file.extend_from_slice(&buf);
            }
        }
        let index_at = file.len() as u64;
        file.extend_from_slice(&index);
        file.extend_from_slice(&index_at.to_le_bytes());
        file.extend_from_slice(&(index.len() as u32).to_le_bytes());
        file.extend_from_slice(&crc32fast::hash(&index).to_le_bytes());
        file.extend_from_slice(END_V1);
        fs::write(path, file).unwrap();
    }

    /// A format 2 file from `blocks` and a decompressed index, with the footer's decompressed
    /// length given (or the true one) and a correct checksum of the stored index.
    fn craft_v2(path: &Path, blocks: &[u8], plain: &[u8], plain_len: Option<u32>) {
        let stored = compress_part_index(plain, INDEX_LEVEL).unwrap();
        let mut file = MAGIC.to_vec();
        file.extend_from_slice(blocks);
        let index_at = file.len() as u64;
        file.extend_from_slice(&stored);
        file.extend_from_slice(&index_at.to_le_bytes());
        file.extend_from_slice(&(stored.len() as u32).to_le_bytes());
        file.extend_from_slice(&plain_len.unwrap_or(plain.len() as u32).to_le_bytes());
        file.extend_from_slice(&crc32fast::hash(&stored).to_le_bytes());
        file.extend_from_slice(END);
        fs::write(path, file).unwrap();
    }

    fn corrupt(path: &Path) -> String {
        match Part::open(path) {
            Err(Error::Corrupt(why)) => why,
            Err(e) => panic!("not a corruption error: {e}"),
            Ok(_) => panic!("a damaged part opened"),
        }
    }

    /// Opens the part and reads every series in it; any error must be a corruption error.
    fn open_and_read_all(path: &Path) -> Result<()> {
        let part = Part::open(path)?;
        for id in part.series_ids().collect::<Vec<_>>() {
            match part.kind(id) {
                Some(kind) => {
                    let (mut ts, mut values) = (Vec::new(), Values::new(kind?));
                    part.read_raw(id, i64::MIN, i64::MAX, &mut ts, &mut values)?;
                }
                None => part.read_summaries(id, i64::MIN, i64::MAX, Sketches::Decode, &mut Vec::new())?,
            }
        }
        Ok(())
    }

    #[test]
    fn raw_and_rollup_series_with_id_gaps_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.pwp");
        let data = sample();
        write(&path, &data);
        assert_eq!(&fs::read(&path).unwrap()[..8], MAGIC);
        let part = Part::open(&path).unwrap();
        check(&part, &data);
        assert_eq!((part.min_ts, part.max_ts), (-(1 << 60), 1 << 60));
        assert_eq!(part.stats().format, 2);
        // Series 3: blocks of 1,024 points at 1 s; a range inside the second block finds it alone.
        const T: i64 = 1_795_694_400_000;
        let mid = part.blocks(3, T + 1_100_000, T + 1_200_000);
        assert_eq!(mid.len(), 1);
        assert_eq!(
            (mid[0].min_ts, mid[0].max_ts, mid[0].count),
            (T + 1_024_000, T + 2_047_000, 1_024)
        );
        assert!(part.blocks(2, i64::MIN, i64::MAX).is_empty(), "no series 2");
        let (mut ts, mut values) = (Vec::new(), Values::new(Kind::Int));
        part.read_raw(3, T + 1_000_000, T + 1_030_000, &mut ts, &mut values)
            .unwrap();
        assert_eq!(ts, (1_000..1_030).map(|i| T + i * 1_000).collect::<Vec<_>>());
    }

    #[test]
    fn many_series_round_trip_and_the_index_compresses() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.pwp");
        const T: i64 = 1_795_694_400_000;
        let data: Vec<(SeriesId, Data)> = (0..4_000u32)
            .map(|i| {
                let n = if i % 7 == 0 { 2_100 } else { 180 };
                let values = Values::Float((0..n).map(|k| f64::from(i) + (k % 13) as f64 * 0.25).collect());
                (i * 5 + i % 3, Data::Raw(ts(T + i64::from(i % 10), 10_000, n), values))
            })
            .collect();
        write(&path, &data);
        let part = Part::open(&path).unwrap();
        check(&part, &data);
        let stats = part.stats();
        assert_eq!((stats.series, stats.blocks), (4_000, 3_428 + 572 * 3));
        // The same blocks with format 1's index: the compressed index is a fraction of it.
        let v1 = dir.path().join("v1.pwp");
        write_v1(&part, &v1);
        let old = inspect_part(&v1).unwrap();
        assert_eq!(old.format, 1);
        assert_eq!(old.plain_index, stats.plain_index, "the same index decoded from both");
        assert_eq!(
            old.file_bytes - old.index_bytes - 24,
            stats.file_bytes - stats.index_bytes - 28
        );
        assert!(
            stats.index_bytes * 4 < old.index_bytes,
            "format 2 index {} bytes, format 1 {}",
            stats.index_bytes,
            old.index_bytes
        );
    }

    #[test]
    fn format_1_parts_open_and_read() {
        let dir = tempfile::tempdir().unwrap();
        let (v2, v1) = (dir.path().join("v2.pwp"), dir.path().join("v1.pwp"));
        let data = sample();
        write(&v2, &data);
        write_v1(&Part::open(&v2).unwrap(), &v1);
        assert_eq!(&fs::read(&v1).unwrap()[..8], MAGIC_V1);
        let part = Part::open(&v1).unwrap();
        assert_eq!(part.stats().format, 1);
        check(&part, &data);
        assert_eq!((part.min_ts, part.max_ts), (-(1 << 60), 1 << 60));
    }

    #[test]
    fn an_empty_part_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.pwp");
        write(&path, &[]);
        let part = Part::open(&path).unwrap();
        assert_eq!((part.series_ids().count(), part.points()), (0, 0));
    }

    #[test]
    fn a_flipped_byte_in_the_compressed_index_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.pwp");
        write(&path, &sample());
        let good = fs::read(&path).unwrap();
        let footer_at = good.len() - FOOTER;
        let index_at = u64::from_le_bytes(good[footer_at..footer_at + 8].try_into().unwrap()) as usize;
        for at in index_at..footer_at {
            let mut bad = good.clone();
            bad[at] ^= 0x10;
            fs::write(&path, &bad).unwrap();
            assert!(corrupt(&path).contains("index checksum mismatch"), "byte {at}");
        }
        // The same damage with the checksum made to match: zstd or the index checks catch it.
        let stored = &good[index_at..footer_at];
        for at in 0..stored.len() {
            let mut bad = stored.to_vec();
            bad[at] ^= 0x10;
            let mut file = good[..index_at].to_vec();
            file.extend_from_slice(&bad);
            file.extend_from_slice(&good[footer_at..footer_at + 16]);
            file.extend_from_slice(&crc32fast::hash(&bad).to_le_bytes());
            file.extend_from_slice(END);
            fs::write(&path, &file).unwrap();
            if let Err(e) = open_and_read_all(&path) {
                assert!(matches!(e, Error::Corrupt(_)), "byte {at}: {e}");
            }
        }
    }

    #[test]
    fn a_truncated_part_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let (v2, v1) = (dir.path().join("v2.pwp"), dir.path().join("v1.pwp"));
        write(&v2, &sample());
        write_v1(&Part::open(&v2).unwrap(), &v1);
        let cut = dir.path().join("cut.pwp");
        for path in [v2, v1] {
            let good = fs::read(&path).unwrap();
            for len in 0..good.len() {
                fs::write(&cut, &good[..len]).unwrap();
                let why = corrupt(&cut);
                assert!(why.contains("cut.pwp"), "the error names the file: {why}");
            }
        }
    }

    #[test]
    fn any_flipped_byte_gives_the_data_or_a_corruption_error() {
        let dir = tempfile::tempdir().unwrap();
        let (v2, v1) = (dir.path().join("v2.pwp"), dir.path().join("v1.pwp"));
        let data = vec![
            (
                2,
                Data::Raw(ts(1_000, 10, 40), Values::Float((0..40).map(f64::from).collect())),
            ),
            (9, Data::Rollup(rollups(0, 20))),
            (11, Data::Raw(ts(-50, 1, 3), Values::Int(vec![1, 2, 3]))),
        ];
        write(&v2, &data);
        write_v1(&Part::open(&v2).unwrap(), &v1);
        let bad = dir.path().join("bad.pwp");
        for path in [v2, v1] {
            let good = fs::read(&path).unwrap();
            for at in 0..good.len() {
                for flip in [0x01, 0x80, 0xff] {
                    let mut file = good.clone();
                    file[at] ^= flip;
                    fs::write(&bad, &file).unwrap();
                    if let Err(e) = open_and_read_all(&bad) {
                        assert!(matches!(e, Error::Corrupt(_)), "byte {at}: {e}");
                    }
                }
            }
        }
    }

    /// One series of two blocks, as the writer would index them, for crafted files.
    fn two_block_index(lens: [u32; 2]) -> Vec<u8> {
        let mut index = IndexEncoder::default();
        index.series(5, kind_code(Kind::Float), 2);
        for (i, len) in lens.into_iter().enumerate() {
            index.block(&BlockRef {
                min_ts: 100 * i as i64,
                max_ts: 100 * i as i64 + 50,
                count: 6,
                offset: 0,
                len,
                crc: 0,
            });
        }
        index.out
    }

    #[test]
    fn blocks_outside_the_blocks_section_are_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.pwp");
        craft_v2(&path, &[0u8; 30], &two_block_index([10, 20]), None);
        assert!(Part::open(&path).is_ok(), "the blocks fill the section exactly");
        craft_v2(&path, &[0u8; 30], &two_block_index([10, 21]), None);
        let why = corrupt(&path);
        assert!(why.contains("lies outside the blocks section 8..38"), "{why}");
        craft_v2(&path, &[0u8; 30], &two_block_index([10, u32::MAX]), None);
        assert!(corrupt(&path).contains("lies outside the blocks section"));
        craft_v2(&path, &[0u8; 30], &two_block_index([10, 19]), None);
        assert!(corrupt(&path).contains("accounts for 29 of the 30 bytes"));
        craft_v2(&path, &[0u8; 30], &two_block_index([0, 30]), None);
        assert!(corrupt(&path).contains("an empty block of series 5"));

        // Format 1 stores offsets: one before the blocks, one past them.
        let v2 = dir.path().join("v2.pwp");
        write(&v2, &sample());
        let part = Part::open(&v2).unwrap();
        for (offset, len) in [(4u64, 10u32), (part.bytes, 1)] {
            let mut index = Vec::new();
            put_uvarint(&mut index, 1);
            index.push(kind_code(Kind::Float));
            put_uvarint(&mut index, 1);
            for v in [0, 1] {
                put_ivarint(&mut index, v);
            }
            for v in [3, offset, u64::from(len), 0] {
                put_uvarint(&mut index, v);
            }
            let mut file = fs::read(&v2).unwrap();
            let index_at = u64::from_le_bytes(file[file.len() - FOOTER..][..8].try_into().unwrap());
            file.truncate(index_at as usize);
            file[..8].copy_from_slice(MAGIC_V1);
            file.extend_from_slice(&index);
            file.extend_from_slice(&index_at.to_le_bytes());
            file.extend_from_slice(&(index.len() as u32).to_le_bytes());
            file.extend_from_slice(&crc32fast::hash(&index).to_le_bytes());
            file.extend_from_slice(END_V1);
            fs::write(&path, file).unwrap();
            assert!(
                corrupt(&path).contains("lies outside the blocks section"),
                "offset {offset}"
            );
        }
    }

    #[test]
    fn index_lengths_are_checked_before_decompressing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.pwp");
        let index = two_block_index([10, 20]);
        craft_v2(&path, &[0u8; 30], &index, Some(u32::MAX));
        assert!(corrupt(&path).contains("an index of 4294967295 bytes for 30 bytes of blocks"));
        craft_v2(&path, &[0u8; 30], &index, Some(index.len() as u32 + 1));
        assert!(corrupt(&path).contains("the footer says"));
        // Series ids must ascend: a zero difference after the first series is refused.
        let mut twice = IndexEncoder::default();
        for _ in 0..2 {
            twice.series(5, kind_code(Kind::Float), 1);
            twice.block(&BlockRef {
                min_ts: 0,
                max_ts: 1,
                count: 2,
                offset: 0,
                len: 15,
                crc: 0,
            });
        }
        craft_v2(&path, &[0u8; 30], &twice.out, None);
        assert!(corrupt(&path).contains("series id delta 0 out of range"));
    }

    fn line(host: &str, v: f64, ts: i64) -> (usize, Line<'static>) {
        let line = Line {
            measurement: Cow::Borrowed("cpu"),
            tags: vec![(Cow::Borrowed("host"), Cow::Owned(host.to_string()))],
            fields: vec![(Cow::Borrowed("usage"), FieldValue::Float(v))],
            timestamp: Some(ts),
        };
        (1, line)
    }

    fn everything(store: &Store) -> Vec<(String, Vec<i64>, Values)> {
        let mut out: Vec<_> = store
            .all_series(&TenantId::default_tenant())
            .into_iter()
            .map(|(id, meta)| {
                let (ts, values) = store.read_raw(id, &meta, i64::MIN / 2, i64::MAX / 2).unwrap();
                (format!("{:?}", meta.line.tags), ts, values)
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Each part's name and magic.
    fn part_formats(dir: &Path) -> Vec<(String, [u8; 8])> {
        let mut out: Vec<_> = fs::read_dir(dir.join("parts"))
            .unwrap()
            .map(|e| {
                let path = e.unwrap().path();
                let magic = fs::read(&path).unwrap()[..8].try_into().unwrap();
                (path.file_name().unwrap().to_string_lossy().into_owned(), magic)
            })
            .collect();
        out.sort();
        out
    }

    /// A store written by a Pulsewire that wrote format 1 opens unchanged, and compaction
    /// rewrites its parts in format 2.
    #[test]
    fn a_store_with_format_1_parts_opens_and_compaction_rewrites_them() {
        const NOW: i64 = 1_795_694_400_000;
        let dir = tempfile::tempdir().unwrap();
        let config = || StoreConfig {
            checkpoint_interval: Duration::from_secs(3600),
            ..StoreConfig::default()
        };
        let clock: crate::Clock = Arc::new(|| NOW);
        let store = Store::open_with_clock(dir.path(), config(), clock.clone()).unwrap();
        for round in 0..2 {
            for host in ["a", "b", "c"] {
                let lines: Vec<_> = (0..300)
                    .map(|i| {
                        line(
                            host,
                            f64::from(i + round),
                            NOW - 3_600_000 + i64::from(i + 300 * round) * 1_000,
                        )
                    })
                    .collect();
                let out = store
                    .write(&TenantId::default_tenant(), "db", Precision::Ms, &lines)
                    .unwrap();
                out.ack.unwrap().blocking_recv().unwrap().unwrap();
            }
            store.checkpoint().unwrap();
        }
        let before = everything(&store);
        assert_eq!(before.len(), 3);
        assert!(before.iter().all(|(_, ts, _)| ts.len() == 600));
        store.close().unwrap();
        drop(store);
        for entry in fs::read_dir(dir.path().join("parts")).unwrap() {
            let path = entry.unwrap().path();
            let old = path.with_extension("v1");
            write_v1(&Part::open(&path).unwrap(), &old);
            fs::rename(&old, &path).unwrap();
        }
        let old = part_formats(dir.path());
        assert!(old.len() >= 2 && old.iter().all(|(_, m)| m == MAGIC_V1), "{old:?}");

        let store = Store::open_with_clock(dir.path(), config(), clock.clone()).unwrap();
        assert_eq!(everything(&store), before);
        store.compact().unwrap();
        let new = part_formats(dir.path());
        assert!(new.len() < old.len() && new.iter().all(|(_, m)| m == MAGIC), "{new:?}");
        assert_eq!(everything(&store), before);
        store.close().unwrap();
        drop(store);
        let store = Store::open_with_clock(dir.path(), config(), clock).unwrap();
        assert_eq!(everything(&store), before);
        store.close().unwrap();
    }
}
