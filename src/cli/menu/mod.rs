//! The interactive menu: its loop over any `BufRead` and `Write` (so tests
//! drive it with plain text), and the background refresh it shows.

use std::io::{self, BufRead, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread;
use std::time::SystemTime;

use anyhow::Result;

mod flows;

use super::commands::status::{scan_fleet, write_scans};
use super::options::{Context, FleetShape, Options};
use super::prompt::{Answer, Console, ConsoleError};
use super::render::fleet_table;
use crate::fleet::{Fleet, HostScan};
use crate::probe::{DomainStatus, Figures};

/// The menu's table has a Disk (used/total) column from this many
/// columns on: the lab's table with it is about 125 wide, and an OS name
/// or a Host column can make it wider.
const MENU_DISKS_COLUMNS: u16 = 160;

/// The menu's fleet: the guests' filesystems asked for on a terminal wide
/// enough for the Disk column.
pub fn shape(options: &Options) -> FleetShape {
    FleetShape {
        filesystems: stdout_columns().is_some_and(|columns| columns >= MENU_DISKS_COLUMNS),
        ..options.shape()
    }
}

/// The width of the terminal stdout is; `None` where it is no terminal.
fn stdout_columns() -> Option<u16> {
    // SAFETY: an all-zero winsize is a valid value, and TIOCGWINSZ writes
    // one into the struct it is handed, nothing else.
    let mut size: libc::winsize = unsafe { std::mem::zeroed() };
    let asked = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) };
    (asked == 0 && size.ws_col > 0).then_some(size.ws_col)
}

/// No subcommand: the VM table, then the menu until Exit; the table's
/// status is the run's.
pub fn run(context: &Context) -> Result<ExitCode> {
    context.to_stdout(|out| {
        let scans = scan_fleet(&context.fleet, Figures::Cached, true)?;
        let code = write_scans(out, scans, context.colour)?;
        let refresh = Refresh::start(Arc::clone(&context.fleet));
        run_menu(
            io::stdin().lock(),
            out,
            &context.fleet,
            &refresh,
            context.colour,
        )?;
        Ok(code)
    })
}

/// A background scan of every host.
pub type Update = Vec<HostScan<Vec<DomainStatus>>>;

/// Rescans in the background every cache TTL and hands the results to the
/// menu over a channel; the menu shows the newest at its next render, so
/// nothing is ever printed into a prompt the user is typing at. Dropping
/// it stops the thread at its next wake-up.
pub struct Refresh {
    updates: Receiver<Update>,
    _stop: Sender<()>,
}

impl Refresh {
    pub fn start(fleet: Arc<Fleet>) -> Self {
        let interval = fleet.hosts[0].probes.options().refresh_interval();
        let (send_update, updates) = mpsc::channel();
        let (stop, stopped) = mpsc::channel::<()>();
        thread::spawn(move || {
            while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
                let update = fleet.scan(Figures::Cached);
                if send_update.send(update).is_err() {
                    return;
                }
            }
        });
        Refresh {
            updates,
            _stop: stop,
        }
    }

    /// The newest update since the last call, if any.
    fn latest(&self) -> Option<Update> {
        self.updates.try_iter().last()
    }
}

// Exit keeps its number 5 from before the library came: the entries
// after it are newer.
const MENU: &str = "\n1) Mount ISO\n2) Scan mounted ISOs\n3) Eject ISO\n4) Rescan\n5) Exit\n6) ISO library\n\
                    7) Check migration\n8) Boot from ISO\n";

/// Runs the menu until Exit, `q` or end of input.
fn run_menu<R: BufRead, W: Write>(
    input: R,
    output: W,
    fleet: &Fleet,
    refresh: &Refresh,
    colour: bool,
) -> Result<()> {
    let mut console = Console::new(input, output);
    loop {
        if let Some(update) = refresh.latest() {
            show_update(console.out(), update, colour)?;
        }
        write!(console.out(), "{MENU}")?;
        let choice = match console.ask("Select option: ")? {
            Answer::Text(choice) => choice,
            Answer::Quit | Answer::End => return Ok(()),
        };
        let outcome = match choice.as_str() {
            "1" => flows::mount(&mut console, fleet),
            "2" => flows::scan(&mut console, fleet, colour),
            "3" => flows::eject(&mut console, fleet),
            "4" => scan_fleet(fleet, Figures::Fresh, true)
                .and_then(|scans| show_scans(console.out(), scans, colour)),
            "5" => return Ok(()),
            "6" => flows::library(&mut console, fleet, colour),
            "7" => flows::migration(&mut console, fleet),
            "8" => flows::boot_iso(&mut console, fleet),
            other => {
                writeln!(
                    console.out(),
                    "Invalid choice '{}': enter a number from 1 to 8, or q to quit.",
                    shown(other)
                )?;
                Ok(())
            }
        };
        // A failed action (host unreachable, virsh refused) is reported and
        // the menu goes on; only a broken terminal ends the session.
        if let Err(error) = outcome {
            if ConsoleError::caused(&error) {
                return Err(error);
            }
            writeln!(console.out(), "error: {error:#}")?;
        }
    }
}

/// The most of an invalid choice shown back: enough to see the typo.
const SHOWN_CHARS: usize = 20;

/// `choice` as shown back: sanitized, and cut after [`SHOWN_CHARS`].
fn shown(choice: &str) -> String {
    let mut chars = choice.chars();
    let head: String = chars.by_ref().take(SHOWN_CHARS).collect();
    let cut = if chars.next().is_some() { "…" } else { "" };
    format!("{}{cut}", crate::utils::sanitize(&head))
}

/// The table of the hosts that answered, then a line for each that failed.
fn show_scans(out: &mut impl Write, scans: Update, colour: bool) -> Result<()> {
    let (table, failed) = fleet_table(&scans, colour);
    write!(out, "{table}")?;
    for line in failed {
        writeln!(out, "error: {line}")?;
    }
    Ok(())
}

fn show_update(out: &mut impl Write, update: Update, colour: bool) -> Result<()> {
    let at = humantime::format_rfc3339_seconds(SystemTime::now());
    let (table, failed) = fleet_table(&update, colour);
    if !table.is_empty() {
        write!(out, "\nRefreshed in the background at {at}:\n{table}")?;
    }
    for line in failed {
        writeln!(out, "\nBackground refresh at {at} failed: {line}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::time::Duration;

    use crate::fleet::Host;
    use crate::testing::fake_probes;
    use crate::virsh::fake::FakeRunner;

    /// One host whose virsh is the fake.
    fn probes(fake: &Arc<FakeRunner>) -> Fleet {
        let hour = Duration::from_secs(3600);
        Fleet::of(vec![Host {
            probes: Arc::new(fake_probes(fake, hour, hour)),
            label: None,
        }])
    }

    fn failed(reason: &str) -> Update {
        vec![HostScan {
            uri: "qemu:///fake".into(),
            result: Err(anyhow::anyhow!("{reason}")),
        }]
    }

    /// What the menu printed, given `input`, without colour.
    fn menu_output(input: &[u8], fleet: &Fleet, refresh: &Refresh) -> String {
        let mut out = Vec::new();
        run_menu(input, &mut out, fleet, refresh, false).unwrap();
        String::from_utf8(out).unwrap()
    }

    /// A Refresh fed by the test instead of a background thread.
    fn refresh_from_test() -> (Refresh, Sender<Update>) {
        let (send, updates) = mpsc::channel();
        let (stop, _) = mpsc::channel();
        (
            Refresh {
                updates,
                _stop: stop,
            },
            send,
        )
    }

    #[test]
    fn background_updates_appear_at_the_next_render_not_in_a_prompt() {
        let fake = Arc::new(FakeRunner::default());
        let (refresh, send) = refresh_from_test();
        send.send(failed("first")).unwrap();
        send.send(failed("newest")).unwrap();
        let text = menu_output("x\n5\n".as_bytes(), &probes(&fake), &refresh);
        assert_eq!(fake.process_count(), 0);
        assert!(!text.contains("first"), "only the newest update is shown");
        let update = text
            .find("failed: qemu:///fake: newest")
            .expect("update shown");
        let first_prompt = text.find("Select option:").unwrap();
        assert!(
            update < first_prompt,
            "shown before the menu, not inside a prompt"
        );
        assert_eq!(text.matches("newest").count(), 1, "shown once");
    }

    #[test]
    fn a_failed_rescan_is_reported_and_the_menu_goes_on() {
        let fake = Arc::new(FakeRunner::default());
        fake.refuse_connection("error: failed to connect to the hypervisor\n");
        let (refresh, _send) = refresh_from_test();
        let text = menu_output("4\n5\n".as_bytes(), &probes(&fake), &refresh);
        assert!(
            text.contains("error: cannot list domains on qemu:///fake: failed to connect"),
            "{text}"
        );
        assert_eq!(text.matches("Select option:").count(), 2);
    }

    /// A byte that is not UTF-8 is an answer like any other: refused with
    /// the hint, and the menu goes on (it used to end with an error).
    #[test]
    fn input_that_is_not_utf8_gets_the_hint() {
        let fake = Arc::new(FakeRunner::default());
        let (refresh, _send) = refresh_from_test();
        let text = menu_output(&b"\xff\n5\n"[..], &probes(&fake), &refresh);
        assert!(text.contains("Invalid choice '\u{fffd}'"), "{text}");
        assert_eq!(text.matches("Select option:").count(), 2);
    }

    /// A long invalid choice is shown back cut; a line longer than any
    /// answer is refused whole, and read without being held: the menu
    /// printed a 50 MB line back in full.
    #[test]
    fn a_long_choice_is_cut_and_a_huge_line_refused() {
        let fake = Arc::new(FakeRunner::default());
        let (refresh, _send) = refresh_from_test();
        let long = format!("{}\n", "y".repeat(500));
        let text = menu_output(format!("{long}5\n").as_bytes(), &probes(&fake), &refresh);
        assert!(
            text.contains(&format!("Invalid choice '{}…'", "y".repeat(20))),
            "{text}"
        );
        assert!(text.len() < 1000, "{} bytes", text.len());

        // 64 MiB with no newline, from a reader that holds none of it.
        struct Endless(usize);
        impl std::io::Read for Endless {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                if self.0 == 0 {
                    let tail = b"\n5\n";
                    let n = tail.len().min(buf.len());
                    buf[..n].copy_from_slice(&tail[..n]);
                    self.0 = usize::MAX;
                    return Ok(n);
                }
                if self.0 == usize::MAX {
                    return Ok(0);
                }
                let n = self.0.min(buf.len());
                buf[..n].fill(b'x');
                self.0 -= n;
                Ok(n)
            }
        }
        let input = std::io::BufReader::new(Endless(64 << 20));
        let mut out = Vec::new();
        run_menu(input, &mut out, &probes(&fake), &refresh, false).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("That answer is longer than 8192 bytes: ignored."),
            "{text}"
        );
        assert!(!text.contains("Invalid choice"), "{text}");
        assert!(text.len() < 1000, "{} bytes", text.len());
    }

    /// Input whose first line is `text`, then a read error (a terminal
    /// that hung up: EIO).
    fn input_failing_after(text: &'static str) -> impl BufRead {
        struct Failing(&'static [u8]);
        impl std::io::Read for Failing {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                if self.0.is_empty() {
                    return Err(std::io::Error::from_raw_os_error(libc::EIO));
                }
                let n = self.0.len().min(buf.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        std::io::BufReader::new(Failing(text.as_bytes()))
    }

    /// Output that takes `left` bytes, then fails (EIO).
    struct FailingOutput {
        left: usize,
    }

    impl Write for FailingOutput {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            if self.left == 0 {
                return Err(std::io::Error::from_raw_os_error(libc::EIO));
            }
            let n = self.left.min(bytes.len());
            self.left -= n;
            Ok(n)
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// One shut-off domain whose drives the media entries read.
    fn expect_media_of_lab_off(fake: &FakeRunner) {
        crate::testing::expect_listing_on(
            fake,
            crate::virsh::ListingFor::Media,
            "qemu:///fake",
            &[("lab-off", 5)],
            "",
        );
        fake.expect(
            &["dumpxml", "--inactive", "--domain", "lab-off"],
            0,
            &crate::testing::fixture("virsh/dumpxml-lab-off.xml"),
            "",
        );
    }

    /// The terminal failing at a prompt inside an entry ends the menu at
    /// once, as the terminal's failure: it used to be shown as the entry's
    /// error (`error: Input/output error`) before the menu asked again.
    #[test]
    fn a_terminal_that_fails_inside_an_entry_ends_the_menu() {
        let fake = Arc::new(FakeRunner::default());
        expect_media_of_lab_off(&fake);
        let (refresh, _send) = refresh_from_test();
        let mut out = Vec::new();
        let error = run_menu(
            input_failing_after("1\n"),
            &mut out,
            &probes(&fake),
            &refresh,
            false,
        )
        .unwrap_err();
        fake.assert_all_used();
        let text = String::from_utf8(out).unwrap();
        assert!(ConsoleError::caused(&error), "{error:#}");
        assert!(text.contains("VM number"), "{text}");
        assert!(!text.contains("error:"), "{text}");
        assert_eq!(text.matches("Select option:").count(), 1, "{text}");
    }

    /// Output that fails while an entry writes (the rescan's table) ends
    /// the menu as the terminal's failure; virsh failing for the same
    /// entry is the entry's error, and the menu goes on.
    #[test]
    fn output_that_fails_ends_the_menu_and_virsh_that_fails_does_not() {
        let fake = Arc::new(FakeRunner::default());
        crate::testing::expect_listing_on(
            &fake,
            crate::virsh::ListingFor::Scan,
            "qemu:///fake",
            &[("off", 5)],
            "",
        );
        let dominfo = crate::testing::fixture("virsh/dominfo-qemu-shutoff.txt");
        fake.expect(&["dominfo", "--domain", "off"], 0, &dominfo, "");
        fake.expect(&["dumpxml", "--domain", "off"], 0, "<domain/>", "");
        let (refresh, _send) = refresh_from_test();
        let shown = MENU.len() + "Select option: ".len();
        let error = run_menu(
            "4\n5\n".as_bytes(),
            FailingOutput { left: shown },
            &probes(&fake),
            &refresh,
            false,
        )
        .unwrap_err();
        fake.assert_all_used();
        assert!(ConsoleError::caused(&error), "{error:#}");
        assert_eq!(format!("{error:#}"), "Input/output error (os error 5)");

        let fake = Arc::new(FakeRunner::default());
        fake.refuse_connection("error: failed to connect to the hypervisor\n");
        let mut out = Vec::new();
        run_menu(
            "4\n5\n".as_bytes(),
            &mut out,
            &probes(&fake),
            &refresh,
            false,
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("error: cannot list domains"), "{text}");
        assert_eq!(text.matches("Select option:").count(), 2, "{text}");
    }

    /// A virsh that cannot be started (here: not executable) is an action's
    /// failure, reported as a line; it used to end the menu as if the
    /// terminal had gone.
    #[test]
    fn a_virsh_that_cannot_start_does_not_end_the_menu() {
        use crate::probe::{ProbeManager, ProbeOptions};
        use crate::virsh::process::ProcessRunner;
        use crate::virsh::{Virsh, VirshConfig};
        let dir = std::env::temp_dir().join(format!("menu-spawn-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let program = dir.join("virsh");
        std::fs::write(&program, "#!/bin/sh\n").unwrap();
        let virsh = Virsh::new(
            VirshConfig {
                program: program.display().to_string(),
                connect: Some("test:///default".into()),
                timeout: Duration::from_secs(5),
                sessions: 1,
            },
            Arc::new(ProcessRunner::default()),
        );
        let hour = Duration::from_secs(3600);
        let options = ProbeOptions {
            timeout: hour,
            cache_ttl: hour,
            os_ttl: hour,
            jobs: 1,
            filesystems: false,
            fs_ttl: hour,
        };
        let fleet = Fleet::of(vec![Host {
            probes: Arc::new(ProbeManager::new(virsh, options)),
            label: None,
        }]);
        let (refresh, _send) = refresh_from_test();
        let text = menu_output("4\n5\n".as_bytes(), &fleet, &refresh);
        assert!(
            text.contains("error: ") && text.contains("Permission denied"),
            "{text}"
        );
        assert_eq!(text.matches("Select option:").count(), 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
