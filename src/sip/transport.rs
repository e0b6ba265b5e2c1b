//! Transport addressing shared by the sans-IO layers (RFC 3261 §18). The sockets
//! themselves live at the edge (`crate::app`).

use std::fmt;
use std::net::SocketAddr;

/// A SIP transport protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TransportKind {
    /// UDP (RFC 768): unreliable, so the transaction layer retransmits (RFC 3261 §17.1.1.2, §18.1.1).
    Udp,
    /// TCP (RFC 793): a reliable stream; messages are framed by Content-Length (RFC 3261 §18.3).
    Tcp,
}

impl TransportKind {
    /// True for stream transports, where retransmission timers A, E and G are not used
    /// (RFC 3261 §17.1.1.2).
    pub fn is_reliable(self) -> bool {
        !matches!(self, TransportKind::Udp)
    }

    /// The Via transport token (RFC 3261 §20.42).
    pub fn via_token(self) -> &'static str {
        match self {
            TransportKind::Udp => "UDP",
            TransportKind::Tcp => "TCP",
        }
    }
}

/// The remote end of a message: transport and socket address. For a stream transport the
/// address names the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Peer {
    /// The transport protocol of the message.
    pub kind: TransportKind,
    /// The remote IP address and port: the datagram's source/destination for UDP, the
    /// connection's remote end for TCP.
    pub addr: SocketAddr,
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}",
            self.kind.via_token().to_ascii_lowercase(),
            self.addr
        )
    }
}
