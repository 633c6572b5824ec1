//! The registry server's store: nick bindings in SQLite (nothing secret: the registry
//! publishes who holds which nick anyway), applied before any later output.

use std::path::{Path, PathBuf};

use p2pchat_core::registry::{Binding, BindingOp, Bindings};
use rusqlite::{Connection, params};

use super::StoreError;

/// The registry's database file name inside its data directory.
pub const REGISTRY_STORE_FILE: &str = "registry.db";

/// Schema version of the registry store.
const SCHEMA_VERSION: i64 = 1;

/// The registry's bindings on disk.
pub struct RegistryStore {
    path: PathBuf,
    conn: Connection,
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
        let stored: Vec<Binding> = {
            let mut stmt = conn.prepare("SELECT binding FROM bindings").map_err(sql)?;
            let rows = stmt
                .query_map([], |r| r.get::<_, Vec<u8>>(0))
                .map_err(|e| corrupt(e.to_string()))?;
            let mut out = Vec::new();
            for row in rows {
                let bytes = row.map_err(|e| corrupt(e.to_string()))?;
                out.push(
                    postcard::from_bytes(&bytes)
                        .map_err(|e| corrupt(format!("a binding does not decode: {e}")))?,
                );
            }
            out
        };
        let store = Self {
            path: path.to_owned(),
            conn,
        };
        Ok((store, Bindings::from_stored(stored)))
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
            }
        }
        tx.commit().map_err(sql)
    }
}
