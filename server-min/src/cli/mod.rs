//! Command line of `nexa-server`: argument types and dispatch. Each command group has its
//! own module.

mod admin;
mod decommission;
mod device;
mod password;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::admin::AdminService;
use crate::auth::site_cache::SitesStamp;
use crate::auth::{KeyHasher, Pepper};
use crate::config::{ConfigError, GatewayMode, Locations, Settings, SettingsArgs};
use crate::datadir::DataDir;
use crate::db::{Db, DbError};
use crate::init::{InitError, ensure_initialized, root_fingerprint};
use crate::serve::{ServeError, serve};
use nexa_wg::{KernelLink, WgLink, show};

/// Exit code for a usage or configuration error (also clap's).
pub const EXIT_USAGE: u8 = 2;
/// Exit code for a runtime failure.
pub const EXIT_FAILURE: u8 = 1;
/// Exit code of `device decommission` when a step failed (re-run it to complete).
pub const EXIT_INCOMPLETE: u8 = 3;

#[derive(Debug, Parser)]
#[command(
    name = "nexa-server",
    version,
    about = "Nexa bridge: device enrollment, built-in CA, WireGuard addresses"
)]
#[command(
    after_help = "Exit status: 0 success, 1 runtime failure, 2 usage or configuration error, 3 `device decommission` left a step failed (run it again)."
)]
pub struct Cli {
    /// Data directory (CA, keys, database).
    #[arg(long, global = true, env = "NEXA_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Config file (TOML); default DIR/server.toml when present.
    #[arg(long, global = true, env = "NEXA_SERVER_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Log filter, e.g. info or nexa_server=debug (also NEXA_LOG).
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
    /// Create the CA, gateway WireGuard key and database once; print the root fingerprint.
    Init(InitArgs),
    /// Run the enrollment API (initialises on first start).
    Serve(ServeArgs),
    /// Certificate authority.
    #[command(subcommand)]
    Ca(CaCommand),
    /// Register and inspect devices.
    #[command(subcommand)]
    Device(device::DeviceCommand),
    /// Sites and their enrollment keys (zero-touch enrollment).
    #[command(subcommand)]
    Site(admin::SiteCommand),
    /// Enrollments held by the collision gate: list, approve, reject.
    #[command(subcommand)]
    Enrollment(admin::EnrollmentCommand),
    /// Users: administrators and field technicians.
    #[command(subcommand)]
    User(admin::UserCommand),
    /// Show the audit trail.
    Audit(device::AuditArgs),
    /// The WireGuard gateway interface this server manages.
    #[command(subcommand)]
    Gateway(GatewayCommand),
}

#[derive(Debug, Subcommand)]
pub enum GatewayCommand {
    /// Show the gateway interface and its peers as the kernel has them (needs CAP_NET_ADMIN).
    Show {
        #[command(flatten)]
        settings: SettingsArgs,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, clap::Args)]
pub struct InitArgs {
    #[command(flatten)]
    pub settings: SettingsArgs,
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub settings: SettingsArgs,
}

#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Print the root CA SHA-256 fingerprint devices pin.
    Fingerprint,
}

/// A command failure, carrying its exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Init(#[from] InitError),
    #[error(transparent)]
    Serve(#[from] ServeError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Failed(String),
    /// Some steps of a decommission failed; a re-run completes them.
    #[error("{0}")]
    Incomplete(String),
}

impl CliError {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            CliError::Config(_) | CliError::Usage(_) => ExitCode::from(EXIT_USAGE),
            CliError::Init(InitError::SubnetChanged { .. }) => ExitCode::from(EXIT_USAGE),
            CliError::Incomplete(_) => ExitCode::from(EXIT_INCOMPLETE),
            _ => ExitCode::from(EXIT_FAILURE),
        }
    }
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    let (loc, file) = Locations::resolve(cli.data_dir.as_deref(), cli.config.as_deref())?;
    match cli.command {
        Command::Init(args) => {
            let settings = Settings::resolve(&loc, &args.settings, file)?;
            let (report, db) = ensure_initialized(&settings).await?;
            db.close().await;
            let what = if report.created_ca {
                "initialised"
            } else {
                "already initialised"
            };
            println!("data directory {} {what}", settings.data_dir.display());
            println!(
                "gateway WireGuard public key: {}",
                report.gateway_public_key
            );
            println!("root CA fingerprint: {}", report.root_fingerprint);
            Ok(())
        }
        Command::Serve(args) => {
            let settings = Settings::resolve(&loc, &args.settings, file)?;
            serve(settings).await?;
            Ok(())
        }
        Command::Ca(CaCommand::Fingerprint) => {
            let dir = DataDir::new(&loc.data_dir);
            require_initialised(&dir)?;
            println!("{}", root_fingerprint(&dir)?);
            Ok(())
        }
        Command::Device(device::DeviceCommand::Decommission(args)) => {
            let settings = Settings::resolve(&loc, &args.settings, file)?;
            decommission::run(&settings, *args).await
        }
        Command::Device(cmd) => {
            let db = open_existing(&loc.data_dir).await?;
            let result = device::run(&db, cmd).await;
            db.close().await;
            result
        }
        Command::Site(cmd) => {
            let (svc, db) = admin_service(&loc.data_dir).await?;
            let result = admin::site(&svc, cmd).await;
            db.close().await;
            result
        }
        Command::Enrollment(cmd) => {
            let (svc, db) = admin_service(&loc.data_dir).await?;
            let result = admin::enrollment(&svc, cmd).await;
            db.close().await;
            result
        }
        Command::User(cmd) => {
            let (svc, db) = admin_service(&loc.data_dir).await?;
            let result = admin::user(&svc, cmd).await;
            db.close().await;
            result
        }
        Command::Audit(args) => {
            let db = open_existing(&loc.data_dir).await?;
            let result = device::audit(&db, args).await;
            db.close().await;
            result
        }
        Command::Gateway(GatewayCommand::Show { settings, json }) => {
            let settings = Settings::resolve(&loc, &settings, file)?;
            gateway_show(&settings, json)
        }
    }
}

fn gateway_show(settings: &Settings, as_json: bool) -> Result<(), CliError> {
    let GatewayMode::Managed(gw) = &settings.gateway else {
        return Err(CliError::Usage(
            "the gateway is external (--gateway external or WG_SERVER_PUBLIC_KEY): this server manages no interface".into(),
        ));
    };
    let state = KernelLink::new()
        .read(&gw.interface)
        .map_err(|e| CliError::Failed(format!("gateway interface {}: {e}", gw.interface)))?;
    if as_json {
        println!("{}", show::to_json(&gw.interface, state.as_ref()));
    } else if state.is_some() {
        print!(
            "{}",
            show::render(&gw.interface, state.as_ref(), std::time::SystemTime::now())
        );
    }
    if state.is_none() {
        return Err(CliError::Failed(format!(
            "gateway interface {} does not exist; `nexa-server serve` creates it",
            gw.interface
        )));
    }
    Ok(())
}

fn require_initialised(dir: &DataDir) -> Result<(), CliError> {
    if dir.root_cert().is_file() && dir.database().is_file() {
        Ok(())
    } else {
        Err(CliError::Usage(format!(
            "{} is not an initialised data directory; run `nexa-server init --data-dir {}` first",
            dir.path().display(),
            dir.path().display()
        )))
    }
}

async fn open_existing(data_dir: &Path) -> Result<Db, CliError> {
    let dir = DataDir::new(data_dir);
    require_initialised(&dir)?;
    Ok(Db::open_sqlite(&dir.database()).await?)
}

/// The administration service on an initialised data directory.
async fn admin_service(data_dir: &Path) -> Result<(AdminService, Db), CliError> {
    let db = open_existing(data_dir).await?;
    let pepper = Pepper::load_or_create(&DataDir::new(data_dir))
        .map_err(|e| CliError::Failed(crate::error_chain(&e)))?;
    let svc = AdminService::new(
        db.clone(),
        KeyHasher::new(&pepper),
        std::sync::Arc::new(crate::clock::SystemClock),
    )
    .with_sites_stamp(SitesStamp::new(DataDir::new(data_dir)));
    Ok((svc, db))
}

/// The operator running a CLI command, for the audit trail.
pub fn operator() -> String {
    let user = std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "unknown".into());
    format!("operator:{user}")
}
