//! Bounds and the dependency graph: every number in a mission has a range, so no value (a
//! `killGraceS` of 1e300, four billion rounds) reaches a `Duration`, an allocation or an
//! addition that would panic or overflow; and `dependsOn` is checked as a graph, not key by key.
//!
//! [`Mission::validate`](super::Mission::validate) calls [`Mission::check_bounds`] and
//! [`Mission::check_dependency_cycles`] in its order of the keys, so the first error a file
//! gets stays the same; the constants are public, since `orch run --rounds` and the engine
//! hold to the same limits.

use std::path::Path;

use super::agent::{Agent, When};
use super::schema::Mission;
use crate::error::{Error, Result};

/// The most rounds a mission (or `--rounds N`) may ask for.
pub const MAX_ROUNDS: u32 = 1_000_000;
/// The most agents that may run at once (each is a worker thread and a process group).
pub const MAX_CONCURRENCY: usize = 1024;
/// The most candidate trees a per-agent revert tests at once (each a worktree and a test run).
pub const MAX_BISECT_JOBS: usize = 64;
/// The longest kill grace: an hour between SIGTERM and SIGKILL.
pub const MAX_GRACE_S: f64 = 3600.0;
/// The most test retries (each is a full test run).
pub const MAX_RETRIES: u32 = 100;
/// The largest prompt (and prompt section) orch renders.
pub const MAX_PROMPT_BYTES: usize = 64 << 20;
/// The largest adaptive-timeout factor.
pub const MAX_FACTOR: f64 = 1000.0;
/// The most past runs an adaptive timeout may wait for, and the most of any "N in a row"
/// counter (`escalateAfter`, `stop.afterTestFailures`, ...).
pub const MAX_COUNT: u32 = 10_000;

impl Mission {
    /// Every number in the mission within its range (see the constants above).
    pub(super) fn check_bounds(&self, file: &Path) -> Result<()> {
        self.check_run_bounds(file)?;
        for (i, a) in self.agents.iter().enumerate() {
            check_agent_bounds(file, i, a)?;
        }
        self.check_stop_money_bounds(file)
    }

    /// The run's own numbers: rounds, concurrency, bisect jobs, grace, prompt sizes.
    fn check_run_bounds(&self, file: &Path) -> Result<()> {
        count(file, "rounds".into(), self.rounds, 1, MAX_ROUNDS)?;
        if !(1..=MAX_CONCURRENCY).contains(&self.max_concurrency) {
            return out_of(
                file,
                "maxConcurrency".into(),
                format!("from 1 to {MAX_CONCURRENCY}"),
                self.max_concurrency.to_string(),
            );
        }
        if let Some(j) = self.bisect_jobs {
            if !(1..=MAX_BISECT_JOBS).contains(&j) {
                return out_of(
                    file,
                    "bisectJobs".into(),
                    format!("from 1 to {MAX_BISECT_JOBS}"),
                    j.to_string(),
                );
            }
        }
        if !(self.kill_grace_s.is_finite() && (0.0..=MAX_GRACE_S).contains(&self.kill_grace_s)) {
            return out_of(
                file,
                "killGraceS".into(),
                format!("a number of seconds from 0 to {MAX_GRACE_S}"),
                self.kill_grace_s.to_string(),
            );
        }
        if !(1024..=MAX_PROMPT_BYTES).contains(&self.max_prompt_bytes) {
            return out_of(
                file,
                "maxPromptBytes".into(),
                format!("from 1024 to {MAX_PROMPT_BYTES}"),
                self.max_prompt_bytes.to_string(),
            );
        }
        for (name, sec) in &self.sections {
            if let Some(b) = sec.max_bytes {
                if !(1..=MAX_PROMPT_BYTES).contains(&b) {
                    return out_of(
                        file,
                        format!("sections.{name}.maxBytes"),
                        format!("from 1 to {MAX_PROMPT_BYTES}"),
                        b.to_string(),
                    );
                }
            }
        }
        Ok(())
    }

    /// The counters after the agents: test retries, task splitting, the stop rules, and the
    /// dollar figures (budget, pricing).
    fn check_stop_money_bounds(&self, file: &Path) -> Result<()> {
        if let Some(t) = &self.tests {
            count(file, "tests.retries".into(), t.retries, 0, MAX_RETRIES)?;
        }
        if let Some(t) = &self.tasks {
            count(file, "tasks.splitAfter".into(), t.split_after, 1, MAX_COUNT)?;
        }
        count(
            file,
            "stop.afterTestFailures".into(),
            self.stop.after_test_failures,
            1,
            MAX_COUNT,
        )?;
        if let Some(n) = self.stop.after_empty_rounds {
            count(file, "stop.afterEmptyRounds".into(), n, 1, MAX_ROUNDS)?;
        }
        if let Some(b) = self.budget_usd {
            if !(b.is_finite() && (0.0..=1e9).contains(&b)) {
                return out_of(
                    file,
                    "budgetUsd".into(),
                    "a number of dollars from 0 to 1e9".into(),
                    b.to_string(),
                );
            }
        }
        for (model, p) in &self.pricing {
            for (k, v) in [
                ("inputPerMTok", p.input_per_m_tok),
                ("outputPerMTok", p.output_per_m_tok),
            ] {
                if !(v.is_finite() && (0.0..=1e6).contains(&v)) {
                    return out_of(
                        file,
                        format!("pricing.{model}.{k}"),
                        "a number of dollars from 0 to 1e6".into(),
                        v.to_string(),
                    );
                }
            }
        }
        Ok(())
    }

    /// `dependsOn` must not loop: agents in a cycle would each wait for the other until the
    /// stall guard ended the run. The error names the cycle (`a -> b -> a`).
    pub(super) fn check_dependency_cycles(&self, file: &Path) -> Result<()> {
        // 0: not seen, 1: on the current path, 2: done (no cycle through it).
        let mut mark = vec![0u8; self.agents.len()];
        let index = |name: &str| self.agents.iter().position(|a| a.name == name);
        fn visit(
            m: &Mission,
            i: usize,
            mark: &mut [u8],
            path: &mut Vec<usize>,
            index: &dyn Fn(&str) -> Option<usize>,
        ) -> Option<Vec<usize>> {
            mark[i] = 1;
            path.push(i);
            for d in &m.agents[i].depends_on {
                let Some(j) = index(d) else { continue };
                if mark[j] == 1 {
                    let from = path.iter().position(|&k| k == j).unwrap_or(0);
                    let mut cycle = path[from..].to_vec();
                    cycle.push(j);
                    return Some(cycle);
                }
                if mark[j] == 0 {
                    if let Some(c) = visit(m, j, mark, path, index) {
                        return Some(c);
                    }
                }
            }
            path.pop();
            mark[i] = 2;
            None
        }
        for i in 0..self.agents.len() {
            if mark[i] != 0 {
                continue;
            }
            if let Some(cycle) = visit(self, i, &mut mark, &mut Vec::new(), &index) {
                let names: Vec<&str> = cycle
                    .iter()
                    .map(|&k| self.agents[k].name.as_str())
                    .collect();
                return Err(Error::mission(
                    file,
                    format!("agents[{}].dependsOn", cycle[0]),
                    format!(
                        "a dependency cycle: {} (each would wait for the other forever)",
                        names.join(" -> ")
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// The error for a number out of its range: "must be RANGE, not V" at key `at`.
fn out_of(file: &Path, at: String, range: String, v: String) -> Result<()> {
    Err(Error::mission(
        file,
        at,
        format!("must be {range}, not {v}"),
    ))
}

/// A counter at key `at` within `min..=max`.
fn count(file: &Path, at: String, v: u32, min: u32, max: u32) -> Result<()> {
    if (min..=max).contains(&v) {
        Ok(())
    } else {
        out_of(file, at, format!("from {min} to {max}"), v.to_string())
    }
}

/// Agent `i`'s numbers: its ladder counters, `when.every`, its adaptive timeout.
fn check_agent_bounds(file: &Path, i: usize, a: &Agent) -> Result<()> {
    let at = |k: &str| format!("agents[{i}].{k}");
    count(file, at("escalateAfter"), a.escalate_after, 1, MAX_COUNT)?;
    if let Some(d) = a.deescalate_after {
        count(file, at("deescalateAfter"), d, 1, MAX_COUNT)?;
    }
    if let When::Every { every } = a.when {
        count(file, at("when.every"), every, 1, MAX_ROUNDS)?;
    }
    if let Some(t) = &a.adaptive_timeout {
        if !(t.factor.is_finite() && t.factor > 0.0 && t.factor <= MAX_FACTOR) {
            return out_of(
                file,
                at("adaptiveTimeout.factor"),
                format!("above 0 and at most {MAX_FACTOR}"),
                t.factor.to_string(),
            );
        }
        if !(1..=MAX_COUNT as usize).contains(&t.min_samples) {
            return out_of(
                file,
                at("adaptiveTimeout.minSamples"),
                format!("from 1 to {MAX_COUNT}"),
                t.min_samples.to_string(),
            );
        }
    }
    Ok(())
}
