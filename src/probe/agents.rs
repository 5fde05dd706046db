//! The guest agents of one scan, asked for the OS and the filesystems: one
//! guest per session at a time, all within one deadline, a driver that
//! refuses them asked once.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::values::{FsReport, FsUnknown, OsReport, OsSource, OsUnknown, ProbeOptions, Progress};
use crate::agent::{self, AgentError};
use crate::virsh::{Listing, Virsh};

/// The connection's driver, as far as agents go: QEMU's answers agent
/// calls; another may refuse them all (libvirt's test driver does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Driver {
    Qemu,
    Other,
}

impl Driver {
    pub fn of(listing: &Listing) -> Self {
        match listing.driver() {
            Some("qemu") => Driver::Qemu,
            _ => Driver::Other,
        }
    }
}

/// What to ask one running guest's agent.
pub(super) struct Ask<'a> {
    pub target: &'a str,
    pub os: bool,
    pub fs: bool,
}

/// One guest's answers, each where it was asked.
pub(super) struct Answer {
    pub os: Option<OsReport>,
    pub fs: Option<FsReport>,
}

/// Asks guest agents for the OS and the filesystems.
#[derive(Default)]
pub(super) struct Agents {
    /// Set once the connection's driver refuses agent calls altogether,
    /// so that no later domain, in this scan or the next, is asked.
    unsupported: AtomicBool,
}

impl Agents {
    /// Asks the agents of `asks`, at most `jobs` at a time, all within one
    /// deadline of `timeout`: however many agents hang, the table waits
    /// for one timeout. Each virsh process gets only the time left, so none
    /// outlives the deadline. Answers come in the order of `asks`.
    pub fn ask(
        &self,
        virsh: &Virsh,
        options: &ProbeOptions,
        driver: Driver,
        asks: &[Ask],
        progress: Progress,
    ) -> Vec<Answer> {
        let deadline = Instant::now() + options.timeout;
        // Unless the driver is QEMU's, the first probe runs alone for a
        // moment: a driver without agent support says so at once, and then
        // no other domain is asked. A slow first answer is a guest's
        // problem, not the driver's, so the others start after a quarter of
        // the timeout at the latest.
        let lead = match driver {
            Driver::Qemu => Duration::ZERO,
            Driver::Other => options.timeout / 4,
        };
        // Each probe holds a session: more workers than sessions would
        // only queue, and spend their share of the deadline waiting.
        let workers = options.jobs.min(virsh.config().sessions);
        let done = AtomicUsize::new(0);
        crate::workers::bounded(asks, workers, lead, |ask| {
            let os = ask
                .os
                .then(|| self.ask_one(virsh, options.timeout, ask.target, deadline));
            let fs = ask
                .fs
                .then(|| match os.as_ref().and_then(known_without_asking) {
                    Some(report) => report,
                    None => self.ask_fs(virsh, options.timeout, ask.target, deadline),
                });
            progress(done.fetch_add(1, Ordering::SeqCst) + 1, asks.len());
            Answer { os, fs }
        })
    }

    /// One guest's filesystems, `guestinfo --filesystem`.
    fn ask_fs(&self, virsh: &Virsh, timeout: Duration, name: &str, deadline: Instant) -> FsReport {
        if self.unsupported.load(Ordering::SeqCst) {
            return FsReport::agent_failed(&AgentError::DriverUnsupported);
        }
        let Some(bounded) = virsh_until(virsh, timeout, deadline) else {
            return FsReport::agent_failed(&AgentError::Deadline);
        };
        match agent::filesystems(&bounded, name) {
            Ok(filesystems) => FsReport::found(filesystems),
            Err(error) => {
                if matches!(error, AgentError::DriverUnsupported) {
                    self.unsupported.store(true, Ordering::SeqCst);
                }
                FsReport::agent_failed(&error)
            }
        }
    }

    /// One guest: `guestinfo --os`, then os-release through the agent when
    /// the agent answered but would not give the OS.
    fn ask_one(&self, virsh: &Virsh, timeout: Duration, name: &str, deadline: Instant) -> OsReport {
        if self.unsupported.load(Ordering::SeqCst) {
            return OsReport::agent_failed(&AgentError::DriverUnsupported);
        }
        let Some(bounded) = virsh_until(virsh, timeout, deadline) else {
            return OsReport::agent_failed(&AgentError::Deadline);
        };
        let error = match agent::os_name(&bounded, name) {
            Ok(os) => return OsReport::found(os, OsSource::Agent),
            Err(AgentError::DriverUnsupported) => {
                self.unsupported.store(true, Ordering::SeqCst);
                return OsReport::agent_failed(&AgentError::DriverUnsupported);
            }
            Err(error) if error.agent_answered() => error,
            Err(error @ AgentError::Timeout(_)) => return OsReport::hung(&error),
            Err(error) => return OsReport::agent_failed(&error),
        };
        let Some(bounded) = virsh_until(virsh, timeout, deadline) else {
            return OsReport::agent_failed(&error);
        };
        match agent::os_release_name(&bounded, name) {
            Ok(os) => OsReport::found(os, OsSource::AgentFile),
            // The first refusal says most about why the OS is unknown.
            Err(_) => OsReport::agent_failed(&error),
        }
    }
}

/// The filesystems' fate where the OS probe told it: a guest without an
/// agent, or whose agent hung (libvirt would hold the next call too), is
/// not asked: in the scan that found it, nor while a hung agent's OS
/// report is cached.
pub(super) fn known_without_asking(os: &OsReport) -> Option<FsReport> {
    let (error, why) = os.error.as_ref()?;
    let fs = match why {
        OsUnknown::NoAgent => FsUnknown::NoAgent,
        OsUnknown::AgentNotConnected => FsUnknown::NotConnected,
        OsUnknown::Stopped => FsUnknown::Inactive,
        OsUnknown::NoAgentSupport => FsUnknown::Unsupported,
        OsUnknown::AgentTimedOut => FsUnknown::TimedOut,
        OsUnknown::AgentNotAsked => FsUnknown::NotAsked,
        _ => return None,
    };
    Some(FsReport::failed(error.clone(), fs))
}

/// A virsh whose processes end by `deadline` (and within `timeout`), or
/// `None` past it.
fn virsh_until(virsh: &Virsh, timeout: Duration, deadline: Instant) -> Option<Virsh> {
    let left = deadline.saturating_duration_since(Instant::now());
    (!left.is_zero()).then(|| virsh.with_timeout(left.min(timeout)))
}
