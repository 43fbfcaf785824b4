//! End-to-end tests of Ripcord.
//!
//! # Layout
//!
//! - `src/bin/server.rs`: the server binary, built with the tests so that they never run a
//!   stale build of it.
//! - `tests/e2e.rs`: the one test binary; its modules live in `tests/e2e/`, each opening with
//!   a line on what belongs there.
