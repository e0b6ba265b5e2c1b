//! SDP offer/answer (RFC 4566, RFC 3264) and media anchoring: codecs PCMU, PCMA,
//! telephone-event (RFC 4733).
//!
//! vigie is a B2BUA that anchors media: every SDP it sends to a leg advertises vigie's own
//! relay address, never the other leg's. [`anchor`] turns the SDP received from one leg (an
//! offer from the caller, or an answer from the agent) into the SDP vigie sends to the *other*
//! leg, and tells the switch where the sending leg expects its RTP.
//!
//! Wiring with [`crate::media`] (side A = caller/trunk leg, side B = agent/seat leg):
//!
//! ```text
//! offer from A  --anchor(offer, relay.local_addr(Side::B), &mut origin_b)-->  offer to B
//!                 session.set_peer_hint(Side::A, anchored.peer)
//! answer from B --anchor(answer, relay.local_addr(Side::A), &mut origin_a)--> answer to A
//!                 session.set_peer_hint(Side::B, anchored.peer)
//! ```
//!
//! The relay port given to [`anchor`] is the one the *receiving* leg must send to: the SDP
//! sent to B carries B's relay socket, since packets arriving there are relayed to A.
//!
//! The SDP is parsed and written with `sdp-types` (DESIGN §8).

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;
use sdp_types::{AddrType, Attribute, Connection, Media, NetType, Origin, Session};

/// Why an SDP could not be anchored. Every variant is the peer's fault and maps to
/// `488 Not Acceptable Here` (RFC 3261 §21.4.26) through [`SdpError::status_code`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SdpError {
    /// The body is not a parseable SDP session description (RFC 4566 §5).
    #[error("SDP does not parse: {0}")]
    Parse(#[from] sdp_types::ParserError),
    /// No `m=audio` line with a non-zero port and an RTP/AVP or RTP/AVPF transport.
    #[error("SDP has no active RTP audio stream")]
    NoAudio,
    /// The audio stream offers none of PCMU (0), PCMA (8) — telephone-event alone does not
    /// carry speech.
    #[error("SDP audio stream offers neither PCMU nor PCMA")]
    NoSupportedCodec,
    /// The audio stream has neither a media-level nor a session-level `c=` line
    /// (RFC 4566 §5.7).
    #[error("SDP audio stream has no connection (c=) line")]
    MissingConnection,
    /// The `c=` line is not `IN IP4`/`IN IP6` with a literal IP address (host names and
    /// other network types are not supported).
    #[error("SDP connection address is not an IP literal: {address}")]
    InvalidConnection {
        /// The connection-address as received.
        address: String,
    },
}

impl SdpError {
    /// The SIP status code the switch answers with: always 488 (RFC 3261 §21.4.26,
    /// RFC 3264 §6).
    pub fn status_code(&self) -> u16 {
        488
    }
}

/// vigie's own `o=` line state for one leg (RFC 4566 §5.2, RFC 3264 §5 and §8).
///
/// The session id stays the same for the whole dialog; the version is incremented by one
/// for every new SDP produced by [`anchor`]. A retransmitted response must reuse the bytes
/// already produced, not call [`anchor`] again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalOrigin {
    session_id: u64,
    next_version: u64,
}

impl LocalOrigin {
    /// A new origin for one leg. `session_id` should be random (e.g. `rand::random()`);
    /// the first SDP carries version `session_id % 2^32` so the numbers stay short.
    pub fn new(session_id: u64) -> Self {
        Self {
            session_id,
            next_version: session_id & 0xffff_ffff,
        }
    }

    /// The `<sess-id>` of this leg's `o=` line.
    pub fn session_id(&self) -> u64 {
        self.session_id
    }

    /// The `<sess-version>` the next SDP will carry.
    pub fn next_version(&self) -> u64 {
        self.next_version
    }

    fn take_version(&mut self) -> u64 {
        let v = self.next_version;
        self.next_version = self.next_version.wrapping_add(1);
        v
    }
}

/// A codec vigie relays (RTP payload types, RFC 3551 §6, RFC 4733 §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CodecKind {
    /// G.711 µ-law, static payload type 0, 8000 Hz.
    Pcmu,
    /// G.711 A-law, static payload type 8, 8000 Hz.
    Pcma,
    /// DTMF events (RFC 4733), dynamic payload type, 8000 Hz.
    TelephoneEvent,
}

/// One payload type kept in the anchored SDP, with the `a=rtpmap`/`a=fmtp` values received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Codec {
    /// RTP payload type number (0–127).
    pub payload_type: u8,
    /// What the payload type carries.
    pub kind: CodecKind,
    /// The `a=rtpmap:` value after the payload type (e.g. `PCMU/8000`), if present.
    pub rtpmap: Option<String>,
    /// The `a=fmtp:` value after the payload type (e.g. `0-15`), if present.
    pub fmtp: Option<String>,
}

/// Media direction of the audio stream (RFC 3264 §5.1, RFC 4566 §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// `a=sendrecv` (the default when no direction attribute is present).
    SendRecv,
    /// `a=sendonly` (typically: the sender puts the other party on hold).
    SendOnly,
    /// `a=recvonly`.
    RecvOnly,
    /// `a=inactive`.
    Inactive,
}

impl Direction {
    fn as_str(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    fn from_attribute(name: &str) -> Option<Self> {
        match name {
            "sendrecv" => Some(Direction::SendRecv),
            "sendonly" => Some(Direction::SendOnly),
            "recvonly" => Some(Direction::RecvOnly),
            "inactive" => Some(Direction::Inactive),
            _ => None,
        }
    }
}

/// The result of [`anchor`].
#[derive(Debug, Clone)]
pub struct Anchored {
    /// The SDP vigie sends to the other leg (CRLF line ends): vigie's `o=`, one session-level
    /// `c=` with the relay address, the audio `m=` line on the relay port with only the kept
    /// codecs, and every other `m=` line rejected with port 0 (RFC 3264 §6, §8.2).
    pub sdp: Bytes,
    /// Where the sending leg expects RTP (its `c=` address and audio `m=` port), to give to
    /// `RelaySession::set_peer_hint` until symmetric latching (RFC 4961) takes over.
    /// `None` when the connection address is unspecified (`0.0.0.0` or `::`, the RFC 2543
    /// hold form, RFC 3264 §8.4).
    pub peer: Option<SocketAddr>,
    /// Where the sending leg expects RTCP: the `a=rtcp:` port (RFC 3605) if present, else
    /// the RTP port + 1 (RFC 3550 §11). `None` when [`Anchored::peer`] is `None`.
    pub peer_rtcp: Option<SocketAddr>,
    /// The kept payload types in the sender's order (PCMU, PCMA, telephone-event only).
    pub codecs: Vec<Codec>,
    /// Direction of the audio stream as sent by the leg (media-level attribute, else
    /// session-level, else `sendrecv`), written into [`Anchored::sdp`]. A `c=` address of
    /// `0.0.0.0`/`::` (RFC 2543 hold) removes "receive": `sendrecv` becomes `sendonly` and
    /// `recvonly` becomes `inactive` (RFC 3264 §8.4), since vigie's own address replaces it.
    pub direction: Direction,
    /// Index of the audio `m=` line that is relayed, among all `m=` lines (0-based).
    pub audio_index: usize,
}

/// Anchor a remote SDP (an offer or an answer, RFC 3264 §5/§6) at vigie's relay.
///
/// * `body`: the SDP received from one leg (UTF-8, CRLF or LF line ends).
/// * `relay`: vigie's relay RTP address for the *other* leg (the address and port that leg
///   must send RTP to; RTCP is implicitly `relay.port() + 1`, RFC 3550 §11).
/// * `origin`: vigie's `o=` state for the other leg; its version is incremented.
///
/// The first `m=audio` line with a non-zero port, an `RTP/AVP` or `RTP/AVPF` transport and at
/// least PCMU or PCMA is relayed; its formats are filtered to PCMU (0), PCMA (8) and
/// telephone-event (dynamic, its `a=rtpmap`/`a=fmtp` kept), in the sender's order. Of its
/// attributes only `rtpmap`/`fmtp` of kept formats, `ptime`, `maxptime` and the direction are
/// kept; ICE, DTLS/SDES crypto, `a=rtcp`, `a=rtcp-mux`, `rtcp-fb`, `extmap`, `ssrc`, `mid`
/// and the rest are removed. All other `m=` lines keep their position and first format but
/// get port 0 (RFC 3264 §6 and §8.2), so the m-line count of both legs stays equal.
///
/// # Errors
/// [`SdpError::Parse`] if the body does not parse, [`SdpError::NoAudio`] if no audio stream is
/// active, [`SdpError::NoSupportedCodec`] if it carries neither PCMU nor PCMA,
/// [`SdpError::MissingConnection`] / [`SdpError::InvalidConnection`] if its address is
/// missing or not an IP literal. All map to 488.
pub fn anchor(
    body: &[u8],
    relay: SocketAddr,
    origin: &mut LocalOrigin,
) -> Result<Anchored, SdpError> {
    let remote = Session::parse(body)?;

    let mut chosen: Option<(usize, Vec<Codec>)> = None;
    let mut saw_audio = false;
    for (index, media) in remote.medias.iter().enumerate() {
        if !is_relayable_audio(media) {
            continue;
        }
        saw_audio = true;
        let codecs = supported_codecs(media);
        if codecs
            .iter()
            .any(|c| matches!(c.kind, CodecKind::Pcmu | CodecKind::Pcma))
        {
            chosen = Some((index, codecs));
            break;
        }
    }
    let (audio_index, codecs) = match chosen {
        Some(found) => found,
        None if saw_audio => return Err(SdpError::NoSupportedCodec),
        None => return Err(SdpError::NoAudio),
    };
    let audio = remote.medias.get(audio_index).ok_or(SdpError::NoAudio)?;

    let connection = audio
        .connections
        .first()
        .or(remote.connection.as_ref())
        .ok_or(SdpError::MissingConnection)?;
    let peer_ip = connection_ip(connection)?;
    let mut direction = media_direction(audio)
        .or_else(|| session_direction(&remote))
        .unwrap_or(Direction::SendRecv);
    let (peer, peer_rtcp) = if peer_ip.is_unspecified() {
        // RFC 2543 hold (RFC 3264 §8.4): the sender does not want to receive media.
        direction = match direction {
            Direction::SendRecv | Direction::SendOnly => Direction::SendOnly,
            Direction::RecvOnly | Direction::Inactive => Direction::Inactive,
        };
        (None, None)
    } else {
        let rtp = SocketAddr::new(peer_ip, audio.port);
        let rtcp_port = rtcp_port(audio).unwrap_or_else(|| audio.port.wrapping_add(1));
        (Some(rtp), Some(SocketAddr::new(peer_ip, rtcp_port)))
    };

    let mut local = Session::new(
        Origin {
            username: Some("vigie".to_owned()),
            sess_id: origin.session_id.to_string(),
            sess_version: origin.take_version(),
            nettype: NetType::In,
            addrtype: AddrType::from(relay.ip()),
            unicast_address: relay.ip().to_string(),
        },
        "-",
    );
    local.connection = Some(Connection::from_ip_addr(relay.ip()));
    for (index, media) in remote.medias.iter().enumerate() {
        if index == audio_index {
            local
                .medias
                .push(anchored_audio(media, &codecs, relay, direction));
        } else {
            local.medias.push(rejected(media));
        }
    }

    Ok(Anchored {
        sdp: Bytes::from(local.to_string()),
        peer,
        peer_rtcp,
        codecs,
        direction,
        audio_index,
    })
}

fn is_relayable_audio(media: &Media) -> bool {
    media.media == "audio"
        && media.port != 0
        && (media.proto.eq_ignore_ascii_case("RTP/AVP")
            || media.proto.eq_ignore_ascii_case("RTP/AVPF"))
}

/// The formats of `media` vigie keeps, in the order of the `m=` line.
fn supported_codecs(media: &Media) -> Vec<Codec> {
    let mut codecs = Vec::new();
    for fmt in media.fmt.split_ascii_whitespace() {
        let Ok(pt) = fmt.parse::<u8>() else { continue };
        if pt > 127 || codecs.iter().any(|c: &Codec| c.payload_type == pt) {
            continue;
        }
        let rtpmap = pt_attribute(media, "rtpmap", pt);
        let fmtp = pt_attribute(media, "fmtp", pt);
        let mut encoding = rtpmap.as_deref().map(|v| v.split('/'));
        let name = encoding
            .as_mut()
            .and_then(Iterator::next)
            .map(str::to_ascii_lowercase);
        let clock = encoding.as_mut().and_then(Iterator::next).map(str::trim);
        let kind = match (pt, name.as_deref(), clock) {
            // A static payload type with a contradicting rtpmap is not what it claims.
            (0, None | Some("pcmu"), None | Some("8000")) => CodecKind::Pcmu,
            (8, None | Some("pcma"), None | Some("8000")) => CodecKind::Pcma,
            // Events must share the 8000 Hz clock of G.711 (RFC 4733 §2.1); keep one only.
            (96..=127, Some("telephone-event"), Some("8000"))
                if !codecs.iter().any(|c| c.kind == CodecKind::TelephoneEvent) =>
            {
                CodecKind::TelephoneEvent
            }
            _ => continue,
        };
        codecs.push(Codec {
            payload_type: pt,
            kind,
            rtpmap,
            fmtp,
        });
    }
    codecs
}

/// Value of `a=<name>:<pt> <value>` for payload type `pt`, without the payload type.
fn pt_attribute(media: &Media, name: &str, pt: u8) -> Option<String> {
    media
        .attributes
        .iter()
        .filter(|a| a.attribute.eq_ignore_ascii_case(name))
        .filter_map(|a| a.value.as_deref())
        .find_map(|v| {
            let (first, rest) = v.trim().split_once(|c: char| c.is_ascii_whitespace())?;
            (first.parse::<u8>().ok()? == pt).then(|| rest.trim().to_owned())
        })
}

fn media_direction(media: &Media) -> Option<Direction> {
    media
        .attributes
        .iter()
        .find_map(|a| Direction::from_attribute(&a.attribute))
}

fn session_direction(session: &Session) -> Option<Direction> {
    session
        .attributes
        .iter()
        .find_map(|a| Direction::from_attribute(&a.attribute))
}

/// The port of an `a=rtcp:<port> [IN IP4 addr]` attribute (RFC 3605 §2.1).
fn rtcp_port(media: &Media) -> Option<u16> {
    media
        .attributes
        .iter()
        .find(|a| a.attribute.eq_ignore_ascii_case("rtcp"))
        .and_then(|a| a.value.as_deref())
        .and_then(|v| v.split_ascii_whitespace().next())
        .and_then(|p| p.parse().ok())
}

fn connection_ip(connection: &Connection) -> Result<IpAddr, SdpError> {
    let invalid = || SdpError::InvalidConnection {
        address: connection.connection_address.clone(),
    };
    if connection.nettype != NetType::In || !connection.addrtype.is_ip() {
        return Err(invalid());
    }
    // Strip a multicast "/ttl[/count]" suffix (RFC 4566 §5.7).
    let literal = connection
        .connection_address
        .split('/')
        .next()
        .unwrap_or_default();
    literal.parse::<IpAddr>().map_err(|_| invalid())
}

fn anchored_audio(
    remote: &Media,
    codecs: &[Codec],
    relay: SocketAddr,
    direction: Direction,
) -> Media {
    let mut fmt = String::new();
    for codec in codecs {
        if !fmt.is_empty() {
            fmt.push(' ');
        }
        // Writing into a String cannot fail.
        let _ = write!(fmt, "{}", codec.payload_type);
    }
    let mut media = Media {
        media: remote.media.clone(),
        port: relay.port(),
        num_ports: None,
        proto: remote.proto.clone(),
        fmt,
        media_title: None,
        connections: Vec::new(),
        bandwidths: Vec::new(),
        key: None,
        attributes: Vec::new(),
    };
    for codec in codecs {
        if let Some(rtpmap) = &codec.rtpmap {
            media.attributes.push(Attribute::with_value(
                "rtpmap",
                format!("{} {rtpmap}", codec.payload_type),
            ));
        }
        if let Some(fmtp) = &codec.fmtp {
            media.attributes.push(Attribute::with_value(
                "fmtp",
                format!("{} {fmtp}", codec.payload_type),
            ));
        }
    }
    for keep in ["ptime", "maxptime"] {
        if let Some(a) = remote
            .attributes
            .iter()
            .find(|a| a.attribute.eq_ignore_ascii_case(keep))
        {
            media.attributes.push(a.clone());
        }
    }
    media.attributes.push(Attribute::new(direction.as_str()));
    media
}

/// A stream vigie does not relay: same media and transport, port 0, first format only
/// (RFC 3264 §6: a rejected stream keeps at least one format).
fn rejected(remote: &Media) -> Media {
    let fmt = remote
        .fmt
        .split_ascii_whitespace()
        .next()
        .unwrap_or("0")
        .to_owned();
    Media {
        media: remote.media.clone(),
        port: 0,
        num_ports: None,
        proto: remote.proto.clone(),
        fmt,
        media_title: None,
        connections: Vec::new(),
        bandwidths: Vec::new(),
        key: None,
        attributes: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/corpus");

    fn relay4() -> SocketAddr {
        "203.0.113.5:40000".parse().unwrap()
    }

    /// The SDP body of a SIP message: everything after the first blank line.
    fn sip_body(raw: &[u8]) -> &[u8] {
        let crlf = raw.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4);
        let lf = raw.windows(2).position(|w| w == b"\n\n").map(|p| p + 2);
        let start = crlf.or(lf).unwrap();
        &raw[start..]
    }

    fn text(a: &Anchored) -> String {
        String::from_utf8(a.sdp.to_vec()).unwrap()
    }

    fn lines(a: &Anchored) -> Vec<String> {
        text(a)
            .split("\r\n")
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn sipp_default_offer_is_anchored() {
        // SIPp's uac scenario [media_ip]/[media_port] offer.
        let offer = b"v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\n\
c=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
        let mut origin = LocalOrigin::new(42);
        let a = anchor(offer, relay4(), &mut origin).unwrap();
        assert_eq!(
            lines(&a),
            vec![
                "v=0",
                "o=vigie 42 42 IN IP4 203.0.113.5",
                "s=-",
                "c=IN IP4 203.0.113.5",
                "t=0 0",
                "m=audio 40000 RTP/AVP 0",
                "a=rtpmap:0 PCMU/8000",
                "a=sendrecv",
            ]
        );
        assert_eq!(a.peer, Some("127.0.0.1:6000".parse().unwrap()));
        assert_eq!(a.peer_rtcp, Some("127.0.0.1:6001".parse().unwrap()));
        assert_eq!(a.codecs.len(), 1);
        assert_eq!(a.codecs[0].kind, CodecKind::Pcmu);
        assert_eq!(a.direction, Direction::SendRecv);
        // RFC 3264 §8: same session id, version + 1 on the next SDP.
        let b = anchor(offer, relay4(), &mut origin).unwrap();
        assert_eq!(lines(&b)[1], "o=vigie 42 43 IN IP4 203.0.113.5");
        // Our own output re-parses.
        Session::parse(&b.sdp).unwrap();
    }

    #[test]
    fn sipp_scenario_offer_from_corpus() {
        let xml = std::fs::read_to_string(format!(
            "{CORPUS}/sipp/asterisk-testsuite/geolocation_round-trip_gml__invite_gml.xml"
        ))
        .unwrap();
        let start = xml.find("v=0").unwrap();
        let sdp: String = xml[start..]
            .lines()
            .map(str::trim)
            .take_while(|l| !l.is_empty())
            .map(|l| {
                let l = l
                    .replace("[media_ip_type]", "4")
                    .replace("[media_ip]", "127.0.0.1")
                    .replace("[media_port]", "6000");
                format!("{l}\r\n")
            })
            .collect();
        let a = anchor(sdp.as_bytes(), relay4(), &mut LocalOrigin::new(11)).unwrap();
        assert_eq!(a.peer, Some("127.0.0.1:6000".parse().unwrap()));
        assert_eq!(
            lines(&a)[5..],
            [
                "m=audio 40000 RTP/AVP 0",
                "a=rtpmap:0 PCMU/8000",
                "a=ptime:20",
                "a=sendrecv"
            ]
        );
    }

    #[test]
    fn offer_answer_round_trip_through_both_legs() {
        // A (trunk) offers audio + video; vigie offers B on B's relay port.
        let offer_a = b"v=0\r\no=trunk 10 10 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\n\
t=0 0\r\nm=audio 49170 RTP/AVP 8 0 101\r\na=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-15\r\nm=video 51372 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n";
        let relay_a: SocketAddr = "203.0.113.5:40000".parse().unwrap();
        let relay_b: SocketAddr = "203.0.113.5:40002".parse().unwrap();
        let (mut origin_a, mut origin_b) = (LocalOrigin::new(100), LocalOrigin::new(200));
        let to_b = anchor(offer_a, relay_b, &mut origin_b).unwrap();
        assert_eq!(to_b.peer, Some("192.0.2.10:49170".parse().unwrap()));
        assert!(text(&to_b).contains("m=audio 40002 RTP/AVP 8 0 101\r\n"));
        assert!(text(&to_b).contains("m=video 0 RTP/AVP 96\r\n"));

        // B (the seat, behind NAT) answers PCMA + events and rejects video (RFC 3264 §6).
        let answer_b =
            b"v=0\r\no=seat 5 5 IN IP4 10.1.2.3\r\ns=-\r\nc=IN IP4 10.1.2.3\r\nt=0 0\r\n\
m=audio 7078 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-15\r\nm=video 0 RTP/AVP 96\r\n";
        let to_a = anchor(answer_b, relay_a, &mut origin_a).unwrap();
        assert_eq!(to_a.peer, Some("10.1.2.3:7078".parse().unwrap()));
        assert_eq!(
            lines(&to_a),
            vec![
                "v=0",
                "o=vigie 100 100 IN IP4 203.0.113.5",
                "s=-",
                "c=IN IP4 203.0.113.5",
                "t=0 0",
                "m=audio 40000 RTP/AVP 8 101",
                "a=rtpmap:8 PCMA/8000",
                "a=rtpmap:101 telephone-event/8000",
                "a=fmtp:101 0-15",
                "a=sendrecv",
                "m=video 0 RTP/AVP 96",
            ]
        );
        assert_eq!(origin_a.next_version(), 101);
        assert_eq!(origin_b.next_version(), 201);
    }

    proptest::proptest! {
        /// Any list of payload types keeps exactly PCMU, PCMA and the first 8 kHz
        /// telephone-event, in order; anchoring vigie's own output again is a fixed point.
        #[test]
        fn codec_filter_and_reanchor_fixed_point(
            pts in proptest::collection::vec(
                proptest::sample::select(vec![0u8, 3, 8, 9, 18, 96, 101, 110, 111]), 1..8),
        ) {
            let mut sdp = String::from("v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\n\
    c=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 5004 RTP/AVP");
            for pt in &pts {
                sdp.push_str(&format!(" {pt}"));
            }
            sdp.push_str("\r\na=rtpmap:96 opus/48000/2\r\na=rtpmap:101 telephone-event/8000\r\n\
    a=rtpmap:110 telephone-event/8000\r\na=rtpmap:111 telephone-event/48000\r\n");
            let mut expected: Vec<u8> = Vec::new();
            for &pt in &pts {
                let keep = match pt {
                    0 | 8 => !expected.contains(&pt),
                    101 | 110 => !expected.iter().any(|p| *p == 101 || *p == 110),
                    _ => false,
                };
                if keep {
                    expected.push(pt);
                }
            }
            let result = anchor(sdp.as_bytes(), relay4(), &mut LocalOrigin::new(1));
            if expected.iter().any(|p| *p == 0 || *p == 8) {
                let first = result.unwrap();
                let kept: Vec<u8> = first.codecs.iter().map(|c| c.payload_type).collect();
                proptest::prop_assert_eq!(&kept, &expected);
                let again = anchor(&first.sdp, relay4(), &mut LocalOrigin::new(1)).unwrap();
                proptest::prop_assert_eq!(&again.codecs, &first.codecs);
                proptest::prop_assert_eq!(&again.sdp, &first.sdp);
            } else {
                proptest::prop_assert!(matches!(result, Err(SdpError::NoSupportedCodec)));
            }
        }

        /// Arbitrary bytes never panic.
        #[test]
        fn arbitrary_bytes_do_not_panic(body in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
            let _ = anchor(&body, relay4(), &mut LocalOrigin::new(1));
        }
    }

    #[test]
    fn linphone_like_offer_with_opus_ice_rtcp_mux_is_filtered() {
        let offer = "v=0\r\n\
o=alice 3049 1230 IN IP4 192.168.1.20\r\n\
s=Talk\r\n\
c=IN IP4 192.168.1.20\r\n\
t=0 0\r\n\
a=ice-pwd:31ec21eb38b2ec6d36e8dc7b\r\n\
a=ice-ufrag:07b6b5d7\r\n\
a=rtcp-xr:rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics\r\n\
m=audio 7078 RTP/AVP 96 97 98 0 8 18 101 99 100\r\n\
a=rtpmap:96 opus/48000/2\r\n\
a=fmtp:96 useinbandfec=1\r\n\
a=rtpmap:97 speex/16000\r\n\
a=rtpmap:98 speex/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=rtpmap:99 telephone-event/48000\r\n\
a=rtpmap:100 telephone-event/16000\r\n\
a=rtcp:7079\r\n\
a=rtcp-mux\r\n\
a=candidate:1 1 UDP 2130706431 192.168.1.20 7078 typ host\r\n\
a=candidate:1 2 UDP 2130706430 192.168.1.20 7079 typ host\r\n\
a=candidate:2 1 UDP 1694498815 198.51.100.7 7078 typ srflx raddr 192.168.1.20 rport 7078\r\n\
a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\n\
a=rtcp-fb:* trr-int 1000\r\n\
a=ptime:20\r\n\
a=sendrecv\r\n";
        let mut origin = LocalOrigin::new(7);
        let a = anchor(offer.as_bytes(), relay4(), &mut origin).unwrap();
        assert_eq!(
            lines(&a),
            vec![
                "v=0",
                "o=vigie 7 7 IN IP4 203.0.113.5",
                "s=-",
                "c=IN IP4 203.0.113.5",
                "t=0 0",
                "m=audio 40000 RTP/AVP 0 8 101",
                "a=rtpmap:101 telephone-event/8000",
                "a=fmtp:101 0-16",
                "a=ptime:20",
                "a=sendrecv",
            ]
        );
        let pts: Vec<u8> = a.codecs.iter().map(|c| c.payload_type).collect();
        assert_eq!(pts, vec![0, 8, 101]);
        assert_eq!(a.codecs[2].kind, CodecKind::TelephoneEvent);
        assert_eq!(a.codecs[2].fmtp.as_deref(), Some("0-16"));
        assert_eq!(a.peer, Some("192.168.1.20:7078".parse().unwrap()));
        assert_eq!(a.peer_rtcp, Some("192.168.1.20:7079".parse().unwrap()));
    }

    #[test]
    fn baresip_like_offer_keeps_offerer_order_and_direction() {
        let offer = "v=0\r\no=- 1 2 IN IP4 10.0.0.3\r\ns=-\r\nc=IN IP4 10.0.0.3\r\nt=0 0\r\n\
m=audio 10002 RTP/AVP 111 8 0 101\r\nb=AS:64\r\na=rtpmap:111 opus/48000/2\r\n\
a=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n\
a=rtcp:10005 IN IP4 10.0.0.3\r\na=sendonly\r\na=label:1\r\na=ssrc:1 cname:x\r\n";
        let a = anchor(offer.as_bytes(), relay4(), &mut LocalOrigin::new(1)).unwrap();
        let pts: Vec<u8> = a.codecs.iter().map(|c| c.payload_type).collect();
        assert_eq!(pts, vec![8, 0, 101]);
        assert_eq!(a.direction, Direction::SendOnly);
        assert_eq!(a.peer_rtcp, Some("10.0.0.3:10005".parse().unwrap()));
        let t = text(&a);
        assert!(t.contains("m=audio 40000 RTP/AVP 8 0 101\r\n"), "{t}");
        assert!(t.contains("a=sendonly\r\n"));
        for gone in ["opus", "b=AS", "rtcp:", "label", "ssrc", "111"] {
            assert!(!t.contains(gone), "{gone} left in {t}");
        }
    }

    #[test]
    fn ipv6_connection_and_relay() {
        let raw = std::fs::read(format!("{CORPUS}/rfc5118/ipv6-in-sdp.dat")).unwrap();
        // The audio stream offers only G726-32 (payload type 2).
        let err = anchor(sip_body(&raw), relay4(), &mut LocalOrigin::new(1)).unwrap_err();
        assert!(matches!(err, SdpError::NoSupportedCodec), "{err}");
        assert_eq!(err.status_code(), 488);

        let body = String::from_utf8(sip_body(&raw).to_vec())
            .unwrap()
            .replace("RTP/AVP 2", "RTP/AVP 0 2");
        let relay6: SocketAddr = "[2001:db8::99]:40002".parse().unwrap();
        let a = anchor(body.as_bytes(), relay6, &mut LocalOrigin::new(5)).unwrap();
        assert_eq!(a.peer, Some("[2001:db8::20]:6000".parse().unwrap()));
        assert_eq!(
            lines(&a),
            vec![
                "v=0",
                "o=vigie 5 5 IN IP6 2001:db8::99",
                "s=-",
                "c=IN IP6 2001:db8::99",
                "t=0 0",
                "m=audio 40002 RTP/AVP 0",
                "a=sendrecv",
                "m=video 0 RTP/AVP 107",
            ]
        );
    }

    #[test]
    fn media_level_connection_wins_over_session_level() {
        let raw = std::fs::read(format!("{CORPUS}/rfc5118/mult-ip-in-sdp.dat")).unwrap();
        let a = anchor(sip_body(&raw), relay4(), &mut LocalOrigin::new(9)).unwrap();
        assert_eq!(a.peer, Some("192.0.2.1:22334".parse().unwrap()));
        assert_eq!(a.audio_index, 0);
        let t = text(&a);
        assert!(t.contains("m=audio 40000 RTP/AVP 0\r\n"), "{t}");
        assert!(t.contains("m=video 0 RTP/AVP 107\r\n"), "{t}");
        assert!(!t.contains("2001:db8::1"), "{t}");
        assert!(!t.contains("192.0.2.1"), "{t}");
        assert_eq!(t.matches("c=").count(), 1);

        let session_level =
            b"v=0\r\no=- 1 1 IN IP4 198.51.100.1\r\ns=-\r\nc=IN IP4 198.51.100.1\r\n\
t=0 0\r\nm=audio 5004 RTP/AVP 8\r\n";
        let a = anchor(session_level, relay4(), &mut LocalOrigin::new(9)).unwrap();
        assert_eq!(a.peer, Some("198.51.100.1:5004".parse().unwrap()));
    }

    #[test]
    fn rejected_audio_and_later_audio_stream() {
        // First audio stream rejected (port 0), second one used; video rejected.
        let sdp =
            b"v=0\r\no=- 1 1 IN IP4 198.51.100.1\r\ns=-\r\nc=IN IP4 198.51.100.1\r\nt=0 0\r\n\
m=audio 0 RTP/AVP 0\r\nm=video 5006 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n\
m=audio 5004 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n";
        let a = anchor(sdp, relay4(), &mut LocalOrigin::new(3)).unwrap();
        assert_eq!(a.audio_index, 2);
        assert_eq!(a.peer, Some("198.51.100.1:5004".parse().unwrap()));
        let t = text(&a);
        assert!(
            t.contains(
                "m=audio 0 RTP/AVP 0\r\nm=video 0 RTP/AVP 96\r\nm=audio 40000 RTP/AVP 8\r\n"
            ),
            "{t}"
        );

        let all_rejected =
            b"v=0\r\no=- 1 1 IN IP4 198.51.100.1\r\ns=-\r\nc=IN IP4 198.51.100.1\r\n\
t=0 0\r\nm=audio 0 RTP/AVP 0\r\n";
        assert!(matches!(
            anchor(all_rejected, relay4(), &mut LocalOrigin::new(3)),
            Err(SdpError::NoAudio)
        ));
    }

    #[test]
    fn srtp_only_and_unparseable_and_no_connection_are_errors() {
        let savp =
            b"v=0\r\no=- 1 1 IN IP4 198.51.100.1\r\ns=-\r\nc=IN IP4 198.51.100.1\r\nt=0 0\r\n\
m=audio 5004 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:abc\r\n";
        assert!(matches!(
            anchor(savp, relay4(), &mut LocalOrigin::new(1)),
            Err(SdpError::NoAudio)
        ));
        assert!(matches!(
            anchor(b"hello", relay4(), &mut LocalOrigin::new(1)),
            Err(SdpError::Parse(_))
        ));
        let no_c =
            b"v=0\r\no=- 1 1 IN IP4 198.51.100.1\r\ns=-\r\nt=0 0\r\nm=audio 5004 RTP/AVP 0\r\n";
        assert!(matches!(
            anchor(no_c, relay4(), &mut LocalOrigin::new(1)),
            Err(SdpError::MissingConnection)
        ));
        let host = b"v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nc=IN IP4 host.example.com\r\nt=0 0\r\n\
m=audio 5004 RTP/AVP 0\r\n";
        assert!(matches!(
            anchor(host, relay4(), &mut LocalOrigin::new(1)),
            Err(SdpError::InvalidConnection { .. })
        ));
        // Telephone-event alone carries no speech.
        let dtmf_only = b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\n\
m=audio 5004 RTP/AVP 101\r\na=rtpmap:101 telephone-event/8000\r\n";
        assert!(matches!(
            anchor(dtmf_only, relay4(), &mut LocalOrigin::new(1)),
            Err(SdpError::NoSupportedCodec)
        ));
    }

    #[test]
    fn hold_forms_and_session_level_direction() {
        let old_hold = b"v=0\r\no=- 1 2 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\n\
a=recvonly\r\nm=audio 5004 RTP/AVP 0\r\n";
        let a = anchor(old_hold, relay4(), &mut LocalOrigin::new(1)).unwrap();
        assert_eq!(a.peer, None);
        assert_eq!(a.peer_rtcp, None);
        assert_eq!(a.direction, Direction::Inactive);
        assert!(text(&a).contains("a=inactive\r\n"));
        assert!(text(&a).contains("c=IN IP4 203.0.113.5\r\n"));

        let old_hold_sendrecv =
            b"v=0\r\no=- 1 2 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\n\
m=audio 5004 RTP/AVP 0\r\n";
        let a = anchor(old_hold_sendrecv, relay4(), &mut LocalOrigin::new(1)).unwrap();
        assert_eq!(a.direction, Direction::SendOnly);
        assert!(text(&a).contains("a=sendonly\r\n"));

        // Session-level direction applies when the media has none (RFC 4566 §6).
        let session_level =
            b"v=0\r\no=- 1 2 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\n\
a=sendonly\r\nm=audio 5004 RTP/AVP 0\r\n";
        let a = anchor(session_level, relay4(), &mut LocalOrigin::new(1)).unwrap();
        assert_eq!(a.direction, Direction::SendOnly);
        assert_eq!(a.peer, Some("1.2.3.4:5004".parse().unwrap()));
    }

    #[test]
    fn lf_only_and_static_pt_without_rtpmap() {
        let sdp = b"v=0\no=- 1 1 IN IP4 1.2.3.4\ns=-\nc=IN IP4 1.2.3.4\nt=0 0\nm=audio 5004 RTP/AVP 8 0\n\n";
        let a = anchor(sdp, relay4(), &mut LocalOrigin::new(1)).unwrap();
        let kinds: Vec<CodecKind> = a.codecs.iter().map(|c| c.kind).collect();
        assert_eq!(kinds, vec![CodecKind::Pcma, CodecKind::Pcmu]);
        assert!(a.codecs.iter().all(|c| c.rtpmap.is_none()));
    }
}
