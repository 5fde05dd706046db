//! The ISO library's subcommands: `library` (every ISO of every host and
//! who holds it) and `delete-iso` (only what no drive holds).

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::sync::Mutex;

use anyhow::{Result, bail};
use comfy_table::{Cell, CellAlignment, Color};

use super::prompt::Prompt;
use super::render::format_bytes;
use super::render::new_table;
use super::request::DeleteRequest;
use crate::fleet::{Fleet, Host};
use crate::media::{LibraryEntry, MediaManager};
use crate::mutex::lock;
use crate::utils::{sanitize, with_causes};
use crate::virsh::Pool;
use crate::virsh::groups::last_words;

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
    super::report::write_listing(out, scans, json, |hosts, with_host| {
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

/// One deletion `delete-iso` plans.
enum Deletion<'f> {
    Volume {
        host: &'f Host,
        pool: String,
        volume: String,
    },
    /// A file outside every pool, on this machine.
    File(String),
}

impl Deletion<'_> {
    fn describe(&self) -> String {
        match self {
            Deletion::Volume { host, pool, volume } => format!(
                "delete volume {}/{} on {}",
                sanitize(pool),
                sanitize(volume),
                sanitize(&host.uri())
            ),
            Deletion::File(path) => format!("delete the file {} on this machine", sanitize(path)),
        }
    }

    /// The command an admin would type for it.
    fn command_line(&self) -> String {
        match self {
            Deletion::Volume { host, pool, volume } => host
                .virsh()
                .invocation(&["vol-delete", "--pool", pool, "--vol", volume])
                .command_line(),
            Deletion::File(path) => {
                let rm = crate::virsh::Invocation {
                    program: "rm".to_owned(),
                    connect: None,
                    commands: vec![vec!["--".to_owned(), path.clone()]],
                };
                rm.command_line()
            }
        }
    }

    /// Deletes it, checked afterwards.
    fn run(&self) -> Result<()> {
        match self {
            Deletion::Volume { host, pool, volume } => {
                let virsh = host.virsh();
                match virsh.run(&["vol-delete", "--pool", pool, "--vol", volume]) {
                    // Gone already (another URI of the same host, or
                    // someone else): what was asked for holds.
                    Err(_) if virsh.volume_capacity(pool, volume)?.is_none() => return Ok(()),
                    other => other?,
                };
                if virsh.volume_capacity(pool, volume)?.is_some() {
                    bail!("virsh said it deleted the volume, but the pool still lists it");
                }
                Ok(())
            }
            Deletion::File(path) => Ok(std::fs::remove_file(path)?),
        }
    }
}

/// Every host's ISOs that `iso` names, with their holders; `is_local`
/// says whether the host's files are this machine's. A host that cannot
/// be read is an error: who holds the ISO there is unknown.
fn find_everywhere<'f>(fleet: &'f Fleet, iso: &str) -> Result<Vec<Found<'f>>> {
    let scans = fleet.each(|host| {
        let media = MediaManager::new(host.virsh().clone());
        let name = media.iso_name(iso)?;
        let mut entries = media.library()?;
        entries.retain(|entry| entry.is(&name));
        Ok((entries, !media.remote()?))
    });
    let mut found = Vec::new();
    let mut failed = Vec::new();
    for (host, scan) in fleet.hosts.iter().zip(scans) {
        match scan.result {
            Ok((entries, is_local)) => found.push(Found {
                host,
                entries,
                is_local,
            }),
            Err(error) => failed.push(super::report::host_error(&scan.uri, &error)),
        }
    }
    if !failed.is_empty() {
        bail!(
            "not deleted: cannot tell whether a drive holds '{}' on every host given ({})",
            sanitize(iso),
            failed.join("; ")
        );
    }
    Ok(found)
}

/// One host's part of [`find_everywhere`].
struct Found<'f> {
    host: &'f Host,
    entries: Vec<LibraryEntry>,
    is_local: bool,
}

/// Refuses while any drive of any host holds the ISO, live or in the
/// config, naming each drive on `out` first.
fn refuse_if_held(found: &[Found], iso: &str, out: &mut impl Write) -> Result<()> {
    let holders: Vec<String> = found
        .iter()
        .flat_map(|found| {
            found.entries.iter().flat_map(move |entry| {
                entry
                    .holders
                    .iter()
                    .map(move |holder| format!("{}: {}", found.host.uri(), holder.describe()))
            })
        })
        .collect();
    if holders.is_empty() {
        return Ok(());
    }
    for line in &holders {
        writeln!(out, "  held by {}", sanitize(line))?;
    }
    bail!(
        "not deleted: '{}' is held by {} drive(s) (above), live or in the config: eject it first (`eject --iso`)",
        sanitize(iso),
        holders.len()
    )
}

/// `delete-iso ISO`: the volume on every host given that has it, only
/// while no drive of any of them holds it; a file outside every pool
/// only with `--file`. No domain's XML is touched.
pub fn delete_iso<R: BufRead, W: Write>(
    fleet: &Fleet,
    prompt: &mut Prompt<R, W>,
    request: &DeleteRequest,
) -> Result<ExitCode> {
    let iso = request.iso.as_str();
    let found = find_everywhere(fleet, iso)?;
    refuse_if_held(&found, iso, prompt.out())?;
    let mut plan: Vec<Deletion> = found
        .iter()
        .flat_map(|found| {
            found.entries.iter().filter_map(|entry| {
                Some(Deletion::Volume {
                    host: found.host,
                    pool: entry.pool.clone()?,
                    volume: entry.volume.clone()?,
                })
            })
        })
        .collect();
    if plan.is_empty() {
        let local_file = std::fs::metadata(iso).is_ok_and(|metadata| metadata.is_file())
            && found.iter().any(|found| found.is_local);
        if !local_file {
            bail!(
                "no ISO '{}' in the storage pools of the {} host(s) given",
                sanitize(iso),
                found.len()
            );
        }
        let path = std::path::Path::new(iso);
        let is_iso = iso.to_ascii_lowercase().ends_with(".iso")
            || crate::media::has_iso9660_signature(path).unwrap_or(false);
        if !is_iso {
            // `--file` is for stray ISOs, not for any file a typo names.
            bail!(
                "not deleted: '{}' is no ISO (neither an ISO 9660 signature nor a .iso name)",
                sanitize(iso)
            );
        }
        if !request.file {
            bail!(
                "'{}' is a file outside every storage pool: pass --file to delete the file itself",
                sanitize(iso)
            );
        }
        plan.push(Deletion::File(iso.to_owned()));
    }
    writeln!(prompt.out(), "Planned:")?;
    for deletion in &plan {
        writeln!(prompt.out(), "  {}", deletion.describe())?;
    }
    if request.dry_run {
        writeln!(
            prompt.out(),
            "Dry run: these commands would run; nothing changed."
        )?;
        for deletion in &plan {
            writeln!(prompt.out(), "{}", sanitize(&deletion.command_line()))?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let asks = prompt.confirms_every_change() || !request.yes;
    if asks {
        if !prompt.confirm("deleted")? {
            writeln!(prompt.out(), "Nothing deleted.")?;
            return Ok(ExitCode::SUCCESS);
        }
        // Time has passed at the prompt: a drive may have taken it since.
        refuse_if_held(&find_everywhere(fleet, iso)?, iso, prompt.out())?;
    }
    let mut failed = 0;
    for deletion in &plan {
        // Said if a signal ends the tool while it is out: it may be done.
        last_words::clear();
        last_words::add(&format!(
            "dismount_iso_qemu: interrupted; this deletion had been sent to virsh and may have \
             been made (`library` shows what is left):\n  {}\n",
            deletion.describe()
        ));
        let deleted = deletion.run();
        last_words::clear();
        match deleted {
            Ok(()) => writeln!(prompt.out(), "ok: {}", deletion.describe())?,
            Err(error) => {
                failed += 1;
                writeln!(
                    prompt.out(),
                    "FAILED: {}: {}",
                    deletion.describe(),
                    sanitize(&format!("{error:#}"))
                )?;
            }
        }
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
