//! The user's profile: the store in the data directory (contacts, outbox, history) and the
//! identity keys sealed inside it, under one passphrase.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use clap::Args;
use p2pchat_async_std::store::{OpenOptions, STORE_FILE, SqliteStore, StoreError};
use p2pchat_core::identity::{OnionIdentity, RsaIdentity};
use zeroize::Zeroizing;

use crate::errors::CliError;
use crate::keystore::{KeystoreError, ONION_FILE, RSA_FILE};

/// Where the passphrase comes from.
#[derive(Debug, Clone, Default, Args)]
pub struct PassphraseArgs {
    /// Read the store's passphrase from this file (first line) instead of asking;
    /// P2PCHAT_PASSPHRASE works too.
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
}

/// The environment variable that holds the passphrase, for scripts and tests.
pub const PASSPHRASE_ENV: &str = "P2PCHAT_PASSPHRASE";

/// Names of the sealed identity keys in the store.
const RSA_SECRET: &str = "rsa_identity_pem";
const ONION_SECRET: &str = "onion_secret_key";
/// The serial of the certificate for the RSA key (8 bytes, big-endian); absent means 0.
const SERIAL_SECRET: &str = "certificate_serial";

/// An opened profile.
pub struct Profile {
    /// The store.
    pub store: SqliteStore,
    /// The RSA identity.
    pub rsa: RsaIdentity,
    /// The onion service key.
    pub onion: OnionIdentity,
    /// The serial of the onion key's certificate for `rsa`: one more for each new RSA key.
    pub serial: u64,
    /// Whether the identity was created just now.
    pub created: bool,
}

/// The passphrase given without asking: `--passphrase-file`, then P2PCHAT_PASSPHRASE.
fn given_passphrase(args: &PassphraseArgs) -> Result<Option<Zeroizing<String>>, CliError> {
    given(args.passphrase_file.as_deref(), PASSPHRASE_ENV)
}

/// A passphrase from `file` (its first line), or else from the variable `env`.
fn given(file: Option<&Path>, env: &str) -> Result<Option<Zeroizing<String>>, CliError> {
    if let Some(path) = file {
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
            CliError::Usage(format!(
                "cannot read the passphrase file {}: {e}",
                path.display()
            ))
        })?);
        let line = text.lines().next().unwrap_or("");
        return Ok(Some(Zeroizing::new(line.to_owned())));
    }
    Ok(std::env::var(env).ok().map(Zeroizing::new))
}

/// Asks on the terminal, without echo; `None` when there is no terminal to ask on.
fn prompt(question: &str) -> Result<Option<Zeroizing<String>>, CliError> {
    if !std::io::stdin().is_terminal() {
        return Ok(None);
    }
    rpassword::prompt_password(question)
        .map(|p| Some(Zeroizing::new(p)))
        .map_err(|e| CliError::Usage(format!("cannot read the passphrase: {e}")))
}

/// A new passphrase: given, or asked twice.
pub fn new_passphrase(args: &PassphraseArgs) -> Result<Zeroizing<String>, CliError> {
    new_passphrase_from(args.passphrase_file.as_deref(), PASSPHRASE_ENV)
}

/// A new passphrase from `file`, else the variable `env`, else asked twice.
pub fn new_passphrase_from(file: Option<&Path>, env: &str) -> Result<Zeroizing<String>, CliError> {
    if let Some(p) = given(file, env)? {
        return check_new(p);
    }
    let Some(first) = prompt("new passphrase for your p2pchat store: ")? else {
        return Err(CliError::Usage(format!(
            "a passphrase is needed to encrypt your store: run on a terminal, or set {PASSPHRASE_ENV}, or use --passphrase-file (or `p2pchat init --no-passphrase` for an unencrypted store)"
        )));
    };
    let again = prompt("the same passphrase again: ")?.unwrap_or_default();
    if *first != *again {
        return Err(CliError::Usage(
            "the two passphrases differ; nothing was changed".into(),
        ));
    }
    check_new(first)
}

fn check_new(p: Zeroizing<String>) -> Result<Zeroizing<String>, CliError> {
    if p.is_empty() {
        return Err(CliError::Usage(
            "an empty passphrase protects nothing; choose one (or `p2pchat init --no-passphrase`)"
                .into(),
        ));
    }
    Ok(p)
}

/// The store's path in `data_dir`.
pub fn store_path(data_dir: &Path) -> PathBuf {
    data_dir.join(STORE_FILE)
}

/// Opens an existing store, asking for the passphrase if none was given and it needs one.
pub fn open_store(
    data_dir: &Path,
    args: &PassphraseArgs,
    options: OpenOptions,
) -> Result<SqliteStore, CliError> {
    let path = store_path(data_dir);
    let given = given_passphrase(args)?;
    match SqliteStore::open(&path, given.as_ref().map(|p| p.as_bytes()), options) {
        Err(StoreError::PassphraseNeeded { .. }) if given.is_none() => {
            let Some(p) = prompt("passphrase for your p2pchat store: ")? else {
                return Err(StoreError::PassphraseNeeded { path }.into());
            };
            Ok(SqliteStore::open(&path, Some(p.as_bytes()), options)?)
        }
        other => Ok(other?),
    }
}

/// Opens the profile in `data_dir`, creating it on first use: a new store (encrypted
/// unless `plain`), and identity keys — taken over from the key files an earlier version
/// wrote (which are then removed), or generated.
pub fn open_or_create(
    data_dir: &Path,
    args: &PassphraseArgs,
    plain: bool,
    options: OpenOptions,
) -> Result<Profile, CliError> {
    crate::keystore::ensure_private_dir(data_dir)?;
    let path = store_path(data_dir);
    let mut store = if path.exists() {
        open_store(data_dir, args, options)?
    } else if plain {
        SqliteStore::create(&path, None, options)?
    } else {
        let passphrase = new_passphrase(args)?;
        SqliteStore::create(&path, Some(passphrase.as_bytes()), options)?
    };
    let (rsa, onion, created) = load_or_create_keys(&mut store, &data_dir.join("identity"))?;
    let serial = load_serial(&store)?;
    if !store.is_encrypted() {
        eprintln!(
            "p2pchat: warning: {} is not encrypted (created with --no-passphrase): anyone who can read it reads your contacts and messages. `p2pchat passphrase` encrypts it",
            path.display()
        );
    }
    Ok(Profile {
        store,
        rsa,
        onion,
        serial,
        created,
    })
}

impl Profile {
    /// Replaces the RSA key with a new one, certified by the same onion key under the next
    /// serial: the registry then gives the nick to the new key and refuses the old
    /// certificate. The key and its serial are stored together (one transaction).
    pub fn new_rsa_key(&mut self) -> Result<(), CliError> {
        let rsa = crate::keystore::generate(2048)?.rsa;
        let serial = self.serial.checked_add(1).ok_or_else(|| {
            CliError::Usage("this identity has used every certificate serial".into())
        })?;
        let pem = rsa.to_pkcs8_pem().map_err(|e| KeystoreError::Invalid {
            path: self.store.path().to_owned(),
            kind: "RSA key",
            why: e.to_string(),
        })?;
        self.store.put_secrets(&[
            (RSA_SECRET, pem.as_bytes()),
            (SERIAL_SECRET, &serial.to_be_bytes()),
        ])?;
        self.rsa = rsa;
        self.serial = serial;
        Ok(())
    }
}

fn load_serial(store: &SqliteStore) -> Result<u64, CliError> {
    let Some(bytes) = store.secret(SERIAL_SECRET)? else {
        return Ok(0);
    };
    let bytes: [u8; 8] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| KeystoreError::Invalid {
            path: store.path().to_owned(),
            kind: "certificate serial",
            why: format!("{} bytes, not 8", bytes.len()),
        })?;
    Ok(u64::from_be_bytes(bytes))
}

fn load_or_create_keys(
    store: &mut SqliteStore,
    old_dir: &Path,
) -> Result<(RsaIdentity, OnionIdentity, bool), CliError> {
    let invalid = |kind: &'static str, why: String| KeystoreError::Invalid {
        path: store.path().to_owned(),
        kind,
        why,
    };
    if let (Some(pem), Some(onion)) = (store.secret(RSA_SECRET)?, store.secret(ONION_SECRET)?) {
        let pem = std::str::from_utf8(&pem).map_err(|_| invalid("RSA key", "not text".into()))?;
        let rsa =
            RsaIdentity::from_pkcs8_pem(pem).map_err(|e| invalid("RSA key", e.to_string()))?;
        let onion = OnionIdentity::from_tor_secret_key_file(&onion)
            .map_err(|e| invalid("onion key", e.to_string()))?;
        return Ok((rsa, onion, false));
    }
    // First start with this store: take over the key files of an earlier version (keys
    // only, in clear), or make new keys.
    let had_files = old_dir.join(RSA_FILE).exists() || old_dir.join(ONION_FILE).exists();
    let keys = if had_files {
        crate::keystore::load_or_create(old_dir, 2048)?
    } else {
        crate::keystore::generate(2048)?
    };
    let pem = keys
        .rsa
        .to_pkcs8_pem()
        .map_err(|e| invalid("RSA key", e.to_string()))?;
    store.put_secret(RSA_SECRET, pem.as_bytes())?;
    store.put_secret(ONION_SECRET, &keys.onion.to_tor_secret_key_file())?;
    if had_files {
        // The keys are in the store now (sealed, and on disk: put_secret commits with
        // synchronous=FULL); the copies in clear go.
        for file in [RSA_FILE, ONION_FILE] {
            let _ = std::fs::remove_file(old_dir.join(file));
        }
        let _ = std::fs::remove_dir(old_dir);
        eprintln!(
            "p2pchat: moved your identity keys into {}",
            store.path().display()
        );
    }
    Ok((keys.rsa, keys.onion, keys.created))
}
