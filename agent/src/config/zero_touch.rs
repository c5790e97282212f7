//! Zero-touch authorization: the site code and the site's enrollment key, with which a device
//! nobody registered beforehand may enroll.
//!
//! Both or neither: a site code without a key, or a key without a site code, is a
//! configuration error. The key comes from, first match wins:
//! 1. `NEXA_ENROLLMENT_KEY` (the key itself, for scripted installs) — unless
//!    `--enrollment-key-file` / `NEXA_ENROLLMENT_KEY_FILE` names a file too, which is an error;
//! 2. `--enrollment-key-file` / `NEXA_ENROLLMENT_KEY_FILE`, then `enrollment_key_file` in
//!    agent.toml (the file must exist);
//! 3. `/etc/nexa/enrollment.key`, only if it exists.
//!
//! The key is checked for its shape (`cek_` + 43 base64url characters, 256 bits) when the
//! configuration is loaded; errors name the file or variable and the expected shape, never the
//! key. It lives in a [`SecretString`].

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use base64::Engine;
use zeroize::Zeroizing;

use crate::secret::SecretString;

/// Where the key is looked for when nothing names a file.
pub const DEFAULT_ENROLLMENT_KEY_FILE: &str = "/etc/nexa/enrollment.key";

/// The key's prefix.
pub const KEY_PREFIX: &str = "cek_";
/// Characters after the prefix: 32 bytes, base64url without padding.
pub const KEY_CHARS: usize = 43;
/// A key file larger than this is not a key.
const MAX_KEY_FILE: u64 = 1024;

const KEY_SHAPE: &str = "cek_ followed by 43 base64url characters (A-Z a-z 0-9 - _, no padding), as the bridge issued it";

/// Why the zero-touch settings are unusable.
#[derive(Debug, thiserror::Error)]
pub enum ZeroTouchError {
    #[error(
        "site code {value:?} (site_code in {file}, NEXA_SITE_CODE, --site-code) is invalid: {reason}; use 1 to 64 of A-Z a-z 0-9 . _ -"
    )]
    BadSiteCode {
        value: String,
        reason: String,
        file: String,
    },
    #[error(
        "a site code is set but no enrollment key: put the site's key in {DEFAULT_ENROLLMENT_KEY_FILE} \
         (mode 0600), or name its file with enrollment_key_file in {file}, NEXA_ENROLLMENT_KEY_FILE or \
         --enrollment-key-file, or set NEXA_ENROLLMENT_KEY"
    )]
    SiteWithoutKey { file: String },
    #[error(
        "an enrollment key is configured ({origin}) but no site code: set site_code in {file}, \
         NEXA_SITE_CODE or --site-code, or remove the key"
    )]
    KeyWithoutSite { origin: String, file: String },
    #[error(
        "both NEXA_ENROLLMENT_KEY and an enrollment key file ({path}, from NEXA_ENROLLMENT_KEY_FILE \
         or --enrollment-key-file) are set; keep only one"
    )]
    KeyConflict { path: PathBuf },
    #[error("cannot read the enrollment key file {path}: {source}; {hint}")]
    ReadKey {
        path: PathBuf,
        source: std::io::Error,
        hint: &'static str,
    },
    #[error("the enrollment key in {origin} is malformed: {reason}; expected {KEY_SHAPE}")]
    BadKey { origin: String, reason: String },
}

/// A checked site code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteCode(String);

impl SiteCode {
    /// 1 to 64 characters of `[A-Za-z0-9._-]` (surrounding whitespace is ignored).
    pub fn parse(raw: &str) -> Result<Self, String> {
        let v = raw.trim();
        if v.is_empty() {
            return Err("it is empty".into());
        }
        if v.chars().count() > 64 {
            return Err(format!("it has {} characters", v.chars().count()));
        }
        if let Some(c) = v
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(format!("{c:?} is not allowed"));
        }
        Ok(Self(v.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for SiteCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A site's enrollment key, checked for its shape. `Debug` shows no part of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrollmentKey(SecretString);

impl EnrollmentKey {
    /// Checks the shape; the error says what is wrong without quoting the key.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let v = raw.trim();
        let Some(rest) = v.strip_prefix(KEY_PREFIX) else {
            return Err(format!("it does not start with {KEY_PREFIX}"));
        };
        if let Some((i, _)) = rest
            .char_indices()
            .find(|(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_')))
        {
            return Err(format!(
                "character {} is not base64url",
                KEY_PREFIX.len() + rest[..i].chars().count() + 1
            ));
        }
        if rest.len() != KEY_CHARS {
            return Err(format!(
                "it has {} characters after {KEY_PREFIX}, not {KEY_CHARS}",
                rest.len()
            ));
        }
        let decoded = Zeroizing::new(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(rest)
                .map_err(|_| "its last character does not end a 256-bit value".to_owned())?,
        );
        if decoded.len() != 32 {
            return Err("it does not decode to 256 bits".into());
        }
        Ok(Self(SecretString::new(v.to_owned())))
    }

    /// The key, for the enrollment request.
    pub fn expose(&self) -> &str {
        self.0.expose()
    }
}

/// Where the key came from, for messages (a path or a variable name, never the key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    Environment,
    File(PathBuf),
}

impl std::fmt::Display for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySource::Environment => f.write_str("NEXA_ENROLLMENT_KEY"),
            KeySource::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// The zero-touch credentials of this device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZeroTouch {
    pub site_code: SiteCode,
    pub key: EnrollmentKey,
    pub key_source: KeySource,
}

/// What the layers say, before it is checked.
#[derive(Debug, Clone, Default)]
pub struct ZeroTouchInput {
    /// Flag or environment, else the file.
    pub site_code: Option<String>,
    /// `NEXA_ENROLLMENT_KEY`.
    pub key_env: Option<SecretString>,
    /// `--enrollment-key-file` / `NEXA_ENROLLMENT_KEY_FILE`.
    pub key_file_override: Option<PathBuf>,
    /// `enrollment_key_file` in agent.toml.
    pub key_file_config: Option<PathBuf>,
    /// [`DEFAULT_ENROLLMENT_KEY_FILE`] in production.
    pub default_key_file: PathBuf,
}

/// Checks the input; `config_file` names agent.toml in messages.
pub fn resolve(
    input: ZeroTouchInput,
    config_file: &Path,
) -> Result<Option<ZeroTouch>, ZeroTouchError> {
    let file = config_file.display().to_string();
    let site_code = input
        .site_code
        .as_deref()
        .map(|raw| {
            SiteCode::parse(raw).map_err(|reason| ZeroTouchError::BadSiteCode {
                value: raw.to_owned(),
                reason,
                file: file.clone(),
            })
        })
        .transpose()?;
    let key_env = input.key_env.filter(|k| !k.expose().trim().is_empty());
    let key = match (key_env, input.key_file_override) {
        (Some(_), Some(path)) => return Err(ZeroTouchError::KeyConflict { path }),
        (Some(k), None) => Some((k, KeySource::Environment)),
        (None, Some(path)) => Some((read_key_file(&path)?, KeySource::File(path))),
        (None, None) => match input.key_file_config {
            Some(path) => Some((read_key_file(&path)?, KeySource::File(path))),
            None if input.default_key_file.exists() => {
                let path = input.default_key_file;
                Some((read_key_file(&path)?, KeySource::File(path)))
            }
            None => None,
        },
    };
    match (site_code, key) {
        (None, None) => Ok(None),
        (Some(_), None) => Err(ZeroTouchError::SiteWithoutKey { file }),
        (None, Some((_, source))) => Err(ZeroTouchError::KeyWithoutSite {
            origin: source.to_string(),
            file,
        }),
        (Some(site_code), Some((raw, key_source))) => {
            let key =
                EnrollmentKey::parse(raw.expose()).map_err(|reason| ZeroTouchError::BadKey {
                    origin: key_source.to_string(),
                    reason,
                })?;
            Ok(Some(ZeroTouch {
                site_code,
                key,
                key_source,
            }))
        }
    }
}

/// Reads a key file (at most 1 KiB) into zeroized memory; warns when group or others may read
/// it.
fn read_key_file(path: &Path) -> Result<SecretString, ZeroTouchError> {
    let read_err = |source: std::io::Error| {
        let hint = match source.kind() {
            std::io::ErrorKind::NotFound => {
                "create it with the site's key, or remove the setting that names it"
            }
            std::io::ErrorKind::PermissionDenied => "run the agent as root or fix the file's owner",
            _ => "check the file",
        };
        ZeroTouchError::ReadKey {
            path: path.to_owned(),
            source,
            hint,
        }
    };
    let file = std::fs::File::open(path).map_err(read_err)?;
    let meta = file.metadata().map_err(read_err)?;
    if !meta.is_file() {
        return Err(ZeroTouchError::BadKey {
            origin: path.display().to_string(),
            reason: "it is not a regular file".into(),
        });
    }
    let mode = meta.permissions().mode();
    if mode & 0o044 != 0 {
        tracing::warn!(file = %path.display(), mode = %format!("{:04o}", mode & 0o7777), "the enrollment key file is readable by group or others; restrict it with `chmod 600`");
    }
    let mut bytes = Zeroizing::new(Vec::with_capacity(128));
    file.take(MAX_KEY_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    let bad = |reason: &str| ZeroTouchError::BadKey {
        origin: path.display().to_string(),
        reason: reason.to_owned(),
    };
    if bytes.len() as u64 > MAX_KEY_FILE {
        return Err(bad("the file is far larger than a key"));
    }
    let text = std::str::from_utf8(&bytes).map_err(|_| bad("the file is not text"))?;
    Ok(SecretString::new(text.trim().to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A well-formed key (32 bytes of 0x5a).
    const KEY: &str = "cek_WlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlo";

    fn input(site: Option<&str>) -> ZeroTouchInput {
        ZeroTouchInput {
            site_code: site.map(Into::into),
            default_key_file: PathBuf::from("/nonexistent/enrollment.key"),
            ..ZeroTouchInput::default()
        }
    }

    fn run(i: ZeroTouchInput) -> Result<Option<ZeroTouch>, String> {
        resolve(i, Path::new("/etc/nexa/agent.toml")).map_err(|e| e.to_string())
    }

    fn key_file(dir: &Path, name: &str, content: &str, mode: u32) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, content).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    #[test]
    fn site_codes_are_checked() {
        for ok in ["site-1", "A.b_C-9", &"x".repeat(64)] {
            assert_eq!(SiteCode::parse(ok).unwrap().as_str(), ok);
        }
        for bad in ["", "  ", "with space", "a/b", "é", &"x".repeat(65)] {
            assert!(SiteCode::parse(bad).is_err(), "{bad:?}");
        }
        let e = run(ZeroTouchInput {
            key_env: Some(SecretString::new(KEY.into())),
            ..input(Some("bad site"))
        })
        .unwrap_err();
        assert!(
            e.contains("\"bad site\"") && e.contains("NEXA_SITE_CODE") && e.contains("agent.toml"),
            "{e}"
        );
    }

    #[test]
    fn key_shapes_are_checked_without_quoting_the_key() {
        assert!(EnrollmentKey::parse(KEY).is_ok());
        assert!(EnrollmentKey::parse(&format!("  {KEY}\n")).is_ok());
        let cases = [
            (KEY.replacen("cek_", "cak_", 1), "does not start with cek_"),
            (format!("{KEY}A"), "44 characters"),
            (KEY[..KEY.len() - 1].to_owned(), "42 characters"),
            (format!("{}=", &KEY[..KEY.len() - 1]), "character 47"),
            (KEY.replacen('W', "+", 1), "character 5 is not base64url"),
            // The last character carries 2 bits; "p" would set bits that do not exist.
            (format!("{}p", &KEY[..KEY.len() - 1]), "256-bit"),
        ];
        for (bad, want) in cases {
            let e = EnrollmentKey::parse(&bad).unwrap_err();
            assert!(e.contains(want), "{bad}: {e}");
            assert!(!e.contains(&KEY[4..20]), "the key leaked: {e}");
        }
        let k = EnrollmentKey::parse(KEY).unwrap();
        assert!(!format!("{k:?}").contains(&KEY[4..]), "{k:?}");
        assert_eq!(k.expose(), KEY);
    }

    #[test]
    fn both_or_neither() {
        assert_eq!(run(input(None)).unwrap(), None);
        let e = run(input(Some("site-1"))).unwrap_err();
        assert!(
            e.contains("no enrollment key") && e.contains("NEXA_ENROLLMENT_KEY_FILE"),
            "{e}"
        );
        let e = run(ZeroTouchInput {
            key_env: Some(SecretString::new(KEY.into())),
            ..input(None)
        })
        .unwrap_err();
        assert!(
            e.contains("no site code") && e.contains("NEXA_ENROLLMENT_KEY") && !e.contains(KEY),
            "{e}"
        );
        // An empty variable is no key.
        assert_eq!(
            run(ZeroTouchInput {
                key_env: Some(SecretString::new(" ".into())),
                ..input(None)
            })
            .unwrap(),
            None
        );
    }

    #[test]
    fn the_key_comes_from_the_environment_a_named_file_or_the_default_file() {
        let tmp = tempfile::tempdir().unwrap();
        let named = key_file(tmp.path(), "named.key", &format!("{KEY}\n"), 0o600);
        let z = run(ZeroTouchInput {
            key_env: Some(SecretString::new(KEY.into())),
            key_file_config: Some(PathBuf::from("/nonexistent/ignored.key")),
            ..input(Some("site-1"))
        })
        .unwrap()
        .unwrap();
        assert_eq!(z.key_source, KeySource::Environment);
        assert_eq!(z.site_code.as_str(), "site-1");

        let z = run(ZeroTouchInput {
            key_file_override: Some(named.clone()),
            key_file_config: Some(PathBuf::from("/nonexistent/ignored.key")),
            ..input(Some("site-1"))
        })
        .unwrap()
        .unwrap();
        assert_eq!(z.key_source, KeySource::File(named.clone()));
        assert_eq!(z.key.expose(), KEY);

        let z = run(ZeroTouchInput {
            key_file_config: Some(named.clone()),
            ..input(Some("site-1"))
        })
        .unwrap()
        .unwrap();
        assert_eq!(z.key_source, KeySource::File(named.clone()));

        let default = key_file(tmp.path(), "enrollment.key", KEY, 0o600);
        let z = run(ZeroTouchInput {
            default_key_file: default.clone(),
            ..input(Some("site-1"))
        })
        .unwrap()
        .unwrap();
        assert_eq!(z.key_source, KeySource::File(default.clone()));
        // The default file alone is a key without a site code.
        let e = run(ZeroTouchInput {
            default_key_file: default,
            ..input(None)
        })
        .unwrap_err();
        assert!(
            e.contains("enrollment.key") && e.contains("no site code"),
            "{e}"
        );

        let e = run(ZeroTouchInput {
            key_env: Some(SecretString::new(KEY.into())),
            key_file_override: Some(named),
            ..input(Some("site-1"))
        })
        .unwrap_err();
        assert!(e.contains("keep only one") && !e.contains(KEY), "{e}");
    }

    #[test]
    fn key_file_errors_name_the_file_and_never_the_key() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join("missing.key");
        let e = run(ZeroTouchInput {
            key_file_config: Some(missing.clone()),
            ..input(Some("site-1"))
        })
        .unwrap_err();
        assert!(
            e.contains(&*missing.to_string_lossy()) && e.contains("create it"),
            "{e}"
        );
        let almost = format!("{}!", &KEY[..KEY.len() - 1]);
        let bad = key_file(tmp.path(), "bad.key", &almost, 0o600);
        let e = run(ZeroTouchInput {
            key_file_override: Some(bad.clone()),
            ..input(Some("site-1"))
        })
        .unwrap_err();
        assert!(
            e.contains(&*bad.to_string_lossy()) && e.contains("cek_ followed by 43"),
            "{e}"
        );
        assert!(!e.contains(&almost[4..30]), "{e}");
        let e = run(ZeroTouchInput {
            key_env: Some(SecretString::new("cek_short".into())),
            ..input(Some("site-1"))
        })
        .unwrap_err();
        assert!(
            e.contains("NEXA_ENROLLMENT_KEY") && !e.contains("cek_short"),
            "{e}"
        );
        // Readable by others: used, with a warning.
        let open = key_file(tmp.path(), "open.key", KEY, 0o644);
        assert!(
            run(ZeroTouchInput {
                key_file_override: Some(open),
                ..input(Some("site-1"))
            })
            .unwrap()
            .is_some()
        );
        let dir = run(ZeroTouchInput {
            key_file_override: Some(tmp.path().to_owned()),
            ..input(Some("site-1"))
        })
        .unwrap_err();
        assert!(dir.contains("not a regular file"), "{dir}");
    }
}
