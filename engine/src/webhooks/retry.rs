//! When a delivery is tried again: after each failed attempt, a delay that
//! doubles from `first_delay_ms` up to `max_delay_ms`; once the next
//! attempt would start more than `retry_for_ms` after the first, the
//! event's delivery is given up (recorded as failed) and delivery moves on.
//!
//! Owns the settings and that arithmetic. It must never sleep or read a
//! clock: the runtime passes the times in.

/// How deliveries are tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebhookOptions {
    /// How long after its first attempt an event is still tried.
    pub retry_for_ms: u64,
    /// The delay after the first failed attempt.
    pub first_delay_ms: u64,
    /// The longest delay between two attempts.
    pub max_delay_ms: u64,
    /// How long one attempt may take, connection to response.
    pub timeout_ms: u64,
}

/// The default of [`WebhookOptions::retry_for_ms`]: an hour.
pub const RETRY_FOR_MS_DEFAULT: u64 = 60 * 60 * 1_000;
/// The default of [`WebhookOptions::first_delay_ms`]: a second.
pub const FIRST_DELAY_MS_DEFAULT: u64 = 1_000;
/// The default of [`WebhookOptions::max_delay_ms`]: five minutes.
pub const MAX_DELAY_MS_DEFAULT: u64 = 5 * 60 * 1_000;
/// The default of [`WebhookOptions::timeout_ms`]: ten seconds.
pub const TIMEOUT_MS_DEFAULT: u64 = 10_000;

impl Default for WebhookOptions {
    fn default() -> Self {
        WebhookOptions {
            retry_for_ms: RETRY_FOR_MS_DEFAULT,
            first_delay_ms: FIRST_DELAY_MS_DEFAULT,
            max_delay_ms: MAX_DELAY_MS_DEFAULT,
            timeout_ms: TIMEOUT_MS_DEFAULT,
        }
    }
}

impl WebhookOptions {
    /// The delay after failed attempt number `failed` (1 for the first).
    pub fn delay_after(&self, failed: u32) -> u64 {
        let doublings = failed.saturating_sub(1).min(63);
        self.first_delay_ms
            .max(1)
            .saturating_mul(1u64 << doublings)
            .min(self.max_delay_ms.max(1))
    }

    /// When to try again after failed attempt number `failed`, the first
    /// having started at `first_ms` and this one ended at `now_ms`; `None`
    /// when the event is given up.
    pub fn next_attempt_ms(&self, first_ms: u64, now_ms: u64, failed: u32) -> Option<u64> {
        let at = now_ms.saturating_add(self.delay_after(failed));
        (at <= first_ms.saturating_add(self.retry_for_ms)).then_some(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_and_stop_after_the_bound() {
        let o = WebhookOptions::default();
        let delays: Vec<u64> = (1..=12).map(|n| o.delay_after(n)).collect();
        assert_eq!(
            delays,
            [
                1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 64_000, 128_000, 256_000, 300_000,
                300_000, 300_000
            ]
        );
        assert_eq!(o.delay_after(u32::MAX), 300_000);
        assert_eq!(o.next_attempt_ms(0, 0, 1), Some(1_000));
        assert_eq!(o.next_attempt_ms(0, 3_599_000, 20), None);
        assert_eq!(o.next_attempt_ms(0, 3_300_000, 20), Some(3_600_000));
        // Tried for an hour: 20 attempts.
        let (mut now, mut attempts) = (0, 1);
        while let Some(at) = o.next_attempt_ms(0, now, attempts) {
            now = at;
            attempts += 1;
        }
        assert_eq!(attempts, 20);
    }
}
