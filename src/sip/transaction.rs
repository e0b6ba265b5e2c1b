//! The SIP transaction layer (RFC 3261 §17, with RFC 6026 "Accepted" states), sans-IO.
//!
//! [`TransactionLayer`] holds every client and server transaction of one SIP endpoint. It
//! never reads the clock and owns no socket: the caller passes `now` into every input,
//! polls [`TransactionLayer::poll_transmit`] for messages to put on the wire,
//! [`TransactionLayer::poll_event`] for what the transaction user (TU) must know, and
//! [`TransactionLayer::poll_timeout`] for the next instant at which
//! [`TransactionLayer::handle_timeout`] must be called.
//!
//! Timers live in one ordered table of `(deadline, transaction, timer)` (quinn-proto
//! style), so `poll_timeout` is O(log n) and thousands of transactions are cheap.
//!
//! Driving it (the switch's IO edge):
//! ```text
//! loop {
//!     select! { datagram => layer.handle_incoming(now, peer, parse(datagram)),
//!               sleep_until(layer.poll_timeout()) => layer.handle_timeout(now) }
//!     while let Some(t) = layer.poll_transmit() { socket.send_to(t.message.to_bytes(), t.to) }
//!     while let Some(e) = layer.poll_event() { tu.handle(e) }   // TU may call send_*/cancel
//! }
//! ```

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::Rng;

use crate::sip::header::{BRANCH_COOKIE, Via};
use crate::sip::message::{HeaderName, Headers, Message, Method, Request, Response, SipHeaders};
use crate::sip::transport::Peer;
use crate::sip::uri::Host;

/// Timer base values (RFC 3261 §17.1.1.1, Table 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerConfig {
    /// RTT estimate, 500 ms by default.
    pub t1: Duration,
    /// Maximum retransmit interval for non-INVITE requests and INVITE responses, 4 s.
    pub t2: Duration,
    /// Maximum duration a message remains in the network, 5 s.
    pub t4: Duration,
    /// Timer D, wait time for response retransmits over unreliable transports
    /// (RFC 3261 §17.1.1.2: at least 32 s).
    pub d: Duration,
}

impl Default for TimerConfig {
    fn default() -> TimerConfig {
        TimerConfig {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
            d: Duration::from_secs(32),
        }
    }
}

impl TimerConfig {
    /// 64*T1: timers B, F, H, J, L, M (RFC 3261 §17, RFC 6026).
    fn t1x64(&self) -> Duration {
        self.t1 * 64
    }
}

/// Identifies a client transaction (RFC 3261 §17.1.3): top Via branch + CSeq method.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientTxKey {
    branch: String,
    method: Method,
}

impl ClientTxKey {
    /// The branch of the request's top Via.
    pub fn branch(&self) -> &str {
        &self.branch
    }
    /// The CSeq method of the transaction (INVITE, CANCEL, BYE…).
    pub fn method(&self) -> &Method {
        &self.method
    }
}

/// Identifies a server transaction (RFC 3261 §17.2.3): top Via branch + sent-by + method,
/// with ACK mapped to INVITE. For requests without the magic cookie (RFC 2543 peers) the
/// branch is replaced by a synthetic one from Call-ID, CSeq number and From tag.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServerTxKey {
    branch: String,
    sent_by: String,
    method: Method,
}

impl ServerTxKey {
    /// The branch of the request's top Via (or the synthetic RFC 2543 key).
    pub fn branch(&self) -> &str {
        &self.branch
    }
    /// The `host:port` sent-by of the request's top Via, host lower-cased.
    pub fn sent_by(&self) -> &str {
        &self.sent_by
    }
    /// The request method (INVITE, CANCEL, BYE…).
    pub fn method(&self) -> &Method {
        &self.method
    }
}

/// A message to put on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Where to send: for requests the peer given by the TU, for responses the peer chosen
    /// from the top Via per RFC 3261 §18.2.2 / RFC 3581.
    pub to: Peer,
    /// The request or response to serialise and send, unchanged.
    pub message: Message,
}

/// What the transaction user must handle.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TxEvent {
    /// A new server transaction (any method but ACK and CANCEL). For INVITE, the layer has
    /// already sent `100 Trying`. The request's top Via carries `received`/`rport`.
    Request {
        /// The new server transaction; pass it back to answer the request.
        key: ServerTxKey,
        /// The transport peer the request came from.
        from: Peer,
        /// The request, with `received`/`rport` set on its top Via (RFC 3261 §18.2.1, RFC 3581 §4).
        request: Request,
    },
    /// An ACK that belongs to no INVITE server transaction in Completed state: the ACK for
    /// a 2xx (RFC 3261 §13.3.1.4), for the dialog layer. When it matched a server
    /// transaction in Accepted state, the layer has stopped retransmitting the 2xx.
    Ack {
        /// The transport peer the ACK came from.
        from: Peer,
        /// The ACK, with `received`/`rport` set on its top Via.
        request: Request,
    },
    /// A CANCEL matched a server INVITE transaction in Proceeding (RFC 3261 §9.2). The
    /// layer has answered the CANCEL with 200; the TU must answer the INVITE with 487.
    Cancelled {
        /// The server INVITE transaction the CANCEL matched (RFC 3261 §9.2); answer it with 487.
        invite: ServerTxKey,
        /// The CANCEL request itself (already answered 200 by the layer).
        cancel: Request,
    },
    /// A provisional or final response for a client transaction; retransmissions absorbed.
    Response {
        /// The client transaction the response belongs to (RFC 3261 §17.1.3).
        key: ClientTxKey,
        /// The response, 100–699; a 2xx to INVITE ends the client transaction (RFC 3261 §17.1.1.2; RFC 6026 Accepted).
        response: Response,
    },
    /// A 2xx to an INVITE that matches no live client transaction, or a retransmission of
    /// a 2xx already delivered (RFC 3261 §13.2.2.4): the TU re-sends its ACK.
    Stray2xx {
        /// The transport peer the 2xx came from.
        from: Peer,
        /// The 2xx response to INVITE.
        response: Response,
    },
    /// Timer B or F fired (RFC 3261 §17.1.1.2, §17.1.2.2), or no final response came
    /// 64*T1 after a CANCEL (§9.1): the TU treats it as a 408.
    Timeout {
        /// The client transaction that timed out; it has ended.
        key: ClientTxKey,
    },
    /// Timer H fired: no ACK for our non-2xx final (RFC 3261 §17.2.1); or Timer L fired
    /// with no ACK for our 2xx (RFC 3261 §13.3.1.4: the TU should send BYE).
    ServerAckTimeout {
        /// The server INVITE transaction that got no ACK; it has ended.
        key: ServerTxKey,
    },
    /// The transport reported a failure for a client transaction's request
    /// (RFC 3261 §17.1.4, reported through [`TransactionLayer::handle_transport_error`]):
    /// the TU treats it as a 503 (§8.1.3.1). The transaction has ended.
    TransportError {
        /// The client transaction whose request could not be sent; it has ended.
        key: ClientTxKey,
    },
}

/// Counters for metrics (`vigie_sip_retransmissions_total`, …).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TxStats {
    /// Retransmissions sent by the layer: requests (timers A, E), final responses
    /// (timer G and the 2xx of RFC 6026 Accepted state), responses re-sent because the
    /// peer retransmitted its request, and ACKs re-sent for retransmitted non-2xx finals.
    pub retransmissions: u64,
    /// Client transactions that ended with a [`TxEvent::Timeout`].
    pub timeouts: u64,
    /// Incoming messages dropped because their Via or CSeq could not be read.
    pub malformed: u64,
    /// Non-INVITE server transactions the TU never answered, dropped after 64*T1.
    pub unanswered: u64,
    /// Live client transactions.
    pub client_transactions: usize,
    /// Live server transactions.
    pub server_transactions: usize,
}

/// Misuse of the layer by the TU (our bug, not the peer's).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TxError {
    #[error("no such transaction")]
    /// The key names no live transaction (it ended or was never created).
    UnknownTransaction,
    #[error("a final response was already sent on this transaction")]
    /// The server transaction is past Trying/Proceeding: a final response was already sent
    /// on it (RFC 3261 §17.2.1, §17.2.2; RFC 6026 Accepted state).
    AlreadyFinal,
    #[error("status {0} cannot be sent here")]
    /// The response status (carried) is outside 100–699 (RFC 3261 §21).
    BadStatus(u16),
    #[error("the request has no top Via with a branch, or no CSeq")]
    /// The TU's request has no top Via with a `z9hG4bK` branch, or no readable CSeq
    /// (RFC 3261 §8.1.1.7, §17.1.3).
    MissingBranch,
    #[error("an ACK is sent with send_stateless, not in a transaction")]
    /// ACK is not a transaction (RFC 3261 §17.1.1.3 for non-2xx, §13.2.2.4 for 2xx): send it
    /// with `send_stateless`.
    AckIsStateless,
    #[error("only an INVITE client transaction without final response can be cancelled")]
    /// CANCEL asked for a transaction that is not an INVITE client transaction still awaiting
    /// its final response (RFC 3261 §9.1).
    NotCancellable,
}

/// Returns a fresh RFC 3261 branch: the magic cookie `z9hG4bK` followed by 24 random
/// alphanumeric characters (RFC 3261 §8.1.1.7).
pub fn new_branch() -> String {
    let mut s = String::with_capacity(BRANCH_COOKIE.len() + 24);
    s.push_str(BRANCH_COOKIE);
    let mut rng = rand::rng();
    for _ in 0..24 {
        s.push(char::from(rng.sample(rand::distr::Alphanumeric)));
    }
    s
}

// ---------------------------------------------------------------------------------------
// The layer
// ---------------------------------------------------------------------------------------

/// Every transaction of one SIP endpoint (RFC 3261 §17). See the module documentation.
#[derive(Debug)]
pub struct TransactionLayer {
    cfg: TimerConfig,
    next_id: u64,
    clients: HashMap<u64, ClientTx>,
    client_index: HashMap<ClientTxKey, u64>,
    servers: HashMap<u64, ServerTx>,
    server_index: HashMap<ServerTxKey, u64>,
    /// INVITE server transactions in Accepted state by (Call-ID, CSeq number, From tag),
    /// to recognise the ACK for their 2xx, which has its own branch.
    accepted_index: HashMap<DialogAckKey, u64>,
    timers: TimerTable,
    transmits: VecDeque<Transmit>,
    events: VecDeque<TxEvent>,
    stats: TxStats,
}

impl TransactionLayer {
    /// A layer with no transactions.
    pub fn new(cfg: TimerConfig) -> TransactionLayer {
        TransactionLayer {
            cfg,
            next_id: 0,
            clients: HashMap::new(),
            client_index: HashMap::new(),
            servers: HashMap::new(),
            server_index: HashMap::new(),
            accepted_index: HashMap::new(),
            timers: TimerTable::default(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: TxStats::default(),
        }
    }

    /// The timer configuration in use.
    pub fn config(&self) -> &TimerConfig {
        &self.cfg
    }

    /// Counters for metrics, with the current numbers of live transactions.
    pub fn stats(&self) -> TxStats {
        TxStats {
            client_transactions: self.clients.len(),
            server_transactions: self.servers.len(),
            ..self.stats
        }
    }

    /// A message parsed from the network; `from` is the transport peer it came from.
    /// Requests get `received`/`rport` on their top Via (RFC 3261 §18.2.1, RFC 3581).
    /// Messages whose top Via or CSeq cannot be read are dropped and counted in
    /// [`TxStats::malformed`].
    pub fn handle_incoming(&mut self, now: Instant, from: Peer, msg: Message) {
        match msg {
            Message::Request(req) => self.incoming_request(now, from, req),
            Message::Response(resp) => self.incoming_response(now, from, resp),
        }
    }

    /// The TU sends a request (INVITE or non-INVITE) in a new client transaction
    /// (RFC 3261 §17.1.1, §17.1.2). The request must carry its top Via with a fresh branch
    /// ([`new_branch`]). ACK for a 2xx goes through [`TransactionLayer::send_stateless`].
    ///
    /// # Errors
    /// [`TxError::MissingBranch`] when the top Via, its branch or the CSeq is missing;
    /// [`TxError::AckIsStateless`] for an ACK, which creates no transaction.
    pub fn send_request(
        &mut self,
        now: Instant,
        to: Peer,
        req: Request,
    ) -> Result<ClientTxKey, TxError> {
        if req.method == Method::Ack {
            return Err(TxError::AckIsStateless);
        }
        let branch = req
            .top_via()
            .ok()
            .and_then(|v| v.branch().map(str::to_owned))
            .ok_or(TxError::MissingBranch)?;
        req.cseq().map_err(|_| TxError::MissingBranch)?;
        let key = ClientTxKey {
            branch,
            method: req.method.clone(),
        };
        Ok(self.start_client(now, to, key, req))
    }

    /// Sends a response on a server transaction (RFC 3261 §17.2.1, §17.2.2). The
    /// destination is the one computed from the request's top Via (§18.2.2).
    /// A 2xx to an INVITE moves the transaction to Accepted (RFC 6026): the layer
    /// retransmits it (T1, 2T1 … capped at T2) until the ACK arrives or 64*T1 passes.
    ///
    /// # Errors
    /// [`TxError::UnknownTransaction`], [`TxError::AlreadyFinal`], or
    /// [`TxError::BadStatus`] for a status outside 101–699 (100 is sent by the layer).
    pub fn send_response(
        &mut self,
        now: Instant,
        key: &ServerTxKey,
        resp: Response,
    ) -> Result<(), TxError> {
        if !(100..=699).contains(&resp.status) {
            return Err(TxError::BadStatus(resp.status));
        }
        let id = *self
            .server_index
            .get(key)
            .ok_or(TxError::UnknownTransaction)?;
        let cfg = self.cfg;
        let tx = self
            .servers
            .get_mut(&id)
            .ok_or(TxError::UnknownTransaction)?;
        if !matches!(tx.state, ServerState::Trying | ServerState::Proceeding) {
            return Err(TxError::AlreadyFinal);
        }
        let reliable = tx.from.kind.is_reliable();
        self.transmits.push_back(Transmit {
            to: tx.dest,
            message: Message::Response(resp.clone()),
        });
        let class = resp.class();
        tx.last_response = Some(resp);
        if class == 1 {
            tx.state = ServerState::Proceeding;
            return Ok(());
        }
        if tx.invite {
            if class == 2 {
                tx.state = ServerState::Accepted;
                if let Some(k) = tx.ack_key.clone() {
                    self.accepted_index.insert(k, id);
                }
                if !reliable {
                    tx.retransmit_interval = cfg.t1;
                    self.timers.arm(Slot::server(id, Timer::G), now + cfg.t1);
                }
                self.timers
                    .arm(Slot::server(id, Timer::L), now + cfg.t1x64());
            } else {
                tx.state = ServerState::Completed;
                if !reliable {
                    tx.retransmit_interval = cfg.t1;
                    self.timers.arm(Slot::server(id, Timer::G), now + cfg.t1);
                }
                self.timers
                    .arm(Slot::server(id, Timer::H), now + cfg.t1x64());
            }
        } else {
            tx.state = ServerState::Completed;
            if reliable {
                self.terminate_server(id);
            } else {
                self.timers
                    .arm(Slot::server(id, Timer::J), now + cfg.t1x64());
            }
        }
        Ok(())
    }

    /// CANCELs a pending client INVITE (RFC 3261 §9.1). The CANCEL is sent in its own
    /// non-INVITE client transaction, whose key is returned; its responses come as
    /// [`TxEvent::Response`] with that key. If no provisional response has arrived yet the
    /// CANCEL is held until one does (and dropped if a final response comes first). If no
    /// final response to the INVITE arrives within 64*T1 of sending the CANCEL, the INVITE
    /// ends with [`TxEvent::Timeout`].
    ///
    /// # Errors
    /// [`TxError::NotCancellable`] when `key` is not an INVITE client transaction awaiting
    /// its final response.
    pub fn cancel(&mut self, now: Instant, key: &ClientTxKey) -> Result<ClientTxKey, TxError> {
        self.cancel_with_reason(now, key, None)
    }

    /// [`TransactionLayer::cancel`] with a `Reason` header value in the CANCEL (RFC 3326
    /// §2), e.g. `SIP;cause=200;text="Call completed elsewhere"` when a forked call was
    /// answered by another branch (RFC 3261 §16.7 point 10). A CANCEL already sent or
    /// held keeps the first reason given.
    ///
    /// # Errors
    /// As [`TransactionLayer::cancel`].
    pub fn cancel_with_reason(
        &mut self,
        now: Instant,
        key: &ClientTxKey,
        reason: Option<&str>,
    ) -> Result<ClientTxKey, TxError> {
        let id = *self.client_index.get(key).ok_or(TxError::NotCancellable)?;
        let tx = self.clients.get_mut(&id).ok_or(TxError::NotCancellable)?;
        if !tx.invite {
            return Err(TxError::NotCancellable);
        }
        let cancel_key = ClientTxKey {
            branch: key.branch.clone(),
            method: Method::Cancel,
        };
        if tx.cancel_reason.is_none() && !tx.cancel_sent {
            tx.cancel_reason = reason.map(str::to_owned);
        }
        match tx.state {
            ClientState::Calling => {
                tx.cancel_pending = true;
                Ok(cancel_key)
            }
            ClientState::Proceeding => {
                if !tx.cancel_sent {
                    self.send_cancel(now, id);
                }
                Ok(cancel_key)
            }
            _ => Err(TxError::NotCancellable),
        }
    }

    /// Sends a message outside any transaction: the ACK for a 2xx (RFC 3261 §13.2.2.4),
    /// a stateless 400 for a request that failed to parse.
    pub fn send_stateless(&mut self, to: Peer, msg: Message) {
        self.transmits.push_back(Transmit { to, message: msg });
    }

    /// The IO edge could not send a client transaction's request (connection refused or
    /// reset, ICMP unreachable; RFC 3261 §17.1.4): the transaction ends with
    /// [`TxEvent::TransportError`] if it had no final response yet; otherwise nothing.
    pub fn handle_transport_error(&mut self, key: &ClientTxKey) {
        let Some(id) = self.client_index.get(key).copied() else {
            return;
        };
        let pending = self
            .clients
            .get(&id)
            .is_some_and(|tx| matches!(tx.state, ClientState::Calling | ClientState::Proceeding));
        if pending {
            self.events
                .push_back(TxEvent::TransportError { key: key.clone() });
        }
        self.terminate_client(id);
    }

    /// Runs every timer whose deadline is at or before `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some((at, slot)) = self.timers.pop_due(now) {
            match slot.side {
                Side::Client => self.client_timer(at, slot.id, slot.timer),
                Side::Server => self.server_timer(at, slot.id, slot.timer),
            }
        }
    }

    /// The next instant at which [`TransactionLayer::handle_timeout`] must be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.first()
    }

    /// The next message to send, in order.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event for the TU, in order.
    pub fn poll_event(&mut self) -> Option<TxEvent> {
        self.events.pop_front()
    }

    // -----------------------------------------------------------------------------------
    // client side
    // -----------------------------------------------------------------------------------

    fn alloc_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn start_client(
        &mut self,
        now: Instant,
        to: Peer,
        key: ClientTxKey,
        req: Request,
    ) -> ClientTxKey {
        // A TU reusing a live key replaces the old transaction.
        if let Some(old) = self.client_index.get(&key).copied() {
            self.terminate_client(old);
        }
        let id = self.alloc_id();
        let invite = req.method == Method::Invite;
        let reliable = to.kind.is_reliable();
        let cfg = self.cfg;
        self.transmits.push_back(Transmit {
            to,
            message: Message::Request(req.clone()),
        });
        if !reliable {
            let t = if invite { Timer::A } else { Timer::E };
            self.timers.arm(Slot::client(id, t), now + cfg.t1);
        }
        let t = if invite { Timer::B } else { Timer::F };
        self.timers.arm(Slot::client(id, t), now + cfg.t1x64());
        self.clients.insert(
            id,
            ClientTx {
                key: key.clone(),
                invite,
                to,
                request: req,
                state: ClientState::Calling,
                retransmit_interval: cfg.t1,
                ack: None,
                cancel_pending: false,
                cancel_sent: false,
                cancel_reason: None,
                seen_2xx_tags: Vec::new(),
            },
        );
        self.client_index.insert(key.clone(), id);
        key
    }

    fn send_cancel(&mut self, now: Instant, invite_id: u64) {
        let Some(tx) = self.clients.get_mut(&invite_id) else {
            return;
        };
        tx.cancel_pending = false;
        tx.cancel_sent = true;
        let mut cancel = build_cancel(&tx.request);
        if let Some(reason) = &tx.cancel_reason {
            cancel.headers.push(HeaderName::Reason, reason.clone());
        }
        let to = tx.to;
        let key = ClientTxKey {
            branch: tx.key.branch.clone(),
            method: Method::Cancel,
        };
        // RFC 3261 §9.1: give up on the INVITE 64*T1 after the CANCEL.
        self.timers
            .arm(Slot::client(invite_id, Timer::B), now + self.cfg.t1x64());
        self.start_client(now, to, key, cancel);
    }

    fn incoming_response(&mut self, now: Instant, from: Peer, resp: Response) {
        let (Ok(via), Ok(cseq)) = (resp.top_via(), resp.cseq()) else {
            self.stats.malformed += 1;
            return;
        };
        let Some(branch) = via.branch() else {
            self.stats.malformed += 1;
            return;
        };
        if !(100..=699).contains(&resp.status) {
            self.stats.malformed += 1;
            return;
        }
        let key = ClientTxKey {
            branch: branch.to_owned(),
            method: cseq.method,
        };
        let Some(id) = self.client_index.get(&key).copied() else {
            if resp.class() == 2 && key.method == Method::Invite {
                self.events.push_back(TxEvent::Stray2xx {
                    from,
                    response: resp,
                });
            }
            return;
        };
        let cfg = self.cfg;
        let Some(tx) = self.clients.get_mut(&id) else {
            return;
        };
        let reliable = tx.to.kind.is_reliable();
        let class = resp.class();
        match (tx.invite, tx.state) {
            // ---- INVITE client, RFC 3261 §17.1.1.2 and RFC 6026 §7.2
            (true, ClientState::Calling | ClientState::Proceeding) => {
                self.timers.disarm(Slot::client(id, Timer::A));
                if class == 1 {
                    tx.state = ClientState::Proceeding;
                    if !tx.cancel_sent {
                        self.timers.disarm(Slot::client(id, Timer::B));
                    }
                    let pending = tx.cancel_pending;
                    self.events.push_back(TxEvent::Response {
                        key,
                        response: resp,
                    });
                    if pending {
                        self.send_cancel(now, id);
                    }
                } else if class == 2 {
                    tx.state = ClientState::Accepted;
                    tx.cancel_pending = false;
                    tx.seen_2xx_tags.push(to_tag(&resp));
                    self.timers.disarm(Slot::client(id, Timer::B));
                    self.timers
                        .arm(Slot::client(id, Timer::M), now + cfg.t1x64());
                    self.events.push_back(TxEvent::Response {
                        key,
                        response: resp,
                    });
                } else {
                    tx.state = ClientState::Completed;
                    tx.cancel_pending = false;
                    let ack = build_ack(&tx.request, &resp);
                    self.transmits.push_back(Transmit {
                        to: tx.to,
                        message: Message::Request(ack.clone()),
                    });
                    tx.ack = Some(ack);
                    self.timers.disarm(Slot::client(id, Timer::B));
                    self.events.push_back(TxEvent::Response {
                        key,
                        response: resp,
                    });
                    if reliable {
                        self.terminate_client(id);
                    } else {
                        self.timers.arm(Slot::client(id, Timer::D), now + cfg.d);
                    }
                }
            }
            (true, ClientState::Accepted) => {
                if class == 2 {
                    let tag = to_tag(&resp);
                    if tx.seen_2xx_tags.contains(&tag) {
                        self.events.push_back(TxEvent::Stray2xx {
                            from,
                            response: resp,
                        });
                    } else {
                        // A 2xx from another fork: a new dialog for the TU.
                        tx.seen_2xx_tags.push(tag);
                        self.events.push_back(TxEvent::Response {
                            key,
                            response: resp,
                        });
                    }
                }
            }
            (true, ClientState::Completed) => {
                if class >= 3
                    && let Some(ack) = tx.ack.clone()
                {
                    self.stats.retransmissions += 1;
                    self.transmits.push_back(Transmit {
                        to: tx.to,
                        message: Message::Request(ack),
                    });
                }
            }
            // ---- non-INVITE client, RFC 3261 §17.1.2.2
            (false, ClientState::Calling | ClientState::Proceeding) => {
                if class == 1 {
                    tx.state = ClientState::Proceeding;
                    self.events.push_back(TxEvent::Response {
                        key,
                        response: resp,
                    });
                } else {
                    tx.state = ClientState::Completed;
                    self.timers.disarm(Slot::client(id, Timer::E));
                    self.timers.disarm(Slot::client(id, Timer::F));
                    self.events.push_back(TxEvent::Response {
                        key,
                        response: resp,
                    });
                    if reliable {
                        self.terminate_client(id);
                    } else {
                        self.timers.arm(Slot::client(id, Timer::K), now + cfg.t4);
                    }
                }
            }
            (false, _) => {}
        }
    }

    fn client_timer(&mut self, at: Instant, id: u64, timer: Timer) {
        let cfg = self.cfg;
        let Some(tx) = self.clients.get_mut(&id) else {
            return;
        };
        match timer {
            Timer::A if tx.state == ClientState::Calling => {
                self.stats.retransmissions += 1;
                self.transmits.push_back(Transmit {
                    to: tx.to,
                    message: Message::Request(tx.request.clone()),
                });
                tx.retransmit_interval *= 2;
                self.timers
                    .arm(Slot::client(id, Timer::A), at + tx.retransmit_interval);
            }
            Timer::E if matches!(tx.state, ClientState::Calling | ClientState::Proceeding) => {
                self.stats.retransmissions += 1;
                self.transmits.push_back(Transmit {
                    to: tx.to,
                    message: Message::Request(tx.request.clone()),
                });
                tx.retransmit_interval = if tx.state == ClientState::Proceeding {
                    cfg.t2
                } else {
                    (tx.retransmit_interval * 2).min(cfg.t2)
                };
                self.timers
                    .arm(Slot::client(id, Timer::E), at + tx.retransmit_interval);
            }
            Timer::B | Timer::F
                if matches!(tx.state, ClientState::Calling | ClientState::Proceeding) =>
            {
                let key = tx.key.clone();
                self.stats.timeouts += 1;
                self.events.push_back(TxEvent::Timeout { key });
                self.terminate_client(id);
            }
            Timer::D | Timer::K | Timer::M => self.terminate_client(id),
            _ => {}
        }
    }

    fn terminate_client(&mut self, id: u64) {
        if let Some(tx) = self.clients.remove(&id) {
            self.timers.disarm_all(Side::Client, id);
            if self.client_index.get(&tx.key) == Some(&id) {
                self.client_index.remove(&tx.key);
            }
        }
    }

    // -----------------------------------------------------------------------------------
    // server side
    // -----------------------------------------------------------------------------------

    fn incoming_request(&mut self, now: Instant, from: Peer, mut req: Request) {
        let (Ok(via), Ok(cseq)) = (req.top_via(), req.cseq()) else {
            self.stats.malformed += 1;
            return;
        };
        if cseq.method != req.method {
            self.stats.malformed += 1;
            return;
        }
        let via = stamp_top_via(&mut req, &via, from);
        let dest = response_destination(&via, from);
        let branch = match via.branch() {
            Some(b) if b.starts_with(BRANCH_COOKIE) => b.to_owned(),
            // RFC 2543 peer: synthesise a key (RFC 3261 §17.2.3 fallback, simplified).
            _ => format!(
                "2543;{};{};{}",
                req.call_id().unwrap_or(""),
                cseq.seq,
                req.header_from()
                    .ok()
                    .and_then(|f| f.tag().map(str::to_owned))
                    .unwrap_or_default()
            ),
        };
        let sent_by = sent_by(&via);
        let method = if req.method == Method::Ack {
            Method::Invite
        } else {
            req.method.clone()
        };
        let key = ServerTxKey {
            branch,
            sent_by,
            method,
        };
        if req.method == Method::Ack {
            self.incoming_ack(now, from, key, req);
            return;
        }
        if let Some(id) = self.server_index.get(&key).copied() {
            self.retransmitted_request(id);
            return;
        }
        if req.method == Method::Cancel {
            self.incoming_cancel(now, from, dest, key, req);
            return;
        }
        let invite = req.method == Method::Invite;
        let id = self.alloc_id();
        let ack_key = if invite { DialogAckKey::of(&req) } else { None };
        let mut tx = ServerTx {
            key: key.clone(),
            invite,
            from,
            dest,
            state: if invite {
                ServerState::Proceeding
            } else {
                ServerState::Trying
            },
            last_response: None,
            retransmit_interval: self.cfg.t1,
            ack_key,
            acked: false,
        };
        if invite {
            // RFC 3261 §17.2.1: our answers take seconds, so 100 Trying goes out at once.
            let trying = req.response(100, "Trying", None);
            self.transmits.push_back(Transmit {
                to: dest,
                message: Message::Response(trying.clone()),
            });
            tx.last_response = Some(trying);
        }
        self.servers.insert(id, tx);
        self.server_index.insert(key.clone(), id);
        if !invite {
            // Guard against a TU that never answers: the client gives up at 64*T1 (Timer
            // F), so do we. Re-armed as the real Timer J when the final response goes out.
            self.timers
                .arm(Slot::server(id, Timer::J), now + self.cfg.t1x64());
        }
        self.events.push_back(TxEvent::Request {
            key,
            from,
            request: req,
        });
    }

    /// A retransmitted request (not ACK) matched server transaction `id`.
    fn retransmitted_request(&mut self, id: u64) {
        let Some(tx) = self.servers.get(&id) else {
            return;
        };
        let resend = match tx.state {
            ServerState::Proceeding | ServerState::Completed => tx.last_response.clone(),
            // INVITE in Accepted/Confirmed: absorbed (RFC 6026 §8.7); Trying: absorbed.
            _ => None,
        };
        if let Some(resp) = resend {
            self.stats.retransmissions += 1;
            self.transmits.push_back(Transmit {
                to: tx.dest,
                message: Message::Response(resp),
            });
        }
    }

    fn incoming_ack(&mut self, now: Instant, from: Peer, key: ServerTxKey, req: Request) {
        let by_branch = self.server_index.get(&key).copied();
        let id = by_branch
            .or_else(|| DialogAckKey::of(&req).and_then(|k| self.accepted_index.get(&k).copied()));
        let Some(id) = id else {
            self.events.push_back(TxEvent::Ack { from, request: req });
            return;
        };
        let cfg = self.cfg;
        let Some(tx) = self.servers.get_mut(&id) else {
            return;
        };
        match tx.state {
            ServerState::Completed => {
                // RFC 3261 §17.2.1: ACK for our non-2xx final.
                tx.state = ServerState::Confirmed;
                self.timers.disarm(Slot::server(id, Timer::G));
                self.timers.disarm(Slot::server(id, Timer::H));
                if tx.from.kind.is_reliable() {
                    self.terminate_server(id);
                } else {
                    self.timers.arm(Slot::server(id, Timer::I), now + cfg.t4);
                }
            }
            ServerState::Accepted => {
                // RFC 6026 §8.7: the ACK for our 2xx stops its retransmission and goes to
                // the TU; the transaction stays until Timer L to absorb INVITE copies.
                self.timers.disarm(Slot::server(id, Timer::G));
                if !tx.acked {
                    tx.acked = true;
                    self.events.push_back(TxEvent::Ack { from, request: req });
                }
            }
            // Confirmed: absorbed. Proceeding: an ACK before any final is meaningless.
            _ => {}
        }
    }

    fn incoming_cancel(
        &mut self,
        now: Instant,
        from: Peer,
        dest: Peer,
        key: ServerTxKey,
        req: Request,
    ) {
        let invite_key = ServerTxKey {
            branch: key.branch.clone(),
            sent_by: key.sent_by.clone(),
            method: Method::Invite,
        };
        let invite = self
            .server_index
            .get(&invite_key)
            .and_then(|id| self.servers.get(id));
        let (status, reason, tag, cancelled) = match invite {
            None => (481, "Call/Transaction Does Not Exist", None, false),
            Some(inv) => (
                200,
                "OK",
                inv.last_response.as_ref().and_then(to_tag),
                inv.state == ServerState::Proceeding,
            ),
        };
        let resp = req.response(status, reason, tag.as_deref());
        let id = self.alloc_id();
        self.servers.insert(
            id,
            ServerTx {
                key: key.clone(),
                invite: false,
                from,
                dest,
                state: ServerState::Trying,
                last_response: None,
                retransmit_interval: self.cfg.t1,
                ack_key: None,
                acked: false,
            },
        );
        self.server_index.insert(key.clone(), id);
        // Infallible: the transaction was just created in Trying.
        let _ = self.send_response(now, &key, resp);
        if cancelled {
            self.events.push_back(TxEvent::Cancelled {
                invite: invite_key,
                cancel: req,
            });
        }
    }

    fn server_timer(&mut self, at: Instant, id: u64, timer: Timer) {
        let cfg = self.cfg;
        let Some(tx) = self.servers.get_mut(&id) else {
            return;
        };
        match timer {
            Timer::G if matches!(tx.state, ServerState::Completed | ServerState::Accepted) => {
                if let Some(resp) = tx.last_response.clone() {
                    self.stats.retransmissions += 1;
                    self.transmits.push_back(Transmit {
                        to: tx.dest,
                        message: Message::Response(resp),
                    });
                }
                tx.retransmit_interval = (tx.retransmit_interval * 2).min(cfg.t2);
                self.timers
                    .arm(Slot::server(id, Timer::G), at + tx.retransmit_interval);
            }
            Timer::H if tx.state == ServerState::Completed => {
                let key = tx.key.clone();
                self.events.push_back(TxEvent::ServerAckTimeout { key });
                self.terminate_server(id);
            }
            Timer::L => {
                if !tx.acked {
                    let key = tx.key.clone();
                    self.events.push_back(TxEvent::ServerAckTimeout { key });
                }
                self.terminate_server(id);
            }
            Timer::J => {
                if matches!(tx.state, ServerState::Trying | ServerState::Proceeding) {
                    self.stats.unanswered += 1;
                }
                self.terminate_server(id);
            }
            Timer::I => self.terminate_server(id),
            _ => {}
        }
    }

    fn terminate_server(&mut self, id: u64) {
        if let Some(tx) = self.servers.remove(&id) {
            self.timers.disarm_all(Side::Server, id);
            if self.server_index.get(&tx.key) == Some(&id) {
                self.server_index.remove(&tx.key);
            }
            if let Some(k) = tx.ack_key
                && self.accepted_index.get(&k) == Some(&id)
            {
                self.accepted_index.remove(&k);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Transaction state
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientState {
    /// INVITE "Calling" / non-INVITE "Trying".
    Calling,
    Proceeding,
    Completed,
    /// RFC 6026: a 2xx was received; further 2xx go to the TU.
    Accepted,
}

#[derive(Debug)]
struct ClientTx {
    key: ClientTxKey,
    invite: bool,
    to: Peer,
    request: Request,
    state: ClientState,
    /// Current interval of timer A or E.
    retransmit_interval: Duration,
    /// The ACK built for a non-2xx final (RFC 3261 §17.1.1.3), re-sent on retransmissions.
    ack: Option<Request>,
    cancel_pending: bool,
    cancel_sent: bool,
    /// `Reason` header value for the CANCEL (RFC 3326), if any.
    cancel_reason: Option<String>,
    /// To tags of the 2xx responses delivered, to tell retransmissions from forks.
    seen_2xx_tags: Vec<Option<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ServerState {
    /// non-INVITE only.
    Trying,
    Proceeding,
    Completed,
    /// INVITE only, after the ACK for a non-2xx.
    Confirmed,
    /// INVITE only, after a 2xx (RFC 6026).
    Accepted,
}

#[derive(Debug)]
struct ServerTx {
    key: ServerTxKey,
    invite: bool,
    from: Peer,
    /// Where responses go (RFC 3261 §18.2.2), computed when the request arrived.
    dest: Peer,
    state: ServerState,
    last_response: Option<Response>,
    /// Current interval of timer G.
    retransmit_interval: Duration,
    ack_key: Option<DialogAckKey>,
    acked: bool,
}

/// Identifies the ACK for a 2xx, which carries a new branch (RFC 3261 §17.1.1.3): Call-ID,
/// CSeq number and From tag of the INVITE.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct DialogAckKey {
    call_id: String,
    seq: u32,
    from_tag: String,
}

impl DialogAckKey {
    fn of(req: &Request) -> Option<DialogAckKey> {
        Some(DialogAckKey {
            call_id: req.call_id().ok()?.trim().to_owned(),
            seq: req.cseq().ok()?.seq,
            from_tag: req.header_from().ok()?.tag()?.to_owned(),
        })
    }
}

// ---------------------------------------------------------------------------------------
// Timer table
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Side {
    Client,
    Server,
}

/// RFC 3261 §17 timers, plus L and M of RFC 6026.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Timer {
    A,
    B,
    D,
    E,
    F,
    K,
    M,
    G,
    H,
    I,
    J,
    L,
}

const ALL_TIMERS: [Timer; 12] = [
    Timer::A,
    Timer::B,
    Timer::D,
    Timer::E,
    Timer::F,
    Timer::K,
    Timer::M,
    Timer::G,
    Timer::H,
    Timer::I,
    Timer::J,
    Timer::L,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Slot {
    side: Side,
    id: u64,
    timer: Timer,
}

impl Slot {
    fn client(id: u64, timer: Timer) -> Slot {
        Slot {
            side: Side::Client,
            id,
            timer,
        }
    }
    fn server(id: u64, timer: Timer) -> Slot {
        Slot {
            side: Side::Server,
            id,
            timer,
        }
    }
}

/// One ordered set of deadlines plus a reverse index for O(log n) re-arming.
#[derive(Debug, Default)]
struct TimerTable {
    by_deadline: BTreeSet<(Instant, Slot)>,
    by_slot: HashMap<Slot, Instant>,
}

impl TimerTable {
    fn arm(&mut self, slot: Slot, at: Instant) {
        if let Some(old) = self.by_slot.insert(slot, at) {
            self.by_deadline.remove(&(old, slot));
        }
        self.by_deadline.insert((at, slot));
    }

    fn disarm(&mut self, slot: Slot) {
        if let Some(old) = self.by_slot.remove(&slot) {
            self.by_deadline.remove(&(old, slot));
        }
    }

    fn disarm_all(&mut self, side: Side, id: u64) {
        for timer in ALL_TIMERS {
            self.disarm(Slot { side, id, timer });
        }
    }

    fn first(&self) -> Option<Instant> {
        self.by_deadline.first().map(|(at, _)| *at)
    }

    fn pop_due(&mut self, now: Instant) -> Option<(Instant, Slot)> {
        let (at, slot) = *self.by_deadline.first()?;
        if at > now {
            return None;
        }
        self.by_deadline.remove(&(at, slot));
        self.by_slot.remove(&slot);
        Some((at, slot))
    }
}

// ---------------------------------------------------------------------------------------
// Message helpers
// ---------------------------------------------------------------------------------------

/// The To tag of a response, if any.
fn to_tag(resp: &Response) -> Option<String> {
    resp.header_to().ok()?.tag().map(str::to_owned)
}

/// `host:port` of a Via, host lower-cased, port as written (absent stays absent).
fn sent_by(via: &Via) -> String {
    let host = host_text(&via.host);
    match via.port {
        Some(p) => format!("{host}:{p}"),
        None => host,
    }
}

fn host_text(host: &Host) -> String {
    match host {
        Host::Name(n) => n.to_ascii_lowercase(),
        Host::V4(a) => a.to_string(),
        Host::V6(a) => format!("[{a}]"),
        Host::Opaque(s) => s.clone(),
        #[allow(unreachable_patterns)]
        _ => String::new(),
    }
}

fn host_ip(host: &Host) -> Option<IpAddr> {
    match host {
        Host::V4(a) => Some(IpAddr::V4(*a)),
        Host::V6(a) => Some(IpAddr::V6(*a)),
        _ => None,
    }
}

/// Adds `received` when the source IP differs from the sent-by host (RFC 3261 §18.2.1)
/// and fills an empty `rport` (RFC 3581 §4). Rewrites the first Via line of `req` when
/// it changed; returns the (possibly updated) top Via.
fn stamp_top_via(req: &mut Request, top: &Via, from: Peer) -> Via {
    let mut via = top.clone();
    let ip = from.addr.ip();
    let rport_requested = matches!(via.param("rport"), Some(None) | Some(Some("")));
    let mut changed = false;
    if rport_requested {
        via.set_param("rport", Some(from.addr.port().to_string()));
        changed = true;
    }
    if rport_requested || host_ip(&via.host) != Some(ip) {
        via.set_param("received", Some(ip.to_string()));
        changed = true;
    }
    if !changed {
        return via;
    }
    let mut done = false;
    let mut headers = Headers::new();
    for h in req.headers.iter() {
        if !done && h.name == HeaderName::Via {
            done = true;
            let mut values = vec![via.to_string()];
            if let Ok(list) = Via::parse_list(&h.value) {
                values.extend(list.iter().skip(1).map(|v| v.to_string()));
            }
            headers.push(HeaderName::Via, values.join(", "));
        } else {
            headers.push(h.name.clone(), h.value.clone());
        }
    }
    req.headers = headers;
    via
}

/// Where responses to a request go (RFC 3261 §18.2.2, RFC 3581 §4): over a reliable
/// transport, the connection it came on; otherwise `received` (or the sent-by IP) with the
/// `rport` port, or the sent-by port, or 5060. Falls back to the source when the sent-by
/// is a name that would need DNS.
fn response_destination(via: &Via, from: Peer) -> Peer {
    if from.kind.is_reliable() {
        return from;
    }
    let ip = via
        .param("received")
        .flatten()
        .and_then(|r| r.trim_matches(['[', ']']).parse::<IpAddr>().ok())
        .or_else(|| host_ip(&via.host));
    let Some(ip) = ip else {
        return from;
    };
    let port = via
        .param("rport")
        .flatten()
        .and_then(|p| p.parse::<u16>().ok())
        .or(via.port)
        .unwrap_or(5060);
    Peer {
        kind: from.kind,
        addr: std::net::SocketAddr::new(ip, port),
    }
}

/// Copies the headers an ACK or CANCEL shares with its INVITE (RFC 3261 §9.1, §17.1.1.3):
/// the top Via only, From, Call-ID, Route; `to` and `cseq_method` given.
fn derived_request(invite: &Request, method: Method, to: Option<&str>) -> Request {
    let mut headers = Headers::new();
    let mut via_done = false;
    for h in invite.headers.iter() {
        match &h.name {
            HeaderName::Via if !via_done => {
                via_done = true;
                let top = invite
                    .top_via()
                    .map(|v| v.to_string())
                    .unwrap_or_else(|_| h.value.clone());
                headers.push(HeaderName::Via, top);
            }
            HeaderName::From | HeaderName::CallId | HeaderName::Route => {
                headers.push(h.name.clone(), h.value.clone())
            }
            HeaderName::To => {
                headers.push(HeaderName::To, to.unwrap_or(&h.value).to_owned());
            }
            HeaderName::CSeq => {
                let seq = invite.cseq().map(|c| c.seq).unwrap_or(0);
                headers.push(HeaderName::CSeq, format!("{seq} {method}"));
            }
            _ => {}
        }
    }
    headers.push(HeaderName::MaxForwards, "70");
    Request {
        method,
        uri: invite.uri.clone(),
        headers,
        body: Bytes::new(),
    }
}

/// The ACK for a non-2xx final response (RFC 3261 §17.1.1.3): same branch as the INVITE,
/// To from the response.
pub fn build_ack(invite: &Request, resp: &Response) -> Request {
    derived_request(invite, Method::Ack, resp.headers.get(&HeaderName::To))
}

/// The CANCEL for an INVITE (RFC 3261 §9.1): same Request-URI, Call-ID, To, From, CSeq
/// number and top Via (same branch) as the INVITE.
pub fn build_cancel(invite: &Request) -> Request {
    derived_request(invite, Method::Cancel, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::transport::TransportKind;
    use crate::sip::uri::Uri;

    fn udp(addr: &str) -> Peer {
        Peer {
            kind: TransportKind::Udp,
            addr: addr.parse().unwrap(),
        }
    }

    fn request(method: Method, via: &str) -> Request {
        let mut h = Headers::new();
        h.push(HeaderName::Via, via);
        h.push(HeaderName::From, "<sip:a@example.com>;tag=f1");
        h.push(HeaderName::To, "<sip:19@vigie.test>");
        h.push(HeaderName::CallId, "c1");
        h.push(HeaderName::CSeq, format!("7 {method}"));
        h.push(HeaderName::Route, "<sip:proxy.example.com;lr>");
        h.push(HeaderName::ContentType, "application/sdp");
        Request {
            method,
            uri: Uri::parse("sip:19@vigie.test").unwrap(),
            headers: h,
            body: Bytes::from_static(b"v=0\r\n"),
        }
    }

    fn events(l: &mut TransactionLayer) -> Vec<TxEvent> {
        std::iter::from_fn(|| l.poll_event()).collect()
    }

    fn transmits(l: &mut TransactionLayer) -> Vec<Transmit> {
        std::iter::from_fn(|| l.poll_transmit()).collect()
    }

    #[test]
    fn new_branch_has_the_cookie_and_is_random() {
        let a = new_branch();
        assert!(a.starts_with("z9hG4bK"));
        assert_eq!(a.len(), 7 + 24);
        assert_ne!(a, new_branch());
    }

    #[test]
    fn received_and_rport_are_stamped_and_used_for_responses() {
        let mut l = TransactionLayer::new(TimerConfig::default());
        let now = Instant::now();
        let from = udp("203.0.113.5:40000");
        let req = request(
            Method::Options,
            "SIP/2.0/UDP 192.168.1.20:5062;branch=z9hG4bKx1;rport, SIP/2.0/UDP p.example.com;branch=z9hG4bKp",
        );
        l.handle_incoming(now, from, Message::Request(req));
        let (key, got) = match events(&mut l).pop() {
            Some(TxEvent::Request {
                key,
                request,
                from: f,
            }) => {
                assert_eq!(f, from);
                (key, request)
            }
            other => panic!("{other:?}"),
        };
        assert_eq!(key.branch(), "z9hG4bKx1");
        assert_eq!(key.sent_by(), "192.168.1.20:5062");
        assert_eq!(key.method(), &Method::Options);
        let vias = got.vias().unwrap();
        assert_eq!(vias.len(), 2);
        assert_eq!(vias[0].param("rport"), Some(Some("40000")));
        assert_eq!(vias[0].param("received"), Some(Some("203.0.113.5")));
        assert_eq!(vias[1].branch(), Some("z9hG4bKp"));
        l.send_response(now, &key, got.response(200, "OK", Some("t")))
            .unwrap();
        let t = transmits(&mut l);
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].to, from);
    }

    #[test]
    fn response_destination_follows_rfc3261_18_2_2() {
        let src = udp("198.51.100.7:5099");
        let via = |s: &str| Via::parse_list(s).unwrap().remove(0);
        // Same IP, no rport: sent-by port.
        assert_eq!(
            response_destination(&via("SIP/2.0/UDP 198.51.100.7:5070;branch=z9hG4bKa"), src),
            udp("198.51.100.7:5070")
        );
        // No port at all: 5060.
        assert_eq!(
            response_destination(&via("SIP/2.0/UDP 198.51.100.7;branch=z9hG4bKa"), src),
            udp("198.51.100.7:5060")
        );
        // received without rport: received IP, sent-by port.
        assert_eq!(
            response_destination(
                &via("SIP/2.0/UDP host.example;received=198.51.100.9;branch=z9hG4bKa"),
                src
            ),
            udp("198.51.100.9:5060")
        );
        // received + rport.
        assert_eq!(
            response_destination(
                &via("SIP/2.0/UDP 10.0.0.1:5060;received=198.51.100.7;rport=5099;branch=z9hG4bKa"),
                src
            ),
            src
        );
        // A name we cannot resolve here: the source.
        assert_eq!(
            response_destination(&via("SIP/2.0/UDP host.example:5070;branch=z9hG4bKa"), src),
            src
        );
        // Reliable: the connection it came on.
        let tcp = Peer {
            kind: TransportKind::Tcp,
            addr: "198.51.100.7:40001".parse().unwrap(),
        };
        assert_eq!(
            response_destination(&via("SIP/2.0/TCP 198.51.100.7:5060;branch=z9hG4bKa"), tcp),
            tcp
        );
    }

    #[test]
    fn ack_and_cancel_copy_the_right_headers() {
        let invite = request(
            Method::Invite,
            "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKinv, SIP/2.0/UDP 10.9.9.9;branch=z9hG4bKo",
        );
        let mut resp = invite.response(486, "Busy Here", Some("totag"));
        resp.headers.push(HeaderName::Other("Warning".into()), "x");
        let ack = build_ack(&invite, &resp);
        assert_eq!(ack.method, Method::Ack);
        assert_eq!(ack.uri, invite.uri);
        let vias = ack.vias().unwrap();
        assert_eq!(vias.len(), 1);
        assert_eq!(vias[0].branch(), Some("z9hG4bKinv"));
        assert_eq!(ack.cseq().unwrap().seq, 7);
        assert_eq!(ack.cseq().unwrap().method, Method::Ack);
        assert_eq!(ack.header_to().unwrap().tag(), Some("totag"));
        assert_eq!(ack.header_from().unwrap().tag(), Some("f1"));
        assert_eq!(ack.call_id().unwrap(), "c1");
        assert_eq!(
            ack.headers.get(&HeaderName::Route),
            Some("<sip:proxy.example.com;lr>")
        );
        assert_eq!(ack.headers.get(&HeaderName::ContentType), None);
        assert!(ack.body.is_empty());

        let cancel = build_cancel(&invite);
        assert_eq!(cancel.method, Method::Cancel);
        assert_eq!(cancel.top_via().unwrap().branch(), Some("z9hG4bKinv"));
        assert_eq!(cancel.vias().unwrap().len(), 1);
        assert_eq!(cancel.cseq().unwrap().to_string(), "7 CANCEL");
        assert_eq!(cancel.header_to().unwrap().tag(), None);
        assert_eq!(cancel.headers.get(&HeaderName::MaxForwards), Some("70"));
    }

    #[test]
    fn retransmitted_invite_gets_the_last_provisional_again() {
        let mut l = TransactionLayer::new(TimerConfig::default());
        let now = Instant::now();
        let from = udp("10.0.0.1:5060");
        let inv = request(Method::Invite, "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKr");
        l.handle_incoming(now, from, Message::Request(inv.clone()));
        let key = match events(&mut l).pop() {
            Some(TxEvent::Request { key, .. }) => key,
            other => panic!("{other:?}"),
        };
        let t = transmits(&mut l);
        assert_eq!(t.len(), 1);
        assert!(matches!(&t[0].message, Message::Response(r) if r.status == 100));
        l.send_response(now, &key, inv.response(180, "Ringing", Some("x")))
            .unwrap();
        transmits(&mut l);
        l.handle_incoming(now, from, Message::Request(inv.clone()));
        let t = transmits(&mut l);
        assert!(
            matches!(&t[..], [Transmit { message: Message::Response(r), .. }] if r.status == 180)
        );
        assert!(events(&mut l).is_empty());
        assert_eq!(l.stats().retransmissions, 1);
        // A final response ends the TU's say; a second one is refused.
        l.send_response(now, &key, inv.response(486, "Busy Here", Some("x")))
            .unwrap();
        assert_eq!(
            l.send_response(now, &key, inv.response(200, "OK", Some("x"))),
            Err(TxError::AlreadyFinal)
        );
        assert_eq!(
            l.send_response(now, &key, inv.response(99, "?", None)),
            Err(TxError::BadStatus(99))
        );
    }

    #[test]
    fn cancel_without_invite_gets_481_and_its_retransmission_the_same() {
        let mut l = TransactionLayer::new(TimerConfig::default());
        let now = Instant::now();
        let from = udp("10.0.0.1:5060");
        let cancel = request(
            Method::Cancel,
            "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKnone",
        );
        l.handle_incoming(now, from, Message::Request(cancel.clone()));
        l.handle_incoming(now, from, Message::Request(cancel));
        let t = transmits(&mut l);
        let codes: Vec<u16> = t
            .iter()
            .filter_map(|t| match &t.message {
                Message::Response(r) => Some(r.status),
                Message::Request(_) => None,
            })
            .collect();
        assert_eq!(codes, vec![481, 481]);
        assert!(events(&mut l).is_empty());
    }

    #[test]
    fn rfc2543_and_malformed_requests_do_not_crash() {
        let mut l = TransactionLayer::new(TimerConfig::default());
        let now = Instant::now();
        let from = udp("10.0.0.1:5060");
        // No magic cookie: a synthetic key, retransmission still matched.
        let old = request(Method::Options, "SIP/2.0/UDP 10.0.0.1:5060;branch=1234");
        l.handle_incoming(now, from, Message::Request(old.clone()));
        l.handle_incoming(now, from, Message::Request(old));
        assert_eq!(events(&mut l).len(), 1);
        // No branch at all.
        let mut none = request(Method::Options, "SIP/2.0/UDP 10.0.0.1:5060");
        none.headers.set(HeaderName::CSeq, "8 OPTIONS");
        l.handle_incoming(now, from, Message::Request(none));
        assert_eq!(events(&mut l).len(), 1);
        // No Via, bad CSeq, CSeq method mismatch: dropped and counted.
        let mut no_via = request(Method::Options, "x");
        no_via.headers.remove(&HeaderName::Via);
        l.handle_incoming(now, from, Message::Request(no_via));
        let mut bad_cseq = request(Method::Options, "SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKc");
        bad_cseq.headers.set(HeaderName::CSeq, "x OPTIONS");
        l.handle_incoming(now, from, Message::Request(bad_cseq));
        let mut mismatch = request(Method::Options, "SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKm");
        mismatch.headers.set(HeaderName::CSeq, "1 INVITE");
        l.handle_incoming(now, from, Message::Request(mismatch));
        let mut resp = request(Method::Options, "x").response(200, "OK", None);
        resp.headers.remove(&HeaderName::Via);
        l.handle_incoming(now, from, Message::Response(resp));
        assert_eq!(l.stats().malformed, 4);
        assert!(events(&mut l).is_empty());
    }

    #[test]
    fn send_request_refuses_ack_and_missing_branch() {
        let mut l = TransactionLayer::new(TimerConfig::default());
        let now = Instant::now();
        let to = udp("10.0.0.2:5060");
        let ack = request(Method::Ack, "SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKa");
        assert_eq!(l.send_request(now, to, ack), Err(TxError::AckIsStateless));
        let nb = request(Method::Bye, "SIP/2.0/UDP 10.0.0.1");
        assert_eq!(l.send_request(now, to, nb), Err(TxError::MissingBranch));
        assert!(transmits(&mut l).is_empty());
        assert_eq!(l.poll_timeout(), None);
    }

    #[test]
    fn stray_and_forked_2xx() {
        let mut l = TransactionLayer::new(TimerConfig::default());
        let now = Instant::now();
        let to = udp("10.0.0.2:5060");
        let inv = request(Method::Invite, "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKf");
        let key = l.send_request(now, to, inv.clone()).unwrap();
        let ok_a = inv.response(200, "OK", Some("a"));
        let ok_b = inv.response(200, "OK", Some("b"));
        l.handle_incoming(now, to, Message::Response(ok_a.clone()));
        l.handle_incoming(now, to, Message::Response(ok_a.clone()));
        l.handle_incoming(now, to, Message::Response(ok_b));
        let ev = events(&mut l);
        assert!(
            matches!(&ev[0], TxEvent::Response { key: k, response } if *k == key && response.status == 200)
        );
        assert!(matches!(&ev[1], TxEvent::Stray2xx { from, .. } if *from == to));
        assert!(
            matches!(&ev[2], TxEvent::Response { response, .. } if response.header_to().unwrap().tag() == Some("b"))
        );
        // Timer M (64*T1) ends the Accepted state; a later 2xx is a stray.
        assert_eq!(l.poll_timeout(), Some(now + Duration::from_secs(32)));
        l.handle_timeout(now + Duration::from_secs(32));
        assert_eq!(l.stats().client_transactions, 0);
        l.handle_incoming(now, to, Message::Response(ok_a));
        assert!(matches!(&events(&mut l)[..], [TxEvent::Stray2xx { .. }]));
        // Nothing answers a stray 2xx from the layer itself: the TU ACKs it.
        assert!(
            transmits(&mut l)
                .iter()
                .all(|t| matches!(&t.message, Message::Request(r) if r.method == Method::Invite))
        );
    }

    #[test]
    fn cancel_is_refused_for_non_invite_and_after_a_final() {
        let mut l = TransactionLayer::new(TimerConfig::default());
        let now = Instant::now();
        let to = udp("10.0.0.2:5060");
        let opt = request(Method::Options, "SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKo");
        let k = l.send_request(now, to, opt).unwrap();
        assert_eq!(l.cancel(now, &k), Err(TxError::NotCancellable));
        let inv = request(Method::Invite, "SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKi");
        let k = l.send_request(now, to, inv.clone()).unwrap();
        l.handle_incoming(
            now,
            to,
            Message::Response(inv.response(603, "Decline", Some("d"))),
        );
        assert_eq!(l.cancel(now, &k), Err(TxError::NotCancellable));
    }

    #[test]
    fn cancel_held_before_a_provisional_carries_its_reason() {
        let mut l = TransactionLayer::new(TimerConfig::default());
        let now = Instant::now();
        let to = udp("10.0.0.2:5060");
        let inv = request(Method::Invite, "SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKr");
        let k = l.send_request(now, to, inv.clone()).unwrap();
        let reason = "SIP;cause=200;text=\"Call completed elsewhere\"";
        l.cancel_with_reason(now, &k, Some(reason)).unwrap();
        // Held until a provisional response (RFC 3261 §9.1): only the INVITE went out.
        assert_eq!(transmits(&mut l).len(), 1);
        l.handle_incoming(
            now,
            to,
            Message::Response(inv.response(180, "Ringing", Some("r"))),
        );
        let sent = transmits(&mut l);
        let cancel = sent
            .iter()
            .find_map(|t| match &t.message {
                Message::Request(r) if r.method == Method::Cancel => Some(r),
                _ => None,
            })
            .unwrap();
        assert_eq!(cancel.headers.get(&HeaderName::Reason), Some(reason));
        // A plain cancel() adds no Reason.
        let inv2 = request(Method::Invite, "SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKs");
        let k2 = l.send_request(now, to, inv2.clone()).unwrap();
        l.handle_incoming(
            now,
            to,
            Message::Response(inv2.response(180, "Ringing", Some("r"))),
        );
        l.cancel(now, &k2).unwrap();
        let cancels: Vec<_> = transmits(&mut l)
            .into_iter()
            .filter_map(|t| match t.message {
                Message::Request(r) if r.method == Method::Cancel => Some(r),
                _ => None,
            })
            .collect();
        assert_eq!(cancels.len(), 1);
        assert_eq!(cancels[0].headers.get(&HeaderName::Reason), None);
    }

    #[test]
    fn no_final_after_cancel_times_out_the_invite() {
        let mut l = TransactionLayer::new(TimerConfig::default());
        let t0 = Instant::now();
        let to = udp("10.0.0.2:5060");
        let inv = request(Method::Invite, "SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKq");
        let k = l.send_request(t0, to, inv.clone()).unwrap();
        l.handle_incoming(
            t0,
            to,
            Message::Response(inv.response(180, "Ringing", Some("r"))),
        );
        // In Proceeding the INVITE has no timer of its own.
        assert_eq!(l.poll_timeout(), None);
        let t1 = t0 + Duration::from_secs(10);
        l.cancel(t1, &k).unwrap();
        let ck = ClientTxKey {
            branch: "z9hG4bKq".into(),
            method: Method::Cancel,
        };
        let cancel = inv.clone();
        let mut c200 = cancel.response(200, "OK", Some("r"));
        c200.headers.set(HeaderName::CSeq, "7 CANCEL");
        l.handle_incoming(t1, to, Message::Response(c200));
        l.handle_timeout(t1 + Duration::from_secs(32));
        let ev = events(&mut l);
        assert!(matches!(&ev[..], [
            TxEvent::Response { .. },
            TxEvent::Response { key: a, .. },
            TxEvent::Timeout { key: b },
        ] if *a == ck && *b == k));
    }

    #[test]
    fn unanswered_non_invite_is_dropped_after_64_t1() {
        let mut l = TransactionLayer::new(TimerConfig::default());
        let t0 = Instant::now();
        let from = udp("10.0.0.1:5060");
        let opt = request(Method::Options, "SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKu");
        l.handle_incoming(t0, from, Message::Request(opt));
        assert_eq!(l.poll_timeout(), Some(t0 + Duration::from_secs(32)));
        l.handle_timeout(t0 + Duration::from_secs(32));
        assert_eq!(l.stats().server_transactions, 0);
        assert_eq!(l.stats().unanswered, 1);
    }

    #[test]
    fn transport_error_ends_a_pending_client_transaction() {
        let mut l = TransactionLayer::new(TimerConfig::default());
        let t0 = Instant::now();
        let to = udp("10.0.0.2:5060");
        let inv = request(Method::Invite, "SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKt");
        let k = l.send_request(t0, to, inv).unwrap();
        l.handle_transport_error(&k);
        assert_eq!(
            events(&mut l),
            vec![TxEvent::TransportError { key: k.clone() }]
        );
        assert_eq!(l.stats().client_transactions, 0);
        assert_eq!(l.poll_timeout(), None);
        l.handle_transport_error(&k);
        assert!(events(&mut l).is_empty());
    }

    #[test]
    fn timer_table_orders_and_rearms() {
        let mut t = TimerTable::default();
        let now = Instant::now();
        t.arm(Slot::client(1, Timer::A), now + Duration::from_millis(500));
        t.arm(Slot::client(2, Timer::B), now + Duration::from_millis(100));
        t.arm(Slot::client(1, Timer::A), now + Duration::from_millis(50));
        assert_eq!(t.first(), Some(now + Duration::from_millis(50)));
        assert_eq!(t.by_deadline.len(), 2);
        assert_eq!(t.pop_due(now), None);
        assert_eq!(
            t.pop_due(now + Duration::from_secs(1)),
            Some((now + Duration::from_millis(50), Slot::client(1, Timer::A)))
        );
        t.disarm_all(Side::Client, 2);
        assert_eq!(t.first(), None);
        assert!(t.by_slot.is_empty());
    }
}
