//! The `/metrics` page: every host's last scan as Prometheus metrics, in
//! the text format as the `prometheus` crate writes it. Names and units
//! follow Prometheus' conventions; every series carries `uri`.

use std::time::{Instant, UNIX_EPOCH};

use anyhow::Result;
use prometheus::{CounterVec, Encoder, GaugeVec, Opts, Registry, TextEncoder};

use super::HostState;
use crate::probe::OsSource;
use crate::virsh::DomainState;

/// What `/metrics` answers with.
pub const CONTENT_TYPE: &str = prometheus::TEXT_FORMAT;

/// A fresh registry of gauges and counters set from the hosts' states:
/// building it costs microseconds per domain, and nothing is kept between
/// requests that could go stale.
pub fn render(hosts: &[HostState]) -> Result<String> {
    let registry = Registry::new_custom(Some("dismount".to_owned()), None)?;
    let gauge = |name: &str, help: &str, labels: &[&str]| -> Result<GaugeVec> {
        let vec = GaugeVec::new(Opts::new(name, help), labels)?;
        registry.register(Box::new(vec.clone()))?;
        Ok(vec)
    };
    const DOMAIN: &[&str] = &["uri", "domain"];
    let state = gauge(
        "domain_state",
        "1 for the domain's state (virsh's words: running, paused, shut off, ...)",
        &["uri", "domain", "state"],
    )?;
    let vcpus = gauge("domain_vcpus", "Current vCPUs of the domain", DOMAIN)?;
    let memory_used = gauge(
        "domain_memory_used_bytes",
        "Memory used: in-guest (balloon statistics) where the guest reports it, else the host's allocation",
        DOMAIN,
    )?;
    let memory_max = gauge(
        "domain_memory_max_bytes",
        "Maximum memory of the domain",
        DOMAIN,
    )?;
    let cpu = CounterVec::new(
        Opts::new(
            "domain_cpu_seconds_total",
            "CPU time the domain has used, all vCPUs together (active domains only)",
        ),
        DOMAIN,
    )?;
    registry.register(Box::new(cpu.clone()))?;
    let agent = gauge(
        "domain_guest_agent_up",
        "1 when the guest agent answered the last OS probe (guestinfo or os-release through the agent)",
        DOMAIN,
    )?;
    let os = gauge(
        "domain_os_info",
        "The guest OS as detected, and who named it (agent, agent-file, metadata, none); always 1",
        &["uri", "domain", "os", "source"],
    )?;
    let media = gauge(
        "drive_media_info",
        "A removable drive (CD-ROM, floppy) and the media it holds now (source empty when none); always 1",
        &["uri", "domain", "target", "source"],
    )?;
    let differ = gauge(
        "drive_live_config_differ",
        "1 when the running domain and its persistent config hold different media in the drive",
        &["uri", "domain", "target"],
    )?;
    let duration = gauge(
        "host_scan_duration_seconds",
        "How long the host's last scan took",
        &["uri"],
    )?;
    let success = gauge(
        "host_scan_success",
        "1 when the host's last scan succeeded; the other metrics keep the last good scan's values",
        &["uri"],
    )?;
    let last_success = gauge(
        "host_last_successful_scan_timestamp_seconds",
        "When the host's last good scan ended, in seconds since the Unix epoch",
        &["uri"],
    )?;
    let overdue = gauge(
        "host_scan_overdue_seconds",
        "How far the host is behind its scan interval: how late its last scan started, or how long past due its next one is; 0 while it keeps the interval",
        &["uri"],
    )?;

    let now = Instant::now();
    for host in hosts {
        let uri = host.uri.as_str();
        if let Some(took) = host.last_duration {
            duration.with_label_values(&[uri]).set(took.as_secs_f64());
        }
        success.with_label_values(&[uri]).set(
            if host.last_error.is_none() && host.last_success.is_some() {
                1.0
            } else {
                0.0
            },
        );
        overdue
            .with_label_values(&[uri])
            .set(host.overdue(now).as_secs_f64());
        if let Some(at) = host.last_success {
            let seconds = at
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            last_success.with_label_values(&[uri]).set(seconds);
        }
        for row in &host.domains {
            let labels = [uri, row.name.as_str()];
            state
                .with_label_values(&[uri, &row.name, &row.state.to_string()])
                .set(1.0);
            if let Some(n) = row.vcpus {
                vcpus.with_label_values(&labels).set(f64::from(n));
            }
            if let Some(kib) = row.memory_used_kib {
                memory_used
                    .with_label_values(&labels)
                    .set(kib as f64 * 1024.0);
            }
            if let Some(kib) = row.memory_max_kib {
                memory_max
                    .with_label_values(&labels)
                    .set(kib as f64 * 1024.0);
            }
            if let Some(ns) = row.cpu_time_ns {
                cpu.with_label_values(&labels).inc_by(ns as f64 / 1e9);
            }
            let answered = matches!(row.os_source, Some(OsSource::Agent | OsSource::AgentFile));
            agent.with_label_values(&labels).set(
                if answered && row.state == DomainState::Running {
                    1.0
                } else {
                    0.0
                },
            );
            let source = row.os_source.map_or("none", OsSource::as_str);
            os.with_label_values(&[uri, &row.name, &row.os, source])
                .set(1.0);
        }
        for drive in &host.drives {
            let source = drive.source.as_deref().unwrap_or("");
            media
                .with_label_values(&[uri, &drive.domain, &drive.target, source])
                .set(1.0);
            differ
                .with_label_values(&[uri, &drive.domain, &drive.target])
                .set(if drive.live_config_differ { 1.0 } else { 0.0 });
        }
    }
    let mut text = Vec::new();
    TextEncoder::new().encode(&registry.gather(), &mut text)?;
    Ok(String::from_utf8(text)?)
}
