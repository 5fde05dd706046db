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

/// The README's recipes, run as written: each exits 0 and prints what its
/// comment promises on `fixtures/fleet-media.xml`.
#[test]
fn readme_recipes_run() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
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
