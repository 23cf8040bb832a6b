//! Opening a cache costs the work since its last checkpoint, not its size (requirement A9):
//! counted in frames replayed, never timed. Reading it all does not grow private memory
//! with the number of items (requirement A10): the index is mapped from disk.

use diskcache::Cache;

#[test]
fn opening_a_million_item_cache_replays_only_the_frames_since_the_last_checkpoint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let expected = {
        let cache = Cache::builder()
            .size_limit(u64::MAX)
            .open(dir.path())
            .expect("open");
        for batch in 0..100i64 {
            cache
                .transact(|| {
                    for i in 0..10_000 {
                        cache.set(batch * 10_000 + i, i)?;
                    }
                    Ok(())
                })
                .expect("batch");
        }
        for i in 0..7 {
            cache.set(("tail", i), i).expect("tail");
        }
        let info = cache.engine_info();
        assert!(
            info.checkpoints > 0,
            "a million items pass many checkpoints: {info:?}"
        );
        info.applied_lsn + 1 - info.log_start_lsn
    };
    // Every handle is closed, so this open runs recovery: it reads the checkpoint and
    // replays only what follows it.
    let cache = Cache::open(dir.path()).expect("reopen");
    let info = cache.engine_info();
    assert_eq!(info.frames_replayed_at_open, expected, "{info:?}");
    assert!(
        expected < 100,
        "the log since the last checkpoint is short: {expected} frames"
    );
    assert_eq!(cache.len().expect("len"), 1_000_007);
    assert_eq!(cache.get::<i64>(123_456).expect("get"), Some(3_456));
    assert_eq!(cache.get::<i64>(("tail", 6)).expect("get"), Some(6));

    // A10: touching every one of the million items maps the index file's pages (shared,
    // clean, reclaimable) but allocates little private memory.
    let before = private_kib();
    for i in (0..1_000_000i64).step_by(1) {
        assert_eq!(cache.get::<i64>(i).expect("get"), Some(i % 10_000));
    }
    let grown = private_kib().saturating_sub(before);
    assert!(
        grown < 32 << 10,
        "reading 1M items grew private memory by {grown} KiB"
    );
}

/// Anonymous (private) resident memory of this process, in KiB.
fn private_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("RssAnon")
}
