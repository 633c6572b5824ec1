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
    /// A key file that other users can read or write: whoever did may hold the key.
    #[error(
        "{path} can be read or written by other users (mode {mode:o}): anyone who read it \
         can impersonate this identity. If you are sure nobody did, `chmod 600 {path}`; \
         otherwise move it away to create a new identity"
    )]
    Exposed {
        /// Which file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
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

/// Writes `bytes` to a new file `path` with mode 0600, atomically: a temporary file is
/// written and synced, then linked to `path` (which fails if `path` exists: a key is
/// never overwritten), and the directory is synced. A crash leaves either no key file or
/// a whole one, never a torn key.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), KeystoreError> {
    let io = |source| KeystoreError::Io {
        what: "cannot write the key file",
        path: path.to_owned(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let temp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let written = options.open(&temp).and_then(|mut file| {
        file.write_all(bytes)?;
        file.sync_all()
    });
    let linked = written.and_then(|()| std::fs::hard_link(&temp, path));
    let _ = std::fs::remove_file(&temp);
    linked.map_err(io)?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io)
}

/// Reads the key file `path`, if it exists; refuses one that others can read or write.
fn read(path: &Path) -> Result<Option<Vec<u8>>, KeystoreError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(KeystoreError::Io {
                what: "cannot read the key file",
                path: path.to_owned(),
                source,
            });
        }
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map_err(|source| KeystoreError::Io {
                what: "cannot read the key file",
                path: path.to_owned(),
                source,
            })?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(KeystoreError::Exposed {
                path: path.to_owned(),
                mode: mode & 0o777,
            });
        }
    }
    Ok(Some(bytes))
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
    rng: &mut p2pchat_core::rng::ForwardSecureRng,
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
        // Written atomically: nothing but the key is left in the directory.
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from(ONION_FILE)]);
        // Never overwritten.
        assert!(write_private(&dir.join(ONION_FILE), b"other").is_err());
        assert_eq!(
            load_or_create_onion_only(&dir).unwrap().0.address(),
            first.address()
        );
        std::fs::remove_file(dir.join(ONION_FILE)).unwrap();
        write_private(&dir.join(ONION_FILE), b"garbage").unwrap();
        assert!(matches!(
            load_or_create_onion_only(&dir),
            Err(KeystoreError::Invalid { .. })
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[cfg(unix)]
    #[test]
    fn a_key_file_others_can_read_or_write_is_refused_with_what_to_do() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("p2pchat-exposed-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        load_or_create_onion_only(&dir).unwrap();
        let path = dir.join(ONION_FILE);
        for mode in [0o644, 0o620, 0o604, 0o640] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let e = load_or_create_onion_only(&dir).unwrap_err();
            assert!(matches!(e, KeystoreError::Exposed { .. }), "{e}");
            let text = e.to_string();
            assert!(
                text.contains("other users") && text.contains("chmod 600"),
                "{text}"
            );
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(load_or_create_onion_only(&dir).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
