//! The single-key commands, `keys`, the removals, `compact` and `check`.

use crate::fail::{Fail, EXIT_NOT_FOUND, R};
use crate::keys::to_json as key_json;
use crate::store::{open, Create, OpenOptions, Store};
use crate::ui::{bar, bytes, hex, spinner, unhex};
use crate::{Ctx, KeyArg, TagSyntax};
use diskcache::{Codec, Error, Json as JsonCodec, Key, RawEntry, SetOptions, Value, ValueKind};
use serde_json::{json, Value as JsonValue};
use std::io::{self, IsTerminal, Read, Write};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Caches with at least this many items show progress for whole-cache removals.
const PROGRESS_MIN_ITEMS: u64 = 10_000;

pub fn open_existing(ctx: &Ctx, dir: &Path) -> R<Box<dyn Store>> {
    open(
        dir,
        &OpenOptions {
            timeout: ctx.timeout,
            create: None,
        },
    )
}

pub fn secs(t: SystemTime) -> f64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

/// Writes a JSON value and a newline to stdout.
pub fn print_json(v: &JsonValue) -> R<()> {
    let mut out = io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, v).map_err(io::Error::from)?;
    out.write_all(b"\n")?;
    out.flush()?;
    Ok(())
}

fn kind_name(k: ValueKind) -> &'static str {
    crate::dump::kind_name(k)
}

fn is_expired(e: &RawEntry) -> bool {
    e.expire_time.is_some_and(|t| t <= SystemTime::now())
}

/// `get`: prints a value. Reads never count as hits or record accesses.
pub fn get(ctx: &Ctx, dir: &Path, key: &KeyArg, force_hex: bool) -> R<()> {
    let store = open_existing(ctx, dir)?;
    let k = key.parse()?;
    let entry = match store.raw_entry(&k)? {
        Some(e) if !is_expired(&e) => e,
        Some(_) => return Err(Fail::not_found(format!("key {k} has expired"))),
        None => return Err(Fail::not_found(format!("key {k} not found"))),
    };
    let json_codec = store.codec_name() == JsonCodec.name();
    if ctx.json {
        return print_json(&entry_json(&k, entry, json_codec)?);
    }
    let RawEntry {
        kind, mut value, ..
    } = entry;
    let mut out = io::stdout().lock();
    let to_terminal = io::stdout().is_terminal();
    match kind {
        ValueKind::Int | ValueKind::Float => {
            let mut b = [0u8; 8];
            value
                .read_exact(&mut b)
                .map_err(|e| Fail::io("reading the value", e))?;
            if kind == ValueKind::Int {
                writeln!(out, "{}", i64::from_le_bytes(b))?;
            } else {
                writeln!(out, "{:?}", f64::from_le_bytes(b))?;
            }
        }
        ValueKind::Str => {
            copy_value(&mut value, &mut out)?;
            out.write_all(b"\n")?;
        }
        ValueKind::Bytes if !force_hex && !to_terminal => copy_value(&mut value, &mut out)?,
        ValueKind::Bytes => {
            copy_hex(&mut value, &mut out)?;
            out.write_all(b"\n")?;
        }
        ValueKind::Encoded if json_codec && !force_hex => {
            copy_value(&mut value, &mut out)?;
            out.write_all(b"\n")?;
        }
        _ => {
            copy_hex(&mut value, &mut out)?;
            out.write_all(b"\n")?;
            if !force_hex {
                eprintln!(
                    "diskcache: the value is encoded with the {} codec; shown as hex",
                    store.codec_name()
                );
            }
        }
    }
    out.flush()?;
    Ok(())
}

fn copy_value(value: &mut impl Read, out: &mut impl Write) -> R<()> {
    copy_chunks(value, out, |o, b| o.write_all(b))
}

fn copy_hex(value: &mut impl Read, out: &mut impl Write) -> R<()> {
    copy_chunks(value, out, |o, b| o.write_all(hex(b).as_bytes()))
}

/// Reads `value` to its end in chunks, handing each to `write`.
fn copy_chunks<W: Write>(
    value: &mut impl Read,
    out: &mut W,
    write: impl Fn(&mut W, &[u8]) -> io::Result<()>,
) -> R<()> {
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = match value.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Fail::io("reading the value", e)),
        };
        write(out, &buf[..n])?;
    }
}

/// The JSON form of an entry for `get --json`.
fn entry_json(k: &Key, e: RawEntry, json_codec: bool) -> R<JsonValue> {
    let RawEntry {
        kind,
        mut value,
        store_time,
        expire_time,
        tag,
    } = e;
    let size = value.len();
    let mut b = Vec::new();
    value
        .read_to_end(&mut b)
        .map_err(|e| Fail::io("reading the value", e))?;
    let num8 = |b: &[u8]| -> [u8; 8] {
        let mut a = [0u8; 8];
        if let Some(s) = b.get(..8) {
            a.copy_from_slice(s);
        }
        a
    };
    let (v, encoding) = match kind {
        ValueKind::Int => (json!(i64::from_le_bytes(num8(&b))), "number"),
        ValueKind::Float => {
            let x = f64::from_le_bytes(num8(&b));
            match serde_json::Number::from_f64(x) {
                Some(n) => (JsonValue::Number(n), "number"),
                None => (json!(format!("{x:?}")), "text"),
            }
        }
        ValueKind::Str => (json!(String::from_utf8_lossy(&b)), "text"),
        ValueKind::Encoded if json_codec => match serde_json::from_slice::<JsonValue>(&b) {
            Ok(v) => (v, "json"),
            Err(_) => (json!(hex(&b)), "hex"),
        },
        _ => (json!(hex(&b)), "hex"),
    };
    Ok(json!({
        "key": key_json(k),
        "kind": kind_name(kind),
        "size": size,
        "value": v,
        "value_encoding": encoding,
        "store_time": secs(store_time),
        "expire_time": expire_time.map(secs),
        "tag": tag.as_ref().map(key_json),
    }))
}

/// How `set` reads its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueSyntax {
    Str,
    Int,
    Float,
    Hex,
    Json,
    Stdin,
}

#[allow(clippy::too_many_arguments)]
pub fn set(
    ctx: &Ctx,
    dir: &Path,
    key: &KeyArg,
    value: Option<&str>,
    syntax: ValueSyntax,
    expire: Option<f64>,
    tag: Option<&str>,
    tag_syntax: &TagSyntax,
) -> R<()> {
    let k = key.parse()?;
    let mut opts = SetOptions::new();
    if let Some(s) = expire {
        if !s.is_finite() || s < 0.0 {
            return Err(Fail::usage(format!(
                "--expire {s}: expected a non-negative number of seconds"
            )));
        }
        opts = opts.expire(Duration::from_secs_f64(s.min(1e15)));
    }
    if let Some(t) = tag {
        opts = opts.tag(tag_syntax.parse(t)?);
    }
    let text = value.unwrap_or_default();
    let bad = |why: String| Fail::usage(format!("value {text:?}: {why}"));
    let parsed = match syntax {
        ValueSyntax::Str => Some(Value::Str(text.to_owned())),
        ValueSyntax::Int => Some(Value::Int(
            text.trim()
                .parse()
                .map_err(|e| bad(format!("not a 64-bit integer: {e}")))?,
        )),
        ValueSyntax::Float => Some(Value::Float(
            text.trim()
                .parse()
                .map_err(|e| bad(format!("not a number: {e}")))?,
        )),
        ValueSyntax::Hex => Some(Value::Bytes(unhex(text).map_err(bad)?)),
        ValueSyntax::Json => {
            let v: JsonValue =
                serde_json::from_str(text).map_err(|e| bad(format!("not JSON: {e}")))?;
            Some(Value::Encoded(
                serde_json::to_vec(&v).map_err(|e| bad(e.to_string()))?,
            ))
        }
        ValueSyntax::Stdin => None,
    };
    let store = open(
        dir,
        &OpenOptions {
            timeout: ctx.timeout,
            create: Some(Create::default()),
        },
    )?;
    if syntax == ValueSyntax::Json && store.codec_name() != JsonCodec.name() {
        return Err(Fail::usage(format!(
            "--value-json needs a cache with the json codec; this one uses {}",
            store.codec_name()
        )));
    }
    let (kind, size) = match parsed {
        Some(v) => {
            let (kind, size) = match &v {
                Value::Str(s) => (ValueKind::Str, s.len() as u64),
                Value::Int(_) => (ValueKind::Int, 8),
                Value::Float(_) => (ValueKind::Float, 8),
                Value::Bytes(b) => (ValueKind::Bytes, b.len() as u64),
                Value::Encoded(b) => (ValueKind::Encoded, b.len() as u64),
                Value::Python(b) => (ValueKind::Python, b.len() as u64),
            };
            store_checked(store.set_value(&k, &v, &opts))?;
            (kind, size)
        }
        None => {
            // Small input is stored like any small value; large input is streamed into a
            // value file.
            let min = store.min_file_size()?;
            let mut stdin = io::stdin().lock();
            let mut head = Vec::new();
            (&mut stdin)
                .take(min)
                .read_to_end(&mut head)
                .map_err(|e| Fail::io("reading standard input", e))?;
            if (head.len() as u64) < min {
                let size = head.len() as u64;
                store_checked(store.set_value(&k, &Value::Bytes(head), &opts))?;
                (ValueKind::Bytes, size)
            } else {
                let mut counted = Counted {
                    inner: head.as_slice().chain(stdin),
                    n: 0,
                };
                store_checked(store.set_reader(&k, &mut counted, &opts))?;
                (ValueKind::Bytes, counted.n)
            }
        }
    };
    if ctx.json {
        print_json(&json!({
            "stored": true,
            "key": key_json(&k),
            "kind": kind_name(kind),
            "size": size,
        }))
    } else {
        let mut out = io::stdout().lock();
        writeln!(out, "stored {k} ({}, {})", kind_name(kind), bytes(size))?;
        Ok(())
    }
}

fn store_checked(r: diskcache::Result<bool>) -> R<()> {
    match r {
        Ok(true) => Ok(()),
        Ok(false) => Err(Fail::usage("the write gave up: its shard stayed busy")),
        Err(e) => Err(e.into()),
    }
}

/// Counts the bytes read through it.
struct Counted<T> {
    inner: T,
    n: u64,
}

impl<T: Read> Read for Counted<T> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n += n as u64;
        Ok(n)
    }
}

pub fn delete(ctx: &Ctx, dir: &Path, key: &KeyArg) -> R<()> {
    let store = open_existing(ctx, dir)?;
    let k = key.parse()?;
    let deleted = store.delete(&k)?;
    if ctx.json {
        print_json(&json!({ "deleted": deleted, "key": key_json(&k) }))?;
    } else if deleted {
        writeln!(io::stdout().lock(), "deleted {k}")?;
    }
    if deleted {
        Ok(())
    } else {
        Err(Fail::not_found(format!("key {k} not found")))
    }
}

/// `keys`. In sorted order with a prefix, the listing stops once past the prefix's range.
pub fn keys(
    ctx: &Ctx,
    dir: &Path,
    sorted: bool,
    reverse: bool,
    prefix: Option<&str>,
    limit: Option<u64>,
) -> R<()> {
    let store = open_existing(ctx, dir)?;
    let mut out = io::BufWriter::new(io::stdout().lock());
    let mut n = 0u64;
    if limit == Some(0) {
        return Ok(());
    }
    for k in store.keys(sorted, reverse) {
        let k = k?;
        if let Some(p) = prefix {
            let s = match &k {
                Key::Str(s) => Some(s.as_str()),
                _ => None,
            };
            match s {
                Some(s) if s.starts_with(p) => {}
                // Sorted keys: numbers, then strings, then byte strings and composites.
                Some(s) if sorted && !reverse && s > p => break,
                Some(s) if sorted && reverse && s < p => break,
                None if sorted && !reverse && !matches!(k, Key::Int(_) | Key::Float(_)) => break,
                None if sorted && reverse && matches!(k, Key::Int(_) | Key::Float(_)) => break,
                _ => continue,
            }
        }
        if ctx.json {
            serde_json::to_writer(&mut out, &key_json(&k)).map_err(io::Error::from)?;
            out.write_all(b"\n")?;
        } else {
            writeln!(out, "{k}")?;
        }
        n += 1;
        if limit.is_some_and(|l| n >= l) {
            break;
        }
    }
    out.flush()?;
    Ok(())
}

/// A whole-cache removal.
#[derive(Clone, Debug)]
pub enum Removal {
    Expire,
    Cull,
    Evict(Key),
    Clear,
}

/// Runs `f` on every part (the cache, or each shard), with progress for large caches.
/// A timeout reports what had been done by then.
fn each_part<T>(
    store: &dyn Store,
    what: &str,
    show: bool,
    mut f: impl FnMut(&dyn Store) -> diskcache::Result<T>,
) -> R<Vec<T>> {
    let parts = store.parts();
    let pb = match (show, store.shard_count()) {
        (false, _) => indicatif::ProgressBar::hidden(),
        (true, Some(n)) => bar(n as u64, what, false),
        (true, None) => spinner(what, false),
    };
    let mut out = Vec::with_capacity(parts.len());
    for (i, p) in parts.iter().enumerate() {
        match f(*p) {
            Ok(v) => out.push(v),
            Err(e) => {
                pb.finish_and_clear();
                let shard = match store.shard_count() {
                    Some(_) => format!(" (shard {i:03})"),
                    None => String::new(),
                };
                return Err(Fail::from(e).context(&format!("{what}{shard}")));
            }
        }
        pb.inc(1);
    }
    pb.finish_and_clear();
    Ok(out)
}

impl Fail {
    fn context(mut self, what: &str) -> Fail {
        self.msg = format!("{what}: {}", self.msg);
        self
    }
}

pub fn remove(ctx: &Ctx, dir: &Path, what: Removal) -> R<()> {
    let store = open_existing(ctx, dir)?;
    let show = store.len()? >= PROGRESS_MIN_ITEMS;
    let (verb, past) = match &what {
        Removal::Expire => ("expiring", "expired items removed"),
        Removal::Cull => ("culling", "items culled"),
        Removal::Evict(_) => ("evicting", "items evicted"),
        Removal::Clear => ("clearing", "items removed"),
    };
    let mut total = 0u64;
    let r = each_part(&*store, verb, show, |p| {
        let n = match &what {
            Removal::Expire => p.expire(),
            Removal::Cull => p.cull(),
            Removal::Evict(t) => p.evict(t),
            Removal::Clear => p.clear(),
        };
        if let Err(Error::Timeout { removed }) = &n {
            total += removed;
        }
        let n = n?;
        total += n;
        Ok(n)
    });
    if let Err(e) = r {
        return Err(e.context(&format!("{total} {past} before the failure")));
    }
    if ctx.json {
        let mut v = json!({ "removed": total });
        if let Removal::Evict(t) = &what {
            v["tag"] = key_json(t);
        }
        print_json(&v)
    } else {
        writeln!(io::stdout().lock(), "{total} {past}")?;
        Ok(())
    }
}

/// Published bytes of the index files of every part.
fn index_bytes(store: &dyn Store) -> R<u64> {
    let mut total = 0;
    for p in store.parts() {
        if let Some(i) = p.engine_info()? {
            total += i.index_len;
        }
    }
    Ok(total)
}

pub fn compact(ctx: &Ctx, dir: &Path) -> R<()> {
    let store = open_existing(ctx, dir)?;
    let before = index_bytes(&*store)?;
    each_part(&*store, "compacting", true, |p| p.compact())?;
    let after = index_bytes(&*store)?;
    if ctx.json {
        print_json(&json!({
            "index_bytes_before": before,
            "index_bytes_after": after,
        }))
    } else {
        writeln!(
            io::stdout().lock(),
            "compacted: index files {} -> {}",
            bytes(before),
            bytes(after)
        )?;
        Ok(())
    }
}

/// Rebuilds missing or damaged meta files: the directory's own, or each shard's.
pub fn repair(ctx: &Ctx, dir: &Path) -> R<()> {
    let mut parts = Vec::new();
    let is_cache = |d: &Path| d.join("meta").exists() || d.join("log").is_dir();
    if is_cache(dir) {
        parts.push((None, dir.to_path_buf()));
    } else {
        for i in 0.. {
            let shard = dir.join(format!("{i:03}"));
            if !is_cache(&shard) {
                break;
            }
            parts.push((Some(i), shard));
        }
    }
    if parts.is_empty() {
        return Err(Fail::usage(format!(
            "{} is not a cache directory (no meta file or log, no fanout shard 000)",
            dir.display()
        )));
    }
    let mut rows = Vec::new();
    for (shard, d) in &parts {
        let done = diskcache::Cache::builder().repair(d)?;
        rows.push((*shard, done));
    }
    if ctx.json {
        let list: Vec<JsonValue> = rows
            .iter()
            .map(|(shard, r)| match r {
                diskcache::Repaired::MetaRebuilt {
                    checkpoint,
                    segment,
                } => json!({"shard": shard, "rebuilt": true, "checkpoint": checkpoint, "segment": segment}),
                _ => json!({"shard": shard, "rebuilt": false}),
            })
            .collect();
        print_json(&json!({ "parts": list }))?;
    } else {
        let mut out = io::stdout().lock();
        for (shard, r) in &rows {
            let name = shard.map_or_else(String::new, |s| format!("shard {s:03}: "));
            match r {
                diskcache::Repaired::MetaRebuilt {
                    checkpoint,
                    segment,
                } => writeln!(
                    out,
                    "{name}meta file rebuilt from checkpoint {checkpoint} (log segment {segment}); \
                     the next open replays the log after it"
                )?,
                _ => writeln!(out, "{name}nothing to repair")?,
            }
        }
    }
    Ok(())
}

pub fn check(ctx: &Ctx, dir: &Path, fix: bool) -> R<()> {
    let store = open_existing(ctx, dir)?;
    let per_part = each_part(&*store, "checking", true, |p| p.check(fix))?;
    let fanout = store.shard_count().is_some();
    let mut rows = Vec::new();
    for (i, warnings) in per_part.iter().enumerate() {
        for w in warnings {
            rows.push((fanout.then_some(i), w));
        }
    }
    let fixed = rows.iter().filter(|(_, w)| w.fixed).count();
    if ctx.json {
        let list: Vec<JsonValue> = rows
            .iter()
            .map(|(shard, w)| {
                json!({
                    "shard": shard,
                    "kind": format!("{:?}", w.kind),
                    "message": w.message,
                    "fixed": w.fixed,
                })
            })
            .collect();
        print_json(&json!({
            "problems": rows.len(),
            "fixed": fixed,
            "warnings": list,
        }))?;
    } else {
        let mut out = io::stdout().lock();
        for (shard, w) in &rows {
            match shard {
                Some(s) => writeln!(out, "shard {s:03}: {w}")?,
                None => writeln!(out, "{w}")?,
            }
        }
        if rows.is_empty() {
            writeln!(out, "no problems found")?;
        } else {
            writeln!(
                out,
                "{} problem{} found, {fixed} fixed",
                rows.len(),
                if rows.len() == 1 { "" } else { "s" }
            )?;
        }
    }
    if rows.is_empty() {
        Ok(())
    } else {
        Err(Fail {
            code: EXIT_NOT_FOUND,
            msg: String::new(),
            broken_pipe: false,
        })
    }
}
