//! The command-line layer: parses the arguments, builds the fleet the
//! command asks for, and dispatches to the command (`commands/`, one file
//! each) or, without one, to the interactive menu.

mod args;
mod change;
mod commands;
mod complete;
mod exit;
mod menu;
mod options;
mod progress;
mod prompt;
mod render;
mod report;
mod steps;
mod values;

use std::process::ExitCode;

use anyhow::Result;
use clap::{CommandFactory, Parser};

use args::Args;
use options::Context;

/// The tool: the dynamic completion when the shell asks for it, else the
/// command line parsed and run; the exit status as `exit` decides it.
pub fn main() -> ExitCode {
    // `COMPLETE=bash dismount_iso_qemu`: the shell asks for candidates.
    if complete::complete_from_env() {
        return ExitCode::SUCCESS;
    }
    exit::of(run(Args::parse()))
}

fn run(args: Args) -> Result<ExitCode> {
    let options = args.options()?;
    let shape = match &args.command {
        Some(command) => command.shape(&options)?,
        None => menu::shape(&options),
    };
    let fleet = options.fleet(shape);
    let colour = args.colour();
    // comfy-table colours through crossterm, which reads NO_COLOR by
    // itself: the decision above is the one that counts.
    crossterm::style::force_color_output(colour);
    let context = Context {
        fleet,
        options,
        colour,
        cli: Args::command,
    };
    if args.version {
        return context
            .to_stdout(|out| commands::status::versions(&context.fleet, args.verbose, out));
    }
    match args.command {
        Some(command) => command.run(&context),
        None => menu::run(&context),
    }
}
