//! `serve`: Prometheus metrics and a health check over HTTP for every host,
//! answered from background scans. No request ever starts virsh: a hung
//! host holds up the one worker scanning it, never an answer; a host
//! waiting for its scan is an entry in a queue, not a thread.

mod http;
mod metrics;
mod webconfig;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
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
use crate::virsh::{Disk, DomainStats, ListingFor, Pool, Uri, groups};
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

/// Binds the address, starts the scan workers and answers requests
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
    let schedule = Arc::new(Schedule::new(fleet.hosts.len(), options.interval));
    let workers = fleet.workers();
    for worker in 0..workers {
        let (fleet, hosts, schedule) = (
            Arc::clone(&fleet),
            Arc::clone(&hosts),
            Arc::clone(&schedule),
        );
        let io = options.io_metrics;
        thread::Builder::new()
            .name(format!("scan-{worker}"))
            .spawn(move || scan_forever(&fleet, &hosts, &schedule, io))?;
    }
    tracing::info!(%listen, hosts = fleet.hosts.len(), workers,
        interval_s = options.interval.as_secs_f64(), tls, auth, "serving /metrics and /healthz");
    tracing::info!(
        hosts = fleet.hosts.len(),
        workers,
        interval_s = options.interval.as_secs_f64(),
        fits_scan_s =
            options.interval.as_secs_f64() * workers as f64 / fleet.hosts.len().max(1) as f64,
        "every host is scanned once now, then once per interval: the workers keep every host \
         at its interval while a scan takes at most interval × workers ÷ hosts"
    );
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
        run_in_background();
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

/// How much lower than the threads answering requests the scans and the
/// publisher run (nice +10, and the threads and processes they start with
/// them: virsh, ssh). With a thousand hosts, scans keep the cores busy;
/// a scrape that waits for a core behind them misses Prometheus' budget,
/// while a scan that waits a few milliseconds longer costs nothing (and
/// falling behind shows in the behind series and the round's log line).
const BACKGROUND_NICENESS: libc::c_int = 10;

/// Lowers the calling thread's CPU priority by [`BACKGROUND_NICENESS`]
/// (on Linux the nice value is the thread's, inherited by the threads
/// and processes it starts; raising it needs no privilege). On failure
/// the thread runs on at its priority: slower scrapes, nothing worse.
fn run_in_background() {
    // SAFETY: nice(2) and errno are the calling thread's own; -1 is a
    // valid nice value, so errno tells a failure from it.
    let failed = unsafe {
        *libc::__errno_location() = 0;
        libc::nice(BACKGROUND_NICENESS) == -1 && *libc::__errno_location() != 0
    };
    if failed {
        tracing::warn!(error = %std::io::Error::last_os_error(),
            "cannot lower the priority of the scans: scrapes compete with them for the cores");
    }
}

/// When each host's scans are due: the queue of the hosts waiting for
/// their turn, soonest due first, taken by the workers.
struct Schedule {
    /// When `serve` started: every host's first scan is due then.
    start: Instant,
    /// Start to start.
    interval: Duration,
    hosts: usize,
    queue: Mutex<BinaryHeap<Reverse<Due>>>,
    changed: Condvar,
    /// Scans that have landed since the start: a round's worth of them
    /// (one per host) ends a round.
    landed: Mutex<usize>,
}

/// One host's next scan, as queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Due {
    at: Instant,
    /// Of the fleet's hosts; among hosts due at once, the first given
    /// goes first.
    index: usize,
    /// How late the host already is: its previous scan ran past this
    /// one's due time ([`next_scan`]).
    behind: Duration,
}

impl Schedule {
    /// Every host due at once, now: the first round runs as fast as the
    /// workers go.
    fn new(hosts: usize, interval: Duration) -> Self {
        let start = Instant::now();
        Schedule {
            start,
            interval,
            hosts,
            queue: Mutex::new(
                (0..hosts)
                    .map(|index| {
                        Reverse(Due {
                            at: start,
                            index,
                            behind: Duration::ZERO,
                        })
                    })
                    .collect(),
            ),
            changed: Condvar::new(),
            landed: Mutex::new(0),
        }
    }

    /// The next host due, once it is due; the idle workers wait here.
    fn next(&self) -> Due {
        let mut queue = lock(&self.queue);
        loop {
            let now = Instant::now();
            queue = match queue.peek() {
                Some(&Reverse(due)) if due.at <= now => {
                    queue.pop();
                    return due;
                }
                Some(&Reverse(due)) => {
                    self.changed
                        .wait_timeout(queue, due.at - now)
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .0
                }
                None => self
                    .changed
                    .wait(queue)
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
            };
        }
    }

    /// Queues a host's next scan.
    fn put(&self, due: Due) {
        lock(&self.queue).push(Reverse(due));
        self.changed.notify_one();
    }

    /// When the scan after `due` is due at the earliest: host i of N at
    /// start + i × interval ÷ N + k × interval, so that after the first
    /// round the fleet's scans, and their claims on the budget, come one
    /// after another instead of all at each tick.
    fn slot_after(&self, due: &Due) -> Instant {
        if due.at == self.start {
            self.start + first_scan_offset(due.index, self.hosts, self.interval) + self.interval
        } else {
            due.at + self.interval
        }
    }

    /// Counts a landed scan; `true` when it ends a round.
    fn landed(&self) -> bool {
        let mut landed = lock(&self.landed);
        *landed += 1;
        *landed % self.hosts.max(1) == 0
    }
}

/// Where host `index` of `hosts` falls in one interval after the first
/// round: `index × interval ÷ hosts`.
fn first_scan_offset(index: usize, hosts: usize, interval: Duration) -> Duration {
    interval.mul_f64(index as f64 / hosts.max(1) as f64)
}

/// When the scan whose slot is `slot` is due, given that the one before
/// ended at `ended`, and how late that is: at its slot, or, where the scan
/// before ran past it, at once (late by as much), the interval counted
/// anew from there.
fn next_scan(slot: Instant, ended: Instant) -> (Instant, Duration) {
    let late = ended.saturating_duration_since(slot);
    (if late.is_zero() { slot } else { ended }, late)
}

/// The interval at which `workers` keep `hosts` hosts whose scans take
/// `per_scan` each at their interval: hosts × per scan ÷ workers.
fn interval_that_fits(hosts: usize, workers: usize, per_scan: Duration) -> Duration {
    per_scan.mul_f64(hosts as f64 / workers.max(1) as f64)
}

/// After a round: one line when the workers cannot keep every host at
/// `interval` at the scans' mean time, with the formula's figures, and one
/// when some host's own scan takes longer than the interval (a slow host:
/// no budget keeps it), naming the slowest; never a line per host (their
/// `dismount_host_scan_overdue_seconds` say which fell behind).
fn check_round(states: &[Mutex<HostState>], workers: usize, interval: Duration) {
    let took: Vec<(Duration, String)> = states
        .iter()
        .filter_map(|state| {
            let state = lock(state);
            Some((state.last_duration?, state.uri.clone()))
        })
        .collect();
    let total: Duration = took.iter().map(|(took, _)| *took).sum();
    let per_scan = total / u32::try_from(took.len().max(1)).unwrap_or(u32::MAX);
    let fits = interval_that_fits(states.len(), workers, per_scan);
    if fits > interval {
        tracing::warn!(
            hosts = states.len(),
            workers,
            scan_s = per_scan.as_secs_f64(),
            interval_s = interval.as_secs_f64(),
            fits_s = fits.as_secs_f64(),
            "the budget cannot scan every host within the interval: hosts × mean scan time ÷ workers \
             is {:.1} s against {:.1} s, so hosts fall behind (dismount_host_scan_overdue_seconds); \
             raise --max-connections or --cache-ttl",
            fits.as_secs_f64(),
            interval.as_secs_f64()
        );
    }
    let slow: Vec<&(Duration, String)> = took.iter().filter(|(took, _)| *took > interval).collect();
    if let Some((slowest, uri)) = slow.iter().max_by_key(|(took, _)| *took) {
        tracing::warn!(slow_hosts = slow.len(), uri = %uri, took_s = slowest.as_secs_f64(),
            interval_s = interval.as_secs_f64(),
            "hosts whose own scan takes longer than the interval fall behind it, whatever the budget \
             (dismount_host_scan_overdue_seconds); the slowest is named");
    }
}

/// Takes the next host due from the schedule, scans it, encodes a good
/// scan's series, hands them to the publisher and queues the host's next
/// scan, again. With more hosts than the budget has places, a host's
/// sessions end after its scan, for the hosts waiting.
fn scan_forever(fleet: &Fleet, hosts: &Hosts, schedule: &Schedule, io: bool) {
    run_in_background();
    let interval = schedule.interval;
    loop {
        let due = schedule.next();
        let index = due.index;
        let host = &fleet.hosts[index];
        let slot = schedule.slot_after(&due);
        let started = Instant::now();
        {
            let mut state = lock(&hosts.states[index]);
            state.next_due = Some(slot);
            // The first round is late by design: every host at once.
            let waited = if due.at == schedule.start {
                Duration::ZERO
            } else {
                started.saturating_duration_since(due.at)
            };
            state.started_late = due.behind + waited;
        }
        tracing::debug!(uri = %host.uri(),
            due_s = due.at.duration_since(schedule.start).as_secs_f64(), "scan started");
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
                // A signal is ending `serve` and killed this scan's virsh:
                // not the host's failure, and the process ends in a moment.
                groups::wait_if_dying();
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
        let (at, behind) = next_scan(slot, Instant::now());
        if !behind.is_zero() {
            // Once per round for the fleet (check_round), not per host.
            tracing::debug!(uri = %host.uri(), took_s = took.as_secs_f64(),
                interval_s = interval.as_secs_f64(), behind_s = behind.as_secs_f64(),
                "scan ran past the next one's due time");
        }
        schedule.put(Due { at, index, behind });
        if schedule.landed() {
            check_round(&hosts.states, fleet.workers(), interval);
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
        let (pools, volumes) = virsh.storage()?;
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
        groups::wait_if_dying();
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

/// The status of `/healthz` while the first round runs and no scanned
/// host has failed: a 2xx, so a check that wants exactly 200 waits for
/// every host's figures and one that takes any 2xx (or 202) is up at once,
/// and neither mistakes it for the 503 of a failing host.
const STARTING: u16 = 202;

/// 200 when every host's last scan succeeded within two scan intervals;
/// [`STARTING`] with `starting: N of M hosts scanned` while some host has
/// not finished its first scan (the first round, however long the budget
/// takes for it: each scan ends by `--timeout`; a host scanned early in a
/// long first round is not stale before it ends); else 503, a line per
/// failing host with the reason.
fn healthz(hosts: &[HostState], now: SystemTime, interval: Duration) -> Response {
    let stale_after = interval * 2;
    // Answered: a scan ended, good or not.
    let scanned = hosts
        .iter()
        .filter(|host| host.last_success.is_some() || host.last_error.is_some())
        .count();
    let starting = scanned < hosts.len();
    let failing: Vec<String> = hosts
        .iter()
        .filter_map(|host| {
            let reason = match (&host.last_error, host.last_success) {
                (Some(error), _) => error.clone(),
                // Not yet answered: counted as starting.
                (None, None) => return None,
                (None, Some(at)) => {
                    let age = now.duration_since(at).unwrap_or_default();
                    if age <= stale_after || starting {
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
    if !failing.is_empty() {
        Response::text(503, failing.join("\n") + "\n")
    } else if starting {
        Response::text(
            STARTING,
            format!("starting: {scanned} of {} hosts scanned\n", hosts.len()),
        )
    } else {
        Response::text(200, format!("ok: {} host(s)\n", hosts.len()))
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

    /// A scan's thread and what it starts run 10 nicer than the rest of
    /// `serve` (the thread answering requests among it); the rest stays.
    #[test]
    fn scans_and_their_children_run_at_a_lower_priority() {
        // SAFETY: getpriority(2) of the calling thread, which is alive.
        let own = || unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) };
        let before = own();
        let (scanning, child) = thread::spawn(move || {
            run_in_background();
            // coreutils' `nice` without a command prints its own niceness.
            let child = std::process::Command::new("nice").output().unwrap();
            let child: i32 = String::from_utf8(child.stdout)
                .unwrap()
                .trim()
                .parse()
                .unwrap();
            (own(), child)
        })
        .join()
        .unwrap();
        let lowered = (before + BACKGROUND_NICENESS).min(19);
        assert_eq!((scanning, child), (lowered, lowered));
        assert_eq!(own(), before, "the other threads keep their priority");
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

    /// Every host is due at the start, in the order given; each one's
    /// second scan falls at its place in the interval after that.
    #[test]
    fn the_first_round_is_due_at_once_then_spread_over_the_interval() {
        let interval = Duration::from_secs(4);
        let schedule = Schedule::new(4, interval);
        let first: Vec<Due> = (0..4).map(|_| schedule.next()).collect();
        assert_eq!(
            first
                .iter()
                .map(|due| (due.index, due.at))
                .collect::<Vec<_>>(),
            (0..4)
                .map(|index| (index, schedule.start))
                .collect::<Vec<_>>()
        );
        let second: Vec<Duration> = first
            .iter()
            .map(|due| schedule.slot_after(due) - schedule.start)
            .collect();
        assert_eq!(second, [4, 5, 6, 7].map(Duration::from_secs).to_vec());
        let later = Due {
            at: schedule.start + Duration::from_secs(5),
            index: 1,
            behind: Duration::ZERO,
        };
        assert_eq!(
            schedule.slot_after(&later),
            schedule.start + Duration::from_secs(9)
        );
    }

    /// The queue gives the soonest due first, whatever the order put.
    #[test]
    fn the_queue_gives_the_host_due_soonest() {
        let schedule = Schedule::new(0, Duration::from_secs(5));
        let past = schedule.start;
        for (index, ago) in [(7, 1), (3, 3), (5, 2)] {
            schedule.put(Due {
                at: past.checked_sub(Duration::from_secs(ago)).unwrap_or(past),
                index,
                behind: Duration::ZERO,
            });
        }
        let order: Vec<usize> = (0..3).map(|_| schedule.next().index).collect();
        assert_eq!(order, [3, 5, 7]);
    }

    #[test]
    fn a_round_ends_after_one_landing_per_host() {
        let schedule = Schedule::new(3, Duration::from_secs(5));
        let ends: Vec<bool> = (0..6).map(|_| schedule.landed()).collect();
        assert_eq!(ends, [false, false, true, false, false, true]);
    }

    #[test]
    fn the_interval_that_fits_is_hosts_times_scan_over_workers() {
        assert_eq!(
            interval_that_fits(1000, 16, Duration::from_millis(1600)),
            Duration::from_secs(100)
        );
        assert_eq!(
            interval_that_fits(3, 0, Duration::from_secs(2)),
            Duration::from_secs(6),
            "no workers counts as one"
        );
    }

    #[test]
    fn a_scan_that_runs_past_the_next_due_time_makes_it_late_and_counts_anew() {
        let slot = Instant::now() + Duration::from_secs(5);
        let on_time = next_scan(slot, slot - Duration::from_secs(4));
        assert_eq!(on_time, (slot, Duration::ZERO));
        let ended = slot + Duration::from_secs(2);
        assert_eq!(next_scan(slot, ended), (ended, Duration::from_secs(2)));
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
        let health = |hosts: &[HostState]| healthz(hosts, now, interval);
        let ok = health(&[host("a", Some(9), None, now)]);
        assert_eq!(ok.status, 200, "between two good scans: {}", ok.body);
        let stale = health(&[host("a", Some(11), None, now)]);
        assert_eq!(
            (stale.status, &*stale.body),
            (503, "a: last good scan 11s ago\n")
        );
        let failed = health(&[
            host("a", Some(1), None, now),
            host("b", Some(1), Some("cannot list"), now),
        ]);
        assert_eq!((failed.status, &*failed.body), (503, "b: cannot list\n"));
    }

    /// Until every host has answered once, 202 and how many have; a failed
    /// host is a failure still.
    #[test]
    fn healthz_says_starting_until_every_host_has_answered_once() {
        let now = SystemTime::now();
        let interval = Duration::from_secs(5);
        let scanned =
            |uri: &str, error: Option<&str>| host(uri, error.is_none().then_some(1), error, now);
        let starting = healthz(
            &[
                scanned("a", None),
                host("b", None, None, now),
                host("c", None, None, now),
            ],
            now,
            interval,
        );
        assert_eq!(
            (starting.status, &*starting.body),
            (202, "starting: 1 of 3 hosts scanned\n")
        );
        let failing = healthz(
            &[
                scanned("a", Some("cannot list")),
                host("b", None, None, now),
            ],
            now,
            interval,
        );
        assert_eq!((failing.status, &*failing.body), (503, "a: cannot list\n"));
        // Scanned long ago, early in a first round the budget takes long
        // over: not stale before the round ends.
        let early = healthz(
            &[host("a", Some(600), None, now), host("b", None, None, now)],
            now,
            interval,
        );
        assert_eq!(
            (early.status, &*early.body),
            (202, "starting: 1 of 2 hosts scanned\n")
        );
        let done = healthz(&[scanned("a", None), scanned("b", None)], now, interval);
        assert_eq!((done.status, &*done.body), (200, "ok: 2 host(s)\n"));
    }
}
