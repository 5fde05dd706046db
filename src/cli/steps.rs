//! The steps the media-changing commands (`mount`, `eject`, `boot-iso`,
//! `migrate-check --fix`) and the menu share: which host has the VM, and a
//! plan listed, confirmed, run and reported.

use std::io::{BufRead, Write};
use std::process::ExitCode;

use anyhow::{Result, bail};

use super::change::ChangeOptions;
use super::prompt::Prompt;
use crate::fleet::{Fleet, Host};
use crate::media::{MediaManager, Step, Verdict};
use crate::utils::sanitize;
use crate::virsh::groups::last_words;

/// The host whose domain is called `name`: the only host, the one host
/// that has it, or (where several have it) the one the user picks; `None`
/// when they back out. Without a terminal, several is an error.
pub fn host_of<'f, R: BufRead, W: Write>(
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
