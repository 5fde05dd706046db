//! The tool among an admin's others: shell completions and man pages,
//! generated from the same clap definitions as the binary's own parser.

mod common;

use common::*;

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

#[test]
fn man_pages_cover_the_tool_and_every_subcommand() {
    let page = stdout(&run(tool().arg("manpage")));
    assert!(page.contains(".TH dismount_iso_qemu 1"), "{page}");
    for command in subcommands() {
        assert!(
            page.contains(&command),
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
