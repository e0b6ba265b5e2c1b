//! Prompt player: WAV prompts played as G.711 RTP from a relay side's socket (RFC 3550 §5.1,
//! RFC 3551 §4.5.14).
//!
//! A [`Prompt`] is loaded once (8 kHz mono: 16-bit linear PCM, or G.711 A-law/µ-law WAV) and
//! kept encoded in both G.711 laws, so playing it costs one copy of 160 octets per 20 ms
//! packet and no encoding. The relay task of a session runs the [`Playback`] of each side
//! (see [`super::RelaySession::play`]).

use std::fmt;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::g711;

/// Samples per second of every prompt and of G.711 (RFC 3551 §4.5.14).
pub const SAMPLE_RATE: u32 = 8000;
/// Samples (= G.711 octets) per RTP packet: 20 ms at 8 kHz.
pub const SAMPLES_PER_PACKET: usize = 160;
/// Packetisation interval of played prompts.
pub const PACKET_INTERVAL: Duration = Duration::from_millis(20);
/// Largest prompt file read, in octets (about 10 minutes of 16-bit audio).
const MAX_PROMPT_FILE: u64 = 10 * 1024 * 1024;

/// WAVE format tags (RFC 2361 appendix A).
const WAVE_FORMAT_PCM: u16 = 1;
const WAVE_FORMAT_ALAW: u16 = 6;
const WAVE_FORMAT_MULAW: u16 = 7;
const WAVE_FORMAT_EXTENSIBLE: u16 = 0xFFFE;

/// Why a prompt cannot be loaded. Each names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PromptError {
    /// The file cannot be read.
    #[error("prompt {path}: cannot read: {source}")]
    Read {
        /// The prompt file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// Not a RIFF/WAVE file, or a malformed one.
    #[error("prompt {path}: not a valid WAV file: {reason}")]
    Malformed {
        /// The prompt file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A WAV file in a format vigie does not play.
    #[error(
        "prompt {path}: unsupported format {format}; need 8000 Hz mono 16-bit PCM, A-law or µ-law"
    )]
    Format {
        /// The prompt file.
        path: PathBuf,
        /// The format found (tag, rate, channels, bits).
        format: WavFormat,
    },
    /// The file holds no sample.
    #[error("prompt {path}: no audio")]
    Empty {
        /// The prompt file.
        path: PathBuf,
    },
    /// The file is larger than vigie reads for a prompt.
    #[error("prompt {path}: larger than {MAX_PROMPT_FILE} octets")]
    TooLarge {
        /// The prompt file.
        path: PathBuf,
    },
}

/// The format chunk of a WAV file, as found (for error messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WavFormat {
    /// WAVE format tag (1 PCM, 3 float, 6 A-law, 7 µ-law, 0xFFFE extensible).
    pub tag: u16,
    /// Sample rate in Hz.
    pub sample_rate: u32,
    /// Channels.
    pub channels: u16,
    /// Bits per sample.
    pub bits_per_sample: u16,
}

impl fmt::Display for WavFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.tag {
            WAVE_FORMAT_PCM => "PCM",
            3 => "IEEE float",
            WAVE_FORMAT_ALAW => "A-law",
            WAVE_FORMAT_MULAW => "µ-law",
            WAVE_FORMAT_EXTENSIBLE => "extensible",
            _ => "tag",
        };
        write!(
            f,
            "{name} ({:#06x}) {} Hz, {} channel(s), {} bits",
            self.tag, self.sample_rate, self.channels, self.bits_per_sample
        )
    }
}

/// A G.711 codec (RFC 3551 §4.5.14).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// µ-law, static payload type 0.
    Pcmu,
    /// A-law, static payload type 8.
    Pcma,
}

impl Codec {
    /// The static RTP payload type (RFC 3551 table 4).
    pub fn static_payload_type(self) -> u8 {
        match self {
            Codec::Pcmu => 0,
            Codec::Pcma => 8,
        }
    }

    /// The codec of a static payload type (0 or 8), if it is one.
    pub fn from_static_payload_type(pt: u8) -> Option<Codec> {
        match pt {
            0 => Some(Codec::Pcmu),
            8 => Some(Codec::Pcma),
            _ => None,
        }
    }

    /// Decode one octet to a linear 16-bit sample.
    pub fn decode(self, octet: u8) -> i16 {
        match self {
            Codec::Pcmu => g711::ulaw_to_linear(octet),
            Codec::Pcma => g711::alaw_to_linear(octet),
        }
    }
}

/// An audio prompt ready to play: 8 kHz mono, held encoded in both G.711 laws and padded
/// with silence to whole 20 ms packets.
#[derive(Clone, PartialEq, Eq)]
pub struct Prompt {
    name: String,
    samples: usize,
    pcmu: Vec<u8>,
    pcma: Vec<u8>,
}

impl fmt::Debug for Prompt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Prompt")
            .field("name", &self.name)
            .field("samples", &self.samples)
            .finish_non_exhaustive()
    }
}

impl Prompt {
    /// Read a WAV prompt: 8000 Hz mono 16-bit linear PCM (read with `hound`), or 8000 Hz
    /// mono 8-bit G.711 A-law (format tag 6) / µ-law (tag 7), which `hound` does not read.
    /// Blocking file IO: call it at start-up or from `spawn_blocking`.
    ///
    /// # Errors
    /// [`PromptError`] naming the file: unreadable, malformed, another format (stereo,
    /// 44.1 kHz, float, 8-bit PCM…), empty, or over 10 MiB.
    pub fn load(path: impl AsRef<Path>) -> Result<Prompt, PromptError> {
        use std::io::Read;
        let path = path.as_ref();
        let read = |source| PromptError::Read {
            path: path.to_owned(),
            source,
        };
        let file = std::fs::File::open(path).map_err(read)?;
        let mut bytes = Vec::new();
        file.take(MAX_PROMPT_FILE + 1)
            .read_to_end(&mut bytes)
            .map_err(read)?;
        if bytes.len() as u64 > MAX_PROMPT_FILE {
            return Err(PromptError::TooLarge {
                path: path.to_owned(),
            });
        }
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into(),
        );
        Prompt::from_wav_bytes(&name, &bytes).map_err(|e| e.with_path(path))
    }

    /// A prompt from 8 kHz linear samples (e.g. generated tones).
    pub fn from_samples(name: &str, samples: &[i16]) -> Prompt {
        let packets = samples.len().div_ceil(SAMPLES_PER_PACKET);
        let mut pcmu = vec![g711::ULAW_SILENCE; packets * SAMPLES_PER_PACKET];
        let mut pcma = vec![g711::ALAW_SILENCE; packets * SAMPLES_PER_PACKET];
        for ((s, u), a) in samples.iter().zip(pcmu.iter_mut()).zip(pcma.iter_mut()) {
            *u = g711::linear_to_ulaw(*s);
            *a = g711::linear_to_alaw(*s);
        }
        Prompt {
            name: name.to_owned(),
            samples: samples.len(),
            pcmu,
            pcma,
        }
    }

    fn from_wav_bytes(name: &str, bytes: &[u8]) -> Result<Prompt, LoadError> {
        let format = wav_format(bytes)?;
        let accepted = format.sample_rate == SAMPLE_RATE && format.channels == 1;
        let prompt = match (format.tag, format.bits_per_sample) {
            (WAVE_FORMAT_PCM | WAVE_FORMAT_EXTENSIBLE, 16) if accepted => {
                let reader = hound::WavReader::new(Cursor::new(bytes)).map_err(|e| match e {
                    hound::Error::Unsupported => LoadError::Format(format),
                    other => LoadError::Malformed(other.to_string()),
                })?;
                let spec = reader.spec();
                if spec.sample_format != hound::SampleFormat::Int {
                    return Err(LoadError::Format(format));
                }
                let samples = reader
                    .into_samples::<i16>()
                    .collect::<Result<Vec<i16>, _>>()
                    .map_err(|e| LoadError::Malformed(e.to_string()))?;
                Prompt::from_samples(name, &samples)
            }
            (WAVE_FORMAT_ALAW | WAVE_FORMAT_MULAW, 8) if accepted => {
                let codec = if format.tag == WAVE_FORMAT_ALAW {
                    Codec::Pcma
                } else {
                    Codec::Pcmu
                };
                let data = riff_chunk(bytes, b"data")?
                    .ok_or(LoadError::Malformed("no data chunk".to_owned()))?;
                let samples: Vec<i16> = data.iter().map(|&o| codec.decode(o)).collect();
                Prompt::from_samples(name, &samples)
            }
            _ => return Err(LoadError::Format(format)),
        };
        if prompt.samples == 0 {
            return Err(LoadError::Empty);
        }
        Ok(prompt)
    }

    /// The file name it was loaded from (for logs).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Number of 8 kHz samples (before padding).
    pub fn samples(&self) -> usize {
        self.samples
    }

    /// Number of 20 ms RTP packets one play sends.
    pub fn packets(&self) -> usize {
        self.pcmu.len() / SAMPLES_PER_PACKET
    }

    /// Length of the audio.
    pub fn duration(&self) -> Duration {
        Duration::from_micros(self.samples as u64 * 1_000_000 / u64::from(SAMPLE_RATE))
    }

    /// The 160 octets of packet `index` in `codec`, if `index < packets()`.
    pub fn packet(&self, codec: Codec, index: usize) -> Option<&[u8]> {
        let data = match codec {
            Codec::Pcmu => &self.pcmu,
            Codec::Pcma => &self.pcma,
        };
        let start = index.checked_mul(SAMPLES_PER_PACKET)?;
        data.get(start..start.checked_add(SAMPLES_PER_PACKET)?)
    }

    /// Several prompts as one, heard back to back (a queue announcement: `position.wav`,
    /// `digits/3.wav`, …): the samples of each part follow the previous part's last sample
    /// with no padding between them, and only the end is padded to a whole 20 ms packet.
    /// Played as one prompt, its RTP sequence numbers and timestamps run on across the
    /// parts (RFC 3550 §5.1) and one play end is reported. `name` is for logs.
    /// [`Prompt::samples`] is the sum of the parts' samples; [`Prompt::packets`] is that
    /// divided by 160, rounded up.
    pub fn concat(name: &str, parts: &[Arc<Prompt>]) -> Prompt {
        let samples: usize = parts.iter().map(|p| p.samples).sum();
        let packets = samples.div_ceil(SAMPLES_PER_PACKET);
        let mut pcmu = Vec::with_capacity(packets * SAMPLES_PER_PACKET);
        let mut pcma = Vec::with_capacity(packets * SAMPLES_PER_PACKET);
        for p in parts {
            pcmu.extend_from_slice(p.pcmu.get(..p.samples).unwrap_or(&p.pcmu));
            pcma.extend_from_slice(p.pcma.get(..p.samples).unwrap_or(&p.pcma));
        }
        pcmu.resize(packets * SAMPLES_PER_PACKET, g711::ULAW_SILENCE);
        pcma.resize(packets * SAMPLES_PER_PACKET, g711::ALAW_SILENCE);
        Prompt {
            name: name.to_owned(),
            samples,
            pcmu,
            pcma,
        }
    }
}

/// A load error before the path is attached.
enum LoadError {
    Malformed(String),
    Format(WavFormat),
    Empty,
}

impl LoadError {
    fn with_path(self, path: &Path) -> PromptError {
        let path = path.to_owned();
        match self {
            LoadError::Malformed(reason) => PromptError::Malformed { path, reason },
            LoadError::Format(format) => PromptError::Format { path, format },
            LoadError::Empty => PromptError::Empty { path },
        }
    }
}

/// The body of the first RIFF chunk with id `id` in a WAVE file (RIFF header checked).
fn riff_chunk<'a>(bytes: &'a [u8], id: &[u8; 4]) -> Result<Option<&'a [u8]>, LoadError> {
    let malformed = |reason: &str| LoadError::Malformed(reason.to_owned());
    if bytes.get(0..4) != Some(b"RIFF") || bytes.get(8..12) != Some(b"WAVE") {
        return Err(malformed("no RIFF/WAVE header"));
    }
    let mut at = 12usize;
    while let Some(header) = bytes.get(at..at + 8) {
        let len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
        let body_at = at + 8;
        if &header[0..4] == id {
            // A truncated data chunk (a recorder that died) still plays what is there.
            let end = body_at.saturating_add(len).min(bytes.len());
            return Ok(bytes.get(body_at..end));
        }
        // Chunks are padded to an even length.
        at = body_at.saturating_add(len).saturating_add(len & 1);
    }
    Ok(None)
}

fn wav_format(bytes: &[u8]) -> Result<WavFormat, LoadError> {
    let fmt = riff_chunk(bytes, b"fmt ")?
        .filter(|f| f.len() >= 16)
        .ok_or(LoadError::Malformed("no fmt chunk".to_owned()))?;
    let u16_at = |i: usize| {
        fmt.get(i..i + 2)
            .map_or(0, |b| u16::from_le_bytes([b[0], b[1]]))
    };
    let sample_rate = fmt
        .get(4..8)
        .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    Ok(WavFormat {
        tag: u16_at(0),
        sample_rate,
        channels: u16_at(2),
        bits_per_sample: u16_at(14),
    })
}

/// How a play ended (or that it is still going), as seen through [`PlayHandle`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PlayState {
    /// Still sending.
    Playing,
    /// The prompt was played to its end (not with `repeat`).
    Finished,
    /// [`super::RelaySession::stop_play`] stopped it.
    Stopped,
    /// Relayed media started flowing to the same peer (the call was bridged): relayed
    /// media wins and the prompt stops, so the two never interleave.
    Preempted,
    /// Another prompt was started on the same side.
    Replaced,
    /// The session was closed, or never accepted the command.
    Closed,
}

/// Watches one play started by [`super::RelaySession::play`]. Dropping it does not stop the
/// play.
#[derive(Debug, Clone)]
pub struct PlayHandle {
    pub(crate) state: watch::Receiver<PlayState>,
}

impl PlayHandle {
    /// The state now.
    pub fn state(&self) -> PlayState {
        *self.state.borrow()
    }

    /// Wait until the play is over and say how it ended (never [`PlayState::Playing`]).
    /// Cancel-safe.
    pub async fn finished(&mut self) -> PlayState {
        match self.state.wait_for(|s| *s != PlayState::Playing).await {
            Ok(state) => *state,
            Err(_) => PlayState::Closed,
        }
    }
}

/// The RTP sender state of one side (RFC 3550 §5.1): one SSRC per side for the session;
/// sequence number and timestamp start at random values and continue across plays.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RtpSender {
    pub(crate) ssrc: u32,
    seq: u16,
    ts: u32,
    /// When the last packet was sent, to advance the timestamp across silences.
    last_sent: Option<tokio::time::Instant>,
}

impl RtpSender {
    pub(crate) fn random() -> RtpSender {
        RtpSender {
            ssrc: rand::random(),
            seq: rand::random(),
            ts: rand::random(),
            last_sent: None,
        }
    }
}

/// Octets of an RTP packet of one prompt frame (12-octet header, RFC 3550 §5.1).
pub(crate) const PROMPT_PACKET_LEN: usize = 12 + SAMPLES_PER_PACKET;

/// One prompt being played on one side, driven by the relay task.
#[derive(Debug)]
pub(crate) struct Playback {
    prompt: Arc<Prompt>,
    repeat: bool,
    index: usize,
    first: bool,
    /// When the next packet is due.
    pub(crate) due: tokio::time::Instant,
    done: watch::Sender<PlayState>,
}

impl Playback {
    pub(crate) fn new(
        prompt: Arc<Prompt>,
        repeat: bool,
        now: tokio::time::Instant,
        done: watch::Sender<PlayState>,
    ) -> Playback {
        Playback {
            prompt,
            repeat,
            index: 0,
            first: true,
            due: now,
            done,
        }
    }

    /// Write the next packet into `buf` (RTP header with `sender`'s SSRC, sequence number
    /// and timestamp; marker bit on the first packet of the play, RFC 3551 §4.1), advance,
    /// and return its length. `None` when the prompt is over.
    pub(crate) fn next_packet(
        &mut self,
        sender: &mut RtpSender,
        codec: Codec,
        pt: u8,
        buf: &mut [u8; PROMPT_PACKET_LEN],
    ) -> Option<usize> {
        if self.index >= self.prompt.packets() {
            if !self.repeat || self.prompt.packets() == 0 {
                return None;
            }
            self.index = 0;
        }
        let payload = self.prompt.packet(codec, self.index)?;
        if self.first {
            // Timestamp advances by the wall-clock time since the side's last packet.
            if let Some(last) = sender.last_sent {
                let gap = self.due.saturating_duration_since(last);
                let samples = gap.as_micros() * u128::from(SAMPLE_RATE) / 1_000_000;
                sender.ts = sender.ts.wrapping_add(samples as u32);
            }
        } else {
            sender.ts = sender.ts.wrapping_add(SAMPLES_PER_PACKET as u32);
        }
        let marker = if self.first { 0x80 } else { 0 };
        buf[0] = 0x80;
        buf[1] = marker | (pt & 0x7F);
        buf[2..4].copy_from_slice(&sender.seq.to_be_bytes());
        buf[4..8].copy_from_slice(&sender.ts.to_be_bytes());
        buf[8..12].copy_from_slice(&sender.ssrc.to_be_bytes());
        buf[12..].copy_from_slice(payload);
        sender.seq = sender.seq.wrapping_add(1);
        sender.last_sent = Some(self.due);
        self.first = false;
        self.index += 1;
        self.due += PACKET_INTERVAL;
        Some(PROMPT_PACKET_LEN)
    }

    /// Tell the watcher how the play ended.
    pub(crate) fn end(self, state: PlayState) {
        let _ = self.done.send(state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pcm(path: &Path, rate: u32, channels: u16, bits: u16, samples: &[i16]) {
        let spec = hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: bits,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(path, spec).unwrap();
        for s in samples {
            if bits == 8 {
                w.write_sample(*s as i8).unwrap();
            } else {
                w.write_sample(*s).unwrap();
            }
        }
        w.finalize().unwrap();
    }

    /// A G.711 WAV by hand (hound cannot write format tags 6/7).
    fn g711_wav(tag: u16, rate: u32, data: &[u8]) -> Vec<u8> {
        let mut fmt = Vec::new();
        fmt.extend_from_slice(&tag.to_le_bytes());
        fmt.extend_from_slice(&1u16.to_le_bytes());
        fmt.extend_from_slice(&rate.to_le_bytes());
        fmt.extend_from_slice(&rate.to_le_bytes());
        fmt.extend_from_slice(&1u16.to_le_bytes());
        fmt.extend_from_slice(&8u16.to_le_bytes());
        fmt.extend_from_slice(&0u16.to_le_bytes()); // cbSize
        let mut body = b"WAVE".to_vec();
        body.extend_from_slice(b"fmt ");
        body.extend_from_slice(&(fmt.len() as u32).to_le_bytes());
        body.extend(fmt);
        body.extend_from_slice(b"fact");
        body.extend_from_slice(&4u32.to_le_bytes());
        body.extend_from_slice(&(data.len() as u32).to_le_bytes());
        body.extend_from_slice(b"data");
        body.extend_from_slice(&(data.len() as u32).to_le_bytes());
        body.extend_from_slice(data);
        let mut wav = b"RIFF".to_vec();
        wav.extend_from_slice(&(body.len() as u32).to_le_bytes());
        wav.extend(body);
        wav
    }

    #[test]
    fn loads_8khz_mono_pcm_and_pads_to_whole_packets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hello.wav");
        let samples: Vec<i16> = (0..400).map(|i| (i * 50 - 10_000) as i16).collect();
        write_pcm(&path, 8000, 1, 16, &samples);
        let prompt = Prompt::load(&path).unwrap();
        assert_eq!(prompt.name(), "hello.wav");
        assert_eq!(prompt.samples(), 400);
        assert_eq!(prompt.packets(), 3); // 400 samples → 2 full packets + 80 padded
        assert_eq!(prompt.duration(), Duration::from_millis(50));
        let first = prompt.packet(Codec::Pcmu, 0).unwrap();
        assert_eq!(first[0], g711::linear_to_ulaw(-10_000));
        assert_eq!(
            prompt.packet(Codec::Pcma, 1).unwrap()[5],
            g711::linear_to_alaw(-1750)
        );
        let last = prompt.packet(Codec::Pcmu, 2).unwrap();
        assert_eq!(last[79], g711::linear_to_ulaw(9950));
        assert!(last[80..].iter().all(|&o| o == g711::ULAW_SILENCE));
        assert!(prompt.packet(Codec::Pcmu, 3).is_none());
    }

    #[test]
    fn loads_alaw_and_ulaw_wav() {
        let dir = tempfile::tempdir().unwrap();
        let alaw = dir.path().join("a.wav");
        std::fs::write(&alaw, g711_wav(WAVE_FORMAT_ALAW, 8000, &[0xD5; 320])).unwrap();
        let p = Prompt::load(&alaw).unwrap();
        assert_eq!((p.samples(), p.packets()), (320, 2));
        // A-law 0xD5 is +8; re-encoded in µ-law that is 0xFE.
        assert_eq!(p.packet(Codec::Pcma, 1).unwrap()[0], 0xD5);
        assert_eq!(p.packet(Codec::Pcmu, 1).unwrap()[0], 0xFE);
        let ulaw = dir.path().join("u.wav");
        std::fs::write(
            &ulaw,
            g711_wav(WAVE_FORMAT_MULAW, 8000, &[0x80, 0x00, 0xFF]),
        )
        .unwrap();
        let p = Prompt::load(&ulaw).unwrap();
        assert_eq!(p.samples(), 3);
        assert_eq!(
            &p.packet(Codec::Pcmu, 0).unwrap()[..4],
            &[0x80, 0x00, 0xFF, 0xFF]
        );
    }

    #[test]
    fn refuses_other_formats_naming_file_and_format() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            ("cd.wav", 44_100, 1, 16, "44100 Hz"),
            ("stereo.wav", 8000, 2, 16, "2 channel(s)"),
            ("eight.wav", 8000, 1, 8, "8 bits"),
        ];
        for (name, rate, channels, bits, needle) in cases {
            let path = dir.path().join(name);
            write_pcm(&path, rate, channels, bits, &[0, 1, 2, 3]);
            let err = Prompt::load(&path).unwrap_err();
            assert!(matches!(err, PromptError::Format { .. }), "{name}: {err:?}");
            let text = err.to_string();
            assert!(text.contains(name) && text.contains(needle), "{text}");
        }
        let alaw16k = dir.path().join("a16k.wav");
        std::fs::write(&alaw16k, g711_wav(WAVE_FORMAT_ALAW, 16_000, &[0xD5; 10])).unwrap();
        let text = Prompt::load(&alaw16k).unwrap_err().to_string();
        assert!(
            text.contains("a16k.wav") && text.contains("A-law"),
            "{text}"
        );
    }

    #[test]
    fn refuses_garbage_empty_and_missing_files() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.wav");
        std::fs::write(&junk, b"ID3\x03 this is an mp3").unwrap();
        let err = Prompt::load(&junk).unwrap_err();
        assert!(matches!(err, PromptError::Malformed { .. }), "{err:?}");
        assert!(err.to_string().contains("junk.wav"));
        let empty = dir.path().join("empty.wav");
        write_pcm(&empty, 8000, 1, 16, &[]);
        assert!(matches!(
            Prompt::load(&empty),
            Err(PromptError::Empty { .. })
        ));
        let missing = dir.path().join("missing.wav");
        assert!(matches!(
            Prompt::load(&missing),
            Err(PromptError::Read { .. })
        ));
        // Every truncation of a valid file is an error or a shorter prompt, never a panic.
        let good = g711_wav(WAVE_FORMAT_MULAW, 8000, &[1, 2, 3, 4]);
        for len in 0..good.len() {
            let _ = Prompt::from_wav_bytes("t", &good[..len]);
        }
    }

    #[test]
    fn playback_numbers_packets_per_rfc3550() {
        let prompt = Arc::new(Prompt::from_samples("t", &[1000; 320]));
        let (tx, rx) = watch::channel(PlayState::Playing);
        let now = tokio::time::Instant::now();
        let mut play = Playback::new(Arc::clone(&prompt), false, now, tx);
        let mut sender = RtpSender {
            ssrc: 0xDEAD_BEEF,
            seq: 0xFFFF,
            ts: 100,
            last_sent: None,
        };
        let mut buf = [0u8; PROMPT_PACKET_LEN];
        assert_eq!(
            play.next_packet(&mut sender, Codec::Pcma, 8, &mut buf),
            Some(172)
        );
        assert_eq!(
            &buf[..12],
            &[0x80, 0x88, 0xFF, 0xFF, 0, 0, 0, 100, 0xDE, 0xAD, 0xBE, 0xEF]
        );
        assert_eq!(buf[12], g711::linear_to_alaw(1000));
        assert_eq!(
            play.next_packet(&mut sender, Codec::Pcma, 8, &mut buf),
            Some(172)
        );
        // No marker, sequence wrapped to 0, timestamp + 160.
        assert_eq!(&buf[..8], &[0x80, 0x08, 0, 0, 0, 0, 1, 4]);
        assert_eq!(play.due, now + 2 * PACKET_INTERVAL);
        assert_eq!(
            play.next_packet(&mut sender, Codec::Pcma, 8, &mut buf),
            None
        );
        play.end(PlayState::Finished);
        assert_eq!(*rx.borrow(), PlayState::Finished);
        // A second play on the same side 1 s later: marker again, timestamp + 8000.
        let (tx, _rx) = watch::channel(PlayState::Playing);
        let later = now + Duration::from_millis(1020);
        let mut again = Playback::new(prompt, true, later, tx);
        again.next_packet(&mut sender, Codec::Pcmu, 0, &mut buf);
        assert_eq!(buf[1], 0x80);
        assert_eq!(u16::from_be_bytes([buf[2], buf[3]]), 1);
        assert_eq!(
            u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]),
            260 + 8000
        );
        // With repeat it goes round.
        for _ in 0..5 {
            assert!(
                again
                    .next_packet(&mut sender, Codec::Pcmu, 0, &mut buf)
                    .is_some()
            );
        }
    }

    #[test]
    fn a_sequence_is_one_prompt_without_gaps_between_parts() {
        // 3 parts of 100, 250 and 160 samples: 510 samples, 4 packets (not 1 + 2 + 1).
        let a = Arc::new(Prompt::from_samples("a", &[1000; 100]));
        let b = Arc::new(Prompt::from_samples("b", &[-2000; 250]));
        let c = Arc::new(Prompt::from_samples("c", &[3000; 160]));
        let seq = Prompt::concat("seq", &[a, b, c]);
        assert_eq!(seq.samples(), 510);
        assert_eq!(seq.packets(), 4);
        assert_eq!(seq.duration(), Duration::from_micros(63_750));
        let p0 = seq.packet(Codec::Pcmu, 0).unwrap();
        // Part b starts right after a's 100th sample, not on a packet boundary.
        assert_eq!(p0[99], g711::linear_to_ulaw(1000));
        assert_eq!(p0[100], g711::linear_to_ulaw(-2000));
        // c starts at sample 350 = packet 2, octet 30; padding after sample 510.
        let p2 = seq.packet(Codec::Pcma, 2).unwrap();
        assert_eq!(p2[29], g711::linear_to_alaw(-2000));
        assert_eq!(p2[30], g711::linear_to_alaw(3000));
        let p3 = seq.packet(Codec::Pcma, 3).unwrap();
        assert_eq!(p3[29], g711::linear_to_alaw(3000));
        assert!(p3[30..].iter().all(|&o| o == g711::ALAW_SILENCE));
        // Played: 4 packets, consecutive sequence numbers and timestamps, one marker.
        let (tx, _rx) = watch::channel(PlayState::Playing);
        let mut play = Playback::new(Arc::new(seq), false, tokio::time::Instant::now(), tx);
        let mut sender = RtpSender {
            ssrc: 1,
            seq: 10,
            ts: 1000,
            last_sent: None,
        };
        let mut buf = [0u8; PROMPT_PACKET_LEN];
        let mut heads = Vec::new();
        while play
            .next_packet(&mut sender, Codec::Pcmu, 0, &mut buf)
            .is_some()
        {
            heads.push((
                buf[1] & 0x80 != 0,
                u16::from_be_bytes([buf[2], buf[3]]),
                u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]),
            ));
        }
        assert_eq!(
            heads,
            [
                (true, 10, 1000),
                (false, 11, 1160),
                (false, 12, 1320),
                (false, 13, 1480)
            ]
        );
        assert_eq!(Prompt::concat("none", &[]).packets(), 0);
    }
}
