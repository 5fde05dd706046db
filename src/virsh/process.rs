//! Every virsh call as a process of its own: spawned from argv, never a
//! shell, with `LC_ALL=C.UTF-8` and no `LANGUAGE`, in a process group of
//! its own that a timeout kills whole, its pipes drained and decoded
//! lossily, and its leader always reaped.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use super::error::VirshError;
use super::groups::GroupGuard;
use super::invocation::Invocation;
use super::pipes::Drain;
use super::runner::{OUTPUT_LIMIT, Output, Runner, WATCH_POLL, Watch, Watcher};

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
        self.call(invocation, |child, group| {
            wait_until(child, group, deadline).ok_or_else(|| VirshError::Timeout {
                command: invocation.summary(),
                timeout,
            })
        })
    }

    fn transfer(&self, invocation: &Invocation, watch: &Watch) -> Result<Output, VirshError> {
        self.call(invocation, |child, group| {
            let exited = reap_on_thread(child);
            let mut watcher = Watcher::new(watch);
            loop {
                match exited.recv_timeout(WATCH_POLL) {
                    Ok(status) => return Ok(status),
                    Err(RecvTimeoutError::Timeout) => {
                        if let Some(halt) = watcher.halt() {
                            group.kill();
                            let _ = exited.recv();
                            return Err(watch.error(halt, invocation.summary()));
                        }
                    }
                    Err(RecvTimeoutError::Disconnected) => {
                        return Ok(Err(std::io::Error::other("the process waiter ended")));
                    }
                }
            }
        })
    }
}

impl ProcessRunner {
    /// Runs `invocation` as a process, `wait` reaping it (or killing its
    /// group, and saying why).
    fn call(
        &self,
        invocation: &Invocation,
        wait: impl FnOnce(Child, &GroupGuard) -> Result<std::io::Result<ExitStatus>, VirshError>,
    ) -> Result<Output, VirshError> {
        let (mut child, group) = spawn_virsh(invocation, Stdio::null())?;
        let stdout = Drain::start(child.stdout.take(), self.output_limit);
        let stderr = Drain::start(child.stderr.take(), self.output_limit);
        let status = wait(child, &group)?.map_err(|source| VirshError::Spawn {
            command: invocation.summary(),
            source: source.into(),
        })?;
        match (stdout.finish(), stderr.finish()) {
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

    /// Completion moves no file: as a process of its own, were it asked.
    fn transfer(&self, invocation: &Invocation, watch: &Watch) -> Result<Output, VirshError> {
        ProcessRunner::default().transfer(invocation, watch)
    }
}

/// Starts `invocation` the one way the tool ever does: from argv, with
/// stdout and stderr piped, in a process group of its own, registered (so
/// that any exit of the tool kills it) until the guard is dropped, once
/// the leader has been reaped.
pub(super) fn spawn_virsh(
    invocation: &Invocation,
    stdin: Stdio,
) -> Result<(Child, GroupGuard), VirshError> {
    let mut command = Command::new(&invocation.program);
    command
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
        .process_group(0);
    super::groups::spawn_registered(&mut command).map_err(|source| {
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
                source: source.into(),
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

    fn watch<'a>(
        stall: Duration,
        moved: &'a (dyn Fn() -> u64 + Sync),
        stop: &'a (dyn Fn() -> bool + Sync),
    ) -> Watch<'a> {
        Watch { stall, moved, stop }
    }

    /// A transfer whose bytes stop moving is killed, group and all.
    #[test]
    fn a_stalled_transfer_is_killed() {
        let error = ProcessRunner::default()
            .transfer(
                &sh("sleep 300"),
                &watch(Duration::from_millis(300), &|| 0, &|| false),
            )
            .unwrap_err();
        assert!(matches!(error, VirshError::Stalled { .. }), "{error}");
        assert!(
            error
                .to_string()
                .ends_with("moved no byte for 300ms: the connection hangs"),
            "{error}"
        );
    }

    /// One whose caller stops it (its file failed) is killed too, however
    /// fast its bytes move.
    #[test]
    fn a_stopped_transfer_is_killed() {
        let moved = std::sync::atomic::AtomicU64::new(0);
        let error = ProcessRunner::default()
            .transfer(
                &sh("sleep 300"),
                &watch(
                    Duration::from_secs(60),
                    &|| moved.fetch_add(1, std::sync::atomic::Ordering::SeqCst),
                    &|| moved.load(std::sync::atomic::Ordering::SeqCst) > 3,
                ),
            )
            .unwrap_err();
        assert!(matches!(error, VirshError::Stopped { .. }), "{error}");
    }

    /// One whose bytes keep moving has no deadline: it runs to its end,
    /// longer than `stall`, and says what it printed.
    #[test]
    fn a_moving_transfer_runs_past_its_stall() {
        let moved = std::sync::atomic::AtomicU64::new(0);
        let output = ProcessRunner::default()
            .transfer(
                &sh("sleep 1; echo done"),
                &watch(
                    Duration::from_millis(300),
                    &|| moved.fetch_add(1, std::sync::atomic::Ordering::SeqCst),
                    &|| false,
                ),
            )
            .unwrap();
        assert!(output.status.success());
        assert_eq!(output.stdout, "done\n");
    }
}
