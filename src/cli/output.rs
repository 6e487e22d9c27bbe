//! Standard output for results, where every write can fail without a panic.
//!
//! `println!` panics when stdout is a full disk (`/dev/full`, ENOSPC) or a pipe whose reader has
//! gone (EPIPE: Rust ignores SIGPIPE, so the write fails instead of killing the process). The
//! subcommands write through [`Out`] instead: a failed write is an [`Error::Io`] naming
//! [`STDOUT`], which the binary prints as an error with a non-zero exit, except a closed pipe
//! ([`is_closed_stdout`]), where the reader wanted no more and the binary exits quietly with 0.

use std::io::{BufWriter, Stdout, Write};

use crate::error::{Error, Result};

/// The name standard output has in errors.
pub const STDOUT: &str = "<stdout>";

/// Buffered standard output whose writes return errors; `writeln!(out, ...)?` works on it.
/// Subcommands call [`Out::flush`] after each batch of results (so results appear as they are
/// made) and before returning (so a failure of the last write is reported, not dropped).
pub struct Out {
    w: BufWriter<Stdout>,
}

impl Default for Out {
    fn default() -> Self {
        Out::new()
    }
}

impl Out {
    /// Standard output, buffered.
    pub fn new() -> Out {
        Out {
            w: BufWriter::new(std::io::stdout()),
        }
    }

    /// Writes formatted text (what `write!`/`writeln!` call).
    pub fn write_fmt(&mut self, args: std::fmt::Arguments<'_>) -> Result<()> {
        self.w.write_fmt(args).map_err(stdout_error)
    }

    /// Writes everything buffered to standard output.
    pub fn flush(&mut self) -> Result<()> {
        self.w.flush().map_err(stdout_error)
    }
}

/// A failed write to standard output as an error.
pub fn stdout_error(source: std::io::Error) -> Error {
    Error::Io {
        path: STDOUT.into(),
        source,
    }
}

/// Whether `e` is a write to standard output whose reader has closed the pipe (`heedful ... | head`).
pub fn is_closed_stdout(e: &Error) -> bool {
    matches!(e, Error::Io { path, source }
        if path.as_os_str() == STDOUT && source.kind() == std::io::ErrorKind::BrokenPipe)
}

/// Writes a note or error line to standard error, ignoring a failure: `eprintln!` would panic on a
/// full or broken stderr, and there is nowhere else to report it.
pub fn note(args: std::fmt::Arguments<'_>) {
    let mut e = std::io::stderr().lock();
    let _ = e.write_fmt(args).and_then(|_| e.write_all(b"\n"));
}
