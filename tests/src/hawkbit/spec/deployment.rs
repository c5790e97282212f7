//! What a test deploys: distribution sets built from chunks (software modules) holding
//! artifacts (given bytes or generated content, with real, declared or partly omitted
//! hashes, intact or corrupted, on DDI or on "external storage"), and the [`Assignment`]
//! that turns a set into an action (action type, maintenance window, confirmation, weight).

use std::time::SystemTime;

/// A distribution set: what hawkBit assigns to a target. Each chunk is a software module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DistributionSet {
    pub name: String,
    pub version: String,
    pub chunks: Vec<Chunk>,
}

impl DistributionSet {
    pub fn new(name: &str, version: &str) -> Self {
        Self {
            name: name.to_owned(),
            version: version.to_owned(),
            chunks: Vec::new(),
        }
    }

    /// The common case: one `os` chunk named like the set, holding one artifact.
    pub fn single(name: &str, version: &str, artifact: Artifact) -> Self {
        Self::new(name, version).chunk(Chunk::new("os", name, version).artifact(artifact))
    }

    pub fn chunk(mut self, chunk: Chunk) -> Self {
        self.chunks.push(chunk);
        self
    }
}

/// A software module as DDI shows it (`part` is the module type key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// Module type key; `application` and `runtime` are shown as hawkBit's legacy `bApp`
    /// and `jvm`.
    pub part: String,
    pub name: String,
    pub version: String,
    /// Shown as `"encrypted": true` (the member is omitted when false).
    pub encrypted: bool,
    /// Target-visible metadata, in order; `metadata` is omitted when empty.
    pub metadata: Vec<(String, String)>,
    pub artifacts: Vec<Artifact>,
}

impl Chunk {
    pub fn new(part: &str, name: &str, version: &str) -> Self {
        Self {
            part: part.to_owned(),
            name: name.to_owned(),
            version: version.to_owned(),
            encrypted: false,
            metadata: Vec::new(),
            artifacts: Vec::new(),
        }
    }

    pub fn artifact(mut self, artifact: Artifact) -> Self {
        self.artifacts.push(artifact);
        self
    }

    pub fn metadata(mut self, key: &str, value: &str) -> Self {
        self.metadata.push((key.to_owned(), value.to_owned()));
        self
    }

    pub fn encrypted(mut self) -> Self {
        self.encrypted = true;
        self
    }
}

/// Where an artifact's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    Bytes(Vec<u8>),
    /// `size` pseudo-random bytes computed from their offset and `seed`, streamed on demand:
    /// large artifacts (even > 4 GiB) without holding them in memory. Use
    /// [`generated_bytes`](crate::hawkbit::generated_bytes) to get the expected bytes in a
    /// test.
    Generated {
        size: u64,
        seed: u64,
    },
}

/// sha1, md5 and sha256 in lowercase hex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hashes {
    pub sha1: String,
    pub md5: String,
    pub sha256: String,
}

impl Hashes {
    /// The hashes of `data`.
    pub fn of(data: &[u8]) -> Self {
        crate::hawkbit::content::Blob::Bytes(axum::body::Bytes::copy_from_slice(data)).hashes()
    }
}

/// An artifact of a chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    /// Used verbatim, also when it is hostile (`../x`): the device must sanitise it.
    pub filename: String,
    pub content: Content,
    /// Advertise these instead of the content's real hashes (skips hashing large generated
    /// content, or lies on purpose).
    pub hashes: Option<Hashes>,
    /// Leave `sha256` out of `hashes` (artifacts uploaded to old hawkBit servers).
    pub omit_sha256: bool,
    /// Serve the content with one byte flipped (the advertised hashes stay those of the
    /// intact content). Also switchable later with
    /// [`FakeHawkbit::set_corrupted`](crate::hawkbit::FakeHawkbit::set_corrupted).
    pub corrupt: bool,
    /// Link the download to the fake's "external storage" (`/external/…`, like a CDN or a
    /// presigned object-store URL): no DDI auth needed, and a request that carries an
    /// `Authorization` header is refused with 401.
    pub external: bool,
}

impl Artifact {
    pub fn bytes(filename: &str, data: &[u8]) -> Self {
        Self::with_content(filename, Content::Bytes(data.to_vec()))
    }

    /// See [`Content::Generated`]. The hashes are computed when the set is created (a few
    /// seconds per 100 MiB in a debug build); pass [`with_hashes`](Self::with_hashes) to
    /// skip that for huge sizes.
    pub fn generated(filename: &str, size: u64, seed: u64) -> Self {
        Self::with_content(filename, Content::Generated { size, seed })
    }

    fn with_content(filename: &str, content: Content) -> Self {
        Self {
            filename: filename.to_owned(),
            content,
            hashes: None,
            omit_sha256: false,
            corrupt: false,
            external: false,
        }
    }

    pub fn with_hashes(mut self, hashes: Hashes) -> Self {
        self.hashes = Some(hashes);
        self
    }

    pub fn without_sha256(mut self) -> Self {
        self.omit_sha256 = true;
        self
    }

    pub fn corrupted(mut self) -> Self {
        self.corrupt = true;
        self
    }

    pub fn external(mut self) -> Self {
        self.external = true;
        self
    }
}

/// hawkBit's action types; they decide `download`/`update` in deploymentBase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionType {
    /// `download: forced`, `update: forced`.
    Forced,
    /// `download: attempt`, `update: attempt`.
    Soft,
    /// `download: forced`, `update: skip`; `downloaded` feedback closes the action.
    DownloadOnly,
    /// Soft until `at`, forced from then on.
    TimeForced { at: SystemTime },
}

/// Whether the action's maintenance window is open now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaintenanceWindow {
    Available,
    Unavailable,
}

impl MaintenanceWindow {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Available => "available",
            Self::Unavailable => "unavailable",
        }
    }
}

/// How a distribution set is assigned to a target (what creates an action).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Assignment {
    pub action_type: ActionType,
    /// `Some` = the action has a maintenance schedule; `maintenanceWindow` is then shown.
    pub maintenance_window: Option<MaintenanceWindow>,
    /// Starts waiting for confirmation (confirmationBase) unless the target has
    /// auto-confirm active.
    pub confirmation_required: bool,
    /// hawkBit's action weight; the poll shows the active action with the highest weight
    /// (absent = 1000), then the oldest.
    pub weight: Option<i32>,
}

impl Default for Assignment {
    fn default() -> Self {
        Self::forced()
    }
}

impl Assignment {
    pub fn of(action_type: ActionType) -> Self {
        Self {
            action_type,
            maintenance_window: None,
            confirmation_required: false,
            weight: None,
        }
    }

    pub fn forced() -> Self {
        Self::of(ActionType::Forced)
    }

    pub fn soft() -> Self {
        Self::of(ActionType::Soft)
    }

    pub fn download_only() -> Self {
        Self::of(ActionType::DownloadOnly)
    }

    pub fn window(mut self, window: MaintenanceWindow) -> Self {
        self.maintenance_window = Some(window);
        self
    }

    pub fn confirmation_required(mut self) -> Self {
        self.confirmation_required = true;
        self
    }

    pub fn weight(mut self, weight: i32) -> Self {
        self.weight = Some(weight);
        self
    }
}
