//! Renders scan results and drives as tables for people.

use comfy_table::{Cell, CellAlignment, Color, Table, presets::UTF8_FULL_CONDENSED};

use crate::fleet::HostScan;
use crate::media::{DriveRow, holders};
use crate::probe::DomainStatus;
use crate::utils::{format_cpu_time, format_kib, sanitize};
use crate::virsh::DomainState;

const UNKNOWN: &str = "-";

/// The hosts' VM tables as one, each host's failure as a line of its own
/// (sanitized) for the caller to show.
pub fn fleet_table(scans: &[HostScan<Vec<DomainStatus>>], colour: bool) -> (String, Vec<String>) {
    let (hosts, failed) = super::report::split_scans(scans);
    let table = if hosts.is_empty() {
        String::new()
    } else {
        status_table(&hosts, scans.len() > 1, colour)
    };
    (table, failed)
}

/// The VM table: VM, State, OS, Memory (used/max), CPU time, CPU %, and
/// first a Host column when `with_host`. Names and OS strings are
/// sanitized: both can come from a guest or a remote host. With `colour`,
/// the state is coloured and an OS the agent could not give is yellow.
pub fn status_table(hosts: &[(&str, &[DomainStatus])], with_host: bool, colour: bool) -> String {
    let mut table = new_table(colour);
    let header = [
        "VM",
        "State",
        "OS",
        "Memory (used/max)",
        "CPU time",
        "CPU %",
    ];
    table.set_header(with_host.then_some("Host").into_iter().chain(header));
    let rows = hosts
        .iter()
        .flat_map(|(uri, rows)| rows.iter().map(move |row| (*uri, row)));
    let mut count = 0;
    for (uri, row) in rows {
        count += 1;
        table.add_row(
            with_host
                .then(|| Cell::new(sanitize(uri)))
                .into_iter()
                .chain([
                    Cell::new(sanitize(&row.name)),
                    state_cell(row.state),
                    os_cell(row),
                    Cell::new(memory(row)).set_alignment(CellAlignment::Right),
                    Cell::new(
                        row.cpu_time_ns
                            .map_or_else(|| UNKNOWN.to_owned(), format_cpu_time),
                    )
                    .set_alignment(CellAlignment::Right),
                    // Needs two samples: blank on the first scan, filled on rescans.
                    Cell::new(
                        row.cpu_percent
                            .map_or_else(|| UNKNOWN.to_owned(), |p| format!("{p:.1}")),
                    )
                    .set_alignment(CellAlignment::Right),
                ]),
        );
    }
    format!("{table}\n{count} domain(s)\n")
}

/// The drive table with a count and, below it, the ISOs held by several
/// VMs of one host; a Host column first when `with_host`. Every name and
/// path is sanitized: guests and remote hosts set them. With `colour`,
/// states are coloured, a missing ISO is red and live≠config yellow.
pub fn drive_table(hosts: &[(&str, &[DriveRow])], with_host: bool, colour: bool) -> String {
    let mut table = new_table(colour);
    let header = [
        "VM",
        "State",
        "Drive",
        "Bus",
        "Media",
        "Live≠Config",
        "Missing",
    ];
    table.set_header(with_host.then_some("Host").into_iter().chain(header));
    let mut count = 0;
    let mut shared = Vec::new();
    for (uri, rows) in hosts {
        for row in *rows {
            count += 1;
            let differ = row.live_config_differ.then(|| {
                let config = row.config_source.as_deref();
                format!(
                    "config: {}",
                    config.map_or_else(|| "empty".to_owned(), sanitize)
                )
            });
            table.add_row(
                with_host
                    .then(|| Cell::new(sanitize(uri)))
                    .into_iter()
                    .chain([
                        Cell::new(sanitize(&row.domain)),
                        state_cell(row.state),
                        Cell::new(sanitize(&row.target)),
                        Cell::new(row.bus.as_deref().map_or_else(String::new, sanitize)),
                        Cell::new(
                            row.source
                                .as_deref()
                                .map_or_else(|| "(empty)".to_owned(), sanitize),
                        ),
                        differ.map_or_else(|| Cell::new(""), |d| Cell::new(d).fg(Color::Yellow)),
                        match row.missing {
                            Some(true) => Cell::new("MISSING").fg(Color::Red),
                            _ => Cell::new(""),
                        },
                    ]),
            );
        }
        // Paths are a host's own: the same path on two hosts is two files.
        let host = if with_host {
            format!("{}: ", sanitize(uri))
        } else {
            String::new()
        };
        for (iso, holders) in holders(rows) {
            if holders.len() > 1 {
                let names: Vec<String> = holders.into_iter().map(sanitize).collect();
                shared.push(format!("  {host}{}: {}\n", sanitize(iso), names.join(", ")));
            }
        }
    }
    let mut text = format!("{table}\n{count} drive(s)\n");
    if !shared.is_empty() {
        text.push_str("ISOs in several VMs:\n");
        text.extend(shared);
    }
    text
}

/// A table in the house style; styled only when `colour` says so, whatever
/// comfy-table would guess from the terminal.
pub fn new_table(colour: bool) -> Table {
    let mut table = Table::new();
    table.load_style(UTF8_FULL_CONDENSED);
    if colour {
        table.enforce_styling();
    } else {
        table.force_no_tty();
    }
    table
}

/// The OS, yellow where the guest agent of a running guest could not give
/// it (no channel, not connected, timed out, refused).
fn os_cell(row: &DomainStatus) -> Cell {
    let cell = Cell::new(sanitize(&row.os));
    if row.os_source.is_none() && row.state == DomainState::Running && row.os_error.is_some() {
        cell.fg(Color::Yellow)
    } else {
        cell
    }
}

/// A domain state, coloured: running green, paused yellow, crashed red,
/// shut off grey.
fn state_cell(state: DomainState) -> Cell {
    let cell = Cell::new(state);
    match state {
        DomainState::Running => cell.fg(Color::Green),
        DomainState::Paused | DomainState::PmSuspended | DomainState::InShutdown => {
            cell.fg(Color::Yellow)
        }
        DomainState::Crashed => cell.fg(Color::Red),
        DomainState::ShutOff => cell.fg(Color::DarkGrey),
        _ => cell,
    }
}

fn memory(row: &DomainStatus) -> String {
    let show = |kib: Option<u64>| kib.map_or_else(|| UNKNOWN.to_owned(), format_kib);
    format!(
        "{} / {}",
        show(row.memory_used_kib),
        show(row.memory_max_kib)
    )
}
