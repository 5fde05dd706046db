//! Completion from the live host, as `virsh complete` does it: clap_complete's
//! dynamic completion (`COMPLETE=bash dismount_iso_qemu` prints the shell's
//! registration), with domain names, drive targets, pools and pool ISOs read
//! through the virsh layer from the hosts the line being completed names,
//! all within one bound.

mod shells;

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use clap::{ArgMatches, CommandFactory};
use clap_complete::CompleteEnv;
use clap_complete::engine::{
    ArgValueCompleter, CompletionCandidate, PathCompleter, ValueCompleter,
};
use clap_complete::env::{Elvish, Powershell, Shells};

use super::args::{Args, DEFAULT_MAX_CONNECTIONS};
use super::options::connections;
use crate::utils::is_unsafe_on_a_terminal;
use crate::virsh::domxml::parse_domain_xml;
use crate::virsh::{DeadlineRunner, ListingFor, Runner, Uri, Virsh, VirshConfig, VirshError};

/// Every host's reads of one completion together: a host that does not
/// answer completes nothing within it, and the shell waits no longer.
const BOUND: Duration = Duration::from_secs(2);

/// The shells a completion answers; bash, zsh and fish quote what they
/// insert (`shells`), elvish and powershell as clap_complete has them.
const SHELLS: Shells<'static> = Shells(&[
    &shells::Bash,
    &Elvish,
    &shells::Fish,
    &Powershell,
    &shells::Zsh,
]);

/// Answers a completion request (`COMPLETE=SHELL` in the environment):
/// without words, the shell's registration script; with them, the
/// candidates. False for any other run, which goes on as usual: so is one
/// whose `COMPLETE` names no shell (`COMPLETE=1`, an admin's own variable),
/// which clap_complete would end with an error.
pub fn complete_from_env() -> bool {
    if !std::env::var_os("COMPLETE").is_some_and(|name| names_a_shell(&name)) {
        return false;
    }
    let current_dir = std::env::current_dir().ok();
    CompleteEnv::with_factory(command)
        .shells(SHELLS)
        .try_complete(std::env::args_os(), current_dir.as_deref())
        .unwrap_or_else(|error| error.exit())
}

/// `bash`, or a path to it (`COMPLETE=$SHELL`), as clap_complete reads it.
fn names_a_shell(name: &OsStr) -> bool {
    let path = Path::new(name);
    let stem = path.file_stem().unwrap_or(name).to_string_lossy();
    SHELLS.completer(&stem).is_some()
}

/// The words of the line being completed, the tool's name first, up to
/// the one being completed, as a shell adapter read them.
static LINE: OnceLock<Vec<OsString>> = OnceLock::new();

/// The candidates for the last of `words` (the word being completed, as
/// far as typed, unquoted), the words before it kept for the completers.
/// A word after one dash (`-d`) that is no cluster of the command's short
/// options is not offered clap_complete's extensions of it (`-dy`, `-dh`):
/// a name starting with it (`-db`) is then the one candidate.
fn candidates(
    cmd: &mut clap::Command,
    words: Vec<OsString>,
    current_dir: Option<&Path>,
) -> std::io::Result<Vec<CompletionCandidate>> {
    let Some(current) = words.last().cloned() else {
        return Ok(Vec::new());
    };
    let index = words.len() - 1;
    LINE.get_or_init(|| words[..index].to_vec());
    let mut found = clap_complete::engine::complete(cmd, words, index, current_dir)?;
    let current = current.to_string_lossy();
    if current.len() >= 2 && current.starts_with('-') && !current.starts_with("--") {
        let shorts: Vec<char> = Line::from_env()
            .command(cmd)
            .get_arguments()
            .filter_map(clap::Arg::get_short)
            .collect();
        if !current[1..].chars().all(|c| shorts.contains(&c)) {
            found.retain(|candidate| {
                let is_option = candidate.get_id().is_some_and(|id| id.starts_with("arg::"));
                !(is_option && candidate.get_value().len() == current.len() + 1)
            });
        }
    }
    Ok(found)
}

/// A value's candidates from what is typed of it.
type Completer = fn(&OsStr) -> Vec<CompletionCandidate>;

/// Which argument completes from the host, and how (subcommand, argument).
const COMPLETERS: [(&str, &str, Completer); 13] = [
    ("mount", "domain", domains),
    ("mount", "iso", isos),
    ("mount", "pool", pools),
    ("mount", "target", targets),
    ("eject", "domain", domains),
    ("eject", "target", targets),
    ("eject", "iso", isos),
    ("isos", "iso", isos),
    ("delete-iso", "iso", isos),
    ("upload", "pool", pools),
    ("boot-iso", "domain", domains),
    ("boot-iso", "iso", isos),
    ("boot-iso", "target", targets),
];

/// The command line with [`COMPLETERS`] on their arguments.
fn command() -> clap::Command {
    COMPLETERS
        .into_iter()
        .fold(Args::command(), |command, (subcommand, arg, completer)| {
            command.mut_subcommand(subcommand, |sub| {
                sub.mut_arg(arg, |arg| arg.add(ArgValueCompleter::new(completer)))
            })
        })
}

/// `DOMAIN`: the hosts' domain names; for `mount --match`, where the
/// first word is the ISO, the ISOs.
fn domains(current: &OsStr) -> Vec<CompletionCandidate> {
    let line = Line::from_env();
    if line.subcommand.as_deref() == Some("mount") && line.matching {
        return isos(current);
    }
    offer(line.ask(domain_names), current)
}

/// An ISO: `POOL/VOLUME` of the hosts' ISO volumes, as `isos` and
/// `library` name them, and local files.
fn isos(current: &OsStr) -> Vec<CompletionCandidate> {
    // No pool's name starts with a slash: an absolute path is a file's.
    let volumes = if current.as_encoded_bytes().starts_with(b"/") {
        Vec::new()
    } else {
        Line::from_env().ask(iso_volumes)
    };
    let mut candidates = offer(volumes, current);
    candidates.extend(
        PathCompleter::file()
            .complete(current)
            .into_iter()
            .filter(|path| is_shown_whole(path.get_value())),
    );
    candidates
}

/// `--pool`: the hosts' active storage pools.
fn pools(current: &OsStr) -> Vec<CompletionCandidate> {
    offer(Line::from_env().ask(|virsh| virsh.active_pools()), current)
}

/// `--target`: the removable drives (CD-ROM, floppy) of the line's domain.
fn targets(current: &OsStr) -> Vec<CompletionCandidate> {
    let line = Line::from_env();
    let Some(domain) = line.domain.clone() else {
        return Vec::new();
    };
    offer(line.ask(|virsh| drive_targets(virsh, &domain)), current)
}

fn domain_names(virsh: &Virsh) -> Result<Vec<String>, VirshError> {
    let listing = virsh.list_all(ListingFor::Media)?;
    Ok(listing
        .stats
        .into_iter()
        .map(|domain| domain.name)
        .collect())
}

fn iso_volumes(virsh: &Virsh) -> Result<Vec<String>, VirshError> {
    Ok(virsh
        .volumes()?
        .into_iter()
        .filter(|volume| volume.is_iso())
        .map(|volume| format!("{}/{}", volume.pool, volume.name))
        .collect())
}

fn drive_targets(virsh: &Virsh, domain: &str) -> Result<Vec<String>, VirshError> {
    let xml = virsh.run(&["dumpxml", "--domain", domain])?.stdout;
    Ok(parse_domain_xml(&xml)
        .map(|parsed| {
            parsed
                .drives
                .into_iter()
                .map(|drive| drive.target)
                .collect()
        })
        .unwrap_or_default())
}

/// The names that start with what is typed, each once, sorted; a name
/// holding a control or format character is left out, since a shell shows
/// it as something else or acts on it (the untrusted text of a host).
fn offer(mut names: Vec<String>, current: &OsStr) -> Vec<CompletionCandidate> {
    let typed = current.to_string_lossy();
    names.retain(|name| name.starts_with(typed.as_ref()) && is_shown_whole(OsStr::new(name)));
    names.sort();
    names.dedup();
    names.into_iter().map(CompletionCandidate::new).collect()
}

fn is_shown_whole(text: &OsStr) -> bool {
    text.to_str()
        .is_some_and(|text| !text.chars().any(is_unsafe_on_a_terminal))
}

/// What the line being completed says before the word being completed:
/// where to ask, and the subcommand's domain.
#[derive(Debug, Default)]
struct Line {
    connect: Vec<String>,
    hosts: Option<PathBuf>,
    /// `--max-connections`: the hosts asked at once.
    max_connections: usize,
    subcommand: Option<String>,
    /// The subcommand's `DOMAIN`, once typed.
    domain: Option<String>,
    /// `--match` given: `mount`'s first word is the ISO.
    matching: bool,
}

impl Line {
    /// The line of this completion request: as the shell adapter read it
    /// (bash, zsh, fish), else the words the registration passes after
    /// `--`, up to the shell's index of the word being completed.
    fn from_env() -> Line {
        let words = LINE.get().cloned().unwrap_or_else(|| {
            let index = std::env::var("_CLAP_COMPLETE_INDEX")
                .ok()
                .and_then(|index| index.parse().ok());
            words_before_cursor(std::env::args_os().collect(), index)
        });
        Line::parse(words)
    }

    /// The (sub)command the line is in.
    fn command<'c>(&self, cmd: &'c clap::Command) -> &'c clap::Command {
        self.subcommand
            .as_deref()
            .and_then(|name| cmd.find_subcommand(name))
            .unwrap_or(cmd)
    }

    /// The options as clap reads them from an unfinished line (a missing
    /// required argument, a bad value: ignored).
    fn parse(words: Vec<OsString>) -> Line {
        let Ok(top) = Args::command()
            .ignore_errors(true)
            .try_get_matches_from(words)
        else {
            return Line::default();
        };
        // Global options reach the subcommand's matches wherever given.
        let (subcommand, matches) = match top.subcommand() {
            Some((name, sub)) => (Some(name.to_owned()), sub),
            None => (None, &top),
        };
        let matching = matches.try_contains_id("pattern").unwrap_or(false);
        let domain = string(matches, "domain").filter(|_| !matching);
        Line {
            connect: matches
                .try_get_many::<String>("connect")
                .ok()
                .flatten()
                .map(|uris| uris.cloned().collect())
                .unwrap_or_default(),
            hosts: matches
                .try_get_one::<PathBuf>("hosts")
                .ok()
                .flatten()
                .map(|path| home_expanded(path.as_os_str())),
            max_connections: matches
                .try_get_one::<u16>("max_connections")
                .ok()
                .flatten()
                .map_or(usize::from(DEFAULT_MAX_CONNECTIONS), |n| usize::from(*n)),
            subcommand,
            domain,
            matching,
        }
    }

    /// What `read` gives on each host of the line, `--max-connections` of
    /// them at once, together: a host that fails or does not answer within
    /// [`BOUND`] gives nothing (its virsh killed and reaped by the runner).
    fn ask(&self, read: impl Fn(&Virsh) -> Result<Vec<String>, VirshError> + Sync) -> Vec<String> {
        // A FIFO nobody writes would hold the TAB for ever, `/dev/zero`
        // fill the memory: the completion reads a regular file only.
        if let Some(hosts) = &self.hosts
            && !std::fs::metadata(hosts).is_ok_and(|meta| meta.is_file())
        {
            return Vec::new();
        }
        let Ok(mut hosts) = connections(
            &self.connect,
            self.hosts.as_deref(),
            std::env::var_os("LIBVIRT_URI"),
        ) else {
            return Vec::new();
        };
        // A host the line names (`-c`, a `--hosts` file) whose URI runs a
        // program of its own (`ext`, `command=`) is not asked: a TAB never
        // runs what a pasted line names. LIBVIRT_URI is the admin's own.
        if !self.connect.is_empty() || self.hosts.is_some() {
            hosts.retain(|uri| {
                uri.as_deref()
                    .is_none_or(|uri| !Uri::parse(uri).names_a_program())
            });
        }
        // Never the line's `--virsh`: a TAB on a pasted line that names a
        // program must not run it. The admin's own VIRSH is trusted.
        let program = std::env::var("VIRSH")
            .ok()
            .filter(|virsh| !virsh.is_empty())
            .map_or_else(
                || "virsh".to_owned(),
                |virsh| home_expanded(OsStr::new(&virsh)).display().to_string(),
            );
        let runner: Arc<dyn Runner> = Arc::new(DeadlineRunner::new(Instant::now() + BOUND));
        let found =
            crate::workers::bounded(&hosts, self.max_connections, Duration::ZERO, |connect| {
                let virsh = Virsh::new(
                    VirshConfig {
                        program: program.clone(),
                        // No prompt on the terminal in the middle of a TAB.
                        connect: connect
                            .as_deref()
                            .map(|uri| Uri::parse(uri).without_prompts()),
                        timeout: BOUND,
                        sessions: 1,
                    },
                    Arc::clone(&runner),
                );
                read(&virsh).unwrap_or_default()
            });
        found.concat()
    }
}

/// A path of the line as the shell will give it to the command once the
/// line runs: a leading `~/` is `$HOME/`. The shells hand a completion
/// the word as typed (`--hosts ~/kvm-hosts`), unexpanded. A `~` quoted on
/// the line (a directory named `~`) is read so too.
fn home_expanded(path: &OsStr) -> PathBuf {
    match (std::env::var_os("HOME"), Path::new(path).strip_prefix("~")) {
        (Some(home), Ok(rest)) => Path::new(&home).join(rest),
        _ => PathBuf::from(path),
    }
}

fn string(matches: &ArgMatches, id: &str) -> Option<String> {
    matches.try_get_one::<String>(id).ok().flatten().cloned()
}

/// The words of the line up to the one at `index` (the one being
/// completed), from the completer's arguments: `PROGRAM -- WORD…`.
fn words_before_cursor(args: Vec<OsString>, index: Option<usize>) -> Vec<OsString> {
    let mut words: Vec<OsString> = args
        .into_iter()
        .skip_while(|arg| arg != "--")
        .skip(1)
        .collect();
    let cursor = index.unwrap_or(words.len().saturating_sub(1));
    words.truncate(cursor);
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(words: &[&str]) -> Line {
        Line::parse(
            std::iter::once("dismount_iso_qemu")
                .chain(words.iter().copied())
                .map(OsString::from)
                .collect(),
        )
    }

    /// Each completer sits on an argument that exists (`mut_arg` panics
    /// on a misspelt one) and the command stays consistent.
    #[test]
    fn every_completer_has_its_argument() {
        let command = command();
        for (subcommand, arg, _) in COMPLETERS {
            let sub = command.find_subcommand(subcommand).unwrap();
            let arg = sub.get_arguments().find(|a| a.get_id() == arg).unwrap();
            assert!(
                arg.get::<ArgValueCompleter>().is_some(),
                "{subcommand} {arg}"
            );
        }
        command.debug_assert();
    }

    #[test]
    fn the_words_before_the_cursor_follow_the_separator() {
        let args = ["/bin/tool", "--", "tool", "-c", "x", "eject", "we"].map(OsString::from);
        assert_eq!(
            words_before_cursor(args.to_vec(), Some(4)),
            ["tool", "-c", "x", "eject"].map(OsString::from)
        );
        assert_eq!(
            words_before_cursor(args.to_vec(), None),
            ["tool", "-c", "x", "eject"].map(OsString::from)
        );
        // The cursor past the last word: every word.
        assert_eq!(words_before_cursor(args.to_vec(), Some(5)).len(), 5);
    }

    #[test]
    fn an_unfinished_line_names_its_hosts_and_domain() {
        let eject = line(&["-c", "test:///a", "eject", "web", "--target"]);
        assert_eq!(eject.connect, ["test:///a"]);
        assert_eq!(eject.subcommand.as_deref(), Some("eject"));
        assert_eq!(eject.domain.as_deref(), Some("web"));
        // As the command itself would run: the subcommand's --connect
        // replaces the one before it.
        let both = line(&["-c", "test:///a", "eject", "--connect", "test:///b", "web"]);
        assert_eq!(both.connect, ["test:///b"]);
        let mount = line(&["--hosts", "/etc/hosts.list", "mount", "--virsh", "/v", "db"]);
        assert_eq!(mount.hosts, Some(PathBuf::from("/etc/hosts.list")));
        assert_eq!(mount.domain.as_deref(), Some("db"));
        // With --match, mount's first word is the ISO, not a domain.
        let matching = line(&["mount", "--match", "^web", "x.iso"]);
        assert!(matching.matching);
        assert_eq!(matching.domain, None);
        assert_eq!(line(&["isos", "--iso"]).domain, None);
    }

    #[test]
    fn offered_names_match_the_prefix_and_show_whole() {
        let names = ["web", "db", "web\tprod", "web\u{200b}x", "webby", "web"]
            .map(str::to_owned)
            .to_vec();
        let offered: Vec<String> = offer(names, OsStr::new("web"))
            .iter()
            .map(|c| c.get_value().to_string_lossy().into_owned())
            .collect();
        assert_eq!(offered, ["web", "webby"]);
    }
}
