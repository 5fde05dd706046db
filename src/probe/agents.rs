//! The guest agents of one scan, asked for the OS: one per session at a
//! time, all within one deadline, a driver that refuses them asked once.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::values::{OsReport, OsSource, ProbeOptions, Progress};
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

/// Asks guest agents for the OS.
#[derive(Default)]
pub(super) struct Agents {
    /// Set once the connection's driver refuses agent calls altogether,
    /// so that no later domain, in this scan or the next, is asked.
    unsupported: AtomicBool,
}

impl Agents {
    /// Asks the agents of `names`, at most `jobs` at a time, all within one
    /// deadline of `timeout`: however many agents hang, the table waits
    /// for one timeout. Each virsh process gets only the time left, so none
    /// outlives the deadline. Reports come in the order of `names`.
    pub fn ask(
        &self,
        virsh: &Virsh,
        options: &ProbeOptions,
        driver: Driver,
        names: &[&str],
        progress: Progress,
    ) -> Vec<OsReport> {
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
        crate::workers::bounded(names, workers, lead, |name| {
            let report = self.ask_one(virsh, options.timeout, name, deadline);
            progress(done.fetch_add(1, Ordering::SeqCst) + 1, names.len());
            report
        })
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

/// A virsh whose processes end by `deadline` (and within `timeout`), or
/// `None` past it.
fn virsh_until(virsh: &Virsh, timeout: Duration, deadline: Instant) -> Option<Virsh> {
    let left = deadline.saturating_duration_since(Instant::now());
    (!left.is_zero()).then(|| virsh.with_timeout(left.min(timeout)))
}
