//! Running a mission for a command: the lock, the event sinks (the live view or plain lines,
//! `--json` lines, `events.ndjson`, the live report page, the mission's hooks), the signal
//! handler, the runner or a sequence, and the report for GitHub's job summary. `orch run`,
//! `orch round` and `orch demo` go through [`drive`]; `orch replay` takes its sinks and signal
//! handler from here.
//!
//! Its own module, below the dispatch in `cli/mod.rs` and beside the commands that use it, so
//! that `demo.rs` and `replay.rs` import it and not the module that imports them.

use std::io::IsTerminal;

use crate::engine::runner::{self, RunOptions, Workspace};
use crate::engine::store::state::{Layout, Lock};
use crate::error::{Error, Result};
use crate::events::{self, Events, Sink, Verbosity};

/// Sets up the event sinks and signal handling, and runs rounds.
pub fn drive(opts: &RunOptions, json: bool, verbosity: Verbosity) -> Result<i32> {
    install_signal_handler();
    let file = crate::mission::locate(&opts.dir, &opts.mission);
    let sequence = crate::engine::sequence::detect(&file)?;
    let ws = match &sequence {
        Some(seq) => {
            if opts.only_round.is_some() {
                return Err(Error::Usage(format!(
                    "{} is a sequence of missions; `orch round N` needs one mission (-m FILE)",
                    file.display()
                )));
            }
            let first = file
                .parent()
                .unwrap_or(&opts.dir)
                .join(&seq.sequence[0].mission);
            Workspace::open(&opts.dir, &first)?
        }
        None => Workspace::open(&opts.dir, &opts.mission)?,
    };
    // The lock comes first: a second orch must not even append to the event log.
    let lock = Lock::acquire(&ws.layout)?;
    let branch = branch_name(&ws, opts)?;
    let events = run_sinks(&ws, json, verbosity, branch.as_deref());
    let opts = &RunOptions {
        branch,
        ..opts.clone()
    };
    let result = match &sequence {
        Some(seq) => crate::engine::sequence::run(seq, &file, opts, &events, &lock),
        None => runner::run(&ws, opts, &events, &lock),
    };
    events.finish();
    if result.is_ok() {
        append_step_summary(&ws.layout);
    }
    result
}

/// `--branch` / `git.branch`, its placeholders filled in and the name checked, before anything
/// runs; the runner checks the branch out once the tree is clean.
fn branch_name(ws: &Workspace, opts: &RunOptions) -> Result<Option<String>> {
    let (template, from) = match (&opts.branch, &ws.mission().git.branch) {
        (Some(b), _) => (b, "--branch"),
        (None, Some(b)) => (b, "git.branch"),
        (None, None) => return Ok(None),
    };
    crate::engine::git::branch::resolve(&ws.git, template, &ws.mission().name, from).map(Some)
}

pub(crate) fn sinks(layout: &Layout, json: bool, verbosity: Verbosity) -> Events {
    Events::new(sink_list(layout, json, verbosity))
}

/// The sinks of a run: [`sinks`] and the mission's hooks.
fn run_sinks(ws: &Workspace, json: bool, verbosity: Verbosity, branch: Option<&str>) -> Events {
    let mut sinks = sink_list(&ws.layout, json, verbosity);
    // In a sequence, the first mission's hooks serve the whole sequence.
    let hooks = crate::engine::hooks::HookSink::new(
        ws.mission().hooks.as_ref(),
        crate::engine::hooks::Context {
            mission: ws.mission().name.clone(),
            repo: ws.git.root().to_path_buf(),
            state_dir: ws.layout.dir.clone(),
            grace: ws.mission().grace(),
            env: branch
                .map(|b| vec![("ORCH_BRANCH".to_string(), b.to_string())])
                .unwrap_or_default(),
        },
    );
    if let Some(h) = hooks {
        sinks.push(Box::new(h));
    }
    Events::new(sinks)
}

fn sink_list(layout: &Layout, json: bool, verbosity: Verbosity) -> Vec<Box<dyn Sink>> {
    let github = std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true");
    let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
    if json {
        sinks.push(Box::new(events::JsonLines::new(std::io::stdout())));
    }
    // A person at a terminal gets the live view; CI (GitHub or not), files and dumb terminals
    // get plain lines, timestamped off a terminal, with no escape codes. `--json` on a terminal
    // writes its lines to the same screen, which would tear the live block: plain lines then.
    // `-q` gets plain lines too, only those a person must see (warnings, stops, reverts, limit
    // waits): these events are printed here and nowhere else, so each is printed once.
    let json_on_screen = json && std::io::stdout().is_terminal();
    if verbosity > Verbosity::Quiet && !github && !json_on_screen && crate::cli::live::supported() {
        sinks.push(Box::new(crate::cli::live::Live::stderr(
            verbosity,
            crate::cli::live::color_allowed(),
        )));
    } else {
        let stderr = std::io::stderr();
        let tty = stderr.is_terminal();
        sinks.push(Box::new(events::Human::new(
            stderr, !tty, verbosity, github,
        )));
    }
    match events::ndjson_file(&layout.events()) {
        Ok(f) => sinks.push(Box::new(f)),
        Err(e) => log::warn!("cannot append to {}: {e}", layout.events().display()),
    }
    // After every round, STATE/report.html for a browser.
    sinks.push(Box::new(crate::report::LiveReport::new(&layout.dir)));
    sinks
}

/// Under GitHub Actions, the report goes to the job summary.
fn append_step_summary(layout: &Layout) {
    let Ok(path) = std::env::var("GITHUB_STEP_SUMMARY") else {
        return;
    };
    if std::env::var("GITHUB_ACTIONS").map_or(true, |v| v != "true") {
        return;
    }
    match crate::report::markdown(&layout.dir) {
        Ok(md) => {
            use std::io::Write;
            let r = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(&path)
                .and_then(|mut f| f.write_all(md.as_bytes()));
            if let Err(e) = r {
                log::warn!("cannot append the report to {path}: {e}");
            }
        }
        Err(e) => log::warn!("no report for the job summary: {e}"),
    }
}

/// First SIGINT/SIGTERM: stop starting jobs, terminate children with a grace period. Second:
/// kill them at once and exit shortly after, even if the round cannot be recorded in time.
pub(crate) fn install_signal_handler() {
    use signal_hook::consts::{SIGINT, SIGTERM};
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let mut signals = match signal_hook::iterator::Signals::new([SIGINT, SIGTERM]) {
            Ok(s) => s,
            Err(e) => {
                log::warn!("cannot install signal handlers: {e}");
                return;
            }
        };
        let _ = std::thread::Builder::new()
            .name("orch-signals".into())
            .spawn(move || {
                let mut count = 0;
                for sig in signals.forever() {
                    count += 1;
                    crate::engine::exec::process::interrupt();
                    if count == 1 {
                        log::warn!(
                            "signal {sig}: stopping; running agents get SIGTERM, then SIGKILL after the grace period (signal again to kill at once)"
                        );
                    } else {
                        log::warn!("second signal: killing every child now");
                        std::thread::sleep(std::time::Duration::from_secs(3));
                        std::process::exit(crate::error::EXIT_INTERRUPTED);
                    }
                }
            });
    });
}
