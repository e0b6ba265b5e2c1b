//! Prompts and recordings at the edge: turns the switch's [`MediaCommand::Play`] and
//! [`MediaCommand::Record`] into calls on the call's [`RelaySession`], loading WAV files off
//! the switch task (a blocking read never stalls call handling) and reporting the end of a
//! prompt back as an [`Input::PromptDone`].
//!
//! [`MediaCommand::Play`]: crate::switch::MediaCommand::Play
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
}

impl Prompts {
    /// `dir`: the configured `[media] prompts_dir`; `recordings`: `[media] recordings_dir`.
    pub(crate) fn new(dir: PathBuf, recordings: PathBuf) -> Prompts {
        Prompts {
            dir,
            recordings,
            cache: HashMap::new(),
            pending_records: std::collections::HashSet::new(),
        }
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

    /// A prompt already loaded, by name.
    pub(crate) fn cached(&self, name: &str) -> Option<Arc<Prompt>> {
        self.cache.get(name).cloned()
    }

    /// Keeps a loaded prompt for the next calls.
    pub(crate) fn keep(&mut self, name: String, prompt: Arc<Prompt>) {
        self.cache.insert(name, prompt);
    }

    /// Loads `name` on a blocking thread and sends the result back as
    /// [`Input::PromptLoaded`]. A name that climbs out of the prompts directory (`..`, an
    /// absolute path) is refused.
    pub(crate) fn load(
        &self,
        call: CallId,
        side: media::Side,
        name: String,
        repeat: bool,
        inputs: mpsc::Sender<Input>,
    ) {
        let path = self.path_of(&name);
        tokio::spawn(async move {
            let prompt = match path {
                Some(path) => tokio::task::spawn_blocking(move || {
                    Prompt::load(&path).map(Arc::new).map_err(|e| e.to_string())
                })
                .await
                .unwrap_or_else(|e| Err(format!("prompt loader failed: {e}"))),
                None => Err("prompt name leaves the prompts directory".to_owned()),
            };
            let _ = inputs
                .send(Input::PromptLoaded {
                    call,
                    side,
                    name,
                    repeat,
                    prompt,
                })
                .await;
        });
    }

    fn path_of(&self, name: &str) -> Option<PathBuf> {
        let rel = Path::new(name);
        let plain = rel
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
        plain.then(|| self.dir.join(rel))
    }

    /// Where a call's recording goes: `recordings_dir/YYYY-MM-DD/CALL-ID.wav` (UTC date).
    pub(crate) fn recording_path(&self, call: CallId, day: chrono::NaiveDate) -> PathBuf {
        self.recordings
            .join(day.format("%Y-%m-%d").to_string())
            .join(format!("{call}.wav"))
    }
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
