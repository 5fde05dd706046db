//! The media manager of one connection: every drive's media, live and in
//! the persistent config, read in a fixed number of virsh calls; ISOs
//! resolved and checked; planned changes run and verified.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::OnceLock;

use anyhow::{Context, Result, bail};

use super::domain::DomainMedia;
use super::iso::{self, IsoName};
use super::plan::{Outcome, Reply, Step, Verdict};
use super::rows::{DriveRow, drive_rows};
use crate::virsh::{
    DomainState, DomainXml, Listing, ListingFor, Media, Uri, Virsh, VirshError, XmlRead, Xmls,
};

/// A listing's domains as one read of their XML left them.
pub(crate) struct ListingMedia {
    /// Every domain whose XML was read, in the listing's order.
    pub domains: Vec<DomainMedia>,
    /// The domains whose XML was not (a read past its deadline, a batch
    /// that failed), by name, and why.
    pub unread: Vec<(String, VirshError)>,
    /// Each domain's current XML (live when active, else its definition),
    /// by target, as its read came out: the scan's OS probe reads its
    /// libosinfo metadata from it instead of reading it again.
    pub current_xml: Xmls,
}

/// Media work over one connection.
pub struct MediaManager {
    pub(super) virsh: Virsh,
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
    pub fn remote(&self) -> Result<bool> {
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
    /// each read once. A domain
    /// whose XML could not be read fails the whole (a plan on part of the
    /// drives would leave some out unseen), naming the domain.
    pub fn load_all(&self) -> Result<Vec<DomainMedia>> {
        let uri = self.virsh.uri_label();
        let listing = self
            .virsh
            .list_all(ListingFor::Media)
            .with_context(|| format!("cannot list domains on {uri}"))?;
        let read = self.read_listing(listing)?;
        if let Some((name, error)) = read.unread.first() {
            let more = match read.unread.len() - 1 {
                0 => String::new(),
                others => format!(" (and {others} other domain(s))"),
            };
            bail!(
                "cannot read domain XML on {uri}: '{}': {}{more}",
                crate::utils::sanitize(name),
                crate::utils::with_causes(error)
            );
        }
        Ok(read.domains)
    }

    /// The XML of a listing read already (`serve`'s scan): the live XML of
    /// the active domains and the persistent XML of the persistent ones,
    /// each read once, each domain's read its own (a hung one costs only
    /// itself, see [`Virsh::domain_xmls`]).
    pub(crate) fn read_listing(&self, listing: Listing) -> Result<ListingMedia> {
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
        let mut outcomes = self.virsh.domain_xmls(&reads).into_iter();
        let mut read = ListingMedia {
            domains: Vec::with_capacity(domains.len()),
            unread: Vec::new(),
            current_xml: Xmls::with_capacity(domains.len()),
        };
        for domain in domains {
            let live = domain.state.is_active().then(|| outcomes.next()).flatten();
            let config = domain.persistent.then(|| outcomes.next()).flatten();
            let unread = live.iter().chain(&config).find_map(|o| o.as_ref().err());
            match unread {
                Some(error) => read.unread.push((domain.name.clone(), error.clone())),
                None => read.domains.push(DomainMedia {
                    live: parse_xml(&domain.name, "dumpxml", text_of(&live))?,
                    config: parse_xml(&domain.name, "dumpxml --inactive", text_of(&config))?,
                    name: domain.name.clone(),
                    state: domain.state,
                }),
            }
            // For an inactive domain, `dumpxml` prints its definition:
            // the same XML as `--inactive`.
            if let Some(current) = live.or(config) {
                read.current_xml
                    .insert(domain.target().to_owned(), current.into());
            }
        }
        Ok(read)
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
    /// `dominfo`, live XML and persistent XML, batched (a long list over
    /// the sessions: [`Virsh::per_domain_each`]).
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
                        parse_xml(name, "dumpxml", live.as_deref())?
                    } else {
                        None
                    },
                    config: if persistent {
                        parse_xml(name, "dumpxml --inactive", inactive.as_deref())?
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

    /// An ISO path as the hypervisor will read it: locally made absolute
    /// with `.` and `..` resolved, since libvirt stores the path as given
    /// and a `..` under the working directory breaks once that is gone;
    /// remotely taken as given (its directories are not ours to resolve).
    pub fn normalize(&self, iso: &str) -> Result<String> {
        if self.remote()? {
            return Ok(iso.to_owned());
        }
        let absolute = std::path::absolute(iso).with_context(|| {
            format!(
                "cannot make '{}' an absolute path",
                crate::utils::sanitize(iso)
            )
        })?;
        Ok(iso::physical(&absolute).to_string_lossy().into_owned())
    }

    /// What `--iso` names on this connection, for matching drives: the
    /// name as given and, where a storage pool holds it, the volume's
    /// other name, so a drive naming the file either way is found.
    pub fn iso_name(&self, iso: &str) -> Result<IsoName> {
        let remote = self.remote()?;
        // A local path is looked up as libvirt would read it.
        let lookup = if remote || !iso.starts_with('/') {
            iso.to_owned()
        } else {
            self.normalize(iso)?
        };
        let alias = self.virsh.volume_alias(&lookup).with_context(|| {
            format!(
                "cannot look up storage volumes on {}",
                self.virsh.uri_label()
            )
        })?;
        let name = if remote {
            IsoName::exact(iso)
        } else {
            IsoName::local(iso)
        };
        Ok(name.also(alias))
    }

    /// A pool's `POOL/VOLUME` as its volume's path; else
    /// [`Self::normalize`]d, refused if it holds a control character, and
    /// refused unless it exists: on this host's
    /// filesystem as a regular file, or for a remote host among its storage
    /// pools' volumes.
    pub fn resolve_iso(&self, iso: &str) -> Result<String> {
        let shown = crate::utils::sanitize(iso);
        if iso.chars().any(char::is_control) {
            // libvirt would store it, and every later read of the XML (and
            // of `domblklist`) would show another name.
            bail!("'{shown}' holds a control character: refused, rename the file first");
        }
        let remote = self.remote()?;
        // `POOL/VOLUME`, as `isos` and `library` show it: the volume's
        // path, which the pool vouches for. Locally a relative path that
        // exists stays the file it always was.
        if !iso.starts_with('/') && (remote || !Path::new(iso).exists()) {
            let path = self.virsh.volume_alias(iso).with_context(|| {
                format!(
                    "cannot look up storage volumes on {}",
                    self.virsh.uri_label()
                )
            })?;
            if let Some(path) = path.filter(|path| path.starts_with('/')) {
                return Ok(path);
            }
        }
        if remote && !iso.starts_with('/') {
            bail!(
                "'{shown}' is neither an absolute path nor a pool's volume (POOL/VOLUME) on {}",
                self.virsh.uri_label()
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

    /// Runs the steps, going on after a failure so one bad drive does not
    /// leave the rest undone. Right before a domain's steps its XML is read
    /// again: a step whose drive no longer holds what the plan showed, or
    /// whose ISO has gone, is not sent. `on_send` hears of each step just
    /// before its command goes out. Afterwards the live and inactive XML
    /// of every domain changed is read again and each step checked.
    pub fn apply(&self, steps: &[Step], mut on_send: impl FnMut(&Step)) -> Vec<Outcome> {
        let mut names: Vec<&str> = Vec::new();
        for step in steps {
            if !names.contains(&step.domain()) {
                names.push(step.domain());
            }
        }
        let mut outcomes: Vec<Option<Outcome>> = vec![None; steps.len()];
        let mut sent: Vec<(usize, Reply)> = Vec::new();
        for name in names {
            let now = self.load(&[name]).map(|mut read| read.pop().flatten());
            for (index, step) in steps.iter().enumerate() {
                if step.domain() != name {
                    continue;
                }
                let refusal = match &now {
                    Err(error) => Some(format!("cannot read the domain again: {error:#}")),
                    Ok(now) => step.drift(now.as_ref()).or_else(|| {
                        let iso = step.iso()?;
                        let gone = self.resolve_iso(iso).err()?;
                        Some(format!("the ISO is gone since the plan: {gone:#}"))
                    }),
                };
                if let Some(why) = refusal {
                    outcomes[index] = Some(Outcome::not_run(step, why));
                    continue;
                }
                on_send(step);
                let result = match step.libvirt_wait() {
                    Some(wait) => self
                        .virsh
                        .with_timeout(self.virsh.config().timeout + wait)
                        .run(&step.argv()),
                    None => self.virsh.run(&step.argv()),
                }
                .map(drop);
                sent.push((index, Reply::of(step, result.as_ref().map(|_| ()))));
            }
        }
        let mut changed: Vec<&str> = sent.iter().map(|(i, _)| steps[*i].domain()).collect();
        changed.sort_unstable();
        changed.dedup();
        if changed.is_empty() {
            return outcomes.into_iter().flatten().collect();
        }
        let after: Result<BTreeMap<&str, DomainMedia>> = self.load(&changed).map(|read| {
            changed
                .iter()
                .copied()
                .zip(read)
                .filter_map(|(name, domain)| Some((name, domain?)))
                .collect()
        });
        for (index, reply) in sent {
            let step = &steps[index];
            outcomes[index] = Some(match &after {
                Ok(after) => step.verify(after.get(step.domain()), reply),
                Err(error) => Outcome {
                    description: step.describe(),
                    verdict: Verdict::Failed(format!(
                        "sent, but its XML could not be read again to check it: {error:#}"
                    )),
                    note: None,
                },
            });
        }
        outcomes
            .into_iter()
            .map(|outcome| outcome.expect("every step is either sent or refused"))
            .collect()
    }
}

/// The text a read gave, if it gave one.
fn text_of(read: &Option<Result<Option<String>, VirshError>>) -> Option<&str> {
    read.as_ref()?.as_ref().ok()?.as_deref()
}

/// One `dumpxml` output parsed; an output that is not domain XML is an
/// error naming the domain.
fn parse_xml(name: &str, command: &str, text: Option<&str>) -> Result<Option<DomainXml>> {
    text.map(crate::virsh::domxml::parse_domain_xml)
        .transpose()
        .with_context(|| {
            format!(
                "`{command}` of '{}' is not XML",
                crate::utils::sanitize(name)
            )
        })
}
