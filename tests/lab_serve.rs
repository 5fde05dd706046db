//! `serve` on the real lab: promtool accepts its metrics, a real
//! Prometheus server scrapes it, and the systemd unit in contrib/ verifies.
//! promtool, Prometheus and systemd-analyze come with `scripts/lab up`.
//! Without the lab every test is reported as ignored, by name.

mod common;

use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use common::*;
use libtest_mimic::{Failed, Trial};

fn main() -> ExitCode {
    lab_main(
        vec![
            Trial::test(
                "promtool_accepts_the_lab_and_400_test_domains",
                promtool_accepts_the_lab_and_400_test_domains,
            ),
            Trial::test("prometheus_scrapes_serve", prometheus_scrapes_serve),
            Trial::test("systemd_unit_verifies", systemd_unit_verifies),
        ],
        None,
    )
}

/// `serve` on the lab's libvirtd and on fleet-400.xml, once both scanned.
fn serve_lab_and_fleet() -> Serving {
    let serving = Serving::start(tool().args(["-c", LAB_URI, "-c", &fleet_uri("fleet-400.xml")]));
    serving.wait_for("/healthz", |status, _| status == 200);
    serving
}

fn promtool_accepts_the_lab_and_400_test_domains() -> Result<(), Failed> {
    let serving = serve_lab_and_fleet();
    let (status, metrics) = serving.get("/metrics");
    check(status == 200, || format!("/metrics: {status}"))?;
    check(
        metrics.contains("dismount_domain_vcpus{domain=\"lab-agent\",uri=\"qemu:///system\"} 1"),
        || format!("no lab-agent vCPUs in\n{metrics}"),
    )?;
    check(metrics.contains("domain=\"vm-399\""), || {
        "no fleet-400 domain".to_owned()
    })?;
    // QEMU's figures from the one listing: a running guest's disk I/O,
    // memory statistics and vCPU times; a stopped one keeps its state,
    // memory, disk size and media.
    for series in [
        "dismount_domain_block_read_bytes_total{domain=\"lab-agent\",target_device=\"hdc\",uri=\"qemu:///system\"}",
        "dismount_domain_memory_rss_bytes{domain=\"lab-agent\",uri=\"qemu:///system\"}",
        "dismount_domain_vcpu_seconds_total{domain=\"lab-agent\",uri=\"qemu:///system\",vcpu=\"0\"}",
        "dismount_domain_state{domain=\"lab-off\",state=\"shut off\",uri=\"qemu:///system\"} 1",
        "dismount_domain_memory_max_bytes{domain=\"lab-off\",uri=\"qemu:///system\"} 134217728",
        "dismount_domain_block_capacity_bytes{domain=\"lab-off\",target_device=\"hdc\",uri=\"qemu:///system\"}",
        "dismount_drive_media_info{domain=\"lab-off\",source=",
        "dismount_domain_block_info{bus=\"ide\",device=\"cdrom\",domain=\"lab-off\",",
    ] {
        check(metrics.contains(series), || {
            format!("no {series} in\n{metrics}")
        })?;
    }
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("promtool (package prometheus, installed by scripts/lab up): {e}"))?;
    std::io::Write::write_all(
        &mut promtool.stdin.take().expect("piped"),
        metrics.as_bytes(),
    )?;
    let output = promtool.wait_with_output()?;
    let said = format!("{}{}", stdout(&output), stderr(&output));
    check(output.status.success() && said.is_empty(), || {
        format!("promtool check metrics: {:?}\n{said}", output.status)
    })
}

/// A real Prometheus on loopback scrapes `serve` with contrib/prometheus.yml
/// (every second, at the test's port); its HTTP API then shows the target
/// up and a lab domain's metric.
fn prometheus_scrapes_serve() -> Result<(), Failed> {
    let serving = serve_lab_and_fleet();
    let dir = temp_dir("prometheus");
    let config = std::fs::read_to_string(root().join("contrib/prometheus.yml"))?
        .replace("127.0.0.1:9177", &serving.addr.to_string())
        .replace("scrape_interval: 30s", "scrape_interval: 1s")
        .replace("scrape_timeout: 10s", "scrape_timeout: 1s");
    std::fs::write(dir.join("prometheus.yml"), config)?;
    let web = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let prometheus = Command::new("prometheus")
        .arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address={web}"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("prometheus.log"))?)
        .spawn()
        .map_err(|e| {
            format!("prometheus (package prometheus, installed by scripts/lab up): {e}")
        })?;
    let _stop = KillOnDrop(prometheus);
    let query = |expr: &str| -> Option<serde_json::Value> {
        let path = format!("/api/v1/query?query={}", percent_encode(expr));
        let (status, body) = try_http_get(web, &path).ok()?;
        let json: serde_json::Value = serde_json::from_str(&body).ok()?;
        (status == 200).then(|| json["data"]["result"].clone())
    };
    let sample = |expr: &str| -> Result<String, Failed> {
        for _ in 0..600 {
            if let Some(result) = query(expr)
                && let Some(value) = result[0]["value"][1].as_str()
            {
                return Ok(value.to_owned());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let log = std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default();
        Err(format!("no sample of {expr} after 60 s; prometheus said:\n{log}").into())
    };
    let up = sample("up{job=\"dismount\"}")?;
    check(up == "1", || format!("up = {up}"))?;
    let vcpus = sample("dismount_domain_vcpus{domain=\"lab-agent\",uri=\"qemu:///system\"}")?;
    check(vcpus == "1", || format!("lab-agent vCPUs = {vcpus}"))?;
    let scanned = sample("dismount_host_scan_success{uri=\"qemu:///system\"}")?;
    check(scanned == "1", || format!("scan success = {scanned}"))
}

/// contrib/dismount-iso-qemu.service, its ExecStart pointed at the built
/// binary: `systemd-analyze verify` has nothing to say.
fn systemd_unit_verifies() -> Result<(), Failed> {
    let dir = temp_dir("unit");
    let unit = std::fs::read_to_string(root().join("contrib/dismount-iso-qemu.service"))?.replace(
        "/usr/local/bin/dismount_iso_qemu",
        env!("CARGO_BIN_EXE_dismount_iso_qemu"),
    );
    let path = dir.join("dismount-iso-qemu.service");
    std::fs::write(&path, unit)?;
    let output = run(Command::new("systemd-analyze").arg("verify").arg(&path));
    let said = format!("{}{}", stdout(&output), stderr(&output));
    check(output.status.success() && said.is_empty(), || {
        format!("systemd-analyze verify: {:?}\n{said}", output.status)
    })
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Enough of RFC 3986 for PromQL in a query string.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
