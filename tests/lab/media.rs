//! Real change-media on the lab's QEMU guests (`scripts/lab up`): mount and
//! eject round trips checked in the live and the inactive XML, and every
//! refusal checked to leave the XML byte-for-byte as it was. Each test puts
//! the lab's media back as it found it; they run one at a time.

use std::collections::BTreeMap;

use crate::Cases;
use crate::common::*;
use dismount_iso_qemu::virsh::domxml::parse_domain_xml;
use libtest_mimic::{Completion, Failed};

pub fn cases() -> Cases {
    // The tests change the same guests.
    cases!(Alone; mount_eject_round_trip_space_non_ascii, shut_off_guest_config_is_edited, eject_iso_empties_every_holder, eject_all_yes_leaves_no_media, refusals_leave_xml_unchanged, menu_mounts_and_ejects_through_stdin, menu_offers_the_pools_isos_by_number, over_ssh_isos_are_checked_among_pool_volumes, a_drive_changed_at_the_prompt_is_left_alone, a_change_virsh_confirms_late_is_reported_done, a_closed_stdout_still_makes_the_confirmed_change, the_menu_in_a_real_terminal)
}

use crate::common::lab_iso as iso;

/// The media the lab starts with, as (live, config) of each guest's
/// CD-ROM.
fn lab_baseline() -> BTreeMap<&'static str, (Option<String>, Option<String>)> {
    let a = Some(iso("install-a.iso"));
    let space = Some(iso("Débian netinst.iso"));
    let locked = Some(iso("locked.iso"));
    BTreeMap::from([
        ("lab-agent", (a.clone(), a)),
        ("lab-blocked", (None, None)),
        ("lab-locked", (locked.clone(), locked)),
        ("lab-meta", (space.clone(), space)),
        ("lab-noagent", (None, None)),
        ("lab-off", (None, Some(iso("tools-b.iso")))),
        ("lab-q35", (None, None)),
        ("lab-scsi", (None, None)),
        ("lab-uefi", (None, None)),
    ])
}

/// A lab guest's one CD-ROM: IDE's hdc on the `pc` guests, sda on the
/// SATA and SCSI shapes.
fn target(domain: &str) -> &'static str {
    match domain {
        "lab-locked" | "lab-q35" | "lab-scsi" | "lab-uefi" => "sda",
        _ => "hdc",
    }
}

fn running(domain: &str) -> bool {
    virsh(LAB_URI, &["domstate", "--domain", domain]).trim() == "running"
}

/// The CD-ROM's media in the live XML (`None` for a shut-off guest) and
/// the config.
fn cdrom(domain: &str) -> (Option<String>, Option<String>) {
    let read = |inactive: bool| {
        let mut args = vec!["dumpxml", "--domain", domain];
        if inactive {
            args.push("--inactive");
        }
        let xml = parse_domain_xml(&virsh(LAB_URI, &args)).expect("virsh prints XML");
        xml.drive(target(domain))
            .and_then(|d| d.media.as_ref())
            .map(|m| m.label())
    };
    (if running(domain) { read(false) } else { None }, read(true))
}

/// Checks a guest's CD-ROM, as (live, config), against what a step left.
fn check_cdrom(domain: &str, live: Option<&str>, config: Option<&str>) -> Result<(), Failed> {
    let wanted = (live.map(str::to_owned), config.map(str::to_owned));
    let got = cdrom(domain);
    check(got == wanted, || {
        format!(
            "{domain} {} (live, config): {got:?}, wanted {wanted:?}",
            target(domain)
        )
    })
}

/// Both XML documents of every lab guest, byte for byte.
fn snapshot() -> Vec<String> {
    LAB_GUESTS
        .iter()
        .flat_map(|g| {
            [
                virsh(LAB_URI, &["dumpxml", "--domain", g]),
                virsh(LAB_URI, &["dumpxml", "--inactive", "--domain", g]),
            ]
        })
        .collect()
}

/// Puts every guest's CD-ROM back to the baseline with virsh itself, whatever
/// a test did or failed to do.
struct Restore;

impl Drop for Restore {
    fn drop(&mut self) {
        for (domain, wanted) in lab_baseline() {
            let now = cdrom(domain);
            let running = running(domain);
            for (flag, want, have) in [
                ("--live", &wanted.0, &now.0),
                ("--config", &wanted.1, &now.1),
            ] {
                if want == have || (flag == "--live" && !running) {
                    continue;
                }
                let mut args = vec![
                    "change-media",
                    "--domain",
                    domain,
                    "--path",
                    target(domain),
                    flag,
                ];
                match want {
                    Some(path) => args.extend(["--source", path, "--update"]),
                    None => args.push("--eject"),
                }
                // No panic here: this may run while a failed test unwinds.
                let restored =
                    try_virsh(LAB_URI, &args).is_ok_and(|output| output.status.success());
                if !restored {
                    eprintln!("could not restore the lab: virsh {args:?}");
                }
            }
        }
    }
}

fn mount_eject_round_trip_space_non_ascii() -> Result<(), Failed> {
    let _restore = Restore;
    let space = iso("Débian netinst.iso");
    ok(&tool_lab(&["mount", "lab-noagent", &space]))?;
    check_cdrom("lab-noagent", Some(&space), Some(&space))?;
    let text = ok(&tool_lab(&["eject", "lab-noagent", "--yes"]))?;
    check(text.contains("ok: lab-noagent hdc: eject"), || text.clone())?;
    check_cdrom("lab-noagent", None, None)?;
    // Replacing (lab-agent holds install-a) with --yes, then back.
    ok(&tool_lab(&["mount", "lab-agent", &space, "--yes"]))?;
    check_cdrom("lab-agent", Some(&space), Some(&space))
}

fn shut_off_guest_config_is_edited() -> Result<(), Failed> {
    let _restore = Restore;
    let text = ok(&tool_lab(&["eject", "lab-off", "--yes"]))?;
    check(text.contains("(config only)"), || text.clone())?;
    check_cdrom("lab-off", None, None)?;
    ok(&tool_lab(&["mount", "lab-off", &iso("install-a.iso")]))?;
    check(cdrom("lab-off").1 == Some(iso("install-a.iso")), || {
        format!("{:?}", cdrom("lab-off"))
    })
}

fn eject_iso_empties_every_holder() -> Result<(), Failed> {
    let _restore = Restore;
    // tools-b.iso: only lab-off's config holds it in the lab, and other
    // tests on this host tend to use install-a.iso.
    let b = iso("tools-b.iso");
    ok(&tool_lab(&["mount", "lab-blocked", &b]))?;
    let users: Vec<serde_json::Value> =
        serde_json::from_str(&ok(&tool_lab(&["isos", "--json", "--iso", &b]))?)?;
    let holders: Vec<&str> = users.iter().filter_map(|r| r["domain"].as_str()).collect();
    // `eject --iso` acts on every domain holding it: never on an admin's.
    check(holders == ["lab-blocked", "lab-off"], || {
        format!("refusing to run `eject --iso`: {b} is held by {holders:?}")
    })?;
    let text = ok(&tool_lab(&["eject", "--iso", &b, "--yes"]))?;
    check(text.matches("ok: ").count() == 2, || text.clone())?;
    for guest in ["lab-blocked", "lab-off"] {
        check_cdrom(guest, None, None)?;
    }
    let agent = cdrom("lab-agent");
    check(agent.0.is_some() && agent.1.is_some(), || {
        format!("another ISO stays: {agent:?}")
    })
}

/// Tests that act on every domain of the connection, or number them, run
/// only where the lab's guests are all there is: never on an admin's own
/// VMs. Elsewhere they are skipped, saying why (`Some`: the harness prints
/// it on a line of its own); where the lab is required (CI), that is a
/// failure.
fn whole_connection(what: &str) -> Result<Option<Completion>, Failed> {
    let names = virsh(LAB_URI, &["list", "--all", "--name"]);
    let mut names: Vec<&str> = names.lines().filter(|n| !n.is_empty()).collect();
    names.sort_unstable();
    if names == LAB_GUESTS {
        return Ok(None);
    }
    let reason =
        format!("{what} acts on every domain, and {LAB_URI} holds more than the lab: {names:?}");
    if lab_required() {
        Err(reason.into())
    } else {
        Ok(Some(Completion::ignored_with(reason)))
    }
}

/// Every drive is emptied but lab-locked's, whose guest locked the tray:
/// that one is refused, naming `--force`, and the others go on.
fn eject_all_yes_leaves_no_media() -> Result<Completion, Failed> {
    if let Some(skip) = whole_connection("`eject --all`")? {
        return Ok(skip);
    }
    let _restore = Restore;
    let output = tool_lab(&["eject", "--all", "--yes"]);
    let text = stdout(&output);
    check(output.status.code() == Some(1), || text.clone())?;
    let failed: Vec<&str> = text.lines().filter(|l| l.starts_with("FAILED")).collect();
    check(
        failed.len() == 1
            && failed[0].starts_with("FAILED: lab-locked sda: ")
            && failed[0].contains("--force ejects anyway"),
        || text.clone(),
    )?;
    for guest in LAB_GUESTS.iter().filter(|g| **g != "lab-locked") {
        check_cdrom(guest, None, None)?;
    }
    let locked = iso("locked.iso");
    check_cdrom("lab-locked", Some(&locked), Some(&locked))?;
    Ok(Completion::Completed)
}

fn refusals_leave_xml_unchanged() -> Result<(), Failed> {
    let _restore = Restore;
    let before = snapshot();
    let (missing, a, b) = (iso("no such.iso"), iso("install-a.iso"), iso("tools-b.iso"));
    let cases: [&[&str]; 5] = [
        &["mount", "lab-noagent", &missing, "--yes"],
        &["mount", "lab-agent", &b],
        &["eject", "lab-agent"],
        &["eject", "--all"],
        &["eject", "--iso", &a],
    ];
    for args in cases {
        let output = tool_lab(args);
        check(output.status.code() == Some(1), || {
            format!("{args:?}: {}", stdout(&output))
        })?;
        check(snapshot() == before, || format!("{args:?} changed the XML"))?;
    }
    let dry = ok(&tool_lab(&["eject", "--all", "--dry-run"]))?;
    check(
        dry.contains("change-media --domain lab-agent --path hdc --eject --live --config"),
        || dry.clone(),
    )?;
    check(
        dry.contains("change-media --domain lab-off --path hdc --eject --config"),
        || dry.clone(),
    )?;
    check(snapshot() == before, || {
        "--dry-run changed the XML".to_owned()
    })
}

fn menu_mounts_and_ejects_through_stdin() -> Result<Completion, Failed> {
    if let Some(skip) = whole_connection("the menu")? {
        return Ok(skip);
    }
    let _restore = Restore;
    let space = iso("Débian netinst.iso");
    // Mount: lab-noagent (5th), typed path, refuse once, then confirm.
    let session = |input: String| ok(&menu_session(LAB_URI, &input));
    let text = session(format!("1\n5\n{space}\nn\n5\n"))?;
    check(text.contains("Nothing changed."), || text.clone())?;
    // Declined: nothing changed before the confirmation.
    check_cdrom("lab-noagent", None, None)?;
    let text = session(format!("1\n5\n{space}\ny\n5\n"))?;
    check(text.contains("ok: lab-noagent hdc: insert"), || {
        text.clone()
    })?;
    check_cdrom("lab-noagent", Some(&space), Some(&space))?;
    // Eject lists drives holding media: lab-agent, lab-locked, lab-meta,
    // lab-noagent, lab-off.
    let text = session("3\n4\ny\n5\n".to_owned())?;
    check(text.contains("ok: lab-noagent hdc: eject"), || text.clone())?;
    check_cdrom("lab-noagent", None, None)?;
    Ok(Completion::Completed)
}

/// The lab's ISOs are volumes of its `lab-isos` pool: the menu numbers
/// them, and a number mounts that volume's path.
fn menu_offers_the_pools_isos_by_number() -> Result<Completion, Failed> {
    if let Some(skip) = whole_connection("the menu")? {
        return Ok(skip);
    }
    let _restore = Restore;
    let space = iso("Débian netinst.iso");
    // Look at the offer, then back out: nothing may change.
    let offer = ok(&menu_session(LAB_URI, "1\n5\nq\n5\n"))?;
    // Backed out with q: nothing changed.
    check_cdrom("lab-noagent", None, None)?;
    let number = offer
        .lines()
        .find_map(|line| {
            // `  N) PATH`, possibly after a prompt (stdin is not echoed).
            let before = line.strip_suffix(&format!(") {space}"))?;
            before.split_whitespace().last().map(str::to_owned)
        })
        .ok_or_else(|| format!("{space} not offered:\n{offer}"))?;
    let text = ok(&menu_session(LAB_URI, &format!("1\n5\n{number}\ny\n5\n")))?;
    check(text.contains("ok: lab-noagent hdc: insert"), || {
        text.clone()
    })?;
    check_cdrom("lab-noagent", Some(&space), Some(&space))?;
    Ok(Completion::Completed)
}

/// Over qemu+ssh the tool cannot look at the host's files: an ISO counts as
/// present when it is a storage volume. The lab's pool holds its ISOs.
fn over_ssh_isos_are_checked_among_pool_volumes() -> Result<(), Failed> {
    let uri = lab_ssh_uri();
    let rows: Vec<serde_json::Value> =
        serde_json::from_str(&ok(&run(tool().args(["-c", &uri, "isos", "--json"])))?)?;
    let agent = rows
        .iter()
        .find(|r| r["domain"] == "lab-agent")
        .ok_or("lab-agent missing over ssh")?;
    check(agent["source"] == iso("install-a.iso"), || {
        format!("{agent}")
    })?;
    check(agent["missing"] == false, || {
        format!("a pool volume: {agent}")
    })?;

    let before = snapshot();
    // A file that exists here but is no volume of the remote host's pools.
    let not_a_volume = root()
        .join("fixtures/fleet-small.xml")
        .display()
        .to_string();
    let refused = run(tool().args(["-c", &uri, "mount", "lab-noagent", &not_a_volume, "--yes"]));
    check(!refused.status.success(), || stdout(&refused))?;
    check(stderr(&refused).contains("is no storage volume"), || {
        stderr(&refused)
    })?;
    let after = snapshot();
    check(before == after, || {
        "the refusal changed the lab's XML".to_owned()
    })?;

    let _restore = Restore;
    let b = iso("tools-b.iso");
    ok(&run(tool().args([
        "-c",
        &uri,
        "mount",
        "lab-noagent",
        &b,
        "--yes",
    ])))?;
    check_cdrom("lab-noagent", Some(&b), Some(&b))
}

/// The menu in a real terminal (tmux): invalid input, the drive table, a
/// mount and an eject confirmed at the prompt, a Rescan; then Ctrl-C at a
/// prompt (the tool dies, the shell answers, no virsh is left), end of
/// input (Ctrl-D, exit 0) and Exit (5, exit 0).
fn the_menu_in_a_real_terminal() -> Result<Completion, Failed> {
    if let Some(skip) = whole_connection("the menu")? {
        return Ok(skip);
    }
    let _restore = Restore;
    let space = iso("Débian netinst.iso");
    let log = temp_dir("tmux-walk").join("calls");
    let command = format!(
        "COUNTING_VIRSH_LOG='{}' '{}' -c {LAB_URI} --virsh '{}'",
        log.display(),
        env!("CARGO_BIN_EXE_dismount_iso_qemu"),
        support("counting-virsh").display()
    );
    let terminal = Terminal::start()?;
    let prompts = |n: usize| move |screen: &str| screen.matches("Select option:").count() >= n;
    terminal.send(&[&command, "Enter"]);
    terminal.wait("the first menu", prompts(1))?;
    terminal.send(&["banana", "Enter"]);
    terminal.wait("the hint", |s| {
        s.contains("Invalid choice 'banana': enter a number from 1 to 8")
    })?;
    terminal.send(&["2", "Enter"]);
    let screen = terminal.wait("the drive table", |s| s.contains("drive(s)"))?;
    check(screen.contains("install-a.iso"), || screen.clone())?;
    // Mount into lab-noagent (5th), confirmed at the prompt.
    terminal.send(&["1", "Enter"]);
    terminal.wait("the VM prompt", |s| s.contains("VM number (q to go back):"))?;
    terminal.send(&["5", "Enter"]);
    terminal.wait("the ISO prompt", |s| {
        s.contains("ISO number or path (q to go back):")
    })?;
    terminal.send(&[&space, "Enter"]);
    terminal.wait("the confirmation", |s| s.contains("Go ahead? [y/N]:"))?;
    terminal.send(&["y", "Enter"]);
    terminal.wait("the mount", |s| s.contains("ok: lab-noagent hdc: insert"))?;
    check_cdrom("lab-noagent", Some(&space), Some(&space))?;
    // Eject it: drives holding media are lab-agent, lab-locked, lab-meta,
    // lab-noagent, lab-off.
    terminal.send(&["3", "Enter"]);
    terminal.wait("the drive prompt", |s| {
        s.contains("Drive number, or a for all")
    })?;
    terminal.send(&["4", "Enter"]);
    terminal.wait("the second confirmation", |s| {
        s.matches("Go ahead? [y/N]:").count() >= 2
    })?;
    terminal.send(&["y", "Enter"]);
    terminal.wait("the eject", |s| s.contains("ok: lab-noagent hdc: eject"))?;
    check_cdrom("lab-noagent", None, None)?;
    terminal.send(&["4", "Enter"]);
    terminal.wait("the rescan", |s| s.matches("domain(s)").count() >= 2)?;
    // Ctrl-C at the prompt: the shell is back and answers.
    let before = terminal.screen().matches("Select option:").count();
    terminal.wait("the prompt", prompts(before))?;
    terminal.send(&["C-c"]);
    terminal.send(&["echo alive-$((6*7))", "Enter"]);
    terminal.wait("a usable shell after Ctrl-C", |s| s.contains("\nalive-42"))?;
    assert_all_gone(&logged_pids(&log));
    // End of input at the prompt, then Exit: both end with status 0.
    for (how, keys) in [("Ctrl-D", &["C-d"][..]), ("Exit", &["5", "Enter"][..])] {
        let shown = terminal.screen().matches("Select option:").count();
        terminal.send(&[&command, "Enter"]);
        terminal.wait("the menu", prompts(shown + 1))?;
        terminal.send(keys);
        terminal.send(&[&format!("echo {how}-status-$?"), "Enter"]);
        terminal.wait(&format!("status 0 after {how}"), |s| {
            s.contains(&format!("\n{how}-status-0"))
        })?;
    }
    Ok(Completion::Completed)
}

/// The menu, driven through pipes: `before` is typed, and once the
/// confirmation question shows, `meanwhile` runs (another admin at work),
/// then `after` is typed. Returns everything the menu printed.
fn menu_interrupted_at_the_prompt(
    before: &str,
    meanwhile: impl FnOnce(),
    after: &str,
) -> Result<String, Failed> {
    use std::io::{Read, Write};
    use std::sync::{Arc, Mutex};
    let mut child = tool()
        .args(["-c", LAB_URI])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let printed = Arc::new(Mutex::new(Vec::new()));
    let mut stdout = child.stdout.take().expect("piped");
    let reader = {
        let printed = Arc::clone(&printed);
        std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n @ 1..) = stdout.read(&mut chunk) {
                printed.lock().unwrap().extend_from_slice(&chunk[..n]);
            }
        })
    };
    let mut stdin = child.stdin.take().expect("piped");
    stdin.write_all(before.as_bytes())?;
    poll(|| {
        String::from_utf8_lossy(&printed.lock().unwrap())
            .contains("Go ahead? [y/N]: ")
            .then_some(())
    });
    meanwhile();
    stdin.write_all(after.as_bytes())?;
    drop(stdin);
    let status = child.wait()?;
    reader.join().expect("the reader ends with the pipe");
    let text = String::from_utf8_lossy(&printed.lock().unwrap()).into_owned();
    check(status.success(), || text.clone())?;
    Ok(text)
}

/// Another admin changes the drive between the plan (confirmed at the
/// prompt) and the change: the tool leaves it as it now is, and says so.
/// It used to eject whatever the drive held by then and report the
/// planned ISO as ejected; and a mount into a drive filled meanwhile
/// replaced the new ISO without asking.
fn a_drive_changed_at_the_prompt_is_left_alone() -> Result<Completion, Failed> {
    if let Some(skip) = whole_connection("the menu")? {
        return Ok(skip);
    }
    let _restore = Restore;
    let (a, b, space) = (
        iso("install-a.iso"),
        iso("tools-b.iso"),
        iso("Débian netinst.iso"),
    );
    let swap = |domain: &str, to: &str| {
        virsh(
            LAB_URI,
            &[
                "change-media",
                "--domain",
                domain,
                "--path",
                "hdc",
                "--source",
                to,
            ]
            .into_iter()
            .chain(["--update", "--live", "--config"])
            .collect::<Vec<_>>(),
        );
    };
    // Eject: drives holding media are lab-agent (1st), lab-locked,
    // lab-meta, lab-off.
    let text = menu_interrupted_at_the_prompt("3\n1\n", || swap("lab-agent", &b), "y\n5\n")?;
    check(
        text.contains("NOT DONE: lab-agent hdc: eject")
            && text.contains(&format!(
                "the live XML holds '{b}' now (the plan saw '{a}')"
            )),
        || text.clone(),
    )?;
    check(!text.contains("ok: lab-agent"), || text.clone())?;
    check_cdrom("lab-agent", Some(&b), Some(&b))?;
    // Mount into lab-noagent (5th), empty at the plan, filled meanwhile.
    let text = menu_interrupted_at_the_prompt(
        &format!("1\n5\n{space}\n"),
        || swap("lab-noagent", &a),
        "y\n5\n",
    )?;
    check(
        text.contains("NOT DONE: lab-noagent hdc: insert")
            && text.contains(&format!("holds '{a}' now (the plan saw nothing)")),
        || text.clone(),
    )?;
    check_cdrom("lab-noagent", Some(&a), Some(&a))?;
    Ok(Completion::Completed)
}

/// virsh made the change but answered after `--timeout` (a fake that runs
/// the real change-media, then never answers): the re-read XML shows the
/// ISO in, so it is reported done, with a note. It used to be FAILED
/// although the ISO was in.
fn a_change_virsh_confirms_late_is_reported_done() -> Result<(), Failed> {
    let _restore = Restore;
    let space = iso("Débian netinst.iso");
    let output = run(tool()
        .args(["-c", LAB_URI, "--timeout", "3s", "--virsh"])
        .arg(support("hung-agent-virsh"))
        .args(["mount", "lab-noagent", &space])
        .env("LATE_COMMAND", "change-media"));
    let text = ok(&output)?;
    check(
        text.contains("ok: lab-noagent hdc: insert") && text.contains("virsh answered late"),
        || text.clone(),
    )?;
    check_cdrom("lab-noagent", Some(&space), Some(&space))
}

/// `eject … --yes | head -0`: the confirmed change is made, and the exit
/// status is its outcome. It used to exit 0 with nothing done.
fn a_closed_stdout_still_makes_the_confirmed_change() -> Result<(), Failed> {
    let _restore = Restore;
    let output = tool()
        .args(["-c", LAB_URI, "eject", "lab-agent", "--yes"])
        .stdout(closed_pipe())
        .stderr(std::process::Stdio::piped())
        .output()?;
    check(output.status.success(), || stderr(&output))?;
    check(
        stderr(&output).contains("stdout is closed; of 1 drive change(s) 1 made"),
        || stderr(&output),
    )?;
    check_cdrom("lab-agent", None, None)
}
