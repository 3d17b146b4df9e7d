//! How long to wait before the next attempt to reach the broker: exponential from 100 ms to
//! 30 s, with "full jitter" (a random wait up to the step, as AWS's architecture blog
//! recommends) so that a fleet of replicas that lost the broker together does not knock on
//! it together when it comes back.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

const FIRST: Duration = Duration::from_millis(100);
const CEILING: Duration = Duration::from_secs(30);

/// The waits between failed attempts; `reset` after a success.
#[derive(Debug, Default)]
pub struct Backoff {
    failures: u32,
}

impl Backoff {
    /// The wait before the next attempt, after one more failure.
    pub fn next_wait(&mut self) -> Duration {
        let step = self.ceiling();
        self.failures = self.failures.saturating_add(1);
        // Never zero: a broker refusing at once must not be hammered in a loop.
        step.mul_f64(jitter()).max(FIRST / 2)
    }

    /// The largest wait the current failure count allows.
    fn ceiling(&self) -> Duration {
        FIRST.saturating_mul(2u32.saturating_pow(self.failures.min(16))).min(CEILING)
    }

    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

/// A fraction in [0, 1) from the clock's nanoseconds: spread enough for jitter, and no
/// random-number crate for one number.
fn jitter() -> f64 {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    // Mix the bits: consecutive calls a few nanoseconds apart still land far apart.
    let mixed = u64::from(nanos).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11;
    mixed as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_grow_to_the_ceiling_and_start_over_after_a_success() {
        let mut backoff = Backoff::default();
        let mut ceilings = Vec::new();
        for _ in 0..12 {
            ceilings.push(backoff.ceiling());
            let wait = backoff.next_wait();
            assert!(wait >= FIRST / 2 && wait <= CEILING, "{wait:?}");
        }
        assert_eq!(ceilings[0], Duration::from_millis(100));
        assert_eq!(ceilings[3], Duration::from_millis(800));
        assert_eq!(*ceilings.last().unwrap(), CEILING);
        assert!(ceilings.windows(2).all(|pair| pair[0] <= pair[1]));
        backoff.reset();
        assert_eq!(backoff.ceiling(), FIRST);
    }

    #[test]
    fn jitter_is_a_fraction_and_varies() {
        let draws: Vec<f64> = (0..64).map(|_| jitter()).collect();
        assert!(draws.iter().all(|j| (0.0..1.0).contains(j)));
        let distinct = draws.iter().map(|j| (j * 1000.0) as u32).collect::<std::collections::HashSet<_>>();
        assert!(distinct.len() > 8, "{distinct:?}");
    }
}
