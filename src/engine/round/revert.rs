//! What a round does when its tests regress: find the agents whose changes broke them and
//! take out only those (a bisection of the merge order, each extra test run logged), or revert
//! the whole round; either way the rejected work is kept under `refs/orch/rejected/`.
//!
//! Three parts: the round's revert policy (`impl Round`: what is taken out, kept, logged);
//! the git and test work of trying one set of changes (`Trees`: each candidate tree built on
//! the base, in the main tree or a worktree under `<stateDir>/bisect/`, its tests run and
//! logged as a `BisectRun`; `Ctx::test_at_once`: a wave of them on threads of their own); and
//! between the two the search's decisions, which sets to try and what their outcomes mean,
//! kept apart in `culprits` so that they are unit-tested without git.

use std::collections::HashMap;

use super::culprits::{Found, Outcome, Search};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

use crate::engine::exec::process::{self};
use crate::engine::git::{Git, Merge};
use crate::engine::prompt;
use crate::engine::store::state::TestBaseline;
use crate::engine::testing::{self};
use crate::error::{IoContext, Result};
use crate::events::Event;
use crate::mission::Isolation;
use crate::roundlog::{Phase, Strategy};

use super::env::{run_tests, Env};
use super::state::Round;
use super::verdict::tests_end;
use crate::mission::RevertStrategy;
use crate::roundlog::{BisectRun, RevertInfo, TreeTests};

impl<'e> Round<'e, '_> {
    /// Undoes a regression. With worktree isolation and two or more merged code agents (and
    /// `revertStrategy: per-agent`), finds the agents whose changes broke the tests and takes
    /// out only those, keeping the others' work; otherwise, or when every agent is to blame, or
    /// the search cannot settle, the whole round is reverted; an interrupt during the search
    /// leaves the round `interrupted` instead (`interrupted_search`). Returns the agents whose
    /// work was taken out.
    ///
    /// The search bisects the merge order: the base passes and the union fails, so some
    /// shortest failing prefix of the merges exists, and its last agent is a culprit (without
    /// it, the prefix passed). That agent is set aside and the search goes on past it until
    /// the remaining union passes. One culprit among n merges costs about log2(n) test runs;
    /// for two agents it is "newest merge out first": one run when the newest broke them.
    pub(super) fn undo_regression(
        &mut self,
        base: &str,
        failure: &str,
        early: Option<Early>,
    ) -> Result<Vec<String>> {
        let env = self.env;
        let code_agents: Vec<String> = self
            .log
            .agents
            .iter()
            .filter(|e| e.phase == Phase::Code)
            .map(|e| e.name.clone())
            .collect();
        let merged = self.dispatched.merged.clone();
        let mut runs = Vec::new();
        let searched = match early {
            Some(e) => Some((e.trees, e.found)),
            None if self.per_agent() => {
                let mut s = Trees::new(env.git, base, &merged);
                let found = self.ctx(true).find_culprits(&mut s);
                Some((s, found))
            }
            None => None,
        };
        if let Some((mut s, found)) = searched {
            let n = merged.len();
            runs = std::mem::take(&mut s.runs);
            if process::interrupted() || env.replay.is_some() {
                // Nothing of the search outlives it when it was stopped (its test processes
                // are gone already), nor a replay's (its folder is scratch).
                remove_bisect_worktrees(env);
            }
            match found? {
                Found::Culprits(culprits) if culprits.len() < n => {
                    return self.take_out(&s, culprits, runs);
                }
                Found::Culprits(_) => {
                    self.note("per-agent revert: every agent's change broke the tests; the whole round is reverted")
                }
                // A search that could not settle is interrupted too when an interrupt came
                // after it ended (one begun beside Phase B ends before the round reads it).
                Found::Interrupted => return self.interrupted_search(&s, runs),
                Found::Unsettled if process::interrupted() => {
                    return self.interrupted_search(&s, runs)
                }
                Found::Unsettled => self.note(
                    "per-agent revert could not settle which changes broke the tests; the whole round is reverted",
                ),
            }
            self.put_union_back(&s)?;
        }
        self.revert(base, failure)?;
        self.count_test_runs(&runs);
        self.log.revert = Some(RevertInfo {
            strategy: Strategy::Round,
            culprits: code_agents.clone(),
            test_runs: runs,
            committed: None,
        });
        Ok(code_agents)
    }

    /// Puts the union of the searched changes back in the main tree, so that the ref the tree
    /// is then kept in holds all of them; should it no longer merge, each agent's change is
    /// kept under `refs/orch/rejected/round-N/AGENT` instead: those (agent, ref).
    fn put_union_back(&self, s: &Trees) -> Result<Vec<(String, String)>> {
        let env = self.env;
        let all: Vec<usize> = (0..s.merged.len()).collect();
        let mut kept = Vec::new();
        if !s.checkout(env.git, &all, self.round)? {
            for (name, commit) in s.merged {
                let r = env.kept_ref("rejected", self.round, Some(name));
                env.git.set_ref(&r, commit)?;
                kept.push((name.clone(), r));
            }
        }
        Ok(kept)
    }

    /// An interrupt stopped the search before it settled: the round ends `interrupted`, as at
    /// any other stage (its tree kept in `refs/orch/interrupted/round-N`, Phase B's beside the
    /// tests in `interrupted-review`, the base restored; the next `orch run` runs it again),
    /// with the union of its changes put back first so that the ref holds all of them (should
    /// it no longer merge, each agent's change is kept under `refs/orch/rejected/round-N/AGENT`
    /// instead, as a whole-round revert keeps it). Its extra runs stay in the log
    /// (`revert.strategy: "interrupted"`, no culprit).
    fn interrupted_search(&mut self, s: &Trees, runs: Vec<BisectRun>) -> Result<Vec<String>> {
        self.note(&format!(
            "per-agent revert interrupted before it settled which changes broke the tests ({} extra test run{}); the round is interrupted",
            runs.len(),
            if runs.len() == 1 { "" } else { "s" }
        ));
        for (name, kept) in self.put_union_back(s)? {
            self.note(&format!("{name}'s change is kept in {kept}"));
        }
        self.count_test_runs(&runs);
        self.log.revert = Some(RevertInfo {
            strategy: Strategy::Interrupted,
            culprits: Vec::new(),
            test_runs: runs,
            committed: None,
        });
        self.interrupted()?;
        Ok(Vec::new())
    }

    /// Whether a regression is searched for its culprits: `revertStrategy: per-agent`, worktree
    /// isolation, two or more changes merged.
    pub(super) fn per_agent(&self) -> bool {
        let m = self.env.mission;
        m.revert_strategy == RevertStrategy::PerAgent
            && m.git.isolation == Isolation::Worktree
            && self.dispatched.merged.len() >= 2
    }

    /// What the search needs of the round; `main_tree`: whether it may use the main tree.
    pub(super) fn ctx(&self, main_tree: bool) -> Ctx<'e> {
        Ctx {
            env: self.env,
            round: self.round,
            t0: self.t0,
            baseline: self.state.test_baseline.clone(),
            main_tree,
        }
    }

    /// Leaves the round with every change but the culprits' merged (a set the tests passed on),
    /// each culprit's change kept under `refs/orch/rejected/round-N/AGENT`.
    fn take_out(
        &mut self,
        s: &Trees,
        mut culprits: Vec<usize>,
        runs: Vec<BisectRun>,
    ) -> Result<Vec<String>> {
        let merged = s.merged;
        culprits.sort_unstable();
        let keep: Vec<usize> = (0..merged.len())
            .filter(|i| !culprits.contains(i))
            .collect();
        if !s.checkout(self.env.git, &keep, self.round)? {
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
                let why = format!("its change broke the tests and was taken out; kept in {kept}");
                // A failed run whose change was tested keeps the words of how it ended.
                e.error = Some(match e.error.take().filter(|_| e.change_tested) {
                    Some(ended) => format!("{ended}; {why}"),
                    None => why,
                });
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
            strategy: Strategy::PerAgent,
            culprits: names.clone(),
            test_runs: runs,
            committed,
        });
        Ok(names)
    }

    /// The extra test runs are test time, not orch's own: without this they would show as
    /// overhead (`timing.tests` was measured around the first run only).
    fn count_test_runs(&mut self, runs: &[BisectRun]) {
        self.log.timing.tests += wall_of(runs);
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

/// A search begun on the tests' thread as soon as the tests regressed, while the review agents
/// still run beside them (only in worktrees), and what it found.
pub(super) struct Early<'m> {
    trees: Trees<'m>,
    found: Result<Found>,
}

impl<'a> Ctx<'a> {
    /// On the tests' thread, once the round's tests ended beside Phase B: when they regressed,
    /// their `testsEnd` (before the search's own), and the search in worktrees only.
    pub(super) fn search_beside<'m>(
        &self,
        tests: &crate::roundlog::TestsEntry,
        base: &'m str,
        merged: &'m [(String, String)],
    ) -> Option<Early<'m>> {
        let regression = tests.cannot_start.is_none()
            && testing::run::is_regression(tests, self.baseline.as_ref());
        if !regression || process::interrupted() {
            return None;
        }
        self.env
            .events
            .emit(tests_end(self.round, tests, regression));
        let mut trees = Trees::new(self.env.git, base, merged);
        let found = self.find_culprits(&mut trees);
        Some(Early { trees, found })
    }
}

/// How many candidate trees are tested at once: `bisectJobs`, else the run's slots (the
/// agents' slots are idle while the tests run).
fn bisect_jobs(env: &Env) -> usize {
    env.mission
        .bisect_jobs
        .unwrap_or(env.max_concurrency)
        .clamp(1, crate::mission::MAX_BISECT_JOBS)
}

/// A candidate tree tested: its run for the round log, and whether it regressed.
struct Candidate {
    regression: bool,
    run: BisectRun,
}

/// The candidate trees of the per-agent revert's search: the changes searched, the runs of
/// their tests so far (for the round log), and the trees built so far.
struct Trees<'m> {
    base: &'m str,
    merged: &'m [(String, String)],
    runs: Vec<BisectRun>,
    /// The commit of each tree built so far (the base and the set's changes merged in order),
    /// from the round's own merges on: a set that begins with one is built from there, not
    /// from the base (one merge where it took one per change, and a checkout).
    built: Mutex<HashMap<Vec<usize>, String>>,
}

impl<'m> Trees<'m> {
    /// The trees of the changes `merged` (merged in this order on `base`).
    fn new(git: &Git, base: &'m str, merged: &'m [(String, String)]) -> Trees<'m> {
        let mut built = HashMap::new();
        built.insert(Vec::new(), base.to_string());
        // The round merged its changes in order on the base: HEAD's first-parent chain holds
        // the tree of each prefix. Only when it is exactly that chain (each merge's second
        // parent the change merged), else the trees are built from the base.
        let range = format!("{base}..HEAD");
        if let Ok(out) = git.run(&[
            "rev-list",
            "--first-parent",
            "--reverse",
            "--parents",
            &range,
        ]) {
            let lines: Vec<Vec<&str>> = out
                .lines()
                .map(|l| l.split_whitespace().collect())
                .collect();
            let chain = lines.len() == merged.len()
                && lines
                    .iter()
                    .zip(merged)
                    .all(|(l, (_, c))| l.len() == 3 && l[2] == c);
            if chain {
                for (k, l) in lines.iter().enumerate() {
                    built.insert((0..=k).collect(), l[0].to_string());
                }
            }
        }
        Trees {
            base,
            merged,
            runs: Vec::new(),
            built: Mutex::new(built),
        }
    }

    /// The longest beginning of `set` built already: how many of its changes, and the commit.
    fn start_for(&self, set: &[usize]) -> (usize, String) {
        let built = self.built.lock().unwrap_or_else(|e| e.into_inner());
        (0..=set.len())
            .rev()
            .find_map(|p| built.get(&set[..p]).map(|c| (p, c.clone())))
            .unwrap_or_else(|| (0, self.base.to_string()))
    }

    /// Merges `set[from..]` in order into `git`'s tree (at the commit of `set[..from]`); false
    /// when one no longer merges cleanly without the changes left out.
    fn build(&self, git: &Git, set: &[usize], from: usize, round: u32) -> Result<bool> {
        for k in from..set.len() {
            let (name, commit) = &self.merged[set[k]];
            if git.merge(commit, &format!("orch: round {round} {name}"))? != Merge::Merged {
                return Ok(false);
            }
            if let Some(head) = git.head_fast() {
                self.built
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(set[..=k].to_vec(), head);
            }
        }
        Ok(true)
    }

    /// Puts the main tree (`git`) at the base with the changes `set` merged in order; false if
    /// one of them no longer merges cleanly without the others (the tree is at the base then).
    fn checkout(&self, git: &Git, set: &[usize], round: u32) -> Result<bool> {
        let (from, start) = self.start_for(set);
        git.restore(&start)?;
        if !self.build(git, set, from, round)? {
            git.restore(self.base)?;
            return Ok(false);
        }
        Ok(true)
    }
}

/// What the search needs of the round (owned, so that it can run on the tests' thread while
/// Phase B has the round).
pub(super) struct Ctx<'a> {
    env: &'a Env<'a>,
    round: u32,
    t0: Instant,
    baseline: Option<TestBaseline>,
    /// Whether the first candidate of a wave is tested in the main tree (not while Phase B
    /// runs beside the tests: review agents answer for the main tree's HEAD then).
    main_tree: bool,
}

impl Ctx<'_> {
    /// Which changes of `trees` broke the tests (`culprits::Search::find` decides which sets to
    /// try), each set tried here: up to `bisectJobs` at once, each in a tree of its own
    /// (`test_at_once`).
    fn find_culprits(&self, trees: &mut Trees) -> Result<Found> {
        let mut search = Search::new(trees.merged.len(), bisect_jobs(self.env));
        search.find(|sets| self.test_at_once(trees, sets))
    }

    /// Tests the candidate sets `sets` (indexes into `merged`, in merge order) at once: the
    /// first in the main tree (unless Phase B runs beside: then in a worktree too), the others
    /// each in a worktree of its own under `<stateDir>/bisect/`, each built on the base and its
    /// tests run on a thread of its own. Each run is logged in `trees.runs`. Every set is
    /// `Cancelled` when an interrupt came before the wave or during it (its runs still logged).
    fn test_at_once(&self, trees: &mut Trees, sets: &[Vec<usize>]) -> Result<Vec<Outcome>> {
        if process::interrupted() {
            return Ok(vec![Outcome::Cancelled; sets.len()]);
        }
        let first = trees.runs.len() + 1;
        let ctx = self;
        let results: Vec<Result<Option<Candidate>>> = std::thread::scope(|scope| {
            let handles: Vec<_> = sets
                .iter()
                .enumerate()
                .map(|(slot, set)| {
                    let (s, ctx) = (&*trees, &ctx);
                    std::thread::Builder::new()
                        .name(format!("orch-bisect-{slot}"))
                        .spawn_scoped(scope, move || ctx.candidate(s, slot, set, first + slot))
                        .expect("spawning a bisection thread")
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("a bisection thread panicked"))
                .collect()
        });
        let mut outcomes = Vec::new();
        for result in results {
            outcomes.push(match result? {
                Some(run) => {
                    trees.runs.push(run.run);
                    if run.regression {
                        Outcome::Fail
                    } else {
                        Outcome::Pass
                    }
                }
                None => Outcome::NoMerge,
            });
        }
        if process::interrupted() {
            return Ok(vec![Outcome::Cancelled; sets.len()]);
        }
        Ok(outcomes)
    }

    /// One candidate tree: built in slot `slot`'s tree (the main tree for slot 0 when it may be
    /// used, else `<stateDir>/bisect/SLOT`) and tested; `None` when it does not merge.
    fn candidate(
        &self,
        s: &Trees,
        slot: usize,
        set: &[usize],
        run: usize,
    ) -> Result<Option<Candidate>> {
        let env = self.env;
        let (from, start) = s.start_for(set);
        let worktree;
        let git = if slot == 0 && self.main_tree {
            env.git.restore(&start)?;
            env.git
        } else {
            let path = bisect_dir(env).join(slot.to_string());
            worktree = env.git.prepare_worktree(&path, &start)?;
            &worktree
        };
        if process::interrupted() || !s.build(git, set, from, self.round)? {
            return Ok(None);
        }
        let without: Vec<String> = (0..s.merged.len())
            .filter(|i| !set.contains(i))
            .map(|i| s.merged[i].0.clone())
            .collect();
        let t = self.test_tree(git, s.base, &without, run)?;
        Ok(Some(Candidate {
            regression: t.regression,
            run: BisectRun {
                without,
                status: t.status,
                start_ms: Some(t.start_ms),
                elapsed_ms: t.elapsed_ms,
                passed: t.passed,
                failed: t.failed,
            },
        }))
    }

    /// Runs the tests on `git`'s tree as it is now (a candidate of the per-agent revert).
    fn test_tree(
        &self,
        git: &Git,
        base: &str,
        without: &[String],
        run: usize,
    ) -> Result<crate::roundlog::TestsEntry> {
        let env = self.env;
        let Some(t) = env.mission.tests.as_ref() else {
            return Err(crate::error::Error::Other("no tests to run".into()));
        };
        let changed = git.changed_since(base)?;
        let log_dir = env
            .layout
            .logs(self.round)
            .join(format!("revert-check-{run}"));
        std::fs::create_dir_all(&log_dir).ctx(|| format!("creating {}", log_dir.display()))?;
        let mut entry = run_tests(env, git.root(), t, &log_dir, &changed, self.round, self.t0);
        entry.regression = testing::run::is_regression(&entry, self.baseline.as_ref());
        // Every testsStart has its testsEnd: the live view and scripts pair them.
        env.events.emit(Event::TestsEnd {
            round: self.round,
            status: entry.status,
            elapsed_ms: entry.elapsed_ms,
            passed: entry.passed,
            failed: entry.failed,
            regression: entry.regression,
            flaky: entry.flaky,
            without: without.to_vec(),
        });
        Ok(entry)
    }
}

/// Where the per-agent revert's worktrees are (one per slot but the first): beside the
/// agents' `worktrees/`, not in it, so that a recovery never takes one for an agent's.
fn bisect_dir(env: &Env) -> PathBuf {
    env.layout.dir.join("bisect")
}

/// Removes the per-agent revert's worktrees (their trees are commits the round holds).
fn remove_bisect_worktrees(env: &Env) {
    let dir = bisect_dir(env);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        crate::engine::exec::perms::unlock_tree(&path);
        let p = path.to_string_lossy();
        if env.git.run(&["worktree", "remove", "--force", &p]).is_err() {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
    let _ = env.git.prune_worktrees();
    let _ = std::fs::remove_dir(&dir);
}

/// The time the extra runs took on the clock: the union of their spans (runs of one wave
/// overlap; their sum would count the same seconds twice).
fn wall_of(runs: &[BisectRun]) -> u64 {
    let mut spans: Vec<(u64, u64)> = runs
        .iter()
        .map(|r| {
            let s = r.start_ms.unwrap_or(0);
            (s, s + r.elapsed_ms)
        })
        .collect();
    spans.sort_unstable();
    let mut total = 0;
    let mut end = 0;
    for (s, e) in spans {
        let s = s.max(end);
        if e > s {
            total += e - s;
            end = e;
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::roundlog::StepStatus;

    #[test]
    fn the_wall_of_overlapping_runs_counts_each_second_once() {
        let run = |s, e| BisectRun {
            without: Vec::new(),
            status: StepStatus::Passed,
            start_ms: Some(s),
            elapsed_ms: e,
            passed: None,
            failed: None,
        };
        assert_eq!(wall_of(&[run(100, 50), run(160, 40)]), 90);
        assert_eq!(wall_of(&[run(100, 50), run(110, 50), run(300, 10)]), 70);
    }
}
