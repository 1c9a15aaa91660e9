//! `pulsewire restore`: puts a backup written by `pulsewire backup` into the data directory of a
//! stopped node. The backup is verified against BACKUP.json before anything is touched; the
//! files are then copied into a staging directory beside the store, which one rename turns into
//! the store, so a restore that fails or is interrupted leaves the node's data as it was.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Context as _, bail};
use clap::Args;

use crate::backup::{BackupIndex, FORMAT, INDEX_FILE, Progress, crc_hex, human, relative_path, sync_dir};

#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// Backup directory written by `pulsewire backup`.
    #[arg(long, value_name = "DIR")]
    pub from: PathBuf,
    /// Data directory of the node to restore into; the node must be stopped.
    #[arg(long, value_name = "DIR")]
    pub data_dir: PathBuf,
    /// Restore even if the data directory already holds a store; the old store is moved aside to
    /// `tsdb.before-restore-<time>`, not deleted.
    #[arg(long)]
    pub force: bool,
}

/// Where a restore copies to before the rename; left over only by an interrupted restore.
const STAGING: &str = "tsdb.restoring";

pub fn run(args: RestoreArgs) -> anyhow::Result<()> {
    let index = read_index(&args.from)?;
    let mut progress = Progress::new("verify", index.files.len(), index.total_bytes);
    for (i, f) in index.files.iter().enumerate() {
        check_file(&args.from, f, None, i + 1, &mut progress)?;
    }
    eprintln!(
        "backup verified: {} files, {}, snapshot {} of {} taken {}",
        index.files.len(),
        human(index.total_bytes),
        index.snapshot,
        index.server,
        index.created
    );

    fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create data directory {}", args.data_dir.display()))?;
    // Held until the restore is done, so that no node starts on a half-restored directory.
    let _lock = pulsewire_server::lock_data_dir(&args.data_dir)
        .context("refusing to restore under a running node; stop it first")?;
    let store = args.data_dir.join("tsdb");
    let existing = holds_data(&store)?;
    if existing && !args.force {
        bail!(
            "{} already holds a store; pass --force to move it aside (to tsdb.before-restore-<time>) and restore",
            store.display()
        );
    }

    let staging = args.data_dir.join(STAGING);
    if staging.exists() {
        // The lock says no other restore is running: this is the leftover of an interrupted one.
        fs::remove_dir_all(&staging).with_context(|| format!("cannot remove {}", staging.display()))?;
    }
    if let Err(e) = copy_all(&args.from, &staging, &index) {
        if let Err(cleanup) = fs::remove_dir_all(&staging) {
            eprintln!("warning: cannot remove {} ({cleanup})", staging.display());
        }
        return Err(e);
    }

    let aside = if existing {
        let aside = aside_path(&args.data_dir);
        fs::rename(&store, &aside)
            .with_context(|| format!("cannot move {} aside to {}", store.display(), aside.display()))?;
        eprintln!("moved the existing store aside to {}", aside.display());
        Some(aside)
    } else {
        if store.exists() {
            // Directories without a single file: nothing to keep.
            fs::remove_dir_all(&store).with_context(|| format!("cannot remove the empty {}", store.display()))?;
        }
        None
    };
    if let Err(e) = fs::rename(&staging, &store) {
        if let Some(aside) = &aside
            && let Err(back) = fs::rename(aside, &store)
        {
            eprintln!(
                "warning: cannot move {} back to {} ({back})",
                aside.display(),
                store.display()
            );
        }
        return Err(e).with_context(|| format!("cannot rename {} to {}", staging.display(), store.display()));
    }
    sync_dir(&args.data_dir)?;
    eprintln!(
        "restored {} files ({}) into {}; start the node with: pulsewire serve --data-dir {}",
        index.files.len(),
        human(index.total_bytes),
        store.display(),
        args.data_dir.display()
    );
    Ok(())
}

/// Reads and checks BACKUP.json: a known format, safe and distinct file names, and a manifest.
fn read_index(from: &Path) -> anyhow::Result<BackupIndex> {
    let path = from.join(INDEX_FILE);
    let text = fs::read(&path).with_context(|| {
        format!(
            "{} is not a complete Pulsewire backup: cannot read {INDEX_FILE}",
            from.display()
        )
    })?;
    let index: BackupIndex =
        serde_json::from_slice(&text).with_context(|| format!("{} is unreadable", path.display()))?;
    if index.format != FORMAT {
        bail!(
            "{} has format {}; this pulsewire reads format {FORMAT}",
            path.display(),
            index.format
        );
    }
    let mut seen = HashSet::new();
    for f in &index.files {
        relative_path(&f.path).with_context(|| format!("{} is unusable", path.display()))?;
        if !seen.insert(f.path.as_str()) {
            bail!("{} names {} twice", path.display(), f.path);
        }
    }
    if !seen.contains("MANIFEST") {
        bail!(
            "{} lists no MANIFEST; the backup cannot be opened as a store",
            path.display()
        );
    }
    Ok(index)
}

/// Reads one file of the backup, checking its size and CRC-32 against BACKUP.json, and writes
/// it to `copy` if given.
fn check_file(
    from: &Path,
    file: &crate::backup::BackupFile,
    mut copy: Option<&mut File>,
    i: usize,
    progress: &mut Progress,
) -> anyhow::Result<()> {
    let path = from.join(relative_path(&file.path)?);
    let mut src = File::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut crc = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        let chunk = buf.get(..n).unwrap_or_default();
        crc.update(chunk);
        if let Some(out) = copy.as_mut() {
            out.write_all(chunk).context("cannot write the copy")?;
        }
        bytes += n as u64;
        progress.advance(n as u64, i, &file.path);
    }
    if bytes != file.bytes {
        bail!(
            "{} holds {bytes} bytes but {INDEX_FILE} says {}; the backup is damaged or incomplete",
            file.path,
            file.bytes
        );
    }
    let crc = crc_hex(crc.finalize());
    if crc != file.crc32.to_ascii_lowercase() {
        bail!(
            "checksum mismatch in {}: {INDEX_FILE} says crc32 {}, the file has {crc}; the backup is damaged",
            file.path,
            file.crc32
        );
    }
    progress.file_done(i, &file.path);
    Ok(())
}

/// Copies every file into `staging`, checking each again as it goes so that what lands is
/// exactly what was verified, and syncs files and directories.
fn copy_all(from: &Path, staging: &Path, index: &BackupIndex) -> anyhow::Result<()> {
    let mut progress = Progress::new("restore", index.files.len(), index.total_bytes);
    let mut dirs = HashSet::from([staging.to_path_buf()]);
    fs::create_dir_all(staging).with_context(|| format!("cannot create {}", staging.display()))?;
    for (i, f) in index.files.iter().enumerate() {
        let dest = staging.join(relative_path(&f.path)?);
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
            dirs.insert(parent.to_path_buf());
        }
        let mut out = File::create_new(&dest).with_context(|| format!("cannot create {}", dest.display()))?;
        check_file(from, f, Some(&mut out), i + 1, &mut progress)
            .with_context(|| format!("the backup changed while it was restored ({})", f.path))?;
        out.sync_all()
            .with_context(|| format!("cannot sync {}", dest.display()))?;
    }
    for dir in &dirs {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Whether `dir` holds any file at all; a tree of empty directories is no data.
fn holds_data(dir: &Path) -> anyhow::Result<bool> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
    };
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot read {}", dir.display()))?;
        let is_dir = entry
            .file_type()
            .with_context(|| format!("cannot read {}", entry.path().display()))?
            .is_dir();
        if !is_dir || holds_data(&entry.path())? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// `tsdb.before-restore-<UTC time>`, with a suffix if two restores fall in one second.
fn aside_path(data_dir: &Path) -> PathBuf {
    let stamp: String = humantime::format_rfc3339_seconds(SystemTime::now())
        .to_string()
        .chars()
        .filter(|c| !matches!(c, '-' | ':'))
        .collect();
    let base = format!("tsdb.before-restore-{stamp}");
    let mut path = data_dir.join(&base);
    let mut n = 2;
    while path.exists() {
        path = data_dir.join(format!("{base}-{n}"));
        n += 1;
    }
    path
}
