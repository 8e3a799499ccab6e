//! Remembered consent: the scopes a user granted to a client.

use super::{Db, Result, on_db};

impl Db {
    pub async fn consent_get(&self, user_id: &str, client_id: &str) -> Result<Option<String>> {
        let row: Option<(String,)> = on_db!(self, pool => sqlx::query_as(
            "select scope from consents where user_id = $1 and client_id = $2")
            .bind(user_id).bind(client_id).fetch_optional(pool).await?);
        Ok(row.map(|r| r.0))
    }

    pub async fn consent_put(&self, user_id: &str, client_id: &str, scope: &str, now: i64) -> Result<()> {
        on_db!(self, pool => sqlx::query(
            "insert into consents (user_id, client_id, scope, updated_at) values ($1, $2, $3, $4) \
             on conflict (user_id, client_id) do update set scope = excluded.scope, updated_at = excluded.updated_at")
            .bind(user_id).bind(client_id).bind(scope).bind(now).execute(pool).await?.rows_affected());
        Ok(())
    }
}
