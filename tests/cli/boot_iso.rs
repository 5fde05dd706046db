//! `boot-iso` as a binary against the real virsh on libvirt's test driver:
//! every refusal is one line, exit 1, and no virsh call that changes
//! anything (counting-virsh records them); `--dry-run` prints the exact
//! commands. The starts themselves run on the lab (tests/lab/boot.rs).

use crate::common::*;

fn small_fleet() -> String {
    fleet_uri("fleet-small.xml")
}

/// An ISO file whose sector 17 is the lab rescue ISO's El Torito boot
/// record (fixtures/iso/), or none when `bootable` is false.
fn iso(dir: &std::path::Path, name: &str, bootable: bool) -> String {
    use std::io::{Seek, SeekFrom, Write};
    let path = iso_file(dir, name, 1 << 20);
    if bootable {
        let record = std::fs::read(root().join("fixtures/iso/rescue-sector17.bin")).unwrap();
        let mut file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.seek(SeekFrom::Start(17 * 2048)).unwrap();
        file.write_all(&record).unwrap();
    }
    path.display().to_string()
}

/// Runs `boot-iso ARGS` through counting-virsh on fleet-small.xml: the
/// output, and every virsh command it ran, an argv or a command a
/// session was sent on its stdin (where every command of a session goes:
/// an argv alone shows only `-c URI`).
fn counted(args: &[&str]) -> (std::process::Output, Vec<String>) {
    let dir = temp_dir("boot-count");
    let log = dir.join("calls");
    let sent = dir.join("stdin");
    let output = run(tool()
        .arg("--virsh")
        .arg(support("counting-virsh"))
        .args(["-c", &small_fleet(), "boot-iso"])
        .args(args)
        .env("COUNTING_VIRSH_LOG", &log)
        .env("COUNTING_VIRSH_STDIN", &sent));
    let mut calls: Vec<String> = recorded_calls(&log)
        .into_iter()
        .map(|call| call.join(" "))
        .collect();
    for entry in std::fs::read_dir(&sent).into_iter().flatten() {
        let script = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        calls.extend(
            script
                .lines()
                .flat_map(|line| line.split(" ; "))
                .filter(|command| !command.starts_with("echo @@"))
                .map(str::to_owned),
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    (output, calls)
}

/// Whether a recorded command is one that changes a VM.
fn changes_a_vm(call: &str) -> bool {
    let word = call.split_whitespace().next().unwrap_or_default();
    ["create", "shutdown", "destroy", "start", "define"].contains(&word)
}

#[track_caller]
fn assert_refused(args: &[&str], needles: &[&str]) {
    let (output, calls) = counted(args);
    assert_one_line_refusal(args, &output, needles);
    for call in calls {
        assert!(!changes_a_vm(&call), "{args:?} changed something: {call}");
    }
}

#[test]
fn refusals_are_one_line_and_change_nothing() {
    let dir = temp_dir("boot-refusals");
    let bootable = iso(&dir, "rescue.iso", true);
    let plain = iso(&dir, "plain.iso", false);
    let fifo = dir.join("fifo.iso");
    mkfifo(&fifo);
    let fifo = fifo.display().to_string();
    let folder = dir.display().to_string();
    assert_refused(
        &["plain", &bootable, "--yes"],
        &["'plain' is running", "--restart"],
    );
    assert_refused(&["-db", &bootable, "--yes"], &["'-db' is paused"]);
    assert_refused(&["nope", &bootable, "--yes"], &["no domain named 'nope'"]);
    assert_refused(
        &["with space", &plain, "--yes"],
        &["no El Torito boot record", "--force"],
    );
    assert_refused(&["with space", &folder, "--yes"], &["not a regular file"]);
    assert_refused(&["with space", &fifo, "--yes"], &["not a regular file"]);
    assert_refused(&["with space", &bootable], &["pass --yes"]);
    assert_refused(
        &["with space", &bootable, "--target", "hdz", "--yes"],
        &["has no drive 'hdz'"],
    );
    // The record sees a change where there is one (before, it held only
    // the sessions' `-c URI`: no refusal above could have been caught).
    let (started, calls) = counted(&["with space", &bootable, "--yes"]);
    assert!(started.status.success(), "{}", stderr(&started));
    assert_eq!(
        calls.iter().filter(|c| changes_a_vm(c)).count(),
        1,
        "one create: {calls:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--wait` is refused by clap (exit 2) when zero or past an hour.
#[test]
fn wait_out_of_range_is_a_usage_error() {
    for wait in ["0s", "2h", "soon"] {
        let output = run(tool().args([
            "-c",
            &small_fleet(),
            "boot-iso",
            "plain",
            "x.iso",
            "--wait",
            wait,
        ]));
        assert_eq!(output.status.code(), Some(2), "{wait}: {}", stderr(&output));
        assert_stderr_contains(&output, "--wait");
    }
}

/// `--dry-run` shows the plan and the exact virsh commands, runs none
/// that changes anything; `--force` plans an ISO without a boot record.
#[test]
fn dry_run_prints_the_plan_and_the_commands() {
    let dir = temp_dir("boot-dry");
    let bootable = iso(&dir, "rescue.iso", true);
    let (output, calls) = counted(&["with space", &bootable, "--dry-run"]);
    let text = stdout(&output);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        text.contains(&format!(
            "Planned: 'with space' starts once from {bootable}"
        )),
        "{text}"
    );
    assert!(text.contains("boots first"), "{text}");
    assert!(
        text.contains(&format!("virsh -c {} create TRANSIENT.xml", small_fleet())),
        "{text}"
    );
    assert!(
        text.contains(&format!("  + <source file='{bootable}'/>")),
        "{text}"
    );
    assert!(!calls.iter().any(|c| changes_a_vm(c)), "{calls:?}");
    let plain = iso(&dir, "plain.iso", false);
    let (forced, _) = counted(&["with space", &plain, "--force", "--dry-run"]);
    assert!(forced.status.success(), "{}", stderr(&forced));
    let (restart, calls) = counted(&[
        "plain",
        &bootable,
        "--restart",
        "--target",
        "hdc",
        "--dry-run",
    ]);
    let text = stdout(&restart);
    assert!(
        text.contains("shut it down first (ACPI), waiting up to 2m"),
        "{text}"
    );
    assert!(
        text.contains("shutdown --domain plain --mode acpi"),
        "{text}"
    );
    assert!(!calls.iter().any(|c| changes_a_vm(c)), "{calls:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Menu 8: the VM and the ISO by number or typed, the plan, the question;
/// "n" changes nothing.
#[test]
fn the_menu_boots_from_an_iso_after_asking() {
    let dir = temp_dir("boot-menu");
    let bootable = iso(&dir, "rescue.iso", true);
    let output = menu_session(&small_fleet(), &format!("8\n6\n{bootable}\nn\n5\n"));
    let text = stdout(&output);
    assert!(text.contains("8) Boot from ISO"), "{text}");
    assert!(text.contains("  6) with space (shut off)"), "{text}");
    assert!(
        text.contains(&format!(
            "Planned: 'with space' starts once from {bootable}"
        )),
        "{text}"
    );
    assert!(text.contains("Go ahead? [y/N]: Nothing changed."), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `COMPLETE=bash` knows `boot-iso`: its VM, its ISO from the host's
/// pools, the VM's drives for `--target`.
#[test]
fn bash_completes_boot_iso_from_the_host() {
    let library = fleet_uri("fleet-library.xml");
    let (reply, output) = complete_in_bash(&["-c", &library, "boot-iso", "w"], &[]);
    assert_eq!(reply, ["web"], "{}", stderr(&output));
    let (reply, output) = complete_in_bash(&["-c", &library, "boot-iso", "web", "isos/u"], &[]);
    assert_eq!(reply, ["isos/unused.iso"], "{}", stderr(&output));
    let media = fleet_uri("fleet-media.xml");
    let (reply, output) = complete_in_bash(
        &[
            "-c",
            &media,
            "boot-iso",
            "two-drives",
            "x.iso",
            "--target",
            "",
        ],
        &[],
    );
    assert_eq!(reply, ["fda", "hdc", "sda"], "{}", stderr(&output));
}
