//! Agents and sims run through Slurm (`launcher: ["srun", ...]`) on a live cluster: the
//! one-node cluster of `scripts/slurm-up`. What must hold: an agent is a job step that gets
//! orch's environment, its output lands in its log and its exit status comes back; a timeout or
//! an interrupt cancels the step and leaves nothing running and nothing queued; a launcher that
//! cannot work stops `orch run` before the first round.
//!
//! Without a cluster these tests say so loudly on stderr and return; with
//! `ORCH_REQUIRE_SLURM=1` (CI, once slurm-up succeeded) a missing cluster fails them instead.

use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::common::{agent_cmd, alive, processes_with, skip, Repo};
use serde_json::json;

/// Whether a Slurm cluster answers with a usable node; otherwise a loud skip, or a failure when
/// the environment demands a cluster.
fn cluster(test: &str) -> bool {
    let why = match cluster_state() {
        Ok(()) => return true,
        Err(why) => why,
    };
    skip(
        test,
        "ORCH_REQUIRE_SLURM",
        &format!("no Slurm cluster: run scripts/slurm-up ({why})"),
    );
    false
}

/// Asks `sinfo` once per test binary. Bounded: with a broken configuration sinfo retries
/// for a minute.
fn cluster_state() -> Result<(), String> {
    static STATE: OnceLock<Result<(), String>> = OnceLock::new();
    STATE
        .get_or_init(|| {
            let out = Command::new("timeout")
                .args(["10", "sinfo", "-h", "-N", "-o", "%t"])
                .output()
                .map_err(|e| format!("cannot run `timeout sinfo`: {e}"))?;
            let state = String::from_utf8_lossy(&out.stdout).trim().to_string();
            match state.lines().next().unwrap_or("") {
                // A node busy with another test's jobs is still a working cluster.
                "idle" | "mix" | "alloc" => Ok(()),
                _ if out.status.code() == Some(127) => Err("`sinfo` is not installed".into()),
                _ if out.status.code() == Some(124) => Err("`sinfo` did not answer in 10 s".into()),
                "" => Err(format!(
                    "`sinfo` failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                        .lines()
                        .last()
                        .unwrap_or("")
                )),
                s => Err(format!("the node is {s:?}, not idle")),
            }
        })
        .clone()
}

/// A name unique to this test run, put in job names and agent argv so leftovers can be found.
fn marker(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("orchtest-{test}-{}-{nanos}", std::process::id())
}

fn srun(marker: &str) -> serde_json::Value {
    json!([
        "srun",
        "--quiet",
        format!("--job-name={marker}-{{agent}}"),
        "--"
    ])
}

/// Jobs in the queue whose name contains `marker`.
fn queued(marker: &str) -> Vec<String> {
    let out = Command::new("squeue")
        .args(["-h", "-o", "%i %j %T"])
        .output()
        .expect("squeue");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(marker))
        .map(str::to_string)
        .collect()
}

/// Waits until nothing of the run is left: no process with `marker` in its argv, no job of
/// that name in the queue, and none of `pids` alive. Slurm keeps a cancelled job COMPLETING
/// for up to KillWait (5 s) plus a little, so this allows 15 s (less than the ~22 s in which
/// slurm-up's InactiveLimit ends a job whose srun was SIGKILLed: that must not pass).
fn assert_nothing_left(marker: &str, pids: &[i32]) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let procs = processes_with(marker);
        let jobs = queued(marker);
        let living: Vec<i32> = pids
            .iter()
            .copied()
            .filter(|p| alive(&p.to_string()))
            .collect();
        if procs.is_empty() && jobs.is_empty() && living.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "left behind after 15 s:\nprocesses: {procs:#?}\njobs: {jobs:#?}\npids alive: {living:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn env_file(path: &std::path::Path) -> std::collections::BTreeMap<String, String> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn agents_and_sims_run_as_job_steps_with_orch_env_and_their_output_in_the_log() {
    if !cluster("agents_and_sims_run_as_job_steps") {
        return;
    }
    let m = marker("steps");
    let repo = Repo::new();
    let out = tempfile::tempdir().unwrap();
    let env_a = out.path().join("a.env");
    repo.mission(json!({
        "name": "t", "rounds": 1, "maxConcurrency": 2,
        "launcher": srun(&m),
        "agents": [
            {"name": "a", "phase": "code", "stdin": "prompt",
             "command": agent_cmd(&["--env-all", env_a.to_str().unwrap(), "--stdin", "prompt.txt",
                                    "--write", "src/a.txt=a", "--cost", "0.25"])},
            {"name": "b", "phase": "code", "command": agent_cmd(&["--write", "src/b.txt=b"])}
        ],
        "sims": {"pre": {"launcher": ["srun", "--quiet", format!("--job-name={m}-sim"), "--"],
                         "command": ["sh", "-c", "echo \"job=$SLURM_JOB_ID sim=$ORCH_SIM\" > {out}/slurm.txt"]}}
    }));
    let run = repo.orch(&["run"]).expect(0);
    let log = repo.round_log(1);
    assert_eq!(log["status"], "ok", "{log:#}\n{}", run.stderr());
    let a = Repo::agent(&log, "a");
    assert_eq!(a["status"], "ok");
    assert_eq!(a["exitCode"], 0);
    // The agent's stdout went through srun into its log, where orch found its cost.
    assert_eq!(a["costUsd"], 0.25, "{a:#}");
    let agent_log = repo.read(&format!(".orch/{}", a["log"].as_str().unwrap()));
    assert!(agent_log.contains("\"total_cost_usd\":0.25"), "{agent_log}");
    // It ran as a Slurm job step, with orch's environment, in its own worktree.
    let env = env_file(&env_a);
    assert!(
        env.get("SLURM_JOB_ID")
            .is_some_and(|j| j.parse::<u64>().is_ok()),
        "{env:#?}"
    );
    assert!(env.contains_key("SLURM_STEP_ID"), "{env:#?}");
    assert!(
        env.get("SLURM_JOB_NAME")
            .is_some_and(|n| n == &format!("{m}-a")),
        "{env:#?}"
    );
    assert_eq!(env.get("ORCH_AGENT").map(String::as_str), Some("a"));
    assert_eq!(env.get("ORCH_ROUND").map(String::as_str), Some("1"));
    assert_eq!(env.get("PWD"), env.get("ORCH_WORKDIR"), "{env:#?}");
    // srun forwarded the prompt on standard input (the copy was merged with a's work).
    let sent = repo.read(".orch/prompts/round-0001/a.md");
    assert!(sent.contains("round 1"), "{sent}");
    assert_eq!(repo.read("prompt.txt"), sent);
    // Both agents' work was merged and committed; the sim ran as a job too and was published.
    assert_eq!(repo.read("src/a.txt"), "a\n");
    assert_eq!(repo.read("src/b.txt"), "b\n");
    let sim = repo.read("sim-data/slurm.txt");
    assert!(
        sim.starts_with("job=") && sim.trim().ends_with("sim=pre") && !sim.contains("job= "),
        "{sim}"
    );
    assert_nothing_left(&m, &[]);
}

#[test]
fn a_failing_agent_exit_status_comes_back_through_srun() {
    if !cluster("a_failing_agent_exit_status_comes_back_through_srun") {
        return;
    }
    let m = marker("exit");
    let repo = Repo::new();
    repo.mission(json!({
        "name": "t", "rounds": 1, "launcher": srun(&m),
        "agents": [{"name": "a", "phase": "code", "command": agent_cmd(&["--write", "src/a.txt=a", "--exit", "7"])}]
    }));
    repo.orch(&["run"]).expect(0);
    let a = Repo::agent(&repo.round_log(1), "a").clone();
    assert_eq!(a["status"], "failed", "{a:#}");
    assert_eq!(a["exitCode"], 7, "{a:#}");
    // srun's own report is in the agent's stderr log, beside the agent's.
    let err = repo.read(".orch/logs/round-0001/a.stderr.log");
    assert!(err.contains("exit code 7"), "{err}");
    assert_nothing_left(&m, &[]);
}

#[test]
fn a_timed_out_agent_step_is_cancelled_and_nothing_of_it_survives() {
    if !cluster("a_timed_out_agent_step_is_cancelled") {
        return;
    }
    let m = marker("timeout");
    let repo = Repo::new();
    let out = tempfile::tempdir().unwrap();
    let gc = out.path().join("grandchild.pid");
    let env_a = out.path().join("a.env");
    repo.mission(json!({
        "name": "t", "rounds": 1, "killGraceS": 1, "launcher": srun(&m),
        "agents": [{"name": "a", "phase": "code", "timeoutS": 2,
                    "command": agent_cmd(&["--env-all", env_a.to_str().unwrap(), "--ignore-term",
                                           "--grandchild", gc.to_str().unwrap(),
                                           "--write", &format!("src/{m}.txt=x"), "--hang"])}]
    }));
    let started = Instant::now();
    repo.orch(&["run"]).expect(0);
    let a = Repo::agent(&repo.round_log(1), "a").clone();
    assert_eq!(a["status"], "timeout", "{a:#}");
    assert!(started.elapsed() < Duration::from_secs(20));
    // It really was a job step, and its background child was in it.
    assert!(env_file(&env_a).contains_key("SLURM_JOB_ID"));
    let pid: i32 = std::fs::read_to_string(&gc)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_nothing_left(&m, &[pid]);
}

/// A timed-out agent step whose agent ignores SIGTERM, with no grace (`killGraceS: 0`): orch
/// SIGKILLs srun before it can end its job, which then held its allocation until the
/// cluster's InactiveLimit (about 22 s after orch's exit here). orch cancels that job
/// (`scancel`, found by srun's session id): nothing is left a few seconds after orch's exit.
#[test]
fn a_srun_killed_at_its_timeout_leaves_no_job_until_the_inactive_limit() {
    if !cluster("a_srun_killed_at_its_timeout_leaves_no_job") {
        return;
    }
    let m = marker("nograce");
    let repo = Repo::new();
    let out = tempfile::tempdir().unwrap();
    let env_a = out.path().join("a.env");
    repo.mission(json!({
        "name": "t", "rounds": 1, "killGraceS": 0, "launcher": srun(&m),
        "agents": [{"name": "a", "phase": "code", "timeoutS": 2,
                    "command": agent_cmd(&["--env-all", env_a.to_str().unwrap(), "--ignore-term",
                                           "--write", &format!("src/{m}.txt=x"), "--hang"])}]
    }));
    let run = repo.orch(&["run"]).expect(0);
    let ended = Instant::now();
    let a = Repo::agent(&repo.round_log(1), "a").clone();
    assert_eq!(a["status"], "timeout", "{a:#}");
    assert!(env_file(&env_a).contains_key("SLURM_JOB_ID"));
    // Slurm keeps a cancelled job COMPLETING for a moment; InactiveLimit (10 s, ended by
    // slurmctld's next check) would take about 20 s.
    loop {
        let jobs = queued(&m);
        if jobs.is_empty() {
            break;
        }
        assert!(
            ended.elapsed() < Duration::from_secs(8),
            "still queued 8 s after orch's exit: {jobs:?}\n{}",
            run.stderr()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_nothing_left(&m, &[]);
}

#[test]
fn an_interrupted_round_leaves_nothing_running_or_queued() {
    if !cluster("an_interrupted_round_leaves_nothing_running_or_queued") {
        return;
    }
    let m = marker("sigint");
    let repo = Repo::new();
    let out = tempfile::tempdir().unwrap();
    let (env_a, env_b) = (out.path().join("a.env"), out.path().join("b.env"));
    let hang = |env: &std::path::Path, who: &str| {
        agent_cmd(&[
            "--env-all",
            env.to_str().unwrap(),
            "--write",
            &format!("src/{m}-{who}.txt=x"),
            "--hang",
        ])
    };
    repo.mission(json!({
        "name": "t", "rounds": 3, "maxConcurrency": 2, "killGraceS": 2, "launcher": srun(&m),
        "agents": [
            {"name": "a", "phase": "code", "command": hang(&env_a, "a")},
            {"name": "b", "phase": "code", "command": hang(&env_b, "b")}
        ]
    }));
    let mut child = Command::new(env!("CARGO_BIN_EXE_orch"))
        .arg("run")
        .current_dir(repo.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Both agents are running as job steps once their environment files are there.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(env_a.exists() && env_b.exists()) {
        assert!(Instant::now() < deadline, "the agents never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(queued(&m).len(), 2, "{:?}", queued(&m));
    // SAFETY: kill(2) on the pid of a child this test spawned.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let status = child.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(130), "{err}");
    let log = repo.round_log(1);
    for name in ["a", "b"] {
        assert_eq!(Repo::agent(&log, name)["status"], "cancelled", "{log:#}");
    }
    assert!(!repo.has_round_log(2));
    assert_nothing_left(&m, &[]);
}

/// orch itself is SIGKILLed while an agent runs as a job step: nothing is left running or
/// queued. srun gets SIGTERM from the kernel (its parent-death signal) and cancels the step,
/// which it says in the agent's stderr log. (A SIGKILLed srun says nothing; on this cluster
/// slurmstepd then cleans its step up within ~3 s anyway, so the end state alone would not
/// tell the two apart.)
#[test]
fn a_killed_orch_leaves_no_job_step_behind() {
    if !cluster("a_killed_orch_leaves_no_job_step_behind") {
        return;
    }
    let m = marker("sigkill");
    let repo = Repo::new();
    let out = tempfile::tempdir().unwrap();
    let env_a = out.path().join("a.env");
    repo.mission(json!({
        "name": "t", "rounds": 1, "launcher": srun(&m),
        "agents": [{"name": "a", "phase": "code", "command": agent_cmd(&[
            "--env-all", env_a.to_str().unwrap(), "--write", &format!("src/{m}.txt=x"), "--hang"])}]
    }));
    let mut child = Command::new(env!("CARGO_BIN_EXE_orch"))
        .arg("run")
        .current_dir(repo.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !env_a.exists() {
        assert!(Instant::now() < deadline, "the agent never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(queued(&m).len(), 1, "{:?}", queued(&m));
    child.kill().unwrap();
    child.wait().unwrap();
    assert_nothing_left(&m, &[]);
    let srun_said = repo.read(".orch/logs/round-0001/a.stderr.log");
    assert!(
        srun_said.contains("Job step aborted") || srun_said.contains("CANCELLED"),
        "srun did not cancel its step (no SIGTERM?):\n{srun_said}"
    );
}

#[test]
fn a_launcher_slurm_refuses_stops_the_run_before_the_first_round() {
    if !cluster("a_launcher_slurm_refuses_stops_the_run_before_the_first_round") {
        return;
    }
    let repo = Repo::new();
    let out = tempfile::tempdir().unwrap();
    let ran = out.path().join("ran");
    repo.mission(json!({
        "name": "t", "rounds": 1,
        "launcher": ["srun", "--partition=no-such-partition", "--"],
        "agents": [{"name": "a", "phase": "code", "command": agent_cmd(&["--env", ran.to_str().unwrap()])}]
    }));
    let run = repo.orch(&["run"]).expect(2);
    let err = run.stderr();
    assert!(
        err.contains("srun --partition=no-such-partition --") && err.contains("start-up check"),
        "{err}"
    );
    // srun's own explanation is quoted.
    assert!(err.contains("partition"), "{err}");
    assert!(!repo.has_round_log(1));
    assert!(!ran.exists(), "the agent ran");
}

/// Needs no cluster: a launcher that swallows the command (so it can never see the working
/// folders) is caught by the start-up probe, whatever it prints.
#[test]
fn a_launcher_that_does_not_run_the_command_where_the_files_are_is_refused() {
    let repo = Repo::new();
    repo.mission(json!({
        "name": "t", "rounds": 1,
        "agents": [{"name": "a", "phase": "code", "command": agent_cmd(&[]),
                    "launcher": ["sh", "-c", "echo ok", "launcher"]}]
    }));
    let run = repo.orch(&["run"]).expect(2);
    let err = run.stderr();
    assert!(
        err.contains("agents[0].launcher") && err.contains("could not read"),
        "{err}"
    );
    assert!(err.contains(".orch/launcher-probe/token"), "{err}");
    assert!(!repo.has_round_log(1));
}
