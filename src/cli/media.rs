//! The media subcommands (`isos`, `mount`, `eject`) and the steps the menu
//! shares with them: which drive, the plan, confirming, running, reporting.

use std::io::{BufRead, Write};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};

use super::prompt::Prompt;
use super::render::drive_table;
use super::request::{
    ChangeOptions, EjectSelection, IsoQuery, MountRequest, MountSelection, UploadRequest,
};
use super::upload::{interrupted, signal_status, upload_to};
use crate::fleet::{Fleet, Host};
use crate::media::{
    Action, DomainMedia, DriveChoice, DriveRow, IsoDrive, MediaManager, Step, Verdict,
    names_or_none, plan_attach, plan_ejects, plan_mount,
};
use crate::utils::sanitize;
use crate::virsh::groups::{self, last_words};
use crate::virsh::{Invocation, Virsh};

/// `isos`: the drive table, or JSON rows each with its host's `uri`;
/// every host read side by side, a host that fails one line on stderr.
pub fn isos(
    fleet: &Fleet,
    query: &IsoQuery,
    json: bool,
    colour: bool,
    out: &mut impl Write,
) -> Result<ExitCode> {
    let scans = super::progress::each_with_progress(fleet, !json, |host| {
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
    super::report::write_listing(out, scans, json, |hosts, with_host| {
        drive_table(hosts, with_host, colour)
    })
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
            let Some(upload) = &request.upload else {
                return mount_on(host, prompt, name, request, options);
            };
            return upload_and_mount(fleet, host, prompt, name, request, upload, options);
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

/// `mount DOMAIN --upload FILE --pool POOL`. Everything that can be
/// decided is decided before the first byte is sent: the file, the VM,
/// its drive (asked for, or refused without a terminal), a volume of that
/// name (refused: `mount` does not replace), the mount planned and, where
/// it replaces media, confirmed (or refused without a terminal and
/// `--yes`). Then the upload, then the mount planned, checked against
/// what the drive held at the question. With `--dry-run` nothing is sent.
/// An upload whose mount does not follow is kept, and said so with the
/// commands that mount or delete it.
fn upload_and_mount<R: BufRead, W: Write>(
    fleet: &Fleet,
    host: &Host,
    prompt: &mut Prompt<R, W>,
    name: &str,
    request: &MountRequest,
    upload: &UploadRequest,
    options: ChangeOptions,
) -> Result<ExitCode> {
    let iso = upload.check()?;
    let media = MediaManager::new(host.virsh().clone());
    let uri = host.uri();
    let volume = format!("{}/{}", upload.pool, iso.name);
    let domain = media.load_one(name)?;
    let choice = domain.drive_for_iso(request.target.as_deref(), request.attach)?;
    // Quoted for a shell, and so safe on a terminal as they are.
    let tool_line = |words: &[&str]| {
        Invocation {
            program: "dismount_iso_qemu".to_owned(),
            connect: host.virsh().config().connect.clone(),
            commands: vec![words.iter().map(|word| (*word).to_owned()).collect()],
        }
        .command_line()
    };
    let mount_line = |target: Option<&str>, attach: bool| {
        let mut words = vec!["mount", name, &volume];
        if let Some(target) = target {
            words.extend(["--target", target]);
        }
        if attach {
            words.push("--attach");
        }
        tool_line(&words)
    };
    if media
        .virsh()
        .volume_capacity(&upload.pool, &iso.name)?
        .is_some()
    {
        bail!(
            "{} already exists on {}: mount it as it is (`{}`), or upload the file under another \
             name; nothing was uploaded",
            sanitize(&volume),
            sanitize(&uri),
            mount_line(request.target.as_deref(), request.attach)
        );
    }
    let Some(drive) = pick_drive(prompt, &domain, choice)? else {
        return Ok(ExitCode::SUCCESS);
    };
    let target = match drive {
        IsoDrive::Existing(target) => Some(target.to_owned()),
        IsoDrive::Attach => None,
    };
    // Planned with the volume's name for its path, which only the upload
    // makes: the plan's kind (insert, replace, attach) and what the drive
    // holds now do not depend on it.
    let step = match drive {
        IsoDrive::Existing(target) => plan_mount(&domain, target, &volume, options.force),
        IsoDrive::Attach => Some(plan_attach(&domain, &volume)?),
    }
    .with_context(|| format!("the drive already holds {}", sanitize(&volume)))?;
    let upload_line = format!(
        "upload {} to {} on {}",
        sanitize(&iso.file),
        sanitize(&volume),
        sanitize(&uri)
    );
    if options.dry_run {
        writeln!(
            prompt.out(),
            "Dry run: {} would be uploaded to {} on {}, then mounted into {}: {}; nothing changed.",
            sanitize(&iso.file),
            sanitize(&volume),
            sanitize(&uri),
            sanitize(name),
            step.describe()
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    let replaces = matches!(
        step,
        Step::Change {
            action: Action::Replace { .. },
            ..
        }
    );
    if prompt.confirms_every_change() || (replaces && !options.yes) {
        writeln!(prompt.out(), "Planned:")?;
        writeln!(prompt.out(), "  {upload_line}")?;
        writeln!(prompt.out(), "  {}", step.describe())?;
        if !prompt.confirm("uploaded")? {
            writeln!(prompt.out(), "Nothing changed.")?;
            return Ok(ExitCode::SUCCESS);
        }
    }
    // Until the last words below are in place: a signal in between is
    // told too.
    let deferred = groups::defer_signals();
    let scans = upload_to(fleet, &[host], &iso, upload);
    if let Some(code) = interrupted(&scans, &upload.pool, &iso) {
        return Ok(code);
    }
    let uploaded = scans.into_iter().next().expect("one host asked").result?;
    writeln!(
        prompt.out(),
        "Uploaded {} to {} ({}).",
        sanitize(&iso.file),
        sanitize(&volume),
        sanitize(&uploaded.path)
    )?;
    let kept = format!(
        "the ISO stays uploaded as {} on {}: mount it with `{}`, or delete it with `{}`",
        sanitize(&volume),
        sanitize(&uri),
        mount_line(target.as_deref(), target.is_none()),
        tool_line(&["delete-iso", &volume, "--yes"])
    );
    // Said if a signal ends the tool before the mount is done.
    let interrupted_after = format!("dismount_iso_qemu: interrupted after the upload; {kept}\n");
    last_words::add(&interrupted_after);
    drop(deferred);
    if let Some(signal) = groups::caught_signal() {
        last_words::clear();
        eprint!("{interrupted_after}");
        return Ok(signal_status(signal));
    }
    // Confirmed above where it needed to be; the drive is checked against
    // what it held then.
    let mounted = execute(
        &media,
        prompt,
        &[step.with_iso(&uploaded.path)],
        ChangeOptions {
            yes: true,
            ..options
        },
        false,
        "mounted",
    );
    last_words::clear();
    match mounted {
        Ok(ExitCode::SUCCESS) => Ok(ExitCode::SUCCESS),
        Ok(code) => {
            eprintln!("dismount_iso_qemu: {kept}");
            Ok(code)
        }
        Err(error) => bail!("{error:#}; {kept}"),
    }
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
    let choice = domain.drive_for_iso(request.target.as_deref(), request.attach)?;
    let Some(drive) = pick_drive(prompt, &domain, choice)? else {
        return Ok(ExitCode::SUCCESS);
    };
    mount_into(&media, prompt, &domain, drive, &iso, options)
}

/// The drive an ISO goes into, the user asked where there are several
/// (and refused without a terminal); `None` when they back out.
pub fn pick_drive<'d, R: BufRead, W: Write>(
    prompt: &mut Prompt<R, W>,
    domain: &'d DomainMedia,
    choice: DriveChoice<'d>,
) -> Result<Option<IsoDrive<'d>>> {
    let targets = match choice {
        DriveChoice::Decided(drive) => return Ok(Some(drive)),
        DriveChoice::OneOf(targets) => targets,
    };
    if !prompt.can_ask() {
        bail!(
            "'{}' has several CD-ROM drives ({}): pick one with --target",
            sanitize(&domain.name),
            names_or_none(&targets)
        );
    }
    let labels: Vec<String> = targets
        .iter()
        .map(|target| {
            let drive = domain.views(target).current();
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
    Ok(chosen.map(|index| IsoDrive::Existing(targets[index])))
}

/// Mounts `iso` into `drive` of `domain`: planned, shown, confirmed where
/// it replaces media (always in the menu), run and checked; nothing to
/// do when the drive already holds it.
pub fn mount_into<R: BufRead, W: Write>(
    media: &MediaManager,
    prompt: &mut Prompt<R, W>,
    domain: &DomainMedia,
    drive: IsoDrive,
    iso: &str,
    options: ChangeOptions,
) -> Result<ExitCode> {
    let step = match drive {
        IsoDrive::Existing(target) => plan_mount(domain, target, iso, options.force),
        IsoDrive::Attach => Some(plan_attach(domain, iso)?),
    };
    let Some(step) = step else {
        writeln!(
            prompt.out(),
            "Nothing to do: the drive already holds {}.",
            sanitize(iso)
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
    execute(media, prompt, &[step], options, replaces, "mounted")
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
    // Every host's drives read side by side (within the budget), then
    // each host's plan shown, confirmed and run in turn; a host that
    // fails is a line, and the others go on. Each change re-reads its
    // drive first, so the time a host waits for its turn changes nothing.
    let plans = fleet.each(|host| plan_on(host.virsh(), selection, options.force));
    let mut failed = Vec::new();
    let mut code = ExitCode::SUCCESS;
    for (host, plan) in fleet.hosts.iter().zip(plans) {
        writeln!(prompt.out(), "{}:", sanitize(&host.uri()))?;
        match plan
            .result
            .and_then(|(media, steps)| run_ejects(&media, prompt, &steps, options))
        {
            Ok(ExitCode::SUCCESS) => {}
            Ok(other) => code = other,
            Err(error) => {
                let line = super::report::host_error(&host.uri(), &error);
                writeln!(prompt.out(), "error: {line}")?;
                failed.push(line);
            }
        }
    }
    if failed.is_empty() {
        return Ok(code);
    }
    super::report::report_failed_hosts(&failed, fleet.hosts.len())
}

/// The host whose domain is called `name`: the only host, the one host
/// that has it, or (where several have it) the one the user picks; `None`
/// when they back out. Without a terminal, several is an error.
pub(super) fn host_of<'f, R: BufRead, W: Write>(
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
            Err(error) => unreachable.push(super::report::host_error(&scan.uri, error)),
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
        _ if prompt.can_ask() => {
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
    let (media, steps) = plan_on(virsh, selection, options.force)?;
    run_ejects(&media, prompt, &steps, options)
}

/// The ejects `selection` asks for on one host, from its drives as read
/// now.
fn plan_on(
    virsh: &Virsh,
    selection: &EjectSelection,
    force: bool,
) -> Result<(MediaManager, Vec<Step>)> {
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
    let steps = plan_ejects(&domains, only_target, iso.as_ref(), force)?;
    Ok((media, steps))
}

/// One host's ejects shown, confirmed and run; "nothing to eject" where
/// there are none.
fn run_ejects<R: BufRead, W: Write>(
    media: &MediaManager,
    prompt: &mut Prompt<R, W>,
    steps: &[Step],
    options: ChangeOptions,
) -> Result<ExitCode> {
    if steps.is_empty() {
        nothing_to_eject(prompt.out())?;
        return Ok(ExitCode::SUCCESS);
    }
    execute(media, prompt, steps, options, true, "ejected")
}

/// What an eject with no drive to change says.
pub fn nothing_to_eject(out: &mut impl Write) -> Result<()> {
    writeln!(out, "Nothing to eject: no selected drive holds media.")?;
    Ok(())
}

/// Lists the plan; prints it for `--dry-run`; asks where needed; runs it
/// and reports each drive as re-read from the live and inactive XML: a
/// step whose drive or ISO changed since the plan is not sent (exit 1).
pub fn execute<R: BufRead, W: Write>(
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
    let asks = prompt.confirms_every_change() || (needs_confirmation && !options.yes);
    if asks && !prompt.confirm(done)? {
        writeln!(prompt.out(), "Nothing changed.")?;
        return Ok(ExitCode::SUCCESS);
    }
    // Said if a signal ends the run from here on: what has gone out to
    // virsh may have been done, whatever the report would have said.
    let mut first = true;
    let outcomes = media.apply(steps, |step| {
        if std::mem::take(&mut first) {
            last_words::add(
                "dismount_iso_qemu: interrupted; these changes had been sent to virsh \
                 and may have been made (`isos` shows the drives as they are now):\n",
            );
        }
        last_words::add(&format!("  {}\n", step.describe()));
    });
    last_words::clear();
    let count = |wanted: fn(&Verdict) -> bool| {
        outcomes
            .iter()
            .filter(|outcome| wanted(&outcome.verdict))
            .count()
    };
    let failed = count(|v| matches!(v, Verdict::Failed(_)));
    let not_sent = count(|v| matches!(v, Verdict::NotRun(_)));
    for outcome in &outcomes {
        let line = match &outcome.verdict {
            Verdict::Done => format!("ok: {}", outcome.description),
            Verdict::Failed(why) => format!("FAILED: {}: {}", outcome.description, sanitize(why)),
            Verdict::NotRun(why) => {
                format!("NOT DONE: {}: {}", outcome.description, sanitize(why))
            }
        };
        writeln!(prompt.out(), "{line}")?;
        if let Some(note) = &outcome.note {
            writeln!(prompt.out(), "  note: {}", sanitize(note))?;
        }
    }
    let total = outcomes.len();
    if failed > 0 {
        writeln!(prompt.out(), "{failed} of {total} drive change(s) failed.")?;
    }
    if not_sent > 0 {
        writeln!(
            prompt.out(),
            "{not_sent} of {total} drive change(s) not sent: the drive or the ISO is no \
             longer what the plan showed; look again (`isos`) and plan anew."
        )?;
    }
    if prompt.output_closed() {
        // The report above went nowhere: the outcome in one line.
        eprintln!(
            "dismount_iso_qemu: stdout is closed; of {total} drive change(s) {} made, {failed} \
             failed, {not_sent} not sent",
            total - failed - not_sent
        );
    }
    Ok(if failed + not_sent == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
