//! `stats`: counts, volume, settings, statistics, file sizes and index dead space.

use crate::commands::{open_existing, print_json};
use crate::fail::{Fail, R};
use crate::store::Store;
use crate::ui::bytes;
use crate::Ctx;
use serde::Serialize;
use serde_json::{json, Value as JsonValue};
use std::io::{self, Write};
use std::path::Path;

/// Files of one kind: how many, how many bytes.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Group {
    pub files: u64,
    pub bytes: u64,
}

impl Group {
    fn add(&mut self, bytes: u64) {
        self.files += 1;
        self.bytes += bytes;
    }
}

/// The files of a directory tree by kind (`format-spec/README.md`, "The directory").
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Files {
    pub meta: Group,
    pub log: Group,
    pub index: Group,
    pub values: Group,
    pub procs: Group,
    pub other: Group,
}

impl Files {
    pub fn total(&self) -> Group {
        let all = [
            self.meta,
            self.log,
            self.index,
            self.values,
            self.procs,
            self.other,
        ];
        Group {
            files: all.iter().map(|g| g.files).sum(),
            bytes: all.iter().map(|g| g.bytes).sum(),
        }
    }
}

/// Walks `dir`, counting files by kind. Files that vanish meanwhile (another process is
/// using the cache) are skipped; symbolic links are counted, not followed.
pub fn walk(dir: &Path) -> R<Files> {
    let mut files = Files::default();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let rd = match std::fs::read_dir(&d) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound && d != dir => continue,
            Err(e) => return Err(Fail::io(format!("reading {}", d.display()), e)),
        };
        for ent in rd {
            let ent = match ent {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Fail::io(format!("reading {}", d.display()), e)),
            };
            let path = ent.path();
            let md = match std::fs::symlink_metadata(&path) {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Fail::io(format!("reading {}", path.display()), e)),
            };
            if md.is_dir() {
                stack.push(path);
                continue;
            }
            let name = ent.file_name();
            let name = name.to_string_lossy();
            let group = if name == "meta" {
                &mut files.meta
            } else if name.ends_with(".log") {
                &mut files.log
            } else if name.ends_with(".idx") {
                &mut files.index
            } else if name.ends_with(".val") {
                &mut files.values
            } else if name.ends_with(".live") {
                &mut files.procs
            } else {
                &mut files.other
            };
            group.add(md.len());
        }
    }
    Ok(files)
}

/// What `stats` reports for one plain cache (a shard of a fanout cache, or the cache).
#[derive(Clone, Debug, Serialize)]
struct Part {
    count: u64,
    volume: u64,
    index_bytes: u64,
    index_live_bytes: u64,
    dead_space_ratio: f64,
    log_bytes_since_checkpoint: u64,
    checkpoint_seq: u64,
    files: Files,
}

/// Bytes of an index file's header, which no tree reaches.
const INDEX_HEADER: u64 = 64;

/// The share of an index file's node bytes that no tree reaches any more (what `compact`
/// reclaims). The header is not counted.
fn dead_ratio(len: u64, live: u64) -> f64 {
    let nodes = len.saturating_sub(INDEX_HEADER);
    if nodes == 0 {
        0.0
    } else {
        1.0 - (live.min(nodes) as f64 / nodes as f64)
    }
}

fn part(p: &dyn Store) -> R<Part> {
    let count = p.len()?;
    let volume = p.volume()?;
    let info = p
        .engine_info()?
        .ok_or_else(|| Fail::usage("no engine information for this part"))?;
    Ok(Part {
        count,
        volume,
        index_bytes: info.index_len,
        index_live_bytes: info.index_live,
        dead_space_ratio: dead_ratio(info.index_len, info.index_live),
        log_bytes_since_checkpoint: info.log_bytes,
        checkpoint_seq: info.checkpoint_seq,
        files: walk(p.dir())?,
    })
}

fn num(v: Option<JsonValue>) -> u64 {
    v.and_then(|v| v.as_u64()).unwrap_or(0)
}

pub fn run(ctx: &Ctx, dir: &Path) -> R<()> {
    let store = open_existing(ctx, dir)?;
    let parts: Vec<Part> = store.parts().into_iter().map(part).collect::<R<_>>()?;
    let count: u64 = parts.iter().map(|p| p.count).sum();
    let volume: u64 = parts.iter().map(|p| p.volume).sum();
    let index_len: u64 = parts.iter().map(|p| p.index_bytes).sum();
    // Per part, less its header, so the total ratio is over node bytes only.
    let index_nodes: u64 = parts
        .iter()
        .map(|p| p.index_bytes.saturating_sub(INDEX_HEADER))
        .sum();
    let index_live: u64 = parts.iter().map(|p| p.index_live_bytes).sum();
    let log_bytes: u64 = parts.iter().map(|p| p.log_bytes_since_checkpoint).sum();
    let size_limit = store.size_limit()?;
    let settings = store.settings()?;
    let effective = store.effective_settings()?;
    let hits = num(store.setting("hits")?);
    let misses = num(store.setting("misses")?);
    let statistics = settings
        .get("statistics")
        .and_then(JsonValue::as_bool)
        .unwrap_or(false);
    let files = walk(dir)?;
    let layout = if store.shard_count().is_some() {
        "fanout"
    } else {
        "cache"
    };
    if ctx.json {
        let mut v = json!({
            "directory": dir.display().to_string(),
            "layout": layout,
            "shards": store.shard_count(),
            "codec": store.codec_name(),
            "count": count,
            "volume": volume,
            "size_limit": size_limit,
            "settings": settings,
            "effective_settings": effective,
            "statistics": statistics,
            "hits": hits,
            "misses": misses,
            "index_bytes": index_len,
            "index_live_bytes": index_live,
            "dead_space_ratio": dead_ratio(index_nodes + INDEX_HEADER, index_live),
            "log_bytes_since_checkpoint": log_bytes,
            "files": files,
            "files_total": files.total(),
        });
        if store.shard_count().is_some() {
            v["per_shard"] = serde_json::to_value(&parts).map_err(io::Error::from)?;
        }
        return print_json(&v);
    }
    let mut out = io::stdout().lock();
    let kind = match store.shard_count() {
        Some(n) => format!("fanout cache, {n} shards"),
        None => "cache".to_owned(),
    };
    writeln!(
        out,
        "{}: {kind}, codec {}",
        dir.display(),
        store.codec_name()
    )?;
    writeln!(out, "  items          {count}")?;
    writeln!(out, "  volume         {} ({volume} bytes)", bytes(volume))?;
    let used = if size_limit > 0 {
        format!(" ({:.1}% used)", 100.0 * volume as f64 / size_limit as f64)
    } else {
        String::new()
    };
    writeln!(out, "  size limit     {}{used}", bytes(size_limit))?;
    let lookups = hits + misses;
    let rate = if lookups > 0 {
        format!(", hit rate {:.1}%", 100.0 * hits as f64 / lookups as f64)
    } else {
        String::new()
    };
    writeln!(
        out,
        "  hits/misses    {hits} / {misses}{rate} (statistics {})",
        if statistics { "on" } else { "off" }
    )?;
    writeln!(
        out,
        "  index          {} published, {} live, dead space {:.1}%",
        bytes(index_len),
        bytes(index_live),
        100.0 * dead_ratio(index_nodes + INDEX_HEADER, index_live)
    )?;
    writeln!(
        out,
        "  log            {} since the last checkpoint",
        bytes(log_bytes)
    )?;
    writeln!(out, "files")?;
    let total = files.total();
    for (name, g) in [
        ("meta", files.meta),
        ("log", files.log),
        ("index", files.index),
        ("values", files.values),
        ("procs", files.procs),
        ("other", files.other),
        ("total", total),
    ] {
        writeln!(
            out,
            "  {name:<8} {:>8} files {:>12}",
            g.files,
            bytes(g.bytes)
        )?;
    }
    writeln!(out, "settings")?;
    let mut names: Vec<&String> = settings.keys().chain(effective.keys()).collect();
    names.sort();
    names.dedup();
    for k in names {
        match (settings.get(k), effective.get(k)) {
            // For a fanout cache the effective size limit is the total over the shards.
            (Some(_), Some(v)) | (Some(v), None) => writeln!(out, "  {k:<20} {v}")?,
            (None, Some(v)) => writeln!(out, "  {k:<20} {v} (default)")?,
            (None, None) => {}
        }
    }
    if store.shard_count().is_some() {
        writeln!(out, "shards")?;
        writeln!(
            out,
            "  {:<5} {:>10} {:>12} {:>12} {:>6} {:>12} {:>8} {:>12}",
            "shard", "items", "volume", "index", "dead", "log", "values", "value bytes"
        )?;
        for (i, p) in parts.iter().enumerate() {
            writeln!(
                out,
                "  {:<5} {:>10} {:>12} {:>12} {:>5.1}% {:>12} {:>8} {:>12}",
                format!("{i:03}"),
                p.count,
                bytes(p.volume),
                bytes(p.index_bytes),
                100.0 * p.dead_space_ratio,
                bytes(p.log_bytes_since_checkpoint),
                p.files.values.files,
                bytes(p.files.values.bytes),
            )?;
        }
    }
    Ok(())
}
