//! Shared helpers for the integration tests: the built binary, the fixture
//! fleets on libvirt's test driver, and the real virsh for ground truth.

#![allow(dead_code)] // each test target uses its own subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `test:///ABSOLUTE/PATH` for a fleet in fixtures/.
pub fn fleet_uri(file: &str) -> String {
    format!("test://{}", root().join("fixtures").join(file).display())
}

pub fn support(file: &str) -> PathBuf {
    root().join("tests/support").join(file)
}

/// The binary with a clean environment: no URI or virsh from the caller's
/// shell leaks into a test.
pub fn tool() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_dismount_iso_qemu"));
    command
        .env_remove("LIBVIRT_URI")
        .env_remove("LIBVIRT_DEFAULT_URI")
        .env_remove("VIRSH")
        .stdin(Stdio::null());
    command
}

pub fn run(command: &mut Command) -> Output {
    let output = command.output().expect("the binary runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains("panicked"),
        "the tool panicked:\n{stderr}"
    );
    output
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("stdout is UTF-8")
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Runs the real virsh, for ground truth.
pub fn virsh(uri: &str, args: &[&str]) -> String {
    let output = Command::new("virsh")
        .arg("-c")
        .arg(uri)
        .args(args)
        .env("LC_ALL", "C.UTF-8")
        .env_remove("LANGUAGE")
        .output()
        .expect("virsh is installed (libvirt-clients)");
    assert!(
        output.status.success(),
        "virsh {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("virsh prints UTF-8")
}

/// The invocations a counting-virsh run recorded, each as its argv.
pub fn recorded_calls(log: &Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|line| line.split('\u{1f}').map(str::to_owned).collect())
        .collect()
}

pub fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "dismount-iso-qemu-{tag}-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
