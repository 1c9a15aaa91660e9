//! `series.log`: the definition of every series (id, tenant, database, measurement, tags, field,
//! kind), appended at each checkpoint for the series created since the previous one.
//!
//! Format: CRC-framed records (as the WAL's). The first record is the header `PWSERIES2`; each
//! later record is one checkpoint's definitions, zstd-compressed: the definitions are CRC-framed
//! records themselves inside it. A batch is written and synced whole, so a crash leaves at
//! most a torn last batch, whose definitions are still in the WAL (its segments are removed
//! only after the checkpoint's manifest is in place) and come back with its replay.
//!
//! Definitions repeat their measurement, tag keys and most tag values from one series to the
//! next: compressed, the 100,000 definitions of `bench/run-ingest.sh pulsewire --rounds 180` take
//! 870,696 bytes instead of 7,696,833 (0.05 instead of 0.43 bytes per sample of that run). Files of the first format (no header,
//! one uncompressed definition per record) are read and rewritten in this one at open.

use std::fs;
use std::io::Write as _;
use std::path::Path;

use crate::bytes::Reader;
use crate::index::Index;
use crate::record::{Def, put_def, read_def};
use crate::wal::{self, frame, read_frames};
use crate::{Error, Result};

const HEADER: &[u8] = b"PWSERIES2";
const LEVEL: i32 = 3;

/// What [`read`] found.
pub struct Contents {
    pub defs: Vec<Def>,
    /// False if the file ends in a torn or corrupt record, or is in the first format: either
    /// way it should be rewritten from the index.
    pub rewrite: bool,
}

pub fn read(path: &Path) -> Result<Contents> {
    let data = fs::read(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    let (records, clean) = read_frames(&data);
    let mut defs = Vec::new();
    let parse = |rec: &[u8], defs: &mut Vec<Def>| -> Result<()> {
        defs.push(read_def(&mut Reader::new(rec, "series log"))?);
        Ok(())
    };
    match records.split_first() {
        Some((first, batches)) if first == HEADER => {
            for batch in batches {
                let plain = zstd::bulk::decompress(batch, MAX_BATCH)
                    .map_err(|e| Error::Corrupt(format!("series log batch: {e}")))?;
                let (inner, inner_clean) = read_frames(&plain);
                if !inner_clean {
                    return Err(Error::Corrupt("series log batch holds a torn definition".into()));
                }
                for rec in &inner {
                    parse(rec, &mut defs)?;
                }
            }
            Ok(Contents { defs, rewrite: !clean })
        }
        _ => {
            for rec in &records {
                parse(rec, &mut defs)?;
            }
            Ok(Contents {
                defs,
                rewrite: !records.is_empty() || !clean,
            })
        }
    }
}

/// Largest decompressed batch accepted (a checkpoint's new series; 10 million definitions of
/// ~100 bytes would be 1 GB).
const MAX_BATCH: usize = 1 << 30;

/// Definitions compressed together at most (uncompressed bytes), well under [`MAX_BATCH`].
const BATCH_BYTES: usize = 32 << 20;

/// Appends framed definitions (`frame(put_def(..))` back to back) as one or more batches and
/// syncs them.
pub fn append(path: &Path, framed_defs: &[u8]) -> Result<()> {
    if framed_defs.is_empty() {
        return Ok(());
    }
    let new = match fs::metadata(path) {
        Ok(m) => m.len() == 0,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
        Err(e) => return Err(Error::io("reading the series log's size", e)),
    };
    let mut out = Vec::new();
    if new {
        frame(HEADER, &mut out);
    }
    batches(framed_defs, &mut out)?;
    let mut f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::io("opening the series log", e))?;
    f.write_all(&out).map_err(|e| Error::io("writing the series log", e))?;
    f.sync_data().map_err(|e| Error::io("syncing the series log", e))?;
    if new && let Some(dir) = path.parent() {
        wal::sync_dir(dir)?;
    }
    Ok(())
}

/// Replaces the file with one batch holding every series of `index` (temporary file, sync,
/// rename).
pub fn rewrite(path: &Path, index: &Index) -> Result<()> {
    let mut defs = Vec::new();
    for id in index.ids() {
        if let Some(meta) = index.meta(id) {
            let mut rec = Vec::new();
            put_def(&mut rec, id, &meta.line, &meta.field, meta.kind);
            frame(&rec, &mut defs);
        }
    }
    let mut out = Vec::new();
    frame(HEADER, &mut out);
    batches(&defs, &mut out)?;
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, &out).map_err(|e| Error::io("rewriting the series log", e))?;
    fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io("syncing the series log", e))?;
    fs::rename(&tmp, path).map_err(|e| Error::io("rewriting the series log", e))?;
    match path.parent() {
        Some(dir) => wal::sync_dir(dir),
        None => Ok(()),
    }
}

/// Frames `framed_defs` as compressed batches of at most [`BATCH_BYTES`], cut between records.
fn batches(framed_defs: &[u8], out: &mut Vec<u8>) -> Result<()> {
    batches_of(framed_defs, BATCH_BYTES, out)
}

fn batches_of(framed_defs: &[u8], limit: usize, out: &mut Vec<u8>) -> Result<()> {
    let mut rest = framed_defs;
    while !rest.is_empty() {
        // Walk whole records (`[len u32][crc u32][payload]`) up to the batch size.
        let mut cut = 0;
        while cut < rest.len() {
            let len = rest
                .get(cut..cut + 4)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map_or(0, |b| u32::from_le_bytes(b) as usize);
            let next = (cut + 8 + len).min(rest.len());
            if cut > 0 && next > limit {
                break;
            }
            cut = next;
        }
        let (batch, tail) = rest.split_at(cut);
        frame(&compress(batch)?, out);
        rest = tail;
    }
    Ok(())
}

fn compress(data: &[u8]) -> Result<Vec<u8>> {
    zstd::bulk::compress(data, LEVEL).map_err(|e| Error::io("compressing series definitions", e))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::index::LineKey;
    use pulsewire_codec::Kind;
    use pulsewire_model::TenantId;

    fn def(id: u32, host: &str) -> Def {
        Def {
            id,
            line: LineKey {
                tenant: TenantId::default_tenant(),
                db: "db".into(),
                measurement: "cpu".into(),
                tags: vec![("host".into(), host.into())],
            },
            field: "usage".into(),
            kind: Kind::Float,
        }
    }

    fn framed(defs: &[Def]) -> Vec<u8> {
        let mut out = Vec::new();
        for d in defs {
            let mut rec = Vec::new();
            put_def(&mut rec, d.id, &d.line, &d.field, d.kind);
            frame(&rec, &mut out);
        }
        out
    }

    fn hosts(c: &Contents) -> Vec<(u32, String)> {
        c.defs.iter().map(|d| (d.id, d.line.tags[0].1.clone())).collect()
    }

    #[test]
    fn batches_append_and_read_back_and_a_torn_tail_asks_for_a_rewrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("series.log");
        append(&path, &framed(&[def(0, "a"), def(1, "b")])).unwrap();
        append(&path, &framed(&[def(2, "c")])).unwrap();
        let c = read(&path).unwrap();
        assert_eq!(hosts(&c), vec![(0, "a".into()), (1, "b".into()), (2, "c".into())]);
        assert!(!c.rewrite);
        // A batch cut short by a crash: the batches before it stay, and the file is rewritten.
        let len = fs::metadata(&path).unwrap().len();
        fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 3)
            .unwrap();
        let c = read(&path).unwrap();
        assert_eq!(hosts(&c), vec![(0, "a".into()), (1, "b".into())]);
        assert!(c.rewrite);
    }

    #[test]
    fn large_appends_are_cut_into_batches_between_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("series.log");
        let defs: Vec<Def> = (0..50).map(|i| def(i, &format!("host-{i}"))).collect();
        let mut out = Vec::new();
        frame(HEADER, &mut out);
        batches_of(&framed(&defs), 200, &mut out).unwrap();
        fs::write(&path, &out).unwrap();
        let (records, clean) = read_frames(&out);
        assert!(clean && records.len() > 5, "{} batches", records.len() - 1);
        let c = read(&path).unwrap();
        assert_eq!(c.defs.len(), 50);
        assert_eq!(c.defs.last().map(|d| d.id), Some(49));
        assert!(!c.rewrite);
    }

    #[test]
    fn the_first_format_is_read_and_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("series.log");
        // First format: one uncompressed definition per record, no header.
        fs::write(&path, framed(&[def(0, "a"), def(1, "b")])).unwrap();
        let c = read(&path).unwrap();
        assert_eq!(hosts(&c), vec![(0, "a".into()), (1, "b".into())]);
        assert!(c.rewrite);
        let mut index = Index::default();
        for d in c.defs {
            index.add_def(d).unwrap();
        }
        rewrite(&path, &index).unwrap();
        append(&path, &framed(&[def(2, "c")])).unwrap();
        let c = read(&path).unwrap();
        assert!(fs::read(&path).unwrap()[8..].starts_with(HEADER));
        assert_eq!(hosts(&c), vec![(0, "a".into()), (1, "b".into()), (2, "c".into())]);
        assert!(!c.rewrite);
    }
}
