//! `delete-iso`: an ISO's volume on every host given that has it, only
//! while no drive of any of them holds it.

use std::io::{BufRead, Write};
use std::process::ExitCode;

use anyhow::{Result, bail};

use crate::cli::change::Confirm;
use crate::cli::options::Context;
use crate::cli::prompt::{self, Prompt};
use crate::fleet::{Fleet, Host};
use crate::media::{LibraryEntry, MediaManager};
use crate::utils::sanitize;
use crate::virsh::groups::last_words;

const EXAMPLES: &str = "\
Examples:
  dismount_iso_qemu delete-iso isos/debian-11.iso --dry-run
  dismount_iso_qemu --hosts hosts.txt delete-iso isos/debian-11.iso --yes
  dismount_iso_qemu delete-iso /srv/isos/old-rescue.iso --file";

/// Delete an ISO that no drive of any host given holds, live or in the config: its volume on each host that has it
// Plain values already, so the request itself.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct DeleteIsoArgs {
    /// The ISO: POOL/VOLUME, or a path
    #[arg(allow_hyphen_values = true)]
    iso: String,
    /// Allow deleting a file outside every storage pool, on this machine
    #[arg(long)]
    file: bool,
    #[command(flatten)]
    confirm: Confirm,
    /// Print the exact commands and change nothing
    #[arg(long)]
    dry_run: bool,
}

impl DeleteIsoArgs {
    pub fn run(self, context: &Context) -> Result<ExitCode> {
        context.to_stdout(|out| {
            prompt::with_stdin(out, |prompt| delete_iso(&context.fleet, prompt, &self))
        })
    }
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
            Err(error) => failed.push(crate::cli::report::host_error(&scan.uri, &error)),
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
fn delete_iso<R: BufRead, W: Write>(
    fleet: &Fleet,
    prompt: &mut Prompt<R, W>,
    request: &DeleteIsoArgs,
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
    let asks = prompt.confirms_every_change() || !request.confirm.yes;
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
