//! The `orch` binary: parse the command line, set up logging, run, map the result to an exit
//! status. Everything else lives in the library.

use std::io::{IsTerminal, Write};

use clap::Parser;

fn main() {
    // `orch __watchdog`: orch re-executed as the watchdog of its own children.
    if let Some(code) = orch::engine::exec::process::run_watchdog_if_asked() {
        std::process::exit(code);
    }
    // `orch __sandbox-run ...`: orch inside a sandbox, relaying its allowed connections.
    if let Some(code) = orch::engine::exec::sandbox::net::run_relay_if_asked() {
        std::process::exit(code);
    }
    orch::engine::exec::process::enable_watchdog();
    let cli = orch::cli::Cli::parse();
    let level = match (cli.quiet, cli.verbose) {
        (true, _) => "warn",
        (_, 0 | 1) => "info",
        _ => "debug",
    };
    // Log lines read like event lines (orch::events::stamp): timestamped off a terminal.
    let timestamps = !std::io::stderr().is_terminal();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level))
        .format(move |buf, r| {
            let text = orch::events::log_text(r.level(), r.args());
            writeln!(buf, "{}", orch::events::stamp(&text, timestamps))
        })
        // Through the live view when there is one, so a log line never tears its block.
        .target(env_logger::Target::Pipe(Box::new(
            orch::cli::live::LogWriter,
        )))
        .init();
    let code = match orch::cli::run(cli) {
        Ok(code) => code,
        // The reader of stdout went away (`| head -1`): quiet, like a process SIGPIPE ended.
        Err(orch::Error::StdoutClosed) => orch::error::EXIT_STDOUT_CLOSED,
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    };
    std::process::exit(code);
}
