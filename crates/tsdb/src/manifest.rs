//! The manifest: the one file that says which parts are live and how far the WAL is covered by
//! them. It is replaced atomically (write to a temporary file, sync, rename, sync the
//! directory), so after a crash it is either the old or the new set, never a mix; part files
//! it does not name are leftovers of an interrupted checkpoint or compaction and are deleted.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::query::Tier;
use crate::wal::sync_dir;
use crate::{Error, Result};

pub const FILE: &str = "MANIFEST";
/// 3: parts may be of format 2 (compressed index), so that an older Pulsewire refuses the store
/// by its manifest's version rather than calling a healthy part corrupt; 2: rollups built per
/// day once it is quiet (`unrolled`); 1: built at every checkpoint.
pub const VERSION: u32 = 3;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u32,
    /// WAL segments up to and including this one are in parts (0: none yet).
    pub wal_checkpoint: u64,
    /// Sequence number for the next part; a higher sequence wins at equal timestamps.
    pub next_seq: u64,
    pub parts: Vec<PartEntry>,
    /// Raw day partitions (their start, ms) whose rollup tiers are not built yet: a day's 1m, 5m
    /// and 1h summaries are built once it has gone quiet (see `Store::roll_up`), and points
    /// that arrive for it after that are summarised as they are sealed. Empty in version 1
    /// manifests, whose checkpoints built every tier as they sealed.
    #[serde(default)]
    pub unrolled: BTreeSet<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartEntry {
    pub file: String,
    pub tier: Tier,
    /// Start of the time partition (ms).
    pub partition: i64,
    pub seq: u64,
}

impl PartEntry {
    pub fn file_name(tier: Tier, partition: i64, seq: u64) -> String {
        format!("{}-{partition}-{seq:010}.pwp", tier.name())
    }
}

impl Manifest {
    pub fn load(dir: &Path) -> Result<Manifest> {
        let path = dir.join(FILE);
        match fs::read(&path) {
            Ok(bytes) => {
                let m: Manifest =
                    serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt(format!("{}: {e}", path.display())))?;
                if m.version > VERSION {
                    return Err(Error::Corrupt(format!(
                        "{} is version {}, newer than this Pulsewire reads ({VERSION})",
                        path.display(),
                        m.version
                    )));
                }
                Ok(m)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // Without a manifest every part would look like a leftover and be deleted: refuse
                // to start instead of losing sealed data.
                let parts = dir.join("parts");
                let has_parts = fs::read_dir(&parts)
                    .map(|mut d| d.any(|e| e.is_ok_and(|e| e.path().extension().is_some_and(|x| x == "pwp"))))
                    .unwrap_or(false);
                if has_parts {
                    return Err(Error::Corrupt(format!(
                        "{} is missing but {} holds parts; restore the manifest (or a backup) before starting",
                        path.display(),
                        parts.display()
                    )));
                }
                Ok(Manifest {
                    version: VERSION,
                    ..Manifest::default()
                })
            }
            Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
        }
    }

    pub fn save(&self, dir: &Path) -> Result<()> {
        let this = Manifest {
            version: VERSION,
            ..self.clone()
        };
        let tmp = dir.join("MANIFEST.tmp");
        let bytes = serde_json::to_vec_pretty(&this).map_err(|e| Error::Invalid(e.to_string()))?;
        let write = || -> std::io::Result<()> {
            let mut f = fs::File::create(&tmp)?;
            std::io::Write::write_all(&mut f, &bytes)?;
            f.sync_all()?;
            fs::rename(&tmp, dir.join(FILE))
        };
        write().map_err(|e| Error::io("writing the manifest", e))?;
        sync_dir(dir)
    }
}
