//! Opening a cache costs the work since its last checkpoint, not its size (requirement A9):
//! counted in frames replayed, never timed. Reading it all does not grow private memory
//! with the number of items (requirement A10): the index is mapped from disk.

use diskcache::Cache;

/// Set in the child process that builds the cache and dies without closing it.
const CHILD: &str = "OPEN_COST_BUILD_DIR";

#[test]
fn opening_a_million_item_cache_replays_only_the_frames_since_the_last_checkpoint() {
    if let Ok(dir) = std::env::var(CHILD) {
        build_and_die(std::path::Path::new(&dir));
    }
    let dir = tempfile::tempdir().expect("tempdir");
    // A process that dies without closing its handle (as a killed one does) leaves the log
    // since the last checkpoint for the next open to replay; a handle that closes would
    // checkpoint first (see the test below).
    let out = std::process::Command::new(std::env::current_exe().expect("current_exe"))
        .args([
            "opening_a_million_item_cache_replays_only_the_frames_since_the_last_checkpoint",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, dir.path())
        .output()
        .expect("run the child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let expected: u64 = stdout
        .lines()
        .find_map(|l| l.split_once("frames-since-checkpoint=").map(|(_, v)| v))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "the child reported nothing ({}): {stdout}{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )
        });
    // No handle is open, so this open runs recovery: it reads the checkpoint and replays
    // only what follows it.
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

/// The child's part: a million items in batches, seven single sets, then an exit that skips
/// every destructor, so nothing is checkpointed on the way out.
fn build_and_die(dir: &std::path::Path) -> ! {
    let cache = Cache::builder()
        .size_limit(u64::MAX)
        .open(dir)
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
    println!(
        "frames-since-checkpoint={}",
        info.applied_lsn + 1 - info.log_start_lsn
    );
    std::process::exit(0)
}

#[test]
fn the_last_handle_to_close_checkpoints_so_the_next_open_replays_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = {
        let cache = Cache::open(dir.path()).expect("open");
        // Enough log since the last checkpoint that replaying it would cost something.
        let mut n = 0i64;
        while n < 20_000 || cache.engine_info().log_bytes < 1 << 20 {
            cache.set(n, n).expect("set");
            n += 1;
        }
        let second = Cache::open(dir.path()).expect("second handle");
        drop(second);
        let info = cache.engine_info();
        assert!(
            info.applied_lsn + 1 > info.log_start_lsn,
            "closing the second handle left the log alone (the first is still open): {info:?}"
        );
        n
    };
    let cache = Cache::open(dir.path()).expect("reopen");
    let info = cache.engine_info();
    assert_eq!(info.frames_replayed_at_open, 0, "{info:?}");
    assert_eq!(cache.len().expect("len"), n as u64);
    assert_eq!(cache.get::<i64>(n - 1).expect("get"), Some(n - 1));
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
