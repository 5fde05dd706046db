//! Every conversion from clap's types to plain requests: the options
//! every command shares, and what each subcommand was asked to do.

use std::collections::HashSet;
use std::ffi::OsString;
use std::io::{self, IsTerminal, Read};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use regex::Regex;

use super::args::{Args, ChangeArgs, ColorChoice, Command, FixHow, LogFormat};
use crate::probe::ProbeOptions;
use crate::serve::ServeOptions;
use crate::virsh::{Uri, VirshConfig};

/// Everything the core needs, free of clap types.
#[derive(Debug, Clone)]
pub(super) struct Options {
    /// The hosts, in order; `None` is virsh's default connection.
    pub connections: Vec<Option<String>>,
    /// How to run virsh; `connect` and `sessions` are set per host.
    pub virsh: VirshConfig,
    /// `--sessions`, when given.
    pub sessions: Option<usize>,
    /// `--max-connections`: the virsh sessions open at once, all hosts together.
    pub max_connections: usize,
    pub probe: ProbeOptions,
}

impl Options {
    pub fn from_args(args: &Args) -> Result<Self> {
        Ok(Options {
            connections: connections(
                &args.connect,
                args.hosts.as_deref(),
                std::env::var_os("LIBVIRT_URI"),
            )?,
            virsh: VirshConfig {
                program: args.virsh.clone(),
                connect: None,
                timeout: args.timeout,
                sessions: 1,
            },
            sessions: args.sessions.map(usize::from),
            max_connections: usize::from(args.max_connections),
            probe: ProbeOptions {
                timeout: args.timeout,
                cache_ttl: args.cache_ttl,
                os_ttl: args.os_ttl,
                jobs: usize::from(args.jobs),
                // Asked for by `status --disks`, by `serve`, which exports
                // them unless told not to, and by the menu on a terminal
                // wide enough for the Disk column.
                filesystems: match &args.command {
                    Some(Command::Status { disks, .. }) => *disks,
                    Some(Command::Serve {
                        no_guest_filesystems,
                        ..
                    }) => !no_guest_filesystems,
                    None => stdout_columns().is_some_and(|columns| columns >= MENU_DISKS_COLUMNS),
                    Some(_) => false,
                },
                fs_ttl: args.fs_ttl,
            },
        })
    }
}

/// The menu's table has a Disk (used/total) column from this many
/// columns on: the lab's table with it is about 125 wide, and an OS name
/// or a Host column can make it wider.
const MENU_DISKS_COLUMNS: u16 = 160;

/// The width of the terminal stdout is; `None` where it is no terminal.
fn stdout_columns() -> Option<u16> {
    // SAFETY: an all-zero winsize is a valid value, and TIOCGWINSZ writes
    // one into the struct it is handed, nothing else.
    let mut size: libc::winsize = unsafe { std::mem::zeroed() };
    let asked = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) };
    (asked == 0 && size.ws_col > 0).then_some(size.ws_col)
}

/// The hosts of `--connect` (repeatable) and `--hosts FILE`, in that
/// order, each once however it is spelled (the first spelling is the one
/// virsh gets); with neither, `libvirt_uri` (LIBVIRT_URI), and else, or
/// when that is empty, virsh's default connection.
pub(super) fn connections(
    connect: &[String],
    hosts_file: Option<&Path>,
    libvirt_uri: Option<OsString>,
) -> Result<Vec<Option<String>>> {
    let mut uris: Vec<String> = connect.iter().filter(|u| !u.is_empty()).cloned().collect();
    if let Some(file) = hosts_file {
        let text = read_hosts_file(file)?;
        let hosts = parse_hosts(&text);
        // An empty file is a mistake: taken for "no hosts given", it
        // would aim every command at the local host instead.
        if hosts.is_empty() {
            bail!("the hosts file {} lists no host", file.display());
        }
        uris.extend(hosts);
    } else if connect.is_empty() {
        let uri = libvirt_uri
            .map(OsString::into_string)
            .transpose()
            .map_err(|_| anyhow!("LIBVIRT_URI is not valid UTF-8"))?;
        uris.extend(uri.filter(|uri| !uri.is_empty()));
    }
    let mut seen = HashSet::new();
    uris.retain(|uri| seen.insert(Uri::parse(uri).canonical()));
    Ok(if uris.is_empty() {
        vec![None]
    } else {
        uris.into_iter().map(Some).collect()
    })
}

/// A hosts file is a few KiB; one larger than this is something else.
const HOSTS_FILE_LIMIT: u64 = 16 << 20;

/// The hosts file's text, up to [`HOSTS_FILE_LIMIT`]: a file without end
/// (`/dev/zero`, a log named by mistake) is refused there, not read until
/// memory runs out. A pipe (`--hosts <(grep kvm hosts)`) reads as a file.
fn read_hosts_file(file: &Path) -> Result<String> {
    let context = || format!("cannot read the hosts file {}", file.display());
    let mut text = String::new();
    std::fs::File::open(file)
        .with_context(context)?
        .take(HOSTS_FILE_LIMIT + 1)
        .read_to_string(&mut text)
        .with_context(context)?;
    if text.len() as u64 > HOSTS_FILE_LIMIT {
        bail!(
            "the hosts file {} is larger than {} MiB: is it a hosts file?",
            file.display(),
            HOSTS_FILE_LIMIT >> 20
        );
    }
    Ok(text)
}

/// One URI a line; blank lines and `#` comments (whole lines or after
/// the URI) are skipped, and so is a byte order mark before the first.
fn parse_hosts(text: &str) -> Vec<String> {
    text.strip_prefix('\u{feff}')
        .unwrap_or(text)
        .lines()
        .map(|line| line.split_once('#').map_or(line, |(uri, _)| uri).trim())
        .filter(|uri| !uri.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A usage error found after parsing: clap's one line, exit 2.
fn usage_error(message: &str) -> ! {
    <Args as clap::CommandFactory>::command()
        .error(clap::error::ErrorKind::ArgumentConflict, message)
        .exit()
}

/// Whether tables are coloured: `--color`, and for `auto` a terminal
/// without NO_COLOR.
pub fn colour(choice: ColorChoice) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        // https://no-color.org: any non-empty NO_COLOR turns colour off;
        // an explicit --color always still wins.
        ColorChoice::Auto => {
            io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        }
    }
}

/// A subcommand as asked, free of clap types.
pub enum Request {
    Status {
        json: bool,
        pattern: Option<Regex>,
    },
    Isos {
        query: IsoQuery,
        json: bool,
    },
    Mount {
        request: MountRequest,
        change: ChangeOptions,
    },
    Eject {
        selection: EjectSelection,
        change: ChangeOptions,
    },
    Library {
        unused: bool,
        json: bool,
    },
    DeleteIso(DeleteRequest),
    BootIso(BootRequest),
    Upload(UploadRequest),
    MigrateCheck {
        request: MigrateRequest,
        change: ChangeOptions,
    },
    Completions(clap_complete::aot::Shell),
    Manpage(Option<PathBuf>),
    Serve(ServeOptions),
    /// No subcommand: the table, then the menu.
    Menu,
}

impl Request {
    /// From the subcommand given; `serve` scans every `options`' refresh
    /// interval. A combination clap cannot refuse ends the run with a
    /// usage error.
    pub fn new(command: Option<Command>, options: &ProbeOptions) -> Self {
        let Some(command) = command else {
            return Request::Menu;
        };
        match command {
            Command::Status {
                json,
                pattern,
                // The scan's option (`ProbeOptions::filesystems`).
                disks: _,
            } => Request::Status { json, pattern },
            Command::Isos {
                json,
                mounted,
                iso,
                pattern,
            } => Request::Isos {
                query: IsoQuery {
                    mounted,
                    iso,
                    pattern,
                },
                json,
            },
            Command::Mount {
                domain,
                iso,
                upload,
                pool,
                pattern,
                all,
                target,
                attach,
                change,
            } => {
                // `DOMAIN ISO`, `DOMAIN --upload FILE --pool POOL`, or
                // `--match REGEX ISO`: clap fills the first positional first,
                // so with --match it holds the ISO.
                let (selection, iso) = match (pattern, iso, &upload) {
                    (None, Some(iso), None) => (MountSelection::Domain(domain), iso),
                    (None, None, Some(file)) => (MountSelection::Domain(domain), file.clone()),
                    (Some(pattern), None, None) => {
                        (MountSelection::Matching { pattern, all }, domain)
                    }
                    (Some(_), Some(_), _) => usage_error("with --match, mount takes the ISO alone"),
                    _ => usage_error(
                        "mount takes DOMAIN ISO (or DOMAIN --upload FILE --pool POOL, or --match REGEX ISO)",
                    ),
                };
                let upload = upload.map(|file| UploadRequest {
                    file,
                    pool: pool.unwrap_or_default(),
                    name: None,
                    sha256: None,
                    verify: false,
                    replace: false,
                    // mount's --force is the tray's; a file without the ISO
                    // signature goes through `upload --force` first.
                    force: false,
                });
                Request::Mount {
                    request: MountRequest {
                        selection,
                        iso,
                        target,
                        attach,
                        upload,
                    },
                    change: (&change).into(),
                }
            }
            Command::Eject {
                domain,
                target,
                all,
                iso,
                pattern,
                change,
            } => Request::Eject {
                selection: EjectSelection::new(domain, target, all, iso, pattern),
                change: (&change).into(),
            },
            Command::Library { unused, json } => Request::Library { unused, json },
            Command::BootIso(boot) => Request::BootIso(boot),
            Command::DeleteIso {
                iso,
                file,
                yes,
                dry_run,
            } => Request::DeleteIso(DeleteRequest {
                iso,
                file,
                yes,
                dry_run,
            }),
            Command::Upload(upload) => Request::Upload(upload),
            Command::MigrateCheck {
                domains,
                all,
                pattern,
                to: _,
                json,
                fix,
                verify,
                change,
            } => Request::MigrateCheck {
                request: MigrateRequest {
                    verify,
                    selection: match (pattern, all) {
                        (Some(pattern), _) => DomainSelection::Matching(pattern),
                        (None, true) => DomainSelection::All,
                        (None, false) => DomainSelection::Named(domains),
                    },
                    json,
                    fix,
                },
                change: (&change).into(),
            },
            Command::Completions { shell } => Request::Completions(shell),
            Command::Manpage { dir } => Request::Manpage(dir),
            Command::Serve {
                listen,
                log_format,
                web_config_file,
                no_io_metrics,
                // The scan's option (`ProbeOptions::filesystems`).
                no_guest_filesystems: _,
            } => Request::Serve(ServeOptions {
                listen,
                interval: options.refresh_interval(),
                json_logs: log_format == LogFormat::Json,
                web_config: web_config_file,
                io_metrics: !no_io_metrics,
            }),
        }
    }
}

/// `migrate-check`: which VMs, how the outcome is written, what is
/// cleared. The hosts are the fleet's (see `migrate_check::connections`).
#[derive(Debug, Clone)]
pub struct MigrateRequest {
    pub selection: DomainSelection,
    /// `--verify`: each copy read back.
    pub verify: bool,
    pub json: bool,
    pub fix: Option<FixHow>,
}

/// VMs by name, all of them, or those whose name matches.
#[derive(Debug, Clone)]
pub enum DomainSelection {
    Named(Vec<String>),
    All,
    Matching(Regex),
}

impl DomainSelection {
    pub fn wants(&self, name: &str) -> bool {
        match self {
            DomainSelection::Named(names) => names.iter().any(|wanted| wanted == name),
            DomainSelection::All => true,
            DomainSelection::Matching(pattern) => pattern.is_match(name),
        }
    }
}

/// How a change is carried out, free of clap types.
#[derive(Debug, Clone, Copy, Default)]
pub struct ChangeOptions {
    pub yes: bool,
    pub dry_run: bool,
    pub force: bool,
}

impl From<&ChangeArgs> for ChangeOptions {
    fn from(args: &ChangeArgs) -> Self {
        ChangeOptions {
            yes: args.yes,
            dry_run: args.dry_run,
            force: args.force,
        }
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

/// What `eject` acts on.
#[derive(Debug, Clone)]
pub enum EjectSelection {
    Domain {
        name: String,
        target: Option<String>,
    },
    All,
    Iso(String),
    /// Every drive of the domains whose name matches.
    Matching(Regex),
}

impl EjectSelection {
    /// From `eject`'s arguments, of which clap lets exactly one through.
    pub fn new(
        domain: Option<String>,
        target: Option<String>,
        all: bool,
        iso: Option<String>,
        pattern: Option<Regex>,
    ) -> Self {
        if let Some(pattern) = pattern {
            return EjectSelection::Matching(pattern);
        }
        match (domain, iso) {
            _ if all => EjectSelection::All,
            (_, Some(iso)) => EjectSelection::Iso(iso),
            (name, None) => EjectSelection::Domain {
                name: name.unwrap_or_default(),
                target,
            },
        }
    }
}

/// What `mount` was asked to do.
#[derive(Debug, Clone)]
pub struct MountRequest {
    pub selection: MountSelection,
    pub iso: String,
    pub target: Option<String>,
    /// Add a CD-ROM when the VM has none (SATA, or SCSI where it has a
    /// SCSI controller).
    pub attach: bool,
    /// `--upload FILE --pool POOL`: uploaded to the VM's host first, the
    /// volume then mounted.
    pub upload: Option<UploadRequest>,
}

/// Which VMs `mount` acts on.
#[derive(Debug, Clone)]
pub enum MountSelection {
    Domain(String),
    /// The VMs whose name matches: one, or with `all` every one.
    Matching {
        pattern: Regex,
        all: bool,
    },
}

/// What `upload` was asked to do: clap's values as they are.
pub use super::args::UploadArgs as UploadRequest;

/// What `boot-iso` was asked to do: clap's values as they are.
pub use super::args::BootIsoArgs as BootRequest;

/// What `delete-iso` was asked to do.
#[derive(Debug, Clone)]
pub struct DeleteRequest {
    /// A path, or `pool/volume`.
    pub iso: String,
    /// A file outside every pool may be deleted (on this machine).
    pub file: bool,
    pub yes: bool,
    pub dry_run: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_file_skips_comments_and_blank_lines() {
        let text = "# the fleet\nqemu+ssh://kvm1/system\n\n  qemu+ssh://kvm2/system  # rack 2\n#qemu:///off\n";
        assert_eq!(
            parse_hosts(text),
            ["qemu+ssh://kvm1/system", "qemu+ssh://kvm2/system"]
        );
    }

    #[test]
    fn a_byte_order_mark_is_not_part_of_the_first_host() {
        assert_eq!(parse_hosts("\u{feff}qemu:///system\n"), ["qemu:///system"]);
        assert!(parse_hosts("\u{feff}# nothing\n").is_empty());
    }

    #[test]
    fn connect_then_hosts_file_each_once_and_none_is_the_default() {
        assert_eq!(connections(&[], None, None).unwrap(), [None]);
        assert_eq!(connections(&["".into()], None, None).unwrap(), [None]);
        let dir = std::env::temp_dir().join(format!("hosts-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("hosts");
        std::fs::write(
            &file,
            "b\na\nqemu+ssh://KVM1:22/system?\nqemu+ssh://kvm1/system\n",
        )
        .unwrap();
        let env = Some(OsString::from("env:///x"));
        assert_eq!(
            connections(&["a".into(), "c".into()], Some(&file), env.clone()).unwrap(),
            [
                Some("a".into()),
                Some("c".into()),
                Some("b".into()),
                Some("qemu+ssh://KVM1:22/system?".into())
            ]
        );
        // LIBVIRT_URI only without --connect and --hosts.
        assert_eq!(connections(&[], Some(&file), env.clone()).unwrap().len(), 3);
        assert_eq!(
            connections(&["a".into()], None, env.clone()).unwrap(),
            [Some("a".into())]
        );
        assert_eq!(
            connections(&[], None, env).unwrap(),
            [Some("env:///x".into())]
        );
        assert_eq!(connections(&[], None, Some("".into())).unwrap(), [None]);

        std::fs::write(&file, "# retired: qemu+ssh://kvm0/system\n\n").unwrap();
        let empty = connections(&[], Some(&file), None).unwrap_err();
        assert_eq!(
            format!("{empty:#}"),
            format!("the hosts file {} lists no host", file.display())
        );
        let missing = connections(&[], Some(&dir.join("nope")), None).unwrap_err();
        assert!(
            format!("{missing:#}").starts_with("cannot read the hosts file"),
            "{missing:#}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
