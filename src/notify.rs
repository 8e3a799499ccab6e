//! The mails clef sends: rendered from `templates/email/` in the user's language.

use std::sync::Arc;

use serde::Serialize;

use crate::mail::{Mailer, Outgoing};
use crate::pages::Pages;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    LoginCode,
    SignupOffer,
    SecondFactor,
    Locked,
    VerifyEmail,
    Welcome,
    /// An account made at a first login with an upstream provider: nothing was proven by mail,
    /// so the mail does not say the address is confirmed.
    WelcomeUpstream,
    AccountExists,
    ResetPassword,
    PasswordChanged,
    CodesLocked,
    /// Five wrong second-factor codes in a row: TOTP and backup codes paused for 15 minutes.
    SecondFactorLocked,
    TotpEnabled,
    TotpDisabled,
    BackupCodesRegenerated,
    /// The code that proves a new address before an account moves to it.
    ChangeEmailCode,
    /// To the old address, once the account has moved.
    EmailChanged,
    /// To an address's owner, when another account asked to move to it.
    EmailInUse,
    /// Sessions of the account were logged out from the account page or API.
    SessionsEnded,
    /// The code a signed-in user types to confirm it is them before a sensitive action.
    ReauthCode,
}

impl Kind {
    fn key(self) -> &'static str {
        match self {
            Kind::LoginCode => "mail.login_code",
            Kind::SignupOffer => "mail.signup_offer",
            Kind::SecondFactor => "mail.second_factor",
            Kind::Locked => "mail.locked",
            Kind::VerifyEmail => "mail.verify_email",
            Kind::Welcome => "mail.welcome",
            Kind::WelcomeUpstream => "mail.welcome_upstream",
            Kind::AccountExists => "mail.account_exists",
            Kind::ResetPassword => "mail.reset_password",
            Kind::PasswordChanged => "mail.password_changed",
            Kind::CodesLocked => "mail.codes_locked",
            Kind::SecondFactorLocked => "mail.second_factor_locked",
            Kind::TotpEnabled => "mail.totp_enabled",
            Kind::TotpDisabled => "mail.totp_disabled",
            Kind::BackupCodesRegenerated => "mail.backup_codes_regenerated",
            Kind::ChangeEmailCode => "mail.change_email_code",
            Kind::ReauthCode => "mail.reauth_code",
            Kind::EmailChanged => "mail.email_changed",
            Kind::EmailInUse => "mail.email_in_use",
            Kind::SessionsEnded => "mail.sessions_ended",
        }
    }
    fn link_label(self) -> &'static str {
        match self {
            Kind::SignupOffer => "mail.signup_link_label",
            Kind::Locked | Kind::CodesLocked | Kind::Welcome | Kind::WelcomeUpstream | Kind::AccountExists | Kind::PasswordChanged => {
                "mail.login_link_label"
            }
            Kind::LoginCode | Kind::SecondFactor | Kind::VerifyEmail | Kind::ResetPassword => "mail.link_label",
            Kind::SecondFactorLocked | Kind::TotpEnabled | Kind::TotpDisabled | Kind::BackupCodesRegenerated => {
                "mail.two_factor_link_label"
            }
            Kind::EmailChanged | Kind::EmailInUse | Kind::SessionsEnded => "mail.login_link_label",
            // Sent without a link: the code is typed on the account page of the browser that asked.
            Kind::ChangeEmailCode => "mail.link_label",
            // Sent without a link too: typed on the re-authentication page.
            Kind::ReauthCode => "mail.link_label",
        }
    }
    /// The HTML mail's button: what pressing it does, as an action.
    fn button(self) -> &'static str {
        match self {
            Kind::LoginCode | Kind::Locked | Kind::CodesLocked | Kind::AccountExists => "mail.button.sign_in",
            Kind::SecondFactor => "mail.button.finish_sign_in",
            Kind::VerifyEmail => "mail.button.verify",
            Kind::SignupOffer => "mail.button.create_account",
            Kind::Welcome | Kind::WelcomeUpstream => "mail.button.account",
            Kind::PasswordChanged | Kind::ResetPassword => "mail.button.reset",
            Kind::SecondFactorLocked | Kind::TotpEnabled | Kind::TotpDisabled | Kind::BackupCodesRegenerated => "mail.button.account",
            Kind::EmailChanged | Kind::EmailInUse => "mail.button.sign_in",
            Kind::ChangeEmailCode => "mail.button.verify",
            Kind::SessionsEnded => "mail.button.account",
            Kind::ReauthCode => "mail.button.verify",
        }
    }
}

#[derive(Serialize)]
struct MailCtx<'a> {
    locale: &'a str,
    kind: &'static str,
    subject: &'a str,
    code: Option<&'a str>,
    link: Option<&'a str>,
    link_label: &'static str,
    button: &'static str,
    issuer: &'a str,
}

/// Renders and sends one mail. Returns false when it could not be sent right away (it is
/// then retried in the background).
#[allow(clippy::too_many_arguments)]
pub async fn send(
    pages: &Pages,
    mailer: &Arc<Mailer>,
    issuer: &str,
    kind: Kind,
    to: &str,
    locale: &str,
    code: Option<&str>,
    link: Option<&str>,
) -> bool {
    match render(pages, issuer, kind, to, locale, code, link) {
        Some(m) => mailer.deliver(m).await,
        None => false,
    }
}

/// Renders one mail now and sends it after the answer (`Mailer::deliver_later`): for the
/// pages whose mail depends on whether the typed address has an account.
#[allow(clippy::too_many_arguments)]
pub fn send_later(
    pages: &Pages,
    mailer: &Arc<Mailer>,
    issuer: &str,
    kind: Kind,
    to: &str,
    locale: &str,
    code: Option<&str>,
    link: Option<&str>,
) {
    if let Some(m) = render(pages, issuer, kind, to, locale, code, link) {
        mailer.deliver_later(m);
    }
}

fn render(pages: &Pages, issuer: &str, kind: Kind, to: &str, locale: &str, code: Option<&str>, link: Option<&str>) -> Option<Outgoing> {
    // ops: a one-time code (or link with it) is going out.
    if code.is_some() {
        crate::telemetry::code_sent();
    }
    let subject_key = format!("{}.subject", kind.key());
    let subject = match pages.text(locale, &subject_key) {
        Some(s) => s.to_owned(),
        None => {
            tracing::error!(key = %subject_key, "mail subject missing from the catalogue");
            return None;
        }
    };
    let ctx = MailCtx {
        locale,
        kind: kind.key(),
        subject: &subject,
        code,
        link,
        link_label: kind.link_label(),
        button: kind.button(),
        issuer,
    };
    let (text, html) = match (pages.render("email/message.txt", &ctx), pages.render("email/message.html", &ctx)) {
        (Ok(t), Ok(h)) => (t, h),
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!(error = %e, "mail template failed");
            return None;
        }
    };
    Some(Outgoing {
        to: to.to_owned(),
        subject,
        text,
        html,
    })
}
