//! The hawkBit parts of the files every build of the agent reads, whether or not it was
//! built with the `ota` feature: the `[hawkbit]` table of the configuration as written
//! (flags and environment merged over it) and what the bridge announced at enrollment (kept
//! in the enrolled flag). `hawkbit::settings` resolves them into settings; a build without
//! `ota` only warns that they are ignored.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

/// The `[hawkbit]` table as written. Unknown keys are kept to be warned about (an older agent
/// after a rollback must still start with a newer image's file).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct HawkbitFile {
    pub url: Option<String>,
    pub tenant: Option<String>,
    pub controller_id: Option<String>,
    pub auth: Option<String>,
    pub token_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
    pub spool_dir: Option<PathBuf>,
    pub after_install: Option<String>,
    pub reboot_via: Option<String>,
    pub stall_timeout: Option<String>,
    #[serde(flatten)]
    pub unknown: BTreeMap<String, toml::Value>,
}

impl HawkbitFile {
    /// `self` (flags / environment) over `lower` (the file), key by key.
    pub fn over(self, lower: HawkbitFile) -> HawkbitFile {
        HawkbitFile {
            url: self.url.or(lower.url),
            tenant: self.tenant.or(lower.tenant),
            controller_id: self.controller_id.or(lower.controller_id),
            auth: self.auth.or(lower.auth),
            token_file: self.token_file.or(lower.token_file),
            ca_file: self.ca_file.or(lower.ca_file),
            data_dir: self.data_dir.or(lower.data_dir),
            spool_dir: self.spool_dir.or(lower.spool_dir),
            after_install: self.after_install.or(lower.after_install),
            reboot_via: self.reboot_via.or(lower.reboot_via),
            stall_timeout: self.stall_timeout.or(lower.stall_timeout),
            unknown: lower.unknown,
        }
    }

    /// The keys that are set (from the file, the environment or a flag), named as in the
    /// file: what a build without the `ota` feature reports as ignored.
    pub fn keys_set(&self) -> Vec<&'static str> {
        let set = [
            ("hawkbit.url", self.url.is_some()),
            ("hawkbit.tenant", self.tenant.is_some()),
            ("hawkbit.controller_id", self.controller_id.is_some()),
            ("hawkbit.auth", self.auth.is_some()),
            ("hawkbit.token_file", self.token_file.is_some()),
            ("hawkbit.ca_file", self.ca_file.is_some()),
            ("hawkbit.data_dir", self.data_dir.is_some()),
            ("hawkbit.spool_dir", self.spool_dir.is_some()),
            ("hawkbit.after_install", self.after_install.is_some()),
            ("hawkbit.reboot_via", self.reboot_via.is_some()),
            ("hawkbit.stall_timeout", self.stall_timeout.is_some()),
        ];
        set.into_iter()
            .filter(|(_, s)| *s)
            .map(|(k, _)| k)
            .collect()
    }
}

/// What the bridge announced about hawkBit at enrollment (kept in the enrolled flag; the
/// token itself is in `/certs/hawkbit.token`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct Announced {
    /// DDI base URL.
    pub url: String,
    pub tenant: String,
    pub controller_id: String,
}
