//! Runs random inputs through a target without libFuzzer (quick checks, and replaying
//! artifacts with a readable panic): `cargo run --release --example smoke -- ops 1000` or
//! `cargo run --release --example smoke -- ops path/to/crash-file [times]`.

use diskcache_fuzz::{decoders, files, ops};

fn run(target: &str, bytes: &[u8]) {
    match target {
        "ops" => {
            if let Some(i) = ops::decode(bytes) {
                if std::env::var_os("SMOKE_VERBOSE").is_some() {
                    eprintln!("{i:#?}");
                }
                ops::run(&i);
            }
        }
        "files" => {
            if let Some(i) = files::decode(bytes) {
                if std::env::var_os("SMOKE_VERBOSE").is_some() {
                    eprintln!("{i:#?}");
                }
                files::run(&i);
            }
        }
        "decoders" => decoders::run(bytes),
        other => panic!("unknown target {other}"),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let target = args.first().map(String::as_str).unwrap_or("ops");
    let what = args.get(1).map(String::as_str).unwrap_or("100");
    if let Ok(n) = what.parse::<u64>() {
        let mut rng =
            fastrand::Rng::with_seed(args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1));
        for i in 0..n {
            let len = rng.usize(0..2000);
            let bytes: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
            if std::env::var_os("SMOKE_SAVE").is_some() {
                std::fs::write("/tmp/smoke-last", &bytes).expect("save");
            }
            let _ = i;
            run(target, &bytes);
        }
        println!(
            "{}",
            diskcache_fuzz::stats::line(match target {
                "ops" => "ops",
                "files" => "files",
                _ => "decoders",
            })
        );
    } else {
        // `smoke ops FILE [TIMES]`: the same input, TIMES times in this process (the
        // library's hash maps order differently each time, which changes file layouts).
        let bytes = std::fs::read(what).expect("read input");
        let times: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1);
        for _ in 0..times {
            run(target, &bytes);
        }
        println!("ran {what} {times} times: ok");
    }
}
