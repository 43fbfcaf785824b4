//! `ripcord store`: `init` makes a Redis a new, empty deployment for several nodes; `copy`
//! copies everything one store holds into another, empty one, such as a single node's sled
//! database into the Redis that several nodes will share.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::store::Store;

#[derive(Debug, Clone, clap::Args)]
pub struct StoreArgs {
    #[command(subcommand)]
    pub command: StoreCommand,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum StoreCommand {
    /// Make a Redis a new, empty deployment that servers can start on. Servers never do
    /// it by themselves: a Redis that came back empty would look new to them. Does nothing
    /// to a Redis that is one already.
    Init {
        /// The Redis URL.
        #[arg(long, value_parser = parse_location)]
        to: Location,
        /// A CA certificate (PEM) to trust for `rediss://` instead of the system's roots.
        #[arg(long, env = "RIPCORD_STORE_CA")]
        ca: Option<PathBuf>,
    },
    /// Copy environments, flags, segments, keys, the audit log, ramps, incidents, look
    /// histories and metric counts into an empty store. Stop the servers on the source
    /// first: sled opens a database in one process at a time, and a copy of a store that
    /// is being written may miss the last writes.
    Copy {
        /// Where from: `sled:PATH` (a data directory) or a Redis URL.
        #[arg(long, value_parser = parse_location)]
        from: Location,
        /// Where to: `sled:PATH` or a Redis URL. Must hold nothing yet.
        #[arg(long, value_parser = parse_location)]
        to: Location,
        /// A CA certificate (PEM) to trust for `rediss://` instead of the system's roots.
        #[arg(long, env = "RIPCORD_STORE_CA")]
        ca: Option<PathBuf>,
    },
}

/// A store named on the command line.
#[derive(Clone)]
pub enum Location {
    Sled(PathBuf),
    Redis(String),
}

impl std::fmt::Debug for Location {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Sled(path) => write!(formatter, "sled:{}", path.display()),
            Location::Redis(url) => {
                formatter.write_str(&crate::store::redis::without_credentials(url))
            }
        }
    }
}

fn parse_location(text: &str) -> Result<Location, String> {
    if let Some(path) = text.strip_prefix("sled:") {
        if path.is_empty() {
            return Err("`sled:` needs the data directory's path, as in `sled:./data`".into());
        }
        return Ok(Location::Sled(PathBuf::from(path)));
    }
    if text.starts_with("redis://") || text.starts_with("rediss://") {
        redis::Client::open(text).map_err(|error| format!("not a Redis URL: {error}"))?;
        return Ok(Location::Redis(text.to_string()));
    }
    Err("expected `sled:PATH` or a Redis URL (`redis://host:port/db`, `rediss://...`)".into())
}

/// Opens a store; `create` makes a missing sled directory and marks a Redis that holds no
/// deployment as a new one.
async fn open(
    location: &Location,
    create: bool,
    ca: Option<&PathBuf>,
) -> anyhow::Result<Box<dyn Store>> {
    Ok(match location {
        Location::Sled(path) => {
            if !create && !path.is_dir() {
                anyhow::bail!("{} is not a data directory", path.display());
            }
            Box::new(crate::store::sled::SledStore::open(path)?)
        }
        Location::Redis(url) => {
            let marking = if create {
                crate::store::redis::Marking::New
            } else {
                crate::store::redis::Marking::Existing
            };
            Box::new(
                crate::store::redis::RedisStore::open_with(url, ca.map(PathBuf::as_path), marking)
                    .await?,
            )
        }
    })
}

pub fn run(args: &StoreArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("ripcord store: {error}");
            return ExitCode::FAILURE;
        }
    };
    let done = match &args.command {
        StoreCommand::Init { to, ca } => runtime.block_on(async {
            if let Location::Sled(_) = to {
                anyhow::bail!(
                    "`store init` is for Redis: a server creates its sled database itself"
                );
            }
            open(to, true, ca.as_ref())
                .await
                .map_err(|error| error.context(format!("opening {to:?}")))?;
            Ok(format!(
                "{to:?} holds a deployment: servers can start on it"
            ))
        }),
        StoreCommand::Copy { from, to, ca } => runtime.block_on(async {
            let source = open(from, false, ca.as_ref())
                .await
                .map_err(|error| error.context(format!("opening {from:?}")))?;
            let target = open(to, true, ca.as_ref())
                .await
                .map_err(|error| error.context(format!("opening {to:?}")))?;
            let dump = crate::store::copy::copy(source.as_ref(), target.as_ref()).await?;
            Ok(format!("copied {} from {from:?} to {to:?}", dump.summary()))
        }),
    };
    match done {
        Ok(said) => {
            println!("{said}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("ripcord store: {error:#}");
            ExitCode::FAILURE
        }
    }
}
