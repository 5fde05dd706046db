//! `plan_boot` over the XML libvirt wrote for the lab boot tests' guests
//! (fixtures/README.md says how they were captured), and the El Torito
//! check over the lab ISOs' sector 17.

use super::*;
use crate::virsh::domxml::{Media, parse_domain_xml};
use crate::virsh::metadata::booted_from_iso;

fn fixture(name: &str) -> String {
    crate::testing::fixture(&format!("virsh/dumpxml-lab-boot-{name}-inactive.xml"))
}

const ISO: &str = "/work/main/.lab/isos/rescue.iso";

/// The lines of `after` that `before` lacks, and the other way round: the
/// change is what the plan says, and the rest stays byte for byte.
fn diff(before: &str, after: &str) -> (Vec<String>, Vec<String>) {
    let old: Vec<&str> = before.lines().collect();
    let new: Vec<&str> = after.lines().collect();
    let added = new
        .iter()
        .filter(|l| !old.contains(l))
        .map(|l| l.trim().to_owned())
        .collect();
    let removed = old
        .iter()
        .filter(|l| !new.contains(l))
        .map(|l| l.trim().to_owned())
        .collect();
    (added, removed)
}

#[test]
fn el_torito_boot_record_on_the_rescue_iso_and_none_on_a_plain_one() {
    let rescue = include_bytes!("../../../fixtures/iso/rescue-sector17.bin");
    let plain = include_bytes!("../../../fixtures/iso/install-a-sector17.bin");
    assert!(is_el_torito_boot_record(rescue));
    assert!(!is_el_torito_boot_record(plain), "a Joliet descriptor");
    assert!(!is_el_torito_boot_record(&rescue[..20]), "too short");
    assert!(!is_el_torito_boot_record(&[]));
    let mut version = *rescue;
    version[6] = 2;
    assert!(!is_el_torito_boot_record(&version));
    let mut longer = *rescue;
    longer[7 + 23] = b'X';
    assert!(!is_el_torito_boot_record(&longer), "another boot system");
}

/// q35 with an empty SATA CD-ROM, `<os><boot dev>` and a kernel booted
/// directly: the CD-ROM takes the ISO and boots first, the os/boot
/// entries and the kernel go, and nothing else changes.
#[test]
fn bios_q35_sata_cdrom_with_os_boot_and_a_direct_kernel() {
    let config = fixture("bios");
    let plan = plan_boot(&config, ISO, None).unwrap();
    assert_eq!(plan.target, "sda");
    let (added, removed) = diff(&config, &plan.xml);
    assert_eq!(
        added,
        [
            "<metadata>",
            &format!("<dismount:boot-iso xmlns:dismount='{BOOT_NAMESPACE}' target='sda'/>"),
            "</metadata>",
            &format!("<source file='{ISO}'/>"),
            "<boot order='1'/>",
        ]
    );
    assert_eq!(
        removed,
        [
            "<kernel>/work/main/.lab/guest/kernel</kernel>",
            "<initrd>/work/main/.lab/guest/initrd.img</initrd>",
            "<cmdline>console=ttyS0 panic=-1 lab_name=lab-boot-bios</cmdline>",
            "<boot dev='hd'/>",
            "<boot dev='cdrom'/>",
        ]
    );
    assert_eq!(
        plan.diff,
        [
            "+ <metadata>".to_owned(),
            format!("+ <dismount:boot-iso xmlns:dismount='{BOOT_NAMESPACE}' target='sda'/>"),
            "+ </metadata>".to_owned(),
            "- <kernel>/work/main/.lab/guest/kernel</kernel>".to_owned(),
            "- <initrd>/work/main/.lab/guest/initrd.img</initrd>".to_owned(),
            "- <cmdline>console=ttyS0 panic=-1 lab_name=lab-boot-bios</cmdline>".to_owned(),
            "- <boot dev='hd'/>".to_owned(),
            "- <boot dev='cdrom'/>".to_owned(),
            format!("+ <source file='{ISO}'/>"),
            "+ <boot order='1'/>".to_owned(),
        ]
    );
    assert_eq!(plan.changes.len(), 3, "{:?}", plan.changes);
    assert!(plan.changes[1].contains("(hd, cdrom) becomes per-device: no other device"));
    assert!(plan.changes[2].contains("is left out for this start"));
    assert!(plan.warnings.is_empty());
    let parsed = parse_domain_xml(&plan.xml).unwrap();
    assert_eq!(
        parsed.drive("sda").unwrap().media,
        Some(Media::File(ISO.into()))
    );
    assert_eq!(booted_from_iso(&plan.xml).as_deref(), Some("sda"));
    assert_eq!(booted_from_iso(&config), None);
}

/// UEFI with per-device orders (disk 1, CD-ROM 2): the CD-ROM becomes 1,
/// the disk 2; OVMF without Secure Boot is no warning.
#[test]
fn uefi_per_device_order_shifts_the_others() {
    let config = fixture("uefi");
    let plan = plan_boot(&config, ISO, None).unwrap();
    assert_eq!(plan.target, "sda");
    let (_, removed) = diff(&config, &plan.xml);
    assert_eq!(
        removed.len(),
        3,
        "the kernel, initrd and cmdline only: {removed:?}"
    );
    assert_eq!(boot_orders(&plan.xml), ["vda 2", "sda 1"]);
    assert!(
        plan.changes
            .iter()
            .any(|c| c == "then, as before: vda (disk)")
    );
    assert!(plan.warnings.is_empty(), "{:?}", plan.warnings);
    // The loader and NVRAM stay as they were.
    assert!(
        plan.xml
            .contains("<nvram template='/usr/share/OVMF/OVMF_VARS_4M.fd'>")
    );
}

/// `<os firmware='efi'>` as libvirt keeps it (no loader, no features):
/// Debian's OVMF then picks Secure Boot, said before asking.
#[test]
fn firmware_efi_is_secure_boot() {
    let plan = plan_boot(&fixture("secure"), ISO, None).unwrap();
    assert_eq!(plan.warnings.len(), 1);
    assert!(plan.warnings[0].contains("boots only a signed ISO"));
    let os = |xml: &str| {
        let document = roxmltree::Document::parse(xml).unwrap();
        secure_boot(child(document.root_element(), "os").unwrap())
    };
    assert!(os(
        "<domain><os><loader secure='yes'>/x.fd</loader></os></domain>"
    ));
    assert!(!os(
        "<domain><os firmware='efi'><firmware><feature enabled='no' name='secure-boot'/></firmware></os></domain>"
    ));
    assert!(os(
        "<domain><os firmware='efi'><firmware><feature enabled='yes' name='secure-boot'/></firmware></os></domain>"
    ));
    assert!(!os(
        "<domain><os firmware='efi'><loader secure='no'/></os></domain>"
    ));
    assert!(!os(
        "<domain><os><type machine='q35'>hvm</type></os></domain>"
    ));
}

/// machine pc without a CD-ROM: an IDE one is added on a free target
/// (hda is the disk's), the disk's order follows it.
#[test]
fn pc_without_cdrom_gets_an_ide_drive() {
    let config = fixture("pc");
    let plan = plan_boot(&config, ISO, None).unwrap();
    assert_eq!(plan.target, "hdb");
    let parsed = parse_domain_xml(&plan.xml).unwrap();
    let drive = parsed.drive("hdb").unwrap();
    assert_eq!(drive.bus.as_deref(), Some("ide"));
    assert!(drive.readonly);
    assert_eq!(drive.media, Some(Media::File(ISO.into())));
    assert!(
        plan.changes[0].starts_with("an IDE CD-ROM hdb is added for this start"),
        "{:?}",
        plan.changes
    );
    assert!(parse_domain_xml(&config).unwrap().drives.is_empty());
}

/// A new drive's place is free by name and by address: a SATA disk named
/// sdb at sda's address (unit 0) keeps both sda and sdb from being used.
#[test]
fn a_new_drive_avoids_taken_names_and_addresses() {
    let config = "<domain><name>x</name><os><type machine='pc-q35-7.2'>hvm</type></os><devices>\
        <disk type='file' device='disk'><source file='/d'/><target dev='sdb' bus='sata'/>\
        <address type='drive' controller='0' bus='0' target='0' unit='0'/></disk>\
        </devices></domain>";
    let plan = plan_boot(config, ISO, None).unwrap();
    assert_eq!(plan.target, "sdc");
    let full = "<domain><name>x</name><os><type machine='pc'>hvm</type></os><devices>\
        <disk device='disk'><target dev='hda' bus='ide'/></disk>\
        <disk device='disk'><target dev='hdb' bus='ide'/></disk>\
        <disk device='disk'><target dev='hdc' bus='ide'/></disk>\
        <disk device='disk'><target dev='vdd' bus='virtio'/><address type='drive' controller='0' bus='1' unit='1'/></disk>\
        <disk device='disk'><target dev='hdd' bus='ide'/></disk>\
        </devices></domain>";
    let error = plan_boot(full, ISO, None).unwrap_err().to_string();
    assert!(
        error.contains("no free place for one on its ide bus"),
        "{error}"
    );
    let arm = "<domain><name>x</name><os><type machine='virt'>hvm</type></os><devices/></domain>";
    let error = plan_boot(arm, ISO, None).unwrap_err().to_string();
    assert!(error.contains("--target"), "{error}");
}

/// `--target` must name a CD-ROM of the config; several empty CD-ROMs
/// need one.
#[test]
fn target_must_be_a_cdrom_and_several_empty_ones_need_one() {
    let config = fixture("uefi");
    let error = plan_boot(&config, ISO, Some("vda"))
        .unwrap_err()
        .to_string();
    assert!(error.contains("is a disk, not a CD-ROM"), "{error}");
    let error = plan_boot(&config, ISO, Some("sdz"))
        .unwrap_err()
        .to_string();
    assert!(error.contains("has no drive 'sdz'"), "{error}");
    let two = "<domain><name>x</name><os/><devices>\
        <disk type='file' device='cdrom'><target dev='hdc' bus='ide'/></disk>\
        <disk type='block' device='cdrom'><source dev='/dev/sr0'/><target dev='hdd' bus='ide'/></disk>\
        <disk type='file' device='cdrom'><target dev='sda' bus='sata'/></disk>\
        </devices></domain>";
    let error = plan_boot(two, ISO, None).unwrap_err().to_string();
    assert!(
        error.contains("(hdc, sda): pick one with --target"),
        "{error}"
    );
    // A full drive named: its media is replaced for this start, a block
    // drive becomes a file one.
    let plan = plan_boot(two, ISO, Some("hdd")).unwrap();
    let parsed = parse_domain_xml(&plan.xml).unwrap();
    assert_eq!(
        parsed.drive("hdd").unwrap().media,
        Some(Media::File(ISO.into()))
    );
}

/// A path with quotes, `<`, `&` and spaces reads back as given.
#[test]
fn an_iso_path_with_markup_characters_reads_back() {
    let iso = "/isos/it's \"a\" <b> & c.iso";
    let plan = plan_boot(&fixture("pc"), iso, None).unwrap();
    let parsed = parse_domain_xml(&plan.xml).unwrap();
    assert_eq!(
        parsed.drive(&plan.target).unwrap().media,
        Some(Media::File(iso.into()))
    );
    let plan = plan_boot(&fixture("bios"), iso, None).unwrap();
    let parsed = parse_domain_xml(&plan.xml).unwrap();
    assert_eq!(
        parsed.drive("sda").unwrap().media,
        Some(Media::File(iso.into()))
    );
}

/// A domain with `<metadata>` already (libosinfo) gets the marker beside
/// what is there.
#[test]
fn the_marker_joins_existing_metadata() {
    let config = crate::testing::fixture("virsh/dumpxml-lab-meta-live.xml");
    let plan = plan_boot(&config, ISO, Some("hdc")).unwrap();
    assert_eq!(booted_from_iso(&plan.xml).as_deref(), Some("hdc"));
    let document = roxmltree::Document::parse(&plan.xml).unwrap();
    let metadata = child(document.root_element(), "metadata").unwrap();
    assert_eq!(metadata.children().filter(Node::is_element).count(), 2);
}

/// libvirt keeps `<os><boot dev='hd'/>` named twice (the test driver's
/// `dumpxml --inactive` shows both): each device gets one per-device
/// order, where it is first named (before: vda and vdb got two `<boot>` each, and the
/// plan listed them twice).
#[test]
fn an_os_boot_dev_named_twice_orders_each_device_once() {
    let config = "<domain><name>x</name><os><type machine='pc-q35-7.2'>hvm</type>\
        <boot dev='hd'/><boot dev='fd'/><boot dev='hd'/></os><devices>\
        <disk type='file' device='disk'><source file='/d'/><target dev='vda' bus='virtio'/></disk>\
        <disk type='file' device='floppy'><target dev='fda' bus='fdc'/></disk>\
        <disk type='file' device='cdrom'><target dev='sda' bus='sata'/><readonly/></disk>\
        </devices></domain>";
    let plan = plan_boot(config, ISO, None).unwrap();
    assert_eq!(boot_orders(&plan.xml), ["vda 2", "fda 3", "sda 1"]);
    assert!(
        plan.changes[1].ends_with("becomes per-device: then vda (disk), fda (floppy)"),
        "{:?}",
        plan.changes
    );
}

/// A config that carries boot-iso's marker already (a live XML saved
/// with `virsh define`, or planted by hand), maybe in another drive or
/// under another name of its namespace: the transient XML holds this
/// start's marker only (libvirt keeps one element per namespace in
/// `<metadata>`, the first: before, the old marker won and the start
/// was reported FAILED), the other namespaces stay, and the plan says so.
#[test]
fn a_marker_in_the_config_is_replaced_not_trusted() {
    let ns = BOOT_NAMESPACE;
    let config = format!(
        "<domain><name>x</name><metadata>\n    <o:thing xmlns:o='urn:other' a='1'/>\n    \
         <dismount:boot-iso xmlns:dismount='{ns}' target='hdc'/>\n    \
         <d2:note xmlns:d2='{ns}'/>\n  </metadata><os><type machine='pc-q35-7.2'>hvm</type></os><devices>\n    \
         <disk type='file' device='cdrom'><target dev='sda' bus='sata'/><readonly/></disk>\n  \
         </devices></domain>"
    );
    let plan = plan_boot(&config, ISO, None).unwrap();
    assert_eq!(booted_from_iso(&plan.xml).as_deref(), Some("sda"));
    let document = roxmltree::Document::parse(&plan.xml).unwrap();
    let metadata = child(document.root_element(), "metadata").unwrap();
    let namespaces: Vec<&str> = metadata
        .children()
        .filter(Node::is_element)
        .filter_map(|n| n.tag_name().namespace())
        .collect();
    assert_eq!(namespaces, ["urn:other", ns]);
    assert!(
        plan.warnings
            .iter()
            .any(|w| w.contains("its config carries boot-iso's marker")),
        "{:?}",
        plan.warnings
    );
}

/// `<os firmware='efi'>` with `enrolled-keys` off, as libvirt 9.0 keeps
/// it: libvirt picks OVMF_CODE_4M.secboot.fd with the key-less
/// OVMF_VARS_4M.fd (the live XML of a scratch start on the lab), so
/// nothing is enforced and no warning is due (before: "boots only a
/// signed ISO").
#[test]
fn no_enrolled_keys_is_no_secure_boot() {
    let config = "<domain><name>x</name><os firmware='efi'>\
        <type arch='x86_64' machine='pc-q35-7.2'>hvm</type>\
        <firmware><feature enabled='no' name='enrolled-keys'/></firmware><boot dev='hd'/></os>\
        <devices><disk type='file' device='cdrom'><target dev='sda' bus='sata'/><readonly/></disk>\
        </devices></domain>";
    let plan = plan_boot(config, ISO, None).unwrap();
    assert!(plan.warnings.is_empty(), "{:?}", plan.warnings);
    let live = "<domain><os><firmware><feature enabled='no' name='enrolled-keys'/></firmware>\
        <loader readonly='yes' secure='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE_4M.secboot.fd</loader>\
        </os></domain>";
    let document = roxmltree::Document::parse(live).unwrap();
    assert!(!secure_boot(child(document.root_element(), "os").unwrap()));
}

/// The largest boot order libvirt takes (`4294967295`, kept by the test
/// driver's `dumpxml --inactive`) and gaps: the other devices follow the
/// ISO's drive as 2, 3, … in their order (before: `order + 1` overflowed,
/// a panic).
#[test]
fn the_largest_boot_order_follows_without_overflow() {
    let config = "<domain><name>x</name><os><type machine='pc-q35-7.2'>hvm</type></os><devices>\
        <disk type='file' device='disk'><source file='/d'/><target dev='vda' bus='virtio'/><boot order='4294967295'/></disk>\
        <disk type='file' device='disk'><source file='/e'/><target dev='vdb' bus='virtio'/><boot order='7'/></disk>\
        <disk type='file' device='cdrom'><target dev='sda' bus='sata'/><readonly/></disk>\
        </devices></domain>";
    let plan = plan_boot(config, ISO, None).unwrap();
    assert_eq!(boot_orders(&plan.xml), ["vda 3", "vdb 2", "sda 1"]);
    assert!(
        plan.changes
            .iter()
            .any(|c| c == "then, as before: vdb (disk), vda (disk)"),
        "{:?}",
        plan.changes
    );
}

/// An empty CD-ROM with a startup policy: libvirt writes it
/// `<source startupPolicy='optional'/>` (the test driver's
/// `dumpxml --inactive` shows it so), and it is the empty drive taken
/// (before: it read as full, and a second CD-ROM was added).
#[test]
fn an_empty_cdrom_with_a_startup_policy_is_empty() {
    let config = "<domain><name>x</name><os><type machine='pc-i440fx-7.2'>hvm</type></os><devices>\
        <disk type='file' device='cdrom'>\n<source startupPolicy='optional'/>\n\
        <target dev='hdc' bus='ide'/>\n<readonly/>\n\
        <address type='drive' controller='0' bus='1' target='0' unit='0'/>\n</disk>\n\
        </devices></domain>";
    let plan = plan_boot(config, ISO, None).unwrap();
    assert_eq!(plan.target, "hdc");
    let parsed = parse_domain_xml(&plan.xml).unwrap();
    assert_eq!(parsed.drives.len(), 1, "{}", plan.xml);
    assert_eq!(
        parsed.drive("hdc").unwrap().media,
        Some(Media::File(ISO.into()))
    );
}

/// `<metadata>` as libvirt keeps it (captured from the test driver): a
/// comment and CDATA that hold `</metadata>` and `<os>`, double quotes,
/// a marker of another drive; a floppy booted first by `<os><boot>`. The
/// plan reads back: the marker replaced, the rest of the metadata byte
/// for byte, the floppy second.
#[test]
fn metadata_with_comments_cdata_and_double_quotes_and_a_floppy_first() {
    let config = crate::testing::fixture("virsh/dumpxml-test-boot-odd-inactive.xml");
    let plan = plan_boot(&config, ISO, None).unwrap();
    assert_eq!(plan.target, "hdc");
    assert_eq!(booted_from_iso(&plan.xml).as_deref(), Some("hdc"));
    assert!(
        plan.xml.contains(
            "<x:a xmlns:x=\"urn:x\"><!-- a </metadata> comment --><![CDATA[ </x:a> <os> ]]></x:a>"
        ),
        "{}",
        plan.xml
    );
    let document = roxmltree::Document::parse(&plan.xml).unwrap();
    let os = child(document.root_element(), "os").unwrap();
    assert!(child(os, "boot").is_none());
    assert_eq!(boot_orders(&plan.xml), ["fda 2", "hdc 1"]);
}

/// Each disk of `xml`, in document order, as its target followed by the
/// `order` of every `<boot>` it holds ("vda 2"; "vda" with none, "vda 2 3"
/// with two: either is a broken plan).
fn boot_orders(xml: &str) -> Vec<String> {
    roxmltree::Document::parse(xml)
        .unwrap()
        .descendants()
        .filter(|n| n.has_tag_name("disk"))
        .map(|disk| {
            let orders = disk
                .children()
                .filter(|b| b.has_tag_name("boot"))
                .filter_map(|b| b.attribute("order"));
            std::iter::once(target_of(&disk).unwrap())
                .chain(orders)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}
