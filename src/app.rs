//! Application state, start-up and the serve loop.

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::auth::password::Hasher;
use crate::clock::Clock;
use crate::config::Config;
use crate::keys::{KeyError, Keys};
use crate::pages::Pages;
use crate::store::{Db, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    // transparent: StoreError already says "database", and its cause is printed once.
    #[error(transparent)]
    Store(#[from] StoreError),
    // The cause follows through `source`, so it is not repeated here.
    #[error("keys")]
    Keys(#[from] KeyError),
    #[error("templates: {0}")]
    Pages(String),
    #[error("{0}")]
    Mail(String),
    #[error("listen: {0}")]
    Io(#[from] std::io::Error),
    // fed
    #[error("{0}")]
    Upstream(String),
}

pub struct Inner {
    pub config: Config,
    pub db: Db,
    pub keys: Keys,
    pub pages: Pages,
    pub hasher: Hasher,
    pub mailer: Arc<crate::mail::Mailer>,
    pub clock: Clock,
    /// The HMAC keys for CSRF tokens and emailed codes: shared by every instance, and kept
    /// outside the database (`CLEF_SECRET_KEY` or `keys/secret.key`).
    pub hmac_key: crate::secret_key::SecretKeys,
    /// The discovery document, serialised once.
    pub discovery_json: Arc<str>,
    // fed
    /// One OpenID Connect client per configured upstream.
    pub upstreams: crate::upstream::Upstreams,
    // dcr
    /// Clients' `jwks_uri` and `sector_identifier_uri` documents, fetched and cached.
    pub fetcher: Arc<crate::remote::Fetcher>,
}

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    /// Connects, migrates, loads keys and templates.
    pub async fn build(config: Config, clock: Clock) -> Result<AppState, StartError> {
        let db = Db::connect_sized(&config.database_url, config.db_acquire_timeout, config.db_pool_size).await?;
        db.migrate().await?;
        Self::with_db(config, clock, db).await
    }

    pub async fn with_db(config: Config, clock: Clock, db: Db) -> Result<AppState, StartError> {
        let now = clock.now();
        let keys = Keys::load_or_generate(&config.keys_dir, config.max_signed_lifetime(), now)?;
        let pages = Pages::load(config.templates_dir.as_deref()).map_err(StartError::Pages)?;
        let secret = crate::secret_key::SecretKeys::load(&config)?;
        let discovery_json = crate::oauth::metadata::document(&config).to_string().into();
        let mailer = Arc::new(crate::mail::Mailer::new(&config).map_err(|e| StartError::Mail(e.to_string()))?);
        let upstreams = crate::upstream::Upstreams::from_config(&config).map_err(StartError::Upstream)?;
        // ops
        if config.metrics_enabled() {
            crate::telemetry::install();
        }
        let fetcher = Arc::new(crate::remote::Fetcher::new(&config.issuer));
        Ok(AppState(Arc::new(Inner {
            fetcher,
            mailer,
            hasher: Hasher::new(config.max_concurrent_hashes),
            hmac_key: secret,
            config,
            db,
            keys,
            pages,
            clock,
            discovery_json,
            upstreams,
        })))
    }
}

/// Serves until `shutdown` resolves; runs the periodic key reload and cleanup meanwhile.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    serve_with_metrics(listener, None, state, shutdown).await
}

/// As [`serve`], with `/metrics` alone on a second listener (`CLEF_METRICS_LISTEN`). On
/// shutdown: stop accepting, let requests in flight finish, flush queued mail, all within
/// `CLEF_SHUTDOWN_GRACE`.
pub async fn serve_with_metrics(
    listener: TcpListener,
    metrics: Option<TcpListener>,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let background = tokio::spawn(housekeeping(state.clone()));
    // bcl: the back-channel logout worker, stopped after the last request is answered.
    let (stop_backchannel, stopped) = tokio::sync::watch::channel(false);
    let backchannel = tokio::spawn(crate::backchannel::run(state.clone(), stopped));
    let metrics_task = metrics.map(|l| {
        let router = crate::telemetry::metrics_router(state.clone());
        tokio::spawn(async move {
            if let Err(e) = axum::serve(l, router).await {
                tracing::error!(error = %e, "metrics listener failed");
            }
        })
    });
    let limits = ConnLimits {
        header_timeout: state.config.header_timeout,
        body_timeout: state.config.body_timeout,
        max_connections: state.config.max_connections,
        shutdown_grace: state.config.shutdown_grace,
    };
    let router = crate::http::router(state.clone());
    let deadline = serve_connections(listener, router, limits, shutdown).await;
    background.abort();
    // bcl: a send in flight is cut off and left for the next start, never waited for long.
    let _ = stop_backchannel.send(true);
    let abort = backchannel.abort_handle();
    if tokio::time::timeout(BACKCHANNEL_STOP, backchannel).await.is_err() {
        abort.abort();
    }
    // Mail queued by the last requests (codes, notices) and retries still waiting are sent
    // now rather than lost with the process.
    if tokio::time::timeout_at(deadline, state.mailer.flush()).await.is_err() {
        tracing::warn!("shutdown grace period over; mail still queued is dropped");
    }
    if let Some(t) = metrics_task {
        t.abort();
    }
    tracing::info!("clef stopped");
    Ok(())
}

#[derive(Clone, Copy)]
struct ConnLimits {
    header_timeout: Duration,
    body_timeout: Duration,
    max_connections: usize,
    /// How long shutdown waits for requests in flight (and then mail) before dropping them.
    shutdown_grace: Duration,
}

/// How long shutdown waits for the back-channel logout worker to put its rows back.
const BACKCHANNEL_STOP: Duration = Duration::from_secs(3);

/// Our own accept loop, because `axum::serve` has no header timeout, body deadline or
/// connection cap, and a few hundred idle half-sent requests exhaust the descriptors
/// (slowloris). At the cap we stop accepting: new connections wait in the kernel backlog
/// until a slot frees, which the header timeout guarantees within `header_timeout`.
async fn serve_connections(
    listener: TcpListener,
    router: axum::Router,
    limits: ConnLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> tokio::time::Instant {
    use hyper_util::rt::{TokioIo, TokioTimer};

    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    let mut full_logged = false;
    loop {
        if slots.available_permits() == 0 && !full_logged {
            tracing::warn!(
                max = limits.max_connections,
                "connection cap reached; new connections wait (CLEF_MAX_CONNECTIONS)"
            );
            full_logged = true;
        }
        let slot = tokio::select! {
            biased;
            () = &mut shutdown => break,
            slot = slots.clone().acquire_owned() => match slot {
                Ok(s) => s,
                Err(_) => break,
            },
        };
        let (stream, addr) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors or similar: back off rather than spin, as hyper's
                    // and axum's accept loops do.
                    tracing::error!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            },
        };
        full_logged = false;
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
            use tower::ServiceExt;
            // One deadline for the whole body, however slowly it trickles in.
            let mut req = req.map(|body| axum::body::Body::new(tower_http::timeout::DeadlineBody::new(limits.body_timeout, body)));
            // What `into_make_service_with_connect_info` provides: handlers key limits on it.
            req.extensions_mut().insert(axum::extract::ConnectInfo(addr));
            router.clone().oneshot(req)
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        // The header timeout also runs while a keep-alive connection waits for its next
        // request, so idle connections are closed after it as well.
        builder.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout);
        let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(client = %addr, error = %e, "connection ended with an error");
            }
            drop(slot);
        });
    }
    // Closing the listener makes new connections fail at once rather than wait in a backlog
    // nobody reads; a load balancer moves them to another instance.
    drop(listener);
    let deadline = tokio::time::Instant::now() + limits.shutdown_grace;
    tracing::info!(
        grace_seconds = limits.shutdown_grace.as_secs(),
        "shutting down: no new connections; finishing requests in flight"
    );
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep_until(deadline) => tracing::warn!("shutdown grace period over; dropping requests in flight"),
    }
    deadline
}

async fn housekeeping(state: AppState) {
    // Several instances share one keys folder: each looks for keys another wrote this often
    // (a directory listing, and a read only when it changed).
    let mut keys_tick = tokio::time::interval(state.config.keys_reload_interval);
    let mut cleanup_tick = tokio::time::interval(Duration::from_secs(600));
    // Sealed refresh successors are wiped once their grace is over, not at the next cleanup.
    let grace = state.config.refresh_grace;
    let mut grace_tick = tokio::time::interval(Duration::from_secs(grace.max(1) as u64));
    // ops: the user gauges, one cheap query a minute and only when metrics are exported.
    let mut gauges_tick = tokio::time::interval(Duration::from_secs(60));
    keys_tick.tick().await;
    let mut resealed_for = state.hmac_key.generation();
    reseal_totp_secrets(&state).await;
    loop {
        tokio::select! {
            _ = keys_tick.tick() => {
                match state.keys.reload(state.clock.now()) {
                    Ok(true) => tracing::info!("signing keys reloaded"),
                    Ok(false) => {}
                    Err(e) => tracing::error!(error = %e, "reloading signing keys failed; keeping the current set"),
                }
                match state.hmac_key.reload() {
                    Ok(true) => tracing::info!("server secret keys reloaded"),
                    Ok(false) => {}
                    Err(e) => tracing::error!(error = %e, "reloading the server secret keys failed; keeping the current ones"),
                }
                // A request may have reloaded them early (SecretKeys::verify): reseal either way.
                if state.hmac_key.generation() != resealed_for {
                    resealed_for = state.hmac_key.generation();
                    reseal_totp_secrets(&state).await;
                }
            }
            _ = grace_tick.tick(), if grace > 0 => {
                if let Err(e) = state.db.refresh_grace_wipe(state.clock.now() - grace).await {
                    tracing::warn!(error = %e, "wiping sealed refresh successors failed");
                }
            }
            _ = cleanup_tick.tick() => {
                match state.db.cleanup(state.clock.now()).await {
                    Ok(n) if n > 0 => tracing::info!(rows = n, "expired rows deleted"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "cleanup failed"),
                }
                purge_audit(&state).await;
            }
            _ = gauges_tick.tick(), if state.config.metrics_enabled() => {
                crate::telemetry::refresh_user_gauges(&state.db, state.clock.now()).await;
            }
        }
    }
}

/// Security events past `CLEF_AUDIT_RETENTION` go; every instance may run it, the delete is
/// idempotent.
pub async fn purge_audit(state: &AppState) {
    match state.db.audit_purge(state.clock.now() - state.config.audit_retention).await {
        Ok(0) => {}
        Ok(n) => {
            crate::telemetry::audit_purged(n);
            tracing::info!(rows = n, "security events past the retention period deleted");
        }
        Err(e) => tracing::warn!(error = %e, "audit retention purge failed"),
    }
}

/// TOTP secrets sealed by an older server secret key are sealed again under the current one,
/// so the next rotation, which drops that key, loses none (crate::secret_box).
async fn reseal_totp_secrets(state: &AppState) {
    // dcr: client_secret_jwt secrets are sealed the same way.
    match reseal_client_secrets(&state.db, &state.hmac_key).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(secrets = n, "client secrets sealed again under the current server secret key"),
        Err(e) => tracing::warn!(error = %e, "sealing client secrets again failed; retried after the next key change"),
    }
    reseal_totp_only(state).await;
}

/// Seals client_secret_jwt secrets sealed by an older server secret key again under the
/// current one; returns how many.
pub async fn reseal_client_secrets(db: &Db, keys: &crate::secret_key::SecretKeys) -> Result<u64, StoreError> {
    let mut n = 0;
    for (client_id, sealed) in db.client_sealed_all().await? {
        if crate::secret_box::is_current(keys, &sealed) {
            continue;
        }
        let fresh = crate::secret_box::open(keys, client_id.as_bytes(), &sealed)
            .and_then(|plain| crate::secret_box::seal(keys, client_id.as_bytes(), &plain));
        match fresh {
            Ok(fresh) => n += u64::from(db.client_reseal(&client_id, &sealed, &fresh).await?),
            Err(_) => tracing::error!(client_id = %client_id, "a client secret opens under no server secret key"),
        }
    }
    Ok(n)
}

async fn reseal_totp_only(state: &AppState) {
    match crate::auth::totp::reseal_all(&state.db, &state.hmac_key).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(secrets = n, "TOTP secrets sealed again under the current server secret key"),
        Err(e) => tracing::warn!(error = %e, "sealing TOTP secrets again failed; retried after the next key change"),
    }
}
