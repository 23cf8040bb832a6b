//! Checkpoints (overlay into the trees, new log segment) and compaction (live data into a new
//! index file). Both run with the writer locks held.
//!
//! Publishing order, which recovery relies on: new nodes are written past the published end
//! of the index file and made durable; value files created since the last checkpoint are
//! made durable; the next log segment is created; then the new checkpoint is written to the
//! slot not in use and made durable; only then are the old segment, the old index file and
//! obsolete value files removed. A crash at any point leaves the previous checkpoint (or the
//! new one, once its slot is durable) complete.

use super::btree::{create_index_file, index_path, IndexFile, TreeRef};
use super::build::{copy_tree, Apply, Bulk, Change, NodeWriter, NODE_TARGET};
use super::delta::TreeDelta;
use super::log::{segment_path, LogCursor, Segment};
use super::{io_err, values, Engine, SyncLevel, View, COMPACT_MIN};
use crate::error::Result;
use crate::format::frame::{align8, NUM_TREES};
use crate::format::meta::{Checkpoint, LIVE_CHECKPOINT_BUSY, LIVE_CHECKPOINT_SEQ};
use crate::format::node::INDEX_HEADER_LEN;
use std::ops::Bound;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Writes the overlay into the trees and starts a new log segment.
///
/// A batch that touches much of the trees, or an index file with much dead space, is
/// checkpointed by rewriting every tree, merged with the overlay, into a new index file
/// (one sequential pass, no dead space); otherwise changed paths are appended
/// copy-on-write.
pub(crate) fn checkpoint(eng: &Engine) -> Result<()> {
    let rewrite = {
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
    if rewrite {
        return rewrite_checkpoint(eng);
    }
    let sync = eng.opts.sync != SyncLevel::Off;
    let (new, index, seg, obsolete, old_segment) = {
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
        if sync {
            index
                .file
                .sync()
                .map_err(|e| io_err("syncing", &index.path, e))?;
        }
        // Value files are referenced durably from now on: make them durable first.
        sync_new_files(eng, &st)?;
        let seg = next_segment(eng, &st)?;
        let new = Checkpoint {
            seq: ckpt.seq + 1,
            index_file: ckpt.index_file,
            index_len,
            index_live: (ckpt.index_live + w.written).saturating_sub(freed),
            log_segment: seg.id,
            log_start_lsn: seg.header.start_lsn,
            registers: st.registers,
            roots,
        };
        (
            new,
            index,
            seg,
            st.overlay.obsolete_files.clone(),
            st.log.segment.id,
        )
    };
    publish(eng, &new)?;
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
    let used = new.index_len.saturating_sub(INDEX_HEADER_LEN as u64);
    if new.index_len > COMPACT_MIN && used > eng.opts.compact_ratio * new.index_live.max(1) {
        compact(eng)?;
    }
    Ok(())
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
fn sync_new_files(eng: &Engine, st: &super::State) -> Result<()> {
    if eng.opts.sync == SyncLevel::Normal {
        values::sync_all(
            &*eng.storage,
            &eng.dir,
            st.overlay.new_files.iter().map(|f| f.name.as_str()),
        )?;
    }
    Ok(())
}

/// Creates the log segment that follows the current one.
fn next_segment(eng: &Engine, st: &super::State) -> Result<Segment> {
    Segment::create(
        &*eng.storage,
        &eng.dir,
        st.log.segment.id + 1,
        st.log.applied_lsn + 1,
        eng.opts.sync,
    )
}

/// A checkpoint that writes every tree, merged with the overlay, into a new index file.
fn rewrite_checkpoint(eng: &Engine) -> Result<()> {
    let (new, file, path, seg, obsolete, old_segment, old_index) = {
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
        if eng.opts.sync != SyncLevel::Off {
            file.sync().map_err(|e| io_err("syncing", &path, e))?;
            let d = eng.dir.join("index");
            eng.storage
                .sync_dir(&d)
                .map_err(|e| io_err("syncing directory", &d, e))?;
        }
        sync_new_files(eng, &st)?;
        let seg = next_segment(eng, &st)?;
        let new = Checkpoint {
            seq: ckpt.seq + 1,
            index_file: id,
            index_len: w.end(),
            index_live: w.written,
            log_segment: seg.id,
            log_start_lsn: seg.header.start_lsn,
            registers: st.registers,
            roots,
        };
        (
            new,
            file,
            path,
            seg,
            st.overlay.obsolete_files.clone(),
            st.log.segment.id,
            ckpt.index_file,
        )
    };
    publish(eng, &new)?;
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
        st.ckpt = new;
    }
    eng.counters.checkpoints.fetch_add(1, Ordering::Relaxed);
    let _ = eng
        .storage
        .remove_file(&segment_path(&eng.dir, old_segment));
    let _ = eng.storage.remove_file(&index_path(&eng.dir, old_index));
    for name in &obsolete {
        values::remove(&*eng.storage, &eng.dir, name);
    }
    Ok(())
}

/// Writes a checkpoint slot and makes it the current one.
fn publish(eng: &Engine, c: &Checkpoint) -> Result<()> {
    eng.meta.store(LIVE_CHECKPOINT_BUSY, 1);
    eng.meta.write_slot(c)?;
    if eng.opts.sync != SyncLevel::Off {
        if let Err(e) = eng.meta.sync() {
            // The slot may or may not be durable: keep every old file, refuse more writes.
            eng.poison();
            return Err(e);
        }
    }
    eng.meta.store(LIVE_CHECKPOINT_SEQ, c.seq);
    eng.meta.store(LIVE_CHECKPOINT_BUSY, 0);
    Ok(())
}

/// Copies every tree into a new index file and switches to it.
pub(crate) fn compact(eng: &Engine) -> Result<()> {
    let sync = eng.opts.sync != SyncLevel::Off;
    let (new, file, path, old_id) = {
        let st = eng.state.read();
        let Some(index) = st.index.clone() else {
            return Ok(());
        };
        let ckpt = &st.ckpt;
        let id = ckpt.index_file + 1;
        let path = index_path(&eng.dir, id);
        let file = create_index_file(&*eng.storage, &eng.dir, id)?;
        let mut w = NodeWriter::new(Arc::clone(&file), path.clone(), INDEX_HEADER_LEN as u64);
        let mut roots = [None; NUM_TREES];
        for (t, root) in roots.iter_mut().enumerate() {
            let old = TreeRef {
                index: &index,
                root: ckpt.roots[t],
                published: ckpt.index_len,
                tree: t as u8,
            };
            // The overlay is empty right after a checkpoint; anything in it is carried by
            // the log, which this compaction does not touch.
            *root = copy_tree(old, &mut w)?;
        }
        w.flush()?;
        if sync {
            file.sync().map_err(|e| io_err("syncing", &path, e))?;
            let d = eng.dir.join("index");
            eng.storage
                .sync_dir(&d)
                .map_err(|e| io_err("syncing directory", &d, e))?;
        }
        let new = Checkpoint {
            seq: ckpt.seq + 1,
            index_file: id,
            index_len: w.end(),
            index_live: w.written,
            roots,
            ..ckpt.clone()
        };
        (new, file, path, ckpt.index_file)
    };
    publish(eng, &new)?;
    {
        let mut st = eng.state.write();
        st.index = Some(Arc::new(IndexFile::with_file(
            path,
            new.index_file,
            file,
            new.index_len,
            None,
        )?));
        st.ckpt = new;
    }
    eng.counters.compactions.fetch_add(1, Ordering::Relaxed);
    let _ = eng.storage.remove_file(&index_path(&eng.dir, old_id));
    Ok(())
}
