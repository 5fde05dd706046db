//! ProbeManager against a scripted runner: what it asks virsh, and how it
//! merges the answers.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::virsh::runner::fake::FakeRunner;
use crate::virsh::{Virsh, VirshConfig};

fn manager(fake: &Arc<FakeRunner>, cache_ttl: Duration) -> ProbeManager {
    let virsh = Virsh::new(
        VirshConfig {
            program: "virsh".into(),
            connect: Some("test:///fake".into()),
            timeout: Duration::from_secs(5),
        },
        fake.clone(),
    );
    ProbeManager::new(virsh, ProbeOptions { cache_ttl, jobs: 4 })
}
