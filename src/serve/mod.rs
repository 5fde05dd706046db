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
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use flate2::Compression;
use flate2::write::GzEncoder;

use crate::fleet::{Fleet, Host};
use crate::media::{DriveRow, MediaManager};
use crate::mutex::lock;
use crate::probe::{DomainStatus, Figures, ReadFault};
use crate::virsh::{Disk, DomainStats, ListingFor, Uri};
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

/// One host as its last scans left it.
#[derive(Debug, Clone, Default)]
pub struct HostState {
    /// As [`Host::uri`] shows it: public.
    pub uri: String,
    /// From the last good scan: a failed scan keeps them.
    pub domains: Vec<DomainStatus>,
    pub drives: Vec<DriveRow>,
    /// Each domain's `domstats` block, by name: the per-device and memory
    /// statistics figures.
    pub stats: HashMap<String, DomainStats>,
    /// Each domain's disks as its current XML (live when running) has
    /// them, by name: the bus and device of its block figures.
    pub disks: HashMap<String, Vec<Disk>>,
    /// Whether each domain whose XML was read has the guest agent's
    /// channel, as its current XML says.
    pub agent_channels: HashMap<String, bool>,
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

impl HostState {
    /// What `/healthz` reads: the URI and the scans' outcome, no domain.
    fn health(&self) -> HostState {
        HostState {
            uri: self.uri.clone(),
            last_success: self.last_success,
            last_duration: self.last_duration,
            last_error: self.last_error.clone(),
            ..HostState::default()
        }
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
        published: Mutex::new(Arc::new(Published::default())),
        encoding: Mutex::new(()),
    });
    // Before the first scan: every host there, none scanned yet.
    hosts.publish();
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

/// Every host's state, and what the requests are answered from.
struct Hosts {
    states: Vec<Mutex<HostState>>,
    published: Mutex<Arc<Published>>,
    /// Held while the states are published: two scans ending together
    /// publish one after the other, so the later state is the one kept.
    encoding: Mutex<()>,
}

/// The hosts' states as of the last scan, as the requests see them: the
/// `/metrics` body, encoded once per scan, plain and gzipped (a scrape
/// copies neither), and what `/healthz` reads, from the same moment (a
/// 200 from `/healthz` means `/metrics` shows those scans).
#[derive(Default)]
struct Published {
    text: Arc<str>,
    gzip: Option<Arc<[u8]>>,
    /// Each host's URI and scan outcome, without its domains.
    health: Vec<HostState>,
}

impl Hosts {
    /// Encodes every host's state anew and keeps it for the requests; on
    /// failure what was published before stays.
    fn publish(&self) {
        let _turn = lock(&self.encoding);
        let (encoded, health) = {
            let states: Vec<_> = self.states.iter().map(lock).collect();
            let states: Vec<&HostState> = states.iter().map(|state| &**state).collect();
            let health = states.iter().map(|state| state.health()).collect();
            (metrics::render(&states), health)
        };
        let published = encoded.and_then(|text| {
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

/// Scans the fleet's host `index` on its schedule, keeps each result and
/// encodes the metrics, again. Each scan is the host's work: with more
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
        let mut state = lock(&hosts.states[index]);
        state.last_duration = Some(took);
        // The URI virsh reports is known after the first listing.
        state.uri = host.uri();
        match scanned {
            Ok(scan) => {
                tracing::info!(uri = %state.uri, domains = scan.domains.len(), drives = scan.drives.len(),
                    took_s = took.as_secs_f64(), "scan done");
                state.domains = scan.domains;
                state.drives = scan.drives;
                state.stats = scan.stats;
                state.disks = scan.disks;
                state.agent_channels = scan.agent_channels;
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
        drop(state);
        hosts.publish();
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
