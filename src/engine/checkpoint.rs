//! Checkpoints (overlay into the trees, new log segment) and compaction (live data into a new
//! index file). Both run with the writer locks held.
//!
//! Publishing order, which recovery relies on: new nodes are written past the published end
//! of the index file and made durable; value files created since the last checkpoint are
//! made durable; `checkpoint_busy` is set; the next log segment is created, its header
//! carrying a copy of the new checkpoint; then the new checkpoint is written to the slot not
//! in use and made durable; only then are the old segment, the old index file and obsolete
//! value files removed. A crash at any point leaves the previous checkpoint (or the new one,
//! once its segment or its slot is durable) complete.

use super::btree::{create_index_file, index_path, IndexFile, TreeRef};
use super::build::{Apply, Bulk, Change, NodeWriter, NODE_TARGET};
use super::delta::TreeDelta;
use super::log::{segment_path, LogCursor, Segment};
use super::{values, Engine, State, SyncLevel, View, COMPACT_MIN};
use crate::error::Result;
use crate::format::frame::{align8, NUM_TREES};
use crate::format::meta::{Checkpoint, LIVE_CHECKPOINT_BUSY, LIVE_CHECKPOINT_SEQ};
use crate::format::node::INDEX_HEADER_LEN;
use crate::storage::Storage;
use std::ops::Bound;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Writes the overlay into the trees and starts a new log segment. Whatever the sync level,
/// a checkpoint is made durable before it becomes current (so that a power loss never
/// leaves a cache that does not open, and never takes back what earlier commits made
/// durable); `level` says whether the value files of its transactions are synced too.
///
/// A batch that touches much of the trees, or an index file with much dead space, is
/// checkpointed by rewriting every tree, merged with the overlay, into a new index file
/// (one sequential pass, no dead space); otherwise changed paths are appended
/// copy-on-write.
pub(crate) fn checkpoint(eng: &Engine, level: SyncLevel) -> Result<()> {
    let rewrite_all = {
        let st = eng.state.read();
        let live = st.ckpt.index_live;
        let dead = st
            .ckpt
            .index_len
            .saturating_sub(INDEX_HEADER_LEN as u64 + live);
        // What copy-on-write would rewrite: about one node per touched leaf (sequential
        // inserts touch few; random overwrites of a small tree touch all of it).
        let mut touched = 0u64;
        if let Some(index) = st.index.as_deref() {
            for (t, d) in st.overlay.trees.iter().enumerate() {
                if d.cleared() || !d.touches() {
                    continue;
                }
                let tr = TreeRef {
                    index,
                    root: st.ckpt.roots[t],
                    published: st.ckpt.index_len,
                    tree: t as u8,
                };
                let changes = changes_of(d, &tr)?;
                touched += tr.leaves_touched(changes.iter().map(|(k, _)| *k))? * NODE_TARGET as u64;
            }
        }
        dead + touched >= live
    };
    if rewrite_all {
        return rewrite(eng, level, false);
    }
    let (new, index, obsolete, old_segment) = {
        let st = eng.state.read();
        let Some(index) = st.index.clone() else {
            return Ok(());
        };
        let ckpt = &st.ckpt;
        let mut w = NodeWriter::new(
            Arc::clone(&index.file),
            index.path.clone(),
            align8(ckpt.index_len as usize) as u64,
        );
        let mut roots = ckpt.roots;
        let mut freed = 0;
        for (t, root) in roots.iter_mut().enumerate() {
            let d = &st.overlay.trees[t];
            if !d.touches() {
                continue;
            }
            let old = TreeRef {
                index: &index,
                root: *root,
                published: ckpt.index_len,
                tree: t as u8,
            };
            let mut ap = Apply::new(Some(old), &mut w, t as u8);
            if d.cleared() {
                ap.free_all(*root)?;
                *root = None;
            }
            let changes = changes_of(d, &old)?;
            *root = ap.apply(*root, &changes)?;
            freed += ap.freed;
        }
        w.flush()?;
        let index_len = w.end();
        eng.syncs().file(&*index.file, &index.path)?;
        // Value files are referenced durably from now on: make them durable first.
        sync_new_files(eng, &st, level)?;
        let new = Checkpoint {
            seq: ckpt.seq + 1,
            index_file: ckpt.index_file,
            index_len,
            index_live: (ckpt.index_live + w.written).saturating_sub(freed),
            registers: st.registers,
            roots,
            ..next_position(&st)
        };
        (
            new,
            index,
            st.overlay.obsolete_files.clone(),
            st.log.segment.id,
        )
    };
    let seg = publish(eng, &new, level)?;
    {
        let mut st = eng.state.write();
        st.index = Some(index.covering(new.index_len)?);
        st.log = LogCursor::at_start(Arc::new(seg));
        st.reset_overlay();
        st.ckpt = new.clone();
    }
    eng.counters.checkpoints.fetch_add(1, Ordering::Relaxed);
    // The old segment and the files the checkpointed log stopped referencing can go.
    let _ = eng
        .storage
        .remove_file(&segment_path(&eng.dir, old_segment));
    for name in &obsolete {
        values::remove(&*eng.storage, &eng.dir, name);
    }
    sweep(&*eng.storage, &eng.dir, &new);
    let used = new.index_len.saturating_sub(INDEX_HEADER_LEN as u64);
    if new.index_len > COMPACT_MIN && used > eng.opts.compact_ratio * new.index_live.max(1) {
        compact(eng, level)?;
    }
    Ok(())
}

/// The position the next checkpoint continues the log from: the next segment, starting
/// after the last applied frame (the other fields are to be filled in).
fn next_position(st: &State) -> Checkpoint {
    Checkpoint {
        seq: st.ckpt.seq + 1,
        index_file: st.ckpt.index_file,
        index_len: st.ckpt.index_len,
        index_live: st.ckpt.index_live,
        log_segment: st.log.segment.id + 1,
        log_start_lsn: st.log.applied_lsn + 1,
        registers: st.registers,
        roots: st.ckpt.roots,
    }
}

/// A tree's changes as explicit puts and deletes in key order: the delta's own, and a
/// deletion for every checkpointed key cut off by its floor or ceiling.
fn changes_of<'a>(d: &'a TreeDelta, base: &TreeRef<'a>) -> Result<Vec<Change<'a>>> {
    let mut cut: Vec<&'a [u8]> = Vec::new();
    if let Some(f) = d.floor.as_deref() {
        for item in base.cursor(Bound::Unbounded, Bound::Included(f), false)? {
            cut.push(item?.0);
        }
    }
    if let Some(c) = d.ceiling.as_deref() {
        for item in base.cursor(Bound::Included(c), Bound::Unbounded, false)? {
            cut.push(item?.0);
        }
    }
    if cut.is_empty() {
        return Ok(d.iter().collect());
    }
    // Merge in key order; the delta's own entry wins for a key in both.
    let mut out = Vec::with_capacity(cut.len() + d.len());
    let mut own = d.iter().peekable();
    for k in cut {
        while let Some(&(ok, ov)) = own.peek() {
            if ok < k {
                out.push((ok, ov));
                own.next();
            } else {
                break;
            }
        }
        if own.peek().is_some_and(|(ok, _)| *ok == k) {
            continue;
        }
        out.push((k, None));
    }
    out.extend(own);
    Ok(out)
}

/// Makes the value files created since the last checkpoint durable (sync `Normal`; `Full`
/// synced each before its commit).
fn sync_new_files(eng: &Engine, st: &State, level: SyncLevel) -> Result<()> {
    if level == SyncLevel::Normal {
        let syncs = eng.syncs();
        for f in &st.overlay.new_files {
            values::sync_file(&syncs, &eng.dir, &f.name)?;
        }
    }
    Ok(())
}

/// A checkpoint that writes every tree, merged with the overlay, into a new index file; or,
/// with an empty overlay (`compaction`), a compaction.
fn rewrite(eng: &Engine, level: SyncLevel, compaction: bool) -> Result<()> {
    let (new, file, path, obsolete, old_segment, old_index) = {
        let st = eng.state.read();
        let ckpt = &st.ckpt;
        let id = ckpt.index_file + 1;
        let path = index_path(&eng.dir, id);
        let file = create_index_file(&*eng.storage, &eng.dir, id)?;
        let mut w = NodeWriter::new(Arc::clone(&file), path.clone(), INDEX_HEADER_LEN as u64);
        let view = View {
            st: &st,
            pending: None,
        };
        let mut roots = [None; NUM_TREES];
        for (t, root) in roots.iter_mut().enumerate() {
            let mut bulk = Bulk::new(&mut w, t as u8);
            for item in view.range(t as u8, Bound::Unbounded, Bound::Unbounded, false)? {
                let (k, v) = item?;
                bulk.push(k, v)?;
            }
            *root = bulk.finish()?;
        }
        w.flush()?;
        eng.syncs().file(&*file, &path)?;
        eng.syncs().dir(&eng.dir.join("index"))?;
        sync_new_files(eng, &st, level)?;
        let new = Checkpoint {
            index_file: id,
            index_len: w.end(),
            index_live: w.written,
            roots,
            ..next_position(&st)
        };
        (
            new,
            file,
            path,
            st.overlay.obsolete_files.clone(),
            st.log.segment.id,
            ckpt.index_file,
        )
    };
    let seg = publish(eng, &new, level)?;
    {
        let mut st = eng.state.write();
        st.index = Some(Arc::new(IndexFile::with_file(
            path,
            new.index_file,
            file,
            new.index_len,
            None,
        )?));
        st.log = LogCursor::at_start(Arc::new(seg));
        st.reset_overlay();
        st.ckpt = new.clone();
    }
    let counter = if compaction {
        &eng.counters.compactions
    } else {
        &eng.counters.checkpoints
    };
    counter.fetch_add(1, Ordering::Relaxed);
    let _ = eng
        .storage
        .remove_file(&segment_path(&eng.dir, old_segment));
    let _ = eng.storage.remove_file(&index_path(&eng.dir, old_index));
    for name in &obsolete {
        values::remove(&*eng.storage, &eng.dir, name);
    }
    sweep(&*eng.storage, &eng.dir, &new);
    Ok(())
}

/// Publishes checkpoint `c`: sets `checkpoint_busy`, creates the log segment that continues
/// from it (its header carries a copy of `c`), writes `c` into its slot and makes it
/// durable, then makes it current. Returns the new segment.
fn publish(eng: &Engine, c: &Checkpoint, level: SyncLevel) -> Result<Segment> {
    // Set before anything of the new checkpoint exists: if this does not finish, whoever
    // next takes the writer lock settles it (see `Engine::finish_abandoned_checkpoint`).
    eng.meta.store(LIVE_CHECKPOINT_BUSY, 1);
    let seg = Segment::create(&*eng.storage, &eng.dir, c, level, &eng.syncs())?;
    eng.meta.write_slot(c)?;
    // A failure poisons the handle: the slot may or may not be durable, so every old file
    // stays, and the next writer settles it.
    eng.syncs().file(&*eng.meta.file, &eng.meta.path)?;
    eng.meta.store(LIVE_CHECKPOINT_SEQ, c.seq);
    eng.meta.store(LIVE_CHECKPOINT_BUSY, 0);
    Ok(seg)
}

/// Copies every tree into a new index file and switches to it (the overlay must be empty:
/// right after a checkpoint).
pub(crate) fn compact(eng: &Engine, level: SyncLevel) -> Result<()> {
    rewrite(eng, level, true)
}

/// The ids of the files `<dir>/<sub>/<16 hex digits><ext>`.
fn file_ids(
    storage: &dyn Storage,
    dir: &Path,
    sub: &str,
    ext: &str,
) -> Vec<(u64, std::path::PathBuf)> {
    let mut out = Vec::new();
    if let Ok(entries) = storage.list_dir(&dir.join(sub)) {
        for e in entries {
            let id = e
                .path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(ext))
                .and_then(|stem| u64::from_str_radix(stem, 16).ok());
            if let Some(id) = id {
                out.push((id, e.path));
            }
        }
    }
    out
}

/// The ids of the log segments in `dir`.
pub(crate) fn segment_ids(storage: &dyn Storage, dir: &Path) -> Vec<u64> {
    file_ids(storage, dir, "log", ".log")
        .into_iter()
        .map(|(id, _)| id)
        .collect()
}

/// Removes log segments and index files that checkpoint `c` does not use, and segments
/// whose creation a crash interrupted: leftovers of crashes between publishing a checkpoint
/// and removing what it replaced, or of checkpoints that never became current. Called with
/// the writer lock held (checkpoints) or no other handle open (recovery), so nobody creates
/// such files meanwhile; readers of older checkpoints find their files gone and move on to
/// the current one.
pub(crate) fn sweep(storage: &dyn Storage, dir: &Path, c: &Checkpoint) {
    for (id, path) in file_ids(storage, dir, "index", ".idx") {
        if id != c.index_file {
            let _ = storage.remove_file(&path);
        }
    }
    for (id, path) in file_ids(storage, dir, "log", ".log") {
        if id != c.log_segment {
            let _ = storage.remove_file(&path);
        }
    }
    if let Ok(entries) = storage.list_dir(&dir.join("log")) {
        for e in entries {
            if e.path.extension().is_some_and(|x| x == "tmp") {
                let _ = storage.remove_file(&e.path);
            }
        }
    }
}

/// Removes the log segments and index files newer than checkpoint `c`'s (those of a
/// checkpoint that never became current); returns whether there were any.
pub(crate) fn remove_newer(storage: &Arc<dyn Storage>, dir: &Path, c: &Checkpoint) -> bool {
    let mut removed = false;
    for (id, path) in file_ids(&**storage, dir, "log", ".log") {
        if id > c.log_segment && storage.remove_file(&path).is_ok() {
            removed = true;
        }
    }
    for (id, path) in file_ids(&**storage, dir, "index", ".idx") {
        if id > c.index_file {
            let _ = storage.remove_file(&path);
        }
    }
    removed
}
