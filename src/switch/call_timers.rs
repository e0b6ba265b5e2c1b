//! The switch's own per-call timers (an overflow target's timeout or a `play` step's
//! guard, and the next queue announcement), indexed by instant.
//!
//! Each call keeps its two instants in its own fields (`Call::deadline`,
//! `Call::next_announce`, read by the call logic); every change goes through
//! [`CallTimers::set`], which moves the call's entry in one ordered set. The switch's
//! `poll_timeout` is then the set's first entry and its `handle_timeout` visits only the
//! calls with a timer due, instead of a pass over every call on each wake-up and each
//! turn of the switch loop (issue 8).

use std::collections::BTreeSet;
use std::time::Instant;

use crate::acd::CallId;

/// Which of a call's timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) enum CallTimer {
    /// The current overflow target's timeout, or a `play` step's guard.
    Deadline,
    /// The next queue announcement.
    Announce,
}

/// A call whose timers are due: which of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct DueCall {
    /// The call.
    pub call: CallId,
    /// Its deadline is due.
    pub deadline: bool,
    /// Its next announcement is due.
    pub announce: bool,
}

/// Every set per-call timer, ordered by instant (then call, then timer).
#[derive(Debug, Default)]
pub(super) struct CallTimers {
    by_time: BTreeSet<(Instant, CallId, CallTimer)>,
}

impl CallTimers {
    /// Sets `call`'s timer `which`, stored in `slot` (the call's own field), to `at`
    /// (`None` clears it), moving its index entry. O(log timers).
    pub fn set(
        &mut self,
        call: CallId,
        which: CallTimer,
        slot: &mut Option<Instant>,
        at: Option<Instant>,
    ) {
        if *slot == at {
            return;
        }
        if let Some(old) = *slot {
            self.by_time.remove(&(old, call, which));
        }
        if let Some(new) = at {
            self.by_time.insert((new, call, which));
        }
        *slot = at;
    }

    /// Forgets both timers of a call that ended (`deadline` and `next_announce` are its
    /// fields' last values). O(log timers).
    pub fn remove(
        &mut self,
        call: CallId,
        deadline: Option<Instant>,
        next_announce: Option<Instant>,
    ) {
        if let Some(t) = deadline {
            self.by_time.remove(&(t, call, CallTimer::Deadline));
        }
        if let Some(t) = next_announce {
            self.by_time.remove(&(t, call, CallTimer::Announce));
        }
    }

    /// The earliest timer, if any. O(log timers).
    pub fn first(&self) -> Option<Instant> {
        self.by_time.first().map(|(t, _, _)| *t)
    }

    /// The calls with a timer at or before `now`, each once, in the order of their
    /// earliest due timer. O(due · log due); the entries stay until [`CallTimers::set`]
    /// moves or clears them.
    pub fn due(&self, now: Instant) -> Vec<DueCall> {
        let mut out: Vec<DueCall> = Vec::new();
        for &(_, call, which) in self.by_time.iter().take_while(|(t, _, _)| *t <= now) {
            let i = match out.iter().position(|d| d.call == call) {
                Some(i) => i,
                None => {
                    out.push(DueCall {
                        call,
                        deadline: false,
                        announce: false,
                    });
                    out.len() - 1
                }
            };
            if let Some(d) = out.get_mut(i) {
                match which {
                    CallTimer::Deadline => d.deadline = true,
                    CallTimer::Announce => d.announce = true,
                }
            }
        }
        out
    }

    /// Number of timers set (both kinds).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.by_time.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::time::Duration;
    use ulid::Ulid;

    #[test]
    fn set_moves_and_clears_the_entry() {
        let t0 = Instant::now();
        let mut t = CallTimers::default();
        let a = Ulid::from_parts(1, 1);
        let mut deadline = None;
        let mut announce = None;
        t.set(
            a,
            CallTimer::Deadline,
            &mut deadline,
            Some(t0 + Duration::from_secs(30)),
        );
        t.set(
            a,
            CallTimer::Announce,
            &mut announce,
            Some(t0 + Duration::from_secs(10)),
        );
        assert_eq!(t.first(), Some(t0 + Duration::from_secs(10)));
        assert_eq!(announce, Some(t0 + Duration::from_secs(10)));
        // Rescheduled later: the old instant no longer wakes anyone.
        t.set(
            a,
            CallTimer::Announce,
            &mut announce,
            Some(t0 + Duration::from_secs(40)),
        );
        assert_eq!(t.len(), 2);
        assert_eq!(t.first(), Some(t0 + Duration::from_secs(30)));
        assert!(t.due(t0 + Duration::from_secs(29)).is_empty());
        assert_eq!(
            t.due(t0 + Duration::from_secs(40)),
            vec![DueCall {
                call: a,
                deadline: true,
                announce: true
            }]
        );
        t.set(a, CallTimer::Deadline, &mut deadline, None);
        assert_eq!(deadline, None);
        assert_eq!(t.first(), Some(t0 + Duration::from_secs(40)));
        t.remove(a, deadline, announce);
        assert_eq!((t.len(), t.first()), (0, None));
    }

    /// Random sets, clears and removals of 40 calls against the fields themselves: the
    /// index's first entry and due calls always equal a pass over every call.
    #[test]
    fn the_index_matches_a_scan_of_every_call() {
        let t0 = Instant::now();
        let mut rng: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut t = CallTimers::default();
        let mut calls: HashMap<CallId, (Option<Instant>, Option<Instant>)> = HashMap::new();
        for step in 0..5000u64 {
            let call = Ulid::from_parts(0, u128::from(next() % 40));
            let at = (next() % 4 != 0).then(|| t0 + Duration::from_millis(next() % 10_000));
            if next() % 10 == 0 {
                if let Some((d, a)) = calls.remove(&call) {
                    t.remove(call, d, a);
                }
            } else {
                let e = calls.entry(call).or_default();
                if next() % 2 == 0 {
                    t.set(call, CallTimer::Deadline, &mut e.0, at);
                } else {
                    t.set(call, CallTimer::Announce, &mut e.1, at);
                }
            }
            let scan = calls.values().flat_map(|(d, a)| [*d, *a]).flatten().min();
            assert_eq!(t.first(), scan, "step {step}");
            let now = t0 + Duration::from_millis(next() % 10_000);
            let mut due = t.due(now);
            due.sort_by_key(|d| d.call);
            let mut want: Vec<DueCall> = calls
                .iter()
                .filter_map(|(id, (d, a))| {
                    let deadline = d.is_some_and(|d| d <= now);
                    let announce = a.is_some_and(|a| a <= now);
                    (deadline || announce).then_some(DueCall {
                        call: *id,
                        deadline,
                        announce,
                    })
                })
                .collect();
            want.sort_by_key(|d| d.call);
            assert_eq!(due, want, "step {step}");
        }
    }
}
