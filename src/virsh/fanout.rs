//! The schedules that spread one connection's calls over its sessions, on
//! the worker pool ([`crate::workers`]): a long list cut into parts run
//! side by side, and the calls of a part past its deadline run again one
//! at a time, so that a hung domain costs its own calls only.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::error::VirshError;
use crate::mutex::lock;
use crate::workers;

/// Below this many commands a batch stays on one session: a second one
/// costs a process (over ssh, a handshake) before it saves anything.
pub(super) const COMMANDS_PER_SESSION: usize = 200;

/// How long, in `--timeout`s of answered calls, the calls of a batch that
/// overran its deadline may still be started one at a time: twice what
/// the batch had, as one at a time costs a round trip each.
const RETRY_WINDOW: u32 = 2;

/// After how many timeouts a worker of the retries stops: two hung
/// domains on one session still leave the calls between them answered.
const RETRY_STRIKES: u32 = 2;

/// One call: `command --domain NAME`, as `(NAME, command)`.
pub(super) type Call<'a> = (&'a str, &'a [&'a str]);

/// A call's outcome: `Ok(None)` where its command failed for the domain,
/// `Err` where no answer came for it.
pub(super) type Outcome = Result<Option<String>, VirshError>;

/// The outputs of calls run in one batch, each `None` where its command
/// failed, or why no answer came.
pub(super) type Sections = Result<Vec<Option<String>>, VirshError>;

/// One part of a list run side by side.
pub(super) struct Part<R> {
    /// Which items it ran.
    pub(super) items: Range<usize>,
    /// Its results, one per item, or why it gave none.
    pub(super) result: Result<Vec<R>, VirshError>,
}

/// Runs `job` on `items`, a long list cut into at most `parts` parts (of
/// at least [`COMMANDS_PER_SESSION`] items each), side by side on a
/// worker each: libvirtd answers them in parallel. Each part's range of
/// `items` with its result, in the items' order.
pub(super) fn side_by_side<T: Sync, R: Send>(
    items: &[T],
    parts: usize,
    job: impl Fn(&[T]) -> Result<Vec<R>, VirshError> + Sync,
) -> Vec<Part<R>> {
    let parts = items
        .len()
        .div_ceil(COMMANDS_PER_SESSION)
        .clamp(1, parts.max(1));
    let chunks: Vec<_> = items.chunks(items.len().div_ceil(parts).max(1)).collect();
    let results = workers::bounded(&chunks, chunks.len(), Duration::ZERO, |chunk| job(chunk));
    let mut start = 0;
    chunks
        .iter()
        .zip(results)
        .map(|(chunk, result)| {
            let items = start..start + chunk.len();
            start = items.end;
            Part { items, result }
        })
        .collect()
}

/// How the calls of a part past its deadline are run again, each alone.
pub(super) struct Alone<F> {
    /// The connection's sessions: how many calls may be out at once.
    pub(super) sessions: usize,
    /// `--timeout`, which bounds each call.
    pub(super) timeout: Duration,
    /// Runs calls in one batch, each output `None` where its command
    /// failed.
    pub(super) run: F,
}

/// Each call's outcome from the result of its part (see
/// [`side_by_side`]): a part past its deadline that names several
/// domains is run again a call at a time ([`retry_alone`]).
pub(super) fn isolate<F>(
    calls: &[Call],
    results: Vec<Part<Option<String>>>,
    alone: &Alone<F>,
) -> Vec<Outcome>
where
    F: Fn(&[Call]) -> Sections + Sync,
{
    let mut outcomes = Vec::with_capacity(calls.len());
    let mut again = Vec::new();
    for Part { items, result } in results {
        match result {
            Ok(sections) => outcomes.extend(sections.into_iter().map(Ok)),
            Err(error) => {
                let chunk = &calls[items.clone()];
                let several = chunk.iter().any(|(name, _)| *name != chunk[0].0);
                if error.is_timeout() && several {
                    again.extend(items.clone());
                }
                outcomes.extend(chunk.iter().map(|_| Err(error.clone())));
            }
        }
    }
    for (index, outcome) in retry_alone(calls, &again, alone) {
        outcomes[index] = outcome;
    }
    outcomes
}

/// The calls of `calls` at `indices` (their batch overran its deadline),
/// each alone, pulled from one queue by at most `sessions` workers on
/// the connection's own sessions: a hung call holds one session while
/// the others go on. Once a domain's call has timed out, its other calls
/// are not sent.
///
/// The bound: a worker starts calls for [`RETRY_WINDOW`] × `--timeout`
/// of answered calls (the time its timed-out calls took does not count,
/// so the calls after a hung one get theirs wherever it stood) and stops
/// at its [`RETRY_STRIKES`]th timeout. Each call is bounded by
/// `--timeout`, so the retries end within (1 + [`RETRY_WINDOW`] +
/// [`RETRY_STRIKES`]) × `--timeout`, the whole read within one more
/// (waits for a place of the fleet's budget aside); a call not started
/// by then keeps its batch's error. Each timeout kills one session,
/// which the next call replaces: at most [`RETRY_STRIKES`] per worker.
fn retry_alone<F>(calls: &[Call], indices: &[usize], alone: &Alone<F>) -> Vec<(usize, Outcome)>
where
    F: Fn(&[Call]) -> Sections + Sync,
{
    if indices.is_empty() {
        return Vec::new();
    }
    let window = alone.timeout * RETRY_WINDOW;
    let queue = Mutex::new(indices.iter().copied());
    let hung: Mutex<HashMap<&str, VirshError>> = Mutex::new(HashMap::new());
    let workers: Vec<usize> = (0..alone.sessions.clamp(1, indices.len())).collect();
    let work = |_: &usize| {
        let mut done = Vec::new();
        let mut start_by = Instant::now() + window;
        let mut strikes = 0;
        while strikes < RETRY_STRIKES && Instant::now() < start_by {
            let Some(index) = lock(&queue).next() else {
                break;
            };
            let name = calls[index].0;
            if let Some(error) = lock(&hung).get(name) {
                done.push((index, Err(error.clone())));
                continue;
            }
            let sent = Instant::now();
            let outcome =
                (alone.run)(&calls[index..=index]).map(|mut sections| sections.pop().flatten());
            if let Err(error) = &outcome
                && error.is_timeout()
            {
                strikes += 1;
                start_by += sent.elapsed();
                lock(&hung).insert(name, error.clone());
            }
            done.push((index, outcome));
        }
        done
    };
    workers::bounded(&workers, workers.len(), Duration::ZERO, work)
        .into_iter()
        .flatten()
        .collect()
}
