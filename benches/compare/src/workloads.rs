//! The workloads, run the same way on every engine: in this process for the Rust engines
//! (in worker processes where the workload needs a fresh process or several), and through
//! pydc_bench.py for python-diskcache.

use crate::pyrandom::PyRandom;
use crate::python::{finish, Python};
use crate::results::*;
use crate::stores::{self, Engine, Opts, Store};
use anyhow::{anyhow, Context, Result};
use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Items per transaction when loading a cache (not timed, except as load time).
pub const BATCH: u64 = 1000;
/// A prime: `(i * DELETE_STRIDE) % n` visits distinct keys spread over the key space.
const DELETE_STRIDE: u128 = 1_000_003;
const SEED_GET: u64 = 1;
const SEED_SET: u64 = 2;
const SEED_LRU: u64 = 3;
const SEED_OVERWRITE: u64 = 4;
const SEED_TXN: u64 = 5;
const SEED_OPEN: u64 = 100;

/// Sizes and limits of one run.
#[derive(Clone, Debug)]
pub struct Plan {
    pub latency: Vec<LatCfg>,
    pub lat_max_samples: usize,
    pub lat_budget: Duration,
    pub mix_ops: usize,
    pub mix_warmup: usize,
    pub mix_range: u64,
    pub mix_procs: Vec<usize>,
    pub scale_sizes: Vec<u64>,
    pub scale_value: usize,
    pub open_runs: usize,
    pub open_gets: u64,
    pub overwrite_items: u64,
    pub overwrite_count: u64,
    pub txn_preload: u64,
    pub txn_size: usize,
    pub txn_max: usize,
    pub txn_budget: Duration,
}

pub struct Ctx<'a> {
    pub plan: &'a Plan,
    pub work: PathBuf,
    pub python: Option<&'a Python>,
    pub engines: Vec<Engine>,
}

pub fn key(i: u64) -> Vec<u8> {
    format!("key-{i:010}").into_bytes()
}

fn write_key(buf: &mut Vec<u8>, i: u64) {
    buf.clear();
    write!(buf, "key-{i:010}").expect("writing to a Vec");
}

fn progress(msg: &str) {
    eprintln!("[compare] {msg}");
}

fn fresh_dir(ctx: &Ctx<'_>, name: &str) -> Result<PathBuf> {
    let d = ctx.work.join(name);
    if d.exists() {
        std::fs::remove_dir_all(&d)?;
    }
    std::fs::create_dir_all(&d)?;
    Ok(d)
}

fn remove_dir(d: &Path) {
    let _ = std::fs::remove_dir_all(d);
}

/// Sets keys `start..end` to `value` in transactions of [`BATCH`].
pub fn populate(s: &mut dyn Store, start: u64, end: u64, value: &[u8]) -> Result<()> {
    let mut i = start;
    while i < end {
        let stop = (i + BATCH).min(end);
        let keys: Vec<Vec<u8>> = (i..stop).map(key).collect();
        s.set_many(&keys, value)?;
        i = stop;
    }
    Ok(())
}

/// Times `op` on each key until `max` samples or the time budget is used up; the key is
/// built before the clock starts.
fn timed(
    keys: impl Iterator<Item = u64>,
    max: usize,
    budget: Duration,
    mut op: impl FnMut(&[u8]) -> Result<()>,
) -> Result<Vec<u64>> {
    let mut out = Vec::with_capacity(max.min(1 << 20));
    let mut buf = Vec::with_capacity(16);
    let begin = Instant::now();
    for k in keys {
        if out.len() >= max {
            break;
        }
        write_key(&mut buf, k);
        let t0 = Instant::now();
        op(&buf)?;
        let t1 = Instant::now();
        out.push((t1 - t0).as_nanos() as u64);
        if t1 - begin > budget {
            break;
        }
    }
    Ok(out)
}

fn random_keys(seed: u64, n: u64) -> impl Iterator<Item = u64> {
    let mut r = PyRandom::new(seed);
    std::iter::repeat_with(move || r.randrange(n))
}

fn delete_key(j: u64, offset: u64, n: u64) -> u64 {
    (((2 * j + offset) as u128 * DELETE_STRIDE) % n as u128) as u64
}

/// Engines that share one loaded store: the variants differ only in how they commit.
fn families(engines: &[Engine]) -> Vec<Vec<Engine>> {
    let groups = [
        vec![Engine::Rs, Engine::RsFull],
        vec![Engine::Sqlite],
        vec![Engine::Redb, Engine::RedbNoSync],
        vec![Engine::Python],
    ];
    groups
        .into_iter()
        .map(|g| g.into_iter().filter(|e| engines.contains(e)).collect())
        .filter(|g: &Vec<Engine>| !g.is_empty())
        .collect()
}

fn ns(d: Duration) -> u64 {
    d.as_nanos() as u64
}

fn ns_vec(v: &Value) -> Vec<u64> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------
// 1. Per-op latency.

pub fn latency(ctx: &Ctx<'_>, out: &mut Results) -> Result<()> {
    let p = ctx.plan;
    for &cfg in &p.latency {
        for family in families(&ctx.engines) {
            if family == [Engine::Python] && ctx.python.is_none() {
                continue;
            }
            let names: Vec<&str> = family.iter().map(|e| e.name()).collect();
            progress(&format!(
                "latency: {} keys x {} B: {}",
                cfg.keys,
                cfg.value_size,
                names.join(", ")
            ));
            let dir = fresh_dir(ctx, "latency")?;
            let rows = if family == [Engine::Python] {
                latency_python(ctx, &dir, cfg)?
            } else {
                latency_rust(p, &family, &dir, cfg)?
            };
            for (engine, op, ns) in rows {
                out.latency.push(LatRow {
                    cfg,
                    engine,
                    op,
                    summary: Summary::of(ns),
                });
            }
            remove_dir(&dir);
        }
    }
    Ok(())
}

fn latency_rust(
    p: &Plan,
    family: &[Engine],
    dir: &Path,
    cfg: LatCfg,
) -> Result<Vec<(Engine, Op, Vec<u64>)>> {
    let n = cfg.keys;
    let value = vec![b'v'; cfg.value_size];
    let lrs = Opts {
        lru: Some(false),
        unlimited: true,
    };
    let lru = Opts {
        lru: Some(true),
        unlimited: true,
    };
    let mut s = stores::open(family[0], dir, lrs)?;
    populate(&mut *s, 0, n, &value)?;
    s.close()?;
    let (max, budget) = (p.lat_max_samples, p.lat_budget);
    let max_deletes = (n / 4).min(max as u64);
    let mut deleted = vec![false; n as usize];
    let mut rows = Vec::new();
    // All gets and sets first (every variant sees the same keys), then the deletes
    // (disjoint keys per variant), then LRU gets of keys still there.
    for &e in family {
        let mut s = stores::open(e, dir, lrs)?;
        let get = timed(random_keys(SEED_GET, n), max, budget, |k| {
            s.get(k)?.map(|_| ()).ok_or_else(|| anyhow!("get missed"))
        })?;
        let set = timed(random_keys(SEED_SET, n), max, budget, |k| s.set(k, &value))?;
        s.close()?;
        rows.push((e, Op::Get, get));
        rows.push((e, Op::Set, set));
    }
    for (v, &e) in family.iter().enumerate() {
        let mut s = stores::open(e, dir, lrs)?;
        let keys: Vec<u64> = (0..max_deletes)
            .map(|j| delete_key(j, v as u64, n))
            .collect();
        let del = timed(keys.iter().copied(), max, budget, |k| {
            s.delete(k)?
                .then_some(())
                .ok_or_else(|| anyhow!("delete missed"))
        })?;
        for &k in &keys[..del.len()] {
            deleted[k as usize] = true;
        }
        s.close()?;
        rows.push((e, Op::Delete, del));
    }
    for &e in family {
        let mut s = stores::open(e, dir, lru)?;
        let live = random_keys(SEED_LRU, n).filter(|&k| !deleted[k as usize]);
        let got = timed(live, max, budget, |k| {
            s.get(k)?
                .map(|_| ())
                .ok_or_else(|| anyhow!("LRU get missed"))
        })?;
        s.close()?;
        rows.push((e, Op::LruGet, got));
    }
    Ok(rows)
}

fn latency_python(ctx: &Ctx<'_>, dir: &Path, cfg: LatCfg) -> Result<Vec<(Engine, Op, Vec<u64>)>> {
    let p = ctx.plan;
    let py = ctx.python.context("python-diskcache")?;
    let r = py.run(&json!({
        "cmd": "latency",
        "dir": dir,
        "n": cfg.keys,
        "value_size": cfg.value_size,
        "max_samples": p.lat_max_samples,
        "budget_ns": ns(p.lat_budget),
        "seed_get": SEED_GET,
        "seed_set": SEED_SET,
        "seed_lru": SEED_LRU,
        "max_deletes": (cfg.keys / 4).min(p.lat_max_samples as u64),
        "delete_offset": 0,
    }))?;
    Ok(Op::ALL
        .iter()
        .map(|&op| {
            let field = match op {
                Op::Set => "set",
                Op::Get => "get",
                Op::Delete => "delete",
                Op::LruGet => "lru_get",
            };
            (Engine::Python, op, ns_vec(&r[field]))
        })
        .collect())
}

// ---------------------------------------------------------------------------------------
// 2. python-diskcache's benchmark_core.py workload.

fn worker(params: &Value) -> Result<Child> {
    Command::new(std::env::current_exe()?)
        .arg("__worker")
        .arg(params.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .context("starting a worker process")
}

pub fn mix(ctx: &Ctx<'_>, out: &mut Results) -> Result<()> {
    let p = ctx.plan;
    for &procs in &p.mix_procs {
        for &e in &ctx.engines {
            if e == Engine::Python && ctx.python.is_none() {
                continue;
            }
            if procs > 1 && !e.multi_process() {
                out.mix.push(MixRow {
                    engine: e,
                    procs,
                    ops: None,
                    wall_ns: 0,
                    note: Some(
                        "n/a: single-process engine (the file is locked by one process)".into(),
                    ),
                });
                continue;
            }
            progress(&format!("mix: {} process(es): {}", procs, e.name()));
            let dir = fresh_dir(ctx, "mix")?;
            if e == Engine::Python {
                let py = ctx.python.context("python")?;
                py.run(&json!({"cmd": "preload_mix", "dir": dir, "range": p.mix_range}))?;
            } else {
                let mut s = stores::open(e, &dir, Opts::default())?;
                for k in 0..p.mix_range {
                    let kb = k.to_string().into_bytes();
                    s.set(&kb, &kb)?;
                }
                s.close()?;
            }
            let mut children = Vec::new();
            for num in 0..procs {
                let params = json!({
                    "cmd": "mix_worker",
                    "engine": e.id(),
                    "dir": dir,
                    "num": num,
                    "ops": p.mix_ops,
                    "warmup": p.mix_warmup,
                    "range": p.mix_range,
                });
                children.push(match (e, ctx.python) {
                    (Engine::Python, Some(py)) => py.spawn(&params)?,
                    _ => worker(&params)?,
                });
            }
            let mut times: [Vec<u64>; 3] = Default::default();
            let mut misses = [0u64; 3];
            let mut failed = [0u64; 3];
            let (mut start, mut end) = (u64::MAX, 0u64);
            for c in children {
                let r = finish(c)?;
                for (i, op) in ["get", "set", "delete"].iter().enumerate() {
                    times[i].extend(ns_vec(&r["times"][op]));
                    misses[i] += r["misses"][op].as_u64().unwrap_or(0);
                    failed[i] += r["failed"][op].as_u64().unwrap_or(0);
                }
                start = start.min(r["start_ns"].as_u64().unwrap_or(0));
                end = end.max(r["end_ns"].as_u64().unwrap_or(0));
            }
            let [g, s, d] = times;
            let op = |t: Vec<u64>, i: usize| MixOp {
                summary: Summary::of(t),
                misses: misses[i],
                failed: failed[i],
            };
            out.mix.push(MixRow {
                engine: e,
                procs,
                ops: Some([op(g, 0), op(s, 1), op(d, 2)]),
                wall_ns: end.saturating_sub(start),
                note: None,
            });
            remove_dir(&dir);
        }
    }
    Ok(())
}

fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// One process of the mixed workload (tests/benchmark_core.py's `worker`).
pub fn mix_worker(p: &Value) -> Result<Value> {
    let engine = engine_of(p)?;
    let dir = PathBuf::from(p["dir"].as_str().context("dir")?);
    let num = p["num"].as_u64().context("num")?;
    let ops = p["ops"].as_u64().context("ops")?;
    let warmup = p["warmup"].as_u64().context("warmup")?;
    let range = p["range"].as_u64().context("range")?;
    let mut rng = PyRandom::new(num);
    std::thread::sleep(Duration::from_millis(10));
    let mut s = stores::open(engine, &dir, Opts::default())?;
    let mut t: [Vec<u64>; 3] = Default::default();
    let mut miss = [0u64; 3];
    let mut failed = [0u64; 3];
    let mut start_wall = None;
    for count in 0..ops {
        if count == warmup + 1 {
            start_wall = Some(unix_ns());
        }
        let k = rng.randrange(range).to_string().into_bytes();
        let value = count.to_string().repeat(rng.randrange2(1, 100) as usize);
        let choice = rng.random();
        let (i, t0, r) = if choice < 0.900 {
            let t0 = Instant::now();
            (0, t0, s.get(&k).map(|v| v.is_none()))
        } else if choice < 0.990 {
            let t0 = Instant::now();
            (1, t0, s.set(&k, value.as_bytes()).map(|()| false))
        } else {
            let t0 = Instant::now();
            (2, t0, s.delete(&k).map(|found| !found))
        };
        let took = t0.elapsed().as_nanos() as u64;
        if count > warmup {
            t[i].push(took);
            match r {
                Ok(true) => miss[i] += 1,
                Ok(false) => {}
                Err(_) => failed[i] += 1,
            }
        }
    }
    let end_wall = unix_ns();
    s.close()?;
    let [g, st, d] = t;
    Ok(json!({
        "times": {"get": g, "set": st, "delete": d},
        "misses": {"get": miss[0], "set": miss[1], "delete": miss[2]},
        "failed": {"get": failed[0], "set": failed[1], "delete": failed[2]},
        "start_ns": start_wall.unwrap_or(end_wall),
        "end_ns": end_wall,
    }))
}

fn engine_of(p: &Value) -> Result<Engine> {
    let id = p["engine"].as_str().context("engine")?;
    Engine::from_id(id).ok_or_else(|| anyhow!("unknown engine {id}"))
}

// ---------------------------------------------------------------------------------------
// 3. Scaling: open time, memory, disk bytes against item count; disk after overwrites.

const SCALING_ENGINES: [Engine; 4] = [Engine::Rs, Engine::Sqlite, Engine::Redb, Engine::Python];

/// Allocated bytes (as `du`) of everything under `dir`.
pub fn disk_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(m) = e.metadata() else { continue };
            total += m.blocks() * 512;
            if m.is_dir() {
                stack.push(e.path());
            }
        }
    }
    total
}

fn rss_anon() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// A fresh process: open an existing cache and do one get; then random gets.
pub fn open_worker(p: &Value) -> Result<Value> {
    let engine = engine_of(p)?;
    let dir = PathBuf::from(p["dir"].as_str().context("dir")?);
    let n = p["n"].as_u64().context("n")?;
    let before = rss_anon();
    let t0 = Instant::now();
    let mut s = stores::open(engine, &dir, Opts::default())?;
    let hit = s.get(&key(p["key"].as_u64().context("key")?))?.is_some();
    let took = t0.elapsed();
    let after_open = rss_anon();
    let mut hits = 0u64;
    for k in random_keys(p["seed"].as_u64().context("seed")?, n)
        .take(p["gets"].as_u64().unwrap_or(0) as usize)
    {
        hits += s.get(&key(k))?.is_some() as u64;
    }
    let after_gets = rss_anon();
    s.close()?;
    Ok(json!({
        "open_ns": ns(took),
        "hit": hit,
        "rss_before": before,
        "rss_open": after_open,
        "rss_gets": after_gets,
        "hits": hits,
    }))
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

pub fn scaling(ctx: &Ctx<'_>, out: &mut Results) -> Result<()> {
    let p = ctx.plan;
    let value = vec![b'v'; p.scale_value];
    for e in SCALING_ENGINES {
        if !ctx.engines.contains(&e) || (e == Engine::Python && ctx.python.is_none()) {
            continue;
        }
        let dir = fresh_dir(ctx, "scaling")?;
        let mut have = 0;
        for &n in &p.scale_sizes {
            progress(&format!("scaling: {} to {} items", e.name(), n));
            let t0 = Instant::now();
            if let (Engine::Python, Some(py)) = (e, ctx.python) {
                py.run(
                    &json!({"cmd": "populate", "dir": dir, "start": have, "end": n,
                    "value_size": p.scale_value}),
                )?;
            } else {
                let mut s = stores::open(
                    e,
                    &dir,
                    Opts {
                        lru: None,
                        unlimited: true,
                    },
                )?;
                populate(&mut *s, have, n, &value)?;
                s.close()?;
            }
            let load_ns = ns(t0.elapsed());
            have = n;
            let disk = disk_bytes(&dir);
            let (mut open, mut mem_open, mut mem_gets) = (Vec::new(), Vec::new(), Vec::new());
            for run in 0..p.open_runs {
                let seed = SEED_OPEN + run as u64;
                let params = json!({
                    "cmd": "open",
                    "engine": e.id(),
                    "dir": dir,
                    "n": n,
                    "key": PyRandom::new(seed).randrange(n),
                    "seed": seed,
                    "gets": p.open_gets.min(n * 10),
                });
                let r = finish(match (e, ctx.python) {
                    (Engine::Python, Some(py)) => py.spawn(&params)?,
                    _ => worker(&params)?,
                })?;
                if r["hit"] != json!(true) {
                    return Err(anyhow!("{}: the get after open missed", e.name()));
                }
                let field = |f: &str| r[f].as_u64().unwrap_or(0);
                open.push(field("open_ns"));
                mem_open.push(field("rss_open").saturating_sub(field("rss_before")));
                mem_gets.push(field("rss_gets").saturating_sub(field("rss_before")));
            }
            out.scaling.push(ScalePoint {
                engine: e,
                items: n,
                load_ns,
                disk_bytes: disk,
                open_ns: median(open),
                mem_open: median(mem_open),
                mem_gets: median(mem_gets),
            });
        }
        remove_dir(&dir);
    }
    Ok(())
}

pub fn overwrite(ctx: &Ctx<'_>, out: &mut Results) -> Result<()> {
    let p = ctx.plan;
    let value = vec![b'v'; p.scale_value];
    let (n, count) = (p.overwrite_items, p.overwrite_count);
    // redb: loaded with durable commits, overwritten with commits without fsync (one fsync
    // per set would take hours), then one durable commit at close.
    for e in [
        Engine::Rs,
        Engine::Sqlite,
        Engine::RedbNoSync,
        Engine::Python,
    ] {
        let listed = ctx.engines.contains(&e)
            || (e == Engine::RedbNoSync && ctx.engines.contains(&Engine::Redb));
        if !listed || (e == Engine::Python && ctx.python.is_none()) {
            continue;
        }
        progress(&format!(
            "overwrite: {} ({n} items, {count} sets)",
            e.name()
        ));
        let dir = fresh_dir(ctx, "overwrite")?;
        let (before, took) = if let (Engine::Python, Some(py)) = (e, ctx.python) {
            py.run(&json!({"cmd": "populate", "dir": dir, "start": 0, "end": n,
                "value_size": p.scale_value}))?;
            let before = disk_bytes(&dir);
            let r = py.run(
                &json!({"cmd": "overwrite", "dir": dir, "n": n, "count": count,
                "seed": SEED_OVERWRITE, "value_size": p.scale_value}),
            )?;
            (before, r["ns"].as_u64().unwrap_or(0))
        } else {
            let unlimited = Opts {
                lru: None,
                unlimited: true,
            };
            let load = if e == Engine::RedbNoSync {
                Engine::Redb
            } else {
                e
            };
            let mut s = stores::open(load, &dir, unlimited)?;
            populate(&mut *s, 0, n, &value)?;
            s.close()?;
            let before = disk_bytes(&dir);
            let mut s = stores::open(e, &dir, unlimited)?;
            let t0 = Instant::now();
            let mut buf = Vec::new();
            for k in random_keys(SEED_OVERWRITE, n).take(count as usize) {
                write_key(&mut buf, k);
                s.set(&buf, &value)?;
            }
            s.close()?;
            (before, ns(t0.elapsed()))
        };
        out.overwrite.push(OverwriteRow {
            engine: e,
            items: n,
            overwrites: count,
            before_bytes: before,
            after_bytes: disk_bytes(&dir),
            ns: took,
        });
        remove_dir(&dir);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 4. Transactions of 1,000 sets.

pub fn txn(ctx: &Ctx<'_>, out: &mut Results) -> Result<()> {
    let p = ctx.plan;
    let value = vec![b'v'; p.scale_value];
    for &e in &ctx.engines {
        if e == Engine::Python && ctx.python.is_none() {
            continue;
        }
        progress(&format!(
            "transactions of {} sets: {}",
            p.txn_size,
            e.name()
        ));
        let dir = fresh_dir(ctx, "txn")?;
        let n = p.txn_preload;
        let samples = if let (Engine::Python, Some(py)) = (e, ctx.python) {
            let r = py.run(
                &json!({"cmd": "txn", "dir": dir, "n": n, "value_size": p.scale_value,
                "seed": SEED_TXN, "txn_size": p.txn_size, "max_samples": p.txn_max,
                "budget_ns": ns(p.txn_budget)}),
            )?;
            ns_vec(&r["txn"])
        } else {
            let mut s = stores::open(
                e,
                &dir,
                Opts {
                    lru: Some(false),
                    unlimited: true,
                },
            )?;
            populate(&mut *s, 0, n, &value)?;
            let mut rng = PyRandom::new(SEED_TXN);
            let mut samples = Vec::new();
            let begin = Instant::now();
            while samples.len() < p.txn_max {
                let keys: Vec<Vec<u8>> = (0..p.txn_size).map(|_| key(rng.randrange(n))).collect();
                let t0 = Instant::now();
                s.set_many(&keys, &value)?;
                let t1 = Instant::now();
                samples.push(ns(t1 - t0));
                if t1 - begin > p.txn_budget {
                    break;
                }
            }
            s.close()?;
            samples
        };
        out.txn.push(TxnRow {
            engine: e,
            summary: Summary::of(samples),
        });
        remove_dir(&dir);
    }
    Ok(())
}
