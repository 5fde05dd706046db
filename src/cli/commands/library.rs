//! `library`: every ISO of every storage pool of every host given, and
//! the ISO files drives hold outside them, with who holds each.

use std::collections::HashMap;
use std::io::Write;
use std::process::ExitCode;
use std::sync::Mutex;

use anyhow::Result;
use comfy_table::{Cell, CellAlignment, Color};

use crate::cli::options::Context;
use crate::cli::render::{format_bytes, new_table};
use crate::fleet::Fleet;
use crate::media::{LibraryEntry, MediaManager};
use crate::mutex::lock;
use crate::utils::{sanitize, with_causes};
use crate::virsh::Pool;

const EXAMPLES: &str = "\
Examples:
  dismount_iso_qemu library
  dismount_iso_qemu library --unused
  dismount_iso_qemu --hosts hosts.txt library --json";

/// List every ISO of every storage pool, and the ISO files drives hold outside them, with the drives that hold each
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct LibraryArgs {
    /// Only the ISOs no drive holds, live or in the config: the candidates for deletion
    #[arg(long)]
    unused: bool,
    /// One JSON array, an object per ISO
    #[arg(long)]
    json: bool,
}

impl LibraryArgs {
    pub fn run(self, context: &Context) -> Result<ExitCode> {
        context
            .to_stdout(|out| library(&context.fleet, self.unused, self.json, context.colour, out))
    }
}

/// `library`: the ISOs of every host, side by side; with `unused` only
/// those no drive holds, live or in the config. Above the table, each
/// host's pools and the room left in them.
pub fn library(
    fleet: &Fleet,
    unused: bool,
    json: bool,
    colour: bool,
    out: &mut impl Write,
) -> Result<ExitCode> {
    // Each host's pools, or why they could not be read, by its URI.
    let rooms: Mutex<HashMap<String, std::result::Result<Vec<Pool>, String>>> = Mutex::default();
    let scans = fleet.each(|host| {
        let mut entries = MediaManager::new(host.virsh().clone()).library()?;
        entries.retain(|entry| entry.iso && (!unused || entry.holders.is_empty()));
        if !json {
            let pools = host.virsh().pools().map_err(|error| with_causes(&error));
            lock(&rooms).insert(host.uri(), pools);
        }
        Ok(entries)
    });
    let rooms = rooms
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    crate::cli::report::write_listing(out, scans, json, |hosts, with_host| {
        let header: String = hosts
            .iter()
            .filter_map(|(uri, _)| Some((uri, rooms.get(*uri)?)))
            .map(|(uri, pools)| {
                let host = if with_host {
                    format!("{}: ", sanitize(uri))
                } else {
                    String::new()
                };
                format!("{host}{}\n", pools_room(pools))
            })
            .collect();
        header + &library_table(hosts, with_host, colour)
    })
}

/// `Pools: 'isos' 1.2 GiB free of 100.0 GiB, 'spare' (inactive)`: a host's
/// pools and their room, or why it is unknown.
fn pools_room(pools: &std::result::Result<Vec<Pool>, String>) -> String {
    let pools = match pools {
        Ok(pools) if pools.is_empty() => return "Pools: none".to_owned(),
        Ok(pools) => pools,
        Err(error) => return format!("Pools: their room is unknown: {}", sanitize(error)),
    };
    let each: Vec<String> = pools
        .iter()
        .map(|pool| {
            // Quoted: a name may end in a blank.
            let name = format!("'{}'", sanitize(&pool.name));
            match (pool.available, pool.capacity) {
                _ if !pool.active => format!("{name} (inactive)"),
                (Some(free), Some(total)) => {
                    format!(
                        "{name} {} free of {}",
                        format_bytes(free),
                        format_bytes(total)
                    )
                }
                (Some(free), None) => format!("{name} {} free", format_bytes(free)),
                _ => format!("{name} (room unknown)"),
            }
        })
        .collect();
    format!("Pools: {}", each.join(", "))
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
                        Cell::new(
                            entry
                                .pool
                                .as_deref()
                                .map_or_else(|| "(no pool)".to_owned(), sanitize),
                        ),
                        Cell::new(sanitize(&iso)),
                        Cell::new(
                            entry
                                .size_bytes
                                .map_or_else(|| "-".to_owned(), format_bytes),
                        )
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
