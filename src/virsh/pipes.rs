//! A child's output pipes, read the one way the tool reads them: each on a
//! thread of its own, so that neither can fill up and block virsh while the
//! other (or the process) is waited on; and whole lines found in what they
//! gave.

use std::io::Read;
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use crate::mutex::lock;

/// How long the output pipes may stay open after virsh itself has exited.
/// A helper virsh started (an ssh ControlPersist master, say) can inherit
/// the pipes and keep them open for minutes; everything virsh wrote is
/// already in the pipe by then, so waiting longer gains nothing.
const PIPE_GRACE: Duration = Duration::from_millis(250);

/// Reads `pipe` on a thread of its own until end of file (or a read
/// error), handing `take` each chunk as it arrives and then `None`; the
/// reading stops early once `take` returns `false`. The thread is never
/// joined: a pipe a helper holds open must not hold up the tool, so the
/// callers wait for what `take` passes on, for a bounded time.
fn read_on_thread(
    pipe: Option<impl Read + Send + 'static>,
    mut take: impl FnMut(Option<&[u8]>) -> bool + Send + 'static,
) {
    let Some(mut pipe) = pipe else { return };
    thread::spawn(move || {
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            match pipe.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if !take(Some(&chunk[..n])) {
                        return;
                    }
                }
            }
        }
        take(None);
    });
}

/// Which pipe a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stream {
    Stdout,
    Stderr,
}

/// A chunk of one pipe; `None` is its end of file.
pub(super) type Event = (Stream, Option<Vec<u8>>);

/// Sends what `pipe` gives to `events` as it arrives, for a reader that
/// waits on both pipes of a long-lived process at once; stops once
/// nobody receives.
pub(super) fn pump(
    pipe: Option<impl Read + Send + 'static>,
    stream: Stream,
    events: Sender<Event>,
) {
    read_on_thread(pipe, move |chunk| {
        events.send((stream, chunk.map(<[u8]>::to_vec))).is_ok()
    });
}

/// One pipe of a process run to its end, gathered into a buffer.
pub(super) struct Drain {
    /// `None` once more than the limit arrived: the rest is read and
    /// dropped, so virsh never blocks on a full pipe.
    buffer: Arc<Mutex<Option<Vec<u8>>>>,
    done: mpsc::Receiver<()>,
}

impl Drain {
    pub(super) fn start(pipe: Option<impl Read + Send + 'static>, limit: usize) -> Self {
        let buffer = Arc::new(Mutex::new(Some(Vec::new())));
        let (sender, done) = mpsc::channel();
        let kept = Arc::clone(&buffer);
        read_on_thread(pipe, move |chunk| {
            match chunk {
                Some(chunk) => {
                    let mut buffer = lock(&kept);
                    if buffer
                        .as_ref()
                        .is_some_and(|b| b.len() + chunk.len() > limit)
                    {
                        *buffer = None;
                    }
                    if let Some(kept) = buffer.as_mut() {
                        kept.extend_from_slice(chunk);
                    }
                }
                None => {
                    let _ = sender.send(());
                }
            }
            true
        });
        Drain { buffer, done }
    }

    /// Waits briefly for end of file, then takes whatever has arrived,
    /// decoded lossily (a guest or a remote host may hand us bytes that
    /// are not UTF-8; they must not abort a scan); `None` when it was
    /// more than the limit.
    pub(super) fn finish(self) -> Option<String> {
        let _ = self.done.recv_timeout(PIPE_GRACE);
        lock(&self.buffer)
            .as_ref()
            .map(|bytes| String::from_utf8_lossy(bytes).into_owned())
    }
}

/// Byte offset of `line` where it stands as a whole line in `text` (a
/// `&str` caller passes `.as_bytes()`: a match of whole UTF-8 text starts
/// on a character boundary). `memmem`: a call's stdout can run to
/// megabytes, searched once or twice.
pub(super) fn find_line(text: &[u8], line: &[u8]) -> Option<usize> {
    let finder = memchr::memmem::Finder::new(line);
    let mut from = 0;
    while from + line.len() <= text.len() {
        let at = from + finder.find(&text[from..])?;
        if at == 0 || text[at - 1] == b'\n' {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only a match at the start of a line counts, however many stand
    /// inside lines before it; non-ASCII text around it is no matter.
    #[test]
    fn a_line_is_found_only_where_a_line_starts() {
        let text = "é @@m\nx@@m\n@@m\nlast";
        assert_eq!(find_line(text.as_bytes(), b"@@m\n"), Some(12));
        assert_eq!(&text[12..], "@@m\nlast");
        assert_eq!(find_line(b"@@m\n", b"@@m\n"), Some(0));
        assert_eq!(find_line(b"x@@m\n@@m", b"@@m\n"), None);
        assert_eq!(find_line(b"", b"@@m\n"), None);
    }
}
