//! vigie: a call-centre switch for an emergency line.
//!
//! Layers from the bottom up (see `DESIGN.md` §2): [`sip`], [`sdp`], [`media`],
//! [`location`], [`acd`], [`dialplan`], [`switch`], [`dispatch`], [`store`], [`metrics`], and
//! the IO edge in [`app`].

pub mod acd;
pub mod app;
pub mod config;
pub mod dialplan;
pub mod dispatch;
pub mod location;
pub mod media;
pub mod metrics;
pub mod sdp;
pub mod sip;
pub mod store;
pub mod switch;
