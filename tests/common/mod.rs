//! Shared helpers for the integration tests: the built binary, the fixture
//! fleets on libvirt's test driver, and the real virsh for ground truth.

#![allow(dead_code)] // each test target uses its own subset

use std::path::{Path, PathBuf};

/// The guests `scripts/lab up` defines, by name.
pub const LAB_GUESTS: [&str; 9] = [
    "lab-agent",
    "lab-blocked",
    "lab-locked",
    "lab-meta",
    "lab-noagent",
    "lab-off",
    "lab-q35",
    "lab-scsi",
    "lab-uefi",
];
use std::process::{Command, Output, Stdio};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `test:///ABSOLUTE/PATH` for a fleet in fixtures/.
pub fn fleet_uri(file: &str) -> String {
    format!("test://{}", root().join("fixtures").join(file).display())
}

pub fn support(file: &str) -> PathBuf {
    root().join("tests/support").join(file)
}

/// The binary on fleet-small.xml through the fake virsh that hangs on
/// `command` (tests/support/hung-agent-virsh), with `--timeout 2s`.
pub fn tool_hung_on(command: &str) -> Command {
    let mut tool = tool();
    tool.args([
        "-c",
        &fleet_uri("fleet-small.xml"),
        "--timeout",
        "2s",
        "--virsh",
    ])
    .arg(support("hung-agent-virsh"))
    .env("HUNG_COMMAND", command);
    tool
}

/// The binary with a clean environment: no URI or virsh from the caller's
/// shell leaks into a test.
pub fn tool() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_dismount_iso_qemu"));
    command
        .env_remove("LIBVIRT_URI")
        .env_remove("LIBVIRT_DEFAULT_URI")
        .env_remove("VIRSH")
        .stdin(Stdio::null());
    command
}

pub fn run(command: &mut Command) -> Output {
    let output = command.output().expect("the binary runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "the tool panicked:\n{stderr}");
    output
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("stdout is UTF-8")
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts that the tool's stderr holds `needle`, showing all of it if not.
#[track_caller]
pub fn assert_stderr_contains(output: &Output, needle: &str) {
    let stderr = stderr(output);
    assert!(
        stderr.contains(needle),
        "{needle:?} not in stderr:\n{stderr}"
    );
}

/// Runs the real virsh, for ground truth: its output, asserted successful.
pub fn virsh(uri: &str, args: &[&str]) -> String {
    let output = try_virsh(uri, args).expect("virsh is installed (libvirt-clients)");
    assert!(
        output.status.success(),
        "virsh {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("virsh prints UTF-8")
}

/// Runs the real virsh, its output whatever the exit status; never panics
/// (a clean-up may run while a failed test unwinds).
pub fn try_virsh(uri: &str, args: &[&str]) -> std::io::Result<Output> {
    Command::new("virsh")
        .arg("-c")
        .arg(uri)
        .args(args)
        .env("LC_ALL", "C.UTF-8")
        .env_remove("LANGUAGE")
        .output()
}

/// virsh on the lab, its output whatever the exit status.
pub fn lab_virsh(args: &[&str]) -> Output {
    try_virsh(LAB_URI, args).expect("virsh is installed (libvirt-clients)")
}

/// A FIFO at `path` (what a file check must refuse without opening it).
pub fn mkfifo(path: &Path) {
    let made = run(Command::new("mkfifo").arg(path));
    assert!(made.status.success(), "mkfifo: {}", stderr(&made));
}

/// A refusal as bad input gets it: exit 1 and one line on stderr holding
/// each of `needles`.
#[track_caller]
pub fn assert_one_line_refusal(args: &[&str], output: &Output, needles: &[&str]) {
    assert_eq!(
        output.status.code(),
        Some(1),
        "{args:?}: {}",
        stdout(output)
    );
    let message = stderr(output);
    assert_eq!(message.lines().count(), 1, "{message}");
    for needle in needles {
        assert!(message.contains(needle), "{needle:?} in {message}");
    }
}

/// A run's exit status and everything it printed, for a failure's message.
pub fn described(output: &Output) -> String {
    format!("{:?}: {}{}", output.status, stdout(output), stderr(output))
}

/// The value of `key` in `virsh guestinfo` output (`key : value` lines).
pub fn guestinfo_field(text: &str, key: &str) -> Option<String> {
    text.lines()
        .filter_map(|line| line.split_once(" : "))
        .find(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.trim().to_owned())
}

/// The invocations a counting-virsh run recorded (one file per process in
/// the directory `log`), each as its argv.
pub fn recorded_calls(log: &Path) -> Vec<Vec<String>> {
    let Ok(entries) = std::fs::read_dir(log) else {
        return Vec::new();
    };
    entries
        .map(|entry| std::fs::read_to_string(entry.expect("a log entry").path()).unwrap())
        .map(|call| call.split('\u{1f}').map(str::to_owned).collect())
        .collect()
}

/// `upload FILE --pool POOL` on `uri` as the upload tests start it: in a
/// process group of its own (a test signals the group, as a terminal's
/// Ctrl-C reaches every process of the job), stdout and stderr piped;
/// through the fake virsh `fake` of tests/support where one is named.
pub fn upload_command(uri: &str, fake: Option<&str>, file: &Path, pool: &str) -> Command {
    use std::os::unix::process::CommandExt;
    let mut command = tool();
    command.args(["-c", uri]);
    if let Some(fake) = fake {
        command.arg("--virsh").arg(support(fake));
    }
    command
        .arg("upload")
        .arg(file)
        .args(["--pool", pool])
        .process_group(0)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// A sparse file of `size` bytes with the ISO 9660 signature (`CD001`
/// at byte 32769), which `upload` checks for.
pub fn iso_file(dir: &Path, name: &str, size: u64) -> PathBuf {
    use std::io::{Seek, SeekFrom, Write};
    let path = dir.join(name);
    let mut file = std::fs::File::create(&path).unwrap();
    file.set_len(size).unwrap();
    file.seek(SeekFrom::Start(32769)).unwrap();
    file.write_all(b"CD001").unwrap();
    path
}

pub fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "dismount-iso-qemu-{tag}-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The lab's connection (`scripts/lab up`).
pub const LAB_URI: &str = "qemu:///system";

/// Whether the lab is up: lab-agent running on [`LAB_URI`].
pub fn lab_is_up() -> Result<(), String> {
    let output = Command::new("virsh")
        .args(["-c", LAB_URI, "domstate", "--domain", "lab-agent"])
        .env("LC_ALL", "C.UTF-8")
        .output()
        .map_err(|e| format!("cannot run virsh: {e}"))?;
    let state = String::from_utf8_lossy(&output.stdout);
    if output.status.success() && state.trim() == "running" {
        Ok(())
    } else {
        Err(format!(
            "lab-agent is not running on {LAB_URI}: {}{}",
            state.trim(),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// The lab's folder, wherever it was built: `scripts/lab` keeps everything
/// under one LAB_DIR, and lab-off boots its kernel from LAB_DIR/guest/.
pub fn lab_dir() -> PathBuf {
    let xml = virsh(LAB_URI, &["dumpxml", "--inactive", "--domain", "lab-off"]);
    let kernel = xml
        .split_once("<kernel>")
        .and_then(|(_, rest)| rest.split_once("</kernel>"))
        .map(|(path, _)| PathBuf::from(path))
        .expect("lab-off boots a kernel from LAB_DIR/guest/");
    kernel
        .ancestors()
        .nth(2)
        .expect("LAB_DIR/guest/vmlinuz")
        .to_path_buf()
}

/// An ISO of the lab, by file name.
pub fn lab_iso(name: &str) -> String {
    lab_dir().join("isos").join(name).display().to_string()
}

/// The lab's libvirtd reached through its own sshd on 127.0.0.1: a remote
/// URI as far as the tool can tell (`scripts/lab env` prints the same).
pub fn lab_ssh_uri() -> String {
    lab_ssh_uri_to("system")
}

/// `qemu+ssh://root@127.0.0.1:PORT/PATH?…command=` through the lab's
/// sshd, its ssh wrapper last: `path` is the driver path and any query
/// before it (`session?socket=…&proxy=netcat`).
pub fn lab_ssh_uri_to(path: &str) -> String {
    let ssh = lab_dir().join("ssh");
    // The port is the lab's choice (LAB_SSH_PORT): read it where the lab
    // wrote it down.
    let config = std::fs::read_to_string(ssh.join("ssh_config")).expect("the lab's ssh_config");
    let port = config
        .lines()
        .find_map(|line| line.trim().strip_prefix("Port "))
        .expect("a Port line");
    let join = if path.contains('?') { '&' } else { '?' };
    format!(
        "qemu+ssh://root@127.0.0.1:{port}/{path}{join}command={}",
        ssh.join("ssh").display()
    )
}

/// The tool on the lab.
pub fn tool_lab(args: &[&str]) -> Output {
    run(tool().args(["-c", LAB_URI]).args(args))
}

/// A run's stdout where it succeeded; else a failure showing what it said.
pub fn ok(output: &Output) -> Result<String, libtest_mimic::Failed> {
    check(output.status.success(), || {
        format!("{}{}", stdout(output), stderr(output))
    })?;
    Ok(stdout(output))
}

/// `DISMOUNT_LAB_REQUIRED=1` (CI): what the lab needs must be there.
pub fn lab_required() -> bool {
    std::env::var_os("DISMOUNT_LAB_REQUIRED").is_some_and(|v| v == "1")
}

/// A lab test's assertion: `Err` with the message instead of a panic.
pub fn check(
    condition: bool,
    message: impl FnOnce() -> String,
) -> Result<(), libtest_mimic::Failed> {
    if condition {
        Ok(())
    } else {
        Err(message().into())
    }
}

/// What a real bash offers on TAB for `words` (the last one being
/// completed, `""` after a blank; no word holds a blank or a quote, and the
/// last no `COMP_WORDBREAKS` character): the registration script from
/// `COMPLETE=bash` sourced, the function it registers for the tool called
/// with `COMP_LINE`, `COMP_POINT` and the word as bash's programmable
/// completion sets them for such a line (what readline itself does with a
/// line is tested through a terminal: `tests/cli/toolbox.rs`). Returns
/// COMPREPLY, one entry a line, as bash inserts it (quoted), and bash's
/// output.
pub fn complete_in_bash(words: &[&str], env: &[(&str, &str)]) -> (Vec<String>, Output) {
    complete_in_bash_after(r#"source <(COMPLETE=bash "$TOOL")"#, words, env)
}

/// [`complete_in_bash`] with the registration `register` (bash code)
/// makes: an installed script, say.
pub fn complete_in_bash_after(
    register: &str,
    words: &[&str],
    env: &[(&str, &str)],
) -> (Vec<String>, Output) {
    let script = format!(
        r#"
{register} || exit 1
function=$(complete -p dismount_iso_qemu | sed -E 's/.* -F ([^ ]+) .*/\1/')
COMP_WORDS=("$@")
COMP_CWORD=$(( $# - 1 ))
COMP_LINE="$*"
COMP_POINT=${{#COMP_LINE}}
"$function" dismount_iso_qemu "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"
printf '%s\n' "${{COMPREPLY[@]}}"
"#
    );
    let mut bash = Command::new("bash");
    bash.args(["--norc", "--noprofile", "-c", &script, "bash"])
        .arg("dismount_iso_qemu")
        .args(words)
        .env("TOOL", env!("CARGO_BIN_EXE_dismount_iso_qemu"))
        .env_remove("LIBVIRT_URI")
        .env_remove("LIBVIRT_DEFAULT_URI")
        .env_remove("VIRSH")
        .stdin(Stdio::null());
    for (name, value) in env {
        bash.env(name, value);
    }
    let output = run(&mut bash);
    let reply = stdout(&output)
        .lines()
        .filter(|line| !line.is_empty())
        .map(str::to_owned)
        .collect();
    (reply, output)
}

/// The menu on `uri`, fed `input` on stdin.
pub fn menu_session(uri: &str, input: &str) -> Output {
    menu_session_with(uri, &[], input)
}

/// The menu on `uri` with more options, fed `input` on stdin.
pub fn menu_session_with(uri: &str, options: &[&str], input: &str) -> Output {
    let mut child = tool()
        .args(["-c", uri])
        .args(options)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    let mut stdin = child.stdin.take().expect("stdin is piped");
    std::io::Write::write_all(&mut stdin, input.as_bytes()).expect("the menu reads its input");
    drop(stdin);
    let output = child.wait_with_output().expect("the binary runs");
    assert!(!stderr(&output).contains("panicked"), "{}", stderr(&output));
    output
}

/// A running `serve`, stopped with SIGTERM when dropped.
pub struct Serving {
    pub child: std::process::Child,
    pub addr: std::net::SocketAddr,
    /// Its stderr log lines (JSON) up to and with the one that says where
    /// it listens: what it logged before serving anything.
    pub startup: Vec<String>,
    /// Its stderr log lines (JSON) after those, as they come.
    pub log: std::sync::mpsc::Receiver<String>,
}

impl Serving {
    /// `serve --listen 127.0.0.1:0 --log-format json` with `args` before
    /// it; waits (bounded) for the line that says where it listens.
    pub fn start(command: &mut Command) -> Serving {
        Serving::start_on(command, "127.0.0.1:0")
    }

    /// [`Serving::start`] on `listen`.
    pub fn start_on(command: &mut Command, listen: &str) -> Serving {
        Serving::start_serving(command, listen, &[])
    }

    /// [`Serving::start`] with more options for `serve`.
    pub fn start_with(command: &mut Command, serve_options: &[&str]) -> Serving {
        Serving::start_serving(command, "127.0.0.1:0", serve_options)
    }

    /// [`Serving::start_on`] with more options for `serve`.
    pub fn start_serving(command: &mut Command, listen: &str, serve_options: &[&str]) -> Serving {
        use std::io::BufRead;
        let mut child = command
            .args(["serve", "--listen", listen, "--log-format", "json"])
            .args(serve_options)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the binary runs");
        let stderr = child.stderr.take().expect("piped");
        let (send, log) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        let mut startup = Vec::new();
        let addr = loop {
            let line = log
                .recv_timeout(std::time::Duration::from_secs(30))
                .expect("serve logs where it listens");
            let json: serde_json::Value = serde_json::from_str(&line).expect("JSON log lines");
            startup.push(line);
            if let Some(listen) = json["fields"]["listen"].as_str() {
                let mut addr: std::net::SocketAddr = listen.parse().expect("an address");
                // Bound to every interface: the tests still talk on loopback.
                if addr.ip().is_unspecified() {
                    addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
                }
                break addr;
            }
        };
        Serving {
            child,
            addr,
            startup,
            log,
        }
    }

    /// GET `path`: (status, body).
    pub fn get(&self, path: &str) -> (u16, String) {
        http_get(self.addr, path)
    }

    /// Polls `path` (bounded, 60 s) until `done` holds for its answer.
    pub fn wait_for(&self, path: &str, done: impl Fn(u16, &str) -> bool) -> (u16, String) {
        for _ in 0..600 {
            let (status, body) = self.get(path);
            if done(status, &body) {
                return (status, body);
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let (status, body) = self.get(path);
        panic!("{path} never became as expected; last: {status}\n{body}");
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the child this test started.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

/// A plain HTTP/1.0 GET on `addr`: (status, body).
pub fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    try_http_get(addr, path).unwrap_or_else(|e| panic!("GET {path} on {addr}: {e}"))
}

/// [`http_get`], with what went wrong as an error.
pub fn try_http_get(addr: std::net::SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    use std::io::{Error, Read, Write};
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(30)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .ok_or_else(|| Error::other("no blank line after the head"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Error::other("no status"))?;
    Ok((status, body.to_owned()))
}

/// The pids `counting-virsh` logged under `log` (one file each).
pub fn logged_pids(log: &Path) -> Vec<i32> {
    std::fs::read_dir(log)
        .expect("virsh ran")
        .map(|entry| {
            let name = entry.expect("a log entry").file_name();
            name.to_string_lossy().parse().expect("a pid")
        })
        .collect()
}

/// Waits (20 s at most) until every one of `pids` is gone or a zombie
/// that init will reap; panics naming one that is not.
pub fn assert_all_gone(pids: &[i32]) {
    for &pid in pids {
        let gone = (0..400).any(|_| {
            let dead = std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| {
                stat.rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .starts_with('Z')
            });
            if !dead {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            dead
        });
        assert!(gone, "process {pid} outlived the tool");
    }
}

/// Sends `signal` to the process group `child` leads (a child started
/// with `process_group(0)`), as a terminal's Ctrl-C reaches every process
/// of its foreground group.
pub fn signal_group(child: &std::process::Child, signal: i32) {
    let group = i32::try_from(child.id()).expect("a pid");
    // SAFETY: kill(2) on the process group this test started.
    unsafe { libc::kill(-group, signal) };
}

/// Polls `check` until it gives a value, for at most 20 s.
pub fn poll<T>(check: impl Fn() -> Option<T>) -> T {
    for _ in 0..400 {
        if let Some(value) = check() {
            return value;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("gave up waiting after 20 s");
}

/// A stdout whose reader has already gone away (`… | head -0`): the write
/// end of a pipe whose read end is closed before the tool starts, so no
/// race decides what the tool sees.
pub fn closed_pipe() -> Stdio {
    use std::os::fd::{FromRawFd, OwnedFd};
    let mut fds = [0; 2];
    // SAFETY: `pipe` fills both descriptors, each then owned once.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    let (reader, writer) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(reader);
    Stdio::from(writer)
}

/// A web config for `serve --web.config.file` in `dir`: TLS with a
/// certificate for 127.0.0.1 and localhost, signed by a CA made here
/// (`dir/ca.pem`, for the client), and basic auth for `user` with
/// `password` (bcrypt, cost 10 as `htpasswd -B` makes it). The certificate
/// and key are named relative to the file, as node_exporter reads them.
pub fn web_config(dir: &Path, user: &str, password: &str) -> PathBuf {
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "dismount_iso_qemu test CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca, rcgen::KeyPair::generate().unwrap()).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("server.crt"), cert.pem()).unwrap();
    std::fs::write(dir.join("server.key"), key.serialize_pem()).unwrap();
    let hash = bcrypt::hash(password, 10).unwrap();
    let path = dir.join("web.yml");
    std::fs::write(
        &path,
        format!(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n\
             basic_auth_users:\n  {user}: {hash}\n"
        ),
    )
    .unwrap();
    path
}

/// A terminal of its own: tmux on a private socket, a plain bash in it.
pub struct Terminal {
    socket: String,
}

impl Terminal {
    pub fn start() -> Result<Terminal, libtest_mimic::Failed> {
        Terminal::start_with("env PS1='PROMPT$ ' bash --norc --noprofile")
    }

    /// A terminal running `command` (a shell command line) instead.
    pub fn start_with(command: &str) -> Result<Terminal, libtest_mimic::Failed> {
        static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let terminal = Terminal {
            socket: format!("dismount-test-{}-{n}", std::process::id()),
        };
        let started = terminal.tmux(&[
            "new-session",
            "-d",
            "-s",
            "walk",
            "-x",
            "220",
            "-y",
            "60",
            command,
        ]);
        check(started.status.success(), || stderr(&started))?;
        Ok(terminal)
    }

    fn tmux(&self, args: &[&str]) -> Output {
        run(std::process::Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args))
    }

    /// Appends everything the terminal is sent from now on, escape
    /// sequences included, to `file`: what was drawn and cleared since.
    pub fn record(&self, file: &Path) {
        self.tmux(&[
            "pipe-pane",
            "-t",
            "walk",
            &format!("cat >> '{}'", file.display()),
        ]);
    }

    /// Types `text` as it is: no key names.
    pub fn type_text(&self, text: &str) {
        self.tmux(&["send-keys", "-t", "walk", "-l", text]);
    }

    /// Types `keys` (tmux key names: `Enter`, `C-c`, `C-d`, or text).
    pub fn send(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "walk"];
        args.extend(keys);
        self.tmux(&args);
    }

    /// Everything on the screen and in its history, wrapped lines joined.
    pub fn screen(&self) -> String {
        stdout(&self.tmux(&[
            "capture-pane",
            "-p",
            "-J",
            "-t",
            "walk",
            "-S",
            "-",
            "-E",
            "-",
        ]))
    }

    /// Waits (60 s at most) until `done` holds for the screen.
    pub fn wait(
        &self,
        what: &str,
        done: impl Fn(&str) -> bool,
    ) -> Result<String, libtest_mimic::Failed> {
        for _ in 0..600 {
            let screen = self.screen();
            if done(&screen) {
                return Ok(screen);
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        Err(format!("the screen never showed {what}:\n{}", self.screen()).into())
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        self.tmux(&["kill-server"]);
    }
}

/// Runs `command` to its end (stdout and stderr into files in `dir`) and
/// gives its output with its peak resident memory in KiB: wait4(2)'s
/// `ru_maxrss`, which the kernel keeps as the largest of the process and
/// of every descendant it waited for (the tool reaps each virsh it starts),
/// so the true peak of the whole tree, not a sample of it.
// The child is reaped by wait4 below, not by `Child::wait`, which gives
// no resource usage.
#[allow(clippy::zombie_processes)]
pub fn run_for_peak_rss(command: &mut Command, dir: &Path) -> (Output, u64) {
    let files = [dir.join("peak-stdout"), dir.join("peak-stderr")];
    let child = command
        .stdout(std::fs::File::create(&files[0]).unwrap())
        .stderr(std::fs::File::create(&files[1]).unwrap())
        .spawn()
        .expect("the command runs");
    let pid = libc::pid_t::try_from(child.id()).expect("a pid");
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value of the plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: waits for the child just spawned, which nothing else
        // waits for (`child` is dropped unwaited), into locals that live
        // across the call.
        let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if waited == pid {
            break;
        }
        let error = std::io::Error::last_os_error();
        assert_eq!(
            error.kind(),
            std::io::ErrorKind::Interrupted,
            "wait4: {error}"
        );
    }
    let output = Output {
        status: std::os::unix::process::ExitStatusExt::from_raw(status),
        stdout: std::fs::read(&files[0]).unwrap(),
        stderr: std::fs::read(&files[1]).unwrap(),
    };
    let peak = u64::try_from(usage.ru_maxrss).expect("a size");
    (output, peak)
}

/// A memory cgroup of a test's own for one process tree, where the kernel
/// offers one the test may make (root; cgroup v2 with `memory.peak`, or
/// v1 with `memory.max_usage_in_bytes`): the kernel keeps the tree's peak
/// exactly, where RSS sampled now and then can miss a spike. Removed when
/// dropped (after the tree has ended).
pub struct MemoryCgroup {
    dir: PathBuf,
    peak: &'static str,
    /// `DIR/cgroup.procs`, ready for a child to write between fork and exec.
    procs: std::ffi::CString,
}

impl MemoryCgroup {
    /// A new cgroup below the test's own, or `None` where none can be made.
    pub fn create(tag: &str) -> Option<Self> {
        use std::os::unix::ffi::OsStringExt;
        let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
        let v2 = std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers")
            .is_ok_and(|controllers| controllers.split_whitespace().any(|c| c == "memory"));
        let (root, path, peak) = own.lines().find_map(|line| {
            let mut parts = line.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            if v2 && controllers.is_empty() {
                Some(("/sys/fs/cgroup", path, "memory.peak"))
            } else if controllers.split(',').any(|c| c == "memory") {
                Some(("/sys/fs/cgroup/memory", path, "memory.max_usage_in_bytes"))
            } else {
                None
            }
        })?;
        let dir = Path::new(root)
            .join(path.trim_start_matches('/'))
            .join(format!("{tag}-{}", std::process::id()));
        std::fs::create_dir(&dir).ok()?;
        let procs = std::ffi::CString::new(dir.join("cgroup.procs").into_os_string().into_vec());
        let cgroup = MemoryCgroup {
            procs: procs.ok()?,
            dir,
            peak,
        };
        cgroup.peak_kib()?;
        Some(cgroup)
    }

    /// Starts `command` inside: the child moves itself before exec, so
    /// every page of it and of what it starts is counted.
    pub fn enter(&self, command: &mut Command) {
        use std::os::unix::process::CommandExt;
        let procs = self.procs.clone();
        // SAFETY: open(2), write(2) and close(2) are async-signal-safe,
        // and the path was made before the fork: nothing allocates here.
        unsafe {
            command.pre_exec(move || {
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
                let written = fd >= 0 && libc::write(fd, b"0".as_ptr().cast(), 1) == 1;
                if fd >= 0 {
                    libc::close(fd);
                }
                if written {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
    }

    /// The most memory the tree has held at once, in KiB.
    pub fn peak_kib(&self) -> Option<u64> {
        let bytes = std::fs::read_to_string(self.dir.join(self.peak)).ok()?;
        Some(bytes.trim().parse::<u64>().ok()? / 1024)
    }
}

impl Drop for MemoryCgroup {
    fn drop(&mut self) {
        // Its processes may still be on their way out: a few tries.
        for _ in 0..100 {
            if std::fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

/// The resident memory of `pid` and of every process below it, in KiB,
/// from /proc (a process that ends while it is read counts nothing).
pub fn tree_rss_kib(pid: u32) -> u64 {
    let mut children = std::collections::HashMap::<u32, Vec<u32>>::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(child) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        // `pid (comm) state ppid …`: comm may hold spaces and parentheses.
        let parent = stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.split(' ').nth(1))
            .and_then(|ppid| ppid.parse().ok());
        if let Some(parent) = parent {
            children.entry(parent).or_default().push(child);
        }
    }
    let mut total = 0;
    let mut todo = vec![pid];
    while let Some(pid) = todo.pop() {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        total += status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|kib| kib.trim().trim_end_matches(" kB").parse::<u64>().ok())
            .unwrap_or(0);
        todo.extend(children.get(&pid).into_iter().flatten());
    }
    total
}

/// Every process below `pid`, through /proc's children lists.
pub fn descendants(pid: u32) -> Vec<i32> {
    let mut found = Vec::new();
    let mut queue = vec![i32::try_from(pid).expect("a pid")];
    while let Some(next) = queue.pop() {
        let tasks = std::fs::read_dir(format!("/proc/{next}/task"))
            .into_iter()
            .flatten();
        for task in tasks.flatten() {
            let children =
                std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            for child in children.split_whitespace().filter_map(|c| c.parse().ok()) {
                found.push(child);
                queue.push(child);
            }
        }
    }
    found
}

pub fn comm(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_owned()
}
