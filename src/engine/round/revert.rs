//! What a round does when its tests regress: find the agents whose changes broke them and
//! take out only those (a bisection of the merge order, each extra test run logged), or revert
//! the whole round; either way the rejected work is kept under `refs/orch/rejected/`.

use super::*;
use crate::mission::RevertStrategy;
use crate::roundlog::{BisectRun, RevertInfo, TreeTests};

impl Round<'_, '_> {
    /// Undoes a regression. With worktree isolation and two or more merged code agents (and
    /// `revertStrategy: per-agent`), finds the agents whose changes broke the tests and takes
    /// out only those, keeping the others' work; otherwise, or when every agent is to blame, or
    /// the search cannot settle, the whole round is reverted. Returns the agents whose work was
    /// taken out.
    ///
    /// The search bisects the merge order: the base passes and the union fails, so some
    /// shortest failing prefix of the merges exists, and its last agent is a culprit (without
    /// it, the prefix passed). That agent is set aside and the search goes on past it until
    /// the remaining union passes. One culprit among n merges costs about log2(n) test runs;
    /// for two agents it is "newest merge out first": one run when the newest broke them.
    pub(super) fn undo_regression(&mut self, base: &str, failure: &str) -> Result<Vec<String>> {
        let env = self.env;
        let code_agents: Vec<String> = self
            .log
            .agents
            .iter()
            .filter(|e| e.phase == Phase::Code)
            .map(|e| e.name.clone())
            .collect();
        let merged = self.merged.clone();
        let per_agent = env.mission.revert_strategy == RevertStrategy::PerAgent
            && env.mission.git.isolation == Isolation::Worktree
            && merged.len() >= 2;
        let mut runs = Vec::new();
        if per_agent {
            match self.find_culprits(base, &merged, &mut runs)? {
                Some(culprits) if culprits.len() < merged.len() => {
                    return self.take_out(base, &merged, culprits, runs);
                }
                Some(_) => {
                    self.note("per-agent revert: every agent's change broke the tests; the whole round is reverted")
                }
                None => self.note(
                    "per-agent revert could not settle which changes broke the tests; the whole round is reverted",
                ),
            }
            // Put the union back so the rejected ref holds all of it; should it no longer
            // merge, each agent's change is kept under its own ref instead.
            if !self.build(base, &merged, &(0..merged.len()).collect::<Vec<_>>())? {
                for (name, commit) in &merged {
                    let kept = self.env.kept_ref("rejected", self.round, Some(name));
                    env.git.set_ref(&kept, commit)?;
                }
            }
        }
        self.revert(base, failure)?;
        self.count_test_runs(&runs);
        self.log.revert = Some(RevertInfo {
            strategy: "round".into(),
            culprits: code_agents.clone(),
            test_runs: runs,
            committed: None,
        });
        Ok(code_agents)
    }

    /// The indexes (into `merged`) of the changes that broke the tests, or `None` when the
    /// search could not settle (a subset that does not merge, an interrupt, too many runs).
    fn find_culprits(
        &self,
        base: &str,
        merged: &[(String, String)],
        runs: &mut Vec<BisectRun>,
    ) -> Result<Option<Vec<usize>>> {
        // Past this many extra test runs, reverting the round is the better use of the night.
        let budget = 2 * (usize::BITS - merged.len().leading_zeros()) as usize + 4;
        let mut remaining: Vec<usize> = (0..merged.len()).collect();
        let mut culprits = Vec::new();
        // `remaining[..good]` is known to pass; `remaining` as a whole is known to fail.
        let mut good = 0;
        loop {
            let (mut lo, mut hi) = (good, remaining.len());
            while hi - lo > 1 {
                let mid = (lo + hi) / 2;
                match self.check(base, merged, &remaining[..mid], runs, budget)? {
                    Some(true) => lo = mid,
                    Some(false) => hi = mid,
                    None => return Ok(None),
                }
            }
            culprits.push(remaining.remove(hi - 1));
            good = hi - 1;
            if good == remaining.len() {
                return Ok(Some(culprits));
            }
            match self.check(base, merged, &remaining, runs, budget)? {
                Some(true) => return Ok(Some(culprits)),
                Some(false) => {}
                None => return Ok(None),
            }
        }
    }

    /// Tests the base plus the changes `include` (indexes into `merged`, in merge order):
    /// `Some(passed)`, or `None` when it cannot tell.
    fn check(
        &self,
        base: &str,
        merged: &[(String, String)],
        include: &[usize],
        runs: &mut Vec<BisectRun>,
        budget: usize,
    ) -> Result<Option<bool>> {
        if process::interrupted() || runs.len() >= budget || !self.build(base, merged, include)? {
            return Ok(None);
        }
        let without: Vec<String> = (0..merged.len())
            .filter(|i| !include.contains(i))
            .map(|i| merged[i].0.clone())
            .collect();
        let t = self.test_tree(base, &without, runs.len() + 1)?;
        runs.push(BisectRun {
            without,
            status: t.status,
            start_ms: Some(t.start_ms),
            elapsed_ms: t.elapsed_ms,
            passed: t.passed,
            failed: t.failed,
        });
        Ok(Some(!t.regression))
    }

    /// Restores the base and merges the changes `include` in merge order; false if one of them
    /// no longer merges cleanly without the others.
    fn build(&self, base: &str, merged: &[(String, String)], include: &[usize]) -> Result<bool> {
        self.env.git.restore(base)?;
        for &i in include {
            let (name, commit) = &merged[i];
            let msg = format!("orch: round {} {name}", self.round);
            if self.env.git.merge(commit, &msg)? != Merge::Merged {
                self.env.git.restore(base)?;
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Leaves the round with every change but the culprits' merged (a set the tests passed on),
    /// each culprit's change kept under `refs/orch/rejected/round-N/AGENT`.
    fn take_out(
        &mut self,
        base: &str,
        merged: &[(String, String)],
        mut culprits: Vec<usize>,
        runs: Vec<BisectRun>,
    ) -> Result<Vec<String>> {
        culprits.sort_unstable();
        let keep: Vec<usize> = (0..merged.len())
            .filter(|i| !culprits.contains(i))
            .collect();
        if !self.build(base, merged, &keep)? {
            return Err(crate::error::Error::Other(
                "the changes the tests passed on no longer merge".into(),
            ));
        }
        let mut names = Vec::new();
        let mut refs = Vec::new();
        for &i in &culprits {
            let (name, commit) = &merged[i];
            let kept = self.env.kept_ref("rejected", self.round, Some(name));
            self.env.git.set_ref(&kept, commit)?;
            if let Some(e) = self.log.agents.iter_mut().find(|e| &e.name == name) {
                e.error = Some(format!(
                    "its change broke the tests and was taken out; kept in {kept}"
                ));
            }
            self.env.events.emit(Event::Revert {
                round: self.round,
                agent: Some(name.clone()),
                kept_ref: kept.clone(),
                reason: "the tests failed with it and passed without it".into(),
            });
            names.push(name.clone());
            refs.push(kept);
        }
        self.note(&format!(
            "per-agent revert: {} broke the tests ({} extra test run{}); the other agents' work is kept",
            names.join(", "),
            runs.len(),
            if runs.len() == 1 { "" } else { "s" }
        ));
        self.log.kept_ref = refs.into_iter().next();
        self.count_test_runs(&runs);
        // The committed tree is the set the search tested last without exactly the culprits.
        let committed = runs
            .iter()
            .rev()
            .find(|r| {
                let mut w = r.without.clone();
                w.sort();
                let mut c = names.clone();
                c.sort();
                w == c
            })
            .map(|r| TreeTests {
                status: r.status,
                passed: r.passed,
                failed: r.failed,
            });
        self.log.revert = Some(RevertInfo {
            strategy: "per-agent".into(),
            culprits: names.clone(),
            test_runs: runs,
            committed,
        });
        Ok(names)
    }

    /// The extra test runs are test time, not orch's own: without this they would show as
    /// overhead (`timing.tests` was measured around the first run only).
    fn count_test_runs(&mut self, runs: &[BisectRun]) {
        self.log.timing.tests += runs.iter().map(|r| r.elapsed_ms).sum::<u64>();
    }

    /// Runs the tests on the tree as it is now (a candidate of the per-agent revert).
    fn test_tree(
        &self,
        base: &str,
        without: &[String],
        run: usize,
    ) -> Result<crate::roundlog::TestsEntry> {
        let env = self.env;
        let Some(t) = env.mission.tests.as_ref() else {
            return Err(crate::error::Error::Other("no tests to run".into()));
        };
        let changed = env.git.changed_since(base)?;
        let log_dir = env
            .layout
            .logs(self.round)
            .join(format!("revert-check-{run}"));
        std::fs::create_dir_all(&log_dir).ctx(|| format!("creating {}", log_dir.display()))?;
        let mut entry = run_tests(env, t, &log_dir, &changed, self.round, self.t0);
        entry.regression = tests_run::is_regression(&entry, self.state.test_baseline.as_ref());
        // Every testsStart has its testsEnd: the live view and scripts pair them.
        env.events.emit(Event::TestsEnd {
            round: self.round,
            status: entry.status.as_str().into(),
            elapsed_ms: entry.elapsed_ms,
            passed: entry.passed,
            failed: entry.failed,
            regression: entry.regression,
            flaky: entry.flaky,
            without: without.to_vec(),
        });
        Ok(entry)
    }

    fn revert(&mut self, base: &str, failure: &str) -> Result<()> {
        let kept = self.env.kept_ref("rejected", self.round, None);
        self.env.git.save_tree(
            base,
            &kept,
            &format!(
                "orch: round {} rejected (tests regressed)\n\n{}",
                self.round,
                prompt::trim(failure, 2000)
            ),
        )?;
        self.env.git.restore(base)?;
        self.env.events.emit(Event::Revert {
            round: self.round,
            agent: None,
            kept_ref: kept.clone(),
            reason: "the tests regressed".into(),
        });
        self.log.kept_ref = Some(kept);
        Ok(())
    }
}
