//! Expected wait time (EWT) of a waiting caller, from the queue's own recent statistics, for
//! queue announcements ("Temps d'attente estimé : 2 minutes"). Sans-IO: durations are
//! passed in, nothing reads a clock.
//!
//! # Method
//! `EWT = position × AHT / seats on duty`, where AHT (average handle time: talk plus
//! wrap-up, the time a seat is kept by one call) is an exponentially weighted moving
//! average of the queue's recent answered calls (weight [`WaitEstimator::ALPHA`] for the
//! newest, as Asterisk app_queue weighs its hold time 1/4).
//!
//! Why this and not an average of recent answer waits (app_queue's `holdtime`): an
//! average wait is the same number for the first and the tenth caller in line, and it lags
//! behind the staffing by several calls. With every seat busy, seats free up at about
//! `seats / AHT` per second (each call's remaining time is taken as one AHT), so the caller
//! at position `p` is reached after about `p × AHT / seats`: it grows with the caller's own
//! place and changes at once when seats log in or go on break. It is an estimate for the
//! caller's ear, rounded up to whole minutes ([`announced_minutes`]), not a promise.
//!
//! Unknown (`None`) while the queue has no answered call yet or no seat on duty: the
//! announcement then says the position only.

use std::time::Duration;

/// Exponentially weighted average handle time of one queue, and the wait estimate it
/// gives.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct WaitEstimator {
    /// Average handle time in seconds; `None` before the first sample.
    aht_s: Option<f64>,
    /// Samples recorded (saturating).
    samples: u64,
}

impl WaitEstimator {
    /// Weight of the newest handle time in the moving average (0 < α ≤ 1).
    pub const ALPHA: f64 = 0.25;

    /// An estimator with no history (every estimate unknown).
    pub fn new() -> WaitEstimator {
        WaitEstimator::default()
    }

    /// One answered call ended after keeping its seat `handle` long (talk time plus the
    /// seat's wrap-up).
    pub fn record_handle_time(&mut self, handle: Duration) {
        let x = handle.as_secs_f64();
        self.aht_s = Some(match self.aht_s {
            None => x,
            Some(avg) => avg + Self::ALPHA * (x - avg),
        });
        self.samples = self.samples.saturating_add(1);
    }

    /// Handle times recorded so far.
    pub fn samples(&self) -> u64 {
        self.samples
    }

    /// The average handle time (talk plus wrap-up), `None` with no history.
    pub fn mean_handle_time(&self) -> Option<Duration> {
        self.aht_s.and_then(|s| Duration::try_from_secs_f64(s).ok())
    }

    /// Expected wait of the caller at `position` (1-based, [`crate::acd::Acd::position`])
    /// with `seats_on_duty` seats logged in and not on break: `position × AHT / seats`.
    /// `None` with no history, no seat on duty, or position 0.
    pub fn estimate(&self, position: usize, seats_on_duty: usize) -> Option<Duration> {
        let aht = self.aht_s?;
        if position == 0 || seats_on_duty == 0 {
            return None;
        }
        Duration::try_from_secs_f64(position as f64 * aht / seats_on_duty as f64).ok()
    }
}

/// The whole minutes announced for an expected wait: rounded up, at least 1 (a caller
/// told "0 minutes" who then waits 40 s hears a broken promise).
pub fn announced_minutes(ewt: Duration) -> u64 {
    ewt.as_secs().div_ceil(60).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn unknown_without_history_or_seats() {
        let mut e = WaitEstimator::new();
        assert_eq!(e.estimate(3, 20), None);
        assert_eq!(e.mean_handle_time(), None);
        e.record_handle_time(s(120));
        assert_eq!(e.estimate(3, 0), None);
        assert_eq!(e.estimate(0, 5), None);
        assert_eq!(e.samples(), 1);
    }

    #[test]
    fn first_sample_is_the_average_then_weighted_by_alpha() {
        let mut e = WaitEstimator::new();
        e.record_handle_time(s(120));
        assert_eq!(e.mean_handle_time(), Some(s(120)));
        // 120 + 0.25 × (200 − 120) = 140.
        e.record_handle_time(s(200));
        assert_eq!(e.mean_handle_time(), Some(s(140)));
        // 140 + 0.25 × (20 − 140) = 110.
        e.record_handle_time(s(20));
        assert_eq!(e.mean_handle_time(), Some(s(110)));
        // A steady load converges to it.
        for _ in 0..100 {
            e.record_handle_time(s(60));
        }
        let aht = e.mean_handle_time().unwrap().as_secs_f64();
        assert!((aht - 60.0).abs() < 0.01, "{aht}");
    }

    #[test]
    fn estimate_is_position_times_aht_over_seats() {
        let mut e = WaitEstimator::new();
        e.record_handle_time(s(80));
        // 3rd in line, 2 seats: 3 × 80 / 2 = 120 s.
        assert_eq!(e.estimate(3, 2), Some(s(120)));
        // One seat more: 80 s; the first in line with 20 seats: 4 s.
        assert_eq!(e.estimate(3, 3), Some(s(80)));
        assert_eq!(e.estimate(1, 20), Some(s(4)));
    }

    #[test]
    fn announced_minutes_round_up_with_a_floor_of_one() {
        assert_eq!(announced_minutes(s(0)), 1);
        assert_eq!(announced_minutes(s(4)), 1);
        assert_eq!(announced_minutes(s(60)), 1);
        assert_eq!(announced_minutes(s(61)), 2);
        assert_eq!(announced_minutes(s(120)), 2);
        assert_eq!(announced_minutes(s(1199)), 20);
    }
}
