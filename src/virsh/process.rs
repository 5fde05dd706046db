//! Every virsh call as a process of its own: spawned from argv, never a
//! shell, with `LC_ALL=C.UTF-8` and no `LANGUAGE`, in a process group of
//! its own that a timeout kills whole, its pipes drained and decoded
//! lossily, and its leader always reaped.

use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use super::error::VirshError;
use super::groups::GroupGuard;
use super::invocation::Invocation;
use super::pipes::Drain;
use super::runner::{OUTPUT_LIMIT, Output, Runner};

/// Spawns one process per call.
#[derive(Debug, Clone, Copy)]
pub struct ProcessRunner {
    output_limit: usize,
}

impl Default for ProcessRunner {
    fn default() -> Self {
        ProcessRunner {
            output_limit: OUTPUT_LIMIT,
        }
    }
}

impl ProcessRunner {
    /// With another cap on what one call may print.
    pub fn with_output_limit(output_limit: usize) -> Self {
        ProcessRunner { output_limit }
    }
}

impl Runner for ProcessRunner {
    fn run(&self, invocation: &Invocation, timeout: Duration) -> Result<Output, VirshError> {
        let deadline = Instant::now() + timeout;
        let mut child = spawn_virsh(invocation, Stdio::null())?;
        // Registered until the leader is reaped, so that any exit of the
        // tool kills the group.
        let group = GroupGuard::register(child.id());
        let stdout = Drain::start(child.stdout.take(), self.output_limit);
        let stderr = Drain::start(child.stderr.take(), self.output_limit);
        let status = wait_until(child, &group, deadline);
        match status {
            Some(Ok(status)) => {
                let (stdout, stderr) = (stdout.finish(), stderr.finish());
                match (stdout, stderr) {
                    (Some(stdout), Some(stderr)) => Ok(Output {
                        status,
                        stdout,
                        stderr,
                    }),
                    _ => Err(VirshError::OutputTooLarge {
                        command: invocation.summary(),
                        limit: self.output_limit,
                    }),
                }
            }
            Some(Err(source)) => Err(VirshError::Spawn {
                command: invocation.summary(),
                source,
            }),
            None => Err(VirshError::Timeout {
                command: invocation.summary(),
                timeout,
            }),
        }
    }
}

/// A process per call, each within what is left of one deadline for
/// them all: a completion's calls together never outlast it. A call past
/// the deadline is not started.
#[derive(Debug, Clone, Copy)]
pub struct DeadlineRunner {
    deadline: Instant,
}

impl DeadlineRunner {
    pub fn new(deadline: Instant) -> Self {
        DeadlineRunner { deadline }
    }
}

impl Runner for DeadlineRunner {
    fn run(&self, invocation: &Invocation, timeout: Duration) -> Result<Output, VirshError> {
        let left = timeout.min(self.deadline.saturating_duration_since(Instant::now()));
        if left.is_zero() {
            return Err(VirshError::Timeout {
                command: invocation.summary(),
                timeout,
            });
        }
        ProcessRunner::default().run(invocation, left)
    }
}

/// Starts `invocation` the one way the tool ever does: from argv, with
/// stdout and stderr piped, in a process group of its own.
pub(super) fn spawn_virsh(invocation: &Invocation, stdin: Stdio) -> Result<Child, VirshError> {
    Command::new(&invocation.program)
        .args(invocation.args())
        // English labels and messages whatever the admin's locale, while
        // non-ASCII domain names stay intact (plain `C` mangles them).
        // LANGUAGE outranks LC_ALL for messages, so it must go.
        .env("LC_ALL", "C.UTF-8")
        .env_remove("LANGUAGE")
        // A session's lines go through readline: no key bindings from the
        // admin's ~/.inputrc, and one echo behaviour whatever the terminal.
        .env("INPUTRC", "/dev/null")
        .env("TERM", "dumb")
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so a timeout can kill the helpers virsh
        // starts (ssh for qemu+ssh://) along with it.
        .process_group(0)
        .spawn()
        .map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                VirshError::NotFound {
                    program: invocation.program.clone(),
                }
            } else if source.raw_os_error() == Some(libc::EMFILE) {
                super::descriptors::note_ran_out();
                VirshError::NoDescriptors {
                    command: invocation.summary(),
                }
            } else {
                VirshError::Spawn {
                    command: invocation.summary(),
                    source,
                }
            }
        })
}

/// Waits for `child` until `deadline`; past it, kills the child's whole
/// process group and returns `None`.
fn wait_until(
    child: Child,
    group: &GroupGuard,
    deadline: Instant,
) -> Option<std::io::Result<ExitStatus>> {
    let receiver = reap_on_thread(child);
    let remaining = deadline.saturating_duration_since(Instant::now());
    match receiver.recv_timeout(remaining) {
        Ok(status) => Some(status),
        Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
            group.kill();
            let _ = receiver.recv();
            None
        }
    }
}

/// Waits for `child` on a thread that owns it, so the leader is always
/// reaped, even after a kill; its group id stays reserved until then, so
/// a kill of the group cannot hit a recycled pid.
fn reap_on_thread(mut child: Child) -> Receiver<std::io::Result<ExitStatus>> {
    let (sender, exited) = mpsc::channel();
    thread::spawn(move || {
        let _ = sender.send(child.wait());
    });
    exited
}

/// What a transfer through one virsh process came to.
#[derive(Debug)]
pub struct Transfer {
    pub status: ExitStatus,
    pub stderr: String,
    /// Killed after its `stall` without a byte moving.
    pub stalled: bool,
    /// What feeding its stdin came to (`Ok` without a feed).
    pub fed: std::io::Result<()>,
}

/// How often a transfer's progress is looked at.
const TRANSFER_POLL: Duration = Duration::from_millis(100);

/// Runs `invocation` as a process of its own with no deadline as a whole,
/// for a transfer that takes as long as its bytes do (`vol-upload`,
/// `vol-download`). `feed` writes its stdin on a thread of its own: stdin
/// is closed when `feed` returns `Ok`, and on `Err` the process group is
/// killed first, so virsh never takes a short input for a whole file.
/// The group is also killed once `moved()` has not changed for `stall`:
/// a connection that hangs ends the transfer instead of the tool.
pub fn run_transfer(
    invocation: &Invocation,
    stall: Duration,
    feed: Option<impl FnOnce(&mut ChildStdin) -> std::io::Result<()> + Send>,
    moved: &(dyn Fn() -> u64 + Sync),
) -> Result<Transfer, VirshError> {
    let stdin = if feed.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    };
    let mut child = spawn_virsh(invocation, stdin)?;
    let group = GroupGuard::register(child.id());
    let input = child.stdin.take();
    let stdout = Drain::start(child.stdout.take(), OUTPUT_LIMIT);
    let stderr = Drain::start(child.stderr.take(), OUTPUT_LIMIT);
    let exited = reap_on_thread(child);
    let group = &group;
    let (status, stalled, fed) = thread::scope(|scope| {
        let feeder = feed.zip(input).map(|(feed, mut input)| {
            scope.spawn(move || {
                let fed = feed(&mut input);
                if fed.is_err() {
                    group.kill();
                }
                fed
            })
        });
        let mut last = (moved(), Instant::now());
        let mut stalled = false;
        let status = loop {
            match exited.recv_timeout(TRANSFER_POLL) {
                Ok(status) => break status,
                Err(RecvTimeoutError::Timeout) => {
                    let now = moved();
                    if now != last.0 {
                        last = (now, Instant::now());
                    } else if !stalled && last.1.elapsed() >= stall {
                        stalled = true;
                        group.kill();
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    break Err(std::io::Error::other("the process waiter ended"));
                }
            }
        };
        let fed = feeder.map_or(Ok(()), |feeder| {
            feeder
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        });
        (status, stalled, fed)
    });
    let status = status.map_err(|source| VirshError::Spawn {
        command: invocation.summary(),
        source,
    })?;
    drop(stdout.finish());
    Ok(Transfer {
        status,
        stderr: stderr.finish().unwrap_or_default(),
        stalled,
        fed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Invocation {
        // A shell stands in for virsh here only to produce faults the real
        // virsh cannot: hangs, children that outlive it, invalid UTF-8.
        Invocation {
            program: "/bin/sh".into(),
            connect: None,
            commands: vec![vec!["-c".into(), script.into()]],
        }
    }

    #[test]
    fn reports_output_status_and_lossy_text() {
        let out = ProcessRunner::default()
            .run(
                &sh(r"printf 'ok\377\n'; printf 'bad\n' >&2; exit 3"),
                Duration::from_secs(10),
            )
            .unwrap();
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(out.stdout, "ok\u{fffd}\n");
        assert_eq!(out.stderr, "bad\n");
    }

    #[test]
    fn sets_the_locale_and_drops_language() {
        let inv = sh("printf '%s|%s' \"$LC_ALL\" \"${LANGUAGE-unset}\"");
        let out = ProcessRunner::default()
            .run(&inv, Duration::from_secs(10))
            .unwrap();
        assert_eq!(out.stdout, "C.UTF-8|unset");
    }

    #[test]
    fn large_output_on_both_pipes_does_not_deadlock() {
        let inv =
            sh("i=0; while [ $i -lt 2000 ]; do echo line$i; echo err$i >&2; i=$((i+1)); done");
        let out = ProcessRunner::default()
            .run(&inv, Duration::from_secs(30))
            .unwrap();
        assert_eq!(out.stdout.lines().count(), 2000);
        assert_eq!(out.stderr.lines().count(), 2000);
    }

    #[test]
    fn timeout_kills_the_whole_process_group() {
        let dir = std::env::temp_dir().join(format!("runner-group-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pid_file = dir.join("grandchild.pid");
        let script = format!("sleep 300 & echo $! > '{}'; wait", pid_file.display());
        let err = ProcessRunner::default()
            .run(&sh(&script), Duration::from_millis(500))
            .unwrap_err();
        assert!(matches!(err, VirshError::Timeout { .. }), "{err}");
        let grandchild: i32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // The killed grandchild is reparented and reaped by init; poll until
        // it is gone rather than asserting on timing.
        let gone = (0..200).any(|_| {
            // SAFETY: signal 0 only checks for existence.
            let alive = unsafe { libc::kill(grandchild, 0) } == 0 && !is_zombie(grandchild);
            if alive {
                thread::sleep(Duration::from_millis(50));
            }
            !alive
        });
        assert!(gone, "grandchild {grandchild} survived the timeout");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A call takes what is left of the deadline, whatever its own
    /// timeout, and one past the deadline is never started.
    #[test]
    fn calls_end_at_the_deadline_and_past_it_are_not_started() {
        let runner = DeadlineRunner::new(Instant::now() + Duration::from_millis(300));
        let err = runner
            .run(&sh("sleep 300"), Duration::from_secs(3600))
            .unwrap_err();
        assert!(matches!(err, VirshError::Timeout { .. }), "{err}");
        let dir = std::env::temp_dir().join(format!("runner-deadline-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let started = dir.join("started");
        let past = DeadlineRunner::new(Instant::now());
        let err = past
            .run(
                &sh(&format!("echo > '{}'", started.display())),
                Duration::from_secs(60),
            )
            .unwrap_err();
        assert!(matches!(err, VirshError::Timeout { .. }), "{err}");
        assert!(!started.exists(), "a call past the deadline ran");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn is_zombie(pid: i32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|stat| {
                stat.rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .starts_with('Z')
            })
            .unwrap_or(true)
    }

    /// 500 MB from virsh once took 1 GB of memory: past the cap the call
    /// is an error, and what is printed beyond it is never kept.
    #[test]
    fn output_past_the_limit_is_an_error() {
        let runner = ProcessRunner::with_output_limit(1024 * 1024);
        let err = runner
            .run(&sh("head -c 5000000 /dev/zero"), Duration::from_secs(30))
            .unwrap_err();
        assert!(matches!(err, VirshError::OutputTooLarge { .. }), "{err}");
        assert!(err.to_string().contains("more than 1 MiB"), "{err}");
        let fine = runner.run(&sh("head -c 1000 /dev/zero"), Duration::from_secs(30));
        assert_eq!(fine.unwrap().stdout.len(), 1000);
    }

    #[test]
    fn missing_program_is_not_found() {
        let inv = Invocation {
            program: "/nonexistent/virsh".into(),
            connect: None,
            commands: vec![vec![]],
        };
        let err = ProcessRunner::default()
            .run(&inv, Duration::from_secs(1))
            .unwrap_err();
        assert!(matches!(err, VirshError::NotFound { .. }));
    }

    /// What `feed` wrote reaches the process's stdin whole, and then
    /// stdin is closed.
    #[test]
    fn a_transfer_feeds_stdin_and_closes_it() {
        use std::io::Write as _;
        let transfer = run_transfer(
            &sh("n=$(wc -c); [ \"$n\" -eq 100000 ]"),
            Duration::from_secs(60),
            Some(|stdin: &mut ChildStdin| stdin.write_all(&[7u8; 100_000])),
            &|| 0,
        )
        .unwrap();
        assert!(transfer.status.success(), "{transfer:?}");
        assert!(transfer.fed.is_ok() && !transfer.stalled);
    }

    /// A feed that fails (a file that shrank) kills the process before
    /// its stdin closes: virsh must never take a short input for a whole
    /// file and finish the volume.
    #[test]
    fn a_failed_feed_kills_the_process_before_it_sees_the_end() {
        use std::io::Write as _;
        let transfer = run_transfer(
            &sh("cat >/dev/null; exit 0"),
            Duration::from_secs(60),
            Some(|stdin: &mut ChildStdin| {
                stdin.write_all(b"part")?;
                Err(std::io::Error::other("the file shrank"))
            }),
            &|| 0,
        )
        .unwrap();
        assert!(
            !transfer.status.success(),
            "killed, not ended: {transfer:?}"
        );
        assert_eq!(transfer.fed.unwrap_err().to_string(), "the file shrank");
    }

    /// A transfer whose bytes stop moving is killed, group and all.
    #[test]
    fn a_stalled_transfer_is_killed() {
        let transfer = run_transfer(
            &sh("sleep 300"),
            Duration::from_millis(300),
            None::<fn(&mut ChildStdin) -> std::io::Result<()>>,
            &|| 0,
        )
        .unwrap();
        assert!(
            transfer.stalled && !transfer.status.success(),
            "{transfer:?}"
        );
    }
}
