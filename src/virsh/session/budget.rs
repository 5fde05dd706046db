//! The fleet-wide budget of virsh sessions (`--max-connections`): a
//! counting semaphore whose places every host's pool takes before it
//! starts a session, and gives back when the session ends.
//!
//! A host waits for its first place as long as it takes; while every
//! place is held, an idle session of a host nobody is working on (or an
//! idle extra one of a host that keeps another) is closed to make room,
//! so a host done with its part never blocks one that waits.

use std::sync::{Arc, Condvar, Mutex, Weak};

use crate::mutex::lock;

/// Something holding places that it can give up on demand: a host's pool
/// of sessions, closing an idle one.
pub(super) trait Yields: Send + Sync {
    /// Closes one idle session that may go (its place passes to the
    /// caller); `false` when none may.
    fn yield_idle(&self) -> bool;
}

/// The places of one run, shared by every host's sessions.
pub struct Budget {
    capacity: usize,
    state: Mutex<BudgetState>,
    changed: Condvar,
}

struct BudgetState {
    held: usize,
    waiting: usize,
    /// The pools that may yield an idle session, asked in turn.
    holders: Vec<Weak<dyn Yields>>,
    /// Where the next search for an idle session starts, so that no
    /// host's sessions are always the first to go.
    next: usize,
}

impl Budget {
    /// A budget of `capacity` places (at least one).
    pub fn new(capacity: usize) -> Arc<Self> {
        Arc::new(Budget {
            capacity: capacity.max(1),
            state: Mutex::new(BudgetState {
                held: 0,
                waiting: 0,
                holders: Vec::new(),
                next: 0,
            }),
            changed: Condvar::new(),
        })
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Lets `holder` be asked for an idle session while others wait.
    pub(super) fn register(&self, holder: Weak<dyn Yields>) {
        let mut state = lock(&self.state);
        state.holders.retain(|holder| holder.strong_count() > 0);
        state.holders.push(holder);
    }

    /// A place if one is free now.
    pub(super) fn try_take(&self) -> bool {
        let mut state = lock(&self.state);
        let free = state.held < self.capacity;
        if free {
            state.held += 1;
        }
        free
    }

    /// A place, however long it takes: a free one, else one an idle
    /// session gives up, else the next one given back.
    ///
    /// Holders are asked with the budget locked: a pool never takes this
    /// lock while it holds its own.
    pub(super) fn take(&self) {
        let mut state = lock(&self.state);
        loop {
            if state.held < self.capacity {
                state.held += 1;
                return;
            }
            if Self::reclaim(&mut state) {
                return;
            }
            state.waiting += 1;
            state = self
                .changed
                .wait(state)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            state.waiting -= 1;
        }
    }

    /// Asks the holders in turn for an idle session; its place stays held,
    /// now the caller's.
    fn reclaim(state: &mut BudgetState) -> bool {
        let count = state.holders.len();
        for step in 0..count {
            let index = (state.next + step) % count;
            let Some(holder) = state.holders[index].upgrade() else {
                continue;
            };
            if holder.yield_idle() {
                state.next = (index + 1) % count;
                return true;
            }
        }
        false
    }

    /// Gives `places` back.
    pub(super) fn give_back(&self, places: usize) {
        if places == 0 {
            return;
        }
        let mut state = lock(&self.state);
        state.held -= places;
        if state.waiting > 0 {
            self.changed.notify_all();
        }
    }

    /// How many wait for a place now, for tests to see a waiter queued.
    #[cfg(test)]
    pub(super) fn waiting(&self) -> usize {
        lock(&self.state).waiting
    }

    /// Tells the waiters that a session went idle: it may be theirs.
    pub(super) fn offer(&self) {
        if lock(&self.state).waiting > 0 {
            self.changed.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc;
    use std::thread;

    #[test]
    fn never_more_than_the_capacity_held_at_once() {
        let budget = Budget::new(3);
        let (held, peak) = (AtomicUsize::new(0), AtomicUsize::new(0));
        thread::scope(|scope| {
            for _ in 0..12 {
                scope.spawn(|| {
                    for _ in 0..50 {
                        budget.take();
                        let now = held.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(now, Ordering::SeqCst);
                        thread::yield_now();
                        held.fetch_sub(1, Ordering::SeqCst);
                        budget.give_back(1);
                    }
                });
            }
        });
        assert!(peak.load(Ordering::SeqCst) <= 3, "{peak:?}");
        assert_eq!(lock(&budget.state).held, 0);
    }

    #[test]
    fn try_take_fails_when_full_and_take_waits_for_a_place() {
        let budget = Budget::new(2);
        assert!(budget.try_take() && budget.try_take());
        assert!(!budget.try_take(), "full");
        let (done, taken) = mpsc::channel();
        thread::scope(|scope| {
            scope.spawn(|| {
                budget.take();
                done.send(()).unwrap();
            });
            // Not a timing assertion: whenever the waiter runs, it cannot
            // have a place before one is given back.
            while lock(&budget.state).waiting == 0 {
                thread::yield_now();
            }
            assert!(taken.try_recv().is_err(), "it waits");
            budget.give_back(1);
            taken.recv().unwrap();
        });
        assert!(!budget.try_take(), "the waiter holds the place given back");
    }

    /// A holder with `idle` sessions it may give up.
    struct Idle(AtomicUsize);

    impl Yields for Idle {
        fn yield_idle(&self) -> bool {
            self.0
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        }
    }

    #[test]
    fn a_waiter_takes_the_place_of_an_idle_session() {
        let budget = Budget::new(1);
        let holder: Arc<dyn Yields> = Arc::new(Idle(AtomicUsize::new(1)));
        budget.register(Arc::downgrade(&holder));
        assert!(budget.try_take(), "the idle session's place");
        assert!(!budget.try_take(), "no idle session is closed for an extra");
        budget.take();
        assert!(!holder.yield_idle(), "its one idle session went");
        // The place passed on: still one held.
        assert_eq!(lock(&budget.state).held, 1);
    }
}
