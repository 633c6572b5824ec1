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
    /// Replace your RSA key with a new one (for a key that may have leaked). Your onion
    /// address stays; the registry gives your nick to the new key and refuses the old one.
    /// Contacts see a key-change warning until they check your new fingerprint.
    #[arg(long)]
    new_key: bool,
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
    let mut keys = crate::profile::open_or_create(&data_dir, &args.passphrase, false, options)?;
    if keys.created {
        eprintln!("p2pchat: created a new identity in {}", data_dir.display());
    }
    if args.new_key {
        let old = keys.rsa.public().fingerprint();
        keys.new_rsa_key()?;
        eprintln!(
            "p2pchat: replaced your RSA key (old fingerprint {old}). Your contacts will see a key-change warning: give them your new fingerprint so they can /verify it."
        );
    }
    let nick = args.nick.or(file.nick);
    println!(
        "nick:        {}",
        nick.as_deref()
            .unwrap_or("(not set: `nick` in the configuration, or --nick)")
    );
    println!("onion:       {}", keys.onion.address().hostname());
    println!("fingerprint: {}", keys.rsa.public().fingerprint());
    println!("key serial:  {}", keys.serial);
    println!("data dir:    {}", data_dir.display());
    Ok(())
}
