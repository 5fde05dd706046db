//! `upload`: an ISO into a storage pool of every host given, side by
//! side, with a progress bar per host on stderr when it is a terminal.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use anyhow::Result;
use clap::ValueHint;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::cli::exit;
use crate::cli::options::{Context, FleetShape, Options};
use crate::cli::render::format_bytes;
use crate::fleet::{Fleet, Host, HostScan};
use crate::media::{LocalIso, MediaManager, UploadOptions, Uploaded, check_file};
use crate::utils::sanitize;
use crate::virsh::groups::{self, last_words};

const EXAMPLES: &str = "\
Examples:
  dismount_iso_qemu upload ./debian-12.iso --pool isos
  dismount_iso_qemu upload ./debian-12.iso --pool isos --sha256 9d5c7f3e0b6f1e2a4c8d0b7a6e5f4c3b2a1908f7e6d5c4b3a29180f7e6d5c4b3 --verify
  dismount_iso_qemu --hosts hosts.txt upload ./rescue.iso --pool isos --name rescue-2026.iso
  dismount_iso_qemu upload ./debian-12.iso --pool isos --replace";

/// Upload an ISO into a storage pool of every host given, through the libvirt connection (no scp), checked before and after
// Plain values already, so the request itself, with no copy field by
// field (`mount --upload` makes one too).
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct UploadArgs {
    /// The ISO file on this machine
    #[arg(value_hint = ValueHint::FilePath)]
    pub file: String,
    /// The storage pool (it must exist and be active on each host)
    #[arg(long, value_name = "POOL")]
    pub pool: String,
    /// The volume's name [default: the file's name]
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Refuse unless the file has this SHA-256 (checked before anything is sent)
    #[arg(long, value_name = "HEX")]
    pub sha256: Option<String>,
    /// Read each volume back afterwards and compare SHA-256
    #[arg(long)]
    pub verify: bool,
    /// Replace a volume of that name (refused while a drive holds it)
    #[arg(long)]
    pub replace: bool,
    /// Upload a file without the ISO 9660 signature
    #[arg(long)]
    pub force: bool,
}

impl UploadArgs {
    /// An upload's calls come one after another: a second session per
    /// host would only cost its handshake (about a second over ssh).
    pub fn shape(&self, options: &Options) -> FleetShape {
        FleetShape {
            sessions: options.sessions.or(Some(1)),
            ..options.shape()
        }
    }

    pub fn run(self, context: &Context) -> Result<ExitCode> {
        context.to_stdout(|out| upload(&context.fleet, &self, out))
    }

    /// The checks made before anything is sent (see [`check_file`]).
    pub fn check(&self) -> Result<LocalIso> {
        check_file(
            &self.file,
            self.name.as_deref(),
            self.sha256.as_deref(),
            self.force,
        )
    }

    pub fn options(&self) -> UploadOptions {
        UploadOptions {
            pool: self.pool.clone(),
            verify: self.verify,
            replace: self.replace,
        }
    }
}

/// `upload`: the file checked once, then sent to every host at once; a
/// line per host, and the exit status of a fleet command (0 all, 1 none,
/// 3 some); 128 + the signal after one, every host's line said (see
/// [`interrupted`]).
fn upload(fleet: &Fleet, request: &UploadArgs, out: &mut impl Write) -> Result<ExitCode> {
    let iso = request.check()?;
    // Until the lines are written: a signal after the uploads ended is
    // still told with what was done, never a silent exit.
    let _deferred = groups::defer_signals();
    let scans = upload_to(
        fleet,
        &fleet.hosts.iter().collect::<Vec<_>>(),
        &iso,
        request,
    );
    if let Some(code) = interrupted(&scans, &request.pool, &iso) {
        return Ok(code);
    }
    let code = if fleet.is_single() {
        let scan = scans.into_iter().next().expect("one host");
        let uploaded = scan.result?;
        writeln!(out, "{}", done_line(&scan.uri, &iso, request, &uploaded))?;
        ExitCode::SUCCESS
    } else {
        let mut failed = Vec::new();
        for scan in &scans {
            match &scan.result {
                Ok(uploaded) => {
                    writeln!(out, "{}", done_line(&scan.uri, &iso, request, uploaded))?;
                }
                Err(error) => failed.push(crate::cli::report::host_error(&scan.uri, error)),
            }
        }
        out.flush()?;
        crate::cli::report::report_failed_hosts(&failed, scans.len())?
    };
    Ok(groups::caught_signal().map_or(code, exit::signal))
}

/// After a signal: a line per host on stderr, and the exit status. The
/// rule: an upload is complete once every check has passed (the size,
/// `--sha256` and `--verify` on the bytes sent); a signal before that
/// deletes the volume this run created and says so, a signal after it
/// keeps the volume and says that the upload had completed.
pub fn interrupted(scans: &[HostScan<Uploaded>], pool: &str, iso: &LocalIso) -> Option<ExitCode> {
    let signal = groups::caught_signal()?;
    for scan in scans {
        let line = match &scan.result {
            Err(error) => crate::cli::report::host_error(&scan.uri, error),
            Ok(uploaded) => format!(
                "{}: interrupted after the upload had completed and been checked; the volume \
                 {}/{} ({}) was kept",
                sanitize(&scan.uri),
                sanitize(pool),
                sanitize(&iso.name),
                sanitize(&uploaded.path)
            ),
        };
        eprintln!("dismount_iso_qemu: {line}");
    }
    Some(exit::signal(signal))
}

/// `ok: FILE -> POOL/NAME on HOST (SIZE, …)`, sanitized.
fn done_line(uri: &str, iso: &LocalIso, request: &UploadArgs, uploaded: &Uploaded) -> String {
    let check = match (&uploaded.verified, &request.sha256) {
        (Some(sha256), _) => format!("read back: SHA-256 {sha256}"),
        (None, Some(_)) => "size checked, the bytes sent match --sha256".to_owned(),
        (None, None) => "size checked".to_owned(),
    };
    format!(
        "ok: uploaded {} to {}/{} on {} ({}, {check})",
        sanitize(&iso.file),
        sanitize(&request.pool),
        sanitize(&iso.name),
        sanitize(uri),
        format_bytes(iso.size)
    )
}

/// Uploads to each of `hosts` side by side (through [`Fleet::each`], so
/// the fleet's limits apply), with signals deferred so that a volume
/// created is deleted after Ctrl-C.
pub fn upload_to(
    fleet: &Fleet,
    hosts: &[&Host],
    iso: &LocalIso,
    request: &UploadArgs,
) -> Vec<HostScan<Uploaded>> {
    let options = request.options();
    let bars = Bars::new(hosts, iso.size);
    let _deferred = groups::defer_signals();
    // Said only if a second signal ends the tool during the clean-up.
    last_words::add(&format!(
        "dismount_iso_qemu: interrupted during the clean-up: a volume {}/{} may be left \
         half-uploaded; `library` shows it, `delete-iso` deletes it\n",
        sanitize(&request.pool),
        sanitize(&iso.name)
    ));
    let scans = fleet.each(|host| {
        let Some(index) = hosts.iter().position(|h| std::ptr::eq(*h, host)) else {
            // Not asked for this host: its result is dropped below.
            return Ok(None);
        };
        let bar = bars.get(index);
        let media = MediaManager::new(host.virsh().clone());
        let uploaded = media.upload(iso, &options, &|sent| {
            if let Some(bar) = bar {
                bar.set_position(sent);
            }
        });
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        uploaded.map(Some)
    });
    last_words::clear();
    scans
        .into_iter()
        .filter_map(|scan| match scan.result {
            Ok(None) => None,
            Ok(Some(uploaded)) => Some(HostScan {
                uri: scan.uri,
                result: Ok(uploaded),
            }),
            Err(error) => Some(HostScan {
                uri: scan.uri,
                result: Err(error),
            }),
        })
        .collect()
}

/// A progress bar: `prefix`, bytes, rate and time left.
pub fn progress_bar(prefix: &str, size: u64) -> ProgressBar {
    let bar = ProgressBar::new(size);
    let style = ProgressStyle::with_template(
        "{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta} left",
    )
    .map(|style| style.progress_chars("=> "));
    if let Ok(style) = style {
        bar.set_style(style);
    }
    bar.set_prefix(prefix.to_owned());
    bar
}

/// A progress bar per host on stderr, only on a terminal: bytes, rate
/// and time left.
struct Bars {
    bars: Vec<ProgressBar>,
    _multi: Option<MultiProgress>,
}

impl Bars {
    fn new(hosts: &[&Host], size: u64) -> Self {
        if !std::io::stderr().is_terminal() {
            return Bars {
                bars: Vec::new(),
                _multi: None,
            };
        }
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let bars = hosts
            .iter()
            .map(|host| multi.add(progress_bar(&sanitize(&host.uri()), size)))
            .collect();
        Bars {
            bars,
            _multi: Some(multi),
        }
    }

    fn get(&self, index: usize) -> Option<&ProgressBar> {
        self.bars.get(index)
    }
}
