//! The dashboard in a real browser: runs `dashboard/e2e/` (node's test runner, headless
//! Chromium through playwright-core) against this build's `pulsewire` binary. The tests open the
//! page the binary serves, watch a chart update from points written over HTTP, see an alert fire
//! and acknowledge it, cut the page's connection and check that it resumes without loss, and
//! measure frame times with 50 series updating every second. Screenshots and the frame-time
//! figures land in `target/dashboard-e2e/`. It also runs the vitest unit tests of the
//! dashboard's pure modules (`dashboard/test/`: the selector grammar, the charts' data merging).
//!
//! Needs Node 20.19+, `npm ci` in `dashboard/` (playwright-core, vitest) and Debian's `chromium`
//! (`apt-get install -y chromium`); `.ci/run` installs both. Missing any of them fails the test
//! with these instructions: it is never skipped.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_pulsewire");

fn dashboard_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../dashboard")
}

/// Checks Node's version and installs `dashboard/node_modules` when a package is missing (once:
/// the tests of this file run in parallel). Returns the node binary.
fn node_and_modules(dir: &Path) -> String {
    static INSTALL: Mutex<()> = Mutex::new(());
    let node = std::env::var("PW_NODE").unwrap_or_else(|_| "node".into());
    let version = Command::new(&node).arg("--version").output().unwrap_or_else(|e| {
        panic!("cannot run `{node} --version` ({e}): the dashboard's browser tests need Node 20.19 or newer")
    });
    assert!(version.status.success(), "`{node} --version` failed");
    let text = String::from_utf8_lossy(&version.stdout);
    let mut parts = text
        .trim()
        .trim_start_matches('v')
        .split('.')
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    assert!(
        (major, minor) >= (20, 19),
        "Node {} is too old: the dashboard's tools need Node 20.19 or newer",
        text.trim()
    );
    let _once = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    if ["playwright-core", "vitest", "eventsource-parser"]
        .iter()
        .any(|p| !dir.join("node_modules").join(p).is_dir())
    {
        // The packages pinned in dashboard/package-lock.json, as .ci/run installs them.
        let npm = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(dir)
            .status()
            .unwrap_or_else(|e| panic!("cannot run `npm ci` in dashboard/ ({e}): the dashboard's tests need npm"));
        assert!(npm.success(), "`npm ci` in dashboard/ failed");
    }
    node
}

#[test]
fn the_dashboards_pure_modules_pass_their_unit_tests() {
    let dir = dashboard_dir();
    let node = node_and_modules(&dir);
    let out = Command::new(&node)
        .args(["node_modules/vitest/vitest.mjs", "run"])
        .current_dir(&dir)
        .env("CI", "true")
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the dashboard's unit tests failed (output above)");
    // Both files ran: a missing or emptied one must not pass unnoticed.
    for file in ["test/selector.test.ts", "test/merge.test.ts"] {
        assert!(stdout.contains(file), "{file} did not run:\n{stdout}");
    }
}

#[test]
fn the_dashboard_works_in_headless_chromium() {
    let dir = dashboard_dir();
    let node = node_and_modules(&dir);
    let chromium = std::env::var("PW_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "{chromium} is missing: install Debian's chromium (`apt-get install -y chromium`), as .ci/run does"
    );
    let artifacts = Path::new(env!("CARGO_TARGET_TMPDIR")).join("../dashboard-e2e");
    std::fs::create_dir_all(&artifacts).expect("artifacts directory");
    let started = Instant::now();
    let out = Command::new(&node)
        .args([
            "--test",
            "--test-concurrency=1",
            "--test-timeout=90000",
            "--test-reporter=spec",
        ])
        .arg("e2e/dashboard.test.mjs")
        .current_dir(&dir)
        .env("PW_BIN", BIN)
        .env("PW_CHROMIUM", &chromium)
        .env("PW_ARTIFACTS", &artifacts)
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(
        out.status.success(),
        "the dashboard's browser tests failed (output above; screenshots in {})",
        artifacts.display()
    );
    assert!(
        stdout.lines().any(|l| l.trim() == "ℹ pass 8"),
        "expected eight passing browser tests:\n{stdout}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(180),
        "the browser tests took {:?}",
        started.elapsed()
    );
}
