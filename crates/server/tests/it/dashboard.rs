//! The embedded dashboard over real HTTP: `/` and `/assets/*` without authentication (while the
//! API still needs a key), content types, cache headers, ETags, gzip; `dashboard.enabled =
//! false`; and that the committed build output is that of the committed sources.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use pulsewire_server::auth::{self, Scope};
use pulsewire_testkit::{TestServer, test_config};
use sha2::{Digest as _, Sha256};

async fn get(s: &TestServer, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut req = s.http.get(s.url(path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.expect("request sent")
}

fn header(resp: &reqwest::Response, name: &str) -> String {
    resp.headers()
        .get(name)
        .map(|v| v.to_str().expect("ascii header").to_owned())
        .unwrap_or_default()
}

/// The asset paths index.html loads (`/assets/...` in `src=` and `href=`).
fn referenced_assets(html: &str) -> Vec<String> {
    html.split('"')
        .filter(|s| s.starts_with("/assets/"))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn the_page_and_its_assets_are_served_without_a_key_with_types_caching_and_gzip() {
    let mut config = test_config();
    config.auth.enabled = true;
    let path = auth::keys_path(&config.auth, &config.data_dir);
    let (_, key) = auth::create_key(&path, "test", "a", vec![Scope::Read]).expect("key created");
    let s = TestServer::start(config).await;

    let resp = get(&s, "/", &[]).await;
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(header(&resp, "content-type"), "text/html; charset=utf-8");
    assert_eq!(header(&resp, "cache-control"), "no-cache");
    let etag = header(&resp, "etag");
    assert!(etag.starts_with('"') && etag.len() > 10, "etag {etag:?}");
    let html = resp.text().await.unwrap();
    assert!(html.contains("<title>Pulsewire</title>"), "{html}");
    let assets = referenced_assets(&html);
    assert!(
        assets.iter().any(|a| a.ends_with(".js")) && assets.iter().any(|a| a.ends_with(".css")),
        "index.html loads a script and a stylesheet: {assets:?}"
    );

    // Unchanged: 304 on revalidation.
    let resp = get(&s, "/", &[("if-none-match", &etag)]).await;
    assert_eq!(resp.status().as_u16(), 304);

    for asset in &assets {
        let plain = get(&s, asset, &[]).await;
        assert_eq!(plain.status().as_u16(), 200, "{asset}");
        let want = if asset.ends_with(".js") {
            "text/javascript; charset=utf-8"
        } else {
            "text/css; charset=utf-8"
        };
        assert_eq!(header(&plain, "content-type"), want, "{asset}");
        assert_eq!(header(&plain, "cache-control"), "public, max-age=31536000, immutable");
        assert_eq!(header(&plain, "content-encoding"), "");
        let body = plain.bytes().await.unwrap();

        let zipped = get(&s, asset, &[("accept-encoding", "br, gzip;q=0.8")]).await;
        assert_eq!(header(&zipped, "content-encoding"), "gzip", "{asset}");
        assert_eq!(header(&zipped, "vary"), "accept-encoding");
        let packed = zipped.bytes().await.unwrap();
        assert!(packed.len() < body.len(), "{asset}: gzip makes it smaller");
        let mut unpacked = Vec::new();
        flate2::read::GzDecoder::new(&packed[..])
            .read_to_end(&mut unpacked)
            .unwrap();
        assert_eq!(unpacked, body, "{asset}: gzip round trip");

        let refused = get(&s, asset, &[("accept-encoding", "gzip;q=0")]).await;
        assert_eq!(header(&refused, "content-encoding"), "", "q=0 refuses gzip");
    }

    // Unknown files are 404, like any unknown path; no directory listing, no source hash.
    for missing in ["/assets/nope.js", "/assets/", "/SOURCE_HASH", "/index.html"] {
        let resp = get(&s, missing, &[]).await;
        assert!(
            matches!(resp.status().as_u16(), 401 | 404),
            "{missing}: {}",
            resp.status()
        );
    }
    assert_eq!(get(&s, "/assets/nope.js", &[]).await.status().as_u16(), 404);

    // The API itself still needs the key: that 401 is what makes the page ask for one.
    let resp = get(&s, "/api/v1/series?q=cpu", &[]).await;
    assert_eq!(resp.status().as_u16(), 401);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "unauthorized");
    let resp = get(
        &s,
        "/api/v1/series?q=cpu",
        &[("authorization", &format!("Bearer {key}"))],
    )
    .await;
    assert_eq!(resp.status().as_u16(), 200);
    // Writing to `/` is not open.
    let resp = s.http.post(s.url("/")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    // And the server goes on serving the page.
    assert_eq!(get(&s, "/", &[]).await.status().as_u16(), 200);
}

#[tokio::test]
async fn the_dashboard_can_be_turned_off() {
    let mut config = test_config();
    config.dashboard.enabled = false;
    let s = TestServer::start(config).await;
    assert_eq!(get(&s, "/", &[]).await.status().as_u16(), 404);
    let resp = get(&s, "/health", &[]).await;
    assert_eq!(resp.status().as_u16(), 200);
}

fn dashboard_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../dashboard")
}

/// Folders under the sources that the bundle never includes (as in `stamp.mjs`).
const EXCLUDED: [&str; 1] = ["../clients/js/src/react"];

fn walk(root: &Path, path: &Path, out: &mut Vec<String>) {
    if let Ok(rel) = path.strip_prefix(root)
        && EXCLUDED.contains(&rel.to_string_lossy().replace('\\', "/").as_str())
    {
        return;
    }
    let Ok(meta) = std::fs::metadata(path) else { return };
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            walk(root, &entry.unwrap().path(), out);
        }
    } else {
        out.push(path.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/"));
    }
}

/// The hash `dashboard/scripts/stamp.mjs` records in `SOURCE_HASH` at each build: SHA-256 over,
/// for each source file in byte order of its path (relative to `dashboard/`), the path, a NUL,
/// the content, a NUL. The sources include the `@pulsewire/client` SDK's, which the bundle
/// compiles.
fn source_hash() -> String {
    let root = dashboard_dir();
    let mut files = Vec::new();
    for s in [
        "index.html",
        "package.json",
        "package-lock.json",
        "tsconfig.json",
        "vite.config.ts",
        "src",
        "public",
        "../clients/js/src",
    ] {
        walk(&root, &root.join(s), &mut files);
    }
    files.sort();
    let mut h = Sha256::new();
    for f in &files {
        h.update(f.as_bytes());
        h.update([0]);
        h.update(std::fs::read(root.join(f)).unwrap());
        h.update([0]);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn the_committed_build_is_that_of_the_committed_sources() {
    let assets = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/dashboard");
    let recorded = std::fs::read_to_string(assets.join("SOURCE_HASH")).expect("assets/dashboard/SOURCE_HASH exists");
    assert_eq!(
        recorded.trim(),
        source_hash(),
        "the dashboard's sources (or the SDK's in clients/js/src, which it compiles) changed since \
         crates/server/assets/dashboard was built: run `npm ci && npm run build` in dashboard/ and \
         commit crates/server/assets/dashboard"
    );
    // Every built file is one index.html loads: nothing stale is embedded.
    let html = std::fs::read_to_string(assets.join("index.html")).unwrap();
    let wanted = referenced_assets(&html);
    let mut built = Vec::new();
    walk(&assets, &assets.join("assets"), &mut built);
    built.sort();
    let mut wanted: Vec<String> = wanted.iter().map(|a| a.trim_start_matches('/').to_owned()).collect();
    wanted.sort();
    assert_eq!(
        built, wanted,
        "files under assets/dashboard/assets and what index.html loads differ"
    );
}
