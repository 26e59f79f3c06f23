//! The mission's `sandbox` (issue 30), for the whole mission and per agent: `"none"` (orch runs
//! commands as the user who started it, the default), `"bwrap"` (each agent, and the tests,
//! sims and review agents that run its code, in a bubblewrap sandbox), or an object that says
//! more: `{"mode", "network", "allowHosts", "readPaths", "tests"}`. docs/src/sandbox.md says
//! what each allows.
//!
//! It reads a string or an object, so it has its own `Deserialize`: each wrong value is named
//! by its key and what it may be, under the key path serde_path_to_error gives
//! (`agents[1].sandbox`). The `host[:port]` of an allowlist ([`HostPort`]) is parsed here,
//! where the file's format is, and the engine's sandbox uses the same type.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// Whether commands run in a sandbox.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SandboxMode {
    /// As the user who started orch (today's behaviour).
    #[default]
    None,
    /// In bubblewrap (`bwrap`): docs/src/sandbox.md.
    Bwrap,
}

/// What a sandboxed agent may reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkSetting {
    /// Nothing but its own loopback.
    None,
    /// The host's network, as without a sandbox.
    Open,
    /// These `host[:port]`s (and `allowHosts`) only, instead of what the agent's CLI needs.
    Hosts(Vec<HostPort>),
}

/// The mission's (or an agent's) `sandbox`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sandbox {
    pub mode: SandboxMode,
    /// Unset: the hosts of the agent CLI's model API (from its base-URL variables, else its
    /// usual hosts) and `allow_hosts`.
    pub network: Option<NetworkSetting>,
    /// Hosts allowed besides the CLI's (a package registry, a second model API).
    pub allow_hosts: Vec<HostPort>,
    /// Paths hidden by the sandbox (under the home folder) that it may read.
    pub read_paths: Vec<PathBuf>,
    /// The tests, sims and review agents run under the same rule; unset: on with the sandbox.
    pub tests: Option<bool>,
}

impl Sandbox {
    pub fn is_on(&self) -> bool {
        self.mode == SandboxMode::Bwrap
    }

    /// Whether the test command and the sims run sandboxed.
    pub fn covers_tests(&self) -> bool {
        self.is_on() && self.tests.unwrap_or(true)
    }

    /// From the file's JSON value; `Err` names the key and what it may be.
    pub fn from_value(v: &Value) -> Result<Sandbox, String> {
        let mode = |s: &str| {
            match s {
            "none" => Ok(SandboxMode::None),
            "bwrap" => Ok(SandboxMode::Bwrap),
            other => Err(format!(
                "unknown sandbox {other:?}: expected \"none\" or \"bwrap\" (or an object with \"mode\")"
            )),
        }
        };
        let obj = match v {
            Value::String(s) => {
                return Ok(Sandbox {
                    mode: mode(s)?,
                    ..Sandbox::default()
                })
            }
            Value::Object(o) => o,
            other => {
                return Err(format!(
                    "expected \"none\", \"bwrap\" or an object {{\"mode\", \"network\", \"allowHosts\", \"readPaths\", \"tests\"}}, got {other}"
                ))
            }
        };
        const KEYS: &[&str] = &["mode", "network", "allowHosts", "readPaths", "tests"];
        if let Some(k) = obj.keys().find(|k| !KEYS.contains(&k.as_str())) {
            return Err(format!(
                "unknown key {k:?} in sandbox: expected one of {}",
                KEYS.join(", ")
            ));
        }
        let mut sb = Sandbox {
            mode: match obj.get("mode") {
                Some(Value::String(s)) => mode(s)?,
                Some(other) => {
                    return Err(format!(
                        "\"mode\": expected \"none\" or \"bwrap\", got {other}"
                    ))
                }
                None => SandboxMode::Bwrap,
            },
            ..Sandbox::default()
        };
        let hosts = |key: &str, v: &Value| -> Result<Vec<HostPort>, String> {
            let Value::Array(items) = v else {
                return Err(format!(
                    "\"{key}\": expected a list of \"host[:port]\", got {v}"
                ));
            };
            items
                .iter()
                .map(|i| match i {
                    Value::String(s) => HostPort::parse(s).map_err(|e| format!("\"{key}\": {e}")),
                    other => Err(format!("\"{key}\": expected \"host[:port]\", got {other}")),
                })
                .collect()
        };
        sb.network = match obj.get("network") {
            None => None,
            Some(Value::String(s)) if s == "none" => Some(NetworkSetting::None),
            Some(Value::String(s)) if s == "open" => Some(NetworkSetting::Open),
            Some(v @ Value::Array(_)) => Some(NetworkSetting::Hosts(hosts("network", v)?)),
            Some(other) => {
                return Err(format!(
                    "\"network\": expected \"none\", \"open\" or a list of \"host[:port]\", got {other}"
                ))
            }
        };
        if let Some(v) = obj.get("allowHosts") {
            sb.allow_hosts = hosts("allowHosts", v)?;
        }
        if let Some(v) = obj.get("readPaths") {
            let Value::Array(items) = v else {
                return Err(format!("\"readPaths\": expected a list of paths, got {v}"));
            };
            for i in items {
                match i {
                    Value::String(s) if s.starts_with('/') || s == "~" || s.starts_with("~/") => {
                        sb.read_paths.push(PathBuf::from(s))
                    }
                    Value::String(s) => {
                        return Err(format!(
                            "\"readPaths\": {s:?} is not absolute: give /path or ~/path"
                        ))
                    }
                    other => return Err(format!("\"readPaths\": expected a path, got {other}")),
                }
            }
        }
        sb.tests = match obj.get("tests") {
            None => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(other) => return Err(format!("\"tests\": expected true or false, got {other}")),
        };
        Ok(sb)
    }

    fn to_value(&self) -> Value {
        let mode = match self.mode {
            SandboxMode::None => "none",
            SandboxMode::Bwrap => "bwrap",
        };
        if self.network.is_none()
            && self.allow_hosts.is_empty()
            && self.read_paths.is_empty()
            && self.tests.is_none()
        {
            return Value::String(mode.into());
        }
        let list =
            |h: &[HostPort]| Value::Array(h.iter().map(|x| Value::String(x.to_string())).collect());
        let mut o = serde_json::Map::new();
        o.insert("mode".into(), mode.into());
        match &self.network {
            None => {}
            Some(NetworkSetting::None) => {
                o.insert("network".into(), "none".into());
            }
            Some(NetworkSetting::Open) => {
                o.insert("network".into(), "open".into());
            }
            Some(NetworkSetting::Hosts(h)) => {
                o.insert("network".into(), list(h));
            }
        }
        if !self.allow_hosts.is_empty() {
            o.insert("allowHosts".into(), list(&self.allow_hosts));
        }
        if !self.read_paths.is_empty() {
            let paths = self
                .read_paths
                .iter()
                .map(|p| Value::String(p.display().to_string()));
            o.insert("readPaths".into(), Value::Array(paths.collect()));
        }
        if let Some(t) = self.tests {
            o.insert("tests".into(), t.into());
        }
        Value::Object(o)
    }
}

impl<'de> Deserialize<'de> for Sandbox {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        Sandbox::from_value(&v).map_err(serde::de::Error::custom)
    }
}

impl Serialize for Sandbox {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_value().serialize(s)
    }
}

/// One entry of an allowlist: a host name or address and a port.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostPort {
    /// Lowercase; an IPv6 address without its brackets.
    pub host: String,
    pub port: u16,
}

impl HostPort {
    /// `host`, `host:port`, `[v6]:port`. Without a port, 443: the allowlist is for model APIs,
    /// which are HTTPS unless a base URL says otherwise (and then it names its port).
    pub fn parse(text: &str) -> Result<HostPort, String> {
        let t = text.trim();
        let (host, port) = if let Some(rest) = t.strip_prefix('[') {
            let (h, after) = rest
                .split_once(']')
                .ok_or_else(|| format!("{text:?}: an IPv6 address needs its closing ']'"))?;
            match after.strip_prefix(':') {
                Some(p) => (h, Some(p)),
                None if after.is_empty() => (h, None),
                None => return Err(format!("{text:?}: expected ':PORT' after ']'")),
            }
        } else {
            match t.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (t, None),
            }
        };
        if host.is_empty() || host.contains(['/', ' ', '@']) || host.contains("://") {
            return Err(format!(
                "{text:?}: expected host or host:port (e.g. api.anthropic.com or 127.0.0.1:8080)"
            ));
        }
        let port = match port {
            None => 443,
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 => n,
                _ => return Err(format!("{text:?}: the port {p:?} is not a number 1-65535")),
            },
        };
        Ok(HostPort {
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    /// The `host:port` of a base URL (`http://127.0.0.1:8080/v1`, `https://api.openai.com`),
    /// with the scheme's port when the URL names none; `None` for anything that is not an
    /// http(s) URL.
    pub fn from_url(url: &str) -> Option<HostPort> {
        let (scheme, rest) = url.trim().split_once("://")?;
        let default = match scheme.to_ascii_lowercase().as_str() {
            "https" => 443,
            "http" => 80,
            _ => return None,
        };
        let authority = rest.split(['/', '?', '#']).next()?;
        let authority = authority.rsplit('@').next()?;
        let with_port = if authority.ends_with(']') || !authority.contains(':') {
            format!("{authority}:{default}")
        } else {
            authority.to_string()
        };
        HostPort::parse(&with_port).ok()
    }

    /// Whether the host is this machine's loopback: the relay then listens on the same address
    /// inside the sandbox, so a base URL `http://127.0.0.1:PORT` works unchanged.
    pub fn is_loopback(&self) -> bool {
        self.host == "localhost"
            || self.host == "::1"
            || self
                .host
                .parse::<std::net::Ipv4Addr>()
                .is_ok_and(|a| a.is_loopback())
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_parses_hosts_ports_and_v6() {
        let hp = |t: &str| HostPort::parse(t).map(|h| h.to_string());
        assert_eq!(hp("API.anthropic.com").unwrap(), "api.anthropic.com:443");
        assert_eq!(hp("127.0.0.1:8080").unwrap(), "127.0.0.1:8080");
        assert_eq!(hp("[::1]:9").unwrap(), "[::1]:9");
        for bad in ["", "http://x", "x:0", "x:70000", "x:port", "[::1"] {
            let e = HostPort::parse(bad).unwrap_err();
            assert!(e.contains(&format!("{bad:?}")), "{e}");
        }
    }

    #[test]
    fn host_port_from_base_urls() {
        let u = |t: &str| HostPort::from_url(t).map(|h| h.to_string());
        assert_eq!(
            u("http://127.0.0.1:8080/v1").as_deref(),
            Some("127.0.0.1:8080")
        );
        assert_eq!(
            u("https://api.openai.com/v1").as_deref(),
            Some("api.openai.com:443")
        );
        assert_eq!(u("http://localhost").as_deref(), Some("localhost:80"));
        assert_eq!(
            u("https://u:p@h.example:8443").as_deref(),
            Some("h.example:8443")
        );
        assert_eq!(u("file:///x"), None);
        assert!(HostPort::parse("localhost:1").unwrap().is_loopback());
        assert!(HostPort::parse("127.0.0.2:1").unwrap().is_loopback());
        assert!(!HostPort::parse("api.openai.com").unwrap().is_loopback());
    }

    #[test]
    fn a_string_or_an_object_reads_and_writes_back() {
        let read = |t: &str| Sandbox::from_value(&serde_json::from_str(t).unwrap());
        assert_eq!(read(r#""none""#).unwrap(), Sandbox::default());
        let b = read(r#""bwrap""#).unwrap();
        assert!(b.is_on() && b.covers_tests());
        let full = read(
            r#"{"network": ["api.anthropic.com", "127.0.0.1:8080"], "allowHosts": ["pypi.org"],
                "readPaths": ["~/.npmrc"], "tests": false}"#,
        )
        .unwrap();
        assert!(full.is_on() && !full.covers_tests());
        assert_eq!(
            full.network,
            Some(NetworkSetting::Hosts(vec![
                HostPort::parse("api.anthropic.com:443").unwrap(),
                HostPort::parse("127.0.0.1:8080").unwrap()
            ]))
        );
        let again = Sandbox::from_value(&serde_json::to_value(&full).unwrap()).unwrap();
        assert_eq!(again, full);
        assert_eq!(
            serde_json::to_value(&b).unwrap(),
            Value::String("bwrap".into())
        );
    }

    #[test]
    fn a_wrong_value_is_named_with_its_key() {
        let err = |t: &str| Sandbox::from_value(&serde_json::from_str(t).unwrap()).unwrap_err();
        assert!(err(r#""docker""#).contains("unknown sandbox \"docker\""));
        assert!(err("5").contains("expected \"none\", \"bwrap\" or an object"));
        assert!(err(r#"{"netwrk": "open"}"#).contains("unknown key \"netwrk\""));
        assert!(err(r#"{"network": "some"}"#).contains("\"network\": expected"));
        assert!(err(r#"{"allowHosts": ["x:99999"]}"#).contains("\"allowHosts\": \"x:99999\""));
        assert!(err(r#"{"tests": "yes"}"#).contains("\"tests\": expected true or false"));
        assert!(err(r#"{"readPaths": [""]}"#).contains("\"readPaths\""));
        assert!(err(r#"{"readPaths": ["cache"]}"#).contains("\"cache\" is not absolute"));
    }
}
