//! Ripcord: a few spare I/O buffers per thread.
//!
//! A connection gives its read and write buffers back whenever it has nothing in them, so
//! that an idle connection holds none. A busy connection empties them many times a second;
//! a handful of spares on each thread lets it take one back without going to the allocator
//! (for a block this size glibc's malloc first consolidates its small free lists, which
//! showed as 3% of a busy gRPC server's time), while the memory they hold stays bounded by
//! the number of threads, not of connections.

use bytes::BytesMut;
use std::cell::RefCell;

/// Buffers kept per thread.
const SPARES: usize = 8;

/// Smaller buffers are not worth keeping: every buffer taken is at least this large.
const SMALLEST: usize = 8 * 1024;

thread_local! {
    static SPARE: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
}

/// An empty buffer with room for at least `capacity` bytes: one of this thread's spares if
/// one is large enough, or a new one.
pub(crate) fn take(capacity: usize) -> BytesMut {
    SPARE
        .try_with(|spare| {
            let mut spare = spare.borrow_mut();
            let found = spare.iter().rposition(|buf| buf.capacity() >= capacity);
            found.map(|index| spare.swap_remove(index))
        })
        .ok()
        .flatten()
        .unwrap_or_else(|| BytesMut::with_capacity(capacity.max(SMALLEST)))
}

/// Keeps an emptied buffer for a later `take` on this thread, or frees it when the thread
/// already keeps enough of them. The caller has made sure nothing else shares it.
pub(crate) fn give(mut buf: BytesMut) {
    buf.clear();
    if buf.capacity() < SMALLEST {
        return;
    }
    let _ = SPARE.try_with(|spare| {
        let mut spare = spare.borrow_mut();
        if spare.len() < SPARES {
            spare.push(buf);
        }
    });
}
