//! Application state, start-up and the serve loop.

use std::net::SocketAddr;
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
    #[error("database: {0}")]
    Store(#[from] StoreError),
    #[error("keys: {0}")]
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
    /// Shared by every instance (stored in the database): CSRF tokens and other MACs.
    pub hmac_key: Vec<u8>,
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
        let db = Db::connect(&config.database_url).await?;
        db.migrate().await?;
        Self::with_db(config, clock, db).await
    }

    pub async fn with_db(config: Config, clock: Clock, db: Db) -> Result<AppState, StartError> {
        let now = clock.now();
        let keys = Keys::load_or_generate(&config.keys_dir, config.max_signed_lifetime(), now)?;
        let pages = Pages::load(config.templates_dir.as_deref()).map_err(StartError::Pages)?;
        let secret = db.setting_or_insert("hmac_key", &crate::secret::random_token(32)).await?;
        let discovery_json = crate::oauth::metadata::document(&config).to_string().into();
        let mailer = Arc::new(crate::mail::Mailer::new(&config).map_err(|e| StartError::Mail(e.to_string()))?);
        Ok(AppState(Arc::new(Inner {
            mailer,
            hasher: Hasher::new(config.max_concurrent_hashes),
            hmac_key: secret.into_bytes(),
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
    let app = crate::http::router(state).into_make_service_with_connect_info::<SocketAddr>();
    let result = axum::serve(listener, app).with_graceful_shutdown(shutdown).await;
    background.abort();
    result.map_err(StartError::Io)
}

async fn housekeeping(state: AppState) {
    let mut keys_tick = tokio::time::interval(Duration::from_secs(30));
    let mut cleanup_tick = tokio::time::interval(Duration::from_secs(600));
    keys_tick.tick().await;
    loop {
        tokio::select! {
            _ = keys_tick.tick() => {
                match state.keys.reload(state.clock.now()) {
                    Ok(true) => tracing::info!("signing keys reloaded"),
                    Ok(false) => {}
                    Err(e) => tracing::error!(error = %e, "reloading signing keys failed; keeping the current set"),
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
