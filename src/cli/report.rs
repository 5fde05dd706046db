//! The outcome of a command over many hosts: answered rows apart from
//! failure lines, JSON rows tagged with their host, and the exit status.

use std::process::ExitCode;

use anyhow::Result;

use crate::fleet::HostScan;
use crate::utils::sanitize;

/// One line on stderr per failed host; the exit status says whether none,
/// some or all of the hosts failed.
///
/// A run that found no file descriptor for a virsh fails as a whole, in
/// one line naming the limit, rather than as a line per host it hit.
pub fn report_failed_hosts(failed: &[String], hosts: usize) -> Result<ExitCode> {
    if !failed.is_empty() && crate::virsh::descriptors::ran_out() {
        anyhow::bail!(
            "{} ({} of {hosts} host(s) failed)",
            crate::virsh::descriptors::ran_out_message(),
            failed.len()
        );
    }
    for line in failed {
        eprintln!("dismount_iso_qemu: error: {line}");
    }
    Ok(super::exit::of_hosts(failed.len(), hosts))
}

/// A listing over the hosts written out: with one host its failure is the
/// run's error, as it always was; otherwise the answered hosts' rows (JSON
/// rows tagged with `uri`, or `table(hosts, with_host)`), then a line per
/// failed host, and the exit status that says how many failed.
pub fn write_listing<T: serde::Serialize>(
    out: &mut impl std::io::Write,
    mut scans: Vec<HostScan<Vec<T>>>,
    json: bool,
    table: impl FnOnce(&[(&str, &[T])], bool) -> String,
) -> Result<ExitCode> {
    let single = scans.len() == 1;
    if single && scans[0].result.is_err() {
        // The error itself: `map` never runs on it.
        return scans.remove(0).result.map(|_| ExitCode::FAILURE);
    }
    let (hosts, failed) = split_scans(&scans);
    if json {
        crate::utils::write_json(out, &with_uris(&hosts))?;
    } else if !hosts.is_empty() {
        out.write_all(table(&hosts, !single).as_bytes())?;
    }
    out.flush()?;
    report_failed_hosts(&failed, scans.len())
}

/// `URI: reason`, on one line, sanitized.
pub fn host_error(uri: &str, error: &anyhow::Error) -> String {
    sanitize(&format!("{uri}: {error:#}"))
}

/// The hosts that answered, each with its rows, and one error line (see
/// [`host_error`]) for each host that failed; both in the hosts' order.
pub fn split_scans<T>(scans: &[HostScan<Vec<T>>]) -> (Vec<(&str, &[T])>, Vec<String>) {
    let mut hosts = Vec::new();
    let mut failed = Vec::new();
    for scan in scans {
        match &scan.result {
            Ok(rows) => hosts.push((scan.uri.as_str(), rows.as_slice())),
            Err(error) => failed.push(host_error(&scan.uri, error)),
        }
    }
    (hosts, failed)
}

/// The answered hosts' rows as JSON rows, each with its host's URI.
pub fn with_uris<'a, T>(hosts: &[(&'a str, &'a [T])]) -> Vec<WithUri<'a, T>> {
    hosts
        .iter()
        .flat_map(|&(uri, rows)| rows.iter().map(move |row| WithUri { uri, row }))
        .collect()
}

/// A JSON row with its host's URI in front.
#[derive(serde::Serialize)]
pub struct WithUri<'a, T> {
    pub uri: &'a str,
    #[serde(flatten)]
    pub row: &'a T,
}
