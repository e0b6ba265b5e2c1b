//! How a queue chooses among the seats that may take a call: one function per strategy
//! (the names of Asterisk app_queue and FreeSWITCH mod_callcenter).
//!
//! Every function takes the *candidates* — seats that serve the queue, are offerable
//! ([`super::Seat::offerable`]), whose tier is open for this call and that have not failed
//! it in the current round — already reduced to the best (lowest) penalty, and returns the
//! index (into that slice) of the seat to offer. Ties are broken by the queue's configured
//! seat order ([`Candidate::member`]), so every choice is deterministic given the inputs.
//! Ring-all is not a choice of one seat: [`Strategy::RingAll`] offers every candidate of
//! the best penalty at once (see [`super::Acd`]).
//!
//! No function allocates: the ACD keeps one scratch vector of candidates.

use std::time::{Duration, Instant};

use serde::Deserialize;

/// A queue's seat-selection strategy (config `[[queues]] strategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// The seat idle the longest (default; app_queue `leastrecent` by idle time,
    /// mod_callcenter `longest-idle-agent`).
    #[default]
    LongestIdle,
    /// The next seat in the queue's seat order after the last one offered a call by this
    /// queue, wrapping round (app_queue `rrmemory`).
    RoundRobin,
    /// The seat that answered the fewest calls since start, counted across every queue
    /// the seat serves (app_queue `fewestcalls` counts per queue: a seat shared with a
    /// busy queue would then look idle to the other).
    FewestCalls,
    /// The seat with the least total talk time since start, across its queues
    /// (mod_callcenter `agent-with-least-talk-time`).
    LeastTalkTime,
    /// Every candidate at once; the first to answer takes the call, the others are
    /// withdrawn (app_queue `ringall`, mod_callcenter `ring-all`).
    RingAll,
    /// The first seat in the queue's seat order (app_queue `linear`, mod_callcenter
    /// `top-down`).
    Linear,
    /// A uniformly random candidate, from the ACD's seeded generator (app_queue `random`).
    Random,
}

impl Strategy {
    /// Every strategy, for documentation and tests.
    pub const ALL: [Strategy; 7] = [
        Strategy::LongestIdle,
        Strategy::RoundRobin,
        Strategy::FewestCalls,
        Strategy::LeastTalkTime,
        Strategy::RingAll,
        Strategy::Linear,
        Strategy::Random,
    ];

    /// The configuration name (`longest-idle`, `round-robin`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::LongestIdle => "longest-idle",
            Strategy::RoundRobin => "round-robin",
            Strategy::FewestCalls => "fewest-calls",
            Strategy::LeastTalkTime => "least-talk-time",
            Strategy::RingAll => "ring-all",
            Strategy::Linear => "linear",
            Strategy::Random => "random",
        }
    }
}

/// A seat that may take the call, with the figures the strategies compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    /// Position of the seat in the queue's seat order (0 = first configured).
    pub member: usize,
    /// The seat's index in the ACD.
    pub seat: usize,
    /// The seat's penalty for this queue (lower is preferred).
    pub penalty: u32,
    /// When the seat last became idle.
    pub idle_since: Instant,
    /// Calls the seat answered since start.
    pub answered: u64,
    /// The seat's total talk time since start.
    pub talk_time: Duration,
}

/// The smallest element by `key`, ties to the lowest `member`.
fn min_by_key<K: Ord>(c: &[Candidate], key: impl Fn(&Candidate) -> K) -> Option<usize> {
    c.iter()
        .enumerate()
        .min_by(|(_, a), (_, b)| key(a).cmp(&key(b)).then(a.member.cmp(&b.member)))
        .map(|(i, _)| i)
}

/// [`Strategy::LongestIdle`]: the earliest `idle_since`.
pub fn longest_idle(c: &[Candidate]) -> Option<usize> {
    min_by_key(c, |x| x.idle_since)
}

/// [`Strategy::RoundRobin`]: the first candidate whose `member` comes after `last` (the
/// member last offered a call by this queue), wrapping round; from the start when `None`.
pub fn round_robin(c: &[Candidate], last: Option<usize>) -> Option<usize> {
    let after = |x: &Candidate| match last {
        Some(l) if x.member > l => (0, x.member),
        Some(_) => (1, x.member),
        None => (0, x.member),
    };
    min_by_key(c, after)
}

/// [`Strategy::FewestCalls`]: the fewest answered calls, then the longest idle.
pub fn fewest_calls(c: &[Candidate]) -> Option<usize> {
    min_by_key(c, |x| (x.answered, x.idle_since))
}

/// [`Strategy::LeastTalkTime`]: the least total talk time, then the longest idle.
pub fn least_talk_time(c: &[Candidate]) -> Option<usize> {
    min_by_key(c, |x| (x.talk_time, x.idle_since))
}

/// [`Strategy::Linear`]: the first in the queue's seat order.
pub fn linear(c: &[Candidate]) -> Option<usize> {
    min_by_key(c, |x| x.member)
}

/// [`Strategy::Random`]: a uniformly random candidate drawn from `rng`.
pub fn random(c: &[Candidate], rng: &mut SplitMix64) -> Option<usize> {
    if c.is_empty() {
        return None;
    }
    let n = c.len() as u64;
    // Lemire's multiply-shift: unbiased enough for n ≤ a few hundred seats.
    let i = ((u128::from(rng.next_u64()) * u128::from(n)) >> 64) as usize;
    Some(i.min(c.len() - 1))
}

/// Keeps only the candidates of the lowest penalty (in place, order kept).
pub fn best_penalty(c: &mut Vec<Candidate>) {
    if let Some(best) = c.iter().map(|x| x.penalty).min() {
        c.retain(|x| x.penalty == best);
    }
}

/// Picks one seat by `strategy` among candidates already reduced by [`best_penalty`];
/// `None` when there is none. [`Strategy::RingAll`] picks the first in seat order here
/// (the ACD offers every candidate itself).
pub fn pick(
    strategy: Strategy,
    c: &[Candidate],
    rr_last: Option<usize>,
    rng: &mut SplitMix64,
) -> Option<usize> {
    match strategy {
        Strategy::LongestIdle => longest_idle(c),
        Strategy::RoundRobin => round_robin(c, rr_last),
        Strategy::FewestCalls => fewest_calls(c),
        Strategy::LeastTalkTime => least_talk_time(c),
        Strategy::RingAll | Strategy::Linear => linear(c),
        Strategy::Random => random(c, rng),
    }
}

/// SplitMix64 (Steele, Lea, Flood 2014): a tiny seeded generator, so the sans-IO ACD draws
/// the same seats for the same seed (tests) without a dependency on the clock.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator from a seed.
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cands(t0: Instant) -> Vec<Candidate> {
        // member, idle seconds after t0, answered, talk seconds, penalty
        [
            (0, 5, 3, 300, 0),
            (1, 2, 1, 500, 0),
            (2, 9, 1, 100, 0),
            (3, 0, 0, 0, 1),
        ]
        .iter()
        .map(|&(m, idle, answered, talk, penalty)| Candidate {
            member: m,
            seat: 10 + m,
            penalty,
            idle_since: t0 + Duration::from_secs(idle),
            answered,
            talk_time: Duration::from_secs(talk),
        })
        .collect()
    }

    #[test]
    fn best_penalty_drops_the_higher_tiers() {
        let mut c = cands(Instant::now());
        best_penalty(&mut c);
        assert_eq!(c.iter().map(|x| x.member).collect::<Vec<_>>(), [0, 1, 2]);
    }

    #[test]
    fn each_strategy_picks_its_seat() {
        let t0 = Instant::now();
        let mut c = cands(t0);
        best_penalty(&mut c);
        let member = |i: Option<usize>| i.and_then(|i| c.get(i)).map(|x| x.member);
        assert_eq!(member(longest_idle(&c)), Some(1));
        assert_eq!(
            member(fewest_calls(&c)),
            Some(1),
            "1 call, idle longer than 2"
        );
        assert_eq!(member(least_talk_time(&c)), Some(2));
        assert_eq!(member(linear(&c)), Some(0));
        assert_eq!(member(round_robin(&c, None)), Some(0));
        assert_eq!(member(round_robin(&c, Some(0))), Some(1));
        assert_eq!(member(round_robin(&c, Some(1))), Some(2));
        assert_eq!(member(round_robin(&c, Some(2))), Some(0), "wraps round");
        assert_eq!(member(round_robin(&c, Some(7))), Some(0));
        assert_eq!(longest_idle(&[]), None);
    }

    #[test]
    fn random_is_seeded_and_covers_every_candidate() {
        let c = cands(Instant::now());
        let draw = |seed| {
            let mut rng = SplitMix64::new(seed);
            (0..400)
                .filter_map(|_| random(&c, &mut rng))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
        let d = draw(7);
        for i in 0..c.len() {
            let n = d.iter().filter(|&&x| x == i).count();
            assert!((60..=140).contains(&n), "candidate {i} drawn {n}/400 times");
        }
    }

    #[test]
    fn strategy_names_parse_from_config() {
        #[derive(Deserialize)]
        struct W {
            s: Strategy,
        }
        for s in Strategy::ALL {
            let w: W = toml::from_str(&format!("s = {:?}", s.as_str())).unwrap();
            assert_eq!(w.s, s);
        }
        assert!(toml::from_str::<W>("s = \"fastest\"").is_err());
    }
}
