//! The store: the write path (index, limits, WAL, head), checkpoints into parts and rollups,
//! compaction, retention, recovery on open, and the read path that merges parts, frozen heads
//! and the live head.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use pulsewire_codec::{Kind, Sketches, Summary, ValueRef, Values};
use pulsewire_model::TenantId;
use pulsewire_proto::{Agg, FieldValue, Line, Precision, Selector};

use crate::active::ActiveSeries;
use crate::config::StoreConfig;
use crate::head::{Head, merge};
use crate::index::{Index, LineKey, SeriesId, SeriesMeta, line_lookup_key};
use crate::manifest::{Manifest, PartEntry};
use crate::part::{Part, PartWriter, slice_values};
use crate::query::{Bucket, Tier, aggregate_raw, bucket_of, eval_summary, rebucket, summarize_raw};
use crate::record::{BatchBuilder, put_def, replay_batch};
use crate::series_log;
use crate::wal::{self, Ack, Wal};
use crate::{Error, Result};

/// Parts of similar size (the same power of four in points) in one partition that are merged
/// into one: size-tiered, so each point is rewritten about log4(partition / checkpoint) times,
/// not once per checkpoint.
const COMPACT_AT: usize = 4;
/// A partition that ended this long ago, and (raw) has gone quiet, is merged into a single part
/// (large blocks compress best: the codec needs hundreds of points per block to reach its size).
const COLD_AFTER_MS: i64 = 3_600_000;
/// A past day is quiet once no checkpoint has added raw points to it for this long (store
/// clock, ms); only then are its rollups built and its parts merged into one. A day still being
/// back-filled would otherwise be summarised, and rewritten whole, again and again as points
/// keep arriving (the whole-day merge every maintenance pass made back-filling quadratic).
const QUIET_MS: i64 = 600_000;
/// Raw points of a day without tiers are summarised this much at a time (a multiple of every
/// tier's resolution).
const PENDING_CHUNK_MS: i64 = 3_600_000;
/// How often retention and compaction run.
const MAINTENANCE_EVERY: Duration = Duration::from_secs(10);
/// Points one raw query may return.
pub const MAX_RAW_POINTS: usize = 1_000_000;

/// Why one line was not written.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    /// The line number (or object index) the caller gave.
    pub line: usize,
    pub kind: RefusalKind,
    pub message: String,
    /// Which limit refused the line, for `Limit`, `RateLimited` and `Quota` refusals.
    pub limit: Option<StoreLimit>,
}

impl Refusal {
    fn new(line: usize, kind: RefusalKind, message: String) -> Refusal {
        Refusal {
            line,
            kind,
            message,
            limit: (kind == RefusalKind::RateLimited).then_some(StoreLimit::NewSeriesPerMinute),
        }
    }

    fn limit(line: usize, limit: StoreLimit, kind: RefusalKind, message: String) -> Refusal {
        Refusal {
            limit: Some(limit),
            ..Refusal::new(line, kind, message)
        }
    }
}

/// The store's limits (`tsdb.limits`), as named in refusals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreLimit {
    TagsPerSeries,
    SeriesPerDatabase,
    NewSeriesPerMinute,
    SeriesPerTenant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    /// The line itself is wrong (timestamp out of range).
    Invalid,
    /// A field's type differs from the type the field already has.
    Conflict,
    /// The point is older than its retention.
    Retention,
    /// A series limit of the database is reached.
    Limit,
    /// The database created too many series this minute; retry later.
    RateLimited,
    /// The tenant holds as many series as its quota allows.
    Quota,
}

pub struct WriteOutcome {
    /// Indexes (into the given slice) of the lines written.
    pub accepted: Vec<usize>,
    /// Field values written.
    pub samples: u64,
    pub refused: Vec<Refusal>,
    /// Resolves once the accepted lines are durable; `None` if nothing was accepted.
    pub ack: Option<Ack>,
    /// The server time given to lines without a timestamp.
    pub now_ms: i64,
    /// Numeric samples written (series, ms, value; integers as floats), when asked for with
    /// [`Store::write_observed`]: what live analysis watches.
    pub observed: Vec<(SeriesId, i64, f64)>,
}

/// An aggregated read: `agg` per bucket of `step` ms over `[from, to)`.
#[derive(Debug, Clone, Copy)]
pub struct Aggregation {
    pub from: i64,
    pub to: i64,
    pub step: i64,
    pub agg: Agg,
    /// Aggregate raw points even where a rollup tier could answer.
    pub force_raw: bool,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct StoreStats {
    pub series: usize,
    pub head_series: usize,
    pub head_points: u64,
    pub head_bytes: usize,
    pub parts: usize,
    pub part_bytes: u64,
    /// Raw points in sealed parts.
    pub part_points: u64,
    pub wal_bytes: u64,
    pub checkpoints: u64,
    pub last_checkpoint_ms: Option<u64>,
}

/// Series definitions and the write limits' counters: read-locked by writers to resolve their
/// lines, write-locked to create series and by a checkpoint's freeze.
struct Catalog {
    index: Index,
    /// Series already in the series log.
    persisted: usize,
    /// New series per database in the current minute.
    new_series: HashMap<(TenantId, String), (i64, usize)>,
    /// Series per database that received points lately (`max_series_per_database`); its own
    /// lock so a checkpoint can mark the series of the head it seals under the read lock.
    active: Mutex<ActiveSeries>,
}

/// Where one line of a write stands.
#[derive(Clone, Copy)]
enum Slot {
    Refused,
    /// Its series exist: `ids[start..end]`, in field order.
    Ready {
        ts: i64,
        start: usize,
        end: usize,
    },
    /// Some of its series are new: resolved again under the catalog's write lock.
    Pending {
        ts: i64,
    },
}

/// What the index says of a line's fields.
enum Fields {
    /// Every field's series exists with the written type.
    Known,
    /// This many fields have no series yet.
    New(usize),
    Conflict(String),
}

fn lookup_key(buf: &mut String, tenant: &TenantId, db: &str, line: &Line<'_>) {
    line_lookup_key(
        buf,
        tenant.as_str(),
        db,
        &line.measurement,
        line.tags.iter().map(|(k, v)| (k.as_ref(), v.as_ref())),
    );
}

/// Calls `f` with the samples of a write's resolved lines, in line and field order. A loop
/// rather than an iterator: `flat_map`'s `next` over lines and fields was 4 % of the server's
/// CPU at full ingest (`perf`); throughput runs of the two are within their noise.
fn each_ready_sample<'a>(
    slots: &[Slot],
    lines: &'a [(usize, Line<'_>)],
    ids: &[(SeriesId, Kind)],
    mut f: impl FnMut(SeriesId, Kind, i64, ValueRef<'a>),
) {
    for (slot, (_, line)) in slots.iter().zip(lines) {
        let Slot::Ready { ts, start, end } = *slot else {
            continue;
        };
        let series = ids.get(start..end).unwrap_or_default();
        for (&(id, kind), (_, value)) in series.iter().zip(&line.fields) {
            f(id, kind, ts, value_ref(value));
        }
    }
}

/// Resolves a line's fields to their series (pushed to `ids` while all are known).
fn resolve_fields(
    index: &Index,
    lookup: &str,
    tenant: &TenantId,
    db: &str,
    line: &Line<'_>,
    ids: &mut Vec<(SeriesId, Kind)>,
) -> Fields {
    let known = index.line(lookup);
    let mut new = 0;
    for (pos, (field, value)) in line.fields.iter().enumerate() {
        let kind = kind_of(value);
        match known.as_ref().and_then(|l| l.field_at(pos, field)) {
            Some(id) => match index.meta(id) {
                Some(meta) if meta.kind == kind => ids.push((id, kind)),
                Some(meta) => return Fields::Conflict(type_conflict(field, meta.kind, kind)),
                None => {}
            },
            None => {
                if let Some(existing) = index.field_kind(tenant, db, &line.measurement, field)
                    && existing != kind
                {
                    return Fields::Conflict(type_conflict(field, existing, kind));
                }
                new += 1;
            }
        }
    }
    if new > 0 { Fields::New(new) } else { Fields::Known }
}

struct LivePart {
    entry: PartEntry,
    part: Part,
}

#[derive(Clone, Default)]
struct View {
    parts: Vec<Arc<LivePart>>,
    /// Heads being checkpointed: immutable, read without locks.
    frozen: Vec<Arc<Head>>,
    /// Raw day partitions without rollup tiers yet (the manifest's `unrolled`): aggregated
    /// queries read their raw points instead.
    unrolled: BTreeSet<i64>,
}

impl View {
    /// The parts of `tier` that may hold points in `[from, to)`.
    fn parts_in(&self, tier: Tier, from: i64, to: i64) -> impl Iterator<Item = &Arc<LivePart>> {
        self.parts
            .iter()
            .filter(move |p| p.entry.tier == tier && p.part.max_ts >= from && p.part.min_ts < to)
    }
}

struct Shared {
    dir: PathBuf,
    config: StoreConfig,
    catalog: RwLock<Catalog>,
    /// The live head. Writers hold it only to append and to queue their WAL record (so the WAL
    /// follows the head's order); taken after `catalog` where both are.
    head: Mutex<Head>,
    view: RwLock<Arc<View>>,
    wal: Wal,
    /// The live manifest. Checkpoints and compactions write their parts without it and take it
    /// only to apply their change to the current set (so neither waits for the other's
    /// sealing or merging).
    manifest: Mutex<Manifest>,
    /// Sequence number of the next part, shared by checkpoints and compactions.
    next_seq: AtomicU64,
    /// Serialises checkpoints.
    checkpointing: Mutex<()>,
    /// Store-clock time (ms) of the last checkpoint that added raw points to each day partition
    /// since the start, for [`QUIET_MS`].
    raw_written: Mutex<HashMap<i64, i64>>,
    /// Serialises compaction and retention. Held apart from checkpoints: a compaction can take
    /// many seconds, and a checkpoint waiting behind it let the head and the WAL grow without
    /// bound (and writers stall for as long).
    maintenance: Mutex<()>,
    counters: MaintenanceStats,
    stop: AtomicBool,
    poisoned: Mutex<Option<String>>,
    clock: Clock,
    /// Signalled when a checkpoint ends, for writers held back by [`Shared::wait_for_room`].
    checkpoint_done: (Mutex<()>, parking_lot::Condvar),
}

/// Counters of the maintenance work, readable without waiting for it.
#[derive(Default)]
struct MaintenanceStats {
    checkpoints: std::sync::atomic::AtomicU64,
    /// Duration of the last checkpoint in ms, plus one (0: none yet).
    last_checkpoint_ms: std::sync::atomic::AtomicU64,
}

/// The store. Cheap to clone; [`Store::close`] checkpoints and stops the background work.
#[derive(Clone)]
pub struct Store {
    shared: Arc<Shared>,
    background: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

/// The store's source of "now" (unix ms): the system clock, or a test's own.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

pub fn system_clock() -> Clock {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64)
    })
}

/// Active series on start: those in the replayed WAL (written since the last checkpoint) are
/// active now, those with raw points inside the window (by the points' timestamps) since their
/// last such point; the rest are not.
fn active_on_open(config: &StoreConfig, index: &Index, head: &Head, parts: &[Arc<LivePart>], now: i64) -> ActiveSeries {
    let window_ms = config.limits.active_series_window.as_millis().min(i64::MAX as u128) as i64;
    let mut active = ActiveSeries::new(window_ms.div_euclid(60_000).max(1), index);
    let since = now.saturating_sub(window_ms);
    let minute = now.div_euclid(60_000);
    // The last active minute of each series (ids are dense), then touched in time order: the
    // tracker's clock only moves forward.
    let mut last = vec![i64::MIN; index.len()];
    for p in parts
        .iter()
        .filter(|p| p.entry.tier == Tier::Raw && p.part.max_ts >= since)
    {
        for id in p.part.series_ids() {
            if let (Some(b), Some(m)) = (p.part.blocks(id, since, i64::MAX).last(), last.get_mut(id as usize)) {
                *m = (*m).max(b.max_ts.min(now).div_euclid(60_000));
            }
        }
    }
    for id in head.ids() {
        if let Some(m) = last.get_mut(id as usize) {
            *m = minute;
        }
    }
    let mut seen: Vec<(i64, SeriesId)> = last
        .into_iter()
        .enumerate()
        .filter(|&(_, m)| m != i64::MIN)
        .map(|(id, m)| (m, id as SeriesId))
        .collect();
    seen.sort_unstable();
    for (minute, id) in seen {
        active.touch(id, minute);
    }
    active
}

fn kind_of(v: &FieldValue<'_>) -> Kind {
    match v {
        FieldValue::Float(_) => Kind::Float,
        FieldValue::Int(_) => Kind::Int,
        FieldValue::UInt(_) => Kind::UInt,
        FieldValue::Bool(_) => Kind::Bool,
        FieldValue::Str(_) => Kind::Str,
    }
}

fn value_ref<'a>(v: &'a FieldValue<'_>) -> ValueRef<'a> {
    match v {
        FieldValue::Float(f) => ValueRef::Float(*f),
        FieldValue::Int(i) => ValueRef::Int(*i),
        FieldValue::UInt(u) => ValueRef::UInt(*u),
        FieldValue::Bool(b) => ValueRef::Bool(*b),
        FieldValue::Str(s) => ValueRef::Str(s),
    }
}

pub fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Float => "float",
        Kind::Int => "integer",
        Kind::UInt => "unsigned",
        Kind::Bool => "boolean",
        Kind::Str => "string",
    }
}

/// Converts a line's timestamp to milliseconds (the store's resolution).
pub fn to_ms(ts: i64, precision: Precision) -> Option<i64> {
    Some(match precision {
        Precision::Ns => ts.div_euclid(1_000_000),
        Precision::Us => ts.div_euclid(1_000),
        Precision::Ms => ts,
        Precision::S => ts.checked_mul(1_000)?,
        Precision::M => ts.checked_mul(60_000)?,
        Precision::H => ts.checked_mul(3_600_000)?,
    })
}

fn numeric(values: &Values) -> Option<Cow<'_, [f64]>> {
    match values {
        Values::Float(v) => Some(Cow::Borrowed(v)),
        _ => (0..values.len())
            .map(|i| values.as_f64(i))
            .collect::<Option<Vec<f64>>>()
            .map(Cow::Owned),
    }
}

/// [`numeric`], or ones (what a count of strings adds up).
fn numeric_or_ones(values: &Values) -> Cow<'_, [f64]> {
    numeric(values).unwrap_or_else(|| Cow::Owned(vec![1.0; values.len()]))
}

impl Store {
    /// Opens (or creates) the store under `dir`: loads the manifest and its parts, the series
    /// log, and replays the WAL written since the last checkpoint.
    pub fn open(dir: &Path, config: StoreConfig) -> Result<Store> {
        Self::open_with_clock(dir, config, system_clock())
    }

    /// [`Store::open`] with another clock: retention and server-time stamps follow it.
    pub fn open_with_clock(dir: &Path, config: StoreConfig, clock: Clock) -> Result<Store> {
        let started = Instant::now();
        let parts_dir = dir.join("parts");
        let wal_dir = dir.join("wal");
        for d in [dir, &parts_dir, &wal_dir] {
            fs::create_dir_all(d).map_err(|e| Error::io(format!("creating {}", d.display()), e))?;
        }
        let manifest = Manifest::load(dir)?;
        if !dir.join(crate::manifest::FILE).exists() {
            // A new store: written now, so that a crash during the first checkpoint leaves parts
            // next to a manifest that does not name them (leftovers, removed at the next start)
            // rather than parts without a manifest, which refuse to start.
            manifest.save(dir)?;
        }
        let mut parts = Vec::new();
        let live: std::collections::HashSet<&str> = manifest.parts.iter().map(|p| p.file.as_str()).collect();
        for entry in fs::read_dir(&parts_dir)
            .map_err(|e| Error::io("listing parts", e))?
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !live.contains(name.as_str()) {
                // Left by a checkpoint or compaction that did not reach its manifest update.
                let _ = fs::remove_file(entry.path());
            }
        }
        for entry in &manifest.parts {
            let part = Part::open(&parts_dir.join(&entry.file))?;
            parts.push(Arc::new(LivePart {
                entry: entry.clone(),
                part,
            }));
        }

        let mut index = Index::default();
        let series_log = dir.join("series.log");
        let mut persisted = 0;
        if series_log.exists() {
            let contents = series_log::read(&series_log)?;
            for def in contents.defs {
                index.add_def(def)?;
            }
            persisted = index.len();
            if contents.rewrite {
                tracing::info!(
                    "series log rewritten (it ended in a torn record after a crash, or had the first format)"
                );
                series_log::rewrite(&series_log, &index)?;
            }
        }

        let mut head = Head::default();
        let mut replayed = 0u64;
        let segments = wal::segments(&wal_dir)?;
        let next_seq = segments.last().map_or(1, |s| s + 1).max(manifest.wal_checkpoint + 1);
        for &seq in segments.iter().filter(|&&s| s > manifest.wal_checkpoint) {
            let (records, clean) = wal::read_segment(&wal::segment_path(&wal_dir, seq))?;
            for rec in &records {
                replay_batch(rec, &mut index, |id, kind, ts, v| {
                    head.push(id, kind, ts, v);
                    replayed += 1;
                })?;
            }
            if !clean {
                tracing::warn!(
                    segment = seq,
                    "WAL segment ends in a torn record; replay stops there for it"
                );
            }
        }
        let wal = Wal::open(&wal_dir, next_seq, config.fsync, config.fsync_interval)?;
        let active = active_on_open(&config, &index, &head, &parts, clock());
        tracing::info!(
            points = replayed,
            series = index.len(),
            parts = parts.len(),
            ms = started.elapsed().as_millis() as u64,
            "store opened: WAL replayed"
        );
        // A configuration file written by an older `pulsewire default-config` spells out the
        // former default (`1h`): say which delay applies, and where it comes from.
        tracing::info!(
            delay = %humantime::format_duration(config.retention.rollup_delay()),
            from = if config.retention.rollup_after.is_some() {
                "tsdb.retention.rollup_after"
            } else {
                "the default: the shortest raw retention less an hour"
            },
            "a day's rollup tiers are built this long after it ends"
        );
        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            config,
            catalog: RwLock::new(Catalog {
                index,
                persisted,
                new_series: HashMap::new(),
                active: Mutex::new(active),
            }),
            head: Mutex::new(head),
            view: RwLock::new(Arc::new(View {
                parts,
                frozen: Vec::new(),
                unrolled: manifest.unrolled.clone(),
            })),
            raw_written: Mutex::new(HashMap::new()),
            wal,
            next_seq: AtomicU64::new(manifest.next_seq),
            manifest: Mutex::new(manifest),
            checkpointing: Mutex::new(()),
            maintenance: Mutex::new(()),
            counters: MaintenanceStats::default(),
            stop: AtomicBool::new(false),
            poisoned: Mutex::new(None),
            clock,
            checkpoint_done: (Mutex::new(()), parking_lot::Condvar::new()),
        });
        let mut background = Vec::new();
        for (name, job) in [
            ("tsdb-checkpoint", Shared::run_checkpoints as fn(Arc<Shared>)),
            ("tsdb-maintenance", Shared::run_maintenance),
        ] {
            let bg = shared.clone();
            let handle = std::thread::Builder::new()
                .name(name.into())
                .spawn(move || job(bg))
                .map_err(|e| Error::io("starting a background thread", e))?;
            background.push(handle);
        }
        Ok(Store {
            shared,
            background: Arc::new(Mutex::new(background)),
        })
    }

    pub fn config(&self) -> &StoreConfig {
        &self.shared.config
    }

    /// Why the store refuses writes, if it does.
    pub fn poisoned(&self) -> Option<String> {
        self.shared.poisoned()
    }

    /// Writes parsed lines (each with the caller's line number) to database `db` of `tenant`.
    /// Lines are refused one by one (type conflict, retention, limits); the rest are written.
    pub fn write(
        &self,
        tenant: &TenantId,
        db: &str,
        precision: Precision,
        lines: &[(usize, Line<'_>)],
    ) -> Result<WriteOutcome> {
        self.write_inner(tenant, db, precision, lines, false, false)
    }

    /// [`Store::write`], also returning the numeric samples written with their series ids.
    pub fn write_observed(
        &self,
        tenant: &TenantId,
        db: &str,
        precision: Precision,
        lines: &[(usize, Line<'_>)],
    ) -> Result<WriteOutcome> {
        self.write_inner(tenant, db, precision, lines, true, false)
    }

    /// [`Store::write`] for data the server derives from written data (anomaly scores): the
    /// series limits do not apply, since there is at most one derived series per series that
    /// passed them, and counting them would refuse a client's series for the server's.
    pub fn write_derived(
        &self,
        tenant: &TenantId,
        db: &str,
        precision: Precision,
        lines: &[(usize, Line<'_>)],
    ) -> Result<WriteOutcome> {
        self.write_inner(tenant, db, precision, lines, false, true)
    }

    /// What the store knows of one series.
    pub fn meta(&self, id: SeriesId) -> Option<SeriesMeta> {
        self.shared.catalog.read().index.meta(id).cloned()
    }

    /// Writes in three steps so that concurrent writers overlap: their lines' series are
    /// resolved under the catalog's read lock (its write lock only for lines that create
    /// series, whose definitions go to the WAL before the lock is released, so that they
    /// precede every sample that uses them); the WAL record is built without a lock; then the
    /// head lock covers only the head appends and queuing the record, which keeps the WAL in
    /// the head's order. One lock around all of it left part of the server's two cores idle, with
    /// writers parked on it (docs/benchmarks.md).
    fn write_inner(
        &self,
        tenant: &TenantId,
        db: &str,
        precision: Precision,
        lines: &[(usize, Line<'_>)],
        observe: bool,
        derived: bool,
    ) -> Result<WriteOutcome> {
        self.shared.wait_for_room();
        // After the wait: a checkpoint that failed meanwhile poisoned the store.
        if let Some(msg) = self.poisoned() {
            return Err(Error::Poisoned(msg));
        }
        let cfg = &self.shared.config;
        let now = (self.shared.clock)();
        // Sized from the first line's fields: writes are usually many lines of one shape.
        let expected = lines
            .len()
            .saturating_mul(lines.first().map_or(1, |(_, l)| l.fields.len()));
        // Refusals with the position of their line, to keep the lines' order.
        let mut refused: Vec<(usize, Refusal)> = Vec::new();
        let mut slots = Vec::with_capacity(lines.len());
        // Each resolved line's series, in field order: `Slot::Ready` holds its range.
        let mut ids: Vec<(SeriesId, Kind)> = Vec::with_capacity(expected);
        let mut lookup = String::new();
        let mut pending = false;
        {
            let catalog = self.shared.catalog.read();
            for (line_no, line) in lines {
                let ts = match line.timestamp {
                    None => now,
                    Some(t) => match to_ms(t, precision) {
                        Some(ms) => ms,
                        None => {
                            refused.push((
                                slots.len(),
                                Refusal::new(*line_no, RefusalKind::Invalid, format!("timestamp {t} is out of range")),
                            ));
                            slots.push(Slot::Refused);
                            continue;
                        }
                    },
                };
                let retention = cfg.raw_retention(db, &line.measurement);
                if ts < now - retention.as_millis() as i64 {
                    let message = format!(
                        "point is older than the retention of {} for measurement {}",
                        humantime::format_duration(retention),
                        line.measurement
                    );
                    refused.push((slots.len(), Refusal::new(*line_no, RefusalKind::Retention, message)));
                    slots.push(Slot::Refused);
                    continue;
                }
                if line.tags.len() > cfg.limits.max_tags_per_series {
                    let message = format!(
                        "{} tags exceed the limit of {} per series",
                        line.tags.len(),
                        cfg.limits.max_tags_per_series
                    );
                    refused.push((
                        slots.len(),
                        Refusal::limit(*line_no, StoreLimit::TagsPerSeries, RefusalKind::Limit, message),
                    ));
                    slots.push(Slot::Refused);
                    continue;
                }
                lookup_key(&mut lookup, tenant, db, line);
                let start = ids.len();
                match resolve_fields(&catalog.index, &lookup, tenant, db, line, &mut ids) {
                    Fields::Known => slots.push(Slot::Ready {
                        ts,
                        start,
                        end: ids.len(),
                    }),
                    Fields::New(_) => {
                        ids.truncate(start);
                        slots.push(Slot::Pending { ts });
                        pending = true;
                    }
                    // After a pending line, resolved again in order: that line may create
                    // the field this one conflicts with.
                    Fields::Conflict(_) if pending => {
                        ids.truncate(start);
                        slots.push(Slot::Pending { ts });
                    }
                    Fields::Conflict(p) => {
                        ids.truncate(start);
                        refused.push((slots.len(), Refusal::new(*line_no, RefusalKind::Conflict, p)));
                        slots.push(Slot::Refused);
                    }
                }
            }
        }
        if pending {
            self.create_series(tenant, db, now, lines, derived, &mut slots, &mut ids, &mut refused);
            // In the lines' order, as they were given.
            refused.sort_by_key(|&(pos, _)| pos);
        }
        let refused: Vec<Refusal> = refused.into_iter().map(|(_, r)| r).collect();

        // The WAL record and the scored samples, without a lock.
        let accepted: Vec<usize> = slots
            .iter()
            .enumerate()
            .filter_map(|(i, slot)| matches!(slot, Slot::Ready { .. }).then_some(i))
            .collect();
        let mut batch = BatchBuilder::with_capacity(expected);
        let mut observed = Vec::with_capacity(if observe { expected } else { 0 });
        each_ready_sample(&slots, lines, &ids, |id, _, ts, v| {
            batch.sample(id, ts, v);
            if observe {
                let x = match v {
                    ValueRef::Float(f) => Some(f),
                    ValueRef::Int(i) => Some(i as f64),
                    ValueRef::UInt(u) => Some(u as f64),
                    ValueRef::Bool(_) | ValueRef::Str(_) => None,
                };
                if let Some(x) = x {
                    observed.push((id, ts, x));
                }
            }
        });
        let samples = batch.samples();
        let ack = (samples > 0).then(|| {
            let record = batch.finish();
            let mut head = self.shared.head.lock();
            each_ready_sample(&slots, lines, &ids, |id, kind, ts, v| head.push(id, kind, ts, v));
            self.shared.wal.append(record)
        });
        Ok(WriteOutcome {
            accepted,
            samples,
            refused,
            ack,
            now_ms: now,
            observed,
        })
    }

    /// The write lock part of [`Store::write_inner`]: resolves the pending lines again (another
    /// writer may have created their series meanwhile), applies the series limits and creates
    /// what is missing, then queues the new definitions to the WAL before the lock is released.
    #[allow(clippy::too_many_arguments)]
    fn create_series(
        &self,
        tenant: &TenantId,
        db: &str,
        now: i64,
        lines: &[(usize, Line<'_>)],
        derived: bool,
        slots: &mut [Slot],
        ids: &mut Vec<(SeriesId, Kind)>,
        refused: &mut Vec<(usize, Refusal)>,
    ) {
        let limits = &self.shared.config.limits;
        let minute = now.div_euclid(60_000);
        let mut lookup = String::new();
        let mut defs = BatchBuilder::default();
        let mut guard = self.shared.catalog.write();
        let catalog = &mut *guard;
        for (pos, (slot, (line_no, line))) in slots.iter_mut().zip(lines).enumerate() {
            let Slot::Pending { ts } = *slot else { continue };
            *slot = Slot::Refused;
            lookup_key(&mut lookup, tenant, db, line);
            let start = ids.len();
            let new_fields = match resolve_fields(&catalog.index, &lookup, tenant, db, line, ids) {
                Fields::Known => {
                    *slot = Slot::Ready {
                        ts,
                        start,
                        end: ids.len(),
                    };
                    continue;
                }
                Fields::Conflict(p) => {
                    ids.truncate(start);
                    refused.push((pos, Refusal::new(*line_no, RefusalKind::Conflict, p)));
                    continue;
                }
                Fields::New(n) => n,
            };
            ids.truncate(start);
            if !derived {
                let active = catalog.active.get_mut();
                let in_db = active.count(tenant, db, minute);
                if in_db + new_fields > limits.max_series_per_database {
                    refused.push((pos, Refusal::limit(
                        *line_no,
                        StoreLimit::SeriesPerDatabase,
                        RefusalKind::Limit,
                        format!(
                            "max-series-per-database limit exceeded: database {db} has {in_db} active series (written within {}), the limit is {}",
                            humantime::format_duration(limits.active_series_window),
                            limits.max_series_per_database
                        ),
                    )));
                    continue;
                }
                if let Some(quota) = limits.tenant_quota(tenant.as_str()) {
                    let in_tenant = catalog.index.series_in_tenant(tenant);
                    if in_tenant + new_fields > quota {
                        refused.push((
                            pos,
                            Refusal::limit(
                                *line_no,
                                StoreLimit::SeriesPerTenant,
                                RefusalKind::Quota,
                                format!(
                                    "series quota exceeded: tenant {} holds {in_tenant} series, its quota is {quota}",
                                    tenant.as_str()
                                ),
                            ),
                        ));
                        continue;
                    }
                }
                let counter = catalog
                    .new_series
                    .entry((tenant.clone(), db.to_string()))
                    .or_insert((minute, 0));
                // Forward only: a writer that read the clock before another cannot reopen a
                // minute that has ended.
                if minute > counter.0 {
                    *counter = (minute, 0);
                }
                if counter.1 + new_fields > limits.max_new_series_per_minute {
                    refused.push((
                        pos,
                        Refusal::new(
                            *line_no,
                            RefusalKind::RateLimited,
                            format!(
                                "database {db} created {} new series this minute, the limit is {} per minute",
                                counter.1, limits.max_new_series_per_minute
                            ),
                        ),
                    ));
                    continue;
                }
                counter.1 += new_fields;
            }
            // Create the missing series (in field order, so ids are deterministic).
            for (field, value) in &line.fields {
                let kind = kind_of(value);
                let id = match catalog.index.line(&lookup).and_then(|l| l.field(field)) {
                    Some(id) => id,
                    None => {
                        let key = LineKey {
                            tenant: tenant.clone(),
                            db: db.to_string(),
                            measurement: line.measurement.to_string(),
                            tags: line.tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
                        };
                        let id = catalog.index.insert(&lookup, key, field, kind);
                        let active = catalog.active.get_mut();
                        active.register(id, tenant, db);
                        active.touch(id, minute);
                        if let Some(meta) = catalog.index.meta(id) {
                            defs.def(id, &meta.line, field, kind);
                        }
                        id
                    }
                };
                ids.push((id, kind));
            }
            *slot = Slot::Ready {
                ts,
                start,
                end: ids.len(),
            };
        }
        if defs.defs() > 0 {
            // Not waited for by itself: the write's samples are queued after it, and their
            // acknowledgement (or the poisoned log's refusal) covers it.
            drop(self.shared.wal.append(defs.finish()));
        }
    }

    /// Series of a tenant matching a selector.
    pub fn select(&self, tenant: &TenantId, db: Option<&str>, selector: &Selector) -> Vec<(SeriesId, SeriesMeta)> {
        let st = self.shared.catalog.read();
        st.index
            .select(tenant, db, selector)
            .into_iter()
            .filter_map(|id| st.index.meta(id).map(|m| (id, m.clone())))
            .collect()
    }

    /// Raw points of one series in `[from, to)` (ms), ascending; later writes win at equal
    /// timestamps. Points older than the series' retention are not returned.
    pub fn read_raw(&self, id: SeriesId, meta: &SeriesMeta, from: i64, to: i64) -> Result<(Vec<i64>, Values)> {
        self.raw_points(id, meta, from, to)?.ok_or_else(too_many_points)
    }

    /// [`Store::read_raw`], `None` where it would refuse: when the range holds more than
    /// [`MAX_RAW_POINTS`] points, counted from the part indexes (whole blocks) and the heads
    /// before anything is read.
    fn raw_points(&self, id: SeriesId, meta: &SeriesMeta, from: i64, to: i64) -> Result<Option<(Vec<i64>, Values)>> {
        let from = from.max(self.raw_since(meta));
        let (view, heads) = self.view_and_heads(id, meta, from, to);
        let sealed: usize = view
            .parts_in(Tier::Raw, from, to)
            .flat_map(|p| p.part.blocks(id, from, to))
            .map(|b| b.count as usize)
            .sum();
        if sealed + heads.iter().map(|(ts, _)| ts.len()).sum::<usize>() > MAX_RAW_POINTS {
            return Ok(None);
        }
        let mut runs = raw_runs(&view, id, meta.kind, from, to)?;
        runs.extend(heads);
        Ok(Some(merge_runs(runs, meta.kind)))
    }

    /// The oldest time whose raw points of the series its retention keeps (reads never return
    /// older ones, whatever is still on disk).
    fn raw_since(&self, meta: &SeriesMeta) -> i64 {
        let retention = self.shared.config.raw_retention(&meta.line.db, &meta.line.measurement);
        (self.shared.clock)().saturating_sub(i64::try_from(retention.as_millis()).unwrap_or(i64::MAX))
    }

    /// Aggregates one series into buckets of `step` ms aligned to the epoch, covering every
    /// bucket that overlaps `[from, to)`. Uses the coarsest rollup tier whose resolution divides
    /// the step, merged with summaries of the raw points of days without tiers; the raw points
    /// alone where that tier holds nothing of the series in the range (within the raw retention
    /// and the raw-read limit), where no tier divides the step, or with `force_raw`.
    pub fn aggregate(&self, id: SeriesId, meta: &SeriesMeta, q: &Aggregation) -> Result<(Tier, Vec<Bucket>)> {
        let Aggregation {
            from,
            to,
            step,
            agg,
            force_raw,
        } = *q;
        if step <= 0 {
            return Err(Error::Invalid("step must be positive".into()));
        }
        if matches!(meta.kind, Kind::Str) && !matches!(agg, Agg::Count) {
            return Err(Error::Invalid(format!(
                "field {} holds strings; only count can aggregate it",
                meta.field
            )));
        }
        // Far beyond any storable time, and clear of overflow in the bucket arithmetic.
        const LIMIT: i64 = 1 << 60;
        let (from, to) = (from.clamp(-LIMIT, LIMIT), to.clamp(-LIMIT, LIMIT));
        if from >= to {
            return Err(Error::Invalid("from must be before to".into()));
        }
        let lo = bucket_of(from, step);
        let hi = bucket_of(to.saturating_sub(1), step).saturating_add(step);
        // Rollup tiers summarise numbers only: a string field's count comes from raw points.
        let tier = if force_raw || matches!(meta.kind, Kind::Str) {
            Tier::Raw
        } else {
            self.tier_for(step)
        };
        if tier == Tier::Raw {
            let (ts, values) = self.read_raw(id, meta, lo, hi)?;
            let vals = numeric_or_ones(&values);
            return Ok((Tier::Raw, aggregate_raw(agg, &ts, &vals, step)));
        }
        // Where the tier holds nothing of the series in the range (today, and the days whose
        // tiers wait for `rollup_after`), the raw points answer directly: the buckets that
        // summarising them would give (quantiles exact), without a summary per bucket (one day
        // of 1 s data at 1m steps: p50 1.3 ms against 2.0; docs/benchmarks.md). More points than
        // a raw read may return are summarised an hour at a time instead.
        if self.tier_lacks(id, meta, tier, lo, hi)
            && let Some((ts, values)) = self.raw_points(id, meta, lo, hi)?
        {
            let vals = numeric_or_ones(&values);
            return Ok((Tier::Raw, aggregate_raw(agg, &ts, &vals, step)));
        }
        let sketches = if agg.quantile().is_some() {
            Sketches::Decode
        } else {
            Sketches::Skip
        };
        let summaries = self.summaries(id, meta, tier, lo, hi, sketches)?;
        let buckets = rebucket(summaries, step)
            .into_iter()
            .filter_map(|(start, s)| eval_summary(agg, &s, step).map(|value| Bucket { start, value }))
            .collect();
        Ok((tier, buckets))
    }

    /// One aggregate over the whole of `[from, to)`, exactly, from raw points.
    pub fn aggregate_range(
        &self,
        id: SeriesId,
        meta: &SeriesMeta,
        from: i64,
        to: i64,
        agg: Agg,
    ) -> Result<Option<f64>> {
        if matches!(meta.kind, Kind::Str) && !matches!(agg, Agg::Count) {
            return Err(Error::Invalid(format!(
                "field {} holds strings; only count can aggregate it",
                meta.field
            )));
        }
        let (_, values) = self.read_raw(id, meta, from, to)?;
        let vals = numeric_or_ones(&values);
        Ok(crate::query::eval_raw(
            agg,
            &vals,
            to.saturating_sub(from).max(1),
            &mut Vec::new(),
        ))
    }

    /// Series of a tenant carrying any of `keys` with value `value` (all measurements).
    pub fn series_with_tag(&self, tenant: &TenantId, keys: &[&str], value: &str) -> Vec<(SeriesId, SeriesMeta)> {
        let st = self.shared.catalog.read();
        st.index
            .tenant_series(tenant)
            .filter_map(|id| st.index.meta(id).map(|m| (id, m)))
            .filter(|(_, m)| {
                m.line
                    .tags
                    .iter()
                    .any(|(k, v)| v == value && keys.contains(&k.as_str()))
            })
            .map(|(id, m)| (id, m.clone()))
            .collect()
    }

    /// Every series of a tenant.
    pub fn all_series(&self, tenant: &TenantId) -> Vec<(SeriesId, SeriesMeta)> {
        let st = self.shared.catalog.read();
        st.index
            .tenant_series(tenant)
            .filter_map(|id| st.index.meta(id).map(|m| (id, m.clone())))
            .collect()
    }

    /// One summary of a series over `[from, to)` from raw points (for range overviews).
    pub fn summarize(&self, id: SeriesId, meta: &SeriesMeta, from: i64, to: i64) -> Result<Option<Summary>> {
        let (ts, values) = self.read_raw(id, meta, from, to)?;
        let Some(vals) = numeric(&values) else { return Ok(None) };
        let mut s = Summary::new();
        for (&t, &v) in ts.iter().zip(vals.iter()) {
            s.add(t, v);
        }
        Ok((s.count > 0).then_some(s))
    }

    /// Whether the raw points of `[lo, hi)` can answer an aggregation in place of `tier`: the
    /// tier holds nothing of the series there, and the range is within the series' raw
    /// retention.
    fn tier_lacks(&self, id: SeriesId, meta: &SeriesMeta, tier: Tier, lo: i64, hi: i64) -> bool {
        lo >= self.raw_since(meta)
            && !self
                .shared
                .view
                .read()
                .parts_in(tier, lo, hi)
                .any(|p| !p.part.blocks(id, lo, hi).is_empty())
    }

    /// The coarsest rollup tier whose bucket divides the step. Coarser tiers are kept longer,
    /// so no finer tier could answer more of an old range; a tier answers what its retention
    /// still holds.
    fn tier_for(&self, step: i64) -> Tier {
        [Tier::H1, Tier::M5, Tier::M1]
            .into_iter()
            .find(|t| step % t.resolution_ms() == 0)
            .unwrap_or(Tier::Raw)
    }

    /// The parts and frozen heads to read, and the live head's points of one series, as of one
    /// moment. A checkpoint moves the live head into the frozen heads under the head lock, so
    /// both are taken under it: a view taken before a checkpoint froze the head, with the live
    /// head read after, would hold the head's points in neither.
    /// The view, and the points of one series in `[from, to)` still in heads (frozen ones, then
    /// the live one), taken under the head lock so that a checkpoint freezing the head in
    /// between cannot hide them.
    fn view_and_heads(
        &self,
        id: SeriesId,
        meta: &SeriesMeta,
        from: i64,
        to: i64,
    ) -> (Arc<View>, Vec<(Vec<i64>, Values)>) {
        let (view, live) = {
            let head = self.shared.head.lock();
            let view = self.shared.view.read().clone();
            let live = head.has(id).then(|| head.read(id, meta.kind));
            (view, live)
        };
        let heads = view
            .frozen
            .iter()
            .filter(|h| h.has(id))
            .map(|h| h.read(id, meta.kind))
            .chain(live)
            .map(|(ts, values)| clip(ts, values, from, to))
            .collect();
        (view, heads)
    }

    /// Rollup summaries of one series from `tier` parts plus the unsealed heads, at the tier's
    /// resolution.
    fn summaries(
        &self,
        id: SeriesId,
        meta: &SeriesMeta,
        tier: Tier,
        lo: i64,
        hi: i64,
        sketches: Sketches,
    ) -> Result<Vec<(i64, Summary)>> {
        let (view, heads) = self.view_and_heads(id, meta, lo, hi);
        let resolution = tier.resolution_ms();
        let summarize = |ts: &[i64], values: &Values| {
            let vals = numeric_or_ones(values);
            summarize_raw(ts, &vals, resolution, sketches)
        };
        let mut out = Vec::new();
        for p in view.parts_in(tier, lo, hi) {
            p.part.read_summaries(id, lo, hi, sketches, &mut out)?;
        }
        // Days without tiers yet are summarised from their raw points, parts and heads merged so
        // that a rewritten point counts once, an hour at a time (memory and the raw-read limit
        // stay those of one hour, whatever the day holds); the heads' points of other days join
        // the tiers.
        let pending: Vec<i64> = view.unrolled.range(Tier::Raw.partition_of(lo)..hi).copied().collect();
        let mut pending_heads: Vec<(Vec<i64>, Values)> = Vec::new();
        for (ts, values) in heads {
            for (day, range) in day_runs(&ts) {
                let run = (
                    ts.get(range.clone()).unwrap_or_default().to_vec(),
                    slice_values(&values, range),
                );
                if pending.binary_search(&day).is_ok() {
                    pending_heads.push(run);
                } else {
                    out.extend(summarize(&run.0, &run.1));
                }
            }
        }
        for day in pending {
            let (from, to) = (lo.max(day), hi.min(day + Tier::Raw.partition_ms()));
            let mut chunk = bucket_of(from, PENDING_CHUNK_MS);
            while chunk < to {
                let (a, b) = (from.max(chunk), to.min(chunk + PENDING_CHUNK_MS));
                let mut runs = raw_runs(&view, id, meta.kind, a, b)?;
                // Only the chunk's own points of each head run are copied (runs are ascending).
                runs.extend(pending_heads.iter().map(|(ts, values)| {
                    let range = ts.partition_point(|&t| t < a)..ts.partition_point(|&t| t < b);
                    (
                        ts.get(range.clone()).unwrap_or_default().to_vec(),
                        slice_values(values, range),
                    )
                }));
                let (ts, values) = merge_runs(runs, meta.kind);
                out.extend(summarize(&ts, &values));
                chunk += PENDING_CHUNK_MS;
            }
        }
        Ok(out)
    }

    pub fn stats(&self) -> StoreStats {
        let series = self.shared.catalog.read().index.len();
        let (head_series, head_points, head_bytes) = {
            let head = self.shared.head.lock();
            (head.active_series(), head.points(), head.heap_bytes())
        };
        let view = self.shared.view.read().clone();
        let m = &self.shared.counters;
        StoreStats {
            series,
            head_series,
            head_points: head_points + view.frozen.iter().map(|h| h.points()).sum::<u64>(),
            head_bytes: head_bytes + view.frozen.iter().map(|h| h.heap_bytes()).sum::<usize>(),
            parts: view.parts.len(),
            part_bytes: view.parts.iter().map(|p| p.part.bytes).sum(),
            part_points: view
                .parts
                .iter()
                .filter(|p| p.entry.tier == Tier::Raw)
                .map(|p| p.part.points())
                .sum(),
            wal_bytes: self.shared.wal.segment_bytes(),
            checkpoints: m.checkpoints.load(Ordering::Relaxed),
            last_checkpoint_ms: m.last_checkpoint_ms.load(Ordering::Relaxed).checked_sub(1),
        }
    }

    /// Seals the head into parts now (also what a backup does first).
    pub fn checkpoint(&self) -> Result<()> {
        self.shared.checkpoint()
    }

    /// Runs rollups, retention and compaction now.
    pub fn maintain(&self) -> Result<()> {
        self.shared.maintain((self.shared.clock)())
    }

    /// Seals the head, then merges every partition's parts into one, as background compaction
    /// does once a partition has gone cold (before measuring disk use, or a backup to keep).
    pub fn compact(&self) -> Result<()> {
        self.shared.checkpoint()?;
        let _m = self.shared.maintenance.lock();
        let manifest = self.shared.manifest.lock().clone();
        let mut groups: BTreeMap<(Tier, i64), Vec<PartEntry>> = BTreeMap::new();
        for p in &manifest.parts {
            groups.entry((p.tier, p.partition)).or_default().push(p.clone());
        }
        for ((tier, partition), mut entries) in groups {
            if entries.len() > 1 {
                entries.sort_by_key(|e| e.seq);
                self.shared.compact(tier, partition, &entries, &[], Effort::Full)?;
            }
        }
        Ok(())
    }

    /// Builds the rollup tiers of every day that has none yet, without waiting for the day to
    /// end and go quiet (after a bulk import, before measuring). Points that arrive later for
    /// those days are summarised as they are sealed.
    pub fn roll_up(&self) -> Result<()> {
        let _m = self.shared.maintenance.lock();
        self.shared.roll_up((self.shared.clock)(), true)
    }

    /// A consistent copy of the store in `dest` (a new directory on the same file system):
    /// checkpoints, then hard-links the live parts and copies the manifest and series log, all
    /// while holding off other maintenance so the set cannot change underneath.
    pub fn snapshot(&self, dest: &Path) -> Result<Vec<PathBuf>> {
        self.shared.checkpoint()?;
        // Neither compaction nor a checkpoint may change the set while its files are linked.
        let _m = self.shared.maintenance.lock();
        let _c = self.shared.checkpointing.lock();
        let manifest = self.shared.manifest.lock().clone();
        fs::create_dir_all(dest.join("parts")).map_err(|e| Error::io("creating the snapshot directory", e))?;
        let mut files = Vec::new();
        for p in &manifest.parts {
            let rel = PathBuf::from("parts").join(&p.file);
            let src = self.shared.dir.join(&rel);
            if fs::hard_link(&src, dest.join(&rel)).is_err() {
                fs::copy(&src, dest.join(&rel)).map_err(|e| Error::io("copying a part", e))?;
            }
            files.push(rel);
        }
        let series = self.shared.dir.join("series.log");
        if series.exists() {
            fs::copy(&series, dest.join("series.log")).map_err(|e| Error::io("copying the series log", e))?;
            files.push(PathBuf::from("series.log"));
        }
        // The snapshot has no WAL: everything acknowledged before it is in its parts.
        let snap = Manifest {
            wal_checkpoint: 0,
            ..manifest
        };
        snap.save(dest)?;
        files.push(PathBuf::from(crate::manifest::FILE));
        Ok(files)
    }

    /// Checkpoints what is in memory and stops the background work and the WAL.
    pub fn close(&self) -> Result<()> {
        self.shared.stop.store(true, Ordering::Relaxed);
        for t in std::mem::take(&mut *self.background.lock()) {
            let _ = t.join();
        }
        let result = self.shared.checkpoint();
        self.shared.wal.close();
        result
    }
}

/// The points of one series in `[from, to)` in each raw part that has some, in the parts'
/// order of precedence (later writes last).
fn raw_runs(view: &View, id: SeriesId, kind: Kind, from: i64, to: i64) -> Result<Vec<(Vec<i64>, Values)>> {
    let mut parts: Vec<&Arc<LivePart>> = view.parts_in(Tier::Raw, from, to).collect();
    parts.sort_by_key(|p| p.entry.seq);
    let mut runs = Vec::new();
    let mut total = 0usize;
    for p in parts {
        if p.part.blocks(id, from, to).is_empty() {
            continue;
        }
        let mut ts = Vec::new();
        let mut values = Values::new(kind);
        p.part.read_raw(id, from, to, &mut ts, &mut values)?;
        total += ts.len();
        if total > MAX_RAW_POINTS {
            return Err(too_many_points());
        }
        runs.push((ts, values));
    }
    Ok(runs)
}

/// Every raw point of one series in `parts` (in their order of precedence), merged; `None` if
/// no part holds the series.
fn all_points(parts: &[&Arc<LivePart>], id: SeriesId) -> Result<Option<(Vec<i64>, Values)>> {
    let mut runs = Vec::new();
    let mut kind = None;
    for p in parts {
        let Some(k) = p.part.kind(id).transpose()? else {
            continue;
        };
        let mut ts = Vec::new();
        let mut values = Values::new(k);
        p.part.read_raw(id, i64::MIN, i64::MAX, &mut ts, &mut values)?;
        kind = Some(k);
        runs.push((ts, values));
    }
    Ok(kind.map(|kind| merge_runs(runs, kind)))
}

/// Runs of points merged into one ascending run; a later run wins at an equal timestamp.
fn merge_runs(mut runs: Vec<(Vec<i64>, Values)>, kind: Kind) -> (Vec<i64>, Values) {
    runs.retain(|(ts, _)| !ts.is_empty());
    match runs.len() {
        0 => (Vec::new(), Values::new(kind)),
        1 => runs.pop().unwrap_or_else(|| (Vec::new(), Values::new(kind))),
        _ => {
            let refs: Vec<(&[i64], &Values)> = runs.iter().map(|(t, v)| (t.as_slice(), v)).collect();
            merge(&refs, kind)
        }
    }
}

/// Ascending timestamps cut at raw day partitions: each day's start and its index range.
fn day_runs(ts: &[i64]) -> impl Iterator<Item = (i64, std::ops::Range<usize>)> + '_ {
    let mut start = 0;
    std::iter::from_fn(move || {
        let &t0 = ts.get(start)?;
        let day = Tier::Raw.partition_of(t0);
        let end = start
            + ts.get(start..)
                .map_or(0, |r| r.partition_point(|&t| t < day + Tier::Raw.partition_ms()));
        let end = end.max(start + 1);
        let range = start..end;
        start = end;
        Some((day, range))
    })
}

fn too_many_points() -> Error {
    Error::Invalid(format!(
        "the query selects more than {MAX_RAW_POINTS} raw points; narrow the range or give a step"
    ))
}

fn type_conflict(field: &str, existing: Kind, written: Kind) -> String {
    format!(
        "field type conflict: input field \"{field}\" is type {}, already exists as type {}",
        kind_name(written),
        kind_name(existing)
    )
}

fn clip(ts: Vec<i64>, values: Values, from: i64, to: i64) -> (Vec<i64>, Values) {
    let start = ts.partition_point(|&t| t < from);
    let end = ts.partition_point(|&t| t < to);
    if start == 0 && end == ts.len() {
        return (ts, values);
    }
    let mut out = Values::new(values.kind());
    let _ = crate::part::extend_values(&mut out, &values, start..end);
    (ts.get(start..end).map(<[i64]>::to_vec).unwrap_or_default(), out)
}

impl Shared {
    fn run_checkpoints(self: Arc<Self>) {
        let mut last_checkpoint = Instant::now();
        while !self.stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(100));
            let due = last_checkpoint.elapsed() >= self.config.checkpoint_interval
                || self.wal.segment_bytes() >= self.config.checkpoint_wal_bytes;
            // A poisoned store checkpoints no more (`checkpoint_inner`); saying so every 100 ms
            // would only bury the error it logged when it was poisoned.
            if due && self.poisoned().is_none() {
                last_checkpoint = Instant::now();
                if let Err(e) = self.checkpoint() {
                    tracing::error!(error = %e, "checkpoint failed");
                }
            }
        }
    }

    fn run_maintenance(self: Arc<Self>) {
        let mut last_maintenance = Instant::now();
        while !self.stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(200));
            if last_maintenance.elapsed() >= MAINTENANCE_EVERY {
                last_maintenance = Instant::now();
                if let Err(e) = self.maintain((self.clock)()) {
                    tracing::error!(error = %e, "retention or compaction failed");
                }
            }
        }
    }

    /// Why the store refuses writes (its own failure or its WAL's), if it does.
    fn poisoned(&self) -> Option<String> {
        self.poisoned.lock().clone().or_else(|| self.wal.poisoned())
    }

    fn poison(&self, e: &Error) {
        let msg = format!("the store could not write to disk ({e}); it refuses writes until restarted");
        tracing::error!("{msg}");
        self.poisoned.lock().get_or_insert(msg);
    }

    /// Back-pressure: while a checkpoint is sealing one head and the live head has already grown
    /// to the size that starts the next one, writers wait for the checkpoint to end. Memory
    /// then stays bounded by two heads, and ingest settles at the rate the node can also seal,
    /// instead of outrunning checkpoints until memory runs out.
    ///
    /// A failed checkpoint leaves its frozen head in place and poisons the store: waiting would
    /// then never end, so a poisoned store lets writers through to be refused.
    fn wait_for_room(&self) {
        let (lock, cond) = &self.checkpoint_done;
        let mut guard = lock.lock();
        // The poisoned check last: it is two more locks, needed only when a writer would wait.
        while !self.stop.load(Ordering::Relaxed)
            && !self.view.read().frozen.is_empty()
            && self.wal.segment_bytes() >= self.config.checkpoint_wal_bytes
            && self.poisoned().is_none()
        {
            // Timed, so a missed signal only delays a writer, never blocks it for good.
            cond.wait_for(&mut guard, Duration::from_millis(50));
        }
    }

    fn checkpoint(&self) -> Result<()> {
        let result = self.checkpoint_inner();
        let (lock, cond) = &self.checkpoint_done;
        let _g = lock.lock();
        cond.notify_all();
        result
    }

    fn checkpoint_inner(&self) -> Result<()> {
        let _c = self.checkpointing.lock();
        // After a failed checkpoint its frozen head may be in no part: a later checkpoint would
        // move the WAL checkpoint past the segments that still hold it (and its series'
        // definitions), so none runs until a restart has replayed them.
        if let Some(msg) = self.poisoned.lock().clone() {
            return Err(Error::Poisoned(msg));
        }
        let stats = &self.counters;
        let started = Instant::now();
        // Freeze: the live head becomes immutable and visible through the view, the WAL moves
        // to a new segment, all under the catalog and head locks so no write falls between
        // the two.
        let (frozen, rotated, defs, defined, metas) = {
            // The catalog first (the lock order): held, it keeps new series' definitions from
            // being queued to the WAL between the rotation and the list taken below.
            let st = self.catalog.read();
            let (frozen, rotated) = {
                let mut head = self.head.lock();
                if head.points() == 0 {
                    return Ok(());
                }
                let frozen = Arc::new(std::mem::take(&mut *head));
                let rotated = self.wal.rotate();
                let mut view = self.view.write();
                let mut next = (**view).clone();
                next.frozen.push(frozen.clone());
                *view = Arc::new(next);
                (frozen, rotated)
            };
            let mut defs = Vec::new();
            for id in st.persisted..st.index.len() {
                let id = id as SeriesId;
                if let Some(meta) = st.index.meta(id) {
                    let mut rec = Vec::new();
                    put_def(&mut rec, id, &meta.line, &meta.field, meta.kind);
                    wal::frame(&rec, &mut defs);
                }
            }
            let defined = st.index.len();
            let minute = (self.clock)().div_euclid(60_000);
            let mut active = st.active.lock();
            for id in frozen.ids() {
                active.touch(id, minute);
            }
            drop(active);
            let metas: Vec<(SeriesId, SeriesMeta)> = frozen
                .ids()
                .filter_map(|id| st.index.meta(id).map(|m| (id, m.clone())))
                .collect();
            (frozen, rotated, defs, defined, metas)
        };
        // Days whose tiers are built: the head's points of those days are summarised as they
        // are sealed. A rollup commits only between checkpoints (it takes `checkpointing`), so
        // this stays true until this checkpoint's own commit.
        let rolled: BTreeSet<i64> = {
            let m = self.manifest.lock();
            m.parts
                .iter()
                .filter(|p| p.tier == Tier::Raw && !m.unrolled.contains(&p.partition))
                .map(|p| p.partition)
                .collect()
        };
        let result = (|| {
            let closed = rotated.blocking_recv().map_err(|_| Error::Closed)??;
            series_log::append(&self.dir.join("series.log"), &defs)?;
            // Only once they are in the log: a failed append leaves them to the next attempt.
            self.catalog.write().persisted = defined;
            let parts_dir = self.dir.join("parts");
            let added = seal(&frozen, &metas, &parts_dir, &self.next_seq, &rolled)?;
            let new_days: BTreeSet<i64> = added
                .iter()
                .filter(|e| e.tier == Tier::Raw && !rolled.contains(&e.partition))
                .map(|e| e.partition)
                .collect();
            {
                let now = (self.clock)();
                let mut written = self.raw_written.lock();
                for e in added.iter().filter(|e| e.tier == Tier::Raw) {
                    written.insert(e.partition, now);
                }
            }
            wal::sync_dir(&parts_dir)?;
            let opened: Vec<Arc<LivePart>> = added
                .iter()
                .map(|entry| {
                    Part::open(&parts_dir.join(&entry.file)).map(|part| {
                        Arc::new(LivePart {
                            entry: entry.clone(),
                            part,
                        })
                    })
                })
                .collect::<Result<_>>()?;
            {
                let mut current = self.manifest.lock();
                let mut manifest = current.clone();
                manifest.parts.extend(added);
                manifest.unrolled.extend(new_days.iter().copied());
                manifest.wal_checkpoint = closed;
                manifest.next_seq = manifest.next_seq.max(self.next_seq.load(Ordering::Relaxed));
                manifest.save(&self.dir)?;
                let mut view = self.view.write();
                let mut next = (**view).clone();
                next.frozen.retain(|h| !Arc::ptr_eq(h, &frozen));
                next.parts.extend(opened);
                next.unrolled.extend(new_days);
                *view = Arc::new(next);
                *current = manifest;
            }
            self.wal.remove_through(closed)?;
            Ok(())
        })();
        match &result {
            Ok(()) => {
                stats.checkpoints.fetch_add(1, Ordering::Relaxed);
                stats
                    .last_checkpoint_ms
                    .store(started.elapsed().as_millis() as u64 + 1, Ordering::Relaxed);
                tracing::info!(
                    points = frozen.points(),
                    series = metas.len(),
                    ms = started.elapsed().as_millis() as u64,
                    "checkpoint written"
                );
            }
            Err(e) => self.poison(e),
        }
        result
    }

    /// Whether no checkpoint has added raw points to the days in `[start, end)` for
    /// [`QUIET_MS`]. Rollup partitions span several days and get points when their raw days do.
    fn quiet(&self, written: &HashMap<i64, i64>, start: i64, end: i64, now: i64) -> bool {
        !written
            .iter()
            .any(|(&day, &t)| day >= start && day < end && t > now.saturating_sub(QUIET_MS))
    }

    /// Retention (drop whole partitions past their tier's retention; rewrite raw partitions
    /// where only some measurements expired) and compaction (merge a partition's parts once
    /// there are several).
    fn maintain(&self, now: i64) -> Result<()> {
        let _m = self.maintenance.lock();
        self.roll_up(now, false)?;
        let r = &self.config.retention;
        let manifest = self.manifest.lock().clone();
        let mut groups: BTreeMap<(Tier, i64), Vec<PartEntry>> = BTreeMap::new();
        for p in &manifest.parts {
            groups.entry((p.tier, p.partition)).or_default().push(p.clone());
        }
        let written = self.raw_written.lock().clone();
        let (longest_raw, shortest_raw) = (r.longest_raw(), r.shortest_raw());
        for ((tier, partition), entries) in groups {
            let end = partition + tier.partition_ms();
            let keep = match tier {
                Tier::Raw => longest_raw,
                Tier::M1 => r.rollup_1m,
                Tier::M5 => r.rollup_5m,
                Tier::H1 => r.rollup_1h,
            };
            let expired = |d: Duration| end <= now - d.as_millis() as i64;
            if tier == Tier::Raw && manifest.unrolled.contains(&partition) && expired(shortest_raw) {
                // Its tiers are not built yet (the build failed or gave up): the raw points stay
                // past their retention until they are, rather than be lost to the tiers.
                tracing::warn!(
                    partition,
                    "raw partition kept past its retention until its rollups are built"
                );
            } else if expired(keep) {
                self.replace(&entries, None)?;
                tracing::info!(tier = tier.name(), partition, "retention dropped a partition");
            } else if tier == Tier::Raw && expired(shortest_raw) {
                // Some measurements' retention has passed: rewrite without their series.
                let view = self.view.read().clone();
                let st = self.catalog.read();
                let expired_ids: Vec<SeriesId> = entries
                    .iter()
                    .filter_map(|e| view.parts.iter().find(|p| p.entry == *e))
                    .flat_map(|p| p.part.series_ids().collect::<Vec<_>>())
                    .filter(|&id| {
                        st.index
                            .meta(id)
                            .is_some_and(|m| expired(self.config.raw_retention(&m.line.db, &m.line.measurement)))
                    })
                    .collect();
                std::mem::drop(st);
                if !expired_ids.is_empty() {
                    self.compact(tier, partition, &entries, &expired_ids, Effort::Full)?;
                }
            } else {
                // The view guard must be gone before compacting, which swaps the view.
                let view = self.view.read().clone();
                let cold = end < now - COLD_AFTER_MS && self.quiet(&written, partition, end, now);
                if let Some(merge) = compaction_pick(&view, &entries, cold) {
                    // A hot partition's merges are merged again as it grows and once more when
                    // it goes cold: only that last merge pays for the full codec effort.
                    let effort = if cold { Effort::Full } else { Effort::Fast };
                    self.compact(tier, partition, &merge, &[], effort)?;
                }
            }
        }
        Ok(())
    }

    /// Builds the tiers of the raw day partitions that have none yet and are due: ended at least
    /// [`crate::config::RetentionConfig::rollup_delay`] ago with no checkpoint into them for
    /// [`QUIET_MS`], or about to lose raw points to retention; every one with `force`. Caller
    /// holds `maintenance`.
    fn roll_up(&self, now: i64, force: bool) -> Result<()> {
        let r = &self.config.retention;
        let shortest_raw = r.shortest_raw().as_millis() as i64;
        let after = i64::try_from(r.rollup_delay().as_millis()).unwrap_or(i64::MAX);
        let unrolled = self.manifest.lock().unrolled.clone();
        let written = self.raw_written.lock().clone();
        let mut failure = None;
        for day in unrolled {
            let end = day + Tier::Raw.partition_ms();
            let quiet = self.quiet(&written, day, end, now);
            // Retention is about to take raw points: build the tiers now, with checkpoints held
            // off so a back-fill into the day cannot make the build give up.
            let pressed = end <= now - shortest_raw;
            if force || pressed || (end <= now.saturating_sub(after) && quiet) {
                let started = Instant::now();
                match self.roll_up_day(day, pressed) {
                    Ok(true) => {
                        tracing::info!(
                            partition = day,
                            ms = started.elapsed().as_millis() as u64,
                            "rollups built"
                        )
                    }
                    Ok(false) => tracing::debug!(partition = day, "rollup deferred: the day got new points"),
                    // One day's failure (a damaged part, say) must not hold up the others.
                    Err(e) => {
                        tracing::error!(partition = day, error = %e, "building a day's rollups failed");
                        failure = Some(e);
                    }
                }
            }
        }
        match failure {
            Some(e) if force => Err(e),
            _ => Ok(()),
        }
    }

    /// Builds the 1m, 5m and 1h tiers of one raw day partition from its parts. Returns false,
    /// leaving the day for later, if a checkpoint added points to the day meanwhile; with
    /// `exclusive`, checkpoints wait for the whole build instead, so it cannot give up.
    fn roll_up_day(&self, day: i64, exclusive: bool) -> Result<bool> {
        let held = exclusive.then(|| self.checkpointing.lock());
        let view = self.view.read().clone();
        let mut parts: Vec<&Arc<LivePart>> = view
            .parts
            .iter()
            .filter(|p| p.entry.tier == Tier::Raw && p.entry.partition == day)
            .collect();
        parts.sort_by_key(|p| p.entry.seq);
        let inputs: BTreeSet<u64> = parts.iter().map(|p| p.entry.seq).collect();
        let mut ids: Vec<SeriesId> = parts
            .iter()
            .flat_map(|p| p.part.series_ids().collect::<Vec<_>>())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        let parts_dir = self.dir.join("parts");
        let mut writers = Writers {
            dir: &parts_dir,
            next_seq: &self.next_seq,
            open: BTreeMap::new(),
            fast: false,
        };
        let result = (|| {
            for id in ids {
                let Some((ts, values)) = all_points(&parts, id)? else {
                    continue;
                };
                if let Some(vals) = numeric(&values) {
                    writers.add_tiers(id, &ts, &vals)?;
                }
            }
            Ok(())
        })();
        let added = writers.finish(result)?;
        let discard = |added: &[PartEntry]| {
            for e in added {
                let _ = fs::remove_file(parts_dir.join(&e.file));
            }
        };
        let opened = (|| {
            wal::sync_dir(&parts_dir)?;
            added
                .iter()
                .map(|entry| {
                    Part::open(&parts_dir.join(&entry.file)).map(|part| {
                        Arc::new(LivePart {
                            entry: entry.clone(),
                            part,
                        })
                    })
                })
                .collect::<Result<Vec<_>>>()
        })();
        let opened = match opened {
            Ok(o) => o,
            Err(e) => {
                discard(&added);
                return Err(e);
            }
        };
        // No checkpoint between the check and the commit: the checkpoint decides per day
        // whether to summarise its points from this same manifest.
        let _c = match held {
            Some(guard) => guard,
            None => self.checkpointing.lock(),
        };
        let mut current = self.manifest.lock();
        let now_inputs: BTreeSet<u64> = current
            .parts
            .iter()
            .filter(|p| p.tier == Tier::Raw && p.partition == day)
            .map(|p| p.seq)
            .collect();
        if now_inputs != inputs || !current.unrolled.contains(&day) {
            std::mem::drop(current);
            discard(&added);
            return Ok(false);
        }
        let mut manifest = current.clone();
        manifest.parts.extend(added.iter().cloned());
        manifest.unrolled.remove(&day);
        manifest.next_seq = manifest.next_seq.max(self.next_seq.load(Ordering::Relaxed));
        // Not discarded on failure: the save may have failed after its rename, with the new
        // manifest naming these parts; if it failed before, they are unnamed leftovers that the
        // next start deletes.
        manifest.save(&self.dir)?;
        let mut view = self.view.write();
        let mut next = (**view).clone();
        next.parts.extend(opened);
        next.unrolled.remove(&day);
        *view = Arc::new(next);
        *current = manifest;
        Ok(true)
    }

    /// Merges the parts of one partition into one, leaving out the series in `drop`.
    fn compact(
        &self,
        tier: Tier,
        partition: i64,
        entries: &[PartEntry],
        drop: &[SeriesId],
        effort: Effort,
    ) -> Result<()> {
        let view = self.view.read().clone();
        let mut parts: Vec<&Arc<LivePart>> = view.parts.iter().filter(|p| entries.contains(&p.entry)).collect();
        parts.sort_by_key(|p| p.entry.seq);
        let mut ids: Vec<SeriesId> = parts
            .iter()
            .flat_map(|p| p.part.series_ids().collect::<Vec<_>>())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        let mut entry = new_entry(&self.next_seq, tier, partition);
        // The merged part stands where its newest input stood in the order of precedence.
        entry.seq = entries.iter().map(|e| e.seq).max().unwrap_or(entry.seq);
        let path = self.dir.join("parts").join(&entry.file);
        let mut w = PartWriter::create(&path)?;
        if effort == Effort::Fast {
            w = w.fast();
        }
        let result = (|| {
            for id in ids.into_iter().filter(|id| !drop.contains(id)) {
                if tier == Tier::Raw {
                    let Some((ts, values)) = all_points(&parts, id)? else {
                        continue;
                    };
                    w.add_raw(id, &ts, &values)?;
                } else {
                    let mut all = Vec::new();
                    for p in &parts {
                        p.part
                            .read_summaries(id, i64::MIN, i64::MAX, Sketches::Decode, &mut all)?;
                    }
                    w.add_summaries(id, &rebucket(all, tier.resolution_ms()))?;
                }
            }
            Ok::<_, Error>(())
        })();
        if let Err(e) = result {
            w.abandon();
            return Err(e);
        }
        let new = if w.is_empty() {
            w.abandon();
            None
        } else {
            w.finish()?;
            Some(entry)
        };
        self.replace(entries, new)
    }

    /// Swaps `old` parts for `new` in the manifest and the view, then deletes the old files.
    fn replace(&self, old: &[PartEntry], new: Option<PartEntry>) -> Result<()> {
        let parts_dir = self.dir.join("parts");
        let opened = match &new {
            Some(entry) => {
                wal::sync_dir(&parts_dir)?;
                Some(Arc::new(LivePart {
                    part: Part::open(&parts_dir.join(&entry.file))?,
                    entry: entry.clone(),
                }))
            }
            None => None,
        };
        {
            let mut current = self.manifest.lock();
            let mut manifest = current.clone();
            manifest.parts.retain(|p| !old.contains(p));
            manifest.parts.extend(new);
            manifest.next_seq = manifest.next_seq.max(self.next_seq.load(Ordering::Relaxed));
            manifest.save(&self.dir)?;
            let mut view = self.view.write();
            let mut next = (**view).clone();
            next.parts.retain(|p| !old.contains(&p.entry));
            next.parts.extend(opened);
            *view = Arc::new(next);
            *current = manifest;
        }
        for e in old {
            let _ = fs::remove_file(parts_dir.join(&e.file));
        }
        Ok(())
    }
}

/// How hard a merge encodes its raw blocks (see [`PartWriter::fast`]).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Effort {
    /// Checkpoints and merges of a partition still being written: their points are normally
    /// encoded again by a later merge (a partition that is a single part once it goes cold
    /// keeps these blocks).
    Fast,
    /// The merge that leaves a partition as it will stay.
    Full,
}

/// Which parts of one partition to merge now, if any: all of them once the partition is cold,
/// else a run of four or more parts of the same size class that are consecutive in sequence
/// (so the merged part can take the run's newest sequence without changing which write wins
/// at an equal timestamp against the parts outside the run).
fn compaction_pick(view: &View, entries: &[PartEntry], cold: bool) -> Option<Vec<PartEntry>> {
    if entries.len() < 2 {
        return None;
    }
    let mut sorted = entries.to_vec();
    sorted.sort_by_key(|e| e.seq);
    if cold {
        return Some(sorted);
    }
    let level = |e: &PartEntry| {
        view.parts
            .iter()
            .find(|p| p.entry == *e)
            .map_or(1, |p| p.part.points().max(1))
            .ilog(4)
    };
    let levels: Vec<u32> = sorted.iter().map(level).collect();
    let mut start = 0;
    for i in 1..=sorted.len() {
        if i == sorted.len() || levels.get(i) != levels.get(start) {
            if i - start >= COMPACT_AT {
                return sorted.get(start..i).map(<[PartEntry]>::to_vec);
            }
            start = i;
        }
    }
    None
}

fn new_entry(next_seq: &AtomicU64, tier: Tier, partition: i64) -> PartEntry {
    let seq = next_seq.fetch_add(1, Ordering::Relaxed);
    PartEntry {
        file: PartEntry::file_name(tier, partition, seq),
        tier,
        partition,
        seq,
    }
}

/// The part writers of one checkpoint, opened as the series reach a tier and partition.
struct Writers<'a> {
    dir: &'a Path,
    /// Part sequence numbers, shared by the threads sealing one head.
    next_seq: &'a AtomicU64,
    open: BTreeMap<(Tier, i64), (PartEntry, PartWriter)>,
    /// Raw blocks encoded with less effort (checkpoints; compaction rewrites them).
    fast: bool,
}

impl Writers<'_> {
    /// Adds the 1m, 5m and 1h summaries of one series' points (ascending) to the tier parts.
    fn add_tiers(&mut self, id: SeriesId, ts: &[i64], vals: &[f64]) -> Result<()> {
        let m1 = summarize_raw(ts, vals, Tier::M1.resolution_ms(), Sketches::Decode);
        let m5 = rebucket(m1.clone(), Tier::M5.resolution_ms());
        let h1 = rebucket(m5.clone(), Tier::H1.resolution_ms());
        for (tier, buckets) in [(Tier::M1, m1), (Tier::M5, m5), (Tier::H1, h1)] {
            let mut start = 0;
            while let Some(&(b0, _)) = buckets.get(start) {
                let p = tier.partition_of(b0);
                let end = start
                    + buckets
                        .get(start..)
                        .map_or(0, |r| r.partition_point(|(b, _)| *b < p + tier.partition_ms()));
                self.get(tier, p)?
                    .add_summaries(id, buckets.get(start..end).unwrap_or_default())?;
                start = end.max(start + 1);
            }
        }
        Ok(())
    }

    /// Finishes every part (synced and renamed) and returns their entries; on an error
    /// abandons them all.
    fn finish(mut self, result: Result<()>) -> Result<Vec<PartEntry>> {
        let open = std::mem::take(&mut self.open);
        if let Err(e) = result {
            for (_, w) in open.into_values() {
                w.abandon();
            }
            return Err(e);
        }
        let mut added = Vec::new();
        for (entry, w) in open.into_values() {
            w.finish()?;
            added.push(entry);
        }
        Ok(added)
    }

    fn get(&mut self, tier: Tier, partition: i64) -> Result<&mut PartWriter> {
        use std::collections::btree_map::Entry;
        match self.open.entry((tier, partition)) {
            Entry::Occupied(e) => Ok(&mut e.into_mut().1),
            Entry::Vacant(v) => {
                let entry = new_entry(self.next_seq, tier, partition);
                let w = PartWriter::create(&self.dir.join(&entry.file))?;
                let w = if self.fast { w.fast() } else { w };
                Ok(&mut v.insert((entry, w)).1)
            }
        }
    }
}

/// Writes a frozen head into raw parts per day partition, and its points of the days in `rolled`
/// (whose tiers are built already) into 1m/5m/1h rollup parts, one series at a time (ascending
/// ids, as parts require), so memory stays that of one series; returns the entries of the parts
/// written (synced and renamed, not yet in the manifest).
fn seal(
    head: &Head,
    metas: &[(SeriesId, SeriesMeta)],
    dir: &Path,
    next_seq: &AtomicU64,
    rolled: &BTreeSet<i64>,
) -> Result<Vec<PartEntry>> {
    // Sealing (block and rollup encoding) is CPU work that writers may be waiting on: split the
    // series over one thread per core. Each thread writes its own parts; parts of one
    // checkpoint hold disjoint series, so their order of precedence does not matter.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 4);
    let chunk = metas.len().div_ceil(threads).max(1);
    let results: Vec<Result<Vec<PartEntry>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = metas
            .chunks(chunk)
            .map(|part| scope.spawn(move || seal_series(head, part, dir, next_seq, rolled)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(Error::Invalid("a sealing thread panicked".into())))
            })
            .collect()
    });
    let mut added = Vec::new();
    let mut failure = None;
    for r in results {
        match r {
            Ok(entries) => added.extend(entries),
            Err(e) => failure = Some(e),
        }
    }
    if let Some(e) = failure {
        // The manifest will not name them: remove what the other threads finished.
        for entry in &added {
            let _ = fs::remove_file(dir.join(&entry.file));
        }
        return Err(e);
    }
    Ok(added)
}

fn seal_series(
    head: &Head,
    metas: &[(SeriesId, SeriesMeta)],
    dir: &Path,
    next_seq: &AtomicU64,
    rolled: &BTreeSet<i64>,
) -> Result<Vec<PartEntry>> {
    let mut writers = Writers {
        dir,
        next_seq,
        open: BTreeMap::new(),
        fast: true,
    };
    let result = (|| {
        for (id, meta) in metas {
            let (ts, values) = head.read(*id, meta.kind);
            let vals = numeric(&values);
            // Points of days whose tiers exist already are summarised into them now.
            let (mut late_ts, mut late_vals) = (Vec::new(), Vec::new());
            for (day, range) in day_runs(&ts) {
                let run = ts.get(range.clone()).unwrap_or_default();
                writers
                    .get(Tier::Raw, day)?
                    .add_raw(*id, run, &slice_values(&values, range.clone()))?;
                if let Some(vals) = &vals
                    && rolled.contains(&day)
                {
                    late_ts.extend_from_slice(run);
                    late_vals.extend_from_slice(vals.get(range).unwrap_or_default());
                }
            }
            if !late_ts.is_empty() {
                writers.add_tiers(*id, &late_ts, &late_vals)?;
            }
        }
        Ok::<_, Error>(())
    })();
    writers.finish(result)
}
