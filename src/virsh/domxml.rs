//! Pure parser for `virsh dumpxml`: a domain's removable drives (CD-ROM and
//! floppy), and every disk with its target and the images it reads, read
//! with an XML parser.

use serde::Serialize;

/// Which kind of removable drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DriveKind {
    Cdrom,
    Floppy,
}

impl DriveKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DriveKind::Cdrom => "cdrom",
            DriveKind::Floppy => "floppy",
        }
    }
}

/// What a drive holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Media {
    /// `<disk type='file'>`: an image file on the host.
    File(String),
    /// `<disk type='block'>`: a host device such as /dev/sr0.
    Block(String),
    /// `<disk type='volume'>`: a volume of a storage pool.
    Volume { pool: String, volume: String },
    /// `<disk type='network'>`: an image behind a protocol (https, nbd,
    /// rbd, …), with the first `<host>` where there is one.
    Network {
        protocol: String,
        host: Option<String>,
        name: String,
    },
}

impl Media {
    /// The host path, where the media has one (a volume is named by its
    /// pool, network media by its protocol).
    pub fn path(&self) -> Option<&str> {
        match self {
            Media::File(path) | Media::Block(path) => Some(path),
            Media::Volume { .. } | Media::Network { .. } => None,
        }
    }

    /// How the media reads in a table or JSON: its path, `pool/volume`,
    /// or `protocol://host/name` (`protocol:name` without a host).
    pub fn label(&self) -> String {
        match self {
            Media::File(path) | Media::Block(path) => path.clone(),
            Media::Volume { pool, volume } => format!("{pool}/{volume}"),
            Media::Network {
                protocol,
                host: Some(host),
                name,
            } => {
                let slash = if name.starts_with('/') { "" } else { "/" };
                format!("{protocol}://{host}{slash}{name}")
            }
            Media::Network {
                protocol,
                host: None,
                name,
            } => format!("{protocol}:{name}"),
        }
    }
}

/// One CD-ROM or floppy drive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drive {
    pub kind: DriveKind,
    /// `<target dev=…>`: the name change-media takes as `--path`.
    pub target: String,
    pub bus: Option<String>,
    /// `None` when the drive is empty.
    pub media: Option<Media>,
    pub tray_open: bool,
    pub readonly: bool,
    /// `<source startupPolicy=…>`: `optional` or `requisite` lets libvirt
    /// drop missing media (at a migration, too) rather than fail.
    pub startup_policy: Option<String>,
}

/// What the media code needs from one domain's XML.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DomainXml {
    pub drives: Vec<Drive>,
    /// Every `<disk>`, removable or not: a new drive needs a free target,
    /// and `serve` labels block figures with the bus and device.
    pub disks: Vec<Disk>,
    /// Whether the domain has QEMU's guest agent channel
    /// (`org.qemu.guest_agent.0`): without one there is no agent to ask.
    pub agent_channel: bool,
    /// Whether it has a SCSI controller (`<controller type='scsi'>`, as
    /// cockpit adds virtio-scsi): libvirt hot-plugs a CD-ROM onto it.
    pub scsi_controller: bool,
}

/// Any `<disk>` of a domain, as its target names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    /// `<target dev=…>`: the name `domstats` reports its figures under.
    pub target: String,
    pub bus: Option<String>,
    /// `device=`: `disk` (libvirt's default), `cdrom`, `floppy`, `lun`.
    pub device: String,
    /// Every image the disk reads, whatever its device: its source, then
    /// the backing chain as far as the XML shows it. A drive holds all of
    /// them: none may be deleted or overwritten under it.
    pub images: Vec<Media>,
}

impl DomainXml {
    pub fn drive(&self, target: &str) -> Option<&Drive> {
        self.drives.iter().find(|drive| drive.target == target)
    }
}

/// The first `sdX` name none of `taken` uses, for a new SATA or SCSI drive.
pub fn free_sata_target(taken: &[&str]) -> Option<String> {
    (b'a'..=b'z')
        .map(|letter| format!("sd{}", char::from(letter)))
        .find(|name| !taken.contains(&name.as_str()))
}

/// The name of the virtio channel QEMU's guest agent listens on.
const AGENT_CHANNEL: &str = "org.qemu.guest_agent.0";

/// Parses `virsh dumpxml [--inactive]` output. Disks other than CD-ROMs and
/// floppies are no drives to mount into, but they hold their images too.
pub fn parse_domain_xml(text: &str) -> Result<DomainXml, roxmltree::Error> {
    let document = roxmltree::Document::parse(text)?;
    let mut parsed = DomainXml::default();
    let devices = || {
        document
            .root_element()
            .children()
            .filter(|node| node.has_tag_name("devices"))
            .flat_map(|devices| devices.children())
    };
    parsed.agent_channel = devices()
        .filter(|node| node.has_tag_name("channel"))
        .flat_map(|channel| channel.children())
        .any(|target| {
            target.has_tag_name("target") && target.attribute("name") == Some(AGENT_CHANNEL)
        });
    parsed.scsi_controller = devices()
        .any(|node| node.has_tag_name("controller") && node.attribute("type") == Some("scsi"));
    let disks = devices().filter(|node| node.has_tag_name("disk"));
    for disk in disks {
        let child = |name: &str| disk.children().find(|node| node.has_tag_name(name));
        let target = child("target");
        let Some(dev) = target.and_then(|t| t.attribute("dev")) else {
            continue;
        };
        let bus = target.and_then(|t| t.attribute("bus")).map(str::to_owned);
        parsed.disks.push(Disk {
            target: dev.to_owned(),
            bus: bus.clone(),
            device: disk.attribute("device").unwrap_or("disk").to_owned(),
            images: images(disk),
        });
        let kind = match disk.attribute("device") {
            Some("cdrom") => DriveKind::Cdrom,
            Some("floppy") => DriveKind::Floppy,
            _ => continue,
        };
        parsed.drives.push(Drive {
            kind,
            target: dev.to_owned(),
            bus,
            media: child("source").and_then(|source| media(disk.attribute("type"), source)),
            tray_open: target.and_then(|t| t.attribute("tray")) == Some("open"),
            readonly: child("readonly").is_some(),
            startup_policy: child("source")
                .and_then(|source| source.attribute("startupPolicy"))
                .map(str::to_owned),
        });
    }
    Ok(parsed)
}

/// The source of `disk` (a `<disk>` or a `<backingStore>`), then those of
/// its nested `<backingStore>`s, each that names an image.
fn images(disk: roxmltree::Node) -> Vec<Media> {
    let mut images = Vec::new();
    let mut layer = Some(disk);
    while let Some(node) = layer {
        let child = |name: &str| node.children().find(|n| n.has_tag_name(name));
        images.extend(child("source").and_then(|source| media(node.attribute("type"), source)));
        layer = child("backingStore");
    }
    images
}

/// A `<source>` names media only through its attributes: an ejected drive
/// of a running QEMU domain keeps a bare `<source index='N'/>`.
fn media(disk_type: Option<&str>, source: roxmltree::Node) -> Option<Media> {
    let attribute = |name: &str| {
        source
            .attribute(name)
            .filter(|value| !value.is_empty())
            .map(str::to_owned)
    };
    match disk_type {
        Some("block") => attribute("dev").map(Media::Block),
        Some("volume") => Some(Media::Volume {
            pool: attribute("pool")?,
            volume: attribute("volume")?,
        }),
        Some("network") => Some(Media::Network {
            protocol: attribute("protocol")?,
            host: source
                .children()
                .find(|child| child.has_tag_name("host"))
                .and_then(|host| {
                    let name = host.attribute("name").filter(|n| !n.is_empty())?;
                    Some(match host.attribute("port") {
                        Some(port) => format!("{name}:{port}"),
                        None => name.to_owned(),
                    })
                }),
            name: attribute("name")?,
        }),
        _ => attribute("file").map(Media::File),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> DomainXml {
        parse_domain_xml(&crate::testing::fixture(&format!("virsh/{name}")))
            .unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    /// lab-agent has the agent's channel; lab-noagent has none.
    #[test]
    fn the_guest_agent_channel_is_seen() {
        assert!(fixture("dumpxml-lab-agent-live.xml").agent_channel);
        assert!(!fixture("dumpxml-lab-noagent-live.xml").agent_channel);
    }

    fn only_drive(xml: &DomainXml) -> &Drive {
        assert_eq!(xml.drives.len(), 1, "{xml:?}");
        &xml.drives[0]
    }

    #[test]
    fn lab_live_ide_cdrom_with_media() {
        let xml = fixture("dumpxml-lab-agent-live.xml");
        let drive = only_drive(&xml);
        assert_eq!(drive.kind, DriveKind::Cdrom);
        assert_eq!(drive.target, "hdc");
        assert_eq!(drive.bus.as_deref(), Some("ide"));
        assert_eq!(
            drive.media,
            Some(Media::File("/work/main/.lab/isos/install-a.iso".into()))
        );
        assert!(drive.readonly && !drive.tray_open);
    }

    #[test]
    fn lab_inactive_and_shut_off_configs() {
        let inactive = fixture("dumpxml-lab-agent-inactive.xml");
        assert_eq!(
            only_drive(&inactive).media.as_ref().and_then(Media::path),
            Some("/work/main/.lab/isos/install-a.iso")
        );
        let off = fixture("dumpxml-lab-off.xml");
        assert_eq!(
            only_drive(&off).media,
            Some(Media::File("/work/main/.lab/isos/tools-b.iso".into()))
        );
    }

    #[test]
    fn non_ascii_path_with_space() {
        let xml = fixture("dumpxml-lab-meta-live.xml");
        assert_eq!(
            only_drive(&xml).media.as_ref().map(Media::label).as_deref(),
            Some("/work/main/.lab/isos/Débian netinst.iso")
        );
    }

    #[test]
    fn empty_drive_never_inserted() {
        let xml = fixture("dumpxml-lab-noagent-live.xml");
        assert_eq!(only_drive(&xml).media, None);
    }

    #[test]
    fn ejected_drive_keeps_a_bare_source_element() {
        // Captured after `change-media --eject --live` on lab-noagent.
        let xml = fixture("dumpxml-lab-noagent-ejected-live.xml");
        assert_eq!(only_drive(&xml).media, None);
    }

    #[test]
    fn several_drives_floppy_and_taken_targets() {
        let xml = fixture("dumpxml-test-two-drives.xml");
        let kinds: Vec<(&str, DriveKind, Option<&str>)> = xml
            .drives
            .iter()
            .map(|d| (d.target.as_str(), d.kind, d.bus.as_deref()))
            .collect();
        assert_eq!(
            kinds,
            [
                ("hdc", DriveKind::Cdrom, Some("ide")),
                ("sda", DriveKind::Cdrom, Some("sata")),
                ("fda", DriveKind::Floppy, Some("fdc")),
            ]
        );
        assert_eq!(xml.drive("sda").unwrap().media, None);
        assert!(!xml.drive("fda").unwrap().readonly);
        let taken: Vec<&str> = xml.disks.iter().map(|d| d.target.as_str()).collect();
        assert_eq!(taken, ["vda", "hdc", "sda", "fda"]);
        let vda = &xml.disks[0];
        assert_eq!(
            (vda.bus.as_deref(), vda.device.as_str()),
            (Some("virtio"), "disk")
        );
        assert_eq!(xml.disks[3].device, "floppy");
        assert_eq!(free_sata_target(&taken).as_deref(), Some("sdb"));
    }

    #[test]
    fn volume_source_names_pool_and_volume() {
        let xml = fixture("dumpxml-test-pool-volume.xml");
        let media = only_drive(&xml).media.clone().unwrap();
        assert_eq!(media.path(), None);
        assert_eq!(media.label(), "isos/Débian netinst.iso");
    }

    #[test]
    fn open_tray() {
        let xml = fixture("dumpxml-test-tray-open.xml");
        assert!(only_drive(&xml).tray_open);
    }

    #[test]
    fn no_cdrom_at_all() {
        let xml = fixture("dumpxml-test-no-cdrom-inactive.xml");
        assert!(xml.drives.is_empty());
        assert_eq!(xml.disks[0].target, "sda");
        assert_eq!(xml.disks.len(), 1);
    }

    #[test]
    fn attached_sata_cdrom_in_config() {
        let xml = fixture("dumpxml-lab-off-sata-attached.xml");
        let sata = xml.drive("sda").unwrap();
        assert_eq!(sata.bus.as_deref(), Some("sata"));
        assert_eq!(sata.kind, DriveKind::Cdrom);
    }

    /// A network CD-ROM used to read as an empty drive.
    #[test]
    fn network_source_names_protocol_host_and_name() {
        let xml = parse_domain_xml(
            "<domain><devices><disk type='network' device='cdrom'>\
             <source protocol='https' name='/debian/netinst.iso'><host name='mirror.example' port='443'/></source>\
             <target dev='hdc' bus='ide'/></disk>\
             <disk type='network' device='cdrom'><source protocol='rbd' name='isos/netinst'/>\
             <target dev='hdd' bus='ide'/></disk></devices></domain>",
        )
        .unwrap();
        let labels: Vec<String> = xml
            .drives
            .iter()
            .map(|d| d.media.as_ref().expect("full").label())
            .collect();
        assert_eq!(
            labels,
            [
                "https://mirror.example:443/debian/netinst.iso",
                "rbd:isos/netinst"
            ]
        );
        assert_eq!(
            xml.drives[0].media.as_ref().unwrap().path(),
            None,
            "nothing to look for on disk"
        );
    }

    #[test]
    fn block_device_source_and_garbage() {
        let xml = parse_domain_xml(
            "<domain><devices><disk type='block' device='cdrom'>\
             <source dev='/dev/sr0'/><target dev='hdc' bus='ide'/></disk>\
             </devices></domain>",
        )
        .unwrap();
        assert_eq!(
            only_drive(&xml).media,
            Some(Media::Block("/dev/sr0".into()))
        );
        assert!(parse_domain_xml("error: not xml").is_err());
        assert!(parse_domain_xml("").is_err());
    }

    /// Captured: lab-off's config with an ISO attached as a disk and
    /// another in a floppy. Each disk reads its image; the disk is no
    /// drive to mount into, the floppy is.
    #[test]
    fn lab_config_with_an_iso_as_a_disk_and_in_a_floppy() {
        let xml = fixture("dumpxml-lab-off-disk-and-floppy.xml");
        let disks: Vec<(&str, &str, Vec<String>)> = xml
            .disks
            .iter()
            .map(|d| {
                let images = d.images.iter().map(Media::label).collect();
                (d.target.as_str(), d.device.as_str(), images)
            })
            .collect();
        assert_eq!(
            disks,
            [
                (
                    "hdc",
                    "cdrom",
                    vec!["/work/main/.lab/isos/tools-b.iso".to_owned()]
                ),
                (
                    "vdz",
                    "disk",
                    vec!["/tmp/holders/cap/booted.iso".to_owned()]
                ),
                (
                    "fda",
                    "floppy",
                    vec!["/tmp/holders/cap/floppy.iso".to_owned()]
                ),
            ]
        );
        let drives: Vec<&str> = xml.drives.iter().map(|d| d.target.as_str()).collect();
        assert_eq!(drives, ["hdc", "fda"]);
    }

    /// Every disk, whatever its device, with each image it reads: a file
    /// and its backing chain, a block device, a pool volume; a disk with
    /// no source reads none.
    #[test]
    fn every_disk_with_its_images_and_backing_chain() {
        let xml = parse_domain_xml(
            "<domain><devices>\
             <disk type='file' device='disk'><source file='/v/top.qcow2'/>\
             <backingStore type='file'><format type='qcow2'/><source file='/v/mid.qcow2'/>\
             <backingStore type='block'><source dev='/dev/vg/base'/><backingStore/></backingStore>\
             </backingStore><target dev='vda' bus='virtio'/></disk>\
             <disk type='volume' device='lun'><source pool='isos' volume='x.iso'/>\
             <target dev='sda' bus='scsi'/></disk>\
             <disk type='file' device='floppy'><target dev='fda' bus='fdc'/></disk>\
             </devices></domain>",
        )
        .unwrap();
        let images: Vec<(&str, Vec<String>)> = xml
            .disks
            .iter()
            .map(|d| {
                (
                    d.device.as_str(),
                    d.images.iter().map(Media::label).collect(),
                )
            })
            .collect();
        assert_eq!(
            images,
            [
                (
                    "disk",
                    vec![
                        "/v/top.qcow2".to_owned(),
                        "/v/mid.qcow2".to_owned(),
                        "/dev/vg/base".to_owned()
                    ]
                ),
                ("lun", vec!["isos/x.iso".to_owned()]),
                ("floppy", vec![]),
            ]
        );
        assert_eq!(
            xml.drives.len(),
            1,
            "a disk or LUN is no drive to mount into"
        );
    }
}
