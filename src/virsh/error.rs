//! Errors of the virsh layer, each carrying the command line it concerns.

use std::process::ExitStatus;
use std::sync::Arc;
use std::time::Duration;

/// `Clone`: the calls of one batch share its error (see
/// [`crate::virsh::Virsh::on_each_domain`]).
#[derive(Debug, Clone, thiserror::Error)]
pub enum VirshError {
    /// The program (`--virsh`, `VIRSH`, else `virsh` on `PATH`) does not
    /// exist.
    #[error(
        "`{program}` not found: install virsh (package libvirt-clients on Debian/Ubuntu, \
         libvirt-client on Fedora/RHEL) or set VIRSH (or --virsh) to its path"
    )]
    NotFound { program: String },

    /// The program exists but could not be started or waited for (not
    /// executable, no process left, …); `source` says why, and a message
    /// made of this error must carry it (`{:#}`, `utils::with_causes`).
    /// In an `Arc`, as an `io::Error` is not `Clone`.
    #[error("could not run `{command}`")]
    Spawn {
        command: String,
        #[source]
        source: Arc<std::io::Error>,
    },

    /// The tool had no file descriptor left for virsh's pipes.
    #[error(
        "could not run `{command}`: {}",
        crate::virsh::descriptors::ran_out_message()
    )]
    NoDescriptors { command: String },

    /// The call overran its deadline (`--timeout`) and was killed, with
    /// its process group; a change may have been made all the same.
    #[error("`{command}` did not finish within {}", humantime::format_duration(*.timeout))]
    Timeout { command: String, timeout: Duration },

    /// A timeout over ssh, where the usual cause is a prompt nobody sees:
    /// virsh runs in its own process group, so ssh cannot read the terminal.
    #[error(
        "`{command}` did not finish within {}; over ssh this is usually a password or \
         host-key prompt that cannot be answered here: use key authentication (ssh-agent), \
         accept the host key once with plain ssh, or add no_tty=1 to the URI to fail at once",
        humantime::format_duration(*.timeout)
    )]
    SshTimeout { command: String, timeout: Duration },

    /// A transfer (`vol-upload`, `vol-download`) that moved no byte for
    /// `stall` was killed: the connection hangs.
    #[error("`{command}` moved no byte for {}: the connection hangs", humantime::format_duration(*.stall))]
    Stalled { command: String, stall: Duration },

    /// A transfer the tool stopped, because its own side failed (the
    /// file it fed from, a signal); the caller knows and says why.
    #[error("`{command}` was stopped")]
    Stopped { command: String },

    /// virsh answered, but not in a form it ever prints: no marker of the
    /// batch came back, or the listing held no domain block.
    #[error("`{command}` answered, but not as virsh does: {what}")]
    Unusable { command: String, what: String },

    /// A virsh session that ended before its first answer, and said
    /// nothing: whatever ran was not virsh's shell.
    #[error("`{command}` ended without answering ({status}): is it virsh?")]
    NoAnswer { command: String, status: ExitStatus },

    /// The call printed more than the cap (`OUTPUT_LIMIT`, 256 MiB), on
    /// stdout or stderr: what it printed is dropped, a session killed.
    #[error(
        "`{command}` printed more than {} MiB: refused, as no real answer is that large",
        .limit / (1024 * 1024)
    )]
    OutputTooLarge { command: String, limit: usize },

    /// A long-lived virsh that had been answering died under a call (and,
    /// for a call that only reads, under its one retry too).
    #[error("virsh ended while running `{command}`: {stderr}")]
    SessionEnded { command: String, stderr: String },

    /// virsh ran the call and refused it (a non-zero exit), in its own
    /// words on stderr (see [`VirshError::virsh_message`]).
    #[error("{} (`{command}`, {status})", error_lines(.stderr))]
    Failed {
        command: String,
        status: ExitStatus,
        stderr: String,
    },
}

impl VirshError {
    /// Whether the call overran its deadline (over ssh or not).
    pub fn is_timeout(&self) -> bool {
        matches!(
            self,
            VirshError::Timeout { .. } | VirshError::SshTimeout { .. }
        )
    }

    /// virsh's own words for a failure, without its `error: ` prefixes.
    pub fn virsh_message(&self) -> Option<String> {
        match self {
            VirshError::Failed { stderr, .. } => Some(error_lines(stderr)),
            _ => None,
        }
    }
}

/// Joins the `error: …` lines virsh printed into one line, each message
/// once (every command of a batch over a lost connection prints the same
/// ones); falls back to the whole stderr when virsh printed something
/// else.
pub fn error_lines(stderr: &str) -> String {
    let mut errors: Vec<&str> = Vec::new();
    for line in stderr
        .lines()
        .filter_map(|line| line.strip_prefix("error: "))
        .map(str::trim)
        .filter(|line| !line.is_empty())
    {
        if !errors.contains(&line) {
            errors.push(line);
        }
    }
    let text = if errors.is_empty() {
        stderr.split_whitespace().collect::<Vec<_>>().join(" ")
    } else {
        errors.join(": ")
    };
    if text.is_empty() {
        "virsh failed without a message".to_owned()
    } else {
        crate::utils::sanitize(&text)
    }
}

/// virsh's answer for a volume or pool it does not have, or a driver
/// without storage: nothing to look up, not a failure of the connection.
pub(super) fn is_no_such_volume(error: &VirshError) -> bool {
    error.virsh_message().is_some_and(|message| {
        message.contains("Storage volume not found")
            || message.contains("Storage pool not found")
            || message.contains("not supported")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_error_lines_without_prefix() {
        let stderr = "error: failed to connect to the hypervisor\n\
                      error: Failed to connect socket to '/run/libvirt/libvirt-sock': No such file or directory\n";
        assert_eq!(
            error_lines(stderr),
            "failed to connect to the hypervisor: Failed to connect socket to \
             '/run/libvirt/libvirt-sock': No such file or directory"
        );
    }

    #[test]
    fn says_each_message_once_in_order() {
        let stderr = "error: failed to connect to the hypervisor\n\
                      error: Cannot recv data: Connection reset by peer\n\
                      error: failed to connect to the hypervisor\n\
                      error: Cannot recv data: Connection reset by peer\n";
        assert_eq!(
            error_lines(stderr),
            "failed to connect to the hypervisor: Cannot recv data: Connection reset by peer"
        );
    }

    #[test]
    fn keeps_foreign_text_and_says_when_silent() {
        assert_eq!(
            error_lines("ssh: connect refused\n"),
            "ssh: connect refused"
        );
        assert_eq!(error_lines(""), "virsh failed without a message");
    }
}
