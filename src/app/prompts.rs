//! Prompts and recordings at the edge: turns the switch's [`MediaCommand::Play`],
//! [`MediaCommand::PlaySequence`] and [`MediaCommand::Record`] into calls on the call's
//! [`RelaySession`], loading WAV files off the switch task (a blocking read never stalls
//! call handling) and reporting the end of a prompt back as an [`Input::PromptDone`].
//!
//! A prompt name is resolved in the call's language: `prompts_dir/LANGUAGE/NAME`, else
//! `prompts_dir/NAME` (plans written before languages keep working). A sequence is played
//! as one prompt ([`Prompt::concat`]). Each play request of a call gets a number: a
//! prompt whose load finishes after a newer request (or a stop) for the same call is not
//! played, so a slow first load never talks over a bridge or a newer announcement.
//!
//! [`MediaCommand::Play`]: crate::switch::MediaCommand::Play
//! [`MediaCommand::PlaySequence`]: crate::switch::MediaCommand::PlaySequence
//! [`MediaCommand::Record`]: crate::switch::MediaCommand::Record

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::mpsc;

use super::Input;
use crate::acd::CallId;
use crate::media::{self, PlayState, Prompt, RelaySession};

/// WAV prompts by name (path relative to the prompts directory), loaded once, and the
/// directories prompts are read from and recordings written to.
pub(crate) struct Prompts {
    dir: PathBuf,
    recordings: PathBuf,
    cache: HashMap<String, Arc<Prompt>>,
    /// Calls whose `record` step ran before their relay ports were allocated: their
    /// recording starts with the session.
    pending_records: std::collections::HashSet<CallId>,
    /// Per call: number of the latest play request or stop ([`Prompts::next_epoch`]).
    epochs: HashMap<CallId, u64>,
}

/// Who a prompt load is for: the call, the side that hears it, whether it loops, and the
/// play request's number ([`Prompts::next_epoch`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct PlayRequest {
    pub call: CallId,
    pub side: media::Side,
    pub repeat: bool,
    pub epoch: u64,
}

/// One part of a sequence to play: already loaded, or to read from the first of its
/// candidate paths that exists.
enum Part {
    Cached(Arc<Prompt>),
    Load { key: String, paths: Vec<PathBuf> },
}

impl Prompts {
    /// `dir`: the configured `[media] prompts_dir`; `recordings`: `[media] recordings_dir`.
    pub(crate) fn new(dir: PathBuf, recordings: PathBuf) -> Prompts {
        Prompts {
            dir,
            recordings,
            cache: HashMap::new(),
            pending_records: std::collections::HashSet::new(),
            epochs: HashMap::new(),
        }
    }

    /// A new play request or a stop for `call`: earlier loads still running for it will
    /// not play. Returns the request's number.
    pub(crate) fn next_epoch(&mut self, call: CallId) -> u64 {
        let e = self.epochs.entry(call).or_insert(0);
        *e += 1;
        *e
    }

    /// Whether `epoch` is still `call`'s latest request.
    pub(crate) fn is_current(&self, call: CallId, epoch: u64) -> bool {
        self.epochs.get(&call) == Some(&epoch)
    }

    /// The call is over: forget its requests.
    pub(crate) fn forget(&mut self, call: CallId) {
        self.epochs.remove(&call);
        self.pending_records.remove(&call);
    }

    /// Remembers that `call` is to be recorded (`on`) or not once its relay session exists.
    pub(crate) fn record_later(&mut self, call: CallId, on: bool) {
        if on {
            self.pending_records.insert(call);
        } else {
            self.pending_records.remove(&call);
        }
    }

    /// Whether `call` waits for its session to start recording (and forgets it).
    pub(crate) fn take_pending_record(&mut self, call: CallId) -> bool {
        self.pending_records.remove(&call)
    }

    /// Keeps a loaded prompt for the next calls (key: `LANGUAGE/NAME`).
    pub(crate) fn keep(&mut self, key: String, prompt: Arc<Prompt>) {
        self.cache.insert(key, prompt);
    }

    /// The prompts `names` in `language`, as one prompt, when every one is loaded already.
    pub(crate) fn cached_sequence(&self, names: &[String], language: &str) -> Option<Arc<Prompt>> {
        let parts: Option<Vec<Arc<Prompt>>> = names
            .iter()
            .map(|n| self.cache.get(&cache_key(language, n)).cloned())
            .collect();
        let mut parts = parts?;
        if parts.len() == 1 {
            return parts.pop();
        }
        Some(Arc::new(Prompt::concat(&names.join("+"), &parts)))
    }

    /// Loads the prompts `names` in `language` on a blocking thread (the cached ones are
    /// reused) and sends them back as one [`Input::PromptLoaded`] for play request
    /// `epoch`. A part that cannot be read, or whose name climbs out of the prompts
    /// directory (`..`, an absolute path), is left out with a warning; with no part left
    /// the result is an error.
    pub(crate) fn load(
        &self,
        req: PlayRequest,
        names: Vec<String>,
        language: &str,
        inputs: mpsc::Sender<Input>,
    ) {
        let PlayRequest {
            call,
            side,
            repeat,
            epoch,
        } = req;
        let parts: Vec<Part> = names
            .iter()
            .map(|n| {
                let key = cache_key(language, n);
                match self.cache.get(&key) {
                    Some(p) => Part::Cached(Arc::clone(p)),
                    None => Part::Load {
                        paths: self.paths_of(language, n),
                        key,
                    },
                }
            })
            .collect();
        let label = names.join("+");
        tokio::spawn(async move {
            let result = tokio::task::spawn_blocking(move || load_parts(call, &label, parts))
                .await
                .unwrap_or_else(|e| (Vec::new(), Err(format!("prompt loader failed: {e}"))));
            let (loaded, prompt) = result;
            let _ = inputs
                .send(Input::PromptLoaded {
                    call,
                    side,
                    name: names.join(" "),
                    repeat,
                    epoch,
                    loaded,
                    prompt,
                })
                .await;
        });
    }

    /// Where `name` is looked for in `language`: `dir/LANGUAGE/NAME`, then `dir/NAME`.
    /// Empty when the name (or the language) is not a plain relative path.
    fn paths_of(&self, language: &str, name: &str) -> Vec<PathBuf> {
        let plain = |p: &Path| {
            p.components()
                .all(|c| matches!(c, std::path::Component::Normal(_)))
        };
        let rel = Path::new(name);
        if !plain(rel) {
            return Vec::new();
        }
        let mut out = Vec::new();
        if plain(Path::new(language)) && !language.is_empty() {
            out.push(self.dir.join(language).join(rel));
        }
        out.push(self.dir.join(rel));
        out
    }

    /// Where a call's recording goes: `recordings_dir/YYYY-MM-DD/CALL-ID.wav` (UTC date).
    pub(crate) fn recording_path(&self, call: CallId, day: chrono::NaiveDate) -> PathBuf {
        self.recordings
            .join(day.format("%Y-%m-%d").to_string())
            .join(format!("{call}.wav"))
    }
}

fn cache_key(language: &str, name: &str) -> String {
    format!("{language}/{name}")
}

/// Reads the parts still to load (blocking) and joins them all into one prompt. Returns
/// the parts newly loaded (to cache) and the prompt.
type Loaded = (Vec<(String, Arc<Prompt>)>, Result<Arc<Prompt>, String>);

fn load_parts(call: CallId, label: &str, parts: Vec<Part>) -> Loaded {
    let mut loaded = Vec::new();
    let mut ready = Vec::new();
    let mut errors = Vec::new();
    for part in parts {
        match part {
            Part::Cached(p) => ready.push(p),
            Part::Load { key, paths } => {
                let found = paths.iter().find(|p| p.exists()).or(paths.first());
                match found {
                    None => errors.push(format!("{key}: prompt name leaves the prompts directory")),
                    Some(path) => match Prompt::load(path) {
                        Ok(p) => {
                            let p = Arc::new(p);
                            loaded.push((key, Arc::clone(&p)));
                            ready.push(p);
                        }
                        Err(e) => errors.push(e.to_string()),
                    },
                }
            }
        }
    }
    for e in &errors {
        tracing::warn!(%call, error = %e, "prompt part left out");
    }
    let prompt = match ready.len() {
        0 => Err(errors.join("; ")),
        1 => ready.pop().ok_or_else(String::new),
        _ => Ok(Arc::new(Prompt::concat(label, &ready))),
    };
    (loaded, prompt)
}

/// Starts `prompt` on `side` of `session`; when it ends by itself (or cannot start), an
/// [`Input::PromptDone`] tells the switch so a `play` step moves on. A prompt stopped,
/// replaced or pre-empted by the bridge reports nothing.
pub(crate) fn play(
    session: &RelaySession,
    call: CallId,
    side: media::Side,
    prompt: Arc<Prompt>,
    repeat: bool,
    inputs: mpsc::Sender<Input>,
) {
    match session.play(side, prompt, repeat) {
        Ok(mut handle) => {
            tokio::spawn(async move {
                if matches!(handle.finished().await, PlayState::Finished) {
                    let _ = inputs.send(Input::PromptDone { call }).await;
                }
            });
        }
        Err(e) => {
            tracing::warn!(%call, error = %e, "prompt not played");
            tokio::spawn(async move {
                let _ = inputs.send(Input::PromptDone { call }).await;
            });
        }
    }
}

/// Starts recording `call` to `path`, creating its directory off the switch task. A
/// failure is logged; the call goes on.
pub(crate) fn record_start(session: &RelaySession, call: CallId, path: PathBuf) {
    if let Some(dir) = path.parent()
        && let Err(e) = std::fs::create_dir_all(dir)
    {
        tracing::warn!(%call, dir = %dir.display(), error = %e, "recording directory unusable; not recording");
        return;
    }
    match session.record_start(path.clone()) {
        Ok(handle) => {
            tokio::spawn(async move {
                match handle.finished().await {
                    Ok(summary) => {
                        tracing::info!(%call, path = %path.display(), ?summary, "recording complete")
                    }
                    Err(e) => tracing::warn!(%call, error = %e, "recording ended early"),
                }
            });
        }
        Err(e) => tracing::warn!(%call, error = %e, "recording not started"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(path: &Path, samples: usize) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 8000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(path, spec).unwrap();
        for _ in 0..samples {
            w.write_sample(1000i16).unwrap();
        }
        w.finalize().unwrap();
    }

    #[test]
    fn names_resolve_in_the_language_then_the_prompts_directory() {
        let p = Prompts::new(PathBuf::from("/p"), PathBuf::from("/r"));
        assert_eq!(
            p.paths_of("ar", "digits/3.wav"),
            [
                PathBuf::from("/p/ar/digits/3.wav"),
                PathBuf::from("/p/digits/3.wav")
            ]
        );
        assert!(p.paths_of("fr", "../secret.wav").is_empty());
        assert!(p.paths_of("fr", "/etc/passwd").is_empty());
        // A language that is not a plain name is skipped, the shared directory stays.
        assert_eq!(p.paths_of("..", "a.wav"), [PathBuf::from("/p/a.wav")]);
    }

    #[test]
    fn a_sequence_loads_as_one_prompt_leaving_out_missing_parts() {
        let dir = tempfile::tempdir().unwrap();
        tone(&dir.path().join("fr/position.wav"), 300);
        tone(&dir.path().join("digits/3.wav"), 100);
        let mut p = Prompts::new(dir.path().to_owned(), dir.path().join("rec"));
        let names = ["position.wav", "missing.wav", "digits/3.wav"];
        let parts = names
            .iter()
            .map(|n| Part::Load {
                key: cache_key("fr", n),
                paths: p.paths_of("fr", n),
            })
            .collect();
        let (loaded, prompt) = load_parts(CallId::nil(), "seq", parts);
        let prompt = prompt.unwrap();
        // 300 + 100 samples joined: 3 packets (not 2 + 1).
        assert_eq!((prompt.samples(), prompt.packets()), (400, 3));
        let keys: Vec<&str> = loaded.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["fr/position.wav", "fr/digits/3.wav"]);
        for (k, v) in loaded {
            p.keep(k, v);
        }
        let names: Vec<String> = ["position.wav", "digits/3.wav"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let cached = p.cached_sequence(&names, "fr").unwrap();
        assert_eq!(cached.samples(), 400);
        assert!(p.cached_sequence(&names, "ar").is_none());
        // Nothing readable at all: an error, so a play step moves on.
        let none = vec![Part::Load {
            key: cache_key("fr", "x.wav"),
            paths: p.paths_of("fr", "x.wav"),
        }];
        assert!(load_parts(CallId::nil(), "x", none).1.is_err());
    }

    #[test]
    fn a_stop_or_newer_request_makes_a_pending_load_stale() {
        let mut p = Prompts::new(PathBuf::from("/p"), PathBuf::from("/r"));
        let call = CallId::nil();
        let first = p.next_epoch(call);
        assert!(p.is_current(call, first));
        let second = p.next_epoch(call);
        assert!(!p.is_current(call, first));
        assert!(p.is_current(call, second));
        p.forget(call);
        assert!(!p.is_current(call, second));
    }
}
