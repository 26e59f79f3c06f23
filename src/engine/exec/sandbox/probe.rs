//! Can bubblewrap make its namespaces on this machine? Asked before anything is spent: a
//! mission that wants the sandbox where it cannot run stops at once, with the reason and the
//! fix, rather than failing every agent of the first round.

use std::process::{Command, Stdio};

/// Why the sandbox cannot run here, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unavailable {
    pub reason: String,
    pub fix: String,
}

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}; {}", self.reason, self.fix)
    }
}

/// Runs `bwrap` with the namespaces a sandbox uses (`--unshare-pid --unshare-net`, the system
/// read-only) around `true`; `Ok` when it ran.
pub fn probe() -> Result<(), Unavailable> {
    probe_with("bwrap")
}

/// [`probe`] with another program in place of `bwrap` (tests).
pub fn probe_with(bwrap: &str) -> Result<(), Unavailable> {
    let out = Command::new(bwrap)
        .args(["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"])
        .args([
            "--unshare-pid",
            "--unshare-ipc",
            "--unshare-uts",
            "--unshare-net",
        ])
        .args(["--die-with-parent", "--", "true"])
        .stdin(Stdio::null())
        .output();
    let out = match out {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Unavailable {
                reason: format!("bubblewrap ({bwrap}) is not installed"),
                fix: "install it: `apt-get install bubblewrap` (Debian, Ubuntu), \
                      `dnf install bubblewrap` (Fedora), or set \"sandbox\": \"none\""
                    .into(),
            })
        }
        Err(e) => {
            return Err(Unavailable {
                reason: format!("{bwrap} cannot be run: {e}"),
                fix: "check that it is an executable (`bwrap --version`), or set \
                      \"sandbox\": \"none\""
                    .into(),
            })
        }
    };
    if out.status.success() {
        return Ok(());
    }
    let said = String::from_utf8_lossy(&out.stderr).trim().to_string();
    Err(classify(bwrap, &said))
}

/// The reason and fix for what a failed `bwrap` said.
fn classify(bwrap: &str, said: &str) -> Unavailable {
    let lower = said.to_ascii_lowercase();
    let namespaces = lower.contains("namespace")
        || lower.contains("uid map")
        || lower.contains("operation not permitted")
        || lower.contains("permission denied");
    if namespaces {
        Unavailable {
            reason: format!("{bwrap} cannot create its namespaces here ({said})"),
            fix: "allow unprivileged user namespaces: `sysctl -w kernel.unprivileged_userns_clone=1` \
                  (Debian), `sysctl -w kernel.apparmor_restrict_unprivileged_userns=0` (Ubuntu \
                  23.10+), `sysctl -w user.max_user_namespaces=15000`; in a container, run it \
                  with user namespaces allowed (docker: `--security-opt seccomp=unconfined \
                  --security-opt apparmor=unconfined`); or set \"sandbox\": \"none\""
                .into(),
        }
    } else {
        Unavailable {
            reason: format!("{bwrap} failed: {said}"),
            fix: "run `bwrap --ro-bind / / --unshare-pid --unshare-net true` to see why, or set \
                  \"sandbox\": \"none\""
                .into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_bwrap_says_how_to_install_it() {
        let e = probe_with("/nonexistent/bwrap").unwrap_err();
        assert!(e.reason.contains("is not installed"), "{e}");
        assert!(e.fix.contains("apt-get install bubblewrap"), "{e}");
    }

    #[test]
    fn namespaces_refused_name_the_sysctl() {
        let e = classify(
            "bwrap",
            "bwrap: No permissions to create new namespace, likely because the kernel does not \
             allow non-privileged user namespaces.",
        );
        assert!(e.reason.contains("cannot create its namespaces"), "{e}");
        assert!(e.fix.contains("kernel.unprivileged_userns_clone=1"), "{e}");
    }

    #[test]
    fn a_failing_bwrap_is_reported_with_its_words() {
        // `false` stands for a bwrap that runs and fails without a namespace message.
        let e = probe_with("false").unwrap_err();
        assert!(e.reason.starts_with("false failed"), "{e}");
    }
}
