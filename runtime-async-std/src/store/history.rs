//! History rows: each contact's messages in the order they were stored, numbered by
//! position (1, 2, …) with the position sealed into each row, and a sealed head per
//! contact that says how many positions there are. Reading checks every position it
//! shows: a row that is missing, doubled or moved, and a head that does not open, are
//! shown as such — never as a shorter history that looks whole.
//!
//! The index SQLite keeps over positions is only a way to find rows quickly: when it
//! misses rows, the table itself is read without it before anything is called missing.

use p2pchat_core::nick::Nick;
use p2pchat_core::peer::Outcome;
use rusqlite::{Connection, OptionalExtension, params};

use super::sqlite::{RowError, encode};
use super::vault::Vault;
use super::{HistoryEntry, HistoryItem, StoreError};

/// The table and its indexes, as schema 4 has them.
pub(super) const SCHEMA: &str = "
    CREATE TABLE history (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, tag BLOB NOT NULL,
        outgoing INTEGER NOT NULL, id INTEGER NOT NULL, entry BLOB NOT NULL,
        pos INTEGER NOT NULL
    );
    CREATE INDEX history_by_pos ON history (tag, pos);
    CREATE INDEX history_by_id ON history (tag, outgoing, id);
    CREATE TABLE history_heads (tag BLOB PRIMARY KEY, head BLOB NOT NULL);
";

/// Associated data of a row: whose, where, which direction and id.
pub(super) fn row_aad(tag: &[u8], pos: u64, outgoing: bool, id: u64) -> Vec<u8> {
    [
        b"history v4\0".as_slice(),
        tag,
        &pos.to_be_bytes(),
        &[outgoing as u8],
        &id.to_be_bytes(),
    ]
    .concat()
}

fn head_aad(tag: &[u8]) -> Vec<u8> {
    [b"history head\0".as_slice(), tag].concat()
}

fn damaged(why: &str) -> RowError {
    RowError::Store(StoreError::Crypto(why.into()))
}

/// How many positions `tag`'s history has (0 if none); `None` if its head does not open.
fn head(conn: &Connection, vault: &Vault, tag: &[u8]) -> Result<Option<u64>, RowError> {
    let sealed: Option<Vec<u8>> = conn
        .query_row(
            "SELECT head FROM history_heads WHERE tag = ?1",
            params![tag],
            |r| r.get(0),
        )
        .optional()?;
    let Some(sealed) = sealed else {
        return Ok(Some(0));
    };
    Ok(vault
        .open(&head_aad(tag), &sealed)
        .and_then(|plain| postcard::from_bytes::<u64>(&plain).ok()))
}

pub(super) fn set_head(
    conn: &Connection,
    vault: &Vault,
    tag: &[u8],
    count: u64,
) -> Result<(), RowError> {
    let sealed = vault.seal(&head_aad(tag), &encode(&count)?)?;
    conn.execute(
        "INSERT OR REPLACE INTO history_heads (tag, head) VALUES (?1, ?2)",
        params![tag, sealed],
    )?;
    Ok(())
}

/// The highest position stored for `tag`, read from the table itself.
fn last_pos(conn: &Connection, tag: &[u8]) -> Result<u64, RowError> {
    let last: Option<i64> = conn.query_row(
        "SELECT MAX(pos) FROM history NOT INDEXED WHERE tag = ?1",
        params![tag],
        |r| r.get(0),
    )?;
    Ok(last.map_or(0, |p| p.max(0) as u64))
}

/// Appends `entry` at the next position of its contact's history.
pub(super) fn insert(
    conn: &Connection,
    vault: &Vault,
    entry: &HistoryEntry,
) -> Result<(), RowError> {
    let tag = vault.row_key("history", &entry.nick.canonical());
    // A head that does not open, or one behind the rows (rolled back), must not make a
    // new row share a position with an old one.
    let count = match head(conn, vault, &tag)? {
        Some(count) => count,
        None => last_pos(conn, &tag)?,
    };
    let pos = count.saturating_add(1);
    let sealed = vault.seal(
        &row_aad(&tag, pos, entry.outgoing, entry.id),
        &encode(entry)?,
    )?;
    conn.execute(
        "INSERT INTO history (tag, outgoing, id, entry, pos) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            tag,
            entry.outgoing as i64,
            entry.id as i64,
            sealed,
            pos as i64
        ],
    )?;
    set_head(conn, vault, &tag, pos)
}

/// Records the outcome of our message `id` to `to` in its row.
pub(super) fn resolve(
    conn: &Connection,
    vault: &Vault,
    to: &Nick,
    id: u64,
    outcome: &Outcome,
) -> Result<(), RowError> {
    let tag = vault.row_key("history", &to.canonical());
    let find = |indexed: bool| -> Result<Option<(i64, i64, Vec<u8>)>, rusqlite::Error> {
        let sql = if indexed {
            "SELECT seq, pos, entry FROM history WHERE tag = ?1 AND outgoing = 1 AND id = ?2 ORDER BY seq DESC LIMIT 1"
        } else {
            "SELECT seq, pos, entry FROM history NOT INDEXED WHERE tag = ?1 AND outgoing = 1 AND id = ?2 ORDER BY seq DESC LIMIT 1"
        };
        conn.query_row(sql, params![tag, id as i64], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()
    };
    // Not found by the index: looked for in the table before it counts as absent.
    let Some((seq, pos, sealed)) = find(true)?.map_or_else(|| find(false), |row| Ok(Some(row)))?
    else {
        // Queued while history was off.
        return Ok(());
    };
    let aad = row_aad(&tag, pos.max(0) as u64, true, id);
    let Some(plain) = vault.open(&aad, &sealed) else {
        // The row is damaged: it stays marked as damaged rather than the whole write
        // failing (the outcome is in the outbox's record either way).
        return Ok(());
    };
    let mut entry: HistoryEntry = postcard::from_bytes(&plain)
        .map_err(|e| damaged(&format!("a history entry does not decode: {e}")))?;
    entry.outcome = Some(outcome.clone());
    let sealed = vault.seal(&aad, &encode(&entry)?)?;
    conn.execute(
        "UPDATE history SET entry = ?2 WHERE seq = ?1",
        params![seq, sealed],
    )?;
    Ok(())
}

/// A row as read, before it is checked.
struct Row {
    pos: u64,
    outgoing: bool,
    id: u64,
    entry: Vec<u8>,
}

fn rows_from(
    conn: &Connection,
    tag: &[u8],
    first: u64,
    indexed: bool,
) -> Result<Vec<Row>, rusqlite::Error> {
    let sql = if indexed {
        "SELECT pos, outgoing, id, entry FROM history WHERE tag = ?1 AND pos >= ?2 ORDER BY pos, seq"
    } else {
        "SELECT pos, outgoing, id, entry FROM history NOT INDEXED WHERE tag = ?1 AND pos >= ?2 ORDER BY pos, seq"
    };
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(params![tag, first as i64], |r| {
        Ok(Row {
            pos: r.get::<_, i64>(0)?.max(0) as u64,
            outgoing: r.get::<_, i64>(1)? != 0,
            id: r.get::<_, i64>(2)?.max(0) as u64,
            entry: r.get(3)?,
        })
    })?;
    rows.collect()
}

/// The last `limit` positions of `nick`'s history, oldest first, each checked.
pub(super) fn read(
    conn: &Connection,
    vault: &Vault,
    nick: &Nick,
    limit: usize,
) -> Result<Vec<HistoryItem>, RowError> {
    let tag = vault.row_key("history", &nick.canonical());
    let head = head(conn, vault, &tag)?;
    // Positions up to the head must all have rows; a row beyond it is shown (opened, or
    // marked damaged) but no gap beyond it is called missing. With a head that does not
    // open, the table says how far the rows go.
    let end = match head {
        Some(count) => count,
        None => last_pos(conn, &tag)?,
    };
    let first = end.saturating_sub(limit as u64).saturating_add(1);
    let mut items = check(vault, &tag, first, end, rows_from(conn, &tag, first, true)?);
    if items
        .iter()
        .any(|i| matches!(i, HistoryItem::Missing { .. }))
    {
        // The index may be what is damaged: the table itself decides.
        let scanned = check(
            vault,
            &tag,
            first,
            end,
            rows_from(conn, &tag, first, false)?,
        );
        if scanned != items {
            tracing::warn!(
                "the history index of the store is damaged; history was read without it"
            );
            items = scanned;
        }
    }
    if head.is_none() {
        items.push(HistoryItem::EndUnknown);
    }
    Ok(items)
}

/// Checks `rows` (sorted by position) against positions `first..=end`, each of which
/// must have one. Positions and the head come from the file (a plain store's are not
/// sealed): arithmetic on them saturates.
fn check(vault: &Vault, tag: &[u8], first: u64, end: u64, rows: Vec<Row>) -> Vec<HistoryItem> {
    let mut items = Vec::new();
    let mut next = first;
    for row in rows {
        if row.pos < next {
            // A second row at a position already shown: a copy of one, or another row
            // moved there; either way what was shown at that position is in doubt.
            if let Some(last) = items.last_mut()
                && !matches!(last, HistoryItem::Damaged { .. })
                && open(vault, tag, &row) != Some(last.clone())
            {
                *last = HistoryItem::Damaged {
                    outgoing: row.outgoing,
                    id: row.id,
                };
            }
            continue;
        }
        if row.pos > next && next <= end {
            items.push(HistoryItem::Missing {
                count: row.pos.min(end.saturating_add(1)) - next,
            });
        }
        next = row.pos.saturating_add(1);
        items.push(open(vault, tag, &row).unwrap_or(HistoryItem::Damaged {
            outgoing: row.outgoing,
            id: row.id,
        }));
    }
    if next <= end {
        items.push(HistoryItem::Missing {
            count: end.saturating_add(1) - next,
        });
    }
    items
}

fn open(vault: &Vault, tag: &[u8], row: &Row) -> Option<HistoryItem> {
    let plain = vault.open(&row_aad(tag, row.pos, row.outgoing, row.id), &row.entry)?;
    postcard::from_bytes::<HistoryEntry>(&plain)
        .ok()
        .map(HistoryItem::Entry)
}

/// Schema 3 → 4: every row gets its position (the order it was stored in), is sealed
/// again with it, and every contact gets its head. A row that did not open before keeps
/// its old seal (it stays damaged, in its place).
pub(super) fn migrate_from_v3(conn: &Connection, vault: &Vault) -> Result<(), RowError> {
    conn.execute_batch(
        "ALTER TABLE history ADD COLUMN pos INTEGER NOT NULL DEFAULT 0;
         DROP INDEX IF EXISTS history_by_contact;
         CREATE TABLE history_heads (tag BLOB PRIMARY KEY, head BLOB NOT NULL);",
    )?;
    let rows = stored_rows(
        conn,
        "SELECT seq, tag, 0, outgoing, id, entry FROM history ORDER BY tag, seq",
    )?;
    let mut current: Option<(Vec<u8>, u64)> = None;
    for StoredRow {
        seq,
        tag,
        outgoing,
        id,
        entry: sealed,
        ..
    } in rows
    {
        let pos = match &mut current {
            Some((t, count)) if *t == tag => {
                *count += 1;
                *count
            }
            _ => {
                if let Some((t, count)) = current.take() {
                    set_head(conn, vault, &t, count)?;
                }
                current = Some((tag.clone(), 1));
                1
            }
        };
        let entry = match vault.open(&v3_row_aad(&tag, outgoing, id), &sealed) {
            Some(plain) => vault.seal(&row_aad(&tag, pos, outgoing, id), &plain)?,
            None => sealed,
        };
        conn.execute(
            "UPDATE history SET pos = ?2, entry = ?3 WHERE seq = ?1",
            params![seq, pos as i64, entry],
        )?;
    }
    if let Some((t, count)) = current {
        set_head(conn, vault, &t, count)?;
    }
    conn.execute_batch("CREATE INDEX history_by_pos ON history (tag, pos);")?;
    Ok(())
}

/// A whole row, for rewriting every row.
struct StoredRow {
    seq: i64,
    tag: Vec<u8>,
    pos: u64,
    outgoing: bool,
    id: u64,
    entry: Vec<u8>,
}

/// Every row `sql` selects (seq, tag, pos, outgoing, id, entry).
fn stored_rows(conn: &Connection, sql: &str) -> Result<Vec<StoredRow>, rusqlite::Error> {
    let mut stmt = conn.prepare(sql)?;
    let rows = stmt.query_map([], |r| {
        Ok(StoredRow {
            seq: r.get(0)?,
            tag: r.get(1)?,
            pos: r.get::<_, i64>(2)?.max(0) as u64,
            outgoing: r.get::<_, i64>(3)? != 0,
            id: r.get::<_, i64>(4)?.max(0) as u64,
            entry: r.get(5)?,
        })
    })?;
    rows.collect()
}

/// Schema 1 to 3's associated data of a row (no position).
fn v3_row_aad(tag: &[u8], outgoing: bool, id: u64) -> Vec<u8> {
    [
        b"history\0".as_slice(),
        tag,
        &[outgoing as u8],
        &id.to_be_bytes(),
    ]
    .concat()
}

/// Seals every row and head again from `old` to `new` (a new passphrase): the tags change
/// with the row key. A row that does not open is refused: nothing is changed.
pub(super) fn reseal(conn: &Connection, old: &Vault, new: &Vault) -> Result<(), RowError> {
    let rows = stored_rows(
        conn,
        "SELECT seq, tag, pos, outgoing, id, entry FROM history",
    )?;
    // A head keeps its count (rows deleted from the end stay missing after the change).
    let old_heads: std::collections::BTreeMap<Vec<u8>, u64> = {
        let mut stmt = conn.prepare("SELECT tag, head FROM history_heads")?;
        let heads = stmt.query_map([], |r| {
            Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, Vec<u8>>(1)?))
        })?;
        heads
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .filter_map(|(tag, sealed)| {
                let count = old
                    .open(&head_aad(&tag), &sealed)
                    .and_then(|plain| postcard::from_bytes::<u64>(&plain).ok())?;
                Some((tag, count))
            })
            .collect()
    };
    let mut heads = std::collections::BTreeMap::new();
    for StoredRow {
        seq,
        tag,
        pos,
        outgoing,
        id,
        entry: sealed,
    } in rows
    {
        let plain = old
            .open(&row_aad(&tag, pos, outgoing, id), &sealed)
            .ok_or_else(|| damaged("a history entry does not open"))?;
        let parsed: HistoryEntry = postcard::from_bytes(&plain)
            .map_err(|e| damaged(&format!("a history entry does not decode: {e}")))?;
        let new_tag = new.row_key("history", &parsed.nick.canonical());
        let head = heads
            .entry(new_tag.clone())
            .or_insert_with(|| old_heads.get(&tag).copied().unwrap_or(0));
        *head = (*head).max(pos);
        conn.execute(
            "UPDATE history SET tag = ?2, entry = ?3 WHERE seq = ?1",
            params![
                seq,
                new_tag,
                new.seal(&row_aad(&new_tag, pos, outgoing, id), &plain)?
            ],
        )?;
    }
    conn.execute("DELETE FROM history_heads", [])?;
    for (tag, count) in heads {
        set_head(conn, new, &tag, count)?;
    }
    Ok(())
}
