//! Persistence: the only module that knows SQLite and PostgreSQL both exist.

mod attempts;
mod backchannel; // bcl
// ops
mod audit;
mod clients;
mod codes;
mod consents;
mod events;
mod fast_reads;
// fed
mod identities;
mod limits;
mod otp;
mod sessions;
mod settings;
mod tokens;
mod totp;
mod tx;
mod users;

pub use attempts::AttemptRecord;
pub use backchannel::PendingLogout; // bcl
// ops
pub use audit::{AuditEvent, AuditQuery, AuditRow, UserCounts, sqlite_file_integrity};
pub use clients::{Client, ClientMeta, NewClient};
pub use codes::{AuthRequestRow, IssuedCode, NewCode, Redemption};
pub use events::{Event, EventKind, NewEvent};
// fed
pub use identities::Identity;
pub use limits::LimitRow;
pub use otp::{NewOtp, OtpCheck, SpentOtp};
pub use sessions::{LoginSession, SessionInfo, SessionMeta};
pub use tokens::{AccessTokenRow, NewRefreshToken, RefreshInfo, RefreshRedemption, RefreshTokenRow, UserinfoRow};
// grants
pub use tokens::{GraceReplay, LiveAccessToken, Rotation};
pub use totp::{Removed, TotpCredential, TryTaken};
pub use tx::Tx;
pub(crate) use tx::on_tx;
pub use users::{NewUser, User, normalize_email};

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};

/// Runs the same statement on whichever backend `db` is; each arm gets a pool of its own type.
macro_rules! on_db {
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            $crate::store::Db::Sqlite(sqlite) => {
                let $pool = &sqlite.pool;
                $body
            }
            $crate::store::Db::Postgres($pool) => $body,
        }
    };
}
pub(crate) use on_db;

#[derive(Clone, Debug)]
pub enum Db {
    Sqlite(SqliteDb),
    Postgres(PgPool),
}

#[derive(Clone, Debug)]
pub struct SqliteDb {
    pool: SqlitePool,
    /// The database file; `None` in memory.
    file: Option<std::path::PathBuf>,
    /// The hot read path; `None` for in-memory databases, which other connections cannot see.
    fast: Option<std::sync::Arc<fast_reads::FastReads>>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    Conflict(&'static str),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("database URL: {0}")]
    Url(String),
    /// The database cannot be reached right now (down, restarting, out of connections): the
    /// caller answers 503 with Retry-After rather than 500. Built by `From<sqlx::Error>`.
    #[error("database unavailable: {0}")]
    Unavailable(sqlx::Error),
    // No `#[source]` on these: the message already carries the cause, and a source would
    // print it once more in every error chain.
    #[error("database: {0}")]
    Db(sqlx::Error),
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored value is corrupt: {0}")]
    Corrupt(String),
}

pub type Result<T> = std::result::Result<T, StoreError>;

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        if is_outage(&err) {
            StoreError::Unavailable(err)
        } else {
            StoreError::Db(err)
        }
    }
}

impl StoreError {
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

/// Whether `err` means "the database is not there" rather than "this query is wrong".
fn is_outage(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::WorkerCrashed => true,
        // A connection cut while it is being set up (the server going down, or a proxy or
        // pooler in front of a database that is down accepting and then closing) surfaces as a
        // protocol error, e.g. "unexpected response from SSLRequest": about the link, not the
        // query, and a retry on a fresh connection is the cure.
        sqlx::Error::Protocol(_) => true,
        // PostgreSQL SQLSTATE class 08 (connection exception), 53300 (too many connections),
        // 57P01-57P03 (shut down by an administrator, crashed, not accepting connections yet),
        // 55000 (the database does not allow connections now), 3D000 (it is gone).
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|c| c.starts_with("08") || matches!(&*c, "53300" | "57P01" | "57P02" | "57P03" | "55000" | "3D000")),
        _ => false,
    }
}

/// A pooled connection is waited for this long unless the setting says otherwise.
pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// Maps a unique-constraint violation to a user-facing conflict, anything else stays a DB error.
pub(crate) fn on_unique(err: sqlx::Error, what: &'static str) -> StoreError {
    match err.as_database_error() {
        Some(db) if db.is_unique_violation() => StoreError::Conflict(what),
        _ => StoreError::from(err),
    }
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

impl Db {
    /// Opens a pool for a `sqlite:` or `postgres:` URL. Nothing is migrated here.
    pub async fn connect(url: &str) -> Result<Db> {
        Self::connect_with_timeout(url, DEFAULT_ACQUIRE_TIMEOUT).await
    }

    /// `acquire_timeout` bounds every wait for a connection, so an outage answers 503 in that
    /// time rather than hanging each request.
    pub async fn connect_with_timeout(url: &str, acquire_timeout: Duration) -> Result<Db> {
        Self::connect_sized(url, acquire_timeout, None).await
    }

    /// As `connect_with_timeout`, with at most `pool_size` connections (`CLEF_DB_POOL_SIZE`;
    /// `None`: 8 on SQLite, which has one writer anyway, 16 on PostgreSQL). Several instances
    /// on one PostgreSQL each hold up to their pool size, so instances × pool size must stay
    /// under the server's `max_connections`.
    pub async fn connect_sized(url: &str, acquire_timeout: Duration, pool_size: Option<u32>) -> Result<Db> {
        if url.starts_with("sqlite:") {
            let memory = url.contains(":memory:") || url.contains("mode=memory");
            let options = SqliteConnectOptions::from_str(url)
                .map_err(|e| StoreError::Url(e.to_string()))?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true);
            // The database holds password and token hashes: a folder we create is the owner's only.
            if let Some(parent) = options.get_filename().parent()
                && !memory
                && !parent.as_os_str().is_empty()
                && !parent.exists()
            {
                let fail = |e: std::io::Error| StoreError::Url(format!("{}: {e}", parent.display()));
                std::fs::create_dir_all(parent).map_err(fail)?;
                std::fs::set_permissions(parent, std::os::unix::fs::PermissionsExt::from_mode(0o700)).map_err(fail)?;
            }
            let file = options.get_filename().to_owned();
            // An in-memory database exists once per connection, so it gets exactly one.
            let max = if memory { 1 } else { pool_size.unwrap_or(8) };
            // Creating the file and switching it to WAL races when two instances start on a
            // new database; the migration lock serialises that first connection too.
            let _lock = match memory {
                false => Some(lock_file(file.with_extension("migrate-lock")).await?),
                true => None,
            };
            let pool = SqlitePoolOptions::new()
                .max_connections(max)
                .acquire_timeout(acquire_timeout)
                .min_connections(if memory { 1 } else { 0 })
                .idle_timeout(None::<Duration>)
                .max_lifetime(None::<Duration>)
                .connect_with(options)
                .await?;
            let fast = (!memory).then(|| std::sync::Arc::new(fast_reads::FastReads::new(file.clone())));
            Ok(Db::Sqlite(SqliteDb {
                pool,
                file: (!memory).then_some(file),
                fast,
            }))
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let options = PgConnectOptions::from_str(url).map_err(|e| StoreError::Url(e.to_string()))?;
            let pool = PgPoolOptions::new()
                .max_connections(pool_size.unwrap_or(16))
                .acquire_timeout(acquire_timeout)
                .connect_with(options.clone())
                .await;
            match pool {
                Ok(pool) => Ok(Db::Postgres(pool)),
                // The pool retries a refused connection until its timeout and then reports only
                // the timeout; one direct attempt names the real cause.
                Err(sqlx::Error::PoolTimedOut) => {
                    use sqlx::ConnectOptions;
                    match options.connect().await {
                        Err(cause) => Err(StoreError::Unavailable(cause)),
                        Ok(_) => Err(StoreError::Unavailable(sqlx::Error::PoolTimedOut)),
                    }
                }
                Err(e) => Err(e.into()),
            }
        } else {
            Err(StoreError::Url("must start with sqlite: or postgres:".to_owned()))
        }
    }

    /// Applies pending migrations. PostgreSQL takes an advisory lock, so instances starting
    /// together apply them once; SQLite serialises writers on its own.
    pub async fn migrate(&self) -> Result<()> {
        match self {
            Db::Sqlite(s) => {
                // sqlx locks migrations only on PostgreSQL; for SQLite an exclusive lock on a
                // file beside the database keeps two starting instances from both applying one.
                let _lock = match &s.file {
                    Some(f) => Some(lock_file(f.with_extension("migrate-lock")).await?),
                    None => None,
                };
                SQLITE_MIGRATIONS.run(&s.pool).await?
            }
            Db::Postgres(pool) => POSTGRES_MIGRATIONS.run(pool).await?,
        }
        self.client_origins_backfill().await
    }

    pub async fn ping(&self) -> Result<()> {
        on_db!(self, pool => { sqlx::query("select 1").execute(pool).await?; });
        Ok(())
    }

    /// `ping` that gives up after `within`: readiness probes want an answer, not a wait.
    pub async fn ping_within(&self, within: Duration) -> Result<()> {
        match tokio::time::timeout(within, self.ping()).await {
            Ok(r) => r,
            Err(_) => Err(StoreError::Unavailable(sqlx::Error::PoolTimedOut)),
        }
    }

    pub async fn close(&self) {
        on_db!(self, pool => pool.close().await)
    }

    /// Deletes rows whose lifetime is over. Returns how many rows went.
    pub async fn cleanup(&self, now: i64) -> Result<u64> {
        const STATEMENTS: [&str; 10] = [
            // Expired codes, and spent ones whose minute of replay protection is over.
            "delete from otp_codes where expires_at < $1 or (used = 1 and created_at < $1 - 60)",
            "delete from auth_codes where expires_at < $1",
            "delete from auth_requests where expires_at < $1",
            "delete from login_sessions where expires_at < $1",
            "delete from access_tokens where expires_at < $1",
            "delete from refresh_tokens where expires_at < $1",
            // Every token of a grant has expired by its expires_at.
            "delete from grants where expires_at < $1",
            "delete from login_attempts where expires_at < $1",
            // Sealed refresh successors past the longest grace (the server wipes sooner).
            "update refresh_tokens set successor_sealed = null where successor_sealed is not null and rotated_at < $1 - 60",
            // dcr: a jti only needs remembering while its assertion could still be accepted.
            "delete from client_assertion_jtis where expires_at < $1",
        ];
        let mut n = 0;
        for sql in STATEMENTS {
            n += on_db!(self, pool => sqlx::query(sql).bind(now).execute(pool).await?.rows_affected());
        }
        // Counters whose window is long over; no limit window exceeds a day, except the
        // consecutive wrong codes of an account, remembered for 30 days (auth::limits).
        n += on_db!(self, pool => sqlx::query(
            "delete from rate_limits where (window_start < $1 and bucket not like 'codefail:%') or window_start < $2")
            .bind(now - 86_400).bind(now - 30 * 86_400).execute(pool).await?.rows_affected());
        // bcl: who took part in sessions that expired (ended ones are deleted at their end); a
        // session renewed by a new login of the same user keeps its sid, and so its rows.
        n += on_db!(self, pool => sqlx::query(
            "delete from session_clients where expires_at < $1 and sid not in (select sid from login_sessions where sid is not null)")
            .bind(now).execute(pool).await?.rows_affected());
        Ok(n)
    }
}

/// Blocks (on a blocking thread) until this process holds the lock; released on drop.
async fn lock_file(path: std::path::PathBuf) -> Result<std::fs::File> {
    let shown = path.display().to_string();
    tokio::task::spawn_blocking(move || {
        let f = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path)?;
        f.lock()?;
        Ok::<_, std::io::Error>(f)
    })
    .await
    .map_err(|e| StoreError::Url(format!("{shown}: {e}")))?
    .map_err(|e| StoreError::Url(format!("{shown}: {e}")))
}

pub(crate) fn json_list(items: &[String]) -> String {
    serde_json::to_string(items).unwrap_or_else(|_| "[]".to_owned())
}

pub(crate) fn parse_list(raw: &str) -> Result<Vec<String>> {
    serde_json::from_str(raw).map_err(|e| StoreError::Corrupt(format!("list {raw:?}: {e}")))
}

#[cfg(test)]
mod tests {
    /// Both backends must carry the same migration versions, or one would drift.
    #[test]
    fn migration_folders_match() {
        let names = |dir: &str| {
            let mut v: Vec<String> = std::fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        };
        let base = env!("CARGO_MANIFEST_DIR");
        assert_eq!(
            names(&format!("{base}/migrations/sqlite")),
            names(&format!("{base}/migrations/postgres"))
        );
    }
}
