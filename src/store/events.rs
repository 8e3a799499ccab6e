//! Security events: what happened to an account, shown to its owner and kept for audit.

use super::{Db, Result, Tx, on_db, on_tx};

/// What happened. Stored as its `as_str` name; new kinds go at the end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Login,
    PasswordChanged,
    PasswordReset,
    EmailChanged,
    TotpEnabled,
    TotpDisabled,
    BackupCodesRegenerated,
    BackupCodeUsed,
    SecondFactorLocked,
    /// An operator cleared the account's second factor (`clef users reset-2fa`).
    SecondFactorReset,
    SessionEnded,
    OtherSessionsEnded,
    /// A signed-in user confirmed it was them before a sensitive action (issue 8 §4).
    Reauthenticated,
    /// An operator ended every session of the account (`clef sessions end`).
    OperatorSessionsEnded,
    // fed: upstream OpenID Connect identities (issue 9); detail: the upstream's id.
    UpstreamLogin,
    UpstreamLinked,
    UpstreamUnlinked,
    AccountCreatedByUpstream,
    // ops: the audit log (issue 11). Kinds without an account (client, keys) are never
    // shown on an account page, only by `clef audit`.
    /// A wrong password, code or link; `detail` names the method.
    LoginFailed,
    /// Repeated failures locked password or code login for a while.
    LockedOut,
    /// The user logged out (RP-initiated logout or the account page's own button).
    Logout,
    ClientCreated,
    ClientDeleted,
    KeysRotated,
    UserCreated,
    UserDeleted,
}

impl EventKind {
    pub const ALL: [EventKind; 26] = [
        EventKind::Login,
        EventKind::PasswordChanged,
        EventKind::PasswordReset,
        EventKind::EmailChanged,
        EventKind::TotpEnabled,
        EventKind::TotpDisabled,
        EventKind::BackupCodesRegenerated,
        EventKind::BackupCodeUsed,
        EventKind::SecondFactorLocked,
        EventKind::SecondFactorReset,
        EventKind::SessionEnded,
        EventKind::OtherSessionsEnded,
        EventKind::Reauthenticated,
        EventKind::OperatorSessionsEnded,
        EventKind::UpstreamLogin,
        EventKind::UpstreamLinked,
        EventKind::UpstreamUnlinked,
        EventKind::AccountCreatedByUpstream,
        EventKind::LoginFailed,
        EventKind::LockedOut,
        EventKind::Logout,
        EventKind::ClientCreated,
        EventKind::ClientDeleted,
        EventKind::KeysRotated,
        EventKind::UserCreated,
        EventKind::UserDeleted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Login => "login",
            EventKind::PasswordChanged => "password_changed",
            EventKind::PasswordReset => "password_reset",
            EventKind::EmailChanged => "email_changed",
            EventKind::TotpEnabled => "totp_enabled",
            EventKind::TotpDisabled => "totp_disabled",
            EventKind::BackupCodesRegenerated => "backup_codes_regenerated",
            EventKind::BackupCodeUsed => "backup_code_used",
            EventKind::SecondFactorLocked => "second_factor_locked",
            EventKind::SecondFactorReset => "second_factor_reset",
            EventKind::SessionEnded => "session_ended",
            EventKind::OtherSessionsEnded => "other_sessions_ended",
            EventKind::Reauthenticated => "reauthenticated",
            EventKind::OperatorSessionsEnded => "operator_sessions_ended",
            EventKind::UpstreamLogin => "upstream_login",
            EventKind::UpstreamLinked => "upstream_linked",
            EventKind::UpstreamUnlinked => "upstream_unlinked",
            EventKind::AccountCreatedByUpstream => "account_created_by_upstream",
            EventKind::LoginFailed => "login_failed",
            EventKind::LockedOut => "locked_out",
            EventKind::Logout => "logout",
            EventKind::ClientCreated => "client_created",
            EventKind::ClientDeleted => "client_deleted",
            EventKind::KeysRotated => "keys_rotated",
            EventKind::UserCreated => "user_created",
            EventKind::UserDeleted => "user_deleted",
        }
    }

    pub fn parse(s: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// One event to record. `ip` and `user_agent` describe the request that caused it, when there
/// was one (an operator command has neither); `detail` is short, never secret, shown escaped.
#[derive(Clone, Debug, Default)]
pub struct NewEvent<'a> {
    pub ip: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    pub detail: Option<&'a str>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub detail: Option<String>,
    pub at: i64,
}

/// Ids sort as the events happened (ops): the second, then this process's count, then a random
/// part so instances never collide. Events of one second keep their order in `clef audit`.
pub(crate) fn event_id(at: i64) -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{:012x}{:010x}{}", at.max(0), n & 0xff_ffff_ffff, crate::secret::random_token(6))
}

/// A user agent is the client's to choose: keep a bounded, printable prefix only.
fn bounded(s: Option<&str>, max: usize) -> Option<String> {
    s.map(|s| s.chars().filter(|c| !c.is_control()).take(max).collect())
}

// The account's email at the time is kept with the event (ops, migration 0018), so the audit
// log still names it once the account is deleted or its address changed.
const INSERT: &str = "insert into security_events (event_id, user_id, kind, ip, user_agent, detail, at, email) \
                      values ($1, $2, $3, $4, $5, $6, $7, (select email from users where user_id = $2))";

impl Db {
    pub async fn event_record(&self, user_id: &str, kind: EventKind, e: &NewEvent<'_>, now: i64) -> Result<()> {
        let (id, ua, detail) = (event_id(now), bounded(e.user_agent, 256), bounded(e.detail, 256));
        on_db!(self, pool => sqlx::query(INSERT)
            .bind(&id).bind(user_id).bind(kind.as_str()).bind(e.ip).bind(&ua).bind(&detail).bind(now)
            .execute(pool).await?.rows_affected());
        Ok(())
    }

    /// The newest `limit` events of a user, newest first. Kinds this version does not know
    /// (written by a newer one during a rolling upgrade) are skipped.
    pub async fn events_recent(&self, user_id: &str, limit: i64) -> Result<Vec<Event>> {
        type Row = (String, Option<String>, Option<String>, Option<String>, i64);
        let rows: Vec<Row> = on_db!(self, pool => sqlx::query_as(
            "select kind, ip, user_agent, detail, at from security_events where user_id = $1 \
             order by at desc, event_id desc limit $2")
            .bind(user_id).bind(limit).fetch_all(pool).await?);
        Ok(rows
            .into_iter()
            .filter_map(|(kind, ip, user_agent, detail, at)| {
                Some(Event {
                    kind: EventKind::parse(&kind)?,
                    ip,
                    user_agent,
                    detail,
                    at,
                })
            })
            .collect())
    }
}

impl Tx {
    /// As [`Db::event_record`], inside a transaction: the event lands with the change it records.
    pub async fn event_record(&mut self, user_id: &str, kind: EventKind, e: &NewEvent<'_>, now: i64) -> Result<()> {
        let (id, ua, detail) = (event_id(now), bounded(e.user_agent, 256), bounded(e.detail, 256));
        on_tx!(self, conn => sqlx::query(INSERT)
            .bind(&id).bind(user_id).bind(kind.as_str()).bind(e.ip).bind(&ua).bind(&detail).bind(now)
            .execute(conn).await?.rows_affected());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip() {
        for k in EventKind::ALL {
            assert_eq!(EventKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(EventKind::parse("nope"), None);
    }

    #[test]
    fn user_agent_is_bounded_and_printable() {
        let long = format!("a\u{1b}[31m{}", "x".repeat(400));
        let b = bounded(Some(&long), 256).unwrap();
        assert_eq!(b.chars().count(), 256);
        assert!(!b.contains('\u{1b}'));
    }
}
