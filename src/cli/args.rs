//! The command line as clap sees it; turned into plain options before any
//! core code runs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueHint};
use regex::Regex;

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
    // LIBVIRT_URI is read in `Options::from_args`: as clap's `env` it
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

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the VM table (name, state, OS, memory, CPU time) and exit
    Status {
        /// One JSON array, an object per domain, sorted by name
        #[arg(long)]
        json: bool,
        /// Only domains whose name matches this regular expression
        #[arg(long = "match", value_name = "REGEX", value_parser = parse_regex)]
        pattern: Option<Regex>,
        /// Ask each running guest's agent for its filesystems: a Disk (used/total) column, `filesystems` in the JSON
        #[arg(long)]
        disks: bool,
    },
    /// List every CD-ROM and floppy drive of every VM and the media in it
    Isos {
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
    },
    /// Insert an ISO into a VM's CD-ROM drive (live and config, as the VM allows)
    #[command(
        override_usage = "dismount_iso_qemu mount [OPTIONS] <DOMAIN> <ISO>\n       \
                                dismount_iso_qemu mount [OPTIONS] <DOMAIN> --upload <FILE> --pool <POOL>\n       \
                                dismount_iso_qemu mount [OPTIONS] --match <REGEX> [--all] <ISO>"
    )]
    Mount {
        /// The VM (with --match: the ISO)
        #[arg(allow_hyphen_values = true)]
        domain: String,
        /// The ISO: a local path, a storage volume's path on a remote host, or POOL/VOLUME
        #[arg(required_unless_present_any = ["pattern", "upload"])]
        iso: Option<String>,
        /// Upload this file into --pool on the VM's host first, then mount it
        #[arg(long, value_name = "FILE", requires = "pool", conflicts_with_all = ["iso", "pattern"],
              value_hint = ValueHint::FilePath)]
        upload: Option<String>,
        /// With --upload: the storage pool it goes into
        #[arg(long, value_name = "POOL", requires = "upload")]
        pool: Option<String>,
        /// The VM whose name matches this regular expression (only one, unless --all)
        #[arg(long = "match", value_name = "REGEX", value_parser = parse_regex)]
        pattern: Option<Regex>,
        /// With --match: mount into every VM whose name matches
        #[arg(long, requires = "pattern")]
        all: bool,
        /// The drive (e.g. hdc, sda); needed when the VM has several CD-ROMs
        #[arg(long, value_name = "DEV")]
        target: Option<String>,
        /// Add a CD-ROM if the VM has none: SATA, to its config; on its SCSI controller, live too
        #[arg(long)]
        attach: bool,
        #[command(flatten)]
        change: ChangeArgs,
    },
    /// Eject the media of a VM's drives, of every VM, or of every drive holding an ISO
    #[command(group = clap::ArgGroup::new("which").required(true).args(["domain", "all", "iso", "pattern"]))]
    Eject {
        /// The VM (all its drives holding media, or --target's)
        #[arg(allow_hyphen_values = true)]
        domain: Option<String>,
        /// Only this drive of the VM
        #[arg(long, value_name = "DEV", requires = "domain", conflicts_with_all = ["all", "iso"])]
        target: Option<String>,
        /// Every drive of every VM on the connection
        #[arg(long)]
        all: bool,
        /// Every drive holding this ISO
        #[arg(long, value_name = "PATH", conflicts_with = "all")]
        iso: Option<String>,
        /// Every drive of the domains whose name matches this regular expression
        #[arg(long = "match", value_name = "REGEX", value_parser = parse_regex)]
        pattern: Option<Regex>,
        #[command(flatten)]
        change: ChangeArgs,
    },
    /// Start a shut-off VM once from an ISO (a rescue or installer): its config stays as it is, so the next start boots as before
    BootIso(BootIsoArgs),
    /// List every ISO of every storage pool, and the ISO files drives hold outside them, with the drives that hold each
    Library {
        /// Only the ISOs no drive holds, live or in the config: the candidates for deletion
        #[arg(long)]
        unused: bool,
        /// One JSON array, an object per ISO
        #[arg(long)]
        json: bool,
    },
    /// Upload an ISO into a storage pool of every host given, through the libvirt connection (no scp), checked before and after
    Upload(UploadArgs),
    /// Delete an ISO that no drive of any host given holds, live or in the config: its volume on each host that has it
    DeleteIso {
        /// The ISO: POOL/VOLUME, or a path
        #[arg(allow_hyphen_values = true)]
        iso: String,
        /// Allow deleting a file outside every storage pool, on this machine
        #[arg(long)]
        file: bool,
        /// Do it without asking
        #[arg(short, long)]
        yes: bool,
        /// Print the exact commands and change nothing
        #[arg(long)]
        dry_run: bool,
    },
    /// Whether VMs can move to other hosts as far as their CD-ROM and floppy media go (the file or volume there, of the same size), and the commands that clear what blocks
    #[command(group = clap::ArgGroup::new("which").required(true).args(["domains", "all", "pattern"]))]
    MigrateCheck {
        /// The VMs to check (a name starting with `-` after `--`)
        // No allow_hyphen_values: on a list it would swallow `--to URI`.
        domains: Vec<String>,
        /// Every VM of the source host(s)
        #[arg(long, conflicts_with = "domains")]
        all: bool,
        /// The VMs whose name matches this regular expression
        #[arg(long = "match", value_name = "REGEX", value_parser = parse_regex, conflicts_with = "domains")]
        pattern: Option<Regex>,
        /// A destination host (repeatable); without it, with --hosts: every host against every other
        #[arg(long, value_name = "URI")]
        to: Vec<String>,
        /// One JSON array, an object per VM and destination
        #[arg(long, conflicts_with = "fix")]
        json: bool,
        /// Clear every drive that blocks: eject it on the source, or copy the ISO to the destination
        #[arg(long, value_name = "HOW", value_enum)]
        fix: Option<FixHow>,
        /// With --fix copy: read each copy back and compare SHA-256
        #[arg(long, requires = "fix")]
        verify: bool,
        #[command(flatten)]
        change: ChangeArgs,
    },
    /// Print the shell completion script for SHELL (bash, zsh, fish, elvish, powershell)
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::aot::Shell,
    },
    /// Print the man page (roff); with --dir, write one page per command into DIR
    Manpage {
        /// Write dismount_iso_qemu.1 and one dismount_iso_qemu-COMMAND.1 per command here
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Serve Prometheus metrics (/metrics) and a health check (/healthz) over HTTP, from background scans of every host
    Serve {
        /// Address to listen on
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9177")]
        listen: SocketAddr,
        /// Log lines on stderr as text or as JSON objects; levels from RUST_LOG (default info)
        #[arg(long, value_name = "FORMAT", value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
        /// Prometheus exporter-toolkit web configuration file (YAML): TLS from tls_server_config, basic auth from basic_auth_users (bcrypt hashes), as node_exporter reads it
        #[arg(long = "web.config.file", value_name = "FILE")]
        web_config_file: Option<PathBuf>,
        /// Leave out the disk and network figures (domstats --block --interface): for hosts whose I/O another exporter already serves
        #[arg(long)]
        no_io_metrics: bool,
        /// Leave out the guests' filesystems (guestinfo --filesystem): for guests that run node_exporter
        #[arg(long)]
        no_guest_filesystems: bool,
    },
}

/// How `migrate-check --fix` clears a drive that blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FixHow {
    /// Eject it on the source (`eject`'s plan and rules)
    Eject,
    /// Put the ISO where it is missing: the source's file uploaded, or its volume streamed (`upload`'s rules)
    Copy,
}

/// When tables are coloured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

/// How `serve` writes its log lines (to stderr).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// The switches every media change takes.
#[derive(Debug, clap::Args)]
pub struct ChangeArgs {
    /// Do it without asking
    #[arg(short, long)]
    pub yes: bool,
    /// Print the exact virsh commands and change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Pass --force to change-media: eject even when the guest has locked the tray
    #[arg(long)]
    pub force: bool,
}

/// The longest duration any option takes: ten years. A deadline is now
/// plus a timeout, and far beyond this it overflows.
const MAX_DURATION: Duration = Duration::from_secs(3650 * 24 * 3600);

/// A regular expression (the `regex` crate's syntax, matched anywhere in
/// the name, as grep does); a bad one is refused naming where it breaks.
fn parse_regex(text: &str) -> Result<Regex, String> {
    if let Err(error) = regex_syntax::ast::parse::Parser::new().parse(text) {
        let at = text[..error.span().start.offset].chars().count() + 1;
        return Err(format!("{} at character {at}", error.kind()));
    }
    Regex::new(text).map_err(|error| error.to_string().lines().last().unwrap_or("").to_owned())
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let duration =
        humantime::parse_duration(text).map_err(|e| format!("{e} (try 5s or 1500ms)"))?;
    if duration.is_zero() {
        return Err("must be greater than zero".to_owned());
    }
    if duration > MAX_DURATION {
        return Err("out of range: at most 3650days".to_owned());
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Args::command().debug_assert();
    }

    /// An overflowing deadline used to panic (`Instant` + 10^19 s).
    #[test]
    fn durations_out_of_range_are_refused() {
        let error = parse_duration("10000000000000000000s").unwrap_err();
        assert!(error.contains("at most"), "{error}");
        assert!(parse_duration("3650days").is_ok());
        assert!(parse_duration("3651days").is_err());
    }

    #[test]
    fn bad_patterns_name_the_place() {
        assert_eq!(
            parse_regex("web-(a|b").unwrap_err(),
            "unclosed group at character 5"
        );
        assert_eq!(
            parse_regex("x{2,1}").unwrap_err(),
            "invalid repetition count range, the start must be <= the end at character 2"
        );
        assert!(parse_regex("^web-[0-9]+$").unwrap().is_match("web-12"));
    }

    /// The menu's wait is the one `--wait` defaults to; more than an
    /// hour is refused.
    #[test]
    fn boot_iso_wait_default_and_range() {
        assert_eq!(
            parse_wait(BootIsoArgs::DEFAULT_WAIT_TEXT),
            Ok(BootIsoArgs::DEFAULT_WAIT)
        );
        assert_eq!(parse_wait("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_wait("61m").unwrap_err(), "out of range: at most 1h");
    }

    #[test]
    fn durations_reject_zero_and_junk() {
        assert_eq!(parse_duration("1500ms"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("soon").is_err());
    }
}

/// `boot-iso`'s options: plain values already, so they are the request
/// itself (`request::BootRequest`).
#[derive(Debug, Clone, clap::Args)]
pub struct BootIsoArgs {
    /// The VM (shut off, or running with --restart)
    #[arg(allow_hyphen_values = true)]
    pub domain: String,
    /// The ISO: a local path, a storage volume's path on a remote host, or POOL/VOLUME
    pub iso: String,
    /// The CD-ROM drive that takes the ISO (e.g. sda) [default: the only empty CD-ROM, else one added for this start]
    #[arg(long, value_name = "DEV")]
    pub target: Option<String>,
    /// Shut a running VM down first (ACPI, never forced) and wait for it
    #[arg(long)]
    pub restart: bool,
    /// With --restart: how long to wait for the VM to shut down (at most 1h)
    #[arg(long, value_name = "DURATION", default_value = BootIsoArgs::DEFAULT_WAIT_TEXT, value_parser = parse_wait)]
    pub wait: Duration,
    /// Do it without asking
    #[arg(short, long)]
    pub yes: bool,
    /// Print the plan, the exact virsh commands and the transient XML's changes, and change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Start from an ISO that has no El Torito boot record
    #[arg(long)]
    pub force: bool,
}

impl BootIsoArgs {
    const DEFAULT_WAIT_TEXT: &str = "2m";
    /// `--wait`'s default, for the menu (which has no options).
    pub const DEFAULT_WAIT: Duration = Duration::from_secs(120);
}

/// The longest `--wait` for a shutdown: an hour. A guest that has not shut
/// down by then will not; longer is a mistyped unit.
const MAX_WAIT: Duration = Duration::from_secs(3600);

fn parse_wait(text: &str) -> Result<Duration, String> {
    let wait = parse_duration(text)?;
    if wait > MAX_WAIT {
        return Err("out of range: at most 1h".to_owned());
    }
    Ok(wait)
}

/// `upload`'s options: plain values already, so they are the request
/// itself (`request::UploadRequest`), with no copy field by field.
#[derive(Debug, Clone, clap::Args)]
pub struct UploadArgs {
    /// The ISO file on this machine
    #[arg(value_hint = ValueHint::FilePath)]
    pub file: String,
    /// The storage pool (it must exist and be active on each host)
    #[arg(long, value_name = "POOL")]
    pub pool: String,
    /// The volume's name [default: the file's name]
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Refuse unless the file has this SHA-256 (checked before anything is sent)
    #[arg(long, value_name = "HEX")]
    pub sha256: Option<String>,
    /// Read each volume back afterwards and compare SHA-256
    #[arg(long)]
    pub verify: bool,
    /// Replace a volume of that name (refused while a drive holds it)
    #[arg(long)]
    pub replace: bool,
    /// Upload a file without the ISO 9660 signature
    #[arg(long)]
    pub force: bool,
}
