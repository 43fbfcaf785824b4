//! The end-to-end tests: one binary that starts real `ripcord` processes on port 0 and
//! checks what their users would notice. Run with `cargo test -p ripcord-tests`.
//!
//! - [`harness`]: starting, signalling and restarting servers; HTTP helpers.
//! - [`evaluation`]: OFREP as applications see it.
//! - [`abuse`]: clients that hold streams or bodies open: gRPC calls without a key or a
//!   body, HTTP bodies that stall.
//! - [`admin`]: the admin API, keys and authorization, and what the server refuses.
//! - [`console`]: what the web console asks of the server: reasons in the audit log, the
//!   explanation of every flag's evaluation, the live event stream, a ramp's look history,
//!   an import's dry run.
//! - [`console_flag`]: the console's flag page in a real Chromium: an edit refused with each
//!   problem beside its field, the kill switch with a reason and back on, the playground.
//! - [`console_ui`]: the web console at `/admin` in a real Chromium: sign-in, the flags
//!   list, flag data shown as text, a kill appearing live; and the committed bundle checked
//!   against its TypeScript sources.
//! - [`console_ramp`]: the console's ramp section and incidents in a real Chromium: a ramp
//!   killed by its guard seen on the flag page and as an incident; the ramp buttons.
//! - [`console_admin`]: the console's Keys, Audit log and Environments screens in Chromium,
//!   and a flags list of ten thousand flags with ramp badges; the ramp summaries it reads.
//! - [`console_document`]: the console's Document screen (an import's dry run, its
//!   problems at their paths, applying it) and Judge screen, in a real Chromium.
//! - [`console_fixes`]: the console in Chromium keeping its footing: focus kept through
//!   live redraws, late reads of the flags never undoing newer ones, ramp badges kept when
//!   the ramps cannot be read, bursts of changes read once they settle, guard tiles named by their own metric, a malformed address
//!   answered as no such page, and signing out stopping the screen's reads.
//! - [`crash`]: SIGKILL again and again under writes of every kind; nothing acknowledged is
//!   lost.
//! - [`delivery`]: rulesets and event streams for SDKs, and OFREP's event stream.
//! - [`drain`]: SIGTERM under load: requests racing it are answered or cleanly refused.
//! - [`disk_full`]: a full disk on a small tmpfs the test mounts (as root): writes refused
//!   promptly, evaluation, health and metrics unharmed, recovery once space is freed.
//! - [`grpc`]: `ripcord.v1`, flagd's evaluation services, health and reflection over gRPC.
//! - [`hostile`]: large and hostile inputs: imports that take seconds to read, documents
//!   nested too deeply, concurrent judge requests, malformed protobuf.
//! - [`judge`]: `POST /api/v1/judge` and `ripcord judge` on the scipy fixtures; bad input,
//!   limits, the report and the exit statuses.
//! - [`lifecycle`]: restarts, crashes, signals, first start and configuration.
//! - [`observations`]: metric reporting over HTTP and gRPC: keys, batch shape, limits.
//! - [`openapi`]: the served OpenAPI document checked against the running server by
//!   schemathesis.
//! - [`ramps`]: ramps walked by the controller on observations posted over HTTP: kills,
//!   incidents, webhooks, restarts, manual controls.
//! - [`scale_out`]: several nodes on one real `redis-server` ([`redis`] starts it): writes
//!   and keys on one node honoured on the others, an SDK on one node hearing of a kill made
//!   on another, nodes or Redis killed without losing an acknowledged write, Redis gone,
//!   hanging and back, Redis emptied and restored from a node, a bootstrap document
//!   imported once.
//! - [`scale_out_ramps`]: ramps on several nodes: observations through every node judged
//!   together, the lease holder killed and the ripcord pulled once by another node.
//! - [`sdk`]: the Rust SDK against real servers, both modes, and its examples.
//! - [`tls`]: both ports over TLS with a certificate the test makes; bad files at start.
//! - [`srm`]: an A/A ramp whose treatment loses a fifth of its reports pauses on the
//!   sample-ratio check and never completes; one on long sessions, judged on its distinct
//!   units, goes on.
//! - [`streams`]: streams at one revision send the same bytes; an idle stream's memory does
//!   not grow with the ruleset.
//! - [`sdk_tracking`]: guard metrics tracked by the SDK, reported to a started ramp; instance
//!   ids.

#[path = "e2e/harness.rs"]
mod harness;

#[path = "e2e/abuse.rs"]
mod abuse;
#[path = "e2e/admin.rs"]
mod admin;
#[path = "e2e/browser.rs"]
mod browser;
#[path = "e2e/console.rs"]
mod console;
#[path = "e2e/console_admin.rs"]
mod console_admin;
#[path = "e2e/console_document.rs"]
mod console_document;
#[path = "e2e/console_fixes.rs"]
mod console_fixes;
#[path = "e2e/console_flag.rs"]
mod console_flag;
#[path = "e2e/console_ramp.rs"]
mod console_ramp;
#[path = "e2e/console_ui.rs"]
mod console_ui;
#[path = "e2e/crash.rs"]
mod crash;
#[path = "e2e/delivery.rs"]
mod delivery;
#[path = "e2e/disk_full.rs"]
mod disk_full;
#[path = "e2e/drain.rs"]
mod drain;
#[path = "e2e/evaluation.rs"]
mod evaluation;
#[path = "e2e/grpc.rs"]
mod grpc;
#[path = "e2e/hostile.rs"]
mod hostile;
#[path = "e2e/judge.rs"]
mod judge;
#[path = "e2e/lifecycle.rs"]
mod lifecycle;
#[path = "e2e/observations.rs"]
mod observations;
#[path = "e2e/openapi.rs"]
mod openapi;
#[path = "e2e/ramps.rs"]
mod ramps;
#[path = "e2e/redis.rs"]
mod redis;
#[path = "e2e/scale_out.rs"]
mod scale_out;
#[path = "e2e/scale_out_ramps.rs"]
mod scale_out_ramps;
#[path = "e2e/sdk.rs"]
mod sdk;
#[path = "e2e/sdk_tracking.rs"]
mod sdk_tracking;
#[path = "e2e/srm.rs"]
mod srm;
#[path = "e2e/streams.rs"]
mod streams;
#[path = "e2e/tls.rs"]
mod tls;
