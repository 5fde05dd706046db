//! Every process group the tool starts, kept so that no exit path leaves
//! one behind: a normal end, an error, a closed stdout, or a signal.
//!
//! virsh runs in a group of its own (so a timeout can kill the ssh it
//! starts), which also keeps the terminal's Ctrl-C from reaching it: the
//! tool must kill those groups itself. It also reaps them: the tool is a
//! child subreaper, so what virsh started (ssh) comes back to it when
//! virsh dies, and a killed group is waited for (bounded) rather than
//! left to init as zombies. An orphan outside the groups (an ssh
//! ControlPersist master, which daemonizes) that ends while the tool runs
//! stays a zombie until the tool ends and reaps it: reaping any child
//! but a killed group's would race the threads waiting on their own.

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};

/// Room for the groups alive at once: a fixed array of atomics, because a
/// signal handler may read atomics but may neither lock nor allocate.
const SLOTS: usize = 1024;

static GROUPS: [AtomicI32; SLOTS] = [const { AtomicI32::new(0) }; SLOTS];

/// How long a killed group is waited for: SIGKILL ends a process at
/// once, unless it is stuck in the kernel (a dead NFS mount, say).
const REAP_WITHIN_NANOS: i64 = 1_000_000_000;

/// A registered process group; dropping it forgets the group (call it
/// once the leader has been reaped), after reaping what of a killed group
/// came back to the tool.
#[derive(Debug)]
pub struct GroupGuard {
    group: i32,
    slot: Option<usize>,
    killed: AtomicBool,
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
        GroupGuard {
            group,
            slot,
            killed: AtomicBool::new(false),
        }
    }

    /// SIGKILL to the whole group: virsh and whatever it started.
    pub fn kill(&self) {
        self.killed.store(true, Ordering::SeqCst);
        kill_group(self.group);
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        // The leader is reaped by its `Child`; the rest of a killed group
        // (ssh, once virsh died before it) is ours as a subreaper. Only
        // this group's: other threads wait for their own children.
        if self.killed.load(Ordering::SeqCst) {
            reap_within(REAP_WITHIN_NANOS, &[self.group], -self.group);
        }
        if let Some(slot) = self.slot {
            GROUPS[slot].store(0, Ordering::SeqCst);
        }
    }
}

/// Reaps the ended children `waitpid(which, …)` names until none of
/// `groups` has a process left, or `nanos` have passed. Async-signal-safe:
/// waitpid(2), kill(2), clock_gettime(2) and nanosleep(2) only.
fn reap_within(nanos: i64, groups: &[i32], which: libc::pid_t) {
    let started = monotonic_nanos();
    loop {
        // SAFETY: waitpid(2) with a null status pointer.
        while unsafe { libc::waitpid(which, std::ptr::null_mut(), libc::WNOHANG) } > 0 {}
        // A group is gone once kill(2) finds no process in it, zombies
        // included: signal 0 checks without sending anything.
        // SAFETY: kill(2) has no memory-safety preconditions.
        let gone = |group: &i32| *group <= 0 || unsafe { libc::kill(-*group, 0) } == -1;
        if groups.iter().all(gone) || monotonic_nanos() - started > nanos {
            return;
        }
        pause_a_millisecond();
    }
}

fn monotonic_nanos() -> i64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime(2) writes the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec * 1_000_000_000 + now.tv_nsec
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

/// Threads between starting a child and registering its group.
static STARTING: AtomicUsize = AtomicUsize::new(0);

/// Set once the tool is on its way out: no child is started from then on
/// (one started after the handler had killed every group would outlive
/// the tool, which dies of the signal right after).
static ENDING: AtomicBool = AtomicBool::new(false);

/// How long a signal waits for the children being started to be
/// registered: a fork and an exec, on a loaded machine.
const REGISTERED_WITHIN_NANOS: i64 = 1_000_000_000;

thread_local! {
    /// Whether this thread is between starting a child and registering its
    /// group. Const-initialized and without drop: a signal handler may
    /// read it.
    static STARTING_HERE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// A signal that came to a thread while it was starting a child, raised
/// again once the child's group is registered (0: none).
static PUT_OFF: AtomicI32 = AtomicI32::new(0);

/// Starts `command` (in a process group of its own: `process_group(0)`)
/// and registers its group, leaving no moment in which a signal could
/// miss it: a SIGTERM that came between the two used to leave that virsh
/// (and what it started) running after the tool had gone. A handler that
/// runs on another thread meanwhile waits until the group is registered
/// (`wait_for_starts`); one that runs on this thread puts the signal off
/// until then; once the tool has begun to end, nothing is started.
pub fn spawn_registered(
    command: &mut std::process::Command,
) -> std::io::Result<(std::process::Child, GroupGuard)> {
    // Before the count: a handler on this thread must never wait for it.
    STARTING_HERE.with(|here| here.set(true));
    STARTING.fetch_add(1, Ordering::SeqCst);
    // Counted in STARTING before this looks: a handler that set ENDING
    // either waits for this start, or is seen here.
    if ENDING.load(Ordering::SeqCst) {
        STARTING.fetch_sub(1, Ordering::SeqCst);
        STARTING_HERE.with(|here| here.set(false));
        // The tool ends in a moment (of the signal, or at the end of
        // `main`): an error from here would race it to say something
        // else, and to exit with another status.
        loop {
            std::thread::park();
        }
    }
    let started = command.spawn().map(|child| {
        let group = GroupGuard::register(child.id());
        (child, group)
    });
    STARTING.fetch_sub(1, Ordering::SeqCst);
    STARTING_HERE.with(|here| here.set(false));
    let put_off = PUT_OFF.swap(0, Ordering::SeqCst);
    if put_off != 0 {
        let _ = signal_hook::low_level::raise(put_off);
    }
    started
}

/// Waits (bounded) until no thread is between starting a child and
/// registering its group. Async-signal-safe.
fn wait_for_starts() {
    let started = monotonic_nanos();
    while STARTING.load(Ordering::SeqCst) > 0
        && monotonic_nanos() - started < REGISTERED_WITHIN_NANOS
    {
        pause_a_millisecond();
    }
}

fn pause_a_millisecond() {
    let pause = libc::timespec {
        tv_sec: 0,
        tv_nsec: 1_000_000,
    };
    // SAFETY: nanosleep(2) with a valid timespec and no remainder.
    unsafe { libc::nanosleep(&pause, std::ptr::null_mut()) };
}

/// Kills every registered group, then reaps every child that ends until
/// those groups are gone (bounded): the tool's way out. Async-signal-safe
/// (the groups are copied to the stack, not allocated).
fn kill_and_reap_all() {
    ENDING.store(true, Ordering::SeqCst);
    wait_for_starts();
    let mut killed = [0; SLOTS];
    for (slot, group) in GROUPS.iter().zip(&mut killed) {
        *group = slot.load(Ordering::SeqCst);
        kill_group(*group);
    }
    // Every child: the killed virsh, what of their groups came back to
    // us, and any orphan that had ended meanwhile. Threads still waiting
    // on a child of theirs are about to end with the process.
    reap_within(REAP_WITHIN_NANOS, &killed, -1);
}

/// Kills and reaps every group when dropped: held by `main` for the whole
/// run.
#[must_use = "the groups are killed when this is dropped"]
pub struct Reaper(());

impl Drop for Reaper {
    fn drop(&mut self) {
        wait_if_dying();
        kill_and_reap_all();
    }
}

/// Set by a signal's handler that ends the tool.
static DYING: AtomicBool = AtomicBool::new(false);

/// Parks the calling thread for good if a signal is ending the tool: its
/// handler kills every group and then ends the tool with the signal's
/// status. A run that failed because its virsh were killed (or ended
/// while the handler reaped) must not end it first, with another status
/// and a word about virsh's end (it did: `status` exited 1 on SIGTERM).
pub fn wait_if_dying() {
    if DYING.load(Ordering::SeqCst) {
        loop {
            std::thread::park();
        }
    }
}

/// The signals that end the tool through [`on_signal`].
const HANDLED: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// Makes the tool a child subreaper, and SIGINT, SIGTERM and SIGHUP kill
/// and reap every group before the tool dies of the signal as if it had
/// not caught it (so the shell sees the usual status); returns the guard
/// for every other way out.
pub fn reap_on_exit() -> Reaper {
    // SAFETY: prctl(2) with integer arguments. Should it fail (a kernel
    // before 3.4), virsh's orphans go to init as they always did.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1) };
    for signal in HANDLED {
        // SAFETY: the action only reads atomics and a const-initialized
        // thread-local without drop, and calls kill(2), waitpid(2),
        // clock_gettime(2), nanosleep(2), gettid(2), write(2),
        // sigaction(2), sigprocmask(2) and raise(3), all
        // async-signal-safe. It cannot fail for these three signals
        // (only for those no process may handle).
        let _ = unsafe { signal_hook::low_level::register(signal, move || on_signal(signal)) };
    }
    Reaper(())
}

/// How many [`DeferSignals`] are alive.
static DEFERRING: AtomicUsize = AtomicUsize::new(0);

/// The signal caught while deferring (0: none).
static CAUGHT: AtomicI32 = AtomicI32::new(0);

/// While one is alive, the first SIGINT, SIGTERM or SIGHUP only kills
/// every group and is remembered ([`caught_signal`]); the tool goes on to
/// undo what must not be left half-done (an upload deletes the volume it
/// created, which no handler can do) and then ends with 128 + the signal.
/// A second signal ends the tool at once, as usual.
#[must_use = "signals are deferred while this lives"]
pub struct DeferSignals(());

pub fn defer_signals() -> DeferSignals {
    DEFERRING.fetch_add(1, Ordering::SeqCst);
    DeferSignals(())
}

impl Drop for DeferSignals {
    fn drop(&mut self) {
        DEFERRING.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The signal caught while signals were deferred, if one was.
pub fn caught_signal() -> Option<i32> {
    match CAUGHT.load(Ordering::SeqCst) {
        0 => None,
        signal => Some(signal),
    }
}

/// The handler of SIGINT, SIGTERM and SIGHUP (see [`reap_on_exit`]).
fn on_signal(signal: libc::c_int) {
    // This thread has a child started and not yet registered: nothing
    // could kill it, nor can this thread wait for it. Raised again once it
    // is registered (`spawn_registered`).
    if STARTING_HERE.with(std::cell::Cell::get) {
        let _ = PUT_OFF.compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst);
        return;
    }
    if DEFERRING.load(Ordering::SeqCst) > 0
        && CAUGHT
            .compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    {
        // No reaping here: the threads waiting on their children do it,
        // and the tool is not about to end.
        wait_for_starts();
        for slot in &GROUPS {
            kill_group(slot.load(Ordering::SeqCst));
        }
        return;
    }
    DYING.store(true, Ordering::SeqCst);
    kill_and_reap_all();
    last_words::say();
    // Dies of the signal, as if it had not been caught: its default
    // action restored and the signal raised again (async-signal-safe).
    let _ = signal_hook::low_level::emulate_default_handler(signal);
}

/// What the tool must still say if a signal ends it: which changes had
/// been sent since the last [`last_words::clear`]. The handler may neither
/// lock nor allocate, so the text lives in a fixed buffer of atomics.
/// `clear()` starts it over at zero, so what a change adds is recorded
/// however much earlier changes added (an end that only moved up used to
/// fill the buffer for good after 64 KiB in all, and a long menu session
/// then said nothing). Rewriting bytes the handler may be reading is kept
/// apart by a handshake: the handler first freezes the text, then waits
/// (bounded) for a writer already inside to leave; a writer announces
/// itself, then backs out if it finds the text frozen. Both sides store
/// then load with `SeqCst`, so at least one of them sees the other.
pub mod last_words {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU8, AtomicUsize, Ordering};

    const CAPACITY: usize = 64 * 1024;
    static TEXT: [AtomicU8; CAPACITY] = [const { AtomicU8::new(0) }; CAPACITY];
    /// The text is `[0, END)`: bytes below it are whole.
    static END: AtomicUsize = AtomicUsize::new(0);
    /// Whether an `add()` since the last `clear()` was cut for room.
    static CUT: AtomicBool = AtomicBool::new(false);
    /// Set by the handler: no writer may change the text any more.
    static FROZEN: AtomicBool = AtomicBool::new(false);
    /// The thread id of the writer changing the text (0: none).
    static WRITER: AtomicI64 = AtomicI64::new(0);
    /// Writers one at a time (the handler never takes it).
    static WRITERS: Mutex<()> = Mutex::new(());

    /// How long the handler waits for a writer on another thread to leave:
    /// one copies 64 KiB at most, but may have been descheduled.
    const WRITER_LEAVES_WITHIN_NANOS: i64 = 100_000_000;

    fn thread_id() -> i64 {
        // SAFETY: gettid(2) has no preconditions; it is async-signal-safe.
        unsafe { libc::syscall(libc::SYS_gettid) }
    }

    /// Runs `change` on the text unless the handler froze it.
    fn write(change: impl FnOnce()) {
        let _one_at_a_time = crate::mutex::lock(&WRITERS);
        WRITER.store(thread_id(), Ordering::SeqCst);
        if !FROZEN.load(Ordering::SeqCst) {
            change();
        }
        WRITER.store(0, Ordering::SeqCst);
    }

    /// Appends `text` to what is said (cut where the buffer is full: the
    /// earlier lines still matter most, and the cut is said).
    pub fn add(text: &str) {
        write(|| {
            let end = END.load(Ordering::SeqCst);
            let room = CAPACITY - end;
            let bytes = &text.as_bytes()[..text.len().min(room)];
            for (at, byte) in bytes.iter().enumerate() {
                TEXT[end + at].store(*byte, Ordering::Relaxed);
            }
            if bytes.len() < text.len() {
                CUT.store(true, Ordering::SeqCst);
            }
            END.store(end + bytes.len(), Ordering::SeqCst);
        });
    }

    /// Nothing more to say: what was added is no longer news, and the
    /// next change starts at the top.
    pub fn clear() {
        write(|| {
            END.store(0, Ordering::SeqCst);
            CUT.store(false, Ordering::SeqCst);
        });
    }

    /// Writes what there is to say to stderr, and freezes it: the tool is
    /// about to die. Async-signal-safe: atomics, gettid(2),
    /// clock_gettime(2), nanosleep(2) and write(2) only.
    pub(super) fn say() {
        FROZEN.store(true, Ordering::SeqCst);
        // A writer on this very thread was interrupted by this handler:
        // waiting for it would never end, and the bytes it was writing lie
        // past the published end anyway (a `clear()` is one store).
        let me = thread_id();
        let started = super::monotonic_nanos();
        while ![0, me].contains(&WRITER.load(Ordering::SeqCst))
            && super::monotonic_nanos() - started < WRITER_LEAVES_WITHIN_NANOS
        {
            super::pause_a_millisecond();
        }
        let end = END.load(Ordering::SeqCst);
        let mut chunk = [0u8; 512];
        let mut at = 0;
        while at < end {
            let n = (end - at).min(chunk.len());
            for (i, slot) in chunk[..n].iter_mut().enumerate() {
                *slot = TEXT[at + i].load(Ordering::Relaxed);
            }
            if !write_all(&chunk[..n]) {
                return;
            }
            at += n;
        }
        if end > 0 && CUT.load(Ordering::SeqCst) {
            write_all(b"  (and more, not listed for want of room)\n");
        }
    }

    /// write(2) of all of `bytes` to stderr; false once it fails.
    fn write_all(mut bytes: &[u8]) -> bool {
        while !bytes.is_empty() {
            // SAFETY: write(2) on fd 2 from a valid buffer of its length.
            let written = unsafe { libc::write(2, bytes.as_ptr().cast(), bytes.len()) };
            let Ok(written @ 1..) = usize::try_from(written) else {
                return false;
            };
            bytes = &bytes[written..];
        }
        true
    }
}
