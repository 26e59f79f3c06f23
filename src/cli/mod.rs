//! The command line: clap's definition of every subcommand (docs/src/commands.md) and the dispatch
//! from a parsed command to the library. Flags are turned into the library's own option
//! structs here, so nothing below this module knows about clap.

pub mod demo;
pub mod drive;
pub mod dryrun;
pub mod import;
pub mod init;
pub mod live;
pub mod out;
pub mod replay;
pub mod show;
pub mod status;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::engine::runner::{self, RunOptions, Workspace};
use crate::engine::store::state::{Layout, Lock};
use crate::engine::store::tasks::{Queue, TaskStatus};
use crate::error::{Error, Result, EXIT_OK};
use crate::events::Verbosity;

pub use drive::drive;

#[derive(Debug, Parser)]
#[command(
    name = "orch",
    version,
    about = "Runs teams of autonomous coding agents against a git repository, round after round, unattended.",
    long_about = None,
    after_help = "Start with `orch demo` (a real run on a scratch repository, no API key needed), then `orch init` in your own repository.\nExit status: 0 ok, 1 a round failed or was reverted (orch round), 2 bad usage or mission, 3 stopped by budget or stall guard, 4 another orch holds the lock, 5 finished early, 6 an agent CLI cannot run (bad key or request), 75 a provider limit outlasts limits.maxWaitS (run again later), 130 interrupted."
)]
pub struct Cli {
    /// More output (-v: every agent start; -vv: debug logs).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only warnings and errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run rounds until the mission's round count, resuming after the last finished round.
    #[command(
        after_help = "Examples:\n  orch run                      # resume and run up to the mission's `rounds`\n  orch run --rounds 3           # three more rounds\n  orch run --dry-run            # what the next round would do; runs nothing\n  orch run --json | jq -c 'select(.event==\"agentEnd\")'"
    )]
    Run(RunArgs),
    /// Replay round N as it ran, beside the branch (N <= the last round), or run the next round
    /// (N = last + 1).
    #[command(
        after_help = "Examples:\n  orch round 3                  # replay round 3 from its base in a scratch worktree; exit 0 same outcome, 1 differs\n  orch round 3 --agent ui-dev   # replay only the ui-dev agent\n  orch round 3 --dry-run        # the plan of round 3 as recorded; runs nothing\n  orch round 3 --fresh --keep   # re-plan from today's mission, keep the worktree\n  orch round 6                  # after round 5: the next round, on the branch\nA replay of real agents costs real money: --budget USD caps what it spends."
    )]
    Round(RoundArgs),
    /// One round for a person: status, agents, kept refs, tests, sims, decisions, log files.
    #[command(
        after_help = "Examples:\n  orch show 3                   # round 3 as it ran\n  orch show 3 --json | jq '.round.agents[] | {name, status}'\n  orch show 3 --replay 1        # the first replay of round 3 (`orch round 3`)"
    )]
    Show(ShowArgs),
    /// Print the report over every round log (markdown, json, html or svg).
    #[command(
        after_help = "Examples:\n  orch report > report.md\n  orch report --format html -o report.html\n  orch report --rounds 10..20 --format json | jq .totals"
    )]
    Report(ReportArgs),
    /// Where the run stands: last round, cost and budget, each agent's model and streaks.
    #[command(
        after_help = "Examples:\n  orch status\n  orch status --watch           # redraw every second while a run is going\n  orch status --json | jq .running"
    )]
    Status(StatusArgs),
    /// Manage the task queue.
    #[command(
        subcommand,
        after_help = "Examples:\n  orch task add --agent fixer --priority 1 'validate item names'\n  orch task list --all\n  orch task done t-3"
    )]
    Task(TaskCommand),
    /// Check a mission file and print a short summary.
    #[command(
        after_help = "Examples:\n  orch validate\n  orch validate -m missions/nightly.json\n  cat orch.json | orch validate -m -"
    )]
    Validate(MissionArg),
    /// Write an example mission (orch.json) and prompt templates in the current folder.
    #[command(
        after_help = "Examples:\n  orch init                     # fake script agents, runs as is\n  orch init --agent claude      # agents that call Claude Code unattended"
    )]
    Init(InitArgs),
    /// A real multi-round run on a scratch repository with bundled fake agents; no API key.
    #[command(
        after_help = "Examples:\n  orch demo                     # in a new temporary folder\n  orch demo --dir /tmp/try-orch --rounds 5\n  orch demo --json | jq -r .event\n  orch demo --real-model http://127.0.0.1:8080   # the code agents are Claude Code on a local model"
    )]
    Demo(DemoArgs),
    /// Convert a mission of the original orchestrator into an orch mission.
    #[command(
        after_help = "Examples:\n  orch import old/mission.json             # writes orch.json, lists what it could not carry over\n  orch import old/sequence.json -o seq.json # a sequence: seq.json plus seq-1.json, seq-2.json, ..."
    )]
    Import(ImportArgs),
    /// Print a shell completion script to stdout.
    #[command(
        after_help = "Examples:\n  orch completions bash > ~/.local/share/bash-completion/completions/orch\n  orch completions zsh > ~/.zfunc/_orch        # with fpath+=~/.zfunc before compinit\n  orch completions fish > ~/.config/fish/completions/orch.fish"
    )]
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) to stdout.
    #[command(
        after_help = "Examples:\n  orch man | man -l -\n  orch man > /usr/local/share/man/man1/orch.1"
    )]
    Man,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The original mission (or sequence) JSON.
    pub path: PathBuf,
    /// Where to write the orch mission.
    #[arg(short, long, default_value = "orch.json", value_name = "FILE")]
    pub output: PathBuf,
    /// Overwrite existing files.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct MissionArg {
    /// The mission file (`-` for standard input).
    #[arg(short, long, default_value = "orch.json", value_name = "FILE")]
    pub mission: PathBuf,
}

#[derive(Debug, Args)]
pub struct OutputArgs {
    /// Print every event as one JSON object a line on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub mission: MissionArg,
    /// Run N more rounds (instead of up to the mission's `rounds`).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(0..=crate::mission::MAX_ROUNDS as i64))]
    pub rounds: Option<u32>,
    /// At most N agents at once (overrides maxConcurrency).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=crate::mission::MAX_CONCURRENCY as i64))]
    pub max_concurrency: Option<u32>,
    /// Stop once the cumulative cost reaches USD (overrides budgetUsd).
    #[arg(long, value_name = "USD", value_parser = parse_usd)]
    pub budget: Option<f64>,
    /// Run even though the working tree has uncommitted changes.
    #[arg(long)]
    pub allow_dirty: bool,
    /// Exit 1 when any agent failed or timed out.
    #[arg(long)]
    pub strict: bool,
    /// Commit on a branch of the run's own, created from HEAD ({mission} and {date} allowed;
    /// overrides git.branch); your branch is checked out again at the end.
    #[arg(long, value_name = "NAME")]
    pub branch: Option<String>,
    /// Do not wait out a provider's rate or usage limit: end the run at once (exit 75), the
    /// state saved for a later `orch run` (for CI).
    #[arg(long)]
    pub no_wait: bool,
    /// Print the next round's plan (agents and why, models, timeouts, queue order, prompt
    /// sizes, sims, tests) and run nothing; leaves no trace.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct RoundArgs {
    /// The round's number.
    pub n: u32,
    #[command(flatten)]
    pub mission: MissionArg,
    /// Only this agent (repeatable); runs it whatever its `when`.
    #[arg(long = "agent", value_name = "NAME")]
    pub agents: Vec<String>,
    /// Stop once the cumulative cost reaches USD (overrides budgetUsd).
    #[arg(long, value_name = "USD", value_parser = parse_usd)]
    pub budget: Option<f64>,
    /// Run even though the working tree has uncommitted changes.
    #[arg(long)]
    pub allow_dirty: bool,
    /// Do not wait out a provider's rate or usage limit: end the run at once (exit 75).
    #[arg(long)]
    pub no_wait: bool,
    /// Print the round's plan and run nothing; leaves no trace (a replay: the plan as recorded).
    #[arg(long)]
    pub dry_run: bool,
    /// A replay: plan and render the prompts from today's mission instead of the record.
    #[arg(long)]
    pub fresh: bool,
    /// A replay: keep its scratch worktree and print its path.
    #[arg(long)]
    pub keep: bool,
    /// Print every event as one JSON object a line on stdout; a replay prints its comparison
    /// as one JSON object instead (its events go to its folder's events.ndjson).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The round's number.
    pub n: u32,
    #[command(flatten)]
    pub mission: MissionArg,
    /// Show replay K of the round (`replays/round-NNNN-K/`) instead of the round itself.
    #[arg(long, value_name = "K")]
    pub replay: Option<u32>,
    /// The round as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    #[command(flatten)]
    pub mission: MissionArg,
    /// markdown (default), json, html or svg.
    #[arg(long, default_value = "markdown")]
    pub format: String,
    /// Write to FILE instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Only rounds A to B (inclusive), e.g. 10..20.
    #[arg(long, value_name = "A..B")]
    pub rounds: Option<String>,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub mission: MissionArg,
    #[arg(long)]
    pub json: bool,
    /// Redraw every second until the run in progress ends.
    #[arg(long)]
    pub watch: bool,
}

#[derive(Debug, Subcommand)]
pub enum TaskCommand {
    /// Add a task; prints its id.
    Add {
        #[command(flatten)]
        mission: MissionArg,
        /// The agent that takes it.
        #[arg(long)]
        agent: String,
        /// 1 (first) to 3.
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..=3))]
        priority: u8,
        #[arg(long, default_value = "")]
        body: String,
        title: String,
    },
    /// List pending and running tasks (--all: every task).
    List {
        #[command(flatten)]
        mission: MissionArg,
        #[arg(long)]
        json: bool,
        #[arg(long)]
        all: bool,
    },
    /// Mark a task done.
    Done {
        #[command(flatten)]
        mission: MissionArg,
        id: String,
    },
    /// Drop a task.
    Drop {
        #[command(flatten)]
        mission: MissionArg,
        id: String,
    },
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// What the agents call: script (fake agents that run as is), claude, codex, gemini or aider.
    #[arg(long, default_value = "script")]
    pub agent: String,
    /// Overwrite existing files.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where to make the scratch repository (must be empty or absent); default: a new
    /// temporary folder.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// How many rounds.
    #[arg(long, default_value_t = 3)]
    pub rounds: u32,
    /// Run the demo's two code agents as real Claude Code (`claude` on PATH) on a local model
    /// served at URL with the Anthropic Messages API (README, "Local models").
    #[arg(long, value_name = "URL")]
    pub real_model: Option<String>,
    /// The model name Claude Code asks the local server for (Ollama needs its own names).
    #[arg(
        long,
        value_name = "NAME",
        default_value = "sonnet",
        requires = "real_model"
    )]
    pub real_model_name: String,
    #[command(flatten)]
    pub output: OutputArgs,
}

impl Cli {
    pub fn verbosity(&self) -> Verbosity {
        if self.quiet {
            Verbosity::Quiet
        } else if self.verbose > 0 {
            Verbosity::Verbose
        } else {
            Verbosity::Normal
        }
    }
}

/// Runs a parsed command; returns the exit status.
pub fn run(cli: Cli) -> Result<i32> {
    let verbosity = cli.verbosity();
    let cwd = std::env::current_dir().map_err(|e| Error::io("reading the current folder", e))?;
    match cli.command {
        Command::Run(a) => {
            let opts = RunOptions {
                dir: cwd,
                mission: a.mission.mission,
                more_rounds: a.rounds,
                only_round: None,
                max_concurrency: a.max_concurrency.map(|n| n as usize),
                budget: a.budget,
                allow_dirty: a.allow_dirty,
                strict: a.strict,
                agents: Vec::new(),
                branch: a.branch,
                no_wait: a.no_wait,
            };
            if a.dry_run {
                return dry_run(&opts, a.output.json);
            }
            drive(&opts, a.output.json, verbosity)
        }
        Command::Round(a) => {
            if a.n == 0 {
                return Err(Error::Usage("rounds are numbered from 1".into()));
            }
            let last = check_round_number(&cwd, &a.mission.mission, a.n)?;
            if a.n <= last {
                return crate::cli::replay::run(
                    crate::cli::replay::Args {
                        dir: &cwd,
                        mission: &a.mission.mission,
                        opts: crate::engine::replay::ReplayOptions {
                            round: a.n,
                            agents: a.agents,
                            fresh: a.fresh,
                            keep: a.keep,
                            budget: a.budget,
                        },
                        dry_run: a.dry_run,
                        json: a.json,
                    },
                    verbosity,
                );
            }
            if a.fresh || a.keep {
                return Err(Error::Usage(format!(
                    "--fresh and --keep are for a replay: round {} has not run yet (the last round is {last})",
                    a.n
                )));
            }
            let opts = RunOptions {
                dir: cwd,
                mission: a.mission.mission,
                only_round: Some(a.n),
                budget: a.budget,
                allow_dirty: a.allow_dirty,
                agents: a.agents,
                no_wait: a.no_wait,
                ..RunOptions::default()
            };
            if a.dry_run {
                return dry_run(&opts, a.json);
            }
            drive(&opts, a.json, verbosity)
        }
        Command::Show(a) => {
            let layout = layout_for(&cwd, &a.mission.mission)?;
            let git = crate::engine::git::Git::open(&cwd)?;
            crate::cli::show::print(&git, &layout, a.n, a.replay, a.json)
        }
        Command::Report(a) => report(&cwd, a),
        Command::Status(a) => crate::cli::status::print(&cwd, &a.mission.mission, a.json, a.watch),
        Command::Task(t) => task(&cwd, t),
        Command::Validate(a) => validate(&cwd, &a),
        Command::Init(a) => crate::cli::init::init(&cwd, &a.agent, a.force).map(|_| EXIT_OK),
        Command::Demo(a) => {
            let real = a
                .real_model
                .as_deref()
                .map(|url| crate::cli::demo::RealModel {
                    url,
                    model: &a.real_model_name,
                });
            crate::cli::demo::run(a.dir, a.rounds, real, a.output.json, verbosity)
        }
        Command::Import(a) => {
            let imported = crate::cli::import::import(&cwd.join(&a.path), &cwd.join(&a.output))?;
            crate::cli::import::write(&imported, a.force)?;
            Ok(EXIT_OK)
        }
        Command::Completions { shell } => {
            use clap::CommandFactory;
            // Into memory first: clap_complete panics on a failed write.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "orch", &mut script);
            out::write(&script)?;
            Ok(EXIT_OK)
        }
        Command::Man => {
            use clap::CommandFactory;
            let mut page = Vec::new();
            clap_mangen::Man::new(Cli::command())
                .render(&mut page)
                .map_err(|e| Error::io("rendering the man page", e))?;
            out::write(&page)?;
            Ok(EXIT_OK)
        }
    }
}

/// `orch round N` runs the next round (N = last + 1) or replays one that ran (N <= last);
/// a round further ahead would count rounds that never ran as done.
fn check_round_number(cwd: &std::path::Path, mission: &std::path::Path, n: u32) -> Result<u32> {
    let file = crate::mission::locate(cwd, mission);
    if crate::engine::sequence::detect(&file)?.is_some() {
        return Err(Error::Usage(format!(
            "{} is a sequence of missions; `orch round N` needs one mission (-m FILE)",
            file.display()
        )));
    }
    let layout = layout_for(cwd, mission)?;
    let last = crate::engine::store::state::State::load(&layout)?.last_round;
    if n > last + 1 {
        let said = if last == 0 {
            "no round has run yet".to_string()
        } else {
            format!("the last round is {last}")
        };
        return Err(Error::Usage(format!(
            "round {n}: {said}; `orch round {}` runs the next one (`orch run` runs them all)",
            last + 1
        )));
    }
    Ok(last)
}

/// `--dry-run`: the plan on stdout (JSON with `--json`). Opens the mission and the repository
/// read-only; unlike [`drive()`] it makes no sink, so not even `events.ndjson` is touched.
fn dry_run(opts: &RunOptions, json: bool) -> Result<i32> {
    let ws = Workspace::open(&opts.dir, &opts.mission)?;
    let plan = crate::cli::dryrun::plan(&ws, opts)?;
    if json {
        crate::outln!(
            "{}",
            serde_json::to_string_pretty(&plan).unwrap_or_else(|_| "{}".into())
        )?;
    } else {
        crate::out!("{}", crate::cli::dryrun::text(&plan))?;
    }
    Ok(EXIT_OK)
}

fn report(cwd: &std::path::Path, a: ReportArgs) -> Result<i32> {
    let ws_layout = layout_for(cwd, &a.mission.mission)?;
    let format: crate::report::Format = a.format.parse().map_err(|_| {
        Error::Usage(format!(
            "--format {}: expected markdown, json, html or svg",
            a.format
        ))
    })?;
    let rounds = match &a.rounds {
        None => None,
        Some(r) => Some(parse_range(r)?),
    };
    let bytes = crate::report::render(&crate::report::ReportOptions {
        state_dir: ws_layout.dir.clone(),
        format,
        rounds,
    })?;
    match a.output {
        Some(p) => crate::engine::store::state::write_atomic(&p, &bytes)?,
        None => out::write(&bytes)?,
    }
    Ok(EXIT_OK)
}

/// `--budget USD`: a finite number of dollars, 0 or more (never NaN, which no cost reaches).
fn parse_usd(s: &str) -> std::result::Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && (0.0..=1e9).contains(&v) => Ok(v),
        _ => Err(format!("{s:?} is not an amount of dollars from 0 to 1e9")),
    }
}

/// `A..B`, `A..`, `..B` or `N`.
pub fn parse_range(s: &str) -> Result<(u32, u32)> {
    let bad = || Error::Usage(format!("--rounds {s}: expected A..B, A.., ..B or N"));
    let num = |t: &str, default: u32| -> Result<u32> {
        if t.is_empty() {
            Ok(default)
        } else {
            t.trim().parse().map_err(|_| bad())
        }
    };
    let (a, b) = match s.split_once("..") {
        Some((a, b)) => (num(a, 0)?, num(b.trim_start_matches('='), u32::MAX)?),
        None => {
            let n = num(s, 0)?;
            (n, n)
        }
    };
    if a > b {
        return Err(bad());
    }
    Ok((a, b))
}

/// The state folder, from the mission when there is one, else the default.
fn layout_for(cwd: &std::path::Path, mission: &std::path::Path) -> Result<Layout> {
    let git = crate::engine::git::Git::open(cwd)?;
    let path = crate::mission::locate(cwd, mission);
    let state_dir = if path.exists() || path.as_os_str() == crate::mission::STDIN {
        crate::mission::Loaded::from_path(&path, &crate::agents::Adapters)?
            .mission
            .state_dir
    } else {
        PathBuf::from(".orch")
    };
    Ok(Layout::in_repo(
        git.root().join(state_dir),
        git.common_dir(),
    ))
}

fn task(cwd: &std::path::Path, t: TaskCommand) -> Result<i32> {
    match t {
        TaskCommand::Add {
            mission,
            agent,
            priority,
            body,
            title,
        } => {
            let ws = Workspace::open(cwd, &mission.mission)?;
            runner::check_agents(ws.mission(), std::slice::from_ref(&agent))?;
            if title.trim().is_empty() {
                return Err(Error::Usage("the task needs a title".into()));
            }
            let _lock = Lock::acquire(&ws.layout)?;
            ws.git.exclude(&ws.layout.dir)?;
            let mut q = Queue::load(&ws.layout)?;
            let round = crate::engine::store::state::State::load(&ws.layout)?
                .last_round
                .saturating_add(1);
            let id = q.add(&agent, priority, &title, &body, None, round);
            q.save(&ws.layout)?;
            crate::outln!("{id}")?;
            Ok(EXIT_OK)
        }
        TaskCommand::List { mission, json, all } => {
            let layout = layout_for(cwd, &mission.mission)?;
            let q = Queue::load(&layout)?;
            let tasks = q.visible(all);
            if json {
                let waiting = waiting_on_budget(cwd, &mission.mission, &layout, &q);
                let listed: Vec<ListedTask> = tasks
                    .iter()
                    .map(|t| ListedTask {
                        task: t,
                        waiting_on_budget: waiting.contains(&t.id),
                    })
                    .collect();
                crate::outln!(
                    "{}",
                    serde_json::to_string_pretty(&listed).unwrap_or_else(|_| "[]".into())
                )?;
            } else if tasks.is_empty() {
                eprintln!("no tasks{}", if all { "" } else { " pending" });
            } else {
                let waiting = waiting_on_budget(cwd, &mission.mission, &layout, &q);
                crate::out!("{}", crate::cli::status::task_table(&tasks, &waiting))?;
            }
            Ok(EXIT_OK)
        }
        TaskCommand::Done { mission, id } => set_task(cwd, &mission.mission, &id, TaskStatus::Done),
        TaskCommand::Drop { mission, id } => {
            set_task(cwd, &mission.mission, &id, TaskStatus::Dropped)
        }
    }
}

/// A task as `orch task list --json` prints it: the queue's fields, and whether it waits on
/// its agent's spent `budgetUsd` (the text view's "pending (its agent is over budget)").
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct ListedTask<'a> {
    #[serde(flatten)]
    task: &'a crate::engine::store::tasks::Task,
    waiting_on_budget: bool,
}

/// The ids of the pending tasks whose agent is over its `budgetUsd` (none without a mission
/// or a state to tell).
fn waiting_on_budget(
    cwd: &std::path::Path,
    mission: &std::path::Path,
    layout: &Layout,
    q: &Queue,
) -> Vec<String> {
    let path = crate::mission::locate(cwd, mission);
    let Ok(loaded) = crate::mission::Loaded::from_path(&path, &crate::agents::Adapters) else {
        return Vec::new();
    };
    let Ok(state) = crate::engine::store::state::State::load(layout) else {
        return Vec::new();
    };
    loaded
        .mission
        .agents
        .iter()
        .flat_map(|a| crate::engine::round::waiting_on_budget(a, &state, q))
        .collect()
}

fn set_task(
    cwd: &std::path::Path,
    mission: &std::path::Path,
    id: &str,
    s: TaskStatus,
) -> Result<i32> {
    let layout = layout_for(cwd, mission)?;
    let _lock = Lock::acquire(&layout)?;
    let mut q = Queue::load(&layout)?;
    q.set_status(id, s)?;
    q.save(&layout)?;
    Ok(EXIT_OK)
}

/// What `orch run` checks before a round spends anything, for `orch validate`: the state folder
/// against git's folders and tracked files, and every program the mission starts. Outside a
/// repository there is nothing to check them against.
fn check_against_repository(cwd: &std::path::Path, loaded: &crate::mission::Loaded) -> Result<()> {
    use crate::engine::preflight;
    match crate::engine::git::Git::open(cwd) {
        Ok(git) => {
            preflight::check_state_dir(&loaded.mission, &loaded.file, &git)?;
            preflight::check_programs(&loaded.mission, &loaded.file, &git)
        }
        Err(e) => {
            log::warn!("{e}: the state folder and the programs are not checked");
            Ok(())
        }
    }
}

fn validate(cwd: &std::path::Path, m: &MissionArg) -> Result<i32> {
    let file = crate::mission::locate(cwd, &m.mission);
    if let Some(seq) = crate::engine::sequence::detect(&file)? {
        let dir = file.parent().unwrap_or(cwd);
        crate::outln!(
            "{}: sequence {:?} of {} missions",
            file.display(),
            seq.name,
            seq.sequence.len()
        )?;
        for step in &seq.sequence {
            let path = dir.join(&step.mission);
            let loaded = crate::mission::Loaded::from_path(&path, &crate::agents::Adapters)?;
            crate::engine::prompt::validate(&loaded.mission, &loaded.dir, &loaded.file)?;
            check_against_repository(cwd, &loaded)?;
            crate::outln!(
                "  {} ({:?}): up to {} rounds",
                path.display(),
                loaded.mission.name,
                step.rounds
            )?;
        }
        return Ok(EXIT_OK);
    }
    let loaded = crate::mission::Loaded::from_path(&file, &crate::agents::Adapters)?;
    crate::engine::prompt::validate(&loaded.mission, &loaded.dir, &loaded.file)?;
    check_against_repository(cwd, &loaded)?;
    let mission = &loaded.mission;
    crate::outln!(
        "{}: mission {:?} is valid",
        loaded.file.display(),
        mission.name
    )?;
    crate::outln!(
        "  {} rounds, {} agents at once, budget {}",
        mission.rounds,
        mission.max_concurrency,
        mission
            .budget_usd
            .map(crate::units::usd)
            .unwrap_or_else(|| "none".into())
    )?;
    for a in &mission.agents {
        let ladder = a.ladder().join(" -> ");
        crate::outln!(
            "  {:<7} {:<20} {}{}",
            a.phase.as_str(),
            a.name,
            a.command.argv().join(" "),
            if ladder.is_empty() {
                String::new()
            } else {
                format!("  [models: {ladder}]")
            }
        )?;
    }
    if let Some(s) = &mission.sims {
        crate::outln!(
            "  sims: {}{}, published to {}",
            if s.pre.is_some() { "pre " } else { "" },
            if s.post.is_some() { "post" } else { "" },
            s.publish_to.display()
        )?;
    }
    match &mission.tests {
        Some(t) => crate::outln!("  tests: {}", t.command.argv().join(" "))?,
        None => crate::outln!("  tests: none (changes are committed untested)")?,
    }
    Ok(EXIT_OK)
}
