//! What a scan keeps for the next ones: each domain's figures and OS
//! report, each reused for its own time to live, and its last CPU sample.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::values::{CpuSample, Domain, FsReport, FsUnknown, Metrics, OsReport};
use crate::mutex::lock;
use crate::virsh::{DomainState, Listed};

struct Cached<T> {
    taken: Instant,
    state: DomainState,
    value: T,
}

impl<T: Clone> Cached<T> {
    fn new(domain: &Listed, taken: Instant, value: &T) -> Self {
        Cached {
            taken,
            state: domain.state,
            value: value.clone(),
        }
    }

    /// The value while it is younger than `ttl` and the domain has not
    /// changed state since: a reboot can change the OS, a stop the figures.
    fn fresh(&self, state: DomainState, ttl: Duration, now: Instant) -> Option<T> {
        (self.state == state && now.duration_since(self.taken) < ttl).then(|| self.value.clone())
    }
}

#[derive(Default)]
struct DomainCache {
    /// The name it was listed under last.
    name: String,
    metrics: Option<Cached<Metrics>>,
    os: Option<Cached<OsReport>>,
    fs: Option<Cached<FsReport>>,
    cpu_sample: Option<CpuSample>,
}

/// Every domain's entry, by [`key`]: its UUID, else its name.
#[derive(Default)]
pub(super) struct Cache {
    domains: Mutex<HashMap<String, DomainCache>>,
}

impl Cache {
    /// Each listed domain with what the cache holds for it within the
    /// TTLs: figures for `cache_ttl`; a named OS, or an agent that hung,
    /// for `os_ttl`, any other OS report for `cache_ttl`. Whether the
    /// cached figures are used is the figures' step's call. Filesystems
    /// (`fs_ttl`: `Some` where they are asked for) for their own TTL.
    pub fn lookup(
        &self,
        listed: Vec<Listed>,
        cache_ttl: Duration,
        os_ttl: Duration,
        fs_ttl: Option<Duration>,
    ) -> Vec<Domain<Option<Metrics>, Option<OsReport>>> {
        let now = Instant::now();
        let cache = lock(&self.domains);
        listed
            .into_iter()
            .map(|listed| {
                let entry = cache.get(&key(&listed));
                let metrics = entry
                    .and_then(|e| e.metrics.as_ref())
                    .and_then(|c| c.fresh(listed.state, cache_ttl, now));
                let os = entry.and_then(|e| e.os.as_ref()).and_then(|c| {
                    let ttl = if c.value.name.is_some() || c.value.agent_hung {
                        os_ttl
                    } else {
                        cache_ttl
                    };
                    c.fresh(listed.state, ttl, now)
                });
                let fs = fs_ttl.and_then(|ttl| {
                    entry
                        .and_then(|e| e.fs.as_ref())
                        .and_then(|c| c.fresh(listed.state, ttl, now))
                });
                Domain {
                    listed,
                    metrics,
                    os,
                    fs,
                }
            })
            .collect()
    }

    /// Keeps `metrics`, read at `now`, for the next scans.
    pub fn keep_metrics(&self, domain: &Listed, now: Instant, metrics: &Metrics) {
        self.entry(domain, |entry| {
            entry.metrics = Some(Cached::new(domain, now, metrics));
        });
    }

    /// Keeps `os`, found at `now`, for the next scans.
    pub fn keep_os(&self, domain: &Listed, now: Instant, os: &OsReport) {
        self.entry(domain, |entry| {
            entry.os = Some(Cached::new(domain, now, os))
        });
    }

    /// Keeps `fs`, found at `now`, for the next scans; not a guest the
    /// scan's deadline left unasked, which the next scan asks.
    pub fn keep_fs(&self, domain: &Listed, now: Instant, fs: &FsReport) {
        if fs.fs_unknown == Some(FsUnknown::NotAsked) {
            return;
        }
        self.entry(domain, |entry| {
            entry.fs = Some(Cached::new(domain, now, fs))
        });
    }

    /// Puts `sample` (`None`: no CPU time now) in place of the domain's
    /// last CPU sample, and returns that.
    pub fn swap_cpu_sample(&self, domain: &Listed, sample: Option<CpuSample>) -> Option<CpuSample> {
        self.entry(domain, |entry| {
            std::mem::replace(&mut entry.cpu_sample, sample)
        })
    }

    /// Drops all that is kept for the domains named `name`: this tool
    /// started it anew, which its state need not show a scan (a restart
    /// between two scans is running in both).
    pub fn forget(&self, name: &str) {
        lock(&self.domains).retain(|_, entry| entry.name != name);
    }

    fn entry<R>(&self, domain: &Listed, change: impl FnOnce(&mut DomainCache) -> R) -> R {
        let mut domains = lock(&self.domains);
        let entry = domains.entry(key(domain)).or_default();
        entry.name.clone_from(&domain.name);
        change(entry)
    }
}

/// Domains are cached by UUID: a name can be reused by another domain.
fn key(domain: &Listed) -> String {
    domain
        .uuid
        .clone()
        .unwrap_or_else(|| format!("name:{}", domain.name))
}
