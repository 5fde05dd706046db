//! The rows of `isos`: one per drive, with who else holds its media and
//! whether its ISO is gone, built from loaded domains.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::domain::DomainMedia;
use super::iso::IsoName;
use crate::virsh::{DomainState, DriveKind, Media};

/// One row of `isos`: a drive of a domain.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DriveRow {
    pub domain: String,
    pub state: DomainState,
    pub persistent: bool,
    pub target: String,
    pub bus: Option<String>,
    pub device: DriveKind,
    /// What the VM sees now (live when running, else the config); `None`
    /// when the drive is empty.
    pub source: Option<String>,
    /// What the persistent config holds; `None` when empty or transient.
    pub config_source: Option<String>,
    /// The running VM and its config disagree: an eject done live only
    /// comes back at the next cold boot.
    pub live_config_differ: bool,
    /// Whether an ISO the drive holds (in either view) is gone; `None`
    /// when there is nothing to check (empty drive, pool volume source).
    pub missing: Option<bool>,
    pub tray_open: bool,
    /// Other VMs holding the same media.
    pub shared_with: Vec<String>,
}

impl DriveRow {
    pub fn mounted(&self) -> bool {
        self.source.is_some() || self.config_source.is_some()
    }

    /// Whether either view holds the ISO `iso` names.
    pub fn holds(&self, iso: &IsoName) -> bool {
        self.source
            .iter()
            .chain(&self.config_source)
            .any(|label| iso.matches(label))
    }
}

impl DriveRow {
    /// Every medium the row shows, current first.
    fn media(&self) -> impl Iterator<Item = &str> {
        self.source
            .iter()
            .chain(&self.config_source)
            .map(String::as_str)
    }
}

/// Who holds each medium among `rows`: label → domain names, both sorted.
pub fn holders(rows: &[DriveRow]) -> BTreeMap<&str, BTreeSet<&str>> {
    let mut holders: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for row in rows {
        for label in row.media() {
            holders.entry(label).or_default().insert(&row.domain);
        }
    }
    holders
}

/// One row per drive of `domains`, in their order; `gone(path)` says
/// whether a file the drive holds is missing.
pub fn drive_rows(domains: &[DomainMedia], gone: impl Fn(&str) -> bool) -> Vec<DriveRow> {
    let mut rows = Vec::new();
    for domain in domains {
        for target in domain.targets() {
            let views = domain.views(target);
            let drive = views.current();
            let checked: Vec<bool> = views.media().filter_map(Media::path).map(&gone).collect();
            rows.push(DriveRow {
                domain: domain.name.clone(),
                state: domain.state,
                persistent: domain.config.is_some(),
                target: target.to_owned(),
                bus: drive.bus.clone(),
                device: drive.kind,
                live_config_differ: domain.live.is_some()
                    && domain.config.is_some()
                    && views.live_media() != views.config_media(),
                source: drive.media.as_ref().map(Media::label),
                config_source: views.config_media().map(Media::label),
                missing: (!checked.is_empty()).then(|| checked.contains(&true)),
                tray_open: drive.tray_open,
                shared_with: Vec::new(),
            });
        }
    }
    // The current and the config medium are every medium of both views:
    // live when running, else the config, plus the config.
    let shared: Vec<Vec<String>> = {
        let holders = holders(&rows);
        rows.iter()
            .map(|row| {
                row.media()
                    .flat_map(|label| &holders[label])
                    .filter(|holder| **holder != row.domain)
                    .map(|holder| (*holder).to_owned())
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect()
            })
            .collect()
    };
    for (row, shared_with) in rows.iter_mut().zip(shared) {
        row.shared_with = shared_with;
    }
    rows
}
