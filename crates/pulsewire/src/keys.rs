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
}

impl FileArgs {
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
            eprintln!("revoked key {}", args.id);
            Ok(())
        }
    }
}

fn scope_list(scopes: &[Scope]) -> String {
    scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(",")
}
