//! TOTP second factor (RFC 6238): a fresh secret and its otpauth URI, QR code and typed form
//! for enrolment; verification with replay protection; the second-factor lock that TOTP and
//! backup codes share; the operator's reset.

use std::future::Future;

use crate::auth::AuthError;
use crate::auth::backup_codes;
use crate::secret::ct_eq;
use crate::secret_box;
use crate::secret_key::SecretKeys;
use crate::store::{Db, EventKind, NewEvent, Removed, TryTaken};

/// RFC 6238 §4 and §5.2 with the values authenticator apps assume: HMAC-SHA-1, 6 digits,
/// 30-second steps, and one step of skew either way.
pub const DIGITS: usize = 6;
pub const STEP: i64 = 30;
pub const SKEW: i64 = 1;
/// RFC 4226 §4 R6 recommends 160 bits.
pub const SECRET_BYTES: usize = 20;
/// Consecutive wrong TOTP or backup codes before the second factor locks (seed 001).
pub const MAX_FAILURES: i64 = 5;
/// How long the lock lasts, seconds.
pub const LOCK_SECS: i64 = 15 * 60;

/// What a second-factor check says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The code is right and spent (its step accepted, or the backup code deleted); the
    /// failure count starts again.
    Passed,
    /// Wrong, replayed or malformed: counted. `locked`: this try was the last one allowed,
    /// and the second factor is now locked for [`LOCK_SECS`].
    Wrong { locked: bool },
    /// Locked until this Unix time; the code was not looked at and nothing was counted.
    Locked { until: i64 },
    /// The user has no TOTP on (for backup codes: never happens; a user without codes gets
    /// `Wrong`). Nothing was counted.
    NotEnrolled,
}

/// A fresh secret from the operating system's CSPRNG.
pub fn new_secret() -> Vec<u8> {
    let mut s = vec![0u8; SECRET_BYTES];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut s);
    s
}

fn totp(secret: &[u8], issuer: &str, email: &str) -> Result<totp_rs::Totp, AuthError> {
    // The otpauth label separates issuer and account with ':', so neither may hold one
    // (Key URI Format); an address with a quoted ':' is shown without it.
    let account: String = email.chars().filter(|c| *c != ':').collect();
    let issuer: String = issuer.chars().filter(|c| *c != ':').collect();
    totp_rs::Builder::new()
        .with_secret(secret.to_vec())
        .with_account_name(account)
        .with_issuer(Some(issuer))
        .build()
        .map_err(|e| AuthError::Totp(e.to_string()))
}

/// `otpauth://totp/ISSUER:EMAIL?secret=…&issuer=…`, what authenticator apps scan.
pub fn otpauth_uri(secret: &[u8], issuer: &str, email: &str) -> Result<String, AuthError> {
    totp(secret, issuer, email)?.to_url().map_err(|e| AuthError::Totp(e.to_string()))
}

/// The base32 secret (RFC 4648 §6, no padding) in groups of four, for typing by hand.
pub fn grouped_base32(secret: &[u8]) -> String {
    let b32 = totp_rs::Secret::from(secret.to_vec()).to_base32();
    b32.as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The URI as a QR code in an inline SVG, made here: no external service, no script.
pub fn qr_svg(uri: &str) -> Result<String, AuthError> {
    let code =
        qrcode::QrCode::with_error_correction_level(uri.as_bytes(), qrcode::EcLevel::M).map_err(|e| AuthError::Totp(e.to_string()))?;
    let svg = code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(200, 200)
        .quiet_zone(true)
        .build();
    // Inline in HTML: the XML declaration has no place there.
    Ok(match svg.find("<svg") {
        Some(at) => svg[at..].to_owned(),
        None => svg,
    })
}

/// The typed code without spaces, if it is six digits.
pub fn normalize(code: &str) -> Option<String> {
    let digits: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    (digits.len() == DIGITS && digits.bytes().all(|b| b.is_ascii_digit())).then_some(digits)
}

/// The time step whose code `code` is, within ±[`SKEW`] of `now`. Every step in the window is
/// computed and compared in constant time, so timing says nothing about which one matched.
pub fn matching_step(secret: &[u8], code: &str, now: i64) -> Option<i64> {
    let code = normalize(code)?;
    let t = totp_rs::Builder::new().with_secret(secret.to_vec()).build().ok()?;
    let current = now.div_euclid(STEP);
    let mut found = None;
    for step in (current - SKEW)..=(current + SKEW) {
        if step < 0 {
            continue;
        }
        let expected = t.generate((step * STEP) as u64).to_string();
        if ct_eq(&expected, &code) {
            found = Some(step);
        }
    }
    found
}

/// The code at `unix_time`: for tests and diagnostics; logins go through `matching_step`.
pub fn code_at(secret: &[u8], unix_time: i64) -> Option<String> {
    let t = totp_rs::Builder::new().with_secret(secret.to_vec()).build().ok()?;
    Some(t.generate(unix_time.max(0) as u64).to_string())
}

/// Associated data of a sealed TOTP secret: its purpose and its row, so a ciphertext copied
/// to another user does not open (crate::secret_box).
pub fn sealing_aad(user_id: &str) -> Vec<u8> {
    format!("clef totp secret\0{user_id}").into_bytes()
}

/// Seals a secret for `user_id`'s row.
pub fn seal(keys: &SecretKeys, user_id: &str, secret: &[u8]) -> Result<String, AuthError> {
    secret_box::seal(keys, &sealing_aad(user_id), secret).map_err(AuthError::from)
}

pub fn open(keys: &SecretKeys, user_id: &str, sealed: &str) -> Result<Vec<u8>, AuthError> {
    secret_box::open(keys, &sealing_aad(user_id), sealed).map_err(AuthError::from)
}

/// Runs `check` (true: the code is right and spent) under the second-factor lock: the try is
/// taken first, atomically, so no more than [`MAX_FAILURES`] checks ever run between two
/// successes, however many arrive at once. Records the lock as a security event.
pub(crate) async fn guarded(
    db: &Db,
    user_id: &str,
    now: i64,
    check: impl Future<Output = Result<bool, AuthError>>,
) -> Result<Verdict, AuthError> {
    let failures = match db.second_factor_try(user_id, MAX_FAILURES, LOCK_SECS, now).await? {
        TryTaken::Locked { until } => return Ok(Verdict::Locked { until }),
        TryTaken::Taken { failures } => failures,
    };
    if check.await? {
        db.second_factor_clear(user_id).await?;
        return Ok(Verdict::Passed);
    }
    let locked = failures >= MAX_FAILURES;
    if locked {
        tracing::warn!(user_id = %user_id, "second factor locked after repeated wrong codes");
        db.event_record(user_id, EventKind::SecondFactorLocked, &NewEvent::default(), now)
            .await?;
    }
    Ok(Verdict::Wrong { locked })
}

/// A TOTP code as the second factor of a login, for a user whose first factor passed.
///
/// - `Passed`: right code, step not accepted before (it is now); failures reset.
/// - `Wrong { locked }`: wrong, replayed or malformed code, counted; `locked` on the fifth.
/// - `Locked { until }`: nothing checked; try again after `until`.
/// - `NotEnrolled`: the user has no TOTP on; nothing counted.
///
/// The caller sends the lock mail on `Wrong { locked: true }` ([`check_login_notify`] does).
pub async fn check_login(db: &Db, keys: &SecretKeys, user_id: &str, code: &str, now: i64) -> Result<Verdict, AuthError> {
    let Some(cred) = db.totp_get(user_id).await?.filter(|c| c.enabled) else {
        return Ok(Verdict::NotEnrolled);
    };
    // Opened before the try is taken: a secret this instance cannot open (its key ring not
    // reloaded yet after a rotation) is our failure, not a wrong code, and is not counted.
    let secret = open(keys, user_id, &cred.sealed_secret)?;
    guarded(db, user_id, now, async {
        let Some(step) = matching_step(&secret, code, now) else {
            return Ok(false);
        };
        let accepted = db.totp_accept_step(user_id, step).await?;
        if accepted && !secret_box::is_current(keys, &cred.sealed_secret) {
            // Sealed before a secret rotation: seal it again under the current key, so the
            // next rotation, which drops the old key, does not lose it.
            let fresh = seal(keys, user_id, &secret)?;
            db.totp_reseal(user_id, &cred.sealed_secret, &fresh).await?;
        }
        Ok(accepted)
    })
    .await
}

/// Seals again, under the ring's signing key, every TOTP secret sealed by an older key, so
/// that a second `clef keys rotate-secret` (which drops the oldest key) loses none. Run at
/// start-up and whenever the ring changes. Returns how many were sealed again.
pub async fn reseal_all(db: &Db, keys: &SecretKeys) -> Result<u64, AuthError> {
    let mut n = 0;
    for (user_id, sealed) in db.totp_sealed_all().await? {
        if secret_box::is_current(keys, &sealed) {
            continue;
        }
        match open(keys, &user_id, &sealed) {
            Ok(secret) => {
                let fresh = seal(keys, &user_id, &secret)?;
                n += u64::from(db.totp_reseal(&user_id, &sealed, &fresh).await?);
            }
            // Sealed by a key no longer in the ring: nothing opens it now; the user needs a
            // backup code or `clef users reset-2fa`.
            Err(_) => tracing::error!(user_id = %user_id, "a TOTP secret opens under no server secret key"),
        }
    }
    Ok(n)
}

/// Which code the user typed at the second-factor step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecondFactor {
    Totp,
    BackupCode,
}

/// [`check_login`] or [`backup_codes::check_login`], plus the owner's mail when this try
/// locked the second factor. `locale`: the mail's language when the user has none stored.
pub async fn check_login_notify(
    app: &crate::app::AppState,
    user_id: &str,
    factor: SecondFactor,
    code: &str,
    locale: &str,
    now: i64,
) -> Result<Verdict, AuthError> {
    let verdict = match factor {
        SecondFactor::Totp => check_login(&app.db, &app.hmac_key, user_id, code, now).await?,
        SecondFactor::BackupCode => backup_codes::check_login(&app.db, &app.hmac_key, user_id, code, now).await?,
    };
    if verdict == (Verdict::Wrong { locked: true })
        && let Some(user) = app.db.user_get(user_id).await?
    {
        notice(app, &user, crate::notify::Kind::SecondFactorLocked, locale);
    }
    Ok(verdict)
}

/// A notice mail to the account's owner about its second factor, sent after the answer.
pub fn notice(app: &crate::app::AppState, user: &crate::store::User, kind: crate::notify::Kind, locale: &str) {
    let link = app.config.endpoint(crate::paths::TWO_FACTOR);
    crate::notify::send_later(
        &app.pages,
        &app.mailer,
        &app.config.issuer,
        kind,
        &user.email,
        user.locale.as_deref().unwrap_or(locale),
        None,
        Some(&link),
    );
}

/// Whether a session authenticated at `auth_time` may do a sensitive action now (disable
/// TOTP, regenerate backup codes): within `reauth_after` seconds (`CLEF_REAUTH_AFTER`).
pub fn recent_enough(session_auth_time: i64, now: i64, reauth_after: i64) -> bool {
    now.saturating_sub(session_auth_time) <= reauth_after
}

/// What `clef users reset-2fa` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResetReport {
    pub user_id: String,
    pub removed: Removed,
}

/// The operator's reset for a lost device without backup codes: removes TOTP, the backup
/// codes and the lock, and records a `SecondFactorReset` event, in one transaction.
/// `Ok(None)`: no user has this email.
pub async fn reset(db: &Db, email: &str, now: i64) -> Result<Option<ResetReport>, AuthError> {
    let Some(user) = db.user_by_email(email).await? else {
        return Ok(None);
    };
    let mut tx = db.begin().await?;
    let removed = tx.second_factor_remove(&user.user_id).await?;
    let detail = format!(
        "operator reset: totp {}, {} backup codes, lock {}",
        if removed.totp { "removed" } else { "none" },
        removed.backup_codes,
        if removed.lock { "cleared" } else { "none" }
    );
    let event = NewEvent {
        detail: Some(&detail),
        ..NewEvent::default()
    };
    tx.event_record(&user.user_id, EventKind::SecondFactorReset, &event, now).await?;
    tx.commit().await?;
    tracing::warn!(user_id = %user.user_id, totp = removed.totp, backup_codes = removed.backup_codes, "second factor reset by an operator");
    Ok(Some(ResetReport {
        user_id: user.user_id,
        removed,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 Appendix B, SHA-1 rows, truncated to six digits.
    const RFC_SECRET: &[u8] = b"12345678901234567890";

    #[test]
    fn rfc_6238_vectors() {
        for (t, code) in [
            (59, "287082"),
            (1_111_111_109, "081804"),
            (1_234_567_890, "005924"),
            (2_000_000_000, "279037"),
        ] {
            assert_eq!(code_at(RFC_SECRET, t).unwrap(), code, "T={t}");
            assert_eq!(matching_step(RFC_SECRET, code, t), Some(t / STEP), "T={t}");
        }
    }

    #[test]
    fn one_step_of_skew_either_way_and_no_more() {
        let now = 1_700_000_015;
        let step = now / STEP;
        for (offset, want) in [(-2, None), (-1, Some(step - 1)), (0, Some(step)), (1, Some(step + 1)), (2, None)] {
            let code = code_at(RFC_SECRET, (step + offset) * STEP).unwrap();
            assert_eq!(matching_step(RFC_SECRET, &code, now), want, "offset {offset}");
        }
        let code = code_at(RFC_SECRET, now).unwrap();
        let spaced = format!("{} {}", &code[..3], &code[3..]);
        assert_eq!(matching_step(RFC_SECRET, &spaced, now), Some(step));
        for bad in ["", "12345", "1234567", "12a456", "１２３４５６"] {
            assert_eq!(matching_step(RFC_SECRET, bad, now), None, "{bad}");
        }
    }

    #[test]
    fn enrolment_material() {
        let secret = new_secret();
        assert_eq!(secret.len(), 20);
        assert_ne!(secret, new_secret());
        let uri = otpauth_uri(&secret, "clef", "ana@example.test").unwrap();
        let b32 = totp_rs::Secret::from(secret.clone()).to_base32();
        assert_eq!(uri, format!("otpauth://totp/clef:ana%40example.test?secret={b32}&issuer=clef"));
        let grouped = grouped_base32(&secret);
        assert_eq!(grouped.replace(' ', ""), b32);
        assert!(grouped.split(' ').all(|g| g.len() == 4), "{grouped}");
        assert_eq!(b32.len(), 32, "160 bits are 32 base32 letters");
        let odd = otpauth_uri(&secret, "My: App", "we:ird@example.test").unwrap();
        assert!(odd.starts_with("otpauth://totp/My%20App:weird%40example.test?"), "{odd}");
        let svg = qr_svg(&uri).unwrap();
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"), "{svg}");
        assert!(!svg.contains("<script") && !svg.contains("href"));
    }

    #[test]
    fn recent_enough_is_inclusive_and_ignores_a_future_auth_time() {
        for (auth_time, now, want) in [
            (1000, 1300, true),
            (1000, 1301, false),
            (1000, 1000, true),
            (1200, 1000, true),
            (0, 1_000_000, false),
        ] {
            assert_eq!(recent_enough(auth_time, now, 300), want, "{auth_time} {now}");
        }
    }

    #[test]
    fn sealed_secret_is_bound_to_its_user() {
        let config = crate::config::RawConfig {
            secret_key: Some(crate::secret_key::new_value()),
            ..Default::default()
        }
        .validate()
        .unwrap();
        let keys = SecretKeys::load(&config).unwrap();
        let s = new_secret();
        let sealed = seal(&keys, "u1", &s).unwrap();
        assert_eq!(open(&keys, "u1", &sealed).unwrap(), s);
        assert!(open(&keys, "u2", &sealed).is_err());
    }
}
