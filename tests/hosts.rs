//! Many hosts at once (`--connect` repeated, `--hosts FILE`), as a binary
//! on libvirt's test driver: one host per fixture fleet, and a URI nothing
//! answers for the host that is down.

mod common;

use common::*;
use serde_json::Value;

const DOWN: &str = "qemu+ssh://nobody@127.0.0.1:1/system?no_tty=1";

fn json(output: &std::process::Output) -> Vec<Value> {
    serde_json::from_str(&stdout(output)).expect("JSON")
}

#[test]
fn status_of_two_hosts_has_a_host_column_and_uri_in_every_row() {
    let small = fleet_uri("fleet-small.xml");
    let media = fleet_uri("fleet-media.xml");
    let output = run(tool().args(["-c", &small, "-c", &media, "status"]));
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.lines().nth(1).unwrap().contains("Host"), "{text}");
    assert!(text.contains("12 domain(s)"), "{text}");
    let row = text.lines().find(|l| l.contains(" two-drives ")).unwrap();
    assert!(row.contains("fleet-media.xml"), "{row}");

    let output = run(tool().args(["-c", &small, "-c", &media, "status", "--json"]));
    let rows = json(&output);
    assert_eq!(rows.len(), 12);
    assert_eq!(
        rows.iter().filter(|r| r["uri"] == small.as_str()).count(),
        7
    );
    assert_eq!(
        rows.iter().filter(|r| r["uri"] == media.as_str()).count(),
        5
    );

    // One host: no Host column, and `uri` in JSON all the same.
    let output = run(tool().args(["-c", &small, "status"]));
    assert!(!stdout(&output).lines().nth(1).unwrap().contains("Host"));
    let rows = json(&run(tool().args(["-c", &small, "status", "--json"])));
    assert!(rows.iter().all(|r| r["uri"] == small.as_str()));
}

#[test]
fn a_host_that_is_down_is_one_line_and_exit_3_the_others_print() {
    let small = fleet_uri("fleet-small.xml");
    for command in [&["status", "--json"][..], &["isos", "--json"]] {
        let output = run(tool().args(["-c", &small, "-c", DOWN]).args(command));
        assert_eq!(
            output.status.code(),
            Some(3),
            "{command:?}: {}",
            stderr(&output)
        );
        let errors = stderr(&output);
        assert_eq!(errors.lines().count(), 1, "{errors}");
        assert!(
            errors.starts_with("dismount_iso_qemu: error: qemu+ssh://127.0.0.1:1/system: "),
            "user info and query string are left out: {errors}"
        );
        assert!(!json(&output).is_empty(), "{command:?}");
    }
    // Every host down: a plain failure.
    let output = run(tool().args([
        "-c",
        DOWN,
        "-c",
        "qemu+ssh://127.0.0.1:1/x?no_tty=1",
        "status",
    ]));
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(stderr(&output).lines().count(), 2);
}

#[test]
fn hosts_file_adds_to_connect() {
    let dir = temp_dir("hosts-file");
    let file = dir.join("hosts");
    std::fs::write(
        &file,
        format!(
            "# lab\n{}  # the media fleet\n\n",
            fleet_uri("fleet-media.xml")
        ),
    )
    .unwrap();
    let output = run(tool()
        .args(["-c", &fleet_uri("fleet-small.xml"), "--hosts"])
        .arg(&file)
        .args(["status", "--json"]));
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(json(&output).len(), 12);
    let missing = run(tool().args(["--hosts", "/nonexistent/hosts", "status"]));
    assert_eq!(missing.status.code(), Some(1));
    assert_stderr_contains(&missing, "cannot read the hosts file /nonexistent/hosts");
}

#[test]
fn isos_of_two_hosts_keeps_each_hosts_paths_apart() {
    let small = fleet_uri("fleet-small.xml");
    let media = fleet_uri("fleet-media.xml");
    let output = run(tool().args(["-c", &small, "-c", &media, "isos"]));
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.lines().nth(1).unwrap().contains("Host"), "{text}");
    let rows = json(&run(
        tool().args(["-c", &small, "-c", &media, "isos", "--json"])
    ));
    assert!(
        rows.iter()
            .all(|r| r["uri"] == small.as_str() || r["uri"] == media.as_str())
    );
    // shared_with names VMs of the same host only.
    let two = rows
        .iter()
        .find(|r| r["domain"] == "two-drives" && r["target"] == "hdc")
        .unwrap();
    assert_eq!(two["shared_with"], serde_json::json!(["shares-iso"]));
}

/// `mount`/`eject DOMAIN` act on the host that has the domain; a name two
/// hosts share is refused without a terminal, naming both.
#[test]
fn a_domain_is_looked_up_on_every_host() {
    let small = fleet_uri("fleet-small.xml");
    let media = fleet_uri("fleet-media.xml");
    // Only fleet-media.xml has "two-drives": its plan is printed.
    let output = run(tool().args([
        "-c",
        &small,
        "-c",
        &media,
        "eject",
        "two-drives",
        "--dry-run",
    ]));
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).contains(&format!("virsh -c {media} change-media")),
        "{}",
        stdout(&output)
    );
    // Both hosts are the same fleet: ambiguous.
    let output = run(tool().args([
        "-c",
        &small,
        "-c",
        &format!("{small}?x=1"),
        "eject",
        "plain",
        "--dry-run",
    ]));
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("'plain' is on several hosts")
            && stderr(&output).contains("--connect"),
        "{}",
        stderr(&output)
    );
    let output = run(tool().args(["-c", &small, "-c", &media, "eject", "nowhere", "--dry-run"]));
    assert_eq!(output.status.code(), Some(1));
    assert_stderr_contains(&output, "no domain named 'nowhere' on 2 host(s)");
}

/// The menu on two hosts: one table with a Host column, the drive table
/// of both, and the eject flow asks for the host first.
#[test]
fn the_menu_on_two_hosts_asks_for_the_host() {
    let small = fleet_uri("fleet-small.xml");
    let media = fleet_uri("fleet-media.xml");
    let output = menu_session_with(&small, &["-c", &media], "2\n3\n2\nq\n5\n");
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.contains("12 domain(s)"), "{text}");
    assert!(text.contains("drive(s)"), "{text}");
    let asked = text
        .find("Host number (q to go back): ")
        .expect("asks for the host");
    let listed = &text[..asked];
    assert!(
        listed.contains(&format!("  1) {small}")) && listed.contains(&format!("  2) {media}")),
        "{text}"
    );
    // Host 2 picked: its drives holding media are offered.
    assert!(text[asked..].contains("two-drives"), "{text}");
}
