//! The ProbeManager: scans the fleet in a fixed number of virsh processes,
//! probes guests in parallel under a timeout, and caches what is slow.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::agent::{self, AgentError};
use crate::virsh::{DomInfo, DomainState, DomainStats, Virsh};

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
    /// `guestinfo --os`, answered by the guest agent.
    Agent,
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
    pub os: String,
    pub os_source: Option<OsSource>,
    pub os_error: Option<String>,
}

/// The result of one OS probe, as cached.
#[derive(Debug, Clone)]
struct OsReport {
    os: Option<(String, OsSource)>,
    error: Option<String>,
}

impl OsReport {
    fn from_result(result: Result<String, AgentError>) -> Self {
        match result {
            Ok(name) => OsReport {
                os: Some((name, OsSource::Agent)),
                error: None,
            },
            Err(error) => OsReport {
                os: None,
                error: Some(format!("{error:#}")),
            },
        }
    }
}

#[derive(Debug, Clone)]
pub struct ProbeOptions {
    /// How long a cached probe result stays valid.
    pub cache_ttl: Duration,
    /// How many guest probes run at once.
    pub jobs: usize,
}

struct CachedOs {
    taken: Instant,
    state: DomainState,
    report: OsReport,
}

pub struct ProbeManager {
    virsh: Virsh,
    options: ProbeOptions,
    os_cache: Mutex<HashMap<String, CachedOs>>,
    /// Set once the connection's driver refuses agent calls altogether
    /// (libvirt's test driver does), so no later domain is asked.
    agent_unsupported: AtomicBool,
}

impl ProbeManager {
    pub fn new(virsh: Virsh, options: ProbeOptions) -> Self {
        ProbeManager {
            virsh,
            options,
            os_cache: Mutex::new(HashMap::new()),
            agent_unsupported: AtomicBool::new(false),
        }
    }

    pub fn virsh(&self) -> &Virsh {
        &self.virsh
    }

    /// Scans every domain: one `domstats` for the fleet, one batched
    /// `dominfo` to fill what the driver's stats leave out, then the guest
    /// probes. Rows come back sorted by name.
    pub fn scan(&self) -> Result<Vec<DomainStatus>> {
        let uri = self.virsh.uri_label();
        let mut stats = self
            .virsh
            .domstats_all()
            .with_context(|| format!("cannot list domains on {uri}"))?;
        stats.sort_by(|a, b| a.name.cmp(&b.name));
        let names: Vec<&str> = stats.iter().map(|s| s.name.as_str()).collect();
        let infos = self
            .virsh
            .dominfo_many(&names)
            .with_context(|| format!("cannot read domain details on {uri}"))?;
        let mut rows: Vec<DomainStatus> = stats
            .iter()
            .zip(infos)
            .map(|(stats, info)| merge(stats, info.unwrap_or_default()))
            .collect();
        self.probe_os(&mut rows);
        Ok(rows)
    }

    fn probe_os(&self, rows: &mut [DomainStatus]) {
        let now = Instant::now();
        let mut pending = Vec::new();
        {
            let cache = lock(&self.os_cache);
            for (index, row) in rows.iter_mut().enumerate() {
                if row.state != DomainState::Running {
                    // The agent only answers a running guest.
                    let report = OsReport {
                        os: None,
                        error: Some(format!("domain is {}", row.state)),
                    };
                    apply_os(row, &report);
                    continue;
                }
                match cache.get(&cache_key(row)) {
                    Some(hit)
                        if hit.state == row.state
                            && now.duration_since(hit.taken) < self.options.cache_ttl =>
                    {
                        apply_os(row, &hit.report);
                    }
                    _ => pending.push(index),
                }
            }
        }
        let reports = self.run_pool(rows, &pending);
        let mut cache = lock(&self.os_cache);
        for (index, report) in pending.into_iter().zip(reports) {
            let row = &mut rows[index];
            apply_os(row, &report);
            cache.insert(
                cache_key(row),
                CachedOs {
                    taken: Instant::now(),
                    state: row.state,
                    report,
                },
            );
        }
    }

    /// Probes `pending` rows with at most `jobs` at a time. The first probe
    /// runs alone: if the driver cannot do agent calls at all, that is
    /// learnt once instead of once per domain.
    fn run_pool(&self, rows: &[DomainStatus], pending: &[usize]) -> Vec<OsReport> {
        let probe = |index: usize| -> OsReport {
            if self.agent_unsupported.load(Ordering::Relaxed) {
                return OsReport::from_result(Err(AgentError::DriverUnsupported));
            }
            let result = agent::os_name(&self.virsh, &rows[index].name);
            if matches!(result, Err(AgentError::DriverUnsupported)) {
                self.agent_unsupported.store(true, Ordering::Relaxed);
            }
            OsReport::from_result(result)
        };
        let Some((&first, rest)) = pending.split_first() else {
            return Vec::new();
        };
        let mut reports = vec![probe(first)];
        let slots: Vec<Mutex<Option<OsReport>>> = rest.iter().map(|_| Mutex::new(None)).collect();
        let next = AtomicUsize::new(0);
        thread::scope(|scope| {
            for _ in 0..self.options.jobs.clamp(1, rest.len().max(1)) {
                scope.spawn(|| {
                    loop {
                        let slot = next.fetch_add(1, Ordering::Relaxed);
                        let Some(&index) = rest.get(slot) else { break };
                        *lock(&slots[slot]) = Some(probe(index));
                    }
                });
            }
        });
        reports.extend(slots.into_iter().map(|slot| {
            slot.into_inner()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .expect("every slot is filled before the scope ends")
        }));
        reports
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Domains are cached by UUID where known: a name can be reused by a new
/// domain, a UUID cannot.
fn cache_key(row: &DomainStatus) -> String {
    row.uuid.clone().unwrap_or_else(|| format!("name:{}", row.name))
}

fn apply_os(row: &mut DomainStatus, report: &OsReport) {
    match &report.os {
        Some((name, source)) => {
            row.os = name.clone();
            row.os_source = Some(*source);
            row.os_error = None;
        }
        None => {
            row.os = "unknown".to_owned();
            row.os_source = None;
            row.os_error = report.error.clone();
        }
    }
}

/// Combines a domain's `domstats` block with its `dominfo`, preferring the
/// stats (they come from the same instant and carry in-guest figures).
fn merge(stats: &DomainStats, info: DomInfo) -> DomainStatus {
    let state = stats
        .state()
        .or(info.state)
        .unwrap_or(DomainState::NoState);
    let balloon_current = stats.get_u64("balloon.current");
    let (memory_used_kib, memory_used_source) =
        match (balloon_current, stats.get_u64("balloon.unused")) {
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
        .then(|| stats.get_u64("cpu.time").or(info.cpu_time_ns))
        .flatten();
    DomainStatus {
        name: stats.name.clone(),
        uuid: info.uuid,
        state,
        persistent: info.persistent,
        vcpus: stats
            .get_u64("vcpu.current")
            .and_then(|v| u32::try_from(v).ok())
            .or(info.vcpus),
        memory_used_kib,
        memory_used_source,
        memory_max_kib: stats.get_u64("balloon.maximum").or(info.max_memory_kib),
        cpu_time_ns,
        os: "unknown".to_owned(),
        os_source: None,
        os_error: None,
    }
}

#[cfg(test)]
mod tests;
