//! `serve` on the real lab: promtool accepts its metrics, a real
//! Prometheus server scrapes it (one instance; one per hypervisor found by
//! file_sd; two shards of the hosts), and the systemd unit in contrib/
//! verifies.
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
            Trial::test(
                "prometheus_finds_each_hypervisors_serve_by_file_sd",
                prometheus_finds_each_hypervisors_serve_by_file_sd,
            ),
            Trial::test(
                "prometheus_scrapes_two_shards_of_the_hosts",
                prometheus_scrapes_two_shards_of_the_hosts,
            ),
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
    let config = std::fs::read_to_string(root().join("contrib/prometheus.yml"))?
        .replace("127.0.0.1:9177", &serving.addr.to_string());
    let prometheus = Prometheus::start("scrape", &config, &[])?;
    let up = prometheus.sample("up{job=\"dismount\"}")?;
    check(up == "1", || format!("up = {up}"))?;
    let vcpus =
        prometheus.sample("dismount_domain_vcpus{domain=\"lab-agent\",uri=\"qemu:///system\"}")?;
    check(vcpus == "1", || format!("lab-agent vCPUs = {vcpus}"))?;
    let scanned = prometheus.sample("dismount_host_scan_success{uri=\"qemu:///system\"}")?;
    check(scanned == "1", || format!("scan success = {scanned}"))
}

/// Deployment (a): a `serve` per hypervisor, found by Prometheus through
/// contrib/prometheus/file-sd.yml and a targets file made from
/// contrib/prometheus/dismount-hypervisors.yml: here the lab's
/// qemu:///system and a test-driver host stand for two hypervisors. Each
/// one's `dismount_host_scan_success` comes back through the HTTP API,
/// told apart by `instance`.
fn prometheus_finds_each_hypervisors_serve_by_file_sd() -> Result<(), Failed> {
    let hypervisors = [
        Serving::start(tool().args(["-c", LAB_URI])),
        Serving::start(tool().args(["-c", &fleet_uri("fleet-small.xml")])),
    ];
    let targets =
        std::fs::read_to_string(root().join("contrib/prometheus/dismount-hypervisors.yml"))?
            .replace("kvm1.example.org:9177", &hypervisors[0].addr.to_string())
            .replace("kvm2.example.org:9177", &hypervisors[1].addr.to_string());
    let config = std::fs::read_to_string(root().join("contrib/prometheus/file-sd.yml"))?;
    let prometheus = Prometheus::start(
        "file-sd",
        &config,
        &[(
            "/etc/prometheus/dismount-hypervisors.yml",
            "dismount-hypervisors.yml",
            &targets,
        )],
    )?;
    let scanned = prometheus.every(
        "dismount_host_scan_success{job=\"dismount-hypervisors\",role=\"hypervisor\"}",
        "instance",
        2,
    )?;
    let mut expected: Vec<(String, String)> = hypervisors
        .iter()
        .map(|serving| (serving.addr.to_string(), "1".to_owned()))
        .collect();
    expected.sort();
    check(scanned == expected, || {
        format!("{scanned:?}, not {expected:?}")
    })
}

/// Deployment (b): two central `serve` instances, each given one shard of
/// the hosts in a hosts file (the lab's qemu:///system and test-driver
/// hosts, copies of fleet-small.xml), scraped by a real Prometheus with
/// contrib/prometheus/prometheus-shards.yml: every host's
/// `dismount_host_scan_success` comes back through its HTTP API, once.
fn prometheus_scrapes_two_shards_of_the_hosts() -> Result<(), Failed> {
    let dir = temp_dir("shards");
    let small = std::fs::read(root().join("fixtures/fleet-small.xml"))?;
    let mut hosts = vec![LAB_URI.to_owned()];
    for n in 1..=4 {
        let copy = dir.join(format!("host-{n}.xml"));
        std::fs::write(&copy, &small)?;
        hosts.push(format!("test://{}", copy.display()));
    }
    let shards = [&hosts[..3], &hosts[3..]];
    let instances: Vec<Serving> = shards
        .iter()
        .enumerate()
        .map(|(n, shard)| {
            let file = dir.join(format!("hosts-{n}"));
            std::fs::write(&file, shard.join("\n") + "\n").expect("a hosts file");
            // The hosts' first scans spread over 5 s, not the default 60.
            Serving::start(tool().args(["--cache-ttl", "5s", "--hosts"]).arg(&file))
        })
        .collect();
    let config = std::fs::read_to_string(root().join("contrib/prometheus/prometheus-shards.yml"))?
        .replace("127.0.0.1:9177", &instances[0].addr.to_string())
        .replace("127.0.0.1:9178", &instances[1].addr.to_string());
    let prometheus = Prometheus::start("shards", &config, &[])?;
    let scanned = prometheus.every(
        "dismount_host_scan_success{job=\"dismount-shards\"}",
        "uri",
        hosts.len(),
    )?;
    let mut expected: Vec<(String, String)> = hosts
        .iter()
        .map(|uri| (uri.clone(), "1".to_owned()))
        .collect();
    expected.sort();
    check(scanned == expected, || {
        format!("{scanned:?}, not {expected:?}")
    })
}

/// A real Prometheus on loopback, its data and log in a temp dir of its
/// own, killed on drop.
struct Prometheus {
    dir: std::path::PathBuf,
    web: std::net::SocketAddr,
    _process: KillOnDrop,
}

impl Prometheus {
    /// Runs Prometheus with `config` scraping every second; each of
    /// `files` (the path the config names, a file name, its text) is
    /// written next to it and the config pointed there.
    fn start(tag: &str, config: &str, files: &[(&str, &str, &str)]) -> Result<Prometheus, Failed> {
        let dir = temp_dir(&format!("prometheus-{tag}"));
        let mut config = config
            .replace("scrape_interval: 30s", "scrape_interval: 1s")
            .replace("scrape_timeout: 10s", "scrape_timeout: 1s")
            .replace("refresh_interval: 5m", "refresh_interval: 1s");
        for (named, name, text) in files {
            let path = dir.join(name);
            std::fs::write(&path, text)?;
            config = config.replace(named, &path.display().to_string());
        }
        std::fs::write(dir.join("prometheus.yml"), config)?;
        let web = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let process = Command::new("prometheus")
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
        Ok(Prometheus {
            dir,
            web,
            _process: KillOnDrop(process),
        })
    }

    /// The result vector of the instant query `expr`, once it answers.
    fn query(&self, expr: &str) -> Option<Vec<serde_json::Value>> {
        let path = format!("/api/v1/query?query={}", percent_encode(expr));
        let (status, body) = try_http_get(self.web, &path).ok()?;
        let json: serde_json::Value = serde_json::from_str(&body).ok()?;
        (status == 200).then(|| json["data"]["result"].as_array().cloned())?
    }

    /// Polls `expr` (60 s at most) until `done` holds for its result.
    fn wait<T>(
        &self,
        expr: &str,
        done: impl Fn(&[serde_json::Value]) -> Option<T>,
    ) -> Result<T, Failed> {
        for _ in 0..600 {
            if let Some(found) = self.query(expr).as_deref().and_then(&done) {
                return Ok(found);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let log = std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default();
        Err(format!(
            "{expr} never as expected after 60 s: {:?}; prometheus said:\n{log}",
            self.query(expr)
        )
        .into())
    }

    /// The value of the first sample of `expr`.
    fn sample(&self, expr: &str) -> Result<String, Failed> {
        self.wait(expr, |result| {
            Some(result.first()?["value"][1].as_str()?.to_owned())
        })
    }

    /// (`label`, value) of each sample of `expr`, sorted, once there are
    /// `count` of them, all 1.
    fn every(
        &self,
        expr: &str,
        label: &str,
        count: usize,
    ) -> Result<Vec<(String, String)>, Failed> {
        let samples = |result: &[serde_json::Value]| -> Vec<(String, String)> {
            let mut found: Vec<(String, String)> = result
                .iter()
                .map(|sample| {
                    let text = |value: &serde_json::Value| value.as_str().unwrap_or("").to_owned();
                    (text(&sample["metric"][label]), text(&sample["value"][1]))
                })
                .collect();
            found.sort();
            found
        };
        self.wait(expr, |result| {
            let found = samples(result);
            (found.len() == count && found.iter().all(|(_, value)| value == "1")).then_some(found)
        })
    }
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
