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

/// Hand-written `ops` inputs for paths random bytes reach rarely.
fn scenarios() -> Vec<ops::Input> {
    use ops::{Config, Expiry, Input, Op, Second, Val};
    let config = |full_sync| Config {
        seed: 5,
        full_sync,
        checkpoint_extra: 0,
        tag_index: true,
        cull_size_limit: None,
    };
    let large = |fill| Val::Large { fill, len: 900 };
    let mut out = Vec::new();
    for full in [false, true] {
        out.push(Input {
            config: config(full),
            ops: vec![
                Op::Set {
                    key: 1,
                    val: Val::Small(vec![1]),
                    expiry: Expiry::Never,
                    tag: Some(1),
                },
                Op::Second(Second::Open),
                Op::Second(Second::Set {
                    key: 2,
                    val: large(2),
                }),
                Op::Second(Second::KillHoldingLock {
                    key: 3,
                    val: large(3),
                    other_key: 4,
                }),
                Op::Set {
                    key: 5,
                    val: Val::Small(vec![5]),
                    expiry: Expiry::Future,
                    tag: None,
                },
                Op::Second(Second::Incr(6, 7)),
                Op::Second(Second::KillHoldingLock {
                    key: 7,
                    val: Val::Small(vec![7]),
                    other_key: 8,
                }),
                Op::KillProcess,
                Op::Crash {
                    power: true,
                    during_recovery: None,
                    second_power: false,
                },
                Op::Second(Second::Open),
                Op::FailAfter {
                    after: 3,
                    enospc: false,
                },
                Op::Second(Second::KillHoldingLock {
                    key: 9,
                    val: large(9),
                    other_key: 10,
                }),
                Op::Heal,
                Op::Reopen,
                Op::Check,
            ],
        });
    }
    // A handle that goes on in a forked child (the parent living on with its locks, or
    // dying), and value files damaged between runs: the damaged entry costs itself only.
    for full in [false, true] {
        for parent_dies in [false, true] {
            out.push(Input {
                config: config(full),
                ops: vec![
                    Op::Set {
                        key: 1,
                        val: large(1),
                        expiry: Expiry::Never,
                        tag: None,
                    },
                    Op::Set {
                        key: 2,
                        val: large(2),
                        expiry: Expiry::Future,
                        tag: Some(2),
                    },
                    Op::Second(Second::Open),
                    Op::Fork { parent_dies },
                    Op::Set {
                        key: 3,
                        val: Val::Small(vec![3]),
                        expiry: Expiry::Never,
                        tag: None,
                    },
                    Op::Second(Second::Incr(4, 2)),
                    Op::DamageValueFile {
                        pick: 0,
                        remove: parent_dies,
                    },
                    Op::Set {
                        key: 5,
                        val: large(5),
                        expiry: Expiry::Never,
                        tag: None,
                    },
                    Op::Fork {
                        parent_dies: !parent_dies,
                    },
                    Op::DamageValueFile {
                        pick: 1,
                        remove: !parent_dies,
                    },
                    Op::Compact,
                    Op::Crash {
                        power: true,
                        during_recovery: None,
                        second_power: false,
                    },
                    Op::Check,
                ],
            });
        }
    }
    // A failure after a checkpoint was published (compact: checkpoint, then a new index
    // file) still leaves that checkpoint durable; a power loss must not go back past it.
    for after in 0..40 {
        for full in [false, true] {
            out.push(Input {
                config: config(full),
                ops: vec![
                    Op::Set {
                        key: 1,
                        val: Val::Small(vec![1]),
                        expiry: Expiry::Never,
                        tag: None,
                    },
                    Op::Set {
                        key: 2,
                        val: large(2),
                        expiry: Expiry::Past,
                        tag: Some(2),
                    },
                    Op::Compact,
                    Op::Set {
                        key: 3,
                        val: Val::Small(vec![3]),
                        expiry: Expiry::Never,
                        tag: None,
                    },
                    Op::FailAfter {
                        after,
                        enospc: true,
                    },
                    Op::Compact,
                    Op::Heal,
                    Op::Clear,
                    Op::Crash {
                        power: true,
                        during_recovery: None,
                        second_power: false,
                    },
                    Op::Set {
                        key: 4,
                        val: large(4),
                        expiry: Expiry::Never,
                        tag: None,
                    },
                    Op::Crash {
                        power: true,
                        during_recovery: Some(after),
                        second_power: true,
                    },
                ],
            });
        }
    }
    out
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("scenarios") {
        for input in scenarios() {
            ops::run(&input);
        }
        println!("scenarios: ok");
        return;
    }
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
