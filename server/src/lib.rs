//! The Ripcord server.
//!
//! # Layout
//!
//! - [`clock`]: the clock and the one way a time is written.
//! - [`memory`]: memory freed by closed connections given back to the system.
//! - [`config`]: flags and environment variables.
//! - [`access`]: what each kind of key may do, for every protocol.
//! - [`context`]: the evaluation context, checked the same way for every protocol.
//! - [`environment`]: one environment as served: its snapshot, document and ruleset.
//! - [`delivery`]: the one follower behind every stream that follows an environment.
//! - [`evaluation`]: the one evaluation path every protocol calls.
//! - [`answers`]: each flag's OFREP answer, encoded once per snapshot.
//! - [`store`]: the `Store` trait and its backends (sled, the embedded default).
//! - [`service`]: environments, flags, segments, keys and the audit log, without HTTP;
//!   holds the per-environment snapshots that evaluation reads.
//! - [`http`]: the only module that knows actix-web: OFREP, the admin API, health,
//!   Prometheus metrics, guard observations.
//! - [`feed`]: every installed snapshot, announced to the streams SDKs follow.
//! - [`grpc`]: the only module that knows tonic: `ripcord.v1`, flagd's services, health.
//! - [`judge_cli`]: `ripcord judge`, the judge of the HTTP API on two files.
//! - [`store_cli`]: `ripcord store init` and `ripcord store copy`: a Redis made a
//!   deployment, a deployment copied from one store into another.
//! - [`postmortem`]: the Markdown postmortem started from an incident.
//! - [`ingest`]: guard observations (the metric values apps report for running ramps),
//!   checked against running ramps and stored as mergeable aggregates with group commit.
//! - [`principal`]: who a request acts as: a key's name, scope and environment.
//! - [`parts`]: what both protocol servers serve from.
//! - [`reach`]: which instances have fetched which revision, for a kill's reach.
//! - [`shutdown`]: the one stop signal for servers and their streams.
//! - [`telemetry`]: the Prometheus metrics served on `/metrics`.
//! - [`tls`]: the certificate and key both ports serve with, when configured.
//!
//! [`run`] serves on listeners it is given, so tests start a real server on port 0.

pub mod access;
pub mod answers;
pub mod clock;
pub mod config;
pub mod context;
pub mod delivery;
pub mod environment;
pub mod error;
pub mod evaluation;
pub mod feed;
pub mod fuzz;
pub mod grpc;
pub mod http;
pub mod ingest;
pub mod judge_cli;
pub mod memory;
pub mod parts;
pub mod postmortem;
pub mod principal;
pub mod ramp;
pub mod reach;
pub mod service;
pub mod shutdown;
pub mod store;
pub mod store_cli;
pub mod telemetry;
pub mod tls;

use std::net::TcpListener;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;
use ripcord_engine::Document;

pub use config::Config;
use parts::Parts;
use principal::Principal;
use service::{Change, Service};
use store::Scope;

/// The shortest admin key accepted from the configuration.
pub const MIN_ADMIN_KEY_LENGTH: usize = 24;

/// How often a node hands what it saw of instances to a shared store.
const REACH_SHARING: std::time::Duration = std::time::Duration::from_secs(2);

/// The environment every new server starts with.
pub const DEFAULT_ENVIRONMENT: &str = "default";

/// The `ripcord` binary: parse the configuration, serve until SIGTERM or Ctrl-C; or run
/// a command such as `ripcord judge`.
pub fn main() -> ExitCode {
    let arguments: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // Usage errors of `ripcord judge` must not exit with 2, which it uses for INCONCLUSIVE.
    let judge_usage = |error: clap::Error| {
        let _ = error.print();
        match error.exit_code() {
            0 => ExitCode::SUCCESS,
            _ => ExitCode::from(judge_cli::EXIT_USAGE),
        }
    };
    if arguments.get(1).is_some_and(|first| first == "judge") {
        return match config::CommandLine::try_parse_from(&arguments) {
            Ok(line) => match line.command {
                config::Command::Judge(judge) => judge_cli::run(&judge),
                config::Command::Store(store) => store_cli::run(&store),
            },
            Err(error) => judge_usage(error),
        };
    }
    let config = match Config::try_parse_from(&arguments) {
        Ok(config) => config,
        // Server options before `judge` conflict with it.
        Err(error) if arguments.iter().skip(1).any(|argument| argument == "judge") => {
            return judge_usage(error)
        }
        Err(error) => error.exit(),
    };
    match &config.command {
        Some(config::Command::Judge(judge)) => return judge_cli::run(judge),
        Some(config::Command::Store(store)) => return store_cli::run(store),
        None => {}
    }
    init_logging(&config.log);
    let workers = if config.workers == 0 {
        std::thread::available_parallelism().map_or(1, usize::from)
    } else {
        config.workers
    };
    let result = actix_web::rt::System::new().block_on(async move {
        let listener = TcpListener::bind(config.http_addr)
            .with_context(|| format!("binding {}", config.http_addr))?;
        let grpc_listener = TcpListener::bind(config.grpc_addr)
            .with_context(|| format!("binding {}", config.grpc_addr))?;
        run(config, listener, grpc_listener, workers).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            eprintln!("ripcord: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Opens the store, prepares the default environment and the admin key, and serves HTTP on
/// `listener` and gRPC on `grpc_listener` until the process is told to stop.
pub async fn run(
    config: Config,
    listener: TcpListener,
    grpc_listener: TcpListener,
    workers: usize,
) -> anyhow::Result<()> {
    if let Some(key) = &config.admin_key {
        // The configured key cannot be revoked while it is configured: refuse one that
        // could be guessed.
        anyhow::ensure!(
            key.chars().count() >= MIN_ADMIN_KEY_LENGTH,
            "RIPCORD_ADMIN_KEY is {} characters; use at least {MIN_ADMIN_KEY_LENGTH} (random)",
            key.chars().count()
        );
    }
    let tls = tls::Tls::load(&config)?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let backend: Arc<dyn store::Store> = match &config.store {
        config::StoreChoice::Sled => {
            std::fs::create_dir_all(&config.data_dir).with_context(|| {
                format!("creating the data directory {}", config.data_dir.display())
            })?;
            Arc::new(
                store::sled::SledStore::open(&config.data_dir)?
                    .with_reserve(config.store_reserve_bytes),
            )
        }
        config::StoreChoice::Redis(url) => Arc::new(
            store::redis::RedisStore::open_with(
                url,
                config.store_ca.as_deref(),
                store::redis::Marking::Existing,
            )
            .await
            .with_context(|| format!("connecting to {}", config.store.describe()))?,
        ),
    };
    let store: Arc<dyn store::Store> = Arc::new(
        store::isolated::Isolated::new(backend, config.store_timeout)
            .context("starting the store's threads")?,
    );
    let service = Service::open(
        Arc::clone(&store),
        config.limits(),
        config.admin_key.as_deref(),
    )
    .await?;
    prepare(&service, &config).await?;
    let _follower = service.follow_changes();
    let ingest = ingest::Ingest::start(Arc::clone(&store), config.max_observations_per_batch);

    let (trigger, stop) = shutdown::channel();
    let webhooks = ramp::webhook::Webhooks::new(ramp::webhook::WebhookConfig {
        urls: config.webhook_urls.clone(),
        secret: config.webhook_secret.clone(),
        attempts: config.webhook_attempts,
        backoff: config.webhook_backoff,
    })?;
    let evidence: Arc<dyn ramp::Evidence> = Arc::clone(&ingest) as Arc<dyn ramp::Evidence>;
    anyhow::ensure!(
        config.ramp_lease > config.ramp_tick,
        "RIPCORD_RAMP_LEASE ({:?}) must be longer than RIPCORD_RAMP_TICK ({:?}), which renews it",
        config.ramp_lease,
        config.ramp_tick
    );
    let ramps = Arc::new(
        ramp::Controller::new(Arc::clone(&service), evidence, Arc::new(webhooks))
            .with_lease(config.ramp_lease),
    );
    ramps.restore().await?;
    let _ticker = ramps.spawn(config.ramp_tick, stop.clone());
    let _reach = store.shared().then(|| {
        reach::publish(
            Arc::clone(service.reach()),
            Arc::clone(&store),
            REACH_SHARING,
            stop.clone(),
        )
    });
    let parts = Parts {
        service,
        metrics: Arc::new(telemetry::Metrics::new()),
        ingest: Arc::clone(&ingest),
        ramps,
    };
    let grpc_address = grpc_listener.local_addr()?;
    let grpc = spawn_grpc(
        parts.clone(),
        config.clone(),
        grpc_listener,
        workers,
        stop.clone(),
        tls.clone(),
    )?;
    tracing::info!("ripcord gRPC listening on {scheme}://{grpc_address}");
    let address = listener.local_addr()?;
    let (server, drain) = http::serve(parts, &config, listener, workers, stop, tls)?;
    let store_location = match &config.store {
        config::StoreChoice::Sled => format!("sled:{}", config.data_dir.display()),
        redis => redis.describe(),
    };
    tracing::info!(store = %store_location, "ripcord listening on {scheme}://{address}");
    let signals = actix_web::rt::spawn(async move {
        wait_for_signal().await;
        tracing::info!("stopping");
        drain.stop(trigger).await;
    });
    let served = server.await;
    signals.abort();
    let grpc_result = tokio::task::spawn_blocking(move || grpc.join())
        .await
        .map_err(|error| anyhow::anyhow!("waiting for gRPC: {error}"))?;
    // Both servers are done: what their last batches added is flushed before the exit.
    ingest.close().await;
    served?;
    match grpc_result {
        Ok(result) => result?,
        Err(_) => anyhow::bail!("the gRPC server panicked"),
    }
    tracing::info!("ripcord stopped");
    Ok(())
}

/// gRPC runs on a runtime of its own, with as many threads as HTTP has workers: the HTTP
/// server's runtime is one thread per worker and not shared.
fn spawn_grpc(
    parts: Parts,
    config: Config,
    listener: TcpListener,
    workers: usize,
    stop: shutdown::Signal,
    tls: Option<tls::Tls>,
) -> anyhow::Result<std::thread::JoinHandle<anyhow::Result<()>>> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers.max(1))
        .thread_name("ripcord-grpc")
        .enable_all()
        .build()
        .context("starting the gRPC runtime")?;
    let thread = std::thread::Builder::new()
        .name("ripcord-grpc".to_string())
        .spawn(move || {
            let result = runtime.block_on(grpc::serve(parts, &config, listener, stop, tls));
            // Streams still open after the stop signal get a moment, then are dropped.
            runtime.shutdown_timeout(std::time::Duration::from_secs(2));
            result
        })?;
    Ok(thread)
}

/// SIGTERM or Ctrl-C.
async fn wait_for_signal() {
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(terminate) => terminate,
                Err(error) => {
                    tracing::warn!(%error, "cannot listen for SIGTERM; stopping on Ctrl-C only");
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = terminate.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// First-start work: the `default` environment, the bootstrap document, the admin key.
async fn prepare(service: &Arc<Service>, config: &Config) -> anyhow::Result<()> {
    let system = Principal {
        name: "ripcord".to_string(),
        scope: Scope::Admin,
        environment: None,
        event_channel: None,
    };
    if service.environment_names().is_empty() {
        match service
            .create_environment(DEFAULT_ENVIRONMENT, &system)
            .await
        {
            Ok(_) => {}
            // Another node of a shared store created it in the meantime.
            Err(error::Error::Conflict(_)) => service.refresh(DEFAULT_ENVIRONMENT).await?,
            Err(error) => return Err(error.into()),
        }
    }
    // Only into a `default` that nothing was ever written to (revision 0): deleting every
    // flag, or `default` itself, is a change like any other, and a restart must not undo
    // it. The file is read only then, so a server that has moved on does not depend on it.
    let untouched = service
        .environment(DEFAULT_ENVIRONMENT)
        .is_some_and(|environment| environment.revision == 0);
    if let Some(path) = config.bootstrap.as_ref().filter(|_| untouched) {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the bootstrap document {}", path.display()))?;
        let document = Document::from_text(&text)
            .with_context(|| format!("the bootstrap document {}", path.display()))?;
        let imported = service
            .change_at(
                Change {
                    environment: DEFAULT_ENVIRONMENT,
                    actor: &system,
                    operation: "bootstrap",
                    reason: None,
                },
                Some(0),
                |current| {
                    *current = document.clone();
                    Ok(())
                },
            )
            .await;
        if let Err(error) = imported {
            // Once per store: on a shared store, another node may have imported it (or
            // changed `default`) since this one looked.
            service.refresh(DEFAULT_ENVIRONMENT).await?;
            let moved_on = service
                .environment(DEFAULT_ENVIRONMENT)
                .is_some_and(|environment| environment.revision > 0);
            if !moved_on {
                return Err(anyhow::Error::from(error).context(format!(
                    "importing the bootstrap document {}",
                    path.display()
                )));
            }
            tracing::info!("`default` was written by another node first: the bootstrap document is not imported");
            return prepare_admin_key(service, config, &system).await;
        }
        tracing::info!(path = %path.display(), "imported the bootstrap document into `default`");
    }
    prepare_admin_key(service, config, &system).await
}

/// Generates an admin key when none is configured or stored.
async fn prepare_admin_key(
    service: &Arc<Service>,
    config: &Config,
    system: &Principal,
) -> anyhow::Result<()> {
    if config.admin_key.is_none() && !service.has_stored_admin_key().await? {
        let (_, token) = service
            .create_key("initial-admin", Scope::Admin, None, system)
            .await?;
        // Printed on stdout, once: it is stored hashed and cannot be shown again.
        println!("Generated an admin key (shown only now, store it safely): {token}");
        tracing::warn!("no admin key was configured or stored: generated one, printed on stdout");
    }
    Ok(())
}
