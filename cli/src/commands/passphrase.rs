//! `p2pchat passphrase`: change the store's passphrase (or encrypt an unencrypted store),
//! atomically: every field is re-sealed in one transaction.

use std::path::PathBuf;

use clap::Args;
use p2pchat_async_std::store::OpenOptions;

use crate::errors::CliError;
use crate::profile::PassphraseArgs;

/// Options of `p2pchat passphrase`.
#[derive(Debug, Args)]
pub struct PassphraseCommandArgs {
    /// The current passphrase comes from here (or P2PCHAT_PASSPHRASE, or the prompt).
    #[command(flatten)]
    current: PassphraseArgs,
    /// Read the new passphrase from this file (first line) instead of asking;
    /// P2PCHAT_NEW_PASSPHRASE works too.
    #[arg(long, value_name = "FILE")]
    new_passphrase_file: Option<PathBuf>,
    /// Store unencrypted from now on (not recommended).
    #[arg(long, conflicts_with = "new_passphrase_file")]
    remove: bool,
}

/// The environment variable with the new passphrase, for scripts and tests.
pub const NEW_PASSPHRASE_ENV: &str = "P2PCHAT_NEW_PASSPHRASE";

/// Runs `p2pchat passphrase`.
pub fn run(args: PassphraseCommandArgs, data_dir: Option<PathBuf>) -> Result<(), CliError> {
    let data_dir = crate::paths::data_dir(data_dir)?;
    let path = crate::profile::store_path(&data_dir);
    if !path.exists() {
        return Err(CliError::Usage(format!(
            "there is no store at {} yet; `p2pchat chat` creates it",
            path.display()
        )));
    }
    // History is not touched by re-sealing, whatever the configuration says.
    let options = OpenOptions { history: true };
    let mut store = crate::profile::open_store(&data_dir, &args.current, options)?;
    if args.remove {
        store.change_passphrase(None)?;
        println!(
            "{} is no longer encrypted: anyone who can read it reads your contacts and messages",
            path.display()
        );
        return Ok(());
    }
    let new = crate::profile::new_passphrase_from(
        args.new_passphrase_file.as_deref(),
        NEW_PASSPHRASE_ENV,
    )?;
    store.change_passphrase(Some(new.as_bytes()))?;
    println!("the passphrase of {} is changed", path.display());
    Ok(())
}
