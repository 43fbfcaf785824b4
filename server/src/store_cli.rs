//! `ripcord store copy`: copies everything one store holds into another, empty one, such as
//! a single node's sled database into the Redis that several nodes will share.

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
                formatter.write_str(&crate::config::StoreChoice::Redis(url.clone()).describe())
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
            let ca = match ca {
                Some(path) => Some(std::fs::read(path).map_err(|error| {
                    anyhow::anyhow!("reading the CA certificate {}: {error}", path.display())
                })?),
                None => None,
            };
            Box::new(crate::store::redis::RedisStore::open_trusting(url, ca).await?)
        }
    })
}

pub fn run(args: &StoreArgs) -> ExitCode {
    let StoreCommand::Copy { from, to, ca } = &args.command;
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("ripcord store copy: {error}");
            return ExitCode::FAILURE;
        }
    };
    let copied = runtime.block_on(async {
        let source = open(from, false, ca.as_ref())
            .await
            .map_err(|error| error.context(format!("opening {from:?}")))?;
        let target = open(to, true, ca.as_ref())
            .await
            .map_err(|error| error.context(format!("opening {to:?}")))?;
        let dump = crate::store::copy::copy(source.as_ref(), target.as_ref()).await?;
        anyhow::Ok(dump)
    });
    match copied {
        Ok(dump) => {
            println!("copied {} from {from:?} to {to:?}", dump.summary());
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("ripcord store copy: {error:#}");
            ExitCode::FAILURE
        }
    }
}
