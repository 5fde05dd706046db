//! The sessions of one connection: at most a pool's size of them, lent
//! to one call at a time, started on demand or all at once.

use std::sync::{Condvar, Mutex};
use std::time::Instant;

use super::Endpoint;
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
pub(super) struct Pool {
    pub(super) endpoint: Endpoint,
    size: usize,
    state: Mutex<PoolState>,
    freed: Condvar,
}

#[derive(Default)]
struct PoolState {
    idle: Vec<Session>,
    /// Sessions alive, idle or lent out, or being started.
    open: usize,
}

impl Pool {
    /// A pool of at most `size` sessions of `endpoint`, each started when
    /// a call needs it (or all at once by [`Pool::start_all`]).
    pub(super) fn new(endpoint: Endpoint, size: usize) -> Self {
        Pool {
            size,
            endpoint,
            state: Mutex::new(PoolState::default()),
            freed: Condvar::new(),
        }
    }

    /// An idle session, a new one while the pool has room, or the next
    /// one handed back; `None` when the deadline passes first.
    pub(super) fn acquire(
        &self,
        deadline: Instant,
        fresh: Fresh,
    ) -> Result<Option<Session>, VirshError> {
        let mut state = lock(&self.state);
        loop {
            if fresh == Fresh::Only {
                // Make room by ending an idle session, if there is one.
                if state.open >= self.size && state.idle.pop().is_some() {
                    state.open -= 1;
                }
            } else if let Some(session) = state.idle.pop() {
                return Ok(Some(session));
            }
            if state.open < self.size {
                state.open += 1;
                drop(state);
                return Session::start(&self.endpoint)
                    .map(Some)
                    .inspect_err(|_| self.release(None));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            state = self
                .freed
                .wait_timeout(state, left)
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
        }
    }

    /// Starts every session of the pool at once: virsh connects as it
    /// starts (over ssh, a handshake of a few hundred ms), so the sessions
    /// that parallel work needs later connect while the first call runs.
    /// A session that cannot start is left to the call that needs it,
    /// which reports why.
    pub(super) fn start_all(&self) {
        let mut state = lock(&self.state);
        while state.open < self.size {
            match Session::start(&self.endpoint) {
                Ok(session) => {
                    state.idle.push(session);
                    state.open += 1;
                }
                Err(_) => break,
            }
        }
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
        match session {
            Some(session) => state.idle.push(session),
            None => state.open -= 1,
        }
        self.freed.notify_one();
    }
}
