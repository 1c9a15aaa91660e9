//! Tenants, as a property: for any number of tenants (2 to 5), each with one or two keys, its own
//! channels, series and a rule, all named alike across tenants on purpose (`cpu.usage`,
//! `news`, `high`), driven through the real server (HTTP ingest, publish, queries, series,
//! statistics, rules, alerts; WebSocket subscriptions), nothing crosses: every delivered
//! message, listing, query answer and alert belongs to the asker's tenant, and each tenant sees
//! all of its own.
//!
//! Each tenant ends with fences (a publication on each of its channels, a point that fires its
//! rule): the server keeps order per channel and publishes alert events in the order of the
//! writes, so the frames up to a tenant's fences are all it will ever get of what came before.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use pulsewire_server::auth::{self, Scope};
use pulsewire_testkit::{TestServer, WAIT, Ws, test_config};
use serde_json::{Value, json};

const CHANNELS: [&str; 4] = ["news", "chat:room1", "chat:room2", "feed"];
const HOSTS: [&str; 4] = ["h1", "h2", "h3", "h4"];

#[derive(Debug, Clone)]
struct TenantPlan {
    keys: usize,
    channels: BTreeSet<&'static str>,
    /// Host and value of `cpu.usage`.
    series: BTreeMap<&'static str, f64>,
    threshold: f64,
    /// Which key each step uses (indexes wrap).
    key_picks: Vec<usize>,
}

fn tenant_plan() -> impl Strategy<Value = TenantPlan> {
    (
        1usize..=2,
        proptest::sample::subsequence(CHANNELS.to_vec(), 1..=3),
        // Whole numbers: the values are compared exactly after a round trip through line protocol.
        proptest::collection::btree_map(
            proptest::sample::select(HOSTS.to_vec()),
            (0u32..100).prop_map(f64::from),
            1..=3,
        ),
        40.0f64..80.0,
        proptest::collection::vec(0usize..2, 8),
    )
        .prop_map(|(keys, channels, series, threshold, key_picks)| TenantPlan {
            keys,
            channels: channels.into_iter().collect(),
            series,
            // Half-way between whole numbers: no value equals it.
            threshold: threshold.round() + 0.5,
            key_picks,
        })
}

struct Tenant {
    name: String,
    plan: TenantPlan,
    keys: Vec<String>,
}

impl Tenant {
    fn key(&self, step: usize) -> &str {
        let pick = self
            .plan
            .key_picks
            .get(step % self.plan.key_picks.len())
            .copied()
            .unwrap_or(0);
        &self.keys[pick % self.keys.len()]
    }

    /// Hosts whose last value crosses the rule (the fence host always does).
    fn firing(&self) -> BTreeSet<String> {
        let mut out: BTreeSet<String> = self
            .plan
            .series
            .iter()
            .filter(|(_, v)| **v > self.plan.threshold)
            .map(|(h, _)| h.to_string())
            .collect();
        out.insert("fence".into());
        out
    }
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

async fn write(s: &TestServer, key: &str, body: String) {
    let resp = s
        .http
        .post(s.url("/write?db=d&precision=ms"))
        .header("authorization", format!("Bearer {key}"))
        .body(body)
        .send()
        .await
        .expect("write sent");
    assert_eq!(resp.status().as_u16(), 204);
}

fn hosts_of(list: &Value, key: &str) -> BTreeSet<String> {
    list[key]
        .as_array()
        .unwrap_or_else(|| panic!("no {key} in {list}"))
        .iter()
        .map(|x| {
            x["tags"]["host"]
                .as_str()
                .or_else(|| x["labels"]["host"].as_str())
                .unwrap_or("")
                .to_string()
        })
        .collect()
}

async fn run(plans: Vec<TenantPlan>) {
    let mut config = test_config();
    config.auth.enabled = true;
    config.analysis.anomaly.enabled = false;
    let path = auth::keys_path(&config.auth, &config.data_dir);
    let scopes = vec![Scope::Ingest, Scope::Read, Scope::Publish, Scope::Admin];
    let tenants: Vec<Tenant> = plans
        .into_iter()
        .enumerate()
        .map(|(i, plan)| {
            let name = format!("t{i}");
            let keys = (0..plan.keys)
                .map(|_| auth::create_key(&path, "k", &name, scopes.clone()).expect("key").1)
                .collect();
            Tenant { name, plan, keys }
        })
        .collect();
    let s = TestServer::start(config).await;

    // The same rule name in every tenant, each with its own threshold.
    for t in &tenants {
        let rule = json!({"name": "high", "kind": "threshold", "expr": "last(cpu.usage)", "window": "1m", "op": ">", "threshold": t.plan.threshold});
        let (status, body) = call(&s, t.key(0), "POST", "/api/v1/rules", Some(rule)).await;
        assert_eq!(status, 201, "{body}");
    }
    let mut sockets: Vec<Ws> = Vec::new();
    for t in &tenants {
        let mut ws = s
            .ws_with("", Some(&format!("Bearer {}", t.key(1))))
            .await
            .unwrap_or_else(|(status, body)| panic!("upgrade refused: {status} {body}"));
        let mut channels: Vec<&str> = t.plan.channels.iter().copied().collect();
        channels.push("alerts");
        ws.subscribe(1, &channels).await;
        sockets.push(ws);
    }

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    for t in &tenants {
        let lines: String = t
            .plan
            .series
            .iter()
            .map(|(h, v)| format!("cpu,host={h} usage={v} {now}\n"))
            .collect();
        write(&s, t.key(2), lines).await;
        for ch in &t.plan.channels {
            let body = json!({"channel": ch, "data": {"tenant": t.name, "fence": false}});
            let (status, reply) = call(&s, t.key(3), "POST", "/api/v1/publish", Some(body)).await;
            assert_eq!(status, 200, "{reply}");
        }
    }
    // Fences, after everything else.
    for t in &tenants {
        write(&s, t.key(4), format!("cpu,host=fence usage=1000 {}\n", now + 1)).await;
        for ch in &t.plan.channels {
            let body = json!({"channel": ch, "data": {"tenant": t.name, "fence": true}});
            let (status, reply) = call(&s, t.key(5), "POST", "/api/v1/publish", Some(body)).await;
            assert_eq!(status, 200, "{reply}");
        }
    }

    for (t, ws) in tenants.iter().zip(sockets.iter_mut()) {
        // Deliveries: up to every fence of the tenant, only its own.
        let mut open: BTreeSet<String> = t.plan.channels.iter().map(|c| c.to_string()).collect();
        open.insert("alerts".into());
        let mut by_channel: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        while !open.is_empty() {
            let m = tokio::time::timeout(WAIT, ws.recv())
                .await
                .unwrap_or_else(|_| panic!("{}: fences missing on {open:?}; got {by_channel:#?}", t.name));
            if m["type"] != "message" {
                continue;
            }
            let channel = m["channel"].as_str().unwrap_or("").to_string();
            let data = m["data"].clone();
            assert_eq!(data["tenant"], t.name.as_str(), "{}: a foreign delivery {m}", t.name);
            let fence = if channel == "alerts" {
                data["labels"]["host"] == "fence"
            } else {
                data["fence"] == true
            };
            if fence {
                open.remove(&channel);
            }
            by_channel.entry(channel).or_default().push(data);
        }
        for ch in &t.plan.channels {
            assert_eq!(
                by_channel.get(*ch).map(Vec::len),
                Some(2),
                "{}: {ch}: {by_channel:#?}",
                t.name
            );
        }
        let alerted: BTreeSet<String> = by_channel["alerts"]
            .iter()
            .map(|e| e["labels"]["host"].as_str().unwrap_or("").to_string())
            .collect();
        assert_eq!(alerted, t.firing(), "{}: alert events", t.name);

        // Listings and queries: exactly the tenant's own.
        let own: BTreeSet<String> = t
            .plan
            .series
            .keys()
            .map(|h| h.to_string())
            .chain(["fence".to_string()])
            .collect();
        assert_eq!(
            hosts_of(&get(&s, t.key(6), "/api/v1/series?q=cpu").await, "series"),
            own,
            "{}",
            t.name
        );
        let q = get(&s, t.key(7), "/api/v1/query?q=cpu.usage&from=0&to=now%2B1d").await;
        assert_eq!(hosts_of(&q, "series"), own, "{}: {q}", t.name);
        for series in q["series"].as_array().expect("series") {
            let host = series["tags"]["host"].as_str().unwrap_or("");
            let want = t.plan.series.get(host).copied().unwrap_or(1000.0);
            assert_eq!(series["points"][0][1].as_f64(), Some(want), "{}: {series}", t.name);
        }
        let stats = get(&s, t.key(0), "/api/v1/metrics/statistics?q=cpu&window=1m").await;
        assert_eq!(hosts_of(&stats, "series"), own, "{}: {stats}", t.name);
        let rules = get(&s, t.key(1), "/api/v1/rules").await;
        assert_eq!(rules["rules"].as_array().map(Vec::len), Some(1), "{rules}");
        assert_eq!(rules["rules"][0]["tenant"], t.name.as_str());
        assert_eq!(rules["rules"][0]["threshold"].as_f64(), Some(t.plan.threshold));
        let alerts = get(&s, t.key(2), "/api/v1/alerts?state=firing").await;
        assert_eq!(hosts_of(&alerts, "alerts"), t.firing(), "{}: {alerts}", t.name);
        assert!(
            alerts["alerts"]
                .as_array()
                .expect("alerts")
                .iter()
                .all(|a| a["tenant"] == t.name.as_str()),
            "{alerts}"
        );
        // Another tenant's alert ids are unknown here.
        for other in tenants.iter().filter(|o| o.name != t.name) {
            let theirs = get(&s, other.key(0), "/api/v1/alerts").await;
            for a in theirs["alerts"].as_array().expect("alerts") {
                let id = a["id"].as_str().expect("id");
                let (status, body) = call(&s, t.key(3), "GET", &format!("/api/v1/alerts/{id}"), None).await;
                assert_eq!((status, body["code"].as_str()), (404, Some("not_found")), "{body}");
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn nothing_crosses_between_tenants(plans in proptest::collection::vec(tenant_plan(), 2..=5)) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(run(plans));
    }
}
