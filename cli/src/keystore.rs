//! The data directory: our lasting keys, created on first run. Directories are 0700 and
//! key files 0600; keys that exist are never overwritten.

use std::io::Write;
use std::path::{Path, PathBuf};

use p2pchat_core::identity::{OnionIdentity, RsaIdentity};

/// A problem with the data directory or a key file in it.
#[derive(Debug, thiserror::Error)]
pub enum KeystoreError {
    /// A file or directory could not be read or written.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// Where.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A key file is not a key.
    #[error("{path} is not a valid {kind}: {why}. Move it away to create a new identity")]
    Invalid {
        /// Which file.
        path: PathBuf,
        /// Which kind of key.
        kind: &'static str,
        /// Why.
        why: String,
    },
    /// The OS random number generator failed.
    #[error("{0}")]
    Rng(String),
}

/// File names inside the data directory (or a sub-directory of it).
pub const RSA_FILE: &str = "rsa_identity.pem";
/// Tor's own format, so the key can also serve a HiddenServiceDir.
pub const ONION_FILE: &str = "hs_ed25519_secret_key";

/// The lasting keys of a peer (or of a registry server).
pub struct Keys {
    /// The RSA identity.
    pub rsa: RsaIdentity,
    /// The onion service key.
    pub onion: OnionIdentity,
    /// Whether they were created just now.
    pub created: bool,
}

/// Creates `dir` (and parents) with mode 0700.
pub fn ensure_private_dir(dir: &Path) -> Result<(), KeystoreError> {
    let io = |source| KeystoreError::Io {
        what: "cannot create the directory",
        path: dir.to_owned(),
        source,
    };
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(io)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
    }
    Ok(())
}

/// Writes `bytes` to a new file `path` with mode 0600 (fails if it exists).
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), KeystoreError> {
    let io = |source| KeystoreError::Io {
        what: "cannot write the key file",
        path: path.to_owned(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)
}

fn read(path: &Path) -> Result<Option<Vec<u8>>, KeystoreError> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(KeystoreError::Io {
            what: "cannot read the key file",
            path: path.to_owned(),
            source,
        }),
    }
}

/// Loads the keys in `dir`, creating any that are missing. RSA key generation takes a
/// noticeable moment: call this off the async threads.
pub fn load_or_create(dir: &Path, rsa_bits: usize) -> Result<Keys, KeystoreError> {
    ensure_private_dir(dir)?;
    let mut rng =
        p2pchat_async_std::rng::os_rng().map_err(|e| KeystoreError::Rng(e.to_string()))?;
    let mut created = false;
    let rsa_path = dir.join(RSA_FILE);
    let rsa = match read(&rsa_path)? {
        Some(bytes) => {
            let text = String::from_utf8(bytes).map_err(|_| KeystoreError::Invalid {
                path: rsa_path.clone(),
                kind: "PKCS#8 PEM RSA key",
                why: "not text".into(),
            })?;
            RsaIdentity::from_pkcs8_pem(&text).map_err(|e| KeystoreError::Invalid {
                path: rsa_path.clone(),
                kind: "PKCS#8 PEM RSA key",
                why: e.to_string(),
            })?
        }
        None => {
            let key =
                RsaIdentity::generate(&mut rng, rsa_bits).map_err(|e| KeystoreError::Invalid {
                    path: rsa_path.clone(),
                    kind: "new RSA key",
                    why: e.to_string(),
                })?;
            let pem = key.to_pkcs8_pem().map_err(|e| KeystoreError::Invalid {
                path: rsa_path.clone(),
                kind: "new RSA key",
                why: e.to_string(),
            })?;
            write_private(&rsa_path, pem.as_bytes())?;
            created = true;
            key
        }
    };
    let onion = load_or_create_onion(dir, &mut rng, &mut created)?;
    Ok(Keys {
        rsa,
        onion,
        created,
    })
}

/// New keys, kept nowhere yet (the profile seals them into its store).
pub fn generate(rsa_bits: usize) -> Result<Keys, KeystoreError> {
    let mut rng =
        p2pchat_async_std::rng::os_rng().map_err(|e| KeystoreError::Rng(e.to_string()))?;
    let rsa =
        RsaIdentity::generate(&mut rng, rsa_bits).map_err(|e| KeystoreError::Rng(e.to_string()))?;
    let onion = OnionIdentity::generate(&mut rng);
    Ok(Keys {
        rsa,
        onion,
        created: true,
    })
}

/// Loads (or creates) only an onion key in `dir`: the registry server needs no RSA key.
pub fn load_or_create_onion_only(dir: &Path) -> Result<(OnionIdentity, bool), KeystoreError> {
    ensure_private_dir(dir)?;
    let mut rng =
        p2pchat_async_std::rng::os_rng().map_err(|e| KeystoreError::Rng(e.to_string()))?;
    let mut created = false;
    let onion = load_or_create_onion(dir, &mut rng, &mut created)?;
    Ok((onion, created))
}

fn load_or_create_onion(
    dir: &Path,
    rng: &mut rand_chacha::ChaCha20Rng,
    created: &mut bool,
) -> Result<OnionIdentity, KeystoreError> {
    let onion_path = dir.join(ONION_FILE);
    match read(&onion_path)? {
        Some(bytes) => {
            OnionIdentity::from_tor_secret_key_file(&bytes).map_err(|e| KeystoreError::Invalid {
                path: onion_path,
                kind: "Tor hs_ed25519_secret_key file",
                why: e.to_string(),
            })
        }
        None => {
            let key = OnionIdentity::generate(rng);
            write_private(&onion_path, &key.to_tor_secret_key_file())?;
            *created = true;
            Ok(key)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_created_once_private_and_then_reloaded() {
        let dir = std::env::temp_dir().join(format!("p2pchat-keystore-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (first, created) = load_or_create_onion_only(&dir).unwrap();
        assert!(created);
        let (again, created) = load_or_create_onion_only(&dir).unwrap();
        assert!(!created);
        assert_eq!(first.address(), again.address());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&dir), 0o700);
            assert_eq!(mode(&dir.join(ONION_FILE)), 0o600);
        }
        std::fs::write(dir.join(ONION_FILE).with_extension("x"), b"").unwrap();
        std::fs::remove_file(dir.join(ONION_FILE)).unwrap();
        std::fs::write(dir.join(ONION_FILE), b"garbage").unwrap();
        assert!(matches!(
            load_or_create_onion_only(&dir),
            Err(KeystoreError::Invalid { .. })
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
