//! Entry points for the fuzz targets: every decoder of bytes read from disk, fed arbitrary
//! input. Not part of the API; each function must return (never panic, hang, or allocate
//! without bound) whatever the bytes.

use crate::format::{frame, key, meta, node, record};

/// The meta file's header and checkpoint slots.
pub fn meta(bytes: &[u8]) {
    let _ = meta::decode_header(bytes);
    let _ = meta::Checkpoint::decode(bytes);
}

/// A log segment: its header, then as many chained frames and their ops as decode.
pub fn segment(bytes: &[u8]) {
    let (mut crc, mut lsn) = match frame::SegmentHeader::decode(bytes) {
        Ok((h, crc)) => (crc, h.start_lsn),
        Err(_) => (0, 1),
    };
    let mut off = frame::SEGMENT_HEADER_LEN.min(bytes.len());
    while let Some(rest) = bytes.get(off..) {
        let Ok(f) = frame::decode_frame(rest, crc, lsn) else {
            break;
        };
        for op in frame::ops(f.payload) {
            if op.is_err() {
                break;
            }
        }
        crc = f.crc;
        lsn = lsn.wrapping_add(1);
        off += f.len;
    }
    for op in frame::ops(bytes) {
        if op.is_err() {
            break;
        }
    }
}

/// A tree node or blob: its header, then every entry, searches and routes.
pub fn node(bytes: &[u8]) {
    let _ = node::decode_index_header(bytes);
    for verify in [true, false] {
        if let Ok(n) = node::parse(bytes, verify) {
            let probe = bytes.get(..bytes.len().min(8)).unwrap_or(&[]);
            let _ = n.search(probe);
            let _ = n.route(probe);
            for i in 0..n.count().min(4096) {
                let _ = n.key(i);
                let _ = n.leaf_value(i);
                let _ = n.child(i);
            }
            let _ = n.blob();
        }
    }
}

/// An encoded key: validation, decoding, rendering, and typed deserialization.
pub fn key(bytes: &[u8]) {
    let _ = key::validate(bytes);
    let _ = crate::Key::from_encoded(bytes);
    let _ = crate::format::key_de_render(bytes);
    let _ = crate::key::decode_key::<(i64, String, Vec<u8>)>(bytes);
    let _ = crate::key::decode_key::<serde_json::Value>(bytes);
    let _ = crate::key::decode_key::<Vec<Option<(bool, f64)>>>(bytes);
}

/// A cache record (the primary tree's value), and the values it may hold.
pub fn record(bytes: &[u8]) {
    if let Ok(r) = record::decode(bytes) {
        if let record::Data::Inline(v) = r.data {
            if let Ok(n) = crate::format::value::NativeDe::from_stored(r.kind, v) {
                let _ = <serde_json::Value as serde::Deserialize>::deserialize(n);
            }
            let _ = crate::codec::Codec::decode::<Vec<(String, u64)>>(&crate::Bincode, v);
            let _ = crate::codec::Codec::decode::<serde_json::Value>(&crate::Json, v);
        }
    }
}
