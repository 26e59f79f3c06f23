//! The checks serde cannot make, and their exit-2 messages: name syntax, duplicate names,
//! unknown placeholders, references between agents, one source per prompt section, paths that
//! must stay inside the repository, what the agent CLIs accept ([`CliCatalog`]). Each error
//! names the file and the key path (`agents[2].dependsOn[0]`); [`Mission::validate`] runs the
//! checks in the order of the file's keys, so the first error reported stays the same.
//!
//! The ranges of numbers and the `dependsOn` graph are `bounds.rs`'s.

use std::collections::HashSet;
use std::path::Path;

use super::agent::{valid_agent_name, Agent, Command, InheritEnv, When, MAX_SESSION_ROUNDS};
use super::schema::{Mission, BUILTIN_SECTIONS};
use crate::error::{Error, Result};

/// What a mission's validation asks of the agent CLIs, which live above the data model
/// (`agents::Adapters` answers from the adapters' registry).
pub trait CliCatalog {
    /// The names an agent's `cli` may take, in the order an error lists them.
    fn names(&self) -> &'static [&'static str];

    /// Whether `agent`'s command can keep a session (`session: true`); `Err` says why not.
    fn session_support(&self, agent: &Agent) -> std::result::Result<(), String>;
}

/// Placeholders allowed inside an agent's argv.
const AGENT_PLACEHOLDERS: &[&str] = &[
    "model",
    "prompt_file",
    "round",
    "agent",
    "task_file",
    "workdir",
];
/// Placeholders allowed inside a sim's argv.
const SIM_PLACEHOLDERS: &[&str] = &["out", "round"];

impl Mission {
    /// Checks what the schema cannot express. Errors name the key path; the checks run in the
    /// order of the keys' sections below, so the first error reported stays the same.
    pub fn validate(&self, file: &Path, clis: &dyn CliCatalog) -> Result<()> {
        self.check_top_level(file)?;
        let mut seen = HashSet::new();
        for (i, a) in self.agents.iter().enumerate() {
            check_agent_identity(file, i, a, &mut seen)?;
            self.check_agent_budget(file, i, a)?;
            check_adaptive_timeout(file, i, a)?;
            super::stuck::check(file, &format!("agents[{i}].stuck"), a.stuck.as_ref())?;
            self.check_agent_schedule(file, i, a)?;
            check_agent_session(file, clis, i, a)?;
        }
        self.check_sections(file)?;
        self.check_sims(file)?;
        self.check_tests(file)?;
        self.check_tasks_git_hooks(file)?;
        self.check_stop_limits_pricing(file)?;
        self.check_bounds(file)?;
        self.check_dependency_cycles(file)?;
        check_inherit_env(file, "inheritEnv", self.inherit_env.as_ref())?;
        for (i, a) in self.agents.iter().enumerate() {
            check_inherit_env(
                file,
                &format!("agents[{i}].inheritEnv"),
                a.inherit_env.as_ref(),
            )?;
            check_path_inherited(file, i, a, self.inherit_env.as_ref())?;
        }
        Ok(())
    }

    /// The mission's own keys: name, agents present, concurrency, budget, grace, state folder,
    /// launcher.
    fn check_top_level(&self, file: &Path) -> Result<()> {
        let err = |path: String, msg: String| Err(Error::mission(file, path, msg));
        if self.name.trim().is_empty() {
            return err("name".into(), "must not be empty".into());
        }
        if self.agents.is_empty() {
            return err("agents".into(), "a mission needs at least one agent".into());
        }
        if self.max_concurrency == 0 {
            return err("maxConcurrency".into(), "must be at least 1".into());
        }
        if let Some(b) = self.budget_usd {
            if !(b.is_finite() && b >= 0.0) {
                return err(
                    "budgetUsd".into(),
                    format!("must be a non-negative number, not {b}"),
                );
            }
        }
        if !(self.kill_grace_s.is_finite() && self.kill_grace_s >= 0.0) {
            return err("killGraceS".into(), "must be a non-negative number".into());
        }
        super::stuck::check(file, "stuck", self.stuck.as_ref())?;
        check_state_dir_shape(file, &self.state_dir)?;
        check_relative(file, "stateDir", &self.state_dir)?;
        if let Some(l) = &self.launcher {
            check_argv(file, "launcher", l, AGENT_PLACEHOLDERS)?;
        }
        Ok(())
    }

    /// An agent's money keys: `timeoutS`, `budgetUsd` and where its tasks go over budget.
    fn check_agent_budget(&self, file: &Path, i: usize, a: &Agent) -> Result<()> {
        let err = |path: String, msg: String| Err(Error::mission(file, path, msg));
        let at = |k: &str| format!("agents[{i}].{k}");
        check_seconds(file, &at("timeoutS"), a.timeout_s)?;
        if let Some(b) = a.budget_usd {
            if !(b.is_finite() && b > 0.0 && b <= 1e9) {
                return err(
                    at("budgetUsd"),
                    format!(
                        "agent {}: must be a number of dollars above 0 and at most 1e9, not {b}",
                        a.name
                    ),
                );
            }
        }
        if let Some(to) = &a.over_budget_tasks_to {
            let why = if a.budget_usd.is_none() {
                Some(format!(
                    "agent {:?} has no budgetUsd (set one, or remove this key)",
                    a.name
                ))
            } else if to == &a.name {
                Some("an agent cannot hand its tasks to itself".to_string())
            } else if self.agent(to).is_none() {
                Some(format!("no agent named {to:?} in this mission"))
            } else {
                None
            };
            if let Some(why) = why {
                return err(at("overBudgetTasksTo"), why);
            }
        }
        Ok(())
    }

    /// When and after whom an agent runs, and what it owns: `priority`, `when`, `dependsOn`,
    /// `owns`, `env`.
    fn check_agent_schedule(&self, file: &Path, i: usize, a: &Agent) -> Result<()> {
        let err = |path: String, msg: String| Err(Error::mission(file, path, msg));
        let at = |k: &str| format!("agents[{i}].{k}");
        if !(1..=3).contains(&a.priority) {
            return err(
                at("priority"),
                format!("must be 1, 2 or 3 (1 runs first), not {}", a.priority),
            );
        }
        match &a.when {
            When::Every { every: 0 } => return err(at("when.every"), "must be at least 1".into()),
            When::Command { command } => {
                check_command(file, &at("when.command"), command, &["round", "agent"])?
            }
            _ => {}
        }
        for (j, d) in a.depends_on.iter().enumerate() {
            if d == &a.name {
                return err(
                    at(&format!("dependsOn[{j}]")),
                    "an agent cannot depend on itself".into(),
                );
            }
            if self.agent(d).is_none() {
                return err(
                    at(&format!("dependsOn[{j}]")),
                    format!("no agent named {d:?} in this mission"),
                );
            }
        }
        for (j, p) in a.owns.iter().enumerate() {
            if let Err(m) = crate::glob::validate(p) {
                return err(at(&format!("owns[{j}]")), m);
            }
        }
        for k in a.env.keys() {
            if k.is_empty() || k.contains('=') || k.contains('\0') {
                return err(at("env"), format!("{k:?} is not a valid variable name"));
            }
        }
        Ok(())
    }

    /// `maxPromptBytes` and the mission's own prompt `sections`.
    fn check_sections(&self, file: &Path) -> Result<()> {
        let err = |path: String, msg: String| Err(Error::mission(file, path, msg));
        if self.max_prompt_bytes < 1024 {
            return err("maxPromptBytes".into(), "must be at least 1024".into());
        }
        for (name, sec) in &self.sections {
            let at = |k: &str| format!("sections.{name}{k}");
            if BUILTIN_SECTIONS.contains(&name.as_str()) {
                return err(
                    at(""),
                    format!("{name:?} is a built-in section; pick another name"),
                );
            }
            let sources =
                sec.file.is_some() as u8 + sec.text.is_some() as u8 + sec.command.is_some() as u8;
            if sources != 1 {
                return err(
                    at(""),
                    "give exactly one of `file`, `text` or `command`".into(),
                );
            }
            if let Some(c) = &sec.command {
                check_command(file, &at(".command"), c, &[])?;
            }
            if sec.max_bytes == Some(0) {
                return err(at(".maxBytes"), "must be at least 1".into());
            }
        }
        Ok(())
    }

    /// The `sims` block: where sims publish, and each sim's command, timeout and launcher.
    fn check_sims(&self, file: &Path) -> Result<()> {
        let Some(s) = &self.sims else {
            return Ok(());
        };
        check_relative(file, "sims.publishTo", &s.publish_to)?;
        for (k, sim) in [("pre", &s.pre), ("post", &s.post)] {
            if let Some(sim) = sim {
                check_command(
                    file,
                    &format!("sims.{k}.command"),
                    &sim.command,
                    SIM_PLACEHOLDERS,
                )?;
                check_seconds(file, &format!("sims.{k}.timeoutS"), sim.timeout_s)?;
                if let Some(l) = &sim.launcher {
                    check_argv(file, &format!("sims.{k}.launcher"), l, SIM_PLACEHOLDERS)?;
                }
            }
        }
        Ok(())
    }

    /// The `tests` block: its command, timeout and named suites.
    fn check_tests(&self, file: &Path) -> Result<()> {
        let err = |path: String, msg: String| Err(Error::mission(file, path, msg));
        let Some(t) = &self.tests else {
            return Ok(());
        };
        check_command(file, "tests.command", &t.command, &["round"])?;
        check_seconds(file, "tests.timeoutS", t.timeout_s)?;
        let mut names = HashSet::new();
        for (i, suite) in t.suites.iter().enumerate() {
            let at = |k: &str| format!("tests.suites[{i}].{k}");
            if !valid_agent_name(&suite.name) {
                return err(
                    at("name"),
                    format!(
                        "{:?} is not a valid suite name (lowercase letters, digits, `-`, `_`)",
                        suite.name
                    ),
                );
            }
            if !names.insert(suite.name.as_str()) {
                return err(at("name"), format!("suite {:?} is named twice", suite.name));
            }
            check_command(file, &at("command"), &suite.command, &["round"])?;
            if suite.paths.is_empty() && !suite.always {
                return err(
                    at("paths"),
                    "a suite needs `paths` globs, or `always: true`".into(),
                );
            }
            for (j, p) in suite.paths.iter().enumerate() {
                if let Err(m) = crate::glob::validate(p) {
                    return err(at(&format!("paths[{j}]")), m);
                }
            }
        }
        Ok(())
    }

    /// The `tasks`, `git.branch` and `hooks` blocks.
    fn check_tasks_git_hooks(&self, file: &Path) -> Result<()> {
        let err = |path: String, msg: String| Err(Error::mission(file, path, msg));
        if let Some(t) = &self.tasks {
            if t.split_after == 0 {
                return err("tasks.splitAfter".into(), "must be at least 1".into());
            }
            if let Some(by) = &t.split_by {
                if self.agent(by).is_none() {
                    return err(
                        "tasks.splitBy".into(),
                        format!("no agent named {by:?} in this mission"),
                    );
                }
            }
        }
        if let Some(b) = &self.git.branch {
            if b.trim().is_empty() {
                return err("git.branch".into(), "must not be empty".into());
            }
            check_placeholders(file, "git.branch", b, &["mission", "date"])?;
        }
        if let Some(h) = &self.hooks {
            for (k, c) in [
                ("roundEnd", &h.round_end),
                ("attention", &h.attention),
                ("runEnd", &h.run_end),
            ] {
                if let Some(c) = c {
                    check_hook(file, &format!("hooks.{k}"), c)?;
                }
            }
            check_seconds(file, "hooks.timeoutS", h.timeout_s)?;
        }
        Ok(())
    }

    /// The `stop` rules, `sims.stopWhen`, the `limits` waits and the `pricing` table.
    fn check_stop_limits_pricing(&self, file: &Path) -> Result<()> {
        let err = |path: String, msg: String| Err(Error::mission(file, path, msg));
        if self.stop.after_test_failures == 0 {
            return err("stop.afterTestFailures".into(), "must be at least 1".into());
        }
        if let Some(c) = self.sims.as_ref().and_then(|s| s.stop_when.as_ref()) {
            check_command(file, "sims.stopWhen", c, &["round"])?;
        }
        if !(self.limits.backoff_s.is_finite() && self.limits.backoff_s > 0.0) {
            return err(
                "limits.backoffS".into(),
                "must be a positive number of seconds".into(),
            );
        }
        if !(self.limits.max_wait_s.is_finite() && self.limits.max_wait_s >= 0.0) {
            return err(
                "limits.maxWaitS".into(),
                "must be a non-negative number of seconds".into(),
            );
        }
        if self.stop.after_empty_rounds == Some(0) {
            return err("stop.afterEmptyRounds".into(), "must be at least 1".into());
        }
        for (model, p) in &self.pricing {
            for (k, v) in [
                ("inputPerMTok", p.input_per_m_tok),
                ("outputPerMTok", p.output_per_m_tok),
            ] {
                if !(v.is_finite() && v >= 0.0) {
                    return err(
                        format!("pricing.{model}.{k}"),
                        "must be a non-negative number".into(),
                    );
                }
            }
        }
        Ok(())
    }
}

/// Who agent `i` is and what it runs: a valid, unique name (`seen` holds the names before it),
/// its command and launcher, its model or model ladder and when the ladder moves.
fn check_agent_identity<'m>(
    file: &Path,
    i: usize,
    a: &'m Agent,
    seen: &mut HashSet<&'m str>,
) -> Result<()> {
    let err = |path: String, msg: String| Err(Error::mission(file, path, msg));
    let at = |k: &str| format!("agents[{i}].{k}");
    if !valid_agent_name(&a.name) {
        return err(
            at("name"),
            format!(
                "{:?} is not a valid agent name: use lowercase letters, digits, `-` and `_`, \
                 starting with a letter or digit (it becomes a file name)",
                a.name
            ),
        );
    }
    if !seen.insert(a.name.as_str()) {
        return err(at("name"), format!("agent {:?} is named twice", a.name));
    }
    check_command(file, &at("command"), &a.command, AGENT_PLACEHOLDERS)?;
    if let Some(l) = &a.launcher {
        check_argv(file, &at("launcher"), l, AGENT_PLACEHOLDERS)?;
    }
    if a.model.is_some() && !a.models.is_empty() {
        return err(
            at("model"),
            "give either `model` or a `models` ladder, not both".into(),
        );
    }
    if a.models.iter().any(|m| m.trim().is_empty()) {
        return err(at("models"), "model names must not be empty".into());
    }
    if a.escalate_after == 0 {
        return err(at("escalateAfter"), "must be at least 1".into());
    }
    if a.deescalate_after == Some(0) {
        return err(at("deescalateAfter"), "must be at least 1".into());
    }
    Ok(())
}

/// Agent `i`'s `adaptiveTimeout`: a positive factor, a sane range of seconds, samples.
fn check_adaptive_timeout(file: &Path, i: usize, a: &Agent) -> Result<()> {
    let err = |path: String, msg: String| Err(Error::mission(file, path, msg));
    let at = |k: &str| format!("agents[{i}].{k}");
    let Some(t) = &a.adaptive_timeout else {
        return Ok(());
    };
    if !(t.factor.is_finite() && t.factor > 0.0) {
        return err(at("adaptiveTimeout.factor"), "must be positive".into());
    }
    check_seconds(file, &at("adaptiveTimeout.minS"), t.min_s)?;
    check_seconds(file, &at("adaptiveTimeout.maxS"), t.max_s)?;
    if t.min_s > t.max_s {
        return err(
            at("adaptiveTimeout"),
            format!("minS ({}) is above maxS ({})", t.min_s, t.max_s),
        );
    }
    if t.min_samples == 0 {
        return err(
            at("adaptiveTimeout.minSamples"),
            "must be at least 1".into(),
        );
    }
    Ok(())
}

/// Agent `i`'s `session` (its CLI must be able to resume one) and `sessionMaxRounds`.
fn check_agent_session(file: &Path, clis: &dyn CliCatalog, i: usize, a: &Agent) -> Result<()> {
    let err = |path: String, msg: String| Err(Error::mission(file, path, msg));
    let at = |k: &str| format!("agents[{i}].{k}");
    if a.session {
        if let Err(why) = clis.session_support(a) {
            return err(
                at("session"),
                format!("agent {:?} cannot keep a session: {why}", a.name),
            );
        }
    }
    match a.session_max_rounds {
        Some(_) if !a.session => err(
            at("sessionMaxRounds"),
            format!(
                "agent {:?} has no session (set `session: true`, or remove this key)",
                a.name
            ),
        ),
        Some(n) if !(1..=MAX_SESSION_ROUNDS).contains(&n) => err(
            at("sessionMaxRounds"),
            format!("must be 1 to {MAX_SESSION_ROUNDS}, not {n}"),
        ),
        _ => Ok(()),
    }
}

/// The repository root itself (`.`, `./`, `""`) cannot be the state folder: orch would write its
/// journal, worktrees and logs among the user's files. (The checks that need the repository,
/// git's own folders and tracked files, are `engine::preflight`'s.)
fn check_state_dir_shape(file: &Path, p: &Path) -> Result<()> {
    use std::path::Component;
    if p.components().all(|c| matches!(c, Component::CurDir)) {
        return Err(Error::mission(
            file,
            "stateDir",
            format!(
                "{:?} is the repository root; orch needs a folder of its own there (the default is \".orch\")",
                p.display().to_string()
            ),
        ));
    }
    if p.components().any(|c| {
        matches!(c, Component::Normal(n) if n.to_str().is_some_and(|n| n.eq_ignore_ascii_case(".git")))
    }) {
        return Err(Error::mission(
            file,
            "stateDir",
            format!(
                "{:?} is inside git's own folder; orch's state would corrupt the repository (the default is \".orch\")",
                p.display().to_string()
            ),
        ));
    }
    Ok(())
}

/// Variable names and globs: letters, digits, `_`, and `*`/`?`.
fn check_inherit_env(file: &Path, at: &str, v: Option<&InheritEnv>) -> Result<()> {
    if let Some(InheritEnv::Only(list)) = v {
        for (j, p) in list.iter().enumerate() {
            let ok = !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '*' || c == '?');
            if !ok {
                return Err(Error::mission(
                    file,
                    format!("{at}[{j}]"),
                    format!(
                        "{p:?} is not a variable name or glob (letters, digits, `_`, `*`, `?`)"
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// An `inheritEnv` list that leaves agent `i` without `PATH` (not listed, not in its `env`):
/// the agent would start with no search path, and whatever its CLI runs in turn (`node` behind
/// a `#!/usr/bin/env node`, git, the tests, a build tool) is looked for in the system's default
/// folders only (libc's `/bin:/usr/bin`, a shell's own default), so a CLI or tool installed
/// elsewhere (nvm, `~/.local/bin`, `~/.cargo/bin`) fails, every round.
/// Refused rather than patched by passing orch's `PATH` anyway: the list stays exactly what
/// the agent gets.
fn check_path_inherited(
    file: &Path,
    i: usize,
    agent: &Agent,
    mission: Option<&InheritEnv>,
) -> Result<()> {
    let (at, list) = match (agent.inherit_env.as_ref(), mission) {
        (Some(own), _) => (format!("agents[{i}].inheritEnv"), own),
        (None, Some(m)) => ("inheritEnv".to_string(), m),
        (None, None) => return Ok(()),
    };
    if list.passes("PATH") || agent.env.contains_key("PATH") {
        return Ok(());
    }
    Err(Error::mission(
        file,
        at,
        format!(
            "lists no PATH, so agent {:?} would start with no search path: what its CLI runs \
             (node, git, the tests, a build tool) is found only in the system's default folders \
             (/bin, /usr/bin), not where nvm, ~/.local/bin or ~/.cargo/bin put it; add \"PATH\" \
             to the list, or set agents[{i}].env.PATH",
            agent.name
        ),
    ))
}

fn check_command(file: &Path, at: &str, cmd: &Command, allowed: &[&str]) -> Result<()> {
    match cmd {
        Command::Argv(v) => check_argv(file, at, v, allowed),
        Command::Shell(s) if s.trim().is_empty() => {
            Err(Error::mission(file, at, "the command is empty"))
        }
        Command::Shell(s) => check_placeholders(file, at, s, allowed),
    }
}

/// A hook's command gets no placeholders (the event comes on stdin and in `ORCH_*`), so braces
/// in it (a JSON body for curl) are the user's own text.
fn check_hook(file: &Path, at: &str, cmd: &Command) -> Result<()> {
    let empty = match cmd {
        Command::Argv(v) => v.first().is_none_or(|p| p.is_empty()),
        Command::Shell(s) => s.trim().is_empty(),
    };
    if empty {
        return Err(Error::mission(file, at, "the command is empty"));
    }
    Ok(())
}

fn check_argv(file: &Path, at: &str, argv: &[String], allowed: &[&str]) -> Result<()> {
    if argv.first().is_none_or(|p| p.is_empty()) {
        return Err(Error::mission(
            file,
            at,
            "the command is empty: give an argv array such as [\"claude\", \"-p\"] or a shell string",
        ));
    }
    for (j, arg) in argv.iter().enumerate() {
        check_placeholders(file, &format!("{at}[{j}]"), arg, allowed)?;
    }
    Ok(())
}

/// Finds `{name}` placeholders and rejects unknown ones, so a typo such as `{modle}` fails
/// at validation instead of reaching the agent verbatim. `{{` is not a placeholder.
fn check_placeholders(file: &Path, at: &str, s: &str, allowed: &[&str]) -> Result<()> {
    for name in placeholders(s) {
        if !allowed.contains(&name) {
            return Err(Error::mission(
                file,
                at,
                format!(
                    "unknown placeholder {{{name}}}; known here: {}",
                    allowed
                        .iter()
                        .map(|a| format!("{{{a}}}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// The `{word}` placeholders in `s` (identifier characters only, so JSON or shell braces such
/// as `${HOME}` or `{ echo; }` are left alone).
pub fn placeholders(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'{' && (i == 0 || bytes[i - 1] != b'$') {
            if let Some(len) = s[i + 1..].find('}') {
                let name = &s[i + 1..i + 1 + len];
                if !name.is_empty()
                    && name
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit())
                {
                    out.push(name);
                    i += len + 2;
                    continue;
                }
            }
        }
        i += 1;
    }
    out
}

fn check_seconds(file: &Path, at: &str, v: f64) -> Result<()> {
    if v.is_finite() && v > 0.0 && v <= 7.0 * 86_400.0 {
        Ok(())
    } else {
        Err(Error::mission(
            file,
            at,
            format!("must be a number of seconds above 0 and at most a week, not {v}"),
        ))
    }
}

/// Paths orch writes to must stay inside the repository.
fn check_relative(file: &Path, at: &str, p: &Path) -> Result<()> {
    use std::path::Component;
    if p.as_os_str().is_empty()
        || p.components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(Error::mission(
            file,
            at,
            format!(
                "{} must be a relative path inside the repository (no `..`, not absolute)",
                p.display()
            ),
        ));
    }
    Ok(())
}
