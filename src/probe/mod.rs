//! The ProbeManager: scans the fleet in a fixed number of virsh processes,
//! probes guests in parallel under one deadline, and caches each metric for
//! its own time to live. This file holds the scan's order of steps; each
//! step lives in the file named for its role.

mod agents;
mod cache;
mod disks;
mod metrics;
mod os;
mod osinfo;
mod values;

use std::collections::HashMap;
use std::sync::Mutex;
use std::thread;

use anyhow::{Context, Result};

use crate::agent::AgentError;
use crate::mutex::lock;
use crate::virsh::{DomainState, Listing, ListingFor, Virsh, Xmls};
use agents::{Agents, Answer, Ask, Driver};
use cache::Cache;
use values::OsReport;

pub use values::{DomainStatus, Figures, OsSource, ProbeOptions, Progress, ReadFault};

pub struct ProbeManager {
    virsh: Virsh,
    options: ProbeOptions,
    cache: Cache,
    agents: Agents,
    /// The URI virsh reported at the last listing.
    uri: Mutex<Option<String>>,
}

impl ProbeManager {
    pub fn new(virsh: Virsh, options: ProbeOptions) -> Self {
        ProbeManager {
            virsh,
            options,
            cache: Cache::default(),
            agents: Agents::default(),
            uri: Mutex::new(None),
        }
    }

    pub fn virsh(&self) -> &Virsh {
        &self.virsh
    }

    pub fn options(&self) -> &ProbeOptions {
        &self.options
    }

    /// The connection's URI: as given, else as virsh reported it at the
    /// last listing (`None` before the first).
    pub fn uri(&self) -> Option<String> {
        self.virsh
            .config()
            .connect
            .clone()
            .or_else(|| lock(&self.uri).clone())
    }

    /// Forgets what the cache keeps for the domains named `name` (see
    /// [`Cache::forget`]): the next scan reads them whole.
    pub fn forget(&self, name: &str) {
        self.cache.forget(name);
    }

    /// A scan within the TTLs (the tests' shorthand).
    #[cfg(test)]
    pub fn scan(&self, progress: Progress) -> Result<Vec<DomainStatus>> {
        self.scan_with(Figures::Cached, progress)
    }

    /// A scan that reads every figure again (the tests' shorthand).
    #[cfg(test)]
    pub fn rescan(&self, progress: Progress) -> Result<Vec<DomainStatus>> {
        self.scan_with(Figures::Fresh, progress)
    }

    /// Scans every domain; rows come back sorted by name. The listing
    /// first (QEMU's figures included), then side by side the figures a
    /// driver's stats lack and the XML of domains whose OS is not cached,
    /// then the guest agents of running guests whose OS (or, where asked
    /// for, filesystems) is not cached.
    /// With [`Figures::Fresh`] no figure comes from the cache; the OS
    /// follows `--os-ttl` either way.
    pub fn scan_with(&self, figures: Figures, progress: Progress) -> Result<Vec<DomainStatus>> {
        self.virsh.warm_up();
        let uri = self.virsh.uri_label();
        let listing = self
            .virsh
            .list_all(ListingFor::Scan)
            .with_context(|| format!("cannot list domains on {uri}"))?;
        Ok(self.scan_listing(listing, figures, &Xmls::new(), progress))
    }

    /// [`ProbeManager::scan_with`] from a listing read already (`serve`
    /// reads one for the table and the drives both), and the XML of the
    /// domains read already, by target (`serve` reads it for the drives:
    /// live for the active, the definition for the others, which is what
    /// `dumpxml` prints for an inactive domain); only the XML it lacks is
    /// read.
    pub fn scan_listing(
        &self,
        listing: Listing,
        figures: Figures,
        known_xml: &Xmls,
        progress: Progress,
    ) -> Vec<DomainStatus> {
        lock(&self.uri).clone_from(&listing.uri);
        let driver = Driver::of(&listing);
        let listed = listing.into_domains();
        let fs_ttl = self.options.filesystems.then_some(self.options.fs_ttl);
        let domains =
            self.cache
                .lookup(listed, self.options.cache_ttl, self.options.os_ttl, fs_ttl);
        // The quick reads first, side by side on the connection's sessions:
        // figures and the XML for libosinfo metadata. The guest agents come
        // after, since a hung one holds its session until the deadline and
        // must not hold these up.
        // Owned: the figures' step takes the domains over meanwhile.
        let unknown_os: Vec<(String, String)> = domains
            .iter()
            .filter(|domain| domain.os.is_none())
            .map(|domain| {
                let listed = &domain.listed;
                (listed.target().to_owned(), listed.name.clone())
            })
            .collect();
        let read_xmls = || os::read_xmls(&self.virsh, &unknown_os, known_xml);
        let (domains, xmls) = if self.virsh.config().sessions > 1 {
            thread::scope(|scope| {
                let figures =
                    scope.spawn(|| metrics::fill(&self.virsh, &self.cache, domains, figures));
                let xmls = read_xmls();
                let domains = figures
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
                (domains, xmls)
            })
        } else {
            // On one session the two reads would only wait for each other,
            // and a wait past the deadline behind a hung read would pass
            // for a hung read of its own.
            (
                metrics::fill(&self.virsh, &self.cache, domains, figures),
                read_xmls(),
            )
        };
        let xml_of = |target: &str| xmls.get(target).or_else(|| known_xml.get(target));
        // One round of agent calls for the OS and the filesystems both,
        // under the one deadline.
        let asks: Vec<Ask> = domains
            .iter()
            .filter(|domain| domain.listed.state == DomainState::Running)
            .map(|domain| Ask {
                target: domain.listed.target(),
                os: domain.os.is_none(),
                // Not a guest whose agent hung: see `disks::fill`.
                fs: self.options.filesystems
                    && domain.fs.is_none()
                    && !domain.os.as_ref().is_some_and(|os| os.agent_hung),
            })
            .filter(|ask| ask.os || ask.fs)
            .collect();
        let answers = self
            .agents
            .ask(&self.virsh, &self.options, driver, &asks, progress);
        let mut answers: HashMap<String, Answer> = asks
            .iter()
            .map(|ask| ask.target.to_owned())
            .zip(answers)
            .collect();
        let domains = os::fill(&self.cache, domains, xml_of, |running| {
            running
                .iter()
                .map(|target| {
                    // Every running guest without an OS was asked.
                    answers
                        .get_mut(*target)
                        .and_then(|answer| answer.os.take())
                        .unwrap_or_else(|| OsReport::agent_failed(&AgentError::Deadline))
                })
                .collect()
        });
        let domains = if self.options.filesystems {
            disks::fill(&self.cache, domains, &mut answers)
        } else {
            domains
        };
        domains.into_iter().map(DomainStatus::from).collect()
    }
}

#[cfg(test)]
mod tests;
