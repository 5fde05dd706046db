//! One domain's removable drives as both of libvirt's definitions see them,
//! and which of them can take an ISO.

use anyhow::{Result, bail};

use crate::utils::sanitize;
use crate::virsh::{DomainState, DomainXml, Drive, DriveKind, Media};

/// One domain's drives as seen by both of libvirt's definitions.
#[derive(Debug, Clone)]
pub struct DomainMedia {
    pub name: String,
    pub state: DomainState,
    /// The running definition; `None` when the domain is not running.
    pub live: Option<DomainXml>,
    /// The persistent config; `None` for a transient domain.
    pub config: Option<DomainXml>,
}

/// A drive target's two views; either may lack the drive (a hot-plugged
/// drive exists live only, a freshly attached one in the config only).
#[derive(Debug, Clone, Copy)]
pub struct DriveViews<'a> {
    pub live: Option<&'a Drive>,
    pub config: Option<&'a Drive>,
}

impl<'a> DriveViews<'a> {
    /// The drive as the VM sees it now: live when running, else the config.
    pub fn current(self) -> &'a Drive {
        self.live
            .or(self.config)
            .expect("a target comes from one of the views")
    }

    pub(super) fn live_media(self) -> Option<&'a Media> {
        self.live.and_then(|d| d.media.as_ref())
    }

    pub(super) fn config_media(self) -> Option<&'a Media> {
        self.config.and_then(|d| d.media.as_ref())
    }

    /// Every medium the drive holds in either view.
    pub fn media(self) -> impl Iterator<Item = &'a Media> {
        self.live_media().into_iter().chain(self.config_media())
    }
}

/// A drive that can take an ISO.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IsoDrive<'a> {
    /// A drive the domain has.
    Existing(&'a str),
    /// A new CD-ROM, added to the config (SATA), or also live (SCSI).
    Attach,
}

/// Which drive takes an ISO, as far as the domain alone can say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DriveChoice<'a> {
    /// The drive named, the only CD-ROM, or a new one.
    Decided(IsoDrive<'a>),
    /// Several CD-ROMs and none named: someone has to pick one.
    OneOf(Vec<&'a str>),
}

impl DomainMedia {
    /// Every drive target of either view, live ones first, each once.
    pub fn targets(&self) -> Vec<&str> {
        self.each_once(|xml| {
            xml.drives
                .iter()
                .map(|drive| drive.target.as_str())
                .collect()
        })
    }

    /// Every disk target of either view (any device, removable or not),
    /// live ones first, each once.
    pub fn disk_targets(&self) -> Vec<&str> {
        self.each_once(|xml| xml.disks.iter().map(|disk| disk.target.as_str()).collect())
    }

    /// What `names` gives for the live view, then for the config, each once.
    fn each_once<'a>(&'a self, names: impl Fn(&'a DomainXml) -> Vec<&'a str>) -> Vec<&'a str> {
        let mut targets: Vec<&str> = Vec::new();
        for xml in self.live.iter().chain(&self.config) {
            for name in names(xml) {
                if !targets.contains(&name) {
                    targets.push(name);
                }
            }
        }
        targets
    }

    pub fn views(&self, target: &str) -> DriveViews<'_> {
        DriveViews {
            live: self.live.as_ref().and_then(|x| x.drive(target)),
            config: self.config.as_ref().and_then(|x| x.drive(target)),
        }
    }

    /// The CD-ROM targets, the drives an ISO can go into.
    pub fn cdrom_targets(&self) -> Vec<&str> {
        self.targets()
            .into_iter()
            .filter(|t| self.views(t).current().kind == DriveKind::Cdrom)
            .collect()
    }

    /// `target`, when the domain has a removable drive of that name; an
    /// error naming the drives it has otherwise.
    pub fn drive(&self, target: &str) -> Result<&str> {
        let targets = self.targets();
        match targets.iter().find(|t| **t == target) {
            Some(found) => Ok(found),
            None => bail!(
                "'{}' has no CD-ROM or floppy drive '{}' (drives: {})",
                sanitize(&self.name),
                sanitize(target),
                names_or_none(&targets)
            ),
        }
    }

    /// Which drive an ISO goes into, or why none can: the drive `named`,
    /// else the only CD-ROM; without a CD-ROM, a new one where `attach`
    /// allows it.
    pub fn drive_for_iso(&self, named: Option<&str>, attach: bool) -> Result<DriveChoice<'_>> {
        let decided = |drive| Ok(DriveChoice::Decided(drive));
        if let Some(named) = named {
            return decided(IsoDrive::Existing(self.drive(named)?));
        }
        match self.cdrom_targets()[..] {
            [] if attach => decided(IsoDrive::Attach),
            [] => bail!(
                "'{}' has no CD-ROM drive; `mount --attach` adds {}",
                sanitize(&self.name),
                if self.config.as_ref().is_some_and(|c| c.scsi_controller) {
                    "a SCSI CD-ROM on its SCSI controller (live and config)"
                } else {
                    "a SATA CD-ROM to its config"
                }
            ),
            [only] => decided(IsoDrive::Existing(only)),
            ref several => Ok(DriveChoice::OneOf(several.to_vec())),
        }
    }
}

/// Drive names for a message, sanitized; "none" for no drive at all.
pub fn names_or_none(targets: &[&str]) -> String {
    if targets.is_empty() {
        return "none".to_owned();
    }
    targets
        .iter()
        .map(|t| sanitize(t))
        .collect::<Vec<_>>()
        .join(", ")
}
