//! Open file descriptors: the soft limit raised at start to what the
//! budget of virsh sessions needs, and the limit named when it runs out.

use std::sync::atomic::{AtomicBool, Ordering};

/// What one place of the budget may hold: a session's three pipes, and
/// while it starts, the child's ends and std's exec-error pipe.
const PER_SESSION: u64 = 8;

/// The tool's own: stdio, the odd process per call (words readline would
/// act on), the libraries' and the threads' few.
const BASE: u64 = 64;

/// Set when a virsh could not start for want of a descriptor.
static RAN_OUT: AtomicBool = AtomicBool::new(false);

/// `RLIMIT_NOFILE` as (soft, hard).
fn limits() -> Option<(u64, u64)> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit(2) writes into the struct it is given.
    (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0)
        .then_some((limit.rlim_cur, limit.rlim_max))
}

fn set_soft(soft: u64, hard: u64) -> bool {
    let limit = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: setrlimit(2) only reads the struct it is given.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 }
}

/// The soft limit now, as `ulimit -n` shows it.
pub fn soft_limit() -> u64 {
    limits().map_or(0, |(soft, _)| soft)
}

/// Makes room for `sessions` places of the budget beside `others`
/// descriptors of the caller's (`serve`'s HTTP connections): where the
/// soft limit is lower than they need, raises it to the hard limit (or,
/// if the kernel refuses that, to what they need). Returns how many
/// sessions fit: all of them, unless the hard limit is lower; at least one.
pub fn make_room(sessions: usize, others: usize) -> usize {
    let fixed = BASE + others as u64;
    let need = fixed + PER_SESSION * sessions as u64;
    let Some((soft, hard)) = limits() else {
        return sessions;
    };
    let soft = if soft >= need {
        soft
    } else if set_soft(hard, hard) {
        hard
    } else if need <= hard && set_soft(need, hard) {
        need
    } else {
        soft
    };
    if soft >= need {
        return sessions;
    }
    let fit = soft.saturating_sub(fixed) / PER_SESSION;
    usize::try_from(fit).unwrap_or(sessions).clamp(1, sessions)
}

/// Notes that a virsh could not start for want of a descriptor.
pub(crate) fn note_ran_out() {
    RAN_OUT.store(true, Ordering::SeqCst);
}

/// Whether a virsh of this run could not start for want of a descriptor:
/// then that, not each host it hit, is the run's error.
pub fn ran_out() -> bool {
    RAN_OUT.load(Ordering::SeqCst)
}

/// The run's one line for it.
pub fn ran_out_message() -> String {
    format!(
        "out of file descriptors: the open-files limit (RLIMIT_NOFILE, ulimit -n) is {}; \
         raise it, or lower --max-connections",
        soft_limit()
    )
}
