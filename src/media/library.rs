//! The ISO library of one host: every ISO volume of its active storage
//! pools, and the ISO files its drives hold outside them, each with the
//! drives that hold it, live or in the persistent config.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result};
use serde::Serialize;

use super::{DomainMedia, IsoName, MediaManager};
use crate::virsh::{DriveKind, Media, Volume};

/// One ISO of a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LibraryEntry {
    /// The storage pool; `None` for a file outside every pool.
    pub pool: Option<String>,
    /// The volume's name in its pool; `None` outside pools.
    pub volume: Option<String>,
    /// Where the hypervisor reads it; `None` for a `pool/volume` a drive
    /// names that no active pool has.
    pub path: Option<String>,
    pub size_bytes: Option<u64>,
    /// A drive holds it, but it is not there: a file gone from this
    /// machine, a volume no active pool lists, or (on a remote host, whose
    /// files only its pools show) a file outside every pool.
    pub missing: bool,
    pub holders: Vec<Holder>,
}

/// A drive holding an ISO, in the running VM and/or its persistent config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Holder {
    pub domain: String,
    pub target: String,
    pub live: bool,
    pub config: bool,
}

impl Holder {
    /// `web1 hdc (live, config)`, unsanitized.
    pub fn describe(&self) -> String {
        let views: Vec<&str> = [(self.live, "live"), (self.config, "config")]
            .into_iter()
            .filter_map(|(held, view)| held.then_some(view))
            .collect();
        format!("{} {} ({})", self.domain, self.target, views.join(", "))
    }
}

impl LibraryEntry {
    /// `pool/volume`, else the path: how `isos` names media.
    pub fn label(&self) -> String {
        match (&self.pool, &self.volume, &self.path) {
            (Some(pool), Some(volume), _) => format!("{pool}/{volume}"),
            (_, _, Some(path)) => path.clone(),
            _ => String::new(),
        }
    }

    /// Whether `iso` names this ISO, by `pool/volume` or by path.
    pub fn is(&self, iso: &IsoName) -> bool {
        let volume = self
            .pool
            .as_ref()
            .zip(self.volume.as_ref())
            .map(|(pool, volume)| format!("{pool}/{volume}"));
        volume.iter().chain(&self.path).any(|label| iso.matches(label))
    }
}

/// Where the files behind drives' paths can be looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Files {
    /// This machine's: paths are checked and compared as files.
    Local,
    /// Another machine's: only its pools' volumes are known.
    Remote,
}

/// Builds the library from a host's volumes and domains. A drive's
/// medium is matched to a volume by `pool/volume` or by path (locally
/// also through symlinks); the ISO files of CD-ROM drives that match no
/// volume are listed as files outside every pool. Pool ISOs are sorted
/// by pool and name, the files after them by path.
pub fn library(volumes: &[Volume], domains: &[DomainMedia], files: Files) -> Vec<LibraryEntry> {
    let canonical = |path: &str| match files {
        Files::Local => std::fs::canonicalize(path).ok(),
        Files::Remote => None,
    };
    let volume_files: BTreeMap<PathBuf, usize> = volumes
        .iter()
        .enumerate()
        .filter_map(|(index, volume)| Some((canonical(&volume.path)?, index)))
        .collect();
    let find_volume = |media: &Media| match media {
        Media::Volume { pool, volume } => volumes
            .iter()
            .position(|v| &v.pool == pool && &v.name == volume),
        Media::File(path) => volumes
            .iter()
            .position(|v| &v.path == path)
            .or_else(|| volume_files.get(&canonical(path)?).copied()),
        Media::Block(_) | Media::Network { .. } => None,
    };
    let mut in_pools: BTreeMap<usize, Vec<Holder>> = volumes
        .iter()
        .enumerate()
        .filter(|(_, volume)| volume.is_iso())
        .map(|(index, _)| (index, Vec::new()))
        .collect();
    // Media no pool lists: keyed by what the drive names.
    let mut outside: BTreeMap<(Option<String>, Option<String>, Option<String>), Vec<Holder>> =
        BTreeMap::new();
    for domain in domains {
        for target in domain.targets() {
            let views = domain.views(target);
            let is_cdrom = views.current().kind == DriveKind::Cdrom;
            let live = views.live_media();
            let config = views.config_media();
            for media in [live, config].into_iter().flatten() {
                let holders = match (find_volume(media), media) {
                    (Some(index), _) => in_pools.entry(index).or_default(),
                    (None, Media::Volume { pool, volume }) => outside
                        .entry((Some(pool.clone()), Some(volume.clone()), None))
                        .or_default(),
                    (None, Media::File(path)) if is_cdrom => {
                        outside.entry((None, None, Some(path.clone()))).or_default()
                    }
                    _ => continue,
                };
                if holders
                    .iter()
                    .any(|h| h.domain == domain.name && h.target == target)
                {
                    continue;
                }
                let same = |held: Option<&Media>| held.is_some_and(|held| held == media);
                holders.push(Holder {
                    domain: domain.name.clone(),
                    target: target.to_owned(),
                    live: same(live),
                    config: same(config),
                });
            }
        }
    }
    let pool_entries = in_pools.into_iter().map(|(index, holders)| {
        let volume = &volumes[index];
        LibraryEntry {
            pool: Some(volume.pool.clone()),
            volume: Some(volume.name.clone()),
            path: Some(volume.path.clone()),
            size_bytes: volume.capacity,
            missing: false,
            holders,
        }
    });
    let mut entries: Vec<LibraryEntry> = pool_entries.collect();
    entries.sort_by(|a, b| (&a.pool, &a.volume).cmp(&(&b.pool, &b.volume)));
    entries.extend(outside.into_iter().map(|((pool, volume, path), holders)| {
        let local = path
            .as_deref()
            .filter(|_| files == Files::Local)
            .and_then(|path| std::fs::metadata(path).ok());
        LibraryEntry {
            missing: local.is_none(),
            size_bytes: local.map(|metadata| metadata.len()),
            pool,
            volume,
            path,
            holders,
        }
    }));
    entries
}

impl MediaManager {
    /// This host's ISO library: its volumes (three virsh processes) and
    /// its domains' drives (as `load_all`).
    pub fn library(&self) -> Result<Vec<LibraryEntry>> {
        let uri = self.virsh.uri_label();
        let volumes = self
            .virsh
            .volumes()
            .with_context(|| format!("cannot list storage volumes on {uri}"))?;
        let domains = self.load_all()?;
        let files = if self.remote()? {
            Files::Remote
        } else {
            Files::Local
        };
        Ok(library(&volumes, &domains, files))
    }
}
