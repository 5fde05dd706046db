//! `migrate-check` as a binary against the real virsh on libvirt's test
//! driver: the source fixtures/fleet-migrate.xml (a VM for every case)
//! and the destination fixtures/migrate-dest.xml (pool `isos` with one
//! ISO of the source's size, one of another, one missing; no pool
//! `media`). The test driver keeps its state per connection, so an eject
//! is seen by the run that made it (its own check afterwards) only.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Output;

use crate::common::*;
use serde_json::Value;

fn source() -> String {
    fleet_uri("fleet-migrate.xml")
}

fn destination() -> String {
    fleet_uri("migrate-dest.xml")
}

fn migrate_check(args: &[&str]) -> Output {
    run(tool()
        .args(["-c", &source(), "migrate-check", "--to", &destination()])
        .args(args))
}

fn json(output: &Output) -> Vec<Value> {
    serde_json::from_str(&stdout(output))
        .unwrap_or_else(|e| panic!("{e}: {}{}", stdout(output), stderr(output)))
}

fn keys(value: &Value) -> BTreeSet<&str> {
    value
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect()
}

/// Every VM's verdict and each drive's reason, by name, against the
/// destination's ground truth (`vol-list` and `pool-list` by the real
/// virsh); the JSON keys as named; exit 1, since some VMs are blocked.
#[test]
fn every_reason_with_its_verdict_and_the_json_keys() {
    let truth = virsh(&destination(), &["vol-list", "isos"]);
    assert!(truth.contains("/srv/isos/a.iso") && truth.contains("/srv/isos/b.iso"));
    assert!(!truth.contains("c.iso"), "{truth}");
    assert!(!virsh(&destination(), &["pool-list", "--all"]).contains("media"));
    let output = migrate_check(&["--all", "--json"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let rows = json(&output);
    let mut seen: BTreeMap<String, (String, Vec<(String, Value)>)> = BTreeMap::new();
    for row in &rows {
        assert_eq!(
            keys(row),
            BTreeSet::from(["uri", "domain", "destination", "verdict", "drives"]),
            "{row}"
        );
        assert_eq!(row["uri"], source().as_str());
        assert_eq!(row["destination"], destination().as_str());
        let mut drives = Vec::new();
        for drive in row["drives"].as_array().unwrap() {
            for key in ["target", "source", "live", "config", "reason", "fix"] {
                assert!(drive.get(key).is_some(), "{key} missing: {drive}");
            }
            drives.push((
                drive["target"].as_str().unwrap().to_owned(),
                drive["reason"].clone(),
            ));
        }
        seen.insert(
            row["domain"].as_str().unwrap().to_owned(),
            (row["verdict"].as_str().unwrap().to_owned(), drives),
        );
    }
    let expect = |verdict: &str, drives: &[(&str, Value)]| {
        (
            verdict.to_owned(),
            drives
                .iter()
                .map(|(target, reason)| ((*target).to_owned(), reason.clone()))
                .collect::<Vec<_>>(),
        )
    };
    let reason = |r: &str| Value::String(r.to_owned());
    let want = BTreeMap::from([
        ("same".to_owned(), expect("ok", &[("hdc", Value::Null)])),
        ("empty".to_owned(), expect("ok", &[("hdc", Value::Null)])),
        (
            "resized".to_owned(),
            expect("blocked", &[("hdc", reason("different_size"))]),
        ),
        (
            "gone".to_owned(),
            expect("blocked", &[("hdc", reason("missing"))]),
        ),
        (
            "lost".to_owned(),
            expect("blocked", &[("hdc", reason("missing"))]),
        ),
        (
            "-lead 'q' `tick`".to_owned(),
            expect("blocked", &[("hdc", reason("missing"))]),
        ),
        (
            "by-volume".to_owned(),
            expect(
                "blocked",
                &[("hdc", Value::Null), ("fda", reason("no_pool"))],
            ),
        ),
        (
            "outside".to_owned(),
            expect("warning", &[("hdc", reason("not_checkable"))]),
        ),
        (
            "netcd".to_owned(),
            expect("warning", &[("hdc", reason("network"))]),
        ),
        (
            "optional".to_owned(),
            expect("warning", &[("hdc", reason("missing"))]),
        ),
    ]);
    assert_eq!(seen, want);
}

/// Nothing blocked: exit 0; a destination that does not answer: its line,
/// exit 3, and the other destination still checked.
#[test]
fn exit_status_says_blocked_or_unreadable() {
    let output = migrate_check(&["same", "empty", "outside"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(stdout(&output).contains("3 check(s): 2 ok, 1 warning, 0 blocked."));
    let missing = fleet_uri("no-such-node.xml");
    let output = migrate_check(&["same", "--to", &missing]);
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    assert!(
        stdout(&output).contains(&format!("same -> {}: ok", destination())),
        "{}",
        stdout(&output)
    );
    assert_stderr_contains(
        &output,
        &format!("error: {missing}: cannot list storage pools"),
    );
    assert_eq!(stderr(&output).lines().count(), 1, "{}", stderr(&output));
}

/// Each bad input is one line and nothing is read or changed.
#[test]
fn bad_input_is_one_line() {
    for (args, code, needle) in [
        (
            vec!["same", "--to", &source()],
            1,
            "is the source host: a VM does not migrate to where it is",
        ),
        (vec!["same", "nosuch"], 1, "no domain named 'nosuch'"),
        (
            vec!["gone", "--fix", "eject", "--verify"],
            1,
            "--verify reads a copy back: it goes with --fix copy",
        ),
    ] {
        let output = migrate_check(&args);
        assert_eq!(output.status.code(), Some(code), "{}", stderr(&output));
        assert_stderr_contains(&output, needle);
        assert_eq!(stderr(&output).lines().count(), 1, "{}", stderr(&output));
        assert!(stdout(&output).is_empty(), "{}", stdout(&output));
    }
    let output = run(tool().args(["-c", &source(), "migrate-check", "--all"]));
    assert_eq!(output.status.code(), Some(1));
    assert_stderr_contains(&output, "needs a destination: --to URI");
    let output = migrate_check(&["same", "--fix", "rsync"]);
    assert_eq!(output.status.code(), Some(2));
    assert_stderr_contains(&output, "invalid value 'rsync' for '--fix <HOW>'");
}

/// The eject each blocked drive gets is a command this tool parses, for
/// the VM and drive meant, however the name is spelled (a leading dash,
/// quotes, a backtick): run by a shell, it plans that eject, and without
/// a terminal or --yes it changes nothing.
#[test]
fn the_eject_way_out_is_a_command_that_names_the_drive() {
    let output = migrate_check(&["--json", "--", "-lead 'q' `tick`"]);
    let rows = json(&output);
    let fix = rows[0]["drives"][0]["fix"].as_array().unwrap();
    let eject = fix[0].as_str().unwrap();
    assert!(eject.starts_with("dismount_iso_qemu -c "), "{eject}");
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_dismount_iso_qemu"));
    let output = run(std::process::Command::new("sh")
        .arg("-c")
        .arg(eject)
        .env(
            "PATH",
            format!(
                "{}:{}",
                bin.parent().unwrap().display(),
                std::env::var("PATH").unwrap()
            ),
        )
        .stdin(std::process::Stdio::null()));
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("-lead 'q' `tick` hdc: eject /srv/isos/c.iso (config only)"),
        "{}",
        stdout(&output)
    );
    assert_stderr_contains(&output, "nobody can confirm; pass --yes");
}

/// `--fix eject`: the drives that block, and only those (not the ISO
/// that is there, not the warnings), planned as `eject` plans them;
/// `--dry-run` prints the virsh commands and changes nothing (exit 1:
/// still blocked); `--yes` sends them, and each drive is checked after
/// (the test driver has no change-media: each is a failure, exit 1; the
/// lab's `migrate_check_fix_eject` sees them done).
#[test]
fn fix_eject_ejects_exactly_what_blocks() {
    let output = migrate_check(&["--all", "--fix", "eject", "--dry-run"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let text = stdout(&output);
    let planned: Vec<&str> = text
        .lines()
        .skip_while(|line| *line != "Planned:")
        .skip(1)
        .take_while(|line| line.starts_with("  "))
        .collect();
    assert_eq!(
        planned,
        [
            "  -lead 'q' `tick` hdc: eject /srv/isos/c.iso (config only)",
            "  by-volume fda: eject media/e.iso (live and config)",
            "  gone hdc: eject /srv/isos/c.iso (live and config)",
            "  lost hdc: eject /srv/isos/lost.iso (config only)",
            "  resized hdc: eject /srv/isos/b.iso (config only)",
        ],
        "{text}"
    );
    assert!(text.contains("Dry run: these virsh commands would run; nothing changed."));
    let output = migrate_check(&["--all", "--fix", "eject", "--yes"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let text = stdout(&output);
    assert_eq!(text.matches("\nFAILED: ").count(), 5, "{text}");
    assert!(text.contains("5 of 5 drive change(s) failed."), "{text}");
}

/// `--fix copy --dry-run`: one copy per ISO missing there that the
/// source has (c.iso, held by two VMs, copied once, from the source's
/// volume), and a line for each drive that blocks and cannot be copied
/// so: another ISO of that name there, no pool there, an ISO missing on
/// the source too. Nothing copied: exit 1. Without a terminal and
/// `--yes`, refused; the test driver has no vol-download, so `--yes`
/// fails, saying why (the lab's tests see a copy made, and one cut short
/// leave nothing).
#[test]
fn fix_copy_plans_each_missing_iso_once_and_says_why_not_the_others() {
    let output = migrate_check(&["--all", "--fix", "copy", "--dry-run"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let text = stdout(&output);
    let after_report: Vec<&str> = text
        .lines()
        .skip_while(|line| !line.ends_with("blocked."))
        .skip(1)
        .collect();
    assert_eq!(
        after_report,
        [
            "not copied: by-volume fda media/e.iso: its pool is not there, or not started: the \
             `virsh` lines above first",
            "not copied: lost hdc /srv/isos/lost.iso: the source has no file or volume to copy \
             it from",
            "not copied: resized hdc /srv/isos/b.iso: another ISO of that name is there: \
             replace it with the `upload --replace` shown above",
            "Planned:",
            &format!(
                "  copy isos/c.iso on {} to isos/c.iso on {} (2.9 KiB)",
                source(),
                destination()
            ),
            "Dry run: nothing was copied.",
        ],
        "{text}"
    );
    let output = migrate_check(&["gone", "--fix", "copy"]);
    assert_eq!(output.status.code(), Some(1));
    assert_stderr_contains(&output, "not copied: stdin is not a terminal");
    let output = migrate_check(&["gone", "--fix", "copy", "--yes"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(
        text.contains("FAILED: copy isos/c.iso on")
            && text.contains("the source's stream ended after 0 of 3000 bytes")
            && text.contains("this function is not supported by the connection driver"),
        "{text}"
    );
}

/// With --hosts and no --to, every host against every other: the VMs of
/// the source against the destination; the destination has none.
#[test]
fn hosts_without_to_check_every_host_against_every_other() {
    let dir = std::env::temp_dir().join(format!("migrate-hosts-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("hosts");
    std::fs::write(&file, format!("{}\n{}\n", source(), destination())).unwrap();
    let output = run(tool()
        .arg("--hosts")
        .arg(&file)
        .args(["migrate-check", "--all", "--json"]));
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let rows = json(&output);
    assert_eq!(rows.len(), 10);
    assert!(
        rows.iter()
            .all(|row| row["destination"] == destination().as_str())
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_menu_checks_every_vm_against_a_destination() {
    let output = menu_session(&source(), &format!("7\n{}\n5\n", destination()));
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.contains("7) Check migration"), "{text}");
    assert!(
        text.contains(&format!("gone -> {}: blocked", destination())),
        "{text}"
    );
    assert!(
        text.contains("10 check(s): 2 ok, 3 warning, 5 blocked."),
        "{text}"
    );
    // The source itself as its destination: one line, the menu goes on.
    let output = menu_session(&source(), &format!("7\n{}\n5\n", source()));
    let text = stdout(&output);
    assert!(text.contains("error: the destination"), "{text}");
    assert_eq!(text.matches("Select option:").count(), 2, "{text}");
}

/// The guide's (docs/guide.md) "before draining a host" lines, run as written: each
/// says what its comment promises (exit 1: something is blocked).
#[test]
fn the_readmes_migrate_recipes_run() {
    let readme = std::fs::read_to_string(root().join("docs/guide.md")).unwrap();
    let block = readme
        .split_once("<!-- migrate recipes: begin -->")
        .and_then(|(_, rest)| rest.split_once("<!-- migrate recipes: end -->"))
        .expect("the migrate recipes block")
        .0;
    let commands: Vec<&str> = block
        .lines()
        .filter(|line| line.starts_with("dismount_iso_qemu "))
        .collect();
    assert_eq!(commands.len(), 3, "{block}");
    let dir = std::env::temp_dir().join(format!("migrate-recipes-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let hosts = dir.join("hosts");
    std::fs::write(&hosts, format!("{}\n{}\n", source(), destination())).unwrap();
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_dismount_iso_qemu"));
    let path = format!(
        "{}:{}",
        bin.parent().unwrap().display(),
        std::env::var("PATH").unwrap()
    );
    let expected = [
        format!("gone -> {}: blocked", destination()),
        format!("{} gone -> {}", source(), destination()),
        "  gone hdc: eject /srv/isos/c.iso (live and config)".to_owned(),
    ];
    for (command, expected) in commands.iter().zip(expected) {
        let output = run(std::process::Command::new("bash")
            .args(["-o", "pipefail", "-c", command])
            .env("PATH", &path)
            .env("SOURCE", source())
            .env("DEST", destination())
            .env("HOSTS", &hosts)
            .env_remove("LIBVIRT_URI")
            .stdin(std::process::Stdio::null()));
        assert!(
            stdout(&output).lines().any(|line| line == expected),
            "{command}: {expected:?} not in\n{}{}",
            stdout(&output),
            stderr(&output)
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Without `-c`, the source is virsh's default (LIBVIRT_DEFAULT_URI
/// here): a `--to` naming that same host is refused too, once virsh has
/// said where it connects (before: every VM checked against itself).
#[test]
fn a_destination_that_is_virshs_default_source_is_refused() {
    let output = run(tool().env("LIBVIRT_DEFAULT_URI", source()).args([
        "migrate-check",
        "gone",
        "--to",
        &source(),
    ]));
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    assert_stderr_contains(&output, "is the source host");
    assert_eq!(stderr(&output).lines().count(), 1, "{}", stderr(&output));
    assert!(stdout(&output).is_empty(), "{}", stdout(&output));
}

fn hostile_check(args: &[&str]) -> Output {
    run(tool()
        .args(["-c", &fleet_uri("migrate-hostile.xml"), "migrate-check"])
        .args(["--to", &fleet_uri("migrate-hostile-dest.xml")])
        .args(args))
}

/// Every way out printed for pools, volumes and a VM whose names start
/// with a dash and hold spaces, quotes, backticks and `$(…)`, a CD-ROM's
/// and a floppy's, is one line a shell reads (`sh -n`), and this tool's
/// own lines, run by a shell in a folder holding the file `vol-download`
/// would have made, parse as typed: the eject plans its eject (it stops
/// at the confirmation nobody can give), the upload makes the volume
/// meant (the floppy's image, no ISO, too) and stops at the test
/// driver's missing vol-upload.
#[test]
fn the_ways_out_for_dashed_and_quoted_names_run_as_printed() {
    let rows = json(&hostile_check(&["--json", "--", "-vm 'q' `t` "]));
    let dir = std::env::temp_dir().join(format!("migrate-hostile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    iso_file(&dir, "-a $(id).iso", 1000);
    std::fs::write(dir.join("-f `t`.img"), vec![0u8; 1_474_560]).unwrap();
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_dismount_iso_qemu"));
    let path = format!(
        "{}:{}",
        bin.parent().unwrap().display(),
        std::env::var("PATH").unwrap()
    );
    let drives = rows[0]["drives"].as_array().unwrap();
    let volumes = ["-isos x/-a $(id).iso", "-dir x/-f `t`.img"];
    assert_eq!(drives.len(), volumes.len(), "{drives:?}");
    for (drive, volume) in drives.iter().zip(volumes) {
        let mut ran = Vec::new();
        for line in drive["fix"].as_array().unwrap() {
            let line = line.as_str().unwrap();
            let parsed = run(std::process::Command::new("sh").args(["-n", "-c", line]));
            assert!(parsed.status.success(), "{line}: {}", stderr(&parsed));
            if !line.starts_with("dismount_iso_qemu ") {
                continue;
            }
            let output = run(std::process::Command::new("sh")
                .args(["-c", line])
                .current_dir(&dir)
                .env("PATH", &path)
                .stdin(std::process::Stdio::null()));
            assert_eq!(output.status.code(), Some(1), "{line}: {}", stderr(&output));
            ran.push(output);
        }
        let [eject, upload] = ran.as_slice() else {
            panic!("{drive}")
        };
        let target = drive["target"].as_str().unwrap();
        let media = drive["source"].as_str().unwrap();
        assert!(
            stdout(eject).contains(&format!("-vm 'q' `t`  {target}: eject {media}")),
            "{}",
            stdout(eject)
        );
        assert_stderr_contains(eject, "pass --yes");
        assert_stderr_contains(
            upload,
            "not supported by the connection driver: virStorageVolUpload",
        );
        assert_stderr_contains(
            upload,
            &format!("the volume {volume} it had created was deleted"),
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `--fix copy` of an ISO bigger than the destination's pool has room
/// for (200 GiB; the test driver's pools have 100 GiB, less the 5000 bytes of d.iso there) is refused before
/// anything is created, naming both figures, as `upload` refuses.
#[test]
fn a_copy_that_would_not_fit_is_refused_before_anything_is_made() {
    let output = hostile_check(&["huge", "--fix", "copy", "--yes"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let text = stdout(&output);
    let refused = format!(
        "storage pool '-isos x' on {} has 107374177400 bytes free; -isos x/huge.iso of {} needs \
         214748364800 bytes",
        fleet_uri("migrate-hostile-dest.xml"),
        fleet_uri("migrate-hostile.xml")
    );
    assert!(
        text.contains(&refused) && !text.contains("vol-create-as"),
        "{text}"
    );
}

/// A destination that is the source under another spelling (here the
/// same test-driver file by another path; on a fleet `qemu:///system`
/// and `qemu+ssh://this-host/system`) runs the very VMs of the source:
/// a warning naming one, with `--to` and in a `--hosts` matrix, rather
/// than every VM found `ok` against itself without a word. (Checked all
/// the same: the lab's tests check the lab over ssh as a destination.)
#[test]
fn a_destination_that_runs_the_sources_vms_is_warned_of() {
    let respelt = source().replace("/fixtures/", "/fixtures/./");
    assert_ne!(respelt, source());
    let warning = format!(
        "dismount_iso_qemu: warning: the destination {respelt} runs a VM that runs on {} (UUID \
         5ca1ab1e-0000-4000-8000-0000000f0001): it is likely the same host under another URI, \
         where every VM is ok",
        source()
    );
    let output = run(tool().args(["-c", &source(), "migrate-check", "same", "--to", &respelt]));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(stderr(&output).trim_end(), warning);
    assert!(stdout(&output).contains("same -> "), "{}", stdout(&output));
    let hosts = std::env::temp_dir().join(format!("migrate-respelt-{}", std::process::id()));
    std::fs::write(&hosts, format!("{}\n{respelt}\n", source())).unwrap();
    let output = run(tool()
        .arg("--hosts")
        .arg(&hosts)
        .args(["migrate-check", "--all"]));
    std::fs::remove_file(&hosts).unwrap();
    assert_stderr_contains(&output, &warning);
}

/// The ISO's name taken there by a disk image (qcow2) of another size:
/// blocked, and no way out replaces it (no `upload --replace`), nor does
/// `--fix copy`: the tool never deletes what it did not put there.
#[test]
fn a_disk_image_under_the_isos_name_there_is_never_replaced() {
    let rows = json(&hostile_check(&["--json", "disk-there"]));
    let drive = &rows[0]["drives"][0];
    assert_eq!(drive["reason"], "different_size", "{drive}");
    assert!(
        drive["detail"]
            .as_str()
            .unwrap()
            .contains("it is a qcow2 image there, not an ISO: nothing here replaces it"),
        "{drive}"
    );
    let fix = drive["fix"].as_array().unwrap();
    assert!(
        fix.iter()
            .all(|line| !line.as_str().unwrap().contains(" upload ")),
        "{fix:?}"
    );
    let output = hostile_check(&["disk-there", "--fix", "copy", "--yes"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stdout(&output).contains(
            "not copied: disk-there hdc -isos x/d.iso: the image of that name there is no ISO: \
             nothing replaces it\nNothing to copy."
        ),
        "{}",
        stdout(&output)
    );
}

/// `--fix copy` from two sources whose VMs hold two different ISOs under
/// one name (`isos/c.iso`: 3000 bytes on one, 3500 on the other): one is
/// planned, the other is a `not copied` line naming the first, and the run
/// fails (before: the second was dropped without a word and the run could
/// end 0 with its VM still blocked).
#[test]
fn two_different_isos_of_one_name_are_never_one_copy() {
    let dir = temp_dir("migrate-two-c");
    let other = dir.join("other-source.xml");
    let fixture = std::fs::read_to_string(root().join("fixtures/fleet-migrate.xml")).unwrap();
    let resized = fixture.replacen(
        "<name>c.iso</name>\n      <capacity unit='bytes'>3000</capacity>",
        "<name>c.iso</name>\n      <capacity unit='bytes'>3500</capacity>",
        1,
    );
    assert_ne!(resized, fixture, "the fixture's c.iso is 3000 bytes");
    std::fs::write(&other, resized).unwrap();
    let other = format!("test://{}", other.display());
    let output = run(tool()
        .args([
            "-c",
            &source(),
            "-c",
            &other,
            "migrate-check",
            "--to",
            &destination(),
        ])
        .args(["--all", "--fix", "copy", "--dry-run"]));
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let text = stdout(&output);
    let planned: Vec<&str> = text
        .lines()
        .filter(|line| line.starts_with("  copy ") && line.contains("c.iso"))
        .collect();
    assert_eq!(
        planned,
        [format!(
            "  copy isos/c.iso on {} to isos/c.iso on {} (2.9 KiB)",
            source(),
            destination()
        )],
        "{text}"
    );
    let refused: Vec<&str> = text
        .lines()
        .filter(|line| {
            line.starts_with("not copied: ")
                && line.contains("/srv/isos/c.iso: another ISO of that name is copied there (copy isos/c.iso on ")
        })
        .collect();
    assert!(!refused.is_empty(), "{text}");
}
