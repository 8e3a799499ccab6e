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
        Ok(AppState(Arc::new(Inner {
            mailer,
            hasher: Hasher::new(config.max_concurrent_hashes),
            hmac_key: secret,
            config,
            db,
            keys,
            pages,
            clock,
            discovery_json,
        })))
    }
}

/// Serves until `shutdown` resolves; runs the periodic key reload and cleanup meanwhile.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let background = tokio::spawn(housekeeping(state.clone()));
    let limits = ConnLimits {
        header_timeout: state.config.header_timeout,
        body_timeout: state.config.body_timeout,
        max_connections: state.config.max_connections,
    };
    let router = crate::http::router(state);
    serve_connections(listener, router, limits, shutdown).await;
    background.abort();
    Ok(())
}

#[derive(Clone, Copy)]
struct ConnLimits {
    header_timeout: Duration,
    body_timeout: Duration,
    max_connections: usize,
}

/// How long shutdown waits for requests in flight before dropping them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// Our own accept loop, because `axum::serve` has no header timeout, body deadline or
/// connection cap, and a few hundred idle half-sent requests exhaust the descriptors
/// (slowloris). At the cap we stop accepting: new connections wait in the kernel backlog
/// until a slot frees, which the header timeout guarantees within `header_timeout`.
async fn serve_connections(
    listener: TcpListener,
    router: axum::Router,
    limits: ConnLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
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
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(SHUTDOWN_GRACE) => tracing::warn!("shutdown grace period over; dropping requests in flight"),
    }
}

async fn housekeeping(state: AppState) {
    // Several instances share one keys folder: each looks for keys another wrote this often
    // (a directory listing, and a read only when it changed).
    let mut keys_tick = tokio::time::interval(state.config.keys_reload_interval);
    let mut cleanup_tick = tokio::time::interval(Duration::from_secs(600));
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
            _ = cleanup_tick.tick() => {
                match state.db.cleanup(state.clock.now()).await {
                    Ok(n) if n > 0 => tracing::info!(rows = n, "expired rows deleted"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "cleanup failed"),
                }
            }
        }
    }
}

/// TOTP secrets sealed by an older server secret key are sealed again under the current one,
/// so the next rotation, which drops that key, loses none (crate::secret_box).
async fn reseal_totp_secrets(state: &AppState) {
    match crate::auth::totp::reseal_all(&state.db, &state.hmac_key).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(secrets = n, "TOTP secrets sealed again under the current server secret key"),
        Err(e) => tracing::warn!(error = %e, "sealing TOTP secrets again failed; retried after the next key change"),
    }
}
