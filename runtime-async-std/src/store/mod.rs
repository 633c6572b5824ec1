//! Where a peer keeps what must last. The peer loop hands every [`StoreOp`] of a drain to
//! [`PeerStore::apply`] before it carries out any later output: stored before sent, stored
//! before acknowledged.

mod history;
mod lock;
mod registry;
mod schema_v1;
mod schema_v2;
mod schema_v3;
mod sqlite;
pub mod vault;

use std::path::{Path, PathBuf};

use p2pchat_core::nick::Nick;
use p2pchat_core::peer::{Outcome, PeerState, StoreOp, WallTime};

pub use lock::{StoreLock, lock_path};
pub use registry::{REGISTRY_STORE_FILE, RegistryStore};
pub use sqlite::{OpenOptions, STORE_FILE, SqliteStore};

impl StoreError {
    /// The same error, naming `path` as the store (for an error found on a copy of it).
    pub fn at(self, path: &Path) -> Self {
        let path = path.to_owned();
        match self {
            Self::WrongPassphrase { .. } => Self::WrongPassphrase { path },
            Self::PassphraseNeeded { .. } => Self::PassphraseNeeded { path },
            Self::Corrupt { why, .. } => Self::Corrupt { path, why },
            Self::NewerSchema {
                found, supported, ..
            } => Self::NewerSchema {
                path,
                found,
                supported,
            },
            Self::Sqlite { source, .. } => Self::Sqlite { path, source },
            Self::Io { source, .. } => Self::Io { path, source },
            Self::Locked { pid, .. } => Self::Locked { path, pid },
            Self::Crypto(why) => Self::Crypto(why),
        }
    }
}

/// Applies a peer's durable changes, and reads back history.
pub trait PeerStore: Send + 'static {
    /// Applies `ops` durably and in order, all or none.
    fn apply(&mut self, ops: &[StoreOp]) -> Result<(), StoreError>;

    /// The last `limit` messages with `nick`, oldest first; a row that cannot be read is
    /// [`HistoryItem::Damaged`] in its place, so the rest is still shown.
    fn history(&self, nick: &Nick, limit: usize) -> Result<Vec<HistoryItem>, StoreError>;

    /// After [`PeerStore::apply`] failed: whether the store takes writes again, and if it
    /// does, what it holds (the failed operations are not in it: all or none).
    fn recover(&mut self) -> Result<PeerState, StoreError>;
}

/// One row of a conversation's history, as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HistoryItem {
    /// A message.
    Entry(HistoryEntry),
    /// A row whose sealed content does not open (damaged): only what is stored in the
    /// clear beside it is known.
    Damaged {
        /// Whether we wrote it.
        outgoing: bool,
        /// The sender's id for it.
        id: u64,
    },
    /// `count` messages that were stored here are gone from the store (rows deleted, or
    /// damaged beyond finding): the history around them is not whole.
    Missing {
        /// How many positions have no row.
        count: u64,
    },
    /// The record of how many messages this history holds is damaged: later messages may
    /// be missing without a mark (always the last item when present).
    EndUnknown,
}

impl HistoryItem {
    /// The message, unless the row is damaged or missing.
    pub fn entry(&self) -> Option<&HistoryEntry> {
        match self {
            Self::Entry(e) => Some(e),
            Self::Damaged { .. } | Self::Missing { .. } | Self::EndUnknown => None,
        }
    }
}

/// One message in a conversation's history.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HistoryEntry {
    /// The contact.
    pub nick: Nick,
    /// Whether we wrote it.
    pub outgoing: bool,
    /// The sender's id for it.
    pub id: u64,
    /// The text.
    pub text: String,
    /// When it was written (outgoing) or arrived (incoming).
    pub at: WallTime,
    /// Outgoing only: its outcome, `None` while it waits.
    pub outcome: Option<Outcome>,
}

/// Why the store cannot be used. Each says what to do; none changes the files.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The passphrase does not open the store.
    #[error("the passphrase does not open {path}; try again (nothing was changed)")]
    WrongPassphrase {
        /// The store.
        path: PathBuf,
    },
    /// The store is encrypted and no passphrase was given.
    #[error(
        "{path} is encrypted: give its passphrase (at the prompt, in P2PCHAT_PASSPHRASE, or with --passphrase-file)"
    )]
    PassphraseNeeded {
        /// The store.
        path: PathBuf,
    },
    /// The file is damaged (truncated, overwritten, or changed by hand).
    #[error(
        "{path} is damaged ({}); nothing was changed. Restore it from a backup, or move it away to start with an empty store",
        one_line(why)
    )]
    Corrupt {
        /// The store.
        path: PathBuf,
        /// What was found.
        why: String,
    },
    /// Written by a newer p2pchat.
    #[error(
        "{path} was written by a newer p2pchat (schema {found}; this one reads up to {supported}); upgrade p2pchat (nothing was changed)"
    )]
    NewerSchema {
        /// The store.
        path: PathBuf,
        /// Its schema version.
        found: i64,
        /// Ours.
        supported: i64,
    },
    /// The database could not be read or written.
    #[error("cannot use {path}: {}", one_line(&source.to_string()))]
    Sqlite {
        /// The store.
        path: PathBuf,
        /// What SQLite said.
        source: rusqlite::Error,
    },
    /// The file could not be created.
    #[error("cannot create {path}: {source}")]
    Io {
        /// The store.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A cryptographic operation failed.
    #[error("{0}")]
    Crypto(String),
    /// Another process has the store open.
    #[error(
        "{path} is in use by another p2pchat{}; stop it first (two processes on one store would each count messages and receipts of their own). Nothing was changed",
        match pid { Some(pid) => format!(" (process {pid})"), None => String::new() }
    )]
    Locked {
        /// The store.
        path: PathBuf,
        /// The process that holds it, as it wrote in the lock file.
        pid: Option<u32>,
    },
}

/// SQLite's text on one line: some of its messages quote the schema or list problems a
/// line each, which a person reads as a sentence here (the rest is for sqlite3).
pub(crate) fn one_line(text: &str) -> String {
    let mut lines = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("***"));
    let first = lines.next().unwrap_or_default();
    if lines.next().is_some() {
        format!("{first} …")
    } else {
        first.to_owned()
    }
}
