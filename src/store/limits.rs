//! Rate-limit and lockout counters in the database, so every instance sees the same count.
//! Bucket keys arrive hashed to a fixed length (auth::limits), so no request sizes a row.

use super::{Db, Result, on_db};

/// A bucket as it stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub struct LimitRow {
    pub hits: i64,
    pub window_start: i64,
    pub inflight: i64,
    pub inflight_at: i64,
}

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

    pub async fn limit_get(&self, bucket: &str) -> Result<Option<LimitRow>> {
        Ok(on_db!(self, pool => sqlx::query_as(
            "select hits, window_start, inflight, inflight_at from rate_limits where bucket = $1")
            .bind(bucket).fetch_optional(pool).await?))
    }

    /// Takes one reservation if the failures in the window plus the reservations in flight
    /// are under `cap`; one conditional upsert, so racing requests can never take more.
    /// Reservations older than `stale` seconds (an instance that died mid-check) are void.
    /// Returns false when the bucket is full.
    pub async fn limit_reserve(&self, bucket: &str, window: i64, cap: i64, stale: i64, now: i64) -> Result<bool> {
        let row: Option<(i64,)> = on_db!(self, pool => sqlx::query_as(
            "insert into rate_limits (bucket, window_start, hits, inflight, inflight_at) values ($1, $2, 0, 1, $2) \
             on conflict (bucket) do update set \
             hits = case when rate_limits.window_start <= $3 then 0 else rate_limits.hits end, \
             window_start = case when rate_limits.window_start <= $3 then $2 else rate_limits.window_start end, \
             inflight = case when rate_limits.inflight_at <= $4 then 0 else rate_limits.inflight end + 1, \
             inflight_at = $2 \
             where (case when rate_limits.window_start <= $3 then 0 else rate_limits.hits end) \
             + (case when rate_limits.inflight_at <= $4 then 0 else rate_limits.inflight end) < $5 \
             returning hits")
            .bind(bucket).bind(now).bind(now - window).bind(now - stale).bind(cap)
            .fetch_optional(pool).await?);
        Ok(row.is_some())
    }

    /// Gives a reservation back; with `clear`, the failures are forgotten too (a success).
    pub async fn limit_release(&self, bucket: &str, clear: bool) -> Result<()> {
        on_db!(self, pool => sqlx::query(
            "update rate_limits set inflight = case when inflight > 0 then inflight - 1 else 0 end, \
             hits = case when $2 = 1 then 0 else hits end where bucket = $1")
            .bind(bucket).bind(i64::from(clear)).execute(pool).await?.rows_affected());
        Ok(())
    }

    /// Turns a reservation into a failure. The failure that reaches `cap` starts the window
    /// again, so the lock it sets lasts a full window. Returns the failures now counted.
    pub async fn limit_release_failed(&self, bucket: &str, window: i64, cap: i64, now: i64) -> Result<i64> {
        let row: Option<(i64,)> = on_db!(self, pool => sqlx::query_as(
            "update rate_limits set inflight = case when inflight > 0 then inflight - 1 else 0 end, \
             hits = case when window_start <= $3 or hits = 0 then 1 else hits + 1 end, \
             window_start = case when window_start <= $3 or hits = 0 or hits + 1 >= $4 then $2 else window_start end \
             where bucket = $1 returning hits")
            .bind(bucket).bind(now).bind(now - window).bind(cap).fetch_optional(pool).await?);
        Ok(row.map(|r| r.0).unwrap_or(1))
    }

    /// Sets `hits` to `to` and stamps `now`, if the bucket still holds `seen` (`None`: no row).
    /// Returns whether this caller won; a loser reads again.
    pub async fn limit_swap(&self, bucket: &str, seen: Option<i64>, to: i64, now: i64) -> Result<bool> {
        let n = match seen {
            None => on_db!(self, pool => sqlx::query(
                "insert into rate_limits (bucket, window_start, hits) values ($1, $2, $3) on conflict (bucket) do nothing")
                .bind(bucket).bind(now).bind(to).execute(pool).await?.rows_affected()),
            Some(seen) => on_db!(self, pool => sqlx::query(
                "update rate_limits set hits = $3, window_start = $4 where bucket = $1 and hits = $2")
                .bind(bucket).bind(seen).bind(to).bind(now).execute(pool).await?.rows_affected()),
        };
        Ok(n == 1)
    }

    /// Forgets the failures but keeps the reservations in flight.
    pub async fn limit_zero(&self, bucket: &str) -> Result<()> {
        on_db!(self, pool => sqlx::query("update rate_limits set hits = 0 where bucket = $1")
            .bind(bucket).execute(pool).await?.rows_affected());
        Ok(())
    }

    pub async fn limit_clear(&self, bucket: &str) -> Result<()> {
        on_db!(self, pool => sqlx::query("delete from rate_limits where bucket = $1")
            .bind(bucket).execute(pool).await?.rows_affected());
        Ok(())
    }
}
