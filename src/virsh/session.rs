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
//! - a connection lost while idle (libvirtd restarted, ssh killed) is
//!   reported on stderr at once (`error: Disconnected from …`) and made
//!   again by the next command (`error: Reconnected to the hypervisor`):
//!   neither is that command's failure;
//! - when the first connection fails, virsh exits with the error.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, ChildStdin, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use super::batch::{nonce, script};
use super::error::{VirshError, error_lines};
use super::groups::GroupGuard;
use super::runner::{Invocation, Output, ProcessRunner, Runner, spawn_virsh};

/// Commands that only read, so running one again after a lost connection
/// cannot change a VM twice.
const READ_ONLY: [&str; 13] = [
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
    "vol-list",
    "vol-info",
];

/// virsh's words for a connection that went away under a command; a
/// command that failed with one of them is run again once on a new
/// session.
const CONNECTION_LOST: [&str; 5] = [
    "End of file while reading data",
    "client socket is closed",
    "Cannot recv data",
    "Cannot write data",
    "no valid connection",
];

/// Runs every call on a long-lived virsh of its connection: at most
/// `pool_size` of them per connection, started on demand and kept for the
/// life of the runner.
pub struct SessionRunner {
    pool_size: usize,
    pools: Mutex<HashMap<Endpoint, Arc<Pool>>>,
}

/// Which virsh, connected where: calls to one endpoint share its sessions.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Endpoint {
    program: String,
    connect: Option<String>,
}

impl SessionRunner {
    pub fn new(pool_size: usize) -> Self {
        SessionRunner {
            pool_size: pool_size.max(1),
            pools: Mutex::new(HashMap::new()),
        }
    }

    fn pool(&self, invocation: &Invocation) -> Arc<Pool> {
        let endpoint = Endpoint {
            program: invocation.program.clone(),
            connect: invocation.connect.clone(),
        };
        let mut pools = lock(&self.pools);
        Arc::clone(pools.entry(endpoint.clone()).or_insert_with(|| {
            Arc::new(Pool {
                endpoint,
                size: self.pool_size,
                state: Mutex::new(PoolState::default()),
                freed: Condvar::new(),
            })
        }))
    }
}

impl Runner for SessionRunner {
    fn run(&self, invocation: &Invocation, timeout: Duration) -> Result<Output, VirshError> {
        if !fits_a_line(invocation) {
            return ProcessRunner.run(invocation, timeout);
        }
        let deadline = Instant::now() + timeout;
        let timed_out = || VirshError::Timeout {
            command: invocation.summary(),
            timeout,
        };
        let pool = self.pool(invocation);
        let line = script(&invocation.commands);
        let mut retried = false;
        loop {
            let mut session = pool.acquire(deadline, invocation)?.ok_or_else(timed_out)?;
            let proven = session.served > 0;
            match session.call(&line, deadline) {
                Ok(frame) if frame.connection_lost && !retried && replayable(invocation) => {
                    drop(session);
                    pool.release(None);
                    retried = true;
                }
                Ok(frame) => {
                    pool.release(Some(session));
                    return Ok(frame.into_output());
                }
                Err(Fault::Timeout) => {
                    // The hung command holds this virsh: kill it, and let
                    // the next call start a new one.
                    drop(session);
                    pool.release(None);
                    return Err(timed_out());
                }
                // A virsh that had been working died under or before this
                // call: one new session, once. One that never answered
                // failed to connect: its own words are the error.
                Err(Fault::Ended { unsent })
                    if proven && !retried && (unsent || replayable(invocation)) =>
                {
                    drop(session);
                    pool.release(None);
                    retried = true;
                }
                Err(Fault::Ended { .. }) => {
                    let ended = session.finish();
                    pool.release(None);
                    return Err(match ended {
                        Ok(status) if !proven => VirshError::Failed {
                            command: invocation.summary(),
                            status,
                            stderr: session.take_stderr(),
                        },
                        _ => VirshError::SessionEnded {
                            command: invocation.summary(),
                            stderr: error_lines(&session.take_stderr()),
                        },
                    });
                }
            }
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

fn replayable(invocation: &Invocation) -> bool {
    invocation.commands.iter().all(|words| {
        words
            .first()
            .is_some_and(|c| READ_ONLY.contains(&c.as_str()))
    })
}

/// The sessions of one endpoint.
struct Pool {
    endpoint: Endpoint,
    size: usize,
    state: Mutex<PoolState>,
    freed: Condvar,
}

#[derive(Default)]
struct PoolState {
    idle: Vec<Session>,
    /// Sessions alive, idle or lent out, or being started.
    open: usize,
}

impl Pool {
    /// An idle session, a new one while the pool has room, or the next
    /// one handed back; `None` when the deadline passes first.
    fn acquire(
        &self,
        deadline: Instant,
        invocation: &Invocation,
    ) -> Result<Option<Session>, VirshError> {
        let mut state = lock(&self.state);
        loop {
            if let Some(session) = state.idle.pop() {
                return Ok(Some(session));
            }
            if state.open < self.size {
                state.open += 1;
                drop(state);
                return Session::start(&self.endpoint, invocation)
                    .map(Some)
                    .inspect_err(|_| self.release(None));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            state = self
                .freed
                .wait_timeout(state, left)
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
        }
    }

    /// Hands a session back, or with `None` gives up its place.
    fn release(&self, session: Option<Session>) {
        let mut state = lock(&self.state);
        match session {
            Some(session) => state.idle.push(session),
            None => state.open -= 1,
        }
        self.freed.notify_one();
    }
}

/// Which pipe a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stream {
    Stdout,
    Stderr,
}

/// Why a call got no frame.
enum Fault {
    /// The deadline passed.
    Timeout,
    /// virsh's stdout closed; `unsent` when the call was never written.
    Ended { unsent: bool },
}

/// One long-lived virsh.
struct Session {
    child: Child,
    group: GroupGuard,
    stdin: ChildStdin,
    /// Chunks from both pipes; `None` is a pipe's end of file.
    events: Receiver<(Stream, Option<Vec<u8>>)>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    stdout_open: bool,
    /// Calls answered so far.
    served: usize,
}

impl Session {
    fn start(endpoint: &Endpoint, invocation: &Invocation) -> Result<Session, VirshError> {
        let mut args = Vec::new();
        if let Some(uri) = &endpoint.connect {
            args.extend(["-c".to_owned(), uri.clone()]);
        }
        let mut command = spawn_virsh(&endpoint.program, &args, Stdio::piped(), || {
            invocation.summary()
        })?;
        let group = GroupGuard::register(command.id());
        let stdin = command.stdin.take().expect("stdin is piped");
        let (sender, events) = mpsc::channel();
        pump(command.stdout.take(), Stream::Stdout, sender.clone());
        pump(command.stderr.take(), Stream::Stderr, sender);
        Ok(Session {
            child: command,
            group,
            stdin,
            events,
            stdout: Vec::new(),
            stderr: Vec::new(),
            stdout_open: true,
            served: 0,
        })
    }

    /// Runs one line of commands and waits for its frame.
    fn call(&mut self, line: &str, deadline: Instant) -> Result<Frame, Fault> {
        let markers = Markers::new();
        let request = format!(
            "echo {start}\n{line}\necho {end}\necho --err {end}\n",
            start = markers.start,
            end = markers.end
        );
        if self
            .stdin
            .write_all(request.as_bytes())
            .and_then(|()| self.stdin.flush())
            .is_err()
        {
            return Err(Fault::Ended { unsent: true });
        }
        loop {
            if let Some(frame) = take_frame(&mut self.stdout, &mut self.stderr, &markers) {
                self.served += 1;
                return Ok(frame);
            }
            if !self.stdout_open {
                return Err(Fault::Ended { unsent: false });
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(event) => self.absorb(event),
                Err(RecvTimeoutError::Timeout) => return Err(Fault::Timeout),
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(Fault::Ended { unsent: false });
                }
            }
        }
    }

    fn absorb(&mut self, (stream, chunk): (Stream, Option<Vec<u8>>)) {
        match (stream, chunk) {
            (Stream::Stdout, Some(bytes)) => self.stdout.extend_from_slice(&bytes),
            (Stream::Stderr, Some(bytes)) => self.stderr.extend_from_slice(&bytes),
            (Stream::Stdout, None) => self.stdout_open = false,
            (Stream::Stderr, None) => {}
        }
    }

    /// Waits (briefly) for a virsh whose stdout has closed, collecting
    /// what it wrote to stderr on its way out.
    fn finish(&mut self) -> std::io::Result<ExitStatus> {
        let until = Instant::now() + EXIT_GRACE;
        while let Ok(event) = self
            .events
            .recv_timeout(until.saturating_duration_since(Instant::now()))
        {
            self.absorb(event);
        }
        self.group.kill();
        self.child.wait()
    }

    fn take_stderr(&mut self) -> String {
        String::from_utf8_lossy(&std::mem::take(&mut self.stderr)).into_owned()
    }
}

/// How long a virsh that closed its stdout gets to finish its stderr.
const EXIT_GRACE: Duration = Duration::from_millis(250);

impl Drop for Session {
    fn drop(&mut self) {
        self.group.kill();
        let _ = self.child.wait();
    }
}

/// Reads one pipe on its own thread until end of file, so that neither
/// pipe can fill up and block virsh while the other is waited on.
fn pump(
    pipe: Option<impl Read + Send + 'static>,
    stream: Stream,
    events: Sender<(Stream, Option<Vec<u8>>)>,
) {
    let Some(mut pipe) = pipe else { return };
    thread::spawn(move || {
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            match pipe.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if events.send((stream, Some(chunk[..n].to_vec()))).is_err() {
                        return;
                    }
                }
            }
        }
        let _ = events.send((stream, None));
    });
}

/// The two secret lines around one call's output.
struct Markers {
    start: String,
    end: String,
}

impl Markers {
    fn new() -> Self {
        Markers {
            start: format!("@@dismount-iso-qemu-start-{}", nonce()),
            end: format!("@@dismount-iso-qemu-end-{}", nonce()),
        }
    }
}

/// What one call printed.
#[derive(Debug, PartialEq, Eq)]
struct Frame {
    stdout: String,
    /// Without virsh's notices about its connection.
    stderr: String,
    /// The connection went away under the call.
    connection_lost: bool,
}

impl Frame {
    /// As a process would report it. A shell has no exit status per
    /// command: an `error:` line is a failure, as it is in batch mode.
    fn into_output(self) -> Output {
        let failed = self.stderr.lines().any(|line| line.starts_with("error: "));
        Output {
            status: ExitStatus::from_raw(i32::from(failed) << 8),
            stdout: self.stdout,
            stderr: self.stderr,
        }
    }
}

/// Cuts one call's frame out of what a session printed, once both of its
/// end markers have arrived; what precedes the frame (the banner, the
/// previous call's trailing echoes) is dropped with it.
///
/// On stdout a frame reads: the start marker's line, the echo of the
/// call's line (one line, whatever readline made of it), the output, the
/// echo of `echo END`, and the end marker's line. On stderr: the call's messages, then
/// `error: END`.
fn take_frame(stdout: &mut Vec<u8>, stderr: &mut Vec<u8>, markers: &Markers) -> Option<Frame> {
    let end_line = format!("{}\n", markers.end);
    let err_line = format!("error: {}\n", markers.end);
    // stderr first: it is short, and its marker comes last, so a long
    // stdout is searched once or twice per call, not at every chunk.
    let err_at = find_line(stderr, err_line.as_bytes())?;
    let end_at = find_line(stdout, end_line.as_bytes())?;
    let start_line = format!("{}\n", markers.start);
    // The start marker is always before the end one; without it the output
    // is not what this call printed, and nothing of it can be trusted.
    let output = find_line(&stdout[..end_at], start_line.as_bytes()).map(|start| {
        let after_marker = start + start_line.len();
        let region = &stdout[after_marker..end_at];
        // The echo of the call's line.
        let body = skip_line(region);
        // The last line before the end marker is `echo END`'s echo.
        let echo = body[..body.len().saturating_sub(1)]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |newline| newline + 1);
        String::from_utf8_lossy(&body[..echo]).into_owned()
    });
    let (mut messages, connection_lost) =
        without_connection_notices(&String::from_utf8_lossy(&stderr[..err_at]));
    if output.is_none() {
        messages.push_str("error: virsh's output lost this call's start marker\n");
    }
    stdout.drain(..end_at + end_line.len());
    stderr.drain(..err_at + err_line.len());
    Some(Frame {
        stdout: output.unwrap_or_default(),
        stderr: messages,
        connection_lost,
    })
}

/// Drops virsh's notices about its connection (printed whenever it is
/// lost or made again, whatever the command) and says whether the call
/// itself failed for want of one.
fn without_connection_notices(stderr: &str) -> (String, bool) {
    let mut lost = false;
    let mut kept = String::new();
    for line in stderr.split_inclusive('\n') {
        let message = line.trim_end_matches('\n');
        if message.starts_with("error: Disconnected from ")
            || message == "error: Reconnected to the hypervisor"
        {
            continue;
        }
        lost |= message.starts_with("error: ")
            && CONNECTION_LOST.iter().any(|words| message.contains(words));
        kept.push_str(line);
    }
    (kept, lost)
}

/// The bytes after the first newline (nothing when there is none).
fn skip_line(bytes: &[u8]) -> &[u8] {
    bytes
        .iter()
        .position(|&b| b == b'\n')
        .map_or(&[][..], |newline| &bytes[newline + 1..])
}

/// Byte offset of `line` where it stands as a whole line in `text`.
fn find_line(text: &[u8], line: &[u8]) -> Option<usize> {
    let mut from = 0;
    while from + line.len() <= text.len() {
        let found = text[from..]
            .windows(line.len())
            .position(|window| window == line)?;
        let at = from + found;
        if at == 0 || text[at - 1] == b'\n' {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
