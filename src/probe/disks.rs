//! A domain's filesystems where they are asked for: the agent's answer
//! from the scan's one round of agent calls, else why there is none; each
//! report cached for `--fs-ttl`.

use std::collections::HashMap;
use std::time::Instant;

use super::agents::{Answer, known_without_asking};
use super::cache::Cache;
use super::values::{Domain, FsReport, FsUnknown};

/// Gives every domain that has no cached report its filesystems from
/// `answers` (the running guests' agents, by target), or the reason: a
/// guest whose agent hung (its OS report says so, cached or new) was not
/// asked, and a domain that is not running has no agent to ask. Each
/// report is cached.
pub(super) fn fill(
    cache: &Cache,
    domains: Vec<Domain>,
    answers: &mut HashMap<String, Answer>,
) -> Vec<Domain> {
    let now = Instant::now();
    domains
        .into_iter()
        .map(|mut domain| {
            if domain.fs.is_none() {
                let listed = &domain.listed;
                let report = answers
                    .get_mut(listed.target())
                    .and_then(|answer| answer.fs.take())
                    .or_else(|| known_without_asking(&domain.os))
                    .unwrap_or_else(|| {
                        FsReport::failed(format!("domain is {}", listed.state), FsUnknown::Inactive)
                    });
                cache.keep_fs(listed, now, &report);
                domain.fs = Some(report);
            }
            domain
        })
        .collect()
}
