//! Helpers shared by the unit tests: fixtures captured from real virsh, and
//! a ProbeManager wired to the scripted virsh, and the listing it answers.

use std::sync::Arc;
use std::time::Duration;

use crate::probe::{ProbeManager, ProbeOptions};
use crate::virsh::fake::FakeRunner;
use crate::virsh::{ListingFor, Virsh, VirshConfig, domstats_words};

/// A file under fixtures/, e.g. `virsh/dominfo-running.txt`.
pub fn fixture(path: &str) -> String {
    let path = format!("{}/fixtures/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The listing's `domstats`, as the scan runs it.
pub(crate) fn listing_domstats() -> Vec<&'static str> {
    domstats_words(ListingFor::Scan)
}

/// A virsh on `qemu:///fake` whose processes the fake answers.
pub fn fake_virsh(fake: &Arc<FakeRunner>) -> Virsh {
    fake_virsh_on("qemu:///fake", fake)
}

pub fn fake_virsh_on(uri: &str, fake: &Arc<FakeRunner>) -> Virsh {
    Virsh::new(
        VirshConfig {
            program: "virsh".into(),
            connect: Some(uri.into()),
            timeout: Duration::from_secs(5),
            sessions: 4,
        },
        fake.clone(),
    )
}

pub fn fake_probes(fake: &Arc<FakeRunner>, cache_ttl: Duration, os_ttl: Duration) -> ProbeManager {
    ProbeManager::new(
        fake_virsh(fake),
        ProbeOptions {
            timeout: Duration::from_secs(5),
            cache_ttl,
            os_ttl,
            jobs: 4,
            filesystems: false,
            fs_ttl: Duration::from_secs(60),
        },
    )
}

/// The UUID the fake listing gives a domain.
pub fn uuid(name: &str) -> String {
    let number = name.bytes().fold(0u64, |n, b| n * 131 + u64::from(b)) % 1_000_000_000_000;
    format!("00000000-0000-4000-8000-{number:012}")
}

/// A fleet as the listing for `purpose` shows it: `domstats`,
/// `list --uuid --name` (for a scan), `list --transient` and `uri`.
pub fn expect_listing_on(
    fake: &FakeRunner,
    purpose: ListingFor,
    uri: &str,
    domains: &[(&str, u32)],
    metrics: &str,
) {
    let blocks: String = domains
        .iter()
        .map(|(name, state)| {
            format!("Domain: '{name}'\n  state.state={state}\n  state.reason=1\n{metrics}\n")
        })
        .collect();
    let uuids: String = domains
        .iter()
        .map(|(name, _)| format!("{} {name}\n", uuid(name)))
        .collect();
    fake.expect(&domstats_words(purpose), 0, &blocks, "");
    if purpose == ListingFor::Scan {
        fake.expect(&["list", "--all", "--uuid", "--name"], 0, &uuids, "");
    }
    fake.expect(&["list", "--transient", "--name"], 0, "\n", "");
    fake.expect(&["uri"], 0, &format!("{uri}\n"), "");
}
