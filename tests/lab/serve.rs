//! `serve` on the real lab: promtool accepts its metrics, a real
//! Prometheus server scrapes it (over https with basic auth too; one per
//! hypervisor found by file_sd; two shards of the hosts) and evaluates
//! the alert rules and the dashboard's queries on them, and the systemd
//! unit in contrib/ verifies.
//! promtool, Prometheus and systemd-analyze come with `scripts/lab up`.
//! Without the lab every test is reported as ignored, by name.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::Cases;
use crate::common::*;
use libtest_mimic::Failed;

pub fn cases() -> Cases {
    cases!(Together; promtool_accepts_the_lab_and_400_test_domains, prometheus_scrapes_serve, guest_filesystem_series_match_guestinfo, lab_pool_series_match_pool_info, every_dashboard_query_evaluates, prometheus_scrapes_serve_over_https_with_basic_auth, prometheus_finds_each_hypervisors_serve_by_file_sd, prometheus_scrapes_two_shards_of_the_hosts, systemd_unit_verifies)
}

/// `serve` on the lab's libvirtd and on fleet-400.xml, once both scanned.
fn serve_lab_and_fleet() -> Serving {
    let serving = Serving::start(tool().args(["-c", LAB_URI, "-c", &fleet_uri("fleet-400.xml")]));
    serving.wait_for("/healthz", |status, _| status == 200);
    serving
}

fn promtool_accepts_the_lab_and_400_test_domains() -> Result<(), Failed> {
    let serving = serve_lab_and_fleet();
    // The other tests here scan the lab side by side, and a `domstats
    // --nowait` that meets another's job on lab-agent gets none of its
    // disk figures; `serve` asks such a domain once more, but two
    // collisions in a row happen, so wait for a scan that had the
    // figures (the retry's own test is in src/virsh).
    let (status, metrics) = serving.wait_for("/metrics", |_, metrics| {
        metrics.contains(
            "dismount_domain_block_read_bytes_total{domain=\"lab-agent\",target_device=\"hdc\"",
        )
    });
    check(status == 200, || format!("/metrics: {status}"))?;
    check(
        metrics.contains("dismount_domain_vcpus{domain=\"lab-agent\",uri=\"qemu:///system\"} 1"),
        || format!("no lab-agent vCPUs in\n{metrics}"),
    )?;
    check(metrics.contains("domain=\"vm-399\""), || {
        "no fleet-400 domain".to_owned()
    })?;
    // The agent channel, from each domain's XML: what
    // DismountGuestAgentDown needs to tell "no agent" from "agent down".
    for (domain, channel) in [("lab-agent", 1), ("lab-meta", 0)] {
        let series = format!(
            "dismount_domain_guest_agent_channel{{domain=\"{domain}\",uri=\"qemu:///system\"}} {channel}"
        );
        check(metrics.contains(&series), || format!("no `{series}`"))?;
    }
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

/// A real Prometheus on loopback, with `config` (prometheus.yml's text)
/// and its files in `dir`, run until dropped.
struct Prometheus {
    web: SocketAddr,
    dir: PathBuf,
    _running: KillOnDrop,
}

impl Prometheus {
    fn start(dir: &Path, config: &str) -> Result<Prometheus, Failed> {
        std::fs::write(dir.join("prometheus.yml"), config)?;
        let web = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let child = Command::new("prometheus")
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
            web,
            dir: dir.to_owned(),
            _running: KillOnDrop(child),
        })
    }

    /// The JSON of an API call that answered 200.
    fn api(&self, path: &str) -> Option<serde_json::Value> {
        let (status, body) = try_http_get(self.web, path).ok()?;
        let json: serde_json::Value = serde_json::from_str(&body).ok()?;
        (status == 200).then_some(json)
    }

    /// An instant query's whole answer (`status`, `data`, or `error`).
    fn query(&self, expr: &str) -> Option<serde_json::Value> {
        let path = format!("/api/v1/query?query={}", percent_encode(expr));
        let (_, body) = try_http_get(self.web, &path).ok()?;
        serde_json::from_str(&body).ok()
    }

    /// Polls (60 s at most) until `found` finds what it wants in an API
    /// call's answer.
    fn wait_for<T>(
        &self,
        what: &str,
        path: &str,
        found: impl Fn(&serde_json::Value) -> Option<T>,
    ) -> Result<T, Failed> {
        for _ in 0..600 {
            if let Some(found) = self.api(path).as_ref().and_then(&found) {
                return Ok(found);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let log = std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default();
        Err(format!("{what}: not after 60 s; prometheus said:\n{log}").into())
    }

    /// Waits until `expr` gives a sample.
    fn holds(&self, expr: &str) -> Result<(), Failed> {
        let path = format!("/api/v1/query?query={}", percent_encode(expr));
        self.wait_for(expr, &path, |json| {
            json["data"]["result"]
                .as_array()
                .filter(|result| !result.is_empty())
                .map(|_| ())
        })
    }

    /// The value of the first sample `expr` gives, once it gives one.
    fn sample(&self, expr: &str) -> Result<String, Failed> {
        let path = format!("/api/v1/query?query={}", percent_encode(expr));
        self.wait_for(&format!("a sample of {expr}"), &path, |json| {
            json["data"]["result"][0]["value"][1]
                .as_str()
                .map(str::to_owned)
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
        let path = format!("/api/v1/query?query={}", percent_encode(expr));
        self.wait_for(
            &format!("{count} samples of {expr}, all 1"),
            &path,
            |json| {
                let text = |value: &serde_json::Value| value.as_str().unwrap_or("").to_owned();
                let mut found: Vec<(String, String)> = json["data"]["result"]
                    .as_array()?
                    .iter()
                    .map(|sample| (text(&sample["metric"][label]), text(&sample["value"][1])))
                    .collect();
                found.sort();
                (found.len() == count && found.iter().all(|(_, value)| value == "1"))
                    .then_some(found)
            },
        )
    }
}

/// contrib/prometheus.yml for a test: the target at `serve`'s port,
/// scraping and evaluating every second, the alert rules beside it.
/// lab-agent's data filesystem in /metrics, figure for figure as `virsh
/// guestinfo --filesystem` says; lab-blocked's refusal is its own
/// `scrape_error` and marks no other guest; `--no-guest-filesystems`
/// leaves the series out.
fn guest_filesystem_series_match_guestinfo() -> Result<(), Failed> {
    let truth = virsh(
        LAB_URI,
        &["guestinfo", "--filesystem", "--domain", "lab-agent"],
    );
    let field =
        |key: &str| guestinfo_field(&truth, key).ok_or_else(|| format!("no {key} in {truth}"));
    let labels = format!(
        "{{domain=\"lab-agent\",mountpoint=\"{}\",type=\"{}\",uri=\"qemu:///system\"}}",
        field("fs.0.mountpoint")?,
        field("fs.0.fstype")?
    );
    let serving = Serving::start(tool().args(["-c", LAB_URI]));
    serving.wait_for("/healthz", |status, _| status == 200);
    let metrics = serving.get("/metrics").1;
    for series in [
        format!("dismount_guest_filesystem_size_bytes{labels} {}", field("fs.0.total-bytes")?),
        format!("dismount_guest_filesystem_used_bytes{labels} {}", field("fs.0.used-bytes")?),
        "dismount_guest_filesystem_scrape_error{domain=\"lab-blocked\",reason=\"blocked\",uri=\"qemu:///system\"} 1".to_owned(),
        "dismount_guest_filesystem_scrape_error{domain=\"lab-noagent\",reason=\"no_agent\",uri=\"qemu:///system\"} 1".to_owned(),
    ] {
        check(metrics.lines().any(|line| line == series), || {
            format!("no `{series}` in\n{metrics}")
        })?;
    }
    check(
        !metrics.contains("dismount_guest_filesystem_scrape_error{domain=\"lab-agent\""),
        || "lab-agent marked".to_owned(),
    )?;
    drop(serving);
    let serving = Serving::start_with(tool().args(["-c", LAB_URI]), &["--no-guest-filesystems"]);
    serving.wait_for("/healthz", |status, _| status == 200);
    let metrics = serving.get("/metrics").1;
    check(
        metrics.contains("dismount_domain_state{domain=\"lab-agent\""),
        || metrics.clone(),
    )?;
    check(!metrics.contains("dismount_guest_filesystem"), || {
        metrics.clone()
    })
}

/// The lab's ISO pool in /metrics: its capacity as `pool-info --bytes`
/// says (the free bytes move while other tests upload: at most the
/// capacity), its type and path, and its ISOs (at least the lab's four).
fn lab_pool_series_match_pool_info() -> Result<(), Failed> {
    let info = virsh(LAB_URI, &["pool-info", "--bytes", "--pool", "lab-isos"]);
    let field = |key: &str| {
        info.lines()
            .find_map(|line| line.strip_prefix(&format!("{key}:")))
            .map(|value| value.trim().to_owned())
            .ok_or_else(|| format!("no {key} in {info}"))
    };
    let capacity: f64 = field("Capacity")?.parse()?;
    let serving = Serving::start(tool().args(["-c", LAB_URI]));
    serving.wait_for("/healthz", |status, _| status == 200);
    let metrics = serving.get("/metrics").1;
    let sample = |name: &str| {
        let prefix = format!("{name}{{pool=\"lab-isos\",uri=\"qemu:///system\"}} ");
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(&prefix))
            .and_then(|value| value.parse::<f64>().ok())
            .ok_or_else(|| format!("no {prefix} in\n{metrics}"))
    };
    check(sample("dismount_pool_capacity_bytes")? == capacity, || {
        format!("capacity: pool-info says {capacity}")
    })?;
    let available = sample("dismount_pool_available_bytes")?;
    check(available > 0.0 && available <= capacity, || {
        format!("available {available} of {capacity}")
    })?;
    check(sample("dismount_pool_iso_volumes")? >= 4.0, || {
        "fewer than the lab's four ISOs".to_owned()
    })?;
    let series = format!(
        "dismount_pool_info{{path=\"{}\",pool=\"lab-isos\",state=\"running\",type=\"dir\",uri=\"qemu:///system\"}} 1",
        lab_dir().join("isos").display()
    );
    check(metrics.lines().any(|line| line == series), || {
        format!("no `{series}` in\n{metrics}")
    })
}

fn contrib_config(dir: &Path, serving: &Serving) -> Result<String, Failed> {
    std::fs::create_dir_all(dir.join("prometheus"))?;
    std::fs::copy(
        root().join("contrib/prometheus/alerts.yml"),
        dir.join("prometheus/alerts.yml"),
    )?;
    Ok(
        std::fs::read_to_string(root().join("contrib/prometheus.yml"))?
            .replace("127.0.0.1:9177", &serving.addr.to_string())
            .replace("interval: 30s", "interval: 1s")
            .replace("scrape_timeout: 10s", "scrape_timeout: 1s"),
    )
}

/// A real Prometheus on loopback scrapes `serve` with contrib/prometheus.yml
/// (every second, at the test's port); its HTTP API then shows the target
/// up and a lab domain's metric, and every alert rule of alerts.yml
/// evaluated on them without error.
fn prometheus_scrapes_serve() -> Result<(), Failed> {
    let serving = serve_lab_and_fleet();
    let dir = temp_dir("prometheus");
    let prometheus = Prometheus::start(&dir, &contrib_config(&dir, &serving)?)?;
    let up = prometheus.sample("up{job=\"dismount\"}")?;
    check(up == "1", || format!("up = {up}"))?;
    let vcpus =
        prometheus.sample("dismount_domain_vcpus{domain=\"lab-agent\",uri=\"qemu:///system\"}")?;
    check(vcpus == "1", || format!("lab-agent vCPUs = {vcpus}"))?;
    let scanned = prometheus.sample("dismount_host_scan_success{uri=\"qemu:///system\"}")?;
    check(scanned == "1", || format!("scan success = {scanned}"))?;
    let rules = prometheus.wait_for("every alert rule evaluated", "/api/v1/rules", |json| {
        let rules: Vec<serde_json::Value> = json["data"]["groups"]
            .as_array()?
            .iter()
            .flat_map(|group| group["rules"].as_array().cloned().unwrap_or_default())
            .collect();
        rules
            .iter()
            .all(|rule| rule["health"] != "unknown")
            .then_some(rules)
    })?;
    check(rules.len() == 9, || format!("{} rules loaded", rules.len()))?;
    for rule in &rules {
        check(rule["health"] == "ok", || format!("{rule:#}"))?;
    }
    Ok(())
}

/// Every query of contrib/grafana/dismount-iso-qemu.json, its variables'
/// too, evaluates on a real Prometheus that scrapes `serve`: the query
/// API answers `success` (Grafana's `$…` variables set to all values, a
/// `label_values(SELECTOR, label)` variable as its selector).
fn every_dashboard_query_evaluates() -> Result<(), Failed> {
    let serving = serve_lab_and_fleet();
    let dir = temp_dir("prometheus-dashboard");
    let prometheus = Prometheus::start(&dir, &contrib_config(&dir, &serving)?)?;
    prometheus.sample("dismount_domain_vcpus{domain=\"lab-agent\"}")?;
    let text = std::fs::read_to_string(root().join("contrib/grafana/dismount-iso-qemu.json"))?;
    let dashboard: serde_json::Value = serde_json::from_str(&text)?;
    let mut queries = Vec::new();
    let mut panels: Vec<&serde_json::Value> = dashboard["panels"]
        .as_array()
        .ok_or("no panels")?
        .iter()
        .collect();
    while let Some(panel) = panels.pop() {
        panels.extend(panel["panels"].as_array().into_iter().flatten());
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"]
                .as_str()
                .ok_or_else(|| format!("a target without expr: {target}"))?;
            queries.push((panel["title"].to_string(), expr.to_owned()));
        }
    }
    for variable in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if let Some(query) = variable["query"]["query"].as_str() {
            let selector = query
                .strip_prefix("label_values(")
                .and_then(|rest| rest.rsplit_once(','))
                .map(|(selector, _)| selector)
                .ok_or_else(|| format!("not label_values(SELECTOR, label): {query}"))?;
            queries.push((variable["name"].to_string(), selector.to_owned()));
        }
    }
    check(queries.len() >= 20, || {
        format!("only {} queries", queries.len())
    })?;
    for (title, expr) in &queries {
        let expr = expr
            .replace("$__rate_interval", "1m")
            .replace("$job", ".*")
            .replace("$uri", ".*")
            .replace("$domain", ".*");
        check(!expr.contains('$'), || {
            format!("{title}: a variable left in {expr}")
        })?;
        let answer = prometheus
            .query(&expr)
            .ok_or_else(|| format!("{title}: no answer to {expr}"))?;
        check(answer["status"] == "success", || {
            format!("{title}: {expr}\n{answer:#}")
        })?;
    }
    // The disk space panels show the lab's data filesystem and ISO pool.
    for (panel, wanted) in [
        ("Fullest guest filesystems", "/srv/lab-data"),
        ("Storage pools' room", "lab-isos"),
    ] {
        let (_, expr) = queries
            .iter()
            .find(|(title, _)| title.trim_matches('"') == panel)
            .ok_or_else(|| format!("no panel {panel}"))?;
        let expr = expr
            .replace("$job", ".*")
            .replace("$uri", ".*")
            .replace("$domain", ".*");
        let answer = prometheus.query(&expr).unwrap_or_default();
        check(answer.to_string().contains(wanted), || {
            format!("{panel}: no {wanted} in {answer:#}")
        })?;
    }
    // The fleet's panels show the lab's fleet.
    let states = prometheus
        .query("count by (state) (dismount_domain_state{job=~\".*\", uri=~\".*\"})")
        .unwrap_or_default();
    check(
        states["data"]["result"]
            .as_array()
            .is_some_and(|r| !r.is_empty()),
        || format!("VMs by state: {states:#}"),
    )
}

/// `serve --web.config.file` with TLS and basic auth, scraped by a real
/// Prometheus over https with the right password (`up` 1, the lab's
/// metrics there), with a wrong one (`up` 0, the target's error naming
/// 401), and over plain HTTP (`up` 0); the same once the web config is
/// emptied while it runs.
fn prometheus_scrapes_serve_over_https_with_basic_auth() -> Result<(), Failed> {
    let dir = temp_dir("prometheus-tls");
    let config = web_config(&dir, "prometheus", "lab pass");
    let serving = Serving::start_with(
        tool().args(["-c", LAB_URI]),
        &["--web.config.file", config.to_str().unwrap()],
    );
    let job = |name: &str, scheme: &str, password: &str| {
        format!(
            "  - job_name: {name}\n    scheme: {scheme}\n    tls_config:\n      ca_file: {ca}\n    \
             basic_auth:\n      username: prometheus\n      password: '{password}'\n    \
             static_configs:\n      - targets: ['{addr}']\n",
            ca = dir.join("ca.pem").display(),
            addr = serving.addr,
        )
    };
    let prometheus = Prometheus::start(
        &dir,
        &format!(
            "global:\n  scrape_interval: 2s\n  scrape_timeout: 2s\nscrape_configs:\n{}{}{}",
            job("tls", "https", "lab pass"),
            job("wrong-password", "https", "lab"),
            job("plain-http", "http", "lab pass"),
        ),
    )?;
    // Once: a first scrape may time out on a loaded machine, behind the
    // wrong password's bcrypt.
    prometheus.holds("up{job=\"tls\"} == 1")?;
    let vcpus = prometheus.sample("dismount_domain_vcpus{job=\"tls\",domain=\"lab-agent\"}")?;
    check(vcpus == "1", || {
        format!("lab-agent vCPUs over https = {vcpus}")
    })?;
    for refused in ["wrong-password", "plain-http"] {
        let up = prometheus.sample(&format!("up{{job=\"{refused}\"}}"))?;
        check(up == "0", || format!("{refused}: up = {up}"))?;
        let scraped = prometheus.query(&format!(
            "count({{job=\"{refused}\",__name__=~\"dismount_.*\"}})"
        ));
        check(
            scraped
                .as_ref()
                .is_some_and(|json| json["data"]["result"].as_array().is_some_and(Vec::is_empty)),
            || format!("{refused}: metrics scraped: {scraped:?}"),
        )?;
    }
    let error = prometheus.wait_for("the wrong password's error", "/api/v1/targets", |json| {
        json["data"]["activeTargets"]
            .as_array()?
            .iter()
            .find(|target| target["labels"]["job"] == "wrong-password")
            .and_then(|target| target["lastError"].as_str())
            .filter(|error| error.contains("401"))
            .map(str::to_owned)
    })?;
    check(error.contains("Unauthorized"), || {
        format!("wrong password: {error}")
    })?;
    // The web config emptied while serving (an editor that truncates, a
    // full disk): refused, so at scrapes that started after the change
    // Prometheus still gets the metrics over https with the password, and
    // plain HTTP is still refused.
    let scrapes = |job: &str| format!("count_over_time(up{{job=\"{job}\"}}[1h])");
    let before: Vec<f64> = ["tls", "plain-http"]
        .iter()
        .map(|job| Ok(prometheus.sample(&scrapes(job))?.parse::<f64>()?))
        .collect::<Result<_, Failed>>()?;
    std::fs::write(&config, "")?;
    for ((job, up), count) in [("tls", "1"), ("plain-http", "0")].into_iter().zip(before) {
        // Two more: one at least started after the change.
        prometheus.holds(&format!("{} >= {}", scrapes(job), count + 2.0))?;
        let now = prometheus.sample(&format!("up{{job=\"{job}\"}}"))?;
        check(now == up, || {
            format!("{job} after the web config was emptied: up = {now}")
        })?;
    }
    Ok(())
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
    let dir = temp_dir("prometheus-file-sd");
    let targets_file = dir.join("dismount-hypervisors.yml");
    std::fs::write(&targets_file, targets)?;
    let config = fast(&std::fs::read_to_string(
        root().join("contrib/prometheus/file-sd.yml"),
    )?)
    .replace(
        "/etc/prometheus/dismount-hypervisors.yml",
        &targets_file.display().to_string(),
    );
    let prometheus = Prometheus::start(&dir, &config)?;
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
    let config = fast(&std::fs::read_to_string(
        root().join("contrib/prometheus/prometheus-shards.yml"),
    )?)
    .replace("127.0.0.1:9177", &instances[0].addr.to_string())
    .replace("127.0.0.1:9178", &instances[1].addr.to_string());
    let prometheus = Prometheus::start(&temp_dir("prometheus-shards"), &config)?;
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

/// A contrib config made to scrape (and read its file_sd targets) every
/// second, for a test.
fn fast(config: &str) -> String {
    config
        .replace("scrape_interval: 30s", "scrape_interval: 1s")
        .replace("scrape_timeout: 10s", "scrape_timeout: 1s")
        .replace("refresh_interval: 5m", "refresh_interval: 1s")
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
