//! The engines under test, behind one small interface.

use crate::sqlite::SqliteCache;
use anyhow::{anyhow, Context, Result};
use diskcache::{Cache, EvictionPolicy, SyncLevel};
use redb::{Durability, ReadableDatabase, ReadableTable, TableDefinition};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// size_limit for workloads that must not cull, the same for every engine (python-diskcache
/// stores it in an SQLite INTEGER, so it must fit in an i64).
pub const UNLIMITED: u64 = 1 << 62;

/// One engine configuration, as named in the output.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum Engine {
    /// diskcache-rs at the default sync level.
    Rs,
    /// diskcache-rs with `SyncLevel::Full` (fsync per commit).
    RsFull,
    /// python-diskcache's schema and statements on rusqlite with bundled SQLite.
    Sqlite,
    /// redb with `Durability::Immediate` (fsync per commit).
    Redb,
    /// redb with `Durability::None`.
    RedbNoSync,
    /// python-diskcache itself, through pydc_bench.py.
    Python,
}

impl Engine {
    pub const ALL: [Engine; 6] = [
        Engine::Rs,
        Engine::RsFull,
        Engine::Sqlite,
        Engine::Redb,
        Engine::RedbNoSync,
        Engine::Python,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Engine::Rs => "diskcache-rs",
            Engine::RsFull => "diskcache-rs (SyncLevel::Full)",
            Engine::Sqlite => "SQLite build",
            Engine::Redb => "redb (fsync)",
            Engine::RedbNoSync => "redb (no fsync)",
            Engine::Python => "python-diskcache",
        }
    }

    pub fn id(self) -> &'static str {
        match self {
            Engine::Rs => "rs",
            Engine::RsFull => "rs-full",
            Engine::Sqlite => "sqlite",
            Engine::Redb => "redb",
            Engine::RedbNoSync => "redb-nosync",
            Engine::Python => "python",
        }
    }

    pub fn from_id(s: &str) -> Option<Engine> {
        Engine::ALL.into_iter().find(|e| e.id() == s)
    }

    /// Whether many processes may use one cache directory at once.
    pub fn multi_process(self) -> bool {
        !matches!(self, Engine::Redb | Engine::RedbNoSync)
    }
}

/// How to open a store.
#[derive(Clone, Copy, Debug, Default)]
pub struct Opts {
    /// Eviction policy to set: None keeps the stored (or default) one; Some(true) is
    /// least-recently-used (so a get also writes the access time), Some(false)
    /// least-recently-stored.
    pub lru: Option<bool>,
    /// Set size_limit to [`UNLIMITED`] (else keep the stored or default one).
    pub unlimited: bool,
}

/// The operations the workloads time.
pub trait Store {
    /// Sets `key` to `value` (its own transaction).
    fn set(&mut self, key: &[u8], value: &[u8]) -> Result<()>;
    /// The value of `key` (under LRU, also records the access as the engine does).
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// Deletes `key`; false if it was absent.
    fn delete(&mut self, key: &[u8]) -> Result<bool>;
    /// Sets every key to `value` in one transaction.
    fn set_many(&mut self, keys: &[Vec<u8>], value: &[u8]) -> Result<()>;
    /// Closes the store, making everything durable that the engine makes durable on close.
    fn close(self: Box<Self>) -> Result<()> {
        Ok(())
    }
}

/// Opens `engine`'s store in `dir` (created if needed). Not for [`Engine::Python`].
pub fn open(engine: Engine, dir: &Path, opts: Opts) -> Result<Box<dyn Store>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(match engine {
        Engine::Rs | Engine::RsFull => {
            let mut b = Cache::builder();
            if engine == Engine::RsFull {
                b = b.sync(SyncLevel::Full);
            }
            if opts.unlimited {
                b = b.size_limit(UNLIMITED);
            }
            match opts.lru {
                Some(true) => b = b.eviction_policy(EvictionPolicy::LeastRecentlyUsed),
                Some(false) => b = b.eviction_policy(EvictionPolicy::LeastRecentlyStored),
                None => {}
            }
            Box::new(RsStore(b.open(dir)?))
        }
        Engine::Sqlite => Box::new(SqliteCache::open(dir, opts)?),
        Engine::Redb | Engine::RedbNoSync => Box::new(RedbStore::open(
            dir,
            if engine == Engine::Redb {
                Durability::Immediate
            } else {
                Durability::None
            },
            opts.lru == Some(true),
        )?),
        Engine::Python => return Err(anyhow!("python-diskcache runs in its own process")),
    })
}

struct RsStore(Cache);

impl Store for RsStore {
    fn set(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        Ok(self.0.set(key, value)?)
    }
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.0.get::<Vec<u8>>(key)?)
    }
    fn delete(&mut self, key: &[u8]) -> Result<bool> {
        Ok(self.0.delete(key)?)
    }
    fn set_many(&mut self, keys: &[Vec<u8>], value: &[u8]) -> Result<()> {
        let c = &self.0;
        Ok(c.transact(|| {
            for k in keys {
                c.set(&k[..], value)?;
            }
            Ok(())
        })?)
    }
    fn close(self: Box<Self>) -> Result<()> {
        Ok(self.0.close()?)
    }
}

const KV: TableDefinition<&[u8], &[u8]> = TableDefinition::new("kv");
const ATIME: TableDefinition<&[u8], f64> = TableDefinition::new("access_time");

/// redb as a plain key-value table; under LRU a get is a write transaction that also
/// stores the access time in a second table.
struct RedbStore {
    db: redb::Database,
    durability: Durability,
    lru: bool,
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl RedbStore {
    fn open(dir: &Path, durability: Durability, lru: bool) -> Result<RedbStore> {
        let path = dir.join("redb.db");
        let db = if path.exists() {
            redb::Database::open(&path)?
        } else {
            let db = redb::Database::create(&path)?;
            // Create the tables, so a read never finds them missing.
            let tx = db.begin_write()?;
            tx.open_table(KV)?;
            tx.open_table(ATIME)?;
            tx.commit()?;
            db
        };
        Ok(RedbStore {
            db,
            durability,
            lru,
        })
    }

    fn write(&self) -> Result<redb::WriteTransaction> {
        let mut tx = self.db.begin_write()?;
        tx.set_durability(self.durability)?;
        Ok(tx)
    }
}

impl Store for RedbStore {
    fn set(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        let tx = self.write()?;
        tx.open_table(KV)?.insert(key, value)?;
        tx.commit()?;
        Ok(())
    }
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if !self.lru {
            let tx = self.db.begin_read()?;
            let t = tx.open_table(KV)?;
            return Ok(t.get(key)?.map(|v| v.value().to_vec()));
        }
        let tx = self.write()?;
        let v = tx.open_table(KV)?.get(key)?.map(|v| v.value().to_vec());
        if v.is_some() {
            tx.open_table(ATIME)?.insert(key, now())?;
        }
        tx.commit()?;
        Ok(v)
    }
    fn delete(&mut self, key: &[u8]) -> Result<bool> {
        let tx = self.write()?;
        let found = tx.open_table(KV)?.remove(key)?.is_some();
        if found {
            tx.open_table(ATIME)?.remove(key)?;
        }
        tx.commit()?;
        Ok(found)
    }
    fn set_many(&mut self, keys: &[Vec<u8>], value: &[u8]) -> Result<()> {
        let tx = self.write()?;
        {
            let mut t = tx.open_table(KV)?;
            for k in keys {
                t.insert(&k[..], value)?;
            }
        }
        tx.commit()?;
        Ok(())
    }
    fn close(self: Box<Self>) -> Result<()> {
        if matches!(self.durability, Durability::None) {
            // Non-durable commits reach the file only with a durable one.
            let mut tx = self.db.begin_write()?;
            tx.set_durability(Durability::Immediate)?;
            tx.commit()?;
        }
        Ok(())
    }
}
