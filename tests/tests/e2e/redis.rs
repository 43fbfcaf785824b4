//! A `redis-server` of a test's own for the end-to-end tests: on a free port, in a temporary
//! directory, persisting every write to its append-only file before it answers, so that a
//! kill -9 and a restart on the same port bring back everything it acknowledged.
//!
//! Without `redis-server` on the `PATH`, [`RedisServer::start`] fails the test under
//! `CI=true` and elsewhere says on stderr that the test checks nothing (`scripts/test.sh`
//! installs Debian's `redis-server` first).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a `redis-server` may take to answer its first PING.
const PATIENCE: Duration = Duration::from_secs(10);

pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    directory: tempfile::TempDir,
}

impl RedisServer {
    /// A new, empty server; `None` (outside CI) when `redis-server` is not installed.
    pub fn start() -> Option<RedisServer> {
        if !installed() {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "redis-server is not installed (scripts/test.sh installs it): \
                 the scale-out tests cannot run"
            );
            eprintln!("redis-server is not installed: this test checks nothing");
            return None;
        }
        let mut server = RedisServer {
            child: None,
            port: 0,
            directory: tempfile::tempdir().expect("a temporary directory"),
        };
        server.launch();
        // What `ripcord store init` does: nodes start only on a Redis marked as a deployment.
        assert!(
            inline(
                server.port,
                "SET {ripcord}:marker e2e-deployment NX",
                b"+OK\r\n"
            ),
            "marking the deployment"
        );
        Some(server)
    }

    /// The URL a node is given in `RIPCORD_STORE`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// SIGKILL, as a crash would: nothing is saved on the way out, and the port closes.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Empties the server, as a Redis restarted without persistence comes back.
    pub fn flush_all(&self) {
        assert!(
            inline(self.port, "FLUSHALL", b"+OK\r\n"),
            "FLUSHALL was not answered OK"
        );
    }

    /// SIGSTOP: the server keeps its connections open and answers nothing, as a Redis
    /// that hangs or sits behind a network partition would.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// SIGCONT after [`RedisServer::pause`].
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    /// Through kill(1): the workspace forbids `unsafe`, which `libc::kill` needs.
    fn signal(&self, signal: &str) {
        let child = self.child.as_ref().expect("redis-server is running");
        let status = Command::new("kill")
            .arg(signal)
            .arg(child.id().to_string())
            .status()
            .expect("running kill(1)");
        assert!(status.success(), "kill {signal} failed");
    }

    /// Starts the killed server again on the same port, from its append-only file.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "redis-server is already running");
        self.launch();
    }

    /// Starts `redis-server` on its port (a free one the first time) and waits until it
    /// answers PING. A free port found by binding and releasing it may be taken by the time
    /// Redis binds it: the first start then tries another.
    fn launch(&mut self) {
        let first = self.port == 0;
        for _ in 0..20 {
            if first {
                self.port = free_port();
            }
            let child = Command::new("redis-server")
                .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
                .args([
                    "--save",
                    "",
                    "--appendonly",
                    "yes",
                    "--appendfsync",
                    "always",
                ])
                .arg("--dir")
                .arg(self.directory.path())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("starting redis-server");
            self.child = Some(child);
            if self.wait_until_up() {
                return;
            }
            self.kill();
            if !first {
                break;
            }
        }
        panic!("redis-server did not start on port {}", self.port);
    }

    fn wait_until_up(&mut self) -> bool {
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(_)) = child.try_wait() {
                    return false;
                }
            }
            if ping(self.port) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Whether a Redis on `port` answers PING with PONG.
fn ping(port: u16) -> bool {
    inline(port, "PING", b"+PONG\r\n")
}

/// Sends `command` to the Redis on `port` and whether it answered `expected`. Spoken by hand
/// (RESP's inline commands): the tests need no Redis client for a command or two.
fn inline(port: u16, command: &str, expected: &[u8]) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    if stream
        .write_all(format!("{command}\r\n").as_bytes())
        .is_err()
    {
        return false;
    }
    let mut answer = vec![0u8; expected.len()];
    stream.read_exact(&mut answer).is_ok() && answer == expected
}

fn installed() -> bool {
    Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}
