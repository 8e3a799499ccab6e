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
        }
    }

    pub fn kind(self) -> Kind {
        match self {
            Method::Password => Kind::Knowledge,
            Method::EmailCode => Kind::Mailbox,
            // A backup code stands in for the device it backs up.
            Method::Totp | Method::BackupCode => Kind::Device,
        }
    }
}

/// One passed factor, with when it passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Factor {
    pub method: Method,
    pub at: i64,
}

/// The session's `amr`: each value once, in the order passed, then `mfa` when two kinds of
/// proof passed (RFC 8176 §2). The one source of amr: the session, the codes, the ID token,
/// the access token and introspection all copy it from here.
pub fn amr(factors: &[Factor]) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for f in factors {
        if !out.contains(&f.method.amr()) {
            out.push(f.method.amr());
        }
    }
    // The same rule as `acr`: `mfa` and the 2fa level always go together.
    if kinds(factors) >= 2 {
        out.push(AMR_MFA);
    }
    out
}

/// How many different kinds of proof the factors add up to.
pub fn kinds(factors: &[Factor]) -> usize {
    let mut seen: Vec<Kind> = Vec::new();
    for f in factors {
        if !seen.contains(&f.method.kind()) {
            seen.push(f.method.kind());
        }
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
        Factor { method, at: 0 }
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
}
