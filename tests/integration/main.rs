//! orch's integration tests: one test binary whose modules are the scenario files beside this
//! one (as casey/just lays out its tests), each running the built `orch` on scratch git
//! repositories with the fixture agents of `fixtures/agents/`, through the helpers of
//! `tests/common/`. One binary, not one per file: each binary links the whole library, and on a
//! 2-core machine 23 links cost more than the tests they hold. The tests that measure the
//! round's own time are not here but in `tests/timing/`, a binary of their own, because cargo
//! runs test binaries one after the other and those must not share the machine with these.
//!
//! Run one file's tests with a filter on its module: `cargo test --test integration faults::`.

#[path = "../common/mod.rs"]
mod common;

mod bench_night;
mod beside;
mod bisect;
mod branch;
mod budget;
mod cli;
mod engine;
mod faults;
mod git_config;
mod git_edges;
mod hooks;
mod incremental;
mod limits;
mod parity;
mod real_cli;
mod real_model;
mod replay;
mod report;
mod results;
mod safety;
mod sandbox;
mod scheduling;
mod sessions;
mod slurm;
mod status;
mod stuck;
mod worktree;

/// A scenario file added to `tests/integration/` (or `tests/timing/`) without its `mod` line
/// here (or in `tests/timing/main.rs`) would never be compiled, and its tests would silently
/// not run: every `.rs` file of both folders must be a module of its binary.
#[test]
fn every_test_file_is_a_module_of_its_binary() {
    let tests = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    for folder in ["integration", "timing"] {
        let main = std::fs::read_to_string(tests.join(folder).join("main.rs")).unwrap();
        let declared: Vec<&str> = main
            .lines()
            .filter_map(|l| l.strip_prefix("mod ")?.strip_suffix(';'))
            .collect();
        for entry in std::fs::read_dir(tests.join(folder)).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            let Some(module) = name.strip_suffix(".rs") else {
                continue;
            };
            assert!(
                module == "main" || declared.contains(&module),
                "tests/{folder}/{name} is not declared (`mod {module};`) in tests/{folder}/main.rs: \
                 its tests would not run"
            );
        }
    }
}
