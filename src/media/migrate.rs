//! The migration preflight, purely: whether each removable drive's media
//! is where a VM is going (the file or volume, of the same size), the
//! verdict libvirt's own check would give, and the commands that clear a
//! drive that blocks.

use std::path::Path;

use serde::Serialize;

use super::domain::DomainMedia;
use super::library::Files;
use crate::virsh::{Invocation, Media, Pool, Volume};

/// What one host's storage shows: every pool (active or not) with its
/// directory, the active pools' volumes, and whether its files can be
/// looked at from here.
#[derive(Debug, Clone)]
pub struct Storage {
    pub pools: Vec<Pool>,
    pub volumes: Vec<Volume>,
    /// `Local`: this machine's libvirtd, whose paths are this machine's
    /// files. `Remote`: only the pools' volumes are known (another
    /// machine, or the test driver, whose pools live in its memory).
    pub files: Files,
}

impl Storage {
    fn volume_at(&self, path: &str) -> Option<&Volume> {
        self.volumes.iter().find(|volume| volume.path == path)
    }

    fn volume(&self, pool: &str, name: &str) -> Option<&Volume> {
        self.volumes
            .iter()
            .find(|volume| volume.pool == pool && volume.name == name)
    }

    fn pool(&self, name: &str) -> Option<&Pool> {
        self.pools.iter().find(|pool| pool.name == name)
    }

    /// `wanted`, or with `-2`, `-3`, … after it: a name no pool of this
    /// host has (`pool-define-as` of a taken one fails).
    fn unused_pool_name(&self, wanted: String) -> String {
        if self.pool(&wanted).is_none() {
            return wanted;
        }
        (2..)
            .map(|n| format!("{wanted}-{n}"))
            .find(|name| self.pool(name).is_none())
            .expect("a free name among endless ones")
    }

    /// The pool whose directory holds `path` (a directory pool is flat:
    /// the file's own directory), active ones first.
    fn pool_holding(&self, path: &str) -> Option<&Pool> {
        let dir = Path::new(path).parent()?;
        let mut pools: Vec<&Pool> = self
            .pools
            .iter()
            .filter(|pool| pool.path.as_deref().is_some_and(|p| Path::new(p) == dir))
            .collect();
        pools.sort_by_key(|pool| !pool.active);
        pools.into_iter().next()
    }

    /// The size of the image behind `media` as this host has it, where it
    /// can be told: a volume's capacity, else (locally) the file's length.
    fn size_of(&self, media: &Media) -> Option<u64> {
        match media {
            Media::Volume { pool, volume } => self.volume(pool, volume)?.capacity,
            Media::File(path) => self
                .volume_at(path)
                .and_then(|volume| volume.capacity)
                .or_else(|| local_length(self.files, path)),
            Media::Block(_) | Media::Network { .. } => None,
        }
    }
}

/// A file's length on this machine, for a host whose files are here.
fn local_length(files: Files, path: &str) -> Option<u64> {
    (files == Files::Local)
        .then(|| std::fs::metadata(path).ok())
        .flatten()
        .filter(std::fs::Metadata::is_file)
        .map(|metadata| metadata.len())
}

/// Why a drive's media is not as it must be at the destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Not there: no file, or no volume of that name in its pool.
    Missing,
    /// There, of another size: another image under the same name.
    DifferentSize,
    /// The drive names a volume of a pool the destination lacks.
    NoPool,
    /// The pool is there, not started.
    PoolInactive,
    /// A file outside every pool of a destination whose files cannot be
    /// seen from here: libvirt has no way to look.
    NotCheckable,
    /// Network media (https, nbd, rbd, …): the destination reaches it by
    /// itself, or not; nothing here can tell.
    Network,
}

impl Reason {
    /// Whether it stops the move: a missing image, pool or started pool is
    /// libvirt's own "Cannot access storage file"; another size there is
    /// another image, which the guest would read after the move; the last
    /// two are unknowns.
    fn blocks(self) -> bool {
        matches!(
            self,
            Reason::Missing | Reason::DifferentSize | Reason::NoPool | Reason::PoolInactive
        )
    }
}

/// The verdict for one VM and one destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Ok,
    Warning,
    Blocked,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Warning => "warning",
            Verdict::Blocked => "blocked",
        }
    }
}

/// Where a copy of the ISO comes from, on the source host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A file on this machine (a local source's).
    File(String),
    /// A volume of the source's pool, streamed from there.
    Volume { pool: String, name: String },
}

/// What `--fix copy` would do for a drive: the ISO into the destination's
/// `pool` as `name`, replacing a volume of another size there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copy {
    pub origin: Origin,
    pub pool: String,
    pub name: String,
    pub size: Option<u64>,
    pub replace: bool,
    /// A floppy's image: no ISO 9660 signature to check (`upload --force`).
    pub force: bool,
}

/// One drive's media, in the views that hold it, against one destination.
#[derive(Debug, Clone, Serialize)]
pub struct DriveCheck {
    pub target: String,
    /// `cdrom` or `floppy`.
    pub device: &'static str,
    /// The media's label (`pool/volume`, a path, a URL); `None`: empty.
    pub source: Option<String>,
    pub live: bool,
    pub config: bool,
    /// `None`: as it must be (or empty).
    pub reason: Option<Reason>,
    /// Whether it stops the migration.
    pub blocks: bool,
    /// What was found, in words.
    pub detail: Option<String>,
    /// The ways out, as commands to paste: eject, copy, optional.
    pub fix: Vec<String>,
    #[serde(skip)]
    pub copy: Option<Copy>,
}

/// One VM against one destination.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub domain: String,
    pub destination: String,
    pub verdict: Verdict,
    pub drives: Vec<DriveCheck>,
}

/// The two hosts of a check, as the admin's commands connect to them
/// (`None`: virsh's default), and as shown.
#[derive(Debug, Clone)]
pub struct Route<'a> {
    pub source_connect: Option<&'a str>,
    pub destination_connect: Option<&'a str>,
    pub destination: &'a str,
}

impl Route<'_> {
    /// This tool's command line on `connect`, quoted for a shell.
    fn tool(&self, connect: Option<&str>, words: &[&str]) -> String {
        line("dismount_iso_qemu", connect, words)
    }
}

/// `words` then the domain's name, after a `--` where it starts with a
/// dash (which a parser would take for an option).
fn naming<'a>(words: &[&'a str], domain: &'a str) -> Vec<&'a str> {
    let mut all = words.to_vec();
    if domain.starts_with('-') {
        all.push("--");
    }
    all.push(domain);
    all
}

/// An option of this tool's and its value, as its parser reads them back:
/// one word `--flag=VALUE` where the value starts with a dash (two words
/// would read as an option missing its value, then an unknown one).
fn option(flag: &str, value: &str) -> Vec<String> {
    if value.starts_with('-') {
        vec![format!("{flag}={value}")]
    } else {
        vec![flag.to_owned(), value.to_owned()]
    }
}

fn line(program: &str, connect: Option<&str>, words: &[&str]) -> String {
    Invocation {
        program: program.to_owned(),
        connect: connect.map(str::to_owned),
        commands: vec![words.iter().map(|word| (*word).to_owned()).collect()],
    }
    .command_line()
}

/// What one medium is at the destination: fine, or why not, with where a
/// copy would go and which pool would make a path checkable.
struct Finding {
    reason: Reason,
    detail: String,
    /// The destination's pool a copy goes into (active or not).
    pool: Option<String>,
    /// The volume's name there.
    name: Option<String>,
    /// A pool to define first: its name and directory.
    define: Option<(String, String)>,
}

/// Whether `media` (of `size` bytes on the source, where known) is at the
/// destination as the drive needs it; `None` when it is.
fn find(media: &Media, size: Option<u64>, source: &Storage, dest: &Storage) -> Option<Finding> {
    let finding = |reason, detail: String| Finding {
        reason,
        detail,
        pool: None,
        name: None,
        define: None,
    };
    let sized = |found: Option<u64>, what: String| match (size, found) {
        (Some(want), Some(have)) if want != have => Some(finding(
            Reason::DifferentSize,
            format!("{what} is {have} bytes there, {want} here"),
        )),
        _ => None,
    };
    match media {
        Media::Network { .. } => Some(finding(
            Reason::Network,
            "network media: not checked (the destination must reach it itself)".to_owned(),
        )),
        Media::Volume { pool, volume } => {
            let Some(there) = dest.pool(pool) else {
                let dir = source.pool(pool).and_then(|p| p.path.clone());
                return Some(Finding {
                    define: dir.map(|dir| (pool.clone(), dir)),
                    pool: Some(pool.clone()),
                    name: Some(volume.clone()),
                    ..finding(Reason::NoPool, format!("no pool '{pool}' there"))
                });
            };
            let into = |reason, detail| Finding {
                pool: Some(pool.clone()),
                name: Some(volume.clone()),
                ..finding(reason, detail)
            };
            if !there.active {
                return Some(into(
                    Reason::PoolInactive,
                    format!("pool '{pool}' is not active there"),
                ));
            }
            match dest.volume(pool, volume) {
                None => Some(into(
                    Reason::Missing,
                    format!("no volume '{volume}' in pool '{pool}' there"),
                )),
                Some(found) => sized(found.capacity, format!("volume '{volume}'"))
                    .map(|f| keep_a_disk_image(found, Some(pool.clone()), Some(volume.clone()), f)),
            }
        }
        // A host device (`/dev/sr0`) is no file of a pool: only a local
        // destination can look at it.
        Media::Block(path) if dest.files == Files::Local => std::fs::metadata(path)
            .is_err()
            .then(|| finding(Reason::Missing, "no such device there".to_owned())),
        Media::Block(_) => Some(finding(
            Reason::NotCheckable,
            "a host device: libvirt cannot look at it over the connection".to_owned(),
        )),
        Media::File(path) => {
            let holder = dest.pool_holding(path);
            let name = Path::new(path)
                .file_name()
                .map(|name| name.to_string_lossy().into_owned());
            let into = |reason, detail| Finding {
                pool: holder.map(|pool| pool.name.clone()),
                name: name.clone(),
                ..finding(reason, detail)
            };
            if let Some(volume) = dest.volume_at(path) {
                return sized(volume.capacity, "the file".to_owned()).map(|f| {
                    keep_a_disk_image(
                        volume,
                        Some(volume.pool.clone()),
                        Some(volume.name.clone()),
                        f,
                    )
                });
            }
            if dest.files == Files::Local {
                return match std::fs::metadata(path) {
                    Err(_) => Some(into(Reason::Missing, "no such file there".to_owned())),
                    Ok(file) if file.is_file() => sized(Some(file.len()), "the file".to_owned())
                        .map(|f| into(f.reason, f.detail)),
                    Ok(_) => None,
                };
            }
            match holder {
                Some(pool) if !pool.active => Some(into(
                    Reason::PoolInactive,
                    format!(
                        "pool '{}', whose directory holds it, is not active there",
                        pool.name
                    ),
                )),
                Some(pool) => Some(into(
                    Reason::Missing,
                    format!("no volume at that path in pool '{}' there", pool.name),
                )),
                None => {
                    let dir = Path::new(path).parent().map(|d| d.display().to_string());
                    let pool = source
                        .pool_holding(path)
                        .map(|pool| pool.name.clone())
                        .or_else(|| {
                            Path::new(path)
                                .parent()
                                .and_then(Path::file_name)
                                .map(|dir| dir.to_string_lossy().into_owned())
                        })
                        .unwrap_or_else(|| "isos".to_owned());
                    let pool = dest.unused_pool_name(pool);
                    Some(Finding {
                        define: dir.map(|dir| (pool, dir)),
                        ..finding(
                            Reason::NotCheckable,
                            "outside every pool there: libvirt cannot look at the file".to_owned(),
                        )
                    })
                }
            }
        }
    }
}

/// Another size there, into `pool` as `name`: unless the volume there is
/// a disk image (qcow2, vmdk, …: libvirt says `iso` for an ISO and `raw`
/// for what it cannot tell), which no way out replaces: it is no ISO
/// this tool put there.
fn keep_a_disk_image(
    there: &Volume,
    pool: Option<String>,
    name: Option<String>,
    finding: Finding,
) -> Finding {
    match there.format.as_deref() {
        Some(format) if format != "iso" && format != "raw" => Finding {
            detail: format!(
                "{}; it is a {format} image there, not an ISO: nothing here replaces it",
                finding.detail
            ),
            ..finding
        },
        _ => Finding {
            pool,
            name,
            ..finding
        },
    }
}

/// Checks every removable drive of `domain` (each medium it holds, live
/// and in the config) against the destination.
pub fn check(domain: &DomainMedia, source: &Storage, dest: &Storage, route: &Route) -> Check {
    let mut drives = Vec::new();
    for target in domain.targets() {
        let views = domain.views(target);
        let kind = views.current().kind;
        let device = kind.as_str();
        let held: Vec<&Media> = views.media().fold(Vec::new(), |mut held, media| {
            if !held.contains(&media) {
                held.push(media);
            }
            held
        });
        if held.is_empty() {
            drives.push(DriveCheck {
                target: target.to_owned(),
                device,
                source: None,
                live: views.live.is_some(),
                config: views.config.is_some(),
                reason: None,
                blocks: false,
                detail: None,
                fix: Vec::new(),
                copy: None,
            });
            continue;
        }
        for media in held {
            let holds = |drive: Option<&crate::virsh::Drive>| {
                drive.is_some_and(|d| d.media.as_ref() == Some(media))
            };
            let (live, config) = (holds(views.live), holds(views.config));
            // The policy of the view that holds it (the live one first:
            // that is the XML a live migration sends).
            let policy = [views.live, views.config]
                .into_iter()
                .flatten()
                .filter(|drive| drive.media.as_ref() == Some(media))
                .find_map(|drive| drive.startup_policy.as_deref());
            let optional = matches!(policy, Some("optional" | "requisite"));
            let size = source.size_of(media);
            let found = find(media, size, source, dest);
            let mut drive = DriveCheck {
                target: target.to_owned(),
                device,
                source: Some(media.label()),
                live,
                config,
                reason: found.as_ref().map(|f| f.reason),
                blocks: false,
                detail: None,
                fix: Vec::new(),
                copy: None,
            };
            if let Some(found) = found {
                drive.blocks = found.reason.blocks() && !optional;
                drive.detail = Some(if found.reason.blocks() && optional {
                    format!(
                        "{}; startupPolicy='{}': libvirt drops it, the drive will be empty there",
                        found.detail,
                        policy.unwrap_or_default()
                    )
                } else {
                    found.detail.clone()
                });
                drive.copy = copy_of(media, size, source, &found).map(|copy| Copy {
                    force: kind == crate::virsh::DriveKind::Floppy,
                    ..copy
                });
                drive.fix = ways_out(domain, target, &drive, &found, route);
            }
            drives.push(drive);
        }
    }
    let verdict = drives
        .iter()
        .map(|drive| match (drive.blocks, drive.reason) {
            (true, _) => Verdict::Blocked,
            (false, Some(_)) => Verdict::Warning,
            (false, None) => Verdict::Ok,
        })
        .max()
        .unwrap_or(Verdict::Ok);
    Check {
        domain: domain.name.clone(),
        destination: route.destination.to_owned(),
        verdict,
        drives,
    }
}

/// Where a copy would come from and go: only for an ISO that is missing or
/// of another size in a pool the destination has, and that the source
/// has (a file here, or a volume of its pools).
fn copy_of(media: &Media, size: Option<u64>, source: &Storage, found: &Finding) -> Option<Copy> {
    if !matches!(
        found.reason,
        Reason::Missing | Reason::DifferentSize | Reason::PoolInactive | Reason::NoPool
    ) {
        return None;
    }
    let origin = match media {
        Media::Volume { pool, volume } => {
            source.volume(pool, volume)?;
            Origin::Volume {
                pool: pool.clone(),
                name: volume.clone(),
            }
        }
        Media::File(path) => match source.volume_at(path) {
            _ if source.files == Files::Local && local_length(Files::Local, path).is_some() => {
                Origin::File(path.clone())
            }
            Some(volume) => Origin::Volume {
                pool: volume.pool.clone(),
                name: volume.name.clone(),
            },
            None => return None,
        },
        Media::Block(_) | Media::Network { .. } => return None,
    };
    Some(Copy {
        origin,
        pool: found.pool.clone()?,
        name: found.name.clone()?,
        size,
        replace: found.reason == Reason::DifferentSize,
        force: false,
    })
}

/// The commands that clear `drive`: for one that blocks, eject it on the
/// source, put the ISO where it is missing (the pool made or started
/// first), or make the drive optional; for a path that cannot be checked,
/// the pool that would make it checkable.
fn ways_out(
    domain: &DomainMedia,
    target: &str,
    drive: &DriveCheck,
    found: &Finding,
    route: &Route,
) -> Vec<String> {
    let mut fix = Vec::new();
    let virsh_dest = |words: &[&str]| line("virsh", route.destination_connect, words);
    if let Some((pool, dir)) = &found.define {
        fix.push(virsh_dest(&[
            "pool-define-as",
            pool,
            "dir",
            "--target",
            dir,
        ]));
        fix.push(virsh_dest(&["pool-start", pool]));
    }
    if !drive.blocks {
        return fix;
    }
    fix.insert(
        0,
        route.tool(
            route.source_connect,
            &naming(&["eject", "--target", target], &domain.name),
        ),
    );
    if found.reason == Reason::PoolInactive {
        if let Some(pool) = &found.pool {
            fix.push(virsh_dest(&["pool-start", pool]));
        }
    }
    if let Some(copy) = &drive.copy {
        // A volume of the source comes here first (`vol-download` into a
        // file in the working directory, `./` so that no name reads as an
        // option), then goes up as a file of this machine.
        let here = format!("./{}", copy.name);
        let file = match &copy.origin {
            Origin::File(path) => path.as_str(),
            Origin::Volume { pool, name } => {
                fix.push(line(
                    "virsh",
                    route.source_connect,
                    &["vol-download", "--pool", pool, "--vol", name, &here],
                ));
                here.as_str()
            }
        };
        let (pool, name) = (option("--pool", &copy.pool), option("--name", &copy.name));
        let mut words = vec!["upload", file];
        words.extend(pool.iter().chain(&name).map(String::as_str));
        if copy.replace {
            words.push("--replace");
        }
        if copy.force {
            words.push("--force");
        }
        fix.push(route.tool(route.destination_connect, &words));
    }
    // startupPolicy is read from the XML the migration sends: a running
    // VM's comes from its live XML, which virt-xml cannot change (the
    // config's change counts from its next cold boot).
    let edit = format!("target={target}");
    fix.push(line(
        "virt-xml",
        route.source_connect,
        &naming(
            &["--edit", &edit, "--disk", "startup_policy=optional"],
            &domain.name,
        ),
    ));
    fix
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virsh::DomainState;
    use crate::virsh::domxml::parse_domain_xml;

    /// A running domain whose live and config XML hold `disks`.
    fn domain(name: &str, disks: &str) -> DomainMedia {
        let xml = format!("<domain><name>x</name><devices>{disks}</devices></domain>");
        let parsed = parse_domain_xml(&xml).unwrap();
        DomainMedia {
            name: name.into(),
            state: DomainState::Running,
            live: Some(parsed.clone()),
            config: Some(parsed),
        }
    }

    fn cdrom(kind: &str, source: &str) -> String {
        format!(
            "<disk type='{kind}' device='cdrom'><source {source}/>\
             <target dev='hdc' bus='ide'/><readonly/></disk>"
        )
    }

    fn pool(name: &str, active: bool, path: &str) -> Pool {
        Pool {
            name: name.into(),
            active,
            pool_type: "dir".into(),
            path: Some(path.into()),
            capacity: None,
            allocation: None,
            available: None,
        }
    }

    fn volume(pool: &str, name: &str, size: u64) -> Volume {
        Volume {
            pool: pool.into(),
            name: name.into(),
            path: format!("/srv/{pool}/{name}"),
            capacity: Some(size),
            format: Some("iso".into()),
        }
    }

    /// The source: pools `isos` and `media` with a.iso (1000), b.iso
    /// (2000), c.iso (3000), e.iso (5000).
    fn source() -> Storage {
        Storage {
            pools: vec![
                pool("isos", true, "/srv/isos"),
                pool("media", true, "/srv/media"),
            ],
            volumes: vec![
                volume("isos", "a.iso", 1000),
                volume("isos", "b.iso", 2000),
                volume("isos", "c.iso", 3000),
                volume("media", "e.iso", 5000),
            ],
            files: Files::Remote,
        }
    }

    /// A remote destination: `isos` with a.iso and b.iso of another size;
    /// `media` defined, not started; no `other`.
    fn destination() -> Storage {
        Storage {
            pools: vec![
                pool("isos", true, "/srv/isos"),
                pool("media", false, "/srv/media"),
            ],
            volumes: vec![volume("isos", "a.iso", 1000), volume("isos", "b.iso", 2500)],
            files: Files::Remote,
        }
    }

    const ROUTE: Route = Route {
        source_connect: Some("qemu+ssh://kvm1/system"),
        destination_connect: Some("qemu+ssh://kvm2/system"),
        destination: "qemu+ssh://kvm2/system",
    };

    fn checked(disks: &str) -> Check {
        check(&domain("web", disks), &source(), &destination(), &ROUTE)
    }

    /// The one drive's reason and whether it blocks, and the verdict.
    fn outcome(disks: &str) -> (Option<Reason>, bool, Verdict) {
        let check = checked(disks);
        assert_eq!(check.drives.len(), 1, "{check:?}");
        (
            check.drives[0].reason,
            check.drives[0].blocks,
            check.verdict,
        )
    }

    #[test]
    fn every_reason_and_its_verdict() {
        use Reason::*;
        let file = |path: &str| cdrom("file", &format!("file='{path}'"));
        let vol =
            |pool: &str, name: &str| cdrom("volume", &format!("pool='{pool}' volume='{name}'"));
        let cases = [
            (file("/srv/isos/a.iso"), (None, false, Verdict::Ok)),
            (vol("isos", "a.iso"), (None, false, Verdict::Ok)),
            (
                file("/srv/isos/b.iso"),
                (Some(DifferentSize), true, Verdict::Blocked),
            ),
            (
                vol("isos", "b.iso"),
                (Some(DifferentSize), true, Verdict::Blocked),
            ),
            (
                file("/srv/isos/c.iso"),
                (Some(Missing), true, Verdict::Blocked),
            ),
            (
                vol("isos", "c.iso"),
                (Some(Missing), true, Verdict::Blocked),
            ),
            (
                vol("other", "x.iso"),
                (Some(NoPool), true, Verdict::Blocked),
            ),
            (
                vol("media", "e.iso"),
                (Some(PoolInactive), true, Verdict::Blocked),
            ),
            (
                file("/srv/media/e.iso"),
                (Some(PoolInactive), true, Verdict::Blocked),
            ),
            (
                file("/opt/x.iso"),
                (Some(NotCheckable), false, Verdict::Warning),
            ),
            (
                "<disk type='network' device='cdrom'><source protocol='https' name='/x.iso'>\
                 <host name='mirror'/></source><target dev='hdc'/></disk>"
                    .to_owned(),
                (Some(Network), false, Verdict::Warning),
            ),
            (
                "<disk type='file' device='cdrom'><target dev='hdc'/></disk>".to_owned(),
                (None, false, Verdict::Ok),
            ),
        ];
        for (disks, expected) in cases {
            assert_eq!(outcome(&disks), expected, "{disks}");
        }
    }

    /// optional and requisite drop missing media at a migration: a
    /// warning, no way out needed; mandatory (and no policy) blocks.
    #[test]
    fn a_startup_policy_that_drops_media_does_not_block() {
        for (policy, blocks) in [
            ("optional", false),
            ("requisite", false),
            ("mandatory", true),
        ] {
            let disks = cdrom(
                "file",
                &format!("file='/srv/isos/c.iso' startupPolicy='{policy}'"),
            );
            let check = checked(&disks);
            let drive = &check.drives[0];
            assert_eq!(
                (drive.reason, drive.blocks),
                (Some(Reason::Missing), blocks)
            );
            assert_eq!(drive.fix.is_empty(), !blocks, "{drive:?}");
            if !blocks {
                assert_eq!(check.verdict, Verdict::Warning);
                assert!(
                    drive
                        .detail
                        .as_ref()
                        .unwrap()
                        .contains("will be empty there")
                );
            }
        }
    }

    /// The worst drive decides; a drive holding one ISO live and another
    /// in its config is checked for both, each with its views.
    #[test]
    fn each_medium_of_each_view_is_checked() {
        let mut web = domain("web", &cdrom("file", "file='/srv/isos/a.iso'"));
        let config = parse_domain_xml(&format!(
            "<domain><devices>{}</devices></domain>",
            cdrom("file", "file='/srv/isos/c.iso'")
        ))
        .unwrap();
        web.config = Some(config);
        let check = check(&web, &source(), &destination(), &ROUTE);
        let seen: Vec<(&str, bool, bool, Option<Reason>)> = check
            .drives
            .iter()
            .map(|d| (d.source.as_deref().unwrap(), d.live, d.config, d.reason))
            .collect();
        assert_eq!(
            seen,
            [
                ("/srv/isos/a.iso", true, false, None),
                ("/srv/isos/c.iso", false, true, Some(Reason::Missing)),
            ]
        );
        assert_eq!(check.verdict, Verdict::Blocked);
    }

    /// The ways out, exact: eject on the source, start the pool or define
    /// it, copy (a volume of the source: downloaded here, then uploaded),
    /// optional; a name with a
    /// leading dash goes after `--`, quoted for a shell.
    #[test]
    fn the_ways_out_are_exact_commands() {
        let check = check(
            &domain("-web 'x'", &cdrom("volume", "pool='media' volume='e.iso'")),
            &source(),
            &destination(),
            &ROUTE,
        );
        assert_eq!(
            check.drives[0].fix,
            [
                "dismount_iso_qemu -c qemu+ssh://kvm1/system eject --target hdc -- '-web '\\''x'\\'''",
                "virsh -c qemu+ssh://kvm2/system pool-start media",
                "virsh -c qemu+ssh://kvm1/system vol-download --pool media --vol e.iso ./e.iso",
                "dismount_iso_qemu -c qemu+ssh://kvm2/system upload ./e.iso --pool media --name e.iso",
                "virt-xml -c qemu+ssh://kvm1/system --edit target=hdc --disk \
                 startup_policy=optional -- '-web '\\''x'\\'''",
            ]
        );
        let no_pool = checked(&cdrom("volume", "pool='other' volume='x.iso'"));
        // The source has no pool `other` either: nothing to copy, no
        // directory to define it over.
        assert_eq!(no_pool.drives[0].fix.len(), 2, "{no_pool:?}");
        let not_checkable = checked(&cdrom("file", "file='/opt/isos/x.iso'"));
        assert_eq!(
            not_checkable.drives[0].fix,
            [
                "virsh -c qemu+ssh://kvm2/system pool-define-as isos-2 dir --target /opt/isos",
                "virsh -c qemu+ssh://kvm2/system pool-start isos-2",
            ]
        );
    }

    /// A path outside every pool there, whose own pool's name the
    /// destination has for another directory: the pool to define gets a
    /// name none there has (before: `pool-define-as isos`, which fails
    /// with `pool 'isos' already exists`).
    #[test]
    fn a_pool_to_define_takes_a_name_free_there() {
        let mut source = source();
        source.pools.push(pool("isos-2", true, "/srv/isos-2"));
        let mut dest = destination();
        dest.pools.push(pool("isos-2", true, "/var/isos-2"));
        let check = check(
            &domain("web", &cdrom("file", "file='/opt/isos/x.iso'")),
            &source,
            &dest,
            &ROUTE,
        );
        assert_eq!(
            check.drives[0].fix,
            [
                "virsh -c qemu+ssh://kvm2/system pool-define-as isos-3 dir --target /opt/isos",
                "virsh -c qemu+ssh://kvm2/system pool-start isos-3",
            ]
        );
    }

    /// A local source's file is uploaded from here, into the pool whose
    /// directory holds its path there, replacing one of another size.
    #[test]
    fn a_local_file_is_copied_with_upload() {
        let dir = std::env::temp_dir().join(format!("migrate-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("b.iso");
        std::fs::write(&file, vec![0u8; 2000]).unwrap();
        let path = file.display().to_string();
        let local = Storage {
            pools: Vec::new(),
            volumes: Vec::new(),
            files: Files::Local,
        };
        let mut there = destination();
        there
            .pools
            .push(pool("here", true, &dir.display().to_string()));
        there.volumes.push(Volume {
            path: path.clone(),
            ..volume("here", "b.iso", 2500)
        });
        let web = domain("web", &cdrom("file", &format!("file='{path}'")));
        let check = check(&web, &local, &there, &ROUTE);
        let drive = &check.drives[0];
        assert_eq!(drive.reason, Some(Reason::DifferentSize));
        assert_eq!(
            drive.copy,
            Some(Copy {
                origin: Origin::File(path.clone()),
                pool: "here".into(),
                name: "b.iso".into(),
                size: Some(2000),
                replace: true,
                force: false,
            })
        );
        assert!(
            drive.fix.contains(&format!(
                "dismount_iso_qemu -c qemu+ssh://kvm2/system upload {path} --pool here --name \
                 b.iso --replace"
            )),
            "{:?}",
            drive.fix
        );
        // A local destination looks at the file itself.
        let local_there = local.clone();
        assert_eq!(check_reason(&web, &local, &local_there), None);
        std::fs::remove_file(&file).unwrap();
        assert_eq!(
            check_reason(&web, &local, &local_there),
            Some(Reason::Missing)
        );
        std::fs::remove_dir(&dir).unwrap();
    }

    /// A host device (`/dev/sr0`) is no file a pool could hold: on a
    /// remote destination it cannot be checked, and no pool over `/dev` is
    /// offered to make it checkable.
    #[test]
    fn a_host_device_gets_no_pool_over_dev() {
        let check = checked(&cdrom("block", "dev='/dev/sr0'"));
        let drive = &check.drives[0];
        assert_eq!(
            (drive.reason, drive.blocks),
            (Some(Reason::NotCheckable), false)
        );
        assert_eq!(drive.fix, Vec::<String>::new());
        assert!(
            drive.detail.as_ref().unwrap().contains("host device"),
            "{drive:?}"
        );
    }

    fn check_reason(web: &DomainMedia, source: &Storage, dest: &Storage) -> Option<Reason> {
        check(web, source, dest, &ROUTE).drives[0].reason
    }
}
