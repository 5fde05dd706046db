//! The ISO commands (`isos`, `mount`, `eject`) and the menu's media entries:
//! picking drives and ISOs, confirming, running the plan, reporting.

use std::io::{self, BufRead, IsTerminal, Write};
use std::process::ExitCode;

use anyhow::{Result, bail};
use comfy_table::{Cell, Color};
use regex::Regex;

use super::args::ChangeArgs;
use super::menu::{Answer, Console};
use super::render::{new_table, state_cell};
use crate::fleet::{Fleet, Host, HostScan};
use crate::media::{
    Action, DomainMedia, DriveRow, MediaManager, Step, plan_attach, plan_eject, plan_mount,
};
use crate::utils::sanitize;
use crate::virsh::Virsh;

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

/// Who answers questions. A subcommand asks only when stdin is a terminal;
/// the menu always may, and confirms every change before making it.
pub struct Prompt<'a, R, W> {
    console: &'a mut Console<R, W>,
    interactive: bool,
    always_confirm: bool,
}

impl<'a, R: BufRead, W: Write> Prompt<'a, R, W> {
    pub fn command(console: &'a mut Console<R, W>, interactive: bool) -> Self {
        Prompt {
            console,
            interactive,
            always_confirm: false,
        }
    }

    fn menu(console: &'a mut Console<R, W>) -> Self {
        Prompt {
            console,
            interactive: true,
            always_confirm: true,
        }
    }

    fn out(&mut self) -> &mut W {
        self.console.out()
    }

    /// A numbered choice; `None` when the user backs out with `q` or the
    /// input ends. Junk is asked again.
    fn choose(&mut self, question: &str, items: &[String]) -> Result<Option<usize>> {
        for (number, item) in items.iter().enumerate() {
            writeln!(self.out(), "  {}) {item}", number + 1)?;
        }
        loop {
            match self.console.ask(question)? {
                Answer::Quit | Answer::End => return Ok(None),
                Answer::Text(text) => match text.parse::<usize>() {
                    Ok(n) if (1..=items.len()).contains(&n) => return Ok(Some(n - 1)),
                    _ => writeln!(
                        self.out(),
                        "Enter a number from 1 to {}, or q to go back.",
                        items.len()
                    )?,
                },
            }
        }
    }

    /// Yes or no to the listed plan. Without a terminal (and outside the
    /// menu) nobody can answer, so that is a refusal, not a silent yes.
    fn confirm(&mut self, what: &str) -> Result<bool> {
        if !self.interactive {
            bail!(
                "not {what}: stdin is not a terminal, so nobody can confirm; pass --yes to go ahead"
            );
        }
        Ok(matches!(
            self.console.ask("Go ahead? [y/N]: ")?,
            Answer::Text(text) if matches!(text.to_ascii_lowercase().as_str(), "y" | "yes")
        ))
    }
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

/// Runs a subcommand's `flow` with questions read from stdin, asked only
/// when stdin is a terminal.
pub fn with_stdin<W: Write>(
    out: W,
    flow: impl FnOnce(&mut Prompt<io::StdinLock<'static>, W>) -> Result<ExitCode>,
) -> Result<ExitCode> {
    let interactive = io::stdin().is_terminal();
    let mut console = Console::new(io::stdin().lock(), out);
    flow(&mut Prompt::command(&mut console, interactive))
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
    let scans = fleet.each(|host| {
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
    if fleet.is_single() {
        // One host: its failure is the run's error, as it always was.
        if let Some(HostScan { result: Err(_), .. }) = scans.first() {
            let scan = scans.into_iter().next().expect("one host");
            return Err(scan.result.expect_err("checked"));
        }
    }
    let (hosts, failed) = super::split_scans(&scans);
    if json {
        crate::utils::write_json(out, &super::with_uris(&hosts))?;
    } else if !hosts.is_empty() {
        out.write_all(drive_table(&hosts, !fleet.is_single(), colour).as_bytes())?;
    }
    out.flush()?;
    super::report_failed_hosts(&failed, scans.len())
}

/// The drive table with a count and, below it, the ISOs held by several
/// VMs of one host; a Host column first when `with_host`. Every name and
/// path is sanitized: guests and remote hosts set them. With `colour`,
/// states are coloured, a missing ISO is red and live≠config yellow.
pub fn drive_table(hosts: &[(&str, &[DriveRow])], with_host: bool, colour: bool) -> String {
    let mut table = new_table(colour);
    let header = [
        "VM",
        "State",
        "Drive",
        "Bus",
        "Media",
        "Live≠Config",
        "Missing",
    ];
    table.set_header(with_host.then_some("Host").into_iter().chain(header));
    let mut count = 0;
    let mut shared: Vec<(String, Vec<&str>)> = Vec::new();
    for (uri, rows) in hosts {
        for row in *rows {
            count += 1;
            let differ = if !row.live_config_differ {
                String::new()
            } else {
                format!(
                    "config: {}",
                    row.config_source
                        .as_deref()
                        .map_or_else(|| "empty".to_owned(), sanitize)
                )
            };
            table.add_row(
                with_host
                    .then(|| Cell::new(sanitize(uri)))
                    .into_iter()
                    .chain([
                        Cell::new(sanitize(&row.domain)),
                        state_cell(row.state),
                        Cell::new(sanitize(&row.target)),
                        Cell::new(row.bus.as_deref().map_or_else(String::new, sanitize)),
                        Cell::new(
                            row.source
                                .as_deref()
                                .map_or_else(|| "(empty)".to_owned(), sanitize),
                        ),
                        if differ.is_empty() {
                            Cell::new("")
                        } else {
                            Cell::new(differ).fg(Color::Yellow)
                        },
                        match row.missing {
                            Some(true) => Cell::new("MISSING").fg(Color::Red),
                            _ => Cell::new(""),
                        },
                    ]),
            );
        }
        // Paths are a host's own: the same path on two hosts is two files.
        let host = if with_host {
            format!("{}: ", sanitize(uri))
        } else {
            String::new()
        };
        for row in rows.iter().filter(|row| !row.shared_with.is_empty()) {
            for iso in row.source.iter().chain(&row.config_source) {
                let key = format!("{host}{}", sanitize(iso));
                let holders = match shared.iter_mut().find(|(seen, _)| *seen == key) {
                    Some((_, holders)) => holders,
                    None => {
                        shared.push((key, Vec::new()));
                        &mut shared.last_mut().expect("just pushed").1
                    }
                };
                if !holders.contains(&row.domain.as_str()) {
                    holders.push(&row.domain);
                }
            }
        }
    }
    let mut text = format!("{table}\n{count} drive(s)\n");
    shared.retain(|(_, holders)| holders.len() > 1);
    if !shared.is_empty() {
        text.push_str("ISOs in several VMs:\n");
        for (iso, holders) in shared {
            let names: Vec<String> = holders.iter().map(|h| sanitize(h)).collect();
            text.push_str(&format!("  {iso}: {}\n", names.join(", ")));
        }
    }
    text
}

/// What `mount` was asked to do.
#[derive(Debug, Clone)]
pub struct MountRequest {
    pub selection: MountSelection,
    pub iso: String,
    pub target: Option<String>,
    /// Add a SATA CD-ROM when the VM has none.
    pub attach: bool,
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

/// `mount DOMAIN ISO` on the host that has the domain, or `mount --match
/// REGEX ISO` into the one VM (or with --all, every VM) whose name
/// matches: a missing ISO is refused before any change.
pub fn mount<R: BufRead, W: Write>(
    fleet: &Fleet,
    prompt: &mut Prompt<R, W>,
    request: &MountRequest,
    options: ChangeOptions,
) -> Result<ExitCode> {
    let (pattern, all) = match &request.selection {
        MountSelection::Domain(name) => {
            let Some(host) = host_of(fleet, prompt, name)? else {
                return Ok(ExitCode::SUCCESS);
            };
            return mount_on(host, prompt, name, request, options);
        }
        MountSelection::Matching { pattern, all } => (pattern, *all),
    };
    let found = fleet.each(|host| {
        let names = MediaManager::new(host.virsh().clone()).load_all()?;
        Ok(names
            .into_iter()
            .map(|domain| domain.name)
            .filter(|name| pattern.is_match(name))
            .collect::<Vec<_>>())
    });
    let mut matches: Vec<(&Host, String)> = Vec::new();
    for (host, scan) in fleet.hosts.iter().zip(found) {
        matches.extend(scan.result?.into_iter().map(|name| (host, name)));
    }
    let names = || {
        matches
            .iter()
            .map(|(_, name)| sanitize(name))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match matches.len() {
        0 => bail!("no domain's name matches '{}'", sanitize(pattern.as_str())),
        1 => {}
        n if !all => bail!(
            "{n} domains match '{}' ({}): pass --all to mount the ISO into each",
            sanitize(pattern.as_str()),
            names()
        ),
        _ => {}
    }
    // One VM that cannot take the ISO (several drives, no CD-ROM) is a
    // line of its own: the others are still done.
    let mut code = ExitCode::SUCCESS;
    for (host, name) in &matches {
        match mount_on(host, prompt, name, request, options) {
            Ok(ExitCode::SUCCESS) => {}
            Ok(other) => code = other,
            Err(error) => {
                writeln!(prompt.out(), "error: {}", sanitize(&format!("{error:#}")))?;
                code = ExitCode::FAILURE;
            }
        }
    }
    Ok(code)
}

/// `mount` of one named domain on one host.
fn mount_on<R: BufRead, W: Write>(
    host: &Host,
    prompt: &mut Prompt<R, W>,
    name: &str,
    request: &MountRequest,
    options: ChangeOptions,
) -> Result<ExitCode> {
    let media = MediaManager::new(host.virsh().clone());
    let iso = media.resolve_iso(&request.iso)?;
    let domain = media.load_one(name)?;
    let step = match request.target.as_deref() {
        Some(target) => {
            check_target(&domain, target)?;
            plan_mount(&domain, target, &iso, options.force)
        }
        None => match domain.cdrom_targets()[..] {
            [] if request.attach => Some(plan_attach(&domain, &iso)?),
            [] => bail!(
                "'{}' has no CD-ROM drive; --attach adds a SATA CD-ROM to its config",
                sanitize(&domain.name)
            ),
            [only] => plan_mount(&domain, only, &iso, options.force),
            ref several => {
                let Some(target) = choose_drive(prompt, &domain, several)? else {
                    return Ok(ExitCode::SUCCESS);
                };
                plan_mount(&domain, &target, &iso, options.force)
            }
        },
    };
    let Some(step) = step else {
        writeln!(
            prompt.out(),
            "Nothing to do: the drive already holds {}.",
            sanitize(&iso)
        )?;
        return Ok(ExitCode::SUCCESS);
    };
    // Filling an empty drive takes nothing away; replacing does.
    let replaces = matches!(
        step,
        Step::Change {
            action: Action::Replace { .. },
            ..
        }
    );
    execute(&media, prompt, &[step], options, replaces, "mounted")
}

fn check_target(domain: &DomainMedia, target: &str) -> Result<()> {
    if domain.targets().contains(&target) {
        return Ok(());
    }
    bail!(
        "'{}' has no CD-ROM or floppy drive '{}' (drives: {})",
        sanitize(&domain.name),
        sanitize(target),
        names_or_none(&domain.targets())
    )
}

fn names_or_none(targets: &[&str]) -> String {
    if targets.is_empty() {
        return "none".to_owned();
    }
    targets
        .iter()
        .map(|t| sanitize(t))
        .collect::<Vec<_>>()
        .join(", ")
}

fn choose_drive<R: BufRead, W: Write>(
    prompt: &mut Prompt<R, W>,
    domain: &DomainMedia,
    targets: &[&str],
) -> Result<Option<String>> {
    if !prompt.interactive {
        bail!(
            "'{}' has several CD-ROM drives ({}): pick one with --target",
            sanitize(&domain.name),
            names_or_none(targets)
        );
    }
    let labels: Vec<String> = targets
        .iter()
        .map(|target| {
            let views = domain.views(target);
            let drive = views.current();
            format!(
                "{} ({}): {}",
                sanitize(target),
                drive
                    .bus
                    .as_deref()
                    .map_or_else(|| "?".to_owned(), sanitize),
                drive
                    .media
                    .as_ref()
                    .map_or_else(|| "empty".to_owned(), |m| sanitize(&m.label()))
            )
        })
        .collect();
    let chosen = prompt.choose("Drive number (q to go back): ", &labels)?;
    Ok(chosen.map(|index| targets[index].to_owned()))
}

/// `eject`: every drive selected that holds media, listed before anything
/// changes.
pub fn eject<R: BufRead, W: Write>(
    fleet: &Fleet,
    prompt: &mut Prompt<R, W>,
    selection: &EjectSelection,
    options: ChangeOptions,
) -> Result<ExitCode> {
    if let EjectSelection::Domain { name, .. } = selection {
        let Some(host) = host_of(fleet, prompt, name)? else {
            return Ok(ExitCode::SUCCESS);
        };
        return eject_on(host.virsh(), prompt, selection, options);
    }
    if fleet.is_single() {
        return eject_on(fleet.hosts[0].virsh(), prompt, selection, options);
    }
    // Every host in turn, each with its own plan and confirmation; a host
    // that fails is a line, and the others go on.
    let mut failed = Vec::new();
    let mut code = ExitCode::SUCCESS;
    for host in &fleet.hosts {
        writeln!(prompt.out(), "{}:", sanitize(&host.uri()))?;
        match eject_on(host.virsh(), prompt, selection, options) {
            Ok(ExitCode::SUCCESS) => {}
            Ok(other) => code = other,
            Err(error) => {
                let line = super::host_error(&host.uri(), &error);
                writeln!(prompt.out(), "error: {line}")?;
                failed.push(line);
            }
        }
    }
    if failed.is_empty() {
        return Ok(code);
    }
    super::report_failed_hosts(&failed, fleet.hosts.len())
}

/// The host whose domain is called `name`: the only host, the one host
/// that has it, or (where several have it) the one the user picks; `None`
/// when they back out. Without a terminal, several is an error.
fn host_of<'f, R: BufRead, W: Write>(
    fleet: &'f Fleet,
    prompt: &mut Prompt<R, W>,
    name: &str,
) -> Result<Option<&'f Host>> {
    if let [host] = &fleet.hosts[..] {
        return Ok(Some(host));
    }
    let found = fleet.each(|host| Ok(host.virsh().has_domain(name)?));
    let mut holders = Vec::new();
    let mut unreachable = Vec::new();
    for (host, scan) in fleet.hosts.iter().zip(&found) {
        match &scan.result {
            Ok(true) => holders.push(host),
            Ok(false) => {}
            Err(error) => unreachable.push(super::host_error(&scan.uri, error)),
        }
    }
    for line in &unreachable {
        eprintln!("dismount_iso_qemu: warning: {line}");
    }
    let uris = |hosts: &[&Host]| {
        hosts
            .iter()
            .map(|h| sanitize(&h.uri()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match holders[..] {
        [host] => Ok(Some(host)),
        [] => bail!(
            "no domain named '{}' on {} host(s){}",
            sanitize(name),
            fleet.hosts.len() - unreachable.len(),
            if unreachable.is_empty() {
                ""
            } else {
                "; some hosts did not answer (above)"
            }
        ),
        _ if prompt.interactive => {
            let labels: Vec<String> = holders.iter().map(|h| sanitize(&h.uri())).collect();
            writeln!(prompt.out(), "'{}' is on several hosts:", sanitize(name))?;
            Ok(prompt
                .choose("Host number (q to go back): ", &labels)?
                .map(|index| holders[index]))
        }
        _ => bail!(
            "'{}' is on several hosts ({}): name one with --connect",
            sanitize(name),
            uris(&holders)
        ),
    }
}

/// `eject` on one host.
fn eject_on<R: BufRead, W: Write>(
    virsh: &Virsh,
    prompt: &mut Prompt<R, W>,
    selection: &EjectSelection,
    options: ChangeOptions,
) -> Result<ExitCode> {
    let media = MediaManager::new(virsh.clone());
    let (domains, only_target, iso) = match selection {
        EjectSelection::Domain { name, target } => {
            (vec![media.load_one(name)?], target.as_deref(), None)
        }
        EjectSelection::All => (media.load_all()?, None, None),
        EjectSelection::Iso(iso) => (media.load_all()?, None, Some(media.iso_name(iso)?)),
        EjectSelection::Matching(pattern) => {
            let mut domains = media.load_all()?;
            domains.retain(|domain| pattern.is_match(&domain.name));
            (domains, None, None)
        }
    };
    if let (Some(target), [domain]) = (only_target, &domains[..]) {
        check_target(domain, target)?;
    }
    let steps: Vec<Step> = domains
        .iter()
        .flat_map(|domain| {
            domain
                .targets()
                .into_iter()
                .filter(|t| only_target.is_none_or(|only| only == *t))
                .filter_map(|t| plan_eject(domain, t, iso.as_ref(), options.force))
        })
        .collect();
    if steps.is_empty() {
        writeln!(
            prompt.out(),
            "Nothing to eject: no selected drive holds media."
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    execute(&media, prompt, &steps, options, true, "ejected")
}

/// Lists the plan; prints it for `--dry-run`; asks where needed; runs it
/// and reports each drive as re-read from the live and inactive XML.
fn execute<R: BufRead, W: Write>(
    media: &MediaManager,
    prompt: &mut Prompt<R, W>,
    steps: &[Step],
    options: ChangeOptions,
    needs_confirmation: bool,
    done: &str,
) -> Result<ExitCode> {
    writeln!(prompt.out(), "Planned:")?;
    for step in steps {
        writeln!(prompt.out(), "  {}", step.describe())?;
    }
    if options.dry_run {
        writeln!(
            prompt.out(),
            "Dry run: these virsh commands would run; nothing changed."
        )?;
        for step in steps {
            let line = media.virsh().invocation(&step.argv()).command_line();
            writeln!(prompt.out(), "{}", sanitize(&line))?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let asks = prompt.always_confirm || (needs_confirmation && !options.yes);
    if asks && !prompt.confirm(done)? {
        writeln!(prompt.out(), "Nothing changed.")?;
        return Ok(ExitCode::SUCCESS);
    }
    let outcomes = media.apply(steps)?;
    let mut failed = 0;
    for outcome in &outcomes {
        match &outcome.failure {
            None => writeln!(prompt.out(), "ok: {}", outcome.description)?,
            Some(why) => {
                failed += 1;
                writeln!(prompt.out(), "FAILED: {}: {why}", outcome.description)?;
            }
        }
        if let Some(note) = &outcome.note {
            writeln!(prompt.out(), "  note: {note}")?;
        }
    }
    if failed == 0 {
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(
        prompt.out(),
        "{failed} of {} drive change(s) failed.",
        outcomes.len()
    )?;
    Ok(ExitCode::FAILURE)
}

/// Menu 2: the drive table of every host.
pub fn menu_scan<R: BufRead, W: Write>(
    console: &mut Console<R, W>,
    fleet: &Fleet,
    colour: bool,
) -> Result<()> {
    let mut out = Vec::new();
    let code = isos(fleet, &IsoQuery::default(), false, colour, &mut out);
    console.out().write_all(&out)?;
    code.map(|_| ())
}

/// Menu 1: host if several, VM by number, drive if several, ISO from the
/// pools or typed.
pub fn menu_mount<R: BufRead, W: Write>(console: &mut Console<R, W>, fleet: &Fleet) -> Result<()> {
    in_menu(console, fleet, mount_flow)
}

fn mount_flow<R: BufRead, W: Write>(
    prompt: &mut Prompt<R, W>,
    media: &MediaManager,
    domains: Vec<DomainMedia>,
) -> Result<ExitCode> {
    let labels: Vec<String> = domains
        .iter()
        .map(|d| format!("{} ({})", sanitize(&d.name), d.state))
        .collect();
    let Some(index) = prompt.choose("VM number (q to go back): ", &labels)? else {
        return Ok(ExitCode::SUCCESS);
    };
    let domain = &domains[index];
    let target = match domain.cdrom_targets()[..] {
        [] => bail!(
            "'{}' has no CD-ROM drive; `mount --attach` adds a SATA CD-ROM to its config",
            sanitize(&domain.name)
        ),
        [only] => only.to_owned(),
        ref several => match choose_drive(prompt, domain, several)? {
            Some(target) => target,
            None => return Ok(ExitCode::SUCCESS),
        },
    };
    // No storage driver or no pools: a typed path still works.
    let pool_isos = match media.pool_isos() {
        Ok(isos) if isos.is_empty() => {
            writeln!(
                prompt.out(),
                "No ISO volumes in the storage pools: type a path."
            )?;
            isos
        }
        Ok(isos) => isos,
        Err(error) => {
            writeln!(
                prompt.out(),
                "No storage pool ISOs ({error:#}): type a path."
            )?;
            Vec::new()
        }
    };
    for (number, iso) in pool_isos.iter().enumerate() {
        writeln!(prompt.out(), "  {}) {}", number + 1, sanitize(iso))?;
    }
    let iso = loop {
        let typed = match prompt.console.ask("ISO number or path (q to go back): ")? {
            Answer::Quit | Answer::End => return Ok(ExitCode::SUCCESS),
            Answer::Text(text) if text.is_empty() => continue,
            Answer::Text(text) => text,
        };
        let picked = typed
            .parse::<usize>()
            .ok()
            .and_then(|n| pool_isos.get(n.wrapping_sub(1)))
            .unwrap_or(&typed);
        match media.resolve_iso(picked) {
            Ok(iso) => break iso,
            Err(error) => writeln!(prompt.out(), "{error:#}")?,
        }
    };
    let Some(step) = plan_mount(domain, &target, &iso, false) else {
        writeln!(
            prompt.out(),
            "Nothing to do: the drive already holds {}.",
            sanitize(&iso)
        )?;
        return Ok(ExitCode::SUCCESS);
    };
    execute(
        media,
        prompt,
        &[step],
        ChangeOptions::default(),
        true,
        "mounted",
    )
}

/// Menu 3: host if several, then one drive holding media, or all of them.
pub fn menu_eject<R: BufRead, W: Write>(console: &mut Console<R, W>, fleet: &Fleet) -> Result<()> {
    in_menu(console, fleet, eject_flow)
}

fn eject_flow<R: BufRead, W: Write>(
    prompt: &mut Prompt<R, W>,
    media: &MediaManager,
    domains: Vec<DomainMedia>,
) -> Result<ExitCode> {
    let steps: Vec<Step> = domains
        .iter()
        .flat_map(|d| {
            d.targets()
                .into_iter()
                .filter_map(|t| plan_eject(d, t, None, false))
        })
        .collect();
    if steps.is_empty() {
        writeln!(prompt.out(), "No drive holds media.")?;
        return Ok(ExitCode::SUCCESS);
    }
    for (number, step) in steps.iter().enumerate() {
        writeln!(prompt.out(), "  {}) {}", number + 1, step.describe())?;
    }
    let chosen = loop {
        match prompt
            .console
            .ask("Drive number, or a for all (q to go back): ")?
        {
            Answer::Quit | Answer::End => return Ok(ExitCode::SUCCESS),
            Answer::Text(text) if text.eq_ignore_ascii_case("a") => break steps.clone(),
            Answer::Text(text) => match text.parse::<usize>() {
                Ok(n) if (1..=steps.len()).contains(&n) => break vec![steps[n - 1].clone()],
                _ => writeln!(
                    prompt.out(),
                    "Enter a number from 1 to {}, a, or q.",
                    steps.len()
                )?,
            },
        }
    };
    execute(
        media,
        prompt,
        &chosen,
        ChangeOptions::default(),
        true,
        "ejected",
    )
}

/// Runs a menu entry on a fresh read of one host (asked for when there
/// are several): every change confirmed first, and an error shown as a
/// line while the menu goes on.
fn in_menu<R: BufRead, W: Write>(
    console: &mut Console<R, W>,
    fleet: &Fleet,
    flow: impl FnOnce(&mut Prompt<R, W>, &MediaManager, Vec<DomainMedia>) -> Result<ExitCode>,
) -> Result<()> {
    let host = match &fleet.hosts[..] {
        [host] => host,
        hosts => {
            let labels: Vec<String> = hosts.iter().map(|h| sanitize(&h.uri())).collect();
            match Prompt::menu(console).choose("Host number (q to go back): ", &labels)? {
                Some(index) => &hosts[index],
                None => return Ok(()),
            }
        }
    };
    let media = MediaManager::new(host.virsh().clone());
    let outcome = media
        .load_all()
        .and_then(|domains| flow(&mut Prompt::menu(console), &media, domains));
    if let Err(error) = outcome {
        writeln!(console.out(), "error: {error:#}")?;
    }
    Ok(())
}
