//! The one process seam: every virsh call goes through a [`Runner`], which the
//! real program fills with a session or a process runner and tests with a
//! recording fake; what a call printed, and how much it may print.

use std::process::ExitStatus;
use std::time::{Duration, Instant};

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

    /// Runs a call that moves a file's bytes (`vol-upload` from a FIFO
    /// the caller feeds, `vol-download` into a file) with no deadline as
    /// a whole: it is killed when `watch` says so, and the error says
    /// why ([`VirshError::Stalled`], [`VirshError::Stopped`]).
    fn transfer(&self, invocation: &Invocation, watch: &Watch) -> Result<Output, VirshError>;

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

/// What keeps a transfer going: bytes moving (`moved()` changes at least
/// once every `stall`), until the caller's `stop()` says its side failed
/// (the file it feeds from, a signal).
pub struct Watch<'a> {
    pub stall: Duration,
    pub moved: &'a (dyn Fn() -> u64 + Sync),
    pub stop: &'a (dyn Fn() -> bool + Sync),
}

/// Why a watched transfer must end now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Halt {
    Stalled,
    Stopped,
}

/// How often a transfer's progress is looked at.
pub const WATCH_POLL: Duration = Duration::from_millis(100);

/// One transfer's progress as last seen.
pub struct Watcher<'a> {
    watch: &'a Watch<'a>,
    moved: u64,
    since: Instant,
}

impl<'a> Watcher<'a> {
    pub fn new(watch: &'a Watch<'a>) -> Self {
        Watcher {
            watch,
            moved: (watch.moved)(),
            since: Instant::now(),
        }
    }

    /// Whether the transfer must end now, and why.
    pub fn halt(&mut self) -> Option<Halt> {
        if (self.watch.stop)() {
            return Some(Halt::Stopped);
        }
        let moved = (self.watch.moved)();
        if moved != self.moved {
            (self.moved, self.since) = (moved, Instant::now());
        } else if self.since.elapsed() >= self.watch.stall {
            return Some(Halt::Stalled);
        }
        None
    }
}

impl Watch<'_> {
    /// The error for `halt` of the call `command`.
    pub fn error(&self, halt: Halt, command: String) -> VirshError {
        match halt {
            Halt::Stalled => VirshError::Stalled {
                command,
                stall: self.stall,
            },
            Halt::Stopped => VirshError::Stopped { command },
        }
    }
}
