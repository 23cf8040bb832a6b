//! `dump` and `load`: moving entries between caches and machines through a dump stream.

use crate::commands::{open_existing, print_json, secs};
use crate::dump::{self, DumpError, EntryHead, Header, Item, Reader, WriteError, Writer};
use crate::fail::{Fail, R};
use crate::store::{detect, open, Create, Layout, OpenOptions, Store};
use crate::ui::{bar, bytes, spinner};
use crate::Ctx;
use diskcache::{SetOptions, Value, ValueKind};
use serde_json::json;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, IsTerminal, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A load commits a transaction after this many entries...
const BATCH_ENTRIES: u64 = 1000;
/// ...or this many bytes of values, whichever comes first.
const BATCH_BYTES: u64 = 64 << 20;

fn now_secs() -> f64 {
    secs(SystemTime::now())
}

/// `dump`: every entry, expired ones included, in insertion order (shard after shard for a
/// fanout cache). Entries removed while the dump runs are left out; values are streamed.
pub fn dump(ctx: &Ctx, dir: &Path, output: Option<&Path>) -> R<()> {
    let store = open_existing(ctx, dir)?;
    if output.is_none() && io::stdout().is_terminal() {
        return Err(Fail::usage(
            "refusing to write a binary dump to a terminal: use -o FILE or a pipe",
        ));
    }
    let header = Header {
        format: dump::FORMAT_NAME.to_owned(),
        codec: store.codec_name().to_owned(),
        layout: if store.shard_count().is_some() {
            "fanout".into()
        } else {
            "cache".into()
        },
        shards: store.shard_count(),
        size_limit: Some(store.size_limit()?),
        settings: store.settings()?,
        created: now_secs(),
        source: std::fs::canonicalize(dir)
            .unwrap_or_else(|_| dir.to_path_buf())
            .display()
            .to_string(),
        tool: format!("diskcache-rs {}", env!("CARGO_PKG_VERSION")),
    };
    let partial = output.map(|p| {
        let mut name = p.as_os_str().to_owned();
        name.push(".partial");
        PathBuf::from(name)
    });
    let sink: Box<dyn Write> = match &partial {
        // A new file only: never through a symbolic link planted under that name, and never
        // over another dump's partial file.
        Some(p) => Box::new(
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(p)
                .map_err(|e| {
                    let what = if e.kind() == io::ErrorKind::AlreadyExists {
                        format!(
                            "creating {} (it exists: another dump is running, or one was \
                             interrupted; remove it to dump again)",
                            p.display()
                        )
                    } else {
                        format!("creating {}", p.display())
                    };
                    Fail::io(what, e)
                })?,
        ),
        None => Box::new(io::stdout().lock()),
    };
    let result = write_entries(&*store, sink, &header);
    let (entries, written, vanished) = match result {
        Ok(r) => r,
        Err(e) => {
            if let Some(p) = &partial {
                let _ = std::fs::remove_file(p);
            }
            return Err(e);
        }
    };
    if let (Some(p), Some(out)) = (&partial, output) {
        std::fs::rename(p, out).map_err(|e| Fail::io(format!("renaming {}", p.display()), e))?;
    }
    let summary = json!({
        "entries": entries,
        "bytes": written,
        "vanished": vanished,
        "codec": header.codec,
        "output": output.map(|p| p.display().to_string()),
    });
    let text = format!(
        "dumped {entries} entries ({}) from {}{}",
        bytes(written),
        dir.display(),
        if vanished > 0 {
            format!("; {vanished} keys were removed while dumping and are not in the dump")
        } else {
            String::new()
        }
    );
    // The dump itself may be on stdout: the summary then goes to stderr.
    match (output.is_some(), ctx.json) {
        (true, true) => print_json(&summary),
        (true, false) => {
            writeln!(io::stdout().lock(), "{text}")?;
            Ok(())
        }
        (false, true) => {
            eprintln!("{summary}");
            Ok(())
        }
        (false, false) => {
            eprintln!("{text}");
            Ok(())
        }
    }
}

/// Writes the stream; returns (entries, bytes, keys that vanished meanwhile).
fn write_entries(store: &dyn Store, sink: Box<dyn Write>, header: &Header) -> R<(u64, u64, u64)> {
    let mut w =
        Writer::new(BufWriter::with_capacity(1 << 16, sink), header).map_err(Fail::dump_output)?;
    let pb = bar(store.len()?, "dumping", false);
    let mut vanished = 0u64;
    for k in store.keys(false, false) {
        let k = k?;
        let Some(raw) = store.raw_entry(&k)? else {
            vanished += 1;
            continue;
        };
        let head = EntryHead {
            key: k.clone(),
            kind: raw.kind,
            size: raw.value.len(),
            expire_time: raw.expire_time.map(secs),
            tag: raw.tag,
        };
        let mut value = raw.value;
        match w.entry(&head, &mut value) {
            Ok(()) => {}
            Err(WriteError::Output(e)) => {
                pb.finish_and_clear();
                return Err(Fail::dump_output(e));
            }
            Err(WriteError::Value(why)) => {
                pb.finish_and_clear();
                return Err(Fail::usage(format!(
                    "key {k}: {why}; the dump is incomplete (`diskcache check` finds damaged \
                     value files)"
                )));
            }
        }
        pb.inc(1);
    }
    pb.finish_and_clear();
    let entries = w.entries;
    let mut total = w.bytes;
    w.finish().map_err(Fail::dump_output)?;
    total += 16;
    Ok((entries, total, vanished))
}

/// The layout `load` gives a new directory.
#[derive(Clone, Copy, Debug)]
pub enum NewLayout {
    /// The dump's source layout.
    AsSource,
    Plain,
    Fanout(usize),
}

/// Why a load stopped early.
enum Stop {
    Corrupt(DumpError),
    Refused(String),
}

fn to_value(kind: ValueKind, b: Vec<u8>) -> Result<Value, String> {
    let eight = |b: &[u8]| -> Result<[u8; 8], String> {
        b.try_into()
            .map_err(|_| format!("a number must be 8 bytes, not {}", b.len()))
    };
    Ok(match kind {
        ValueKind::Bytes => Value::Bytes(b),
        ValueKind::Str => {
            Value::Str(String::from_utf8(b).map_err(|_| "a string value is not UTF-8".to_owned())?)
        }
        ValueKind::Int => Value::Int(i64::from_le_bytes(eight(&b)?)),
        ValueKind::Float => Value::Float(f64::from_le_bytes(eight(&b)?)),
        ValueKind::Encoded => Value::Encoded(b),
        ValueKind::Python => Value::Python(b),
    })
}

fn set_options(head: &EntryHead) -> SetOptions {
    let mut o = SetOptions::new();
    if let Some(t) = head.expire_time {
        let at = if t > 0.0 {
            UNIX_EPOCH + Duration::from_secs_f64(t.min(1e15))
        } else {
            UNIX_EPOCH
        };
        o = o.expire_at(at);
    }
    if let Some(tag) = &head.tag {
        o = o.tag(tag);
    }
    o
}

/// `load`: reads a dump into `dir` (created like the dump's source if missing), in
/// transactions of bounded size. Damaged or truncated input stops the load with an error
/// naming the entry and its byte offset; the entries before it stay loaded.
pub fn load(
    ctx: &Ctx,
    dir: &Path,
    input: Option<&Path>,
    keep_expired: bool,
    layout: NewLayout,
) -> R<()> {
    let (src, size): (Box<dyn Read>, Option<u64>) = match input {
        Some(p) => {
            let f = File::open(p).map_err(|e| Fail::io(format!("opening {}", p.display()), e))?;
            let len = f.metadata().ok().map(|m| m.len());
            (Box::new(f), len)
        }
        None => (Box::new(io::stdin().lock()), None),
    };
    let mut reader = Reader::new(BufReader::with_capacity(1 << 16, src))
        .map_err(|e| Fail::usage(e.to_string()))?;
    let h = reader.header.clone();
    let (existing, _) = detect(dir, ctx.timeout)?;
    if existing != Layout::Nothing && !matches!(layout, NewLayout::AsSource) {
        return Err(Fail::usage(
            "--shards and --plain apply only when load creates the cache",
        ));
    }
    let shards = match layout {
        NewLayout::AsSource if h.layout == "fanout" => h.shards,
        NewLayout::AsSource | NewLayout::Plain => None,
        NewLayout::Fanout(n) => Some(n),
    };
    let mut settings = h.settings.clone();
    if let Some(l) = h.size_limit {
        settings.insert("size_limit".into(), l.into());
    }
    let store = open(
        dir,
        &OpenOptions {
            timeout: ctx.timeout,
            create: Some(Create {
                shards,
                codec: Some(h.codec.clone()),
                settings,
            }),
        },
    )?;
    let same_codec = store.codec_name() == h.codec;
    let min_file = store.min_file_size()?;
    let pb = match size {
        Some(n) => bar(n, "loading", true),
        None => spinner("loading", true),
    };
    let mut loaded = 0u64;
    let mut skipped = 0u64;
    let mut stop: Option<Stop> = None;
    let mut done = false;
    while !done && stop.is_none() {
        let mut in_batch = 0u64;
        let mut skipped_in_batch = 0u64;
        let mut batch_bytes = 0u64;
        let now = now_secs();
        let r = store.transact(&mut || {
            in_batch = 0;
            skipped_in_batch = 0;
            batch_bytes = 0;
            while in_batch < BATCH_ENTRIES && batch_bytes < BATCH_BYTES {
                let head = match reader.next_item() {
                    Ok(Item::Entry(h)) => h,
                    Ok(Item::End) => {
                        done = true;
                        return Ok(());
                    }
                    Err(e) => {
                        stop = Some(Stop::Corrupt(e));
                        return Ok(());
                    }
                };
                let number = reader.entries + 1;
                if !keep_expired && head.expire_time.is_some_and(|t| t <= now) {
                    let mut vs = reader.value_reader();
                    let _ = io::copy(&mut vs, &mut io::sink());
                    if let Some(e) = vs.failure.take() {
                        stop = Some(Stop::Corrupt(e));
                        return Ok(());
                    }
                    skipped_in_batch += 1;
                    continue;
                }
                if head.kind == ValueKind::Encoded && !same_codec {
                    stop = Some(Stop::Refused(format!(
                        "dump entry {number} (key {}) holds a value encoded with the {} codec, \
                         but {} uses {}; load such dumps into a cache with the {} codec (or a \
                         new directory)",
                        head.key,
                        h.codec,
                        dir.display(),
                        store.codec_name(),
                        h.codec
                    )));
                    return Ok(());
                }
                let opts = set_options(&head);
                let stored = if head.kind == ValueKind::Bytes && head.size >= min_file {
                    let mut vs = reader.value_reader();
                    let r = store.set_reader(&head.key, &mut vs, &opts);
                    if let Some(e) = vs.failure.take() {
                        stop = Some(Stop::Corrupt(e));
                        return Ok(());
                    }
                    r?
                } else {
                    let b = match reader.value() {
                        Ok(b) => b,
                        Err(e) => {
                            stop = Some(Stop::Corrupt(e));
                            return Ok(());
                        }
                    };
                    let v = match to_value(head.kind, b) {
                        Ok(v) => v,
                        Err(why) => {
                            stop = Some(Stop::Refused(format!("dump entry {number}: {why}")));
                            return Ok(());
                        }
                    };
                    store.set_value(&head.key, &v, &opts)?
                };
                if !stored {
                    return Err(diskcache::Error::InvalidArgument(format!(
                        "dump entry {number}: the write gave up (busy shard)"
                    )));
                }
                in_batch += 1;
                batch_bytes += head.size;
            }
            Ok(())
        });
        if let Err(e) = r {
            pb.finish_and_clear();
            return Err(Fail::from(e).context_loaded(loaded));
        }
        loaded += in_batch;
        skipped += skipped_in_batch;
        pb.set_position(reader.offset);
    }
    pb.finish_and_clear();
    if let Some(s) = stop {
        let why = match s {
            Stop::Corrupt(e) => e.to_string(),
            Stop::Refused(why) => why,
        };
        return Err(Fail::usage(format!(
            "{why}; stopped there: {loaded} entries before it were loaded"
        )));
    }
    if ctx.json {
        print_json(&json!({
            "loaded": loaded,
            "skipped_expired": skipped,
            "codec": store.codec_name(),
            "source": h.source,
        }))
    } else {
        let mut out = io::stdout().lock();
        write!(out, "loaded {loaded} entries into {}", dir.display())?;
        if skipped > 0 {
            write!(out, " ({skipped} expired entries skipped)")?;
        }
        writeln!(out)?;
        Ok(())
    }
}

impl Fail {
    fn context_loaded(mut self, loaded: u64) -> Fail {
        self.msg = format!(
            "{}; the load stopped: {loaded} entries before the failed batch were loaded",
            self.msg
        );
        self
    }
}
