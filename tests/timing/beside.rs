//! The round's time against its critical path with Phase B beside the tests (issue 20), in the
//! timing binary so that it runs alone (see `tests/timing/main.rs`).

use crate::common::{agent_cmd, sim_cmd, tests_cmd, Repo};
use serde_json::json;

/// Issue 2's shape with `phaseB: "besideTests"`: three code agents of 2.0/1.5/1.0 s on two
/// slots beside a 2.5 s pre-sim (Phase A: 2.5 s), then 1 s tests beside a 1.5 s post-sim beside
/// two 1 s review agents (1.5 s): a critical path of max(pool, pre-sim) + max(tests, post-sim,
/// Phase B) = 4 s, where after the tests it is 5 s.
#[test]
fn the_round_time_follows_the_critical_path_with_phase_b_beside_the_tests() {
    let _alone = crate::alone();
    let repo = Repo::new();
    let code = |n: &str, s: &str| {
        json!({"name": n, "phase": "code",
        "command": agent_cmd(&["--sleep", s, "--write", &format!("src/{n}.txt={n}")])})
    };
    let review = |n: &str| {
        json!({"name": n, "phase": "review",
        "command": agent_cmd(&["--sleep", "1", "--write", &format!("docs/{n}.md={n}")])})
    };
    repo.mission(json!({
        "name": "t", "rounds": 1, "maxConcurrency": 2, "phaseB": "besideTests",
        "agents": [code("a", "2.0"), code("b", "1.5"), code("c", "1.0"), review("r1"), review("r2")],
        "sims": {"pre": {"command": sim_cmd("2.5")}, "post": {"command": sim_cmd("1.5")}},
        "tests": {"command": tests_cmd("1")}
    }));
    repo.orch(&["run"]).expect(0);
    let t = repo.round_log_typed(1).timing;
    let total = t.total;
    eprintln!("critical path 4000 ms: timing {t:?}");
    // Within 10 % below the 4 s path; above it, up to 4.75 s: still clear of the 5 s that Phase
    // B after the tests takes at the least, and a loaded machine's commits and merges once
    // took the round to 4449 ms, the suite's other tests beside it.
    assert!(
        (3600..=4750).contains(&total),
        "total {total} ms is not within 4 s - 10 % .. 4.75 s (Phase B after the tests: 5 s): {t:?}"
    );
    assert!((2450..2900).contains(&t.phase_a), "phaseA {}", t.phase_a);
    assert!((1450..1900).contains(&t.tests), "tests stage {}", t.tests);
    assert!((950..1400).contains(&t.phase_b), "phaseB {}", t.phase_b);
    // Phase B ran inside the tests stage: it started when it did and ended before it.
    let at = |v: Option<u64>| v.unwrap_or_else(|| panic!("a stage's start or end missing: {t:?}"));
    assert!(at(t.phase_b_start_ms) < at(t.tests_start_ms) + 200, "{t:?}");
    assert!(at(t.phase_b_end_ms) <= at(t.tests_end_ms), "{t:?}");
    assert_eq!(
        t.overhead,
        total + t.beside - t.phase_a - t.phase_b - t.tests,
        "overhead = total - phaseA - phaseB - tests + beside"
    );
    // Both review agents' work landed after the code commit.
    assert_eq!(repo.read("docs/r1.md"), "r1\n");
    assert_eq!(repo.read("docs/r2.md"), "r2\n");
}
