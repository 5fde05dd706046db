//! End-to-end tests against the real libvirt + QEMU lab (`scripts/lab up`):
//! one binary of modules, one per area, under one libtest-mimic harness.
//! Each case is named `MODULE::FUNCTION` (`cargo test --test lab --
//! media::` runs one module). Without the lab every case is listed as
//! ignored, by name; with `DISMOUNT_LAB_REQUIRED=1` (CI) a missing lab
//! fails. A case that finds the lab unfit for it at run time says so on a
//! line of its own (`lab: … skipped: …`), never passing with nothing
//! checked.

#[path = "../common/mod.rs"]
mod common;

/// `cases!(Alone; first, second)`: the module's cases, each a function
/// named once (its name is the case's).
macro_rules! cases {
    ($schedule:ident; $($case:ident),+ $(,)?) => {
        $crate::Cases::new(
            $crate::Schedule::$schedule,
            vec![$((
                stringify!($case),
                Box::new(|| $crate::Outcome::completion($case())) as _,
            )),+],
        )
    };
}

mod boot;
mod faults;
mod fleet;
mod guests;
mod library;
mod media;
mod migrate;
mod package;
mod serve;
mod shapes;

use std::process::ExitCode;
use std::sync::{Arc, Condvar, Mutex, PoisonError};

use libtest_mimic::{Arguments, Completion, Failed, Trial};

/// How a module's cases run: never beside another module's (each assumes
/// the lab as the ones before left it, and some restart libvirtd), and in
/// the order they are listed.
#[derive(Clone, Copy)]
pub enum Schedule {
    /// Side by side with the module's other cases (they only read).
    Together,
    /// One at a time (they change the same guests, pools or scratch
    /// domains, or measure the machine).
    Alone,
}

/// A case's function: `Result<(), Failed>`, or `Result<Completion,
/// Failed>` where it may find the lab unfit for it.
pub trait Outcome {
    fn completion(self) -> Result<Completion, Failed>;
}

impl Outcome for Result<(), Failed> {
    fn completion(self) -> Result<Completion, Failed> {
        self.map(|()| Completion::Completed)
    }
}

impl Outcome for Result<Completion, Failed> {
    fn completion(self) -> Result<Completion, Failed> {
        self
    }
}

type Run = Box<dyn FnOnce() -> Result<Completion, Failed> + Send>;

/// A module's cases and how they run.
pub struct Cases {
    schedule: Schedule,
    cases: Vec<(&'static str, Run)>,
}

impl Cases {
    pub fn new(schedule: Schedule, cases: Vec<(&'static str, Run)>) -> Cases {
        Cases { schedule, cases }
    }
}

fn main() -> ExitCode {
    let modules = [
        ("guests", guests::cases()),
        ("boot", boot::cases()),
        ("faults", faults::cases()),
        ("fleet", fleet::cases()),
        ("library", library::cases()),
        ("media", media::cases()),
        ("migrate", migrate::cases()),
        ("package", package::cases()),
        ("serve", serve::cases()),
        ("shapes", shapes::cases()),
    ];
    let args = Arguments::from_args();
    let lab = common::lab_is_up();
    if let Err(reason) = &lab {
        if common::lab_required() {
            eprintln!("DISMOUNT_LAB_REQUIRED=1 but the lab is not up: {reason}");
            return ExitCode::FAILURE;
        }
        eprintln!("lab tests ignored: {reason} (run `scripts/lab up` as root)");
    }
    let ignored = lab.is_err();
    let order = Arc::new(Order::default());
    let mut trials = Vec::new();
    let mut runs = 0;
    for (module, Cases { schedule, cases }) in modules {
        let first = runs;
        for (name, run) in cases {
            let name = format!("{module}::{name}");
            // Whether the harness runs the case (it runs what it neither
            // filters out nor ignores), asked of a stand-in of its name.
            let probe = Trial::test(&name, || Ok(())).with_ignored_flag(ignored);
            // Its place among the cases that run, and the place before
            // which all must have finished: its own (one at a time) or its
            // module's first (side by side).
            let place = (!args.is_filtered_out(&probe) && !args.is_ignored(&probe)).then(|| {
                runs += 1;
                let after = match schedule {
                    Schedule::Alone => runs - 1,
                    Schedule::Together => first,
                };
                (runs - 1, after)
            });
            let order = Arc::clone(&order);
            let label = name.clone();
            let trial = Trial::ignorable_test(name, move || {
                let _turn = place.map(|(at, after)| order.wait(at, after));
                let outcome = run();
                if let Ok(Completion::Ignored {
                    reason: Some(reason),
                }) = &outcome
                {
                    eprintln!("lab: {label} skipped: {reason}");
                }
                outcome
            });
            trials.push(trial.with_ignored_flag(ignored));
        }
    }
    libtest_mimic::run(&args, trials).exit_code()
}

/// The cases that run, in the order listed: which have finished, and how
/// many from the first have all finished.
#[derive(Default)]
struct Order {
    state: Mutex<(Vec<bool>, usize)>,
    changed: Condvar,
}

/// A case's turn: its place is marked finished when dropped, whether the
/// case returned or panicked.
struct Turn<'a> {
    order: &'a Order,
    at: usize,
}

impl Order {
    /// Waits until every case before place `after` has finished. The
    /// harness's threads take cases in the listed order, so the earliest
    /// unfinished case never waits: no deadlock.
    fn wait(&self, at: usize, after: usize) -> Turn<'_> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let _state = self
            .changed
            .wait_while(state, |(_, done)| *done < after)
            .unwrap_or_else(PoisonError::into_inner);
        Turn { order: self, at }
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let mut state = self
            .order
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let (finished, done) = &mut *state;
        if finished.len() <= self.at {
            finished.resize(self.at + 1, false);
        }
        finished[self.at] = true;
        while finished.get(*done) == Some(&true) {
            *done += 1;
        }
        drop(state);
        self.order.changed.notify_all();
    }
}
