//! Renders scan results as a table for people.

use comfy_table::{Cell, CellAlignment, Table, presets::UTF8_FULL_CONDENSED};

use crate::probe::DomainStatus;
use crate::utils::{format_cpu_time, format_kib, sanitize};

const UNKNOWN: &str = "-";

/// The VM table: VM, State, OS, Memory (used/max), CPU time, CPU %. Names and OS
/// strings are sanitized: both can come from a guest or a remote host.
pub fn status_table(rows: &[DomainStatus]) -> String {
    let mut table = Table::new();
    table.load_style(UTF8_FULL_CONDENSED).set_header([
        "VM",
        "State",
        "OS",
        "Memory (used/max)",
        "CPU time",
        "CPU %",
    ]);
    for row in rows {
        table.add_row([
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
        ]);
    }
    format!("{table}\n{} domain(s)\n", rows.len())
}

fn memory(row: &DomainStatus) -> String {
    let show = |kib: Option<u64>| kib.map_or_else(|| UNKNOWN.to_owned(), format_kib);
    format!(
        "{} / {}",
        show(row.memory_used_kib),
        show(row.memory_max_kib)
    )
}
