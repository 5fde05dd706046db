//! `manpage`: the man pages (roff), from the clap tree with each
//! command's examples.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result};

use crate::cli::options::Context;

const EXAMPLES: &str = "\
Examples:
  dismount_iso_qemu manpage | man -l -
  dismount_iso_qemu manpage --dir /usr/local/share/man/man1";

/// Print the man page (roff); with --dir, write one page per command into DIR
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct ManpageArgs {
    /// Write dismount_iso_qemu.1 and one dismount_iso_qemu-COMMAND.1 per command here
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

impl ManpageArgs {
    pub fn run(self, context: &Context) -> Result<ExitCode> {
        let command = (context.cli)();
        let Some(dir) = self.dir else {
            return context.to_stdout(|out| {
                clap_mangen::Man::new(command)
                    .render(out)
                    .context("cannot write the man page")?;
                Ok(ExitCode::SUCCESS)
            });
        };
        clap_mangen::generate_to(command, &dir)
            .with_context(|| format!("cannot write man pages into {}", dir.display()))?;
        Ok(ExitCode::SUCCESS)
    }
}
