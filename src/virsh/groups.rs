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
    // SAFETY: see `reap_on_exit`.
    unsafe {
        libc::signal(signal, libc::SIG_DFL);
        libc::raise(signal);
    }
}
