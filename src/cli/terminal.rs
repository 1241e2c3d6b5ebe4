//! What podcheck prints on stdout.
//!
//! A reader that stops early (`podcheck rules | head -3`) closes the pipe: from then on
//! output is dropped and the command finishes as it would have, so its exit status and
//! report files still tell the verdict. Any other write error is an error.

use podcheck_oracle::Outcome;
use podcheck_reports::{summarize_violations, CaseResult};
use std::fmt;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once stdout has failed: nothing more is written to it.
static STDOUT_GONE: AtomicBool = AtomicBool::new(false);

/// Writes to stdout; a closed pipe is not an error. Use [`outln!`] and [`out!`].
pub fn write_stdout(args: fmt::Arguments) -> io::Result<()> {
    if STDOUT_GONE.load(Ordering::Relaxed) {
        return Ok(());
    }
    let written = io::stdout().lock().write_fmt(args);
    if written.is_err() {
        STDOUT_GONE.store(true, Ordering::Relaxed);
    }
    match written {
        Err(err) if err.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        Err(err) => Err(io::Error::new(
            err.kind(),
            format!("failed to write to stdout: {err}"),
        )),
        Ok(()) => Ok(()),
    }
}

/// `println!` that returns an [`io::Result`] instead of panicking.
macro_rules! outln {
    () => {
        $crate::cli::terminal::write_stdout(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::cli::terminal::write_stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` that returns an [`io::Result`] instead of panicking.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::terminal::write_stdout(format_args!($($arg)*))
    };
}

pub(crate) use {out, outln};

/// One case's verdict line, then its violations (at most 8 lines) or its error.
pub fn print_case(result: &CaseResult) -> io::Result<()> {
    let v = &result.verdict;
    let label = match v.outcome {
        Outcome::Pass => "PASS ",
        Outcome::Fail => "FAIL ",
        Outcome::Error => "ERROR",
        Outcome::Skipped => "SKIP ",
    };
    let headroom = v
        .timing_headroom_ms
        .filter(|_| v.outcome == Outcome::Pass)
        .map(|ms| format!("  headroom {:.1}s", ms as f64 / 1000.0))
        .unwrap_or_default();
    outln!(
        "{label} {:<44} {:>6.1}s  {}{headroom}",
        v.scenario,
        result.wall_ms as f64 / 1000.0,
        result.source
    )?;
    match v.outcome {
        Outcome::Fail => {
            for line in summarize_violations(v, 8).lines() {
                outln!("      {line}")?;
            }
            if let Some(why) = &v.ended_early {
                outln!("      ended early: {why}")?;
            }
        }
        Outcome::Error | Outcome::Skipped => {
            outln!("      {}", v.error.as_deref().unwrap_or(""))?;
        }
        Outcome::Pass => {}
    }
    for why in &result.reruns {
        outln!("      rerun: {why}")?;
    }
    Ok(())
}

/// Keeps the first stdout error of a callback that cannot return one.
#[derive(Default)]
pub struct FirstError(Option<io::Error>);

impl FirstError {
    pub fn keep(&mut self, result: io::Result<()>) {
        if let Err(err) = result {
            self.0.get_or_insert(err);
        }
    }

    pub fn into_result(self) -> io::Result<()> {
        self.0.map_or(Ok(()), Err)
    }
}
