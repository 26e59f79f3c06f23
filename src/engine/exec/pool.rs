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
//!
//! A job that cannot start yet (its provider is held off by a limit) can be handed back to the
//! pool with a time (`Control::defer`): it is queued again then, while other jobs run, so it
//! starts when its hold ends, not when the rest of the phase is done. A deferred job the pool
//! cannot wait for (nothing else is running, or the pool stopped) comes back as
//! [`Done::Deferred`]: the caller decides about that wait (how long it may be, what to tell).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crossbeam_channel::unbounded;

/// What the pool hands back for each job.
pub enum Done<J, R> {
    Finished(R),
    /// The pool stopped before this job started.
    NotStarted(J),
    /// A job given to `Control::defer` that was still waiting when the pool had nothing else to
    /// run (or stopped): the pool does not wait idle for it.
    Deferred(J),
}

/// Lets the result handler stop the pool from starting more jobs (running jobs finish), or start
/// the next ones before it has finished handling a result.
pub struct Control<'a, J> {
    stop: &'a AtomicBool,
    refill: &'a dyn Fn(),
    deferred: &'a RefCell<Vec<(Instant, J)>>,
}

impl<J> Control<'_, J> {
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

    /// Queues `job` again at `at` (at the front: it was due before the jobs still waiting), if
    /// other jobs are still running then; else it comes back as [`Done::Deferred`].
    pub fn defer(&self, job: J, at: Instant) {
        self.deferred.borrow_mut().push((at, job));
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
    mut on_done: impl FnMut(Done<J, R>, &Control<J>),
) where
    J: Send,
    R: Send,
{
    if jobs.is_empty() {
        return;
    }
    let workers = slots.max(1).min(jobs.len());
    let queue: RefCell<VecDeque<J>> = RefCell::new(jobs.into());
    let deferred: RefCell<Vec<(Instant, J)>> = RefCell::new(Vec::new());
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
            // The deferred jobs that are due go first: they were due before the rest. A stopped
            // pool leaves them deferred, to come back as such.
            if !stop.load(Ordering::SeqCst) {
                let now = Instant::now();
                let mut d = deferred.borrow_mut();
                // Latest due first, each put at the front: the earliest due starts first.
                d.sort_by_key(|(at, _)| std::cmp::Reverse(*at));
                let first_due = d.partition_point(|(at, _)| *at > now);
                let mut q = queue.borrow_mut();
                for (_, job) in d.drain(first_due..) {
                    q.push_front(job);
                }
            }
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
            deferred: &deferred,
        };
        refill();
        while in_flight.get() > 0 {
            // Wake for the first deferred job that falls due, or for a result.
            let due = deferred.borrow().iter().map(|(at, _)| *at).min();
            let result = match due {
                Some(at) => match done_rx.recv_deadline(at) {
                    Ok(r) => Some(r),
                    Err(crossbeam_channel::RecvTimeoutError::Timeout) => None,
                    Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
                },
                None => match done_rx.recv() {
                    Ok(r) => Some(r),
                    Err(_) => break,
                },
            };
            if let Some(result) = result {
                in_flight.set(in_flight.get() - 1);
                on_done(Done::Finished(result), &control);
            }
            refill();
        }
        // What is left never starts. One at a time: the handler may call `start_next`, which
        // borrows the queue (and, stopped, starts nothing). A job deferred now comes back as
        // `Deferred` in turn: none is dropped (a handler that defers what it gets back as
        // `Deferred` would loop; the round's does not).
        stop.store(true, Ordering::SeqCst);
        loop {
            let Some(job) = queue.borrow_mut().pop_front() else {
                break;
            };
            on_done(Done::NotStarted(job), &control);
        }
        loop {
            let Some((_, job)) = deferred.borrow_mut().pop() else {
                break;
            };
            on_done(Done::Deferred(job), &control);
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
                Done::Deferred(_) => unreachable!("nothing is deferred"),
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

    #[test]
    fn a_deferred_job_starts_when_it_is_due_while_others_still_run() {
        // Two slots: job 0 runs 600 ms; job 1 is "held" on its first try and deferred 100 ms.
        // It must run again at ~100 ms, beside job 0, not after job 0 ends.
        let t0 = Instant::now();
        let ran = std::sync::Mutex::new(Vec::new());
        let mut deferred_back = 0;
        run(
            2,
            vec![(0u8, true), (1, false)],
            || true,
            |j| {
                if j.0 == 0 {
                    std::thread::sleep(Duration::from_millis(600));
                }
                ran.lock().unwrap().push((j, t0.elapsed()));
                j
            },
            |d, c| match d {
                Done::Finished((1, false)) => c.defer((1, true), Instant::now() + ms(100)),
                Done::Finished(_) => {}
                Done::NotStarted(_) => panic!("nothing is stopped"),
                Done::Deferred(_) => deferred_back += 1,
            },
        );
        let ran = ran.into_inner().unwrap();
        let again = ran
            .iter()
            .find(|(j, _)| *j == (1, true))
            .expect("ran again");
        let long = ran.iter().find(|(j, _)| j.0 == 0).unwrap();
        assert!(again.1 >= ms(100), "{ran:?}");
        assert!(
            again.1 < long.1,
            "ran again after the long job ended: {ran:?}"
        );
        assert_eq!(deferred_back, 0);
    }

    #[test]
    fn a_deferred_job_comes_back_when_nothing_else_runs() {
        // The pool does not sit idle waiting for a hold: that wait is the caller's.
        let t0 = Instant::now();
        let mut back = Vec::new();
        run(
            2,
            vec![(7u8, false)],
            || true,
            |j| j,
            |d, c| match d {
                Done::Finished((7, false)) => c.defer((7, true), Instant::now() + ms(5000)),
                Done::Deferred(j) => back.push(j),
                _ => panic!("unexpected"),
            },
        );
        assert_eq!(back, vec![(7, true)]);
        assert!(t0.elapsed() < ms(2000), "waited for the deferred job");
    }

    #[test]
    fn due_deferred_jobs_start_before_the_queued_ones_and_a_stop_hands_them_back() {
        // One slot. Job 0 defers job 9 (due at once) when it ends: 9 must start before 1 and
        // 2, which were queued. Then 9's handler stops the pool and defers 8: 8 comes back as
        // Deferred, 1 and 2 as NotStarted.
        let order = std::sync::Mutex::new(Vec::new());
        let mut not_started = Vec::new();
        let mut back = Vec::new();
        run(
            1,
            vec![0u8, 1, 2],
            || true,
            |j| {
                order.lock().unwrap().push(j);
                j
            },
            |d, c| match d {
                Done::Finished(0) => c.defer(9, Instant::now()),
                Done::Finished(9) => {
                    c.stop_starting();
                    c.defer(8, Instant::now());
                }
                Done::Finished(j) => panic!("{j} started after the stop"),
                Done::NotStarted(j) => not_started.push(j),
                Done::Deferred(j) => back.push(j),
            },
        );
        assert_eq!(order.into_inner().unwrap(), vec![0, 9]);
        assert_eq!(not_started, vec![1, 2]);
        assert_eq!(back, vec![8]);
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }
}
