//! Capped exponential backoff with jitter, as a pure function.
//!
//! Owns: the arithmetic only. The caller supplies the attempt number and the random
//! draw, so every delay is reproducible in tests.

use std::time::Duration;

/// Restart delays: `initial * 2^attempt`, capped at `max`, scaled by a jitter
/// factor in `[0.5, 1.0]` so streams that failed together do not retry together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Backoff {
    /// The delay before retry number `attempt` (0 = first retry), for a uniform
    /// random draw `jitter` in `[0, 1)`.
    pub fn delay(&self, attempt: u32, jitter: f64) -> Duration {
        // 2^20 times any sane initial delay is beyond every sane cap.
        let factor = 1u32 << attempt.min(20);
        let raw = self.initial.saturating_mul(factor).min(self.max);
        let jitter = if jitter.is_finite() {
            jitter.clamp(0.0, 1.0)
        } else {
            1.0
        };
        raw.mul_f64(0.5 + 0.5 * jitter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: Backoff = Backoff {
        initial: Duration::from_secs(1),
        max: Duration::from_secs(60),
    };

    #[test]
    fn table() {
        let ms = |a, j| B.delay(a, j).as_millis();
        let cases: &[(u32, f64, u128)] = &[
            (0, 0.0, 500),
            (0, 0.999_999, 999),
            (1, 0.0, 1000),
            (1, 1.0, 2000),
            (3, 1.0, 8000),
            (5, 1.0, 32_000),
            (6, 1.0, 60_000),
            (6, 0.0, 30_000),
            (30, 1.0, 60_000),
            (u32::MAX, 1.0, 60_000),
            (2, f64::NAN, 4000),
            (2, -3.0, 2000),
        ];
        for &(attempt, jitter, want) in cases {
            assert_eq!(
                ms(attempt, jitter),
                want,
                "attempt {attempt} jitter {jitter}"
            );
        }
    }

    #[test]
    fn first_retry_is_within_one_second_and_never_exceeds_cap() {
        for i in 0..1000 {
            let j = f64::from(i) / 1000.0;
            assert!(B.delay(0, j) <= Duration::from_secs(1));
            for a in 0..40 {
                assert!(B.delay(a, j) <= B.max);
            }
        }
    }
}
