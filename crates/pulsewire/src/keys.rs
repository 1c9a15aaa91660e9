//! `pulsewire keys create|list|revoke`: manages the API keys file of a data directory. The key
//! is printed once, at creation; the file keeps only its hash, so a lost key is revoked and
//! replaced, never recovered. A running server picks changes up within about a second.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use pulsewire_server::auth::{self, Scope};

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Create a key and print it (once).
    Create(CreateArgs),
    /// List the keys (never the keys themselves).
    List(FileArgs),
    /// Revoke a key by its id; requests with it are refused from then on.
    Revoke(RevokeArgs),
}

#[derive(Args, Debug)]
pub struct FileArgs {
    /// The node's data directory; the keys are in `<DIR>/auth/keys.json`.
    #[arg(long, value_name = "DIR", default_value = "./pulsewire-data")]
    pub data_dir: PathBuf,
    /// The keys file, when `auth.keys_file` names one outside the data directory.
    #[arg(long, value_name = "FILE")]
    pub keys_file: Option<PathBuf>,
    /// The audit log key changes are appended to, when `audit.file` names one outside the data
    /// directory [default: <DIR>/audit/audit.log].
    #[arg(long, value_name = "FILE")]
    pub audit_file: Option<PathBuf>,
}

impl FileArgs {
    /// Appends a key change to the node's audit log, under the lock the server's writer takes.
    fn audit(&self, event: &str, record: &auth::KeyRecord) -> anyhow::Result<()> {
        use pulsewire_server::audit;
        let cfg = pulsewire_server::AuditConfig {
            file: self.audit_file.clone().unwrap_or_default(),
            ..Default::default()
        };
        let path = audit::audit_path(&cfg, &self.data_dir);
        let user = std::env::var("USER")
            .or_else(|_| std::env::var("LOGNAME"))
            .unwrap_or_default();
        let actor = audit::Actor {
            who: format!("cli:{user}"),
            tenant: pulsewire_model::TenantId::new(&record.tenant),
            from: None,
        };
        let scopes: Vec<&str> = record.scopes.iter().map(|s| s.as_str()).collect();
        let rec = audit::Record::new(
            event,
            audit::outcome::OK,
            &actor,
            serde_json::json!({
                "key": record.id,
                "name": record.name,
                "scopes": scopes,
                "keys_file": self.path().display().to_string(),
            }),
        );
        audit::append_record(&path, &rec, cfg.max_bytes, cfg.keep)
    }

    fn path(&self) -> PathBuf {
        let auth = pulsewire_server::AuthConfig {
            keys_file: self.keys_file.clone().unwrap_or_default(),
            ..Default::default()
        };
        auth::keys_path(&auth, &self.data_dir)
    }
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    #[command(flatten)]
    pub file: FileArgs,
    /// The tenant everything done with the key belongs to.
    #[arg(long)]
    pub tenant: String,
    /// Comma-separated scopes: ingest, publish, read, admin.
    #[arg(long)]
    pub scope: String,
    /// A name to recognise the key by in `keys list`.
    #[arg(long, default_value = "")]
    pub name: String,
}

#[derive(Args, Debug)]
pub struct RevokeArgs {
    #[command(flatten)]
    pub file: FileArgs,
    /// The key's id, as `keys list` shows it.
    pub id: String,
}

pub fn run(cmd: KeysCommand) -> anyhow::Result<()> {
    match cmd {
        KeysCommand::Create(args) => {
            let scopes = Scope::parse_list(&args.scope).map_err(|e| anyhow::anyhow!("--scope: {e}"))?;
            let path = args.file.path();
            let (record, key) = auth::create_key(&path, &args.name, &args.tenant, scopes)?;
            if let Err(e) = args.file.audit(pulsewire_server::audit::event::KEY_CREATED, &record) {
                eprintln!("warning: {e:#}");
            }
            println!("{key}");
            eprintln!(
                "created key {} for tenant {} ({}) in {}; it is shown only now",
                record.id,
                record.tenant,
                scope_list(&record.scopes),
                path.display()
            );
            Ok(())
        }
        KeysCommand::List(args) => {
            let path = args.path();
            let keys = auth::read_keys(&path)?;
            println!(
                "{:<14} {:<16} {:<16} {:<28} {:<22} revoked",
                "id", "name", "tenant", "scopes", "created"
            );
            for k in keys {
                println!(
                    "{:<14} {:<16} {:<16} {:<28} {:<22} {}",
                    k.id,
                    k.name,
                    k.tenant,
                    scope_list(&k.scopes),
                    k.created_at,
                    if k.revoked { "yes" } else { "no" }
                );
            }
            Ok(())
        }
        KeysCommand::Revoke(args) => {
            let path = args.file.path();
            if !auth::revoke_key(&path, &args.id).with_context(|| format!("cannot revoke {}", args.id))? {
                anyhow::bail!("no key with id {} in {}", args.id, path.display());
            }
            let revoked = auth::read_keys(&path)?.into_iter().find(|k| k.id == args.id);
            if let Some(record) = revoked
                && let Err(e) = args.file.audit(pulsewire_server::audit::event::KEY_REVOKED, &record)
            {
                eprintln!("warning: {e:#}");
            }
            eprintln!("revoked key {}", args.id);
            Ok(())
        }
    }
}

fn scope_list(scopes: &[Scope]) -> String {
    scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(",")
}
