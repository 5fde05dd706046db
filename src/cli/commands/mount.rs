//! `mount`: an ISO into a VM's CD-ROM drive (uploaded first with
//! `--upload`), and the steps the menu's "Mount" shares with it: which
//! drive, the plan, confirming, running, reporting.

use std::io::{BufRead, Write};
use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use clap::ValueHint;
use regex::Regex;

use super::upload::{UploadArgs, interrupted, upload_to};
use crate::cli::change::{ChangeArgs, ChangeOptions};
use crate::cli::exit;
use crate::cli::options::Context;
use crate::cli::prompt::{self, Prompt};
use crate::cli::steps::{execute, host_of};
use crate::cli::values::parse_regex;
use crate::fleet::{Fleet, Host};
use crate::media::{
    Action, DomainMedia, DriveChoice, IsoDrive, MediaManager, Step, names_or_none, plan_attach,
    plan_mount,
};
use crate::utils::sanitize;
use crate::virsh::Invocation;
use crate::virsh::groups::{self, last_words};

const EXAMPLES: &str = "\
Examples:
  dismount_iso_qemu mount web-1 /var/lib/libvirt/images/debian-12.iso
  dismount_iso_qemu mount web-1 isos/debian-12.iso --target sda --dry-run
  dismount_iso_qemu mount web-1 --upload ./rescue.iso --pool isos
  dismount_iso_qemu mount --match '^web-' --all isos/debian-12.iso --yes
  dismount_iso_qemu mount db-1 isos/virtio-win.iso --attach";

/// Insert an ISO into a VM's CD-ROM drive (live and config, as the VM allows)
#[derive(Debug, clap::Args)]
#[command(
    override_usage = "dismount_iso_qemu mount [OPTIONS] <DOMAIN> <ISO>\n       \
                            dismount_iso_qemu mount [OPTIONS] <DOMAIN> --upload <FILE> --pool <POOL>\n       \
                            dismount_iso_qemu mount [OPTIONS] --match <REGEX> [--all] <ISO>",
    after_help = EXAMPLES
)]
pub struct MountArgs {
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
}

impl MountArgs {
    pub fn run(self, context: &Context) -> Result<ExitCode> {
        let change = (&self.change).into();
        let request = self.request(context);
        context.to_stdout(|out| {
            prompt::with_stdin(out, |prompt| {
                mount(&context.fleet, prompt, &request, change)
            })
        })
    }

    /// `DOMAIN ISO`, `DOMAIN --upload FILE --pool POOL`, or `--match REGEX
    /// ISO`: clap fills the first positional first, so with --match it
    /// holds the ISO. A combination clap cannot refuse is a usage error.
    fn request(self, context: &Context) -> MountRequest {
        let (selection, iso) = match (self.pattern, self.iso, &self.upload) {
            (None, Some(iso), None) => (MountSelection::Domain(self.domain), iso),
            (None, None, Some(file)) => (MountSelection::Domain(self.domain), file.clone()),
            (Some(pattern), None, None) => (
                MountSelection::Matching {
                    pattern,
                    all: self.all,
                },
                self.domain,
            ),
            (Some(_), Some(_), _) => context.usage_error("with --match, mount takes the ISO alone"),
            _ => context.usage_error(
                "mount takes DOMAIN ISO (or DOMAIN --upload FILE --pool POOL, or --match REGEX ISO)",
            ),
        };
        let upload = self.upload.map(|file| UploadArgs {
            file,
            pool: self.pool.unwrap_or_default(),
            name: None,
            sha256: None,
            verify: false,
            replace: false,
            // mount's --force is the tray's; a file without the ISO
            // signature goes through `upload --force` first.
            force: false,
        });
        MountRequest {
            selection,
            iso,
            target: self.target,
            attach: self.attach,
            upload,
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
    pub upload: Option<UploadArgs>,
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
fn mount<R: BufRead, W: Write>(
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
    upload: &UploadArgs,
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
    let replaces = replaces_media(&step);
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
        return Ok(exit::signal(signal));
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

/// Whether the mount takes media out of the drive: filling an empty
/// drive takes nothing away; replacing does.
fn replaces_media(step: &Step) -> bool {
    matches!(
        step,
        Step::Change {
            action: Action::Replace { .. },
            ..
        }
    )
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
    let replaces = replaces_media(&step);
    execute(media, prompt, &[step], options, replaces, "mounted")
}
