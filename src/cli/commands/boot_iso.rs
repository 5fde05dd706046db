//! `boot-iso`: one start of a shut-off VM from an ISO, as a transient
//! start (`virsh create` of its persistent XML, changed for this start
//! only), its persistent config left byte for byte as it was.

use std::io::{BufRead, Read, Seek, SeekFrom, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use crate::cli::change::Confirm;
use crate::cli::options::Context;
use crate::cli::prompt::{self, Prompt};
use crate::cli::steps::host_of;
use crate::cli::values::parse_duration;
use crate::fleet::Fleet;
use crate::media::{
    BOOT_RECORD_LEN, BOOT_RECORD_OFFSET, BootPlan, MediaManager, PrivateDir,
    is_el_torito_boot_record, open_never_blocking, plan_boot,
};
use crate::utils::sanitize;
use crate::virsh::groups::last_words;
use crate::virsh::metadata::booted_from_iso;
use crate::virsh::{DomainState, Virsh};

const EXAMPLES: &str = "\
Examples:
  dismount_iso_qemu boot-iso web-1 isos/rescue.iso --dry-run
  dismount_iso_qemu boot-iso web-1 /var/lib/libvirt/images/rescue.iso --yes
  dismount_iso_qemu boot-iso db-1 isos/debian-12.iso --restart --wait 5m
  dismount_iso_qemu boot-iso web-1 isos/rescue.iso --target sdb";

/// Start a shut-off VM once from an ISO (a rescue or installer): its config stays as it is, so the next start boots as before
// Plain values already, so the request itself, for the menu too.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = EXAMPLES)]
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
    #[command(flatten)]
    pub confirm: Confirm,
    /// Print the plan, the exact virsh commands and the transient XML's changes, and change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Start from an ISO that has no El Torito boot record
    // Not change-media's --force (`change::ChangeArgs`): named for what
    // it allows.
    #[arg(long = "force")]
    pub without_boot_record: bool,
}

impl BootIsoArgs {
    const DEFAULT_WAIT_TEXT: &str = "2m";
    /// `--wait`'s default, for the menu (which has no options).
    pub const DEFAULT_WAIT: Duration = Duration::from_secs(120);

    pub fn run(self, context: &Context) -> Result<ExitCode> {
        context.to_stdout(|out| {
            prompt::with_stdin(out, |prompt| boot_iso(&context.fleet, prompt, &self))
        })
    }
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

/// How often the state of a VM asked to shut down is looked at.
const SHUTDOWN_POLL: Duration = Duration::from_millis(500);

/// `boot-iso DOMAIN ISO` on the host that has the domain.
fn boot_iso<R: BufRead, W: Write>(
    fleet: &Fleet,
    prompt: &mut Prompt<R, W>,
    request: &BootIsoArgs,
) -> Result<ExitCode> {
    let Some(host) = host_of(fleet, prompt, &request.domain)? else {
        return Ok(ExitCode::SUCCESS);
    };
    let media = MediaManager::new(host.virsh().clone());
    boot_on(&media, prompt, request)
}

/// `boot-iso` on one connection: every check before any change, the plan
/// shown and confirmed, then (with `--restart`) the ACPI shutdown, the
/// transient start, and the check that the config is as it was.
pub fn boot_on<R: BufRead, W: Write>(
    media: &MediaManager,
    prompt: &mut Prompt<R, W>,
    request: &BootIsoArgs,
) -> Result<ExitCode> {
    let virsh = media.virsh();
    let name = request.domain.as_str();
    let shown = sanitize(name);
    let domain = media.load_one(name)?;
    if domain.config.is_none() {
        bail!(
            "'{shown}' is a transient VM: it has no config to start it again as it was; nothing changed"
        );
    }
    let shut_down = match domain.state {
        DomainState::ShutOff | DomainState::Crashed => false,
        DomainState::Running | DomainState::Idle if request.restart => true,
        DomainState::Running | DomainState::Idle => bail!(
            "'{shown}' is running: pass --restart to shut it down (ACPI) and start it from the \
             ISO; nothing changed"
        ),
        other => bail!("'{shown}' is {other}: boot-iso starts a shut-off VM; nothing changed"),
    };
    refuse_an_inactive_pool(media, &request.iso)?;
    let iso = media.resolve_iso(&request.iso)?;
    if !request.without_boot_record && !has_boot_record(media, &iso)? {
        bail!(
            "'{}' has no El Torito boot record: it would not boot; pass --force to start from it \
             anyway; nothing changed",
            sanitize(&iso)
        );
    }
    let config = read_config(virsh, name)?;
    let plan = plan_boot(&config, &iso, request.target.as_deref())?;
    let before = virsh
        .run(&["dumpxml", "--inactive", "--domain", name])
        .with_context(|| format!("cannot read the config of '{shown}'"))?
        .stdout;

    writeln!(
        prompt.out(),
        "Planned: '{shown}' starts once from {} (its config stays as it is; the next start boots \
         as before):",
        sanitize(&iso)
    )?;
    if shut_down {
        writeln!(
            prompt.out(),
            "  shut it down first (ACPI), waiting up to {}",
            humantime::format_duration(request.wait)
        )?;
    }
    for change in &plan.changes {
        writeln!(prompt.out(), "  {change}")?;
    }
    for warning in &plan.warnings {
        writeln!(prompt.out(), "  warning: {warning}")?;
    }
    let shutdown = ["shutdown", "--domain", name, "--mode", "acpi"];
    if request.dry_run {
        writeln!(
            prompt.out(),
            "Dry run: these virsh commands would run (TRANSIENT.xml: the config with the \
             changes above); nothing changed."
        )?;
        if shut_down {
            let line = virsh.invocation(&shutdown).command_line();
            writeln!(prompt.out(), "{}", sanitize(&line))?;
        }
        let line = virsh
            .invocation(&["create", "TRANSIENT.xml"])
            .command_line();
        writeln!(prompt.out(), "{}", sanitize(&line))?;
        writeln!(
            prompt.out(),
            "TRANSIENT.xml against `virsh dumpxml --inactive --security-info`:"
        )?;
        for line in &plan.diff {
            writeln!(prompt.out(), "  {}", sanitize(line))?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let asks = prompt.confirms_every_change() || !request.confirm.yes;
    if asks && !prompt.confirm("started")? {
        writeln!(prompt.out(), "Nothing changed.")?;
        return Ok(ExitCode::SUCCESS);
    }

    if shut_down {
        last_words::add(&format!(
            "dismount_iso_qemu: interrupted while '{shown}' was asked to shut down (ACPI); it \
             was not started from the ISO\n"
        ));
        let down = shut_down_and_wait(virsh, name, request.wait);
        last_words::clear();
        if !down? {
            writeln!(
                prompt.out(),
                "NOT DONE: '{shown}' did not shut down within {}: left running, not started \
                 from the ISO (the tool never forces a VM off)",
                humantime::format_duration(request.wait)
            )?;
            return Ok(ExitCode::FAILURE);
        }
    }
    // What a VM this run shut down is left as, when it is not started.
    // The command is quoted as a shell reads it: a name with a space or a
    // leading dash is typed back as it is.
    let left = if shut_down {
        let start = virsh
            .invocation(&["start", "--domain", name])
            .command_line();
        format!(
            "; it was shut down and is off: `{}` starts it as before",
            sanitize(&start)
        )
    } else {
        String::new()
    };
    // The config is read again right before the start: one changed since
    // the plan is not started from a stale XML.
    if read_config(virsh, name)? != config {
        writeln!(
            prompt.out(),
            "NOT DONE: the config of '{shown}' changed since the plan; look again and plan \
             anew{left}"
        )?;
        return Ok(ExitCode::FAILURE);
    }
    if let Err(error) = start(virsh, name, &plan) {
        // The VM's state the line ends with, after the cause.
        bail!("{error:#}{left}");
    }
    report(virsh, prompt, name, &plan, &before)
}

/// `POOL/VOLUME` of a pool that is there but inactive: said so (its
/// volumes cannot be looked up, which would read as "does not exist").
fn refuse_an_inactive_pool(media: &MediaManager, iso: &str) -> Result<()> {
    let Some((pool, _)) = iso.split_once('/') else {
        return Ok(());
    };
    if iso.starts_with('/') || (!media.remote()? && std::path::Path::new(iso).exists()) {
        return Ok(());
    }
    if let Some(info) = media.virsh().pool_info(pool)?
        && !info.active
    {
        bail!(
            "storage pool '{}' on {} is inactive: start it first (virsh pool-start {}); nothing \
             changed",
            sanitize(pool),
            media.virsh().uri_label(),
            sanitize(pool)
        );
    }
    Ok(())
}

/// The persistent XML, secrets included (`--security-info`): the transient
/// start keeps a VNC or SPICE password as the config has it.
fn read_config(virsh: &Virsh, name: &str) -> Result<String> {
    Ok(virsh
        .run(&["dumpxml", "--inactive", "--security-info", "--domain", name])
        .with_context(|| format!("cannot read the config of '{}'", sanitize(name)))?
        .stdout)
}

/// Asks the guest to shut down (ACPI) and waits up to `wait` for it to be
/// off; `false` when it is still up by then (it is left so).
fn shut_down_and_wait(virsh: &Virsh, name: &str, wait: Duration) -> Result<bool> {
    virsh
        .run(&["shutdown", "--domain", name, "--mode", "acpi"])
        .with_context(|| format!("cannot ask '{}' to shut down", sanitize(name)))?;
    let deadline = Instant::now() + wait;
    loop {
        let state = virsh
            .run(&["domstate", "--domain", name])
            .with_context(|| format!("cannot read the state of '{}'", sanitize(name)))?;
        if DomainState::from_words(state.stdout.trim()) == Some(DomainState::ShutOff) {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        std::thread::sleep(SHUTDOWN_POLL.min(deadline.saturating_duration_since(Instant::now())));
    }
}

/// `virsh create` of the transient XML, from a file only we can read.
fn start(virsh: &Virsh, name: &str, plan: &BootPlan) -> Result<()> {
    let dir = PrivateDir::new("boot")?;
    let file = dir.path().join("transient.xml");
    std::fs::write(&file, &plan.xml).with_context(|| format!("cannot write {}", file.display()))?;
    let path = file.to_str().context("a temporary path is not UTF-8")?;
    last_words::add(&format!(
        "dismount_iso_qemu: interrupted; '{}' may have been started from the ISO (`status` \
         shows it); its config is unchanged\n",
        sanitize(name)
    ));
    let started = virsh.run(&["create", path]);
    last_words::clear();
    started.with_context(|| format!("cannot start '{}' from the ISO", sanitize(name)))?;
    Ok(())
}

/// Reads the VM again: it runs from the ISO's drive, and its config is
/// byte for byte what it was.
fn report<R: BufRead, W: Write>(
    virsh: &Virsh,
    prompt: &mut Prompt<R, W>,
    name: &str,
    plan: &BootPlan,
    before: &str,
) -> Result<ExitCode> {
    let shown = sanitize(name);
    let after = virsh
        .run(&["dumpxml", "--inactive", "--domain", name])
        .with_context(|| format!("started, but the config of '{shown}' cannot be read again"))?
        .stdout;
    let live = virsh
        .run(&["dumpxml", "--domain", name])
        .with_context(|| format!("started, but '{shown}' cannot be read again"))?
        .stdout;
    let mut code = ExitCode::SUCCESS;
    if booted_from_iso(&live).as_deref() == Some(plan.target.as_str()) {
        writeln!(
            prompt.out(),
            "ok: '{shown}' started from the ISO in drive {}",
            sanitize(&plan.target)
        )?;
    } else {
        writeln!(
            prompt.out(),
            "FAILED: '{shown}' is not running from the ISO's start (another start came between)"
        )?;
        code = ExitCode::FAILURE;
    }
    if after == before {
        writeln!(
            prompt.out(),
            "ok: its config is unchanged: the next start boots as before"
        )?;
    } else {
        writeln!(
            prompt.out(),
            "FAILED: the config of '{shown}' changed during the start (`virsh dumpxml --inactive` \
             shows it)"
        )?;
        code = ExitCode::FAILURE;
    }
    Ok(code)
}

/// Whether the ISO at `iso` (as resolved: a path on the VM's host) has an
/// El Torito boot record: read from the file here, or from the volume
/// over the libvirt connection for a remote host.
fn has_boot_record(media: &MediaManager, iso: &str) -> Result<bool> {
    let mut sector = vec![0u8; BOOT_RECORD_LEN];
    if !media.remote()? {
        let mut file = open_never_blocking(std::path::Path::new(iso))
            .with_context(|| format!("cannot open '{}'", sanitize(iso)))?;
        if !file.metadata()?.is_file() {
            bail!(
                "'{}' is not a regular file: an ISO must be an image file",
                sanitize(iso)
            );
        }
        file.seek(SeekFrom::Start(BOOT_RECORD_OFFSET))?;
        let mut read = 0;
        while read < sector.len() {
            match file.read(&mut sector[read..])? {
                0 => break,
                n => read += n,
            }
        }
        return Ok(is_el_torito_boot_record(&sector[..read]));
    }
    let dir = PrivateDir::new("boot")?;
    let file = dir.path().join("sector");
    let into = file.to_str().context("a temporary path is not UTF-8")?;
    let offset = BOOT_RECORD_OFFSET.to_string();
    let length = BOOT_RECORD_LEN.to_string();
    media
        .virsh()
        .run(&[
            "vol-download",
            "--vol",
            iso,
            "--file",
            into,
            "--offset",
            &offset,
            "--length",
            &length,
        ])
        .with_context(|| {
            format!(
                "cannot read the boot record of '{}' on {}",
                sanitize(iso),
                media.virsh().uri_label()
            )
        })?;
    let bytes = std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
    Ok(is_el_torito_boot_record(&bytes))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::cli::prompt::Console;
    use crate::testing::{fake_virsh, fixture};
    use crate::virsh::fake::FakeRunner;

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

    /// A VM named like an option, with a space, that `--restart` shut
    /// down and whose config then changed: the way back it is told is a
    /// command that starts it as typed (before: `virsh start -web 1`,
    /// which virsh reads as an option and two words).
    #[test]
    fn the_way_back_names_the_vm_as_a_shell_reads_it() {
        let name = "-web 1";
        let dir = PrivateDir::new("boot-test").unwrap();
        let iso = dir.path().join("rescue.iso");
        let mut bytes = vec![0u8; BOOT_RECORD_OFFSET as usize];
        bytes.extend(include_bytes!("../../../fixtures/iso/rescue-sector17.bin"));
        std::fs::write(&iso, bytes).unwrap();
        let config = fixture("virsh/dumpxml-lab-boot-bios-inactive.xml");
        let fake = Arc::new(FakeRunner::default());
        let expect = |words: &[&str], answer: &str| {
            let mut command = words.to_vec();
            command.extend(["--domain", name]);
            fake.expect(&command, 0, answer, "");
        };
        expect(&["dominfo"], &fixture("virsh/dominfo-running.txt"));
        expect(&["dumpxml"], &config);
        expect(&["dumpxml", "--inactive"], &config);
        expect(&["dumpxml", "--inactive", "--security-info"], &config);
        expect(&["dumpxml", "--inactive"], &config);
        fake.expect(&["shutdown", "--domain", name, "--mode", "acpi"], 0, "", "");
        expect(&["domstate"], "shut off\n");
        expect(
            &["dumpxml", "--inactive", "--security-info"],
            &format!("{config}<!-- changed -->\n"),
        );
        let media = MediaManager::new(fake_virsh(&fake));
        let mut output = Vec::new();
        let request = BootIsoArgs {
            domain: name.to_owned(),
            iso: iso.display().to_string(),
            target: None,
            restart: true,
            wait: BootIsoArgs::DEFAULT_WAIT,
            confirm: Confirm { yes: true },
            dry_run: false,
            without_boot_record: false,
        };
        let code = {
            let mut console = Console::for_changes(&b""[..], &mut output);
            let mut prompt = Prompt::command(&mut console, false);
            boot_on(&media, &mut prompt, &request).unwrap()
        };
        fake.assert_all_used();
        assert_eq!(code, ExitCode::FAILURE);
        let text = String::from_utf8(output).unwrap();
        assert!(
            text.contains("`virsh -c qemu:///fake start --domain '-web 1'` starts it as before"),
            "{text}"
        );
    }
}
