//! The sessions of one connection: at most a pool's size of them, lent
//! to one call at a time, each holding a place of the fleet's budget.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::Instant;

use super::budget::{Budget, Yields};
use super::endpoint::Endpoint;
use super::shell::Session;
use crate::mutex::lock;
use crate::virsh::error::VirshError;

/// Whether a call may have an idle session or needs a new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fresh {
    IfNoneIdle,
    Only,
}

/// The sessions of one endpoint.
///
/// Lock order: the budget's lock, then a pool's; a pool never calls the
/// budget while it holds its own lock.
pub(super) struct Pool {
    pub(super) endpoint: Endpoint,
    size: usize,
    budget: Arc<Budget>,
    /// Jobs working on the host now: while any is, the pool keeps one
    /// session when another host waits for a place.
    work: Arc<AtomicUsize>,
    state: Mutex<PoolState>,
    freed: Condvar,
}

#[derive(Default)]
struct PoolState {
    /// Idle sessions, the longest idle first.
    idle: VecDeque<Session>,
    /// Sessions alive, idle or lent out, or being started: each holds a
    /// place of the budget.
    open: usize,
    /// A call is waiting for the pool's first place.
    seeking: bool,
    /// Warmed up ([`Pool::start_all`]): the first session comes with the
    /// others the budget has room for.
    warm: bool,
}

impl Pool {
    /// A pool of at most `size` sessions of `endpoint`, none started yet
    /// (each starts when a call needs it, or all with the first after
    /// [`Pool::start_all`]), which other hosts may ask for an idle session
    /// while `work` is 0.
    pub(super) fn new(
        endpoint: Endpoint,
        size: usize,
        budget: Arc<Budget>,
        work: Arc<AtomicUsize>,
    ) -> Arc<Self> {
        let pool = Arc::new(Pool {
            endpoint,
            size,
            budget: Arc::clone(&budget),
            work,
            state: Mutex::new(PoolState::default()),
            freed: Condvar::new(),
        });
        let holder: Weak<dyn Yields> = Arc::downgrade(&pool) as Weak<dyn Yields>;
        budget.register(holder);
        pool
    }

    /// An idle session, a new one while the pool and the budget have room,
    /// or the next one handed back; `None` when the deadline passes first.
    ///
    /// While the pool holds no place, the call waits for one as long as it
    /// takes, and `deadline` moves on by as long: `--timeout` bounds the
    /// host's own calls, never its turn in the budget. In a warmed-up pool
    /// the first session comes with the others the budget has room for,
    /// so that they connect while the first call runs (over ssh, a
    /// handshake of a few hundred ms).
    pub(super) fn acquire(
        &self,
        deadline: &mut Instant,
        fresh: Fresh,
    ) -> Result<Option<Session>, VirshError> {
        let mut state = lock(&self.state);
        let mut may_grow = true;
        loop {
            if fresh == Fresh::Only {
                // Make room by ending an idle session, if there is one:
                // the new one takes its place.
                if let Some(stale) = state.idle.pop_front() {
                    drop(state);
                    drop(stale);
                    return self.start().map(Some);
                }
            } else if let Some(session) = state.idle.pop_back() {
                return Ok(Some(session));
            }
            if state.open == 0 && !state.seeking {
                state.seeking = true;
                drop(state);
                let asked = Instant::now();
                self.budget.take();
                *deadline += asked.elapsed();
                state = lock(&self.state);
                state.seeking = false;
                state.open += 1;
                drop(state);
                self.freed.notify_all();
                let session = self.start()?;
                if lock(&self.state).warm {
                    self.grow_extras();
                }
                return Ok(Some(session));
            }
            if may_grow && !state.seeking && state.open < self.size {
                drop(state);
                if self.grow() {
                    return self.start().map(Some);
                }
                // Look again before waiting: a session may have come back.
                state = lock(&self.state);
                may_grow = false;
                continue;
            }
            state = if state.seeking {
                // Another call waits for the first place: so does this one,
                // and its deadline moves on as well.
                let asked = Instant::now();
                let state = wake(self.freed.wait(state));
                *deadline += asked.elapsed();
                state
            } else {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(None);
                }
                wake(self.freed.wait_timeout(state, left)).0
            };
            may_grow = true;
        }
    }

    /// Starts, from now on, every session of the pool the budget has room
    /// for with the first: virsh connects as it starts (over ssh, a
    /// handshake of a few hundred ms), so the sessions that parallel work
    /// needs later connect while the first call runs. Without it a pool
    /// starts a session only when a call finds none idle: a one-shot read
    /// costs one. A session that cannot start is left to the call that
    /// needs it, which reports why.
    pub(super) fn start_all(&self) {
        lock(&self.state).warm = true;
        self.grow_extras();
    }

    /// Starts sessions while [`Pool::grow`] lets it, each idle at once.
    fn grow_extras(&self) {
        while self.grow() {
            match Session::start(&self.endpoint) {
                Ok(extra) => self.release(Some(extra)),
                Err(_) => {
                    // The call that needs it reports why.
                    self.release(None);
                    break;
                }
            }
        }
    }

    /// Counts in one more session if the pool has room and the budget a
    /// free place (extra sessions never wait, nor close another host's).
    fn grow(&self) -> bool {
        {
            let mut state = lock(&self.state);
            if state.open == 0 || state.open >= self.size {
                return false;
            }
            state.open += 1;
        }
        if self.budget.try_take() {
            return true;
        }
        lock(&self.state).open -= 1;
        // A waiter that skipped growing while the place was counted in.
        self.freed.notify_one();
        false
    }

    /// Starts a session in a place counted in already; if it cannot
    /// start, the place is given back.
    fn start(&self) -> Result<Session, VirshError> {
        Session::start(&self.endpoint).inspect_err(|_| self.release(None))
    }

    /// Ends a session that cannot serve again (hung, flooded, dead) and
    /// gives up its place.
    pub(super) fn discard(&self, session: Session) {
        drop(session);
        self.release(None);
    }

    /// Hands a session back, or with `None` gives up its place.
    pub(super) fn release(&self, session: Option<Session>) {
        let mut state = lock(&self.state);
        let idle = session.is_some();
        match session {
            Some(session) => state.idle.push_back(session),
            None => state.open -= 1,
        }
        drop(state);
        self.freed.notify_one();
        if idle {
            self.budget.offer();
        } else {
            self.budget.give_back(1);
        }
    }

    /// Ends every idle session and gives their places back.
    pub(super) fn close_idle(&self) {
        let closed: Vec<Session> = {
            let mut state = lock(&self.state);
            let closed: Vec<Session> = state.idle.drain(..).collect();
            state.open -= closed.len();
            closed
        };
        let places = closed.len();
        drop(closed);
        self.budget.give_back(places);
    }
}

impl Yields for Pool {
    fn yield_idle(&self) -> bool {
        let mut state = lock(&self.state);
        // A host being worked on keeps one session, idle or lent out.
        let keeps = usize::from(self.work.load(Ordering::SeqCst) > 0);
        if state.open <= keeps {
            return false;
        }
        let Some(session) = state.idle.pop_front() else {
            return false;
        };
        state.open -= 1;
        drop(state);
        drop(session);
        true
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // No call holds a session of a pool nobody holds: all are idle,
        // and end before their places go back.
        self.close_idle();
    }
}

/// The guard back from a wait, whether or not a holder panicked.
fn wake<T>(result: Result<T, std::sync::PoisonError<T>>) -> T {
    result.unwrap_or_else(std::sync::PoisonError::into_inner)
}
