//! RFC 4475 and RFC 5118 torture messages fed to the parser, with an explicit expected
//! outcome per file. Files are read in place from `../shared/corpus/`.
//!
//! Semantic answers (416, 420, 501, …) are the switch's job; for those files the table
//! notes the status the switch should send, and the parser is only required to parse.

use std::collections::BTreeSet;

use vigie::sip::header::CSeq;
use vigie::sip::message::{HeaderName, Message, Method, Request, Response, SipHeaders};
use vigie::sip::parse::{ParseError, error_response, frame_stream, is_keepalive, parse_datagram};
use vigie::sip::uri::{Host, Scheme};

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/corpus");

/// What the parser must do with a file.
enum Expect {
    /// Parses; the function checks specific values.
    Ok(fn(&Message, &[u8])),
    /// Fails with an error the function accepts; `answer` is what `error_response` must give
    /// (`None` for responses and for requests without a readable Via).
    Err(fn(&ParseError) -> bool, Option<u16>),
}

/// One row: file (relative to the corpus dir), expectation, and the status the switch
/// should send for a message that parses but is semantically refused (documentation;
/// `None` = process normally).
struct Case {
    file: &'static str,
    expect: Expect,
    switch_status: Option<u16>,
}

fn case(file: &'static str, expect: Expect, switch_status: Option<u16>) -> Case {
    Case {
        file,
        expect,
        switch_status,
    }
}

fn req(m: &Message) -> &Request {
    match m {
        Message::Request(r) => r,
        Message::Response(_) => panic!("expected a request"),
    }
}

fn resp(m: &Message) -> &Response {
    match m {
        Message::Response(r) => r,
        Message::Request(_) => panic!("expected a response"),
    }
}

fn header<'a>(r: &'a Request, name: &str) -> Option<&'a str> {
    r.headers.get(&HeaderName::from_wire(name))
}

fn v6(s: &str) -> Host {
    Host::V6(s.parse().expect("test literal"))
}

fn rfc4475_table() -> Vec<Case> {
    use Expect::{Err as E, Ok as O};
    vec![
        case(
            "wsinv.dat",
            O(|m, _| {
                let r = req(m);
                assert_eq!(r.method, Method::Invite);
                assert_eq!(r.uri.param("unknownparam"), Some(None));
                assert_eq!(r.max_forwards().unwrap(), Some(68));
                assert_eq!(
                    r.cseq().unwrap(),
                    CSeq {
                        seq: 9,
                        method: Method::Invite
                    }
                );
                assert_eq!(
                    header(r, "NewFangledHeader"),
                    Some("newfangled value continued newfangled value")
                );
                assert_eq!(header(r, "UnknownHeaderWithUnusualValue"), Some(";;,,;;,;"));
                assert_eq!(header(r, "Subject"), Some(""));
                let to = r.header_to().unwrap();
                assert_eq!(to.tag(), Some("1918181833n"));
                let from = r.header_from().unwrap();
                assert_eq!(from.display.as_deref(), Some("J Rosenberg \\\""));
                assert_eq!(from.tag(), Some("98asjd8"));
                let vias = r.vias().unwrap();
                assert_eq!(vias.len(), 3);
                assert_eq!(
                    (vias[0].transport.as_str(), vias[0].branch()),
                    ("UDP", Some("390skdjuw"))
                );
                assert_eq!(vias[1].host, Host::Name("spindle.example.com".into()));
                assert_eq!(
                    (vias[2].transport.as_str(), vias[2].branch()),
                    ("UDP", Some("z9hG4bK30239"))
                );
                let c = r.contacts().unwrap();
                assert_eq!(c.len(), 1);
                assert_eq!(c[0].display.as_deref(), Some("Quoted string \"\""));
                assert_eq!(c[0].param("newparam"), Some(Some("newvalue")));
                assert_eq!(c[0].param("secondparam"), Some(None));
                assert_eq!(c[0].param("q"), Some(Some("0.33")));
                let route = header(r, "Route").unwrap();
                assert_eq!(
                    route,
                    "<sip:services.example.com;lr;unknownwith=value;unknown-no-value>"
                );
                assert_eq!(r.body.len(), 150);
            }),
            None,
        ),
        case(
            "intmeth.dat",
            O(|m, _| {
                let r = req(m);
                let token = "!interesting-Method0123456789_*+`.%indeed'~";
                assert_eq!(r.method, Method::Other(token.into()));
                assert_eq!(r.cseq().unwrap().method.as_str(), token);
                assert_eq!(
                    r.uri.password.as_deref(),
                    Some("&it+has=1,weird!*pas$wo~d_too.(doesn't-it)")
                );
                let to = r.header_to().unwrap();
                assert_eq!(
                    to.display.as_deref(),
                    Some("BEL:\u{7} NUL:\u{0} DEL:\u{7f}")
                );
                assert_eq!(
                    r.call_id().unwrap(),
                    "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
                );
                assert_eq!(
                    header(r, "extensionHeader-!.%*+_`'~"),
                    Some("\u{FEFF}\u{5927}\u{505C}\u{96FB}")
                );
                let from = r.header_from().unwrap();
                assert_eq!(
                    from.display.as_deref(),
                    Some("token1~` token2'+_ token3*%!.-")
                );
                assert_eq!(from.tag(), Some("_token~1'+`*%!-."));
            }),
            Some(501),
        ),
        case(
            "esc01.dat",
            O(|m, _| {
                let r = req(m);
                assert_eq!(r.uri.user.as_deref(), Some("sips%3Auser%40example.com"));
                assert_eq!(r.uri.host, Host::Name("example.net".into()));
                let to = r.header_to().unwrap();
                assert_eq!(to.uri.user.as_deref(), Some("%75se%72"));
                assert_eq!(to.uri.user_unescaped().as_deref(), Some("user"));
                assert_eq!(
                    r.header_from().unwrap().uri.user_unescaped().as_deref(),
                    Some("I have spaces")
                );
                let c = &r.contacts().unwrap()[0];
                assert_eq!(c.uri.param("%6C%72"), Some(None));
                assert_eq!(c.uri.param("n%61me"), Some(Some("v%61lue%25%34%31")));
                let wire = String::from_utf8_lossy(&r.to_bytes()).into_owned();
                assert!(
                    wire.starts_with(
                        "INVITE sip:sips%3Auser%40example.com@example.net SIP/2.0\r\n"
                    )
                );
                assert!(wire.contains("To: sip:%75se%72@example.com\r\n"));
            }),
            None,
        ),
        case(
            "escnull.dat",
            O(|m, _| {
                let r = req(m);
                let c = r.contacts().unwrap();
                assert_eq!(c.len(), 2);
                assert_eq!(c[0].uri.user_unescaped().as_deref(), Some("\0"));
                assert_eq!(c[1].uri.user_unescaped().as_deref(), Some("\0\0"));
                assert!(!c[0].uri.equivalent(&c[1].uri));
                assert_eq!(
                    r.header_to().unwrap().uri.user_unescaped().as_deref(),
                    Some("null-\0-null")
                );
            }),
            None,
        ),
        case(
            "esc02.dat",
            O(|m, _| {
                let r = req(m);
                assert_eq!(r.method, Method::Other("RE%47IST%45R".into()));
                assert_eq!(r.contacts().unwrap().len(), 2);
                assert_eq!(
                    header(r, "C%6Fntact"),
                    Some("<sip:alias2@host2.example.com>")
                );
                assert_eq!(r.header_to().unwrap().display.as_deref(), Some("%Z%45"));
                assert_eq!(r.top_via().unwrap().branch(), Some("z9hG4bK209%fzsnel234"));
            }),
            Some(501),
        ),
        case(
            "lwsdisp.dat",
            O(|m, _| {
                let f = req(m).header_from().unwrap();
                assert_eq!(f.display.as_deref(), Some("caller"));
                assert_eq!(f.tag(), Some("323"));
            }),
            None,
        ),
        case(
            "longreq.dat",
            O(|m, _| {
                let r = req(m);
                let vias = r.vias().unwrap();
                assert_eq!(vias.len(), 34);
                assert_eq!(vias[0].host, Host::Name("sip33.example.com".into()));
                assert!(vias[33].branch().unwrap().len() > 200);
                let to = r.header_to().unwrap();
                assert!(to.display.unwrap().contains("extremeextreme"));
                assert_eq!(to.uri.port, Some(6000));
                assert!(r.header_from().unwrap().tag().unwrap().len() > 150);
                assert_eq!(r.body.len(), 150);
            }),
            None,
        ),
        case(
            "dblreq.dat",
            O(|m, _| {
                let r = req(m);
                assert_eq!(r.method, Method::Register);
                assert_eq!(
                    r.call_id().unwrap(),
                    "dblreq.0ha0isndaksdj99sdfafnl3lk233412"
                );
                assert_eq!(r.cseq().unwrap().method, Method::Register);
                assert!(r.body.is_empty());
            }),
            None,
        ),
        case(
            "semiuri.dat",
            O(|m, _| {
                let r = req(m);
                assert_eq!(r.uri.user.as_deref(), Some("user;par=u%40example.net"));
                assert_eq!(r.uri.host, Host::Name("example.com".into()));
                assert!(r.uri.params.is_empty());
                assert_eq!(
                    header(r, "Accept"),
                    Some(
                        "application/sdp, application/pkcs7-mime, multipart/mixed, multipart/signed, message/sip, message/sipfrag"
                    )
                );
            }),
            None,
        ),
        case(
            "transports.dat",
            O(|m, _| {
                let vias = req(m).vias().unwrap();
                let t: Vec<&str> = vias.iter().map(|v| v.transport.as_str()).collect();
                assert_eq!(t, ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]);
                assert_eq!(vias[0].host, Host::Name("t1.example.com".into()));
            }),
            None,
        ),
        case(
            "mpart01.dat",
            O(|m, raw| {
                let r = req(m);
                let declared: usize = header(r, "Content-Length").unwrap().parse().unwrap();
                assert_eq!(r.body.len(), declared);
                assert!(
                    std::str::from_utf8(&r.body).is_err(),
                    "binary part kept as raw octets"
                );
                assert!(raw.ends_with(&r.body));
                assert!(r.content_type().unwrap().starts_with("multipart/mixed"));
            }),
            None,
        ),
        case(
            "unreason.dat",
            O(|m, _| {
                let r = resp(m);
                assert_eq!(r.status, 200);
                assert!(r.reason.starts_with("= 2**3 * 5**2 "));
                assert!(!r.reason.is_ascii());
                assert_eq!(r.cseq().unwrap().seq, 35);
            }),
            None,
        ),
        case(
            "noreason.dat",
            O(|m, _| {
                let r = resp(m);
                assert_eq!((r.status, r.reason.as_str()), (100, ""));
            }),
            None,
        ),
        case(
            "badinv01.dat",
            E(|e| *e == ParseError::BadHeader("Via"), Some(400)),
            None,
        ),
        case(
            "clerr.dat",
            E(
                |e| matches!(e, ParseError::ContentLengthTooLarge { declared: 9999, .. }),
                Some(400),
            ),
            None,
        ),
        case(
            "ncl.dat",
            E(|e| *e == ParseError::BadHeader("Content-Length"), Some(400)),
            None,
        ),
        case(
            "scalar02.dat",
            E(|e| *e == ParseError::TooLarge("CSeq"), Some(400)),
            None,
        ),
        // A response: dropped, never answered.
        case(
            "scalarlg.dat",
            E(|e| *e == ParseError::TooLarge("CSeq"), None),
            None,
        ),
        case(
            "quotbal.dat",
            E(|e| *e == ParseError::UnterminatedQuote, Some(400)),
            None,
        ),
        case(
            "ltgtruri.dat",
            E(
                |e| matches!(e, ParseError::BadUri(u) if u.starts_with('<')),
                Some(400),
            ),
            None,
        ),
        case(
            "lwsruri.dat",
            E(|e| *e == ParseError::BadStartLine, Some(400)),
            None,
        ),
        case(
            "lwsstart.dat",
            E(|e| *e == ParseError::BadStartLine, Some(400)),
            None,
        ),
        case(
            "trws.dat",
            E(|e| *e == ParseError::BadStartLine, Some(400)),
            None,
        ),
        case(
            "escruri.dat",
            E(|e| *e == ParseError::HeadersInRequestUri, Some(400)),
            None,
        ),
        // Date is not interpreted by the parser; the switch ignores it.
        case(
            "baddate.dat",
            O(|m, _| {
                assert_eq!(
                    header(req(m), "Date"),
                    Some("Fri, 01 Jan 2010 16:00:00 EST")
                );
            }),
            None,
        ),
        case(
            "regbadct.dat",
            E(|e| *e == ParseError::BadHeader("name-addr"), Some(400)),
            None,
        ),
        case(
            "badaspec.dat",
            E(|e| matches!(e, ParseError::BadUri(_)), Some(400)),
            None,
        ),
        case(
            "baddn.dat",
            E(|e| *e == ParseError::BadHeader("name-addr"), Some(400)),
            None,
        ),
        case(
            "badvers.dat",
            E(|e| *e == ParseError::BadVersion, Some(505)),
            None,
        ),
        case(
            "mismatch01.dat",
            E(|e| *e == ParseError::CSeqMethodMismatch, Some(400)),
            None,
        ),
        // RFC 4475 prefers 501 here; 400 is allowed and is what we send.
        case(
            "mismatch02.dat",
            E(|e| *e == ParseError::CSeqMethodMismatch, Some(400)),
            None,
        ),
        // A response: dropped.
        case(
            "bigcode.dat",
            E(|e| *e == ParseError::BadStatusCode, None),
            None,
        ),
        // Parses; the transaction layer answers 400 or uses RFC 2543 matching.
        case(
            "badbranch.dat",
            O(|m, _| {
                assert_eq!(req(m).top_via().unwrap().branch(), Some("z9hG4bK"));
            }),
            Some(400),
        ),
        case(
            "insuf.dat",
            E(
                |e| matches!(e, ParseError::MissingHeader("From" | "To" | "Call-ID")),
                Some(400),
            ),
            None,
        ),
        case(
            "unkscm.dat",
            O(|m, _| {
                let r = req(m);
                assert_eq!(r.uri.scheme, Scheme::Other("nobodyknowsthisscheme".into()));
                assert!(!r.uri.is_sip());
            }),
            Some(416),
        ),
        case(
            "novelsc.dat",
            O(|m, _| {
                assert_eq!(req(m).uri.scheme, Scheme::Other("soap.beep".into()));
            }),
            Some(416),
        ),
        // A registrar answers 400 (To must be a SIP AoR).
        case(
            "unksm2.dat",
            O(|m, _| {
                let r = req(m);
                assert_eq!(
                    r.header_to().unwrap().uri.scheme,
                    Scheme::Other("isbn".into())
                );
                assert_eq!(
                    r.header_from().unwrap().uri.scheme,
                    Scheme::Other("http".into())
                );
                assert_eq!(
                    r.contacts().unwrap()[0].uri.host,
                    Host::Opaque("John_Smith".into())
                );
            }),
            Some(400),
        ),
        case(
            "bext01.dat",
            O(|m, _| {
                let r = req(m);
                assert_eq!(
                    header(r, "Require"),
                    Some("nothingSupportsThis, nothingSupportsThisEither")
                );
                assert_eq!(
                    header(r, "Proxy-Require"),
                    Some("noProxiesSupportThis, norDoAnyProxiesSupportThis")
                );
            }),
            Some(420),
        ),
        case(
            "invut.dat",
            O(|m, _| {
                assert_eq!(req(m).content_type(), Some("application/unknownformat"));
            }),
            Some(415),
        ),
        case(
            "regaut01.dat",
            O(|m, _| {
                assert_eq!(
                    header(req(m), "Authorization"),
                    Some("NoOneKnowsThisScheme opaque-data=here")
                );
            }),
            Some(401),
        ),
        case(
            "multi01.dat",
            E(|e| matches!(e, ParseError::DuplicateHeader(_)), Some(400)),
            None,
        ),
        case(
            "mcl01.dat",
            E(
                |e| *e == ParseError::DuplicateHeader("Content-Length"),
                Some(400),
            ),
            None,
        ),
        // A response with a broadcast Via: parses; the switch drops it.
        case(
            "bcast.dat",
            O(|m, _| {
                let vias = resp(m).vias().unwrap();
                assert_eq!(vias[1].host, Host::V4("255.255.255.255".parse().unwrap()));
            }),
            None,
        ),
        // Max-Forwards 0: an endpoint (the B2BUA's UAS) processes it normally.
        case(
            "zeromf.dat",
            O(|m, _| {
                assert_eq!(req(m).max_forwards().unwrap(), Some(0));
            }),
            None,
        ),
        case(
            "cparam01.dat",
            O(|m, _| {
                let c = &req(m).contacts().unwrap()[0];
                assert_eq!(c.param("unknownparam"), Some(None));
                assert!(c.uri.params.is_empty());
                assert_eq!(c.uri.to_string(), "sip:+19725552222@gw1.example.net");
            }),
            None,
        ),
        case(
            "cparam02.dat",
            O(|m, _| {
                let c = &req(m).contacts().unwrap()[0];
                assert_eq!(c.uri.param("unknownparam"), Some(None));
                assert!(c.params.is_empty());
            }),
            None,
        ),
        case(
            "regescrt.dat",
            O(|m, _| {
                let c = &req(m).contacts().unwrap()[0];
                assert_eq!(
                    c.uri.headers.as_deref(),
                    Some("Route=%3Csip:sip.example.com%3E")
                );
                assert_eq!(
                    c.uri.to_string(),
                    "sip:user@example.com?Route=%3Csip:sip.example.com%3E"
                );
            }),
            None,
        ),
        case(
            "sdp01.dat",
            O(|m, _| {
                assert_eq!(header(req(m), "Accept"), Some("text/nobodyKnowsThis"));
            }),
            Some(406),
        ),
        case(
            "inv2543.dat",
            O(|m, raw| {
                let r = req(m);
                assert_eq!(r.top_via().unwrap().branch(), None);
                assert_eq!(r.max_forwards().unwrap(), None);
                assert_eq!(r.header_from().unwrap().tag(), None);
                assert!(header(r, "Content-Length").is_none());
                assert!(!r.body.is_empty());
                assert!(raw.ends_with(&r.body), "body is the rest of the datagram");
                assert!(r.body.starts_with(b"v=0"));
            }),
            None,
        ),
        // Not an RFC case: no SIP-Version, no Via: nothing to answer.
        case(
            "test.dat",
            E(|e| *e == ParseError::BadStartLine, None),
            None,
        ),
    ]
}

fn rfc5118_table() -> Vec<Case> {
    use Expect::{Err as E, Ok as O};
    vec![
        case(
            "ipv6-good.dat",
            O(|m, _| {
                let r = req(m);
                assert_eq!(r.uri.host, v6("2001:db8::10"));
                assert_eq!(r.uri.port, None);
                assert_eq!(r.top_via().unwrap().host, v6("2001:db8::9:1"));
                assert_eq!(r.contacts().unwrap()[0].uri.host, v6("2001:db8::1"));
            }),
            None,
        ),
        case(
            "wire/ipv6-good.dat",
            O(|m, _| {
                assert_eq!(req(m).uri.host, v6("2001:db8::10"));
            }),
            None,
        ),
        case(
            "ipv6-bad.dat",
            E(
                |e| matches!(e, ParseError::BadUri(u) if u == "sip:2001:db8::10"),
                Some(400),
            ),
            None,
        ),
        case(
            "wire/ipv6-bad.dat",
            E(|e| matches!(e, ParseError::BadUri(_)), Some(400)),
            None,
        ),
        case(
            "port-ambiguous.dat",
            O(|m, _| {
                let r = req(m);
                assert_eq!(r.uri.host, v6("2001:db8::10:5070"));
                assert_eq!(r.uri.port, None);
            }),
            None,
        ),
        case(
            "wire/port-ambiguous.dat",
            O(|m, _| {
                assert_eq!(req(m).uri.port, None);
            }),
            None,
        ),
        case(
            "port-unambiguous.dat",
            O(|m, _| {
                let r = req(m);
                assert_eq!(r.uri.host, v6("2001:db8::10"));
                assert_eq!(r.uri.port, Some(5070));
            }),
            None,
        ),
        case(
            "wire/port-unambiguous.dat",
            O(|m, _| {
                assert_eq!(req(m).uri.port, Some(5070));
            }),
            None,
        ),
        case(
            "via-received-param-with-delim.dat",
            O(|m, _| {
                let v = req(m).top_via().unwrap();
                assert_eq!(v.param("received"), Some(Some("[2001:db8::9:255]")));
            }),
            None,
        ),
        case(
            "wire/via-received-param-with-delim.dat",
            O(|m, _| {
                assert_eq!(
                    req(m).top_via().unwrap().param("received"),
                    Some(Some("[2001:db8::9:255]"))
                );
            }),
            None,
        ),
        case(
            "via-received-param-no-delim.dat",
            O(|m, _| {
                let v = req(m).top_via().unwrap();
                assert_eq!(v.param("received"), Some(Some("2001:db8::9:255")));
                assert_eq!(v.branch(), Some("z9hG4bKas3"));
            }),
            None,
        ),
        case(
            "wire/via-received-param-no-delim.dat",
            O(|m, _| {
                assert_eq!(req(m).top_via().unwrap().branch(), Some("z9hG4bKas3"));
            }),
            None,
        ),
        // Archive Content-Length 268 vs 242 octets of LF body: refused, never read past.
        case(
            "ipv6-in-sdp.dat",
            E(
                |e| {
                    *e == ParseError::ContentLengthTooLarge {
                        declared: 268,
                        available: 242,
                    }
                },
                Some(400),
            ),
            None,
        ),
        case(
            "wire/ipv6-in-sdp.dat",
            O(|m, _| {
                let body = String::from_utf8(req(m).body.to_vec()).unwrap();
                assert!(body.contains("c=IN IP6 2001:db8::20\r\n"));
            }),
            None,
        ),
        case(
            "mult-ip-in-header.dat",
            O(|m, _| {
                let vias = req(m).vias().unwrap();
                assert_eq!(vias.len(), 3);
                assert_eq!(
                    (vias[0].host.clone(), vias[0].port),
                    (v6("2001:db8::9:1"), Some(6050))
                );
                assert_eq!(vias[1].host, Host::V4("192.0.2.1".parse().unwrap()));
                assert_eq!(vias[2].transport, "TCP");
                assert_eq!(vias[2].host, v6("2001:db8::9:255"));
                assert_eq!(vias[2].param("received"), Some(Some("192.0.2.200")));
            }),
            None,
        ),
        case(
            "wire/mult-ip-in-header.dat",
            O(|m, _| {
                assert_eq!(req(m).vias().unwrap().len(), 3);
            }),
            None,
        ),
        // Archive Content-Length 181 vs 180 octets.
        case(
            "mult-ip-in-sdp.dat",
            E(
                |e| {
                    *e == ParseError::ContentLengthTooLarge {
                        declared: 181,
                        available: 180,
                    }
                },
                Some(400),
            ),
            None,
        ),
        case(
            "wire/mult-ip-in-sdp.dat",
            O(|m, _| {
                let body = String::from_utf8(req(m).body.to_vec()).unwrap();
                assert!(body.contains("c=IN IP6 2001:db8::1\r\n"));
            }),
            None,
        ),
        case(
            "ipv4-mapped-ipv6.dat",
            O(|m, _| {
                let r = req(m);
                let vias = r.vias().unwrap();
                assert_eq!(
                    (vias[0].host.clone(), vias[0].port),
                    (v6("::ffff:192.0.2.10"), Some(19823))
                );
                assert_eq!(
                    (vias[1].host.clone(), vias[1].port),
                    (v6("::ffff:192.0.2.2"), None)
                );
                assert_eq!(r.contacts().unwrap()[0].uri.host, v6("::ffff:192.0.2.2"));
                assert_eq!(r.body.len(), 236);
            }),
            None,
        ),
        case(
            "wire/ipv4-mapped-ipv6.dat",
            O(|m, _| {
                let body = String::from_utf8(req(m).body.to_vec()).unwrap();
                assert!(body.ends_with("a=rtpmap:107 H263-1998/90000\r\n"));
            }),
            None,
        ),
        case(
            "ipv6-bug-abnf-3-colons.dat",
            E(
                |e| matches!(e, ParseError::BadUri(u) if u.contains(":::")),
                Some(400),
            ),
            None,
        ),
        case(
            "wire/ipv6-bug-abnf-3-colons.dat",
            E(|e| matches!(e, ParseError::BadUri(_)), Some(400)),
            None,
        ),
        // No empty line after the headers in the archive: over UDP the datagram ends them.
        case(
            "ipv6-correct-abnf-2-colons.dat",
            O(|m, _| {
                let r = req(m);
                assert_eq!(r.uri.host, v6("2001:db8::192.0.2.1"));
                assert!(r.body.is_empty());
            }),
            None,
        ),
        case(
            "wire/ipv6-correct-abnf-2-colons.dat",
            O(|m, _| {
                assert_eq!(
                    req(m).header_to().unwrap().uri.host,
                    v6("2001:db8::192.0.2.1")
                );
            }),
            None,
        ),
    ]
}

/// `to_bytes` writes Content-Length last with the body's real length; compare without it.
fn without_content_length(mut m: Message) -> Message {
    match &mut m {
        Message::Request(r) => r.headers.remove(&HeaderName::ContentLength),
        Message::Response(r) => r.headers.remove(&HeaderName::ContentLength),
    }
    m
}

/// The file names a MANIFEST lists (first column, header row skipped), and for RFC 5118
/// the wire copies it names.
fn manifest(dir: &str) -> Vec<String> {
    let text = std::fs::read_to_string(format!("{CORPUS}/{dir}/MANIFEST.tsv"))
        .unwrap_or_else(|e| panic!("corpus {dir} missing: {e}"));
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("MANIFEST header").split('\t').collect();
    let wire_col = header.iter().position(|c| *c == "wire_copy");
    let mut out = Vec::new();
    for line in lines.filter(|l| !l.trim().is_empty()) {
        let cols: Vec<&str> = line.split('\t').collect();
        out.push(cols[0].to_owned());
        if let Some(w) = wire_col.and_then(|i| cols.get(i)).filter(|w| !w.is_empty()) {
            out.push((*w).to_owned());
        }
    }
    out
}

fn run(dir: &str, table: Vec<Case>, expected_count: usize) {
    let listed = manifest(dir);
    assert_eq!(listed.len(), expected_count, "{dir}: MANIFEST size changed");
    let in_table: BTreeSet<&str> = table.iter().map(|c| c.file).collect();
    assert_eq!(
        in_table.len(),
        table.len(),
        "{dir}: duplicate rows in the table"
    );
    let in_manifest: BTreeSet<&str> = listed.iter().map(String::as_str).collect();
    assert_eq!(in_table, in_manifest, "{dir}: table and MANIFEST differ");
    let mut read = 0;
    for c in &table {
        let path = format!("{CORPUS}/{dir}/{}", c.file);
        let raw = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        read += 1;
        let parsed = parse_datagram(&raw);
        match (&c.expect, parsed) {
            (Expect::Ok(check), Ok(m)) => {
                check(&m, &raw);
                // What we parsed re-serialises into something that parses the same.
                let again = parse_datagram(&m.to_bytes())
                    .unwrap_or_else(|e| panic!("{}: re-parse failed: {e}", c.file));
                assert_eq!(
                    without_content_length(again),
                    without_content_length(m),
                    "{}: re-parse differs",
                    c.file
                );
                if let Some(s) = c.switch_status {
                    assert!((400..700).contains(&s), "{}", c.file);
                }
            }
            (Expect::Err(accept, answer), Err(e)) => {
                assert!(accept(&e), "{}: unexpected error {e:?}", c.file);
                let reason = e.reason_phrase();
                assert!(
                    reason.chars().all(|ch| ch == ' ' || ch.is_ascii_graphic()),
                    "{}: reason {reason:?}",
                    c.file
                );
                let got = error_response(&raw, &e).map(|r| r.status);
                assert_eq!(got, *answer, "{}: error_response", c.file);
                if let Some(r) = error_response(&raw, &e) {
                    // The answer can be routed (RFC 3261 §18.2.2) and is framed correctly.
                    // From/To are copied as received, so they may be as bad as the request's.
                    assert!(r.top_via().is_ok(), "{}", c.file);
                    let wire = r.to_bytes();
                    assert!(wire.starts_with(format!("SIP/2.0 {} ", r.status).as_bytes()));
                    assert_eq!(frame_stream(&wire), Ok(Some(wire.len())), "{}", c.file);
                }
            }
            (Expect::Ok(_), Err(e)) => panic!("{}: expected Ok, got {e:?}", c.file),
            (Expect::Err(..), Ok(m)) => panic!("{}: expected Err, got {m:?}", c.file),
        }
    }
    assert_eq!(read, expected_count);
}

#[test]
fn rfc4475_every_file() {
    run("rfc4475", rfc4475_table(), 50);
}

#[test]
fn rfc5118_every_file_and_wire_copy() {
    run("rfc5118", rfc5118_table(), 24);
}

#[test]
fn clerr_reason_phrase_says_what_was_wrong() {
    let raw = std::fs::read(format!("{CORPUS}/rfc4475/clerr.dat")).unwrap();
    let e = parse_datagram(&raw).unwrap_err();
    let r = error_response(&raw, &e).unwrap();
    assert_eq!(
        r.reason,
        "Bad Request (Content-Length 9999 larger than body 154)"
    );
    assert_eq!(r.call_id().unwrap(), "clerr.0ha0isndaksdjweiafasdk3");
    assert_eq!(
        r.cseq().unwrap(),
        CSeq {
            seq: 8,
            method: Method::Invite
        }
    );
    assert_eq!(r.top_via().unwrap().branch(), Some("z9hG4bK-39234-23523"));
    let to = r.header_to().unwrap();
    assert!(to.tag().is_some(), "a To tag is added");
    // deterministic: same request, same tag
    let r2 = error_response(&raw, &e).unwrap();
    assert_eq!(r2.header_to().unwrap().tag(), to.tag());
}

#[test]
fn badinv01_answer_uses_repaired_top_via() {
    let raw = std::fs::read(format!("{CORPUS}/rfc4475/badinv01.dat")).unwrap();
    let e = parse_datagram(&raw).unwrap_err();
    let r = error_response(&raw, &e).unwrap();
    assert_eq!(
        r.headers.get(&HeaderName::Via),
        Some("SIP/2.0/UDP 192.0.2.15")
    );
}

#[test]
fn badvers_gets_505() {
    let raw = std::fs::read(format!("{CORPUS}/rfc4475/badvers.dat")).unwrap();
    let e = parse_datagram(&raw).unwrap_err();
    let r = error_response(&raw, &e).unwrap();
    assert_eq!(
        (r.status, r.reason.as_str()),
        (505, "Version Not Supported")
    );
}

/// Stream framing over the RFC 4475 messages: every message with a Content-Length frames to
/// what `parse_datagram` consumed; dblreq's second message is incomplete.
#[test]
fn stream_framing_over_corpus() {
    let read = |f: &str| std::fs::read(format!("{CORPUS}/rfc4475/{f}")).unwrap();
    // dblreq: REGISTER, then an empty line (a keep-alive frame on a stream), then an INVITE.
    let raw = read("dblreq.dat");
    let n = frame_stream(&raw).unwrap().unwrap();
    let first = parse_datagram(&raw[..n]).unwrap();
    assert_eq!(req(&first).method, Method::Register);
    let rest = &raw[n..];
    let k = frame_stream(rest).unwrap().unwrap();
    assert!(is_keepalive(&rest[..k]));
    let rest = &rest[k..];
    let n = frame_stream(rest).unwrap().unwrap();
    assert_eq!(
        rest.len() - n,
        5,
        "the archive has 5 octets after the INVITE's body"
    );
    assert_eq!(
        req(&parse_datagram(&rest[..n]).unwrap()).method,
        Method::Invite
    );
    assert_eq!(frame_stream(&rest[..n - 1]), Ok(None));
    // No Content-Length: framing impossible on a stream.
    assert_eq!(
        frame_stream(&read("inv2543.dat")),
        Err(ParseError::MissingHeader("Content-Length"))
    );
    assert_eq!(
        frame_stream(&read("ncl.dat")),
        Err(ParseError::BadHeader("Content-Length"))
    );
    assert_eq!(
        frame_stream(&read("mcl01.dat")),
        Err(ParseError::DuplicateHeader("Content-Length"))
    );
    // baddn has no empty line: a stream never sees the end of its headers.
    assert_eq!(frame_stream(&read("baddn.dat")), Ok(None));
    // clerr waits for 9999 octets that never come.
    assert_eq!(frame_stream(&read("clerr.dat")), Ok(None));
    for f in [
        "wsinv.dat",
        "esc01.dat",
        "mpart01.dat",
        "longreq.dat",
        "intmeth.dat",
    ] {
        let raw = read(f);
        assert_eq!(frame_stream(&raw), Ok(Some(raw.len())), "{f}");
    }
}
