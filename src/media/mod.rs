//! Media: RTP/RTCP relay with symmetric latching (RFC 3550, RFC 4961), prompt player,
//! call recorder and RTCP reception statistics.
//!
//! vigie anchors the media of every call (see [`crate::sdp`]): each call gets a
//! [`RelaySession`] with two sides, A (caller/trunk leg) and B (agent/seat leg), each with an
//! even RTP port and RTCP on the next port (RFC 3550 §11): four UDP sockets. A few relay
//! threads (one per core, at most 4; [`MediaRelay::with_engine`]) each run one `epoll`
//! loop over the sockets of many sessions: a datagram arriving on A's sockets goes out of B's
//! sockets to B's peer, and the reverse; the same thread plays the session's prompts
//! ([`RelaySession::play`]), taps the recorder ([`RelaySession::record_start`]) and reads
//! the RTCP reports that go through it.
//!
//! **Symmetric RTP (RFC 4961).** Until a side has sent anything, packets for it go to the
//! address from its SDP ([`RelaySession::set_peer_hint`]); the first RTP packet received from a
//! side *latches* that side's RTP peer to the packet's source address (the seat may be
//! behind NAT), and likewise the first RTCP packet latches its RTCP peer. Packets for a side
//! with no peer yet are dropped and counted.
//!
//! **Prompts.** A prompt is sent as G.711 RTP (the side's codec, [`RelaySession::set_codec`])
//! from the side's own relay socket to its peer, with an SSRC of its own, 20 ms per packet,
//! paced by the session task's timer. Relayed media wins: the first RTP packet relayed to a
//! side stops a prompt playing there ([`PlayState::Preempted`]), so the two never interleave.
//!
//! **Quality.** SR/RR report blocks (RFC 3550 §6.4) from each side give the loss and jitter
//! that side sees; vigie also estimates the interarrival jitter of the RTP it receives from
//! each side (RFC 3550 A.8). Both go to [`RelaySession::quality`] and to the metrics
//! `vigie_rtp_packets_lost_total{side}` and `vigie_rtp_jitter_seconds{side,source}`.
//!
//! **Hot path.** No tokio task and no allocation, lock or shared atomic read-modify-write per
//! packet: a relay thread's level-triggered `epoll_wait` returns the readable sockets of
//! all its sessions at once; for each it reads one datagram (`recvfrom`) and sends it at once
//! (`sendto`), i.e. two system calls per relayed packet plus a share of one `epoll_wait`.
//! Per-session statistics have one writer (relaxed stores); the shared Prometheus counters
//! are summed per thread and added once per loop iteration; peer hints are `watch` values
//! (one atomic load per packet), commands go over one bounded queue per thread with an
//! `eventfd` wake-up. The recorder gets a fixed-size copy of each payload by `try_send`. The
//! jitter histograms (which take a short mutex) are observed once per
//! [`JITTER_SAMPLE_EVERY`] packets, and per RTCP report block, not per packet. See
//! `engine.rs` for the loop. Measured (release, `tools/bench` media stage at 1000 calls,
//! 100,000 packets/s in, 2 cores shared with rtpload and other builds at load ~7): about
//! 5 µs of vigie CPU per relayed packet, 85–95 % of it in the kernel (`sendto` on
//! loopback also delivers to the receiver's socket: ~50 %; `recvfrom` ~24 %; `epoll_wait`
//! ~12 %), and context switches down from 33 % to 2 % of the samples with the tick. The
//! criterion round trip of one packet (`benches/hot_paths.rs`, tick 0) went from 115 µs
//! (tokio task per session, idle machine) to 18 µs (this engine, loaded machine).

mod engine;
mod g711;
mod player;
mod ports;
mod recorder;
pub mod rtcp;

pub use g711::{alaw_to_linear, linear_to_alaw, linear_to_ulaw, ulaw_to_linear};
pub use player::{
    Codec, PACKET_INTERVAL, PlayHandle, PlayState, Prompt, PromptError, SAMPLE_RATE,
    SAMPLES_PER_PACKET, WavFormat,
};
pub use recorder::{MIX_DELAY_FRAMES, RecordError, RecordingHandle, RecordingSummary};

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use engine::{Engine, Message, SessionState, Worker};
use player::{Playback, RtpSender};
use ports::{PortPool, SlotLease};
use recorder::{Chunk, MAX_CHUNK};
use rtcp::JitterEstimator;

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
    /// The session's relay thread has ended (it failed, or no runtime for a recording):
    /// the command (play, record…) was not taken.
    #[error("relay session closed")]
    SessionClosed,
    /// The command queue of the session's relay thread is full (4096 commands of all its
    /// sessions not yet read): the command was not taken; retry later.
    #[error("relay session command queue full")]
    CommandQueueFull,
    /// A relay thread could not be started or a socket not added to its `epoll` set
    /// (out of file descriptors or memory).
    #[error("relay engine: {0}")]
    Engine(io::Error),
    /// A prompt file could not be loaded.
    #[error(transparent)]
    Prompt(#[from] PromptError),
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

/// Label `side` of the per-side media metrics: `caller` (side A) or `seat` (side B).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelSet)]
struct SideLabels {
    side: SideLabel,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, prometheus_client::encoding::EncodeLabelValue,
)]
#[allow(non_camel_case_types)]
enum SideLabel {
    caller,
    seat,
}

/// Labels of `vigie_rtp_jitter_seconds`: which side, and who measured it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelSet)]
struct JitterLabels {
    side: SideLabel,
    source: JitterSource,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, prometheus_client::encoding::EncodeLabelValue,
)]
#[allow(non_camel_case_types)]
enum JitterSource {
    /// Reported by the side in its RTCP SR/RR (how it receives what vigie sends it).
    rtcp,
    /// Measured by vigie on the RTP it receives from the side (RFC 3550 A.8).
    observed,
}

/// Buckets of `vigie_rtp_jitter_seconds`: 1 ms to 500 ms.
fn jitter_histogram() -> Histogram {
    Histogram::new([0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2, 0.5])
}

/// Prometheus metrics the relay updates (shared by every session; cloning is cheap and
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
    /// RTP packets of prompts sent (`vigie_prompt_packets_sent_total`).
    pub prompt_packets: Counter,
    /// Recordings that stopped on an error: file not creatable, disk full
    /// (`vigie_recording_failures_total`).
    pub recording_failures: Counter,
    dropped: Family<DropLabels, Counter>,
    dropped_no_peer: Counter,
    dropped_malformed: Counter,
    dropped_send_error: Counter,
    lost: Family<SideLabels, Counter>,
    /// Children of `lost`, by side index (fetched once: no family lock per report).
    lost_by_side: [Counter; 2],
    jitter: Family<JitterLabels, Histogram, fn() -> Histogram>,
    /// Children of `jitter`: [side][rtcp, observed].
    jitter_by_side: [[Histogram; 2]; 2],
}

impl Default for RelayMetrics {
    fn default() -> Self {
        let dropped = Family::<DropLabels, Counter>::default();
        let child = |reason| dropped.get_or_create(&DropLabels { reason }).clone();
        let dropped_no_peer = child(DropReason::no_peer);
        let dropped_malformed = child(DropReason::malformed);
        let dropped_send_error = child(DropReason::send_error);
        let lost = Family::<SideLabels, Counter>::default();
        let lost_child = |side| lost.get_or_create(&SideLabels { side }).clone();
        let lost_by_side = [lost_child(SideLabel::caller), lost_child(SideLabel::seat)];
        let jitter = Family::<JitterLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            jitter_histogram,
        );
        let jitter_child =
            |side, source| jitter.get_or_create(&JitterLabels { side, source }).clone();
        let jitter_by_side = [SideLabel::caller, SideLabel::seat].map(|side| {
            [
                jitter_child(side, JitterSource::rtcp),
                jitter_child(side, JitterSource::observed),
            ]
        });
        Self {
            rtp_packets: Counter::default(),
            rtp_bytes: Counter::default(),
            rtcp_packets: Counter::default(),
            prompt_packets: Counter::default(),
            recording_failures: Counter::default(),
            dropped,
            dropped_no_peer,
            dropped_malformed,
            dropped_send_error,
            lost,
            lost_by_side,
            jitter,
            jitter_by_side,
        }
    }
}

impl RelayMetrics {
    /// Register the metrics in `registry` (the `_total` suffix is added by
    /// prometheus-client): `vigie_rtp_packets_relayed_total`,
    /// `vigie_rtp_relayed_bytes_total`, `vigie_rtcp_packets_relayed_total`,
    /// `vigie_rtp_packets_dropped_total{reason="no_peer"|"malformed"|"send_error"}` (RTP and
    /// RTCP datagrams not relayed), `vigie_prompt_packets_sent_total`,
    /// `vigie_recording_failures_total`, `vigie_rtp_packets_lost_total{side="caller"|"seat"}`
    /// (packets the side reports lost in its RTCP receiver reports, RFC 3550 §6.4.1: the sum
    /// of increases of the cumulative number lost) and the histogram
    /// `vigie_rtp_jitter_seconds{side, source="rtcp"|"observed"}` (interarrival jitter in
    /// seconds, as reported by the side or measured by vigie on the side's RTP).
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
        registry.register(
            "vigie_prompt_packets_sent",
            "RTP packets of prompts sent to call legs",
            self.prompt_packets.clone(),
        );
        registry.register(
            "vigie_recording_failures",
            "Call recordings stopped by a file error (unwritable directory, disk full)",
            self.recording_failures.clone(),
        );
        registry.register(
            "vigie_rtp_packets_lost",
            "RTP packets a call leg reports lost in RTCP receiver reports (RFC 3550 6.4.1)",
            self.lost.clone(),
        );
        registry.register_with_unit(
            "vigie_rtp_jitter",
            "RTP interarrival jitter (RFC 3550 6.4.1), reported in RTCP or observed by vigie",
            Unit::Seconds,
            self.jitter.clone(),
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

    /// Packets `side` reported lost in RTCP (sum over sessions of the increases of the
    /// cumulative number lost, RFC 3550 §6.4.1).
    pub fn packets_lost(&self, side: Side) -> u64 {
        self.lost_by_side[side.index()].get()
    }
}

/// A pool of relay ports; cheap to clone (an `Arc`), shared by the whole switch.
#[derive(Debug, Clone)]
pub struct MediaRelay {
    config: RelayConfig,
    metrics: RelayMetrics,
    pool: Arc<Mutex<PortPool>>,
    engine: Arc<Engine>,
}

/// How the relay threads run ([`MediaRelay::with_engine`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineConfig {
    /// Relay threads (at least 1). Each session is relayed by one of them (round robin).
    pub threads: usize,
    /// Rest after a loop iteration that relayed something, before the next `epoll_wait`:
    /// the datagrams that arrive meanwhile are then taken in one wake-up instead of one
    /// wake-up (two context switches) each. Adds at most this much delay to a packet (the
    /// jitter it adds is below it). Zero: no rest (lowest latency, most wake-ups).
    pub tick: std::time::Duration,
}

impl EngineConfig {
    /// `threads` relay threads, 0 meaning one per core (at most 4), resting `tick_us`
    /// microseconds between busy loops (`[media] relay_threads`, `relay_tick_us`).
    pub fn new(threads: usize, tick_us: u64) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get().clamp(1, 4));
        EngineConfig {
            threads: if threads == 0 { cores } else { threads },
            tick: std::time::Duration::from_micros(tick_us),
        }
    }
}

impl Default for EngineConfig {
    /// One thread per core (at most 4) and a 500 µs tick.
    fn default() -> Self {
        EngineConfig::new(0, 500)
    }
}

impl MediaRelay {
    /// A relay over `config.port_min..=config.port_max` on `config.bind`. An empty or
    /// inverted range is accepted and makes every [`MediaRelay::allocate`] fail with
    /// [`MediaError::PortsExhausted`].
    ///
    /// The relay runs on threads of its own (not tokio tasks; [`EngineConfig::default`]),
    /// started by the first [`MediaRelay::allocate`] and ended when the relay and all its
    /// sessions are dropped.
    pub fn new(config: RelayConfig, metrics: RelayMetrics) -> Self {
        Self::with_engine(config, metrics, EngineConfig::default())
    }

    /// As [`MediaRelay::new`] with `engine.threads` relay threads, each running one `epoll`
    /// loop over the sockets of its sessions, resting `engine.tick` between busy loops.
    pub fn with_engine(config: RelayConfig, metrics: RelayMetrics, engine: EngineConfig) -> Self {
        Self {
            pool: Arc::new(Mutex::new(PortPool::new(config.port_min, config.port_max))),
            config,
            engine: Arc::new(Engine::new(engine, metrics.clone())),
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

    /// Reserve two RTP/RTCP port pairs (side A and side B), bind the four sockets and hand
    /// them to a relay thread, which relays from the moment this returns. Synchronous and
    /// non-blocking (a few system calls); needs no tokio runtime.
    ///
    /// A port held by another process is skipped. The ports return to the pool when the
    /// session is closed or dropped.
    ///
    /// # Errors
    /// [`MediaError::PortsExhausted`] when fewer than two pairs are free;
    /// [`MediaError::Bind`] when a socket cannot be bound for another reason;
    /// [`MediaError::Engine`] when a relay thread cannot be started or the sockets not
    /// watched; [`MediaError::CommandQueueFull`] when the thread is that far behind.
    pub fn allocate(&self) -> Result<RelaySession, MediaError> {
        let a = self.bind_pair()?;
        let b = self.bind_pair()?;
        let local = [a.rtp_addr, b.rtp_addr];
        let (id, worker) = self.engine.assign()?;
        let stats = Arc::new(Counters::default());
        let (hint_a_tx, hint_a_rx) = watch::channel(None);
        let (hint_b_tx, hint_b_rx) = watch::channel(None);
        let sockets = [a.rtp, a.rtcp, b.rtp, b.rtcp];
        let fds = sockets.each_ref().map(AsRawFd::as_raw_fd);
        worker.send(Message::Register(Box::new(SessionState {
            id,
            sockets,
            hints: [hint_a_rx, hint_b_rx],
            stats: Arc::clone(&stats),
            media: MediaState::new(),
            _leases: [a.lease, b.lease],
        })))?;
        let session = RelaySession {
            local,
            hints: [hint_a_tx, hint_b_tx],
            id,
            worker: Some(worker),
            stats,
            recording_failures: self.metrics.recording_failures.clone(),
        };
        // The thread takes the registration before any event of these sockets (it reads
        // its queue after each epoll_wait, before the events). On failure the session's
        // drop closes it there.
        for (index, fd) in (0u64..).zip(fds) {
            if let Some(worker) = &session.worker {
                worker
                    .watch(fd, id << 2 | index)
                    .map_err(MediaError::Engine)?;
            }
        }
        Ok(session)
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
    let socket = UdpSocket::bind(addr)?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}

/// Peer address of one side as given by its SDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PeerHint {
    rtp: SocketAddr,
    rtcp: SocketAddr,
}

/// The relay of one call. Dropping it (or [`RelaySession::close`]) ends the relay of its
/// sockets and returns the four ports to the pool.
///
/// Every method but `close` is synchronous and never waits: commands (play, record, codec)
/// are queued to the session's relay thread, which applies them in order.
#[derive(Debug)]
pub struct RelaySession {
    local: [SocketAddr; 2],
    hints: [watch::Sender<Option<PeerHint>>; 2],
    /// Session id in its relay thread.
    id: u64,
    /// `None` once closed.
    worker: Option<Arc<Worker>>,
    stats: Arc<Counters>,
    recording_failures: Counter,
}

/// What the session asks its task to do.
#[derive(Debug)]
enum Command {
    SetCodec {
        side: Side,
        codec: Codec,
        pt: u8,
    },
    Play {
        side: Side,
        prompt: Arc<Prompt>,
        repeat: bool,
        done: watch::Sender<PlayState>,
    },
    StopPlay {
        side: Side,
    },
    RecordStart {
        tap: mpsc::Sender<Chunk>,
    },
    RecordStop,
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

    /// Tell the session the G.711 codec and RTP payload type negotiated for `side` (from its
    /// SDP answer, RFC 3264): prompts to `side` are sent in it, and the recorder decodes
    /// `side`'s RTP of payload type `pt` with it. Until told, a side uses PCMU with payload
    /// type 0, and static types 0/8 are always decoded as PCMU/PCMA.
    ///
    /// # Errors
    /// [`MediaError::SessionClosed`] or [`MediaError::CommandQueueFull`].
    pub fn set_codec(&self, side: Side, codec: Codec, pt: u8) -> Result<(), MediaError> {
        self.command(Command::SetCodec {
            side,
            codec,
            pt: pt & 0x7F,
        })
    }

    /// Play `prompt` to `side`: RTP from `side`'s relay socket to its peer (latched, else
    /// hinted; while it has none the packets are not sent but time runs), in the side's
    /// codec, 20 ms (160 samples) per packet, a session-wide SSRC per side, marker bit on
    /// the first packet, sequence number and timestamp per RFC 3550 §5.1. With `repeat` the
    /// prompt loops (music on hold) until stopped.
    ///
    /// A play already running on `side` ends ([`PlayState::Replaced`]). The play ends by
    /// itself at the end of the prompt, on [`RelaySession::stop_play`], or when relayed
    /// media reaches `side` ([`PlayState::Preempted`]: the call is bridged).
    ///
    /// # Errors
    /// [`MediaError::SessionClosed`] or [`MediaError::CommandQueueFull`].
    pub fn play(
        &self,
        side: Side,
        prompt: Arc<Prompt>,
        repeat: bool,
    ) -> Result<PlayHandle, MediaError> {
        let (done, state) = watch::channel(PlayState::Playing);
        self.command(Command::Play {
            side,
            prompt,
            repeat,
            done,
        })?;
        Ok(PlayHandle { state })
    }

    /// Stop what plays on `side` ([`PlayState::Stopped`]); nothing if nothing plays.
    ///
    /// # Errors
    /// [`MediaError::SessionClosed`] or [`MediaError::CommandQueueFull`].
    pub fn stop_play(&self, side: Side) -> Result<(), MediaError> {
        self.command(Command::StopPlay { side })
    }

    /// Start recording the call to `path`: a stereo WAV, 8000 Hz, 16-bit linear, left =
    /// caller (side A), right = seat (side B), decoded from their G.711 RTP and placed by
    /// RTP timestamp (silence in gaps). The file is written by a blocking task fed through
    /// a bounded channel: a slow disk drops audio (counted in
    /// [`RelayStats::recording_chunks_dropped`]), a failing one ends the recording
    /// (`vigie_recording_failures_total`, a log line); neither touches the relay. A
    /// recording already running is finished first. Must be called inside a tokio runtime.
    ///
    /// # Errors
    /// [`MediaError::SessionClosed`] or [`MediaError::CommandQueueFull`] (then no file is
    /// created).
    pub fn record_start(&self, path: PathBuf) -> Result<RecordingHandle, MediaError> {
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| MediaError::SessionClosed)?;
        let (tap, rx) = mpsc::channel(recorder::CHANNEL_CAPACITY);
        let (done_tx, done) = oneshot::channel();
        // Queue the tap first so that a refused command creates no file.
        self.command(Command::RecordStart { tap })?;
        let failures = self.recording_failures.clone();
        runtime.spawn_blocking(move || recorder::run_writer(path, rx, failures, done_tx));
        Ok(RecordingHandle { done })
    }

    /// Stop recording; the writer completes the file (see [`RecordingHandle::finished`]).
    ///
    /// # Errors
    /// [`MediaError::SessionClosed`] or [`MediaError::CommandQueueFull`].
    pub fn record_stop(&self) -> Result<(), MediaError> {
        self.command(Command::RecordStop)
    }

    fn command(&self, command: Command) -> Result<(), MediaError> {
        let worker = self.worker.as_ref().ok_or(MediaError::SessionClosed)?;
        worker.send(Message::Command(self.id, command))
    }

    /// A snapshot of the session's counters.
    pub fn stats(&self) -> RelayStats {
        self.stats.snapshot()
    }

    /// Reception quality of `side`: what its last RTCP report blocks say, and the jitter
    /// vigie measures on its RTP.
    pub fn quality(&self, side: Side) -> LinkQuality {
        self.stats.quality(side.index())
    }

    /// End the relay of this session and wait until its sockets are closed: when this
    /// returns the ports are free for the next [`MediaRelay::allocate`].
    pub async fn close(mut self) {
        if let Some(worker) = self.worker.take() {
            let (done, closed) = oneshot::channel();
            if worker.send(Message::Close(self.id, Some(done))).is_ok() {
                // An error only says the thread ended (and dropped the sockets).
                let _ = closed.await;
            }
        }
    }
}

impl Drop for RelaySession {
    fn drop(&mut self) {
        if let Some(worker) = self.worker.take() {
            // A full queue: the thread is far behind; close through the blocking path so
            // that the ports are not leaked (the queue drains quickly).
            if let Err(MediaError::CommandQueueFull) = worker.send(Message::Close(self.id, None)) {
                worker.send_blocking(Message::Close(self.id, None));
            }
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
    /// Prompt RTP packets sent to side A's peer.
    pub prompt_packets_to_a: u64,
    /// Prompt RTP packets sent to side B's peer.
    pub prompt_packets_to_b: u64,
    /// RTP payloads not recorded because the recorder's channel was full (disk too slow).
    pub recording_chunks_dropped: u64,
}

/// Reception quality of one side (RFC 3550 §6.4.1).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LinkQuality {
    /// Report blocks received from the side in its SR/RR packets.
    pub report_blocks: u64,
    /// Fraction lost in the side's last report block, 0 to 1 (the 8-bit field / 256).
    pub fraction_lost: f64,
    /// Cumulative number of packets lost in the side's last report block.
    pub cumulative_lost: i64,
    /// Interarrival jitter in the side's last report block, in seconds (8 kHz clock).
    pub jitter_seconds: f64,
    /// Interarrival jitter vigie measures on the RTP it receives from the side, in seconds
    /// (RFC 3550 A.8; 8 kHz clock).
    pub observed_jitter_seconds: f64,
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
    /// Prompt packets, indexed by destination side.
    prompt_packets: [AtomicU64; 2],
    recording_dropped: AtomicU64,
    /// Per reporting side: report blocks, last fraction lost (1/256), last cumulative
    /// lost, last jitter (timestamp units), observed jitter × 16 (timestamp units).
    report_blocks: [AtomicU64; 2],
    fraction_lost: [AtomicU64; 2],
    cumulative_lost: [AtomicI64; 2],
    reported_jitter: [AtomicU64; 2],
    observed_jitter_x16: [AtomicU64; 2],
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
            prompt_packets_to_a: get(&self.prompt_packets[0]),
            prompt_packets_to_b: get(&self.prompt_packets[1]),
            recording_chunks_dropped: get(&self.recording_dropped),
        }
    }

    fn quality(&self, side: usize) -> LinkQuality {
        let side = side.min(1);
        let get = |c: &[AtomicU64; 2]| c[side].load(Ordering::Relaxed);
        let clock = f64::from(SAMPLE_RATE);
        LinkQuality {
            report_blocks: get(&self.report_blocks),
            fraction_lost: get(&self.fraction_lost) as f64 / 256.0,
            cumulative_lost: self.cumulative_lost[side].load(Ordering::Relaxed),
            jitter_seconds: get(&self.reported_jitter) as f64 / clock,
            observed_jitter_seconds: get(&self.observed_jitter_x16) as f64 / 16.0 / clock,
        }
    }
}

/// Largest datagram relayed, in octets; a larger one is truncated by the kernel and dropped
/// as malformed.
const MAX_DATAGRAM: usize = 4096;
/// Observed jitter goes into the histogram once per this many RTP packets of a side (about
/// once a second at 50 packets/s).
pub const JITTER_SAMPLE_EVERY: u32 = 50;
/// Late prompt packets sent at once when the task wakes up behind schedule; beyond that
/// the play skips ahead rather than burst.
const PLAY_CATCH_UP: usize = 3;
/// Report-block sources remembered per side to turn cumulative loss into increases.
const LOSS_SOURCES: usize = 4;

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

/// The recorder's end of the relay.
#[derive(Debug)]
struct Tap {
    tx: mpsc::Sender<Chunk>,
    start: Instant,
}

/// Per-session media state owned by the task (no lock: only the task touches it).
#[derive(Debug)]
struct MediaState {
    peers: [Peer; 2],
    /// Codec and payload type of each side.
    codecs: [(Codec, u8); 2],
    senders: [RtpSender; 2],
    players: [Option<Playback>; 2],
    tap: Option<Tap>,
    jitter: [JitterEstimator; 2],
    jitter_count: [u32; 2],
    /// (SSRC, last cumulative lost) of the report blocks each side sent.
    loss: [[Option<(u32, i32)>; LOSS_SOURCES]; 2],
    /// Origin of the arrival clock of the jitter estimators.
    start: Instant,
}

impl MediaState {
    fn new() -> MediaState {
        MediaState {
            peers: [Peer::default(); 2],
            codecs: [(Codec::Pcmu, 0); 2],
            senders: [RtpSender::random(), RtpSender::random()],
            players: [None, None],
            tap: None,
            jitter: [JitterEstimator::default(); 2],
            jitter_count: [0; 2],
            loss: [[None; LOSS_SOURCES]; 2],
            start: Instant::now(),
        }
    }

    fn next_due(&self) -> Option<Instant> {
        self.players.iter().flatten().map(|p| p.due).min()
    }

    /// The codec of payload type `pt` received from `side`, if it is G.711.
    fn codec_of(&self, side: usize, pt: u8) -> Option<Codec> {
        match self.codecs.get(side) {
            Some(&(codec, side_pt)) if side_pt == pt => Some(codec),
            _ => Codec::from_static_payload_type(pt),
        }
    }

    fn end_play(&mut self, side: usize, state: PlayState) {
        if let Some(play) = self.players.get_mut(side).and_then(Option::take) {
            play.end(state);
        }
    }

    /// Increase of the cumulative loss `side` reports for `ssrc` since its previous report
    /// (RFC 3550 §6.4.1; a first report counts from 0, a decrease counts nothing).
    fn loss_increase(&mut self, side: usize, ssrc: u32, cumulative: i32) -> u64 {
        let Some(table) = self.loss.get_mut(side) else {
            return 0;
        };
        let previous = table.iter_mut().find(|e| e.is_some_and(|(s, _)| s == ssrc));
        let (slot, before) = match previous {
            Some(slot) => {
                let before = slot.map_or(0, |(_, c)| c);
                (slot, before)
            }
            None => {
                // A free slot, else the first one (a rare fifth source).
                table.rotate_left(1);
                let Some(slot) = table.last_mut() else {
                    return 0;
                };
                (slot, 0)
            }
        };
        *slot = Some((ssrc, cumulative));
        u64::try_from(i64::from(cumulative) - i64::from(before)).unwrap_or(0)
    }
}

/// Jitter estimate and recorder tap for an RTP packet received from side `from`.
fn observe_rtp(
    media: &mut MediaState,
    stats: &Counters,
    metrics: &RelayMetrics,
    from: usize,
    packet: &[u8],
) {
    let Some(header) = RtpHeader::parse(packet) else {
        return;
    };
    let Some(codec) = media.codec_of(from, header.pt) else {
        return; // telephone-event, comfort noise…: not audio at 8 kHz we decode
    };
    let now = Instant::now();
    let elapsed = now.saturating_duration_since(media.start);
    let arrival = (elapsed.as_micros() * u128::from(SAMPLE_RATE) / 1_000_000) as u32;
    if let (Some(jitter), Some(count)) =
        (media.jitter.get_mut(from), media.jitter_count.get_mut(from))
    {
        jitter.update(header.ssrc, header.ts, arrival);
        stats.observed_jitter_x16[from].store(u64::from(jitter.jitter()) * 16, Ordering::Relaxed);
        *count += 1;
        if *count >= JITTER_SAMPLE_EVERY {
            *count = 0;
            if let Some(h) = metrics.jitter_by_side.get(from) {
                h[1].observe(jitter.jitter_seconds(SAMPLE_RATE));
            }
        }
    }
    let Some(tap) = &media.tap else { return };
    let payload = header.payload;
    let len = payload.len().min(MAX_CHUNK);
    let mut chunk = Chunk {
        side: from,
        codec,
        ssrc: header.ssrc,
        ts: header.ts,
        arrival: (now.saturating_duration_since(tap.start).as_micros() * u128::from(SAMPLE_RATE)
            / 1_000_000) as u64,
        len,
        payload: [0u8; MAX_CHUNK],
    };
    if let (Some(dst), Some(src)) = (chunk.payload.get_mut(..len), payload.get(..len)) {
        dst.copy_from_slice(src);
    }
    match tap.tx.try_send(chunk) {
        Ok(()) => {}
        Err(mpsc::error::TrySendError::Full(_)) => {
            stats.recording_dropped.fetch_add(1, Ordering::Relaxed);
        }
        // The writer ended (a file error, already logged and counted).
        Err(mpsc::error::TrySendError::Closed(_)) => media.tap = None,
    }
}

/// Read the report blocks of an RTCP compound packet from side `from`.
fn read_reports(
    media: &mut MediaState,
    stats: &Counters,
    metrics: &RelayMetrics,
    from: usize,
    packet: &[u8],
) {
    let side = from.min(1);
    // A malformed compound is still relayed (the peer may understand it); its valid
    // blocks before the fault count.
    let _ = rtcp::for_each_report_block(packet, |block| {
        stats.report_blocks[side].fetch_add(1, Ordering::Relaxed);
        stats.fraction_lost[side].store(u64::from(block.fraction_lost), Ordering::Relaxed);
        stats.cumulative_lost[side].store(i64::from(block.cumulative_lost), Ordering::Relaxed);
        stats.reported_jitter[side].store(u64::from(block.jitter), Ordering::Relaxed);
        metrics.jitter_by_side[side][0].observe(block.jitter_seconds(SAMPLE_RATE));
        let lost = media.loss_increase(side, block.ssrc, block.cumulative_lost);
        if lost > 0 {
            metrics.lost_by_side[side].inc_by(lost);
        }
    });
}

/// The fields of an RTP header the media layer reads (RFC 3550 §5.1).
struct RtpHeader<'a> {
    pt: u8,
    ts: u32,
    ssrc: u32,
    /// After the CSRC list and header extension, before padding.
    payload: &'a [u8],
}

impl<'a> RtpHeader<'a> {
    fn parse(packet: &'a [u8]) -> Option<RtpHeader<'a>> {
        let fixed: &[u8; 12] = packet.get(..12)?.try_into().ok()?;
        let first = fixed[0];
        let mut at = 12 + 4 * usize::from(first & 0x0F);
        if first & 0x10 != 0 {
            // Header extension (RFC 3550 §5.3.1): 16-bit profile, 16-bit length in words.
            let words = packet.get(at + 2..at + 4)?;
            at += 4 + 4 * usize::from(u16::from_be_bytes([words[0], words[1]]));
        }
        let mut end = packet.len();
        if first & 0x20 != 0 {
            end = end.checked_sub(usize::from(*packet.last()?))?;
        }
        Some(RtpHeader {
            pt: fixed[1] & 0x7F,
            ts: u32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]),
            ssrc: u32::from_be_bytes([fixed[8], fixed[9], fixed[10], fixed[11]]),
            payload: packet.get(at..end)?,
        })
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
