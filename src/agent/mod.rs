//! The QEMU guest agent, reached through virsh: `guestinfo` first, since it
//! leaves the domain untainted; raw agent commands only where it cannot answer.

use std::collections::BTreeMap;

use crate::virsh::{Virsh, VirshError, parse};

/// Why the agent gave no answer, classified from virsh's error text so the
/// caller can decide what to try next.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("no guest agent channel")]
    NoChannel,
    #[error("guest agent not connected")]
    NotConnected,
    #[error("domain is not running")]
    NotRunning,
    #[error("the connection's driver does not support guest agent calls")]
    DriverUnsupported,
    #[error("guest agent timed out")]
    Timeout(#[source] VirshError),
    #[error("guest agent refused: {0}")]
    Refused(String),
    #[error("guest agent answered without OS details")]
    NoOsInfo,
    #[error(transparent)]
    Virsh(VirshError),
}

impl AgentError {
    fn from_virsh(error: VirshError) -> Self {
        let Some(message) = error.virsh_message() else {
            return match error {
                VirshError::Timeout { .. } => AgentError::Timeout(error),
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
        } else if message.contains("Guest agent is not responding")
            || message.contains("timed out")
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

/// pretty-name where the guest reports one, else name and version
/// (Windows guests, for one, report no pretty-name on older agents).
pub fn os_name_from_guestinfo(info: &BTreeMap<String, String>) -> Option<String> {
    let field = |key: &str| {
        info.get(key)
            .map(|value| crate::utils::sanitize(value))
            .filter(|value| !value.is_empty())
    };
    field("os.pretty-name").or_else(|| {
        let name = field("os.name")?;
        Some(match field("os.version") {
            Some(version) => format!("{name} {version}"),
            None => name,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
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
            failed("error: this function is not supported by the connection driver: virDomainGetGuestInfo\n"),
            AgentError::DriverUnsupported
        ));
        assert!(matches!(
            failed("error: internal error: unable to execute QEMU agent command 'guest-get-osinfo': Command guest-get-osinfo has been disabled\n"),
            AgentError::Refused(_)
        ));
        assert!(matches!(
            failed("error: Guest agent is not responding: Guest agent not available for now\n"),
            AgentError::Timeout(_)
        ));
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
        info.insert("os.pretty-name".to_owned(), "Windows 10 Pro\u{1b}[31m".to_owned());
        assert_eq!(
            os_name_from_guestinfo(&info).as_deref(),
            Some("Windows 10 Pro[31m"),
            "control characters from the guest are stripped"
        );
        assert_eq!(os_name_from_guestinfo(&BTreeMap::new()), None);
    }
}
