//! Many hosts at once: a ProbeManager per libvirt connection, scanned side
//! by side within one budget of virsh sessions, each host's failure kept
//! to itself.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;

use crate::probe::{DomainStatus, Figures, ProbeManager, ProbeOptions};
use crate::virsh::{Budget, Runner, SessionRunner, Uri, Virsh, VirshConfig};

/// One libvirt connection.
pub struct Host {
    pub probes: Arc<ProbeManager>,
    /// What the fleet calls it (see [`host_labels`]); `None` for virsh's
    /// default connection, the only host of its run, whose URI is known
    /// from its first listing on.
    pub label: Option<String>,
}

impl Host {
    /// The host as shown to people and in `uri` keys and labels: its
    /// public URI, without user info or query string (a `command=` or
    /// `keyfile=` parameter is the admin's business), told apart from the
    /// other hosts of the run: `qemu+ssh://kvm1/system`.
    pub fn uri(&self) -> String {
        self.label.clone().unwrap_or_else(|| {
            self.probes.uri().map_or_else(
                || "virsh's default URI".to_owned(),
                |uri| Uri::parse(&uri).public(),
            )
        })
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
    /// The places of the budget (`--max-connections`): the virsh sessions
    /// open at once across the hosts, and the most hosts worked on at once.
    max_connections: usize,
}

/// A host being worked on (see [`Runner::begin_work`]): when it drops,
/// in a fleet of more hosts than places, the host's sessions end, so that
/// the hosts waiting for a place get theirs at once.
pub struct Working<'a> {
    host: &'a Host,
    close: bool,
}

impl Drop for Working<'_> {
    fn drop(&mut self) {
        self.host.virsh().runner().end_work(self.close);
    }
}

impl Fleet {
    /// A host for each connection (`None`: virsh's default), each with
    /// `sessions` virsh sessions (by default the smaller of `--jobs` and
    /// 4, one on the test driver) from a runner of its own, all of them
    /// sharing a budget of `max_connections` sessions.
    pub fn new(
        connections: &[Option<String>],
        virsh: &VirshConfig,
        probe: &ProbeOptions,
        sessions: Option<usize>,
        max_connections: usize,
    ) -> Self {
        let budget = Budget::new(max_connections);
        let uris: Vec<&str> = connections.iter().flatten().map(String::as_str).collect();
        let mut labels = host_labels(&uris).into_iter();
        let hosts = connections
            .iter()
            .map(|connect| {
                let config = VirshConfig {
                    connect: connect.clone(),
                    sessions: sessions
                        .unwrap_or_else(|| default_sessions(connect.as_deref(), probe.jobs)),
                    ..virsh.clone()
                };
                let runner: Arc<dyn Runner> =
                    Arc::new(SessionRunner::new(config.sessions, Arc::clone(&budget)));
                Host {
                    probes: Arc::new(ProbeManager::new(Virsh::new(config, runner), probe.clone())),
                    label: connect.as_ref().and_then(|_| labels.next()),
                }
            })
            .collect();
        Fleet {
            hosts,
            max_connections: budget.capacity(),
        }
    }

    /// A fleet of hosts built elsewhere (tests: on fake runners).
    #[cfg(test)]
    pub fn of(hosts: Vec<Host>) -> Self {
        Fleet {
            hosts,
            max_connections: 16,
        }
    }

    /// How many hosts are worked on at once: the budget's places, or
    /// fewer hosts.
    pub fn workers(&self) -> usize {
        self.hosts.len().min(self.max_connections).max(1)
    }

    pub fn is_single(&self) -> bool {
        self.hosts.len() == 1
    }

    /// Marks `host` as worked on until the guard drops.
    pub fn working<'a>(&self, host: &'a Host) -> Working<'a> {
        host.virsh().runner().begin_work();
        Working {
            host,
            close: self.hosts.len() > self.max_connections,
        }
    }

    /// Runs `job` on every host, as many side by side as the budget has
    /// places; results in the hosts' order.
    pub fn each<T: Send>(&self, job: impl Fn(&Host) -> Result<T> + Sync) -> Vec<HostScan<T>> {
        self.each_with(job, |_| {})
    }

    /// [`Fleet::each`], calling `on_done` with each host's result as soon
    /// as that host is done (its place given back), in the order they end.
    pub fn each_with<T: Send>(
        &self,
        job: impl Fn(&Host) -> Result<T> + Sync,
        on_done: impl Fn(&Result<T>) + Sync,
    ) -> Vec<HostScan<T>> {
        crate::workers::bounded(&self.hosts, self.workers(), Duration::ZERO, |host| {
            let result = {
                let _working = self.working(host);
                job(host)
            };
            on_done(&result);
            HostScan {
                result,
                uri: host.uri(),
            }
        })
    }

    /// Every host's VM table, scanned side by side.
    pub fn scan(&self, figures: Figures) -> Vec<HostScan<Vec<DomainStatus>>> {
        self.each(|host| host.probes.scan_with(figures, &|_, _| {}))
    }
}

/// A label for each host of a run (distinct URIs, in order), distinct
/// from the others: its public URI; where several hosts share that, with
/// their user names (`qemu+ssh://root@kvm1/system` and
/// `qemu+ssh://admin@kvm1/system`); where they still do, from the second
/// on, `#2`, `#3`, … in the order given. Never the query string: it may
/// name key files.
fn host_labels(uris: &[&str]) -> Vec<String> {
    let parsed: Vec<Uri> = uris.iter().map(|uri| Uri::parse(uri)).collect();
    let public: Vec<String> = parsed.iter().map(Uri::public).collect();
    let mut taken = HashSet::new();
    parsed
        .iter()
        .zip(&public)
        .map(|(uri, label)| {
            let shared = public.iter().filter(|other| *other == label).count() > 1;
            let base = if shared {
                uri.public_with_user()
            } else {
                label.clone()
            };
            let mut label = base.clone();
            for number in 2.. {
                if taken.insert(label.clone()) {
                    break;
                }
                label = format!("{base}#{number}");
            }
            label
        })
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_public_uris_told_apart_only_where_they_clash() {
        assert_eq!(
            host_labels(&[
                "qemu+ssh://root@kvm1/system?keyfile=/k",
                "qemu+ssh://kvm2/system",
            ]),
            ["qemu+ssh://kvm1/system", "qemu+ssh://kvm2/system"]
        );
        // Only the user tells them apart; a password never shows.
        assert_eq!(
            host_labels(&[
                "qemu+ssh://root@kvm1/system",
                "qemu+ssh://admin:secret@kvm1/system",
                "qemu+ssh://kvm2/system",
            ]),
            [
                "qemu+ssh://root@kvm1/system",
                "qemu+ssh://admin@kvm1/system",
                "qemu+ssh://kvm2/system"
            ]
        );
        // Only the query (or the password): numbered, without its text.
        assert_eq!(
            host_labels(&[
                "test:///f.xml",
                "test:///f.xml?keyfile=/secret",
                "test:///f.xml?x=1",
            ]),
            ["test:///f.xml", "test:///f.xml#2", "test:///f.xml#3"]
        );
        assert_eq!(
            host_labels(&["qemu+ssh://u:a@h/system", "qemu+ssh://u:b@h/system"]),
            ["qemu+ssh://u@h/system", "qemu+ssh://u@h/system#2"]
        );
        // Labels stay distinct next to a URI that looks numbered.
        assert_eq!(
            host_labels(&["alias#2", "alias", "alias?x"]),
            ["alias#2", "alias", "alias#3"]
        );
    }
}
