//! The ISO library of one host: every ISO volume of its active storage
//! pools, and the ISO files its drives hold outside them, each with the
//! drives that hold it, live or in the persistent config. Every disk of
//! every device (CD-ROM, floppy, disk, LUN) holds the images it reads.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result};
use serde::Serialize;

use super::domain::DomainMedia;
use super::iso::IsoName;
use super::manager::MediaManager;
use crate::virsh::{Disk, DomainXml, Media, Volume};

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
    /// An ISO by name or content, or in a CD-ROM: what `library` lists.
    /// The rest are images only other drives hold (a VM's system disk),
    /// there so that nothing deletes or overwrites them.
    #[serde(skip)]
    pub iso: bool,
}

/// A drive holding an ISO, in the running VM and/or its persistent config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Holder {
    pub domain: String,
    pub target: String,
    /// The drive's `device=`: `cdrom`, `floppy`, `disk` or `lun`.
    pub device: String,
    pub live: bool,
    pub config: bool,
}

impl Holder {
    /// `web1 hdc cdrom (live, config)`, unsanitized.
    pub fn describe(&self) -> String {
        let views: Vec<&str> = [(self.live, "live"), (self.config, "config")]
            .into_iter()
            .filter_map(|(held, view)| held.then_some(view))
            .collect();
        format!(
            "{} {} {} ({})",
            self.domain,
            self.target,
            self.device,
            views.join(", ")
        )
    }
}

impl LibraryEntry {
    /// Whether `iso` names this ISO, by `pool/volume` or by path.
    pub fn is(&self, iso: &IsoName) -> bool {
        let volume = self
            .pool
            .as_ref()
            .zip(self.volume.as_ref())
            .map(|(pool, volume)| format!("{pool}/{volume}"));
        volume
            .iter()
            .chain(&self.path)
            .any(|label| iso.matches(label))
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

/// Which file a path is, as far as it can be told.
#[derive(Debug, Clone, PartialEq, Eq)]
enum FileKey {
    /// This machine's file: its device and inode.
    Inode(u64, u64),
    /// A file that cannot be looked at here: its path as written.
    Path(PathBuf),
}

/// What a drive names that no pool lists, as far as the drive says;
/// ordered as the library lists it: files by path, then `pool/volume`s.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Unlisted {
    pool: Option<String>,
    volume: Option<String>,
    path: Option<String>,
}

/// Builds the library from a host's volumes and domains. Each image a
/// disk reads (its source and backing chain, live and in the config) is
/// matched to every volume that is its file, by `pool/volume` or by path
/// (locally by device and inode: through symlinks, bind mounts and hard
/// links); the files that match no volume are files outside every
/// pool. Pool volumes come first, by pool and name; then what no pool
/// lists: files by path, then the `pool/volume`s of pools the host does
/// not have. Every ISO volume is there, and every image a disk holds.
pub fn library<'a>(
    volumes: &[Volume],
    domains: &'a [DomainMedia],
    files: Files,
) -> Vec<LibraryEntry> {
    // The file each volume is: one file may be several volumes (two
    // pools over one directory, one of them through a symbolic link or a
    // bind mount), and a drive holding it by any of their names holds
    // them all. Locally a file is its device and inode; else its path.
    let file_of = |path: &str| {
        use std::os::unix::fs::MetadataExt;
        match files {
            Files::Local => std::fs::metadata(path)
                .ok()
                .map(|file| FileKey::Inode(file.dev(), file.ino())),
            Files::Remote => None,
        }
        .unwrap_or_else(|| FileKey::Path(PathBuf::from(path)))
    };
    let volume_files: Vec<FileKey> = volumes.iter().map(|v| file_of(&v.path)).collect();
    let find_volumes = |media: &Media| -> Vec<usize> {
        let file = match media {
            Media::Volume { pool, volume } => volumes
                .iter()
                .position(|v| &v.pool == pool && &v.name == volume)
                .map(|index| volume_files[index].clone()),
            // A block device may be a volume too (a logical pool's).
            Media::File(path) | Media::Block(path) => Some(file_of(path)),
            Media::Network { .. } => None,
        };
        (0..volumes.len())
            .filter(|index| file.as_ref() == Some(&volume_files[*index]))
            .collect()
    };
    let mut in_pools: BTreeMap<usize, Vec<Holder>> = volumes
        .iter()
        .enumerate()
        .filter(|(_, volume)| volume.is_iso())
        .map(|(index, _)| (index, Vec::new()))
        .collect();
    // Media no pool lists: keyed by what the drive names.
    let mut outside: BTreeMap<Unlisted, Vec<Holder>> = BTreeMap::new();
    for domain in domains {
        let disks = |xml: &'a Option<DomainXml>, target: &str| -> Option<&'a Disk> {
            xml.as_ref()?
                .disks
                .iter()
                .find(|disk| disk.target == target)
        };
        for target in domain.disk_targets() {
            let (live, config) = (disks(&domain.live, target), disks(&domain.config, target));
            let images = |disk: Option<&'a Disk>| disk.into_iter().flat_map(|d| &d.images);
            let device = &live.or(config).expect("a target of either view").device;
            for media in images(live).chain(images(config)) {
                let holds = |disk: Option<&'a Disk>| images(disk).any(|held| held == media);
                let add = |holders: &mut Vec<Holder>| {
                    if !holders
                        .iter()
                        .any(|h| h.domain == domain.name && h.target == target)
                    {
                        holders.push(Holder {
                            domain: domain.name.clone(),
                            target: target.to_owned(),
                            device: device.clone(),
                            live: holds(live),
                            config: holds(config),
                        });
                    }
                };
                let found = find_volumes(media);
                if !found.is_empty() {
                    for index in found {
                        add(in_pools.entry(index).or_default());
                    }
                    continue;
                }
                let key = match media {
                    Media::Volume { pool, volume } => Unlisted {
                        pool: Some(pool.clone()),
                        volume: Some(volume.clone()),
                        path: None,
                    },
                    Media::File(path) => Unlisted {
                        pool: None,
                        volume: None,
                        path: Some(path.clone()),
                    },
                    _ => continue,
                };
                add(outside.entry(key).or_default());
            }
        }
    }
    let in_cdrom = |holders: &[Holder]| holders.iter().any(|h| h.device == "cdrom");
    let pool_entries = in_pools.into_iter().map(|(index, holders)| {
        let volume = &volumes[index];
        LibraryEntry {
            pool: Some(volume.pool.clone()),
            volume: Some(volume.name.clone()),
            path: Some(volume.path.clone()),
            size_bytes: volume.capacity,
            missing: false,
            iso: volume.is_iso() || in_cdrom(&holders),
            holders,
        }
    });
    let mut entries: Vec<LibraryEntry> = pool_entries.collect();
    entries.sort_by(|a, b| (&a.pool, &a.volume).cmp(&(&b.pool, &b.volume)));
    entries.extend(outside.into_iter().map(|(unlisted, holders)| {
        let Unlisted { pool, volume, path } = unlisted;
        let local = path
            .as_deref()
            .filter(|_| files == Files::Local)
            .and_then(|path| std::fs::metadata(path).ok());
        let iso = in_cdrom(&holders)
            || [&volume, &path]
                .into_iter()
                .flatten()
                .any(|name| name.to_ascii_lowercase().ends_with(".iso"))
            || local.is_some()
                && path.as_deref().is_some_and(|path| {
                    super::has_iso9660_signature(std::path::Path::new(path)).unwrap_or(false)
                });
        LibraryEntry {
            missing: local.is_none(),
            size_bytes: local.map(|metadata| metadata.len()),
            iso,
            pool,
            volume,
            path,
            holders,
        }
    }));
    entries
}

impl MediaManager {
    /// This host's ISO library (see [`library`]): its volumes (three virsh
    /// processes) and its domains' drives (as `load_all`).
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virsh::{DomainState, Drive, DriveKind};

    fn volume(pool: &str, name: &str, path: &str, format: &str) -> Volume {
        Volume {
            pool: pool.into(),
            name: name.into(),
            path: path.into(),
            capacity: Some(1000),
            format: Some(format.into()),
        }
    }

    fn drive(kind: DriveKind, target: &str, media: Option<Media>) -> Drive {
        Drive {
            kind,
            target: target.into(),
            bus: Some("ide".into()),
            media,
            tray_open: false,
            readonly: true,
            startup_policy: None,
        }
    }

    /// A disk that is no removable drive, reading `images`.
    fn disk(device: &str, target: &str, images: Vec<Media>) -> Disk {
        Disk {
            target: target.into(),
            bus: Some("virtio".into()),
            device: device.into(),
            images,
        }
    }

    /// The XML of removable `drives` and other `disks`, as the parser
    /// makes it: every drive is a disk too.
    fn xml_with(drives: Vec<Drive>, mut disks: Vec<Disk>) -> DomainXml {
        for drive in &drives {
            disks.push(disk(
                drive.kind.as_str(),
                &drive.target,
                drive.media.clone().into_iter().collect(),
            ));
        }
        DomainXml {
            drives,
            disks,
            ..DomainXml::default()
        }
    }

    fn xml(drives: Vec<Drive>) -> Option<DomainXml> {
        Some(xml_with(drives, Vec::new()))
    }

    fn domain(name: &str, live: Option<Vec<Drive>>, config: Vec<Drive>) -> DomainMedia {
        DomainMedia {
            name: name.into(),
            state: if live.is_some() {
                DomainState::Running
            } else {
                DomainState::ShutOff
            },
            live: live.and_then(xml),
            config: xml(config),
        }
    }

    fn file(path: &str) -> Option<Media> {
        Some(Media::File(path.into()))
    }

    fn holder(domain: &str, target: &str, live: bool, config: bool) -> Holder {
        device_holder(domain, target, "cdrom", live, config)
    }

    fn device_holder(domain: &str, target: &str, device: &str, live: bool, config: bool) -> Holder {
        Holder {
            domain: domain.into(),
            target: target.into(),
            device: device.into(),
            live,
            config,
        }
    }

    /// One volume named both ways (pool/volume live, its path in the
    /// config), each view told apart; a volume that is no ISO is listed
    /// only while a CD-ROM holds it.
    #[test]
    fn a_volume_is_held_by_name_and_by_path_live_and_in_config() {
        let volumes = [
            volume("isos", "a.iso", "/p/a.iso", "raw"),
            volume("isos", "b.img", "/p/b.img", "iso"),
            volume("isos", "disk.qcow2", "/p/disk.qcow2", "qcow2"),
            volume("isos", "cd.raw", "/p/cd.raw", "raw"),
        ];
        let by_volume = Some(Media::Volume {
            pool: "isos".into(),
            volume: "a.iso".into(),
        });
        let domains = [
            domain(
                "web",
                Some(vec![drive(DriveKind::Cdrom, "hdc", by_volume)]),
                vec![drive(DriveKind::Cdrom, "hdc", file("/p/cd.raw"))],
            ),
            domain(
                "db",
                None,
                vec![drive(DriveKind::Cdrom, "hdc", file("/p/a.iso"))],
            ),
        ];
        let entries = library(&volumes, &domains, Files::Remote);
        let names: Vec<_> = entries.iter().map(|e| e.volume.as_deref()).collect();
        assert_eq!(names, [Some("a.iso"), Some("b.img"), Some("cd.raw")]);
        assert_eq!(
            entries[0].holders,
            [
                holder("web", "hdc", true, false),
                holder("db", "hdc", false, true)
            ]
        );
        assert!(entries[1].holders.is_empty());
        assert_eq!(entries[2].holders, [holder("web", "hdc", false, true)]);
        assert!(entries.iter().all(|e| !e.missing));
    }

    /// Files outside every pool: a CD-ROM's is listed (missing when gone
    /// here, or when remote since only pools are seen there); a floppy's
    /// is held but not listed (no ISO), a host device is neither; a
    /// `pool/volume` no pool lists is missing.
    #[test]
    fn media_outside_every_pool() {
        let domains = [domain(
            "vm",
            None,
            vec![
                drive(DriveKind::Cdrom, "hdc", file("/etc/os-release")),
                drive(DriveKind::Cdrom, "hdd", file("/nonexistent/x.iso")),
                drive(
                    DriveKind::Cdrom,
                    "sda",
                    Some(Media::Volume {
                        pool: "gone".into(),
                        volume: "y.iso".into(),
                    }),
                ),
                drive(
                    DriveKind::Cdrom,
                    "sdb",
                    Some(Media::Block("/dev/sr0".into())),
                ),
                drive(DriveKind::Floppy, "fda", file("/etc/hostname")),
            ],
        )];
        let mut local = library(&[], &domains, Files::Local);
        let floppy = local.remove(0);
        assert_eq!(floppy.path.as_deref(), Some("/etc/hostname"));
        assert_eq!(
            (floppy.iso, &floppy.holders[..]),
            (
                false,
                &[device_holder("vm", "fda", "floppy", false, true)][..]
            )
        );
        assert!(local.iter().all(|e| e.iso));
        let shown: Vec<_> = local
            .iter()
            .map(|e| {
                (
                    e.pool.as_deref(),
                    e.volume.as_deref(),
                    e.path.as_deref(),
                    e.missing,
                )
            })
            .collect();
        assert_eq!(
            shown,
            [
                (None, None, Some("/etc/os-release"), false),
                (None, None, Some("/nonexistent/x.iso"), true),
                (Some("gone"), Some("y.iso"), None, true),
            ]
        );
        let size = std::fs::metadata("/etc/os-release").unwrap().len();
        assert_eq!(local[0].size_bytes, Some(size));
        let remote = library(&[], &domains, Files::Remote);
        assert!(remote.iter().all(|e| e.missing && e.size_bytes.is_none()));
    }

    /// Locally a drive holding a symlink to a volume holds the volume.
    #[test]
    fn a_symlink_to_a_volume_holds_it_locally() {
        let dir = std::env::temp_dir().join(format!("library-link-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let real = dir.join("real.iso");
        let link = dir.join("link.iso");
        std::fs::write(&real, b"iso").unwrap();
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let volumes = [volume("p", "real.iso", real.to_str().unwrap(), "raw")];
        let domains = [domain(
            "vm",
            None,
            vec![drive(DriveKind::Cdrom, "hdc", file(link.to_str().unwrap()))],
        )];
        let local = library(&volumes, &domains, Files::Local);
        assert_eq!(local.len(), 1);
        assert_eq!(local[0].holders, [holder("vm", "hdc", false, true)]);
        let remote = library(&volumes, &domains, Files::Remote);
        assert_eq!(remote.len(), 2, "remotely a path is only its text");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// One file that is a volume of three pools (the second pool's
    /// directory a symbolic link to the first's, the third's a hard link):
    /// a drive holding it by either's
    /// path, or by `pool/volume`, holds both volumes, so neither is unused
    /// (and none deleted or replaced). Before, only the volume whose
    /// path the drive named held it.
    #[test]
    fn one_file_in_several_pools_is_held_under_each_name() {
        let dir = std::env::temp_dir().join(format!("library-twice-{}", std::process::id()));
        let (real, link) = (dir.join("real"), dir.join("link"));
        std::fs::create_dir_all(&real).unwrap();
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&real, &link).unwrap();
        std::fs::write(real.join("x.iso"), b"iso").unwrap();
        let path = |dir: &std::path::Path| dir.join("x.iso").to_str().unwrap().to_owned();
        let volumes = [
            volume("a", "x.iso", &path(&real), "iso"),
            volume("b", "x.iso", &path(&link), "iso"),
        ];
        let by_volume = Some(Media::Volume {
            pool: "b".into(),
            volume: "x.iso".into(),
        });
        // A third name for it: a hard link in a third pool, as a bind
        // mount of the directory would be (the same device and inode).
        let hard = dir.join("hard");
        std::fs::create_dir_all(&hard).unwrap();
        std::fs::hard_link(real.join("x.iso"), hard.join("x.iso")).unwrap();
        let volumes = [
            volumes[0].clone(),
            volumes[1].clone(),
            volume("c", "x.iso", &path(&hard), "iso"),
        ];
        for media in [file(&path(&real)), file(&path(&link)), by_volume] {
            let domains = [domain(
                "vm",
                None,
                vec![drive(DriveKind::Cdrom, "hdc", media)],
            )];
            let entries = library(&volumes, &domains, Files::Local);
            assert_eq!(entries.len(), 3, "{entries:?}");
            assert!(
                entries
                    .iter()
                    .all(|e| e.holders == [holder("vm", "hdc", false, true)]),
                "{entries:?}"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Every disk holds what it reads, whatever its device: an ISO booted
    /// as a disk (live), one in a floppy (config only), a volume named by
    /// `pool/volume` on a LUN, a block device that is a volume, and each
    /// layer of a backing chain. Only ISOs and CD-ROMs' media are listed;
    /// the rest is there for its holders.
    #[test]
    fn every_disk_of_every_device_holds_its_images() {
        let volumes = [
            volume("isos", "hybrid.iso", "/p/hybrid.iso", "iso"),
            volume("isos", "floppy.iso", "/p/floppy.iso", "raw"),
            volume("isos", "lun.iso", "/p/lun.iso", "raw"),
            volume("isos", "base.qcow2", "/p/base.qcow2", "qcow2"),
            volume("lvm", "lv0", "/dev/vg/lv0", "raw"),
        ];
        let live = xml_with(
            Vec::new(),
            vec![disk(
                "disk",
                "vda",
                vec![Media::File("/p/hybrid.iso".into())],
            )],
        );
        let config = xml_with(
            vec![drive(DriveKind::Floppy, "fda", file("/p/floppy.iso"))],
            vec![
                disk("disk", "vda", vec![Media::File("/p/hybrid.iso".into())]),
                disk(
                    "lun",
                    "sda",
                    vec![Media::Volume {
                        pool: "isos".into(),
                        volume: "lun.iso".into(),
                    }],
                ),
                disk(
                    "disk",
                    "vdb",
                    vec![
                        Media::File("/q/top.qcow2".into()),
                        Media::File("/p/base.qcow2".into()),
                    ],
                ),
                disk("disk", "vdc", vec![Media::Block("/dev/vg/lv0".into())]),
            ],
        );
        let domains = [DomainMedia {
            name: "vm".into(),
            state: DomainState::Running,
            live: Some(live),
            config: Some(config),
        }];
        let entries = library(&volumes, &domains, Files::Remote);
        let held: Vec<_> = entries
            .iter()
            .map(|e| {
                let label = e.volume.as_deref().or(e.path.as_deref()).unwrap();
                (label, e.iso, e.holders.clone())
            })
            .collect();
        assert_eq!(
            held,
            [
                (
                    "base.qcow2",
                    false,
                    vec![device_holder("vm", "vdb", "disk", false, true)]
                ),
                (
                    "floppy.iso",
                    true,
                    vec![device_holder("vm", "fda", "floppy", false, true)]
                ),
                (
                    "hybrid.iso",
                    true,
                    vec![device_holder("vm", "vda", "disk", true, true)]
                ),
                (
                    "lun.iso",
                    true,
                    vec![device_holder("vm", "sda", "lun", false, true)]
                ),
                (
                    "lv0",
                    false,
                    vec![device_holder("vm", "vdc", "disk", false, true)]
                ),
                (
                    "/q/top.qcow2",
                    false,
                    vec![device_holder("vm", "vdb", "disk", false, true)]
                ),
            ]
        );
        assert_eq!(
            entries[2].holders[0].describe(),
            "vm vda disk (live, config)"
        );
    }
}
