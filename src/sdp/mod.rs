//! SDP offer/answer (RFC 3264) and media anchoring: codecs PCMU, PCMA, telephone-event.
