//! An ISO uploaded into a storage pool through the libvirt connection
//! (`vol-create-as`, then `vol-upload` fed from the file through a FIFO,
//! all on the host's one session), so it works over `qemu+ssh://` with
//! no scp and no second connection: checked before anything is sent,
//! the bytes checked as they are sent (their SHA-256; the file's size and
//! times), checked afterwards, and never left half-done: whatever fails
//! once this run's `vol-create-as` succeeded deletes that volume, and
//! nothing else is ever deleted on the way out.

use std::fs::File;
use std::io;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};

use super::fifo::{CheckedFile, FileStamp, PrivateDir, STALL, feed_through, sha256_of};
use super::iso::{has_iso9660_signature, open_never_blocking};
use super::manager::MediaManager;
use crate::utils::sanitize;
use crate::virsh::VirshError;
use crate::virsh::groups::caught_signal;
use crate::virsh::runner::Watch;
use crate::virsh::volumes::{VolumeTimes, parse_volume_times, parse_volume_xml};

/// A local file found fit for upload.
#[derive(Debug, Clone)]
pub struct LocalIso {
    /// As given.
    pub file: String,
    /// The volume's name: `--name`, else the file's name.
    pub name: String,
    pub size: u64,
    /// The file as checked: the bytes sent must come from it unchanged.
    stamp: FileStamp,
    /// `--sha256`, lower case: what the bytes sent must hash to.
    sha256: Option<String>,
}

impl LocalIso {
    /// The file as the feed must find it.
    fn checked(&self) -> CheckedFile {
        CheckedFile {
            file: self.file.clone(),
            size: self.size,
            stamp: self.stamp,
            sha256: self.sha256.clone(),
        }
    }
}

/// The checks made before anything is sent: a name that is a file name, a
/// regular file that is not empty, the ISO 9660 signature (unless
/// `force`), and with `sha256` the file's checksum. Each failure is one
/// line naming the file.
pub fn check_file(
    file: &str,
    name: Option<&str>,
    sha256: Option<&str>,
    force: bool,
) -> Result<LocalIso> {
    let shown = sanitize(file);
    let name = match name {
        Some(name) => name.to_owned(),
        None => Path::new(file)
            .file_name()
            .and_then(|name| name.to_str())
            .with_context(|| format!("'{shown}' names no file: give --name"))?
            .to_owned(),
    };
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        bail!(
            "'{}' cannot be a volume name: a volume is a file in its pool, its name holds no `/`",
            sanitize(&name)
        );
    }
    if name.chars().any(char::is_control) {
        bail!(
            "'{}' holds a control character: refused as a volume name",
            sanitize(&name)
        );
    }
    let expected = sha256.map(parse_sha256).transpose()?;
    let metadata = match std::fs::metadata(file) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            bail!("'{shown}' does not exist")
        }
        Err(error) => return Err(error).with_context(|| format!("cannot read '{shown}'")),
    };
    if !metadata.is_file() {
        let what = if metadata.is_dir() {
            "a directory"
        } else {
            "not a regular file (a FIFO, socket or device)"
        };
        bail!("'{shown}' is {what}: an ISO must be an image file");
    }
    if metadata.len() == 0 {
        bail!("'{shown}' is empty: nothing to upload");
    }
    let path = Path::new(file);
    let signed = has_iso9660_signature(path).with_context(|| format!("cannot read '{shown}'"))?;
    if !signed && !force {
        bail!(
            "'{shown}' carries no ISO 9660 signature (CD001 at byte 32769): not an ISO image; \
             `upload --force` sends it anyway"
        );
    }
    // Checked here too, so that a wrong file sends nothing; the bytes
    // sent are checked again as they go (`Feed::run`).
    if let Some(expected) = &expected {
        let actual = sha256_of(&mut open_never_blocking(path)?)
            .with_context(|| format!("cannot read '{shown}'"))?;
        if actual != *expected {
            bail!(
                "'{shown}' does not match --sha256: its SHA-256 is {actual}; nothing was uploaded"
            );
        }
    }
    Ok(LocalIso {
        file: file.to_owned(),
        name,
        size: metadata.len(),
        stamp: FileStamp::of(&metadata),
        sha256: expected,
    })
}

/// `--sha256 HEX`: 64 hex digits, either case.
fn parse_sha256(text: &str) -> Result<String> {
    if text.len() == 64 && text.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(text.to_ascii_lowercase())
    } else {
        bail!("--sha256 takes 64 hex digits, not '{}'", sanitize(text))
    }
}

/// Where an upload goes, and what it checks.
#[derive(Debug, Clone)]
pub struct UploadOptions {
    pub pool: String,
    /// Read the volume back and compare SHA-256.
    pub verify: bool,
    /// Replace a volume of that name that no drive holds.
    pub replace: bool,
}

/// An upload that was done and checked.
#[derive(Debug, Clone)]
pub struct Uploaded {
    /// The volume's path on its host, as drives name it.
    pub path: String,
    /// The SHA-256 the read-back volume matched, with `--verify`.
    pub verified: Option<String>,
}

/// A volume just filled: where, how many bytes it must hold, and the
/// SHA-256 of the bytes that went in (with `verify`, compared with what
/// it reads back).
pub(super) struct Filled<'a> {
    pub(super) pool: &'a str,
    pub(super) name: &'a str,
    pub(super) size: u64,
    pub(super) sha256: Option<String>,
    pub(super) verify: bool,
}

/// How the checks after a transfer name it: "the volume holds N bytes
/// after the {act}, {source} M", "the bytes {sent} SHA".
pub(super) struct TransferWords {
    pub(super) act: &'static str,
    pub(super) source: &'static str,
    pub(super) sent: &'static str,
}

const UPLOADED: TransferWords = TransferWords {
    act: "upload",
    source: "the file",
    sent: "sent",
};

impl MediaManager {
    /// Uploads `iso` into `options.pool` on this host: the pool checked
    /// (there, active, room enough), a volume of that name refused unless
    /// `replace` (and then only while no drive holds it, and never where
    /// the file is that volume itself), the volume created and filled, its
    /// size checked, and with `verify` read back. `progress` hears of the
    /// bytes sent so far. Once this run's `vol-create-as` has succeeded,
    /// any failure (a signal included) deletes that volume; a create that
    /// failed deletes nothing, as the name may be another's.
    pub fn upload(
        &self,
        iso: &LocalIso,
        options: &UploadOptions,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<Uploaded> {
        let (pool, name) = (options.pool.as_str(), iso.name.as_str());
        let volume = format!("{}/{}", sanitize(pool), sanitize(name));
        refuse_if_interrupted()?;
        let mut replaced = OldVolume::Kept;
        let prepared = self.prepare(iso, options, &mut replaced);
        if caught_signal().is_some() {
            // A check cut short says nothing of use; what was done does.
            bail!(match replaced {
                OldVolume::Kept => "interrupted before anything was changed".to_owned(),
                OldVolume::Deleting => format!(
                    "interrupted while the volume {volume} it replaces (--replace) was being \
                     deleted: it may be gone; nothing was uploaded"
                ),
                OldVolume::Deleted => format!(
                    "interrupted; the volume {volume} it replaces (--replace) had been deleted; \
                     nothing was uploaded"
                ),
            });
        }
        prepared?;
        self.create_then_fill(pool, name, iso.size, || {
            self.fill(iso, pool, progress, options.verify)
        })
    }

    /// `pool`'s figures, where it exists and runs; else the line that
    /// says which it is not, and how to start it.
    pub(super) fn active_pool(&self, pool: &str) -> Result<crate::virsh::volumes::PoolInfo> {
        let uri = self.virsh.uri_label();
        match self.virsh.pool_info(pool)? {
            None => bail!("no storage pool '{}' on {uri}", sanitize(pool)),
            Some(info) if !info.active => bail!(
                "storage pool '{}' on {uri} is inactive: start it first (virsh pool-start {})",
                sanitize(pool),
                sanitize(pool)
            ),
            Some(info) => Ok(info),
        }
    }

    /// `vol-create-as` of `name` in `pool` at `size` bytes, then `fill`;
    /// once this run's volume exists, any failure of `fill` deletes it
    /// (and only it: a create that failed made nothing of ours).
    pub(super) fn create_then_fill(
        &self,
        pool: &str,
        name: &str,
        size: u64,
        fill: impl FnOnce() -> Result<Uploaded>,
    ) -> Result<Uploaded> {
        let size = size.to_string();
        let created = self.virsh.run(&[
            "vol-create-as",
            "--pool",
            pool,
            "--name",
            name,
            "--capacity",
            &size,
            "--format",
            "raw",
        ]);
        if let Err(error) = created {
            return Err(self.not_created(pool, name, error));
        }
        fill().map_err(|error| self.undo(pool, name, error))
    }

    /// Everything before the volume is created: the pool (there, active,
    /// room enough), a volume of that name (refused unless `replace`, and
    /// then only while no drive holds it, and never where the file is that
    /// volume itself), deleted for `replace`; `replaced` says how far that
    /// got.
    fn prepare(
        &self,
        iso: &LocalIso,
        options: &UploadOptions,
        replaced: &mut OldVolume,
    ) -> Result<()> {
        let virsh = &self.virsh;
        let uri = virsh.uri_label();
        let (pool, name) = (options.pool.as_str(), iso.name.as_str());
        let volume = format!("{}/{}", sanitize(pool), sanitize(name));
        let info = self.active_pool(pool)?;
        let old = virsh.volume_capacity(pool, name)?;
        if old.is_some() {
            self.refuse_the_file_itself(iso, pool, name)?;
            if !options.replace {
                bail!("{volume} already exists on {uri}: pass --replace to replace it");
            }
            let holders: Vec<String> = self
                .library()?
                .into_iter()
                .filter(|entry| {
                    entry.pool.as_deref() == Some(pool) && entry.volume.as_deref() == Some(name)
                })
                .flat_map(|entry| entry.holders)
                .map(|holder| sanitize(&holder.describe()))
                .collect();
            if !holders.is_empty() {
                bail!(
                    "not replaced: {volume} on {uri} is held by {}: eject it first",
                    holders.join(", ")
                );
            }
        }
        // The room before the old volume goes: a file that would not fit
        // even in its place leaves it there.
        self.refuse_if_no_room(
            pool,
            info.available,
            (&volume, old),
            &format!("'{}'", sanitize(&iso.file)),
            iso.size,
        )?;
        if old.is_some() {
            refuse_if_interrupted()?;
            *replaced = OldVolume::Deleting;
            virsh.run(&["vol-delete", "--pool", pool, "--vol", name])?;
            *replaced = OldVolume::Deleted;
        }
        Ok(())
    }

    /// Refuses `size` bytes for `what` that would not fit in `pool` (its
    /// `available` bytes, with the `old` bytes of `volume`, which they
    /// would replace), naming both figures, before anything is created or
    /// deleted. libvirt's figures are those of the pool's last refresh
    /// (files deleted behind its back still count): a pool that seems too
    /// full is refreshed and read again before it is refused.
    pub(super) fn refuse_if_no_room(
        &self,
        pool: &str,
        available: Option<u64>,
        (volume, old): (&str, Option<u64>),
        what: &str,
        size: u64,
    ) -> Result<()> {
        let short = |available: Option<u64>| {
            available
                .map(|free| free.saturating_add(old.unwrap_or(0)))
                .filter(|free| *free < size)
        };
        if short(available).is_none() {
            return Ok(());
        }
        // A refresh refused (another upload's job under way) leaves the
        // figure read.
        let available = match self.virsh.run(&["pool-refresh", "--pool", pool]) {
            Ok(_) => self.virsh.pool_info(pool)?.and_then(|info| info.available),
            Err(_) => available,
        };
        let Some(free) = short(available) else {
            return Ok(());
        };
        let (with_old, nothing_deleted) = match old {
            Some(old) => (
                format!(" (with the {old} bytes of {volume}, which it would replace)"),
                ": nothing was deleted",
            ),
            None => (String::new(), ""),
        };
        bail!(
            "storage pool '{}' on {} has {free} bytes free{with_old}; {what} needs {size} bytes{nothing_deleted}",
            sanitize(pool),
            self.virsh.uri_label()
        )
    }

    /// Refuses where the file to upload is the volume `pool/name` itself
    /// (`upload ./x.iso --replace` in the pool's directory): replacing it
    /// would delete the very bytes about to be sent. See [`is_itself`].
    fn refuse_the_file_itself(&self, iso: &LocalIso, pool: &str, name: &str) -> Result<()> {
        let xml = self
            .virsh
            .run(&["vol-dumpxml", "--pool", pool, "--vol", name])?
            .stdout;
        let Some(volume) = parse_volume_xml(&xml) else {
            return Ok(());
        };
        // Looked at now, not as checked: the volume's times are read now.
        let Ok(file) = std::fs::metadata(&iso.file) else {
            return Ok(());
        };
        let file = FileStamp::of(&file);
        let same_place = std::fs::metadata(&volume.path)
            .is_ok_and(|here| FileStamp::of(&here).is_the_file(&file))
            || std::fs::canonicalize(&iso.file)
                .is_ok_and(|canonical| canonical == Path::new(&volume.path));
        let remote = self.remote()?;
        if is_itself(
            same_place,
            remote,
            volume.capacity,
            parse_volume_times(&xml),
            &file,
        ) {
            bail!(
                "'{}' is the volume {}/{} itself on {} ({}{}): it cannot be uploaded into \
                 itself, which would empty it; nothing was changed (copy it elsewhere first)",
                sanitize(&iso.file),
                sanitize(pool),
                sanitize(name),
                self.virsh.uri_label(),
                sanitize(&volume.path),
                if remote {
                    ", a remote host that is this machine by its volume's size and times"
                } else {
                    ""
                }
            );
        }
        Ok(())
    }

    /// `vol-upload` from the file, the size checked, and with `verify`
    /// the volume read back: all on the host's one connection, its
    /// session, which reads the bytes from a FIFO of ours. A signal at any
    /// point before it returns fails it (each step is followed by a look
    /// for one): the upload is complete only when every check has passed.
    fn fill(
        &self,
        iso: &LocalIso,
        pool: &str,
        progress: &(dyn Fn(u64) + Sync),
        verify: bool,
    ) -> Result<Uploaded> {
        let virsh = &self.virsh;
        let name = iso.name.as_str();
        refuse_if_interrupted()?;
        let stall = STALL.max(virsh.config().timeout);
        let dir = PrivateDir::new("upload")?;
        let fifo = dir.make_fifo("upload")?;
        let from = fifo.to_string_lossy().into_owned();
        let sent = feed_through(&fifo, &iso.checked(), verify, progress, stall, |watch| {
            virsh.upload_volume(pool, name, &from, watch)
        });
        refuse_if_interrupted()?;
        if let Some(fault) = sent.fault {
            bail!("{fault}");
        }
        sent.transfer?;
        let sha256 = sent.fed.with_context(|| {
            format!(
                "`{}` stopped reading the file",
                virsh
                    .invocation(&["vol-upload", "--pool", pool, "--vol", name, &from])
                    .summary()
            )
        })?;
        self.check_filled(
            Filled {
                pool,
                name,
                size: iso.size,
                sha256,
                verify,
            },
            &UPLOADED,
            &dir,
            stall,
        )
    }

    /// After the bytes went in: the volume's size, with `verify` its bytes
    /// read back against those sent, and its path. A signal between the
    /// steps fails it, as in [`MediaManager::upload`].
    pub(super) fn check_filled(
        &self,
        filled: Filled,
        words: &TransferWords,
        dir: &PrivateDir,
        stall: std::time::Duration,
    ) -> Result<Uploaded> {
        let Filled {
            pool,
            name,
            size,
            sha256,
            verify,
        } = filled;
        let TransferWords { act, source, sent } = words;
        let virsh = &self.virsh;
        let capacity = virsh.volume_capacity(pool, name);
        refuse_if_interrupted()?;
        match capacity? {
            Some(bytes) if bytes == size => {}
            Some(bytes) => bail!("the volume holds {bytes} bytes after the {act}, {source} {size}"),
            None => bail!("the volume is gone after the {act}"),
        }
        let verified = if verify {
            let sent_sha256 = sha256.with_context(|| format!("the {act} hashed nothing"))?;
            let read_back = self
                .read_back(pool, name, dir, stall)
                .context("cannot read the volume back")?;
            if read_back != sent_sha256 {
                bail!(
                    "the volume read back has SHA-256 {read_back}, the bytes {sent} {sent_sha256}"
                );
            }
            Some(read_back)
        } else {
            None
        };
        let path = virsh.volume_alias(&format!("{pool}/{name}"));
        refuse_if_interrupted()?;
        let path = path?.with_context(|| format!("the volume is gone after the {act}"))?;
        Ok(Uploaded { path, verified })
    }

    /// The SHA-256 of the volume as `vol-download` reads it back, through
    /// a file in `dir` (virsh writes a line of its own to stdout, so the
    /// bytes cannot come through a pipe there).
    pub(super) fn read_back(
        &self,
        pool: &str,
        name: &str,
        dir: &PrivateDir,
        stall: Duration,
    ) -> Result<String> {
        let file = dir.path().join("volume");
        let into = file.to_string_lossy().into_owned();
        let moved = || std::fs::metadata(&file).map_or(0, |m| m.len());
        let stop = || caught_signal().is_some();
        let watch = Watch {
            stall,
            moved: &moved,
            stop: &stop,
        };
        let downloaded = self.virsh.download_volume(pool, name, &into, &watch);
        refuse_if_interrupted()?;
        downloaded?;
        Ok(sha256_of(&mut File::open(&file)?)?)
    }

    /// A `vol-create-as` that failed: nothing is deleted, as a volume of
    /// that name is not this run's (another admin's, another upload's of
    /// the same name at the same moment, this host's under another
    /// spelling). Killed by a signal, the create may or may not have been
    /// made: whether a volume is there now is said, and it is left.
    fn not_created(&self, pool: &str, name: &str, error: VirshError) -> anyhow::Error {
        let volume = format!("{}/{}", sanitize(pool), sanitize(name));
        let uri = self.virsh.uri_label();
        if caught_signal().is_none() {
            return anyhow!(error).context(format!(
                "cannot create the volume {volume} on {uri} (nothing was deleted)"
            ));
        }
        match self
            .virsh
            .one_process_per_call()
            .volume_capacity(pool, name)
        {
            Ok(None) => anyhow!("interrupted while creating the volume {volume}: none was made"),
            Ok(Some(_)) => anyhow!(
                "interrupted while creating the volume {volume}: it exists now, empty if this \
                 run made it, and is left as it is, as it may be another's (`library` shows \
                 it, `delete-iso` deletes it)"
            ),
            Err(check) => anyhow!(
                "interrupted while creating the volume {volume}: whether it was made is unknown \
                 ({}); `library` shows it",
                crate::utils::with_causes(&check)
            ),
        }
    }

    /// Deletes the volume this run created, after `error`; the error
    /// says whether that worked. After a signal, which killed every
    /// session, on processes of its own.
    fn undo(&self, pool: &str, name: &str, error: anyhow::Error) -> anyhow::Error {
        let volume = format!("{}/{}", sanitize(pool), sanitize(name));
        let (reason, virsh) = match caught_signal() {
            Some(_) => ("interrupted".to_owned(), self.virsh.one_process_per_call()),
            None => (format!("{error:#}"), self.virsh.clone()),
        };
        match virsh.run(&["vol-delete", "--pool", pool, "--vol", name]) {
            Ok(_) => anyhow!("{reason}; the volume {volume} it had created was deleted"),
            Err(error)
                if error
                    .virsh_message()
                    .is_some_and(|m| m.contains("not found")) =>
            {
                anyhow!("{reason}; no volume {volume} was left")
            }
            Err(cleanup) => anyhow!(
                "{reason}; and the volume {volume} it had created could not be deleted ({}): \
                 delete it with `{}`",
                crate::utils::with_causes(&cleanup),
                virsh
                    .invocation(&["vol-delete", "--pool", pool, "--vol", name])
                    .command_line()
            ),
        }
    }
}

/// Whether a volume is the file to upload. `same_place`: the volume's
/// path, looked at on this machine, is that file (its device and inode),
/// or the file's canonical path is the volume's path. On this machine's
/// libvirt that decides it. On a remote host a path of this machine
/// says nothing by itself (the same pool path on every host is the rule,
/// and distributing the ISO of this machine's pool to the others with
/// `--replace` a common task), but the host may be this machine under
/// another name (`qemu+ssh://localhost`, its own host name): there the
/// same place is the file itself when the volume's size and modification
/// and change times (to the nanosecond, from `vol-dumpxml`: no copy keeps
/// a change time) are the file's too, and also where the pool gives no
/// times, as nothing then tells the two apart.
fn is_itself(
    same_place: bool,
    remote: bool,
    capacity: Option<u64>,
    times: Option<VolumeTimes>,
    file: &FileStamp,
) -> bool {
    if !same_place || !remote {
        return same_place;
    }
    let Some(times) = times else {
        return true;
    };
    let nanosecond = |(seconds, nanos): (i64, i64)| u32::try_from(nanos).map(|n| (seconds, n)).ok();
    capacity == Some(file.size)
        && Some(times.mtime) == nanosecond(file.mtime)
        && Some(times.ctime) == nanosecond(file.ctime)
}

/// How far `--replace` got with the volume it replaces.
enum OldVolume {
    /// Not deleted (none there, or not yet).
    Kept,
    /// Its `vol-delete` was sent, and has not answered.
    Deleting,
    Deleted,
}

/// An error once a signal has been caught: nothing more is started.
pub(super) fn refuse_if_interrupted() -> Result<()> {
    match caught_signal() {
        Some(_) => bail!("interrupted"),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_known_text() {
        // `printf abc | sha256sum`
        assert_eq!(
            sha256_of(&mut &b"abc"[..]).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(parse_sha256(&"A".repeat(64)).is_ok());
        assert!(parse_sha256("abc").is_err());
        assert!(parse_sha256(&"g".repeat(64)).is_err());
    }

    /// A clean-up whose virsh cannot be started says why (the message
    /// used to end at `could not run `…``, the "Permission denied" lost).
    #[test]
    fn a_clean_up_that_cannot_start_virsh_names_the_cause() {
        let fake = std::sync::Arc::new(crate::virsh::fake::FakeRunner::default());
        fake.expect_spawn_failure(&["vol-delete", "--pool", "isos", "--vol", "new.iso"]);
        let media = MediaManager::new(crate::testing::fake_virsh_on(
            "qemu+ssh://far/system",
            &fake,
        ));
        let error = media.undo("isos", "new.iso", anyhow!("the upload failed"));
        fake.assert_all_used();
        let message = format!("{error:#}");
        assert!(
            message.contains("could not be deleted (could not run `virsh -c qemu+ssh://far/system vol-delete --pool isos --vol new.iso`: Permission denied (os error 13))"),
            "{message}"
        );
    }

    /// On this machine's libvirt the same place is the file; on a remote
    /// host only with the file's size and times (the host is this machine
    /// under another name), or where the pool gives no times.
    #[test]
    fn the_file_itself_is_told_from_a_file_at_its_path_elsewhere() {
        let file = FileStamp {
            dev: 1,
            ino: 2,
            size: 4096,
            mtime: (100, 5),
            ctime: (100, 6),
        };
        let same = Some(VolumeTimes {
            mtime: (100, 5),
            ctime: (100, 6),
        });
        // Another machine's file at the same path: a copy keeps the size
        // and may keep the modification time, never the change time.
        let copied = Some(VolumeTimes {
            mtime: (100, 5),
            ctime: (200, 0),
        });
        // (same file here, same path, the volume's size, its times): itself?
        let cases = [
            (true, false, None, None, true),
            (false, false, Some(4096), same, false),
            (false, true, Some(4096), same, false),
            (true, true, Some(4096), same, true),
            (true, true, Some(4096), copied, false),
            (true, true, Some(8192), same, false),
            (true, true, Some(8192), None, true),
        ];
        for (here, path, size, times, itself) in cases {
            assert_eq!(
                is_itself(here, path, size, times, &file),
                itself,
                "{here} {path} {size:?} {times:?}"
            );
        }
    }
}
