//! End-to-end faults under a live virsh session, against the real lab:
//! libvirtd restarted, the session's ssh killed. They disturb every other
//! user of the lab, so they run one at a time, never beside another
//! module's cases. Without the lab every test is reported as ignored, by name.

use crate::Cases;
use crate::common::*;
use libtest_mimic::Failed;

pub fn cases() -> Cases {
    cases!(Alone; a_live_session_survives_a_libvirtd_restart, a_live_session_survives_its_ssh_being_killed, healthz_follows_a_host_that_goes_away_and_comes_back, an_unprivileged_user_gets_one_clear_line)
}

/// libvirtd restarts while the menu's virsh session is idle: the next
/// Rescan still gives the full table, with no error.
fn a_live_session_survives_a_libvirtd_restart() -> Result<(), Failed> {
    let pid_file = "/run/libvirtd.pid";
    // Read while libvirtd answers: the guests' kernel names it.
    let lab = lab_dir();
    survive_under_a_live_session(LAB_URI, |_| {
        let pid: i32 = std::fs::read_to_string(pid_file)?.trim().parse()?;
        // SAFETY: kill(2) on the lab's own libvirtd.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        wait_until(|| std::fs::metadata(format!("/proc/{pid}")).is_err())?;
        let up = run(&mut lab_up(&lab));
        check(up.status.success(), || stderr(&up))
    })
}

/// The ssh under the menu's virsh session dies (a dropped connection):
/// the next Rescan still gives the full table, with no error.
fn a_live_session_survives_its_ssh_being_killed() -> Result<(), Failed> {
    survive_under_a_live_session(&lab_ssh_uri(), kill_ssh_under)
}

/// SIGKILL to every ssh below the tool: its connections drop.
fn kill_ssh_under(tool: u32) -> Result<(), Failed> {
    let ssh: Vec<i32> = descendants(tool)
        .into_iter()
        .filter(|pid| comm(*pid) == "ssh")
        .collect();
    check(!ssh.is_empty(), || "no ssh under the tool".to_owned())?;
    for pid in ssh {
        // SAFETY: kill(2) on an ssh the tool under test started.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    Ok(())
}

/// `serve` on the lab over ssh: /healthz is 200; the lab's sshd stopped
/// and the connections dropped, it turns 503 naming the host; the sshd
/// back, 200 again. Each step within a few scan intervals (5 s each).
fn healthz_follows_a_host_that_goes_away_and_comes_back() -> Result<(), Failed> {
    let uri = lab_ssh_uri();
    let serving = Serving::start(tool().args(["-c", &uri, "--cache-ttl", "1s"]));
    serving.wait_for("/healthz", |status, _| status == 200);
    let lab = lab_dir();
    let sshd_pid: i32 = std::fs::read_to_string(lab.join("ssh/sshd.pid"))?
        .trim()
        .parse()?;
    // Whatever happens below, the lab gets its sshd back.
    let _restore = RestartLabOnDrop(lab.clone());
    // SAFETY: kill(2) on the lab's own sshd (scripts/lab up restarts it).
    unsafe { libc::kill(sshd_pid, libc::SIGTERM) };
    wait_until(|| std::fs::metadata(format!("/proc/{sshd_pid}")).is_err())?;
    kill_ssh_under(serving.child.id())?;
    let public = uri
        .split_once('?')
        .map_or(uri.as_str(), |(u, _)| u)
        .replace("root@", "");
    let (_, body) = serving.wait_for("/healthz", |status, _| status == 503);
    check(body.starts_with(&format!("{public}: ")), || {
        format!("503 body: {body}")
    })?;
    // The last good values stay, marked as failed.
    let (_, metrics) = serving.get("/metrics");
    check(
        metrics.contains("dismount_domain_vcpus{domain=\"lab-agent\"")
            && metrics.contains(&format!("dismount_host_scan_success{{uri=\"{public}\"}} 0")),
        || format!("after the failure:\n{metrics}"),
    )?;
    let up = run(&mut lab_up(&lab));
    check(up.status.success(), || stderr(&up))?;
    serving.wait_for("/healthz", |status, _| status == 200);
    Ok(())
}

/// `qemu:///system` as a user without the rights (made for the test, no
/// home): libvirt refuses, and the tool says so in one line, exit 1.
fn an_unprivileged_user_gets_one_clear_line() -> Result<(), Failed> {
    let user = format!("dmtest{}", std::process::id());
    let made = run(std::process::Command::new("useradd")
        .args(["--no-create-home", "--shell", "/usr/sbin/nologin"])
        .arg(&user));
    check(made.status.success(), || stderr(&made))?;
    let _remove = RemoveUserOnDrop(user.clone());
    // The checkout may sit where that user cannot read: a copy in /tmp.
    let dir = std::env::temp_dir().join(format!("{user}-bin"));
    std::fs::create_dir_all(&dir)?;
    let binary = dir.join("dismount_iso_qemu");
    std::fs::copy(env!("CARGO_BIN_EXE_dismount_iso_qemu"), &binary)?;
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let output = run(std::process::Command::new("runuser")
        .args(["-u", &user, "--"])
        .arg(&binary)
        .args(["-c", LAB_URI, "status"])
        .env_remove("LIBVIRT_DEFAULT_URI"));
    let message = stderr(&output);
    check(output.status.code() == Some(1), || {
        format!("{:?}: {message}", output.status)
    })?;
    check(message.lines().count() == 1, || {
        format!("one line: {message}")
    })?;
    check(
        message.starts_with("dismount_iso_qemu: error: cannot list domains on qemu:///system: failed to connect to the hypervisor"),
        || message.clone(),
    )?;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

struct RemoveUserOnDrop(String);

impl Drop for RemoveUserOnDrop {
    fn drop(&mut self) {
        let _ = std::process::Command::new("userdel").arg(&self.0).status();
    }
}

/// `scripts/lab up` for the lab in `lab` (its LAB_DIR): the lab this
/// run's guests use, whichever checkout the tests were built in (its own
/// default, `<checkout>/.lab`, would move the lab's pool and drives there).
fn lab_up(lab: &std::path::Path) -> std::process::Command {
    let mut up = std::process::Command::new(root().join("scripts/lab"));
    up.arg("up").env("LAB_DIR", lab);
    up
}

/// `scripts/lab up` of the lab in its LAB_DIR when dropped: it restarts
/// what a test stopped.
struct RestartLabOnDrop(std::path::PathBuf);

impl Drop for RestartLabOnDrop {
    fn drop(&mut self) {
        let _ = lab_up(&self.0)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// Runs the menu on `uri`, waits for its first table, applies `fault`
/// (given the tool's pid), asks for a Rescan and checks that every lab
/// guest is in the new table and that nothing went to stderr.
fn survive_under_a_live_session(
    uri: &str,
    fault: impl FnOnce(u32) -> Result<(), Failed>,
) -> Result<(), Failed> {
    use std::io::{Read, Write};
    use std::process::Stdio;
    let mut child = tool()
        .args(["-c", uri])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut stdin = child.stdin.take().expect("piped");
    let mut stdout = child.stdout.take().expect("piped");
    let (send, screen) = std::sync::mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut chunk = [0u8; 8192];
        while let Ok(n) = stdout.read(&mut chunk) {
            if n == 0 || send.send(chunk[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut text = String::new();
    let prompts_seen = |count: usize, text: &mut String| -> Result<(), Failed> {
        let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while text.matches("Select option:").count() < count {
            let left = until.saturating_duration_since(std::time::Instant::now());
            let chunk = screen
                .recv_timeout(left)
                .map_err(|_| format!("no menu after 60 s:\n{text}"))?;
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
        Ok(())
    };
    prompts_seen(1, &mut text)?;
    fault(child.id())?;
    stdin.write_all(b"4\n")?;
    prompts_seen(2, &mut text)?;
    stdin.write_all(b"5\n")?;
    drop(stdin);
    let output = child.wait_with_output()?;
    let rescan = text.split("domain(s)").nth(1).unwrap_or("").to_owned();
    for guest in LAB_GUESTS {
        check(rescan.contains(&format!(" {guest} ")), || {
            format!("{guest} missing from the rescan:\n{text}")
        })?;
    }
    check(
        output.status.success() && stderr(&output).is_empty(),
        || format!("{:?}: {}", output.status, stderr(&output)),
    )
}

/// Polls `done` for up to 30 s.
fn wait_until(done: impl Fn() -> bool) -> Result<(), Failed> {
    for _ in 0..600 {
        if done() {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Err("gave up waiting after 30 s".into())
}
