//! Media: RTP/RTCP relay with symmetric latching (RFC 3550, RFC 4961).
//!
//! vigie anchors the media of every call (see [`crate::sdp`]): each call gets a
//! [`RelaySession`] with two sides, A (caller/trunk leg) and B (agent/seat leg), each with an
//! even RTP port and RTCP on the next port (RFC 3550 §11): four UDP sockets. One tokio task
//! per session relays datagrams arriving on A's sockets out of B's sockets to B's peer, and
//! the reverse.
//!
//! **Symmetric RTP (RFC 4961).** Until a side has sent anything, packets for it go to the
//! address from its SDP ([`RelaySession::set_peer_hint`]); the first RTP packet received from a
//! side *latches* that side's RTP peer to the packet's source address (the seat may be
//! behind NAT), and likewise the first RTCP packet latches its RTCP peer. Packets for a side
//! with no peer yet are dropped and counted.
//!
//! **Hot path.** One receive buffer per task, no allocation and no lock per packet: the task
//! waits for readiness and drains each socket with `try_recv_from`; statistics are relaxed
//! atomics and Prometheus counters (atomics). Peer hints reach the task over `watch`
//! channels, read only when they change.

mod ports;

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::{Registry, Unit};
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use ports::{PortPool, SlotLease};

/// Errors of the media layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MediaError {
    /// Every RTP/RTCP port pair of the configured range is in use (or held by another
    /// process). The switch must still not drop the call: it can go on without anchoring
    /// media (or with prompts) and retry.
    #[error("no free RTP/RTCP port pair in the relay range")]
    PortsExhausted,
    /// Binding a relay socket failed for another reason than the port being in use (e.g. the
    /// configured address is not local). A configuration error.
    #[error("cannot bind relay socket {addr}: {source}")]
    Bind {
        /// The address that could not be bound.
        addr: SocketAddr,
        /// The operating system's error.
        source: io::Error,
    },
}

/// Where the relay binds and which ports it may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayConfig {
    /// Local address the relay sockets bind to. If it is unspecified (`0.0.0.0`/`::`) the
    /// switch must put its advertised address, not this one, in the SDP.
    pub bind: IpAddr,
    /// Lowest port of the range (inclusive); rounded up to an even port ≥ 2.
    pub port_min: u16,
    /// Highest port of the range (inclusive). Each call uses 4 ports: two even RTP ports and
    /// the odd RTCP port above each.
    pub port_max: u16,
}

/// One of the two legs of a relayed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The caller's leg (trunk).
    A,
    /// The agent's leg (seat).
    B,
}

impl Side {
    fn index(self) -> usize {
        match self {
            Side::A => 0,
            Side::B => 1,
        }
    }
}

/// Why a datagram was not relayed (label `reason` of `vigie_rtp_packets_dropped_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelSet)]
struct DropLabels {
    reason: DropReason,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, prometheus_client::encoding::EncodeLabelValue,
)]
#[allow(non_camel_case_types)]
enum DropReason {
    /// The destination side has no peer address yet (no hint, nothing latched).
    no_peer,
    /// Not an RTP/RTCP version 2 packet or too short (RFC 3550 §5.1, §6.4).
    malformed,
    /// The kernel refused the send.
    send_error,
}

/// Prometheus counters the relay increments (shared by every session; cloning is cheap and
/// shares the same atomics).
#[derive(Debug, Clone)]
pub struct RelayMetrics {
    /// RTP packets relayed, both directions (`vigie_rtp_packets_relayed_total`).
    pub rtp_packets: Counter,
    /// RTP octets relayed (UDP payload: RTP header + payload), both directions
    /// (`vigie_rtp_relayed_bytes_total`).
    pub rtp_bytes: Counter,
    /// RTCP packets (compound datagrams) relayed, both directions
    /// (`vigie_rtcp_packets_relayed_total`).
    pub rtcp_packets: Counter,
    dropped: Family<DropLabels, Counter>,
    dropped_no_peer: Counter,
    dropped_malformed: Counter,
    dropped_send_error: Counter,
}

impl Default for RelayMetrics {
    fn default() -> Self {
        let dropped = Family::<DropLabels, Counter>::default();
        let child = |reason| dropped.get_or_create(&DropLabels { reason }).clone();
        let dropped_no_peer = child(DropReason::no_peer);
        let dropped_malformed = child(DropReason::malformed);
        let dropped_send_error = child(DropReason::send_error);
        Self {
            rtp_packets: Counter::default(),
            rtp_bytes: Counter::default(),
            rtcp_packets: Counter::default(),
            dropped,
            dropped_no_peer,
            dropped_malformed,
            dropped_send_error,
        }
    }
}

impl RelayMetrics {
    /// Register the counters in `registry` (the `_total` suffix is added by
    /// prometheus-client): `vigie_rtp_packets_relayed_total`,
    /// `vigie_rtp_relayed_bytes_total`, `vigie_rtcp_packets_relayed_total` and
    /// `vigie_rtp_packets_dropped_total{reason="no_peer"|"malformed"|"send_error"}` (RTP and
    /// RTCP datagrams not relayed).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "vigie_rtp_packets_relayed",
            "RTP packets relayed between call legs",
            self.rtp_packets.clone(),
        );
        registry.register_with_unit(
            "vigie_rtp_relayed",
            "RTP octets (header and payload) relayed between call legs",
            Unit::Bytes,
            self.rtp_bytes.clone(),
        );
        registry.register(
            "vigie_rtcp_packets_relayed",
            "RTCP packets relayed between call legs",
            self.rtcp_packets.clone(),
        );
        registry.register(
            "vigie_rtp_packets_dropped",
            "RTP and RTCP datagrams not relayed, by reason",
            self.dropped.clone(),
        );
    }

    /// Datagrams dropped because the destination side had no peer address yet.
    pub fn dropped_no_peer(&self) -> u64 {
        self.dropped_no_peer.get()
    }

    /// Datagrams dropped because they were not version-2 RTP/RTCP or too short.
    pub fn dropped_malformed(&self) -> u64 {
        self.dropped_malformed.get()
    }
}

/// A pool of relay ports; cheap to clone (an `Arc`), shared by the whole switch.
#[derive(Debug, Clone)]
pub struct MediaRelay {
    config: RelayConfig,
    metrics: RelayMetrics,
    pool: Arc<Mutex<PortPool>>,
}

impl MediaRelay {
    /// A relay over `config.port_min..=config.port_max` on `config.bind`. An empty or
    /// inverted range is accepted and makes every [`MediaRelay::allocate`] fail with
    /// [`MediaError::PortsExhausted`].
    pub fn new(config: RelayConfig, metrics: RelayMetrics) -> Self {
        Self {
            pool: Arc::new(Mutex::new(PortPool::new(config.port_min, config.port_max))),
            config,
            metrics,
        }
    }

    /// Number of calls the range can hold at once (port pairs / 2).
    pub fn capacity(&self) -> usize {
        self.pool
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .capacity()
            / 2
    }

    /// Reserve two RTP/RTCP port pairs (side A and side B), bind the four sockets and spawn
    /// the session's relay task. Must be called inside a tokio runtime.
    ///
    /// A port held by another process is skipped. The ports return to the pool when the
    /// session is closed or dropped.
    ///
    /// # Errors
    /// [`MediaError::PortsExhausted`] when fewer than two pairs are free;
    /// [`MediaError::Bind`] when a socket cannot be bound for another reason.
    pub async fn allocate(&self) -> Result<RelaySession, MediaError> {
        let a = self.bind_pair()?;
        let b = self.bind_pair()?;
        let local = [a.rtp_addr, b.rtp_addr];
        let stats = Arc::new(Counters::default());
        let (hint_a_tx, hint_a_rx) = watch::channel(None);
        let (hint_b_tx, hint_b_rx) = watch::channel(None);
        let task = RelayTask {
            sockets: [a.rtp, a.rtcp, b.rtp, b.rtcp],
            hints: [hint_a_rx, hint_b_rx],
            stats: Arc::clone(&stats),
            metrics: self.metrics.clone(),
            _leases: [a.lease, b.lease],
        };
        let task = tokio::spawn(task.run());
        Ok(RelaySession {
            local,
            hints: [hint_a_tx, hint_b_tx],
            stats,
            task: Some(task),
        })
    }

    fn bind_pair(&self) -> Result<BoundPair, MediaError> {
        let attempts = self
            .pool
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .capacity();
        for _ in 0..attempts {
            let lease = SlotLease::take(&self.pool).ok_or(MediaError::PortsExhausted)?;
            let rtp_addr = SocketAddr::new(self.config.bind, lease.rtp_port);
            let rtcp_addr = SocketAddr::new(self.config.bind, lease.rtp_port.wrapping_add(1));
            match (bind(rtp_addr), bind(rtcp_addr)) {
                (Ok(rtp), Ok(rtcp)) => {
                    return Ok(BoundPair {
                        rtp,
                        rtcp,
                        rtp_addr,
                        lease,
                    });
                }
                (Err(e), _) | (_, Err(e)) if e.kind() == io::ErrorKind::AddrInUse => continue,
                (Err(source), _) => {
                    return Err(MediaError::Bind {
                        addr: rtp_addr,
                        source,
                    });
                }
                (_, Err(source)) => {
                    return Err(MediaError::Bind {
                        addr: rtcp_addr,
                        source,
                    });
                }
            }
        }
        Err(MediaError::PortsExhausted)
    }
}

struct BoundPair {
    rtp: UdpSocket,
    rtcp: UdpSocket,
    rtp_addr: SocketAddr,
    lease: SlotLease,
}

fn bind(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = std::net::UdpSocket::bind(addr)?;
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket)
}

/// Peer address of one side as given by its SDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PeerHint {
    rtp: SocketAddr,
    rtcp: SocketAddr,
}

/// The relay of one call. Dropping it (or [`RelaySession::close`]) stops the relay task and
/// returns the four ports to the pool.
#[derive(Debug)]
pub struct RelaySession {
    local: [SocketAddr; 2],
    hints: [watch::Sender<Option<PeerHint>>; 2],
    stats: Arc<Counters>,
    task: Option<JoinHandle<()>>,
}

impl RelaySession {
    /// The local RTP address of `side`'s socket: the address and port that `side`'s peer must
    /// send RTP to, i.e. what goes into the SDP sent to that leg. RTCP is on port + 1.
    pub fn local_addr(&self, side: Side) -> SocketAddr {
        self.local[side.index()]
    }

    /// Set where to send RTP for `side` before it has sent anything (its SDP's `c=` and
    /// `m=` port); RTCP goes to port + 1 (RFC 3550 §11). Same as
    /// [`RelaySession::set_peer_hints`] with `rtp.port() + 1`.
    pub fn set_peer_hint(&self, side: Side, rtp: SocketAddr) {
        let rtcp = SocketAddr::new(rtp.ip(), rtp.port().wrapping_add(1));
        self.set_peer_hints(side, rtp, rtcp);
    }

    /// Set where to send RTP and RTCP for `side` before it has sent anything (RTCP from an
    /// `a=rtcp:` attribute, RFC 3605). A hint that differs from the previous one (a
    /// re-INVITE moved the media) also forgets what was latched for `side`, so its next
    /// packet latches again; repeating the same hint changes nothing.
    pub fn set_peer_hints(&self, side: Side, rtp: SocketAddr, rtcp: SocketAddr) {
        let hint = Some(PeerHint { rtp, rtcp });
        self.hints[side.index()].send_if_modified(|current| {
            let changed = *current != hint;
            *current = hint;
            changed
        });
    }

    /// A snapshot of the session's counters.
    pub fn stats(&self) -> RelayStats {
        self.stats.snapshot()
    }

    /// Stop the relay task and wait until its sockets are closed: when this returns the
    /// ports are free for the next [`MediaRelay::allocate`].
    pub async fn close(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            // The task never panics; a JoinError here only says it was cancelled.
            let _ = task.await;
        }
    }
}

impl Drop for RelaySession {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Counters of one relay session (RFC 3550 terms: an RTCP "packet" here is one UDP
/// datagram, possibly a compound packet).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayStats {
    /// RTP packets received on side A and sent to side B's peer.
    pub rtp_packets_a_to_b: u64,
    /// RTP octets (header + payload) relayed from A to B.
    pub rtp_bytes_a_to_b: u64,
    /// RTP packets received on side B and sent to side A's peer.
    pub rtp_packets_b_to_a: u64,
    /// RTP octets (header + payload) relayed from B to A.
    pub rtp_bytes_b_to_a: u64,
    /// RTCP datagrams relayed from A to B.
    pub rtcp_packets_a_to_b: u64,
    /// RTCP datagrams relayed from B to A.
    pub rtcp_packets_b_to_a: u64,
    /// Datagrams (RTP or RTCP) dropped because the destination side had no peer address.
    pub dropped_no_peer: u64,
    /// Datagrams dropped because they were not version-2 RTP/RTCP or too short.
    pub dropped_malformed: u64,
    /// Datagrams the kernel refused to send.
    pub dropped_send_error: u64,
}

#[derive(Debug, Default)]
struct Counters {
    /// RTP packets, indexed by source side.
    rtp_packets: [AtomicU64; 2],
    rtp_bytes: [AtomicU64; 2],
    rtcp_packets: [AtomicU64; 2],
    dropped_no_peer: AtomicU64,
    dropped_malformed: AtomicU64,
    dropped_send_error: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> RelayStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        RelayStats {
            rtp_packets_a_to_b: get(&self.rtp_packets[0]),
            rtp_bytes_a_to_b: get(&self.rtp_bytes[0]),
            rtp_packets_b_to_a: get(&self.rtp_packets[1]),
            rtp_bytes_b_to_a: get(&self.rtp_bytes[1]),
            rtcp_packets_a_to_b: get(&self.rtcp_packets[0]),
            rtcp_packets_b_to_a: get(&self.rtcp_packets[1]),
            dropped_no_peer: get(&self.dropped_no_peer),
            dropped_malformed: get(&self.dropped_malformed),
            dropped_send_error: get(&self.dropped_send_error),
        }
    }
}

/// Largest datagram relayed, in octets; a larger one is truncated by the kernel and dropped
/// as malformed.
const MAX_DATAGRAM: usize = 4096;
/// Datagrams drained from one socket before the task looks at the others again.
const DRAIN_BUDGET: usize = 64;

/// What the task knows of one side's peer.
#[derive(Debug, Default, Clone, Copy)]
struct Peer {
    hint: Option<PeerHint>,
    rtp_latched: Option<SocketAddr>,
    rtcp_latched: Option<SocketAddr>,
}

impl Peer {
    fn rtp(&self) -> Option<SocketAddr> {
        self.rtp_latched.or(self.hint.map(|h| h.rtp))
    }

    fn rtcp(&self) -> Option<SocketAddr> {
        self.rtcp_latched.or(self.hint.map(|h| h.rtcp)).or(self
            .rtp_latched
            .map(|a| SocketAddr::new(a.ip(), a.port().wrapping_add(1))))
    }
}

/// Why the relay task woke up.
enum Wake {
    /// Socket index 0..4 is readable.
    Socket(usize),
    /// The hint of side 0/1 changed (`true`) or its sender is gone (`false`).
    Hint(usize, bool),
}

/// The task of one session. Field order matters: the sockets are dropped before the port
/// leases, so a freed port can be bound at once.
struct RelayTask {
    /// A RTP, A RTCP, B RTP, B RTCP.
    sockets: [UdpSocket; 4],
    hints: [watch::Receiver<Option<PeerHint>>; 2],
    stats: Arc<Counters>,
    metrics: RelayMetrics,
    _leases: [SlotLease; 2],
}

impl RelayTask {
    async fn run(mut self) {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let mut peers = [Peer::default(); 2];
        loop {
            let [hint_a, hint_b] = &mut self.hints;
            let ready = tokio::select! {
                r = self.sockets[0].readable() => r.map(|()| Wake::Socket(0)),
                r = self.sockets[1].readable() => r.map(|()| Wake::Socket(1)),
                r = self.sockets[2].readable() => r.map(|()| Wake::Socket(2)),
                r = self.sockets[3].readable() => r.map(|()| Wake::Socket(3)),
                changed = hint_a.changed() => Ok(Wake::Hint(0, changed.is_ok())),
                changed = hint_b.changed() => Ok(Wake::Hint(1, changed.is_ok())),
            };
            let index = match ready {
                Ok(Wake::Socket(index)) => {
                    // A hint set before a packet was sent must apply to that packet even if
                    // the socket won the select (one atomic load per wake-up, not a lock).
                    for (rx, peer) in self.hints.iter_mut().zip(peers.iter_mut()) {
                        if rx.has_changed().unwrap_or(false) {
                            Self::apply_hint(peer, *rx.borrow_and_update());
                        }
                    }
                    index
                }
                Ok(Wake::Hint(side, true)) => {
                    if let (Some(rx), Some(peer)) = (self.hints.get_mut(side), peers.get_mut(side))
                    {
                        Self::apply_hint(peer, *rx.borrow_and_update());
                    }
                    continue;
                }
                // The session was dropped (hint sender gone) or the reactor is shutting down.
                Ok(Wake::Hint(_, false)) | Err(_) => return,
            };
            self.drain(index, &mut buf, &mut peers).await;
        }
    }

    fn apply_hint(peer: &mut Peer, hint: Option<PeerHint>) {
        if peer.hint != hint {
            peer.hint = hint;
            peer.rtp_latched = None;
            peer.rtcp_latched = None;
        }
    }

    /// Relay what is queued on socket `index` (0..4), up to [`DRAIN_BUDGET`] datagrams.
    async fn drain(&self, index: usize, buf: &mut [u8], peers: &mut [Peer; 2]) {
        let from = index / 2;
        let to = 1 - from;
        let is_rtcp = index % 2 == 1;
        let (Some(socket), Some(out)) = (self.sockets.get(index), self.sockets.get(index ^ 2))
        else {
            return;
        };
        for _ in 0..DRAIN_BUDGET {
            let (len, source) = match socket.try_recv_from(buf) {
                Ok(received) => received,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                // E.g. ECONNREFUSED from an earlier ICMP error: nothing to relay.
                Err(_) => continue,
            };
            let Some(packet) = buf.get(..len) else { return };
            if !valid(packet, is_rtcp) {
                self.count_drop(
                    &self.stats.dropped_malformed,
                    &self.metrics.dropped_malformed,
                );
                continue;
            }
            // Symmetric RTP (RFC 4961): the first packet from a side fixes its address.
            if let Some(src_peer) = peers.get_mut(from) {
                if is_rtcp {
                    src_peer.rtcp_latched.get_or_insert(source);
                } else {
                    src_peer.rtp_latched.get_or_insert(source);
                }
            }
            let Some(dst) = peers.get(to) else { return };
            let destination = if is_rtcp { dst.rtcp() } else { dst.rtp() };
            let Some(destination) = destination else {
                self.count_drop(&self.stats.dropped_no_peer, &self.metrics.dropped_no_peer);
                continue;
            };
            if out.send_to(packet, destination).await.is_err() {
                self.count_drop(
                    &self.stats.dropped_send_error,
                    &self.metrics.dropped_send_error,
                );
                continue;
            }
            let len = len as u64;
            if is_rtcp {
                self.stats.rtcp_packets[from].fetch_add(1, Ordering::Relaxed);
                self.metrics.rtcp_packets.inc();
            } else {
                self.stats.rtp_packets[from].fetch_add(1, Ordering::Relaxed);
                self.stats.rtp_bytes[from].fetch_add(len, Ordering::Relaxed);
                self.metrics.rtp_packets.inc();
                self.metrics.rtp_bytes.inc_by(len);
            }
        }
    }

    fn count_drop(&self, session: &AtomicU64, metric: &Counter) {
        session.fetch_add(1, Ordering::Relaxed);
        metric.inc();
    }
}

/// Minimal validity check: version 2 and the fixed header present (RTP: 12 octets,
/// RFC 3550 §5.1; RTCP: 8 octets, header + SSRC, RFC 3550 §6.4), and not truncated.
fn valid(packet: &[u8], is_rtcp: bool) -> bool {
    let min = if is_rtcp { 8 } else { 12 };
    packet.len() >= min
        && packet.len() < MAX_DATAGRAM
        && packet.first().is_some_and(|b| b >> 6 == 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validity_check() {
        let mut rtp = [0u8; 12];
        rtp[0] = 0x80;
        assert!(valid(&rtp, false));
        assert!(!valid(&rtp[..11], false));
        assert!(valid(&rtp[..8], true));
        assert!(!valid(&rtp[..7], true));
        rtp[0] = 0x40; // version 1
        assert!(!valid(&rtp, false));
        assert!(!valid(&[], true));
    }

    #[test]
    fn rtcp_destination_prefers_latched_then_hint_then_rtp_plus_one() {
        let a: SocketAddr = "192.0.2.1:5000".parse().unwrap();
        let mut peer = Peer::default();
        assert_eq!(peer.rtp(), None);
        assert_eq!(peer.rtcp(), None);
        peer.rtp_latched = Some(a);
        assert_eq!(peer.rtcp(), Some("192.0.2.1:5001".parse().unwrap()));
        peer.hint = Some(PeerHint {
            rtp: "192.0.2.9:6000".parse().unwrap(),
            rtcp: "192.0.2.9:6003".parse().unwrap(),
        });
        assert_eq!(peer.rtp(), Some(a));
        assert_eq!(peer.rtcp(), Some("192.0.2.9:6003".parse().unwrap()));
        peer.rtcp_latched = Some("198.51.100.1:7".parse().unwrap());
        assert_eq!(peer.rtcp(), Some("198.51.100.1:7".parse().unwrap()));
    }

    #[test]
    fn metrics_are_registered_with_base_unit_names() {
        let metrics = RelayMetrics::default();
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        metrics.rtp_bytes.inc_by(172);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for name in [
            "vigie_rtp_packets_relayed_total 0",
            "vigie_rtp_relayed_bytes_total 172",
            "vigie_rtcp_packets_relayed_total 0",
            "vigie_rtp_packets_dropped_total{reason=\"no_peer\"} 0",
            "vigie_rtp_packets_dropped_total{reason=\"malformed\"} 0",
        ] {
            assert!(text.contains(name), "{name} missing in\n{text}");
        }
    }
}
