//! The subcommands, one file each (as jj's `cli/src/commands/`): each
//! file owns its clap `Args`, the plain request it becomes, and the
//! function that runs it. This module only lists and dispatches them.

pub mod boot_iso;
mod completions;
mod delete_iso;
pub mod eject;
pub mod isos;
pub mod library;
mod manpage;
pub mod migrate_check;
pub mod mount;
mod serve;
pub mod status;
mod upload;

use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;

use super::options::{Context, FleetShape, Options};

/// The subcommands, in the order `--help` lists them; each one's about
/// line, options and examples are on its `Args` struct.
#[derive(Debug, Subcommand)]
pub enum Command {
    Status(status::StatusArgs),
    Isos(isos::IsosArgs),
    Mount(mount::MountArgs),
    Eject(eject::EjectArgs),
    BootIso(boot_iso::BootIsoArgs),
    Library(library::LibraryArgs),
    Upload(upload::UploadArgs),
    DeleteIso(delete_iso::DeleteIsoArgs),
    MigrateCheck(migrate_check::MigrateCheckArgs),
    Completions(completions::CompletionsArgs),
    Manpage(manpage::ManpageArgs),
    Serve(serve::ServeArgs),
}

impl Command {
    /// The fleet the command runs on: every host given, unless it asks
    /// for other hosts, sessions, descriptors or figures. Refused here,
    /// before any host is asked, where the hosts do not fit it.
    pub fn shape(&self, options: &Options) -> Result<FleetShape> {
        match self {
            Command::Status(args) => Ok(args.shape(options)),
            Command::Upload(args) => Ok(args.shape(options)),
            Command::MigrateCheck(args) => args.shape(options),
            Command::Serve(args) => Ok(args.shape(options)),
            _ => Ok(options.shape()),
        }
    }

    pub fn run(self, context: &Context) -> Result<ExitCode> {
        match self {
            Command::Status(args) => args.run(context),
            Command::Isos(args) => args.run(context),
            Command::Mount(args) => args.run(context),
            Command::Eject(args) => args.run(context),
            Command::BootIso(args) => args.run(context),
            Command::Library(args) => args.run(context),
            Command::Upload(args) => args.run(context),
            Command::DeleteIso(args) => args.run(context),
            Command::MigrateCheck(args) => args.run(context),
            Command::Completions(args) => args.run(context),
            Command::Manpage(args) => args.run(context),
            Command::Serve(args) => args.run(context),
        }
    }
}
