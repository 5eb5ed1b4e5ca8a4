//! Running a list of jobs on a few worker threads under one progress bar: the costliest jobs
//! first, results in job order, the first error stopping the rest.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;

use anyhow::{anyhow, Result};

use crate::progress::Progress;

/// A progress bar over the total cost of several job lists, with the current job as its message.
pub struct Tracker {
    progress: Progress,
    position: u64,
}

impl Tracker {
    /// A bar named `name` over `total` units of cost, each one `unit`; `show = false` hides it.
    pub fn new(name: &str, total: u64, unit: &str, show: bool) -> Tracker {
        Tracker {
            progress: Progress::new(name, total.max(1), unit, show),
            position: 0,
        }
    }

    fn advance(&mut self, units: u64) {
        if units == 0 {
            return;
        }
        self.position += units;
        self.progress.set_position(self.position);
    }

    pub fn finish(&self) {
        self.progress.finish();
    }
}

/// What a worker tells the thread that drives the bar.
enum Event<R> {
    Started(usize),
    Advance(u64),
    Done(usize, Result<R>, u64),
}

/// Runs `work` on every job with up to `threads` workers, the costliest first (so that a long job
/// does not run alone at the end); results come back in job order. The first error stops the
/// remaining jobs and is returned. `describe` gives each job's progress message and cost; `work`
/// may report part of its cost as it goes.
pub fn run_jobs<J: Sync, R: Send>(
    jobs: &[J],
    threads: usize,
    tracker: &mut Tracker,
    describe: impl Fn(&J) -> (String, u64) + Sync,
    work: impl Fn(&J, &dyn Fn(u64)) -> Result<R> + Sync,
) -> Result<Vec<R>> {
    let mut order: Vec<usize> = (0..jobs.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(describe(&jobs[i]).1));
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let (sender, receiver) = mpsc::channel::<Event<R>>();
    let mut results: Vec<Option<R>> = (0..jobs.len()).map(|_| None).collect();
    let mut first_error = None;
    std::thread::scope(|scope| {
        for _ in 0..threads.clamp(1, jobs.len().max(1)) {
            let sender = sender.clone();
            let (next, failed, work, describe, order) = (&next, &failed, &work, &describe, &order);
            scope.spawn(move || loop {
                if failed.load(Ordering::Relaxed) {
                    break;
                }
                let Some(&i) = order.get(next.fetch_add(1, Ordering::Relaxed)) else {
                    break;
                };
                let job = &jobs[i];
                let _ = sender.send(Event::Started(i));
                let reported = std::cell::Cell::new(0u64);
                let report = |units: u64| {
                    reported.set(reported.get() + units);
                    let _ = sender.send(Event::Advance(units));
                };
                let result = work(job, &report);
                if result.is_err() {
                    failed.store(true, Ordering::Relaxed);
                }
                let rest = describe(job).1.saturating_sub(reported.get());
                let _ = sender.send(Event::Done(i, result, rest));
            });
        }
        drop(sender);
        for event in receiver {
            match event {
                Event::Started(i) => tracker.progress.set_message(describe(&jobs[i]).0),
                Event::Advance(units) => tracker.advance(units),
                Event::Done(i, result, rest) => {
                    tracker.advance(rest);
                    match result {
                        Ok(r) => results[i] = Some(r),
                        Err(e) => {
                            first_error.get_or_insert(e);
                        }
                    }
                }
            }
        }
    });
    if let Some(e) = first_error {
        return Err(e);
    }
    results
        .into_iter()
        .map(|r| r.ok_or_else(|| anyhow!("an evaluation job did not finish")))
        .collect()
}
