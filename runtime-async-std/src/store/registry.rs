//! The registry server's store: nick bindings in SQLite (nothing secret: the registry
//! publishes who holds which nick anyway), applied before any later output.

use std::path::{Path, PathBuf};

use p2pchat_core::identity::OnionAddress;
use p2pchat_core::peer::WallTime;
use p2pchat_core::registry::{Binding, BindingOp, Bindings, RegistryTime};
use rusqlite::{Connection, OptionalExtension, params};

use super::schema_v1::BindingV1;

use super::StoreError;
use super::lock::StoreLock;

/// The registry's database file name inside its data directory.
pub const REGISTRY_STORE_FILE: &str = "registry.db";

/// Schema version of the registry store: 2 since bindings carry their certificate's
/// serial, 3 since the operator can revoke onion addresses, 4 since the registry keeps
/// its own clock (a binding's `last_seen` is on it: schema 3's wall-clock times carry over
/// as they are, and the clock starts from the latest of them).
const SCHEMA_VERSION: i64 = 4;

/// The tables added since schema 1: revoked onion addresses (3), the clock (4).
const LATER_TABLES: &str = "
    CREATE TABLE IF NOT EXISTS revoked (onion BLOB PRIMARY KEY);
    CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
";

/// The registry's bindings on disk.
pub struct RegistryStore {
    path: PathBuf,
    conn: Connection,
    /// The wall-clock time when the clock was last stored, as read at open.
    last_wall: Option<WallTime>,
    /// Held while the store is open: two registries on one store would overwrite each
    /// other's bindings (declared last: dropped after the connection).
    _lock: StoreLock,
}

impl core::fmt::Debug for RegistryStore {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RegistryStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl RegistryStore {
    /// Opens (or creates) the store at `path` and reads every binding.
    pub fn open(path: &Path) -> Result<(Self, Bindings), StoreError> {
        let sql = |source| StoreError::Sqlite {
            path: path.to_owned(),
            source,
        };
        let corrupt = |why: String| StoreError::Corrupt {
            path: path.to_owned(),
            why,
        };
        let lock = StoreLock::acquire(path)?;
        let conn = Connection::open(path).map_err(sql)?;
        conn.execute_batch("PRAGMA journal_mode = DELETE; PRAGMA synchronous = FULL;")
            .map_err(|e| corrupt(e.to_string()))?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(|e| corrupt(e.to_string()))?;
        match version {
            0 => {
                conn.execute_batch(
                    "CREATE TABLE bindings (nick TEXT PRIMARY KEY, binding BLOB NOT NULL);",
                )
                .map_err(sql)?;
                conn.execute_batch(LATER_TABLES).map_err(sql)?;
                conn.pragma_update(None, "user_version", SCHEMA_VERSION)
                    .map_err(sql)?;
            }
            1..=3 => {
                // The tables first: a crash after schema 1's migration (which writes the
                // new version) must not leave a store at schema 4 without them.
                conn.execute_batch(LATER_TABLES).map_err(sql)?;
                if version == 1 {
                    migrate_v1(&conn).map_err(|e| match e {
                        Migration::Sql(source) => sql(source),
                        Migration::Decode(why) => corrupt(why),
                    })?;
                }
                conn.pragma_update(None, "user_version", SCHEMA_VERSION)
                    .map_err(sql)?;
            }
            SCHEMA_VERSION => {}
            found if found > SCHEMA_VERSION => {
                return Err(StoreError::NewerSchema {
                    path: path.to_owned(),
                    found,
                    supported: SCHEMA_VERSION,
                });
            }
            other => return Err(corrupt(format!("unknown schema {other}"))),
        }
        let stored: Vec<Binding> =
            read_all(&conn, path, "SELECT binding FROM bindings", "a binding")?;
        let revoked: Vec<OnionAddress> = read_all(
            &conn,
            path,
            "SELECT onion FROM revoked",
            "a revoked address",
        )?;
        let meta = |key: &str| -> Result<Option<u64>, StoreError> {
            conn.query_row("SELECT value FROM meta WHERE key = ?1", params![key], |r| {
                r.get::<_, i64>(0)
            })
            .optional()
            .map(|v| v.map(|v| v.max(0) as u64))
            .map_err(|e| corrupt(e.to_string()))
        };
        let clock = RegistryTime(meta("clock")?.unwrap_or(0));
        let last_wall = meta("wall")?.map(WallTime);
        let store = Self {
            path: path.to_owned(),
            conn,
            last_wall,
            _lock: lock,
        };
        Ok((store, Bindings::from_stored(stored, revoked, clock)))
    }

    /// The wall-clock time when the registry last stored its clock (about when it last
    /// ran), to notice a wall clock that went back or jumped while it was down.
    pub fn last_wall(&self) -> Option<WallTime> {
        self.last_wall
    }

    /// Whether the store takes writes (after one failed): a write of the size of a page,
    /// taken away again.
    pub fn writable(&mut self) -> Result<(), StoreError> {
        self.conn
            .execute_batch(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('write probe', zeroblob(8192));
                 DELETE FROM meta WHERE key = 'write probe';",
            )
            .map_err(|source| StoreError::Sqlite {
                path: self.path.clone(),
                source,
            })
    }

    /// Every binding as stored (after a write failed: what the registry goes on from).
    pub fn bindings(&self) -> Result<Bindings, StoreError> {
        let stored: Vec<Binding> = read_all(
            &self.conn,
            &self.path,
            "SELECT binding FROM bindings",
            "a binding",
        )?;
        let revoked: Vec<OnionAddress> = read_all(
            &self.conn,
            &self.path,
            "SELECT onion FROM revoked",
            "a revoked address",
        )?;
        let clock: Option<i64> = self
            .conn
            .query_row("SELECT value FROM meta WHERE key = 'clock'", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|source| StoreError::Sqlite {
                path: self.path.clone(),
                source,
            })?;
        let clock = RegistryTime(clock.map_or(0, |c| c.max(0) as u64));
        Ok(Bindings::from_stored(stored, revoked, clock))
    }

    /// Applies `ops` in one transaction.
    pub fn apply(&mut self, ops: &[BindingOp]) -> Result<(), StoreError> {
        let path = self.path.clone();
        let sql = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(sql)?;
        for op in ops {
            match op {
                BindingOp::Bind(b) => {
                    let bytes = postcard::to_allocvec(b)
                        .map_err(|e| StoreError::Crypto(format!("cannot encode a binding: {e}")))?;
                    tx.execute(
                        "INSERT OR REPLACE INTO bindings (nick, binding) VALUES (?1, ?2)",
                        params![b.nick.canonical(), bytes],
                    )
                    .map_err(sql)?;
                }
                BindingOp::Release(nick) => {
                    tx.execute(
                        "DELETE FROM bindings WHERE nick = ?1",
                        params![nick.canonical()],
                    )
                    .map_err(sql)?;
                }
                BindingOp::Revoke(nick) => {
                    let binding: Option<Vec<u8>> = tx
                        .query_row(
                            "SELECT binding FROM bindings WHERE nick = ?1",
                            params![nick.canonical()],
                            |r| r.get(0),
                        )
                        .optional()
                        .map_err(sql)?;
                    let Some(bytes) = binding else { continue };
                    let binding: Binding =
                        postcard::from_bytes(&bytes).map_err(|e| StoreError::Corrupt {
                            path: path.clone(),
                            why: format!("a binding does not decode: {e}"),
                        })?;
                    let onion = postcard::to_allocvec(&binding.onion).map_err(|e| {
                        StoreError::Crypto(format!("cannot encode an address: {e}"))
                    })?;
                    tx.execute(
                        "INSERT OR IGNORE INTO revoked (onion) VALUES (?1)",
                        params![onion],
                    )
                    .map_err(sql)?;
                    tx.execute(
                        "DELETE FROM bindings WHERE nick = ?1",
                        params![nick.canonical()],
                    )
                    .map_err(sql)?;
                }
                BindingOp::Clock(t) => {
                    let wall = crate::local::wall_clock();
                    tx.execute(
                        "INSERT OR REPLACE INTO meta (key, value) VALUES ('clock', ?1), ('wall', ?2)",
                        params![t.0.min(i64::MAX as u64) as i64, wall.0.min(i64::MAX as u64) as i64],
                    )
                    .map_err(sql)?;
                }
            }
        }
        tx.commit().map_err(sql)
    }
}

/// Every row `query` selects (one postcard blob each), decoded; `what` names one in an
/// error.
fn read_all<T: serde::de::DeserializeOwned>(
    conn: &Connection,
    path: &Path,
    query: &str,
    what: &str,
) -> Result<Vec<T>, StoreError> {
    let corrupt = |why: String| StoreError::Corrupt {
        path: path.to_owned(),
        why,
    };
    let mut stmt = conn.prepare(query).map_err(|source| StoreError::Sqlite {
        path: path.to_owned(),
        source,
    })?;
    let rows = stmt
        .query_map([], |r| r.get::<_, Vec<u8>>(0))
        .map_err(|e| corrupt(e.to_string()))?;
    let mut out = Vec::new();
    for row in rows {
        let bytes = row.map_err(|e| corrupt(e.to_string()))?;
        out.push(
            postcard::from_bytes(&bytes)
                .map_err(|e| corrupt(format!("{what} does not decode: {e}")))?,
        );
    }
    Ok(out)
}

/// Why a migration failed.
enum Migration {
    Sql(rusqlite::Error),
    Decode(String),
}

/// Schema 1 → 2: every binding gets serial 0, in one transaction (all or nothing).
fn migrate_v1(conn: &Connection) -> Result<(), Migration> {
    let tx = conn.unchecked_transaction().map_err(Migration::Sql)?;
    let rows: Vec<(String, Vec<u8>)> = {
        let mut stmt = tx
            .prepare("SELECT nick, binding FROM bindings")
            .map_err(Migration::Sql)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(Migration::Sql)?;
        rows.collect::<Result<_, _>>().map_err(Migration::Sql)?
    };
    for (nick, bytes) in rows {
        let old: BindingV1 = postcard::from_bytes(&bytes)
            .map_err(|e| Migration::Decode(format!("a schema 1 binding does not decode: {e}")))?;
        let new = postcard::to_allocvec(&Binding::from(old))
            .map_err(|e| Migration::Decode(format!("cannot encode a binding: {e}")))?;
        tx.execute(
            "UPDATE bindings SET binding = ?2 WHERE nick = ?1",
            params![nick, new],
        )
        .map_err(Migration::Sql)?;
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)
        .map_err(Migration::Sql)?;
    tx.commit().map_err(Migration::Sql)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "p2pchat-registry-store-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d.join(REGISTRY_STORE_FILE)
    }

    #[test]
    fn a_schema_1_store_is_migrated_with_serial_zero_and_reopens_as_schema_2() {
        let path = scratch("v1");
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/registry-v1.db");
        std::fs::copy(fixture, &path).unwrap();
        let bob = p2pchat_core::test_keys::identity(1, "bob");
        let expected = Binding {
            nick: bob.nick.clone(),
            onion: bob.address(),
            fingerprint: bob.rsa.public().fingerprint(),
            last_seen: RegistryTime(1_700_000_000_000),
            serial: 0,
        };
        let (_, bindings) = RegistryStore::open(&path).unwrap();
        assert_eq!(bindings.of_nick("bob"), Some(&expected));
        let (_, again) = RegistryStore::open(&path).unwrap();
        assert_eq!(again, bindings);
        let conn = Connection::open(&path).unwrap();
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
    }

    #[test]
    fn bindings_with_serials_come_back_as_stored() {
        let path = scratch("serials");
        let bob = p2pchat_core::test_keys::identity(1, "bob");
        let binding = Binding {
            nick: bob.nick.clone(),
            onion: bob.address(),
            fingerprint: bob.rsa.public().fingerprint(),
            last_seen: RegistryTime(5),
            serial: 3,
        };
        let (mut store, _) = RegistryStore::open(&path).unwrap();
        store.apply(&[BindingOp::Bind(binding.clone())]).unwrap();
        drop(store);
        let (_, bindings) = RegistryStore::open(&path).unwrap();
        assert_eq!(bindings.of_nick("bob"), Some(&binding));
    }

    #[test]
    fn the_registry_clock_comes_back_as_stored_and_never_behind_a_binding() {
        let path = scratch("clock");
        let bob = p2pchat_core::test_keys::identity(1, "bob");
        let (mut store, bindings) = RegistryStore::open(&path).unwrap();
        assert_eq!(bindings.clock(), RegistryTime(0));
        assert_eq!(store.last_wall(), None);
        store
            .apply(&[BindingOp::Clock(RegistryTime(7_000))])
            .unwrap();
        drop(store);
        let (mut store, bindings) = RegistryStore::open(&path).unwrap();
        assert_eq!(bindings.clock(), RegistryTime(7_000));
        assert!(store.last_wall().is_some());
        // A binding seen later than the stored clock (a crash before the clock was stored
        // again) moves the clock up to it.
        store
            .apply(&[BindingOp::Bind(Binding {
                nick: bob.nick.clone(),
                onion: bob.address(),
                fingerprint: bob.rsa.public().fingerprint(),
                last_seen: RegistryTime(9_000),
                serial: 0,
            })])
            .unwrap();
        assert_eq!(store.bindings().unwrap().clock(), RegistryTime(9_000));
        store.writable().unwrap();
    }
}
