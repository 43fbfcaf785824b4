//! Memory that closed connections freed, given back to the operating system.
//!
//! glibc's malloc keeps what is freed in its arenas, one per thread that allocates, and
//! returns to the system only what sits at the top of the main heap. After a burst of
//! connections has closed — an attack on the gRPC port, thousands of event streams ending —
//! the process would stay tens of megabytes larger for good, although that memory is free.
//! Once connections have closed and no more have for a moment, `malloc_trim` releases the
//! free pages of every arena. It runs on a thread of its own, at most every few seconds, so
//! that neither the threads that answer requests nor a steady trickle of closes pay for it.

use std::sync::{Condvar, Mutex, OnceLock, PoisonError};
use std::time::Duration;

/// Closes since the last trim that make a trim worth it.
const CLOSES: u64 = 16;
/// How long no connection may have closed before the trim: the end of the burst.
const QUIET: Duration = Duration::from_millis(500);
/// The least time between two trims.
const SPACING: Duration = Duration::from_secs(5);

struct Trimmer {
    closes: Mutex<Closes>,
    wake: Condvar,
}

#[derive(Default)]
struct Closes {
    since_trim: u64,
    trims: u64,
}

fn trimmer() -> &'static Trimmer {
    static TRIMMER: OnceLock<Trimmer> = OnceLock::new();
    TRIMMER.get_or_init(|| {
        let spawned = std::thread::Builder::new()
            .name("ripcord-trim".to_string())
            .spawn(run);
        if let Err(error) = spawned {
            // Memory is then kept as malloc keeps it: nothing else depends on the thread.
            tracing::warn!(%error, "no thread to give freed memory back to the system");
        }
        Trimmer {
            closes: Mutex::default(),
            wake: Condvar::new(),
        }
    })
}

/// A connection closed: what it held may be given back once the burst it belongs to ends.
pub fn connection_closed() {
    let trimmer = trimmer();
    let mut closes = trimmer
        .closes
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    closes.since_trim += 1;
    if closes.since_trim >= CLOSES {
        trimmer.wake.notify_one();
    }
}

/// How many times freed memory was given back, for tests.
pub fn trims() -> u64 {
    trimmer()
        .closes
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .trims
}

fn run() {
    let trimmer = trimmer();
    let mut closes = trimmer
        .closes
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    loop {
        while closes.since_trim < CLOSES {
            closes = trimmer
                .wake
                .wait(closes)
                .unwrap_or_else(PoisonError::into_inner);
        }
        // Wait for the burst to end: connections still closing hold memory still to free.
        loop {
            let seen = closes.since_trim;
            closes = trimmer
                .wake
                .wait_timeout(closes, QUIET)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
            if closes.since_trim == seen {
                break;
            }
        }
        closes.since_trim = 0;
        drop(closes);
        trim();
        trimmer
            .closes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .trims += 1;
        std::thread::sleep(SPACING);
        closes = trimmer
            .closes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[expect(
    unsafe_code,
    reason = "malloc_trim is a C function; it has no safe binding"
)]
fn trim() {
    // SAFETY: malloc_trim takes no pointer and only walks malloc's own arenas, under their
    // locks; it is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[test]
    fn a_burst_of_closed_connections_is_followed_by_one_trim() {
        let before = trims();
        for _ in 0..CLOSES {
            connection_closed();
        }
        let deadline = Instant::now() + QUIET + SPACING + Duration::from_secs(5);
        while trims() == before {
            assert!(Instant::now() < deadline, "no trim after a burst of closes");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
