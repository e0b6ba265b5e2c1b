//! Capacity planning with Erlang C (M/M/N queue): how many seats a queue needs for a
//! service level, from the call rate and the average handling time (AHT).
//!
//! Offered traffic A = calls per second × AHT (in Erlangs). For N seats (N > A), the
//! probability that a call waits is Erlang C, computed from the Erlang B recursion
//! B(0) = 1, B(k) = A·B(k−1) / (k + A·B(k−1)), C = N·B / (N − A·(1 − B)), which stays
//! numerically stable for hundreds of seats. The service level (answered within T
//! seconds) is 1 − C·e^(−(N − A)·T / AHT), and the average speed of answer is
//! C·AHT / (N − A).

/// The figures of one staffing level.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Staffing {
    /// Seats staffed.
    pub seats: u32,
    /// Offered traffic, Erlangs.
    pub traffic_erlangs: f64,
    /// Seat occupancy, 0–1 (traffic / seats).
    pub occupancy: f64,
    /// Probability that a call waits at all (Erlang C), 0–1.
    pub p_wait: f64,
    /// Average speed of answer, seconds.
    pub asa_s: f64,
    /// Share of calls answered within the target time, 0–1.
    pub service_level: f64,
}

/// Offered traffic in Erlangs: `calls_per_hour` × `aht_s` / 3600.
pub fn traffic(calls_per_hour: f64, aht_s: f64) -> f64 {
    calls_per_hour * aht_s / 3600.0
}

/// Erlang C: the probability that a call waits, with `seats` seats and `traffic` Erlangs.
/// 1 when the seats cannot carry the traffic (`seats` ≤ `traffic`): the queue grows
/// without bound.
pub fn erlang_c(seats: u32, traffic: f64) -> f64 {
    let n = f64::from(seats);
    if n <= traffic || traffic <= 0.0 {
        return if traffic <= 0.0 { 0.0 } else { 1.0 };
    }
    let mut b = 1.0;
    for k in 1..=seats {
        b = traffic * b / (f64::from(k) + traffic * b);
    }
    n * b / (n - traffic * (1.0 - b))
}

/// The figures for `seats` seats at `calls_per_hour` calls of `aht_s` seconds on average,
/// with the service level measured at `target_s` seconds.
pub fn staffing(seats: u32, calls_per_hour: f64, aht_s: f64, target_s: f64) -> Staffing {
    let a = traffic(calls_per_hour, aht_s);
    let n = f64::from(seats);
    let p_wait = erlang_c(seats, a);
    let (asa_s, service_level) = if n > a && aht_s > 0.0 {
        (
            p_wait * aht_s / (n - a),
            1.0 - p_wait * (-(n - a) * target_s / aht_s).exp(),
        )
    } else {
        (f64::INFINITY, 0.0)
    };
    Staffing {
        seats,
        traffic_erlangs: a,
        occupancy: if n > 0.0 { (a / n).min(1.0) } else { 1.0 },
        p_wait,
        asa_s,
        service_level,
    }
}

/// The fewest seats whose service level reaches `target_ratio` (e.g. 0.90) at `target_s`
/// seconds; `None` if even `max_seats` do not.
pub fn seats_needed(
    calls_per_hour: f64,
    aht_s: f64,
    target_ratio: f64,
    target_s: f64,
    max_seats: u32,
) -> Option<u32> {
    (1..=max_seats)
        .find(|&n| staffing(n, calls_per_hour, aht_s, target_s).service_level >= target_ratio)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn textbook_two_erlangs_on_three_seats_wait_four_ninths() {
        assert!((erlang_c(3, 2.0) - 4.0 / 9.0).abs() < 1e-12);
    }

    #[test]
    fn saturated_and_idle_queues() {
        assert_eq!(erlang_c(2, 2.0), 1.0);
        assert_eq!(erlang_c(1, 3.0), 1.0);
        assert_eq!(erlang_c(5, 0.0), 0.0);
        let s = staffing(2, 360.0, 20.0, 15.0);
        assert_eq!(s.traffic_erlangs, 2.0);
        assert_eq!(s.service_level, 0.0);
        assert!(s.asa_s.is_infinite());
    }

    #[test]
    fn staffing_figures_follow_the_formulas() {
        // 360 calls an hour of 20 s = 2 Erlangs on 3 seats.
        let s = staffing(3, 360.0, 20.0, 15.0);
        let c = 4.0 / 9.0;
        assert!((s.p_wait - c).abs() < 1e-12);
        assert!((s.asa_s - c * 20.0).abs() < 1e-9);
        assert!((s.service_level - (1.0 - c * (-0.75f64).exp())).abs() < 1e-12);
        assert!((s.occupancy - 2.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn more_seats_never_worse_and_seats_needed_is_the_first_that_meets() {
        let mut last = 0.0;
        for n in 11..=40 {
            let sl = staffing(n, 300.0, 120.0, 15.0).service_level;
            assert!(sl >= last, "{n} seats: {sl} < {last}");
            last = sl;
        }
        let n = seats_needed(300.0, 120.0, 0.90, 15.0, 200).unwrap();
        assert!(staffing(n, 300.0, 120.0, 15.0).service_level >= 0.90);
        assert!(staffing(n - 1, 300.0, 120.0, 15.0).service_level < 0.90);
        assert_eq!(seats_needed(1e6, 120.0, 0.9, 15.0, 50), None);
    }

    #[test]
    fn hundreds_of_seats_stay_finite() {
        let s = staffing(500, 14_400.0, 100.0, 20.0);
        assert!(s.p_wait.is_finite() && (0.0..=1.0).contains(&s.p_wait));
        assert!(s.service_level > 0.99);
    }
}
