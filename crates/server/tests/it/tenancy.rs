//! Tenants over real HTTP and WebSocket with authentication on and keys for two tenants: a rule
//! judges only its tenant's series and its alerts reach only its tenant's `alerts` channel and
//! listings; another tenant's rule, alert or silence is answered 404 `not_found`; both tenants
//! may have a rule of the same name; `stats:<measurement>` and `anomalies` are per tenant; the
//! server keeps serving both after every refusal.
//!
//! "Nothing crossed" is proven with fences rather than waits: the alert publisher, the hub and
//! each connection keep order, so once a tenant's connection sees the event of its own last
//! write, everything written before (by any tenant) has had its chance to arrive, and the
//! frames before the fence are all there is to check.

use std::path::Path;
use std::time::Duration;

use pulsewire_server::auth::{self, Scope};
use pulsewire_testkit::{TestServer, WAIT, Ws, test_config};
use serde_json::{Value, json};

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn key(path: &Path, tenant: &str) -> String {
    let scopes = vec![Scope::Ingest, Scope::Read, Scope::Publish, Scope::Admin];
    auth::create_key(path, "test", tenant, scopes).expect("key created").1
}

/// A server with authentication on and an all-scopes key for tenants `a` and `b`.
async fn start(tune: impl FnOnce(&mut pulsewire_server::Config)) -> (TestServer, String, String) {
    let mut config = test_config();
    config.auth.enabled = true;
    tune(&mut config);
    let path = auth::keys_path(&config.auth, &config.data_dir);
    let (a, b) = (key(&path, "a"), key(&path, "b"));
    (TestServer::start(config).await, a, b)
}

async fn call(s: &TestServer, key: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut req = s
        .http
        .request(method, s.url(path))
        .header("authorization", format!("Bearer {key}"));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("request sent");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

async fn get(s: &TestServer, key: &str, path: &str) -> Value {
    let (status, body) = call(s, key, "GET", path, None).await;
    assert_eq!(status, 200, "GET {path}: {body}");
    body
}

async fn write(s: &TestServer, key: &str, body: &str) {
    let resp = s
        .http
        .post(s.url("/write?db=d&precision=ms"))
        .header("authorization", format!("Bearer {key}"))
        .body(body.to_string())
        .send()
        .await
        .expect("write sent");
    assert_eq!(resp.status().as_u16(), 204, "{}", resp.text().await.unwrap_or_default());
}

async fn ws(s: &TestServer, key: &str, channels: &[&str]) -> Ws {
    let mut ws = s
        .ws_with("", Some(&format!("Bearer {key}")))
        .await
        .unwrap_or_else(|(status, body)| panic!("upgrade refused: {status} {body}"));
    ws.subscribe(1, channels).await;
    ws
}

/// Messages on `channel` up to and including the first whose `data` satisfies `fence`.
async fn until(ws: &mut Ws, channel: &str, fence: impl Fn(&Value) -> bool) -> Vec<Value> {
    let mut seen = Vec::new();
    loop {
        let m = tokio::time::timeout(WAIT, ws.recv())
            .await
            .unwrap_or_else(|_| panic!("no fence on {channel}; saw {seen:#?}"));
        if m["type"] != "message" || m["channel"] != channel {
            continue;
        }
        let done = fence(&m["data"]);
        seen.push(m["data"].clone());
        if done {
            return seen;
        }
    }
}

fn high_cpu() -> Value {
    json!({
        "name": "high_cpu", "kind": "threshold", "expr": "last(cpu.usage)",
        "window": "1m", "op": ">", "threshold": 90.0
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_alerts_and_silences_belong_to_their_tenant() {
    let (s, a, b) = start(|c| c.analysis.anomaly.enabled = false).await;

    // The same name in both tenants; a rule only `a` has.
    for k in [&a, &b] {
        let (status, body) = call(&s, k, "POST", "/api/v1/rules", Some(high_cpu())).await;
        assert_eq!(status, 201, "{body}");
    }
    let only_a = json!({"name": "only_a", "kind": "threshold", "expr": "last(mem.used)", "window": "1m", "op": ">", "threshold": 1.0});
    let (status, body) = call(&s, &a, "POST", "/api/v1/rules", Some(only_a)).await;
    assert_eq!((status, &body["tenant"]), (201, &json!("a")), "{body}");
    // A body naming another tenant is refused with the field's path.
    let mut other = high_cpu();
    other["name"] = json!("sneaky");
    other["tenant"] = json!("b");
    let (status, body) = call(&s, &a, "POST", "/api/v1/rules", Some(other)).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("invalid")), "{body}");
    assert_eq!(body["errors"][0]["path"], "tenant", "{body}");

    let names = |v: &Value| -> Vec<(String, String)> {
        v["rules"]
            .as_array()
            .expect("rules")
            .iter()
            .map(|r| {
                (
                    r["tenant"].as_str().unwrap_or("").to_string(),
                    r["name"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    };
    assert_eq!(
        names(&get(&s, &a, "/api/v1/rules").await),
        vec![("a".into(), "high_cpu".into()), ("a".into(), "only_a".into())]
    );
    assert_eq!(
        names(&get(&s, &b, "/api/v1/rules").await),
        vec![("b".into(), "high_cpu".into())]
    );
    for (method, path) in [("GET", "/api/v1/rules/only_a"), ("DELETE", "/api/v1/rules/only_a")] {
        let (status, body) = call(&s, &b, method, path, None).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (404, Some("not_found")),
            "{method} {path}: {body}"
        );
    }

    let mut wa = ws(&s, &a, &["alerts"]).await;
    let mut wb = ws(&s, &b, &["alerts"]).await;
    let t = now_ms();
    // `a`'s host crosses; `b` writes the same series name below the threshold.
    write(&s, &a, &format!("cpu,host=web1 usage=95 {t}\n")).await;
    write(&s, &b, &format!("cpu,host=web1 usage=10 {t}\n")).await;
    // Then `b` crosses on another host: the first alert `b` sees must be its own.
    write(&s, &b, &format!("cpu,host=web2 usage=99 {}\n", t + 1)).await;
    let got_a = until(&mut wa, "alerts", |d| d["labels"]["host"] == "web1").await;
    let got_b = until(&mut wb, "alerts", |d| d["labels"]["host"] == "web2").await;
    assert_eq!(got_b.len(), 1, "b saw another tenant's alert: {got_b:#?}");
    let (ea, eb) = (&got_a[got_a.len() - 1], &got_b[0]);
    assert_eq!(
        (ea["tenant"].as_str(), ea["state"].as_str()),
        (Some("a"), Some("firing"))
    );
    assert_eq!(
        (eb["tenant"].as_str(), eb["state"].as_str()),
        (Some("b"), Some("firing"))
    );
    // Fence for `a`: its next event is its own, and nothing of `b`'s came before it.
    write(&s, &a, &format!("mem,host=web1 used=5 {}\n", t + 2)).await;
    let more_a = until(&mut wa, "alerts", |d| d["rule"] == "only_a").await;
    assert!(
        got_a.iter().chain(&more_a).all(|e| e["tenant"] == "a"),
        "a saw another tenant's alert: {got_a:#?} {more_a:#?}"
    );

    let a_id = ea["id"].as_str().expect("id").to_string();
    let b_id = eb["id"].as_str().expect("id").to_string();
    assert_ne!(a_id, b_id);
    let ids = |v: &Value| -> Vec<String> {
        let mut ids: Vec<String> = v["alerts"]
            .as_array()
            .expect("alerts")
            .iter()
            .map(|x| x["id"].as_str().unwrap_or("").to_string())
            .collect();
        ids.sort();
        ids
    };
    let listed_a = get(&s, &a, "/api/v1/alerts").await;
    assert_eq!(listed_a["alerts"].as_array().map(Vec::len), Some(2), "{listed_a}");
    assert!(ids(&listed_a).contains(&a_id) && !ids(&listed_a).contains(&b_id));
    assert_eq!(ids(&get(&s, &b, "/api/v1/alerts").await), vec![b_id.clone()]);

    // `b` can neither see nor acknowledge `a`'s alert: 404, as for an id nobody has.
    let (status, body) = call(&s, &b, "GET", &format!("/api/v1/alerts/{a_id}"), None).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")), "{body}");
    let (status, body) = call(
        &s,
        &b,
        "POST",
        &format!("/api/v1/alerts/{a_id}/ack"),
        Some(json!({"by": "mallory"})),
    )
    .await;
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")), "{body}");
    let (status, body) = call(
        &s,
        &a,
        "POST",
        &format!("/api/v1/alerts/{a_id}/ack"),
        Some(json!({"by": "alice"})),
    )
    .await;
    assert_eq!((status, &body["ack"]["by"]), (200, &json!("alice")), "{body}");

    // Silences: `a`'s is not listed to `b`, nor can `b` expire it.
    let silence = json!({"matchers": [{"name": "host", "value": "web1"}], "ends_at": now_ms() + 3_600_000, "created_by": "alice", "comment": "maintenance"});
    let (status, body) = call(&s, &a, "POST", "/api/v1/silences", Some(silence)).await;
    assert_eq!(status, 201, "{body}");
    let sid = body["id"].as_str().expect("silence id").to_string();
    assert_eq!(get(&s, &b, "/api/v1/silences").await["silences"], json!([]));
    let (status, body) = call(&s, &b, "DELETE", &format!("/api/v1/silences/{sid}"), None).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")), "{body}");
    assert_eq!(get(&s, &a, "/api/v1/silences").await["silences"][0]["id"], sid.as_str());

    // Alert statistics count only the tenant's own log.
    let stats_b = get(&s, &b, "/api/v1/alerts/stats?range=1h").await.to_string();
    assert!(!stats_b.contains("only_a"), "{stats_b}");
    assert!(
        get(&s, &a, "/api/v1/alerts/stats?range=1h")
            .await
            .to_string()
            .contains("only_a")
    );

    // An admin key administers its own tenant: connections and channels of `b` only.
    let clients = get(&s, &b, "/api/v1/clients").await;
    let tenants: Vec<&Value> = clients["clients"]
        .as_array()
        .expect("clients")
        .iter()
        .map(|c| &c["tenant"])
        .collect();
    assert_eq!(tenants, vec![&json!("b")], "{clients}");
    let channels = get(&s, &b, "/api/v1/channels").await;
    assert!(
        channels["channels"]
            .as_array()
            .expect("channels")
            .iter()
            .all(|c| c["tenant"] == "b"),
        "{channels}"
    );

    // After every refusal both tenants are still served, and deleting `b`'s rule leaves `a`'s.
    let (status, _) = call(&s, &b, "DELETE", "/api/v1/rules/high_cpu", None).await;
    assert_eq!(status, 204);
    let resolved = until(&mut wb, "alerts", |d| d["state"] == "resolved").await;
    assert_eq!(resolved.last().map(|e| e["id"].clone()), Some(json!(b_id)));
    assert_eq!(get(&s, &a, "/api/v1/rules/high_cpu").await["tenant"], "a");
    assert!(get(&s, &a, "/api/v1/alerts").await["alerts"].is_array());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statistics_and_anomalies_reach_only_their_tenant() {
    let (s, a, b) = start(|c| c.analysis.stats_interval = Duration::from_millis(200)).await;
    let now = now_ms();
    write(
        &s,
        &a,
        &format!(
            "cpu,host=a1 usage=10 {}\ncpu,host=a1 usage=20 {}\n",
            now - 2000,
            now - 1000
        ),
    )
    .await;
    write(&s, &b, &format!("cpu,host=b1 usage=70 {}\n", now - 1000)).await;

    // Each tenant's `stats:cpu` carries only its own series.
    let mut sa = ws(&s, &a, &["stats:cpu"]).await;
    let mut sb = ws(&s, &b, &["stats:*"]).await;
    for (w, host) in [(&mut sa, "a1"), (&mut sb, "b1")] {
        let got = until(w, "stats:cpu", |_| true).await;
        let hosts: Vec<&Value> = got[0]["series"]
            .as_array()
            .expect("series")
            .iter()
            .map(|x| &x["tags"]["host"])
            .collect();
        assert_eq!(hosts, vec![&json!(host)], "{}", got[0]);
    }
    // The request endpoints answer from the asker's series too.
    let st = get(&s, &b, "/api/v1/metrics/statistics?q=cpu&window=1m")
        .await
        .to_string();
    assert!(st.contains("b1") && !st.contains("a1"), "{st}");

    // Anomalies go to the tenant whose series it is.
    let mut aa = ws(&s, &a, &["anomalies"]).await;
    let mut ab = ws(&s, &b, &["anomalies"]).await;
    let steady = |host: &str, end: i64| -> String {
        (0..300)
            .map(|i| {
                format!(
                    "load,host={host} v={} {}\n",
                    50.0 + ((i * 7919) % 13) as f64 / 10.0,
                    end - (300 - i) * 1000
                )
            })
            .collect()
    };
    let end = now_ms() - 1000;
    write(&s, &a, &steady("ha", end)).await;
    write(&s, &b, &steady("hb", end)).await;
    write(&s, &a, &format!("load,host=ha v=500 {end}\n")).await;
    write(&s, &b, &format!("load,host=hb v=500 {end}\n")).await;
    let got_a = until(&mut aa, "anomalies", |d| d["tags"]["host"] == "ha").await;
    let got_b = until(&mut ab, "anomalies", |d| d["tags"]["host"] == "hb").await;
    assert!(got_a.iter().all(|d| d["tags"]["host"] == "ha"), "{got_a:#?}");
    assert!(got_b.iter().all(|d| d["tags"]["host"] == "hb"), "{got_b:#?}");
    // Still serving both.
    assert!(get(&s, &a, "/api/v1/series?q=load").await.to_string().contains("ha"));
}
