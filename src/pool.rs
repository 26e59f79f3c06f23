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

use std::sync::atomic::{AtomicBool, Ordering};

use crossbeam_channel::unbounded;

/// What the pool hands back for each job.
pub enum Done<J, R> {
    Finished(R),
    /// The pool stopped before this job started.
    NotStarted(J),
}

/// Lets the result handler stop the pool from starting more jobs; running jobs finish.
pub struct Control {
    stop: AtomicBool,
}

impl Control {
    pub fn stop_starting(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}

/// Runs `jobs` on `slots` worker threads; `work` runs on a worker, `on_done` on the calling
/// thread for each job in completion order. `may_start` is checked before each job starts
/// (interrupts); a `false` stops the pool as `Control::stop_starting` does.
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
    let (job_tx, job_rx) = unbounded::<J>();
    for job in jobs {
        // The receiver is alive until this function returns.
        let _ = job_tx.send(job);
    }
    drop(job_tx);
    let control = Control {
        stop: AtomicBool::new(false),
    };
    let (done_tx, done_rx) = unbounded::<Done<J, R>>();
    std::thread::scope(|s| {
        for i in 0..workers {
            let job_rx = job_rx.clone();
            let done_tx = done_tx.clone();
            let (work, may_start, control) = (&work, &may_start, &control);
            std::thread::Builder::new()
                .name(format!("orch-worker-{i}"))
                .spawn_scoped(s, move || {
                    for job in job_rx.iter() {
                        let done = if control.stopped() || !may_start() {
                            control.stop_starting();
                            Done::NotStarted(job)
                        } else {
                            Done::Finished(work(job))
                        };
                        if done_tx.send(done).is_err() {
                            break;
                        }
                    }
                })
                .expect("spawning a worker thread");
        }
        drop(done_tx);
        // Ends when every worker has finished and dropped its sender.
        for done in done_rx.iter() {
            on_done(done, &control);
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
            |j| {
                // Long enough for the handler to stop the pool before the third job.
                std::thread::sleep(Duration::from_millis(100));
                j
            },
            |d, c| match d {
                Done::Finished(_) => {
                    finished += 1;
                    c.stop_starting();
                }
                Done::NotStarted(_) => not_started += 1,
            },
        );
        assert_eq!(finished + not_started, 4);
        assert!(not_started >= 2, "{not_started}");
    }
}
