//! The exit codes, all decided here: 0 done, 1 failed (or a check found
//! what blocks), 2 a usage error (clap's), 3 some hosts failed while the
//! others did their part, 128 + N ended by signal N (as a shell reports
//! it).

use std::process::ExitCode;

use anyhow::Result;

use super::prompt::ConsoleError;
use crate::utils::sanitize;

/// Exit status when some hosts answered and others failed: their rows were
/// printed, and one error line names each failed host.
const EXIT_PARTIAL: u8 = 3;

/// The process's status for a run's outcome. A reader that went away
/// (`| head`) is not an error worth a word; any other error is one line
/// on stderr and exit 1.
pub fn of(outcome: Result<ExitCode>) -> ExitCode {
    match outcome {
        Ok(code) => code,
        Err(error) if is_broken_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => {
            // virsh killed by a signal's handler fails the run: the handler
            // ends it, with the signal's status and without this word.
            crate::virsh::groups::wait_if_dying();
            // The chain quotes domain names, paths and virsh's own words:
            // nothing in it may act on the terminal.
            let message = sanitize(&format!("{error:#}"));
            eprintln!("dismount_iso_qemu: error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Whether the error is a closed pipe on the tool's own output (`| head`):
/// the console's failure (`prompt::ConsoleError`) of kind `BrokenPipe`,
/// not any broken pipe in the chain (one to virsh's stdin is a failure).
pub fn is_broken_pipe(error: &anyhow::Error) -> bool {
    ConsoleError::closed_pipe(error)
}

/// The status of a command over `hosts` hosts of which `failed` failed:
/// none 0, all 1, some 3.
pub fn of_hosts(failed: usize, hosts: usize) -> ExitCode {
    match failed {
        0 => ExitCode::SUCCESS,
        n if n == hosts => ExitCode::FAILURE,
        _ => ExitCode::from(EXIT_PARTIAL),
    }
}

/// 128 + the signal, as a shell reports a command a signal ended.
pub fn signal(signal: i32) -> ExitCode {
    ExitCode::from(u8::try_from(128 + signal).unwrap_or(u8::MAX))
}

/// A usage error found after parsing: clap's one line, exit 2.
pub fn usage_error(mut command: clap::Command, message: &str) -> ! {
    command
        .error(clap::error::ErrorKind::ArgumentConflict, message)
        .exit()
}
