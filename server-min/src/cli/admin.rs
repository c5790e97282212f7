//! `nexa-server site …`, `enrollment …` and `user …`: the admin API's operations on the data
//! directory, for operators without HTTP tooling. Each runs the same service as the HTTP API,
//! audited as `operator:<login>` from `cli`.

use clap::Subcommand;
use serde::Serialize;

use super::CliError;
use super::password::{self, PasswordArgs};
use crate::admin::pending::Verdict;
use crate::admin::{Actor, AdminError, AdminService};
use crate::auth::Role;
use crate::db::pending::PendingRow;
use crate::db::sites::SiteSummary;

#[derive(Debug, Subcommand)]
pub enum SiteCommand {
    /// Create a site and mint its first enrollment key (shown once: put it in the device image).
    Add {
        /// The site code devices are configured with (1-64 of A-Z a-z 0-9 . _ -).
        code: String,
        /// Display name.
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// List sites with their key version and fingerprint.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show one site.
    Show {
        code: String,
        #[arg(long)]
        json: bool,
    },
    /// Change a site's display name.
    Rename {
        code: String,
        #[arg(long)]
        name: Option<String>,
    },
    /// Delete a site no device belongs to.
    Remove { code: String },
    /// Mint a new enrollment key (shown once); the old one stops working at once.
    RotateKey {
        code: String,
        #[arg(long)]
        json: bool,
    },
    /// The active key's version and fingerprint, e.g. `v2 (1A2B)` (never the key).
    Key { code: String },
}

#[derive(Debug, Subcommand)]
pub enum EnrollmentCommand {
    /// Enrollments held by the collision gate.
    List {
        /// pending (default), approved, rejected or completed.
        #[arg(long)]
        state: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Approve: the device's next poll completes its enrollment (same id and address; the old
    /// certificate is revoked).
    Approve { id: String },
    /// Reject: the device's next poll is refused.
    Reject { id: String },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a user; the password is asked on the terminal unless given by file or stdin.
    Add {
        username: String,
        /// admin or technician.
        #[arg(long, default_value = "technician")]
        role: String,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// Set a new password; the user's tokens stop working.
    Passwd {
        username: String,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// Disable a user: logins and every token are refused at once.
    Disable { username: String },
    /// Enable a disabled user again.
    Enable { username: String },
    /// List users.
    List {
        #[arg(long)]
        json: bool,
    },
}

fn failed(e: AdminError) -> CliError {
    match e {
        AdminError::Db(_) | AdminError::Random(_) | AdminError::Task(_) => {
            CliError::Failed(crate::error_chain(&e))
        }
        _ => CliError::Usage(e.to_string()),
    }
}

fn print_json<T: Serialize>(v: &T) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

fn print_site(s: &SiteSummary) {
    let key = match (s.key_version, &s.key_fingerprint) {
        (Some(v), Some(f)) => crate::auth::site_key::display_fingerprint(v, f),
        _ => "no active key".into(),
    };
    println!(
        "{:<24} {:<14} {:>4} devices  {}",
        s.site.site_code,
        key,
        s.devices,
        s.site.name.as_deref().unwrap_or("")
    );
}

pub async fn site(svc: &AdminService, cmd: SiteCommand) -> Result<(), CliError> {
    let actor = Actor::cli();
    match cmd {
        SiteCommand::Add { code, name, json } => {
            let minted = svc
                .create_site(&code, name.as_deref(), &actor)
                .await
                .map_err(failed)?;
            print_minted(&minted, json, "created");
        }
        SiteCommand::List { json } => {
            let sites = svc.list_sites().await.map_err(failed)?;
            if json {
                print_json(&sites);
            } else {
                sites.iter().for_each(print_site);
            }
        }
        SiteCommand::Show { code, json } => {
            let s = svc.site(&code).await.map_err(failed)?;
            if json {
                print_json(&s);
            } else {
                print_site(&s);
            }
        }
        SiteCommand::Rename { code, name } => {
            svc.rename_site(&code, name.as_deref(), &actor)
                .await
                .map_err(failed)?;
            println!("site {code} renamed");
        }
        SiteCommand::Remove { code } => {
            svc.delete_site(&code, &actor).await.map_err(failed)?;
            println!("site {code} removed");
        }
        SiteCommand::RotateKey { code, json } => {
            let minted = svc.rotate_key(&code, &actor).await.map_err(failed)?;
            print_minted(&minted, json, "rotated; the previous key no longer works");
        }
        SiteCommand::Key { code } => match svc.key_info(&code).await.map_err(failed)? {
            Some(info) => println!("{}", info.display),
            None => {
                return Err(CliError::Usage(format!(
                    "site {code} has no active enrollment key; `nexa-server site rotate-key {code}` mints one"
                )));
            }
        },
    }
    Ok(())
}

fn print_minted(m: &crate::admin::sites::MintedKey, json: bool, what: &str) {
    if json {
        print_json(m);
        return;
    }
    println!("site {} {what}", m.site_code);
    println!("enrollment key {}:", m.display);
    println!("{}", m.enrollment_key);
    eprintln!(
        "This is the only time the key is shown. Put it on the site's devices (enrollment_key_file, \
         or NEXA_ENROLLMENT_KEY) together with site_code = {:?}.",
        m.site_code
    );
}

fn print_pending(p: &PendingRow) {
    println!(
        "{}  {:<10} device {}  hostname {}  from {}  {}",
        p.id,
        p.state,
        p.device_id,
        p.hostname.as_deref().unwrap_or("-"),
        p.source.as_deref().unwrap_or("-"),
        p.reason
    );
}

pub async fn enrollment(svc: &AdminService, cmd: EnrollmentCommand) -> Result<(), CliError> {
    let actor = Actor::cli();
    let (id, verdict) = match cmd {
        EnrollmentCommand::List { state, json } => {
            let rows = svc.list_pending(state.as_deref()).await.map_err(failed)?;
            if json {
                print_json(&rows);
            } else {
                rows.iter().for_each(print_pending);
            }
            return Ok(());
        }
        EnrollmentCommand::Approve { id } => (id, Verdict::Approve),
        EnrollmentCommand::Reject { id } => (id, Verdict::Reject),
    };
    let row = svc
        .decide_pending(&id, verdict, &actor)
        .await
        .map_err(failed)?;
    println!(
        "pending enrollment {} of device {} {}",
        row.id, row.device_id, row.state
    );
    Ok(())
}

pub async fn user(svc: &AdminService, cmd: UserCommand) -> Result<(), CliError> {
    let actor = Actor::cli();
    match cmd {
        UserCommand::Add {
            username,
            role,
            password: how,
        } => {
            let role = Role::parse(&role).ok_or_else(|| {
                CliError::Usage(format!(
                    "--role {role:?} is unknown: use admin or technician"
                ))
            })?;
            let pw = password::read(&how, &username)?;
            svc.add_user(&username, role, pw, &actor)
                .await
                .map_err(failed)?;
            println!("user {username} added ({})", role.as_str());
        }
        UserCommand::Passwd {
            username,
            password: how,
        } => {
            let pw = password::read(&how, &username)?;
            svc.set_password(&username, pw, &actor)
                .await
                .map_err(failed)?;
            println!("password of {username} changed; its tokens no longer work");
        }
        UserCommand::Disable { username } => {
            svc.set_disabled(&username, true, &actor)
                .await
                .map_err(failed)?;
            println!("user {username} disabled; its tokens no longer work");
        }
        UserCommand::Enable { username } => {
            svc.set_disabled(&username, false, &actor)
                .await
                .map_err(failed)?;
            println!("user {username} enabled");
        }
        UserCommand::List { json } => {
            let users = svc.list_users().await.map_err(failed)?;
            if json {
                print_json(&users);
            } else {
                for u in users {
                    println!(
                        "{:<24} {:<11} {}",
                        u.username,
                        u.role,
                        if u.disabled_at.is_some() {
                            "disabled"
                        } else {
                            "enabled"
                        }
                    );
                }
            }
        }
    }
    Ok(())
}
