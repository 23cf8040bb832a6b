//! diskcache: a persistent, process-safe, crash-consistent disk cache.
//!
//! A Rust reimplementation of python-diskcache's `Cache` on a log-structured store with
//! memory-mapped copy-on-write B+trees instead of SQLite. See the README for the tour and
//! `format-spec/` for the on-disk format.
//!
//! # Guarantees
//!
//! - Any number of handles, in one process or many, share a directory; readers never wait
//!   for writers, writers exclude each other. A handle survives `fork()`: the child never
//!   releases or keeps its parent's locks, and goes on with a handle of its own (a
//!   transaction open at the fork fails in the child with [`Error::Forked`]).
//! - `kill -9` loses no committed transaction. Power loss loses at most the transactions
//!   since the last checkpoint ([`SyncLevel::Normal`]) or none ([`SyncLevel::Full`]); the
//!   level is the cache's, so no handle can weaken another's promise; the cache always
//!   reopens.
//! - Damage costs what it must: a missing or damaged value file loses its entry (a miss,
//!   which [`Cache::check`] reports), never later commits; a damaged checkpoint slot is
//!   recovered from the copy in the log; a missing or empty meta file is refused, never
//!   replaced by an empty cache ([`CacheBuilder::repair`] rebuilds it). A full disk or a
//!   failed write is an error, never a SIGBUS, on ext4, xfs, btrfs, tmpfs and overlayfs; a
//!   failed sync makes the handle refuse writes until reopened.
//! - Nothing from the directory is executed or followed: values are decoded by bincode or
//!   JSON, value files are opened without following links and checked against their
//!   length and checksum. New directories are 0700 and files 0600
//!   ([`CacheBuilder::file_mode`] shares them with a group).
//!
//! # Limits
//!
//! Network file systems (NFS, SMB, ...) are refused unless one handle alone uses the cache
//! ([`CacheBuilder::single_process`]); handles on a copy-on-write file system must share
//! `/dev/shm`; the writer-liveness locks are Linux's open-file-description locks (other
//! Unix systems use whole-file locks on per-handle files).

#![deny(unsafe_code)]
#![warn(missing_docs)]

mod cache;
mod codec;
mod deque;
mod engine;
mod error;
mod fanout;
mod format;
#[doc(hidden)]
pub mod fuzz_decoders;
mod index;
mod key;
pub mod recipes;
pub mod storage;
#[allow(unsafe_code)]
mod sys;

pub use cache::{
    take_displaced_files, with_clock, Cache, CacheBuilder, Entry, EvictionPolicy, Keys,
    MemoizeOptions, Memoized, Number, Prepared, QueueOptions, RawData, RawEntry, RawFound,
    SetOptions, Side, TxnControl, Value, ValueKind, ValueReader, Values, Warning, WarningKind,
};
pub use codec::{Bincode, Codec, Json};
pub use deque::Deque;
pub use engine::{EngineInfo, Repaired, SyncLevel};
pub use error::{Error, Result};
pub use fanout::{FanoutBuilder, FanoutCache, MergedKeys};
pub use index::{Index, IndexItems, IndexKeys};
pub use key::{CompositeKey, Key, PythonKey, PythonKeyKind};

/// The plain encoding of Python values (`format-spec/README.md`, section 17): how the Python
/// package stores None, bools, integers of any size, floats, strings, byte strings and their
/// tuple/list/dict/set/frozenset nestings without pickle. Decoding runs no code.
pub mod plain {
    pub use crate::format::plain::{
        decode, encode, validate, Container, PlainReader, PlainValue, PlainWriter, Token, MAX_DEPTH,
    };
    pub use crate::format::DecodeError;
}

/// The README's examples, compiled and run as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
