//! A login attempt, typed: what one `login_attempts` row says about where a login stands.

use serde::{Deserialize, Serialize};

use super::{AuthError, Factor, Method};
use crate::store::AttemptRecord;

/// What the attempt is for, besides proving who the user is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    Login,
    /// A new account proving its address.
    Signup,
    /// A forgotten password: the emailed code, then a new password, then whatever the policy
    /// still asks (a reset is a first factor like any other, never a way around the second).
    Reset {
        password_set: bool,
    },
    /// Step-up before a sensitive account action (issue 8 §4): the user is the session's, and
    /// a pass renews THAT session's authentication time instead of starting a new one.
    Reauth {
        /// The hash of the session being re-authenticated (as `login_sessions` stores it).
        session_hash: String,
        back: Action,
    },
    /// An upstream identity new to clef whose address is a local account's, without proof on
    /// both sides that the address is the same person's: the user logs in to that account
    /// first, and the identity is linked when the login is done (issue 9; keycloak#53041).
    Link {
        upstream: String,
        issuer: String,
        subject: String,
        /// The address the upstream gave, kept with the link.
        email: Option<String>,
    },
    /// "Link Google" on the account page: the redirect of a signed-in user, whose callback
    /// links the identity to THAT user (`Attempt::user_id`), if it is nobody else's.
    LinkFromAccount {
        session_hash: String,
    },
}

/// The account pages a re-authentication leads back to: the `then=` of `/account/reauth`,
/// parsed into this list, so the query never chooses a URL (unknown names: the account page).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Account,
    Password,
    Email,
    Session,
    Sessions,
    DisableTotp,
    RegenerateBackupCodes,
    EnableTotp,
    /// Unlinking an upstream identity (issue 9).
    Unlink,
}

impl Action {
    const ALL: [Action; 9] = [
        Action::Account,
        Action::Password,
        Action::Email,
        Action::Session,
        Action::Sessions,
        Action::DisableTotp,
        Action::RegenerateBackupCodes,
        Action::EnableTotp,
        Action::Unlink,
    ];

    /// The `then=` names the account and two-factor pages send.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Account => "account",
            Action::Password => "password",
            Action::Email => "email",
            Action::Session => "session",
            Action::Sessions => "sessions",
            Action::DisableTotp => "disable_totp",
            Action::RegenerateBackupCodes => "regenerate_backup_codes",
            Action::EnableTotp => "enable_totp",
            Action::Unlink => "unlink",
        }
    }

    pub fn parse(s: &str) -> Action {
        Action::ALL.into_iter().find(|a| a.as_str() == s).unwrap_or(Action::Account)
    }

    /// Where the user lands once re-authenticated, to submit the action afresh.
    pub fn page(self) -> &'static str {
        match self {
            Action::DisableTotp | Action::RegenerateBackupCodes | Action::EnableTotp => crate::paths::TWO_FACTOR,
            _ => crate::paths::ACCOUNT,
        }
    }
}

/// How strong the login must be: two factor kinds, or one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    One,
    Two,
}

/// What the attempt must reach, fixed when it starts (from the client's `--require-2fa`, the
/// request's `acr_values`, and `prompt=login`/`max_age`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requirement {
    pub level: Level,
    /// `prompt=login` or `max_age`: factors must be passed in this attempt. Every attempt
    /// starts empty today, so this is recorded for the day a session seeds an attempt.
    #[serde(default)]
    pub fresh: bool,
}

impl Requirement {
    pub const ONE: Requirement = Requirement {
        level: Level::One,
        fresh: false,
    };

    /// OIDC Core §3.1.2.1: `acr_values` and `max_age`/`prompt=login`; the client's demand for
    /// two factors is part of `wants_2fa`.
    pub fn for_request(req: &crate::oauth::authorize::AuthorizeRequest) -> Requirement {
        Requirement {
            level: if req.wants_2fa() { Level::Two } else { Level::One },
            fresh: req.prompt_login || req.max_age.is_some(),
        }
    }
}

/// Which emailed code is in flight for this attempt; the code's HMAC binds the same purpose.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CodeFor {
    Login,
    VerifyEmail,
    ResetPassword,
    SecondFactor,
    /// The code of a re-authentication, for a user without TOTP or a password.
    Reauth,
}

/// What an upstream redirect left to check at its callback. The attempt's own hash is the
/// hash of `state` (the callback finds it by that alone); the nonce and the PKCE verifier are
/// secrets, sealed with `secret_box` under the server key, bound to that hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamPending {
    pub upstream: String,
    pub state_hash: String,
    /// `secret_box::seal` of `{"nonce": …, "verifier": …}`.
    pub sealed: String,
}

/// The started method's server-side state (portier's `BridgeData`): one serde-tagged column,
/// so a method that needs a challenge or an upstream `state` adds a variant, not a table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum Pending {
    EmailCode { code_for: CodeFor },
    Upstream(UpstreamPending),
}

/// One `login_attempts` row, typed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    pub attempt_hash: String,
    pub browser_hash: String,
    pub purpose: Purpose,
    pub request_id: Option<String>,
    pub requirement: Requirement,
    pub claimed_email: Option<String>,
    /// Set only by a passed factor (or the account a sign-up just created), never a form field.
    pub user_id: Option<String>,
    pub factors: Vec<Factor>,
    pub pending: Option<Pending>,
    pub failures: u32,
    pub version: i64,
    pub created_at: i64,
    pub expires_at: i64,
}

impl Attempt {
    pub fn passed(&self, m: Method) -> bool {
        self.factors.iter().any(|f| f.method == m)
    }
}

fn json<T: Serialize>(v: &T) -> Result<String, AuthError> {
    serde_json::to_string(v).map_err(|e| AuthError::Corrupt(e.to_string()))
}

fn parse<T: for<'de> Deserialize<'de>>(s: &str) -> Result<T, AuthError> {
    serde_json::from_str(s).map_err(|e| AuthError::Corrupt(e.to_string()))
}

impl TryFrom<AttemptRecord> for Attempt {
    type Error = AuthError;
    fn try_from(r: AttemptRecord) -> Result<Attempt, AuthError> {
        Ok(Attempt {
            purpose: parse(&r.purpose)?,
            requirement: parse(&r.requirement)?,
            factors: parse(&r.factors)?,
            pending: r.pending.as_deref().map(parse).transpose()?,
            attempt_hash: r.attempt_hash,
            browser_hash: r.browser_hash,
            request_id: r.request_id,
            claimed_email: r.claimed_email,
            user_id: r.user_id,
            failures: u32::try_from(r.failures).unwrap_or(u32::MAX),
            version: r.version,
            created_at: r.created_at,
            expires_at: r.expires_at,
        })
    }
}

impl TryFrom<&Attempt> for AttemptRecord {
    type Error = AuthError;
    fn try_from(a: &Attempt) -> Result<AttemptRecord, AuthError> {
        Ok(AttemptRecord {
            attempt_hash: a.attempt_hash.clone(),
            browser_hash: a.browser_hash.clone(),
            purpose: json(&a.purpose)?,
            request_id: a.request_id.clone(),
            requirement: json(&a.requirement)?,
            claimed_email: a.claimed_email.clone(),
            user_id: a.user_id.clone(),
            factors: json(&a.factors)?,
            pending: a.pending.as_ref().map(json).transpose()?,
            failures: i64::from(a.failures),
            version: a.version,
            created_at: a.created_at,
            expires_at: a.expires_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_the_row() {
        let a = Attempt {
            attempt_hash: "h".into(),
            browser_hash: "b".into(),
            purpose: Purpose::Reset { password_set: true },
            request_id: Some("r".into()),
            requirement: Requirement {
                level: Level::Two,
                fresh: true,
            },
            claimed_email: Some("a@x.test".into()),
            user_id: Some("u".into()),
            factors: vec![Factor::new(Method::EmailCode, 10)],
            pending: Some(Pending::EmailCode {
                code_for: CodeFor::SecondFactor,
            }),
            failures: 2,
            version: 3,
            created_at: 1,
            expires_at: 100,
        };
        let row = AttemptRecord::try_from(&a).unwrap();
        assert_eq!(
            row.pending.as_deref(),
            Some(r#"{"method":"email_code","code_for":"second_factor"}"#)
        );
        assert_eq!(row.factors, r#"[{"method":"email_code","at":10}]"#);
        assert_eq!(Attempt::try_from(row).unwrap(), a);
    }

    #[test]
    fn reauth_back_is_one_of_the_account_pages() {
        assert_eq!(Action::parse("disable_totp").page(), crate::paths::TWO_FACTOR);
        assert_eq!(Action::parse("regenerate_backup_codes").page(), crate::paths::TWO_FACTOR);
        for then in ["password", "email", "session", "sessions", "account"] {
            assert_eq!(Action::parse(then).as_str(), then);
            assert_eq!(Action::parse(then).page(), crate::paths::ACCOUNT);
        }
        for evil in ["https://evil.example", "//evil.example", "", "/account/two-factor"] {
            assert_eq!(Action::parse(evil), Action::Account, "{evil}");
        }
        let p = Purpose::Reauth {
            session_hash: "s".into(),
            back: Action::DisableTotp,
        };
        let row = serde_json::to_string(&p).unwrap();
        assert_eq!(row, r#"{"reauth":{"session_hash":"s","back":"disable_totp"}}"#);
        assert_eq!(parse::<Purpose>(&row).unwrap(), p);
    }
}
