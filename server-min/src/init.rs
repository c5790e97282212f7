//! First-start initialisation of the data directory: CA, gateway WireGuard key, database.
//!
//! Idempotent: every piece is created only if missing, so `init` and every `serve` call the
//! same function. The root certificate is written last; a directory without it is treated as
//! never initialised and its CA files are created afresh (nothing can have been issued by an
//! authority whose root was never written).

use nexa_proto::{Fingerprint, WgPublicKey};
use nexa_wg::PrivateKey;
use zeroize::Zeroizing;

use crate::ca::builtin::{CaError, create_ca, pem_to_der};
use crate::config::Settings;
use crate::datadir::{DataDir, DataDirError};
use crate::db::{Db, DbError, settings as db_settings};
use crate::wg::gateway::generate_keypair;

/// Errors of initialisation, each naming the file or setting to fix.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    #[error(transparent)]
    Ca(#[from] CaError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(
        "{path} does not hold a base64 WireGuard private key of 32 bytes; restore it from backup"
    )]
    BadWgKey { path: String },
    #[error(
        "WG_SUBNET is {configured} but this bridge allocated addresses from {pinned}; \
         devices hold those addresses, so set WG_SUBNET={pinned} again (renumbering is not supported)"
    )]
    SubnetChanged { pinned: String, configured: String },
}

/// What initialisation found or made.
#[derive(Debug, Clone)]
pub struct InitReport {
    pub created_ca: bool,
    pub created_wg_key: bool,
    pub root_fingerprint: Fingerprint,
    pub gateway_public_key: WgPublicKey,
}

/// Makes sure the data directory is complete and the database is migrated.
pub async fn ensure_initialized(settings: &Settings) -> Result<(InitReport, Db), InitError> {
    let dir = DataDir::new(&settings.data_dir);
    dir.create_layout()?;

    let created_ca = !dir.root_cert().is_file();
    if created_ca {
        let m = create_ca(&settings.org)?;
        dir.write_secret(&dir.root_key(), m.root_key_pem.as_bytes())?;
        dir.write_secret(&dir.issuing_key(), m.issuing_key_pem.as_bytes())?;
        dir.write_public(&dir.issuing_cert(), m.issuing_pem.as_bytes())?;
        dir.write_public(&dir.root_cert(), m.root_pem.as_bytes())?;
        tracing::info!(path = %dir.path().display(), "created root CA and issuing CA");
    }
    let root_fingerprint = root_fingerprint(&dir)?;

    let created_wg_key = !dir.wg_private_key().is_file();
    if created_wg_key {
        let (private, public) = generate_keypair();
        dir.write_secret(
            &dir.wg_private_key(),
            format!("{}\n", private.as_str()).as_bytes(),
        )?;
        dir.write_public(&dir.wg_public_key(), format!("{public}\n").as_bytes())?;
        tracing::info!(public_key = %public, "created gateway WireGuard key pair");
    }
    let gateway_public_key = gateway_public_key(&dir)?;

    let db = Db::open_sqlite(&dir.database()).await?;
    pin_subnet(&db, settings).await?;

    Ok((
        InitReport {
            created_ca,
            created_wg_key,
            root_fingerprint,
            gateway_public_key,
        },
        db,
    ))
}

/// SHA-256 fingerprint of the root CA in `dir`.
pub fn root_fingerprint(dir: &DataDir) -> Result<Fingerprint, InitError> {
    let pem = dir.read_string(&dir.root_cert())?;
    let der = pem_to_der(&pem).map_err(|reason| CaError::Material {
        path: dir.root_cert().display().to_string(),
        reason,
    })?;
    Ok(Fingerprint::of_der(&der))
}

/// The gateway's private key, from its file.
pub fn gateway_private_key(dir: &DataDir) -> Result<PrivateKey, InitError> {
    let path = dir.wg_private_key();
    let text = Zeroizing::new(dir.read_string(&path)?);
    PrivateKey::from_base64(&text).map_err(|_| InitError::BadWgKey {
        path: path.display().to_string(),
    })
}

/// The gateway's public key, derived from its private key file.
pub fn gateway_public_key(dir: &DataDir) -> Result<WgPublicKey, InitError> {
    Ok(gateway_private_key(dir)?.public_key())
}

async fn pin_subnet(db: &Db, settings: &Settings) -> Result<(), InitError> {
    let configured = settings.wg.pool.subnet().to_string();
    let mut tx = db.begin_write().await?;
    match db_settings::get(&mut tx, db_settings::WG_SUBNET).await? {
        Some(pinned) if pinned != configured => {
            return Err(InitError::SubnetChanged { pinned, configured });
        }
        Some(_) => {}
        None => db_settings::put(&mut tx, db_settings::WG_SUBNET, &configured).await?,
    }
    tx.commit().await.map_err(|source| DbError::Query {
        doing: "pinning the subnet",
        source,
    })?;
    Ok(())
}
