//! Upstream identities: which (issuer, sub) logs in to which local account (issue 9).

use super::users::USER_COLUMNS;
use super::{Db, NewUser, Result, StoreError, Tx, json_list, normalize_email, on_db, on_tx, on_unique};

/// One linked upstream identity.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct Identity {
    pub issuer: String,
    pub subject: String,
    pub user_id: String,
    pub upstream_id: String,
    /// The upstream's address when the link was made.
    pub email: Option<String>,
    pub linked_at: i64,
    pub last_used_at: i64,
}

const COLUMNS: &str = "issuer, subject, user_id, upstream_id, email, linked_at, last_used_at";
const INSERT: &str = "insert into upstream_identities (issuer, subject, user_id, upstream_id, email, linked_at, last_used_at) \
                      values ($1, $2, $3, $4, $5, $6, $6)";
/// The (issuer, sub) is someone's already: a link never moves an identity between accounts.
const TAKEN: &str = "this upstream identity is linked to an account already";

impl Db {
    /// The account an upstream identity logs in to, and the use recorded, in one statement.
    pub async fn identity_use(&self, issuer: &str, subject: &str, now: i64) -> Result<Option<Identity>> {
        let sql = format!("update upstream_identities set last_used_at = $3 where issuer = $1 and subject = $2 returning {COLUMNS}");
        Ok(on_db!(self, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(issuer).bind(subject).bind(now).fetch_optional(pool).await?))
    }

    pub async fn identities_for_user(&self, user_id: &str) -> Result<Vec<Identity>> {
        let sql = format!("select {COLUMNS} from upstream_identities where user_id = $1 order by linked_at, issuer, subject");
        Ok(on_db!(self, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(user_id).fetch_all(pool).await?))
    }

    /// `StoreError::Conflict` when the identity is linked already (to anyone).
    pub async fn identity_link(&self, i: &Identity) -> Result<()> {
        on_db!(self, pool => sqlx::query(INSERT)
            .bind(&i.issuer).bind(&i.subject).bind(&i.user_id).bind(&i.upstream_id).bind(&i.email).bind(i.linked_at)
            .execute(pool).await.map_err(|e| on_unique(e, TAKEN))?.rows_affected());
        Ok(())
    }
}

impl Tx {
    /// As [`Db::identity_link`], with the event and whatever else the link lands with.
    pub async fn identity_link(&mut self, i: &Identity) -> Result<()> {
        on_tx!(self, conn => sqlx::query(INSERT)
            .bind(&i.issuer).bind(&i.subject).bind(&i.user_id).bind(&i.upstream_id).bind(&i.email).bind(i.linked_at)
            .execute(conn).await.map_err(|e| on_unique(e, TAKEN))?.rows_affected());
        Ok(())
    }

    /// Removes one of the user's identities; `NotFound` when it is not theirs (or gone).
    pub async fn identity_unlink(&mut self, user_id: &str, issuer: &str, subject: &str) -> Result<()> {
        let n = on_tx!(self, conn => sqlx::query(
            "delete from upstream_identities where user_id = $1 and issuer = $2 and subject = $3")
            .bind(user_id).bind(issuer).bind(subject).execute(conn).await?.rows_affected());
        if n == 0 {
            return Err(StoreError::NotFound("identity"));
        }
        Ok(())
    }

    /// A new account made by a first upstream login, in the transaction that links its
    /// identity (the statement of `Db::user_create`).
    pub async fn user_create(&mut self, u: &NewUser, now: i64) -> Result<()> {
        let sql = format!("insert into users ({USER_COLUMNS}) values ($1, $2, $3, $4, $5, $6, $7, $8, 0, $9, $10, $10, $11)");
        on_tx!(self, conn => sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(&u.user_id).bind(normalize_email(&u.email)).bind(i64::from(u.email_verified)).bind(&u.name)
            .bind(&u.password_hash).bind(json_list(&u.roles)).bind(&u.locale).bind(&u.phone_number).bind(&u.address)
            .bind(now).bind(i64::from(u.password_pending && u.password_hash.is_some()))
            .execute(conn).await.map_err(|e| on_unique(e, "a user with this email already exists"))?.rows_affected());
        Ok(())
    }

    /// How many identities the user has, inside the transaction that removes one.
    pub async fn identities_count(&mut self, user_id: &str) -> Result<i64> {
        let (n,): (i64,) = on_tx!(self, conn => sqlx::query_as("select count(*) from upstream_identities where user_id = $1")
            .bind(user_id).fetch_one(conn).await?);
        Ok(n)
    }
}
