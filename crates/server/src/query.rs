//! The query API over the store: `GET /api/v1/query` (raw points, or aggregated per step),
//! `GET /api/v1/series` (what a selector matches), and the overview endpoints for agents'
//! dashboards (`/api/v1/metrics/realtime/{source}`, `/api/v1/metrics/dashboard`).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use pulsewire_codec::{Kind, ValueRef, Values};
use pulsewire_proto::{QueryError, parse_duration, parse_query};
use pulsewire_tsdb::{Aggregation, Bucket, SeriesId, SeriesMeta, Store, Tier, kind_name};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::AppState;
use crate::auth::Tenant;

/// A query that cannot be answered: 400 with what is wrong, or 500 for a store failure.
pub struct QueryFailure(pub(crate) StatusCode, pub(crate) String);

impl IntoResponse for QueryFailure {
    fn into_response(self) -> Response {
        let code = if self.0 == StatusCode::BAD_REQUEST {
            "bad_query"
        } else {
            "internal"
        };
        (self.0, Json(json!({ "code": code, "message": self.1 }))).into_response()
    }
}

impl From<QueryError> for QueryFailure {
    fn from(e: QueryError) -> Self {
        QueryFailure(StatusCode::BAD_REQUEST, e.to_string())
    }
}

impl From<pulsewire_tsdb::Error> for QueryFailure {
    fn from(e: pulsewire_tsdb::Error) -> Self {
        match e {
            pulsewire_tsdb::Error::Invalid(m) => QueryFailure(StatusCode::BAD_REQUEST, m),
            other => {
                tracing::error!(error = %other, "query failed");
                QueryFailure(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the store failed to read; see the server log".into(),
                )
            }
        }
    }
}

#[derive(Deserialize)]
pub struct QueryArgs {
    q: Option<String>,
    from: Option<String>,
    to: Option<String>,
    step: Option<String>,
    agg: Option<String>,
    db: Option<String>,
    /// `raw` aggregates from raw points even where a rollup tier could answer.
    tier: Option<String>,
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

pub(crate) fn value_json(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Float(f) => serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number),
        ValueRef::Int(i) => Value::from(i),
        ValueRef::UInt(u) => Value::from(u),
        ValueRef::Bool(b) => Value::Bool(b),
        ValueRef::Str(s) => Value::String(s.to_string()),
    }
}

pub(crate) fn series_head(meta: &SeriesMeta) -> serde_json::Map<String, Value> {
    let tags: serde_json::Map<String, Value> = meta
        .line
        .tags
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    let mut m = serde_json::Map::new();
    m.insert("measurement".into(), Value::String(meta.line.measurement.clone()));
    m.insert("field".into(), Value::String(meta.field.to_string()));
    m.insert("tags".into(), Value::Object(tags));
    m
}

/// Series a query may touch at most.
const MAX_SERIES: usize = 10_000;

/// `GET /api/v1/query?q=&from=&to=&step=&agg=[&db=]`.
pub async fn query(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Query(args): Query<QueryArgs>,
) -> Result<Json<QueryAnswer>, QueryFailure> {
    let p = parse_query(
        args.q.as_deref(),
        args.from.as_deref(),
        args.to.as_deref(),
        args.step.as_deref(),
        args.agg.as_deref(),
        now_ms(),
    )?;
    let db = args.db.filter(|d| !d.is_empty());
    let force_raw = match args.tier.as_deref() {
        None | Some("") | Some("auto") => false,
        Some("raw") => true,
        Some(other) => {
            return Err(QueryFailure(
                StatusCode::BAD_REQUEST,
                format!("tier: expected `auto` or `raw`, got {other:?}"),
            ));
        }
    };
    on_store(&state, move |store| {
        let matched = store.select(&tenant, db.as_deref(), &p.selector);
        if matched.len() > MAX_SERIES {
            return Err(QueryFailure(
                StatusCode::BAD_REQUEST,
                format!(
                    "q: the selector matches {} series, more than {MAX_SERIES}; add tag matchers",
                    matched.len()
                ),
            ));
        }
        let mut out = Vec::with_capacity(matched.len());
        for (id, meta) in &matched {
            let (source, points) = match (p.step_ms, p.agg) {
                (None, None) => {
                    let (ts, values) = store.read_raw(*id, meta, p.from_ms, p.to_ms)?;
                    ("raw", Points::Raw(ts, values))
                }
                (step, agg) => {
                    let agg = agg.unwrap_or(pulsewire_proto::Agg::Avg);
                    match step {
                        Some(step) => {
                            let (tier, buckets) = store.aggregate(
                                *id,
                                meta,
                                &Aggregation {
                                    from: p.from_ms,
                                    to: p.to_ms,
                                    step,
                                    agg,
                                    force_raw,
                                },
                            )?;
                            (tier.name(), Points::Buckets(buckets))
                        }
                        None => {
                            let v = store.aggregate_range(*id, meta, p.from_ms, p.to_ms, agg)?;
                            let one = v.map(|value| Bucket {
                                start: p.from_ms,
                                value,
                            });
                            (Tier::Raw.name(), Points::Buckets(one.into_iter().collect()))
                        }
                    }
                }
            };
            if points.is_empty() {
                continue;
            }
            out.push(AnsweredSeries {
                head: series_head(meta),
                source,
                points,
            });
        }
        Ok(Json(QueryAnswer { series: out }))
    })
    .await
}

/// The body of a `/api/v1/query` answer. Serialized straight from the store's output: building
/// a JSON value tree first (two allocations per point) cost a fifth of a 1,441-bucket query.
#[derive(Serialize)]
pub struct QueryAnswer {
    series: Vec<AnsweredSeries>,
}

#[derive(Serialize)]
struct AnsweredSeries {
    #[serde(flatten)]
    head: serde_json::Map<String, Value>,
    source: &'static str,
    points: Points,
}

/// `[[ms, value], ...]` of one series: raw points, or aggregated buckets (a non-finite
/// aggregate is `null`).
enum Points {
    Raw(Vec<i64>, Values),
    Buckets(Vec<Bucket>),
}

impl Points {
    fn is_empty(&self) -> bool {
        match self {
            Points::Raw(ts, _) => ts.is_empty(),
            Points::Buckets(b) => b.is_empty(),
        }
    }
}

impl Serialize for Points {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        match self {
            Points::Raw(ts, values) => {
                let mut seq = ser.serialize_seq(Some(ts.len()))?;
                for (i, t) in ts.iter().enumerate() {
                    if let Some(v) = values.get(i) {
                        seq.serialize_element(&(t, RawValue(v)))?;
                    }
                }
                seq.end()
            }
            Points::Buckets(buckets) => {
                let mut seq = ser.serialize_seq(Some(buckets.len()))?;
                for b in buckets {
                    seq.serialize_element(&(b.start, b.value.is_finite().then_some(b.value)))?;
                }
                seq.end()
            }
        }
    }
}

/// One stored value as JSON (a non-finite float is `null`).
struct RawValue<'a>(ValueRef<'a>);

impl Serialize for RawValue<'_> {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            ValueRef::Float(f) if f.is_finite() => ser.serialize_f64(f),
            ValueRef::Float(_) => ser.serialize_none(),
            ValueRef::Int(i) => ser.serialize_i64(i),
            ValueRef::UInt(u) => ser.serialize_u64(u),
            ValueRef::Bool(b) => ser.serialize_bool(b),
            ValueRef::Str(s) => ser.serialize_str(s),
        }
    }
}

#[derive(Deserialize)]
pub struct SeriesArgs {
    q: Option<String>,
    db: Option<String>,
}

/// `GET /api/v1/series?q=[&db=]`.
pub async fn series(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Query(args): Query<SeriesArgs>,
) -> Result<Json<Value>, QueryFailure> {
    let q = args
        .q
        .ok_or_else(|| QueryFailure(StatusCode::BAD_REQUEST, "q: missing; expected a selector".into()))?;
    let selector = pulsewire_proto::parse_selector(&q)?;
    let db = args.db.filter(|d| !d.is_empty());
    let matched = on_store(&state, move |store| Ok(store.select(&tenant, db.as_deref(), &selector))).await?;
    let out: Vec<Value> = matched
        .iter()
        .map(|(_, meta)| {
            let mut e = series_head(meta);
            e.insert("db".into(), Value::String(meta.line.db.clone()));
            e.insert("type".into(), Value::String(kind_name(meta.kind).into()));
            Value::Object(e)
        })
        .collect();
    Ok(Json(json!({ "series": out })))
}

#[derive(Deserialize)]
pub struct RangeArgs {
    range: Option<String>,
    #[serde(rename = "timeRange")]
    time_range: Option<String>,
}

fn range_ms(args: &RangeArgs) -> Result<i64, QueryFailure> {
    match args.range.as_deref().or(args.time_range.as_deref()) {
        None | Some("") => Ok(3_600_000),
        Some(r) => Ok(parse_duration(r)?),
    }
}

/// Latest value and range summary of one series.
fn overview(store: &Store, id: SeriesId, meta: &SeriesMeta, from: i64, to: i64) -> Result<Option<Value>, QueryFailure> {
    let mut e = series_head(meta);
    if meta.kind == Kind::Str {
        let (ts, values) = store.read_raw(id, meta, from, to)?;
        let Some(last) = ts.len().checked_sub(1) else {
            return Ok(None);
        };
        let v = values.get(last).map_or(Value::Null, value_json);
        e.insert("last".into(), json!([ts.get(last), v]));
        e.insert("count".into(), Value::from(ts.len()));
        return Ok(Some(Value::Object(e)));
    }
    let Some(s) = store.summarize(id, meta, from, to)? else {
        return Ok(None);
    };
    let num = |v: f64| serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number);
    e.insert("last".into(), json!([s.last.0, num(s.last.1)]));
    e.insert("min".into(), num(s.min));
    e.insert("max".into(), num(s.max));
    e.insert("avg".into(), s.avg().map_or(Value::Null, num));
    e.insert("count".into(), Value::from(s.count));
    Ok(Some(Value::Object(e)))
}

/// The tags that name an agent: `source` (the JSON format), or `host` (Telegraf).
const SOURCE_TAGS: [&str; 2] = ["source", "host"];

fn source_of(meta: &SeriesMeta) -> Option<&str> {
    SOURCE_TAGS.iter().find_map(|t| meta.line.tag(t))
}

/// Runs a read against the store on a blocking thread (reads decode blocks and may take
/// milliseconds; they must not stall the connections served on the runtime's threads).
pub(crate) async fn on_store<T: Send + 'static>(
    state: &AppState,
    read: impl FnOnce(Store) -> Result<T, QueryFailure> + Send + 'static,
) -> Result<T, QueryFailure> {
    let store = state.store().clone();
    tokio::task::spawn_blocking(move || read(store))
        .await
        .map_err(|_| QueryFailure(StatusCode::INTERNAL_SERVER_ERROR, "query task failed".into()))?
}

/// `GET /api/v1/metrics/realtime/{source}?range=1h`: every series of one source.
pub async fn realtime(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(source): Path<String>,
    Query(args): Query<RangeArgs>,
) -> Result<Json<Value>, QueryFailure> {
    let range = range_ms(&args)?;
    on_store(&state, move |store| {
        let to = now_ms();
        let from = to - range;
        let mut out = Vec::new();
        // Anomaly scores are derived series: the overviews show what the source wrote.
        for (id, meta) in store
            .series_with_tag(&tenant, &SOURCE_TAGS, &source)
            .into_iter()
            .filter(|(_, m)| !crate::watch::is_derived(&m.line.measurement))
        {
            if let Some(v) = overview(&store, id, &meta, from, to)? {
                out.push(v);
            }
        }
        Ok(Json(json!({ "source": source, "from": from, "to": to, "series": out })))
    })
    .await
}

/// `GET /api/v1/metrics/dashboard?range=1h`: the same overview for every source.
pub async fn dashboard(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Query(args): Query<RangeArgs>,
) -> Result<Json<Value>, QueryFailure> {
    let range = range_ms(&args)?;
    on_store(&state, move |store| {
        let to = now_ms();
        let from = to - range;
        let mut by_source: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        let mut truncated = false;
        let mut n = 0;
        for (id, meta) in store.all_series(&tenant) {
            let Some(src) = source_of(&meta).map(str::to_string) else {
                continue;
            };
            if crate::watch::is_derived(&meta.line.measurement) {
                continue;
            }
            if n >= MAX_SERIES {
                truncated = true;
                break;
            }
            if let Some(v) = overview(&store, id, &meta, from, to)? {
                by_source.entry(src).or_default().push(v);
                n += 1;
            }
        }
        let sources: Vec<Value> = by_source
            .into_iter()
            .map(|(source, series)| json!({ "source": source, "series": series }))
            .collect();
        Ok(Json(
            json!({ "from": from, "to": to, "sources": sources, "truncated": truncated }),
        ))
    })
    .await
}
