//! `serve` as a binary, on libvirt's test driver (and a fake virsh for a
//! host that hangs): what /metrics and /healthz answer, that no request
//! starts virsh, that slow clients cannot silence it, and how it stops.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use crate::common::*;

fn metric_line<'a>(metrics: &'a str, name: &str, labels: &[&str]) -> Option<&'a str> {
    metrics.lines().find(|line| {
        line.starts_with(&format!("{name}{{")) && labels.iter().all(|label| line.contains(label))
    })
}

fn value(line: &str) -> f64 {
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

/// Sends `request` as is and reads the answer until the server closes
/// (30 s at most): the client never closes its side first.
fn send_raw(addr: SocketAddr, request: &[u8]) -> String {
    String::from_utf8_lossy(&send_raw_bytes(addr, request)).into_owned()
}

/// [`send_raw`], the answer as bytes (a gzip body).
fn send_raw_bytes(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream.write_all(request).unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    answer
}

/// Two hosts: every domain and drive is there with `uri`, the figures are
/// the fixtures', and answering requests starts no virsh at all.
#[test]
fn metrics_of_two_hosts_and_no_virsh_per_request() {
    let fleet = fleet_uri("fleet-400.xml");
    let media = fleet_uri("fleet-media.xml");
    let log = temp_dir("serve-count").join("calls");
    let serving = Serving::start(
        tool()
            .args(["-c", &fleet, "-c", &media, "--virsh"])
            .arg(support("counting-virsh"))
            .env("COUNTING_VIRSH_LOG", &log),
    );
    serving.wait_for("/healthz", |status, _| status == 200);
    let before = recorded_calls(&log).len();
    let (status, metrics) = serving.get("/metrics");
    assert_eq!(status, 200);
    for _ in 0..20 {
        assert_eq!(serving.get("/metrics").0, 200);
        assert_eq!(serving.get("/healthz").0, 200);
    }
    assert_eq!(
        recorded_calls(&log).len(),
        before,
        "requests start no virsh"
    );

    let fleet_uri_label = format!("uri=\"{fleet}\"");
    // vm-001 of fleet-400.xml: 2 vCPUs, 512 MiB, running.
    let vm = ["domain=\"vm-001\"", fleet_uri_label.as_str()];
    assert_eq!(
        value(metric_line(&metrics, "dismount_domain_vcpus", &vm).unwrap()),
        2.0
    );
    assert_eq!(
        value(metric_line(&metrics, "dismount_domain_memory_max_bytes", &vm).unwrap()),
        512.0 * 1024.0 * 1024.0
    );
    assert!(
        metric_line(
            &metrics,
            "dismount_domain_state",
            &[vm[0], vm[1], "state=\"running\""]
        )
        .is_some()
    );
    assert!(metric_line(&metrics, "dismount_domain_cpu_seconds_total", &vm).is_some());
    // vm-003: shut off, 4 × 256 MiB; its state and memory stay.
    let stopped = ["domain=\"vm-003\"", fleet_uri_label.as_str()];
    assert!(
        metric_line(
            &metrics,
            "dismount_domain_state",
            &[stopped[0], stopped[1], "state=\"shut off\""]
        )
        .is_some()
    );
    assert_eq!(
        value(metric_line(&metrics, "dismount_domain_memory_max_bytes", &stopped).unwrap()),
        4.0 * 256.0 * 1024.0 * 1024.0
    );
    let domains = metrics
        .lines()
        .filter(|l| l.starts_with("dismount_domain_state{") && l.contains(&fleet_uri_label))
        .count();
    assert_eq!(domains, 400);
    // fleet-media.xml: two-drives holds an ISO in hdc; its sdb is empty.
    let media_label = format!("uri=\"{media}\"");
    let hdc = metric_line(
        &metrics,
        "dismount_drive_media_info",
        &["domain=\"two-drives\"", "target=\"hdc\"", &media_label],
    )
    .expect("the drive's series");
    assert!(
        hdc.contains("source=\"/srv/iso/missing-install.iso\""),
        "{hdc}"
    );
    let missing = |domain: &str, target: &str| {
        metric_line(
            &metrics,
            "dismount_drive_media_missing",
            &[
                &format!("domain=\"{domain}\""),
                &format!("target=\"{target}\""),
                &media_label,
            ],
        )
        .map(value)
    };
    assert_eq!(missing("two-drives", "hdc"), Some(1.0), "its ISO is gone");
    assert_eq!(
        missing("two-drives", "fda"),
        Some(0.0),
        "/etc/os-release is there"
    );
    assert_eq!(
        missing("two-drives", "sda"),
        None,
        "an empty drive has nothing to miss"
    );
    for uri in [&fleet, &media] {
        let host = format!("uri=\"{uri}\"");
        assert_eq!(
            value(metric_line(&metrics, "dismount_host_scan_success", &[&host]).unwrap()),
            1.0
        );
        assert!(
            metric_line(
                &metrics,
                "dismount_host_last_successful_scan_timestamp_seconds",
                &[&host]
            )
            .is_some()
        );
    }
}

/// The storage pools' room and ISO count, as `pool-dumpxml` and the
/// library have them (fleet-library.xml: `isos` holds held.iso,
/// by-path.iso, unused.iso and disk.qcow2, no ISO; `other` spare.iso);
/// the guests' filesystems of a driver without agents are no error.
#[test]
fn pool_series_match_the_test_drivers_pools() {
    let uri = fleet_uri("fleet-library.xml");
    let serving = Serving::start(tool().args(["-c", &uri]));
    serving.wait_for("/healthz", |status, _| status == 200);
    let metrics = serving.get("/metrics").1;
    let uri_label = format!("uri=\"{uri}\"");
    let isos = ["pool=\"isos\"", uri_label.as_str()];
    for (name, expected) in [
        ("dismount_pool_capacity_bytes", 107_374_182_400.0),
        ("dismount_pool_allocation_bytes", 10_485_760.0),
        ("dismount_pool_available_bytes", 107_363_696_640.0),
        ("dismount_pool_iso_volumes", 3.0),
        // unused.iso, 3 MiB (disk.qcow2's 4 MiB is no ISO).
        ("dismount_pool_iso_largest_bytes", 3_145_728.0),
    ] {
        let line =
            metric_line(&metrics, name, &isos).unwrap_or_else(|| panic!("no {name} in\n{metrics}"));
        assert_eq!(value(line), expected, "{line}");
    }
    let other = ["pool=\"other\"", uri_label.as_str()];
    assert_eq!(
        value(metric_line(&metrics, "dismount_pool_iso_volumes", &other).unwrap()),
        1.0
    );
    assert!(
        metric_line(
            &metrics,
            "dismount_pool_info",
            &[
                isos[0],
                isos[1],
                "state=\"running\"",
                "type=\"dir\"",
                "path=\"/srv/isos\""
            ]
        )
        .is_some(),
        "{metrics}"
    );
    assert!(
        !metrics.contains("dismount_guest_filesystem_scrape_error{"),
        "{metrics}"
    );
}

/// A host whose virsh hangs (a fake: the real one cannot on demand): the
/// other host's metrics are served all the same, and /healthz says it is
/// starting (202, one of two hosts scanned) until its scan ends (by
/// `--timeout`; here 600 s). Before: 503 `no scan has finished yet`, as
/// for a failure.
#[test]
fn a_hung_host_holds_neither_metrics_nor_the_other_host() {
    let small = fleet_uri("fleet-small.xml");
    let hung = "test:///hung-host.xml";
    let serving = Serving::start(
        tool()
            .args(["-c", &small, "-c", hung, "--timeout", "600s", "--virsh"])
            .arg(support("fault-virsh"))
            .env("FAULT", "hang")
            .env("FAULT_ONLY_URI", hung),
    );
    let (_, metrics) = serving.wait_for("/metrics", |status, body| {
        status == 200 && body.contains("dismount_domain_state{domain=\"plain\"")
    });
    assert!(!metrics.contains(hung) || !metrics.contains("dismount_domain_state{domain=\"x\""));
    let (status, body) = serving.get("/healthz");
    assert_eq!(
        (status, body.as_str()),
        (202, "starting: 1 of 2 hosts scanned\n")
    );
}

/// `domstats` for fleet-small.xml as the test driver prints it, with
/// QEMU's figures for `plain`: the lab's captured block (disk, balloon,
/// vCPU) and an interface (the lab's guests have none). The test driver
/// reports no figures of its own, so the other domains still need
/// `dominfo`.
fn domstats_with_qemu_figures_for_plain(dir: &std::path::Path) -> std::path::PathBuf {
    let listing = virsh(
        &fleet_uri("fleet-small.xml"),
        &["domstats", "--raw", "--state"],
    );
    let captured =
        std::fs::read_to_string(root().join("fixtures/virsh/domstats-qemu-all-groups.txt"))
            .unwrap();
    let lab_agent: String = captured
        .split("\n\n")
        .find(|block| block.starts_with("Domain: 'lab-agent'"))
        .unwrap()
        .lines()
        .skip(1)
        .filter(|line| !line.trim_start().starts_with("state."))
        .map(|line| format!("{line}\n"))
        .collect();
    let nic = "  net.count=1\n  net.0.name=vnet7\n  net.0.rx.bytes=1500\n  net.0.rx.pkts=3\n  \
               net.0.rx.errs=0\n  net.0.rx.drop=1\n  net.0.tx.bytes=900\n  net.0.tx.pkts=2\n  \
               net.0.tx.errs=0\n  net.0.tx.drop=0\n";
    let header = "Domain: 'plain'\n";
    let at = listing.find(header).expect("plain in the listing") + header.len();
    let text = format!("{}{lab_agent}{nic}{}", &listing[..at], &listing[at..]);
    let path = dir.join("domstats.txt");
    std::fs::write(&path, text).unwrap();
    path
}

/// A domain whose figures cannot be read (their `dominfo` hangs past
/// `--timeout`) is marked by `dismount_domain_scrape_error` and keeps its
/// state and media series; `plain`, whose figures the listing brought, is
/// exported whole, in base units; the host's scan succeeds. gzip is sent
/// to a client that takes it, the plain text to one that does not.
#[test]
fn a_domain_whose_figures_hang_is_marked_and_the_others_are_exported() {
    let dir = temp_dir("serve-isolation");
    let lines = dir.join("lines");
    let serving = Serving::start(
        tool_hung_on("dominfo")
            .env("DOMSTATS_FILE", domstats_with_qemu_figures_for_plain(&dir))
            .env("LINES_LOG", &lines),
    );
    serving.wait_for("/healthz", |status, _| status == 200);
    let (_, metrics) = serving.get("/metrics");
    let plain = ["domain=\"plain\""];
    let of = |name: &str, labels: &[&str]| {
        value(
            metric_line(&metrics, name, labels)
                .unwrap_or_else(|| panic!("no {name} {labels:?} in\n{metrics}")),
        )
    };
    assert_eq!(of("dismount_host_scan_success", &[]), 1.0);
    assert!(metric_line(&metrics, "dismount_domain_scrape_error", &plain).is_none());
    let hdc = ["domain=\"plain\"", "target_device=\"hdc\""];
    assert_eq!(of("dismount_domain_block_read_bytes_total", &hdc), 2048.0);
    assert_eq!(of("dismount_domain_block_read_requests_total", &hdc), 1.0);
    assert_eq!(
        of("dismount_domain_block_read_seconds_total", &hdc),
        237008e-9
    );
    assert_eq!(of("dismount_domain_block_capacity_bytes", &hdc), 376832.0);
    assert!(
        metric_line(&metrics, "dismount_domain_block_info", &hdc)
            .is_some_and(|line| line.contains("source_file=\"/work/main/.lab/isos/install-a.iso\"")),
        "{metrics}"
    );
    let nic = ["domain=\"plain\"", "target_device=\"vnet7\""];
    assert_eq!(
        of("dismount_domain_interface_receive_bytes_total", &nic),
        1500.0
    );
    assert_eq!(
        of("dismount_domain_interface_receive_drops_total", &nic),
        1.0
    );
    assert_eq!(
        of("dismount_domain_interface_transmit_packets_total", &nic),
        2.0
    );
    assert_eq!(
        of("dismount_domain_memory_rss_bytes", &plain),
        265364.0 * 1024.0
    );
    assert_eq!(
        of("dismount_domain_memory_minor_faults_total", &plain),
        1234.0
    );
    let vcpu0 = ["domain=\"plain\"", "vcpu=\"0\""];
    assert_eq!(of("dismount_domain_vcpu_seconds_total", &vcpu0), 6.8);
    assert_eq!(
        of("dismount_domain_vcpu_delay_seconds_total", &vcpu0),
        5.916167082
    );
    assert_eq!(of("dismount_domain_vcpus", &plain), 1.0);

    // The others: marked, their state and drives exported all the same.
    for name in ["with space", "-db", "Ünïcödé-vm"] {
        let domain = format!("domain=\"{name}\"");
        assert_eq!(
            of(
                "dismount_domain_scrape_error",
                &[&domain, "reason=\"timeout\""]
            ),
            1.0
        );
        assert!(metric_line(&metrics, "dismount_domain_state", &[&domain]).is_some());
    }
    let stopped = ["domain=\"with space\"", "state=\"shut off\""];
    assert_eq!(of("dismount_domain_state", &stopped), 1.0);
    assert!(
        metric_line(
            &metrics,
            "dismount_drive_media_info",
            &["domain=\"with space\""]
        )
        .is_some()
    );

    // One listing for the table and the drives, with the disk and network
    // groups (once the first scan is done, the next is an interval away).
    let logged = std::fs::read_to_string(&lines).unwrap();
    let listings: Vec<&str> = logged
        .lines()
        .filter(|l| l.starts_with("domstats"))
        .collect();
    assert_eq!(listings.len(), 1, "{logged}");
    assert!(
        listings[0].contains("--block --interface --nowait"),
        "{}",
        listings[0]
    );

    let gzipped = send_raw_bytes(
        serving.addr,
        b"GET /metrics HTTP/1.1\r\nAccept-Encoding: gzip\r\n\r\n",
    );
    let split = gzipped.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&gzipped[..split]);
    assert!(
        head.contains("\r\nContent-Encoding: gzip\r\n")
            && head.contains("\r\nVary: Accept-Encoding\r\n"),
        "{head}"
    );
    let mut text = String::new();
    flate2::read::GzDecoder::new(&gzipped[split + 4..])
        .read_to_string(&mut text)
        .expect("a gzip body");
    assert_eq!(text, metrics, "the same exposition, and no scan in between");
    let plain_answer = send_raw(
        serving.addr,
        b"GET /metrics HTTP/1.1\r\nAccept-Encoding: gzip;q=0\r\n\r\n",
    );
    assert!(!plain_answer.contains("Content-Encoding"), "{plain_answer}");
}

/// The live XML read of one domain (`plain`) hangs past `--timeout`: that
/// domain is marked (`reason="timeout"`) and keeps what the listing and
/// its figures gave (state, memory), without drive series; every other
/// domain's drives are exported; the host's scan succeeds.
#[test]
fn a_domain_whose_xml_read_hangs_is_marked_and_the_others_are_exported() {
    let serving = Serving::start(&mut tool_hung_on("dumpxml --domain plain"));
    serving.wait_for("/healthz", |status, _| status == 200);
    let (_, metrics) = serving.get("/metrics");
    let of = |name: &str, labels: &[&str]| {
        value(
            metric_line(&metrics, name, labels)
                .unwrap_or_else(|| panic!("no {name} {labels:?} in\n{metrics}")),
        )
    };
    assert_eq!(of("dismount_host_scan_success", &[]), 1.0);
    let plain = "domain=\"plain\"";
    assert_eq!(
        of(
            "dismount_domain_scrape_error",
            &[plain, "reason=\"timeout\""]
        ),
        1.0
    );
    assert_eq!(
        of("dismount_domain_state", &[plain, "state=\"running\""]),
        1.0
    );
    assert_eq!(
        of("dismount_domain_memory_max_bytes", &[plain]),
        1048576.0 * 1024.0
    );
    assert!(
        metric_line(&metrics, "dismount_drive_media_info", &[plain]).is_none(),
        "{metrics}"
    );
    let scrape_errors = metrics
        .lines()
        .filter(|line| line.starts_with("dismount_domain_scrape_error{"))
        .count();
    assert_eq!(scrape_errors, 1, "{metrics}");
    for (domain, source) in [
        ("with space", ""),
        ("it's \\\"quoted\\\"", "/srv/iso/Débian netinst.iso"),
    ] {
        let line = metric_line(
            &metrics,
            "dismount_drive_media_info",
            &[&format!("domain=\"{domain}\""), "target=\"hdc\""],
        )
        .unwrap_or_else(|| panic!("no drive of {domain} in\n{metrics}"));
        assert!(line.contains(&format!("source=\"{source}\"")), "{line}");
    }
}

/// A scan reads each domain's XML once: the live XML of an active domain
/// serves its drives and its libosinfo metadata both, and a stopped
/// domain's definition is read once, with `--inactive`. It lists the
/// storage pools once too (the pool series and the ISO volumes' from one
/// listing).
#[test]
fn each_scan_reads_a_domains_xml_and_lists_the_pools_once() {
    let lines = temp_dir("serve-xml-once").join("lines");
    let serving = Serving::start(
        tool()
            .args(["-c", &fleet_uri("fleet-small.xml"), "--virsh"])
            .arg(support("hung-agent-virsh"))
            .env("LINES_LOG", &lines),
    );
    serving.wait_for("/healthz", |status, _| status == 200);
    let logged = std::fs::read_to_string(&lines).unwrap();
    // The first scan: from its listing to the next one's.
    let first: Vec<&str> = logged
        .lines()
        .skip_while(|line| !line.starts_with("domstats"))
        .enumerate()
        .take_while(|(at, line)| *at == 0 || !line.starts_with("domstats"))
        .map(|(_, line)| line)
        .collect();
    let commands: Vec<&str> = first.iter().flat_map(|line| line.split(" ; ")).collect();
    let listing = virsh(&fleet_uri("fleet-small.xml"), &["list", "--all", "--name"]);
    let states = virsh(&fleet_uri("fleet-small.xml"), &["list", "--all"]);
    let names: Vec<&str> = listing.lines().filter(|name| !name.is_empty()).collect();
    assert_eq!(names.len(), 7, "{listing}");
    // Running and paused domains have an Id, and a live XML.
    let active = states
        .lines()
        .skip(2)
        .filter(|l| l.split_whitespace().next().is_some_and(|id| id != "-"))
        .count();
    let reads = |words: &str| commands.iter().filter(|c| **c == words).count();
    let mut live_reads = 0;
    for name in &names {
        let live = reads(&format!("dumpxml --domain {name}"));
        let inactive = reads(&format!("dumpxml --inactive --domain {name}"));
        assert!(live <= 1 && inactive <= 1, "{name}: {commands:#?}");
        assert!(live + inactive >= 1, "{name} not read: {commands:#?}");
        live_reads += live;
    }
    assert_eq!(
        live_reads, active,
        "a live read per active domain: {commands:#?}"
    );
    for listing in ["pool-list --uuid", "pool-list --inactive --uuid"] {
        assert_eq!(reads(listing), 1, "{listing}: {commands:#?}");
    }
}

/// `--no-io-metrics`: the listing asks for no disk or network group.
#[test]
fn no_io_metrics_asks_for_no_disk_or_network_group() {
    let lines = temp_dir("serve-no-io").join("lines");
    let serving = Serving::start_with(
        tool()
            .args(["-c", &fleet_uri("fleet-small.xml"), "--virsh"])
            .arg(support("hung-agent-virsh"))
            .env("LINES_LOG", &lines),
        &["--no-io-metrics"],
    );
    serving.wait_for("/healthz", |status, _| status == 200);
    let logged = std::fs::read_to_string(&lines).unwrap();
    let listing = logged.lines().find(|l| l.starts_with("domstats")).unwrap();
    assert!(
        !listing.contains("--block") && !listing.contains("--interface"),
        "{listing}"
    );
}

/// 200 clients that send half a request, or nothing, do not keep /metrics
/// from answering.
#[test]
fn slow_and_half_open_clients_do_not_silence_metrics() {
    let serving = Serving::start(tool().args(["-c", &fleet_uri("fleet-small.xml")]));
    serving.wait_for("/healthz", |status, _| status == 200);
    let mut idle = Vec::new();
    for n in 0..200 {
        let mut stream = TcpStream::connect(serving.addr).unwrap();
        if n % 2 == 0 {
            stream
                .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
                .unwrap();
        }
        idle.push(stream);
    }
    let (status, metrics) = serving.get("/metrics");
    assert_eq!(status, 200);
    assert!(metrics.contains("dismount_domain_state{domain=\"plain\""));
    drop(idle);
}

/// GET only, two paths, a bounded request head.
#[test]
fn only_get_on_known_paths_within_bounds() {
    let serving = Serving::start(tool().args(["-c", &fleet_uri("fleet-small.xml")]));
    let raw = |request: &[u8]| send_raw(serving.addr, request);
    assert!(raw(b"POST /metrics HTTP/1.1\r\nHost: x\r\n\r\n").starts_with("HTTP/1.1 405 "));
    assert!(raw(b"DELETE /healthz HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405 "));
    assert!(raw(b"GET /eject HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404 "));
    let huge = format!(
        "GET /metrics HTTP/1.1\r\nX-Big: {}\r\n\r\n",
        "a".repeat(16 * 1024)
    );
    assert!(raw(huge.as_bytes()).starts_with("HTTP/1.1 431 "));
}

/// HEAD, a target in absolute form, bare LF line ends (answered, not left
/// to the 5 s head deadline's 408), a head of exactly 8 KiB and one byte
/// more, and too many header lines.
#[test]
fn head_absolute_targets_bare_lf_and_exact_head_limits() {
    let serving = Serving::start(tool().args(["-c", &fleet_uri("fleet-small.xml")]));
    serving.wait_for("/healthz", |status, _| status == 200);
    let raw = |request: &[u8]| send_raw(serving.addr, request);

    let head = raw(b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    let (head_part, body) = head.split_once("\r\n\r\n").expect("a head");
    assert!(head_part.starts_with("HTTP/1.1 200 "), "{head}");
    let length: usize = head_part
        .lines()
        .find_map(|line| line.strip_prefix("Content-Length: "))
        .expect("Content-Length")
        .parse()
        .unwrap();
    assert!(length > 0, "the length GET would send: {head}");
    assert_eq!(body, "", "HEAD sends no body");
    let refused = raw(b"POST /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(refused.contains("\r\nAllow: GET, HEAD\r\n"), "{refused}");

    let absolute = format!(
        "GET http://{}/metrics?x=1 HTTP/1.1\r\nHost: x\r\n\r\n",
        serving.addr
    );
    let answer = raw(absolute.as_bytes());
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    assert!(answer.contains("dismount_domain_state{domain=\"plain\""));

    // The client keeps its side open: only a head read as complete gets a
    // 200 (a head still awaited ends in 408 at the deadline).
    let lf = raw(b"GET /healthz HTTP/1.1\nHost: x\n\n");
    assert!(lf.starts_with("HTTP/1.1 200 "), "{lf}");

    let exactly = |size: usize| {
        let start = "GET /healthz HTTP/1.1\r\nX-Pad: ";
        let end = "\r\n\r\n";
        let request = format!("{start}{}{end}", "a".repeat(size - start.len() - end.len()));
        assert_eq!(request.len(), size);
        raw(request.as_bytes())
    };
    let at_limit = exactly(8 * 1024);
    assert!(at_limit.starts_with("HTTP/1.1 200 "), "{at_limit}");
    let past_limit = exactly(8 * 1024 + 1);
    assert!(past_limit.starts_with("HTTP/1.1 431 "), "{past_limit}");

    let many: String = (0..100).map(|n| format!("X-{n}: y\r\n")).collect();
    let answer = raw(format!("GET /healthz HTTP/1.1\r\n{many}\r\n").as_bytes());
    assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}");
}

/// A host whose scan fails after a good one (its node file gone and its
/// session's virsh killed: the new session cannot connect) keeps its last
/// good series on the page, marked `dismount_host_scan_success 0`, and
/// /healthz names it; once it answers again, 1.
#[test]
fn a_host_whose_scan_fails_after_a_good_one_keeps_its_last_good_series() {
    let dir = temp_dir("serve-fails-later");
    let node = dir.join("node.xml");
    std::fs::copy(root().join("fixtures/fleet-small.xml"), &node).unwrap();
    let uri = format!("test://{}", node.display());
    let serving = Serving::start(tool().args(["-c", &uri, "--cache-ttl", "1s"]));
    serving.wait_for("/healthz", |status, _| status == 200);
    let plain = format!("dismount_domain_vcpus{{domain=\"plain\",uri=\"{uri}\"}} 2");
    let success = |value: u8| format!("dismount_host_scan_success{{uri=\"{uri}\"}} {value}");
    let (_, metrics) = serving.get("/metrics");
    assert!(metrics.contains(&plain), "{metrics}");
    std::fs::rename(&node, dir.join("away.xml")).unwrap();
    for pid in descendants(serving.child.id()) {
        if comm(pid) == "virsh" {
            // SAFETY: kill(2) on a virsh the tool under test started.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
    let (_, body) = serving.wait_for("/healthz", |status, _| status == 503);
    assert!(body.starts_with(&format!("{uri}: ")), "{body}");
    let (_, metrics) = serving.get("/metrics");
    assert!(
        metrics.contains(&plain) && metrics.contains(&success(0)),
        "{metrics}"
    );
    std::fs::rename(dir.join("away.xml"), &node).unwrap();
    serving.wait_for("/metrics", |_, metrics| metrics.contains(&success(1)));
}

/// /healthz and /metrics name hosts by their public URI only, in the
/// errors too (which carry the URI as given, and virsh's and ssh's words):
/// no user, no `keyfile=` or any query, no key path, percent-encoded or
/// not.
#[test]
fn http_bodies_show_public_uris_only() {
    let ssh = "qemu+ssh://root@127.0.0.1:1/system?keyfile=/nonexistent/id_serve_key&no_tty=1";
    let encoded =
        "qemu+ssh://root@127.0.0.1:2/system?Key%66ile=/nonexistent/id%20of%20serve&no_tty=1";
    let missing = format!(
        "test://root@{}?keyfile=/nonexistent/id_serve_key",
        root().join("fixtures/no-such-fleet.xml").display()
    );
    let serving = Serving::start(tool().args(["-c", ssh, "-c", &missing, "-c", encoded]));
    let (status, body) = serving.wait_for("/healthz", |_, body| {
        body.lines().count() == 3 && !body.contains("no scan has finished yet")
    });
    assert_eq!(status, 503);
    let public_missing = format!(
        "test://{}",
        root().join("fixtures/no-such-fleet.xml").display()
    );
    let lines: Vec<&str> = body.lines().collect();
    assert!(
        lines[0].starts_with(
            "qemu+ssh://127.0.0.1:1/system: cannot list domains on qemu+ssh://127.0.0.1:1/system: "
        ),
        "{body}"
    );
    assert!(
        lines[1].starts_with(&format!(
            "{public_missing}: cannot list domains on {public_missing}: "
        )),
        "{body}"
    );
    let (_, metrics) = serving.get("/metrics");
    // ssh names the key file it could not read, unless virsh, writing to
    // the ssh that already failed, dies of SIGPIPE first (a race the
    // machine's load decides): then there is no path to scrub.
    assert!(
        lines[2].starts_with("qemu+ssh://127.0.0.1:2/system: ")
            && (lines[2].contains("<keyfile>") || lines[2].contains("SIGPIPE")),
        "{body}"
    );
    for text in [&body, &metrics] {
        for secret in [
            "root@",
            "keyfile=",
            "id_serve_key",
            "no_tty",
            "id of serve",
            "id%20of",
            "%66ile",
        ] {
            assert!(!text.contains(secret), "{secret} in:\n{text}");
        }
    }
}

/// The server's cap on connections served at once (`MAX_CONNECTIONS`).
const CAP: usize = 512;

/// Whether the server has closed `stream` (its end read), looking without
/// waiting.
fn closed_by_server(stream: &TcpStream) -> bool {
    stream.set_nonblocking(true).unwrap();
    matches!(stream.peek(&mut [0]), Ok(0))
}

/// Waits until `count` of `streams` are closed by the server.
fn wait_until_closed(streams: &[TcpStream], count: usize) {
    poll(|| (streams.iter().filter(|s| closed_by_server(s)).count() >= count).then_some(()));
}

/// More silent connections than the server serves at once, each one it
/// drops opened again: a scrape is still answered, the server making
/// room by closing the oldest silent one. Every step waits for what it
/// needs to see (the server has closed the oldest silent ones), and the
/// scrapes get as long as they need: the test used to give each 3 s
/// (which a loaded machine could overrun), and re-opened before the
/// server had closed anything.
#[test]
fn silent_connections_past_the_cap_do_not_lock_out_a_scrape() {
    let serving = Serving::start(tool().args(["-c", &fleet_uri("fleet-small.xml")]));
    serving.wait_for("/healthz", |status, _| status == 200);
    let open = || TcpStream::connect(serving.addr).unwrap();
    let mut silent: Vec<TcpStream> = (0..CAP + 128).map(|_| open()).collect();
    // The server took every one in, and closed the oldest for room.
    wait_until_closed(&silent, 128);
    // One round of opening again what the server closed: the next oldest
    // make room in turn.
    for stream in &mut silent {
        if closed_by_server(stream) {
            *stream = open();
        }
    }
    wait_until_closed(&silent, 128);
    drop(silent);

    // The cap and one more, all silent: once the first is closed, every
    // older one is gone and the server holds the others.
    let silent: Vec<TcpStream> = (0..=CAP).map(|_| open()).collect();
    wait_until_closed(&silent[..1], 1);
    // Both scrapes connect before either asks (so neither ends and frees
    // a place first): each takes the place of the oldest silent one.
    let mut scrapes: Vec<(&str, TcpStream)> =
        ["/metrics", "/healthz"].map(|path| (path, open())).into();
    wait_until_closed(&silent[1..3], 2);
    for (path, scrape) in &mut scrapes {
        scrape
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        write!(scrape, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    }
    for (path, mut scrape) in scrapes {
        let mut answer = Vec::new();
        let read = scrape.read_to_end(&mut answer);
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            read.is_ok() && answer.starts_with("HTTP/1.1 200 "),
            "{path}: {read:?} {answer}"
        );
    }
    drop(silent);
}

/// What `curl` got for `path` over https from `serving`, trusting the
/// test CA in `dir`, with `user` (`name:password`) if any: (status, head,
/// body).
fn curl(serving: &Serving, dir: &Path, path: &str, user: Option<&str>) -> (u16, String, String) {
    let (head, body) = (dir.join("curl-head"), dir.join("curl-body"));
    let mut command = std::process::Command::new("curl");
    command
        .args(["-sS", "--max-time", "30", "-w", "%{http_code}", "--cacert"])
        .arg(dir.join("ca.pem"))
        .arg("-D")
        .arg(&head)
        .arg("-o")
        .arg(&body)
        .arg(format!("https://{}{path}", serving.addr));
    if let Some(user) = user {
        command.args(["-u", user]);
    }
    let output = command
        .output()
        .expect("curl runs (package curl, installed by scripts/lab up)");
    let code = String::from_utf8_lossy(&output.stdout);
    let status = code.trim().parse().unwrap_or_else(|_| {
        panic!(
            "curl {path}: {code} {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    let read = |file: &Path| std::fs::read_to_string(file).unwrap_or_default();
    (status, read(&head), read(&body))
}

/// `serve --web.config.file` with TLS and basic auth: curl with the right
/// password gets the metrics over https, with a wrong one or none 401 and
/// `WWW-Authenticate: Basic`; plain HTTP to the port gets a 400 that says
/// why, and no metrics. The file's headers come with every answer.
#[test]
fn tls_and_basic_auth_from_the_web_config() {
    let dir = temp_dir("webconfig");
    let config = web_config(&dir, "prometheus", "s3cret pass");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("http_server_config:\n  headers:\n    X-Frame-Options: deny\n");
    std::fs::write(&config, text).unwrap();
    let serving = Serving::start_with(
        tool().args(["-c", &fleet_uri("fleet-small.xml")]),
        &["--web.config.file", config.to_str().unwrap()],
    );
    let right = Some("prometheus:s3cret pass");
    poll(|| (curl(&serving, &dir, "/healthz", right).0 == 200).then_some(()));
    let (status, head, metrics) = curl(&serving, &dir, "/metrics", right);
    assert_eq!(status, 200);
    assert!(head.contains("\r\nX-Frame-Options: deny\r\n"), "{head}");
    assert!(
        metrics.contains("dismount_domain_state{domain=\"plain\""),
        "{metrics}"
    );
    for user in [None, Some("prometheus:wrong"), Some("nobody:s3cret pass")] {
        for path in ["/metrics", "/healthz"] {
            let (status, head, body) = curl(&serving, &dir, path, user);
            assert_eq!(status, 401, "{user:?} {path}: {head}{body}");
            assert!(head.contains("\r\nWWW-Authenticate: Basic\r\n"), "{head}");
            assert!(head.contains("\r\nX-Frame-Options: deny\r\n"), "{head}");
            assert!(!body.contains("dismount_"), "{body}");
        }
    }
    let plain = send_raw(serving.addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(plain.starts_with("HTTP/1.1 400 "), "{plain}");
    assert!(plain.contains("HTTP request to an HTTPS server"), "{plain}");
    assert!(!plain.contains("dismount_"), "{plain}");
}

/// The web config is read again when it or its certificate changes: a
/// new password and a new certificate (from a new CA) are served from the
/// next connection on; while the file is broken no connection is served,
/// and the log says why; fixed, it is served again.
#[test]
fn the_web_config_and_its_certificate_are_read_again_when_they_change() {
    let dir = temp_dir("webconfig-reload");
    let config = web_config(&dir, "prometheus", "first");
    let serving = Serving::start_with(
        tool().args(["-c", &fleet_uri("fleet-small.xml")]),
        &["--web.config.file", config.to_str().unwrap()],
    );
    let status = |password: &str| {
        curl(
            &serving,
            &dir,
            "/healthz",
            Some(&format!("prometheus:{password}")),
        )
        .0
    };
    poll(|| (status("first") == 200).then_some(()));
    web_config(&dir, "prometheus", "second");
    // curl trusts only the new CA now: a 200 is the new certificate's.
    assert_eq!(status("second"), 200);
    assert_eq!(status("first"), 401);
    std::fs::write(
        &config,
        "tls_server_config:\n  cert_file: gone.crt\n  key_file: server.key\n",
    )
    .unwrap();
    assert_eq!(
        status("second"),
        0,
        "no TLS answer while the file is broken"
    );
    let logged = logged(&serving, "ERROR", "cannot be served");
    assert!(logged.contains("gone.crt"), "{logged}");
    web_config(&dir, "prometheus", "third");
    assert_eq!(status("third"), 200);
}

/// The next line `serving` logs at `level` whose message holds `says`
/// (30 s at most), as JSON text.
fn logged(serving: &Serving, level: &str, says: &str) -> String {
    let until = std::time::Instant::now() + Duration::from_secs(30);
    std::iter::from_fn(|| {
        let left = until.saturating_duration_since(std::time::Instant::now());
        serving.log.recv_timeout(left).ok()
    })
    .find(|line| {
        let json: serde_json::Value = serde_json::from_str(line).expect("JSON log lines");
        json["level"] == level
            && json["fields"]["message"]
                .as_str()
                .is_some_and(|message| message.contains(says))
    })
    .unwrap_or_else(|| panic!("no {level} line saying {says:?} within 30 s"))
}

/// TLS and auth, once on, stay on: the file emptied (an editor that
/// truncates, a full disk), cut down to `{}`, or left with TLS only or
/// auth only is refused with an error in the log, and the last good
/// config is served: https with the password, 401 without, and plain
/// HTTP told to use https.
#[test]
fn a_reload_never_turns_tls_or_auth_off() {
    let dir = temp_dir("webconfig-emptied");
    let config = web_config(&dir, "prometheus", "pw");
    let full = std::fs::read_to_string(&config).unwrap();
    let (tls_only, users) = full.split_once("basic_auth_users:").unwrap();
    let serving = Serving::start_with(
        tool().args(["-c", &fleet_uri("fleet-small.xml")]),
        &["--web.config.file", config.to_str().unwrap()],
    );
    let status = |user: Option<&str>| curl(&serving, &dir, "/healthz", user).0;
    poll(|| (status(Some("prometheus:pw")) == 200).then_some(()));
    for (text, without) in [
        ("", "TLS and auth"),
        ("{}\n", "TLS and auth"),
        (tls_only, "auth"),
        (&format!("basic_auth_users:{users}"), "TLS"),
    ] {
        std::fs::write(&config, text).unwrap();
        assert_eq!(status(Some("prometheus:pw")), 200, "{text:?}");
        let said = logged(&serving, "ERROR", "refused");
        assert!(
            said.contains(&format!("serve without {without}: ")),
            "{said}"
        );
        assert_eq!(status(None), 401, "{text:?}");
        let plain = send_raw(serving.addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(plain.starts_with("HTTP/1.1 400 "), "{text:?}: {plain}");
        assert!(!plain.contains("dismount_"), "{plain}");
    }
}

/// A config that names a certificate and key not yet copied in is
/// refused; once they are there it is served, without the config file
/// being touched again.
#[test]
fn a_certificate_named_before_it_exists_is_served_once_it_is_there() {
    let dir = temp_dir("webconfig-early");
    let config = web_config(&dir, "prometheus", "pw");
    let serving = Serving::start_with(
        tool().args(["-c", &fleet_uri("fleet-small.xml")]),
        &["--web.config.file", config.to_str().unwrap()],
    );
    let status = || curl(&serving, &dir, "/healthz", Some("prometheus:pw")).0;
    poll(|| (status() == 200).then_some(()));
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("server.crt", "new.crt")
            .replace("server.key", "new.key"),
    )
    .unwrap();
    assert_eq!(status(), 0, "refused while new.crt is missing");
    assert!(logged(&serving, "ERROR", "cannot be served").contains("new.crt"));
    // The new pair from a new CA, which curl trusts from now on: a 200 is
    // the new certificate's.
    let next = dir.join("next");
    std::fs::create_dir(&next).unwrap();
    web_config(&next, "prometheus", "pw");
    for (from, to) in [
        ("ca.pem", "ca.pem"),
        ("server.key", "new.key"),
        ("server.crt", "new.crt"),
    ] {
        std::fs::copy(next.join(from), dir.join(to)).unwrap();
    }
    assert_eq!(status(), 200);
}

/// A password changed in place, to a hash of the same length, with the
/// file's modification time set back as it was: seen all the same.
#[test]
fn a_password_changed_in_place_with_the_same_size_and_mtime_is_seen() {
    let dir = temp_dir("webconfig-in-place");
    let config = web_config(&dir, "prometheus", "first");
    let serving = Serving::start_with(
        tool().args(["-c", &fleet_uri("fleet-small.xml")]),
        &["--web.config.file", config.to_str().unwrap()],
    );
    let status = |password: &str| {
        let user = format!("prometheus:{password}");
        curl(&serving, &dir, "/healthz", Some(&user)).0
    };
    poll(|| (status("first") == 200).then_some(()));
    let before = std::fs::metadata(&config).unwrap();
    let text = std::fs::read_to_string(&config).unwrap();
    let old_hash = text.rsplit(' ').next().unwrap().trim();
    let new_hash = bcrypt::hash("second", 10).unwrap();
    assert_eq!(old_hash.len(), new_hash.len());
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&config)
        .unwrap();
    std::os::unix::fs::FileExt::write_all_at(
        &file,
        text.replace(old_hash, &new_hash).as_bytes(),
        0,
    )
    .unwrap();
    file.set_modified(before.modified().unwrap()).unwrap();
    drop(file);
    let after = std::fs::metadata(&config).unwrap();
    assert_eq!(
        (after.len(), after.modified().unwrap()),
        (before.len(), before.modified().unwrap())
    );
    assert_eq!(status("second"), 200);
    assert_eq!(status("first"), 401);
}

/// A client that starts a TLS handshake and stalls is closed at the
/// request head's deadline, and silent connections past the cap make
/// room for a scrape over TLS as they do without it.
#[test]
fn a_stalled_tls_handshake_ends_at_the_head_deadline() {
    let dir = temp_dir("webconfig-stall");
    let config = web_config(&dir, "prometheus", "pw");
    let serving = Serving::start_with(
        tool().args(["-c", &fleet_uri("fleet-small.xml")]),
        &["--web.config.file", config.to_str().unwrap()],
    );
    // The first bytes of a TLS record that announces a ClientHello.
    let mut stalled = TcpStream::connect(serving.addr).unwrap();
    stalled
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .unwrap();
    stalled
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut answer = Vec::new();
    let read = stalled.read_to_end(&mut answer);
    assert!(
        !matches!(&read, Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)),
        "still open after 30 s: {read:?}"
    );
    let open = || TcpStream::connect(serving.addr).unwrap();
    let silent: Vec<TcpStream> = (0..640).map(|_| open()).collect();
    let (status, _, _) = curl(&serving, &dir, "/healthz", Some("prometheus:pw"));
    assert!(status == 200 || status == 503, "{status}");
    drop(silent);
}

/// Opens `count` connections to `serving` that each send `first` and
/// stall, and waits until the server has taken them all in: those past
/// its cap of 512 closed by it (in place of others, or refused).
fn stalled_connections(serving: &Serving, count: usize, first: &[u8]) -> Vec<TcpStream> {
    let streams: Vec<TcpStream> = (0..count)
        .map(|_| {
            let mut stream = TcpStream::connect(serving.addr).unwrap();
            stream.write_all(first).unwrap();
            stream.set_nonblocking(true).unwrap();
            stream
        })
        .collect();
    let open = |stream: &TcpStream| matches!(stream.peek(&mut [0]), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
    poll(|| (streams.iter().filter(|s| !open(s)).count() >= count - 512).then_some(()));
    streams
}

/// 1000 connections that each send a TLS record header and stall (a
/// half-open handshake) past the cap: a scrape with the password is
/// still answered, in place of the oldest of them.
#[test]
fn stalled_tls_handshakes_past_the_cap_do_not_lock_out_a_scrape() {
    let dir = temp_dir("webconfig-half-open");
    let config = web_config(&dir, "prometheus", "pw");
    let serving = Serving::start_with(
        tool().args(["-c", &fleet_uri("fleet-small.xml")]),
        &["--web.config.file", config.to_str().unwrap()],
    );
    let user = Some("prometheus:pw");
    poll(|| (curl(&serving, &dir, "/healthz", user).0 == 200).then_some(()));
    let stalled = stalled_connections(&serving, 1000, &[0x16, 0x03, 0x01, 0x02, 0x00]);
    for path in ["/metrics", "/healthz"] {
        let (status, head, body) = curl(&serving, &dir, path, user);
        assert_eq!(status, 200, "{path}: {head}{body}");
    }
    drop(stalled);
}

/// The same over plain HTTP: 1000 connections that each send the first
/// byte of a request line and stall.
#[test]
fn stalled_request_heads_past_the_cap_do_not_lock_out_a_scrape() {
    let serving = Serving::start(tool().args(["-c", &fleet_uri("fleet-small.xml")]));
    serving.wait_for("/healthz", |status, _| status == 200);
    let stalled = stalled_connections(&serving, 1000, b"G");
    for path in ["/metrics", "/healthz"] {
        let answer = send_raw(
            serving.addr,
            format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
        );
        assert!(answer.starts_with("HTTP/1.1 200 "), "{path}: {answer}");
    }
    drop(stalled);
}

/// 600 requests with a wrong password at once: 16 wait for the running
/// check, the others are answered 503 at once, and a scrape whose password
/// passed before is still answered. The unknown user is checked against
/// a hash of cost 31, which no check finishes while the test runs: no
/// connection makes room by finishing its check.
#[test]
fn a_flood_of_wrong_passwords_does_not_lock_out_a_scrape() {
    let dir = temp_dir("webconfig-wrong-flood");
    let fast = bcrypt::hash("pw", 4).unwrap();
    let endless = fast.replacen("$04$", "$31$", 1);
    let config = dir.join("web.yml");
    std::fs::write(
        &config,
        format!("basic_auth_users:\n  prometheus: {fast}\n  slow: {endless}\n"),
    )
    .unwrap();
    let serving = Serving::start_with(
        tool().args(["-c", &fleet_uri("fleet-small.xml")]),
        &["--web.config.file", config.to_str().unwrap()],
    );
    // Basic base64("prometheus:pw"); base64("nobody:pw").
    let scrape = || {
        send_raw(
            serving.addr,
            b"GET /healthz HTTP/1.1\r\nAuthorization: Basic cHJvbWV0aGV1czpwdw==\r\n\r\n",
        )
    };
    poll(|| scrape().starts_with("HTTP/1.1 200 ").then_some(()));
    let wrong = b"GET /metrics HTTP/1.1\r\nAuthorization: Basic bm9ib2R5OnB3\r\n\r\n";
    let flood = stalled_connections(&serving, 600, wrong);
    let answer = scrape();
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    drop(flood);
}

/// A web config that cannot be served is one line and exit 1, before
/// anything listens: a key the toolkit does not know, one it knows but
/// this server cannot honour, a certificate that is not there.
#[test]
fn a_bad_web_config_is_one_line_and_exit_1() {
    let dir = temp_dir("webconfig-bad");
    for (text, said) in [
        (
            "tls_server_config:\n  certfile: x\n",
            "unknown field `certfile`",
        ),
        (
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: RequireAndVerifyClientCert\n",
            "only NoClientCert",
        ),
        (
            "tls_server_config:\n  cert_file: nope.crt\n  key_file: nope.key\n",
            "cannot read the certificate",
        ),
        ("basic_auth_users:\n  bob: plain\n", "is not a bcrypt hash"),
    ] {
        let path = dir.join("web.yml");
        std::fs::write(&path, text).unwrap();
        let output = run(tool()
            .args([
                "-c",
                &fleet_uri("fleet-small.xml"),
                "serve",
                "--listen",
                "127.0.0.1:0",
            ])
            .arg("--web.config.file")
            .arg(&path));
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(1), "{text}: {err}");
        assert_eq!(err.lines().count(), 1, "{text}: {err}");
        assert!(
            err.contains(said) && err.contains("web.yml"),
            "{text}: {err}"
        );
    }
}

/// A listen address beyond loopback logs a warning before serving: there
/// is no TLS and no auth. Loopback does not, nor a web config that gives
/// both.
#[test]
fn listening_beyond_loopback_warns_that_anyone_may_read_the_metrics() {
    let warned = |serving: &Serving| {
        serving.startup.iter().any(|line| {
            let line: serde_json::Value = serde_json::from_str(line).unwrap();
            line["level"] == "WARN"
                && line["fields"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("anyone who can reach"))
        })
    };
    let small = fleet_uri("fleet-small.xml");
    let open = Serving::start_on(tool().args(["-c", &small]), "0.0.0.0:0");
    assert!(warned(&open), "{:#?}", open.startup);
    let (status, _) = open.get("/healthz");
    assert!([200, 202, 503].contains(&status), "{status}");
    drop(open);
    let local = Serving::start(tool().args(["-c", &small]));
    assert!(!warned(&local), "{:#?}", local.startup);
    drop(local);
    let config = web_config(&temp_dir("webconfig-warn"), "u", "p");
    let secured = Serving::start_serving(
        tool().args(["-c", &small]),
        "0.0.0.0:0",
        &["--web.config.file", config.to_str().unwrap()],
    );
    assert!(!warned(&secured), "{:#?}", secured.startup);
}

/// Beyond loopback, every config read again warns of what it lacks, as
/// the first did: TLS without auth, and again after an edit.
#[test]
fn every_reload_beyond_loopback_warns_of_what_it_lacks() {
    let dir = temp_dir("webconfig-warn-reload");
    let config = web_config(&dir, "u", "p");
    let full = std::fs::read_to_string(&config).unwrap();
    let (tls_only, _) = full.split_once("basic_auth_users:").unwrap();
    std::fs::write(&config, tls_only).unwrap();
    let serving = Serving::start_serving(
        tool().args(["-c", &fleet_uri("fleet-small.xml")]),
        "0.0.0.0:0",
        &["--web.config.file", config.to_str().unwrap()],
    );
    let no_auth = "no auth (basic_auth_users): anyone who can reach";
    assert!(
        serving.startup.iter().any(|line| line.contains(no_auth)),
        "{:#?}",
        serving.startup
    );
    std::fs::write(
        &config,
        format!("{tls_only}http_server_config:\n  headers:\n    X-Frame-Options: deny\n"),
    )
    .unwrap();
    let (status, head, _) = curl(&serving, &dir, "/healthz", None);
    assert!(head.contains("X-Frame-Options: deny"), "{status} {head}");
    logged(&serving, "WARN", no_auth);
}

/// SIGTERM ends `serve` and every virsh it started; the log is JSON on
/// stderr.
#[test]
fn sigterm_ends_serve_and_its_virsh() {
    use std::os::unix::process::ExitStatusExt;
    let log = temp_dir("serve-term").join("calls");
    let mut serving = Serving::start(
        tool()
            .args(["-c", &fleet_uri("fleet-small.xml"), "--virsh"])
            .arg(support("counting-virsh"))
            .env("COUNTING_VIRSH_LOG", &log),
    );
    serving.wait_for("/healthz", |status, _| status == 200);
    let scan_logged = serving
        .log
        .try_iter()
        .map(|line| serde_json::from_str::<serde_json::Value>(&line).expect("JSON log lines"))
        .any(|line| line["fields"]["message"] == "scan done");
    assert!(scan_logged);
    // SAFETY: kill(2) on the child this test started.
    unsafe { libc::kill(serving.child.id() as i32, libc::SIGTERM) };
    let status = serving.child.wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGTERM));
    let pids = logged_pids(&log);
    assert!(!pids.is_empty());
    assert_all_gone(&pids);
}

/// A scan cut short by the signal that ends `serve` (`systemctl stop`)
/// is not the host's failure: it used to log "scan failed; keeping the
/// last good values" for every scan under way, a warning per worker at
/// every stop.
#[test]
fn a_scan_killed_by_sigterm_is_not_logged_as_failed() {
    use std::os::unix::process::ExitStatusExt;
    let small = fleet_uri("fleet-small.xml");
    let hung = "test:///hung-host.xml";
    let mut serving = Serving::start(
        tool()
            .args(["-c", &small, "-c", hung, "--timeout", "600s", "--virsh"])
            .arg(support("fault-virsh"))
            .env("FAULT", "hang")
            .env("FAULT_ONLY_URI", hung),
    );
    // The small host scanned, the hung one's scan under way.
    serving.wait_for("/healthz", |status, body| {
        status == 202 && body == "starting: 1 of 2 hosts scanned\n"
    });
    // SAFETY: kill(2) on the child this test started.
    unsafe { libc::kill(serving.child.id() as i32, libc::SIGTERM) };
    let status = serving.child.wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGTERM));
    let warnings: Vec<String> = serving
        .log
        .iter()
        .filter(|line| !line.contains(r#""level":"INFO""#) && !line.contains(r#""level":"DEBUG""#))
        .collect();
    assert!(warnings.is_empty(), "{warnings:#?}");
}

/// The tool's children are its own to reap: a virsh it killed, or the
/// child such a virsh leaves (ssh, here a `sleep` under a hung fake), used
/// to be handed to init as a zombie (`<defunct>`) when the tool ended on
/// a signal. Each run happens under a child subreaper (this test binary
/// again, running [`subreaper`]), which inherits whatever the tool leaves
/// and reports it: `serve` ended by SIGTERM and by SIGINT, the menu ended
/// by the end of its input, and a scan ended by SIGTERM while its virsh
/// hangs with a child.
#[test]
fn every_child_is_reaped_before_the_tool_exits() {
    for scenario in [
        "serve-SIGTERM",
        "serve-SIGINT",
        "menu-eof",
        "hung-status-SIGTERM",
    ] {
        let report = temp_dir(&format!("reaped-{scenario}")).join("left");
        let output = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "serve::subreaper",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("SUBREAPER_SCENARIO", scenario)
            .env("SUBREAPER_REPORT", &report)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{scenario}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let left = std::fs::read_to_string(&report).expect("the subreaper reports");
        assert_eq!(left, "", "{scenario}: left behind by the tool:\n{left}");
    }
}

/// Not a test on its own (it does nothing without SUBREAPER_SCENARIO):
/// the process that [`every_child_is_reaped_before_the_tool_exits`] runs
/// the tool under. A child subreaper, so every process the tool leaves
/// behind, dead or alive, comes to it instead of init; it writes one line
/// per such process (`pid comm`) to SUBREAPER_REPORT.
#[test]
#[ignore = "run by every_child_is_reaped_before_the_tool_exits in a process of its own"]
fn subreaper() {
    use std::os::unix::process::ExitStatusExt;
    use std::process::Stdio;
    let Ok(scenario) = std::env::var("SUBREAPER_SCENARIO") else {
        return;
    };
    // SAFETY: prctl(2) with integer arguments, on this process only.
    assert_eq!(unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1) }, 0);
    let signal = |name: &str| match name {
        "SIGTERM" => libc::SIGTERM,
        _ => libc::SIGINT,
    };
    match scenario.split_once('-').unwrap_or((&scenario, "")) {
        ("serve", name) => {
            let mut serving = Serving::start(tool().args(["-c", &fleet_uri("fleet-small.xml")]));
            serving.wait_for("/healthz", |status, _| status == 200);
            // SAFETY: kill(2) on the child this process started.
            unsafe { libc::kill(serving.child.id() as i32, signal(name)) };
            let status = serving.child.wait().unwrap();
            assert_eq!(status.signal(), Some(signal(name)));
        }
        ("menu", _) => {
            let mut menu = tool()
                .args(["-c", &fleet_uri("fleet-small.xml")])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .spawn()
                .unwrap();
            drop(menu.stdin.take());
            assert!(menu.wait().unwrap().success());
        }
        (_, rest) => {
            let pids = temp_dir("subreaper-hung").join("pids");
            let mut status = tool()
                .args(["status", "--timeout", "60s", "--virsh"])
                .arg(support("fault-virsh"))
                .env("FAULT", "hang")
                .env("FAULT_PIDS", &pids)
                .stdout(Stdio::null())
                .spawn()
                .unwrap();
            poll(|| {
                std::fs::read_to_string(&pids)
                    .ok()
                    .filter(|t| t.ends_with('\n'))
            });
            let name = rest.trim_start_matches("status-");
            // SAFETY: kill(2) on the child this process started.
            unsafe { libc::kill(status.id() as i32, signal(name)) };
            assert_eq!(status.wait().unwrap().signal(), Some(signal(name)));
        }
    }
    // The tool is reaped; whatever else ends here was the tool's to reap.
    let mut left = String::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        // SAFETY: an all-zero siginfo_t is valid; waitid(2) fills it in.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let options = libc::WEXITED | libc::WNOHANG | libc::WNOWAIT;
        // SAFETY: waitid(2) on this process's own children.
        if unsafe { libc::waitid(libc::P_ALL, 0, &mut info, options) } == -1 {
            break; // ECHILD: none is left
        }
        // SAFETY: set by waitid for an ended child, 0 when none has ended.
        let pid = unsafe { info.si_pid() };
        if pid == 0 {
            if std::time::Instant::now() > deadline {
                left.push_str("children still running after 30 s\n");
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
            continue;
        }
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        left.push_str(&format!("{pid} {comm}"));
        // SAFETY: reaps the child waitid named.
        unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
    }
    std::fs::write(std::env::var("SUBREAPER_REPORT").unwrap(), left).unwrap();
}

/// The nice value in a `/proc/…/stat` line (field 19; the name in
/// parentheses may hold spaces).
fn nice_in_stat(stat: &str) -> i32 {
    let after_name = &stat[stat.rfind(')').expect("a stat line") + 1..];
    after_name
        .split_whitespace()
        .nth(16)
        .unwrap()
        .parse()
        .unwrap()
}

/// Scans run 10 nicer than the threads that answer scrapes (the main
/// thread accepts, and its connection threads inherit its priority), so a
/// scrape does not wait for a core behind a thousand hosts' scans.
#[test]
fn scans_run_nicer_than_the_answers() {
    let serving = Serving::start(tool().args(["-c", &fleet_uri("fleet-small.xml")]));
    serving.wait_for("/healthz", |status, _| status == 200);
    let pid = serving.child.id();
    let ours = nice_in_stat(&std::fs::read_to_string("/proc/thread-self/stat").unwrap());
    let mut niceness = std::collections::BTreeSet::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let task = task.unwrap().path();
        let (Ok(name), Ok(stat)) = (
            std::fs::read_to_string(task.join("comm")),
            std::fs::read_to_string(task.join("stat")),
        ) else {
            continue; // a thread that ended meanwhile
        };
        let role = match name.trim() {
            name if name.starts_with("scan-") => "scan",
            "publish" => "publish",
            "dismount_iso_qe" => "main",
            _ => continue,
        };
        niceness.insert((role, nice_in_stat(&stat)));
    }
    let lowered = (ours + 10).min(19);
    assert_eq!(
        niceness,
        [("main", ours), ("publish", lowered), ("scan", lowered)].into(),
        "every scan thread at the lowered priority, the main thread at ours"
    );
}
