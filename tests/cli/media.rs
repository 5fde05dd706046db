//! `isos`, `mount` and `eject` as a binary against the real virsh on
//! libvirt's test driver: the scan, and every refusal (the test driver has
//! no change-media, so nothing there could change anything anyway; the
//! recorded calls show that nothing even tried).

use std::collections::BTreeMap;

use crate::common::*;
use serde_json::Value;

fn media_fleet() -> String {
    fleet_uri("fleet-media.xml")
}

/// Runs the binary through counting-virsh; returns the output and every
/// virsh argv it ran.
fn counted(args: &[&str]) -> (std::process::Output, Vec<Vec<String>>) {
    let dir = temp_dir("media-count");
    let log = dir.join("calls");
    let output = run(tool()
        .arg("--virsh")
        .arg(support("counting-virsh"))
        .args(args)
        .env("COUNTING_VIRSH_LOG", &log));
    (output, recorded_calls(&log))
}

/// A refusal: exit 1, one clear line, and no virsh call that changes
/// anything.
fn assert_refused(args: &[&str], needles: &[&str]) {
    let uri = media_fleet();
    let (output, calls) = counted(&[&["-c", uri.as_str()], args].concat());
    assert_one_line_refusal(args, &output, needles);
    for call in &calls {
        let script = call.join(" ");
        assert!(
            !script.contains("change-media") && !script.contains("attach-disk"),
            "{args:?} changed something: {script}"
        );
    }
}

fn isos_json(uri: &str, extra: &[&str]) -> Vec<Value> {
    let output = run(tool().args(["-c", uri, "isos", "--json"]).args(extra));
    assert!(output.status.success(), "{}", stderr(&output));
    serde_json::from_str(&stdout(&output)).expect("a JSON array")
}

#[test]
fn isos_lists_every_drive_with_its_media() {
    let output = run(tool().args(["-c", &media_fleet(), "isos"]));
    assert!(output.status.success(), "{}", stderr(&output));
    let table = stdout(&output);
    for needle in [
        "VM",
        "Drive",
        "Bus",
        "Media",
        "Live≠Config",
        "Missing",
        "two-drives",
        "pool volume",
    ] {
        assert!(table.contains(needle), "{needle} in\n{table}");
    }
    assert!(table.contains("6 drive(s)"), "{table}");
    assert!(
        table.contains("isos/Débian netinst.iso"),
        "volume as pool/volume\n{table}"
    );
    assert!(table.contains("ISOs in several VMs:"), "{table}");
    assert!(
        table.contains("/srv/iso/missing-install.iso: shares-iso, two-drives"),
        "{table}"
    );
    assert!(
        !table.contains("no-cdrom"),
        "a VM without drives has no row\n{table}"
    );
}

#[test]
fn isos_json_has_one_object_per_drive() {
    let rows = isos_json(&media_fleet(), &[]);
    let by_drive: BTreeMap<(String, String), &Value> = rows
        .iter()
        .map(|r| {
            let key = (
                r["domain"].as_str().unwrap().to_owned(),
                r["target"].as_str().unwrap().to_owned(),
            );
            (key, r)
        })
        .collect();
    assert_eq!(by_drive.len(), 6);
    let hdc = by_drive[&("two-drives".to_owned(), "hdc".to_owned())];
    assert_eq!(hdc["state"], "running");
    assert_eq!(hdc["bus"], "ide");
    assert_eq!(hdc["source"], "/srv/iso/missing-install.iso");
    assert_eq!(hdc["missing"], true);
    assert_eq!(hdc["shared_with"], serde_json::json!(["shares-iso"]));
    let sda = by_drive[&("two-drives".to_owned(), "sda".to_owned())];
    assert_eq!(sda["source"], Value::Null, "empty drive");
    assert_eq!(sda["missing"], Value::Null);
    let fda = by_drive[&("two-drives".to_owned(), "fda".to_owned())];
    assert_eq!(fda["device"], "floppy");
    assert_eq!(fda["missing"], false, "/etc/os-release exists");
    assert_eq!(
        by_drive[&("tray-open".to_owned(), "hdc".to_owned())]["tray_open"],
        true
    );
    assert_eq!(
        by_drive[&("pool volume".to_owned(), "hdc".to_owned())]["state"],
        "shut off"
    );
}

/// `isos --json` on a fleet written to a file of its own, read through a
/// fake virsh that runs the listing there and every later command on
/// `later` (the same fleet when `None`).
fn isos_json_of(fleet: &str, later: Option<&str>) -> Vec<Value> {
    let dir = temp_dir("media-fleet");
    let write = |name: &str, xml: &str| {
        let path = dir.join(name);
        std::fs::write(&path, xml).unwrap();
        format!("test://{}", path.display())
    };
    let uri = write("fleet.xml", fleet);
    let mut command = tool();
    command
        .args(["-c", &uri, "isos", "--json", "--virsh"])
        .arg(support("hung-agent-virsh"));
    if let Some(later) = later {
        command.env("LATER_URI", write("later.xml", later));
    }
    let output = run(&mut command);
    assert!(output.status.success(), "{}", stderr(&output));
    serde_json::from_str(&stdout(&output)).expect("a JSON array")
}

fn media_fleet_xml() -> String {
    std::fs::read_to_string(root().join("fixtures/fleet-media.xml")).unwrap()
}

/// The domain XMLs come back with no marker between them: a domain that
/// went away between the listing and its `dumpxml` (its read fails, and
/// prints nothing) takes no other domain's XML, and shifts none.
#[test]
fn isos_of_a_domain_that_vanishes_mid_read_keeps_every_other_drive() {
    let fleet = media_fleet_xml();
    let name = fleet.find("<name>pool volume</name>").unwrap();
    let open = fleet[..name].rfind("<domain").unwrap();
    let close = open + fleet[open..].find("</domain>").unwrap() + "</domain>".len();
    let later = format!("{}{}", &fleet[..open], &fleet[close..]);
    let mut expected = isos_json_of(&fleet, None);
    expected.retain(|row| row["domain"] != "pool volume");
    assert_eq!(expected.len(), 5);
    assert_eq!(isos_json_of(&fleet, Some(&later)), expected);
}

/// Metadata is the definer's XML, kept as written: a CDATA section or a
/// comment holding `</domain>` (on a line of its own, then a blank one,
/// as virsh ends each `dumpxml`) ends no domain's XML early.
#[test]
fn isos_reads_metadata_that_imitates_the_end_of_a_dumpxml() {
    let fleet = media_fleet_xml();
    let forged = "<metadata><x:m xmlns:x='urn:x'><![CDATA[\n</domain>\n\n<domain>]]>\
                  <!--\n</domain>\n\n--></x:m></metadata>";
    let with_metadata = fleet.replace("</uuid>", &format!("</uuid>{forged}"));
    assert_ne!(
        with_metadata, fleet,
        "every domain has a UUID to put it after"
    );
    assert_eq!(
        isos_json_of(&with_metadata, None),
        isos_json_of(&fleet, None)
    );
}

#[test]
fn isos_mounted_and_who_uses_an_iso() {
    let mounted = isos_json(&media_fleet(), &["--mounted"]);
    assert_eq!(mounted.len(), 5);
    assert!(mounted.iter().all(|r| !r["source"].is_null()));
    let users = isos_json(&media_fleet(), &["--iso", "/srv/iso/missing-install.iso"]);
    let names: Vec<&str> = users
        .iter()
        .map(|r| r["domain"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["shares-iso", "two-drives"]);
    let awkward = isos_json(
        &fleet_uri("fleet-small.xml"),
        &["--iso", "/srv/iso/Débian netinst.iso"],
    );
    assert_eq!(awkward.len(), 1);
    assert_eq!(awkward[0]["domain"], r#"it's "quoted""#);
}

#[test]
fn isos_costs_a_fixed_number_of_virsh_processes() {
    let count = |fleet: &str| {
        let (output, calls) = counted(&["-c", &fleet_uri(fleet), "isos", "--json"]);
        assert!(output.status.success(), "{}", stderr(&output));
        calls.len()
    };
    // One virsh session: the listing, then the XML each domain has.
    assert_eq!(count("fleet-small.xml"), 1);
    assert_eq!(count("fleet-400.xml"), 1);
}

#[test]
fn mount_refuses_a_missing_iso_before_virsh() {
    let (output, calls) = counted(&[
        "-c",
        &media_fleet(),
        "mount",
        "tray-open",
        "/srv/iso/nope.iso",
        "--yes",
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert_stderr_contains(&output, "ISO '/srv/iso/nope.iso' does not exist");
    assert!(calls.is_empty(), "refused before any virsh call: {calls:?}");
}

#[test]
fn mount_with_several_drives_names_the_choices() {
    assert_refused(
        &["mount", "two-drives", "/etc/os-release", "--yes"],
        &["several CD-ROM drives (hdc, sda)", "--target"],
    );
}

#[test]
fn mount_without_a_cdrom_drive_points_at_attach() {
    assert_refused(
        &["mount", "no-cdrom", "/etc/os-release"],
        &["'no-cdrom' has no CD-ROM drive", "--attach"],
    );
    assert_refused(
        &["mount", "two-drives", "/etc/os-release", "--target", "sdz"],
        &["no CD-ROM or floppy drive 'sdz'", "hdc, sda, fda"],
    );
    assert_refused(
        &["mount", "no-such-vm", "/etc/os-release"],
        &["no domain named 'no-such-vm'"],
    );
}

#[test]
fn changes_without_a_terminal_need_yes() {
    // Replacing media and ejecting both take something away.
    assert_refused(
        &["mount", "tray-open", "/etc/hostname", "--target", "hdc"],
        &["not mounted", "stdin is not a terminal", "--yes"],
    );
    for selection in [
        &["eject", "tray-open"][..],
        &["eject", "--all"],
        &["eject", "--iso", "/etc/os-release"],
    ] {
        assert_refused(selection, &["not ejected", "--yes"]);
    }
}

#[test]
fn dry_run_prints_the_exact_commands() {
    let (output, calls) = counted(&[
        "-c",
        &media_fleet(),
        "eject",
        "--iso",
        "/srv/iso/missing-install.iso",
        "--dry-run",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(
        text.contains(" change-media --domain shares-iso --path hdc --eject --config\n"),
        "shut off: config only\n{text}"
    );
    assert!(
        text.contains(" change-media --domain two-drives --path hdc --eject --live --config\n"),
        "running: live and config\n{text}"
    );
    assert!(
        calls.iter().all(|c| !c.join(" ").contains("change-media")),
        "{calls:?}"
    );
}

#[test]
fn eject_argument_rules_are_usage_errors() {
    for args in [
        &["eject"][..],
        &["eject", "--target", "hdc", "--all"],
        &["eject", "vm", "--all"],
    ] {
        let output = run(tool().args(["-c", &media_fleet()]).args(args));
        assert_eq!(output.status.code(), Some(2), "{args:?}");
    }
}

fn menu(input: &str) -> String {
    let output = menu_session(&media_fleet(), input);
    assert!(output.status.success(), "{}", stderr(&output));
    stdout(&output)
}

#[test]
fn menu_scans_and_backs_out_at_every_prompt() {
    // Scan; Mount: back at the VM, at the drive (two-drives), at the ISO
    // (tray-open); Eject: back at the drive; Exit.
    let text = menu("2\n1\nq\n1\n5\nq\n1\n4\nq\n3\nq\n5\n");
    assert!(text.contains("6 drive(s)"), "scan\n{text}");
    assert!(text.contains("VM number (q to go back):"), "{text}");
    assert!(text.contains("Drive number (q to go back):"), "{text}");
    assert!(
        text.contains("ISO number or path (q to go back):"),
        "{text}"
    );
    assert!(
        text.contains("Drive number, or a for all (q to go back):"),
        "{text}"
    );
    assert!(
        !text.contains("Planned:"),
        "nothing got as far as a plan\n{text}"
    );
    assert_eq!(text.matches("Select option:").count(), 6, "{text}");
}

#[test]
fn menu_mount_into_a_vm_without_cdrom_says_so() {
    // VMs sorted: no-cdrom, pool volume, shares-iso, tray-open, two-drives.
    let text = menu("1\n1\n5\n");
    assert!(text.contains("'no-cdrom' has no CD-ROM drive"), "{text}");
}

/// A dry run's commands are exact and pasteable whatever the VM's name:
/// a TAB or a bidi override is written `$'…'` with escapes, never dropped.
#[test]
fn dry_run_quotes_control_characters_exactly() {
    let dir = temp_dir("dry-run-controls");
    let file = dir.join("fleet.xml");
    std::fs::write(
        &file,
        "<node><domain type='test'><name>web&#x9;prod&#x202e;</name>\
         <memory unit='KiB'>1024</memory><os><type>hvm</type></os><devices>\
         <disk type='file' device='cdrom'><source file='/etc/os-release'/>\
         <target dev='hdc' bus='ide'/><readonly/></disk></devices></domain></node>",
    )
    .unwrap();
    let uri = format!("test://{}", file.display());
    let output = run(tool().args(["-c", &uri, "eject", "web\tprod\u{202e}", "--dry-run"]));
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(
        text.contains(r"--domain $'web\tprod\u202e'"),
        "the exact name, pasteable into bash: {text}"
    );
    assert!(!text.contains("webprod"), "{text}");
}

/// A CD-ROM holding an ISO over the network, or a host's drive, is full:
/// shown, ejectable, and a mount into it is a replacement.
#[test]
fn network_and_block_media_are_shown_and_ejectable() {
    let uri = fleet_uri("fleet-network-cdrom.xml");
    let rows: Vec<serde_json::Value> =
        serde_json::from_str(&stdout(&run(tool().args(["-c", &uri, "isos", "--json"])))).unwrap();
    let sources: Vec<&str> = rows
        .iter()
        .map(|r| r["source"].as_str().expect("full"))
        .collect();
    assert_eq!(
        sources,
        ["https://mirror.example:443/debian/netinst.iso", "/dev/sr0"]
    );
    let output = run(tool().args(["-c", &uri, "eject", "netcd", "--target", "hdc", "--dry-run"]));
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("change-media --domain netcd --path hdc --eject"),
        "{}",
        stdout(&output)
    );
    let output = run(tool().args([
        "-c",
        &uri,
        "mount",
        "netcd",
        "/etc/os-release",
        "--target",
        "hdc",
        "--dry-run",
    ]));
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("--update"),
        "a replacement: {}",
        stdout(&output)
    );
}

/// A directory, a device or a FIFO is no ISO: refused before virsh runs
/// (QEMU would take them and the guest would read garbage, or block).
#[test]
fn mount_refuses_what_is_not_a_regular_file() {
    let dir = temp_dir("not-an-iso");
    let fifo = dir.join("fifo.iso");
    mkfifo(&fifo);
    for iso in [
        dir.display().to_string(),
        "/dev/zero".into(),
        fifo.display().to_string(),
    ] {
        let output = run(tool().args([
            "-c",
            &media_fleet(),
            "mount",
            "tray-open",
            &iso,
            "--dry-run",
        ]));
        assert_eq!(output.status.code(), Some(1), "{iso}");
        assert!(
            stderr(&output).contains("is not a regular file"),
            "{iso}: {}",
            stderr(&output)
        );
    }
}

/// `--iso` finds a drive by the label the table shows for a pool volume,
/// and by any path to the same file: `..` or a symlink.
#[test]
fn iso_matches_volume_labels_and_equivalent_paths() {
    let domains = |iso: &str| -> Vec<String> {
        let output = run(tool().args(["-c", &media_fleet(), "isos", "--json", "--iso", iso]));
        assert!(output.status.success(), "{}", stderr(&output));
        let rows: Vec<serde_json::Value> = serde_json::from_str(&stdout(&output)).unwrap();
        rows.iter()
            .map(|r| r["domain"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(domains("isos/Débian netinst.iso"), ["pool volume"]);
    let direct = domains("/etc/os-release");
    assert!(!direct.is_empty());
    assert_eq!(domains("/etc/../etc/./os-release"), direct);
    let dir = temp_dir("iso-symlink");
    let link = dir.join("link.iso");
    std::os::unix::fs::symlink("/etc/os-release", &link).unwrap();
    assert_eq!(domains(&link.display().to_string()), direct);
}

/// `change-media` hangs (a fake: the real one cannot on demand): the
/// change is reported as failed with the timeout, the exit status is 1,
/// and the tool ends within its timeout (a live change: plus libvirt's
/// 5 s wait for the tray, said) instead of waiting on it.
#[test]
fn a_hung_change_is_a_failed_step() {
    let output = run(tool()
        .args(["-c", &media_fleet(), "--timeout", "2s", "--virsh"])
        .arg(support("hung-agent-virsh"))
        .args(["eject", "two-drives", "--target", "hdc", "--yes"])
        .env("HUNG_COMMAND", "change-media"));
    assert_eq!(output.status.code(), Some(1));
    let text = stdout(&output);
    assert!(
        text.contains("FAILED: two-drives hdc: eject")
            && text.contains(
                "did not finish within 7s (`--timeout` and the 5s libvirt waits for the guest to open the tray)"
            ),
        "{text}"
    );
    assert!(text.contains("1 of 1 drive change(s) failed."), "{text}");
}

/// One domain's XML read hangs: `isos` still fails the host (a table, or
/// `--iso`'s holders, without that domain's drives would look whole), but
/// names that domain and the read that hung, not the whole batch: the
/// other domains' reads were made again and answered.
#[test]
fn isos_names_the_domain_whose_xml_read_hangs() {
    let output = run(tool_hung_on("dumpxml --domain plain").arg("isos"));
    assert_eq!(output.status.code(), Some(1));
    let text = stderr(&output);
    assert!(
        text.contains("cannot read domain XML on ")
            && text.contains(": 'plain': ")
            && text.contains("dumpxml --domain plain` did not finish within 2s"),
        "{text}"
    );
    assert!(
        !text.contains(" ; ") && !text.contains("other domain"),
        "{text}"
    );
}

/// `--match REGEX` selects domains by name in `isos` and `eject`; `eject
/// --match` lists its plan and, without a terminal, refuses unless --yes.
#[test]
fn match_selects_domains_by_pattern() {
    let rows: Vec<serde_json::Value> = serde_json::from_str(&stdout(&run(tool().args([
        "-c",
        &media_fleet(),
        "isos",
        "--json",
        "--match",
        "two|tray",
    ]))))
    .unwrap();
    let mut domains: Vec<&str> = rows.iter().map(|r| r["domain"].as_str().unwrap()).collect();
    domains.dedup();
    assert_eq!(domains, ["tray-open", "two-drives"]);
    let output = run(tool().args([
        "-c",
        &media_fleet(),
        "eject",
        "--match",
        "^(two|shares)",
        "--dry-run",
    ]));
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert_eq!(text.matches("change-media").count(), 3, "{text}");
    assert!(!text.contains("tray-open"), "{text}");
    let output = run(tool().args(["-c", &media_fleet(), "eject", "--match", "^two"]));
    assert_eq!(output.status.code(), Some(1));
    assert_stderr_contains(&output, "pass --yes");
}

/// `mount --match REGEX ISO` mounts into the one VM whose name matches;
/// a pattern matching several is refused (naming them) unless --all, and
/// with --all a VM that cannot take it is a line while the others go on.
#[test]
fn mount_match_takes_one_vm_or_all_with_all() {
    let fleet = media_fleet();
    let one = run(tool().args([
        "-c",
        &fleet,
        "mount",
        "--match",
        "^no-",
        "/etc/os-release",
        "--attach",
        "--dry-run",
    ]));
    assert!(one.status.success(), "{}", stderr(&one));
    assert!(
        stdout(&one).contains("attach-disk --domain no-cdrom"),
        "{}",
        stdout(&one)
    );
    let several = run(tool().args([
        "-c",
        &fleet,
        "mount",
        "--match",
        "^t",
        "/etc/os-release",
        "--dry-run",
    ]));
    assert_eq!(several.status.code(), Some(1));
    assert_stderr_contains(
        &several,
        "2 domains match '^t' (tray-open, two-drives): pass --all",
    );
    let all = run(tool().args([
        "-c",
        &fleet,
        "mount",
        "--match",
        "^t",
        "--all",
        "/etc/os-release",
        "--dry-run",
    ]));
    assert_eq!(all.status.code(), Some(1), "two-drives has two CD-ROMs");
    let text = stdout(&all);
    assert!(
        text.contains("Nothing to do: the drive already holds /etc/os-release."),
        "{text}"
    );
    assert!(
        text.contains("error: 'two-drives' has several CD-ROM drives (hdc, sda)"),
        "{text}"
    );
    let none = run(tool().args(["-c", &fleet, "mount", "--match", "^zz", "/etc/os-release"]));
    assert_eq!(none.status.code(), Some(1));
    let usage = run(tool().args(["-c", &fleet, "mount", "--match", "x", "a.iso", "b.iso"]));
    assert_eq!(usage.status.code(), Some(2));
}

/// "Who holds this ISO" finds a drive however it names the file: a pool
/// volume by its path, and a path by the volume's `pool/volume`. Each
/// spelling used to find only the drives that spelled it the same way.
#[test]
fn who_holds_an_iso_matches_its_volume_and_its_path() {
    let uri = fleet_uri("fleet-pool.xml");
    let holders = |iso: &str| -> Vec<String> {
        let mut domains: Vec<String> = isos_json(&uri, &["--iso", iso])
            .iter()
            .map(|row| row["domain"].as_str().unwrap().to_owned())
            .collect();
        domains.sort();
        domains
    };
    assert_eq!(holders("/srv/isos/netinst.iso"), ["by-path", "by-volume"]);
    assert_eq!(holders("isos/netinst.iso"), ["by-path", "by-volume"]);
    assert_eq!(holders("/srv/isos/other.iso"), ["other-iso"]);
    assert!(holders("isos/nope.iso").is_empty());
    // eject --iso plans from the same answer.
    let output = run(tool().args([
        "-c",
        &uri,
        "eject",
        "--iso",
        "isos/netinst.iso",
        "--dry-run",
    ]));
    let plan = stdout(&output);
    assert!(
        plan.contains("by-path hdc: eject") && plan.contains("by-volume hdc: eject"),
        "{plan}"
    );
}

/// A volume whose name ends in a blank (`isos/trail.iso ` next to
/// `isos/trail.iso`, fixtures/fleet-holders.xml) is that volume, its path
/// read exactly from `vol-path`: its holder is found and `eject --iso`
/// plans it (before: the path was trimmed to the neighbour's). `mount` of
/// it: `tests/cli/library.rs` `a_name_ending_in_a_blank_is_never_its_neighbour`.
#[test]
fn a_volume_named_with_a_trailing_blank_is_that_volume() {
    let uri = fleet_uri("fleet-holders.xml");
    let holders: Vec<String> = isos_json(&uri, &["--iso", "isos/trail.iso "])
        .iter()
        .map(|row| row["domain"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(holders, ["trailing"]);
    let eject = run(tool().args(["-c", &uri, "eject", "--iso", "isos/trail.iso ", "--dry-run"]));
    assert!(
        stdout(&eject).contains("trailing hdc: eject"),
        "{}{}",
        stdout(&eject),
        stderr(&eject)
    );
}

/// A relative ISO path is stored as libvirt will read it later: absolute,
/// `..` resolved through the real directory. It used to be stored with
/// `..` under the working directory.
#[test]
fn a_relative_iso_path_is_made_absolute_and_normal() {
    let dir = temp_dir("relative-iso");
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("x.iso"), b"CD001").unwrap();
    let output = run(tool()
        .current_dir(dir.join("sub"))
        .args(["-c", &media_fleet(), "mount", "two-drives", "../x.iso"])
        .args(["--target", "sda", "--dry-run"]));
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    let real = std::fs::canonicalize(dir.join("x.iso")).unwrap();
    assert!(
        text.contains(&format!("insert {} (live and config)", real.display()))
            && !text.contains(".."),
        "{text}"
    );
}

/// A path with a control character is refused before any change: libvirt
/// would store it, and every later read would misreport the drive.
#[test]
fn an_iso_path_with_a_control_character_is_refused() {
    let dir = temp_dir("control-iso");
    for name in ["tab\there.iso", "new\nline.iso"] {
        let path = dir.join(name);
        std::fs::write(&path, b"CD001").unwrap();
        let path = path.display().to_string();
        assert_refused(
            &["mount", "two-drives", &path, "--target", "sda", "--yes"],
            &["holds a control character", "refused"],
        );
        let output = run(tool()
            .args(["-c", &media_fleet(), "mount", "two-drives", &path])
            .args(["--target", "sda", "--dry-run"]));
        assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    }
}

/// Runs the tool with a stdout whose reader has already gone away
/// (`… | head -0`).
fn with_closed_stdout(command: &mut std::process::Command) -> std::process::Output {
    let child = command
        .stdout(closed_pipe())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.wait_with_output().unwrap()
}

/// A confirmed change whose stdout is closed is still carried out and
/// exits with its outcome (here FAILED: the test driver has no
/// change-media); one that needed a confirmation nobody could see is not
/// made, and exits 1. Both used to exit 0 quietly with nothing done.
#[test]
fn a_closed_stdout_never_passes_for_a_change_made() {
    let uri = media_fleet();
    let eject = ["-c", uri.as_str(), "eject", "two-drives", "--target", "hdc"];
    let output = with_closed_stdout(tool().args(eject).arg("--yes"));
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    // Failed, not "not sent": the change-media went out.
    assert_stderr_contains(
        &output,
        "stdout is closed; of 1 drive change(s) 0 made, 1 failed, 0 not sent",
    );

    let output = with_closed_stdout(tool().args(eject));
    assert_eq!(output.status.code(), Some(1));
    assert_stderr_contains(
        &output,
        "stdout is closed, so nobody saw the plan; nothing changed",
    );
}

/// Ctrl-C while a change is out: the tool still dies of the signal, and
/// first says which changes had been sent (and so may have been made).
/// The fake virsh hangs on change-media, writing the line out first.
#[test]
fn an_interrupted_change_names_what_had_been_sent() {
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    let dir = temp_dir("interrupted-change");
    let mark = dir.join("sent");
    let child = tool()
        .args(["-c", &media_fleet(), "--timeout", "60s", "--virsh"])
        .arg(support("hung-agent-virsh"))
        .args(["eject", "two-drives", "--target", "hdc", "--yes"])
        .env("HUNG_COMMAND", "change-media")
        .env("HUNG_MARK", &mark)
        .process_group(0)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    poll(|| {
        std::fs::read_to_string(&mark)
            .ok()
            .filter(|t| t.ends_with('\n'))
    });
    signal_group(&child, libc::SIGINT);
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.signal(), Some(libc::SIGINT));
    let text = stderr(&output);
    assert!(
        text.contains("interrupted; these changes had been sent")
            && text.contains("two-drives hdc: eject /srv/iso/missing-install.iso"),
        "{text}"
    );
}

/// A node with one domain of two CD-ROM drives: `sda` holds an ISO whose
/// path is `path`, `sdz` a short one.
fn two_drive_node(dir: &std::path::Path, path: &str) -> String {
    let node = dir.join("node.xml");
    let drive = |target: &str, source: &str| {
        format!(
            "<disk type='file' device='cdrom'><source file='{source}'/>\
             <target dev='{target}' bus='sata'/><readonly/></disk>"
        )
    };
    std::fs::write(
        &node,
        format!(
            "<node><domain type='test'><name>long-session</name>\
             <memory unit='KiB'>1024</memory><os><type>hvm</type></os><devices>{}{}\
             </devices></domain></node>",
            drive("sda", path),
            drive("sdz", "/srv/iso/last.iso")
        ),
    )
    .unwrap();
    format!("test://{}", node.display())
}

/// A long menu session: more than 64 KiB of changes named by earlier
/// changes, then Ctrl-C while one is out still names that one. The text
/// said on a signal used to live in a buffer whose end never moved back,
/// so after 64 KiB in all a change recorded nothing and the signal said
/// nothing. The fake virsh hangs only on the last change (drive `sdz`).
#[test]
fn an_interrupted_change_is_named_after_a_long_session() {
    use std::io::Write;
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    let dir = temp_dir("long-session");
    // Each change names a path of about 4 KiB: 17 of them make 68 KiB.
    let long = format!("/srv/{}/long.iso", vec!["d".repeat(250); 16].join("/"));
    let uri = two_drive_node(&dir, &long);
    let mark = dir.join("sent");
    let mut child = tool()
        .args(["-c", &uri, "--timeout", "60s", "--virsh"])
        .arg(support("hung-agent-virsh"))
        .env("HUNG_COMMAND", "sdz")
        .env("HUNG_MARK", &mark)
        .process_group(0)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Menu 3 (eject), drive 1 (sda), confirmed: 17 times; then drive 2.
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(format!("{}3\n2\ny\n", "3\n1\ny\n".repeat(17)).as_bytes())
        .unwrap();
    // Some 100 virsh calls before the last change goes out: as long as
    // they take on a loaded machine (the fake hangs on nothing else).
    while !std::fs::read_to_string(&mark).is_ok_and(|t| t.ends_with('\n')) {
        assert!(child.try_wait().unwrap().is_none(), "the menu ended early");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    signal_group(&child, libc::SIGINT);
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.signal(), Some(libc::SIGINT));
    let text = stderr(&output);
    assert!(
        text.contains("interrupted; these changes had been sent")
            && text.contains("long-session sdz: eject /srv/iso/last.iso"),
        "{}",
        &text[..text.len().min(2000)]
    );
    assert!(!text.contains("long.iso"), "cleared after each change");
}
