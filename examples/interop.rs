//! One cache directory, two languages: the Python package's tests run this to check that
//! Rust reads what Python wrote and the reverse.
//!
//! `cargo run --example interop -- read <dir>` prints every key and value of a cache the
//! Python package wrote, one `key<TAB>value` line each (sorted by key), reading strings,
//! bytes, integers and floats through the typed API (`Cache::get::<String>` etc.) and
//! describing Python-only values. `cargo run --example interop -- write <dir>` stores a
//! fixed set of entries for Python to read; `garbage <dir>` stores Python-kind values and a
//! Python key whose bytes are damaged, to show Python reports them without crashing.
//! `move <src dir> <src key> <dst dir> <dst key>` copies a stored value, bytes as they are,
//! to another key (of the same or another cache) and removes the original, as anyone who
//! can write to both directories could; keys are written `int:N` or `str:S`.

use diskcache::{Cache, Key, PythonKeyKind, SetOptions, Value};

fn show_key(k: &Key) -> String {
    match k {
        Key::Int(i) => format!("int:{i}"),
        Key::Float(f) => format!("float:{f:?}"),
        Key::Str(s) => format!("str:{s}"),
        Key::Bytes(b) => format!("bytes:{}", String::from_utf8_lossy(b)),
        Key::Python(p) => match p.kind() {
            PythonKeyKind::Plain => format!("plain:{:?}", p.plain()),
            other => format!("python:{other:?}"),
        },
        other => format!("other:{other}"),
    }
}

/// A key given on the command line.
enum Arg {
    Int(i64),
    Str(String),
}

fn parse_key(text: &str) -> Arg {
    if let Some(n) = text.strip_prefix("int:").and_then(|n| n.parse().ok()) {
        return Arg::Int(n);
    }
    match text.strip_prefix("str:") {
        Some(s) => Arg::Str(s.to_owned()),
        None => {
            eprintln!("keys are int:N or str:S, not {text}");
            std::process::exit(2);
        }
    }
}

/// Moves the stored value of `from` in `src` to `to` in `dst`, its bytes unchanged.
fn move_value(src: &Cache, from: &Arg, dst: &Cache, to: &Arg) -> diskcache::Result<()> {
    let value = match from {
        Arg::Int(n) => src.get_value(n)?,
        Arg::Str(s) => src.get_value(s)?,
    };
    let Some(value) = value else {
        eprintln!("no value under the source key");
        std::process::exit(1);
    };
    match to {
        Arg::Int(n) => dst.set_value(n, &value, &SetOptions::new())?,
        Arg::Str(s) => dst.set_value(s, &value, &SetOptions::new())?,
    }
    match from {
        Arg::Int(n) => src.delete(n)?,
        Arg::Str(s) => src.delete(s)?,
    };
    Ok(())
}

fn main() -> diskcache::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("move") {
        let [_, _, src, from, dst, to] = &args[..] else {
            eprintln!("usage: interop move <src dir> <src key> <dst dir> <dst key>");
            std::process::exit(2);
        };
        let (src, dst) = (Cache::open(src)?, Cache::open(dst)?);
        return move_value(&src, &parse_key(from), &dst, &parse_key(to));
    }
    let (Some(cmd), Some(dir)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: interop read|write|garbage <dir>, or interop move ...");
        std::process::exit(2);
    };
    let cache = Cache::open(dir)?;
    match cmd.as_str() {
        "write" => {
            cache.set("rust-str", "written by Rust")?;
            cache.set("rust-bytes", serde_bytes::Bytes::new(b"\x00\x01rust"))?;
            cache.set("rust-int", -42i64)?;
            cache.set("rust-float", 2.5f64)?;
            cache.set(7, "seven")?;
            cache.set(serde_bytes::Bytes::new(b"bkey"), 1i64)?;
        }
        "garbage" => {
            // A plain list claiming 2^40 items; a truncated signed pickle; an unknown tag.
            let huge_list = vec![0x01, 0x09, 0x80, 0x80, 0x80, 0x80, 0x80, 0x20];
            cache.set_value("huge-list", &Value::Python(huge_list), &SetOptions::new())?;
            cache.set_value(
                "short-pickle",
                &Value::Python(vec![0x02, 1, 2, 3]),
                &SetOptions::new(),
            )?;
            cache.set_value("unknown", &Value::Python(vec![0x7f]), &SetOptions::new())?;
            // Well-formed plain data that cannot be built: a dict whose key is a list, and
            // a set holding a list.
            cache.set_value(
                "unhashable-key",
                &Value::Python(vec![0x01, 0x0a, 0x01, 0x09, 0x00, 0x00]),
                &SetOptions::new(),
            )?;
            cache.set_value(
                "unhashable-item",
                &Value::Python(vec![0x01, 0x0b, 0x01, 0x09, 0x00]),
                &SetOptions::new(),
            )?;
            cache.set_value(
                "bad-utf8",
                &Value::Python(vec![0x01, 0x06, 0x02, 0xff, 0xfe]),
                &SetOptions::new(),
            )?;
        }
        "read" => {
            let mut lines = Vec::new();
            for key in cache.iterkeys() {
                let key = key?;
                let value = match cache.get_value(&key)? {
                    Some(Value::Str(_)) => {
                        format!("str:{}", cache.get::<String>(&key)?.unwrap_or_default())
                    }
                    Some(Value::Bytes(_)) => {
                        let b: Vec<u8> = cache.get(&key)?.unwrap_or_default();
                        format!("bytes:{}", String::from_utf8_lossy(&b))
                    }
                    Some(Value::Int(_)) => {
                        format!("int:{}", cache.get::<i64>(&key)?.unwrap_or_default())
                    }
                    Some(Value::Float(_)) => {
                        format!("float:{:?}", cache.get::<f64>(&key)?.unwrap_or_default())
                    }
                    Some(Value::Python(b)) => format!("python:{} bytes", b.len()),
                    Some(other) => format!("other:{other:?}"),
                    None => "missing".to_string(),
                };
                lines.push(format!("{}\t{}", show_key(&key), value));
            }
            for l in lines {
                println!("{l}");
            }
        }
        other => {
            eprintln!("unknown command {other}");
            std::process::exit(2);
        }
    }
    Ok(())
}
