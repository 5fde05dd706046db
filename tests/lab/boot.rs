//! `boot-iso` on the lab's libvirtd with real guests: scratch domains of
//! the shapes real hosts run (tests/lab/boot/*.xml.in: q35 BIOS with a
//! SATA CD-ROM and `<os><boot dev>`, q35 UEFI with per-device order, `pc`
//! without a CD-ROM; each booting the lab's kernel directly), started
//! from the lab's rescue ISO, locally and over ssh. Each test checks the
//! rescue marker on the serial console, `dumpxml --inactive` byte for byte
//! before, while running and after, and that a plain `virsh start`
//! afterwards boots as before. Each scratch domain is removed at the end
//! of its test, and at the start if an earlier run left it.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use crate::Cases;
use crate::common::*;
use libtest_mimic::{Completion, Failed};

/// What grub of the lab's rescue ISO prints on the serial console
/// (`scripts/lab env`: LAB_RESCUE_MARKER).
const RESCUE_MARKER: &str = "dismount-lab-rescue: grub booted the rescue ISO";
/// What the lab's init says when the rescue ISO's grub booted it.
const RESCUE_INIT: &str = "booted from the rescue ISO";
/// What the lab's init says once it is up, whatever booted it.
const INIT_UP: &str = "]: up";
/// The lab's description of what it defined (scripts/lab's LAB_MARKER).
const LAB_MARKER: &str = "dismount_iso_qemu lab";
/// How long a boot may take under TCG before the test gives up (a
/// deadline for a wait, not a timing assertion).
const BOOT_DEADLINE: Duration = Duration::from_secs(180);

pub fn cases() -> Cases {
    cases!(Alone; bios_q35_sata_os_boot_and_direct_kernel, uefi_per_device_order_from_a_pool_volume, pc_without_cdrom_gets_an_ide_drive_for_the_start, over_ssh_bios_and_uefi, refusals_change_nothing, a_transient_vm_is_refused, secure_boot_is_said_in_the_plan, restart_leaves_a_guest_that_ignores_acpi_running, restart_shuts_down_by_acpi_then_boots_the_iso)
}

/// One scratch domain of the lab, removed (with its NVRAM) when dropped.
struct Scratch {
    name: String,
    dir: PathBuf,
    console: PathBuf,
}

impl Scratch {
    /// `lab-boot-NAME` from tests/lab/boot/SHAPE.xml.in, with a disk of
    /// its own and its console log in a folder of its own; `edit` changes
    /// the XML before it is defined.
    fn define(shape: &str, name: &str, edit: impl FnOnce(String) -> String) -> Self {
        let name = format!("lab-boot-{name}");
        remove(&name);
        let dir = temp_dir(&name);
        let disk = dir.join("disk.raw");
        std::fs::File::create(&disk)
            .and_then(|file| file.set_len(1 << 20))
            .expect("a scratch disk");
        let console = dir.join("console.log");
        let template =
            std::fs::read_to_string(root().join(format!("tests/lab/boot/{shape}.xml.in")))
                .expect("the shape's template");
        let xml = edit(
            template
                .replace("@NAME@", &name)
                .replace("@LAB_DIR@", &lab_dir().display().to_string())
                .replace("@DISK@", &disk.display().to_string())
                .replace("@CONSOLE_LOG@", &console.display().to_string()),
        );
        let file = dir.join("domain.xml");
        std::fs::write(&file, xml).unwrap();
        virsh(LAB_URI, &["define", "--file", file.to_str().unwrap()]);
        Scratch { name, dir, console }
    }

    fn config(&self) -> String {
        virsh(LAB_URI, &["dumpxml", "--inactive", "--domain", &self.name])
    }

    fn live(&self) -> String {
        virsh(LAB_URI, &["dumpxml", "--domain", &self.name])
    }

    fn state(&self) -> String {
        virsh(LAB_URI, &["domstate", "--domain", &self.name])
            .trim()
            .to_owned()
    }

    /// Empties the console log before a start of the (shut off) guest:
    /// what it holds afterwards is that start's alone, whether QEMU
    /// truncates the file or appends to it.
    fn fresh_console(&self) {
        assert_ne!(self.state(), "running", "the console of a running guest");
        std::fs::write(&self.console, "").expect("the console log");
    }

    /// Waits until the console holds `needle`, the guest's state being
    /// looked at too (a guest that died says so); returns the console.
    fn wait_console(&self, needle: &str) -> Result<String, Failed> {
        let deadline = Instant::now() + BOOT_DEADLINE;
        loop {
            let bytes = std::fs::read(&self.console).unwrap_or_default();
            let text = String::from_utf8_lossy(&bytes).into_owned();
            if text.contains(needle) {
                return Ok(text);
            }
            if Instant::now() > deadline || self.state() != "running" {
                return Err(format!(
                    "{needle:?} not on the console of {} ({}); it got:\n{}",
                    self.name,
                    self.state(),
                    tail(&text)
                )
                .into());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Forces the scratch guest off (the test may; the tool never does).
    fn destroy(&self) {
        virsh(LAB_URI, &["destroy", "--domain", &self.name]);
    }

    /// A plain `virsh start` after the start from the ISO: the guest boots
    /// its own kernel again (init comes up), the ISO's grub is not seen.
    fn plain_start_boots_as_before(&self) -> Result<(), Failed> {
        self.fresh_console();
        virsh(LAB_URI, &["start", "--domain", &self.name]);
        let text = self.wait_console(INIT_UP)?;
        check(
            !text.contains(RESCUE_MARKER) && !text.contains(RESCUE_INIT),
            || {
                format!(
                    "a plain start of {} booted the ISO again:\n{}",
                    self.name,
                    tail(&text)
                )
            },
        )?;
        check(status_from_iso(LAB_URI, &self.name).is_none(), || {
            format!("{} still reads as booted from an ISO", self.name)
        })?;
        self.destroy();
        Ok(())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        remove(&self.name);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Removes the scratch domain `name` if it is there and the lab's (its
/// description says so): forced off, undefined with its NVRAM.
fn remove(name: &str) {
    let run = lab_virsh;
    let xml = run(&["dumpxml", "--inactive", "--domain", name]);
    if !xml.status.success() {
        return;
    }
    let marker = format!("<description>{LAB_MARKER}</description>");
    assert!(
        String::from_utf8_lossy(&xml.stdout).contains(&marker),
        "{name} exists but is not the lab's: not touching it"
    );
    run(&["destroy", "--domain", name]);
    run(&["undefine", "--nvram", "--domain", name]);
}

/// The last lines of a console log, for a failure's message.
fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

fn tool_on(uri: &str, args: &[&str]) -> Output {
    run(tool().args(["-c", uri]).args(args))
}

/// `boot-iso … --yes` succeeded, saying so.
fn boot(uri: &str, args: &[&str]) -> Result<String, Failed> {
    let mut words = vec!["boot-iso"];
    words.extend(args);
    words.push("--yes");
    let output = tool_on(uri, &words);
    let text = stdout(&output);
    check(output.status.success(), || {
        format!("boot-iso {args:?} failed:\n{text}{}", stderr(&output))
    })?;
    check(text.contains("ok: its config is unchanged"), || {
        text.clone()
    })?;
    Ok(text)
}

/// `status --json`'s `booted_from_iso` of `name`.
fn status_from_iso(uri: &str, name: &str) -> Option<String> {
    let output = tool_on(uri, &["status", "--json", "--match", &format!("^{name}$")]);
    let rows: serde_json::Value = serde_json::from_str(&stdout(&output)).expect("status JSON");
    rows[0]["booted_from_iso"].as_str().map(str::to_owned)
}

fn rescue_iso() -> String {
    lab_iso("rescue.iso")
}

/// Boots `scratch` from the rescue ISO over `uri` (the ISO as `iso`) and
/// checks what every start from an ISO must show; returns the live XML.
fn boot_and_check(scratch: &Scratch, uri: &str, iso: &str, target: &str) -> Result<String, Failed> {
    let before = scratch.config();
    scratch.fresh_console();
    boot(uri, &[&scratch.name, iso])?;
    scratch.wait_console(RESCUE_INIT)?;
    let text = scratch.wait_console(RESCUE_MARKER)?;
    check(text.contains(RESCUE_MARKER), || tail(&text))?;
    check(scratch.config() == before, || {
        format!(
            "the config of {} changed while it runs from the ISO",
            scratch.name
        )
    })?;
    check(
        status_from_iso(uri, &scratch.name).as_deref() == Some(target),
        || format!("status does not say {} booted from {target}", scratch.name),
    )?;
    Ok(scratch.live())
}

/// q35, an empty SATA CD-ROM, `<os><boot dev='hd'/><boot dev='cdrom'/>`,
/// a kernel booted directly: the ISO boots; `isos` shows the drive
/// Live≠Config and `eject` empties it as any drive; a plain start boots
/// the kernel again.
fn bios_q35_sata_os_boot_and_direct_kernel() -> Result<(), Failed> {
    let scratch = Scratch::define("bios", "bios", |xml| xml);
    let before = scratch.config();
    let dry = tool_on(
        LAB_URI,
        &["boot-iso", &scratch.name, &rescue_iso(), "--dry-run"],
    );
    let text = stdout(&dry);
    check(
        dry.status.success() && text.contains(" create TRANSIENT.xml"),
        || text.clone(),
    )?;
    check(text.contains("(hd, cdrom) becomes per-device"), || {
        text.clone()
    })?;
    check(scratch.state() == "shut off", || {
        "the dry run started it".to_owned()
    })?;

    let live = boot_and_check(&scratch, LAB_URI, &rescue_iso(), "sda")?;
    check(
        !live.contains("<kernel>") && !live.contains("<boot dev="),
        || live.clone(),
    )?;

    let table = tool_on(
        LAB_URI,
        &["status", "--match", &format!("^{}$", scratch.name)],
    );
    check(stdout(&table).contains("running from ISO (sda)"), || {
        stdout(&table)
    })?;
    let running = tool_on(
        LAB_URI,
        &["boot-iso", &scratch.name, &rescue_iso(), "--yes"],
    );
    check(running.status.code() == Some(1), || stderr(&running))?;
    assert_stderr_contains(&running, "pass --restart");

    let isos = tool_on(LAB_URI, &["isos", "--json", "--match", &scratch.name]);
    let rows: serde_json::Value = serde_json::from_str(&stdout(&isos)).unwrap();
    let row = &rows[0];
    check(
        row["target"] == "sda"
            && row["source"] == rescue_iso().as_str()
            && row["config_source"].is_null()
            && row["live_config_differ"] == true,
        || format!("isos: {row}"),
    )?;
    let eject = tool_on(
        LAB_URI,
        &["eject", &scratch.name, "--target", "sda", "--yes"],
    );
    check(eject.status.success(), || stdout(&eject) + &stderr(&eject))?;
    check(!scratch.live().contains("rescue.iso"), || {
        "not ejected".to_owned()
    })?;

    scratch.destroy();
    check(scratch.config() == before, || {
        "the config changed".to_owned()
    })?;
    scratch.plain_start_boots_as_before()?;
    check(scratch.config() == before, || {
        "the config changed".to_owned()
    })
}

/// q35 UEFI (OVMF without Secure Boot), a disk ordered 1 and the CD-ROM 2:
/// for the start the CD-ROM is 1 and the disk 2; the ISO named as the
/// pool's volume.
fn uefi_per_device_order_from_a_pool_volume() -> Result<(), Failed> {
    let scratch = Scratch::define("uefi", "uefi", |xml| xml);
    let before = scratch.config();
    let live = boot_and_check(&scratch, LAB_URI, "lab-isos/rescue.iso", "sda")?;
    let document = roxmltree::Document::parse(&live).unwrap();
    let orders: Vec<(String, String)> = document
        .descendants()
        .filter(|n| n.has_tag_name("disk"))
        .map(|disk| {
            let find = |tag: &str, attribute: &str| {
                disk.children()
                    .find(|n| n.has_tag_name(tag))
                    .and_then(|n| n.attribute(attribute))
                    .unwrap_or("-")
                    .to_owned()
            };
            (find("target", "dev"), find("boot", "order"))
        })
        .collect();
    check(
        orders == [("vda".into(), "2".into()), ("sda".into(), "1".into())],
        || format!("boot orders while running: {orders:?}"),
    )?;
    scratch.destroy();
    check(scratch.config() == before, || {
        "the config changed".to_owned()
    })?;
    scratch.plain_start_boots_as_before()
}

/// machine pc with no CD-ROM: an IDE drive is there for the start only;
/// the ISO's name holds a quote, double quotes, `<`, `&` and blanks.
fn pc_without_cdrom_gets_an_ide_drive_for_the_start() -> Result<(), Failed> {
    let scratch = Scratch::define("pc", "pc", |xml| xml);
    let before = scratch.config();
    let iso = scratch.dir.join("it's \"a\" <b> & c.iso");
    std::fs::copy(rescue_iso(), &iso).unwrap();
    let iso = iso.display().to_string();
    let live = boot_and_check(&scratch, LAB_URI, &iso, "hdb")?;
    check(live.contains("<target dev='hdb' bus='ide'/>"), || {
        live.clone()
    })?;
    let isos = tool_on(LAB_URI, &["isos", "--json", "--match", &scratch.name]);
    let rows: serde_json::Value = serde_json::from_str(&stdout(&isos)).unwrap();
    check(
        rows[0]["target"] == "hdb"
            && rows[0]["source"] == iso.as_str()
            && rows[0]["config_source"].is_null(),
        || format!("isos: {rows}"),
    )?;
    check(!before.contains("device='cdrom'"), || before.clone())?;
    scratch.destroy();
    check(scratch.config() == before, || {
        "the config changed".to_owned()
    })?;
    scratch.plain_start_boots_as_before()
}

/// Over `qemu+ssh://`: BIOS with the ISO as its path on the host, UEFI
/// with it as a pool volume; the boot record read over the connection.
fn over_ssh_bios_and_uefi() -> Result<(), Failed> {
    let ssh = lab_ssh_uri();
    let bios = Scratch::define("bios", "ssh-bios", |xml| xml);
    let before = bios.config();
    boot_and_check(&bios, &ssh, &rescue_iso(), "sda")?;
    bios.destroy();
    check(bios.config() == before, || "the config changed".to_owned())?;
    drop(bios);
    let uefi = Scratch::define("uefi", "ssh-uefi", |xml| xml);
    let before = uefi.config();
    boot_and_check(&uefi, &ssh, "lab-isos/rescue.iso", "sda")?;
    uefi.destroy();
    check(uefi.config() == before, || "the config changed".to_owned())?;
    // An ISO without a boot record, read over the connection: refused,
    // naming --force; with --force the plan goes through (dry run).
    let plain = tool_on(
        &ssh,
        &["boot-iso", &uefi.name, &lab_iso("install-a.iso"), "--yes"],
    );
    check(plain.status.code() == Some(1), || stderr(&plain))?;
    assert_stderr_contains(&plain, "no El Torito boot record");
    assert_stderr_contains(&plain, "--force");
    let forced = tool_on(
        &ssh,
        &[
            "boot-iso",
            &uefi.name,
            &lab_iso("install-a.iso"),
            "--force",
            "--dry-run",
        ],
    );
    check(forced.status.success(), || stderr(&forced))?;
    check(
        uefi.state() == "shut off" && uefi.config() == before,
        || "a refusal changed something".to_owned(),
    )
}

/// Refusals on a real domain leave it as it was: no boot record, a
/// directory, a `--target` that is no CD-ROM, no terminal without --yes.
fn refusals_change_nothing() -> Result<(), Failed> {
    let scratch = Scratch::define("uefi", "refusals", |xml| xml);
    let before = scratch.config();
    let dir = temp_dir("lab-boot-refusals-dir");
    let dir_arg = dir.display().to_string();
    let install = lab_iso("install-a.iso");
    let cases: [(&[&str], &str); 5] = [
        (&[&install, "--yes"], "no El Torito boot record"),
        (&[&dir_arg, "--yes"], "not a regular file"),
        (&[&rescue_iso(), "--target", "vda", "--yes"], "not a CD-ROM"),
        (&[&rescue_iso()], "pass --yes"),
        (&["lab-isos/nope.iso", "--yes"], "does not exist"),
    ];
    for (args, why) in cases {
        let mut words = vec!["boot-iso", scratch.name.as_str()];
        words.extend(args);
        let output = tool_on(LAB_URI, &words);
        check(output.status.code() == Some(1), || {
            format!("{args:?}: {}", stderr(&output))
        })?;
        assert_stderr_contains(&output, why);
        check(
            scratch.state() == "shut off" && scratch.config() == before,
            || format!("{args:?} changed the domain"),
        )?;
    }
    // A pool that is there but inactive.
    let pool_dir = temp_dir("lab-boot-pool");
    remove_pool();
    virsh(
        LAB_URI,
        &[
            "pool-define-as",
            "--name",
            POOL,
            "--type",
            "dir",
            "--target",
            pool_dir.to_str().unwrap(),
        ],
    );
    let output = tool_on(
        LAB_URI,
        &[
            "boot-iso",
            &scratch.name,
            &format!("{POOL}/rescue.iso"),
            "--yes",
        ],
    );
    remove_pool();
    check(output.status.code() == Some(1), || stderr(&output))?;
    assert_stderr_contains(
        &output,
        &format!("storage pool '{POOL}' on qemu:///system is inactive"),
    );
    check(
        scratch.state() == "shut off" && scratch.config() == before,
        || "the refusal changed the domain".to_owned(),
    )?;
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&pool_dir);
    Ok(())
}

/// The inactive pool `refusals_change_nothing` defines.
const POOL: &str = "lab-boot-inactive";

fn remove_pool() {
    let _ = try_virsh(LAB_URI, &["pool-undefine", "--pool", POOL]);
}

/// `<os firmware='efi'>` left to pick its firmware: the plan says the VM
/// boots only a signed ISO (a dry run: no boot).
fn secure_boot_is_said_in_the_plan() -> Result<(), Failed> {
    let scratch = Scratch::define("uefi", "secure", |xml| {
        let kept: Vec<&str> = xml
            .lines()
            .filter(|line| !line.contains("<loader") && !line.contains("<nvram"))
            .collect();
        kept.join("\n").replace("<os>", "<os firmware='efi'>")
    });
    let output = tool_on(
        LAB_URI,
        &["boot-iso", &scratch.name, &rescue_iso(), "--dry-run"],
    );
    let text = stdout(&output);
    check(output.status.success(), || stderr(&output))?;
    check(
        text.contains("warning: its firmware enforces Secure Boot: it boots only a signed ISO"),
        || text.clone(),
    )?;
    check(scratch.state() == "shut off", || scratch.state())
}

/// A transient VM (made with `virsh create`, no config) is refused: there
/// is no config to start it as it was.
fn a_transient_vm_is_refused() -> Result<(), Failed> {
    let scratch = Scratch::define("pc", "transient", |xml| xml);
    let xml = scratch.config();
    virsh(LAB_URI, &["undefine", "--domain", &scratch.name]);
    let file = scratch.dir.join("transient.xml");
    std::fs::write(&file, xml).unwrap();
    virsh(LAB_URI, &["create", "--file", file.to_str().unwrap()]);
    let output = tool_on(
        LAB_URI,
        &["boot-iso", &scratch.name, &rescue_iso(), "--yes"],
    );
    check(output.status.code() == Some(1), || stderr(&output))?;
    assert_stderr_contains(&output, "is a transient VM");
    check(status_from_iso(LAB_URI, &scratch.name).is_none(), || {
        "it reads as booted from an ISO".to_owned()
    })?;
    scratch.destroy();
    Ok(())
}

/// A guest that does not answer ACPI (here: no ACPI at all) is asked to
/// shut down, waited for, and left running: exit 1, never forced off.
fn restart_leaves_a_guest_that_ignores_acpi_running() -> Result<(), Failed> {
    let scratch = Scratch::define("pc", "no-acpi", |xml| {
        xml.replace("<features><acpi/></features>", "")
    });
    let before = scratch.config();
    scratch.fresh_console();
    virsh(LAB_URI, &["start", "--domain", &scratch.name]);
    scratch.wait_console(INIT_UP)?;
    let output = tool_on(
        LAB_URI,
        &[
            "boot-iso",
            &scratch.name,
            &rescue_iso(),
            "--restart",
            "--wait",
            "3s",
            "--yes",
        ],
    );
    let text = stdout(&output);
    check(output.status.code() == Some(1), || {
        text.clone() + &stderr(&output)
    })?;
    check(
        text.contains("did not shut down within 3s: left running"),
        || text.clone(),
    )?;
    check(scratch.state() == "running", || scratch.state())?;
    check(status_from_iso(LAB_URI, &scratch.name).is_none(), || {
        "it reads as booted from the ISO".to_owned()
    })?;
    scratch.destroy();
    check(scratch.config() == before, || {
        "the config changed".to_owned()
    })
}

/// Whether the lab's guest init powers off on an ACPI shutdown: its
/// /init, read from the initramfs the lab built.
fn lab_init_answers_acpi(lab: &Path) -> bool {
    let init = std::process::Command::new("sh")
        .arg("-c")
        .arg("gzip -dc \"$1\" | cpio -i --to-stdout init 2>/dev/null")
        .arg("sh")
        .arg(lab.join("guest/initrd.img"))
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    init.contains("poweroff")
}

/// `--restart` on a running guest that answers ACPI: it shuts down, then
/// starts from the ISO. Ignored (with the reason) while the lab's guest
/// init does not power off on ACPI shutdown.
fn restart_shuts_down_by_acpi_then_boots_the_iso() -> Result<Completion, Failed> {
    if !lab_init_answers_acpi(&lab_dir()) {
        return Ok(Completion::ignored_with(
            "the lab's guest init does not power off on an ACPI shutdown yet \
             (scripts/lab.d/guest-init.sh; rebuilt by `scripts/lab up`)",
        ));
    }
    let scratch = Scratch::define("bios", "restart", |xml| xml);
    let before = scratch.config();
    scratch.fresh_console();
    virsh(LAB_URI, &["start", "--domain", &scratch.name]);
    scratch.wait_console(INIT_UP)?;
    // The console then holds both starts: the rescue ISO's lines are the
    // second's.
    boot(
        LAB_URI,
        &[&scratch.name, &rescue_iso(), "--restart", "--wait", "2m"],
    )?;
    scratch.wait_console(RESCUE_INIT)?;
    check(scratch.config() == before, || {
        "the config changed".to_owned()
    })?;
    scratch.destroy();
    Ok(Completion::Completed)
}
