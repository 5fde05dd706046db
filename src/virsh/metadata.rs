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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::fixture;

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
