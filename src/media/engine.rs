//! The relay engine: a small fixed set of relay threads, each running one level-triggered
//! `epoll(7)` loop over the sockets of many sessions.
//!
//! A session is registered with one thread (round robin) when it is allocated: its four
//! sockets are added to that thread's epoll set with a key `session id × 4 + socket index`
//! (index 0..4: A RTP, A RTCP, B RTP, B RTCP). For each readable socket the loop reads one
//! datagram (`recvfrom`, no `EAGAIN` probe: level-triggered epoll reports the socket again
//! if more is queued) and sends it at once from the opposite side's socket (`sendto`), so a
//! relayed packet costs two system calls plus its share of one `epoll_wait`, and no task
//! wake-up. Commands (play, record, codec, close) arrive over one bounded channel per thread
//! and an `eventfd(2)` that wakes the loop; peer hints are `watch` values read when they
//! change (one atomic load per packet). Prompt packets are paced by the `epoll_wait`
//! timeout (millisecond resolution) of the sessions that play. Counters shared by every
//! session (the Prometheus metrics) are summed per thread and added once per loop
//! iteration; per-session counters have a single writer (the thread) and are plain relaxed
//! stores.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::io;
use std::net::UdpSocket;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use super::player::{PROMPT_PACKET_LEN, Playback};
use super::ports::SlotLease;
use super::{
    Command, Counters, EngineConfig, MAX_DATAGRAM, MediaError, MediaState, PACKET_INTERVAL,
    PLAY_CATCH_UP, Peer, PeerHint, PlayState, RelayMetrics, observe_rtp, read_reports, valid,
};

/// Commands (and registrations) a relay thread can have queued before
/// [`MediaError::CommandQueueFull`].
const QUEUE_CAPACITY: usize = 4096;
/// Readiness events taken per `epoll_wait`.
const EVENTS: usize = 512;
/// The epoll key of a thread's eventfd (session ids start at 1, so no socket has it).
const WAKE_KEY: u64 = 0;

/// Add `n` to a counter that only the relay thread writes: a relaxed load and store, not a
/// locked read-modify-write (readers on other threads see a recent value).
fn bump(counter: &AtomicU64, n: u64) {
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(n),
        Ordering::Relaxed,
    );
}

/// What a session's handle sends its relay thread.
pub(super) enum Message {
    /// A new session; its sockets are added to the epoll set right after this is queued.
    Register(Box<SessionState>),
    /// A command for session `id`.
    Command(u64, Command),
    /// Close session `id` (sockets closed, then ports freed), then signal `done`.
    Close(u64, Option<oneshot::Sender<()>>),
    /// The last handle is gone: end the thread.
    Shutdown,
}

/// One relay thread as seen from the sessions: its queue and its wake-up.
#[derive(Debug)]
pub(super) struct Worker {
    queue: SyncSender<Message>,
    epoll: Arc<OwnedFd>,
    wake: Arc<OwnedFd>,
}

impl Worker {
    fn spawn(index: usize, metrics: RelayMetrics, tick: Duration) -> io::Result<Worker> {
        // SAFETY: plain system calls; the returned descriptors are checked and owned.
        let epoll = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if epoll < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `epoll` is a new descriptor we own.
        let epoll = Arc::new(unsafe { OwnedFd::from_raw_fd(epoll) });
        // SAFETY: as above.
        let wake = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if wake < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `wake` is a new descriptor we own.
        let wake = Arc::new(unsafe { OwnedFd::from_raw_fd(wake) });
        epoll_add(epoll.as_raw_fd(), wake.as_raw_fd(), WAKE_KEY)?;
        let (queue, rx) = sync_channel(QUEUE_CAPACITY);
        let mut thread = Thread {
            epoll: Arc::clone(&epoll),
            wake: Arc::clone(&wake),
            queue: rx,
            sessions: HashMap::default(),
            playing: Vec::new(),
            metrics,
            totals: Totals::default(),
            tick,
        };
        std::thread::Builder::new()
            .name(format!("vigie-relay-{index}"))
            .spawn(move || thread.run())?;
        Ok(Worker { queue, epoll, wake })
    }

    /// Queue `message` and wake the thread.
    pub(super) fn send(&self, message: Message) -> Result<(), MediaError> {
        self.queue.try_send(message).map_err(|e| match e {
            TrySendError::Full(_) => MediaError::CommandQueueFull,
            TrySendError::Disconnected(_) => MediaError::SessionClosed,
        })?;
        self.notify();
        Ok(())
    }

    /// Queue `message`, waiting for room if the queue is full; nothing if the thread ended.
    pub(super) fn send_blocking(&self, message: Message) {
        if self.queue.send(message).is_ok() {
            self.notify();
        }
    }

    fn notify(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to our eventfd. A full counter (EAGAIN)
        // means a wake-up is already pending.
        unsafe {
            libc::write(self.wake.as_raw_fd(), (&raw const one).cast(), 8);
        }
    }

    /// Add socket `fd` of a registered session to the thread's epoll set.
    pub(super) fn watch(&self, fd: RawFd, key: u64) -> io::Result<()> {
        epoll_add(self.epoll.as_raw_fd(), fd, key)
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Blocking send: the thread drains its queue, so this cannot wait for long.
        if self.queue.send(Message::Shutdown).is_ok() {
            self.notify();
        }
    }
}

fn epoll_add(epoll: RawFd, fd: RawFd, key: u64) -> io::Result<()> {
    let mut event = libc::epoll_event {
        events: libc::EPOLLIN as u32,
        u64: key,
    };
    // SAFETY: valid descriptors and a live epoll_event.
    if unsafe { libc::epoll_ctl(epoll, libc::EPOLL_CTL_ADD, fd, &raw mut event) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The relay threads of a [`super::MediaRelay`], started on first use.
#[derive(Debug)]
pub(super) struct Engine {
    config: EngineConfig,
    metrics: RelayMetrics,
    workers: Mutex<Vec<Arc<Worker>>>,
    next_id: AtomicU64,
}

impl Engine {
    pub(super) fn new(config: EngineConfig, metrics: RelayMetrics) -> Engine {
        Engine {
            config,
            metrics,
            workers: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(1),
        }
    }

    /// A new session id (never 0, never reused) and the thread that relays it.
    pub(super) fn assign(&self) -> Result<(u64, Arc<Worker>), MediaError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut workers = self
            .workers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if workers.is_empty() {
            for index in 0..self.config.threads.max(1) {
                let worker = Worker::spawn(index, self.metrics.clone(), self.config.tick)
                    .map_err(MediaError::Engine)?;
                workers.push(Arc::new(worker));
            }
        }
        let pick = usize::try_from(id).unwrap_or(0) % workers.len().max(1);
        let worker = workers.get(pick).ok_or(MediaError::SessionClosed)?;
        Ok((id, Arc::clone(worker)))
    }
}

/// Hasher for session ids (sequential integers): one multiplication (Fibonacci hashing),
/// so that the high bits hashbrown uses as tags differ too. No SipHash per packet.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// One session as its relay thread holds it. Field order matters: the sockets are dropped
/// before the port leases, so a freed port can be bound at once.
pub(super) struct SessionState {
    pub(super) id: u64,
    /// A RTP, A RTCP, B RTP, B RTCP (non-blocking).
    pub(super) sockets: [UdpSocket; 4],
    pub(super) hints: [watch::Receiver<Option<PeerHint>>; 2],
    pub(super) stats: Arc<Counters>,
    pub(super) media: MediaState,
    pub(super) _leases: [SlotLease; 2],
}

/// Shared-metric increments summed by a thread between two flushes.
#[derive(Default)]
struct Totals {
    rtp_packets: u64,
    rtp_bytes: u64,
    rtcp_packets: u64,
    prompt_packets: u64,
    dropped_no_peer: u64,
    dropped_malformed: u64,
    dropped_send_error: u64,
}

impl Totals {
    fn flush(&mut self, metrics: &RelayMetrics) {
        let pairs = [
            (&mut self.rtp_packets, &metrics.rtp_packets),
            (&mut self.rtp_bytes, &metrics.rtp_bytes),
            (&mut self.rtcp_packets, &metrics.rtcp_packets),
            (&mut self.prompt_packets, &metrics.prompt_packets),
            (&mut self.dropped_no_peer, &metrics.dropped_no_peer),
            (&mut self.dropped_malformed, &metrics.dropped_malformed),
            (&mut self.dropped_send_error, &metrics.dropped_send_error),
        ];
        for (n, counter) in pairs {
            if *n > 0 {
                counter.inc_by(*n);
                *n = 0;
            }
        }
    }
}

/// The state of one relay thread.
struct Thread {
    epoll: Arc<OwnedFd>,
    wake: Arc<OwnedFd>,
    queue: Receiver<Message>,
    sessions: HashMap<u64, SessionState, BuildHasherDefault<IdHasher>>,
    /// Ids of the sessions that may have a prompt playing (checked once per iteration).
    playing: Vec<u64>,
    metrics: RelayMetrics,
    totals: Totals,
    /// Rest after a busy iteration ([`EngineConfig::tick`]).
    tick: Duration,
}

impl Thread {
    fn run(&mut self) {
        // SAFETY: zeroed epoll_event is plain data.
        let mut events = vec![unsafe { std::mem::zeroed::<libc::epoll_event>() }; EVENTS];
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            let timeout = self.play_timeout();
            // SAFETY: `events` holds EVENTS entries; the epoll descriptor is ours.
            let n = unsafe {
                libc::epoll_wait(
                    self.epoll.as_raw_fd(),
                    events.as_mut_ptr(),
                    EVENTS as libc::c_int,
                    timeout,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                tracing::error!(error = %e, "relay thread: epoll_wait failed; relay stopped");
                self.close_all();
                return;
            }
            // Messages first: a session registered before its sockets were added to the set
            // is known before any event of theirs is handled.
            if !self.take_messages() {
                self.close_all();
                return;
            }
            let ready = usize::try_from(n).unwrap_or(0);
            let mut relayed = 0usize;
            for event in events.iter().take(ready) {
                let key = event.u64;
                if key == WAKE_KEY {
                    continue;
                }
                relayed += 1;
                let Some(session) = self.sessions.get_mut(&(key >> 2)) else {
                    continue; // closed in this iteration
                };
                let index = (key & 3) as usize;
                session.relay_one(index, &mut buf, &self.metrics, &mut self.totals);
            }
            self.play_due();
            self.totals.flush(&self.metrics);
            // Busy but not saturated: let the next datagrams gather (one wake-up for many).
            if relayed > 0 && ready < EVENTS && !self.tick.is_zero() {
                std::thread::sleep(self.tick);
            }
        }
    }

    /// Apply queued messages; `false` on [`Message::Shutdown`] or when every sender is gone.
    fn take_messages(&mut self) -> bool {
        let mut count = [0u8; 8];
        // SAFETY: reads 8 bytes into a live buffer from our non-blocking eventfd (resets it).
        unsafe {
            libc::read(self.wake.as_raw_fd(), count.as_mut_ptr().cast(), 8);
        }
        loop {
            match self.queue.try_recv() {
                Ok(Message::Register(session)) => {
                    self.sessions.insert(session.id, *session);
                }
                Ok(Message::Command(id, command)) => {
                    if let Some(session) = self.sessions.get_mut(&id) {
                        let plays = matches!(command, Command::Play { .. });
                        session.apply(command, &mut self.totals);
                        if plays && !self.playing.contains(&id) {
                            self.playing.push(id);
                        }
                    }
                }
                Ok(Message::Close(id, done)) => {
                    if let Some(mut session) = self.sessions.remove(&id) {
                        session.end_plays();
                        drop(session); // sockets closed (epoll forgets them), ports freed
                    }
                    if let Some(done) = done {
                        let _ = done.send(());
                    }
                }
                Ok(Message::Shutdown) | Err(TryRecvError::Disconnected) => return false,
                Err(TryRecvError::Empty) => return true,
            }
        }
    }

    fn close_all(&mut self) {
        for session in self.sessions.values_mut() {
            session.end_plays();
        }
        self.sessions.clear();
    }

    /// Milliseconds until the next prompt packet is due (rounded up), -1 for none.
    fn play_timeout(&mut self) -> libc::c_int {
        let sessions = &self.sessions;
        self.playing.retain(|id| {
            sessions
                .get(id)
                .is_some_and(|s| s.media.next_due().is_some())
        });
        let next = self
            .playing
            .iter()
            .filter_map(|id| sessions.get(id).and_then(|s| s.media.next_due()))
            .min();
        match next {
            None => -1,
            Some(due) => {
                let wait = due.saturating_duration_since(Instant::now());
                libc::c_int::try_from(wait.as_micros().div_ceil(1000)).unwrap_or(libc::c_int::MAX)
            }
        }
    }

    fn play_due(&mut self) {
        if self.playing.is_empty() {
            return;
        }
        let now = Instant::now();
        for id in &self.playing {
            if let Some(session) = self.sessions.get_mut(id)
                && session.media.next_due().is_some_and(|due| due <= now)
            {
                session.refresh_hints();
                session.play_due(now, &mut self.totals);
            }
        }
    }
}

impl SessionState {
    /// Apply hints that changed: a hint set before a packet was sent (or a prompt started)
    /// applies to it. One atomic load per side.
    fn refresh_hints(&mut self) {
        for (rx, peer) in self.hints.iter_mut().zip(self.media.peers.iter_mut()) {
            if rx.has_changed().unwrap_or(false) {
                let hint = *rx.borrow_and_update();
                if peer.hint != hint {
                    peer.hint = hint;
                    peer.rtp_latched = None;
                    peer.rtcp_latched = None;
                }
            }
        }
    }

    fn end_plays(&mut self) {
        for side in 0..2 {
            self.media.end_play(side, PlayState::Closed);
        }
    }

    fn apply(&mut self, command: Command, totals: &mut Totals) {
        // A play right after set_peer_hint must go to that peer.
        self.refresh_hints();
        let media = &mut self.media;
        match command {
            Command::SetCodec { side, codec, pt } => {
                if let Some(slot) = media.codecs.get_mut(side.index()) {
                    *slot = (codec, pt);
                }
            }
            Command::Play {
                side,
                prompt,
                repeat,
                done,
            } => {
                media.end_play(side.index(), PlayState::Replaced);
                if let Some(slot) = media.players.get_mut(side.index()) {
                    *slot = Some(Playback::new(prompt, repeat, Instant::now(), done));
                }
                self.play_due(Instant::now(), totals);
            }
            Command::StopPlay { side } => media.end_play(side.index(), PlayState::Stopped),
            Command::RecordStart { tap } => {
                media.tap = Some(super::Tap {
                    tx: tap,
                    start: Instant::now(),
                });
            }
            Command::RecordStop => media.tap = None,
        }
    }

    /// Send the prompt packets that are due, at most [`PLAY_CATCH_UP`] per side.
    fn play_due(&mut self, now: Instant, totals: &mut Totals) {
        for side in 0..2 {
            let Some(socket) = self.sockets.get(side * 2) else {
                continue;
            };
            let media = &mut self.media;
            let destination = media.peers.get(side).and_then(Peer::rtp);
            let Some(&(codec, pt)) = media.codecs.get(side) else {
                continue;
            };
            let (Some(slot), Some(sender)) =
                (media.players.get_mut(side), media.senders.get_mut(side))
            else {
                continue;
            };
            let mut buf = [0u8; PROMPT_PACKET_LEN];
            for _ in 0..PLAY_CATCH_UP {
                let Some(play) = slot.as_mut() else { break };
                if play.due > now {
                    break;
                }
                let Some(len) = play.next_packet(sender, codec, pt, &mut buf) else {
                    if let Some(play) = slot.take() {
                        play.end(PlayState::Finished);
                    }
                    break;
                };
                let Some(destination) = destination else {
                    continue;
                };
                match socket.send_to(buf.get(..len).unwrap_or(&[]), destination) {
                    Ok(_) => {
                        bump(&self.stats.prompt_packets[side], 1);
                        totals.prompt_packets += 1;
                    }
                    Err(_) => {
                        bump(&self.stats.dropped_send_error, 1);
                        totals.dropped_send_error += 1;
                    }
                }
            }
            // Far behind schedule (the thread was starved): skip ahead instead of bursting.
            if let Some(play) = slot.as_mut()
                && play.due + PACKET_INTERVAL * PLAY_CATCH_UP as u32 <= now
            {
                play.due = now;
            }
        }
    }

    /// Relay one datagram queued on socket `index` (0..4), if any.
    fn relay_one(
        &mut self,
        index: usize,
        buf: &mut [u8],
        metrics: &RelayMetrics,
        totals: &mut Totals,
    ) {
        let from = index / 2;
        let to = 1 - from;
        let is_rtcp = index % 2 == 1;
        let Some(socket) = self.sockets.get(index) else {
            return;
        };
        let (len, source) = match socket.recv_from(buf) {
            Ok(received) => received,
            // Nothing queued (a stale event), or e.g. ECONNREFUSED from an earlier ICMP
            // error (which the read consumed): nothing to relay.
            Err(_) => return,
        };
        let Some(packet) = buf.get(..len) else { return };
        if !valid(packet, is_rtcp) {
            bump(&self.stats.dropped_malformed, 1);
            totals.dropped_malformed += 1;
            return;
        }
        self.refresh_hints();
        // Symmetric RTP (RFC 4961): the first packet from a side fixes its address. A packet
        // from the very address the side's SDP gave (the hint) takes the latch back: when
        // several forks of a call answered at once, a losing phone's stray packets must not
        // keep the bridged phone's media (the switch hints only the fork it bridged).
        if let Some(src_peer) = self.media.peers.get_mut(from) {
            let hinted = src_peer.hint.map(|h| if is_rtcp { h.rtcp } else { h.rtp });
            let latch = if is_rtcp {
                &mut src_peer.rtcp_latched
            } else {
                &mut src_peer.rtp_latched
            };
            if hinted == Some(source) {
                *latch = Some(source);
            } else {
                latch.get_or_insert(source);
            }
        }
        if is_rtcp {
            read_reports(&mut self.media, &self.stats, metrics, from, packet);
        } else {
            observe_rtp(&mut self.media, &self.stats, metrics, from, packet);
        }
        let Some(dst) = self.media.peers.get(to) else {
            return;
        };
        let destination = if is_rtcp { dst.rtcp() } else { dst.rtp() };
        let Some(destination) = destination else {
            bump(&self.stats.dropped_no_peer, 1);
            totals.dropped_no_peer += 1;
            return;
        };
        let Some(out) = self.sockets.get(index ^ 2) else {
            return;
        };
        // Counted before the send, so that whoever receives the packet sees it counted;
        // taken back if the kernel refuses it (single writer: plain stores).
        let len = len as u64;
        let (packets, bytes) = if is_rtcp {
            (&self.stats.rtcp_packets[from], None)
        } else {
            (
                &self.stats.rtp_packets[from],
                Some(&self.stats.rtp_bytes[from]),
            )
        };
        bump(packets, 1);
        if let Some(bytes) = bytes {
            bump(bytes, len);
        }
        if out.send_to(packet, destination).is_err() {
            bump(packets, u64::MAX); // wrapping: minus one
            if let Some(bytes) = bytes {
                bump(bytes, len.wrapping_neg());
            }
            bump(&self.stats.dropped_send_error, 1);
            totals.dropped_send_error += 1;
            return;
        }
        if is_rtcp {
            totals.rtcp_packets += 1;
        } else {
            totals.rtp_packets += 1;
            totals.rtp_bytes += len;
            // Relayed media wins over a prompt to the same peer (the call is bridged).
            if self.media.players.get(to).is_some_and(Option::is_some) {
                self.media.end_play(to, PlayState::Preempted);
            }
        }
    }
}
