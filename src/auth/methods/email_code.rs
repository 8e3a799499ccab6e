//! The emailed six-digit code (RFC 8176 `otp`): passwordless first factor, the proof of a new
//! account's address, a reset's first step, and the second factor after a password.

use super::{AuthMethod, Begun, Caller, Deps, Limit, Role, Verdict};
use crate::auth::attempt::{Attempt, CodeFor, Pending, Purpose};
use crate::auth::email_otp::{self, Context};
use crate::auth::{AuthError, Method};
use crate::notify::{self, Kind};
use crate::paths;
use crate::secret::Secret;
use crate::store::OtpCheck;

pub struct EmailCode;

/// Which code this step needs: the attempt's own state decides, never a form field.
pub fn code_for(a: &Attempt) -> CodeFor {
    if let Purpose::Reauth { .. } = a.purpose {
        return CodeFor::Reauth;
    }
    if !a.factors.is_empty() {
        return CodeFor::SecondFactor;
    }
    match a.purpose {
        // A user already known without a factor: a held password login (the right password,
        // chosen before the address was proven) verifies the address first.
        Purpose::Login if a.user_id.is_some() => CodeFor::VerifyEmail,
        // A link's local login proves the mailbox like any passwordless login.
        Purpose::Login | Purpose::Link { .. } | Purpose::LinkFromAccount { .. } => CodeFor::Login,
        Purpose::Signup => CodeFor::VerifyEmail,
        Purpose::Reset { .. } => CodeFor::ResetPassword,
        Purpose::Reauth { .. } => CodeFor::Reauth,
    }
}

impl CodeFor {
    /// The purpose stored with the code and bound into its HMAC.
    pub fn purpose(self) -> &'static str {
        match self {
            CodeFor::Login => email_otp::LOGIN,
            CodeFor::VerifyEmail => email_otp::VERIFY_EMAIL,
            CodeFor::ResetPassword => email_otp::RESET_PASSWORD,
            CodeFor::SecondFactor => email_otp::SECOND_FACTOR,
            CodeFor::Reauth => email_otp::REAUTH,
        }
    }
}

/// The code or link proved the user holds the mailbox: the address is verified too, and a
/// first verification earns the welcome mail.
///
/// Account pre-hijacking (Sudhodanan & Paverd, USENIX Security 2022): a password chosen at
/// sign-up, before the address was proven, is kept only when `keep_pending_password` says the
/// proof came from the browser that chose it. Any other proof is the mailbox's owner, who may
/// not be whoever chose the password: it is removed.
pub(super) async fn proven(d: &Deps<'_>, user_id: &str, keep_pending_password: bool, now: i64) -> Result<(), AuthError> {
    if d.db.user_verify_email(user_id, keep_pending_password, now).await?
        && let Some(user) = d.db.user_get(user_id).await?
    {
        let link = format!("{}{}", d.issuer, paths::ACCOUNT);
        let loc = user.locale.as_deref().unwrap_or(crate::i18n::DEFAULT_LOCALE);
        notify::send(d.pages, d.mailer, d.issuer, Kind::Welcome, &user.email, loc, None, Some(&link)).await;
    }
    Ok(())
}

impl AuthMethod for EmailCode {
    const NAME: &'static str = "email_code";
    const METHOD: Method = Method::EmailCode;
    const ROLE: Role = Role::Both;
    const LIMIT: Limit = Limit::CodeCheck;
    type Input = Secret;

    /// Issues a code bound to this attempt and browser, and mails it. The page is the same
    /// whether or not the address has an account, and so is the work: a code row is written
    /// either way, and mails that depend on the account go out after the answer.
    async fn begin(d: &Deps<'_>, c: Caller<'_>, a: &mut Attempt, now: i64) -> Result<Begun, AuthError> {
        let code_for = code_for(a);
        a.pending = Some(Pending::EmailCode { code_for });
        let email = a.claimed_email.clone().unwrap_or_default();
        let user = match &a.user_id {
            Some(id) => d.db.user_get(id).await?,
            None => d.db.user_by_email(&email).await?,
        };
        let ctx = Context {
            user_id: user.as_ref().map(|u| u.user_id.as_str()),
            browser_hash: &a.browser_hash,
            request_id: a.request_id.as_deref(),
        };
        let issued = email_otp::issue_for(
            d.db,
            d.hmac_key,
            &email,
            code_for.purpose(),
            ctx,
            Some(&a.attempt_hash),
            d.otp_ttl,
            now,
        )
        .await?;
        let link = format!("{}{}?token={}", d.issuer, paths::LOGIN_LINK, issued.link_token);
        let code = Some(issued.code.as_str());
        match (code_for, &user) {
            // The user proved a first factor already, so a failed send may be said.
            (CodeFor::SecondFactor, Some(u)) => {
                let delivered = notify::send(
                    d.pages,
                    d.mailer,
                    d.issuer,
                    Kind::SecondFactor,
                    &u.email,
                    c.locale,
                    code,
                    Some(&link),
                )
                .await;
                return Ok(Begun::Sent { mail_failed: !delivered });
            }
            // Typed on the page of the signed-in browser that asked: no link, so the mail
            // cannot be a way to confirm from anywhere else. The user is known, so a failed
            // send may be said.
            (CodeFor::Reauth, Some(u)) => {
                let loc = u.locale.as_deref().unwrap_or(c.locale);
                let delivered = notify::send(d.pages, d.mailer, d.issuer, Kind::ReauthCode, &u.email, loc, code, None).await;
                return Ok(Begun::Sent { mail_failed: !delivered });
            }
            (CodeFor::Login, Some(u)) => {
                let loc = u.locale.as_deref().unwrap_or(c.locale);
                notify::send_later(d.pages, d.mailer, d.issuer, Kind::LoginCode, &u.email, loc, code, Some(&link));
            }
            // Sent after the answer, and the page never says whether it went: with sign-up
            // closed an unknown address gets no mail (OWASP WSTG-IDNT-04).
            (CodeFor::Login, None) if d.signup_open => {
                let signup = format!("{}{}", d.issuer, paths::SIGNUP);
                notify::send_later(
                    d.pages,
                    d.mailer,
                    d.issuer,
                    Kind::SignupOffer,
                    &email,
                    c.locale,
                    None,
                    Some(&signup),
                );
            }
            (CodeFor::VerifyEmail, Some(_)) => {
                notify::send_later(d.pages, d.mailer, d.issuer, Kind::VerifyEmail, &email, c.locale, code, Some(&link));
            }
            (CodeFor::ResetPassword, Some(u)) => {
                let loc = u.locale.as_deref().unwrap_or(c.locale);
                notify::send_later(d.pages, d.mailer, d.issuer, Kind::ResetPassword, &u.email, loc, code, None);
            }
            _ => {}
        }
        Ok(Begun::Sent { mail_failed: false })
    }

    async fn verify(d: &Deps<'_>, _: Caller<'_>, a: &Attempt, input: Secret, now: i64) -> Result<Verdict, AuthError> {
        let Some(Pending::EmailCode { code_for }) = a.pending else {
            return Ok(Verdict::Wrong("code.expired"));
        };
        let email = a.claimed_email.as_deref().unwrap_or("");
        let otp = match email_otp::check(d.db, d.hmac_key, email, code_for.purpose(), input.expose(), now).await? {
            OtpCheck::Accepted(otp) => otp,
            OtpCheck::Wrong { .. } => return Ok(Verdict::Wrong("code.wrong")),
            OtpCheck::Dead => return Ok(Verdict::Wrong("code.expired")),
        };
        // A code for an address with no account proves nothing and fails like a wrong one.
        let Some(user_id) = otp.user_id.clone() else {
            return Ok(Verdict::Wrong("code.wrong"));
        };
        if a.user_id.as_ref().is_some_and(|u| *u != user_id) {
            return Ok(Verdict::Wrong("code.wrong"));
        }
        // A second-factor or re-authentication code is good only in its own attempt, so the
        // browser (and for a re-authentication, the session) that asked for it.
        if matches!(code_for, CodeFor::SecondFactor | CodeFor::Reauth) && otp.attempt_hash.as_deref() != Some(a.attempt_hash.as_str()) {
            return Ok(Verdict::Wrong("code.expired"));
        }
        // A reset proves the mailbox once its new password is saved (`engine::new_password`).
        if code_for != CodeFor::ResetPassword {
            let keep = code_for == CodeFor::VerifyEmail && otp.browser_hash == a.browser_hash;
            proven(d, &user_id, keep, now).await?;
        }
        Ok(Verdict::Passed { user_id })
    }
}
