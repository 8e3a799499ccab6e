//! Instance-wide values every instance must share. Never secrets: the HMAC key lives outside
//! the database it protects (`secret_key`).

use super::{Db, Result, on_db};

impl Db {
    /// Returns the stored value for `name`, first storing `fresh` if there was none. Two
    /// instances racing here agree on whichever insert landed first.
    pub async fn setting_or_insert(&self, name: &str, fresh: &str) -> Result<String> {
        on_db!(self, pool => {
            sqlx::query("insert into settings (name, value) values ($1, $2) on conflict (name) do nothing")
                .bind(name).bind(fresh).execute(pool).await?.rows_affected();
            let value: (String,) = sqlx::query_as("select value from settings where name = $1")
                .bind(name).fetch_one(pool).await?;
            Ok(value.0)
        })
    }
}
