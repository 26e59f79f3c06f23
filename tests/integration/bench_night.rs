//! scripts/bench-night end to end in a tiny configuration (two rounds at 0.05 s per seed
//! minute, about 15 s): the three ways run, each round of the orch ways is reported, and the
//! script ends with the two ratio lines scripts read. `#[ignore]`d like the other benchmarks:
//! `cargo test --test integration bench_night:: -- --ignored`.

use std::process::Command;

#[test]
#[ignore]
fn bench_night_runs_end_to_end_and_ends_with_the_two_ratios() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new("python3")
        .arg(format!("{root}/scripts/bench-night"))
        .args([
            "--rounds",
            "2",
            "--scale",
            "0.05",
            "--orch",
            env!("CARGO_BIN_EXE_orch"),
        ])
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    for way in [
        "== (a) orch's defaults",
        "== (b) seed policies",
        "== (c) v8 serial loop",
    ] {
        assert!(stdout.contains(way), "{way} missing:\n{stdout}");
    }
    // Each orch way ran both rounds (one line a round, from its round logs).
    let rounds = stdout
        .lines()
        .filter(|l| l.starts_with("  round 1 ") || l.starts_with("  round 2 "))
        .count();
    assert_eq!(rounds, 4, "{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    let n = lines.len();
    assert!(n >= 2, "{stdout}");
    let figure = |line: &str, prefix: &str| -> f64 {
        let v = line
            .strip_prefix(prefix)
            .and_then(|v| v.strip_suffix('x'))
            .unwrap_or_else(|| panic!("not `{prefix}N.NNx`: {line}"));
        assert!(
            v == "inf" || v == "nan" || v.split_once('.').is_some_and(|(_, d)| d.len() == 2),
            "two decimals: {line}"
        );
        v.parse().unwrap()
    };
    let kept = figure(
        lines[n - 2],
        "kept changes per hour: orch / seed policies = ",
    );
    let usd = figure(
        lines[n - 1],
        "dollars per kept change: orch / seed policies = ",
    );
    // Not a number only when neither way kept anything (a tiny night can do that).
    for v in [kept, usd] {
        assert!(v.is_nan() || v >= 0.0, "{stdout}");
    }
}
