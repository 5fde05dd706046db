//! The one process seam: every virsh call goes through a [`Runner`], which the
//! real program fills with a session or a process runner and tests with a
//! recording fake; what a call printed, and how much it may print.

use std::process::ExitStatus;
use std::time::Duration;

use super::error::VirshError;
use super::invocation::Invocation;

/// What a finished process printed, decoded lossily (a guest or a remote
/// host may hand us bytes that are not UTF-8; they must not abort a scan).
#[derive(Debug, Clone)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs one invocation to completion or until `timeout` has passed.
///
/// A non-zero exit is not an error at this level: virsh batches report the
/// status of their last command only, so callers decide what failure means.
pub trait Runner: Send + Sync {
    fn run(&self, invocation: &Invocation, timeout: Duration) -> Result<Output, VirshError>;

    /// Work on the connection begins (a host's part of a command, one
    /// scan of `serve`): until it ends, the runner keeps one session for
    /// it however many other hosts wait for the budget.
    fn begin_work(&self) {}

    /// That work ends; with `close`, the idle sessions end and give their
    /// places back at once.
    fn end_work(&self, _close: bool) {}

    /// Gets ready for calls to `connection` (its program and URI; no
    /// commands) side by side: a runner that keeps processes starts them.
    fn warm_up(&self, _connection: &Invocation) {}
}

/// The most a single virsh call may print, on stdout or stderr: far above
/// any real answer (1000 domains' XML is about 4 MiB), far below what would
/// exhaust memory.
pub const OUTPUT_LIMIT: usize = 256 * 1024 * 1024;
