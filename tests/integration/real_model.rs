//! A real model in the loop, opt-in:
//! `ORCH_REAL_MODEL=1 cargo test --test integration real_model::`.
//!
//! It runs a short `scripts/real-night` (one round) with this build of orch: real Claude Code and
//! Codex (scripts/real-cli-install) on a small local model (scripts/real-model-install, 1.2 GB
//! fetched once into ~/.cache/orch-real-model) fix planted bugs in toolz from PyPI, and the
//! script checks what orch did with their edits (every committed tree fails no more of the
//! project's own tests than the base, every change taken out is in its ref, `orch status` and
//! `orch report` agree with git, nothing is left running). The model's edits vary; orch's
//! handling of them is what must hold. Slow: minutes on 2 cores.
//!
//! Without `ORCH_REAL_MODEL=1` it is a loud SKIP: `.ci/run` does not download the model.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

#[test]
fn a_short_real_night_holds_every_check() {
    if std::env::var("ORCH_REAL_MODEL").as_deref() != Ok("1") {
        // Straight to the stderr handle: the harness swallows `eprintln!` of a passing test.
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "!!!!! SKIP: a_short_real_night_holds_every_check needs ORCH_REAL_MODEL=1 \
             (it fetches a 1.1 GB model once and runs for minutes); it did not run !!!!!"
        );
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let work = tempfile::tempdir().unwrap();
    let figures = work.path().join("figures.json");
    let t0 = Instant::now();
    let out = Command::new("python3")
        .arg(root.join("scripts/real-night"))
        .args(["--rounds", "1", "--timeout", "300", "--max-turns", "4"])
        .arg("--orch")
        .arg(env!("CARGO_BIN_EXE_orch"))
        .arg("--workdir")
        .arg(work.path().join("night"))
        .arg("--json")
        .arg(&figures)
        .output()
        .expect("running scripts/real-night");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!(
        "{stdout}\n{stderr}\nwall time {:.0} s",
        t0.elapsed().as_secs_f64()
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "a check failed:\n{stdout}\n{stderr}"
    );
    let f: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&figures).unwrap()).unwrap();
    assert_eq!(f["rounds"], 1, "{f:#}");
    assert_eq!(f["runs"], 3, "the three agents ran: {f:#}");
    assert!(
        f["modelCalls"].as_u64().unwrap() >= 2,
        "the CLIs asked the model: {f:#}"
    );
    assert!(
        f["checks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["ok"] == true),
        "{f:#}"
    );
}
