//! diskcache: a persistent, process-safe, crash-consistent disk cache.
//!
//! A Rust reimplementation of python-diskcache's `Cache` on a log-structured store with
//! memory-mapped copy-on-write B+trees instead of SQLite. See the README for the tour and
//! `format-spec/` for the on-disk format.

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
