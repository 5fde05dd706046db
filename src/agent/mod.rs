//! The QEMU guest agent, reached through virsh: `guestinfo` first, since it
//! leaves the domain untainted; raw agent commands only where it cannot answer.

use std::collections::BTreeMap;

use base64::Engine;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::virsh::{Batch, Virsh, VirshError, parse};

mod filesystems;

pub use filesystems::{Filesystem, usage};

/// Where os-release(5) may live; the first that opens wins.
const OS_RELEASE_PATHS: [&str; 2] = ["/etc/os-release", "/usr/lib/os-release"];

/// os-release files are tiny; one read of this size gets all of one.
const OS_RELEASE_READ_BYTES: u32 = 64 * 1024;

/// Why the agent gave no answer, classified from virsh's error text so the
/// caller can decide what to try next.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The domain has no channel for a guest agent in its XML.
    #[error("no guest agent channel")]
    NoChannel,
    /// The channel is there, but no agent answers in the guest (not
    /// installed, not started yet).
    #[error("guest agent not connected")]
    NotConnected,
    /// The domain is not running (it stopped since the listing).
    #[error("domain is not running")]
    NotRunning,
    /// The connection's driver has no agent calls (the test driver): no
    /// other domain of it is asked.
    #[error("the connection's driver does not support guest agent calls")]
    DriverUnsupported,
    /// The agent did not answer in time: the call overran its deadline,
    /// or libvirt gave up waiting for it; virsh's error is the source.
    #[error("guest agent timed out")]
    Timeout(#[source] VirshError),
    /// Never asked: the scan's one deadline for every agent had passed.
    #[error("not asked: slow guest agents used up the scan's timeout")]
    Deadline,
    /// The agent answered, but refused the command (disabled, or unknown
    /// to it): reading os-release through it may still work.
    #[error("guest agent refused: {0}")]
    Refused(String),
    /// The agent answered, without a name for the OS.
    #[error("guest agent answered without OS details")]
    NoOsInfo,
    /// The agent's reply, or its absence, is not what its protocol
    /// defines.
    #[error("unexpected guest agent reply: {0}")]
    BadReply(String),
    /// virsh failed for a reason of its own (it could not start, lost
    /// the connection, …).
    #[error(transparent)]
    Virsh(VirshError),
}

impl AgentError {
    /// Whether the agent itself answered but could not give the OS: then
    /// reading os-release through it is worth a try. A timeout is not such
    /// a case: libvirt would hold the next call to that domain too.
    pub fn agent_answered(&self) -> bool {
        matches!(self, AgentError::Refused(_) | AgentError::NoOsInfo)
    }

    fn from_virsh(error: VirshError) -> Self {
        let Some(message) = error.virsh_message() else {
            return match error {
                VirshError::Timeout { .. } | VirshError::SshTimeout { .. } => {
                    AgentError::Timeout(error)
                }
                other => AgentError::Virsh(other),
            };
        };
        if message.contains("guest agent is not configured") {
            AgentError::NoChannel
        } else if message.contains("guest agent is not connected") {
            AgentError::NotConnected
        } else if message.contains("domain is not running") {
            AgentError::NotRunning
        } else if message.contains("not supported by the connection driver") {
            AgentError::DriverUnsupported
        } else if message.contains("has been disabled")
            || message.contains("not found")
            || message.contains("unable to execute QEMU agent command")
        {
            AgentError::Refused(message)
        } else if message.contains("Guest agent is not responding") || message.contains("timed out")
        {
            AgentError::Timeout(error)
        } else {
            AgentError::Virsh(error)
        }
    }
}

/// The guest's OS name from `virsh guestinfo --os` (guest-get-osinfo).
pub fn os_name(virsh: &Virsh, domain: &str) -> Result<String, AgentError> {
    let output = virsh
        .run(&["guestinfo", "--os", "--domain", domain])
        .map_err(AgentError::from_virsh)?;
    os_name_from_guestinfo(&parse::parse_guestinfo(&output.stdout)).ok_or(AgentError::NoOsInfo)
}

/// The guest's filesystems, `guestinfo --filesystem` (never the raw
/// guest-get-fsinfo, which would taint the domain).
pub fn filesystems(virsh: &Virsh, domain: &str) -> Result<Vec<Filesystem>, AgentError> {
    let output = virsh
        .run(&["guestinfo", "--filesystem", "--domain", domain])
        .map_err(AgentError::from_virsh)?;
    filesystems::filesystems_from_guestinfo(&parse::parse_guestinfo(&output.stdout))
        .map_err(AgentError::BadReply)
}

/// PRETTY_NAME from the guest's os-release, read through the agent's file
/// commands. These go through `qemu-agent-command`, which makes libvirt mark
/// the domain "tainted: custom guest agent control commands issued"; the
/// caller uses this only where `guestinfo` cannot answer.
pub fn os_release_name(virsh: &Virsh, domain: &str) -> Result<String, AgentError> {
    let mut last_error = None;
    for path in OS_RELEASE_PATHS {
        let open = json!({"execute": "guest-file-open", "arguments": {"path": path, "mode": "r"}});
        let handle =
            match agent_command(virsh, domain, &open).and_then(|reply| parse_handle(&reply)) {
                Ok(handle) => handle,
                Err(error @ AgentError::Refused(_)) => {
                    last_error = Some(error);
                    continue;
                }
                Err(error) => return Err(error),
            };
        let text = read_and_close(virsh, domain, handle)?;
        return pretty_name_from_os_release(&text).ok_or(AgentError::NoOsInfo);
    }
    Err(last_error.unwrap_or(AgentError::NoOsInfo))
}

/// Reads the whole file and closes the handle in one virsh process: the
/// close must happen even when the read reply is unusable, or the guest
/// keeps the handle open.
fn read_and_close(virsh: &Virsh, domain: &str, handle: i64) -> Result<String, AgentError> {
    let read = json!({"execute": "guest-file-read",
                      "arguments": {"handle": handle, "count": OS_RELEASE_READ_BYTES}});
    let close = json!({"execute": "guest-file-close", "arguments": {"handle": handle}});
    let mut batch = Batch::new();
    for request in [&read, &close] {
        batch.push(&[
            "qemu-agent-command",
            "--domain",
            domain,
            &request.to_string(),
        ]);
    }
    let sections = virsh.run_batch(&batch).map_err(AgentError::from_virsh)?;
    let reply = sections
        .into_iter()
        .next()
        .flatten()
        .ok_or_else(|| AgentError::BadReply("guest-file-read gave no answer".to_owned()))?;
    parse_file_read(&reply)
}

fn agent_command(virsh: &Virsh, domain: &str, request: &Value) -> Result<String, AgentError> {
    let output = virsh
        .run(&[
            "qemu-agent-command",
            "--domain",
            domain,
            &request.to_string(),
        ])
        .map_err(AgentError::from_virsh)?;
    Ok(output.stdout)
}

/// An agent's answer, `{"return": …}`.
#[derive(Deserialize)]
struct Reply<T> {
    #[serde(rename = "return")]
    value: T,
}

/// What guest-file-read returns (`count` and `eof` are not needed: one
/// read of 64 KiB takes an os-release whole).
#[derive(Deserialize)]
struct FileRead {
    #[serde(rename = "buf-b64")]
    buf_b64: String,
}

fn bad_reply(reply: &str) -> AgentError {
    AgentError::BadReply(crate::utils::sanitize(reply.trim()))
}

/// `{"return":1000}` → 1000.
pub fn parse_handle(reply: &str) -> Result<i64, AgentError> {
    serde_json::from_str::<Reply<i64>>(reply)
        .map(|reply| reply.value)
        .map_err(|_| bad_reply(reply))
}

/// `{"return":{"count":N,"buf-b64":"…","eof":true}}` → the decoded text.
pub fn parse_file_read(reply: &str) -> Result<String, AgentError> {
    let read = serde_json::from_str::<Reply<FileRead>>(reply).map_err(|_| bad_reply(reply))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(read.value.buf_b64)
        .map_err(|_| bad_reply(reply))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// PRETTY_NAME from os-release(5) text, with its shell-style quoting
/// removed; falls back to NAME and VERSION as the spec suggests.
pub fn pretty_name_from_os_release(text: &str) -> Option<String> {
    let fields: BTreeMap<&str, String> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split_once('='))
        .map(|(key, value)| (key.trim(), unquote(value.trim())))
        .collect();
    display_name(|key| fields.get(key), ["PRETTY_NAME", "NAME", "VERSION"])
}

/// Undoes os-release's quoting: one pair of single or double quotes, and
/// backslash escapes inside double quotes.
fn unquote(value: &str) -> String {
    if let Some(inner) = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        let mut out = String::with_capacity(inner.len());
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => out.extend(chars.next()),
                c => out.push(c),
            }
        }
        out
    } else if let Some(inner) = value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) {
        inner.to_owned()
    } else {
        value.to_owned()
    }
}

/// pretty-name where the guest reports one, else name and version
/// (Windows guests, for one, report no pretty-name on older agents).
pub fn os_name_from_guestinfo(info: &BTreeMap<String, String>) -> Option<String> {
    display_name(
        |key| info.get(key),
        ["os.pretty-name", "os.name", "os.version"],
    )
}

/// The pretty name, else name and version, from whichever keys a source
/// uses for them. Values are guest-controlled and kept exactly as the
/// guest said: every display escapes them (tables, JSON, errors).
fn display_name<'a>(
    lookup: impl Fn(&str) -> Option<&'a String>,
    [pretty, name, version]: [&str; 3],
) -> Option<String> {
    let field = |key: &str| {
        lookup(key)
            .filter(|value| !value.trim().is_empty())
            .cloned()
    };
    field(pretty).or_else(|| {
        let name = field(name)?;
        Some(match field(version) {
            Some(version) => format!("{name} {version}"),
            None => name,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::fixture;
    use std::os::unix::process::ExitStatusExt;

    fn failed(stderr: &str) -> AgentError {
        AgentError::from_virsh(VirshError::Failed {
            command: "virsh guestinfo".into(),
            status: std::process::ExitStatus::from_raw(1 << 8),
            stderr: stderr.into(),
        })
    }

    #[test]
    fn classifies_virsh_agent_errors() {
        // The texts are virsh 9.0's, as recorded in fixtures/README.md.
        assert!(matches!(
            failed("error: argument unsupported: QEMU guest agent is not configured\n"),
            AgentError::NoChannel
        ));
        assert!(matches!(
            failed("error: Guest agent is not responding: QEMU guest agent is not connected\n"),
            AgentError::NotConnected
        ));
        assert!(matches!(
            failed("error: Requested operation is not valid: domain is not running\n"),
            AgentError::NotRunning
        ));
        assert!(matches!(
            failed(
                "error: this function is not supported by the connection driver: virDomainGetGuestInfo\n"
            ),
            AgentError::DriverUnsupported
        ));
        assert!(matches!(
            failed(
                "error: internal error: unable to execute QEMU agent command 'guest-get-osinfo': Command guest-get-osinfo has been disabled\n"
            ),
            AgentError::Refused(_)
        ));
        assert!(matches!(
            failed("error: Guest agent is not responding: Guest agent not available for now\n"),
            AgentError::Timeout(_)
        ));
    }

    #[test]
    fn decodes_a_real_file_read_reply() {
        let text = parse_file_read(&fixture("virsh/agent-file-read-os-release.json")).unwrap();
        assert!(text.starts_with("NAME=\"Dismount Lab Linux\"\n"), "{text}");
        assert_eq!(
            pretty_name_from_os_release(&text).as_deref(),
            Some("Dismount Lab Linux 1.0")
        );
        assert_eq!(parse_handle("{\"return\":1000}\n").unwrap(), 1000);
        assert!(matches!(
            parse_handle("{\"error\":{}}"),
            Err(AgentError::BadReply(_))
        ));
        assert!(matches!(
            parse_file_read("{\"return\":{\"buf-b64\":\"%%%\"}}"),
            Err(AgentError::BadReply(_))
        ));
    }

    #[test]
    fn os_release_quoting_and_fallbacks() {
        let text = "# comment\nNAME='Single Quoted'\nPRETTY_NAME=\"Say \\\"hi\\\" \\$x\"\n";
        assert_eq!(
            pretty_name_from_os_release(text).as_deref(),
            Some(r#"Say "hi" $x"#)
        );
        let text = "NAME=Alpine\nVERSION=3.19\nPRETTY_NAME=\n";
        assert_eq!(
            pretty_name_from_os_release(text).as_deref(),
            Some("Alpine 3.19")
        );
        assert_eq!(pretty_name_from_os_release("ID=x\n"), None);
    }

    /// A Windows guest's guest-get-osinfo reply (Windows Server 2022, from
    /// QEMU's guest agent discussion, see fixtures/README.md), as virsh
    /// guestinfo shows it: every field under `os.`.
    #[test]
    fn windows_guest_reply() {
        let reply: Value =
            serde_json::from_str(&fixture("agent/guest-get-osinfo-windows.json")).unwrap();
        let info: BTreeMap<String, String> = reply["return"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (format!("os.{k}"), v.as_str().unwrap().to_owned()))
            .collect();
        assert_eq!(
            os_name_from_guestinfo(&info).as_deref(),
            Some("Windows Server 2022 Datacenter")
        );
    }

    #[test]
    fn prefers_pretty_name_then_name_and_version() {
        let mut info = BTreeMap::new();
        info.insert("os.name".to_owned(), "Microsoft Windows".to_owned());
        info.insert("os.version".to_owned(), "Microsoft Windows 10".to_owned());
        assert_eq!(
            os_name_from_guestinfo(&info).as_deref(),
            Some("Microsoft Windows Microsoft Windows 10")
        );
        info.insert(
            "os.pretty-name".to_owned(),
            "Windows 10 Pro\u{1b}[31m".to_owned(),
        );
        assert_eq!(
            os_name_from_guestinfo(&info).as_deref(),
            Some("Windows 10 Pro\u{1b}[31m"),
            "what the guest said, exactly: displays escape it"
        );
        assert_eq!(os_name_from_guestinfo(&BTreeMap::new()), None);
    }
}
