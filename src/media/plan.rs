//! The plan of media changes: which virsh command each drive needs under
//! libvirt's persistence rules, and whether the re-read XML shows it done.

use crate::utils::sanitize;
use crate::virsh::domxml::free_sata_target;
use crate::virsh::{Drive, Media, VirshError};

use super::domain::{DomainMedia, DriveViews};
use super::iso::IsoName;

/// What to do to a drive's media.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Into an empty drive: `--insert`.
    Insert(String),
    /// Over media already there (`--update`, which also fills an empty
    /// view, where `--insert` would fail on the full one).
    Replace {
        iso: String,
        previous: Vec<String>,
    },
    Eject {
        previous: Vec<String>,
    },
}

/// One virsh command of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// `change-media` on an existing drive. `live` and `config` say which
    /// definitions it touches: a running persistent domain both, a shut-off
    /// one its config, a transient one the running VM.
    Change {
        domain: String,
        target: String,
        action: Action,
        live: bool,
        config: bool,
        force: bool,
        /// What the plan saw in the views it touches: the contract the
        /// drive is checked against right before the change.
        seen: Seen,
    },
    /// `attach-disk`: a new CD-ROM holding `iso`. On a SATA bus in the
    /// config only, since libvirt cannot hot-plug a SATA disk; on a SCSI
    /// controller also into the running VM (`live`).
    Attach {
        domain: String,
        target: String,
        iso: String,
        bus: AttachBus,
        live: bool,
        running: bool,
    },
}

/// The bus a new CD-ROM goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachBus {
    Sata,
    Scsi,
}

impl AttachBus {
    /// `attach-disk --targetbus`'s word.
    fn as_str(self) -> &'static str {
        match self {
            AttachBus::Sata => "sata",
            AttachBus::Scsi => "scsi",
        }
    }
}

/// The media labels a drive held when the plan was made, in the live and
/// the config view (`None`: empty); only the views a step touches count.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seen {
    pub live: Option<String>,
    pub config: Option<String>,
}

/// How virsh answered a step's command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// virsh ran it and reported no error.
    Confirmed,
    /// Past `--timeout`: the change may still have been made.
    Late(String),
    /// virsh's words for a failure.
    Refused(String),
}

impl Reply {
    /// From the result of running the step's command.
    pub fn of(step: &Step, result: Result<(), &VirshError>) -> Self {
        match result {
            Ok(()) => Reply::Confirmed,
            Err(error @ (VirshError::Timeout { .. } | VirshError::SshTimeout { .. })) => {
                Reply::Late(match step.libvirt_wait() {
                    Some(wait) => format!(
                        "{error} (`--timeout` and the {} libvirt waits for the guest to open the tray)",
                        humantime::format_duration(wait)
                    ),
                    None => error.to_string(),
                })
            }
            Err(error) => Reply::Refused(explain_failure(step, error)),
        }
    }
}

/// How one step ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The re-read XML shows the drive as asked.
    Done,
    /// The command ran, and the drive is not as asked: why.
    Failed(String),
    /// Never sent, since the drive or the ISO is no longer what the plan
    /// showed: why.
    NotRun(String),
}

/// How one step ended, after the XML was read again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub description: String,
    pub verdict: Verdict,
    /// What the admin still has to know or do (a restart, say).
    pub note: Option<String>,
}

impl Outcome {
    /// A step left unsent, and why.
    pub fn not_run(step: &Step, why: String) -> Self {
        Outcome {
            description: step.describe(),
            verdict: Verdict::NotRun(why),
            note: None,
        }
    }
}

/// How long libvirt (qemu_hotplug.c's `CHANGE_MEDIA_TIMEOUT`) waits for
/// a running guest to open its tray before it fails with "timed out
/// waiting to open tray": a guest that mounted the disc keeps it locked.
/// Measured 5.03 s on the lab's lab-locked (docs/libvirt-as-measured.md).
pub const TRAY_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

impl Step {
    /// What libvirt may wait for on top of virsh's own work: a live
    /// change of a drive's media, unforced, waits for the guest to open
    /// the tray. `--timeout` bounds virsh's work; without this the tool
    /// gave up at a 5 s `--timeout` a moment before libvirt's answer, and
    /// never got to say that the tray is locked and `--force` the way on.
    pub fn libvirt_wait(&self) -> Option<std::time::Duration> {
        matches!(
            self,
            Step::Change {
                live: true,
                force: false,
                ..
            }
        )
        .then_some(TRAY_WAIT)
    }

    pub fn domain(&self) -> &str {
        match self {
            Step::Change { domain, .. } | Step::Attach { domain, .. } => domain,
        }
    }

    /// The virsh arguments; every one names its domain with `--domain`, so
    /// a name like `-db` is never taken for an option.
    pub fn argv(&self) -> Vec<String> {
        let mut argv: Vec<&str> = Vec::new();
        match self {
            Step::Change {
                domain,
                target,
                action,
                live,
                config,
                force,
                ..
            } => {
                argv.extend(["change-media", "--domain", domain, "--path", target]);
                match action {
                    Action::Insert(iso) => argv.extend(["--source", iso, "--insert"]),
                    Action::Replace { iso, .. } => argv.extend(["--source", iso, "--update"]),
                    Action::Eject { .. } => argv.push("--eject"),
                }
                for (wanted, flag) in [
                    (*live, "--live"),
                    (*config, "--config"),
                    (*force, "--force"),
                ] {
                    if wanted {
                        argv.push(flag);
                    }
                }
            }
            Step::Attach {
                domain,
                target,
                iso,
                bus,
                live,
                ..
            } => {
                argv.extend([
                    "attach-disk",
                    "--domain",
                    domain,
                    "--source",
                    iso,
                    "--target",
                    target,
                    "--targetbus",
                    bus.as_str(),
                    "--type",
                    "cdrom",
                    "--mode",
                    "readonly",
                    "--config",
                ]);
                if *live {
                    argv.push("--live");
                }
            }
        }
        argv.into_iter().map(str::to_owned).collect()
    }

    /// Which of the domain's views the step changes, in words.
    fn scope(&self) -> &'static str {
        match self {
            Step::Change {
                live: true,
                config: true,
                ..
            }
            | Step::Attach { live: true, .. } => "live and config",
            Step::Change {
                live: true,
                config: false,
                ..
            } => "live only",
            Step::Change { .. } | Step::Attach { .. } => "config only",
        }
    }

    /// One line for people, names sanitized.
    pub fn describe(&self) -> String {
        match self {
            Step::Change {
                domain,
                target,
                action,
                ..
            } => {
                let scope = self.scope();
                let what = match action {
                    Action::Insert(iso) => format!("insert {}", sanitize(iso)),
                    Action::Replace { iso, previous } => {
                        format!("replace {} with {}", joined(previous), sanitize(iso))
                    }
                    Action::Eject { previous } => format!("eject {}", joined(previous)),
                };
                format!(
                    "{} {}: {what} ({scope})",
                    sanitize(domain),
                    sanitize(target)
                )
            }
            Step::Attach {
                domain,
                target,
                iso,
                bus,
                live,
                ..
            } => format!(
                "{}: add {} CD-ROM {} holding {} ({})",
                sanitize(domain),
                bus.as_str().to_ascii_uppercase(),
                sanitize(target),
                sanitize(iso),
                if *live { "live and config" } else { "config" }
            ),
        }
    }

    /// The ISO the step puts into a drive, if any.
    pub fn iso(&self) -> Option<&str> {
        match self {
            Step::Change {
                action: Action::Insert(iso) | Action::Replace { iso, .. },
                ..
            }
            | Step::Attach { iso, .. } => Some(iso),
            Step::Change { .. } => None,
        }
    }

    /// The step with `iso` where it puts one: a plan made, and confirmed,
    /// before the ISO had its final path (`mount --upload` plans before
    /// the first byte is sent, and mounts the volume's path afterwards),
    /// keeping what the plan saw, against which the drive is checked.
    pub fn with_iso(mut self, path: &str) -> Self {
        match &mut self {
            Step::Change {
                action: Action::Insert(iso) | Action::Replace { iso, .. },
                ..
            }
            | Step::Attach { iso, .. } => path.clone_into(iso),
            Step::Change { .. } => {}
        }
        self
    }

    /// Why the step must not be sent to the domain as it is `now` (read
    /// right before the change): its drive no longer holds what the plan
    /// showed, or the new drive's target has been taken. `None` when the
    /// plan still holds.
    pub fn drift(&self, now: Option<&DomainMedia>) -> Option<String> {
        let Some(now) = now else {
            return Some("the domain can no longer be read".to_owned());
        };
        match self {
            Step::Change {
                target,
                live,
                config,
                seen,
                ..
            } => {
                let views = now.views(target);
                let mut changed = Vec::new();
                for (checked, name, drive, planned) in [
                    (*live, "live", views.live, &seen.live),
                    (*config, "config", views.config, &seen.config),
                ] {
                    if !checked {
                        continue;
                    }
                    let Some(drive) = drive else {
                        changed.push(format!(
                            "the {name} definition has no drive {} now",
                            sanitize(target)
                        ));
                        continue;
                    };
                    let held = drive.media.as_ref().map(Media::label);
                    if held != *planned {
                        changed.push(format!(
                            "the {name} XML holds {} now (the plan saw {})",
                            shown(held.as_deref()),
                            shown(planned.as_deref())
                        ));
                    }
                }
                (!changed.is_empty()).then(|| {
                    format!(
                        "the drive changed since the plan: {}; left as it is",
                        changed.join("; ")
                    )
                })
            }
            Step::Attach { target, .. } => {
                let Some(config) = &now.config else {
                    return Some("the domain has no persistent config now".to_owned());
                };
                let taken = config
                    .disks
                    .iter()
                    .chain(now.live.iter().flat_map(|live| &live.disks))
                    .any(|taken| taken.target == *target);
                taken.then(|| {
                    format!(
                        "the target {} was taken since the plan; nothing added",
                        sanitize(target)
                    )
                })
            }
        }
    }

    /// Checks the re-read domain against what the step asked for: the XML
    /// is the truth, whatever virsh answered.
    pub fn verify(&self, after: Option<&DomainMedia>, reply: Reply) -> Outcome {
        let mismatch = match after {
            None => Some("the domain can no longer be read".to_owned()),
            Some(domain) => self.mismatch(domain),
        };
        let (verdict, note) = match (mismatch, reply) {
            (None, Reply::Confirmed) => (Verdict::Done, None),
            (None, Reply::Late(why)) => (
                Verdict::Done,
                Some(format!(
                    "virsh answered late ({why}), but the XML shows the change made"
                )),
            ),
            (None, Reply::Refused(why)) => (
                Verdict::Done,
                Some(format!(
                    "virsh reported an error ({why}), but the XML shows the change made"
                )),
            ),
            (Some(mismatch), Reply::Confirmed) => (Verdict::Failed(mismatch), None),
            (Some(mismatch), Reply::Late(why)) => {
                (Verdict::Failed(format!("{why}; {mismatch}")), None)
            }
            (Some(_), Reply::Refused(why)) => (Verdict::Failed(why), None),
        };
        let note = note.or_else(|| match self {
            Step::Attach {
                running: true,
                live: false,
                ..
            } if verdict == Verdict::Done => Some(
                "the new drive appears at the VM's next cold boot (SATA cannot be hot-plugged); \
                 restart it when convenient"
                    .to_owned(),
            ),
            _ => None,
        });
        Outcome {
            description: self.describe(),
            verdict,
            note,
        }
    }

    fn mismatch(&self, domain: &DomainMedia) -> Option<String> {
        let (target, views, expected, live, config) = match self {
            Step::Change {
                target,
                action,
                live,
                config,
                ..
            } => {
                let expected = match action {
                    Action::Insert(iso) | Action::Replace { iso, .. } => Some(iso.as_str()),
                    Action::Eject { .. } => None,
                };
                (target, domain.views(target), expected, *live, *config)
            }
            Step::Attach {
                target, iso, live, ..
            } => (
                target,
                domain.views(target),
                Some(iso.as_str()),
                *live,
                true,
            ),
        };
        let mut problems = Vec::new();
        for (checked, name, drive) in [(live, "live", views.live), (config, "config", views.config)]
        {
            if !checked {
                continue;
            }
            let held = drive.map(|d| d.media.as_ref().map(Media::label));
            match held {
                None => problems.push(format!("no drive {} in the {name} XML", sanitize(target))),
                Some(held) if held.as_deref() != expected => problems.push(format!(
                    "the {name} XML has {} (asked: {})",
                    held.as_deref()
                        .map_or_else(|| "it empty".to_owned(), |h| format!("'{}'", sanitize(h))),
                    expected.map_or_else(|| "empty".to_owned(), |e| format!("'{}'", sanitize(e)))
                )),
                Some(_) => {}
            }
        }
        (!problems.is_empty()).then(|| problems.join("; "))
    }
}

/// A label for a message: quoted, or "nothing" for an empty view.
fn shown(label: Option<&str>) -> String {
    label.map_or_else(|| "nothing".to_owned(), |l| format!("'{}'", sanitize(l)))
}

fn joined(media: &[String]) -> String {
    media
        .iter()
        .map(|m| sanitize(m))
        .collect::<Vec<_>>()
        .join(" / ")
}

impl Seen {
    fn of(views: &DriveViews) -> Self {
        let label = |drive: Option<&Drive>| drive.and_then(|d| d.media.as_ref()).map(Media::label);
        Seen {
            live: label(views.live),
            config: label(views.config),
        }
    }
}

/// The labels a drive holds in the views a step touches, each once.
fn held(views: &DriveViews, live: bool, config: bool) -> Vec<String> {
    let mut labels: Vec<String> = Vec::new();
    for (wanted, drive) in [(live, views.live), (config, views.config)] {
        if let Some(media) = drive.filter(|_| wanted).and_then(|d| d.media.as_ref()) {
            if !labels.contains(&media.label()) {
                labels.push(media.label());
            }
        }
    }
    labels
}

/// Mounting `iso` into `target`: `None` when every view the domain's
/// persistence rule touches already holds it.
pub fn plan_mount(domain: &DomainMedia, target: &str, iso: &str, force: bool) -> Option<Step> {
    let views = domain.views(target);
    let (live, config) = (views.live.is_some(), views.config.is_some());
    let previous = held(&views, live, config);
    let already = [(live, views.live), (config, views.config)]
        .iter()
        .filter(|(wanted, _)| *wanted)
        .all(|(_, drive)| {
            drive
                .and_then(|d| d.media.as_ref())
                .map(Media::label)
                .as_deref()
                == Some(iso)
        });
    if already {
        return None;
    }
    let action = if previous.is_empty() {
        Action::Insert(iso.to_owned())
    } else {
        Action::Replace {
            iso: iso.to_owned(),
            previous,
        }
    };
    Some(Step::Change {
        domain: domain.name.clone(),
        target: target.to_owned(),
        action,
        live,
        config,
        force,
        seen: Seen::of(&views),
    })
}

/// Ejecting `target`, in each view holding media (only `iso`, when given):
/// ejecting an empty view is an error in virsh, and a view holding another
/// ISO than the one asked for is left alone. `None` when nothing matches.
pub fn plan_eject(
    domain: &DomainMedia,
    target: &str,
    iso: Option<&IsoName>,
    force: bool,
) -> Option<Step> {
    let views = domain.views(target);
    let matches = |drive: Option<&Drive>| {
        drive
            .and_then(|d| d.media.as_ref())
            .is_some_and(|media| iso.is_none_or(|iso| iso.matches(&media.label())))
    };
    let (live, config) = (matches(views.live), matches(views.config));
    if !live && !config {
        return None;
    }
    Some(Step::Change {
        domain: domain.name.clone(),
        target: target.to_owned(),
        action: Action::Eject {
            previous: held(&views, live, config),
        },
        live,
        config,
        force,
        seen: Seen::of(&views),
    })
}

/// Ejecting every drive of `domains` that holds media: only `target` when
/// given (each domain must have it), only `iso` when given.
pub fn plan_ejects(
    domains: &[DomainMedia],
    target: Option<&str>,
    iso: Option<&IsoName>,
    force: bool,
) -> anyhow::Result<Vec<Step>> {
    let mut steps = Vec::new();
    for domain in domains {
        let targets = match target {
            Some(target) => vec![domain.drive(target)?],
            None => domain.targets(),
        };
        steps.extend(
            targets
                .into_iter()
                .filter_map(|target| plan_eject(domain, target, iso, force)),
        );
    }
    Ok(steps)
}

/// A new CD-ROM holding `iso` for a domain without one: on its SCSI
/// controller, hot-plugged into a running VM and in the config; else a
/// SATA one (virt-install's bus on q35), in the config only.
pub fn plan_attach(domain: &DomainMedia, iso: &str) -> anyhow::Result<Step> {
    let Some(config) = &domain.config else {
        anyhow::bail!(
            "'{}' is transient: it has no config to add a drive to, and a SATA CD-ROM cannot be hot-plugged",
            sanitize(&domain.name)
        );
    };
    // A target taken in either definition would clash at the next boot.
    let taken: Vec<&str> = config
        .disks
        .iter()
        .chain(domain.live.iter().flat_map(|live| &live.disks))
        .map(|disk| disk.target.as_str())
        .collect();
    let target = free_sata_target(&taken).ok_or_else(|| {
        anyhow::anyhow!("'{}' has no free sdX target left", sanitize(&domain.name))
    })?;
    let running = domain.live.is_some();
    let bus = if config.scsi_controller {
        AttachBus::Scsi
    } else {
        AttachBus::Sata
    };
    Ok(Step::Attach {
        domain: domain.name.clone(),
        target,
        iso: iso.to_owned(),
        bus,
        live: running && bus == AttachBus::Scsi,
        running,
    })
}

/// virsh's words for a failed step, with the way on where there is one: a
/// guest that locked its tray (an OS that mounted the disc) refuses an
/// eject until `--force`.
pub fn explain_failure(step: &Step, error: &VirshError) -> String {
    let message = error
        .virsh_message()
        .unwrap_or_else(|| crate::utils::with_causes(error));
    let way_on = match step {
        Step::Change { force: true, .. } | Step::Attach { .. } => None,
        Step::Change {
            action: Action::Eject { .. },
            ..
        } => Some("--force ejects anyway"),
        Step::Change {
            action: Action::Replace { .. },
            ..
        } => Some("--force replaces it anyway"),
        Step::Change {
            action: Action::Insert(_),
            ..
        } => Some("--force inserts it anyway"),
    };
    match way_on {
        Some(way_on) if message.contains("tray") || message.contains("locked") => {
            format!("the tray is locked by the guest ({message}); {way_on}")
        }
        _ => message,
    }
}
