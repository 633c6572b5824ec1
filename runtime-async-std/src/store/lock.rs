//! One process per store. Two processes on one store would each number their messages
//! from the same counter and acknowledge what the other stored (false receipts), and a
//! passphrase change under a running chat would leave the store unopenable. So a store is
//! opened only under an exclusive lock on a file beside it (`<store>.lock`), held for as
//! long as the store is open, with the holder's process id written in it for the message
//! the next process reads.
//!
//! The lock is `flock(2)`: the kernel releases it when the process ends, however it ends
//! (kill -9 included), so a crash never leaves a stale lock behind.

use std::fs::File;
use std::path::{Path, PathBuf};

use super::StoreError;

/// An exclusive lock on a store, released when dropped (or when the process ends).
#[derive(Debug)]
pub struct StoreLock {
    _file: File,
}

impl StoreLock {
    /// Takes the lock of the store at `store` without waiting: if another process holds
    /// it, [`StoreError::Locked`] names that process.
    pub fn acquire(store: &Path) -> Result<Self, StoreError> {
        let path = lock_path(store);
        let io = |source| StoreError::Io {
            path: path.clone(),
            source,
        };
        let mut options = std::fs::OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&path).map_err(io)?;
        #[cfg(unix)]
        {
            use rustix::fs::{FlockOperation, flock};
            use std::io::{Read, Seek, Write};
            if let Err(e) = flock(&file, FlockOperation::NonBlockingLockExclusive) {
                if e != rustix::io::Errno::WOULDBLOCK {
                    return Err(io(e.into()));
                }
                // A process id is a few digits: read no more than that.
                let mut text = String::new();
                let _ = (&mut file).take(32).read_to_string(&mut text);
                return Err(StoreError::Locked {
                    path: store.to_owned(),
                    pid: text.trim().parse().ok(),
                });
            }
            // Ours now: say who holds it.
            file.set_len(0).map_err(io)?;
            file.rewind().map_err(io)?;
            write!(file, "{}", std::process::id()).map_err(io)?;
        }
        Ok(Self { _file: file })
    }
}

/// The lock file of the store at `store`.
pub fn lock_path(store: &Path) -> PathBuf {
    let mut name = store.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_process_id_until_it_lets_go() {
        let d = std::env::temp_dir().join(format!("p2pchat-lock-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        let store = d.join("p2pchat.db");
        let first = StoreLock::acquire(&store).unwrap();
        match StoreLock::acquire(&store) {
            Err(StoreError::Locked { pid, .. }) => assert_eq!(pid, Some(std::process::id())),
            other => panic!("{other:?}"),
        }
        drop(first);
        assert!(StoreLock::acquire(&store).is_ok());
        let _ = std::fs::remove_dir_all(d);
    }
}
