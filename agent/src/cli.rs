//! Command line of `nexa-agent`: argument types, dispatch and what each command prints.

mod cert;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use nexa_proto::duration::parse_duration;

use crate::auth::Technician;
use crate::backoff::Backoff;
use crate::certs::CertsDir;
use crate::config::{AgentConfig, DEFAULT_CONFIG_PATH, Overrides};
use crate::enroll::approval::ApprovalWait;
use crate::enroll::{EnrollOptions, EnrollOutcome, enroll};
use crate::error::{AgentError, exit};
use crate::hawkbit::config::HawkbitFile;
use crate::password::{PasswordSource, read_password};
use crate::secret::SecretString;
use crate::status::{render, status};
use crate::tunnel;
use nexa_wg::{KernelLink, show};
use std::time::SystemTime;

const EXIT_HELP: &str = "Exit status: 0 success (or already enrolled); 1 local failure, or for `status` \
not enrolled (or revoked); 2 usage or configuration error; 3 the bridge refused (4xx), or revoked this \
device (`wg up` then refuses too); 4 the bridge or its answer \
is not trusted (fingerprint or chain mismatch); 5 the bridge stayed unreachable or unavailable; \
6 the WireGuard interface could not be configured (enrollment, if any, is kept); \
7 the enrollment is still waiting for an administrator's approval after --approval-timeout \
(run `enroll` again to keep waiting; the same keys are kept). \
`cert needs-renewal` has its own: 0 due, 1 not yet, 2 error.

Zero-touch enrollment: --site-code / NEXA_SITE_CODE / site_code with the site's enrollment key \
in /etc/nexa/enrollment.key (or --enrollment-key-file / NEXA_ENROLLMENT_KEY_FILE / \
enrollment_key_file, or the key itself in NEXA_ENROLLMENT_KEY, which is never a flag).";

#[derive(Debug, Parser)]
#[command(
    name = "nexa-agent",
    version = crate::features::version(),
    about = "Nexa device agent",
    after_help = EXIT_HELP
)]
pub struct Cli {
    /// Config file.
    #[arg(long, global = true, env = "NEXA_AGENT_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Bridge base URL, e.g. https://bridge.example.com:8443.
    #[arg(long, global = true, env = "NEXA_BRIDGE_URL", value_name = "URL")]
    pub bridge_url: Option<String>,
    /// SHA-256 fingerprint of the bridge's root CA (`nexa-server ca fingerprint`).
    #[arg(long, global = true, env = "NEXA_ROOT_FINGERPRINT", value_name = "HEX")]
    pub root_fingerprint: Option<String>,
    /// Device id (default: factory file, DMI serial, device-tree serial, machine-id).
    #[arg(long, global = true, env = "NEXA_DEVICE_ID", value_name = "ID")]
    pub device_id: Option<String>,
    /// Where certificates, keys and the WireGuard profile live.
    #[arg(long, global = true, env = "NEXA_CERTS_DIR", value_name = "DIR")]
    pub certs_dir: Option<PathBuf>,
    /// The device's WireGuard interface (default wg0).
    #[arg(long, global = true, env = "NEXA_WG_INTERFACE", value_name = "NAME")]
    pub wg_interface: Option<String>,
    /// Whether `enroll` also brings the WireGuard interface up (default true).
    #[arg(
        long,
        global = true,
        env = "NEXA_MANAGE_WIREGUARD",
        value_name = "BOOL"
    )]
    pub manage_wireguard: Option<bool>,
    /// MQTT broker, mqtts://HOST[:PORT] (port 8883 by default).
    #[arg(long, global = true, env = "NEXA_MQTT_URL", value_name = "URL")]
    pub mqtt_url: Option<String>,
    /// CA file the broker's certificate must chain to (default: the enrollment's root).
    #[arg(long, global = true, env = "NEXA_MQTT_CA", value_name = "FILE")]
    pub mqtt_ca: Option<PathBuf>,
    /// Telemetry interval, e.g. 60s (a shared attribute may change it at run time).
    #[arg(
        long,
        global = true,
        env = "NEXA_TELEMETRY_INTERVAL",
        value_name = "DURATION"
    )]
    pub telemetry_interval: Option<String>,
    /// Where `run` keeps its state for `status` (default /run/nexa).
    #[arg(long, global = true, env = "NEXA_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Shortest delay before reconnecting to the broker (default 1s; doubles, with jitter).
    #[arg(
        long,
        global = true,
        env = "NEXA_MQTT_RECONNECT_MIN",
        value_name = "DURATION"
    )]
    pub mqtt_reconnect_min: Option<String>,
    /// Longest delay between reconnect attempts (default 120s).
    #[arg(
        long,
        global = true,
        env = "NEXA_MQTT_RECONNECT_MAX",
        value_name = "DURATION"
    )]
    pub mqtt_reconnect_max: Option<String>,
    /// hawkBit server (DDI), e.g. https://hawkbit.example.com; unset: no OTA updates.
    #[arg(long, global = true, env = "NEXA_HAWKBIT_URL", value_name = "URL")]
    pub hawkbit_url: Option<String>,
    /// hawkBit tenant (default DEFAULT).
    #[arg(long, global = true, env = "NEXA_HAWKBIT_TENANT", value_name = "NAME")]
    pub hawkbit_tenant: Option<String>,
    /// hawkBit controller id (default: the device id).
    #[arg(
        long,
        global = true,
        env = "NEXA_HAWKBIT_CONTROLLER_ID",
        value_name = "ID"
    )]
    pub hawkbit_controller_id: Option<String>,
    /// How the device authenticates to hawkBit: certificate, target_token or gateway_token.
    #[arg(long, global = true, env = "NEXA_HAWKBIT_AUTH", value_name = "MODE")]
    pub hawkbit_auth: Option<String>,
    /// File holding the hawkBit target or gateway token.
    #[arg(
        long,
        global = true,
        env = "NEXA_HAWKBIT_TOKEN_FILE",
        value_name = "FILE"
    )]
    pub hawkbit_token_file: Option<PathBuf>,
    /// CA file hawkBit's certificate must chain to (default: system roots and the enrollment's).
    #[arg(long, global = true, env = "NEXA_HAWKBIT_CA", value_name = "FILE")]
    pub hawkbit_ca: Option<PathBuf>,
    /// Persistent OTA state (default /var/lib/nexa); downloads go to DIR/spool.
    #[arg(long, global = true, env = "NEXA_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// A hawkBit download receiving nothing this long is resumed (default 60s).
    #[arg(
        long,
        global = true,
        env = "NEXA_HAWKBIT_STALL_TIMEOUT",
        value_name = "DURATION"
    )]
    pub hawkbit_stall_timeout: Option<String>,
    /// After an install: reboot (success once the new slot is good) or report (at once).
    #[arg(long, global = true, env = "NEXA_AFTER_INSTALL", value_name = "MODE")]
    pub after_install: Option<String>,
    /// A factory serial to use as the machine uid instead of the DMI / device-tree /
    /// machine-id derivation (1 to 128 printable ASCII characters; sent hashed).
    #[arg(long, global = true, env = "NEXA_MACHINE_UID", value_name = "SERIAL")]
    pub machine_uid: Option<String>,
    /// The site this device is installed at, for zero-touch enrollment (needs the site's
    /// enrollment key).
    #[arg(long, global = true, env = "NEXA_SITE_CODE", value_name = "CODE")]
    pub site_code: Option<String>,
    /// File holding the site's enrollment key, cek_… (default /etc/nexa/enrollment.key, if it
    /// exists). The key itself may come from NEXA_ENROLLMENT_KEY instead.
    #[arg(
        long,
        global = true,
        env = "NEXA_ENROLLMENT_KEY_FILE",
        value_name = "FILE"
    )]
    pub enrollment_key_file: Option<PathBuf>,
    /// Log filter, e.g. info or nexa_agent=debug.
    #[arg(
        long,
        global = true,
        env = "NEXA_LOG",
        default_value = "info",
        value_name = "FILTER"
    )]
    pub log: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Enroll this device at the bridge (does nothing if already enrolled).
    Enroll {
        /// Re-enroll with new keys, keeping the device id (needs the bridge's permission).
        #[arg(long)]
        force: bool,
        /// Keep retrying an unreachable or unavailable bridge this long (0: try once).
        #[arg(
            long,
            env = "NEXA_ENROLL_RETRY_FOR",
            default_value = "5m",
            value_name = "DURATION"
        )]
        retry_for: String,
        /// Wait this long for an administrator to approve an enrollment the bridge holds
        /// (0: do not wait); then exit 7, keeping the keys for the next run.
        #[arg(
            long,
            env = "NEXA_APPROVAL_TIMEOUT",
            default_value = "24h",
            value_name = "DURATION"
        )]
        approval_timeout: String,
        /// Re-enroll as this field technician: log in at the bridge, whose authorization lets
        /// it accept the new keys (needs --force). The password is asked on the terminal
        /// unless --password-fd or --password-file gives it.
        #[arg(long, requires = "force", value_name = "NAME")]
        user: Option<String>,
        /// Read the technician's password from this file descriptor (its first line).
        #[arg(
            long,
            requires = "user",
            conflicts_with = "password_file",
            value_name = "N"
        )]
        password_fd: Option<i32>,
        /// Read the technician's password from the first line of this file.
        #[arg(long, requires = "user", value_name = "FILE")]
        password_file: Option<PathBuf>,
    },
    /// Show enrollment state, device id, address and certificate expiry.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// The WireGuard interface described by /certs/wg0.conf.
    #[command(subcommand)]
    Wg(WgCommand),
    /// Run the agent: enroll if needed, keep the tunnel up, hold the MQTT session, renew the
    /// certificate when due (until SIGTERM).
    Run,
    /// The device certificate: when it is renewed, renewing it now.
    #[command(subcommand)]
    Cert(CertCommand),
}

#[derive(Debug, Subcommand)]
pub enum CertCommand {
    /// Says whether the device certificate is due for renewal (for timers and scripts).
    #[command(after_help = cert::NEEDS_RENEWAL_HELP)]
    NeedsRenewal,
    /// Renews the device certificate with a new key if it is due (see `status` for when).
    #[command(after_help = cert::RENEW_HELP)]
    Renew {
        /// Renew now even if it is not due yet.
        #[arg(long)]
        force: bool,
        /// Keep retrying an unreachable or unavailable bridge this long (0: try once).
        #[arg(
            long,
            env = "NEXA_RENEW_RETRY_FOR",
            default_value = "5m",
            value_name = "DURATION"
        )]
        retry_for: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum WgCommand {
    /// Create or repair the interface so it matches the profile (changes only what differs).
    Up,
    /// Remove the interface.
    Down,
    /// Show the interface, its peer, and the latest handshake.
    Show {
        #[arg(long)]
        json: bool,
    },
}

fn load_config(cli: &Cli) -> Result<AgentConfig, AgentError> {
    let (path, required) = match &cli.config {
        Some(p) => (p.clone(), true),
        None => (PathBuf::from(DEFAULT_CONFIG_PATH), false),
    };
    let over = Overrides {
        bridge_url: cli.bridge_url.clone(),
        root_fingerprint: cli.root_fingerprint.clone(),
        device_id: cli.device_id.clone(),
        certs_dir: cli.certs_dir.clone(),
        wg_interface: cli.wg_interface.clone(),
        manage_wireguard: cli.manage_wireguard,
        mqtt_url: cli.mqtt_url.clone(),
        mqtt_ca: cli.mqtt_ca.clone(),
        telemetry_interval: cli.telemetry_interval.clone(),
        state_dir: cli.state_dir.clone(),
        mqtt_reconnect_min: cli.mqtt_reconnect_min.clone(),
        mqtt_reconnect_max: cli.mqtt_reconnect_max.clone(),
        hawkbit: HawkbitFile {
            url: cli.hawkbit_url.clone(),
            tenant: cli.hawkbit_tenant.clone(),
            controller_id: cli.hawkbit_controller_id.clone(),
            auth: cli.hawkbit_auth.clone(),
            token_file: cli.hawkbit_token_file.clone(),
            ca_file: cli.hawkbit_ca.clone(),
            data_dir: cli.data_dir.clone(),
            after_install: cli.after_install.clone(),
            stall_timeout: cli.hawkbit_stall_timeout.clone(),
            ..HawkbitFile::default()
        },
        machine_uid: cli.machine_uid.clone(),
        site_code: cli.site_code.clone(),
        enrollment_key_file: cli.enrollment_key_file.clone(),
        // The key itself only ever comes from the environment: a flag would show in `ps`.
        enrollment_key: std::env::var_os("NEXA_ENROLLMENT_KEY")
            .map(|v| SecretString::new(v.to_string_lossy().into_owned())),
    };
    Ok(AgentConfig::load(&path, required, over)?)
}

/// Runs a command; returns the process exit code.
pub async fn run(cli: Cli) -> ExitCode {
    let cfg = match load_config(&cli) {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    let sysroot = PathBuf::from("/");
    match cli.command {
        Command::Enroll {
            force,
            retry_for,
            approval_timeout,
            user,
            password_fd,
            password_file,
        } => {
            let backoff = match bridge_backoff(&retry_for, "NEXA_ENROLL_RETRY_FOR") {
                Ok(b) => b,
                Err(code) => return code,
            };
            let approval = match approval_wait(&approval_timeout) {
                Ok(a) => a,
                Err(code) => return code,
            };
            let technician = match user {
                Some(user) => match technician(&cfg, user, password_fd, password_file) {
                    Ok(t) => Some(t),
                    Err(code) => return code,
                },
                None => None,
            };
            let opts = EnrollOptions {
                technician,
                ..EnrollOptions::new(force, backoff, sysroot, approval)
            };
            match enroll(&cfg, &opts).await {
                Ok(outcome) => {
                    print_outcome(&outcome);
                    if cfg.manage_wireguard {
                        tunnel_up(&cfg)
                    } else {
                        ExitCode::SUCCESS
                    }
                }
                Err(e) => fail(&e),
            }
        }
        Command::Wg(WgCommand::Up) => tunnel_up(&cfg),
        Command::Cert(CertCommand::NeedsRenewal) => cert::needs_renewal(&cfg),
        Command::Cert(CertCommand::Renew { force, retry_for }) => {
            let backoff = match bridge_backoff(&retry_for, "NEXA_RENEW_RETRY_FOR") {
                Ok(b) => b,
                Err(code) => return code,
            };
            match cert::renew(&cfg, force, backoff, sysroot).await {
                Ok(true) if cfg.manage_wireguard => tunnel_up(&cfg),
                Ok(_) => ExitCode::SUCCESS,
                Err(code) => code,
            }
        }
        Command::Run => match crate::daemon::run(cfg, crate::daemon::RunOptions::default()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&e),
        },
        Command::Wg(WgCommand::Down) => {
            match tunnel::down(&KernelLink::new(), &cfg.wg_interface) {
                Ok(true) => println!("interface {} removed", cfg.wg_interface),
                Ok(false) => println!("interface {} was not present", cfg.wg_interface),
                Err(e) => return fail(&e.into()),
            }
            ExitCode::SUCCESS
        }
        Command::Wg(WgCommand::Show { json }) => {
            match tunnel::state(&KernelLink::new(), &cfg.wg_interface) {
                Ok(state) => {
                    if json {
                        println!(
                            "{}",
                            serde_json::to_string_pretty(&show::to_json(
                                &cfg.wg_interface,
                                state.as_ref()
                            ))
                            .unwrap_or_default()
                        );
                    } else {
                        print!(
                            "{}",
                            show::render(&cfg.wg_interface, state.as_ref(), SystemTime::now())
                        );
                        if state.is_none() {
                            println!("bring it up with `nexa-agent wg up`");
                        }
                    }
                    if state.is_some() {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::from(exit::FAILURE)
                    }
                }
                Err(e) => fail(&e.into()),
            }
        }
        Command::Status { json } => match status(&cfg, &sysroot) {
            Ok(st) => {
                if json {
                    println!("{}", serde_json::to_string_pretty(&st).unwrap_or_default());
                } else {
                    print!("{}", render(&st));
                }
                if st.is_enrolled() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(exit::FAILURE)
                }
            }
            Err(e) => fail(&e),
        },
    }
}

/// Retries of the bridge for `--retry-for` (`env` names its variable in the error).
fn bridge_backoff(retry_for: &str, env: &str) -> Result<Backoff, ExitCode> {
    let give_up_after = if retry_for.trim() == "0" {
        Duration::ZERO
    } else {
        parse_duration(retry_for).map_err(|e| {
            eprintln!("nexa-agent: --retry-for / {env}: {e}");
            ExitCode::from(exit::USAGE)
        })?
    };
    Ok(Backoff {
        initial: Duration::from_secs(1),
        max: Duration::from_secs(60),
        give_up_after,
    })
}

/// The approval wait of `--approval-timeout` (`0`: do not wait).
fn approval_wait(raw: &str) -> Result<ApprovalWait, ExitCode> {
    let timeout = if raw.trim() == "0" {
        Duration::ZERO
    } else {
        parse_duration(raw).map_err(|e| {
            eprintln!("nexa-agent: --approval-timeout / NEXA_APPROVAL_TIMEOUT: {e}");
            ExitCode::from(exit::USAGE)
        })?
    };
    Ok(ApprovalWait::with_timeout(timeout))
}

/// The technician of `--user` with their password (from `--password-fd`, `--password-file`
/// or the terminal). The bridge settings are checked first, so no one types a password for a
/// command that cannot run.
fn technician(
    cfg: &AgentConfig,
    user: String,
    password_fd: Option<i32>,
    password_file: Option<PathBuf>,
) -> Result<Technician, ExitCode> {
    let user = user.trim().to_owned();
    if user.is_empty() || user.chars().any(char::is_control) {
        eprintln!("nexa-agent: --user {user:?}: give the technician's user name");
        return Err(ExitCode::from(exit::USAGE));
    }
    let bridge = cfg.bridge().map_err(|e| fail(&e.into()))?;
    let source = match (password_fd, password_file) {
        (Some(fd), _) => PasswordSource::Fd(fd),
        (None, Some(path)) => PasswordSource::File(path),
        (None, None) => PasswordSource::Terminal,
    };
    let prompt = format!("Password of {user} at {}: ", bridge.url);
    let password = read_password(&source, &user, &prompt).map_err(|e| fail(&e.into()))?;
    Ok(Technician { user, password })
}

/// Reconciles the interface with /certs and says what changed. A revoked device's tunnel
/// stays down.
fn tunnel_up(cfg: &AgentConfig) -> ExitCode {
    let certs = CertsDir::new(&cfg.certs_dir);
    if let Err(e) = crate::renew::ensure_not_revoked(&certs) {
        return fail(&e.into());
    }
    match tunnel::up(&KernelLink::new(), &certs, &cfg.wg_interface) {
        Ok(plan) if plan.is_empty() => {
            println!("interface {} already matches the profile", cfg.wg_interface);
            ExitCode::SUCCESS
        }
        Ok(plan) => {
            tracing::info!(interface = %cfg.wg_interface, changes = %plan, "WireGuard interface configured");
            println!("interface {} configured: {plan}", cfg.wg_interface);
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e.into()),
    }
}

pub(crate) fn fail(e: &AgentError) -> ExitCode {
    eprintln!("nexa-agent: {e}");
    e.to_exit_code()
}

pub(crate) fn print_outcome(outcome: &EnrollOutcome) {
    match outcome {
        EnrollOutcome::AlreadyEnrolled { id, flag, cert } => {
            println!(
                "already enrolled as {id} (address {}, certificate {} valid until {}); nothing to do. \
                 Use `nexa-agent enroll --force` to re-enroll with new keys.",
                flag.address, cert.serial_hex, flag.not_after
            );
        }
        EnrollOutcome::Enrolled {
            id,
            id_source,
            status,
            flag,
            cert: _,
            keys,
            written,
            machine_uid,
            authorized_by,
            approved,
        } => {
            println!(
                "enrolled {id} (device id from {}) at {} — {status}",
                id_source.describe(),
                flag.bridge
            );
            println!(
                "verified: certificate chain ends in the pinned root {}",
                flag.root_fingerprint
            );
            println!(
                "verified: certificate is for CN={id}, valid for client authentication, and matches device.key"
            );
            println!(
                "keys: {}",
                match keys {
                    crate::enroll::KeyOrigin::Generated => "generated on this device",
                    crate::enroll::KeyOrigin::Staged => "reused from an unfinished enrollment",
                    crate::enroll::KeyOrigin::WorkingSet => "reused from the existing set",
                }
            );
            match machine_uid {
                Some(u) => println!(
                    "machine uid: {} (from {}{})",
                    u.value(),
                    u.source_names(),
                    if u.survives_reflash() {
                        ""
                    } else {
                        "; a re-flash renews it"
                    }
                ),
                None => println!("machine uid: none (no hardware serial or /etc/machine-id)"),
            }
            if let Some(user) = authorized_by {
                println!("authorized by technician {user}");
            }
            if let Some(pid) = approved {
                println!("approved by an administrator (pending enrollment {pid})");
            }
            for path in written {
                println!("wrote {}", path.display());
            }
            println!(
                "address {} · certificate serial {} · not after {} · profile revision {}",
                flag.address, flag.serial, flag.not_after, flag.profile_revision
            );
        }
    }
}
