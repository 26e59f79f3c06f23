//! Reading a mission: from a file or standard input (`-m -`, read once), `//` comments blanked
//! so serde's line and column stay right, parsed strictly through `serde_path_to_error` so a
//! typo is reported with its key path (`agents[2].comand`), the file and the line, then
//! validated. [`Loaded`] is the mission with where it came from (prompt paths are relative
//! to its folder).

use std::path::{Path, PathBuf};

use super::cli::with_names;
use super::schema::Mission;
use super::validate::CliCatalog;
use crate::error::{Error, Result};

/// A mission as loaded: the parsed file and where it came from (prompt paths are relative to
/// its folder).
#[derive(Debug, Clone)]
pub struct Loaded {
    pub mission: Mission,
    pub file: PathBuf,
    pub dir: PathBuf,
}

/// The name `-m -` goes by: standard input.
pub const STDIN: &str = "-";

/// Where the mission given as `-m PATH` is, seen from `dir`: `-` (standard input) stays `-`,
/// anything else is joined to `dir` (an absolute path stays itself).
pub fn locate(dir: &Path, path: &Path) -> PathBuf {
    if path.as_os_str() == STDIN {
        path.to_path_buf()
    } else {
        dir.join(path)
    }
}

/// Standard input, read once: a command may load its mission more than once (the sequence
/// check, then the mission; the state folder, then the workspace), and stdin can be read only
/// once.
fn stdin_text() -> Result<String> {
    static TEXT: std::sync::OnceLock<std::result::Result<String, String>> =
        std::sync::OnceLock::new();
    TEXT.get_or_init(|| {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
            .map(|_| s)
            .map_err(|e| e.to_string())
    })
    .clone()
    .map_err(|e| {
        Error::Usage(format!(
            "reading the mission from standard input (-m -): {e}"
        ))
    })
}

impl Loaded {
    /// Reads and validates a mission file; `-` reads standard input, and its relative paths
    /// (prompts, section files) then resolve from the current folder.
    pub fn from_path(path: &Path, clis: &dyn CliCatalog) -> Result<Loaded> {
        let (text, dir) = if path.as_os_str() == STDIN {
            let cwd =
                std::env::current_dir().map_err(|e| Error::io("reading the current folder", e))?;
            (stdin_text()?, cwd)
        } else {
            let text = std::fs::read_to_string(path).map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => Error::Usage(format!(
                    "no mission file at {} (write one with `orch init`, or pass -m FILE)",
                    path.display()
                )),
                _ => Error::io(format!("reading mission {}", path.display()), e),
            })?;
            let dir = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .map(Path::to_path_buf)
                .unwrap_or_else(|| ".".into());
            (text, dir)
        };
        // Errors about a mission read from stdin name it as such.
        let shown = if path.as_os_str() == STDIN {
            Path::new("<stdin>")
        } else {
            path
        };
        let mission = Mission::parse(&text, shown, clis)?;
        Ok(Loaded {
            mission,
            file: shown.to_path_buf(),
            dir,
        })
    }
}

impl Mission {
    /// Parses and validates mission text; `file` is only used in error messages, `clis` is
    /// what the agent CLIs say (pass `&agents::Adapters`).
    pub fn parse(text: &str, file: &Path, clis: &dyn CliCatalog) -> Result<Mission> {
        let text = strip_comments(text);
        let de = &mut serde_json::Deserializer::from_str(&text);
        let parsed: std::result::Result<Mission, _> =
            with_names(clis.names(), || serde_path_to_error::deserialize(de));
        let mission = parsed.map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            Error::mission(file, path, explain_serde(&inner))
        })?;
        mission.validate(file, clis)?;
        Ok(mission)
    }
}

/// Blanks out `//` line comments outside strings, so a mission may carry its own explanations
/// (`orch init` writes a commented one). Blanking instead of removing keeps serde's line and
/// column numbers right.
pub fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let (mut in_string, mut escaped, mut in_comment) = (false, false, false);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if in_comment {
            if c == '\n' {
                in_comment = false;
                out.push(c);
            } else {
                out.push(' ');
            }
            continue;
        }
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            out.push(c);
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '/' if chars.peek() == Some(&'/') => {
                in_comment = true;
                out.push(' ');
            }
            _ => out.push(c),
        }
    }
    out
}

/// serde's messages are good but end in "at line 1 column 71"; keep that, it locates the key.
fn explain_serde(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    if msg.contains("did not match any variant of untagged enum Command") {
        return format!(
            "expected a command: an argv array of strings or a shell string ({})",
            location(e)
        );
    }
    if msg.contains("did not match any variant of untagged enum When") {
        return format!(
            "expected \"always\", \"tasks\", {{\"every\": N}} or {{\"command\": [...]}} ({})",
            location(e)
        );
    }
    msg
}

fn location(e: &serde_json::Error) -> String {
    format!("line {} column {}", e.line(), e.column())
}
