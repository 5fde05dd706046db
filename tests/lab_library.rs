//! The ISO library on the lab (`scripts/lab up`): `library --json`
//! against ground truth read exactly (the lab pool's directory, `vol-path`,
//! `domblklist`) for the lab's own pools and guests only, locally and over
//! ssh, whatever other pools the host has; uploads over `qemu+ssh://` into a second directory pool,
//! `lab-upload`, that each test makes under LAB_DIR and removes again;
//! an interrupted upload and a file that shrinks mid-upload leave no
//! volume; deletions refused while a lab guest holds the ISO, live or
//! only in its config, with no guest's XML changed. The lab guests'
//! drives and the `lab-isos` pool's ISOs are never changed: the refusals
//! on them run with `--dry-run` besides, so even a broken refusal would
//! delete nothing. Another developer's `bench-*` domains and pools may
//! come and go: nothing here counts domains or reads others' pools.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Output};

use common::*;
use libtest_mimic::{Failed, Trial};
use serde_json::Value;

fn main() -> ExitCode {
    lab_main(
        vec![
            Trial::test("library_json_matches_vol_list_and_domblklist", || {
                library_matches_ground_truth(LAB_URI)
            }),
            Trial::test("library_json_matches_over_ssh", || {
                library_matches_ground_truth(&lab_ssh_uri())
            }),
            Trial::test(
                "upload_over_ssh_stores_the_files_bytes",
                upload_over_ssh_stores_the_files_bytes,
            ),
            Trial::test("an_inactive_pool_is_refused", an_inactive_pool_is_refused),
            Trial::test(
                "an_interrupted_upload_leaves_no_volume",
                an_interrupted_upload_leaves_no_volume,
            ),
            Trial::test(
                "a_file_that_shrinks_mid_upload_leaves_no_volume",
                a_file_that_shrinks_mid_upload_leaves_no_volume,
            ),
            Trial::test(
                "the_readmes_library_recipes_run",
                the_readmes_library_recipes_run,
            ),
            Trial::test(
                "delete_is_refused_while_held_live_or_in_the_config",
                delete_is_refused_while_held_live_or_in_the_config,
            ),
            Trial::test(
                "a_foreign_pool_is_read_exactly_and_left_out_of_the_truth",
                a_foreign_pool_is_read_exactly_and_left_out_of_the_truth,
            ),
            Trial::test(
                "a_volume_in_a_disk_or_floppy_is_held",
                a_volume_in_a_disk_or_floppy_is_held,
            ),
        ],
        // The tests share the one `lab-upload` pool.
        Some(1),
    )
}

const POOL: &str = "lab-upload";

/// virsh on the lab, its output whatever the exit status.
fn lab_virsh(args: &[&str]) -> Output {
    std::process::Command::new("virsh")
        .args(["-c", LAB_URI])
        .args(args)
        .env("LC_ALL", "C.UTF-8")
        .output()
        .expect("virsh runs")
}

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

/// Starts an upload of a 1 GiB file over ssh (about ten seconds on the
/// lab) and returns once its volume exists.
fn upload_under_way(file: &Path) -> std::process::Child {
    use std::os::unix::process::CommandExt;
    let child = tool()
        .args(["-c", &lab_ssh_uri(), "upload"])
        .arg(file)
        .args(["--pool", POOL])
        .process_group(0)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
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

/// The README's library recipes, as written, over ssh into `lab-upload`:
/// the ISO distributed and read back, listed unused, then deleted.
fn the_readmes_library_recipes_run() -> Result<(), Failed> {
    let pool = UploadPool::new(true);
    let readme = std::fs::read_to_string(root().join("README.md"))?;
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
    let sum = std::process::Command::new("sha256sum").arg(&iso).output()?;
    let sum = String::from_utf8(sum.stdout)?;
    let hash = sum.split_whitespace().next().ok_or("a checksum")?;
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
