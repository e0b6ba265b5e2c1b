//! One side of a B2BUA call as a SIP dialog (RFC 3261 §12): identifiers, CSeq counter and
//! the remote target, and the in-dialog requests vigie builds from it (ACK, BYE).

use bytes::Bytes;
use rand::Rng;

use crate::sip::header::{BRANCH_COOKIE, NameAddr};
use crate::sip::message::{HeaderName, Headers, Method, Request};
use crate::sip::transport::Peer;
use crate::sip::uri::Uri;

/// A dialog as vigie sees it (RFC 3261 §12.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dialog {
    /// The dialog's Call-ID (RFC 3261 §12.1.1, §12.1.2): the trunk's for leg A, one vigie
    /// generated for leg B.
    pub call_id: String,
    /// Vigie's tag: the To tag it added when answering (UAS side) or its From tag (UAC side).
    pub local_tag: String,
    /// `None` while early and the peer has not tagged yet.
    pub remote_tag: Option<String>,
    /// Our From (UAC side) or To (UAS side) without the tag, written as `<uri>`.
    pub local_uri: String,
    /// The peer's address-of-record without the tag, written as `<uri>`.
    pub remote_uri: String,
    /// Request-URI of in-dialog requests: the peer's Contact (RFC 3261 §12.1.2).
    pub remote_target: Uri,
    /// Last CSeq number vigie used in this dialog.
    pub local_cseq: u32,
    /// Where in-dialog requests are sent.
    pub peer: Peer,
}

/// What vigie writes in Via and Contact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalAddr {
    /// Host (IP literal, IPv6 in brackets, or name).
    pub host: String,
    /// The UDP port vigie listens on for SIP, written in Via and Contact for UDP peers.
    pub udp_port: u16,
    /// The TCP port vigie listens on for SIP, written in Via and Contact for TCP peers.
    pub tcp_port: u16,
}

impl LocalAddr {
    /// `Via: SIP/2.0/UDP host:port;branch=…;rport` for a request sent over `peer`.
    pub fn via(&self, peer: &Peer, branch: &str) -> String {
        format!(
            "SIP/2.0/{} {}:{};branch={};rport",
            peer.kind.via_token(),
            self.host,
            self.port(peer),
            branch
        )
    }

    /// Vigie's Contact for dialogs over `peer`'s transport.
    pub fn contact(&self, peer: &Peer) -> String {
        match peer.kind {
            crate::sip::transport::TransportKind::Udp => {
                format!("<sip:vigie@{}:{}>", self.host, self.udp_port)
            }
            crate::sip::transport::TransportKind::Tcp => {
                format!("<sip:vigie@{}:{};transport=tcp>", self.host, self.tcp_port)
            }
        }
    }

    fn port(&self, peer: &Peer) -> u16 {
        match peer.kind {
            crate::sip::transport::TransportKind::Udp => self.udp_port,
            crate::sip::transport::TransportKind::Tcp => self.tcp_port,
        }
    }
}

/// A fresh RFC 3261 branch (`z9hG4bK` + 16 random alphanumerics, §8.1.1.7).
pub fn new_branch() -> String {
    format!("{BRANCH_COOKIE}{}", random_token(16))
}

/// A fresh tag (RFC 3261 §19.3): 12 random alphanumerics.
pub fn new_tag() -> String {
    random_token(12)
}

/// `n` random characters from `[0-9a-zA-Z]`.
pub fn random_token(n: usize) -> String {
    let mut rng = rand::rng();
    (0..n)
        .map(|_| char::from(rng.sample(rand::distr::Alphanumeric)))
        .collect()
}

/// The `<uri>` part of a name-addr without its header parameters (tag etc.).
pub fn without_params(n: &NameAddr) -> String {
    match &n.display {
        Some(d) if !d.is_empty() => format!("\"{}\" <{}>", d.replace('"', "'"), n.uri),
        _ => format!("<{}>", n.uri),
    }
}

impl Dialog {
    /// A new in-dialog request (BYE, re-INVITE, …) with the next CSeq (RFC 3261 §12.2.1.1).
    pub fn request(&mut self, method: Method, local: &LocalAddr, user_agent: &str) -> Request {
        self.local_cseq = self.local_cseq.saturating_add(1);
        let seq = self.local_cseq;
        self.build(method, seq, &new_branch(), local, user_agent)
    }

    /// The ACK for a 2xx to our INVITE with CSeq `invite_cseq` (RFC 3261 §13.2.2.4): a
    /// new transaction, its own branch, the INVITE's CSeq number.
    pub fn ack(&self, invite_cseq: u32, local: &LocalAddr, user_agent: &str) -> Request {
        self.build(Method::Ack, invite_cseq, &new_branch(), local, user_agent)
    }

    fn build(
        &self,
        method: Method,
        seq: u32,
        branch: &str,
        local: &LocalAddr,
        user_agent: &str,
    ) -> Request {
        let mut h = Headers::new();
        h.push(HeaderName::Via, local.via(&self.peer, branch));
        h.push(HeaderName::MaxForwards, "70");
        h.push(
            HeaderName::From,
            format!("{};tag={}", self.local_uri, self.local_tag),
        );
        let to = match &self.remote_tag {
            Some(t) => format!("{};tag={}", self.remote_uri, t),
            None => self.remote_uri.clone(),
        };
        h.push(HeaderName::To, to);
        h.push(HeaderName::CallId, self.call_id.clone());
        h.push(HeaderName::CSeq, format!("{seq} {method}"));
        h.push(HeaderName::UserAgent, user_agent);
        Request {
            method,
            uri: self.remote_target.clone(),
            headers: h,
            body: Bytes::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::SipHeaders;
    use crate::sip::transport::TransportKind;

    fn dialog() -> Dialog {
        Dialog {
            call_id: "abc@192.0.2.1".into(),
            local_tag: "ours".into(),
            remote_tag: Some("theirs".into()),
            local_uri: "<sip:vigie@127.0.0.1>".into(),
            remote_uri: "<sip:agent01@127.0.0.1>".into(),
            remote_target: Uri::parse("sip:agent01@127.0.0.1:5070").unwrap(),
            local_cseq: 1,
            peer: Peer {
                kind: TransportKind::Udp,
                addr: "127.0.0.1:5070".parse().unwrap(),
            },
        }
    }

    fn local() -> LocalAddr {
        LocalAddr {
            host: "127.0.0.1".into(),
            udp_port: 5060,
            tcp_port: 5060,
        }
    }

    #[test]
    fn bye_uses_next_cseq_and_tags() {
        let mut d = dialog();
        let bye = d.request(Method::Bye, &local(), "vigie");
        assert_eq!(bye.method, Method::Bye);
        assert_eq!(bye.cseq().unwrap().seq, 2);
        assert_eq!(bye.header_from().unwrap().tag(), Some("ours"));
        assert_eq!(bye.header_to().unwrap().tag(), Some("theirs"));
        assert_eq!(bye.uri.to_string(), "sip:agent01@127.0.0.1:5070");
        let via = bye.top_via().unwrap();
        assert!(via.branch().unwrap().starts_with("z9hG4bK"));
        assert_eq!(via.transport, "UDP");
    }

    #[test]
    fn ack_reuses_invite_cseq_with_new_branch() {
        let d = dialog();
        let a = d.ack(1, &local(), "vigie");
        let b = d.ack(1, &local(), "vigie");
        assert_eq!(a.cseq().unwrap().seq, 1);
        assert_eq!(a.cseq().unwrap().method, Method::Ack);
        assert_ne!(a.top_via().unwrap().branch(), b.top_via().unwrap().branch());
    }
}
