//! The command-line layer: turns arguments into options, runs subcommands,
//! and hosts the interactive menu.

mod args;
mod boot_iso;
mod complete;
mod library;
mod media;
mod menu;
mod migrate_check;
mod progress;
mod prompt;
mod render;
mod report;
mod request;
mod status;
mod upload;

use std::io::{self, Write};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};

pub use args::{Args, Command};
pub use complete::complete_from_env;
use menu::{Refresh, run_menu};
use request::{Options, Request};

use crate::fleet::Fleet;
use crate::probe::Figures;
use crate::virsh::descriptors;

pub fn run(args: Args) -> Result<ExitCode> {
    let options = Options::from_args(&args)?;
    // migrate-check's destinations are hosts of the run, after its sources.
    let (connections, sources) = match &args.command {
        Some(Command::MigrateCheck { to, .. }) => {
            migrate_check::connections(&options.connections, to, args.hosts.is_some())?
        }
        _ => (options.connections.clone(), None),
    };
    // An upload's calls come one after another: a second session per
    // host would only cost its handshake (about a second over ssh).
    let sessions = match args.command {
        Some(Command::Upload { .. }) => options.sessions.or(Some(1)),
        _ => options.sessions,
    };
    let fleet = Arc::new(Fleet::new(
        &connections,
        &options.virsh,
        &options.probe,
        sessions,
        fit_descriptors(options.max_connections, &args.command),
    ));
    let colour = request::colour(args.color);
    // comfy-table colours through crossterm, which reads NO_COLOR by
    // itself: the decision above is the one that counts.
    crossterm::style::force_color_output(colour);
    let stdout = io::stdout();
    let mut out = prompt::Sink::new(stdout.lock());
    if args.version {
        return status::versions(&fleet, args.verbose, &mut out);
    }
    let code = match Request::new(args.command, &options.probe) {
        Request::Isos { query, json } => media::isos(&fleet, &query, json, colour, &mut out)?,
        Request::Mount { request, change } => prompt::with_stdin(&mut out, |prompt| {
            media::mount(&fleet, prompt, &request, change)
        })?,
        Request::Eject { selection, change } => prompt::with_stdin(&mut out, |prompt| {
            media::eject(&fleet, prompt, &selection, change)
        })?,
        Request::BootIso(request) => prompt::with_stdin(&mut out, |prompt| {
            boot_iso::boot_iso(&fleet, prompt, &request)
        })?,
        Request::Library { unused, json } => {
            library::library(&fleet, unused, json, colour, &mut out)?
        }
        Request::DeleteIso(request) => prompt::with_stdin(&mut out, |prompt| {
            library::delete_iso(&fleet, prompt, &request)
        })?,
        Request::Upload(request) => upload::upload(&fleet, &request, &mut out)?,
        Request::MigrateCheck { request, change } => prompt::with_stdin(&mut out, |prompt| {
            migrate_check::migrate_check(&fleet, prompt, &request, sources, change)
        })?,
        Request::Status { json, pattern } => {
            status::status(&fleet, json, pattern.as_ref(), colour, &mut out)?
        }
        Request::Completions(shell) => {
            let mut command = <Args as clap::CommandFactory>::command();
            // `generate` panics when a write fails: it writes into memory,
            // and the one write that can fail is ours.
            let mut script = Vec::new();
            clap_complete::aot::generate(shell, &mut command, "dismount_iso_qemu", &mut script);
            out.write_all(&script)
                .context("cannot write the completion script")?;
            ExitCode::SUCCESS
        }
        Request::Manpage(dir) => {
            let command = <Args as clap::CommandFactory>::command();
            match dir {
                Some(dir) => clap_mangen::generate_to(command, &dir)
                    .with_context(|| format!("cannot write man pages into {}", dir.display()))?,
                None => clap_mangen::Man::new(command)
                    .render(&mut out)
                    .context("cannot write the man page")?,
            }
            ExitCode::SUCCESS
        }
        Request::Serve(serve) => {
            drop(out);
            crate::serve::run(fleet, &serve)?;
            return Ok(ExitCode::SUCCESS);
        }
        Request::Menu => {
            let scans = status::scan_fleet(&fleet, Figures::Cached, true)?;
            let code = status::write_scans(&mut out, scans, colour)?;
            let refresh = Refresh::start(Arc::clone(&fleet));
            run_menu(io::stdin().lock(), &mut out, &fleet, &refresh, colour)?;
            code
        }
    };
    match out.flush() {
        // The reader left after the outcome was decided: it stands.
        Err(error) if error.kind() == io::ErrorKind::BrokenPipe => Ok(code),
        flushed => Ok(flushed.map(|()| code)?),
    }
}

/// The budget of sessions the open-files limit has room for (raised to
/// fit where it can be): `max_connections`, unless the hard limit is too
/// low, which a warning says.
fn fit_descriptors(max_connections: usize, command: &Option<Command>) -> usize {
    let others = match command {
        Some(Command::Serve { .. }) => crate::serve::MAX_HTTP_CONNECTIONS,
        _ => 0,
    };
    let fit = descriptors::make_room(max_connections, others);
    if fit < max_connections {
        eprintln!(
            "dismount_iso_qemu: warning: the open-files limit (ulimit -n) is {}, room for \
             {fit} virsh session(s) at once, not --max-connections {max_connections}",
            descriptors::soft_limit()
        );
    }
    fit
}

/// Whether the error is a closed pipe on the tool's own output (`| head`):
/// the console's failure (`prompt::ConsoleError`) of kind `BrokenPipe`,
/// not any broken pipe in the chain (one to virsh's stdin is a failure).
pub fn is_broken_pipe(error: &anyhow::Error) -> bool {
    prompt::ConsoleError::closed_pipe(error)
}
