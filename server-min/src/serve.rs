//! `nexa-server serve`: initialise if needed, then run the HTTPS API until SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum_server::Handle;
use axum_server::tls_rustls::RustlsConfig;

use crate::admin::AdminService;
use crate::auth::limiter::EnrollLimiter;
use crate::auth::secret::PepperError;
use crate::auth::site_cache::{SiteKeyCache, SitesStamp};
use crate::auth::tokens::TokenService;
use crate::auth::{KeyHasher, Pepper};
use crate::ca::Signer;
use crate::ca::builtin::{BuiltinCa, CaError};
use crate::ca::stepca::{StepCa, StepCaError};
use crate::clock::{Clock, SystemClock};
use crate::config::{GatewayMode, Settings};
use crate::connect::ConnectService;
use crate::datadir::DataDir;
use crate::db::Db;
use crate::decommission::{CaRevoker, DecommissionService, PeerRemoval};
use crate::enroll::site::SiteGate;
use crate::enroll::{EnrollService, GateSettings, HawkbitProvisioning};
use crate::hawkbit::{HawkbitClient, HawkbitError, TargetRegistry};
use crate::http::crl::CrlSource;
use crate::http::decommission::AdminApi;
use crate::http::{AppState, router};
use crate::init::{InitError, ensure_initialized, gateway_private_key};
use crate::renew::RenewService;
use crate::renew::client_cert::ClientCa;
use crate::sdnotify;
use crate::tls::{self, TlsError};
use crate::wg::manager::{self, GatewayConfig, GatewayHandle};
use nexa_wg::KernelLink;

/// Errors that stop the server from starting.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Pepper(#[from] PepperError),
    #[error(transparent)]
    Init(#[from] InitError),
    #[error(transparent)]
    Ca(#[from] CaError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    StepCa(#[from] StepCaError),
    #[error(
        "cannot listen on {addr}: {source}; choose another address with --listen or NEXA_LISTEN"
    )]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Hawkbit(#[from] HawkbitError),
    #[error("HTTPS server failed: {0}")]
    Server(std::io::Error),
}

/// Runs the bridge. Prints the bound address and the root fingerprint on stdout once it
/// accepts connections (the first line is `nexa-server listening on https://ADDR`).
pub async fn serve(settings: Settings) -> Result<(), ServeError> {
    let (report, db) = ensure_initialized(&settings).await?;
    let dir = DataDir::new(&settings.data_dir);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let builtin = Arc::new(BuiltinCa::load(&dir, settings.cert_lifetime)?);
    type Chosen = (
        Arc<dyn Signer>,
        Arc<rustls::ServerConfig>,
        nexa_proto::Fingerprint,
        rustls_pki_types::CertificateDer<'static>,
        Option<Arc<dyn CaRevoker>>,
    );
    let (signer, tls, fingerprint, device_root, revoker): Chosen = match &settings.stepca {
        Some(stepca) => {
            let ca = Arc::new(StepCa::connect(stepca, clock.clone()).await?);
            let device_root = ca.root_der().clone();
            let tls = match settings.tls_files.as_ref() {
                Some(files) => tls::server_config(
                    &dir,
                    &builtin,
                    &settings.tls_sans,
                    Some(files),
                    &device_root,
                )?,
                None => {
                    tls::stepca::server_config(Arc::clone(&ca), settings.tls_sans.clone()).await?
                }
            };
            let fingerprint = ca.root_fingerprint();
            (ca.clone(), tls, fingerprint, device_root, Some(ca))
        }
        None => {
            let device_root = tls::builtin_root(&dir)?;
            let tls = tls::server_config(
                &dir,
                &builtin,
                &settings.tls_sans,
                settings.tls_files.as_ref(),
                &device_root,
            )?;
            (
                builtin.clone(),
                tls,
                report.root_fingerprint,
                device_root,
                None,
            )
        }
    };
    let client_ca = ClientCa::new(&device_root).map_err(TlsError::StepCa)?;
    let gateway_key = settings
        .wg
        .public_key_override
        .clone()
        .unwrap_or(report.gateway_public_key);
    if settings.wg.endpoint_defaulted {
        tracing::warn!(endpoint = %settings.wg.endpoint, "WG_SERVER_ENDPOINT is not set; devices are told this local default");
    }
    let gateway = match &settings.gateway {
        GatewayMode::Managed(managed) => manager::spawn(
            GatewayConfig {
                interface: managed.interface.clone(),
                private_key: gateway_private_key(&dir)?,
                listen_port: managed.listen_port,
                pool: settings.wg.pool,
                reconcile_every: managed.reconcile_every,
                poll_every: manager::DEFAULT_POLL,
            },
            db.clone(),
            Arc::new(KernelLink::new()),
            clock.clone(),
        ),
        GatewayMode::External => GatewayHandle::external(),
    };
    let renew = RenewService::new(db.clone(), Arc::clone(&signer), client_ca, clock.clone());
    let service = EnrollService::new(
        db.clone(),
        signer,
        settings.wg.clone(),
        gateway_key,
        clock.clone(),
        gateway.clone(),
    );
    let registry = match &settings.integrations.hawkbit {
        Some(h) => {
            tracing::info!(url = %h.url, ddi_url = %h.ddi_url, tenant = %h.tenant, user = %h.user, "hawkBit targets are provisioned at enrollment (with a target token) and checked on connect");
            Some(HawkbitClient::new(h)?.into_registry())
        }
        None => None,
    };
    let provisioning = settings
        .integrations
        .hawkbit
        .as_ref()
        .zip(registry.clone())
        .map(|(h, registry)| HawkbitProvisioning {
            registry,
            ddi_url: h.ddi_url.to_string(),
            tenant: h.tenant.clone(),
        });
    if settings.integrations.webhook_secret.is_none() {
        tracing::info!("ThingsBoard webhook off (no THINGSBOARD_WEBHOOK_SECRET_FILE)");
    }
    let (admin, crl) = lifecycle(&settings, &db, builtin, revoker, registry.clone(), &clock);
    let connect = ConnectService::new(db.clone(), registry, clock.clone());
    let pepper = Pepper::load_or_create(&DataDir::new(&settings.data_dir))?;
    let hasher = KeyHasher::new(&pepper);
    let authz = &settings.authz;
    let sites_stamp = SitesStamp::new(DataDir::new(&settings.data_dir));
    let site_gate = SiteGate::new(
        db.clone(),
        hasher.clone(),
        Arc::new(EnrollLimiter::new(authz.limits)),
        Arc::new(SiteKeyCache::new(sites_stamp.clone())),
    );
    let gate = GateSettings {
        collision_window: authz.collision_window,
        pending_poll: authz.pending_poll,
    };
    let tokens = TokenService::new(db.clone(), hasher.clone(), clock.clone(), authz.tokens);
    let admin_ops =
        AdminService::new(db.clone(), hasher, clock.clone()).with_sites_stamp(sites_stamp);
    let app = router(AppState {
        enroll: Arc::new(
            service
                .with_broker(settings.integrations.mqtt_url.clone())
                .with_hawkbit(provisioning)
                .with_sites(site_gate, gate),
        ),
        tokens: Arc::new(tokens),
        login_limiter: Arc::new(EnrollLimiter::new(authz.limits)),
        admin_ops: Arc::new(admin_ops),
        renew: Arc::new(renew),
        gateway,
        max_body: settings.max_body_bytes,
        connect: Arc::new(connect),
        webhook_secret: settings.integrations.webhook_secret.clone(),
        admin,
        crl,
    });

    let listener =
        std::net::TcpListener::bind(settings.listen).map_err(|source| ServeError::Bind {
            addr: settings.listen,
            source,
        })?;
    listener
        .set_nonblocking(true)
        .map_err(|source| ServeError::Bind {
            addr: settings.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| ServeError::Bind {
        addr: settings.listen,
        source,
    })?;

    let handle: Handle<SocketAddr> = Handle::new();
    tokio::spawn(shutdown_on_signal(handle.clone()));
    let mut server = axum_server::from_tcp_rustls(listener, RustlsConfig::from_config(tls))
        .map_err(|source| ServeError::Bind { addr, source })?
        .handle(handle);
    // Slow or idle clients lose their connection instead of holding it forever.
    server
        .http_builder()
        .http1()
        .keep_alive(true)
        .header_read_timeout(Duration::from_secs(30));

    println!("nexa-server listening on https://{addr}");
    println!("root CA fingerprint: {fingerprint}");
    tracing::info!(%addr, %fingerprint, subnet = %settings.wg.pool.subnet(), "serving");
    sdnotify::ready(addr);
    let watchdog = sdnotify::spawn_watchdog();
    let served = server
        .serve(app.into_make_service_with_connect_info::<SocketAddr>())
        .await;
    if let Some(w) = watchdog {
        w.abort();
    }
    served.map_err(ServeError::Server)?;
    db.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// The certificate life cycle's part of the API: decommission (admin) and the CRL.
fn lifecycle(
    settings: &Settings,
    db: &Db,
    builtin: Arc<BuiltinCa>,
    revoker: Option<Arc<dyn CaRevoker>>,
    registry: Option<Arc<dyn TargetRegistry>>,
    clock: &Arc<dyn Clock>,
) -> (Arc<AdminApi>, Arc<CrlSource>) {
    if settings.admin_token.is_none() {
        tracing::info!(
            "admin API off (no NEXA_ADMIN_TOKEN_FILE): DELETE /api/devices/{{id}} answers 503"
        );
    }
    let crl = match &settings.stepca {
        Some(s) => CrlSource::StepCa {
            url: s.url.to_string(),
        },
        None => CrlSource::Builtin {
            ca: builtin,
            db: db.clone(),
        },
    };
    let service = DecommissionService::new(
        db.clone(),
        revoker,
        registry,
        PeerRemoval::from(&settings.gateway),
        clock.clone(),
    );
    let admin = AdminApi {
        token: settings.admin_token.clone(),
        decommission: service,
    };
    (Arc::new(admin), Arc::new(crl))
}

async fn shutdown_on_signal(handle: Handle<SocketAddr>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop the server with SIGKILL");
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!("shutting down");
    sdnotify::stopping();
    handle.graceful_shutdown(Some(Duration::from_secs(10)));
}
