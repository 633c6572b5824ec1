//! The peer's store: one SQLite database (rusqlite, bundled) in the data directory.
//!
//! Contacts and the outbox are loaded whole at start-up (they are bounded); history stays
//! on disk and is read a page at a time. Every field that names or quotes anybody is sealed
//! by the [`Vault`]; rows are found by keyed hashes. Transactions with `synchronous=FULL`
//! make each batch of [`StoreOp`]s durable before the peer loop goes on.

use std::path::{Path, PathBuf};

use p2pchat_core::nick::Nick;
use p2pchat_core::peer::{ContactRecord, PeerState, QueuedMessage, StoreOp};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use serde::de::DeserializeOwned;
use zeroize::Zeroizing;

use super::history;
use super::lock::StoreLock;
use super::schema_v1::ContactRecordV1;
use super::schema_v2::ContactRecordV2;
use super::schema_v3::{ContactRecordV3, QueuedMessageV3};
use super::vault::{KdfParams, Vault, open_with, random, seal_with};
use super::{HistoryEntry, HistoryItem, PeerStore, StoreError};

/// The database's file name inside the data directory.
pub const STORE_FILE: &str = "p2pchat.db";

/// The schema this code writes (SQLite's `user_version`): 2 since certificates carry
/// serials, 3 since a contact keeps its key conflict, 4 since messages carry nonces and
/// history rows their sealed position (with a sealed head per contact).
const SCHEMA_VERSION: i64 = 4;

/// Associated data of the wrapped data key.
const DATA_KEY_AAD: &[u8] = b"p2pchat data key v1";

/// How to open a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenOptions {
    /// Keep message history (`false`: only contacts, the outbox and de-duplication state).
    pub history: bool,
}

/// A peer's SQLite store.
pub struct SqliteStore {
    path: PathBuf,
    conn: Connection,
    vault: Vault,
    /// Contacts and outbox as stored: the same [`PeerState::apply`] the core uses.
    state: PeerState,
    options: OpenOptions,
    /// Held while the store is open (declared last: dropped after the connection).
    _lock: StoreLock,
}

impl core::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .field("encrypted", &self.vault.is_encrypted())
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Creates a new store at `path` (which must not exist), encrypted under `passphrase`,
    /// or unencrypted if it is `None`.
    pub fn create(
        path: &Path,
        passphrase: Option<&[u8]>,
        options: OpenOptions,
    ) -> Result<Self, StoreError> {
        let lock = StoreLock::acquire(path)?;
        create_private_file(path)?;
        let conn = connect(path)?;
        let sql = |source| StoreError::Sqlite {
            path: path.to_owned(),
            source,
        };
        conn.execute_batch(SCHEMA_TABLES).map_err(sql)?;
        conn.execute_batch(history::SCHEMA).map_err(sql)?;
        let vault = match passphrase {
            None => Vault::Plain,
            Some(passphrase) => {
                let data_key = Zeroizing::new(random::<32>()?);
                write_wrapped_key(&conn, path, passphrase, &data_key)?;
                Vault::sealed(data_key)
            }
        };
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(sql)?;
        Ok(Self {
            path: path.to_owned(),
            conn,
            vault,
            state: PeerState::default(),
            options,
            _lock: lock,
        })
    }

    /// Opens the store at `path`. Checks, before anything is written: the schema version,
    /// the passphrase, the database's integrity, and every stored contact and queued
    /// message.
    ///
    /// A store left with a rollback journal (`p2pchat.db-journal`, by a crash in the middle
    /// of a transaction) is changed by SQLite the moment it is read: the journal is played
    /// back into the database and deleted. So such a store is first opened as a copy, and
    /// only if the copy opens is the store itself: a journal that is damaged (or a wrong
    /// passphrase, a newer schema) leaves both files as they were.
    pub fn open(
        path: &Path,
        passphrase: Option<&[u8]>,
        options: OpenOptions,
    ) -> Result<Self, StoreError> {
        let lock = StoreLock::acquire(path)?;
        let scratch = scratch_dir(path);
        if has_hot_journal(path) {
            // What is wrong with the copy is said of the store (it is the store's content).
            let checked = copy_with_journal(path, &scratch).and_then(|copy| {
                StoreLock::acquire(&copy)
                    .and_then(|copy_lock| Self::open_locked(&copy, passphrase, options, copy_lock))
                    .map(drop)
                    .map_err(|e| e.at(path))
            });
            let _ = std::fs::remove_dir_all(&scratch);
            checked?;
        } else if scratch.exists() {
            // A copy left by a crash during an earlier check.
            let _ = std::fs::remove_dir_all(&scratch);
        }
        Self::open_locked(path, passphrase, options, lock)
    }

    /// [`SqliteStore::open`] once its lock is held.
    fn open_locked(
        path: &Path,
        passphrase: Option<&[u8]>,
        options: OpenOptions,
        lock: StoreLock,
    ) -> Result<Self, StoreError> {
        let conn = connect(path)?;
        let version = check_file(path, &conn)?;
        let vault = unlock(&conn, path, passphrase)?;
        Self::open_unlocked(path, conn, vault, version, options, lock)
    }

    /// The rest of [`SqliteStore::open`] once the file is checked and the vault opened:
    /// migration, then every contact and queued message read and checked.
    fn open_unlocked(
        path: &Path,
        conn: Connection,
        vault: Vault,
        version: i64,
        options: OpenOptions,
        lock: StoreLock,
    ) -> Result<Self, StoreError> {
        let mut store = Self {
            path: path.to_owned(),
            conn,
            vault,
            state: PeerState::default(),
            options,
            _lock: lock,
        };
        if version < SCHEMA_VERSION {
            store.migrate(version)?;
        }
        store.state = store.load_state()?;
        Ok(store)
    }

    /// Whether fields are encrypted.
    pub fn is_encrypted(&self) -> bool {
        self.vault.is_encrypted()
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Contacts and outbox, as the core restores them.
    pub fn state(&self) -> &PeerState {
        &self.state
    }

    /// The last `limit` messages with `nick`, oldest first, each position checked: a row
    /// that does not open, or is missing, is marked in its place.
    pub fn read_history(&self, nick: &Nick, limit: usize) -> Result<Vec<HistoryItem>, StoreError> {
        history::read(&self.conn, &self.vault, nick, limit).map_err(|e| with_path(e, &self.path))
    }

    /// Stores `bytes` (an identity key) under `name`, sealed like every other field.
    pub fn put_secret(&mut self, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
        self.put_secrets(&[(name, bytes)])
    }

    /// Stores several secrets in one transaction: all of them, or none.
    pub fn put_secrets(&mut self, secrets: &[(&str, &[u8])]) -> Result<(), StoreError> {
        let tx = self.conn.unchecked_transaction().map_err(|e| self.sql(e))?;
        for (name, bytes) in secrets {
            let sealed = self.vault.seal(&secret_aad(name), bytes)?;
            tx.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
                params![format!("secret:{name}"), sealed],
            )
            .map_err(|e| self.sql(e))?;
        }
        tx.commit().map_err(|e| self.sql(e))
    }

    /// What [`SqliteStore::put_secret`] stored under `name`.
    pub fn secret(&self, name: &str) -> Result<Option<Zeroizing<Vec<u8>>>, StoreError> {
        let sealed: Option<Vec<u8>> = self
            .conn
            .query_row(
                "SELECT value FROM meta WHERE key = ?1",
                params![format!("secret:{name}")],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.read_err(e))?;
        match sealed {
            None => Ok(None),
            Some(sealed) => self
                .vault
                .open(&secret_aad(name), &sealed)
                .map(Some)
                .ok_or_else(|| self.corrupt(format!("the sealed {name} does not open"))),
        }
    }

    /// Changes the passphrase (`None`: store unencrypted from now on). Everything is
    /// re-sealed in one transaction: a crash leaves the old passphrase working.
    pub fn change_passphrase(&mut self, passphrase: Option<&[u8]>) -> Result<(), StoreError> {
        let new_vault = match passphrase {
            None => Vault::Plain,
            Some(_) => Vault::sealed(Zeroizing::new(random::<32>()?)),
        };
        let old = std::mem::replace(&mut self.vault, Vault::Plain);
        let result = self.reseal(&old, &new_vault, passphrase);
        self.vault = match result {
            Ok(()) => new_vault,
            Err(_) => old,
        };
        result
    }

    fn reseal(
        &mut self,
        old: &Vault,
        new: &Vault,
        passphrase: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        let path = self.path.clone();
        let sql = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(sql)?;
        tx.execute(
            "DELETE FROM meta WHERE key IN ('kdf', 'wrapped_key', 'key_record_sum')",
            [],
        )
        .map_err(sql)?;
        if let (Some(passphrase), Vault::Sealed { data_key, .. }) = (passphrase, new) {
            write_wrapped_key(&tx, &path, passphrase, data_key)?;
        }
        // Secrets.
        let secrets: Vec<(String, Vec<u8>)> = {
            let mut stmt = tx
                .prepare("SELECT key, value FROM meta WHERE key LIKE 'secret:%'")
                .map_err(sql)?;
            let rows = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(sql)?;
            rows.collect::<Result<_, _>>().map_err(sql)?
        };
        for (key, sealed) in secrets {
            let name = key.trim_start_matches("secret:");
            let aad = secret_aad(name);
            let plain = old.open(&aad, &sealed).ok_or_else(|| StoreError::Corrupt {
                path: path.clone(),
                why: format!("the sealed {name} does not open"),
            })?;
            tx.execute(
                "UPDATE meta SET value = ?2 WHERE key = ?1",
                params![key, new.seal(&aad, &plain)?],
            )
            .map_err(sql)?;
        }
        // History, contacts and outbox: rewritten under the new row keys.
        history::reseal(&tx, old, new).map_err(|e| with_path(e, &path))?;
        tx.execute("DELETE FROM contacts", []).map_err(sql)?;
        tx.execute("DELETE FROM outbox", []).map_err(sql)?;
        for record in self.state.contacts.values() {
            write_contact(&tx, new, record).map_err(|e| with_path(e, &path))?;
        }
        for message in self.state.outbox.values().flatten() {
            write_queued(&tx, new, message).map_err(|e| with_path(e, &path))?;
        }
        tx.commit().map_err(sql)?;
        self.conn.execute_batch("VACUUM").map_err(sql)?;
        Ok(())
    }

    /// Schema 1, 2 or 3 → 4, in one transaction (all or nothing): every contact record and
    /// queued message is rewritten in today's form (schema 1's certificates at serial 0;
    /// no key conflict before 3; no nonces before 4), and history rows get their
    /// positions and heads.
    fn migrate(&mut self, from: i64) -> Result<(), StoreError> {
        let tx = self.conn.unchecked_transaction().map_err(|e| self.sql(e))?;
        // (tag, id, sealed record) rows.
        type Blobs = Vec<(Vec<u8>, i64, Vec<u8>)>;
        let blobs = |sql: &str| -> Result<Blobs, StoreError> {
            let mut stmt = tx.prepare(sql).map_err(|e| self.sql(e))?;
            let rows = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .map_err(|e| self.sql(e))?;
            rows.collect::<Result<_, _>>().map_err(|e| self.read_err(e))
        };
        for (tag, _, sealed) in blobs("SELECT tag, 0, record FROM contacts")? {
            let aad = contact_aad(&tag);
            let old = match from {
                1 => ContactRecordV3::from(ContactRecordV2::from(
                    self.decode::<ContactRecordV1>(&aad, &sealed)?,
                )),
                2 => ContactRecordV3::from(self.decode::<ContactRecordV2>(&aad, &sealed)?),
                _ => self.decode::<ContactRecordV3>(&aad, &sealed)?,
            };
            // The same tag: it is derived from the nick.
            write_contact(&tx, &self.vault, &ContactRecord::from(old))
                .map_err(|e| with_path(e, &self.path))?;
        }
        for (tag, id, sealed) in blobs("SELECT tag, id, message FROM outbox")? {
            let old: QueuedMessageV3 = self.decode(&outbox_aad(&tag, id as u64), &sealed)?;
            write_queued(&tx, &self.vault, &QueuedMessage::from(old))
                .map_err(|e| with_path(e, &self.path))?;
        }
        history::migrate_from_v3(&tx, &self.vault).map_err(|e| with_path(e, &self.path))?;
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(|e| self.sql(e))?;
        tx.commit().map_err(|e| self.sql(e))
    }

    fn load_state(&self) -> Result<PeerState, StoreError> {
        let mut state = PeerState::default();
        let mut stmt = self
            .conn
            .prepare("SELECT tag, record FROM contacts")
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, Vec<u8>>(1)?))
            })
            .map_err(|e| self.sql(e))?;
        for row in rows {
            let (tag, record) = row.map_err(|e| self.read_err(e))?;
            let record: ContactRecord = self.decode(&contact_aad(&tag), &record)?;
            state.contacts.insert(record.nick.clone(), record);
        }
        let mut stmt = self
            .conn
            .prepare("SELECT tag, id, message FROM outbox ORDER BY tag, id")
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, Vec<u8>>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, Vec<u8>>(2)?,
                ))
            })
            .map_err(|e| self.sql(e))?;
        for row in rows {
            let (tag, id, message) = row.map_err(|e| self.read_err(e))?;
            let message: QueuedMessage = self.decode(&outbox_aad(&tag, id as u64), &message)?;
            state
                .outbox
                .entry(message.to.clone())
                .or_default()
                .push_back(message);
        }
        Ok(state)
    }

    fn decode<T: DeserializeOwned>(&self, aad: &[u8], sealed: &[u8]) -> Result<T, StoreError> {
        let plain = self
            .vault
            .open(aad, sealed)
            .ok_or_else(|| self.corrupt("a sealed field does not open".into()))?;
        postcard::from_bytes(&plain)
            .map_err(|e| self.corrupt(format!("a field does not decode: {e}")))
    }

    fn sql(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// A value read back is not what this code writes there: damage, not an I/O error.
    fn read_err(&self, source: rusqlite::Error) -> StoreError {
        match source {
            rusqlite::Error::InvalidColumnType(..)
            | rusqlite::Error::FromSqlConversionFailure(..)
            | rusqlite::Error::IntegralValueOutOfRange(..) => self.corrupt(source.to_string()),
            other => self.sql(other),
        }
    }

    fn corrupt(&self, why: String) -> StoreError {
        StoreError::Corrupt {
            path: self.path.clone(),
            why,
        }
    }
}

impl PeerStore for SqliteStore {
    fn apply(&mut self, ops: &[StoreOp]) -> Result<(), StoreError> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction()
            .map_err(|source| StoreError::Sqlite {
                path: path.clone(),
                source,
            })?;
        for op in ops {
            self.state.apply(op);
            apply_one(&tx, &self.vault, &self.state, self.options, op)
                .map_err(|e| with_path(e, &path))?;
        }
        tx.commit()
            .map_err(|source| StoreError::Sqlite { path, source })
    }

    fn history(&self, nick: &Nick, limit: usize) -> Result<Vec<HistoryItem>, StoreError> {
        self.read_history(nick, limit)
    }

    fn recover(&mut self) -> Result<PeerState, StoreError> {
        // A write that needs what a real one needs (a journal, a new page, a commit), then
        // taken away again.
        self.conn
            .execute_batch(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('write probe', zeroblob(8192));
                 DELETE FROM meta WHERE key = 'write probe';",
            )
            .map_err(|e| self.sql(e))?;
        // `apply` changed the state before its transaction failed: read it again.
        self.state = self.load_state()?;
        Ok(self.state.clone())
    }
}

/// A rusqlite error, or one of ours, before the path is known.
pub(super) enum RowError {
    Sql(rusqlite::Error),
    Store(StoreError),
}

impl From<rusqlite::Error> for RowError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Sql(e)
    }
}

impl From<StoreError> for RowError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

pub(super) fn with_path(e: RowError, path: &Path) -> StoreError {
    match e {
        RowError::Sql(source) => StoreError::Sqlite {
            path: path.to_owned(),
            source,
        },
        RowError::Store(e) => e,
    }
}

/// Writes what `op` changed (`state` already has it applied).
fn apply_one(
    tx: &Connection,
    vault: &Vault,
    state: &PeerState,
    options: OpenOptions,
    op: &StoreOp,
) -> Result<(), RowError> {
    match op {
        StoreOp::Contact(record) => write_contact(tx, vault, record)?,
        StoreOp::ForgetContact(nick) => {
            let name = nick.canonical();
            tx.execute(
                "DELETE FROM contacts WHERE tag = ?1",
                params![vault.row_key("contact", &name)],
            )?;
            tx.execute(
                "DELETE FROM outbox WHERE tag = ?1",
                params![vault.row_key("outbox", &name)],
            )?;
        }
        StoreOp::Queued(message) => {
            if let Some(record) = state.contacts.get(&message.to) {
                write_contact(tx, vault, record)?;
            }
            write_queued(tx, vault, message)?;
            if options.history {
                let entry = HistoryEntry {
                    nick: message.to.clone(),
                    outgoing: true,
                    id: message.id,
                    text: message.text.clone(),
                    at: message.queued_at,
                    outcome: None,
                };
                history::insert(tx, vault, &entry)?;
            }
        }
        StoreOp::Resolved { to, id, outcome } => {
            let name = to.canonical();
            tx.execute(
                "DELETE FROM outbox WHERE tag = ?1 AND id = ?2",
                params![vault.row_key("outbox", &name), *id as i64],
            )?;
            // The outcome moves the contact's acknowledged (or failed) mark.
            if let Some(record) = state.contacts.get(to) {
                write_contact(tx, vault, record)?;
            }
            if options.history {
                history::resolve(tx, vault, to, *id, outcome)?;
            }
        }
        StoreOp::Received {
            from, id, text, at, ..
        } => {
            if let Some(record) = state.contacts.get(from) {
                write_contact(tx, vault, record)?;
            }
            if options.history {
                let entry = HistoryEntry {
                    nick: from.clone(),
                    outgoing: false,
                    id: *id,
                    text: text.clone(),
                    at: *at,
                    outcome: None,
                };
                history::insert(tx, vault, &entry)?;
            }
        }
    }
    Ok(())
}

pub(super) fn encode<T: Serialize>(value: &T) -> Result<Zeroizing<Vec<u8>>, RowError> {
    postcard::to_allocvec(value)
        .map(Zeroizing::new)
        .map_err(|e| RowError::Store(StoreError::Crypto(format!("cannot encode a record: {e}"))))
}

fn write_contact(tx: &Connection, vault: &Vault, record: &ContactRecord) -> Result<(), RowError> {
    let tag = vault.row_key("contact", &record.nick.canonical());
    let sealed = vault.seal(&contact_aad(&tag), &encode(record)?)?;
    tx.execute(
        "INSERT OR REPLACE INTO contacts (tag, record) VALUES (?1, ?2)",
        params![tag, sealed],
    )?;
    Ok(())
}

fn write_queued(tx: &Connection, vault: &Vault, message: &QueuedMessage) -> Result<(), RowError> {
    let tag = vault.row_key("outbox", &message.to.canonical());
    let sealed = vault.seal(&outbox_aad(&tag, message.id), &encode(message)?)?;
    tx.execute(
        "INSERT OR REPLACE INTO outbox (tag, id, message) VALUES (?1, ?2, ?3)",
        params![tag, message.id as i64, sealed],
    )?;
    Ok(())
}

fn contact_aad(tag: &[u8]) -> Vec<u8> {
    [b"contact\0".as_slice(), tag].concat()
}

fn outbox_aad(tag: &[u8], id: u64) -> Vec<u8> {
    [b"outbox\0".as_slice(), tag, &id.to_be_bytes()].concat()
}

fn secret_aad(name: &str) -> Vec<u8> {
    [b"secret\0".as_slice(), name.as_bytes()].concat()
}

/// Every table but history's (`history::SCHEMA`), unchanged since schema 1.
const SCHEMA_TABLES: &str = "
    CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
    CREATE TABLE contacts (tag BLOB PRIMARY KEY, record BLOB NOT NULL);
    CREATE TABLE outbox (
        tag BLOB NOT NULL, id INTEGER NOT NULL, message BLOB NOT NULL,
        PRIMARY KEY (tag, id)
    );
";

/// Checks what can be checked before the passphrase: that this is a p2pchat store of a
/// schema this code reads, and SQLite's own quick check of its pages. Returns the schema.
fn check_file(path: &Path, conn: &Connection) -> Result<i64, StoreError> {
    let corrupt = |why: String| StoreError::Corrupt {
        path: path.to_owned(),
        why,
    };
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(|e| corrupt(e.to_string()))?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema {
            path: path.to_owned(),
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    if version < 1 {
        return Err(corrupt("it is not a p2pchat store".into()));
    }
    let mut stmt = conn
        .prepare("PRAGMA quick_check")
        .map_err(|e| corrupt(e.to_string()))?;
    let findings: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .and_then(|rows| rows.collect())
        .map_err(|e| corrupt(e.to_string()))?;
    if findings.len() == 1 && findings[0] == "ok" {
        return Ok(version);
    }
    // SQLite lists every problem, a line each (some after a "*** in database main ***"
    // heading): the first says what, the count how much; the whole list is for a person
    // repairing the file with sqlite3.
    let problems: Vec<&str> = findings
        .iter()
        .flat_map(|f| f.lines())
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("***"))
        .collect();
    Err(corrupt(match problems.as_slice() {
        [] => "SQLite's check gave no answer".into(),
        [first] => format!("SQLite found: {first}"),
        [first, rest @ ..] => format!("SQLite found: {first} (and {} more problems)", rest.len()),
    }))
}

/// Opens the database with the settings every connection uses.
/// The rollback journal of the database at `path`.
fn journal_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push("-journal");
    PathBuf::from(name)
}

/// Whether a non-empty rollback journal lies beside the database: SQLite would play it
/// back on the first read (no other process can hold the store: we hold its lock).
fn has_hot_journal(path: &Path) -> bool {
    std::fs::metadata(journal_path(path)).is_ok_and(|m| m.len() > 0)
}

/// A private directory beside the store for a copy of it.
fn scratch_dir(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".check");
    PathBuf::from(name)
}

/// Copies the database at `path` and its journal into `scratch` (made private, emptied
/// first); returns the copy's path.
fn copy_with_journal(path: &Path, scratch: &Path) -> Result<PathBuf, StoreError> {
    let io = |source| StoreError::Io {
        path: scratch.to_owned(),
        source,
    };
    let _ = std::fs::remove_dir_all(scratch);
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(scratch).map_err(io)?;
    let copy = scratch.join(STORE_FILE);
    std::fs::copy(path, &copy).map_err(io)?;
    std::fs::copy(journal_path(path), journal_path(&copy)).map_err(io)?;
    Ok(copy)
}

fn connect(path: &Path) -> Result<Connection, StoreError> {
    let sql = |source| StoreError::Sqlite {
        path: path.to_owned(),
        source,
    };
    let flags =
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(sql)?;
    // A rollback journal: no files beside the database while it is idle. Every commit is
    // on disk before it returns; deleted rows are overwritten.
    conn.execute_batch(
        "PRAGMA journal_mode = DELETE; PRAGMA synchronous = FULL; PRAGMA secure_delete = ON;",
    )
    .map_err(|e| StoreError::Corrupt {
        path: path.to_owned(),
        why: e.to_string(),
    })?;
    Ok(conn)
}

/// Creates an empty file readable by us only, so the database never exists with wider
/// permissions.
fn create_private_file(path: &Path) -> Result<(), StoreError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
        .open(path)
        .map(drop)
        .map_err(|source| StoreError::Io {
            path: path.to_owned(),
            source,
        })
}

fn write_wrapped_key(
    conn: &Connection,
    path: &Path,
    passphrase: &[u8],
    data_key: &[u8; 32],
) -> Result<(), StoreError> {
    let sql = |source| StoreError::Sqlite {
        path: path.to_owned(),
        source,
    };
    let kdf = KdfParams::fresh()?;
    let kek = kdf.derive(passphrase)?;
    let wrapped = seal_with(&kek, DATA_KEY_AAD, data_key)?;
    let kdf_bytes = postcard::to_allocvec(&kdf)
        .map_err(|e| StoreError::Crypto(format!("cannot encode the KDF parameters: {e}")))?;
    let sum = key_record_sum(&kdf_bytes, &wrapped);
    conn.execute(
        "INSERT OR REPLACE INTO meta (key, value) VALUES ('kdf', ?1), ('wrapped_key', ?2), ('key_record_sum', ?3)",
        params![kdf_bytes, wrapped, sum],
    )
    .map_err(sql)?;
    Ok(())
}

/// A plain SHA-256 of the key record (KDF parameters and wrapped data key), kept beside
/// it: when the data key does not unwrap, it tells a damaged record (the sum differs) from
/// a wrong passphrase (it matches). It covers nothing secret, and proves nothing against
/// someone who rewrites the files: it is for diagnosis, not for security.
fn key_record_sum(kdf: &[u8], wrapped: &[u8]) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"p2pchat key record v1\0");
    h.update(u32::try_from(kdf.len()).unwrap_or(u32::MAX).to_be_bytes());
    h.update(kdf);
    h.update(wrapped);
    h.finalize().to_vec()
}

/// The vault of an existing store: its data key unwrapped with `passphrase`.
fn unlock(conn: &Connection, path: &Path, passphrase: Option<&[u8]>) -> Result<Vault, StoreError> {
    let corrupt = |why: String| StoreError::Corrupt {
        path: path.to_owned(),
        why,
    };
    let meta = |key: &str| -> Result<Option<Vec<u8>>, StoreError> {
        conn.query_row("SELECT value FROM meta WHERE key = ?1", params![key], |r| {
            r.get(0)
        })
        .optional()
        .map_err(|e| corrupt(e.to_string()))
    };
    let (Some(kdf_bytes), Some(wrapped)) = (meta("kdf")?, meta("wrapped_key")?) else {
        return Ok(Vault::Plain);
    };
    // Stores from before the sum have none: a damaged record there still reads as a
    // wrong passphrase.
    let sum = meta("key_record_sum")?;
    let damaged = sum
        .as_ref()
        .is_some_and(|s| *s != key_record_sum(&kdf_bytes, &wrapped));
    if damaged {
        return Err(corrupt(
            "its key record (the passphrase's salt or the wrapped data key) is damaged, so no passphrase can open it; your passphrase was not the problem".into(),
        ));
    }
    let Some(passphrase) = passphrase else {
        return Err(StoreError::PassphraseNeeded {
            path: path.to_owned(),
        });
    };
    let kdf: KdfParams = postcard::from_bytes(&kdf_bytes)
        .map_err(|e| corrupt(format!("bad KDF parameters: {e}")))?;
    let kek = kdf.derive(passphrase)?;
    let data_key =
        open_with(&kek, DATA_KEY_AAD, &wrapped).ok_or_else(|| StoreError::WrongPassphrase {
            path: path.to_owned(),
        })?;
    let data_key: [u8; 32] = data_key
        .as_slice()
        .try_into()
        .map_err(|_| corrupt("the wrapped data key has the wrong length".into()))?;
    Ok(Vault::sealed(Zeroizing::new(data_key)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use p2pchat_core::peer::{ContactKey, Outcome, WallTime};

    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("p2pchat-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn nick(s: &str) -> Nick {
        Nick::new(s).unwrap()
    }

    const OPTIONS: OpenOptions = OpenOptions { history: true };

    /// The schema version `store` is at now.
    fn schema_version(store: &SqliteStore) -> i64 {
        store
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap()
    }

    /// The messages of a history page that has no damaged row.
    fn entries(items: Vec<HistoryItem>) -> Vec<HistoryEntry> {
        items
            .into_iter()
            .map(|i| match i {
                HistoryItem::Entry(e) => e,
                damaged => panic!("a damaged row: {damaged:?}"),
            })
            .collect()
    }

    /// A run of operations of every kind, for two contacts.
    fn ops() -> Vec<StoreOp> {
        let mut ops = Vec::new();
        for (n, who) in ["bob", "carol"].iter().enumerate() {
            ops.push(StoreOp::Contact(ContactRecord::new(
                nick(who),
                n as u64 + 7,
            )));
            for id in 1..=4 {
                ops.push(StoreOp::Queued(QueuedMessage {
                    to: nick(who),
                    id,
                    nonce: id + 100,
                    text: format!("to {who} #{id}"),
                    queued_at: WallTime(id * 1000),
                }));
            }
            ops.push(StoreOp::Resolved {
                to: nick(who),
                id: 2,
                outcome: Outcome::Delivered,
            });
            ops.push(StoreOp::Received {
                from: nick(who),
                peer_instance: 99,
                id: 5,
                nonce: 55,
                text: format!("from {who}"),
                at: WallTime(9000),
            });
        }
        ops.push(StoreOp::Contact(ContactRecord::new(nick("dave"), 1)));
        ops.push(StoreOp::ForgetContact(nick("dave")));
        ops
    }

    #[test]
    fn a_schema_1_store_is_migrated_and_its_pins_still_verify() {
        let d = dir("v1");
        let path = d.join(STORE_FILE);
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/store-v1.db");
        std::fs::copy(fixture, &path).unwrap();
        let store = SqliteStore::open(&path, Some(b"fixture"), OPTIONS).unwrap();
        let bob = p2pchat_core::test_keys::identity(1, "bob");
        let carol = p2pchat_core::test_keys::identity(2, "carol");
        let contacts = &store.state().contacts;
        let b = &contacts[&bob.nick];
        // Certificates before serials are serial 0, byte for byte: the pin is bob's own.
        assert_eq!(
            b.key,
            ContactKey::Pinned {
                certificate: bob.certificate.clone(),
                port: 7001
            }
        );
        let ContactKey::Pinned { certificate, .. } = &b.key else {
            unreachable!()
        };
        assert_eq!(certificate.verify(), Ok(()));
        assert!(b.verified);
        assert_eq!((b.our_instance, b.next_id), (11, 3));
        assert_eq!(
            contacts[&carol.nick].key,
            ContactKey::Fingerprint(carol.rsa.public().fingerprint())
        );
        assert_eq!(store.state().queued_len(&carol.nick), 1);
        let history = entries(store.read_history(&bob.nick, 10).unwrap());
        assert_eq!(history.len(), 1);
        assert_eq!(history[0].text, "from bob");
        let state = store.state().clone();
        drop(store);
        let again = SqliteStore::open(&path, Some(b"fixture"), OPTIONS).unwrap();
        assert_eq!(again.state(), &state);
        assert_eq!(schema_version(&again), SCHEMA_VERSION);
        let _ = std::fs::remove_dir_all(d);
    }

    #[test]
    fn a_store_left_with_a_journal_opens_whole_or_is_refused_with_both_files_unchanged() {
        let d = dir("journal");
        let path = d.join(STORE_FILE);
        {
            let mut store = SqliteStore::create(&path, Some(b"pw"), OPTIONS).unwrap();
            store.apply(&ops()).unwrap();
        }
        let history =
            |store: &SqliteStore| ["bob", "carol"].map(|n| store.read_history(&nick(n), 100).ok());
        let (expected, expected_history) = {
            let store = SqliteStore::open(&path, Some(b"pw"), OPTIONS).unwrap();
            (store.state().clone(), history(&store))
        };
        // A transaction interrupted by a crash: its changes already in the database file
        // (a one-page cache spills them), the original pages in the journal.
        let (db, journal) = {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "PRAGMA journal_mode = DELETE; PRAGMA cache_size = 1; BEGIN;
                 DELETE FROM history; DELETE FROM outbox;
                 UPDATE contacts SET record = zeroblob(300);",
            )
            .unwrap();
            let db = std::fs::read(&path).unwrap();
            let journal = std::fs::read(journal_path(&path)).unwrap();
            (db, journal)
        };
        assert!(!journal.is_empty());
        // Each trial derives the passphrase's key twice (Argon2id): 80 by default (both
        // outcomes occur among them), STORE_JOURNAL_TRIALS for more.
        let trials: usize = std::env::var("STORE_JOURNAL_TRIALS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(80);
        let (mut opened, mut refused, mut shortened) = (0, 0, 0);
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for trial in 0..trials {
            let mut damaged = journal.clone();
            if trial > 0 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let at = (x % damaged.len() as u64) as usize;
                damaged[at] ^= 1 << (x % 8);
            }
            std::fs::write(&path, &db).unwrap();
            std::fs::write(journal_path(&path), &damaged).unwrap();
            match SqliteStore::open(&path, Some(b"pw"), OPTIONS) {
                Ok(store) => {
                    opened += 1;
                    assert_eq!(store.state(), &expected, "trial {trial}");
                    // The undamaged journal gives every history entry back. A damaged one
                    // can leave history rows deleted or damaged: then the history read says
                    // so in its place, never shorter and whole.
                    let read = history(&store);
                    if read != expected_history {
                        assert!(trial > 0, "the undamaged journal lost history");
                        for items in read.iter().flatten() {
                            let whole = items.iter().all(|i| i.entry().is_some());
                            let complete = expected_history.iter().flatten().any(|e| e == items);
                            assert!(
                                complete || !whole,
                                "trial {trial}: a shorter history shown as whole: {items:?}"
                            );
                        }
                        shortened += 1;
                    }
                }
                Err(e) => {
                    refused += 1;
                    assert!(e.to_string().contains(&path.display().to_string()), "{e}");
                    assert!(
                        std::fs::read(&path).unwrap() == db,
                        "trial {trial}: the database changed, yet: {e}"
                    );
                    assert!(
                        std::fs::read(journal_path(&path)).unwrap() == damaged,
                        "trial {trial}: the journal changed, yet: {e}"
                    );
                }
            }
            assert!(!scratch_dir(&path).exists());
        }
        eprintln!(
            "{trials} journals: {opened} opened ({shortened} of them with history rows marked missing or damaged), {refused} refused unchanged"
        );
        assert!(
            opened > 0 && refused > 0,
            "{opened} opened, {refused} refused"
        );
        let _ = std::fs::remove_dir_all(d);
    }

    #[test]
    fn a_damaged_key_record_is_told_from_a_wrong_passphrase() {
        let d = dir("key-record");
        let path = d.join(STORE_FILE);
        drop(SqliteStore::create(&path, Some(b"right"), OPTIONS).unwrap());
        match SqliteStore::open(&path, Some(b"wrong"), OPTIONS) {
            Err(StoreError::WrongPassphrase { .. }) => {}
            other => panic!("{other:?}"),
        }
        let flip = |key: &str| {
            let conn = Connection::open(&path).unwrap();
            let mut value: Vec<u8> = conn
                .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
                .unwrap();
            let last = value.len() - 1;
            value[last] ^= 1;
            conn.execute(
                "UPDATE meta SET value = ?1 WHERE key = ?2",
                params![value, key],
            )
            .unwrap();
        };
        for key in ["wrapped_key", "kdf"] {
            flip(key);
            // With the right passphrase or a wrong one: damage, not "wrong passphrase".
            for passphrase in [b"right".as_slice(), b"wrong"] {
                match SqliteStore::open(&path, Some(passphrase), OPTIONS) {
                    Err(StoreError::Corrupt { why, .. }) => {
                        assert!(why.contains("key record"), "{why}")
                    }
                    other => panic!("{key}: {other:?}"),
                }
            }
            flip(key);
            assert!(SqliteStore::open(&path, Some(b"right"), OPTIONS).is_ok());
        }
        let _ = std::fs::remove_dir_all(d);
    }

    /// A copy of the schema 3 fixture (passphrase "fixture"): bob pinned and verified, 26
    /// messages each way, 24 of ours delivered, #25 and #26 queued.
    fn v3_fixture(name: &str) -> (PathBuf, PathBuf) {
        let d = dir(name);
        let path = d.join(STORE_FILE);
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/store-v3.db");
        std::fs::copy(fixture, &path).unwrap();
        (d, path)
    }

    #[test]
    fn a_schema_2_store_is_migrated_with_its_contacts_whole() {
        let (d, path) = v3_fixture("v2");
        let bob = p2pchat_core::test_keys::identity(1, "bob");
        {
            // Rewrite bob's record as schema 2 wrote it, and say schema 2 (its tables are
            // schema 3's).
            let conn = connect(&path).unwrap();
            let vault = unlock(&conn, &path, Some(b"fixture")).unwrap();
            let old = ContactRecordV2 {
                nick: bob.nick.clone(),
                key: ContactKey::Pinned {
                    certificate: bob.certificate.clone(),
                    port: 7001,
                },
                verified: true,
                blocked: false,
                our_instance: 7,
                next_id: 27,
                peer_instance: Some(99),
                received_upto: 26,
            };
            let tag = vault.row_key("contact", &bob.nick.canonical());
            let sealed = vault
                .seal(&contact_aad(&tag), &postcard::to_allocvec(&old).unwrap())
                .unwrap();
            conn.execute(
                "UPDATE contacts SET record = ?1 WHERE tag = ?2",
                params![sealed, tag],
            )
            .unwrap();
            conn.pragma_update(None, "user_version", 2).unwrap();
        }
        let store = SqliteStore::open(&path, Some(b"fixture"), OPTIONS).unwrap();
        let b = &store.state().contacts[&bob.nick];
        assert!(b.verified && b.conflict.is_none());
        assert_eq!((b.our_instance, b.next_id, b.received_upto), (7, 27, 26));
        assert_eq!(store.state().queued_len(&bob.nick), 2);
        assert_eq!(schema_version(&store), SCHEMA_VERSION);
        let _ = std::fs::remove_dir_all(d);
    }

    #[test]
    fn a_schema_3_store_is_migrated_with_its_history_in_order_and_nothing_taken_for_a_restore() {
        let (d, path) = v3_fixture("v3");
        let bob = p2pchat_core::test_keys::identity(1, "bob");
        let store = SqliteStore::open(&path, Some(b"fixture"), OPTIONS).unwrap();
        assert_eq!(schema_version(&store), SCHEMA_VERSION);
        let b = &store.state().contacts[&bob.nick];
        assert_eq!((b.our_instance, b.next_id, b.received_upto), (11, 27, 26));
        // Nothing known of nonces yet: every id below the next counts as acknowledged and
        // a contact's record of any of them is taken on trust.
        assert_eq!(
            (b.delivered_upto, b.delivered_nonce, b.received_nonce),
            (26, 0, 0)
        );
        let queued: Vec<(u64, u64)> = store
            .state()
            .queued(&bob.nick)
            .map(|m| (m.id, m.nonce))
            .collect();
        assert_eq!(queued, vec![(25, 0), (26, 0)]);
        let items = store.read_history(&bob.nick, 1000).unwrap();
        let texts: Vec<String> = entries(items.clone()).into_iter().map(|e| e.text).collect();
        assert_eq!(texts.len(), 52, "{items:?}");
        for (n, pair) in texts.chunks(2).enumerate() {
            assert_eq!(
                pair,
                [format!("to bob #{}", n + 1), format!("from bob #{}", n + 1)]
            );
        }
        drop(store);
        // And it reopens as it was.
        let again = SqliteStore::open(&path, Some(b"fixture"), OPTIONS).unwrap();
        assert_eq!(again.read_history(&bob.nick, 1000).unwrap(), items);
        let _ = std::fs::remove_dir_all(d);
    }

    #[test]
    fn a_key_conflict_is_kept_with_its_contact_across_a_reopen() {
        let d = dir("conflict");
        let path = d.join(STORE_FILE);
        let bob = p2pchat_core::test_keys::identity(1, "bob");
        let mallory = p2pchat_core::test_keys::identity(8, "bob");
        let mut record = ContactRecord::new(bob.nick.clone(), 3);
        record.key = ContactKey::Pinned {
            certificate: bob.certificate.clone(),
            port: 7001,
        };
        record.conflict = Some(Box::new(p2pchat_core::peer::KeyConflict {
            pinned: bob.rsa.public().fingerprint(),
            presented: mallory.rsa.public().fingerprint(),
            certificate: Some((mallory.certificate.clone(), 7002)),
        }));
        {
            let mut store = SqliteStore::create(&path, Some(b"pw"), OPTIONS).unwrap();
            store.apply(&[StoreOp::Contact(record.clone())]).unwrap();
        }
        let store = SqliteStore::open(&path, Some(b"pw"), OPTIONS).unwrap();
        assert_eq!(store.state().contacts[&bob.nick], record);
        let _ = std::fs::remove_dir_all(d);
    }

    #[test]
    fn a_reopened_store_restores_exactly_what_peer_state_apply_gives() {
        let d = dir("agree");
        let path = d.join(STORE_FILE);
        let mut store = SqliteStore::create(&path, Some(b"pw"), OPTIONS).unwrap();
        let mut reference = PeerState::default();
        for (i, op) in ops().iter().enumerate() {
            // Batches of different sizes: one transaction each.
            reference.apply(op);
            store.apply(std::slice::from_ref(op)).unwrap();
            if i % 3 == 0 {
                assert_eq!(store.state(), &reference);
            }
        }
        drop(store);
        let store = SqliteStore::open(&path, Some(b"pw"), OPTIONS).unwrap();
        assert_eq!(store.state(), &reference);
        let history = entries(store.read_history(&nick("bob"), 10).unwrap());
        let texts: Vec<&str> = history.iter().map(|e| e.text.as_str()).collect();
        assert_eq!(
            texts,
            [
                "to bob #1",
                "to bob #2",
                "to bob #3",
                "to bob #4",
                "from bob"
            ]
        );
        assert_eq!(history[1].outcome, Some(Outcome::Delivered));
        assert_eq!(history[0].outcome, None);
        let _ = std::fs::remove_dir_all(d);
    }

    #[test]
    fn a_tampered_sealed_record_is_reported_as_damage_not_read() {
        let d = dir("tamper");
        let path = d.join(STORE_FILE);
        let mut store = SqliteStore::create(&path, Some(b"pw"), OPTIONS).unwrap();
        store.apply(&ops()).unwrap();
        drop(store);
        let good = std::fs::read(&path).unwrap();
        // One byte of a sealed record changed; then a record turned into text.
        for tamper in [
            "UPDATE contacts SET record = CAST(substr(record, 1, 40) || x'00' || substr(record, 42) AS BLOB)",
            "UPDATE contacts SET record = 'hello'",
        ] {
            std::fs::write(&path, &good).unwrap();
            let conn = Connection::open(&path).unwrap();
            conn.execute(tamper, []).unwrap();
            drop(conn);
            let e = SqliteStore::open(&path, Some(b"pw"), OPTIONS).unwrap_err();
            assert!(matches!(e, StoreError::Corrupt { .. }), "{tamper}: {e}");
        }
        let _ = std::fs::remove_dir_all(d);
    }

    #[test]
    fn a_damaged_history_row_is_marked_in_its_place_and_the_rest_is_shown() {
        let d = dir("history-row");
        let path = d.join(STORE_FILE);
        let mut store = SqliteStore::create(&path, Some(b"pw"), OPTIONS).unwrap();
        store.apply(&ops()).unwrap();
        let whole = entries(store.read_history(&nick("carol"), 10).unwrap());
        assert_eq!(whole.len(), 5);
        drop(store);
        // One byte of the sealed entry of carol's message #3 (outgoing) is changed.
        let conn = Connection::open(&path).unwrap();
        let changed = conn
            .execute(
                "UPDATE history SET entry = CAST(substr(entry, 1, 30) || x'00' || substr(entry, 32) AS BLOB)
                 WHERE id = 3 AND seq = (SELECT max(seq) FROM history WHERE id = 3)",
                [],
            )
            .unwrap();
        assert_eq!(changed, 1);
        drop(conn);
        let store = SqliteStore::open(&path, Some(b"pw"), OPTIONS).unwrap();
        let items = store.read_history(&nick("carol"), 10).unwrap();
        assert_eq!(items.len(), 5);
        assert_eq!(
            items[2],
            HistoryItem::Damaged {
                outgoing: true,
                id: 3
            }
        );
        for (i, item) in items.iter().enumerate().filter(|(i, _)| *i != 2) {
            assert_eq!(item.entry(), Some(&whole[i]));
        }
        let _ = std::fs::remove_dir_all(d);
    }

    /// Walks `items` against the fixture's 52 messages: every entry shown must be the
    /// message stored at its position, and the positions shown, marked damaged and marked
    /// missing must add up to the whole history (or the end be marked unknown).
    fn check_against_fixture(items: &[HistoryItem]) -> Result<bool, String> {
        let expected = |pos: u64| {
            let n = pos.div_ceil(2);
            if pos % 2 == 1 {
                format!("to bob #{n}")
            } else {
                format!("from bob #{n}")
            }
        };
        let (mut pos, mut marked) = (0u64, false);
        for item in items {
            match item {
                HistoryItem::Entry(e) => {
                    pos += 1;
                    if e.text != expected(pos) {
                        return Err(format!("position {pos} shows {:?}", e.text));
                    }
                }
                HistoryItem::Damaged { .. } => (pos, marked) = (pos + 1, true),
                HistoryItem::Missing { count } => (pos, marked) = (pos + count, true),
                HistoryItem::EndUnknown => return Ok(true),
            }
        }
        match pos {
            52 => Ok(marked),
            n if n > 52 && marked => Ok(true),
            n => Err(format!(
                "{n} of 52 positions shown, with no mark: {items:?}"
            )),
        }
    }

    /// One flipped bit anywhere in the store — history pages, its indexes, the heads, the
    /// contacts — never shows a shortened or reordered history as whole: the store opens
    /// with every position accounted for (shown, or marked damaged or missing), or is
    /// refused. STORE_FLIP_TRIALS (default 400) and STORE_FLIP_SEED choose the flips.
    #[test]
    fn one_flipped_bit_never_shows_a_shortened_or_reordered_history_as_whole() {
        let (d, base) = v3_fixture("flips");
        let bob = p2pchat_core::test_keys::identity(1, "bob");
        // Migrated once (schema 4); the flips are made to that file.
        drop(SqliteStore::open(&base, Some(b"fixture"), OPTIONS).unwrap());
        let data_key = {
            let conn = connect(&base).unwrap();
            match unlock(&conn, &base, Some(b"fixture")).unwrap() {
                Vault::Sealed { data_key, .. } => data_key,
                Vault::Plain => unreachable!("the fixture is encrypted"),
            }
        };
        let original = std::fs::read(&base).unwrap();
        let env = |name: &str, default: u64| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(default)
        };
        let trials = env("STORE_FLIP_TRIALS", 400);
        let mut x = env("STORE_FLIP_SEED", 0x2545_f491_4f6c_dd1d).max(1);
        let (mut whole, mut marked, mut refused) = (0, 0, 0);
        let copy = d.join("copy.db");
        for _ in 0..trials {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut bytes = original.clone();
            // Past the 100-byte file header (damage there is SQLite's own to find).
            let at = 100 + (x >> 8) as usize % (bytes.len() - 100);
            bytes[at] ^= 1 << (x % 8);
            std::fs::write(&copy, &bytes).unwrap();
            let lock = StoreLock::acquire(&copy).unwrap();
            let opened = connect(&copy).and_then(|conn| {
                let version = check_file(&copy, &conn)?;
                let vault = Vault::sealed(data_key.clone());
                SqliteStore::open_unlocked(&copy, conn, vault, version, OPTIONS, lock)
            });
            let outcome = opened.and_then(|store| store.read_history(&bob.nick, 1000));
            // Reading, or refusing, never writes.
            assert!(
                std::fs::read(&copy).unwrap() == bytes,
                "bit {} of byte {at}: the file changed",
                x % 8
            );
            match outcome {
                Ok(items) => match check_against_fixture(&items) {
                    Ok(false) => whole += 1,
                    Ok(true) => marked += 1,
                    Err(e) => panic!("bit {} of byte {at}: {e}", x % 8),
                },
                Err(e) => {
                    let text = e.to_string();
                    assert!(
                        !text.contains('\n'),
                        "one sentence, not SQLite's list: {text}"
                    );
                    refused += 1;
                }
            }
        }
        eprintln!("{trials} flips: {whole} whole, {marked} shown with marks, {refused} refused");
        let _ = std::fs::remove_dir_all(d);
    }

    #[test]
    fn a_new_passphrase_replaces_the_old_one_and_plain_stores_can_be_encrypted() {
        let d = dir("rekey");
        let path = d.join(STORE_FILE);
        let mut store = SqliteStore::create(&path, None, OPTIONS).unwrap();
        store.apply(&ops()).unwrap();
        store.put_secret("k", b"secret key").unwrap();
        let state = store.state().clone();
        store.change_passphrase(Some(b"one")).unwrap();
        drop(store);
        assert!(matches!(
            SqliteStore::open(&path, None, OPTIONS),
            Err(StoreError::PassphraseNeeded { .. })
        ));
        let mut store = SqliteStore::open(&path, Some(b"one"), OPTIONS).unwrap();
        store.change_passphrase(Some(b"two")).unwrap();
        drop(store);
        assert!(matches!(
            SqliteStore::open(&path, Some(b"one"), OPTIONS),
            Err(StoreError::WrongPassphrase { .. })
        ));
        let store = SqliteStore::open(&path, Some(b"two"), OPTIONS).unwrap();
        assert_eq!(store.state(), &state);
        assert_eq!(
            store.secret("k").unwrap().as_deref().map(Vec::as_slice),
            Some(b"secret key".as_slice())
        );
        assert_eq!(store.read_history(&nick("carol"), 10).unwrap().len(), 5);
        let bytes = std::fs::read(&path).unwrap();
        for needle in [b"secret key".as_slice(), b"to carol", b"carol"] {
            assert!(!bytes.windows(needle.len()).any(|w| w == needle));
        }
        let _ = std::fs::remove_dir_all(d);
    }

    #[test]
    fn a_store_from_a_newer_version_is_refused_unchanged() {
        let d = dir("newer");
        let path = d.join(STORE_FILE);
        let store = SqliteStore::create(&path, None, OPTIONS).unwrap();
        store.conn.pragma_update(None, "user_version", 99).unwrap();
        drop(store);
        let before = std::fs::read(&path).unwrap();
        let e = SqliteStore::open(&path, None, OPTIONS).unwrap_err();
        assert!(
            matches!(e, StoreError::NewerSchema { found: 99, .. }),
            "{e}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), before);
        let _ = std::fs::remove_dir_all(d);
    }

    #[test]
    fn without_history_only_contacts_and_the_outbox_are_kept() {
        let d = dir("nohistory");
        let path = d.join(STORE_FILE);
        let mut store = SqliteStore::create(&path, None, OpenOptions { history: false }).unwrap();
        store.apply(&ops()).unwrap();
        assert!(store.read_history(&nick("bob"), 10).unwrap().is_empty());
        assert_eq!(store.state().queued_len(&nick("bob")), 3);
        assert!(matches!(
            store.state().contacts[&nick("bob")].key,
            ContactKey::Unknown
        ));
        let bytes = std::fs::read(&path).unwrap();
        assert!(!bytes.windows(8).any(|w| w == b"from bob"));
        let _ = std::fs::remove_dir_all(d);
    }

    /// The journal-mode decision (docs/BENCHMARKS.md), measured on the real store: the
    /// same grouped commits (64 messages sent and acknowledged per transaction) with the
    /// rollback journal the store uses and with WAL, both `synchronous = FULL`. Prints
    /// the rates; asserts nothing about them.
    /// `cargo test --release -p p2pchat-async-std --lib journal_modes -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn journal_modes_measured() {
        let bob = p2pchat_core::test_keys::identity(1, "bob");
        for mode in ["DELETE", "WAL"] {
            let d = dir(&format!("journal-{mode}"));
            let path = d.join(STORE_FILE);
            let mut store = SqliteStore::create(&path, Some(b"pw"), OPTIONS).unwrap();
            store
                .conn
                .execute_batch(&format!(
                    "PRAGMA journal_mode = {mode}; PRAGMA synchronous = FULL;"
                ))
                .unwrap();
            store
                .apply(&[StoreOp::Contact(ContactRecord::new(bob.nick.clone(), 7))])
                .unwrap();
            let (commits, per_commit) = (200u64, 64u64);
            let started = std::time::Instant::now();
            for c in 0..commits {
                let mut ops = Vec::new();
                for m in 0..per_commit {
                    let id = c * per_commit + m + 1;
                    ops.push(StoreOp::Queued(QueuedMessage {
                        to: bob.nick.clone(),
                        id,
                        nonce: id,
                        text: "x".repeat(100),
                        queued_at: WallTime(id),
                    }));
                    ops.push(StoreOp::Resolved {
                        to: bob.nick.clone(),
                        id,
                        outcome: Outcome::Delivered,
                    });
                }
                store.apply(&ops).unwrap();
            }
            let grouped = (commits * per_commit) as f64 / started.elapsed().as_secs_f64();
            let started = std::time::Instant::now();
            let singles = 300u64;
            for k in 0..singles {
                let id = commits * per_commit + k + 1;
                store
                    .apply(&[StoreOp::Queued(QueuedMessage {
                        to: bob.nick.clone(),
                        id,
                        nonce: id,
                        text: "x".repeat(100),
                        queued_at: WallTime(id),
                    })])
                    .unwrap();
            }
            let single = singles as f64 / started.elapsed().as_secs_f64();
            eprintln!(
                "journal_mode={mode}: {grouped:.0} messages/s sent and acknowledged, 64 per commit; {single:.0} commits/s one operation each"
            );
            drop(store);
            let _ = std::fs::remove_dir_all(d);
        }
    }
}
