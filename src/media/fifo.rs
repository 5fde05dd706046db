//! The FIFO through which virsh reads an upload's bytes (and writes a
//! copy's): made in a private directory of ours, opened without ever
//! waiting for a reader that may never come, and fed from the file on a
//! thread of its own, the file checked unchanged from its first byte to
//! its last while virsh still waits for the end.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use rustix::fs::{self, Mode, OFlags};
use rustix::io::Errno;
use sha2::{Digest, Sha256};

use super::iso::open_never_blocking;
use crate::mutex::lock;
use crate::utils::sanitize;
use crate::virsh::VirshError;
use crate::virsh::groups::caught_signal;
use crate::virsh::runner::Watch;

/// Which file, and in which state: a file swapped (another inode),
/// rewritten in place (its modification time; its change time, which a
/// `touch` that sets the modification time back moves too) or grown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FileStamp {
    pub(super) dev: u64,
    pub(super) ino: u64,
    pub(super) size: u64,
    pub(super) mtime: (i64, i64),
    pub(super) ctime: (i64, i64),
}

impl FileStamp {
    pub(super) fn of(metadata: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        FileStamp {
            dev: metadata.dev(),
            ino: metadata.ino(),
            size: metadata.len(),
            mtime: (metadata.mtime(), metadata.mtime_nsec()),
            ctime: (metadata.ctime(), metadata.ctime_nsec()),
        }
    }

    /// The same file (device and inode), whatever its state.
    pub(super) fn is_the_file(&self, other: &FileStamp) -> bool {
        (self.dev, self.ino) == (other.dev, other.ino)
    }

    /// How `now` differs from this stamp, in words; `None` where it
    /// does not.
    pub(super) fn change(&self, now: &FileStamp) -> Option<String> {
        if !self.is_the_file(now) {
            Some("it is another file now".to_owned())
        } else if self.size != now.size {
            Some(format!(
                "its size went from {} to {} bytes",
                self.size, now.size
            ))
        } else if self.mtime != now.mtime {
            Some("it was modified (its modification time moved)".to_owned())
        } else if self.ctime != now.ctime {
            Some("it was changed (its change time moved)".to_owned())
        } else {
            None
        }
    }
}

/// How much is read and sent at once.
pub(super) const CHUNK: usize = 1024 * 1024;

/// How long a transfer may move no byte before it is taken for hung (the
/// larger of this and `--timeout`): libvirt's stream pauses while the
/// host writes out its cache, but not for a minute.
pub(super) const STALL: Duration = Duration::from_secs(60);

/// The file to send, as it was checked: the bytes sent must come from
/// it unchanged, and hash to `sha256` where given.
#[derive(Debug, Clone)]
pub(super) struct CheckedFile {
    pub(super) file: String,
    pub(super) size: u64,
    pub(super) stamp: FileStamp,
    /// Lower case.
    pub(super) sha256: Option<String>,
}

/// The SHA-256 of all `reader` gives, as lower-case hex.
pub(super) fn sha256_of(reader: &mut impl Read) -> io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; CHUNK];
    loop {
        let n = reader.read(&mut buffer)?;
        if n == 0 {
            return Ok(hex(&hasher.finalize()));
        }
        hasher.update(&buffer[..n]);
    }
}

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// What sending a file through a FIFO came to.
pub(super) struct Sent {
    /// The call that read the FIFO.
    pub(super) transfer: Result<(), VirshError>,
    /// The feed: the SHA-256 of the bytes sent (with `verify` or
    /// `--sha256`), or why it ended.
    pub(super) fed: io::Result<Option<String>>,
    /// The file's fault, or a signal: the reason, whatever else failed.
    pub(super) fault: Option<String>,
}

/// Runs `transfer` (the call that reads `fifo`) while a thread of its own
/// writes the file into the FIFO; the transfer is stopped at the file's
/// first fault or a signal, and killed after `stall` without a byte.
pub(super) fn feed_through(
    fifo: &Path,
    iso: &CheckedFile,
    verify: bool,
    progress: &(dyn Fn(u64) + Sync),
    stall: Duration,
    transfer: impl FnOnce(&Watch) -> Result<(), VirshError>,
) -> Sent {
    let feed = Feed::default();
    let (transfer, fed) = std::thread::scope(|scope| {
        let feeder = scope.spawn(|| feed.run(iso, fifo, verify, progress));
        let moved = || feed.sent.load(Ordering::SeqCst);
        let stop = || caught_signal().is_some() || lock(&feed.fault).is_some();
        let transferred = transfer(&Watch {
            stall,
            moved: &moved,
            stop: &stop,
        });
        feed.over.store(true, Ordering::SeqCst);
        let fed = feeder
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (transferred, fed)
    });
    // `feed` goes only now, after virsh: with it the FIFO that a failed
    // feed held open (see `Feed::held`).
    Sent {
        transfer,
        fed,
        fault: lock(&feed.fault).take(),
    }
}

/// The feeding of an upload's FIFO from the file, on a thread of its
/// own, watched by the transfer.
#[derive(Default)]
struct Feed {
    /// Bytes written so far.
    sent: AtomicU64,
    /// The file's fault (or a signal), told apart from a FIFO virsh
    /// closed: the transfer stops at once.
    fault: Mutex<Option<String>>,
    /// The transfer has ended: a FIFO virsh never opened is given up.
    over: AtomicBool,
    /// The FIFO after a fault, kept open until the feed is dropped, after
    /// the transfer: closed before virsh is killed, it would be an end of
    /// file that virsh takes for the whole file, completing a short volume.
    held: Mutex<Option<File>>,
}

/// How often the FIFO is tried until virsh opens it.
const FIFO_POLL: Duration = Duration::from_millis(10);

impl Feed {
    /// Writes the file into `fifo` once virsh opens it; the SHA-256 of
    /// the bytes written, with `verify` or `--sha256`. The file must be
    /// the one checked, unchanged from the first byte read to the last
    /// (its size, its modification and change times), and the bytes
    /// written must match `--sha256`: both are known before the FIFO
    /// closes, so a fault is found while virsh still waits for the end.
    /// After a fault it holds the FIFO open (`held`) and returns the error.
    fn run(
        &self,
        iso: &CheckedFile,
        fifo: &Path,
        verify: bool,
        progress: &(dyn Fn(u64) + Sync),
    ) -> io::Result<Option<String>> {
        let shown = sanitize(&iso.file);
        let fault = |what: String| {
            *lock(&self.fault) = Some(what.clone());
            io::Error::other(what)
        };
        // Never waiting in `open`: a FIFO put in the file's place would
        // hold this thread there for good, and the tool with it.
        let mut file = open_never_blocking(Path::new(&iso.file))
            .map_err(|error| fault(format!("cannot read '{shown}': {error}")))?;
        let changed = |file: &File| match file.metadata() {
            Ok(now) => iso.stamp.change(&FileStamp::of(&now)),
            Err(error) => Some(format!("it cannot be looked at ({error})")),
        };
        if let Some(change) = changed(&file) {
            return Err(fault(format!(
                "'{shown}' changed since it was checked: {change}; nothing was sent"
            )));
        }
        let Some(mut into) = open_fifo(fifo, &self.over)? else {
            return Err(io::Error::other("virsh never opened the file"));
        };
        // Hashing costs CPU time only `--verify` and `--sha256` need.
        let mut hasher = (verify || iso.sha256.is_some()).then(Sha256::new);
        let mut buffer = vec![0u8; CHUNK];
        let mut done = 0;
        let failed = |error: io::Error, into: File| {
            *lock(&self.held) = Some(into);
            error
        };
        while done < iso.size {
            if caught_signal().is_some() {
                return Err(failed(fault("interrupted".to_owned()), into));
            }
            let want = usize::try_from(iso.size - done).map_or(CHUNK, |left| left.min(CHUNK));
            let n = match file.read(&mut buffer[..want]) {
                Ok(0) => {
                    let error = fault(format!(
                        "'{shown}' shrank during the upload: {done} of {} bytes read",
                        iso.size
                    ));
                    return Err(failed(error, into));
                }
                Ok(n) => n,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => {
                    let error = fault(format!("cannot read '{shown}' at byte {done}: {error}"));
                    return Err(failed(error, into));
                }
            };
            if let Some(hasher) = hasher.as_mut() {
                hasher.update(&buffer[..n]);
            }
            into.write_all(&buffer[..n])?;
            done += n as u64;
            self.sent.store(done, Ordering::SeqCst);
            progress(done);
        }
        // Every byte is written, but the FIFO is still open: virsh has
        // not seen the end, and a fault now still stops it short.
        if let Some(change) = changed(&file) {
            let error = fault(format!(
                "'{shown}' changed during the upload: {change}; the bytes sent are not \
                 the file as checked"
            ));
            return Err(failed(error, into));
        }
        let sha256 = hasher.map(|hasher| hex(&hasher.finalize()));
        if let (Some(expected), Some(sent)) = (&iso.sha256, &sha256)
            && expected != sent
        {
            let error = fault(format!(
                "the bytes sent from '{shown}' have SHA-256 {sent}, not --sha256 {expected}"
            ));
            return Err(failed(error, into));
        }
        Ok(sha256)
    }
}

/// The FIFO opened for writing once virsh has opened it for reading
/// (never blocking in `open`, which would wait for a virsh that failed
/// first forever; never through a symbolic link); `None` once `over`
/// says the transfer is over, or after a signal.
pub(super) fn open_fifo(fifo: &Path, over: &AtomicBool) -> io::Result<Option<File>> {
    let flags = OFlags::WRONLY | OFlags::NONBLOCK | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    loop {
        match fs::open(fifo, flags, Mode::empty()) {
            Ok(into) => {
                // Blocking writes from here: virsh reads at the
                // connection's pace.
                let blocking = fs::fcntl_getfl(&into)? - OFlags::NONBLOCK;
                fs::fcntl_setfl(&into, blocking)?;
                return Ok(Some(File::from(into)));
            }
            Err(Errno::NXIO) => {
                if over.load(Ordering::SeqCst) || caught_signal().is_some() {
                    return Ok(None);
                }
                std::thread::sleep(FIFO_POLL);
            }
            Err(error) => return Err(error.into()),
        }
    }
}

/// A directory only we can read (0700, made anew under a name of its
/// own: nothing planted there beforehand is used), for an upload's FIFO,
/// a volume read back, a transient start's XML; removed with what it
/// holds when dropped.
pub struct PrivateDir(tempfile::TempDir);

impl PrivateDir {
    /// A new directory in the temporary one, named after `what` it is for.
    pub fn new(what: &str) -> Result<Self> {
        let prefix = format!("dismount-iso-qemu-{what}-{}-", std::process::id());
        tempfile::Builder::new()
            .prefix(&prefix)
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir()
            .map(PrivateDir)
            // tempfile's error names the path.
            .context("cannot create a private directory")
    }

    pub fn path(&self) -> &Path {
        self.0.path()
    }

    /// A FIFO `name` in the directory, only for us (0600).
    pub(super) fn make_fifo(&self, name: &str) -> Result<PathBuf> {
        let fifo = self.path().join(name);
        fs::mkfifoat(fs::CWD, &fifo, Mode::RUSR | Mode::WUSR)
            .with_context(|| format!("cannot create the FIFO {}", fifo.display()))?;
        Ok(fifo)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The file shrinks under the feed: the call reading the FIFO is
    /// killed before the FIFO closes, so it never sees an end of file
    /// (virsh would take the part for the whole file and finish the
    /// volume). The reader stands in for virsh: it records an end of file.
    use crate::virsh::Runner as _;

    /// `file` as `upload::check_file` finds it, without `--sha256`.
    fn as_checked(file: &Path) -> CheckedFile {
        let metadata = std::fs::metadata(file).unwrap();
        CheckedFile {
            file: file.to_str().unwrap().to_owned(),
            size: metadata.len(),
            stamp: FileStamp::of(&metadata),
            sha256: None,
        }
    }

    /// `feed_through` into `reader`, a shell script standing in for virsh.
    fn read_by(fifo: &Path, iso: &CheckedFile, verify: bool, reader: String) -> Sent {
        let reader = crate::virsh::Invocation {
            program: "/bin/sh".into(),
            connect: None,
            commands: vec![vec!["-c".into(), reader]],
        };
        feed_through(fifo, iso, verify, &|_| {}, STALL, |watch| {
            crate::virsh::process::ProcessRunner::default()
                .transfer(&reader, watch)
                .map(drop)
        })
    }

    /// `bytes` written to `name` in `dir`, and that file as checked.
    fn written(dir: &PrivateDir, name: &str, bytes: &[u8]) -> (PathBuf, CheckedFile) {
        let file = dir.path().join(name);
        std::fs::write(&file, bytes).unwrap();
        let checked = as_checked(&file);
        (file, checked)
    }

    #[test]
    fn a_failed_feed_kills_the_reader_before_it_sees_the_end() {
        let dir = PrivateDir::new("upload").unwrap();
        let fifo = dir.make_fifo("upload").unwrap();
        let (_, checked) = written(&dir, "short.iso", &vec![7u8; 3 * CHUNK]);
        let ended = dir.path().join("ended");
        let iso = CheckedFile {
            // As measured before the upload; the file has lost a MiB since.
            size: 4 * CHUNK as u64,
            ..checked
        };
        let sent = read_by(
            &fifo,
            &iso,
            false,
            format!(
                "cat {} >/dev/null && echo end-of-file > {}",
                fifo.display(),
                ended.display()
            ),
        );
        assert!(
            sent.fault
                .as_deref()
                .is_some_and(|fault| fault
                    .contains("shrank during the upload: 3145728 of 4194304 bytes read")),
            "{:?}",
            sent.fault
        );
        assert!(
            matches!(sent.transfer, Err(VirshError::Stopped { .. })),
            "{:?}",
            sent.transfer
        );
        assert!(!ended.exists(), "the reader saw an end of file");
    }

    /// `feed_through` into a reader standing in for virsh: `script` (sh)
    /// with `$FIFO` and `$FILE` set, which writes `ended` once it has read
    /// to the end of the FIFO (as virsh would then finish the volume).
    fn feed_into(dir: &PrivateDir, iso: &CheckedFile, script: &str) -> (Sent, bool) {
        let fifo = dir.make_fifo("upload").unwrap();
        let ended = dir.path().join("ended");
        let sent = read_by(
            &fifo,
            iso,
            false,
            format!(
                "export FIFO='{}' FILE='{}'; {script} && echo end-of-file > '{}'",
                fifo.display(),
                iso.file,
                ended.display()
            ),
        );
        let seen = ended.exists();
        // Ready for the next feed in `dir`.
        let _ = std::fs::remove_file(&fifo);
        let _ = std::fs::remove_file(&ended);
        (sent, seen)
    }

    #[track_caller]
    fn assert_stopped_short(sent: &Sent, ended: bool, fault: &str) {
        assert!(
            sent.fault.as_deref().is_some_and(|f| f.contains(fault)),
            "{fault:?} in {:?}",
            sent.fault
        );
        assert!(
            matches!(sent.transfer, Err(VirshError::Stopped { .. })),
            "{:?}",
            sent.transfer
        );
        assert!(!ended, "the reader saw an end of file");
    }

    /// A byte of the file rewritten in place while it is sent (the
    /// reader rewrites it once the first MiB has come): the bytes sent
    /// are a mix, and the reader is stopped before the end. Before, the
    /// feed sent what it read and virsh finished the volume.
    #[test]
    fn a_file_rewritten_during_the_feed_never_reaches_its_end() {
        let dir = PrivateDir::new("upload").unwrap();
        let (file, iso) = written(&dir, "moving.iso", &vec![7u8; 3 * CHUNK]);
        let (sent, ended) = feed_into(
            &dir,
            &iso,
            "{ head -c 1048576 >/dev/null; printf x | dd of=\"$FILE\" bs=1 seek=5 \
             conv=notrunc 2>/dev/null; cat >/dev/null; } < \"$FIFO\"",
        );
        assert_stopped_short(&sent, ended, "changed during the upload: it was modified");
        // Grown, as a download still in progress does.
        let iso = as_checked(&file);
        let (sent, ended) = feed_into(
            &dir,
            &iso,
            "{ head -c 1048576 >/dev/null; printf more >> \"$FILE\"; cat >/dev/null; } \
             < \"$FIFO\"",
        );
        assert_stopped_short(
            &sent,
            ended,
            "changed during the upload: its size went from 3145728 to 3145732 bytes",
        );
    }

    /// The file replaced (renamed over) between the check and the feed:
    /// not a byte is sent.
    #[test]
    fn a_file_swapped_since_the_check_sends_nothing() {
        let dir = PrivateDir::new("upload").unwrap();
        let (file, iso) = written(&dir, "swapped.iso", &vec![7u8; CHUNK]);
        let other = dir.path().join("other.iso");
        std::fs::write(&other, vec![8u8; CHUNK]).unwrap();
        std::fs::rename(&other, &file).unwrap();
        let (sent, ended) = feed_into(&dir, &iso, "cat \"$FIFO\" >/dev/null");
        assert_stopped_short(
            &sent,
            ended,
            "changed since it was checked: it is another file now; nothing was sent",
        );
    }

    /// The file replaced since the check by a FIFO nobody writes to, a
    /// symbolic link to `/dev/zero`, or a directory: nothing is sent and
    /// the feed ends. Before, `open` waited on the FIFO for good: the
    /// transfer was killed after its stall, and the tool hung joining the
    /// feed (Ctrl-C too).
    #[test]
    fn a_file_swapped_for_a_fifo_or_a_device_sends_nothing_and_never_hangs() {
        let dir = PrivateDir::new("upload").unwrap();
        let file = dir.path().join("swapped.iso");
        let swaps: [(&str, &dyn Fn()); 3] = [
            ("a FIFO", &|| drop(dir.make_fifo("swapped.iso").unwrap())),
            ("/dev/zero", &|| {
                std::os::unix::fs::symlink("/dev/zero", &file).unwrap()
            }),
            ("a directory", &|| std::fs::create_dir(&file).unwrap()),
        ];
        for (what, swap) in swaps {
            std::fs::write(&file, vec![7u8; CHUNK]).unwrap();
            let iso = as_checked(&file);
            std::fs::remove_file(&file).unwrap();
            swap();
            let (sent, ended) = feed_into(&dir, &iso, "cat \"$FIFO\" >/dev/null");
            // Another inode, or the same number reused (and then its size).
            assert_stopped_short(&sent, ended, "changed since it was checked: ");
            assert!(sent.fault.unwrap().ends_with("; nothing was sent"));
            if std::fs::symlink_metadata(&file).unwrap().is_dir() {
                std::fs::remove_dir(&file).unwrap();
            } else {
                std::fs::remove_file(&file).unwrap();
            }
            eprintln!("{what}: refused");
        }
    }

    /// Bytes sent whose SHA-256 is not `--sha256` (however the file came
    /// to differ from what was checked): the reader never sees the end.
    #[test]
    fn bytes_sent_that_miss_sha256_never_reach_their_end() {
        let dir = PrivateDir::new("upload").unwrap();
        let (_, checked) = written(&dir, "wrong.iso", b"abc");
        let iso = CheckedFile {
            sha256: Some("0".repeat(64)),
            ..checked
        };
        let (sent, ended) = feed_into(&dir, &iso, "cat \"$FIFO\" >/dev/null");
        assert_stopped_short(
            &sent,
            ended,
            "have SHA-256 ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad, \
             not --sha256 0000",
        );
        // The right one goes through whole.
        let iso = CheckedFile {
            sha256: Some(sha256_of(&mut &b"abc"[..]).unwrap()),
            ..iso
        };
        let (sent, ended) = feed_into(&dir, &iso, "cat \"$FIFO\" >/dev/null");
        assert!(sent.fault.is_none() && sent.transfer.is_ok() && ended);
    }

    /// The directory is ours alone (0700), so is its FIFO (0600), and a
    /// symbolic link in the FIFO's place is never opened.
    #[test]
    fn the_private_directory_and_its_fifo_are_ours_alone() {
        use std::os::unix::fs::FileTypeExt;
        let dir = PrivateDir::new("upload").unwrap();
        let mode = |path: &Path| {
            std::fs::symlink_metadata(path)
                .unwrap()
                .permissions()
                .mode()
        };
        assert_eq!(mode(dir.path()) & 0o7777, 0o700);
        let fifo = dir.make_fifo("upload").unwrap();
        assert!(
            std::fs::symlink_metadata(&fifo)
                .unwrap()
                .file_type()
                .is_fifo()
        );
        assert_eq!(mode(&fifo) & 0o077, 0, "{:o}", mode(&fifo));
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&fifo, &link).unwrap();
        let error = open_fifo(&link, &AtomicBool::new(true)).unwrap_err();
        assert_eq!(error.raw_os_error(), Some(Errno::LOOP.raw_os_error()));
        let gone = dir.path().to_owned();
        drop(dir);
        assert!(!gone.exists());
    }

    /// A whole file reaches the reader byte for byte, with its SHA-256.
    #[test]
    fn a_whole_file_goes_through_the_fifo() {
        let dir = PrivateDir::new("upload").unwrap();
        let fifo = dir.make_fifo("upload").unwrap();
        let bytes: Vec<u8> = (0..CHUNK + 12345).map(|i| (i % 251) as u8).collect();
        let (_, iso) = written(&dir, "whole.iso", &bytes);
        let copy = dir.path().join("copy");
        let sent = read_by(
            &fifo,
            &iso,
            true,
            format!("cat {} > {}", fifo.display(), copy.display()),
        );
        assert!(sent.fault.is_none() && sent.transfer.is_ok());
        let sha256 = sent.fed.unwrap().unwrap();
        assert_eq!(sha256, sha256_of(&mut &bytes[..]).unwrap());
        assert_eq!(std::fs::read(&copy).unwrap(), bytes);
    }
}
