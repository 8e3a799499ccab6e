//! What comes next in a login attempt: the one pure decision every path that ends a login
//! goes through (password, emailed code, magic link, sign-up, reset), so none of them can skip
//! a second factor the user has or the client requires.

use super::attempt::{Attempt, Level, Purpose};
use super::{Kind, Method, acr, amr, kinds};

/// What a user can sign in with, as far as the policy needs to know. Built for a user in one
/// place, `engine::enrolled`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Enrolled {
    /// A usable password (not one still pending the address's verification).
    pub password: bool,
    pub totp: bool,
    pub backup_codes: u32,
}

/// Settings the decision depends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Wrong tries an attempt survives; the next one ends it.
    pub max_failures: u32,
    /// Whether TOTP enrolment exists, so a user without it can be offered it.
    pub totp_enrolment: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// Ask for a first factor, from these. The same list for every identifier, so nothing on
    /// the page says whether an account exists.
    Choose(Vec<Method>),
    /// Ask the now-known user for a further factor, from these.
    Ask(Vec<Method>),
    /// A reset's own step: the new password (not a factor).
    NewPassword,
    /// Every requirement is met: start the session with these.
    Done {
        amr: Vec<String>,
        acr: &'static str,
        /// A method worth offering to enrol right after (a two-factor login made with the
        /// emailed code by a user without TOTP).
        offer: Option<Method>,
    },
    /// The attempt cannot go on; the page says why and what to do.
    Over(Why),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Why {
    Expired,
    TooManyFailures,
    /// A factor passed, but the account is gone.
    UserGone,
    /// Two factors are required and the user has nothing left to give a second one with (a
    /// passwordless account without TOTP at a client that demands two): a dead end that must
    /// be said, not looped back to the login page.
    NoSecondFactor,
    /// Five wrong TOTP or backup codes locked the account's second factor.
    SecondFactorLocked,
    /// A link was confirmed, but the upstream identity is another account's by now.
    IdentityTaken,
}

/// First factors by purpose. A sign-up and a reset start by proving the mailbox.
fn first_factors(purpose: &Purpose) -> Vec<Method> {
    match purpose {
        // A link is confirmed by logging in to the local account the usual way (issue 9).
        Purpose::Login | Purpose::Link { .. } => vec![Method::Password, Method::EmailCode],
        Purpose::Signup | Purpose::Reset { .. } => vec![Method::EmailCode],
        // Not asked: a re-authentication's user is known, so it asks `strongest` instead; the
        // account page's link is the signed-in user's, and its callback ends it.
        Purpose::Reauth { .. } | Purpose::LinkFromAccount { .. } => Vec::new(),
    }
}

/// The strongest method a known user has, for a re-authentication (issue 8 §4): TOTP (with a
/// backup code for a lost phone), else the password, else a code to the account's address.
pub fn strongest(e: &Enrolled) -> Vec<Method> {
    if e.totp {
        vec![Method::Totp, Method::BackupCode]
    } else if e.password {
        vec![Method::Password]
    } else {
        vec![Method::EmailCode]
    }
}

/// The decision. `enrolled` is `None` while no factor has passed (the user is not known), or
/// when the account behind a passed factor no longer exists.
pub fn next(a: &Attempt, enrolled: Option<&Enrolled>, s: Settings, now: i64) -> Next {
    if now >= a.expires_at {
        return Next::Over(Why::Expired);
    }
    if a.failures >= s.max_failures {
        return Next::Over(Why::TooManyFailures);
    }
    if let Purpose::Reauth { .. } = a.purpose {
        return reauth(a, enrolled);
    }
    if a.factors.is_empty() {
        return Next::Choose(first_factors(&a.purpose));
    }
    let Some(e) = enrolled else {
        return Next::Over(Why::UserGone);
    };
    if a.purpose == (Purpose::Reset { password_set: false }) {
        return Next::NewPassword;
    }
    // A user who turned TOTP on has raised the bar for every login, whatever the client asks
    // and whichever first factor passed: a reset, an emailed code or an upstream login is no
    // way around it, unless the operator trusts that upstream's own `mfa` (`trust_mfa`).
    let vouched = a.factors.iter().any(super::Factor::vouched_mfa);
    if e.totp && !(a.passed(Method::Totp) || a.passed(Method::BackupCode) || vouched) {
        return Next::Ask(vec![Method::Totp, Method::BackupCode]);
    }
    if a.requirement.level == Level::Two && kinds(&a.factors) < 2 {
        // Without TOTP the two kinds are the password and the mailbox, in whichever order.
        let mut further = Vec::new();
        if e.password && !a.passed(Method::Password) {
            further.push(Method::Password);
        }
        // Not after an upstream login either: the upstream account holds the same mailbox.
        if !a.factors.iter().any(|f| f.method.kind() == Kind::Mailbox) {
            further.push(Method::EmailCode);
        }
        return if further.is_empty() {
            Next::Over(Why::NoSecondFactor)
        } else {
            Next::Ask(further)
        };
    }
    // Only at the end of a login: a reset or a sign-up ends on its own confirmation page.
    let by_mail_second = a.purpose == Purpose::Login && a.factors.len() >= 2 && a.passed(Method::EmailCode);
    Next::Done {
        amr: amr(&a.factors),
        acr: acr(&a.factors),
        offer: (s.totp_enrolment && !e.totp && by_mail_second).then_some(Method::Totp),
    }
}

/// A re-authentication: the session's user, known from the start, passes one factor, the
/// strongest they have, in this attempt (`Requirement.fresh`: nothing is taken from the
/// session). Its amr/acr are this confirmation's own.
fn reauth(a: &Attempt, enrolled: Option<&Enrolled>) -> Next {
    let Some(e) = enrolled else {
        return Next::Over(Why::UserGone);
    };
    let asked = strongest(e);
    if !a.factors.iter().any(|f| asked.contains(&f.method)) {
        return Next::Ask(asked);
    }
    Next::Done {
        amr: amr(&a.factors),
        acr: acr(&a.factors),
        offer: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Factor;
    use crate::auth::attempt::Requirement;
    use crate::oauth::claims::{ACR_1FA, ACR_2FA};
    use Level::{One, Two};
    use Method::{BackupCode, EmailCode, Password, Totp};

    const NOW: i64 = 1_764_590_000;
    const S: Settings = Settings {
        max_failures: 5,
        totp_enrolment: false,
    };

    fn attempt(purpose: Purpose, level: Level, passed: &[Method]) -> Attempt {
        Attempt {
            attempt_hash: "h".into(),
            browser_hash: "b".into(),
            purpose,
            request_id: None,
            requirement: Requirement { level, fresh: false },
            claimed_email: None,
            user_id: (!passed.is_empty()).then(|| "u".to_owned()),
            factors: passed.iter().map(|&method| Factor::new(method, NOW - 5)).collect(),
            pending: None,
            failures: 0,
            version: 0,
            created_at: NOW - 10,
            expires_at: NOW + 600,
        }
    }

    fn user(password: bool, totp: bool) -> Enrolled {
        Enrolled {
            password,
            totp,
            backup_codes: if totp { 8 } else { 0 },
        }
    }

    fn done(amr: &[&'static str], acr: &'static str) -> Next {
        Next::Done {
            amr: amr.iter().map(|s| (*s).to_owned()).collect(),
            acr,
            offer: None,
        }
    }

    const LOGIN: Purpose = Purpose::Login;
    const SIGNUP: Purpose = Purpose::Signup;
    const RESET: Purpose = Purpose::Reset { password_set: true };

    #[test]
    fn next_step() {
        let pwd = user(true, false);
        let nopwd = user(false, false);
        let totp = user(true, true);
        let totp_nopwd = user(false, true);
        let ask_totp = Next::Ask(vec![Totp, BackupCode]);
        #[rustfmt::skip]
        type Row<'a> = (&'a str, Purpose, Level, Option<&'a Enrolled>, &'a [Method], Next);
        let table: Vec<Row> = vec![
            // Nothing passed: the same first factors whoever the visitor turns out to be.
            ("first, unknown", LOGIN, One, None, &[], Next::Choose(vec![Password, EmailCode])),
            ("first, 2fa client", LOGIN, Two, None, &[], Next::Choose(vec![Password, EmailCode])),
            ("first, sign-up", SIGNUP, One, None, &[], Next::Choose(vec![EmailCode])),
            (
                "first, reset",
                Purpose::Reset { password_set: false },
                Two,
                None,
                &[],
                Next::Choose(vec![EmailCode]),
            ),
            // One factor is enough.
            ("password", LOGIN, One, Some(&pwd), &[Password], done(&["pwd"], ACR_1FA)),
            ("passwordless code", LOGIN, One, Some(&nopwd), &[EmailCode], done(&["otp"], ACR_1FA)),
            ("code, has password", LOGIN, One, Some(&pwd), &[EmailCode], done(&["otp"], ACR_1FA)),
            ("sign-up verified", SIGNUP, One, Some(&pwd), &[EmailCode], done(&["otp"], ACR_1FA)),
            ("reset", RESET, One, Some(&pwd), &[EmailCode], done(&["otp"], ACR_1FA)),
            // TOTP on raises every login, after ANY first factor: no path skips it.
            ("totp after password", LOGIN, One, Some(&totp), &[Password], ask_totp.clone()),
            ("totp after code", LOGIN, One, Some(&totp), &[EmailCode], ask_totp.clone()),
            (
                "totp after code, nopwd",
                LOGIN,
                One,
                Some(&totp_nopwd),
                &[EmailCode],
                ask_totp.clone(),
            ),
            ("totp after reset", RESET, One, Some(&totp), &[EmailCode], ask_totp.clone()),
            ("totp after sign-up", SIGNUP, One, Some(&totp), &[EmailCode], ask_totp.clone()),
            ("totp at a 2fa client", LOGIN, Two, Some(&totp), &[Password], ask_totp.clone()),
            (
                "totp passed",
                LOGIN,
                One,
                Some(&totp),
                &[Password, Totp],
                done(&["pwd", "otp", "mfa"], ACR_2FA),
            ),
            (
                "backup code passed",
                LOGIN,
                Two,
                Some(&totp),
                &[EmailCode, BackupCode],
                done(&["otp", "mfa"], ACR_2FA),
            ),
            // Two factors required, no TOTP: the emailed code, as today.
            (
                "2fa after password",
                LOGIN,
                Two,
                Some(&pwd),
                &[Password],
                Next::Ask(vec![EmailCode]),
            ),
            (
                "2fa done",
                LOGIN,
                Two,
                Some(&pwd),
                &[Password, EmailCode],
                done(&["pwd", "otp", "mfa"], ACR_2FA),
            ),
            // ...or the password after a code, a reset or a sign-up, not the login page again.
            ("2fa after code", LOGIN, Two, Some(&pwd), &[EmailCode], Next::Ask(vec![Password])),
            ("2fa after reset", RESET, Two, Some(&pwd), &[EmailCode], Next::Ask(vec![Password])),
            (
                "2fa after sign-up",
                SIGNUP,
                Two,
                Some(&pwd),
                &[EmailCode],
                Next::Ask(vec![Password]),
            ),
            (
                "2fa code then password",
                LOGIN,
                Two,
                Some(&pwd),
                &[EmailCode, Password],
                done(&["otp", "pwd", "mfa"], ACR_2FA),
            ),
            // The dead end, said instead of looped: nothing left for a second kind of proof.
            (
                "2fa, passwordless",
                LOGIN,
                Two,
                Some(&nopwd),
                &[EmailCode],
                Next::Over(Why::NoSecondFactor),
            ),
            (
                "2fa, passwordless signup",
                SIGNUP,
                Two,
                Some(&nopwd),
                &[EmailCode],
                Next::Over(Why::NoSecondFactor),
            ),
            // A reset asks for its new password before anything else.
            (
                "reset, new password",
                Purpose::Reset { password_set: false },
                One,
                Some(&pwd),
                &[EmailCode],
                Next::NewPassword,
            ),
            (
                "reset, new password, totp",
                Purpose::Reset { password_set: false },
                One,
                Some(&totp),
                &[EmailCode],
                Next::NewPassword,
            ),
            // The account went away mid-attempt.
            ("user gone", LOGIN, One, None, &[Password], Next::Over(Why::UserGone)),
        ];
        for (name, purpose, level, enrolled, passed, want) in table {
            assert_eq!(next(&attempt(purpose, level, passed), enrolled, S, NOW), want, "{name}");
        }
    }

    #[test]
    fn first_factors_never_depend_on_the_account() {
        let users = [None, Some(user(true, false)), Some(user(false, false)), Some(user(true, true))];
        for level in [One, Two] {
            let answers: Vec<Next> = users
                .iter()
                .map(|u| next(&attempt(LOGIN, level, &[]), u.as_ref(), S, NOW))
                .collect();
            assert!(answers.windows(2).all(|w| w[0] == w[1]), "{answers:?}");
        }
    }

    #[test]
    fn expiry_and_failures_end_the_attempt() {
        let a = attempt(LOGIN, One, &[Password]);
        let pwd = user(true, false);
        assert_eq!(next(&a, Some(&pwd), S, a.expires_at - 1), done(&["pwd"], ACR_1FA));
        assert_eq!(next(&a, Some(&pwd), S, a.expires_at), Next::Over(Why::Expired));
        let mut tired = attempt(LOGIN, Two, &[Password]);
        tired.failures = 4;
        assert_eq!(next(&tired, Some(&pwd), S, NOW), Next::Ask(vec![EmailCode]));
        tired.failures = 5;
        assert_eq!(next(&tired, Some(&pwd), S, NOW), Next::Over(Why::TooManyFailures));
    }

    #[test]
    fn totp_enrolment_is_offered_after_a_mailed_second_factor() {
        let s = Settings { totp_enrolment: true, ..S };
        let pwd = user(true, false);
        let two = attempt(LOGIN, Two, &[Password, EmailCode]);
        let offered = Next::Done {
            amr: vec!["pwd".into(), "otp".into(), "mfa".into()],
            acr: ACR_2FA,
            offer: Some(Totp),
        };
        assert_eq!(next(&two, Some(&pwd), s, NOW), offered);
        assert_eq!(
            next(&two, Some(&pwd), S, NOW),
            done(&["pwd", "otp", "mfa"], ACR_2FA),
            "not before enrolment exists"
        );
        assert_eq!(next(&attempt(LOGIN, One, &[Password]), Some(&pwd), s, NOW), done(&["pwd"], ACR_1FA));
        assert_eq!(
            next(&attempt(RESET, Two, &[EmailCode, Password]), Some(&pwd), s, NOW),
            done(&["otp", "pwd", "mfa"], ACR_2FA),
            "a reset ends on its own page"
        );
        let with_totp = attempt(LOGIN, Two, &[Password, Totp]);
        assert_eq!(
            next(&with_totp, Some(&user(true, true)), s, NOW),
            done(&["pwd", "otp", "mfa"], ACR_2FA)
        );
    }

    /// Rows for an upstream login (issue 9): TOTP still follows unless the upstream is
    /// trusted for MFA and vouched for it; a two-factor client then asks the password, never
    /// an emailed code (the upstream account holds the same mailbox); a link's local login.
    #[test]
    fn after_an_upstream_login() {
        use crate::auth::Vouched;
        let fed = |mfa: bool| Factor {
            method: Method::Upstream,
            at: NOW - 5,
            upstream: Some(Vouched {
                id: "google".into(),
                amr: vec!["pwd".into(), "mfa".into()],
                mfa,
            }),
        };
        let with = |purpose: Purpose, level: Level, factors: Vec<Factor>| {
            let mut a = attempt(purpose, level, &[]);
            a.user_id = Some("u".into());
            a.factors = factors;
            a
        };
        let (pwd, nopwd, totp) = (user(true, false), user(false, false), user(true, true));
        let ask_totp = Next::Ask(vec![Totp, BackupCode]);
        type Row<'a> = (&'a str, Attempt, &'a Enrolled, Next);
        let table: Vec<Row> = vec![
            (
                "one factor is enough",
                with(LOGIN, One, vec![fed(false)]),
                &nopwd,
                done(&["fed", "pwd"], ACR_1FA),
            ),
            ("totp still asked", with(LOGIN, One, vec![fed(false)]), &totp, ask_totp.clone()),
            (
                "upstream says mfa, untrusted",
                with(LOGIN, Two, vec![fed(false)]),
                &totp,
                ask_totp.clone(),
            ),
            (
                "trusted mfa stands in for totp",
                with(LOGIN, One, vec![fed(true)]),
                &totp,
                done(&["fed", "pwd", "mfa"], ACR_2FA),
            ),
            (
                "trusted mfa at a 2fa client",
                with(LOGIN, Two, vec![fed(true)]),
                &pwd,
                done(&["fed", "pwd", "mfa"], ACR_2FA),
            ),
            (
                "totp after the upstream",
                with(LOGIN, One, vec![fed(false), Factor::new(Totp, NOW)]),
                &totp,
                done(&["fed", "pwd", "otp", "mfa"], ACR_2FA),
            ),
            (
                "2fa client: the password",
                with(LOGIN, Two, vec![fed(false)]),
                &pwd,
                Next::Ask(vec![Password]),
            ),
            (
                "2fa client, passwordless: said",
                with(LOGIN, Two, vec![fed(false)]),
                &nopwd,
                Next::Over(Why::NoSecondFactor),
            ),
            (
                "2fa client, then the password",
                with(LOGIN, Two, vec![fed(false), Factor::new(Password, NOW)]),
                &pwd,
                done(&["fed", "pwd", "mfa"], ACR_2FA),
            ),
        ];
        for (name, a, enrolled, want) in table {
            assert_eq!(next(&a, Some(enrolled), S, NOW), want, "{name}");
        }
        // A link waits for the local account's own login, like any login.
        let link = Purpose::Link {
            upstream: "google".into(),
            issuer: "https://accounts.google.com".into(),
            subject: "s".into(),
            email: None,
        };
        assert_eq!(
            next(&attempt(link.clone(), One, &[]), None, S, NOW),
            Next::Choose(vec![Password, EmailCode])
        );
        assert_eq!(next(&attempt(link, One, &[Password]), Some(&pwd), S, NOW), done(&["pwd"], ACR_1FA));
    }

    /// Rows for a re-authentication (issue 8 §4), in a table of their own: the user is known
    /// before any factor, and the strongest method they have is asked, whatever the level.
    #[test]
    fn reauth_asks_the_strongest_method() {
        use crate::auth::attempt::Action;
        let reauth = || Purpose::Reauth {
            session_hash: "s".into(),
            back: Action::DisableTotp,
        };
        let pwd = user(true, false);
        let nopwd = user(false, false);
        let totp = user(true, true);
        let totp_nopwd = user(false, true);
        let ask_totp = Next::Ask(vec![Totp, BackupCode]);
        type Row<'a> = (&'a str, Option<&'a Enrolled>, &'a [Method], Next);
        let table: Vec<Row> = vec![
            ("totp on: totp, not the password", Some(&totp), &[], ask_totp.clone()),
            ("totp on, passwordless", Some(&totp_nopwd), &[], ask_totp.clone()),
            ("password only", Some(&pwd), &[], Next::Ask(vec![Password])),
            ("neither: an emailed code", Some(&nopwd), &[], Next::Ask(vec![EmailCode])),
            ("totp passed", Some(&totp), &[Totp], done(&["otp"], ACR_1FA)),
            ("backup code passed", Some(&totp), &[BackupCode], done(&["otp"], ACR_1FA)),
            ("password passed", Some(&pwd), &[Password], done(&["pwd"], ACR_1FA)),
            ("code passed", Some(&nopwd), &[EmailCode], done(&["otp"], ACR_1FA)),
            // A weaker method than the user's strongest is no confirmation.
            ("password, totp on", Some(&totp), &[Password], ask_totp.clone()),
            ("code, has a password", Some(&pwd), &[EmailCode], Next::Ask(vec![Password])),
            ("user gone", None, &[], Next::Over(Why::UserGone)),
        ];
        for level in [One, Two] {
            for (name, enrolled, passed, want) in &table {
                let mut a = attempt(reauth(), level, passed);
                a.user_id = Some("u".into());
                a.requirement.fresh = true;
                assert_eq!(next(&a, *enrolled, S, NOW), *want, "{name}, {level:?}");
            }
        }
        let mut tired = attempt(reauth(), One, &[]);
        tired.failures = 5;
        assert_eq!(next(&tired, Some(&pwd), S, NOW), Next::Over(Why::TooManyFailures));
        assert_eq!(next(&tired, Some(&pwd), S, tired.expires_at), Next::Over(Why::Expired));
    }
}
