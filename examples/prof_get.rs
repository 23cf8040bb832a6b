//! Profiling helper: best-of-5 per-op time of set or get on a 10k-key cache.
use diskcache::Cache;
fn main() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::builder()
        .size_limit(u64::MAX)
        .open(dir.path())
        .unwrap();
    let v = vec![b'v'; 100];
    for i in 0..10_000u64 {
        cache.set(format!("key-{i:010}"), &v[..]).unwrap();
    }
    let mode = std::env::args().nth(1).unwrap_or_default();
    let mut rng = fastrand::Rng::with_seed(1);
    // Overwrites, so the keys are spread over checkpointed trees and the log.
    for _ in 0..100_000 {
        cache
            .set(format!("key-{:010}", rng.u64(..10_000)), &v[..])
            .unwrap();
    }
    let mut best = std::time::Duration::MAX;
    for _ in 0..5 {
        let keys: Vec<String> = (0..400_000)
            .map(|_| format!("key-{:010}", rng.u64(..10_000)))
            .collect();
        let t = std::time::Instant::now();
        for k in keys {
            if mode == "set" {
                cache.set(k, &v[..]).unwrap();
            } else {
                let x: Option<Vec<u8>> = cache.get(k).unwrap();
                assert!(x.is_some());
            }
        }
        best = best.min(t.elapsed() / 400_000);
    }
    eprintln!("{mode}: {best:?} per op (best of 5)");
}
