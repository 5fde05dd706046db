//! Names for libosinfo OS ids, the last resort of OS detection when no
//! guest agent answers.

/// Vendor and product paths of common libosinfo ids and the names people
/// know them by; the version part of the id follows the name.
const KNOWN: &[(&str, &str)] = &[
    ("ubuntu.com/ubuntu", "Ubuntu"),
    ("debian.org/debian", "Debian"),
    ("fedoraproject.org/fedora", "Fedora"),
    ("fedoraproject.org/coreos", "Fedora CoreOS"),
    ("redhat.com/rhel", "Red Hat Enterprise Linux"),
    ("centos.org/centos-stream", "CentOS Stream"),
    ("centos.org/centos", "CentOS"),
    ("rockylinux.org/rocky", "Rocky Linux"),
    ("almalinux.org/almalinux", "AlmaLinux"),
    ("oracle.com/ol", "Oracle Linux"),
    ("opensuse.org/opensuse", "openSUSE"),
    ("suse.com/sles", "SUSE Linux Enterprise Server"),
    ("archlinux.org/archlinux", "Arch Linux"),
    ("alpinelinux.org/alpinelinux", "Alpine Linux"),
    ("gentoo.org/gentoo", "Gentoo"),
    ("nixos.org/nixos", "NixOS"),
    ("freebsd.org/freebsd", "FreeBSD"),
    ("openbsd.org/openbsd", "OpenBSD"),
    ("netbsd.org/netbsd", "NetBSD"),
];

/// Windows ids put the product in the version part (`win/2k19`).
const WINDOWS: &[(&str, &str)] = &[
    ("xp", "Windows XP"),
    ("7", "Windows 7"),
    ("8", "Windows 8"),
    ("8.1", "Windows 8.1"),
    ("10", "Windows 10"),
    ("11", "Windows 11"),
    ("2k3", "Windows Server 2003"),
    ("2k8", "Windows Server 2008"),
    ("2k8r2", "Windows Server 2008 R2"),
    ("2k12", "Windows Server 2012"),
    ("2k12r2", "Windows Server 2012 R2"),
    ("2k16", "Windows Server 2016"),
    ("2k19", "Windows Server 2019"),
    ("2k22", "Windows Server 2022"),
    ("2k25", "Windows Server 2025"),
];

/// `http://ubuntu.com/ubuntu/22.04` → `Ubuntu 22.04`; an id of a vendor not
/// listed gives its last two path parts (`http://example.org/myos/3` →
/// `myos 3`), so an unfamiliar id still says something true.
pub fn os_name_from_id(id: &str) -> String {
    let path = id
        .split_once("://")
        .map_or(id, |(_, rest)| rest)
        .trim_end_matches('/');
    let (product, version) = path.rsplit_once('/').unwrap_or((path, ""));
    if product == "microsoft.com/win" {
        if let Some((_, name)) = WINDOWS.iter().find(|(v, _)| *v == version) {
            return (*name).to_owned();
        }
        return format!("Windows {version}");
    }
    if let Some((_, name)) = KNOWN.iter().find(|(p, _)| *p == product) {
        return match version {
            "" | "rolling" | "unknown" => (*name).to_owned(),
            version => format!("{name} {version}"),
        };
    }
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    parts[parts.len().saturating_sub(2)..].join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_common_vendors() {
        assert_eq!(
            os_name_from_id("http://ubuntu.com/ubuntu/22.04"),
            "Ubuntu 22.04"
        );
        assert_eq!(os_name_from_id("http://debian.org/debian/12"), "Debian 12");
        assert_eq!(
            os_name_from_id("http://redhat.com/rhel/9.2"),
            "Red Hat Enterprise Linux 9.2"
        );
        assert_eq!(
            os_name_from_id("http://centos.org/centos-stream/9"),
            "CentOS Stream 9"
        );
        assert_eq!(
            os_name_from_id("http://archlinux.org/archlinux/rolling"),
            "Arch Linux"
        );
        assert_eq!(
            os_name_from_id("http://microsoft.com/win/2k19"),
            "Windows Server 2019"
        );
        assert_eq!(os_name_from_id("http://microsoft.com/win/11"), "Windows 11");
        assert_eq!(
            os_name_from_id("http://microsoft.com/win/2k99"),
            "Windows 2k99"
        );
    }

    #[test]
    fn unknown_vendors_give_the_last_two_parts() {
        assert_eq!(os_name_from_id("http://example.org/myos/3.1"), "myos 3.1");
        assert_eq!(
            os_name_from_id("http://libosinfo.org/linux/2022/"),
            "linux 2022"
        );
        assert_eq!(os_name_from_id("generic"), "generic");
        assert_eq!(os_name_from_id(""), "");
    }
}
