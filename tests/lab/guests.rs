//! What the tool reads of the lab's guests (`scripts/lab up`): `status`,
//! the menu and completion against virsh's ground truth, on real guests
//! with a real qemu-ga. Without the lab every test is reported as
//! ignored, by name; with `DISMOUNT_LAB_REQUIRED=1` (CI) a missing lab fails.

use std::collections::BTreeMap;
use std::path::Path;

use crate::Cases;
use crate::common::*;
use libtest_mimic::Failed;
use serde_json::{Value, json};

const LAB_PRETTY_NAME: &str = "Dismount Lab Linux 1.0";

pub fn cases() -> Cases {
    cases!(Together; status_rows_match_virsh_ground_truth, agent_names_the_os, guest_without_agent_channel_fails_fast, shut_off_guest_has_no_cpu_time, blocked_osinfo_falls_back_to_os_release, guest_filesystems_match_guestinfo_ground_truth, blocked_fsinfo_is_a_reason_not_a_figure, the_menu_on_a_wide_terminal_shows_the_disks, no_agent_falls_back_to_libosinfo_metadata, status_over_ssh_matches_local, rescan_gives_cpu_percent_of_running_guests, bash_completes_lab_guests_and_pool_isos)
}

/// `status --json` on the lab, as name → row, lab guests only (an admin's
/// own domains on the same host are none of our business here).
fn lab_rows(extra: &[&str]) -> Result<BTreeMap<String, Value>, Failed> {
    let output = run(tool().args(["-c", LAB_URI, "status", "--json"]).args(extra));
    check(output.status.success(), || stderr(&output))?;
    let rows: Vec<Value> = serde_json::from_str(&stdout(&output))?;
    Ok(rows
        .into_iter()
        .filter_map(|row| Some((row["name"].as_str()?.to_owned(), row)))
        .filter(|(name, _)| LAB_GUESTS.contains(&name.as_str()))
        .collect())
}

/// One domain's `domstats --raw` fields, read with virsh itself.
fn domstats(name: &str) -> BTreeMap<String, u64> {
    virsh(
        LAB_URI,
        &[
            "domstats",
            "--raw",
            "--state",
            "--cpu-total",
            "--balloon",
            "--vcpu",
            name,
        ],
    )
    .lines()
    .filter_map(|line| line.trim().split_once('='))
    .filter_map(|(k, v)| Some((k.to_owned(), v.parse().ok()?)))
    .collect()
}

const STATE_WORDS: [&str; 8] = [
    "no state",
    "running",
    "idle",
    "paused",
    "in shutdown",
    "shut off",
    "crashed",
    "pmsuspended",
];

fn status_rows_match_virsh_ground_truth() -> Result<(), Failed> {
    let before: BTreeMap<&str, _> = LAB_GUESTS.iter().map(|n| (*n, domstats(n))).collect();
    let rows = lab_rows(&[])?;
    let after: BTreeMap<&str, _> = LAB_GUESTS.iter().map(|n| (*n, domstats(n))).collect();
    check(rows.len() == LAB_GUESTS.len(), || {
        format!("lab rows: {:?}", rows.keys())
    })?;
    for name in LAB_GUESTS {
        let (row, was, now) = (&rows[name], &before[name], &after[name]);
        let state = STATE_WORDS[now["state.state"] as usize];
        check(row["state"] == state, || {
            format!("{name}: state {} vs {state}", row["state"])
        })?;
        check(row["vcpus"] == now["vcpu.current"], || {
            format!("{name}: vcpus")
        })?;
        check(row["memory_max_kib"] == now["balloon.maximum"], || {
            format!("{name}: max")
        })?;
        if state == "running" {
            // CPU time only grows: ours lies between the two readings.
            let cpu = row["cpu_time_ns"]
                .as_u64()
                .ok_or("running guest without CPU time")?;
            check((was["cpu.time"]..=now["cpu.time"]).contains(&cpu), || {
                format!(
                    "{name}: cpu {cpu} not in [{}, {}]",
                    was["cpu.time"], now["cpu.time"]
                )
            })?;
            // The balloon refreshes every 2 s; an idle guest's figure moves
            // by a few pages, so allow 4 MiB between the readings.
            let guest_used = now["balloon.current"] - now["balloon.unused"];
            let used = row["memory_used_kib"].as_u64().ok_or("no memory used")?;
            check(used.abs_diff(guest_used) <= 4096, || {
                format!("{name}: used {used} vs balloon {guest_used}")
            })?;
            check(row["memory_used_source"] == "guest", || {
                format!("{name}: source")
            })?;
        }
    }
    Ok(())
}

fn agent_names_the_os() -> Result<(), Failed> {
    let truth = virsh(LAB_URI, &["guestinfo", "--os", "--domain", "lab-agent"]);
    check(truth.contains(LAB_PRETTY_NAME), || truth.clone())?;
    let rows = lab_rows(&[])?;
    check_os(&rows["lab-agent"], json!([LAB_PRETTY_NAME, "agent", null]))
}

/// A row's OS, its source and why it is unknown, checked together.
fn check_os(row: &Value, expected: Value) -> Result<(), Failed> {
    let got = json!([row["os"], row["os_source"], row["os_error"]]);
    check(got == expected, || {
        format!(
            "{}: (os, source, error) {got}, wanted {expected}",
            row["name"]
        )
    })
}

fn guest_without_agent_channel_fails_fast() -> Result<(), Failed> {
    // A generous timeout: were the probe to wait for an agent, the error
    // would say "timed out"; it must say there is no channel instead.
    let rows = lab_rows(&["--timeout", "60s"])?;
    check_os(
        &rows["lab-noagent"],
        json!(["unknown", null, "no guest agent channel"]),
    )
}

fn shut_off_guest_has_no_cpu_time() -> Result<(), Failed> {
    let rows = lab_rows(&[])?;
    let row = &rows["lab-off"];
    check(row["state"] == "shut off", || {
        format!("state: {}", row["state"])
    })?;
    check(row["cpu_time_ns"].is_null(), || {
        format!("cpu: {}", row["cpu_time_ns"])
    })?;
    check(row["memory_max_kib"] == 131072, || {
        format!("max: {}", row["memory_max_kib"])
    })
}

/// lab-blocked's qemu-ga runs with `--block-rpcs guest-get-osinfo`: virsh
/// guestinfo fails, the os-release file read through the agent answers.
fn blocked_osinfo_falls_back_to_os_release() -> Result<(), Failed> {
    let refused = lab_virsh(&["guestinfo", "--os", "--domain", "lab-blocked"]);
    let message = String::from_utf8_lossy(&refused.stderr);
    check(
        !refused.status.success() && message.contains("has been disabled"),
        || format!("guestinfo --os on lab-blocked should be refused: {message}"),
    )?;
    let rows = lab_rows(&[])?;
    check_os(
        &rows["lab-blocked"],
        json!([LAB_PRETTY_NAME, "agent-file", null]),
    )
}

/// The lab's data filesystem (scripts/lab.d/guest-init.sh): an 8 MiB
/// ext2 with a 1 MiB file, on a loop device at /srv/lab-data.
const LAB_DATA_MOUNT: &str = "/srv/lab-data";

/// lab-agent's filesystems in `status --disks --json` are what `virsh
/// guestinfo --filesystem` says, figure for figure, and the known sizes.
fn guest_filesystems_match_guestinfo_ground_truth() -> Result<(), Failed> {
    let truth = virsh(
        LAB_URI,
        &["guestinfo", "--filesystem", "--domain", "lab-agent"],
    );
    let field = |key: &str| guestinfo_field(&truth, key);
    check(field("fs.count").as_deref() == Some("1"), || truth.clone())?;
    check(
        field("fs.0.mountpoint").as_deref() == Some(LAB_DATA_MOUNT),
        || truth.clone(),
    )?;
    let number = |key: &str| field(key).and_then(|v| v.parse::<u64>().ok());
    let (used, total) = (number("fs.0.used-bytes"), number("fs.0.total-bytes"));
    // 8 MiB less ext2's own metadata; at least the 1 MiB file used.
    check(
        matches!((used, total), (Some(u), Some(t)) if (1 << 20..t).contains(&u) && (7 << 20..=8 << 20).contains(&t)),
        || format!("guestinfo figures: {truth}"),
    )?;
    let rows = lab_rows(&["--disks"])?;
    let got = &rows["lab-agent"];
    let expected = json!([{
        "mountpoint": LAB_DATA_MOUNT,
        "type": field("fs.0.fstype"),
        "devices": [],
        "used_bytes": used,
        "total_bytes": total,
    }]);
    check(got["filesystems"] == expected, || {
        format!("filesystems {}, wanted {expected}", got["filesystems"])
    })?;
    check(got["filesystems_error"].is_null(), || got.to_string())?;
    // Without --disks the agent is not asked, and the JSON is as before.
    let rows = lab_rows(&[])?;
    check(rows["lab-agent"].get("filesystems").is_none(), || {
        rows["lab-agent"].to_string()
    })
}

/// lab-blocked's qemu-ga refuses guest-get-fsinfo (`--block-rpcs`): its
/// filesystems are null, and the reason says so; lab-noagent has no agent.
fn blocked_fsinfo_is_a_reason_not_a_figure() -> Result<(), Failed> {
    let refused = lab_virsh(&["guestinfo", "--filesystem", "--domain", "lab-blocked"]);
    let message = String::from_utf8_lossy(&refused.stderr);
    check(
        !refused.status.success() && message.contains("guest-get-fsinfo has been disabled"),
        || format!("guestinfo --filesystem on lab-blocked should be refused: {message}"),
    )?;
    let rows = lab_rows(&["--disks"])?;
    for (name, reason) in [
        ("lab-blocked", "guest-get-fsinfo has been disabled"),
        ("lab-noagent", "no guest agent channel"),
        ("lab-off", "domain is shut off"),
    ] {
        let row = &rows[name];
        check(
            row["filesystems"].is_null()
                && row["filesystems_error"]
                    .as_str()
                    .is_some_and(|error| error.contains(reason)),
            || format!("{name}: {row}"),
        )?;
    }
    let output = run(tool().args(["-c", LAB_URI, "status", "--disks", "--color", "never"]));
    let table = stdout(&output);
    let line = |name: &str| {
        table
            .lines()
            .find(|line| line.contains(&format!(" {name} ")))
            .unwrap_or_default()
            .to_owned()
    };
    check(
        table.contains("Disk (used/total)")
            && line("lab-blocked").contains("- (blocked)")
            && line("lab-agent").contains(" / 7.7 MiB"),
        || table.clone(),
    )
}

/// The menu on a terminal 220 columns wide (tmux) has the Disk column,
/// lab-agent's figures in it; the same tool into a pipe has none.
fn the_menu_on_a_wide_terminal_shows_the_disks() -> Result<(), Failed> {
    let terminal = Terminal::start()?;
    let command = format!(
        "{} -c {LAB_URI} --color never",
        env!("CARGO_BIN_EXE_dismount_iso_qemu")
    );
    terminal.send(&[&command, "Enter"]);
    let screen = terminal.wait("the menu", |screen| screen.contains("Select option:"))?;
    terminal.send(&["5", "Enter"]);
    check(screen.contains("Disk (used/total)"), || screen.clone())?;
    let line = screen
        .lines()
        .find(|line| line.contains(" lab-agent "))
        .unwrap_or_default();
    check(line.contains("1.0 MiB / 7.7 MiB"), || screen.clone())?;
    let output = run(tool()
        .args(["-c", LAB_URI])
        .stdin(std::process::Stdio::null()));
    check(!stdout(&output).contains("Disk (used/total)"), || {
        stdout(&output)
    })
}

/// lab-meta has no agent channel, but libosinfo metadata (debian.org/debian/12).
fn no_agent_falls_back_to_libosinfo_metadata() -> Result<(), Failed> {
    let xml = virsh(LAB_URI, &["dumpxml", "--domain", "lab-meta"]);
    check(xml.contains("http://debian.org/debian/12"), || {
        "lab-meta's metadata".into()
    })?;
    let rows = lab_rows(&[])?;
    check_os(&rows["lab-meta"], json!(["Debian 12", "metadata", null]))
}

/// qemu+ssh:// through the lab's own sshd: virsh gets ssh children, and
/// every row says what the local connection says.
fn status_over_ssh_matches_local() -> Result<(), Failed> {
    let stable = |uri: &str| -> Result<Vec<Value>, Failed> {
        let output = run(tool().args(["-c", uri, "status", "--json"]));
        check(output.status.success(), || stderr(&output))?;
        let rows: Vec<Value> = serde_json::from_str(&stdout(&output))?;
        Ok(rows
            .iter()
            .filter(|r| LAB_GUESTS.iter().any(|g| r["name"] == *g))
            .map(|r| {
                serde_json::json!([
                    r["name"],
                    r["uuid"],
                    r["state"],
                    r["vcpus"],
                    r["memory_max_kib"],
                    r["os"],
                    r["os_source"]
                ])
            })
            .collect())
    };
    let local = stable(LAB_URI)?;
    let remote = stable(&lab_ssh_uri())?;
    check(local.len() == LAB_GUESTS.len(), || format!("{local:?}"))?;
    check(local == remote, || {
        format!("local {local:?}\nssh {remote:?}")
    })
}

/// CPU % needs two samples: the startup table has none, the menu's first
/// Rescan has one for every running guest, whatever `--cache-ttl`.
fn rescan_gives_cpu_percent_of_running_guests() -> Result<(), Failed> {
    let output = menu_session(LAB_URI, "4\n5\n");
    check(output.status.success(), || stderr(&output))?;
    let text = stdout(&output);
    let tables: Vec<&str> = text.split("domain(s)").collect();
    check(tables.len() == 3, || {
        format!("startup table and rescan:\n{text}")
    })?;
    let cpu_percent = |table: &str, guest: &str| -> Option<f64> {
        let row = table.lines().find(|l| l.contains(&format!(" {guest} ")))?;
        let cells: Vec<&str> = row.split(['│', '┆']).map(str::trim).collect();
        cells.get(cells.len().checked_sub(2)?)?.parse().ok()
    };
    for guest in ["lab-agent", "lab-noagent", "lab-blocked", "lab-meta"] {
        check(cpu_percent(tables[0], guest).is_none(), || {
            format!("{guest}: CPU % from one sample\n{}", tables[0])
        })?;
        let percent = cpu_percent(tables[1], guest);
        check(percent.is_some_and(|p| (0.0..=100.0).contains(&p)), || {
            format!("{guest}: CPU % {percent:?} after a rescan\n{}", tables[1])
        })?;
    }
    check(cpu_percent(tables[1], "lab-off").is_none(), || {
        "a shut-off guest has no CPU %".to_owned()
    })
}

/// `COMPLETE=bash` through a real bash on the lab: a guest's name from
/// its prefix, and `lab-isos/` to the pool's ISOs as `vol-list` names
/// them (only reads).
fn bash_completes_lab_guests_and_pool_isos() -> Result<(), Failed> {
    let (reply, output) = complete_in_bash(&["-c", LAB_URI, "eject", "lab-a"], &[]);
    check(reply == ["lab-agent"], || {
        format!("eject lab-a: {reply:?} {}", stderr(&output))
    })?;
    // `vol-list`: a header, a rule, then NAME (padded) and PATH a line;
    // a name may hold blanks, at its ends too, so it is read exactly from
    // the path, which runs from its first `/` to the end of the line
    // (virsh pads no last column): in a directory pool a volume's name is
    // its file name. Each as bash inserts it: a blank escaped ("Débian
    // netinst.iso").
    let listed = virsh(LAB_URI, &["vol-list", "--pool", "lab-isos"]);
    let mut expected: Vec<String> = listed
        .lines()
        .skip(2)
        .filter_map(|line| {
            let path = Path::new(&line[line.find('/')?..]);
            Some(path.file_name()?.to_str()?.to_owned())
        })
        .filter(|name| name.to_ascii_lowercase().ends_with(".iso"))
        .map(|name| format!("lab-isos/{}", name.replace(' ', "\\ ")))
        .collect();
    expected.sort();
    check(!expected.is_empty(), || {
        format!("no ISO in lab-isos:\n{listed}")
    })?;
    let (reply, output) = complete_in_bash(&["-c", LAB_URI, "mount", "lab-off", "lab-isos/"], &[]);
    check(reply == expected, || {
        format!(
            "mount lab-off lab-isos/: {reply:?}, vol-list: {expected:?} {}",
            stderr(&output)
        )
    })
}
