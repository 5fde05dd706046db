//! A domain's figures: CPU, memory and vCPUs from the listing's `domstats`,
//! `dominfo` where a driver's stats lack them, and CPU % between scans.

use std::collections::HashMap;
use std::time::Instant;

use super::cache::Cache;
use super::values::{CpuSample, Domain, Figures, MemorySource, Metrics, ReadFault};
use crate::utils::with_causes;
use crate::virsh::{DomInfo, Listed, Virsh, VirshError};

/// Gives every domain its figures: the cached ones where `figures` allows
/// and the listing's `domstats` block lacks some (figures the listing
/// brought are fresher than any cached ones); else from its block where
/// that has every figure (QEMU), with a batched `dominfo` (a long one
/// split over the sessions) for the domains whose block lacks some (the
/// test driver's has state only); all
/// of them cached. A domain whose `dominfo` failed because the connection
/// no longer knows it leaves the scan.
pub(super) fn fill<O>(
    virsh: &Virsh,
    cache: &Cache,
    domains: Vec<Domain<Option<Metrics>, O>>,
    figures: Figures,
) -> Vec<Domain<Metrics, O>> {
    let domains: Vec<_> = domains
        .into_iter()
        .map(|mut domain| {
            if figures == Figures::Fresh || has_every_metric(&domain.listed) {
                domain.metrics = None;
            }
            domain
        })
        .collect();
    let lacking: Vec<&str> = domains
        .iter()
        .filter(|domain| domain.metrics.is_none() && !has_every_metric(&domain.listed))
        .map(|domain| domain.listed.target())
        .collect();
    // One batch, each domain's own outcome (see `Virsh::on_each_domain`).
    let mut infos: HashMap<String, _> = lacking
        .iter()
        .map(|target| (*target).to_owned())
        .zip(virsh.dominfo_many(&lacking))
        .collect();
    let now = Instant::now();
    domains
        .into_iter()
        .filter_map(|domain| {
            domain.with_metrics(|listed, cached| {
                cached.or_else(|| read(virsh, cache, listed, &mut infos, now))
            })
        })
        .collect()
}

/// The figures of a domain the cache had none for, cached unless their
/// read failed; `None` if the domain has vanished since the listing.
fn read(
    virsh: &Virsh,
    cache: &Cache,
    domain: &Listed,
    infos: &mut HashMap<String, Result<Option<DomInfo>, VirshError>>,
    now: Instant,
) -> Option<Metrics> {
    let failed = |error: (String, ReadFault)| {
        // Not cached: the next scan tries again.
        Some(Metrics {
            error: Some(error),
            ..measure(domain, DomInfo::default())
        })
    };
    let info = match infos.remove(domain.target()) {
        _ if has_every_metric(domain) => DomInfo::default(),
        Some(Ok(Some(info))) => info,
        // Past its deadline, or its batch failed: this row says so, and
        // the others (and the rest of the scan) stand.
        Some(Err(error)) => {
            return failed((
                format!("cannot read its figures: {}", with_causes(&error)),
                ReadFault::of(&error),
            ));
        }
        // Vanished since the listing? Then it leaves the table; otherwise
        // its figures are blank, and say why.
        _ if virsh.has_domain(domain.target()).ok() == Some(false) => return None,
        _ => {
            return failed((
                "cannot read its figures: `dominfo` failed for it".to_owned(),
                ReadFault::Failed,
            ));
        }
    };
    let mut metrics = measure(domain, info);
    let sample = metrics.cpu_time_ns.map(|cpu| (now, cpu));
    metrics.cpu_percent = cache
        .swap_cpu_sample(domain, sample)
        .zip(sample)
        .and_then(|(then, now)| cpu_percent(then, now, metrics.vcpus));
    cache.keep_metrics(domain, now, &metrics);
    Some(metrics)
}

/// CPU % between two (time, cpu-ns) samples: CPU time used over the wall
/// time available to all vCPUs.
fn cpu_percent(
    (then, cpu_then): CpuSample,
    (now, cpu_now): CpuSample,
    vcpus: Option<u32>,
) -> Option<f64> {
    let wall = now.duration_since(then).as_nanos() as f64 * f64::from(vcpus.filter(|&v| v > 0)?);
    let used = cpu_now.checked_sub(cpu_then)? as f64;
    (wall > 0.0).then(|| (used / wall * 1000.0).round() / 10.0)
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
    // A domain that is not running uses no memory: the allocation that
    // drivers report for it is only what it would get (shown as used, it
    // read `128.0 MiB / 128.0 MiB` for a shut-off VM).
    let memory_used = match (balloon_current, stat("balloon.unused")) {
        _ if !state.is_active() => None,
        (Some(current), Some(unused)) => {
            Some((current.saturating_sub(unused), MemorySource::Guest))
        }
        _ => balloon_current
            .or(info.used_memory_kib)
            .map(|allocation| (allocation, MemorySource::Allocation)),
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
        memory_used,
        memory_max_kib: stat("balloon.maximum").or(info.max_memory_kib),
        cpu_time_ns,
        cpu_percent: None,
        error: None,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn cpu_percent_is_cpu_over_wall_time_of_all_vcpus() {
        let start = Instant::now();
        let later = start + Duration::from_secs(2);
        // 1 s of CPU over 2 s on 2 vCPUs: a quarter of the capacity.
        assert_eq!(
            cpu_percent((start, 0), (later, 1_000_000_000), Some(2)),
            Some(25.0)
        );
        assert_eq!(
            cpu_percent((start, 5), (later, 4), Some(2)),
            None,
            "counter reset"
        );
        assert_eq!(cpu_percent((start, 0), (later, 1), Some(0)), None);
        assert_eq!(
            cpu_percent((start, 0), (start, 1), Some(1)),
            None,
            "no time passed"
        );
    }
}
