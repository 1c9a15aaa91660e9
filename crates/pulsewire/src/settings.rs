//! Configuration loading: defaults, then a TOML file (`--config`), then `PULSEWIRE_*`
//! environment variables (nested keys joined by `__`, e.g. `PULSEWIRE_HUB__QUEUE__MAX_MESSAGES`),
//! then flags. Every problem is collected and reported by key, not just the first.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use pulsewire_server::{Config, LogFormat};
use serde::Serialize;

const ENV_PREFIX: &str = "PULSEWIRE_";

#[derive(Args, Debug, Default, Serialize)]
pub struct ServeArgs {
    /// TOML configuration file.
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, value_name = "ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    /// Data directory [default: ./pulsewire-data].
    #[arg(long, value_name = "DIR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// Log as JSON lines instead of human-readable text.
    #[arg(long)]
    #[serde(skip)]
    pub log_json: bool,
    /// Serve without authentication even on a non-loopback address (sets `auth.insecure`).
    #[arg(long)]
    #[serde(skip)]
    pub insecure: bool,
    /// Serve HTTPS and WSS with this PEM certificate chain (sets `tls.cert_file`; needs `--tls-key`).
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of `--tls-cert` (sets `tls.key_file`).
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    pub tls_key: Option<PathBuf>,
}

#[derive(Serialize)]
struct TlsOverride {
    #[serde(skip_serializing_if = "Option::is_none")]
    cert_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_file: Option<PathBuf>,
}

#[derive(Serialize)]
struct TlsFlags {
    tls: TlsOverride,
}

#[derive(Serialize)]
struct InsecureOverride {
    insecure: bool,
}

#[derive(Serialize)]
struct AuthFlags {
    auth: InsecureOverride,
}

#[derive(Serialize)]
struct LogOverride {
    format: LogFormat,
}

#[derive(Serialize)]
struct LogFlags {
    log: LogOverride,
}

/// Loads and validates the configuration; on failure returns every problem found.
pub fn load(args: &ServeArgs) -> Result<(Config, String), Vec<String>> {
    let mut figment = Figment::from(Serialized::defaults(Config::default()));
    let mut sources = vec!["defaults".to_string()];
    if let Some(path) = &args.config {
        if !path.exists() {
            return Err(vec![format!("--config: file {} does not exist", path.display())]);
        }
        figment = figment.merge(Toml::file_exact(path));
        sources.push(path.display().to_string());
    }
    let env_keys: Vec<String> = std::env::vars()
        .map(|(k, _)| k)
        .filter(|k| k.starts_with(ENV_PREFIX))
        .collect();
    if !env_keys.is_empty() {
        sources.push(format!("environment ({})", env_keys.join(", ")));
    }
    figment = figment.merge(Env::prefixed(ENV_PREFIX).split("__"));
    figment = figment.merge(Serialized::defaults(args));
    if args.log_json {
        figment = figment.merge(Serialized::defaults(LogFlags {
            log: LogOverride {
                format: LogFormat::Json,
            },
        }));
    }
    if args.insecure {
        figment = figment.merge(Serialized::defaults(AuthFlags {
            auth: InsecureOverride { insecure: true },
        }));
    }
    if args.tls_cert.is_some() || args.tls_key.is_some() {
        figment = figment.merge(Serialized::defaults(TlsFlags {
            tls: TlsOverride {
                cert_file: args.tls_cert.clone(),
                key_file: args.tls_key.clone(),
            },
        }));
    }
    let tls_flags = args.tls_cert.is_some() || args.tls_key.is_some();
    if args.listen.is_some() || args.data_dir.is_some() || args.log_json || args.insecure || tls_flags {
        sources.push("flags".into());
    }
    let config: Config = figment.extract().map_err(|_| section_problems(&figment))?;
    let mut problems = config.problems();
    if let Err(e) = tracing_subscriber::EnvFilter::try_new(&config.log.level) {
        problems.push(format!("log.level: {e}"));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok((config, sources.join(" + ")))
}

/// Extraction stops at the first error; extracting each section on its own finds them all.
fn section_problems(figment: &Figment) -> Vec<String> {
    use pulsewire_hub::HubConfig;
    use pulsewire_server::{
        AnalysisConfig, AuditConfig, AuthConfig, CollectorConfig, DashboardConfig, HttpConfig, IngestConfig,
        LimitsConfig, LogConfig, ShutdownConfig, SseConfig, TlsConfig, WebSocketConfig,
    };
    use pulsewire_tsdb::StoreConfig;
    fn check<T: serde::de::DeserializeOwned>(figment: &Figment, key: &str, out: &mut Vec<String>) {
        if !figment.contains(key) {
            return;
        }
        // Focused on the section, error paths are relative to it: prefix them with its name.
        let result = if key.contains('.') || matches!(key, "listen" | "data_dir") {
            figment.extract_inner::<T>(key).map(drop).map_err(|e| (e, ""))
        } else {
            figment.focus(key).extract::<T>().map(drop).map_err(|e| (e, key))
        };
        if let Err((e, prefix)) = result {
            out.extend(e.into_iter().map(|e| describe(prefix, e)));
        }
    }
    let mut out = Vec::new();
    check::<SocketAddr>(figment, "listen", &mut out);
    check::<PathBuf>(figment, "data_dir", &mut out);
    check::<LogConfig>(figment, "log", &mut out);
    check::<WebSocketConfig>(figment, "websocket", &mut out);
    check::<SseConfig>(figment, "sse", &mut out);
    check::<HttpConfig>(figment, "http", &mut out);
    check::<ShutdownConfig>(figment, "shutdown", &mut out);
    check::<HubConfig>(figment, "hub", &mut out);
    check::<IngestConfig>(figment, "ingest", &mut out);
    check::<StoreConfig>(figment, "tsdb", &mut out);
    check::<AnalysisConfig>(figment, "analysis", &mut out);
    check::<AuthConfig>(figment, "auth", &mut out);
    check::<LimitsConfig>(figment, "limits", &mut out);
    check::<CollectorConfig>(figment, "collector", &mut out);
    check::<TlsConfig>(figment, "tls", &mut out);
    check::<AuditConfig>(figment, "audit", &mut out);
    check::<DashboardConfig>(figment, "dashboard", &mut out);
    const KNOWN: [&str; 17] = [
        "listen",
        "data_dir",
        "log",
        "websocket",
        "sse",
        "http",
        "shutdown",
        "hub",
        "ingest",
        "tsdb",
        "analysis",
        "auth",
        "limits",
        "collector",
        "tls",
        "audit",
        "dashboard",
    ];
    if let Ok(figment::value::Value::Dict(_, dict)) = figment.find_value("") {
        for key in dict.keys().filter(|k| !KNOWN.contains(&k.as_str())) {
            out.push(format!("{key}: unknown key"));
        }
    }
    if out.is_empty() {
        // Not expected: report whatever the whole extraction says.
        if let Err(e) = figment.extract::<Config>() {
            out.extend(e.into_iter().map(|e| describe("", e)));
        }
    }
    out
}

fn describe(section: &str, e: figment::Error) -> String {
    // `section` is where the extraction was focused; error paths are relative to it.
    let key = match (section.is_empty(), e.path.is_empty()) {
        (_, true) => section.to_owned(),
        (true, false) => e.path.join("."),
        (false, false) => format!("{section}.{}", e.path.join(".")),
    };
    let from = e.metadata.as_ref().map(|m| m.name.to_string()).unwrap_or_default();
    let mut kind = e.kind.to_string();
    if kind.is_empty() {
        kind = e.to_string();
    }
    match (key.is_empty(), from.is_empty()) {
        (false, false) => format!("{key}: {kind} (from {from})"),
        (false, true) => format!("{key}: {kind}"),
        _ => kind,
    }
}

/// The default configuration as TOML, for `pulsewire default-config` and docs/config.md.
pub fn default_toml() -> anyhow::Result<String> {
    Ok(toml::to_string_pretty(&Config::default())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_problems_are_all_reported_by_key() {
        let dir = std::env::temp_dir().join(format!("pulsewire-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.toml");
        std::fs::write(
            &path,
            "listen = \"nope\"\n[websocket]\nping_interval = \"0s\"\n[hub.queue]\nmax_messages = 0\n",
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(path.clone()),
            ..Default::default()
        };
        let problems = load(&args).unwrap_err();
        assert!(problems.iter().any(|p| p.starts_with("listen:")), "{problems:?}");

        // Type errors in several sections and an unknown key are all reported at once, by key.
        std::fs::write(
            &path,
            "listen = \"nope\"\nmystery = 1\n[websocket]\nping_interval = \"soon\"\n[hub.queue]\nmax_messages = \"x\"\n",
        )
        .unwrap();
        let problems = load(&args).unwrap_err();
        let keys: Vec<&str> = problems.iter().map(|p| p.split(':').next().unwrap()).collect();
        assert_eq!(
            keys,
            ["listen", "websocket.ping_interval", "hub.queue.max_messages", "mystery"],
            "{problems:?}"
        );

        std::fs::write(&path, "[log]\nlevel = \"info,=bad=\"\n").unwrap();
        let problems = load(&args).unwrap_err();
        assert!(problems[0].starts_with("log.level:"), "{problems:?}");

        std::fs::write(
            &path,
            "[websocket]\nping_interval = \"0s\"\n[hub.queue]\nmax_messages = 0\n",
        )
        .unwrap();
        let problems = load(&args).unwrap_err();
        assert_eq!(
            problems,
            vec![
                "websocket.ping_interval: must be above zero",
                "hub.queue.max_messages: must be at least 1"
            ]
        );

        std::fs::write(&path, "[websocket]\nping_intervall = \"1s\"\n").unwrap();
        let problems = load(&args).unwrap_err();
        assert!(problems[0].contains("ping_intervall"), "{problems:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn flags_override_file() {
        let args = ServeArgs {
            listen: Some("127.0.0.1:9999".parse().unwrap()),
            ..Default::default()
        };
        let (config, source) = load(&args).unwrap();
        assert_eq!(config.listen.port(), 9999);
        assert!(source.ends_with("flags"), "{source}");
    }

    #[test]
    fn insecure_flag_sets_auth_insecure_and_auth_keys_are_checked() {
        let args = ServeArgs {
            insecure: true,
            ..Default::default()
        };
        let (config, source) = load(&args).unwrap();
        assert!(config.auth.insecure && !config.auth.enabled);
        assert!(source.ends_with("flags"), "{source}");

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.toml");
        std::fs::write(&path, "[auth]\nenabled = \"yes\"\nkeyfile = \"k\"\n").unwrap();
        let args = ServeArgs {
            config: Some(path),
            ..Default::default()
        };
        let problems = load(&args).unwrap_err();
        assert!(problems.iter().any(|p| p.starts_with("auth.")), "{problems:?}");
    }

    #[test]
    fn default_config_round_trips() {
        let text = default_toml().unwrap();
        let back: Config = toml::from_str(&text).unwrap();
        assert_eq!(back, Config::default());
    }
}

#[cfg(test)]
mod doc_tests {
    /// docs/config.md shows the defaults; it must show the real ones.
    #[test]
    fn config_reference_shows_the_real_defaults() {
        let doc = include_str!("../../../docs/config.md");
        let block = doc
            .split("```toml\n")
            .nth(1)
            .and_then(|rest| rest.split("```").next())
            .expect("docs/config.md has a toml block");
        assert_eq!(
            block,
            super::default_toml().unwrap(),
            "regenerate the block with `pulsewire default-config`"
        );
        for line in block.lines().filter(|l| l.contains(" = ")) {
            let key = line.split(" = ").next().unwrap();
            assert!(
                doc.contains(&format!("{key}`")) || doc.contains(&format!(".{key}")),
                "docs/config.md does not explain `{key}`"
            );
        }
    }
}
