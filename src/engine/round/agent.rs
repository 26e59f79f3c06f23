//! One agent run on a pool worker: its worktree prepared, its environment and prompt, the
//! process supervised, then what it changed (a worktree's status and HEAD, or the shared tree's
//! fingerprints before and after) and its change committed in its worktree. The main thread
//! settles the result (`Round::settle`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::engine::exec::process::{self, Ending, Spec};
use crate::engine::exec::watch::Watch;
use crate::engine::git::Git;
use crate::engine::store::state::write_json;
use crate::events::Event;
use crate::mission::Agent;
use crate::units;

use super::env::{handed_dir, handoff_path, inbox_path, old_handoff_path, run_stem, Env};
use super::job::Job;
use super::results::RawRun;
use crate::mission::StdinMode;

/// Runs one agent on a worker thread: the executor of one unit. Its launch is prepared (a
/// provider held off starts none), the process supervised, and what it changed observed; the
/// main thread settles the result (`Round::settle`).
pub(super) fn run_agent(
    env: &Env,
    round: u32,
    t0: Instant,
    shared: &Mutex<SharedTree>,
    job: Job<'_>,
) -> RawRun {
    let agent = job.agent;
    // A provider held off by a limit starts none of its agents; start spacing keeps the rest
    // from arriving at once.
    let provider = crate::agents::provider_of(agent);
    if env.limits.held(&provider).is_some() {
        let mut raw = not_started(env, round, job);
        raw.deferred = true;
        return raw;
    }
    let launch = match Launch::prepare(env, round, shared, &job) {
        Ok(l) => l,
        Err(why) => {
            let mut raw = not_started(env, round, job);
            raw.finished.ending = Ending::SpawnFailed(why);
            return raw;
        }
    };
    // Start spacing: taken last, right before the start, so that preparing a worktree does not
    // eat into it.
    let spacing = env.limits.reserve_start(&provider);
    if !spacing.is_zero() && !crate::engine::exec::limits::sleep_interruptibly(spacing) {
        return not_started(env, round, job);
    }
    env.events.emit(Event::AgentStart {
        round,
        agent: agent.name.clone(),
        phase: agent.phase,
        model: job.model.clone(),
        task: job.task.as_ref().map(|t| t.id.clone()),
        timeout_ms: job.timeout.as_millis() as u64,
    });
    let before = if launch.isolated.is_none() {
        shared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .before(&agent.name)
    } else {
        Fingerprint::default()
    };
    let start_ms = t0.elapsed().as_millis() as u64;
    let mut watch = watch_for(env, round, &job, &launch);
    let sandbox = launch.sandbox;
    let finished = process::run_watched(
        &Spec {
            label: format!("agent {}", agent.name),
            argv: launch.argv,
            cwd: launch.root.clone(),
            env: launch.vars,
            stdin: (agent.stdin == StdinMode::Prompt).then(|| job.prompt_file.clone()),
            stdout: launch.files.stdout.clone(),
            stderr: launch.files.stderr.clone(),
            timeout: job.timeout,
            grace: env.mission.grace(),
            launched: launch.launched,
            env_clear: launch.env_clear,
        },
        &mut watch,
    );
    // The broker of its allowlist stops with the run; what it refused is reported.
    let sandbox_refused = sandbox.map(|s| s.denied()).unwrap_or_default();
    if !sandbox_refused.is_empty() {
        log::warn!(
            "agent {}: its sandbox refused connections to {} (not on its allowlist)",
            agent.name,
            sandbox_refused.join(", ")
        );
    }
    let seen = observe(env, round, shared, &job, launch.isolated, &before);
    let files = launch.files;
    RawRun {
        agent: agent.name.clone(),
        phase: agent.phase,
        model: job.model,
        task: job.task.map(|t| t.id),
        timeout_ms: job.timeout.as_millis() as u64,
        start_ms,
        finished,
        changed: seen.changed,
        worktree: job.worktree,
        base: job.base,
        commit: seen.commit,
        rejected: seen.rejected,
        log_rel: env.layout.relative(&files.stdout),
        stdout: files.stdout,
        stderr: files.stderr,
        result_file: files.result,
        filed_tasks: std::fs::metadata(&files.inbox).is_ok_and(|m| m.len() > 0),
        deferred: false,
        kept_aside: seen.kept_aside,
        shared_with: seen.shared_with,
        sandbox_refused,
        session: job.session,
    }
}

/// The watch over one run (issue 31): its CLI's adapter reads its stdout, its tree is the
/// folder it runs in, its settings the mission's `stuck` for it, its budget what is left of
/// its `budgetUsd` (tokens priced at its model's `pricing`); each new last activity goes out as
/// an `agentActivity` event for the live view and `orch status`.
fn watch_for<'e>(env: &Env<'e>, round: u32, job: &Job<'_>, launch: &Launch) -> Watch<'e> {
    use crate::agents::stuck::Budget;
    let agent = job.agent;
    let settings = crate::agents::stuck_limits(env.mission, agent).into();
    let budget = job.budget_left.map(|left| Budget {
        left_usd: left,
        price: env.mission.pricing.get(&job.model).cloned(),
    });
    let name = agent.name.clone();
    let events = env.events;
    Watch::new(
        crate::agents::for_agent(agent),
        settings,
        budget,
        (launch.files.stdout.clone(), launch.files.stderr.clone()),
        // Its own worktree's git, or the shared tree's: orch's git, which runs nothing from
        // the repository's config.
        launch.isolated.clone().unwrap_or_else(|| env.git.clone()),
        Instant::now(),
    )
    .reporting(Box::new(move |activity: String| {
        events.emit(Event::AgentActivity {
            round,
            agent: name.clone(),
            activity,
        })
    }))
}

/// The files orch names to one run: its logs, its result file, the inbox it files tasks in.
struct RunFiles {
    stdout: PathBuf,
    stderr: PathBuf,
    result: PathBuf,
    inbox: PathBuf,
}

/// Everything one agent run starts with: its tree (its own worktree, or the tree the phase
/// shares), its argv and environment, and the files it is handed.
struct Launch {
    /// Worktree isolation: the agent's own checkout of the base.
    isolated: Option<Git>,
    root: PathBuf,
    argv: Vec<String>,
    vars: Vec<(String, String)>,
    files: RunFiles,
    /// It runs through a launcher (Slurm, ssh): signals go to the launcher's session.
    launched: bool,
    /// Under `sandbox`: the run's sandbox (`argv` is already wrapped in it), whose allowlist's
    /// broker serves while this lives.
    sandbox: Option<crate::engine::exec::sandbox::Prepared>,
    /// `inheritEnv` as a list: the environment is only `vars`.
    env_clear: bool,
}

impl Launch {
    /// The run's tree, files, argv and environment; why it cannot start, when it cannot.
    fn prepare(
        env: &Env,
        round: u32,
        shared: &Mutex<SharedTree>,
        job: &Job<'_>,
    ) -> std::result::Result<Launch, String> {
        let agent = job.agent;
        let layout = env.layout;
        // Worktree isolation: the agent's own checkout of the base, made here on the worker so
        // that preparing several worktrees overlaps.
        let isolated = match &job.worktree {
            Some(wt) => Some(
                env.git
                    .prepare_worktree(wt, &job.base)
                    .map_err(|e| format!("preparing its worktree failed: {e}"))?,
            ),
            None => None,
        };
        // The tree the phase shares when the agent has no worktree of its own: the main tree,
        // or orch's Phase B worktree when the review agents run beside the tests.
        let tree_git = match &isolated {
            Some(_) => None,
            None => Some(shared.lock().unwrap_or_else(|e| e.into_inner()).git.clone()),
        };
        let root = isolated
            .as_ref()
            .or(tree_git.as_ref())
            .map_or(env.root(), |g| g.root())
            .to_path_buf();
        let scratch = handed_dir(layout, round, &agent.name);
        let stem = run_stem(&agent.name, job.nth);
        let files = RunFiles {
            stdout: layout.logs(round).join(format!("{stem}.log")),
            stderr: layout.logs(round).join(format!("{stem}.stderr.log")),
            result: scratch.join(format!("{stem}.result.json")),
            inbox: inbox_path(layout, round, &agent.name),
        };
        // Every file orch names to the agent (result, inbox, handoff, task) must be writable
        // with a plain `>`: its folders (its own in the scratch folder, its handoff folder)
        // exist before the agent starts, and are all it may write of the state folder.
        let handoff = handoff_path(layout, &agent.name);
        move_old_handoff(&old_handoff_path(layout, &agent.name), &handoff);
        let handed: Vec<PathBuf> = [
            Some(scratch.clone()),
            handoff.parent().map(Path::to_path_buf),
        ]
        .into_iter()
        .flatten()
        .collect();
        for dir in &handed {
            std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        }
        let task_file = job.task.as_ref().map(|t| {
            let p = scratch.join(format!("{stem}.task.json"));
            if let Err(e) = write_json(&p, t) {
                log::warn!("agent {}: cannot write its task file: {e}", agent.name);
            }
            p
        });
        let launcher = agent.launcher.as_ref().or(env.mission.launcher.as_ref());
        let argv = argv(env, round, job, &root, task_file.as_deref())?;
        let sim_data = tree_git.as_ref().map(|g| g.root().to_path_buf());
        let inherit = agent.inherit_env(env.mission);
        let vars = vars(
            env,
            round,
            job,
            &root,
            &files,
            task_file.as_deref(),
            sim_data,
        );
        let _ = std::fs::remove_file(&files.result);
        let sandbox = sandboxed(env, job, &root, handed, &vars, inherit.is_some(), &argv)?;
        let argv = sandbox.as_ref().map_or(argv, |s| s.argv.clone());
        Ok(Launch {
            sandbox,
            isolated,
            root,
            argv,
            vars,
            files,
            launched: launcher.is_some(),
            env_clear: inherit.is_some(),
        })
    }
}

/// A handoff file where an older orch kept it (`old`) goes to where it is kept now (`new`), so
/// the agent's last report stands across the upgrade; a newer one there wins.
fn move_old_handoff(old: &Path, new: &Path) {
    if !old.is_file() || new.exists() {
        return;
    }
    let moved = new
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| std::fs::rename(old, new));
    if let Err(e) = moved {
        log::warn!(
            "cannot move the handoff file {} to {}: {e}",
            old.display(),
            new.display()
        );
    }
}

/// Under the agent's `sandbox` (issue 30): the run's command wrapped in bwrap, writing its tree
/// and the folders of the files orch hands it (`handed`: its own folder in the round's scratch
/// folder, with its result, inbox and task files, and its own handoff folder); reading
/// the round's prompts and the published sim data; its CLI's state folders and hosts as its
/// adapter names them. `None` without a sandbox.
fn sandboxed(
    env: &Env,
    job: &Job<'_>,
    root: &Path,
    handed: Vec<PathBuf>,
    vars: &[(String, String)],
    env_clear: bool,
    argv: &[String],
) -> std::result::Result<Option<crate::engine::exec::sandbox::Prepared>, String> {
    use crate::engine::exec::sandbox::rules;
    let agent = job.agent;
    let setting = agent.sandbox(env.mission);
    if !setting.is_on() {
        return Ok(None);
    }
    let mut read: Vec<PathBuf> = Vec::new();
    read.extend(job.prompt_file.parent().map(Path::to_path_buf));
    read.extend(env.sim_data());
    let place = rules::Place {
        tree: root,
        repo_root: env.root(),
        common_dir: env.git.common_dir(),
        state_dir: &env.layout.dir,
        write: handed,
        read,
    };
    let needs = crate::agents::for_agent(agent).sandbox_needs();
    rules::wrap(&setting, &needs, &place, vars, env_clear, argv)
        .map(Some)
        .map_err(|e| format!("preparing its sandbox failed: {e}"))
}

/// The run's argv: the launcher's prefix, the agent's command (with its session's arguments
/// where its CLI reads them: the adapter says where) with the placeholders filled, and the
/// caps orch adds (`--max-budget-usd`).
fn argv(
    env: &Env,
    round: u32,
    job: &Job<'_>,
    root: &Path,
    task_file: Option<&Path>,
) -> std::result::Result<Vec<String>, String> {
    let agent = job.agent;
    let disp = |p: &Path| p.display().to_string();
    let fill = |a: &str| {
        a.replace("{model}", &job.model)
            .replace("{prompt_file}", &disp(&job.prompt_file))
            .replace("{round}", &round.to_string())
            .replace("{agent}", &agent.name)
            .replace("{task_file}", &task_file.map(disp).unwrap_or_default())
            .replace("{workdir}", &disp(root))
    };
    let launcher = agent.launcher.as_ref().or(env.mission.launcher.as_ref());
    let command = match &job.session {
        None => agent.command.argv(),
        Some(s) => {
            let session = crate::agents::Session {
                id: &s.id,
                resume: s.resume,
            };
            crate::agents::with_session(agent, &agent.command.argv(), &session)
                .map_err(|why| format!("its session cannot be passed: {why}"))?
        }
    };
    Ok(launcher
        .into_iter()
        .flatten()
        .cloned()
        .chain(command)
        .map(|a| fill(&a))
        .chain(job.cap_args.iter().cloned())
        .collect())
}

/// The run's environment: orch's `ORCH_*` variables (the files it is handed, the published sim
/// data of the tree it reads, its task), on top of what `inheritEnv` passes, and the agent's
/// own `env` on top of all. `shared_root`: the root of the tree the phase shares, when the
/// agent has no worktree of its own (a review agent beside the tests reads its own
/// worktree's copy of the sim data, this round's pre-sim in it).
fn vars(
    env: &Env,
    round: u32,
    job: &Job<'_>,
    root: &Path,
    files: &RunFiles,
    task_file: Option<&Path>,
    shared_root: Option<PathBuf>,
) -> Vec<(String, String)> {
    let agent = job.agent;
    let layout = env.layout;
    let disp = |p: &Path| p.display().to_string();
    let mut vars: Vec<(String, String)> = vec![
        ("ORCH_ROUND".into(), round.to_string()),
        ("ORCH_AGENT".into(), agent.name.clone()),
        ("ORCH_MODEL".into(), job.model.clone()),
        ("ORCH_PROMPT_FILE".into(), disp(&job.prompt_file)),
        ("ORCH_WORKDIR".into(), disp(root)),
        ("ORCH_TASKS_INBOX".into(), disp(&files.inbox)),
        ("ORCH_RESULT_FILE".into(), disp(&files.result)),
        ("ORCH_STATE_DIR".into(), disp(&layout.dir)),
        (
            "ORCH_HANDOFF_FILE".into(),
            disp(&handoff_path(layout, &agent.name)),
        ),
    ];
    let sim_data = match (shared_root, &env.mission.sims) {
        (Some(r), Some(s)) => Some(r.join(&s.publish_to)),
        _ => env.sim_data(),
    };
    if let Some(d) = sim_data {
        vars.push(("ORCH_SIM_DATA".into(), disp(&d)));
    }
    if let (Some(t), Some(f)) = (&job.task, task_file) {
        vars.push(("ORCH_TASK_ID".into(), t.id.clone()));
        vars.push(("ORCH_TASK_FILE".into(), disp(f)));
    }
    // `inheritEnv` as a list: the agent starts from an empty environment holding only the
    // variables it names (a `GITHUB_TOKEN` or cloud key of orch's never reaches it), then
    // orch's `ORCH_*` and the agent's own `env` on top. Variables that are not UTF-8 are left
    // out.
    if let Some(list) = agent.inherit_env(env.mission) {
        let pass = crate::mission::InheritEnv::Only(list.to_vec());
        let mut inherited: Vec<(String, String)> = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .filter(|(k, _)| !k.starts_with("ORCH_") && pass.passes(k))
            .collect();
        inherited.append(&mut vars);
        vars = inherited;
    }
    vars.extend(agent.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    vars
}

/// What one run changed, as orch sees it once the process ended.
struct Observed {
    changed: Vec<String>,
    rejected: Option<String>,
    kept_aside: Vec<String>,
    shared_with: Vec<String>,
    commit: std::result::Result<Option<String>, String>,
}

/// What the run changed: in its worktree (status, or everything since the base when it
/// committed itself), or in the shared tree (the fingerprints before and after); repositories
/// it made and files over `git.maxFileBytes` set aside; its change committed in its worktree.
fn observe(
    env: &Env,
    round: u32,
    shared: &Mutex<SharedTree>,
    job: &Job<'_>,
    isolated: Option<Git>,
    before: &Fingerprint,
) -> Observed {
    let agent = job.agent;
    // An agent may commit its own work (aider does by default, Claude Code when asked): in a
    // worktree its HEAD then moved, and what it changed is everything since the base.
    // An agent that deleted or rewrote its worktree's `.git` link: no git call may run there
    // (git would follow the link, or fall through to the main repository). Its files are kept
    // by the main repository itself; the worktree is made again before it is next used.
    let mut rejected = None;
    let isolated = match isolated {
        Some(g) if !env.git.worktree_intact(g.root()) => {
            let r = format!("refs/orch/failed/round-{round}/{}", agent.name);
            let msg = format!("orch: round {round} {}: its worktree's files", agent.name);
            let kept = match env.git.save_folder(g.root(), &job.base, &r, &msg) {
                Ok(_) => format!("its files are kept in {r}"),
                Err(e) => format!("its files could not be kept ({e})"),
            };
            let why = format!(
                "its worktree's .git link is gone or names another repository, so orch did not \
                 use it; {kept}; the worktree is made again before its next run"
            );
            log::warn!("agent {}: {why}", agent.name);
            rejected = Some(why);
            None
        }
        other => other,
    };
    let broken_link = rejected.is_some();
    let mut kept_aside = Vec::new();
    let mut shared_with = Vec::new();
    let moved = isolated.as_ref().and_then(|g| g.head_moved_from(&job.base));
    let mut changed: Vec<String> = match (&isolated, &moved) {
        _ if broken_link => Vec::new(),
        (Some(g), Some(_)) => g.changed_since(&job.base).unwrap_or_default(),
        (Some(g), None) => g
            .status()
            .unwrap_or_default()
            .into_iter()
            .map(|e| e.path)
            .collect(),
        (None, _) => {
            let seen = observe_shared(env, round, shared, job, before);
            rejected = seen.rejected;
            kept_aside = seen.kept_aside;
            shared_with = seen.shared_with;
            seen.changed
        }
    };
    // A file over `git.maxFileBytes` (a dump, a 1 GB sparse file) is kept aside and left out.
    if let Some(g) = &isolated {
        let (out, why) =
            set_aside_repositories(env, g, (&job.base, &job.base), &changed, round, agent);
        changed.retain(|f| !out.contains(&f.trim_end_matches('/').to_string()));
        kept_aside = why;
        if let Some(set_aside) = set_aside_oversized(env, g, &changed, round, &agent.name) {
            changed.retain(|f| !set_aside.contains(f));
        }
    }
    // The change is committed here, on the worker, where commits in separate worktrees run side
    // by side; the main thread only merges, one merge after another. Under `enforceOwnership`
    // the main thread first takes out what the agent does not own, then commits.
    let owner_check_first = env.mission.enforce_ownership && !agent.owns.is_empty();
    let commit = match &isolated {
        Some(g) => commit_in_worktree(
            g,
            &job.base,
            moved.as_deref(),
            &changed,
            owner_check_first,
            &format!("orch: round {round} {}", agent.name),
        ),
        None => Ok(None),
    };
    Observed {
        changed,
        rejected,
        kept_aside,
        shared_with,
        commit,
    }
}

/// What a run changed in the tree the phase shares, under its lock: an agent that moved HEAD or
/// the branch is caught here, before the next agent's fingerprint is taken; a repository folder
/// it made or a submodule it edited is kept aside; a file another agent wrote before it is
/// warned about. (A worktree agent never gets here: its broken link is handled before.)
fn observe_shared(
    env: &Env,
    round: u32,
    shared: &Mutex<SharedTree>,
    job: &Job<'_>,
    before: &Fingerprint,
) -> Observed {
    let agent = job.agent;
    let mut tree = shared.lock().unwrap_or_else(|e| e.into_inner());
    let git = tree.git.clone();
    let rejected = tree.check_head(&git, round, &agent.name);
    let (after, shared_with) = tree.after(&agent.name);
    let mut changed = changed_between(&git, before, &after);
    // Kept aside under the tree's lock (no other agent's fingerprint is taken meanwhile), then
    // the tree's fingerprint is taken afresh.
    let parent = git.head_fast().unwrap_or_else(|| job.base.clone());
    let phase_base = tree.base.clone();
    let (out, kept_aside) =
        set_aside_repositories(env, &git, (&phase_base, &parent), &changed, round, agent);
    if !out.is_empty() {
        changed.retain(|f| !out.contains(&f.trim_end_matches('/').to_string()));
        tree.forget();
    }
    let twice = tree.note_writers(&agent.name, &changed);
    drop(tree);
    // Two runs at once both see a file change that either may have written: only a writer
    // after another's end is known to have written over its version.
    for (file, other) in twice.into_iter().filter(|(_, o)| !shared_with.contains(o)) {
        let message = format!(
            "agents {other} and {} both wrote {file} in the {} phase of round {round}: \
             the tree holds the last writer's version",
            agent.name,
            agent.phase.as_str()
        );
        env.events.emit(Event::Warning {
            round: Some(round),
            message,
        });
    }
    Observed {
        changed,
        rejected,
        kept_aside,
        shared_with,
        commit: Ok(None),
    }
}

/// Repositories among an agent's change (`nested`): a submodule it edited, a repository it
/// made with `git init` or `git clone`. Their files are kept as plain files under
/// `refs/orch/nested/round-N/AGENT` (a commit on `parent`, the agent's HEAD), the folders put
/// back (a submodule as `base`, the tree before the agent ran, has it), and a warning for each;
/// returns the folders set aside and the sentence for each (the run's `keptAside`).
fn set_aside_repositories(
    env: &Env,
    g: &Git,
    (base, parent): (&str, &str),
    changed: &[String],
    round: u32,
    agent: &Agent,
) -> (Vec<String>, Vec<String>) {
    let folders = crate::engine::git::nested::repository_folders(g.root(), changed);
    if folders.is_empty() {
        return (Vec::new(), Vec::new());
    }
    let r = env.kept_ref("nested", round, Some(&agent.name));
    let msg = format!(
        "orch: round {round} {}: repositories inside the tree, as plain files",
        agent.name
    );
    let why: Vec<String> =
        match crate::engine::git::nested::keep_and_put_back(g, base, parent, &r, &msg, &folders) {
            Ok(done) => done
                .iter()
                .map(|k| crate::engine::git::nested::describe(k, &r))
                .collect(),
            Err(e) => {
                // Not kept: left where they are and out of the commit all the same.
                vec![format!(
                "{}: git repositories inside the tree are not committed, and keeping their files \
                 in {r} failed ({e}); they are left in place",
                folders.join(", ")
            )]
            }
        };
    for w in &why {
        // The event is the warning (the human reporter prints it); the round note follows.
        let message = format!("agent {}: {w}", agent.name);
        env.events.emit(Event::Warning {
            round: Some(round),
            message,
        });
    }
    (folders, why)
}

/// Files over `git.maxFileBytes` in an agent's worktree: kept under
/// `refs/orch/too-big/round-N/AGENT`, taken out, and a warning; the paths set aside.
pub(super) fn set_aside_oversized(
    env: &Env,
    g: &Git,
    changed: &[String],
    round: u32,
    agent: &str,
) -> Option<Vec<String>> {
    let max = env.mission.git.max_file_bytes;
    let big = Some(g.oversized_among(changed, max)).filter(|b| !b.is_empty())?;
    let r = format!("refs/orch/too-big/round-{round}/{agent}");
    let names: Vec<String> = big
        .iter()
        .map(|(p, n)| format!("{p} ({})", units::bytes(*n)))
        .collect();
    let msg = format!("orch: round {round} {agent}: files over git.maxFileBytes");
    let message = match g.set_aside(&big, &r, &msg) {
        Ok(()) => format!(
            "agent {agent}: left out of its change, over git.maxFileBytes ({}), kept in {r}: {}",
            units::bytes(max),
            names.join(", ")
        ),
        Err(e) => format!(
            "agent {agent}: over git.maxFileBytes ({}) but could not be set aside ({e}): {}",
            units::bytes(max),
            names.join(", ")
        ),
    };
    env.events.emit(Event::Warning {
        round: Some(round),
        message,
    });
    Some(big.into_iter().map(|(p, _)| p).collect())
}

/// Commits what the agent left in its worktree. `Ok(None)`: nothing to commit, or the main
/// thread commits later (`later`: after its ownership check). An agent's own commits (`moved`
/// HEAD) are its change as long as they build on the base; with nothing left uncommitted on
/// top, its HEAD is the commit to merge.
fn commit_in_worktree(
    g: &Git,
    base: &str,
    moved: Option<&str>,
    changed: &[String],
    later: bool,
    message: &str,
) -> std::result::Result<Option<String>, String> {
    if let Some(head) = moved {
        if !g.is_ancestor(base, head).map_err(|e| e.to_string())? {
            return Err(format!(
                "it moved its worktree off the round's base (HEAD is {head}, which does not \
                 descend from {base})"
            ));
        }
    }
    if changed.is_empty() || later {
        return Ok(None);
    }
    let made = g.commit_agent_change(message).map_err(|e| e.to_string())?;
    Ok(made.or_else(|| moved.map(str::to_owned)))
}

/// A job the pool never started (budget or interrupt): a `cancelled` run of no time.
pub(super) fn not_started(env: &Env, round: u32, job: Job<'_>) -> RawRun {
    let layout = env.layout;
    RawRun {
        agent: job.agent.name.clone(),
        phase: job.agent.phase,
        model: job.model,
        task: job.task.map(|t| t.id),
        timeout_ms: job.timeout.as_millis() as u64,
        start_ms: 0,
        finished: process::Finished {
            ending: Ending::Cancelled,
            started: Instant::now(),
            elapsed: Duration::ZERO,
        },
        changed: Vec::new(),
        worktree: None,
        base: job.base,
        commit: Ok(None),
        rejected: None,
        stdout: PathBuf::new(),
        stderr: PathBuf::new(),
        log_rel: String::new(),
        result_file: layout.scratch(round).join("none"),
        filed_tasks: false,
        deferred: false,
        kept_aside: Vec::new(),
        sandbox_refused: Vec::new(),
        shared_with: Vec::new(),
        session: job.session,
    }
}

/// The changed files of the shared tree with their mtime and size, and HEAD: what one agent
/// run changed is the difference between the fingerprints before and after it. With several
/// agents at once in one tree the attribution is approximate (a file written by two is counted
/// for both); worktree isolation makes it exact.
#[derive(Clone, Default)]
struct Fingerprint {
    files: BTreeMap<String, Option<(i128, u64)>>,
    /// Moves when an agent commits its own work (aider does by default).
    head: Option<String>,
}

fn fingerprint(git: &Git) -> Fingerprint {
    let mut files = BTreeMap::new();
    for e in git.status().unwrap_or_default() {
        let meta = std::fs::symlink_metadata(git.root().join(&e.path)).ok();
        let sig = meta.map(|m| {
            use std::os::unix::fs::MetadataExt;
            (
                m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128,
                m.len(),
            )
        });
        files.insert(e.path, sig);
    }
    Fingerprint {
        files,
        head: git.head_fast(),
    }
}

/// The agents of one pool run in the shared tree. The fingerprint taken when the last of them
/// ended is still the tree's when the next one starts (nothing else writes the tree during a
/// phase), so it serves as that agent's "before": one `git status` per agent instead of two.
pub(super) struct SharedTree {
    /// The tree itself: the main tree, or orch's Phase B worktree beside the tests.
    pub(super) git: Git,
    last: Option<Fingerprint>,
    /// The branch HEAD was on when the phase started (`None`: detached) and the phase's base:
    /// every agent must leave HEAD on that branch at a commit that descends from the base.
    branch: Option<String>,
    base: String,
    /// The last HEAD seen where it should be: where a moved HEAD is put back.
    good: String,
    /// Who wrote each file so far this phase: a second writer is warned about.
    writers: BTreeMap<String, String>,
    /// The agents at work in the tree now (how many run is its length), each with every agent
    /// that worked there at some moment of its run: a file that changed during its run may be
    /// any of theirs.
    overlaps: BTreeMap<String, std::collections::BTreeSet<String>>,
}

impl SharedTree {
    pub(super) fn new(git: &Git, base: &str) -> SharedTree {
        SharedTree {
            git: git.clone(),
            last: None,
            branch: git.branch(),
            base: base.to_string(),
            good: base.to_string(),
            writers: BTreeMap::new(),
            overlaps: BTreeMap::new(),
        }
    }

    /// Records `agent` as the writer of `files`; returns the files another agent wrote
    /// before it this phase, with that agent.
    fn note_writers(&mut self, agent: &str, files: &[String]) -> Vec<(String, String)> {
        let mut twice = Vec::new();
        for f in files {
            if let Some(other) = self.writers.insert(f.clone(), agent.to_string()) {
                if other != agent {
                    twice.push((f.clone(), other));
                }
            }
        }
        twice
    }

    /// An agent that left HEAD off its branch or its branch off the phase's base (`git reset
    /// --hard HEAD~1`, `git checkout -b x`): the tree as it left it is kept under
    /// `refs/orch/moved-head/round-N/AGENT` (on the agent's HEAD, so its own commits stay
    /// reachable), HEAD and the branch are put back where they were, and the reason returned.
    pub(super) fn check_head(&mut self, git: &Git, round: u32, agent: &str) -> Option<String> {
        let Some(why) = git.head_moved(self.branch.as_deref(), &self.base) else {
            if let Some(h) = git.head_fast() {
                self.good = h;
            }
            return None;
        };
        // Whatever is there now must be rebuilt: no fingerprint from before the move is valid.
        self.last = None;
        let r = format!("refs/orch/moved-head/round-{round}/{agent}");
        let parent = git
            .head()
            .ok()
            .flatten()
            .unwrap_or_else(|| self.good.clone());
        let kept = git
            .save_tree(&parent, &r, &format!("orch: round {round} {agent}: {why}"))
            .map(|_| format!("the tree it left is kept in {r}"))
            .unwrap_or_else(|e| format!("its tree could not be kept ({e})"));
        let back = match git.put_back(self.branch.as_deref(), &self.base, &self.good) {
            Ok(()) => format!(
                "HEAD is put back at {}",
                crate::engine::git::short(&self.good)
            ),
            Err(e) => format!("HEAD could not be put back ({e})"),
        };
        log::warn!("agent {agent}: {why}; {kept}; {back}");
        Some(format!("{why}; {kept}; {back}"))
    }

    /// After the main thread changed the tree between runs (a failed agent's files taken out):
    /// the next agent's "before" is taken afresh.
    pub(super) fn forget(&mut self) {
        self.last = None;
    }

    fn before(&mut self, agent: &str) -> Fingerprint {
        let fp = match (self.overlaps.len(), self.last.take()) {
            (0, Some(fp)) => fp,
            _ => fingerprint(&self.git),
        };
        let others: std::collections::BTreeSet<String> = self.overlaps.keys().cloned().collect();
        for with in self.overlaps.values_mut() {
            with.insert(agent.to_string());
        }
        self.overlaps.insert(agent.to_string(), others);
        fp
    }

    /// The tree after `agent`'s run, and the agents that worked in it at some moment of that
    /// run.
    fn after(&mut self, agent: &str) -> (Fingerprint, Vec<String>) {
        let fp = fingerprint(&self.git);
        let others = self.overlaps.remove(agent).unwrap_or_default();
        self.last = self.overlaps.is_empty().then(|| fp.clone());
        (fp, others.into_iter().collect())
    }
}

fn changed_between(git: &Git, before: &Fingerprint, after: &Fingerprint) -> Vec<String> {
    let mut out: Vec<String> = after
        .files
        .iter()
        .filter(|(p, sig)| before.files.get(*p) != Some(sig))
        .map(|(p, _)| p.clone())
        .collect();
    out.extend(
        before
            .files
            .keys()
            .filter(|p| !after.files.contains_key(*p))
            .cloned(),
    );
    if let (Some(b), Some(a)) = (&before.head, &after.head) {
        if a != b {
            out.extend(git.files_between(b, a).unwrap_or_default());
        }
    }
    out.sort();
    out.dedup();
    out
}

pub(super) fn describe_ending(e: &Ending) -> String {
    match e {
        Ending::Exited(c) => format!("exit status {c}"),
        Ending::Signalled(s) => format!("killed by signal {s}"),
        Ending::TimedOut => "timed out".into(),
        Ending::Cancelled => "cancelled".into(),
        Ending::Stuck(s) => format!("stopped as {}: {}", s.cause, s.words),
        Ending::SpawnFailed(m) => m.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::move_old_handoff;

    #[test]
    fn an_old_handoff_file_moves_to_the_agents_folder_unless_a_newer_is_there() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("handoff/a.json");
        let new = dir.path().join("handoff/a/handoff.json");
        std::fs::create_dir_all(old.parent().unwrap()).unwrap();
        std::fs::write(&old, r#"{"status": "complete"}"#).unwrap();
        move_old_handoff(&old, &new);
        assert!(!old.exists());
        assert_eq!(
            std::fs::read_to_string(&new).unwrap(),
            r#"{"status": "complete"}"#
        );
        // A newer one in the folder wins; the old one is left where it is.
        std::fs::write(&old, r#"{"status": "blocked"}"#).unwrap();
        move_old_handoff(&old, &new);
        assert!(old.exists());
        assert_eq!(
            std::fs::read_to_string(&new).unwrap(),
            r#"{"status": "complete"}"#
        );
        // Nothing to move: nothing happens.
        let none = dir.path().join("handoff/b.json");
        move_old_handoff(&none, &dir.path().join("handoff/b/handoff.json"));
        assert!(!dir.path().join("handoff/b").exists());
    }
}
