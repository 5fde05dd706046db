//! The tool among an admin's others: shell completions and man pages,
//! generated from the same clap definitions as the binary's own parser.

use crate::common::*;

/// Every subcommand the binary has, as its `--help` lists them.
fn subcommands() -> Vec<String> {
    let help = stdout(&run(tool().arg("--help")));
    let commands = help
        .split_once("Commands:\n")
        .expect("a Commands section")
        .1
        .split("\n\n")
        .next()
        .unwrap();
    commands
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

#[test]
fn bash_completion_loads_and_knows_every_subcommand() {
    let script = stdout(&run(tool().args(["completions", "bash"])));
    for command in subcommands() {
        assert!(
            script.contains(&command),
            "{command} missing from the completion"
        );
    }
    let dir = temp_dir("completion");
    let file = dir.join("dismount_iso_qemu.bash");
    std::fs::write(&file, &script).unwrap();
    let output = run(std::process::Command::new("bash").arg("-c").arg(format!(
        "source '{}' && complete -p dismount_iso_qemu",
        file.display()
    )));
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("-F _dismount_iso_qemu"),
        "{}",
        stdout(&output)
    );
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let output = run(tool().args(["completions", shell]));
        assert!(
            output.status.success() && stdout(&output).contains("eject"),
            "{shell}"
        );
    }
    let bad = run(tool().args(["completions", "tcsh"]));
    assert_eq!(bad.status.code(), Some(2));
}

/// `COMPLETE=bash`, through a real bash: domain names, the ISOs of the
/// host's pools, a domain's drives and the pools come from the host the
/// line names (`-c`, `--hosts`, else `LIBVIRT_URI`).
#[test]
fn bash_completes_from_the_host_on_the_line() {
    let library = fleet_uri("fleet-library.xml");
    let (reply, output) = complete_in_bash(&["-c", &library, "eject", "w"], &[]);
    assert_eq!(reply, ["web"], "{}", stderr(&output));
    let dir = temp_dir("complete-hosts");
    let hosts = dir.join("hosts");
    std::fs::write(&hosts, format!("{library}\n")).unwrap();
    let hosts = hosts.display().to_string();
    let (reply, output) = complete_in_bash(&["--hosts", &hosts, "mount", "web", "isos/"], &[]);
    // disk.qcow2 is no ISO; other/spare.iso is another pool's.
    assert_eq!(
        reply,
        ["isos/by-path.iso", "isos/held.iso", "isos/unused.iso"],
        "{}",
        stderr(&output)
    );
    let media = fleet_uri("fleet-media.xml");
    let (reply, output) = complete_in_bash(
        &["eject", "two-drives", "--target", ""],
        &[("LIBVIRT_URI", &media)],
    );
    // Its CD-ROMs and floppy, not its disk vda.
    assert_eq!(reply, ["fda", "hdc", "sda"], "{}", stderr(&output));
    let (reply, output) = complete_in_bash(&["-c", &library, "upload", "x.iso", "--pool", ""], &[]);
    assert_eq!(reply, ["isos", "other"], "{}", stderr(&output));
    // `--hosts ~/FILE` as the shell will expand it when the line runs.
    let (reply, output) = complete_in_bash(
        &["--hosts", "~/hosts", "mount", "web", "isos/u"],
        &[("HOME", &dir.display().to_string())],
    );
    assert_eq!(reply, ["isos/unused.iso"], "{}", stderr(&output));
    // A pool's name read exactly: `pool-list --name` pads "spare " away.
    let holders = fleet_uri("fleet-holders.xml");
    let (reply, output) = complete_in_bash(&["-c", &holders, "upload", "x.iso", "--pool", ""], &[]);
    assert_eq!(reply, ["isos", "spare\\ "], "{}", stderr(&output));
}

/// A shell completion cannot escape what it offers: a name holding a
/// control or format character is left out, the others are offered.
#[test]
fn names_a_shell_cannot_show_are_not_offered() {
    let controls = fleet_uri("fleet-controls.xml");
    for prefix in ["web", "i"] {
        let (reply, output) = complete_in_bash(&["-c", &controls, "eject", prefix], &[]);
        assert!(output.status.success(), "{}", stderr(&output));
        assert_eq!(reply, Vec::<String>::new());
    }
    let invisible = fleet_uri("fleet-invisible.xml");
    let (reply, _) = complete_in_bash(&["-c", &invisible, "mount", "web"], &[]);
    assert_eq!(reply, ["webprod"]);
}

/// What the admin types after `eject` (or the rest of the line), and the
/// name the completed line must pass the tool, on fixtures/fleet-shell.xml.
const HOSTILE: [(&str, &str); 26] = [
    ("eject y", "y`touch PWNED`"),
    ("eject x", "x$(touch PWNED)"),
    ("eject wi", "with space"),
    ("eject tr", "trail "),
    ("eject -d", "-db"),
    ("eject it", "it's"),
    ("eject 'it", "it's"),
    ("eject 'it'\\''", "it's"),
    ("eject 'sa", "say \"hi\""),
    ("eject \"se", "semi;touch PWNED"),
    ("eject am", "amp&touch PWNED"),
    ("eject gl", "glob*"),
    ("eject \\[", "[ab]?"),
    ("eject \\{", "{a,b}"),
    ("eject \\!", "!bang"),
    ("eject \"!", "!bang"),
    ("eject a:", "a:b@c=d"),
    // After a word break (readline replaces only what follows it), bare
    // and in an opened quote.
    ("eject p:", "p:q r's"),
    ("eject 'p:q", "p:q r's"),
    ("eject Dé", "Débian"),
    // The name holding a newline is never offered: nothing is inserted.
    ("eject nl", "nl"),
    ("mount web my", "my pool/v`touch PWNED`.iso"),
    ("upload x --pool m", "my pool"),
    // A pool's name ending in a blank, and a volume's starting with a dash.
    ("upload x --pool tr", "trail pool "),
    ("mount web tr", "trail pool /-x.iso"),
    ("mount web f", "f$(touch PWNED).iso"),
];

/// A TAB never runs anything, and the completed word is exactly the name:
/// through real bash, zsh and fish (each with the registration `COMPLETE=`
/// prints) in a terminal, the admin types a line, TAB, Enter, with the tool
/// replaced by a function that records its arguments. The host is on the
/// line as `-c test://root@/…` unquoted, which bash splits at `:` and `@`
/// for COMP_WORDS. Names of domains, a pool, a volume and a local file
/// hold what a shell acts on; none of the PWNED commands may run.
#[test]
fn a_completed_line_names_exactly_what_was_offered_and_runs_nothing() {
    let uri = fleet_uri("fleet-shell.xml").replacen("test://", "test://root@", 1);
    assert!(
        !uri.contains(|c: char| c.is_whitespace() || "'\"$`\\".contains(c)),
        "the fixture's path must be typed as it is: {uri}"
    );
    let binary = env!("CARGO_BIN_EXE_dismount_iso_qemu");
    let mut wrong = Vec::new();
    for shell in ["bash", "zsh", "fish"] {
        if !shell_is_installed(shell) {
            assert!(
                !lab_required(),
                "DISMOUNT_LAB_REQUIRED=1 but {shell} is not installed"
            );
            eprintln!("{shell} is not installed: its completion is not tested");
            continue;
        }
        let dir = temp_dir(&format!("complete-in-{shell}"));
        let cwd = dir.join("cwd");
        std::fs::create_dir(&cwd).unwrap();
        std::fs::write(cwd.join("f$(touch PWNED).iso"), "").unwrap();
        let argv = dir.join("argv");
        let terminal = Terminal::start_with(&shell_with_completion(shell, &dir, binary)).unwrap();
        for (typed, name) in HOSTILE {
            let _ = std::fs::remove_file(&argv);
            terminal.type_text(&format!("dismount_iso_qemu -c {uri} {typed}"));
            terminal.send(&["Tab", "Enter"]);
            let (words, _) = typed.rsplit_once(' ').unwrap();
            let mut expected = vec!["-c".to_owned(), uri.clone()];
            expected.extend(words.split(' ').map(str::to_owned));
            expected.push(name.to_owned());
            let args = recorded_arguments(&argv, &terminal);
            if args.as_ref() != Some(&expected) {
                wrong.push(format!("{shell}: {typed} TAB: {args:?}"));
            } else if typed.starts_with("eject ") && name != "nl" {
                // And the tool reads the word as that domain (`-db` too):
                // it has no drive holding media.
                let ejected = run(tool().args(&expected).arg("--dry-run"));
                if !stdout(&ejected).contains("Nothing to eject") {
                    wrong.push(format!("{shell}: {expected:?}: {}", stderr(&ejected)));
                }
            }
        }
        let left: Vec<_> = std::fs::read_dir(&cwd)
            .unwrap()
            .flatten()
            .map(|entry| entry.file_name())
            .collect();
        if left != ["f$(touch PWNED).iso"] {
            wrong.push(format!("{shell}: something ran: {left:?}"));
        }
        drop(terminal);
        std::fs::remove_dir_all(&dir).unwrap();
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

fn shell_is_installed(shell: &str) -> bool {
    std::process::Command::new(shell)
        .args(["-c", "exit 0"])
        .output()
        .is_ok_and(|output| output.status.success())
}

/// The command line of `shell` in `dir/cwd` with the completion
/// registered, `dismount_iso_qemu` a function writing its arguments (each
/// ended by a NUL) to `dir/argv` once whole.
fn shell_with_completion(shell: &str, dir: &std::path::Path, tool: &str) -> String {
    let argv = dir.join("argv").display().to_string();
    let cwd = dir.join("cwd").display().to_string();
    let (rc, command) = match shell {
        "bash" => (
            format!(
                "PS1='PROMPT$ '\nsource <(COMPLETE=bash '{tool}')\n\
                 dismount_iso_qemu() {{ printf '%s\\0' \"$@\" > '{argv}.new' && mv '{argv}.new' '{argv}'; }}\n"
            ),
            format!("bash --rcfile '{}/.rc' -i", dir.display()),
        ),
        "zsh" => (
            format!(
                "PS1='PROMPT$ '\nautoload -Uz compinit && compinit -u -D\n\
                 source <(COMPLETE=zsh '{tool}')\n\
                 dismount_iso_qemu() {{ printf '%s\\0' \"$@\" > '{argv}.new' && mv '{argv}.new' '{argv}'; }}\n"
            ),
            format!("ZDOTDIR='{}' zsh -i", dir.display()),
        ),
        _ => (
            format!(
                "function fish_prompt; echo 'PROMPT$ '; end\n\
                 COMPLETE=fish '{tool}' | source\n\
                 function dismount_iso_qemu; printf '%s\\0' $argv > '{argv}.new'; and mv '{argv}.new' '{argv}'; end\n"
            ),
            format!(
                "XDG_CONFIG_HOME='{0}' XDG_DATA_HOME='{0}' fish --no-config -C \"source '{0}/.rc'\"",
                dir.display()
            ),
        ),
    };
    let rc_file = if shell == "zsh" { ".zshrc" } else { ".rc" };
    std::fs::write(dir.join(rc_file), rc).unwrap();
    format!(
        "cd '{cwd}' && env -u LIBVIRT_URI -u LIBVIRT_DEFAULT_URI -u VIRSH -u COMPLETE {command}"
    )
}

/// The arguments the shell's `dismount_iso_qemu` function recorded in
/// `file`: waits (20 s at most) for it; None if the line never ran (a
/// quote left open, say), which is then interrupted.
fn recorded_arguments(file: &std::path::Path, terminal: &Terminal) -> Option<Vec<String>> {
    for _ in 0..200 {
        if let Ok(bytes) = std::fs::read(file) {
            let args = String::from_utf8_lossy(&bytes)
                .split_terminator('\0')
                .map(str::to_owned)
                .collect();
            return Some(args);
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    terminal.send(&["C-c"]);
    None
}

/// `COMPLETE` is a shell's name only when the shell asks for candidates;
/// exported with another value (`COMPLETE=1`, an admin's own variable),
/// every run goes on as usual instead of ending with "unknown shell".
#[test]
fn complete_naming_no_shell_runs_the_tool_as_usual() {
    let small = fleet_uri("fleet-small.xml");
    for value in ["1", "yes", "/bin/tcsh"] {
        let output = run(tool()
            .env("COMPLETE", value)
            .args(["-c", &small, "status", "--json"]));
        assert!(
            output.status.success(),
            "COMPLETE={value}: {}",
            stderr(&output)
        );
        assert!(stdout(&output).contains("\"plain\""), "COMPLETE={value}");
    }
    // A shell's name, or a path to it ($SHELL), is still a request.
    for value in ["bash", "/usr/bin/zsh"] {
        let output = run(tool().env("COMPLETE", value));
        assert!(output.status.success(), "{}", stderr(&output));
        assert!(
            stdout(&output).contains("dismount_iso_qemu"),
            "COMPLETE={value}"
        );
    }
}

/// A host that never answers completes nothing, and the completion comes
/// back (within its 2 s bound) with every virsh and child of it gone.
#[test]
fn a_hung_host_completes_nothing_and_leaves_no_process() {
    let dir = temp_dir("complete-hang");
    let pids = dir.join("pids");
    let virsh = support("fault-virsh").display().to_string();
    let env = [
        ("VIRSH", virsh.as_str()),
        ("FAULT", "hang"),
        ("FAULT_PIDS", pids.to_str().unwrap()),
    ];
    for words in [
        &["-c", "test:///hung", "eject", "w"][..],
        &["-c", "test:///hung", "mount", "web", "isos/"],
    ] {
        let (reply, output) = complete_in_bash(words, &env);
        assert!(output.status.success(), "{}", stderr(&output));
        assert_eq!(reply, Vec::<String>::new(), "{words:?}");
    }
    let started: Vec<i32> = std::fs::read_to_string(&pids)
        .expect("the hung virsh ran")
        .split_whitespace()
        .map(|pid| pid.parse().unwrap())
        .collect();
    assert_eq!(started.len(), 4, "a virsh and its child per completion");
    assert_all_gone(&started);
    // Beside a host that answers, which still completes.
    let library = fleet_uri("fleet-library.xml");
    let (reply, output) = complete_in_bash(
        &["-c", "test:///hung", "-c", &library, "eject", "w"],
        &[env[0], env[1], ("FAULT_ONLY_URI", "test:///hung")],
    );
    assert_eq!(reply, ["web"], "{}", stderr(&output));
}

/// A `--hosts` on the line that is no regular file (a FIFO nobody writes,
/// `/dev/zero`) completes nothing and the TAB comes back: the completion
/// does not read it (before: it waited on the FIFO for ever, or read
/// `/dev/zero` until memory ran out).
#[test]
fn a_hosts_file_that_is_no_regular_file_completes_nothing() {
    let dir = temp_dir("complete-fifo");
    let fifo = dir.join("hosts");
    mkfifo(&fifo);
    for hosts in [fifo.display().to_string(), "/dev/zero".to_owned()] {
        let line = format!("dismount_iso_qemu --hosts {hosts} eject w");
        let mut child = tool()
            .env("COMPLETE", "bash")
            .args(["--", &line, "w"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // A bound, not a measure: the completion's own is 2 s.
        let ended = (0..200).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(100));
            child.try_wait().unwrap().is_some()
        });
        if !ended {
            let _ = child.kill();
        }
        let output = child.wait_with_output().unwrap();
        assert!(ended, "--hosts {hosts}: the TAB never came back");
        assert!(output.status.success(), "{}", stderr(&output));
        assert_eq!(stdout(&output), "", "--hosts {hosts}");
    }
}

/// A TAB on a pasted line never runs a program the line names: neither
/// its `--virsh` nor the program of a URI that connects through one (the
/// `ext` transport's `command=`, ssh's `command=`), from `-c` or from a
/// `--hosts` file; the admin's own VIRSH and LIBVIRT_URI stay trusted.
#[test]
fn a_tab_never_runs_a_program_the_line_names() {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_dir("complete-no-program");
    let marker = dir.join("RAN");
    let program = dir.join("program");
    std::fs::write(
        &program,
        format!(
            "#!/bin/sh\ntouch '{}'\nexec virsh \"$@\"\n",
            marker.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
    let program = program.display().to_string();
    let hosts = dir.join("hosts");
    std::fs::write(&hosts, format!("qemu+ext:///system?command={program}\n")).unwrap();
    let fleet = fleet_uri("fleet-small.xml");
    let ext = format!("qemu+ext:///system?command={program}");
    let ssh = format!("qemu+ssh://root@127.0.0.1/system?command={program}");
    let lines: [Vec<&str>; 4] = [
        vec!["-c", &fleet, "--virsh", &program, "eject", "p"],
        vec!["-c", &ext, "eject", "p"],
        vec!["-c", &ssh, "eject", "p"],
        vec!["--hosts", hosts.to_str().unwrap(), "eject", "p"],
    ];
    for words in lines {
        let (_, output) = complete_in_bash(&words, &[]);
        assert!(output.status.success(), "{}", stderr(&output));
        assert!(!marker.exists(), "a TAB ran {program}: {words:?}");
    }
    // The line's host is still asked with the admin's own virsh.
    let (reply, _) = complete_in_bash(&["-c", &fleet, "--virsh", &program, "eject", "p"], &[]);
    assert_eq!(reply, ["plain"], "{reply:?}");
}

/// A TAB over ssh asks virsh for `no_tty=1`: ssh then fails at once
/// instead of printing a password or host-key prompt on the terminal in
/// the middle of the line being typed.
#[test]
fn completion_over_ssh_never_prompts() {
    let dir = temp_dir("complete-no-tty");
    let argv = dir.join("argv");
    let virsh = support("fault-virsh").display().to_string();
    let env = [
        ("VIRSH", virsh.as_str()),
        ("FAULT", "hang"),
        ("FAULT_ARGV", argv.to_str().unwrap()),
    ];
    let (reply, output) = complete_in_bash(
        &["-c", "qemu+ssh://root@far.invalid/system", "eject", "w"],
        &env,
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(reply, Vec::<String>::new());
    let calls = std::fs::read_to_string(&argv).expect("virsh was asked");
    assert!(
        calls
            .lines()
            .all(|call| call.starts_with("-c qemu+ssh://root@far.invalid/system?no_tty=1 ")),
        "{calls}"
    );
}

#[test]
fn man_pages_cover_the_tool_and_every_subcommand() {
    let page = stdout(&run(tool().arg("manpage")));
    assert!(page.contains(".TH dismount_iso_qemu 1"), "{page}");
    for command in subcommands() {
        // roff writes a hyphen in the text as `\-` (`delete\-iso`).
        assert!(
            page.contains(&command.replace('-', "\\-")),
            "{command} missing from the man page"
        );
    }
    let dir = temp_dir("man");
    let output = run(tool().args(["manpage", "--dir"]).arg(&dir));
    assert!(output.status.success(), "{}", stderr(&output));
    for command in subcommands() {
        let file = dir.join(format!("dismount_iso_qemu-{command}.1"));
        let text =
            std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert!(
            text.contains(&format!(".TH dismount_iso_qemu-{command} 1")),
            "{text}"
        );
    }
    assert!(dir.join("dismount_iso_qemu.1").exists());
}

/// Colour: on a terminal (script(1) provides one) unless NO_COLOR or
/// `--color never`; never into a pipe unless `--color always`; never in
/// JSON.
#[test]
fn colour_on_terminals_only_unless_asked() {
    const ESC: char = '\u{1b}';
    const GREEN: &str = "\u{1b}[38;5;10m";
    let uri = fleet_uri("fleet-small.xml");
    let piped = |args: &[&str]| stdout(&run(tool().args(["-c", &uri]).args(args)));
    assert!(!piped(&["status"]).contains(ESC), "a pipe gets no colour");
    assert!(
        piped(&["--color", "always", "status"]).contains(GREEN),
        "running is green"
    );
    assert!(!piped(&["--color", "always", "status", "--json"]).contains(ESC));
    let on_terminal = |args: &str, no_color: Option<&str>| {
        let mut command = std::process::Command::new("script");
        command
            .args([
                "-qec",
                &format!(
                    "'{}' -c '{uri}' {args}",
                    env!("CARGO_BIN_EXE_dismount_iso_qemu")
                ),
                "/dev/null",
            ])
            .env_remove("LIBVIRT_URI")
            .env_remove("NO_COLOR")
            .env("TERM", "xterm");
        if let Some(value) = no_color {
            command.env("NO_COLOR", value);
        }
        let output = run(&mut command);
        assert!(output.status.success(), "{}", stderr(&output));
        stdout(&output)
    };
    assert!(
        on_terminal("status", None).contains(GREEN),
        "a terminal gets colour"
    );
    assert!(
        !on_terminal("status", Some("1")).contains(GREEN),
        "NO_COLOR is honoured"
    );
    assert!(
        on_terminal("status", Some("")).contains(GREEN),
        "an empty NO_COLOR is not set"
    );
    assert!(!on_terminal("--color never status", None).contains(GREEN));
    assert!(
        on_terminal("--color always status", Some("1")).contains(GREEN),
        "--color always wins"
    );
    assert!(
        !on_terminal("status --json", None).contains(ESC),
        "JSON is never coloured"
    );
}

/// The guide's recipes (docs/guide.md), run as written: each exits 0 and prints what its
/// comment promises on `fixtures/fleet-media.xml`.
#[test]
fn readme_recipes_run() {
    let readme = std::fs::read_to_string(root().join("docs/guide.md")).unwrap();
    let block = readme
        .split_once("<!-- recipes: begin -->")
        .and_then(|(_, rest)| rest.split_once("<!-- recipes: end -->"))
        .expect("the recipes block")
        .0;
    let commands: Vec<&str> = block
        .lines()
        .filter(|line| line.starts_with("dismount_iso_qemu "))
        .collect();
    assert_eq!(commands.len(), 5, "{block}");
    let bin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_dismount_iso_qemu"))
        .parent()
        .unwrap()
        .to_owned();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap());
    let expected = [
        vec!["shares-iso", "two-drives"],
        vec![
            "change-media --domain two-drives --path hdc --eject",
            "--path fda --eject",
        ],
        vec!["tray-open", "two-drives"],
        vec![
            "shares-iso hdc /srv/iso/missing-install.iso",
            "two-drives hdc",
        ],
        vec!["tray-open: the connection's driver does not support guest agent calls"],
    ];
    for (command, wanted) in commands.iter().zip(expected) {
        let output = run(std::process::Command::new("bash")
            .args(["-o", "pipefail", "-c", command])
            .env("PATH", &path)
            .env("LIBVIRT_URI", fleet_uri("fleet-media.xml")));
        assert!(output.status.success(), "{command}: {}", stderr(&output));
        let text = stdout(&output);
        for piece in wanted {
            assert!(text.contains(piece), "{command}:\n{text}");
        }
    }
}

/// Into a pipe whose reader is gone, `completions` and `manpage` end as
/// every command does: quietly, status 0; into a full disk, one line and
/// status 1. The pipe's read end is closed before the tool starts, so
/// every write it makes fails.
#[test]
fn completions_and_man_page_meet_a_closed_pipe_and_a_full_disk() {
    for args in [
        &["completions", "bash"][..],
        &["completions", "zsh"],
        &["manpage"],
    ] {
        let output = run(tool().args(args).stdout(closed_pipe()));
        assert_eq!(
            output.status.code(),
            Some(0),
            "{args:?}: {}",
            stderr(&output)
        );
        assert_eq!(stderr(&output), "", "{args:?}");

        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let output = run(tool().args(args).stdout(full));
        assert_eq!(
            output.status.code(),
            Some(1),
            "{args:?}: {}",
            stderr(&output)
        );
        let errors = stderr(&output);
        assert_eq!(errors.lines().count(), 1, "{args:?}: {errors}");
        assert!(
            errors.starts_with("dismount_iso_qemu: error: ")
                && errors.contains("No space left on device"),
            "{args:?}: {errors}"
        );
    }
}
