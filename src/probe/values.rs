//! The scan's values: its options, each domain as it goes through the
//! steps (figures, OS report, CPU sample) and the row it ends as. A leaf:
//! it imports nothing else from `probe/`, so every step can use it.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::agent::{AgentError, Filesystem};
use crate::virsh::{DomainState, Listed, VirshError};

#[derive(Debug, Clone)]
pub struct ProbeOptions {
    /// Bounds every virsh process, and all guest probes of one scan together.
    pub timeout: Duration,
    /// How long CPU and memory figures are reused.
    pub cache_ttl: Duration,
    /// How long a guest's OS name is reused (failures: `cache_ttl`).
    pub os_ttl: Duration,
    /// How many guests are probed at once.
    pub jobs: usize,
    /// Whether running guests' agents are asked for their filesystems
    /// (`status --disks`, `serve` unless `--no-guest-filesystems`).
    pub filesystems: bool,
    /// How long a guest's filesystems are reused.
    pub fs_ttl: Duration,
}

/// The shortest pause between two background scans (the menu's refresh,
/// `serve`): a tiny `--cache-ttl` must not turn into back-to-back scans.
pub const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(5);

impl ProbeOptions {
    /// How often background scans run: every `cache_ttl`, 5 s at the least.
    pub fn refresh_interval(&self) -> Duration {
        self.cache_ttl.max(MIN_REFRESH_INTERVAL)
    }
}

/// Told how far the guest probes of a scan have got: (done, total).
pub type Progress<'a> = &'a (dyn Fn(usize, usize) + Sync);

/// Whether a scan may serve figures from the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Figures {
    /// Within `--cache-ttl`, as cached: the first table, `status`, the
    /// background refresh.
    Cached,
    /// Read again whatever the TTL: the menu's Rescan, `serve`.
    Fresh,
}

/// Where a memory-used figure comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MemorySource {
    /// The guest's own balloon statistics: in-guest used memory.
    Guest,
    /// The host's allocation to the domain (the guest reports nothing).
    Allocation,
}

/// Why a read for a domain (its figures, its XML) came to nothing, in a
/// word (`serve`'s `reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadFault {
    /// The read overran `--timeout`.
    Timeout,
    /// virsh answered with an error.
    Failed,
}

impl ReadFault {
    pub fn of(error: &VirshError) -> Self {
        if error.is_timeout() {
            ReadFault::Timeout
        } else {
            ReadFault::Failed
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ReadFault::Timeout => "timeout",
            ReadFault::Failed => "failed",
        }
    }
}

/// CPU and memory of one domain, as cached.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Metrics {
    pub persistent: Option<bool>,
    pub vcpus: Option<u32>,
    /// KiB, and whose figure it is.
    pub memory_used: Option<(u64, MemorySource)>,
    pub memory_max_kib: Option<u64>,
    pub cpu_time_ns: Option<u64>,
    pub cpu_percent: Option<f64>,
    /// Why the figures a driver's stats lack could not be read.
    pub error: Option<(String, ReadFault)>,
}

/// Who named the guest's OS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OsSource {
    /// `guestinfo --os`: the agent's guest-get-osinfo.
    Agent,
    /// os-release read through the agent's file commands.
    AgentFile,
    /// libosinfo metadata in the domain XML.
    Metadata,
}

impl OsSource {
    /// As in `status --json` and the metrics' `source` label.
    pub fn as_str(self) -> &'static str {
        match self {
            OsSource::Agent => "agent",
            OsSource::AgentFile => "agent-file",
            OsSource::Metadata => "metadata",
        }
    }
}

/// Why a domain's OS is unknown, in the few words of the table's OS
/// column: a fixed vocabulary mapped from the kinds of error, so that a
/// cell never grows with an error's text (`os_error` has it whole).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OsUnknown {
    /// Not running (the agent is only asked then), and its XML names no OS.
    Inactive(DomainState),
    /// No channel for a guest agent in its XML.
    NoAgent,
    /// The channel is there; no agent answers on it.
    AgentNotConnected,
    /// The domain stopped between the listing and the agent's call.
    Stopped,
    /// The connection's driver has no agent calls (the test driver).
    NoAgentSupport,
    AgentTimedOut,
    /// The scan's one deadline for every agent passed first.
    AgentNotAsked,
    AgentRefused,
    /// The agent answered without a name for the OS.
    AgentGaveNoOs,
    AgentBadReply,
    /// virsh failed for a reason of its own.
    VirshFailed,
    /// Not running, and its XML (for the metadata) could not be read.
    XmlUnreadable,
}

impl OsUnknown {
    pub fn of(error: &AgentError) -> Self {
        match error {
            AgentError::NoChannel => OsUnknown::NoAgent,
            AgentError::NotConnected => OsUnknown::AgentNotConnected,
            AgentError::NotRunning => OsUnknown::Stopped,
            AgentError::DriverUnsupported => OsUnknown::NoAgentSupport,
            AgentError::Timeout(_) => OsUnknown::AgentTimedOut,
            AgentError::Deadline => OsUnknown::AgentNotAsked,
            AgentError::Refused(_) => OsUnknown::AgentRefused,
            AgentError::NoOsInfo => OsUnknown::AgentGaveNoOs,
            AgentError::BadReply(_) => OsUnknown::AgentBadReply,
            AgentError::Virsh(_) => OsUnknown::VirshFailed,
        }
    }

    /// The few words: `no agent`, `agent timed out`, `shut off, no
    /// metadata`, ….
    pub fn words(self) -> String {
        match self {
            OsUnknown::Inactive(state) => return format!("{state}, no metadata"),
            OsUnknown::NoAgent => "no agent",
            OsUnknown::AgentNotConnected => "agent not connected",
            OsUnknown::Stopped => "stopped meanwhile",
            OsUnknown::NoAgentSupport => "no agent support",
            OsUnknown::AgentTimedOut => "agent timed out",
            OsUnknown::AgentNotAsked => "agent not asked",
            OsUnknown::AgentRefused => "agent refused",
            OsUnknown::AgentGaveNoOs => "agent gave no OS",
            OsUnknown::AgentBadReply => "bad agent reply",
            OsUnknown::VirshFailed => "virsh failed",
            OsUnknown::XmlUnreadable => "XML unreadable",
        }
        .to_owned()
    }

    /// Whether something is wrong (an agent, virsh, the XML), rather than
    /// the domain being off with no metadata, or on a driver without agents.
    pub fn is_problem(self) -> bool {
        !matches!(
            self,
            OsUnknown::Inactive(_) | OsUnknown::NoAgentSupport | OsUnknown::Stopped
        )
    }
}

/// The outcome of OS detection for one domain, as cached.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct OsReport {
    pub name: Option<(String, OsSource)>,
    /// Why there is no name: the error with its causes, and its kind.
    pub error: Option<(String, OsUnknown)>,
    /// The agent did not answer in time: it is left alone for `os_ttl`,
    /// so that the next scans do not wait for it again.
    pub agent_hung: bool,
    /// The drive `boot-iso` started this run from, read from the same
    /// live XML as the metadata and kept with it (a start anew changes
    /// the state, which ends both).
    pub booted_from_iso: Option<String>,
}

impl OsReport {
    pub fn found(name: String, source: OsSource) -> Self {
        OsReport {
            name: Some((name, source)),
            error: None,
            agent_hung: false,
            booted_from_iso: None,
        }
    }

    pub fn failed(error: String, why: OsUnknown) -> Self {
        OsReport {
            name: None,
            error: Some((error, why)),
            agent_hung: false,
            booted_from_iso: None,
        }
    }

    /// The agent's error, with its causes.
    pub fn agent_failed(error: &AgentError) -> Self {
        OsReport::failed(crate::utils::with_causes(error), OsUnknown::of(error))
    }

    pub fn hung(error: &AgentError) -> Self {
        OsReport {
            agent_hung: true,
            ..OsReport::agent_failed(error)
        }
    }
}

/// Why a guest's filesystems are unknown, in a word: `serve`'s `reason`
/// and the table's Disk cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsUnknown {
    /// Not running: only a running guest's agent answers.
    Inactive,
    /// No channel for a guest agent in its XML.
    NoAgent,
    /// The channel is there; no agent answers on it.
    NotConnected,
    /// The connection's driver has no agent calls (the test driver).
    Unsupported,
    TimedOut,
    /// The scan's one deadline for every agent passed first.
    NotAsked,
    /// The agent refuses guest-get-fsinfo (`--block-rpcs`).
    Blocked,
    /// The agent, or the libvirt under virsh, knows no such call.
    TooOld,
    BadReply,
    /// virsh failed for a reason of its own.
    Failed,
}

impl FsUnknown {
    pub fn of(error: &AgentError) -> Self {
        match error {
            AgentError::NoChannel => FsUnknown::NoAgent,
            AgentError::NotConnected => FsUnknown::NotConnected,
            AgentError::NotRunning => FsUnknown::Inactive,
            AgentError::DriverUnsupported => FsUnknown::Unsupported,
            AgentError::Timeout(_) => FsUnknown::TimedOut,
            AgentError::Deadline => FsUnknown::NotAsked,
            AgentError::Refused(message) if message.contains("has been disabled") => {
                FsUnknown::Blocked
            }
            AgentError::Refused(_) => FsUnknown::TooOld,
            AgentError::NoOsInfo | AgentError::BadReply(_) => FsUnknown::BadReply,
            AgentError::Virsh(error)
                if error.virsh_message().is_some_and(|m| {
                    m.contains("--filesystem") || m.contains("unknown command")
                }) =>
            {
                FsUnknown::TooOld
            }
            AgentError::Virsh(_) => FsUnknown::Failed,
        }
    }

    /// `serve`'s `reason` label and the table's few words.
    pub fn as_str(self) -> &'static str {
        match self {
            FsUnknown::Inactive => "not_running",
            FsUnknown::NoAgent => "no_agent",
            FsUnknown::NotConnected => "agent_not_connected",
            FsUnknown::Unsupported => "unsupported",
            FsUnknown::TimedOut => "timeout",
            FsUnknown::NotAsked => "not_asked",
            FsUnknown::Blocked => "blocked",
            FsUnknown::TooOld => "agent_too_old",
            FsUnknown::BadReply => "bad_reply",
            FsUnknown::Failed => "failed",
        }
    }

    /// Whether something is wrong, rather than the guest being off or on
    /// a driver without agents.
    pub fn is_problem(self) -> bool {
        !matches!(self, FsUnknown::Inactive | FsUnknown::Unsupported)
    }
}

/// A guest's filesystems, or why they are unknown, as cached.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FsReport {
    pub filesystems: Option<Vec<Filesystem>>,
    /// Why `filesystems` is `null`: the error with its causes.
    pub filesystems_error: Option<String>,
    #[serde(skip)]
    pub fs_unknown: Option<FsUnknown>,
}

impl FsReport {
    pub(super) fn found(filesystems: Vec<Filesystem>) -> Self {
        FsReport {
            filesystems: Some(filesystems),
            filesystems_error: None,
            fs_unknown: None,
        }
    }

    pub(super) fn failed(error: String, why: FsUnknown) -> Self {
        FsReport {
            filesystems: None,
            filesystems_error: Some(error),
            fs_unknown: Some(why),
        }
    }

    pub(super) fn agent_failed(error: &AgentError) -> Self {
        FsReport::failed(crate::utils::with_causes(error), FsUnknown::of(error))
    }

    /// The sum over the filesystems that count, (used, total) bytes.
    pub fn usage(&self) -> Option<(u64, u64)> {
        crate::agent::usage(self.filesystems.as_deref()?)
    }
}

/// A CPU time reading (ns) and when it was taken, for CPU %.
pub(super) type CpuSample = (Instant, u64);

/// One row of the status table and of `status --json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DomainStatus {
    pub name: String,
    pub uuid: Option<String>,
    pub state: DomainState,
    pub persistent: Option<bool>,
    pub vcpus: Option<u32>,
    pub memory_used_kib: Option<u64>,
    pub memory_used_source: Option<MemorySource>,
    pub memory_max_kib: Option<u64>,
    pub cpu_time_ns: Option<u64>,
    /// Share of the domain's vCPUs used between its last two samples.
    pub cpu_percent: Option<f64>,
    /// Why figures are missing (their read failed or overran the timeout);
    /// `null` when they were read.
    pub metrics_error: Option<String>,
    /// The kind of `metrics_error`, for `serve`; not in the JSON.
    #[serde(skip)]
    pub metrics_fault: Option<ReadFault>,
    /// Why its XML could not be read, for `serve` (which reads it for the
    /// drives and hands it to the scan); not in the JSON.
    #[serde(skip)]
    pub xml_fault: Option<ReadFault>,
    pub os: String,
    pub os_source: Option<OsSource>,
    pub os_error: Option<String>,
    /// The drive `boot-iso` started this run of the VM from; `null` for
    /// any other start.
    pub booted_from_iso: Option<String>,
    /// `os_error` in the table's few words; not in the JSON.
    #[serde(skip)]
    pub os_unknown: Option<OsUnknown>,
    /// `filesystems` and `filesystems_error`, where they were asked for.
    #[serde(flatten)]
    pub disks: Option<FsReport>,
}

/// What a scan knows about one domain: the listing's facts, its figures
/// and its OS report. While the scan runs, `M` and `O` are `Option`s
/// (`None`: not served from the cache, to be read); each step hands the
/// domains on with its part known, so rows are built from known values.
pub(super) struct Domain<M = Metrics, O = OsReport> {
    pub listed: Listed,
    pub metrics: M,
    pub os: O,
    /// Its filesystems where asked for: cached, else the agent's answer
    /// (`None` until then, and where not asked for).
    pub fs: Option<FsReport>,
}

impl<M, O> Domain<M, O> {
    /// The same domain with its figures worked out from the listing and
    /// what was known; `None` drops the domain from the scan.
    pub fn with_metrics<N>(
        self,
        work_out: impl FnOnce(&Listed, M) -> Option<N>,
    ) -> Option<Domain<N, O>> {
        Some(Domain {
            metrics: work_out(&self.listed, self.metrics)?,
            listed: self.listed,
            os: self.os,
            fs: self.fs,
        })
    }

    /// The same domain with its OS report worked out from the listing and
    /// what was known.
    pub fn with_os<P>(self, work_out: impl FnOnce(&Listed, O) -> P) -> Domain<M, P> {
        Domain {
            os: work_out(&self.listed, self.os),
            listed: self.listed,
            metrics: self.metrics,
            fs: self.fs,
        }
    }
}

impl From<Domain> for DomainStatus {
    fn from(
        Domain {
            listed,
            metrics,
            os,
            fs,
        }: Domain,
    ) -> Self {
        let (name, os_source) = match os.name {
            Some((name, source)) => (name, Some(source)),
            None => ("unknown".to_owned(), None),
        };
        DomainStatus {
            name: listed.name,
            uuid: listed.uuid,
            state: listed.state,
            persistent: metrics.persistent,
            vcpus: metrics.vcpus,
            memory_used_kib: metrics.memory_used.map(|(kib, _)| kib),
            memory_used_source: metrics.memory_used.map(|(_, source)| source),
            memory_max_kib: metrics.memory_max_kib,
            cpu_time_ns: metrics.cpu_time_ns,
            cpu_percent: metrics.cpu_percent,
            metrics_fault: metrics.error.as_ref().map(|(_, fault)| *fault),
            metrics_error: metrics.error.map(|(message, _)| message),
            xml_fault: None,
            os: name,
            os_source,
            os_unknown: os.error.as_ref().map(|(_, why)| *why),
            os_error: os.error.map(|(error, _)| error),
            disks: fs,
            booted_from_iso: os.booted_from_iso,
        }
    }
}
