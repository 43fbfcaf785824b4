//! The Ripcord SDK: feature flags for Rust services and apps.
//!
//! # Layout
//!
//! - [`LocalClient`] (`local`): for backends. Holds the environment's ruleset, evaluates
//!   with `ripcord-engine` in-process, follows changes over gRPC `Watch` (`follow`), can
//!   start from a bootstrap document.
//! - [`RemoteClient`] (`remote`): for apps that phone home. One OFREP bulk evaluation for
//!   the app's context, kept in a cache file so the next start serves at once, offline too.
//! - [`RipcordProvider`] (`provider`): an OpenFeature provider over either client.
//! - [`Details`], [`Reason`], [`ErrorCode`] (`details`): what a typed getter answers.
//! - [`Error`] (`error`): everything else that can go wrong.
//!
//! Getters never fail: on any error (flag missing, wrong type, no flags yet) they answer
//! the caller's default, and their `_details` form says why.

mod details;
mod error;
mod follow;
mod local;
mod provider;
mod remote;

pub use details::{Details, ErrorCode, FlagMetadata, FlagValue, Reason};
pub use error::Error;
pub use local::{
    Change, Changes, FlagChange, FlagChanges, LocalClient, LocalClientBuilder, LocalStatus,
};
pub use provider::{context_from_openfeature, RipcordProvider};
pub use remote::{Refreshed, RemoteClient, RemoteClientBuilder, RemoteStatus, Source};
pub use ripcord_engine::Context;
