//! Ripcord: a few spare I/O buffers per thread.
//!
//! A connection gives its read and write buffers back whenever it has nothing in them, so
//! that an idle connection holds none. A busy connection empties them many times a second;
//! a handful of spares on each thread lets it take one back without going to the allocator
//! (for a block this size glibc's malloc first consolidates its small free lists, which
//! showed as 3% of a busy gRPC server's time). Read and write buffers are kept apart, so
//! that each is handed a buffer of its own size. What the spares hold is bounded per
//! thread: at most `SPARES` buffers of each kind, none larger than `LARGEST`.

use bytes::BytesMut;
use std::cell::RefCell;

/// Buffers of each kind kept per thread.
const SPARES: usize = 8;

/// A buffer that grew past this (for an unusually large frame) is freed, not kept.
const LARGEST: usize = 64 * 1024;

/// Which buffers a spare is for.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Kind {
    Read,
    Write,
}

impl Kind {
    /// The room a buffer of this kind starts with, and the least a spare of it keeps: for
    /// reads tokio-util's own initial capacity, for writes h2's.
    fn capacity(self) -> usize {
        match self {
            Kind::Read => 8 * 1024,
            Kind::Write => super::framed_write::DEFAULT_BUFFER_CAPACITY,
        }
    }
}

thread_local! {
    static READ: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
    static WRITE: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
}

fn with_spares<R>(kind: Kind, f: impl FnOnce(&mut Vec<BytesMut>) -> R) -> Option<R> {
    let pool = match kind {
        Kind::Read => &READ,
        Kind::Write => &WRITE,
    };
    // During the thread's teardown the spares may be gone: then nothing is kept.
    pool.try_with(|spares| f(&mut spares.borrow_mut())).ok()
}

/// An empty buffer of this kind: one of this thread's spares if there is one, or a new one.
/// Every spare has at least the kind's room (`give` keeps no smaller one).
pub(crate) fn take(kind: Kind) -> BytesMut {
    with_spares(kind, |spares| spares.pop())
        .flatten()
        .unwrap_or_else(|| BytesMut::with_capacity(kind.capacity()))
}

/// Keeps an emptied buffer for a later `take` of that kind on this thread, or frees it. The
/// caller has made sure that nothing else shares its memory.
pub(crate) fn give(kind: Kind, mut buf: BytesMut) {
    buf.clear();
    if buf.capacity() < kind.capacity() || buf.capacity() > LARGEST {
        return;
    }
    with_spares(kind, |spares| {
        if spares.len() < SPARES {
            spares.push(buf);
        }
    });
}
