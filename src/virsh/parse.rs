//! Pure parsers for virsh's text output (run under `LC_ALL=C.UTF-8`).

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde::Serialize;

/// A domain's state in virsh's own words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum DomainState {
    #[serde(rename = "no state")]
    NoState,
    #[serde(rename = "running")]
    Running,
    #[serde(rename = "idle")]
    Idle,
    #[serde(rename = "paused")]
    Paused,
    #[serde(rename = "in shutdown")]
    InShutdown,
    #[serde(rename = "shut off")]
    ShutOff,
    #[serde(rename = "crashed")]
    Crashed,
    #[serde(rename = "pmsuspended")]
    PmSuspended,
}

impl DomainState {
    const ALL: [DomainState; 8] = [
        DomainState::NoState,
        DomainState::Running,
        DomainState::Idle,
        DomainState::Paused,
        DomainState::InShutdown,
        DomainState::ShutOff,
        DomainState::Crashed,
        DomainState::PmSuspended,
    ];

    /// From `virDomainState`, as `domstats` reports it in `state.state`.
    pub fn from_code(code: u32) -> Option<Self> {
        Self::ALL.get(usize::try_from(code).ok()?).copied()
    }

    /// From the words `dominfo` prints on its `State:` line.
    pub fn from_words(words: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == words)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DomainState::NoState => "no state",
            DomainState::Running => "running",
            DomainState::Idle => "idle",
            DomainState::Paused => "paused",
            DomainState::InShutdown => "in shutdown",
            DomainState::ShutOff => "shut off",
            DomainState::Crashed => "crashed",
            DomainState::PmSuspended => "pmsuspended",
        }
    }

    /// Whether a QEMU process exists, so CPU time and live devices mean
    /// something.
    pub fn is_active(self) -> bool {
        !matches!(
            self,
            DomainState::ShutOff | DomainState::Crashed | DomainState::NoState
        )
    }
}

impl fmt::Display for DomainState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One domain's block of `virsh domstats --raw`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainStats {
    pub name: String,
    pub fields: BTreeMap<String, String>,
}

impl DomainStats {
    pub fn get_u64(&self, key: &str) -> Option<u64> {
        self.fields.get(key)?.parse().ok()
    }

    pub fn state(&self) -> Option<DomainState> {
        DomainState::from_code(u32::try_from(self.get_u64("state.state")?).ok()?)
    }
}

/// Parses `virsh domstats --raw`: blocks headed `Domain: 'NAME'` followed by
/// indented `key=value` lines. The name is everything between the quote
/// after `Domain: ` and the last quote before the block's first field, so
/// names holding quotes survive, and so does a name holding a newline (the
/// test driver accepts them): its header runs over several lines.
pub fn parse_domstats(text: &str) -> Vec<DomainStats> {
    let mut domains: Vec<DomainStats> = Vec::new();
    // A header whose closing quote has not come yet.
    let mut open_name: Option<String> = None;
    for line in text.split('\n') {
        if let Some(name) = open_name.as_mut() {
            if line.starts_with("  ") && line.contains('=') {
                // A field: the header ended at the line before.
                open_name = None;
            } else {
                name.push('\n');
                name.push_str(line);
                if let Some(whole) = name.strip_suffix('\'') {
                    domains.push(DomainStats {
                        name: whole.to_owned(),
                        fields: BTreeMap::new(),
                    });
                    open_name = None;
                }
                continue;
            }
        }
        if let Some(rest) = line.strip_prefix("Domain: '") {
            match rest.strip_suffix('\'') {
                Some(name) => domains.push(DomainStats {
                    name: name.to_owned(),
                    fields: BTreeMap::new(),
                }),
                None => open_name = Some(rest.to_owned()),
            }
        } else if let (Some(current), Some((key, value))) =
            (domains.last_mut(), line.trim_start().split_once('='))
        {
            if line.starts_with(' ') {
                current.fields.insert(key.to_owned(), value.to_owned());
            }
        }
    }
    domains
}

/// Parses `virsh list --all --uuid --name`: `UUID NAME` per line, the UUID
/// always 36 characters, the name everything after the one space. A line
/// that does not start with a UUID continues the name before it (a name
/// holding a newline); the blank line virsh ends its list with is no part
/// of a name.
pub fn parse_uuid_names(text: &str) -> HashMap<String, String> {
    // Lines end at `\n` only: `lines()` would also take a `\r` off the
    // end, and a name may end in one (found by the property tests).
    let mut entries: Vec<(String, String)> = Vec::new();
    for line in text.trim_end_matches('\n').split('\n') {
        let entry = line.split_at_checked(36).and_then(|(uuid, rest)| {
            let name = rest.strip_prefix(' ')?;
            let is_uuid = uuid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
                && uuid.bytes().filter(|&b| b == b'-').count() == 4;
            (is_uuid && !name.is_empty()).then(|| (uuid.to_owned(), name.to_owned()))
        });
        match (entry, entries.last_mut()) {
            (Some(entry), _) => entries.push(entry),
            (None, Some((_, name))) => {
                name.push('\n');
                name.push_str(line);
            }
            (None, None) => {}
        }
    }
    entries
        .into_iter()
        .map(|(uuid, name)| (name, uuid))
        .collect()
}

/// What `virsh dominfo` says of one domain. Fields a driver leaves out stay
/// `None` (for a shut-off QEMU domain there is no `CPU time:` line).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DomInfo {
    pub uuid: Option<String>,
    pub state: Option<DomainState>,
    pub vcpus: Option<u32>,
    pub cpu_time_ns: Option<u64>,
    pub max_memory_kib: Option<u64>,
    pub used_memory_kib: Option<u64>,
    pub persistent: Option<bool>,
}

/// Parses `virsh dominfo` (`Label:   value` lines). The `Name:` line is not
/// read: the caller knows which domain it asked about, and a name with
/// leading blanks would not survive the trim.
pub fn parse_dominfo(text: &str) -> DomInfo {
    let mut info = DomInfo::default();
    for line in text.lines() {
        let Some((label, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match label {
            "UUID" => info.uuid = Some(value.to_owned()).filter(|v| !v.is_empty()),
            "State" => info.state = DomainState::from_words(value),
            "CPU(s)" => info.vcpus = value.parse().ok(),
            "CPU time" => info.cpu_time_ns = parse_cpu_seconds(value),
            "Max memory" => info.max_memory_kib = parse_kib(value),
            "Used memory" => info.used_memory_kib = parse_kib(value),
            "Persistent" => info.persistent = parse_yes_no(value),
            _ => {}
        }
    }
    info
}

/// `1795627637.3s` → nanoseconds, in integers so no float rounding creeps
/// into a value tests compare with virsh's own.
pub fn parse_cpu_seconds(value: &str) -> Option<u64> {
    let number = value.strip_suffix('s')?;
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if fraction.len() > 9 || !fraction.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let seconds: u64 = whole.parse().ok()?;
    let fraction_ns: u64 = if fraction.is_empty() {
        0
    } else {
        format!("{fraction:0<9}").parse().ok()?
    };
    seconds.checked_mul(1_000_000_000)?.checked_add(fraction_ns)
}

fn parse_kib(value: &str) -> Option<u64> {
    value.strip_suffix(" KiB")?.trim().parse().ok()
}

fn parse_yes_no(value: &str) -> Option<bool> {
    match value {
        "yes" => Some(true),
        "no" => Some(false),
        _ => None,
    }
}

/// Parses `virsh guestinfo` output: `key   : value` lines. Values may
/// themselves contain ` : `, so only the first separator splits.
pub fn parse_guestinfo(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|line| line.split_once(" : "))
        .map(|(key, value)| (key.trim().to_owned(), value.trim().to_owned()))
        .filter(|(key, _)| !key.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::fixture;

    #[test]
    fn domstats_keeps_awkward_names() {
        let stats = parse_domstats(&fixture("virsh/domstats-test-driver.txt"));
        let state_of = |name: &str| {
            stats
                .iter()
                .find(|s| s.name == name)
                .unwrap_or_else(|| panic!("{name} missing"))
                .state()
        };
        let mut names: Vec<&str> = stats.iter().map(|s| s.name.as_str()).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "--double-dash",
                "-db",
                r#"it's "quoted""#,
                "plain",
                "semi;colon#hash",
                "with space",
                "Ünïcödé-vm",
            ]
        );
        assert_eq!(state_of("plain"), Some(DomainState::Running));
        assert_eq!(state_of("with space"), Some(DomainState::ShutOff));
        assert_eq!(state_of("-db"), Some(DomainState::Paused));
        assert!(stats.iter().all(|s| s.fields.len() == 2), "state only");
    }

    #[test]
    fn domstats_reads_qemu_metric_groups() {
        let stats = parse_domstats(&fixture("virsh/domstats-qemu.txt"));
        let agent = stats.iter().find(|s| s.name == "lab-agent").unwrap();
        assert_eq!(agent.state(), Some(DomainState::Running));
        assert!(agent.get_u64("cpu.time").is_some());
        assert_eq!(agent.get_u64("balloon.maximum"), Some(131072));
        assert!(agent.get_u64("balloon.unused").is_some());
        assert_eq!(agent.get_u64("vcpu.current"), Some(1));
    }

    #[test]
    fn dominfo_running_test_driver() {
        let info = parse_dominfo(&fixture("virsh/dominfo-running.txt"));
        assert_eq!(info.state, Some(DomainState::Running));
        assert_eq!(info.vcpus, Some(2));
        assert_eq!(info.max_memory_kib, Some(1048576));
        assert_eq!(info.used_memory_kib, Some(524288));
        assert_eq!(info.cpu_time_ns, Some(1_795_627_926_000_000_000));
        assert_eq!(info.persistent, Some(true));
        assert_eq!(
            info.uuid.as_deref(),
            Some("5ca1ab1e-0000-4000-8000-000000000000")
        );
    }

    #[test]
    fn dominfo_shut_off_qemu_has_no_cpu_time() {
        let info = parse_dominfo(&fixture("virsh/dominfo-qemu-shutoff.txt"));
        assert_eq!(info.state, Some(DomainState::ShutOff));
        assert_eq!(info.cpu_time_ns, None);
        assert_eq!(info.max_memory_kib, Some(131072));
    }

    #[test]
    fn uuid_names_keep_awkward_names() {
        let uuids = parse_uuid_names(&fixture("virsh/list-uuid-name-test-driver.txt"));
        assert_eq!(uuids.len(), 7);
        assert_eq!(
            uuids.get(r#"it's "quoted""#).map(String::as_str),
            Some("5ca1ab1e-0000-4000-8000-000000000002")
        );
        assert_eq!(
            uuids.get("with space").map(String::as_str),
            Some("5ca1ab1e-0000-4000-8000-000000000001")
        );
        assert!(parse_uuid_names("short line\n\n").is_empty());
    }

    /// Found by the property tests: a name ending in a carriage return
    /// (libvirt forbids only newlines) lost it, and its UUID with it.
    #[test]
    fn a_name_ending_in_carriage_return_keeps_it() {
        let uuids = parse_uuid_names("00000000-0000-4000-8000-000000000000 web\r\n");
        assert_eq!(
            uuids.get("web\r").map(String::as_str),
            Some("00000000-0000-4000-8000-000000000000")
        );
    }

    #[test]
    fn cpu_seconds_boundaries() {
        assert_eq!(parse_cpu_seconds("0.0s"), Some(0));
        assert_eq!(parse_cpu_seconds("41.5s"), Some(41_500_000_000));
        assert_eq!(parse_cpu_seconds("7s"), Some(7_000_000_000));
        assert_eq!(parse_cpu_seconds("1.123456789s"), Some(1_123_456_789));
        assert_eq!(parse_cpu_seconds("1.1234567891s"), None);
        assert_eq!(parse_cpu_seconds("12.3"), None);
        assert_eq!(parse_cpu_seconds("-1.0s"), None);
        assert_eq!(parse_cpu_seconds("99999999999999.0s"), None, "overflow");
    }

    #[test]
    fn states_round_trip() {
        for code in 0..8 {
            let state = DomainState::from_code(code).unwrap();
            assert_eq!(DomainState::from_words(state.as_str()), Some(state));
        }
        assert_eq!(DomainState::from_code(8), None);
        assert!(!DomainState::ShutOff.is_active());
        assert!(DomainState::Paused.is_active());
    }

    #[test]
    fn guestinfo_os_keys() {
        let info = parse_guestinfo(&fixture("virsh/guestinfo-os-lab.txt"));
        assert_eq!(
            info.get("os.pretty-name").map(String::as_str),
            Some("Dismount Lab Linux 1.0")
        );
        assert_eq!(info.get("os.id").map(String::as_str), Some("dismountlab"));
    }
}
