//! The global options as plain values (free of clap types), the hosts
//! they name, the fleet a command runs on, and what every command runs
//! with ([`Context`]).

use std::collections::HashSet;
use std::ffi::OsString;
use std::io::{self, Read, StdoutLock, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, Result, anyhow, bail};

use super::prompt::Sink;
use crate::fleet::Fleet;
use crate::probe::ProbeOptions;
use crate::virsh::{Uri, VirshConfig, descriptors};

/// Everything the core needs of the global options, free of clap types.
#[derive(Debug, Clone)]
pub struct Options {
    /// The hosts, in order; `None` is virsh's default connection.
    pub connections: Vec<Option<String>>,
    /// Whether `--hosts FILE` named some of them.
    pub from_hosts_file: bool,
    /// How to run virsh; `connect` and `sessions` are set per host.
    pub virsh: VirshConfig,
    /// `--sessions`, when given.
    pub sessions: Option<usize>,
    /// `--max-connections`: the virsh sessions open at once, all hosts together.
    pub max_connections: usize,
    pub probe: ProbeOptions,
}

impl Options {
    /// The fleet every host given makes, unless the command shapes it
    /// otherwise (`commands::Command::shape`).
    pub fn shape(&self) -> FleetShape {
        FleetShape {
            connections: self.connections.clone(),
            sessions: self.sessions,
            other_descriptors: 0,
            filesystems: false,
        }
    }

    /// The fleet `shape` describes, its sessions within what the
    /// open-files limit has room for.
    pub fn fleet(&self, shape: FleetShape) -> Arc<Fleet> {
        let probe = ProbeOptions {
            filesystems: shape.filesystems,
            ..self.probe.clone()
        };
        Arc::new(Fleet::new(
            &shape.connections,
            &self.virsh,
            &probe,
            shape.sessions,
            fit_descriptors(self.max_connections, shape.other_descriptors),
        ))
    }
}

/// What a command asks of the fleet it runs on.
#[derive(Debug, Clone)]
pub struct FleetShape {
    /// The hosts, in order.
    pub connections: Vec<Option<String>>,
    /// Long-lived virsh sessions per host (`None`: the default).
    pub sessions: Option<usize>,
    /// The file descriptors the command holds besides virsh's sessions.
    pub other_descriptors: usize,
    /// Whether scans ask each guest's agent for its filesystems.
    pub filesystems: bool,
}

/// The budget of sessions the open-files limit has room for (raised to
/// fit where it can be): `max_connections`, unless the hard limit is too
/// low, which a warning says.
fn fit_descriptors(max_connections: usize, others: usize) -> usize {
    let fit = descriptors::make_room(max_connections, others);
    if fit < max_connections {
        eprintln!(
            "dismount_iso_qemu: warning: the open-files limit (ulimit -n) is {}, room for \
             {fit} virsh session(s) at once, not --max-connections {max_connections}",
            descriptors::soft_limit()
        );
    }
    fit
}

/// What every command runs with.
pub struct Context {
    pub fleet: Arc<Fleet>,
    pub options: Options,
    /// Whether tables are coloured.
    pub colour: bool,
    /// The whole command line's clap tree, for usage errors, completion
    /// scripts and man pages.
    pub cli: fn() -> clap::Command,
}

impl Context {
    /// Runs `write` on the tool's stdout. A reader that left after the
    /// outcome was decided (`| head`) leaves it standing.
    pub fn to_stdout(
        &self,
        write: impl FnOnce(&mut Sink<StdoutLock<'static>>) -> Result<ExitCode>,
    ) -> Result<ExitCode> {
        let mut out = Sink::new(io::stdout().lock());
        let code = write(&mut out)?;
        match out.flush() {
            Err(error) if error.kind() == io::ErrorKind::BrokenPipe => Ok(code),
            flushed => Ok(flushed.map(|()| code)?),
        }
    }

    /// A usage error found after parsing: clap's one line, exit 2.
    pub fn usage_error(&self, message: &str) -> ! {
        super::exit::usage_error((self.cli)(), message)
    }
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
