//! Durability promises that hold whatever other handles, the file system or the power do,
//! through the fault-injecting storage: creating a cache survives a power cut at any step;
//! the sync level is the cache's, so a commit acknowledged at `Full` survives power loss
//! even when another handle runs at `Off`; a value file that was synced before its commit
//! and then vanished costs its entry only; a failed sync stops every write of the handle
//! (value files included) until it is reopened; network file systems are refused unless
//! one process alone uses the cache.

use diskcache::storage::{CrashMode, FaultConfig, FaultyStorage, FsKind, Storage};
use diskcache::{Cache, Error, SyncLevel};
use std::path::Path;
use std::sync::Arc;

fn storage(seed: u64) -> FaultyStorage {
    FaultyStorage::new(FaultConfig {
        seed,
        max_file_len: 16 << 20,
    })
}

fn builder(s: &FaultyStorage) -> diskcache::CacheBuilder {
    Cache::builder()
        .storage(Arc::new(s.clone()))
        .min_file_size(512)
        .checkpoint_bytes(8 << 10)
}

fn dir() -> &'static Path {
    Path::new("/c")
}

#[test]
fn a_power_cut_at_any_step_of_creating_a_cache_leaves_a_directory_that_opens() {
    // How many storage operations creating and first opening a cache takes.
    let probe = storage(0);
    builder(&probe).open(dir()).expect("open");
    let steps = probe.op_count();
    assert!(steps > 5, "{steps}");
    for seed in 0..3 {
        for n in 1..=steps + 1 {
            let s = storage(seed * 1000 + n);
            s.fail_after(n, std::io::ErrorKind::Other);
            let _ = builder(&s).open(dir());
            s.crash(CrashMode::PowerLoss);
            let c = builder(&s)
                .open(dir())
                .unwrap_or_else(|e| panic!("power cut at step {n} (seed {seed}): {e}"));
            c.set("works", 1).expect("set");
            assert_eq!(c.get::<i64>("works").expect("get"), Some(1));
        }
    }
}

/// Two handles at different levels: `b` opens with `Off` while `a` has made commits at
/// `Full`. The level is the cache's, so `b` lowers it for both, but only after what `a`
/// committed at `Full` is durable: b's checkpoints at `Off` (which sync nothing and remove
/// the old log segment) can no longer take it away.
#[test]
fn a_commit_acknowledged_at_full_survives_power_loss_whatever_other_handles_do() {
    // DURABILITY_SEEDS=300 for a longer run.
    let seeds = std::env::var("DURABILITY_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    for seed in 0..seeds {
        let s = storage(seed);
        let a = builder(&s)
            .sync(SyncLevel::Full)
            .open(dir())
            .expect("open a");
        for i in 0..20u32 {
            a.set(("full", i), vec![i as u8; 100 + 40 * i as usize])
                .expect("set at Full");
        }
        let b = builder(&s)
            .sync(SyncLevel::Off)
            .open(dir())
            .expect("open b");
        let mut rng = fastrand::Rng::with_seed(seed);
        for i in 0..rng.u32(50..400) {
            b.set(("off", i), vec![7u8; rng.usize(10..900)])
                .expect("set at Off");
        }
        s.crash(CrashMode::PowerLoss);
        let c = builder(&s)
            .open(dir())
            .unwrap_or_else(|e| panic!("seed {seed}: the cache does not open: {e}"));
        for i in 0..20u32 {
            assert_eq!(
                c.get::<Vec<u8>>(("full", i)).expect("get"),
                Some(vec![i as u8; 100 + 40 * i as usize]),
                "seed {seed}: commit {i}, acknowledged at Full, was lost"
            );
        }
    }
}

#[test]
fn the_sync_level_is_the_caches_and_a_handle_without_one_keeps_it() {
    let s = storage(1);
    let a = builder(&s).sync(SyncLevel::Full).open(dir()).expect("open");
    let b = builder(&s).open(dir()).expect("open without a level");
    assert_eq!(
        b.setting("sync").expect("setting"),
        Some(serde_json::json!("full"))
    );
    b.set("from b", 1).expect("set");
    s.crash(CrashMode::PowerLoss);
    drop((a, b));
    let c = builder(&s).open(dir()).expect("reopen");
    assert_eq!(
        c.get::<i64>("from b").expect("get"),
        Some(1),
        "b's commit was made at the cache's level, Full"
    );
    c.reset("sync", "normal").expect("reset");
    assert_eq!(
        builder(&s)
            .open(dir())
            .expect("open")
            .setting("sync")
            .expect("setting"),
        Some(serde_json::json!("normal"))
    );
    assert!(matches!(
        c.reset("sync", "sometimes"),
        Err(Error::InvalidArgument(_))
    ));
}

/// At `Full`, a value file is durable before the commit that refers to it; if it is gone
/// after a power loss, that is damage to one entry, not the end of the log.
#[test]
fn after_a_power_loss_a_lost_value_file_synced_before_its_commit_costs_only_its_entry() {
    let s = storage(7);
    let c = builder(&s).sync(SyncLevel::Full).open(dir()).expect("open");
    c.set("big", vec![3u8; 5000]).expect("set big");
    for i in 0..10 {
        c.set(("later", i), i).expect("set");
    }
    drop(c);
    s.crash(CrashMode::PowerLoss);
    for p in s.paths() {
        if p.extension().is_some_and(|x| x == "val") {
            s.remove_file(&p).expect("remove");
        }
    }
    let c = builder(&s).open(dir()).expect("reopen");
    assert_eq!(c.get::<Vec<u8>>("big").expect("get"), None);
    for i in 0..10 {
        assert_eq!(c.get::<i64>(("later", i)).expect("get"), Some(i));
    }
}

#[test]
fn a_failed_sync_of_a_value_file_stops_every_write_until_the_handle_is_reopened() {
    let s = storage(3);
    let c = builder(&s).sync(SyncLevel::Full).open(dir()).expect("open");
    c.set("before", 1).expect("set");
    s.fail_syncs_of(Some(".val"));
    assert!(matches!(
        c.set("big", vec![1u8; 5000]),
        Err(Error::Io { .. })
    ));
    s.fail_syncs_of(None);
    // The disk works again, but this handle cannot know what it dropped.
    assert!(matches!(c.set("small", 2), Err(Error::PreviousIo)));
    assert!(matches!(
        c.set("big", vec![1u8; 5000]),
        Err(Error::PreviousIo)
    ));
    assert_eq!(c.get::<i64>("before").expect("reads go on"), Some(1));
    drop(c);
    let c = builder(&s).open(dir()).expect("reopen");
    c.set("small", 2).expect("a new handle writes");
    assert_eq!(c.get::<Vec<u8>>("big").expect("get"), None);
}

#[test]
fn a_failed_sync_at_a_checkpoint_stops_every_write_until_the_handle_is_reopened() {
    let s = storage(4);
    let c = builder(&s).open(dir()).expect("open");
    s.fail_syncs_of(Some(".idx"));
    let mut failed = None;
    for i in 0..10_000u32 {
        if let Err(e) = c.set(("fill", i), vec![0u8; 200]) {
            failed = Some(e);
            break;
        }
    }
    // The commit that triggered the checkpoint succeeded; the next one is refused.
    assert!(matches!(failed, Some(Error::PreviousIo)), "{failed:?}");
    s.fail_syncs_of(None);
    assert!(matches!(c.set("x", 1), Err(Error::PreviousIo)));
    drop(c);
    builder(&s)
        .open(dir())
        .expect("reopen")
        .set("x", 1)
        .expect("set");
}

#[test]
fn a_network_file_system_is_refused_unless_one_process_alone_uses_the_cache() {
    let s = storage(5);
    s.set_fs_kind(FsKind::Network("NFS"));
    match builder(&s).open(dir()) {
        Err(Error::Unsupported(why)) => assert!(why.contains("NFS"), "{why}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    let only = builder(&s)
        .single_process(true)
        .open(dir())
        .expect("single-process mode opens");
    only.set("k", 1).expect("set");
    assert!(matches!(
        builder(&s).single_process(true).open(dir()),
        Err(Error::Unsupported(_))
    ));
    let other = s.process(2);
    assert!(builder(&other).single_process(true).open(dir()).is_err());
    drop(only);
    let again = builder(&s)
        .single_process(true)
        .open(dir())
        .expect("opens once the other is gone");
    assert_eq!(again.get::<i64>("k").expect("get"), Some(1));
}

#[test]
fn file_system_kinds_are_told_by_their_magic_numbers() {
    assert_eq!(FsKind::from_magic(0x6969), FsKind::Network("NFS"));
    assert_eq!(FsKind::from_magic(0xff53_4d42), FsKind::Network("CIFS"));
    assert_eq!(FsKind::from_magic(0xfe53_4d42), FsKind::Network("SMB2"));
    assert_eq!(
        FsKind::from_magic(0x9123_683e),
        FsKind::CopyOnWrite("btrfs")
    );
    assert_eq!(FsKind::from_magic(0x2fc1_2fc1), FsKind::CopyOnWrite("ZFS"));
    assert_eq!(FsKind::from_magic(0xef53), FsKind::Local, "ext4");
    assert_eq!(FsKind::from_magic(0x5846_5342), FsKind::Local, "xfs");
    assert_eq!(FsKind::from_magic(0x0102_1994), FsKind::Local, "tmpfs");
    assert_eq!(FsKind::from_magic(0x794c_7630), FsKind::Local, "overlayfs");
    // And the real one under a temporary directory is local.
    let d = tempfile::tempdir().expect("tempdir");
    let os = diskcache::storage::OsStorage::default();
    assert!(!matches!(
        os.fs_kind(d.path()).expect("statfs"),
        FsKind::Network(_)
    ));
}
