//! A domain's OS: the guest agent's answer first, then the libosinfo
//! metadata in its XML; each report cached.

use std::collections::HashMap;
use std::time::Instant;

use super::cache::Cache;
use super::osinfo::os_name_from_id;
use super::values::{Domain, OsReport, OsSource, OsUnknown};
use crate::utils::with_causes;
use crate::virsh::{DomainState, Listed, Virsh, XmlOutcome, XmlRead, Xmls, metadata};

/// The XML of those of `unknown` (the domains whose OS is not cached, as
/// `(target, name)`) that `known` lacks, its libosinfo metadata being the
/// last resort: read as `serve` reads it for the drives
/// ([`Virsh::domain_xmls`]: no marker between the documents, which keeps
/// virsh's lines a third as long as with a marker per domain).
pub(super) fn read_xmls(virsh: &Virsh, unknown: &[(String, String)], known: &Xmls) -> Xmls {
    let reads: Vec<XmlRead> = unknown
        .iter()
        .filter(|(target, _)| !known.contains_key(target))
        .map(|(target, name)| XmlRead {
            target,
            name,
            inactive: false,
        })
        .collect();
    reads
        .iter()
        .map(|read| read.target.to_owned())
        .zip(virsh.domain_xmls(&reads).into_iter().map(XmlOutcome::from))
        .collect()
}

/// Gives every domain not served from the cache its OS report, and caches
/// it: `ask_agents` is handed the running ones (the agent only answers a
/// running guest) and returns their reports in the same order; the XML
/// `xml_of` a domain names the OS of those the agent did not.
pub(super) fn fill<'x, M>(
    cache: &Cache,
    domains: Vec<Domain<M, Option<OsReport>>>,
    xml_of: impl Fn(&str) -> Option<&'x XmlOutcome>,
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
    let now = Instant::now();
    domains
        .into_iter()
        .map(|domain| {
            domain.with_os(|listed, cached| {
                cached.unwrap_or_else(|| {
                    let xml = xml_of(listed.target());
                    let report = detect(listed, agents.remove(listed.target()), xml);
                    cache.keep_os(listed, now, &report);
                    report
                })
            })
        })
        .collect()
}

/// A domain's OS (see [`detect_os`]), and for a running one whether
/// `boot-iso` started it, from the marker in its live XML.
fn detect(domain: &Listed, agent: Option<OsReport>, xml: Option<&XmlOutcome>) -> OsReport {
    let booted_from_iso = match xml {
        Some(XmlOutcome::Read(xml)) if domain.state.is_active() => metadata::booted_from_iso(xml),
        _ => None,
    };
    OsReport {
        booted_from_iso,
        ..detect_os(domain, agent, xml)
    }
}

/// A domain's OS from its agent's report (`None`: not asked) or else from
/// the libosinfo metadata in its XML. A failed read (past its deadline,
/// say) marks the row; the rest of the table stands.
fn detect_os(domain: &Listed, agent: Option<OsReport>, xml: Option<&XmlOutcome>) -> OsReport {
    let report = agent.unwrap_or_else(|| {
        OsReport::failed(
            format!("domain is {}", domain.state),
            OsUnknown::Inactive(domain.state),
        )
    });
    if report.name.is_some() {
        return report;
    }
    match xml {
        Some(XmlOutcome::Read(xml)) => metadata::libosinfo_os_id(xml).map_or(report, |id| {
            OsReport::found(os_name_from_id(&id), OsSource::Metadata)
        }),
        Some(XmlOutcome::Unanswered(error)) => {
            let reason = format!("cannot read its XML: {}", with_causes(error));
            // The agent's failure, where it was asked, says most in few
            // words; an inactive domain's OS is unknown for want of its XML.
            OsReport {
                error: Some(match report.error {
                    Some((first, OsUnknown::Inactive(_))) => {
                        (format!("{first}; {reason}"), OsUnknown::XmlUnreadable)
                    }
                    Some((first, why)) => (format!("{first}; {reason}"), why),
                    None => (reason, OsUnknown::XmlUnreadable),
                }),
                ..report
            }
        }
        Some(XmlOutcome::Refused) | None => report,
    }
}
