//! The libosinfo metadata that virt-install and virt-manager write into a
//! domain's XML: the OS the domain was created for.

/// libosinfo's namespace inside `<metadata>`.
const LIBOSINFO_NS: &str = "http://libosinfo.org/xmlns/libvirt/domain/1.0";

/// The `id` of `<libosinfo:os id="…"/>` in a `dumpxml`, e.g.
/// `http://ubuntu.com/ubuntu/22.04`. `None` when the XML is unreadable or
/// carries no such element.
pub fn libosinfo_os_id(domain_xml: &str) -> Option<String> {
    let document = roxmltree::Document::parse(domain_xml).ok()?;
    let metadata = document
        .root_element()
        .children()
        .find(|node| node.has_tag_name("metadata"))?;
    metadata
        .descendants()
        .find(|node| node.has_tag_name((LIBOSINFO_NS, "os")))
        .and_then(|os| os.attribute("id"))
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
}

/// The namespace of the marker `boot-iso` puts in the `<metadata>` of the
/// transient XML it starts a VM with.
pub const BOOT_NAMESPACE: &str = "https://github.com/dismount-iso-qemu/xmlns/boot-iso/1";

/// The drive `boot-iso` put the ISO in, from a running domain's live XML:
/// `None` for any other start (a persistent config never carries it).
pub fn booted_from_iso(domain_xml: &str) -> Option<String> {
    let document = roxmltree::Document::parse(domain_xml).ok()?;
    document
        .root_element()
        .children()
        .find(|node| node.has_tag_name("metadata"))?
        .children()
        .find(|node| node.has_tag_name((BOOT_NAMESPACE, "boot-iso")))?
        .attribute("target")
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::fixture;

    /// Captured from the lab boot tests' BIOS guest started by `boot-iso`.
    #[test]
    fn a_start_from_an_iso_is_seen_in_the_live_xml() {
        assert_eq!(
            booted_from_iso(&fixture("virsh/dumpxml-lab-boot-bios-from-iso-live.xml")).as_deref(),
            Some("sda")
        );
        assert_eq!(
            booted_from_iso(&fixture("virsh/dumpxml-lab-boot-bios-inactive.xml")),
            None
        );
        assert_eq!(
            booted_from_iso(&fixture("virsh/dumpxml-lab-meta-live.xml")),
            None
        );
    }

    #[test]
    fn reads_the_lab_guests_metadata() {
        assert_eq!(
            libosinfo_os_id(&fixture("virsh/dumpxml-lab-meta-live.xml")).as_deref(),
            Some("http://debian.org/debian/12")
        );
    }

    #[test]
    fn absent_metadata_or_broken_xml_is_none() {
        assert_eq!(
            libosinfo_os_id(&fixture("virsh/dumpxml-lab-noagent-live.xml")),
            None
        );
        assert_eq!(libosinfo_os_id("<domain><metadata>"), None);
        // The element counts only in libosinfo's namespace.
        let foreign =
            "<domain><metadata><x:os xmlns:x='urn:other' id='http://a/b/1'/></metadata></domain>";
        assert_eq!(libosinfo_os_id(foreign), None);
    }
}
