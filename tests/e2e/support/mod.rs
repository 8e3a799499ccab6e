//! The e2e harness: a real clef on 127.0.0.1:0 per test, a real database per test, a
//! cookie-keeping browser, and the `openidconnect` crate as the relying party.

#![allow(dead_code)]

pub mod browser;
pub mod rp;
pub mod smtp;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use clef::admin::{ClientSpec, CreatedClient, UserSpec};
use clef::app::AppState;
use clef::clock::Clock;
use clef::config::{Config, RawConfig};
use tempfile::TempDir;
use tokio::sync::oneshot;

pub use browser::Browser;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct TestServer {
    pub issuer: String,
    /// Every mail the server sends arrives here.
    pub mail: smtp::Mailbox,
    pub state: AppState,
    pub clock: Clock,
    pub backend: Backend,
    dir: TempDir,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    pg_database: Option<String>,
}

/// The PostgreSQL server tests use. Required: the suite fails rather than skip it.
pub fn postgres_admin_url() -> String {
    std::env::var("CLEF_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// Generating RSA keys per test is slow; one set is made per test process and copied.
fn shared_keys() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("clef-e2e-keys-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        clef::keys::Keys::load_or_generate(&dir, 3600, Clock::default().now()).unwrap();
        dir
    })
}

pub fn copy_keys(to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(shared_keys()).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

pub async fn create_pg_database() -> (String, String) {
    use sqlx::Connection;
    let admin = postgres_admin_url();
    let name = format!("clef_t_{}", clef::secret::random_token(9).to_lowercase().replace(['-', '_'], "x"));
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {admin} is required for the e2e suite (set CLEF_TEST_POSTGRES_URL): {e}"));
    sqlx::query(sqlx::AssertSqlSafe(format!("create database {name}")))
        .execute(&mut conn)
        .await
        .unwrap();
    let base = admin.rsplit_once('/').map(|(b, _)| b.to_owned()).unwrap();
    (name.clone(), format!("{base}/{name}"))
}

pub async fn drop_pg_database(name: &str) {
    use sqlx::Connection;
    if let Ok(mut conn) = sqlx::PgConnection::connect(&postgres_admin_url()).await {
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!("drop database if exists {name} with (force)")))
            .execute(&mut conn)
            .await;
    }
}

impl TestServer {
    pub async fn start(backend: Backend) -> TestServer {
        Self::start_with(backend, |_| {}).await
    }

    /// Starts with defaults, then lets the test adjust the raw settings.
    pub async fn start_with(backend: Backend, adjust: impl FnOnce(&mut RawConfig)) -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        Self::start_on(backend, listener, issuer, adjust).await
    }

    /// As `start_with`, on a listener the test bound first (so it can register this server's
    /// URLs elsewhere before it starts), under `issuer` (e.g. `http://localhost:{port}`, a
    /// cookie host of its own beside another server on 127.0.0.1).
    pub async fn start_on(
        backend: Backend,
        listener: tokio::net::TcpListener,
        issuer: String,
        adjust: impl FnOnce(&mut RawConfig),
    ) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let keys_dir = dir.path().join("keys");
        copy_keys(&keys_dir);
        let (pg_database, database_url) = match backend {
            Backend::Sqlite => (None, format!("sqlite://{}", dir.path().join("clef.db").display())),
            Backend::Postgres => {
                let (name, url) = create_pg_database().await;
                (Some(name), url)
            }
        };
        let mail = smtp::Mailbox::start().await;
        let mut raw = RawConfig {
            issuer: Some(issuer.clone()),
            smtp_url: Some(mail.url()),
            database_url: Some(database_url),
            keys_dir: Some(keys_dir.display().to_string()),
            max_concurrent_hashes: Some(4),
            ..RawConfig::default()
        };
        adjust(&mut raw);
        let config: Config = raw.validate().unwrap();
        let clock = Clock::default();
        let state = AppState::build(config, clock.clone()).await.unwrap();
        mail.watch(state.mailer.clone());
        let (tx, rx) = oneshot::channel::<()>();
        let serving = state.clone();
        let task = tokio::spawn(async move {
            clef::app::serve(listener, serving, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        TestServer {
            issuer,
            mail,
            state,
            clock,
            backend,
            dir,
            shutdown: Some(tx),
            task: Some(task),
            pg_database,
        }
    }

    /// Stops the server and drops a PostgreSQL test database.
    pub async fn finish(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
        self.state.db.close().await;
        if let Some(name) = self.pg_database.take() {
            drop_pg_database(&name).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn browser(&self) -> Browser {
        Browser::new(&self.issuer)
    }

    /// Registers a client the way `clef clients create` does.
    pub async fn client(&self, spec: ClientSpec) -> CreatedClient {
        clef::admin::create_client(&self.state.db, &spec, self.clock.now()).await.unwrap()
    }

    /// A confidential client with one loopback redirect URI.
    pub async fn confidential(&self, name: &str) -> CreatedClient {
        self.client(ClientSpec {
            name: name.into(),
            redirect_uris: vec![format!("http://127.0.0.1/{name}/cb")],
            post_logout_redirect_uris: vec![format!("http://127.0.0.1/{name}/bye")],
            ..ClientSpec::default()
        })
        .await
    }

    /// A first-party client (no consent step) and its relying party.
    pub async fn first_party(&self) -> rp::Rp {
        let created = self
            .client(ClientSpec {
                name: "fp".into(),
                redirect_uris: vec!["http://127.0.0.1/fp/cb".into()],
                skip_consent: true,
                ..ClientSpec::default()
            })
            .await;
        rp::Rp::discover(&self.issuer, &created, "http://127.0.0.1/fp/cb").await
    }

    /// A first-party client created with `--require-2fa`, named "Strict app".
    pub async fn strict_client(&self) -> rp::Rp {
        let created = self
            .client(ClientSpec {
                name: "Strict app".into(),
                redirect_uris: vec!["http://127.0.0.1/strict/cb".into()],
                skip_consent: true,
                require_2fa: true,
                ..ClientSpec::default()
            })
            .await;
        rp::Rp::discover(&self.issuer, &created, "http://127.0.0.1/strict/cb").await
    }

    pub async fn user(&self, email: &str, password: &str) -> String {
        self.user_with(UserSpec {
            email: email.into(),
            password: Some(password.into()),
            name: Some("Ana Test".into()),
            ..UserSpec::default()
        })
        .await
    }

    pub async fn user_with(&self, spec: UserSpec) -> String {
        clef::admin::create_user(&self.state.db, &self.state.hasher, &spec, self.clock.now())
            .await
            .unwrap()
    }
}

/// Runs each listed test on SQLite and on PostgreSQL, each with its own server and database.
#[macro_export]
macro_rules! e2e {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let h = $crate::support::TestServer::start($crate::support::Backend::Sqlite).await;
                    super::$name(&h).await;
                    h.finish().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let h = $crate::support::TestServer::start($crate::support::Backend::Postgres).await;
                    super::$name(&h).await;
                    h.finish().await;
                }
            )*
        }
    };
}

// bcl: a restart on the same database, keys and address, for restart-safety tests.
impl TestServer {
    /// Stops the server (gracefully, as SIGTERM does) and starts it again on the same
    /// database, keys folder, issuer address and clock. Returns how long the stop took.
    pub async fn restart(&mut self) -> std::time::Duration {
        let begun = std::time::Instant::now();
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
        let stopped = begun.elapsed();
        self.state.db.close().await;
        let addr = self.issuer.trim_start_matches("http://").to_owned();
        // The port was just released; binding it again is normally immediate (SO_REUSEADDR).
        let mut listener = None;
        for _ in 0..50 {
            match tokio::net::TcpListener::bind(&addr).await {
                Ok(l) => {
                    listener = Some(l);
                    break;
                }
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
            }
        }
        let listener = listener.expect("the issuer's port again");
        let state = AppState::build(self.state.config.clone(), self.clock.clone()).await.unwrap();
        self.mail.watch(state.mailer.clone());
        let (tx, rx) = oneshot::channel::<()>();
        let serving = state.clone();
        self.task = Some(tokio::spawn(async move {
            clef::app::serve(listener, serving, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        }));
        self.shutdown = Some(tx);
        self.state = state;
        stopped
    }
}
