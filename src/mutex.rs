//! Locking that outlives a panic: a thread that panicked while holding a
//! lock (a bug, reported as such) must not take every later scan with it.

use std::sync::{Mutex, MutexGuard};

/// The guard, whether or not a previous holder panicked.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
