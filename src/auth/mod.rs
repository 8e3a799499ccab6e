//! Sign-in: the login chain as one model. A login attempt (`attempt`) records what has been
//! proven; `policy` decides what comes next; `engine` runs a step (limits, method, store);
//! `methods` verify one factor each. HTTP only reads forms and renders the step it is given.

pub mod attempt;
pub mod backup_codes;
pub mod email_otp;
pub mod engine;
pub mod limits;
pub mod methods;
pub mod password;
pub mod policy;
pub mod second_factor;
pub mod totp;

use serde::{Deserialize, Serialize};

use crate::oauth::claims::{ACR_1FA, ACR_2FA, AMR_MFA, AMR_OTP, AMR_PASSWORD};

/// RFC 8176 has no value for a login at another provider; `fed` is Keycloak's and Authelia's
/// choice, and what the issue names.
pub const AMR_FED: &str = "fed";

/// A way to prove a factor. The engine matches on it exhaustively, so a new variant makes the
/// compiler list every place that must handle it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    Password,
    /// A six-digit code or the magic link carrying its authority: both prove the mailbox.
    EmailCode,
    Totp,
    BackupCode,
    /// A login at an upstream OpenID Connect provider (Google, a company IdP): a first factor only.
    Upstream,
}

/// What a factor proves. Two factors count as two only when they prove different things
/// (NIST SP 800-63B §4.2.1): a password and a TOTP code, not two mails to one mailbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Knowledge,
    Mailbox,
    Device,
}

impl Method {
    /// The RFC 8176 §2 method reference.
    pub fn amr(self) -> &'static str {
        match self {
            Method::Password => AMR_PASSWORD,
            // RFC 8176 has no value for mail; `otp` is what clef has sent since its first login code.
            Method::EmailCode | Method::Totp | Method::BackupCode => AMR_OTP,
            Method::Upstream => AMR_FED,
        }
    }

    pub fn kind(self) -> Kind {
        match self {
            Method::Password => Kind::Knowledge,
            Method::EmailCode => Kind::Mailbox,
            // A backup code stands in for the device it backs up.
            Method::Totp | Method::BackupCode => Kind::Device,
            // The upstream account is, as a rule, the one that holds the mailbox (a Gmail
            // address, a company IdP and its mail): it and the emailed code never make two.
            Method::Upstream => Kind::Mailbox,
        }
    }
}

/// One passed factor, with when it passed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Factor {
    pub method: Method,
    pub at: i64,
    /// For `Method::Upstream`: what the upstream said about its own login.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<Vouched>,
}

impl Factor {
    pub fn new(method: Method, at: i64) -> Factor {
        Factor {
            method,
            at,
            upstream: None,
        }
    }
}

/// An upstream login's own account: which upstream, its `amr` values (for information), and
/// whether its multi-factor claim stands in for clef's second step (`trust_mfa` and `mfa` in
/// its `amr`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vouched {
    pub id: String,
    #[serde(default)]
    pub amr: Vec<String>,
    #[serde(default)]
    pub mfa: bool,
}

impl Factor {
    /// An upstream login trusted for multi-factor: it counts as two kinds of proof.
    pub fn vouched_mfa(&self) -> bool {
        self.upstream.as_ref().is_some_and(|v| v.mfa)
    }
}

/// The session's `amr`: each value once, in the order passed, then `mfa` when two kinds of
/// proof passed (RFC 8176 §2). The one source of amr: the session, the codes, the ID token,
/// the access token and introspection all copy it from here.
///
/// After `fed` come the upstream's own values, for information: they say how the user logged
/// in THERE. Its `mfa` is left out unless it counted (`trust_mfa`), so an untrusted upstream
/// can never make a session look multi-factor.
pub fn amr(factors: &[Factor]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let add = |v: &str, out: &mut Vec<String>| {
        if !out.iter().any(|o| o == v) {
            out.push(v.to_owned());
        }
    };
    for f in factors {
        add(f.method.amr(), &mut out);
        for v in f.upstream.iter().flat_map(|u| &u.amr) {
            // RFC 8176 §2 values are short tokens; anything else is not repeated.
            let token = !v.is_empty() && v.len() <= 32 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if v != AMR_MFA && token {
                add(v, &mut out);
            }
        }
    }
    // The same rule as `acr`: `mfa` and the 2fa level always go together.
    if kinds(factors) >= 2 {
        add(AMR_MFA, &mut out);
    }
    out
}

/// How many different kinds of proof the factors add up to. A trusted upstream's multi-factor
/// login counts as two (README, "trust_mfa").
pub fn kinds(factors: &[Factor]) -> usize {
    let mut seen: Vec<Kind> = Vec::new();
    for f in factors {
        if !seen.contains(&f.method.kind()) {
            seen.push(f.method.kind());
        }
    }
    if factors.iter().any(Factor::vouched_mfa) {
        return seen.len().max(2);
    }
    seen.len()
}

/// The session's `acr`: the two-factor level once two kinds of proof passed.
pub fn acr(factors: &[Factor]) -> &'static str {
    if kinds(factors) >= 2 { ACR_2FA } else { ACR_1FA }
}

/// A method's verdict on one password check.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The password is right for this user (whether more is needed is `policy`'s call).
    Done { user_id: String },
    /// Wrong input. Deliberately says nothing about which part was wrong.
    Retry,
    /// The right password, but a pending one (chosen at sign-up, address not verified): no
    /// login until the address is verified from this browser.
    Unverified { user_id: String },
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("password hashing: {0}")]
    Hash(String),
    #[error("stored login attempt: {0}")]
    Corrupt(String),
    #[error("totp: {0}")]
    Totp(String),
    #[error(transparent)]
    SecretBox(#[from] crate::secret_box::BoxError),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(method: Method) -> Factor {
        Factor::new(method, 0)
    }

    #[test]
    fn amr_and_acr_from_factors() {
        use Method::*;
        for (passed, want_amr, want_acr) in [
            (vec![], vec![], ACR_1FA),
            (vec![Password], vec!["pwd"], ACR_1FA),
            (vec![EmailCode], vec!["otp"], ACR_1FA),
            (vec![Password, EmailCode], vec!["pwd", "otp", "mfa"], ACR_2FA),
            (vec![EmailCode, Password], vec!["otp", "pwd", "mfa"], ACR_2FA),
            (vec![Password, Totp], vec!["pwd", "otp", "mfa"], ACR_2FA),
            // Two kinds of proof, both `otp`: still multiple-factor.
            (vec![EmailCode, BackupCode], vec!["otp", "mfa"], ACR_2FA),
            // The same mailbox twice is still one kind of proof.
            (vec![EmailCode, EmailCode], vec!["otp"], ACR_1FA),
            (vec![Totp, BackupCode], vec!["otp"], ACR_1FA),
        ] {
            let factors: Vec<Factor> = passed.iter().copied().map(f).collect();
            assert_eq!(amr(&factors), want_amr, "{passed:?}");
            assert_eq!(acr(&factors), want_acr, "{passed:?}");
        }
    }

    #[test]
    fn upstream_amr_is_information_only() {
        let fed = |amr: &[&str], mfa: bool| Factor {
            method: Method::Upstream,
            at: 0,
            upstream: Some(Vouched {
                id: "google".into(),
                amr: amr.iter().map(|s| (*s).to_owned()).collect(),
                mfa,
            }),
        };
        // Untrusted: its `mfa` is dropped, and it is one factor.
        let untrusted = [fed(&["pwd", "mfa", "otp"], false)];
        assert_eq!(amr(&untrusted), ["fed", "pwd", "otp"]);
        assert_eq!(acr(&untrusted), ACR_1FA);
        // Trusted for MFA: two kinds, and `mfa` from clef's own rule.
        let trusted = [fed(&["pwd", "mfa"], true)];
        assert_eq!(amr(&trusted), ["fed", "pwd", "mfa"]);
        assert_eq!(acr(&trusted), ACR_2FA);
        // Then local TOTP: fed plus otp, two kinds.
        let with_totp = [fed(&["pwd"], false), f(Method::Totp)];
        assert_eq!(amr(&with_totp), ["fed", "pwd", "otp", "mfa"]);
        // The emailed code proves the same mailbox as the upstream account.
        assert_eq!(acr(&[fed(&[], false), f(Method::EmailCode)]), ACR_1FA);
        // Junk from the upstream is not repeated.
        assert_eq!(amr(&[fed(&["a b", "", &"x".repeat(40)], false)]), ["fed"]);
    }
}
