//! A volume copied from one host to another, streamed: `vol-download` on
//! the source's session writes into one FIFO, a thread of ours relays the
//! bytes (counting and hashing them) into another, which `vol-upload` on
//! the destination's session reads; never a file of the whole ISO. The
//! volume is created first and deleted on any failure (a signal
//! included), as an upload's is; the size is checked after, and with
//! `verify` the SHA-256 read back.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

use super::fifo::{CHUNK, PrivateDir, STALL, hex, open_fifo};
use super::manager::MediaManager;
use super::upload::{Filled, TransferWords, Uploaded, refuse_if_interrupted};

const COPIED: TransferWords = TransferWords {
    act: "copy",
    source: "the source's",
    sent: "copied",
};
use crate::mutex::lock;
use crate::utils::sanitize;
use crate::virsh::groups::caught_signal;
use crate::virsh::runner::Watch;
use crate::virsh::{Virsh, VirshError};

/// The volume a copy reads, on the source host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceVolume {
    pub pool: String,
    pub name: String,
    /// Its capacity: the bytes `vol-download` gives.
    pub size: u64,
}

impl MediaManager {
    /// Copies `from` (a volume of `source`) into `pool` on this host as
    /// `name`, which must not exist: the pool checked (there, active),
    /// the volume created, filled from the stream, its size checked, and
    /// with `verify` read back. Once this run's `vol-create-as` has
    /// succeeded, any failure deletes that volume.
    pub fn copy_volume(
        &self,
        source: &Virsh,
        from: &SourceVolume,
        pool: &str,
        name: &str,
        verify: bool,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<Uploaded> {
        let uri = self.virsh.uri_label();
        let volume = format!("{}/{}", sanitize(pool), sanitize(name));
        refuse_if_interrupted()?;
        let info = self.active_pool(pool)?;
        if self.virsh.volume_capacity(pool, name)?.is_some() {
            bail!("{volume} already exists on {uri}: nothing was copied");
        }
        self.refuse_if_no_room(
            pool,
            info.available,
            (&volume, None),
            &format!(
                "{}/{} of {}",
                sanitize(&from.pool),
                sanitize(&from.name),
                source.uri_label()
            ),
            from.size,
        )?;
        refuse_if_interrupted()?;
        self.create_then_fill(pool, name, from.size, || {
            self.stream(source, from, pool, name, verify, progress)
        })
    }

    /// The bytes streamed into the volume made for them, then checked.
    fn stream(
        &self,
        source: &Virsh,
        from: &SourceVolume,
        pool: &str,
        name: &str,
        verify: bool,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<Uploaded> {
        let virsh = &self.virsh;
        let stall = STALL.max(virsh.config().timeout);
        let dir = PrivateDir::new("copy")?;
        let down = dir.make_fifo("download")?;
        let up = dir.make_fifo("upload")?;
        let (down_path, up_path) = (
            down.to_string_lossy().into_owned(),
            up.to_string_lossy().into_owned(),
        );
        let relay = Relay::default();
        let moved = || relay.moved.load(Ordering::SeqCst);
        let stop = || caught_signal().is_some() || lock(&relay.fault).is_some();
        let watch = Watch {
            stall,
            moved: &moved,
            stop: &stop,
        };
        let (downloaded, uploaded, relayed) = std::thread::scope(|scope| {
            let downloading = scope.spawn(|| {
                let done = source.download_volume(&from.pool, &from.name, &down_path, &watch);
                relay.download_over.store(true, Ordering::SeqCst);
                done
            });
            let uploading = scope.spawn(|| {
                let done = virsh.upload_volume(pool, name, &up_path, &watch);
                relay.upload_over.store(true, Ordering::SeqCst);
                done
            });
            let relayed = relay.run(&down, &up, from.size, verify, progress);
            let join = |handle: std::thread::ScopedJoinHandle<'_, Result<(), VirshError>>| {
                handle
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            };
            (join(downloading), join(uploading), relayed)
        });
        // The relay's FIFO, held open after a fault, goes only now that
        // both virsh are done (see `Relay::held`).
        drop(lock(&relay.held).take());
        refuse_if_interrupted()?;
        let source_line = source
            .invocation(&["vol-download", "--pool", &from.pool, "--vol", &from.name])
            .summary();
        // A stream cut short is the download's failure where it failed:
        // both are said.
        match (lock(&relay.fault).take(), downloaded) {
            (Some(fault), Err(error)) => bail!(
                "{fault}: `{source_line}` failed: {}",
                crate::utils::with_causes(&error)
            ),
            (Some(fault), Ok(())) => bail!("{fault}"),
            (None, downloaded) => {
                downloaded.with_context(|| format!("`{source_line}` failed"))?;
            }
        }
        uploaded?;
        let sha256 = relayed.context("the relay between the hosts failed")?;
        self.check_filled(
            Filled {
                pool,
                name,
                size: from.size,
                sha256,
                verify,
            },
            &COPIED,
            &dir,
            stall,
        )
    }
}

/// The relay from the download's FIFO into the upload's, watched by both
/// transfers.
#[derive(Default)]
struct Relay {
    /// Bytes relayed so far: the progress both transfers are watched by.
    moved: AtomicU64,
    /// Why the copy must stop (a short or long stream, a signal): both
    /// transfers are stopped at once.
    fault: Mutex<Option<String>>,
    download_over: AtomicBool,
    upload_over: AtomicBool,
    /// The upload's FIFO after a fault, open until both virsh are done:
    /// closed earlier, its end of file would complete a short volume.
    held: Mutex<Option<File>>,
}

impl Relay {
    /// Relays exactly `size` bytes; the SHA-256 of them with `verify`.
    /// More or fewer is a fault, found before the upload sees an end.
    fn run(
        &self,
        down: &Path,
        up: &Path,
        size: u64,
        verify: bool,
        progress: &(dyn Fn(u64) + Sync),
    ) -> io::Result<Option<String>> {
        let fault = |what: String| {
            *lock(&self.fault) = Some(what.clone());
            io::Error::other(what)
        };
        // The upload's FIFO first (its virsh opens it to read as it
        // starts), then the download's: opened to read only once the
        // upload is under way, so that a download never writes into a
        // stream that has nowhere to go.
        let Some(mut into) = open_fifo(up, &self.upload_over)? else {
            return Err(fault(
                "the destination's vol-upload never started".to_owned(),
            ));
        };
        let Some(mut from) = open_for_reading(down, &self.download_over)? else {
            *lock(&self.held) = Some(into);
            return Err(fault("the source's vol-download never started".to_owned()));
        };
        let mut hasher = verify.then(Sha256::new);
        let mut buffer = vec![0u8; CHUNK];
        let mut done: u64 = 0;
        loop {
            if caught_signal().is_some() {
                *lock(&self.held) = Some(into);
                return Err(fault("interrupted".to_owned()));
            }
            let n = match from.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => {
                    *lock(&self.held) = Some(into);
                    return Err(fault(format!(
                        "cannot read the stream at byte {done}: {error}"
                    )));
                }
            };
            if done + n as u64 > size {
                *lock(&self.held) = Some(into);
                return Err(fault(format!(
                    "the source sent more than the volume's {size} bytes"
                )));
            }
            if let Some(hasher) = hasher.as_mut() {
                hasher.update(&buffer[..n]);
            }
            into.write_all(&buffer[..n])?;
            done += n as u64;
            self.moved.store(done, Ordering::SeqCst);
            progress(done);
        }
        if done != size {
            *lock(&self.held) = Some(into);
            // The download closed its end: it is ending, with its own
            // words for why, which a fault now would cut short. The upload
            // waits on the FIFO held open meanwhile.
            while !self.download_over.load(Ordering::SeqCst) && caught_signal().is_none() {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            return Err(fault(format!(
                "the source's stream ended after {done} of {size} bytes"
            )));
        }
        Ok(hasher.map(|hasher| hex(&hasher.finalize())))
    }
}

/// The FIFO `fifo` opened for reading once a writer (virsh) has opened
/// it, never waiting in `open` for one that failed first; `None` once
/// `over` says the writer's transfer ended, or after a signal.
fn open_for_reading(fifo: &Path, over: &AtomicBool) -> io::Result<Option<File>> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    // Non-blocking, a read-only open of a FIFO succeeds with no writer;
    // its first byte, or the end once a writer came and went, is what
    // poll(2) waits for (Linux reports no hang-up before a writer came).
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(fifo)?;
    loop {
        let mut poll = libc::pollfd {
            fd: file.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll(2) on one descriptor this function owns.
        let ready = unsafe { libc::poll(&mut poll, 1, 100) };
        if ready > 0 {
            break;
        }
        if ready < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return Err(io::Error::last_os_error());
        }
        if over.load(Ordering::SeqCst) || caught_signal().is_some() {
            return Ok(None);
        }
    }
    // Blocking reads from here: the download writes at the connection's
    // pace.
    // SAFETY: fcntl(2) on a descriptor this function owns.
    let cleared = unsafe {
        let flags = libc::fcntl(file.as_raw_fd(), libc::F_GETFL);
        flags >= 0 && libc::fcntl(file.as_raw_fd(), libc::F_SETFL, flags & !libc::O_NONBLOCK) == 0
    };
    if cleared {
        Ok(Some(file))
    } else {
        Err(io::Error::last_os_error())
    }
}
