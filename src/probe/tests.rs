//! ProbeManager against the scripted virsh: which processes a scan starts,
//! what the cache saves, and how OS detection degrades.

use std::sync::Arc;
use std::time::Duration;

use super::values::{FsUnknown, MemorySource, OsUnknown, ReadFault};
use super::*;
use crate::virsh::DomainState;
use crate::virsh::fake::FakeRunner;

const HOUR: Duration = Duration::from_secs(3600);

use crate::testing::{expect_listing_on, fake_probes as manager, fixture, listing_domstats, uuid};

fn no_progress(_: usize, _: usize) {}

/// A fleet on QEMU's driver, as the listing batch shows it: every
/// domain's block carries its metrics.
fn expect_listing(fake: &FakeRunner, domains: &[(&str, u32)], cpu_ns: u64) {
    expect_listing_on(
        fake,
        ListingFor::Scan,
        "qemu:///fake",
        domains,
        &qemu_metrics(cpu_ns),
    );
}

/// A fleet whose `domstats` reports state only (the test driver's).
fn expect_state_only_listing(fake: &FakeRunner, uri: &str, domains: &[(&str, u32)]) {
    expect_listing_on(fake, ListingFor::Scan, uri, domains, "");
}

/// QEMU's metric keys in a `domstats` block.
fn qemu_metrics(cpu_ns: u64) -> String {
    format!(
        "  cpu.time={cpu_ns}\n  balloon.current=131072\n  balloon.maximum=262144\n  \
         balloon.unused=31072\n  vcpu.current=2\n"
    )
}

/// Domain XML without libosinfo metadata, read while the agents are asked.
fn expect_plain_xml(fake: &FakeRunner, names: &[&str]) {
    for name in names {
        let xml = format!("<domain><name>{name}</name></domain>");
        fake.expect(&["dumpxml", "--domain", name], 0, &xml, "");
    }
}

/// `dominfo` for domains whose stats lack figures, in one process.
fn expect_dominfo(fake: &FakeRunner, names: &[&str]) {
    for name in names {
        fake.expect(
            &["dominfo", "--domain", name],
            0,
            "State:          running\nCPU(s):         1\nCPU time:       7.0s\n\
             Max memory:     2048 KiB\nUsed memory:    1024 KiB\nPersistent:     yes\n",
            "",
        );
    }
}

fn expect_os(fake: &FakeRunner, name: &str, pretty: &str) {
    fake.expect(
        &["guestinfo", "--os", "--domain", name],
        0,
        &format!("os.id               : x\nos.pretty-name      : {pretty}\n"),
        "",
    );
}

/// Everything a first scan asks about one running guest, "web".
fn expect_first_scan_of_web(fake: &FakeRunner, cpu_ns: u64, pretty: &str) {
    expect_listing(fake, &[("web", 1)], cpu_ns);
    expect_os(fake, "web", pretty);
    expect_plain_xml(fake, &["web"]);
}

#[test]
fn scan_merges_stats_and_names_the_os() {
    let fake = Arc::new(FakeRunner::default());
    expect_listing(&fake, &[("web", 1), ("db", 1)], 5_000_000_000);
    expect_os(&fake, "db", "Debian GNU/Linux 12 (bookworm)");
    expect_os(&fake, "web", "Ubuntu 22.04.4 LTS");
    expect_plain_xml(&fake, &["db", "web"]);
    let rows = manager(&fake, HOUR, HOUR).scan(&no_progress).unwrap();
    fake.assert_all_used();
    assert_eq!(rows.len(), 2);
    let db = &rows[0];
    assert_eq!(db.name, "db", "sorted by name");
    assert_eq!(db.uuid.as_deref(), Some(uuid("db").as_str()));
    assert_eq!(
        db.memory_used_kib,
        Some(100_000),
        "balloon current − unused"
    );
    assert_eq!(db.memory_used_source, Some(MemorySource::Guest));
    assert_eq!(db.memory_max_kib, Some(262_144));
    assert_eq!(db.vcpus, Some(2));
    assert_eq!(db.cpu_time_ns, Some(5_000_000_000));
    assert_eq!(db.cpu_percent, None, "one sample only");
    assert_eq!(db.persistent, Some(true));
    assert_eq!(db.os, "Debian GNU/Linux 12 (bookworm)");
    assert_eq!(db.os_source, Some(OsSource::Agent));
    // listing (metrics included), one guestinfo per guest, the XML batch
    assert_eq!(fake.process_count(), 4);
}

#[test]
fn a_rescan_within_the_ttls_starts_only_the_listing() {
    let fake = Arc::new(FakeRunner::default());
    let probes = manager(&fake, HOUR, HOUR);
    expect_first_scan_of_web(&fake, 1, "Ubuntu 22.04.4 LTS");
    let first = probes.scan(&no_progress).unwrap();
    let before = fake.process_count();

    expect_listing(&fake, &[("web", 1)], 1);
    let second = probes.scan(&no_progress).unwrap();
    fake.assert_all_used();
    assert_eq!(
        fake.process_count(),
        before + 1,
        "no metric or agent process"
    );
    assert_eq!(fake.processes().last().unwrap()[0], listing_domstats());
    let without_cpu_percent = |rows: &[DomainStatus]| {
        let mut rows = rows.to_vec();
        rows.iter_mut().for_each(|row| row.cpu_percent = None);
        rows
    };
    assert_eq!(without_cpu_percent(&first), without_cpu_percent(&second));
    assert_eq!(
        second[0].cpu_percent,
        Some(0.0),
        "the listing's figures are fresh"
    );
}

#[test]
fn a_state_change_drops_the_cached_entries() {
    let fake = Arc::new(FakeRunner::default());
    let probes = manager(&fake, HOUR, HOUR);
    expect_first_scan_of_web(&fake, 1, "Ubuntu 22.04.4 LTS");
    probes.scan(&no_progress).unwrap();

    // Now paused: figures and OS are asked again (and the agent is not).
    expect_listing(&fake, &[("web", 3)], 2);
    expect_plain_xml(&fake, &["web"]);
    let rows = probes.scan(&no_progress).unwrap();
    fake.assert_all_used();
    assert_eq!(rows[0].state, DomainState::Paused);
    assert_eq!(rows[0].os, "unknown");
    assert_eq!(rows[0].os_error.as_deref(), Some("domain is paused"));
    assert_eq!(
        rows[0].os_unknown,
        Some(OsUnknown::Inactive(DomainState::Paused))
    );
}

#[test]
fn every_scan_takes_qemu_figures_from_the_listing_and_gives_cpu_percent() {
    let fake = Arc::new(FakeRunner::default());
    let probes = manager(&fake, HOUR, HOUR);
    expect_first_scan_of_web(&fake, 1_000_000_000, "Ubuntu");
    assert_eq!(probes.scan(&no_progress).unwrap()[0].cpu_percent, None);

    expect_listing(&fake, &[("web", 1)], 1_000_000_000 + 1);
    let rows = probes.scan(&no_progress).unwrap();
    fake.assert_all_used();
    assert_eq!(rows[0].cpu_time_ns, Some(1_000_000_001), "within the TTL");
    let percent = rows[0].cpu_percent.expect("second sample gives CPU %");
    assert!((0.0..=100.0).contains(&percent), "{percent}");
    assert_eq!(rows[0].os, "Ubuntu", "the OS stays cached for its own TTL");
}

#[test]
fn stats_without_figures_get_dominfo_cached_for_the_ttl_unless_rescanned() {
    let fake = Arc::new(FakeRunner::default());
    let probes = manager(&fake, HOUR, HOUR);
    let uri = "test:///fake";
    // The test driver: no agent support, and domstats with state only.
    expect_state_only_listing(&fake, uri, &[("a", 5), ("b", 5)]);
    expect_dominfo(&fake, &["a", "b"]);
    expect_plain_xml(&fake, &["a", "b"]);
    let rows = probes.scan(&no_progress).unwrap();
    assert_eq!(rows[0].vcpus, Some(1));
    assert_eq!(rows[0].memory_max_kib, Some(2048));
    assert_eq!(rows[0].memory_used_kib, None, "shut off: nothing used");
    assert_eq!(fake.process_count(), 3, "listing, dominfo batch, XML batch");

    expect_state_only_listing(&fake, uri, &[("a", 5), ("b", 5)]);
    assert_eq!(probes.scan(&no_progress).unwrap(), rows, "all cached");
    assert_eq!(fake.process_count(), 4, "the listing only");

    expect_state_only_listing(&fake, uri, &[("a", 5), ("b", 5)]);
    expect_dominfo(&fake, &["a", "b"]);
    probes.rescan(&no_progress).unwrap();
    fake.assert_all_used();
    assert_eq!(fake.process_count(), 6, "a rescan reads the figures again");
}

#[test]
fn a_driver_without_agent_support_is_asked_once() {
    let fake = Arc::new(FakeRunner::default());
    let names = ["a", "b", "c", "d", "e", "f"];
    // Not QEMU's driver: the first guest is asked alone before the rest.
    expect_state_only_listing(&fake, "xen:///system", &names.map(|n| (n, 1)));
    expect_dominfo(&fake, &names);
    fake.expect(
        &["guestinfo", "--os", "--domain", "a"],
        1,
        "",
        "error: this function is not supported by the connection driver: virDomainGetGuestInfo\n",
    );
    expect_plain_xml(&fake, &names);
    let rows = manager(&fake, HOUR, HOUR).scan(&no_progress).unwrap();
    fake.assert_all_used();
    let guestinfo_calls = fake
        .processes()
        .iter()
        .filter(|p| p[0][0] == "guestinfo")
        .count();
    assert_eq!(guestinfo_calls, 1);
    assert!(rows.iter().all(|r| r.os_error.as_deref()
        == Some("the connection's driver does not support guest agent calls")));
}

#[test]
fn refused_osinfo_falls_back_to_os_release_through_the_agent() {
    let fake = Arc::new(FakeRunner::default());
    expect_listing(&fake, &[("old", 1)], 1);
    expect_plain_xml(&fake, &["old"]);
    fake.expect(
        &["guestinfo", "--os", "--domain", "old"],
        1,
        "",
        "error: internal error: unable to execute QEMU agent command 'guest-get-osinfo': \
         Command guest-get-osinfo has been disabled\n",
    );
    fake.expect(
        &[
            "qemu-agent-command",
            "--domain",
            "old",
            r#"{"arguments":{"mode":"r","path":"/etc/os-release"},"execute":"guest-file-open"}"#,
        ],
        1,
        "",
        "error: internal error: unable to execute QEMU agent command 'guest-file-open': \
         failed to open file '/etc/os-release' (mode: 'r'): No such file or directory\n",
    );
    fake.expect(
        &["qemu-agent-command", "--domain", "old",
          r#"{"arguments":{"mode":"r","path":"/usr/lib/os-release"},"execute":"guest-file-open"}"#],
        0,
        "{\"return\":7}\n",
        "",
    );
    let reply = fixture("virsh/agent-file-read-os-release.json");
    fake.expect(
        &[
            "qemu-agent-command",
            "--domain",
            "old",
            r#"{"arguments":{"count":65536,"handle":7},"execute":"guest-file-read"}"#,
        ],
        0,
        &reply,
        "",
    );
    fake.expect(
        &[
            "qemu-agent-command",
            "--domain",
            "old",
            r#"{"arguments":{"handle":7},"execute":"guest-file-close"}"#,
        ],
        0,
        "{\"return\":{}}\n",
        "",
    );
    let rows = manager(&fake, HOUR, HOUR).scan(&no_progress).unwrap();
    fake.assert_all_used();
    assert_eq!(rows[0].os, "Dismount Lab Linux 1.0");
    assert_eq!(rows[0].os_source, Some(OsSource::AgentFile));
}

#[test]
fn no_agent_falls_back_to_libosinfo_metadata_then_unknown() {
    let fake = Arc::new(FakeRunner::default());
    expect_listing(&fake, &[("meta", 1), ("bare", 1), ("off", 5)], 1);
    for name in ["bare", "meta"] {
        fake.expect(
            &["guestinfo", "--os", "--domain", name],
            1,
            "",
            "error: argument unsupported: QEMU guest agent is not configured\n",
        );
    }
    // As virsh prints it, the domain's name in it: the documents of one
    // batch are told apart by their names.
    let with_metadata = |name: &str| {
        format!(
            r#"<domain><name>{name}</name><metadata><libosinfo:libosinfo xmlns:libosinfo="http://libosinfo.org/xmlns/libvirt/domain/1.0"><libosinfo:os id="http://ubuntu.com/ubuntu/22.04"/></libosinfo:libosinfo></metadata></domain>"#
        )
    };
    fake.expect(
        &["dumpxml", "--domain", "bare"],
        0,
        "<domain><name>bare</name></domain>",
        "",
    );
    fake.expect(
        &["dumpxml", "--domain", "meta"],
        0,
        &with_metadata("meta"),
        "",
    );
    fake.expect(
        &["dumpxml", "--domain", "off"],
        0,
        &with_metadata("off"),
        "",
    );
    let rows = manager(&fake, HOUR, HOUR).scan(&no_progress).unwrap();
    fake.assert_all_used();
    let by_name = |n: &str| rows.iter().find(|r| r.name == n).unwrap();
    assert_eq!(by_name("meta").os, "Ubuntu 22.04");
    assert_eq!(by_name("meta").os_source, Some(OsSource::Metadata));
    assert_eq!(
        by_name("off").os_source,
        Some(OsSource::Metadata),
        "works when shut off"
    );
    assert_eq!(by_name("bare").os, "unknown");
    assert_eq!(
        by_name("bare").os_error.as_deref(),
        Some("no guest agent channel")
    );
    assert_eq!(by_name("bare").os_unknown, Some(OsUnknown::NoAgent));
    let dumpxml_processes = fake
        .processes()
        .iter()
        .filter(|p| p[0][0] == "dumpxml")
        .count();
    assert_eq!(dumpxml_processes, 1, "one batch for all three");
}

#[test]
fn hung_agents_are_reported_and_do_not_block_the_others() {
    let fake = Arc::new(FakeRunner::default());
    let names = ["h1", "h2", "h3", "ok"];
    expect_listing(&fake, &names.map(|n| (n, 1)), 1);
    for name in ["h1", "h2", "h3"] {
        fake.expect_hang(&["guestinfo", "--os", "--domain", name]);
    }
    expect_os(&fake, "ok", "Fedora Linux 40");
    expect_plain_xml(&fake, &names);
    let seen = std::sync::Mutex::new(Vec::new());
    let rows = manager(&fake, HOUR, HOUR)
        .scan(&|done, total| seen.lock().unwrap().push((done, total)))
        .unwrap();
    fake.assert_all_used();
    for row in &rows[..3] {
        // With the call that timed out, the error's source.
        let error = row.os_error.as_deref().unwrap_or_default();
        assert!(
            error.starts_with(&format!(
                "guest agent timed out: `virsh -c qemu:///fake guestinfo --os --domain {}` \
                 did not finish within",
                row.name
            )),
            "{error}"
        );
    }
    assert_eq!(rows[3].os, "Fedora Linux 40");
    let mut seen = seen.into_inner().unwrap();
    seen.sort_unstable();
    assert_eq!(
        seen,
        [(1, 4), (2, 4), (3, 4), (4, 4)],
        "progress counts every probe"
    );
}

#[test]
fn a_failed_listing_names_the_uri() {
    let fake = Arc::new(FakeRunner::default());
    fake.refuse_connection("error: failed to connect to the hypervisor\n");
    let error = manager(&fake, HOUR, HOUR).scan(&no_progress).unwrap_err();
    let message = format!("{error:#}");
    assert!(
        message.starts_with("cannot list domains on qemu:///fake: "),
        "{message}"
    );
    assert!(
        message.contains("failed to connect to the hypervisor"),
        "{message}"
    );
}

#[test]
fn a_domain_gone_since_the_listing_leaves_the_table() {
    let fake = Arc::new(FakeRunner::default());
    expect_state_only_listing(&fake, "test:///fake", &[("gone", 5), ("kept", 5)]);
    fake.expect(
        &["dominfo", "--domain", "gone"],
        1,
        "",
        "error: failed to get domain 'gone'\n",
    );
    expect_dominfo(&fake, &["kept"]);
    fake.expect(
        &["domuuid", "--domain", "gone"],
        1,
        "",
        "error: failed to get domain 'gone'\n",
    );
    expect_plain_xml(&fake, &["gone", "kept"]);
    let rows = manager(&fake, HOUR, HOUR).scan(&no_progress).unwrap();
    fake.assert_all_used();
    let names: Vec<&str> = rows.iter().map(|row| row.name.as_str()).collect();
    assert_eq!(names, ["kept"]);
    assert_eq!(rows[0].vcpus, Some(1), "its dominfo still counts");
}

/// A figures read past its deadline, or one virsh refuses for a domain
/// that is still there, says which in `metrics_fault` (serve's `reason`),
/// beside its message.
#[test]
fn a_figures_read_that_hangs_or_fails_names_its_fault() {
    let fake = Arc::new(FakeRunner::default());
    expect_state_only_listing(&fake, "test:///fake", &[("a", 5)]);
    fake.expect_hang(&["dominfo", "--domain", "a"]);
    expect_plain_xml(&fake, &["a"]);
    let rows = manager(&fake, HOUR, HOUR).scan(&no_progress).unwrap();
    assert_eq!(rows[0].metrics_fault, Some(ReadFault::Timeout));
    assert!(rows[0].metrics_error.is_some());

    let fake = Arc::new(FakeRunner::default());
    expect_state_only_listing(&fake, "test:///fake", &[("a", 5)]);
    fake.expect(
        &["dominfo", "--domain", "a"],
        1,
        "",
        "error: internal error: the driver said no\n",
    );
    // Still there: its figures are blank, and say so (they used to
    // be blank without a word).
    fake.expect(&["domuuid", "--domain", "a"], 0, &uuid("a"), "");
    expect_plain_xml(&fake, &["a"]);
    let rows = manager(&fake, HOUR, HOUR).scan(&no_progress).unwrap();
    fake.assert_all_used();
    assert_eq!(rows[0].metrics_fault, Some(ReadFault::Failed));
    assert_eq!(
        rows[0].metrics_error.as_deref(),
        Some("cannot read its figures: `dominfo` failed for it")
    );
}

/// A read whose virsh cannot be started keeps the cause in its row: the
/// rows used to say `could not run `…`` and drop the "Permission denied"
/// under it (the error's source).
#[test]
fn a_read_that_cannot_start_virsh_keeps_the_cause_in_its_row() {
    let fake = Arc::new(FakeRunner::default());
    expect_state_only_listing(&fake, "test:///fake", &[("a", 5)]);
    fake.expect_spawn_failure(&["dominfo", "--domain", "a"]);
    fake.expect_spawn_failure(&["dumpxml", "--domain", "a"]);
    let rows = manager(&fake, HOUR, HOUR).scan(&no_progress).unwrap();
    fake.assert_all_used();
    for error in [&rows[0].metrics_error, &rows[0].os_error] {
        let error = error.as_deref().unwrap_or_default();
        assert!(error.contains("could not run `"), "{error}");
        assert!(
            error.ends_with(": Permission denied (os error 13)"),
            "{error}"
        );
    }

    let fake = Arc::new(FakeRunner::default());
    expect_listing(&fake, &[("web", 1)], 1);
    fake.expect_spawn_failure(&["guestinfo", "--os", "--domain", "web"]);
    expect_plain_xml(&fake, &["web"]);
    let rows = manager(&fake, HOUR, HOUR).scan(&no_progress).unwrap();
    fake.assert_all_used();
    let error = rows[0].os_error.as_deref().unwrap_or_default();
    assert!(
        error.ends_with(": Permission denied (os error 13)"),
        "{error}"
    );
}

/// The table's reason for an unknown OS is a few words from a fixed list,
/// whatever the error says: a cell never grows with an error's text (a
/// guest's, virsh's), and the widest is the widest state's.
#[test]
fn every_reason_for_an_unknown_os_is_a_few_words() {
    let states = [
        DomainState::NoState,
        DomainState::Paused,
        DomainState::InShutdown,
        DomainState::ShutOff,
        DomainState::Crashed,
        DomainState::PmSuspended,
    ];
    let reasons = states.into_iter().map(OsUnknown::Inactive).chain([
        OsUnknown::NoAgent,
        OsUnknown::AgentNotConnected,
        OsUnknown::Stopped,
        OsUnknown::NoAgentSupport,
        OsUnknown::AgentTimedOut,
        OsUnknown::AgentNotAsked,
        OsUnknown::AgentRefused,
        OsUnknown::AgentGaveNoOs,
        OsUnknown::AgentBadReply,
        OsUnknown::VirshFailed,
        OsUnknown::XmlUnreadable,
    ]);
    for why in reasons {
        let words = why.words();
        assert!(words.len() <= 24, "{why:?}: {words}");
        assert!(words.is_ascii() && !words.contains(['`', ':']), "{words}");
    }
    let refused = crate::agent::AgentError::Refused("x".repeat(10_000));
    assert_eq!(OsUnknown::of(&refused).words(), "agent refused");
    assert_eq!(
        OsUnknown::Inactive(DomainState::ShutOff).words(),
        "shut off, no metadata"
    );
}

/// A manager that asks for filesystems, cached for `fs_ttl`.
fn disks_manager(fake: &Arc<FakeRunner>, fs_ttl: Duration) -> ProbeManager {
    ProbeManager::new(
        crate::testing::fake_virsh(fake),
        ProbeOptions {
            timeout: Duration::from_secs(5),
            cache_ttl: HOUR,
            os_ttl: HOUR,
            jobs: 4,
            filesystems: true,
            fs_ttl,
        },
    )
}

fn expect_filesystems(fake: &FakeRunner, name: &str) {
    fake.expect(
        &["guestinfo", "--filesystem", "--domain", name],
        0,
        &fixture("virsh/guestinfo-filesystem-lab.txt"),
        "",
    );
}

/// The filesystems ride on the OS probe's round and are cached for their
/// own TTL: within it a rescan asks no agent at all; with the OS cached
/// and the filesystems' TTL past (zero stands in for the time gone), only
/// `guestinfo --filesystem` goes out.
#[test]
fn filesystems_are_cached_for_their_own_ttl() {
    for (fs_ttl, asked_again) in [(HOUR, false), (Duration::ZERO, true)] {
        let fake = Arc::new(FakeRunner::default());
        let probes = disks_manager(&fake, fs_ttl);
        expect_first_scan_of_web(&fake, 1, "Ubuntu");
        expect_filesystems(&fake, "web");
        let rows = probes.scan(&no_progress).unwrap();
        let fs = rows[0].disks.as_ref().expect("asked for");
        assert_eq!(fs.usage(), Some((1_067_008, 8_121_344)));

        expect_listing(&fake, &[("web", 1)], 2);
        if asked_again {
            expect_filesystems(&fake, "web");
        }
        let again = probes.scan(&no_progress).unwrap();
        fake.assert_all_used();
        assert_eq!(again[0].disks, rows[0].disks);
        assert_eq!(again[0].os, "Ubuntu");
    }
}

/// A refused guest-get-fsinfo (the lab's captured refusal) is a reason,
/// `blocked`; a shut-off domain's agent is not asked: `not_running`.
#[test]
fn a_refused_or_unasked_agent_is_a_reason() {
    let fake = Arc::new(FakeRunner::default());
    let probes = disks_manager(&fake, HOUR);
    expect_listing(&fake, &[("web", 1), ("off", 5)], 1);
    expect_os(&fake, "web", "Ubuntu");
    expect_plain_xml(&fake, &["web", "off"]);
    fake.expect(
        &["guestinfo", "--filesystem", "--domain", "web"],
        1,
        "",
        &fixture("virsh/guestinfo-filesystem-blocked-stderr.txt"),
    );
    let rows = probes.scan(&no_progress).unwrap();
    fake.assert_all_used();
    let reason = |row: &DomainStatus| {
        let fs = row.disks.as_ref().unwrap();
        (fs.filesystems.is_none(), fs.fs_unknown)
    };
    assert_eq!(reason(&rows[1]), (true, Some(FsUnknown::Blocked)));
    assert_eq!(reason(&rows[0]), (true, Some(FsUnknown::Inactive)));
}

/// A guest whose agent hung on the OS probe is not asked for its
/// filesystems while that is cached (`--os-ttl`), though the filesystems'
/// own TTL has passed (zero here): libvirt would hold the call for its own
/// 5 s and the guest's session with it, every scan.
#[test]
fn a_hung_agent_is_not_asked_for_filesystems_while_its_os_is_cached() {
    let fake = Arc::new(FakeRunner::default());
    let probes = disks_manager(&fake, Duration::ZERO);
    expect_listing(&fake, &[("web", 1)], 1);
    fake.expect_hang(&["guestinfo", "--os", "--domain", "web"]);
    expect_plain_xml(&fake, &["web"]);
    let rows = probes.scan(&no_progress).unwrap();
    let timed_out = |rows: &[DomainStatus]| {
        let fs = rows[0].disks.as_ref().unwrap();
        (fs.filesystems.is_none(), fs.fs_unknown)
    };
    assert_eq!(timed_out(&rows), (true, Some(FsUnknown::TimedOut)));

    expect_listing(&fake, &[("web", 1)], 2);
    let rows = probes.scan(&no_progress).unwrap();
    fake.assert_all_used();
    assert_eq!(timed_out(&rows), (true, Some(FsUnknown::TimedOut)));
}

/// Why the filesystems are unknown, from the agent's error: a refusal
/// that names a disabled command is `--block-rpcs` (the lab's words), any
/// other refusal an agent without guest-get-fsinfo, and a virsh that knows
/// no `guestinfo` or no `--filesystem` is too old as well.
#[test]
fn filesystem_reasons_from_agent_errors() {
    use crate::agent::AgentError;
    use std::os::unix::process::ExitStatusExt;
    let virsh_failed = |stderr: &str| {
        AgentError::Virsh(crate::virsh::VirshError::Failed {
            command: "virsh guestinfo".into(),
            status: std::process::ExitStatus::from_raw(1 << 8),
            stderr: stderr.into(),
        })
    };
    let blocked = fixture("virsh/guestinfo-filesystem-blocked-stderr.txt");
    for (error, why) in [
        (
            AgentError::Refused(blocked.trim().to_owned()),
            FsUnknown::Blocked,
        ),
        (
            AgentError::Refused(
                "internal error: unable to execute QEMU agent command 'guest-get-fsinfo': \
                 The command guest-get-fsinfo has not been found"
                    .into(),
            ),
            FsUnknown::TooOld,
        ),
        (
            virsh_failed("error: command 'guestinfo' doesn't support option --filesystem\n"),
            FsUnknown::TooOld,
        ),
        (
            virsh_failed("error: unknown command: 'guestinfo'\n"),
            FsUnknown::TooOld,
        ),
        (
            virsh_failed("error: End of file while reading data\n"),
            FsUnknown::Failed,
        ),
        (AgentError::NoChannel, FsUnknown::NoAgent),
        (AgentError::Deadline, FsUnknown::NotAsked),
    ] {
        assert_eq!(FsUnknown::of(&error), why, "{error}");
    }
}

/// `boot-iso`'s marker in a running domain's live XML is its row's
/// `booted_from_iso`, kept with the OS report; a shut-off domain's row
/// never says so, whatever its XML holds.
#[test]
fn a_start_from_an_iso_is_seen_in_the_row() {
    let fake = Arc::new(FakeRunner::default());
    expect_listing(&fake, &[("iso", 1), ("off", 5)], 1);
    fake.expect(
        &["guestinfo", "--os", "--domain", "iso"],
        1,
        "",
        "error: argument unsupported: QEMU guest agent is not configured\n",
    );
    let marked = |name: &str| {
        format!(
            "<domain><name>{name}</name><metadata><dismount:boot-iso xmlns:dismount='{}' \
             target='sda'/></metadata></domain>",
            crate::virsh::metadata::BOOT_NAMESPACE
        )
    };
    fake.expect(&["dumpxml", "--domain", "iso"], 0, &marked("iso"), "");
    fake.expect(&["dumpxml", "--domain", "off"], 0, &marked("off"), "");
    let probes = manager(&fake, HOUR, HOUR);
    let rows = probes.scan(&no_progress).unwrap();
    fake.assert_all_used();
    let by_name = |n: &str| rows.iter().find(|r| r.name == n).unwrap().clone();
    assert_eq!(by_name("iso").booted_from_iso.as_deref(), Some("sda"));
    assert_eq!(by_name("off").booted_from_iso, None);
}

/// A VM restarted between two scans (the menu's `boot-iso` shuts a
/// running VM down and starts it from the ISO) is running in both: once
/// forgotten, the next scan reads its XML again and sees the marker
/// (before, the first scan's OS report, without it, stood for the TTL).
#[test]
fn a_forgotten_domain_is_read_whole_at_the_next_scan() {
    let fake = Arc::new(FakeRunner::default());
    let no_agent = "error: argument unsupported: QEMU guest agent is not configured\n";
    let marked = format!(
        "<domain><name>iso</name><metadata><dismount:boot-iso xmlns:dismount='{}' \
         target='sda'/></metadata></domain>",
        crate::virsh::metadata::BOOT_NAMESPACE
    );
    expect_listing(&fake, &[("iso", 1)], 1);
    fake.expect(&["guestinfo", "--os", "--domain", "iso"], 1, "", no_agent);
    fake.expect(
        &["dumpxml", "--domain", "iso"],
        0,
        "<domain><name>iso</name></domain>",
        "",
    );
    let probes = manager(&fake, HOUR, HOUR);
    let rows = probes.scan(&no_progress).unwrap();
    assert_eq!(rows[0].booted_from_iso, None);
    probes.forget("iso");
    expect_listing(&fake, &[("iso", 1)], 1);
    fake.expect(&["guestinfo", "--os", "--domain", "iso"], 1, "", no_agent);
    fake.expect(&["dumpxml", "--domain", "iso"], 0, &marked, "");
    let rows = probes.scan(&no_progress).unwrap();
    fake.assert_all_used();
    assert_eq!(rows[0].booted_from_iso.as_deref(), Some("sda"));
}
