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
    /// After the first `?`, when there is one.
    query: Option<&'a str>,
}

impl<'a> Uri<'a> {
    pub fn parse(text: &'a str) -> Self {
        let (without_query, query) = text
            .split_once('?')
            .map_or((text, None), |(before, query)| (before, Some(query)));
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
            query,
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

    /// The same host however it is spelled, to tell whether two URIs are
    /// one host: scheme and host name in lower case (both are
    /// case-insensitive), no port where it is the transport's default, no
    /// `/` after a bare host and no empty `?`. The path and the query
    /// string stay as given: they are the driver's to read.
    pub fn canonical(&self) -> String {
        let query = self.query.filter(|q| !q.is_empty());
        self.written(self.user_info(), query)
    }

    /// As shown in tables, JSON and metrics: the canonical form without
    /// user info or query string (a `command=` or `keyfile=` parameter is
    /// the admin's own business): `qemu+ssh://kvm1/system`.
    pub fn public(&self) -> String {
        self.written(None, None)
    }

    /// [`Self::public`] with the user name (never a password): the label
    /// of a host that shares its public form with another.
    pub fn public_with_user(&self) -> String {
        let user = self
            .user_info()
            .map(|info| info.split(':').next().unwrap_or(info));
        self.written(user, None)
    }

    /// Before the last `@` of the authority.
    fn user_info(&self) -> Option<&'a str> {
        self.authority.rsplit_once('@').map(|(user, _)| user)
    }

    /// The canonical parts, with the user info and query given.
    fn written(&self, user: Option<&str>, query: Option<&str>) -> String {
        let mut text = if self.text.contains("://") {
            let host_port = self
                .authority
                .rsplit_once('@')
                .map_or(self.authority, |(_, host)| host);
            let (host, port) = split_port(host_port);
            let mut text = format!("{}://", self.scheme.to_ascii_lowercase());
            if let Some(user) = user {
                text.push_str(user);
                text.push('@');
            }
            text.push_str(&host.to_ascii_lowercase());
            if let Some(port) = port.filter(|port| !self.is_default_port(port)) {
                text.push(':');
                text.push_str(port);
            }
            // `qemu+ssh://kvm1/` is `qemu+ssh://kvm1`; `test:///` keeps its `/`.
            if self.path != "/" || host.is_empty() {
                text.push_str(self.path);
            }
            text
        } else {
            // Not a URL (a libvirt alias, or junk): only its query goes.
            self.text
                .split_once('?')
                .map_or(self.text, |(before, _)| before)
                .to_owned()
        };
        if let Some(query) = query {
            text.push('?');
            text.push_str(query);
        }
        text
    }

    /// For calls no one can answer a prompt of (a shell's TAB): over
    /// libvirt's ssh transport, `no_tty=1` added unless the query names
    /// `no_tty` already, so that ssh runs with `BatchMode=yes` and fails
    /// at once instead of asking for a password or to accept a host key.
    /// Anything else as given.
    pub fn without_prompts(&self) -> String {
        let named = self.query.is_some_and(|query| {
            query
                .split('&')
                .any(|pair| pair.split('=').next() == Some("no_tty"))
        });
        if self.transport() != Some("ssh") || named {
            return self.text.to_owned();
        }
        let joint = match self.query {
            None => "?",
            Some("") => "",
            Some(_) => "&",
        };
        format!("{}{joint}no_tty=1", self.text)
    }

    /// Whether connecting runs a program the URI names: the `ext`
    /// transport's `command=`, or ssh's own `command=` (in any case,
    /// percent-encoded or not, as libvirt reads it).
    pub fn names_a_program(&self) -> bool {
        let query = self.text.split_once('?').map_or("", |(_, query)| query);
        self.transport()
            .is_some_and(|transport| transport.eq_ignore_ascii_case("ext"))
            || query_params(query)
                .iter()
                .any(|(name, _)| percent_decoded(name).eq_ignore_ascii_case("command"))
    }

    /// An empty port, or the one the transport uses when none is given:
    /// ssh 22, tls (a host without a transport too) 16514, tcp 16509.
    fn is_default_port(&self, port: &str) -> bool {
        let transport = self.transport().map(str::to_ascii_lowercase);
        let default = match transport.as_deref() {
            Some("ssh" | "libssh" | "libssh2") => 22,
            None | Some("tls") => 16514,
            Some("tcp") => 16509,
            _ => return port.is_empty(),
        };
        port.is_empty() || port.parse::<u16>() == Ok(default)
    }
}

/// `host:port` into its parts; an IPv6 host is in brackets (`[::1]:22`).
fn split_port(host_port: &str) -> (&str, Option<&str>) {
    match host_port.rsplit_once(':') {
        Some((host, port))
            if port.bytes().all(|b| b.is_ascii_digit())
                && (!host.starts_with('[') || host.ends_with(']')) =>
        {
            (host, Some(port))
        }
        _ => (host_port, None),
    }
}

impl Uri<'_> {
    /// `text` (an error about this connection) fit for people who may not
    /// see the connection's details: every URI in it (the one given, one
    /// virsh wrote, a command line's `-c`) in its [`Uri::public`] form, and
    /// each value of this URI's query that names a path, and each value of
    /// a [`FILE_PARAMETERS`] one (`keyfile=`, `command=`, `socket=`: ssh
    /// names the key file in its warnings), as
    /// `<keyfile>`, `<command>`, …, and this URI's user where ssh names it
    /// (`root@kvm1: Permission denied`), each written as given and as
    /// libvirt reads it (percent-decoded: `my%20key` reaches ssh as `my
    /// key`).
    pub fn scrub(&self, text: &str) -> String {
        let mut scrubbed = public_uris(text);
        let query = self.text.split_once('?').map_or("", |(_, query)| query);
        let mut secrets: Vec<(String, String)> = Vec::new();
        for (raw_name, raw_value) in query_params(query) {
            let (name, value) = (percent_decoded(raw_name), percent_decoded(raw_value));
            // libvirt matches parameter names in any case (`KeyFile=`).
            let name = name.to_ascii_lowercase();
            let names_a_file = FILE_PARAMETERS.contains(&name.as_str());
            if value.is_empty() || !(names_a_file || raw_value.contains('/') || value.contains('/'))
            {
                continue;
            }
            let label = if !name.is_empty()
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            {
                format!("<{name}>")
            } else {
                "<parameter>".to_owned()
            };
            for secret in [raw_value.to_owned(), value] {
                secrets.push((secret, label.clone()));
            }
        }
        // ssh names the user in its own words (`root@kvm1: Permission
        // denied`): it goes with its `@`, as from the URIs.
        if let Some(info) = self.user_info().filter(|info| !info.is_empty()) {
            let user = info.split(':').next().unwrap_or(info);
            for shown in [info, user].map(|text| [text.to_owned(), percent_decoded(text)]) {
                for text in shown.into_iter().filter(|text| !text.is_empty()) {
                    secrets.push((format!("{text}@"), String::new()));
                }
            }
        }
        // The longest first: a value inside another is not left half shown.
        secrets.sort_by_key(|(secret, _)| std::cmp::Reverse(secret.len()));
        for (secret, label) in secrets {
            scrubbed = scrubbed.replace(&secret, &label);
        }
        scrubbed
    }
}

/// The remote driver's parameters that name a file or a program, scrubbed
/// whatever their value: one given relative (`keyfile=id_kvm`) has no `/`
/// to tell it by, and ssh's warnings name it as given.
const FILE_PARAMETERS: [&str; 6] = [
    "command",
    "keyfile",
    "known_hosts",
    "netcat",
    "pkipath",
    "socket",
];

/// A query's `name=value` pairs, raw, split as libvirt's
/// `virURIParseParams` splits them: at the next `&`, or at the next `;`
/// when no `&` is left; a pair without `=` has an empty value, one that
/// starts with `=` is ignored.
fn query_params(query: &str) -> Vec<(&str, &str)> {
    let mut params = Vec::new();
    let mut rest = query;
    while !rest.is_empty() {
        let end = rest
            .find('&')
            .or_else(|| rest.find(';'))
            .unwrap_or(rest.len());
        let pair = &rest[..end];
        match pair.split_once('=') {
            Some(("", _)) => {}
            Some((name, value)) => params.push((name, value)),
            None if !pair.is_empty() => params.push((pair, "")),
            None => {}
        }
        rest = rest.get(end + 1..).unwrap_or("");
    }
    params
}

/// `text` with each `%XX` (two hex digits) decoded, as libxml2's
/// `xmlURIUnescapeString` does for libvirt (no `+` for space); bytes that
/// are not UTF-8 as U+FFFD.
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |at: usize| {
            bytes
                .get(at)
                .and_then(|&b| char::from(b).to_digit(16))
                .map(|d| d as u8)
        };
        match (bytes[i], hex(i + 1), hex(i + 2)) {
            (b'%', Some(high), Some(low)) => {
                out.push(high << 4 | low);
                i += 3;
            }
            (byte, _, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `text` with each `scheme://…` in it replaced by its public form. A URI
/// ends at white space, a quote or an angle bracket, or where the scheme
/// of the next `://` starts (else `://://root@h/` would read
/// `//root@h/` as a path and keep its user); punctuation right after it
/// (`…/system: error`) is kept out of it.
fn public_uris(text: &str) -> String {
    let ends_uri = |c: char| c.is_whitespace() || "'\"`<>".contains(c);
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(marker) = rest.find("://") {
        let start = scheme_start(rest, marker);
        let after = marker + "://".len();
        let next = rest[after..]
            .find("://")
            .map_or(rest.len(), |i| scheme_start(rest, after + i).max(after));
        let end = rest[marker..]
            .find(ends_uri)
            .map_or(rest.len(), |i| marker + i)
            .min(next);
        let uri = rest[start..end].trim_end_matches([':', ',', ';', '.', ')']);
        out.push_str(&rest[..start]);
        out.push_str(&Uri::parse(uri).public());
        rest = &rest[start + uri.len()..];
    }
    out.push_str(rest);
    out
}

/// Where the scheme before the `://` at `marker` starts: after the last
/// character no scheme holds.
fn scheme_start(text: &str, marker: usize) -> usize {
    let is_scheme = |c: char| c.is_ascii_alphanumeric() || "+.-".contains(c);
    text[..marker]
        .char_indices()
        .rfind(|&(_, c)| !is_scheme(c))
        .map_or(0, |(i, c)| i + c.len_utf8())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_uri_names_a_program_by_its_ext_transport_or_command() {
        for uri in [
            "qemu+ext:///system?command=/tmp/x",
            "qemu+EXT:///system",
            "qemu+ssh://root@h/system?command=/tmp/ssh",
            "qemu+ssh://h/system?keyfile=k&Comm%61nd=/tmp/ssh",
        ] {
            assert!(Uri::parse(uri).names_a_program(), "{uri}");
        }
        for uri in [
            "qemu+ssh://root@h/system?keyfile=/k",
            "qemu:///system",
            "test:///default",
            "qemu+tls://h/system?commander=1",
        ] {
            assert!(!Uri::parse(uri).names_a_program(), "{uri}");
        }
    }

    #[test]
    fn without_prompts_adds_no_tty_over_ssh_only() {
        let quiet = |uri| Uri::parse(uri).without_prompts();
        assert_eq!(
            quiet("qemu+ssh://root@kvm1/system"),
            "qemu+ssh://root@kvm1/system?no_tty=1"
        );
        assert_eq!(
            quiet("qemu+ssh://kvm1/system?keyfile=/k"),
            "qemu+ssh://kvm1/system?keyfile=/k&no_tty=1"
        );
        assert_eq!(
            quiet("qemu+ssh://kvm1/system?"),
            "qemu+ssh://kvm1/system?no_tty=1"
        );
        // The admin's own choice stands.
        assert_eq!(
            quiet("qemu+ssh://kvm1/system?no_tty=0"),
            "qemu+ssh://kvm1/system?no_tty=0"
        );
        for unchanged in [
            "qemu:///system",
            "qemu+tls://kvm1/system",
            "test:///default",
        ] {
            assert_eq!(quiet(unchanged), unchanged);
        }
    }

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
        assert_eq!(Uri::parse("xen+ssh://user:pw@h/").public(), "xen+ssh://h");
        assert_eq!(Uri::parse("weird").public(), "weird");
        assert_eq!(Uri::parse("weird").driver(), "weird");
    }

    /// One host, however it is written: scheme and host case, the default
    /// port, a trailing `/` or `?`; what the driver reads stays.
    #[test]
    fn spellings_of_one_host_have_one_canonical_form() {
        let one = [
            "qemu+ssh://root@kvm1/system",
            "QEMU+SSH://root@KVM1/system",
            "qemu+ssh://root@kvm1:22/system",
            "qemu+ssh://root@kvm1:/system?",
        ];
        for uri in one {
            assert_eq!(Uri::parse(uri).canonical(), one[0], "{uri}");
        }
        for (uri, canonical) in [
            (
                "qemu+tls://H.example:16514/system",
                "qemu+tls://h.example/system",
            ),
            ("qemu://h:16514/system", "qemu://h/system"),
            ("qemu+tcp://h:16509/system", "qemu+tcp://h/system"),
            (
                "qemu+libssh2://[FE80::1]:22/system",
                "qemu+libssh2://[fe80::1]/system",
            ),
            ("xen+ssh://h/", "xen+ssh://h"),
            ("test:///tmp/A.xml?", "test:///tmp/A.xml"),
            ("qemu:///system", "qemu:///system"),
            ("kvm1", "kvm1"),
        ] {
            assert_eq!(Uri::parse(uri).canonical(), canonical, "{uri}");
        }
        // Different hosts stay different: another port, user, path case,
        // query, or a port that is another transport's default.
        for [a, b] in [
            ["qemu+ssh://kvm1:2222/system", "qemu+ssh://kvm1/system"],
            ["qemu+ssh://root@kvm1/system", "qemu+ssh://kvm1/system"],
            ["qemu+ssh://kvm1/system", "qemu+ssh://kvm1/System"],
            ["qemu+ssh://kvm1/system/", "qemu+ssh://kvm1/system"],
            ["test:///tmp/a.xml?x=1", "test:///tmp/a.xml"],
            ["qemu+ssh://kvm1:16514/system", "qemu+ssh://kvm1/system"],
            [
                "qemu+unix:///system?socket=/a",
                "qemu+unix:///system?socket=/b",
            ],
        ] {
            assert_ne!(
                Uri::parse(a).canonical(),
                Uri::parse(b).canonical(),
                "{a} {b}"
            );
        }
    }

    #[test]
    fn public_forms_are_canonical_without_user_or_query() {
        let uri = Uri::parse("QEMU+SSH://admin:pw@Kvm1:22/system?keyfile=/k");
        assert_eq!(uri.public(), "qemu+ssh://kvm1/system");
        assert_eq!(uri.public_with_user(), "qemu+ssh://admin@kvm1/system");
        assert_eq!(
            Uri::parse("qemu+ssh://kvm1/system").public_with_user(),
            "qemu+ssh://kvm1/system"
        );
        assert_eq!(Uri::parse("alias?x=1").public(), "alias");
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
            "cannot list domains on qemu+ssh://h/system: Warning: Identity file <keyfile> \
             not accessible. (`virsh -c 'qemu+ssh://h/system'`, exit status: 1); no \
             connection driver available for test:///f.xml, nor for xen+tls://[::1]/x."
        );
        // Flags (no_tty=1) are not paths: a `1` elsewhere stays.
        assert_eq!(Uri::parse(given).scrub("1 of 1"), "1 of 1");
        for plain in ["", "no URI here", "a :// b", "é://x", "ends with qemu:"] {
            assert_eq!(Uri::parse(given).scrub(plain), plain);
        }
        assert_eq!(Uri::parse(given).scrub("at ://u@h/x?q"), "at ://h/x");
    }

    /// A `://` right before a URI (or inside one) starts a URI of its
    /// own: the user info after it is not read as a path and kept
    /// (proptest's `://` before `://root@host/…`).
    #[test]
    fn scrub_reads_each_marker_as_its_own_uri() {
        let given = Uri::parse("qemu+ssh://root@host/x?keyfile=/k");
        for (text, scrubbed) in [
            ("://://root@host/x?keyfile=/k", "://://host/x"),
            ("a://qemu+ssh://root@host/x", "a://qemu+ssh://host/x"),
            ("qemu+ssh://b://root@host/x", "qemu+ssh://b://host/x"),
            // A URI in a query is a URI of its own, shown public too.
            (
                "x: qemu+ssh://root@host/x?command=a://u@h/",
                "x: qemu+ssh://host/xa://h",
            ),
        ] {
            assert_eq!(given.scrub(text), scrubbed, "{text}");
        }
    }

    /// libvirt percent-decodes a query's names and values before the ssh
    /// transport reads them (names in any case): ssh's words carry the
    /// decoded path, which is scrubbed as the one written is.
    #[test]
    fn scrub_leaves_out_percent_encoded_paths_as_libvirt_decodes_them() {
        let given =
            "qemu+ssh://h/system?key%66ile=/secret/my%20key&Command=%2Fopt%2Fssh;x&no_tty=1";
        let error = "Warning: Identity file /secret/my key not accessible; \
                     /opt/ssh;x: not found; /secret/my%20key";
        assert_eq!(
            Uri::parse(given).scrub(error),
            "Warning: Identity file <keyfile> not accessible; <command>: not found; <keyfile>"
        );
        // `;` separates only where no `&` is left, as libvirt splits.
        assert_eq!(
            query_params("a=1;keyfile=/k;b"),
            [("a", "1"), ("keyfile", "/k"), ("b", "")]
        );
        assert_eq!(query_params("=x&&k=v%"), [("k", "v%")]);
        assert_eq!(percent_decoded("%2f%2Fa%zz%4"), "//a%zz%4");
        assert_eq!(
            Uri::parse("qemu+ssh://h/s?x%3Cy%3E=%2Fp").scrub("at /p"),
            "at <parameter>"
        );
    }

    /// ssh names the user in its own words (`nobodyx@127.0.0.1: Permission
    /// denied`, captured through the lab's sshd): the user goes, as from
    /// the URIs, written as given or percent-decoded.
    #[test]
    fn scrub_leaves_out_the_user_ssh_names() {
        let error = "error: Cannot recv data: nobodyx@127.0.0.1: Permission denied (publickey).: \
                     Connection reset by peer";
        let scrubbed = "error: Cannot recv data: 127.0.0.1: Permission denied (publickey).: \
                        Connection reset by peer";
        for given in [
            "qemu+ssh://nobodyx@127.0.0.1:2222/system?command=/x/ssh",
            "qemu+ssh://nobody%78@127.0.0.1:2222/system",
        ] {
            assert_eq!(Uri::parse(given).scrub(error), scrubbed, "{given}");
        }
    }

    /// A parameter that names a file is scrubbed whatever its value: ssh
    /// names a key file given relative (`keyfile=id_kvm`, found from the
    /// working directory) in its warning as it was given. Flags stay.
    #[test]
    fn scrub_leaves_out_file_parameters_without_a_slash() {
        let given = Uri::parse("qemu+ssh://h/system?KeyFile=id_kvm&command=ssh-kvm&no_tty=1");
        assert_eq!(
            given.scrub(
                "Warning: Identity file id_kvm not accessible; ssh-kvm: not found; no_tty 1"
            ),
            "Warning: Identity file <keyfile> not accessible; <command>: not found; no_tty 1"
        );
    }
}
