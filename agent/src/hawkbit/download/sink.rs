//! The part file as a transfer appends to it: written, hashed and synced side by side.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};

use tokio::task::JoinHandle;

use super::{DownloadError, READ_BUF, Spool};
use crate::hawkbit::digest::{Expected, Hasher};

/// Writes are gathered into this much before they reach the file (received chunks are
/// mostly larger over plain HTTP/1.1 and go straight through; TLS records are 16 KiB).
const WRITE_BUF: usize = 256 * 1024;
/// Bytes written between the starts of two background syncs (see [`Writeback`]).
const SYNC_EVERY: u64 = 16 << 20;

/// The hash of the part file's first `len` bytes.
pub(super) struct Running {
    pub(super) hasher: Hasher,
    pub(super) len: u64,
}

impl Running {
    /// Takes the hash out, leaving that of nothing in its place.
    pub(super) fn take(&mut self, digest: &Expected) -> Running {
        std::mem::replace(
            self,
            Running {
                hasher: digest.hasher(),
                len: 0,
            },
        )
    }

    /// Makes the hash cover exactly the first `upto` bytes of `part`.
    pub(super) fn catch_up(
        &mut self,
        part: &Path,
        upto: u64,
        digest: &Expected,
    ) -> Result<(), DownloadError> {
        if self.len > upto {
            self.hasher = digest.hasher();
            self.len = 0;
        }
        if self.len == upto {
            return Ok(());
        }
        let mut file = std::fs::File::open(part).map_err(Spool::io("cannot open", part))?;
        std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(self.len))
            .map_err(Spool::io("cannot read", part))?;
        let mut rest = upto - self.len;
        let mut buf = vec![0u8; READ_BUF];
        while rest > 0 {
            let want = usize::try_from(rest.min(READ_BUF as u64)).unwrap_or(READ_BUF);
            let n = file
                .read(&mut buf[..want])
                .map_err(Spool::io("cannot read", part))?;
            if n == 0 {
                break;
            }
            self.hasher.update(&buf[..n]);
            rest -= n as u64;
        }
        self.len = upto - rest;
        Ok(())
    }
}

/// The part file being appended to during one transfer.
///
/// Receiving and writing (copies through the kernel), hashing, and getting the bytes onto
/// the disk take about as long as one another (for 256 MiB on the two-core bench machine,
/// about 0.2 s each), so they run side by side instead of one after the other: 0.27 s
/// instead of 0.54 s there. This task writes, a [`Follower`] hashes what was written, and a
/// [`Writeback`] has the kernel write it to the disk as it accumulates, so that the fsync at
/// the end waits for the last few MiB rather than for the whole artifact. Neither holds
/// received data: the memory used is the write buffer and the follower's read buffer,
/// whatever the artifact's size.
pub(super) struct Sink<'a> {
    path: &'a Path,
    file: BufWriter<File>,
    follower: Follower,
    writeback: Writeback,
    /// Bytes in the part file, counting those still in the write buffer.
    pub(super) len: u64,
}

impl<'a> Sink<'a> {
    /// Opens `path` for appending after `running.len` bytes, which `running` has hashed.
    pub(super) fn open(path: &'a Path, running: Running) -> Result<Self, DownloadError> {
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(Spool::io("cannot open", path))?;
        let writeback = Writeback::new(&file).map_err(Spool::io("cannot open", path))?;
        let len = running.len;
        Ok(Self {
            path,
            file: BufWriter::with_capacity(WRITE_BUF, file),
            follower: Follower::start(path, running),
            writeback,
            len,
        })
    }

    pub(super) async fn append(&mut self, bytes: &[u8]) -> Result<(), DownloadError> {
        self.file
            .write_all(bytes)
            .map_err(Spool::io("cannot write", self.path))?;
        self.len = self.len.saturating_add(bytes.len() as u64);
        self.follower.written(self.in_file());
        self.writeback
            .wrote(bytes.len() as u64)
            .await
            .map_err(Spool::io("cannot sync", self.path))
    }

    /// Bytes that reached the file (the rest is in the write buffer).
    fn in_file(&self) -> u64 {
        self.len.saturating_sub(self.file.buffer().len() as u64)
    }

    /// Everything on the disk and hashed: the hash of the whole part file.
    pub(super) async fn finish(mut self) -> Result<Running, DownloadError> {
        let path = self.path;
        self.file.flush().map_err(Spool::io("cannot write", path))?;
        self.follower.written(self.len);
        self.writeback
            .finish()
            .await
            .map_err(Spool::io("cannot sync", path))?;
        // The follower hashes the last bytes meanwhile.
        self.file
            .get_ref()
            .sync_all()
            .map_err(Spool::io("cannot sync", path))?;
        let running = self.follower.finish().await?;
        if running.len != self.len {
            return Err(Spool::io("cannot read back", path)(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("{} bytes written, {} read", self.len, running.len),
            )));
        }
        Ok(running)
    }

    /// After an interrupted transfer: what was received is kept for the resume, as far as it
    /// reaches the disk, with its hash.
    pub(super) async fn keep(mut self) -> Result<Running, DownloadError> {
        if self.file.flush().is_ok() {
            let _ = self.writeback.finish().await;
            let _ = self.file.get_ref().sync_data();
        }
        self.follower.written(self.in_file());
        self.follower.finish().await
    }
}

/// Hashes the part file on a blocking thread as it grows, reading back what was written.
///
/// SHA-256 costs about as much CPU as the transfer itself (even with SHA-NI), hence the
/// thread. It reads the bytes back from the page cache, where they are still hot, instead of
/// being handed the received buffers: a buffer handed over stays alive until hashed, so hyper
/// could not reuse its read buffer and allocated a new one (up to 400 KiB) for each chunk
/// in flight. Reading back costs one more copy on this thread, which has time to spare, and
/// the hash then covers exactly the bytes in the file that RAUC gets.
struct Follower {
    written: Arc<Written>,
    task: JoinHandle<Result<Running, DownloadError>>,
}

impl Follower {
    /// Hashes `path` onwards from `running.len`, as far as [`written`](Self::written) says.
    fn start(path: &Path, running: Running) -> Self {
        let written = Arc::new(Written {
            state: Mutex::new(Extent {
                len: running.len,
                closed: false,
            }),
            grew: Condvar::new(),
            abandoned: AtomicBool::new(false),
        });
        let path = path.to_owned();
        let shared = Arc::clone(&written);
        let task = tokio::task::spawn_blocking(move || follow(&path, running, &shared));
        Self { written, task }
    }

    /// The part file holds `len` bytes now (a cheap call: it wakes the thread only when
    /// that is news).
    fn written(&self, len: u64) {
        let mut extent = self.written.lock();
        if len > extent.len {
            extent.len = len;
            self.written.grew.notify_one();
        }
    }

    /// The hash of the part file as far as it was written.
    async fn finish(mut self) -> Result<Running, DownloadError> {
        self.written.close();
        (&mut self.task)
            .await
            .map_err(|e| DownloadError::Hashing(e.to_string()))?
    }
}

impl Drop for Follower {
    /// Lets the thread end when the transfer ends early (an error, a cancel): it stops at the
    /// next buffer. After [`finish`](Self::finish) the thread has already ended.
    fn drop(&mut self) {
        self.written.abandoned.store(true, Ordering::Release);
        self.written.close();
    }
}

/// How far the part file is written, shared with the follower.
struct Written {
    state: Mutex<Extent>,
    grew: Condvar,
    /// The transfer was dropped (an error, a cancel): the hash is not wanted any more, and the
    /// thread stops at once instead of catching up with what was written.
    abandoned: AtomicBool,
}

#[derive(Clone, Copy)]
struct Extent {
    len: u64,
    /// No more bytes will come.
    closed: bool,
}

impl Written {
    /// The lock; a panic elsewhere cannot leave two integers inconsistent, so poisoning is
    /// ignored.
    fn lock(&self) -> std::sync::MutexGuard<'_, Extent> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn close(&self) {
        self.lock().closed = true;
        self.grew.notify_one();
    }

    /// Waits until more than `have` bytes are written or no more will come.
    fn wait_beyond(&self, have: u64) -> Extent {
        let guard = self.lock();
        let guard = self
            .grew
            .wait_while(guard, |e| e.len <= have && !e.closed)
            .unwrap_or_else(PoisonError::into_inner);
        *guard
    }
}

/// The follower's loop: hashes `path` from `running.len` up to what is written, until closed.
fn follow(path: &Path, mut running: Running, written: &Written) -> Result<Running, DownloadError> {
    let file = File::open(path).map_err(Spool::io("cannot open", path))?;
    let mut buf = vec![0u8; READ_BUF];
    loop {
        let extent = written.wait_beyond(running.len);
        while running.len < extent.len {
            if written.abandoned.load(Ordering::Acquire) {
                return Ok(running);
            }
            let want = usize::try_from(extent.len - running.len)
                .unwrap_or(READ_BUF)
                .min(READ_BUF);
            let n = file
                .read_at(&mut buf[..want], running.len)
                .map_err(Spool::io("cannot read", path))?;
            if n == 0 {
                // Shorter than written (truncated behind our back): `finish` says so.
                return Ok(running);
            }
            running.hasher.update(&buf[..n]);
            running.len += n as u64;
        }
        if extent.closed {
            return Ok(running);
        }
    }
}

/// Starts writing the part file to the disk while the download goes on.
///
/// Left alone, Linux keeps a bundle dirty in the page cache until the final fsync (the
/// background writeback threshold is a share of the RAM, often more than the bundle) and
/// only then writes all of it, with the download finished and waiting. Here an fdatasync
/// runs on a blocking thread whenever [`SYNC_EVERY`] bytes have been written since the last
/// one started, one at a time: the disk works while the network does, and the dirty data is
/// bounded too (which a device with little RAM appreciates).
struct Writeback {
    /// A duplicate of the part file's descriptor. It shares the open file description, so
    /// a write error reported to a sync here is not reported again to the final sync: every
    /// sync's result is therefore checked.
    file: Arc<File>,
    unsynced: u64,
    running: Option<JoinHandle<std::io::Result<()>>>,
}

impl Writeback {
    fn new(file: &File) -> std::io::Result<Self> {
        Ok(Self {
            file: Arc::new(file.try_clone()?),
            unsynced: 0,
            running: None,
        })
    }

    /// Counts `n` more bytes written; starts a sync when enough piled up and none runs.
    async fn wrote(&mut self, n: u64) -> std::io::Result<()> {
        self.unsynced = self.unsynced.saturating_add(n);
        if self.unsynced < SYNC_EVERY || self.running.as_ref().is_some_and(|r| !r.is_finished()) {
            return Ok(());
        }
        self.finish().await?;
        self.unsynced = 0;
        let file = Arc::clone(&self.file);
        self.running = Some(tokio::task::spawn_blocking(move || file.sync_data()));
        Ok(())
    }

    /// Waits for the running sync, if any, and reports its error.
    async fn finish(&mut self) -> std::io::Result<()> {
        match self.running.take() {
            Some(sync) => sync.await.map_err(std::io::Error::other)?,
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Bytes that differ from one offset to the next, so a misplaced piece shows.
    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }

    fn sha256_of(data: &[u8]) -> Expected {
        use sha2::Digest as _;
        Expected::Sha256(sha2::Sha256::digest(data).into())
    }

    #[tokio::test]
    async fn the_sink_hashes_what_it_wrote_also_across_a_resume() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("a.part");
        std::fs::write(&path, b"").unwrap();
        // More than SYNC_EVERY, so background syncs run; chunks of uneven sizes, some
        // smaller than the write buffer.
        let data = pattern((SYNC_EVERY + (1 << 20)) as usize);
        let digest = sha256_of(&data);
        let cut = 3_000_001;
        let mut running = Running {
            hasher: digest.hasher(),
            len: 0,
        };
        let mut sink = Sink::open(&path, running.take(&digest)).unwrap();
        for piece in data[..cut].chunks(70_001) {
            sink.append(piece).await.unwrap();
        }
        let kept = sink.keep().await.unwrap();
        assert_eq!(kept.len, cut as u64);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), cut as u64);

        let mut sink = Sink::open(&path, kept).unwrap();
        for piece in data[cut..].chunks(417_792) {
            sink.append(piece).await.unwrap();
        }
        let done = sink.finish().await.unwrap();
        assert_eq!(done.len, data.len() as u64);
        assert_eq!(done.hasher.finish(), digest.hex());
        assert!(
            std::fs::read(&path).unwrap() == data,
            "the file holds the bytes"
        );
    }

    #[tokio::test]
    async fn a_sink_dropped_midway_lets_its_hash_thread_end() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("b.part");
        std::fs::write(&path, b"").unwrap();
        let digest = sha256_of(b"");
        let mut sink = Sink::open(
            &path,
            Running {
                hasher: digest.hasher(),
                len: 0,
            },
        )
        .unwrap();
        sink.append(&pattern(100_000)).await.unwrap();
        let written = Arc::clone(&sink.follower.written);
        drop(sink);
        // The runtime's shutdown would wait for a thread that never ends; this waits less.
        let closed = tokio::time::timeout(Duration::from_secs(10), async {
            while Arc::strong_count(&written) > 1 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        assert!(closed.is_ok(), "the hash thread still runs");
    }
}
