//! An ISO named on the command line, matched against the media labels
//! drives report.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// An ISO as named on the command line (`--iso`), matched against drives'
/// media labels: as given (a path, or a pool volume's `pool/volume` as the
/// table shows it), and on this host also by its absolute path with `..`
/// resolved and by the file it ends at, so `a/../b.iso`, a symlink, a bind
/// mount or a hard link find the drives that hold `b.iso`; and by the other name libvirt knows it by
/// (a pool volume's path for `pool/volume`, and the other way round).
#[derive(Debug, Clone, Default)]
pub struct IsoName {
    given: String,
    alias: Option<String>,
    absolute: Option<PathBuf>,
    file: Option<PathBuf>,
    /// The file's device and inode: the same file under another path
    /// (a bind mount, a hard link) is the ISO too.
    inode: Option<(u64, u64)>,
}

/// The device and inode of the file at `path`, if it can be looked at.
fn inode(path: impl AsRef<Path>) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path)
        .ok()
        .map(|file| (file.dev(), file.ino()))
}

impl IsoName {
    /// Matches the exact label only (a remote host: its paths are not ours
    /// to resolve).
    pub fn exact(label: &str) -> Self {
        IsoName {
            given: label.to_owned(),
            ..IsoName::default()
        }
    }

    pub(super) fn local(given: &str) -> Self {
        IsoName {
            given: given.to_owned(),
            alias: None,
            absolute: std::path::absolute(given)
                .ok()
                .map(|path| lexically_normal(&path)),
            file: std::fs::canonicalize(given).ok(),
            inode: inode(given),
        }
    }

    /// The same ISO, also known as `alias` (`pool/volume` or a path).
    pub(super) fn also(mut self, alias: Option<String>) -> Self {
        self.alias = alias;
        self
    }

    pub fn matches(&self, label: &str) -> bool {
        label == self.given
            || self.alias.as_deref() == Some(label)
            || self
                .absolute
                .as_deref()
                .is_some_and(|absolute| lexically_normal(Path::new(label)) == absolute)
            || self
                .file
                .as_ref()
                .is_some_and(|file| std::fs::canonicalize(label).is_ok_and(|held| &held == file))
            || self.inode.is_some() && self.inode == inode(label)
    }
}

/// An absolute `path` with `.` and `..` resolved as the kernel resolves
/// them: through the directory it really is in (symlinks followed), with
/// the file's own name kept, so a symlinked ISO stays the link. By names
/// alone where the directory does not exist.
pub(super) fn physical(path: &Path) -> PathBuf {
    let normal = lexically_normal(path);
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => std::fs::canonicalize(parent)
            .map(|directory| directory.join(name))
            .unwrap_or(normal),
        _ => normal,
    }
}

/// `path` with `.` and `..` resolved by their names alone.
fn lexically_normal(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut normal = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                normal.pop();
            }
            other => normal.push(other),
        }
    }
    normal
}

/// Where an ISO 9660 image carries its signature `CD001`: in its first
/// volume descriptor (sector 16 of 2048 bytes), after the type byte.
const SIGNATURE_AT: u64 = 16 * 2048 + 1;

/// Whether the file at `path` carries the ISO 9660 signature; a file too
/// short to hold it does not, nor anything that is no regular file (a
/// FIFO a drive names, or that took a checked file's place).
pub fn has_iso9660_signature(path: &Path) -> std::io::Result<bool> {
    let mut file = open_never_blocking(path)?;
    if !file.metadata()?.is_file() {
        return Ok(false);
    }
    file.seek(SeekFrom::Start(SIGNATURE_AT))?;
    let mut signature = [0u8; 5];
    match file.read_exact(&mut signature) {
        Ok(()) => Ok(&signature == b"CD001"),
        Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
        Err(error) => Err(error),
    }
}

/// `path` opened for reading without ever waiting in `open`: a FIFO
/// (which `open` would hold until someone writes to it, forever) or a
/// device opens at once, and is no terminal of ours. Reads of a regular
/// file are as usual; the caller looks at what it opened.
pub fn open_never_blocking(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
}
