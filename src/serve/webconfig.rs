//! The web configuration file of Prometheus' exporter-toolkit
//! (`serve --web.config.file`): TLS from `tls_server_config` and basic
//! auth from `basic_auth_users` (bcrypt hashes), read as node_exporter
//! reads it, so one file serves both, and read again when it or a file it
//! names changes (a renewed certificate), as the toolkit reads it for
//! every request. Keys the toolkit knows but this server cannot honour
//! (client certificates, cipher lists, a rate limit) are refused, never
//! ignored: a file that asks for client certificates must not quietly
//! serve without them. Unknown keys are refused too. A reload never
//! takes TLS or auth away: a file emptied or cut down to `{}` while the
//! server runs is refused, and the last good config stays.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::hash::{DefaultHasher, Hasher};
use std::io::Read;
use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;

use crate::mutex::lock;
use crate::utils::sanitize;

/// What the file asks of the server.
#[derive(Default)]
pub struct WebConfig {
    /// Every connection speaks TLS with this, when set.
    pub tls: Option<Arc<ServerConfig>>,
    /// Every request must carry one of these users' passwords, when set.
    pub auth: Option<BasicAuth>,
    /// Header lines (each ending in CRLF) added to every answer, from
    /// `http_server_config.headers`.
    pub headers: String,
}

/// The file as written; every map refuses keys it does not name.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct File {
    tls_server_config: Option<TlsSection>,
    http_server_config: Option<HttpSection>,
    basic_auth_users: Option<Users>,
    /// Known to the toolkit, not served here.
    rate_limit: Option<serde_yaml_ng::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct TlsSection {
    cert_file: Option<String>,
    key_file: Option<String>,
    /// The certificate (chain) and key inline, as PEM.
    cert: Option<String>,
    key: Option<String>,
    client_auth_type: Option<String>,
    min_version: Option<String>,
    max_version: Option<String>,
    prefer_server_cipher_suites: Option<bool>,
    // Known to the toolkit, not served here.
    client_ca_file: Option<serde_yaml_ng::Value>,
    client_ca: Option<serde_yaml_ng::Value>,
    client_allowed_sans: Option<serde_yaml_ng::Value>,
    cipher_suites: Option<serde_yaml_ng::Value>,
    curve_preferences: Option<serde_yaml_ng::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct HttpSection {
    /// HTTP/2 is the toolkit's to offer; this server speaks HTTP/1.1
    /// either way, which every client falls back to: accepted, unread.
    #[serde(rename = "http2")]
    _http2: Option<bool>,
    headers: Option<BTreeMap<String, String>>,
}

/// The response headers the toolkit lets the file set, with the values it
/// allows (`None`: any value).
const HEADERS: &[(&str, Option<&[&str]>)] = &[
    ("Content-Security-Policy", None),
    ("Strict-Transport-Security", None),
    ("X-Content-Type-Options", Some(&["nosniff"])),
    ("X-Frame-Options", Some(&["deny", "sameorigin"])),
    ("X-XSS-Protection", None),
];

/// `basic_auth_users` as written, in the file's order. A user named twice
/// is an error: YAML parsers differ on which of the two counts (most keep
/// the last, silently), and an admin who wrote two passwords for one user
/// meant one of them.
#[derive(Debug, Default)]
struct Users(Vec<(String, String)>);

impl<'de> Deserialize<'de> for Users {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Users;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of user names to bcrypt hashes")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Users, A::Error> {
                let mut users = Vec::new();
                let mut seen = HashSet::new();
                while let Some((user, hash)) = map.next_entry::<String, String>()? {
                    if !seen.insert(user.clone()) {
                        return Err(serde::de::Error::custom(format!(
                            "basic_auth_users: user '{}' is named twice",
                            sanitize(&user)
                        )));
                    }
                    users.push((user, hash));
                }
                Ok(Users(users))
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

/// Where a certificate or a key comes from: a file (relative paths are
/// taken from the web config's directory, as the toolkit does) or the
/// PEM text itself.
#[derive(Debug, PartialEq)]
enum Pem {
    File(String),
    Inline(String),
}

/// The file's TLS settings, checked.
#[derive(Debug, PartialEq)]
struct TlsSettings {
    cert: Pem,
    key: Pem,
    versions: Vec<&'static rustls::SupportedProtocolVersion>,
    prefer_server_cipher_suites: bool,
}

/// The file's settings, checked, before any certificate is read.
#[derive(Debug, Default, PartialEq)]
struct Settings {
    tls: Option<TlsSettings>,
    /// User name → bcrypt hash.
    users: HashMap<String, String>,
    headers: String,
}

/// The web config as its files are now: none, or the file's, read again
/// at the first connection after it or a certificate or key file it names
/// changed.
pub struct Live {
    path: Option<PathBuf>,
    /// Where the server listens, once bound: every config served there
    /// is told about if it leaves the metrics open to the network.
    listen: OnceLock<SocketAddr>,
    state: Mutex<Loaded>,
}

/// The config from the files as they were at `stamps`.
struct Loaded {
    /// What new connections get. A file that no longer reads is `Err`:
    /// every connection is refused until it is fixed, as the toolkit
    /// refuses, rather than served as the file no longer says.
    config: Result<Arc<WebConfig>, String>,
    /// The last config served: a reload may not take its TLS or its auth
    /// away.
    good: Arc<WebConfig>,
    /// The files the last read named (the config, its certificate and
    /// key), whether or not they could be read: a file named but not yet
    /// there is watched for.
    files: Vec<PathBuf>,
    stamps: Vec<Option<Stamp>>,
}

/// What tells that a file changed: replaced (a new inode, as a rename or
/// Kubernetes' symlink swap makes), resized, rewritten (the modification
/// time, and the change time, which a write in place moves even where the
/// modification time is set back), and the bytes themselves (the first
/// [`STAMPED_BYTES`]: a write in the same clock tick as the last one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    /// The device and inode: a file put in its place is another.
    file: (u64, u64),
    size: u64,
    /// Seconds and nanoseconds.
    modified: (i64, i64),
    changed: (i64, i64),
    /// A hash of the first [`STAMPED_BYTES`].
    bytes: u64,
}

/// Config, certificate and key files are a few KiB.
const STAMPED_BYTES: u64 = 1 << 20;

fn stamp(file: &Path) -> Option<Stamp> {
    let meta = std::fs::metadata(file).ok()?;
    let mut hasher = DefaultHasher::new();
    // Not a FIFO or a device: a read there could wait for a writer, with
    // every new connection waiting behind it.
    if meta.is_file() {
        let mut bytes = Vec::new();
        std::fs::File::open(file)
            .ok()?
            .take(STAMPED_BYTES)
            .read_to_end(&mut bytes)
            .ok()?;
        hasher.write(&bytes);
    }
    Some(Stamp {
        file: (meta.dev(), meta.ino()),
        size: meta.len(),
        modified: (meta.mtime(), meta.mtime_nsec()),
        changed: (meta.ctime(), meta.ctime_nsec()),
        bytes: hasher.finish(),
    })
}

/// What one read of the web config gave: the config, or why it cannot be
/// served, and the files it named, each stamped before it was read (a
/// change during the read is seen at the next connection).
struct Reading {
    config: Result<WebConfig>,
    files: Vec<PathBuf>,
    stamps: Vec<Option<Stamp>>,
}

impl Live {
    /// No web config: plain HTTP, no auth.
    pub fn none() -> Live {
        Live {
            path: None,
            listen: OnceLock::new(),
            state: Mutex::new(Loaded {
                config: Ok(Arc::default()),
                good: Arc::default(),
                files: Vec::new(),
                stamps: Vec::new(),
            }),
        }
    }

    /// The file at `path`, read and checked now: at start, a file that
    /// cannot be served is an error.
    pub fn load(path: &Path) -> Result<Live> {
        let reading = load(path);
        let config = Arc::new(reading.config?);
        Ok(Live {
            path: Some(path.to_owned()),
            listen: OnceLock::new(),
            state: Mutex::new(Loaded {
                config: Ok(Arc::clone(&config)),
                good: config,
                files: reading.files,
                stamps: reading.stamps,
            }),
        })
    }

    /// Says where the server listens: warns now, and at every reload,
    /// when that is beyond loopback without TLS or without auth.
    pub fn listening_on(&self, listen: SocketAddr) {
        let _ = self.listen.set(listen);
        warn_if_open(&lock(&self.state).good, listen);
    }

    /// The config to serve a new connection with (its files stamped when
    /// nothing changed); `Err` with why while the file cannot be served.
    pub fn current(&self) -> Result<Arc<WebConfig>, String> {
        let mut loaded = lock(&self.state);
        let Some(path) = &self.path else {
            return loaded.config.clone();
        };
        let now: Vec<_> = loaded.files.iter().map(|file| stamp(file)).collect();
        if now == loaded.stamps {
            return loaded.config.clone();
        }
        let reading = load(path);
        // Read again at the next change of any file it named, the ones
        // that were missing included, not at every connection.
        loaded.files = reading.files;
        loaded.stamps = reading.stamps;
        loaded.config = match reading.config {
            Ok(config) => match dropped(&loaded.good, &config) {
                Some(what) => {
                    tracing::error!(
                        "web config changed to serve without {what}: refused, still serving the last \
                         good config (TLS and auth, once on, stay on; restart serve to turn them off)"
                    );
                    Ok(Arc::clone(&loaded.good))
                }
                None => {
                    tracing::info!(
                        tls = config.tls.is_some(),
                        auth = config.auth.is_some(),
                        "web config read again"
                    );
                    if let Some(listen) = self.listen.get() {
                        warn_if_open(&config, *listen);
                    }
                    loaded.good = Arc::new(config);
                    Ok(Arc::clone(&loaded.good))
                }
            },
            Err(error) => {
                let error = format!("{error:#}");
                tracing::error!(%error, "web config changed and cannot be served: refusing connections until it is fixed");
                Err(error)
            }
        };
        loaded.config.clone()
    }
}

/// What `new` would take away of what `old` has: TLS, auth or both.
fn dropped(old: &WebConfig, new: &WebConfig) -> Option<&'static str> {
    match (
        old.tls.is_some() && new.tls.is_none(),
        old.auth.is_some() && new.auth.is_none(),
    ) {
        (true, true) => Some("TLS and auth"),
        (true, false) => Some("TLS"),
        (false, true) => Some("auth"),
        (false, false) => None,
    }
}

/// Warns when `config`, served on `listen` beyond loopback, lacks TLS or
/// auth.
fn warn_if_open(config: &WebConfig, listen: SocketAddr) {
    if listen.ip().is_loopback() {
        return;
    }
    let missing = match (config.tls.is_some(), config.auth.is_some()) {
        (true, true) => return,
        (false, false) => "no TLS and no auth: anyone who can reach",
        (true, false) => "no auth (basic_auth_users): anyone who can reach",
        (false, true) => "no TLS (tls_server_config): anyone who can watch the network to",
    };
    tracing::warn!(
        "{missing} {listen} reads the metrics and /healthz (VM names, ISO paths, hosts); \
         give --web.config.file with both, or listen on loopback behind a proxy that has them"
    );
}

/// Reads and checks `path`, then the certificate and key it names.
fn load(path: &Path) -> Reading {
    let mut reading = Reading {
        config: Ok(WebConfig::default()),
        files: Vec::new(),
        stamps: Vec::new(),
    };
    reading.config = read(path, &mut reading);
    reading
}

/// The config `path` gives; each file stamped into `reading` before it
/// is read.
fn read(path: &Path, reading: &mut Reading) -> Result<WebConfig> {
    let mut watch = |file: PathBuf| {
        reading.stamps.push(stamp(&file));
        reading.files.push(file);
    };
    watch(path.to_owned());
    let shown = sanitize(&path.display().to_string());
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the web config {shown}"))?;
    let settings = parse(&text).with_context(|| format!("the web config {shown}"))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let tls = match &settings.tls {
        Some(tls) => {
            for pem in [&tls.cert, &tls.key] {
                if let Pem::File(file) = pem {
                    watch(dir.join(file));
                }
            }
            Some(Arc::new(
                server_config(tls, dir).with_context(|| format!("the web config {shown}"))?,
            ))
        }
        None => None,
    };
    Ok(WebConfig {
        tls,
        auth: (!settings.users.is_empty()).then(|| BasicAuth::new(settings.users)),
        headers: settings.headers,
    })
}

/// The settings `text` (YAML) gives: the file's own words checked, no
/// file opened.
fn parse(text: &str) -> Result<Settings> {
    // An empty file is a valid one: neither TLS nor auth.
    let file: File = if text.trim().is_empty() {
        File::default()
    } else {
        serde_yaml_ng::from_str(text).map_err(|error| anyhow::anyhow!("{}", one_line(&error)))?
    };
    if file.rate_limit.is_some() {
        bail!("rate_limit is not supported by dismount_iso_qemu: leave it out");
    }
    let tls = match file.tls_server_config {
        Some(section) => tls_settings(section)?,
        None => None,
    };
    let mut users = HashMap::new();
    for (user, hash) in file.basic_auth_users.unwrap_or_default().0 {
        if let Err(error) = hash.parse::<bcrypt::HashParts>() {
            bail!(
                "basic_auth_users: the hash of user '{}' is not a bcrypt hash: {error}",
                sanitize(&user)
            );
        }
        users.insert(user, hash);
    }
    let mut headers = String::new();
    for (name, value) in file
        .http_server_config
        .and_then(|http| http.headers)
        .unwrap_or_default()
    {
        let Some((known, allowed)) = HEADERS
            .iter()
            .find(|(known, _)| known.eq_ignore_ascii_case(&name))
        else {
            let names: Vec<&str> = HEADERS.iter().map(|(known, _)| *known).collect();
            bail!(
                "http_server_config.headers: '{}' is not one of {}",
                sanitize(&name),
                names.join(", ")
            );
        };
        let fits =
            allowed.is_none_or(|values| values.iter().any(|v| v.eq_ignore_ascii_case(&value)));
        if !fits || value.chars().any(char::is_control) {
            bail!(
                "http_server_config.headers: {known}: '{}' is not a value it takes",
                sanitize(&value)
            );
        }
        // Blank: unset, as the toolkit reads it.
        if !value.is_empty() {
            headers.push_str(&format!("{known}: {value}\r\n"));
        }
    }
    Ok(Settings {
        tls,
        users,
        headers,
    })
}

/// serde_yaml's message, with its position, on one line.
fn one_line(error: &serde_yaml_ng::Error) -> String {
    error
        .to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// `tls_server_config`, checked: `None` when it names no certificate and
/// no key (the toolkit serves plain HTTP then).
fn tls_settings(section: TlsSection) -> Result<Option<TlsSettings>> {
    let unsupported = [
        ("client_ca_file", section.client_ca_file.is_some()),
        ("client_ca", section.client_ca.is_some()),
        ("client_allowed_sans", section.client_allowed_sans.is_some()),
        ("cipher_suites", section.cipher_suites.is_some()),
        ("curve_preferences", section.curve_preferences.is_some()),
    ];
    if let Some((key, _)) = unsupported.iter().find(|(_, given)| *given) {
        bail!(
            "tls_server_config.{key} is not supported by dismount_iso_qemu \
             (no client certificates; rustls' own cipher suites and curves): leave it out"
        );
    }
    match section.client_auth_type.as_deref() {
        None | Some("" | "NoClientCert") => {}
        Some(other) => bail!(
            "tls_server_config.client_auth_type '{}' is not supported by dismount_iso_qemu: \
             only NoClientCert (client certificates are not checked)",
            sanitize(other)
        ),
    }
    let given = |value: Option<String>| value.filter(|text| !text.is_empty());
    let source = |file: Option<String>,
                  inline: Option<String>,
                  what: &str|
     -> Result<Option<Pem>> {
        match (given(file), given(inline)) {
            (Some(_), Some(_)) => bail!("tls_server_config: give {what}_file or {what}, not both"),
            (Some(file), None) => Ok(Some(Pem::File(file))),
            (None, Some(pem)) => Ok(Some(Pem::Inline(pem))),
            (None, None) => Ok(None),
        }
    };
    let cert = source(section.cert_file, section.cert, "cert")?;
    let key = source(section.key_file, section.key, "key")?;
    let (cert, key) = match (cert, key) {
        (None, None) => return Ok(None),
        (Some(cert), Some(key)) => (cert, key),
        (None, Some(_)) => bail!("tls_server_config: missing one of cert or cert_file"),
        (Some(_), None) => bail!("tls_server_config: missing one of key or key_file"),
    };
    let min = tls_version(section.min_version.as_deref(), "min_version", 12)?;
    let max = tls_version(section.max_version.as_deref(), "max_version", 13)?;
    let versions: Vec<_> = [(12, &rustls::version::TLS12), (13, &rustls::version::TLS13)]
        .into_iter()
        .filter(|(version, _)| (min..=max).contains(version))
        .map(|(_, version)| version)
        .collect();
    if versions.is_empty() {
        bail!(
            "tls_server_config: no TLS version between min_version and max_version that rustls speaks (TLS12, TLS13)"
        );
    }
    Ok(Some(TlsSettings {
        cert,
        key,
        versions,
        prefer_server_cipher_suites: section.prefer_server_cipher_suites.unwrap_or(true),
    }))
}

/// A TLS version as the toolkit names it (`TLS12`), as its minor number
/// (10 to 13); `default` when not given.
fn tls_version(name: Option<&str>, key: &str, default: u8) -> Result<u8> {
    Ok(match name {
        None | Some("") => default,
        Some("TLS10") => 10,
        Some("TLS11") => 11,
        Some("TLS12") => 12,
        Some("TLS13") => 13,
        Some(other) => bail!(
            "tls_server_config.{key}: unknown TLS version '{}' (TLS10, TLS11, TLS12, TLS13)",
            sanitize(other)
        ),
    })
}

/// The rustls server configuration: the certificate chain and key read
/// and checked against each other now, so that a wrong pair fails at
/// start, not at the first scrape.
fn server_config(tls: &TlsSettings, dir: &Path) -> Result<ServerConfig> {
    let pem = |source: &Pem, what: &str| -> Result<Vec<u8>> {
        match source {
            Pem::Inline(text) => Ok(text.clone().into_bytes()),
            Pem::File(file) => {
                let path = dir.join(file);
                std::fs::read(&path).with_context(|| {
                    format!(
                        "cannot read the {what} {}",
                        sanitize(&path.display().to_string())
                    )
                })
            }
        }
    };
    let cert_pem = pem(&tls.cert, "certificate")?;
    let certs = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| anyhow::anyhow!("the certificate is not PEM: {error}"))?;
    if certs.is_empty() {
        bail!("the certificate holds no PEM CERTIFICATE block");
    }
    let key = PrivateKeyDer::from_pem_slice(&pem(&tls.key, "key")?)
        .map_err(|error| anyhow::anyhow!("the key is not a PEM private key: {error}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&tls.versions)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the certificate and key do not make a TLS identity")?;
    config.ignore_client_order = tls.prefer_server_cipher_suites;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// bcrypt reads no more of a password than this.
const BCRYPT_MAX_BYTES: usize = 72;

/// The users and their bcrypt hashes. A bcrypt check costs tens to
/// hundreds of milliseconds by design; a password that passed is kept in
/// memory (as the toolkit does), so a scrape every few seconds costs a
/// comparison, not a hash.
pub struct BasicAuth {
    /// User name → bcrypt hash.
    users: HashMap<String, String>,
    /// The hash an unknown user's password is checked against: the
    /// costliest, so that no user name takes less time than a known one.
    unknown: String,
    /// User name → the password that last passed, as far as bcrypt reads
    /// it: one entry per user at most, whatever clients send.
    passed: Mutex<HashMap<String, Vec<u8>>>,
    /// One bcrypt at a time: a flood of wrong passwords costs one core,
    /// never both, and never the scrapes the cache answers.
    hashing: Mutex<Hashing>,
    hashed: Condvar,
}

/// The password checks, the running one and those waiting for it.
#[derive(Default)]
struct Hashing {
    running: bool,
    waiting: usize,
}

/// Password checks that may wait for the running one; past them a check
/// is `Busy` at once. Each waiting request holds a connection that cannot
/// be closed for room (its thread sits here, not on the socket): without
/// a bound, 512 wrong passwords would hold every connection for the 5 s
/// they may wait, and no scrape would get in. 16 checks of cost 10 take
/// about those 5 s.
const MAX_WAITING: usize = 16;

/// Why a request is not let in.
#[derive(Debug, PartialEq)]
pub enum Denied {
    /// No such user, a wrong password, or none given.
    Unauthorized,
    /// Other password checks kept this one waiting past `until`.
    Busy,
}

impl BasicAuth {
    fn new(users: HashMap<String, String>) -> Self {
        BasicAuth {
            unknown: costliest(&users).to_owned(),
            users,
            passed: Mutex::default(),
            hashing: Mutex::default(),
            hashed: Condvar::new(),
        }
    }

    /// The hash `user`'s password is checked against, and whether it is
    /// theirs. An unknown user costs a bcrypt as well, against the
    /// costliest hash (the answer thrown away): the time does not tell
    /// which user names exist.
    fn checked_against(&self, user: &str) -> (&str, bool) {
        match self.users.get(user) {
            Some(hash) => (hash, true),
            None => (&self.unknown, false),
        }
    }

    /// Whether `password` is `user`'s; a bcrypt check waits for the one
    /// running (if any) until `until` at the latest, behind
    /// [`MAX_WAITING`] others at most.
    pub fn check(&self, user: &str, password: &[u8], until: Instant) -> Result<(), Denied> {
        let read = &password[..password.len().min(BCRYPT_MAX_BYTES)];
        if lock(&self.passed)
            .get(user)
            .is_some_and(|known| same_bytes(known, read))
        {
            return Ok(());
        }
        let (hash, known_user) = self.checked_against(user);
        let matched = {
            let mut hashing = lock(&self.hashing);
            if hashing.running {
                if hashing.waiting >= MAX_WAITING {
                    return Err(Denied::Busy);
                }
                hashing.waiting += 1;
                while hashing.running {
                    let left = until.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        hashing.waiting -= 1;
                        return Err(Denied::Busy);
                    }
                    hashing = self
                        .hashed
                        .wait_timeout(hashing, left)
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .0;
                }
                hashing.waiting -= 1;
            }
            hashing.running = true;
            drop(hashing);
            let matched = bcrypt::verify(password, hash).unwrap_or(false);
            lock(&self.hashing).running = false;
            self.hashed.notify_one();
            matched
        };
        if !(known_user && matched) {
            return Err(Denied::Unauthorized);
        }
        lock(&self.passed).insert(user.to_owned(), read.to_vec());
        Ok(())
    }
}

/// The hash of the highest bcrypt cost among `users` (each checked by
/// [`parse`]), whatever the map's order; the same one every time.
fn costliest(users: &HashMap<String, String>) -> &str {
    users
        .values()
        .max_by_key(|hash| {
            let cost = hash
                .parse::<bcrypt::HashParts>()
                .map_or(0, |parts| parts.get_cost());
            (cost, hash.as_str())
        })
        .map_or("", String::as_str)
}

/// Equal bytes, compared in a time that does not depend on where they
/// first differ.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(text: &str) -> String {
        format!("{:#}", parse(text).expect_err(text))
    }

    #[test]
    fn an_empty_file_asks_for_nothing() {
        assert_eq!(parse("").unwrap(), Settings::default());
        assert_eq!(parse("# nothing\n").unwrap(), Settings::default());
        assert_eq!(
            parse("tls_server_config: {}\n").unwrap(),
            Settings::default()
        );
    }

    #[test]
    fn tls_and_users_as_node_exporter_reads_them() {
        let settings = parse(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  min_version: TLS13\n\
             basic_auth_users:\n  alice: $2y$10$tDdodgViyaqEVkzGMfnrMeshvf/57eCbfhbXcR3EIj4MGK7fdPte2\n\
             http_server_config:\n  http2: false\n  headers:\n    X-Frame-Options: deny\n",
        )
        .unwrap();
        let tls = settings.tls.unwrap();
        assert_eq!(tls.cert, Pem::File("server.crt".to_owned()));
        assert_eq!(tls.key, Pem::File("server.key".to_owned()));
        assert_eq!(tls.versions, vec![&rustls::version::TLS13]);
        assert!(settings.users.contains_key("alice"));
        assert_eq!(settings.headers, "X-Frame-Options: deny\r\n");
    }

    #[test]
    fn unknown_and_unsupported_keys_are_refused_in_one_line() {
        let unknown = refused("tls_server_config:\n  certfile: a\n");
        assert!(unknown.contains("unknown field `certfile`"), "{unknown}");
        assert!(!unknown.contains('\n'), "{unknown}");
        assert!(refused("basic_auth: {}\n").contains("unknown field `basic_auth`"));
        for (text, said) in [
            (
                "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_ca_file: c\n",
                "client_ca_file is not supported",
            ),
            (
                "tls_server_config:\n  client_auth_type: RequireAndVerifyClientCert\n",
                "only NoClientCert",
            ),
            (
                "rate_limit:\n  interval: 1s\n",
                "rate_limit is not supported",
            ),
            (
                "tls_server_config:\n  cert_file: a\n",
                "missing one of key or key_file",
            ),
            (
                "tls_server_config:\n  cert_file: a\n  cert: b\n  key_file: c\n",
                "not both",
            ),
            (
                "tls_server_config:\n  cert_file: a\n  key_file: b\n  max_version: TLS11\n",
                "no TLS version",
            ),
            (
                "tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: SSL3\n",
                "unknown TLS version 'SSL3'",
            ),
            (
                "basic_auth_users:\n  bob: secret\n",
                "user 'bob' is not a bcrypt hash",
            ),
            (
                "http_server_config:\n  headers:\n    X-Powered-By: me\n",
                "'X-Powered-By' is not one of",
            ),
            (
                "http_server_config:\n  headers:\n    X-Frame-Options: allow\n",
                "'allow' is not a value",
            ),
        ] {
            let error = refused(text);
            assert!(error.contains(said), "{text}: {error}");
        }
    }

    /// An unknown user is checked against the costliest user's hash,
    /// whatever order the map holds them in (a map of its own each time:
    /// each has its own order).
    #[test]
    fn an_unknown_user_costs_what_the_costliest_user_costs() {
        let hashes: Vec<String> = [4, 6, 5]
            .iter()
            .map(|&cost| bcrypt::hash("pw", cost).unwrap())
            .collect();
        for _ in 0..20 {
            let users: HashMap<String, String> = ["a", "b", "c"]
                .iter()
                .zip(&hashes)
                .map(|(user, hash)| ((*user).to_owned(), hash.clone()))
                .collect();
            let auth = BasicAuth::new(users);
            assert_eq!(auth.checked_against("nobody"), (hashes[1].as_str(), false));
            assert_eq!(auth.checked_against("a"), (hashes[0].as_str(), true));
        }
    }

    /// Two passwords for one user: refused, whichever a YAML parser would
    /// have kept.
    #[test]
    fn a_user_named_twice_is_refused() {
        let hash = "$2y$10$tDdodgViyaqEVkzGMfnrMeshvf/57eCbfhbXcR3EIj4MGK7fdPte2";
        let error = refused(&format!(
            "basic_auth_users:\n  alice: {hash}\n  bob: {hash}\n  alice: {hash}\n"
        ));
        assert!(error.contains("user 'alice' is named twice"), "{error}");
        assert!(!error.contains('\n'), "{error}");
        let error = refused(&format!(
            "basic_auth_users:\n  alice: {hash}\n  \"alice\": {hash}\n"
        ));
        assert!(error.contains("named twice"), "{error}");
    }

    /// A password that passed once is checked again without bcrypt; a
    /// wrong one, an unknown user and bytes past the 72 bcrypt reads
    /// behave as bcrypt says.
    #[test]
    fn passwords_are_checked_by_bcrypt_once_then_from_memory() {
        let hash = bcrypt::hash("right", 4).unwrap();
        let auth = BasicAuth::new(HashMap::from([("alice".to_owned(), hash)]));
        let until = Instant::now() + std::time::Duration::from_secs(60);
        assert_eq!(
            auth.check("alice", b"wrong", until),
            Err(Denied::Unauthorized)
        );
        assert!(lock(&auth.passed).is_empty(), "a failure is not kept");
        assert_eq!(
            auth.check("bob", b"right", until),
            Err(Denied::Unauthorized)
        );
        assert_eq!(auth.check("alice", b"right", until), Ok(()));
        assert_eq!(
            lock(&auth.passed).get("alice").map(Vec::as_slice),
            Some(&b"right"[..])
        );
        // From memory now: a lock held by another check does not delay it.
        lock(&auth.hashing).running = true;
        assert_eq!(auth.check("alice", b"right", Instant::now()), Ok(()));
        assert_eq!(
            auth.check("alice", b"wrong", Instant::now()),
            Err(Denied::Busy)
        );
        // Behind as many waiting checks as it may be: busy at once, however
        // far its deadline.
        lock(&auth.hashing).waiting = MAX_WAITING;
        let far = Instant::now() + std::time::Duration::from_secs(3600);
        assert_eq!(auth.check("alice", b"wrong", far), Err(Denied::Busy));
        assert_eq!(lock(&auth.hashing).waiting, MAX_WAITING);
        *lock(&auth.hashing) = Hashing::default();

        let long = "x".repeat(BCRYPT_MAX_BYTES);
        let auth = BasicAuth::new(HashMap::from([(
            "a".to_owned(),
            bcrypt::hash(&long, 4).unwrap(),
        )]));
        let longer = format!("{long}yz");
        assert_eq!(auth.check("a", longer.as_bytes(), until), Ok(()));
        assert_eq!(auth.check("a", long.as_bytes(), until), Ok(()));
        assert_eq!(lock(&auth.passed).len(), 1);
    }
}
