//! The manifest: the one file that says which parts are live and how far the WAL is covered by
//! them. It is replaced atomically (write to a temporary file, sync, rename, sync the
//! directory), so after a crash it is either the old or the new set, never a mix; part files
//! it does not name are leftovers of an interrupted checkpoint or compaction and are deleted.

use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::query::Tier;
use crate::wal::sync_dir;
use crate::{Error, Result};

pub const FILE: &str = "MANIFEST";

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u32,
    /// WAL segments up to and including this one are in parts (0: none yet).
    pub wal_checkpoint: u64,
    /// Sequence number for the next part; a higher sequence wins at equal timestamps.
    pub next_seq: u64,
    pub parts: Vec<PartEntry>,
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
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt(format!("{}: {e}", path.display()))),
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
                    version: 1,
                    ..Manifest::default()
                })
            }
            Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
        }
    }

    pub fn save(&self, dir: &Path) -> Result<()> {
        let tmp = dir.join("MANIFEST.tmp");
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| Error::Invalid(e.to_string()))?;
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
