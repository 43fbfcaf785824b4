//! The Ripcord SDK: feature flags for Rust services and apps.
//!
//! # Layout
//!
//! - [`LocalClient`] (`local`): for backends. Holds the environment's ruleset (`store`),
//!   evaluates with `ripcord-engine` in-process, follows changes over gRPC `Watch`
//!   (`follow`), can start from a bootstrap document.
//! - [`RemoteClient`] (`remote`): for apps that phone home. One OFREP bulk evaluation for
//!   the app's context, kept in a cache file so the next start serves at once, offline too.
//! - [`RipcordProvider`] (`provider`): an OpenFeature provider over either client.
//! - Tracking for the guards of ramps: `track` on either client tags an event with the
//!   unit's last cohort and stage and aggregates it per unit per flush window (`tracking`,
//!   giving [`Tracked`] and [`TrackingStatus`]); the reporter sends the batches over gRPC
//!   `Report` or `POST /api/v1/metrics` (`report`).
//! - `backoff`: how the follower and the reporter wait while the server is away.
//! - `instance`: the id both modes send with every request, for a kill's reach.
//! - [`Details`], [`Reason`], [`ErrorCode`] (`details`): what a typed getter answers.
//! - [`Error`] (`error`): everything else that can go wrong.
//!
//! Modules import each other one way only: the clients (`local`, `remote`) sit on
//! `follow`, `store`, `report` and `tracking`, which sit on `backoff`, `instance`,
//! `details` and `error`; `provider` sits on the clients.
//!
//! Getters never fail: on any error (flag missing, wrong type, no flags yet) they answer
//! the caller's default, and their `_details` form says why.

mod backoff;
mod details;
mod error;
mod follow;
mod instance;
mod local;
mod provider;
mod remote;
mod report;
mod store;
mod tracking;
#[cfg(test)]
mod tracking_tests;

pub use details::{cache_key, Details, ErrorCode, FlagMetadata, FlagValue, Reason};
pub use error::Error;
pub use local::{
    Change, Changes, FlagChange, FlagChanges, LocalClient, LocalClientBuilder, LocalStatus,
};
pub use provider::{context_from_openfeature, RipcordProvider};
pub use remote::{Refreshed, RemoteClient, RemoteClientBuilder, RemoteStatus, Source};
pub use ripcord_engine::{Context, Stage};
pub use tracking::{Tracked, TrackingStatus};

#[cfg(test)]
mod tls_tests {
    //! Both modes speak TLS to an `https` URL. A listener that is not a TLS server is enough
    //! to see it: the first bytes a TLS client sends are a handshake record (type 22,
    //! version 3.x), where a plain client would send HTTP/2's preface or an HTTP request.

    use std::time::Duration;

    use tokio::io::AsyncReadExt as _;
    use tokio::net::TcpListener;

    async fn first_bytes(listener: &TcpListener) -> [u8; 2] {
        let (mut connection, _) = tokio::time::timeout(Duration::from_secs(10), listener.accept())
            .await
            .expect("the client connects")
            .unwrap();
        let mut bytes = [0u8; 2];
        connection.read_exact(&mut bytes).await.unwrap();
        bytes
    }

    const TLS_HANDSHAKE: [u8; 2] = [0x16, 0x03];

    #[tokio::test]
    async fn local_mode_speaks_tls_to_an_https_server() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("https://{}", listener.local_addr().unwrap());
        let _client = crate::local::LocalClient::connect(url, "ripcord-server-key").unwrap();
        assert_eq!(first_bytes(&listener).await, TLS_HANDSHAKE);
    }

    #[tokio::test]
    async fn remote_mode_speaks_tls_to_an_https_server() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("https://{}", listener.local_addr().unwrap());
        let _client = crate::remote::RemoteClient::builder(url, "ripcord-client-key")
            .build()
            .unwrap();
        assert_eq!(first_bytes(&listener).await, TLS_HANDSHAKE);
    }
}
