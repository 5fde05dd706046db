//! The ProbeManager: scans the fleet in a fixed number of virsh processes,
//! probes guests in parallel under one deadline, and caches each metric for
//! its own time to live.

mod osinfo;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::agent::{self, AgentError};
use crate::mutex::lock;
use crate::virsh::{DomInfo, DomainState, DomainStats, Virsh, VirshError, metadata};

pub use osinfo::os_name_from_id;

/// Where a memory-used figure comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MemorySource {
    /// The guest's own balloon statistics: in-guest used memory.
    Guest,
    /// The host's allocation to the domain (the guest reports nothing).
    Allocation,
}

/// Who named the guest's OS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OsSource {
    /// `guestinfo --os`: the agent's guest-get-osinfo.
    Agent,
    /// os-release read through the agent's file commands.
    AgentFile,
    /// libosinfo metadata in the domain XML.
    Metadata,
}

impl OsSource {
    /// As in `status --json` and the metrics' `source` label.
    pub fn as_str(self) -> &'static str {
        match self {
            OsSource::Agent => "agent",
            OsSource::AgentFile => "agent-file",
            OsSource::Metadata => "metadata",
        }
    }
}

/// One row of the status table and of `status --json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DomainStatus {
    pub name: String,
    pub uuid: Option<String>,
    pub state: DomainState,
    pub persistent: Option<bool>,
    pub vcpus: Option<u32>,
    pub memory_used_kib: Option<u64>,
    pub memory_used_source: Option<MemorySource>,
    pub memory_max_kib: Option<u64>,
    pub cpu_time_ns: Option<u64>,
    /// Share of the domain's vCPUs used between its last two samples.
    pub cpu_percent: Option<f64>,
    /// Why figures are missing (their read failed or overran the timeout);
    /// `null` when they were read.
    pub metrics_error: Option<String>,
    pub os: String,
    pub os_source: Option<OsSource>,
    pub os_error: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ProbeOptions {
    /// Bounds every virsh process, and all guest probes of one scan together.
    pub timeout: Duration,
    /// How long CPU and memory figures are reused.
    pub cache_ttl: Duration,
    /// How long a guest's OS name is reused (failures: `cache_ttl`).
    pub os_ttl: Duration,
    /// How many guests are probed at once.
    pub jobs: usize,
}

/// The shortest pause between two background scans (the menu's refresh,
/// `serve`): a tiny `--cache-ttl` must not turn into back-to-back scans.
pub const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(5);

impl ProbeOptions {
    /// How often background scans run: every `cache_ttl`, 5 s at the least.
    pub fn refresh_interval(&self) -> Duration {
        self.cache_ttl.max(MIN_REFRESH_INTERVAL)
    }
}

/// Told how far the guest probes of a scan have got: (done, total).
pub type Progress<'a> = &'a (dyn Fn(usize, usize) + Sync);

/// CPU and memory of one domain, as cached.
#[derive(Debug, Clone, PartialEq)]
struct Metrics {
    persistent: Option<bool>,
    vcpus: Option<u32>,
    memory_used_kib: Option<u64>,
    memory_used_source: Option<MemorySource>,
    memory_max_kib: Option<u64>,
    cpu_time_ns: Option<u64>,
    cpu_percent: Option<f64>,
    /// Why the figures a driver's stats lack could not be read.
    error: Option<String>,
}

/// The outcome of OS detection for one domain, as cached.
#[derive(Debug, Clone, PartialEq)]
struct OsReport {
    name: Option<(String, OsSource)>,
    error: Option<String>,
    /// The agent did not answer in time: it is left alone for `os_ttl`,
    /// so that the next scans do not wait for it again.
    agent_hung: bool,
}

impl OsReport {
    fn found(name: String, source: OsSource) -> Self {
        OsReport {
            name: Some((name, source)),
            error: None,
            agent_hung: false,
        }
    }

    fn failed(error: String) -> Self {
        OsReport {
            name: None,
            error: Some(error),
            agent_hung: false,
        }
    }

    fn hung(error: &AgentError) -> Self {
        OsReport {
            agent_hung: true,
            ..OsReport::failed(error.to_string())
        }
    }
}

struct Cached<T> {
    taken: Instant,
    state: DomainState,
    value: T,
}

impl<T: Clone> Cached<T> {
    /// The value while it is younger than `ttl` and the domain has not
    /// changed state since: a reboot can change the OS, a stop the figures.
    fn fresh(&self, state: DomainState, ttl: Duration, now: Instant) -> Option<T> {
        (self.state == state && now.duration_since(self.taken) < ttl).then(|| self.value.clone())
    }
}

#[derive(Default)]
struct DomainCache {
    metrics: Option<Cached<Metrics>>,
    os: Option<Cached<OsReport>>,
    /// The last CPU time reading, for CPU %.
    cpu_sample: Option<(Instant, u64)>,
}

/// A domain as the listing knows it.
struct Listed {
    name: String,
    uuid: Option<String>,
    state: DomainState,
    persistent: bool,
    /// Its `domstats` block, metric groups included.
    stats: DomainStats,
}

impl Listed {
    /// How per-domain commands name it (`--domain`): by name, which
    /// libvirt looks up fastest, unless the name holds a control character
    /// (a newline, say): then by UUID, where the listing gave one.
    fn target(&self) -> &str {
        command_target(&self.name, self.uuid.as_deref())
    }

    /// Domains are cached by UUID: a name can be reused by another domain.
    fn key(&self) -> String {
        self.uuid
            .clone()
            .unwrap_or_else(|| format!("name:{}", self.name))
    }
}

pub struct ProbeManager {
    virsh: Virsh,
    options: ProbeOptions,
    cache: Mutex<HashMap<String, DomainCache>>,
    /// Set once the connection's driver refuses agent calls altogether
    /// (libvirt's test driver does), so no later domain is asked.
    agent_unsupported: AtomicBool,
    /// Whether the last listing found QEMU's driver, which does agent calls.
    driver_is_qemu: AtomicBool,
    /// The URI virsh reported at the last listing.
    uri: Mutex<Option<String>>,
}

/// Whether a scan may serve figures from the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Figures {
    /// Within `--cache-ttl`, as cached: the first table, `status`, the
    /// background refresh.
    Cached,
    /// Read again whatever the TTL: the menu's Rescan, `serve`.
    Fresh,
}

impl ProbeManager {
    pub fn new(virsh: Virsh, options: ProbeOptions) -> Self {
        ProbeManager {
            virsh,
            options,
            cache: Mutex::new(HashMap::new()),
            agent_unsupported: AtomicBool::new(false),
            driver_is_qemu: AtomicBool::new(false),
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
    /// then the guest agents of running guests whose OS is not cached.
    /// With [`Figures::Fresh`] no figure comes from the cache; the OS
    /// follows `--os-ttl` either way.
    pub fn scan_with(&self, figures: Figures, progress: Progress) -> Result<Vec<DomainStatus>> {
        let fresh_metrics = figures == Figures::Fresh;
        let listed = self.list()?;
        let now = Instant::now();
        let (mut metrics, mut os): (Vec<_>, Vec<_>) = {
            let cache = lock(&self.cache);
            listed
                .iter()
                .map(|domain| {
                    let entry = cache.get(&domain.key());
                    let metrics = entry
                        .and_then(|e| e.metrics.as_ref())
                        // Figures the listing brought are fresher still.
                        .filter(|_| !fresh_metrics && !has_every_metric(domain))
                        .and_then(|c| c.fresh(domain.state, self.options.cache_ttl, now));
                    let os = entry.and_then(|e| e.os.as_ref()).and_then(|c| {
                        let ttl = if c.value.name.is_some() || c.value.agent_hung {
                            self.options.os_ttl
                        } else {
                            self.options.cache_ttl
                        };
                        c.fresh(domain.state, ttl, now)
                    });
                    (metrics, os)
                })
                .unzip()
        };
        // The quick reads first, side by side on the connection's sessions:
        // figures and the XML for libosinfo metadata. The guest agents come
        // after, since a hung one holds its session until the deadline and
        // must not hold these up.
        let stale_os: Vec<&str> = listed
            .iter()
            .zip(&os)
            .filter(|(_, os)| os.is_none())
            .map(|(domain, _)| domain.target())
            .collect();
        let (metrics_filled, xmls) = thread::scope(|scope| {
            let metrics_job = scope.spawn(|| self.fill_metrics(&listed, &mut metrics));
            let xmls = if stale_os.is_empty() {
                Ok(Vec::new())
            } else {
                self.virsh.dumpxml_many(&stale_os)
            };
            let metrics_filled = metrics_job
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            (metrics_filled, xmls)
        });
        let gone = metrics_filled?;
        self.fill_os(&listed, &mut os, xmls, progress)?;
        Ok(listed
            .into_iter()
            .zip(metrics.into_iter().zip(os))
            .enumerate()
            .filter(|(index, _)| !gone.contains(index))
            .map(|(_, (domain, (metrics, os)))| {
                row(
                    domain,
                    metrics.expect("metrics filled"),
                    os.expect("OS filled"),
                )
            })
            .collect())
    }

    /// Names, states and UUIDs of every domain, in one virsh process; also
    /// learns whether the driver is QEMU's, which answers agent calls.
    fn list(&self) -> Result<Vec<Listed>> {
        let uri = self.virsh.uri_label();
        let listing = self
            .virsh
            .list_all()
            .with_context(|| format!("cannot list domains on {uri}"))?;
        self.driver_is_qemu
            .store(listing.driver() == Some("qemu"), Ordering::SeqCst);
        lock(&self.uri).clone_from(&listing.uri);
        let mut listed: Vec<Listed> = listing
            .stats
            .into_iter()
            .map(|stats| Listed {
                uuid: listing.uuids.get(&stats.name).cloned(),
                state: stats.state().unwrap_or(DomainState::NoState),
                persistent: !listing.transient.contains(&stats.name),
                name: stats.name.clone(),
                stats,
            })
            .collect();
        listed.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(listed)
    }

    /// The metrics of every domain not served from the cache: from its
    /// `domstats` block where that has every figure (QEMU), with one
    /// batched `dominfo` for the domains whose block lacks some (the test
    /// driver's has state only); all of them cached.
    /// Returns the domains that turned out to be gone: their `dominfo`
    /// failed, and the connection no longer knows them.
    fn fill_metrics(
        &self,
        listed: &[Listed],
        metrics: &mut [Option<Metrics>],
    ) -> Result<HashSet<usize>> {
        let lacking: Vec<usize> = (0..listed.len())
            .filter(|&i| metrics[i].is_none() && !has_every_metric(&listed[i]))
            .collect();
        let names: Vec<&str> = lacking.iter().map(|&i| listed[i].target()).collect();
        let mut infos: HashMap<usize, DomInfo> = HashMap::new();
        let mut failed: Option<String> = None;
        let mut gone = HashSet::new();
        if !names.is_empty() {
            match self.virsh.dominfo_many(&names) {
                Ok(read) => {
                    for (index, info) in lacking.iter().copied().zip(read) {
                        match info {
                            Some(info) => {
                                infos.insert(index, info);
                            }
                            // Vanished since the listing? Then it leaves
                            // the table; otherwise its figures stay blank.
                            None => {
                                if let Ok(false) = self.virsh.has_domain(listed[index].target()) {
                                    gone.insert(index);
                                }
                            }
                        }
                    }
                }
                // Past its deadline, say: those rows say so, and the
                // others (and the rest of the scan) stand.
                Err(error) => failed = Some(format!("cannot read its figures: {error}")),
            }
        }
        let now = Instant::now();
        let mut cache = lock(&self.cache);
        for (index, domain) in listed.iter().enumerate() {
            if metrics[index].is_some() {
                continue;
            }
            let entry = cache.entry(domain.key()).or_default();
            let info = infos.remove(&index).unwrap_or_default();
            let mut fresh = measure(domain, info);
            if let (Some(reason), true) = (&failed, lacking.contains(&index)) {
                // Not cached: the next scan tries again.
                fresh.error = Some(reason.clone());
                metrics[index] = Some(fresh);
                continue;
            }
            if let Some(cpu) = fresh.cpu_time_ns {
                fresh.cpu_percent = entry
                    .cpu_sample
                    .and_then(|sample| cpu_percent(sample, (now, cpu), fresh.vcpus));
                entry.cpu_sample = Some((now, cpu));
            } else {
                entry.cpu_sample = None;
            }
            entry.metrics = Some(Cached {
                taken: now,
                state: domain.state,
                value: fresh.clone(),
            });
            metrics[index] = Some(fresh);
        }
        Ok(gone)
    }

    /// Detects the OS of every domain not served from the cache: agent
    /// first, then os-release through the agent, then libosinfo metadata.
    /// `xmls` holds the XML of each domain whose `os` is `None`, in order.
    fn fill_os(
        &self,
        listed: &[Listed],
        os: &mut [Option<OsReport>],
        xmls: Result<Vec<Option<String>>, VirshError>,
        progress: Progress,
    ) -> Result<()> {
        let stale: Vec<usize> = (0..listed.len()).filter(|&i| os[i].is_none()).collect();
        let running: Vec<usize> = stale
            .iter()
            .copied()
            .filter(|&i| listed[i].state == DomainState::Running)
            .collect();
        let names: Vec<&str> = running.iter().map(|&i| listed[i].target()).collect();
        let reports = self.probe_agents(&names, progress);
        for (index, report) in running.iter().zip(reports) {
            os[*index] = Some(report);
        }
        for &index in &stale {
            if os[index].is_none() {
                // The agent only answers a running guest.
                os[index] = Some(OsReport::failed(format!(
                    "domain is {}",
                    listed[index].state
                )));
            }
        }
        // `stale[k]` is the row of `xmls[k]`.
        let unnamed: Vec<usize> = (0..stale.len())
            .filter(|&k| os[stale[k]].as_ref().is_some_and(|r| r.name.is_none()))
            .collect();
        match xmls {
            Ok(xmls) => {
                for k in unnamed {
                    if let Some(id) = xmls[k].as_deref().and_then(metadata::libosinfo_os_id) {
                        os[stale[k]] =
                            Some(OsReport::found(os_name_from_id(&id), OsSource::Metadata));
                    }
                }
            }
            // A failed read (a batch past its deadline, say) marks the rows
            // that needed the XML; the rest of the table stands.
            Err(error) => {
                let reason = format!("cannot read its XML: {error}");
                for k in unnamed {
                    let report =
                        os[stale[k]].get_or_insert_with(|| OsReport::failed(String::new()));
                    report.error = Some(match &report.error {
                        Some(first) if !first.is_empty() => format!("{first}; {reason}"),
                        _ => reason.clone(),
                    });
                }
            }
        }
        let now = Instant::now();
        let mut cache = lock(&self.cache);
        for &index in &stale {
            let domain = &listed[index];
            cache.entry(domain.key()).or_default().os = Some(Cached {
                taken: now,
                state: domain.state,
                value: os[index].clone().expect("OS filled"),
            });
        }
        Ok(())
    }

    /// Asks the agents of `names`, at most `jobs` at a time, all within one
    /// deadline of `timeout`: however many agents hang, the table waits
    /// for one timeout. Each virsh process gets only the time left, so none
    /// outlives the deadline.
    fn probe_agents(&self, names: &[&str], progress: Progress) -> Vec<OsReport> {
        let deadline = Instant::now() + self.options.timeout;
        let slots: Vec<Mutex<Option<OsReport>>> = names.iter().map(|_| Mutex::new(None)).collect();
        let next = AtomicUsize::new(0);
        let done = AtomicUsize::new(0);
        // Unless the driver is QEMU's, the first probe runs alone for a
        // moment: a driver without agent support (the test driver) says so
        // at once, and then no other domain is asked. A slow first answer is
        // a guest's problem, not the driver's, so the others start after a
        // quarter of the timeout at the latest.
        let first_done = (Mutex::new(false), Condvar::new());
        let head_start = if self.driver_is_qemu.load(Ordering::SeqCst) {
            Duration::ZERO
        } else {
            self.options.timeout / 4
        };
        thread::scope(|scope| {
            // Each probe holds a session: more workers than sessions would
            // only queue, and spend their share of the deadline waiting.
            let workers = self.options.jobs.min(self.virsh.config().sessions);
            for worker in 0..workers.clamp(1, names.len().max(1)) {
                let (slots, next, done, first_done) = (&slots, &next, &done, &first_done);
                scope.spawn(move || {
                    if worker > 0 {
                        let (flag, signal) = first_done;
                        let guard = lock(flag);
                        let _ = signal.wait_timeout_while(guard, head_start, |done| !*done);
                    }
                    loop {
                        let slot = next.fetch_add(1, Ordering::SeqCst);
                        let Some(name) = names.get(slot) else { break };
                        *lock(&slots[slot]) = Some(self.probe_agent(name, deadline));
                        if slot == 0 {
                            *lock(&first_done.0) = true;
                            first_done.1.notify_all();
                        }
                        progress(done.fetch_add(1, Ordering::SeqCst) + 1, names.len());
                    }
                });
            }
        });
        slots
            .into_iter()
            .map(|slot| {
                slot.into_inner()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .expect("every name is probed before the scope ends")
            })
            .collect()
    }

    /// One guest: `guestinfo --os`, then os-release through the agent when
    /// the agent answered but would not give the OS.
    fn probe_agent(&self, name: &str, deadline: Instant) -> OsReport {
        if self.agent_unsupported.load(Ordering::SeqCst) {
            return OsReport::failed(AgentError::DriverUnsupported.to_string());
        }
        let Some(virsh) = self.virsh_until(deadline) else {
            return OsReport::failed(AgentError::Deadline.to_string());
        };
        let error = match agent::os_name(&virsh, name) {
            Ok(os) => return OsReport::found(os, OsSource::Agent),
            Err(AgentError::DriverUnsupported) => {
                self.agent_unsupported.store(true, Ordering::SeqCst);
                return OsReport::failed(AgentError::DriverUnsupported.to_string());
            }
            Err(error) if error.agent_answered() => error,
            Err(error @ AgentError::Timeout(_)) => return OsReport::hung(&error),
            Err(error) => return OsReport::failed(error.to_string()),
        };
        let Some(virsh) = self.virsh_until(deadline) else {
            return OsReport::failed(error.to_string());
        };
        match agent::os_release_name(&virsh, name) {
            Ok(os) => OsReport::found(os, OsSource::AgentFile),
            // The first refusal says most about why the OS is unknown.
            Err(_) => OsReport::failed(error.to_string()),
        }
    }

    /// A virsh whose processes end by `deadline`, or `None` past it.
    fn virsh_until(&self, deadline: Instant) -> Option<Virsh> {
        let left = deadline.saturating_duration_since(Instant::now());
        (!left.is_zero()).then(|| self.virsh.with_timeout(left.min(self.options.timeout)))
    }
}

/// A domain as `--domain` names it: see [`Listed::target`].
pub(crate) fn command_target<'a>(name: &'a str, uuid: Option<&'a str>) -> &'a str {
    match uuid {
        Some(uuid) if name.chars().any(char::is_control) => uuid,
        _ => name,
    }
}

/// CPU % between two (time, cpu-ns) samples: CPU time used over the wall
/// time available to all vCPUs.
fn cpu_percent(
    (then, cpu_then): (Instant, u64),
    (now, cpu_now): (Instant, u64),
    vcpus: Option<u32>,
) -> Option<f64> {
    let wall = now.duration_since(then).as_nanos() as f64 * f64::from(vcpus.filter(|&v| v > 0)?);
    let used = cpu_now.checked_sub(cpu_then)? as f64;
    (wall > 0.0).then(|| (used / wall * 1000.0).round() / 10.0)
}

fn row(domain: Listed, metrics: Metrics, report: OsReport) -> DomainStatus {
    let (os, os_source) = match report.name {
        Some((name, source)) => (name, Some(source)),
        None => ("unknown".to_owned(), None),
    };
    DomainStatus {
        name: domain.name,
        uuid: domain.uuid,
        state: domain.state,
        persistent: metrics.persistent,
        vcpus: metrics.vcpus,
        memory_used_kib: metrics.memory_used_kib,
        memory_used_source: metrics.memory_used_source,
        memory_max_kib: metrics.memory_max_kib,
        cpu_time_ns: metrics.cpu_time_ns,
        cpu_percent: metrics.cpu_percent,
        metrics_error: metrics.error,
        os,
        os_source,
        os_error: report.error,
    }
}

/// The `domstats` keys a row needs; a driver that reports them all
/// (QEMU, for inactive domains too) needs no `dominfo`.
const METRIC_KEYS: [&str; 3] = ["vcpu.current", "balloon.maximum", "balloon.current"];

fn has_every_metric(domain: &Listed) -> bool {
    METRIC_KEYS
        .iter()
        .chain(domain.state.is_active().then_some(&"cpu.time"))
        .all(|key| domain.stats.get_u64(key).is_some())
}

/// Combines a domain's `domstats` block with its `dominfo` (empty where
/// the block had every figure), preferring the stats: they come from the
/// same instant and carry in-guest figures.
fn measure(domain: &Listed, info: DomInfo) -> Metrics {
    let state = domain.state;
    let stat = |key: &str| domain.stats.get_u64(key);
    let balloon_current = stat("balloon.current");
    let (memory_used_kib, memory_used_source) = match (balloon_current, stat("balloon.unused")) {
        (Some(current), Some(unused)) if state.is_active() => (
            Some(current.saturating_sub(unused)),
            Some(MemorySource::Guest),
        ),
        _ => {
            let allocation = balloon_current.or(info.used_memory_kib);
            (allocation, allocation.map(|_| MemorySource::Allocation))
        }
    };
    // For an inactive domain, domstats' cpu.time is libvirtd's own CPU time
    // and dominfo's figure (where a driver prints one) is meaningless.
    let cpu_time_ns = state
        .is_active()
        .then(|| stat("cpu.time").or(info.cpu_time_ns))
        .flatten();
    Metrics {
        persistent: Some(domain.persistent),
        vcpus: stat("vcpu.current")
            .and_then(|v| u32::try_from(v).ok())
            .or(info.vcpus),
        memory_used_kib,
        memory_used_source,
        memory_max_kib: stat("balloon.maximum").or(info.max_memory_kib),
        cpu_time_ns,
        cpu_percent: None,
        error: None,
    }
}

#[cfg(test)]
mod tests;
