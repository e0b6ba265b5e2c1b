//! The B2BUA: calls, legs and dialogs; wires the transaction layer, the registrar, the ACD
//! and media anchoring. A sans-IO core (DESIGN §2): inputs carry the time, outputs are
//! polled, and [`Switch::poll_timeout`] says when to wake it.
//!
//! A trunk call (leg A, vigie as UAS) is routed by the dialplan ([`crate::dialplan`]):
//! the switch evaluates the plan once, when the INVITE arrives, at the wall-clock time the
//! edge gave ([`Switch::set_wall_clock`]), and then runs the decision's steps in order
//! (see [`Switch`] for each step). A queue step puts the call in the ACD, which offers it to
//! seats with vigie's own INVITEs (leg B, vigie as UAC). The seat's 200 becomes vigie's 200
//! to the caller (unless an `answer` step already sent one), with SDP rewritten to vigie's
//! media relay on both legs.
//!
//! Leg B is forked: an offer to a seat sends one INVITE to each of the seat's registered
//! Contacts (desk phone and headset app, RFC 3261 §10.2.1.2), and a ring-all queue makes
//! the ACD offer the call to several seats at once, so a call may have many forks, each its
//! own client transaction and dialog (own Call-ID). The first 2xx wins and is bridged; the
//! other forks get CANCEL with `Reason: SIP;cause=200;text="Call completed elsewhere"`
//! (RFC 3326); a 2xx that loses (crossed the CANCEL, or came second) gets ACK then BYE, so
//! a call is never bridged to two phones. A seat rings on the first 180/183 of any of its
//! forks and its offer fails only when all of them have ended, with the best outcome
//! (declined beats no answer beats unreachable). Early media of forks (183 SDP) is not
//! relayed: the relay's leg B is pointed only at the fork that answered.

pub mod announce;
mod call_timers;
mod callback_calls;
pub mod dialog;
pub mod event;
pub mod features;
pub mod originate;
mod priority;
pub mod qualify;

pub use priority::PriorityError;

use std::collections::{HashMap, VecDeque};

use call_timers::{CallTimer, CallTimers};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use ulid::Ulid;

use crate::acd::{
    Acd, CallId, CallSpec, Decision, OfferFailure, OverflowReason, QueueSpec, SeatId,
};
use crate::config::{Cidr, Config};
use crate::dialplan::{self, CallFacts, CompiledPlan, OverflowThen, Step};
use crate::location;
use crate::sdp;
use crate::sip::message::{HeaderName, Message, Method, Request, Response, SipHeaders};
use crate::sip::registrar::{Registrar, SeatChange};
use crate::sip::transaction::{
    ClientTxKey, ServerTxKey, TimerConfig, TransactionLayer, Transmit, TxEvent,
};
use crate::sip::transport::{Peer, TransportKind};
use crate::sip::uri::{Host, Scheme, Uri};

use dialog::{Dialog, LocalAddr, new_tag, without_params};
use event::{AbandonPhase, CallEvent, CallEventKind, EndCause};

/// The methods vigie answers (the `Allow` header, RFC 3261 §20.5).
pub const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, UPDATE, INFO";

/// vigie's offer to the seat when the caller's INVITE carried no SDP: G.711 A-law and
/// µ-law and DTMF events (RFC 4733); the address is a placeholder that anchoring replaces.
const LATE_OFFER_SDP: &[u8] =
    b"v=0\r\no=- 0 0 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
m=audio 9 RTP/AVP 8 0 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=sendrecv\r\n";

/// Which side of the relay a media command is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The caller (trunk) leg.
    A,
    /// The seat or overflow leg.
    B,
}

/// Relay ports of one call: RTP on these even ports, RTCP on the odd port above.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaPorts {
    /// Relay port (even; RTCP on port + 1) facing the caller leg A: vigie's SDP answer to the
    /// trunk carries it (RFC 3264 §6, RFC 3550 §11).
    pub a: u16,
    /// Relay port (even; RTCP on port + 1) facing leg B, the seat or the overflow target:
    /// vigie's SDP offer to it carries it.
    pub b: u16,
}

/// What the switch asks the media relay to do.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MediaCommand {
    /// Reserve relay ports for a call; answer with [`Switch::handle_media_ready`].
    Allocate {
        /// The call needing a pair of relay ports (one per leg).
        call: CallId,
    },
    /// Until it latches, send RTP for `side` to this address (from that leg's SDP).
    PeerHint {
        /// The call concerned.
        call: CallId,
        /// The leg whose remote media address this is.
        side: Side,
        /// The RTP address (IP and port) from that leg's SDP `c=`/`m=` lines (RFC 4566 §5.7, §5.14).
        addr: SocketAddr,
    },
    /// The call is over: free its ports.
    Release {
        /// The call whose relay ports are freed.
        call: CallId,
    },
    /// Play a WAV prompt to one side (a dialplan `play` step or a queue announcement).
    /// For a `play` step the switch waits for [`Switch::handle_prompt_done`].
    Play {
        /// The call concerned.
        call: CallId,
        /// The leg that hears the prompt (the caller: [`Side::A`]).
        side: Side,
        /// Path of the WAV file, relative to the prompts directory.
        prompt: String,
        /// Loop the prompt until [`MediaCommand::StopPlay`].
        repeat: bool,
        /// The call's language: the prompt is read from `prompts_dir/LANGUAGE/PROMPT`,
        /// else `prompts_dir/PROMPT` (a `{ set = { language = "ar" } }` step, else
        /// `[media] default_language`).
        language: String,
    },
    /// Play several WAV prompts to one side back to back as ONE prompt (a queue
    /// announcement: `position.wav`, `digits/3.wav`, `expected-wait.wav`, …): the RTP
    /// sequence numbers and timestamps run on without a gap between the parts (RFC 3550
    /// §5.1), the marker bit is set on the first packet only (RFC 3551 §4.1), and one
    /// [`Switch::handle_prompt_done`] comes at the end. A part that cannot be read is left
    /// out.
    PlaySequence {
        /// The call concerned.
        call: CallId,
        /// The leg that hears the prompts (the caller: [`Side::A`]).
        side: Side,
        /// Paths of the WAV files, relative to the language's prompts directory, in the
        /// order they are heard.
        prompts: Vec<String>,
        /// The call's language, as for [`MediaCommand::Play`].
        language: String,
    },
    /// Stop any prompt playing to `side` (the call is bridged to a seat or released).
    StopPlay {
        /// The call concerned.
        call: CallId,
        /// The leg whose prompt stops.
        side: Side,
    },
    /// The G.711 codec a leg agreed to (the first PCMU/PCMA payload type of its SDP, RFC
    /// 3264 §6.1): prompts to that leg are encoded in it.
    Codec {
        /// The call concerned.
        call: CallId,
        /// The leg whose codec this is.
        side: Side,
        /// RTP payload type (0 = PCMU, 8 = PCMA, or a dynamic type mapped to one of them).
        payload_type: u8,
        /// `true` for G.711 A-law (PCMA), `false` for µ-law (PCMU).
        alaw: bool,
    },
    /// Start (`on`) or stop recording the call (a dialplan `record` step).
    Record {
        /// The call concerned.
        call: CallId,
        /// `true` to start, `false` to stop.
        on: bool,
    },
}

/// How long a `play` step waits for [`Switch::handle_prompt_done`] before the call moves
/// on anyway (a media layer that never reports must not hold a caller), in seconds.
pub const PROMPT_GUARD_S: u64 = 120;

/// After a failed overflow (every target failed, or steps that ran out while the call
/// still holds its queue place), how long before a queue step with `max_wait_s = 0` lets
/// the call leave its queue again, in seconds; a step with a max wait waits that long.
pub const OVERFLOW_RETRY_S: u64 = 30;

/// How long the ACD lets an overflow target ring when the switch does not say: the switch
/// keeps each target's own timeout (the plan's `timeout_s`) and ignores the ACD's.
const ACD_OVERFLOW_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// What the switch asks of the IO edge.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Output {
    /// Send a SIP message.
    Transmit(Transmit),
    /// A step of a call, for the journal and the metrics.
    Event(CallEvent),
    /// A seat came online or went offline (registrar).
    Seat {
        /// The seat id (its SIP user).
        seat: SeatId,
        /// `true` when the seat gained its first binding, `false` when its last one went away.
        online: bool,
    },
    /// A command for the media relay.
    Media(MediaCommand),
    /// A seat's status or state changed (journal `agent_events`, live view, metrics).
    Agent(crate::acd::SeatEvent),
    /// What becomes of a callback task offered to a seat (`[callbacks] offer_to_seats`,
    /// [`Switch::callback_open`]): close it, or count a failed attempt
    /// ([`crate::acd::callback::CallbackBook::attempt_failed`]).
    Callback {
        /// The task.
        task: crate::acd::callback::CallbackId,
        /// Close (`reached`, `unreachable`) or a failed attempt.
        result: originate::TaskResult,
    },
}

/// Counters the edge exports as metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SwitchStats {
    /// Responses sent by class (index 1–6).
    pub responses_by_class: [u64; 7],
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Seat(SeatId),
    Overflow(String),
}

/// The `Reason` vigie puts in the CANCEL of a fork when another fork of the call
/// answered (RFC 3326 §2; RFC 3261 §16.7 point 10): phones then do not log a missed call.
pub const REASON_COMPLETED_ELSEWHERE: &str = "SIP;cause=200;text=\"Call completed elsewhere\"";

/// Why vigie CANCELled a fork.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CancelWhy {
    /// The caller gave up (CANCEL/BYE) or a `hangup` step ended the call.
    Caller,
    /// The ring (or overflow) timeout passed.
    Timeout,
    /// Another fork answered, or the ACD withdrew this seat's offer (ring-all).
    Elsewhere,
}

/// How a seat's forks ended, for the offer failure reported to the ACD when the last one
/// ends: the best outcome wins, `Withdrawn` (another fork answered, or the caller left) >
/// `Declined` (486, 603, other finals) > `NoAnswer` (487) > `Unreachable` (408, timeout).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ForkOutcome {
    why: OfferFailure,
    /// The fork's final status (`None`: no final response).
    status: Option<u16>,
    /// Journal label of the `seat_failed` event.
    reason: &'static str,
}

impl ForkOutcome {
    fn of(cancel: Option<CancelWhy>, status: Option<u16>) -> ForkOutcome {
        let (why, reason) = match (cancel, status) {
            (Some(CancelWhy::Elsewhere), _) => (OfferFailure::Withdrawn, "withdrawn"),
            // The caller left while the seat rang: not the seat's fault (app_queue logs
            // ABANDON, not RINGNOANSWER), so no no-answer streak or ring-no-answer count.
            (Some(CancelWhy::Caller), _) => (OfferFailure::Withdrawn, "caller_left"),
            (_, Some(487)) => (OfferFailure::NoAnswer, "no_answer"),
            (_, Some(408) | None) => (OfferFailure::Unreachable, "unreachable"),
            (_, Some(486)) => (OfferFailure::Declined, "busy"),
            (_, Some(603)) => (OfferFailure::Declined, "declined"),
            (_, Some(_)) => (OfferFailure::Declined, "failed"),
        };
        ForkOutcome {
            why,
            status,
            reason,
        }
    }

    fn rank(&self) -> u8 {
        match self.why {
            OfferFailure::Withdrawn => 3,
            OfferFailure::Declined => 2,
            OfferFailure::NoAnswer => 1,
            _ => 0,
        }
    }
}

/// One leg-B INVITE: a fork of the call to one Contact of a seat, or to an overflow
/// target. Keyed by (target, Contact) within its call; its own client transaction and
/// dialog (own Call-ID).
#[derive(Debug)]
struct OutLeg {
    target: Target,
    /// The Contact (binding, RFC 3261 §10) this fork was sent to, as text; the overflow
    /// URI for an overflow target.
    contact: String,
    tx: ClientTxKey,
    dialog: Dialog,
    invite_cseq: u32,
    answered: bool,
    ringing: bool,
    /// Set once vigie decided to withdraw the offer (CANCEL sent).
    cancelling: bool,
    /// Why vigie CANCELled it.
    cancel_why: Option<CancelWhy>,
    /// Given up at the ring (or overflow) timeout before any provisional response: the
    /// ACD already counts the offer as failed, so the leg's late final response must not
    /// be reported again (the call may be ringing that seat anew by then).
    detached: bool,
    /// SDP vigie sent on this leg.
    local_sdp: Bytes,
}

/// What waits for the final response (or timeout) of a BYE vigie sent on leg B: the seat
/// takes no new offer before its phone has left the previous call.
#[derive(Debug)]
enum Closing {
    /// The call ended: then the seat goes to wrap-up ([`Acd::call_ended`]).
    Ended(CallId),
    /// A fork whose 2xx lost (crossed our CANCEL, came after another fork won, or its
    /// seat was on another call) was ACKed and hung up: then the fork has ended
    /// ([`Switch::leg_ended`]).
    Fork(CallId, Box<OutLeg>),
}

/// What a call's plan is waiting for before its next step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// Nothing: the next step may run.
    Running,
    /// The relay ports (a 183 with SDP, an answer, a prompt or an overflow needs them).
    Media,
    /// The end of a `play` step's prompt ([`Switch::handle_prompt_done`]).
    Prompt,
    /// An ACD queue: a seat, or the queue's max wait ([`Decision::Overflow`]).
    Queue,
    /// The current overflow target's answer or failure.
    Overflow,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Queued,
    Ringing,
    Overflowing,
    Connected,
}

#[derive(Debug)]
struct Call {
    queue: String,
    /// The trunk's INVITE, to build responses from.
    invite: Request,
    invite_tx: ServerTxKey,
    a: Dialog,
    /// The caller's SDP offer (the SDP part of the INVITE body), or vigie's template
    /// when the INVITE had none.
    offer: Bytes,
    /// The INVITE had no SDP: the caller answers in its ACK.
    late_offer: bool,
    /// SDP vigie answered the caller with, once answered.
    a_sdp: Option<Bytes>,
    caller_user: String,
    caller_display: Option<String>,
    /// vigie's `o=` state towards the caller and towards leg B (RFC 3264 §8).
    origin_a: sdp::LocalOrigin,
    origin_b: sdp::LocalOrigin,
    /// Leg-B forks: the INVITEs ringing seats' Contacts (several per seat, several seats
    /// in ring-all) or an overflow target; once answered, the bridged leg (`answered`)
    /// and forks still being CANCELled.
    legs: Vec<OutLeg>,
    media: Option<MediaPorts>,
    /// Offers decided while the relay ports were not ready yet.
    pending: Vec<Decision>,
    phase: Phase,
    /// The relay answered [`MediaCommand::Allocate`] (with or without ports).
    media_known: bool,
    /// The plan's steps for this call, fixed when it arrived (a reload does not change
    /// them).
    steps: Arc<[Step]>,
    /// Index of the next step to run (while an overflow step runs: that step).
    pc: usize,
    /// End (exclusive) of the segment of `steps` that `pc` runs in: the route's steps, or
    /// an `on_overflow` branch's ([`dialplan::segment_end`]).
    seg_end: usize,
    wait: Wait,
    /// Index of the last queue step run (`back-to-queue` returns to it).
    queue_step: Option<usize>,
    /// The call is held by the ACD (waiting, offered, or overflowing from a queue).
    in_acd: bool,
    /// Next target of the current overflow step.
    next_target: usize,
    /// Why the call left its queue (for the Overflowed event).
    overflow_reason: OverflowReason,
    /// A 200 OK went to the caller before any seat (an `answer` step).
    answered_early: bool,
    /// A 183 with vigie's SDP went to the caller (early media, RFC 3261 §13.2.1).
    early_media: bool,
    /// Announcements of the current queue step.
    announce: Option<announce::AnnounceSpec>,
    /// A queue announcement was sent to the relay and has not been reported done: a
    /// caller hanging up now abandons in phase `announcement`.
    announcing: bool,
    /// Language of the call's prompts (`language` call variable, else the configured
    /// default).
    language: String,
    /// When a seat answered (for the queue's handle-time statistics).
    answered_at: Option<Instant>,
    /// When the next announcement plays.
    next_announce: Option<Instant>,
    /// The current overflow target's timeout, or a `play` step's guard.
    deadline: Option<Instant>,
}

/// The B2BUA core.
///
/// Each new trunk call is routed by the running [`CompiledPlan`] (evaluated once, at the
/// wall-clock time of [`Switch::set_wall_clock`]) and its steps run in order
/// (`dialplans/README.md`, "In the switch"): `ring` sends 180, or 183 with vigie's SDP
/// (early media); `answer` sends 200 OK before any seat (the seat is then bridged without a
/// second 200); `play` emits [`MediaCommand::Play`] and waits for
/// [`Switch::handle_prompt_done`] (at most [`PROMPT_GUARD_S`]); `queue` enters the ACD at
/// the step's priority and announces every `announce_every_s`, and after `max_wait_s` (or
/// with no seat online) runs the next step keeping the call's place; `overflow` tries each
/// target with its own timeout, then falls through or goes back to the queue; `record`
/// emits [`MediaCommand::Record`]; `hangup` sends the final status (non-emergency routes
/// only). A reload ([`Switch::set_plan`]) never changes a call in progress.
pub struct Switch {
    txn: TransactionLayer,
    registrar: Registrar,
    acd: Acd,
    local: LocalAddr,
    media_ip: IpAddr,
    user_agent: String,
    trunk_sources: Vec<Cidr>,
    /// The running dialplan; each call copies its decision, so a reload never changes a
    /// call in progress.
    plan: Arc<CompiledPlan>,
    /// Wall-clock time at a monotonic instant, for time windows of the plan.
    wall: Option<(Instant, DateTime<Utc>)>,
    calls: HashMap<CallId, Call>,
    by_invite_tx: HashMap<ServerTxKey, CallId>,
    by_sip_call_id: HashMap<String, (CallId, Side)>,
    /// Leg-B INVITEs withdrawn with CANCEL after their call ended, by SIP Call-ID, kept
    /// until their final response: a 2xx that crossed the CANCEL (RFC 3261 §9.1) is
    /// ACKed and hung up with BYE, so the seat is not left in a call nobody hears.
    withdrawn: HashMap<String, (CallId, OutLeg)>,
    /// BYEs sent on leg B, by client transaction, until their final response.
    closing: HashMap<ClientTxKey, Closing>,
    /// The best outcome so far of a seat's ended forks, until its last fork ends.
    fork_outcomes: HashMap<(CallId, SeatId), ForkOutcome>,
    outputs: VecDeque<Output>,
    stats: SwitchStats,
    features: features::FeatureCodes,
    /// `[media] default_language`.
    default_language: String,
    /// Per queue: recent handle times, for the expected wait announced to callers.
    estimators: HashMap<String, crate::acd::ewt::WaitEstimator>,
    /// OPTIONS keep-alive of registered contacts ([`qualify`]).
    qualify: qualify::Qualifier,
    /// Every call's `deadline` and `next_announce` by instant (set only through
    /// [`CallTimers::set`]).
    timers: CallTimers,
    /// Callback tasks offered to seats ([`callback_calls`]).
    callbacks: callback_calls::CallbackCalls,
}

impl Switch {
    /// Builds the switch from a validated configuration and a compiled dialplan (checked
    /// against the configuration's queues). `local` is what vigie writes in Via and
    /// Contact (the listeners' real ports, known once bound).
    pub fn new(
        config: &Config,
        local: LocalAddr,
        registrar: Registrar,
        plan: Arc<CompiledPlan>,
    ) -> Switch {
        let queues: Vec<QueueSpec> = config
            .queues
            .iter()
            .map(|q| QueueSpec {
                name: q.name.clone(),
                ring_timeout: Duration::from_secs(q.ring_timeout_s),
                wrap_up: Duration::from_secs(q.wrap_up_s),
                // Waiting rules come per call from the plan's queue step.
                max_wait: None,
                has_overflow: false,
                overflow_timeout: ACD_OVERFLOW_TIMEOUT,
                overflow_retry: Duration::ZERO,
                retry: Duration::from_secs(q.retry_s),
                seats: q.seats.clone(),
                strategy: q.strategy,
                tier_wait: Duration::from_secs(q.tier_wait_s),
                weight: q.weight,
                max_len: usize::try_from(q.max_len).unwrap_or(usize::MAX),
            })
            .collect();
        Switch {
            txn: TransactionLayer::new(TimerConfig {
                t1: Duration::from_millis(config.sip.t1_ms),
                t2: Duration::from_millis(config.sip.t2_ms),
                t4: Duration::from_millis(config.sip.t4_ms),
                d: Duration::from_secs(32),
            }),
            registrar,
            acd: config.seats.iter().fold(
                Acd::new(queues, config.seats.iter().map(|s| s.id.clone()))
                    .with_policy(crate::acd::SeatPolicy {
                        login_on_register: config.registrar.login_on_register,
                        no_answer_limit: config.features.no_answer_limit,
                    })
                    // The random strategy's seed.
                    .with_seed(rand::random()),
                |acd, s| {
                    let acd = s
                        .queues
                        .iter()
                        .fold(acd, |acd, k| acd.with_skill(&s.id, &k.name, k.penalty));
                    match s.wrap_up_s {
                        Some(w) => acd.with_seat_wrap_up(&s.id, Duration::from_secs(w)),
                        None => acd,
                    }
                },
            ),
            local,
            media_ip: config.advertised_media_ip(),
            user_agent: config.sip.user_agent.clone(),
            trunk_sources: config.trunk_sources(),
            plan,
            wall: None,
            calls: HashMap::new(),
            by_invite_tx: HashMap::new(),
            by_sip_call_id: HashMap::new(),
            withdrawn: HashMap::new(),
            closing: HashMap::new(),
            fork_outcomes: HashMap::new(),
            outputs: VecDeque::new(),
            stats: SwitchStats::default(),
            features: features::FeatureCodes::new(&config.features),
            default_language: config.media.default_language.clone(),
            estimators: HashMap::new(),
            qualify: qualify::Qualifier::new(config.registrar.qualify_s),
            timers: CallTimers::default(),
            callbacks: callback_calls::CallbackCalls::new(callback_calls::Settings::from_config(
                &config.callbacks,
            )),
        }
    }

    /// Replaces the running dialplan (live reload). Calls in progress keep the steps they
    /// were routed with; new calls use `plan`.
    pub fn set_plan(&mut self, plan: Arc<CompiledPlan>) {
        self.plan = plan;
    }

    /// The running dialplan.
    pub fn plan(&self) -> &Arc<CompiledPlan> {
        &self.plan
    }

    /// Tells the switch the wall-clock time `wall` (UTC) at the monotonic instant `now`;
    /// later instants map to `wall + (instant - now)`. The plan's time windows are
    /// evaluated in it (the core never reads a clock). Until it is first called the
    /// switch takes `now` for 1970-01-01T00:00:00Z.
    pub fn set_wall_clock(&mut self, now: Instant, wall: DateTime<Utc>) {
        self.wall = Some((now, wall));
    }

    fn wall_at(&self, now: Instant) -> DateTime<Utc> {
        match self.wall {
            Some((at, wall)) => {
                let ahead = chrono::Duration::from_std(now.saturating_duration_since(at))
                    .unwrap_or_default();
                let behind = chrono::Duration::from_std(at.saturating_duration_since(now))
                    .unwrap_or_default();
                wall + ahead - behind
            }
            None => DateTime::UNIX_EPOCH,
        }
    }

    /// The media layer finished playing a prompt to `call` (or could not play it): a
    /// `play` step moves on to the next step. Other prompts (announcements) are ignored.
    pub fn handle_prompt_done(&mut self, now: Instant, call: CallId) {
        if let Some(c) = self.calls.get_mut(&call) {
            c.announcing = false;
        }
        if let Some(c) = self.calls.get_mut(&call)
            && c.wait == Wait::Prompt
        {
            c.wait = Wait::Running;
            self.timers
                .set(call, CallTimer::Deadline, &mut c.deadline, None);
            self.advance(now, call);
        }
        self.pump(now);
    }

    /// The registrar, for its lock-out figures (metrics).
    pub fn registrar(&self) -> &Registrar {
        &self.registrar
    }

    /// The OPTIONS keep-alive state, for its probe counters (metrics).
    pub fn qualifier(&self) -> &qualify::Qualifier {
        &self.qualify
    }

    /// The ACD, for snapshots (metrics, API).
    pub fn acd(&self) -> &Acd {
        &self.acd
    }

    /// A login, logout, pause or unpause of a seat (HTTP API or feature code); seat changes
    /// come out as [`Output::Agent`].
    ///
    /// # Errors
    /// [`crate::acd::CommandError`] when the seat is unknown or the command does not apply.
    pub fn agent_command(
        &mut self,
        now: Instant,
        seat: &str,
        cmd: crate::acd::Command,
        cause: crate::acd::Cause,
    ) -> Result<(), crate::acd::CommandError> {
        let r = self.acd.command(now, seat, cmd, cause);
        self.pump(now);
        r
    }

    /// True while the call is in progress.
    pub fn has_call(&self, call: CallId) -> bool {
        self.calls.contains_key(&call) || self.callbacks.has_run(call)
    }

    /// Calls in progress.
    pub fn active_calls(&self) -> usize {
        self.calls.len()
    }

    /// Counters for metrics.
    pub fn stats(&self) -> &SwitchStats {
        &self.stats
    }

    /// Retransmissions the transaction layer has sent.
    pub fn retransmissions(&self) -> u64 {
        self.txn.stats().retransmissions
    }

    /// A parsed message from the network.
    ///
    /// A REGISTER from a source address locked out by the registrar is dropped here,
    /// before the transaction layer: it gets no answer and leaves no server transaction
    /// behind. (Dropped after the layer, it left one in Trying for 64·T1, and that
    /// transaction, matched by branch and Via sent-by only (RFC 3261 §17.2.3), swallowed
    /// as a "retransmission" a REGISTER with the same branch and Via from an address that
    /// is not locked.)
    pub fn handle_message(&mut self, now: Instant, from: Peer, msg: Message) {
        if let Message::Request(r) = &msg
            && r.method == Method::Register
            && self.registrar.is_locked(now, from.addr.ip())
        {
            return;
        }
        self.txn.handle_incoming(now, from, msg);
        self.pump(now);
    }

    /// Wakes the switch at (or after) the instant [`Switch::poll_timeout`] gave.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.txn.handle_timeout(now);
        for change in self.registrar.expire(now) {
            self.seat_change(now, change);
        }
        self.qualify_tick(now);
        self.acd.handle_timeout(now);
        self.pump(now);
        self.call_timers(now);
        self.callback_timers(now);
        self.pump(now);
    }

    /// Runs the switch's own per-call timers due at `now`: overflow target timeouts,
    /// prompt guards and queue announcements.
    fn call_timers(&mut self, now: Instant) {
        for call_timers::DueCall {
            call: id,
            deadline,
            announce,
        } in self.timers.due(now)
        {
            if deadline {
                let wait = self.calls.get_mut(&id).map(|c| {
                    self.timers
                        .set(id, CallTimer::Deadline, &mut c.deadline, None);
                    c.wait
                });
                match wait {
                    Some(Wait::Prompt) => {
                        tracing::warn!(call = %id, "prompt not reported done: moving on");
                        if let Some(c) = self.calls.get_mut(&id) {
                            c.wait = Wait::Running;
                        }
                        self.advance(now, id);
                    }
                    Some(Wait::Overflow) => self.overflow_timed_out(now, id),
                    _ => {}
                }
            }
            if announce {
                self.announce(now, id);
            }
        }
    }

    /// Plays the queue step's announcement to a waiting caller and schedules the next one:
    /// the step's prompt, then its position and expected wait when the step asks for them
    /// ([`announce::sequence`], in the call's language), as one
    /// [`MediaCommand::PlaySequence`]. Skipped (and rescheduled) while a seat or overflow
    /// target rings: an announcement never holds up a bridge.
    fn announce(&mut self, now: Instant, id: CallId) {
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(spec) = c.announce.clone() else {
            self.timers
                .set(id, CallTimer::Announce, &mut c.next_announce, None);
            return;
        };
        let next = spec.every.map(|e| now + e.max(Duration::from_secs(1)));
        self.timers
            .set(id, CallTimer::Announce, &mut c.next_announce, next);
        if c.wait != Wait::Queue || c.phase != Phase::Queued {
            return;
        }
        if !c.media_known {
            // Played as soon as the relay answers (handle_media_ready).
            self.timers
                .set(id, CallTimer::Announce, &mut c.next_announce, None);
            return;
        }
        let language = c.language.clone();
        let queue = c.queue.clone();
        let position = self.acd.position(id);
        let expected_wait = if spec.wait {
            let on_duty = self.acd.seats_on_duty(&queue);
            position.and_then(|p| {
                self.estimators
                    .get(&queue)
                    .and_then(|e| e.estimate(p, on_duty))
            })
        } else {
            None
        };
        let mut prompts = announce::sequence(&language, &spec, position, expected_wait);
        if prompts.is_empty() {
            return;
        }
        self.early_media(now, id);
        if let Some(c) = self.calls.get_mut(&id) {
            c.announcing = true;
        }
        let command = if prompts.len() == 1 {
            MediaCommand::Play {
                call: id,
                side: Side::A,
                prompt: prompts.remove(0),
                repeat: false,
                language,
            }
        } else {
            MediaCommand::PlaySequence {
                call: id,
                side: Side::A,
                prompts,
                language,
            }
        };
        self.outputs.push_back(Output::Media(command));
    }

    /// The relay answered an [`MediaCommand::Allocate`]: `None` when it had no ports
    /// (the call goes on; its media then cannot be anchored and flows nowhere).
    pub fn handle_media_ready(&mut self, now: Instant, call: CallId, ports: Option<MediaPorts>) {
        if self.callback_media_ready(now, call, ports) {
            return;
        }
        let (pending, resume) = match self.calls.get_mut(&call) {
            Some(c) => {
                c.media = ports;
                c.media_known = true;
                let resume = c.wait == Wait::Media;
                if resume {
                    c.wait = Wait::Running;
                }
                // The first announcement waited for the relay ports.
                if c.wait == Wait::Queue
                    && c.announce.as_ref().is_some_and(announce::AnnounceSpec::any)
                    && !c.early_media
                {
                    self.timers
                        .set(call, CallTimer::Announce, &mut c.next_announce, Some(now));
                }
                (std::mem::take(&mut c.pending), resume)
            }
            None => {
                if ports.is_some() {
                    self.outputs
                        .push_back(Output::Media(MediaCommand::Release { call }));
                }
                return;
            }
        };
        if resume {
            self.advance(now, call);
        }
        // An offer to a seat that was free when the call was queued goes out first: the
        // announcement is then skipped while the seat rings.
        for d in pending {
            self.decide(now, d);
        }
        if self
            .calls
            .get(&call)
            .is_some_and(|c| c.next_announce == Some(now))
        {
            self.announce(now, call);
        }
        self.pump(now);
    }

    /// The next instant the switch needs [`Switch::handle_timeout`].
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.txn.poll_timeout(),
            self.registrar.poll_timeout(),
            self.qualify.poll_timeout(),
            self.acd.poll_timeout(),
            self.callbacks.poll_timeout(),
            self.call_timers_first(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The earliest per-call timer: the index's first entry, O(log calls); in debug
    /// builds checked against a pass over every call.
    fn call_timers_first(&self) -> Option<Instant> {
        let first = self.timers.first();
        debug_assert_eq!(
            first,
            self.calls
                .values()
                .flat_map(|c| [c.deadline, c.next_announce])
                .flatten()
                .min(),
            "per-call timer index out of step with the calls"
        );
        first
    }

    /// The next output for the edge.
    pub fn poll_output(&mut self) -> Option<Output> {
        if let Some(o) = self.outputs.pop_front() {
            return Some(o);
        }
        self.txn.poll_transmit().map(|t| {
            if let Message::Response(r) = &t.message {
                let class = usize::from(r.status / 100).min(6);
                if let Some(n) = self.stats.responses_by_class.get_mut(class) {
                    *n += 1;
                }
            }
            Output::Transmit(t)
        })
    }

    /// Runs transaction events and ACD decisions until both are quiet.
    fn pump(&mut self, now: Instant) {
        loop {
            if let Some(ev) = self.txn.poll_event() {
                self.on_tx_event(now, ev);
                continue;
            }
            if let Some(d) = self.acd.poll_decision() {
                self.decide(now, d);
                continue;
            }
            if let Some(ev) = self.acd.poll_seat_event() {
                self.outputs.push_back(Output::Agent(ev));
                continue;
            }
            break;
        }
    }

    fn emit(&mut self, call: CallId, kind: CallEventKind) {
        self.outputs
            .push_back(Output::Event(CallEvent { call, kind }));
    }

    fn respond(&mut self, now: Instant, key: &ServerTxKey, resp: Response) {
        let status = resp.status;
        if let Err(e) = self.txn.send_response(now, key, resp) {
            tracing::debug!(status, error = %e, "response not sent");
        }
    }

    /// A response built from `req` with vigie's Server header.
    fn response_to(&self, req: &Request, status: u16, reason: &str, tag: Option<&str>) -> Response {
        let mut r = req.response(status, reason, tag);
        r.headers.push(HeaderName::Server, self.user_agent.clone());
        r
    }

    fn on_tx_event(&mut self, now: Instant, ev: TxEvent) {
        let Some(ev) = self.qualify_event(now, ev) else {
            return;
        };
        match ev {
            TxEvent::Request { key, from, request } => self.on_request(now, key, from, request),
            // The layer stops retransmitting our 2xx on the ACK (RFC 6026); an ACK only
            // matters when it carries the caller's answer to a late offer.
            TxEvent::Ack { request, .. } => self.on_ack(&request),
            TxEvent::Cancelled { invite, .. } => self.on_cancel(now, &invite),
            TxEvent::Response { key, response } => self.on_response(now, &key, response),
            TxEvent::Stray2xx { from, response } => self.on_stray_2xx(from, &response),
            TxEvent::Timeout { key } | TxEvent::TransportError { key } => {
                self.on_client_timeout(now, &key)
            }
            TxEvent::ServerAckTimeout { key } => self.on_no_ack(now, &key),
            #[allow(unreachable_patterns)]
            _ => {}
        }
    }

    // ---- requests -------------------------------------------------------------------

    fn on_request(&mut self, now: Instant, key: ServerTxKey, from: Peer, req: Request) {
        if let Some(resp) = self.precheck(&req) {
            self.respond(now, &key, resp);
            return;
        }
        let to_tag = req
            .header_to()
            .ok()
            .and_then(|t| t.tag().map(str::to_owned));
        if let Some(tag) = to_tag {
            self.in_dialog(now, key, req, &tag);
            return;
        }
        match req.method {
            Method::Invite => {
                // Seat feature codes (*21…*24) before any trunk-call handling.
                let feature = req
                    .uri
                    .user_unescaped()
                    .and_then(|u| self.features.parse(&u));
                match feature {
                    Some(cmd) => self.feature_invite(now, key, from, req, cmd),
                    None => self.new_call(now, key, from, req),
                }
            }
            Method::Register => {
                // A source locked out after repeated failures gets no answer at all; its
                // REGISTERs are dropped before the transaction layer (handle_message).
                let outcome = self.registrar.handle_register(now, from, &req);
                let mut resp = outcome.response;
                resp.headers
                    .push(HeaderName::Server, self.user_agent.clone());
                self.respond(now, &key, resp);
                for change in outcome.changes {
                    self.seat_change(now, change);
                }
                self.qualify_tick(now);
            }
            Method::Options => {
                let mut r = self.response_to(&req, 200, "OK", Some(&new_tag()));
                r.headers.push(HeaderName::Allow, ALLOW);
                r.headers.push(HeaderName::Accept, "application/sdp");
                self.respond(now, &key, r);
            }
            Method::Bye | Method::Cancel | Method::Update | Method::Info => {
                let r = self.response_to(&req, 481, "Call/Transaction Does Not Exist", None);
                self.respond(now, &key, r);
            }
            _ => {
                let mut r = self.response_to(&req, 405, "Method Not Allowed", None);
                r.headers.push(HeaderName::Allow, ALLOW);
                self.respond(now, &key, r);
            }
        }
    }

    /// RFC 3261 §8.2.1–§8.2.3 checks every request passes: method, URI scheme,
    /// extensions.
    fn precheck(&self, req: &Request) -> Option<Response> {
        if let Method::Other(_) = req.method {
            let mut r = self.response_to(req, 501, "Not Implemented", None);
            r.headers.push(HeaderName::Allow, ALLOW);
            return Some(r);
        }
        if !matches!(req.uri.scheme, Scheme::Sip | Scheme::Sips | Scheme::Tel) {
            return Some(self.response_to(req, 416, "Unsupported URI Scheme", None));
        }
        let required: Vec<String> = req
            .headers
            .get_all(&HeaderName::Require)
            .flat_map(|v| v.split(','))
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
            .collect();
        if !required.is_empty() && !matches!(req.method, Method::Ack | Method::Cancel) {
            let mut r = self.response_to(req, 420, "Bad Extension", None);
            r.headers.push(HeaderName::Unsupported, required.join(", "));
            return Some(r);
        }
        None
    }

    fn in_dialog(&mut self, now: Instant, key: ServerTxKey, req: Request, _tag: &str) {
        let found = req
            .call_id()
            .ok()
            .and_then(|cid| self.by_sip_call_id.get(cid).copied());
        let Some((call, side)) = found else {
            if self.callback_in_dialog(now, &key, &req) {
                return;
            }
            let r = self.response_to(&req, 481, "Call/Transaction Does Not Exist", None);
            self.respond(now, &key, r);
            return;
        };
        let cid = req.call_id().unwrap_or_default().to_owned();
        // Only the bridged fork speaks for leg B; an unanswered fork's request ends nothing
        // (its own final response or our CANCEL does).
        let bridged = side == Side::A
            || self
                .calls
                .get(&call)
                .is_some_and(|c| c.legs.iter().any(|l| l.answered && l.dialog.call_id == cid));
        match req.method {
            Method::Bye => {
                let r = self.response_to(&req, 200, "OK", None);
                self.respond(now, &key, r);
                if !bridged {
                    return;
                }
                let cause = match side {
                    Side::A => EndCause::CallerHangup,
                    Side::B => EndCause::AgentHangup,
                };
                self.hang_up(now, call, side, cause);
            }
            Method::Invite | Method::Update => {
                // A caller's location update (RFC 6442 §3: a new Geolocation in a re-INVITE
                // or UPDATE) is appended to the call's locations.
                if side == Side::A {
                    let by_value =
                        location::from_sip_body(req.content_type().unwrap_or(""), &req.body)
                            .map_err(|e| e.to_string());
                    self.emit_locations(call, &req, by_value);
                }
                // Session refresh or re-offer: vigie keeps the relay where it is and
                // answers with the SDP it already gave this leg (RFC 3264 §8).
                let sdp = self.calls.get(&call).and_then(|c| match side {
                    Side::A => c.a_sdp.clone(),
                    Side::B => c
                        .legs
                        .iter()
                        .find(|b| b.dialog.call_id == cid)
                        .map(|b| b.local_sdp.clone()),
                });
                let mut r = self.response_to(&req, 200, "OK", None);
                if let Some(peer) = self.peer_of(call, side, &cid) {
                    r.headers
                        .push(HeaderName::Contact, self.local.contact(&peer));
                }
                // Only an SDP offer gets an SDP answer (an UPDATE may carry just a PIDF-LO).
                if let Some(sdp) = sdp.filter(|_| has_sdp_offer(&req)) {
                    r.headers.push(HeaderName::ContentType, "application/sdp");
                    r.body = sdp;
                }
                self.respond(now, &key, r);
            }
            _ => {
                let r = self.response_to(&req, 200, "OK", None);
                self.respond(now, &key, r);
            }
        }
    }

    /// Emits the locations of a caller's INVITE, re-INVITE or UPDATE: those by value in the
    /// body, then every non-`cid:` `Geolocation` URI as a reference (RFC 6442 §4.1) with
    /// `Geolocation-Routing` (§4.2).
    fn emit_locations(
        &mut self,
        id: CallId,
        req: &Request,
        by_value: Result<Vec<location::Location>, String>,
    ) {
        match by_value {
            Ok(locs) => {
                for l in locs {
                    self.emit(id, CallEventKind::Located(l));
                }
            }
            Err(e) => self.emit(id, CallEventKind::LocationError(e)),
        }
        let routing = req
            .headers
            .get(&HeaderName::GeolocationRouting)
            .and_then(location::geolocation_routing);
        let geolocation: Vec<&str> = req.headers.get_all(&HeaderName::Geolocation).collect();
        if geolocation.is_empty() {
            return;
        }
        if let Ok(uris) = location::resolve_geolocation(&geolocation.join(", "), "", &[]) {
            for uri in uris.into_iter().filter_map(|g| match g {
                Ok(location::Geolocation::ByReference(uri)) => Some(uri),
                _ => None,
            }) {
                self.emit(id, CallEventKind::LocationReference { uri, routing });
            }
        }
    }

    /// The transport peer of one leg of a call (leg B: the fork with SIP Call-ID `cid`).
    fn peer_of(&self, call: CallId, side: Side, cid: &str) -> Option<Peer> {
        let c = self.calls.get(&call)?;
        match side {
            Side::A => Some(c.a.peer),
            Side::B => c
                .legs
                .iter()
                .find(|b| b.dialog.call_id == cid)
                .map(|b| b.dialog.peer),
        }
    }

    fn new_call(&mut self, now: Instant, key: ServerTxKey, from: Peer, req: Request) {
        if !self
            .trunk_sources
            .iter()
            .any(|c| c.contains(from.addr.ip()))
        {
            let r = self.response_to(&req, 403, "Forbidden (not a trunk source)", None);
            self.respond(now, &key, r);
            return;
        }
        let called = req.uri.user_unescaped().unwrap_or_default();
        let (Ok(from_hdr), Ok(to_hdr), Ok(call_id), Ok(_)) = (
            req.header_from(),
            req.header_to(),
            req.call_id(),
            req.cseq(),
        ) else {
            let r = self.response_to(&req, 400, "Bad Request (From, To, Call-ID or CSeq)", None);
            self.respond(now, &key, r);
            return;
        };
        let (offer, locations) = split_body(&req);
        let facts = CallFacts {
            called: called.clone(),
            caller: asserted_user(&req).or_else(|| identity_user(&from_hdr.uri)),
            source: Some(from.addr.ip()),
            headers: req
                .headers
                .iter()
                .map(|h| (h.name.as_str().to_owned(), h.value.clone()))
                .collect(),
            has_location: req
                .headers
                .get(&HeaderName::Other("Geolocation".into()))
                .is_some()
                || locations.as_ref().is_ok_and(|l| !l.is_empty()),
        };
        let decision = dialplan::evaluate(&self.plan, &facts, self.wall_at(now));
        let Some(route) = decision.route.clone() else {
            tracing::warn!(%called, "no dialplan route matched");
            let r = self.response_to(&req, 404, "Not Found (no route for this number)", None);
            self.respond(now, &key, r);
            return;
        };
        let queue = decision
            .steps
            .iter()
            .find_map(|s| match s {
                Step::Queue { name, .. } => Some(name.clone()),
                _ => None,
            })
            .unwrap_or_default();
        let remote_target = req
            .contacts()
            .ok()
            .and_then(|c| c.into_iter().next())
            .map(|c| c.uri)
            .unwrap_or_else(|| from_hdr.uri.clone());
        let id = Ulid::generate();
        // Late offer (RFC 3261 §13.2.1: INVITE without SDP): vigie makes the offer to the
        // seat itself; the seat's answer becomes vigie's offer in the 200 to the caller,
        // and the caller's answer arrives in the ACK.
        let late_offer = offer.is_empty();
        let offer = if late_offer {
            Bytes::from_static(LATE_OFFER_SDP)
        } else {
            offer
        };
        let tag = new_tag();
        let a = Dialog {
            call_id: call_id.to_owned(),
            local_tag: tag.clone(),
            remote_tag: from_hdr.tag().map(str::to_owned),
            local_uri: without_params(&to_hdr),
            remote_uri: without_params(&from_hdr),
            remote_target,
            local_cseq: 0,
            peer: from,
        };
        let caller_user = from_hdr
            .uri
            .user_unescaped()
            .unwrap_or_else(|| "anonymous".to_owned());
        self.emit(
            id,
            CallEventKind::Received {
                sip_call_id: call_id.to_owned(),
                caller: caller_user.clone(),
                caller_display: from_hdr.display.clone(),
                called: called.clone(),
                source: from.addr,
                queue: queue.clone(),
            },
        );
        let mut vars: Vec<(String, String)> = Vec::new();
        let mut tags: Vec<String> = Vec::new();
        // The route's own steps: `on_overflow` branch segments run only if taken.
        for step in decision
            .steps
            .iter()
            .take(dialplan::segment_end(&decision.steps, 0))
        {
            match step {
                Step::Set { name, value } => {
                    vars.retain(|(n, _)| n != name);
                    vars.push((name.clone(), value.clone()));
                }
                Step::Tag(t) if !tags.contains(t) => tags.push(t.clone()),
                _ => {}
            }
        }
        self.emit(
            id,
            CallEventKind::Routed {
                route: Some(route),
                vars,
                tags,
                trace: decision.trace.iter().map(|t| t.0.clone()).collect(),
            },
        );
        self.emit_locations(id, &req, locations);
        // An SDP offer vigie cannot relay (no PCMU/PCMA audio) could never reach a seat:
        // refuse it now (RFC 3264 §6) rather than queue a call every offer would fail.
        let mut probe = sdp::LocalOrigin::new(0);
        if let Err(e) = sdp::anchor(&offer, SocketAddr::new(self.media_ip, 0), &mut probe) {
            tracing::warn!(call = %id, error = %e, "caller SDP refused");
            let mut r = self.response_to(&req, e.status_code(), "Not Acceptable Here", Some(&tag));
            r.headers.push(
                HeaderName::Other("Warning".into()),
                format!("305 {} \"Incompatible media format\"", self.local.host),
            );
            self.respond(now, &key, r);
            self.emit(
                id,
                CallEventKind::Ended {
                    cause: EndCause::MediaRefused,
                },
            );
            return;
        }
        self.by_invite_tx.insert(key.clone(), id);
        self.by_sip_call_id
            .insert(call_id.to_owned(), (id, Side::A));
        // Like every `set`, the language holds from routing on (the last one wins).
        let language = decision
            .steps
            .iter()
            .rev()
            .find_map(|s| match s {
                Step::Set { name, value } if name == dialplan::LANGUAGE_VAR => Some(value.clone()),
                _ => None,
            })
            .unwrap_or_else(|| self.default_language.clone());
        self.calls.insert(
            id,
            Call {
                queue,
                invite: req,
                invite_tx: key,
                a,
                offer,
                late_offer,
                a_sdp: None,
                caller_user,
                caller_display: from_hdr.display.clone(),
                origin_a: sdp::LocalOrigin::new(rand::random::<u32>().into()),
                origin_b: sdp::LocalOrigin::new(rand::random::<u32>().into()),
                legs: Vec::new(),
                media: None,
                pending: Vec::new(),
                phase: Phase::Queued,
                media_known: false,
                seg_end: dialplan::segment_end(&decision.steps, 0),
                steps: decision.steps.into(),
                pc: 0,
                wait: Wait::Running,
                queue_step: None,
                in_acd: false,
                next_target: 0,
                overflow_reason: OverflowReason::MaxWait,
                answered_early: false,
                early_media: false,
                announce: None,
                announcing: false,
                language,
                answered_at: None,
                next_announce: None,
                deadline: None,
            },
        );
        self.outputs
            .push_back(Output::Media(MediaCommand::Allocate { call: id }));
        self.advance(now, id);
    }

    // ---- the plan's steps -------------------------------------------------------------

    /// Runs the call's steps from `pc` until one waits (media, a prompt, a queue, an
    /// overflow target) or ends the call.
    fn advance(&mut self, now: Instant, id: CallId) {
        loop {
            let Some(c) = self.calls.get(&id) else {
                return;
            };
            if c.wait != Wait::Running {
                return;
            }
            let Some(step) = c.steps.get(c.pc).filter(|_| c.pc < c.seg_end).cloned() else {
                self.steps_exhausted(now, id);
                return;
            };
            let needs_media = match &step {
                Step::Ring(code) => *code == 183,
                Step::Answer | Step::Play(_) | Step::Overflow { .. } => true,
                _ => false,
            };
            if needs_media && !c.media_known {
                if let Some(c) = self.calls.get_mut(&id) {
                    c.wait = Wait::Media;
                }
                return;
            }
            if matches!(
                step,
                Step::Play(_) | Step::Queue { .. } | Step::Hangup { .. }
            ) && c.in_acd
            {
                // The call moves on from its queue to something else.
                self.leave_acd(now, id);
            }
            if let Some(c) = self.calls.get_mut(&id)
                && !matches!(step, Step::Overflow { .. })
            {
                c.pc += 1;
            }
            match step {
                Step::Ring(code) => self.ring(now, id, code),
                Step::Answer => self.answer_early(now, id),
                Step::Play(prompt) => {
                    self.early_media(now, id);
                    let language = self
                        .calls
                        .get(&id)
                        .map_or_else(|| self.default_language.clone(), |c| c.language.clone());
                    self.outputs.push_back(Output::Media(MediaCommand::Play {
                        call: id,
                        side: Side::A,
                        prompt,
                        repeat: false,
                        language,
                    }));
                    if let Some(c) = self.calls.get_mut(&id) {
                        c.wait = Wait::Prompt;
                        let guard = now + Duration::from_secs(PROMPT_GUARD_S);
                        self.timers
                            .set(id, CallTimer::Deadline, &mut c.deadline, Some(guard));
                    }
                    return;
                }
                Step::Queue {
                    name,
                    priority,
                    max_wait_s,
                    announce,
                    announce_every_s,
                    announce_position,
                    announce_wait,
                    on_overflow,
                } => {
                    let spec = announce::AnnounceSpec {
                        prompt: announce,
                        every: announce_every_s.map(Duration::from_secs),
                        position: announce_position,
                        wait: announce_wait,
                    };
                    self.queue(
                        now,
                        id,
                        &name,
                        priority,
                        max_wait_s,
                        spec,
                        !on_overflow.is_empty(),
                    );
                    return;
                }
                Step::Overflow { .. } => {
                    self.overflow_next(now, id);
                    return;
                }
                Step::Record(on) => {
                    self.outputs
                        .push_back(Output::Media(MediaCommand::Record { call: id, on }));
                }
                Step::Hangup { cause } => {
                    self.plan_hangup(now, id, cause);
                    return;
                }
                // Set and tag were carried by the Routed event; goto is resolved by the
                // evaluator.
                _ => {}
            }
        }
    }

    /// A provisional response to the caller (RFC 3261 §21.1): 180 Ringing, or 183
    /// Session Progress with vigie's SDP (early media). Nothing once the caller has a 200.
    fn ring(&mut self, now: Instant, id: CallId, code: u16) {
        let Some(c) = self.calls.get(&id) else {
            return;
        };
        if c.answered_early {
            return;
        }
        if code == 183 {
            self.early_media(now, id);
            return;
        }
        let mut ringing = self.response_to(&c.invite, 180, "Ringing", Some(&c.a.local_tag));
        ringing
            .headers
            .push(HeaderName::Contact, self.local.contact(&c.a.peer));
        let key = c.invite_tx.clone();
        self.respond(now, &key, ringing);
    }

    /// vigie's SDP towards the caller (its offer anchored at relay port A, RFC 3264 §6),
    /// computed once; and the caller's RTP address for the relay.
    fn caller_sdp(&mut self, id: CallId) -> Option<Bytes> {
        let c = self.calls.get_mut(&id)?;
        if let Some(sdp) = &c.a_sdp {
            return Some(sdp.clone());
        }
        let a_port = c.media.map(|m| m.a).unwrap_or(0);
        let anchored = sdp::anchor(
            &c.offer,
            SocketAddr::new(self.media_ip, a_port),
            &mut c.origin_a,
        )
        .ok()?;
        c.a_sdp = Some(anchored.sdp.clone());
        if let Some(addr) = anchored.peer.filter(|_| !c.late_offer) {
            self.outputs
                .push_back(Output::Media(MediaCommand::PeerHint {
                    call: id,
                    side: Side::A,
                    addr,
                }));
        }
        if let Some(codec) = anchored
            .codecs
            .iter()
            .find(|k| matches!(k.kind, sdp::CodecKind::Pcmu | sdp::CodecKind::Pcma))
        {
            self.outputs.push_back(Output::Media(MediaCommand::Codec {
                call: id,
                side: Side::A,
                payload_type: codec.payload_type,
                alaw: matches!(codec.kind, sdp::CodecKind::Pcma),
            }));
        }
        Some(anchored.sdp)
    }

    /// Opens a media path to the caller before any answer: 183 Session Progress with
    /// vigie's SDP (early media), once. A late-offer call (INVITE without SDP) cannot get
    /// SDP in an unreliable 1xx: it gets a plain 183 and hears nothing until answered.
    fn early_media(&mut self, now: Instant, id: CallId) {
        let Some(c) = self.calls.get(&id) else {
            return;
        };
        if c.answered_early || c.early_media || c.phase == Phase::Connected {
            return;
        }
        let late = c.late_offer;
        let sdp = if late { None } else { self.caller_sdp(id) };
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        c.early_media = true;
        let mut r = c
            .invite
            .response(183, "Session Progress", Some(&c.a.local_tag));
        r.headers.push(HeaderName::Server, self.user_agent.clone());
        r.headers
            .push(HeaderName::Contact, self.local.contact(&c.a.peer));
        if let Some(sdp) = sdp {
            r.headers.push(HeaderName::ContentType, "application/sdp");
            r.body = sdp;
        }
        let key = c.invite_tx.clone();
        self.respond(now, &key, r);
    }

    /// An `answer` step: 200 OK to the caller with vigie's SDP before any seat; the seat's
    /// answer later bridges without a second 200.
    fn answer_early(&mut self, now: Instant, id: CallId) {
        let Some(c) = self.calls.get(&id) else {
            return;
        };
        if c.answered_early || c.phase == Phase::Connected {
            return;
        }
        let sdp = if c.late_offer {
            // The 200 carries vigie's offer; the caller answers in its ACK.
            let a_port = c.media.map(|m| m.a).unwrap_or(0);
            let mut origin = c.origin_a.clone();
            let sdp = sdp::anchor(
                LATE_OFFER_SDP,
                SocketAddr::new(self.media_ip, a_port),
                &mut origin,
            )
            .ok()
            .map(|a| a.sdp);
            if let Some(c) = self.calls.get_mut(&id) {
                c.origin_a = origin;
                c.a_sdp = sdp.clone();
            }
            sdp
        } else {
            self.caller_sdp(id)
        };
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        c.answered_early = true;
        let mut ok = c.invite.response(200, "OK", Some(&c.a.local_tag));
        ok.headers
            .push(HeaderName::Contact, self.local.contact(&c.a.peer));
        ok.headers.push(HeaderName::Allow, ALLOW);
        ok.headers.push(HeaderName::Server, self.user_agent.clone());
        if let Some(sdp) = sdp {
            ok.headers.push(HeaderName::ContentType, "application/sdp");
            ok.body = sdp;
        }
        let key = c.invite_tx.clone();
        self.respond(now, &key, ok);
    }

    /// A queue step: into the ACD with the step's priority and max wait; announcements
    /// start at once and repeat every `announce_every_s`. A seat free at arrival is
    /// offered the call before any announcement (which is then skipped while it rings).
    /// A step with somewhere to go next (a following step, or an `on_overflow` branch)
    /// lets the ACD release the call for every [`OverflowReason`]; one without never
    /// leaves the queue (never a busy to an emergency caller, DESIGN §1).
    #[allow(clippy::too_many_arguments)]
    fn queue(
        &mut self,
        now: Instant,
        id: CallId,
        name: &str,
        priority: u8,
        max_wait_s: u64,
        spec: announce::AnnounceSpec,
        has_branches: bool,
    ) {
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        let has_next = c.pc < c.seg_end || has_branches;
        c.queue_step = Some(c.pc.saturating_sub(1));
        c.queue = name.to_owned();
        c.wait = Wait::Queue;
        c.phase = Phase::Queued;
        c.in_acd = true;
        self.timers.set(
            id,
            CallTimer::Announce,
            &mut c.next_announce,
            spec.any().then_some(now),
        );
        c.announce = spec.any().then_some(spec);
        let max_wait = (max_wait_s > 0).then(|| Duration::from_secs(max_wait_s));
        let spec = CallSpec {
            priority,
            max_wait,
            overflows: has_next,
            // Never zero: a failed overflow for want of seats or room would loop at once.
            overflow_retry: max_wait.unwrap_or(Duration::from_secs(OVERFLOW_RETRY_S)),
        };
        self.emit(
            id,
            CallEventKind::Queued {
                queue: name.to_owned(),
            },
        );
        if let Err(e) = self.acd.enqueue_with(now, id, name, spec) {
            tracing::error!(call = %id, error = %e, "ACD refused a call");
        }
        // A free seat takes the call now: its offer goes out before any announcement.
        self.pump(now);
        if self
            .calls
            .get(&id)
            .is_some_and(|c| c.next_announce.is_some())
        {
            self.announce(now, id);
        }
    }

    /// The call leaves the ACD for a step that is not a queue (a prompt, a hang-up):
    /// announcements stop.
    fn leave_acd(&mut self, now: Instant, id: CallId) {
        if let Some(c) = self.calls.get_mut(&id) {
            c.in_acd = false;
            c.announce = None;
            self.timers
                .set(id, CallTimer::Announce, &mut c.next_announce, None);
        }
        self.acd.dequeue(now, id);
    }

    /// The ACD let the call leave its queue for `reason`: the queue step's `on_overflow`
    /// branch for that reason runs, else the step after the queue step. With neither, the
    /// call keeps its place and may leave again after the overflow retry.
    fn queue_exit(&mut self, now: Instant, id: CallId, reason: OverflowReason) {
        let Some(c) = self.calls.get_mut(&id) else {
            self.acd.overflow_failed(now, id);
            return;
        };
        if c.wait != Wait::Queue {
            return;
        }
        let q = c.queue_step.unwrap_or(c.pc.saturating_sub(1));
        let branch = match c.steps.get(q) {
            Some(Step::Queue { on_overflow, .. }) => on_overflow
                .iter()
                .find(|b| b.reason == reason)
                .and_then(|b| Some((b.at?, b.route.clone()))),
            _ => None,
        };
        match branch {
            Some((at, route)) => {
                c.pc = at;
                c.seg_end = dialplan::segment_end(&c.steps, at);
                // The branch's route, variables and tags, with the reason as tag
                // `overflow:REASON`, for the journal and the dispatch hand-off.
                let mut vars: Vec<(String, String)> = Vec::new();
                let mut tags = vec![format!("overflow:{}", reason.as_str())];
                for step in c.steps.get(at..c.seg_end).unwrap_or_default() {
                    match step {
                        Step::Set { name, value } => {
                            vars.retain(|(n, _)| n != name);
                            vars.push((name.clone(), value.clone()));
                        }
                        Step::Tag(t) if !tags.contains(t) => tags.push(t.clone()),
                        _ => {}
                    }
                }
                let trace = vec![format!(
                    "left queue {} ({}): continue with route {route}",
                    c.queue,
                    reason.as_str()
                )];
                self.emit(
                    id,
                    CallEventKind::Routed {
                        route: Some(route),
                        vars,
                        tags,
                        trace,
                    },
                );
            }
            None => {
                c.pc = q + 1;
                c.seg_end = dialplan::segment_end(&c.steps, q);
                if c.pc >= c.seg_end {
                    // Nowhere to go for this reason: stay queued.
                    self.acd.overflow_failed(now, id);
                    return;
                }
            }
        }
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        c.overflow_reason = reason;
        c.wait = Wait::Running;
        c.next_target = 0;
        self.advance(now, id);
    }

    /// Tries the current overflow step's next target; when none is left, the step's
    /// `then`: the next step, or back to the queue in the call's place.
    fn overflow_next(&mut self, now: Instant, id: CallId) {
        loop {
            let Some(c) = self.calls.get_mut(&id) else {
                return;
            };
            let Some(Step::Overflow { targets, then }) = c.steps.get(c.pc).cloned() else {
                return;
            };
            let Some(target) = targets.get(c.next_target).cloned() else {
                c.next_target = 0;
                c.wait = Wait::Running;
                let back = then == OverflowThen::BackToQueue || c.pc + 1 >= c.seg_end;
                match (back, c.in_acd, c.queue_step) {
                    (true, true, _) => {
                        // Back to its place in the queue; may overflow again after the
                        // queue step's max wait.
                        c.wait = Wait::Queue;
                        c.phase = Phase::Queued;
                        if let Some(q) = c.queue_step {
                            c.pc = q + 1;
                            c.seg_end = dialplan::segment_end(&c.steps, q);
                        }
                        if let Some(spec) = &c.announce {
                            let next = now + spec.every.unwrap_or_default();
                            self.timers.set(
                                id,
                                CallTimer::Announce,
                                &mut c.next_announce,
                                Some(next),
                            );
                        }
                        self.acd.overflow_failed(now, id);
                    }
                    (true, false, Some(q)) => {
                        c.pc = q;
                        c.seg_end = dialplan::segment_end(&c.steps, q);
                        self.advance(now, id);
                    }
                    _ => {
                        c.pc += 1;
                        self.advance(now, id);
                    }
                }
                return;
            };
            c.next_target += 1;
            let reason = c.overflow_reason;
            let uri = Uri::parse(&target.uri).ok();
            let peer = uri.as_ref().and_then(|u| contact_peer(u, None));
            let sent = match (uri, peer) {
                (Some(uri), Some(peer)) => {
                    let to = format!("<{uri}>");
                    self.send_out_invite(
                        now,
                        id,
                        Target::Overflow(target.uri.clone()),
                        target.uri.clone(),
                        uri,
                        peer,
                        to,
                    )
                }
                _ => false,
            };
            if sent {
                if let Some(c) = self.calls.get_mut(&id) {
                    c.phase = Phase::Overflowing;
                    c.wait = Wait::Overflow;
                    let timeout = now + Duration::from_secs(target.timeout_s);
                    self.timers
                        .set(id, CallTimer::Deadline, &mut c.deadline, Some(timeout));
                }
                self.emit(
                    id,
                    CallEventKind::Overflowed {
                        target: target.uri,
                        reason,
                    },
                );
                return;
            }
            tracing::warn!(call = %id, target = %target.uri, "overflow target unusable (needs an IP address)");
            self.emit(id, CallEventKind::OverflowFailed { status: None });
        }
    }

    /// The current overflow target failed (final failure, timeout): the next one.
    fn overflow_failed(&mut self, now: Instant, id: CallId) {
        if let Some(c) = self.calls.get_mut(&id) {
            self.timers
                .set(id, CallTimer::Deadline, &mut c.deadline, None);
            c.phase = Phase::Queued;
            c.wait = Wait::Running;
        }
        self.overflow_next(now, id);
    }

    /// The steps ran out without a hang-up (the compiler refuses this for emergency
    /// routes): a call still queued keeps waiting; otherwise it goes back to its last
    /// queue step, and with none it is released with 480.
    fn steps_exhausted(&mut self, now: Instant, id: CallId) {
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        if c.in_acd {
            // Still holding its place: back to waiting, and the steps after the queue run
            // again after its max wait.
            c.wait = Wait::Queue;
            c.phase = Phase::Queued;
            if let Some(q) = c.queue_step {
                c.pc = q + 1;
                c.seg_end = dialplan::segment_end(&c.steps, q);
            }
            self.acd.overflow_failed(now, id);
            return;
        }
        match c.queue_step {
            Some(q) => {
                c.pc = q;
                c.seg_end = dialplan::segment_end(&c.steps, q);
                self.advance(now, id);
            }
            None => {
                tracing::error!(call = %id, "dialplan steps ran out: releasing with 480");
                self.plan_hangup(now, id, 480);
            }
        }
    }

    /// A `hangup` step: the final status to the caller (or BYE once answered), the call
    /// ended with cause `dialplan`.
    fn plan_hangup(&mut self, now: Instant, id: CallId, status: u16) {
        let Some(c) = self.calls.get(&id) else {
            return;
        };
        if c.in_acd {
            self.leave_acd(now, id);
        }
        self.cancel_forks(now, id, None, CancelWhy::Caller);
        let Some(c) = self.calls.get(&id) else {
            return;
        };
        if c.answered_early {
            self.bye_a(now, id);
        } else {
            let r = self.response_to(
                &c.invite,
                status,
                reason_phrase(status),
                Some(&c.a.local_tag),
            );
            let key = c.invite_tx.clone();
            self.respond(now, &key, r);
        }
        self.outputs
            .push_back(Output::Media(MediaCommand::StopPlay {
                call: id,
                side: Side::A,
            }));
        self.emit(
            id,
            CallEventKind::Ended {
                cause: EndCause::Dialplan { status },
            },
        );
        self.finish(id);
    }

    fn on_ack(&mut self, ack: &Request) {
        if ack.body.is_empty() {
            return;
        }
        let Some((id, Side::A)) = ack
            .call_id()
            .ok()
            .and_then(|c| self.by_sip_call_id.get(c).copied())
        else {
            return;
        };
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if !call.late_offer {
            return;
        }
        let relay = SocketAddr::new(self.media_ip, call.media.map(|m| m.b).unwrap_or(0));
        let mut scratch = sdp::LocalOrigin::new(0);
        match sdp::anchor(&ack.body, relay, &mut scratch) {
            Ok(a) => {
                if let Some(addr) = a.peer {
                    self.outputs
                        .push_back(Output::Media(MediaCommand::PeerHint {
                            call: id,
                            side: Side::A,
                            addr,
                        }));
                }
            }
            Err(e) => {
                tracing::info!(call = %id, error = %e, "SDP answer in the caller's ACK unusable")
            }
        }
    }

    fn on_cancel(&mut self, now: Instant, invite: &ServerTxKey) {
        let Some(id) = self.by_invite_tx.get(invite).copied() else {
            return;
        };
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        if call.phase == Phase::Connected {
            return;
        }
        self.abandon(now, id);
    }

    /// The caller gave up before an answer (CANCEL, or BYE in the early dialog, RFC 3261
    /// §15): 487 for its INVITE (§9.2, §15.1.2), the seat or overflow leg withdrawn, the
    /// call ended as abandoned.
    fn abandon(&mut self, now: Instant, id: CallId) {
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        // Hearing a `play` step's prompt, or a queue announcement while waiting.
        let hearing_prompt = call.wait == Wait::Prompt
            || (call.announcing && call.wait == Wait::Queue && call.phase == Phase::Queued);
        let phase = match call.phase {
            _ if hearing_prompt => AbandonPhase::Announcement,
            Phase::Queued => AbandonPhase::Queued,
            Phase::Ringing => AbandonPhase::Ringing,
            _ => AbandonPhase::Overflowing,
        };
        if !call.answered_early {
            let r = self.response_to(
                &call.invite,
                487,
                "Request Terminated",
                Some(&call.a.local_tag),
            );
            let key = call.invite_tx.clone();
            self.respond(now, &key, r);
        }
        self.cancel_forks(now, id, None, CancelWhy::Caller);
        self.emit(id, CallEventKind::Abandoned { phase });
        let pending = self
            .calls
            .get_mut(&id)
            .map(|c| std::mem::take(&mut c.pending))
            .unwrap_or_default();
        self.finish(id);
        // A seat whose INVITE is being withdrawn (CANCEL, or BYE after a crossing 2xx)
        // stays reserved until that fork ends ([`Switch::leg_ended`] reports it).
        if self.forks_outstanding(id) {
            self.acd.abandon_holding_seat(now, id);
        } else {
            self.acd.abandon(now, id);
        }
        // Offers that waited for the relay ports never rang: their seats are free.
        for d in pending {
            if let Decision::Offer { seat, .. } = d {
                self.acd
                    .offer_failed(now, id, &seat, OfferFailure::Withdrawn);
            }
        }
    }

    // ---- ACD decisions --------------------------------------------------------------

    fn decide(&mut self, now: Instant, d: Decision) {
        match d {
            Decision::Offer { call, seat } => self.offer(now, call, seat),
            Decision::Overflow { call, reason } => self.queue_exit(now, call, reason),
            Decision::RingTimeout { call, .. } if self.callback_ring_timeout(now, call) => {}
            Decision::RingTimeout { call, seat } => self.seat_timed_out(now, call, &seat),
            Decision::Withdraw { call, seat } => self.withdraw(now, call, &seat),
            // Each overflow target's timeout is the switch's own (`Call::deadline`).
            Decision::OverflowTimeout { .. } => {}
            #[allow(unreachable_patterns)]
            _ => {}
        }
    }

    /// An ACD offer of the call to `seat`: one INVITE, a fork, to each registered Contact
    /// of the seat (several bindings of one address of record, RFC 3261 §10.2.1.2: a desk
    /// phone and a headset app ring together, forked in parallel as a proxy would,
    /// §16.6–§16.7). The first 2xx wins and the other forks are CANCELled. The offer fails
    /// ([`OfferFailure::Unreachable`]) at once only when no fork could be sent.
    fn offer(&mut self, now: Instant, id: CallId, seat: SeatId) {
        if self.callbacks.owns(id) {
            self.callback_offer(now, id, seat);
            return;
        }
        let Some(call) = self.calls.get_mut(&id) else {
            self.acd
                .offer_failed(now, id, &seat, OfferFailure::Unreachable);
            return;
        };
        if !call.media_known {
            call.pending.push(Decision::Offer { call: id, seat });
            return;
        }
        let to = format!("<sip:{}@{}>", seat, self.local.host);
        let mut sent = 0usize;
        // Contacts that stopped answering OPTIONS are skipped while another one answers.
        let mut bindings = self.registrar.lookup(&seat);
        if bindings.iter().any(|b| {
            !self
                .qualify
                .is_contact_unreachable(&seat, &b.contact.to_string())
        }) {
            bindings.retain(|b| {
                !self
                    .qualify
                    .is_contact_unreachable(&seat, &b.contact.to_string())
            });
        }
        for binding in bindings {
            let Some(peer) = seat_peer(&binding) else {
                continue;
            };
            let contact = binding.contact.to_string();
            if self.has_fork(id, &seat, &contact) {
                continue;
            }
            if self.send_out_invite(
                now,
                id,
                Target::Seat(seat.clone()),
                contact,
                binding.contact,
                peer,
                to.clone(),
            ) {
                sent += 1;
            }
        }
        if sent > 0 {
            if let Some(c) = self.calls.get_mut(&id)
                && c.phase != Phase::Connected
            {
                c.phase = Phase::Ringing;
            }
            self.emit(id, CallEventKind::Offered { seat });
        } else {
            self.acd
                .offer_failed(now, id, &seat, OfferFailure::Unreachable);
        }
    }

    /// Whether the call already has a live fork to this seat's Contact.
    fn has_fork(&self, id: CallId, seat: &str, contact: &str) -> bool {
        self.calls.get(&id).is_some_and(|c| {
            c.legs
                .iter()
                .any(|l| l.contact == contact && matches!(&l.target, Target::Seat(s) if s == seat))
        })
    }

    /// The ACD withdrew its offer to `seat` ([`Decision::Withdraw`], ring-all: another
    /// seat answered first): CANCEL the seat's forks with `Reason: SIP;cause=200;
    /// text="Call completed elsewhere"` (RFC 3326 §2); the ACD learns
    /// [`OfferFailure::Withdrawn`] when the last of them ends. An offer still waiting for
    /// the relay ports is dropped at once.
    fn withdraw(&mut self, now: Instant, id: CallId, seat: &str) {
        if let Some(c) = self.calls.get_mut(&id) {
            let before = c.pending.len();
            c.pending
                .retain(|d| !matches!(d, Decision::Offer { seat: s, .. } if s == seat));
            if c.pending.len() != before {
                self.acd
                    .offer_failed(now, id, seat, OfferFailure::Withdrawn);
                return;
            }
        }
        self.cancel_forks(now, id, Some(seat), CancelWhy::Elsewhere);
    }

    /// A new dialog of vigie as UAC towards `ruri` via `peer` (its own Call-ID
    /// `CALL-RANDOM@vigie`, a fresh From tag, RFC 3261 §12.1.2) and its first INVITE with
    /// vigie's Contact; the caller adds the body and its own headers.
    fn out_invite(
        &self,
        id: CallId,
        local_uri: String,
        to: String,
        ruri: Uri,
        peer: Peer,
    ) -> (Dialog, Request) {
        let mut dialog = Dialog {
            call_id: format!("{}-{}@vigie", id, dialog::random_token(6)),
            local_tag: new_tag(),
            remote_tag: None,
            local_uri,
            remote_uri: to,
            remote_target: ruri,
            local_cseq: 0,
            peer,
        };
        let mut invite = dialog.request(Method::Invite, &self.local, &self.user_agent);
        invite
            .headers
            .push(HeaderName::Contact, self.local.contact(&peer));
        (dialog, invite)
    }

    /// Sends vigie's INVITE for one leg-B fork (a seat's Contact, or an overflow target),
    /// with its own Call-ID, tags and client transaction (vigie is a B2BUA: each fork is a
    /// dialog of its own). Every fork of a call offers the same SDP, anchored at the
    /// call's relay port B: only the fork that answers is bridged (the relay learns its
    /// address from that 2xx), so early media (183 SDP) from the forks is not relayed.
    /// Returns false when no SDP could be made or the INVITE was refused.
    #[allow(clippy::too_many_arguments)]
    fn send_out_invite(
        &mut self,
        now: Instant,
        id: CallId,
        target: Target,
        contact: String,
        ruri: Uri,
        peer: Peer,
        to: String,
    ) -> bool {
        let Some(call) = self.calls.get(&id) else {
            return false;
        };
        let b_port = call.media.map(|m| m.b).unwrap_or(0);
        let relay = SocketAddr::new(self.media_ip, b_port);
        let mut origin = call.origin_b.clone();
        let (sdp, a_peer) = match sdp::anchor(&call.offer, relay, &mut origin) {
            Ok(a) => (a.sdp, a.peer),
            Err(e) => {
                tracing::warn!(call = %id, error = %e, "caller SDP cannot be anchored");
                return false;
            }
        };
        if let Some(addr) = a_peer.filter(|_| !call.late_offer) {
            self.outputs
                .push_back(Output::Media(MediaCommand::PeerHint {
                    call: id,
                    side: Side::A,
                    addr,
                }));
        }
        let display = call
            .caller_display
            .as_deref()
            .map(|d| format!("\"{}\" ", d.replace('"', "'")))
            .unwrap_or_default();
        let local_uri = format!("{display}<sip:{}@{}>", call.caller_user, self.local.host);
        let (dialog, mut invite) = self.out_invite(id, local_uri, to, ruri, peer);
        invite
            .headers
            .push(HeaderName::Other("X-Vigie-Call-ID".into()), id.to_string());
        invite.headers.push(HeaderName::Allow, ALLOW);
        invite
            .headers
            .push(HeaderName::ContentType, "application/sdp");
        invite.body = sdp.clone();
        let cseq = dialog.local_cseq;
        let tx = match self.txn.send_request(now, peer, invite) {
            Ok(tx) => tx,
            Err(e) => {
                tracing::error!(call = %id, error = %e, "INVITE for leg B refused by the transaction layer");
                return false;
            }
        };
        self.by_sip_call_id
            .insert(dialog.call_id.clone(), (id, Side::B));
        if let Some(c) = self.calls.get_mut(&id) {
            c.origin_b = origin;
            c.legs.push(OutLeg {
                target,
                contact,
                tx,
                dialog,
                invite_cseq: cseq,
                answered: false,
                ringing: false,
                cancelling: false,
                cancel_why: None,
                detached: false,
                local_sdp: sdp,
            });
        }
        true
    }

    // ---- responses on leg B -----------------------------------------------------------

    fn on_response(&mut self, now: Instant, key: &ClientTxKey, resp: Response) {
        if resp.status >= 200
            && let Some(closing) = self.closing.remove(key)
        {
            self.closed(now, closing);
            return;
        }
        if self.callback_response(now, key, &resp) {
            return;
        }
        let Ok(cid) = resp.call_id() else {
            return;
        };
        let Some((id, Side::B)) = self.by_sip_call_id.get(cid).copied() else {
            self.on_withdrawn_response(now, key, &resp);
            return;
        };
        let Ok(cseq) = resp.cseq() else {
            return;
        };
        if cseq.method != Method::Invite {
            return; // BYE/CANCEL answers: nothing to do.
        }
        let same_tx = self
            .calls
            .get(&id)
            .is_some_and(|c| c.legs.iter().any(|l| &l.tx == key));
        if !same_tx {
            return;
        }
        match resp.status {
            100 => {}
            101..=199 => self.on_b_provisional(now, id, key, &resp),
            200..=299 => self.on_b_answer(now, id, key, &resp),
            _ => self.on_b_failure(now, id, key, Some(resp.status)),
        }
    }

    /// A fork's first provisional response: the seat rings ([`Acd::offer_ringing`], the
    /// `ringing` event) on the first 180/183 from any of its Contacts.
    fn on_b_provisional(&mut self, now: Instant, id: CallId, key: &ClientTxKey, resp: &Response) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(i) = call.legs.iter().position(|l| &l.tx == key) else {
            return;
        };
        let connected = call.phase == Phase::Connected;
        let Some(b) = call.legs.get(i) else {
            return;
        };
        if b.ringing {
            return;
        }
        let target = b.target.clone();
        let quiet = b.cancelling || connected;
        let seat_rang = call.legs.iter().any(|l| l.ringing && l.target == target);
        let Some(b) = call.legs.get_mut(i) else {
            return;
        };
        b.ringing = true;
        if let Some(tag) = resp
            .header_to()
            .ok()
            .and_then(|t| t.tag().map(str::to_owned))
        {
            b.dialog.remote_tag = Some(tag);
        }
        if let Target::Seat(seat) = target
            && !seat_rang
            && !quiet
        {
            self.acd.offer_ringing(now, id, &seat);
            self.emit(id, CallEventKind::Ringing { seat });
        }
    }

    /// A fork answered. The first 2xx of a call wins: it is bridged and every other fork
    /// is CANCELled (`Reason: SIP;cause=200`, RFC 3326). A 2xx that lost (it crossed our
    /// CANCEL, RFC 3261 §9.1; another fork had already won; or the ACD refused it because
    /// the seat is on another call) is ACKed and hung up with BYE: a call is never
    /// bridged to two seats.
    fn on_b_answer(&mut self, now: Instant, id: CallId, key: &ClientTxKey, resp: &Response) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let connected = call.phase == Phase::Connected;
        let Some(b) = call.legs.iter_mut().find(|l| &l.tx == key) else {
            return;
        };
        if b.answered {
            return;
        }
        b.answered = true;
        b.dialog.remote_tag = resp
            .header_to()
            .ok()
            .and_then(|t| t.tag().map(str::to_owned));
        if let Some(c) = resp.contacts().ok().and_then(|c| c.into_iter().next()) {
            b.dialog.remote_target = c.uri;
        }
        let ack = b.dialog.ack(b.invite_cseq, &self.local, &self.user_agent);
        let peer = b.dialog.peer;
        let target = b.target.clone();
        let lost = b.cancelling || connected;
        if connected && !b.cancelling {
            b.cancelling = true;
            b.cancel_why = Some(CancelWhy::Elsewhere);
        }
        self.txn.send_stateless(peer, Message::Request(ack));
        if lost {
            // Our CANCEL crossed the 200 (RFC 3261 §9.1), or another fork won first: ACK
            // it and hang up that fork; the call goes on as before once the seat has
            // answered the BYE.
            self.hang_up_fork(now, id, key);
            return;
        }
        if let Target::Seat(seat) = &target
            && !self.acd.offer_answered(now, id, seat)
        {
            // The seat is already on another call (two answers raced): a seat is never in
            // two calls. Hang this answer up; the call keeps its place in the queue.
            tracing::warn!(call = %id, %seat, "seat answered but is on another call: hung up");
            if let Some(b) = self
                .calls
                .get_mut(&id)
                .and_then(|c| c.legs.iter_mut().find(|l| &l.tx == key))
            {
                b.cancelling = true;
                b.cancel_why = Some(CancelWhy::Elsewhere);
            }
            let seat = seat.clone();
            self.cancel_forks(now, id, Some(&seat), CancelWhy::Elsewhere);
            self.hang_up_fork(now, id, key);
            return;
        }
        // The first answer wins: every other fork of the call (this seat's other Contacts,
        // other seats' INVITEs) is CANCELled. This seat's other forks are detached: the
        // seat answered, its offer did not fail.
        if let Some(call) = self.calls.get_mut(&id) {
            for l in call.legs.iter_mut() {
                if &l.tx != key && l.target == target {
                    l.detached = true;
                }
            }
        }
        if let Target::Seat(seat) = &target {
            self.fork_outcomes.remove(&(id, seat.clone()));
        }
        self.cancel_forks(now, id, None, CancelWhy::Elsewhere);
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        self.timers
            .set(id, CallTimer::Deadline, &mut call.deadline, None);
        call.announce = None;
        call.announcing = false;
        self.timers
            .set(id, CallTimer::Announce, &mut call.next_announce, None);
        if call.early_media || call.answered_early {
            self.outputs
                .push_back(Output::Media(MediaCommand::StopPlay {
                    call: id,
                    side: Side::A,
                }));
        }
        if call.answered_early {
            // The caller already has vigie's 200 (an `answer` step): bridge without a
            // second one.
            let (_, b_media) = match sdp::anchor(
                &resp.body,
                SocketAddr::new(self.media_ip, call.media.map(|m| m.a).unwrap_or(0)),
                &mut sdp::LocalOrigin::new(0),
            ) {
                Ok(a) => (a.sdp, a.peer),
                Err(e) => {
                    tracing::warn!(call = %id, error = %e, "seat SDP cannot be anchored");
                    (Bytes::new(), None)
                }
            };
            if let Some(addr) = b_media {
                self.outputs
                    .push_back(Output::Media(MediaCommand::PeerHint {
                        call: id,
                        side: Side::B,
                        addr,
                    }));
            }
            call.phase = Phase::Connected;
            self.connected(now, id, target);
            return;
        }
        let early_sdp = call.a_sdp.clone().filter(|_| call.early_media);
        // The seat's SDP becomes vigie's answer to the caller on the A port.
        let a_port = call.media.map(|m| m.a).unwrap_or(0);
        let answer = sdp::anchor(
            &resp.body,
            SocketAddr::new(self.media_ip, a_port),
            &mut call.origin_a,
        );
        let (a_sdp, b_media) = match answer {
            Ok(a) => (a.sdp, a.peer),
            Err(e) => {
                tracing::warn!(call = %id, error = %e, "seat SDP cannot be anchored");
                (Bytes::new(), None)
            }
        };
        if let Some(addr) = b_media {
            self.outputs
                .push_back(Output::Media(MediaCommand::PeerHint {
                    call: id,
                    side: Side::B,
                    addr,
                }));
        }
        // After early media the 200 repeats the SDP of the 183 (RFC 3261 §13.2.1).
        let a_sdp = early_sdp.unwrap_or(a_sdp);
        let mut ok = call.invite.response(200, "OK", Some(&call.a.local_tag));
        ok.headers
            .push(HeaderName::Contact, self.local.contact(&call.a.peer));
        ok.headers.push(HeaderName::Allow, ALLOW);
        ok.headers.push(HeaderName::Server, self.user_agent.clone());
        if !a_sdp.is_empty() {
            ok.headers.push(HeaderName::ContentType, "application/sdp");
            ok.body = a_sdp.clone();
        }
        call.a_sdp = Some(a_sdp);
        call.phase = Phase::Connected;
        let key = call.invite_tx.clone();
        self.respond(now, &key, ok);
        self.connected(now, id, target);
    }

    /// Leg B answered and the caller is bridged: the ACD (already told of a seat's answer
    /// by [`Acd::offer_answered`]) and the journal learn it.
    fn connected(&mut self, now: Instant, id: CallId, target: Target) {
        let in_acd = match self.calls.get_mut(&id) {
            Some(c) => std::mem::replace(&mut c.in_acd, false),
            None => false,
        };
        match target {
            Target::Seat(seat) => {
                if let Some(c) = self.calls.get_mut(&id) {
                    c.answered_at = Some(now);
                }
                self.emit(id, CallEventKind::Answered { seat });
            }
            Target::Overflow(target) => {
                if in_acd {
                    self.acd.overflow_answered(now, id);
                }
                self.emit(id, CallEventKind::OverflowAnswered { target });
            }
        }
    }

    /// A fork's final failure (3xx–6xx): that fork ends.
    fn on_b_failure(&mut self, now: Instant, id: CallId, key: &ClientTxKey, status: Option<u16>) {
        if let Some(leg) = self.take_leg(id, key) {
            self.leg_ended(now, id, leg, status);
        }
    }

    /// Removes a fork from its call (and from the Call-ID index).
    fn take_leg(&mut self, id: CallId, key: &ClientTxKey) -> Option<OutLeg> {
        let call = self.calls.get_mut(&id)?;
        let i = call.legs.iter().position(|l| &l.tx == key)?;
        let leg = call.legs.remove(i);
        self.by_sip_call_id.remove(&leg.dialog.call_id);
        Some(leg)
    }

    /// ACKed fork that lost (see [`Switch::on_b_answer`]): BYE on its dialog; it ends
    /// once the BYE is answered (or times out), so its seat takes no new offer before its
    /// phone has left this call.
    fn hang_up_fork(&mut self, now: Instant, id: CallId, key: &ClientTxKey) {
        let Some(leg) = self.take_leg(id, key) else {
            return;
        };
        self.bye_fork(now, id, leg);
    }

    fn bye_fork(&mut self, now: Instant, id: CallId, mut leg: OutLeg) {
        let bye = leg
            .dialog
            .request(Method::Bye, &self.local, &self.user_agent);
        match self.txn.send_request(now, leg.dialog.peer, bye) {
            Ok(bye) => {
                self.closing.insert(bye, Closing::Fork(id, Box::new(leg)));
            }
            Err(e) => {
                tracing::error!(call = %id, error = %e, "BYE on a losing leg B not sent");
                self.leg_ended(now, id, leg, Some(487));
            }
        }
    }

    /// A fork ended without being bridged (final failure, transaction timeout, or hung up
    /// after a losing 2xx). An overflow target's failure moves the overflow on. For a
    /// seat, the offer fails only when its last fork has ended, with the best of their
    /// outcomes ([`ForkOutcome`]): the `seat_failed` event (while the call lasts) and
    /// [`Acd::offer_failed`]. A detached fork reports nothing (its seat was already
    /// reported, or answered).
    fn leg_ended(&mut self, now: Instant, id: CallId, leg: OutLeg, status: Option<u16>) {
        if leg.detached {
            return;
        }
        let seat = match leg.target {
            Target::Overflow(_) => {
                if let Some(c) = self.calls.get_mut(&id) {
                    c.phase = Phase::Queued;
                    self.emit(id, CallEventKind::OverflowFailed { status });
                    self.overflow_failed(now, id);
                }
                return;
            }
            Target::Seat(seat) => seat,
        };
        let outcome = ForkOutcome::of(leg.cancel_why, status);
        let key = (id, seat.clone());
        let best = match self.fork_outcomes.remove(&key) {
            Some(o) if o.rank() >= outcome.rank() => o,
            _ => outcome,
        };
        if self.forks_left(id, &seat) > 0 {
            self.fork_outcomes.insert(key, best);
            return;
        }
        if let Some(c) = self.calls.get_mut(&id) {
            if c.phase != Phase::Connected && c.legs.is_empty() {
                c.phase = Phase::Queued;
            }
            self.emit(
                id,
                CallEventKind::SeatFailed {
                    seat: seat.clone(),
                    status: best.status,
                    reason: best.reason,
                },
            );
        }
        self.acd.offer_failed(now, id, &seat, best.why);
    }

    /// The forks of `seat` for `call` that have not ended yet and will report (not
    /// detached): ringing, being CANCELled after the call ended, or being hung up.
    fn forks_left(&self, id: CallId, seat: &str) -> usize {
        let mine = |l: &OutLeg| !l.detached && matches!(&l.target, Target::Seat(s) if s == seat);
        let live = self
            .calls
            .get(&id)
            .map_or(0, |c| c.legs.iter().filter(|l| mine(l)).count());
        let withdrawn = self
            .withdrawn
            .values()
            .filter(|(c, l)| *c == id && mine(l))
            .count();
        let closing = self
            .closing
            .values()
            .filter(|c| matches!(c, Closing::Fork(c, l) if *c == id && mine(l)))
            .count();
        live + withdrawn + closing
    }

    /// Whether any seat fork of a call that has ended is still outstanding (being
    /// CANCELled or hung up): its seat stays reserved until it ends.
    fn forks_outstanding(&self, id: CallId) -> bool {
        let seat_fork = |l: &OutLeg| !l.detached && matches!(l.target, Target::Seat(_));
        self.withdrawn
            .values()
            .any(|(c, l)| *c == id && seat_fork(l))
            || self
                .closing
                .values()
                .any(|c| matches!(c, Closing::Fork(c, l) if *c == id && seat_fork(l)))
    }

    /// A final response to a leg-B INVITE withdrawn from its call (the call ended, or the
    /// fork was given up at the ring timeout): a 2xx gets ACK and BYE (RFC 3261 §15); any
    /// final response ends the fork.
    fn on_withdrawn_response(&mut self, now: Instant, key: &ClientTxKey, resp: &Response) {
        let Ok(cid) = resp.call_id() else {
            return;
        };
        let is_final_for_invite = resp.status >= 200
            && self
                .withdrawn
                .get(cid)
                .is_some_and(|(_, leg)| &leg.tx == key);
        if !is_final_for_invite {
            return;
        }
        let Some((id, mut leg)) = self.withdrawn.remove(cid) else {
            return;
        };
        if resp.class() != 2 {
            // Withdrawn by vigie: whatever the final status, the offer was not answered.
            self.leg_ended(now, id, leg, Some(487));
            return;
        }
        leg.answered = true;
        leg.dialog.remote_tag = resp
            .header_to()
            .ok()
            .and_then(|t| t.tag().map(str::to_owned));
        if let Some(c) = resp.contacts().ok().and_then(|c| c.into_iter().next()) {
            leg.dialog.remote_target = c.uri;
        }
        let ack = leg
            .dialog
            .ack(leg.invite_cseq, &self.local, &self.user_agent);
        self.txn
            .send_stateless(leg.dialog.peer, Message::Request(ack));
        // The seat is free for new offers once its BYE is answered.
        self.bye_fork(now, id, leg);
    }

    /// A BYE vigie sent on leg B got its final response or timed out.
    fn closed(&mut self, now: Instant, closing: Closing) {
        match closing {
            Closing::Ended(id) => self.acd.call_ended(now, id),
            Closing::Fork(id, leg) => self.leg_ended(now, id, *leg, Some(487)),
        }
    }

    fn on_stray_2xx(&mut self, from: Peer, resp: &Response) {
        if self.callback_stray_2xx(resp) {
            return;
        }
        // A retransmitted 2xx: our ACK was lost; send it again (RFC 3261 §13.2.2.4).
        let Ok(cid) = resp.call_id() else {
            return;
        };
        let leg = self
            .calls
            .values()
            .flat_map(|c| c.legs.iter())
            .chain(self.withdrawn.values().map(|(_, l)| l))
            .chain(self.closing.values().filter_map(|c| match c {
                Closing::Fork(_, l) => Some(&**l),
                Closing::Ended(_) => None,
            }))
            .find(|l| l.answered && l.dialog.call_id == cid);
        if let Some(b) = leg {
            let ack = b.dialog.ack(b.invite_cseq, &self.local, &self.user_agent);
            self.txn.send_stateless(from, Message::Request(ack));
        }
    }

    /// A client transaction timed out (Timer B/F, RFC 3261 §17.1) or hit a transport
    /// error: that fork alone ends; a BYE's timeout closes its leg.
    fn on_client_timeout(&mut self, now: Instant, key: &ClientTxKey) {
        self.callback_client_timeout(now, key);
        let found = self.calls.iter().find_map(|(id, c)| {
            c.legs
                .iter()
                .any(|b| &b.tx == key && !b.answered)
                .then_some(*id)
        });
        if let Some(id) = found {
            self.on_b_failure(now, id, key, None);
        }
        if let Some(closing) = self.closing.remove(key) {
            self.closed(now, closing);
        }
        let timed_out: Vec<String> = self
            .withdrawn
            .iter()
            .filter(|(_, (_, leg))| &leg.tx == key)
            .map(|(cid, _)| cid.clone())
            .collect();
        for cid in timed_out {
            if let Some((id, leg)) = self.withdrawn.remove(&cid) {
                self.leg_ended(now, id, leg, None);
            }
        }
    }

    fn on_no_ack(&mut self, now: Instant, key: &ServerTxKey) {
        if let Some(id) = self.by_invite_tx.get(key).copied()
            && self
                .calls
                .get(&id)
                .is_some_and(|c| c.phase == Phase::Connected || c.answered_early)
        {
            self.hang_up(now, id, Side::A, EndCause::NoAck);
        }
    }

    // ---- tearing down -----------------------------------------------------------------

    /// CANCELs the call's forks that have not answered (all, or only `seat`'s), once
    /// each (RFC 3261 §9.1; held by the transaction layer until the fork's first
    /// provisional response). Forks CANCELled because another fork answered carry
    /// [`REASON_COMPLETED_ELSEWHERE`] (RFC 3326 §2).
    fn cancel_forks(&mut self, now: Instant, id: CallId, seat: Option<&str>, why: CancelWhy) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let mut keys = Vec::new();
        for leg in call.legs.iter_mut() {
            if leg.answered || leg.cancelling {
                continue;
            }
            if let Some(seat) = seat
                && !matches!(&leg.target, Target::Seat(s) if s == seat)
            {
                continue;
            }
            leg.cancelling = true;
            leg.cancel_why = Some(why);
            keys.push(leg.tx.clone());
        }
        let reason = (why == CancelWhy::Elsewhere).then_some(REASON_COMPLETED_ELSEWHERE);
        for key in keys {
            if let Err(e) = self.txn.cancel_with_reason(now, &key, reason) {
                tracing::debug!(call = %id, error = %e, "CANCEL not sent");
            }
        }
    }

    /// The ACD's ring timeout for `seat`: CANCEL all its forks. Forks that sent no
    /// provisional response cannot be CANCELled yet (RFC 3261 §9.1) and might never
    /// answer before Timer B (32 s): they are given up now (detached, kept aside so a late
    /// 2xx still gets ACK and BYE). When none of the seat's forks rang, the offer fails at
    /// once (the call moves on to the next seat); otherwise when the ringing ones end.
    fn seat_timed_out(&mut self, now: Instant, id: CallId, seat: &str) {
        self.cancel_forks(now, id, Some(seat), CancelWhy::Timeout);
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let mut given_up = Vec::new();
        let mut i = 0;
        while let Some(l) = call.legs.get(i) {
            if !l.ringing && !l.answered && matches!(&l.target, Target::Seat(s) if s == seat) {
                let mut l = call.legs.remove(i);
                l.detached = true;
                given_up.push(l);
            } else {
                i += 1;
            }
        }
        if given_up.is_empty() {
            return;
        }
        if call.phase != Phase::Connected && call.legs.is_empty() {
            call.phase = Phase::Queued;
        }
        for l in given_up {
            self.by_sip_call_id.remove(&l.dialog.call_id);
            self.withdrawn.insert(l.dialog.call_id.clone(), (id, l));
        }
        if self.forks_left(id, seat) > 0 {
            return;
        }
        self.fork_outcomes.remove(&(id, seat.to_owned()));
        self.emit(
            id,
            CallEventKind::SeatFailed {
                seat: seat.to_owned(),
                status: None,
                reason: "no_answer",
            },
        );
        self.acd.offer_failed(now, id, seat, OfferFailure::NoAnswer);
    }

    /// The overflow target's timeout passed: CANCEL it. A target that sent no provisional
    /// response is given up now (kept aside so a late 2xx still gets ACK and BYE) and the
    /// next target is tried.
    fn overflow_timed_out(&mut self, now: Instant, id: CallId) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let mut keys = Vec::new();
        for l in call.legs.iter_mut() {
            if matches!(l.target, Target::Overflow(_)) && !l.answered && !l.cancelling {
                l.cancelling = true;
                l.cancel_why = Some(CancelWhy::Timeout);
                keys.push(l.tx.clone());
            }
        }
        for key in &keys {
            if let Err(e) = self.txn.cancel(now, key) {
                tracing::debug!(call = %id, error = %e, "CANCEL not sent");
            }
        }
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(i) = call
            .legs
            .iter()
            .position(|l| matches!(l.target, Target::Overflow(_)) && !l.ringing && !l.answered)
        else {
            return;
        };
        let mut b = call.legs.remove(i);
        call.phase = Phase::Queued;
        b.detached = true;
        self.by_sip_call_id.remove(&b.dialog.call_id);
        self.withdrawn.insert(b.dialog.call_id.clone(), (id, b));
        self.emit(id, CallEventKind::OverflowFailed { status: None });
        self.overflow_failed(now, id);
    }

    /// BYE on the bridged leg B; returns its client transaction when sent.
    fn bye_b(&mut self, now: Instant, id: CallId) -> Option<ClientTxKey> {
        let b = self
            .calls
            .get_mut(&id)
            .and_then(|c| c.legs.iter_mut().find(|l| l.answered))?;
        let bye = b.dialog.request(Method::Bye, &self.local, &self.user_agent);
        let peer = b.dialog.peer;
        match self.txn.send_request(now, peer, bye) {
            Ok(key) => Some(key),
            Err(e) => {
                tracing::error!(call = %id, error = %e, "BYE on leg B not sent");
                None
            }
        }
    }

    fn bye_a(&mut self, now: Instant, id: CallId) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let bye = call.a.request(Method::Bye, &self.local, &self.user_agent);
        let peer = call.a.peer;
        if let Err(e) = self.txn.send_request(now, peer, bye) {
            tracing::error!(call = %id, error = %e, "BYE to the caller not sent");
        }
    }

    /// One side hung up an answered call: BYE the other, free the seat, end the call.
    fn hang_up(&mut self, now: Instant, id: CallId, from: Side, cause: EndCause) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if call.phase != Phase::Connected {
            // BYE in the early dialog: the caller gave up like with CANCEL.
            self.abandon(now, id);
            return;
        }
        let seat_bye = match from {
            Side::A => self.bye_b(now, id),
            Side::B => {
                self.bye_a(now, id);
                None
            }
        };
        if cause == EndCause::NoAck {
            // RFC 3261 §13.3.1.4: the dialog is confirmed but the session ends with BYE.
            self.bye_a(now, id);
        }
        self.record_handle_time(now, id);
        // The seat leaves the call (wrap-up, then new offers) once our BYE is answered.
        match seat_bye {
            Some(key) => {
                self.closing.insert(key, Closing::Ended(id));
            }
            None => self.acd.call_ended(now, id),
        }
        self.emit(id, CallEventKind::Ended { cause });
        self.finish(id);
    }

    /// An answered call of a queue ends: its handle time (talk plus the queue's wrap-up)
    /// feeds the queue's expected-wait estimate.
    fn record_handle_time(&mut self, now: Instant, id: CallId) {
        let Some(c) = self.calls.get(&id) else {
            return;
        };
        let Some(at) = c.answered_at else {
            return;
        };
        let wrap_up = self
            .acd
            .queue(&c.queue)
            .map(|q| q.wrap_up)
            .unwrap_or_default();
        self.estimators
            .entry(c.queue.clone())
            .or_default()
            .record_handle_time(now.saturating_duration_since(at) + wrap_up);
    }

    fn finish(&mut self, id: CallId) {
        if let Some(call) = self.calls.remove(&id) {
            self.timers.remove(id, call.deadline, call.next_announce);
            self.by_invite_tx.remove(&call.invite_tx);
            self.by_sip_call_id.remove(&call.a.call_id);
            for b in call.legs {
                self.by_sip_call_id.remove(&b.dialog.call_id);
                if b.cancelling && !b.answered {
                    self.withdrawn.insert(b.dialog.call_id.clone(), (id, b));
                }
            }
        }
        self.outputs
            .push_back(Output::Media(MediaCommand::Release { call: id }));
    }

    fn seat_change(&mut self, now: Instant, change: SeatChange) {
        let (seat, online) = match change {
            SeatChange::Online { seat } => (seat, true),
            SeatChange::Offline { seat } => (seat, false),
            #[allow(unreachable_patterns)]
            _ => return,
        };
        if online {
            self.acd.seat_online(now, &seat);
        } else {
            self.acd.seat_offline(now, &seat);
        }
        self.outputs.push_back(Output::Seat { seat, online });
    }
}

// ---- qualify (OPTIONS keep-alive) ---------------------------------------------------------

impl Switch {
    /// Brings the qualifier up to date with the registrar's bindings, sends the OPTIONS
    /// probes due at `now` (RFC 3261 §11, non-INVITE client transactions §17.1.2) and
    /// tells the ACD about seats whose reachability changed.
    fn qualify_tick(&mut self, now: Instant) {
        // Perf (issue 8): only the seats whose bindings changed are re-read (a pass over
        // every binding per REGISTER was O(seats)); drained even with qualify off.
        let changed = self.registrar.take_changed_seats();
        if self.qualify.interval().is_none() {
            return;
        }
        let mut changes = Vec::new();
        for seat in changed {
            let targets: Vec<qualify::QualifyTarget> = self
                .registrar
                .lookup(&seat)
                .into_iter()
                .filter_map(|b| {
                    let peer = seat_peer(&b)?;
                    Some(qualify::QualifyTarget {
                        seat: seat.clone(),
                        contact: b.contact,
                        peer,
                        updated: b.updated,
                    })
                })
                .collect();
            changes.extend(self.qualify.sync_seat(now, &self.local, &seat, targets));
        }
        for p in self.qualify.due(now, &self.local, &self.user_agent) {
            match self.txn.send_request(now, p.peer, p.request) {
                Ok(tx) => self.qualify.sent(&p.seat, &p.contact, tx),
                Err(e) => {
                    tracing::warn!(seat = %p.seat, error = %e, "qualify OPTIONS not sent")
                }
            }
        }
        for c in changes {
            self.reachability(now, c);
        }
    }

    /// Takes the transaction events of qualify probes; gives back every other event.
    fn qualify_event(&mut self, now: Instant, ev: TxEvent) -> Option<TxEvent> {
        let change = match &ev {
            TxEvent::Response { key, response } if self.qualify.owns(key) => {
                if response.status < 200 {
                    return None;
                }
                self.qualify.on_final(key)
            }
            TxEvent::Timeout { key } | TxEvent::TransportError { key }
                if self.qualify.owns(key) =>
            {
                self.qualify.on_timeout(key)
            }
            _ => return Some(ev),
        };
        if let Some(c) = change {
            self.reachability(now, c);
        }
        None
    }

    fn reachability(&mut self, now: Instant, c: qualify::Reachability) {
        if c.reachable {
            tracing::info!(seat = %c.seat, "qualify: seat answers OPTIONS again: reachable");
        } else {
            tracing::warn!(seat = %c.seat, "qualify: no contact of the seat answers OPTIONS: unreachable");
        }
        self.acd.set_reachable(now, &c.seat, c.reachable);
    }
}

/// Where to send requests for a Contact: its host and port when it is an IP literal
/// over UDP; the registration's own connection when the seat registered over TCP; the
/// REGISTER's source when the Contact's host is a name (no DNS here). `None` for an
/// overflow URI with a host name.
/// Where an offer to a registered seat goes. A seat whose REGISTER asked for `rport`
/// (RFC 3581) and whose UDP Contact is not where its REGISTER came from is behind NAT
/// (its Contact holds a private address): it is reached at the REGISTER's source, the
/// pinhole its NAT keeps open, as Asterisk's `force_rport`/`comedia` does. Otherwise the
/// Contact decides ([`contact_peer`]).
fn seat_peer(binding: &crate::sip::registrar::Binding) -> Option<Peer> {
    let contact = contact_peer(&binding.contact, Some(binding.source))?;
    if binding.rport
        && binding.source.kind == TransportKind::Udp
        && contact.kind == TransportKind::Udp
        && contact.addr != binding.source.addr
    {
        return Some(binding.source);
    }
    Some(contact)
}

fn contact_peer(contact: &Uri, registered_over: Option<Peer>) -> Option<Peer> {
    if let Some(p) = registered_over
        && p.kind == TransportKind::Tcp
    {
        return Some(p);
    }
    let tcp = contact
        .param("transport")
        .flatten()
        .is_some_and(|t| t.eq_ignore_ascii_case("tcp"));
    let ip = match &contact.host {
        Host::V4(v4) => IpAddr::V4(*v4),
        Host::V6(v6) => IpAddr::V6(*v6),
        // vigie does no DNS: a host name is reached where its REGISTER came from.
        _ => return registered_over,
    };
    let port = contact.port.unwrap_or(5060);
    Some(Peer {
        kind: if tcp {
            TransportKind::Tcp
        } else {
            TransportKind::Udp
        },
        addr: SocketAddr::new(ip, port),
    })
}

/// Whether a request's body holds an SDP offer (plain, or a multipart with an SDP part).
fn has_sdp_offer(req: &Request) -> bool {
    let ct = req.content_type().unwrap_or("").to_ascii_lowercase();
    if ct.starts_with("application/sdp") {
        !req.body.is_empty()
    } else if ct.starts_with("multipart/") {
        !split_body(req).0.is_empty()
    } else {
        false
    }
}

/// The SDP offer and the locations of an INVITE body (plain SDP or multipart/mixed).
fn split_body(req: &Request) -> (Bytes, Result<Vec<location::Location>, String>) {
    let ct = req.content_type().unwrap_or("").to_ascii_lowercase();
    if ct.starts_with("application/sdp") {
        return (req.body.clone(), Ok(Vec::new()));
    }
    if !ct.starts_with("multipart/") {
        return (req.body.clone(), Ok(Vec::new()));
    }
    match location::split_multipart(req.content_type().unwrap_or(""), &req.body) {
        Ok(parts) => {
            let sdp = parts
                .iter()
                .find(|p| {
                    p.content_type
                        .to_ascii_lowercase()
                        .starts_with("application/sdp")
                })
                .map(|p| p.body.clone())
                .unwrap_or_default();
            let mut locs = Vec::new();
            let mut err = None;
            for p in parts
                .iter()
                .filter(|p| p.content_type.to_ascii_lowercase().contains("pidf+xml"))
            {
                match location::parse_pidf(&p.body) {
                    Ok(l) => locs.extend(l),
                    Err(e) => err = Some(e.to_string()),
                }
            }
            match err {
                Some(e) if locs.is_empty() => (sdp, Err(e)),
                _ => (sdp, Ok(locs)),
            }
        }
        Err(e) => (Bytes::new(), Err(e.to_string())),
    }
}

/// The caller's number from P-Asserted-Identity (RFC 3325 §9.1), the network-asserted
/// identity a trunk adds: the first `sip:`/`sips:` user part or `tel:` number.
fn asserted_user(req: &Request) -> Option<String> {
    let name = HeaderName::Other("P-Asserted-Identity".into());
    req.headers
        .get_all(&name)
        .flat_map(|v| v.split(','))
        .filter_map(|v| {
            let v = v.trim();
            let inner = match (v.find('<'), v.rfind('>')) {
                (Some(a), Some(b)) if a < b => v.get(a + 1..b)?,
                _ => v,
            };
            Uri::parse(inner).ok()
        })
        .find_map(|u| identity_user(&u))
}

/// The number of an identity URI: a `sip:` user part (escapes undone) or a `tel:`
/// number without its parameters (RFC 3966 §3); `None` when there is none.
fn identity_user(uri: &Uri) -> Option<String> {
    match (&uri.scheme, &uri.host) {
        (Scheme::Tel, Host::Opaque(text)) => {
            let number = text.split(';').next().unwrap_or_default();
            (!number.is_empty()).then(|| number.to_owned())
        }
        _ => uri.user_unescaped().filter(|u| !u.is_empty()),
    }
}

/// The reason phrase of a final status a `hangup` step sends (RFC 3261 §21).
fn reason_phrase(status: u16) -> &'static str {
    match status {
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        480 => "Temporarily Unavailable",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        500 => "Server Internal Error",
        503 => "Service Unavailable",
        600 => "Busy Everywhere",
        603 => "Decline",
        _ => "Call Released",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn best(forks: &[(Option<CancelWhy>, Option<u16>)]) -> ForkOutcome {
        forks
            .iter()
            .map(|(c, s)| ForkOutcome::of(*c, *s))
            .fold(None::<ForkOutcome>, |acc, o| match acc {
                Some(a) if a.rank() >= o.rank() => Some(a),
                _ => Some(o),
            })
            .unwrap()
    }

    #[test]
    fn fork_outcome_labels_follow_the_final_status() {
        let of = |s| ForkOutcome::of(None, s);
        assert_eq!(of(Some(486)).why, OfferFailure::Declined);
        assert_eq!(of(Some(486)).reason, "busy");
        assert_eq!(of(Some(603)).reason, "declined");
        assert_eq!(of(Some(480)).reason, "failed");
        assert_eq!(of(Some(487)).why, OfferFailure::NoAnswer);
        assert_eq!(of(Some(408)).why, OfferFailure::Unreachable);
        assert_eq!(of(None).why, OfferFailure::Unreachable);
        let w = ForkOutcome::of(Some(CancelWhy::Elsewhere), Some(487));
        assert_eq!(
            (w.why, w.reason, w.status),
            (OfferFailure::Withdrawn, "withdrawn", Some(487))
        );
        // A ring-timeout CANCEL is reported by the fork's status (487 = no answer).
        assert_eq!(
            ForkOutcome::of(Some(CancelWhy::Timeout), Some(487)).why,
            OfferFailure::NoAnswer
        );
    }

    #[test]
    fn the_best_fork_outcome_wins_in_any_order() {
        let busy = (None, Some(486));
        let timeout = (None, None);
        let rang_out = (Some(CancelWhy::Timeout), Some(487));
        for forks in [
            [busy, timeout, rang_out],
            [timeout, rang_out, busy],
            [rang_out, busy, timeout],
        ] {
            let b = best(&forks);
            assert_eq!(
                (b.why, b.status, b.reason),
                (OfferFailure::Declined, Some(486), "busy")
            );
        }
        let b = best(&[timeout, rang_out]);
        assert_eq!(b.why, OfferFailure::NoAnswer);
        // The caller left while the seat rang: withdrawn, never a no-answer of the seat.
        let b = best(&[timeout, (Some(CancelWhy::Caller), Some(487))]);
        assert_eq!((b.why, b.reason), (OfferFailure::Withdrawn, "caller_left"));
        let b = best(&[busy, (Some(CancelWhy::Elsewhere), Some(487))]);
        assert_eq!(b.why, OfferFailure::Withdrawn);
    }
}
