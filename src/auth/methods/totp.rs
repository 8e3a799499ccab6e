//! TOTP (RFC 6238, amr `otp`) as the second factor of a login, over `auth::totp`'s checks:
//! replay-proof steps, and five wrong codes lock the second factor (counted atomically there).

use super::{AuthMethod, Begun, Caller, Deps, Limit, Role, Verdict};
use crate::auth::attempt::Attempt;
use crate::auth::totp::{self, Verdict as Checked};
use crate::auth::{AuthError, Method};
use crate::notify::{self, Kind};
use crate::paths;
use crate::secret::Secret;

pub struct Totp;

/// A second-factor verdict as the engine's; the owner is told, after the answer, when this
/// try locked the second factor.
pub(super) async fn verdict(d: &Deps<'_>, c: Caller<'_>, user_id: &str, checked: Checked) -> Result<Verdict, AuthError> {
    Ok(match checked {
        Checked::Passed => Verdict::Passed {
            user_id: user_id.to_owned(),
        },
        Checked::Wrong { locked: false } | Checked::NotEnrolled => Verdict::Wrong("two_factor.wrong_code"),
        Checked::Wrong { locked: true } => {
            if let Some(user) = d.db.user_get(user_id).await? {
                let link = format!("{}{}", d.issuer, paths::TWO_FACTOR);
                let loc = user.locale.as_deref().unwrap_or(c.locale);
                notify::send_later(
                    d.pages,
                    d.mailer,
                    d.issuer,
                    Kind::SecondFactorLocked,
                    &user.email,
                    loc,
                    None,
                    Some(&link),
                );
            }
            Verdict::Locked
        }
        Checked::Locked { .. } => Verdict::Locked,
    })
}

impl AuthMethod for Totp {
    const NAME: &'static str = "totp";
    const METHOD: Method = Method::Totp;
    const ROLE: Role = Role::Second;
    // Four tries a minute first (seed 001); the lock is counted inside `auth::totp::guarded`,
    // per account, before the code is compared; the attempt's own failures end it at the
    // fifth as well.
    const LIMIT: Limit = Limit::SecondFactor;
    type Input = Secret;

    async fn begin(_: &Deps<'_>, _: Caller<'_>, _: &mut Attempt, _: i64) -> Result<Begun, AuthError> {
        Ok(Begun::Form)
    }

    async fn verify(d: &Deps<'_>, c: Caller<'_>, a: &Attempt, code: Secret, now: i64) -> Result<Verdict, AuthError> {
        let Some(user_id) = a.user_id.as_deref() else {
            return Ok(Verdict::Wrong("two_factor.wrong_code"));
        };
        let checked = totp::check_login(d.db, d.hmac_key, user_id, code.expose(), now).await?;
        verdict(d, c, user_id, checked).await
    }
}
