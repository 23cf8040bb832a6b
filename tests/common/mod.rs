//! Helpers shared by the integration tests (each test binary uses some of them).
#![allow(dead_code)]

pub mod children;

use diskcache::Cache;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Every value file (`*.val`) below `root`, at any depth (a missing `root` has none).
pub fn value_files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries {
            let p = e.expect("read a directory entry").path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "val") {
                out.push(p);
            }
        }
    }
    out
}

/// Writes small items until the cache has checkpointed once more.
pub fn force_checkpoint(cache: &Cache) {
    let start = cache.engine_info().checkpoints;
    for i in 0..10_000u32 {
        if cache.engine_info().checkpoints > start {
            return;
        }
        cache
            .set(("checkpoint-filler", i), i)
            .expect("filler write");
    }
    panic!("no checkpoint after 10000 small writes");
}

/// Sleeps until the clock is past `t` (by a millisecond).
pub fn wait_past(t: SystemTime) {
    while SystemTime::now() <= t + Duration::from_millis(1) {
        std::thread::sleep(Duration::from_millis(1));
    }
}
