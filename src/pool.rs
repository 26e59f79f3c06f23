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

use std::collections::VecDeque;

use crossbeam_channel::{unbounded, Sender};

/// What the pool hands back for each job.
pub enum Done<J, R> {
    Finished(R),
    /// The pool stopped before this job started.
    NotStarted(J),
}

/// The result handler's hold on the pool: stop it from starting more jobs (running ones
/// finish), or hand out the next jobs now, before slow work on the result it is handling.
pub struct Control<'a, J> {
    queue: VecDeque<J>,
    in_flight: usize,
    workers: usize,
    tx: Sender<J>,
    stop: bool,
    may_start: &'a (dyn Fn() -> bool + Sync),
}

impl<J> Control<'_, J> {
    pub fn stop_starting(&mut self) {
        self.stop = true;
    }

    pub fn stopped(&self) -> bool {
        self.stop
    }

    /// Starts queued jobs until every slot is busy. Called by the pool after each result is
    /// handled; a handler may call it earlier, once it knows the pool may go on, so that a
    /// slow step (a git merge) does not keep a slot idle.
    pub fn fill(&mut self) {
        while self.in_flight < self.workers && !self.stop {
            if !(self.may_start)() {
                self.stop = true;
                break;
            }
            let Some(job) = self.queue.pop_front() else {
                break;
            };
            // The workers hold the receiver until the sender is dropped at the end.
            let _ = self.tx.send(job);
            self.in_flight += 1;
        }
    }
}

/// Runs `jobs` on `slots` worker threads; `work` runs on a worker, `on_done` on the calling
/// thread for each job in completion order. `may_start` is checked before each job starts
/// (interrupts); a `false` stops the pool as `Control::stop_starting` does.
///
/// The calling thread hands a job to a worker only when a slot is free, once the result that
/// freed it has been looked at (or when the handler calls `Control::fill`). That costs one
/// channel hop per job and buys an exact stop: once `on_done` says stop (the budget is spent),
/// no job starts that it has not seen the cost of.
pub fn run<J, R>(
    slots: usize,
    jobs: Vec<J>,
    may_start: impl Fn() -> bool + Sync,
    work: impl Fn(J) -> R + Sync,
    mut on_done: impl FnMut(Done<J, R>, &mut Control<'_, J>),
) where
    J: Send,
    R: Send,
{
    if jobs.is_empty() {
        return;
    }
    let workers = slots.max(1).min(jobs.len());
    let (job_tx, job_rx) = unbounded::<J>();
    let (done_tx, done_rx) = unbounded::<R>();
    let mut control = Control {
        queue: jobs.into(),
        in_flight: 0,
        workers,
        tx: job_tx,
        stop: false,
        may_start: &may_start,
    };
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
        drop(job_rx);
        control.fill();
        while control.in_flight > 0 {
            let Ok(result) = done_rx.recv() else { break };
            control.in_flight -= 1;
            on_done(Done::Finished(result), &mut control);
            control.fill();
        }
        // Dropping the sender ends the workers' loops.
        let (tx, _) = unbounded();
        drop(std::mem::replace(&mut control.tx, tx));
        let left: Vec<J> = control.queue.drain(..).collect();
        for job in left {
            on_done(Done::NotStarted(job), &mut control);
        }
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
}
