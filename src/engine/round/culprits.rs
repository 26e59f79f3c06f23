//! The culprit search's decisions, apart from the git and test work of trying a set of changes.

/// When this wave decides every culprit (each part is one change) and slots are left: the
/// union without the culprits for each outcome where exactly one part of each failing block
/// fails, as far as they fit, so that the check of the union the search ends with is already
/// known (one wave fewer; a guess that proves wrong is a run spent on a slot that was idle).
pub(super) fn speculative_checks(
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
pub(super) fn split(block: &[usize], parts: usize) -> Vec<Vec<usize>> {
    let parts = parts.clamp(1, block.len().max(1));
    (0..parts)
        .map(|i| block[block.len() * i / parts..block.len() * (i + 1) / parts].to_vec())
        .filter(|p| !p.is_empty())
        .collect()
}

/// Up to `m` prefix lengths strictly between `lo` and `hi`, spread evenly (`m` = 1: the
/// middle, as a binary search takes it).
pub(super) fn probes(lo: usize, hi: usize, m: usize) -> Vec<usize> {
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
