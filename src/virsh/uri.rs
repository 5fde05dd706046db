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

    /// `text` (an error about this connection) fit for people who may not
    /// see the connection's details: every URI in it (the one given, one
    /// virsh wrote, a command line's `-c`) in its [`Uri::public`] form, and
    /// each value of this URI's query that names a path (`keyfile=`,
    /// `command=`, `socket=`: ssh names the key file in its warnings) as
    /// `<keyfile>`, `<command>`, ….
    pub fn scrub(&self, text: &str) -> String {
        let mut scrubbed = public_uris(text);
        let query = self.text.split_once('?').map_or("", |(_, query)| query);
        for (name, value) in query.split('&').filter_map(|pair| pair.split_once('=')) {
            if value.contains('/') {
                scrubbed = scrubbed.replace(value, &format!("<{name}>"));
            }
        }
        scrubbed
    }
}

/// `text` with each `scheme://…` in it replaced by its public form. A URI
/// ends at white space, a quote or an angle bracket; punctuation right
/// after it (`…/system: error`) is kept out of it.
fn public_uris(text: &str) -> String {
    let is_scheme = |c: char| c.is_ascii_alphanumeric() || "+.-".contains(c);
    let ends_uri = |c: char| c.is_whitespace() || "'\"`<>".contains(c);
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(marker) = rest.find("://") {
        let start = rest[..marker]
            .char_indices()
            .rfind(|&(_, c)| !is_scheme(c))
            .map_or(0, |(i, c)| i + c.len_utf8());
        let end = rest[marker..]
            .find(ends_uri)
            .map_or(rest.len(), |i| marker + i);
        let uri = rest[start..end].trim_end_matches([':', ',', ';', '.', ')']);
        out.push_str(&rest[..start]);
        out.push_str(&Uri::parse(uri).public());
        rest = &rest[start + uri.len()..];
    }
    out.push_str(rest);
    out
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

    #[test]
    fn scrub_leaves_out_users_queries_and_path_parameters() {
        let given = "qemu+ssh://root@h:22/system?keyfile=/k/id&no_tty=1&command=/x/ssh";
        let error = format!(
            "cannot list domains on {given}: Warning: Identity file /k/id not accessible. \
             (`virsh -c '{given}'`, exit status: 1); no connection driver available for \
             test://u@/f.xml?a=b, nor for xen+tls://[::1]/x."
        );
        assert_eq!(
            Uri::parse(given).scrub(&error),
            "cannot list domains on qemu+ssh://h:22/system: Warning: Identity file <keyfile> \
             not accessible. (`virsh -c 'qemu+ssh://h:22/system'`, exit status: 1); no \
             connection driver available for test:///f.xml, nor for xen+tls://[::1]/x."
        );
        // Flags (no_tty=1) are not paths: a `1` elsewhere stays.
        assert_eq!(Uri::parse(given).scrub("1 of 1"), "1 of 1");
        for plain in ["", "no URI here", "a :// b", "é://x", "ends with qemu:"] {
            assert_eq!(Uri::parse(given).scrub(plain), plain);
        }
        assert_eq!(Uri::parse(given).scrub("at ://u@h/x?q"), "at ://h/x");
    }
}
