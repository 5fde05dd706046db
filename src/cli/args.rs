//! The global options (`--connect`, `--hosts`, `--timeout`, ...) as clap
//! sees them, and the plain options they become before any core code runs;
//! each command's own options are in its file under `commands/`.

use std::io::{self, IsTerminal};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::Parser;

use super::commands::Command;
use super::options::{Options, connections};
use super::values::parse_duration;
use crate::probe::ProbeOptions;
use crate::virsh::VirshConfig;

/// `--max-connections` when not given (the completion reads it from an
/// unfinished line too).
pub const DEFAULT_MAX_CONNECTIONS: u16 = 16;

#[derive(Debug, Parser)]
#[command(
    name = "dismount_iso_qemu",
    version,
    disable_version_flag = true,
    about = "Show the VMs of a libvirt/QEMU host and manage the ISOs in their CD-ROM drives",
    long_about = "Show the VMs of a libvirt/QEMU host and manage the ISOs in their CD-ROM drives.\n\n\
                  Without a subcommand: print the VM table, then an interactive menu."
)]
pub struct Args {
    /// Print the version; with -v also virsh's, and libvirt's and the hypervisor's on each host
    #[arg(short = 'V', long)]
    pub version: bool,

    /// With --version: the versions of virsh, libvirt and the hypervisor too
    #[arg(short = 'v', long, requires = "version")]
    pub verbose: bool,

    /// Colour in tables: auto (on a terminal, unless NO_COLOR is set), always, never
    #[arg(long, value_name = "WHEN", value_enum, default_value_t = ColorChoice::Auto,
          global = true, help_heading = "Global options")]
    pub color: ColorChoice,

    /// libvirt connection URI, e.g. qemu+ssh://root@host/system; repeat for several hosts [default: $LIBVIRT_URI unless --hosts is given, else virsh's own]
    // LIBVIRT_URI is read in `Args::options`: as clap's `env` it
    // would pass for a --connect and join a --hosts list.
    #[arg(
        short = 'c',
        long = "connect",
        value_name = "URI",
        global = true,
        help_heading = "Global options"
    )]
    pub connect: Vec<String>,

    /// A file of libvirt URIs, one a line (`#` starts a comment; at least one URI): every host in it, with any --connect
    #[arg(
        long,
        value_name = "FILE",
        global = true,
        help_heading = "Global options"
    )]
    pub hosts: Option<PathBuf>,

    /// virsh binary to run
    #[arg(
        long,
        env = "VIRSH",
        value_name = "PATH",
        default_value = "virsh",
        global = true,
        help_heading = "Global options"
    )]
    pub virsh: String,

    /// Upper bound for every single virsh call (e.g. 5s, 1500ms)
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration, global = true, help_heading = "Global options")]
    pub timeout: Duration,

    /// How long CPU and memory figures are reused; also the background refresh interval of the menu
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration, global = true, help_heading = "Global options")]
    pub cache_ttl: Duration,

    /// How long a guest's OS name is reused (failed detections: --cache-ttl)
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = parse_duration, global = true, help_heading = "Global options")]
    pub os_ttl: Duration,

    /// How long a guest's filesystems (status --disks, serve) are reused
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration, global = true, help_heading = "Global options")]
    pub fs_ttl: Duration,

    /// How many guests are probed at once
    #[arg(short = 'j', long, value_name = "N", default_value_t = 8,
          value_parser = clap::value_parser!(u16).range(1..=256), global = true, help_heading = "Global options")]
    pub jobs: u16,

    /// Long-lived virsh processes per host (over ssh, connections) [default: the smaller of --jobs and 4]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64),
          global = true, help_heading = "Global options")]
    pub sessions: Option<u16>,

    /// The most virsh sessions (over ssh, connections) open at once across all hosts
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_CONNECTIONS,
          value_parser = clap::value_parser!(u16).range(1..=4096),
          global = true, help_heading = "Global options")]
    pub max_connections: u16,

    #[command(subcommand)]
    pub command: Option<Command>,
}

/// When tables are coloured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

impl Args {
    /// Everything the core needs of the global options, free of clap
    /// types; the command shapes the rest ([`Command::shape`]).
    pub fn options(&self) -> Result<Options> {
        Ok(Options {
            connections: connections(
                &self.connect,
                self.hosts.as_deref(),
                std::env::var_os("LIBVIRT_URI"),
            )?,
            from_hosts_file: self.hosts.is_some(),
            virsh: VirshConfig {
                program: self.virsh.clone(),
                connect: None,
                timeout: self.timeout,
                sessions: 1,
            },
            sessions: self.sessions.map(usize::from),
            max_connections: usize::from(self.max_connections),
            probe: ProbeOptions {
                timeout: self.timeout,
                cache_ttl: self.cache_ttl,
                os_ttl: self.os_ttl,
                jobs: usize::from(self.jobs),
                filesystems: false,
                fs_ttl: self.fs_ttl,
            },
        })
    }

    /// Whether tables are coloured: `--color`, and for `auto` a terminal
    /// without NO_COLOR.
    pub fn colour(&self) -> bool {
        match self.color {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            // https://no-color.org: any non-empty NO_COLOR turns colour off;
            // an explicit --color always still wins.
            ColorChoice::Auto => {
                io::stdout().is_terminal()
                    && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Args::command().debug_assert();
    }

    /// Each command's examples (its help's and man page's) parse as its
    /// command line: none goes stale when an option changes.
    #[test]
    fn every_example_parses() {
        let command = Args::command();
        let mut checked = 0;
        for sub in command
            .get_subcommands()
            .filter(|sub| sub.get_name() != "help")
        {
            let examples = sub
                .get_after_help()
                .unwrap_or_else(|| panic!("{} has no examples", sub.get_name()))
                .to_string();
            for line in examples.lines().filter_map(|line| line.strip_prefix("  ")) {
                let words = shell_words(line);
                if let Err(error) = Args::try_parse_from(&words) {
                    panic!("`{line}` does not parse: {error}");
                }
                assert!(words.iter().any(|word| word == sub.get_name()), "{line}");
                checked += 1;
            }
        }
        assert!(checked >= 24, "{checked} examples");
    }

    /// The words a shell makes of an example line: '…' quoted, up to a
    /// redirection or a pipe.
    fn shell_words(line: &str) -> Vec<String> {
        let mut words = Vec::new();
        let mut rest = line.trim();
        while !rest.is_empty() && !rest.starts_with(['>', '|']) {
            let (word, after) = match rest.strip_prefix('\'') {
                Some(quoted) => quoted.split_once('\'').expect("a closing quote"),
                None => rest.split_once(' ').unwrap_or((rest, "")),
            };
            words.push(word.to_owned());
            rest = after.trim_start();
        }
        words
    }
}
