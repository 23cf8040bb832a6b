//! "The SQLite build": python-diskcache's `Cache` (5.6.3) done in Rust on rusqlite with
//! bundled SQLite: its schema, settings, pragmas and the statements its `__init__`, `set`,
//! `get` (fast path, and the slow path under least-recently-used), `__delitem__`,
//! `transact` and `_cull` run, in the same order; values below its 32 KiB
//! `disk_min_file_size` inline, larger ones in random-named `.val` files written before the
//! transaction and removed after the commit, as its `Disk` does. Keys are bytes (raw = 1).

use crate::stores::{Opts, Store, UNLIMITED};
use anyhow::{anyhow, Context, Result};
use rusqlite::types::Value;
use rusqlite::{params, Connection, OptionalExtension};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const MODE_RAW: i64 = 1;
const MODE_BINARY: i64 = 2;
/// python-diskcache's `Cache(timeout=60)`.
const TIMEOUT: Duration = Duration::from_secs(60);

/// python-diskcache's DEFAULT_SETTINGS, in its order.
fn default_settings() -> Vec<(String, Value)> {
    let i = Value::Integer;
    let t = |v: &str| Value::Text(v.to_owned());
    vec![
        ("statistics".into(), i(0)),
        ("tag_index".into(), i(0)),
        ("eviction_policy".into(), t("least-recently-stored")),
        ("size_limit".into(), i(1 << 30)),
        ("cull_limit".into(), i(10)),
        ("sqlite_auto_vacuum".into(), i(1)),
        ("sqlite_cache_size".into(), i(1 << 13)),
        ("sqlite_journal_mode".into(), t("wal")),
        ("sqlite_mmap_size".into(), i(1 << 26)),
        ("sqlite_synchronous".into(), i(1)),
        ("disk_min_file_size".into(), i(1 << 15)),
        ("disk_pickle_protocol".into(), i(5)),
    ]
}

const METADATA: [&str; 4] = ["count", "size", "hits", "misses"];

/// The schema after the Settings table, as python-diskcache's `__init__` creates it
/// (the policy's index is added separately).
const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS Cache ( rowid INTEGER PRIMARY KEY, key BLOB, raw INTEGER, store_time REAL, expire_time REAL, access_time REAL, access_count INTEGER DEFAULT 0, tag BLOB, size INTEGER DEFAULT 0, mode INTEGER DEFAULT 0, filename TEXT, value BLOB);
CREATE UNIQUE INDEX IF NOT EXISTS Cache_key_raw ON Cache(key, raw);
CREATE INDEX IF NOT EXISTS Cache_expire_time ON Cache (expire_time);
"#;

const TRIGGERS: &str = r#"
CREATE TRIGGER IF NOT EXISTS Settings_count_insert AFTER INSERT ON Cache FOR EACH ROW BEGIN UPDATE Settings SET value = value + 1 WHERE key = "count"; END;
CREATE TRIGGER IF NOT EXISTS Settings_count_delete AFTER DELETE ON Cache FOR EACH ROW BEGIN UPDATE Settings SET value = value - 1 WHERE key = "count"; END;
CREATE TRIGGER IF NOT EXISTS Settings_size_insert AFTER INSERT ON Cache FOR EACH ROW BEGIN UPDATE Settings SET value = value + NEW.size WHERE key = "size"; END;
CREATE TRIGGER IF NOT EXISTS Settings_size_update AFTER UPDATE ON Cache FOR EACH ROW BEGIN UPDATE Settings SET value = value + NEW.size - OLD.size WHERE key = "size"; END;
CREATE TRIGGER IF NOT EXISTS Settings_size_delete AFTER DELETE ON Cache FOR EACH ROW BEGIN UPDATE Settings SET value = value - OLD.size WHERE key = "size"; END;
DROP INDEX IF EXISTS Cache_tag_rowid;
"#;

#[derive(Clone, Copy, PartialEq)]
enum Policy {
    LeastRecentlyStored,
    LeastRecentlyUsed,
}

/// A row as `get` selects it: rowid, mode, filename, value.
type Row = (i64, i64, Option<String>, Option<Vec<u8>>);
/// `Disk.store`'s result: size, mode, filename, value.
type Stored = (i64, i64, Option<String>, Option<Vec<u8>>);

pub struct SqliteCache {
    dir: PathBuf,
    con: Connection,
    page_size: i64,
    size_limit: i64,
    cull_limit: i64,
    min_file_size: usize,
    policy: Policy,
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn sql_literal(v: &Value) -> String {
    match v {
        Value::Integer(i) => i.to_string(),
        Value::Real(f) => f.to_string(),
        Value::Text(s) => s.clone(),
        Value::Null | Value::Blob(_) => "NULL".into(),
    }
}

/// `Cache.reset(key, value, update=False)` for an `sqlite_*` setting: read the pragma and
/// set it only if it differs.
fn apply_pragma(con: &Connection, key: &str, value: &Value) -> Result<()> {
    let Some(pragma) = key.strip_prefix("sqlite_") else {
        return Ok(());
    };
    let old: Option<Value> = con
        .query_row(&format!("PRAGMA {pragma}"), [], |r| r.get(0))
        .optional()?;
    if old.as_ref() != Some(value) {
        let mut st = con.prepare(&format!("PRAGMA {pragma} = {}", sql_literal(value)))?;
        let mut rows = st.query([])?;
        while rows.next()?.is_some() {}
    }
    Ok(())
}

fn connect(path: &Path) -> Result<Connection> {
    let con = Connection::open(path)?;
    con.busy_timeout(TIMEOUT)?;
    Ok(con)
}

fn settings(con: &Connection) -> rusqlite::Result<Vec<(String, Value)>> {
    con.prepare("SELECT key, value FROM Settings")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect()
}

impl SqliteCache {
    /// `Cache(directory, size_limit=..., eviction_policy=...)`: python-diskcache's
    /// `__init__`, statement by statement, then the reconnect its `close()` + `_con` do.
    pub fn open(dir: &Path, opts: Opts) -> Result<SqliteCache> {
        fs::create_dir_all(dir)?;
        let db = dir.join("cache.db");
        let con = connect(&db)?;
        let current = settings(&con).unwrap_or_default();
        let mut sets = default_settings();
        let mut update = |k: &str, v: Value| match sets.iter_mut().find(|(n, _)| n == k) {
            Some(slot) => slot.1 = v,
            None => sets.push((k.to_owned(), v)),
        };
        for (k, v) in current {
            update(&k, v);
        }
        if opts.unlimited {
            update("size_limit", Value::Integer(UNLIMITED as i64));
        }
        match opts.lru {
            Some(true) => update("eviction_policy", Value::Text("least-recently-used".into())),
            Some(false) => update(
                "eviction_policy",
                Value::Text("least-recently-stored".into()),
            ),
            None => {}
        }
        sets.retain(|(k, _)| !METADATA.contains(&k.as_str()));

        let mut sorted = sets.clone();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        for (k, v) in &sorted {
            apply_pragma(&con, k, v)?;
        }
        con.execute(
            "CREATE TABLE IF NOT EXISTS Settings ( key TEXT NOT NULL UNIQUE, value)",
            [],
        )?;
        for (k, v) in &sets {
            con.execute(
                "INSERT OR REPLACE INTO Settings VALUES (?, ?)",
                params![k, v],
            )?;
            con.execute("UPDATE Settings SET value = ? WHERE key = ?", params![v, k])?;
            apply_pragma(&con, k, v)?;
        }
        for k in METADATA {
            con.execute(
                "INSERT OR IGNORE INTO Settings VALUES (?, ?)",
                params![k, 0],
            )?;
            let _: Value = con.query_row("SELECT value FROM Settings WHERE key = ?", [k], |r| {
                r.get(0)
            })?;
        }
        let page_size: i64 = con.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        let get = |k: &str| sets.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let policy = match get("eviction_policy") {
            Some(Value::Text(s)) if s == "least-recently-used" => Policy::LeastRecentlyUsed,
            Some(Value::Text(s)) if s == "least-recently-stored" => Policy::LeastRecentlyStored,
            other => return Err(anyhow!("unsupported eviction policy {other:?}")),
        };
        let int = |k: &str| match get(k) {
            Some(Value::Integer(i)) => Ok(i),
            other => Err(anyhow!("setting {k}: {other:?}")),
        };
        let (size_limit, cull_limit) = (int("size_limit")?, int("cull_limit")?);
        let min_file_size = int("disk_min_file_size")? as usize;
        con.execute_batch(SCHEMA)?;
        con.execute_batch(match policy {
            Policy::LeastRecentlyStored => {
                "CREATE INDEX IF NOT EXISTS Cache_store_time ON Cache (store_time)"
            }
            Policy::LeastRecentlyUsed => {
                "CREATE INDEX IF NOT EXISTS Cache_access_time ON Cache (access_time)"
            }
        })?;
        con.execute_batch(TRIGGERS)?;
        drop(con);

        // The connection the cache then uses, with the per-connection pragmas re-applied
        // from Settings.
        let con = connect(&db)?;
        for (k, v) in &settings(&con)? {
            apply_pragma(&con, k, v)?;
        }
        Ok(SqliteCache {
            dir: dir.to_path_buf(),
            con,
            page_size,
            size_limit,
            cull_limit,
            min_file_size,
            policy,
        })
    }

    /// `Disk.store` for bytes: inline below min_file_size, else a new random-named file
    /// (exclusive create, up to 10 attempts, directories made on demand).
    fn store(&self, value: &[u8]) -> Result<Stored> {
        if value.len() < self.min_file_size {
            return Ok((0, MODE_RAW, None, Some(value.to_vec())));
        }
        let hex = format!("{:032x}", fastrand::u128(..));
        let name = format!("{}/{}/{}.val", &hex[..2], &hex[2..4], &hex[4..]);
        let full = self.dir.join(&name);
        let parent = full.parent().context("value file directory")?;
        let mut attempt = 1;
        loop {
            let _ = fs::create_dir_all(parent);
            match fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&full)
            {
                Ok(mut f) => {
                    f.write_all(value)?;
                    break;
                }
                Err(e) if attempt == 10 => return Err(e).context("writing a value file"),
                Err(_) => attempt += 1,
            }
        }
        Ok((value.len() as i64, MODE_BINARY, Some(name), None))
    }

    /// `Disk.remove`: the file, then empty directories upwards (`os.removedirs`), errors
    /// ignored.
    fn remove(&self, name: &str) {
        let full = self.dir.join(name);
        let _ = fs::remove_file(&full);
        let mut dir = full.parent();
        while let Some(d) = dir {
            if fs::remove_dir(d).is_err() {
                break;
            }
            dir = d.parent();
        }
    }

    /// `Disk.fetch` for MODE_RAW and MODE_BINARY; a missing file is a miss.
    fn fetch(
        &self,
        mode: i64,
        filename: Option<String>,
        value: Option<Vec<u8>>,
    ) -> Option<Vec<u8>> {
        match (mode, filename) {
            (MODE_BINARY, Some(f)) => fs::read(self.dir.join(f)).ok(),
            _ => value,
        }
    }

    /// `_transact`: BEGIN IMMEDIATE (a failure is a Timeout, and removes the value file
    /// just written), then COMMIT and the queued file removals, or ROLLBACK.
    fn transact<R>(
        &self,
        new_file: Option<&str>,
        f: impl FnOnce(&mut Vec<String>) -> Result<R>,
    ) -> Result<R> {
        if let Err(e) = self.con.execute_batch("BEGIN IMMEDIATE") {
            if let Some(name) = new_file {
                self.remove(name);
            }
            return Err(anyhow!("Timeout: {e}"));
        }
        let mut cleanup = Vec::new();
        match f(&mut cleanup) {
            Ok(r) => {
                self.con.execute_batch("COMMIT")?;
                for name in &cleanup {
                    self.remove(name);
                }
                Ok(r)
            }
            Err(e) => {
                let _ = self.con.execute_batch("ROLLBACK");
                Err(e)
            }
        }
    }

    /// The body of `set` inside its transaction: SELECT, UPDATE or INSERT, `_cull`.
    fn set_in_txn(
        &self,
        key: &[u8],
        now: f64,
        stored: &Stored,
        cleanup: &mut Vec<String>,
    ) -> Result<()> {
        let (size, mode, filename, value) = stored;
        let rows: Vec<(i64, Option<String>)> = self
            .con
            .prepare_cached("SELECT rowid, filename FROM Cache WHERE key = ? AND raw = ?")?
            .query_map(params![key, 1], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        if let Some((rowid, old)) = rows.into_iter().next() {
            cleanup.extend(old);
            self.con
                .prepare_cached(
                    "UPDATE Cache SET store_time = ?, expire_time = ?, access_time = ?, \
                     access_count = ?, tag = ?, size = ?, mode = ?, filename = ?, value = ? \
                     WHERE rowid = ?",
                )?
                .execute(params![
                    now,
                    None::<f64>,
                    now,
                    0,
                    None::<Vec<u8>>,
                    size,
                    mode,
                    filename,
                    value,
                    rowid
                ])?;
        } else {
            self.con
                .prepare_cached(
                    "INSERT INTO Cache( key, raw, store_time, expire_time, access_time, \
                     access_count, tag, size, mode, filename, value) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                )?
                .execute(params![
                    key,
                    1,
                    now,
                    None::<f64>,
                    now,
                    0,
                    None::<Vec<u8>>,
                    size,
                    mode,
                    filename,
                    value
                ])?;
        }
        self.cull(now, cleanup)
    }

    /// `_cull`: up to cull_limit expired rows, then, if volume() >= size_limit, rows in
    /// the policy's order.
    fn cull(&self, now: f64, cleanup: &mut Vec<String>) -> Result<()> {
        let mut limit = self.cull_limit;
        if limit == 0 {
            return Ok(());
        }
        let expired: Vec<Option<String>> = self
            .con
            .prepare_cached(
                "SELECT filename FROM Cache WHERE expire_time IS NOT NULL AND expire_time < ? \
                 ORDER BY expire_time LIMIT ?",
            )?
            .query_map(params![now, limit], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        if !expired.is_empty() {
            self.con
                .prepare_cached(
                    "DELETE FROM Cache WHERE rowid IN (SELECT rowid FROM Cache \
                     WHERE expire_time IS NOT NULL AND expire_time < ? \
                     ORDER BY expire_time LIMIT ?)",
                )?
                .execute(params![now, limit])?;
            limit -= expired.len() as i64;
            cleanup.extend(expired.into_iter().flatten());
            if limit == 0 {
                return Ok(());
            }
        }
        if self.volume()? < self.size_limit {
            return Ok(());
        }
        let (select, delete) = match self.policy {
            Policy::LeastRecentlyStored => (
                "SELECT filename FROM Cache ORDER BY store_time LIMIT ?",
                "DELETE FROM Cache WHERE rowid IN \
                 (SELECT rowid FROM Cache ORDER BY store_time LIMIT ?)",
            ),
            Policy::LeastRecentlyUsed => (
                "SELECT filename FROM Cache ORDER BY access_time LIMIT ?",
                "DELETE FROM Cache WHERE rowid IN \
                 (SELECT rowid FROM Cache ORDER BY access_time LIMIT ?)",
            ),
        };
        let rows: Vec<Option<String>> = self
            .con
            .prepare_cached(select)?
            .query_map([limit], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        if !rows.is_empty() {
            self.con.prepare_cached(delete)?.execute([limit])?;
            cleanup.extend(rows.into_iter().flatten());
        }
        Ok(())
    }

    /// `volume()`: page_count * page_size + the `size` setting (bytes in value files).
    fn volume(&self) -> Result<i64> {
        let pages: i64 = self
            .con
            .prepare_cached("PRAGMA page_count")?
            .query_row([], |r| r.get(0))?;
        let size: i64 = self
            .con
            .prepare_cached("SELECT value FROM Settings WHERE key = ?")?
            .query_row(["size"], |r| r.get(0))?;
        Ok(self.page_size * pages + size)
    }

    /// `get`'s SELECT of an unexpired row.
    fn select(&self, key: &[u8]) -> Result<Option<Row>> {
        let rows: Vec<Row> = self
            .con
            .prepare_cached(
                "SELECT rowid, expire_time, tag, mode, filename, value FROM Cache \
                 WHERE key = ? AND raw = ? AND (expire_time IS NULL OR expire_time > ?)",
            )?
            .query_map(params![key, 1, now()], |r| {
                Ok((r.get(0)?, r.get(3)?, r.get(4)?, r.get(5)?))
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows.into_iter().next())
    }
}

impl Store for SqliteCache {
    fn set(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        let now = now();
        let stored = self.store(value)?;
        let new_file = stored.2.clone();
        self.transact(new_file.as_deref(), |cleanup| {
            self.set_in_txn(key, now, &stored, cleanup)
        })
    }

    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if self.policy == Policy::LeastRecentlyStored {
            // Fast path: one SELECT, no transaction.
            return Ok(self
                .select(key)?
                .and_then(|(_, mode, f, v)| self.fetch(mode, f, v)));
        }
        // Slow path: BEGIN IMMEDIATE, SELECT, fetch, UPDATE access_time (the time is
        // formatted into the statement's text, as python-diskcache formats `{now}`).
        self.transact(None, |_| {
            let Some((rowid, mode, f, v)) = self.select(key)? else {
                return Ok(None);
            };
            let Some(value) = self.fetch(mode, f, v) else {
                return Ok(None);
            };
            let sql = format!("UPDATE Cache SET access_time = {} WHERE rowid = ?", now());
            self.con.execute(&sql, [rowid])?;
            Ok(Some(value))
        })
    }

    fn delete(&mut self, key: &[u8]) -> Result<bool> {
        // __delitem__ raises KeyError inside the transaction (so a ROLLBACK); delete()
        // turns it into False.
        let r = self.transact(None, |cleanup| {
            let row: Option<(i64, Option<String>)> = self
                .con
                .prepare_cached(
                    "SELECT rowid, filename FROM Cache WHERE key = ? AND raw = ? \
                     AND (expire_time IS NULL OR expire_time > ?)",
                )?
                .query_map(params![key, 1, now()], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()?
                .into_iter()
                .next();
            let Some((rowid, filename)) = row else {
                return Err(anyhow!(KeyMissing));
            };
            self.con
                .prepare_cached("DELETE FROM Cache WHERE rowid = ?")?
                .execute([rowid])?;
            cleanup.extend(filename);
            Ok(())
        });
        match r {
            Ok(()) => Ok(true),
            Err(e) if e.is::<KeyMissing>() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `with cache.transact(): for k in keys: cache.set(k, value)`: one BEGIN IMMEDIATE;
    /// each nested set writes its file first and removes replaced files at once (as the
    /// nested `_transact` does); one COMMIT.
    fn set_many(&mut self, keys: &[Vec<u8>], value: &[u8]) -> Result<()> {
        self.transact(None, |_| {
            for k in keys {
                let now = now();
                let stored = self.store(value)?;
                let mut cleanup = Vec::new();
                self.set_in_txn(k, now, &stored, &mut cleanup)?;
                for name in &cleanup {
                    self.remove(name);
                }
            }
            Ok(())
        })
    }
}

#[derive(Debug)]
struct KeyMissing;

impl std::fmt::Display for KeyMissing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("key missing")
    }
}

impl std::error::Error for KeyMissing {}
