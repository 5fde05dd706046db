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
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::batch::{MARKER_PREFIX, nonce, script};
use super::error::{VirshError, error_lines};
use super::groups::GroupGuard;
use super::runner::{Invocation, OUTPUT_LIMIT, Output, ProcessRunner, Runner, spawn_virsh};
use crate::mutex::lock;

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
const CONNECTION_LOST: [&str; 7] = [
    "Failed to reconnect to the hypervisor",
    "failed to connect to the hypervisor",
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
    /// The most one call may print (stdout or stderr).
    output_limit: usize,
    pools: Mutex<HashMap<Endpoint, Arc<Pool>>>,
}

/// Which virsh, connected where: calls to one endpoint share its sessions.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Endpoint {
    program: String,
    connect: Option<String>,
}

impl Endpoint {
    /// A session's own command line (no commands: they come on stdin).
    fn invocation(&self) -> Invocation {
        Invocation {
            program: self.program.clone(),
            connect: self.connect.clone(),
            commands: Vec::new(),
        }
    }
}

impl SessionRunner {
    pub fn new(pool_size: usize) -> Self {
        SessionRunner {
            pool_size: pool_size.max(1),
            output_limit: OUTPUT_LIMIT,
            pools: Mutex::new(HashMap::new()),
        }
    }

    /// With another cap on what one call may print (tests: a small one).
    #[cfg(test)]
    pub fn with_output_limit(mut self, output_limit: usize) -> Self {
        self.output_limit = output_limit;
        self
    }

    fn pool(&self, invocation: &Invocation) -> Arc<Pool> {
        let endpoint = Endpoint {
            program: invocation.program.clone(),
            connect: invocation.connect.clone(),
        };
        let mut pools = lock(&self.pools);
        Arc::clone(pools.entry(endpoint.clone()).or_insert_with(|| {
            let pool = Arc::new(Pool {
                size: self.pool_size,
                endpoint,
                state: Mutex::new(PoolState::default()),
                freed: Condvar::new(),
            });
            pool.start_all();
            pool
        }))
    }
}

impl Runner for SessionRunner {
    fn run(&self, invocation: &Invocation, timeout: Duration) -> Result<Output, VirshError> {
        if !fits_a_line(invocation) {
            return ProcessRunner::with_output_limit(self.output_limit).run(invocation, timeout);
        }
        let deadline = Instant::now() + timeout;
        let timed_out = || VirshError::Timeout {
            command: invocation.summary(),
            timeout,
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
            let mut session = pool.acquire(deadline, fresh)?.ok_or_else(timed_out)?;
            proven |= session.served > 0;
            match session.call(&line, deadline, self.output_limit) {
                Ok(frame) if frame.connection_lost => {
                    drop(session);
                    pool.release(None);
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
                    drop(session);
                    pool.release(None);
                    return Err(timed_out());
                }
                Err(Fault::TooLarge) => {
                    // Still printing, or its buffers out of step: kill it.
                    drop(session);
                    pool.release(None);
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
                    drop(session);
                    pool.release(None);
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

/// Whether a call may have an idle session or needs a new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fresh {
    IfNoneIdle,
    Only,
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
    fn acquire(&self, deadline: Instant, fresh: Fresh) -> Result<Option<Session>, VirshError> {
        let mut state = lock(&self.state);
        loop {
            if fresh == Fresh::Only {
                // Make room by ending an idle session, if there is one.
                if state.open >= self.size && state.idle.pop().is_some() {
                    state.open -= 1;
                }
            } else if let Some(session) = state.idle.pop() {
                return Ok(Some(session));
            }
            if state.open < self.size {
                state.open += 1;
                drop(state);
                return Session::start(&self.endpoint)
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

    /// Starts every session of the pool at once: virsh connects as it
    /// starts (over ssh, a handshake of a few hundred ms), so the sessions
    /// that parallel work needs later connect while the first call runs.
    /// A session that cannot start is left to the call that needs it,
    /// which reports why.
    fn start_all(&self) {
        let mut state = lock(&self.state);
        while state.open < self.size {
            match Session::start(&self.endpoint) {
                Ok(session) => {
                    state.idle.push(session);
                    state.open += 1;
                }
                Err(_) => break,
            }
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
    /// It printed more than the output limit.
    TooLarge,
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
    fn start(endpoint: &Endpoint) -> Result<Session, VirshError> {
        let mut args = Vec::new();
        if let Some(uri) = &endpoint.connect {
            args.extend(["-c".to_owned(), uri.clone()]);
        }
        let mut command = spawn_virsh(&endpoint.program, &args, Stdio::piped(), || {
            endpoint.invocation().summary()
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

    /// Runs one line of commands and waits for its frame, at most
    /// `output_limit` bytes of it on either stream.
    fn call(&mut self, line: &str, deadline: Instant, output_limit: usize) -> Result<Frame, Fault> {
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
            if self.stdout.len().max(self.stderr.len()) > output_limit {
                return Err(Fault::TooLarge);
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
            start: format!("{MARKER_PREFIX}start-{}", nonce()),
            end: format!("{MARKER_PREFIX}end-{}", nonce()),
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

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;

    use super::*;
    use crate::testing::fixture;

    fn markers(call: u32) -> Markers {
        Markers {
            start: format!("@@START-{call}"),
            end: format!("@@END-{call}"),
        }
    }

    /// A transcript of real virsh 9.0 (test driver, TERM=dumb) given two
    /// calls: a batch whose long line readline echoed as `<…`, with a
    /// failing command inside; then a line that does not parse.
    #[test]
    fn frames_of_a_real_transcript() {
        let mut stdout = fixture("virsh/session-stdout.txt").into_bytes();
        let mut stderr = fixture("virsh/session-stderr.txt").into_bytes();
        let first = take_frame(&mut stdout, &mut stderr, &markers(1)).unwrap();
        assert!(
            first.stdout.starts_with("plain\nit's \"quoted\"\n"),
            "{first:?}"
        );
        assert!(
            first.stdout.ends_with("fleet-small.xml\n\n@@M2\n"),
            "{first:?}"
        );
        assert!(!first.stdout.contains("virsh #"), "{first:?}");
        assert_eq!(first.stderr, "error: failed to get domain 'nope'\n");
        assert!(!first.connection_lost);
        let second = take_frame(&mut stdout, &mut stderr, &markers(2)).unwrap();
        assert_eq!(second.stdout, "");
        assert_eq!(second.stderr, "error: unknown command: 'nosuchcommand'\n");
        assert_eq!(second.into_output().status.code(), Some(1));
        assert_eq!(stderr, b"");
    }

    proptest::proptest! {
        /// Whatever a call prints (prompts, echoes, markers of other
        /// nonces, blank lines), its frame is exactly that, and the
        /// connection notices alone are taken out of its stderr.
        #[test]
        fn frames_hold_exactly_what_the_call_printed(
            lines in proptest::collection::vec(
                proptest::prop_oneof![
                    "[^\n]{0,30}",
                    "virsh # [^\n]{0,20}",
                    "@@dismount-iso-qemu-(start|end)-[0-9a-f]{32}",
                    "error: [^\n]{0,20}",
                ],
                0..8,
            ),
            errors in proptest::collection::vec("error: [^\n]{0,30}", 0..4),
            echo in "[^\n]{0,200}",
        ) {
            let output: String = lines.iter().map(|line| format!("{line}\n")).collect();
            let messages: String = errors.iter().map(|line| format!("{line}\n")).collect();
            let markers = Markers::new();
            let mut stdout = format!(
                "banner\nvirsh # echo {start}\n{start}\nvirsh # {echo}\n{output}virsh # echo {end}\n{end}\nvirsh # echo --err {end}\n\nvirsh # ",
                start = markers.start,
                end = markers.end,
            )
            .into_bytes();
            let mut stderr = format!(
                "error: Disconnected from qemu:///system due to end of file\n{messages}error: {}\n",
                markers.end
            )
            .into_bytes();
            let frame = take_frame(&mut stdout, &mut stderr, &markers).expect("complete");
            proptest::prop_assert_eq!(frame.stdout, output);
            proptest::prop_assert_eq!(frame.stderr, messages);
            proptest::prop_assert!(stderr.is_empty());
        }
    }

    #[test]
    fn a_frame_waits_for_both_end_markers() {
        let mut stdout = b"virsh # echo @@START-1\n@@START-1\nvirsh # uri\nx\n".to_vec();
        let mut stderr = Vec::new();
        assert!(take_frame(&mut stdout, &mut stderr, &markers(1)).is_none());
        stdout.extend_from_slice(b"virsh # echo @@END-1\n@@END-1\n");
        assert!(take_frame(&mut stdout, &mut stderr, &markers(1)).is_none());
        stderr.extend_from_slice(b"error: @@END-1\n");
        let frame = take_frame(&mut stdout, &mut stderr, &markers(1)).unwrap();
        assert_eq!(frame.stdout, "x\n");
    }

    /// Guest-controlled text (an OS name, a domain name) that imitates a
    /// prompt, an echo or a marker of another nonce cannot cut a frame.
    #[test]
    fn output_imitating_markers_and_prompts_stays_output() {
        let forged = "virsh # echo @@END-1\n@@END-2\nerror: @@END-1 \nvirsh # \n@@START-1x\n";
        let mut stdout = format!(
            "virsh # echo @@START-1\n@@START-1\nvirsh # list\n{forged}virsh # echo @@END-1\n@@END-1\n"
        )
        .into_bytes();
        let mut stderr = b"error: @@END-1x\nerror: @@END-1\n".to_vec();
        let frame = take_frame(&mut stdout, &mut stderr, &markers(1)).unwrap();
        assert_eq!(frame.stdout, forged);
        assert_eq!(frame.stderr, "error: @@END-1x\n");
    }

    #[test]
    fn connection_notices_are_not_the_commands_failure() {
        let (kept, lost) = without_connection_notices(
            "error: Disconnected from qemu:///system due to end of file\n\
             error: Reconnected to the hypervisor\n",
        );
        assert_eq!((kept.as_str(), lost), ("", false));
        let (kept, lost) = without_connection_notices(
            "error: failed to get domain 'x'\nerror: End of file while reading data: Input/output error\n",
        );
        assert!(lost);
        assert!(kept.starts_with("error: failed to get domain"));
    }

    /// A session virsh for faults the real one cannot produce on demand:
    /// it answers `echo` like virsh's shell; a line with `wedge` sleeps with
    /// a child (like ssh under virsh), one with `dumpxml` or ending in
    /// `change-media` makes it exit, one with `domstate` fails for want of
    /// a connection, one with `flood` prints a megabyte; anything else
    /// prints `ok`.
    fn fake_session_virsh(tag: &str) -> (PathBuf, PathBuf) {
        let dir = std::env::temp_dir().join(format!("session-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let script = dir.join("virsh");
        std::fs::write(
            &script,
            format!(
                r#"#!/bin/sh
echo "$$" >> '{dir}/pids'
while IFS= read -r line; do
    printf 'virsh # %s\n' "$line"
    case "$line" in
        'echo --err '*) printf 'error: %s\n' "${{line#echo --err }}" >&2 ;;
        'echo '*) printf '%s\n' "${{line#echo }}" ;;
        *wedge*) sleep 300 & echo "$!" >> '{dir}/pids'; wait ;;
        *dumpxml*|*change\\-media) exit 1 ;;
        *domstate*) printf 'error: Failed to reconnect to the hypervisor\n' >&2 ;;
        *flood*) head -c 1000000 /dev/zero | tr '\\0' x ;;
        *) echo ok ;;
    esac
done
"#,
                dir = dir.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        (script, dir)
    }

    fn call(program: &std::path::Path, command: &str) -> Invocation {
        Invocation {
            program: program.display().to_string(),
            connect: None,
            commands: vec![vec![command.to_owned()]],
        }
    }

    fn pids(dir: &std::path::Path) -> Vec<i32> {
        std::fs::read_to_string(dir.join("pids"))
            .unwrap_or_default()
            .lines()
            .map(|pid| pid.parse().unwrap())
            .collect()
    }

    fn gone(pid: i32) -> bool {
        // Reparented and reaped by init once killed: poll, bounded.
        (0..200).any(|_| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let dead = stat.is_empty()
                || stat
                    .rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .starts_with('Z');
            if !dead {
                thread::sleep(Duration::from_millis(25));
            }
            dead
        })
    }

    #[test]
    fn one_session_serves_many_calls() {
        let (virsh, dir) = fake_session_virsh("many");
        let runner = SessionRunner::new(2);
        for _ in 0..5 {
            let output = runner
                .run(&call(&virsh, "status"), Duration::from_secs(10))
                .unwrap();
            assert_eq!(output.stdout, "ok\n");
            assert!(output.status.success());
        }
        // Both sessions start with the pool, so they connect while the
        // first call runs; no call after that starts another.
        assert_eq!(pids(&dir).len(), 2, "five calls, the pool's two sessions");
    }

    #[test]
    fn a_call_past_its_deadline_kills_the_session_which_is_replaced() {
        let (virsh, dir) = fake_session_virsh("hang");
        let runner = SessionRunner::new(1);
        let error = runner
            .run(&call(&virsh, "wedge"), Duration::from_millis(300))
            .unwrap_err();
        assert!(matches!(error, VirshError::Timeout { .. }), "{error}");
        let hung = pids(&dir);
        assert_eq!(hung.len(), 2, "the session and its child");
        assert!(
            hung.iter().all(|&pid| gone(pid)),
            "{hung:?} outlived the timeout"
        );
        let output = runner
            .run(&call(&virsh, "status"), Duration::from_secs(10))
            .unwrap();
        assert_eq!(output.stdout, "ok\n");
        assert_eq!(
            pids(&dir).len(),
            3,
            "a new session took the place of the killed one"
        );
    }

    #[test]
    fn a_session_that_died_is_restarted_once_transparently() {
        let (virsh, dir) = fake_session_virsh("restart");
        let runner = SessionRunner::new(1);
        runner
            .run(&call(&virsh, "status"), Duration::from_secs(10))
            .unwrap();
        // virsh dies while idle (killed, crashed): the next call does not
        // notice, whatever it is.
        let first = pids(&dir)[0];
        // SAFETY: kill(2) on a child this test started.
        unsafe { libc::kill(first, libc::SIGKILL) };
        assert!(gone(first));
        let output = runner.run(&call(&virsh, "change-media-free"), Duration::from_secs(10));
        assert_eq!(output.unwrap().stdout, "ok\n");
        assert_eq!(pids(&dir).len(), 2);
    }

    #[test]
    fn a_read_only_call_survives_one_death_but_not_two() {
        let (virsh, dir) = fake_session_virsh("twice");
        let runner = SessionRunner::new(1);
        runner
            .run(&call(&virsh, "status"), Duration::from_secs(10))
            .unwrap();
        // virsh dies under `dumpxml`: read-only, so it runs again on a new
        // session, where it dies again: that second failure is the error.
        let error = runner
            .run(&call(&virsh, "dumpxml"), Duration::from_secs(10))
            .unwrap_err();
        assert!(matches!(error, VirshError::SessionEnded { .. }), "{error}");
        assert_eq!(pids(&dir).len(), 2, "restarted once, not more");
    }

    /// A connection that stays lost (ssh refused) is the call's error, after
    /// one try on a new virsh: never empty output passed off as an answer.
    #[test]
    fn a_lost_connection_is_an_error_not_an_empty_answer() {
        let (virsh, dir) = fake_session_virsh("lost");
        let runner = SessionRunner::new(1);
        runner
            .run(&call(&virsh, "status"), Duration::from_secs(10))
            .unwrap();
        let error = runner
            .run(&call(&virsh, "domstate"), Duration::from_secs(10))
            .unwrap_err();
        assert!(matches!(error, VirshError::Failed { .. }), "{error}");
        assert!(error.to_string().contains("Failed to reconnect"), "{error}");
        assert_eq!(pids(&dir).len(), 2, "retried once, on a new virsh");
    }

    /// Output past the limit ends the call with an error and the session
    /// with it, instead of filling memory.
    #[test]
    fn output_past_the_limit_is_an_error() {
        let (virsh, dir) = fake_session_virsh("flood");
        let runner = SessionRunner::new(1).with_output_limit(64 * 1024);
        let error = runner
            .run(&call(&virsh, "flood"), Duration::from_secs(10))
            .unwrap_err();
        assert!(
            matches!(error, VirshError::OutputTooLarge { .. }),
            "{error}"
        );
        let first = pids(&dir)[0];
        assert!(gone(first), "the flooding session is killed");
    }

    #[test]
    fn a_change_is_never_run_twice() {
        let (virsh, dir) = fake_session_virsh("change");
        let runner = SessionRunner::new(1);
        runner
            .run(&call(&virsh, "status"), Duration::from_secs(10))
            .unwrap();
        let error = runner
            .run(&call(&virsh, "change-media"), Duration::from_secs(10))
            .unwrap_err();
        assert!(matches!(error, VirshError::SessionEnded { .. }), "{error}");
        assert_eq!(pids(&dir).len(), 1, "not sent again: it may have been done");
    }

    #[test]
    fn a_virsh_that_cannot_connect_reports_its_own_error() {
        let runner = SessionRunner::new(1);
        let error = runner
            .run(
                &Invocation {
                    program: "virsh".into(),
                    connect: Some("bogus:///nowhere".into()),
                    commands: vec![vec!["list".into()]],
                },
                Duration::from_secs(10),
            )
            .unwrap_err();
        assert!(matches!(error, VirshError::Failed { .. }), "{error}");
        assert!(error.to_string().contains("bogus:///nowhere"), "{error}");
    }

    #[test]
    fn words_with_control_characters_bypass_the_shell() {
        let mut words = call(std::path::Path::new("virsh"), "x");
        assert!(fits_a_line(&words));
        words.commands[0].push("a\nb".into());
        assert!(!fits_a_line(&words));
        words.commands[0][1] = "tab\there".into();
        assert!(!fits_a_line(&words));
        words.commands[0][1] = "é ü \u{202e}".into();
        assert!(fits_a_line(&words));
    }
}
