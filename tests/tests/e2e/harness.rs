//! The harness: starts real server processes on port 0, stops them by signal, and talks to
//! them over HTTP. Everything a test needs to reach a server goes through [`Server`].

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;
use reqwest::Method;
use serde_json::{json, Value};

/// The admin key servers start with unless a test asks for a generated one.
pub const ADMIN_KEY: &str = "ripcord-admin-e2e-0123456789abcdef0123456789abcdef";

/// How long a server may take to start or stop before the test fails instead of hanging.
const PATIENCE: Duration = Duration::from_secs(60);

const LISTENING: &str = "ripcord listening on ";
const GRPC_LISTENING: &str = "ripcord gRPC listening on ";
const GENERATED_KEY: &str = "Generated an admin key (shown only now, store it safely): ";

/// A real `ripcord` process with its own data directory, which outlives restarts. The
/// process is killed when the `Server` is dropped.
pub struct Server {
    data_dir: tempfile::TempDir,
    env: Vec<(String, String)>,
    configured_admin_key: bool,
    process: Option<Process>,
    base_url: String,
    grpc_url: String,
    /// `https` when the server was started with a certificate the client trusts.
    scheme: &'static str,
    client: reqwest::Client,
    /// The admin key: the configured one, or the one the first start generated.
    pub admin_key: String,
}

struct Process {
    child: Child,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
    readers: Vec<JoinHandle<()>>,
}

/// What a stopped process left behind.
pub struct Exited {
    pub status: ExitStatus,
    pub stdout: Vec<String>,
    pub stderr: Vec<String>,
}

/// Options for [`Server::start`]; every setting is passed as its environment variable.
pub struct Builder {
    env: Vec<(String, String)>,
    configured_admin_key: bool,
    trusted: Option<Vec<u8>>,
    data_dir_in: Option<std::path::PathBuf>,
}

impl Builder {
    /// Sets an environment variable of the server process, such as `RIPCORD_MAX_FLAGS`.
    pub fn env(mut self, name: &str, value: impl ToString) -> Builder {
        self.env.push((name.to_string(), value.to_string()));
        self
    }

    /// Starts without `RIPCORD_ADMIN_KEY`, so that the server generates an admin key and
    /// prints it; the harness reads it and uses it.
    pub fn generated_admin_key(mut self) -> Builder {
        self.configured_admin_key = false;
        self
    }

    /// Serves over TLS: the server is expected to have RIPCORD_TLS_CERT and RIPCORD_TLS_KEY
    /// set, and the harness's client trusts `certificate` (PEM).
    pub fn tls(mut self, certificate: &str) -> Builder {
        self.trusted = Some(certificate.as_bytes().to_vec());
        self
    }

    /// Puts the data directory inside `parent` (a filesystem the test mounted, say) rather
    /// than in the system's temporary directory.
    pub fn data_dir_in(mut self, parent: &std::path::Path) -> Builder {
        self.data_dir_in = Some(parent.to_path_buf());
        self
    }

    pub async fn start(self) -> Server {
        let mut client = reqwest::Client::builder();
        if let Some(pem) = &self.trusted {
            client = client.use_rustls_tls().add_root_certificate(
                reqwest::Certificate::from_pem(pem).expect("a PEM certificate"),
            );
        }
        let client = client
            .no_proxy()
            .timeout(PATIENCE)
            // The server closes a connection idle for 5 s (actix's keep-alive). A pooled
            // connection reused at that moment fails the request with an incomplete message,
            // so the tests' client lets go of idle connections well before.
            .pool_idle_timeout(std::time::Duration::from_secs(2))
            .build()
            .expect("an HTTP client");
        let mut server = Server {
            data_dir: match &self.data_dir_in {
                Some(parent) => tempfile::tempdir_in(parent),
                None => tempfile::tempdir(),
            }
            .expect("a temporary data directory"),
            env: self.env,
            configured_admin_key: self.configured_admin_key,
            process: None,
            base_url: String::new(),
            grpc_url: String::new(),
            scheme: if self.trusted.is_some() {
                "https"
            } else {
                "http"
            },
            client,
            admin_key: ADMIN_KEY.to_string(),
        };
        server.start_again().await;
        if !server.configured_admin_key {
            let line = server
                .wait_for_stdout(|line| line.starts_with(GENERATED_KEY))
                .expect("a first start without an admin key prints a generated one");
            server.admin_key = line[GENERATED_KEY.len()..].trim().to_string();
        }
        server
    }
}

impl Server {
    pub fn builder() -> Builder {
        Builder {
            env: Vec::new(),
            configured_admin_key: true,
            trusted: None,
            data_dir_in: None,
        }
    }

    /// A server with the defaults and [`ADMIN_KEY`].
    pub async fn start() -> Server {
        Server::builder().start().await
    }

    /// A server with `env` set and `document` (YAML) imported into `default`.
    pub async fn start_with(env: &[(&str, &str)], document: &str) -> Server {
        let builder = env
            .iter()
            .fold(Server::builder(), |builder, (name, value)| {
                builder.env(name, value)
            });
        let server = builder.start().await;
        server
            .import_yaml("default", document)
            .await
            .expect_status(200);
        server
    }

    /// Sets an environment variable for the next [`Server::start_again`].
    pub fn set_env(&mut self, name: &str, value: impl ToString) {
        self.env.retain(|(known, _)| known != name);
        self.env.push((name.to_string(), value.to_string()));
    }

    /// Starts the process (again) on the same data directory and waits until it serves.
    pub async fn start_again(&mut self) {
        assert!(self.process.is_none(), "the server is already running");
        let mut command = Command::new(env!("CARGO_BIN_EXE_ripcord-e2e-server"));
        command
            .arg("--http-addr")
            .arg("127.0.0.1:0")
            .arg("--grpc-addr")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(self.data_dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // Only what the test asks for: nothing leaks in from the environment of `cargo test`.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("RIPCORD_") {
                command.env_remove(name);
            }
        }
        command
            .env("NO_COLOR", "1")
            .env("RIPCORD_LOG", "info")
            .env("RIPCORD_WORKERS", "2");
        if self.configured_admin_key {
            command.env("RIPCORD_ADMIN_KEY", ADMIN_KEY);
        }
        command.envs(self.env.iter().map(|(name, value)| (name, value)));
        let mut child = command.spawn().expect("starting the server binary");

        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (address_sender, address_receiver) = mpsc::channel();
        let stdout_reader = read_lines(
            child.stdout.take().expect("piped stdout"),
            Arc::clone(&stdout),
            None,
        );
        let stderr_reader = read_lines(
            child.stderr.take().expect("piped stderr"),
            Arc::clone(&stderr),
            Some(address_sender),
        );
        self.process = Some(Process {
            child,
            stdout,
            stderr,
            readers: vec![stdout_reader, stderr_reader],
        });
        let address = match address_receiver.recv_timeout(PATIENCE) {
            Ok(address) => address,
            Err(_) => {
                let exited = self.kill();
                panic!(
                    "the server did not log its address (exit {:?}); stderr:\n{}",
                    exited.status,
                    exited.stderr.join("\n")
                );
            }
        };
        self.base_url = format!("{}://{address}", self.scheme);
        // Logged before the HTTP address, so it is among the lines read by now.
        let grpc_address = self
            .process
            .as_ref()
            .and_then(|process| {
                let lines = process.stderr.lock().expect("output lines");
                lines
                    .iter()
                    .find_map(|line| address_after(line, GRPC_LISTENING))
            })
            .expect("the server logs its gRPC address before its HTTP address");
        self.grpc_url = format!("{}://{grpc_address}", self.scheme);

        let deadline = Instant::now() + PATIENCE;
        loop {
            let healthy = self
                .client
                .get(self.url("/healthz"))
                .send()
                .await
                .is_ok_and(|response| response.status().is_success());
            if healthy {
                break;
            }
            assert!(Instant::now() < deadline, "the server never became healthy");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops with SIGTERM, as an orchestrator would, and waits for the process to exit. The
    /// signal goes through kill(1): the workspace forbids `unsafe`, which `libc::kill` needs.
    pub fn terminate(&mut self) -> Exited {
        self.send_sigterm();
        self.wait()
    }

    /// Sends SIGTERM and returns at once; [`Server::wait_for_exit`] waits for the process.
    pub fn send_sigterm(&self) {
        let process = self.process.as_ref().expect("the server is running");
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(process.child.id().to_string())
            .status()
            .expect("running kill(1)");
        assert!(status.success(), "kill -TERM failed");
    }

    /// Waits for the process to exit, after [`Server::send_sigterm`].
    pub fn wait_for_exit(&mut self) -> Exited {
        self.wait()
    }

    /// Stops with SIGKILL, as a crash or the OOM killer would, and waits for it.
    pub fn kill(&mut self) -> Exited {
        let process = self.process.as_mut().expect("the server is running");
        // It may have exited already; `wait` below tells.
        let _ = process.child.kill();
        self.wait()
    }

    /// SIGTERM, a check that the process stopped cleanly, and a new start on the same data.
    pub async fn restart(&mut self) -> Exited {
        let exited = self.terminate();
        assert!(
            exited.status.success(),
            "SIGTERM should stop the server cleanly, got {:?}; stderr:\n{}",
            exited.status,
            exited.stderr.join("\n")
        );
        self.start_again().await;
        exited
    }

    fn wait(&mut self) -> Exited {
        let mut process = self.process.take().expect("the server is running");
        let deadline = Instant::now() + PATIENCE;
        let status = loop {
            if let Some(status) = process.child.try_wait().expect("waiting for the server") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = process.child.kill();
                panic!("the server did not exit within {PATIENCE:?}");
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        // The pipes close with the process: the readers have everything once they end.
        for reader in process.readers.drain(..) {
            reader.join().expect("an output reader");
        }
        let take =
            |lines: &Mutex<Vec<String>>| std::mem::take(&mut *lines.lock().expect("output lines"));
        Exited {
            status,
            stdout: take(&process.stdout),
            stderr: take(&process.stderr),
        }
    }

    /// Waits until the running process prints a line on stdout that `wanted` accepts.
    fn wait_for_stdout(&self, wanted: impl Fn(&str) -> bool) -> Option<String> {
        let process = self.process.as_ref()?;
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(line) = process
                .stdout
                .lock()
                .expect("output lines")
                .iter()
                .find(|line| wanted(line))
            {
                return Some(line.clone());
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The running process's id, to read its memory from `/proc`.
    pub fn pid(&self) -> u32 {
        self.process
            .as_ref()
            .expect("the server is running")
            .child
            .id()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// The gRPC endpoint, such as `http://127.0.0.1:40125`.
    pub fn grpc_url(&self) -> &str {
        &self.grpc_url
    }

    pub fn address(&self) -> SocketAddr {
        self.base_url
            .trim_start_matches(self.scheme)
            .trim_start_matches("://")
            .parse()
            .expect("the server's address")
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    // ---- HTTP -------------------------------------------------------------------------

    /// Sends a request with `key` as a bearer token (if any).
    pub async fn call(&self, method: Method, path: &str, key: Option<&str>, body: Body) -> Reply {
        let mut request = self.client.request(method, self.url(path));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        request = match body {
            Body::None => request,
            Body::Json(value) => request.json(&value),
            Body::Raw {
                content_type,
                bytes,
            } => request.header("content-type", content_type).body(bytes),
        };
        Reply::from(request.send().await.expect("the server answers")).await
    }

    pub async fn admin_get(&self, path: &str) -> Reply {
        self.call(Method::GET, path, Some(&self.admin_key), Body::None)
            .await
    }

    pub async fn admin_post(&self, path: &str, body: Value) -> Reply {
        self.call(Method::POST, path, Some(&self.admin_key), Body::Json(body))
            .await
    }

    pub async fn admin_put(&self, path: &str, body: Value) -> Reply {
        self.call(Method::PUT, path, Some(&self.admin_key), Body::Json(body))
            .await
    }

    pub async fn admin_delete(&self, path: &str) -> Reply {
        self.call(Method::DELETE, path, Some(&self.admin_key), Body::None)
            .await
    }

    /// Imports a YAML flag document into `environment`, as the admin key.
    pub async fn import_yaml(&self, environment: &str, yaml: &str) -> Reply {
        self.call(
            Method::PUT,
            &format!("/api/v1/environments/{environment}/document"),
            Some(&self.admin_key),
            Body::yaml(yaml),
        )
        .await
    }

    /// The environment's document, exported as JSON.
    pub async fn export(&self, environment: &str) -> Value {
        self.admin_get(&format!("/api/v1/environments/{environment}/document"))
            .await
            .expect_status(200)
            .json()
    }

    /// The environment's revision as the admin API lists it.
    pub async fn revision(&self, environment: &str) -> u64 {
        let listing = self
            .admin_get("/api/v1/environments")
            .await
            .expect_status(200)
            .json();
        let environments = listing
            .as_array()
            .or_else(|| listing["environments"].as_array())
            .unwrap_or_else(|| panic!("GET /api/v1/environments is not a list: {listing}"));
        environments
            .iter()
            .find(|entry| entry["name"] == environment)
            .and_then(|entry| entry["revision"].as_u64())
            .unwrap_or_else(|| panic!("no revision for `{environment}` in {listing}"))
    }

    /// Creates a key and returns it with its token.
    pub async fn create_key(&self, name: &str, scope: &str, environment: Option<&str>) -> Key {
        let mut body = json!({"name": name, "scope": scope});
        if let Some(environment) = environment {
            body["environment"] = json!(environment);
        }
        let created = self
            .admin_post("/api/v1/keys", body)
            .await
            .expect_status(201)
            .json();
        Key {
            id: created["id"]
                .as_str()
                .unwrap_or_else(|| panic!("no id in {created}"))
                .to_string(),
            token: created["token"]
                .as_str()
                .unwrap_or_else(|| panic!("no token in {created}"))
                .to_string(),
        }
    }

    /// Reports metric observations (`POST /api/v1/metrics`) with `key`; answers the
    /// accepted and rejected counts of a batch the server took (200).
    pub async fn report(&self, key: &str, observations: &[Value]) -> Value {
        self.call(
            Method::POST,
            "/api/v1/metrics",
            Some(key),
            Body::Json(json!({"observations": observations})),
        )
        .await
        .expect_status(200)
        .json()
    }

    /// OFREP single evaluation.
    pub async fn evaluate(&self, key: &str, flag: &str, context: Value) -> Reply {
        self.call(
            Method::POST,
            &format!("/ofrep/v1/evaluate/flags/{flag}"),
            Some(key),
            Body::Json(json!({"context": context})),
        )
        .await
    }

    /// OFREP bulk evaluation, with `If-None-Match` when an ETag is given.
    pub async fn evaluate_all(
        &self,
        key: &str,
        context: Value,
        if_none_match: Option<&str>,
    ) -> Reply {
        let mut request = self
            .client
            .post(self.url("/ofrep/v1/evaluate/flags"))
            .bearer_auth(key)
            .json(&json!({"context": context}));
        if let Some(etag) = if_none_match {
            request = request.header("if-none-match", etag);
        }
        Reply::from(request.send().await.expect("the server answers")).await
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self) -> String {
        self.call(Method::GET, "/metrics", None, Body::None)
            .await
            .expect_status(200)
            .text()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(process) = &mut self.process {
            let _ = process.child.kill();
            let _ = process.child.wait();
        }
    }
}

/// A key as created: its id (to revoke it) and its token (to use it).
pub struct Key {
    pub id: String,
    pub token: String,
}

pub enum Body {
    None,
    Json(Value),
    Raw {
        content_type: &'static str,
        bytes: Vec<u8>,
    },
}

impl Body {
    pub fn yaml(text: &str) -> Body {
        Body::Raw {
            content_type: "application/yaml",
            bytes: text.as_bytes().to_vec(),
        }
    }

    pub fn raw_json(text: impl Into<Vec<u8>>) -> Body {
        Body::Raw {
            content_type: "application/json",
            bytes: text.into(),
        }
    }
}

/// A response, read whole.
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    async fn from(response: reqwest::Response) -> Reply {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.bytes().await.expect("a response body").to_vec();
        Reply {
            status,
            headers,
            body,
        }
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|error| {
            panic!(
                "status {} with a body that is not JSON ({error}): {}",
                self.status,
                self.text()
            )
        })
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|value| value.to_str().expect("a text header").to_string())
    }

    #[track_caller]
    pub fn expect_status(self, status: u16) -> Reply {
        assert_eq!(
            self.status,
            status,
            "unexpected status; body: {}",
            self.text()
        );
        self
    }
}

/// Reads `stream` line by line into `lines` until it closes; hands the server's address to
/// `address` when the line that announces it comes by.
fn read_lines(
    stream: impl Read + Send + 'static,
    lines: Arc<Mutex<Vec<String>>>,
    address: Option<mpsc::Sender<SocketAddr>>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut raw = Vec::new();
        loop {
            raw.clear();
            match reader.read_until(b'\n', &mut raw) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let line = strip_ansi(String::from_utf8_lossy(&raw).trim_end());
            if let Some(sender) = &address {
                if let Some(found) = listening_address(&line) {
                    let _ = sender.send(found);
                }
            }
            lines.lock().expect("output lines").push(line);
        }
    })
}

fn listening_address(line: &str) -> Option<SocketAddr> {
    address_after(line, LISTENING)
}

fn address_after(line: &str, announcement: &str) -> Option<SocketAddr> {
    let rest = &line[line.find(announcement)? + announcement.len()..];
    let rest = rest
        .strip_prefix("http://")
        .or_else(|| rest.strip_prefix("https://"))?;
    rest.split(|c: char| c.is_whitespace() || c == '"')
        .next()?
        .parse()
        .ok()
}

/// Removes terminal colour codes (`ESC [ ... letter`), should the log format add any.
fn strip_ansi(text: &str) -> String {
    let mut plain = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            continue;
        }
        plain.push(c);
    }
    plain
}

#[test]
fn log_lines_name_the_address_with_or_without_colour() {
    let line = "\u{1b}[2m2026-01-01T00:00:00Z\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m ripcord_server: ripcord listening on http://127.0.0.1:40123 \u{1b}[3mdata_dir\u{1b}[0m=/tmp/x";
    assert_eq!(
        listening_address(&strip_ansi(line)),
        Some("127.0.0.1:40123".parse().unwrap())
    );
}
