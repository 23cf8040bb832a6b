//! Keys on the command line and in output.

use crate::fail::{Fail, R};
use crate::ui::{hex, unhex};
use diskcache::Key;
use serde_json::{json, Value as JsonValue};

/// How a key (or tag) given on the command line is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Syntax {
    /// As a string.
    Str,
    /// As an integer (up to 128 bits).
    Int,
    /// As hex digits of a byte string.
    Hex,
    /// As JSON: numbers, strings, arrays (tuples), objects, booleans, null.
    Json,
    /// As hex digits of the key's canonical encoding (the `encoded` field of `keys --json`).
    Encoded,
}

/// Parses a key written in `syntax`.
pub fn parse(text: &str, syntax: Syntax, what: &str) -> R<Key> {
    let bad = |why: String| Fail::usage(format!("{what} {text:?}: {why}"));
    match syntax {
        Syntax::Str => Ok(Key::Str(text.to_owned())),
        Syntax::Int => text
            .trim()
            .parse::<i128>()
            .map(Key::Int)
            .map_err(|e| bad(format!("not an integer: {e}"))),
        Syntax::Hex => unhex(text).map(Key::Bytes).map_err(bad),
        Syntax::Json => {
            let v: JsonValue =
                serde_json::from_str(text).map_err(|e| bad(format!("not JSON: {e}")))?;
            Key::from_value(&v).map_err(|e| bad(e.to_string()))
        }
        Syntax::Encoded => {
            let b = unhex(text).map_err(&bad)?;
            Key::from_bytes(&b).map_err(|e| bad(e.to_string()))
        }
    }
}

fn kind(k: &Key) -> &'static str {
    match k {
        Key::Int(_) => "int",
        Key::Float(_) => "float",
        Key::Str(_) => "str",
        Key::Bytes(_) => "bytes",
        Key::Python(_) => "python",
        _ => "composite",
    }
}

/// A key for JSON output: its display form, kind, natural JSON value where JSON can hold it
/// (bytes as hex; `null` for composites JSON cannot express), and its canonical encoding in
/// hex (which `--key-encoded` reads back, whatever the key).
pub fn to_json(k: &Key) -> JsonValue {
    let value = match k {
        Key::Int(i) => match (i64::try_from(*i), u64::try_from(*i)) {
            (Ok(x), _) => json!(x),
            (_, Ok(x)) => json!(x),
            _ => json!(i.to_string()),
        },
        Key::Float(x) => {
            serde_json::Number::from_f64(*x).map_or_else(|| json!(x.to_string()), JsonValue::from)
        }
        Key::Str(s) => json!(s),
        Key::Bytes(b) => json!(hex(b)),
        other => other.deserialize::<JsonValue>().unwrap_or(JsonValue::Null),
    };
    json!({
        "display": k.to_string(),
        "kind": kind(k),
        "value": value,
        "encoded": hex(&k.to_bytes()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_syntax_reads_its_key() {
        assert_eq!(
            parse("a b", Syntax::Str, "key").unwrap(),
            Key::Str("a b".into())
        );
        assert_eq!(parse("-12", Syntax::Int, "key").unwrap(), Key::Int(-12));
        assert_eq!(
            parse("00ff", Syntax::Hex, "key").unwrap(),
            Key::Bytes(vec![0, 255])
        );
        assert_eq!(
            parse(r#"[1,"a"]"#, Syntax::Json, "key").unwrap(),
            Key::from_value(&(1, "a")).unwrap()
        );
        let k = Key::from_value(&(1, "a")).unwrap();
        assert_eq!(
            parse(&hex(&k.to_bytes()), Syntax::Encoded, "key").unwrap(),
            k
        );
        assert!(parse("x", Syntax::Int, "key").is_err());
        assert!(parse("[", Syntax::Json, "key").is_err());
        assert!(parse("ff", Syntax::Encoded, "key").is_err());
    }

    #[test]
    fn json_form_of_a_composite_key_is_its_structure() {
        let k = Key::from_value(&(1, "a")).unwrap();
        let j = to_json(&k);
        assert_eq!(j["kind"], "composite");
        assert_eq!(j["value"], json!([1, "a"]));
        assert_eq!(j["display"], r#"(1, "a")"#);
    }
}
