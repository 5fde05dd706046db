//! `isos`: every CD-ROM and floppy drive of every VM and the media in it,
//! as a table or JSON; the menu's "ISOs" entry shares it.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Result;
use regex::Regex;

use crate::cli::options::Context;
use crate::cli::render::drive_table;
use crate::cli::values::parse_regex;
use crate::fleet::Fleet;
use crate::media::{DriveRow, MediaManager};

const EXAMPLES: &str = "\
Examples:
  dismount_iso_qemu isos
  dismount_iso_qemu isos --mounted
  dismount_iso_qemu isos --iso /var/lib/libvirt/images/debian-12.iso
  dismount_iso_qemu --hosts hosts.txt isos --match '^db-' --json";

/// List every CD-ROM and floppy drive of every VM and the media in it
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct IsosArgs {
    /// One JSON array, an object per drive
    #[arg(long)]
    json: bool,
    /// Only drives holding media (live or in the config)
    #[arg(long)]
    mounted: bool,
    /// Only drives holding this ISO: who uses it?
    #[arg(long, value_name = "PATH")]
    iso: Option<String>,
    /// Only domains whose name matches this regular expression
    #[arg(long = "match", value_name = "REGEX", value_parser = parse_regex)]
    pattern: Option<Regex>,
}

impl IsosArgs {
    pub fn run(self, context: &Context) -> Result<ExitCode> {
        let query = IsoQuery {
            mounted: self.mounted,
            iso: self.iso,
            pattern: self.pattern,
        };
        context.to_stdout(|out| isos(&context.fleet, &query, self.json, context.colour, out))
    }
}

/// Which drives `isos` shows.
#[derive(Debug, Clone, Default)]
pub struct IsoQuery {
    pub mounted: bool,
    pub iso: Option<String>,
    /// `--match`: only domains whose name matches.
    pub pattern: Option<Regex>,
}

/// `isos`: the drive table, or JSON rows each with its host's `uri`;
/// every host read side by side, a host that fails one line on stderr.
pub fn isos(
    fleet: &Fleet,
    query: &IsoQuery,
    json: bool,
    colour: bool,
    out: &mut impl Write,
) -> Result<ExitCode> {
    let scans = crate::cli::progress::each_with_progress(fleet, !json, |host| {
        let media = MediaManager::new(host.virsh().clone());
        let mut rows = media.rows(&media.load_all()?)?;
        if query.mounted {
            rows.retain(DriveRow::mounted);
        }
        if let Some(iso) = &query.iso {
            let iso = media.iso_name(iso)?;
            rows.retain(|row| row.holds(&iso));
        }
        if let Some(pattern) = &query.pattern {
            rows.retain(|row| pattern.is_match(&row.domain));
        }
        Ok(rows)
    });
    crate::cli::report::write_listing(out, scans, json, |hosts, with_host| {
        drive_table(hosts, with_host, colour)
    })
}
