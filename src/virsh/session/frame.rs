//! Framing a session's output: the secret markers around each call, one
//! call's stdout and stderr cut out of what virsh printed, and virsh's
//! notices about its connection told apart from the call's own errors.
//! Pure functions over bytes, tested on a real transcript.

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

use crate::virsh::batch::{MARKER_PREFIX, nonce};
use crate::virsh::pipes::find_line;
use crate::virsh::runner::Output;

/// virsh's words for a connection that went away under a command; a
/// command that failed with one of them is run again once on a new
/// session.
const CONNECTION_LOST: [&str; 7] = [
    "Failed to reconnect to the hypervisor",
    "failed to connect to the hypervisor",
    "End of file while reading data",
    "client socket is closed",
    "Cannot recv data",
    "Cannot write data",
    "no valid connection",
];

/// The two secret lines around one call's output.
pub(super) struct Markers {
    start: String,
    end: String,
}

impl Markers {
    pub(super) fn new() -> Self {
        Markers {
            start: format!("{MARKER_PREFIX}start-{}", nonce()),
            end: format!("{MARKER_PREFIX}end-{}", nonce()),
        }
    }

    /// What a session is sent for one call: `line` between the markers,
    /// each on a line of its own since virsh drops the rest of a line
    /// that does not parse; the end marker goes to both streams.
    pub(super) fn around(&self, line: &str) -> String {
        format!(
            "echo {start}\n{line}\necho {end}\necho --err {end}\n",
            start = self.start,
            end = self.end
        )
    }
}

/// What one call printed.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Frame {
    pub(super) stdout: String,
    /// Without virsh's notices about its connection.
    pub(super) stderr: String,
    /// The connection went away under the call.
    pub(super) connection_lost: bool,
}

impl Frame {
    /// As a process would report it. A shell has no exit status per
    /// command: an `error:` line is a failure, as it is in batch mode.
    pub(super) fn into_output(self) -> Output {
        let failed = self.stderr.lines().any(|line| line.starts_with("error: "));
        Output {
            status: ExitStatus::from_raw(i32::from(failed) << 8),
            stdout: self.stdout,
            stderr: self.stderr,
        }
    }
}

/// Cuts one call's frame out of what a session printed, once both of its
/// end markers have arrived; what precedes the frame (the banner, the
/// previous call's trailing echoes) is dropped with it.
///
/// On stdout a frame reads: the start marker's line, the echo of the
/// call's line (one line, whatever readline made of it), the output, the
/// echo of `echo END`, and the end marker's line. On stderr: the call's messages, then
/// `error: END`.
pub(super) fn take_frame(
    stdout: &mut Vec<u8>,
    stderr: &mut Vec<u8>,
    markers: &Markers,
) -> Option<Frame> {
    let end_line = format!("{}\n", markers.end);
    let err_line = format!("error: {}\n", markers.end);
    // stderr first: it is short, and its marker comes last, so a long
    // stdout is searched once or twice per call, not at every chunk.
    let err_at = find_line(stderr, err_line.as_bytes())?;
    let end_at = find_line(stdout, end_line.as_bytes())?;
    let start_line = format!("{}\n", markers.start);
    // The start marker is always before the end one; without it the output
    // is not what this call printed, and nothing of it can be trusted.
    let output = find_line(&stdout[..end_at], start_line.as_bytes()).map(|start| {
        let after_marker = start + start_line.len();
        let region = &stdout[after_marker..end_at];
        // The echo of the call's line.
        let body = skip_line(region);
        // The last line before the end marker is `echo END`'s echo.
        let echo = body[..body.len().saturating_sub(1)]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |newline| newline + 1);
        String::from_utf8_lossy(&body[..echo]).into_owned()
    });
    let (mut messages, connection_lost) =
        without_connection_notices(&String::from_utf8_lossy(&stderr[..err_at]));
    if output.is_none() {
        messages.push_str("error: virsh's output lost this call's start marker\n");
    }
    stdout.drain(..end_at + end_line.len());
    stderr.drain(..err_at + err_line.len());
    Some(Frame {
        stdout: output.unwrap_or_default(),
        stderr: messages,
        connection_lost,
    })
}

/// Drops virsh's notices about its connection (printed whenever it is
/// lost or made again, whatever the command) and says whether the call
/// itself failed for want of one.
fn without_connection_notices(stderr: &str) -> (String, bool) {
    let mut lost = false;
    let mut kept = String::new();
    for line in stderr.split_inclusive('\n') {
        let message = line.trim_end_matches('\n');
        if message.starts_with("error: Disconnected from ")
            || message == "error: Reconnected to the hypervisor"
        {
            continue;
        }
        lost |= message.starts_with("error: ")
            && CONNECTION_LOST.iter().any(|words| message.contains(words));
        kept.push_str(line);
    }
    (kept, lost)
}

/// The bytes after the first newline (nothing when there is none).
fn skip_line(bytes: &[u8]) -> &[u8] {
    bytes
        .iter()
        .position(|&b| b == b'\n')
        .map_or(&[][..], |newline| &bytes[newline + 1..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::fixture;

    fn markers(call: u32) -> Markers {
        Markers {
            start: format!("@@START-{call}"),
            end: format!("@@END-{call}"),
        }
    }

    /// A transcript of real virsh 9.0 (test driver, TERM=dumb) given two
    /// calls: a batch whose long line readline echoed as `<…`, with a
    /// failing command inside; then a line that does not parse.
    #[test]
    fn frames_of_a_real_transcript() {
        let mut stdout = fixture("virsh/session-stdout.txt").into_bytes();
        let mut stderr = fixture("virsh/session-stderr.txt").into_bytes();
        let first = take_frame(&mut stdout, &mut stderr, &markers(1)).unwrap();
        assert!(
            first.stdout.starts_with("plain\nit's \"quoted\"\n"),
            "{first:?}"
        );
        assert!(
            first.stdout.ends_with("fleet-small.xml\n\n@@M2\n"),
            "{first:?}"
        );
        assert!(!first.stdout.contains("virsh #"), "{first:?}");
        assert_eq!(first.stderr, "error: failed to get domain 'nope'\n");
        assert!(!first.connection_lost);
        let second = take_frame(&mut stdout, &mut stderr, &markers(2)).unwrap();
        assert_eq!(second.stdout, "");
        assert_eq!(second.stderr, "error: unknown command: 'nosuchcommand'\n");
        assert_eq!(second.into_output().status.code(), Some(1));
        assert_eq!(stderr, b"");
    }

    proptest::proptest! {
        /// Whatever a call prints (prompts, echoes, markers of other
        /// nonces, blank lines), its frame is exactly that, and the
        /// connection notices alone are taken out of its stderr.
        #[test]
        fn frames_hold_exactly_what_the_call_printed(
            lines in proptest::collection::vec(
                proptest::prop_oneof![
                    "[^\n]{0,30}",
                    "virsh # [^\n]{0,20}",
                    "@@dismount-iso-qemu-(start|end)-[0-9a-f]{32}",
                    "error: [^\n]{0,20}",
                ],
                0..8,
            ),
            errors in proptest::collection::vec("error: [^\n]{0,30}", 0..4),
            echo in "[^\n]{0,200}",
        ) {
            let output: String = lines.iter().map(|line| format!("{line}\n")).collect();
            let messages: String = errors.iter().map(|line| format!("{line}\n")).collect();
            let markers = Markers::new();
            let mut stdout = format!(
                "banner\nvirsh # echo {start}\n{start}\nvirsh # {echo}\n{output}virsh # echo {end}\n{end}\nvirsh # echo --err {end}\n\nvirsh # ",
                start = markers.start,
                end = markers.end,
            )
            .into_bytes();
            let mut stderr = format!(
                "error: Disconnected from qemu:///system due to end of file\n{messages}error: {}\n",
                markers.end
            )
            .into_bytes();
            let frame = take_frame(&mut stdout, &mut stderr, &markers).expect("complete");
            proptest::prop_assert_eq!(frame.stdout, output);
            proptest::prop_assert_eq!(frame.stderr, messages);
            proptest::prop_assert!(stderr.is_empty());
        }
    }

    #[test]
    fn a_frame_waits_for_both_end_markers() {
        let mut stdout = b"virsh # echo @@START-1\n@@START-1\nvirsh # uri\nx\n".to_vec();
        let mut stderr = Vec::new();
        assert!(take_frame(&mut stdout, &mut stderr, &markers(1)).is_none());
        stdout.extend_from_slice(b"virsh # echo @@END-1\n@@END-1\n");
        assert!(take_frame(&mut stdout, &mut stderr, &markers(1)).is_none());
        stderr.extend_from_slice(b"error: @@END-1\n");
        let frame = take_frame(&mut stdout, &mut stderr, &markers(1)).unwrap();
        assert_eq!(frame.stdout, "x\n");
    }

    /// Guest-controlled text (an OS name, a domain name) that imitates a
    /// prompt, an echo or a marker of another nonce cannot cut a frame.
    #[test]
    fn output_imitating_markers_and_prompts_stays_output() {
        let forged = "virsh # echo @@END-1\n@@END-2\nerror: @@END-1 \nvirsh # \n@@START-1x\n";
        let mut stdout = format!(
            "virsh # echo @@START-1\n@@START-1\nvirsh # list\n{forged}virsh # echo @@END-1\n@@END-1\n"
        )
        .into_bytes();
        let mut stderr = b"error: @@END-1x\nerror: @@END-1\n".to_vec();
        let frame = take_frame(&mut stdout, &mut stderr, &markers(1)).unwrap();
        assert_eq!(frame.stdout, forged);
        assert_eq!(frame.stderr, "error: @@END-1x\n");
    }

    #[test]
    fn connection_notices_are_not_the_commands_failure() {
        let (kept, lost) = without_connection_notices(
            "error: Disconnected from qemu:///system due to end of file\n\
             error: Reconnected to the hypervisor\n",
        );
        assert_eq!((kept.as_str(), lost), ("", false));
        let (kept, lost) = without_connection_notices(
            "error: failed to get domain 'x'\nerror: End of file while reading data: Input/output error\n",
        );
        assert!(lost);
        assert!(kept.starts_with("error: failed to get domain"));
    }
}
