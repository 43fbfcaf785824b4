//! A `redis-server` of a test's own, on a free port, stopped when dropped.
//!
//! Tests never share a Redis: each starts its own, so that none sees another's keys and a
//! test may stop, restart or empty its server. Without `redis-server` on the `PATH` a test
//! fails under `CI=true`, and elsewhere says so on stderr and passes without checking
//! anything (the test command installs Debian's `redis-server` first). The server is marked
//! as a deployment, as `ripcord store init` marks one, so that stores open on it.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) struct RedisServer {
    child: Option<Child>,
    port: u16,
    directory: tempfile::TempDir,
    /// With TLS only: the server's self-signed certificate (PEM), which clients trust.
    certificate: Option<String>,
}

impl RedisServer {
    /// A new, empty server; `None` (outside CI) when `redis-server` is not installed.
    pub(crate) fn start() -> Option<RedisServer> {
        RedisServer::start_with(false)
    }

    /// [`start`](Self::start), speaking TLS only, with a self-signed certificate for
    /// `localhost` ([`certificate`](Self::certificate)).
    pub(crate) fn start_tls() -> Option<RedisServer> {
        RedisServer::start_with(true)
    }

    /// The file of a TLS server's certificate, PEM.
    pub(crate) fn certificate_file(&self) -> Option<PathBuf> {
        self.certificate
            .as_ref()
            .map(|_| self.path().join("cert.pem"))
    }

    fn start_with(tls: bool) -> Option<RedisServer> {
        if !installed() {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "redis-server is not installed; scripts/test.sh installs it"
            );
            eprintln!("redis-server is not installed: this test checks nothing");
            return None;
        }
        let directory = tempfile::tempdir().expect("a temporary directory");
        let certificate = tls.then(|| {
            let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
                .expect("a certificate");
            let certificate = generated.cert.pem();
            std::fs::write(directory.path().join("cert.pem"), &certificate).expect("writing");
            std::fs::write(
                directory.path().join("key.pem"),
                generated.key_pair.serialize_pem(),
            )
            .expect("writing");
            certificate
        });
        let mut server = RedisServer {
            child: None,
            port: 0,
            directory,
            certificate,
        };
        server.launch();
        Some(server)
    }

    pub(crate) fn url(&self) -> String {
        match self.certificate {
            Some(_) => format!("rediss://localhost:{}/", self.port),
            None => format!("redis://127.0.0.1:{}/", self.port),
        }
    }

    /// Kills the server (as a crash would: no save on the way out).
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port, from what it persisted.
    pub(crate) fn restart(&mut self) {
        self.kill();
        self.launch();
    }

    /// Starts the server on its port, or on a free one if it has none yet (or if the one it
    /// found free was taken before the server could bind it).
    fn launch(&mut self) {
        for _ in 0..20 {
            if self.port == 0 {
                self.port = free_port();
            }
            let mut command = Command::new("redis-server");
            match self.certificate {
                Some(_) => {
                    let file = |name: &str| self.path().join(name);
                    command
                        .args(["--port", "0", "--tls-port", &self.port.to_string()])
                        .arg("--tls-cert-file")
                        .arg(file("cert.pem"))
                        .arg("--tls-key-file")
                        .arg(file("key.pem"))
                        .arg("--tls-ca-cert-file")
                        .arg(file("cert.pem"))
                        .args(["--tls-auth-clients", "no"]);
                }
                None => {
                    command.args(["--port", &self.port.to_string()]);
                }
            }
            let child = command
                .args(["--bind", "127.0.0.1"])
                .args([
                    "--save",
                    "",
                    "--appendonly",
                    "yes",
                    "--appendfsync",
                    "always",
                ])
                .arg("--dir")
                .arg(self.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("starting redis-server");
            self.child = Some(child);
            if self.wait_until_up() {
                return;
            }
            self.kill();
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("redis-server did not start on port {}", self.port);
    }

    fn path(&self) -> PathBuf {
        self.directory.path().to_path_buf()
    }

    fn wait_until_up(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(_)) = child.try_wait() {
                    return false;
                }
            }
            let client = match &self.certificate {
                Some(certificate) => redis::Client::build_with_tls(
                    self.url(),
                    redis::TlsCertificates {
                        client_tls: None,
                        root_cert: Some(certificate.as_bytes().to_vec()),
                    },
                ),
                None => redis::Client::open(self.url()),
            };
            if let Ok(client) = client {
                if let Ok(mut connection) = client.get_connection() {
                    if redis::cmd("PING").query::<String>(&mut connection).is_ok() {
                        // What `ripcord store init` does: the tests' stores open on it.
                        return redis::cmd("SET")
                            .arg("{ripcord}:marker")
                            .arg("test-deployment")
                            .arg("NX")
                            .query::<()>(&mut connection)
                            .is_ok();
                    }
                }
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
