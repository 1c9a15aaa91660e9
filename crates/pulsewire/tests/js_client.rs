//! The TypeScript client `@pulsewire/client` (clients/js) against the real `pulsewire` binary:
//! builds the package (ESM, CJS and type declarations) and runs its vitest suite, whose
//! integration tests start this binary on loopback ports (WebSocket and SSE delivery, resume
//! after a cut connection, SSE fallback, backoff, token refresh, the React hooks) and whose
//! build test loads the output from ESM and CommonJS.
//!
//! Needs Node.js 20.19 or newer with npm. `node_modules` is installed with `npm ci` from the
//! committed package-lock.json when missing (`.ci/run` installs it first). Without node or npm
//! the test fails and says so; it never skips.

use std::path::{Path, PathBuf};
use std::process::Command;

fn package_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("the crate sits two levels below the workspace root")
        .join("clients/js")
}

fn run(dir: &Path, program: &str, args: &[&str]) {
    let status = Command::new(program)
        .args(args)
        .current_dir(dir)
        .env("PULSEWIRE_BIN", env!("CARGO_BIN_EXE_pulsewire"))
        .env("CI", "true")
        .status()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run `{program}` ({e}): the JavaScript client's tests need Node.js 20.19+ and npm on PATH \
                 (Debian: apt-get install nodejs npm)"
            )
        });
    assert!(
        status.success(),
        "`{program} {}` in {} failed: {status}",
        args.join(" "),
        dir.display()
    );
}

#[test]
fn js_client_suite_against_the_server() {
    let dir = package_dir();
    let version = Command::new("node").arg("--version").output().unwrap_or_else(|e| {
        panic!("cannot run `node` ({e}): the JavaScript client's tests need Node.js 20.19+ and npm on PATH")
    });
    let version = String::from_utf8_lossy(&version.stdout).trim().to_owned();
    let mut parts = version
        .trim_start_matches('v')
        .split('.')
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    assert!(
        (major, minor) >= (20, 19),
        "Node.js {version} is too old for clients/js: 20.19 or newer is needed"
    );
    if !dir.join("node_modules/.package-lock.json").exists() {
        run(&dir, "npm", &["ci", "--no-audit", "--no-fund"]);
    }
    run(&dir, "npm", &["run", "build"]);
    run(&dir, "npx", &["vitest", "run"]);
}
