//! The crate's error type.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// A `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in a cache operation.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// An I/O operation failed. `context` says what was being done, on which file.
    Io {
        /// What the engine was doing.
        context: String,
        /// The operating system's error.
        source: io::Error,
    },
    /// A file of the cache directory holds bytes that cannot be right.
    Corrupted {
        /// The damaged file.
        file: PathBuf,
        /// Where in it the damage was found.
        offset: u64,
        /// What is wrong.
        detail: String,
    },
    /// A file was written by another (newer, older or unknown) format version.
    UnsupportedVersion {
        /// The file.
        file: PathBuf,
        /// The version it claims.
        found: u32,
        /// The version this build reads.
        supported: u32,
    },
    /// The writer lock could not be taken within the cache's timeout. Batch operations
    /// (`clear`, `cull`, `expire`, `evict`) report how many items they had removed by then.
    Timeout {
        /// Items removed before the timeout (0 for single-key operations).
        removed: u64,
    },
    /// The key is not in the cache (e.g. `incr` without a default).
    KeyNotFound,
    /// The key cannot be stored (NaN, too large, or not serializable).
    InvalidKey(String),
    /// A value could not be encoded or decoded by the cache's codec.
    Codec(String),
    /// The stored value is not of the kind the operation needs (e.g. `incr` on a string).
    TypeMismatch(String),
    /// An integer operation overflowed 64 bits.
    Overflow,
    /// An argument or setting is out of its range.
    InvalidArgument(String),
    /// The cache was created with another codec than the one it is opened with.
    CodecMismatch {
        /// The codec recorded in the cache.
        stored: String,
        /// The codec it was opened with.
        requested: String,
    },
    /// An earlier write failed in a way that leaves durability unknown (a failed fsync);
    /// this handle refuses further writes. Reopen the cache to recover.
    PreviousIo,
    /// The operation belongs to the parent process of a `fork()`: a transaction that was
    /// open in the parent when it forked cannot be continued or committed in the child.
    Forked,
    /// The cache cannot be used here safely (a network file system, say); the message says
    /// why and what to do instead.
    Unsupported(String),
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn corrupted(
        file: impl Into<PathBuf>,
        offset: u64,
        detail: impl Into<String>,
    ) -> Error {
        Error::Corrupted {
            file: file.into(),
            offset,
            detail: detail.into(),
        }
    }

    /// Whether this is a [`Error::Timeout`].
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Timeout { .. })
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { context, source } => write!(f, "I/O error while {context}: {source}"),
            Error::Corrupted {
                file,
                offset,
                detail,
            } => write!(
                f,
                "corrupted cache file {} at offset {offset}: {detail}",
                file.display()
            ),
            Error::UnsupportedVersion {
                file,
                found,
                supported,
            } => write!(
                f,
                "{} has format version {found}; this build reads format version {supported} \
                 only (a cache of another version can be moved with the `diskcache dump` of \
                 the version that wrote it and this version's `diskcache load`, or removed)",
                file.display()
            ),
            Error::Timeout { removed } => {
                write!(f, "timed out waiting for the cache's writer lock")?;
                if *removed > 0 {
                    write!(f, " ({removed} items removed before the timeout)")?;
                }
                Ok(())
            }
            Error::KeyNotFound => write!(f, "key not found"),
            Error::InvalidKey(why) => write!(f, "invalid key: {why}"),
            Error::Codec(why) => write!(f, "codec error: {why}"),
            Error::TypeMismatch(why) => write!(f, "type mismatch: {why}"),
            Error::Overflow => write!(f, "integer overflow"),
            Error::InvalidArgument(why) => write!(f, "invalid argument: {why}"),
            Error::CodecMismatch { stored, requested } => write!(
                f,
                "the cache stores values with the {stored:?} codec but was opened with {requested:?}"
            ),
            Error::PreviousIo => write!(
                f,
                "an earlier write failed with an I/O error; reopen the cache before writing"
            ),
            Error::Forked => write!(
                f,
                "this transaction was opened by the parent process before fork(); it cannot \
                 be used in the child"
            ),
            Error::Unsupported(why) => write!(f, "unsupported: {why}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
