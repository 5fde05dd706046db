//! Progress on stderr for work that takes a while: a spinner counting the
//! probed guests of one host, a line counting the hosts of several. Shown
//! only on a terminal, never with `--json`, and only once the work has run
//! for half a second, so quick runs and pipelines see nothing; cleared
//! before the command prints its table.

use std::io::IsTerminal;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use anyhow::Result;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::fleet::{Fleet, Host, HostScan};
use crate::mutex::lock;
use crate::probe::{DomainStatus, Figures, ProbeManager};

const SHOW_AFTER: Duration = Duration::from_millis(500);

/// Runs a scan, with a spinner counting probed guests where it helps
/// (`wanted`: the output is for people, not `--json`).
pub fn scan_with_progress(
    probes: &ProbeManager,
    figures: Figures,
    wanted: bool,
) -> Result<Vec<DomainStatus>> {
    with_spinner(wanted, "scanning domains".to_owned(), |bar| {
        probes.scan_with(figures, &|done, total| {
            bar.set_message(format!("probing guests {done}/{total}"));
        })
    })
}

/// [`Fleet::each`] with a line on stderr saying how many of the hosts are
/// done and how many of those failed (`wanted`: the output is for people,
/// not `--json`; one host gets no line).
pub fn each_with_progress<T: Send>(
    fleet: &Fleet,
    wanted: bool,
    job: impl Fn(&Host) -> Result<T> + Sync,
) -> Vec<HostScan<T>> {
    let total = fleet.hosts.len();
    let shown = wanted && total > 1;
    with_spinner(shown, hosts_line(0, total, 0), |bar| {
        let counts = std::sync::Mutex::new((0, 0));
        fleet.each_with(job, |result| {
            let mut counts = lock(&counts);
            counts.0 += 1;
            counts.1 += usize::from(result.is_err());
            bar.set_message(hosts_line(counts.0, total, counts.1));
        })
    })
}

/// What the line over several hosts says: `hosts: 3 of 10 done, 1 failed`.
pub fn hosts_line(done: usize, total: usize, failed: usize) -> String {
    if failed == 0 {
        format!("hosts: {done} of {total} done")
    } else {
        format!("hosts: {done} of {total} done, {failed} failed")
    }
}

/// Runs `work` with a spinner and `message` on stderr, drawn once the
/// work has taken [`SHOW_AFTER`] and cleared when it ends; with `wanted`
/// false, or stderr not a terminal, nothing is drawn.
fn with_spinner<R>(wanted: bool, message: String, work: impl FnOnce(&ProgressBar) -> R) -> R {
    if !wanted || !std::io::stderr().is_terminal() {
        return work(&ProgressBar::hidden());
    }
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden());
    if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} [{elapsed}]") {
        bar.set_style(style);
    }
    bar.set_message(message);
    let (finished, wait) = mpsc::channel::<()>();
    thread::scope(|scope| {
        let shown = bar.clone();
        let show = scope.spawn(move || {
            if wait.recv_timeout(SHOW_AFTER).is_err() {
                shown.set_draw_target(ProgressDrawTarget::stderr());
                shown.enable_steady_tick(Duration::from_millis(100));
            }
        });
        let result = work(&bar);
        let _ = finished.send(());
        // Shown or not, never after the clear: the table comes next.
        let _ = show.join();
        bar.finish_and_clear();
        result
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hosts_line_counts_done_and_failed() {
        assert_eq!(hosts_line(0, 10, 0), "hosts: 0 of 10 done");
        assert_eq!(hosts_line(3, 10, 1), "hosts: 3 of 10 done, 1 failed");
        assert_eq!(hosts_line(10, 10, 10), "hosts: 10 of 10 done, 10 failed");
    }
}
