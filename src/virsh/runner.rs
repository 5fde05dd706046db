//! The one process seam: every virsh call goes through a [`Runner`], which the
//! real program fills with [`ProcessRunner`] and tests with a recording fake.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::batch::{Batch, quote, script};
use super::error::VirshError;
use super::groups::GroupGuard;
use crate::mutex::lock;
use crate::utils::is_unsafe_on_a_terminal;

/// How long the output pipes may stay open after virsh itself has exited.
/// A helper virsh started (an ssh ControlPersist master, say) can inherit
/// the pipes and keep them open for minutes; everything virsh wrote is
/// already in the pipe by then, so waiting longer gains nothing.
const PIPE_GRACE: Duration = Duration::from_millis(250);

/// One virsh call: its program, its connection and its commands. A
/// process runs it from argv, never through a shell; a session feeds it to
/// virsh's own command language on stdin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub program: String,
    /// `-c URI`; `None` lets virsh apply its own default.
    pub connect: Option<String>,
    /// Each command's words; several run as one script in one connection.
    pub commands: Vec<Vec<String>>,
}

impl Invocation {
    /// The arguments after the program: `-c URI`, then the one command's
    /// words or, for several, the script as one argument.
    pub fn args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(uri) = &self.connect {
            args.extend(["-c".to_owned(), uri.clone()]);
        }
        match self.commands.as_slice() {
            [] => {}
            [command] => args.extend(command.iter().cloned()),
            commands => args.push(script(commands)),
        }
        args
    }

    /// The command as a person would type it, for error messages and
    /// `--dry-run`; quoting follows POSIX shell rules.
    pub fn command_line(&self) -> String {
        std::iter::once(self.program.clone())
            .chain(self.args())
            .map(|word| shell_quote(&word))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The command line for an error message, as an admin would type it:
    /// the caller's commands without a batch's marker `echo`s, several of
    /// them as one script (`virsh -c URI 'domstats --raw ; uri'`), words
    /// quoted only where virsh's tokenizer needs it. A batch can run to
    /// many kilobytes, so a long script keeps its first commands and a
    /// long argument its start.
    pub fn summary(&self) -> String {
        let commands: Vec<&Vec<String>> = self
            .commands
            .iter()
            .filter(|words| !Batch::is_marker_echo(words))
            .collect();
        let mut words = vec![self.program.clone()];
        if let Some(uri) = &self.connect {
            words.extend(["-c".to_owned(), uri.clone()]);
        }
        match commands.as_slice() {
            [] => {}
            [command] => words.extend(command.iter().cloned()),
            commands => words.push(script_for_people(commands)),
        }
        words
            .into_iter()
            .map(|word| match word.char_indices().nth(SUMMARY_ARG_CHARS) {
                Some((cut, _)) => {
                    format!("{}…({} bytes)", shell_quote(&word[..cut]), word.len())
                }
                None => shell_quote(&word),
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// How much of one argument an error message shows.
const SUMMARY_ARG_CHARS: usize = 120;

/// Commands as one line of virsh's command language that a person reads:
/// as many whole commands as fit in [`SUMMARY_ARG_CHARS`], then how many
/// more there are. Plain words stay as they are; the others get
/// [`quote`]'s backslashes, so the line still runs as it reads.
fn script_for_people(commands: &[&Vec<String>]) -> String {
    let mut script = String::new();
    for (shown, words) in commands.iter().enumerate() {
        let command = words
            .iter()
            .map(|word| {
                if is_plain(word) {
                    word.clone()
                } else {
                    quote(word)
                }
            })
            .collect::<Vec<_>>()
            .join(" ");
        if shown > 0 {
            if script.chars().count() + command.chars().count() > SUMMARY_ARG_CHARS {
                script.push_str(&format!(" ; …({} more)", commands.len() - shown));
                break;
            }
            script.push_str(" ; ");
        }
        script.push_str(&command);
    }
    script
}

/// A word that means the same, unquoted, to a POSIX shell and to virsh's
/// tokenizer.
fn is_plain(word: &str) -> bool {
    !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@+,%".contains(c))
}

/// One word as a POSIX shell reads it back. A word holding a control or
/// format character (bidi controls, zero-width spaces: see
/// [`is_unsafe_on_a_terminal`]) is written `$'…'` (bash, zsh, ksh) with
/// every such character escaped (`\uXXXX`, `\UXXXXXXXX` beyond U+FFFF),
/// so the printed command stays exact and pasteable and nothing in it can
/// act on the terminal or hide.
fn shell_quote(word: &str) -> String {
    if is_plain(word) {
        return word.to_owned();
    }
    if !word.chars().any(is_unsafe_on_a_terminal) {
        return format!("'{}'", word.replace('\'', r"'\''"));
    }
    let mut quoted = String::from("$'");
    for c in word.chars() {
        match c {
            '\\' => quoted.push_str(r"\\"),
            '\'' => quoted.push_str(r"\'"),
            '\t' => quoted.push_str(r"\t"),
            '\n' => quoted.push_str(r"\n"),
            '\r' => quoted.push_str(r"\r"),
            // bash reads at most 4 hex digits after `\u`, 8 after `\U`.
            c if is_unsafe_on_a_terminal(c) && u32::from(c) > 0xffff => {
                quoted.push_str(&format!(r"\U{:08x}", u32::from(c)))
            }
            c if is_unsafe_on_a_terminal(c) => quoted.push_str(&format!(r"\u{:04x}", u32::from(c))),
            c => quoted.push(c),
        }
    }
    quoted.push('\'');
    quoted
}

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
    mut child: Child,
    group: &GroupGuard,
    deadline: Instant,
) -> Option<std::io::Result<ExitStatus>> {
    let (sender, receiver) = mpsc::channel();
    // The waiter owns the Child so the leader is always reaped, even after
    // a kill; the group id stays reserved until then, so the kill below
    // cannot hit a recycled pid.
    thread::spawn(move || {
        let _ = sender.send(child.wait());
    });
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
    let (sender, exited) = mpsc::channel();
    // As in `wait_until`: the waiter owns the Child, so the leader is
    // reaped whatever happens, and a kill never hits a recycled pid.
    thread::spawn(move || {
        let _ = sender.send(child.wait());
    });
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

/// Reads one pipe on its own thread, so a full stderr pipe can never block
/// virsh while we wait on stdout (or the other way round).
struct Drain {
    /// `None` once more than the limit arrived: the rest is read and
    /// dropped, so virsh never blocks on a full pipe.
    buffer: Arc<Mutex<Option<Vec<u8>>>>,
    done: mpsc::Receiver<()>,
}

impl Drain {
    fn start(pipe: Option<impl Read + Send + 'static>, limit: usize) -> Self {
        let buffer = Arc::new(Mutex::new(Some(Vec::new())));
        let (sender, done) = mpsc::channel();
        // The reader is never joined: `finish` waits on `done` instead, for
        // a bounded time.
        if let Some(mut pipe) = pipe {
            let buffer = Arc::clone(&buffer);
            thread::spawn(move || {
                let mut chunk = [0u8; 8192];
                loop {
                    match pipe.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            let mut buffer = lock(&buffer);
                            if buffer.as_ref().is_some_and(|b| b.len() + n > limit) {
                                *buffer = None;
                            }
                            if let Some(kept) = buffer.as_mut() {
                                kept.extend_from_slice(&chunk[..n]);
                            }
                        }
                    }
                }
                let _ = sender.send(());
            });
        }
        Drain { buffer, done }
    }

    /// Waits briefly for end of file, then takes whatever has arrived;
    /// `None` when it was more than the limit.
    fn finish(self) -> Option<String> {
        let _ = self.done.recv_timeout(PIPE_GRACE);
        lock(&self.buffer)
            .as_ref()
            .map(|bytes| String::from_utf8_lossy(bytes).into_owned())
    }
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

    #[test]
    fn summary_shortens_long_arguments_only() {
        let inv = Invocation {
            program: "virsh".into(),
            connect: Some("test:///x".into()),
            commands: vec![vec!["é".repeat(200)]],
        };
        let summary = inv.summary();
        assert!(summary.starts_with("virsh -c test:///x 'éé"), "{summary}");
        assert!(summary.ends_with("é'…(400 bytes)"), "{summary}");
        assert_eq!(summary.matches('é').count(), 120);
    }

    /// A batch of 400 `dominfo`s: its first commands, as typed, and how
    /// many more; none of its marker `echo`s.
    #[test]
    fn summary_of_a_long_batch_keeps_its_first_commands() {
        let mut batch = Batch::new();
        for n in 0..400 {
            batch.push(&["dominfo", "--domain", &format!("vm {n:03}")]);
        }
        let inv = Invocation {
            program: "virsh".into(),
            connect: Some("test:///x".into()),
            commands: batch.pieces().remove(0).commands,
        };
        let summary = inv.summary();
        assert!(
            summary.starts_with(
                r"virsh -c test:///x 'dominfo --domain vm\ 000 ; dominfo --domain vm\ 001 ; "
            ),
            "{summary}"
        );
        assert!(summary.ends_with(" ; …(396 more)'"), "{summary}");
        assert!(!summary.contains("echo"), "{summary}");
    }

    /// bash reads the `$'…'` form back to the exact word.
    #[test]
    fn words_with_controls_are_quoted_for_bash_exactly() {
        // Invisible format characters too, one beyond U+FFFF (a tag).
        for (word, expected) in [
            (
                "web\tprod\u{202e}it's\\x\u{9b}",
                r"$'web\tprod\u202eit\'s\\x\u009b'",
            ),
            ("web\u{200b}prod", r"$'web\u200bprod'"),
            (
                "\u{feff}a\u{ad}b\u{e0041}1",
                r"$'\ufeffa\u00adb\U000e00411'",
            ),
        ] {
            let quoted = shell_quote(word);
            assert_eq!(quoted, expected);
            let echoed = std::process::Command::new("bash")
                .args(["-c", &format!("printf %s {quoted}")])
                .env("LC_ALL", "C.UTF-8")
                .output()
                .unwrap();
            assert_eq!(String::from_utf8(echoed.stdout).unwrap(), word);
        }
    }

    #[test]
    fn command_line_quotes_like_a_shell() {
        let inv = Invocation {
            program: "virsh".into(),
            connect: None,
            commands: vec![vec![
                "dominfo".into(),
                "--domain".into(),
                "it's a vm".into(),
            ]],
        };
        assert_eq!(inv.command_line(), r"virsh dominfo --domain 'it'\''s a vm'");
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
