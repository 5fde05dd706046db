//! Renders scan results as a table for people.

use comfy_table::{Cell, CellAlignment, Color, Table, presets::UTF8_FULL_CONDENSED};

use crate::fleet::HostScan;
use crate::probe::DomainStatus;
use crate::utils::{format_cpu_time, format_kib, sanitize};
use crate::virsh::DomainState;

const UNKNOWN: &str = "-";

/// The hosts' VM tables as one, each host's failure as a line of its own
/// (sanitized) for the caller to show.
pub fn fleet_table(scans: &[HostScan<Vec<DomainStatus>>], colour: bool) -> (String, Vec<String>) {
    let (hosts, failed) = super::split_scans(scans);
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
pub fn state_cell(state: DomainState) -> Cell {
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
