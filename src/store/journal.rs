//! [`Journal`]: the call path's non-blocking handle to the journal writer task
//! (DESIGN.md §2 "Storage never blocks a call").
//!
//! ```text
//! record() ──try_send──▶ bounded channel ──▶ writer task ──batch tx──▶ Store
//!     │ channel full / writer gone               │ database fails
//!     ▼                                          ▼
//!   spill file (JSON lines, append) ◀────────────┘
//!     │ rename to <spill>.replaying, replay in order, delete
//!     └──────────────────────────────────────────────▶ Store (once writes succeed)
//! ```
//!
//! Order: every record is stamped with `(epoch, ord)` when recorded (`epoch` = the
//! journal's start, Unix milliseconds; `ord` = a counter). While anything is
//! spilled, the writer appends new records to the spill file too, and a replay
//! sorts the file by `(epoch, ord)`, so the records of one call (sent in order by
//! the call's one owner) reach the database in order. Replay is idempotent:
//! events and locations are inserted with `ON CONFLICT DO NOTHING` on
//! `(call_id, seq)`; call patches are upserts, replayed in order.
//!
//! Records the database refuses as invalid (a constraint or encoding error: our
//! bug, not an outage) are appended to `<spill>.rejected` and counted, so they
//! never block the replay.
//!
//! Group commit: the writer takes the first record, sleeps [`JournalConfig::linger`]
//! (5 ms) unless [`JournalConfig::batch_max`] records already wait, then writes everything
//! queued — call events, call-row patches, outbox documents, agent seat changes — in one
//! transaction with one fsync (SQLite `synchronous=FULL`), as multi-row statements. At
//! 800 calls/s that is one commit per ~100 records instead of one per few records.
//!
//! Durability: a record is durable once its batch commits. A crash (power loss, kill -9)
//! loses what was still in memory: the channel's backlog and the batch lingering or
//! being written, i.e. at most the records of the last `linger` plus one write. Nothing
//! acknowledged to anyone is lost: [`Journal::record`] promises no durability to the call
//! path, and a hand-off document reaches dispatch only from a committed `dispatch_outbox`
//! row, which commits in the same transaction as the call-step records recorded with it
//! (both go through this one writer in order; a batch is cut only at `batch_max`). A full
//! disk or a lost database never drops a call in progress: the call path never waits on
//! the writer, failed batches go to the spill file and are replayed in order.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::Store;
use super::model::JournalRecord;

/// Settings of the journal writer.
#[derive(Debug, Clone, PartialEq)]
pub struct JournalConfig {
    /// This node's id, stamped on new `calls` rows (DESIGN.md §9).
    pub node_id: String,
    /// The append-only JSON-lines spill file. `<spill_path>.replaying` and
    /// `<spill_path>.rejected` live next to it.
    pub spill_path: PathBuf,
    /// Bound of the channel between [`Journal::record`] and the writer, records.
    pub capacity: usize,
    /// Most records written in one database transaction.
    pub batch_max: usize,
    /// Group commit: after the first record of a batch arrives, how long the writer waits
    /// for more before it writes them all in one transaction (one fsync), unless
    /// `batch_max` records are already waiting. Zero writes at once. Bounds how much later
    /// than recorded a record reaches the database on an idle writer (plus the write).
    pub linger: Duration,
    /// First wait before retrying the database after a failure; doubles per
    /// failure up to `retry_max`.
    pub retry_min: Duration,
    /// Longest wait between retries.
    pub retry_max: Duration,
}

impl JournalConfig {
    /// Defaults: capacity 10 000 records, batches of 1024, linger 5 ms, retries from
    /// 100 ms to 5 s.
    pub fn new(node_id: impl Into<String>, spill_path: impl Into<PathBuf>) -> Self {
        JournalConfig {
            node_id: node_id.into(),
            spill_path: spill_path.into(),
            capacity: 10_000,
            batch_max: 1024,
            linger: Duration::from_millis(5),
            retry_min: Duration::from_millis(100),
            retry_max: Duration::from_secs(5),
        }
    }
}

/// The journal's own metrics: handles (cheap clones of shared atomics) that
/// [`crate::metrics::Metrics`] registers as `vigie_journal_*`.
#[derive(Debug, Clone)]
pub struct JournalMetrics {
    /// Records in the channel, waiting for the writer (`vigie_journal_backlog_records`).
    pub backlog_records: Gauge,
    /// Records written to the spill file (`vigie_journal_spilled_records_total`).
    pub spilled_records: Counter,
    /// Spilled records written to the database by a replay
    /// (`vigie_journal_replayed_records_total`).
    pub replayed_records: Counter,
    /// Records lost: neither the database nor the spill file took them
    /// (`vigie_journal_lost_records_total`).
    pub lost_records: Counter,
    /// Records the database refused as invalid, kept in `<spill>.rejected`
    /// (`vigie_journal_rejected_records_total`).
    pub rejected_records: Counter,
    /// Failed database transactions (`vigie_journal_write_errors_total`).
    pub write_errors: Counter,
    /// Duration of successful batch transactions, seconds
    /// (`vigie_journal_write_seconds`).
    pub write_seconds: Histogram,
}

impl JournalMetrics {
    /// Buckets of `write_seconds`: 0.5 ms to ~4 s, factor 2.
    pub fn write_buckets() -> impl Iterator<Item = f64> {
        exponential_buckets(0.0005, 2.0, 14)
    }
}

impl Default for JournalMetrics {
    fn default() -> Self {
        JournalMetrics {
            backlog_records: Gauge::default(),
            spilled_records: Counter::default(),
            replayed_records: Counter::default(),
            lost_records: Counter::default(),
            rejected_records: Counter::default(),
            write_errors: Counter::default(),
            write_seconds: Histogram::new(JournalMetrics::write_buckets()),
        }
    }
}

/// Where [`Journal::record`] put a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// Queued for the writer.
    Queued,
    /// The channel was full or the writer gone: appended to the spill file.
    Spilled,
    /// The spill file failed too: counted in `lost_records` and logged.
    Lost,
}

/// State after [`Journal::flush`] or [`Journal::shutdown`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlushReport {
    /// Records still in the spill files (not yet in the database); 0 means every
    /// record recorded before the flush is in the database (or rejected).
    pub spilled_pending: u64,
}

/// The call path's handle to the journal writer. Cheap to clone; every method is
/// safe to call from any task. [`Journal::record`] never blocks on the database
/// and never fails.
#[derive(Debug, Clone)]
pub struct Journal {
    tx: mpsc::Sender<Msg>,
    shared: Arc<Shared>,
}

impl Journal {
    /// Starts the writer task on the current tokio runtime and returns the handle
    /// and the task. Records left in the spill files by a previous run are
    /// replayed first. The task ends after [`Journal::shutdown`], or when every
    /// handle is dropped (after draining the channel).
    ///
    /// Panics if called outside a tokio runtime (like `tokio::spawn`).
    pub fn spawn(
        store: Store,
        config: JournalConfig,
        metrics: JournalMetrics,
    ) -> (Journal, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(config.capacity.max(1));
        let epoch = u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(0);
        let spill = Spill::new(config.spill_path.clone());
        let dirty = spill.has_content();
        let shared = Arc::new(Shared {
            spill: Mutex::new(spill),
            dirty: AtomicBool::new(dirty),
            epoch,
            next_ord: AtomicU64::new(0),
            metrics,
        });
        let writer = Writer {
            store,
            rx,
            shared: Arc::clone(&shared),
            batch_max: config.batch_max.max(1),
            linger: config.linger,
            retry_min: config.retry_min,
            retry_max: config.retry_max.max(config.retry_min),
            backoff: config.retry_min,
            next_retry: Instant::now(),
            node_id: config.node_id,
        };
        let task = tokio::spawn(writer.run());
        (Journal { tx, shared }, task)
    }

    /// Hands `record` to the writer without waiting: into the channel, or, if the
    /// channel is full or the writer gone, appended to the spill file (a short
    /// synchronous file append, under a lock the writer never holds across fsync or
    /// database calls). Never fails: the result says where the record went.
    pub fn record(&self, record: JournalRecord) -> Recorded {
        let stamped = Stamped {
            epoch: self.shared.epoch,
            ord: self.shared.next_ord.fetch_add(1, Ordering::Relaxed),
            record,
        };
        let result = self.tx.try_send(Msg::Record(stamped));
        self.shared
            .metrics
            .backlog_records
            .set(i64::try_from(self.backlog()).unwrap_or(i64::MAX));
        match result {
            Ok(()) => Recorded::Queued,
            Err(mpsc::error::TrySendError::Full(Msg::Record(stamped)))
            | Err(mpsc::error::TrySendError::Closed(Msg::Record(stamped))) => {
                if self
                    .shared
                    .spill_lines(std::slice::from_ref(&stamped), false)
                {
                    Recorded::Spilled
                } else {
                    Recorded::Lost
                }
            }
            // Only `Msg::Record` is sent above.
            Err(_) => Recorded::Lost,
        }
    }

    /// Records waiting in the channel.
    pub fn backlog(&self) -> usize {
        self.tx.max_capacity().saturating_sub(self.tx.capacity())
    }

    /// Waits until the writer has handled every record recorded before this call
    /// (written, or spilled if the database fails) and has tried once to replay
    /// the spill file. Not for the call path.
    pub async fn flush(&self) -> FlushReport {
        let (reply, wait) = oneshot::channel();
        if self.tx.send(Msg::Flush(reply)).await.is_err() {
            return self.shared.report();
        }
        wait.await.unwrap_or_else(|_| self.shared.report())
    }

    /// Graceful close: the writer stops taking records (later [`Journal::record`]
    /// calls spill), drains the channel, tries a last replay, and ends. Returns
    /// what is left in the spill files.
    pub async fn shutdown(&self) -> FlushReport {
        let (reply, wait) = oneshot::channel();
        if self.tx.send(Msg::Shutdown(reply)).await.is_err() {
            return self.shared.report();
        }
        wait.await.unwrap_or_else(|_| self.shared.report())
    }
}

/// A record with its place in the journal's total order (see module docs).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stamped {
    epoch: u64,
    ord: u64,
    record: JournalRecord,
}

impl std::borrow::Borrow<JournalRecord> for Stamped {
    fn borrow(&self) -> &JournalRecord {
        &self.record
    }
}

// Nearly every message is a record: boxing it would cost an allocation each.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Msg {
    Record(Stamped),
    Flush(oneshot::Sender<FlushReport>),
    Shutdown(oneshot::Sender<FlushReport>),
}

/// State shared by the handles and the writer.
#[derive(Debug)]
struct Shared {
    spill: Mutex<Spill>,
    /// True while the spill files may hold records not yet in the database.
    /// Set and cleared under the `spill` lock.
    dirty: AtomicBool,
    epoch: u64,
    next_ord: AtomicU64,
    metrics: JournalMetrics,
}

impl Shared {
    fn lock_spill(&self) -> MutexGuard<'_, Spill> {
        // A panic while holding the lock cannot leave `Spill` inconsistent in a
        // way that matters (at worst a partial line, which replay skips).
        self.spill
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Appends records to the spill file; counts them as spilled, or as lost
    /// if the file fails. Returns whether they were written.
    fn spill_lines(&self, records: &[Stamped], sync: bool) -> bool {
        if records.is_empty() {
            return true;
        }
        let n = records.len() as u64;
        let mut spill = self.lock_spill();
        match spill.append(records) {
            Ok(()) => {
                self.dirty.store(true, Ordering::SeqCst);
                self.metrics.spilled_records.inc_by(n);
                // fsync outside the lock, so that `record()` never waits on it.
                let handle = if sync {
                    spill.file.as_ref().and_then(|f| f.try_clone().ok())
                } else {
                    None
                };
                drop(spill);
                if let Some(Err(error)) = handle.map(|f| f.sync_data()) {
                    tracing::warn!(%error, "journal: spill file fsync failed");
                }
                true
            }
            Err(error) => {
                self.metrics.lost_records.inc_by(n);
                tracing::error!(
                    records = n,
                    path = %spill.path.display(),
                    %error,
                    "journal: database and spill file both failed; records lost"
                );
                false
            }
        }
    }

    fn report(&self) -> FlushReport {
        FlushReport {
            spilled_pending: self.lock_spill().pending_lines(),
        }
    }
}

/// The spill file and its replay copy.
#[derive(Debug)]
struct Spill {
    path: PathBuf,
    replaying: PathBuf,
    rejected: PathBuf,
    file: Option<File>,
    /// The last append failed part-way: start the next one on a fresh line.
    broken_line: bool,
}

impl Spill {
    fn new(path: PathBuf) -> Self {
        Spill {
            replaying: suffixed(&path, ".replaying"),
            rejected: suffixed(&path, ".rejected"),
            path,
            file: None,
            broken_line: false,
        }
    }

    fn has_content(&self) -> bool {
        file_len(&self.path) > 0 || file_len(&self.replaying) > 0
    }

    /// Lines waiting in the spill and replay files (counted by reading them).
    fn pending_lines(&self) -> u64 {
        count_lines(&self.path) + count_lines(&self.replaying)
    }

    fn append(&mut self, records: &[Stamped]) -> std::io::Result<()> {
        let mut buf = Vec::with_capacity(records.len() * 256);
        if self.broken_line {
            buf.push(b'\n');
        }
        for record in records {
            serde_json::to_writer(&mut buf, record)?;
            buf.push(b'\n');
        }
        let file = match &mut self.file {
            Some(file) => file,
            None => self.file.insert(open_append(&self.path)?),
        };
        let written = file.write_all(&buf);
        if written.is_err() {
            self.broken_line = true;
            // Reopen next time, in case the file was removed or replaced.
            self.file = None;
        } else {
            self.broken_line = false;
        }
        written
    }

    /// The file to replay next: the replay file left by an earlier attempt, else
    /// the spill file renamed to it. `None` when there is nothing to replay.
    fn take_for_replay(&mut self) -> std::io::Result<Option<PathBuf>> {
        if file_len(&self.replaying) > 0 {
            return Ok(Some(self.replaying.clone()));
        }
        if file_len(&self.path) == 0 {
            return Ok(None);
        }
        self.file = None;
        self.broken_line = false;
        std::fs::rename(&self.path, &self.replaying)?;
        Ok(Some(self.replaying.clone()))
    }

    fn append_rejected(&self, record: &Stamped) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(record)?;
        line.push(b'\n');
        open_append(&self.rejected)?.write_all(&line)
    }
}

/// Opens `path` for appending, creating it and its directory if needed.
fn open_append(path: &Path) -> std::io::Result<File> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    OpenOptions::new().create(true).append(true).open(path)
}

fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Length of a regular file, octets; 0 if missing or not a regular file.
fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path)
        .ok()
        .filter(std::fs::Metadata::is_file)
        .map_or(0, |m| m.len())
}

fn count_lines(path: &Path) -> u64 {
    match File::open(path) {
        Ok(file) => BufReader::new(file)
            .lines()
            .map_while(Result::ok)
            .filter(|line| !line.trim().is_empty())
            .count() as u64,
        Err(_) => 0,
    }
}

/// How writing a run of records ended.
enum WriteResult {
    /// All written (or rejected as invalid).
    Done,
    /// The database is unavailable; records from this index on were not written.
    Unavailable(usize),
}

/// The writer task: the only owner of database writes and replays.
struct Writer {
    store: Store,
    rx: mpsc::Receiver<Msg>,
    shared: Arc<Shared>,
    node_id: String,
    batch_max: usize,
    linger: Duration,
    retry_min: Duration,
    retry_max: Duration,
    backoff: Duration,
    next_retry: Instant,
}

impl Writer {
    async fn run(mut self) {
        let mut batch: Vec<Stamped> = Vec::with_capacity(self.batch_max);
        loop {
            if self.dirty() && Instant::now() >= self.next_retry {
                self.replay().await;
            }
            let retry = self.next_retry;
            let dirty = self.dirty();
            let msg = tokio::select! {
                msg = self.rx.recv() => msg,
                () = tokio::time::sleep_until(retry.into()), if dirty => continue,
            };
            let Some(msg) = msg else {
                // Every handle dropped and the channel is drained.
                self.replay().await;
                return;
            };
            let mut control = None;
            match msg {
                Msg::Record(stamped) => batch.push(stamped),
                other => control = Some(other),
            }
            self.take_queued(&mut batch, &mut control);
            if control.is_none() && batch.len() < self.batch_max && !self.linger.is_zero() {
                // Group commit: one sleep, then everything that arrived meanwhile (no
                // wake-up per record).
                tokio::time::sleep(self.linger).await;
                self.take_queued(&mut batch, &mut control);
            }
            self.update_backlog();
            self.handle(std::mem::take(&mut batch)).await;
            match control {
                None => {}
                Some(Msg::Flush(reply)) => {
                    self.replay().await;
                    let _ = reply.send(self.shared.report());
                }
                Some(Msg::Shutdown(reply)) => {
                    self.rx.close();
                    while let Some(msg) = self.rx.recv().await {
                        match msg {
                            Msg::Record(stamped) => {
                                batch.push(stamped);
                                if batch.len() >= self.batch_max {
                                    self.handle(std::mem::take(&mut batch)).await;
                                }
                            }
                            Msg::Flush(other) | Msg::Shutdown(other) => {
                                self.handle(std::mem::take(&mut batch)).await;
                                let _ = other.send(self.shared.report());
                            }
                        }
                    }
                    self.handle(std::mem::take(&mut batch)).await;
                    self.replay().await;
                    self.update_backlog();
                    let _ = reply.send(self.shared.report());
                    return;
                }
                Some(Msg::Record(_)) => {}
            }
        }
    }

    /// Moves queued records into `batch` (up to `batch_max`), stopping at a control
    /// message, which goes to `control`.
    fn take_queued(&mut self, batch: &mut Vec<Stamped>, control: &mut Option<Msg>) {
        while control.is_none() && batch.len() < self.batch_max {
            match self.rx.try_recv() {
                Ok(Msg::Record(stamped)) => batch.push(stamped),
                Ok(other) => *control = Some(other),
                Err(_) => break,
            }
        }
    }

    fn dirty(&self) -> bool {
        self.shared.dirty.load(Ordering::SeqCst)
    }

    fn update_backlog(&self) {
        let len = i64::try_from(self.rx.len()).unwrap_or(i64::MAX);
        self.shared.metrics.backlog_records.set(len);
    }

    /// Writes fresh records: straight to the database when nothing is spilled,
    /// else behind the spilled ones in the spill file (to keep the order).
    async fn handle(&mut self, batch: Vec<Stamped>) {
        if batch.is_empty() {
            return;
        }
        if self.dirty() {
            self.shared.spill_lines(&batch, true);
            return;
        }
        if let WriteResult::Unavailable(from) = self.write(&batch).await {
            self.shared
                .spill_lines(batch.get(from..).unwrap_or_default(), true);
            self.schedule_retry();
        }
    }

    /// Replays the spill files into the database, oldest first, until they are
    /// empty or the database fails.
    async fn replay(&mut self) {
        loop {
            let taken = {
                let mut spill = self.shared.lock_spill();
                let taken = spill.take_for_replay();
                if let Ok(None) = taken {
                    // Nothing left, checked under the lock that appends take.
                    self.shared.dirty.store(false, Ordering::SeqCst);
                }
                taken
            };
            let path = match taken {
                Ok(Some(path)) => path,
                Ok(None) => {
                    self.backoff = self.retry_min;
                    return;
                }
                Err(error) => {
                    tracing::warn!(%error, "journal: cannot take the spill file for replay");
                    self.schedule_retry();
                    return;
                }
            };
            let records = match self.read_spill(&path) {
                Ok(records) => records,
                Err(error) => {
                    tracing::warn!(path = %path.display(), %error, "journal: cannot read the spill file");
                    self.schedule_retry();
                    return;
                }
            };
            let mut written = 0_u64;
            for chunk in records.chunks(self.batch_max) {
                if let WriteResult::Unavailable(_) = self.write(chunk).await {
                    // Keep the replay file whole: a later replay re-applies it
                    // from the start, which is idempotent.
                    self.schedule_retry();
                    return;
                }
                written += chunk.len() as u64;
            }
            if let Err(error) = std::fs::remove_file(&path) {
                tracing::warn!(path = %path.display(), %error, "journal: cannot remove the replayed file");
                self.schedule_retry();
                return;
            }
            self.shared.metrics.replayed_records.inc_by(written);
            tracing::info!(records = written, "journal: spilled records replayed");
        }
    }

    /// Reads a spill file, skipping (and counting as lost) lines that do not
    /// parse, and sorts the records into their recorded order.
    fn read_spill(&self, path: &Path) -> std::io::Result<Vec<Stamped>> {
        let file = File::open(path)?;
        let mut records = Vec::new();
        for line in BufReader::new(file).lines() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Stamped>(&line) {
                Ok(stamped) => records.push(stamped),
                Err(error) => {
                    self.shared.metrics.lost_records.inc();
                    tracing::error!(%error, "journal: unreadable line in the spill file; record lost");
                }
            }
        }
        records.sort_by_key(|stamped| (stamped.epoch, stamped.ord));
        Ok(records)
    }

    /// Writes records in one transaction; if the database refuses them as
    /// invalid, retries one by one and sets the invalid ones aside.
    async fn write(&self, records: &[Stamped]) -> WriteResult {
        match self.write_tx(records).await {
            Ok(()) => WriteResult::Done,
            Err(error) if error.is_transient() => {
                tracing::warn!(%error, records = records.len(), "journal: database unavailable; spilling");
                WriteResult::Unavailable(0)
            }
            Err(error) => {
                tracing::error!(%error, "journal: batch refused; writing records one by one");
                for (index, record) in records.iter().enumerate() {
                    match self.write_tx(std::slice::from_ref(record)).await {
                        Ok(()) => {}
                        Err(error) if error.is_transient() => {
                            return WriteResult::Unavailable(index);
                        }
                        Err(error) => self.reject(record, &error),
                    }
                }
                WriteResult::Done
            }
        }
    }

    async fn write_tx(&self, records: &[Stamped]) -> Result<(), super::StoreError> {
        let started = Instant::now();
        let result = self.store.write_batch(&self.node_id, records).await;
        match &result {
            Ok(()) => self
                .shared
                .metrics
                .write_seconds
                .observe(started.elapsed().as_secs_f64()),
            Err(_) => {
                self.shared.metrics.write_errors.inc();
            }
        }
        result
    }

    fn reject(&self, record: &Stamped, error: &super::StoreError) {
        self.shared.metrics.rejected_records.inc();
        let call_id = record.record.call_id();
        tracing::error!(%call_id, %error, "journal: record refused by the database; set aside");
        if let Err(io) = self.shared.lock_spill().append_rejected(record) {
            self.shared.metrics.lost_records.inc();
            tracing::error!(%call_id, error = %io, "journal: cannot keep the refused record; lost");
        }
    }

    fn schedule_retry(&mut self) {
        self.next_retry = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(self.retry_max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::model::{CallPatch, EventKind};
    use chrono::{TimeZone, Utc};
    use ulid::Ulid;

    fn stamped(ord: u64, seq: u32) -> Stamped {
        Stamped {
            epoch: 7,
            ord,
            record: JournalRecord::Event {
                call_id: Ulid::from_parts(1, 1),
                seq,
                at: Utc
                    .timestamp_opt(1_764_425_103, 0)
                    .single()
                    .unwrap_or_default(),
                kind: EventKind::Queued,
                detail: serde_json::json!({"queue": "line19"}),
            },
        }
    }

    #[test]
    fn spill_append_take_and_count() {
        let dir = tempfile::tempdir().ok();
        let dir = dir
            .as_ref()
            .map(|d| d.path().to_path_buf())
            .unwrap_or_default();
        let mut spill = Spill::new(dir.join("sub/spill.jsonl"));
        assert!(!spill.has_content());
        assert_eq!(spill.take_for_replay().ok(), Some(None));
        assert!(spill.append(&[stamped(0, 0), stamped(1, 1)]).is_ok());
        assert!(spill.has_content());
        assert_eq!(spill.pending_lines(), 2);
        let taken = spill.take_for_replay().ok().flatten();
        assert_eq!(taken, Some(dir.join("sub/spill.jsonl.replaying")));
        // New appends go to a fresh spill file; both count as pending.
        assert!(spill.append(&[stamped(2, 2)]).is_ok());
        assert!(file_len(&dir.join("sub/spill.jsonl")) > 0);
        assert_eq!(spill.pending_lines(), 3);
        // The replay file is taken again until it is removed.
        assert_eq!(
            spill.take_for_replay().ok().flatten(),
            Some(dir.join("sub/spill.jsonl.replaying"))
        );
    }

    #[test]
    fn spill_line_format_is_stamped_json() {
        let line = serde_json::to_string(&stamped(3, 9)).unwrap_or_default();
        assert_eq!(
            line,
            format!(
                r#"{{"epoch":7,"ord":3,"record":{{"type":"event","call_id":"{}","seq":9,"at":"2025-11-29T14:05:03Z","kind":"queued","detail":{{"queue":"line19"}}}}}}"#,
                Ulid::from_parts(1, 1)
            )
        );
        let patch = Stamped {
            epoch: 1,
            ord: 2,
            record: JournalRecord::CallUpdate(CallPatch::new(Ulid::from_parts(1, 1))),
        };
        let back: Option<Stamped> = serde_json::to_string(&patch)
            .ok()
            .and_then(|l| serde_json::from_str(&l).ok());
        assert_eq!(back.map(|s| s.record), Some(patch.record));
    }
}
