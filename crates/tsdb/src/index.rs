//! The series index: every series the store knows (tenant, database, measurement, sorted tags,
//! field, value kind), with the ids the rest of the store uses, a lookup from a written line to
//! its series, the type registry that refuses a field's type changing, and the inverted index
//! (tag key and value to series) that answers selectors.

use std::collections::HashMap;
use std::sync::Arc;

use pulsewire_codec::Kind;
use pulsewire_model::TenantId;
use pulsewire_proto::{MatchOp, Selector};

pub type SeriesId = u32;

/// What a series' line shares with its sibling fields: everything but the field.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct LineKey {
    pub tenant: TenantId,
    pub db: String,
    pub measurement: String,
    /// Sorted by key, keys unique.
    pub tags: Vec<(String, String)>,
}

impl LineKey {
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone)]
pub struct SeriesMeta {
    pub line: Arc<LineKey>,
    pub field: Arc<str>,
    pub kind: Kind,
}

/// Builds the lookup key of a line into `buf` (reused between lines so the hot path does not
/// allocate): tenant, db, measurement and tags joined by NUL, which names cannot contain.
pub fn line_lookup_key<'a>(
    buf: &mut String,
    tenant: &str,
    db: &str,
    measurement: &str,
    tags: impl Iterator<Item = (&'a str, &'a str)>,
) {
    buf.clear();
    for part in [tenant, db, measurement] {
        buf.push_str(part);
        buf.push('\0');
    }
    for (k, v) in tags {
        buf.push_str(k);
        buf.push('\0');
        buf.push_str(v);
        buf.push('\0');
    }
}

struct LineEntry {
    key: Arc<LineKey>,
    fields: Vec<(Arc<str>, SeriesId)>,
}

#[derive(Default)]
struct MeasurementIndex {
    /// Field name to its kind, for the whole measurement of one database (InfluxDB's scope).
    kinds: HashMap<(String, Arc<str>), Kind>,
    series: Vec<SeriesId>,
    /// Tag key, then tag value, to the series carrying it (ascending ids).
    postings: HashMap<String, HashMap<String, Vec<SeriesId>>>,
}

#[derive(Default)]
pub struct Index {
    series: Vec<SeriesMeta>,
    /// Looked up once per written line (under the store's catalog lock): hashed with foldhash
    /// (randomly seeded per process) rather than SipHash, which was ~1 % of the server's CPU at
    /// full ingest (`perf`); with the write's buffers sized up front, +6-7 % ingest rate
    /// (docs/benchmarks.md).
    lines: HashMap<Box<str>, LineEntry, foldhash::fast::RandomState>,
    measurements: HashMap<(TenantId, String), MeasurementIndex>,
    per_tenant: HashMap<TenantId, usize>,
}

impl Index {
    pub fn len(&self) -> usize {
        self.series.len()
    }

    pub fn meta(&self, id: SeriesId) -> Option<&SeriesMeta> {
        self.series.get(id as usize)
    }

    /// Series of every database of a tenant.
    pub fn series_in_tenant(&self, tenant: &TenantId) -> usize {
        self.per_tenant.get(tenant).copied().unwrap_or(0)
    }

    /// The line entry for a lookup key, if known.
    pub fn line(&self, lookup: &str) -> Option<LineRef<'_>> {
        self.lines.get(lookup).map(|e| LineRef { entry: e })
    }

    /// Kind already registered for a field of a measurement.
    pub fn field_kind(&self, tenant: &TenantId, db: &str, measurement: &str, field: &str) -> Option<Kind> {
        let m = self.measurements.get(&(tenant.clone(), measurement.to_string()))?;
        m.kinds.get(&(db.to_string(), Arc::from(field))).copied()
    }

    /// Adds a series (new line key or new field of a known line). The caller has checked limits
    /// and the field's kind. Ids are dense and assigned in order, which the WAL and the series
    /// log rely on: a replayed definition must get the id it was written with.
    pub fn insert(&mut self, lookup: &str, line: LineKey, field: &str, kind: Kind) -> SeriesId {
        let id = self.series.len() as SeriesId;
        let entry = self.lines.entry(lookup.into()).or_insert_with(|| LineEntry {
            key: Arc::new(line),
            fields: Vec::new(),
        });
        let key = entry.key.clone();
        let field: Arc<str> = Arc::from(field);
        entry.fields.push((field.clone(), id));
        let m = self
            .measurements
            .entry((key.tenant.clone(), key.measurement.clone()))
            .or_default();
        m.kinds.entry((key.db.clone(), field.clone())).or_insert(kind);
        m.series.push(id);
        for (k, v) in &key.tags {
            m.postings
                .entry(k.clone())
                .or_default()
                .entry(v.clone())
                .or_default()
                .push(id);
        }
        *self.per_tenant.entry(key.tenant.clone()).or_default() += 1;
        self.series.push(SeriesMeta { line: key, field, kind });
        id
    }

    /// Series of a tenant matching a selector (and database, if given), ascending.
    pub fn select(&self, tenant: &TenantId, db: Option<&str>, selector: &Selector) -> Vec<SeriesId> {
        let Some(m) = self.measurements.get(&(tenant.clone(), selector.measurement.clone())) else {
            return Vec::new();
        };
        // Start from the smallest posting list of an equality matcher with a non-empty value
        // (a missing tag counts as "", so `tag=""` cannot use postings).
        let mut candidates: Option<&[SeriesId]> = None;
        for matcher in &selector.matchers {
            if matches!(matcher.op, MatchOp::Eq) && !matcher.value.is_empty() {
                let list = m
                    .postings
                    .get(&matcher.tag)
                    .and_then(|vals| vals.get(&matcher.value))
                    .map_or(&[][..], |v| v.as_slice());
                if candidates.is_none_or(|c| list.len() < c.len()) {
                    candidates = Some(list);
                }
            }
        }
        let candidates = candidates.unwrap_or(&m.series);
        candidates
            .iter()
            .copied()
            .filter(|&id| {
                let Some(meta) = self.series.get(id as usize) else {
                    return false;
                };
                db.is_none_or(|d| meta.line.db == d)
                    && selector.field.as_deref().is_none_or(|f| &*meta.field == f)
                    && selector.matchers.iter().all(|mt| mt.matches(meta.line.tag(&mt.tag)))
            })
            .collect()
    }

    /// Adds a replayed definition; ids must continue the index (a definition seen before, from
    /// the series log, is skipped).
    pub fn add_def(&mut self, def: crate::record::Def) -> crate::Result<()> {
        let next = self.len() as SeriesId;
        if def.id < next {
            return Ok(());
        }
        if def.id > next {
            return Err(crate::Error::Corrupt(format!(
                "series {} defined before series {next}",
                def.id
            )));
        }
        let mut lookup = String::new();
        line_lookup_key(
            &mut lookup,
            def.line.tenant.as_str(),
            &def.line.db,
            &def.line.measurement,
            def.line.tags.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        );
        self.insert(&lookup, def.line, &def.field, def.kind);
        Ok(())
    }

    /// Ids of one tenant's series, measurement by measurement.
    pub fn tenant_series<'a>(&'a self, tenant: &'a TenantId) -> impl Iterator<Item = SeriesId> + 'a {
        self.measurements
            .iter()
            .filter(move |((t, _), _)| t == tenant)
            .flat_map(|(_, m)| m.series.iter().copied())
    }

    /// Every series id, for iteration over the whole store.
    pub fn ids(&self) -> impl Iterator<Item = SeriesId> + '_ {
        (0..self.series.len()).map(|i| i as SeriesId)
    }
}

/// A known line: its key and the series of the fields seen so far.
pub struct LineRef<'a> {
    entry: &'a LineEntry,
}

impl<'a> LineRef<'a> {
    pub fn field(&self, name: &str) -> Option<SeriesId> {
        self.entry.fields.iter().find(|(f, _)| &**f == name).map(|(_, id)| *id)
    }

    /// [`LineRef::field`], trying position `pos` first: a line's fields usually come in the
    /// same order write after write, and the scan's string comparisons were ~2.5 % of the
    /// server's CPU at full ingest.
    pub fn field_at(&self, pos: usize, name: &str) -> Option<SeriesId> {
        match self.entry.fields.get(pos) {
            Some((f, id)) if &**f == name => Some(*id),
            _ => self.field(name),
        }
    }
}
