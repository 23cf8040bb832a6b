//! Errors of the tool and the exit statuses they map to.

use std::fmt;
use std::io;

/// Exit status for a key that is not there, or problems found by `check`.
pub const EXIT_NOT_FOUND: i32 = 1;
/// Exit status for usage, I/O and cache errors.
pub const EXIT_ERROR: i32 = 2;

/// A failure: a message for stderr and an exit status.
#[derive(Debug)]
pub struct Fail {
    pub code: i32,
    pub msg: String,
    /// Output was cut off by a closed pipe (`diskcache keys DIR | head`): exit quietly.
    pub broken_pipe: bool,
}

pub type R<T> = Result<T, Fail>;

impl Fail {
    pub fn usage(msg: impl Into<String>) -> Fail {
        Fail {
            code: EXIT_ERROR,
            msg: msg.into(),
            broken_pipe: false,
        }
    }

    pub fn not_found(msg: impl Into<String>) -> Fail {
        Fail {
            code: EXIT_NOT_FOUND,
            msg: msg.into(),
            broken_pipe: false,
        }
    }

    /// A failure to write a dump: reported even when the reader went away, since the dump
    /// is then incomplete.
    pub fn dump_output(e: io::Error) -> Fail {
        Fail {
            code: EXIT_ERROR,
            broken_pipe: false,
            msg: format!("writing the dump: {e}; the dump is incomplete"),
        }
    }

    pub fn io(context: impl fmt::Display, e: io::Error) -> Fail {
        Fail {
            code: EXIT_ERROR,
            broken_pipe: e.kind() == io::ErrorKind::BrokenPipe,
            msg: format!("{context}: {e}"),
        }
    }
}

impl From<diskcache::Error> for Fail {
    fn from(e: diskcache::Error) -> Fail {
        let broken_pipe = matches!(&e, diskcache::Error::Io { source, .. }
            if source.kind() == io::ErrorKind::BrokenPipe);
        let mut msg = e.to_string();
        if e.is_timeout() {
            msg.push_str("; another process holds it (wait longer with --timeout SECONDS)");
        }
        Fail {
            code: EXIT_ERROR,
            msg,
            broken_pipe,
        }
    }
}

/// Writing command output (stdout) failed.
impl From<io::Error> for Fail {
    fn from(e: io::Error) -> Fail {
        Fail::io("writing output", e)
    }
}
