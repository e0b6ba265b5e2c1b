//! SIP: message model and parser, transactions (RFC 3261 §17), digest authentication
//! (RFC 8760), the registrar for agent seats, and transport addressing.

pub mod auth;
pub mod header;
pub mod message;
pub mod parse;
pub mod registrar;
pub mod transaction;
pub mod transport;
pub mod uri;
