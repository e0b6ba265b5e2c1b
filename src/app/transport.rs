//! SIP transports at the IO edge (RFC 3261 §18): UDP sockets and TCP connections. They
//! frame and parse messages and hand them to the switch task; malformed requests are
//! answered `400` statelessly here and counted.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;

use crate::metrics::{MethodLabels, Metrics, SipMethod, TransportLabel, TransportLabels};
use crate::sip::message::Message;
use crate::sip::parse::{ParseError, error_response, frame_stream, parse_datagram};
use crate::sip::transport::{Peer, TransportKind};

use super::Input;

/// Largest SIP message accepted, in octets (UDP datagram or TCP frame).
pub const MAX_MESSAGE: usize = 65_535;

/// Receives datagrams on `socket` until the input channel closes.
pub async fn udp_receiver(
    socket: Arc<UdpSocket>,
    inputs: mpsc::Sender<Input>,
    metrics: Arc<Metrics>,
) {
    let mut buf = vec![0u8; MAX_MESSAGE];
    loop {
        let (n, from) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                // ICMP port unreachable surfaces here on some systems: not fatal.
                tracing::debug!(error = %e, "UDP receive error");
                continue;
            }
        };
        let Some(data) = buf.get(..n) else { continue };
        if data.iter().all(|b| matches!(b, b'\r' | b'\n' | b' ' | 0)) {
            continue; // keep-alive (RFC 5626 §3.5.1) or empty datagram
        }
        let peer = Peer {
            kind: TransportKind::Udp,
            addr: from,
        };
        match parse_datagram(data) {
            Ok(msg) => {
                count_request(&metrics, &msg);
                if inputs.send(Input::Sip { peer, msg }).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                reject(&metrics, TransportLabel::Udp, data, &e, from);
                if let Some(resp) = error_response(data, &e) {
                    let _ = socket.send_to(&resp.to_bytes(), from).await;
                }
            }
        }
    }
}

/// Asks for `kib` KiB of receive and send buffer on a SIP UDP socket (`SO_RCVBUF`,
/// `SO_SNDBUF`) and logs what the kernel granted (Linux caps the request at
/// `net.core.rmem_max`/`wmem_max` and reports double the usable size). A refusal is
/// logged, not fatal: the socket keeps the system default.
pub fn size_buffers(socket: &std::net::UdpSocket, addr: std::net::SocketAddr, kib: u32) {
    let bytes = usize::try_from(kib)
        .unwrap_or(usize::MAX)
        .saturating_mul(1024);
    let sock = socket2::SockRef::from(socket);
    if let Err(e) = sock.set_recv_buffer_size(bytes) {
        tracing::warn!(%addr, error = %e, "SIP UDP receive buffer not set");
    }
    if let Err(e) = sock.set_send_buffer_size(bytes) {
        tracing::warn!(%addr, error = %e, "SIP UDP send buffer not set");
    }
    tracing::info!(
        %addr,
        requested_kib = kib,
        recv_kib = sock.recv_buffer_size().map_or(0, |b| b / 1024),
        send_kib = sock.send_buffer_size().map_or(0, |b| b / 1024),
        "SIP UDP socket buffers"
    );
}

/// Accepts TCP connections on `listener`.
pub async fn tcp_acceptor(
    listener: TcpListener,
    inputs: mpsc::Sender<Input>,
    metrics: Arc<Metrics>,
) {
    loop {
        match listener.accept().await {
            Ok((stream, addr)) => {
                let _ = stream.set_nodelay(true);
                tokio::spawn(tcp_connection(
                    stream,
                    addr,
                    inputs.clone(),
                    Arc::clone(&metrics),
                ));
            }
            Err(e) => {
                tracing::warn!(error = %e, "TCP accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

/// Opens an outbound TCP connection (to a seat that registered over TCP, or an overflow
/// target with `transport=tcp`) and serves it like an accepted one; `first` is sent once
/// connected.
pub async fn tcp_connect(
    addr: SocketAddr,
    first: Bytes,
    inputs: mpsc::Sender<Input>,
    metrics: Arc<Metrics>,
) {
    match TcpStream::connect(addr).await {
        Ok(stream) => {
            let _ = stream.set_nodelay(true);
            let (read, mut write) = stream.into_split();
            if let Err(e) = write.write_all(&first).await {
                tracing::warn!(%addr, error = %e, "TCP send failed");
                return;
            }
            serve_tcp(read, write, addr, inputs, metrics).await;
        }
        Err(e) => tracing::warn!(%addr, error = %e, "TCP connect failed"),
    }
}

async fn tcp_connection(
    stream: TcpStream,
    addr: SocketAddr,
    inputs: mpsc::Sender<Input>,
    metrics: Arc<Metrics>,
) {
    let (read, write) = stream.into_split();
    serve_tcp(read, write, addr, inputs, metrics).await;
}

async fn serve_tcp(
    mut read: tokio::net::tcp::OwnedReadHalf,
    mut write: tokio::net::tcp::OwnedWriteHalf,
    addr: SocketAddr,
    inputs: mpsc::Sender<Input>,
    metrics: Arc<Metrics>,
) {
    let (tx, mut rx) = mpsc::channel::<Bytes>(256);
    if inputs
        .send(Input::TcpOpened { addr, writer: tx })
        .await
        .is_err()
    {
        return;
    }
    let writer = tokio::spawn(async move {
        while let Some(bytes) = rx.recv().await {
            if write.write_all(&bytes).await.is_err() {
                break;
            }
        }
    });
    let peer = Peer {
        kind: TransportKind::Tcp,
        addr,
    };
    let mut buf = BytesMut::with_capacity(8192);
    'conn: loop {
        match read.read_buf(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        loop {
            // Skip CRLF keep-alives between messages (RFC 5626 §3.5.1).
            let skip = buf
                .iter()
                .take_while(|b| matches!(b, b'\r' | b'\n'))
                .count();
            let _ = buf.split_to(skip);
            if buf.is_empty() {
                break;
            }
            match frame_stream(&buf) {
                Ok(Some(len)) => {
                    let frame = buf.split_to(len).freeze();
                    match parse_datagram(&frame) {
                        Ok(msg) => {
                            count_request(&metrics, &msg);
                            if inputs.send(Input::Sip { peer, msg }).await.is_err() {
                                break 'conn;
                            }
                        }
                        Err(e) => {
                            reject(&metrics, TransportLabel::Tcp, &frame, &e, addr);
                            if let Some(resp) = error_response(&frame, &e) {
                                let _ = inputs
                                    .send(Input::Raw {
                                        peer,
                                        bytes: Bytes::from(resp.to_bytes()),
                                    })
                                    .await;
                            }
                        }
                    }
                }
                Ok(None) if buf.len() > MAX_MESSAGE => {
                    tracing::warn!(%addr, "TCP message larger than 64 KiB: closing");
                    break 'conn;
                }
                Ok(None) => break,
                Err(e) => {
                    // Framing is lost (bad Content-Length): answer if we can, then close
                    // (RFC 3261 §18.3).
                    reject(&metrics, TransportLabel::Tcp, &buf, &e, addr);
                    if let Some(resp) = error_response(&buf, &e) {
                        let _ = inputs
                            .send(Input::Raw {
                                peer,
                                bytes: Bytes::from(resp.to_bytes()),
                            })
                            .await;
                    }
                    break 'conn;
                }
            }
        }
    }
    let _ = inputs.send(Input::TcpClosed { addr }).await;
    // Let queued responses drain before the writer goes.
    let _ = writer.await;
}

fn count_request(metrics: &Metrics, msg: &Message) {
    if let Message::Request(r) = msg {
        metrics
            .sip_requests_received
            .get_or_create(&MethodLabels {
                method: SipMethod::from_token(r.method.as_str()),
            })
            .inc();
    }
}

fn reject(
    metrics: &Metrics,
    transport: TransportLabel,
    data: &[u8],
    e: &ParseError,
    from: SocketAddr,
) {
    metrics
        .sip_parse_failures
        .get_or_create(&TransportLabels { transport })
        .inc();
    tracing::info!(%from, octets = data.len(), error = %e, "malformed SIP message refused");
}
