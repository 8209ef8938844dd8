//! An append-only journal of JSON lines with group commit, for the market state and the audit
//! log: a writer thread owns the file; callers hand it lines and wait for the acknowledgement
//! that they are on disk. Lines that arrive while a write is in progress are written (and
//! fsynced) together, so durability costs one fsync per group, not per line.
//!
//! A crash can leave a torn last line (written, not acknowledged): [`read_lines`] leaves it out
//! without changing the file (it is safe on a log being written); the journal's owner cuts the
//! file back to the last complete line when it opens it for writing. A damaged line elsewhere is
//! an error that names it, never silently skipped.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

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
    /// A complete line that does not parse: the journal is damaged.
    #[error("{path}:{line}: damaged record: {message}")]
    Damaged {
        /// The journal file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What failed.
        message: String,
    },
    /// The writer thread is gone (the service is shutting down).
    #[error("journal {0} is closed")]
    Closed(PathBuf),
}

/// Most lines written by one group.
const MAX_GROUP: usize = 4096;

/// One call's lines, each ending in `\n`.
struct Pending {
    lines: Vec<u8>,
    done: oneshot::Sender<Result<(), String>>,
}

/// A journal open for appending. Cloning shares the writer.
#[derive(Clone)]
pub struct Journal {
    path: PathBuf,
    sender: mpsc::Sender<Pending>,
}

/// The complete lines of the journal at `path`, parsed as `T` (none when it does not exist). A
/// torn last line (no newline: written, never acknowledged) is left out; the file is not
/// changed, so this is safe on a log that is being written.
pub fn read_lines<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Vec<T>, JournalError> {
    let io_error = |source| JournalError::Io { path: path.to_path_buf(), source };
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error(e)),
    };
    let mut reader = BufReader::new(file);
    let (mut records, mut buffer) = (Vec::new(), Vec::new());
    for line in 1.. {
        buffer.clear();
        let read = reader.read_until(b'\n', &mut buffer).map_err(io_error)?;
        if read == 0 || buffer.last() != Some(&b'\n') {
            break;
        }
        let record = serde_json::from_slice(&buffer[..buffer.len() - 1])
            .map_err(|e| JournalError::Damaged { path: path.to_path_buf(), line, message: e.to_string() })?;
        records.push(record);
    }
    Ok(records)
}

/// Cuts a torn last line (one without its newline) off the journal at `path`, so the next
/// append starts on a fresh line; only the journal's owner calls this, before it writes.
pub fn cut_torn_tail(path: &Path) -> Result<(), JournalError> {
    let io_error = |source| JournalError::Io { path: path.to_path_buf(), source };
    let mut file = match OpenOptions::new().read(true).write(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_error(e)),
    };
    let len = file.metadata().map_err(io_error)?.len();
    // Scan back from the end, a block at a time, for the last newline.
    let mut end = len;
    let mut block = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(block.len() as u64);
        let chunk = &mut block[..(end - start) as usize];
        file.seek(SeekFrom::Start(start)).map_err(io_error)?;
        file.read_exact(chunk).map_err(io_error)?;
        if let Some(i) = chunk.iter().rposition(|b| *b == b'\n') {
            end = start + i as u64 + 1;
            break;
        }
        end = start;
    }
    if end < len {
        file.set_len(end).map_err(io_error)?;
        file.sync_all().map_err(io_error)?;
    }
    Ok(())
}

impl Journal {
    /// Opens `path` for appending (creating it and its folder), with a writer thread.
    /// A torn last line is cut first.
    pub fn open(path: &Path, durability: Durability) -> Result<Self, JournalError> {
        let io_error = |source| JournalError::Io { path: path.to_path_buf(), source };
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(io_error)?;
        cut_torn_tail(path)?;
        let existed = path.exists();
        let mut file = OpenOptions::new().create(true).append(true).open(path).map_err(io_error)?;
        if !existed {
            // The new file's directory entry must be durable too.
            File::open(dir).and_then(|d| d.sync_all()).map_err(io_error)?;
        }
        let good_len = file.seek(SeekFrom::End(0)).map_err(io_error)?;
        let (sender, receiver) = mpsc::channel::<Pending>();
        let thread_path = path.to_path_buf();
        std::thread::Builder::new()
            .name(format!("journal:{}", path.file_name().and_then(|n| n.to_str()).unwrap_or("?")))
            .spawn(move || write_groups(file, good_len, &receiver, durability, &thread_path))
            .map_err(io_error)?;
        Ok(Self { path: path.to_path_buf(), sender })
    }

    /// The journal file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Queues `records`, a line each, together; the receiver answers once they are stored.
    /// Lines are written in the order they are queued.
    pub fn queue<T: Serialize>(&self, records: &[T]) -> Result<oneshot::Receiver<Result<(), String>>, JournalError> {
        let mut lines = Vec::with_capacity(256 * records.len());
        for record in records {
            serde_json::to_writer(&mut lines, record).map_err(|e| JournalError::Damaged { path: self.path.clone(), line: 0, message: e.to_string() })?;
            lines.push(b'\n');
        }
        let (done, receiver) = oneshot::channel();
        self.sender.send(Pending { lines, done }).map_err(|_| JournalError::Closed(self.path.clone()))?;
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

/// The writer thread: one write (and one fsync, in group-commit mode) per group of waiting lines.
/// After a failed write the file is cut back to its last good length and the journal refuses
/// every later line: what memory holds beyond the disk is then only made good by a restart,
/// which rebuilds from the disk.
fn write_groups(mut file: File, mut good_len: u64, receiver: &mpsc::Receiver<Pending>, durability: Durability, path: &Path) {
    let mut group = Vec::with_capacity(64);
    let mut bytes = Vec::with_capacity(64 * 1024);
    let mut failed: Option<String> = None;
    while let Ok(first) = receiver.recv() {
        group.push(first);
        while group.len() < MAX_GROUP {
            match receiver.try_recv() {
                Ok(next) => group.push(next),
                Err(_) => break,
            }
        }
        let result = match &failed {
            Some(reason) => Err(io::Error::other(format!("an earlier write failed ({reason}); restart the service"))),
            None => match durability {
                Durability::FsyncEach => group.iter().try_for_each(|p| {
                    file.write_all(&p.lines)?;
                    file.sync_data()?;
                    good_len += p.lines.len() as u64;
                    Ok(())
                }),
                Durability::GroupCommit | Durability::Buffered => {
                    bytes.clear();
                    for p in &group {
                        bytes.extend_from_slice(&p.lines);
                    }
                    file.write_all(&bytes).and_then(|()| if durability == Durability::GroupCommit { file.sync_data() } else { Ok(()) }).map(|()| {
                        good_len += bytes.len() as u64;
                    })
                }
            },
        };
        if let (Err(e), None) = (&result, &failed) {
            // A partial line must not be followed by the next group's lines.
            let _ = file.set_len(good_len).and_then(|()| file.sync_all());
            failed = Some(e.to_string());
        }
        let result = result.map_err(|e| format!("{}: {e}", path.display()));
        for p in group.drain(..) {
            let _ = p.done.send(result.clone()); // a caller that stopped waiting needs no answer
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn a_damaged_line_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.jsonl");
        std::fs::write(&path, "{\"n\":1}\nnot json\n{\"n\":3}\n").unwrap();
        let e = read_lines::<Row>(&path).unwrap_err().to_string();
        assert!(e.contains("log.jsonl:2: damaged record"), "{e}");
        assert!(read_lines::<Row>(&dir.path().join("absent")).unwrap().is_empty());
    }
}
