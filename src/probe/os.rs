//! A domain's OS: the guest agent's answer first, then the libosinfo
//! metadata in its XML; each report cached.

use std::collections::HashMap;
use std::time::Instant;

use serde::Serialize;

use super::cache::Cache;
use super::domain::{Domain, by_target};
use super::osinfo::os_name_from_id;
use crate::agent::AgentError;
use crate::virsh::{DomainState, Listed, Virsh, VirshError, metadata};

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

/// The outcome of OS detection for one domain, as cached.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct OsReport {
    pub name: Option<(String, OsSource)>,
    pub error: Option<String>,
    /// The agent did not answer in time: it is left alone for `os_ttl`,
    /// so that the next scans do not wait for it again.
    pub agent_hung: bool,
}

impl OsReport {
    pub fn found(name: String, source: OsSource) -> Self {
        OsReport {
            name: Some((name, source)),
            error: None,
            agent_hung: false,
        }
    }

    pub fn failed(error: String) -> Self {
        OsReport {
            name: None,
            error: Some(error),
            agent_hung: false,
        }
    }

    pub fn hung(error: &AgentError) -> Self {
        OsReport {
            agent_hung: true,
            ..OsReport::failed(error.to_string())
        }
    }
}

/// The domains' XML, by target; `Err` where the batch failed.
pub(super) type Xmls = Result<HashMap<String, String>, VirshError>;

/// The XML of `targets` (the domains whose OS is not cached), in one batch
/// spread over the sessions: its libosinfo metadata is the last resort.
pub(super) fn read_xmls(virsh: &Virsh, targets: &[String]) -> Xmls {
    if targets.is_empty() {
        return Ok(HashMap::new());
    }
    let targets: Vec<&str> = targets.iter().map(String::as_str).collect();
    Ok(by_target(&targets, virsh.dumpxml_many(&targets)?))
}

/// Gives every domain not served from the cache its OS report, and caches
/// it: `ask_agents` is handed the running ones (the agent only answers a
/// running guest) and returns their reports in the same order; `xmls`
/// names the OS of those the agent did not.
pub(super) fn fill<M>(
    cache: &Cache,
    domains: Vec<Domain<M, Option<OsReport>>>,
    xmls: Xmls,
    ask_agents: impl FnOnce(&[&str]) -> Vec<OsReport>,
) -> Vec<Domain<M, OsReport>> {
    let running: Vec<&str> = domains
        .iter()
        .filter(|domain| domain.os.is_none() && domain.listed.state == DomainState::Running)
        .map(|domain| domain.listed.target())
        .collect();
    let mut agents: HashMap<String, OsReport> = running
        .iter()
        .map(|&target| target.to_owned())
        .zip(ask_agents(&running))
        .collect();
    // A failed read (a batch past its deadline, say) marks the rows that
    // needed the XML; the rest of the table stands.
    let xmls = xmls.map_err(|error| format!("cannot read its XML: {error}"));
    let now = Instant::now();
    domains
        .into_iter()
        .map(|domain| {
            domain.with_os(|listed, cached| {
                cached.unwrap_or_else(|| {
                    let report = detect(listed, agents.remove(listed.target()), &xmls);
                    cache.keep_os(listed, now, &report);
                    report
                })
            })
        })
        .collect()
}

/// A domain's OS from its agent's report (`None`: not asked) or else from
/// the libosinfo metadata in its XML.
fn detect(
    domain: &Listed,
    agent: Option<OsReport>,
    xmls: &Result<HashMap<String, String>, String>,
) -> OsReport {
    let report = agent.unwrap_or_else(|| OsReport::failed(format!("domain is {}", domain.state)));
    if report.name.is_some() {
        return report;
    }
    match xmls {
        Ok(xmls) => xmls
            .get(domain.target())
            .and_then(|xml| metadata::libosinfo_os_id(xml))
            .map_or(report, |id| {
                OsReport::found(os_name_from_id(&id), OsSource::Metadata)
            }),
        Err(reason) => OsReport {
            error: Some(match report.error {
                Some(first) if !first.is_empty() => format!("{first}; {reason}"),
                _ => reason.clone(),
            }),
            ..report
        },
    }
}
