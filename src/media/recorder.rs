//! Call recorder: a stereo WAV (8000 Hz, 16-bit linear; left = caller, side A; right = seat,
//! side B) decoded from the G.711 RTP the relay receives from each side.
//!
//! The relay task copies each RTP payload into a fixed-size [`Chunk`] and hands it to a
//! bounded channel with `try_send` (never waits; a full channel drops the chunk and counts
//! it). A blocking writer task drains the channel, places each chunk on the recording's time
//! line by its RTP timestamp (RFC 3550 §5.1) — anchored, per SSRC, at the arrival time of the
//! stream's first packet — and writes frames once they are [`MIX_DELAY_FRAMES`] behind the
//! newest audio, so packets up to 1 s late are still mixed in; gaps are silence. A write
//! error (full disk, unwritable directory) ends the recording with a log line and
//! `vigie_recording_failures_total`; the relay never waits on the disk.

use std::collections::VecDeque;
use std::path::PathBuf;

use prometheus_client::metrics::counter::Counter;
use tokio::sync::{mpsc, oneshot};

use super::player::{Codec, SAMPLE_RATE};

/// Largest RTP payload recorded, in octets (60 ms of G.711); a longer payload is cut.
pub(crate) const MAX_CHUNK: usize = 480;
/// Chunks buffered between the relay and the writer (about 2.5 s of both sides at 20 ms).
pub(crate) const CHANNEL_CAPACITY: usize = 256;
/// How far (in 8 kHz frames) the writer stays behind the newest audio: 1 s.
pub const MIX_DELAY_FRAMES: u64 = SAMPLE_RATE as u64;
/// A stream whose timestamps drift this far (frames) from its arrival times is re-anchored
/// (a timestamp jump, or a sender restarting): 10 s.
const REANCHOR_FRAMES: i64 = 10 * SAMPLE_RATE as i64;

/// One RTP payload on its way to the writer. Copied by value: no allocation per packet.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Chunk {
    /// 0 = side A (left), 1 = side B (right).
    pub(crate) side: usize,
    pub(crate) codec: Codec,
    pub(crate) ssrc: u32,
    /// RTP timestamp of the first sample.
    pub(crate) ts: u32,
    /// Arrival time in frames since the recording started.
    pub(crate) arrival: u64,
    pub(crate) len: usize,
    pub(crate) payload: [u8; MAX_CHUNK],
}

/// Why a recording ended badly.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The WAV file could not be created (missing or read-only directory…).
    #[error("recording {path}: cannot create: {source}")]
    Create {
        /// The recording file.
        path: PathBuf,
        /// hound's error (wrapping the operating system's).
        source: hound::Error,
    },
    /// Writing failed midway (disk full…); the file holds what was written before.
    #[error("recording {path}: write failed: {source}")]
    Write {
        /// The recording file.
        path: PathBuf,
        /// hound's error (wrapping the operating system's).
        source: hound::Error,
    },
    /// The writer task ended without saying how (runtime shutting down).
    #[error("recording writer ended without a result")]
    Lost,
}

/// What a finished recording holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingSummary {
    /// The WAV file written.
    pub path: PathBuf,
    /// Stereo frames written (one per 1/8000 s).
    pub frames: u64,
    /// Chunks that arrived more than [`MIX_DELAY_FRAMES`] late and were left out.
    pub late_chunks: u64,
}

/// Watches one recording started by [`super::RelaySession::record_start`].
#[derive(Debug)]
pub struct RecordingHandle {
    pub(crate) done: oneshot::Receiver<Result<RecordingSummary, RecordError>>,
}

impl RecordingHandle {
    /// Wait until the file is complete (after [`super::RelaySession::record_stop`], another
    /// `record_start`, the session's end, or a write failure).
    ///
    /// # Errors
    /// [`RecordError`] if the file could not be created or written.
    pub async fn finished(self) -> Result<RecordingSummary, RecordError> {
        self.done.await.unwrap_or(Err(RecordError::Lost))
    }
}

/// Per-SSRC anchor: RTP timestamp `ts` is at frame `frame` of the recording.
#[derive(Debug, Clone, Copy)]
struct Anchor {
    ssrc: u32,
    ts: u32,
    frame: u64,
}

/// The time line of a stereo recording: frames not yet written, from `start` on.
#[derive(Debug, Default)]
pub(crate) struct Mixer {
    window: VecDeque<[i16; 2]>,
    /// Frame index of `window[0]`.
    start: u64,
    /// One past the last frame holding audio.
    end: u64,
    anchors: [Option<Anchor>; 2],
    late_chunks: u64,
}

impl Mixer {
    /// Place a chunk on the time line (decoding it).
    pub(crate) fn push(&mut self, chunk: &Chunk) {
        let side = chunk.side.min(1);
        let arrival = chunk.arrival;
        let anchor = match self.anchors[side] {
            Some(a) if a.ssrc == chunk.ssrc => a,
            _ => Anchor {
                ssrc: chunk.ssrc,
                ts: chunk.ts,
                frame: arrival,
            },
        };
        let offset = i64::from(chunk.ts.wrapping_sub(anchor.ts) as i32);
        let mut frame = anchor.frame as i64 + offset;
        let anchor = if frame < 0 || (frame - arrival as i64).abs() > REANCHOR_FRAMES {
            frame = arrival as i64;
            Anchor {
                ssrc: chunk.ssrc,
                ts: chunk.ts,
                frame: arrival,
            }
        } else {
            anchor
        };
        self.anchors[side] = Some(anchor);
        let frame = frame as u64;
        let payload = chunk.payload.get(..chunk.len).unwrap_or(&[]);
        let chunk_end = frame + payload.len() as u64;
        if chunk_end <= self.start {
            self.late_chunks += 1;
            return;
        }
        let needed = (chunk_end - self.start) as usize;
        if self.window.len() < needed {
            self.window.resize(needed, [0, 0]);
        }
        for (i, octet) in payload.iter().enumerate() {
            let at = frame + i as u64;
            if at < self.start {
                continue;
            }
            if let Some(slot) = self.window.get_mut((at - self.start) as usize) {
                slot[side] = chunk.codec.decode(*octet);
            }
        }
        self.end = self.end.max(chunk_end);
    }

    /// The next frame if it is at least `delay` frames behind the newest audio.
    pub(crate) fn pop_ready(&mut self, delay: u64) -> Option<[i16; 2]> {
        if self.start.saturating_add(delay) >= self.end {
            return None;
        }
        self.pop()
    }

    /// The next frame, whatever its age (at the end of the recording).
    pub(crate) fn pop(&mut self) -> Option<[i16; 2]> {
        let frame = self.window.pop_front()?;
        self.start += 1;
        Some(frame)
    }
}

/// The writer task: create `path`, mix what arrives on `rx`, finalise the WAV when the
/// channel closes. Blocking IO: run it with `spawn_blocking`.
pub(crate) fn run_writer(
    path: PathBuf,
    mut rx: mpsc::Receiver<Chunk>,
    failures: Counter,
    done: oneshot::Sender<Result<RecordingSummary, RecordError>>,
) {
    let result = write(&path, &mut rx);
    if let Err(e) = &result {
        failures.inc();
        tracing::warn!(error = %e, "recording stopped; the call goes on");
    }
    // Closing the channel tells the relay to stop feeding this recording.
    rx.close();
    let _ = done.send(result);
}

fn write(path: &PathBuf, rx: &mut mpsc::Receiver<Chunk>) -> Result<RecordingSummary, RecordError> {
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: SAMPLE_RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer =
        hound::WavWriter::create(path, spec).map_err(|source| RecordError::Create {
            path: path.clone(),
            source,
        })?;
    let write_err = |source| RecordError::Write {
        path: path.clone(),
        source,
    };
    let mut mixer = Mixer::default();
    let mut frames = 0u64;
    let mut put = |w: &mut hound::WavWriter<_>, frame: [i16; 2]| -> Result<(), hound::Error> {
        w.write_sample(frame[0])?;
        w.write_sample(frame[1])?;
        frames += 1;
        Ok(())
    };
    while let Some(chunk) = rx.blocking_recv() {
        mixer.push(&chunk);
        while let Some(frame) = mixer.pop_ready(MIX_DELAY_FRAMES) {
            put(&mut writer, frame).map_err(write_err)?;
        }
    }
    while let Some(frame) = mixer.pop() {
        put(&mut writer, frame).map_err(write_err)?;
    }
    writer.finalize().map_err(write_err)?;
    Ok(RecordingSummary {
        path: path.clone(),
        frames,
        late_chunks: mixer.late_chunks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(side: usize, ssrc: u32, ts: u32, arrival: u64, octets: &[u8]) -> Chunk {
        let mut payload = [0u8; MAX_CHUNK];
        payload[..octets.len()].copy_from_slice(octets);
        Chunk {
            side,
            codec: Codec::Pcmu,
            ssrc,
            ts,
            arrival,
            len: octets.len(),
            payload,
        }
    }

    fn drain(m: &mut Mixer) -> Vec<[i16; 2]> {
        std::iter::from_fn(|| m.pop()).collect()
    }

    #[test]
    fn mixes_by_timestamp_with_silence_in_gaps() {
        let mut m = Mixer::default();
        // A: ts 1000 arrives at frame 0 (µ-law 0x80 = +32124).
        m.push(&chunk(0, 1, 1000, 0, &[0x80; 4]));
        // B starts at frame 2 with its own timestamp base.
        m.push(&chunk(1, 2, 50, 2, &[0x00; 2]));
        // A's next chunk 8 frames after its first (a 4-frame gap), arriving early.
        m.push(&chunk(0, 1, 1008, 3, &[0xFE; 2]));
        assert_eq!(m.pop_ready(100), None, "nothing is 100 frames old yet");
        let frames = drain(&mut m);
        let p = 32124;
        assert_eq!(
            frames,
            vec![
                [p, 0],
                [p, 0],
                [p, -p],
                [p, -p],
                [0, 0],
                [0, 0],
                [0, 0],
                [0, 0],
                [8, 0],
                [8, 0]
            ]
        );
    }

    #[test]
    fn late_chunks_are_counted_and_timestamp_jumps_reanchor() {
        let mut m = Mixer::default();
        m.push(&chunk(0, 1, 0, 0, &[0xFF; 160]));
        m.push(&chunk(0, 1, 160, 20, &[0xFF; 160]));
        let written = std::iter::from_fn(|| m.pop_ready(100)).count();
        assert_eq!(written, 220);
        // A chunk for frames 0..160, all already written.
        m.push(&chunk(0, 1, 0, 30, &[0x80; 160]));
        assert_eq!(m.late_chunks, 1);
        // A 1-hour timestamp jump is placed at its arrival time, not an hour later.
        m.push(&chunk(0, 1, 160 + 8000 * 3600, 400, &[0x80; 160]));
        assert_eq!(m.end, 560);
        // A new SSRC on side B anchors at arrival.
        m.push(&chunk(1, 9, 123_456, 500, &[0x80; 10]));
        assert_eq!(m.end, 560);
        let rest = drain(&mut m);
        assert_eq!(rest.len(), 560 - 220);
        assert_eq!(rest[400 - 220], [32124, 0]);
        assert_eq!(rest[500 - 220], [32124, 32124]);
    }

    #[test]
    fn unwritable_path_fails_with_create_error_and_counts() {
        let failures = Counter::default();
        let (_tx, rx) = mpsc::channel(1);
        let (done_tx, done_rx) = oneshot::channel();
        let path = PathBuf::from("/nonexistent-dir-vigie/rec.wav");
        run_writer(path, rx, failures.clone(), done_tx);
        let result = done_rx.blocking_recv().unwrap();
        assert!(
            matches!(result, Err(RecordError::Create { .. })),
            "{result:?}"
        );
        assert_eq!(failures.get(), 1);
    }
}
