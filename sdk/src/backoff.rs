//! Retrying while the server stays away: both the ruleset stream of local mode and the
//! reporter of either mode wait this way between attempts.

use std::time::Duration;

/// Exponential backoff with "equal jitter": each delay is half the step plus a random part
/// of the other half, so that clients cut off together do not come back together, and no
/// delay is ever near zero.
pub(crate) struct Backoff {
    first: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    pub(crate) fn new(first: Duration, max: Duration) -> Backoff {
        Backoff {
            first,
            max,
            attempt: 0,
        }
    }

    pub(crate) fn reset(&mut self) {
        self.attempt = 0;
    }

    pub(crate) fn next_delay(&mut self) -> Duration {
        let step = self
            .first
            .saturating_mul(1u32 << self.attempt.min(20))
            .min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let half = step / 2;
        // Without randomness (it never fails on the platforms Tokio runs on), the delay is
        // still bounded, only not spread.
        let random = getrandom::u64().unwrap_or(u64::MAX / 2);
        let fraction = (random >> 11) as f64 / (1u64 << 53) as f64;
        half + half.mul_f64(fraction)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIRST: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(30);

    #[test]
    fn backoff_starts_fast_doubles_and_stays_under_the_cap() {
        let mut backoff = Backoff::new(FIRST, MAX);
        let delays: Vec<Duration> = (0..40).map(|_| backoff.next_delay()).collect();
        assert!(delays[0] >= Duration::from_millis(50) && delays[0] <= FIRST);
        assert!(delays[1] >= FIRST && delays[1] <= FIRST * 2);
        for delay in &delays {
            assert!(*delay <= MAX, "{delay:?}");
        }
        assert!(delays[39] >= MAX / 2, "the cap is reached and held");
        backoff.reset();
        assert!(backoff.next_delay() <= FIRST, "a reset starts fast again");
    }

    #[test]
    fn delays_are_spread() {
        let mut delays: Vec<Duration> = (0..20)
            .map(|_| Backoff::new(Duration::from_secs(10), MAX).next_delay())
            .collect();
        delays.dedup();
        assert!(delays.len() > 1, "twenty clients do not all wait the same");
    }
}
