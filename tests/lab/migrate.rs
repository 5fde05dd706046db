//! `migrate-check` on the lab (`scripts/lab up`): a scratch domain of this
//! file's own (`scratch-migrate-vm`, shut off, never started) whose
//! drives hold the lab's ISOs, a file of the lab pool's directory that
//! is not there, a file outside every pool, volumes of a pool defined
//! and not started (`scratch-migrate-inactive`) and of one nowhere, and
//! a missing ISO behind startupPolicy='optional'; checked against the
//! lab itself over `qemu+ssh://` (a remote host: only its pools are
//! known) and against a test-driver host written here (the lab pool's
//! directory, one ISO of its size, one of another, one missing). Copies
//! (`--fix copy`) go from a pool of this module's own on the lab
//! (`scratch-migrate-src`) to the pool of that name it makes on the lab's
//! second host (LAB_SECOND_URI: another user's qemu:///session over the
//! lab's sshd), streamed. The lab's guests, and its `lab-isos` pool, are
//! never touched; what this module defines it removes again.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::Cases;
use crate::common::*;
use libtest_mimic::Failed;
use serde_json::Value;

pub fn cases() -> Cases {
    // One scratch domain and pool for all: one test at a time.
    cases!(Alone; the_lab_over_ssh_as_destination, a_test_driver_host_as_destination, fix_eject_ejects_what_blocks_and_nothing_else, a_copy_streamed_over_ssh_has_the_sources_bytes, an_interrupted_copy_leaves_no_volume, a_copy_terminated_alone_leaves_no_volume_and_no_child, two_copies_at_once_one_wins_whole)
}

const VM: &str = "scratch-migrate-vm";
const INACTIVE_POOL: &str = "scratch-migrate-inactive";

/// The scratch domain, its pool (defined, not started) and the file
/// outside every pool, removed when dropped.
struct Scratch {
    dir: PathBuf,
    isos: PathBuf,
}

impl Scratch {
    fn new() -> Self {
        let isos = lab_dir().join("isos");
        let dir = temp_dir("lab-migrate");
        let outside = iso_file(&dir, "outside.iso", 1 << 20);
        let pool_dir = dir.join("inactive");
        std::fs::create_dir_all(&pool_dir).unwrap();
        Scratch::remove();
        let defined = lab_virsh(&[
            "pool-define-as",
            INACTIVE_POOL,
            "dir",
            "--target",
            pool_dir.to_str().unwrap(),
        ]);
        assert!(defined.status.success(), "{}", stderr(&defined));
        let file = |dev: &str, bus: &str, device: &str, path: &Path, policy: &str| {
            format!(
                "<disk type='file' device='{device}'><driver name='qemu' type='raw'/>\
                 <source file='{}'{policy}/><target dev='{dev}' bus='{bus}'/><readonly/></disk>",
                path.display()
            )
        };
        let volume = |dev: &str, pool: &str| {
            format!(
                "<disk type='volume' device='cdrom'><driver name='qemu' type='raw'/>\
                 <source pool='{pool}' volume='x.iso'/><target dev='{dev}' bus='sata'/>\
                 <readonly/></disk>"
            )
        };
        let missing = isos.join("scratch-migrate-missing.iso");
        let disks = [
            file("hdc", "ide", "cdrom", &isos.join("install-a.iso"), ""),
            file("hdd", "ide", "cdrom", &isos.join("tools-b.iso"), ""),
            file("sda", "sata", "cdrom", &isos.join("Débian netinst.iso"), ""),
            file("sdb", "sata", "cdrom", &missing, ""),
            file("sdc", "sata", "cdrom", &outside, ""),
            volume("sdd", INACTIVE_POOL),
            volume("sde", "scratch-migrate-nowhere"),
            file(
                "fda",
                "fdc",
                "floppy",
                &missing,
                " startupPolicy='optional'",
            ),
        ]
        .concat();
        let xml = dir.join("domain.xml");
        std::fs::write(
            &xml,
            format!(
                "<domain type='qemu'><name>{VM}</name><memory unit='KiB'>65536</memory>\
                 <os><type arch='x86_64'>hvm</type></os><devices>\
                 <emulator>/usr/bin/qemu-system-x86_64</emulator>{disks}</devices></domain>"
            ),
        )
        .unwrap();
        let defined = lab_virsh(&["define", "--file", xml.to_str().unwrap()]);
        assert!(defined.status.success(), "{}", stderr(&defined));
        Scratch { dir, isos }
    }

    fn remove() {
        lab_virsh(&["undefine", "--domain", VM]);
        lab_virsh(&["pool-undefine", "--pool", INACTIVE_POOL]);
    }

    /// Each drive's source in the config, by target (`-`: empty).
    fn drives(&self) -> BTreeMap<String, String> {
        virsh(LAB_URI, &["domblklist", "--domain", VM, "--inactive"])
            .lines()
            .skip(2)
            .filter_map(|line| {
                let (target, source) = line.trim().split_once(char::is_whitespace)?;
                Some((target.to_owned(), source.trim().to_owned()))
            })
            .collect()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        Scratch::remove();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Each drive's reason by target (`ok` for none; `!` where it blocks).
type Reasons = BTreeMap<String, String>;

/// `migrate-check VM --to DEST --json` on the lab: its exit status, the
/// drives' reasons, and the VM's row.
fn reasons(dest: &str) -> Result<(Option<i32>, Reasons, Value), Failed> {
    let output = run(tool().args(["-c", LAB_URI, "migrate-check", VM, "--to", dest, "--json"]));
    let rows: Vec<Value> = serde_json::from_str(&stdout(&output))
        .map_err(|e| format!("{e}: {}{}", stdout(&output), stderr(&output)))?;
    check(rows.len() == 1, || format!("{rows:?}"))?;
    let reasons = rows[0]["drives"]
        .as_array()
        .unwrap()
        .iter()
        .map(|drive| {
            let reason = drive["reason"].as_str().unwrap_or("ok");
            let blocks = if drive["blocks"] == true { "!" } else { "" };
            (
                drive["target"].as_str().unwrap().to_owned(),
                format!("{reason}{blocks}"),
            )
        })
        .collect();
    Ok((output.status.code(), reasons, rows[0].clone()))
}

fn expected(pairs: &[(&str, &str)]) -> Reasons {
    pairs
        .iter()
        .map(|(target, reason)| ((*target).to_owned(), (*reason).to_owned()))
        .collect()
}

/// Over ssh the lab is a remote host: each of its pool's ISOs is there
/// with its size, a file of its directory that is no volume is missing,
/// a file outside every pool cannot be checked (with the pool that
/// would make it checkable), the inactive pool and the missing pool say
/// so, and the optional drive only warns. Ground truth: `vol-list` of
/// the lab pool by the real virsh.
fn the_lab_over_ssh_as_destination() -> Result<(), Failed> {
    let scratch = Scratch::new();
    let truth = virsh(LAB_URI, &["vol-list", "--pool", "lab-isos"]);
    for name in ["install-a.iso", "tools-b.iso", "Débian netinst.iso"] {
        check(truth.contains(name), || truth.clone())?;
    }
    check(!truth.contains("scratch-migrate-missing"), || truth.clone())?;
    let (code, reasons, row) = reasons(&lab_ssh_uri())?;
    check(code == Some(1), || format!("exit {code:?}"))?;
    check(
        reasons
            == expected(&[
                ("hdc", "ok"),
                ("hdd", "ok"),
                ("sda", "ok"),
                ("sdb", "missing!"),
                ("sdc", "not_checkable"),
                ("sdd", "pool_inactive!"),
                ("sde", "no_pool!"),
                ("fda", "missing"),
            ]),
        || format!("{reasons:?}"),
    )?;
    check(row["verdict"] == "blocked", || row.to_string())?;
    let fix_of = |target: &str| -> Vec<String> {
        row["drives"]
            .as_array()
            .unwrap()
            .iter()
            .find(|drive| drive["target"] == target)
            .map(|drive| {
                drive["fix"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|line| line.as_str().unwrap().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let outside = fix_of("sdc");
    // Named after its directory (quoted: the test's holds parentheses).
    let dir = scratch.dir.display().to_string();
    let name = scratch.dir.file_name().unwrap().to_str().unwrap();
    check(
        outside.len() == 2
            && outside[0].contains(&format!("pool-define-as '{name}' dir --target '{dir}'"))
            && outside[1].ends_with(&format!("pool-start '{name}'")),
        || format!("{outside:?}"),
    )?;
    check(
        fix_of("sdd")
            .iter()
            .any(|line| line.ends_with(&format!("pool-start {INACTIVE_POOL}"))),
        || format!("{:?}", fix_of("sdd")),
    )?;
    // The file of the lab pool's directory: copied there with `upload`
    // from this machine, had it been here; it is not, so no copy.
    check(
        fix_of("sdb")[0].ends_with(&format!("eject --target sdb {VM}")),
        || format!("{:?}", fix_of("sdb")),
    )?;
    drop(scratch);
    Ok(())
}

/// A test-driver destination (the lab pool's directory, with install-a
/// of its size, tools-b of another, no Débian ISO): present, different
/// size, missing, each as the files here say; a pool the destination
/// lacks is `no_pool`. The copy of a file here is `upload` into the pool
/// whose directory holds its path.
fn a_test_driver_host_as_destination() -> Result<(), Failed> {
    let scratch = Scratch::new();
    let size = |name: &str| std::fs::metadata(scratch.isos.join(name)).unwrap().len();
    let node = scratch.dir.join("dest.xml");
    let volume = |name: &str, bytes: u64| {
        format!(
            "<volume type='file'><name>{name}</name><capacity unit='bytes'>{bytes}</capacity>\
             </volume>"
        )
    };
    std::fs::write(
        &node,
        format!(
            "<node><pool type='dir'><name>isos</name>\
             <uuid>5ca1ab1e-0000-4000-8000-00000000f301</uuid>\
             <target><path>{}</path></target>{}{}</pool></node>",
            scratch.isos.display(),
            volume("install-a.iso", size("install-a.iso")),
            volume("tools-b.iso", size("tools-b.iso") + 2048),
        ),
    )?;
    let dest = format!("test://{}", node.display());
    let (code, reasons, row) = reasons(&dest)?;
    check(code == Some(1), || format!("exit {code:?}"))?;
    check(
        reasons
            == expected(&[
                ("hdc", "ok"),
                ("hdd", "different_size!"),
                ("sda", "missing!"),
                ("sdb", "missing!"),
                ("sdc", "not_checkable"),
                ("sdd", "no_pool!"),
                ("sde", "no_pool!"),
                ("fda", "missing"),
            ]),
        || format!("{reasons:?}"),
    )?;
    let sda = &row["drives"]
        .as_array()
        .unwrap()
        .iter()
        .find(|drive| drive["target"] == "sda")
        .unwrap()["fix"];
    let upload = format!(
        "' upload '{}' --pool isos --name 'Débian netinst.iso'",
        scratch.isos.join("Débian netinst.iso").display()
    );
    check(
        sda.as_array().unwrap().iter().any(|line| {
            let line = line.as_str().unwrap();
            line.starts_with("dismount_iso_qemu -c 'test:///") && line.ends_with(&upload)
        }),
        || format!("{upload} not in {sda}"),
    )?;
    Ok(())
}

/// `--fix eject --yes` ejects the drives that block, in the config (the
/// VM is shut off), and nothing else: the warnings' and the present
/// ISOs' drives keep their media (ground truth: `domblklist --inactive`);
/// checked again, nothing blocks (exit 0).
fn fix_eject_ejects_what_blocks_and_nothing_else() -> Result<(), Failed> {
    let scratch = Scratch::new();
    let before = scratch.drives();
    let dest = lab_ssh_uri();
    let output = run(tool().args([
        "-c",
        LAB_URI,
        "migrate-check",
        VM,
        "--to",
        &dest,
        "--fix",
        "eject",
        "--yes",
    ]));
    check(output.status.code() == Some(0), || {
        format!("{}{}", stdout(&output), stderr(&output))
    })?;
    let after = scratch.drives();
    let mut want = before.clone();
    for target in ["sdb", "sdd", "sde"] {
        want.insert(target.to_owned(), "-".to_owned());
    }
    check(after == want, || {
        format!("before {before:?}\nafter {after:?}")
    })?;
    let (code, _, row) = reasons(&dest)?;
    check(code == Some(0) && row["verdict"] == "warning", || {
        row.to_string()
    })?;
    Ok(())
}

const COPY_VM: &str = "scratch-migrate-copy";
const COPY_POOL: &str = "scratch-migrate-src";
/// The ISO copied: a leading dash, a blank, a quote, a backtick.
const COPY_ISO: &str = "-copy it's `x`.iso";

/// The lab's second host (scripts/lab's `ensure_second_host`): another
/// user's qemu:///session, over the lab's sshd, through its socket.
/// The second host's home (scripts/lab's SECOND_HOME): its socket, and
/// the directories of the pools a test makes there.
const SECOND_HOME: &str = "/var/lib/dismount-lab2";

fn second_uri() -> String {
    let socket = Path::new(SECOND_HOME).join(".cache/libvirt/libvirt-sock");
    lab_ssh_uri_to(&format!("session?socket={}&proxy=netcat", socket.display()))
}

/// A copy's two ends: on the lab, pool COPY_POOL over a directory of
/// this test's holding [`COPY_ISO`] (`bytes` long) and a scratch domain
/// whose CD-ROM names that volume; on the second host, a pool of the same
/// name, empty. Removed when dropped.
struct CopyScratch {
    dir: PathBuf,
    /// The second host's pool directory, in its user's home (only it can
    /// make a directory there; root reads it).
    there: PathBuf,
    second: String,
}

impl CopyScratch {
    /// Until the stream has brought the ISO 9660 signature (byte 32769)
    /// there, which only the bytes copied hold: the create has been
    /// answered and the copy is under way. The file's path, there.
    fn wait_for_bytes(&self) -> PathBuf {
        let landed = self.there.join(COPY_ISO);
        poll(|| {
            use std::os::unix::fs::FileExt;
            let mut signature = [0u8; 5];
            std::fs::File::open(&landed)
                .and_then(|file| file.read_exact_at(&mut signature, 32769))
                .ok()
                .filter(|()| &signature == b"CD001")
        });
        landed
    }

    fn new(bytes: u64) -> Result<Self, Failed> {
        let second = second_uri();
        let dir = temp_dir("lab-migrate-copy");
        let source = dir.join("source");
        std::fs::create_dir_all(&source)?;
        iso_file(&source, COPY_ISO, bytes);
        let there = Path::new(SECOND_HOME).join(format!("scratch-migrate-{}", std::process::id()));
        let scratch = CopyScratch { dir, there, second };
        scratch.remove();
        let run = |uri: &str, args: &[&str]| -> Result<(), Failed> {
            let output = try_virsh(uri, args)?;
            check(output.status.success(), || {
                format!("virsh {args:?}: {}", stderr(&output))
            })
        };
        run(
            LAB_URI,
            &[
                "pool-create-as",
                COPY_POOL,
                "dir",
                "--target",
                source.to_str().unwrap(),
            ],
        )?;
        // Built by the second host's daemon: a directory its user owns.
        run(
            &scratch.second,
            &[
                "pool-create-as",
                COPY_POOL,
                "dir",
                "--target",
                scratch.there.to_str().unwrap(),
                "--build",
            ],
        )?;
        let xml = scratch.dir.join("domain.xml");
        std::fs::write(
            &xml,
            format!(
                "<domain type='qemu'><name>{COPY_VM}</name><memory unit='KiB'>65536</memory>\
                 <os><type arch='x86_64'>hvm</type></os><devices>\
                 <emulator>/usr/bin/qemu-system-x86_64</emulator>\
                 <disk type='volume' device='cdrom'><driver name='qemu' type='raw'/>\
                 <source pool='{COPY_POOL}' volume='{}'/><target dev='hdc' bus='ide'/>\
                 <readonly/></disk></devices></domain>",
                COPY_ISO.replace('\'', "&apos;")
            ),
        )?;
        run(LAB_URI, &["define", "--file", xml.to_str().unwrap()])?;
        Ok(scratch)
    }

    fn remove(&self) {
        lab_virsh(&["undefine", "--domain", COPY_VM]);
        lab_virsh(&["pool-destroy", "--pool", COPY_POOL]);
        let _ = try_virsh(&self.second, &["pool-destroy", "--pool", COPY_POOL]);
    }

    /// The volumes of the second host's pool, by name.
    fn copied(&self) -> String {
        virsh(&self.second, &["vol-list", "--pool", COPY_POOL])
    }

    fn copy(&self, extra: &[&str]) -> std::process::Command {
        let mut command = tool();
        command
            .args([
                "-c",
                LAB_URI,
                "migrate-check",
                COPY_VM,
                "--to",
                &self.second,
            ])
            .args(["--fix", "copy"])
            .args(extra);
        command
    }
}

impl Drop for CopyScratch {
    fn drop(&mut self) {
        self.remove();
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_dir_all(&self.there);
    }
}

/// The sha256sum of a file, as coreutils prints it: the ground truth is
/// not the tool's own hashing.
fn sha256sum(file: &Path) -> Result<String, Failed> {
    let output = std::process::Command::new("sha256sum").arg(file).output()?;
    Ok(String::from_utf8(output.stdout)?
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned())
}

/// `--fix copy --yes --verify` streams the source's volume to the second
/// host over ssh: the file there has the source's bytes (sha256sum of
/// both), the tool says so with the SHA-256 read back, and the check
/// after finds nothing blocked (exit 0).
fn a_copy_streamed_over_ssh_has_the_sources_bytes() -> Result<(), Failed> {
    let scratch = CopyScratch::new(16 << 20)?;
    check(!scratch.copied().contains(COPY_ISO), || scratch.copied())?;
    let output = run(&mut scratch.copy(&["--yes", "--verify"]));
    check(output.status.code() == Some(0), || {
        format!("{}{}", stdout(&output), stderr(&output))
    })?;
    let source = sha256sum(&scratch.dir.join("source").join(COPY_ISO))?;
    let copied = sha256sum(&scratch.there.join(COPY_ISO))?;
    check(source == copied && source.len() == 64, || {
        format!("source {source}, copy {copied}")
    })?;
    check(
        stdout(&output).contains(&format!("read back: SHA-256 {source}")),
        || stdout(&output),
    )?;
    let again = run(tool().args([
        "-c",
        LAB_URI,
        "migrate-check",
        COPY_VM,
        "--to",
        &scratch.second,
    ]));
    check(again.status.code() == Some(0), || stdout(&again))?;
    Ok(())
}

/// Ctrl-C while the bytes stream: the volume made on the second host is
/// deleted, the tool says so and exits 130; `--dry-run` before copied
/// nothing.
fn an_interrupted_copy_leaves_no_volume() -> Result<(), Failed> {
    use std::os::unix::process::CommandExt;
    let scratch = CopyScratch::new(1 << 30)?;
    let dry = run(&mut scratch.copy(&["--dry-run"]));
    check(
        dry.status.code() == Some(1) && stdout(&dry).contains("Dry run: nothing was copied."),
        || stdout(&dry),
    )?;
    check(!scratch.copied().contains(COPY_ISO), || scratch.copied())?;
    let child = scratch
        .copy(&["--yes"])
        .process_group(0)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    // Under way: the stream has brought the ISO 9660 signature (byte
    // 32769) there, which only the bytes copied hold, so the create has
    // been answered (a create cut short is left, as it may be another's).
    let landed = scratch.wait_for_bytes();
    signal_group(&child, libc::SIGINT);
    let output = child.wait_with_output()?;
    check(output.status.code() == Some(130), || described(&output))?;
    check(
        stdout(&output).contains(&format!(
            "interrupted; the volume {COPY_POOL}/{COPY_ISO} it had created was deleted"
        )),
        || stdout(&output),
    )?;
    check(!scratch.copied().contains(COPY_ISO), || scratch.copied())?;
    check(!landed.exists(), || "the file is left".to_owned())?;
    Ok(())
}

/// Every process below `pid`, from /proc (each one's parent).
fn descendants(pid: i32) -> Vec<i32> {
    let parents: Vec<(i32, i32)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let child: i32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            let parent = stat.rsplit(')').next()?.split_whitespace().nth(1)?;
            Some((child, parent.parse().ok()?))
        })
        .collect();
    let mut found = vec![pid];
    let mut i = 0;
    while i < found.len() {
        let of = found[i];
        found.extend(parents.iter().filter(|(_, p)| *p == of).map(|(c, _)| *c));
        i += 1;
    }
    found.split_off(1)
}

/// SIGTERM to the tool alone (as `kill PID` or a service manager sends
/// it, not to its group) while the bytes stream: the volume made there is
/// deleted, every virsh and ssh it started is gone, exit 143.
fn a_copy_terminated_alone_leaves_no_volume_and_no_child() -> Result<(), Failed> {
    let scratch = CopyScratch::new(256 << 20)?;
    let child = scratch
        .copy(&["--yes"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let landed = scratch.wait_for_bytes();
    let below = descendants(child.id() as i32);
    check(!below.is_empty(), || "no virsh under the tool".to_owned())?;
    // SAFETY: kill(2) of the child this test spawned.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let output = child.wait_with_output()?;
    check(output.status.code() == Some(143), || {
        format!(
            "{:?}: {}{}",
            output.status,
            stdout(&output),
            stderr(&output)
        )
    })?;
    assert_all_gone(&below);
    check(!scratch.copied().contains(COPY_ISO), || scratch.copied())?;
    check(!landed.exists(), || "the file is left".to_owned())?;
    Ok(())
}

/// Two `--fix copy --yes` of one ISO at once: one copies it; the other
/// finds the volume there (at its check, where the volume the first made
/// already has its full size, or at its own create) and deletes nothing;
/// the copy there has the source's bytes.
fn two_copies_at_once_one_wins_whole() -> Result<(), Failed> {
    let scratch = CopyScratch::new(32 << 20)?;
    let spawn = || {
        scratch
            .copy(&["--yes"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
    };
    let (first, second) = (spawn()?, spawn()?);
    let outputs = [first.wait_with_output()?, second.wait_with_output()?];
    let all = || {
        outputs
            .iter()
            .map(|o| format!("{:?}\n{}{}", o.status, stdout(o), stderr(o)))
            .collect::<Vec<_>>()
            .join("\n---\n")
    };
    let copied = outputs
        .iter()
        .filter(|o| o.status.code() == Some(0) && stdout(o).contains("\nok: copy "))
        .count();
    check(copied == 1, all)?;
    for output in &outputs {
        let text = stdout(output);
        let other_found_it = text.contains(": ok\n")
            || text.contains("already exists")
            || text.contains("cannot create the volume");
        check(text.contains("\nok: copy ") || other_found_it, all)?;
        check(!text.contains("was deleted"), all)?;
    }
    let source = sha256sum(&scratch.dir.join("source").join(COPY_ISO))?;
    let copy = sha256sum(&scratch.there.join(COPY_ISO))?;
    check(source == copy, || format!("source {source}, copy {copy}"))?;
    Ok(())
}
