//! Property tests for the SIP parser: serialise/re-parse round trips, no panics on any
//! input, and stream framing that is independent of how the octets are split.

use std::net::{Ipv4Addr, Ipv6Addr};

use bytes::Bytes;
use proptest::prelude::*;

use vigie::sip::header::{NameAddr, Via};
use vigie::sip::message::{HeaderName, Headers, Message, Method, Request, Response};
use vigie::sip::parse::{
    StreamFramer, error_response, frame_stream, is_keepalive, parse_datagram, parse_datagram_bytes,
};
use vigie::sip::uri::{Host, Param, Scheme, Uri};

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/corpus");

fn token() -> impl Strategy<Value = String> {
    "[A-Za-z0-9.!%*_+`'~-]{1,12}"
}

fn host() -> impl Strategy<Value = Host> {
    prop_oneof![
        "[a-z][a-z0-9-]{0,10}(\\.[a-z][a-z0-9-]{0,10}){0,3}".prop_map(Host::Name),
        any::<u32>().prop_map(|a| Host::V4(Ipv4Addr::from(a))),
        any::<u128>().prop_map(|a| Host::V6(Ipv6Addr::from(a))),
    ]
}

fn uri_params() -> impl Strategy<Value = Vec<Param>> {
    prop::collection::vec(
        (token(), prop::option::of(token())).prop_map(|(name, value)| Param { name, value }),
        0..4,
    )
}

/// A sip/sips URI; `with_headers` adds an `?h=v` part (not allowed in a Request-URI).
fn sip_uri(with_headers: bool) -> impl Strategy<Value = Uri> {
    (
        prop::bool::ANY,
        prop::option::of("[A-Za-z0-9_.!~*'()&=+$,;?/-]{1,10}|%[0-9A-F]{2}[a-z]{1,4}"),
        prop::option::of("[A-Za-z0-9_.!~*'()&=+$,-]{1,8}"),
        host(),
        prop::option::of(any::<u16>()),
        uri_params(),
        prop::option::of("[A-Za-z]{1,6}=[A-Za-z0-9%]{1,8}"),
    )
        .prop_map(
            move |(sips, user, password, host, port, params, headers)| Uri {
                scheme: if sips { Scheme::Sips } else { Scheme::Sip },
                password: user.as_ref().and(password),
                user,
                host,
                port,
                params,
                headers: if with_headers { headers } else { None },
            },
        )
}

fn any_uri(with_headers: bool) -> impl Strategy<Value = Uri> {
    prop_oneof![
        4 => sip_uri(with_headers),
        1 => "\\+[0-9]{1,12}(;phone-context=[a-z.]{1,8})?".prop_map(|n| Uri {
            scheme: Scheme::Tel,
            user: None,
            password: None,
            host: Host::Opaque(n),
            port: None,
            params: vec![],
            headers: None,
        }),
    ]
}

fn header_params() -> impl Strategy<Value = Vec<Param>> {
    prop::collection::vec(
        (
            token(),
            prop::option::of(prop_oneof![token(), "\"[a-z ,;<>é]{0,8}\""]),
        )
            .prop_map(|(name, value)| Param { name, value }),
        0..3,
    )
}

fn name_addr() -> impl Strategy<Value = NameAddr> {
    (
        prop::option::of(prop_oneof![
            "[A-Za-z0-9]{1,8}( [A-Za-z0-9]{1,8}){0,2}",
            "[ -~\u{e9}\u{4e2d}\t]{0,12}",
        ]),
        any_uri(true),
        header_params(),
    )
        .prop_map(|(display, uri, params)| NameAddr {
            display,
            uri,
            params,
        })
}

fn via() -> impl Strategy<Value = Via> {
    (
        prop_oneof![
            Just("UDP".to_string()),
            Just("TCP".to_string()),
            Just("TLS".to_string()),
            "[A-Z]{2,6}"
        ],
        host(),
        prop::option::of(any::<u16>()),
        header_params(),
        "[A-Za-z0-9]{1,10}",
    )
        .prop_map(|(transport, host, port, mut params, branch)| {
            params.insert(
                0,
                Param {
                    name: "branch".into(),
                    value: Some(format!("z9hG4bK{branch}")),
                },
            );
            Via {
                transport,
                host,
                port,
                params,
            }
        })
}

fn method() -> impl Strategy<Value = Method> {
    prop_oneof![
        Just(Method::Invite),
        Just(Method::Options),
        Just(Method::Bye),
        Just(Method::Register),
        Just(Method::Ack),
        "[A-Z]{3,10}".prop_map(|t| Method::from_token(&t)),
    ]
}

/// Unknown headers: `X-` names so they never collide with a typed header; values are
/// printable without leading/trailing whitespace.
fn extra_headers() -> impl Strategy<Value = Vec<(String, String)>> {
    prop::collection::vec(
        (
            "X-[A-Za-z0-9-]{1,10}",
            "([!-~\u{e9}]([ -~\u{e9}]{0,20}[!-~\u{e9}])?)?",
        ),
        0..4,
    )
}

/// The parts of a generated header block.
struct Parts {
    vias: Vec<Via>,
    from: NameAddr,
    to: NameAddr,
    call_id: String,
    max_forwards: Option<u32>,
    contacts: Vec<NameAddr>,
    extra: Vec<(String, String)>,
}

/// Header block shared by requests and responses; Content-Length last (as `to_bytes`
/// writes it) so the parsed message equals the generated one.
fn headers(p: Parts, cseq: (u32, &Method), body_len: usize) -> Headers {
    let mut h = Headers::new();
    for v in p.vias {
        h.push(HeaderName::Via, v.to_string());
    }
    h.push(HeaderName::From, p.from.to_string());
    h.push(HeaderName::To, p.to.to_string());
    h.push(HeaderName::CallId, p.call_id);
    h.push(HeaderName::CSeq, format!("{} {}", cseq.0, cseq.1));
    if let Some(m) = p.max_forwards {
        h.push(HeaderName::MaxForwards, m.to_string());
    }
    if !p.contacts.is_empty() {
        let list: Vec<String> = p.contacts.iter().map(ToString::to_string).collect();
        h.push(HeaderName::Contact, list.join(", "));
    }
    for (n, v) in p.extra {
        h.push(HeaderName::from_wire(&n), v);
    }
    h.push(HeaderName::ContentLength, body_len.to_string());
    h
}

fn request() -> impl Strategy<Value = Request> {
    (
        method(),
        any_uri(false),
        prop::collection::vec(via(), 1..4),
        (
            name_addr(),
            name_addr(),
            "[A-Za-z0-9.@!%*_+`'~()<>:\"/?{}-]{1,20}",
        ),
        (any::<u32>(), prop::option::of(any::<u32>())),
        prop::collection::vec(name_addr(), 0..3),
        extra_headers(),
        prop::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(
            |(method, uri, vias, (from, to, call_id), (seq, mf), contacts, extra, body)| {
                let parts = Parts {
                    vias,
                    from,
                    to,
                    call_id,
                    max_forwards: mf,
                    contacts,
                    extra,
                };
                let headers = headers(parts, (seq, &method), body.len());
                Request {
                    method,
                    uri,
                    headers,
                    body: Bytes::from(body),
                }
            },
        )
}

fn response() -> impl Strategy<Value = Response> {
    (
        100u16..=699,
        "[ -~\u{e9}\u{4e2d}]{0,20}",
        prop::collection::vec(via(), 1..3),
        (name_addr(), name_addr(), "[A-Za-z0-9.@-]{1,20}"),
        (any::<u32>(), method()),
        extra_headers(),
        prop::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(
            |(status, reason, vias, (from, to, call_id), (seq, m), extra, body)| {
                let parts = Parts {
                    vias,
                    from,
                    to,
                    call_id,
                    max_forwards: None,
                    contacts: vec![],
                    extra,
                };
                let headers = headers(parts, (seq, &m), body.len());
                Response {
                    status,
                    reason,
                    headers,
                    body: Bytes::from(body),
                }
            },
        )
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        request().prop_map(Message::Request),
        response().prop_map(Message::Response)
    ]
}

/// Every corpus file, for mutation.
fn corpus_files() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for dir in ["rfc4475", "rfc5118", "rfc5118/wire"] {
        let Ok(entries) = std::fs::read_dir(format!("{CORPUS}/{dir}")) else {
            continue;
        };
        let mut paths: Vec<_> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "dat"))
            .collect();
        paths.sort();
        out.extend(paths.iter().filter_map(|p| std::fs::read(p).ok()));
    }
    out
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Insert(usize, u8),
    Delete(usize),
    Truncate(usize),
    Duplicate(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let special = prop_oneof![
        Just(b'\r'),
        Just(b'\n'),
        Just(b':'),
        Just(b';'),
        Just(b','),
        Just(b'"'),
        Just(b'<'),
        Just(b'>'),
        Just(b'['),
        Just(b']'),
        Just(b'%'),
        Just(b' '),
        Just(b'\\'),
        Just(0xc3u8),
        Just(0xffu8),
        any::<u8>(),
    ];
    prop_oneof![
        (any::<usize>(), special.clone()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<usize>(), special).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Delete),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::Duplicate(a, b)),
    ]
}

fn apply(buf: &mut Vec<u8>, m: &Mutation) {
    if buf.is_empty() {
        return;
    }
    let n = buf.len();
    match *m {
        Mutation::Flip(i, b) => buf[i % n] = b,
        Mutation::Insert(i, b) => buf.insert(i % (n + 1), b),
        Mutation::Delete(i) => {
            buf.remove(i % n);
        }
        Mutation::Truncate(i) => buf.truncate(i % (n + 1)),
        Mutation::Duplicate(a, b) => {
            let (a, b) = (a % n, b % n);
            let (lo, hi) = (a.min(b), a.max(b));
            let chunk = buf[lo..hi].to_vec();
            buf.splice(hi..hi, chunk);
        }
    }
}

/// Exercises every entry point; returns nothing, must not panic.
fn poke(buf: &[u8]) {
    let parsed = parse_datagram(buf);
    assert_eq!(parse_datagram_bytes(&Bytes::copy_from_slice(buf)), parsed);
    match parsed {
        Ok(m) => {
            // Whatever parses re-serialises and re-parses.
            let again = parse_datagram(&m.to_bytes());
            assert!(again.is_ok(), "re-parse failed: {again:?}");
        }
        Err(e) => {
            assert!(
                e.reason_phrase()
                    .chars()
                    .all(|c| c == ' ' || c.is_ascii_graphic())
            );
            if let Some(r) = error_response(buf, &e) {
                assert!(r.status == 400 || r.status == 505);
                let _ = r.to_bytes();
            }
        }
    }
    if let Ok(Some(n)) = frame_stream(buf) {
        assert!(n > 0 && n <= buf.len());
        if !is_keepalive(&buf[..n]) {
            let _ = parse_datagram(&buf[..n]);
        }
    }
}

fn without_content_length(mut m: Message) -> Message {
    match &mut m {
        Message::Request(r) => r.headers.remove(&HeaderName::ContentLength),
        Message::Response(r) => r.headers.remove(&HeaderName::ContentLength),
    }
    m
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn uri_display_parse_round_trip(u in any_uri(true)) {
        let text = u.to_string();
        prop_assert_eq!(Uri::parse(&text), Ok(u));
    }

    #[test]
    fn via_display_parse_round_trip(v in via()) {
        let text = v.to_string();
        prop_assert_eq!(Via::parse_list(&text), Ok(vec![v]));
    }

    #[test]
    fn name_addr_display_parse_round_trip(n in name_addr()) {
        let text = n.to_string();
        let mut expected = n.clone();
        // CR/LF/TAB in a display name cannot be carried in a quoted-pair; Display writes
        // CR and LF as spaces.
        expected.display = n.display.map(|d| d.replace(['\r', '\n'], " "));
        prop_assert_eq!(NameAddr::parse(&text), Ok(expected));
    }

    #[test]
    fn request_round_trip(r in request()) {
        let wire = r.to_bytes();
        prop_assert_eq!(parse_datagram(&wire), Ok(Message::Request(r)));
        prop_assert_eq!(frame_stream(&wire), Ok(Some(wire.len())));
    }

    #[test]
    fn response_round_trip(r in response()) {
        let wire = r.to_bytes();
        prop_assert_eq!(parse_datagram(&wire), Ok(Message::Response(r)));
    }

    #[test]
    fn arbitrary_bytes_never_panic(buf in prop::collection::vec(any::<u8>(), 0..600)) {
        poke(&buf);
    }

    #[test]
    fn sip_like_text_never_panics(text in "(SIP/2.0 |INVITE sip:)[ -~\r\n\t\u{e9}]{0,400}") {
        poke(text.as_bytes());
    }

    #[test]
    fn mutated_corpus_never_panics(
        pick in any::<prop::sample::Index>(),
        muts in prop::collection::vec(mutation(), 1..8),
    ) {
        let files = corpus_files();
        prop_assert!(files.len() >= 70, "corpus missing");
        let mut buf = pick.get(&files).clone();
        for m in &muts {
            apply(&mut buf, m);
        }
        poke(&buf);
    }

    #[test]
    fn mutated_generated_messages_never_panic(
        m in message(),
        muts in prop::collection::vec(mutation(), 1..6),
    ) {
        let mut buf = m.to_bytes();
        for mu in &muts {
            apply(&mut buf, mu);
        }
        poke(&buf);
    }

    #[test]
    fn stream_split_anywhere_yields_the_same_messages(
        msgs in prop::collection::vec((message(), prop::bool::ANY), 1..5),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
    ) {
        let mut stream = Vec::new();
        for (m, keepalive) in &msgs {
            if *keepalive {
                stream.extend_from_slice(b"\r\n\r\n");
            }
            stream.extend_from_slice(&m.to_bytes());
        }
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
        points.push(stream.len());
        points.sort_unstable();
        let mut buf: Vec<u8> = Vec::new();
        let mut got = Vec::new();
        let mut keepalives = 0;
        let mut from = 0;
        let mut framer = StreamFramer::new();
        let fail = |e: vigie::sip::parse::ParseError| TestCaseError::fail(e.to_string());
        for p in points {
            buf.extend_from_slice(&stream[from..p]);
            from = p;
            loop {
                // The stateless and the incremental framer agree at every step.
                let stateless = frame_stream(&buf).map_err(fail)?;
                let incremental = framer.frame(&buf).map_err(fail)?;
                prop_assert_eq!(stateless, incremental);
                let Some(n) = stateless else { break };
                let frame: Vec<u8> = buf.drain(..n).collect();
                if is_keepalive(&frame) {
                    keepalives += 1;
                } else {
                    got.push(parse_datagram(&frame).map_err(fail)?);
                }
            }
        }
        prop_assert!(buf.is_empty());
        let flagged = msgs.iter().filter(|(_, k)| *k).count();
        // A CRLFCRLF split across reads may arrive as up to four frames.
        prop_assert!(keepalives >= flagged && keepalives <= 4 * flagged);
        let expected: Vec<Message> = msgs.into_iter().map(|(m, _)| m).collect();
        prop_assert_eq!(got.len(), expected.len());
        for (g, e) in got.into_iter().zip(expected) {
            prop_assert_eq!(without_content_length(g), without_content_length(e));
        }
    }
}
