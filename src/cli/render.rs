//! Renders scan results and drives as tables for people.

use comfy_table::{Cell, CellAlignment, Color, Table, presets::UTF8_FULL_CONDENSED};

use crate::fleet::HostScan;
use crate::media::{DriveRow, holders};
use crate::probe::DomainStatus;
use crate::utils::sanitize;
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

/// The VM table: VM, State, OS, Memory (used/max), CPU time, CPU %, a
/// Disk (used/total) column where the scan asked for filesystems, and
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
    let disks = hosts
        .iter()
        .any(|(_, rows)| rows.iter().any(|row| row.disks.is_some()));
    table.set_header(
        with_host
            .then_some("Host")
            .into_iter()
            .chain(header)
            .chain(disks.then_some("Disk (used/total)")),
    );
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
                    domain_state_cell(row),
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
                ])
                .chain(disks.then(|| disk_cell(row))),
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

/// The OS; where it is unknown, why in a few words (`unknown (no agent)`,
/// `unknown (shut off, no metadata)`): a fixed vocabulary, never the
/// error's text, which `--json` has whole. Yellow where something is wrong
/// (an agent, virsh, the XML), as it used to be for any running guest
/// whose agent could not give it.
fn os_cell(row: &DomainStatus) -> Cell {
    match row.os_unknown.filter(|_| row.os_source.is_none()) {
        Some(why) => {
            let cell = Cell::new(format!("{} ({})", sanitize(&row.os), why.words()));
            if why.is_problem() {
                cell.fg(Color::Yellow)
            } else {
                cell
            }
        }
        None => Cell::new(sanitize(&row.os)),
    }
}

/// The sum over a guest's filesystems that count, or in a few words why
/// there is none (yellow where something is wrong).
fn disk_cell(row: &DomainStatus) -> Cell {
    let Some(report) = &row.disks else {
        return Cell::new(UNKNOWN);
    };
    if let Some((used, total)) = report.usage() {
        return Cell::new(format!("{} / {}", format_bytes(used), format_bytes(total)))
            .set_alignment(CellAlignment::Right);
    }
    match report.fs_unknown {
        Some(why) => {
            let cell = Cell::new(format!("{UNKNOWN} ({})", why.as_str().replace('_', " ")));
            if why.is_problem() {
                cell.fg(Color::Yellow)
            } else {
                cell
            }
        }
        // The agent answered, without a filesystem that has both figures.
        None => Cell::new(UNKNOWN),
    }
}

/// A VM's state, and where `boot-iso` started it, the drive it booted.
fn domain_state_cell(row: &DomainStatus) -> Cell {
    match &row.booted_from_iso {
        Some(target) => coloured(
            row.state,
            Cell::new(format!("{} from ISO ({})", row.state, sanitize(target))),
        ),
        None => state_cell(row.state),
    }
}

/// A domain state, coloured: running green, paused yellow, crashed red,
/// shut off grey.
fn state_cell(state: DomainState) -> Cell {
    coloured(state, Cell::new(state))
}

/// `cell` in the colour of `state`.
fn coloured(state: DomainState, cell: Cell) -> Cell {
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

const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];

/// KiB as `512 KiB`, `1.5 MiB`, `8.0 GiB`. The unit is the largest in which
/// the value, rounded to one decimal, stays below 1024, so 1048575 KiB reads
/// `1.0 GiB` rather than `1024.0 MiB`.
pub fn format_kib(kib: u64) -> String {
    if kib < 1024 {
        return format!("{kib} KiB");
    }
    scaled(kib as f64 / 1024.0, 1)
}

/// Bytes as `512 B`, `368.0 KiB`, `4.2 GiB`, by the rule of [`format_kib`].
pub fn format_bytes(bytes: u64) -> String {
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    scaled(bytes as f64 / 1024.0, 0)
}

/// `value` in `UNITS[unit]`, moved up a unit while it rounds to 1024 or more.
fn scaled(mut value: f64, mut unit: usize) -> String {
    while unit + 1 < UNITS.len() && (value * 10.0).round() / 10.0 >= 1024.0 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// CPU time as `1d 10h 5m`, `2h 0m 7s`, `3m 12s`, `41s`: the three most
/// significant units from the largest that is not zero.
pub fn format_cpu_time(nanoseconds: u64) -> String {
    let seconds = nanoseconds / 1_000_000_000;
    let parts = [
        (seconds / 86_400, "d"),
        (seconds / 3_600 % 24, "h"),
        (seconds / 60 % 60, "m"),
        (seconds % 60, "s"),
    ];
    let first = parts.iter().position(|(value, _)| *value > 0).unwrap_or(3);
    parts[first..]
        .iter()
        .take(3)
        .map(|(value, unit)| format!("{value}{unit}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kib_boundaries() {
        assert_eq!(format_kib(0), "0 KiB");
        assert_eq!(format_kib(512), "512 KiB");
        assert_eq!(format_kib(1023), "1023 KiB");
        assert_eq!(format_kib(1024), "1.0 MiB");
        assert_eq!(format_kib(1536), "1.5 MiB");
        assert_eq!(format_kib(1024 * 1023), "1023.0 MiB");
        assert_eq!(format_kib(1024 * 1024 - 52), "1023.9 MiB");
        assert_eq!(format_kib(1024 * 1024 - 1), "1.0 GiB", "rounds up a unit");
        assert_eq!(format_kib(1024 * 1024), "1.0 GiB");
        assert_eq!(format_kib(8 * 1024 * 1024), "8.0 GiB");
        assert_eq!(format_kib(1024 * 1024 * 1024), "1.0 TiB");
        assert_eq!(format_kib(u64::MAX), "17179869184.0 TiB", "no larger unit");
    }

    #[test]
    fn byte_boundaries() {
        assert_eq!(format_bytes(0), "0 B");
        assert_eq!(format_bytes(1023), "1023 B");
        assert_eq!(format_bytes(1024), "1.0 KiB");
        assert_eq!(format_bytes(376_832), "368.0 KiB");
        assert_eq!(format_bytes(1024 * 1024 - 1), "1.0 MiB", "rounds up a unit");
        assert_eq!(format_bytes(4 << 30), "4.0 GiB");
    }

    #[test]
    fn cpu_time_boundaries() {
        let s = 1_000_000_000;
        assert_eq!(format_cpu_time(0), "0s");
        assert_eq!(format_cpu_time(s - 1), "0s");
        assert_eq!(format_cpu_time(41 * s), "41s");
        assert_eq!(format_cpu_time(59 * s), "59s");
        assert_eq!(format_cpu_time(60 * s), "1m 0s");
        assert_eq!(format_cpu_time(192 * s), "3m 12s");
        assert_eq!(format_cpu_time(3_599 * s), "59m 59s");
        assert_eq!(format_cpu_time(3_600 * s), "1h 0m 0s");
        assert_eq!(format_cpu_time(7_207 * s), "2h 0m 7s");
        assert_eq!(format_cpu_time(86_399 * s), "23h 59m 59s");
        assert_eq!(format_cpu_time(86_400 * s), "1d 0h 0m");
        assert_eq!(
            format_cpu_time((86_400 + 36_000 + 300 + 9) * s),
            "1d 10h 5m"
        );
        assert_eq!(format_cpu_time(u64::MAX), "213503d 23h 34m");
    }
}
