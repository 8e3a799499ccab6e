//! Changes to a user's second factor, written once for the two-factor pages and the account
//! API: start and confirm a TOTP enrolment, turn TOTP off, make new backup codes. Each change
//! is one transaction with its security event, then the owner's notice mail.

use crate::app::AppState;
use crate::auth::{AuthError, backup_codes, totp};
use crate::notify::Kind;
use crate::store::{Db, EventKind, NewEvent, StoreError, User};

/// Where the user's TOTP stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TotpState {
    Off,
    /// A secret was handed out and waits for its first valid code.
    Pending,
    On,
}

impl TotpState {
    pub fn as_str(self) -> &'static str {
        match self {
            TotpState::Off => "off",
            TotpState::Pending => "pending",
            TotpState::On => "on",
        }
    }
}

/// What the security screens show about the second factor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status {
    pub totp: TotpState,
    pub backup_codes_left: i64,
    /// When the lock after repeated wrong codes ends, if it is on now.
    pub locked_until: Option<i64>,
}

pub async fn status(db: &Db, user_id: &str, now: i64) -> Result<Status, AuthError> {
    let totp = match db.totp_get(user_id).await? {
        None => TotpState::Off,
        Some(c) if c.enabled => TotpState::On,
        Some(_) => TotpState::Pending,
    };
    Ok(Status {
        totp,
        backup_codes_left: db.backup_codes_count(user_id).await?,
        locked_until: db.second_factor_locked_until(user_id, now).await?,
    })
}

/// What an authenticator app needs: the URI (also as a QR code) and the secret for typing.
#[derive(Clone, Debug)]
pub struct Enrolment {
    pub otpauth_uri: String,
    /// Base32 in groups of four.
    pub secret_grouped: String,
    /// An inline `<svg>` element.
    pub qr_svg: String,
}

impl Enrolment {
    pub fn new(issuer: &str, user: &User, secret: &[u8]) -> Result<Enrolment, AuthError> {
        let otpauth_uri = totp::otpauth_uri(secret, issuer, &user.email)?;
        Ok(Enrolment {
            qr_svg: totp::qr_svg(&otpauth_uri)?,
            secret_grouped: totp::grouped_base32(secret),
            otpauth_uri,
        })
    }
}

/// A fresh secret, stored sealed and pending until a valid code. `None`: TOTP is already on,
/// and a second enrolment must not silently replace the working one.
pub async fn start(app: &AppState, user: &User, now: i64) -> Result<Option<Vec<u8>>, AuthError> {
    let secret = totp::new_secret();
    let sealed = totp::seal(&app.hmac_key, &user.user_id, &secret)?;
    match app.db.totp_begin(&user.user_id, &sealed, now).await {
        Ok(()) => Ok(Some(secret)),
        Err(StoreError::Conflict(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// What a confirmation code did.
#[derive(Debug)]
pub enum Confirmed {
    /// Nothing pending: TOTP is already on, or no enrolment was started.
    NothingPending,
    /// Not a current code of the pending secret (given back, to show it again).
    Wrong { secret: Vec<u8> },
    /// TOTP is on; the backup codes, to show once.
    On { codes: Vec<String> },
}

/// The first code: TOTP goes on, with eight backup codes and its event, in one transaction.
/// Wrong codes are not counted: the secret is the caller's own, just handed out, so guessing
/// its codes gains nothing.
pub async fn confirm(
    app: &AppState,
    user: &User,
    code: &str,
    event: &NewEvent<'_>,
    mail_locale: &str,
    now: i64,
) -> Result<Confirmed, AuthError> {
    let Some(cred) = app.db.totp_get(&user.user_id).await?.filter(|c| !c.enabled) else {
        return Ok(Confirmed::NothingPending);
    };
    let secret = totp::open(&app.hmac_key, &user.user_id, &cred.sealed_secret)?;
    let Some(step) = totp::matching_step(&secret, code, now) else {
        return Ok(Confirmed::Wrong { secret });
    };
    let (codes, hashes) = fresh_codes(app, &user.user_id);
    let mut tx = app.db.begin().await?;
    // The step of the first code counts as accepted: it cannot log in a second time. The row
    // must still hold this secret (another tab may have started a new enrolment since).
    if !tx.totp_activate(&user.user_id, &cred.sealed_secret, step, now).await? {
        tx.rollback().await?;
        return Ok(Confirmed::NothingPending);
    }
    tx.backup_codes_replace(&user.user_id, &hashes, now).await?;
    tx.event_record(&user.user_id, EventKind::TotpEnabled, event, now).await?;
    tx.commit().await?;
    tracing::info!(user_id = %user.user_id, "two-factor login enabled");
    totp::notice(app, user, Kind::TotpEnabled, mail_locale);
    Ok(Confirmed::On { codes })
}

/// Turns TOTP off (secret, backup codes and lock go). False: it was not on (a pending
/// enrolment is not), so there is nothing to turn off or to tell anyone.
pub async fn disable(app: &AppState, user: &User, event: &NewEvent<'_>, mail_locale: &str, now: i64) -> Result<bool, AuthError> {
    let mut tx = app.db.begin().await?;
    if !tx.totp_enabled(&user.user_id).await? {
        tx.rollback().await?;
        return Ok(false);
    }
    tx.second_factor_remove(&user.user_id).await?;
    tx.event_record(&user.user_id, EventKind::TotpDisabled, event, now).await?;
    tx.commit().await?;
    tracing::info!(user_id = %user.user_id, "two-factor login disabled");
    totp::notice(app, user, Kind::TotpDisabled, mail_locale);
    Ok(true)
}

/// New backup codes replace all the old ones. `None`: TOTP is not on, and without it backup
/// codes would be a factor of their own.
pub async fn regenerate(
    app: &AppState,
    user: &User,
    event: &NewEvent<'_>,
    mail_locale: &str,
    now: i64,
) -> Result<Option<Vec<String>>, AuthError> {
    let (codes, hashes) = fresh_codes(app, &user.user_id);
    let mut tx = app.db.begin().await?;
    if !tx.totp_enabled(&user.user_id).await? {
        tx.rollback().await?;
        return Ok(None);
    }
    tx.backup_codes_replace(&user.user_id, &hashes, now).await?;
    tx.event_record(&user.user_id, EventKind::BackupCodesRegenerated, event, now)
        .await?;
    tx.commit().await?;
    tracing::info!(user_id = %user.user_id, "backup codes regenerated");
    totp::notice(app, user, Kind::BackupCodesRegenerated, mail_locale);
    Ok(Some(codes))
}

/// New codes for a user: the codes to show and their hashes to store.
fn fresh_codes(app: &AppState, user_id: &str) -> (Vec<String>, Vec<String>) {
    let codes = backup_codes::generate();
    let hashes = codes
        .iter()
        .map(|c| backup_codes::hash_for_storage(&app.hmac_key, user_id, c))
        .collect();
    (codes, hashes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_have_their_wire_names() {
        let names: Vec<_> = [TotpState::Off, TotpState::Pending, TotpState::On]
            .iter()
            .map(|s| s.as_str())
            .collect();
        assert_eq!(names, ["off", "pending", "on"]);
    }
}
