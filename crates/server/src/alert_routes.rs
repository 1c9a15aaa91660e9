//! The HTTP side of alerting: rules (`/api/v1/rules`), alerts and their acknowledgement
//! (`/api/v1/alerts`), the alert log summary (`/api/v1/alerts/stats`) and silences
//! (`/api/v1/silences`). Errors are `{"code","message"}` with, for invalid input, `errors`:
//! one `{"path","message"}` per faulty field.
//!
//! Every handler acts for the tenant of the request's key or token (the `Tenant` extractor):
//! it reaches only that tenant's rules, alerts, silences and log. Another tenant's rule, alert
//! or silence is answered as one that does not exist (404 `not_found`), never 403, so a tenant
//! cannot learn what another has.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use pulsewire_analysis::alert::{AlertError, AlertFilter, RuleSpec, SilenceSpec};
use pulsewire_model::{AlertState, Severity};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::alerting::{AlertingError, now_ms};
use crate::auth::Tenant;

/// A refused alerting request.
pub struct Refused(StatusCode, &'static str, String, Vec<Value>);

impl Refused {
    fn bad(message: impl Into<String>) -> Refused {
        Refused(StatusCode::BAD_REQUEST, "bad_request", message.into(), Vec::new())
    }
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        let Refused(status, code, message, errors) = self;
        let mut body = json!({ "code": code, "message": message });
        if !errors.is_empty() {
            body["errors"] = Value::Array(errors);
        }
        (status, Json(body)).into_response()
    }
}

impl From<AlertingError> for Refused {
    fn from(e: AlertingError) -> Refused {
        match e {
            AlertingError::Invalid(errors) => {
                let message = AlertingError::Invalid(errors.clone()).to_string();
                let list = errors
                    .iter()
                    .map(|e| match e {
                        AlertError::Invalid { path, message } => json!({ "path": path, "message": message }),
                        other => json!({ "path": Value::Null, "message": other.to_string() }),
                    })
                    .collect();
                Refused(StatusCode::BAD_REQUEST, "invalid", message, list)
            }
            AlertingError::NotFound(m) => Refused(StatusCode::NOT_FOUND, "not_found", m, Vec::new()),
            AlertingError::Conflict(m) => Refused(StatusCode::CONFLICT, "conflict", m, Vec::new()),
            AlertingError::Storage(m) => {
                tracing::error!("alerting storage: {m}");
                Refused(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "storage",
                    "the change could not be written to disk".into(),
                    Vec::new(),
                )
            }
        }
    }
}

/// A JSON body; a value of the wrong type or a missing field is refused with the field's path,
/// in `message` and as the one entry of `errors`.
fn body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, Refused> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path.is_empty() || path == "." {
            return Refused::bad(format!("body: {inner}"));
        }
        Refused(
            StatusCode::BAD_REQUEST,
            "invalid",
            format!("{path}: {inner}"),
            vec![json!({ "path": path, "message": inner.to_string() })],
        )
    })
}

/// Runs blocking alerting work (it may write files) off the async workers.
async fn blocking<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&crate::alerting::Alerting) -> Result<T, AlertingError> + Send + 'static,
) -> Result<T, Refused> {
    let alerting = state.alerting().clone();
    let result = tokio::task::spawn_blocking(move || f(&alerting)).await.map_err(|_| {
        Refused(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "alerting task failed".into(),
            Vec::new(),
        )
    })?;
    Ok(result?)
}

fn rule_json(spec: &RuleSpec, source: crate::alerting::RuleSource) -> Value {
    let mut v = serde_json::to_value(spec).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        m.insert("source".into(), serde_json::to_value(source).unwrap_or(Value::Null));
    }
    v
}

/// `GET /api/v1/rules`.
pub async fn list_rules(State(state): State<AppState>, Tenant(tenant): Tenant) -> Json<Value> {
    let rules: Vec<Value> = state
        .alerting()
        .rules(&tenant)
        .iter()
        .map(|(spec, source)| rule_json(spec, *source))
        .collect();
    Json(json!({ "rules": rules }))
}

/// `GET /api/v1/rules/{name}`.
pub async fn get_rule(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(name): Path<String>,
) -> Result<Json<Value>, Refused> {
    match state.alerting().rule(&tenant, &name) {
        Some((spec, source)) => Ok(Json(rule_json(&spec, source))),
        None => Err(AlertingError::NotFound(format!("no rule named `{name}`")).into()),
    }
}

/// `POST /api/v1/rules`: a new rule (409 if the name is taken).
pub async fn create_rule(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    bytes: axum::body::Bytes,
) -> Result<Response, Refused> {
    let spec: RuleSpec = body(&bytes)?;
    let mut echo = spec.clone();
    echo.tenant = Some(tenant.as_str().to_string());
    blocking(&state, move |a| a.put_rule(&tenant, spec, true)).await?;
    Ok((
        StatusCode::CREATED,
        Json(rule_json(&echo, crate::alerting::RuleSource::Api)),
    )
        .into_response())
}

/// `PUT /api/v1/rules/{name}`: creates or replaces the rule of that name.
pub async fn put_rule(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(name): Path<String>,
    bytes: axum::body::Bytes,
) -> Result<Json<Value>, Refused> {
    let mut v: Value = body(&bytes)?;
    match v.get("name") {
        None => {
            if let Value::Object(m) = &mut v {
                m.insert("name".into(), Value::String(name.clone()));
            }
        }
        Some(n) if n.as_str() == Some(name.as_str()) => {}
        Some(n) => {
            return Err(Refused::bad(format!(
                "name: the body names the rule {n}, the path `{name}`"
            )));
        }
    }
    let spec: RuleSpec = serde_json::from_value(v).map_err(|e| Refused::bad(format!("body: {e}")))?;
    let mut echo = spec.clone();
    echo.tenant = Some(tenant.as_str().to_string());
    blocking(&state, move |a| a.put_rule(&tenant, spec, false)).await?;
    Ok(Json(rule_json(&echo, crate::alerting::RuleSource::Api)))
}

/// `DELETE /api/v1/rules/{name}`: removes the rule and resolves its alerts.
pub async fn delete_rule(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(name): Path<String>,
) -> Result<StatusCode, Refused> {
    blocking(&state, move |a| a.delete_rule(&tenant, &name)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
pub struct AlertsArgs {
    state: Option<String>,
    severity: Option<String>,
    rule: Option<String>,
    acked: Option<String>,
}

/// `GET /api/v1/alerts?state=&severity=&rule=&acked=`.
pub async fn list_alerts(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Query(args): Query<AlertsArgs>,
) -> Result<Json<Value>, Refused> {
    let mut filter = AlertFilter::default();
    if let Some(s) = args.state.filter(|s| !s.is_empty()) {
        filter.state = Some(match s.as_str() {
            "pending" => AlertState::Pending,
            "firing" => AlertState::Firing,
            "resolved" => AlertState::Resolved,
            _ => {
                return Err(Refused::bad(format!(
                    "state: expected pending, firing or resolved, got `{s}`"
                )));
            }
        });
    }
    if let Some(s) = args.severity.filter(|s| !s.is_empty()) {
        filter.severity = Some(match s.as_str() {
            "info" => Severity::Info,
            "warning" => Severity::Warning,
            "critical" => Severity::Critical,
            _ => {
                return Err(Refused::bad(format!(
                    "severity: expected info, warning or critical, got `{s}`"
                )));
            }
        });
    }
    filter.rule = args.rule.filter(|r| !r.is_empty());
    if let Some(a) = args.acked.filter(|a| !a.is_empty()) {
        filter.acked = Some(match a.as_str() {
            "true" => true,
            "false" => false,
            _ => return Err(Refused::bad(format!("acked: expected true or false, got `{a}`"))),
        });
    }
    let alerts = state.alerting().alerts(&tenant, &filter);
    Ok(Json(json!({ "alerts": alerts })))
}

/// `GET /api/v1/alerts/{id}`.
pub async fn get_alert(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
) -> Result<Json<Value>, Refused> {
    match state.alerting().alert(&tenant, &id) {
        Some(a) => Ok(Json(serde_json::to_value(a).unwrap_or(Value::Null))),
        None => Err(AlertingError::NotFound(format!("no alert with id `{id}`")).into()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AckBody {
    by: String,
    #[serde(default)]
    comment: String,
}

/// `POST /api/v1/alerts/{id}/ack` with `{"by": "...", "comment": "..."}`.
pub async fn ack(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
    bytes: axum::body::Bytes,
) -> Result<Json<Value>, Refused> {
    let b: AckBody = body(&bytes)?;
    if b.by.trim().is_empty() {
        return Err(Refused::bad("by: say who acknowledges the alert"));
    }
    let info = blocking(&state, move |a| a.ack(&tenant, &id, &b.by, &b.comment)).await?;
    Ok(Json(serde_json::to_value(info).unwrap_or(Value::Null)))
}

#[derive(Deserialize)]
pub struct RangeArgs {
    range: Option<String>,
}

/// `GET /api/v1/alerts/stats?range=24h`.
pub async fn stats(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Query(args): Query<RangeArgs>,
) -> Result<Json<Value>, Refused> {
    let range = match args.range.as_deref().filter(|r| !r.is_empty()) {
        None => 24 * 3_600_000,
        Some(r) => pulsewire_proto::parse_duration(r)
            .ok()
            .filter(|&d| d > 0)
            .ok_or_else(|| Refused::bad(format!("range: expected a duration such as 24h, got `{r}`")))?,
    };
    let to = now_ms();
    let from = to.saturating_sub(range);
    let stats = state.alerting().stats(&tenant, from, to);
    Ok(Json(json!({ "from": from, "to": to, "stats": stats })))
}

/// `GET /api/v1/silences`.
pub async fn list_silences(State(state): State<AppState>, Tenant(tenant): Tenant) -> Json<Value> {
    let now = now_ms();
    let list: Vec<Value> = state
        .alerting()
        .silences(&tenant)
        .into_iter()
        .map(|s| {
            let active = s.is_active(now);
            let mut v = serde_json::to_value(s).unwrap_or(Value::Null);
            if let Value::Object(m) = &mut v {
                m.insert("active".into(), Value::Bool(active));
            }
            v
        })
        .collect();
    Json(json!({ "silences": list }))
}

/// `POST /api/v1/silences`.
pub async fn create_silence(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    bytes: axum::body::Bytes,
) -> Result<Response, Refused> {
    let spec: SilenceSpec = body(&bytes)?;
    let s = blocking(&state, move |a| a.add_silence(&tenant, spec)).await?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::to_value(s).unwrap_or(Value::Null)),
    )
        .into_response())
}

/// `DELETE /api/v1/silences/{id}`: expires the silence now.
pub async fn delete_silence(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
) -> Result<StatusCode, Refused> {
    blocking(&state, move |a| a.expire_silence(&tenant, &id)).await?;
    Ok(StatusCode::NO_CONTENT)
}
