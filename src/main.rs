//! The binary: parse the command line, run, map errors to an exit code.

use std::process::ExitCode;

use clap::Parser;
use dismount_iso_qemu::cli::{self, Args};

fn main() -> ExitCode {
    let args = Args::parse();
    match cli::run(args) {
        Ok(code) => code,
        // A reader that went away (`| head`) is not an error worth a word.
        Err(error) if cli::is_broken_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("dismount_iso_qemu: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
