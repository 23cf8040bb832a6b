//! diskcache: a persistent, process-safe, crash-consistent disk cache.

#![deny(unsafe_code)]
#![warn(missing_docs)]

mod engine;
mod error;
mod format;
mod key;
pub mod storage;
#[allow(unsafe_code)]
mod sys;

pub use engine::{EngineInfo, SyncLevel};
pub use error::{Error, Result};
pub use key::{CompositeKey, Key};
