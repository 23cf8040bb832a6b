//! What a run measured, and the summaries the report shows.

use crate::stores::Engine;
use serde::{Deserialize, Serialize};

/// Percentiles of a set of durations (nanoseconds).
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct Summary {
    pub count: usize,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub max: u64,
    pub total: u64,
}

impl Summary {
    pub fn of(mut ns: Vec<u64>) -> Summary {
        ns.sort_unstable();
        let pct = |p: f64| {
            if ns.is_empty() {
                0
            } else {
                ns[((ns.len() as f64 - 1.0) * p).round() as usize]
            }
        };
        Summary {
            count: ns.len(),
            p50: pct(0.5),
            p90: pct(0.9),
            p99: pct(0.99),
            max: ns.last().copied().unwrap_or(0),
            total: ns.iter().sum(),
        }
    }
}

/// A latency workload's configuration.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
pub struct LatCfg {
    pub keys: u64,
    pub value_size: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Op {
    Set,
    Get,
    Delete,
    LruGet,
}

impl Op {
    pub const ALL: [Op; 4] = [Op::Set, Op::Get, Op::Delete, Op::LruGet];
    pub fn name(self) -> &'static str {
        match self {
            Op::Set => "set",
            Op::Get => "get",
            Op::Delete => "delete",
            Op::LruGet => "LRU get",
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LatRow {
    pub cfg: LatCfg,
    pub engine: Engine,
    pub op: Op,
    pub summary: Summary,
}

/// One op of the mixed workload, over all processes.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct MixOp {
    pub summary: Summary,
    pub misses: u64,
    pub failed: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MixRow {
    pub engine: Engine,
    pub procs: usize,
    /// None: not applicable (the reason is in `note`).
    pub ops: Option<[MixOp; 3]>,
    pub wall_ns: u64,
    pub note: Option<String>,
}

impl MixRow {
    pub fn timed_ops(&self) -> u64 {
        self.ops
            .as_ref()
            .map(|o| o.iter().map(|m| m.summary.count as u64).sum())
            .unwrap_or(0)
    }
    pub fn throughput(&self) -> f64 {
        if self.wall_ns == 0 {
            return 0.0;
        }
        self.timed_ops() as f64 / (self.wall_ns as f64 / 1e9)
    }
    /// Ops lost as python-diskcache's benchmark counts them (gets that return nothing,
    /// sets and deletes that return False) plus writes that failed or timed out.
    pub fn lost(&self) -> u64 {
        self.ops
            .as_ref()
            .map(|o| o.iter().map(|m| m.misses + m.failed).sum())
            .unwrap_or(0)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ScalePoint {
    pub engine: Engine,
    pub items: u64,
    /// Time to add the items since the previous point (transactions of 1,000 sets).
    pub load_ns: u64,
    pub disk_bytes: u64,
    pub open_ns: u64,
    /// Anonymous RSS added by opening and one get.
    pub mem_open: u64,
    /// Anonymous RSS added by opening and then the random gets.
    pub mem_gets: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OverwriteRow {
    pub engine: Engine,
    pub items: u64,
    pub overwrites: u64,
    pub before_bytes: u64,
    pub after_bytes: u64,
    pub ns: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TxnRow {
    pub engine: Engine,
    pub summary: Summary,
}

/// Everything a run produced.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Results {
    pub latency: Vec<LatRow>,
    pub mix: Vec<MixRow>,
    pub scaling: Vec<ScalePoint>,
    pub overwrite: Vec<OverwriteRow>,
    pub txn: Vec<TxnRow>,
    pub notes: Vec<String>,
}
