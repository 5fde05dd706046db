//! ISO media over one connection (MediaManager): every drive's media, live
//! and in the persistent config, read in a fixed number of virsh calls;
//! ISOs resolved and checked; planned changes run and verified.

mod domain;
mod iso;
mod plan;
mod rows;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::OnceLock;

use anyhow::{Context, Result, bail};

pub use domain::{DomainMedia, DriveChoice, DriveViews, IsoDrive, names_or_none};
pub use iso::IsoName;
pub use plan::{Action, Outcome, Step, plan_attach, plan_ejects, plan_mount};
pub use rows::{DriveRow, holders};

use crate::virsh::{DomainState, DomainXml, ListingFor, Media, Uri, Virsh, XmlRead};
use rows::drive_rows;

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
    /// and persistence of all, no figures, no UUIDs), then the live XML of
    /// the active domains and the persistent XML of the persistent ones,
    /// each read once.
    pub fn load_all(&self) -> Result<Vec<DomainMedia>> {
        let uri = self.virsh.uri_label();
        let listing = self
            .virsh
            .list_all(ListingFor::Media)
            .with_context(|| format!("cannot list domains on {uri}"))?;
        if self.virsh.config().connect.is_none()
            && let Some(uri) = &listing.uri
        {
            // The URI virsh connected to, read in the same batch: no need
            // to ask it again for where ISO paths live.
            let _ = self.remote.set(Uri::parse(uri).is_remote());
        }
        let domains = listing.into_domains();
        // Only the XML that exists: live for the active, the config for
        // the persistent; both in one list, in `domains`' order.
        let reads: Vec<XmlRead> = domains
            .iter()
            .flat_map(|domain| {
                let read = |inactive| XmlRead {
                    target: domain.target(),
                    name: &domain.name,
                    inactive,
                };
                let live = domain.state.is_active().then(|| read(false));
                live.into_iter()
                    .chain(domain.persistent.then(|| read(true)))
            })
            .collect();
        let mut xmls = self
            .virsh
            .domain_xmls(&reads)
            .with_context(|| format!("cannot read domain XML on {uri}"))?
            .into_iter();
        let mut loaded = Vec::with_capacity(domains.len());
        for domain in domains {
            let mut next = |exists: bool| if exists { xmls.next().flatten() } else { None };
            let live = next(domain.state.is_active());
            let config = next(domain.persistent);
            loaded.push(DomainMedia {
                live: parse_xml(&domain.name, "dumpxml", live)?,
                config: parse_xml(&domain.name, "dumpxml --inactive", config)?,
                name: domain.name,
                state: domain.state,
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
        let paths: BTreeSet<&str> = domains
            .iter()
            .flat_map(|domain| {
                domain
                    .targets()
                    .into_iter()
                    .flat_map(|target| domain.views(target).media().filter_map(Media::path))
            })
            .collect();
        let paths: Vec<&str> = paths.into_iter().collect();
        let present: BTreeMap<&str, bool> =
            paths.iter().copied().zip(self.exist(&paths)?).collect();
        Ok(drive_rows(domains, |path| !present[path]))
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
