//! `migrate-check`: for each VM and destination, whether its CD-ROM and
//! floppy media are there as libvirt's migration needs them, the ways
//! out as commands, and `--fix eject` / `--fix copy` carrying out the
//! first two of them with `eject`'s and `upload`'s plan and rules.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, Result, bail};
use regex::Regex;

use super::upload::progress_bar;
use crate::cli::change::{ChangeArgs, ChangeOptions};
use crate::cli::exit;
use crate::cli::options::{Context, FleetShape, Options};
use crate::cli::prompt::{self, Prompt};
use crate::cli::render::format_bytes;
use crate::cli::steps::execute;
use crate::cli::values::parse_regex;
use crate::fleet::{Fleet, Host};
use crate::media::migrate::{Check, Origin, Reason, Route, Storage, Verdict, check};
use crate::media::{
    DomainMedia, MediaManager, SourceVolume, Step, UploadOptions, Uploaded, check_file, plan_eject,
};
use crate::utils::sanitize;
use crate::virsh::groups::last_words;
use crate::virsh::{Budget, SessionRunner, Uri, Virsh, VirshConfig};

const EXAMPLES: &str = "\
Examples:
  dismount_iso_qemu -c qemu+ssh://root@kvm1/system migrate-check web-1 --to qemu+ssh://root@kvm2/system
  dismount_iso_qemu --hosts hosts.txt migrate-check --all
  dismount_iso_qemu -c qemu+ssh://kvm1/system migrate-check --match '^web-' --to qemu+ssh://kvm2/system --json
  dismount_iso_qemu -c qemu+ssh://kvm1/system migrate-check web-1 --to qemu+ssh://kvm2/system --fix copy --verify
  dismount_iso_qemu -c qemu+ssh://kvm1/system migrate-check --all --to qemu+ssh://kvm2/system --fix eject --dry-run";

/// Whether VMs can move to other hosts as far as their CD-ROM and floppy media go (the file or volume there, of the same size), and the commands that clear what blocks
#[derive(Debug, clap::Args)]
#[command(
    group = clap::ArgGroup::new("which").required(true).args(["domains", "all", "pattern"]),
    after_help = EXAMPLES
)]
pub struct MigrateCheckArgs {
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
}

/// How `migrate-check --fix` clears a drive that blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FixHow {
    /// Eject it on the source (`eject`'s plan and rules)
    Eject,
    /// Put the ISO where it is missing: the source's file uploaded, or its volume streamed (`upload`'s rules)
    Copy,
}

impl MigrateCheckArgs {
    /// The destinations are hosts of the run, after its sources.
    pub fn shape(&self, options: &Options) -> Result<FleetShape> {
        let (connections, _) =
            connections(&options.connections, &self.to, options.from_hosts_file)?;
        Ok(FleetShape {
            connections,
            ..options.shape()
        })
    }

    pub fn run(self, context: &Context) -> Result<ExitCode> {
        // How many of the fleet's hosts are sources (see `connections`).
        let sources = (!self.to.is_empty()).then_some(context.options.connections.len());
        let change = (&self.change).into();
        let request = MigrateRequest {
            verify: self.verify,
            selection: match (self.pattern, self.all) {
                (Some(pattern), _) => DomainSelection::Matching(pattern),
                (None, true) => DomainSelection::All,
                (None, false) => DomainSelection::Named(self.domains),
            },
            json: self.json,
            fix: self.fix,
        };
        context.to_stdout(|out| {
            prompt::with_stdin(out, |prompt| {
                migrate_check(&context.fleet, prompt, &request, sources, change)
            })
        })
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

/// The hosts of a run, sources first, and how many are sources (`None`:
/// every host against every other, from `--hosts` without `--to`). A
/// destination that is a source, or no destination at all, is refused
/// before any host is asked.
fn connections(
    sources: &[Option<String>],
    to: &[String],
    hosts_file: bool,
) -> Result<(Vec<Option<String>>, Option<usize>)> {
    if to.is_empty() {
        if !hosts_file {
            bail!(
                "migrate-check needs a destination: --to URI (repeatable), or --hosts FILE to \
                 check every host in it against every other"
            );
        }
        if sources.len() < 2 {
            bail!("migrate-check --hosts needs two hosts or more to check against each other");
        }
        return Ok((sources.to_vec(), None));
    }
    let canonical = |uri: &str| Uri::parse(uri).canonical();
    let mut hosts = sources.to_vec();
    for uri in to {
        if uri.is_empty() {
            bail!("--to needs a URI, not an empty string");
        }
        if sources
            .iter()
            .flatten()
            .any(|source| canonical(source) == canonical(uri))
        {
            bail!(
                "the destination {} is the source host: a VM does not migrate to where it is",
                sanitize(&Uri::parse(uri).public())
            );
        }
        if !hosts
            .iter()
            .flatten()
            .any(|seen| canonical(seen) == canonical(uri))
        {
            hosts.push(Some(uri.clone()));
        }
    }
    Ok((hosts, Some(sources.len())))
}

/// What one host showed: its storage and, for a source, the VMs asked
/// for.
pub struct Side {
    /// The host's URI, canonical: as given, or as virsh says it connected
    /// (virsh's default connection).
    pub canonical: String,
    pub media: MediaManager,
    pub storage: Storage,
    pub domains: Vec<DomainMedia>,
    /// The UUIDs of the domains running there: a VM runs on one host at
    /// a time, so a destination running one of a source's is most likely
    /// that host.
    pub running: Vec<String>,
}

/// Reads one host: its pools and volumes, and (with `selection`) its
/// domains' drives.
pub fn read_side(virsh: &Virsh, selection: Option<&DomainSelection>) -> Result<Side> {
    let media = MediaManager::new(virsh.clone());
    let uri = virsh.uri_label();
    let (pools, volumes) = virsh
        .storage()
        .with_context(|| format!("cannot list storage pools on {uri}"))?;
    // The test driver's pools live in its memory: its paths are no files
    // of this machine, only its volumes are known, as a remote host's.
    let connect = match &virsh.config().connect {
        Some(connect) => connect.clone(),
        None => virsh
            .run(&["uri"])
            .context("cannot ask virsh which URI it connects to")?
            .stdout
            .trim()
            .to_owned(),
    };
    let running = virsh
        .run(&["list", "--uuid"])
        .with_context(|| format!("cannot list the running domains on {uri}"))?
        .stdout
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(str::to_owned)
        .collect();
    let parsed = Uri::parse(&connect);
    let local = !parsed.is_remote() && parsed.driver() != "test";
    let files = if local {
        crate::media::Files::Local
    } else {
        crate::media::Files::Remote
    };
    let domains = match selection {
        None => Vec::new(),
        Some(selection) => {
            let mut domains = media.load_all()?;
            domains.retain(|domain| selection.wants(&domain.name));
            domains
        }
    };
    Ok(Side {
        canonical: parsed.canonical(),
        media,
        storage: Storage {
            pools,
            volumes,
            files,
        },
        domains,
        running,
    })
}

/// A host of a check: as shown, as commands connect to it, what it showed.
pub struct Party<'a> {
    pub uri: String,
    pub connect: Option<String>,
    pub side: &'a Side,
}

impl<'a> Party<'a> {
    pub fn of(host: &Host, side: &'a Side) -> Self {
        Party {
            uri: host.uri(),
            connect: host.virsh().config().connect.clone(),
            side,
        }
    }
}

/// Refuses a destination that is a source (virsh's default connection
/// that a source left to virsh, or its URI spelt alike). Returns a warning
/// for a destination that runs one of a source's running VMs: most likely
/// the source under another spelling (`qemu+ssh://this-host/system` for
/// `qemu:///system`), against which every VM would be `ok`; checked all
/// the same, as the lab's own tests check the lab over ssh.
fn refuse_itself(sources: &[Party], destinations: &[Party]) -> Result<Vec<String>> {
    let mut warnings = Vec::new();
    for source in sources {
        for dest in destinations.iter().filter(|dest| dest.uri != source.uri) {
            if source.side.canonical == dest.side.canonical {
                bail!(
                    "the destination {} is the source host: a VM does not migrate to where it is",
                    sanitize(&dest.uri)
                );
            }
            if let Some(uuid) = dest
                .side
                .running
                .iter()
                .find(|uuid| source.side.running.contains(uuid))
            {
                warnings.push(format!(
                    "the destination {} runs a VM that runs on {} (UUID {}): it is likely the \
                     same host under another URI, where every VM is ok",
                    sanitize(&dest.uri),
                    sanitize(&source.uri),
                    sanitize(uuid)
                ));
            }
        }
    }
    Ok(warnings)
}

/// One source host's checks: against each destination that answered.
pub struct SourceChecks<'p, 'a> {
    pub source: &'p Party<'a>,
    pub checks: Vec<Check>,
}

/// Every VM of every source against every destination but itself.
pub fn check_all<'p, 'a>(
    sources: &'p [Party<'a>],
    destinations: &[Party],
) -> Vec<SourceChecks<'p, 'a>> {
    sources
        .iter()
        .map(|source| {
            let mut checks = Vec::new();
            for domain in &source.side.domains {
                for dest in destinations.iter().filter(|dest| dest.uri != source.uri) {
                    let route = Route {
                        source_connect: source.connect.as_deref(),
                        destination_connect: dest.connect.as_deref(),
                        destination: &dest.uri,
                    };
                    checks.push(check(
                        domain,
                        &source.side.storage,
                        &dest.side.storage,
                        &route,
                    ));
                }
            }
            SourceChecks { source, checks }
        })
        .collect()
}

/// `migrate-check`: every host read side by side (a host that cannot be
/// read is a line, and the others are checked: exit 3), the verdicts
/// written (exit 1 when one is blocked), then, with `--fix eject`, the
/// drives that block ejected on their source as `eject` would.
fn migrate_check<R: BufRead, W: Write>(
    fleet: &Fleet,
    prompt: &mut Prompt<R, W>,
    request: &MigrateRequest,
    sources: Option<usize>,
    change: ChangeOptions,
) -> Result<ExitCode> {
    if request.verify && request.fix != Some(FixHow::Copy) {
        bail!("--verify reads a copy back: it goes with --fix copy; nothing was checked");
    }
    let source_count = sources.unwrap_or(fleet.hosts.len());
    let reads = fleet.each(|host| {
        let index = fleet
            .hosts
            .iter()
            .position(|h| std::ptr::eq(h, host))
            .expect("a host of the fleet");
        read_side(
            host.virsh(),
            (index < source_count).then_some(&request.selection),
        )
    });
    let mut failed = Vec::new();
    let mut sides: Vec<(usize, Side)> = Vec::new();
    for (index, scan) in reads.into_iter().enumerate() {
        match scan.result {
            Ok(side) => sides.push((index, side)),
            Err(error) => failed.push(crate::cli::report::host_error(&scan.uri, &error)),
        }
    }
    let pick = |wanted: &dyn Fn(usize) -> bool| -> Vec<Party> {
        sides
            .iter()
            .filter(|(index, _)| wanted(*index))
            .map(|(index, side)| Party::of(&fleet.hosts[*index], side))
            .collect()
    };
    let source_sides = pick(&|index| index < source_count);
    let destination_sides = pick(&|index| sources.is_none() || index >= source_count);
    if let DomainSelection::Named(names) = &request.selection {
        let unknown: Vec<String> = names
            .iter()
            .filter(|name| {
                !source_sides
                    .iter()
                    .any(|source| source.side.domains.iter().any(|d| &d.name == *name))
            })
            .map(|name| format!("'{}'", sanitize(name)))
            .collect();
        if !unknown.is_empty() && failed.is_empty() {
            bail!(
                "no domain named {} on the source host(s); nothing was checked",
                unknown.join(", ")
            );
        }
    }
    for warning in refuse_itself(&source_sides, &destination_sides)? {
        eprintln!("dismount_iso_qemu: warning: {warning}");
    }
    let results = check_all(&source_sides, &destination_sides);
    let blocked = results
        .iter()
        .flat_map(|source| &source.checks)
        .any(|check| check.verdict == Verdict::Blocked);
    if request.json {
        let rows: Vec<crate::cli::report::WithUri<Check>> = results
            .iter()
            .flat_map(|result| {
                result
                    .checks
                    .iter()
                    .map(|check| crate::cli::report::WithUri {
                        uri: &result.source.uri,
                        row: check,
                    })
            })
            .collect();
        crate::utils::write_json(prompt.out(), &rows)?;
    } else {
        write_checks(prompt.out(), &results, source_sides.len() > 1)?;
    }
    let mut code = if blocked {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    };
    let fixed = match request.fix {
        None => None,
        Some(FixHow::Eject) => eject_blocked(prompt, &results, change)?,
        Some(FixHow::Copy) => {
            copy_blocked(prompt, &results, &destination_sides, change, request.verify)?
        }
    };
    if let Some(fixed) = fixed {
        code = fixed;
    }
    if let Some(signal) = crate::virsh::groups::caught_signal() {
        return Ok(exit::signal(signal));
    }
    if failed.is_empty() {
        return Ok(code);
    }
    crate::cli::report::report_failed_hosts(&failed, fleet.hosts.len()).map(|partial| {
        if partial == ExitCode::SUCCESS {
            code
        } else {
            partial
        }
    })
}

/// The verdicts, a line per VM and destination, and under each drive that
/// is not as it must be: what was found and the commands that clear it.
pub fn write_checks(
    out: &mut impl Write,
    results: &[SourceChecks],
    with_source: bool,
) -> Result<()> {
    let mut counts = [0usize; 3];
    for source in results {
        if with_source {
            writeln!(out, "{}:", sanitize(&source.source.uri))?;
        }
        for check in &source.checks {
            counts[check.verdict as usize] += 1;
            writeln!(
                out,
                "{} -> {}: {}",
                sanitize(&check.domain),
                sanitize(&check.destination),
                check.verdict.as_str()
            )?;
            for drive in check.drives.iter().filter(|drive| drive.reason.is_some()) {
                let views: Vec<&str> = [(drive.live, "live"), (drive.config, "config")]
                    .into_iter()
                    .filter_map(|(held, view)| held.then_some(view))
                    .collect();
                writeln!(
                    out,
                    "  {} {} {} ({}): {}{}",
                    sanitize(&drive.target),
                    drive.device,
                    sanitize(drive.source.as_deref().unwrap_or("")),
                    views.join(", "),
                    if drive.blocks { "BLOCKS: " } else { "" },
                    sanitize(drive.detail.as_deref().unwrap_or(""))
                )?;
                for line in &drive.fix {
                    // Quoted for a shell, and so safe on a terminal.
                    writeln!(out, "    {line}")?;
                }
            }
        }
    }
    let [ok, warning, blocked] = counts;
    writeln!(
        out,
        "{} check(s): {ok} ok, {warning} warning, {blocked} blocked.",
        ok + warning + blocked
    )?;
    Ok(())
}

/// `--fix eject`: every drive that blocks a VM's move anywhere, ejected
/// on its source (only the media that blocks, in the views holding it),
/// one host's plan at a time, shown and confirmed as `eject` does.
/// `None` when nothing blocks.
fn eject_blocked<R: BufRead, W: Write>(
    prompt: &mut Prompt<R, W>,
    results: &[SourceChecks],
    change: ChangeOptions,
) -> Result<Option<ExitCode>> {
    let mut failed = None;
    for source in results {
        let mut steps: Vec<Step> = Vec::new();
        for check in &source.checks {
            let Some(domain) = source
                .source
                .side
                .domains
                .iter()
                .find(|d| d.name == check.domain)
            else {
                continue;
            };
            for drive in check.drives.iter().filter(|drive| drive.blocks) {
                let iso = crate::media::IsoName::exact(drive.source.as_deref().unwrap_or(""));
                let Some(step) = plan_eject(domain, &drive.target, Some(&iso), change.force) else {
                    continue;
                };
                if !steps.contains(&step) {
                    steps.push(step);
                }
            }
        }
        if steps.is_empty() {
            continue;
        }
        if results.len() > 1 {
            writeln!(prompt.out(), "{}:", sanitize(&source.source.uri))?;
        }
        let ejected = execute(
            &source.source.side.media,
            prompt,
            &steps,
            change,
            true,
            "ejected",
        )?;
        // A dry run changed nothing: the verdict stands.
        let still = ejected != ExitCode::SUCCESS || change.dry_run;
        failed = Some(failed.unwrap_or(false) || still);
    }
    Ok(failed.map(|failed| {
        if failed {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        }
    }))
}

/// The menu's check: every VM of `host` against the destination `uri`
/// (its own connection, one session), as `migrate-check --all --to URI`
/// writes it.
pub fn check_host_against(host: &Host, uri: &str, out: &mut impl Write) -> Result<()> {
    let source_connect = host.virsh().config().connect.clone();
    connections(
        std::slice::from_ref(&source_connect),
        &[uri.to_owned()],
        false,
    )?;
    let destination = Virsh::new(
        VirshConfig {
            connect: Some(uri.to_owned()),
            sessions: 1,
            ..host.virsh().config().clone()
        },
        Arc::new(SessionRunner::new(1, Budget::new(1))),
    );
    let source_side = read_side(host.virsh(), Some(&DomainSelection::All))?;
    let destination_side = read_side(&destination, None)?;
    let sources = [Party::of(host, &source_side)];
    let destinations = [Party {
        uri: Uri::parse(uri).public(),
        connect: Some(uri.to_owned()),
        side: &destination_side,
    }];
    for warning in refuse_itself(&sources, &destinations)? {
        writeln!(out, "warning: {warning}")?;
    }
    write_checks(out, &check_all(&sources, &destinations), false)
}

/// One copy `--fix copy` makes: the ISO of a drive that blocks, from its
/// source into the destination's pool.
struct CopyTask<'p> {
    source: &'p Party<'p>,
    destination: &'p Party<'p>,
    copy: crate::media::migrate::Copy,
}

impl CopyTask<'_> {
    fn describe(&self) -> String {
        let from = match &self.copy.origin {
            Origin::File(path) => format!("{} (a file here)", sanitize(path)),
            Origin::Volume { pool, name } => format!(
                "{}/{} on {}",
                sanitize(pool),
                sanitize(name),
                sanitize(&self.source.uri)
            ),
        };
        format!(
            "copy {from} to {}/{} on {}{}",
            sanitize(&self.copy.pool),
            sanitize(&self.copy.name),
            sanitize(&self.destination.uri),
            self.copy
                .size
                .map_or_else(String::new, |size| format!(" ({})", format_bytes(size)))
        )
    }

    /// The copy, with a progress bar on a terminal.
    fn run(&self, verify: bool) -> Result<Uploaded> {
        let size = self.copy.size.unwrap_or(0);
        let bar = std::io::stderr()
            .is_terminal()
            .then(|| progress_bar(&sanitize(&self.destination.uri), size));
        let progress = |sent: u64| {
            if let Some(bar) = &bar {
                bar.set_position(sent);
            }
        };
        let media = &self.destination.side.media;
        let copied = match &self.copy.origin {
            Origin::File(path) => {
                let iso = check_file(path, Some(&self.copy.name), None, self.copy.force)?;
                let options = UploadOptions {
                    pool: self.copy.pool.clone(),
                    verify,
                    replace: false,
                };
                media.upload(&iso, &options, &progress)
            }
            Origin::Volume { pool, name } => media.copy_volume(
                self.source.side.media.virsh(),
                &SourceVolume {
                    pool: pool.clone(),
                    name: name.clone(),
                    size,
                },
                &self.copy.pool,
                &self.copy.name,
                verify,
                &progress,
            ),
        };
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        copied
    }
}

/// `--fix copy`: the ISO of every drive that blocks because it is
/// missing there, copied from its source into the destination's pool, as
/// one plan shown and asked for as `eject`'s is, each copy then made with
/// `upload`'s rules (a volume made is deleted on any failure or signal).
/// A drive whose ISO cannot be copied so (another of that name there, no
/// pool or one not started, nothing to copy from) is a line saying why.
/// `None` when nothing blocks.
fn copy_blocked<R: BufRead, W: Write>(
    prompt: &mut Prompt<R, W>,
    results: &[SourceChecks],
    destinations: &[Party],
    change: ChangeOptions,
    verify: bool,
) -> Result<Option<ExitCode>> {
    let mut tasks: Vec<CopyTask> = Vec::new();
    let mut left = Vec::new();
    for result in results {
        for check in &result.checks {
            let Some(destination) = destinations.iter().find(|d| d.uri == check.destination) else {
                continue;
            };
            for drive in check.drives.iter().filter(|drive| drive.blocks) {
                let why = match (&drive.copy, drive.reason) {
                    (Some(copy), Some(Reason::Missing)) if copy.size.is_some() => {
                        let task = CopyTask {
                            source: result.source,
                            destination,
                            copy: copy.clone(),
                        };
                        let there = |other: &&CopyTask| {
                            other.destination.uri == task.destination.uri
                                && other.copy.pool == task.copy.pool
                                && other.copy.name == task.copy.name
                        };
                        match tasks.iter().find(there) {
                            None => tasks.push(task),
                            // The same ISO for another VM (by size, as the
                            // check itself tells an ISO there): one copy.
                            Some(other) if other.copy.size == task.copy.size => {}
                            // Another ISO under the name: copying it too would
                            // replace the first, or fail; the VM stays blocked.
                            Some(other) => {
                                left.push(format!(
                                    "not copied: {} {} {}: another ISO of that name is copied there \
                                     ({})",
                                    sanitize(&check.domain),
                                    sanitize(&drive.target),
                                    sanitize(drive.source.as_deref().unwrap_or("")),
                                    other.describe()
                                ));
                            }
                        }
                        continue;
                    }
                    (Some(_), Some(Reason::DifferentSize)) => {
                        "another ISO of that name is there: replace it with the `upload \
                         --replace` shown above"
                    }
                    (Some(_), Some(Reason::PoolInactive | Reason::NoPool)) => {
                        "its pool is not there, or not started: the `virsh` lines above first"
                    }
                    (None, Some(Reason::DifferentSize)) => {
                        "the image of that name there is no ISO: nothing replaces it"
                    }
                    _ => "the source has no file or volume to copy it from",
                };
                left.push(format!(
                    "not copied: {} {} {}: {why}",
                    sanitize(&check.domain),
                    sanitize(&drive.target),
                    sanitize(drive.source.as_deref().unwrap_or(""))
                ));
            }
        }
    }
    if tasks.is_empty() && left.is_empty() {
        return Ok(None);
    }
    for line in &left {
        writeln!(prompt.out(), "{line}")?;
    }
    if tasks.is_empty() {
        writeln!(prompt.out(), "Nothing to copy.")?;
        return Ok(Some(ExitCode::FAILURE));
    }
    writeln!(prompt.out(), "Planned:")?;
    for task in &tasks {
        writeln!(prompt.out(), "  {}", task.describe())?;
    }
    if change.dry_run {
        writeln!(prompt.out(), "Dry run: nothing was copied.")?;
        return Ok(Some(ExitCode::FAILURE));
    }
    if (prompt.confirms_every_change() || !change.yes) && !prompt.confirm("copied")? {
        writeln!(prompt.out(), "Nothing changed.")?;
        return Ok(Some(ExitCode::FAILURE));
    }
    // A signal from here on: the copy under way deletes the volume it
    // made, the rest are not started, and the tool exits 128 + it.
    let _deferred = crate::virsh::groups::defer_signals();
    last_words::add(
        "dismount_iso_qemu: interrupted during the clean-up: a volume may be left \
         half-copied; `library` shows it, `delete-iso` deletes it\n",
    );
    let mut failed = !left.is_empty();
    for task in &tasks {
        if crate::virsh::groups::caught_signal().is_some() {
            writeln!(prompt.out(), "NOT DONE: {}: interrupted", task.describe())?;
            failed = true;
            continue;
        }
        match task.run(verify) {
            Ok(copied) => writeln!(
                prompt.out(),
                "ok: {} ({}{})",
                task.describe(),
                sanitize(&copied.path),
                copied
                    .verified
                    .map_or_else(String::new, |sha| format!(", read back: SHA-256 {sha}"))
            )?,
            Err(error) => {
                failed = true;
                writeln!(
                    prompt.out(),
                    "FAILED: {}: {}",
                    task.describe(),
                    sanitize(&format!("{error:#}"))
                )?;
            }
        }
    }
    last_words::clear();
    Ok(Some(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }))
}
