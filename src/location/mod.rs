//! Caller location: PIDF-LO (RFC 4119, RFC 5491) in multipart bodies.
