//! The ISO library on the lab (`scripts/lab up`): `library --json`
//! against ground truth read exactly (the lab pool's directory, `vol-path`,
//! `domblklist`) for the lab's own pools and guests only, locally and over
//! ssh, whatever other pools the host has; uploads over `qemu+ssh://` into a second directory pool,
//! `lab-upload`, that each test makes under LAB_DIR and removes again;
//! an interrupted upload (at each moment) and a file that shrinks,
//! grows or is rewritten mid-upload leave no volume it created; the file
//! that is the volume itself is never replaced; two uploads of one name
//! at once leave the winner's bytes whole; `mount --upload` into a
//! scratch domain of this module's own (`lab-upload-vm`, never started); deletions refused while a lab guest holds the ISO, live or
//! only in its config, with no guest's XML changed. The lab guests'
//! drives and the `lab-isos` pool's ISOs are never changed: the refusals
//! on them run with `--dry-run` besides, so even a broken refusal would
//! delete nothing. Another developer's `bench-*` domains and pools may
//! come and go: nothing here counts domains or reads others' pools.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::Cases;
use crate::common::*;
use libtest_mimic::Failed;
use serde_json::Value;

pub fn cases() -> Cases {
    // The tests share the one `lab-upload` pool.
    cases!(Alone; library_json_matches_vol_list_and_domblklist, library_json_matches_over_ssh, upload_over_ssh_stores_the_files_bytes, an_inactive_pool_is_refused, a_pool_freed_behind_libvirts_back_takes_the_upload, an_interrupted_upload_leaves_no_volume, a_file_that_shrinks_mid_upload_leaves_no_volume, a_file_rewritten_or_grown_mid_upload_leaves_no_volume, the_volume_itself_is_never_replaced, a_failed_create_deletes_nothing, two_uploads_of_one_name_at_once_one_wins_whole, an_upload_interrupted_at_each_moment_says_what_it_did, a_mount_after_an_upload_that_fails_names_commands_that_work, the_readmes_library_recipes_run, delete_is_refused_while_held_live_or_in_the_config, a_foreign_pool_is_read_exactly_and_left_out_of_the_truth, a_volume_in_a_disk_or_floppy_is_held)
}

const POOL: &str = "lab-upload";

/// The `lab-upload` pool (or another a test names) over a directory of
/// its own; destroyed, undefined and removed when dropped.
struct UploadPool {
    name: &'static str,
    dir: PathBuf,
}

impl UploadPool {
    /// `lab-upload` under LAB_DIR, started (transient), or with `active`
    /// false only defined.
    fn new(active: bool) -> Self {
        Self::named(POOL, lab_dir().join("upload-test"), active)
    }

    fn named(name: &'static str, dir: PathBuf, active: bool) -> Self {
        // What a run that died may have left.
        drop(UploadPool {
            name,
            dir: dir.clone(),
        });
        std::fs::create_dir_all(&dir).unwrap();
        let target = dir.display().to_string();
        let made = if active {
            lab_virsh(&["pool-create-as", name, "dir", "--target", &target])
        } else {
            lab_virsh(&["pool-define-as", name, "dir", "--target", &target])
        };
        assert!(
            made.status.success(),
            "{}",
            String::from_utf8_lossy(&made.stderr)
        );
        UploadPool { name, dir }
    }

    /// The names of the volumes the pool lists, exactly: each row's path
    /// runs from its first `/` to the end of the line (virsh pads no last
    /// column), and in a directory pool a volume's name is its file name.
    fn volumes(&self) -> Vec<String> {
        let listing = lab_virsh(&["vol-list", "--pool", self.name]);
        String::from_utf8_lossy(&listing.stdout)
            .lines()
            .skip(2)
            .filter_map(|line| {
                let path = Path::new(&line[line.find('/')?..]);
                Some(path.file_name()?.to_str()?.to_owned())
            })
            .collect()
    }
}

impl Drop for UploadPool {
    fn drop(&mut self) {
        lab_virsh(&["pool-destroy", self.name]);
        lab_virsh(&["pool-undefine", self.name]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One drive of a lab guest: its device, its live and config sources.
type DriveSources = (String, Option<String>, Option<String>);

/// `(domain, target) → (device, live source, config source)` of every
/// drive of every lab guest, whatever its device, from `domblklist
/// --details` (live) and with `--inactive`.
fn lab_drives(uri: &str) -> BTreeMap<(String, String), DriveSources> {
    let sources = |args: &[&str]| -> BTreeMap<String, (String, String)> {
        let text = virsh(uri, args);
        text.lines()
            .skip(2)
            .filter_map(|line| {
                // Type, Device and Target hold no blank.
                let mut words = line.split_whitespace().skip(1);
                let device = words.next()?.to_owned();
                let target = words.next()?.to_owned();
                // The Source column runs to the end of the line, spaces
                // and all (virsh pads no last column); `-` is an empty drive.
                let source = line[line.find('/')?..].to_owned();
                Some((target, (device, source)))
            })
            .collect()
    };
    let mut drives = BTreeMap::new();
    for guest in LAB_GUESTS {
        let running = virsh(uri, &["domstate", "--domain", guest]).trim() == "running";
        let live = if running {
            sources(&["domblklist", "--domain", guest, "--details"])
        } else {
            BTreeMap::new()
        };
        let config = sources(&["domblklist", "--domain", guest, "--details", "--inactive"]);
        for (target, (device, _)) in live.iter().chain(&config) {
            let source = |view: &BTreeMap<String, (String, String)>| {
                view.get(target).map(|(_, source)| source.clone())
            };
            drives.insert(
                (guest.to_owned(), target.clone()),
                (device.clone(), source(&live), source(&config)),
            );
        }
    }
    drives
}

fn library_json(uri: &str) -> Result<Vec<Value>, Failed> {
    let output = run(tool().args(["-c", uri, "library", "--json"]));
    check(output.status.success(), || stderr(&output))?;
    Ok(serde_json::from_str(&stdout(&output))?)
}

/// The lab's own storage pools: all the ground truth covers. The host may
/// have others (another admin's, another test's), none of its business.
const LAB_POOLS: [&str; 1] = ["lab-isos"];

/// Every ISO of the lab's own pools as (pool, name, path), read exactly:
/// the names from the pool's directory (no table whose padding a parse
/// would trim), each path from `vol-path` (its one line, blanks and all),
/// ISOs by a `.iso` name or the ISO 9660 signature, as libvirt sees them.
fn lab_pool_isos(uri: &str) -> Result<Vec<(String, String, String)>, Failed> {
    let mut truth = Vec::new();
    for pool in LAB_POOLS {
        let xml = virsh(uri, &["pool-dumpxml", "--pool", pool]);
        let document = roxmltree::Document::parse(&xml)?;
        let dir = document
            .descendants()
            .find(|node| node.has_tag_name("path"))
            .and_then(|node| node.text())
            .ok_or("the pool's target path")?
            .to_owned();
        for file in std::fs::read_dir(&dir)? {
            let file = file?;
            let name = file.file_name().into_string().map_err(|_| "a UTF-8 name")?;
            let bytes = std::fs::read(file.path())?;
            let signed = bytes.get(32769..32774) == Some(b"CD001");
            if !(name.to_ascii_lowercase().ends_with(".iso") || signed) {
                continue;
            }
            let path = virsh(uri, &["vol-path", "--pool", pool, "--vol", &name]);
            let path = path.lines().next().ok_or("vol-path prints a path")?;
            truth.push((pool.to_owned(), name, path.to_owned()));
        }
    }
    Ok(truth)
}

fn library_json_matches_vol_list_and_domblklist() -> Result<(), Failed> {
    library_matches_ground_truth(LAB_URI)
}

fn library_json_matches_over_ssh() -> Result<(), Failed> {
    library_matches_ground_truth(&lab_ssh_uri())
}

fn library_matches_ground_truth(uri: &str) -> Result<(), Failed> {
    let entries = library_json(uri)?;
    // Every ISO of the lab's pools, and no other entry of theirs.
    let mut truth = lab_pool_isos(uri)?;
    truth.sort();
    let mut listed: Vec<(String, String, String)> = entries
        .iter()
        .filter(|e| LAB_POOLS.iter().any(|pool| e["pool"] == *pool))
        .map(|e| {
            (
                e["pool"].as_str().unwrap_or_default().to_owned(),
                e["volume"].as_str().unwrap_or_default().to_owned(),
                e["path"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    listed.sort();
    check(listed == truth, || {
        format!("library {listed:?}\nvol-list {truth:?}")
    })?;
    // Every lab guest's drive holding media, whatever its device, is a
    // holder of that path's entry, with its device, live and config as
    // domblklist says.
    for ((guest, target), (device, live, config)) in lab_drives(uri) {
        for path in live.iter().chain(&config) {
            let entry = entries
                .iter()
                .find(|e| e["path"] == path.as_str())
                .ok_or_else(|| format!("no library entry for {path} ({guest} {target})"))?;
            let holder = entry["holders"]
                .as_array()
                .and_then(|holders| {
                    holders
                        .iter()
                        .find(|h| h["domain"] == guest.as_str() && h["target"] == target.as_str())
                })
                .ok_or_else(|| format!("{guest} {target} not among {entry}"))?;
            check(
                holder["device"] == device.as_str()
                    && holder["live"] == (live.as_ref() == Some(path))
                    && holder["config"] == (config.as_ref() == Some(path)),
                || format!("{guest} {target}: {holder} vs live {live:?} config {config:?}"),
            )?;
            check(entry["missing"] == false, || format!("{entry}"))?;
        }
    }
    Ok(())
}

fn upload_over_ssh_stores_the_files_bytes() -> Result<(), Failed> {
    let pool = UploadPool::new(true);
    let uri = lab_ssh_uri();
    let source = lab_iso("install-a.iso");
    let output = run(tool().args(["-c", &uri, "upload", &source, "--pool", POOL, "--verify"]));
    check(output.status.success(), || stderr(&output))?;
    check(stdout(&output).contains("read back: SHA-256"), || {
        stdout(&output)
    })?;
    // No progress bar into a pipe.
    check(stderr(&output).is_empty(), || stderr(&output))?;
    let stored = std::fs::read(pool.dir.join("install-a.iso"))?;
    check(stored == std::fs::read(&source)?, || {
        "the volume's bytes differ from the file's".to_owned()
    })?;
    // Listed, unused, over ssh too.
    let unused = run(tool().args(["-c", &uri, "library", "--unused", "--json"]));
    let unused: Vec<Value> = serde_json::from_str(&stdout(&unused))?;
    check(
        unused
            .iter()
            .any(|e| e["pool"] == POOL && e["volume"] == "install-a.iso"),
        || format!("{unused:?}"),
    )?;
    // A second upload of the name is refused, --replace replaces it.
    let again = run(tool().args(["-c", &uri, "upload", &source, "--pool", POOL]));
    check(again.status.code() == Some(1), || stdout(&again))?;
    check(stderr(&again).contains("already exists"), || stderr(&again))?;
    let replaced = run(tool().args(["-c", &uri, "upload", &source, "--pool", POOL, "--replace"]));
    check(replaced.status.success(), || stderr(&replaced))?;
    // An unused volume is deleted; then the pool has none.
    let deleted = run(tool().args([
        "-c",
        &uri,
        "delete-iso",
        &format!("{POOL}/install-a.iso"),
        "--yes",
    ]));
    check(deleted.status.success(), || stderr(&deleted))?;
    check(pool.volumes().is_empty(), || {
        format!("{:?}", pool.volumes())
    })?;
    Ok(())
}

fn an_inactive_pool_is_refused() -> Result<(), Failed> {
    let pool = UploadPool::new(false);
    let output = run(tool().args([
        "-c",
        &lab_ssh_uri(),
        "upload",
        &lab_iso("install-a.iso"),
        "--pool",
        POOL,
    ]));
    check(output.status.code() == Some(1), || stdout(&output))?;
    check(
        stderr(&output).contains("storage pool 'lab-upload' on")
            && stderr(&output).contains("is inactive"),
        || stderr(&output),
    )?;
    check(std::fs::read_dir(&pool.dir)?.next().is_none(), || {
        "a refused upload wrote a file".to_owned()
    })?;
    Ok(())
}

/// A tmpfs of `size` mounted on `dir` (made for it), unmounted and
/// removed when dropped: a filesystem whose free bytes a test can fill.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(dir: PathBuf, size: &str) -> Result<Self, Failed> {
        let _ = std::process::Command::new("umount").arg(&dir).output();
        std::fs::create_dir_all(&dir)?;
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "lab-room"])
            .arg(&dir)
            .output()?;
        check(mounted.status.success(), || {
            String::from_utf8_lossy(&mounted.stderr).into_owned()
        })?;
        Ok(Tmpfs { dir })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.dir).output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// libvirt's pool figures are those of its last refresh: a pool of 8 MiB
/// that held 6 MB when refreshed, then emptied behind libvirt's back (the
/// admin's `rm`), still says 2 MB free. A 4 MB upload is taken (the pool
/// refreshed before refusing), where it was refused with the stale
/// figure.
fn a_pool_freed_behind_libvirts_back_takes_the_upload() -> Result<(), Failed> {
    const ROOM: &str = "lab-room";
    let tmpfs = Tmpfs::mount(lab_dir().join("room-test"), "8m")?;
    let pool = UploadPool::named(ROOM, tmpfs.dir.clone(), true);
    let fill = pool.dir.join("fill.bin");
    std::fs::write(&fill, vec![0u8; 6_000_000])?;
    check(lab_virsh(&["pool-refresh", ROOM]).status.success(), || {
        "pool-refresh failed".to_owned()
    })?;
    std::fs::remove_file(&fill)?;
    let files = temp_dir("room");
    let iso = iso_file(&files, "four.iso", 4_000_000);
    let output = run(tool()
        .args(["-c", LAB_URI, "upload"])
        .arg(&iso)
        .args(["--pool", ROOM]));
    std::fs::remove_dir_all(&files)?;
    check(output.status.success(), || stderr(&output))?;
    check(pool.volumes() == ["four.iso"], || {
        format!("{:?}", pool.volumes())
    })?;
    lab_virsh(&["vol-delete", "--pool", ROOM, "four.iso"]);
    Ok(())
}

/// Starts an upload of a 1 GiB file over ssh (about ten seconds on the
/// lab) and returns once its volume exists.
fn upload_under_way(file: &Path) -> std::process::Child {
    let child = upload_command(&lab_ssh_uri(), None, file, POOL)
        .spawn()
        .unwrap();
    let name = file.file_name().unwrap().to_str().unwrap().to_owned();
    poll(|| {
        lab_virsh(&["vol-info", "--pool", POOL, "--vol", &name])
            .status
            .success()
            .then_some(())
    });
    child
}

/// A file's SHA-256 in hex, as `sha256sum` (coreutils) prints it: the
/// ground truth is not the tool's own hashing.
fn sha256_hex(file: &Path) -> Result<String, Failed> {
    let output = std::process::Command::new("sha256sum").arg(file).output()?;
    let text = String::from_utf8(output.stdout)?;
    Ok(text
        .split_whitespace()
        .next()
        .ok_or("a checksum")?
        .to_owned())
}

/// Returns once bytes of the upload under way have reached volume
/// `name`, not merely once it exists: a test of a change mid-upload waits
/// for it, since a change before the first byte is the other fault
/// ("changed since it was checked … nothing was sent").
fn bytes_arrive(name: &str) {
    poll(|| {
        let info = lab_virsh(&["vol-info", "--bytes", "--pool", POOL, "--vol", name]);
        String::from_utf8_lossy(&info.stdout)
            .lines()
            .find_map(|line| line.strip_prefix("Allocation:"))
            .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
            .filter(|allocated| *allocated > 0)
            .map(drop)
    });
}

fn an_interrupted_upload_leaves_no_volume() -> Result<(), Failed> {
    let pool = UploadPool::new(true);
    let dir = temp_dir("lab-interrupted");
    let file = iso_file(&dir, "big.iso", 1 << 30);
    let child = upload_under_way(&file);
    signal_group(&child, libc::SIGINT);
    let output = child.wait_with_output()?;
    check(output.status.code() == Some(130), || {
        format!("{:?}: {}", output.status, stderr(&output))
    })?;
    check(
        stderr(&output)
            .contains("interrupted; the volume lab-upload/big.iso it had created was deleted"),
        || stderr(&output),
    )?;
    check(pool.volumes().is_empty(), || {
        format!("{:?}", pool.volumes())
    })?;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

fn a_file_that_shrinks_mid_upload_leaves_no_volume() -> Result<(), Failed> {
    let pool = UploadPool::new(true);
    let dir = temp_dir("lab-shrinks");
    let file = iso_file(&dir, "shrinks.iso", 1 << 30);
    let child = upload_under_way(&file);
    bytes_arrive("shrinks.iso");
    // Unwrapped: the child is waited for below on every path.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .and_then(|open| open.set_len(64 * 1024))
        .expect("the file shrinks");
    let output = child.wait_with_output()?;
    check(output.status.code() == Some(1), || stderr(&output))?;
    check(
        stderr(&output).contains("shrank during the upload")
            && stderr(&output).contains("it had created was deleted"),
        || stderr(&output),
    )?;
    check(pool.volumes().is_empty(), || {
        format!("{:?}", pool.volumes())
    })?;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

fn delete_is_refused_while_held_live_or_in_the_config() -> Result<(), Failed> {
    let xml = || {
        LAB_GUESTS
            .iter()
            .map(|guest| {
                (
                    virsh(LAB_URI, &["dumpxml", "--domain", guest]),
                    virsh(LAB_URI, &["dumpxml", "--inactive", "--domain", guest]),
                )
            })
            .collect::<Vec<_>>()
    };
    let before = xml();
    for uri in [LAB_URI.to_owned(), lab_ssh_uri()] {
        // lab-agent holds install-a.iso live and in its config; lab-off,
        // shut off, holds tools-b.iso in its config only.
        for (iso, holder) in [
            (
                "lab-isos/install-a.iso",
                "lab-agent hdc cdrom (live, config)",
            ),
            ("lab-isos/tools-b.iso", "lab-off hdc cdrom (config)"),
        ] {
            let output = run(tool().args(["-c", &uri, "delete-iso", iso, "--yes", "--dry-run"]));
            check(output.status.code() == Some(1), || stdout(&output))?;
            check(stderr(&output).contains("not deleted"), || stderr(&output))?;
            check(stdout(&output).contains(holder), || stdout(&output))?;
            check(!stdout(&output).contains("vol-delete"), || stdout(&output))?;
        }
    }
    // By path too, on both connections at once.
    let path = lab_iso("install-a.iso");
    let output = run(tool().args([
        "-c",
        LAB_URI,
        "-c",
        &lab_ssh_uri(),
        "delete-iso",
        &path,
        "--yes",
        "--dry-run",
    ]));
    check(output.status.code() == Some(1), || stdout(&output))?;
    check(
        stdout(&output)
            .matches("lab-agent hdc cdrom (live, config)")
            .count()
            == 2,
        || stdout(&output),
    )?;
    check(std::path::Path::new(&path).exists(), || {
        "the ISO is gone".to_owned()
    })?;
    check(before == xml(), || {
        "a refusal changed a guest's XML".to_owned()
    })?;
    Ok(())
}

/// The guide's (docs/guide.md) library recipes, as written, over ssh into `lab-upload`:
/// the ISO distributed and read back, listed unused, then deleted.
fn the_readmes_library_recipes_run() -> Result<(), Failed> {
    let pool = UploadPool::new(true);
    let readme = std::fs::read_to_string(root().join("docs/guide.md"))?;
    let block = readme
        .split_once("<!-- library recipes: begin -->")
        .and_then(|(_, rest)| rest.split_once("<!-- library recipes: end -->"))
        .ok_or("the library recipes block")?
        .0;
    let commands: Vec<&str> = block
        .lines()
        .filter(|line| line.starts_with("dismount_iso_qemu "))
        .collect();
    check(commands.len() == 3, || block.to_owned())?;
    let dir = temp_dir("lab-recipes");
    let iso = iso_file(&dir, "recipe.iso", 1024 * 1024);
    let hash = sha256_hex(&iso)?;
    std::fs::write(dir.join("SHA256SUMS"), format!("{hash}  recipe.iso\n"))?;
    std::fs::write(dir.join("hosts"), format!("{}\n", lab_ssh_uri()))?;
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_dismount_iso_qemu"))
        .parent()
        .ok_or("the binary's directory")?
        .to_owned();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH")?);
    let recipe = |command: &str| {
        run(std::process::Command::new("bash")
            .args(["-o", "pipefail", "-c", command])
            .current_dir(&dir)
            .env("PATH", &path)
            .env("HOSTS", dir.join("hosts"))
            .env("ISO", &iso)
            .env("POOL", POOL)
            .env_remove("LIBVIRT_URI"))
    };
    let uploaded = recipe(commands[0]);
    check(uploaded.status.success(), || stderr(&uploaded))?;
    check(stdout(&uploaded).contains("read back: SHA-256"), || {
        stdout(&uploaded)
    })?;
    check(pool.volumes() == ["recipe.iso"], || {
        format!("{:?}", pool.volumes())
    })?;
    let unused = recipe(commands[1]);
    check(unused.status.success(), || stderr(&unused))?;
    check(stdout(&unused).contains("recipe.iso"), || stdout(&unused))?;
    let deleted = recipe(commands[2]);
    check(deleted.status.success(), || stderr(&deleted))?;
    check(
        stdout(&deleted).contains("ok: delete volume lab-upload/recipe.iso"),
        || stdout(&deleted),
    )?;
    check(pool.volumes().is_empty(), || {
        format!("{:?}", pool.volumes())
    })?;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

/// Another admin's pool on the lab's host, its own name ending in a
/// blank, with names `vol-list` pads or that look like flags: a blank
/// before and after, `--help` (an ISO by its content only), quotes and
/// backticks. The ground truth covers the
/// lab's own pools and guests and agrees with `library --json`, which
/// lists the foreign volumes too, each name and path exactly.
fn a_foreign_pool_is_read_exactly_and_left_out_of_the_truth() -> Result<(), Failed> {
    let dir = temp_dir("lab-foreign-pool");
    let pool = UploadPool::named("lab-test-foreign ", dir.join("pool"), true);
    let names = [
        " lead-space.iso",
        "trail-space.iso ",
        "--help",
        "it's `q` \"x\".iso",
    ];
    for name in names {
        iso_file(&pool.dir, name, 64 * 1024);
    }
    lab_virsh(&["pool-refresh", "--pool", pool.name]);
    library_matches_ground_truth(LAB_URI)?;
    library_matches_ground_truth(&lab_ssh_uri())?;
    let mut foreign: Vec<(String, String)> = library_json(LAB_URI)?
        .iter()
        .filter(|e| e["pool"] == pool.name)
        .map(|e| {
            let field = |key: &str| e[key].as_str().unwrap_or_default().to_owned();
            (field("volume"), field("path"))
        })
        .collect();
    foreign.sort();
    let mut expected: Vec<(String, String)> = names
        .iter()
        .map(|name| (name.to_string(), pool.dir.join(name).display().to_string()))
        .collect();
    expected.sort();
    check(foreign == expected, || {
        format!("{foreign:?}\nwanted {expected:?}")
    })?;
    drop(pool);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

/// lab-off's persistent config as it was; defined again when dropped.
struct ConfigKept {
    file: PathBuf,
    xml: String,
}

impl ConfigKept {
    fn new(file: PathBuf) -> Self {
        let xml = virsh(LAB_URI, &["dumpxml", "--inactive", "--domain", "lab-off"]);
        std::fs::write(&file, &xml).unwrap();
        ConfigKept { file, xml }
    }
}

impl Drop for ConfigKept {
    fn drop(&mut self) {
        lab_virsh(&["define", "--file", self.file.to_str().unwrap()]);
    }
}

/// A volume of a lab pool attached to shut-off lab-off's config as a
/// disk, another in a floppy: both held (device and config only), neither
/// unused, deleted nor replaced; lab-off's config restored exactly.
fn a_volume_in_a_disk_or_floppy_is_held() -> Result<(), Failed> {
    const HOLDERS: &str = "lab-test-holders";
    let dir = temp_dir("lab-holders");
    let pool = UploadPool::named(HOLDERS, dir.join("pool"), true);
    let disk = iso_file(&pool.dir, "booted.iso", 64 * 1024);
    let floppy = iso_file(&pool.dir, "floppy.iso", 64 * 1024);
    lab_virsh(&["pool-refresh", "--pool", HOLDERS]);
    let kept = ConfigKept::new(dir.join("lab-off.xml"));
    for (file, target, device) in [(&disk, "vdz", "disk"), (&floppy, "fda", "floppy")] {
        let attached = lab_virsh(&[
            "attach-disk",
            "--domain",
            "lab-off",
            "--source",
            file.to_str().unwrap(),
            "--target",
            target,
            "--type",
            device,
            "--config",
        ]);
        check(attached.status.success(), || {
            String::from_utf8_lossy(&attached.stderr).into_owned()
        })?;
    }
    library_matches_ground_truth(LAB_URI)?;
    let entries = library_json(LAB_URI)?;
    for (name, target, device) in [
        ("booted.iso", "vdz", "disk"),
        ("floppy.iso", "fda", "floppy"),
    ] {
        let entry = entries
            .iter()
            .find(|e| e["pool"] == HOLDERS && e["volume"] == name)
            .ok_or_else(|| format!("no {name} in {entries:?}"))?;
        let wanted = serde_json::json!([{"domain": "lab-off", "target": target,
            "device": device, "live": false, "config": true}]);
        check(entry["holders"] == wanted, || format!("{entry}"))?;
    }
    let unused = run(tool().args(["-c", LAB_URI, "library", "--unused", "--json"]));
    let unused: Vec<Value> = serde_json::from_str(&stdout(&unused))?;
    check(!unused.iter().any(|e| e["pool"] == HOLDERS), || {
        format!("{unused:?}")
    })?;
    let by_path = floppy.display().to_string();
    for (iso, holder) in [
        (format!("{HOLDERS}/booted.iso"), "lab-off vdz disk (config)"),
        (by_path, "lab-off fda floppy (config)"),
    ] {
        let output = run(tool().args(["-c", LAB_URI, "delete-iso", &iso, "--yes"]));
        check(output.status.code() == Some(1), || stdout(&output))?;
        check(stderr(&output).lines().count() == 1, || stderr(&output))?;
        check(stdout(&output).contains(holder), || stdout(&output))?;
    }
    let new = iso_file(&dir, "new.iso", 128 * 1024);
    let replaced = run(tool().args(["-c", LAB_URI, "upload"]).arg(&new).args([
        "--pool",
        HOLDERS,
        "--name",
        "booted.iso",
        "--replace",
    ]));
    check(replaced.status.code() == Some(1), || stdout(&replaced))?;
    check(stderr(&replaced).contains("not replaced"), || {
        stderr(&replaced)
    })?;
    for file in [&disk, &floppy] {
        check(std::fs::metadata(file)?.len() == 64 * 1024, || {
            format!("{} was changed", file.display())
        })?;
    }
    let before = kept.xml.clone();
    drop(kept);
    let after = virsh(LAB_URI, &["dumpxml", "--inactive", "--domain", "lab-off"]);
    check(after == before, || {
        "lab-off's config is not restored".to_owned()
    })?;
    drop(pool);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

/// `upload FILE --pool lab-upload` on the local lab through the fake
/// virsh that passes every line to the real one but hangs, waits or
/// answers late where `env` says (tests/support/hung-agent-virsh), in a
/// process group of its own, its stdout and stderr piped.
fn faulty_upload(
    file: &Path,
    extra: &[&str],
    env: &[(&str, &Path)],
    vars: &[(&str, &str)],
) -> std::process::Child {
    let mut command = upload_command(LAB_URI, Some("hung-agent-virsh"), file, POOL);
    command.args(extra);
    for (key, path) in env {
        command.env(key, path);
    }
    for (key, value) in vars {
        command.env(key, value);
    }
    command.spawn().unwrap()
}

/// Waits until `mark` holds a line with `word`.
fn marked(mark: &Path, word: &str) {
    poll(|| {
        std::fs::read_to_string(mark)
            .ok()
            .filter(|text| text.lines().any(|line| line.contains(word)))
            .map(drop)
    });
}

fn volume_exists(name: &str) -> bool {
    lab_virsh(&["vol-info", "--pool", POOL, "--vol", name])
        .status
        .success()
}

/// A 1 GiB file rewritten in place (one byte) or grown (a download still
/// in progress) during its upload: the upload fails and leaves no volume.
/// Before, what was read was sent and reported ok.
fn a_file_rewritten_or_grown_mid_upload_leaves_no_volume() -> Result<(), Failed> {
    let pool = UploadPool::new(true);
    let dir = temp_dir("lab-moving");
    for (name, change, said) in [
        (
            "rewritten.iso",
            (|file: &Path| {
                use std::os::unix::fs::FileExt;
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(file)?
                    .write_all_at(b"x", 5)
            }) as fn(&Path) -> std::io::Result<()>,
            "changed during the upload: it was modified",
        ),
        (
            "grown.iso",
            |file: &Path| {
                use std::io::Write;
                std::fs::OpenOptions::new()
                    .append(true)
                    .open(file)?
                    .write_all(&[0; 4096])
            },
            "changed during the upload: its size went from 1073741824 to 1073745920 bytes",
        ),
    ] {
        let file = iso_file(&dir, name, 1 << 30);
        let child = upload_under_way(&file);
        bytes_arrive(name);
        // Unwrapped: the child is waited for below on every path.
        change(&file).expect("the file changes");
        let output = child.wait_with_output()?;
        check(output.status.code() == Some(1), || stderr(&output))?;
        check(
            stderr(&output).contains(said)
                && stderr(&output).contains("it had created was deleted"),
            || stderr(&output),
        )?;
        check(pool.volumes().is_empty(), || {
            format!("{:?}", pool.volumes())
        })?;
        std::fs::remove_file(&file)?;
    }
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

/// `upload ./x.iso --replace` run in the pool's directory, locally and
/// over ssh (a remote URI whose host is this machine): refused, the file
/// untouched. Before, the volume was deleted and made anew, and the now
/// empty file uploaded into it, reported ok with `--sha256` and
/// `--verify`: the ISO became zeros.
fn the_volume_itself_is_never_replaced() -> Result<(), Failed> {
    let pool = UploadPool::new(true);
    let file = pool.dir.join("self.iso");
    std::fs::copy(lab_iso("install-a.iso"), &file)?;
    let refreshed = lab_virsh(&["pool-refresh", POOL]);
    check(refreshed.status.success(), || {
        String::from_utf8_lossy(&refreshed.stderr).into_owned()
    })?;
    let before = std::fs::read(&file)?;
    let hash = sha256_hex(&file)?;
    for uri in [LAB_URI.to_owned(), lab_ssh_uri()] {
        let output = run(tool()
            .args([
                "-c",
                &uri,
                "upload",
                "./self.iso",
                "--pool",
                POOL,
                "--replace",
            ])
            .args(["--sha256", &hash, "--verify"])
            .current_dir(&pool.dir));
        check(output.status.code() == Some(1), || {
            format!("{}{}", stdout(&output), stderr(&output))
        })?;
        check(
            stderr(&output).contains("'./self.iso' is the volume lab-upload/self.iso itself on")
                && stderr(&output).lines().count() == 1,
            || stderr(&output),
        )?;
        check(std::fs::read(&file)? == before, || {
            format!("{uri}: the file's bytes changed")
        })?;
    }
    check(pool.volumes() == ["self.iso"], || {
        format!("{:?}", pool.volumes())
    })?;
    Ok(())
}

/// Another upload's volume of the same name made between this one's look
/// for the name and its `vol-create-as` (held back by the fake virsh
/// until the other is done): this one fails in one line and deletes
/// nothing. Before, its clean-up deleted the other's volume.
fn a_failed_create_deletes_nothing() -> Result<(), Failed> {
    let pool = UploadPool::new(true);
    let dir = temp_dir("lab-create-race");
    std::fs::create_dir_all(dir.join("first"))?;
    std::fs::create_dir_all(dir.join("second"))?;
    let winner = dir.join("first/same.iso");
    std::fs::copy(lab_iso("install-a.iso"), &winner)?;
    let loser = dir.join("second/same.iso");
    std::fs::copy(lab_iso("tools-b.iso"), &loser)?;
    let hash = sha256_hex(&winner)?;
    let (mark, go) = (dir.join("mark"), dir.join("go"));
    let held = faulty_upload(
        &loser,
        &[],
        &[("HUNG_MARK", &mark), ("WAIT_FOR", &go)],
        &[("WAIT_COMMAND", "vol-create-as")],
    );
    marked(&mark, "vol-create-as");
    let first = run(tool()
        .args(["-c", LAB_URI, "upload"])
        .arg(&winner)
        .args(["--pool", POOL, "--sha256", &hash]));
    // Unwrapped: the held upload is waited for below on every path.
    std::fs::write(&go, b"").expect("the gate opens");
    let second = held.wait_with_output()?;
    check(first.status.success(), || stderr(&first))?;
    check(
        stdout(&first).contains("size checked, the bytes sent match --sha256"),
        || stdout(&first),
    )?;
    check(second.status.code() == Some(1), || stderr(&second))?;
    check(
        stderr(&second).lines().count() == 1
            && stderr(&second)
                .contains("cannot create the volume lab-upload/same.iso on qemu:///system (nothing was deleted)"),
        || stderr(&second),
    )?;
    check(
        std::fs::read(pool.dir.join("same.iso"))? == std::fs::read(&winner)?,
        || "the winner's volume is not its file's bytes".to_owned(),
    )?;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

/// Two uploads of one name started at once, each of its own 64 MiB file:
/// exactly one succeeds, the other fails in one line, and the volume
/// holds the winner's bytes whole.
fn two_uploads_of_one_name_at_once_one_wins_whole() -> Result<(), Failed> {
    use std::os::unix::fs::FileExt;
    let pool = UploadPool::new(true);
    let dir = temp_dir("lab-two-at-once");
    let mut files = Vec::new();
    for (which, byte) in [("a", b'a'), ("b", b'b')] {
        std::fs::create_dir_all(dir.join(which))?;
        let file = iso_file(&dir.join(which), "twice.iso", 64 << 20);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&file)?
            .write_all_at(&[byte; 4096], 1 << 20)?;
        files.push(file);
    }
    let children: Vec<std::process::Child> = files
        .iter()
        .map(|file| {
            upload_command(&lab_ssh_uri(), None, file, POOL)
                .arg("--verify")
                .spawn()
                .unwrap()
        })
        .collect();
    let outputs = children
        .into_iter()
        .map(std::process::Child::wait_with_output)
        .collect::<Result<Vec<_>, _>>()?;
    let won: Vec<usize> = (0..2).filter(|i| outputs[*i].status.success()).collect();
    let report = || {
        outputs
            .iter()
            .map(|o| format!("{:?}: {}{}", o.status, stdout(o), stderr(o)))
            .collect::<Vec<_>>()
            .join("\n")
    };
    check(won.len() == 1, report)?;
    let lost = &outputs[1 - won[0]];
    check(
        lost.status.code() == Some(1) && stderr(lost).lines().count() == 1,
        report,
    )?;
    check(
        std::fs::read(pool.dir.join("twice.iso"))? == std::fs::read(&files[won[0]])?,
        || "the volume is not the winner's file".to_owned(),
    )?;
    // One host listed twice, under two URIs (locally and over ssh): one
    // upload wins, the other is one line, exit 3, the volume whole.
    lab_virsh(&["vol-delete", "--pool", POOL, "--vol", "twice.iso"]);
    let output = run(tool()
        .args(["-c", LAB_URI, "-c", &lab_ssh_uri(), "upload"])
        .arg(&files[0])
        .args(["--pool", POOL, "--verify"]));
    check(output.status.code() == Some(3), || described(&output))?;
    check(
        stdout(&output).matches("ok: uploaded").count() == 1
            && stderr(&output).lines().count() == 1,
        || format!("{}{}", stdout(&output), stderr(&output)),
    )?;
    check(
        std::fs::read(pool.dir.join("twice.iso"))? == std::fs::read(&files[0])?,
        || "the volume is not the file".to_owned(),
    )?;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

/// A moment an upload is interrupted at: what it is, the fake virsh's
/// variables that hold it, the upload's extra arguments, what the tool
/// says, and whether a volume is left.
type Moment<'a> = (
    &'a str,
    &'a [(&'a str, &'a str)],
    &'a [&'a str],
    &'a str,
    bool,
);

/// Ctrl-C at each moment of an upload (the fake virsh holds the moment):
/// the rule is that an upload is complete once every check passed; before
/// that the volume this run created is deleted and the tool says so
/// (130); a create that a signal cut short is not deleted, since the
/// volume may be another's, and the tool says whether one is there.
/// Before, Ctrl-C during the size check exited 130 saying nothing and
/// kept the volume.
fn an_upload_interrupted_at_each_moment_says_what_it_did() -> Result<(), Failed> {
    let pool = UploadPool::new(true);
    let dir = temp_dir("lab-moments");
    let file = iso_file(&dir, "moment.iso", 4 << 20);
    let deleted = "interrupted; the volume lab-upload/moment.iso it had created was deleted";
    let cases: [Moment; 7] = [
        (
            "the pool's check, before anything",
            &[("HUNG_COMMAND", "pool-info")],
            &[],
            "interrupted before anything was changed",
            false,
        ),
        (
            "the deletion of the volume --replace replaces (held before it is sent)",
            &[("HUNG_COMMAND", "vol-delete")],
            &["--replace"],
            "interrupted while the volume lab-upload/moment.iso it replaces (--replace) was \
             being deleted: it may be gone; nothing was uploaded",
            true,
        ),
        (
            "the size check, after the bytes went out",
            &[("HUNG_COMMAND", "vol-info"), ("HUNG_AFTER", "vol-upload")],
            &[],
            deleted,
            false,
        ),
        (
            "--verify's read-back",
            &[("HUNG_COMMAND", "vol-download")],
            &["--verify"],
            deleted,
            false,
        ),
        (
            "the path's look-up",
            &[("HUNG_COMMAND", "vol-path")],
            &[],
            deleted,
            false,
        ),
        (
            "the create, not yet made",
            &[("HUNG_COMMAND", "vol-create-as")],
            &[],
            "interrupted while creating the volume lab-upload/moment.iso: none was made",
            false,
        ),
        (
            "the create, made but not answered",
            &[("LATE_COMMAND", "vol-create-as")],
            &[],
            "interrupted while creating the volume lab-upload/moment.iso: it exists now, empty \
             if this run made it, and is left as it is",
            true,
        ),
    ];
    for (moment, vars, extra, said, left) in cases {
        if extra.contains(&"--replace") {
            std::fs::copy(&file, pool.dir.join("moment.iso"))?;
            lab_virsh(&["pool-refresh", POOL]);
        }
        let mark = dir.join("mark");
        let _ = std::fs::remove_file(&mark);
        let child = faulty_upload(&file, extra, &[("HUNG_MARK", &mark)], vars);
        if vars.iter().any(|(key, _)| *key == "LATE_COMMAND") {
            poll(|| volume_exists("moment.iso").then_some(()));
        } else {
            marked(&mark, vars[0].1);
        }
        signal_group(&child, libc::SIGINT);
        let output = child.wait_with_output()?;
        check(output.status.code() == Some(130), || {
            format!("{moment}: {:?}: {}", output.status, stderr(&output))
        })?;
        check(stderr(&output).contains(said), || {
            format!("{moment}: {}", stderr(&output))
        })?;
        check(!stdout(&output).contains("ok:"), || stdout(&output))?;
        check(
            pool.volumes()
                == if left {
                    vec!["moment.iso".to_owned()]
                } else {
                    vec![]
                },
            || format!("{moment}: {:?}", pool.volumes()),
        )?;
        if left {
            lab_virsh(&["vol-delete", "--pool", POOL, "--vol", "moment.iso"]);
        }
    }
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

/// A shut-off domain of this module's own with one empty CD-ROM (hdc),
/// defined on the lab and never started; undefined when dropped.
struct ScratchVm;

const SCRATCH_VM: &str = "lab-upload-vm";

impl ScratchVm {
    fn new() -> Self {
        drop(ScratchVm);
        let dir = temp_dir("lab-scratch-vm");
        let xml = dir.join("domain.xml");
        std::fs::write(
            &xml,
            format!(
                "<domain type='qemu'><name>{SCRATCH_VM}</name><memory unit='KiB'>65536</memory>\
                 <os><type arch='x86_64'>hvm</type></os><devices>\
                 <emulator>/usr/bin/qemu-system-x86_64</emulator>\
                 <disk type='file' device='cdrom'><driver name='qemu' type='raw'/>\
                 <target dev='hdc' bus='ide'/><readonly/></disk></devices></domain>"
            ),
        )
        .unwrap();
        let defined = lab_virsh(&["define", "--file", xml.to_str().unwrap()]);
        assert!(
            defined.status.success(),
            "{}",
            String::from_utf8_lossy(&defined.stderr)
        );
        std::fs::remove_dir_all(&dir).unwrap();
        ScratchVm
    }

    /// What its hdc holds in its config.
    fn cdrom(&self) -> String {
        virsh(
            LAB_URI,
            &["domblklist", "--domain", SCRATCH_VM, "--inactive"],
        )
        .lines()
        .find(|line| line.trim_start().starts_with("hdc"))
        .map(|line| line.trim_start()[3..].trim().to_owned())
        .unwrap_or_default()
    }
}

impl Drop for ScratchVm {
    fn drop(&mut self) {
        lab_virsh(&["undefine", "--domain", SCRATCH_VM]);
    }
}

/// The text between "`" after `after` and the next "`" in `text`.
fn quoted_after<'t>(text: &'t str, after: &str) -> Option<&'t str> {
    let rest = &text[text.find(after)? + after.len()..];
    let rest = &rest[rest.find('`')? + 1..];
    Some(&rest[..rest.find('`')?])
}

/// `mount DOMAIN --upload FILE --pool POOL` whose mount fails after the
/// upload (its `change-media` hangs past `--timeout`), and one a Ctrl-C
/// ends after the upload: each says the ISO stays uploaded, with a mount
/// command and a delete command that work (run here as printed). Before,
/// nothing was said, and a retry of the mount was told to pass
/// `--replace`, which `mount` rejects.
fn a_mount_after_an_upload_that_fails_names_commands_that_work() -> Result<(), Failed> {
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    let pool = UploadPool::new(true);
    let vm = ScratchVm::new();
    let dir = temp_dir("lab-mount-upload");
    let file = iso_file(&dir, "mounted.iso", 1 << 20);
    let mark = dir.join("mark");
    let mount_upload = |timeout: &str| {
        let mut command = tool();
        command
            .args(["-c", LAB_URI, "--timeout", timeout, "--virsh"])
            .arg(support("hung-agent-virsh"))
            .args(["mount", SCRATCH_VM, "--upload"])
            .arg(&file)
            .args(["--pool", POOL])
            .env("HUNG_COMMAND", "change-media")
            .env("HUNG_MARK", &mark)
            .process_group(0)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        command
    };
    // The change hangs past --timeout: FAILED, and the volume kept.
    let failed = run(&mut mount_upload("2s"));
    check(failed.status.code() == Some(1), || {
        format!("{}{}", stdout(&failed), stderr(&failed))
    })?;
    let said = stderr(&failed);
    check(
        said.contains("the ISO stays uploaded as lab-upload/mounted.iso on qemu:///system"),
        || said.clone(),
    )?;
    check(pool.volumes() == ["mounted.iso"], || {
        format!("{:?}", pool.volumes())
    })?;
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_dismount_iso_qemu"))
        .parent()
        .ok_or("the binary's directory")?
        .to_owned();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH")?);
    let shell = |line: &str| {
        run(std::process::Command::new("sh")
            .args(["-c", line])
            .env("PATH", &path)
            .env_remove("LIBVIRT_URI")
            .env_remove("LIBVIRT_DEFAULT_URI")
            .stdin(std::process::Stdio::null()))
    };
    let mount = quoted_after(&said, "mount it with").ok_or_else(|| said.clone())?;
    let mounted = shell(mount);
    check(mounted.status.success(), || stderr(&mounted))?;
    check(
        vm.cdrom() == pool.dir.join("mounted.iso").display().to_string(),
        || vm.cdrom(),
    )?;
    let ejected = run(tool().args(["-c", LAB_URI, "eject", SCRATCH_VM, "--yes"]));
    check(ejected.status.success(), || stderr(&ejected))?;
    let delete = quoted_after(&said, "delete it with").ok_or_else(|| said.clone())?;
    let deleted = shell(delete);
    check(deleted.status.success(), || stderr(&deleted))?;
    check(pool.volumes().is_empty(), || {
        format!("{:?}", pool.volumes())
    })?;
    // Ctrl-C while the mount's change is out, after the upload.
    let _ = std::fs::remove_file(&mark);
    let child = mount_upload("600s").spawn()?;
    marked(&mark, "change-media");
    signal_group(&child, libc::SIGINT);
    let output = child.wait_with_output()?;
    check(output.status.signal() == Some(libc::SIGINT), || {
        format!("{:?}: {}", output.status, stderr(&output))
    })?;
    check(
        stderr(&output).contains(
            "interrupted after the upload; the ISO stays uploaded as lab-upload/mounted.iso",
        ),
        || stderr(&output),
    )?;
    check(pool.volumes() == ["mounted.iso"], || {
        format!("{:?}", pool.volumes())
    })?;
    check(vm.cdrom() == "-", || vm.cdrom())?;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
