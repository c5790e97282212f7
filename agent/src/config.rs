//! Agent configuration: `/etc/nexa/agent.toml`, overridden by `NEXA_*` environment variables,
//! overridden by flags.
//!
//! A device needs only two facts to enroll: the bridge URL and the SHA-256 fingerprint of the
//! bridge's root CA. Unknown keys in the file are warned about, not rejected, so an older
//! agent (after an A/B rollback) still starts with a newer image's configuration.
//!
//! A device nobody registered beforehand also needs its site's code and enrollment key
//! (`config::zero_touch`). `machine_uid` replaces the derived hardware uid (`machine_uid`).

pub mod absent;
pub mod zero_touch;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use nexa_proto::Fingerprint;
use nexa_wg::IfName;

use crate::hawkbit::config::HawkbitFile;
#[cfg(feature = "ota")]
use crate::hawkbit::settings::{Announced, HawkbitConfigError, HawkbitSettings};
use crate::machine_uid::ConfiguredUid;
use crate::secret::SecretString;
use crate::tunnel::DEFAULT_INTERFACE;
use reqwest::Url;
use serde::Deserialize;
use zero_touch::{DEFAULT_ENROLLMENT_KEY_FILE, ZeroTouch, ZeroTouchError, ZeroTouchInput};

pub const DEFAULT_CONFIG_PATH: &str = "/etc/nexa/agent.toml";
pub const DEFAULT_CERTS_DIR: &str = "/certs";

/// The file, as written.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct FileConfig {
    pub bridge_url: Option<String>,
    pub root_fingerprint: Option<String>,
    pub device_id: Option<String>,
    pub certs_dir: Option<PathBuf>,
    pub wg_interface: Option<String>,
    pub manage_wireguard: Option<bool>,
    pub mqtt_url: Option<String>,
    pub mqtt_ca: Option<PathBuf>,
    pub telemetry_interval: Option<String>,
    pub state_dir: Option<PathBuf>,
    pub mqtt_reconnect_min: Option<String>,
    pub mqtt_reconnect_max: Option<String>,
    pub hawkbit: Option<HawkbitFile>,
    pub machine_uid: Option<String>,
    pub site_code: Option<String>,
    pub enrollment_key_file: Option<PathBuf>,
    #[serde(flatten)]
    pub unknown: BTreeMap<String, toml::Value>,
}

/// Values from flags and environment (clap merges those two).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub bridge_url: Option<String>,
    pub root_fingerprint: Option<String>,
    pub device_id: Option<String>,
    pub certs_dir: Option<PathBuf>,
    pub wg_interface: Option<String>,
    pub manage_wireguard: Option<bool>,
    pub mqtt_url: Option<String>,
    pub mqtt_ca: Option<PathBuf>,
    pub telemetry_interval: Option<String>,
    pub state_dir: Option<PathBuf>,
    pub mqtt_reconnect_min: Option<String>,
    pub mqtt_reconnect_max: Option<String>,
    pub hawkbit: HawkbitFile,
    pub machine_uid: Option<String>,
    pub site_code: Option<String>,
    pub enrollment_key_file: Option<PathBuf>,
    /// `NEXA_ENROLLMENT_KEY`: the key itself (environment only, never a flag).
    pub enrollment_key: Option<SecretString>,
}

/// A configuration problem naming the key and how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("no bridge URL: set bridge_url in {file}, NEXA_BRIDGE_URL, or --bridge-url")]
    MissingBridgeUrl { file: String },
    #[error("bridge URL {value:?} is invalid: {reason}")]
    BadBridgeUrl { value: String, reason: String },
    #[error(
        "no root fingerprint: set root_fingerprint in {file}, NEXA_ROOT_FINGERPRINT, or --root-fingerprint (print it on the bridge with `nexa-server ca fingerprint`)"
    )]
    MissingFingerprint { file: String },
    #[error(
        "WireGuard interface (wg_interface in {file}, NEXA_WG_INTERFACE, --wg-interface): {source}"
    )]
    BadInterface {
        file: String,
        source: nexa_wg::SpecError,
    },
    #[error(
        "no MQTT broker: the bridge announced none; set mqtt_url in {file}, NEXA_MQTT_URL, or --mqtt-url (e.g. mqtts://broker.example.com)"
    )]
    MissingMqttUrl { file: String },
    #[error("{origin}: {source}")]
    BadMqttUrl {
        origin: &'static str,
        source: nexa_proto::BrokerUrlError,
    },
    #[error("MQTT reconnect delay {value:?} ({key}): {reason}")]
    BadReconnect {
        key: &'static str,
        value: String,
        reason: String,
    },
    #[error(
        "telemetry interval {value:?} (telemetry_interval, NEXA_TELEMETRY_INTERVAL, --telemetry-interval): {reason}"
    )]
    BadInterval { value: String, reason: String },
    #[cfg(feature = "ota")]
    #[error("{source} (in {file} or the environment)")]
    Hawkbit {
        source: HawkbitConfigError,
        file: String,
    },
    #[error(
        "machine uid {value:?} (machine_uid in {file}, NEXA_MACHINE_UID, --machine-uid) is invalid: {reason}; \
         use 1 to 128 printable ASCII characters, such as the factory serial"
    )]
    BadMachineUid {
        value: String,
        reason: String,
        file: String,
    },
    #[error(transparent)]
    ZeroTouch(#[from] ZeroTouchError),
    #[error("root fingerprint {value:?} is invalid: {source}")]
    BadFingerprint {
        value: String,
        source: nexa_proto::FingerprintError,
    },
}

/// Everything `enroll` needs to reach and trust the bridge.
#[derive(Debug, Clone)]
pub struct BridgeSettings {
    pub url: Url,
    pub root_fingerprint: Fingerprint,
}

/// The merged configuration.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub file_path: PathBuf,
    pub bridge_url: Option<String>,
    pub root_fingerprint: Option<String>,
    pub device_id: Option<String>,
    pub certs_dir: PathBuf,
    /// The device's WireGuard interface.
    pub wg_interface: IfName,
    /// Whether `enroll` also brings the interface up (the `wg` commands always act).
    pub manage_wireguard: bool,
    pub mqtt_url: Option<String>,
    /// CA file the broker's certificate must chain to (default: the enrollment's root).
    pub mqtt_ca: Option<PathBuf>,
    pub telemetry_interval: Option<String>,
    /// Where `run` keeps its state for `status` (default /run/nexa).
    pub state_dir: PathBuf,
    pub mqtt_reconnect_min: Option<String>,
    pub mqtt_reconnect_max: Option<String>,
    /// The `[hawkbit]` table with flags and environment applied (checked by `hawkbit()`).
    pub hawkbit: HawkbitFile,
    /// Replaces the derived machine uid (a maker's factory serial).
    pub machine_uid: Option<ConfiguredUid>,
    /// The site code and enrollment key, when this device enrolls zero-touch.
    pub zero_touch: Option<ZeroTouch>,
}

pub const DEFAULT_STATE_DIR: &str = "/run/nexa";

/// Where the MQTT broker is.
pub type Broker = nexa_proto::BrokerUrl;

/// Bounds of the delay between reconnect attempts (exponential with jitter in between).
pub const DEFAULT_RECONNECT_MIN: std::time::Duration = std::time::Duration::from_secs(1);
pub const DEFAULT_RECONNECT_MAX: std::time::Duration = std::time::Duration::from_secs(120);
pub const DEFAULT_TELEMETRY_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

impl AgentConfig {
    /// Reads `path` (a missing file is an empty one unless `required`) and applies overrides.
    pub fn load(path: &Path, required: bool, over: Overrides) -> Result<Self, ConfigError> {
        let file = match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str::<FileConfig>(&text).map_err(|e| ConfigError::Parse {
                path: path.to_owned(),
                message: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
                FileConfig::default()
            }
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        for key in file.unknown.keys() {
            tracing::warn!(file = %path.display(), key, "unknown configuration key ignored");
        }
        let hawkbit_file = file.hawkbit.unwrap_or_default();
        for key in hawkbit_file.unknown.keys() {
            tracing::warn!(file = %path.display(), key = %format!("hawkbit.{key}"), "unknown configuration key ignored");
        }
        let wg_interface = over
            .wg_interface
            .or(file.wg_interface)
            .unwrap_or_else(|| DEFAULT_INTERFACE.into());
        let wg_interface =
            IfName::parse(wg_interface.trim()).map_err(|source| ConfigError::BadInterface {
                file: path.display().to_string(),
                source,
            })?;
        let machine_uid = over
            .machine_uid
            .or(file.machine_uid)
            .map(|raw| {
                ConfiguredUid::parse(&raw).map_err(|reason| ConfigError::BadMachineUid {
                    value: raw.chars().take(160).collect(),
                    reason,
                    file: path.display().to_string(),
                })
            })
            .transpose()?;
        let zero_touch = zero_touch::resolve(
            ZeroTouchInput {
                site_code: over.site_code.or(file.site_code),
                key_env: over.enrollment_key,
                key_file_override: over.enrollment_key_file,
                key_file_config: file.enrollment_key_file,
                default_key_file: PathBuf::from(DEFAULT_ENROLLMENT_KEY_FILE),
            },
            path,
        )?;
        let cfg = Self {
            machine_uid,
            zero_touch,
            mqtt_url: over.mqtt_url.or(file.mqtt_url),
            mqtt_ca: over.mqtt_ca.or(file.mqtt_ca),
            telemetry_interval: over.telemetry_interval.or(file.telemetry_interval),
            mqtt_reconnect_min: over.mqtt_reconnect_min.or(file.mqtt_reconnect_min),
            mqtt_reconnect_max: over.mqtt_reconnect_max.or(file.mqtt_reconnect_max),
            hawkbit: over.hawkbit.over(hawkbit_file),
            state_dir: over
                .state_dir
                .or(file.state_dir)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR)),
            wg_interface,
            manage_wireguard: over
                .manage_wireguard
                .or(file.manage_wireguard)
                .unwrap_or(true),
            file_path: path.to_owned(),
            bridge_url: over.bridge_url.or(file.bridge_url),
            root_fingerprint: over.root_fingerprint.or(file.root_fingerprint),
            device_id: over.device_id.or(file.device_id),
            certs_dir: over
                .certs_dir
                .or(file.certs_dir)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_CERTS_DIR)),
        };
        absent::warn(&cfg);
        Ok(cfg)
    }

    /// The root fingerprint, if configured, validated.
    pub fn fingerprint(&self) -> Result<Option<Fingerprint>, ConfigError> {
        self.root_fingerprint
            .as_deref()
            .map(|v| {
                Fingerprint::parse(v).map_err(|source| ConfigError::BadFingerprint {
                    value: v.to_owned(),
                    source,
                })
            })
            .transpose()
    }

    /// Bridge URL and fingerprint, both required.
    pub fn bridge(&self) -> Result<BridgeSettings, ConfigError> {
        let file = self.file_path.display().to_string();
        let raw = self
            .bridge_url
            .as_deref()
            .ok_or_else(|| ConfigError::MissingBridgeUrl { file: file.clone() })?;
        let url = parse_bridge_url(raw)?;
        let root_fingerprint = self
            .fingerprint()?
            .ok_or(ConfigError::MissingFingerprint { file })?;
        Ok(BridgeSettings {
            url,
            root_fingerprint,
        })
    }
}

impl AgentConfig {
    /// The configured MQTT broker, if any (checked).
    pub fn configured_broker(&self) -> Result<Option<Broker>, ConfigError> {
        self.mqtt_url
            .as_deref()
            .map(|raw| {
                Broker::parse(raw).map_err(|source| ConfigError::BadMqttUrl {
                    origin: "mqtt_url / NEXA_MQTT_URL / --mqtt-url",
                    source,
                })
            })
            .transpose()
    }

    /// The MQTT broker `run` uses: configured, else the one the bridge announced at
    /// enrollment (`announced`, from the enrolled flag).
    pub fn broker(&self, announced: Option<&str>) -> Result<Broker, ConfigError> {
        if let Some(b) = self.configured_broker()? {
            return Ok(b);
        }
        let raw = announced.ok_or_else(|| ConfigError::MissingMqttUrl {
            file: self.file_path.display().to_string(),
        })?;
        Broker::parse(raw).map_err(|source| ConfigError::BadMqttUrl {
            origin: "the broker the bridge announced (mqtt_url in the enrolled flag)",
            source,
        })
    }

    /// The hawkBit settings as configured; `None` when no hawkBit URL is configured.
    #[cfg(feature = "ota")]
    pub fn hawkbit(&self) -> Result<Option<HawkbitSettings>, ConfigError> {
        self.hawkbit_with(None)
    }

    /// The hawkBit settings over what the bridge announced at enrollment; `None` when
    /// neither names a hawkBit URL.
    #[cfg(feature = "ota")]
    pub fn hawkbit_with(
        &self,
        announced: Option<&Announced>,
    ) -> Result<Option<HawkbitSettings>, ConfigError> {
        HawkbitSettings::resolve_with(self.hawkbit.clone(), announced).map_err(|source| {
            ConfigError::Hawkbit {
                source,
                file: self.file_path.display().to_string(),
            }
        })
    }

    /// Lower and upper bound of the MQTT reconnect delay.
    pub fn reconnect_bounds(
        &self,
    ) -> Result<(std::time::Duration, std::time::Duration), ConfigError> {
        let read = |key: &'static str, raw: Option<&str>, default| {
            let Some(raw) = raw else {
                return Ok(default);
            };
            let bad = |reason: String| ConfigError::BadReconnect {
                key,
                value: raw.to_owned(),
                reason,
            };
            let d = nexa_proto::duration::parse_duration(raw).map_err(bad)?;
            if d < std::time::Duration::from_secs(1) || d > std::time::Duration::from_secs(3600) {
                return Err(bad("must be between 1s and 1h".into()));
            }
            Ok(d)
        };
        let min = read(
            "mqtt_reconnect_min, NEXA_MQTT_RECONNECT_MIN, --mqtt-reconnect-min",
            self.mqtt_reconnect_min.as_deref(),
            DEFAULT_RECONNECT_MIN,
        )?;
        let max = read(
            "mqtt_reconnect_max, NEXA_MQTT_RECONNECT_MAX, --mqtt-reconnect-max",
            self.mqtt_reconnect_max.as_deref(),
            DEFAULT_RECONNECT_MAX.max(min),
        )?;
        if max < min {
            return Err(ConfigError::BadReconnect {
                key: "mqtt_reconnect_max, NEXA_MQTT_RECONNECT_MAX, --mqtt-reconnect-max",
                value: self.mqtt_reconnect_max.clone().unwrap_or_default(),
                reason: format!("must not be below the minimum ({}s)", min.as_secs()),
            });
        }
        Ok((min, max))
    }

    /// The telemetry interval (at least 1 s).
    pub fn telemetry_interval(&self) -> Result<std::time::Duration, ConfigError> {
        let Some(raw) = self.telemetry_interval.as_deref() else {
            return Ok(DEFAULT_TELEMETRY_INTERVAL);
        };
        let bad = |reason: String| ConfigError::BadInterval {
            value: raw.to_owned(),
            reason,
        };
        let d = nexa_proto::duration::parse_duration(raw).map_err(bad)?;
        if d < std::time::Duration::from_secs(1) {
            return Err(bad("must be at least 1s".into()));
        }
        Ok(d)
    }
}

fn parse_bridge_url(raw: &str) -> Result<Url, ConfigError> {
    nexa_proto::base_url::parse_base_url(
        raw,
        &["https"],
        "the bridge is only reached over https://",
    )
    .map_err(|e| ConfigError::BadBridgeUrl {
        value: raw.to_owned(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("agent.toml");
        std::fs::write(&p, text).unwrap();
        (tmp, p)
    }

    #[test]
    fn overrides_win_over_file_and_unknown_keys_are_tolerated() {
        let fp = "a".repeat(64);
        let (_t, p) = write(&format!(
            "bridge_url = \"https://file.example:8443\"\nroot_fingerprint = \"{fp}\"\ncerts_dir = \"/file/certs\"\nfuture_option = 1\n"
        ));
        let over = Overrides {
            bridge_url: Some("https://flag.example/prefix".into()),
            ..Default::default()
        };
        let cfg = AgentConfig::load(&p, true, over).unwrap();
        let b = cfg.bridge().unwrap();
        assert_eq!(b.url.as_str(), "https://flag.example/prefix/");
        assert_eq!(b.root_fingerprint.to_string(), fp);
        assert_eq!(cfg.certs_dir, PathBuf::from("/file/certs"));
        assert_eq!(cfg.wg_interface.as_str(), "wg0");
        assert!(cfg.manage_wireguard);
    }

    #[cfg(feature = "ota")]
    #[test]
    fn the_hawkbit_table_is_read_and_checked() {
        let (_t, p) =
            write("[hawkbit]\nurl = \"https://hb.example\"\nauth = \"certificate\"\nfuture = 1\n");
        let cfg = AgentConfig::load(&p, true, Overrides::default()).unwrap();
        let hb = cfg.hawkbit().unwrap().unwrap();
        assert_eq!(hb.url.as_str(), "https://hb.example/");
        let over = Overrides {
            hawkbit: HawkbitFile {
                token_file: Some("/t".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let e = AgentConfig::load(&p, true, over)
            .unwrap()
            .hawkbit()
            .unwrap_err()
            .to_string();
        assert!(e.contains("certificate") && e.contains("agent.toml"), "{e}");
        let none = AgentConfig::load(Path::new("/nonexistent"), false, Overrides::default())
            .unwrap()
            .hawkbit()
            .unwrap();
        assert!(none.is_none());
    }

    #[test]
    fn reconnect_bounds_are_checked() {
        let load = |min: Option<&str>, max: Option<&str>| {
            AgentConfig::load(
                Path::new("/nonexistent"),
                false,
                Overrides {
                    mqtt_reconnect_min: min.map(Into::into),
                    mqtt_reconnect_max: max.map(Into::into),
                    ..Default::default()
                },
            )
            .unwrap()
            .reconnect_bounds()
        };
        assert_eq!(
            load(None, None).unwrap(),
            (DEFAULT_RECONNECT_MIN, DEFAULT_RECONNECT_MAX)
        );
        let (min, max) = load(Some("5s"), Some("10m")).unwrap();
        assert_eq!((min.as_secs(), max.as_secs()), (5, 600));
        // A minimum above the default maximum lifts the default maximum with it.
        assert_eq!(load(Some("5m"), None).unwrap().1.as_secs(), 300);
        let e = load(Some("30s"), Some("10s")).unwrap_err().to_string();
        assert!(
            e.contains("NEXA_MQTT_RECONNECT_MAX") && e.contains("below"),
            "{e}"
        );
        let e = load(Some("0s"), None).unwrap_err().to_string();
        assert!(
            e.contains("NEXA_MQTT_RECONNECT_MIN") && e.contains("\"0s\""),
            "{e}"
        );
        let e = load(None, Some("2h")).unwrap_err().to_string();
        assert!(e.contains("between 1s and 1h"), "{e}");
    }

    #[test]
    fn mqtt_url_and_interval_parse_with_clear_errors() {
        let over = |url: &str| Overrides {
            mqtt_url: Some(url.into()),
            ..Default::default()
        };
        let load = |o| AgentConfig::load(Path::new("/nonexistent"), false, o).unwrap();
        assert_eq!(
            load(over("mqtts://broker.example")).broker(None).unwrap(),
            Broker {
                host: "broker.example".into(),
                port: 8883
            }
        );
        // Configuration wins over what the bridge announced; the announcement is the fallback.
        assert_eq!(
            load(over("mqtts://127.0.0.1:18883"))
                .broker(Some("mqtts://announced:1"))
                .unwrap()
                .port,
            18883
        );
        let announced = load(Overrides::default())
            .broker(Some("mqtts://announced.example:8884"))
            .unwrap();
        assert_eq!(
            (announced.host.as_str(), announced.port),
            ("announced.example", 8884)
        );
        for bad in ["mqtt://plain", "mqtts://", "mqtts://h/path", "nonsense"] {
            let e = load(over(bad)).broker(None).unwrap_err().to_string();
            assert!(e.contains(bad) && e.contains("NEXA_MQTT_URL"), "{bad}: {e}");
        }
        let e = load(Overrides::default())
            .broker(None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("NEXA_MQTT_URL") && e.contains("announced none"),
            "{e}"
        );
        let e = load(Overrides::default())
            .broker(Some("tcp://x"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("announced") && e.contains("tcp://x"), "{e}");
        let cfg = load(Overrides {
            telemetry_interval: Some("0s".into()),
            ..Default::default()
        });
        assert!(
            cfg.telemetry_interval()
                .unwrap_err()
                .to_string()
                .contains("NEXA_TELEMETRY_INTERVAL")
        );
        assert_eq!(
            load(Overrides::default()).telemetry_interval().unwrap(),
            DEFAULT_TELEMETRY_INTERVAL
        );
    }

    #[test]
    fn wireguard_settings_layer_and_validate() {
        let (_t, p) = write("wg_interface = \"tun-file\"\nmanage_wireguard = false\n");
        let cfg = AgentConfig::load(&p, true, Overrides::default()).unwrap();
        assert_eq!(cfg.wg_interface.as_str(), "tun-file");
        assert!(!cfg.manage_wireguard);
        let over = Overrides {
            wg_interface: Some("wg7".into()),
            manage_wireguard: Some(true),
            ..Default::default()
        };
        let cfg = AgentConfig::load(&p, true, over).unwrap();
        assert_eq!(cfg.wg_interface.as_str(), "wg7");
        assert!(cfg.manage_wireguard);
        let over = Overrides {
            wg_interface: Some("far-too-long-name0".into()),
            ..Default::default()
        };
        let err = AgentConfig::load(&p, true, over).unwrap_err().to_string();
        assert!(
            err.contains("NEXA_WG_INTERFACE") && err.contains("far-too-long-name0"),
            "{err}"
        );
    }

    #[test]
    fn missing_and_bad_values_say_how_to_fix() {
        let cfg = AgentConfig::load(
            Path::new("/nonexistent/agent.toml"),
            false,
            Overrides::default(),
        )
        .unwrap();
        let err = cfg.bridge().unwrap_err().to_string();
        assert!(err.contains("NEXA_BRIDGE_URL"), "{err}");
        let over = Overrides {
            bridge_url: Some("http://x".into()),
            ..Default::default()
        };
        let cfg = AgentConfig::load(Path::new("/nonexistent"), false, over).unwrap();
        assert!(cfg.bridge().unwrap_err().to_string().contains("https://"));
        let over = Overrides {
            bridge_url: Some("https://x".into()),
            root_fingerprint: Some("abc".into()),
            ..Default::default()
        };
        let cfg = AgentConfig::load(Path::new("/nonexistent"), false, over).unwrap();
        assert!(cfg.bridge().unwrap_err().to_string().contains("\"abc\""));
        let (_t, p) = write("bridge_url = [");
        let err = AgentConfig::load(&p, true, Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("agent.toml"), "{err}");
        assert!(
            AgentConfig::load(
                Path::new("/nonexistent/agent.toml"),
                true,
                Overrides::default()
            )
            .is_err()
        );
    }

    #[test]
    fn machine_uid_layers_and_is_checked() {
        let (_t, p) = write("machine_uid = \"OTP-FILE\"\n");
        let cfg = AgentConfig::load(&p, true, Overrides::default()).unwrap();
        assert_eq!(cfg.machine_uid.unwrap().as_str(), "OTP-FILE");
        let over = Overrides {
            machine_uid: Some("OTP-FLAG".into()),
            ..Default::default()
        };
        let cfg = AgentConfig::load(&p, true, over).unwrap();
        assert_eq!(cfg.machine_uid.unwrap().as_str(), "OTP-FLAG");
        let over = Overrides {
            machine_uid: Some("bad\u{1}uid".into()),
            ..Default::default()
        };
        let e = AgentConfig::load(&p, true, over).unwrap_err().to_string();
        assert!(
            e.contains("NEXA_MACHINE_UID") && e.contains("agent.toml") && e.contains("printable"),
            "{e}"
        );
        let none = AgentConfig::load(Path::new("/nonexistent"), false, Overrides::default());
        assert!(none.unwrap().machine_uid.is_none());
    }

    #[test]
    fn zero_touch_settings_layer_and_pair_up() {
        let key = "cek_WlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlo";
        let (t, p) = write("site_code = \"site-file\"\n");
        let key_file = t.path().join("enrollment.key");
        std::fs::write(&key_file, format!("{key}\n")).unwrap();
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(
            &p,
            format!(
                "site_code = \"site-file\"\nenrollment_key_file = \"{}\"\n",
                key_file.display()
            ),
        )
        .unwrap();
        let cfg = AgentConfig::load(&p, true, Overrides::default()).unwrap();
        let z = cfg.zero_touch.clone().unwrap();
        assert_eq!(z.site_code.as_str(), "site-file");
        assert_eq!(z.key.expose(), key);
        assert!(
            !format!("{cfg:?}").contains(&key[4..]),
            "Debug shows no key"
        );

        let over = Overrides {
            site_code: Some("site-flag".into()),
            enrollment_key: Some(SecretString::new(key.into())),
            ..Default::default()
        };
        let z = AgentConfig::load(&p, true, over)
            .unwrap()
            .zero_touch
            .unwrap();
        assert_eq!(z.site_code.as_str(), "site-flag");
        assert_eq!(z.key_source, zero_touch::KeySource::Environment);

        let (_t2, only_site) = write("site_code = \"site-file\"\n");
        let e = AgentConfig::load(&only_site, true, Overrides::default()).unwrap_err();
        assert!(matches!(e, ConfigError::ZeroTouch(_)), "{e}");
        assert!(e.to_string().contains("no enrollment key"), "{e}");
    }
}
