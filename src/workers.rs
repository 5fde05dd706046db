//! Worker threads, a bounded number of them: a list of jobs (domains to
//! probe, hosts to scan, hosts to ask for completions) run side by side,
//! the results handed back in the jobs' order.

use std::sync::Condvar;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use crate::mutex::lock;

/// Runs `job` on every item, on at most `workers` threads at once, and
/// returns the results in the items' order. Each worker takes the next
/// item as it finishes one, so a slow item holds up only its own worker.
///
/// With a nonzero `lead`, the first item runs alone until it is done or
/// `lead` has passed: its answer may make the others quick (a driver that
/// refuses them all), and a slow answer still lets them start in time.
pub(crate) fn bounded<T: Sync, R: Send>(
    items: &[T],
    workers: usize,
    lead: Duration,
    job: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let next = AtomicUsize::new(0);
    let first_done = (Mutex::new(false), Condvar::new());
    let mut results: Vec<(usize, R)> = thread::scope(|scope| {
        let threads: Vec<_> = (0..workers.clamp(1, items.len().max(1)))
            .map(|worker| {
                let (next, first_done, job) = (&next, &first_done, &job);
                scope.spawn(move || {
                    if worker > 0 && !lead.is_zero() {
                        let (flag, signal) = first_done;
                        let _ = signal.wait_timeout_while(lock(flag), lead, |done| !*done);
                    }
                    let mut done = Vec::new();
                    loop {
                        let index = next.fetch_add(1, Ordering::SeqCst);
                        let Some(item) = items.get(index) else { break };
                        done.push((index, job(item)));
                        if index == 0 {
                            *lock(&first_done.0) = true;
                            first_done.1.notify_all();
                        }
                    }
                    done
                })
            })
            .collect();
        threads
            .into_iter()
            .flat_map(|thread| {
                thread
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    results.sort_unstable_by_key(|(index, _)| *index);
    results.into_iter().map(|(_, result)| result).collect()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;
    use std::sync::mpsc;

    use super::*;

    /// Counts the jobs running at this moment and the most ever seen.
    #[derive(Default)]
    struct Concurrency {
        now: AtomicUsize,
        most: AtomicUsize,
    }

    impl Concurrency {
        fn during<R>(&self, job: impl FnOnce() -> R) -> R {
            let running = self.now.fetch_add(1, Ordering::SeqCst) + 1;
            self.most.fetch_max(running, Ordering::SeqCst);
            let result = job();
            self.now.fetch_sub(1, Ordering::SeqCst);
            result
        }
    }

    #[test]
    fn results_come_back_in_the_items_order_each_item_once() {
        let items: Vec<usize> = (0..50).collect();
        let calls = AtomicUsize::new(0);
        let results = bounded(&items, 4, Duration::ZERO, |&item| {
            calls.fetch_add(1, Ordering::SeqCst);
            // Early items finish last, so completion order differs.
            thread::sleep(Duration::from_micros(50 * (50 - item as u64)));
            item * 10
        });
        assert_eq!(results, items.iter().map(|i| i * 10).collect::<Vec<_>>());
        assert_eq!(calls.into_inner(), items.len());
    }

    #[test]
    fn never_more_jobs_at_once_than_workers() {
        for workers in [1, 2, 3, 8] {
            let concurrency = Concurrency::default();
            let items = [(); 40];
            let results = bounded(&items, workers, Duration::ZERO, |_| {
                concurrency.during(|| thread::sleep(Duration::from_millis(1)))
            });
            assert_eq!(results.len(), items.len());
            let most = concurrency.most.into_inner();
            assert!(
                (1..=workers).contains(&most),
                "{most} at once, {workers} workers"
            );
        }
    }

    #[test]
    fn no_items_and_more_workers_than_items() {
        let none: [u8; 0] = [];
        assert!(bounded(&none, 4, Duration::from_secs(3600), |&b| b).is_empty());
        let concurrency = Concurrency::default();
        let results = bounded(&[1, 2, 3], 16, Duration::ZERO, |&n| {
            concurrency.during(|| n + 1)
        });
        assert_eq!(results, [2, 3, 4]);
        assert!(concurrency.most.into_inner() <= 3);
        assert_eq!(
            bounded(&[7], 0, Duration::ZERO, |&n| n),
            [7],
            "0: one worker"
        );
    }

    #[test]
    fn with_a_lead_the_first_item_runs_alone_until_done() {
        let first_done = AtomicBool::new(false);
        let items: Vec<usize> = (0..12).collect();
        // An hour's lead: the others wait for the first item's end, not
        // for the lead to pass.
        let started_after_first = bounded(&items, 4, Duration::from_secs(3600), |&item| {
            if item == 0 {
                thread::sleep(Duration::from_millis(20));
                first_done.store(true, Ordering::SeqCst);
                true
            } else {
                first_done.load(Ordering::SeqCst)
            }
        });
        assert!(started_after_first.iter().all(|&after| after));
    }

    #[test]
    fn a_slow_first_item_lets_the_others_start_once_the_lead_has_passed() {
        let (sender, receiver) = mpsc::channel();
        let (sender, receiver) = (Mutex::new(sender), Mutex::new(receiver));
        let results = bounded(&[0, 1, 2], 2, Duration::from_millis(10), |&item| {
            if item == 0 {
                // Ends only once another item has run.
                lock(&receiver)
                    .recv_timeout(Duration::from_secs(30))
                    .is_ok()
            } else {
                lock(&sender).send(()).is_ok()
            }
        });
        assert_eq!(results, [true, true, true]);
    }
}
