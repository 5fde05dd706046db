//! The ISO library's subcommands: `library` (every ISO of every host and
//! who holds it) and `delete-iso` (only what no drive holds).

use std::io::{BufRead, Write};
use std::process::ExitCode;

use anyhow::{Result, bail};
use comfy_table::{Cell, CellAlignment, Color};

use super::prompt::Prompt;
use super::render::new_table;
use crate::fleet::{Fleet, HostScan};
use crate::media::{LibraryEntry, MediaManager};
use crate::utils::{format_bytes, sanitize};

/// `library`: the ISOs of every host, side by side; with `unused` only
/// those no drive holds, live or in the config.
pub fn library(fleet: &Fleet, unused: bool, json: bool, colour: bool, out: &mut impl Write) -> Result<ExitCode> {
    let scans = fleet.each(|host| {
        let mut entries = MediaManager::new(host.virsh().clone()).library()?;
        if unused {
            entries.retain(|entry| entry.holders.is_empty());
        }
        Ok(entries)
    });
    if fleet.is_single() {
        // One host: its failure is the run's error, as for `isos`.
        if let Some(HostScan { result: Err(_), .. }) = scans.first() {
            let scan = scans.into_iter().next().expect("one host");
            return Err(scan.result.expect_err("checked"));
        }
    }
    let (hosts, failed) = super::report::split_scans(&scans);
    if json {
        crate::utils::write_json(out, &super::report::with_uris(&hosts))?;
    } else if !hosts.is_empty() {
        out.write_all(library_table(&hosts, !fleet.is_single(), colour).as_bytes())?;
    }
    out.flush()?;
    super::report::report_failed_hosts(&failed, scans.len())
}

/// The library as a table: Pool, Volume (else the path), Size, Held by;
/// a Host column first when `with_host`. Everything sanitized.
pub fn library_table(hosts: &[(&str, &[LibraryEntry])], with_host: bool, colour: bool) -> String {
    let mut table = new_table(colour);
    let header = ["Pool", "ISO", "Size", "Held by", "Missing"];
    table.set_header(with_host.then_some("Host").into_iter().chain(header));
    let mut count = 0;
    for (uri, entries) in hosts {
        for entry in *entries {
            count += 1;
            let holders: Vec<String> = entry
                .holders
                .iter()
                .map(|holder| sanitize(&holder.describe()))
                .collect();
            let iso = match (&entry.volume, &entry.path) {
                (Some(volume), _) => volume.clone(),
                (None, Some(path)) => path.clone(),
                (None, None) => String::new(),
            };
            table.add_row(
                with_host
                    .then(|| Cell::new(sanitize(uri)))
                    .into_iter()
                    .chain([
                        Cell::new(entry.pool.as_deref().map_or_else(|| "(no pool)".to_owned(), sanitize)),
                        Cell::new(sanitize(&iso)),
                        Cell::new(entry.size_bytes.map_or_else(|| "-".to_owned(), format_bytes))
                            .set_alignment(CellAlignment::Right),
                        Cell::new(if holders.is_empty() {
                            "(unused)".to_owned()
                        } else {
                            holders.join("\n")
                        }),
                        if entry.missing {
                            Cell::new("MISSING").fg(Color::Red)
                        } else {
                            Cell::new("")
                        },
                    ]),
            );
        }
    }
    format!("{table}\n{count} ISO(s)\n")
}
