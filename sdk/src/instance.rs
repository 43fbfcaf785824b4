//! The instance id: who is asking, sent with every request so that the server can tell how
//! many running instances have fetched a revision (a kill's reach).
//!
//! Local mode uses one id per process unless told otherwise; remote mode keeps its id in
//! the cache file, so that an app installation keeps one id across starts.

use std::sync::OnceLock;

use crate::error::Error;

/// The gRPC metadata key and HTTP header (header names are case-insensitive).
pub(crate) const HEADER: &str = "x-ripcord-instance";

/// The server ignores longer ids.
const MAX_LENGTH: usize = 128;

/// A new random id: 32 hex digits.
pub(crate) fn generate() -> String {
    let mut random = [0u8; 16];
    // Without randomness (it never fails on the platforms Tokio runs on) the id still has
    // to be unique enough to count instances: time and process id stand in.
    if getrandom::fill(&mut random).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_nanos());
        random[..8].copy_from_slice(&(nanos as u64).to_le_bytes());
        random[8..12].copy_from_slice(&std::process::id().to_le_bytes());
    }
    hex::encode(random)
}

/// This process's id, generated at first use.
pub(crate) fn of_process() -> &'static str {
    static PROCESS: OnceLock<String> = OnceLock::new();
    PROCESS.get_or_init(generate)
}

/// An id the server will count: 1 to 128 printable ASCII characters.
pub(crate) fn check(id: &str) -> Result<(), Error> {
    let printable = id.bytes().all(|byte| (0x20..=0x7e).contains(&byte));
    if id.trim().is_empty() || id.len() > MAX_LENGTH || !printable {
        return Err(Error::InvalidInstanceId(id.chars().take(40).collect()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_valid_and_distinct_and_the_process_keeps_one() {
        let (a, b) = (generate(), generate());
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        check(&a).unwrap();
        assert_eq!(of_process(), of_process());
    }

    #[test]
    fn ids_the_server_would_ignore_are_refused() {
        check("web-1.eu").unwrap();
        check(&"x".repeat(128)).unwrap();
        for bad in ["", "  ", "é", "a\nb", &"x".repeat(129)] {
            assert!(
                matches!(check(bad), Err(Error::InvalidInstanceId(_))),
                "{bad:?}"
            );
        }
    }
}
