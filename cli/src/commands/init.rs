//! `p2pchat init`: write a commented default configuration.

use std::path::PathBuf;

use clap::Args;

use crate::config::{ConfigError, DEFAULT_CONFIG};
use crate::errors::CliError;

/// Options of `p2pchat init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Overwrite an existing configuration file.
    #[arg(long)]
    force: bool,
    /// Create your store unencrypted (every start will warn about it). Without this flag
    /// the store is created, encrypted, by the first `p2pchat chat`.
    #[arg(long)]
    no_passphrase: bool,
}

/// Writes the default configuration file.
pub fn run(
    args: InitArgs,
    config: Option<PathBuf>,
    data_dir: Option<PathBuf>,
) -> Result<(), CliError> {
    if args.no_passphrase {
        let data_dir = crate::paths::data_dir(data_dir)?;
        if crate::profile::store_path(&data_dir).exists() {
            return Err(CliError::Usage(format!(
                "a store exists already in {}; `p2pchat passphrase --remove` stores it unencrypted",
                data_dir.display()
            )));
        }
        let options = p2pchat_async_std::store::OpenOptions { history: true };
        let profile = crate::profile::open_or_create(
            &data_dir,
            &crate::profile::PassphraseArgs::default(),
            true,
            options,
        )?;
        println!(
            "created an unencrypted store in {} (identity {})",
            data_dir.display(),
            profile.rsa.public().fingerprint()
        );
    }
    let path = crate::paths::config_file(config)?;
    if path.exists() && args.no_passphrase {
        return Ok(());
    }
    if path.exists() && !args.force {
        return Err(CliError::Usage(format!(
            "{} exists already; edit it, or pass --force to replace it",
            path.display()
        )));
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| ConfigError::Write {
            path: dir.to_owned(),
            source,
        })?;
    }
    std::fs::write(&path, DEFAULT_CONFIG).map_err(|source| ConfigError::Write {
        path: path.clone(),
        source,
    })?;
    println!("wrote {}", path.display());
    println!("set `nick` and `[server] address` in it, then run `p2pchat chat`");
    Ok(())
}
