//! The command-line layer: turns arguments into options, runs subcommands,
//! and hosts the interactive menu.

mod args;
mod library;
mod media;
mod menu;
mod progress;
mod prompt;
mod render;
mod report;
mod request;
mod status;
mod upload;

use std::collections::HashSet;
use std::ffi::OsString;
use std::io::{self, IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};

pub use args::{Args, Command};
use menu::{Refresh, run_menu};

use crate::fleet::Fleet;
use crate::probe::{Figures, ProbeOptions};
use crate::virsh::{Uri, VirshConfig, descriptors};

/// Everything the core needs, free of clap types.
#[derive(Debug, Clone)]
struct Options {
    /// The hosts, in order; `None` is virsh's default connection.
    pub connections: Vec<Option<String>>,
    /// How to run virsh; `connect` and `sessions` are set per host.
    pub virsh: VirshConfig,
    /// `--sessions`, when given.
    pub sessions: Option<usize>,
    /// `--max-connections`: the virsh sessions open at once, all hosts together.
    pub max_connections: usize,
    pub probe: ProbeOptions,
}

impl Options {
    pub fn from_args(args: &Args) -> Result<Self> {
        Ok(Options {
            connections: connections(
                &args.connect,
                args.hosts.as_deref(),
                std::env::var_os("LIBVIRT_URI"),
            )?,
            virsh: VirshConfig {
                program: args.virsh.clone(),
                connect: None,
                timeout: args.timeout,
                sessions: 1,
            },
            sessions: args.sessions.map(usize::from),
            max_connections: usize::from(args.max_connections),
            probe: ProbeOptions {
                timeout: args.timeout,
                cache_ttl: args.cache_ttl,
                os_ttl: args.os_ttl,
                jobs: usize::from(args.jobs),
            },
        })
    }
}

/// The hosts of `--connect` (repeatable) and `--hosts FILE`, in that
/// order, each once however it is spelled (the first spelling is the one
/// virsh gets); with neither, `libvirt_uri` (LIBVIRT_URI), and else, or
/// when that is empty, virsh's default connection.
fn connections(
    connect: &[String],
    hosts_file: Option<&Path>,
    libvirt_uri: Option<OsString>,
) -> Result<Vec<Option<String>>> {
    let mut uris: Vec<String> = connect.iter().filter(|u| !u.is_empty()).cloned().collect();
    if let Some(file) = hosts_file {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read the hosts file {}", file.display()))?;
        let hosts = parse_hosts(&text);
        // An empty file is a mistake: taken for "no hosts given", it
        // would aim every command at the local host instead.
        if hosts.is_empty() {
            bail!("the hosts file {} lists no host", file.display());
        }
        uris.extend(hosts);
    } else if connect.is_empty() {
        let uri = libvirt_uri
            .map(OsString::into_string)
            .transpose()
            .map_err(|_| anyhow!("LIBVIRT_URI is not valid UTF-8"))?;
        uris.extend(uri.filter(|uri| !uri.is_empty()));
    }
    let mut seen = HashSet::new();
    uris.retain(|uri| seen.insert(Uri::parse(uri).canonical()));
    Ok(if uris.is_empty() {
        vec![None]
    } else {
        uris.into_iter().map(Some).collect()
    })
}

/// One URI a line; blank lines and `#` comments (whole lines or after
/// the URI) are skipped, and so is a byte order mark before the first.
fn parse_hosts(text: &str) -> Vec<String> {
    text.strip_prefix('\u{feff}')
        .unwrap_or(text)
        .lines()
        .map(|line| line.split_once('#').map_or(line, |(uri, _)| uri).trim())
        .filter(|uri| !uri.is_empty())
        .map(str::to_owned)
        .collect()
}

pub fn run(args: Args) -> Result<ExitCode> {
    let options = Options::from_args(&args)?;
    // An upload's calls come one after another: a second session per
    // host would only cost its handshake (about a second over ssh).
    let sessions = match args.command {
        Some(Command::Upload { .. }) => options.sessions.or(Some(1)),
        _ => options.sessions,
    };
    let fleet = Arc::new(Fleet::new(
        &options.connections,
        &options.virsh,
        &options.probe,
        sessions,
        fit_descriptors(options.max_connections, &args.command),
    ));
    let colour = match args.color {
        args::ColorChoice::Always => true,
        args::ColorChoice::Never => false,
        // https://no-color.org: any non-empty NO_COLOR turns colour off;
        // an explicit --color always still wins.
        args::ColorChoice::Auto => {
            io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        }
    };
    // comfy-table colours through crossterm, which reads NO_COLOR by
    // itself: the decision above is the one that counts.
    crossterm::style::force_color_output(colour);
    let stdout = io::stdout();
    let mut out = stdout.lock();
    if args.version {
        return status::versions(&fleet, args.verbose, &mut out);
    }
    let code = match args.command {
        Some(Command::Isos {
            json,
            mounted,
            iso,
            pattern,
        }) => {
            let query = request::IsoQuery {
                mounted,
                iso,
                pattern,
            };
            media::isos(&fleet, &query, json, colour, &mut out)?
        }
        Some(Command::Mount {
            domain,
            iso,
            upload,
            pool,
            pattern,
            all,
            target,
            attach,
            change,
        }) => {
            // `DOMAIN ISO`, `DOMAIN --upload FILE --pool POOL`, or
            // `--match REGEX ISO`: clap fills the first positional first,
            // so with --match it holds the ISO.
            let (selection, iso) = match (pattern, iso, &upload) {
                (None, Some(iso), None) => (request::MountSelection::Domain(domain), iso),
                (None, None, Some(file)) => (request::MountSelection::Domain(domain), file.clone()),
                (Some(pattern), None, None) => {
                    (request::MountSelection::Matching { pattern, all }, domain)
                }
                (Some(_), Some(_), _) => usage_error("with --match, mount takes the ISO alone"),
                _ => usage_error(
                    "mount takes DOMAIN ISO (or DOMAIN --upload FILE --pool POOL, or --match REGEX ISO)",
                ),
            };
            let upload = upload.map(|file| upload::UploadRequest {
                file,
                pool: pool.unwrap_or_default(),
                name: None,
                sha256: None,
                verify: false,
                replace: false,
                // mount's --force is the tray's; a file without the ISO
                // signature goes through `upload --force` first.
                force: false,
            });
            let request = request::MountRequest {
                selection,
                iso,
                target,
                attach,
                upload,
            };
            prompt::with_stdin(&mut out, |prompt| {
                media::mount(&fleet, prompt, &request, (&change).into())
            })?
        }
        Some(Command::Eject {
            domain,
            target,
            all,
            iso,
            pattern,
            change,
        }) => {
            let selection = request::EjectSelection::new(domain, target, all, iso, pattern);
            prompt::with_stdin(&mut out, |prompt| {
                media::eject(&fleet, prompt, &selection, (&change).into())
            })?
        }
        Some(Command::Library { unused, json }) => {
            library::library(&fleet, unused, json, colour, &mut out)?
        }
        Some(Command::DeleteIso {
            iso,
            file,
            yes,
            dry_run,
        }) => {
            let request = library::DeleteRequest {
                iso,
                file,
                yes,
                dry_run,
            };
            prompt::with_stdin(&mut out, |prompt| {
                library::delete_iso(&fleet, prompt, &request)
            })?
        }
        Some(Command::Upload {
            file,
            pool,
            name,
            sha256,
            verify,
            replace,
            force,
        }) => {
            let request = upload::UploadRequest {
                file,
                pool,
                name,
                sha256,
                verify,
                replace,
                force,
            };
            upload::upload(&fleet, &request, &mut out)?
        }
        Some(Command::Status { json, pattern }) => {
            status::status(&fleet, json, pattern.as_ref(), colour, &mut out)?
        }
        Some(Command::Completions { shell }) => {
            let mut command = <Args as clap::CommandFactory>::command();
            // `generate` panics when a write fails: it writes into memory,
            // and the one write that can fail is ours.
            let mut script = Vec::new();
            clap_complete::aot::generate(shell, &mut command, "dismount_iso_qemu", &mut script);
            out.write_all(&script)
                .context("cannot write the completion script")?;
            ExitCode::SUCCESS
        }
        Some(Command::Manpage { dir }) => {
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
        Some(Command::Serve {
            listen,
            log_format,
            web_config_file,
            no_io_metrics,
        }) => {
            drop(out);
            let interval = options.probe.refresh_interval();
            crate::serve::run(
                fleet,
                &crate::serve::ServeOptions {
                    listen,
                    interval,
                    json_logs: log_format == args::LogFormat::Json,
                    web_config: web_config_file,
                    io_metrics: !no_io_metrics,
                },
            )?;
            return Ok(ExitCode::SUCCESS);
        }
        None => {
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

/// A usage error found after parsing: clap's one line, exit 2.
fn usage_error(message: &str) -> ! {
    <Args as clap::CommandFactory>::command()
        .error(clap::error::ErrorKind::ArgumentConflict, message)
        .exit()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_file_skips_comments_and_blank_lines() {
        let text = "# the fleet\nqemu+ssh://kvm1/system\n\n  qemu+ssh://kvm2/system  # rack 2\n#qemu:///off\n";
        assert_eq!(
            parse_hosts(text),
            ["qemu+ssh://kvm1/system", "qemu+ssh://kvm2/system"]
        );
    }

    #[test]
    fn a_byte_order_mark_is_not_part_of_the_first_host() {
        assert_eq!(parse_hosts("\u{feff}qemu:///system\n"), ["qemu:///system"]);
        assert!(parse_hosts("\u{feff}# nothing\n").is_empty());
    }

    #[test]
    fn connect_then_hosts_file_each_once_and_none_is_the_default() {
        assert_eq!(connections(&[], None, None).unwrap(), [None]);
        assert_eq!(connections(&["".into()], None, None).unwrap(), [None]);
        let dir = std::env::temp_dir().join(format!("hosts-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("hosts");
        std::fs::write(
            &file,
            "b\na\nqemu+ssh://KVM1:22/system?\nqemu+ssh://kvm1/system\n",
        )
        .unwrap();
        let env = Some(OsString::from("env:///x"));
        assert_eq!(
            connections(&["a".into(), "c".into()], Some(&file), env.clone()).unwrap(),
            [
                Some("a".into()),
                Some("c".into()),
                Some("b".into()),
                Some("qemu+ssh://KVM1:22/system?".into())
            ]
        );
        // LIBVIRT_URI only without --connect and --hosts.
        assert_eq!(connections(&[], Some(&file), env.clone()).unwrap().len(), 3);
        assert_eq!(
            connections(&["a".into()], None, env.clone()).unwrap(),
            [Some("a".into())]
        );
        assert_eq!(
            connections(&[], None, env).unwrap(),
            [Some("env:///x".into())]
        );
        assert_eq!(connections(&[], None, Some("".into())).unwrap(), [None]);

        std::fs::write(&file, "# retired: qemu+ssh://kvm0/system\n\n").unwrap();
        let empty = connections(&[], Some(&file), None).unwrap_err();
        assert_eq!(
            format!("{empty:#}"),
            format!("the hosts file {} lists no host", file.display())
        );
        let missing = connections(&[], Some(&dir.join("nope")), None).unwrap_err();
        assert!(
            format!("{missing:#}").starts_with("cannot read the hosts file"),
            "{missing:#}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
