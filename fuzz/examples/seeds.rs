//! Writes the seed corpora of the three targets (`fuzz/seeds/<target>/`), from code:
//!
//! * `ops`: random byte strings whose decoded operation sequences each hold a crash, a
//!   transaction, a value file and an injected fault or space limit (chosen among many);
//! * `decoders`: the real files of a small cache (meta, log segment, index nodes, value
//!   file), each behind every decoder's selector byte;
//! * `files`: no damage, and byte strings that decode to a few kinds of damage.
//!
//! Run with `cargo run --release --example seeds` in `fuzz/`.

use arbitrary::{Arbitrary, Unstructured};
use diskcache_fuzz::{decoders, files, ops};
use std::fs;
use std::path::Path;

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    fs::create_dir_all(dir).expect("create seed dir");
    fs::write(dir.join(name), bytes).expect("write seed");
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    let mut rng = fastrand::Rng::with_seed(2024);

    // ops: interesting sequences out of random bytes.
    let mut kept = 0;
    let mut second = 0;
    let mut tries = 0;
    while kept < 16 && tries < 400_000 {
        tries += 1;
        let len = rng.usize(200..1200);
        let bytes: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
        let Some(input) = ops::decode(&bytes) else {
            continue;
        };
        let has = |f: &dyn Fn(&ops::Op) -> bool| input.ops.iter().take(ops::MAX_OPS).any(f);
        let crash = has(&|o| matches!(o, ops::Op::Crash { .. } | ops::Op::KillProcess));
        let txn = has(&|o| matches!(o, ops::Op::Txn { .. }));
        let large = has(&|o| {
            matches!(
                o,
                ops::Op::Set {
                    val: ops::Val::Large { .. },
                    ..
                } | ops::Op::SetReader { .. }
            )
        });
        let fault = has(&|o| matches!(o, ops::Op::FailAfter { .. } | ops::Op::SpaceLimit(Some(_))));
        let n = input.ops.len();
        let lock = has(&|o| matches!(o, ops::Op::Second(ops::Second::KillHoldingLock { .. })));
        // Twelve seeds with a crash, a transaction, a value file and a fault; four with a
        // process killed while holding the writer lock.
        if !(8..=ops::MAX_OPS).contains(&n) {
            continue;
        }
        let wanted = if lock && second < 4 {
            second += 1;
            true
        } else {
            kept - second < 12 && crash && txn && large && fault
        };
        if wanted {
            ops::run(&input);
            write(&root.join("ops"), &format!("seed-{kept:02}"), &bytes);
            kept += 1;
        }
    }
    println!("ops: {kept} seeds from {tries} candidates");

    // decoders: real files behind each selector byte.
    let t = files::template();
    let mut n = 0;
    for (path, bytes) in &t.files {
        let name = path.file_name().and_then(|s| s.to_str()).unwrap_or("file");
        let kind: &[u8] = if name == "meta" {
            &[0]
        } else if name.ends_with(".log") {
            &[1, 3, 4]
        } else if name.ends_with(".idx") {
            &[2, 3, 4]
        } else {
            continue;
        };
        // Used part only (segments are preallocated with zeros), in pieces of at most 8 KiB.
        let used = bytes.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
        for (i, chunk) in bytes[..used].chunks(8192).take(4).enumerate() {
            for k in kind {
                let mut seed = vec![*k];
                seed.extend_from_slice(chunk);
                decoders::run(&seed);
                write(&root.join("decoders"), &format!("{name}-{i}-{k}"), &seed);
                n += 1;
            }
        }
    }
    println!("decoders: {n} seeds");

    // files: the empty input (no damage) and random byte strings, each decoding to a list
    // of damage (`arbitrary` has no encoder, so seeds are bytes that decode to something).
    write(&root.join("files"), "seed-none", &[]);
    let mut m = 0;
    while m < 12 {
        let len = rng.usize(16..160);
        let bytes: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
        let Ok(input) = files::Input::arbitrary(&mut Unstructured::new(&bytes)) else {
            continue;
        };
        if input.damage.is_empty() {
            continue;
        }
        files::run(&input);
        write(&root.join("files"), &format!("seed-{m:02}"), &bytes);
        m += 1;
    }
    println!("files: {} seeds", m + 1);
}
