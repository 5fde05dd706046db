//! The command-line layer: turns arguments into options, runs subcommands,
//! and hosts the interactive menu.

mod args;
mod media;
mod menu;
mod progress;
mod render;

use std::io::{self, Write};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Result;

pub use args::{Args, Command};
pub use menu::{Refresh, run_menu};
pub use render::status_table;

use crate::probe::{ProbeManager, ProbeOptions};
use crate::virsh::{SessionRunner, Virsh, VirshConfig};
use progress::{Figures, scan_with_progress};

/// How many long-lived virsh processes (over ssh, connections) one host
/// gets unless `--sessions` says: parallel agent probes share them.
const SESSIONS_PER_HOST: usize = 4;

/// Everything the core needs, free of clap types.
#[derive(Debug, Clone)]
pub struct Options {
    pub virsh: VirshConfig,
    pub probe: ProbeOptions,
}

impl From<&Args> for Options {
    fn from(args: &Args) -> Self {
        // An exported but empty LIBVIRT_URI means "not set".
        let connect = args.connect.clone().filter(|uri| !uri.is_empty());
        // The test driver lives inside virsh itself: a second session would
        // only parse its node file again (0.15 s of CPU for 1000 domains).
        let default_sessions = match &connect {
            Some(uri) if uri.starts_with("test:") => 1,
            _ => usize::from(args.jobs).min(SESSIONS_PER_HOST),
        };
        Options {
            virsh: VirshConfig {
                program: args.virsh.clone(),
                connect,
                timeout: args.timeout,
                sessions: args.sessions.map_or(default_sessions, usize::from),
            },
            probe: ProbeOptions {
                timeout: args.timeout,
                cache_ttl: args.cache_ttl,
                os_ttl: args.os_ttl,
                jobs: usize::from(args.jobs),
            },
        }
    }
}

pub fn run(args: Args) -> Result<ExitCode> {
    let options = Options::from(&args);
    let probes = Arc::new(ProbeManager::new(
        Virsh::new(
            options.virsh.clone(),
            Arc::new(SessionRunner::new(options.virsh.sessions)),
        ),
        options.probe,
    ));
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let mut code = ExitCode::SUCCESS;
    match args.command {
        Some(Command::Isos { json, mounted, iso }) => {
            let query = media::IsoQuery { mounted, iso };
            media::isos(probes.virsh(), &query, json, &mut out)?;
        }
        Some(Command::Mount {
            domain,
            iso,
            target,
            attach,
            change,
        }) => {
            let request = media::MountRequest {
                domain,
                iso,
                target,
                attach,
            };
            code = media::with_stdin(&mut out, |prompt| {
                media::mount(probes.virsh(), prompt, &request, (&change).into())
            })?;
        }
        Some(Command::Eject {
            domain,
            target,
            all,
            iso,
            change,
        }) => {
            let selection = media::EjectSelection::new(domain, target, all, iso);
            code = media::with_stdin(&mut out, |prompt| {
                media::eject(probes.virsh(), prompt, &selection, (&change).into())
            })?;
        }
        Some(Command::Status { json }) => {
            let rows = scan_with_progress(&probes, Figures::Cached)?;
            if json {
                serde_json::to_writer_pretty(&mut out, &rows)?;
                writeln!(out)?;
            } else {
                out.write_all(status_table(&rows).as_bytes())?;
            }
        }
        None => {
            let rows = scan_with_progress(&probes, Figures::Cached)?;
            out.write_all(status_table(&rows).as_bytes())?;
            let refresh = Refresh::start(Arc::clone(&probes));
            run_menu(io::stdin().lock(), &mut out, &probes, &refresh)?;
        }
    }
    out.flush()?;
    Ok(code)
}

/// Whether the error chain ends in a closed pipe on our output.
pub fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
            || cause
                .downcast_ref::<serde_json::Error>()
                .and_then(|json| json.io_error_kind())
                == Some(io::ErrorKind::BrokenPipe)
    })
}
