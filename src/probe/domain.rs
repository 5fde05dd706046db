//! One domain through a scan: the listing's facts, what the scan learns
//! about it, and the row it ends as.

use serde::Serialize;

use super::metrics::{MemorySource, Metrics, ReadFault};
use super::os::{OsReport, OsSource};
use crate::virsh::{DomainState, Listed};

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
}

/// What a scan knows about one domain: the listing's facts, its figures
/// and its OS report. While the scan runs, `M` and `O` are `Option`s
/// (`None`: not served from the cache, to be read); each step hands the
/// domains on with its part known, so rows are built from known values.
pub(super) struct Domain<M = Metrics, O = OsReport> {
    pub listed: Listed,
    pub metrics: M,
    pub os: O,
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
        })
    }

    /// The same domain with its OS report worked out from the listing and
    /// what was known.
    pub fn with_os<P>(self, work_out: impl FnOnce(&Listed, O) -> P) -> Domain<M, P> {
        Domain {
            os: work_out(&self.listed, self.os),
            listed: self.listed,
            metrics: self.metrics,
        }
    }
}

impl From<Domain> for DomainStatus {
    fn from(
        Domain {
            listed,
            metrics,
            os,
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
            os_error: os.error,
        }
    }
}
