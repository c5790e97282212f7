//! Slot image contents and bundle descriptions: [`Image`], a deterministic seeded byte
//! stream that is generated and compared chunk by chunk (so a large image never sits in
//! memory), [`BundleSpec`], what to build, and [`Bundle`], a built bundle file.

use std::io::{Read, Write};
use std::path::PathBuf;

use super::COMPATIBLE;

/// Chunk size for streaming image data.
const CHUNK: usize = 1 << 20;

/// The contents of a slot image, defined by a seed and a length: generated on the fly, never
/// held in memory as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Image {
    pub seed: u64,
    pub size: u64,
}

impl Image {
    /// Streams the image into `out`.
    pub fn write_to(&self, out: &mut impl Write) -> std::io::Result<()> {
        let mut buf = vec![0u8; CHUNK];
        let mut offset = 0u64;
        while offset < self.size {
            let n = chunk_len(self.size - offset);
            self.fill(offset, &mut buf[..n]);
            out.write_all(&buf[..n])?;
            offset += n as u64;
        }
        Ok(())
    }

    /// True if `input` starts with exactly this image (anything may follow it).
    pub fn is_prefix_of(&self, input: &mut impl Read) -> std::io::Result<bool> {
        let mut want = vec![0u8; CHUNK];
        let mut got = vec![0u8; CHUNK];
        let mut offset = 0u64;
        while offset < self.size {
            let n = chunk_len(self.size - offset);
            self.fill(offset, &mut want[..n]);
            match input.read_exact(&mut got[..n]) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(false),
                Err(e) => return Err(e),
            }
            if want[..n] != got[..n] {
                return Ok(false);
            }
            offset += n as u64;
        }
        Ok(true)
    }

    /// Fills `buf` with the bytes at `offset` (a multiple of 8). Each 8-byte word is a
    /// SplitMix64 output of (seed, word index), so any position can be generated directly.
    fn fill(&self, offset: u64, buf: &mut [u8]) {
        debug_assert_eq!(offset % 8, 0);
        let first = offset / 8;
        for (i, word) in buf.chunks_mut(8).enumerate() {
            let bytes =
                splitmix64(self.seed ^ (first + i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
                    .to_le_bytes();
            word.copy_from_slice(&bytes[..word.len()]);
        }
    }
}

fn chunk_len(remaining: u64) -> usize {
    usize::try_from(remaining.min(CHUNK as u64)).expect("chunk fits usize")
}

pub(super) fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// What [`RaucSystem::bundle`](super::RaucSystem::bundle) should build.
#[derive(Debug, Clone)]
pub struct BundleSpec {
    pub(super) image_size: u64,
    pub(super) version: String,
    pub(super) compatible: String,
    pub(super) foreign: bool,
}

impl BundleSpec {
    /// A good bundle: one `rootfs` image of `image_size` bytes, version "1.0", this device's
    /// compatible, signed by the CA in the service's keyring.
    pub fn new(image_size: u64) -> Self {
        Self {
            image_size,
            version: "1.0".into(),
            compatible: COMPATIBLE.into(),
            foreign: false,
        }
    }

    /// The manifest's `version`.
    pub fn version(mut self, version: &str) -> Self {
        self.version = version.into();
        self
    }

    /// The manifest's `compatible` (anything but [`COMPATIBLE`] is refused by the service).
    pub fn compatible(mut self, compatible: &str) -> Self {
        self.compatible = compatible.into();
        self
    }

    /// Signed by a CA the service does not trust: a valid signature, the wrong signer.
    pub fn signed_by_foreign_ca(mut self) -> Self {
        self.foreign = true;
        self
    }
}

/// A bundle file built by [`RaucSystem::bundle`](super::RaucSystem::bundle).
#[derive(Debug, Clone)]
pub struct Bundle {
    /// Absolute path of the `.raucb` file.
    pub path: PathBuf,
    /// The `rootfs` image inside it.
    pub image: Image,
    pub version: String,
    pub compatible: String,
}

impl Bundle {
    /// The path as a string, as sent to `InstallBundle`.
    pub fn path_str(&self) -> &str {
        self.path.to_str().expect("bundle path is UTF-8")
    }

    /// Size of the bundle file in bytes.
    pub fn file_size(&self) -> u64 {
        std::fs::metadata(&self.path).expect("bundle file").len()
    }
}
