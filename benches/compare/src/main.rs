//! diskcache-compare: the same workloads, in one run, on diskcache-rs and the alternatives
//! (python-diskcache's SQL on bundled SQLite, redb, and python-diskcache itself), with a
//! markdown report and SVG plots. Every number in the output is measured by the run.
//!
//! ```sh
//! cargo run --release -p diskcache-compare              # full run (about half an hour)
//! cargo run --release -p diskcache-compare -- --quick   # smaller sizes, under a minute
//! ```

mod machine;
mod pyrandom;
mod python;
mod report;
mod results;
mod sqlite;
mod stores;
mod svg;
mod workloads;

use anyhow::{anyhow, Context, Result};
use results::{LatCfg, Results};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use stores::Engine;
use workloads::{Ctx, Plan};

const USAGE: &str = "\
usage: diskcache-compare [--quick] [--out DIR] [--dir DIR] [--only WORKLOADS] [--engines IDS] [--no-python]

  --quick          smaller sizes (finishes in under a minute after the build)
  --out DIR        where report.md, results.json and the SVG plots go (default target/compare)
  --dir DIR        where the caches are made (default: the system's temporary directory)
  --only LIST      comma-separated workloads: latency,mix,scaling,txn (default: all)
  --engines LIST   comma-separated engines: rs,rs-full,sqlite,redb,redb-nosync,python
  --no-python      skip python-diskcache even if it is installed
";

struct Args {
    quick: bool,
    out: PathBuf,
    dir: PathBuf,
    only: Vec<String>,
    engines: Vec<Engine>,
    no_python: bool,
}

fn parse_args(raw: &[String]) -> Result<Args> {
    let mut a = Args {
        quick: false,
        out: PathBuf::from("target/compare"),
        dir: std::env::temp_dir(),
        only: ["latency", "mix", "scaling", "txn"]
            .map(String::from)
            .to_vec(),
        engines: Engine::ALL.to_vec(),
        no_python: false,
    };
    let mut it = raw.iter();
    while let Some(arg) = it.next() {
        let mut val = || {
            it.next()
                .cloned()
                .ok_or_else(|| anyhow!("{arg} needs a value"))
        };
        match arg.as_str() {
            "--quick" => a.quick = true,
            "--out" => a.out = PathBuf::from(val()?),
            "--dir" => a.dir = PathBuf::from(val()?),
            "--only" => a.only = val()?.split(',').map(String::from).collect(),
            "--engines" => {
                a.engines = val()?
                    .split(',')
                    .map(|s| Engine::from_id(s).ok_or_else(|| anyhow!("unknown engine {s}")))
                    .collect::<Result<_>>()?
            }
            "--no-python" => a.no_python = true,
            "-h" | "--help" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(anyhow!("unknown argument {other}\n{USAGE}")),
        }
    }
    Ok(a)
}

fn plan(quick: bool) -> Plan {
    let cfg = |keys, value_size| LatCfg { keys, value_size };
    if quick {
        Plan {
            latency: vec![cfg(1_000, 100), cfg(1_000, 1024), cfg(1_000, 64 * 1024)],
            lat_max_samples: 1_000,
            lat_budget: Duration::from_millis(100),
            mix_ops: 1_500,
            mix_warmup: 500,
            mix_range: 100,
            mix_procs: vec![1, 8],
            scale_sizes: vec![1_000, 10_000],
            scale_value: 100,
            open_runs: 1,
            open_gets: 1_000,
            overwrite_items: 10_000,
            overwrite_count: 10_000,
            txn_preload: 1_000,
            txn_size: 1_000,
            txn_max: 10,
            txn_budget: Duration::from_millis(300),
        }
    } else {
        Plan {
            latency: vec![
                cfg(10_000, 100),
                cfg(10_000, 1024),
                cfg(10_000, 64 * 1024),
                cfg(1_000_000, 100),
                cfg(1_000_000, 1024),
            ],
            lat_max_samples: 100_000,
            lat_budget: Duration::from_secs(2),
            // tests/benchmark_core.py's OPS, WARMUP and RANGE.
            mix_ops: 100_000,
            mix_warmup: 1_000,
            mix_range: 100,
            mix_procs: vec![1, 8],
            scale_sizes: vec![1_000, 10_000, 100_000, 1_000_000, 10_000_000],
            scale_value: 100,
            open_runs: 3,
            open_gets: 10_000,
            overwrite_items: 1_000_000,
            overwrite_count: 1_000_000,
            txn_preload: 10_000,
            txn_size: 1_000,
            txn_max: 200,
            txn_budget: Duration::from_secs(5),
        }
    }
}

/// `YYYY-MM-DD HH:MM UTC` from the system clock.
fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + (m <= 2) as i64;
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

fn worker_main(json: &str) -> Result<()> {
    let p: serde_json::Value = serde_json::from_str(json)?;
    let r = match p["cmd"].as_str() {
        Some("mix_worker") => workloads::mix_worker(&p)?,
        Some("open") => workloads::open_worker(&p)?,
        other => return Err(anyhow!("unknown worker command {other:?}")),
    };
    println!("{r}");
    Ok(())
}

fn main() -> Result<()> {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    if raw.first().map(String::as_str) == Some("__worker") {
        return worker_main(raw.get(1).context("worker parameters")?);
    }
    let args = parse_args(&raw)?;
    let started = Instant::now();
    let load_before = machine::load_average();
    let plan = plan(args.quick);
    let work = args
        .dir
        .join(format!("diskcache-compare-{}", std::process::id()));
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;

    let mut results = Results::default();
    let python = if !args.engines.contains(&Engine::Python) {
        None
    } else if args.no_python {
        results
            .notes
            .push("python-diskcache: skipped (--no-python).".into());
        None
    } else {
        match python::Python::detect(&work) {
            Ok(p) => Some(p),
            Err(why) => {
                let msg = format!(
                    "python-diskcache: skipped: {why}. To include it: `pip install diskcache` \
                     (or set PYTHON to an interpreter that has it)."
                );
                eprintln!("[compare] {msg}");
                results.notes.push(msg);
                None
            }
        }
    };
    let ctx = Ctx {
        plan: &plan,
        work: work.clone(),
        python: python.as_ref(),
        engines: args.engines.clone(),
    };
    let run = |name: &str| args.only.iter().any(|o| o == name);
    let outcome = (|| -> Result<()> {
        if run("latency") {
            workloads::latency(&ctx, &mut results)?;
        }
        if run("mix") {
            workloads::mix(&ctx, &mut results)?;
        }
        if run("scaling") {
            workloads::scaling(&ctx, &mut results)?;
            workloads::overwrite(&ctx, &mut results)?;
        }
        if run("txn") {
            workloads::txn(&ctx, &mut results)?;
        }
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&work);
    outcome?;

    let run = RunInfo {
        raw: &raw,
        work: &work,
        elapsed: started.elapsed(),
        load: (load_before, machine::load_average()),
    };
    let head = header(&args, &plan, python.as_ref(), &run, &mut results);
    let elapsed = run.elapsed;
    let md = report::write(&results, &head, &args.out)
        .with_context(|| format!("writing to {}", args.out.display()))?;
    println!("{md}");
    eprintln!(
        "[compare] done in {:.0} s; report, results.json and plots in {}",
        elapsed.as_secs_f64(),
        args.out.display()
    );
    Ok(())
}

/// Facts about the run for the report's header.
struct RunInfo<'a> {
    raw: &'a [String],
    work: &'a std::path::Path,
    elapsed: Duration,
    /// Load averages at the start and at the end.
    load: (String, String),
}

fn header(
    args: &Args,
    plan: &Plan,
    python: Option<&python::Python>,
    run: &RunInfo<'_>,
    results: &mut Results,
) -> String {
    let RunInfo {
        raw,
        work,
        elapsed,
        load,
    } = run;
    let mut h = String::new();
    let cmd = if raw.is_empty() {
        "cargo run --release -p diskcache-compare".to_owned()
    } else {
        format!(
            "cargo run --release -p diskcache-compare -- {}",
            raw.join(" ")
        )
    };
    let _ = writeln!(h, "# diskcache-rs against the alternatives\n");
    let _ = writeln!(
        h,
        "Command: `{cmd}` ({} mode), {}, took {:.0} s. Every number below was measured by \
         this run.\n",
        if args.quick { "quick" } else { "full" },
        utc_now(),
        elapsed.as_secs_f64()
    );
    let (fs, dev, mp) = machine::file_system(work.parent().unwrap_or(work));
    let free = machine::free_bytes(work.parent().unwrap_or(work));
    let _ = writeln!(h, "## Machine\n");
    let _ = writeln!(
        h,
        "- CPU: {}, {} cores",
        machine::cpu_model(),
        machine::cores()
    );
    let _ = writeln!(
        h,
        "- Memory: {}",
        report::fmt_bytes(machine::memory_bytes() as f64)
    );
    let _ = writeln!(h, "- Kernel: {}", machine::kernel());
    let _ = writeln!(
        h,
        "- Load average (1, 5, 15 min) at the start: {}; at the end: {} (other work on the \
         machine shows here)",
        load.0, load.1
    );
    let _ = writeln!(
        h,
        "- Bench directory: {} on {fs} ({dev}, mounted at {mp}){}",
        args.dir.display(),
        free.map(|f| format!(", {} free at the end", report::fmt_bytes(f as f64)))
            .unwrap_or_default()
    );
    if let Some(r) = machine::rustc() {
        let _ = writeln!(h, "- Toolchain: {r}");
    }
    let _ = writeln!(h, "\n## Engines\n");
    let _ = writeln!(
        h,
        "- **diskcache-rs** {}: this crate, default sync level (fsync at checkpoints); \
         **diskcache-rs (SyncLevel::Full)**: fsync per commit. Under the \
         least-recently-used policy diskcache-rs records accesses in memory and writes them \
         in batches (every 128 gets, or with the handle's next write), so its LRU get never \
         waits for the writer lock; the other engines write the access time in each get. \
         Value files (values of 32 KiB and more) that a set replaces or a delete removes are \
         deleted at its next checkpoint; the SQLite build and python-diskcache delete them \
         inside the operation.",
        env!("CARGO_PKG_VERSION")
    );
    let _ = writeln!(
        h,
        "- **SQLite build**: python-diskcache 5.6.3's schema, settings, triggers and \
         statements in Rust on rusqlite with bundled SQLite {}: journal_mode=wal, \
         synchronous=NORMAL, mmap_size=2^26, cache_size=8192, auto_vacuum=FULL; set is \
         BEGIN IMMEDIATE, SELECT, UPDATE or INSERT, the cull check (expired rows, then \
         page_count * page_size + size against size_limit), COMMIT; get is the fast-path \
         SELECT; LRU get the slow path (BEGIN IMMEDIATE, SELECT, UPDATE access_time). Values \
         of 32 KiB and more go to random-named files written before the transaction.",
        rusqlite::version()
    );
    let _ = writeln!(
        h,
        "- **redb** {}: a table key bytes -> value bytes (LRU get: a write transaction that \
         reads the value and stores the access time in a second table); **redb (fsync)** \
         commits with Durability::Immediate, **redb (no fsync)** with Durability::None. \
         redb locks its file for one process.",
        env!("REDB_VERSION")
    );
    match python {
        Some(p) => {
            let _ = writeln!(
                h,
                "- **python-diskcache** {} on Python {}: `diskcache.Cache`, driven by \
                 pydc_bench.py (timings taken in Python around each call).",
                p.version, p.python_version
            );
        }
        None => {
            let _ = writeln!(h, "- **python-diskcache**: skipped (see the notes).");
        }
    }
    let _ = writeln!(
        h,
        "\nEvery engine gets the same keys and values: keys `key-%010d` as bytes (the mixed \
         workload: python-diskcache's own keys), values of the stated size, and for the \
         latency, scaling and transaction workloads a size limit high enough that nothing \
         is culled. Caches are loaded in transactions of 1,000 sets (not timed)."
    );
    let _ = writeln!(
        h,
        "\nSizes: latency at {} with at most {} samples or {:.1} s per op and engine; \
         mixed workload {} ops per process ({} warm-up), {} keys, {:?} processes; scaling at \
         {} items ({} open run(s) each, {} gets for memory); overwrite phase {} sets on {} \
         items; {} transactions of {} sets at most (or {:.1} s) on {} keys.",
        plan.latency
            .iter()
            .map(|c| format!(
                "{} keys x {}",
                report::fmt_count(c.keys as f64),
                report::fmt_bytes(c.value_size as f64)
            ))
            .collect::<Vec<_>>()
            .join(", "),
        plan.lat_max_samples,
        plan.lat_budget.as_secs_f64(),
        plan.mix_ops,
        plan.mix_warmup,
        plan.mix_range,
        plan.mix_procs,
        plan.scale_sizes
            .iter()
            .map(|&n| report::fmt_count(n as f64))
            .collect::<Vec<_>>()
            .join(", "),
        plan.open_runs,
        plan.open_gets,
        report::fmt_count(plan.overwrite_count as f64),
        report::fmt_count(plan.overwrite_items as f64),
        plan.txn_max,
        plan.txn_size,
        plan.txn_budget.as_secs_f64(),
        report::fmt_count(plan.txn_preload as f64)
    );
    if args.quick {
        results.notes.push(
            "Quick mode: small sizes and few samples, to keep the harness working; use a \
             full run for numbers to compare."
                .into(),
        );
    } else {
        let big = plan.latency.iter().map(|c| c.keys).max().unwrap_or(0);
        let need = big as f64 * 65536.0;
        results.notes.push(format!(
            "64 KiB values run at 10k keys only: at {} keys they would be {} of values per \
             engine (plus files and indexes), beyond this machine's disk ({} free on the \
             bench file system) and the time of a run.",
            report::fmt_count(big as f64),
            report::fmt_bytes(need),
            free.map(|f| report::fmt_bytes(f as f64))
                .unwrap_or_else(|| "unknown".into())
        ));
    }
    results.notes.push(
        "Scaling covers diskcache-rs at its default sync level, the SQLite build, redb \
         (loaded with durable commits; its overwrite phase commits without fsync, then one \
         durable commit) and python-diskcache: the other configurations share their on-disk \
         format."
            .into(),
    );
    results.notes.push(
        "The machine may be shared with other work; runs on a quiet machine are steadier.".into(),
    );
    h
}
