//! `status` and `--version -v`: what every host says, as a table or JSON.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Result;
use regex::Regex;

use crate::cli::options::{Context, FleetShape, Options};
use crate::cli::progress::{each_with_progress, scan_with_progress};
use crate::cli::render;
use crate::cli::report::{host_error, report_failed_hosts, split_scans, with_uris};
use crate::cli::values::parse_regex;
use crate::fleet::{Fleet, HostScan};
use crate::probe::{DomainStatus, Figures};
use crate::utils::sanitize;

const EXAMPLES: &str = "\
Examples:
  dismount_iso_qemu status
  dismount_iso_qemu status --match '^web-' --disks
  dismount_iso_qemu --hosts /etc/dismount_iso_qemu/hosts status --json
  dismount_iso_qemu -c qemu+ssh://root@kvm1/system status";

/// Print the VM table (name, state, OS, memory, CPU time) and exit
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct StatusArgs {
    /// One JSON array, an object per domain, sorted by name
    #[arg(long)]
    json: bool,
    /// Only domains whose name matches this regular expression
    #[arg(long = "match", value_name = "REGEX", value_parser = parse_regex)]
    pattern: Option<Regex>,
    /// Ask each running guest's agent for its filesystems: a Disk (used/total) column, `filesystems` in the JSON
    #[arg(long)]
    disks: bool,
}

impl StatusArgs {
    /// `--disks` asks the scan for the guests' filesystems.
    pub fn shape(&self, options: &Options) -> FleetShape {
        FleetShape {
            filesystems: self.disks,
            ..options.shape()
        }
    }

    pub fn run(self, context: &Context) -> Result<ExitCode> {
        context.to_stdout(|out| {
            status(
                &context.fleet,
                self.json,
                self.pattern.as_ref(),
                context.colour,
                out,
            )
        })
    }
}

/// `--version`: the tool's; with `-v` also what `virsh version --daemon`
/// says of each host (virsh's library, libvirt's daemon, the hypervisor).
pub fn versions(fleet: &Fleet, verbose: bool, out: &mut impl Write) -> Result<ExitCode> {
    writeln!(out, "dismount_iso_qemu {}", env!("CARGO_PKG_VERSION"))?;
    if !verbose {
        return Ok(ExitCode::SUCCESS);
    }
    let scans = fleet.each(|host| Ok(host.virsh().run(&["version", "--daemon"])?.stdout));
    let mut failed = Vec::new();
    for scan in &scans {
        match &scan.result {
            Ok(text) => {
                writeln!(out, "{}:", sanitize(&scan.uri))?;
                for line in text.lines().filter(|line| !line.trim().is_empty()) {
                    writeln!(out, "  {}", sanitize(line.trim()))?;
                }
            }
            Err(error) => failed.push(host_error(&scan.uri, error)),
        }
    }
    out.flush()?;
    report_failed_hosts(&failed, scans.len())
}

/// `status`: the table, or JSON rows each with its host's `uri`; with
/// `--match`, only the domains whose name matches.
fn status(
    fleet: &Fleet,
    json: bool,
    pattern: Option<&Regex>,
    colour: bool,
    out: &mut impl Write,
) -> Result<ExitCode> {
    let mut scans = scan_fleet(fleet, Figures::Cached, !json)?;
    if let Some(pattern) = pattern {
        for scan in &mut scans {
            if let Ok(rows) = &mut scan.result {
                rows.retain(|row| pattern.is_match(&row.name));
            }
        }
    }
    if !json {
        return write_scans(out, scans, colour);
    }
    let (hosts, failed) = split_scans(&scans);
    crate::utils::write_json(out, &with_uris(&hosts))?;
    report_failed_hosts(&failed, scans.len())
}

/// A scan for people: with one host as it always was (a spinner on a
/// terminal, its failure the run's error); with several, side by side, a
/// line on a terminal counting the hosts done. `progress`: either may be
/// drawn (not with `--json`).
pub fn scan_fleet(
    fleet: &Fleet,
    figures: Figures,
    progress: bool,
) -> Result<Vec<HostScan<Vec<DomainStatus>>>> {
    if let [host] = &fleet.hosts[..] {
        let rows = scan_with_progress(&host.probes, figures, progress)?;
        return Ok(vec![HostScan {
            uri: host.uri(),
            result: Ok(rows),
        }]);
    }
    Ok(each_with_progress(fleet, progress, |host| {
        host.probes.scan_with(figures, &|_, _| {})
    }))
}

/// The scans as one table (a Host column when there are several hosts),
/// and one error line on stderr for each host that failed.
pub fn write_scans(
    out: &mut impl Write,
    scans: Vec<HostScan<Vec<DomainStatus>>>,
    colour: bool,
) -> Result<ExitCode> {
    let (table, failed) = render::fleet_table(&scans, colour);
    out.write_all(table.as_bytes())?;
    out.flush()?;
    report_failed_hosts(&failed, scans.len())
}
