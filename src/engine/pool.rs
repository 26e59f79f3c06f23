//! The agent pool: a fixed number of worker threads pull jobs from a crossbeam queue and push
//! each result onto a completion channel that the calling (main) thread drains, handling every
//! result as it arrives, in completion order.
//!
//! One code path serves one agent and many. The queue is filled in the order the caller gives
//! (scheduling is the caller's business); as a slot frees, the next job starts at once
//! (queue-drain, no batches). The caller's `on_done` runs on the calling thread, so it may own
//! all the mutable state (cost, tracking, git merges) without locks; through [`Control`] it can
//! stop the pool from starting more jobs (budget reached), and jobs that never started come back
//! as [`Done::NotStarted`] so nothing is silently dropped.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};

use crossbeam_channel::unbounded;

/// What the pool hands back for each job.
pub enum Done<J, R> {
    Finished(R),
    /// The pool stopped before this job started.
    NotStarted(J),
}

/// Lets the result handler stop the pool from starting more jobs (running jobs finish), or start
/// the next ones before it has finished handling a result.
pub struct Control<'a> {
    stop: &'a AtomicBool,
    refill: &'a dyn Fn(),
}

impl Control<'_> {
    pub fn stop_starting(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Fills the free slots now instead of when the handler returns. For a handler that knows
    /// early that the pool may go on (it has counted the result's cost) and has slow work left
    /// (merging a worktree): the next job need not wait for that work.
    pub fn start_next(&self) {
        (self.refill)()
    }
}

/// Runs `jobs` on `slots` worker threads; `work` runs on a worker, `on_done` on the calling
/// thread for each job in completion order. `may_start` is checked before each job starts
/// (interrupts); a `false` stops the pool as `Control::stop_starting` does.
///
/// The calling thread hands a job to a worker only when a slot is free, once the handler has
/// seen the result that freed it: when the handler returns, or earlier if it calls
/// `Control::start_next`. That costs one channel hop per job and buys an exact stop: once
/// `on_done` says stop (the budget is spent), no job starts that it has not seen the cost of.
pub fn run<J, R>(
    slots: usize,
    jobs: Vec<J>,
    may_start: impl Fn() -> bool + Sync,
    work: impl Fn(J) -> R + Sync,
    mut on_done: impl FnMut(Done<J, R>, &Control),
) where
    J: Send,
    R: Send,
{
    if jobs.is_empty() {
        return;
    }
    let workers = slots.max(1).min(jobs.len());
    let queue: RefCell<VecDeque<J>> = RefCell::new(jobs.into());
    let in_flight = Cell::new(0usize);
    let stop = AtomicBool::new(false);
    let (job_tx, job_rx) = unbounded::<J>();
    let (done_tx, done_rx) = unbounded::<R>();
    std::thread::scope(|s| {
        for i in 0..workers {
            let job_rx = job_rx.clone();
            let done_tx = done_tx.clone();
            let work = &work;
            std::thread::Builder::new()
                .name(format!("orch-worker-{i}"))
                .spawn_scoped(s, move || {
                    for job in job_rx.iter() {
                        if done_tx.send(work(job)).is_err() {
                            break;
                        }
                    }
                })
                .expect("spawning a worker thread");
        }
        drop(done_tx);
        let refill = || {
            while in_flight.get() < workers && !stop.load(Ordering::SeqCst) {
                if !may_start() {
                    stop.store(true, Ordering::SeqCst);
                    break;
                }
                let Some(job) = queue.borrow_mut().pop_front() else {
                    break;
                };
                // The workers hold the receiver until job_tx is dropped below.
                let _ = job_tx.send(job);
                in_flight.set(in_flight.get() + 1);
            }
        };
        let control = Control {
            stop: &stop,
            refill: &refill,
        };
        refill();
        while in_flight.get() > 0 {
            let Ok(result) = done_rx.recv() else { break };
            in_flight.set(in_flight.get() - 1);
            on_done(Done::Finished(result), &control);
            refill();
        }
        // What is left never starts. One at a time: the handler may call `start_next`, which
        // borrows the queue (and, stopped, starts nothing).
        stop.store(true, Ordering::SeqCst);
        loop {
            let Some(job) = queue.borrow_mut().pop_front() else {
                break;
            };
            on_done(Done::NotStarted(job), &control);
        }
        // The workers end when the queue's sender is gone.
        drop(job_tx);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn results_arrive_in_completion_order_and_slots_drain_the_queue() {
        let jobs = vec![300u64, 50, 100];
        let t0 = Instant::now();
        let mut order = Vec::new();
        run(
            2,
            jobs,
            || true,
            |ms| {
                std::thread::sleep(Duration::from_millis(ms));
                ms
            },
            |d, _| {
                if let Done::Finished(ms) = d {
                    order.push(ms)
                }
            },
        );
        // 50 ends first, 100 starts at once in its slot and ends at ~150, 300 last.
        assert_eq!(order, vec![50, 100, 300]);
        assert!(t0.elapsed() < Duration::from_millis(1000));
    }

    #[test]
    fn stop_starting_returns_the_jobs_not_started() {
        let mut finished = 0;
        let mut not_started = 0;
        run(
            1,
            vec![1, 2, 3, 4],
            || true,
            |j| j,
            |d, c| match d {
                Done::Finished(_) => {
                    finished += 1;
                    c.stop_starting();
                }
                Done::NotStarted(_) => not_started += 1,
            },
        );
        // The first result stops the pool: exactly one job ran.
        assert_eq!((finished, not_started), (1, 3));
    }

    #[test]
    fn start_next_starts_the_next_job_before_the_handler_returns() {
        // One slot; the handler of the first job calls start_next, then does slow work. The
        // second job must start during that work, not after it.
        let t0 = Instant::now();
        let mut handler_returned = Vec::new();
        let started = std::sync::Mutex::new(Vec::new());
        run(
            1,
            vec![0u8, 1],
            || true,
            |j| {
                started.lock().unwrap().push((j, t0.elapsed()));
                j
            },
            |d, c| {
                if let Done::Finished(0) = d {
                    c.start_next();
                    std::thread::sleep(Duration::from_millis(300));
                    handler_returned.push(t0.elapsed());
                }
            },
        );
        let started = started.into_inner().unwrap();
        assert_eq!(started.len(), 2);
        assert!(
            started[1].1 < handler_returned[0],
            "job 1 started at {:?}, after the handler returned at {:?}",
            started[1].1,
            handler_returned[0]
        );
    }
}
