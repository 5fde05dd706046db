//! A guest's filesystems from `virsh guestinfo --filesystem` (the agent's
//! guest-get-fsinfo): mount point, type, devices and sizes, as the guest
//! reports them; which of them count towards the guest's disk usage.

use std::collections::BTreeMap;

use serde::Serialize;

/// Filesystem types whose figures are not room the guest can fill: an ISO
/// or other read-only image reports itself full, and an overlay's figure
/// is its upper layer's, counted already as a filesystem of its own.
/// Listed, but kept out of [`Filesystem::counts`].
pub const UNCOUNTED_TYPES: [&str; 8] = [
    "iso9660",
    "udf",
    "squashfs",
    "erofs",
    "cramfs",
    "romfs",
    "overlay",
    "fuse.squashfuse",
];

/// One filesystem as the guest's agent reported it. Every string is the
/// guest's (untrusted: displays escape it); a size the agent left out or
/// gave as no byte count is `None`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Filesystem {
    /// The guest's device name (`sda1`, `loop0`): the same filesystem
    /// mounted twice (a bind mount) is counted once.
    #[serde(skip)]
    pub name: String,
    pub mountpoint: String,
    #[serde(rename = "type")]
    pub fs_type: String,
    /// The disks under it, as the host names them where the agent could
    /// tell (`disk.N.alias`), else as the guest does (`disk.N.device`).
    pub devices: Vec<String>,
    pub used_bytes: Option<u64>,
    pub total_bytes: Option<u64>,
}

impl Filesystem {
    /// Whether its figures belong in the guest's sum.
    pub fn counts(&self) -> bool {
        !UNCOUNTED_TYPES.contains(&self.fs_type.as_str())
    }
}

/// The sum over the filesystems that count (each device once), as
/// (used, total) bytes; `None` where none of them has both figures.
pub fn usage(filesystems: &[Filesystem]) -> Option<(u64, u64)> {
    let mut seen = std::collections::HashSet::new();
    filesystems
        .iter()
        .filter(|fs| fs.counts() && (fs.name.is_empty() || seen.insert(fs.name.as_str())))
        .filter_map(|fs| Some((fs.used_bytes?, fs.total_bytes?)))
        .reduce(|(u, t), (used, total)| (u.saturating_add(used), t.saturating_add(total)))
}

/// The filesystems in `guestinfo --filesystem`'s keys (`fs.count`,
/// `fs.N.mountpoint`, `fs.N.fstype`, `fs.N.used-bytes`, …). Where the
/// agent reports nothing (`fs.count` absent: an agent that found no
/// filesystem), the list is empty; a count that is not a number is a bad
/// reply (`Err`, saying what was wrong). Sizes that are absent, negative or
/// not numbers are `None`.
pub fn filesystems_from_guestinfo(
    info: &BTreeMap<String, String>,
) -> Result<Vec<Filesystem>, String> {
    let Some(count) = info.get("fs.count") else {
        return Ok(Vec::new());
    };
    let count: usize = count
        .parse()
        .map_err(|_| format!("fs.count is {}", crate::utils::sanitize(count)))?;
    // Only the indices present: a count the keys do not bear out costs
    // nothing (a forged count of 10^18 is not a loop of 10^18).
    let text = |key: String| info.get(&key).cloned().unwrap_or_default();
    let bytes = |key: String| info.get(&key).and_then(|v| v.parse::<u64>().ok());
    Ok((0..count)
        .take_while(|i| {
            info.contains_key(&format!("fs.{i}.name"))
                || info.contains_key(&format!("fs.{i}.mountpoint"))
        })
        .map(|i| {
            let disks = info
                .get(&format!("fs.{i}.disk.count"))
                .and_then(|n| n.parse::<usize>().ok())
                .unwrap_or(0);
            let devices = (0..disks)
                .map_while(|d| {
                    info.get(&format!("fs.{i}.disk.{d}.alias"))
                        .or_else(|| info.get(&format!("fs.{i}.disk.{d}.device")))
                        .cloned()
                })
                .collect();
            Filesystem {
                name: text(format!("fs.{i}.name")),
                mountpoint: text(format!("fs.{i}.mountpoint")),
                fs_type: text(format!("fs.{i}.fstype")),
                devices,
                used_bytes: bytes(format!("fs.{i}.used-bytes")),
                total_bytes: bytes(format!("fs.{i}.total-bytes")),
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::fixture;
    use crate::virsh::parse;

    fn parsed(text: &str) -> Vec<Filesystem> {
        filesystems_from_guestinfo(&parse::parse_guestinfo(text)).unwrap()
    }

    /// The lab guest's own answer (fixtures/README.md): its 8 MiB ext2.
    #[test]
    fn reads_the_lab_guests_filesystem() {
        let filesystems = parsed(&fixture("virsh/guestinfo-filesystem-lab.txt"));
        assert_eq!(
            filesystems,
            [Filesystem {
                name: "loop0".into(),
                mountpoint: "/srv/lab-data".into(),
                fs_type: "ext2".into(),
                devices: vec![],
                used_bytes: Some(1_067_008),
                total_bytes: Some(8_121_344),
            }]
        );
        assert_eq!(usage(&filesystems), Some((1_067_008, 8_121_344)));
        assert_eq!(parsed(""), [], "an agent that found no filesystem");
    }

    /// A guest's answer is whatever its root wants: sizes negative, absent
    /// or words, a count the keys do not bear out, a control character in
    /// a mount point. None of it panics; what is no byte count is `None`.
    #[test]
    fn a_reply_off_the_schema_never_panics() {
        let text = "fs.count : 99999999999999\n\
                    fs.0.name : sda1\nfs.0.mountpoint : /\x1b[2Jx\nfs.0.fstype : ext4\n\
                    fs.0.total-bytes : -5\nfs.0.used-bytes : lots\nfs.0.disk.count : 3\n\
                    fs.0.disk.0.alias : vda\nfs.0.disk.0.device : /dev/vda1\n\
                    fs.1.name : sr0\nfs.1.mountpoint : /media/cd\nfs.1.fstype : iso9660\n\
                    fs.1.total-bytes : 100\nfs.1.used-bytes : 100\n\
                    fs.2.name : sda1\nfs.2.mountpoint : /bind\nfs.2.fstype : ext4\n\
                    fs.2.total-bytes : 1000\nfs.2.used-bytes : 10\n\
                    fs.3.name : sdb\nfs.3.mountpoint : /data\nfs.3.fstype : xfs\n\
                    fs.3.total-bytes : 18446744073709551615\nfs.3.used-bytes : 18446744073709551615\n";
        let filesystems = parsed(text);
        assert_eq!(filesystems.len(), 4);
        let root = &filesystems[0];
        assert_eq!(
            root.mountpoint, "/\x1b[2Jx",
            "kept exactly: displays escape it"
        );
        assert_eq!((root.used_bytes, root.total_bytes), (None, None));
        assert_eq!(root.devices, ["vda"], "the disks the keys bear out");
        // The ISO is listed but not counted; the bind mount of sda1 is
        // the root's device again, counted once (the root has no figures,
        // so sda1 counts for nothing): the sum is sdb's alone.
        assert!(!filesystems[1].counts());
        assert_eq!(usage(&filesystems), Some((u64::MAX, u64::MAX)));
        assert_eq!(usage(&filesystems[..2]), None);
        let other_huge = Filesystem {
            name: "sdc".into(),
            ..filesystems[3].clone()
        };
        assert_eq!(
            usage(&[filesystems[3].clone(), other_huge]),
            Some((u64::MAX, u64::MAX)),
            "a sum that would overflow saturates"
        );
        assert_eq!(
            filesystems_from_guestinfo(&parse::parse_guestinfo("fs.count : -1\n")),
            Err("fs.count is -1".to_owned())
        );
    }
}
