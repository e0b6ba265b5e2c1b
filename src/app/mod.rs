//! Task wiring (DESIGN §2, the IO edge): sockets, the journal writer, the media relay and
//! the HTTP server around one switch task that owns the sans-IO [`Switch`].

pub mod agents;
pub mod aml;
mod callbacks;
pub mod georef;
pub mod http;
pub mod outbox;
mod priority;
mod prompts;
mod recorder;
pub mod transport;
pub mod wallboard;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, watch};

use crate::acd::{CallId, QueueSnapshot};
use crate::config::Config;
use crate::dialplan::{self, CompiledPlan};
use crate::media::{self, MediaError, MediaRelay, RelayConfig, RelayMetrics, RelaySession};
use crate::metrics::{
    Metrics, QueueLabels, ReloadLabels, ReloadResult, SeatClock, SeatLabels, SeatState,
    StatusClass, StatusClassLabels,
};
use crate::sip::auth::Credential;
use crate::sip::message::Message;
use crate::sip::registrar::{Registrar, RegistrarConfig};
use crate::sip::transport::{Peer, TransportKind};
use crate::store::{Journal, JournalConfig, Store, StoreError};
use crate::switch::dialog::LocalAddr;
use crate::switch::{MediaCommand, MediaPorts, Output, Side, Switch};

use prompts::Prompts;
use recorder::Recorder;

/// What the edge tasks tell the switch task.
#[derive(Debug)]
pub enum Input {
    /// A callback task was claimed or closed over the API: it leaves the ACD.
    CallbackWithdrawn {
        task: crate::acd::callback::CallbackId,
    },
    /// A parsed SIP message.
    Sip {
        peer: Peer,
        msg: Message,
    },
    /// Bytes to send as they are (a stateless 400 over TCP).
    Raw {
        peer: Peer,
        bytes: Bytes,
    },
    /// A TCP connection is up; `writer` sends on it.
    TcpOpened {
        addr: SocketAddr,
        writer: mpsc::Sender<Bytes>,
    },
    TcpClosed {
        addr: SocketAddr,
    },
    /// A seat command from the HTTP API; answered with the seat after the change.
    Agent {
        seat: String,
        cmd: crate::acd::Command,
        cause: crate::acd::Cause,
        reply: tokio::sync::oneshot::Sender<Result<agents::AgentView, crate::acd::CommandError>>,
    },
    /// Locations that arrived off the call path (a dereferenced `Geolocation` URI): appended
    /// to the call as a location update.
    LocationUpdate {
        call: CallId,
        locations: Vec<crate::location::Location>,
        /// Journal source label (`geolocation-uri`).
        source: &'static str,
    },
    /// An AML report to correlate with a call (from the AML endpoint).
    Aml(aml::AmlSubmission),
    /// The WAV prompts of a `Play` or `PlaySequence` command were read (or could not be).
    PromptLoaded {
        call: CallId,
        side: media::Side,
        /// The names asked for (for logs).
        name: String,
        repeat: bool,
        /// The play request's number ([`Prompts::next_epoch`]).
        epoch: u64,
        /// Parts newly read, by cache key, to keep.
        loaded: Vec<(String, Arc<media::Prompt>)>,
        /// The parts joined into one prompt.
        prompt: Result<Arc<media::Prompt>, String>,
    },
    /// A prompt played to its end, or could not be played.
    PromptDone {
        call: CallId,
    },
    /// A caller-priority change from the HTTP API; answered once the ACD re-ordered the
    /// call.
    Priority {
        call: CallId,
        priority: u8,
        reply: tokio::sync::oneshot::Sender<Result<(), crate::switch::PriorityError>>,
    },
}

/// Why vigie could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    #[error("cannot bind {what} {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot open the call journal: {0}")]
    Store(#[from] StoreError),
    #[error(transparent)]
    Aml(#[from] aml::AmlServerError),
    #[error("cannot build the HTTP client: {0}")]
    HttpClient(#[source] reqwest::Error),
    /// The dialplan does not compile; carries the rendered diagnostics
    /// (`file:line:col`, caret, hint).
    #[error("the dialplan is refused:\n{0}")]
    Dialplan(String),
    /// The switch thread or its runtime could not be created.
    #[error("cannot start the switch thread: {0}")]
    Runtime(#[source] std::io::Error),
}

/// The figures the HTTP API shows, refreshed by the switch task.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Status {
    pub queues: Vec<QueueStatus>,
    pub seats: Vec<SeatStatus>,
    pub active_calls: usize,
    /// Every seat's status and state (the agents API's table).
    pub agents: Vec<agents::AgentView>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct QueueStatus {
    pub name: String,
    pub waiting: usize,
    /// Longest current wait, seconds.
    pub longest_wait_seconds: f64,
    pub seats: std::collections::BTreeMap<&'static str, usize>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct SeatStatus {
    pub id: String,
    pub state: &'static str,
}

/// Addresses the running node actually bound (port 0 in the config picks a free port).
#[derive(Debug, Clone)]
pub struct Bound {
    pub udp: Vec<SocketAddr>,
    pub tcp: Vec<SocketAddr>,
    pub http: SocketAddr,
    /// The AML endpoint, when configured.
    pub aml: Option<SocketAddr>,
}

/// Starts every task and runs until SIGINT/SIGTERM, then flushes the journal.
///
/// # Errors
/// [`StartError`] when a listener cannot bind or the journal cannot open.
pub async fn run(config: Config) -> Result<(), StartError> {
    let (bound, shutdown) = start(config).await?;
    tracing::info!(
        sip_udp = ?bound.udp,
        sip_tcp = ?bound.tcp,
        http = %bound.http,
        "vigie is up"
    );
    wait_for_signal().await;
    tracing::info!("stopping: flushing the journal");
    shutdown.stop().await;
    Ok(())
}

/// A handle that stops the switch task and flushes the journal.
pub struct Shutdown {
    stop: watch::Sender<bool>,
    done: tokio::task::JoinHandle<()>,
}

impl Shutdown {
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.done.await;
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Binds everything and spawns the tasks; returns the bound addresses.
pub async fn start(config: Config) -> Result<(Bound, Shutdown), StartError> {
    let mut metrics = Metrics::new(env!("CARGO_PKG_VERSION"));
    let relay_metrics = RelayMetrics::default();
    relay_metrics.register(metrics.registry_mut());
    metrics
        .trunk_capacity_calls
        .set(i64::from(config.trunk.capacity));

    let data_dir = config.store.data_dir.clone();
    let store = match &config.store.url {
        Some(url) => Store::open_url(url, crate::store::SqliteOptions::default()).await?,
        None => Store::open_sqlite(data_dir.join("vigie.sqlite")).await?,
    };
    let mut jcfg = JournalConfig::new(config.node_id.clone(), data_dir.join("journal-spill.jsonl"));
    jcfg.capacity = config.store.journal_capacity;
    let (journal, journal_task) = Journal::spawn(store.clone(), jcfg, metrics.journal.clone());
    let metrics = Arc::new(metrics);

    // Bound here (errors reach the caller) but registered with the switch thread's own
    // runtime, which reads them: see `spawn_switch_thread`.
    let mut udp = Vec::new();
    for addr in &config.sip.udp {
        let s = std::net::UdpSocket::bind(addr)
            .and_then(|s| s.set_nonblocking(true).map(|()| s))
            .map_err(|source| StartError::Bind {
                what: "SIP UDP",
                addr: *addr,
                source,
            })?;
        transport::size_buffers(&s, *addr, config.sip.udp_buffer_kib);
        udp.push(s);
    }
    let mut tcp = Vec::new();
    for addr in &config.sip.tcp {
        let l = TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind {
                what: "SIP TCP",
                addr: *addr,
                source,
            })?;
        tcp.push(l);
    }
    let http_listener = TcpListener::bind(config.http.listen)
        .await
        .map_err(|source| StartError::Bind {
            what: "HTTP",
            addr: config.http.listen,
            source,
        })?;
    let bound = Bound {
        udp: udp.iter().filter_map(|s| s.local_addr().ok()).collect(),
        tcp: tcp.iter().filter_map(|l| l.local_addr().ok()).collect(),
        http: http_listener.local_addr().unwrap_or(config.http.listen),
        aml: None,
    };

    let local = LocalAddr {
        host: config.advertised_sip_host(),
        udp_port: bound.udp.first().map(|a| a.port()).unwrap_or(5060),
        tcp_port: bound.tcp.first().map(|a| a.port()).unwrap_or(5060),
    };
    let registrar = Registrar::new(
        RegistrarConfig {
            realm: config.registrar.realm.clone(),
            min_expires: config.registrar.min_expires_s,
            max_expires: config.registrar.max_expires_s,
            default_expires: config.registrar.default_expires_s,
            nonce_lifetime: 300,
            lockout_failures: config.registrar.lockout_failures,
            lockout_window: config.registrar.lockout_window_s,
            lockout_duration: config.registrar.lockout_s,
            algorithms: config
                .registrar
                .digest_algorithms
                .iter()
                .filter_map(|a| crate::sip::auth::Algorithm::from_token(a))
                .collect(),
        },
        credentials(&config),
        Instant::now(),
        rand::random(),
    );
    let queue_names: Vec<String> = config.queues.iter().map(|q| q.name.clone()).collect();
    let (plan, watched) = match &config.dialplan.file {
        Some(path) => dialplan::load_watched(path, &queue_names),
        None => (dialplan::load_embedded(&queue_names), Vec::new()),
    };
    let plan = Arc::new(plan.map_err(|r| StartError::Dialplan(r.render(false)))?);
    for result in [ReloadResult::Ok, ReloadResult::Error] {
        drop(
            metrics
                .dialplan_reloads
                .get_or_create(&ReloadLabels { result }),
        );
    }
    let (plans_tx, plans_rx) = mpsc::channel::<Arc<CompiledPlan>>(4);
    tokio::spawn(reload_task(
        config.dialplan.file.clone(),
        watched,
        queue_names,
        plans_tx,
        Arc::clone(&metrics),
    ));
    let switch = Switch::new(&config, local, registrar, plan);
    let relay = MediaRelay::with_engine(
        RelayConfig {
            bind: config.media.bind,
            port_min: config.media.port_min,
            port_max: config.media.port_max,
        },
        relay_metrics,
        media::EngineConfig::new(config.media.relay_threads, config.media.relay_tick_us),
    );

    let (inputs, inputs_rx) = mpsc::channel::<Input>(8192);
    for l in tcp {
        tokio::spawn(transport::tcp_acceptor(
            l,
            inputs.clone(),
            Arc::clone(&metrics),
        ));
    }
    let (status_tx, status_rx) = watch::channel(Status::default());
    let (agent_events, _) = tokio::sync::broadcast::channel(1024);
    let handoff_events = crate::dispatch::Publisher::channel();
    let (wallboard_tx, wallboard_rx) = wallboard::channel();
    let callbacks = callbacks::CallbackDesk::new(
        std::time::Duration::from_secs(config.callbacks.match_window_s),
        Arc::clone(&metrics),
        config.queues.iter().map(|q| q.name.clone()),
        journal.clone(),
    )
    .with_inputs(inputs.clone());
    // Records spilled by the previous run reach the database first, then the open
    // callback tasks are read back.
    let _ = journal.flush().await;
    callbacks.load(&store).await;
    let (stop_tx, stop_rx) = watch::channel(false);
    // One TLS provider for the process (rustls with ring: no C toolchain beyond cc).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http_client = reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_millis(
            config.dispatch.timeout_ms.max(100),
        ))
        .user_agent(config.sip.user_agent.clone())
        .build()
        .map_err(StartError::HttpClient)?;
    let outbox_task = config.dispatch.webhook_url.clone().map(|url| {
        tokio::spawn(outbox::run(
            store.clone(),
            http_client.clone(),
            outbox::WebhookConfig {
                url,
                timeout: std::time::Duration::from_millis(config.dispatch.timeout_ms.max(1)),
                retry_min: std::time::Duration::from_millis(config.dispatch.retry_min_ms.max(1)),
                retry_max: std::time::Duration::from_millis(config.dispatch.retry_max_ms.max(1)),
                poll: std::time::Duration::from_millis(200),
            },
            stop_rx.clone(),
        ))
    });
    let mut bound = bound;
    if let Some(listen) = config.aml.listen {
        bound.aml = Some(aml::spawn(&config.aml, listen, inputs.clone()).await?);
    }
    let mut recorder = Recorder::new(journal.clone())
        .with_service_targets(
            &metrics,
            config.queues.iter().map(|q| {
                let threshold = std::time::Duration::from_secs(q.service_level_s);
                let targets = q
                    .service_level_targets
                    .iter()
                    .map(|t| (std::time::Duration::from_secs(t.within_s), t.ratio))
                    .collect();
                (q.name.clone(), threshold, targets)
            }),
            Instant::now(),
        )
        .with_events(handoff_events.clone());
    // The service-level windows continue across a restart: rebuilt from the journal's
    // last hour (issue 5). A database that cannot be read starts them empty.
    let wall = chrono::Utc::now();
    match store
        .service_level_calls(wall - chrono::Duration::hours(1))
        .await
    {
        Ok(rows) => {
            let n = recorder.restore_service_levels(&metrics, &rows, Instant::now(), wall);
            tracing::info!(
                calls = n,
                "service level: last hour restored from the journal"
            );
        }
        Err(error) => {
            tracing::error!(%error, "service level: cannot read the journal; windows start empty");
        }
    }
    // The API answers once every queue's series exist (a scrape right after start sees
    // the service level of the restored windows, not an empty family).
    tokio::spawn(http::serve(
        http_listener,
        http::HttpState {
            metrics: Arc::clone(&metrics),
            status: status_rx.clone(),
            store: store.clone(),
            agents: agents::AgentsApi {
                inputs: inputs.clone(),
                status: status_rx,
                events: agent_events.clone(),
            },
            events: handoff_events.clone(),
            wallboard: wallboard_rx,
            callbacks: callbacks.clone(),
        },
    ));
    let board = wallboard::Board::new(
        config.queues.iter().map(|q| {
            (
                q.name.clone(),
                std::time::Duration::from_secs(q.service_level_s),
            )
        }),
        config.trunk.capacity,
        wallboard::CENTRE_ZONE,
    );
    let task = SwitchTask {
        switch,
        inputs_tx: inputs,
        udp: Vec::new(),
        deferred: Vec::new(),
        seats_dirty: true,
        dirty_seats: Vec::new(),
        seat_rows: HashMap::new(),
        rt: tokio::runtime::Handle::current(),
        tcp_writers: HashMap::new(),
        relay,
        sessions: HashMap::new(),
        metrics,
        recorder,
        callbacks,
        callback_max_attempts: config.callbacks.max_attempts,
        status: status_tx,
        agent_events,
        agent_ids: ulid::Generator::new(),
        agent_journal: crate::store::AgentJournal::new(journal.clone()),
        last_queues: String::new(),
        seen_responses: [0; 7],
        seen_retransmissions: 0,
        input_at: Instant::now(),
        offer_clock: HashMap::new(),
        http_client,
        georef_timeout: std::time::Duration::from_millis(config.dispatch.georef_timeout_ms.max(1)),
        georef_retries: config.dispatch.georef_retries,
        aml_after_end: chrono::Duration::seconds(
            i64::try_from(config.aml.match_after_end_s).unwrap_or(i64::MAX / 1000),
        ),
        board,
        wallboard: wallboard_tx,
        board_dirty: false,
        board_published: None,
        seat_clock: SeatClock::default(),
        changed_seats: Vec::new(),
        seen_reachable: HashMap::new(),
        break_reasons: config.features.pause_reasons.values().cloned().collect(),
        prompts: Prompts::new(
            config.media.prompts_dir.clone(),
            config.media.recordings_dir.clone(),
        ),
    };
    let switch_done = spawn_switch_thread(task, udp, inputs_rx, plans_rx, stop_rx)?;
    let done = tokio::spawn(async move {
        let _ = switch_done.await;
        let report = journal.shutdown().await;
        if report.spilled_pending > 0 {
            tracing::warn!(
                records = report.spilled_pending,
                "journal records remain in the spill file; they are replayed at next start"
            );
        }
        let _ = journal_task.await;
        if let Some(t) = outbox_task {
            let _ = t.await;
        }
        store.close().await;
    });
    Ok((
        bound,
        Shutdown {
            stop: stop_tx,
            done,
        },
    ))
}

/// Seat credentials, hashed (the plain password is dropped here).
fn credentials(config: &Config) -> Vec<Credential> {
    let realm = &config.registrar.realm;
    config
        .seats
        .iter()
        .filter_map(|s| match (&s.password, &s.ha1_md5) {
            (Some(p), _) => Some(Credential::from_password(&s.id, realm, p)),
            (None, Some(md5)) => Some(Credential {
                user: s.id.clone(),
                ha1_md5: md5.to_ascii_lowercase(),
                ha1_sha256: s
                    .ha1_sha256
                    .clone()
                    .unwrap_or_default()
                    .to_ascii_lowercase(),
            }),
            (None, None) => None,
        })
        .collect()
}

/// Runs the switch task on its own OS thread ("vigie-switch") with its own single-thread
/// runtime, which also reads the SIP UDP sockets: a datagram is received, parsed and
/// handled on that thread without a task hop, and the switch never waits behind relay,
/// journal or HTTP tasks on the shared workers. What the switch starts off its thread
/// (relay sessions, location fetches, TCP connections) runs on the shared runtime.
/// The returned receiver fires once the thread has stopped and closed its sockets.
fn spawn_switch_thread(
    mut task: SwitchTask,
    udp: Vec<std::net::UdpSocket>,
    inputs_rx: mpsc::Receiver<Input>,
    plans_rx: mpsc::Receiver<Arc<CompiledPlan>>,
    stop_rx: watch::Receiver<bool>,
) -> Result<tokio::sync::oneshot::Receiver<()>, StartError> {
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(StartError::Runtime)?;
    std::thread::Builder::new()
        .name("vigie-switch".into())
        .spawn(move || {
            rt.block_on(async move {
                for s in udp {
                    let addr = s.local_addr().ok();
                    match UdpSocket::from_std(s) {
                        Ok(s) => {
                            let s = Arc::new(s);
                            let v4 = addr.is_none_or(|a| a.is_ipv4());
                            task.udp.push((v4, Arc::clone(&s)));
                            tokio::spawn(transport::udp_receiver(
                                s,
                                task.inputs_tx.clone(),
                                Arc::clone(&task.metrics),
                            ));
                        }
                        Err(e) => tracing::error!(?addr, error = %e, "SIP UDP socket unusable"),
                    }
                }
                task.run(inputs_rx, plans_rx, stop_rx).await;
            });
            // The runtime (its UDP receivers and sockets) is gone before `done` fires, so a
            // restart can bind the same addresses.
            drop(rt);
            let _ = done_tx.send(());
        })
        .map_err(StartError::Runtime)?;
    Ok(done_rx)
}

struct SwitchTask {
    switch: Switch,
    inputs_tx: mpsc::Sender<Input>,
    /// SIP UDP sockets, each with whether it is IPv4 (chosen per destination family).
    udp: Vec<(bool, Arc<UdpSocket>)>,
    /// The seat tables of [`Status`] must be rebuilt whole (first publication, a seat the
    /// row index does not know).
    seats_dirty: bool,
    /// Seats changed since the last [`Self::publish_status`]: only their rows are redone.
    dirty_seats: Vec<crate::acd::SeatId>,
    /// Row of each seat in `Status::seats` and `Status::agents` (same order).
    seat_rows: HashMap<crate::acd::SeatId, usize>,
    /// Outputs whose bookkeeping waits for the round's SIP messages ([`Self::drain_outputs`]).
    /// (output, wall time it was taken from the switch): journal times are when the
    /// event happened, not when its bookkeeping ran.
    deferred: Vec<(Output, chrono::DateTime<chrono::Utc>)>,
    /// The shared runtime: what the switch spawns (relay sessions, fetches, TCP) runs
    /// there, not on the switch thread.
    rt: tokio::runtime::Handle,
    tcp_writers: HashMap<SocketAddr, mpsc::Sender<Bytes>>,
    relay: MediaRelay,
    sessions: HashMap<CallId, RelaySession>,
    metrics: Arc<Metrics>,
    recorder: Recorder,
    /// Abandoned-call callback tasks, fed with every call event.
    callbacks: callbacks::CallbackDesk,
    /// `[callbacks] max_attempts`.
    callback_max_attempts: u32,
    status: watch::Sender<Status>,
    /// Live seat and queue changes for the agents SSE stream.
    agent_events: tokio::sync::broadcast::Sender<(&'static str, String)>,
    /// Writer of `agent_events`.
    agent_journal: crate::store::AgentJournal,
    /// Ids of `agent_events` rows: monotonic ULIDs, so that two changes of one seat in the
    /// same millisecond (a phone's 180 and 200) keep their order (`ORDER BY id`).
    agent_ids: ulid::Generator,
    /// The queue figures last sent on the SSE stream (JSON), to send only changes.
    last_queues: String,
    seen_responses: [u64; 7],
    seen_retransmissions: u64,
    /// When the switch task took the input whose outputs are being drained.
    input_at: Instant,
    /// Calls received and not yet offered: when their INVITE was taken (for
    /// `vigie_offer_latency_seconds`).
    offer_clock: HashMap<CallId, Instant>,
    /// For locations by reference (RFC 6442).
    http_client: reqwest::Client,
    georef_timeout: std::time::Duration,
    georef_retries: u32,
    /// How long after a call's end an AML report still matches it.
    aml_after_end: chrono::Duration,
    /// The wallboard's day counts, fed with every call event.
    board: wallboard::Board,
    wallboard: wallboard::Publisher,
    /// A call event or a seat change since the last wallboard snapshot.
    board_dirty: bool,
    /// When the last wallboard snapshot was built: under load snapshots are built at most
    /// every [`WALLBOARD_MIN_INTERVAL`] (each costs a pass over every call and seat).
    board_published: Option<Instant>,
    /// When each seat entered its state (wrap-up seconds, seat gauges on change).
    seat_clock: SeatClock,
    /// Seats named by a seat event since the last [`SwitchTask::observe_seats`]: only
    /// they are looked at after each input (a pass over every seat runs with the status
    /// tick, every 250 ms).
    changed_seats: Vec<crate::acd::SeatId>,
    /// Each seat's reachability as last set in `vigie_seat_reachable`.
    seen_reachable: HashMap<crate::acd::SeatId, bool>,
    /// The configured break reason codes (`[features] pause_reasons`): the bounded
    /// `reason` label of `vigie_seats_on_break`.
    break_reasons: Vec<String>,
    prompts: Prompts,
}

/// What woke the switch task (a stack temporary: the size of `Input` costs nothing).
#[allow(clippy::large_enum_variant)]
enum Wake {
    Input(Option<Input>),
    Timer,
    Plan(Arc<CompiledPlan>),
    Tick,
}

impl SwitchTask {
    async fn run(
        mut self,
        mut inputs: mpsc::Receiver<Input>,
        mut plans: mpsc::Receiver<Arc<CompiledPlan>>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(250));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Open callback tasks loaded from the store wait for a seat.
        {
            let rt = self.rt.clone();
            let _shared = rt.enter();
            self.offer_callbacks();
            self.drain_outputs();
        }
        loop {
            let deadline = match (self.switch.poll_timeout(), self.wallboard_due()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d.into()).await,
                    None => std::future::pending().await,
                }
            };
            let wake = tokio::select! {
                input = inputs.recv() => Wake::Input(input),
                _ = sleep => Wake::Timer,
                Some(plan) = plans.recv() => Wake::Plan(plan),
                _ = tick.tick() => Wake::Tick,
                _ = stop.changed() => break,
            };
            // Tasks the handlers spawn go to the shared runtime.
            let rt = self.rt.clone();
            let _shared = rt.enter();
            match wake {
                Wake::Input(None) => break,
                Wake::Input(Some(input)) => {
                    self.handle_input(input);
                    // Take whatever else is already queued; outputs are drained after each
                    // input so the latency histograms know which input caused them.
                    for _ in 0..256 {
                        match inputs.try_recv() {
                            Ok(i) => {
                                self.drain_outputs();
                                self.handle_input(i);
                            }
                            Err(_) => break,
                        }
                    }
                }
                Wake::Timer => {
                    self.input_at = Instant::now();
                    self.switch.handle_timeout(self.input_at);
                    if self.wallboard_due().is_some_and(|due| due <= self.input_at) {
                        self.publish_wallboard(self.input_at, None);
                    }
                }
                Wake::Plan(plan) => {
                    // Calls in progress keep their own steps; new calls take this plan.
                    self.switch.set_plan(plan);
                    tracing::info!("dialplan reloaded");
                }
                Wake::Tick => self.publish_status(),
            }
            self.drain_outputs();
        }
    }

    fn handle_input(&mut self, input: Input) {
        let now = Instant::now();
        self.input_at = now;
        self.switch.set_wall_clock(now, chrono::Utc::now());
        match input {
            Input::Sip { peer, msg } => self.switch.handle_message(now, peer, msg),
            Input::Raw { peer, bytes } => self.send(peer, bytes),
            Input::TcpOpened { addr, writer } => {
                self.tcp_writers.insert(addr, writer);
            }
            Input::TcpClosed { addr } => {
                self.tcp_writers.remove(&addr);
            }
            Input::Agent {
                seat,
                cmd,
                cause,
                reply,
            } => {
                let r = self.switch.agent_command(now, &seat, cmd, cause);
                self.drain_outputs();
                self.publish_status();
                let view = r.and_then(|()| {
                    self.switch
                        .acd()
                        .seat(&seat)
                        .map(agents::AgentView::of)
                        .ok_or(crate::acd::CommandError::UnknownSeat(seat))
                });
                let _ = reply.send(view);
            }
            Input::Priority {
                call,
                priority,
                reply,
            } => {
                let r = self.switch.set_priority(now, call, priority);
                self.drain_outputs();
                self.publish_status();
                let _ = reply.send(r);
            }
            Input::LocationUpdate {
                call,
                locations,
                source,
            } => {
                self.recorder
                    .record_location_update(call, &locations, source, chrono::Utc::now());
            }
            Input::Aml(sub) => {
                let matched = self.recorder.record_aml(
                    &sub.report,
                    sub.sender.as_deref(),
                    &sub.raw,
                    chrono::Utc::now(),
                    self.aml_after_end,
                );
                let _ = sub.reply.send(matched);
            }
            Input::PromptLoaded {
                call,
                side,
                name,
                repeat,
                epoch,
                loaded,
                prompt,
            } => {
                for (key, p) in loaded {
                    self.prompts.keep(key, p);
                }
                if !self.prompts.is_current(call, epoch) {
                    // A newer prompt or a stop (the bridge) came while this one loaded.
                    tracing::debug!(%call, prompt = %name, "prompt loaded too late: not played");
                    return;
                }
                match prompt {
                    Ok(prompt) => match self.sessions.get(&call) {
                        Some(s) => {
                            prompts::play(s, call, side, prompt, repeat, self.inputs_tx.clone())
                        }
                        None => self.switch.handle_prompt_done(now, call),
                    },
                    Err(e) => {
                        tracing::warn!(%call, prompt = %name, error = %e, "prompt unusable; the call moves on");
                        self.switch.handle_prompt_done(now, call);
                    }
                }
            }
            Input::PromptDone { call } => self.switch.handle_prompt_done(now, call),
            Input::CallbackWithdrawn { task } => self.switch.callback_withdraw(now, task),
        }
    }

    /// Hands the switch every open, unclaimed callback task (it ignores those it already
    /// holds, and all of them unless `[callbacks] offer_to_seats`).
    fn offer_callbacks(&mut self) {
        if !self.switch.offers_callbacks() {
            return;
        }
        let now = Instant::now();
        for (task, number, queue, attempts) in self.callbacks.offerable() {
            self.switch
                .callback_open(now, task, &number, &queue, attempts);
        }
    }

    /// Carries out the switch's outputs: SIP messages and media commands at once, then the
    /// call and seat events of the same round (journal, hand-off documents, wallboard, SSE,
    /// callbacks), so that the bookkeeping of an INVITE's events never delays its offer to
    /// a seat. Events keep their order; what they cause (a callback offer) is drained in
    /// the next round.
    fn drain_outputs(&mut self) {
        let mut deferred = std::mem::take(&mut self.deferred);
        loop {
            while let Some(out) = self.switch.poll_output() {
                match out {
                    Output::Transmit(t) => {
                        let bytes = Bytes::from(t.message.to_bytes());
                        self.send(t.to, bytes);
                    }
                    Output::Media(cmd) => self.media(cmd),
                    other => deferred.push((other, chrono::Utc::now())),
                }
            }
            if deferred.is_empty() {
                break;
            }
            // Every message of this round is sent: the offer latency ends here.
            let sent_at = Instant::now();
            for (out, at) in deferred.drain(..) {
                self.bookkeeping(out, at, sent_at);
            }
        }
        self.deferred = deferred;
        self.count_sip();
        self.observe_changed_seats();
        if self.board_dirty {
            let now = Instant::now();
            if self.wallboard_due().is_some_and(|due| due <= now) {
                self.publish_wallboard(now, None);
            }
        }
    }

    /// The journal, hand-off, wallboard and SSE side of one output ([`Self::drain_outputs`]);
    /// `at`: when the switch put it out; `sent_at`: when the round's SIP messages had been
    /// sent.
    fn bookkeeping(&mut self, out: Output, at: chrono::DateTime<chrono::Utc>, sent_at: Instant) {
        match out {
            Output::Event(ev) => {
                tracing::debug!(call = %ev.call, kind = ev.kind.name(), "call event");
                let (call, kind) = (ev.call, latency_mark(&ev.kind));
                if let crate::switch::event::CallEventKind::LocationReference { uri, .. } = &ev.kind
                    && georef::is_http(uri)
                {
                    self.dereference(ev.call, uri.clone());
                }
                self.board.observe(&ev, at);
                self.callbacks.observe(&ev, at, Instant::now());
                if matches!(
                    ev.kind,
                    crate::switch::event::CallEventKind::Abandoned { .. }
                        | crate::switch::event::CallEventKind::Ended { .. }
                ) {
                    self.offer_callbacks();
                }
                self.board_dirty = true;
                self.recorder.record(&self.metrics, ev, at);
                self.observe_latency(call, kind, sent_at);
            }
            Output::Seat { seat, online } => {
                tracing::info!(%seat, online, "seat registration changed");
                self.board_dirty = true;
                self.dirty_seats.push(seat);
            }
            Output::Agent(ev) => self.agent_event(&ev, at),
            Output::Callback { task, result } => {
                self.callbacks
                    .apply(task, result, self.callback_max_attempts, chrono::Utc::now());
            }
            Output::Transmit(t) => {
                let bytes = Bytes::from(t.message.to_bytes());
                self.send(t.to, bytes);
            }
            Output::Media(cmd) => self.media(cmd),
            #[allow(unreachable_patterns)]
            _ => {}
        }
    }

    /// When a pending wallboard change is to be published: at once when the last snapshot
    /// is older than [`WALLBOARD_MIN_INTERVAL`], else that long after it; `None` when
    /// nothing changed.
    fn wallboard_due(&self) -> Option<Instant> {
        if !self.board_dirty {
            return None;
        }
        Some(match self.board_published {
            Some(at) => at + WALLBOARD_MIN_INTERVAL,
            None => self.input_at,
        })
    }

    /// A seat change: log, metric, live stream (journal: `agent_events`).
    fn agent_event(&mut self, ev: &crate::acd::SeatEvent, at: chrono::DateTime<chrono::Utc>) {
        self.dirty_seats.push(ev.seat.clone());
        if !self.changed_seats.contains(&ev.seat) {
            self.changed_seats.push(ev.seat.clone());
        }
        let view = agents::AgentEvent::of(ev, at);
        if ev.cause == crate::acd::Cause::NoAnswerPolicy {
            tracing::warn!(
                seat = %ev.seat,
                "seat put on break after consecutive unanswered offers (no-answer policy)"
            );
            self.metrics
                .seat_no_answer_breaks
                .get_or_create(&crate::metrics::SeatIdLabels {
                    seat: ev.seat.clone(),
                })
                .inc();
        } else {
            tracing::info!(
                seat = %ev.seat,
                status = %view.status,
                state = %view.state,
                cause = %view.cause,
                "seat changed"
            );
        }
        self.metrics
            .seat_changes
            .get_or_create(&crate::metrics::SeatCauseLabels {
                cause: ev.cause.as_str().to_owned(),
            })
            .inc();
        if let Ok(json) = serde_json::to_string(&view) {
            let _ = self.agent_events.send(("seat", json));
        }
        let id = match self.agent_ids.generate() {
            Ok(id) => id,
            Err(overflow) => overflow.commit_overflow_increment(),
        };
        let row = crate::store::AgentEventRow {
            id: id.to_string(),
            seat: view.seat.clone(),
            at: view.at.clone(),
            status: view.status.clone(),
            reason: view.reason.clone(),
            state: view.state.clone(),
            pending: view.pending.clone(),
            registered: view.registered,
            reachable: view.reachable,
            cause: view.cause.clone(),
            call_id: view.call.clone(),
        };
        if !self.agent_journal.record(row) {
            tracing::warn!(seat = %ev.seat, "agent journal queue full: seat change not journaled");
        }
    }

    /// Feeds `vigie_offer_latency_seconds` and `vigie_answer_handoff_latency_seconds`.
    fn observe_latency(&mut self, call: CallId, mark: Option<LatencyMark>, sent_at: Instant) {
        match mark {
            Some(LatencyMark::Received) => {
                self.offer_clock.insert(call, self.input_at);
            }
            Some(LatencyMark::Offered) => {
                if let Some(t) = self.offer_clock.remove(&call) {
                    self.metrics
                        .offer_latency_seconds
                        .observe(sent_at.saturating_duration_since(t).as_secs_f64());
                }
            }
            Some(LatencyMark::Answered) => {
                self.metrics
                    .answer_handoff_latency_seconds
                    .observe(self.input_at.elapsed().as_secs_f64());
            }
            Some(LatencyMark::Over) => {
                self.offer_clock.remove(&call);
            }
            None => {}
        }
    }

    /// Fetches a location by reference in its own task; the result comes back as
    /// [`Input::LocationUpdate`]. The call never waits for it.
    fn dereference(&self, call: CallId, uri: String) {
        let client = self.http_client.clone();
        let inputs = self.inputs_tx.clone();
        let (timeout, retries) = (self.georef_timeout, self.georef_retries);
        tokio::spawn(async move {
            match georef::fetch(&client, &uri, timeout, retries).await {
                Ok(locations) => {
                    tracing::info!(%call, uri, count = locations.len(), "location by reference fetched");
                    let _ = inputs
                        .send(Input::LocationUpdate {
                            call,
                            locations,
                            source: "geolocation-uri",
                        })
                        .await;
                }
                Err(e) => {
                    tracing::warn!(%call, uri, error = %e, "location by reference not fetched")
                }
            }
        });
    }

    /// Plays `names` (one prompt, or a sequence heard as one) in `language` to `side`:
    /// at once when every part is cached, else after a load off the task. The play
    /// request gets a new number, so an older load still running is not played.
    fn play_prompts(
        &mut self,
        call: CallId,
        side: crate::switch::Side,
        names: Vec<String>,
        language: &str,
        repeat: bool,
    ) {
        let side = media_side(side);
        let epoch = self.prompts.next_epoch(call);
        let Some(s) = self.sessions.get(&call) else {
            tracing::warn!(%call, prompts = ?names, "prompt without relay ports: not played");
            self.switch.handle_prompt_done(Instant::now(), call);
            return;
        };
        match self.prompts.cached_sequence(&names, language) {
            Some(p) => prompts::play(s, call, side, p, repeat, self.inputs_tx.clone()),
            None => self.prompts.load(
                prompts::PlayRequest {
                    call,
                    side,
                    repeat,
                    epoch,
                },
                names,
                language,
                self.inputs_tx.clone(),
            ),
        }
    }

    fn media(&mut self, cmd: MediaCommand) {
        match cmd {
            MediaCommand::Allocate { call } => {
                // Inline: binding four sockets is a few system calls, and the offer to a
                // seat (whose SDP carries the relay port) must not wait for a task hop.
                let session = self.relay.allocate();
                self.media_allocated(call, session);
            }
            MediaCommand::PeerHint { call, side, addr } => {
                if let Some(s) = self.sessions.get(&call) {
                    s.set_peer_hint(media_side(side), addr);
                }
            }
            MediaCommand::Release { call } => {
                self.prompts.forget(call);
                if let Some(s) = self.sessions.remove(&call) {
                    let st = s.stats();
                    tracing::debug!(
                        %call,
                        a_to_b = st.rtp_packets_a_to_b,
                        b_to_a = st.rtp_packets_b_to_a,
                        "media released"
                    );
                }
            }
            MediaCommand::Play {
                call,
                side,
                prompt,
                repeat,
                language,
            } => self.play_prompts(call, side, vec![prompt], &language, repeat),
            MediaCommand::PlaySequence {
                call,
                side,
                prompts,
                language,
            } => self.play_prompts(call, side, prompts, &language, false),
            MediaCommand::Codec {
                call,
                side,
                payload_type,
                alaw,
            } => {
                let codec = if alaw {
                    media::Codec::Pcma
                } else {
                    media::Codec::Pcmu
                };
                if let Some(s) = self.sessions.get(&call)
                    && let Err(e) = s.set_codec(media_side(side), codec, payload_type)
                {
                    tracing::debug!(%call, error = %e, "codec not set");
                }
            }
            MediaCommand::StopPlay { call, side } => {
                self.prompts.next_epoch(call);
                if let Some(s) = self.sessions.get(&call)
                    && let Err(e) = s.stop_play(media_side(side))
                {
                    tracing::debug!(%call, error = %e, "stop prompt");
                }
            }
            MediaCommand::Record { call, on } => {
                if let Some(s) = self.sessions.get(&call) {
                    if on {
                        let path = self
                            .prompts
                            .recording_path(call, chrono::Utc::now().date_naive());
                        prompts::record_start(s, call, path);
                    } else if let Err(e) = s.record_stop() {
                        tracing::debug!(%call, error = %e, "stop recording");
                    }
                } else {
                    // The relay ports are still being allocated: start with the session.
                    self.prompts.record_later(call, on);
                }
            }
            #[allow(unreachable_patterns)]
            _ => {}
        }
    }

    /// The relay ports of `call` are bound (or could not be): the switch goes on.
    fn media_allocated(&mut self, call: CallId, session: Result<RelaySession, MediaError>) {
        let now = Instant::now();
        match session {
            Ok(s) => {
                let ports = MediaPorts {
                    a: s.local_addr(media::Side::A).port(),
                    b: s.local_addr(media::Side::B).port(),
                };
                if self.prompts.take_pending_record(call) {
                    let path = self
                        .prompts
                        .recording_path(call, chrono::Utc::now().date_naive());
                    prompts::record_start(&s, call, path);
                }
                self.sessions.insert(call, s);
                self.switch.handle_media_ready(now, call, Some(ports));
                if !self.switch.has_call(call) {
                    self.sessions.remove(&call);
                }
            }
            Err(e) => {
                tracing::error!(%call, error = %e, "no relay ports: media not anchored");
                self.switch.handle_media_ready(now, call, None);
            }
        }
    }

    fn send(&mut self, peer: Peer, bytes: Bytes) {
        match peer.kind {
            TransportKind::Udp => {
                let socket = self
                    .udp
                    .iter()
                    .find(|(v4, _)| *v4 == peer.addr.is_ipv4())
                    .or(self.udp.first())
                    .map(|(_, s)| s);
                let Some(socket) = socket else {
                    tracing::warn!(to = %peer.addr, "no UDP socket to send on");
                    return;
                };
                match socket.try_send_to(&bytes, peer.addr) {
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        let socket = Arc::clone(socket);
                        tokio::spawn(async move {
                            let _ = socket.send_to(&bytes, peer.addr).await;
                        });
                    }
                    Err(e) => tracing::debug!(to = %peer.addr, error = %e, "UDP send failed"),
                }
            }
            TransportKind::Tcp => match self.tcp_writers.get(&peer.addr) {
                Some(w) => {
                    if w.try_send(bytes).is_err() {
                        tracing::warn!(to = %peer.addr, "TCP connection backlogged or closed");
                    }
                }
                None => {
                    tokio::spawn(transport::tcp_connect(
                        peer.addr,
                        bytes,
                        self.inputs_tx.clone(),
                        Arc::clone(&self.metrics),
                    ));
                }
            },
            #[allow(unreachable_patterns)]
            _ => {}
        }
    }

    /// Moves the switch's cumulative SIP counters into the Prometheus counters.
    fn count_sip(&mut self) {
        let stats = self.switch.stats();
        for class in 1..=6usize {
            let now = stats.responses_by_class.get(class).copied().unwrap_or(0);
            let seen = self.seen_responses.get(class).copied().unwrap_or(0);
            if now > seen
                && let Some(c) = StatusClass::of(u16::try_from(class * 100).unwrap_or(0))
            {
                self.metrics
                    .sip_responses_sent
                    .get_or_create(&StatusClassLabels { class: c })
                    .inc_by(now - seen);
            }
            if let Some(s) = self.seen_responses.get_mut(class) {
                *s = now;
            }
        }
        let rt = self.switch.retransmissions();
        if rt > self.seen_retransmissions {
            self.metrics
                .sip_retransmissions
                .inc_by(rt - self.seen_retransmissions);
            self.seen_retransmissions = rt;
        }
    }

    fn publish_status(&mut self) {
        // The seat tables (4,000 seats: thousands of strings) are built whole once; after
        // that only the rows of the seats named by seat events since the last publication
        // are redone (a whole rebuild every 250 ms held the switch for milliseconds).
        let mut dirty = std::mem::take(&mut self.dirty_seats);
        dirty.sort_unstable();
        dirty.dedup();
        let rebuild_seats = std::mem::take(&mut self.seats_dirty)
            || dirty.iter().any(|id| !self.seat_rows.contains_key(id));
        if rebuild_seats {
            self.observe_seats();
        }
        let now = Instant::now();
        let snaps: Vec<QueueSnapshot> = self.switch.acd().snapshot(now);
        for q in &snaps {
            let queue = QueueLabels {
                queue: q.name.clone(),
            };
            self.metrics
                .calls_waiting
                .get_or_create(&queue)
                .set(i64::try_from(q.waiting).unwrap_or(i64::MAX));
            self.metrics
                .longest_wait_seconds
                .get_or_create(&queue)
                .set(q.longest_wait.as_secs_f64());
            for (state, n) in &q.seats {
                if let Some(state) = seat_state_label(state) {
                    self.metrics
                        .seats
                        .get_or_create(&SeatLabels {
                            queue: q.name.clone(),
                            state,
                        })
                        .set(i64::try_from(*n).unwrap_or(i64::MAX));
                }
            }
        }
        // Seat state gauges were set by `observe_seats` (on first sight and on change).
        self.publish_seat_presence(&snaps);
        self.recorder.publish_service_level(&self.metrics, now);
        let reg = self.switch.registrar();
        let lockouts = reg.lockouts_total();
        let seen = self.metrics.registrar_lockouts.get();
        if lockouts > seen {
            self.metrics.registrar_lockouts.inc_by(lockouts - seen);
        }
        self.metrics
            .registrar_locked_sources
            .set(i64::try_from(reg.locked_sources(now)).unwrap_or(i64::MAX));
        self.publish_wallboard(now, Some(&snaps));
        let queues: Vec<QueueStatus> = snaps
            .into_iter()
            .map(|q| QueueStatus {
                name: q.name,
                waiting: q.waiting,
                longest_wait_seconds: q.longest_wait.as_secs_f64(),
                seats: q.seats,
            })
            .collect();
        let acd = self.switch.acd();
        let seat_tables = if rebuild_seats {
            self.seat_rows = acd
                .seats()
                .enumerate()
                .map(|(row, (id, _))| (id.clone(), row))
                .collect();
            SeatTables::Whole(
                acd.seats()
                    .map(|(id, s)| SeatStatus {
                        id: id.clone(),
                        state: s.label(),
                    })
                    .collect(),
                acd.seat_list().map(agents::AgentView::of).collect(),
            )
        } else {
            SeatTables::Rows(
                dirty
                    .iter()
                    .filter_map(|id| {
                        let row = *self.seat_rows.get(id)?;
                        let seat = acd.seat(id)?;
                        let status = SeatStatus {
                            id: id.clone(),
                            state: seat.state().label(),
                        };
                        Some((row, status, agents::AgentView::of(seat)))
                    })
                    .collect(),
            )
        };
        if let Ok(json) = serde_json::to_string(&queues)
            && json != self.last_queues
        {
            let _ = self.agent_events.send(("queue", json.clone()));
            self.last_queues = json;
        }
        let active_calls = self.switch.active_calls();
        self.status.send_modify(|status| {
            status.queues = queues;
            status.active_calls = active_calls;
            match seat_tables {
                SeatTables::Whole(seats, agents) => {
                    status.seats = seats;
                    status.agents = agents;
                }
                SeatTables::Rows(rows) => {
                    for (row, seat, agent) in rows {
                        if let Some(slot) = status.seats.get_mut(row) {
                            *slot = seat;
                        }
                        if let Some(slot) = status.agents.get_mut(row) {
                            *slot = agent;
                        }
                    }
                }
            }
        });
    }
}

/// The seat part of a [`Status`] publication.
enum SeatTables {
    /// Every seat, in the ACD's order.
    Whole(Vec<SeatStatus>, Vec<agents::AgentView>),
    /// (row, seat, agent view) of the seats that changed.
    Rows(Vec<(usize, SeatStatus, agents::AgentView)>),
}

/// The call events the latency histograms start or stop on.
#[derive(Debug, Clone, Copy)]
enum LatencyMark {
    Received,
    Offered,
    Answered,
    Over,
}

fn latency_mark(kind: &crate::switch::event::CallEventKind) -> Option<LatencyMark> {
    use crate::switch::event::CallEventKind as K;
    match kind {
        K::Received { .. } => Some(LatencyMark::Received),
        K::Offered { .. } => Some(LatencyMark::Offered),
        K::Answered { .. } => Some(LatencyMark::Answered),
        K::Abandoned { .. } | K::Ended { .. } | K::Overflowed { .. } => Some(LatencyMark::Over),
        _ => None,
    }
}

impl SwitchTask {
    /// Seat reachability (qualify), qualify probe counts and seats on break per queue by
    /// reason code.
    fn publish_seat_presence(&mut self, snaps: &[QueueSnapshot]) {
        let acd = self.switch.acd();
        for seat in acd.seat_list() {
            // Only a change touches the gauge family (a label look-up and a String each).
            if self.seen_reachable.get(seat.id()) == Some(&seat.reachable()) {
                continue;
            }
            self.seen_reachable
                .insert(seat.id().to_owned(), seat.reachable());
            self.metrics
                .seat_reachable
                .get_or_create(&crate::metrics::SeatIdLabels {
                    seat: seat.id().to_owned(),
                })
                .set(i64::from(seat.reachable()));
        }
        let q = self.switch.qualifier();
        self.metrics
            .publish_qualify_probes(q.probes_ok(), q.probes_timeout());
        for snap in snaps {
            let members = acd.queue(&snap.name).map(|q| q.seats.as_slice());
            let on_break = acd
                .seat_list()
                .filter(|s| members.is_none_or(|m| m.is_empty() || m.iter().any(|id| id == s.id())))
                .filter_map(|s| s.status().reason());
            self.metrics
                .publish_breaks(&snap.name, &self.break_reasons, on_break);
        }
    }

    /// Notes every seat's state: a seat that changed state gets its gauges at once, its
    /// wrap-up time counted, and the wallboard is marked for a new snapshot.
    fn observe_seats(&mut self) {
        let now = Instant::now();
        self.changed_seats.clear();
        for (id, s) in self.switch.acd().seats() {
            let Some(state) = seat_state_label(s.label()) else {
                continue;
            };
            let first = !self.seat_clock.knows(id);
            if let Some((left, held)) = self.seat_clock.observe(id, state, now) {
                self.metrics.seat_left_state(id, left, held);
                self.metrics.publish_seat(id, state);
                self.board_dirty = true;
            } else if first {
                self.metrics.publish_seat(id, state);
            }
        }
    }

    /// [`Self::observe_seats`] for the seats named by seat events since the last call
    /// only: after each input, without a pass over every seat (4,000 seats at 10,000
    /// SIP messages per second would be 40 million look-ups per second).
    fn observe_changed_seats(&mut self) {
        if self.changed_seats.is_empty() {
            return;
        }
        let now = Instant::now();
        let acd = self.switch.acd();
        for id in self.changed_seats.drain(..) {
            let Some(state) = acd
                .seat_state(&id)
                .and_then(|s| seat_state_label(s.label()))
            else {
                continue;
            };
            let first = !self.seat_clock.knows(&id);
            if let Some((left, held)) = self.seat_clock.observe(&id, state, now) {
                self.metrics.seat_left_state(&id, left, held);
                self.metrics.publish_seat(&id, state);
                self.board_dirty = true;
            } else if first {
                self.metrics.publish_seat(&id, state);
            }
        }
    }

    /// Builds the wallboard snapshot (from `snaps` when the caller has the ACD's queue
    /// snapshot at hand) and publishes it if it changed.
    fn publish_wallboard(&mut self, now: Instant, snaps: Option<&[QueueSnapshot]>) {
        self.board_dirty = false;
        self.board_published = Some(now);
        let fresh;
        let snaps = match snaps {
            Some(s) => s,
            None => {
                fresh = self.switch.acd().snapshot(now);
                &fresh
            }
        };
        let recorder = &mut self.recorder;
        let snap = self.board.snapshot(
            snaps,
            |queue, window| recorder.service_level(queue, window, now),
            self.switch.active_calls(),
            chrono::Utc::now(),
        );
        self.wallboard.publish(snap);
    }
}

/// Shortest time between two wallboard snapshots built on call events, so that a burst of
/// calls costs one snapshot per interval rather than one per SIP message.
const WALLBOARD_MIN_INTERVAL: Duration = Duration::from_millis(50);

/// How often the reload task looks at the plan files' modification times.
const RELOAD_POLL: Duration = Duration::from_secs(1);

/// Live reload of the dialplan (DESIGN §5): on SIGHUP, and when the modification time
/// (or size) of the root file or of any file it includes changes, polled every second
/// (no inotify dependency, and it also sees files replaced by rename, as editors and
/// configuration tools do). The new plan is compiled here, off the switch task; a refused
/// plan is logged with its `file:line:col` diagnostics and the running plan stays.
/// `vigie_dialplan_reload_total{result}` counts both outcomes. With the embedded plan
/// (`path` = `None`) there is nothing to reload: SIGHUP is only logged (it must not stop
/// the centre, which is what an unhandled SIGHUP would do).
async fn reload_task(
    path: Option<PathBuf>,
    mut watched: Vec<PathBuf>,
    queues: Vec<String>,
    plans: mpsc::Sender<Arc<CompiledPlan>>,
    metrics: Arc<Metrics>,
) {
    #[cfg(unix)]
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut stamps = file_stamps(&watched);
    let mut tick = tokio::time::interval(RELOAD_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        #[cfg(unix)]
        let sighup = async {
            match hup.as_mut() {
                Some(h) => h.recv().await,
                None => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let sighup = std::future::pending::<Option<()>>();
        let why = tokio::select! {
            _ = tick.tick(), if path.is_some() => {
                let now = file_stamps(&watched);
                if now == stamps {
                    continue;
                }
                stamps = now;
                "file changed"
            }
            s = sighup => {
                if s.is_none() {
                    hup = None;
                    continue;
                }
                "SIGHUP"
            }
        };
        let Some(path) = path.as_deref() else {
            tracing::info!(why, "the built-in dialplan is in use: nothing to reload");
            continue;
        };
        let (plan, files) = dialplan::load_watched(path, &queues);
        if !files.is_empty() {
            watched = files;
            stamps = file_stamps(&watched);
        }
        match plan {
            Ok(plan) => {
                metrics
                    .dialplan_reloads
                    .get_or_create(&ReloadLabels {
                        result: ReloadResult::Ok,
                    })
                    .inc();
                tracing::info!(file = %path.display(), why, routes = plan.routes.len(), "dialplan accepted");
                if plans.send(Arc::new(plan)).await.is_err() {
                    return;
                }
            }
            Err(report) => {
                metrics
                    .dialplan_reloads
                    .get_or_create(&ReloadLabels {
                        result: ReloadResult::Error,
                    })
                    .inc();
                tracing::error!(
                    file = %path.display(),
                    why,
                    "dialplan refused, the running plan stays:\n{}",
                    report.render(false)
                );
            }
        }
    }
}

/// Modification time and length of each file (`None` when it cannot be read).
fn file_stamps(files: &[PathBuf]) -> Vec<Option<(SystemTime, u64)>> {
    files.iter().map(|f| stamp(f)).collect()
}

fn stamp(file: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(file).ok()?;
    Some((m.modified().ok()?, m.len()))
}

fn seat_state_label(label: &str) -> Option<SeatState> {
    Some(match label {
        "logged_out" => SeatState::LoggedOut,
        "idle" => SeatState::Idle,
        "reserved" => SeatState::Reserved,
        "ringing" => SeatState::Ringing,
        "on_call" => SeatState::OnCall,
        "wrap_up" => SeatState::WrapUp,
        _ => return None,
    })
}

/// Where the data directory's journal lives (for the CLI and tests).
pub fn journal_path(config: &Config) -> PathBuf {
    config.store.data_dir.join("vigie.sqlite")
}

/// A `calls` row as the API shows it (times in RFC 3339 UTC).
pub fn call_json(r: &crate::store::CallRow) -> serde_json::Value {
    let t = |t: &Option<chrono::DateTime<chrono::Utc>>| t.map(crate::store::format_time);
    serde_json::json!({
        "id": r.id.to_string(),
        "node_id": r.node_id,
        "sip_call_id": r.sip_call_id,
        "caller": r.caller,
        "caller_display": r.caller_display,
        "called": r.called,
        "queue": r.queue,
        "agent_seat": r.agent_seat,
        "received_at": t(&r.received_at),
        "queued_at": t(&r.queued_at),
        "answered_at": t(&r.answered_at),
        "ended_at": t(&r.ended_at),
        "outcome": r.outcome.map(|o| o.as_str()),
        "end_cause": r.end_cause,
        "wait_seconds": r.wait_seconds,
        "talk_seconds": r.talk_seconds,
        "location": r.location_lat.map(|lat| serde_json::json!({
            "lat": lat, "lon": r.location_lon, "radius_m": r.location_radius_m,
        })),
    })
}

/// The media layer's name for a leg of a call.
fn media_side(side: Side) -> media::Side {
    match side {
        Side::A => media::Side::A,
        Side::B => media::Side::B,
    }
}
