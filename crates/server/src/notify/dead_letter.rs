//! The dead-letter log: webhook notifications that could not be delivered, one JSON object per
//! line in `<data_dir>/notify/dead-letter.jsonl`. Appends are fsynced before they count, so a
//! notification is never only in memory once given up on; replay rewrites the file atomically
//! (temporary file, fsync, rename, fsync of the directory) with what it did not re-queue.
//!
//! Blocking IO: callers run these on the blocking pool.

use std::fs::{File, OpenOptions};
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::{Error, Result};

/// One undelivered notification.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The tenant whose alerts it carries; entries written before tenants are `default`'s.
    #[serde(default = "default_tenant")]
    pub tenant: String,
    /// The webhook it was meant for.
    pub webhook: String,
    /// The `Idempotency-Key` it was (and will again be) sent with.
    pub idempotency_key: String,
    /// The body, exactly as it was sent.
    pub payload: Box<RawValue>,
    /// Attempts made before it was given up on.
    pub attempts: u32,
    /// Why the last attempt failed.
    pub last_error: String,
    /// When it was given up on (RFC 3339).
    pub at: String,
}

fn default_tenant() -> String {
    pulsewire_model::DEFAULT_TENANT.to_owned()
}

pub(crate) struct DeadLetterLog {
    path: PathBuf,
    /// Serializes appends with replay's read-and-rewrite, so no append lands in a file that is
    /// about to be replaced.
    lock: Mutex<()>,
}

/// A line of the log: an entry, or something that does not parse (a write torn by a crash),
/// which is kept as it is rather than thrown away.
enum Line {
    Entry(DeadLetter),
    Unreadable(String),
}

impl DeadLetterLog {
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|source| Error::DeadLetter {
            path: dir.to_owned(),
            source,
        })?;
        Ok(Self {
            path: dir.join("dead-letter.jsonl"),
            lock: Mutex::new(()),
        })
    }

    #[cfg(test)]
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn append(&self, entries: &[DeadLetter]) -> Result<()> {
        let _guard = self.lock.lock();
        let mut buf = Vec::new();
        for e in entries {
            // A struct of strings and a raw JSON value cannot fail to serialize.
            serde_json::to_writer(&mut buf, e).map_err(|e| self.io_error(std::io::Error::other(e)))?;
            buf.push(b'\n');
        }
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| self.io_error(e))?;
        f.write_all(&buf).map_err(|e| self.io_error(e))?;
        f.sync_data().map_err(|e| self.io_error(e))
    }

    pub fn list(&self) -> Result<Vec<DeadLetter>> {
        let _guard = self.lock.lock();
        Ok(self
            .read()?
            .into_iter()
            .filter_map(|l| match l {
                Line::Entry(e) => Some(e),
                Line::Unreadable(_) => None,
            })
            .collect())
    }

    /// Offers every entry `select` picks to `queue`, and rewrites the log without the ones it
    /// took. Returns how many were taken and how many selected entries stay.
    pub fn take(
        &self,
        mut select: impl FnMut(&DeadLetter) -> bool,
        mut queue: impl FnMut(&DeadLetter) -> bool,
    ) -> Result<(usize, usize)> {
        let _guard = self.lock.lock();
        let lines = self.read()?;
        let (mut taken, mut left) = (0, 0);
        let mut keep = Vec::with_capacity(lines.len());
        for line in lines {
            match line {
                Line::Entry(e) if select(&e) => {
                    if queue(&e) {
                        taken += 1;
                    } else {
                        left += 1;
                        keep.push(Line::Entry(e));
                    }
                }
                other => keep.push(other),
            }
        }
        if taken > 0 {
            // Crashing between queueing and this rewrite sends those again after a restart,
            // with the same idempotency key, so receivers can still drop the duplicate.
            self.rewrite(&keep)?;
        }
        Ok((taken, left))
    }

    fn read(&self) -> Result<Vec<Line>> {
        let f = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.io_error(e)),
        };
        let mut out = Vec::new();
        for line in BufReader::new(f).lines() {
            let line = line.map_err(|e| self.io_error(e))?;
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str(&line) {
                Ok(e) => out.push(Line::Entry(e)),
                Err(e) => {
                    tracing::warn!(path = %self.path.display(), "unreadable dead letter kept as it is: {e}");
                    out.push(Line::Unreadable(line));
                }
            }
        }
        Ok(out)
    }

    fn rewrite(&self, lines: &[Line]) -> Result<()> {
        let tmp = self.path.with_extension("jsonl.tmp");
        let mut buf = Vec::new();
        for l in lines {
            match l {
                Line::Entry(e) => {
                    serde_json::to_writer(&mut buf, e).map_err(|e| self.io_error(std::io::Error::other(e)))?
                }
                Line::Unreadable(s) => buf.extend_from_slice(s.as_bytes()),
            }
            buf.push(b'\n');
        }
        let write = || -> std::io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(&buf)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)?;
            // The rename is only durable once the directory entry is.
            if let Some(dir) = self.path.parent() {
                File::open(dir)?.sync_all()?;
            }
            Ok(())
        };
        write().map_err(|e| self.io_error(e))
    }

    fn io_error(&self, source: std::io::Error) -> Error {
        Error::DeadLetter {
            path: self.path.clone(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(webhook: &str, key: &str) -> DeadLetter {
        DeadLetter {
            tenant: "default".into(),
            webhook: webhook.into(),
            idempotency_key: key.into(),
            payload: RawValue::from_string(format!("{{\"k\":\"{key}\"}}")).expect("raw json"),
            attempts: 3,
            last_error: "HTTP 503".into(),
            at: "2026-01-01T00:00:00Z".into(),
        }
    }

    #[test]
    fn take_removes_only_what_was_queued_and_keeps_torn_lines() {
        let dir = std::env::temp_dir().join(format!("pulsewire-dl-{}", std::process::id()));
        if dir.exists() {
            std::fs::remove_dir_all(&dir).expect("remove an earlier run's directory");
        }
        let log = DeadLetterLog::open(&dir).expect("open");
        assert!(log.list().expect("empty list").is_empty());
        log.append(&[entry("a", "1"), entry("b", "2")]).expect("append");
        // A torn last write, as a crash mid-append leaves it.
        let mut f = OpenOptions::new().append(true).open(log.path()).expect("open log");
        f.write_all(b"{\"webhook\":\"a\",\"idem").expect("write");
        f.write_all(b"\n").expect("write");
        log.append(&[entry("a", "3")]).expect("append");

        let mut offered = Vec::new();
        let (taken, left) = log
            .take(
                |e| e.webhook == "a",
                |e| {
                    offered.push(e.idempotency_key.clone());
                    e.idempotency_key == "1"
                },
            )
            .expect("take");
        assert_eq!((taken, left), (1, 1));
        assert_eq!(offered, ["1", "3"]);
        let keys: Vec<_> = log
            .list()
            .expect("list")
            .into_iter()
            .map(|e| e.idempotency_key)
            .collect();
        assert_eq!(keys, ["2", "3"]);
        let text = std::fs::read_to_string(log.path()).expect("read");
        assert!(text.contains("{\"webhook\":\"a\",\"idem\n"), "torn line kept: {text}");
        assert_eq!(entry("a", "1").payload.get(), "{\"k\":\"1\"}");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
