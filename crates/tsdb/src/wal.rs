//! The write-ahead log. A write is acknowledged only once its record is in the log (and, with
//! the default policy, synced): one thread owns the log file, takes every record that queued
//! while it was busy, writes them with one syscall and syncs once for all of them (group
//! commit), then acknowledges each.
//!
//! On disk: `wal/<seq>.wal` segments, each a sequence of records
//! `[len: u32 LE][crc32 of payload: u32 LE][payload]`. A checkpoint rotates to a new segment;
//! once the head behind it is in sealed parts, older segments are deleted. On start, segments
//! newer than the manifest's checkpoint are replayed; a torn or corrupt record ends that
//! segment's replay (it can only be the tail of a crash: nothing after it was acknowledged).
//! A write or sync that fails poisons the log: every later append is refused with the error.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::oneshot;

use crate::bytes::Reader;
use crate::config::FsyncPolicy;
use crate::{Error, Result};

pub type Ack = oneshot::Receiver<Result<()>>;

enum Cmd {
    Append(Vec<u8>, oneshot::Sender<Result<()>>),
    /// Closes the current segment and starts the next; answers the closed segment's number.
    Rotate(oneshot::Sender<Result<u64>>),
}

pub struct Wal {
    tx: Mutex<Option<mpsc::Sender<Cmd>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    dir: PathBuf,
    /// Bytes in the current segment, for the size-triggered checkpoint.
    segment_bytes: Arc<AtomicU64>,
    poisoned: Arc<Mutex<Option<String>>>,
}

pub fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:020}.wal"))
}

/// Segment numbers present in `dir`, ascending.
pub fn segments(dir: &Path) -> Result<Vec<u64>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| Error::io("reading the WAL directory", e))? {
        let entry = entry.map_err(|e| Error::io("reading the WAL directory", e))?;
        let name = entry.file_name();
        let Some(seq) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".wal"))
            .and_then(|n| n.parse().ok())
        else {
            continue;
        };
        out.push(seq);
    }
    out.sort_unstable();
    Ok(out)
}

/// Reads a segment's records, stopping at the first torn or corrupt one. Returns the payloads
/// and whether the segment ended cleanly.
pub fn read_segment(path: &Path) -> Result<(Vec<Vec<u8>>, bool)> {
    let data = fs::read(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    Ok(read_frames(&data))
}

/// The payloads of CRC-framed records back to back, up to the first torn or corrupt one, and
/// whether every byte was a good record.
pub fn read_frames(data: &[u8]) -> (Vec<Vec<u8>>, bool) {
    let mut r = Reader::new(data, "wal");
    let mut out = Vec::new();
    while !r.is_empty() {
        let Ok(len) = r.u32_le() else { return (out, false) };
        let Ok(crc) = r.u32_le() else { return (out, false) };
        let Ok(payload) = r.bytes(len as usize) else {
            return (out, false);
        };
        if crc32fast::hash(payload) != crc {
            return (out, false);
        }
        out.push(payload.to_vec());
    }
    (out, true)
}

pub fn frame(payload: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

impl Wal {
    /// Opens a new segment numbered `seq` (after replay, one past every existing segment).
    pub fn open(dir: &Path, seq: u64, policy: FsyncPolicy, interval: Duration) -> Result<Wal> {
        let file = create_segment(dir, seq)?;
        let (tx, rx) = mpsc::channel();
        let segment_bytes = Arc::new(AtomicU64::new(0));
        let poisoned = Arc::new(Mutex::new(None));
        let writer = Writer {
            dir: dir.to_path_buf(),
            file,
            seq,
            policy,
            interval,
            segment_bytes: segment_bytes.clone(),
            poisoned: poisoned.clone(),
            dirty: false,
        };
        let thread = std::thread::Builder::new()
            .name("tsdb-wal".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| Error::io("starting the WAL thread", e))?;
        Ok(Wal {
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
            dir: dir.to_path_buf(),
            segment_bytes,
            poisoned,
        })
    }

    pub fn poisoned(&self) -> Option<String> {
        self.poisoned.lock().clone()
    }

    /// Queues one framed record; the receiver resolves once it is durable per the policy.
    /// Records are written in the order this is called.
    pub fn append(&self, record: Vec<u8>) -> Ack {
        let (tx, rx) = oneshot::channel();
        if let Some(msg) = self.poisoned() {
            let _ = tx.send(Err(Error::Poisoned(msg)));
            return rx;
        }
        match &*self.tx.lock() {
            Some(s) => {
                if let Err(mpsc::SendError(Cmd::Append(_, tx))) = s.send(Cmd::Append(record, tx)) {
                    let _ = tx.send(Err(Error::Closed));
                }
            }
            None => {
                let _ = tx.send(Err(Error::Closed));
            }
        }
        rx
    }

    /// Starts a new segment after everything queued so far; resolves to the closed segment.
    pub fn rotate(&self) -> oneshot::Receiver<Result<u64>> {
        let (tx, rx) = oneshot::channel();
        match &*self.tx.lock() {
            Some(s) => {
                if let Err(mpsc::SendError(Cmd::Rotate(tx))) = s.send(Cmd::Rotate(tx)) {
                    let _ = tx.send(Err(Error::Closed));
                }
            }
            None => {
                let _ = tx.send(Err(Error::Closed));
            }
        }
        rx
    }

    pub fn segment_bytes(&self) -> u64 {
        self.segment_bytes.load(Ordering::Relaxed)
    }

    /// Deletes segments up to and including `seq` (their content is in sealed parts).
    pub fn remove_through(&self, seq: u64) -> Result<()> {
        for s in segments(&self.dir)? {
            if s <= seq {
                fs::remove_file(segment_path(&self.dir, s)).map_err(|e| Error::io("deleting a WAL segment", e))?;
            }
        }
        Ok(())
    }

    /// Writes and syncs what is queued, then stops the thread.
    pub fn close(&self) {
        self.tx.lock().take();
        if let Some(t) = self.thread.lock().take() {
            let _ = t.join();
        }
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        self.close();
    }
}

fn create_segment(dir: &Path, seq: u64) -> Result<File> {
    let path = segment_path(dir, seq);
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
    sync_dir(dir)?;
    Ok(file)
}

pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(format!("syncing directory {}", dir.display()), e))
}

struct Writer {
    dir: PathBuf,
    file: File,
    seq: u64,
    policy: FsyncPolicy,
    interval: Duration,
    segment_bytes: Arc<AtomicU64>,
    poisoned: Arc<Mutex<Option<String>>>,
    /// Written but not yet synced (interval policy).
    dirty: bool,
}

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Cmd>) {
        let mut buf = Vec::with_capacity(1 << 20);
        let mut acks = Vec::new();
        let mut last_sync = Instant::now();
        loop {
            let first = if self.policy == FsyncPolicy::Interval && self.dirty {
                let wait = self.interval.saturating_sub(last_sync.elapsed());
                match rx.recv_timeout(wait) {
                    Ok(cmd) => Some(cmd),
                    Err(mpsc::RecvTimeoutError::Timeout) => None,
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                }
            } else {
                match rx.recv() {
                    Ok(cmd) => Some(cmd),
                    Err(_) => break,
                }
            };
            let mut rotate = None;
            let mut next = first;
            // Gather everything that queued while we were busy: one write and one sync for all.
            while let Some(cmd) = next.take() {
                match cmd {
                    Cmd::Append(rec, ack) => {
                        buf.extend_from_slice(&rec);
                        acks.push(ack);
                    }
                    Cmd::Rotate(ack) => {
                        rotate = Some(ack);
                        break;
                    }
                }
                if buf.len() >= 8 << 20 {
                    break;
                }
                next = rx.try_recv().ok();
            }
            let result = self.flush(&mut buf, rotate.is_some(), &mut last_sync);
            for ack in acks.drain(..) {
                let _ = ack.send(result.clone());
            }
            if let Some(ack) = rotate {
                let _ = ack.send(result.and_then(|()| self.rotate()));
            }
        }
        let _ = self.flush(&mut buf, true, &mut last_sync);
    }

    fn flush(&mut self, buf: &mut Vec<u8>, force_sync: bool, last_sync: &mut Instant) -> Result<()> {
        if let Some(msg) = self.poisoned.lock().clone() {
            buf.clear();
            return Err(Error::Poisoned(msg));
        }
        let result = self.write_and_sync(buf, force_sync, last_sync);
        buf.clear();
        if let Err(e) = &result {
            let msg = format!("the write-ahead log failed ({e}); the store refuses writes until restarted");
            tracing::error!("{msg}");
            *self.poisoned.lock() = Some(msg);
        }
        result
    }

    fn write_and_sync(&mut self, buf: &[u8], force_sync: bool, last_sync: &mut Instant) -> Result<()> {
        if !buf.is_empty() {
            self.file.write_all(buf).map_err(|e| Error::io("writing the WAL", e))?;
            self.segment_bytes.fetch_add(buf.len() as u64, Ordering::Relaxed);
            self.dirty = true;
        }
        let due = match self.policy {
            FsyncPolicy::Always => true,
            FsyncPolicy::Interval => last_sync.elapsed() >= self.interval,
            FsyncPolicy::Never => false,
        };
        if self.dirty && (due || force_sync) {
            self.file.sync_data().map_err(|e| Error::io("syncing the WAL", e))?;
            self.dirty = false;
            *last_sync = Instant::now();
        }
        Ok(())
    }

    fn rotate(&mut self) -> Result<u64> {
        let closed = self.seq;
        self.file = create_segment(&self.dir, closed + 1)?;
        self.seq = closed + 1;
        self.segment_bytes.store(0, Ordering::Relaxed);
        Ok(closed)
    }
}
