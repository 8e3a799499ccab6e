//! Sign-in methods, one file each, behind one small interface. Only `auth::engine` calls them:
//! it runs the limits first and asks `auth::policy` what comes after.

pub mod backup_code;
pub mod email_code;
pub mod magic_link;
pub mod password;
pub mod totp;
// fed
pub mod upstream;

use std::future::Future;
use std::sync::Arc;

use super::attempt::Attempt;
use super::password::Hasher;
use super::{AuthError, Method};
use crate::config::Limits;
use crate::mail::Mailer;
use crate::pages::Pages;
use crate::secret_key::SecretKeys;
use crate::store::Db;

/// Whether a method may open a login, follow another factor, or both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    First,
    Second,
    Both,
}

/// Which of `auth::limits`' gates a method's verification sits behind; the engine runs it
/// before `verify`, in one place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// The password gate: a place in the account's and the address's failure budgets.
    Password,
    /// The code-check gate: tries per minute, then per-account back-off.
    CodeCheck,
    /// Nothing to guess: the link's token has 256 bits and works once, in one browser.
    None,
    /// Second-factor tries a minute, per account and per (account, address).
    SecondFactor,
}

/// What a method needs from the server.
pub struct Deps<'a> {
    pub db: &'a Db,
    pub hasher: &'a Hasher,
    pub hmac_key: &'a SecretKeys,
    pub limits: &'a Limits,
    pub pages: &'a Pages,
    pub mailer: &'a Arc<Mailer>,
    pub issuer: &'a str,
    pub otp_ttl: i64,
    pub signup_open: bool,
    // fed
    pub upstreams: &'a crate::upstream::Upstreams,
}

/// Who is asking: for the limits, the mails' language and the log.
#[derive(Clone, Copy, Debug)]
pub struct Caller<'a> {
    pub ip: &'a str,
    pub browser_hash: &'a str,
    pub locale: &'a str,
    /// For the security events the engine records (a re-authentication's).
    pub user_agent: Option<&'a str>,
}

/// What starting a method did.
#[derive(Debug, PartialEq, Eq)]
pub enum Begun {
    /// Nothing to prepare: show its form.
    Form,
    /// A code went out (or, for an unknown address, seemed to); `mail_failed` only for mails
    /// the page may report, those to an account the user has already proven.
    Sent { mail_failed: bool },
    // fed
    /// Off to another site (an upstream provider): the browser is sent to this URL.
    Redirect(String),
}

/// A method's answer on one input.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Passed {
        user_id: String,
    },
    /// The right password, but one chosen before the address was proven: the address must be
    /// verified from this browser first (account pre-hijacking, USENIX Security 2022).
    Held {
        user_id: String,
    },
    /// Wrong input; the catalogue key says so without saying which part was wrong.
    Wrong(&'static str),
    /// The account's second factor is locked (this try locked it, or it already was): the
    /// attempt ends, as the TOTP issue asks.
    Locked,
}

pub trait AuthMethod {
    const NAME: &'static str;
    /// The factor a pass records (whose `amr` goes into the session).
    const METHOD: Method;
    const ROLE: Role;
    const LIMIT: Limit;
    /// The form's input; secrets in it are `Secret`, so `Debug` never prints them.
    type Input: Send + std::fmt::Debug;

    fn begin(d: &Deps<'_>, c: Caller<'_>, a: &mut Attempt, now: i64) -> impl Future<Output = Result<Begun, AuthError>> + Send;

    fn verify(
        d: &Deps<'_>,
        c: Caller<'_>,
        a: &Attempt,
        input: Self::Input,
        now: i64,
    ) -> impl Future<Output = Result<Verdict, AuthError>> + Send;
}
