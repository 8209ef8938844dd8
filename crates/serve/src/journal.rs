//! An append-only journal of JSON lines, for the market state and the audit log. With group
//! commit (and fsync-each) a writer thread owns the file: callers hand it lines and wait for the
//! acknowledgement that they are on disk; lines that arrive while a write is in progress are
//! written (and fsynced) together, so durability costs one fsync per group, not per line.
//! Buffered journals are written by the caller itself under a lock: handing a line to the
//! operating system is one system call, cheaper than a hand-off to a thread and back.
//!
//! ## Format
//! Version 1 (before checksums) is one JSON document per line. Version 2 starts with the line
//! [`VERSION_2_LINE`]; every line after it is `<crc32c of the JSON, 8 hex digits> <JSON>`. A
//! version line may come after version-1 lines: that is how a journal written before checksums
//! is carried on, so old journals and audit logs still open.
//!
//! ## Damage
//! A line is good when it is complete (ends in a newline) and, in version 2, its checksum holds.
//! Whatever follows the last good line up to the end of the file (a torn write, zeros from a
//! lost page, garbage) is a damaged tail: readers ([`read_lines`]) leave it out without changing
//! the file (safe on a log being written); the journal's owner cuts it off when it opens the
//! file for writing and reports what it cut ([`TailCut`]). A bad line *followed by* a good one
//! cannot come from a killed process; it can come from a disk that lost a page, or from a power
//! loss that wrote a later unsynced page before an earlier one. It is an error that names the
//! file and offset, never cut silently: the operator decides, since cutting there could drop
//! good lines. Opening reads the whole file once (CRC32C runs at gigabytes a second; an audit
//! log is never compacted, so its start-up read grows with it).

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

/// When a line counts as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Durability {
    /// After an fsync shared with every line written in the same group (the default).
    #[default]
    GroupCommit,
    /// After an fsync of its own call's lines (one per call: a calibration with its shadow
    /// arms, a batch, a group of published updates), never shared with another call.
    FsyncEach,
    /// Once handed to the operating system (survives a killed process, not a power loss).
    Buffered,
}

impl std::fmt::Display for Durability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::GroupCommit => "group-commit",
            Self::FsyncEach => "fsync-each",
            Self::Buffered => "buffered",
        })
    }
}

/// Why a journal could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// The file could not be read, written or synced.
    #[error("{path}: {source}")]
    Io {
        /// The journal file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// A good line (its checksum holds) that does not parse as a record, or a record that no
    /// longer applies: the journal and its reader disagree.
    #[error("{path}:{line}: damaged record: {message}")]
    Damaged {
        /// The journal file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What failed.
        message: String,
    },
    /// A bad line (torn or failing its checksum) with good lines after it: damage inside the
    /// journal, which a killed process does not leave, so it is not cut.
    #[error("{path}: line {line} at byte {offset} is damaged ({why}) and good lines follow it; restore the file from a copy or move it aside")]
    Corrupt {
        /// The journal file.
        path: PathBuf,
        /// 1-based line number of the bad line.
        line: usize,
        /// Its byte offset in the file.
        offset: u64,
        /// What is wrong with it.
        why: &'static str,
    },
    /// The writer is gone (the service is shutting down) or its lock was poisoned.
    #[error("journal {0} is closed")]
    Closed(PathBuf),
    /// The shared log (NATS JetStream) could not be reached, written or read.
    #[error(transparent)]
    Shared(#[from] crate::nats::NatsError),
}

/// The line that starts the checksummed format.
pub const VERSION_2_LINE: &[u8] = b"#foresight-journal 2 crc32c";

/// Length of a version-2 line's prefix: 8 hex digits and a space.
const CHECKSUM_PREFIX: usize = 9;

/// What the owner of a journal cut off its end when it opened it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TailCut {
    /// Bytes removed.
    pub bytes: u64,
    /// Records (lines other than version lines) kept before the cut.
    pub records_kept: usize,
    /// 1-based line number of the last good line (0: none).
    pub last_good_line: usize,
    /// The file's length after the cut.
    pub kept_len: u64,
}

impl std::fmt::Display for TailCut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cut {} damaged bytes after line {} (byte {}; {} records kept)", self.bytes, self.last_good_line, self.kept_len, self.records_kept)
    }
}

/// What one pass over a journal found.
struct Scan {
    /// End of the last good line.
    good_len: u64,
    /// The file's length.
    len: u64,
    /// Records among the good lines.
    records: usize,
    /// Line number of the last good line.
    last_good_line: usize,
    /// Whether the good lines end in the checksummed format.
    checksummed: bool,
}

impl Scan {
    /// The cut that keeps the good lines.
    fn cut(&self) -> TailCut {
        TailCut { bytes: self.len - self.good_len, records_kept: self.records, last_good_line: self.last_good_line, kept_len: self.good_len }
    }
}

/// Checks one line (with its newline, if it has one). A checksummed line whose checksum holds
/// is good anywhere, so a damaged version line cannot hide the good lines after it; a plain
/// JSON object is good only before the first version line.
fn check_line(segment: &[u8], checksummed: bool) -> Result<Line<'_>, &'static str> {
    let Some(body) = segment.strip_suffix(b"\n") else {
        return Err("no newline: a torn write");
    };
    if body == VERSION_2_LINE {
        return Ok(Line::Version2);
    }
    let prefix = body.get(..CHECKSUM_PREFIX).filter(|p| p[CHECKSUM_PREFIX - 1] == b' ');
    if let Some(expected) = prefix.and_then(|p| std::str::from_utf8(&p[..CHECKSUM_PREFIX - 1]).ok()).and_then(|hex| u32::from_str_radix(hex, 16).ok()) {
        let json = &body[CHECKSUM_PREFIX..];
        return if crc32c::crc32c(json) == expected { Ok(Line::Record(json)) } else { Err("checksum mismatch") };
    }
    match (checksummed, body.first()) {
        (false, Some(b'{')) => Ok(Line::Record(body)),
        (false, _) => Err("not a JSON object"),
        (true, _) => Err("no checksum"),
    }
}

/// A good line.
enum Line<'a> {
    /// The start of the checksummed format.
    Version2,
    /// A record's JSON.
    Record(&'a [u8]),
}

/// Reads the journal `file` at `path` line by line, handing each good record (its line number
/// and JSON) to `record`, up to the damaged tail if there is one.
fn scan(path: &Path, file: File, mut record: impl FnMut(usize, &[u8]) -> Result<(), JournalError>) -> Result<Scan, JournalError> {
    let io_error = |source| JournalError::Io { path: path.to_path_buf(), source };
    let mut reader = BufReader::with_capacity(256 * 1024, file);
    let mut scan = Scan { good_len: 0, len: 0, records: 0, last_good_line: 0, checksummed: false };
    let mut first_bad: Option<(usize, u64, &'static str)> = None;
    let mut segment = Vec::new();
    for line in 1.. {
        segment.clear();
        let read = reader.read_until(b'\n', &mut segment).map_err(io_error)?;
        if read == 0 {
            break;
        }
        let offset = scan.len;
        scan.len += read as u64;
        match check_line(&segment, scan.checksummed) {
            Err(why) => {
                first_bad.get_or_insert((line, offset, why));
            }
            Ok(_) if first_bad.is_some() => {
                let (line, offset, why) = first_bad.expect("checked");
                return Err(JournalError::Corrupt { path: path.to_path_buf(), line, offset, why });
            }
            Ok(good) => {
                match good {
                    Line::Version2 => scan.checksummed = true,
                    Line::Record(json) => {
                        scan.records += 1;
                        record(line, json)?;
                    }
                }
                scan.good_len = scan.len;
                scan.last_good_line = line;
            }
        }
    }
    Ok(scan)
}

/// Opens `path` for `options`; `None` when it does not exist.
fn open_existing(path: &Path, options: &OpenOptions) -> Result<Option<File>, JournalError> {
    match options.open(path) {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(JournalError::Io { path: path.to_path_buf(), source }),
    }
}

/// The good records of the journal at `path` with their 1-based line numbers, parsed as `T`
/// (none when it does not exist). A damaged tail is left out and the file is not changed, so
/// this is safe on a log being written.
pub fn read_numbered_lines<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Vec<(usize, T)>, JournalError> {
    let Some(file) = open_existing(path, OpenOptions::new().read(true))? else {
        return Ok(Vec::new());
    };
    let mut records = Vec::new();
    scan(path, file, |line, json| {
        let record = serde_json::from_slice(json).map_err(|e| JournalError::Damaged { path: path.to_path_buf(), line, message: e.to_string() })?;
        records.push((line, record));
        Ok(())
    })?;
    Ok(records)
}

/// The good records of the journal at `path`, parsed as `T`: [`read_numbered_lines`] without
/// the numbers.
pub fn read_lines<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Vec<T>, JournalError> {
    Ok(read_numbered_lines(path)?.into_iter().map(|(_, record)| record).collect())
}

/// Cuts the damaged tail off the journal at `path` (only its owner calls this, before it
/// writes), so the next append starts after the last good line; says what it cut.
pub fn cut_damaged_tail(path: &Path) -> Result<Option<TailCut>, JournalError> {
    Ok(cut_tail(path)?.1)
}

/// What [`cut_damaged_tail`] would cut off the journal at `path`, without changing it (safe on a
/// log being written, where a write in progress shows as a damaged tail).
pub fn damaged_tail(path: &Path) -> Result<Option<TailCut>, JournalError> {
    let Some(file) = open_existing(path, OpenOptions::new().read(true))? else {
        return Ok(None);
    };
    let scanned = scan(path, file, |_, _| Ok(()))?;
    Ok((scanned.good_len < scanned.len).then(|| scanned.cut()))
}

/// [`cut_damaged_tail`], also saying whether the kept lines end in the checksummed format.
fn cut_tail(path: &Path) -> Result<(bool, Option<TailCut>), JournalError> {
    let io_error = |source| JournalError::Io { path: path.to_path_buf(), source };
    let Some(file) = open_existing(path, OpenOptions::new().read(true).write(true))? else {
        return Ok((false, None));
    };
    let scanned = scan(path, file.try_clone().map_err(io_error)?, |_, _| Ok(()))?;
    if scanned.good_len == scanned.len {
        return Ok((scanned.checksummed, None));
    }
    file.set_len(scanned.good_len).map_err(io_error)?;
    file.sync_all().map_err(io_error)?;
    Ok((scanned.checksummed, Some(scanned.cut())))
}

/// Records encoded as version-2 lines (checksum, JSON, newline), ready to be queued: encoded
/// where the records are made (a batch's worker threads), written in one piece.
#[derive(Debug, Default)]
pub struct Lines(Vec<u8>);

impl Lines {
    /// Appends `record` as one line; on an error nothing is appended.
    pub fn push<T: Serialize>(&mut self, record: &T) -> serde_json::Result<()> {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let lines = &mut self.0;
        let start = lines.len();
        lines.extend_from_slice(b"00000000 ");
        if let Err(e) = serde_json::to_writer(&mut *lines, record) {
            lines.truncate(start);
            return Err(e);
        }
        let crc = crc32c::crc32c(&lines[start + CHECKSUM_PREFIX..]);
        for (i, digit) in lines[start..start + 8].iter_mut().enumerate() {
            *digit = HEX[((crc >> (28 - 4 * i)) & 0xf) as usize];
        }
        lines.push(b'\n');
        Ok(())
    }

    /// Appends every record of `records`, or, on an error, none of them.
    pub fn push_all<T: Serialize>(&mut self, records: &[T]) -> serde_json::Result<()> {
        let start = self.0.len();
        let pushed = records.iter().try_for_each(|r| self.push(r));
        if pushed.is_err() {
            self.0.truncate(start);
        }
        pushed
    }

    /// Appends `other`'s lines after these.
    pub fn append(&mut self, other: Lines) {
        if self.0.is_empty() {
            self.0 = other.0;
        } else {
            self.0.extend_from_slice(&other.0);
        }
    }

    /// No line yet.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Most lines written by one group.
const MAX_GROUP: usize = 4096;

/// One call's lines, each ending in `\n`.
struct Pending {
    lines: Vec<u8>,
    done: oneshot::Sender<Result<(), String>>,
}

/// The end of a journal file that lines are appended to. After a failed write the file is cut
/// back to its last good length and every later line is refused: what memory holds beyond the
/// disk is then only made good by a restart, which rebuilds from the disk.
struct Appender {
    file: File,
    good_len: u64,
    failed: Option<String>,
}

impl Appender {
    /// Writes `bytes` (whole lines), synced to disk when `sync`.
    fn append(&mut self, bytes: &[u8], sync: bool) -> io::Result<()> {
        if let Some(reason) = &self.failed {
            return Err(io::Error::other(format!("an earlier write failed ({reason}); restart the service")));
        }
        let written = self.file.write_all(bytes).and_then(|()| if sync { self.file.sync_data() } else { Ok(()) });
        match written {
            Ok(()) => {
                self.good_len += bytes.len() as u64;
                Ok(())
            }
            Err(e) => {
                // A partial line must not be followed by the next lines.
                let _ = self.file.set_len(self.good_len).and_then(|()| self.file.sync_all());
                self.failed = Some(e.to_string());
                Err(e)
            }
        }
    }
}

/// Buffered writes without a writer thread: a caller that finds nobody writing writes its own
/// lines, then whatever other callers queued meanwhile, until nothing is left; a caller that
/// finds a write under way leaves its lines to that writer and waits for its answer. Under load
/// one `write` carries several calls' lines and nobody blocks on a lock held across a system
/// call; alone, a call writes its line itself at once. Lines keep their queue order.
struct Combiner {
    state: Mutex<Combining>,
}

struct Combining {
    /// `None` while a caller is writing with it.
    appender: Option<Appender>,
    /// Lines queued during that write, and who waits for them.
    pending: Vec<u8>,
    waiting: Vec<oneshot::Sender<Result<(), String>>>,
}

/// Rounds a caller writes for others before it hands the rest to a thread of its own: under
/// sustained load, lines can keep arriving while each write runs, and the caller's own response
/// (its line is written in the first round) should not wait on them.
const MAX_ROUNDS: usize = 8;

impl Combiner {
    /// The lock guards a few moves of buffers, which cannot leave the state half-changed: a
    /// poisoned lock is taken as it is.
    fn lock(&self) -> std::sync::MutexGuard<'_, Combining> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Writes `lines` (or leaves them to the caller writing now); `done` gets the outcome.
    fn write(self: &Arc<Self>, lines: Vec<u8>, done: oneshot::Sender<Result<(), String>>, path: &Path) {
        let mut state = self.lock();
        let Some(appender) = state.appender.take() else {
            state.pending.extend_from_slice(&lines);
            state.waiting.push(done);
            return;
        };
        drop(state);
        self.drain(appender, lines, vec![done], path, MAX_ROUNDS);
    }

    /// Writes `batch`, answers `waiting`, then whatever was queued meanwhile, until nothing is
    /// left (the appender goes back) or `rounds` are done (a thread drains the rest).
    fn drain(self: &Arc<Self>, mut appender: Appender, mut batch: Vec<u8>, mut waiting: Vec<oneshot::Sender<Result<(), String>>>, path: &Path, rounds: usize) {
        for _ in 0..rounds {
            let outcome = appender.append(&batch, false).map_err(|e| format!("{}: {e}", path.display()));
            for w in waiting.drain(..) {
                let _ = w.send(outcome.clone());
            }
            let mut state = self.lock();
            if state.pending.is_empty() {
                state.appender = Some(appender);
                return;
            }
            batch.clear();
            std::mem::swap(&mut batch, &mut state.pending);
            std::mem::swap(&mut waiting, &mut state.waiting);
        }
        let (this, thread_path) = (self.clone(), path.to_path_buf());
        let work = std::sync::Arc::new(std::sync::Mutex::new(Some((appender, batch, waiting))));
        let handed = work.clone();
        let spawned = std::thread::Builder::new().name("journal:drain".into()).spawn(move || {
            if let Some((appender, batch, waiting)) = handed.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take() {
                this.drain(appender, batch, waiting, &thread_path, usize::MAX);
            }
        });
        if spawned.is_err() {
            // No thread to hand to: this caller drains the rest itself.
            if let Some((appender, batch, waiting)) = work.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take() {
                self.drain(appender, batch, waiting, path, usize::MAX);
            }
        }
    }
}

/// Who writes a journal's lines.
#[derive(Clone)]
enum Writer {
    /// A thread that groups the lines of concurrent calls into one write and one fsync.
    Thread(mpsc::Sender<Pending>),
    /// The callers themselves (buffered: a write is a system call, not worth a hand-off to
    /// another thread and back), combined: see [`Combiner`].
    Direct(Arc<Combiner>),
    /// A JetStream stream shared by replicas: lines are published and stored once JetStream
    /// acknowledges them.
    Stream(Arc<StreamWriter>),
}

/// Publishes queued lines to a JetStream stream from one task of the runtime (callers may be
/// on blocking threads): each piece under its own message id, the pieces of every call queued
/// meanwhile sent together and acknowledged in queue order; a piece JetStream did not
/// acknowledge is retried under its id (so never stored twice) before its call is answered.
struct StreamWriter {
    queue: tokio::sync::mpsc::UnboundedSender<Pending>,
}

/// Largest message a stream journal publishes (NATS refuses payloads over its `max_payload`,
/// 1 MiB by default): a call's lines are split at line ends.
const STREAM_MESSAGE_BYTES: usize = 512 * 1024;
/// Most calls whose lines go out together.
const STREAM_GROUP: usize = 256;

impl StreamWriter {
    fn start(jetstream: async_nats::jetstream::Context, stream: String, subject: String) -> Self {
        let (queue, mut queued) = tokio::sync::mpsc::unbounded_channel::<Pending>();
        tokio::spawn(async move {
            // Message ids unique to this writer: start time, process, counter.
            let started = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
            let prefix = format!("{started:x}-{}", std::process::id());
            let mut counter = 0u64;
            while let Some(first) = queued.recv().await {
                let mut group = vec![first];
                while group.len() < STREAM_GROUP {
                    match queued.try_recv() {
                        Ok(more) => group.push(more),
                        Err(_) => break,
                    }
                }
                let mut sent = Vec::new();
                for (call, pending) in group.iter().enumerate() {
                    for piece in line_chunks(&pending.lines, STREAM_MESSAGE_BYTES) {
                        counter += 1;
                        let id = format!("{prefix}-{counter}");
                        let mut headers = async_nats::HeaderMap::new();
                        headers.insert("Nats-Msg-Id", id.as_str());
                        let ack = jetstream.publish_with_headers(subject.clone(), headers, piece.to_vec().into()).await.ok();
                        sent.push((call, id, piece, ack));
                    }
                }
                let mut failed: Vec<Option<String>> = vec![None; group.len()];
                for (call, id, piece, ack) in sent {
                    let stored = match ack {
                        Some(ack) => ack.await.is_ok_and(|a| a.sequence > 0 && a.stream == stream),
                        None => false,
                    };
                    if !stored && let Err(e) = crate::nats::publish_acknowledged(&jetstream, &stream, &subject, &id, piece, None).await {
                        failed[call] = Some(e.to_string());
                    }
                }
                for (pending, failure) in group.into_iter().zip(failed) {
                    let _ = pending.done.send(failure.map_or(Ok(()), Err));
                }
            }
        });
        Self { queue }
    }

    fn write(&self, lines: Vec<u8>, done: oneshot::Sender<Result<(), String>>, path: &Path) {
        if let Err(returned) = self.queue.send(Pending { lines, done }) {
            let _ = returned.0.done.send(Err(format!("{}: its writer has stopped", path.display())));
        }
    }
}

/// `lines` cut at line ends into pieces of at most `most` bytes (a longer line is a piece).
fn line_chunks(lines: &[u8], most: usize) -> Vec<&[u8]> {
    let mut chunks = Vec::new();
    let mut start = 0;
    while start < lines.len() {
        let mut end = (start + most).min(lines.len());
        if end < lines.len() {
            end = match lines[start..end].iter().rposition(|b| *b == b'\n') {
                Some(i) => start + i + 1,
                None => lines[start..].iter().position(|b| *b == b'\n').map_or(lines.len(), |i| start + i + 1),
            };
        }
        chunks.push(&lines[start..end]);
        start = end;
    }
    chunks
}

/// A journal open for appending. Cloning shares the writer.
#[derive(Clone)]
pub struct Journal {
    path: PathBuf,
    writer: Writer,
    cut_at_open: Option<TailCut>,
}

impl Journal {
    /// Opens `path` for appending (creating it and its folder), with a writer thread unless
    /// `durability` is buffered. A damaged
    /// tail is cut first ([`Journal::cut_at_open`] says what was cut); a journal that does not
    /// end in the checksummed format gets its version line, so what is appended is checksummed.
    pub fn open(path: &Path, durability: Durability) -> Result<Self, JournalError> {
        let io_error = |source| JournalError::Io { path: path.to_path_buf(), source };
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(io_error)?;
        // What was cut is the owner's to report, with what it knows of the kept lines.
        let (checksummed, cut_at_open) = cut_tail(path)?;
        let existed = path.exists();
        let mut file = OpenOptions::new().create(true).append(true).open(path).map_err(io_error)?;
        if !checksummed {
            file.write_all(&[VERSION_2_LINE, b"\n"].concat()).and_then(|()| file.sync_data()).map_err(io_error)?;
        }
        if !existed {
            // The new file's directory entry must be durable too.
            File::open(dir).and_then(|d| d.sync_all()).map_err(io_error)?;
        }
        let good_len = file.seek(SeekFrom::End(0)).map_err(io_error)?;
        let appender = Appender { file, good_len, failed: None };
        let writer = if durability == Durability::Buffered {
            Writer::Direct(Arc::new(Combiner { state: Mutex::new(Combining { appender: Some(appender), pending: Vec::new(), waiting: Vec::new() }) }))
        } else {
            let (sender, receiver) = mpsc::channel::<Pending>();
            let thread_path = path.to_path_buf();
            std::thread::Builder::new()
                .name(format!("journal:{}", path.file_name().and_then(|n| n.to_str()).unwrap_or("?")))
                .spawn(move || write_groups(appender, &receiver, durability, &thread_path))
                .map_err(io_error)?;
            Writer::Thread(sender)
        };
        Ok(Self { path: path.to_path_buf(), writer, cut_at_open })
    }

    /// A journal on the JetStream stream `name` (created if missing), appended to under
    /// `subject`: what replicas share instead of a file each. Its [`Journal::path`] is
    /// `nats:<name>`, for messages.
    pub async fn on_stream(
        jetstream: &async_nats::jetstream::Context,
        replicas: usize,
        name: &str,
        subject: &str,
        retention: crate::nats::Retention,
    ) -> Result<Self, JournalError> {
        crate::nats::stream(jetstream, name, subject, replicas, retention).await?;
        let writer = StreamWriter::start(jetstream.clone(), name.to_string(), subject.to_string());
        Ok(Self { path: PathBuf::from(format!("nats:{name}")), writer: Writer::Stream(Arc::new(writer)), cut_at_open: None })
    }

    /// The journal file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What [`Journal::open`] cut off the file's damaged end, if anything.
    pub fn cut_at_open(&self) -> Option<TailCut> {
        self.cut_at_open
    }

    /// Queues `records`, a line each, together; the receiver answers once they are stored.
    /// Lines are written in the order they are queued.
    pub fn queue<T: Serialize>(&self, records: &[T]) -> Result<oneshot::Receiver<Result<(), String>>, JournalError> {
        let mut lines = Lines(Vec::with_capacity(256 * records.len()));
        lines.push_all(records).map_err(|e| JournalError::Damaged { path: self.path.clone(), line: 0, message: e.to_string() })?;
        self.queue_lines(lines)
    }

    /// Queues lines encoded beforehand ([`Lines`]), as [`Journal::queue`] does.
    pub fn queue_lines(&self, lines: Lines) -> Result<oneshot::Receiver<Result<(), String>>, JournalError> {
        let (done, receiver) = oneshot::channel();
        match &self.writer {
            Writer::Thread(sender) => sender.send(Pending { lines: lines.0, done }).map_err(|_| JournalError::Closed(self.path.clone()))?,
            Writer::Direct(combiner) => combiner.write(lines.0, done, &self.path),
            Writer::Stream(writer) => writer.write(lines.0, done, &self.path),
        }
        Ok(receiver)
    }

    /// Waits until a queued line is stored.
    pub async fn stored(&self, receiver: oneshot::Receiver<Result<(), String>>) -> Result<(), JournalError> {
        match receiver.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(JournalError::Io { path: self.path.clone(), source: io::Error::other(message) }),
            Err(_) => Err(JournalError::Closed(self.path.clone())),
        }
    }

    /// Appends records and waits until they are stored.
    pub async fn append<T: Serialize>(&self, records: &[T]) -> Result<(), JournalError> {
        let receiver = self.queue(records)?;
        self.stored(receiver).await
    }
}

/// The writer thread: one write and one fsync per group of waiting lines (group commit), or
/// one fsync per call's lines (fsync-each).
fn write_groups(mut appender: Appender, receiver: &mpsc::Receiver<Pending>, durability: Durability, path: &Path) {
    let mut group = Vec::with_capacity(64);
    let mut bytes = Vec::with_capacity(64 * 1024);
    while let Ok(first) = receiver.recv() {
        group.push(first);
        while group.len() < MAX_GROUP {
            match receiver.try_recv() {
                Ok(next) => group.push(next),
                Err(_) => break,
            }
        }
        let result = match durability {
            Durability::FsyncEach => group.iter().try_for_each(|p| appender.append(&p.lines, true)),
            Durability::GroupCommit | Durability::Buffered => {
                bytes.clear();
                for p in &group {
                    bytes.extend_from_slice(&p.lines);
                }
                appender.append(&bytes, durability == Durability::GroupCommit)
            }
        };
        let result = result.map_err(|e| format!("{}: {e}", path.display()));
        for p in group.drain(..) {
            let _ = p.done.send(result.clone()); // a caller that stopped waiting needs no answer
        }
    }
}

/// How long an export waits for NATS to answer.
const EXPORT_CONNECT: std::time::Duration = std::time::Duration::from_secs(10);

/// Copies the JetStream stream `name` (a [`Journal::on_stream`]), as it is now, into the file
/// `out` in the journal format a single machine writes, so that replays and reports read it
/// unchanged; returns the lines written. Written through a temporary file beside `out` and
/// renamed: whole or not at all, without holding the stream in memory.
pub async fn export_stream(options: &crate::nats::NatsOptions, name: &str, out: &Path) -> Result<usize, JournalError> {
    use async_nats::jetstream::consumer::{DeliverPolicy, pull::OrderedConfig};
    use tokio_stream::StreamExt;
    let shared = |what: &str, e: &dyn std::fmt::Display| crate::nats::shared_error(format!("{what} {name}"), e);
    let io_error = |source| JournalError::Io { path: out.to_path_buf(), source };
    // A person is waiting: NATS not answering is an error, not something to wait out.
    let jetstream = tokio::time::timeout(EXPORT_CONNECT, crate::nats::connect(options))
        .await
        .map_err(|_| crate::nats::shared_error(format!("connect to {}", options.url), format!("could not connect within {EXPORT_CONNECT:?} (is a NATS server there, and does --ca trust its certificate?)")))??;
    let mut stream = jetstream.get_stream(name).await.map_err(|e| shared("stream", &e))?;
    let state = stream.info().await.map_err(|e| shared("stream", &e))?.state.clone();
    let dir = out.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut file = tempfile::NamedTempFile::new_in(dir).map_err(io_error)?;
    file.write_all(&[VERSION_2_LINE, b"\n"].concat()).map_err(io_error)?;
    let mut lines = 0;
    if state.messages > 0 {
        let consumer = stream.create_consumer(OrderedConfig { deliver_policy: DeliverPolicy::All, ..Default::default() }).await.map_err(|e| shared("consumer of", &e))?;
        let mut messages = consumer.messages().await.map_err(|e| shared("messages of", &e))?;
        // Up to what the stream held when the export began: the last message, or none pending.
        while let Some(message) = messages.next().await {
            let message = message.map_err(|e| shared("reading", &e))?;
            file.write_all(&message.payload).map_err(io_error)?;
            lines += message.payload.iter().filter(|b| **b == b'\n').count();
            let info = message.info().map_err(|e| shared("reading", &e))?;
            if info.stream_sequence >= state.last_sequence || info.pending == 0 {
                break;
            }
        }
    }
    file.as_file().sync_all().map_err(io_error)?;
    file.persist(out).map_err(|e| io_error(e.error))?;
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_messages_are_cut_at_line_ends() {
        let lines = b"aaaa\nbb\ncccccccc\nd\n";
        assert_eq!(line_chunks(lines, 8), vec![&b"aaaa\nbb\n"[..], b"cccccccc\n", b"d\n"]);
        assert_eq!(line_chunks(lines, 100), vec![&lines[..]]);
        assert!(line_chunks(b"", 8).is_empty());
        assert_eq!(line_chunks(lines, 8).concat(), lines.to_vec(), "nothing lost");
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Row {
        n: u32,
    }

    #[tokio::test]
    async fn appends_in_order_and_drops_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j/log.jsonl");
        for durability in [Durability::GroupCommit, Durability::FsyncEach, Durability::Buffered] {
            let _ = std::fs::remove_file(&path);
            let journal = Journal::open(&path, durability).unwrap();
            let receivers: Vec<_> = (0..98).map(|n| journal.queue(&[Row { n }]).unwrap()).collect();
            for r in receivers {
                journal.stored(r).await.unwrap();
            }
            journal.append(&[Row { n: 98 }, Row { n: 99 }, Row { n: 100 }]).await.unwrap();
            let rows: Vec<Row> = read_lines(&path).unwrap();
            assert_eq!(rows, (0..=100).map(|n| Row { n }).collect::<Vec<_>>(), "{durability}");
        }
        // A crash mid-line: readers leave the torn line out without touching the file; the
        // owner cuts it off when it opens the journal, and appending goes on after it.
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(b"{\"n\":10").unwrap();
        drop(file);
        let torn_len = std::fs::metadata(&path).unwrap().len();
        assert_eq!(read_lines::<Row>(&path).unwrap().len(), 101);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), torn_len, "reading changes nothing");
        let journal = Journal::open(&path, Durability::GroupCommit).unwrap();
        journal.append(&[Row { n: 101 }]).await.unwrap();
        let rows: Vec<Row> = read_lines(&path).unwrap();
        assert_eq!(rows.last(), Some(&Row { n: 101 }));
        assert_eq!(rows.len(), 102);
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Tagged {
        writer: u32,
        n: u32,
    }

    #[test]
    fn concurrent_buffered_writers_store_every_line_once_each_in_its_order() {
        // Callers that find a write under way hand their lines to its writer: every caller is
        // still answered, after its own line is in the file, and nothing is lost or doubled.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let journal = Journal::open(&path, Durability::Buffered).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        std::thread::scope(|scope| {
            for writer in 0..8 {
                let (journal, runtime, path) = (journal.clone(), &runtime, &path);
                scope.spawn(move || {
                    for n in 0..400 {
                        let receiver = journal.queue(&[Tagged { writer, n }]).unwrap();
                        runtime.block_on(journal.stored(receiver)).unwrap();
                        if n % 100 == 0 {
                            // Answered only once the line is in the file.
                            let rows: Vec<Tagged> = read_lines(path).unwrap();
                            assert!(rows.contains(&Tagged { writer, n }));
                        }
                    }
                });
            }
        });
        let rows: Vec<Tagged> = read_lines(&path).unwrap();
        assert_eq!(rows.len(), 8 * 400);
        for writer in 0..8 {
            let own: Vec<u32> = rows.iter().filter(|r| r.writer == writer).map(|r| r.n).collect();
            assert_eq!(own, (0..400).collect::<Vec<_>>(), "writer {writer}");
        }
    }

    #[test]
    fn a_writer_past_its_rounds_hands_the_rest_to_a_thread() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let journal = Journal::open(&path, Durability::Buffered).unwrap();
        let Writer::Direct(combiner) = &journal.writer else { panic!("a buffered journal writes directly") };
        // A caller is writing (it holds the appender) while another queues its line.
        let appender = combiner.lock().appender.take().unwrap();
        let queued = journal.queue(&[Row { n: 1 }]).unwrap();
        let mut first = Lines::default();
        first.push(&Row { n: 0 }).unwrap();
        let (done, answered) = oneshot::channel();
        // One round: its own line, then the queued one goes to a thread.
        combiner.drain(appender, first.0, vec![done], &path, 1);
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        runtime.block_on(async {
            journal.stored(answered).await.unwrap();
            journal.stored(queued).await.unwrap();
        });
        assert_eq!(read_lines::<Row>(&path).unwrap(), vec![Row { n: 0 }, Row { n: 1 }]);
        // The thread gave the appender back: the next caller writes at once.
        for _ in 0..100 {
            if combiner.lock().appender.is_some() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        runtime.block_on(journal.append(&[Row { n: 2 }])).unwrap();
        assert_eq!(read_lines::<Row>(&path).unwrap().len(), 3);
    }

    #[test]
    fn a_line_that_does_not_parse_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.jsonl");
        std::fs::write(&path, "{\"n\":1}\n{not json}\n{\"n\":3}\n").unwrap();
        let e = read_lines::<Row>(&path).unwrap_err().to_string();
        assert!(e.contains("log.jsonl:2: damaged record"), "{e}");
        assert!(read_lines::<Row>(&dir.path().join("absent")).unwrap().is_empty());
    }

    /// A checksummed journal of `n` rows, written through [`Journal`].
    async fn written(path: &Path, n: u32) -> Vec<u8> {
        let journal = Journal::open(path, Durability::Buffered).unwrap();
        for n in 0..n {
            journal.append(&[Row { n }]).await.unwrap();
        }
        drop(journal);
        std::fs::read(path).unwrap()
    }

    #[tokio::test]
    async fn every_flipped_byte_is_caught_and_only_the_last_line_is_ever_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.jsonl");
        let good = written(&path, 6).await;
        let rows: Vec<Row> = (0..6).map(|n| Row { n }).collect();
        // Where each line ends; the first line is the version line.
        let line_ends: Vec<usize> = good.iter().enumerate().filter(|(_, b)| **b == b'\n').map(|(i, _)| i + 1).collect();
        let last_line_start = line_ends[line_ends.len() - 2];
        for at in 0..good.len() {
            let mut bytes = good.clone();
            bytes[at] ^= 0x5a;
            std::fs::write(&path, &bytes).unwrap();
            match read_lines::<Row>(&path) {
                // Damage that runs to the end of the file is a torn tail: left out, never misread.
                Ok(read) => {
                    let kept_len = line_ends[read.len()];
                    assert!(at >= kept_len, "byte {at}: a flip inside the journal went unnoticed");
                    // Only the last line, or the newline that ends the line before it.
                    assert!(at + 1 >= last_line_start, "byte {at}: a flip cut more than the end");
                    assert_eq!(read, rows[..read.len()], "byte {at}");
                    let cut = cut_damaged_tail(&path).unwrap().expect("cut");
                    assert_eq!((cut.bytes, cut.records_kept, cut.kept_len), ((good.len() - kept_len) as u64, read.len(), kept_len as u64));
                }
                Err(e) => {
                    assert!(at + 1 < last_line_start, "byte {at}: damage at the end is a tail to cut, not an error: {e}");
                    let message = e.to_string();
                    assert!(message.contains("log.jsonl") && (message.contains("at byte") || message.contains("damaged record")), "{message}");
                    assert!(read_lines::<Row>(&path).is_err() && Journal::open(&path, Durability::Buffered).is_err(), "byte {at}: damage inside is never cut");
                    assert_eq!(std::fs::read(&path).unwrap(), bytes, "byte {at}: the file is left as found");
                }
            }
        }
    }

    #[tokio::test]
    async fn a_journal_cut_anywhere_keeps_its_complete_lines_and_appends_after_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.jsonl");
        let good = written(&path, 4).await;
        let line_ends: Vec<usize> = good.iter().enumerate().filter(|(_, b)| **b == b'\n').map(|(i, _)| i + 1).collect();
        for len in 0..good.len() {
            std::fs::write(&path, &good[..len]).unwrap();
            let complete = line_ends.iter().filter(|end| **end <= len).count();
            let records = complete.saturating_sub(1); // the first line is the version line
            assert_eq!(read_lines::<Row>(&path).unwrap().len(), records, "cut at {len}");
            let journal = Journal::open(&path, Durability::Buffered).unwrap();
            let kept = line_ends.iter().rev().find(|end| **end <= len).copied().unwrap_or(0);
            assert_eq!(journal.cut_at_open().map(|c| c.bytes), (kept < len).then_some((len - kept) as u64), "cut at {len}");
            journal.append(&[Row { n: 99 }]).await.unwrap();
            let read: Vec<Row> = read_lines(&path).unwrap();
            assert_eq!(read.len(), records + 1, "cut at {len}");
            assert_eq!(read.last(), Some(&Row { n: 99 }));
        }
    }

    #[tokio::test]
    async fn zeros_and_garbage_after_the_last_good_line_are_cut_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.jsonl");
        let good = written(&path, 3).await;
        let mut line = Lines::default();
        line.push(&Row { n: 7 }).unwrap();
        let complete_line = line.0;
        // A lost page (zeros) before a complete line, then garbage with newlines in it.
        for tail in [vec![0u8; 4096], [vec![0u8; 100], complete_line.clone()].concat(), b"\x01garbage\nmore\n{}\n".to_vec()] {
            std::fs::write(&path, [good.as_slice(), &tail].concat()).unwrap();
            assert_eq!(read_lines::<Row>(&path).unwrap().len(), 3);
            let seen = damaged_tail(&path).unwrap();
            let journal = Journal::open(&path, Durability::Buffered).unwrap();
            let cut = journal.cut_at_open().unwrap();
            assert_eq!(seen, Some(cut), "seen before, cut at open");
            assert_eq!((cut.bytes, cut.records_kept, cut.last_good_line, cut.kept_len), (tail.len() as u64, 3, 4, good.len() as u64));
            assert!(cut.to_string().contains(&format!("cut {} damaged bytes after line 4", tail.len())), "{cut}");
        }
    }

    #[tokio::test]
    async fn a_journal_written_before_checksums_opens_and_carries_on_checksummed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.jsonl");
        std::fs::write(&path, "{\"n\":0}\n{\"n\":1}\n{\"n\":2").unwrap();
        let journal = Journal::open(&path, Durability::GroupCommit).unwrap();
        assert_eq!(journal.cut_at_open().map(|c| c.bytes), Some(6), "the torn version-1 line");
        journal.append(&[Row { n: 2 }, Row { n: 3 }]).await.unwrap();
        drop(journal);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("{\"n\":0}\n{\"n\":1}\n#foresight-journal 2 crc32c\n"), "{text}");
        assert_eq!(read_lines::<Row>(&path).unwrap(), (0..4).map(|n| Row { n }).collect::<Vec<_>>());
        // Reopening does not add a second version line.
        Journal::open(&path, Durability::GroupCommit).unwrap().append(&[Row { n: 4 }]).await.unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap().matches("#foresight-journal").count(), 1);
        // After the version line a line without its checksum is damage.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(b"{\"n\":5}\n");
        let mut line = Lines::default();
        line.push(&Row { n: 6 }).unwrap();
        bytes.extend_from_slice(&line.0);
        std::fs::write(&path, &bytes).unwrap();
        let e = read_lines::<Row>(&path).unwrap_err();
        assert!(matches!(e, JournalError::Corrupt { line: 7, why: "no checksum", .. }), "{e}");
    }
}
