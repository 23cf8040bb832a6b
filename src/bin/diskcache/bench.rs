//! `bench`: a quick local benchmark of set, get and delete.

use crate::commands::print_json;
use crate::fail::{Fail, R};
use crate::ui::{bar, nanos};
use crate::Ctx;
use diskcache::Cache;
use serde_json::json;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Latency percentiles of one operation, in nanoseconds.
struct Summary {
    median: u64,
    p90: u64,
    p99: u64,
    max: u64,
    mean: u64,
}

fn summarize(mut ns: Vec<u64>) -> Summary {
    ns.sort_unstable();
    let at = |q: f64| -> u64 {
        if ns.is_empty() {
            return 0;
        }
        let i = ((ns.len() as f64 - 1.0) * q).round() as usize;
        ns[i.min(ns.len() - 1)]
    };
    let mean = if ns.is_empty() {
        0
    } else {
        (ns.iter().map(|&x| u128::from(x)).sum::<u128>() / ns.len() as u128) as u64
    };
    Summary {
        median: at(0.5),
        p90: at(0.9),
        p99: at(0.99),
        max: ns.last().copied().unwrap_or(0),
        mean,
    }
}

/// A directory to run in: the one given (missing or empty), or a new temporary one.
fn bench_dir(dir: Option<&Path>) -> R<PathBuf> {
    match dir {
        Some(d) => {
            if d.exists() {
                let mut rd = std::fs::read_dir(d)
                    .map_err(|e| Fail::io(format!("reading {}", d.display()), e))?;
                if rd.next().is_some() {
                    return Err(Fail::usage(format!(
                        "{} is not empty; bench needs a missing or empty directory",
                        d.display()
                    )));
                }
            }
            Ok(d.to_path_buf())
        }
        None => {
            let base = std::env::temp_dir();
            loop {
                let d = base.join(format!("diskcache-bench-{:016x}", fastrand::u64(..)));
                match std::fs::create_dir(&d) {
                    Ok(()) => return Ok(d),
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                    Err(e) => return Err(Fail::io(format!("creating {}", d.display()), e)),
                }
            }
        }
    }
}

pub fn run(ctx: &Ctx, dir: Option<&Path>, ops: usize, value_size: usize, keep: bool) -> R<()> {
    if ops == 0 {
        return Err(Fail::usage("--ops must be at least 1"));
    }
    let d = bench_dir(dir)?;
    let result = measure(ctx, &d, ops, value_size);
    if !keep {
        let _ = std::fs::remove_dir_all(&d);
    }
    let results = result?;
    let names = ["set", "get", "delete"];
    if ctx.json {
        let mut per_op = serde_json::Map::new();
        for (name, s) in names.iter().zip(&results) {
            per_op.insert(
                (*name).to_owned(),
                json!({
                    "median_ns": s.median,
                    "p90_ns": s.p90,
                    "p99_ns": s.p99,
                    "max_ns": s.max,
                    "mean_ns": s.mean,
                }),
            );
        }
        return print_json(&json!({
            "ops": ops,
            "value_size": value_size,
            "directory": d.display().to_string(),
            "kept": keep,
            "results": per_op,
        }));
    }
    let mut out = io::stdout().lock();
    writeln!(
        out,
        "{ops} operations of each kind, {value_size}-byte values, in {}{}",
        d.display(),
        if keep { "" } else { " (removed)" }
    )?;
    writeln!(
        out,
        "{:<8} {:>10} {:>10} {:>10} {:>10} {:>12}",
        "op", "median", "p90", "p99", "max", "ops/s"
    )?;
    for (name, s) in names.iter().zip(&results) {
        let rate = if s.mean > 0 { 1e9 / s.mean as f64 } else { 0.0 };
        writeln!(
            out,
            "{:<8} {:>10} {:>10} {:>10} {:>10} {:>12.0}",
            name,
            nanos(s.median),
            nanos(s.p90),
            nanos(s.p99),
            nanos(s.max),
            rate
        )?;
    }
    Ok(())
}

fn measure(ctx: &Ctx, dir: &Path, ops: usize, value_size: usize) -> R<Vec<Summary>> {
    let cache = Cache::builder().timeout(ctx.timeout).open(dir)?;
    // Keys and the value are built before timing, so only the cache operation is timed.
    let keys: Vec<String> = (0..ops).map(|i| format!("bench-{i:010}")).collect();
    let value = "x".repeat(value_size);
    let pb = bar(3 * ops as u64, "benchmarking", false);
    let step = (ops / 100).max(1);
    let mut all = Vec::with_capacity(3);
    for op in 0..3 {
        let mut ns = Vec::with_capacity(ops);
        for (i, k) in keys.iter().enumerate() {
            let t = Instant::now();
            match op {
                0 => cache.set(k, value.as_str())?,
                1 => {
                    if cache.get::<String>(k)?.is_none() {
                        return Err(Fail::usage(format!("benchmark key {k} vanished")));
                    }
                }
                _ => {
                    cache.delete(k)?;
                }
            }
            ns.push(t.elapsed().as_nanos().min(u128::from(u64::MAX)) as u64);
            if i % step == 0 {
                pb.set_position((op * ops + i) as u64);
            }
        }
        all.push(summarize(ns));
    }
    pb.finish_and_clear();
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_the_right_ranks() {
        let s = summarize((1..=100).rev().collect());
        assert_eq!(s.median, 51);
        assert_eq!(s.p90, 90);
        assert_eq!(s.p99, 99);
        assert_eq!(s.max, 100);
        assert_eq!(s.mean, 50);
    }
}
