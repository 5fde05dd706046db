//! ISO media across the fleet: which removable drive holds what, live and
//! in the persistent config, read in a fixed number of virsh processes.

mod plan;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{Context, Result, bail};
use serde::Serialize;

pub use plan::{Action, Outcome, Step, plan_attach, plan_eject, plan_mount};

use crate::virsh::{DomainState, DomainXml, Drive, DriveKind, Media, Uri, Virsh};

/// One domain's drives as seen by both of libvirt's definitions.
#[derive(Debug, Clone)]
pub struct DomainMedia {
    pub name: String,
    pub state: DomainState,
    /// The running definition; `None` when the domain is not running.
    pub live: Option<DomainXml>,
    /// The persistent config; `None` for a transient domain.
    pub config: Option<DomainXml>,
}

/// A drive target's two views; either may lack the drive (a hot-plugged
/// drive exists live only, a freshly attached one in the config only).
#[derive(Debug, Clone, Copy)]
pub struct DriveViews<'a> {
    pub live: Option<&'a Drive>,
    pub config: Option<&'a Drive>,
}

impl<'a> DriveViews<'a> {
    /// The drive as the VM sees it now: live when running, else the config.
    pub fn current(self) -> &'a Drive {
        self.live
            .or(self.config)
            .expect("a target comes from one of the views")
    }

    fn live_media(self) -> Option<&'a Media> {
        self.live.and_then(|d| d.media.as_ref())
    }

    fn config_media(self) -> Option<&'a Media> {
        self.config.and_then(|d| d.media.as_ref())
    }

    /// Every medium the drive holds in either view.
    pub fn media(self) -> impl Iterator<Item = &'a Media> {
        self.live_media().into_iter().chain(self.config_media())
    }
}

impl DomainMedia {
    /// Every drive target of either view, live ones first, each once.
    pub fn targets(&self) -> Vec<&str> {
        let mut targets: Vec<&str> = Vec::new();
        for xml in self.live.iter().chain(&self.config) {
            for drive in &xml.drives {
                if !targets.contains(&drive.target.as_str()) {
                    targets.push(&drive.target);
                }
            }
        }
        targets
    }

    pub fn views(&self, target: &str) -> DriveViews<'_> {
        DriveViews {
            live: self.live.as_ref().and_then(|x| x.drive(target)),
            config: self.config.as_ref().and_then(|x| x.drive(target)),
        }
    }

    /// The CD-ROM targets, the drives an ISO can go into.
    pub fn cdrom_targets(&self) -> Vec<&str> {
        self.targets()
            .into_iter()
            .filter(|t| self.views(t).current().kind == DriveKind::Cdrom)
            .collect()
    }
}

/// One row of `isos`: a drive of a domain.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DriveRow {
    pub domain: String,
    pub state: DomainState,
    pub persistent: bool,
    pub target: String,
    pub bus: Option<String>,
    pub device: DriveKind,
    /// What the VM sees now (live when running, else the config); `None`
    /// when the drive is empty.
    pub source: Option<String>,
    /// What the persistent config holds; `None` when empty or transient.
    pub config_source: Option<String>,
    /// The running VM and its config disagree: an eject done live only
    /// comes back at the next cold boot.
    pub live_config_differ: bool,
    /// Whether an ISO the drive holds (in either view) is gone; `None`
    /// when there is nothing to check (empty drive, pool volume source).
    pub missing: Option<bool>,
    pub tray_open: bool,
    /// Other VMs holding the same media.
    pub shared_with: Vec<String>,
}

impl DriveRow {
    pub fn mounted(&self) -> bool {
        self.source.is_some() || self.config_source.is_some()
    }

    /// Whether either view holds the ISO `iso` names.
    pub fn holds(&self, iso: &IsoName) -> bool {
        self.source
            .iter()
            .chain(&self.config_source)
            .any(|label| iso.matches(label))
    }
}

/// An ISO as named on the command line (`--iso`), matched against drives'
/// media labels: as given (a path, or a pool volume's `pool/volume` as the
/// table shows it), and on this host also by its absolute path with `..`
/// resolved and by the file it ends at, so `a/../b.iso` or a symlink find
/// the drives that hold `b.iso`.
#[derive(Debug, Clone, Default)]
pub struct IsoName {
    given: String,
    absolute: Option<PathBuf>,
    file: Option<PathBuf>,
}

impl IsoName {
    /// Matches the exact label only (a remote host: its paths are not ours
    /// to resolve).
    pub fn exact(label: &str) -> Self {
        IsoName {
            given: label.to_owned(),
            ..IsoName::default()
        }
    }

    fn local(given: &str) -> Self {
        IsoName {
            given: given.to_owned(),
            absolute: std::path::absolute(given)
                .ok()
                .map(|path| lexically_normal(&path)),
            file: std::fs::canonicalize(given).ok(),
        }
    }

    pub fn matches(&self, label: &str) -> bool {
        label == self.given
            || self
                .absolute
                .as_deref()
                .is_some_and(|absolute| lexically_normal(Path::new(label)) == absolute)
            || self
                .file
                .as_ref()
                .is_some_and(|file| std::fs::canonicalize(label).is_ok_and(|held| &held == file))
    }
}

/// `path` with `.` and `..` resolved by their names alone.
fn lexically_normal(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut normal = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                normal.pop();
            }
            other => normal.push(other),
        }
    }
    normal
}

/// Media work over one connection.
pub struct MediaManager {
    virsh: Virsh,
    /// Whether the connection reaches another machine, known once asked.
    remote: OnceLock<bool>,
}

impl MediaManager {
    pub fn new(virsh: Virsh) -> Self {
        MediaManager {
            virsh,
            remote: OnceLock::new(),
        }
    }

    /// Whether ISO paths are another machine's: from `-c`, or (without it)
    /// from the URI virsh itself says it connected to.
    fn remote(&self) -> Result<bool> {
        if let Some(remote) = self.remote.get() {
            return Ok(*remote);
        }
        let remote = match &self.virsh.config().connect {
            Some(uri) => Uri::parse(uri).is_remote(),
            None => {
                let uri = self
                    .virsh
                    .run(&["uri"])
                    .context("cannot ask virsh which URI it connects to")?;
                Uri::parse(uri.stdout.trim()).is_remote()
            }
        };
        Ok(*self.remote.get_or_init(|| remote))
    }

    pub fn virsh(&self) -> &Virsh {
        &self.virsh
    }

    /// Every domain of the connection, sorted by name: the listing (state
    /// and persistence of all), then the live XML of the active domains and
    /// the persistent XML of the persistent ones, each read once.
    pub fn load_all(&self) -> Result<Vec<DomainMedia>> {
        let uri = self.virsh.uri_label();
        let listing = self
            .virsh
            .list_all()
            .with_context(|| format!("cannot list domains on {uri}"))?;
        // (name, how commands name it, state, persistent): a name that
        // holds a newline is named by its UUID.
        let mut domains: Vec<(&str, &str, DomainState, bool)> = listing
            .stats
            .iter()
            .map(|stats| {
                (
                    stats.name.as_str(),
                    crate::probe::command_target(
                        &stats.name,
                        listing.uuids.get(&stats.name).map(String::as_str),
                    ),
                    stats.state().unwrap_or(DomainState::NoState),
                    !listing.transient.contains(&stats.name),
                )
            })
            .collect();
        domains.sort_unstable_by(|a, b| a.0.cmp(b.0));
        // Only the XML that exists: live for the active, the config for
        // the persistent; both in one list, in `domains`' order.
        const LIVE: &[&str] = &["dumpxml"];
        const CONFIG: &[&str] = &["dumpxml", "--inactive"];
        let calls: Vec<(&str, &[&str])> = domains
            .iter()
            .flat_map(|&(_, target, state, persistent)| {
                let live = state.is_active().then_some((target, LIVE));
                live.into_iter()
                    .chain(persistent.then_some((target, CONFIG)))
            })
            .collect();
        let mut xmls = self
            .virsh
            .on_domains(&calls)
            .with_context(|| format!("cannot read domain XML on {uri}"))?
            .into_iter();
        let mut loaded = Vec::with_capacity(domains.len());
        for (name, _, state, persistent) in domains {
            let live = if state.is_active() {
                xmls.next().flatten()
            } else {
                None
            };
            let config = if persistent {
                xmls.next().flatten()
            } else {
                None
            };
            loaded.push(DomainMedia {
                name: name.to_owned(),
                state,
                live: parse_xml(name, "dumpxml", live)?,
                config: parse_xml(name, "dumpxml --inactive", config)?,
            });
        }
        Ok(loaded)
    }

    /// One domain; a name the connection does not know is an error.
    pub fn load_one(&self, name: &str) -> Result<DomainMedia> {
        self.load(&[name])?.pop().flatten().with_context(|| {
            format!(
                "no domain named '{}' on {}",
                crate::utils::sanitize(name),
                self.virsh.uri_label()
            )
        })
    }

    /// The named domains, each `None` where it could not be read: their
    /// `dominfo`, live XML and persistent XML, in one virsh process.
    pub fn load(&self, names: &[&str]) -> Result<Vec<Option<DomainMedia>>> {
        let uri = self.virsh.uri_label();
        let outputs = self
            .virsh
            .per_domain_each(
                names,
                &[&["dominfo"], &["dumpxml"], &["dumpxml", "--inactive"]],
            )
            .with_context(|| format!("cannot read domain details and XML on {uri}"))?;
        names
            .iter()
            .zip(outputs)
            .map(|(name, outputs)| {
                let [info, live, inactive]: [Option<String>; 3] =
                    outputs.try_into().expect("three outputs per domain");
                let Some(info) = info else {
                    return Ok(None);
                };
                let info = crate::virsh::parse::parse_dominfo(&info);
                let state = info.state.unwrap_or(DomainState::NoState);
                // A driver that does not say is taken as persistent: the
                // usual case, and a wrong `--config` fails loudly.
                let persistent = info.persistent.unwrap_or(true);
                Ok(Some(DomainMedia {
                    name: (*name).to_owned(),
                    state,
                    live: if state.is_active() {
                        parse_xml(name, "dumpxml", live)?
                    } else {
                        None
                    },
                    config: if persistent {
                        parse_xml(name, "dumpxml --inactive", inactive)?
                    } else {
                        None
                    },
                }))
            })
            .collect()
    }

    /// The rows of `isos`, with the missing-ISO check (one filesystem look
    /// per path locally; one batched `vol-info` for a remote host).
    pub fn rows(&self, domains: &[DomainMedia]) -> Result<Vec<DriveRow>> {
        // One walk over every drive: who holds each medium, and which files
        // to look for.
        let mut holders: BTreeMap<String, BTreeSet<&str>> = BTreeMap::new();
        let mut paths: BTreeSet<&str> = BTreeSet::new();
        for domain in domains {
            for target in domain.targets() {
                for media in domain.views(target).media() {
                    holders
                        .entry(media.label())
                        .or_default()
                        .insert(&domain.name);
                    paths.extend(media.path());
                }
            }
        }
        let paths: Vec<&str> = paths.into_iter().collect();
        let present: BTreeMap<&str, bool> =
            paths.iter().copied().zip(self.exist(&paths)?).collect();
        let mut rows = Vec::new();
        for domain in domains {
            for target in domain.targets() {
                let views = domain.views(target);
                let drive = views.current();
                let source = drive.media.as_ref().map(Media::label);
                let config_source = views.config_media().map(Media::label);
                let checked: Vec<bool> = views
                    .media()
                    .filter_map(Media::path)
                    .map(|path| !present[path])
                    .collect();
                let shared_with = views
                    .media()
                    .flat_map(|m| holders[&m.label()].iter())
                    .filter(|holder| **holder != domain.name)
                    .map(|holder| (*holder).to_owned())
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect();
                rows.push(DriveRow {
                    domain: domain.name.clone(),
                    state: domain.state,
                    persistent: domain.config.is_some(),
                    target: target.to_owned(),
                    bus: drive.bus.clone(),
                    device: drive.kind,
                    live_config_differ: domain.live.is_some()
                        && domain.config.is_some()
                        && views.live_media() != views.config_media(),
                    source,
                    config_source,
                    missing: (!checked.is_empty()).then(|| checked.contains(&true)),
                    tray_open: drive.tray_open,
                    shared_with,
                });
            }
        }
        Ok(rows)
    }

    /// Whether each path is there: on this host's filesystem for a local
    /// connection, among the storage pools' volumes for a remote one.
    pub fn exist(&self, paths: &[&str]) -> Result<Vec<bool>> {
        if !self.remote()? {
            return Ok(paths.iter().map(|p| Path::new(p).exists()).collect());
        }
        if paths.is_empty() {
            return Ok(Vec::new());
        }
        self.virsh.volumes_exist(paths).with_context(|| {
            format!(
                "cannot look up storage volumes on {}",
                self.virsh.uri_label()
            )
        })
    }

    /// An ISO path as the hypervisor sees it: locally made absolute (libvirt
    /// wants absolute paths); remotely taken as given.
    pub fn normalize(&self, iso: &str) -> Result<String> {
        if self.remote()? {
            return Ok(iso.to_owned());
        }
        Ok(std::path::absolute(iso)
            .with_context(|| {
                format!(
                    "cannot make '{}' an absolute path",
                    crate::utils::sanitize(iso)
                )
            })?
            .to_string_lossy()
            .into_owned())
    }

    /// What `--iso` names on this connection, for matching drives.
    pub fn iso_name(&self, iso: &str) -> Result<IsoName> {
        Ok(if self.remote()? {
            IsoName::exact(iso)
        } else {
            IsoName::local(iso)
        })
    }

    /// [`Self::normalize`]d, and refused unless it exists: on this host's
    /// filesystem as a regular file, or for a remote host among its storage
    /// pools' volumes.
    pub fn resolve_iso(&self, iso: &str) -> Result<String> {
        let shown = crate::utils::sanitize(iso);
        let remote = self.remote()?;
        if remote && !iso.starts_with('/') {
            bail!(
                "'{shown}' is not an absolute path: name the ISO by its volume path on the remote host"
            );
        }
        let path = self.normalize(iso)?;
        if !remote
            && let Ok(metadata) = std::fs::metadata(&path)
            && !metadata.is_file()
        {
            // A directory, a FIFO or /dev/zero would be accepted by QEMU
            // and read as garbage (or block) by the guest.
            bail!("'{shown}' is not a regular file: an ISO must be an image file");
        }
        if self.exist(&[&path])?[0] {
            Ok(path)
        } else if remote {
            bail!(
                "'{shown}' is no storage volume on {}: upload it into a pool (or refresh the pool) first",
                self.virsh.uri_label()
            )
        } else {
            bail!("ISO '{shown}' does not exist");
        }
    }

    /// The ISO volumes of the connection's storage pools, for the menu.
    pub fn pool_isos(&self) -> Result<Vec<String>> {
        let mut paths = self.virsh.volume_paths().with_context(|| {
            format!("cannot list storage volumes on {}", self.virsh.uri_label())
        })?;
        paths.retain(|p| p.to_ascii_lowercase().ends_with(".iso"));
        paths.sort();
        paths.dedup();
        Ok(paths)
    }

    /// Runs each step's virsh command, going on after a failure so one bad
    /// drive does not leave the rest undone; then re-reads the live and
    /// inactive XML of every domain touched and checks each step.
    pub fn apply(&self, steps: &[Step]) -> Result<Vec<Outcome>> {
        let errors: Vec<Option<String>> = steps
            .iter()
            .map(|step| {
                self.virsh
                    .run(&step.argv())
                    .err()
                    .map(|error| plan::explain_failure(step, &error))
            })
            .collect();
        let mut names: Vec<&str> = steps.iter().map(|s| s.domain()).collect();
        names.sort_unstable();
        names.dedup();
        let after: BTreeMap<&str, DomainMedia> = names
            .iter()
            .copied()
            .zip(self.load(&names)?)
            .filter_map(|(name, domain)| Some((name, domain?)))
            .collect();
        Ok(steps
            .iter()
            .zip(errors)
            .map(|(step, error)| step.verify(after.get(step.domain()), error))
            .collect())
    }
}

/// One `dumpxml` output parsed; an output that is not domain XML is an
/// error naming the domain.
fn parse_xml(name: &str, command: &str, text: Option<String>) -> Result<Option<DomainXml>> {
    text.map(|text| crate::virsh::domxml::parse_domain_xml(&text))
        .transpose()
        .with_context(|| {
            format!(
                "`{command}` of '{}' is not XML",
                crate::utils::sanitize(name)
            )
        })
}

#[cfg(test)]
mod tests;
