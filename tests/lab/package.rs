//! The Debian package, as an admin meets it: `scripts/package` builds it,
//! `apt-get install ./….deb` installs it, `man`, bash completion (from the
//! host on the line) and the binary on PATH work, and `apt-get remove`
//! takes every file with it.
//! It changes the machine's packages, so it runs only where the lab does
//! (root, CI); elsewhere it is reported as ignored, by name.

use std::path::Path;
use std::process::Command;

use crate::Cases;
use crate::common::*;
use libtest_mimic::Failed;

pub fn cases() -> Cases {
    cases!(Alone; the_debian_package_installs_works_and_removes_cleanly)
}

fn apt(args: &[&str]) -> Result<(), Failed> {
    let output = run(Command::new("apt-get")
        .args(["-y", "-q"])
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive"));
    check(output.status.success(), || {
        format!("apt-get {args:?}: {}{}", stdout(&output), stderr(&output))
    })
}

/// Removes the package whatever happens.
struct PurgeOnDrop;

impl Drop for PurgeOnDrop {
    fn drop(&mut self) {
        let _ = Command::new("apt-get")
            .args(["-y", "-q", "purge", "dismount-iso-qemu"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .output();
    }
}

fn the_debian_package_installs_works_and_removes_cleanly() -> Result<(), Failed> {
    let built = run(&mut Command::new(root().join("scripts/package")));
    check(built.status.success(), || stderr(&built))?;
    let deb = stdout(&built).lines().last().unwrap_or_default().to_owned();
    check(deb.ends_with(".deb") && Path::new(&deb).exists(), || {
        format!("no package path as the last line: {}", stdout(&built))
    })?;
    let _purge = PurgeOnDrop;
    apt(&["install", "--no-install-recommends", &deb])?;

    let man = run(Command::new("man").args(["-w", "dismount_iso_qemu"]));
    check(
        man.status.success() && stdout(&man).trim() == "/usr/share/man/man1/dismount_iso_qemu.1.gz",
        || format!("man -w: {}{}", stdout(&man), stderr(&man)),
    )?;
    let man = run(Command::new("man").args(["-w", "dismount_iso_qemu-eject"]));
    check(man.status.success(), || stderr(&man))?;
    // The dynamic completion, as installed: the tool from PATH asks the
    // host on the line.
    let (reply, completion) = complete_in_bash_after(
        "source /usr/share/bash-completion/completions/dismount_iso_qemu",
        &["-c", &fleet_uri("fleet-small.xml"), "eject", "pl"],
        &[("PATH", "/usr/bin:/bin")],
    );
    check(reply == ["plain"], || {
        format!("eject pl: {reply:?} {}", stderr(&completion))
    })?;
    // From PATH, with the package's own virsh dependency.
    let status = run(Command::new("dismount_iso_qemu")
        .args(["-c", &fleet_uri("fleet-small.xml"), "status", "--json"])
        .env("PATH", "/usr/bin:/bin"));
    check(
        status.status.success() && stdout(&status).contains("\"plain\""),
        || format!("status from PATH: {}", stderr(&status)),
    )?;

    let files = stdout(&run(Command::new("dpkg").args(["-L", "dismount-iso-qemu"])));
    let installed: Vec<&str> = files
        .lines()
        .filter(|path| Path::new(path).is_file())
        .collect();
    check(installed.contains(&"/usr/bin/dismount_iso_qemu"), || {
        files.clone()
    })?;
    apt(&["remove", "dismount-iso-qemu"])?;
    let left: Vec<&&str> = installed
        .iter()
        .filter(|path| Path::new(path).exists())
        .collect();
    check(left.is_empty(), || {
        format!("left after apt-get remove: {left:?}")
    })
}
