//! A backup code (amr `otp`) in place of the TOTP code: single use, under the same lock.

use super::totp::verdict;
use super::{AuthMethod, Begun, Caller, Deps, Limit, Role, Verdict};
use crate::auth::attempt::Attempt;
use crate::auth::{AuthError, Method, backup_codes};
use crate::secret::Secret;

pub struct BackupCode;

impl AuthMethod for BackupCode {
    const NAME: &'static str = "backup_code";
    const METHOD: Method = Method::BackupCode;
    const ROLE: Role = Role::Second;
    const LIMIT: Limit = Limit::SecondFactor;
    type Input = Secret;

    async fn begin(_: &Deps<'_>, _: Caller<'_>, _: &mut Attempt, _: i64) -> Result<Begun, AuthError> {
        Ok(Begun::Form)
    }

    async fn verify(d: &Deps<'_>, c: Caller<'_>, a: &Attempt, code: Secret, now: i64) -> Result<Verdict, AuthError> {
        let Some(user_id) = a.user_id.as_deref() else {
            return Ok(Verdict::Wrong("two_factor.wrong_code"));
        };
        let checked = backup_codes::check_login(d.db, d.hmac_key, user_id, code.expose(), now).await?;
        verdict(d, c, user_id, checked).await
    }
}
