//! One long-lived virsh: its process group, its stdin, both of its pipes
//! drained on threads of their own, and one call at a time framed.

use std::io::Write;
use std::process::{Child, ChildStdin, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use super::endpoint::Endpoint;
use super::frame::{Frame, Markers, take_frame};
use crate::virsh::error::VirshError;
use crate::virsh::groups::GroupGuard;
use crate::virsh::pipes::{Event, Stream, pump};
use crate::virsh::process::spawn_virsh;
use crate::virsh::runner::{Halt, WATCH_POLL, Watcher};

/// How long a call may take.
pub(super) enum Patience<'a> {
    /// Until a deadline.
    Until(Instant),
    /// As long as a transfer's watch allows.
    Watched(Watcher<'a>),
}

/// Why a call got no frame.
pub(super) enum Fault {
    /// The deadline passed.
    Timeout,
    /// A transfer's watch ended it.
    Halted(Halt),
    /// It printed more than the output limit.
    TooLarge,
    /// virsh's stdout closed; `unsent` when the call was never written.
    Ended { unsent: bool },
}

/// One long-lived virsh.
pub(super) struct Session {
    child: Child,
    group: GroupGuard,
    stdin: ChildStdin,
    /// Chunks from both pipes; `None` is a pipe's end of file.
    events: Receiver<Event>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    stdout_open: bool,
    /// Calls answered so far.
    pub(super) served: usize,
}

impl Session {
    pub(super) fn start(endpoint: &Endpoint) -> Result<Session, VirshError> {
        let (mut command, group) = spawn_virsh(&endpoint.invocation(), Stdio::piped())?;
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
    pub(super) fn call(
        &mut self,
        line: &str,
        patience: &mut Patience,
        output_limit: usize,
    ) -> Result<Frame, Fault> {
        let markers = Markers::new();
        let request = markers.around(line);
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
            let left = match patience {
                Patience::Until(deadline) => deadline.saturating_duration_since(Instant::now()),
                Patience::Watched(watcher) => match watcher.halt() {
                    Some(halt) => return Err(Fault::Halted(halt)),
                    None => WATCH_POLL,
                },
            };
            match self.events.recv_timeout(left) {
                Ok(event) => self.absorb(event),
                Err(RecvTimeoutError::Timeout) => {
                    if let Patience::Until(_) = patience {
                        return Err(Fault::Timeout);
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(Fault::Ended { unsent: false });
                }
            }
        }
    }

    fn absorb(&mut self, (stream, chunk): Event) {
        match (stream, chunk) {
            (Stream::Stdout, Some(bytes)) => self.stdout.extend_from_slice(&bytes),
            (Stream::Stderr, Some(bytes)) => self.stderr.extend_from_slice(&bytes),
            (Stream::Stdout, None) => self.stdout_open = false,
            (Stream::Stderr, None) => {}
        }
    }

    /// Waits (briefly) for a virsh whose stdout has closed, collecting
    /// what it wrote to stderr on its way out.
    pub(super) fn finish(&mut self) -> std::io::Result<ExitStatus> {
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

    pub(super) fn take_stderr(&mut self) -> String {
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
