//! Long-lived virsh sessions: one `virsh` per connection, fed commands on
//! its stdin, so a scan, an action or a whole menu session pays for a
//! process (and over ssh, a connection) once instead of at every call.
//!
//! virsh's shell, read from a pipe, is not its batch mode (measured on
//! virsh 9.0; see README "How it works"):
//! - it prints a banner and a prompt and echoes each line it reads, on
//!   stdout; with `TERM=dumb` (or no TERM) readline echoes a line longer
//!   than the terminal as `\r<` and its tail, never the whole line, so
//!   the echo is skipped as one line and never compared;
//! - `-q` drops the banner but also the newline that ends `echo`'s
//!   output, which would glue a marker to the next prompt: sessions run
//!   without `-q`, and the banner is skipped like the echoes;
//! - a line that does not parse (an unknown command) drops the rest of
//!   the line, so the markers go on lines of their own;
//! - a line is a command, and readline acts on control characters (TAB
//!   completes, ^A moves the cursor): a call whose words hold one runs as
//!   a process from argv instead, where they are plain bytes;
//! - readline reads its line a byte at a time (two `pselect` and a
//!   `read` each): a long line to a local libvirtd runs as a process too,
//!   which costs less there;
//! - a connection lost while idle (libvirtd restarted, ssh killed) is
//!   reported on stderr at once (`error: Disconnected from …`) and made
//!   again by the next command (`error: Reconnected to the hypervisor`):
//!   neither is that command's failure;
//! - when the first connection fails, virsh exits with the error.

mod budget;
mod endpoint;
mod frame;
mod pool;
mod shell;

use std::collections::HashMap;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::batch::script;
use super::error::{VirshError, error_lines};
use super::invocation::Invocation;
use super::process::ProcessRunner;
use super::runner::{OUTPUT_LIMIT, Output, Runner, Watch, Watcher};
use super::uri::Uri;
use crate::mutex::lock;
pub use budget::Budget;
use endpoint::Endpoint;
use pool::{Fresh, Pool};
use shell::{Fault, Patience};

/// Commands that only read, so running one again after a lost connection
/// cannot change a VM twice.
const READ_ONLY: [&str; 14] = [
    "echo",
    "uri",
    "version",
    "list",
    "domstats",
    "dominfo",
    "domstate",
    "domblklist",
    "dumpxml",
    "guestinfo",
    "pool-list",
    "pool-name",
    "vol-list",
    "vol-info",
];

/// How long a call may take.
#[derive(Clone, Copy)]
enum Limit<'a> {
    /// `--timeout`: its own calls, never the wait for a place.
    Timeout(Duration),
    /// A transfer, as long as its bytes move.
    Watch(&'a Watch<'a>),
}

/// Runs every call on a long-lived virsh of its connection: at most
/// `pool_size` of them per connection, each holding a place of the
/// budget, started on demand and kept while the budget allows (see
/// [`Runner::end_work`]).
pub struct SessionRunner {
    pool_size: usize,
    /// The most one call may print (stdout or stderr).
    output_limit: usize,
    pools: Mutex<HashMap<Endpoint, Arc<Pool>>>,
    budget: Arc<Budget>,
    /// Jobs working on this runner's host now.
    work: Arc<AtomicUsize>,
}

impl SessionRunner {
    /// Sessions whose places come from `budget`, shared with other hosts.
    pub fn new(pool_size: usize, budget: Arc<Budget>) -> Self {
        SessionRunner {
            pool_size: pool_size.max(1),
            output_limit: OUTPUT_LIMIT,
            pools: Mutex::new(HashMap::new()),
            budget,
            work: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// With another cap on what one call may print (tests: a small one).
    #[cfg(test)]
    pub fn with_output_limit(mut self, output_limit: usize) -> Self {
        self.output_limit = output_limit;
        self
    }

    /// Runs `invocation` on a session of its connection within `limit`
    /// (or as a process, where a session line cannot carry it).
    fn call(&self, invocation: &Invocation, limit: Limit) -> Result<Output, VirshError> {
        if !fits_a_line(invocation) || cheaper_as_a_process(invocation) {
            let process = ProcessRunner::with_output_limit(self.output_limit);
            return match limit {
                Limit::Timeout(timeout) => process.run(invocation, timeout),
                Limit::Watch(watch) => process.transfer(invocation, watch),
            };
        }
        // A transfer waits for a session as long as it may go without
        // moving a byte. Moved on by the wait for a place, if any (see
        // `Pool::acquire`).
        let wait = match limit {
            Limit::Timeout(timeout) => timeout,
            Limit::Watch(watch) => watch.stall,
        };
        let mut deadline = Instant::now() + wait;
        let timed_out = || VirshError::Timeout {
            command: invocation.summary(),
            timeout: wait,
        };
        let pool = self.pool(invocation);
        let line = script(&invocation.commands);
        let mut retried = false;
        // Whether a session of this call had answered before: if none had,
        // virsh never got going (it cannot connect), and says why.
        let mut proven = false;
        loop {
            // A retry gets a new virsh: the idle ones may have lost their
            // connection the same way (libvirtd restarted, ssh dropped).
            let fresh = if retried {
                Fresh::Only
            } else {
                Fresh::IfNoneIdle
            };
            let mut session = pool.acquire(&mut deadline, fresh)?.ok_or_else(timed_out)?;
            proven |= session.served > 0;
            let mut patience = match limit {
                Limit::Timeout(_) => Patience::Until(deadline),
                Limit::Watch(watch) => Patience::Watched(Watcher::new(watch)),
            };
            match session.call(&line, &mut patience, self.output_limit) {
                Ok(frame) if frame.connection_lost => {
                    pool.discard(session);
                    if retried || !replayable(invocation) {
                        // Its commands could not run: that is the call's
                        // failure, whatever markers made it through.
                        return Err(VirshError::Failed {
                            command: invocation.summary(),
                            status: ExitStatus::from_raw(1 << 8),
                            stderr: frame.stderr,
                        });
                    }
                    retried = true;
                }
                Ok(frame) => {
                    pool.release(Some(session));
                    return Ok(frame.into_output());
                }
                Err(Fault::Timeout) => {
                    // The hung command holds this virsh: kill it, and let
                    // the next call start a new one.
                    pool.discard(session);
                    return Err(timed_out());
                }
                Err(Fault::Halted(halt)) => {
                    pool.discard(session);
                    return Err(match limit {
                        Limit::Watch(watch) => watch.error(halt, invocation.summary()),
                        Limit::Timeout(_) => timed_out(),
                    });
                }
                Err(Fault::TooLarge) => {
                    // Still printing, or its buffers out of step: kill it.
                    pool.discard(session);
                    return Err(VirshError::OutputTooLarge {
                        command: invocation.summary(),
                        limit: self.output_limit,
                    });
                }
                // A virsh that had been working died under or before this
                // call: one new session, once. One that never answered
                // failed to connect: its own words are the error.
                Err(Fault::Ended { unsent })
                    if proven && !retried && (unsent || replayable(invocation)) =>
                {
                    pool.discard(session);
                    retried = true;
                }
                Err(Fault::Ended { .. }) => {
                    let ended = session.finish();
                    pool.release(None);
                    return Err(match ended {
                        // The session itself never got going: name it, not
                        // the call that found out. Silent, it is no virsh.
                        Ok(status) if !proven => {
                            let stderr = session.take_stderr();
                            let command = pool.endpoint.invocation().summary();
                            if stderr.trim().is_empty() {
                                VirshError::NoAnswer { command, status }
                            } else {
                                VirshError::Failed {
                                    command,
                                    status,
                                    stderr,
                                }
                            }
                        }
                        _ => VirshError::SessionEnded {
                            command: invocation.summary(),
                            stderr: error_lines(&session.take_stderr()),
                        },
                    });
                }
            }
        }
    }

    fn pool(&self, invocation: &Invocation) -> Arc<Pool> {
        let endpoint = Endpoint {
            program: invocation.program.clone(),
            connect: invocation.connect.clone(),
        };
        let mut pools = lock(&self.pools);
        Arc::clone(pools.entry(endpoint.clone()).or_insert_with(|| {
            Pool::new(
                endpoint,
                self.pool_size,
                Arc::clone(&self.budget),
                Arc::clone(&self.work),
            )
        }))
    }
}

impl Runner for SessionRunner {
    /// Starts every session of the connection the budget has room for
    /// (now, or with its first session), so that they connect while the
    /// first call runs: for a scan, whose agent probes and XML reads run
    /// side by side. A one-shot read does not ask, and starts the one
    /// session it uses.
    fn warm_up(&self, connection: &Invocation) {
        self.pool(connection).start_all();
    }

    fn run(&self, invocation: &Invocation, timeout: Duration) -> Result<Output, VirshError> {
        self.call(invocation, Limit::Timeout(timeout))
    }

    fn transfer(&self, invocation: &Invocation, watch: &Watch) -> Result<Output, VirshError> {
        self.call(invocation, Limit::Watch(watch))
    }

    fn begin_work(&self) {
        self.work.fetch_add(1, Ordering::SeqCst);
    }

    fn end_work(&self, close: bool) {
        let left = self.work.fetch_sub(1, Ordering::SeqCst) - 1;
        if close && left == 0 {
            let pools: Vec<Arc<Pool>> = lock(&self.pools).values().cloned().collect();
            for pool in pools {
                pool.close_idle();
            }
        } else {
            // Its last idle session may go to a host that waits.
            self.budget.offer();
        }
    }
}

/// Whether the call can go on one line of virsh's shell: readline acts on
/// control characters, and a newline would end the command early.
fn fits_a_line(invocation: &Invocation) -> bool {
    invocation
        .commands
        .iter()
        .flatten()
        .all(|word| !word.chars().any(char::is_control))
}

/// A session's line longer than this costs more than a process of its own
/// would, where a new connection is cheap: readline takes a line a byte at
/// a time, two `pselect` and a `read` for each (about 1.2 µs a byte; 1005
/// domains' `dumpxml` batch is 41 KiB), against about 15 ms to start a
/// virsh and connect it to the local libvirtd.
const LONGEST_SESSION_LINE: usize = 16 * 1024;

/// Whether the call's line is long, and a process of its own connects
/// cheaply.
fn cheaper_as_a_process(invocation: &Invocation) -> bool {
    connects_cheaply(invocation.connect.as_deref())
        && script(&invocation.commands).len() > LONGEST_SESSION_LINE
}

/// Whether a new virsh connects in a few milliseconds: to a local
/// libvirtd's socket. Not over the network (a handshake each time, the
/// reason for sessions), not the test driver (each virsh parses its node
/// file again), not virsh's default URI (which could be either).
pub(crate) fn connects_cheaply(connect: Option<&str>) -> bool {
    connect.is_some_and(|uri| {
        let uri = Uri::parse(uri);
        !uri.is_remote() && uri.driver() != "test"
    })
}

fn replayable(invocation: &Invocation) -> bool {
    invocation.commands.iter().all(|words| {
        words
            .first()
            .is_some_and(|c| READ_ONLY.contains(&c.as_str()))
    })
}

#[cfg(test)]
mod tests;
