//! Rate-limit and lockout counters in the database, so every instance sees the same count.

use super::{Db, Result, on_db};

impl Db {
    /// Counts one hit in a fixed window of `window` seconds. Returns the hits in the current
    /// window, this one included, and when that window started; one upsert, so concurrent
    /// hits are all counted.
    pub async fn limit_hit(&self, bucket: &str, window: i64, now: i64) -> Result<(i64, i64)> {
        Ok(on_db!(self, pool => sqlx::query_as(
            "insert into rate_limits (bucket, window_start, hits) values ($1, $2, 1) \
             on conflict (bucket) do update set \
             hits = case when rate_limits.window_start <= $3 then 1 else rate_limits.hits + 1 end, \
             window_start = case when rate_limits.window_start <= $3 then $2 else rate_limits.window_start end \
             returning hits, window_start")
            .bind(bucket).bind(now).bind(now - window).fetch_one(pool).await?))
    }

    /// Hits in the current window, without counting one.
    pub async fn limit_peek(&self, bucket: &str, window: i64, now: i64) -> Result<i64> {
        let row: Option<(i64,)> = on_db!(self, pool => sqlx::query_as(
            "select hits from rate_limits where bucket = $1 and window_start > $2")
            .bind(bucket).bind(now - window).fetch_optional(pool).await?);
        Ok(row.map(|r| r.0).unwrap_or(0))
    }

    /// Starts the bucket's window again now: a lock lasts a full window from the last failure.
    pub async fn limit_restart(&self, bucket: &str, now: i64) -> Result<()> {
        on_db!(self, pool => sqlx::query("update rate_limits set window_start = $2 where bucket = $1")
            .bind(bucket).bind(now).execute(pool).await?.rows_affected());
        Ok(())
    }

    pub async fn limit_clear(&self, bucket: &str) -> Result<()> {
        on_db!(self, pool => sqlx::query("delete from rate_limits where bucket = $1")
            .bind(bucket).execute(pool).await?.rows_affected());
        Ok(())
    }
}
