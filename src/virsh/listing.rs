//! One listing of a connection's domains (`domstats`, `list --uuid`,
//! `list --transient`, `uri`, read in one batch) and each domain as it
//! shows it: name, UUID, state, persistence and stats.

use std::collections::{HashMap, HashSet};

use super::parse::{DomainState, DomainStats};
use super::uri::Uri;

/// What one listing process learns about a connection.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    pub stats: Vec<DomainStats>,
    /// Name → UUID.
    pub uuids: HashMap<String, String>,
    /// Names of the domains without a persistent config.
    pub transient: HashSet<String>,
    /// The URI virsh actually connected to (`qemu:///system`, `test:///…`,
    /// `qemu+ssh://…`): it names the driver even when `-c` was not given.
    pub uri: Option<String>,
}

impl Listing {
    /// The hypervisor driver: the URI scheme without its transport.
    pub fn driver(&self) -> Option<&str> {
        self.uri.as_deref().map(|uri| Uri::parse(uri).driver())
    }

    /// Every domain of a listing, sorted by name.
    pub fn into_domains(self) -> Vec<Listed> {
        let mut listed: Vec<Listed> = self
            .stats
            .into_iter()
            .map(|stats| Listed {
                uuid: self.uuids.get(&stats.name).cloned(),
                state: stats.state().unwrap_or(DomainState::NoState),
                persistent: !self.transient.contains(&stats.name),
                name: stats.name.clone(),
                stats,
            })
            .collect();
        listed.sort_by(|a, b| a.name.cmp(&b.name));
        listed
    }
}

/// A domain as the listing knows it.
pub struct Listed {
    pub name: String,
    pub uuid: Option<String>,
    pub state: DomainState,
    pub persistent: bool,
    /// Its `domstats` block, metric groups included.
    pub stats: DomainStats,
}

impl Listed {
    /// How per-domain commands name it (`--domain`): by name, which
    /// libvirt looks up fastest, unless the name holds a control character
    /// (a newline, say): then by UUID, where the listing gave one.
    pub fn target(&self) -> &str {
        match &self.uuid {
            Some(uuid) if self.name.chars().any(char::is_control) => uuid,
            _ => &self.name,
        }
    }
}
