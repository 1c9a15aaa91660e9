//! `pulsewire backup` and the backup format. A backup is a directory holding the files of one
//! store snapshot as the node listed them (`parts/*.pwp`, `series.log`, `MANIFEST`), plus
//! `BACKUP.json`, which names each with its size and CRC-32 so that `pulsewire restore` can
//! tell a damaged backup from a good one. BACKUP.json is written last: a directory without it is
//! an interrupted backup and is never mistaken for a complete one.

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, anyhow, bail};
use clap::Args;
use reqwest::Url;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt as _;

/// The index of a backup, inside the backup directory.
pub const INDEX_FILE: &str = "BACKUP.json";
/// Version of BACKUP.json; restore refuses versions it does not know.
pub const FORMAT: u32 = 1;
/// The file without which a snapshot cannot be opened as a store.
const STORE_MANIFEST: &str = "MANIFEST";

#[derive(Args, Debug)]
pub struct BackupArgs {
    /// Base URL of the running node, e.g. http://127.0.0.1:8080.
    #[arg(long, value_name = "URL")]
    pub server: String,
    /// Directory to write the backup into; created if missing, refused if not empty.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// File holding an API key with the `admin` scope, for a node with `auth.enabled` (read
    /// from a file so the key does not show in the process list).
    #[arg(long, value_name = "FILE")]
    pub api_key_file: Option<PathBuf>,
}

/// BACKUP.json.
#[derive(Debug, Serialize, Deserialize)]
pub struct BackupIndex {
    pub format: u32,
    /// Version of the `pulsewire` that wrote the backup.
    pub pulsewire_version: String,
    /// The node the backup was taken from.
    pub server: String,
    /// Id of the snapshot on that node (deleted once downloaded).
    pub snapshot: String,
    /// When the snapshot was taken (RFC 3339, UTC).
    pub created: String,
    pub total_bytes: u64,
    pub files: Vec<BackupFile>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct BackupFile {
    /// Relative to the backup directory (and to the store directory), `/`-separated.
    pub path: String,
    pub bytes: u64,
    /// CRC-32 (IEEE) of the content, 8 hex digits.
    pub crc32: String,
}

/// `POST /api/v1/admin/snapshots` answers this.
#[derive(Debug, Deserialize)]
struct Snapshot {
    id: String,
    files: Vec<SnapshotFile>,
}

#[derive(Debug, Deserialize)]
struct SnapshotFile {
    path: String,
    /// Optional so that a listing without sizes still works: Content-Length stands in.
    bytes: Option<u64>,
}

/// Checks a file name taken from a listing or from BACKUP.json: relative, without `..`, and not
/// BACKUP.json itself, so that neither a server nor an edited index can make backup or restore
/// write outside its directory.
pub fn relative_path(path: &str) -> anyhow::Result<PathBuf> {
    let p = Path::new(path);
    if path.is_empty() || path.contains('\\') || !p.components().all(|c| matches!(c, Component::Normal(_))) {
        bail!("file name {path:?} is not a plain relative path");
    }
    if path == INDEX_FILE {
        bail!("file name {path:?} is reserved for the backup index");
    }
    Ok(p.to_path_buf())
}

pub fn crc_hex(crc: u32) -> String {
    format!("{crc:08x}")
}

/// Bytes in binary units, for progress lines.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64 / 1024.0;
    let mut unit = UNITS[0];
    for u in &UNITS[1..] {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    format!("{v:.1} {unit}")
}

/// Progress on stderr: a line per finished file, and one at most every second within a file
/// so that a long transfer visibly moves.
pub struct Progress {
    verb: &'static str,
    files: usize,
    total: u64,
    done: u64,
    started: Instant,
    last: Instant,
}

impl Progress {
    pub fn new(verb: &'static str, files: usize, total: u64) -> Progress {
        let now = Instant::now();
        Progress {
            verb,
            files,
            total,
            done: 0,
            started: now,
            last: now,
        }
    }

    /// Counts `n` more bytes of file number `i` (from 1).
    pub fn advance(&mut self, n: u64, i: usize, path: &str) {
        self.done += n;
        if self.last.elapsed() >= Duration::from_secs(1) {
            self.print(i, path);
        }
    }

    pub fn file_done(&mut self, i: usize, path: &str) {
        self.print(i, path);
    }

    fn print(&mut self, i: usize, path: &str) {
        let secs = self.started.elapsed().as_secs_f64();
        let rate = if secs > 0.0 { self.done as f64 / secs } else { 0.0 };
        eprintln!(
            "{} [{i}/{}] {path}: {} of {} done, {}/s",
            self.verb,
            self.files,
            human(self.done),
            human(self.total),
            human(rate as u64)
        );
        self.last = Instant::now();
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}

/// Syncs a directory so that the names created in it survive a crash.
pub fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot sync directory {}", dir.display()))
}

pub fn run(args: BackupArgs) -> anyhow::Result<()> {
    // One transfer at a time: a single-threaded runtime is all it needs.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(backup(args))
}

async fn backup(args: BackupArgs) -> anyhow::Result<()> {
    let base = Url::parse(&args.server).with_context(|| format!("--server: {:?} is not a URL", args.server))?;
    if base.cannot_be_a_base() || !matches!(base.scheme(), "http" | "https") {
        bail!("--server: {} is not an http(s) URL", args.server);
    }
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(path) = &args.api_key_file {
        let key =
            std::fs::read_to_string(path).with_context(|| format!("--api-key-file: cannot read {}", path.display()))?;
        let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", key.trim()))
            .map_err(|_| anyhow::anyhow!("--api-key-file: {} does not hold a valid key", path.display()))?;
        value.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    let created_dir = prepare_out(&args.out)?;
    let client = reqwest::Client::builder()
        .default_headers(headers)
        .connect_timeout(Duration::from_secs(10))
        // Bounds a stalled node, generously: the snapshot's answer waits for a checkpoint, which
        // seals the whole in-memory head.
        .read_timeout(Duration::from_secs(600))
        .build()
        .context("cannot build the HTTP client")?;
    let snapshot = match create_snapshot(&client, &base).await {
        Ok(s) => s,
        Err(e) => {
            discard(&args.out, created_dir);
            return Err(e);
        }
    };
    let created = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    eprintln!(
        "snapshot {} taken on {}: {} files",
        snapshot.id,
        args.server,
        snapshot.files.len()
    );
    let result = tokio::select! {
        r = download_all(&client, &base, &snapshot, &args, created) => r,
        () = interrupted() => Err(anyhow!("interrupted")),
    };
    // Whatever happened, the snapshot holds disk space on the node until it is deleted.
    let deleted = delete_snapshot(&client, &base, &snapshot.id).await;
    match &deleted {
        Ok(()) => eprintln!("deleted snapshot {} on the server", snapshot.id),
        Err(e) => eprintln!(
            "warning: snapshot {} could not be deleted on the server ({e:#}); it keeps its files until \
             DELETE /api/v1/admin/snapshots/{} succeeds",
            snapshot.id, snapshot.id
        ),
    }
    match result {
        Ok(index) => {
            eprintln!(
                "backup complete: {} files, {} in {}",
                index.files.len(),
                human(index.total_bytes),
                args.out.display()
            );
            Ok(())
        }
        Err(e) => {
            discard(&args.out, created_dir);
            Err(e)
        }
    }
}

/// Resolves on Ctrl-C; never, if the signal cannot be listened for.
async fn interrupted() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Refuses a non-empty directory, creating a missing one; returns whether it created it, so that
/// a failed backup knows what to remove.
fn prepare_out(dir: &Path) -> anyhow::Result<bool> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                bail!(
                    "--out: {} exists and is not empty; a backup needs a new or empty directory",
                    dir.display()
                );
            }
            Ok(false)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
            Ok(true)
        }
        Err(e) => Err(e).with_context(|| format!("--out: cannot read {}", dir.display())),
    }
}

/// Removes what a failed backup wrote; the directory was new or empty, so all of it is ours.
fn discard(dir: &Path, created: bool) {
    let result = if created {
        std::fs::remove_dir_all(dir)
    } else {
        std::fs::read_dir(dir).and_then(|entries| {
            entries.into_iter().try_for_each(|e| {
                let e = e?;
                if e.file_type()?.is_dir() {
                    std::fs::remove_dir_all(e.path())
                } else {
                    std::fs::remove_file(e.path())
                }
            })
        })
    };
    match result {
        Ok(()) => eprintln!("removed the incomplete backup from {}", dir.display()),
        Err(e) => eprintln!(
            "warning: cannot remove the incomplete backup from {} ({e}); it has no {INDEX_FILE}, so restore refuses it",
            dir.display()
        ),
    }
}

fn endpoint<'a>(base: &Url, segments: impl IntoIterator<Item = &'a str>) -> anyhow::Result<Url> {
    let mut url = base.clone();
    url.path_segments_mut()
        .map_err(|()| anyhow!("{base} cannot be a base URL"))?
        .pop_if_empty()
        .extend(segments);
    Ok(url)
}

/// Passes a successful response through; turns any other into an error carrying the server's
/// message (its error bodies are `{"code", "message"}`).
async fn successful(resp: reqwest::Response, what: &str) -> anyhow::Result<reqwest::Response> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let body = resp.text().await.unwrap_or_default();
    let message = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("message")?.as_str().map(str::to_owned))
        .unwrap_or(body);
    bail!("{what}: the server answered {status}: {message}")
}

async fn create_snapshot(client: &reqwest::Client, base: &Url) -> anyhow::Result<Snapshot> {
    let url = endpoint(base, ["api", "v1", "admin", "snapshots"])?;
    let resp = client
        .post(url.clone())
        .send()
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    let resp = successful(resp, "cannot create a snapshot").await?;
    resp.json::<Snapshot>()
        .await
        .context("cannot read the snapshot listing")
}

async fn delete_snapshot(client: &reqwest::Client, base: &Url, id: &str) -> anyhow::Result<()> {
    let url = endpoint(base, ["api", "v1", "admin", "snapshots", id])?;
    let resp = client.delete(url).send().await?;
    successful(resp, "cannot delete the snapshot").await.map(drop)
}

async fn download_all(
    client: &reqwest::Client,
    base: &Url,
    snapshot: &Snapshot,
    args: &BackupArgs,
    created: String,
) -> anyhow::Result<BackupIndex> {
    let mut seen = HashSet::new();
    for f in &snapshot.files {
        relative_path(&f.path).context("the snapshot listing is unusable")?;
        if !seen.insert(f.path.as_str()) {
            bail!("the snapshot listing names {} twice", f.path);
        }
    }
    if !seen.contains(STORE_MANIFEST) {
        bail!("the snapshot listing has no {STORE_MANIFEST}; it cannot be restored");
    }
    let total = snapshot.files.iter().filter_map(|f| f.bytes).sum();
    let mut progress = Progress::new("backup", snapshot.files.len(), total);
    let mut files = Vec::with_capacity(snapshot.files.len());
    let mut dirs = HashSet::new();
    for (i, f) in snapshot.files.iter().enumerate() {
        let dest = args.out.join(relative_path(&f.path)?);
        if let Some(parent) = dest.parent() {
            dirs.insert(parent.to_path_buf());
        }
        let (bytes, crc) = download(client, base, &snapshot.id, f, &dest, i + 1, &mut progress)
            .await
            .with_context(|| format!("cannot download {}", f.path))?;
        files.push(BackupFile {
            path: f.path.clone(),
            bytes,
            crc32: crc_hex(crc),
        });
    }
    for dir in &dirs {
        sync_dir(dir)?;
    }
    let index = BackupIndex {
        format: FORMAT,
        pulsewire_version: env!("CARGO_PKG_VERSION").to_string(),
        server: args.server.clone(),
        snapshot: snapshot.id.clone(),
        created,
        total_bytes: files.iter().map(|f| f.bytes).sum(),
        files,
    };
    write_index(&args.out, &index)?;
    eprintln!(
        "downloaded {} in {:.1} s",
        human(index.total_bytes),
        progress.elapsed().as_secs_f64()
    );
    Ok(index)
}

/// Downloads one file, returning its size and CRC-32 once its size is the one announced.
async fn download(
    client: &reqwest::Client,
    base: &Url,
    id: &str,
    file: &SnapshotFile,
    dest: &Path,
    i: usize,
    progress: &mut Progress,
) -> anyhow::Result<(u64, u32)> {
    let url = endpoint(
        base,
        ["api", "v1", "admin", "snapshots", id, "files"]
            .into_iter()
            .chain(file.path.split('/')),
    )?;
    let resp = client.get(url).send().await?;
    let mut resp = successful(resp, "the download failed").await?;
    let expected = match (file.bytes, resp.content_length()) {
        (Some(listed), Some(sent)) if listed != sent => {
            bail!("the snapshot lists {listed} bytes but the server sends {sent}")
        }
        (Some(n), _) | (None, Some(n)) => n,
        (None, None) => bail!("the server gave no size for it"),
    };
    if let Some(parent) = dest.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let out = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dest)
        .await
        .with_context(|| format!("cannot create {}", dest.display()))?;
    let mut out = tokio::io::BufWriter::with_capacity(1 << 20, out);
    let mut crc = crc32fast::Hasher::new();
    let mut received = 0u64;
    while let Some(chunk) = resp.chunk().await? {
        received += chunk.len() as u64;
        if received > expected {
            bail!("the server sent more than the {expected} bytes announced");
        }
        crc.update(&chunk);
        out.write_all(&chunk)
            .await
            .with_context(|| format!("cannot write {}", dest.display()))?;
        progress.advance(chunk.len() as u64, i, &file.path);
    }
    if received != expected {
        bail!("received {received} of {expected} bytes; the transfer was cut short");
    }
    out.flush().await?;
    out.into_inner()
        .sync_all()
        .await
        .with_context(|| format!("cannot sync {}", dest.display()))?;
    progress.file_done(i, &file.path);
    Ok((received, crc.finalize()))
}

/// Writes BACKUP.json atomically (temporary file, sync, rename, sync the directory).
fn write_index(dir: &Path, index: &BackupIndex) -> anyhow::Result<()> {
    let tmp = dir.join(format!("{INDEX_FILE}.tmp"));
    let mut text = serde_json::to_vec_pretty(index).context("cannot encode the backup index")?;
    text.push(b'\n');
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        std::io::Write::write_all(&mut f, &text)?;
        f.sync_all()?;
        std::fs::rename(&tmp, dir.join(INDEX_FILE))
    };
    write().with_context(|| format!("cannot write {}", dir.join(INDEX_FILE).display()))?;
    sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_must_stay_inside_the_directory() {
        for ok in ["MANIFEST", "series.log", "parts/raw-1700000000000-0000000001.pwp"] {
            assert_eq!(relative_path(ok).unwrap(), PathBuf::from(ok), "{ok}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "parts/../../x",
            "./MANIFEST",
            "a\\b",
            INDEX_FILE,
        ] {
            assert!(relative_path(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn sizes_read_in_binary_units() {
        let cases = [
            (0, "0 B"),
            (1023, "1023 B"),
            (1024, "1.0 KiB"),
            (1536, "1.5 KiB"),
            (5 << 20, "5.0 MiB"),
            (3 << 30, "3.0 GiB"),
        ];
        for (bytes, text) in cases {
            assert_eq!(human(bytes), text, "{bytes}");
        }
    }
}
