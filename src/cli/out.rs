//! Standard output for results (tables, JSON, completion scripts, the man page), written so
//! that a closed stdout is an ordinary, quiet end instead of a panic.
//!
//! Rust ignores SIGPIPE, so a write to a pipe whose reader is gone (`orch status | head -1`)
//! fails with `EPIPE`, and `println!` panics on it (exit 101, a backtrace on stderr). orch keeps
//! SIGPIPE ignored on purpose: `orch run` must never be killed by its stdout mid-round, with
//! agents running and a round to record. So every result goes through [`write`], which turns a
//! broken pipe into [`Error::StdoutClosed`]: it travels up like any error (locks are dropped,
//! files closed on the way) and `main` exits 141, as a shell reports a process SIGPIPE ended,
//! printing nothing. `println!` is denied in the library (`clippy::print_stdout`) so that no
//! new command forgets this.

use std::io::Write;

use crate::error::{Error, Result};

/// Writes `bytes` to stdout and flushes; a closed stdout is [`Error::StdoutClosed`].
pub fn write(bytes: &[u8]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|_| out.flush())
        .map_err(from_io)
}

/// What a failed write to stdout means: the reader went away, or a real I/O error.
pub fn from_io(e: std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        Error::StdoutClosed
    } else {
        Error::io("writing to standard output", e)
    }
}

/// `print!` through [`write`]: evaluates to `Result<()>`.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::out::write(format!($($arg)*).as_bytes())
    };
}

/// `println!` through [`write`]: evaluates to `Result<()>`.
#[macro_export]
macro_rules! outln {
    () => {
        $crate::cli::out::write(b"\n")
    };
    ($($arg:tt)*) => {
        $crate::cli::out::write(format!("{}\n", format_args!($($arg)*)).as_bytes())
    };
}
