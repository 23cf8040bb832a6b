//! `diskcache`: look into and maintain cache directories from the command line.
//!
//! Works on plain and fanout cache directories, with either codec, while other processes
//! use them. Output is for people by default and JSON with `--json`; progress bars appear
//! on a terminal only. Exit status: 0 success, 1 key not found (`get`, `delete`) or
//! problems found (`check`), 2 usage, I/O or cache errors.

#[path = "diskcache/bench.rs"]
mod bench;
#[path = "diskcache/commands.rs"]
mod commands;
#[path = "diskcache/dump.rs"]
mod dump;
#[path = "diskcache/fail.rs"]
mod fail;
#[path = "diskcache/keys.rs"]
mod keys;
#[path = "diskcache/stats.rs"]
mod stats;
#[path = "diskcache/store.rs"]
mod store;
#[path = "diskcache/transfer.rs"]
mod transfer;
#[path = "diskcache/ui.rs"]
mod ui;

use clap::{Args, Parser, Subcommand};
use fail::{Fail, EXIT_ERROR};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "diskcache",
    version,
    about = "Look into and maintain diskcache-rs cache directories (plain or fanout).",
    long_about = "Look into and maintain diskcache-rs cache directories (plain or fanout), \
                  also while other processes use them.\n\n\
                  Keys are strings unless --key-int, --key-hex, --key-json or --key-encoded \
                  says otherwise. Output is human-readable; --json gives JSON for scripts.\n\n\
                  Exit status: 0 success; 1 key not found (get, delete) or problems found \
                  (check); 2 usage, I/O or cache errors."
)]
struct Cli {
    /// Print JSON instead of text (for scripts).
    #[arg(long, global = true)]
    json: bool,
    /// Seconds to wait for the writer lock when another process holds it.
    #[arg(long, global = true, value_name = "SECONDS", default_value_t = 10.0)]
    timeout: f64,
    /// Never draw progress bars (they are drawn only when stderr is a terminal anyway).
    #[arg(long, global = true)]
    no_progress: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

/// A key given on the command line.
#[derive(Args, Debug, Clone)]
pub struct KeyArg {
    /// The key: a string, unless one of the --key-* flags says how to read it.
    #[arg(allow_hyphen_values = true)]
    pub key: String,
    /// Read KEY as an integer.
    #[arg(long, group = "key_syntax")]
    pub key_int: bool,
    /// Read KEY as hex digits of a byte string.
    #[arg(long, group = "key_syntax")]
    pub key_hex: bool,
    /// Read KEY as JSON, e.g. '[1,"a"]' for the tuple (1, "a").
    #[arg(long, group = "key_syntax")]
    pub key_json: bool,
    /// Read KEY as hex of its canonical encoding (the "encoded" field of `keys --json`).
    #[arg(long, group = "key_syntax")]
    pub key_encoded: bool,
}

impl KeyArg {
    pub fn parse(&self) -> fail::R<diskcache::Key> {
        let syntax = if self.key_int {
            keys::Syntax::Int
        } else if self.key_hex {
            keys::Syntax::Hex
        } else if self.key_json {
            keys::Syntax::Json
        } else if self.key_encoded {
            keys::Syntax::Encoded
        } else {
            keys::Syntax::Str
        };
        keys::parse(&self.key, syntax, "key")
    }
}

/// How a tag given on the command line is read.
#[derive(Args, Debug, Clone, Default)]
pub struct TagSyntax {
    /// Read the tag as an integer.
    #[arg(long, group = "tag_syntax")]
    pub tag_int: bool,
    /// Read the tag as hex digits of a byte string.
    #[arg(long, group = "tag_syntax")]
    pub tag_hex: bool,
    /// Read the tag as JSON.
    #[arg(long, group = "tag_syntax")]
    pub tag_json: bool,
}

impl TagSyntax {
    pub fn parse(&self, text: &str) -> fail::R<diskcache::Key> {
        let syntax = if self.tag_int {
            keys::Syntax::Int
        } else if self.tag_hex {
            keys::Syntax::Hex
        } else if self.tag_json {
            keys::Syntax::Json
        } else {
            keys::Syntax::Str
        };
        keys::parse(text, syntax, "tag")
    }
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Counts, volume, settings, hit/miss statistics, file sizes and index dead space.
    Stats {
        /// The cache directory.
        dir: PathBuf,
    },
    /// Verify every invariant of the cache; with --fix, repair what can be repaired.
    /// Exit status 1 if problems were found.
    Check {
        /// The cache directory.
        dir: PathBuf,
        /// Repair: rebuild indexes and counters, drop items whose value file is lost,
        /// remove stray files.
        #[arg(long)]
        fix: bool,
    },
    /// Rebuild a missing or damaged meta file from the copy of the last checkpoint in the
    /// log (of each shard, for a fanout cache); nothing committed is lost. Run it only while
    /// no process uses the cache.
    Repair {
        /// The cache directory.
        dir: PathBuf,
    },
    /// Print the value of a key (exit status 1 if it is missing or expired).
    Get {
        /// The cache directory.
        dir: PathBuf,
        #[command(flatten)]
        key: KeyArg,
        /// Print byte values (and values of a binary codec) as hex even into a pipe.
        #[arg(long)]
        hex: bool,
    },
    /// Store a value: a string by default; --int, --float, --hex, --value-json or --stdin.
    Set {
        /// The cache directory (created if missing).
        dir: PathBuf,
        #[command(flatten)]
        key: KeyArg,
        /// The value (omit with --stdin).
        #[arg(allow_hyphen_values = true, required_unless_present = "stdin")]
        value: Option<String>,
        /// Store VALUE as a 64-bit integer.
        #[arg(long, group = "value_kind")]
        int: bool,
        /// Store VALUE as a float.
        #[arg(long, group = "value_kind")]
        float: bool,
        /// Store VALUE (hex digits) as a byte string.
        #[arg(long, group = "value_kind")]
        hex: bool,
        /// Store VALUE (JSON) encoded with the cache's codec (caches with the json codec).
        #[arg(long, group = "value_kind")]
        value_json: bool,
        /// Store standard input as a byte string, streamed into a value file.
        #[arg(long, group = "value_kind", conflicts_with = "value")]
        stdin: bool,
        /// Expire after this many seconds.
        #[arg(long, value_name = "SECONDS")]
        expire: Option<f64>,
        /// Tag the item (a string unless --tag-int, --tag-hex or --tag-json).
        #[arg(long, allow_hyphen_values = true)]
        tag: Option<String>,
        #[command(flatten)]
        tag_syntax: TagSyntax,
    },
    /// Remove a key (exit status 1 if it was not there).
    Delete {
        /// The cache directory.
        dir: PathBuf,
        #[command(flatten)]
        key: KeyArg,
    },
    /// List keys, in insertion order (default) or sorted. With --json, one JSON object per
    /// line.
    Keys {
        /// The cache directory.
        dir: PathBuf,
        /// Sorted order: numbers, strings, byte strings, then composite keys.
        #[arg(long)]
        sorted: bool,
        /// Newest (or greatest) first.
        #[arg(long)]
        reverse: bool,
        /// Only string keys starting with this.
        #[arg(long, allow_hyphen_values = true)]
        prefix: Option<String>,
        /// At most this many keys.
        #[arg(long)]
        limit: Option<u64>,
    },
    /// Remove expired items; print how many.
    Expire {
        /// The cache directory.
        dir: PathBuf,
    },
    /// Remove expired items, then items in eviction order down to the size limit.
    Cull {
        /// The cache directory.
        dir: PathBuf,
    },
    /// Remove every item with a tag.
    Evict {
        /// The cache directory.
        dir: PathBuf,
        /// The tag (a string unless --tag-int, --tag-hex or --tag-json).
        #[arg(allow_hyphen_values = true)]
        tag: String,
        #[command(flatten)]
        tag_syntax: TagSyntax,
    },
    /// Remove every item (asks nothing); print how many.
    Clear {
        /// The cache directory.
        dir: PathBuf,
    },
    /// Checkpoint and rewrite the index files with live data only.
    Compact {
        /// The cache directory.
        dir: PathBuf,
    },
    /// Write every entry to a portable dump stream (stdout, or -o FILE).
    Dump {
        /// The cache directory.
        dir: PathBuf,
        /// Write to this file (written under FILE.partial, renamed when complete).
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Load a dump stream (stdin, or -i FILE) into a cache directory, created if missing.
    Load {
        /// The cache directory; a missing one is created like the dump's source.
        dir: PathBuf,
        /// Read from this file.
        #[arg(short, long, value_name = "FILE")]
        input: Option<PathBuf>,
        /// Also load entries that have already expired.
        #[arg(long)]
        keep_expired: bool,
        /// Create a fanout cache with this many shards (new directories only).
        #[arg(long, conflicts_with = "plain")]
        shards: Option<usize>,
        /// Create a plain cache even if the source was a fanout cache (new directories only).
        #[arg(long)]
        plain: bool,
    },
    /// A quick local benchmark: set, get and delete latency.
    Bench {
        /// Run in this directory (missing or empty) instead of a temporary one.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Operations of each kind.
        #[arg(long, default_value_t = 10_000)]
        ops: usize,
        /// Bytes per value.
        #[arg(long, default_value_t = 100)]
        value_size: usize,
        /// Keep the cache afterwards.
        #[arg(long)]
        keep: bool,
    },
}

/// Everything a command needs besides its own arguments.
pub struct Ctx {
    pub json: bool,
    pub timeout: Duration,
}

fn run(cli: Cli) -> (Option<PathBuf>, fail::R<()>) {
    let timeout = if cli.timeout.is_finite() && cli.timeout >= 0.0 {
        Duration::from_secs_f64(cli.timeout.min(1e9))
    } else {
        return (
            None,
            Err(Fail::usage(format!(
                "--timeout {} is not a number of seconds",
                cli.timeout
            ))),
        );
    };
    if cli.no_progress {
        ui::disable_progress();
    }
    let ctx = Ctx {
        json: cli.json,
        timeout,
    };
    match cli.cmd {
        Cmd::Stats { dir } => {
            let r = stats::run(&ctx, &dir);
            (Some(dir), r)
        }
        Cmd::Check { dir, fix } => {
            let r = commands::check(&ctx, &dir, fix);
            (Some(dir), r)
        }
        Cmd::Repair { dir } => {
            let r = commands::repair(&ctx, &dir);
            (Some(dir), r)
        }
        Cmd::Get { dir, key, hex } => {
            let r = commands::get(&ctx, &dir, &key, hex);
            (Some(dir), r)
        }
        Cmd::Set {
            dir,
            key,
            value,
            int,
            float,
            hex,
            value_json,
            stdin,
            expire,
            tag,
            tag_syntax,
        } => {
            let kind = if int {
                commands::ValueSyntax::Int
            } else if float {
                commands::ValueSyntax::Float
            } else if hex {
                commands::ValueSyntax::Hex
            } else if value_json {
                commands::ValueSyntax::Json
            } else if stdin {
                commands::ValueSyntax::Stdin
            } else {
                commands::ValueSyntax::Str
            };
            let r = commands::set(
                &ctx,
                &dir,
                &key,
                value.as_deref(),
                kind,
                expire,
                tag.as_deref(),
                &tag_syntax,
            );
            (Some(dir), r)
        }
        Cmd::Delete { dir, key } => {
            let r = commands::delete(&ctx, &dir, &key);
            (Some(dir), r)
        }
        Cmd::Keys {
            dir,
            sorted,
            reverse,
            prefix,
            limit,
        } => {
            let r = commands::keys(&ctx, &dir, sorted, reverse, prefix.as_deref(), limit);
            (Some(dir), r)
        }
        Cmd::Expire { dir } => {
            let r = commands::remove(&ctx, &dir, commands::Removal::Expire);
            (Some(dir), r)
        }
        Cmd::Cull { dir } => {
            let r = commands::remove(&ctx, &dir, commands::Removal::Cull);
            (Some(dir), r)
        }
        Cmd::Evict {
            dir,
            tag,
            tag_syntax,
        } => {
            let r = tag_syntax
                .parse(&tag)
                .and_then(|t| commands::remove(&ctx, &dir, commands::Removal::Evict(t)));
            (Some(dir), r)
        }
        Cmd::Clear { dir } => {
            let r = commands::remove(&ctx, &dir, commands::Removal::Clear);
            (Some(dir), r)
        }
        Cmd::Compact { dir } => {
            let r = commands::compact(&ctx, &dir);
            (Some(dir), r)
        }
        Cmd::Dump { dir, output } => {
            let r = transfer::dump(&ctx, &dir, output.as_deref());
            (Some(dir), r)
        }
        Cmd::Load {
            dir,
            input,
            keep_expired,
            shards,
            plain,
        } => {
            let layout = match (shards, plain) {
                (Some(n), _) => transfer::NewLayout::Fanout(n),
                (None, true) => transfer::NewLayout::Plain,
                (None, false) => transfer::NewLayout::AsSource,
            };
            let r = transfer::load(&ctx, &dir, input.as_deref(), keep_expired, layout);
            (Some(dir), r)
        }
        Cmd::Bench {
            dir,
            ops,
            value_size,
            keep,
        } => {
            let r = bench::run(&ctx, dir.as_deref(), ops, value_size, keep);
            (dir, r)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (dir, result) = run(cli);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) if f.broken_pipe => ExitCode::SUCCESS,
        Err(f) => {
            if !f.msg.is_empty() {
                match dir {
                    Some(d) => eprintln!("diskcache: {}: {}", d.display(), f.msg),
                    None => eprintln!("diskcache: {}", f.msg),
                }
            }
            ExitCode::from(u8::try_from(f.code).unwrap_or(EXIT_ERROR as u8))
        }
    }
}
