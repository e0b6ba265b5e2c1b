//! Queue announcements to a waiting caller: which prompts, in which order, for a position
//! and an expected wait ("Votre position dans la file d'attente est : 3. Temps d'attente
//! estimé : 2 minutes."), in the call's language.
//!
//! An announcement is one prompt sequence ([`super::MediaCommand::PlaySequence`]) of names
//! relative to the language's prompts directory (`prompts_dir/LANG/NAME`):
//!
//! | part | prompts |
//! |---|---|
//! | the queue step's `announce` | `NAME` as written (e.g. `please-hold.wav`) |
//! | position `n` | `position.wav`, then the number |
//! | expected wait `m` minutes | `expected-wait.wav`, then the number and the unit |
//!
//! Numbers are single prompts `digits/0.wav` … `digits/20.wav`. Above [`MAX_SPOKEN`] the
//! announcement says "more than 20" (`more-than.wav`, `digits/20.wav`): with 20 call-takers
//! and 60 trunk channels a caller is rarely further than 20th, and "more than 20 minutes"
//! says what matters; this avoids composing tens and units with each language's grammar.
//!
//! Units follow the language's grammar for the number:
//! - `fr` (and any language without its own rule): `minute.wav` for 1, `minutes.wav`
//!   otherwise;
//! - `ar`: 1 → `minute-one.wav` alone ("دقيقة واحدة"), 2 → `minutes-two.wav` alone (the
//!   dual "دقيقتان"), 3–10 → number + `minutes.wav` (plural "دقائق"), 11 and more → number +
//!   `minute.wav` (singular accusative "دقيقة").
//!
//! `tools/make-prompts` generates every one of these names for `fr` and `ar`.

use std::time::Duration;

use crate::acd::ewt::announced_minutes;

/// Largest number spoken as such; above it, "more than 20".
pub const MAX_SPOKEN: u64 = 20;

/// What the queue step announces, from the dialplan's `queue` step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AnnounceSpec {
    /// The step's own prompt (`announce`), played first.
    pub prompt: Option<String>,
    /// Period between announcements; `None` = once.
    pub every: Option<Duration>,
    /// Tell the caller's position.
    pub position: bool,
    /// Tell the expected wait (when known).
    pub wait: bool,
}

impl AnnounceSpec {
    /// Whether the step announces anything at all.
    pub fn any(&self) -> bool {
        self.prompt.is_some() || self.position || self.wait
    }
}

/// The prompts of one announcement in `language`: the step's prompt, then the position
/// (when `spec.position` and known), then the expected wait (when `spec.wait` and known).
/// Empty when there is nothing to say.
pub(crate) fn sequence(
    language: &str,
    spec: &AnnounceSpec,
    position: Option<usize>,
    expected_wait: Option<Duration>,
) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(p) = &spec.prompt {
        out.push(p.clone());
    }
    if spec.position
        && let Some(n) = position
    {
        out.push("position.wav".to_owned());
        number(&mut out, n as u64);
    }
    if spec.wait
        && let Some(ewt) = expected_wait
    {
        out.push("expected-wait.wav".to_owned());
        minutes(&mut out, language, announced_minutes(ewt));
    }
    out
}

/// `n` as prompts: `digits/N.wav`, or "more than 20" above [`MAX_SPOKEN`].
fn number(out: &mut Vec<String>, n: u64) {
    if n > MAX_SPOKEN {
        out.push("more-than.wav".to_owned());
        out.push(format!("digits/{MAX_SPOKEN}.wav"));
    } else {
        out.push(format!("digits/{n}.wav"));
    }
}

/// `m` minutes with the unit the language's grammar wants (see the module doc).
fn minutes(out: &mut Vec<String>, language: &str, m: u64) {
    let primary = language.split('-').next().unwrap_or(language);
    match (primary, m) {
        ("ar", 1) => out.push("minute-one.wav".to_owned()),
        ("ar", 2) => out.push("minutes-two.wav".to_owned()),
        ("ar", 3..=10) => {
            number(out, m);
            out.push("minutes.wav".to_owned());
        }
        ("ar", _) => {
            number(out, m);
            out.push("minute.wav".to_owned());
        }
        (_, 1) => {
            number(out, m);
            out.push("minute.wav".to_owned());
        }
        _ => {
            number(out, m);
            out.push("minutes.wav".to_owned());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(prompt: Option<&str>, position: bool, wait: bool) -> AnnounceSpec {
        AnnounceSpec {
            prompt: prompt.map(str::to_owned),
            every: None,
            position,
            wait,
        }
    }

    fn mins(m: u64) -> Option<Duration> {
        Some(Duration::from_secs(m * 60))
    }

    #[test]
    fn position_three_and_two_minutes_in_french() {
        assert_eq!(
            sequence("fr", &spec(None, true, true), Some(3), mins(2)),
            [
                "position.wav",
                "digits/3.wav",
                "expected-wait.wav",
                "digits/2.wav",
                "minutes.wav"
            ]
        );
        assert_eq!(
            sequence(
                "fr",
                &spec(Some("please-hold.wav"), true, true),
                Some(1),
                mins(1)
            ),
            [
                "please-hold.wav",
                "position.wav",
                "digits/1.wav",
                "expected-wait.wav",
                "digits/1.wav",
                "minute.wav"
            ]
        );
    }

    #[test]
    fn unknown_wait_says_the_position_only() {
        assert_eq!(
            sequence("fr", &spec(None, true, true), Some(4), None),
            ["position.wav", "digits/4.wav"]
        );
        assert!(sequence("fr", &spec(None, false, true), Some(4), None).is_empty());
        assert_eq!(
            sequence(
                "fr",
                &spec(Some("wait.wav"), false, false),
                Some(4),
                mins(3)
            ),
            ["wait.wav"]
        );
    }

    #[test]
    fn above_twenty_says_more_than_twenty() {
        assert_eq!(
            sequence("fr", &spec(None, true, true), Some(27), mins(45)),
            [
                "position.wav",
                "more-than.wav",
                "digits/20.wav",
                "expected-wait.wav",
                "more-than.wav",
                "digits/20.wav",
                "minutes.wav"
            ]
        );
    }

    #[test]
    fn arabic_units_follow_the_number() {
        let wait = |m| {
            let mut v = sequence("ar", &spec(None, false, true), Some(1), mins(m));
            v.remove(0);
            v
        };
        assert_eq!(wait(1), ["minute-one.wav"]);
        assert_eq!(wait(2), ["minutes-two.wav"]);
        assert_eq!(wait(3), ["digits/3.wav", "minutes.wav"]);
        assert_eq!(wait(10), ["digits/10.wav", "minutes.wav"]);
        assert_eq!(wait(11), ["digits/11.wav", "minute.wav"]);
        assert_eq!(wait(30), ["more-than.wav", "digits/20.wav", "minute.wav"]);
        // A region subtag keeps the language's grammar.
        assert_eq!(
            sequence("ar-ma", &spec(None, false, true), None, mins(2)),
            ["expected-wait.wav", "minutes-two.wav"]
        );
    }

    /// Every name an announcement can ask for, in `fr` and `ar`, is one that
    /// `tools/make-prompts` writes (numbers through its `digits/$n` loop up to 20).
    #[test]
    fn make_prompts_generates_every_name_announcements_use() {
        let script = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/tools/make-prompts"));
        assert!(script.contains("for n in $(seq 0 20)"), "digits 0-20");
        for lang in ["fr", "ar"] {
            for n in 0..=25usize {
                let names = sequence(
                    lang,
                    &spec(None, true, true),
                    Some(n),
                    Some(Duration::from_secs(n as u64 * 60)),
                );
                for name in names.iter().filter(|n| !n.starts_with("digits/")) {
                    let path = format!("\"$out/{lang}/{name}\"");
                    assert!(script.contains(&path), "make-prompts lacks {path}");
                }
            }
        }
    }
}
