//! Renders scan results as a table for people.

use comfy_table::{Cell, CellAlignment, Table, presets::UTF8_FULL_CONDENSED};

use crate::fleet::HostScan;
use crate::probe::DomainStatus;
use crate::utils::{format_cpu_time, format_kib, sanitize};

const UNKNOWN: &str = "-";

/// The hosts' VM tables as one, each host's failure as a line of its own
/// (sanitized) for the caller to show.
pub fn fleet_table(scans: &[HostScan<Vec<DomainStatus>>]) -> (String, Vec<String>) {
    let mut hosts = Vec::new();
    let mut failed = Vec::new();
    for scan in scans {
        match &scan.result {
            Ok(rows) => hosts.push((scan.uri.as_str(), rows.as_slice())),
            Err(error) => failed.push(super::host_error(&scan.uri, error)),
        }
    }
    let table = if hosts.is_empty() {
        String::new()
    } else {
        status_table(&hosts, scans.len() > 1)
    };
    (table, failed)
}

/// The VM table: VM, State, OS, Memory (used/max), CPU time, CPU %, and
/// first a Host column when `with_host`. Names and OS strings are
/// sanitized: both can come from a guest or a remote host.
pub fn status_table(hosts: &[(&str, &[DomainStatus])], with_host: bool) -> String {
    let mut table = Table::new();
    let header = [
        "VM",
        "State",
        "OS",
        "Memory (used/max)",
        "CPU time",
        "CPU %",
    ];
    table
        .load_style(UTF8_FULL_CONDENSED)
        .set_header(with_host.then_some("Host").into_iter().chain(header));
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
                    Cell::new(row.state),
                    Cell::new(sanitize(&row.os)),
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

fn memory(row: &DomainStatus) -> String {
    let show = |kib: Option<u64>| kib.map_or_else(|| UNKNOWN.to_owned(), format_kib);
    format!(
        "{} / {}",
        show(row.memory_used_kib),
        show(row.memory_max_kib)
    )
}
