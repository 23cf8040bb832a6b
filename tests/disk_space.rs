//! Disk space stays bounded under overwrite-heavy load (requirement A13): the files stay
//! within about twice the live data (plus the log since the last checkpoint).

use diskcache::Cache;
use std::path::Path;

fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir") {
            let e = e.expect("entry");
            let m = e.metadata().expect("metadata");
            if m.is_dir() {
                stack.push(e.path());
            } else {
                total += m.len();
            }
        }
    }
    total
}

fn overwrite(keys: u32, value_len: usize, rounds: u32) {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = Cache::builder()
        .size_limit(u64::MAX)
        .open(dir.path())
        .expect("open");
    let mut rng = fastrand::Rng::with_seed(u64::from(keys));
    for k in 0..keys {
        cache.set(k, vec![1u8; value_len]).expect("set");
    }
    let live = u64::from(keys) * value_len as u64;
    let mut worst = 0;
    for i in 0..rounds {
        let k = rng.u32(..keys);
        cache
            .set(k, vec![(i % 251) as u8; value_len])
            .expect("overwrite");
        if i % 500 == 0 {
            worst = worst.max(dir_bytes(dir.path()));
        }
    }
    // The log may hold up to a checkpoint's worth (4 MiB) plus its preallocation, and the
    // meta file and headers add a little.
    let slack = 8 << 20;
    assert!(
        worst <= 2 * live + slack,
        "{keys} keys of {value_len} bytes: the directory reached {worst} bytes for {live} live"
    );
}

#[test]
fn inline_values_overwritten_many_times_stay_within_twice_the_live_data() {
    overwrite(8_000, 2_000, 60_000);
}

#[test]
fn file_backed_values_overwritten_many_times_stay_within_twice_the_live_data() {
    overwrite(200, 100_000, 3_000);
}
