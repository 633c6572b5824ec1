//! `p2pchat init`: write a commented default configuration.

use std::path::PathBuf;

use clap::Args;

use crate::config::{ConfigError, DEFAULT_CONFIG};
use crate::errors::CliError;

/// Options of `p2pchat init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Overwrite an existing file.
    #[arg(long)]
    force: bool,
}

/// Writes the default configuration file.
pub fn run(args: InitArgs, config: Option<PathBuf>) -> Result<(), CliError> {
    let path = crate::paths::config_file(config)?;
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
