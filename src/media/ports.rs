//! The pool of relay ports: even RTP ports with RTCP on the next odd port (RFC 3550 §11).

use std::sync::{Arc, Mutex, PoisonError};

/// The even RTP ports of a configured range; slot `i` is RTP port `base + 2i` and RTCP port
/// `base + 2i + 1`. Only [`SlotLease`] marks and frees slots.
#[derive(Debug)]
pub(crate) struct PortPool {
    base: u16,
    in_use: Vec<bool>,
    /// Next slot to try: allocation goes round the range so that a port just freed is
    /// reused as late as possible (late packets of the old call do not leak into a new one).
    cursor: usize,
}

impl PortPool {
    /// A pool for `port_min..=port_max`; `port_min` is rounded up to an even port ≥ 2.
    pub(crate) fn new(port_min: u16, port_max: u16) -> Self {
        let base = u32::from(port_min.max(2)).next_multiple_of(2);
        let max = u32::from(port_max);
        let slots = if max > base {
            (max - base - 1) / 2 + 1
        } else {
            0
        };
        Self {
            base: u16::try_from(base).unwrap_or(u16::MAX),
            in_use: vec![false; slots as usize],
            cursor: 0,
        }
    }

    /// Number of RTP/RTCP port pairs in the range.
    pub(crate) fn capacity(&self) -> usize {
        self.in_use.len()
    }

    fn take(&mut self) -> Option<(usize, u16)> {
        let n = self.in_use.len();
        for step in 0..n {
            let slot = (self.cursor + step) % n;
            if let Some(used) = self.in_use.get_mut(slot)
                && !*used
            {
                *used = true;
                self.cursor = (slot + 1) % n;
                let port = u32::from(self.base) + 2 * slot as u32;
                return u16::try_from(port).ok().map(|p| (slot, p));
            }
        }
        None
    }

    fn release(&mut self, slot: usize) {
        if let Some(used) = self.in_use.get_mut(slot) {
            *used = false;
        }
    }
}

/// A reserved RTP/RTCP port pair; dropping it returns the pair to the pool.
#[derive(Debug)]
pub(crate) struct SlotLease {
    pool: Arc<Mutex<PortPool>>,
    slot: usize,
    /// The RTP port (even); RTCP is `rtp_port + 1`.
    pub(crate) rtp_port: u16,
}

impl SlotLease {
    /// Reserve the next free pair, or `None` if every pair is in use.
    pub(crate) fn take(pool: &Arc<Mutex<PortPool>>) -> Option<Self> {
        let (slot, rtp_port) = pool.lock().unwrap_or_else(PoisonError::into_inner).take()?;
        Some(Self {
            pool: Arc::clone(pool),
            slot,
            rtp_port,
        })
    }
}

impl Drop for SlotLease {
    fn drop(&mut self) {
        self.pool
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .release(self.slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_is_split_into_even_pairs() {
        assert_eq!(PortPool::new(10000, 10003).capacity(), 2);
        assert_eq!(PortPool::new(10001, 10004).capacity(), 1); // 10002/10003 only
        assert_eq!(PortPool::new(10000, 10000).capacity(), 0);
        assert_eq!(PortPool::new(10000, 9000).capacity(), 0);
        assert_eq!(PortPool::new(0, 5).capacity(), 2); // 2/3 and 4/5, never port 0
        assert_eq!(PortPool::new(65534, 65535).capacity(), 1);
    }

    #[test]
    fn leases_round_robin_and_free_on_drop() {
        let pool = Arc::new(Mutex::new(PortPool::new(20000, 20005)));
        let a = SlotLease::take(&pool).unwrap();
        let b = SlotLease::take(&pool).unwrap();
        let c = SlotLease::take(&pool).unwrap();
        assert_eq!((a.rtp_port, b.rtp_port, c.rtp_port), (20000, 20002, 20004));
        assert!(SlotLease::take(&pool).is_none());
        drop(b);
        let d = SlotLease::take(&pool).unwrap();
        assert_eq!(d.rtp_port, 20002);
        drop(a);
        drop(c);
        // The cursor is past 20002: the next lease is 20004, then 20000.
        assert_eq!(SlotLease::take(&pool).unwrap().rtp_port, 20004);
    }
}
