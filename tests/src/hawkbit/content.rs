//! Artifact bytes and how they go over the wire: stored or generated content, its hashes,
//! `Range` parsing, and a response body that streams (never holding a large artifact in
//! memory) and can misbehave on purpose: cut the connection after K bytes, stall, throttle,
//! or serve a flipped byte.

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use axum::body::Bytes;
use http_body::{Frame, SizeHint};
use sha2::Digest as _;

use super::spec::{Content, Hashes};

/// Bytes per generated or streamed piece.
const PIECE: u64 = 64 * 1024;

/// The content of an artifact: bytes in memory, or bytes computed from their offset.
#[derive(Clone)]
pub(crate) enum Blob {
    Bytes(Bytes),
    Generated { size: u64, seed: u64 },
}

impl fmt::Debug for Blob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bytes(b) => write!(f, "Blob::Bytes({} bytes)", b.len()),
            Self::Generated { size, seed } => {
                write!(f, "Blob::Generated({size} bytes, seed {seed})")
            }
        }
    }
}

impl From<&Content> for Blob {
    fn from(c: &Content) -> Self {
        match c {
            Content::Bytes(b) => Self::Bytes(Bytes::from(b.clone())),
            Content::Generated { size, seed } => Self::Generated {
                size: *size,
                seed: *seed,
            },
        }
    }
}

/// One 64-bit word of generated content (a splitmix64 step): cheap, and random enough that
/// a spliced or shifted download never hashes right by accident.
fn word(seed: u64, index: u64) -> u64 {
    let mut z = seed
        .wrapping_add(index.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add(0x6A09_E667_F3BC_C909);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Bytes `[pos, pos + len)` of generated content with `seed` (the caller keeps it in range).
pub(crate) fn generated(seed: u64, pos: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut i = pos;
    let end = pos + len as u64;
    while i < end {
        let w = word(seed, i / 8).to_le_bytes();
        let from = (i % 8) as usize;
        let take = (8 - from).min((end - i) as usize);
        out.extend_from_slice(&w[from..from + take]);
        i += take as u64;
    }
    out
}

impl Blob {
    pub(crate) fn len(&self) -> u64 {
        match self {
            Self::Bytes(b) => b.len() as u64,
            Self::Generated { size, .. } => *size,
        }
    }

    /// Bytes `[pos, pos + len)`, clamped to the content.
    pub(crate) fn read(&self, pos: u64, len: u64) -> Bytes {
        let total = self.len();
        let pos = pos.min(total);
        let end = pos.saturating_add(len).min(total);
        match self {
            Self::Bytes(b) => b.slice(pos as usize..end as usize),
            Self::Generated { seed, .. } => {
                Bytes::from(generated(*seed, pos, (end - pos) as usize))
            }
        }
    }

    /// sha1, md5 and sha256 of the whole content, lowercase hex, read piece by piece.
    pub(crate) fn hashes(&self) -> Hashes {
        let mut sha1 = sha1::Sha1::default();
        let mut md5 = md5::Md5::default();
        let mut sha256 = sha2::Sha256::new();
        let mut pos = 0;
        let total = self.len();
        while pos < total {
            let piece = self.read(pos, 16 * PIECE);
            sha1::Digest::update(&mut sha1, &piece);
            md5::Digest::update(&mut md5, &piece);
            sha256.update(&piece);
            pos += piece.len() as u64;
        }
        Hashes {
            sha1: hex(&sha1::Digest::finalize(sha1)),
            md5: hex(&md5::Digest::finalize(md5)),
            sha256: hex(&sha256.finalize()),
        }
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// md5 of a response body, for the Spring-style shallow ETag of JSON answers.
pub(crate) fn md5_hex(bytes: &[u8]) -> String {
    let mut md5 = md5::Md5::default();
    md5::Digest::update(&mut md5, bytes);
    hex(&md5::Digest::finalize(md5))
}

/// An artifact as the fake stores it.
#[derive(Debug)]
pub(crate) struct StoredArtifact {
    pub filename: String,
    pub module: u64,
    pub blob: Blob,
    /// What the deployment advertises (normally the content's own hashes).
    pub hashes: Hashes,
    pub omit_sha256: bool,
    /// Served with one byte flipped, so the content no longer matches `hashes`.
    pub corrupt: AtomicBool,
    /// Linked to the fake's "external storage" (no DDI auth) instead of the DDI path.
    pub external: bool,
    pub created: SystemTime,
}

impl StoredArtifact {
    pub(crate) fn size(&self) -> u64 {
        self.blob.len()
    }

    /// The strong ETag hawkBit sends for artifacts: the quoted sha1.
    pub(crate) fn etag(&self) -> String {
        format!("\"{}\"", self.hashes.sha1)
    }

    pub(crate) fn is_corrupt(&self) -> bool {
        self.corrupt.load(Ordering::Relaxed)
    }

    /// The offset whose byte is flipped while the artifact is corrupt.
    pub(crate) fn corrupt_offset(&self) -> u64 {
        self.size() / 2
    }
}

/// What a `Range` header asks of a resource of `len` bytes.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RangeAsk {
    /// Inclusive byte ranges, all satisfiable.
    Ranges(Vec<(u64, u64)>),
    /// Malformed or not satisfiable: 416.
    Unsatisfiable,
}

/// Parses `bytes=a-b[,c-d…]` (open ends `a-` and suffixes `-n` included) against `len`.
pub(crate) fn parse_range(header: &str, len: u64) -> RangeAsk {
    let Some(specs) = header.trim().strip_prefix("bytes=") else {
        return RangeAsk::Unsatisfiable;
    };
    let mut out = Vec::new();
    for spec in specs.split(',') {
        let spec = spec.trim();
        let Some((a, b)) = spec.split_once('-') else {
            return RangeAsk::Unsatisfiable;
        };
        let num = |s: &str| -> Option<u64> {
            (!s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()))
                .then(|| s.parse().ok())
                .flatten()
        };
        let range = match (a.is_empty(), b.is_empty()) {
            (true, true) => None,
            // Suffix: the last n bytes.
            (true, false) => num(b)
                .filter(|&n| n > 0 && len > 0)
                .map(|n| (len.saturating_sub(n), len - 1)),
            (false, true) => num(a).filter(|&s| s < len).map(|s| (s, len - 1)),
            (false, false) => match (num(a), num(b)) {
                (Some(s), Some(e)) if s <= e && s < len => Some((s, e.min(len - 1))),
                _ => None,
            },
        };
        match range {
            Some(r) => out.push(r),
            None => return RangeAsk::Unsatisfiable,
        }
    }
    if out.is_empty() {
        RangeAsk::Unsatisfiable
    } else {
        RangeAsk::Ranges(out)
    }
}

/// A piece of a response body.
#[derive(Debug)]
pub(crate) enum Part {
    Raw(Bytes),
    /// Artifact bytes `[pos, end)`.
    Content {
        artifact: std::sync::Arc<StoredArtifact>,
        pos: u64,
        end: u64,
    },
}

impl Part {
    fn len(&self) -> u64 {
        match self {
            Self::Raw(b) => b.len() as u64,
            Self::Content { pos, end, .. } => end - pos,
        }
    }
}

/// How a single response body misbehaves.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Misbehaviour {
    /// Close the connection once this many body bytes went out.
    pub drop_after: Option<u64>,
    /// Send nothing for this long once this many body bytes went out.
    pub stall_after: Option<(u64, Duration)>,
    /// At most this many body bytes per second.
    pub rate: Option<u64>,
}

#[derive(Debug, PartialEq, Eq)]
enum Wait {
    Stall,
    Rate,
    Drop,
}

/// A streamed response body over [`Part`]s.
pub(crate) struct DownloadBody {
    parts: VecDeque<Part>,
    remaining: u64,
    sent: u64,
    how: Misbehaviour,
    started: Instant,
    timer: Option<(Pin<Box<tokio::time::Sleep>>, Wait)>,
}

impl fmt::Debug for DownloadBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DownloadBody")
            .field("remaining", &self.remaining)
            .field("sent", &self.sent)
            .field("how", &self.how)
            .finish_non_exhaustive()
    }
}

impl DownloadBody {
    pub(crate) fn new(parts: Vec<Part>, how: Misbehaviour) -> Self {
        let remaining = parts.iter().map(Part::len).sum();
        Self {
            parts: parts.into(),
            remaining,
            sent: 0,
            how,
            started: Instant::now(),
            timer: None,
        }
    }

    pub(crate) fn len(&self) -> u64 {
        self.remaining
    }

    fn wait(&mut self, d: Duration, why: Wait) {
        self.timer = Some((Box::pin(tokio::time::sleep(d)), why));
    }

    /// The next piece, at most `max` bytes.
    fn next_piece(&mut self, max: u64) -> Option<Bytes> {
        loop {
            let part = self.parts.front_mut()?;
            if part.len() == 0 {
                self.parts.pop_front();
                continue;
            }
            let piece = match part {
                Part::Raw(b) => {
                    let n = (b.len() as u64).min(max) as usize;
                    b.split_to(n)
                }
                Part::Content { artifact, pos, end } => {
                    let n = (*end - *pos).min(max);
                    let mut piece = artifact.blob.read(*pos, n);
                    let flip = artifact.corrupt_offset();
                    if artifact.is_corrupt() && (*pos..*pos + n).contains(&flip) {
                        let mut v = piece.to_vec();
                        v[(flip - *pos) as usize] ^= 0xFF;
                        piece = Bytes::from(v);
                    }
                    *pos += n;
                    piece
                }
            };
            return Some(piece);
        }
    }
}

impl http_body::Body for DownloadBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        loop {
            if let Some((timer, why)) = this.timer.as_mut() {
                if timer.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                let dropping = *why == Wait::Drop;
                this.timer = None;
                if dropping {
                    return Poll::Ready(Some(Err(std::io::Error::new(
                        std::io::ErrorKind::ConnectionAborted,
                        "fake hawkBit: injected connection drop",
                    ))));
                }
            }
            if this.remaining == 0 {
                return Poll::Ready(None);
            }
            if let Some((after, pause)) = this.how.stall_after
                && this.sent >= after
            {
                this.how.stall_after = None;
                this.wait(pause, Wait::Stall);
                continue;
            }
            if let Some(after) = this.how.drop_after
                && this.sent >= after
            {
                this.how.drop_after = None;
                // Give the connection a moment to flush what was sent, then fail the body:
                // hyper then closes the connection short of Content-Length.
                this.wait(Duration::from_millis(30), Wait::Drop);
                continue;
            }
            let mut max = PIECE;
            if let Some(rate) = this.how.rate.filter(|r| *r > 0) {
                // Pieces of about 1/20 s, and no piece before its time.
                max = max.min((rate / 20).max(1));
                let due = Duration::from_secs_f64(this.sent as f64 / rate as f64);
                let elapsed = this.started.elapsed();
                if due > elapsed {
                    this.wait(due - elapsed, Wait::Rate);
                    continue;
                }
            }
            if let Some(after) = this.how.drop_after {
                max = max.min(after - this.sent);
            }
            if let Some((after, _)) = this.how.stall_after {
                max = max.min(after - this.sent);
            }
            let Some(piece) = this.next_piece(max) else {
                this.remaining = 0;
                return Poll::Ready(None);
            };
            this.sent += piece.len() as u64;
            this.remaining -= piece.len() as u64;
            return Poll::Ready(Some(Ok(Frame::data(piece))));
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0 && self.timer.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

/// An HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`).
pub(crate) fn http_date(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {day:02} {} {year} {:02}:{:02}:{:02} GMT",
        WEEKDAYS[(days % 7) as usize],
        MONTHS[(month - 1) as usize],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        use RangeAsk::*;
        assert_eq!(parse_range("bytes=0-9", 100), Ranges(vec![(0, 9)]));
        assert_eq!(parse_range("bytes=90-", 100), Ranges(vec![(90, 99)]));
        assert_eq!(parse_range("bytes=-10", 100), Ranges(vec![(90, 99)]));
        assert_eq!(parse_range("bytes=-200", 100), Ranges(vec![(0, 99)]));
        assert_eq!(parse_range("bytes=50-500", 100), Ranges(vec![(50, 99)]));
        assert_eq!(
            parse_range("bytes=0-0, 5-6", 100),
            Ranges(vec![(0, 0), (5, 6)])
        );
        assert_eq!(parse_range("bytes=100-", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=5-1", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 100), Unsatisfiable);
        assert_eq!(parse_range("items=0-1", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=0-", 0), Unsatisfiable);
    }

    #[test]
    fn generated_content_is_offset_addressable() {
        let whole = generated(7, 0, 100);
        assert_eq!(generated(7, 13, 50), whole[13..63].to_vec());
        let blob = Blob::Generated { size: 100, seed: 7 };
        assert_eq!(blob.read(90, 50).to_vec(), whole[90..].to_vec());
    }

    #[test]
    fn dates() {
        assert_eq!(
            http_date(SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777)),
            "Sun, 06 Nov 1994 08:49:37 GMT"
        );
    }
}
