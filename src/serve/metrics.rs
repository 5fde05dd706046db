//! The `/metrics` page: every host's last scan as Prometheus metrics, in
//! the text format as the `prometheus` crate writes it. Names and units
//! follow Prometheus' conventions (bytes, seconds, `_total` counters);
//! every series carries `uri`, every domain's also `domain`. The
//! per-device and memory-statistics figures are read from the listing's
//! `domstats` block through the tables below (field → series), which the
//! metric table of docs/serve.md mirrors.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Instant, UNIX_EPOCH};

use anyhow::Result;
use prometheus::{CounterVec, GaugeVec, Opts, Registry, TextEncoder};

use super::{HostState, Scan};
use crate::mutex::lock;
use crate::probe::OsSource;
use crate::virsh::DomainState;
use crate::virsh::stats::entries;

/// One `domstats` field as one series.
struct Figure {
    /// The field: `balloon.rss`, or after `block.N.` (`rd.bytes`).
    field: &'static str,
    /// Without the `dismount_` namespace.
    name: &'static str,
    help: &'static str,
    counter: bool,
    unit: Unit,
}

/// domstats' unit of a field, for the base unit (bytes, seconds).
#[derive(Clone, Copy)]
enum Unit {
    /// Already the base unit, or a count.
    One,
    /// KiB, to bytes.
    Kib,
    /// Nanoseconds, to seconds.
    Ns,
}

impl Unit {
    fn base(self, raw: u64) -> f64 {
        match self {
            Unit::One => raw as f64,
            Unit::Kib => raw as f64 * 1024.0,
            // A division, not a product with 1e-9: 6800000000 ns is 6.8 s
            // exactly as a float.
            Unit::Ns => raw as f64 / 1e9,
        }
    }
}

const fn gauge(field: &'static str, name: &'static str, help: &'static str, unit: Unit) -> Figure {
    Figure {
        field,
        name,
        help,
        counter: false,
        unit,
    }
}

const fn counter(
    field: &'static str,
    name: &'static str,
    help: &'static str,
    unit: Unit,
) -> Figure {
    Figure {
        field,
        name,
        help,
        counter: true,
        unit,
    }
}

/// Memory statistics (`--balloon`), as the guest's balloon driver reports
/// them: running guests with a balloon device only.
const MEMORY: &[Figure] = &[
    gauge(
        "balloon.available",
        "domain_memory_available_bytes",
        "Memory the guest sees as its total (balloon statistics)",
        Unit::Kib,
    ),
    gauge(
        "balloon.usable",
        "domain_memory_usable_bytes",
        "Memory the guest could use without swapping, as its MemAvailable (balloon statistics)",
        Unit::Kib,
    ),
    gauge(
        "balloon.unused",
        "domain_memory_unused_bytes",
        "Memory the guest leaves unused, as its MemFree (balloon statistics)",
        Unit::Kib,
    ),
    gauge(
        "balloon.rss",
        "domain_memory_rss_bytes",
        "Resident set size of the domain's process on the host",
        Unit::Kib,
    ),
    gauge(
        "balloon.disk_caches",
        "domain_memory_disk_caches_bytes",
        "Guest memory that can be reclaimed without I/O, its disk caches (balloon statistics)",
        Unit::Kib,
    ),
    counter(
        "balloon.swap_in",
        "domain_memory_swap_in_bytes_total",
        "Memory the guest has read back from swap (balloon statistics)",
        Unit::Kib,
    ),
    counter(
        "balloon.swap_out",
        "domain_memory_swap_out_bytes_total",
        "Memory the guest has written out to swap (balloon statistics)",
        Unit::Kib,
    ),
    counter(
        "balloon.major_fault",
        "domain_memory_major_faults_total",
        "Page faults in the guest that needed disk I/O (balloon statistics)",
        Unit::One,
    ),
    counter(
        "balloon.minor_fault",
        "domain_memory_minor_faults_total",
        "Page faults in the guest served without disk I/O (balloon statistics)",
        Unit::One,
    ),
];

/// Per disk (`--block`, `block.N.*`), labelled `target_device`.
const BLOCK: &[Figure] = &[
    counter(
        "rd.bytes",
        "domain_block_read_bytes_total",
        "Bytes read from the disk",
        Unit::One,
    ),
    counter(
        "wr.bytes",
        "domain_block_write_bytes_total",
        "Bytes written to the disk",
        Unit::One,
    ),
    counter(
        "rd.reqs",
        "domain_block_read_requests_total",
        "Read requests to the disk",
        Unit::One,
    ),
    counter(
        "wr.reqs",
        "domain_block_write_requests_total",
        "Write requests to the disk",
        Unit::One,
    ),
    counter(
        "fl.reqs",
        "domain_block_flush_requests_total",
        "Flush requests to the disk",
        Unit::One,
    ),
    counter(
        "rd.times",
        "domain_block_read_seconds_total",
        "Time spent on read requests to the disk",
        Unit::Ns,
    ),
    counter(
        "wr.times",
        "domain_block_write_seconds_total",
        "Time spent on write requests to the disk",
        Unit::Ns,
    ),
    counter(
        "fl.times",
        "domain_block_flush_seconds_total",
        "Time spent on flush requests to the disk",
        Unit::Ns,
    ),
    gauge(
        "capacity",
        "domain_block_capacity_bytes",
        "Size of the disk as the guest sees it",
        Unit::One,
    ),
    gauge(
        "allocation",
        "domain_block_allocation_bytes",
        "Highest offset written in the disk's image (its allocation)",
        Unit::One,
    ),
    gauge(
        "physical",
        "domain_block_physical_bytes",
        "Size of the disk's image on the host",
        Unit::One,
    ),
];

/// Per network interface (`--interface`, `net.N.*`), labelled `target_device`.
const INTERFACE: &[Figure] = &[
    counter(
        "rx.bytes",
        "domain_interface_receive_bytes_total",
        "Bytes received on the interface",
        Unit::One,
    ),
    counter(
        "rx.pkts",
        "domain_interface_receive_packets_total",
        "Packets received on the interface",
        Unit::One,
    ),
    counter(
        "rx.errs",
        "domain_interface_receive_errors_total",
        "Receive errors on the interface",
        Unit::One,
    ),
    counter(
        "rx.drop",
        "domain_interface_receive_drops_total",
        "Received packets dropped on the interface",
        Unit::One,
    ),
    counter(
        "tx.bytes",
        "domain_interface_transmit_bytes_total",
        "Bytes sent on the interface",
        Unit::One,
    ),
    counter(
        "tx.pkts",
        "domain_interface_transmit_packets_total",
        "Packets sent on the interface",
        Unit::One,
    ),
    counter(
        "tx.errs",
        "domain_interface_transmit_errors_total",
        "Transmit errors on the interface",
        Unit::One,
    ),
    counter(
        "tx.drop",
        "domain_interface_transmit_drops_total",
        "Packets to send dropped on the interface",
        Unit::One,
    ),
];

/// Per vCPU (`--vcpu`, `vcpu.N.*`), labelled `vcpu`.
const VCPU: &[Figure] = &[
    counter(
        "time",
        "domain_vcpu_seconds_total",
        "CPU time the vCPU has run",
        Unit::Ns,
    ),
    counter(
        "wait",
        "domain_vcpu_wait_seconds_total",
        "Time the vCPU has waited on I/O",
        Unit::Ns,
    ),
    counter(
        "delay",
        "domain_vcpu_delay_seconds_total",
        "Time the vCPU was runnable but waited for a host CPU (steal time)",
        Unit::Ns,
    ),
];

/// A table's series, registered: gauges or counters.
enum Series {
    Gauge(GaugeVec),
    Counter(CounterVec),
}

impl Series {
    fn record(&self, labels: &[&str], value: f64) {
        match self {
            Series::Gauge(vec) => vec.with_label_values(labels).set(value),
            Series::Counter(vec) => vec.with_label_values(labels).inc_by(value),
        }
    }
}

/// Registers a table's series with `labels`.
fn register(registry: &Registry, table: &[Figure], labels: &[&str]) -> Result<Vec<Series>> {
    table
        .iter()
        .map(|figure| {
            let opts = Opts::new(figure.name, figure.help);
            Ok(if figure.counter {
                let vec = CounterVec::new(opts, labels)?;
                registry.register(Box::new(vec.clone()))?;
                Series::Counter(vec)
            } else {
                let vec = GaugeVec::new(opts, labels)?;
                registry.register(Box::new(vec.clone()))?;
                Series::Gauge(vec)
            })
        })
        .collect()
}

/// Each figure of `table` that `value(field)` has, as its series.
fn record_table(
    table: &[Figure],
    series: &[Series],
    labels: &[&str],
    value: impl Fn(&str) -> Option<u64>,
) {
    for (figure, series) in table.iter().zip(series) {
        if let Some(raw) = value(figure.field) {
            series.record(labels, figure.unit.base(raw));
        }
    }
}

/// What `/metrics` answers with.
pub const CONTENT_TYPE: &str = prometheus::TEXT_FORMAT;

/// One or more hosts' series, encoded: each family's `# HELP`/`# TYPE`
/// lines apart from its samples, so that the page can put every host's
/// samples of a family under one header ([`assemble`]).
#[derive(Debug, Default)]
pub struct Part {
    /// Sorted by name, as a registry gathers them.
    families: Vec<Family>,
}

#[derive(Debug)]
struct Family {
    name: Arc<str>,
    /// Shared by every part ([`shared`]): it depends on the family alone.
    header: Arc<str>,
    /// Exactly as long as it is: a thousand hosts keep theirs.
    samples: Box<str>,
}

/// One copy of `text` for every part that holds it: a family's name and
/// `# HELP`/`# TYPE` lines are the same for every host, and a copy per
/// host and family was most of a host's memory under `serve` (they are
/// as many as the families: the set stays small).
fn shared(text: &str) -> Arc<str> {
    static TEXTS: OnceLock<Mutex<HashSet<Arc<str>>>> = OnceLock::new();
    let mut texts = lock(TEXTS.get_or_init(Mutex::default));
    if let Some(text) = texts.get(text) {
        return Arc::clone(text);
    }
    let text: Arc<str> = Arc::from(text);
    texts.insert(Arc::clone(&text));
    text
}

/// A registry's series as a [`Part`].
fn encode(registry: &Registry) -> Result<Part> {
    let encoder = TextEncoder::new();
    let families = registry
        .gather()
        .into_iter()
        .map(|family| {
            let text = encoder.encode_to_string(std::slice::from_ref(&family))?;
            // Every family here has a help text: the header is its two
            // lines, `# HELP` and `# TYPE`.
            let header_end = text
                .match_indices('\n')
                .nth(1)
                .map(|(at, _)| at + 1)
                .ok_or_else(|| anyhow::anyhow!("{} has no # HELP line", family.name()))?;
            let (header, samples) = text.split_at(header_end);
            Ok(Family {
                name: shared(family.name()),
                header: shared(header),
                samples: samples.into(),
            })
        })
        .collect::<Result<_>>()?;
    Ok(Part { families })
}

/// The page: every family once, by name, its header then each part's
/// samples in the parts' order. A copy of bytes already encoded, no
/// figure formatted again.
pub fn assemble<'a>(parts: impl IntoIterator<Item = &'a Part>) -> String {
    let mut families: BTreeMap<&str, (&str, Vec<&str>)> = BTreeMap::new();
    let mut size = 0;
    for part in parts {
        for family in &part.families {
            let (_, samples) = families
                .entry(&family.name)
                .or_insert_with(|| (&family.header, Vec::new()));
            samples.push(&family.samples);
            size += family.samples.len();
        }
    }
    let mut page = String::with_capacity(
        size + families
            .values()
            .map(|(header, _)| header.len())
            .sum::<usize>(),
    );
    for (header, samples) in families.values() {
        page.push_str(header);
        samples.iter().for_each(|text| page.push_str(text));
    }
    page
}

fn registry() -> Result<Registry> {
    Ok(Registry::new_custom(Some("dismount".to_owned()), None)?)
}

fn registered_gauge(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<GaugeVec> {
    let vec = GaugeVec::new(Opts::new(name, help), labels)?;
    registry.register(Box::new(vec.clone()))?;
    Ok(vec)
}

/// Every host's scan outcome (`dismount_host_*`), as of `now`: encoded
/// with each page, since how overdue a host is grows while it hangs.
pub fn encode_hosts(hosts: &[HostState], now: Instant) -> Result<Part> {
    let registry = registry()?;
    let gauge = |name: &str, help: &str| registered_gauge(&registry, name, help, &["uri"]);
    let duration = gauge(
        "host_scan_duration_seconds",
        "How long the host's last scan took",
    )?;
    let success = gauge(
        "host_scan_success",
        "1 when the host's last scan succeeded; the other metrics keep the last good scan's values",
    )?;
    let last_success = gauge(
        "host_last_successful_scan_timestamp_seconds",
        "When the host's last good scan ended, in seconds since the Unix epoch",
    )?;
    let overdue = gauge(
        "host_scan_overdue_seconds",
        "How far the host is behind its scan interval: how late its last scan started, or how long past due its next one is; 0 while it keeps the interval",
    )?;
    for host in hosts {
        let uri = host.uri.as_str();
        if let Some(took) = host.last_duration {
            duration.with_label_values(&[uri]).set(took.as_secs_f64());
        }
        success.with_label_values(&[uri]).set(
            if host.last_error.is_none() && host.last_success.is_some() {
                1.0
            } else {
                0.0
            },
        );
        overdue
            .with_label_values(&[uri])
            .set(host.overdue(now).as_secs_f64());
        if let Some(at) = host.last_success {
            let seconds = at
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            last_success.with_label_values(&[uri]).set(seconds);
        }
    }
    encode(&registry)
}

/// One host's domains and drives from its last good scan, encoded once
/// when that scan lands: `serve` keeps the part until the host's next good
/// scan.
pub fn encode_scan(uri: &str, scan: &Scan) -> Result<Part> {
    let registry = registry()?;
    let gauge =
        |name: &str, help: &str, labels: &[&str]| registered_gauge(&registry, name, help, labels);
    const DOMAIN: &[&str] = &["uri", "domain"];
    const DEVICE: &[&str] = &["uri", "domain", "target_device"];
    let state = gauge(
        "domain_state",
        "1 for the domain's state (virsh's words: running, paused, shut off, ...)",
        &["uri", "domain", "state"],
    )?;
    let vcpus = gauge("domain_vcpus", "Current vCPUs of the domain", DOMAIN)?;
    let memory_used = gauge(
        "domain_memory_used_bytes",
        "Memory used: in-guest (balloon statistics) where the guest reports it, else the host's allocation",
        DOMAIN,
    )?;
    let memory_max = gauge(
        "domain_memory_max_bytes",
        "Maximum memory of the domain",
        DOMAIN,
    )?;
    let cpu = CounterVec::new(
        Opts::new(
            "domain_cpu_seconds_total",
            "CPU time the domain has used, all vCPUs together (active domains only)",
        ),
        DOMAIN,
    )?;
    registry.register(Box::new(cpu.clone()))?;
    let agent = gauge(
        "domain_guest_agent_up",
        "1 when the guest agent answered the last OS probe (guestinfo or os-release through the agent)",
        DOMAIN,
    )?;
    let agent_channel = gauge(
        "domain_guest_agent_channel",
        "1 where the domain's XML has QEMU's guest agent channel (org.qemu.guest_agent.0), 0 where it has none",
        DOMAIN,
    )?;
    let os = gauge(
        "domain_os_info",
        "The guest OS as detected, and who named it (agent, agent-file, metadata, none); always 1",
        &["uri", "domain", "os", "source"],
    )?;
    let scrape_error = gauge(
        "domain_scrape_error",
        "1 for a domain whose figures or XML could not be read in the last scan (reason: timeout, failed); its other series stand",
        &["uri", "domain", "reason"],
    )?;
    let memory = register(&registry, MEMORY, DOMAIN)?;
    let block = register(&registry, BLOCK, DEVICE)?;
    let block_info = gauge(
        "domain_block_info",
        "A disk of the domain: its source file (empty when none), bus and device (disk, cdrom, floppy, lun); always 1",
        &[
            "uri",
            "domain",
            "target_device",
            "source_file",
            "bus",
            "device",
        ],
    )?;
    let interface = register(&registry, INTERFACE, DEVICE)?;
    let vcpu = register(&registry, VCPU, &["uri", "domain", "vcpu"])?;
    let media = gauge(
        "drive_media_info",
        "A removable drive (CD-ROM, floppy) and the media it holds now (source empty when none); always 1",
        &["uri", "domain", "target", "source"],
    )?;
    let differ = gauge(
        "drive_live_config_differ",
        "1 when the running domain and its persistent config hold different media in the drive",
        &["uri", "domain", "target"],
    )?;
    const FILESYSTEM: &[&str] = &["uri", "domain", "mountpoint", "type"];
    let fs_size = gauge(
        "guest_filesystem_size_bytes",
        "Size of a filesystem in the guest, as its agent reports it (guestinfo --filesystem: total-bytes, without the blocks reserved for root)",
        FILESYSTEM,
    )?;
    let fs_used = gauge(
        "guest_filesystem_used_bytes",
        "Bytes used on a filesystem in the guest, as its agent reports it (guestinfo --filesystem: used-bytes)",
        FILESYSTEM,
    )?;
    let fs_error = gauge(
        "guest_filesystem_scrape_error",
        "1 for a running guest whose filesystems could not be read (reason: no_agent, agent_not_connected, timeout, not_asked, blocked, agent_too_old, bad_reply, failed)",
        &["uri", "domain", "reason"],
    )?;
    let missing = gauge(
        "drive_media_missing",
        "1 when an ISO file the drive holds (live or in the config) is gone, 0 when there; no series for an empty drive or a pool volume",
        &["uri", "domain", "target"],
    )?;

    for row in &scan.domains {
        let labels = [uri, row.name.as_str()];
        state
            .with_label_values(&[uri, &row.name, &row.state.to_string()])
            .set(1.0);
        if let Some(n) = row.vcpus {
            vcpus.with_label_values(&labels).set(f64::from(n));
        }
        if let Some(kib) = row.memory_used_kib {
            memory_used
                .with_label_values(&labels)
                .set(kib as f64 * 1024.0);
        }
        if let Some(kib) = row.memory_max_kib {
            memory_max
                .with_label_values(&labels)
                .set(kib as f64 * 1024.0);
        }
        if let Some(ns) = row.cpu_time_ns {
            cpu.with_label_values(&labels).inc_by(ns as f64 / 1e9);
        }
        let answered = matches!(row.os_source, Some(OsSource::Agent | OsSource::AgentFile));
        agent
            .with_label_values(&labels)
            .set(if answered && row.state == DomainState::Running {
                1.0
            } else {
                0.0
            });
        if let Some(channel) = scan.agent_channels.get(&row.name) {
            agent_channel
                .with_label_values(&labels)
                .set(f64::from(u8::from(*channel)));
        }
        let source = row.os_source.map_or("none", OsSource::as_str);
        os.with_label_values(&[uri, &row.name, &row.os, source])
            .set(1.0);
        for fault in row.metrics_fault.iter().chain(&row.xml_fault) {
            scrape_error
                .with_label_values(&[uri, &row.name, fault.as_str()])
                .set(1.0);
        }
        if let Some(report) = &row.disks {
            for fs in report.filesystems.iter().flatten() {
                let labels = [uri, row.name.as_str(), &fs.mountpoint, &fs.fs_type];
                if let Some(total) = fs.total_bytes {
                    fs_size.with_label_values(&labels).set(total as f64);
                }
                if let Some(used) = fs.used_bytes {
                    fs_used.with_label_values(&labels).set(used as f64);
                }
            }
            if let Some(why) = report.fs_unknown.filter(|why| why.is_problem()) {
                fs_error
                    .with_label_values(&[uri, &row.name, why.as_str()])
                    .set(1.0);
            }
        }
        let Some(stats) = scan.stats.get(&row.name) else {
            continue;
        };
        record_table(MEMORY, &memory, &labels, |field| stats.get_u64(field));
        let disks = scan.disks.get(&row.name);
        for disk in entries(stats, "block") {
            let Some(target) = disk.get("name") else {
                continue;
            };
            let device = [uri, &row.name, target];
            record_table(BLOCK, &block, &device, |field| disk.get_u64(field));
            let xml = disks.and_then(|disks| disks.iter().find(|d| d.target == target));
            block_info
                .with_label_values(&[
                    uri,
                    &row.name,
                    target,
                    disk.get("path").unwrap_or(""),
                    xml.and_then(|d| d.bus.as_deref()).unwrap_or(""),
                    xml.map_or("", |d| d.device.as_str()),
                ])
                .set(1.0);
        }
        for nic in entries(stats, "net") {
            if let Some(target) = nic.get("name") {
                record_table(INTERFACE, &interface, &[uri, &row.name, target], |field| {
                    nic.get_u64(field)
                });
            }
        }
        for entry in entries(stats, "vcpu") {
            let index = entry.index.to_string();
            record_table(VCPU, &vcpu, &[uri, &row.name, &index], |field| {
                entry.get_u64(field)
            });
        }
    }
    const POOL: &[&str] = &["uri", "pool"];
    let pool_capacity = gauge(
        "pool_capacity_bytes",
        "Size of the storage pool (active pools only)",
        POOL,
    )?;
    let pool_allocation = gauge(
        "pool_allocation_bytes",
        "Bytes allocated in the storage pool (active pools only)",
        POOL,
    )?;
    let pool_available = gauge(
        "pool_available_bytes",
        "Bytes free in the storage pool: what an upload can use (active pools only)",
        POOL,
    )?;
    let pool_info = gauge(
        "pool_info",
        "A storage pool: its state (running, inactive), type (dir, fs, logical, ...) and target path; always 1",
        &["uri", "pool", "state", "type", "path"],
    )?;
    let pool_isos = gauge(
        "pool_iso_volumes",
        "ISO volumes in the storage pool (by content or by a .iso name, as `library` counts them)",
        POOL,
    )?;
    let pool_largest_iso = gauge(
        "pool_iso_largest_bytes",
        "Size of the largest ISO volume in the storage pool: the room an upload of its like needs",
        POOL,
    )?;
    for (pool, isos) in &scan.pools {
        let labels = [uri, pool.name.as_str()];
        let state = if pool.active { "running" } else { "inactive" };
        pool_info
            .with_label_values(&[
                uri,
                &pool.name,
                state,
                &pool.pool_type,
                pool.path.as_deref().unwrap_or(""),
            ])
            .set(1.0);
        for (series, bytes) in [
            (&pool_capacity, pool.capacity),
            (&pool_allocation, pool.allocation),
            (&pool_available, pool.available),
        ] {
            if let Some(bytes) = bytes {
                series.with_label_values(&labels).set(bytes as f64);
            }
        }
        if pool.active {
            pool_isos.with_label_values(&labels).set(isos.count as f64);
            if let Some(largest) = isos.largest {
                pool_largest_iso
                    .with_label_values(&labels)
                    .set(largest as f64);
            }
        }
    }
    for drive in &scan.drives {
        let source = drive.source.as_deref().unwrap_or("");
        let labels = [uri, drive.domain.as_str(), drive.target.as_str()];
        media
            .with_label_values(&[uri, &drive.domain, &drive.target, source])
            .set(1.0);
        differ
            .with_label_values(&labels)
            .set(if drive.live_config_differ { 1.0 } else { 0.0 });
        if let Some(gone) = drive.missing {
            missing
                .with_label_values(&labels)
                .set(if gone { 1.0 } else { 0.0 });
        }
    }
    encode(&registry)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parts encoded one host at a time, put together, are the page one
    /// registry of every host encodes: each family once, under one
    /// header, every host's samples in it.
    #[test]
    fn a_page_put_together_from_parts_is_the_page_of_all_hosts_at_once() {
        let now = Instant::now();
        let host = |uri: &str, took_ms: u64| HostState {
            uri: uri.to_owned(),
            last_duration: Some(std::time::Duration::from_millis(took_ms)),
            last_success: Some(UNIX_EPOCH + std::time::Duration::from_secs(1_796_000_000)),
            ..HostState::default()
        };
        let (a, b) = (
            host("qemu+ssh://a/system", 120),
            host("qemu+ssh://b/system", 340),
        );
        let parts = [
            encode_hosts(std::slice::from_ref(&a), now).unwrap(),
            encode_hosts(std::slice::from_ref(&b), now).unwrap(),
        ];
        let whole = encode_hosts(&[a, b], now).unwrap();
        let page = assemble(&parts);
        assert_eq!(page, assemble([&whole]));
        assert_eq!(
            page.matches("# TYPE dismount_host_scan_success gauge\n")
                .count(),
            1
        );
        assert!(
            page.contains(
                "dismount_host_scan_duration_seconds{uri=\"qemu+ssh://b/system\"} 0.34\n"
            ),
            "{page}"
        );
        assert_eq!(assemble([]), "");
        // Every part holds its own samples, but one copy of each family's
        // name and header lines, whichever host encoded it.
        let [first, second] = &parts;
        assert_eq!(first.families.len(), second.families.len());
        for (one, other) in first.families.iter().zip(&second.families) {
            assert!(Arc::ptr_eq(&one.header, &other.header), "{}", one.header);
            assert!(Arc::ptr_eq(&one.name, &other.name), "{}", one.name);
            assert_ne!(one.samples, other.samples);
        }
    }

    /// Counters end in `_total` and gauges do not (promtool's rule), no
    /// name is taken twice, and docs/serve.md's table names each one with
    /// its `domstats` field.
    #[test]
    fn every_figure_is_named_once_as_prometheus_wants_and_in_the_readme() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/serve.md"))
            .expect("docs/serve.md");
        let mut names = std::collections::BTreeSet::new();
        for (table, prefix) in [
            (MEMORY, ""),
            (BLOCK, "block.N."),
            (INTERFACE, "net.N."),
            (VCPU, "vcpu.N."),
        ] {
            for figure in table {
                assert_eq!(
                    figure.counter,
                    figure.name.ends_with("_total"),
                    "{}",
                    figure.name
                );
                assert!(names.insert(figure.name), "{} twice", figure.name);
                let row = format!("| `dismount_{}` |", figure.name);
                let line = readme
                    .lines()
                    .find(|line| line.starts_with(&row))
                    .unwrap_or_else(|| panic!("no docs/serve.md row for {}", figure.name));
                assert!(
                    line.contains(&format!("`{prefix}{}`", figure.field)),
                    "{line}"
                );
            }
        }
    }
}
