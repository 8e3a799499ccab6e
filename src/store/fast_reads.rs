//! Point reads on SQLite without sqlx's per-query thread hop.
//!
//! sqlx runs each SQLite connection on its own thread; a query costs two thread wake-ups,
//! about 70 µs of CPU measured here, several times the query itself. The userinfo lookup is the
//! one hot read, so it goes through rusqlite on the calling thread instead: an indexed read in
//! WAL mode never waits for writers, so it blocks the worker for microseconds.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension};

use super::{Result, StoreError, User, UserinfoRow, parse_list};

/// Idle read-only connections kept for reuse.
const KEEP: usize = 8;

#[derive(Debug)]
pub struct FastReads {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

fn err(e: rusqlite::Error) -> StoreError {
    StoreError::Corrupt(format!("sqlite read: {e}"))
}

impl FastReads {
    pub fn new(path: PathBuf) -> FastReads {
        FastReads {
            path,
            idle: Mutex::new(Vec::new()),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T> {
        let conn = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match conn {
            Some(c) => c,
            None => {
                let c = Connection::open_with_flags(&self.path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
                    .map_err(err)?;
                c.busy_timeout(Duration::from_millis(200)).map_err(err)?;
                c
            }
        };
        let out = f(&conn).map_err(err);
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < KEEP {
            idle.push(conn);
        }
        out
    }

    /// Same query and meaning as the sqlx version in `tokens.rs`.
    pub fn userinfo_lookup(&self, token_hash: &str, now: i64) -> Result<Option<UserinfoRow>> {
        let row = self.with(|c| {
            let mut stmt = c.prepare_cached(
                "select t.scope, t.client_id, u.user_id, u.email, u.email_verified, u.name, u.password_hash, u.roles, \
                 u.locale, u.created_at, u.updated_at, u.phone_number, u.phone_number_verified, u.address from access_tokens t join users u on u.user_id = t.user_id \
                 where t.token_hash = ?1 and t.revoked = 0 and t.expires_at > ?2",
            )?;
            stmt.query_row(rusqlite::params![token_hash, now], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, Option<String>>(5)?,
                    r.get::<_, Option<String>>(6)?,
                    r.get::<_, String>(7)?,
                    r.get::<_, Option<String>>(8)?,
                    r.get::<_, i64>(9)?,
                    r.get::<_, i64>(10)?,
                    (r.get::<_, Option<String>>(11)?, r.get::<_, i64>(12)?, r.get::<_, Option<String>>(13)?),
                ))
            })
            .optional()
        })?;
        let Some((
            scope,
            client_id,
            user_id,
            email,
            verified,
            name,
            password_hash,
            roles,
            locale,
            created_at,
            updated_at,
            (phone, phone_verified, address),
        )) = row
        else {
            return Ok(None);
        };
        let user = User {
            user_id,
            email,
            email_verified: verified != 0,
            name,
            password_hash,
            roles: parse_list(&roles)?,
            locale,
            phone_number: phone,
            phone_number_verified: phone_verified != 0,
            address,
            created_at,
            updated_at,
            // Not read here: userinfo releases claims only, never signs anyone in.
            password_pending: false,
        };
        Ok(Some(UserinfoRow { scope, client_id, user }))
    }
}
