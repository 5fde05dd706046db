//! Every existing command on the guest shapes real hosts run (`scripts/lab
//! up`): q35 with a SATA CD-ROM (lab-q35), a virtio-scsi CD-ROM (lab-scsi),
//! a guest whose init mounted its CD-ROM so the tray is locked
//! (lab-locked), and UEFI firmware (lab-uefi, shut off). Each test puts the
//! lab back as it found it; they run one at a time.

use std::time::{Duration, Instant};

use crate::Cases;
use crate::common::*;
use dismount_iso_qemu::virsh::domxml::parse_domain_xml;
use libtest_mimic::Failed;

pub fn cases() -> Cases {
    cases!(Alone; isos_shows_each_shapes_target_and_bus, status_lists_the_new_shapes, mount_and_eject_on_sata_and_scsi, a_locked_tray_refuses_eject_naming_force, eject_force_ejects_a_locked_tray, an_acpi_shutdown_powers_a_guest_off, serve_exports_each_shapes_media_series, attach_on_q35_goes_into_the_config_only, attach_on_a_scsi_controller_is_hot_plugged)
}

/// A drive's media in the live XML (`None` for a shut-off guest) and the
/// config.
fn media(domain: &str, target: &str) -> (Option<String>, Option<String>) {
    let read = |inactive: bool| {
        let mut args = vec!["dumpxml", "--domain", domain];
        if inactive {
            args.push("--inactive");
        }
        let xml = parse_domain_xml(&virsh(LAB_URI, &args)).expect("virsh prints XML");
        xml.drive(target)
            .and_then(|d| d.media.as_ref())
            .map(|m| m.label())
    };
    let running = virsh(LAB_URI, &["domstate", "--domain", domain]).trim() == "running";
    (if running { read(false) } else { None }, read(true))
}

/// Puts a drive back as it was, with virsh itself, whatever a test did or
/// failed to do (runs while a failed test unwinds too: no panic).
struct Restore {
    domain: &'static str,
    target: &'static str,
    was: (Option<String>, Option<String>),
}

impl Restore {
    fn new(domain: &'static str, target: &'static str) -> Self {
        Restore {
            domain,
            target,
            was: media(domain, target),
        }
    }
}

impl Drop for Restore {
    fn drop(&mut self) {
        let now = media(self.domain, self.target);
        let running = virsh(LAB_URI, &["domstate", "--domain", self.domain]).trim() == "running";
        for (flag, want, have) in [
            ("--live", &self.was.0, &now.0),
            ("--config", &self.was.1, &now.1),
        ] {
            if want == have || (flag == "--live" && !running) {
                continue;
            }
            let mut args = vec![
                "change-media",
                "--domain",
                self.domain,
                "--path",
                self.target,
                flag,
            ];
            match want {
                Some(path) => args.extend(["--source", path, "--update"]),
                None => args.extend(["--eject", "--force"]),
            }
            let restored = try_virsh(LAB_URI, &args).is_ok_and(|output| output.status.success());
            if !restored {
                eprintln!("could not restore the lab: virsh {args:?}");
            }
        }
    }
}

/// The (domain, target, bus) of each new shape's CD-ROM.
const SHAPES: [(&str, &str, &str); 4] = [
    ("lab-locked", "sda", "sata"),
    ("lab-q35", "sda", "sata"),
    ("lab-scsi", "sda", "scsi"),
    ("lab-uefi", "sda", "sata"),
];

fn isos_shows_each_shapes_target_and_bus() -> Result<(), Failed> {
    let rows: Vec<serde_json::Value> = serde_json::from_str(&ok(&tool_lab(&["isos", "--json"]))?)?;
    for (domain, target, bus) in SHAPES {
        let row = rows
            .iter()
            .find(|r| r["domain"] == domain)
            .ok_or_else(|| format!("{domain} missing from isos: {rows:?}"))?;
        check(row["target"] == target && row["bus"] == bus, || {
            format!("{domain}: {row}")
        })?;
        check(row["device"] == "cdrom", || format!("{domain}: {row}"))?;
    }
    let locked = rows.iter().find(|r| r["domain"] == "lab-locked").unwrap();
    check(locked["source"] == lab_iso("locked.iso"), || {
        locked.to_string()
    })?;
    // Over ssh, the same drives.
    let shapes = |rows: &[serde_json::Value]| -> Vec<String> {
        rows.iter()
            .filter(|r| SHAPES.iter().any(|(d, _, _)| r["domain"] == *d))
            .map(|r| {
                format!(
                    "{} {} {} {}",
                    r["domain"], r["target"], r["bus"], r["source"]
                )
            })
            .collect()
    };
    let remote: Vec<serde_json::Value> = serde_json::from_str(&ok(&run(tool().args([
        "-c",
        &lab_ssh_uri(),
        "isos",
        "--json",
    ])))?)?;
    check(shapes(&rows) == shapes(&remote), || {
        format!("local {:?}\nssh {:?}", shapes(&rows), shapes(&remote))
    })?;
    // The table too: each drive's target and bus on its row.
    let table = ok(&tool_lab(&["isos", "--color", "never"]))?;
    for (domain, target, bus) in SHAPES {
        check(
            table
                .lines()
                .any(|l| l.contains(domain) && l.contains(target) && l.contains(bus)),
            || format!("{domain} {target} {bus} not on one row:\n{table}"),
        )?;
    }
    Ok(())
}

fn status_lists_the_new_shapes() -> Result<(), Failed> {
    let rows: Vec<serde_json::Value> =
        serde_json::from_str(&ok(&tool_lab(&["status", "--json"]))?)?;
    for (domain, _, _) in SHAPES {
        let row = rows
            .iter()
            .find(|r| r["name"] == domain)
            .ok_or_else(|| format!("{domain} missing from status: {rows:?}"))?;
        let want = if domain == "lab-uefi" {
            "shut off"
        } else {
            "running"
        };
        check(row["state"] == want, || format!("{domain}: {row}"))?;
    }
    Ok(())
}

fn mount_and_eject_on_sata_and_scsi() -> Result<(), Failed> {
    let b = lab_iso("tools-b.iso");
    for domain in ["lab-q35", "lab-scsi"] {
        let _restore = Restore::new(domain, "sda");
        let text = ok(&tool_lab(&["mount", domain, &b, "--yes"]))?;
        check(text.contains(&format!("ok: {domain} sda: insert")), || {
            text.clone()
        })?;
        let got = media(domain, "sda");
        check(got == (Some(b.clone()), Some(b.clone())), || {
            format!("{domain}: {got:?}")
        })?;
        let text = ok(&tool_lab(&["eject", domain, "--yes"]))?;
        check(text.contains(&format!("ok: {domain} sda: eject")), || {
            text.clone()
        })?;
        let got = media(domain, "sda");
        check(got == (None, None), || format!("{domain}: {got:?}"))?;
    }
    // The shut-off UEFI guest: its config only.
    let _restore = Restore::new("lab-uefi", "sda");
    let text = ok(&tool_lab(&["mount", "lab-uefi", &b, "--yes"]))?;
    check(text.contains("(config only)"), || text.clone())?;
    check(media("lab-uefi", "sda").1 == Some(b.clone()), || {
        format!("{:?}", media("lab-uefi", "sda"))
    })?;
    ok(&tool_lab(&["eject", "lab-uefi", "--yes"]))?;
    check(media("lab-uefi", "sda") == (None, None), || {
        format!("{:?}", media("lab-uefi", "sda"))
    })
}

/// What lab-locked's init last said about its CD-ROM on the console.
fn locked_says() -> String {
    let log = lab_dir().join("console/lab-locked.log");
    let text = String::from_utf8_lossy(&std::fs::read(&log).unwrap_or_default()).into_owned();
    text.lines()
        .rfind(|l| l.contains("lab-init") && l.contains(": cdrom: "))
        .unwrap_or_default()
        .to_owned()
}

/// Until lab-locked's init has mounted its disc again (the tray locked).
fn wait_locked() -> Result<(), Failed> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !locked_says().ends_with("the tray is locked") {
        if Instant::now() > deadline {
            return Err(
                format!("lab-locked did not lock its tray again: {}", locked_says()).into(),
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

/// The guest mounted its disc: libvirt waits 5 s for the tray to open,
/// then fails. The tool says so in one line naming `--force`, and
/// changes nothing. It used to give up at its own 5 s `--timeout`, a
/// moment before libvirt's answer, and say only that virsh did not finish.
fn a_locked_tray_refuses_eject_naming_force() -> Result<(), Failed> {
    wait_locked()?;
    let _restore = Restore::new("lab-locked", "sda");
    let before = media("lab-locked", "sda");
    let output = tool_lab(&["eject", "lab-locked", "--yes"]);
    check(output.status.code() == Some(1), || stdout(&output))?;
    let text = stdout(&output);
    let failed: Vec<&str> = text.lines().filter(|l| l.starts_with("FAILED: ")).collect();
    check(failed.len() == 1, || text.clone())?;
    check(
        failed[0].contains("the tray is locked by the guest")
            && failed[0].contains("--force ejects anyway"),
        || text.clone(),
    )?;
    check(media("lab-locked", "sda") == before, || {
        format!("{:?}", media("lab-locked", "sda"))
    })?;
    // A mount over the locked disc: `mount --force` is the way on.
    let output = tool_lab(&["mount", "lab-locked", &lab_iso("tools-b.iso"), "--yes"]);
    check(output.status.code() == Some(1), || stdout(&output))?;
    let text = stdout(&output);
    check(
        text.lines().any(|l| {
            l.starts_with("FAILED: lab-locked sda: replace")
                && l.ends_with("; --force replaces it anyway")
        }),
        || text.clone(),
    )?;
    check(media("lab-locked", "sda") == before, || {
        format!("{:?}", media("lab-locked", "sda"))
    })
}

fn eject_force_ejects_a_locked_tray() -> Result<(), Failed> {
    wait_locked()?;
    let locked = lab_iso("locked.iso");
    {
        let _restore = Restore::new("lab-locked", "sda");
        let text = ok(&tool_lab(&["eject", "lab-locked", "--force", "--yes"]))?;
        check(text.contains("ok: lab-locked sda: eject"), || text.clone())?;
        check(media("lab-locked", "sda") == (None, None), || {
            format!("{:?}", media("lab-locked", "sda"))
        })?;
        // The guest unmounts the vanished disc before one is put back, or
        // it would keep its stale mount and never lock the new disc.
        let deadline = Instant::now() + Duration::from_secs(60);
        while !locked_says().contains("the disc is gone") {
            if Instant::now() > deadline {
                return Err(format!("lab-locked did not notice: {}", locked_says()).into());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    // Put back (Restore): the guest mounts the disc again, locking the tray.
    check(
        media("lab-locked", "sda") == (Some(locked.clone()), Some(locked)),
        || format!("{:?}", media("lab-locked", "sda")),
    )?;
    wait_locked()
}

/// A running copy of a lab shape without its CD-ROM, named
/// `scratch-shapes-*`, destroyed and undefined when dropped.
struct Scratch(String);

impl Scratch {
    fn of(shape: &str) -> Result<Self, Failed> {
        let name = format!("scratch-shapes-{}", shape.trim_start_matches("lab-"));
        let xml = virsh(LAB_URI, &["dumpxml", "--inactive", "--domain", shape]);
        let start = xml
            .find("<disk type='file' device='cdrom'>")
            .ok_or("no CD-ROM")?;
        let end = start + xml[start..].find("</disk>").ok_or("no </disk>")? + "</disk>".len();
        let mut copy = format!("{}{}", &xml[..start], &xml[end..]);
        copy = copy.replace(
            &format!("<name>{shape}</name>"),
            &format!("<name>{name}</name>"),
        );
        let uuid = copy
            .split_once("<uuid>")
            .and_then(|(_, r)| r.split_once("</uuid>"));
        let uuid = uuid.map(|(u, _)| u.to_owned()).ok_or("no uuid")?;
        copy = copy.replace(&format!("<uuid>{uuid}</uuid>"), "");
        // Its own console log, in the scratch folder.
        let dir = temp_dir("scratch-shapes");
        let console = format!("{}/console.log", dir.display());
        let log = lab_dir()
            .join(format!("console/{shape}.log"))
            .display()
            .to_string();
        copy = copy.replace(&log, &console);
        let file = dir.join("domain.xml");
        std::fs::write(&file, copy)?;
        let scratch = Scratch(name);
        virsh(LAB_URI, &["define", "--file", &file.display().to_string()]);
        virsh(LAB_URI, &["start", "--domain", &scratch.0]);
        Ok(scratch)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for args in [
            &["destroy", "--domain", &self.0][..],
            &["undefine", "--domain", &self.0],
        ] {
            let _ = try_virsh(LAB_URI, args);
        }
    }
}

/// q35's CD-ROMs are SATA, which libvirt cannot hot-plug: the new drive
/// goes into the config, and the plan and the outcome say so.
fn attach_on_q35_goes_into_the_config_only() -> Result<(), Failed> {
    let vm = Scratch::of("lab-q35")?;
    let b = lab_iso("tools-b.iso");
    let text = ok(&tool_lab(&["mount", &vm.0, &b, "--attach", "--yes"]))?;
    check(
        text.contains(&format!(
            "{}: add SATA CD-ROM sda holding {b} (config)",
            vm.0
        )) && text.contains("appears at the VM's next cold boot"),
        || text.clone(),
    )?;
    let got = media(&vm.0, "sda");
    check(got == (None, Some(b.clone())), || format!("{got:?}"))
}

/// On a virtio-scsi controller libvirt hot-plugs a CD-ROM: live and in
/// the config. The tool used to add a SATA drive to the config only,
/// which the running VM saw only after a cold boot.
fn attach_on_a_scsi_controller_is_hot_plugged() -> Result<(), Failed> {
    let vm = Scratch::of("lab-scsi")?;
    let b = lab_iso("tools-b.iso");
    let text = ok(&tool_lab(&["mount", &vm.0, &b, "--attach", "--yes"]))?;
    check(
        text.contains(&format!(
            "{}: add SCSI CD-ROM sda holding {b} (live and config)",
            vm.0
        )) && !text.contains("cold boot"),
        || text.clone(),
    )?;
    let got = media(&vm.0, "sda");
    check(got == (Some(b.clone()), Some(b.clone())), || {
        format!("{got:?}")
    })?;
    let live = virsh(LAB_URI, &["dumpxml", "--domain", &vm.0]);
    check(live.contains("<target dev='sda' bus='scsi'/>"), || {
        live.clone()
    })
}

/// `serve`'s media series on every shape: the drive's bus and target as
/// the XML has them, its media, a stopped UEFI guest's drive too.
fn serve_exports_each_shapes_media_series() -> Result<(), Failed> {
    let serving = Serving::start(tool().args(["-c", LAB_URI]));
    let locked = lab_iso("locked.iso");
    let (status, metrics) = serving.wait_for("/metrics", |_, metrics| {
        metrics.contains("dismount_drive_media_info{domain=\"lab-locked\"")
    });
    check(status == 200, || format!("/metrics: {status}"))?;
    for (domain, target, bus) in SHAPES {
        let source = if domain == "lab-locked" {
            locked.as_str()
        } else {
            ""
        };
        for series in [
            format!(
                "dismount_domain_block_info{{bus=\"{bus}\",device=\"cdrom\",domain=\"{domain}\",\
                 source_file=\"{source}\",target_device=\"{target}\",uri=\"{LAB_URI}\"}} 1"
            ),
            format!(
                "dismount_drive_media_info{{domain=\"{domain}\",source=\"{source}\",\
                 target=\"{target}\",uri=\"{LAB_URI}\"}} 1"
            ),
        ] {
            check(metrics.contains(&series), || {
                format!("no {series} in\n{metrics}")
            })?;
        }
    }
    let series = format!(
        "dismount_domain_state{{domain=\"lab-uefi\",state=\"shut off\",uri=\"{LAB_URI}\"}} 1"
    );
    check(metrics.contains(&series), || format!("no {series}"))
}

/// `virsh shutdown` (ACPI, no agent) takes a lab guest to shut off: its
/// init runs busybox acpid, whose power-button action powers off. What
/// `boot-iso --restart` relies on. The guest is started again after.
fn an_acpi_shutdown_powers_a_guest_off() -> Result<(), Failed> {
    let log = lab_dir().join("console/lab-q35.log");
    let said = || String::from_utf8_lossy(&std::fs::read(&log).unwrap_or_default()).into_owned();
    // The serial console's file starts afresh at each boot (libvirt
    // truncates it): a boot is up once its init says so.
    let up = || {
        said()
            .lines()
            .any(|l| l.starts_with("lab-init [") && l.ends_with("]: up"))
    };
    let state = || {
        virsh(LAB_URI, &["domstate", "--domain", "lab-q35"])
            .trim()
            .to_owned()
    };
    let wait = |what: &str, done: &dyn Fn() -> bool| -> Result<(), Failed> {
        let deadline = Instant::now() + Duration::from_secs(90);
        while !done() {
            if Instant::now() > deadline {
                return Err(format!("lab-q35: no {what} within 90 s ({})", state()).into());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(())
    };
    check(state() == "running" && up(), || {
        format!("lab-q35 is {}:\n{}", state(), said())
    })?;
    virsh(
        LAB_URI,
        &["shutdown", "--domain", "lab-q35", "--mode", "acpi"],
    );
    wait("shut off", &|| state() == "shut off")?;
    let text = said();
    check(
        text.contains("lab-init: ACPI power button: powering off"),
        || text.clone(),
    )?;
    virsh(LAB_URI, &["start", "--domain", "lab-q35"]);
    wait("boot", &|| up() && !said().contains("powering off"))
}
