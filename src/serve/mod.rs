//! `serve`: Prometheus metrics and a health check over HTTP for every host,
//! answered from background scans. No request ever starts virsh: a hung
//! host slows its own scanner thread, never an answer.

mod http;
mod metrics;
mod webconfig;

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use flate2::Compression;
use flate2::write::GzEncoder;

use crate::fleet::{Fleet, Host};
use crate::media::{DriveRow, MediaManager};
use crate::mutex::lock;
use crate::probe::{DomainStatus, Figures, ReadFault};
use crate::virsh::{Disk, DomainStats, ListingFor, Pool, Uri};
use http::Response;

/// The HTTP connections `serve` keeps open at most (each a descriptor).
pub(crate) use http::MAX_CONNECTIONS as MAX_HTTP_CONNECTIONS;

/// What `serve` needs, free of clap types.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub listen: SocketAddr,
    /// How often each host is scanned, start to start (the effective
    /// refresh interval).
    pub interval: Duration,
    /// Log lines as JSON objects instead of text.
    pub json_logs: bool,
    /// exporter-toolkit's web configuration file: TLS and basic auth.
    pub web_config: Option<PathBuf>,
    /// Ask for and export the disk and network figures (`--block`,
    /// `--interface`); off with `--no-io-metrics`.
    pub io_metrics: bool,
}

/// One host's scans as they went: what `/healthz` and the `dismount_host_*`
/// series read. Its domains' series are in its encoded part, not here.
#[derive(Debug, Clone, Default)]
pub struct HostState {
    /// As [`Host::uri`] shows it: public.
    pub uri: String,
    /// When the last good scan ended.
    pub last_success: Option<SystemTime>,
    /// How long the last scan took, good or not.
    pub last_duration: Option<Duration>,
    /// Why the last scan failed, scrubbed of the URI's private parts
    /// ([`Uri::scrub`]); `None` when it succeeded (or none ended).
    pub last_error: Option<String>,
    /// When the host's next scan is due (one interval after the running
    /// or last one was).
    pub next_due: Option<Instant>,
    /// How late the host's running or last scan started: its previous scan
    /// ran past this one's due time (a slow host, or no place in the
    /// budget); zero while the host keeps its interval.
    pub started_late: Duration,
}

impl HostState {
    /// How far the host is behind its interval at `now`: how late its
    /// running or last scan started, or, while its running scan is past
    /// the next one's due time, how long past (a host that hangs).
    pub fn overdue(&self, now: Instant) -> Duration {
        let pending = self
            .next_due
            .map_or(Duration::ZERO, |due| now.saturating_duration_since(due));
        self.started_late.max(pending)
    }
}

/// Binds the address, starts a scanner per host and answers requests
/// until the process is stopped (SIGTERM: every virsh is killed with it).
pub fn run(fleet: Arc<Fleet>, options: &ServeOptions) -> Result<()> {
    init_logs(options.json_logs);
    let web = match &options.web_config {
        Some(path) => webconfig::Live::load(path)?,
        None => webconfig::Live::none(),
    };
    let (tls, auth) = {
        let first = web.current().map_err(anyhow::Error::msg)?;
        (first.tls.is_some(), first.auth.is_some())
    };
    let listener = http::bind(options.listen)?;
    // The address as bound: port 0 picks a free one.
    let listen = listener.local_addr()?;
    web.listening_on(listen);
    let hosts = Arc::new(Hosts {
        states: fleet
            .hosts
            .iter()
            .map(|host| {
                Mutex::new(HostState {
                    uri: host.uri(),
                    ..HostState::default()
                })
            })
            .collect(),
        parts: fleet
            .hosts
            .iter()
            .map(|_| Mutex::new(Arc::new(metrics::Part::default())))
            .collect(),
        published: Mutex::new(Arc::new(Published::default())),
        changed: Mutex::new(false),
        wake: Condvar::new(),
    });
    // Before the first scan: every host there, none scanned yet.
    hosts.publish();
    {
        let hosts = Arc::clone(&hosts);
        thread::Builder::new()
            .name("publish".to_owned())
            .spawn(move || hosts.publish_forever())?;
    }
    let start = Instant::now();
    let count = fleet.hosts.len();
    for index in 0..count {
        let (fleet, hosts) = (Arc::clone(&fleet), Arc::clone(&hosts));
        let io = options.io_metrics;
        let schedule = Schedule {
            start,
            first: first_scan_offset(index, count, options.interval),
            interval: options.interval,
        };
        thread::Builder::new()
            .name(format!("scan-{index}"))
            .spawn(move || scan_forever(&fleet, index, &hosts, &schedule, io))?;
    }
    tracing::info!(%listen, hosts = fleet.hosts.len(),
        interval_s = options.interval.as_secs_f64(), tls, auth, "serving /metrics and /healthz");
    let interval = options.interval;
    http::serve(
        listener,
        Arc::new(web),
        Arc::new(move |path: &str| respond(path, &hosts, interval)),
    )
}

/// Every host's state and encoded part, and what the requests are
/// answered from.
struct Hosts {
    states: Vec<Mutex<HostState>>,
    /// Each host's domains and drives from its last good scan, encoded
    /// when that scan landed: a scan costs its own host's encoding, never
    /// the other hosts'.
    parts: Vec<Mutex<Arc<metrics::Part>>>,
    published: Mutex<Arc<Published>>,
    /// Whether a scan has landed since the page was last put together;
    /// `wake` tells the publisher.
    changed: Mutex<bool>,
    wake: Condvar,
}

/// The hosts' states as of one moment, as the requests see them: the
/// `/metrics` body, put together once from the hosts' parts, plain and
/// gzipped (a scrape copies neither), and what `/healthz` reads, from the
/// same moment (a 200 from `/healthz` means `/metrics` shows those scans).
#[derive(Default)]
struct Published {
    text: Arc<str>,
    gzip: Option<Arc<[u8]>>,
    health: Vec<HostState>,
}

/// How much longer than putting the page together took the publisher
/// waits before it does so again: with scans landing all the time (a
/// thousand hosts), it spends at most a tenth of one core on the page,
/// and a page is never staler than ten times its own cost.
const PUBLISH_PAUSE_FACTOR: u32 = 9;

impl Hosts {
    /// Keeps host `index`'s new state and, after a good scan, its newly
    /// encoded part, and tells the publisher.
    fn land(&self, index: usize, state: HostState, part: Option<metrics::Part>) {
        if let Some(part) = part {
            *lock(&self.parts[index]) = Arc::new(part);
        }
        *lock(&self.states[index]) = state;
        *lock(&self.changed) = true;
        self.wake.notify_one();
    }

    /// Puts the page together again whenever a scan has landed, pausing
    /// between two pages ([`PUBLISH_PAUSE_FACTOR`]).
    fn publish_forever(&self) {
        loop {
            {
                let mut changed = lock(&self.changed);
                while !*changed {
                    changed = self
                        .wake
                        .wait(changed)
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                }
                *changed = false;
            }
            let started = Instant::now();
            self.publish();
            thread::sleep(started.elapsed() * PUBLISH_PAUSE_FACTOR);
        }
    }

    /// The page from every host's part as it stands and every host's scan
    /// outcome as of now, kept for the requests; on failure what was
    /// published before stays.
    fn publish(&self) {
        let health: Vec<HostState> = self
            .states
            .iter()
            .map(|state| lock(state).clone())
            .collect();
        let parts: Vec<Arc<metrics::Part>> = self
            .parts
            .iter()
            .map(|part| Arc::clone(&lock(part)))
            .collect();
        let published = metrics::encode_hosts(&health, Instant::now()).and_then(|outcomes| {
            let text = metrics::assemble(parts.iter().map(|part| &**part).chain([&outcomes]));
            let mut gzip = GzEncoder::new(Vec::new(), Compression::default());
            gzip.write_all(text.as_bytes())?;
            Ok(Published {
                gzip: Some(Arc::from(gzip.finish()?)),
                text: Arc::from(text),
                health,
            })
        });
        match published {
            Ok(published) => *lock(&self.published) = Arc::new(published),
            Err(error) => {
                tracing::error!(error = %format!("{error:#}"), "cannot encode /metrics; serving the previous one");
            }
        }
    }
}

/// When one host's scans are due.
struct Schedule {
    /// When `serve` started its scanners.
    start: Instant,
    /// The host's first scan after `start`: [`first_scan_offset`].
    first: Duration,
    /// Start to start.
    interval: Duration,
}

/// When host `index` of `hosts` first scans, after the start: spread over
/// one interval (`index × interval ÷ hosts`), so that the fleet's scans,
/// and their claims on the budget, come one after another instead of all
/// at each tick.
fn first_scan_offset(index: usize, hosts: usize, interval: Duration) -> Duration {
    interval.mul_f64(index as f64 / hosts.max(1) as f64)
}

/// When the scan after one that was due at `due` and ended at `ended` is
/// due, and how late that is: one interval after `due`, or, where the scan
/// ran past that, at once (late by as much), the interval counted anew.
fn next_scan(due: Instant, ended: Instant, interval: Duration) -> (Instant, Duration) {
    let next = due + interval;
    let late = ended.saturating_duration_since(next);
    (if late.is_zero() { next } else { ended }, late)
}

/// Scans the fleet's host `index` on its schedule, encodes each good
/// scan's series and hands them to the publisher, again. Each scan is the host's work: with more
/// hosts than the budget has places, its sessions end after it, for the
/// hosts waiting.
fn scan_forever(fleet: &Fleet, index: usize, hosts: &Hosts, schedule: &Schedule, io: bool) {
    let host = &fleet.hosts[index];
    let interval = schedule.interval;
    let mut due = schedule.start + schedule.first;
    let mut started_late = Duration::ZERO;
    loop {
        thread::sleep(due.saturating_duration_since(Instant::now()));
        {
            let mut state = lock(&hosts.states[index]);
            state.next_due = Some(due + interval);
            state.started_late = started_late;
        }
        tracing::debug!(uri = %host.uri(),
            due_s = due.duration_since(schedule.start).as_secs_f64(), "scan started");
        let started = Instant::now();
        let scanned = {
            let _working = fleet.working(host);
            scan(host, io)
        };
        let took = started.elapsed();
        let mut state = lock(&hosts.states[index]).clone();
        state.last_duration = Some(took);
        // The URI virsh reports is known after the first listing.
        state.uri = host.uri();
        let mut part = None;
        match scanned {
            Ok(scan) => {
                tracing::info!(uri = %state.uri, domains = scan.domains.len(), drives = scan.drives.len(),
                    took_s = took.as_secs_f64(), "scan done");
                match metrics::encode_scan(&state.uri, &scan) {
                    Ok(encoded) => part = Some(encoded),
                    Err(error) => tracing::error!(uri = %state.uri, error = %format!("{error:#}"),
                        "cannot encode the scan's metrics; serving the host's previous ones"),
                }
                state.last_success = Some(SystemTime::now());
                state.last_error = None;
            }
            Err(error) => {
                let reason = crate::utils::sanitize(&format!("{error:#}"));
                // The log is the admin's, whole; /healthz is anyone's who
                // reaches the port: without user, query or key path.
                tracing::warn!(uri = %state.uri, error = %reason, took_s = took.as_secs_f64(),
                    "scan failed; keeping the last good values");
                let given = host.probes.uri().unwrap_or_default();
                state.last_error = Some(Uri::parse(&given).scrub(&reason));
            }
        }
        hosts.land(index, state, part);
        (due, started_late) = next_scan(due, Instant::now(), interval);
        if !started_late.is_zero() {
            tracing::warn!(uri = %host.uri(), took_s = took.as_secs_f64(),
                interval_s = interval.as_secs_f64(), behind_s = started_late.as_secs_f64(),
                "scan ran past the next one's due time: the host falls behind its interval \
                 (a slow host, or more hosts than the budget serves at this interval)");
        }
    }
}

/// What one scan of a host found.
struct Scan {
    domains: Vec<DomainStatus>,
    drives: Vec<DriveRow>,
    stats: HashMap<String, DomainStats>,
    disks: HashMap<String, Vec<Disk>>,
    agent_channels: HashMap<String, bool>,
    /// The storage pools with their ISO volumes; none where they could
    /// not be read (logged: the domains' series stand).
    pools: Vec<(Pool, PoolIsos)>,
}

/// One host's VM table, drives and figures from ONE listing: fresh
/// figures each time, the OS and everything else the ProbeManager caches
/// kept per its TTLs.
fn scan(host: &Host, io: bool) -> Result<Scan> {
    let virsh = host.virsh();
    let uri = virsh.uri_label();
    // The XML reads and agent probes after the listing run side by side:
    // their sessions connect while it runs.
    virsh.warm_up();
    let listing = if io {
        virsh.list_all_with_io()
    } else {
        virsh.list_all_with(ListingFor::Scan, &[])
    }
    .with_context(|| format!("cannot list domains on {uri}"))?;
    let stats = listing
        .stats
        .iter()
        .map(|block| (block.name.clone(), block.clone()))
        .collect();
    // The XML once, for the drives and the OS both; a domain whose read
    // hung or failed keeps what the listing and its figures gave, marked.
    let media = MediaManager::new(virsh.clone());
    let read = media.read_listing(listing.clone())?;
    let drives = media.rows(&read.domains)?;
    let mut domains =
        host.probes
            .scan_listing(listing, Figures::Fresh, &read.current_xml, &|_, _| {});
    for domain in &mut domains {
        domain.xml_fault = read
            .unread
            .iter()
            .find(|(name, _)| *name == domain.name)
            .map(|(_, error)| ReadFault::of(error));
    }
    let mut agent_channels = HashMap::new();
    let disks = read
        .domains
        .into_iter()
        .map(|domain| {
            let current = domain.live.or(domain.config).unwrap_or_default();
            agent_channels.insert(domain.name.clone(), current.agent_channel);
            (domain.name, current.disks)
        })
        .collect();
    Ok(Scan {
        domains,
        drives,
        stats,
        disks,
        agent_channels,
        pools: read_pools(host),
    })
}

/// A pool's ISO volumes (the library's test: `Volume::is_iso`).
#[derive(Debug, Default, Clone, Copy)]
struct PoolIsos {
    count: usize,
    /// The largest one's size, bytes: what an upload of its like needs.
    largest: Option<u64>,
}

/// Every pool with its ISO volumes; a failed read is logged and leaves
/// the pools out.
fn read_pools(host: &Host) -> Vec<(Pool, PoolIsos)> {
    let virsh = host.virsh();
    let read = || -> Result<Vec<(Pool, PoolIsos)>> {
        let pools = virsh.pools()?;
        let volumes = virsh.volumes()?;
        Ok(pools
            .into_iter()
            .map(|pool| {
                let isos = volumes
                    .iter()
                    .filter(|volume| volume.pool == pool.name && volume.is_iso())
                    .fold(PoolIsos::default(), |isos, volume| PoolIsos {
                        count: isos.count + 1,
                        largest: isos.largest.max(volume.capacity),
                    });
                (pool, isos)
            })
            .collect())
    };
    read().unwrap_or_else(|error| {
        tracing::warn!(uri = %host.uri(), error = %format!("{error:#}"), "cannot read the storage pools");
        Vec::new()
    })
}

fn respond(path: &str, hosts: &Hosts, interval: Duration) -> Response {
    match path {
        "/metrics" => {
            let published = Arc::clone(&lock(&hosts.published));
            Response {
                status: 200,
                content_type: metrics::CONTENT_TYPE,
                body: Arc::clone(&published.text),
                gzip: published.gzip.clone(),
            }
        }
        "/healthz" => {
            let published = Arc::clone(&lock(&hosts.published));
            healthz(&published.health, SystemTime::now(), interval)
        }
        _ => Response::text(404, "not found: try /metrics or /healthz\n"),
    }
}

/// 200 when every host's last scan succeeded within two scan intervals;
/// else 503, a line per failing host with the reason.
fn healthz(hosts: &[HostState], now: SystemTime, interval: Duration) -> Response {
    let stale_after = interval * 2;
    let failing: Vec<String> = hosts
        .iter()
        .filter_map(|host| {
            let reason = match (&host.last_error, host.last_success) {
                (Some(error), _) => error.clone(),
                (None, None) => "no scan has finished yet".to_owned(),
                (None, Some(at)) => {
                    let age = now.duration_since(at).unwrap_or_default();
                    if age <= stale_after {
                        return None;
                    }
                    format!(
                        "last good scan {} ago",
                        humantime::format_duration(Duration::from_secs(age.as_secs()))
                    )
                }
            };
            Some(format!("{}: {reason}", host.uri))
        })
        .collect();
    if failing.is_empty() {
        Response::text(200, format!("ok: {} host(s)\n", hosts.len()))
    } else {
        Response::text(503, failing.join("\n") + "\n")
    }
}

/// Log lines on stderr, as text or JSON; levels from RUST_LOG (default
/// info). Only `serve` logs: other commands print their payload alone.
fn init_logs(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(
        uri: &str,
        success_ago: Option<u64>,
        error: Option<&str>,
        now: SystemTime,
    ) -> HostState {
        HostState {
            uri: uri.to_owned(),
            last_success: success_ago.map(|s| now - Duration::from_secs(s)),
            last_error: error.map(str::to_owned),
            ..HostState::default()
        }
    }

    /// A host's scan landing replaces that host's part alone: the others'
    /// stay as encoded, not one figure formatted again.
    #[test]
    fn a_landing_scan_encodes_its_own_host_only() {
        let hosts = Hosts {
            states: (0..3).map(|_| Mutex::new(HostState::default())).collect(),
            parts: (0..3)
                .map(|_| Mutex::new(Arc::new(metrics::Part::default())))
                .collect(),
            published: Mutex::new(Arc::new(Published::default())),
            changed: Mutex::new(false),
            wake: Condvar::new(),
        };
        let before: Vec<_> = hosts
            .parts
            .iter()
            .map(|part| Arc::clone(&lock(part)))
            .collect();
        let landed = HostState {
            uri: "test:///b".to_owned(),
            last_success: Some(SystemTime::now()),
            ..HostState::default()
        };
        let part = metrics::encode_hosts(std::slice::from_ref(&landed), Instant::now()).unwrap();
        hosts.land(1, landed, Some(part));
        let after: Vec<_> = hosts
            .parts
            .iter()
            .map(|part| Arc::clone(&lock(part)))
            .collect();
        assert!(Arc::ptr_eq(&before[0], &after[0]) && Arc::ptr_eq(&before[2], &after[2]));
        assert!(!Arc::ptr_eq(&before[1], &after[1]));
        assert!(*lock(&hosts.changed), "the publisher is told");
        hosts.publish();
        let published = Arc::clone(&lock(&hosts.published));
        assert!(
            published.text.contains("uri=\"test:///b\""),
            "{}",
            published.text
        );
        assert_eq!(published.health[1].uri, "test:///b");
    }

    #[test]
    fn first_scans_spread_over_one_interval() {
        let interval = Duration::from_secs(5);
        let offsets: Vec<Duration> = (0..4)
            .map(|index| first_scan_offset(index, 4, interval))
            .collect();
        assert_eq!(
            offsets,
            [0, 1250, 2500, 3750].map(Duration::from_millis).to_vec()
        );
        assert_eq!(first_scan_offset(0, 1, interval), Duration::ZERO);
    }

    #[test]
    fn a_scan_that_runs_past_the_next_due_time_makes_it_late_and_counts_anew() {
        let interval = Duration::from_secs(5);
        let due = Instant::now();
        let on_time = next_scan(due, due + Duration::from_secs(1), interval);
        assert_eq!(on_time, (due + interval, Duration::ZERO));
        let ended = due + Duration::from_secs(7);
        assert_eq!(
            next_scan(due, ended, interval),
            (ended, Duration::from_secs(2))
        );
    }

    #[test]
    fn overdue_is_the_late_start_or_how_long_past_due_the_next_scan_is() {
        let now = Instant::now();
        let state = |started_late: u64, due_ago: Option<u64>| HostState {
            started_late: Duration::from_secs(started_late),
            next_due: due_ago.map(|ago| now - Duration::from_secs(ago)),
            ..HostState::default()
        };
        assert_eq!(state(0, None).overdue(now), Duration::ZERO);
        let ahead = HostState {
            next_due: Some(now + Duration::from_secs(3)),
            ..HostState::default()
        };
        assert_eq!(ahead.overdue(now), Duration::ZERO);
        assert_eq!(state(2, Some(0)).overdue(now), Duration::from_secs(2));
        assert_eq!(state(2, Some(9)).overdue(now), Duration::from_secs(9));
    }

    #[test]
    fn healthz_wants_a_good_scan_within_two_intervals_on_every_host() {
        let now = SystemTime::now();
        let interval = Duration::from_secs(5);
        let ok = healthz(&[host("a", Some(9), None, now)], now, interval);
        assert_eq!(ok.status, 200, "between two good scans: {}", ok.body);
        let stale = healthz(&[host("a", Some(11), None, now)], now, interval);
        assert_eq!(
            (stale.status, &*stale.body),
            (503, "a: last good scan 11s ago\n")
        );
        let failed = healthz(
            &[
                host("a", Some(1), None, now),
                host("b", Some(1), Some("cannot list"), now),
            ],
            now,
            interval,
        );
        assert_eq!((failed.status, &*failed.body), (503, "b: cannot list\n"));
        let starting = healthz(&[host("a", None, None, now)], now, interval);
        assert_eq!(&*starting.body, "a: no scan has finished yet\n");
    }
}
