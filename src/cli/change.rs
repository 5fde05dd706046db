//! The switches of the commands that change a VM or a host (`mount`,
//! `eject`, `migrate-check --fix`, `boot-iso`, `delete-iso`), and the
//! plain options they become.

/// `--yes`, the one switch every change takes with the same meaning.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct Confirm {
    /// Do it without asking
    #[arg(short, long)]
    pub yes: bool,
}

/// The switches every media change takes.
#[derive(Debug, clap::Args)]
pub struct ChangeArgs {
    #[command(flatten)]
    pub confirm: Confirm,
    /// Print the exact virsh commands and change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Pass --force to change-media: eject even when the guest has locked the tray
    #[arg(long)]
    pub force: bool,
}

/// How a change is carried out, free of clap types.
#[derive(Debug, Clone, Copy, Default)]
pub struct ChangeOptions {
    pub yes: bool,
    pub dry_run: bool,
    pub force: bool,
}

impl From<&ChangeArgs> for ChangeOptions {
    fn from(args: &ChangeArgs) -> Self {
        ChangeOptions {
            yes: args.confirm.yes,
            dry_run: args.dry_run,
            force: args.force,
        }
    }
}
