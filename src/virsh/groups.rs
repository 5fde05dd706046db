//! Every process group the tool starts, kept so that no exit path leaves
//! one behind: a normal end, an error, a closed stdout, or a signal.
//!
//! virsh runs in a group of its own (so a timeout can kill the ssh it
//! starts), which also keeps the terminal's Ctrl-C from reaching it: the
//! tool must kill those groups itself.

use std::sync::atomic::{AtomicI32, Ordering};

/// Room for the groups alive at once: a fixed array of atomics, because a
/// signal handler may read atomics but may neither lock nor allocate.
const SLOTS: usize = 1024;

static GROUPS: [AtomicI32; SLOTS] = [const { AtomicI32::new(0) }; SLOTS];

/// A registered process group; dropping it forgets the group (call it
/// once the leader has been reaped).
#[derive(Debug)]
pub struct GroupGuard {
    group: i32,
    slot: Option<usize>,
}

impl GroupGuard {
    /// Registers the group that `leader` (started with `process_group(0)`)
    /// leads.
    pub fn register(leader: u32) -> Self {
        let group = i32::try_from(leader).unwrap_or(0);
        let slot = (group > 0)
            .then(|| {
                GROUPS.iter().position(|slot| {
                    slot.compare_exchange(0, group, Ordering::SeqCst, Ordering::SeqCst)
                        .is_ok()
                })
            })
            .flatten();
        GroupGuard { group, slot }
    }

    /// SIGKILL to the whole group: virsh and whatever it started.
    pub fn kill(&self) {
        kill_group(self.group);
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(slot) = self.slot {
            GROUPS[slot].store(0, Ordering::SeqCst);
        }
    }
}

fn kill_group(group: i32) {
    if group > 0 {
        // SAFETY: kill(2) has no memory-safety preconditions; a negative
        // pid addresses the process group.
        unsafe {
            libc::kill(-group, libc::SIGKILL);
        }
    }
}

/// Kills every registered group. Async-signal-safe.
fn kill_all() {
    for slot in &GROUPS {
        kill_group(slot.load(Ordering::SeqCst));
    }
}

/// Kills every group when dropped: held by `main` for the whole run.
#[must_use = "the groups are killed when this is dropped"]
pub struct Reaper(());

impl Drop for Reaper {
    fn drop(&mut self) {
        kill_all();
    }
}

/// Makes SIGINT, SIGTERM and SIGHUP kill every group before the tool dies
/// of the signal as if it had not caught it (so the shell sees the usual
/// status), and returns the guard for every other way out.
pub fn reap_on_exit() -> Reaper {
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only reads atomics and calls kill(2),
        // signal(2) and raise(3), all async-signal-safe.
        unsafe {
            let handler: extern "C" fn(libc::c_int) = on_signal;
            libc::signal(signal, handler as usize as libc::sighandler_t);
        }
    }
    Reaper(())
}

extern "C" fn on_signal(signal: libc::c_int) {
    kill_all();
    last_words::say();
    // SAFETY: see `reap_on_exit`.
    unsafe {
        libc::signal(signal, libc::SIG_DFL);
        libc::raise(signal);
    }
}

/// What the tool must still say if a signal ends it: which changes had
/// been sent. The handler may neither lock nor allocate, so the text lives
/// in a fixed buffer that is only ever appended to: bytes below the
/// published end are never written again, and the handler writes
/// `[start, end)` to stderr with write(2).
pub mod last_words {
    use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

    const CAPACITY: usize = 64 * 1024;
    static TEXT: [AtomicU8; CAPACITY] = [const { AtomicU8::new(0) }; CAPACITY];
    static START: AtomicUsize = AtomicUsize::new(0);
    static END: AtomicUsize = AtomicUsize::new(0);

    /// Appends `text` to what is said (cut where the buffer is full: the
    /// earlier lines still matter most). Called from one thread at a time.
    pub fn add(text: &str) {
        let end = END.load(Ordering::Acquire);
        let room = CAPACITY - end;
        let bytes = &text.as_bytes()[..text.len().min(room)];
        for (at, byte) in bytes.iter().enumerate() {
            TEXT[end + at].store(*byte, Ordering::Relaxed);
        }
        END.store(end + bytes.len(), Ordering::Release);
    }

    /// Nothing more to say: what was added is no longer news.
    pub fn clear() {
        START.store(END.load(Ordering::Acquire), Ordering::Release);
    }

    /// Writes what there is to say to stderr. Async-signal-safe.
    pub(super) fn say() {
        let start = START.load(Ordering::Acquire);
        let end = END.load(Ordering::Acquire);
        if start >= end {
            return;
        }
        let mut chunk = [0u8; 512];
        let mut at = start;
        while at < end {
            let n = (end - at).min(chunk.len());
            for (i, slot) in chunk[..n].iter_mut().enumerate() {
                *slot = TEXT[at + i].load(Ordering::Relaxed);
            }
            // SAFETY: write(2) on fd 2 from a valid buffer of n bytes.
            let written = unsafe { libc::write(2, chunk.as_ptr().cast(), n) };
            if written <= 0 {
                return;
            }
            at += usize::try_from(written).unwrap_or(n);
        }
    }
}
