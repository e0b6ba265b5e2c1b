//! Typed configuration: embedded defaults (the demo centre) < TOML file < CLI flags.
//!
//! `vigie gen-config` prints [`DEFAULT_CONFIG_TOML`], the full default configuration with
//! comments; a unit test checks that it parses to exactly [`Config::default`].

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The default configuration, commented, as `vigie gen-config` prints it.
pub const DEFAULT_CONFIG_TOML: &str = include_str!("default_config.toml");

/// Password of the demo seats. Refused as soon as SIP listens beyond loopback.
pub const DEMO_PASSWORD: &str = "demo";

/// Why a configuration was refused. Always the operator's fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Syntax {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("invalid configuration: {0}")]
    Invalid(#[from] Invalid),
}

/// A configuration that parses but cannot run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Invalid {
    #[error(
        "seat {seat:?} uses the demo password while SIP listens on non-loopback {addr}: set a real password (or ha1) for every seat"
    )]
    DemoCredentials { seat: String, addr: SocketAddr },
    #[error("seat {0:?} has neither password nor ha1_md5")]
    SeatWithoutCredential(String),
    #[error("seat id {0:?} is declared twice")]
    DuplicateSeat(String),
    #[error("no SIP listener: set sip.udp or sip.tcp")]
    NoListener,
    #[error(
        "[media] port_min = {min}, port_max = {max}: the range must start on an even port, with port_max above port_min and at least 4 ports (two calls' RTP and RTCP)"
    )]
    MediaPorts { min: u16, max: u16 },
    #[error(
        "[media] default_language = {0:?}: not a language tag such as fr or ar (2 to 8 of a-z, 0-9, -, starting with a letter)"
    )]
    Language(String),
    #[error("trunk source {0:?} is not an address or CIDR block")]
    TrunkSource(String),
    #[error("[registrar] digest_algorithms: {0:?} is neither \"SHA-256\" nor \"MD5\"")]
    DigestAlgorithm(String),
    #[error(
        "queue {queue:?}: service_level_targets entry within_s = {within_s}, ratio = {ratio}: within_s must be 1 or more and ratio in (0, 1]"
    )]
    ServiceLevelTarget {
        queue: String,
        within_s: u64,
        ratio: f64,
    },
    #[error("seat {seat:?} serves queue {queue:?}, which no [[queues]] entry declares")]
    SeatSkillQueue { seat: String, queue: String },
    #[error(
        "[callbacks] dial_uri = {0:?}: must be a sip: or sips: URI with {{number}} once and an IP address as host"
    )]
    CallbackDialUri(String),
    #[error(
        "[callbacks] max_attempts = {max_attempts}, caller_ring_s = {caller_ring_s}: both must be 1 or more"
    )]
    CallbackLimits {
        max_attempts: u32,
        caller_ring_s: u64,
    },
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub node_id: String,
    pub sip: SipConfig,
    pub http: HttpConfig,
    pub media: MediaConfig,
    pub store: StoreConfig,
    pub dispatch: DispatchConfig,
    pub aml: AmlConfig,
    pub trunk: TrunkConfig,
    pub registrar: RegistrarConfig,
    pub features: FeaturesConfig,
    pub queues: Vec<QueueConfig>,
    pub dialplan: DialplanConfig,
    pub seats: Vec<SeatConfig>,
    pub callbacks: CallbacksConfig,
}

/// Abandoned-call callbacks (`[callbacks]`, [`crate::acd::callback`]).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CallbacksConfig {
    /// A caller calling again within this many seconds of an abandon is matched to the
    /// open callback task (closed `called-back`) instead of opening another; default 1800.
    pub match_window_s: u64,
    /// Offer every open (unclaimed) task to the next free seat of its queue as a
    /// pseudo-call ahead of new calls: the seat is called first ("Rappel <number>"), then
    /// the caller through `dial_uri`, then both are bridged (`crate::switch::originate`).
    /// Default `false`: tasks are only listed, claimed and closed over the API.
    pub offer_to_seats: bool,
    /// How vigie reaches a caller through the trunk: a `sip:`/`sips:` URI with `{number}`
    /// once (RFC 3261 §19.1), e.g. `sip:{number}@192.0.2.10`; the host must be an IP
    /// address (vigie does no DNS).
    pub dial_uri: String,
    /// ACD priority of a callback pseudo-call (higher is served first; new calls get
    /// their plan's queue priority, 0 unless set). Default 10: ahead of new calls.
    pub priority: u8,
    /// Calls to a caller that end busy or unanswered before the task is closed
    /// `no-answer` (1 or more); default 3.
    pub max_attempts: u32,
    /// Seconds between a busy or unanswered call to the caller and the next offer of the
    /// task to a seat; default 300.
    pub retry_after_s: u64,
    /// Seconds the caller may ring before vigie CANCELs and counts an attempt; default 30.
    pub caller_ring_s: u64,
}

impl Default for CallbacksConfig {
    fn default() -> CallbacksConfig {
        CallbacksConfig {
            match_window_s: 1800,
            offer_to_seats: false,
            dial_uri: "sip:{number}@192.0.2.10".to_owned(),
            priority: 10,
            max_attempts: 3,
            retry_after_s: 300,
            caller_ring_s: 30,
        }
    }
}

/// Where the dialplan comes from (DESIGN §5, `dialplans/README.md`).
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DialplanConfig {
    /// The plan's root file; a relative path is resolved against the configuration file's
    /// directory by [`Config::load`]. `None` = the demo plan embedded in the binary
    /// (`dialplans/line19.toml` and its include).
    pub file: Option<PathBuf>,
}

/// SIP listeners and timers (RFC 3261 §17.1.1.1, §18).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SipConfig {
    /// UDP listen addresses.
    pub udp: Vec<SocketAddr>,
    /// TCP listen addresses.
    pub tcp: Vec<SocketAddr>,
    /// Host vigie writes in its Via, Contact and SDP; defaults to the first listener's IP.
    pub advertised_host: Option<String>,
    /// Timer T1 in milliseconds (RTT estimate, RFC 3261 §17.1.1.1; default 500).
    pub t1_ms: u64,
    /// Timer T2 in milliseconds (maximum retransmit interval for non-INVITE; default 4000).
    pub t2_ms: u64,
    /// Timer T4 in milliseconds (maximum time a message stays in the network; default 5000).
    pub t4_ms: u64,
    /// User-Agent / Server header value.
    pub user_agent: String,
    /// Receive and send buffer of each SIP UDP socket, KiB (`SO_RCVBUF`/`SO_SNDBUF`,
    /// default 4096): a burst of INVITEs waits there while the switch works. The kernel
    /// caps it at `net.core.rmem_max`/`wmem_max`; the size granted is logged at start.
    pub udp_buffer_kib: u32,
}

/// The HTTP listener: `/metrics` and the API.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    pub listen: SocketAddr,
}

/// The RTP relay (RFC 3550). RTP takes even ports, RTCP the odd port above.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MediaConfig {
    /// Address the relay sockets bind to.
    pub bind: IpAddr,
    /// Address written in SDP `c=` lines; defaults to `bind`.
    pub advertised: Option<IpAddr>,
    /// Lowest relay port (even).
    pub port_min: u16,
    /// Highest relay port.
    pub port_max: u16,
    /// Directory of the WAV prompts the dialplan plays (8000 Hz mono, 16-bit PCM or G.711;
    /// `tools/make-prompts` generates the demo set). Relative paths are from the working
    /// directory.
    pub prompts_dir: PathBuf,
    /// Directory where call recordings (stereo WAV, caller left, seat right) are written.
    pub recordings_dir: PathBuf,
    /// Language of a call's prompts when its dialplan route sets none (`{ set = {
    /// language = "ar" } }`): prompts are read from `prompts_dir/LANG/NAME`, else
    /// `prompts_dir/NAME`. A tag such as `fr` or `ar` ([`crate::dialplan::valid_language`]).
    pub default_language: String,
    /// Relay threads, each running one `epoll` loop over the sockets of its calls; 0 (the
    /// default) = one per core, at most 4.
    pub relay_threads: usize,
    /// Rest of a relay thread after a loop that relayed something, microseconds (default
    /// 500): the datagrams arriving meanwhile are taken in one wake-up. Adds at most this
    /// much delay to a packet; 0 = lowest latency, most wake-ups.
    pub relay_tick_us: u64,
}

/// The call journal.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Directory holding `vigie.sqlite` and the journal spill file.
    pub data_dir: PathBuf,
    /// Journal records buffered in memory before they spill to the file.
    pub journal_capacity: usize,
    /// Database URL: unset = the SQLite file `vigie.sqlite` in `data_dir`;
    /// `postgres://user@host:port/db` = PostgreSQL.
    pub url: Option<String>,
}

/// Hand-off to dispatch (DESIGN §4): the webhook the transactional outbox delivers to, and
/// the dereferencing of locations by reference (RFC 6442 §4.1).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DispatchConfig {
    /// `http:`/`https:` URL every hand-off document is POSTed to; unset = documents stay in
    /// the outbox (and on SSE/REST) until one is configured.
    pub webhook_url: Option<String>,
    /// Time allowed for one webhook POST, milliseconds.
    pub timeout_ms: u64,
    /// First wait after a failed delivery, milliseconds; doubles per failure.
    pub retry_min_ms: u64,
    /// Longest wait between delivery attempts, milliseconds.
    pub retry_max_ms: u64,
    /// Time allowed for one GET of a location by reference, milliseconds.
    pub georef_timeout_ms: u64,
    /// Retries of a failed GET of a location by reference (back-off doubling from 500 ms).
    pub georef_retries: u32,
}

/// The AML endpoint (ETSI TS 103 625 §8): HTTPS when a certificate is set.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AmlConfig {
    /// Listen address of the AML endpoint; unset = no endpoint.
    pub listen: Option<SocketAddr>,
    /// PEM certificate chain for TLS; with `key_path`. Unset = plain HTTP (tests, behind a
    /// TLS-terminating proxy).
    pub cert_path: Option<PathBuf>,
    /// PEM private key for TLS.
    pub key_path: Option<PathBuf>,
    /// How long after a call's end an AML report still matches it, seconds.
    pub match_after_end_s: u64,
}

/// The trunk from the operator's network.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrunkConfig {
    /// Addresses or CIDR blocks whose INVITEs are accepted as trunk calls.
    pub allowed_sources: Vec<String>,
    /// Simultaneous calls the trunk carries (channels). Calls beyond it are still
    /// accepted (never busy); the figure is exported for alerting.
    pub capacity: u32,
}

/// The registrar for agent seats (RFC 3261 §10.3).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistrarConfig {
    /// Digest realm (RFC 8760).
    pub realm: String,
    /// Shortest registration accepted, in seconds (423 below it).
    pub min_expires_s: u32,
    /// Longest registration granted, in seconds.
    pub max_expires_s: u32,
    /// Registration granted when the seat asks for none, in seconds.
    pub default_expires_s: u32,
    /// Digest algorithms challenged with, most preferred first (RFC 8760 §2.4):
    /// `SHA-256`, `MD5`. Default `MD5` only: SIPp answers only the first challenge and
    /// Debian's baresip 1.0 refuses to register at all when any challenge is SHA-256.
    pub digest_algorithms: Vec<String>,
    /// A seat logs in (status available) when it gains its first registered contact;
    /// `false`: it stays logged out until `*21` or `POST /api/v1/agents/{id}/login`.
    pub login_on_register: bool,
    /// Failed authentications from one source address within `lockout_window_s` after
    /// which the source is ignored for `lockout_s` (log line, metric); 0 = never.
    pub lockout_failures: u32,
    /// Window over which failures are counted, seconds.
    pub lockout_window_s: u32,
    /// How long a locked-out source gets no response at all, seconds.
    pub lockout_s: u32,
    /// OPTIONS keep-alive ("qualify") period, seconds: every registered contact of a seat
    /// is sent OPTIONS this often (RFC 3261 §11); a seat none of whose contacts answers
    /// before the transaction times out (Timer F, 64·T1) is offered no call until one
    /// answers or it registers again. 0 = off.
    pub qualify_s: u64,
}

/// Seat feature codes dialled from a registered softphone (INVITE to the code), and the
/// seat policies of the ACD.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FeaturesConfig {
    /// Log in (status available).
    pub login: String,
    /// Log out (after the call in progress, if any).
    pub logout: String,
    /// Pause; the code followed by digits picks a reason from `pause_reasons`.
    pub pause: String,
    /// End a pause.
    pub unpause: String,
    /// Reason codes by the digits dialled after the pause code (`*231` = meal).
    pub pause_reasons: std::collections::BTreeMap<String, String>,
    /// Consecutive unanswered offers (ring timeout) after which a seat goes on break
    /// `no-answer` and the supervisor is told; 0 = never.
    pub no_answer_limit: u32,
}

impl Default for FeaturesConfig {
    fn default() -> FeaturesConfig {
        FeaturesConfig {
            login: "*21".to_owned(),
            logout: "*22".to_owned(),
            pause: "*23".to_owned(),
            unpause: "*24".to_owned(),
            pause_reasons: [("1", "meal"), ("2", "training"), ("3", "debrief")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            no_answer_limit: 3,
        }
    }
}

/// One ACD queue.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    pub name: String,
    /// Seconds a seat rings before vigie CANCELs and tries the next seat.
    pub ring_timeout_s: u64,
    /// Seconds of wrap-up after each call before the seat takes another.
    pub wrap_up_s: u64,
    /// Seconds before a call is offered again to seats that all declined or did not
    /// answer it (Asterisk app_queue's `retry`).
    pub retry_s: u64,
    /// Service-level threshold, seconds: a call answered by a seat within this wait
    /// (from the trunk's INVITE) counts as answered in time in
    /// `vigie_service_level_ratio`.
    pub service_level_s: u64,
    /// Service-level targets: `[{ within_s = 15, ratio = 0.90 }, { within_s = 20,
    /// ratio = 0.95 }]` (NENA's, the default): each gives
    /// `vigie_service_level_within_ratio{within_s}` and the alert rules' target
    /// `vigie_service_level_target_ratio`.
    pub service_level_targets: Vec<ServiceLevelTarget>,
    /// Seats serving this queue at penalty 0, in this order (the order of `linear` and
    /// `round-robin`); empty, and no seat naming this queue in its `queues`, = every seat.
    pub seats: Vec<String>,
    /// How a free seat is chosen: `longest-idle` (default), `round-robin` (resumes after
    /// the last seat offered), `fewest-calls`, `least-talk-time`, `ring-all` (every free
    /// seat rings, the first answer wins, the others are CANCELled), `linear` (top-down in
    /// the seat order), `random`. Any other value is refused at load.
    pub strategy: crate::acd::Strategy,
    /// Ring-progressively, seconds: a seat of penalty `p` is offered a call only once the
    /// call has waited `p` × this (tier 1 = penalty 0 at once, tier 2 = penalty 1 after
    /// `tier_wait_s`, …); 0 (default) = every tier at once, lower penalties preferred.
    pub tier_wait_s: u64,
    /// Between queues sharing a seat, a free seat serves the heavier queue's calls first
    /// (then caller priority, then arrival); default 0.
    pub weight: u32,
    /// At most this many calls wait; a call beyond overflows to the plan's next step with
    /// reason `queue_full` (never a busy); 0 (default) = unlimited.
    pub max_len: u32,
}

/// A queue a seat serves (`[[seats]] queues = [{ name = "line19", penalty = 0 }]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeatSkill {
    /// The queue's name (`[[queues]] name`).
    pub name: String,
    /// Lower is preferred; with the queue's `tier_wait_s` also the tier (0 = first).
    #[serde(default)]
    pub penalty: u32,
}

/// One service-level target of a queue: `ratio` (0–1) of the calls answered by a seat
/// within `within_s` seconds of the trunk's INVITE.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceLevelTarget {
    /// Answer threshold, seconds (1 or more).
    pub within_s: u64,
    /// Target share of the calls, 0 (excluded) to 1.
    pub ratio: f64,
}

impl ServiceLevelTarget {
    /// NENA's call-answering standard (NENA-STA-020): 90 % within 15 s, 95 % within 20 s.
    pub const NENA: [ServiceLevelTarget; 2] = [
        ServiceLevelTarget {
            within_s: 15,
            ratio: 0.90,
        },
        ServiceLevelTarget {
            within_s: 20,
            ratio: 0.95,
        },
    ];
}

/// One agent seat and its SIP credential.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeatConfig {
    /// Seat id, also the SIP user the softphone registers as.
    pub id: String,
    /// Plain password (hashed at load, never logged).
    #[serde(default)]
    pub password: Option<String>,
    /// HA1 = MD5(id:realm:password) in hex, instead of `password`.
    #[serde(default)]
    pub ha1_md5: Option<String>,
    /// HA1 = SHA-256(id:realm:password) in hex, with `ha1_md5`.
    #[serde(default)]
    pub ha1_sha256: Option<String>,
    /// Seconds of wrap-up after each call of this seat, overriding its queue's.
    #[serde(default)]
    pub wrap_up_s: Option<u64>,
    /// The queues this seat serves, with a penalty each (its skills); added to the queues'
    /// own `seats` lists (the penalty given here wins).
    #[serde(default)]
    pub queues: Vec<SeatSkill>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            node_id: "vigie-1".to_owned(),
            sip: SipConfig::default(),
            http: HttpConfig::default(),
            media: MediaConfig::default(),
            store: StoreConfig::default(),
            dispatch: DispatchConfig::default(),
            aml: AmlConfig::default(),
            trunk: TrunkConfig::default(),
            registrar: RegistrarConfig::default(),
            features: FeaturesConfig::default(),
            queues: vec![QueueConfig::default()],
            dialplan: DialplanConfig::default(),
            seats: (1..=20)
                .map(|n| SeatConfig {
                    id: format!("agent{n:02}"),
                    password: Some(DEMO_PASSWORD.to_owned()),
                    ha1_md5: None,
                    ha1_sha256: None,
                    wrap_up_s: None,
                    queues: Vec::new(),
                })
                .collect(),
            callbacks: CallbacksConfig::default(),
        }
    }
}

impl Default for SipConfig {
    fn default() -> SipConfig {
        let addr = SocketAddr::from(([127, 0, 0, 1], 5060));
        SipConfig {
            udp: vec![addr],
            tcp: vec![addr],
            advertised_host: None,
            t1_ms: 500,
            t2_ms: 4000,
            t4_ms: 5000,
            user_agent: format!("vigie/{}", env!("CARGO_PKG_VERSION")),
            udp_buffer_kib: 4096,
        }
    }
}

impl Default for HttpConfig {
    fn default() -> HttpConfig {
        HttpConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
        }
    }
}

impl Default for MediaConfig {
    fn default() -> MediaConfig {
        MediaConfig {
            bind: IpAddr::from([127, 0, 0, 1]),
            advertised: None,
            port_min: 20000,
            port_max: 29999,
            prompts_dir: PathBuf::from("prompts"),
            recordings_dir: PathBuf::from("recordings"),
            default_language: "fr".to_owned(),
            relay_threads: 0,
            relay_tick_us: 500,
        }
    }
}

impl Default for StoreConfig {
    fn default() -> StoreConfig {
        StoreConfig {
            data_dir: PathBuf::from("data"),
            journal_capacity: 10_000,
            url: None,
        }
    }
}

impl Default for DispatchConfig {
    fn default() -> DispatchConfig {
        DispatchConfig {
            webhook_url: None,
            timeout_ms: 5_000,
            retry_min_ms: 500,
            retry_max_ms: 30_000,
            georef_timeout_ms: 3_000,
            georef_retries: 2,
        }
    }
}

impl Default for AmlConfig {
    fn default() -> AmlConfig {
        AmlConfig {
            listen: None,
            cert_path: None,
            key_path: None,
            match_after_end_s: 300,
        }
    }
}

impl Default for TrunkConfig {
    fn default() -> TrunkConfig {
        TrunkConfig {
            allowed_sources: vec!["127.0.0.0/8".to_owned(), "::1/128".to_owned()],
            capacity: 60,
        }
    }
}

impl Default for RegistrarConfig {
    fn default() -> RegistrarConfig {
        RegistrarConfig {
            realm: "vigie".to_owned(),
            min_expires_s: 60,
            max_expires_s: 3600,
            default_expires_s: 600,
            digest_algorithms: vec!["MD5".to_owned()],
            login_on_register: true,
            lockout_failures: 10,
            lockout_window_s: 60,
            lockout_s: 300,
            qualify_s: 30,
        }
    }
}

impl Default for QueueConfig {
    fn default() -> QueueConfig {
        QueueConfig {
            name: "line19".to_owned(),
            ring_timeout_s: 15,
            wrap_up_s: 0,
            retry_s: 5,
            service_level_s: 15,
            service_level_targets: ServiceLevelTarget::NENA.to_vec(),
            seats: Vec::new(),
            strategy: crate::acd::Strategy::LongestIdle,
            tier_wait_s: 0,
            weight: 0,
            max_len: 0,
        }
    }
}

impl Config {
    /// Reads and validates a TOML file; keys it does not set keep their defaults.
    ///
    /// # Errors
    /// [`ConfigError::Read`], [`ConfigError::Syntax`] (with line and column), or
    /// [`ConfigError::Invalid`].
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut config = Config::parse(&text).map_err(|source| ConfigError::Syntax {
            path: path.to_owned(),
            source: Box::new(source),
        })?;
        if let Some(file) = &config.dialplan.file
            && file.is_relative()
            && let Some(dir) = path.parent()
        {
            config.dialplan.file = Some(dir.join(file));
        }
        config.validate()?;
        Ok(config)
    }

    /// Parses TOML text without validating it.
    pub fn parse(text: &str) -> Result<Config, toml::de::Error> {
        toml::from_str(text)
    }

    /// Checks what serde cannot: credentials, references between sections, ranges.
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.sip.udp.is_empty() && self.sip.tcp.is_empty() {
            return Err(Invalid::NoListener);
        }
        let m = &self.media;
        if m.port_max < m.port_min || m.port_max - m.port_min < 3 || !m.port_min.is_multiple_of(2) {
            return Err(Invalid::MediaPorts {
                min: m.port_min,
                max: m.port_max,
            });
        }
        if !crate::dialplan::valid_language(&m.default_language) {
            return Err(Invalid::Language(m.default_language.clone()));
        }
        for src in &self.trunk.allowed_sources {
            Cidr::parse(src).ok_or_else(|| Invalid::TrunkSource(src.clone()))?;
        }
        let cb = &self.callbacks;
        let dial_ok = crate::switch::originate::DialTemplate::parse(&cb.dial_uri)
            .ok()
            .and_then(|d| d.uri("0612345678").ok())
            .and_then(|u| crate::sip::uri::Uri::parse(&u).ok())
            .is_some_and(|u| {
                matches!(
                    u.host,
                    crate::sip::uri::Host::V4(_) | crate::sip::uri::Host::V6(_)
                )
            });
        if !dial_ok {
            return Err(Invalid::CallbackDialUri(cb.dial_uri.clone()));
        }
        if cb.max_attempts == 0 || cb.caller_ring_s == 0 {
            return Err(Invalid::CallbackLimits {
                max_attempts: cb.max_attempts,
                caller_ring_s: cb.caller_ring_s,
            });
        }
        for alg in &self.registrar.digest_algorithms {
            crate::sip::auth::Algorithm::from_token(alg)
                .ok_or_else(|| Invalid::DigestAlgorithm(alg.clone()))?;
        }
        let public = self
            .sip
            .udp
            .iter()
            .chain(self.sip.tcp.iter())
            .find(|a| !a.ip().is_loopback());
        for q in &self.queues {
            for t in &q.service_level_targets {
                if t.within_s == 0 || !(t.ratio > 0.0 && t.ratio <= 1.0) {
                    return Err(Invalid::ServiceLevelTarget {
                        queue: q.name.clone(),
                        within_s: t.within_s,
                        ratio: t.ratio,
                    });
                }
            }
        }
        let mut seen = std::collections::HashSet::new();
        for seat in &self.seats {
            if !seen.insert(seat.id.as_str()) {
                return Err(Invalid::DuplicateSeat(seat.id.clone()));
            }
            if seat.password.is_none() && seat.ha1_md5.is_none() {
                return Err(Invalid::SeatWithoutCredential(seat.id.clone()));
            }
            for skill in &seat.queues {
                if !self.queues.iter().any(|q| q.name == skill.name) {
                    return Err(Invalid::SeatSkillQueue {
                        seat: seat.id.clone(),
                        queue: skill.name.clone(),
                    });
                }
            }
            if let (Some(addr), Some(DEMO_PASSWORD)) = (public, seat.password.as_deref()) {
                return Err(Invalid::DemoCredentials {
                    seat: seat.id.clone(),
                    addr: *addr,
                });
            }
        }
        Ok(())
    }

    /// The host vigie writes in Via and Contact.
    pub fn advertised_sip_host(&self) -> String {
        if let Some(h) = &self.sip.advertised_host {
            return h.clone();
        }
        let ip = self
            .sip
            .udp
            .first()
            .or(self.sip.tcp.first())
            .map(|a| a.ip())
            .unwrap_or(IpAddr::from([127, 0, 0, 1]));
        match ip {
            IpAddr::V6(v6) => format!("[{v6}]"),
            IpAddr::V4(v4) => v4.to_string(),
        }
    }

    /// The address written in SDP.
    pub fn advertised_media_ip(&self) -> IpAddr {
        self.media.advertised.unwrap_or(self.media.bind)
    }

    /// The trunk's allowed source blocks (validated by [`Config::validate`]).
    pub fn trunk_sources(&self) -> Vec<Cidr> {
        self.trunk
            .allowed_sources
            .iter()
            .filter_map(|s| Cidr::parse(s))
            .collect()
    }
}

/// An address block such as `192.0.2.0/24` or a single address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    /// Prefix length in bits.
    pub prefix: u8,
}

impl Cidr {
    /// Parses `ADDR` or `ADDR/PREFIX`; `None` if it is neither.
    pub fn parse(text: &str) -> Option<Cidr> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a.parse::<IpAddr>().ok()?, Some(p.parse::<u8>().ok()?)),
            None => (text.parse::<IpAddr>().ok()?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(Cidr { addr, prefix })
    }

    /// True when `ip` lies in the block (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_config_is_the_default() {
        let parsed = Config::parse(DEFAULT_CONFIG_TOML).unwrap();
        assert_eq!(parsed, Config::default());
        parsed.validate().unwrap();
    }

    #[test]
    fn queue_strategies_skills_and_limits_are_read() {
        let c = Config::parse(
            r#"
[[queues]]
name = "line19"
strategy = "ring-all"
tier_wait_s = 10
weight = 5
max_len = 30
[[queues]]
name = "admin"
strategy = "round-robin"
[[seats]]
id = "agent01"
password = "x"
queues = [{ name = "line19", penalty = 0 }, { name = "admin", penalty = 2 }]
[[seats]]
id = "agent02"
password = "x"
queues = [{ name = "admin" }]
"#,
        )
        .unwrap();
        c.validate().unwrap();
        let q = &c.queues[0];
        assert_eq!(
            (q.strategy, q.tier_wait_s, q.weight, q.max_len),
            (crate::acd::Strategy::RingAll, 10, 5, 30)
        );
        assert_eq!(c.queues[1].strategy, crate::acd::Strategy::RoundRobin);
        assert_eq!(c.queues[1].weight, 0);
        assert_eq!(
            c.seats[0].queues,
            vec![
                SeatSkill {
                    name: "line19".into(),
                    penalty: 0
                },
                SeatSkill {
                    name: "admin".into(),
                    penalty: 2
                }
            ]
        );
        assert_eq!(c.seats[1].queues[0].penalty, 0);
    }

    #[test]
    fn unknown_strategy_and_skill_queue_are_refused() {
        let e = Config::parse("[[queues]]\nname = \"line19\"\nstrategy = \"fastest\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("fastest"), "{e}");
        assert!(e.contains("ring-all") && e.contains("longest-idle"), "{e}");
        assert!(e.contains("line 3"), "{e}");
        let c = Config::parse(
            "[[seats]]\nid = \"agent01\"\npassword = \"x\"\nqueues = [{ name = \"nowhere\" }]\n",
        )
        .unwrap();
        assert!(
            matches!(c.validate(), Err(Invalid::SeatSkillQueue { seat, queue })
                if seat == "agent01" && queue == "nowhere")
        );
        assert!(
            Config::parse("[[seats]]\nid = \"a\"\nqueues = [{ name = \"line19\", tier = 1 }]\n")
                .is_err(),
            "unknown key in a skill"
        );
    }

    #[test]
    fn partial_file_keeps_defaults() {
        let c = Config::parse("[http]\nlisten = \"127.0.0.1:9999\"\n").unwrap();
        assert_eq!(c.http.listen.port(), 9999);
        assert_eq!(c.seats.len(), 20);
        assert_eq!(c.queues[0].ring_timeout_s, 15);
    }

    #[test]
    fn service_level_targets_default_to_nena_and_are_checked() {
        let c = Config::default();
        let t: Vec<(u64, f64)> = c.queues[0]
            .service_level_targets
            .iter()
            .map(|t| (t.within_s, t.ratio))
            .collect();
        assert_eq!(t, [(15, 0.90), (20, 0.95)]);
        let c = Config::parse(
            "[[queues]]\nname = \"q\"\nservice_level_targets = [{ within_s = 10, ratio = 0.8 }]\n",
        )
        .unwrap();
        assert_eq!(c.queues[0].service_level_s, 15);
        assert_eq!(c.queues[0].service_level_targets.len(), 1);
        c.validate().unwrap();
        for bad in [
            "{ within_s = 0, ratio = 0.8 }",
            "{ within_s = 10, ratio = 1.5 }",
        ] {
            let c = Config::parse(&format!(
                "[[queues]]\nname = \"q\"\nservice_level_targets = [{bad}]\n"
            ))
            .unwrap();
            assert!(
                matches!(c.validate(), Err(Invalid::ServiceLevelTarget { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn unknown_key_is_refused_with_position() {
        let err = Config::parse("[sip]\nudpp = []\n").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("udpp"), "{text}");
        assert!(text.contains("line 2"), "{text}");
    }

    #[test]
    fn demo_password_refused_beyond_loopback() {
        let mut c = Config::default();
        c.sip.udp = vec!["192.0.2.10:5060".parse().unwrap()];
        match c.validate() {
            Err(Invalid::DemoCredentials { seat, .. }) => assert_eq!(seat, "agent01"),
            other => panic!("expected DemoCredentials, got {other:?}"),
        }
        for s in &mut c.seats {
            s.password = Some(format!("{}-long-secret", s.id));
        }
        assert!(c.validate().is_ok());
    }

    #[test]
    fn relative_dialplan_file_is_resolved_against_the_config_directory() {
        let dir = std::env::temp_dir().join(format!("vigie-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("vigie.toml");
        std::fs::write(&path, "[dialplan]\nfile = \"plans/main.toml\"\n").unwrap();
        let c = Config::load(&path).unwrap();
        assert_eq!(c.dialplan.file, Some(dir.join("plans/main.toml")));
        std::fs::write(&path, "[dialplan]\nfile = \"/etc/vigie/plan.toml\"\n").unwrap();
        let c = Config::load(&path).unwrap();
        assert_eq!(c.dialplan.file, Some(PathBuf::from("/etc/vigie/plan.toml")));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn cidr_matching() {
        let c = Cidr::parse("127.0.0.0/8").unwrap();
        assert!(c.contains("127.1.2.3".parse().unwrap()));
        assert!(c.contains("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!c.contains("192.0.2.1".parse().unwrap()));
        let all = Cidr::parse("0.0.0.0/0").unwrap();
        assert!(all.contains("198.51.100.7".parse().unwrap()));
        let one = Cidr::parse("2001:db8::1").unwrap();
        assert_eq!(one.prefix, 128);
        assert!(one.contains("2001:db8::1".parse().unwrap()));
        assert!(!one.contains("2001:db8::2".parse().unwrap()));
        assert!(Cidr::parse("10.0.0.0/33").is_none());
        assert!(Cidr::parse("nonsense").is_none());
    }

    #[test]
    fn callbacks_offered_to_seats_are_read_and_checked() {
        let c = Config::parse(
            r#"
[callbacks]
offer_to_seats = true
dial_uri = "sip:{number}@192.0.2.10:5060;user=phone"
priority = 7
max_attempts = 2
retry_after_s = 120
caller_ring_s = 25
"#,
        )
        .unwrap();
        assert!(c.callbacks.offer_to_seats);
        assert_eq!(c.callbacks.priority, 7);
        assert_eq!(c.callbacks.max_attempts, 2);
        assert_eq!(c.callbacks.retry_after_s, 120);
        assert_eq!(c.callbacks.caller_ring_s, 25);
        assert_eq!(c.callbacks.match_window_s, 1800);
        c.validate().unwrap();
        let d = Config::default().callbacks;
        assert!(!d.offer_to_seats);
        assert_eq!((d.priority, d.max_attempts, d.retry_after_s), (10, 3, 300));
        for bad in [
            "tel:{number}",
            "sip:192.0.2.10",
            "sip:{number}@trunk.example.net",
            "sip:{number}{number}@192.0.2.10",
        ] {
            let mut c = Config::default();
            c.callbacks.dial_uri = bad.to_owned();
            assert!(
                matches!(c.validate(), Err(Invalid::CallbackDialUri(ref u)) if u == bad),
                "{bad}"
            );
        }
        let mut c = Config::default();
        c.callbacks.max_attempts = 0;
        assert!(matches!(
            c.validate(),
            Err(Invalid::CallbackLimits {
                max_attempts: 0,
                caller_ring_s: 30
            })
        ));
    }
}
