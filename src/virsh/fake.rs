//! A scripted stand-in for virsh in unit tests: it answers only commands a
//! test declared, runs batches the way virsh does (each command's output
//! followed by its marker line), records every process, and panics on
//! anything unexpected.

use std::collections::VecDeque;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::Mutex;
use std::time::Duration;

use super::error::VirshError;
use super::invocation::Invocation;
use super::runner::{Halt, Output, Runner, Watch};

/// What one declared command answers.
enum Reply {
    Exit {
        code: i32,
        stdout: String,
        stderr: String,
    },
    /// The process never finishes within its timeout.
    Hang,
    /// The process cannot be started: `execve` says EACCES (virsh
    /// replaced by a file without the execute bit mid-run).
    Unspawnable,
}

struct Expected {
    command: Vec<String>,
    reply: Reply,
}

#[derive(Default)]
pub struct FakeRunner {
    expected: Mutex<VecDeque<Expected>>,
    /// One entry per process: the commands it ran (a batch has several).
    processes: Mutex<Vec<Vec<Vec<String>>>>,
    refusal: Mutex<Option<String>>,
}

impl FakeRunner {
    /// Declares that `command` (virsh's words after `-c URI`) will be run
    /// once and answer this.
    pub fn expect(&self, command: &[&str], code: i32, stdout: &str, stderr: &str) {
        self.push(
            command,
            Reply::Exit {
                code,
                stdout: stdout.to_owned(),
                stderr: stderr.to_owned(),
            },
        );
    }

    pub fn expect_hang(&self, command: &[&str]) {
        self.push(command, Reply::Hang);
    }

    /// Declares that the process running `command` cannot be started.
    pub fn expect_spawn_failure(&self, command: &[&str]) {
        self.push(command, Reply::Unspawnable);
    }

    fn push(&self, command: &[&str], reply: Reply) {
        self.expected.lock().unwrap().push_back(Expected {
            command: command.iter().map(|w| w.to_string()).collect(),
            reply,
        });
    }

    /// Makes the next process fail the way virsh does when it cannot
    /// connect: exit 1, nothing on stdout, not one command run.
    pub fn refuse_connection(&self, stderr: &str) {
        *self.refusal.lock().unwrap() = Some(stderr.to_owned());
    }

    /// How many virsh processes have been started.
    pub fn process_count(&self) -> usize {
        self.processes.lock().unwrap().len()
    }

    /// The commands of every process so far, one inner list per process.
    pub fn processes(&self) -> Vec<Vec<Vec<String>>> {
        self.processes.lock().unwrap().clone()
    }

    pub fn assert_all_used(&self) {
        let left = self.expected.lock().unwrap();
        let commands: Vec<&Vec<String>> = left.iter().map(|e| &e.command).collect();
        assert!(commands.is_empty(), "declared but never run: {commands:?}");
    }

    fn take(&self, command: &[String]) -> Reply {
        let mut expected = self.expected.lock().unwrap();
        let position = expected
            .iter()
            .position(|e| e.command == command)
            .unwrap_or_else(|| panic!("unexpected virsh command: {command:?}"));
        expected.remove(position).expect("in range").reply
    }
}

impl Runner for FakeRunner {
    fn run(&self, invocation: &Invocation, timeout: Duration) -> Result<Output, VirshError> {
        let commands = invocation.commands.clone();
        self.processes.lock().unwrap().push(commands.clone());
        if let Some(stderr) = self.refusal.lock().unwrap().take() {
            return Ok(Output {
                status: ExitStatus::from_raw(1 << 8),
                stdout: String::new(),
                stderr,
            });
        }
        let (mut stdout, mut stderr, mut code) = (String::new(), String::new(), 0);
        for command in commands {
            if command.first().map(String::as_str) == Some("echo") {
                stdout.push_str(&command[1..].join(" "));
                stdout.push('\n');
                continue;
            }
            match self.take(&command) {
                Reply::Exit {
                    code: exit,
                    stdout: out,
                    stderr: err,
                } => {
                    stdout.push_str(&out);
                    // virsh ends every command's output with a newline.
                    if !out.is_empty() && !out.ends_with('\n') {
                        stdout.push('\n');
                    }
                    stderr.push_str(&err);
                    code = exit;
                }
                Reply::Hang => {
                    return Err(VirshError::Timeout {
                        command: invocation.summary(),
                        timeout,
                    });
                }
                Reply::Unspawnable => {
                    return Err(VirshError::Spawn {
                        command: invocation.summary(),
                        source: std::io::Error::from_raw_os_error(libc::EACCES).into(),
                    });
                }
            }
        }
        Ok(Output {
            status: ExitStatus::from_raw(code << 8),
            stdout,
            stderr,
        })
    }

    /// As a call whose hang is a stall: the fake moves no bytes.
    fn transfer(&self, invocation: &Invocation, watch: &Watch) -> Result<Output, VirshError> {
        self.run(invocation, watch.stall)
            .map_err(|error| match error {
                VirshError::Timeout { command, .. } => watch.error(Halt::Stalled, command),
                other => other,
            })
    }
}
