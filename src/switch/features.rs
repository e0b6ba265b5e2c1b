//! Seat feature codes: a registered seat dials `*21` (login), `*22` (logout), `*23` (pause;
//! `*23` + digits picks a reason), `*24` (unpause); codes come from `[features]`.
//!
//! The INVITE must come from a seat: it is authenticated with digest exactly like REGISTER
//! (RFC 3261 §22.2; a `401` challenge first), and the seat must hold a binding. vigie then
//! answers at once with a final response and sets up no media:
//! - done: `480 Temporarily Unavailable` whose reason phrase tells the outcome (`Logged In`,
//!   `Logged Out`, `Paused (meal)`, `Unpaused`, or `… After Call` when the seat is busy and
//!   the change is pending), with `Reason: SIP;cause=200;text="…"` (RFC 3326);
//! - refused: `403 Forbidden (…)` with the reason (not on break, logged out, bad reason).
//!
//! Why not `200` + `BYE`: that needs an SDP answer, an ACK and a BYE transaction for a
//! call that carries nothing; every softphone shows a final non-2xx's reason phrase, ends
//! the attempt cleanly, and retries nothing on 480/403.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::acd::{Cause, Command, CommandError};
use crate::config::FeaturesConfig;
use crate::sip::message::{HeaderName, Request};
use crate::sip::transaction::ServerTxKey;
use crate::sip::transport::Peer;

use super::Switch;
use super::dialog::new_tag;

/// The feature codes of a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureCodes {
    login: String,
    logout: String,
    pause: String,
    unpause: String,
    pause_reasons: BTreeMap<String, String>,
}

impl FeatureCodes {
    /// From the `[features]` configuration.
    pub fn new(cfg: &FeaturesConfig) -> FeatureCodes {
        FeatureCodes {
            login: cfg.login.clone(),
            logout: cfg.logout.clone(),
            pause: cfg.pause.clone(),
            unpause: cfg.unpause.clone(),
            pause_reasons: cfg.pause_reasons.clone(),
        }
    }

    /// The command a dialled Request-URI user part stands for, if it is a feature code.
    /// `*23` + digits: the reason mapped from the digits, else the digits themselves.
    pub fn parse(&self, user: &str) -> Option<Command> {
        let exact = |code: &str| !code.is_empty() && user == code;
        if exact(&self.login) {
            return Some(Command::Login);
        }
        if exact(&self.logout) {
            return Some(Command::Logout);
        }
        if exact(&self.unpause) {
            return Some(Command::Unpause);
        }
        if self.pause.is_empty() {
            return None;
        }
        let digits = user.strip_prefix(self.pause.as_str())?;
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let reason = if digits.is_empty() {
            "break".to_owned()
        } else {
            self.pause_reasons
                .get(digits)
                .cloned()
                .unwrap_or_else(|| digits.to_owned())
        };
        Some(Command::Pause { reason })
    }
}

impl Switch {
    /// An INVITE to a feature code: authenticate, apply, answer (see the module doc).
    pub(super) fn feature_invite(
        &mut self,
        now: Instant,
        key: ServerTxKey,
        from: Peer,
        req: Request,
        cmd: Command,
    ) {
        if self.registrar.is_locked(now, from.addr.ip()) {
            return;
        }
        let seat = match self.registrar.authenticate(now, from.addr.ip(), &req) {
            Ok(seat) => seat,
            Err(mut resp) => {
                resp.headers
                    .push(HeaderName::Server, self.user_agent.clone());
                self.respond(now, &key, *resp);
                return;
            }
        };
        let what = match &cmd {
            Command::Login => "Logged In".to_owned(),
            Command::Logout => "Logged Out".to_owned(),
            Command::Pause { reason } => format!("Paused ({reason})"),
            Command::Unpause => "Unpaused".to_owned(),
            #[allow(unreachable_patterns)]
            _ => "Done".to_owned(),
        };
        let result = self.acd.command(now, &seat, cmd, Cause::FeatureCode);
        let tag = new_tag();
        let resp = match result {
            Ok(()) => {
                let pending = self.acd.seat(&seat).is_some_and(|s| s.pending().is_some());
                let phrase = if pending {
                    format!("{what} After Call")
                } else {
                    what
                };
                tracing::info!(%seat, outcome = %phrase, "feature code");
                let mut r = self.response_to(&req, 480, &phrase, Some(&tag));
                r.headers.push(
                    HeaderName::Other("Reason".into()),
                    format!("SIP;cause=200;text=\"{phrase}\""),
                );
                r
            }
            Err(e) => {
                let why = match e {
                    CommandError::NotOnBreak => "Not On Break",
                    CommandError::LoggedOut => "Logged Out",
                    CommandError::InvalidReason(_) => "Invalid Reason",
                    _ => "Unknown Seat",
                };
                tracing::info!(%seat, error = %e, "feature code refused");
                self.response_to(&req, 403, &format!("Forbidden ({why})"), Some(&tag))
            }
        };
        self.respond(now, &key, resp);
        self.pump(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_pause_reasons() {
        let f = FeatureCodes::new(&FeaturesConfig::default());
        assert_eq!(f.parse("*21"), Some(Command::Login));
        assert_eq!(f.parse("*22"), Some(Command::Logout));
        assert_eq!(f.parse("*24"), Some(Command::Unpause));
        assert_eq!(
            f.parse("*23"),
            Some(Command::Pause {
                reason: "break".into()
            })
        );
        assert_eq!(
            f.parse("*231"),
            Some(Command::Pause {
                reason: "meal".into()
            })
        );
        assert_eq!(
            f.parse("*2377"),
            Some(Command::Pause {
                reason: "77".into()
            })
        );
        assert_eq!(f.parse("*23a"), None);
        assert_eq!(f.parse("19"), None);
        assert_eq!(f.parse("*2"), None);
    }
}
