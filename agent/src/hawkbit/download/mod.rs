//! Downloading an artifact into the spool directory, resumable, verified, never half-visible.
//!
//! The bytes go to `<name>.part`; an interrupted transfer continues from where it stopped
//! with `Range: bytes=N-` and `If-Range: <etag>` (a changed artifact then comes whole instead
//! of being spliced). The ETag is kept beside the part file, so a resume survives an agent
//! restart. Only when the size and the hash match is the part file renamed to its final name,
//! so RAUC is never handed a bundle that is incomplete or corrupt. Memory use does not grow
//! with the artifact: bytes are written as they arrive and hashed right behind the writer
//! (see `Sink`).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{CONTENT_RANGE, ETAG, HeaderMap, IF_RANGE, RANGE};

mod sink;

use self::sink::{Running, Sink};
use super::digest::{Expected, Hasher};
use crate::atomic::sync_dir;
use crate::backoff::Backoff;

/// Extra room required beyond the artifact itself.
pub const SPACE_MARGIN: u64 = 4 << 20;
pub(super) const READ_BUF: usize = 64 * 1024;
/// How often a transfer reports its progress at most. Chunks arrive hundreds of times a
/// second on a fast link, and what the callback feeds (the status, which the daemon saves
/// to its state file with an fsync on every change) is for people to read.
const PROGRESS_EVERY: Duration = Duration::from_millis(200);

/// Why a download did not produce a verified file.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error("artifact file name {0:?} is not usable")]
    BadName(String),
    #[error(
        "not enough space in {dir}: {need} bytes needed, {available} available; free space or set hawkbit.spool_dir"
    )]
    NoSpace {
        dir: PathBuf,
        need: u64,
        available: u64,
    },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("download of {url} failed after {attempts} attempts: {last}")]
    GaveUp {
        url: String,
        attempts: u32,
        last: String,
    },
    #[error("the server refused the download of {url} (HTTP {status})")]
    Refused { url: String, status: u16 },
    #[error("the artifact is {actual} bytes, the server announced {expected}")]
    SizeMismatch { expected: u64, actual: u64 },
    #[error("the artifact's {algorithm} is {actual}, the server announced {expected}")]
    HashMismatch {
        algorithm: &'static str,
        expected: String,
        actual: String,
    },
    #[error("hashing the download failed: {0}")]
    Hashing(String),
}

/// Retry policy for interrupted transfers.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    pub attempts: u32,
    pub backoff: Backoff,
}

impl Default for Retry {
    fn default() -> Self {
        Self {
            attempts: 10,
            backoff: Backoff {
                initial: Duration::from_secs(1),
                max: Duration::from_secs(60),
                give_up_after: Duration::MAX,
            },
        }
    }
}

/// What is to be fetched.
#[derive(Debug, Clone)]
pub struct Wanted<'a> {
    pub url: &'a str,
    /// Sanitized with [`sanitize`].
    pub name: &'a str,
    pub size: u64,
    pub digest: &'a Expected,
}

/// The spool directory: the only place downloads are written.
#[derive(Debug, Clone)]
pub struct Spool {
    dir: PathBuf,
}

impl Spool {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> DownloadError {
        let path = path.to_owned();
        move |source| DownloadError::Io { what, path, source }
    }

    /// Creates the directory (0700) if needed.
    pub fn prepare(&self) -> Result<(), DownloadError> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(Self::io("cannot create the spool directory", &self.dir))
    }

    /// Removes everything in the spool (after an action, whatever its outcome).
    pub fn clean(&self) -> Result<(), DownloadError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Self::io("cannot list the spool", &self.dir)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(Self::io("cannot list the spool", &self.dir))?;
            let path = entry.path();
            let removed = if entry.file_type().is_ok_and(|t| t.is_dir()) {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            removed.map_err(Self::io("cannot remove", &path))?;
        }
        Ok(())
    }

    pub fn final_path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn part_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.part"))
    }

    fn etag_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.etag"))
    }

    /// Bytes available to unprivileged writers in the spool's file system.
    pub fn available(&self) -> Result<u64, DownloadError> {
        let st = rustix::fs::statvfs(&self.dir).map_err(|e| {
            Self::io("cannot read the free space of", &self.dir)(std::io::Error::from(e))
        })?;
        Ok(st.f_bavail.saturating_mul(st.f_frsize))
    }
}

/// A file name safe to create in the spool: letters, digits, `.`, `_`, `-`; anything else
/// becomes `_`; no leading dot; at most 128 characters.
pub fn sanitize(raw: &str) -> Result<String, DownloadError> {
    let cleaned: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let cleaned = cleaned.trim_start_matches('.');
    let cleaned: String = cleaned.chars().take(128).collect();
    if cleaned.is_empty() || cleaned.chars().all(|c| c == '_' || c == '.') {
        return Err(DownloadError::BadName(raw.to_owned()));
    }
    Ok(cleaned)
}

/// Fetches `wanted` into the spool and returns the verified file. `headers` carry the
/// authentication; `progress(done, total)` is called as bytes arrive (at most every
/// `PROGRESS_EVERY`) and when they are complete.
pub async fn fetch(
    http: &reqwest::Client,
    headers: &HeaderMap,
    spool: &Spool,
    wanted: &Wanted<'_>,
    retry: Retry,
    progress: &mut (dyn FnMut(u64, u64) + Send),
) -> Result<PathBuf, DownloadError> {
    let final_path = spool.final_path(wanted.name);
    if final_path.exists() {
        if verify_file(&final_path, wanted).is_ok() {
            progress(wanted.size, wanted.size);
            return Ok(final_path);
        }
        std::fs::remove_file(&final_path).map_err(Spool::io("cannot remove", &final_path))?;
    }
    spool.prepare()?;
    let part = spool.part_path(wanted.name);
    let etag_file = spool.etag_path(wanted.name);

    // The hash runs over the bytes as they are written; after a restart the part file's
    // prefix is hashed once before the transfer continues.
    let mut hash = Running {
        hasher: wanted.digest.hasher(),
        len: 0,
    };
    let mut attempt = 0;
    loop {
        let have = part_len(&part)?.min(wanted.size);
        let available = spool.available()?;
        let need = wanted
            .size
            .saturating_sub(have)
            .saturating_add(SPACE_MARGIN);
        if available < need {
            return Err(DownloadError::NoSpace {
                dir: spool.dir().to_owned(),
                need,
                available,
            });
        }
        let mut target = Target {
            path: &part,
            etag: &etag_file,
            hash: &mut hash,
        };
        match transfer(http, headers, wanted, &mut target, have, progress).await {
            Ok(()) => break,
            Err(Step::Fatal(e)) => return Err(e),
            Err(Step::Retry(why)) => {
                attempt += 1;
                if attempt >= retry.attempts {
                    return Err(DownloadError::GaveUp {
                        url: wanted.url.to_owned(),
                        attempts: attempt,
                        last: why,
                    });
                }
                let delay = retry.backoff.delay(attempt - 1, None);
                tracing::warn!(url = wanted.url, error = %why, attempt, retry_in_s = delay.as_secs(), "download interrupted; resuming");
                tokio::time::sleep(delay).await;
            }
        }
    }

    let actual = hash.hasher.finish();
    if actual != wanted.digest.hex() {
        let _ = std::fs::remove_file(&part);
        let _ = std::fs::remove_file(&etag_file);
        return Err(DownloadError::HashMismatch {
            algorithm: wanted.digest.algorithm(),
            expected: wanted.digest.hex(),
            actual,
        });
    }
    std::fs::rename(&part, &final_path).map_err(Spool::io("cannot rename", &part))?;
    let _ = std::fs::remove_file(&etag_file);
    sync_dir(spool.dir()).map_err(|e| DownloadError::Io {
        what: "cannot sync",
        path: spool.dir().to_owned(),
        source: std::io::Error::other(e.to_string()),
    })?;
    Ok(final_path)
}

/// Where an attempt writes: the part file, its ETag file and the running hash.
struct Target<'a> {
    path: &'a Path,
    etag: &'a Path,
    hash: &'a mut Running,
}

/// One attempt's outcome when it did not complete.
enum Step {
    Retry(String),
    Fatal(DownloadError),
}

fn part_len(part: &Path) -> Result<u64, DownloadError> {
    match std::fs::metadata(part) {
        Ok(m) => Ok(m.len()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(Spool::io("cannot read", part)(e)),
    }
}

/// One HTTP request, continuing the part file from `have` bytes when possible.
async fn transfer(
    http: &reqwest::Client,
    headers: &HeaderMap,
    wanted: &Wanted<'_>,
    target: &mut Target<'_>,
    have: u64,
    progress: &mut (dyn FnMut(u64, u64) + Send),
) -> Result<(), Step> {
    let fatal = Step::Fatal;
    let (part, etag_file) = (target.path, target.etag);
    let Some((resp, start)) = request(http, headers, wanted, target, have).await? else {
        return Ok(());
    };
    let hash = &mut *target.hash;
    if let Some(tag) = resp.headers().get(ETAG).and_then(|v| v.to_str().ok()) {
        let _ = std::fs::write(etag_file, tag);
    }
    truncate(part, start).map_err(fatal)?;
    hash.catch_up(part, start, wanted.digest).map_err(fatal)?;
    let mut sink = Sink::open(part, hash.take(wanted.digest)).map_err(fatal)?;
    progress(sink.len, wanted.size);
    let received = receive(resp, &mut sink, wanted.size, progress).await;
    match received {
        // The download ends here; the hash is left covering nothing, which stays true (a
        // later fetch hashes the part file anew).
        Err(Step::Fatal(e)) => Err(Step::Fatal(e)),
        Err(Step::Retry(why)) => {
            // What was received is kept for the resume, with the hash of it.
            *hash = sink.keep().await.map_err(fatal)?;
            Err(Step::Retry(why))
        }
        Ok(()) => {
            *hash = sink.finish().await.map_err(fatal)?;
            if hash.len < wanted.size {
                return Err(Step::Retry(format!(
                    "the transfer ended at {} of {} bytes",
                    hash.len, wanted.size
                )));
            }
            Ok(())
        }
    }
}

/// Sends the request and judges the answer: the response and the offset its body starts at,
/// or `None` when the part file already holds the whole artifact.
async fn request(
    http: &reqwest::Client,
    headers: &HeaderMap,
    wanted: &Wanted<'_>,
    target: &mut Target<'_>,
    have: u64,
) -> Result<Option<(reqwest::Response, u64)>, Step> {
    let fatal = Step::Fatal;
    let part = target.path;
    let mut req = http.get(wanted.url).headers(headers.clone());
    let etag = std::fs::read_to_string(target.etag).ok();
    if have > 0 {
        req = req.header(RANGE, format!("bytes={have}-"));
        if let Some(tag) = etag.as_deref() {
            req = req.header(IF_RANGE, tag.trim());
        }
    }
    let resp = req
        .send()
        .await
        .map_err(|e| Step::Retry(crate::bridge::chain(&e)))?;
    let start = match resp.status() {
        StatusCode::PARTIAL_CONTENT => {
            let from = content_range_start(resp.headers());
            if from != Some(have) {
                // Not the piece asked for: start over rather than splice.
                truncate(part, 0).map_err(fatal)?;
                return Err(Step::Retry(format!(
                    "the server answered range {from:?} for bytes={have}-"
                )));
            }
            have
        }
        StatusCode::OK => 0,
        StatusCode::RANGE_NOT_SATISFIABLE if have >= wanted.size => {
            target
                .hash
                .catch_up(part, have, wanted.digest)
                .map_err(fatal)?;
            return Ok(None);
        }
        StatusCode::RANGE_NOT_SATISFIABLE => {
            truncate(part, 0).map_err(fatal)?;
            return Err(Step::Retry("the server refused the resume range".into()));
        }
        s if s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS => {
            return Err(Step::Retry(format!("HTTP {}", s.as_u16())));
        }
        s => {
            return Err(fatal(DownloadError::Refused {
                url: wanted.url.to_owned(),
                status: s.as_u16(),
            }));
        }
    };
    Ok(Some((resp, start)))
}

/// Streams the response body into `sink` until it ends (`Ok`, possibly short of `size`) or
/// fails. Progress is reported every [`PROGRESS_EVERY`] while it changes, whether or not
/// bytes keep coming (a stalled transfer shows how far it got), and at the end.
async fn receive(
    mut resp: reqwest::Response,
    sink: &mut Sink<'_>,
    size: u64,
    progress: &mut (dyn FnMut(u64, u64) + Send),
) -> Result<(), Step> {
    let mut tick = tokio::time::interval(PROGRESS_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.reset();
    let mut reported = sink.len;
    loop {
        let chunk = tokio::select! {
            biased;
            // Cancel-safe: a frame is taken from the body only when the call completes.
            chunk = resp.chunk() => chunk.map_err(|e| Step::Retry(crate::bridge::chain(&e)))?,
            _ = tick.tick() => {
                if sink.len != reported {
                    reported = sink.len;
                    progress(reported, size);
                }
                continue;
            }
        };
        let Some(chunk) = chunk else {
            return Ok(());
        };
        let len = sink.len.saturating_add(chunk.len() as u64);
        if len > size {
            return Err(Step::Fatal(DownloadError::SizeMismatch {
                expected: size,
                actual: len,
            }));
        }
        sink.append(&chunk).await.map_err(Step::Fatal)?;
        if sink.len == size {
            reported = sink.len;
            progress(reported, size);
        }
    }
}

/// `Content-Range: bytes N-M/T` → N.
fn content_range_start(headers: &HeaderMap) -> Option<u64> {
    let v = headers.get(CONTENT_RANGE)?.to_str().ok()?;
    let range = v.trim().strip_prefix("bytes ")?;
    range.split(['-', '/']).next()?.trim().parse().ok()
}

fn truncate(part: &Path, len: u64) -> Result<(), DownloadError> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(false)
        .open(part)
        .map_err(Spool::io("cannot open", part))?;
    file.set_len(len)
        .map_err(Spool::io("cannot truncate", part))
}

/// Size and hash of a complete file.
fn verify_file(path: &Path, wanted: &Wanted<'_>) -> Result<(), DownloadError> {
    let mut file = std::fs::File::open(path).map_err(Spool::io("cannot open", path))?;
    let len = file
        .metadata()
        .map_err(Spool::io("cannot read", path))?
        .len();
    if len != wanted.size {
        return Err(DownloadError::SizeMismatch {
            expected: wanted.size,
            actual: len,
        });
    }
    let mut hasher: Hasher = wanted.digest.hasher();
    let mut buf = vec![0u8; READ_BUF];
    loop {
        let n = file
            .read(&mut buf)
            .map_err(Spool::io("cannot read", path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let actual = hasher.finish();
    if actual != wanted.digest.hex() {
        return Err(DownloadError::HashMismatch {
            algorithm: wanted.digest.algorithm(),
            expected: wanted.digest.hex(),
            actual,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_made_safe() {
        assert_eq!(sanitize("rootfs.raucb").unwrap(), "rootfs.raucb");
        assert_eq!(sanitize("../../etc/passwd").unwrap(), "_.._etc_passwd");
        assert_eq!(sanitize(".hidden").unwrap(), "hidden");
        assert_eq!(sanitize("a b\0c/d").unwrap(), "a_b_c_d");
        assert_eq!(sanitize(&"x".repeat(300)).unwrap().len(), 128);
        for bad in ["", "..", "/", "...", "\0"] {
            assert!(sanitize(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn content_range_is_read() {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_RANGE, "bytes 100-199/200".parse().unwrap());
        assert_eq!(content_range_start(&h), Some(100));
        h.insert(CONTENT_RANGE, "bytes */200".parse().unwrap());
        assert_eq!(content_range_start(&h), None);
    }

    #[test]
    fn spool_clean_removes_everything_and_tolerates_absence() {
        let tmp = tempfile::tempdir().unwrap();
        let spool = Spool::new(tmp.path().join("spool"));
        spool.clean().unwrap();
        spool.prepare().unwrap();
        std::fs::write(spool.final_path("a.raucb"), b"x").unwrap();
        std::fs::write(spool.part_path("b.raucb"), b"y").unwrap();
        spool.clean().unwrap();
        assert_eq!(std::fs::read_dir(spool.dir()).unwrap().count(), 0);
        assert!(spool.available().unwrap() > 0);
    }
}
