//! Configuration: command-line flags, each also readable from an environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

/// Ripcord: a feature-flag server for progressive delivery.
///
/// Without a command, `ripcord` runs the server with the options below.
#[derive(Debug, Clone, Parser)]
#[command(name = "ripcord", version, about, long_about = None)]
// Server options before a command would be silently ignored: refuse them instead.
#[command(args_conflicts_with_subcommands = true)]
pub struct Config {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Address for HTTP (OFREP, the admin API, health and metrics). Port 0 picks a free port;
    /// the bound address is logged.
    #[arg(long, env = "RIPCORD_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,

    /// Directory of the embedded database. Created if missing.
    #[arg(long, env = "RIPCORD_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// Where the state lives: `sled`, the embedded database in the data directory, for one
    /// node; or a Redis URL (`redis://host:port/db`, `rediss://...` for TLS, with
    /// `user:password@` if Redis asks for them) shared by every node of a deployment.
    #[arg(long, env = "RIPCORD_STORE", default_value = "sled", value_parser = parse_store, hide_env_values = true)]
    pub store: StoreChoice,

    /// A CA certificate (PEM) to trust for a `rediss://` store instead of the system's
    /// roots: for a Redis whose certificate a private CA signed.
    #[arg(long, env = "RIPCORD_STORE_CA")]
    pub store_ca: Option<PathBuf>,

    /// An admin key accepted in addition to stored ones, at least 24 characters. When neither
    /// this nor a stored admin key exists, the server generates one at start and prints it
    /// once.
    #[arg(long, env = "RIPCORD_ADMIN_KEY", hide_env_values = true)]
    pub admin_key: Option<String>,

    /// A flag document (YAML or JSON) imported into the `default` environment at start, if
    /// nothing was ever written to that environment; a restart never undoes later changes.
    #[arg(long, env = "RIPCORD_BOOTSTRAP")]
    pub bootstrap: Option<PathBuf>,

    /// Log filter, such as `info` or `ripcord_server=debug,actix_web=info`.
    #[arg(long, env = "RIPCORD_LOG", default_value = "info")]
    pub log: String,

    /// Largest request body, in bytes, except for document imports and metric batches.
    #[arg(long, env = "RIPCORD_MAX_BODY_BYTES", default_value_t = 256 * 1024)]
    pub max_body_bytes: usize,

    /// Largest flag document accepted by an import, in bytes.
    #[arg(long, env = "RIPCORD_MAX_IMPORT_BYTES", default_value_t = 32 * 1024 * 1024)]
    pub max_import_bytes: usize,

    /// Most attributes in one evaluation context.
    #[arg(long, env = "RIPCORD_MAX_CONTEXT_ATTRIBUTES", default_value_t = 200)]
    pub max_context_attributes: usize,

    /// Most flags in one environment.
    #[arg(long, env = "RIPCORD_MAX_FLAGS", default_value_t = 20_000)]
    pub max_flags: usize,

    /// Most rules in one flag.
    #[arg(long, env = "RIPCORD_MAX_RULES_PER_FLAG", default_value_t = 200)]
    pub max_rules_per_flag: usize,

    /// Most values in one condition (the list of an `in`, say).
    #[arg(
        long,
        env = "RIPCORD_MAX_VALUES_PER_CONDITION",
        default_value_t = 10_000
    )]
    pub max_values_per_condition: usize,

    /// Longest flag, segment, variant or key name and attribute name, in characters.
    #[arg(long, env = "RIPCORD_MAX_KEY_LENGTH", default_value_t = 256)]
    pub max_key_length: usize,

    /// Address for gRPC (`ripcord.v1`, flagd's evaluation services, health, reflection).
    /// Port 0 picks a free port; the bound address is logged.
    #[arg(long, env = "RIPCORD_GRPC_ADDR", default_value = "127.0.0.1:50051")]
    pub grpc_addr: SocketAddr,

    /// The environment that flagd's evaluation services (`flagd.evaluation.v1` and `v2`)
    /// serve. Unset, they answer every call with FAILED_PRECONDITION. flagd providers send
    /// no key, so this names the environment a call without one would see.
    #[arg(long, env = "RIPCORD_FLAGD_ENVIRONMENT")]
    pub flagd_environment: Option<String>,

    /// Let calls to flagd's services without a key evaluate every flag of
    /// RIPCORD_FLAGD_ENVIRONMENT (read only). Off, they need a client or server key of that
    /// environment in `authorization: Bearer ...`, which stock flagd providers do not send.
    /// Turn it on only where the gRPC port is reachable from trusted networks alone.
    #[arg(long, env = "RIPCORD_FLAGD_ALLOW_ANONYMOUS", default_value_t = false)]
    pub flagd_allow_anonymous: bool,

    /// How long a ruleset stream (gRPC `Watch`, server-sent events) may stay silent before
    /// the server sends a heartbeat, such as `15s` or `1m`.
    #[arg(long, env = "RIPCORD_HEARTBEAT", default_value = "15s", value_parser = parse_heartbeat)]
    pub heartbeat: std::time::Duration,

    /// How often the ramp controller looks at every running ramp, such as `10s`. Stages
    /// advance and kills happen on these looks.
    #[arg(long, env = "RIPCORD_RAMP_TICK", default_value = "10s", value_parser = parse_positive_duration)]
    pub ramp_tick: std::time::Duration,

    /// How long the ramp controller's lease lasts unless renewed. Nodes sharing a store run
    /// one controller between them: the one holding the lease, which renews it every tick.
    /// When its node dies, another takes over within this time plus one tick. Must be
    /// longer than the tick.
    #[arg(long, env = "RIPCORD_RAMP_LEASE", default_value = "30s", value_parser = parse_positive_duration)]
    pub ramp_lease: std::time::Duration,

    /// URLs that receive a signed JSON POST when a ramp starts, advances, completes, pauses,
    /// is killed or aborted; comma-separated. Needs RIPCORD_WEBHOOK_SECRET.
    #[arg(long, env = "RIPCORD_WEBHOOK_URLS", value_delimiter = ',')]
    pub webhook_urls: Vec<String>,

    /// The secret webhook deliveries are signed with (HMAC-SHA256, header
    /// `X-Ripcord-Signature`).
    #[arg(long, env = "RIPCORD_WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<String>,

    /// Tries per webhook delivery, the first included.
    #[arg(long, env = "RIPCORD_WEBHOOK_ATTEMPTS", default_value_t = 6)]
    pub webhook_attempts: u32,

    /// The wait before a failed webhook delivery's first retry; each next one waits twice as
    /// long (at most 5 minutes).
    #[arg(long, env = "RIPCORD_WEBHOOK_BACKOFF", default_value = "2s", value_parser = parse_positive_duration)]
    pub webhook_backoff: std::time::Duration,

    /// HTTP worker threads; 0 means one per core.
    #[arg(long, env = "RIPCORD_WORKERS", default_value_t = 0)]
    pub workers: usize,

    /// Most observations in one metrics batch (`POST /api/v1/metrics`, gRPC `Report`). A
    /// metrics body may take 512 bytes per observation of this limit.
    #[arg(
        long,
        env = "RIPCORD_MAX_OBSERVATIONS_PER_BATCH",
        default_value_t = 10_000,
        value_parser = parse_batch_limit
    )]
    pub max_observations_per_batch: usize,

    /// How long an HTTP request body may take to arrive, counted from when the server starts
    /// reading it (at once, but for an import waiting for the one before it), such as `10s`. A slower HTTP body is answered `408`; a gRPC call whose request has not
    /// arrived and been answered in this time ends with CANCELLED. Raise it for large imports
    /// over slow links.
    #[arg(long, env = "RIPCORD_BODY_TIMEOUT", default_value = "10s", value_parser = parse_positive_duration)]
    pub body_timeout: std::time::Duration,

    /// How long a stop (SIGTERM, Ctrl-C) may take: requests already received are answered,
    /// idle keep-alive connections are closed, then whatever is left is dropped. Such as `10s`.
    #[arg(long, env = "RIPCORD_SHUTDOWN_GRACE", default_value = "10s", value_parser = parse_positive_duration)]
    pub shutdown_grace: std::time::Duration,

    /// Most gRPC connections open at once; one more is closed as soon as it is accepted.
    #[arg(long, env = "RIPCORD_GRPC_MAX_CONNECTIONS", default_value_t = 10_000, value_parser = parse_connection_limit)]
    pub grpc_max_connections: usize,

    /// Most gRPC calls in progress on one connection (HTTP/2's MAX_CONCURRENT_STREAMS); a
    /// client waits for one to finish before it starts another.
    #[arg(long, env = "RIPCORD_GRPC_MAX_STREAMS_PER_CONNECTION", default_value_t = 100, value_parser = parse_stream_limit)]
    pub grpc_max_streams_per_connection: u32,

    /// A PEM file with the certificate chain to serve HTTP and gRPC over TLS with. Needs
    /// RIPCORD_TLS_KEY; without both, both ports speak plain text.
    #[arg(long, env = "RIPCORD_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,

    /// A PEM file with the private key of RIPCORD_TLS_CERT (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "RIPCORD_TLS_KEY")]
    pub tls_key: Option<PathBuf>,

    /// The longest a store call may take, such as `5s`. A write that has not finished by
    /// then is answered `503 storage_unavailable`, and while it still runs the store counts
    /// as failing (`/readyz`) and further writes are refused at once. Closing the store at
    /// shutdown waits at most this long too.
    #[arg(long, env = "RIPCORD_STORE_TIMEOUT", default_value = "5s", value_parser = parse_positive_duration)]
    pub store_timeout: std::time::Duration,

    /// Bytes kept free on the data directory's filesystem: below this, writes are answered
    /// `503 storage_unavailable` before they reach the database, and `/readyz` fails, until
    /// space is freed. Small writes (the kill switch, a ramp's decision) may use half of it. Keep it well above the largest import (RIPCORD_MAX_IMPORT_BYTES): a
    /// write that runs out of space half-way can leave the database unwritable until a
    /// restart. 0 turns the check off.
    #[arg(long, env = "RIPCORD_STORE_RESERVE_BYTES", default_value_t = 128 * 1024 * 1024)]
    pub store_reserve_bytes: u64,
}

fn parse_connection_limit(text: &str) -> Result<usize, String> {
    text.parse::<usize>()
        .ok()
        .filter(|limit| *limit > 0)
        .ok_or_else(|| format!("`{text}` is not a number of connections above zero"))
}

fn parse_stream_limit(text: &str) -> Result<u32, String> {
    text.parse::<u32>()
        .ok()
        .filter(|limit| *limit > 0)
        .ok_or_else(|| format!("`{text}` is not a number of calls above zero"))
}

/// Which store the server runs on.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreChoice {
    Sled,
    /// The URL, which may hold a password.
    Redis(String),
}

impl std::fmt::Debug for StoreChoice {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(&self.describe())
    }
}

impl StoreChoice {
    /// What to log: the URL without its credentials.
    pub fn describe(&self) -> String {
        match self {
            StoreChoice::Sled => "sled".to_string(),
            StoreChoice::Redis(url) => crate::store::redis::without_credentials(url),
        }
    }
}

fn parse_store(text: &str) -> Result<StoreChoice, String> {
    if text == "sled" {
        return Ok(StoreChoice::Sled);
    }
    if text.starts_with("redis://") || text.starts_with("rediss://") {
        redis::Client::open(text).map_err(|error| format!("not a Redis URL: {error}"))?;
        return Ok(StoreChoice::Redis(text.to_string()));
    }
    Err("expected `sled` or a Redis URL (`redis://host:port/db`, `rediss://...`)".to_string())
}

fn parse_positive_duration(text: &str) -> Result<std::time::Duration, String> {
    parse_heartbeat(text)
}

/// `ripcord <command> ...` on its own: a command reads none of the server's options or
/// environment variables, so no server setting can break it.
#[derive(Debug, Clone, Parser)]
#[command(name = "ripcord", version)]
pub struct CommandLine {
    #[command(subcommand)]
    pub command: Command,
}

/// What `ripcord` does other than serving.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Judge a treatment sample against a control with the guard's statistics: the
    /// Mann-Whitney U test, the Hodges-Lehmann shift and, with a tolerance, a verdict.
    Judge(crate::judge_cli::JudgeArgs),
    /// Work on a store without a server: `ripcord store copy --from sled:./data --to
    /// redis://...` moves a deployment from one node to many.
    Store(crate::store_cli::StoreArgs),
}

fn parse_heartbeat(text: &str) -> Result<std::time::Duration, String> {
    ripcord_engine::snapshot::parse_duration(text)
        .filter(|duration| !duration.is_zero())
        .ok_or_else(|| format!("`{text}` is not a duration above zero such as `15s` or `1m`"))
}

fn parse_batch_limit(text: &str) -> Result<usize, String> {
    text.parse::<usize>()
        .ok()
        .filter(|limit| *limit > 0)
        .ok_or_else(|| format!("`{text}` is not a number of observations above zero"))
}

impl Config {
    pub fn limits(&self) -> ripcord_engine::Limits {
        ripcord_engine::Limits {
            max_flags: self.max_flags,
            max_rules_per_flag: self.max_rules_per_flag,
            max_values_per_condition: self.max_values_per_condition,
            max_key_length: self.max_key_length,
            ..ripcord_engine::Limits::default()
        }
    }
}
