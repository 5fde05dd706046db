//! Many hosts at once: a ProbeManager per libvirt connection, scanned side
//! by side, each host's failure kept to itself.

use std::sync::Arc;
use std::thread;

use anyhow::Result;

use crate::probe::{DomainStatus, Figures, ProbeManager, ProbeOptions};
use crate::virsh::{Runner, SessionRunner, Uri, Virsh, VirshConfig};

/// One libvirt connection.
pub struct Host {
    pub probes: Arc<ProbeManager>,
}

impl Host {
    /// The URI as shown to people and in `uri` keys and labels, without
    /// user info or query string (a `command=` or `keyfile=` parameter is
    /// the admin's business): `qemu+ssh://kvm1/system`.
    pub fn uri(&self) -> String {
        self.probes.uri().map_or_else(
            || "virsh's default URI".to_owned(),
            |uri| Uri::parse(&uri).public(),
        )
    }

    pub fn virsh(&self) -> &Virsh {
        self.probes.virsh()
    }
}

/// One host's part of a scan.
pub struct HostScan<T> {
    pub uri: String,
    pub result: Result<T>,
}

/// The hosts of one run, in the order they were given.
pub struct Fleet {
    pub hosts: Vec<Host>,
}

impl Fleet {
    /// A host for each connection (`None`: virsh's default), each with
    /// `sessions` virsh sessions (by default the smaller of `--jobs` and
    /// 4, one on the test driver) from a runner of its own.
    pub fn new(
        connections: &[Option<String>],
        virsh: &VirshConfig,
        probe: &ProbeOptions,
        sessions: Option<usize>,
    ) -> Self {
        let hosts = connections
            .iter()
            .map(|connect| {
                let config = VirshConfig {
                    connect: connect.clone(),
                    sessions: sessions
                        .unwrap_or_else(|| default_sessions(connect.as_deref(), probe.jobs)),
                    ..virsh.clone()
                };
                let runner: Arc<dyn Runner> = Arc::new(SessionRunner::new(config.sessions));
                Host {
                    probes: Arc::new(ProbeManager::new(Virsh::new(config, runner), probe.clone())),
                }
            })
            .collect();
        Fleet { hosts }
    }

    pub fn is_single(&self) -> bool {
        self.hosts.len() == 1
    }

    /// Runs `job` on every host at once; results in the hosts' order.
    pub fn each<T: Send>(&self, job: impl Fn(&Host) -> Result<T> + Sync) -> Vec<HostScan<T>> {
        thread::scope(|scope| {
            let jobs: Vec<_> = self
                .hosts
                .iter()
                .map(|host| scope.spawn(|| job(host)))
                .collect();
            jobs.into_iter()
                .zip(&self.hosts)
                .map(|(job, host)| HostScan {
                    result: job
                        .join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
                    uri: host.uri(),
                })
                .collect()
        })
    }

    /// Every host's VM table, scanned side by side.
    pub fn scan(&self, figures: Figures) -> Vec<HostScan<Vec<DomainStatus>>> {
        self.each(|host| host.probes.scan_with(figures, &|_, _| {}))
    }
}

/// How many long-lived virsh processes (over ssh, connections) a host gets
/// unless `--sessions` says: parallel agent probes share them.
const SESSIONS_PER_HOST: usize = 4;

/// The test driver lives inside virsh itself: a second session would only
/// parse its node file again (0.15 s of CPU for 1000 domains).
fn default_sessions(connect: Option<&str>, jobs: usize) -> usize {
    match connect {
        Some(uri) if Uri::parse(uri).driver() == "test" => 1,
        _ => jobs.clamp(1, SESSIONS_PER_HOST),
    }
}
