//! RTCP reception reports (RFC 3550 §6.4) and the interarrival jitter estimator (RFC 3550
//! §6.4.1, appendix A.8).
//!
//! The relay forwards RTCP untouched; it also reads the report blocks of the SR and RR
//! packets each side sends, because they tell how that side *receives* what vigie sends it
//! (fraction lost, cumulative lost, jitter). Parsing borrows the datagram and allocates
//! nothing.

/// RTCP packet type of a sender report (RFC 3550 §6.4.1).
const PT_SR: u8 = 200;
/// RTCP packet type of a receiver report (RFC 3550 §6.4.2).
const PT_RR: u8 = 201;
/// Octets of one reception report block.
const BLOCK_LEN: usize = 24;
/// Octets of the sender info of an SR (NTP timestamp, RTP timestamp, counts).
const SENDER_INFO_LEN: usize = 20;

/// Why a datagram is not a valid RTCP compound packet (RFC 3550 §6.1, A.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RtcpError {
    /// A packet's version field is not 2.
    #[error("RTCP version {0}, expected 2")]
    Version(u8),
    /// A packet's length field points past the end of the datagram, or the datagram ends
    /// inside a header.
    #[error("RTCP packet truncated at octet {0}")]
    Truncated(usize),
    /// The report count of an SR/RR needs more octets than its length field gives.
    #[error("RTCP report count {count} does not fit in a {len}-octet packet")]
    ReportCount {
        /// Report blocks announced.
        count: u8,
        /// Octets of the packet (header included).
        len: usize,
    },
}

/// One reception report block (RFC 3550 §6.4.1): how the reporter receives source `ssrc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportBlock {
    /// SSRC of the reporter (the SR/RR packet's sender).
    pub reporter: u32,
    /// SSRC of the source this block is about (SSRC_n).
    pub ssrc: u32,
    /// Fraction of packets lost since the previous report, in 1/256 units.
    pub fraction_lost: u8,
    /// Cumulative number of packets lost (24-bit signed: duplicates can make it negative).
    pub cumulative_lost: i32,
    /// Extended highest sequence number received (cycles in the high 16 bits).
    pub highest_seq: u32,
    /// Interarrival jitter in RTP timestamp units (1/8000 s for G.711).
    pub jitter: u32,
    /// Middle 32 bits of the NTP timestamp of the last SR received (LSR), 0 if none.
    pub last_sr: u32,
    /// Delay since that SR (DLSR), in 1/65536 s.
    pub delay_since_last_sr: u32,
}

impl ReportBlock {
    /// Fraction lost as a number between 0 and 1.
    pub fn fraction_lost_ratio(&self) -> f64 {
        f64::from(self.fraction_lost) / 256.0
    }

    /// Interarrival jitter in seconds, for an RTP clock of `clock_rate` Hz (8000 for G.711).
    pub fn jitter_seconds(&self, clock_rate: u32) -> f64 {
        f64::from(self.jitter) / f64::from(clock_rate.max(1))
    }
}

fn be32(data: &[u8], at: usize) -> Option<u32> {
    let bytes = data.get(at..at.checked_add(4)?)?;
    let array: [u8; 4] = bytes.try_into().ok()?;
    Some(u32::from_be_bytes(array))
}

/// Call `visit` for every report block of every SR and RR in the compound datagram
/// `compound` (RFC 3550 §6.1); other packet types (SDES, BYE, APP, feedback) are skipped.
/// Returns the number of blocks visited.
///
/// # Errors
/// [`RtcpError`] on the first malformed packet; the blocks before it have been visited.
pub fn for_each_report_block(
    compound: &[u8],
    mut visit: impl FnMut(ReportBlock),
) -> Result<usize, RtcpError> {
    let mut at = 0;
    let mut visited = 0;
    while at < compound.len() {
        let header = compound.get(at..at + 4).ok_or(RtcpError::Truncated(at))?;
        let (first, pt) = (header[0], header[1]);
        let version = first >> 6;
        if version != 2 {
            return Err(RtcpError::Version(version));
        }
        let count = first & 0x1F;
        let words = usize::from(u16::from_be_bytes([header[2], header[3]]));
        let len = (words + 1) * 4;
        let packet = compound
            .get(at..at + len)
            .ok_or(RtcpError::Truncated(compound.len()))?;
        let blocks_at = match pt {
            PT_SR => Some(8 + SENDER_INFO_LEN),
            PT_RR => Some(8),
            _ => None,
        };
        if let Some(blocks_at) = blocks_at {
            let needed = blocks_at + usize::from(count) * BLOCK_LEN;
            if needed > len {
                return Err(RtcpError::ReportCount { count, len });
            }
            let reporter = be32(packet, 4).ok_or(RtcpError::Truncated(at + 4))?;
            for i in 0..usize::from(count) {
                let b = blocks_at + i * BLOCK_LEN;
                let block = parse_block(packet, b, reporter).ok_or(RtcpError::Truncated(at + b))?;
                visit(block);
                visited += 1;
            }
        }
        at += len;
    }
    Ok(visited)
}

fn parse_block(packet: &[u8], at: usize, reporter: u32) -> Option<ReportBlock> {
    let lost = be32(packet, at + 4)?;
    // 24-bit two's complement in the low bits: shift up then arithmetic shift down.
    let cumulative_lost = ((lost << 8) as i32) >> 8;
    Some(ReportBlock {
        reporter,
        ssrc: be32(packet, at)?,
        fraction_lost: (lost >> 24) as u8,
        cumulative_lost,
        highest_seq: be32(packet, at + 8)?,
        jitter: be32(packet, at + 12)?,
        last_sr: be32(packet, at + 16)?,
        delay_since_last_sr: be32(packet, at + 20)?,
    })
}

/// The interarrival jitter of one RTP stream as seen by its receiver (RFC 3550 §6.4.1,
/// computed as in appendix A.8 with the estimate scaled by 16 in an integer).
///
/// Both the RTP timestamp and the arrival time are in RTP timestamp units; a new SSRC
/// restarts the estimate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JitterEstimator {
    /// (SSRC, transit time of its previous packet).
    last: Option<(u32, u32)>,
    /// Jitter × 16, in timestamp units.
    jitter_x16: u32,
}

impl JitterEstimator {
    /// Account for one packet of `ssrc` with RTP timestamp `rtp_ts` that arrived at
    /// `arrival` (the receiver's clock, in the same units, any origin; wraps modulo 2³²).
    pub fn update(&mut self, ssrc: u32, rtp_ts: u32, arrival: u32) {
        let transit = arrival.wrapping_sub(rtp_ts);
        if let Some((last_ssrc, last_transit)) = self.last
            && last_ssrc == ssrc
        {
            let d = (transit.wrapping_sub(last_transit) as i32).unsigned_abs();
            // J += (|D| - J) / 16, with J kept × 16 (A.8): J16 += |D| - round(J16 / 16).
            self.jitter_x16 = self
                .jitter_x16
                .saturating_add(d)
                .saturating_sub(self.jitter_x16.saturating_add(8) >> 4);
        } else if self.last.is_some_and(|(last_ssrc, _)| last_ssrc != ssrc) {
            self.jitter_x16 = 0;
        }
        self.last = Some((ssrc, transit));
    }

    /// The current estimate in timestamp units (what an RR would carry).
    pub fn jitter(&self) -> u32 {
        self.jitter_x16 >> 4
    }

    /// The current estimate in seconds for an RTP clock of `clock_rate` Hz.
    pub fn jitter_seconds(&self, clock_rate: u32) -> f64 {
        f64::from(self.jitter_x16) / 16.0 / f64::from(clock_rate.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(ssrc: u32, fraction: u8, lost: i32, seq: u32, jitter: u32) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&ssrc.to_be_bytes());
        let lost24 = (lost as u32) & 0x00FF_FFFF;
        b.extend_from_slice(&((u32::from(fraction) << 24) | lost24).to_be_bytes());
        b.extend_from_slice(&seq.to_be_bytes());
        b.extend_from_slice(&jitter.to_be_bytes());
        b.extend_from_slice(&0x1234_5678u32.to_be_bytes());
        b.extend_from_slice(&65536u32.to_be_bytes());
        b
    }

    fn packet(pt: u8, count: u8, body: &[u8]) -> Vec<u8> {
        assert_eq!(body.len() % 4, 0);
        let words = (body.len() / 4) as u16;
        let mut p = vec![0x80 | count, pt];
        p.extend_from_slice(&words.to_be_bytes());
        p.extend_from_slice(body);
        p
    }

    /// SR with one block + SDES: the usual compound a phone sends.
    fn sr_sdes() -> Vec<u8> {
        let mut body = 0xAAAA_0001u32.to_be_bytes().to_vec();
        body.extend_from_slice(&[0u8; SENDER_INFO_LEN]);
        body.extend(block(0xBBBB_0002, 64, 37, 0x0001_0203, 400));
        let mut compound = packet(PT_SR, 1, &body);
        // SDES: SSRC + CNAME "ab" + end + padding to a word.
        let mut sdes = 0xAAAA_0001u32.to_be_bytes().to_vec();
        sdes.extend_from_slice(&[1, 2, b'a', b'b', 0, 0, 0, 0]);
        compound.extend(packet(202, 1, &sdes));
        compound
    }

    #[test]
    fn parses_sr_report_block_in_a_compound_packet() {
        let mut blocks = Vec::new();
        assert_eq!(for_each_report_block(&sr_sdes(), |b| blocks.push(b)), Ok(1));
        assert_eq!(
            blocks,
            vec![ReportBlock {
                reporter: 0xAAAA_0001,
                ssrc: 0xBBBB_0002,
                fraction_lost: 64,
                cumulative_lost: 37,
                highest_seq: 0x0001_0203,
                jitter: 400,
                last_sr: 0x1234_5678,
                delay_since_last_sr: 65536,
            }]
        );
        assert_eq!(blocks[0].fraction_lost_ratio(), 0.25);
        assert_eq!(blocks[0].jitter_seconds(8000), 0.05);
    }

    #[test]
    fn parses_rr_with_two_blocks_and_negative_cumulative_loss() {
        let mut body = 7u32.to_be_bytes().to_vec();
        body.extend(block(1, 0, -3, 10, 0));
        body.extend(block(2, 255, 0x7F_FFFF, 20, 8));
        let mut blocks = Vec::new();
        assert_eq!(
            for_each_report_block(&packet(PT_RR, 2, &body), |b| blocks.push(b)),
            Ok(2)
        );
        assert_eq!(blocks[0].cumulative_lost, -3);
        assert_eq!(blocks[1].cumulative_lost, 0x7F_FFFF);
        assert_eq!(blocks[1].fraction_lost, 255);
        assert_eq!((blocks[0].reporter, blocks[1].ssrc), (7, 2));
    }

    #[test]
    fn empty_rr_has_no_blocks() {
        let rr = packet(PT_RR, 0, &9u32.to_be_bytes());
        assert_eq!(for_each_report_block(&rr, |_| panic!("no block")), Ok(0));
    }

    #[test]
    fn malformed_compounds_are_errors_not_panics() {
        let good = sr_sdes();
        // Cut inside the SDES packet.
        assert_eq!(
            for_each_report_block(&good[..good.len() - 2], |_| {}),
            Err(RtcpError::Truncated(good.len() - 2))
        );
        // Version 1.
        let mut v1 = good.clone();
        v1[0] = 0x41;
        assert_eq!(
            for_each_report_block(&v1, |_| {}),
            Err(RtcpError::Version(1))
        );
        // RR claiming 2 blocks in an 8-octet packet.
        let rr = packet(PT_RR, 2, &9u32.to_be_bytes());
        assert_eq!(
            for_each_report_block(&rr, |_| {}),
            Err(RtcpError::ReportCount { count: 2, len: 8 })
        );
        // Three stray octets after a valid packet.
        let mut tail = packet(PT_RR, 0, &9u32.to_be_bytes());
        tail.extend_from_slice(&[0x80, 201, 0]);
        assert_eq!(
            for_each_report_block(&tail, |_| {}),
            Err(RtcpError::Truncated(8))
        );
        for len in 0..good.len() {
            let _ = for_each_report_block(&good[..len], |_| {});
        }
    }

    #[test]
    fn jitter_is_zero_for_a_steady_stream() {
        let mut j = JitterEstimator::default();
        for i in 0..100u32 {
            j.update(5, i * 160, 1_000_000 + i * 160);
        }
        assert_eq!(j.jitter(), 0);
    }

    #[test]
    fn jitter_follows_rfc3550_a8_arithmetic() {
        let mut j = JitterEstimator::default();
        j.update(5, 0, 1000);
        // Second packet 16 units late: D = 16, J16 = 0 + 16 - 0 = 16 → J = 1.
        j.update(5, 160, 1000 + 160 + 16);
        assert_eq!(j.jitter_x16, 16);
        assert_eq!(j.jitter(), 1);
        // Third packet on time relative to the second's transit: D = 16 back.
        // J16 = 16 + 16 - round(16/16) = 31.
        j.update(5, 320, 1000 + 320);
        assert_eq!(j.jitter_x16, 31);
        // Alternating ±80 (10 ms) converges to |D| = 80 units = 10 ms.
        for i in 3..2000u32 {
            let wobble = if i % 2 == 0 { 80 } else { 0 };
            j.update(5, i * 160, 1000 + i * 160 + wobble);
        }
        assert!((79..=80).contains(&j.jitter()), "jitter {}", j.jitter());
        assert!((j.jitter_seconds(8000) - 0.01).abs() < 0.0002);
        // A new SSRC restarts the estimate.
        j.update(6, 0, 0);
        assert_eq!(j.jitter(), 0);
        // Timestamps and arrival wrap modulo 2^32 without a jump.
        let mut w = JitterEstimator::default();
        for i in 0..10u32 {
            let ts = (u32::MAX - 800).wrapping_add(i * 160);
            w.update(1, ts, ts.wrapping_add(7));
        }
        assert_eq!(w.jitter(), 0);
    }
}
