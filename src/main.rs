//! The binary: parse the command line, run, map errors to an exit code.

use std::process::ExitCode;

use clap::Parser;
use dismount_iso_qemu::{Args, is_broken_pipe, run, sanitize};

fn main() -> ExitCode {
    // Kills every virsh the run started, on any way out: return, error,
    // panic, or a signal.
    let _reaper = dismount_iso_qemu::virsh::groups::reap_on_exit();
    // `COMPLETE=bash dismount_iso_qemu`: the shell asks for candidates.
    if dismount_iso_qemu::complete_from_env() {
        return ExitCode::SUCCESS;
    }
    let args = Args::parse();
    match run(args) {
        Ok(code) => code,
        // A reader that went away (`| head`) is not an error worth a word.
        Err(error) if is_broken_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => {
            // virsh killed by a signal's handler fails the run: the handler
            // ends it, with the signal's status and without this word.
            dismount_iso_qemu::virsh::groups::wait_if_dying();
            // The chain quotes domain names, paths and virsh's own words:
            // nothing in it may act on the terminal.
            let message = sanitize(&format!("{error:#}"));
            eprintln!("dismount_iso_qemu: error: {message}");
            ExitCode::FAILURE
        }
    }
}
