//! One entry of a sandbox's network allowlist: a host and a port, parsed from the mission's
//! `host[:port]` or from an agent's base URL.

use std::fmt;

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
}
