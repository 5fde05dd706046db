//! `serve`: the Prometheus exporter's command line, turned into
//! `serve::ServeOptions`; the exporter itself is `src/serve/`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Result;

use crate::cli::options::{Context, FleetShape, Options};
use crate::serve::{MAX_HTTP_CONNECTIONS, ServeOptions};

const EXAMPLES: &str = "\
Examples:
  dismount_iso_qemu serve
  dismount_iso_qemu --hosts /etc/dismount_iso_qemu/hosts serve --listen 0.0.0.0:9177
  dismount_iso_qemu serve --web.config.file /etc/dismount_iso_qemu/web.yml --log-format json
  dismount_iso_qemu --hosts hosts.txt --cache-ttl 30s serve --no-io-metrics --no-guest-filesystems";

/// Serve Prometheus metrics (/metrics) and a health check (/healthz) over HTTP, from background scans of every host
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct ServeArgs {
    /// Address to listen on
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9177")]
    listen: SocketAddr,
    /// Log lines on stderr as text or as JSON objects; levels from RUST_LOG (default info)
    #[arg(long, value_name = "FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Prometheus exporter-toolkit web configuration file (YAML): TLS from tls_server_config, basic auth from basic_auth_users (bcrypt hashes), as node_exporter reads it
    #[arg(long = "web.config.file", value_name = "FILE")]
    web_config_file: Option<PathBuf>,
    /// Leave out the disk and network figures (domstats --block --interface): for hosts whose I/O another exporter already serves
    #[arg(long)]
    no_io_metrics: bool,
    /// Leave out the guests' filesystems (guestinfo --filesystem): for guests that run node_exporter
    #[arg(long)]
    no_guest_filesystems: bool,
}

/// How `serve` writes its log lines (to stderr).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

impl ServeArgs {
    /// The HTTP connections' descriptors beside virsh's sessions; the
    /// guests' filesystems exported unless told not to.
    pub fn shape(&self, options: &Options) -> FleetShape {
        FleetShape {
            other_descriptors: MAX_HTTP_CONNECTIONS,
            filesystems: !self.no_guest_filesystems,
            ..options.shape()
        }
    }

    /// Serves until a signal ends the tool; every scan each refresh
    /// interval. Nothing goes to stdout.
    pub fn run(self, context: &Context) -> Result<ExitCode> {
        let options = ServeOptions {
            listen: self.listen,
            interval: context.options.probe.refresh_interval(),
            json_logs: self.log_format == LogFormat::Json,
            web_config: self.web_config_file,
            io_metrics: !self.no_io_metrics,
        };
        crate::serve::run(Arc::clone(&context.fleet), &options)?;
        Ok(ExitCode::SUCCESS)
    }
}
