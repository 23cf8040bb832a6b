//! A simulated file system that injects faults and crashes, for crash-consistency tests.
//!
//! It keeps, per file, what every process currently sees (the "page cache", shared through
//! mappings as on a real system) apart from what is durable (what the last `sync` saw), and
//! per directory which entries are durable (what the last `sync_dir` saw). A crash
//! ([`FaultyStorage::crash`]) then builds the state a machine would come back with:
//!
//! * [`CrashMode::PowerLoss`]: each file restarts from its durable bytes plus a random subset
//!   of the 512-byte sectors written since its last sync, one of them torn at a random byte;
//!   its length is the durable or the current one. Each directory entry created or removed
//!   since its directory's last sync may or may not have happened.
//! * [`CrashMode::Kill`]: every process dies, but everything written survives (the kernel's
//!   page cache outlives a `kill -9`).
//!
//! Every handle opened before the crash is dead afterwards: each call on it fails, and its
//! locks are gone. [`FaultyStorage::process`] gives handles of a separate simulated process,
//! which [`FaultyStorage::kill`] kills alone, and [`FaultyStorage::fork_into`] moves a
//! process's handles into a new child process, as `fork()` does to a handle the child
//! inherits: files opened before stay the parent's (the parent keeps its locks until it is
//! killed), and directory locks opened before are closed in the child. [`FaultyStorage::fail_after`] makes the n-th
//! counted operation (open for creation, write, set_len, sync, remove, sync_dir) and every one
//! after it fail with an I/O error, and [`FaultyStorage::set_space_limit`] makes writes that
//! would grow the total file size past a limit fail with `StorageFull`.

use super::{DirEntry, DirLocks, FsKind, LockKind, OpenMode, Storage, StorageFile};
use crate::sys::Region;
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

const SECTOR: usize = 512;

/// How a simulated crash treats unsynced data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashMode {
    /// The machine loses power: unsynced writes and directory changes may be lost.
    PowerLoss,
    /// Every process is killed; the operating system keeps everything written.
    Kill,
}

/// Settings of a [`FaultyStorage`].
#[derive(Clone, Debug)]
pub struct FaultConfig {
    /// Seed for the crash choices.
    pub seed: u64,
    /// The largest size a simulated file may reach (its mapping is reserved at this size).
    pub max_file_len: usize,
}

impl Default for FaultConfig {
    fn default() -> Self {
        FaultConfig {
            seed: 0,
            max_file_len: 64 << 20,
        }
    }
}

/// A simulated, fault-injecting file system; see the module documentation.
#[derive(Clone, Debug)]
pub struct FaultyStorage {
    shared: Arc<Shared>,
    /// The simulated process this view's handles belong to (shared by its clones, so that
    /// [`FaultyStorage::fork_into`] moves all of them).
    pid: Arc<AtomicU64>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    next_handle: AtomicU64,
    max_file_len: usize,
}

#[derive(Debug)]
struct State {
    generation: u64,
    rng: fastrand::Rng,
    ops: u64,
    fail_after: Option<(u64, io::ErrorKind)>,
    space_limit: Option<u64>,
    killed: HashSet<u64>,
    namespace: BTreeMap<PathBuf, Node>,
    durable: BTreeMap<PathBuf, Node>,
    /// Renames not yet made durable by syncing their directory, in order.
    renames: Vec<(PathBuf, PathBuf)>,
    next_inode: u64,
    faults: u64,
    /// Power losses so far (the simulated machine's boot number).
    boots: u32,
    fs_kind: FsKind,
    /// Syncs of files whose path ends with this fail.
    failing_syncs: Option<String>,
}

#[derive(Clone, Debug)]
enum Node {
    Dir,
    File(Arc<Inode>),
}

#[derive(Debug)]
struct Inode {
    id: u64,
    region: Arc<Region>,
    meta: Mutex<InodeMeta>,
}

#[derive(Debug, Default)]
struct InodeMeta {
    len: u64,
    durable: Vec<u8>,
    /// Directory locks on this file: presence by holder, and writer ids by holder. A holder
    /// is `pid << 40 | handle`, so that killing a process frees its locks.
    presence: HashMap<u64, LockKind>,
    ids: HashMap<u64, u64>,
}

#[derive(Debug)]
struct SimFile {
    inode: Arc<Inode>,
    shared: Arc<Shared>,
    path: PathBuf,
    pid: u64,
    generation: u64,
    read_only: bool,
}

/// A handle's directory locks (see [`DirLocks`]).
#[derive(Debug)]
struct SimLocks {
    inode: Arc<Inode>,
    shared: Arc<Shared>,
    /// The process that opened them, and the view whose process may change by a fork.
    pid: u64,
    view: Arc<AtomicU64>,
    holder: u64,
    generation: u64,
}

fn dead() -> io::Error {
    io::Error::other("simulated process is dead (crashed or killed)")
}

impl FaultyStorage {
    /// An empty simulated file system.
    pub fn new(config: FaultConfig) -> FaultyStorage {
        let mut namespace = BTreeMap::new();
        namespace.insert(PathBuf::from("/"), Node::Dir);
        let durable = namespace.clone();
        FaultyStorage {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    generation: 0,
                    rng: fastrand::Rng::with_seed(config.seed),
                    ops: 0,
                    fail_after: None,
                    space_limit: None,
                    killed: HashSet::new(),
                    namespace,
                    durable,
                    renames: Vec::new(),
                    next_inode: 1,
                    faults: 0,
                    boots: 1,
                    fs_kind: FsKind::Local,
                    failing_syncs: None,
                }),
                next_handle: AtomicU64::new(1),
                max_file_len: config.max_file_len,
            }),
            pid: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The same file system seen by another simulated process, `pid` (0 is the default one).
    pub fn process(&self, pid: u64) -> FaultyStorage {
        FaultyStorage {
            shared: Arc::clone(&self.shared),
            pid: Arc::new(AtomicU64::new(pid)),
        }
    }

    /// Simulates `fork()` for the handles opened through this view (and its clones): from
    /// now on they run in process `child`. What they opened before stays the parent's: its
    /// files and locks live on (until the parent is [killed](FaultyStorage::kill)), and the
    /// child sees its inherited directory locks closed, as the fork hook closes them.
    pub fn fork_into(&self, child: u64) {
        self.pid.store(child, Ordering::SeqCst);
    }

    /// The simulated process this view's handles belong to now.
    pub fn pid(&self) -> u64 {
        self.pid.load(Ordering::SeqCst)
    }

    /// Makes every sync of a file whose path ends with `suffix` fail with an I/O error (as a
    /// disk that drops the writes would), until called with `None`.
    pub fn fail_syncs_of(&self, suffix: Option<&str>) {
        self.shared.state.lock().failing_syncs = suffix.map(str::to_owned);
    }

    /// Makes [`Storage::fs_kind`] report `kind` (to test how the cache treats it).
    pub fn set_fs_kind(&self, kind: FsKind) {
        self.shared.state.lock().fs_kind = kind;
    }

    /// Kills one simulated process: its handles die and its locks are released. Its writes
    /// stay, as the kernel keeps them.
    pub fn kill(&self, pid: u64) {
        // Locks record their holder's pid, and `try_lock` ignores those of killed processes.
        self.shared.state.lock().killed.insert(pid);
    }

    /// Brings a killed process id back into use (new handles work again).
    pub fn revive(&self, pid: u64) {
        self.shared.state.lock().killed.remove(&pid);
    }

    /// Simulates a crash of the whole machine (or of every process); see [`CrashMode`].
    pub fn crash(&self, mode: CrashMode) {
        let mut st = self.shared.state.lock();
        st.generation += 1;
        if mode == CrashMode::PowerLoss {
            st.boots += 1;
        }
        st.killed.clear();
        st.fail_after = None;
        let max = self.shared.max_file_len;
        match mode {
            CrashMode::Kill => {
                let mut namespace = BTreeMap::new();
                for (path, node) in &st.namespace {
                    let node = match node {
                        Node::Dir => Node::Dir,
                        Node::File(inode) => {
                            let m = inode.meta.lock();
                            let len = m.len;
                            let bytes = inode.bytes(len);
                            drop(m);
                            Node::File(Inode::with_content(inode.id, &bytes, max, bytes.clone()))
                        }
                    };
                    namespace.insert(path.clone(), node);
                }
                // After a kill the page cache is intact, but it is not durable: the durable
                // image stays what it was for a later power loss.
                let mut durable = BTreeMap::new();
                for (path, node) in &st.durable {
                    let node = match node {
                        Node::Dir => Node::Dir,
                        Node::File(inode) => match namespace.get(path) {
                            Some(Node::File(new)) if new.id == inode.id => {
                                let d = inode.meta.lock().durable.clone();
                                new.meta.lock().durable = d;
                                Node::File(Arc::clone(new))
                            }
                            _ => {
                                let d = inode.meta.lock().durable.clone();
                                Node::File(Inode::with_content(inode.id, &d, max, d.clone()))
                            }
                        },
                    };
                    durable.insert(path.clone(), node);
                }
                st.namespace = namespace;
                st.durable = durable;
                st.renames.clear();
            }
            CrashMode::PowerLoss => {
                let st = &mut *st;
                let mut namespace: BTreeMap<PathBuf, Node> = BTreeMap::new();
                // A rename is atomic: it happened (its target holds the file, its source is
                // gone) or it did not (each name keeps its durable state).
                let renames = std::mem::take(&mut st.renames);
                let mut decided: HashSet<PathBuf> = HashSet::new();
                for (from, to) in &renames {
                    decided.insert(from.clone());
                    decided.insert(to.clone());
                }
                for (from, to) in &renames {
                    let happened = st.rng.bool();
                    if happened {
                        if let Some(node) = st.namespace.get(to).cloned() {
                            namespace.insert(to.clone(), node);
                        }
                        namespace.remove(from);
                    } else {
                        for p in [from, to] {
                            if let Some(node) = st.durable.get(p).cloned() {
                                namespace.insert(p.clone(), node);
                            }
                        }
                    }
                }
                // Durable entries survive unless removed since and that removal happened.
                for (path, node) in &st.durable {
                    if decided.contains(path) {
                        continue;
                    }
                    let removed = match (node, st.namespace.get(path)) {
                        (Node::Dir, Some(Node::Dir)) => false,
                        (Node::File(a), Some(Node::File(b))) => a.id != b.id,
                        _ => true,
                    };
                    if !removed || st.rng.bool() {
                        namespace.insert(path.clone(), node.clone());
                    }
                }
                // Entries created since may have happened.
                for (path, node) in &st.namespace {
                    if decided.contains(path) {
                        continue;
                    }
                    if !namespace.contains_key(path) && st.rng.bool() {
                        namespace.insert(path.clone(), node.clone());
                    }
                }
                // A surviving entry needs its parent directories.
                let paths: Vec<PathBuf> = namespace.keys().cloned().collect();
                for p in paths {
                    let mut parent = p.parent();
                    while let Some(dir) = parent {
                        namespace.entry(dir.to_path_buf()).or_insert(Node::Dir);
                        parent = dir.parent();
                    }
                }
                // File contents: durable bytes plus a random subset of newer sectors.
                let mut rebuilt: BTreeMap<u64, Arc<Inode>> = BTreeMap::new();
                for node in namespace.values_mut() {
                    if let Node::File(inode) = node {
                        let new = match rebuilt.get(&inode.id) {
                            Some(n) => Arc::clone(n),
                            None => {
                                let n = inode.power_loss_image(&mut st.rng, max);
                                rebuilt.insert(inode.id, Arc::clone(&n));
                                n
                            }
                        };
                        *node = Node::File(new);
                    }
                }
                st.durable = namespace.clone();
                st.namespace = namespace;
            }
        }
    }

    /// Makes the `n`-th counted operation from now (1 = the next one), and every one after
    /// it, fail with an error of `kind` (until [`FaultyStorage::clear_faults`]).
    pub fn fail_after(&self, n: u64, kind: io::ErrorKind) {
        let mut st = self.shared.state.lock();
        let at = st.ops + n.max(1);
        st.fail_after = Some((at, kind));
    }

    /// Stops injecting errors.
    pub fn clear_faults(&self) {
        self.shared.state.lock().fail_after = None;
    }

    /// Limits the total length of all files; growing past it fails with `StorageFull`.
    pub fn set_space_limit(&self, bytes: Option<u64>) {
        self.shared.state.lock().space_limit = bytes;
    }

    /// How many counted operations have run.
    pub fn op_count(&self) -> u64 {
        self.shared.state.lock().ops
    }

    /// How many errors have been injected.
    pub fn faults_injected(&self) -> u64 {
        self.shared.state.lock().faults
    }

    /// The files and directories that exist now, for inspection by tests.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.shared.state.lock().namespace.keys().cloned().collect()
    }

    /// Overwrites bytes of a file in place (current and durable), to test corruption.
    pub fn corrupt(&self, path: &Path, off: u64, bytes: &[u8]) -> io::Result<()> {
        let st = self.shared.state.lock();
        match st.namespace.get(path) {
            Some(Node::File(inode)) => {
                let mut m = inode.meta.lock();
                let end = off as usize + bytes.len();
                if end as u64 > m.len {
                    return Err(io::Error::new(io::ErrorKind::InvalidInput, "past end"));
                }
                inode.region.write(off as usize, bytes);
                if m.durable.len() < end {
                    m.durable.resize(end, 0);
                }
                m.durable[off as usize..end].copy_from_slice(bytes);
                Ok(())
            }
            _ => Err(io::ErrorKind::NotFound.into()),
        }
    }

    /// Cuts a file to `len` bytes (current and durable), to test truncation damage.
    pub fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        let mut st = self.shared.state.lock();
        let max = self.shared.max_file_len;
        match st.namespace.get(path).cloned() {
            Some(Node::File(inode)) => {
                let m = inode.meta.lock();
                let keep = len.min(m.len);
                let bytes = inode.bytes(keep);
                drop(m);
                let new = Inode::with_content(inode.id, &bytes, max, bytes.clone());
                st.namespace
                    .insert(path.to_path_buf(), Node::File(Arc::clone(&new)));
                st.durable.insert(path.to_path_buf(), Node::File(new));
                st.generation += 1;
                Ok(())
            }
            _ => Err(io::ErrorKind::NotFound.into()),
        }
    }

    fn check(&self, st: &mut State, counted: bool) -> io::Result<()> {
        if st.killed.contains(&self.pid()) {
            return Err(dead());
        }
        if counted {
            st.ops += 1;
            if let Some((at, kind)) = st.fail_after {
                if st.ops >= at {
                    st.faults += 1;
                    return Err(io::Error::new(kind, "injected fault"));
                }
            }
        }
        Ok(())
    }
}

impl Inode {
    fn with_content(id: u64, bytes: &[u8], max: usize, durable: Vec<u8>) -> Arc<Inode> {
        let region = Region::heap(max);
        region.write(0, bytes);
        Arc::new(Inode {
            id,
            region: Arc::new(region),
            meta: Mutex::new(InodeMeta {
                len: bytes.len() as u64,
                durable,
                ..InodeMeta::default()
            }),
        })
    }

    fn bytes(&self, len: u64) -> Vec<u8> {
        self.region
            .slice(0, len as usize)
            .map(<[u8]>::to_vec)
            .unwrap_or_default()
    }

    fn power_loss_image(&self, rng: &mut fastrand::Rng, max: usize) -> Arc<Inode> {
        let m = self.meta.lock();
        let current = self.bytes(m.len);
        let durable = m.durable.clone();
        drop(m);
        let len = if current.len() == durable.len() || rng.bool() {
            current.len()
        } else {
            durable.len()
        };
        let mut out = vec![0u8; len];
        let keep_old = durable.len().min(len);
        out[..keep_old].copy_from_slice(&durable[..keep_old]);
        // Sectors that differ between the durable image and the page cache.
        let mut dirty = Vec::new();
        let mut s = 0;
        while s < len {
            let e = (s + SECTOR).min(len);
            let cur = current.get(s..e.min(current.len())).unwrap_or(&[]);
            let old = durable.get(s..e.min(durable.len())).unwrap_or(&[]);
            if cur != old {
                dirty.push(s);
            }
            s = e;
        }
        let torn = if dirty.is_empty() {
            None
        } else {
            Some(dirty[rng.usize(..dirty.len())])
        };
        for s in dirty {
            let e = (s + SECTOR).min(len);
            if Some(s) == torn {
                let cut = rng.usize(s..=e);
                let (new_part, old_part) = if rng.bool() {
                    (s..cut, cut..e)
                } else {
                    (cut..e, s..cut)
                };
                for i in new_part {
                    out[i] = current.get(i).copied().unwrap_or(0);
                }
                for i in old_part {
                    out[i] = durable.get(i).copied().unwrap_or(0);
                }
            } else if rng.bool() {
                for (i, byte) in out.iter_mut().enumerate().take(e).skip(s) {
                    *byte = current.get(i).copied().unwrap_or(0);
                }
            }
        }
        Inode::with_content(self.id, &out, max, out.clone())
    }
}

impl Storage for FaultyStorage {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn StorageFile>> {
        let mut st = self.shared.state.lock();
        let existing = st.namespace.get(path).cloned();
        let inode = match (existing, mode) {
            (Some(Node::Dir), _) => {
                return Err(io::Error::new(
                    io::ErrorKind::IsADirectory,
                    "is a directory",
                ))
            }
            (Some(Node::File(_)), OpenMode::CreateNew) => {
                self.check(&mut st, false)?;
                return Err(io::ErrorKind::AlreadyExists.into());
            }
            (Some(Node::File(inode)), _) => {
                self.check(&mut st, false)?;
                inode
            }
            (None, OpenMode::Existing | OpenMode::ReadOnly) => {
                self.check(&mut st, false)?;
                return Err(io::ErrorKind::NotFound.into());
            }
            (None, _) => {
                self.check(&mut st, true)?;
                match path.parent().and_then(|p| st.namespace.get(p)) {
                    Some(Node::Dir) => {}
                    _ => return Err(io::ErrorKind::NotFound.into()),
                }
                let id = st.next_inode;
                st.next_inode += 1;
                let inode = Inode::with_content(id, &[], self.shared.max_file_len, Vec::new());
                st.namespace
                    .insert(path.to_path_buf(), Node::File(Arc::clone(&inode)));
                inode
            }
        };
        Ok(Arc::new(SimFile {
            inode,
            shared: Arc::clone(&self.shared),
            path: path.to_path_buf(),
            pid: self.pid(),
            generation: st.generation,
            read_only: mode == OpenMode::ReadOnly,
        }))
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut st = self.shared.state.lock();
        self.check(&mut st, false)?;
        let mut todo = Vec::new();
        let mut p = Some(path);
        while let Some(dir) = p {
            match st.namespace.get(dir) {
                Some(Node::Dir) => break,
                Some(Node::File(_)) => {
                    return Err(io::Error::new(
                        io::ErrorKind::NotADirectory,
                        "a file is in the way",
                    ))
                }
                None => todo.push(dir.to_path_buf()),
            }
            p = dir.parent();
        }
        if !todo.is_empty() {
            self.check(&mut st, true)?;
        }
        for dir in todo {
            st.namespace.insert(dir, Node::Dir);
        }
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut st = self.shared.state.lock();
        self.check(&mut st, true)?;
        match st.namespace.get(path) {
            Some(Node::File(_)) => {
                st.namespace.remove(path);
                Ok(())
            }
            Some(Node::Dir) => Err(io::Error::new(
                io::ErrorKind::IsADirectory,
                "is a directory",
            )),
            None => Err(io::ErrorKind::NotFound.into()),
        }
    }

    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        let mut st = self.shared.state.lock();
        self.check(&mut st, true)?;
        match st.namespace.get(path) {
            Some(Node::Dir) => {
                let busy = st
                    .namespace
                    .range(path.to_path_buf()..)
                    .nth(1)
                    .is_some_and(|(p, _)| p.parent() == Some(path) || p.starts_with(path));
                if busy {
                    return Err(io::Error::new(
                        io::ErrorKind::DirectoryNotEmpty,
                        "not empty",
                    ));
                }
                st.namespace.remove(path);
                Ok(())
            }
            Some(Node::File(_)) => Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                "not a directory",
            )),
            None => Err(io::ErrorKind::NotFound.into()),
        }
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut st = self.shared.state.lock();
        self.check(&mut st, true)?;
        match st.namespace.get(from).cloned() {
            Some(Node::File(inode)) => {
                if matches!(st.namespace.get(to), Some(Node::Dir)) {
                    return Err(io::Error::new(
                        io::ErrorKind::IsADirectory,
                        "target is a directory",
                    ));
                }
                if !matches!(
                    to.parent().and_then(|p| st.namespace.get(p)),
                    Some(Node::Dir)
                ) {
                    return Err(io::ErrorKind::NotFound.into());
                }
                st.namespace.remove(from);
                st.namespace.insert(to.to_path_buf(), Node::File(inode));
                st.renames.push((from.to_path_buf(), to.to_path_buf()));
                Ok(())
            }
            Some(Node::Dir) => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "renaming directories is not simulated",
            )),
            None => Err(io::ErrorKind::NotFound.into()),
        }
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>> {
        let mut st = self.shared.state.lock();
        self.check(&mut st, false)?;
        match st.namespace.get(path) {
            Some(Node::Dir) => {}
            Some(Node::File(_)) => {
                return Err(io::Error::new(
                    io::ErrorKind::NotADirectory,
                    "not a directory",
                ))
            }
            None => return Err(io::ErrorKind::NotFound.into()),
        }
        let mut out = Vec::new();
        for (p, node) in st.namespace.range(path.to_path_buf()..) {
            if !p.starts_with(path) {
                break;
            }
            if p.parent() != Some(path) {
                continue;
            }
            out.push(match node {
                Node::Dir => DirEntry {
                    path: p.clone(),
                    is_dir: true,
                    len: 0,
                    modified: None,
                },
                Node::File(inode) => DirEntry {
                    path: p.clone(),
                    is_dir: false,
                    len: inode.meta.lock().len,
                    modified: None,
                },
            });
        }
        Ok(out)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let mut st = self.shared.state.lock();
        self.check(&mut st, true)?;
        if !matches!(st.namespace.get(path), Some(Node::Dir)) {
            return Err(io::ErrorKind::NotFound.into());
        }
        let st = &mut *st;
        // The directory's entries become durable as they are now.
        let children = |m: &BTreeMap<PathBuf, Node>| -> Vec<PathBuf> {
            m.keys()
                .filter(|p| p.parent() == Some(path))
                .cloned()
                .collect()
        };
        for p in children(&st.durable) {
            if !st.namespace.contains_key(&p) {
                st.durable.remove(&p);
            }
        }
        for p in children(&st.namespace) {
            if let Some(node) = st.namespace.get(&p) {
                st.durable.insert(p, node.clone());
            }
        }
        // Renames within this directory are durable now.
        st.renames
            .retain(|(from, to)| from.parent() != Some(path) || to.parent() != Some(path));
        Ok(())
    }

    fn file_len(&self, path: &Path) -> io::Result<u64> {
        let mut st = self.shared.state.lock();
        self.check(&mut st, false)?;
        match st.namespace.get(path) {
            Some(Node::File(inode)) => Ok(inode.meta.lock().len),
            Some(Node::Dir) => Ok(0),
            None => Err(io::ErrorKind::NotFound.into()),
        }
    }

    fn open_locks(&self, meta: &Path) -> io::Result<Box<dyn DirLocks>> {
        let mut st = self.shared.state.lock();
        self.check(&mut st, false)?;
        let inode = match st.namespace.get(meta) {
            Some(Node::File(inode)) => Arc::clone(inode),
            Some(Node::Dir) => {
                return Err(io::Error::new(
                    io::ErrorKind::IsADirectory,
                    "is a directory",
                ))
            }
            None => return Err(io::ErrorKind::NotFound.into()),
        };
        let pid = self.pid();
        let handle = self.shared.next_handle.fetch_add(1, Ordering::Relaxed);
        Ok(Box::new(SimLocks {
            inode,
            shared: Arc::clone(&self.shared),
            pid,
            view: Arc::clone(&self.pid),
            holder: (pid << 40) | (handle & ((1 << 40) - 1)),
            generation: st.generation,
        }))
    }

    fn fork_epoch(&self) -> u64 {
        self.pid()
    }

    fn boot_id(&self) -> u32 {
        self.shared.state.lock().boots
    }

    fn fs_kind(&self, _dir: &Path) -> io::Result<FsKind> {
        Ok(self.shared.state.lock().fs_kind)
    }
}

impl SimLocks {
    /// The lock table, if this handle may use it: its process alive, no crash since, and
    /// still in the process that opened it (a forked child finds inherited locks closed).
    fn table(&self) -> io::Result<parking_lot::MutexGuard<'_, InodeMeta>> {
        let st = self.shared.state.lock();
        if st.generation != self.generation || st.killed.contains(&self.pid) {
            return Err(dead());
        }
        if self.view.load(Ordering::SeqCst) != self.pid {
            return Err(io::Error::other(
                "simulated lock descriptor was closed in the forked child",
            ));
        }
        let killed = st.killed.clone();
        drop(st);
        let mut m = self.inode.meta.lock();
        // Locks of killed processes are gone.
        let alive = |h: &u64| !killed.contains(&(h >> 40));
        m.presence.retain(|h, _| alive(h));
        m.ids.retain(|_, h| alive(h));
        Ok(m)
    }
}

impl DirLocks for SimLocks {
    fn try_presence(&self, kind: LockKind) -> io::Result<bool> {
        let mut m = self.table()?;
        let me = self.holder;
        let conflict = m
            .presence
            .iter()
            .any(|(h, k)| *h != me && (kind == LockKind::Exclusive || *k == LockKind::Exclusive));
        if conflict {
            return Ok(false);
        }
        m.presence.insert(me, kind);
        Ok(true)
    }

    fn release_presence(&self) -> io::Result<()> {
        let mut m = self.table()?;
        m.presence.remove(&self.holder);
        Ok(())
    }

    fn register(&self) -> io::Result<u64> {
        let mut m = self.table()?;
        loop {
            let id = fastrand::u64(1..);
            if let std::collections::hash_map::Entry::Vacant(e) = m.ids.entry(id) {
                e.insert(self.holder);
                return Ok(id);
            }
        }
    }

    fn is_alive(&self, id: u64) -> io::Result<bool> {
        let m = self.table()?;
        Ok(m.ids.contains_key(&id))
    }
}

impl Drop for SimLocks {
    fn drop(&mut self) {
        // Closing releases the locks, unless the process that opened them forked and this
        // is the child's inherited copy (closed by the fork hook, the parent keeps them).
        if self.view.load(Ordering::SeqCst) != self.pid {
            return;
        }
        let mut m = self.inode.meta.lock();
        m.presence.remove(&self.holder);
        m.ids.retain(|_, h| *h != self.holder);
    }
}

impl SimFile {
    fn alive(&self, counted: bool) -> io::Result<parking_lot::MutexGuard<'_, State>> {
        let mut st = self.shared.state.lock();
        if st.generation != self.generation || st.killed.contains(&self.pid) {
            return Err(dead());
        }
        if counted {
            st.ops += 1;
            if let Some((at, kind)) = st.fail_after {
                if st.ops >= at {
                    st.faults += 1;
                    return Err(io::Error::new(kind, "injected fault"));
                }
            }
        }
        Ok(st)
    }

    fn writable(&self) -> io::Result<()> {
        if self.read_only {
            return Err(io::Error::other("simulated file is open read-only"));
        }
        Ok(())
    }

    fn total_len(st: &State) -> u64 {
        let mut seen = HashSet::new();
        let mut total = 0;
        for node in st.namespace.values() {
            if let Node::File(inode) = node {
                if seen.insert(inode.id) {
                    total += inode.meta.lock().len;
                }
            }
        }
        total
    }

    fn grow(&self, st: &State, new_len: u64) -> io::Result<()> {
        if new_len as usize > self.shared.max_file_len {
            return Err(io::Error::new(
                io::ErrorKind::FileTooLarge,
                "simulated file exceeds its reserved size",
            ));
        }
        if let Some(limit) = st.space_limit {
            let cur = self.inode.meta.lock().len;
            if new_len > cur && Self::total_len(st) + (new_len - cur) > limit {
                return Err(io::Error::new(io::ErrorKind::StorageFull, "no space left"));
            }
        }
        Ok(())
    }
}

impl StorageFile for SimFile {
    fn read_at(&self, off: u64, buf: &mut [u8]) -> io::Result<usize> {
        let _st = self.alive(false)?;
        let len = self.inode.meta.lock().len;
        if off >= len {
            return Ok(0);
        }
        let n = ((len - off) as usize).min(buf.len());
        if !self.inode.region.read_volatile(off as usize, &mut buf[..n]) {
            return Err(io::Error::other("read outside the simulated file"));
        }
        Ok(n)
    }

    fn write_at(&self, off: u64, buf: &[u8]) -> io::Result<()> {
        self.writable()?;
        let st = self.alive(true)?;
        let end = off
            .checked_add(buf.len() as u64)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "offset overflow"))?;
        self.grow(&st, end)?;
        let mut m = self.inode.meta.lock();
        if !self.inode.region.write(off as usize, buf) {
            return Err(io::Error::other("write outside the simulated file"));
        }
        m.len = m.len.max(end);
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        let _st = self.alive(false)?;
        Ok(self.inode.meta.lock().len)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.writable()?;
        let st = self.alive(true)?;
        self.grow(&st, len)?;
        let mut m = self.inode.meta.lock();
        if len < m.len {
            let zeros = vec![0u8; (m.len - len) as usize];
            self.inode.region.write(len as usize, &zeros);
        }
        m.len = len;
        Ok(())
    }

    fn sync(&self) -> io::Result<()> {
        let st = self.alive(true)?;
        if let Some(suffix) = &st.failing_syncs {
            if self.path.to_string_lossy().ends_with(suffix.as_str()) {
                return Err(io::Error::other("injected sync failure"));
            }
        }
        drop(st);
        let mut m = self.inode.meta.lock();
        m.durable = self.inode.bytes(m.len);
        Ok(())
    }

    fn map(&self, _len: usize) -> io::Result<Arc<Region>> {
        // The region is the file's whole reserved size; the file never grows past it, and
        // every access is bounds-checked, so a shorter mapping than asked for is harmless.
        let _st = self.alive(false)?;
        Ok(Arc::clone(&self.inode.region))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fs() -> FaultyStorage {
        FaultyStorage::new(FaultConfig {
            seed: 7,
            max_file_len: 1 << 20,
        })
    }

    #[test]
    fn unsynced_file_creation_can_vanish_but_synced_data_and_entry_survive() {
        let s = fs();
        s.create_dir_all(Path::new("/d")).expect("mkdir");
        s.sync_dir(Path::new("/")).expect("sync /");
        let f = s.open(Path::new("/d/a"), OpenMode::Create).expect("open");
        f.write_at(0, b"hello").expect("write");
        f.sync().expect("sync");
        s.sync_dir(Path::new("/d")).expect("sync dir");
        f.write_at(0, b"HELLO world").expect("write");
        s.crash(CrashMode::PowerLoss);
        assert!(f.len().is_err(), "old handles are dead");
        let g = s
            .open(Path::new("/d/a"), OpenMode::Existing)
            .expect("entry is durable");
        let data = g.read_all().expect("read");
        assert!(data.len() == 5 || data.len() == 11, "{data:?}");
        let (old, new) = (b"hello", b"HELLO world");
        for (i, b) in data.iter().enumerate() {
            let was = old.get(i).copied().unwrap_or(0);
            assert!(
                *b == was || *b == new[i],
                "byte {i} is neither old nor new: {data:?}"
            );
        }
    }

    #[test]
    fn kill_keeps_unsynced_writes_and_frees_locks() {
        let s = fs();
        let p1 = s.process(1);
        let f = p1.open(Path::new("/x"), OpenMode::Create).expect("open");
        let locks = p1.open_locks(Path::new("/x")).expect("locks");
        assert!(locks.try_presence(LockKind::Exclusive).expect("lock"));
        let id = locks.register().expect("id");
        f.write_at(0, b"data").expect("write");
        let other = s.open_locks(Path::new("/x")).expect("locks");
        assert!(!other.try_presence(LockKind::Exclusive).expect("try"));
        assert!(other.is_alive(id).expect("alive?"));
        s.kill(1);
        assert!(f.write_at(0, b"more").is_err());
        assert!(other.try_presence(LockKind::Exclusive).expect("try"));
        assert!(!other.is_alive(id).expect("alive?"));
        let g = s.open(Path::new("/x"), OpenMode::Existing).expect("open");
        assert_eq!(g.read_all().expect("read"), b"data");
    }

    #[test]
    fn a_forked_child_neither_holds_nor_releases_the_parents_locks() {
        let s = fs();
        s.open(Path::new("/m"), OpenMode::Create).expect("create");
        let parent = s.process(1);
        let locks = parent.open_locks(Path::new("/m")).expect("locks");
        assert!(locks.try_presence(LockKind::Shared).expect("presence"));
        let id = locks.register().expect("id");
        parent.fork_into(2);
        assert!(
            locks.try_presence(LockKind::Exclusive).is_err(),
            "closed in the child"
        );
        drop(locks);
        let probe = s.open_locks(Path::new("/m")).expect("locks");
        assert!(
            probe.is_alive(id).expect("alive?"),
            "the parent still holds it"
        );
        assert!(!probe.try_presence(LockKind::Exclusive).expect("try"));
        s.kill(1);
        assert!(!probe.is_alive(id).expect("alive?"), "the parent died");
        assert!(probe.try_presence(LockKind::Exclusive).expect("try"));
    }

    #[test]
    fn read_only_files_refuse_writes() {
        let s = fs();
        s.open(Path::new("/v"), OpenMode::Create)
            .expect("create")
            .write_at(0, b"v")
            .expect("write");
        let r = s.open(Path::new("/v"), OpenMode::ReadOnly).expect("open");
        assert!(r.write_at(0, b"w").is_err());
        assert_eq!(r.read_all().expect("read"), b"v");
    }

    #[test]
    fn injected_faults_and_space_limit_fail_writes() {
        let s = fs();
        let f = s.open(Path::new("/x"), OpenMode::Create).expect("open");
        s.fail_after(2, io::ErrorKind::Other);
        f.write_at(0, b"a").expect("first write passes");
        assert!(f.write_at(1, b"b").is_err());
        assert!(f.sync().is_err());
        s.clear_faults();
        s.set_space_limit(Some(10));
        assert_eq!(
            f.write_at(0, &[0u8; 11]).map_err(|e| e.kind()),
            Err(io::ErrorKind::StorageFull)
        );
        f.write_at(0, &[0u8; 10]).expect("fits");
    }

    #[test]
    fn a_rename_survives_a_power_loss_whole_or_not_at_all() {
        for seed in 0..40 {
            let s = FaultyStorage::new(FaultConfig {
                seed,
                max_file_len: 1 << 20,
            });
            s.create_dir_all(Path::new("/d")).expect("mkdir");
            s.sync_dir(Path::new("/")).expect("sync");
            let f = s
                .open(Path::new("/d/a.tmp"), OpenMode::Create)
                .expect("open");
            f.write_at(0, b"content").expect("write");
            f.sync().expect("sync");
            s.rename(Path::new("/d/a.tmp"), Path::new("/d/a"))
                .expect("rename");
            s.crash(CrashMode::PowerLoss);
            let names: Vec<PathBuf> = s
                .paths()
                .into_iter()
                .filter(|p| p.parent() == Some(Path::new("/d")))
                .collect();
            assert!(names.len() <= 1, "seed {seed}: {names:?}");
            if names == [PathBuf::from("/d/a")] {
                let g = s.open(Path::new("/d/a"), OpenMode::Existing).expect("open");
                assert_eq!(g.read_all().expect("read"), b"content");
            }
        }
    }

    #[test]
    fn mapping_writes_are_seen_by_reads_and_made_durable_by_sync() {
        let s = fs();
        let f = s.open(Path::new("/m"), OpenMode::Create).expect("open");
        f.set_len(4096).expect("len");
        let map = f.map(8192).expect("map");
        map.write(10, b"mapped");
        let mut buf = [0u8; 6];
        f.read_at(10, &mut buf).expect("read");
        assert_eq!(&buf, b"mapped");
        f.sync().expect("sync");
        s.crash(CrashMode::PowerLoss);
        // The file's entry was never synced, so it may be gone; if present, data is there.
        if let Ok(g) = s.open(Path::new("/m"), OpenMode::Existing) {
            let data = g.read_all().expect("read");
            if data.len() >= 16 {
                assert_eq!(&data[10..16], b"mapped");
            }
        }
    }
}
