//! `p2pchat id`: who you are.

use std::path::PathBuf;

use clap::Args;

use crate::commands::chat::load_config;
use crate::errors::CliError;

/// Options of `p2pchat id`.
#[derive(Debug, Args)]
pub struct IdArgs {
    /// Your nickname (config: nick).
    #[arg(long)]
    nick: Option<String>,
    /// Where the store's passphrase comes from.
    #[command(flatten)]
    passphrase: crate::profile::PassphraseArgs,
}

/// Prints nick, onion address and RSA key fingerprint (creating the keys on first run).
pub fn run(
    args: IdArgs,
    config: Option<PathBuf>,
    data_dir: Option<PathBuf>,
) -> Result<(), CliError> {
    let (file, _) = load_config(config)?;
    let data_dir = crate::paths::data_dir(data_dir)?;
    let options = p2pchat_async_std::store::OpenOptions {
        history: file.history.unwrap_or(true),
    };
    let keys = crate::profile::open_or_create(&data_dir, &args.passphrase, false, options)?;
    if keys.created {
        eprintln!("p2pchat: created a new identity in {}", data_dir.display());
    }
    let nick = args.nick.or(file.nick);
    println!(
        "nick:        {}",
        nick.as_deref()
            .unwrap_or("(not set: `nick` in the configuration, or --nick)")
    );
    println!("onion:       {}", keys.onion.address().hostname());
    println!("fingerprint: {}", keys.rsa.public().fingerprint());
    println!("data dir:    {}", data_dir.display());
    Ok(())
}
