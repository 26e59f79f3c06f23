//! The culprit search of a per-agent revert, as decisions only: given `n` changes in merge
//! order (the base passes, the union of all `n` fails), which sets of changes to test next and,
//! from what they said, which changes broke the tests. It never touches git or runs a test: the
//! caller hands it a tester ("test these sets of change indexes at once, at most `jobs` of them,
//! and say pass, fail, does not merge or cancelled for each"), which in a round builds each set
//! on the base in a tree of its own and runs the tests there (`revert`). Shaped so because the
//! search is where the cost of a regression is decided (one culprit among n costs about log2(n)
//! test runs; for two agents "newest merge out first": one run when the newest broke them), and
//! its decisions are then checked by unit tests with a fake tester, no repository needed.
//!
//! Every result is kept and reused (`memo`): a set is never tested twice. A budget of waves
//! (2·log2(n)+4) bounds the search whatever the tests answer: past it, reverting the whole
//! round is the better use of the night.

use std::collections::HashMap;

/// What testing one set of changes said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    /// The tests passed (or did not regress) on the base with these changes.
    Pass,
    /// The tests regressed with these changes.
    Fail,
    /// The set does not merge cleanly without the changes left out.
    NoMerge,
    /// An interrupt stopped the test (or came before it): the search stops.
    Cancelled,
}

/// How a search ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Found {
    /// The indexes (in merge order) of the changes that broke the tests; all `n` of them when
    /// every change breaks the tests on its own.
    Culprits(Vec<usize>),
    /// The search cannot settle: a set that does not merge, answers that contradict one another,
    /// or the budget of waves spent.
    Unsettled,
    /// A test of the search was cancelled (an interrupt).
    Interrupted,
}

/// The search: what it knows and what it spent.
pub(super) struct Search {
    n: usize,
    /// The most sets tested at once.
    jobs: usize,
    /// The most waves the search may run.
    budget: usize,
    waves: usize,
    /// Why it stopped before it settled (the budget, or a cancelled test).
    stopped: Option<Found>,
    /// Each set tested (indexes in merge order) and what it said.
    memo: HashMap<Vec<usize>, Outcome>,
}

impl Search {
    /// A search among `n` changes testing up to `jobs` sets at once (at least one, at most
    /// `n`), with its budget: 2·log2(n)+4 waves (one run each with one job).
    pub(super) fn new(n: usize, jobs: usize) -> Search {
        let budget = 2 * (usize::BITS - n.leading_zeros()) as usize + 4;
        Search {
            n,
            jobs: jobs.min(n).max(1),
            budget,
            waves: 0,
            stopped: None,
            memo: HashMap::new(),
        }
    }

    /// Finds the changes that broke the tests, testing sets with `test` (at most `jobs` sets a
    /// call, each set's outcome in the order given). An error of `test` ends the search with it.
    ///
    /// With `jobs` above 1, first group testing for changes that break the tests on their own:
    /// the changes are cut into up to `jobs` blocks of the merge order, each block tested alone
    /// on the base; a failing block is cut again, a passing one is cleared, until each failing
    /// block is one change; then the union of the others must pass. Any other outcome (a failing
    /// block none of whose parts fails, a part that does not merge alone, a union that still
    /// fails: changes that break the tests only together) hands over to the bisection, which
    /// reuses every result known so far. With one job this is exactly the serial bisection.
    pub(super) fn find<E>(
        &mut self,
        mut test: impl FnMut(&[Vec<usize>]) -> Result<Vec<Outcome>, E>,
    ) -> Result<Found, E> {
        if self.jobs > 1 {
            if let Some(c) = self.group_test(&mut test)? {
                return Ok(Found::Culprits(c));
            }
            if let Some(why) = &self.stopped {
                return Ok(why.clone());
            }
        }
        Ok(match self.bisect(&mut test)? {
            Some(c) => Found::Culprits(c),
            None => self.stopped.clone().unwrap_or(Found::Unsettled),
        })
    }

    /// Group testing (see `find`): `Some(culprits)` when every culprit breaks the tests on its
    /// own and the rest passes, else `None` (the bisection decides).
    fn group_test<E>(
        &mut self,
        test: &mut impl FnMut(&[Vec<usize>]) -> Result<Vec<Outcome>, E>,
    ) -> Result<Option<Vec<usize>>, E> {
        let n = self.n;
        // Blocks known to fail: the union, to begin with.
        let mut suspects: Vec<Vec<usize>> = vec![(0..n).collect()];
        let mut culprits = Vec::new();
        while !suspects.is_empty() {
            // Each failing block cut into parts, `jobs` parts in all when they fit.
            let per = (self.jobs / suspects.len()).max(2);
            let cut: Vec<Vec<Vec<usize>>> = suspects.iter().map(|b| split(b, per)).collect();
            let mut wave: Vec<Vec<usize>> = cut.iter().flatten().cloned().collect();
            wave.extend(speculative_checks(n, &culprits, &cut, self.jobs));
            if !self.wave(test, &wave)? {
                return Ok(None);
            }
            let mut next = Vec::new();
            for parts in cut {
                let mut any = false;
                for part in parts {
                    match self.memo[&part] {
                        Outcome::NoMerge | Outcome::Cancelled => return Ok(None),
                        Outcome::Pass => {}
                        Outcome::Fail => {
                            any = true;
                            if part.len() == 1 {
                                culprits.push(part[0]);
                            } else {
                                next.push(part);
                            }
                        }
                    }
                }
                // The block fails but none of its parts does alone: an interaction.
                if !any {
                    return Ok(None);
                }
            }
            suspects = next;
        }
        culprits.sort_unstable();
        if culprits.len() == n {
            // Every change breaks the tests alone: no tree but the base passes.
            return Ok(Some(culprits));
        }
        let keep: Vec<usize> = (0..n).filter(|i| !culprits.contains(i)).collect();
        if !self.wave(test, std::slice::from_ref(&keep))? {
            return Ok(None);
        }
        Ok((self.memo[&keep] == Outcome::Pass).then_some(culprits))
    }

    /// The bisection of the merge order: the base passes and the union fails, so some
    /// shortest failing prefix of the merges exists, and its last change is a culprit
    /// (without it, the prefix passed). It is set aside and the search goes on past it until
    /// the remaining union passes. Each wave tests up to `jobs` prefixes at once (one: the
    /// halves); the check of the remaining union goes in the same wave as the next search's
    /// first prefixes, which do not depend on it.
    fn bisect<E>(
        &mut self,
        test: &mut impl FnMut(&[Vec<usize>]) -> Result<Vec<Outcome>, E>,
    ) -> Result<Option<Vec<usize>>, E> {
        let mut remaining: Vec<usize> = (0..self.n).collect();
        let mut culprits = Vec::new();
        // `remaining[..good]` is known to pass; `remaining` as a whole is known to fail.
        let mut good = 0;
        loop {
            let (mut lo, mut hi) = (good, remaining.len());
            loop {
                // What is known already narrows the search: the first failing prefix known,
                // and the longest passing one below it.
                for k in lo + 1..hi {
                    match self.memo.get(&remaining[..k]) {
                        Some(Outcome::Fail) => {
                            hi = k;
                            break;
                        }
                        Some(Outcome::Pass) => lo = k,
                        Some(Outcome::NoMerge | Outcome::Cancelled) => return Ok(None),
                        None => {}
                    }
                }
                if hi - lo <= 1 {
                    break;
                }
                let wave: Vec<Vec<usize>> = probes(lo, hi, self.jobs)
                    .into_iter()
                    .map(|k| remaining[..k].to_vec())
                    .collect();
                if !self.wave(test, &wave)? {
                    return Ok(None);
                }
            }
            culprits.push(remaining.remove(hi - 1));
            good = hi - 1;
            if good == remaining.len() {
                return Ok(Some(culprits));
            }
            let mut wave = vec![remaining.clone()];
            wave.extend(
                probes(good, remaining.len(), self.jobs - 1)
                    .into_iter()
                    .map(|k| remaining[..k].to_vec()),
            );
            if !self.wave(test, &wave)? {
                return Ok(None);
            }
            match self.memo[&remaining] {
                Outcome::Pass => return Ok(Some(culprits)),
                Outcome::Fail => {}
                Outcome::NoMerge | Outcome::Cancelled => return Ok(None),
            }
        }
    }

    /// Tests the sets `sets` not known yet, up to `jobs` at once (one call of `test` each
    /// wave), and keeps what each said. False when the search must stop: the budget of waves
    /// spent, or a test cancelled (`stopped` says which).
    fn wave<E>(
        &mut self,
        test: &mut impl FnMut(&[Vec<usize>]) -> Result<Vec<Outcome>, E>,
        sets: &[Vec<usize>],
    ) -> Result<bool, E> {
        let mut todo: Vec<Vec<usize>> = Vec::new();
        for set in sets {
            if !self.memo.contains_key(set) && !todo.contains(set) {
                todo.push(set.clone());
            }
        }
        for chunk in todo.chunks(self.jobs) {
            if self.waves >= self.budget {
                self.stopped = Some(Found::Unsettled);
                return Ok(false);
            }
            self.waves += 1;
            let outcomes = test(chunk)?;
            if outcomes.contains(&Outcome::Cancelled) {
                self.stopped = Some(Found::Interrupted);
                return Ok(false);
            }
            // A tester that said less than it was asked leaves sets unknown: nothing to settle on.
            if outcomes.len() < chunk.len() {
                self.stopped = Some(Found::Unsettled);
                return Ok(false);
            }
            for (set, outcome) in chunk.iter().zip(outcomes) {
                self.memo.insert(set.clone(), outcome);
            }
        }
        Ok(true)
    }
}

/// When this wave decides every culprit (each part is one change) and slots are left: the
/// union without the culprits for each outcome where exactly one part of each failing block
/// fails, as far as they fit, so that the check of the union the search ends with is already
/// known (one wave fewer; a guess that proves wrong is a run spent on a slot that was idle).
fn speculative_checks(
    n: usize,
    culprits: &[usize],
    cut: &[Vec<Vec<usize>>],
    jobs: usize,
) -> Vec<Vec<usize>> {
    let parts: usize = cut.iter().map(Vec::len).sum();
    let spare = jobs.saturating_sub(parts);
    if spare == 0 || cut.iter().flatten().any(|p| p.len() != 1) {
        return Vec::new();
    }
    let mut outcomes: Vec<Vec<usize>> = vec![culprits.to_vec()];
    for block in cut {
        outcomes = outcomes
            .iter()
            .flat_map(|o| block.iter().map(move |p| [o.as_slice(), p].concat()))
            .collect();
        if outcomes.len() > spare {
            return Vec::new();
        }
    }
    outcomes
        .into_iter()
        .map(|out| (0..n).filter(|i| !out.contains(i)).collect())
        .collect()
}

/// `block` cut into at most `parts` runs of the merge order, as even as they come.
fn split(block: &[usize], parts: usize) -> Vec<Vec<usize>> {
    let parts = parts.clamp(1, block.len().max(1));
    (0..parts)
        .map(|i| block[block.len() * i / parts..block.len() * (i + 1) / parts].to_vec())
        .filter(|p| !p.is_empty())
        .collect()
}

/// Up to `m` prefix lengths strictly between `lo` and `hi`, spread evenly (`m` = 1: the
/// middle, as a binary search takes it).
fn probes(lo: usize, hi: usize, m: usize) -> Vec<usize> {
    if hi <= lo + 1 || m == 0 {
        return Vec::new();
    }
    if hi - lo - 1 <= m {
        return (lo + 1..hi).collect();
    }
    let mut points: Vec<usize> = (1..=m).map(|i| lo + (hi - lo) * i / (m + 1)).collect();
    points.dedup();
    points.retain(|&k| k > lo && k < hi);
    points
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a search among `n` changes with `jobs` slots against a fake tester that answers
    /// each set with `answer`: what it found and the waves it asked for (each the sets at once).
    fn search(
        n: usize,
        jobs: usize,
        mut answer: impl FnMut(&[usize]) -> Outcome,
    ) -> (Found, Vec<Vec<Vec<usize>>>) {
        let mut waves: Vec<Vec<Vec<usize>>> = Vec::new();
        let found = Search::new(n, jobs)
            .find(|sets: &[Vec<usize>]| -> Result<Vec<Outcome>, ()> {
                waves.push(sets.to_vec());
                Ok(sets.iter().map(|s| answer(s)).collect())
            })
            .unwrap();
        (found, waves)
    }

    /// The tests fail with any of `culprits` (each breaks them on its own).
    fn breaks_alone(culprits: &[usize]) -> impl Fn(&[usize]) -> Outcome + '_ {
        move |set| {
            if set.iter().any(|i| culprits.contains(i)) {
                Outcome::Fail
            } else {
                Outcome::Pass
            }
        }
    }

    fn runs(waves: &[Vec<Vec<usize>>]) -> usize {
        waves.iter().map(Vec::len).sum()
    }

    /// No set asked twice, none empty or the whole union (both known), each in merge order,
    /// at most `jobs` a wave, no more waves than the budget.
    fn check_waves(n: usize, jobs: usize, waves: &[Vec<Vec<usize>>]) {
        let mut seen = Vec::new();
        for wave in waves {
            assert!(!wave.is_empty() && wave.len() <= jobs.min(n), "{waves:?}");
            for set in wave {
                assert!(!seen.contains(set), "{set:?} tested twice: {waves:?}");
                assert!(set.windows(2).all(|w| w[0] < w[1]) && set.iter().all(|&i| i < n));
                assert!(
                    !set.is_empty() && set.len() < n,
                    "{set:?} is known: {waves:?}"
                );
                seen.push(set.clone());
            }
        }
        assert!(waves.len() <= Search::new(n, jobs).budget, "{waves:?}");
    }

    #[test]
    fn one_culprit_among_n_costs_about_log2_n_runs_with_one_job() {
        for n in 2..=16usize {
            let log2 = (n as f64).log2().ceil() as usize;
            for c in 0..n {
                let (found, waves) = search(n, 1, breaks_alone(&[c]));
                assert_eq!(found, Found::Culprits(vec![c]), "n={n} c={c}");
                check_waves(n, 1, &waves);
                // The shortest failing prefix in log2(n) runs, then the union without it
                // (known already when the culprit is the newest merge).
                assert!(runs(&waves) <= log2 + 1, "n={n} c={c}: {waves:?}");
            }
        }
        let (_, waves) = search(8, 1, breaks_alone(&[3]));
        assert_eq!(runs(&waves), 4);
        let (_, waves) = search(16, 1, breaks_alone(&[15]));
        assert_eq!(runs(&waves), 4);
    }

    #[test]
    fn two_agents_newest_merge_out_first_one_run_when_the_newest_broke_them() {
        let (found, waves) = search(2, 1, breaks_alone(&[1]));
        assert_eq!(found, Found::Culprits(vec![1]));
        assert_eq!(waves, vec![vec![vec![0]]]);
        // The oldest: the newest alone is then checked too.
        let (found, waves) = search(2, 1, breaks_alone(&[0]));
        assert_eq!(found, Found::Culprits(vec![0]));
        assert_eq!(waves, vec![vec![vec![0]], vec![vec![1]]]);
        // Two slots: both alone in one wave.
        let (found, waves) = search(2, 2, breaks_alone(&[1]));
        assert_eq!(found, Found::Culprits(vec![1]));
        assert_eq!(waves, vec![vec![vec![0], vec![1]]]);
    }

    #[test]
    fn two_culprits_are_found_with_one_slot_or_several_and_several_take_fewer_waves() {
        for jobs in 1..=4 {
            let (found, waves) = search(8, jobs, breaks_alone(&[2, 5]));
            assert_eq!(found, Found::Culprits(vec![2, 5]), "jobs={jobs}");
            check_waves(8, jobs, &waves);
        }
        let (_, serial) = search(8, 1, breaks_alone(&[2, 5]));
        let (_, four) = search(8, 4, breaks_alone(&[2, 5]));
        assert!(four.len() < serial.len(), "{four:?} vs {serial:?}");
    }

    #[test]
    fn any_one_or_two_culprits_among_up_to_eight_are_found_whatever_the_slots() {
        for n in 2..=8 {
            for a in 0..n {
                for b in a..n {
                    let culprits = if a == b { vec![a] } else { vec![a, b] };
                    for jobs in 1..=5 {
                        let (found, waves) = search(n, jobs, breaks_alone(&culprits));
                        assert_eq!(
                            found,
                            Found::Culprits(culprits.clone()),
                            "n={n} jobs={jobs}"
                        );
                        check_waves(n, jobs, &waves);
                    }
                }
            }
        }
    }

    #[test]
    fn every_change_a_culprit_is_every_change() {
        for jobs in [1, 2, 4] {
            let (found, waves) = search(4, jobs, breaks_alone(&[0, 1, 2, 3]));
            assert_eq!(found, Found::Culprits(vec![0, 1, 2, 3]), "jobs={jobs}");
            check_waves(4, jobs, &waves);
        }
    }

    #[test]
    fn changes_that_break_the_tests_only_together_give_the_newest_whatever_the_slots() {
        let together = |set: &[usize]| {
            if set.contains(&1) && set.contains(&3) {
                Outcome::Fail
            } else {
                Outcome::Pass
            }
        };
        for jobs in 1..=5 {
            let (found, waves) = search(5, jobs, together);
            // Without the newest of the two, the rest passes.
            assert_eq!(found, Found::Culprits(vec![3]), "jobs={jobs}");
            check_waves(5, jobs, &waves);
        }
    }

    #[test]
    fn a_part_that_does_not_merge_alone_hands_over_to_the_bisection() {
        // Change 2 needs change 0 and breaks the tests: alone on the base it does not merge.
        let answer = |set: &[usize]| {
            if set.contains(&2) && !set.contains(&0) {
                Outcome::NoMerge
            } else if set.contains(&2) {
                Outcome::Fail
            } else {
                Outcome::Pass
            }
        };
        let (found, waves) = search(3, 3, answer);
        assert_eq!(found, Found::Culprits(vec![2]));
        // [0] known to pass from the group test: one prefix more.
        assert_eq!(
            waves,
            vec![vec![vec![0], vec![1], vec![2]], vec![vec![0, 1]]]
        );
    }

    #[test]
    fn a_set_that_does_not_merge_in_the_bisection_cannot_settle() {
        // Change 1 breaks the tests and change 2 needs it: the union without 1 does not merge.
        let answer = |set: &[usize]| {
            if set.contains(&2) && !set.contains(&1) {
                Outcome::NoMerge
            } else if set.contains(&1) {
                Outcome::Fail
            } else {
                Outcome::Pass
            }
        };
        let (found, waves) = search(3, 1, answer);
        assert_eq!(found, Found::Unsettled);
        assert_eq!(
            waves,
            vec![vec![vec![0]], vec![vec![0, 1]], vec![vec![0, 2]]]
        );
    }

    #[test]
    fn a_cancelled_test_stops_the_search_interrupted_and_nothing_more_is_asked() {
        for jobs in [1, 3] {
            let mut asked = 0;
            let (found, waves) = search(8, jobs, |set| {
                asked += 1;
                if asked == 2 {
                    Outcome::Cancelled
                } else {
                    breaks_alone(&[5])(set)
                }
            });
            assert_eq!(found, Found::Interrupted, "jobs={jobs}");
            // The wave that held the second set asked was the last.
            let before_last = runs(&waves[..waves.len() - 1]);
            assert!(before_last < 2 && runs(&waves) >= 2, "{waves:?}");
        }
    }

    #[test]
    fn flaky_answers_end_within_the_budget_without_a_set_tested_twice() {
        // A test that fails at random, whatever the set: answers that contradict one another.
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        for n in 2..=12 {
            for jobs in 1..=4 {
                for _ in 0..20 {
                    let (found, waves) = search(n, jobs, |_| {
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        if seed % 3 == 0 {
                            Outcome::Fail
                        } else {
                            Outcome::Pass
                        }
                    });
                    check_waves(n, jobs, &waves);
                    match found {
                        Found::Culprits(c) => {
                            assert!(!c.is_empty() && c.iter().all(|&i| i < n), "{c:?}")
                        }
                        Found::Unsettled => {}
                        Found::Interrupted => panic!("nothing was cancelled"),
                    }
                }
            }
        }
    }

    #[test]
    fn a_test_that_always_fails_runs_out_of_budget_unsettled() {
        // Every set fails (a test that fails whatever the changes): each change looks a culprit
        // in turn, and among 64 the budget of waves ends the search first.
        let (found, waves) = search(64, 1, |_| Outcome::Fail);
        assert_eq!(found, Found::Unsettled);
        assert_eq!(waves.len(), Search::new(64, 1).budget);
        check_waves(64, 1, &waves);
    }

    #[test]
    fn the_testers_error_ends_the_search_with_it() {
        let mut calls = 0;
        let r = Search::new(4, 2).find(|_: &[Vec<usize>]| -> Result<Vec<Outcome>, &str> {
            calls += 1;
            Err("git failed")
        });
        assert_eq!(r, Err("git failed"));
        assert_eq!(calls, 1);
    }

    #[test]
    fn a_tester_that_answers_less_than_asked_cannot_settle() {
        let found = Search::new(4, 2)
            .find(|_: &[Vec<usize>]| -> Result<Vec<Outcome>, ()> { Ok(vec![Outcome::Fail]) })
            .unwrap();
        assert_eq!(found, Found::Unsettled);
    }

    #[test]
    fn one_probe_is_the_middle_and_more_spread_evenly() {
        for (lo, hi) in [(0, 2), (0, 7), (3, 10), (2, 5)] {
            assert_eq!(probes(lo, hi, 1), vec![(lo + hi) / 2]);
        }
        assert_eq!(probes(0, 7, 4), vec![1, 2, 4, 5]);
        assert_eq!(probes(0, 4, 8), vec![1, 2, 3]);
        assert!(probes(3, 4, 4).is_empty());
        assert!(probes(0, 9, 0).is_empty());
    }

    #[test]
    fn the_unions_guessed_are_one_per_outcome_when_they_fit() {
        // One failing block of two among seven, a0 known already: two guesses.
        let cut = vec![vec![vec![3], vec![4]]];
        assert_eq!(
            speculative_checks(7, &[0], &cut, 4),
            vec![vec![1, 2, 4, 5, 6], vec![1, 2, 3, 5, 6]]
        );
        // Two blocks of two: four parts fill the four slots.
        let two = vec![vec![vec![1], vec![2]], vec![vec![4], vec![5]]];
        assert!(speculative_checks(7, &[], &two, 4).is_empty());
        assert_eq!(speculative_checks(7, &[], &two, 8).len(), 4);
        // A part of two changes: this wave does not decide the culprits.
        assert!(speculative_checks(7, &[], &[vec![vec![1, 2], vec![3]]], 8).is_empty());
    }

    #[test]
    fn blocks_cover_the_block_in_order() {
        assert_eq!(
            split(&[0, 1, 2, 3, 4, 5, 6], 4),
            vec![vec![0], vec![1, 2], vec![3, 4], vec![5, 6]]
        );
        assert_eq!(split(&[3, 5], 4), vec![vec![3], vec![5]]);
        assert_eq!(split(&[1, 2, 3], 2), vec![vec![1], vec![2, 3]]);
    }
}
