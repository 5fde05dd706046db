//! A libvirt connection URI, read once: its driver, its transport, whether
//! it reaches another machine, and how it is shown to people.

/// `driver[+transport]://[user@]host[:port]/path[?query]`, as libvirt
/// writes them; anything else is kept as given and has no parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uri<'a> {
    text: &'a str,
    scheme: &'a str,
    /// Between `://` and the path: `user@host:port`, empty for local.
    authority: &'a str,
    /// From the path on, without the query string.
    path: &'a str,
}

impl<'a> Uri<'a> {
    pub fn parse(text: &'a str) -> Self {
        let without_query = text.split_once('?').map_or(text, |(before, _)| before);
        let (scheme, rest) = without_query
            .split_once("://")
            .or_else(|| without_query.split_once(':'))
            .unwrap_or((without_query, ""));
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        Uri {
            text,
            scheme,
            authority,
            path,
        }
    }

    /// The hypervisor driver: `qemu`, `test`, `xen`, …
    pub fn driver(&self) -> &'a str {
        self.scheme
            .split_once('+')
            .map_or(self.scheme, |(driver, _)| driver)
    }

    /// How virsh reaches it: `ssh`, `libssh2`, `tls`, `unix`, …; `None`
    /// for the driver's default.
    pub fn transport(&self) -> Option<&'a str> {
        self.scheme.split_once('+').map(|(_, transport)| transport)
    }

    /// Through ssh, where a prompt nobody sees can hang a connection.
    pub fn over_ssh(&self) -> bool {
        self.transport().is_some_and(|t| t.contains("ssh"))
    }

    /// With a host part (`qemu+ssh://root@host/system`): another machine,
    /// whose files this one cannot see. `qemu:///system` and `test:///…`
    /// are local.
    pub fn is_remote(&self) -> bool {
        !self.authority.is_empty()
    }

    /// As shown in tables, JSON and metrics: without user info or query
    /// string (a `command=` or `keyfile=` parameter is the admin's own
    /// business): `qemu+ssh://kvm1/system`.
    pub fn public(&self) -> String {
        if !self.text.contains("://") {
            return self
                .text
                .split_once('?')
                .map_or(self.text, |(b, _)| b)
                .to_owned();
        }
        let host = self
            .authority
            .rsplit_once('@')
            .map_or(self.authority, |(_, host)| host);
        format!("{}://{host}{}", self.scheme, self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_of_the_uris_libvirt_writes() {
        let ssh = Uri::parse("qemu+ssh://root@kvm1:2222/system?command=/x/ssh&keyfile=/k");
        assert_eq!(ssh.driver(), "qemu");
        assert_eq!(ssh.transport(), Some("ssh"));
        assert!(ssh.over_ssh() && ssh.is_remote());
        assert_eq!(ssh.public(), "qemu+ssh://kvm1:2222/system");
        assert!(Uri::parse("qemu+libssh2://kvm/system").over_ssh());
        let tls = Uri::parse("qemu+tls://host.example/system?no_verify=1");
        assert!(tls.is_remote() && !tls.over_ssh());
        for local in [
            "qemu:///system",
            "test:///work/fixtures/fleet-small.xml",
            "qemu+unix:///system?socket=/run/x",
        ] {
            assert!(!Uri::parse(local).is_remote(), "{local}");
        }
        assert_eq!(
            Uri::parse("test:///tmp/a@b.xml").public(),
            "test:///tmp/a@b.xml"
        );
        assert_eq!(Uri::parse("test:///tmp/a@b.xml").driver(), "test");
        assert_eq!(Uri::parse("xen+ssh://user:pw@h/").public(), "xen+ssh://h/");
        assert_eq!(Uri::parse("weird").public(), "weird");
        assert_eq!(Uri::parse("weird").driver(), "weird");
    }
}
