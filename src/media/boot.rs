//! `boot-iso`'s pure part: from a domain's persistent XML, the XML of one
//! transient start from an ISO (the drive that holds it first to boot,
//! the rest of the order after it, no direct kernel), and what that start
//! changes; and the El Torito check that says whether an ISO boots at all.
//!
//! The XML is edited in place, element by element (roxmltree's byte
//! ranges): everything not named in the plan stays as libvirt wrote it.

use std::ops::Range;

use anyhow::{Result, bail};
use roxmltree::Node;

use crate::utils::sanitize;
use crate::virsh::metadata::BOOT_NAMESPACE;

/// Where an El Torito boot record sits: the volume descriptor in sector
/// 17 (2048-byte sectors), right after the primary one.
pub const BOOT_RECORD_OFFSET: u64 = 17 * 2048;
/// One sector: the whole boot record volume descriptor.
pub const BOOT_RECORD_LEN: usize = 2048;

/// Whether `sector` (the ISO's bytes at [`BOOT_RECORD_OFFSET`]) is an El
/// Torito boot record volume descriptor: type 0, `CD001`, version 1, and
/// the boot system "EL TORITO SPECIFICATION" (padded with NULs).
pub fn is_el_torito_boot_record(sector: &[u8]) -> bool {
    const SYSTEM: &[u8] = b"EL TORITO SPECIFICATION";
    sector.len() >= 7 + 32
        && sector[0] == 0
        && &sector[1..6] == b"CD001"
        && sector[6] == 1
        && sector[7..7 + SYSTEM.len()] == *SYSTEM
        && sector[7 + SYSTEM.len()..7 + 32].iter().all(|&b| b == 0)
}

/// What one start from an ISO changes, against the persistent config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootPlan {
    /// The XML `virsh create` is given.
    pub xml: String,
    /// The drive that holds the ISO for this start.
    pub target: String,
    /// Each change, one line a change, for the plan (already sanitized).
    pub changes: Vec<String>,
    /// Said before asking: what may keep the ISO from booting.
    pub warnings: Vec<String>,
    /// The XML's changes in document order, as diff lines: `- ` what goes,
    /// `+ ` what comes (unsanitized: the ISO's path is in them).
    pub diff: Vec<String>,
}

/// One edit: the bytes of `range` replaced by `text`.
struct Edit {
    range: Range<usize>,
    text: String,
}

/// A value made safe inside a single-quoted XML attribute.
fn attribute_value(value: &str) -> String {
    value
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\'', "&apos;")
        .replace('"', "&quot;")
}

fn child<'a, 'i>(node: Node<'a, 'i>, name: &str) -> Option<Node<'a, 'i>> {
    node.children().find(|n| n.has_tag_name(name))
}

/// The byte range of `node` with the blanks before it on its line, so a
/// removed element leaves no empty line.
fn with_indent(text: &str, node: Node) -> Range<usize> {
    let range = node.range();
    let before = &text[..range.start];
    let blanks = before.len() - before.trim_end_matches([' ', '\t']).len();
    let start = range.start - blanks;
    if start > 0 && text.as_bytes()[start - 1] == b'\n' {
        start - 1..range.end
    } else {
        range
    }
}

/// The indentation of the line `node` starts on.
fn indent_of(text: &str, node: Node) -> String {
    let start = node.range().start;
    let line = text[..start].rfind('\n').map_or(0, |i| i + 1);
    text[line..start]
        .chars()
        .take_while(|c| *c == ' ' || *c == '\t')
        .collect()
}

/// Where new children of `parent` go (before its closing tag), with the
/// indentation its children have; `None` for an element written `<x/>`.
fn insertion_point(text: &str, parent: Node) -> Option<(usize, String)> {
    let range = parent.range();
    let close = text[..range.end].rfind("</")?;
    if close < range.start {
        return None;
    }
    let indent = parent.children().find(Node::is_element).map_or_else(
        || format!("{}  ", indent_of(text, parent)),
        |c| indent_of(text, c),
    );
    // Right after the last child's end: the closing tag keeps its own line.
    let at = parent
        .children()
        .rfind(Node::is_element)
        .map_or(close, |c| c.range().end);
    Some((at, indent))
}

/// Target names, each with the drive address `(controller, bus, unit)`
/// libvirt gives a drive of that name.
type Slots = Vec<(String, [u32; 3])>;

/// The bus a new CD-ROM goes on for this machine type, and its target
/// names in the order of their fixed addresses (controller, bus, unit).
fn new_drive_bus(machine: &str) -> Option<(&'static str, Slots)> {
    if machine.contains("q35") {
        // One AHCI controller has six ports; libvirt gives sdX the unit of
        // its letter.
        let names = (0u32..26)
            .map(|i| {
                let name = format!("sd{}", char::from(b'a' + i as u8));
                (name, [i / 6, 0, i % 6])
            })
            .collect();
        Some(("sata", names))
    } else if machine == "pc" || machine.starts_with("pc-i440fx") || machine.starts_with("pc-") {
        // hda..hdd: two buses of two units on the one IDE controller.
        let names = (0u32..4)
            .map(|i| {
                let name = format!("hd{}", char::from(b'a' + i as u8));
                (name, [0, i / 2, i % 2])
            })
            .collect();
        Some(("ide", names))
    } else {
        None
    }
}

/// The `(controller, bus, unit)` of a disk's drive address, if it has one.
fn drive_address(disk: Node) -> Option<[u32; 3]> {
    let address = child(disk, "address").filter(|a| a.attribute("type") == Some("drive"))?;
    let number = |name| address.attribute(name).unwrap_or("0").parse().ok();
    Some([number("controller")?, number("bus")?, number("unit")?])
}

/// Whether the firmware enforces Secure Boot: a loader marked secure, the
/// secure-boot feature asked for, or `firmware='efi'` left to pick (which
/// on Debian's OVMF picks the Microsoft-keys build) with neither said;
/// never with the enrolled keys turned off (the firmware then has none
/// to check against: libvirt picks the key-less variables).
fn secure_boot(os: Node) -> bool {
    let feature = |name: &str| {
        child(os, "firmware")
            .into_iter()
            .flat_map(|f| f.children())
            .find(|f| f.has_tag_name("feature") && f.attribute("name") == Some(name))
            .and_then(|f| f.attribute("enabled"))
    };
    if feature("enrolled-keys") == Some("no") {
        return false;
    }
    let loader_secure = child(os, "loader").and_then(|l| l.attribute("secure"));
    match (loader_secure, feature("secure-boot")) {
        (Some("yes"), _) | (_, Some("yes")) => true,
        (Some(_), _) | (_, Some(_)) => false,
        (None, None) => os.attribute("firmware") == Some("efi"),
    }
}

/// The XML of one start of the domain whose persistent XML is `config`,
/// from the ISO at `iso` (a path on the VM's host) in the drive `target`
/// (else the only empty CD-ROM, else one added on the machine's bus).
pub fn plan_boot(config: &str, iso: &str, target: Option<&str>) -> Result<BootPlan> {
    let document = roxmltree::Document::parse(config)?;
    let domain = document.root_element();
    let name = domain
        .children()
        .find(|n| n.has_tag_name("name"))
        .and_then(|n| n.text())
        .unwrap_or_default();
    let Some(os) = child(domain, "os") else {
        bail!("the XML of '{}' has no <os>", sanitize(name));
    };
    let Some(devices) = child(domain, "devices") else {
        bail!("the XML of '{}' has no <devices>", sanitize(name));
    };
    let disks: Vec<Node> = devices
        .children()
        .filter(|n| n.has_tag_name("disk"))
        .collect();
    let cdroms: Vec<Node> = disks
        .iter()
        .copied()
        .filter(|d| device_of(d) == "cdrom")
        .collect();
    let iso_value = attribute_value(iso);
    let mut edits: Vec<Edit> = Vec::new();
    let mut changes = Vec::new();
    let mut warnings = Vec::new();

    // The drive: named, the only empty CD-ROM, or a new one.
    let chosen = match target {
        Some(wanted) => {
            let Some(disk) = disks.iter().copied().find(|d| target_of(d) == Some(wanted)) else {
                bail!(
                    "'{}' has no drive '{}' in its config",
                    sanitize(name),
                    sanitize(wanted)
                );
            };
            if device_of(&disk) != "cdrom" {
                bail!(
                    "'{}' of '{}' is a {}, not a CD-ROM: name a CD-ROM drive",
                    sanitize(wanted),
                    sanitize(name),
                    sanitize(device_of(&disk))
                );
            }
            Some(disk)
        }
        None => {
            let empty: Vec<Node> = cdroms
                .iter()
                .copied()
                // libvirt writes an empty drive's startup policy as
                // `<source startupPolicy='optional'/>`: no media named.
                .filter(|d| {
                    child(*d, "source")
                        .is_none_or(|s| s.attributes().all(|a| a.name() == "startupPolicy"))
                })
                .collect();
            match empty[..] {
                [one] => Some(one),
                [] => None,
                _ => bail!(
                    "'{}' has several empty CD-ROM drives ({}): pick one with --target",
                    sanitize(name),
                    empty
                        .iter()
                        .filter_map(target_of)
                        .map(sanitize)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }
        }
    };

    let chosen_target = match chosen {
        Some(disk) => {
            let dev = target_of(&disk).unwrap_or_default().to_owned();
            // Its source becomes the ISO, as a file; its order the first.
            let source = match child(disk, "source") {
                Some(source) => Edit {
                    range: source.range(),
                    text: format!("<source file='{iso_value}'/>"),
                },
                None => {
                    let at = child(disk, "driver").map_or_else(
                        || text_after_open_tag(config, disk),
                        |driver| driver.range().end,
                    );
                    Edit {
                        range: at..at,
                        text: format!(
                            "\n{}<source file='{iso_value}'/>",
                            first_indent(config, disk)
                        ),
                    }
                }
            };
            edits.push(source);
            if let Some(kind) = disk.attribute_node("type")
                && kind.value() != "file"
            {
                edits.push(Edit {
                    range: kind.range(),
                    text: "type='file'".to_owned(),
                });
            }
            match child(disk, "boot") {
                Some(boot) => edits.push(Edit {
                    range: boot.range(),
                    text: "<boot order='1'/>".to_owned(),
                }),
                None => {
                    let (at, indent) = insertion_point(config, disk).expect("a disk has children");
                    edits.push(Edit {
                        range: at..at,
                        text: format!("\n{indent}<boot order='1'/>"),
                    });
                }
            }
            changes.push(format!(
                "drive {} holds {} for this start, and boots first",
                sanitize(&dev),
                sanitize(iso)
            ));
            dev
        }
        None => {
            let machine = child(os, "type")
                .and_then(|t| t.attribute("machine"))
                .unwrap_or_default();
            let Some((bus, names)) = new_drive_bus(machine) else {
                bail!(
                    "'{}' has no empty CD-ROM drive, and its machine '{}' has no bus this tool \
                     adds one on: name a drive with --target",
                    sanitize(name),
                    sanitize(machine)
                );
            };
            let taken: Vec<&str> = disks.iter().filter_map(target_of).collect();
            let used: Vec<[u32; 3]> = disks
                .iter()
                .filter(|d| child(**d, "target").and_then(|t| t.attribute("bus")) == Some(bus))
                .filter_map(|d| drive_address(*d))
                .collect();
            let Some((dev, _)) = names
                .into_iter()
                .find(|(dev, address)| !taken.contains(&dev.as_str()) && !used.contains(address))
            else {
                bail!(
                    "'{}' has no empty CD-ROM drive and no free place for one on its {} bus: \
                     name a drive with --target",
                    sanitize(name),
                    bus
                );
            };
            let (at, indent) = insertion_point(config, devices).expect("devices has children");
            let inner = format!("{indent}  ");
            edits.push(Edit {
                range: at..at,
                text: format!(
                    "\n{indent}<disk type='file' device='cdrom'>\n\
                     {inner}<driver name='qemu' type='raw'/>\n\
                     {inner}<source file='{iso_value}'/>\n\
                     {inner}<target dev='{dev}' bus='{bus}'/>\n\
                     {inner}<readonly/>\n\
                     {inner}<boot order='1'/>\n\
                     {indent}</disk>"
                ),
            });
            changes.push(format!(
                "{} CD-ROM {} is added for this start, holds {} and boots first",
                if bus == "ide" { "an IDE" } else { "a SATA" },
                dev,
                sanitize(iso)
            ));
            dev
        }
    };

    // The other devices' per-device orders, in their order from 2 on:
    // renumbered, not one later each, which the largest order libvirt
    // takes (u32::MAX) would overflow.
    let chosen_range = chosen.map(|d| d.range());
    let mut shifted = Vec::new();
    for device in devices.children().filter(Node::is_element) {
        if Some(device.range()) == chosen_range {
            continue;
        }
        let Some(boot) = child(device, "boot") else {
            continue;
        };
        let Some(order) = boot.attribute("order").and_then(|o| o.parse::<u32>().ok()) else {
            continue;
        };
        shifted.push((order, boot.range(), device_label(device)));
    }
    shifted.sort_by_key(|(order, ..)| *order);
    for ((_, range, _), new) in shifted.iter().zip(2..) {
        edits.push(Edit {
            range: range.clone(),
            text: format!("<boot order='{new}'/>"),
        });
    }
    if !shifted.is_empty() {
        changes.push(format!(
            "then, as before: {}",
            shifted
                .iter()
                .map(|(.., label)| label.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }

    // `<os><boot dev=…>` becomes per-device order: the two cannot be
    // mixed, and UEFI firmware honours only the per-device one.
    let os_boots: Vec<Node> = os.children().filter(|n| n.has_tag_name("boot")).collect();
    if !os_boots.is_empty() {
        let mut order = 2;
        let mut listed = Vec::new();
        let mut ordered = Vec::new();
        for boot in &os_boots {
            edits.push(Edit {
                range: with_indent(config, *boot),
                text: String::new(),
            });
            let matching: Vec<Node> = match boot.attribute("dev") {
                Some("hd") => disks
                    .iter()
                    .copied()
                    .filter(|d| device_of(d) == "disk")
                    .collect(),
                Some("cdrom") => cdroms.clone(),
                Some("fd") => disks
                    .iter()
                    .copied()
                    .filter(|d| device_of(d) == "floppy")
                    .collect(),
                Some("network") => devices
                    .children()
                    .filter(|n| n.has_tag_name("interface"))
                    .collect(),
                _ => Vec::new(),
            };
            for device in matching {
                // libvirt keeps a `dev` named twice: a device is ordered
                // where it is first named, once (two `<boot>` are invalid).
                if Some(device.range()) == chosen_range
                    || child(device, "boot").is_some()
                    || ordered.contains(&device.range())
                {
                    continue;
                }
                ordered.push(device.range());
                let Some((at, indent)) = insertion_point(config, device) else {
                    continue;
                };
                edits.push(Edit {
                    range: at..at,
                    text: format!("\n{indent}<boot order='{order}'/>"),
                });
                listed.push(device_label(device));
                order += 1;
            }
        }
        let devs: Vec<&str> = os_boots.iter().filter_map(|b| b.attribute("dev")).collect();
        changes.push(format!(
            "the boot order <os><boot dev> ({}) becomes per-device: {}",
            sanitize(&devs.join(", ")),
            if listed.is_empty() {
                "no other device".to_owned()
            } else {
                format!("then {}", listed.join(", "))
            }
        ));
    }

    // A kernel booted directly would win over every boot device.
    let direct: Vec<Node> = os
        .children()
        .filter(|n| {
            ["kernel", "initrd", "cmdline", "dtb"]
                .iter()
                .any(|t| n.has_tag_name(*t))
        })
        .collect();
    if let Some(kernel) = direct.iter().find(|n| n.has_tag_name("kernel")) {
        changes.push(format!(
            "the kernel it boots directly ({}) is left out for this start",
            sanitize(kernel.text().unwrap_or_default())
        ));
    }
    for node in direct {
        edits.push(Edit {
            range: with_indent(config, node),
            text: String::new(),
        });
    }

    if secure_boot(os) {
        warnings.push(
            "its firmware enforces Secure Boot: it boots only a signed ISO (an unsigned one \
             stops in the firmware)"
                .to_owned(),
        );
    }

    // Our marker, in `<metadata>`: `status` and `isos` say the VM was
    // booted from an ISO while this start lasts.
    let marker = format!(
        "<dismount:boot-iso xmlns:dismount='{BOOT_NAMESPACE}' target='{}'/>",
        attribute_value(&chosen_target)
    );
    // One already in the config (a live XML saved with `virsh define`, or
    // planted) is not this start's: libvirt keeps only the first element
    // of a namespace in `<metadata>`, so ours takes its place and every
    // other element of our namespace goes.
    let ours: Vec<Node> = child(domain, "metadata")
        .into_iter()
        .flat_map(|m| m.children())
        .filter(|n| n.is_element() && n.tag_name().namespace() == Some(BOOT_NAMESPACE))
        .collect();
    if let Some((first, rest)) = ours.split_first() {
        warnings.push(
            "its config carries boot-iso's marker (a live XML saved with `virsh define`?): \
             every start of it reads as started from an ISO; this start's marker replaces it"
                .to_owned(),
        );
        edits.push(Edit {
            range: first.range(),
            text: marker,
        });
        edits.extend(rest.iter().map(|node| Edit {
            range: with_indent(config, *node),
            text: String::new(),
        }));
    } else {
        insert_marker(config, domain, marker, &mut edits);
    }

    Ok(BootPlan {
        diff: diff(config, &edits),
        xml: apply(config, edits),
        target: chosen_target,
        changes,
        warnings,
    })
}

/// `marker` put into the domain's `<metadata>`, made when there is none.
fn insert_marker(config: &str, domain: Node, marker: String, edits: &mut Vec<Edit>) {
    match child(domain, "metadata").and_then(|m| insertion_point(config, m).map(|p| (m, p))) {
        Some((_, (at, indent))) => edits.push(Edit {
            range: at..at,
            text: format!("\n{indent}{marker}"),
        }),
        None => {
            if let Some(metadata) = child(domain, "metadata") {
                // `<metadata/>`: empty, replaced whole.
                edits.push(Edit {
                    range: metadata.range(),
                    text: format!("<metadata>{marker}</metadata>"),
                });
            } else {
                let after = child(domain, "name").expect("a domain has a name");
                let indent = indent_of(config, after);
                let at = after.range().end;
                edits.push(Edit {
                    range: at..at,
                    text: format!("\n{indent}<metadata>\n{indent}  {marker}\n{indent}</metadata>"),
                });
            }
        }
    }
}

/// A disk's `<target dev>`.
fn target_of<'a>(disk: &Node<'a, '_>) -> Option<&'a str> {
    child(*disk, "target").and_then(|t| t.attribute("dev"))
}

/// A disk's `device=`, libvirt's default `disk` when absent.
fn device_of<'a>(disk: &Node<'a, '_>) -> &'a str {
    disk.attribute("device").unwrap_or("disk")
}

/// How a device reads in the plan: `vda (disk)`, `interface`, ….
fn device_label(device: Node) -> String {
    let dev = child(device, "target").and_then(|t| t.attribute("dev"));
    match (device.tag_name().name(), dev) {
        ("disk", Some(dev)) => format!(
            "{} ({})",
            sanitize(dev),
            sanitize(device.attribute("device").unwrap_or("disk"))
        ),
        (tag, _) => match child(device, "mac").and_then(|m| m.attribute("address")) {
            Some(mac) => format!("{tag} {}", sanitize(mac)),
            None => tag.to_owned(),
        },
    }
}

/// The byte right after `node`'s opening tag.
fn text_after_open_tag(text: &str, node: Node) -> usize {
    let range = node.range();
    range.start + text[range].find('>').map_or(0, |i| i + 1)
}

/// The indentation of `node`'s first child element, or one step deeper
/// than `node`.
fn first_indent(text: &str, node: Node) -> String {
    node.children().find(Node::is_element).map_or_else(
        || format!("{}  ", indent_of(text, node)),
        |c| indent_of(text, c),
    )
}

/// Each edit as diff lines, in document order: the lines it takes out,
/// then those it puts in, each trimmed of its indentation.
fn diff(text: &str, edits: &[Edit]) -> Vec<String> {
    let mut ordered: Vec<&Edit> = edits.iter().collect();
    ordered.sort_by_key(|edit| (edit.range.start, edit.range.end));
    let lines = |snippet: &str, sign: &str| -> Vec<String> {
        snippet
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .map(|line| format!("{sign} {line}"))
            .collect()
    };
    ordered
        .into_iter()
        .flat_map(|edit| {
            let mut out = lines(&text[edit.range.clone()], "-");
            out.extend(lines(&edit.text, "+"));
            out
        })
        .collect()
}

/// `text` with every edit made (none overlaps another).
fn apply(text: &str, mut edits: Vec<Edit>) -> String {
    edits.sort_by_key(|edit| std::cmp::Reverse((edit.range.start, edit.range.end)));
    let mut out = text.to_owned();
    for edit in edits {
        out.replace_range(edit.range, &edit.text);
    }
    out
}

#[cfg(test)]
mod tests;
