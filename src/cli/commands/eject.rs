//! `eject`: the media of a VM's drives, of every VM, or of every drive
//! holding an ISO, on every host given.

use std::io::{BufRead, Write};
use std::process::ExitCode;

use anyhow::Result;
use regex::Regex;

use crate::cli::change::{ChangeArgs, ChangeOptions};
use crate::cli::options::Context;
use crate::cli::prompt::{self, Prompt};
use crate::cli::steps::{execute, host_of};
use crate::cli::values::parse_regex;
use crate::fleet::Fleet;
use crate::media::{MediaManager, Step, plan_ejects};
use crate::utils::sanitize;
use crate::virsh::Virsh;

const EXAMPLES: &str = "\
Examples:
  dismount_iso_qemu eject web-1
  dismount_iso_qemu eject web-1 --target sda --yes
  dismount_iso_qemu eject --iso debian.iso --dry-run
  dismount_iso_qemu eject --match '^ci-' --force
  dismount_iso_qemu --hosts hosts.txt eject --all --dry-run";

/// Eject the media of a VM's drives, of every VM, or of every drive holding an ISO
#[derive(Debug, clap::Args)]
#[command(
    group = clap::ArgGroup::new("which").required(true).args(["domain", "all", "iso", "pattern"]),
    after_help = EXAMPLES
)]
pub struct EjectArgs {
    /// The VM (all its drives holding media, or --target's)
    #[arg(allow_hyphen_values = true)]
    domain: Option<String>,
    /// Only this drive of the VM
    #[arg(long, value_name = "DEV", requires = "domain", conflicts_with_all = ["all", "iso"])]
    target: Option<String>,
    /// Every drive of every VM on the connection
    #[arg(long)]
    all: bool,
    /// Every drive holding this ISO
    #[arg(long, value_name = "PATH", conflicts_with = "all")]
    iso: Option<String>,
    /// Every drive of the domains whose name matches this regular expression
    #[arg(long = "match", value_name = "REGEX", value_parser = parse_regex)]
    pattern: Option<Regex>,
    #[command(flatten)]
    change: ChangeArgs,
}

impl EjectArgs {
    pub fn run(self, context: &Context) -> Result<ExitCode> {
        let change = (&self.change).into();
        let selection = self.selection();
        context.to_stdout(|out| {
            prompt::with_stdin(out, |prompt| {
                eject(&context.fleet, prompt, &selection, change)
            })
        })
    }

    /// What to eject: of the arguments, clap lets exactly one through.
    fn selection(self) -> EjectSelection {
        if let Some(pattern) = self.pattern {
            return EjectSelection::Matching(pattern);
        }
        match (self.domain, self.iso) {
            _ if self.all => EjectSelection::All,
            (_, Some(iso)) => EjectSelection::Iso(iso),
            (name, None) => EjectSelection::Domain {
                name: name.unwrap_or_default(),
                target: self.target,
            },
        }
    }
}

/// What `eject` acts on.
#[derive(Debug, Clone)]
pub enum EjectSelection {
    Domain {
        name: String,
        target: Option<String>,
    },
    All,
    Iso(String),
    /// Every drive of the domains whose name matches.
    Matching(Regex),
}

/// `eject`: every drive selected that holds media, listed before anything
/// changes.
fn eject<R: BufRead, W: Write>(
    fleet: &Fleet,
    prompt: &mut Prompt<R, W>,
    selection: &EjectSelection,
    options: ChangeOptions,
) -> Result<ExitCode> {
    if let EjectSelection::Domain { name, .. } = selection {
        let Some(host) = host_of(fleet, prompt, name)? else {
            return Ok(ExitCode::SUCCESS);
        };
        return eject_on(host.virsh(), prompt, selection, options);
    }
    if fleet.is_single() {
        return eject_on(fleet.hosts[0].virsh(), prompt, selection, options);
    }
    // Every host's drives read side by side (within the budget), then
    // each host's plan shown, confirmed and run in turn; a host that
    // fails is a line, and the others go on. Each change re-reads its
    // drive first, so the time a host waits for its turn changes nothing.
    let plans = fleet.each(|host| plan_on(host.virsh(), selection, options.force));
    let mut failed = Vec::new();
    let mut code = ExitCode::SUCCESS;
    for (host, plan) in fleet.hosts.iter().zip(plans) {
        writeln!(prompt.out(), "{}:", sanitize(&host.uri()))?;
        match plan
            .result
            .and_then(|(media, steps)| run_ejects(&media, prompt, &steps, options))
        {
            Ok(ExitCode::SUCCESS) => {}
            Ok(other) => code = other,
            Err(error) => {
                let line = crate::cli::report::host_error(&host.uri(), &error);
                writeln!(prompt.out(), "error: {line}")?;
                failed.push(line);
            }
        }
    }
    if failed.is_empty() {
        return Ok(code);
    }
    crate::cli::report::report_failed_hosts(&failed, fleet.hosts.len())
}

/// `eject` on one host.
fn eject_on<R: BufRead, W: Write>(
    virsh: &Virsh,
    prompt: &mut Prompt<R, W>,
    selection: &EjectSelection,
    options: ChangeOptions,
) -> Result<ExitCode> {
    let (media, steps) = plan_on(virsh, selection, options.force)?;
    run_ejects(&media, prompt, &steps, options)
}

/// The ejects `selection` asks for on one host, from its drives as read
/// now.
fn plan_on(
    virsh: &Virsh,
    selection: &EjectSelection,
    force: bool,
) -> Result<(MediaManager, Vec<Step>)> {
    let media = MediaManager::new(virsh.clone());
    let (domains, only_target, iso) = match selection {
        EjectSelection::Domain { name, target } => {
            (vec![media.load_one(name)?], target.as_deref(), None)
        }
        EjectSelection::All => (media.load_all()?, None, None),
        EjectSelection::Iso(iso) => (media.load_all()?, None, Some(media.iso_name(iso)?)),
        EjectSelection::Matching(pattern) => {
            let mut domains = media.load_all()?;
            domains.retain(|domain| pattern.is_match(&domain.name));
            (domains, None, None)
        }
    };
    let steps = plan_ejects(&domains, only_target, iso.as_ref(), force)?;
    Ok((media, steps))
}

/// One host's ejects shown, confirmed and run; "nothing to eject" where
/// there are none.
fn run_ejects<R: BufRead, W: Write>(
    media: &MediaManager,
    prompt: &mut Prompt<R, W>,
    steps: &[Step],
    options: ChangeOptions,
) -> Result<ExitCode> {
    if steps.is_empty() {
        nothing_to_eject(prompt.out())?;
        return Ok(ExitCode::SUCCESS);
    }
    execute(media, prompt, steps, options, true, "ejected")
}

/// What an eject with no drive to change says.
pub fn nothing_to_eject(out: &mut impl Write) -> Result<()> {
    writeln!(out, "Nothing to eject: no selected drive holds media.")?;
    Ok(())
}
