//! The tool over a simulated fleet (`scripts/lab.d/fleet`): dozens of ssh
//! hosts, aliases of 127.0.0.1 on an sshd of the fleet's own in front of
//! the lab's libvirtd, each connection with a test driver of its own; a
//! few real QEMU hosts (the lab's guests); hosts that accept ssh but never
//! answer. The process bound is counted exactly, as each process starts
//! (tests/support/peak-virsh), never timed. Only reads; without the lab every test is reported as
//! ignored, by name.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use crate::Cases;
use crate::common::*;
use libtest_mimic::Failed;

pub fn cases() -> Cases {
    // Each test starts up to 2 × the budget processes of its own:
    // side by side they would measure each other.
    cases!(Alone; status_over_fifty_simulated_hosts_and_two_qemu_hosts_stays_within_the_bound, isos_and_a_dry_run_eject_over_fifty_hosts_cover_every_host, each_hung_host_is_one_error_line_and_the_others_answer)
}

/// `--max-connections`' default.
const BUDGET: usize = 16;
/// `--timeout` for the healthy hosts' runs. What is under test here is the
/// process bound and that every host answers; the default (5 s) is
/// measured in benches/fleet. On this shared 2-core machine, 16 ssh
/// handshakes at once have taken 10 s, plain virsh (the floor) included.
const TIMEOUT: &str = "60s";
/// `--timeout` for the runs with hung hosts, which wait it out once.
const HUNG_TIMEOUT: &str = "20s";
/// A virsh and its ssh per place of the budget, the tool, and one spare.
const PROCESS_BOUND: usize = 2 * BUDGET + 2;

/// What every simulated host serves (`FLEET_PATH`): 5 domains, 6 drives.
const FIXTURE: &str = "fleet-media.xml";

/// A fleet from `scripts/lab.d/fleet up`, its sshd stopped when dropped.
struct SimulatedFleet {
    dir: PathBuf,
    /// Simulated hosts, then hung ones, then QEMU ones.
    uris: Vec<String>,
}

impl SimulatedFleet {
    fn up(tag: &str, hosts: usize, hung: usize, qemu: usize) -> Result<Self, Failed> {
        // A plain path: it goes into every URI's `command=`.
        let dir = std::env::temp_dir().join(format!("dismount-fleet-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let script = root().join("scripts/lab.d/fleet");
        let up = run(Command::new(&script)
            .arg("up")
            .arg(&dir)
            .args([hosts, hung, qemu].map(|n| n.to_string()))
            .env("FLEET_PATH", root().join("fixtures").join(FIXTURE)));
        let mut fleet = SimulatedFleet {
            dir,
            uris: Vec::new(),
        };
        check(up.status.success(), || format!("fleet up: {}", stderr(&up)))?;
        fleet.uris = std::fs::read_to_string(fleet.dir.join("uris"))?
            .lines()
            .map(str::to_owned)
            .collect();
        check(fleet.uris.len() == hosts + hung + qemu, || {
            format!("{:?}", fleet.uris)
        })?;
        // The ssh of the URIs' `command=` through peak-virsh; the log's
        // path written in, as libvirt may not pass the environment on.
        let quote =
            |path: PathBuf| format!("'{}'", path.display().to_string().replace('\'', r"'\''"));
        std::fs::write(
            fleet.dir.join("ssh"),
            format!(
                "#!/bin/sh\nPEAK_VIRSH_LOG={} PEAK_PROGRAM=ssh exec {} -F {} \"$@\"\n",
                quote(fleet.peak_log()),
                quote(support("peak-virsh")),
                quote(fleet.dir.join("ssh_config")),
            ),
        )?;
        Ok(fleet)
    }

    /// Where every virsh and ssh of a run records how many are alive.
    fn peak_log(&self) -> PathBuf {
        self.dir.join("peak")
    }

    /// The tool on every host of the fleet, each virsh call given
    /// `timeout`, its virsh and their ssh counted (see [`run_counting`]).
    fn tool(&self, timeout: &str) -> Command {
        let mut command = tool();
        command
            .args(["--timeout", timeout, "--virsh"])
            .arg(support("peak-virsh"))
            .env("PEAK_VIRSH_LOG", self.peak_log());
        for uri in &self.uris {
            command.args(["-c", uri]);
        }
        command
    }
}

impl Drop for SimulatedFleet {
    fn drop(&mut self) {
        let _ = Command::new(root().join("scripts/lab.d/fleet"))
            .arg("down")
            .arg(&self.dir)
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// How the tool names a host: its URI without user and query.
fn label(uri: &str) -> String {
    uri.split_once('?')
        .map_or(uri, |(public, _)| public)
        .replacen("root@", "", 1)
}

/// Runs `command` (the tool on `fleet`, from [`SimulatedFleet::tool`]) to
/// its end: its output and the most processes of its tree alive at once,
/// counted exactly. Every virsh (tests/support/peak-virsh) and every ssh
/// a virsh starts (the fleet's ssh wrapper, through the same script)
/// records, as it starts, how many of them are alive; they are the whole
/// tree but the tool (no ssh ControlMaster forks), and the count only
/// grows when one starts, so the most recorded is the peak. It used to
/// be sampled from /proc every 5 ms, which a short spike could slip
/// between.
fn run_counting(fleet: &SimulatedFleet, command: &mut Command) -> Result<(Output, usize), Failed> {
    let log = fleet.peak_log();
    let _ = std::fs::remove_dir_all(&log);
    let output = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?
        .wait_with_output()?;
    check(!stderr(&output).contains("panicked"), || stderr(&output))?;
    let alive = std::fs::read_to_string(log.join("alive")).unwrap_or_default();
    // The tool, and the most of its virsh and ssh alive at once.
    let peak = 1 + alive
        .lines()
        .map(|n| n.parse::<usize>().unwrap_or(usize::MAX))
        .max()
        .unwrap_or(0);
    // The tool ran virsh over ssh at all, and the count saw it.
    check(peak >= 3, || format!("only {peak} process(es) counted"))?;
    check(peak <= PROCESS_BOUND, || {
        format!("{peak} processes at once, more than 2 × {BUDGET} + 2")
    })?;
    Ok((output, peak))
}

/// The JSON rows of `output`, each row's `key` grouped by its `uri`.
fn rows_by_host(output: &Output, key: &str) -> Result<BTreeMap<String, Vec<String>>, Failed> {
    let rows: Vec<serde_json::Value> = serde_json::from_str(&stdout(output))
        .map_err(|e| format!("not JSON ({e}): {}", stdout(output)))?;
    let mut hosts: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for row in rows {
        hosts
            .entry(row["uri"].as_str().unwrap_or("?").to_owned())
            .or_default()
            .push(row[key].as_str().unwrap_or("?").to_owned());
    }
    Ok(hosts)
}

/// The fixture's rows of `command`, sorted, from a local run on
/// `test:///…`: what every simulated host must show.
fn fixture_rows(args: &[&str], key: &str) -> Result<Vec<String>, Failed> {
    let output = run(tool().args(["-c", &fleet_uri(FIXTURE)]).args(args));
    check(output.status.success(), || stderr(&output))?;
    let mut rows = rows_by_host(&output, key)?
        .into_values()
        .next()
        .unwrap_or_default();
    rows.sort();
    Ok(rows)
}

/// Every simulated host of `fleet` (the first `simulated` URIs) has
/// exactly `expected` (sorted) in `hosts`.
fn check_simulated_rows(
    fleet: &SimulatedFleet,
    simulated: usize,
    hosts: &mut BTreeMap<String, Vec<String>>,
    expected: &[String],
) -> Result<(), Failed> {
    for uri in &fleet.uris[..simulated] {
        let mut rows = hosts.remove(&label(uri)).unwrap_or_default();
        rows.sort();
        check(rows == expected, || {
            format!("{}: {rows:?}, not {expected:?}", label(uri))
        })?;
    }
    Ok(())
}

/// `status --json` with the defaults over 50 simulated hosts and 2 real
/// QEMU ones: exit 0, every host's rows, at most 2 × the budget + 2
/// processes at once.
fn status_over_fifty_simulated_hosts_and_two_qemu_hosts_stays_within_the_bound()
-> Result<(), Failed> {
    let fleet = SimulatedFleet::up("status", 50, 0, 2)?;
    let expected = fixture_rows(&["status", "--json"], "name")?;
    let (output, _) = run_counting(&fleet, fleet.tool(TIMEOUT).args(["status", "--json"]))?;
    check(output.status.success(), || {
        format!("{:?}: {}", output.status, stderr(&output))
    })?;
    let mut hosts = rows_by_host(&output, "name")?;
    check_simulated_rows(&fleet, 50, &mut hosts, &expected)?;
    for uri in &fleet.uris[50..] {
        let rows = hosts.remove(&label(uri)).unwrap_or_default();
        for guest in LAB_GUESTS {
            check(rows.iter().any(|row| row == guest), || {
                format!("{guest} missing on {}: {rows:?}", label(uri))
            })?;
        }
    }
    check(hosts.is_empty(), || {
        format!("rows of unknown hosts: {hosts:?}")
    })
}

/// `isos --json` and `eject --all --dry-run` over 50 simulated hosts:
/// exit 0, every host's drives, every host's planned ejects, within the
/// process bound.
fn isos_and_a_dry_run_eject_over_fifty_hosts_cover_every_host() -> Result<(), Failed> {
    let fleet = SimulatedFleet::up("isos", 50, 0, 0)?;
    let expected = fixture_rows(&["isos", "--json"], "domain")?;
    let (output, _) = run_counting(&fleet, fleet.tool(TIMEOUT).args(["isos", "--json"]))?;
    check(output.status.success(), || {
        format!("{:?}: {}", output.status, stderr(&output))
    })?;
    let mut hosts = rows_by_host(&output, "domain")?;
    check_simulated_rows(&fleet, 50, &mut hosts, &expected)?;
    check(hosts.is_empty(), || {
        format!("rows of unknown hosts: {hosts:?}")
    })?;

    let local = run(tool().args(["-c", &fleet_uri(FIXTURE), "eject", "--all", "--dry-run"]));
    check(local.status.success(), || stderr(&local))?;
    let planned = |text: &str| text.matches(" --eject ").count();
    let per_host = planned(&stdout(&local));
    check(per_host > 0, || stdout(&local))?;
    let (output, _) = run_counting(
        &fleet,
        fleet.tool(TIMEOUT).args(["eject", "--all", "--dry-run"]),
    )?;
    check(output.status.success(), || {
        format!("{:?}: {}", output.status, stderr(&output))
    })?;
    let text = stdout(&output);
    for uri in &fleet.uris {
        // Each host's own dry-run commands name its URI in full.
        let commands = text
            .lines()
            .filter(|line| line.contains(&format!("'{uri}' change-media ")))
            .count();
        check(commands == per_host, || {
            format!(
                "{}: {commands} planned ejects, not {per_host}:\n{text}",
                label(uri)
            )
        })?;
    }
    Ok(())
}

/// 16 simulated hosts and 4 that accept ssh but never answer: exit 3, the
/// 16 hosts' rows, and exactly one error line per hung host, naming it.
/// `--timeout 20s`, not less: see [`TIMEOUT`].
fn each_hung_host_is_one_error_line_and_the_others_answer() -> Result<(), Failed> {
    let fleet = SimulatedFleet::up("hung", 16, 4, 0)?;
    let expected = fixture_rows(&["status", "--json"], "name")?;
    let (output, _) = run_counting(&fleet, fleet.tool(HUNG_TIMEOUT).args(["status", "--json"]))?;
    let errors = stderr(&output);
    check(output.status.code() == Some(3), || {
        format!("{:?}: {errors}", output.status)
    })?;
    let mut hosts = rows_by_host(&output, "name")?;
    check_simulated_rows(&fleet, 16, &mut hosts, &expected)?;
    check(hosts.is_empty(), || {
        format!("rows of other hosts: {hosts:?}")
    })?;
    let lines: Vec<&str> = errors.lines().collect();
    check(lines.len() == 4, || format!("not 4 lines:\n{errors}"))?;
    for uri in &fleet.uris[16..] {
        let prefix = format!("dismount_iso_qemu: error: {}: ", label(uri));
        let naming = lines
            .iter()
            .filter(|line| line.starts_with(&prefix))
            .count();
        check(naming == 1, || {
            format!("{naming} lines for {}:\n{errors}", label(uri))
        })?;
    }
    Ok(())
}
