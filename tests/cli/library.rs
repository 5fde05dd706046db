//! `library` and `delete-iso` as a binary against the real virsh on
//! libvirt's test driver (fixtures/fleet-library.xml): the listing
//! against `vol-list` as ground truth, and every refusal. The test driver
//! keeps volumes in memory per connection: a deletion is seen by the run
//! that made it (the tool's own check afterwards), not by a later one.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use crate::common::*;
use serde_json::Value;

fn library_fleet() -> String {
    fleet_uri("fleet-library.xml")
}

fn library_json(hosts: &[&str], extra: &[&str]) -> Vec<Value> {
    let mut command = tool();
    for host in hosts {
        command.args(["-c", host]);
    }
    let output = run(command.args(["library", "--json"]).args(extra));
    assert!(output.status.success(), "{}", stderr(&output));
    serde_json::from_str(&stdout(&output)).expect("a JSON array")
}

/// `pool/volume` (or the path outside pools) of each entry.
fn labels(entries: &[Value]) -> Vec<String> {
    entries
        .iter()
        .map(|entry| match (&entry["pool"], &entry["volume"]) {
            (Value::String(pool), Value::String(volume)) => format!("{pool}/{volume}"),
            _ => entry["path"].as_str().unwrap().to_owned(),
        })
        .collect()
}

#[test]
fn library_json_has_exactly_the_keys_and_the_pools_isos() {
    let uri = library_fleet();
    let entries = library_json(&[&uri], &[]);
    for entry in &entries {
        let keys: BTreeSet<&str> = entry
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            BTreeSet::from([
                "uri",
                "pool",
                "volume",
                "path",
                "size_bytes",
                "missing",
                "holders"
            ]),
            "{entry}"
        );
        assert_eq!(entry["uri"], uri.as_str());
        for holder in entry["holders"].as_array().unwrap() {
            let keys: BTreeSet<&str> = holder
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            assert_eq!(
                keys,
                BTreeSet::from(["domain", "target", "device", "live", "config"])
            );
        }
    }
    // Ground truth: every `.iso` volume `vol-list` shows in each pool,
    // and no other volume (the qcow2 disk is no ISO and nothing holds it).
    let mut truth = Vec::new();
    for pool in ["isos", "other"] {
        let listing = virsh(&uri, &["vol-list", "--pool", pool]);
        for line in listing.lines().skip(2) {
            if let Some(name) = line
                .split_whitespace()
                .next()
                .filter(|n| n.ends_with(".iso"))
            {
                truth.push(format!("{pool}/{name}"));
            }
        }
    }
    truth.sort();
    let all = labels(&entries);
    assert_eq!(all[..truth.len()], truth[..], "{all:?}");
    assert_eq!(
        all[truth.len()..],
        ["/etc/os-release", "/srv/elsewhere/gone.iso"]
    );

    let by = |label: &str| &entries[all.iter().position(|l| l == label).unwrap()];
    let held = by("isos/held.iso");
    assert_eq!(held["path"], "/srv/isos/held.iso");
    assert_eq!(held["size_bytes"], 1_048_576);
    assert_eq!(held["missing"], false);
    assert_eq!(
        held["holders"],
        serde_json::json!([{"domain": "web", "target": "hdc", "device": "cdrom", "live": true, "config": true}])
    );
    // Held by its path, in a shut-off VM's config only.
    assert_eq!(
        by("isos/by-path.iso")["holders"],
        serde_json::json!([{"domain": "db", "target": "hdc", "device": "cdrom", "live": false, "config": true}])
    );
    let outside = by("/etc/os-release");
    assert_eq!(outside["pool"], Value::Null);
    assert_eq!(outside["volume"], Value::Null);
    assert_eq!(outside["missing"], false);
    let size = std::fs::metadata("/etc/os-release").unwrap().len();
    assert_eq!(outside["size_bytes"], size);
    let gone = by("/srv/elsewhere/gone.iso");
    assert_eq!(gone["missing"], true);
    assert_eq!(gone["size_bytes"], Value::Null);
}

#[test]
fn unused_keeps_the_isos_no_drive_holds() {
    let entries = library_json(&[&library_fleet()], &["--unused"]);
    assert_eq!(labels(&entries), ["isos/unused.iso", "other/spare.iso"]);
    assert!(
        entries
            .iter()
            .all(|e| e["holders"] == serde_json::json!([]))
    );
}

#[test]
fn library_table_over_two_hosts_names_each() {
    let first = library_fleet();
    let second = format!("{first}?second");
    let output = run(tool().args(["-c", &first, "-c", &second, "library", "--unused"]));
    assert!(output.status.success(), "{}", stderr(&output));
    let table = stdout(&output);
    assert!(
        table.contains("Host") && table.contains("4 ISO(s)"),
        "{table}"
    );
    assert!(table.contains(&format!("{first}#2")), "{table}");
    let output = run(tool().args(["-c", &first, "library"]));
    let table = stdout(&output);
    for needle in [
        "(no pool)",
        "MISSING",
        "web hdc cdrom (live, config)",
        "(unused)",
        "3.0 MiB",
    ] {
        assert!(table.contains(needle), "{needle} in\n{table}");
    }
}

/// `delete-iso ARGS` on `hosts`: the output.
fn delete(hosts: &[&str], args: &[&str]) -> std::process::Output {
    let mut command = tool();
    for host in hosts {
        command.args(["-c", host]);
    }
    run(command.arg("delete-iso").args(args))
}

#[track_caller]
fn assert_refused(output: &std::process::Output, needle: &str) {
    assert_eq!(output.status.code(), Some(1), "{}", stdout(output));
    let message = stderr(output);
    assert_eq!(message.lines().count(), 1, "{message}");
    assert!(message.contains(needle), "{needle:?} in {message}");
    assert!(!stdout(output).contains("ok: "), "{}", stdout(output));
}

#[test]
fn delete_is_refused_while_held_live_or_in_the_config_naming_each_holder() {
    let uri = library_fleet();
    let live = delete(&[&uri], &["isos/held.iso", "--yes"]);
    assert_refused(&live, "'isos/held.iso' is held by 1 drive(s)");
    assert!(
        stdout(&live).contains(&format!("held by {uri}: web hdc cdrom (live, config)")),
        "{}",
        stdout(&live)
    );
    // By its path, held in a shut-off VM's config only.
    let config = delete(&[&uri], &["/srv/isos/by-path.iso", "--yes"]);
    assert_refused(&config, "is held by 1 drive(s)");
    assert!(
        stdout(&config).contains("db hdc cdrom (config)"),
        "{}",
        stdout(&config)
    );
    // Over two hosts: every host's holder is named.
    let second = format!("{uri}?second");
    let both = delete(&[&uri, &second], &["isos/held.iso", "--yes"]);
    assert_refused(&both, "is held by 2 drive(s)");
    assert!(
        stdout(&both).contains(&format!("{uri}#2: web hdc")),
        "{}",
        stdout(&both)
    );
}

#[test]
fn delete_refuses_what_it_cannot_or_must_not_delete() {
    let uri = library_fleet();
    let no_terminal = delete(&[&uri], &["isos/unused.iso"]);
    assert_refused(
        &no_terminal,
        "stdin is not a terminal, so nobody can confirm; pass --yes",
    );
    assert_refused(
        &delete(&[&uri], &["isos/disk.qcow2", "--yes"]),
        "no ISO 'isos/disk.qcow2' in the storage pools of the 1 host(s) given",
    );
    assert_refused(
        &delete(&[&uri], &["nope/x.iso", "--yes"]),
        "no ISO 'nope/x.iso'",
    );
    let dir = temp_dir("delete-file");
    let stray = dir.join("stray.iso");
    std::fs::write(&stray, b"not much").unwrap();
    let stray = stray.to_str().unwrap();
    assert_refused(
        &delete(&[&uri], &[stray, "--yes"]),
        "is a file outside every storage pool: pass --file",
    );
    let text = dir.join("notes.txt");
    std::fs::write(&text, b"keep me").unwrap();
    assert_refused(
        &delete(&[&uri], &[text.to_str().unwrap(), "--file", "--yes"]),
        "is no ISO (neither an ISO 9660 signature nor a .iso name)",
    );
    assert!(text.exists() && std::path::Path::new(stray).exists());
    let unreachable = delete(
        &[&uri, "test:///nonexistent/fleet.xml"],
        &["isos/unused.iso", "--yes"],
    );
    assert_refused(
        &unreachable,
        "cannot tell whether a drive holds 'isos/unused.iso' on every host given",
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn delete_dry_run_prints_the_commands_and_yes_deletes_on_every_host() {
    let uri = library_fleet();
    let second = format!("{uri}?second");
    let dry = delete(&[&uri, &second], &["isos/unused.iso", "--dry-run"]);
    assert!(dry.status.success(), "{}", stderr(&dry));
    let text = stdout(&dry);
    assert!(
        text.contains(&format!(
            "virsh -c {uri} vol-delete --pool isos --vol unused.iso"
        )),
        "{text}"
    );
    assert_eq!(text.matches("vol-delete").count(), 2, "{text}");
    // Each host's session sees its own deletion: the tool checks it.
    let done = delete(&[&uri, &second], &["/srv/isos/unused.iso", "--yes"]);
    assert!(done.status.success(), "{}", stderr(&done));
    let text = stdout(&done);
    assert_eq!(
        text.matches("ok: delete volume isos/unused.iso on").count(),
        2,
        "{text}"
    );
}

#[test]
fn delete_file_removes_a_stray_iso_outside_every_pool() {
    let dir = temp_dir("delete-stray");
    let stray = dir.join("stray.iso");
    std::fs::write(&stray, b"x").unwrap();
    let output = delete(
        &[&library_fleet()],
        &[stray.to_str().unwrap(), "--file", "--yes"],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("ok: delete the file"),
        "{}",
        stdout(&output)
    );
    assert!(!stray.exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_menu_shows_the_library() {
    let output = menu_session(&library_fleet(), "6\n5\n");
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.contains("6) ISO library"), "{text}");
    assert!(
        text.contains("6 ISO(s)") && text.contains("held.iso"),
        "{text}"
    );
    assert_eq!(text.matches("Select option:").count(), 2, "{text}");
}

/// `library` says above its table how much room each pool has left, as
/// `pool-info` has it (the test driver: 107363696640 of 107374182400
/// bytes), each name quoted (one ends in a blank) and escaped.
#[test]
fn library_heads_its_table_with_each_pools_room() {
    let output = run(tool().args(["-c", &library_fleet(), "library", "--color", "never"]));
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert_eq!(
        text.lines().next(),
        Some("Pools: 'isos' 100.0 GiB free of 100.0 GiB, 'other' 100.0 GiB free of 100.0 GiB"),
        "{text}"
    );
    let shell = fleet_uri("fleet-shell.xml");
    let output = run(tool().args(["-c", &shell, "library", "--color", "never"]));
    let text = stdout(&output);
    assert!(
        text.starts_with("Pools: 'my pool' 100.0 GiB free of 100.0 GiB, 'trail pool ' 100.0 GiB"),
        "{text}"
    );
    // JSON keeps its shape: rows only.
    let rows = library_json(&[&library_fleet()], &[]);
    assert!(rows.iter().all(|row| row.get("pool").is_some()));
}

fn upload(hosts: &[&str], args: &[&str]) -> std::process::Output {
    let mut command = tool();
    for host in hosts {
        command.args(["-c", host]);
    }
    run(command.arg("upload").args(args))
}

#[test]
fn upload_refuses_bad_input_before_anything_is_sent() {
    let uri = library_fleet();
    let dir = temp_dir("upload-refusals");
    let iso = iso_file(&dir, "good.iso", 64 * 1024).display().to_string();
    let plain = dir.join("plain.img");
    std::fs::write(&plain, vec![0u8; 64 * 1024]).unwrap();
    let fifo = dir.join("fifo.iso");
    mkfifo(&fifo);
    let missing = dir.join("missing.iso");
    let dir_path = dir.display().to_string();
    let zeros = "0".repeat(64);
    let cases: Vec<(Vec<&str>, String)> = vec![
        (vec![missing.to_str().unwrap()], "does not exist".into()),
        (
            vec![&dir_path],
            "is a directory: an ISO must be an image file".into(),
        ),
        (
            vec![fifo.to_str().unwrap()],
            "is not a regular file (a FIFO".into(),
        ),
        (
            vec![plain.to_str().unwrap()],
            "carries no ISO 9660 signature (CD001 at byte 32769)".into(),
        ),
        (
            vec![&iso, "--name", "a/b.iso"],
            "its name holds no `/`".into(),
        ),
        (
            vec![&iso, "--sha256", "12ab"],
            "--sha256 takes 64 hex digits".into(),
        ),
        (
            vec![&iso, "--sha256", &zeros],
            "does not match --sha256: its SHA-256 is".into(),
        ),
        (
            vec![&iso, "--pool", "nope"],
            format!("no storage pool 'nope' on {uri}"),
        ),
        (
            vec![&iso, "--name", "unused.iso"],
            "isos/unused.iso already exists on".into(),
        ),
        (
            vec![&iso, "--name", "held.iso", "--replace"],
            "not replaced: isos/held.iso on".into(),
        ),
    ];
    for (args, needle) in cases {
        let mut args = args;
        if !args.contains(&"--pool") {
            args.extend(["--pool", "isos"]);
        }
        let output = upload(&[&uri], &args);
        assert_refused(&output, &needle);
        assert!(!stderr(&output).contains("created"), "{}", stderr(&output));
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A file larger than the pool's free room is refused before anything is
/// created, naming both figures; with `--replace`, before the volume it
/// replaces is deleted (the room counting that volume's bytes). Before,
/// `--replace` deleted the old volume first and then refused: the ISO lost
/// for an upload that never began. (A sparse 200 GiB file; the test
/// driver's pool has 107363696640 bytes free.)
#[test]
fn upload_refuses_what_does_not_fit_before_anything_is_changed() {
    let uri = library_fleet();
    let dir = temp_dir("upload-room");
    let big = iso_file(&dir, "big.iso", 200 << 30).display().to_string();
    let lines = dir.join("lines");
    let cases: [(&[&str], String); 2] = [
        (
            &[],
            format!(
                "storage pool 'isos' on {uri} has 107363696640 bytes free; '{big}' needs 214748364800 bytes"
            ),
        ),
        (
            &["--name", "unused.iso", "--replace"],
            format!(
                "storage pool 'isos' on {uri} has 107366842368 bytes free (with the 3145728 bytes of isos/unused.iso, which it would replace); '{big}' needs 214748364800 bytes: nothing was deleted"
            ),
        ),
    ];
    for (extra, needle) in cases {
        let _ = std::fs::remove_file(&lines);
        let output = run(tool()
            .args(["-c", &uri, "--virsh"])
            .arg(support("hung-agent-virsh"))
            .env("LINES_LOG", &lines)
            .args(["upload", &big, "--pool", "isos"])
            .args(extra));
        assert_refused(&output, &needle);
        let sent = std::fs::read_to_string(&lines).unwrap_or_default();
        assert!(
            !sent.contains("vol-delete") && !sent.contains("vol-create-as"),
            "{sent}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The test driver has no `vol-upload` for a volume made in another
/// connection: a real failure after `vol-create-as`, which must delete
/// the volume it made.
#[test]
fn an_upload_that_fails_deletes_the_volume_it_created() {
    let uri = library_fleet();
    let dir = temp_dir("upload-fails");
    let iso = iso_file(&dir, "new.iso", 64 * 1024).display().to_string();
    let output = upload(&[&uri], &[&iso, "--pool", "isos"]);
    assert_refused(
        &output,
        "the volume isos/new.iso it had created was deleted",
    );
    // `mount --upload` stops there too: nothing is planned or mounted.
    let output = run(tool().args([
        "-c", &uri, "mount", "web", "--upload", &iso, "--pool", "isos", "--yes",
    ]));
    assert_refused(
        &output,
        "the volume isos/new.iso it had created was deleted",
    );
    assert!(!stdout(&output).contains("Planned"), "{}", stdout(&output));
    // Two hosts: each fails on its own, each says so.
    let second = format!("{uri}?second");
    let output = upload(&[&uri, &second], &[&iso, "--pool", "other"]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stderr(&output)
            .matches("it had created was deleted")
            .count(),
        2
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `ARGS` on `uri` through the fake virsh that passes every line to the
/// real one and logs it (`LINES_LOG`, the session's lines), run in `dir`:
/// the output and the lines virsh was given.
fn logged(uri: &str, dir: &Path, args: &[&str]) -> (std::process::Output, String) {
    let log = dir.join("lines.log");
    let _ = std::fs::remove_file(&log);
    let output = run(tool()
        .args(["-c", uri, "--virsh"])
        .arg(support("hung-agent-virsh"))
        .args(args)
        .env("LINES_LOG", &log)
        .current_dir(dir));
    (output, std::fs::read_to_string(&log).unwrap_or_default())
}

/// `upload FILE --replace` where FILE is the volume itself (run in the
/// pool's directory, or through a symbolic or hard link): refused before
/// anything is deleted. Before, the volume was deleted, made anew (empty)
/// and the now empty file uploaded into it: the ISO became zeros. A copy
/// of it is another file and is uploaded as ever.
#[test]
fn upload_refuses_the_volume_itself_before_anything_is_deleted() {
    let dir = temp_dir("upload-itself");
    let pool = dir.join("pool");
    std::fs::create_dir_all(pool.join("sub")).unwrap();
    iso_file(&pool, "self.iso", 64 * 1024);
    let node = dir.join("node.xml");
    std::fs::write(
        &node,
        format!(
            "<node>\n  <pool type='dir'>\n    <name>here</name>\n    \
             <uuid>5ca1ab1e-0000-4000-8000-00000000e0f1</uuid>\n    \
             <target><path>{pool}</path></target>\n    <volume type='file'>\n      \
             <name>self.iso</name>\n      <capacity unit='bytes'>65536</capacity>\n      \
             <target><path>{pool}/self.iso</path></target>\n    </volume>\n  </pool>\n</node>\n",
            pool = pool.display()
        ),
    )
    .unwrap();
    let uri = format!("test://{}", node.display());
    std::os::unix::fs::symlink(pool.join("self.iso"), dir.join("link.iso")).unwrap();
    std::fs::hard_link(pool.join("self.iso"), pool.join("sub/hard.iso")).unwrap();
    for (file, replace) in [
        ("./self.iso", true),
        ("./self.iso", false),
        ("../link.iso", true),
        ("sub/hard.iso", true),
    ] {
        let mut args = vec!["upload", file, "--pool", "here", "--name", "self.iso"];
        if replace {
            args.push("--replace");
        }
        let (output, lines) = logged(&uri, &pool, &args);
        assert_refused(
            &output,
            &format!(
                "'{file}' is the volume here/self.iso itself on {uri} ({}/self.iso): it cannot \
                 be uploaded into itself",
                pool.display()
            ),
        );
        assert!(
            !lines.contains("vol-delete") && !lines.contains("vol-create-as"),
            "{file}: {lines}"
        );
    }
    // A copy is another file: replaced as asked (the test driver then
    // fails the upload itself, see below).
    std::fs::copy(pool.join("self.iso"), dir.join("copy.iso")).unwrap();
    let (output, lines) = logged(
        &uri,
        &pool,
        &[
            "upload",
            "../copy.iso",
            "--pool",
            "here",
            "--name",
            "self.iso",
            "--replace",
        ],
    );
    assert!(
        !stderr(&output).contains("is the volume here/self.iso itself"),
        "{}",
        stderr(&output)
    );
    assert!(
        lines.contains("vol-delete --pool here --vol self.iso"),
        "{lines}"
    );
    assert_eq!(
        std::fs::read(pool.join("self.iso")).unwrap().len(),
        64 * 1024
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// fleet-library.xml with a domain `two` of two empty CD-ROMs besides.
fn library_with_two_drives(dir: &Path) -> String {
    let fleet = std::fs::read_to_string(root().join("fixtures/fleet-library.xml")).unwrap();
    let two = "<domain type='test'><name>two</name>\
               <uuid>5ca1ab1e-0000-4000-8000-00000000d0f2</uuid>\
               <memory unit='KiB'>1048576</memory><vcpu>1</vcpu><os><type>hvm</type></os>\
               <devices><disk type='file' device='cdrom'><target dev='hdc' bus='ide'/>\
               <readonly/></disk><disk type='file' device='cdrom'>\
               <target dev='hdd' bus='ide'/><readonly/></disk></devices></domain>\n  ";
    let at = fleet.find("<pool type='dir'>").unwrap();
    let node = dir.join("node.xml");
    std::fs::write(&node, format!("{}{two}{}", &fleet[..at], &fleet[at..])).unwrap();
    format!("test://{}", node.display())
}

/// `mount DOMAIN --upload FILE --pool POOL` decides before the first
/// byte what it can: the drive (several CD-ROMs and no `--target`), the
/// confirmation (a drive holding media, no terminal, no `--yes`), a name
/// taken in the pool (mount does not replace: the line names a command
/// that works). Before, it uploaded first and refused afterwards, leaving
/// the volume, and a retry was told to pass `--replace`, which `mount`
/// rejects.
#[test]
fn mount_upload_decides_before_the_first_byte() {
    let dir = temp_dir("mount-upload-first");
    let uri = library_with_two_drives(&dir);
    let iso = iso_file(&dir, "new.iso", 64 * 1024).display().to_string();
    let taken = iso_file(&dir, "unused.iso", 64 * 1024)
        .display()
        .to_string();
    let cases: [(&[&str], String); 3] = [
        (
            &["mount", "two", "--upload", &iso, "--pool", "isos"],
            "'two' has several CD-ROM drives (hdc, hdd): pick one with --target".to_owned(),
        ),
        (
            &["mount", "web", "--upload", &iso, "--pool", "isos"],
            "not uploaded: stdin is not a terminal, so nobody can confirm; pass --yes".to_owned(),
        ),
        (
            &[
                "mount", "web", "--upload", &taken, "--pool", "isos", "--yes",
            ],
            format!(
                "isos/unused.iso already exists on {uri}: mount it as it is \
                 (`dismount_iso_qemu -c '{uri}' mount web isos/unused.iso`), or upload the file \
                 under another name; nothing was uploaded"
            ),
        ),
    ];
    for (args, needle) in cases {
        let (output, lines) = logged(&uri, &dir, args);
        assert_refused(&output, &needle);
        assert!(!lines.contains("vol-create-as"), "{args:?}: {lines}");
    }
    // The command the line names works.
    let output = run(tool().args(["-c", &uri, "mount", "web", "isos/unused.iso", "--dry-run"]));
    assert!(output.status.success(), "{}", stderr(&output));
    // With the drive named, the dry run shows the mount it would make.
    let (output, _) = logged(
        &uri,
        &dir,
        &[
            "mount",
            "two",
            "--upload",
            &iso,
            "--pool",
            "isos",
            "--target",
            "hdd",
            "--dry-run",
        ],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("then mounted into two: two hdd: insert isos/new.iso"),
        "{}",
        stdout(&output)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn mount_takes_a_pool_volume_by_name() {
    let uri = library_fleet();
    let output = run(tool().args(["-c", &uri, "mount", "web", "isos/unused.iso", "--dry-run"]));
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(
        text.contains("change-media --domain web --path hdc --source /srv/isos/unused.iso"),
        "{text}"
    );
    let output = run(tool().args(["-c", &uri, "mount", "web", "isos/nope.iso", "--dry-run"]));
    assert_refused(&output, "ISO 'isos/nope.iso' does not exist");
    let dir = temp_dir("mount-upload-dry");
    let iso = iso_file(&dir, "new.iso", 64 * 1024).display().to_string();
    let output = run(tool().args([
        "-c",
        &uri,
        "mount",
        "web",
        "--upload",
        &iso,
        "--pool",
        "isos",
        "--dry-run",
    ]));
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("would be uploaded to isos/new.iso"),
        "{}",
        stdout(&output)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A disk naming a FIFO (a shut-off VM's, outside every pool, no `.iso`
/// name): `library`, `delete-iso` and `upload` read the host and answer,
/// the FIFO held, never opened for its signature. Before, `library` waited
/// in `open` for a writer, for good.
#[test]
fn a_drive_naming_a_fifo_never_hangs_the_library() {
    let dir = temp_dir("fifo-disk");
    let fifo = dir.join("fifo.img");
    mkfifo(&fifo);
    let uri = holders_fleet(&dir, &fifo);
    let output = run(tool().args(["-c", &uri, "library", "--json"]));
    assert!(output.status.success(), "{}", stderr(&output));
    let output = delete(&[&uri], &[fifo.to_str().unwrap(), "--file", "--yes"]);
    assert_refused(&output, "is held by 1 drive(s)");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A file outside every pool that a drive holds, named by another path
/// to the same file (a hard link here, standing in for a bind mount of
/// its directory, which needs root: the same device and inode):
/// `delete-iso --file` names the holder and deletes nothing. Before, only
/// the drive's path and symbolic links were matched: through a bind
/// mount, the file the VM boots was deleted.
#[test]
fn a_held_file_under_another_path_is_never_deleted() {
    let dir = temp_dir("held-elsewhere");
    let outside = iso_file(&dir, "outside.iso", 64 * 1024);
    let uri = holders_fleet(&dir, &outside);
    let other = dir.join("other.iso");
    std::fs::hard_link(&outside, &other).unwrap();
    let output = delete(&[&uri], &[other.to_str().unwrap(), "--file", "--yes"]);
    assert_refused(&output, "is held by 1 drive(s)");
    assert!(
        stdout(&output).contains("outside vda disk (config)"),
        "{}",
        stdout(&output)
    );
    assert!(other.exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A volume whose name ends in a blank (`trail.iso `), named by
/// `pool/volume`, is itself and never its neighbour `trail.iso`: `mount`
/// finds its drive already holding it, and `delete-iso` of it (here held
/// by nobody, and no ISO by name) never plans the neighbour. Before, the
/// path that `vol-path` printed lost its blank: `mount` replaced the ISO
/// with the neighbour, and `delete-iso` planned to delete the neighbour.
#[test]
fn a_name_ending_in_a_blank_is_never_its_neighbour() {
    let dir = temp_dir("trailing-blank");
    let outside = iso_file(&dir, "outside.iso", 64 * 1024);
    let uri = holders_fleet(&dir, &outside);
    let output = run(tool().args([
        "-c",
        &uri,
        "mount",
        "trailing",
        "isos/trail.iso ",
        "--dry-run",
    ]));
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        !stdout(&output).contains("change-media"),
        "{}",
        stdout(&output)
    );
    let node = dir.join("fleet-holders.xml");
    let text = std::fs::read_to_string(&node).unwrap();
    std::fs::write(
        &node,
        text.replace("/srv/isos/trail.iso '", "/srv/isos/unused.iso'"),
    )
    .unwrap();
    let output = delete(&[&uri], &["isos/trail.iso ", "--dry-run"]);
    assert!(
        !stdout(&output).contains("--vol trail.iso\n"),
        "the neighbour is planned: {}",
        stdout(&output)
    );
    assert_refused(&output, "no ISO 'isos/trail.iso ' in the storage pools");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `upload` of a 4 MiB ISO `name` (made in `dir`) to the library fleet's
/// `isos` pool through the fake virsh whose `vol-upload` hangs, writing
/// the line it hangs on to `mark` (as [`upload_command`] starts it).
fn upload_that_hangs(dir: &Path, name: &str, mark: &Path) -> Command {
    let iso = iso_file(dir, name, 4 * 1024 * 1024);
    let mut command = upload_command(&library_fleet(), Some("hung-agent-virsh"), &iso, "isos");
    command
        .env("HUNG_COMMAND", "vol-upload")
        .env("HUNG_MARK", mark);
    command
}

/// Ctrl-C during an upload: the tool does not die at once but cleans up
/// (deletes the volume it created, on a connection of its own) and exits
/// 130. The fake virsh hangs on `vol-upload`, writing its words out first.
#[test]
fn an_interrupted_upload_cleans_up_and_exits_130() {
    let dir = temp_dir("interrupted-upload");
    let mark = dir.join("sent");
    let child = upload_that_hangs(&dir, "slow.iso", &mark).spawn().unwrap();
    let sent = poll(|| {
        std::fs::read_to_string(&mark)
            .ok()
            .filter(|t| t.ends_with('\n'))
    });
    // On the host's one session, from a FIFO of the tool's.
    assert!(
        sent.contains("vol-upload --pool isos --vol slow.iso /")
            && sent.trim_end().ends_with("/upload"),
        "{sent}"
    );
    signal_group(&child, libc::SIGINT);
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(130), "{}", stderr(&output));
    let text = stderr(&output);
    // The test driver forgets a volume with its connection: the clean-up's
    // own connection finds none left (the lab test sees it deleted).
    assert!(
        text.contains("interrupted; no volume isos/slow.iso was left"),
        "{text}"
    );
    assert!(!stdout(&output).contains("ok:"), "{}", stdout(&output));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Ctrl-C (and SIGTERM) while `delete-iso`'s `vol-delete` is out (the
/// fake virsh holds it): the tool says which deletion had been sent and
/// may have been made. Before, it exited 130 saying nothing.
#[test]
fn an_interrupted_delete_says_what_it_had_sent() {
    use std::os::unix::process::CommandExt;
    for signal in [libc::SIGINT, libc::SIGTERM] {
        let dir = temp_dir("interrupted-delete");
        let mark = dir.join("sent");
        let child = tool()
            .args(["-c", &library_fleet(), "--timeout", "60s", "--virsh"])
            .arg(support("hung-agent-virsh"))
            .env("HUNG_COMMAND", "vol-delete")
            .env("HUNG_MARK", &mark)
            .args(["delete-iso", "isos/unused.iso", "--yes"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap();
        poll(|| {
            std::fs::read_to_string(&mark)
                .ok()
                .filter(|t| t.ends_with('\n'))
        });
        signal_group(&child, signal);
        let output = child.wait_with_output().unwrap();
        // Dead of the signal, as a shell sees it (130, 143).
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(output.status.signal(), Some(signal), "{}", stderr(&output));
        let text = stderr(&output);
        assert!(
            text.contains(
                "interrupted; this deletion had been sent to virsh and may have been made \
                 (`library` shows what is left):\n  delete volume isos/unused.iso on"
            ),
            "{text}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// A host that cannot be read is one line; the others' ISOs print.
#[test]
fn a_host_that_fails_is_one_line_and_exit_3() {
    let uri = library_fleet();
    let output = run(tool().args([
        "-c",
        &uri,
        "-c",
        "test:///nonexistent/fleet.xml",
        "library",
        "--json",
    ]));
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    let entries: Vec<Value> = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(entries.len(), 6);
    let message = stderr(&output);
    assert_eq!(message.lines().count(), 1, "{message}");
    assert!(
        message.contains("test:///nonexistent/fleet.xml: "),
        "{message}"
    );
}

/// A second Ctrl-C while the upload cleans up (a fake `vol-delete` that
/// hangs) ends the tool at once by the signal, saying what may be left.
#[test]
fn a_second_interrupt_during_the_clean_up_ends_the_tool_and_says_so() {
    use std::os::unix::process::ExitStatusExt;
    let dir = temp_dir("interrupted-twice");
    let mark = dir.join("sent");
    let child = upload_that_hangs(&dir, "twice.iso", &mark)
        .env("HUNG_ALSO", "vol-delete")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let sent = |word: &'static str| {
        poll(|| {
            std::fs::read_to_string(&mark)
                .ok()
                .filter(|text| text.lines().any(|line| line.contains(word)))
        })
    };
    sent("vol-upload");
    signal_group(&child, libc::SIGINT);
    sent("vol-delete");
    signal_group(&child, libc::SIGINT);
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.signal(), Some(libc::SIGINT));
    let text = stderr(&output);
    assert!(
        text.contains("interrupted during the clean-up: a volume isos/twice.iso may be left"),
        "{text}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// fixtures/fleet-holders.xml, written into `dir` with its file outside
/// every pool (`/srv/outside/disk.iso`, booted as a disk) replaced by
/// `outside`; its URI.
fn holders_fleet(dir: &Path, outside: &Path) -> String {
    let node = std::fs::read_to_string(root().join("fixtures/fleet-holders.xml")).unwrap();
    let node = node.replace("/srv/outside/disk.iso", outside.to_str().unwrap());
    let file = dir.join("fleet-holders.xml");
    std::fs::write(&file, node).unwrap();
    format!("test://{}", file.display())
}

/// A holder is any drive of any device: an ISO booted as a disk (live
/// and config), one in a shut-off VM's floppy (config only), a file
/// outside every pool booted as a disk; each shown with its device, none
/// unused, none deleted or replaced. A volume whose name ends in a space
/// is itself, held, next to its neighbour without the space; one whose
/// name holds a newline is listed as itself, and so is a pool whose name
/// ends in a space.
#[test]
fn every_drive_holds_its_image_whatever_its_device() {
    let dir = temp_dir("holders");
    let outside = iso_file(&dir, "outside.iso", 64 * 1024);
    let uri = holders_fleet(&dir, &outside);
    let entries = library_json(&[&uri], &[]);
    let held = |label: &str| {
        let entry = entries
            .iter()
            .zip(labels(&entries))
            .find(|(_, l)| l == label)
            .unwrap_or_else(|| panic!("{label} in {entries:?}"))
            .0;
        entry["holders"].clone()
    };
    let holder = |domain: &str, target: &str, device: &str, live: bool| {
        serde_json::json!([{"domain": domain, "target": target, "device": device,
            "live": live, "config": true}])
    };
    assert_eq!(
        held("isos/booted.iso"),
        holder("booted", "vda", "disk", true)
    );
    assert_eq!(
        held("isos/floppy.iso"),
        holder("floppy", "fda", "floppy", false)
    );
    assert_eq!(
        held("isos/trail.iso "),
        holder("trailing", "hdc", "cdrom", true)
    );
    assert_eq!(held("isos/trail.iso"), serde_json::json!([]));
    // A newline in a name: virsh's table shows it as `\x0a`.
    assert_eq!(held("isos/nl\nhere.iso"), serde_json::json!([]));
    assert_eq!(
        held(outside.to_str().unwrap()),
        holder("outside", "vda", "disk", false)
    );
    // A pool whose name ends in a blank is itself.
    assert_eq!(held("spare /s.iso"), serde_json::json!([]));
    assert_eq!(entries.len(), 8, "{entries:?}");
    let unused = library_json(&[&uri], &["--unused"]);
    assert_eq!(
        labels(&unused),
        [
            "isos/nl\nhere.iso",
            "isos/trail.iso",
            "isos/unused.iso",
            "spare /s.iso"
        ]
    );
    let table = stdout(&run(tool().args(["-c", &uri, "library"])));
    for needle in [
        "booted vda disk (live, config)",
        "floppy fda floppy (config)",
        "trailing hdc cdrom (live, config)",
    ] {
        assert!(table.contains(needle), "{needle} in\n{table}");
    }

    for (iso, holder) in [
        ("isos/booted.iso", "booted vda disk (live, config)"),
        ("/srv/isos/floppy.iso", "floppy fda floppy (config)"),
        ("isos/trail.iso ", "trailing hdc cdrom (live, config)"),
    ] {
        let output = delete(&[&uri], &[iso, "--yes"]);
        assert_refused(&output, "is held by 1 drive(s)");
        assert_eq!(
            stdout(&output),
            format!("  held by {uri}: {holder}\n"),
            "{iso}"
        );
    }
    let output = delete(&[&uri], &[outside.to_str().unwrap(), "--file", "--yes"]);
    assert_refused(&output, "is held by 1 drive(s)");
    assert!(
        stdout(&output).contains("outside vda disk (config)"),
        "{}",
        stdout(&output)
    );
    assert!(outside.exists(), "a file a drive holds was deleted");

    let iso = iso_file(&dir, "new.iso", 64 * 1024).display().to_string();
    for name in ["booted.iso", "floppy.iso", "trail.iso "] {
        let output = upload(
            &[&uri],
            &[&iso, "--pool", "isos", "--name", name, "--replace"],
        );
        assert_refused(&output, &format!("not replaced: isos/{name} on"));
        assert!(
            stderr(&output).contains(" is held by "),
            "{}",
            stderr(&output)
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `delete-iso` of a volume's path whose name starts with a blank
/// (`/srv/isos/ lead.iso`, next to `lead.iso`) plans that volume alone
/// (before: `vol-name`'s answer trimmed to `isos/lead.iso`, the
/// neighbour, which was planned for deletion too).
#[test]
fn deleting_a_volume_named_with_a_leading_blank_spares_its_neighbour() {
    let dir = temp_dir("lead-delete");
    let outside = iso_file(&dir, "outside.iso", 64 * 1024);
    let uri = holders_fleet(&dir, &outside);
    let file = uri.strip_prefix("test://").unwrap();
    let volumes: String = [" lead.iso", "lead.iso"]
        .map(|name| {
            format!(
                "<volume type='file'><name>{name}</name><capacity unit='bytes'>1048576</capacity>\
                 <target><path>/srv/isos/{name}</path></target></volume>"
            )
        })
        .concat();
    let node = std::fs::read_to_string(file).unwrap().replacen(
        "<volume type='file'>",
        &format!("{volumes}<volume type='file'>"),
        1,
    );
    std::fs::write(file, node).unwrap();
    let output = delete(&[&uri], &["/srv/isos/ lead.iso", "--dry-run"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    let planned: Vec<&str> = text
        .lines()
        .filter(|line| line.starts_with("  delete "))
        .collect();
    assert_eq!(
        planned,
        [format!("  delete volume isos/ lead.iso on {uri}")],
        "{text}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
