//! RTP load generator for vigie's capacity benchmark (`tools/bench`).
//!
//! Plays many G.711 A-law streams (RTP, RFC 3550; 160-octet payload every 20 ms, i.e.
//! 50 packets/s per stream) from two UDP sockets, side A (the trunk's media address in
//! every call's SDP) and side B (the seats' media address), each stream to one relay
//! port of vigie, and measures what comes back out of the relay on the other side:
//! loss, jitter and one-way latency through vigie.
//!
//! **What vigie adds.** Each packet carries its departure time in the payload, stamped just
//! before the `sendmmsg(2)` that sends it; its arrival time is the kernel's receive
//! timestamp (`SO_TIMESTAMPNS`, read from the `SCM_TIMESTAMPNS` control message of
//! `recvmmsg(2)`): on loopback, the moment vigie's `sendto` delivered it to our socket, not
//! when our receiver thread got to read it. Both are `CLOCK_REALTIME` nanoseconds since the
//! run started. The **added jitter** is the RFC 3550 A.8 estimator over the transit
//! `arrival - departure` of each stream (J += (|D| - J) / 16), so neither rtpload's sending
//! lateness against the 20 ms schedule nor its receiver's scheduling delay counts as
//! vigie's. The classic RFC 3550 §6.4.1 jitter (arrival against the RTP timestamp, i.e. the
//! ideal schedule) is kept as a second figure: it also contains rtpload's own lateness.
//!
//! Because every call's SDP names the same two addresses, vigie's relay delivers all
//! streams of a side to one socket: `recvmmsg(2)` drains them in batches and
//! `sendmmsg(2)` sends each 1 ms slot's packets in one system call per socket.

pub mod follow;

use std::io;
use std::net::{SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// RTP packet size: 12-octet header (RFC 3550 §5.1) + 160 octets of G.711 (20 ms).
pub const PACKET_OCTETS: usize = 12 + 160;
/// Packet interval per stream, milliseconds (50 packets/s).
pub const PTIME_MS: u64 = 20;
/// Marks our payloads (`"VGRL"`), so stray packets are not counted.
const MAGIC: [u8; 4] = *b"VGRL";
/// RTP payload type 8, PCMA (RFC 3551 §6).
const PT_PCMA: u8 = 8;
/// Latency histogram resolution, microseconds, and its range (200 ms).
const LATENCY_BUCKET_US: u64 = 10;
const LATENCY_BUCKETS: usize = 20_000;
/// Messages per `sendmmsg`/`recvmmsg` call.
const BATCH: usize = 256;

/// What to play: the two local sockets and, per stream, the relay port it is sent to.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Side A (trunk) socket address; port 0 picks one.
    pub bind_a: SocketAddrV4,
    /// Side B (seat) socket address; port 0 picks one.
    pub bind_b: SocketAddrV4,
    /// Destinations of the streams sent from side A (vigie's caller-side relay ports).
    pub targets_a: Vec<SocketAddrV4>,
    /// Destinations of the streams sent from side B (vigie's seat-side relay ports).
    pub targets_b: Vec<SocketAddrV4>,
    /// Sending time before measuring (latching, warm caches), seconds.
    pub warmup: Duration,
    /// Measured sending time.
    pub measure: Duration,
    /// Time to wait for late packets after the last send.
    pub drain: Duration,
}

/// Figures of one run. Ratios are 0–1; times in milliseconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Streams played (A→B plus B→A).
    pub streams: usize,
    /// Measured packets sent.
    pub sent: u64,
    /// Measured packets received (duplicates counted once per arrival).
    pub received: u64,
    /// `(sent - received) / sent`, 0 when nothing was sent.
    pub loss_ratio: f64,
    /// Streams of which no measured packet arrived.
    pub dead_streams: usize,
    /// Mean over streams of the final jitter vigie added (RFC 3550 A.8 over the transit
    /// departure stamp → kernel arrival timestamp), milliseconds.
    pub added_jitter_ms_mean: f64,
    /// 99th percentile over streams of the final added jitter, milliseconds.
    pub added_jitter_ms_p99: f64,
    /// Largest final added jitter of a stream, milliseconds.
    pub added_jitter_ms_max: f64,
    /// Mean over streams of the final RFC 3550 interarrival jitter against the RTP
    /// timestamp (the ideal 20 ms schedule, rtpload's lateness included), milliseconds.
    pub jitter_ms_mean: f64,
    /// 99th percentile over streams of the final RTP-timestamp jitter, milliseconds.
    pub jitter_ms_p99: f64,
    /// Largest final RTP-timestamp jitter of a stream, milliseconds.
    pub jitter_ms_max: f64,
    /// Measured packets whose arrival time is the kernel's receive timestamp (the others,
    /// if the kernel gave none, are timed when the receiver read them).
    pub kernel_stamped: u64,
    /// One-way latency through the relay (departure stamp to kernel arrival), milliseconds.
    pub latency_ms_p50: f64,
    pub latency_ms_p99: f64,
    pub latency_ms_max: f64,
}

impl Report {
    /// One JSON object (no dependencies: the fields are numbers).
    pub fn to_json(&self) -> String {
        format!(
            "{{\"streams\":{},\"sent\":{},\"received\":{},\"loss_ratio\":{:.6},\
             \"dead_streams\":{},\"added_jitter_ms_mean\":{:.3},\
             \"added_jitter_ms_p99\":{:.3},\"added_jitter_ms_max\":{:.3},\
             \"jitter_ms_mean\":{:.3},\"jitter_ms_p99\":{:.3},\
             \"jitter_ms_max\":{:.3},\"kernel_stamped\":{},\"latency_ms_p50\":{:.3},\
             \"latency_ms_p99\":{:.3},\"latency_ms_max\":{:.3}}}",
            self.streams,
            self.sent,
            self.received,
            self.loss_ratio,
            self.dead_streams,
            self.added_jitter_ms_mean,
            self.added_jitter_ms_p99,
            self.added_jitter_ms_max,
            self.jitter_ms_mean,
            self.jitter_ms_p99,
            self.jitter_ms_max,
            self.kernel_stamped,
            self.latency_ms_p50,
            self.latency_ms_p99,
            self.latency_ms_max,
        )
    }
}

/// Plays the plan and measures it; blocks for warmup + measure + drain.
///
/// # Errors
/// Binding or configuring a socket fails, or `sendmmsg`/`recvmmsg` fail with anything
/// but `EAGAIN`/`EINTR`/`ECONNREFUSED`.
pub fn run(plan: &Plan) -> io::Result<Report> {
    let a = Arc::new(open(plan.bind_a)?);
    let b = Arc::new(open(plan.bind_b)?);
    let n = plan.targets_a.len() + plan.targets_b.len();
    let stop = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let base = realtime_ns();
    let mut receivers = Vec::new();
    for sock in [&a, &b] {
        let (sock, stop) = (Arc::clone(sock), Arc::clone(&stop));
        receivers.push(std::thread::spawn(move || receive(&sock, n, base, &stop)));
    }
    let sent = send(plan, &a, &b, t0, base);
    std::thread::sleep(plan.drain);
    stop.store(true, Ordering::Relaxed);
    let mut stats = Stats::new(n);
    for r in receivers {
        let s = r
            .join()
            .map_err(|_| io::Error::other("receiver thread panicked"))??;
        stats.merge(&s);
    }
    let sent = sent?;
    Ok(stats.report(&sent))
}

fn open(addr: SocketAddrV4) -> io::Result<UdpSocket> {
    let s = UdpSocket::bind(addr)?;
    s.set_read_timeout(Some(Duration::from_millis(50)))?;
    let size: libc::c_int = 16 << 20;
    let on: libc::c_int = 1;
    for (opt, value) in [
        (libc::SO_RCVBUF, size),
        (libc::SO_SNDBUF, size),
        // Kernel receive timestamps (SCM_TIMESTAMPNS control messages), CLOCK_REALTIME.
        (libc::SO_TIMESTAMPNS, on),
    ] {
        // SAFETY: a valid socket and a c_int option value of the right size.
        unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                (&raw const value).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
    Ok(s)
}

/// `CLOCK_REALTIME` in nanoseconds since the Unix epoch (the clock of the kernel's
/// `SO_TIMESTAMPNS` receive timestamps).
fn realtime_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Sends every stream's packets in its 1 ms slot (stream `i` in slot `i % 20`); returns
/// the measured packets sent per stream. Departure stamps are `CLOCK_REALTIME`
/// nanoseconds since `base`, written just before each `sendmmsg`.
fn send(plan: &Plan, a: &UdpSocket, b: &UdpSocket, t0: Instant, base: u64) -> io::Result<Vec<u64>> {
    let streams: Vec<(bool, SocketAddrV4)> = plan
        .targets_a
        .iter()
        .map(|t| (true, *t))
        .chain(plan.targets_b.iter().map(|t| (false, *t)))
        .collect();
    let mut sent = vec![0u64; streams.len()];
    let mut seq = vec![0u16; streams.len()];
    let total = plan.warmup + plan.measure;
    let mut slot: u64 = 0;
    let mut out_a = Batch::new();
    let mut out_b = Batch::new();
    loop {
        let due = t0 + Duration::from_millis(slot);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        let at = due.saturating_duration_since(t0);
        if at >= total {
            break;
        }
        let measured = at >= plan.warmup;
        let phase = slot % PTIME_MS;
        let mut i = usize::try_from(phase).unwrap_or(0);
        while let Some((from_a, target)) = streams.get(i).copied() {
            let s = seq.get(i).copied().unwrap_or(0);
            let ts = u32::from(s).wrapping_mul(160);
            let pkt = packet(i, s, ts, 0, measured);
            let out = if from_a { &mut out_a } else { &mut out_b };
            out.push(target, &pkt);
            if out.len() == BATCH {
                out.flush_stamped(if from_a { a } else { b }, base)?;
            }
            if let Some(q) = seq.get_mut(i) {
                *q = s.wrapping_add(1);
            }
            if measured && let Some(c) = sent.get_mut(i) {
                *c += 1;
            }
            i += usize::try_from(PTIME_MS).unwrap_or(20);
        }
        out_a.flush_stamped(a, base)?;
        out_b.flush_stamped(b, base)?;
        slot += 1;
    }
    Ok(sent)
}

/// Offset of the departure stamp (8 octets, big-endian nanoseconds) in a packet.
const SEND_NS_AT: usize = 20;

/// An RTP packet of stream `id`: header (V=2, PT 8, SSRC = id + 1) and a payload that
/// starts with the magic, the stream id, the send time in nanoseconds since the run
/// started (see [`SEND_NS_AT`]) and the measured flag; the rest is A-law silence (0xD5).
fn packet(id: usize, seq: u16, ts: u32, send_ns: u64, measured: bool) -> [u8; PACKET_OCTETS] {
    let mut p = [0xD5u8; PACKET_OCTETS];
    let id32 = u32::try_from(id).unwrap_or(u32::MAX);
    p[0] = 0x80;
    p[1] = PT_PCMA;
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&ts.to_be_bytes());
    p[8..12].copy_from_slice(&id32.wrapping_add(1).to_be_bytes());
    p[12..16].copy_from_slice(&MAGIC);
    p[16..20].copy_from_slice(&id32.to_be_bytes());
    p[20..28].copy_from_slice(&send_ns.to_be_bytes());
    p[28] = u8::from(measured);
    p
}

/// What a received packet tells: stream id, RTP timestamp, send time (ns), measured.
fn parse(p: &[u8]) -> Option<(usize, u32, u64, bool)> {
    if p.len() < 29 || p.get(12..16)? != MAGIC {
        return None;
    }
    let ts = u32::from_be_bytes(p.get(4..8)?.try_into().ok()?);
    let id = u32::from_be_bytes(p.get(16..20)?.try_into().ok()?);
    let send_ns = u64::from_be_bytes(p.get(20..28)?.try_into().ok()?);
    Some((usize::try_from(id).ok()?, ts, send_ns, *p.get(28)? == 1))
}

/// Outgoing messages for one `sendmmsg` call.
struct Batch {
    bufs: Vec<[u8; PACKET_OCTETS]>,
    addrs: Vec<libc::sockaddr_in>,
}

impl Batch {
    fn new() -> Batch {
        Batch {
            bufs: Vec::with_capacity(BATCH),
            addrs: Vec::with_capacity(BATCH),
        }
    }

    fn len(&self) -> usize {
        self.bufs.len()
    }

    fn push(&mut self, to: SocketAddrV4, pkt: &[u8; PACKET_OCTETS]) {
        self.bufs.push(*pkt);
        self.addrs.push(sockaddr(to));
    }

    /// Stamps the departure time (`CLOCK_REALTIME` ns since `base`) into every packet, then
    /// [`Batch::flush`]es: the stamp is taken just before `sendmmsg`.
    fn flush_stamped(&mut self, sock: &UdpSocket, base: u64) -> io::Result<()> {
        if self.bufs.is_empty() {
            return Ok(());
        }
        let stamp = realtime_ns().saturating_sub(base).to_be_bytes();
        for b in &mut self.bufs {
            if let Some(at) = b.get_mut(SEND_NS_AT..SEND_NS_AT + 8) {
                at.copy_from_slice(&stamp);
            }
        }
        self.flush(sock)
    }

    /// Sends the batch (retrying the unsent tail); a full socket buffer drops the rest,
    /// which the receivers then count as loss.
    fn flush(&mut self, sock: &UdpSocket) -> io::Result<()> {
        let mut iovs: Vec<libc::iovec> = self
            .bufs
            .iter_mut()
            .map(|b| libc::iovec {
                iov_base: b.as_mut_ptr().cast(),
                iov_len: b.len(),
            })
            .collect();
        // SAFETY: zeroed mmsghdr is a valid "empty" header; every pointer set below
        // points into `iovs`/`self.addrs`, which outlive the sendmmsg calls.
        let mut msgs: Vec<libc::mmsghdr> = (0..iovs.len())
            .map(|_| unsafe { std::mem::zeroed::<libc::mmsghdr>() })
            .collect();
        for ((m, iov), addr) in msgs.iter_mut().zip(iovs.iter_mut()).zip(&mut self.addrs) {
            m.msg_hdr.msg_name = (addr as *mut libc::sockaddr_in).cast();
            m.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            m.msg_hdr.msg_iov = iov;
            m.msg_hdr.msg_iovlen = 1;
        }
        let mut done = 0usize;
        let mut retries = 0;
        while done < msgs.len() {
            let rest = msgs.get_mut(done..).unwrap_or_default();
            // SAFETY: `rest` is a valid slice of initialised mmsghdr.
            let r = unsafe {
                libc::sendmmsg(
                    sock.as_raw_fd(),
                    rest.as_mut_ptr(),
                    u32::try_from(rest.len()).unwrap_or(0),
                    0,
                )
            };
            if r < 0 {
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EINTR) => continue,
                    Some(libc::EAGAIN | libc::ENOBUFS) if retries < 3 => {
                        retries += 1;
                        std::thread::yield_now();
                        continue;
                    }
                    Some(libc::EAGAIN | libc::ENOBUFS | libc::ECONNREFUSED) => break,
                    _ => return Err(e),
                }
            }
            done += usize::try_from(r).unwrap_or(0).max(1);
        }
        self.bufs.clear();
        self.addrs.clear();
        Ok(())
    }
}

fn sockaddr(a: SocketAddrV4) -> libc::sockaddr_in {
    // SAFETY: sockaddr_in is plain data; zero is valid for every field.
    let mut s: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    s.sin_family = libc::AF_INET as libc::sa_family_t;
    s.sin_port = a.port().to_be();
    s.sin_addr.s_addr = u32::from(*a.ip()).to_be();
    s
}

/// Per-stream receive state and the latency histogram.
#[derive(Debug, Clone)]
struct Stats {
    received: Vec<u64>,
    /// RFC 3550 A.8 jitter estimate against the RTP timestamp, RTP units (1/8000 s).
    jitter: Vec<f64>,
    /// Previous relative transit time, RTP units; `None` before the first packet.
    transit: Vec<Option<f64>>,
    /// RFC 3550 A.8 estimate over departure stamp → arrival, nanoseconds.
    added: Vec<f64>,
    /// Previous departure → arrival transit, nanoseconds.
    added_transit: Vec<Option<f64>>,
    /// Measured packets timed by the kernel's receive timestamp.
    kernel_stamped: u64,
    latency: Vec<u64>,
}

impl Stats {
    fn new(n: usize) -> Stats {
        Stats {
            received: vec![0; n],
            jitter: vec![0.0; n],
            transit: vec![None; n],
            added: vec![0.0; n],
            added_transit: vec![None; n],
            kernel_stamped: 0,
            latency: vec![0; LATENCY_BUCKETS + 1],
        }
    }

    /// One arrival at `arrival_ns` (since the run started) of a packet of stream `id`.
    fn arrive(&mut self, id: usize, rtp_ts: u32, send_ns: u64, arrival_ns: u64, measured: bool) {
        // RFC 3550 A.8: D = (Rj - Ri) - (Sj - Si), J += (|D| - J) / 16, in RTP units.
        let arrival_units = arrival_ns as f64 * 8000.0 / 1e9;
        let transit = arrival_units - f64::from(rtp_ts);
        if let (Some(prev), Some(j)) = (self.transit.get_mut(id), self.jitter.get_mut(id)) {
            if let Some(p) = *prev {
                let d = (transit - p).abs();
                *j += (d - *j) / 16.0;
            }
            *prev = Some(transit);
        }
        // The same estimator over the transit through vigie alone (departure stamp taken
        // just before sendmmsg, arrival from the kernel).
        let added = arrival_ns as f64 - send_ns as f64;
        if let (Some(prev), Some(j)) = (self.added_transit.get_mut(id), self.added.get_mut(id)) {
            if let Some(p) = *prev {
                let d = (added - p).abs();
                *j += (d - *j) / 16.0;
            }
            *prev = Some(added);
        }
        if !measured {
            return;
        }
        if let Some(r) = self.received.get_mut(id) {
            *r += 1;
        }
        let us = arrival_ns.saturating_sub(send_ns) / 1000;
        let bucket = usize::try_from(us / LATENCY_BUCKET_US)
            .unwrap_or(LATENCY_BUCKETS)
            .min(LATENCY_BUCKETS);
        if let Some(c) = self.latency.get_mut(bucket) {
            *c += 1;
        }
    }

    /// Adds another receiver's figures (each stream arrives at one receiver only).
    fn merge(&mut self, o: &Stats) {
        for (i, r) in o.received.iter().enumerate() {
            if *r > 0 || o.transit.get(i).is_some_and(Option::is_some) {
                if let Some(x) = self.received.get_mut(i) {
                    *x += r;
                }
                if let (Some(j), Some(oj)) = (self.jitter.get_mut(i), o.jitter.get(i)) {
                    *j = *oj;
                }
                if let (Some(j), Some(oj)) = (self.added.get_mut(i), o.added.get(i)) {
                    *j = *oj;
                }
            }
        }
        for (c, oc) in self.latency.iter_mut().zip(&o.latency) {
            *c += oc;
        }
        self.kernel_stamped += o.kernel_stamped;
    }

    fn report(&self, sent: &[u64]) -> Report {
        let total_sent: u64 = sent.iter().sum();
        let received: u64 = self.received.iter().sum();
        let dead = self
            .received
            .iter()
            .zip(sent)
            .filter(|(r, s)| **r == 0 && **s > 0)
            .count();
        let mut j: Vec<f64> = self.jitter.iter().map(|j| j / 8.0).collect();
        j.sort_by(f64::total_cmp);
        let mut added: Vec<f64> = self.added.iter().map(|j| j / 1e6).collect();
        added.sort_by(f64::total_cmp);
        let mean = |v: &[f64]| {
            if v.is_empty() {
                0.0
            } else {
                v.iter().sum::<f64>() / v.len() as f64
            }
        };
        let pick = |v: &[f64], q: f64| {
            let idx = ((v.len() as f64 - 1.0) * q).round() as usize;
            v.get(idx).copied().unwrap_or(0.0)
        };
        Report {
            streams: sent.len(),
            sent: total_sent,
            received,
            loss_ratio: if total_sent == 0 {
                0.0
            } else {
                total_sent.saturating_sub(received) as f64 / total_sent as f64
            },
            dead_streams: dead,
            added_jitter_ms_mean: mean(&added),
            added_jitter_ms_p99: pick(&added, 0.99),
            added_jitter_ms_max: added.last().copied().unwrap_or(0.0),
            jitter_ms_mean: mean(&j),
            jitter_ms_p99: pick(&j, 0.99),
            jitter_ms_max: j.last().copied().unwrap_or(0.0),
            kernel_stamped: self.kernel_stamped,
            latency_ms_p50: self.latency_quantile(0.5),
            latency_ms_p99: self.latency_quantile(0.99),
            latency_ms_max: self.latency_quantile(1.0),
        }
    }

    /// Upper bound of the bucket holding quantile `q`, milliseconds.
    fn latency_quantile(&self, q: f64) -> f64 {
        let total: u64 = self.latency.iter().sum();
        if total == 0 {
            return 0.0;
        }
        let want = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut acc = 0;
        for (i, c) in self.latency.iter().enumerate() {
            acc += c;
            if acc >= want {
                return ((i as u64 + 1) * LATENCY_BUCKET_US) as f64 / 1000.0;
            }
        }
        (LATENCY_BUCKETS as u64 * LATENCY_BUCKET_US) as f64 / 1000.0
    }
}

/// Room for the control messages of one datagram (a `timespec` cmsg and slack), in u64s
/// (the alignment `cmsghdr` needs).
const CONTROL_WORDS: usize = 16;

/// The kernel receive timestamp (`SCM_TIMESTAMPNS`, `CLOCK_REALTIME`) in a received
/// message's control data, nanoseconds since the Unix epoch.
fn kernel_timestamp(hdr: &libc::msghdr) -> Option<u64> {
    // SAFETY: `hdr` was filled by recvmmsg: msg_control/msg_controllen describe the control
    // messages the kernel wrote into our buffer; CMSG_* walk within it.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(hdr);
        while !cmsg.is_null() {
            let c = &*cmsg;
            if c.cmsg_level == libc::SOL_SOCKET && c.cmsg_type == libc::SCM_TIMESTAMPNS {
                let ts = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::timespec>());
                let secs = u64::try_from(ts.tv_sec).ok()?;
                let nanos = u64::try_from(ts.tv_nsec).ok()?;
                return secs.checked_mul(1_000_000_000)?.checked_add(nanos);
            }
            cmsg = libc::CMSG_NXTHDR(hdr, cmsg);
        }
    }
    None
}

/// Pause of a receiver between two `recvmmsg` calls that did not fill a batch.
const RECEIVE_TICK: Duration = Duration::from_millis(1);

/// Drains one socket with `recvmmsg` until `stop`. A packet's arrival time is its kernel
/// receive timestamp (`CLOCK_REALTIME` ns since `base`); without one, the time the batch
/// was read. The receiver polls (`MSG_DONTWAIT`) every [`RECEIVE_TICK`] instead of
/// blocking: the kernel timestamps the arrival whenever we read it, and a receiver asleep
/// in `recvmmsg` would be woken by each datagram vigie sends, a wake-up (and preemption of
/// vigie's relay thread on the shared cores) charged to vigie's `sendto` that a remote
/// phone would not cost it.
fn receive(sock: &UdpSocket, n: usize, base: u64, stop: &AtomicBool) -> io::Result<Stats> {
    let mut stats = Stats::new(n);
    let mut rx = RecvBatch::new(BATCH, 2048);
    let mut control = vec![[0u64; CONTROL_WORDS]; BATCH];
    while !stop.load(Ordering::Relaxed) {
        // The kernel shrinks msg_controllen to what it wrote: give the whole buffer back.
        for (m, c) in rx.msgs.iter_mut().zip(control.iter_mut()) {
            m.msg_hdr.msg_control = c.as_mut_ptr().cast();
            m.msg_hdr.msg_controllen = std::mem::size_of_val(c) as _;
        }
        // SAFETY: the batch's headers, iovecs and buffers and `control` are valid for
        // BATCH messages; non-blocking.
        let r = unsafe {
            libc::recvmmsg(
                sock.as_raw_fd(),
                rx.msgs.as_mut_ptr(),
                u32::try_from(BATCH).unwrap_or(1),
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EAGAIN) => {
                    std::thread::sleep(RECEIVE_TICK);
                    continue;
                }
                Some(libc::EINTR | libc::ECONNREFUSED) => continue,
                _ => return Err(e),
            }
        }
        if usize::try_from(r).unwrap_or(0) < BATCH {
            std::thread::sleep(RECEIVE_TICK);
        }
        let read_ns = realtime_ns().saturating_sub(base);
        let got = usize::try_from(r).unwrap_or(0);
        for (m, buf) in rx.msgs.iter().zip(&rx.bufs).take(got) {
            let len = usize::try_from(m.msg_len).unwrap_or(0);
            let Some((id, ts, send_ns, measured)) = buf.get(..len).and_then(parse) else {
                continue;
            };
            let kernel = kernel_timestamp(&m.msg_hdr).map(|t| t.saturating_sub(base));
            if measured && kernel.is_some() {
                stats.kernel_stamped += 1;
            }
            stats.arrive(id, ts, send_ns, kernel.unwrap_or(read_ns), measured);
        }
    }
    Ok(stats)
}

/// Buffers for draining a socket with `recvmmsg(2)` without waiting. The `iovec`s point
/// into `bufs` and the headers into `iovs`: heap storage that never moves or grows.
pub(crate) struct RecvBatch {
    pub(crate) bufs: Vec<Vec<u8>>,
    pub(crate) iovs: Vec<libc::iovec>,
    pub(crate) msgs: Vec<libc::mmsghdr>,
}

impl RecvBatch {
    /// `count` buffers of `size` octets.
    pub(crate) fn new(count: usize, size: usize) -> RecvBatch {
        let mut bufs = vec![vec![0u8; size]; count];
        let mut iovs: Vec<libc::iovec> = bufs
            .iter_mut()
            .map(|b| libc::iovec {
                iov_base: b.as_mut_ptr().cast(),
                iov_len: b.len(),
            })
            .collect();
        // SAFETY: zeroed mmsghdr is a valid empty header; the iov pointers point into
        // `iovs`, which lives (unmoved on the heap) as long as `msgs`.
        let mut msgs: Vec<libc::mmsghdr> = (0..count)
            .map(|_| unsafe { std::mem::zeroed::<libc::mmsghdr>() })
            .collect();
        for (m, iov) in msgs.iter_mut().zip(iovs.iter_mut()) {
            m.msg_hdr.msg_iov = iov;
            m.msg_hdr.msg_iovlen = 1;
        }
        RecvBatch { bufs, iovs, msgs }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn packet_round_trips_through_parse() {
        let p = packet(4242, 7, 1120, 123_456_789, true);
        assert_eq!(p[0], 0x80);
        assert_eq!(p[1], PT_PCMA);
        assert_eq!(parse(&p), Some((4242, 1120, 123_456_789, true)));
        assert_eq!(parse(&p[..20]), None);
        let mut other = p;
        other[12] = b'X';
        assert_eq!(parse(&other), None);
    }

    #[test]
    fn jitter_follows_rfc3550_a8() {
        let mut s = Stats::new(1);
        // Packets every 160 RTP units (20 ms); the second arrives 8 ms late: |D| = 64
        // units, J = 64/16 = 4 units = 0.5 ms.
        s.arrive(0, 0, 0, 0, true);
        s.arrive(0, 160, 20_000_000, 28_000_000, true);
        assert!((s.jitter[0] - 4.0).abs() < 1e-9, "{}", s.jitter[0]);
        // Sent on time, arrived 8 ms late: the transit grew by 8 ms, so vigie added the
        // same 0.5 ms of jitter.
        assert!((s.added[0] - 500_000.0).abs() < 1e-6, "{}", s.added[0]);
        let r = s.report(&[2]);
        assert_eq!((r.sent, r.received, r.dead_streams), (2, 2, 0));
        assert!((r.jitter_ms_mean - 0.5).abs() < 1e-9);
        assert!((r.added_jitter_ms_mean - 0.5).abs() < 1e-9);
        // Latencies 0 and 8 ms: p50 in the first bucket, max in the 8 ms bucket.
        assert!(
            (r.latency_ms_p50 - 0.01).abs() < 1e-9,
            "{}",
            r.latency_ms_p50
        );
        assert!(
            (r.latency_ms_max - 8.01).abs() < 1e-9,
            "{}",
            r.latency_ms_max
        );
    }

    /// rtpload itself late: a packet sent 8 ms behind its RTP timestamp and relayed in the
    /// same 100 µs as the one before has RTP-timestamp jitter (0.5 ms) but no added jitter.
    #[test]
    fn sender_lateness_is_not_added_jitter() {
        let mut s = Stats::new(1);
        s.arrive(0, 0, 0, 100_000, true);
        s.arrive(0, 160, 28_000_000, 28_100_000, true);
        s.arrive(0, 320, 40_000_000, 40_100_000, true);
        let r = s.report(&[3]);
        assert_eq!(r.added_jitter_ms_mean, 0.0);
        assert_eq!(r.added_jitter_ms_max, 0.0);
        // |D| = 8 ms then 8 ms back: J = 0.5, then 0.5 + (8 - 0.5) / 16 = 0.96875 ms.
        assert!((r.jitter_ms_mean - 0.968_75).abs() < 1e-9, "{r:?}");
        // Latency is departure → arrival: 0.1 ms for all three (the 100 µs bucket).
        assert!((r.latency_ms_max - 0.11).abs() < 1e-9, "{r:?}");
    }

    #[test]
    fn stamps_departure_just_before_sending() {
        let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        let Ok(std::net::SocketAddr::V4(to)) = sock.local_addr() else {
            panic!("v4 address");
        };
        let mut batch = Batch::new();
        batch.push(to, &packet(3, 1, 160, 0, true));
        let base = realtime_ns();
        batch
            .flush_stamped(&sock, base.saturating_sub(1_000_000_000))
            .expect("send");
        assert_eq!(batch.len(), 0);
        let mut buf = [0u8; 2048];
        let n = sock.recv(&mut buf).expect("receive");
        let (id, ts, send_ns, measured) = parse(&buf[..n]).expect("our packet");
        assert_eq!((id, ts, measured), (3, 160, true));
        // Base was one second before the flush: the stamp is one second and a bit.
        assert!(
            (1_000_000_000..1_000_000_000 + 60_000_000_000).contains(&send_ns),
            "{send_ns}"
        );
    }

    #[test]
    fn loss_counts_missing_packets_and_dead_streams() {
        let mut s = Stats::new(2);
        for k in 0..9u32 {
            s.arrive(0, k * 160, 0, 0, true);
        }
        let r = s.report(&[10, 5]);
        assert_eq!((r.sent, r.received, r.dead_streams), (15, 9, 1));
        assert!((r.loss_ratio - 6.0 / 15.0).abs() < 1e-12);
    }

    /// Without a relay in between: side A's streams go straight to side B's socket and
    /// back; nothing is lost on loopback at this rate.
    #[test]
    fn plays_and_measures_streams_on_loopback() {
        let ip = Ipv4Addr::LOCALHOST;
        let probe_a = UdpSocket::bind((ip, 0)).and_then(|s| s.local_addr());
        let probe_b = UdpSocket::bind((ip, 0)).and_then(|s| s.local_addr());
        let (Ok(std::net::SocketAddr::V4(a)), Ok(std::net::SocketAddr::V4(b))) = (probe_a, probe_b)
        else {
            panic!("no loopback ports");
        };
        let plan = Plan {
            bind_a: a,
            bind_b: b,
            targets_a: vec![b; 30],
            targets_b: vec![a; 30],
            warmup: Duration::from_millis(100),
            measure: Duration::from_millis(400),
            drain: Duration::from_millis(200),
        };
        let r = run(&plan).expect("run on loopback");
        assert_eq!(r.streams, 60);
        // 400 ms at 50 packets/s: 20 packets per stream, 1200 in all.
        assert_eq!(r.sent, 1200);
        assert_eq!(r.received, 1200, "{r:?}");
        assert_eq!(r.dead_streams, 0);
        // Every arrival was timed by the kernel (SO_TIMESTAMPNS).
        assert_eq!(r.kernel_stamped, 1200, "{r:?}");
        assert!(r.latency_ms_p99 < 50.0, "{r:?}");
        assert!(r.to_json().starts_with("{\"streams\":60,\"sent\":1200,"));
        assert!(
            r.to_json().contains("\"kernel_stamped\":1200,"),
            "{}",
            r.to_json()
        );
    }
}
