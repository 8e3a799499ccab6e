//! The password (RFC 8176 `pwd`): a first factor, or the second after an emailed code.

use super::{AuthMethod, Begun, Caller, Deps, Limit, Role, Verdict};
use crate::auth::attempt::Attempt;
use crate::auth::{AuthError, Method, Outcome, password};
use crate::secret::Secret;

pub struct Password;

impl AuthMethod for Password {
    const NAME: &'static str = "password";
    const METHOD: Method = Method::Password;
    const ROLE: Role = Role::Both;
    const LIMIT: Limit = Limit::Password;
    type Input = Secret;

    async fn begin(_: &Deps<'_>, _: Caller<'_>, _: &mut Attempt, _: i64) -> Result<Begun, AuthError> {
        Ok(Begun::Form)
    }

    /// Checked against the typed address's account, with argon2 run on a dummy hash for an
    /// unknown one, so time and answer say nothing about which addresses exist.
    async fn verify(d: &Deps<'_>, _: Caller<'_>, a: &Attempt, input: Secret, _: i64) -> Result<Verdict, AuthError> {
        let email = a.claimed_email.as_deref().unwrap_or("");
        Ok(match password::verify(d.db, d.hasher, email, input.expose()).await? {
            // A user already known to the attempt must stay the same user.
            Outcome::Done { user_id } if a.user_id.as_ref().is_none_or(|u| *u == user_id) => Verdict::Passed { user_id },
            Outcome::Unverified { user_id } if a.user_id.as_ref().is_none_or(|u| *u == user_id) => Verdict::Held { user_id },
            _ => Verdict::Wrong("login.failed"),
        })
    }
}
