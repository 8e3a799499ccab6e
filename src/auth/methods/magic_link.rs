//! The magic link: the emailed code's authority in a URL, single use, only in the browser that
//! asked. It proves the same mailbox as the code, so it passes the same factor.

use super::email_code::proven;
use super::{AuthMethod, Begun, Caller, Deps, Limit, Role, Verdict};
use crate::auth::attempt::{Attempt, CodeFor, Pending};
use crate::auth::email_otp;
use crate::auth::{AuthError, Method};
use crate::secret::Secret;

pub struct MagicLink;

impl AuthMethod for MagicLink {
    const NAME: &'static str = "magic_link";
    const METHOD: Method = Method::EmailCode;
    const ROLE: Role = Role::Both;
    const LIMIT: Limit = Limit::None;
    type Input = Secret;

    /// The link goes out with the code (`EmailCode::begin`).
    async fn begin(_: &Deps<'_>, _: Caller<'_>, _: &mut Attempt, _: i64) -> Result<Begun, AuthError> {
        Ok(Begun::Form)
    }

    async fn verify(d: &Deps<'_>, _: Caller<'_>, a: &Attempt, token: Secret, now: i64) -> Result<Verdict, AuthError> {
        let invalid = Verdict::Wrong("code.link_invalid");
        let Some(Pending::EmailCode { code_for }) = a.pending else {
            return Ok(invalid);
        };
        // Reset mails carry no link: a new password is typed with the code.
        if code_for == CodeFor::ResetPassword {
            return Ok(invalid);
        }
        // The browser check is part of the update, so a link opened elsewhere is not spent.
        let Some(spent) = email_otp::take_link(d.db, token.expose(), &a.browser_hash, now).await? else {
            return Ok(invalid);
        };
        let (Some(user_id), true) = (
            spent.user_id.clone(),
            spent.attempt_hash.as_deref() == Some(a.attempt_hash.as_str()),
        ) else {
            return Ok(invalid);
        };
        if spent.purpose != code_for.purpose() || a.user_id.as_ref().is_some_and(|u| *u != user_id) {
            return Ok(invalid);
        }
        proven(d, &user_id, code_for == CodeFor::VerifyEmail, now).await?;
        Ok(Verdict::Passed { user_id })
    }
}
