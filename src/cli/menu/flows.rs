//! The menu's media entries: pick a host, a VM, a drive and an ISO by
//! number, then the same plan, confirmation and report as the subcommands.

use std::io::{BufRead, Write};
use std::process::ExitCode;

use anyhow::Result;

use crate::cli::change::{ChangeOptions, Confirm};
use crate::cli::commands::boot_iso::{BootIsoArgs, boot_on};
use crate::cli::commands::eject::nothing_to_eject;
use crate::cli::commands::isos::{IsoQuery, isos};
use crate::cli::commands::mount::{mount_into, pick_drive};
use crate::cli::prompt::{Answer, Choice, Console, ConsoleError, Prompt};
use crate::cli::steps::execute;
use crate::fleet::{Fleet, Host};
use crate::media::{DomainMedia, MediaManager, plan_ejects};
use crate::utils::sanitize;

/// Menu 2: the drive table of every host.
pub fn scan<R: BufRead, W: Write>(
    console: &mut Console<R, W>,
    fleet: &Fleet,
    colour: bool,
) -> Result<()> {
    let mut out = Vec::new();
    let code = isos(fleet, &IsoQuery::default(), false, colour, &mut out);
    console.out().write_all(&out)?;
    code.map(|_| ())
}

/// Menu 6: the ISO library of every host.
pub fn library<R: BufRead, W: Write>(
    console: &mut Console<R, W>,
    fleet: &Fleet,
    colour: bool,
) -> Result<()> {
    let mut out = Vec::new();
    let code = crate::cli::commands::library::library(fleet, false, false, colour, &mut out);
    console.out().write_all(&out)?;
    code.map(|_| ())
}

/// Menu 1: host if several, VM by number, drive if several, ISO from the
/// pools or typed.
pub fn mount<R: BufRead, W: Write>(console: &mut Console<R, W>, fleet: &Fleet) -> Result<()> {
    on_one_host(console, fleet, mount_flow)
}

/// A VM by number, each shown with its state; `None` to go back.
fn choose_domain<R: BufRead, W: Write>(
    prompt: &mut Prompt<R, W>,
    domains: &[DomainMedia],
) -> Result<Option<usize>> {
    let labels: Vec<String> = domains
        .iter()
        .map(|d| format!("{} ({})", sanitize(&d.name), d.state))
        .collect();
    prompt.choose("VM number (q to go back): ", &labels)
}

fn mount_flow<R: BufRead, W: Write>(
    prompt: &mut Prompt<R, W>,
    media: &MediaManager,
    domains: Vec<DomainMedia>,
) -> Result<ExitCode> {
    let Some(index) = choose_domain(prompt, &domains)? else {
        return Ok(ExitCode::SUCCESS);
    };
    let domain = &domains[index];
    let choice = domain.drive_for_iso(None, false)?;
    let Some(drive) = pick_drive(prompt, domain, choice)? else {
        return Ok(ExitCode::SUCCESS);
    };
    let Some(iso) = choose_iso(prompt, media)? else {
        return Ok(ExitCode::SUCCESS);
    };
    mount_into(media, prompt, domain, drive, &iso, ChangeOptions::default())
}

/// Menu 8: host if several, VM by number (those with a config), ISO from
/// the pools or typed; a running VM is shut down (ACPI) first, which the
/// plan says before the menu asks.
pub fn boot_iso<R: BufRead, W: Write>(console: &mut Console<R, W>, fleet: &Fleet) -> Result<()> {
    let mut chosen = None;
    let outcome = on_one_host(console, fleet, |prompt, media, mut domains| {
        domains.retain(|domain| domain.config.is_some());
        let Some(index) = choose_domain(prompt, &domains)? else {
            return Ok(ExitCode::SUCCESS);
        };
        let Some(iso) = choose_iso(prompt, media)? else {
            return Ok(ExitCode::SUCCESS);
        };
        let request = BootIsoArgs {
            domain: domains[index].name.clone(),
            iso,
            target: None,
            restart: true,
            wait: BootIsoArgs::DEFAULT_WAIT,
            confirm: Confirm { yes: false },
            dry_run: false,
            without_boot_record: false,
        };
        chosen = Some(request.domain.clone());
        boot_on(media, prompt, &request)
    });
    // A running VM shut down and started from the ISO may read as running
    // at every rescan: its cached OS (and `booted_from_iso` with it) would
    // stand for `--os-ttl`. The next scan reads it whole.
    if let Some(name) = chosen {
        for host in &fleet.hosts {
            host.probes.forget(&name);
        }
    }
    outcome
}

/// An ISO by number from the pools, or typed, resolved as `mount` takes
/// it; `None` when the user backs out.
fn choose_iso<R: BufRead, W: Write>(
    prompt: &mut Prompt<R, W>,
    media: &MediaManager,
) -> Result<Option<String>> {
    // No storage driver or no pools: a typed path still works.
    let pool_isos = match media.pool_isos() {
        Ok(isos) if isos.is_empty() => {
            writeln!(
                prompt.out(),
                "No ISO volumes in the storage pools: type a path."
            )?;
            isos
        }
        Ok(isos) => isos,
        Err(error) => {
            writeln!(
                prompt.out(),
                "No storage pool ISOs ({error:#}): type a path."
            )?;
            Vec::new()
        }
    };
    let labels: Vec<String> = pool_isos.iter().map(|iso| sanitize(iso)).collect();
    let iso = prompt.choose_with("ISO number or path (q to go back): ", &labels, |choice| {
        let typed = match choice {
            Choice::Item(index) => pool_isos[index].clone(),
            Choice::Other(text) if text.is_empty() => {
                return Err("Enter an ISO number or a path, or q to go back.".to_owned());
            }
            Choice::Other(text) => text,
        };
        media
            .resolve_iso(&typed)
            .map_err(|error| format!("{error:#}"))
    })?;
    Ok(iso)
}

/// Menu 3: host if several, then one drive holding media, or all of them.
pub fn eject<R: BufRead, W: Write>(console: &mut Console<R, W>, fleet: &Fleet) -> Result<()> {
    on_one_host(console, fleet, eject_flow)
}

fn eject_flow<R: BufRead, W: Write>(
    prompt: &mut Prompt<R, W>,
    media: &MediaManager,
    domains: Vec<DomainMedia>,
) -> Result<ExitCode> {
    let steps = plan_ejects(&domains, None, None, false)?;
    if steps.is_empty() {
        nothing_to_eject(prompt.out())?;
        return Ok(ExitCode::SUCCESS);
    }
    let labels: Vec<String> = steps.iter().map(|step| step.describe()).collect();
    let hint = format!("Enter a number from 1 to {}, a, or q.", steps.len());
    let chosen = prompt.choose_with(
        "Drive number, or a for all (q to go back): ",
        &labels,
        |choice| match choice {
            Choice::Item(index) => Ok(vec![steps[index].clone()]),
            Choice::Other(text) if text.eq_ignore_ascii_case("a") => Ok(steps.clone()),
            Choice::Other(_) => Err(hint.clone()),
        },
    )?;
    let Some(chosen) = chosen else {
        return Ok(ExitCode::SUCCESS);
    };
    execute(
        media,
        prompt,
        &chosen,
        ChangeOptions::default(),
        true,
        "ejected",
    )
}

/// Menu 7: a destination asked for, then every VM of the host (asked
/// for when there are several) checked against it, as `migrate-check
/// --all --to URI` shows it.
pub fn migration<R: BufRead, W: Write>(console: &mut Console<R, W>, fleet: &Fleet) -> Result<()> {
    let Some(host) = pick_host(console, fleet)? else {
        return Ok(());
    };
    let uri =
        match console.ask("Destination URI, e.g. qemu+ssh://root@kvm2/system (q to go back): ")? {
            Answer::Text(uri) if !uri.trim().is_empty() => uri.trim().to_owned(),
            _ => return Ok(()),
        };
    let _working = fleet.working(host);
    crate::cli::commands::migrate_check::check_host_against(host, &uri, console.out())
}

/// The host a menu entry works on: the only one, or the one picked;
/// `None` when the user backs out.
pub fn pick_host<'f, R: BufRead, W: Write>(
    console: &mut Console<R, W>,
    fleet: &'f Fleet,
) -> Result<Option<&'f Host>> {
    Ok(match &fleet.hosts[..] {
        [host] => Some(host),
        hosts => {
            let labels: Vec<String> = hosts.iter().map(|h| sanitize(&h.uri())).collect();
            Prompt::menu(console)
                .choose("Host number (q to go back): ", &labels)?
                .map(|index| &hosts[index])
        }
    })
}

/// Runs a menu entry on a fresh read of one host (asked for when there
/// are several): every change confirmed first, and an error shown as a
/// line while the menu goes on; the console's own failure ends it.
fn on_one_host<R: BufRead, W: Write>(
    console: &mut Console<R, W>,
    fleet: &Fleet,
    flow: impl FnOnce(&mut Prompt<R, W>, &MediaManager, Vec<DomainMedia>) -> Result<ExitCode>,
) -> Result<()> {
    let Some(host) = pick_host(console, fleet)? else {
        return Ok(());
    };
    // Its session stays its own across the prompts, whatever the
    // background refresh of the other hosts needs.
    let _working = fleet.working(host);
    let media = MediaManager::new(host.virsh().clone());
    let outcome = media
        .load_all()
        .and_then(|domains| flow(&mut Prompt::menu(console), &media, domains));
    match outcome {
        Err(error) if ConsoleError::caused(&error) => Err(error),
        Err(error) => Ok(writeln!(console.out(), "error: {error:#}")?),
        Ok(_) => Ok(()),
    }
}
