//! Media: RTP/RTCP relay with symmetric latching (RFC 3550, RFC 4961).
