//! `rtpload follow`: RTP for every call of the call-rate stage of `tools/bench`.
//!
//! In the call-rate stage, SIPp sets up and tears down hundreds of short calls per second
//! (answer, hold about 1 s, BYE); SIPp's own RTP playback cannot keep up with that. This
//! mode learns each call's two relay ports *as the calls are set up*, by reading vigie's
//! SIP datagrams on the loopback interface (an `AF_PACKET` socket with a classic BPF
//! filter that lets through only UDP datagrams from vigie's SIP address, so the RTP
//! traffic on the same interface costs nothing here):
//!
//! - vigie's INVITE to a seat carries, in its SDP offer (RFC 4566 §5.14 `m=audio`), the
//!   call's **seat-side** relay port (side B);
//! - vigie's 2xx response to the trunk's INVITE (RFC 3261 §13.3.1.4) carries the call's
//!   **caller-side** relay port (side A) and means the call is answered end to end.
//!
//! vigie is a B2BUA: the two legs have their own Call-IDs, but vigie copies the caller's
//! From user part (the calling number, RFC 3261 §20.20) into the seat leg's From, and the
//! trunk gives every call its own number, so the From user pairs the two ports of a call.
//! At the 2xx, both streams of the call start: G.711 A-law, 20 ms per packet, from the
//! side A socket (the trunk's SDP address) to the side A relay port and from the side B
//! socket (the seats' SDP address) to the side B relay port, for `duration` (by default
//! 900 ms: the trunk hangs up 1 s after its ACK, and packets sent after vigie's BYE
//! handling would reach closed ports). The receivers count, per stream, what comes out of
//! the relay on the other side (loss, jitter, latency: see the crate root); a call of
//! which either stream delivered nothing is a **dead call**.
//!
//! The run ends at `run` or on `SIGINT`/`SIGTERM` (see [`stop_on_signals`]): no new call
//! starts, the calls playing finish their `duration`, late packets are awaited for
//! `drain`, then one JSON report is printed.

use crate::RecvBatch;
use std::collections::{HashMap, HashSet};
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::{BATCH, Batch, PTIME_MS, Report, Stats};

/// `SO_ATTACH_FILTER` (asm-generic/socket.h): attaches a classic BPF program.
const SO_ATTACH_FILTER: libc::c_int = 26;
/// `SO_RCVBUFFORCE` (asm-generic/socket.h): receive buffer above `rmem_max` (root).
const SO_RCVBUFFORCE: libc::c_int = 33;
/// `PACKET_STATISTICS` (linux/if_packet.h): packets seen and dropped since last read.
const PACKET_STATISTICS: libc::c_int = 6;
/// `PACKET_OUTGOING` (linux/if_packet.h): the packet type of a datagram leaving the host.
const PACKET_OUTGOING: u8 = 4;
/// Datagrams per `recvmmsg` on the packet socket, and the size of each buffer (octets):
/// a SIP INVITE with SDP is about 1 KiB; loopback's MTU is 64 KiB, so take larger ones.
const SNIFF_BATCH: usize = 32;
const SNIFF_BUF: usize = 9000;
/// Receive buffer of every socket of this mode, octets (set with `SO_RCVBUFFORCE`).
const RCVBUF: libc::c_int = 32 << 20;

/// Set by `SIGINT`/`SIGTERM` once [`stop_on_signals`] is installed.
static SIGNALLED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    SIGNALLED.store(true, Ordering::Relaxed);
}

/// Makes `SIGINT` and `SIGTERM` end the run gracefully (calls playing finish, the
/// report is printed) instead of killing the process.
pub fn stop_on_signals() {
    let handler: extern "C" fn(libc::c_int) = on_signal;
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe {
            libc::signal(sig, handler as libc::sighandler_t);
        }
    }
}

/// What to follow and how to play it.
#[derive(Debug, Clone)]
pub struct FollowPlan {
    /// vigie's SIP address (UDP): only datagrams *from* it are read.
    pub sip: SocketAddrV4,
    /// Address of vigie's relay ports (the `c=` of its SDP in the bench).
    pub relay: Ipv4Addr,
    /// Interface to read SIP on (`lo` in the bench).
    pub iface: String,
    /// Side A (trunk) socket: the media address of the trunk's SDP offers.
    pub bind_a: SocketAddrV4,
    /// Side B (seat) socket: the media address of the seats' SDP answers.
    pub bind_b: SocketAddrV4,
    /// How long each call's streams play from its 2xx; packets are due every 20 ms from
    /// `start_delay` on, and none is sent at or after `duration`.
    pub duration: Duration,
    /// Wait after the 2xx before the first packet (0: at once).
    pub start_delay: Duration,
    /// Longest run: no call starts after it (a signal ends the run earlier).
    pub run: Duration,
    /// Time to wait for late packets after the last call's streams ended.
    pub drain: Duration,
    /// Most calls played in the run (sizes the per-stream tables: 2 streams per call).
    pub max_calls: usize,
}

/// Figures of a follow run: the calls seen on the wire and the streams played.
#[derive(Debug, Clone, PartialEq)]
pub struct FollowReport {
    /// vigie INVITEs with SDP seen (distinct From users): seat-side ports learnt.
    pub offers: u64,
    /// 2xx with SDP to an INVITE seen (distinct From users): calls answered.
    pub answered: u64,
    /// Answered calls whose streams were played.
    pub played: u64,
    /// Answered calls of which no INVITE to a seat had been seen: not played.
    pub unpaired: u64,
    /// Answered calls beyond `max_calls`: not played.
    pub over_capacity: u64,
    /// Played calls of which at least one stream delivered no packet at all.
    pub dead_calls: u64,
    /// Packets not sent because this process fell behind past their stream's end.
    pub skipped: u64,
    /// Packets lost from side A to side B (caller to seat), and from B to A.
    pub lost_a_to_b: u64,
    pub lost_b_to_a: u64,
    /// Streams (not dead) whose last packet did not arrive: loss at the end of a call
    /// (e.g. the relay port closed before the stream ended).
    pub tail_lost_streams: u64,
    /// SIP datagrams from vigie read off the interface.
    pub sniffed: u64,
    /// Datagrams the kernel dropped from the packet socket (`PACKET_STATISTICS`).
    pub sniff_drops: u64,
    /// Loss, jitter and latency of the streams played (2 per played call).
    pub rtp: Report,
}

impl FollowReport {
    /// One JSON object; the stream figures are the nested object `rtp`.
    pub fn to_json(&self) -> String {
        format!(
            "{{\"offers\":{},\"answered\":{},\"played\":{},\"unpaired\":{},\
             \"over_capacity\":{},\"dead_calls\":{},\"skipped\":{},\"lost_a_to_b\":{},\
             \"lost_b_to_a\":{},\"tail_lost_streams\":{},\"sniffed\":{},\
             \"sniff_drops\":{},\"rtp\":{}}}",
            self.offers,
            self.answered,
            self.played,
            self.unpaired,
            self.over_capacity,
            self.dead_calls,
            self.skipped,
            self.lost_a_to_b,
            self.lost_b_to_a,
            self.tail_lost_streams,
            self.sniffed,
            self.sniff_drops,
            self.rtp.to_json(),
        )
    }
}

/// What one of vigie's SIP messages tells about a call's relay ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SipEvent {
    /// vigie's INVITE (to a seat) offering relay port `port` (side B); `key` is the From
    /// user part.
    Offer { key: String, port: u16 },
    /// vigie's 2xx to an INVITE (to the trunk) answering with relay port `port` (side A).
    Answer { key: String, port: u16 },
}

/// The UDP payload of an IPv4 datagram (`ip` starts at the IP header, as an
/// `AF_PACKET`/`SOCK_DGRAM` socket delivers it) if it was sent from `from`.
/// `None` for anything else (not IPv4/UDP, other source, truncated, a later fragment).
pub fn udp_payload(ip: &[u8], from: SocketAddrV4) -> Option<&[u8]> {
    let (&vihl, _) = ip.split_first()?;
    if vihl >> 4 != 4 || *ip.get(9)? != 17 {
        return None;
    }
    let frag = u16::from_be_bytes(ip.get(6..8)?.try_into().ok()?);
    if frag & 0x1fff != 0 {
        return None;
    }
    let src = Ipv4Addr::from(<[u8; 4]>::try_from(ip.get(12..16)?).ok()?);
    let ihl = usize::from(vihl & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes(ip.get(2..4)?.try_into().ok()?));
    let udp = ip.get(ihl..total.min(ip.len()))?;
    let sport = u16::from_be_bytes(udp.get(0..2)?.try_into().ok()?);
    let ulen = usize::from(u16::from_be_bytes(udp.get(4..6)?.try_into().ok()?));
    if src != *from.ip() || sport != from.port() || ulen < 8 {
        return None;
    }
    udp.get(8..ulen.min(udp.len()))
}

/// Port of the first `m=audio` line of an SDP body (RFC 4566 §5.14); `None` if there is
/// none or its port is 0 (a refused stream).
pub fn sdp_audio_port(body: &str) -> Option<u16> {
    let line = body
        .lines()
        .find_map(|l| l.trim_end().strip_prefix("m=audio "))?;
    let port = line
        .split(' ')
        .next()?
        .split('/')
        .next()?
        .parse::<u16>()
        .ok()?;
    (port != 0).then_some(port)
}

/// User part of a From/To header value (`"Name" <sip:user@host>;tag=x` or
/// `sip:user@host;tag=x`), RFC 3261 §20.20 and §25.1.
fn header_user(value: &str) -> Option<&str> {
    let uri = match value.split_once('<') {
        Some((_, rest)) => rest.split('>').next()?,
        None => value.split(';').next()?,
    };
    let (_, rest) = uri.trim().split_once(':')?;
    let (user, _) = rest.split_once('@')?;
    (!user.is_empty()).then_some(user)
}

/// Classifies one SIP message sent by vigie: an INVITE with SDP is an [`SipEvent::Offer`],
/// a 2xx whose CSeq method is INVITE with SDP an [`SipEvent::Answer`]; anything else
/// (provisional responses, ACK, BYE, messages without From user or SDP) is `None`.
/// Header names are matched case-insensitively, compact forms included (RFC 3261 §7.3.3).
pub fn classify(msg: &[u8]) -> Option<SipEvent> {
    let text = std::str::from_utf8(msg).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let mut lines = head.split("\r\n");
    let first = lines.next()?;
    let offer = if first.starts_with("INVITE ") {
        true
    } else if first.starts_with("SIP/2.0 2") {
        false
    } else {
        return None;
    };
    let (mut key, mut cseq_invite) = (None, false);
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        if name.eq_ignore_ascii_case("from") || name.eq_ignore_ascii_case("f") {
            key = header_user(value);
        } else if name.eq_ignore_ascii_case("cseq") {
            cseq_invite = value.split_whitespace().nth(1) == Some("INVITE");
        }
    }
    let key = key?.to_owned();
    let port = sdp_audio_port(body)?;
    match (offer, cseq_invite) {
        (true, _) => Some(SipEvent::Offer { key, port }),
        (false, true) => Some(SipEvent::Answer { key, port }),
        (false, false) => None,
    }
}

/// A call to play: its index (streams `2 * id` A→B and `2 * id + 1` B→A) and vigie's
/// relay ports for side A (caller) and side B (seat).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Call {
    pub id: usize,
    pub a_port: u16,
    pub b_port: u16,
}

/// Pairs offers and answers by From user (sans-IO): retransmissions are counted once;
/// an answer starts a call once.
#[derive(Debug, Default)]
pub struct Pairing {
    offers: HashMap<String, u16>,
    answered: HashSet<String>,
    max_calls: usize,
    next_id: usize,
    /// Distinct offers seen.
    pub offers_seen: u64,
    /// Distinct answers seen.
    pub answers_seen: u64,
    /// Answers without an offer.
    pub unpaired: u64,
    /// Answers past `max_calls`.
    pub over_capacity: u64,
}

impl Pairing {
    /// A pairing that numbers at most `max_calls` calls.
    pub fn new(max_calls: usize) -> Pairing {
        Pairing {
            max_calls,
            ..Pairing::default()
        }
    }

    /// Takes one event; returns the call to start when it is the first answer of a call
    /// whose offer was seen.
    pub fn on_event(&mut self, ev: SipEvent) -> Option<Call> {
        match ev {
            SipEvent::Offer { key, port } => {
                if self.answered.contains(&key) {
                    return None; // an INVITE retransmission after the call started
                }
                if self.offers.insert(key, port).is_none() {
                    self.offers_seen += 1;
                }
                None
            }
            SipEvent::Answer { key, port } => {
                if self.answered.contains(&key) {
                    return None; // a 2xx retransmission
                }
                self.answers_seen += 1;
                let Some(b_port) = self.offers.remove(&key) else {
                    self.answered.insert(key);
                    self.unpaired += 1;
                    return None;
                };
                self.answered.insert(key);
                if self.next_id >= self.max_calls {
                    self.over_capacity += 1;
                    return None;
                }
                let id = self.next_id;
                self.next_id += 1;
                Some(Call {
                    id,
                    a_port: port,
                    b_port,
                })
            }
        }
    }
}

/// One call's two streams being played.
#[derive(Debug, Clone, Copy)]
struct Playing {
    id: usize,
    a: SocketAddrV4,
    b: SocketAddrV4,
    /// When the call was answered, nanoseconds since the run started.
    start_ns: u64,
    /// Next packet number (0, 1, …): due at `start_ns + delay + k * 20 ms`.
    next: u64,
}

/// Plays calls' streams on a virtual clock (nanoseconds since the run started;
/// sans-IO: [`Player::poll`] hands the due packets to a sending closure).
#[derive(Debug)]
pub struct Player {
    playing: Vec<Playing>,
    relay: Ipv4Addr,
    delay_ns: u64,
    duration_ns: u64,
    /// Packets sent, per stream id.
    pub sent: Vec<u64>,
    /// Packets not sent because their stream had ended when they were polled.
    pub skipped: u64,
}

const PTIME_NS: u64 = PTIME_MS * 1_000_000;

impl Player {
    /// A player sending to `relay`'s ports; streams start `delay` after the answer and
    /// send no packet at or after `duration` from the answer.
    pub fn new(relay: Ipv4Addr, delay: Duration, duration: Duration) -> Player {
        let ns = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        Player {
            playing: Vec::new(),
            relay,
            delay_ns: ns(delay),
            duration_ns: ns(duration),
            sent: Vec::new(),
            skipped: 0,
        }
    }

    /// Packets per stream when the player keeps up: those due before `duration`.
    pub fn packets_per_stream(&self) -> u64 {
        self.duration_ns
            .saturating_sub(self.delay_ns)
            .div_ceil(PTIME_NS)
    }

    /// Starts `call`, answered at `now_ns`.
    pub fn add(&mut self, call: Call, now_ns: u64) {
        let streams = call.id * 2 + 2;
        if self.sent.len() < streams {
            self.sent.resize(streams, 0);
        }
        self.playing.push(Playing {
            id: call.id,
            a: SocketAddrV4::new(self.relay, call.a_port),
            b: SocketAddrV4::new(self.relay, call.b_port),
            start_ns: now_ns,
            next: 0,
        });
    }

    /// No call is playing.
    pub fn idle(&self) -> bool {
        self.playing.is_empty()
    }

    /// Sends every packet due at `now_ns`: `send(from_a, target, packet)`. A stream
    /// whose end has passed stops; its unsent packets count as skipped.
    pub fn poll(
        &mut self,
        now_ns: u64,
        mut send: impl FnMut(bool, SocketAddrV4, &[u8; super::PACKET_OCTETS]),
    ) {
        let per_stream = self.packets_per_stream();
        let mut i = 0;
        while let Some(p) = self.playing.get_mut(i) {
            let end = p.start_ns.saturating_add(self.duration_ns);
            while p.next < per_stream {
                let due = p.start_ns + self.delay_ns + p.next * PTIME_NS;
                if due > now_ns {
                    break;
                }
                if now_ns >= end {
                    self.skipped += 2 * (per_stream - p.next);
                    p.next = per_stream;
                    break;
                }
                let seq = u16::try_from(p.next & 0xffff).unwrap_or(0);
                let ts = u32::from(seq).wrapping_mul(160);
                for (k, from_a, target) in [(0, true, p.a), (1, false, p.b)] {
                    let stream = p.id * 2 + k;
                    send(
                        from_a,
                        target,
                        &super::packet(stream, seq, ts, now_ns, true),
                    );
                    if let Some(c) = self.sent.get_mut(stream) {
                        *c += 1;
                    }
                }
                p.next += 1;
            }
            if p.next >= per_stream {
                self.playing.swap_remove(i);
            } else {
                i += 1;
            }
        }
    }
}

/// Opens the `AF_PACKET` socket reading IPv4 on `iface`, with a BPF filter passing only
/// UDP datagrams from `sip` (so RTP on the same interface is not copied to us).
fn sniffer(iface: &str, sip: SocketAddrV4) -> io::Result<OwnedFd> {
    let name = std::ffi::CString::new(iface).map_err(io::Error::other)?;
    // SAFETY: a NUL-terminated name.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        return Err(io::Error::last_os_error());
    }
    let proto = u16::try_from(libc::ETH_P_IP).unwrap_or(0x0800).to_be();
    // SAFETY: plain socket(2) call; the descriptor is owned below.
    let raw = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            libc::c_int::from(proto),
        )
    };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut prog = bpf_from(sip);
    let fprog = libc::sock_fprog {
        len: u16::try_from(prog.len()).unwrap_or(0),
        filter: prog.as_mut_ptr(),
    };
    setsockopt(&fd, libc::SOL_SOCKET, SO_ATTACH_FILTER, &fprog)?;
    if setsockopt(&fd, libc::SOL_SOCKET, SO_RCVBUFFORCE, &RCVBUF).is_err() {
        setsockopt(&fd, libc::SOL_SOCKET, libc::SO_RCVBUF, &RCVBUF)?;
    }
    let tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 20_000,
    };
    setsockopt(&fd, libc::SOL_SOCKET, libc::SO_RCVTIMEO, &tv)?;
    // SAFETY: sockaddr_ll is plain data; zero is valid for every field.
    let mut ll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    ll.sll_family = u16::try_from(libc::AF_PACKET).unwrap_or(17);
    ll.sll_protocol = proto;
    ll.sll_ifindex = i32::try_from(index).unwrap_or(0);
    // SAFETY: a valid sockaddr_ll and its size.
    let r = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&raw const ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

/// Classic BPF (filter.txt): accept UDP from `sip`'s address and port, offsets from the
/// IPv4 header (what a `SOCK_DGRAM` packet socket's filter sees). Only the arriving copy
/// of a datagram is taken: should the kernel also hand over the leaving one
/// (`PACKET_OUTGOING`), a message would be read twice.
fn bpf_from(sip: SocketAddrV4) -> Vec<libc::sock_filter> {
    let op = |code: u32, jt: u8, jf: u8, k: u32| libc::sock_filter {
        code: u16::try_from(code).unwrap_or(0),
        jt,
        jf,
        k,
    };
    use libc::{BPF_ABS, BPF_B, BPF_H, BPF_IND, BPF_JEQ, BPF_JMP, BPF_K, BPF_LD, BPF_LDX};
    use libc::{BPF_MSH, BPF_RET, BPF_W};
    let pkttype = (libc::SKF_AD_OFF + libc::SKF_AD_PKTTYPE).cast_unsigned();
    let outgoing = u32::from(PACKET_OUTGOING);
    vec![
        op(BPF_LD | BPF_W | BPF_ABS, 0, 0, pkttype), // 0: A = packet type
        op(BPF_JMP | BPF_JEQ | BPF_K, 8, 0, outgoing), // 1: leaving copy? drop
        op(BPF_LD | BPF_B | BPF_ABS, 0, 0, 9),       // 2: A = protocol
        op(BPF_JMP | BPF_JEQ | BPF_K, 0, 6, 17),     // 3: UDP? else drop
        op(BPF_LD | BPF_W | BPF_ABS, 0, 0, 12),      // 4: A = source address
        op(BPF_JMP | BPF_JEQ | BPF_K, 0, 4, u32::from(*sip.ip())), // 5
        op(BPF_LDX | BPF_B | BPF_MSH, 0, 0, 0),      // 6: X = IP header length
        op(BPF_LD | BPF_H | BPF_IND, 0, 0, 0),       // 7: A = UDP source port
        op(BPF_JMP | BPF_JEQ | BPF_K, 0, 1, u32::from(sip.port())), // 8
        op(BPF_RET | BPF_K, 0, 0, 0xffff),           // 9: accept
        op(BPF_RET | BPF_K, 0, 0, 0),                // 10: drop
    ]
}

fn setsockopt<T>(fd: &impl AsRawFd, level: libc::c_int, opt: libc::c_int, v: &T) -> io::Result<()> {
    // SAFETY: `v` is a valid T of the size given.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            opt,
            (v as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Packets the kernel dropped from the packet socket since the last call.
fn sniff_drops(fd: &OwnedFd) -> u64 {
    let mut st = [0u32; 2]; // struct tpacket_stats { tp_packets, tp_drops }
    let mut len = std::mem::size_of_val(&st) as libc::socklen_t;
    // SAFETY: a buffer of the size given.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            PACKET_STATISTICS,
            st.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if r < 0 { 0 } else { u64::from(st[1]) }
}

impl RecvBatch {
    /// Receives what is queued on `fd`, without waiting: the number of datagrams now in
    /// the batch (0 when none is queued).
    fn recv(&mut self, fd: &impl AsRawFd) -> io::Result<usize> {
        debug_assert_eq!(self.iovs.len(), self.msgs.len());
        loop {
            // SAFETY: msgs/iovs/bufs are valid for msgs.len() messages (see `new`).
            let r = unsafe {
                libc::recvmmsg(
                    fd.as_raw_fd(),
                    self.msgs.as_mut_ptr(),
                    u32::try_from(self.msgs.len()).unwrap_or(1),
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            if r >= 0 {
                return Ok(usize::try_from(r).unwrap_or(0));
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => {}
                Some(libc::EAGAIN | libc::ECONNREFUSED) => return Ok(0),
                _ => return Err(e),
            }
        }
    }

    /// Datagram `i` of the last `recv`.
    fn get(&self, i: usize) -> Option<&[u8]> {
        let len = usize::try_from(self.msgs.get(i)?.msg_len).ok()?;
        self.bufs.get(i)?.get(..len)
    }

    fn capacity(&self) -> usize {
        self.msgs.len()
    }
}

/// The packet socket reading vigie's SIP, and the pairing of what it read.
struct Sniffer {
    fd: OwnedFd,
    sip: SocketAddrV4,
    rx: RecvBatch,
    pairing: Pairing,
    /// SIP datagrams from vigie read.
    datagrams: u64,
}

impl Sniffer {
    fn open(iface: &str, sip: SocketAddrV4, max_calls: usize) -> io::Result<Sniffer> {
        Ok(Sniffer {
            fd: sniffer(iface, sip)?,
            sip,
            rx: RecvBatch::new(SNIFF_BATCH, SNIFF_BUF),
            pairing: Pairing::new(max_calls),
            datagrams: 0,
        })
    }

    /// Reads every datagram queued (without waiting); appends the calls answered.
    fn poll(&mut self, calls: &mut Vec<Call>) -> io::Result<()> {
        loop {
            let n = self.rx.recv(&self.fd)?;
            for i in 0..n {
                let Some(sip) = self.rx.get(i).and_then(|ip| udp_payload(ip, self.sip)) else {
                    continue;
                };
                self.datagrams += 1;
                if let Some(call) = classify(sip).and_then(|ev| self.pairing.on_event(ev)) {
                    calls.push(call);
                }
            }
            if n < self.rx.capacity() {
                return Ok(());
            }
        }
    }
}

/// Drains a media socket (without waiting) into `stats` and `high` (per stream, the
/// highest packet number received + 1); the arrival time of a batch is read once, when
/// `recvmmsg` returns.
fn drain(
    sock: &UdpSocket,
    rx: &mut RecvBatch,
    stats: &mut Stats,
    high: &mut [u32],
    t0: Instant,
) -> io::Result<()> {
    loop {
        let n = rx.recv(sock)?;
        let arrival_ns = u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX);
        for i in 0..n {
            if let Some((id, ts, send_ns, measured)) = rx.get(i).and_then(super::parse) {
                stats.arrive(id, ts, send_ns, arrival_ns, measured);
                if let Some(h) = high.get_mut(id) {
                    *h = (*h).max(ts / 160 + 1);
                }
            }
        }
        if n < rx.capacity() {
            return Ok(());
        }
    }
}

/// Follows vigie's calls and plays their RTP until `plan.run` or a signal; then lets the
/// calls playing finish, waits `plan.drain` and reports.
///
/// One thread does everything, on a 1 ms tick: it drains the packet socket and both media
/// sockets without waiting, starts the calls answered, sends the packets due (one
/// `sendmmsg` per socket), then sleeps to the next tick. A wake-up per packet (a blocking
/// receiver per socket) cost more CPU than everything else at a few hundred calls per
/// second, and this process shares the cores with SIPp and vigie. The price: arrival
/// times, hence latency and jitter, include up to 1 ms of polling delay (the media stage
/// measures those); loss and dead calls are exact.
///
/// # Errors
/// The packet socket cannot be opened (needs `CAP_NET_RAW`) or the interface is unknown,
/// a media socket cannot be bound, or a socket call fails with anything but
/// `EAGAIN`/`EINTR`.
pub fn run(plan: &FollowPlan) -> io::Result<FollowReport> {
    let mut sniffer = Sniffer::open(&plan.iface, plan.sip, plan.max_calls)?;
    let a = media_socket(plan.bind_a)?;
    let b = media_socket(plan.bind_b)?;
    let t0 = Instant::now();
    eprintln!(
        "rtpload follow: listening for SIP from {} on {}",
        plan.sip, plan.iface
    );
    let deadline = t0 + plan.run;
    let should_stop = || SIGNALLED.load(Ordering::Relaxed) || Instant::now() >= deadline;
    let played = play(
        plan,
        &a,
        &b,
        t0,
        &mut |calls| sniffer.poll(calls),
        &should_stop,
    )?;
    let drops = sniff_drops(&sniffer.fd);
    Ok(report(&sniffer.pairing, sniffer.datagrams, drops, &played))
}

/// Binds a media socket with a large receive buffer (the streams of a whole step arrive
/// at it).
fn media_socket(addr: SocketAddrV4) -> io::Result<UdpSocket> {
    let s = super::open(addr)?;
    // Best effort above rmem_max (root); `open` already asked for 16 MiB within it.
    let _ = setsockopt(&s, libc::SOL_SOCKET, SO_RCVBUFFORCE, &RCVBUF);
    Ok(s)
}

/// What [`play`] played and measured.
struct Played {
    player: Player,
    stats: Stats,
    /// Per stream, the highest packet number received + 1 (0: none).
    high: Vec<u32>,
}

/// Plays the calls `source` hands over (polled every tick until `should_stop()`), until
/// every call has played and `plan.drain` has passed; measures what arrives on `a` and
/// `b` meanwhile.
fn play(
    plan: &FollowPlan,
    a: &UdpSocket,
    b: &UdpSocket,
    t0: Instant,
    source: &mut dyn FnMut(&mut Vec<Call>) -> io::Result<()>,
    should_stop: &dyn Fn() -> bool,
) -> io::Result<Played> {
    let n = plan.max_calls.saturating_mul(2);
    let mut stats = Stats::new(n);
    let mut high = vec![0u32; n];
    let (mut rx_a, mut rx_b) = (RecvBatch::new(BATCH, 2048), RecvBatch::new(BATCH, 2048));
    let mut player = Player::new(plan.relay, plan.start_delay, plan.duration);
    let (mut out_a, mut out_b) = (Batch::new(), Batch::new());
    let drain_ns = u64::try_from(plan.drain.as_nanos()).unwrap_or(u64::MAX);
    let (mut stopping, mut end_ns) = (false, None);
    let mut calls = Vec::new();
    let mut tick: u64 = 0;
    loop {
        if !stopping && should_stop() {
            stopping = true;
        }
        drain(a, &mut rx_a, &mut stats, &mut high, t0)?;
        drain(b, &mut rx_b, &mut stats, &mut high, t0)?;
        let now_ns = u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX);
        if !stopping {
            source(&mut calls)?;
            for call in calls.drain(..) {
                player.add(call, now_ns);
            }
        }
        let mut failed = None;
        player.poll(now_ns, |from_a, target, pkt| {
            let (out, sock) = if from_a {
                (&mut out_a, a)
            } else {
                (&mut out_b, b)
            };
            out.push(target, pkt);
            if out.len() == BATCH
                && let Err(e) = out.flush(sock)
            {
                failed = Some(e);
            }
        });
        if let Some(e) = failed {
            return Err(e);
        }
        out_a.flush(a)?;
        out_b.flush(b)?;
        if stopping && player.idle() {
            let end = *end_ns.get_or_insert(now_ns.saturating_add(drain_ns));
            if now_ns >= end {
                return Ok(Played {
                    player,
                    stats,
                    high,
                });
            }
        }
        // Next 1 ms tick of the run's clock.
        tick = tick.max(now_ns / 1_000_000) + 1;
        let due = t0 + Duration::from_millis(tick);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
    }
}

fn report(pairing: &Pairing, datagrams: u64, sniff_drops: u64, played: &Played) -> FollowReport {
    let (player, high) = (&played.player, &played.high);
    let streams = player.sent.len();
    let mut stats = played.stats.clone();
    stats.received.truncate(streams);
    stats.jitter.truncate(streams);
    stats.transit.truncate(streams);
    let dead_calls = player
        .sent
        .chunks(2)
        .zip(stats.received.chunks(2))
        .filter(|(s, r)| s.iter().zip(*r).any(|(s, r)| *s > 0 && *r == 0))
        .count();
    let (mut lost, mut tail) = ([0u64; 2], 0u64);
    for (i, ((s, r), h)) in player
        .sent
        .iter()
        .zip(&stats.received)
        .zip(high)
        .enumerate()
    {
        if let Some(l) = lost.get_mut(i % 2) {
            *l += s.saturating_sub(*r);
        }
        if *r > 0 && u64::from(*h) < *s {
            tail += 1;
        }
    }
    FollowReport {
        offers: pairing.offers_seen,
        answered: pairing.answers_seen,
        played: u64::try_from(streams / 2).unwrap_or(0),
        unpaired: pairing.unpaired,
        over_capacity: pairing.over_capacity,
        dead_calls: u64::try_from(dead_calls).unwrap_or(0),
        skipped: player.skipped,
        lost_a_to_b: lost[0],
        lost_b_to_a: lost[1],
        tail_lost_streams: tail,
        sniffed: datagrams,
        sniff_drops,
        rtp: stats.report(&player.sent),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VIGIE: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(127, 77, 19, 1), 5060);

    /// vigie's 200 OK to the trunk, as captured on lo (headers as vigie writes them).
    const ANSWER: &str = "SIP/2.0 200 OK\r\n\
        Via: SIP/2.0/UDP 127.77.19.1:5080;branch=z9hG4bK-1-0\r\n\
        From: \"Bench 17\" <sip:+2126000017@127.77.19.1:5080>;tag=4242SIPpTag0017\r\n\
        To: <sip:19@127.77.19.1:5060>;tag=a1b2c3\r\n\
        Call-ID: 17-4242@127.77.19.1\r\n\
        CSeq: 1 INVITE\r\n\
        Contact: <sip:vigie@127.77.19.1:5060>\r\n\
        Content-Type: application/sdp\r\n\
        Content-Length: 130\r\n\r\n\
        v=0\r\no=vigie 1 1 IN IP4 127.77.19.1\r\ns=-\r\nc=IN IP4 127.77.19.1\r\nt=0 0\r\n\
        m=audio 10040 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n";

    /// vigie's INVITE to a seat: its own Call-ID, the caller's From user.
    const OFFER: &str = "INVITE sip:s00007@127.77.19.1:5070 SIP/2.0\r\n\
        Via: SIP/2.0/UDP 127.77.19.1:5060;branch=z9hG4bKx\r\n\
        f: \"Bench 17\" <sip:+2126000017@127.77.19.1>;tag=v1\r\n\
        To: <sip:s00007@127.77.19.1:5070>\r\n\
        Call-ID: 0f3c-abcdef@vigie\r\n\
        CSeq: 1 INVITE\r\n\
        Content-Type: application/sdp\r\n\r\n\
        v=0\r\nc=IN IP4 127.77.19.1\r\nt=0 0\r\nm=audio 10042 RTP/AVP 8 0\r\n";

    /// An IPv4 + UDP datagram from `from` carrying `payload`, as a packet socket gives it.
    fn datagram(from: SocketAddrV4, payload: &[u8]) -> Vec<u8> {
        let total = 28 + payload.len();
        let mut ip = vec![0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 17, 0, 0];
        ip[2..4].copy_from_slice(&u16::try_from(total).unwrap_or(0).to_be_bytes());
        ip.extend_from_slice(&from.ip().octets());
        ip.extend_from_slice(&[127, 77, 19, 1]);
        ip.extend_from_slice(&from.port().to_be_bytes());
        ip.extend_from_slice(&5080u16.to_be_bytes());
        ip.extend_from_slice(&u16::try_from(8 + payload.len()).unwrap_or(0).to_be_bytes());
        ip.extend_from_slice(&[0, 0]);
        ip.extend_from_slice(payload);
        ip
    }

    #[test]
    fn extracts_the_sdp_port_from_a_captured_datagram() {
        let d = datagram(VIGIE, ANSWER.as_bytes());
        let sip = udp_payload(&d, VIGIE).expect("from vigie");
        assert_eq!(sip, ANSWER.as_bytes());
        assert_eq!(
            classify(sip),
            Some(SipEvent::Answer {
                key: "+2126000017".into(),
                port: 10040
            })
        );
        // The same datagram from another port (the trunk's own SIP) is not vigie's.
        let other = SocketAddrV4::new(*VIGIE.ip(), 5080);
        assert_eq!(
            udp_payload(&datagram(other, ANSWER.as_bytes()), VIGIE),
            None
        );
        // Truncated or non-UDP datagrams give nothing, without panicking.
        assert_eq!(udp_payload(d.get(..20).unwrap_or_default(), VIGIE), None);
        let mut tcp = d.clone();
        tcp[9] = 6;
        assert_eq!(udp_payload(&tcp, VIGIE), None);
        assert_eq!(
            classify(OFFER.as_bytes()),
            Some(SipEvent::Offer {
                key: "+2126000017".into(),
                port: 10042
            })
        );
    }

    #[test]
    fn ignores_messages_that_do_not_carry_a_call_port() {
        // A 180 with SDP, a 200 to BYE, an INVITE without SDP, a refused stream (port 0).
        let ringing = ANSWER.replace("200 OK", "180 Ringing");
        let bye_ok = ANSWER.replace("CSeq: 1 INVITE", "CSeq: 2 BYE");
        let no_sdp = OFFER
            .split("\r\n\r\n")
            .next()
            .unwrap_or_default()
            .to_owned()
            + "\r\n\r\n";
        let refused = OFFER.replace("m=audio 10042", "m=audio 0");
        for m in [ringing, bye_ok, no_sdp, refused] {
            assert_eq!(classify(m.as_bytes()), None, "{m}");
        }
        assert_eq!(classify(&[0xff, 0xfe, b'\r', b'\n']), None);
        assert_eq!(
            sdp_audio_port("m=video 5000 RTP/AVP 96\r\nm=audio 7078/2 RTP/AVP 0"),
            Some(7078)
        );
        assert_eq!(header_user("sip:alice@example.com;tag=1"), Some("alice"));
        assert_eq!(header_user("<sip:example.com>"), None);
    }

    #[test]
    fn pairs_offer_and_answer_by_from_user_once() {
        let mut p = Pairing::new(2);
        let offer = |k: &str, port| SipEvent::Offer {
            key: k.into(),
            port,
        };
        let answer = |k: &str, port| SipEvent::Answer {
            key: k.into(),
            port,
        };
        assert_eq!(p.on_event(offer("+1", 10002)), None);
        assert_eq!(p.on_event(offer("+1", 10002)), None); // retransmission
        assert_eq!(p.on_event(offer("+2", 10006)), None);
        // Answers in another order than the offers: paired by key, not by order.
        assert_eq!(
            p.on_event(answer("+2", 10004)),
            Some(Call {
                id: 0,
                a_port: 10004,
                b_port: 10006
            })
        );
        assert_eq!(
            p.on_event(answer("+1", 10000)),
            Some(Call {
                id: 1,
                a_port: 10000,
                b_port: 10002
            })
        );
        assert_eq!(p.on_event(answer("+1", 10000)), None); // 2xx retransmission
        assert_eq!(p.on_event(offer("+1", 10002)), None); // late INVITE retransmission
        assert_eq!(p.on_event(answer("+9", 10008)), None); // never offered
        p.on_event(offer("+3", 10010));
        assert_eq!(p.on_event(answer("+3", 10012)), None); // past max_calls
        assert_eq!(
            (p.offers_seen, p.answers_seen, p.unpaired, p.over_capacity),
            (3, 4, 1, 1)
        );
    }

    fn drive(player: &mut Player, polls: &[u64]) -> Vec<(u64, bool, u16, usize)> {
        let mut out = Vec::new();
        for &t in polls {
            player.poll(t, |from_a, to, pkt| {
                let (id, ..) = super::super::parse(pkt).unwrap_or_default();
                out.push((t, from_a, to.port(), id));
            });
        }
        out
    }

    #[test]
    fn streams_play_both_ways_and_end_before_the_duration() {
        let relay = Ipv4Addr::LOCALHOST;
        let mut p = Player::new(relay, Duration::ZERO, Duration::from_millis(900));
        assert_eq!(p.packets_per_stream(), 45);
        p.add(
            Call {
                id: 3,
                a_port: 10000,
                b_port: 10002,
            },
            5_000_000,
        );
        let ms: Vec<u64> = (0..2000).map(|m| m * 1_000_000).collect();
        let sent = drive(&mut p, &ms);
        assert_eq!(sent.len(), 90);
        assert!(p.idle());
        // Side A sends stream 6 to relay port A, side B stream 7 to relay port B.
        assert!(sent.iter().all(|&(_, a, port, id)| if a {
            port == 10000 && id == 6
        } else {
            port == 10002 && id == 7
        }));
        let last = sent.iter().map(|s| s.0).max().unwrap_or(0);
        assert_eq!(last, 5_000_000 + 880_000_000);
        assert_eq!(
            (p.sent.get(6), p.sent.get(7), p.skipped),
            (Some(&45), Some(&45), 0)
        );
    }

    #[test]
    fn a_late_player_skips_what_is_past_the_stream_end() {
        let mut p = Player::new(
            Ipv4Addr::LOCALHOST,
            Duration::from_millis(10),
            Duration::from_millis(100),
        );
        // Due at 10, 30, 50, 70, 90 ms: 5 per stream.
        assert_eq!(p.packets_per_stream(), 5);
        p.add(
            Call {
                id: 0,
                a_port: 1,
                b_port: 2,
            },
            0,
        );
        // Polled at 0 (nothing due), 35 ms (two due: sent late at once), then only at
        // 150 ms, past the end: the three others are skipped, not sent after the end.
        let sent = drive(&mut p, &[0, 35_000_000, 150_000_000]);
        assert_eq!(sent.len(), 4);
        assert!(sent.iter().all(|s| s.0 == 35_000_000));
        assert_eq!(p.skipped, 6);
        assert!(p.idle());
    }

    /// Without vigie: each call's relay ports are the other side's socket, so what side A
    /// sends arrives at side B and the reverse; a call whose side-A port is a closed
    /// socket is dead.
    #[test]
    fn plays_calls_on_loopback_and_counts_dead_calls() {
        let ip = Ipv4Addr::LOCALHOST;
        let (Ok(a), Ok(b)) = (
            media_socket(SocketAddrV4::new(ip, 0)),
            media_socket(SocketAddrV4::new(ip, 0)),
        ) else {
            panic!("no loopback sockets");
        };
        let port = |s: &UdpSocket| s.local_addr().map(|a| a.port()).unwrap_or(0);
        let (pa, pb) = (port(&a), port(&b));
        let closed = UdpSocket::bind((ip, 0)).map(|s| port(&s)).unwrap_or(9);
        let mut plan = follow_plan(SocketAddrV4::new(ip, 5060));
        plan.max_calls = 10;
        let mut pending: Vec<Call> = (0..3)
            .map(|id| Call {
                id,
                a_port: if id == 2 { closed } else { pb },
                b_port: pa,
            })
            .collect();
        let t0 = Instant::now();
        let mut source = |calls: &mut Vec<Call>| {
            calls.append(&mut pending);
            Ok(())
        };
        let stop_at = t0 + Duration::from_millis(50);
        let played = play(&plan, &a, &b, t0, &mut source, &|| {
            Instant::now() >= stop_at
        })
        .expect("play on loopback");
        let r = report(&Pairing::new(10), 0, 0, &played);
        // 200 ms at 50 packets/s: 10 packets per stream, 6 streams.
        assert_eq!((r.played, r.rtp.streams, r.rtp.sent), (3, 6, 60), "{r:?}");
        // Call 2's A→B stream went to a closed port: 10 lost, one dead stream and call.
        assert_eq!(
            (r.rtp.received, r.rtp.dead_streams, r.dead_calls),
            (50, 1, 1),
            "{r:?}"
        );
        assert_eq!(r.skipped, 0);
        assert_eq!(
            (r.lost_a_to_b, r.lost_b_to_a, r.tail_lost_streams),
            (10, 0, 0)
        );
        assert!(r.to_json().contains("\"dead_calls\":1,"), "{}", r.to_json());
    }

    #[test]
    fn report_splits_loss_by_direction_and_finds_lost_tails() {
        let mut player = Player::new(
            Ipv4Addr::LOCALHOST,
            Duration::ZERO,
            Duration::from_millis(60),
        );
        player.sent = vec![3, 3, 3, 3];
        let mut stats = Stats::new(8);
        stats.received = vec![2, 3, 2, 0, 0, 0, 0, 0];
        // Stream 0 lost its last packet (highest received is packet 1), stream 2 its
        // first (not its last); stream 3 is dead, so call 1 is dead.
        let played = Played {
            player,
            stats,
            high: vec![2, 3, 3, 0, 0, 0, 0, 0],
        };
        let r = report(&Pairing::new(2), 0, 0, &played);
        assert_eq!((r.lost_a_to_b, r.lost_b_to_a), (2, 3));
        assert_eq!((r.tail_lost_streams, r.dead_calls, r.played), (1, 1, 2));
        assert_eq!((r.rtp.sent, r.rtp.received), (12, 7));
    }

    /// The packet socket on lo (needs CAP_NET_RAW, like tools/test's tcpdump): vigie's
    /// offer and answer are read once each (the arriving copy), datagrams
    /// from other sources are filtered out, and the paired call comes out.
    #[test]
    fn sniffs_vigie_sip_on_loopback_once_per_datagram() {
        let ip = Ipv4Addr::LOCALHOST;
        let (Ok(vigie), Ok(other), Ok(peer)) = (
            UdpSocket::bind((ip, 0)),
            UdpSocket::bind((ip, 0)),
            UdpSocket::bind((ip, 0)),
        ) else {
            panic!("no loopback sockets");
        };
        let Ok(std::net::SocketAddr::V4(sip)) = vigie.local_addr() else {
            panic!("no address");
        };
        let mut sniffer =
            Sniffer::open("lo", sip, 4).expect("AF_PACKET socket on lo (CAP_NET_RAW)");
        let to = peer.local_addr().expect("peer address");
        for (sock, msg) in [(&other, ANSWER), (&vigie, OFFER), (&vigie, ANSWER)] {
            sock.send_to(msg.as_bytes(), to).expect("send on loopback");
        }
        let mut calls = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while calls.is_empty() && Instant::now() < deadline {
            sniffer.poll(&mut calls).expect("sniff");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(
            calls,
            vec![Call {
                id: 0,
                a_port: 10040,
                b_port: 10042
            }]
        );
        sniffer.poll(&mut calls).expect("sniff");
        assert_eq!(sniffer.datagrams, 2);
        assert_eq!(
            (sniffer.pairing.offers_seen, sniffer.pairing.answers_seen),
            (1, 1)
        );
        assert_eq!(sniff_drops(&sniffer.fd), 0);
    }

    fn follow_plan(sip: SocketAddrV4) -> FollowPlan {
        FollowPlan {
            sip,
            relay: *sip.ip(),
            iface: "lo".into(),
            bind_a: SocketAddrV4::new(*sip.ip(), 0),
            bind_b: SocketAddrV4::new(*sip.ip(), 0),
            duration: Duration::from_millis(200),
            start_delay: Duration::ZERO,
            run: Duration::from_secs(5),
            drain: Duration::from_millis(200),
            max_calls: 10,
        }
    }
}
