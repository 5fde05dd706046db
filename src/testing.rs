//! Helpers shared by the unit tests: fixtures captured from real virsh, and
//! a ProbeManager wired to the scripted virsh.

use std::sync::Arc;
use std::time::Duration;

use crate::probe::{ProbeManager, ProbeOptions};
use crate::virsh::fake::FakeRunner;
use crate::virsh::{Virsh, VirshConfig};

/// A file under fixtures/, e.g. `virsh/dominfo-running.txt`.
pub fn fixture(path: &str) -> String {
    let path = format!("{}/fixtures/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The listing's `domstats`, as the scan runs it.
pub(crate) use crate::virsh::domstats_words as listing_domstats;

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
        },
    )
}
