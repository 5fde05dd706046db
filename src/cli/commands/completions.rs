//! `completions`: the static completion script for a shell, from the clap
//! tree (the dynamic one, `COMPLETE=SHELL`, is `cli/complete.rs`).

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context as _, Result};

use crate::cli::options::Context;

const EXAMPLES: &str = "\
Examples:
  dismount_iso_qemu completions bash > ~/.local/share/bash-completion/completions/dismount_iso_qemu
  dismount_iso_qemu completions zsh > ~/.zfunc/_dismount_iso_qemu
  dismount_iso_qemu completions fish > ~/.config/fish/completions/dismount_iso_qemu.fish";

/// Print the shell completion script for SHELL (bash, zsh, fish, elvish, powershell)
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct CompletionsArgs {
    #[arg(value_enum)]
    shell: clap_complete::aot::Shell,
}

impl CompletionsArgs {
    pub fn run(self, context: &Context) -> Result<ExitCode> {
        let mut command = (context.cli)();
        // `generate` panics when a write fails: it writes into memory,
        // and the one write that can fail is ours.
        let mut script = Vec::new();
        clap_complete::aot::generate(self.shell, &mut command, "dismount_iso_qemu", &mut script);
        context.to_stdout(|out| {
            out.write_all(&script)
                .context("cannot write the completion script")?;
            Ok(ExitCode::SUCCESS)
        })
    }
}
