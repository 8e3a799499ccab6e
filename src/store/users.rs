//! End users. `user_id` is the stable random `sub`; the email can change.

use super::{Db, Result, StoreError, Tx, json_list, on_db, on_tx, on_unique, parse_list};

#[derive(Clone, Debug)]
pub struct User {
    pub user_id: String,
    pub email: String,
    pub email_verified: bool,
    pub name: Option<String>,
    pub password_hash: Option<String>,
    pub roles: Vec<String>,
    pub locale: Option<String>,
    pub phone_number: Option<String>,
    pub phone_number_verified: bool,
    /// The postal address as one formatted text (OIDC Core §5.1.1 `formatted`).
    pub address: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    /// The password was chosen at sign-up and the address is not verified yet: it signs in
    /// nobody (account pre-hijacking rule, README).
    pub password_pending: bool,
}

#[derive(Debug)]
pub struct NewUser {
    pub user_id: String,
    pub email: String,
    pub email_verified: bool,
    pub name: Option<String>,
    pub password_hash: Option<String>,
    pub roles: Vec<String>,
    pub locale: Option<String>,
    pub phone_number: Option<String>,
    pub address: Option<String>,
    /// Set by self-service sign-up with a password; operators' accounts never are.
    pub password_pending: bool,
}

#[derive(sqlx::FromRow)]
pub(crate) struct UserRow {
    user_id: String,
    email: String,
    email_verified: i64,
    name: Option<String>,
    password_hash: Option<String>,
    roles: String,
    locale: Option<String>,
    phone_number: Option<String>,
    phone_number_verified: i64,
    address: Option<String>,
    created_at: i64,
    updated_at: i64,
    password_pending: i64,
}

impl TryFrom<UserRow> for User {
    type Error = StoreError;
    fn try_from(r: UserRow) -> Result<User> {
        Ok(User {
            user_id: r.user_id,
            email: r.email,
            email_verified: r.email_verified != 0,
            name: r.name,
            password_hash: r.password_hash,
            roles: parse_list(&r.roles)?,
            locale: r.locale,
            phone_number: r.phone_number,
            phone_number_verified: r.phone_number_verified != 0,
            address: r.address,
            created_at: r.created_at,
            updated_at: r.updated_at,
            password_pending: r.password_pending != 0,
        })
    }
}

pub(crate) const USER_COLUMNS: &str = "user_id, email, email_verified, name, password_hash, roles, locale, phone_number, phone_number_verified, address, created_at, updated_at, password_pending";

/// Emails are compared case-insensitively; we store them lower-cased.
pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

impl Db {
    pub async fn user_create(&self, u: &NewUser, now: i64) -> Result<()> {
        let sql = format!("insert into users ({USER_COLUMNS}) values ($1, $2, $3, $4, $5, $6, $7, $8, 0, $9, $10, $10, $11)");
        on_db!(self, pool => sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(&u.user_id)
            .bind(normalize_email(&u.email))
            .bind(i64::from(u.email_verified))
            .bind(&u.name)
            .bind(&u.password_hash)
            .bind(json_list(&u.roles))
            .bind(&u.locale)
            .bind(&u.phone_number)
            .bind(&u.address)
            .bind(now)
            .bind(i64::from(u.password_pending && u.password_hash.is_some()))
            .execute(pool)
            .await
            .map_err(|e| on_unique(e, "a user with this email already exists"))?
            .rows_affected());
        Ok(())
    }

    pub async fn user_by_email(&self, email: &str) -> Result<Option<User>> {
        let sql = format!("select {USER_COLUMNS} from users where email = $1");
        let row: Option<UserRow> = on_db!(self, pool =>
            sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str())).bind(normalize_email(email)).fetch_optional(pool).await?);
        row.map(User::try_from).transpose()
    }

    pub async fn user_get(&self, user_id: &str) -> Result<Option<User>> {
        let sql = format!("select {USER_COLUMNS} from users where user_id = $1");
        let row: Option<UserRow> = on_db!(self, pool =>
            sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str())).bind(user_id).fetch_optional(pool).await?);
        row.map(User::try_from).transpose()
    }

    pub async fn user_list(&self) -> Result<Vec<User>> {
        let sql = format!("select {USER_COLUMNS} from users order by created_at, email");
        let rows: Vec<UserRow> = on_db!(self, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str())).fetch_all(pool).await?);
        rows.into_iter().map(User::try_from).collect()
    }

    /// Deletes by id or by email; sessions, codes and tokens go with the user (cascade).
    pub async fn user_delete(&self, id_or_email: &str) -> Result<()> {
        let n = on_db!(self, pool => sqlx::query("delete from users where user_id = $1 or email = $2")
            .bind(id_or_email).bind(normalize_email(id_or_email)).execute(pool).await?.rows_affected());
        if n == 0 {
            return Err(StoreError::NotFound("user"));
        }
        Ok(())
    }

    /// Marks the address verified, in one statement with the pending password's fate: kept when
    /// the verification proves that whoever chose it reads the mailbox, removed otherwise.
    /// Returns true when the address was not verified before.
    pub async fn user_verify_email(&self, user_id: &str, keep_pending_password: bool, now: i64) -> Result<bool> {
        let sql = if keep_pending_password {
            "update users set email_verified = 1, password_pending = 0, updated_at = $2 where user_id = $1 and email_verified = 0"
        } else {
            "update users set email_verified = 1, password_hash = case when password_pending = 1 then null else password_hash end, \
             password_pending = 0, updated_at = $2 where user_id = $1 and email_verified = 0"
        };
        let n = on_db!(self, pool => sqlx::query(sql).bind(user_id).bind(now).execute(pool).await?.rows_affected());
        Ok(n > 0)
    }

    /// A password set through a reset was chosen by the mailbox's holder: never pending.
    pub async fn user_set_password_hash(&self, user_id: &str, hash: &str, now: i64) -> Result<()> {
        on_db!(self, pool => sqlx::query("update users set password_hash = $1, password_pending = 0, updated_at = $2 where user_id = $3")
            .bind(hash).bind(now).bind(user_id).execute(pool).await?.rows_affected());
        Ok(())
    }
}

impl Tx {
    /// As [`Db::user_set_password_hash`], with the changes that go with it.
    pub async fn user_set_password_hash(&mut self, user_id: &str, hash: &str, now: i64) -> Result<()> {
        on_tx!(self, conn => sqlx::query("update users set password_hash = $1, password_pending = 0, updated_at = $2 where user_id = $3")
            .bind(hash).bind(now).bind(user_id).execute(conn).await?.rows_affected());
        Ok(())
    }

    /// Moves the account to an address its holder just proved with a code: verified at once.
    /// An address another account took meanwhile is a `Conflict`.
    pub async fn user_set_email(&mut self, user_id: &str, email: &str, now: i64) -> Result<()> {
        on_tx!(self, conn => sqlx::query("update users set email = $1, email_verified = 1, updated_at = $2 where user_id = $3")
            .bind(normalize_email(email)).bind(now).bind(user_id).execute(conn).await
            .map_err(|e| on_unique(e, "a user with this email already exists"))?.rows_affected());
        Ok(())
    }
}

impl Db {
    /// A reset's new password, and the end of every session and token of the account, in one
    /// transaction: a crash between them must not leave the account half reset. Returns how
    /// many sessions ended.
    pub async fn password_reset_apply(&self, user_id: &str, hash: &str, now: i64) -> Result<u64> {
        let mut tx = self.begin().await?;
        on_tx!(&mut tx, conn => sqlx::query("update users set password_hash = $1, password_pending = 0, updated_at = $2 where user_id = $3")
            .bind(hash).bind(now).bind(user_id).execute(conn).await?.rows_affected());
        // Back-Channel Logout 1.0 §2.5: the reset ends the sessions, so their clients hear of it.
        let ended = tx.sessions_end_for_user(user_id, None, now).await?;
        for sql in [
            "update grants set revoked = 1 where user_id = $1",
            "update access_tokens set revoked = 1 where user_id = $1",
            "delete from refresh_tokens where user_id = $1",
        ] {
            on_tx!(&mut tx, conn => sqlx::query(sql).bind(user_id).execute(conn).await?.rows_affected());
        }
        tx.commit().await?;
        Ok(ended)
    }
}
