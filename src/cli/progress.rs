//! A spinner on stderr for scans that take a while: shown only on a
//! terminal and only once a scan has run for half a second, so quick scans
//! and pipelines see nothing.

use std::io::IsTerminal;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use anyhow::Result;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::probe::{DomainStatus, Figures, ProbeManager};

const SHOW_AFTER: Duration = Duration::from_millis(500);

/// Runs a scan, with a spinner counting probed guests where it helps.
pub fn scan_with_progress(probes: &ProbeManager, figures: Figures) -> Result<Vec<DomainStatus>> {
    let scan = |progress: crate::probe::Progress| probes.scan_with(figures, progress);
    if !std::io::stderr().is_terminal() {
        return scan(&|_, _| {});
    }
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden());
    if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} [{elapsed}]") {
        bar.set_style(style);
    }
    bar.set_message("scanning domains");
    let (finished, wait) = mpsc::channel::<()>();
    thread::scope(|scope| {
        let shown = bar.clone();
        scope.spawn(move || {
            if wait.recv_timeout(SHOW_AFTER).is_err() {
                shown.set_draw_target(ProgressDrawTarget::stderr());
                shown.enable_steady_tick(Duration::from_millis(100));
            }
        });
        let result = scan(&|done, total| {
            bar.set_message(format!("probing guests {done}/{total}"));
        });
        let _ = finished.send(());
        bar.finish_and_clear();
        result
    })
}
