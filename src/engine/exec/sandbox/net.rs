//! The network allowlist of a sandbox, enforced by orch with plain threads (no async runtime).
//!
//! A sandbox under `Network::Allow` has a network namespace of its own: nothing outside is
//! reachable from it, not even the host's 127.0.0.1. The one way out is a Unix socket that the
//! [`Broker`] (orch, outside) listens on and bwrap binds into the sandbox. The broker reads one
//! line per connection, `CONNECT host:port`, and connects only when that `host:port` is on the
//! list; otherwise it answers `DENIED`, closes, and keeps the attempt for orch to report
//! ([`Broker::denied`]). The decision is made outside, so nothing the sandboxed command does to
//! its side can widen it.
//!
//! Inside, the relay ([`relay_main`], orch's own binary run as `orch __sandbox-run`) listens on
//! the sandbox's loopback at each allowed loopback `host:port` (a base URL
//! `http://127.0.0.1:PORT` works unchanged) and on an HTTP proxy port (`HTTPS_PROXY`,
//! `HTTP_PROXY`: `CONNECT host:port` for HTTPS, an absolute URL for plain HTTP) for remote
//! hosts, and forwards each connection over the socket. It then runs the command it wraps and
//! exits with its status.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream, ToSocketAddrs};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::mission::sandbox::HostPort;

/// The hidden subcommand that runs the relay inside a sandbox.
pub const RELAY_ARG: &str = "__sandbox-run";

/// How long the broker waits for a connection to an allowed host.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// The longest first line (a `CONNECT` line, an HTTP request line and headers) read before
/// giving up on a peer that sends no newline.
const MAX_HEAD: usize = 16 * 1024;

/// orch's side of a sandbox's network: a Unix socket that connects only to allowed hosts.
/// Listening stops and the socket's folder is removed when the value is dropped; connections
/// already made run until either end closes them.
pub struct Broker {
    dir: PathBuf,
    socket: PathBuf,
    stop: Arc<AtomicBool>,
    denied: Arc<Mutex<Vec<String>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Broker {
    /// Listens on a new socket in a private folder under `parent` (kept short: a socket path
    /// is limited to about 100 bytes, so not inside a deep worktree).
    pub fn start(parent: &Path, allow: Vec<HostPort>) -> std::io::Result<Broker> {
        let dir = tempfile_dir(parent)?;
        let socket = dir.join("net.sock");
        let listener = UnixListener::bind(&socket)?;
        let stop = Arc::new(AtomicBool::new(false));
        let denied = Arc::new(Mutex::new(Vec::new()));
        let allow = Arc::new(allow);
        let thread = {
            let (stop, denied) = (stop.clone(), denied.clone());
            std::thread::Builder::new()
                .name("sandbox-broker".into())
                .spawn(move || {
                    for conn in listener.incoming() {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let Ok(conn) = conn else { continue };
                        let (allow, denied) = (allow.clone(), denied.clone());
                        let _ = std::thread::Builder::new()
                            .name("sandbox-conn".into())
                            .spawn(move || broker_conn(conn, &allow, &denied));
                    }
                })?
        };
        Ok(Broker {
            dir,
            socket,
            stop,
            denied,
            thread: Some(thread),
        })
    }

    /// The socket to bind into the sandbox.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The `host:port`s asked for and refused, in order, each once.
    pub fn denied(&self) -> Vec<String> {
        self.denied
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = UnixStream::connect(&self.socket);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A fresh folder only orch's user can enter (mode 0700), named for orch's pid and a count.
fn tempfile_dir(parent: &Path) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    use std::sync::atomic::AtomicU32;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    loop {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let dir = parent.join(format!("orch-net-{}-{n}", std::process::id()));
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

/// One connection from the sandbox: its `CONNECT host:port` line, the allowlist's answer, then
/// bytes both ways.
fn broker_conn(conn: UnixStream, allow: &[HostPort], denied: &Mutex<Vec<String>>) {
    let mut reader = BufReader::new(match conn.try_clone() {
        Ok(c) => c,
        Err(_) => return,
    });
    let mut line = String::new();
    if reader
        .by_ref()
        .take(MAX_HEAD as u64)
        .read_line(&mut line)
        .is_err()
    {
        return;
    }
    let mut conn = conn;
    let asked = line.trim().strip_prefix("CONNECT ").unwrap_or("").trim();
    let target = match HostPort::parse(asked) {
        Ok(t) if asked.contains(':') => t,
        _ => {
            let _ = writeln!(conn, "DENIED not a host:port: {asked:?}");
            return;
        }
    };
    if !allow.contains(&target) {
        let mut d = denied.lock().unwrap_or_else(|e| e.into_inner());
        let t = target.to_string();
        if !d.contains(&t) {
            log::warn!("sandbox: a connection to {t} was refused (not on the allowlist)");
            d.push(t);
        }
        let _ = writeln!(conn, "DENIED {target} is not on the sandbox's allowlist");
        return;
    }
    let upstream = (target.host.as_str(), target.port)
        .to_socket_addrs()
        .ok()
        .and_then(|addrs| {
            addrs
                .into_iter()
                .find_map(|a| TcpStream::connect_timeout(&a, CONNECT_TIMEOUT).ok())
        });
    let Some(upstream) = upstream else {
        let _ = writeln!(conn, "FAILED {target} could not be reached");
        return;
    };
    if writeln!(conn, "OK").is_err() {
        return;
    }
    // Bytes the reader buffered past the line belong to the upstream.
    let buffered = reader.buffer().to_vec();
    let mut up = upstream;
    if !buffered.is_empty() && up.write_all(&buffered).is_err() {
        return;
    }
    splice(Stream::Unix(conn), Stream::Tcp(up));
}

/// A connection of either kind, so one copy loop serves both.
enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    fn try_clone(&self) -> std::io::Result<Stream> {
        Ok(match self {
            Stream::Tcp(s) => Stream::Tcp(s.try_clone()?),
            Stream::Unix(s) => Stream::Unix(s.try_clone()?),
        })
    }
    fn shutdown_write(&self) {
        let _ = match self {
            Stream::Tcp(s) => s.shutdown(Shutdown::Write),
            Stream::Unix(s) => s.shutdown(Shutdown::Write),
        };
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Copies bytes both ways until both directions are closed: one direction on a thread of its
/// own, the other on this one; each end's write side is shut when its source ends.
fn splice(a: Stream, b: Stream) {
    let (Ok(mut a2), Ok(mut b2)) = (a.try_clone(), b.try_clone()) else {
        return;
    };
    let (mut a, mut b) = (a, b);
    let t = std::thread::Builder::new()
        .name("sandbox-copy".into())
        .spawn(move || {
            let _ = std::io::copy(&mut a2, &mut b2);
            b2.shutdown_write();
        });
    let _ = std::io::copy(&mut b, &mut a);
    a.shutdown_write();
    if let Ok(t) = t {
        let _ = t.join();
    }
}

// ---------------------------------------------------------------------------------------------
// Inside the sandbox.

/// From `main`: when orch was started as a sandbox's relay
/// (`orch __sandbox-run SOCKET PROXY_PORT [HOST:PORT...] -- COMMAND...`), runs it and returns
/// the command's exit status.
pub fn run_relay_if_asked() -> Option<i32> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) != Some(RELAY_ARG) {
        return None;
    }
    Some(relay_main(&args[1..]))
}

fn relay_main(args: &[String]) -> i32 {
    let Some(sep) = args.iter().position(|a| a == "--") else {
        eprintln!("orch {RELAY_ARG}: expected SOCKET PROXY_PORT [HOST:PORT...] -- COMMAND");
        return 2;
    };
    let (head, command) = (&args[..sep], &args[sep + 1..]);
    let (Some(socket), Some(Ok(proxy_port))) = (head.first(), head.get(1).map(|p| p.parse()))
    else {
        eprintln!("orch {RELAY_ARG}: expected SOCKET PROXY_PORT before --");
        return 2;
    };
    let socket = PathBuf::from(socket);
    let listen = |addr: (&str, u16)| match TcpListener::bind(addr) {
        Ok(l) => Some(l),
        Err(e) => {
            eprintln!(
                "orch {RELAY_ARG}: cannot listen on {}:{}: {e}",
                addr.0, addr.1
            );
            None
        }
    };
    if let Some(l) = listen(("127.0.0.1", proxy_port)) {
        let socket = socket.clone();
        serve(l, move |c| proxy_conn(c, &socket));
    }
    for hp in &head[2..] {
        let Ok(target) = HostPort::parse(hp) else {
            eprintln!("orch {RELAY_ARG}: not a host:port: {hp}");
            return 2;
        };
        let addr = if target.host == "::1" {
            "::1"
        } else if target.host == "localhost" {
            "127.0.0.1"
        } else {
            target.host.as_str()
        };
        if let Some(l) = listen((addr, target.port)) {
            let socket = socket.clone();
            let target = target.to_string();
            serve(l, move |c| {
                if let Ok((up, rest)) = through(&socket, &target) {
                    let mut c = c;
                    if c.write_all(&rest).is_ok() {
                        splice(Stream::Tcp(c), Stream::Unix(up));
                    }
                }
            });
        }
    }
    let Some((program, rest)) = command.split_first() else {
        eprintln!("orch {RELAY_ARG}: no command after --");
        return 2;
    };
    match std::process::Command::new(program).args(rest).status() {
        Ok(status) => {
            use std::os::unix::process::ExitStatusExt;
            status
                .code()
                .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
        }
        Err(e) => {
            eprintln!("orch {RELAY_ARG}: cannot run {program}: {e}");
            127
        }
    }
}

/// Accepts on `l` for the life of the process, each connection on a thread of its own.
fn serve(l: TcpListener, on: impl Fn(TcpStream) + Send + Sync + 'static) {
    let on = Arc::new(on);
    let _ = std::thread::Builder::new()
        .name("relay-accept".into())
        .spawn(move || {
            for c in l.incoming().flatten() {
                let on = on.clone();
                let _ = std::thread::Builder::new()
                    .name("relay-conn".into())
                    .spawn(move || on(c));
            }
        });
}

/// A connection to `target` through orch's broker: the stream, and any bytes the broker sent
/// past its answer line. An error carries the broker's refusal.
fn through(socket: &Path, target: &str) -> Result<(UnixStream, Vec<u8>), String> {
    let mut up = UnixStream::connect(socket).map_err(|e| format!("orch's relay: {e}"))?;
    writeln!(up, "CONNECT {target}").map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(up.try_clone().map_err(|e| e.to_string())?);
    let mut answer = String::new();
    reader
        .by_ref()
        .take(MAX_HEAD as u64)
        .read_line(&mut answer)
        .map_err(|e| e.to_string())?;
    if answer.trim() != "OK" {
        let why = answer.trim();
        return Err(if why.is_empty() {
            "closed by orch".into()
        } else {
            why.into()
        });
    }
    let rest = reader.buffer().to_vec();
    let _ = up.set_read_timeout(None);
    Ok((up, rest))
}

/// One client of the HTTP proxy: `CONNECT host:port` (HTTPS), or a plain HTTP request with an
/// absolute URL, which goes on to its host in origin form.
fn proxy_conn(client: TcpStream, socket: &Path) {
    let Ok(c2) = client.try_clone() else { return };
    let mut reader = BufReader::new(c2);
    let mut head = Vec::new();
    // The request line and headers, up to the blank line.
    loop {
        let mut line = Vec::new();
        match reader
            .by_ref()
            .take(MAX_HEAD as u64)
            .read_until(b'\n', &mut line)
        {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        head.extend_from_slice(&line);
        if line == b"\r\n" || line == b"\n" || head.len() > MAX_HEAD {
            break;
        }
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut first = text.lines().next().unwrap_or("").split_whitespace();
    let (method, target, version) = (
        first.next().unwrap_or(""),
        first.next().unwrap_or(""),
        first.next().unwrap_or("HTTP/1.1"),
    );
    let mut client = client;
    let refuse = |c: &mut TcpStream, why: &str| {
        let body = format!("orch sandbox: {why}\n");
        let _ = write!(
            c,
            "HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        );
    };
    let buffered = reader.buffer().to_vec();
    if method.eq_ignore_ascii_case("CONNECT") {
        match through(socket, target) {
            Ok((up, rest)) => {
                if write!(client, "{version} 200 Connection established\r\n\r\n").is_err()
                    || client.write_all(&rest).is_err()
                {
                    return;
                }
                let mut up = up;
                if !buffered.is_empty() && up.write_all(&buffered).is_err() {
                    return;
                }
                splice(Stream::Tcp(client), Stream::Unix(up));
            }
            Err(why) => refuse(&mut client, &why),
        }
        return;
    }
    // Plain HTTP: `GET http://host[:port]/path HTTP/1.1`.
    let Some(hp) = HostPort::from_url(target).filter(|_| target.starts_with("http://")) else {
        refuse(
            &mut client,
            &format!("not a proxy request: {method} {target}"),
        );
        return;
    };
    let after_scheme = &target["http://".len()..];
    let path = after_scheme
        .find('/')
        .map_or("/", |i| &after_scheme[i..])
        .to_string();
    match through(socket, &hp.to_string()) {
        Ok((mut up, rest)) => {
            let rewritten = text.replacen(target, &path, 1);
            if up.write_all(rewritten.as_bytes()).is_err()
                || up.write_all(&buffered).is_err()
                || client.write_all(&rest).is_err()
            {
                return;
            }
            splice(Stream::Tcp(client), Stream::Unix(up));
        }
        Err(why) => refuse(&mut client, &why),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A TCP server on the host that answers each connection with `hello` and closes.
    fn hello_server() -> (u16, std::thread::JoinHandle<()>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let t = std::thread::spawn(move || {
            if let Some(Ok(mut c)) = l.incoming().next() {
                let _ = c.write_all(b"hello");
            }
        });
        (port, t)
    }

    #[test]
    fn the_broker_connects_an_allowed_port_and_refuses_another() {
        let (port, server) = hello_server();
        let dir = tempfile::tempdir().unwrap();
        let allowed = HostPort::parse(&format!("127.0.0.1:{port}")).unwrap();
        let broker = Broker::start(dir.path(), vec![allowed.clone()]).unwrap();

        let (mut up, rest) = through(broker.socket(), &allowed.to_string()).unwrap();
        let mut got = rest;
        up.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"hello");
        server.join().unwrap();

        let other = format!("127.0.0.1:{}", port.wrapping_add(1).max(1));
        let why = through(broker.socket(), &other).unwrap_err();
        assert!(why.contains("not on the sandbox's allowlist"), "{why}");
        assert_eq!(broker.denied(), vec![other]);

        let socket_dir = broker.socket().parent().unwrap().to_path_buf();
        drop(broker);
        assert!(!socket_dir.exists(), "the socket's folder is removed");
    }
}
