//! The markdown report and the SVG plots.

use crate::results::*;
use crate::stores::Engine;
use crate::svg;
use std::collections::BTreeSet;
use std::fmt::Write;
use std::path::Path;

pub fn fmt_ns(ns: f64) -> String {
    if ns < 10_000.0 {
        format!("{:.2} us", ns / 1e3)
    } else if ns < 1e6 {
        format!("{:.1} us", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.2} ms", ns / 1e6)
    } else {
        format!("{:.2} s", ns / 1e9)
    }
}

pub fn fmt_bytes(b: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{v:.0} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

pub fn fmt_count(n: f64) -> String {
    if n >= 1e6 && (n / 1e6).fract() == 0.0 {
        format!("{}M", n / 1e6)
    } else if n >= 1e3 && (n / 1e3).fract() == 0.0 {
        format!("{}k", n / 1e3)
    } else {
        format!("{n}")
    }
}

fn fmt_rate(r: f64) -> String {
    if r >= 1e6 {
        format!("{:.2}M ops/s", r / 1e6)
    } else if r >= 1e3 {
        format!("{:.1}k ops/s", r / 1e3)
    } else {
        format!("{r:.0} ops/s")
    }
}

fn times(r: f64) -> String {
    if r >= 9.95 {
        format!("{r:.0}x")
    } else {
        format!("{r:.1}x")
    }
}

/// How diskcache-rs compares on a lower-is-better quantity.
fn faster(rs: f64, base: f64) -> String {
    if rs <= 0.0 || base <= 0.0 {
        return String::new();
    }
    let r = base / rs;
    if (1.0 / 1.05..1.05).contains(&r) {
        "rs about the same".into()
    } else if r >= 1.0 {
        format!("rs {} faster", times(r))
    } else {
        format!("rs {} slower", times(1.0 / r))
    }
}

fn smaller(rs: f64, base: f64) -> String {
    if rs <= 0.0 || base <= 0.0 {
        return String::new();
    }
    let r = base / rs;
    if (1.0 / 1.05..1.05).contains(&r) {
        "rs about the same".into()
    } else if r >= 1.0 {
        format!("rs {} smaller", times(r))
    } else {
        format!("rs {} larger", times(1.0 / r))
    }
}

fn cfg_label(c: &LatCfg) -> String {
    format!(
        "{} keys, {} values",
        fmt_count(c.keys as f64),
        fmt_bytes(c.value_size as f64)
    )
}

fn lat<'a>(r: &'a Results, cfg: &LatCfg, e: Engine, op: Op) -> Option<&'a Summary> {
    r.latency
        .iter()
        .find(|l| l.cfg == *cfg && l.engine == e && l.op == op)
        .map(|l| &l.summary)
        .filter(|s| s.count > 0)
}

fn configs(r: &Results) -> Vec<LatCfg> {
    let mut v: Vec<LatCfg> = Vec::new();
    for l in &r.latency {
        if !v.contains(&l.cfg) {
            v.push(l.cfg);
        }
    }
    v
}

fn engines_in(r: &Results) -> Vec<Engine> {
    let mut s = BTreeSet::new();
    s.extend(r.latency.iter().map(|l| l.engine));
    s.extend(r.mix.iter().map(|l| l.engine));
    s.extend(r.scaling.iter().map(|l| l.engine));
    s.extend(r.txn.iter().map(|l| l.engine));
    s.extend(r.overwrite.iter().map(|l| l.engine));
    s.into_iter().collect()
}

/// The comparisons of the summary: (diskcache-rs configuration, baseline).
const PAIRS: [(Engine, Engine); 4] = [
    (Engine::Rs, Engine::Sqlite),
    (Engine::Rs, Engine::Python),
    (Engine::Rs, Engine::RedbNoSync),
    (Engine::RsFull, Engine::Redb),
];

struct Line {
    what: String,
    rs: Option<f64>,
    rs_full: Option<f64>,
    base: Vec<Option<f64>>,
    fmt: fn(f64) -> String,
    /// false: higher is better (throughput).
    lower_better: bool,
    size: bool,
}

fn cell_value(v: Option<f64>, f: fn(f64) -> String) -> String {
    v.map(f).unwrap_or_else(|| "-".into())
}

/// The headline table: diskcache-rs against each baseline, every number from this run.
pub fn summary(r: &Results) -> String {
    let mut lines: Vec<Line> = Vec::new();
    let pick = |f: &dyn Fn(Engine) -> Option<f64>| -> (Option<f64>, Option<f64>, Vec<Option<f64>>) {
        (
            f(Engine::Rs),
            f(Engine::RsFull),
            PAIRS.iter().map(|&(_, b)| f(b)).collect(),
        )
    };
    for cfg in configs(r) {
        for op in Op::ALL {
            let (rs, rs_full, base) = pick(&|e| lat(r, &cfg, e, op).map(|s| s.p50 as f64));
            lines.push(Line {
                what: format!("{}, {} (median)", op.name(), cfg_label(&cfg)),
                rs,
                rs_full,
                base,
                fmt: fmt_ns,
                lower_better: true,
                size: false,
            });
        }
    }
    let procs: BTreeSet<usize> = r.mix.iter().map(|m| m.procs).collect();
    for p in procs {
        let (rs, rs_full, base) = pick(&|e| {
            r.mix
                .iter()
                .find(|m| m.engine == e && m.procs == p && m.ops.is_some())
                .map(|m| m.throughput())
        });
        lines.push(Line {
            what: format!("benchmark_core.py mix, {p} process(es) (throughput)"),
            rs,
            rs_full,
            base,
            fmt: fmt_rate,
            lower_better: false,
            size: false,
        });
    }
    if !r.txn.is_empty() {
        let (rs, rs_full, base) = pick(&|e| {
            r.txn
                .iter()
                .find(|t| t.engine == e && t.summary.count > 0)
                .map(|t| t.summary.p50 as f64)
        });
        lines.push(Line {
            what: "transaction of 1,000 sets (median)".into(),
            rs,
            rs_full,
            base,
            fmt: fmt_ns,
            lower_better: true,
            size: false,
        });
    }
    // Scaling: at the largest item count every scaled engine reached. redb there is the
    // fsync configuration (loaded with durable commits), shown in the no-fsync column too.
    let scaled: BTreeSet<Engine> = r.scaling.iter().map(|s| s.engine).collect();
    let top = scaled
        .iter()
        .filter_map(|e| {
            r.scaling
                .iter()
                .filter(|s| s.engine == *e)
                .map(|s| s.items)
                .max()
        })
        .min();
    if let Some(n) = top {
        // redb's scaling numbers (one on-disk format for both) go in one column.
        let at = |e: Engine| {
            let e = match e {
                Engine::RedbNoSync => Engine::Redb,
                Engine::Redb => return None,
                e => e,
            };
            r.scaling.iter().find(|s| s.engine == e && s.items == n)
        };
        type Get = fn(&ScalePoint) -> f64;
        type Fmt = fn(f64) -> String;
        let metrics: [(&str, Get, Fmt, bool); 3] = [
            (
                "open + 1 get in a new process",
                |s| s.open_ns as f64,
                fmt_ns,
                false,
            ),
            (
                "private memory after open + gets",
                |s| s.mem_gets as f64,
                fmt_bytes,
                true,
            ),
            ("disk bytes", |s| s.disk_bytes as f64, fmt_bytes, true),
        ];
        for (name, get, fmt, size) in metrics {
            let (rs, _, base) = pick(&|e| at(e).map(get));
            lines.push(Line {
                what: format!("{name}, {} items", fmt_count(n as f64)),
                rs,
                rs_full: None,
                base,
                fmt,
                lower_better: true,
                size,
            });
        }
    }
    if !r.overwrite.is_empty() {
        let (rs, _, base) = pick(&|e| {
            r.overwrite
                .iter()
                .find(|o| o.engine == e)
                .map(|o| o.after_bytes as f64)
        });
        let o = &r.overwrite[0];
        lines.push(Line {
            what: format!(
                "disk bytes after {} overwrites of {} items",
                fmt_count(o.overwrites as f64),
                fmt_count(o.items as f64)
            ),
            rs,
            rs_full: None,
            base,
            fmt: fmt_bytes,
            lower_better: true,
            size: true,
        });
    }

    let mut s = String::new();
    let _ = writeln!(
        s,
        "| workload | diskcache-rs | vs {} | vs {} | vs {} | diskcache-rs (SyncLevel::Full) | vs {} |",
        PAIRS[0].1.name(),
        PAIRS[1].1.name(),
        PAIRS[2].1.name(),
        PAIRS[3].1.name()
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|");
    for l in &lines {
        let mut row = format!("| {} | {} |", l.what, cell_value(l.rs, l.fmt));
        for (i, &(rs_e, _)) in PAIRS.iter().enumerate() {
            if i == 3 {
                row.push_str(&format!(" {} |", cell_value(l.rs_full, l.fmt)));
            }
            let ours = if rs_e == Engine::RsFull {
                l.rs_full
            } else {
                l.rs
            };
            let cell = match (ours, l.base[i]) {
                (Some(a), Some(b)) => {
                    let cmp = if l.size {
                        smaller(a, b)
                    } else if l.lower_better {
                        faster(a, b)
                    } else {
                        faster(1.0 / a, 1.0 / b)
                    };
                    format!("{} ({cmp})", (l.fmt)(b))
                }
                (None, Some(b)) => (l.fmt)(b),
                _ => "-".into(),
            };
            row.push_str(&format!(" {cell} |"));
        }
        let _ = writeln!(s, "{row}");
    }
    s
}

fn lat_cell(s: Option<&Summary>) -> String {
    match s {
        Some(s) => format!(
            "{} / {} / {} ({})",
            fmt_ns(s.p50 as f64),
            fmt_ns(s.p90 as f64),
            fmt_ns(s.p99 as f64),
            s.count
        ),
        None => "-".into(),
    }
}

/// The full report (markdown) and the plots, written to `out`.
pub fn write(r: &Results, head: &str, out: &Path) -> std::io::Result<String> {
    std::fs::create_dir_all(out)?;
    let engines = engines_in(r);
    let color = |e: Engine| Engine::ALL.iter().position(|x| *x == e).unwrap_or(0);
    let mut md = String::new();
    md.push_str(head);
    md.push_str("\n## Summary\n\n");
    md.push_str(
        "Medians (throughput for the mixed workload); each baseline cell gives the baseline's \
         number and how diskcache-rs compares to it (\"rs Nx faster\": diskcache-rs took 1/N \
         of the baseline's time). The `SyncLevel::Full` column (fsync per commit) is compared \
         with redb's fsync per commit.\n\n",
    );
    md.push_str(&summary(r));

    // 1. Latency.
    md.push_str("\n## 1. Per-op latency\n\n");
    md.push_str(
        "Each cell: median / p90 / p99 (samples). Keys `key-%010d`; every get hits; set \
         overwrites a random existing key; delete removes distinct existing keys; LRU get is \
         a get under the least-recently-used policy (a read plus an access-time write). \
         Each op runs for at most the sample count or the time budget, whichever comes first.\n",
    );
    for (ci, cfg) in configs(r).iter().enumerate() {
        let _ = writeln!(md, "\n### {}\n", cfg_label(cfg));
        let row_engines: Vec<Engine> = engines
            .iter()
            .copied()
            .filter(|&e| r.latency.iter().any(|l| l.cfg == *cfg && l.engine == e))
            .collect();
        let _ = writeln!(md, "| engine | {} |", Op::ALL.map(|o| o.name()).join(" | "));
        let _ = writeln!(md, "|---|---:|---:|---:|---:|");
        for &e in &row_engines {
            let cells: Vec<String> = Op::ALL
                .iter()
                .map(|&op| lat_cell(lat(r, cfg, e, op)))
                .collect();
            let _ = writeln!(md, "| {} | {} |", e.name(), cells.join(" | "));
        }
        let file = format!("latency-{}.svg", ci + 1);
        let series: Vec<svg::BarSeries> = row_engines
            .iter()
            .map(|&e| svg::BarSeries {
                name: e.name().into(),
                color: color(e),
                values: Op::ALL
                    .iter()
                    .map(|&op| {
                        lat(r, cfg, e, op).map(|s| (s.p50 as f64, s.p90 as f64, s.p99 as f64))
                    })
                    .collect(),
            })
            .collect();
        let groups: Vec<String> = Op::ALL.iter().map(|o| o.name().to_string()).collect();
        std::fs::write(
            out.join(&file),
            svg::bars(
                &format!("Per-op latency, {}", cfg_label(cfg)),
                "latency (log scale)",
                &groups,
                &series,
                &fmt_ns,
            ),
        )?;
        let _ = writeln!(md, "\n![latency, {}]({file})", cfg_label(cfg));
    }

    // 2. Mix.
    if !r.mix.is_empty() {
        md.push_str("\n## 2. python-diskcache's benchmark_core.py workload\n\n");
        md.push_str(
            "90% get, 9% set, 1% delete; keys `str(random.randrange(RANGE)).encode()`, values \
             `str(count).encode() * random.randrange(1, 100)`, every key preset to itself, the \
             first ops of each process untimed (warm-up), each process seeded with its number \
             (the same op sequence on every engine: the harness reproduces Python's `random`). \
             Misses: gets that found nothing, deletes of absent keys (as benchmark_core.py \
             counts them); failed: writes that returned an error or timed out. Throughput: \
             timed ops of all processes over the wall time from the first timed op to the \
             last.\n",
        );
        let procs: BTreeSet<usize> = r.mix.iter().map(|m| m.procs).collect();
        for p in procs {
            let _ = writeln!(md, "\n### {p} process(es)\n");
            let _ = writeln!(
                md,
                "| engine | op | count | misses | failed | median | p90 | p99 | max | throughput | ops lost |"
            );
            let _ = writeln!(md, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
            for m in r.mix.iter().filter(|m| m.procs == p) {
                match &m.ops {
                    None => {
                        let _ = writeln!(
                            md,
                            "| {} | | | | | | | | | {} | |",
                            m.engine.name(),
                            m.note.clone().unwrap_or_else(|| "n/a".into())
                        );
                    }
                    Some(ops) => {
                        for (i, (name, o)) in ["get", "set", "delete"].iter().zip(ops).enumerate() {
                            let s = &o.summary;
                            let (tp, lost) = if i == 0 {
                                (fmt_rate(m.throughput()), m.lost().to_string())
                            } else {
                                (String::new(), String::new())
                            };
                            let _ = writeln!(
                                md,
                                "| {} | {name} | {} | {} | {} | {} | {} | {} | {} | {tp} | {lost} |",
                                if i == 0 { m.engine.name() } else { "" },
                                s.count,
                                o.misses,
                                o.failed,
                                fmt_ns(s.p50 as f64),
                                fmt_ns(s.p90 as f64),
                                fmt_ns(s.p99 as f64),
                                fmt_ns(s.max as f64)
                            );
                        }
                    }
                }
            }
            let rows: Vec<&MixRow> = r
                .mix
                .iter()
                .filter(|m| m.procs == p && m.ops.is_some())
                .collect();
            let series: Vec<svg::BarSeries> = rows
                .iter()
                .map(|m| svg::BarSeries {
                    name: m.engine.name().into(),
                    color: color(m.engine),
                    values: m
                        .ops
                        .as_ref()
                        .map(|o| {
                            o.iter()
                                .map(|x| {
                                    let s = &x.summary;
                                    (s.count > 0).then_some((
                                        s.p50 as f64,
                                        s.p90 as f64,
                                        s.p99 as f64,
                                    ))
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                })
                .collect();
            let file = format!("mix-{p}.svg");
            std::fs::write(
                out.join(&file),
                svg::bars(
                    &format!("benchmark_core.py workload, {p} process(es)"),
                    "latency (log scale)",
                    &["get".into(), "set".into(), "delete".into()],
                    &series,
                    &fmt_ns,
                ),
            )?;
            let _ = writeln!(md, "\n![benchmark_core.py, {p} process(es)]({file})");
        }
    }

    // 3. Scaling.
    if !r.scaling.is_empty() {
        md.push_str("\n## 3. Scaling with item count\n\n");
        md.push_str(
            "100-byte values, loaded in transactions of 1,000 sets. Open: a new process opens \
             the existing cache and does one get (median of the runs; the page cache is warm). \
             Memory: anonymous RSS (`RssAnon` of /proc/self/status) that the open and one get \
             added, then after the random gets too. Disk: allocated bytes of the cache \
             directory (as `du`), the cache closed. Load: time to add the items since the \
             previous row.\n\n",
        );
        let _ = writeln!(
            md,
            "| engine | items | open + 1 get | memory after open | memory after gets | disk | load |"
        );
        let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|");
        for s in &r.scaling {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} |",
                s.engine.name(),
                fmt_count(s.items as f64),
                fmt_ns(s.open_ns as f64),
                fmt_bytes(s.mem_open as f64),
                fmt_bytes(s.mem_gets as f64),
                fmt_bytes(s.disk_bytes as f64),
                fmt_ns(s.load_ns as f64)
            );
        }
        let scaled: Vec<Engine> = engines
            .iter()
            .copied()
            .filter(|&e| r.scaling.iter().any(|s| s.engine == e))
            .collect();
        type Get = fn(&ScalePoint) -> f64;
        type Fmt = fn(f64) -> String;
        let charts: [(&str, &str, &str, Get, Fmt); 3] = [
            (
                "scaling-open.svg",
                "Open + one get in a new process",
                "time",
                |s| s.open_ns as f64,
                fmt_ns,
            ),
            (
                "scaling-memory.svg",
                "Private memory after open + gets",
                "anonymous RSS",
                |s| s.mem_gets as f64,
                fmt_bytes,
            ),
            (
                "scaling-disk.svg",
                "Disk bytes",
                "allocated bytes",
                |s| s.disk_bytes as f64,
                fmt_bytes,
            ),
        ];
        md.push('\n');
        for (file, title, ylab, get, fy) in charts {
            let series: Vec<svg::LineSeries> = scaled
                .iter()
                .map(|&e| svg::LineSeries {
                    name: e.name().into(),
                    color: color(e),
                    points: r
                        .scaling
                        .iter()
                        .filter(|s| s.engine == e)
                        .map(|s| (s.items as f64, get(s)))
                        .collect(),
                })
                .collect();
            std::fs::write(
                out.join(file),
                svg::lines(title, "items", ylab, &series, &fmt_count, &fy),
            )?;
            let _ = writeln!(md, "![{title}]({file})");
        }
    }
    if !r.overwrite.is_empty() {
        md.push_str("\n### Disk bytes after an overwrite-heavy phase\n\n");
        md.push_str(
            "The cache loaded as above, then sets of random existing keys (each its own \
             transaction, same value size), then closed.\n\n",
        );
        let _ = writeln!(
            md,
            "| engine | items | overwrites | disk before | disk after | after / before | time per set |"
        );
        let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|");
        for o in &r.overwrite {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {:.2} | {} |",
                o.engine.name(),
                fmt_count(o.items as f64),
                fmt_count(o.overwrites as f64),
                fmt_bytes(o.before_bytes as f64),
                fmt_bytes(o.after_bytes as f64),
                o.after_bytes as f64 / o.before_bytes.max(1) as f64,
                fmt_ns(o.ns as f64 / o.overwrites.max(1) as f64)
            );
        }
    }

    // 4. Transactions.
    if !r.txn.is_empty() {
        md.push_str("\n## 4. A transaction of 1,000 sets\n\n");
        md.push_str(
            "Latency of one transaction that sets 1,000 random existing keys (100-byte \
             values) in a cache of the preloaded keys.\n\n",
        );
        let _ = writeln!(
            md,
            "| engine | transactions | median | p90 | p99 | per set (median / 1,000) |"
        );
        let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|");
        for t in &r.txn {
            let s = &t.summary;
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} |",
                t.engine.name(),
                s.count,
                fmt_ns(s.p50 as f64),
                fmt_ns(s.p90 as f64),
                fmt_ns(s.p99 as f64),
                fmt_ns(s.p50 as f64 / 1000.0)
            );
        }
        let series: Vec<svg::BarSeries> = r
            .txn
            .iter()
            .map(|t| svg::BarSeries {
                name: t.engine.name().into(),
                color: color(t.engine),
                values: vec![(t.summary.count > 0).then_some((
                    t.summary.p50 as f64,
                    t.summary.p90 as f64,
                    t.summary.p99 as f64,
                ))],
            })
            .collect();
        std::fs::write(
            out.join("txn.svg"),
            svg::bars(
                "A transaction of 1,000 sets",
                "latency (log scale)",
                &["1,000 sets".into()],
                &series,
                &fmt_ns,
            ),
        )?;
        md.push_str("\n![transactions of 1,000 sets](txn.svg)\n");
    }
    if !r.notes.is_empty() {
        md.push_str("\n## Notes\n\n");
        for n in &r.notes {
            let _ = writeln!(md, "- {n}");
        }
    }
    std::fs::write(out.join("report.md"), &md)?;
    std::fs::write(
        out.join("results.json"),
        serde_json::to_string_pretty(r).unwrap_or_default(),
    )?;
    Ok(md)
}
