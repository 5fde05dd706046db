//! Pure parsers for the storage commands: `vol-list` (the volumes'
//! paths), `vol-dumpxml` (one volume), `pool-dumpxml` (a pool's name,
//! directory and room), `pool-info --bytes` and `vol-info --bytes`.

/// The Path column of `vol-list`, exactly. virsh 9.0 has no `--name` for
/// vol-list and pads its columns, so a blank cannot separate name from
/// path; but a volume name never holds a `/` (it is a file name within the
/// pool), so a row's path starts at its first `/`, and it runs to the end
/// of the line: virsh pads every column but the last, so a blank there is
/// the path's own (a volume named `x.iso ` is not `x.iso`). virsh writes
/// a control character (a TAB, a newline) of a cell as `\xNN`, and a
/// backslash as `\x5c`, so every `\xNN` is decoded back into its byte.
/// Rows without a `/` (network pools name volumes `pool/vol`-style with no
/// leading slash) are left out.
pub fn parse_vol_list_paths(text: &str) -> Vec<String> {
    text.lines()
        .skip_while(|line| !line.starts_with("---"))
        .skip(1)
        .filter_map(|line| unescape_cell(&line[line.find('/')?..]))
        .collect()
}

/// A table cell of virsh with its `\xNN` escapes decoded; `None` where
/// the bytes are no UTF-8 (no argument could name that path anyway).
fn unescape_cell(cell: &str) -> Option<String> {
    let bytes = cell.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        let escaped = bytes
            .get(at..at + 4)
            .filter(|four| four.starts_with(b"\\x"))
            .and_then(|four| std::str::from_utf8(&four[2..]).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                decoded.push(byte);
                at += 4;
            }
            None => {
                decoded.push(bytes[at]);
                at += 1;
            }
        }
    }
    String::from_utf8(decoded).ok()
}

/// One storage volume as `vol-dumpxml` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeXml {
    pub name: String,
    /// `<target><path>`: where the hypervisor reads it.
    pub path: String,
    /// `<capacity unit='bytes'>`: the size a guest sees.
    pub capacity: Option<u64>,
    /// `<target><format type=…>`: `iso` where libvirt recognised an ISO
    /// 9660 image (a dir pool on QEMU does), else `raw` and the like.
    pub format: Option<String>,
}

/// Parses `vol-dumpxml` output; `None` for text that is no volume XML.
pub fn parse_volume_xml(text: &str) -> Option<VolumeXml> {
    let document = roxmltree::Document::parse(text).ok()?;
    let volume = document.root_element();
    if !volume.has_tag_name("volume") {
        return None;
    }
    let target = child(volume, "target")?;
    let capacity = child(volume, "capacity").and_then(|node| {
        // libvirt always writes bytes; another unit is not guessed at.
        let unit = node.attribute("unit").unwrap_or("bytes");
        (unit == "bytes" || unit == "B")
            .then(|| node.text()?.trim().parse().ok())
            .flatten()
    });
    Some(VolumeXml {
        name: child(volume, "name")?.text()?.to_owned(),
        path: child(target, "path")?.text()?.to_owned(),
        capacity,
        format: child(target, "format")
            .and_then(|format| format.attribute("type"))
            .map(str::to_owned),
    })
}

/// A storage pool as `pool-dumpxml` describes it: name, type, target
/// path and, for an active pool, its room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    pub name: String,
    /// Whether it is running (its figures are current); from the listing.
    pub active: bool,
    /// `dir`, `fs`, `logical`, …
    pub pool_type: String,
    pub path: Option<String>,
    /// Bytes; `None` for an inactive pool (its figures are stale).
    pub capacity: Option<u64>,
    pub allocation: Option<u64>,
    pub available: Option<u64>,
}

/// Parses `pool-dumpxml`; `active` says whether its figures count.
pub fn parse_pool_xml(text: &str, active: bool) -> Option<Pool> {
    let document = roxmltree::Document::parse(text).ok()?;
    let pool = document.root_element();
    if !pool.has_tag_name("pool") {
        return None;
    }
    let bytes = |name: &str| {
        let node = child(pool, name)?;
        let unit = node.attribute("unit").unwrap_or("bytes");
        (active && (unit == "bytes" || unit == "B"))
            .then(|| node.text()?.trim().parse().ok())
            .flatten()
    };
    let capacity = bytes("capacity");
    Some(Pool {
        name: child(pool, "name")?.text()?.to_owned(),
        active,
        pool_type: pool.attribute("type").unwrap_or_default().to_owned(),
        path: child(pool, "target")
            .and_then(|target| child(target, "path"))
            .and_then(|path| path.text())
            .map(str::to_owned),
        capacity,
        allocation: bytes("allocation"),
        available: within(bytes("available"), capacity),
    })
}

/// A moment as libvirt writes it in a volume's `<timestamps>`:
/// seconds and nanoseconds since the epoch.
pub type Timestamp = (i64, u32);

/// `<target><timestamps>` of `vol-dumpxml`: the volume's file's
/// modification and change times, where the pool gives them (a
/// directory pool does; `None` otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VolumeTimes {
    pub mtime: Timestamp,
    pub ctime: Timestamp,
}

/// Parses the times out of `vol-dumpxml` output.
pub fn parse_volume_times(text: &str) -> Option<VolumeTimes> {
    let document = roxmltree::Document::parse(text).ok()?;
    let volume = document.root_element();
    if !volume.has_tag_name("volume") {
        return None;
    }
    let stamps = child(child(volume, "target")?, "timestamps")?;
    let time = |name| timestamp(child(stamps, name)?.text()?.trim());
    Some(VolumeTimes {
        mtime: time("mtime")?,
        ctime: time("ctime")?,
    })
}

/// `1796115347.664393224` (libvirt prints nine digits; fewer are read as
/// the fraction they are), or whole seconds.
fn timestamp(text: &str) -> Option<Timestamp> {
    let (seconds, fraction) = text.split_once('.').unwrap_or((text, ""));
    if fraction.len() > 9 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let nanos = if fraction.is_empty() {
        0
    } else {
        format!("{fraction:0<9}").parse().ok()?
    };
    Some((seconds.parse().ok()?, nanos))
}

/// The first child element of `node` called `name`.
fn child<'a, 'input>(
    node: roxmltree::Node<'a, 'input>,
    name: &str,
) -> Option<roxmltree::Node<'a, 'input>> {
    node.children()
        .find(|child| child.is_element() && child.has_tag_name(name))
}

/// A storage pool as `pool-info --bytes` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolInfo {
    /// `State: running`: its volumes can be listed and created.
    pub active: bool,
    /// Free bytes; absent for an inactive pool.
    pub available: Option<u64>,
}

/// Parses `pool-info --bytes` output; `None` without a `State:` line.
pub fn parse_pool_info(text: &str) -> Option<PoolInfo> {
    let state = field(text, "State")?;
    Some(PoolInfo {
        active: state == "running",
        available: within(
            field(text, "Available").and_then(|value| value.parse().ok()),
            field(text, "Capacity").and_then(|value| value.parse().ok()),
        ),
    })
}

/// Free bytes that a pool of `capacity` can have: more is no figure (an
/// overcommitted pool's `capacity - allocation`, wrapped below zero to
/// 2^64 less a little by libvirt's test driver).
fn within(available: Option<u64>, capacity: Option<u64>) -> Option<u64> {
    available.filter(|free| capacity.is_none_or(|capacity| *free <= capacity))
}

/// The `Capacity:` of `vol-info --bytes`: `378880 bytes`.
pub fn parse_vol_info_capacity(text: &str) -> Option<u64> {
    field(text, "Capacity")?
        .strip_suffix(" bytes")?
        .parse()
        .ok()
}

/// The value of a `Key:   value` line of virsh's `*-info` output.
fn field<'t>(text: &'t str, key: &str) -> Option<&'t str> {
    text.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        (name == key).then(|| value.trim())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::fixture;

    #[test]
    fn paths_with_spaces_and_non_ascii() {
        let text = fixture("virsh/vol-list-lab-isos.txt");
        assert_eq!(
            parse_vol_list_paths(&text),
            [
                "/work/main/.lab/isos/Débian netinst.iso",
                "/work/main/.lab/isos/install-a.iso",
                "/work/main/.lab/isos/tools-b.iso",
            ]
        );
        assert!(parse_vol_list_paths("").is_empty());
        assert!(parse_vol_list_paths("error: no pool\n").is_empty());
    }

    /// Names with a blank at either end, a leading `--`, quotes and
    /// backticks: each path is read exactly, a trailing blank kept.
    #[test]
    fn paths_are_read_exactly_whatever_the_name() {
        let text = fixture("virsh/vol-list-odd-names.txt");
        assert_eq!(
            parse_vol_list_paths(&text),
            [
                "/tmp/holders/pool/ lead-space.iso",
                "/tmp/holders/pool/--help",
                "/tmp/holders/pool/it's `q` \"x\".iso",
                "/tmp/holders/pool/plain.iso",
                "/tmp/holders/pool/trail-space.iso",
                "/tmp/holders/pool/trail-space.iso ",
            ]
        );
        // A TAB, a newline and a backslash come escaped; a right-to-left
        // override as it is.
        assert_eq!(
            parse_vol_list_paths(&fixture("virsh/vol-list-escaped-names.txt")),
            [
                "/tmp/holders/ctl/back\\x09slash.iso",
                "/tmp/holders/ctl/bidi\u{202e}osi.iso",
                "/tmp/holders/ctl/nl\nhere.iso",
                "/tmp/holders/ctl/tab\there.iso",
            ]
        );
        assert_eq!(unescape_cell("/p/\\xff"), None, "no UTF-8");
        assert_eq!(unescape_cell("/p/\\x4"), Some("/p/\\x4".to_owned()));
        let xml = parse_volume_xml(&fixture("virsh/vol-dumpxml-trailing-space.xml")).unwrap();
        assert_eq!(
            (xml.name.as_str(), xml.path.as_str()),
            ("trail-space.iso ", "/tmp/holders/pool/trail-space.iso ")
        );
    }

    #[test]
    fn volume_xml_of_an_iso_and_of_a_raw_volume() {
        assert_eq!(
            parse_volume_xml(&fixture("virsh/vol-dumpxml-lab-iso.xml")),
            Some(VolumeXml {
                name: "Débian netinst.iso".into(),
                path: "/work/main/.lab/isos/Débian netinst.iso".into(),
                capacity: Some(376_832),
                format: Some("iso".into()),
            })
        );
        let raw = parse_volume_xml(&fixture("virsh/vol-dumpxml-test-raw.xml")).unwrap();
        assert_eq!(raw.format.as_deref(), Some("raw"));
        assert_eq!(raw.capacity, Some(1_048_576));
        assert_eq!(parse_volume_xml("<pool/>"), None);
        assert_eq!(parse_volume_xml("error: no vol"), None);
    }

    #[test]
    fn volume_times_of_a_directory_pool_s_volume() {
        assert_eq!(
            parse_volume_times(&fixture("virsh/vol-dumpxml-lab-iso.xml")),
            Some(VolumeTimes {
                mtime: (1_796_115_347, 664_393_224),
                ctime: (1_796_115_347, 764_393_230),
            })
        );
        // The test driver's volumes carry no times.
        assert_eq!(
            parse_volume_times(&fixture("virsh/vol-dumpxml-test-raw.xml")),
            None
        );
        assert_eq!(timestamp("12.5"), Some((12, 500_000_000)));
        assert_eq!(timestamp("0"), Some((0, 0)));
        assert_eq!(timestamp("1.1234567890"), None);
        assert_eq!(timestamp("1.-5"), None);
    }

    #[test]
    fn pool_xml_gives_the_room_of_an_active_pool_only() {
        assert_eq!(
            parse_pool_xml(&fixture("virsh/pool-dumpxml-lab-isos.xml"), true),
            Some(Pool {
                name: "lab-isos".into(),
                active: true,
                pool_type: "dir".into(),
                path: Some("/work/main/.lab/isos".into()),
                capacity: Some(270_553_174_016),
                allocation: Some(34_172_358_656),
                available: Some(236_380_815_360),
            })
        );
        let inactive = parse_pool_xml(&fixture("virsh/pool-dumpxml-test-isos.xml"), false).unwrap();
        assert_eq!(
            (
                inactive.name.as_str(),
                inactive.path.as_deref(),
                inactive.available
            ),
            ("isos", Some("/srv/isos"), None)
        );
        assert_eq!(parse_pool_xml("<volume/>", true), None);
        assert_eq!(parse_pool_xml("error: no pool", true), None);
        // A pool without a directory (rbd, iscsi-direct, …) has no path;
        // a blank ending its name is part of it.
        let no_target =
            parse_pool_xml("<pool type='rbd'><name>ceph </name><source/></pool>", false).unwrap();
        assert_eq!((no_target.name.as_str(), no_target.path), ("ceph ", None));
        assert_eq!(parse_pool_xml("not xml", true), None);
    }

    /// An overcommitted pool's free bytes, wrapped below zero, are no
    /// figure: not 16 EiB free, which every room check would pass.
    #[test]
    fn free_bytes_beyond_the_capacity_are_unknown() {
        let pool = parse_pool_xml(&fixture("virsh/pool-dumpxml-overcommitted.xml"), true).unwrap();
        assert_eq!(
            (pool.capacity, pool.allocation, pool.available),
            (Some(107_374_182_400), Some(214_748_366_800), None)
        );
        assert_eq!(
            parse_pool_info(&fixture("virsh/pool-info-overcommitted.txt")),
            Some(PoolInfo {
                active: true,
                available: None,
            })
        );
    }

    #[test]
    fn pool_info_active_with_free_bytes_and_inactive() {
        assert_eq!(
            parse_pool_info(&fixture("virsh/pool-info-lab-isos.txt")),
            Some(PoolInfo {
                active: true,
                available: Some(236_109_320_192),
            })
        );
        assert_eq!(
            parse_pool_info(&fixture("virsh/pool-info-inactive.txt")),
            Some(PoolInfo {
                active: false,
                available: None,
            })
        );
        assert_eq!(parse_pool_info(""), None);
    }

    #[test]
    fn vol_info_capacity_in_bytes() {
        let text = fixture("virsh/vol-info-bytes-lab.txt");
        assert_eq!(parse_vol_info_capacity(&text), Some(378_880));
        assert_eq!(parse_vol_info_capacity("Capacity: 1.00 MiB\n"), None);
    }
}
