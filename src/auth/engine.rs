//! Runs one step of a login attempt: the limits first, then the method, then the store, then
//! the policy. The only caller of `methods`, of the limits' gates and of `store::attempts`.

use super::attempt::{Attempt, CodeFor, Pending, Purpose, Requirement};
use super::limits::{self, CodeGate, Gate, Verdict as Sends};
use super::methods::email_code::EmailCode;
use super::methods::{AuthMethod, Begun, Caller, Deps, Limit, Verdict};
use super::policy::{self, Enrolled, Next, Settings, Why};
use super::{AuthError, Factor, Method};
use crate::notify::{self, Kind};
use crate::paths;
use crate::secret::{Secret, random_token, sha256_b64};
use crate::store::{AttemptRecord, Db, EventKind, NewEvent, NewUser};

/// An attempt lives as long as the authorization request it serves may wait.
pub const ATTEMPT_TTL: i64 = 30 * 60;

/// Attempt ids are 32 characters; anything longer was not made here and is not looked up.
const MAX_ID: usize = 64;

pub const SETTINGS: Settings = Settings {
    // Wrong second factors an attempt survives (the TOTP issue: the 5th ends it).
    max_failures: 5,
    // Enrolment lives at /account/two-factor; a finished login shows the offer
    // (`Authenticated::offer`) on its way back to the application (`http::steps`).
    totp_enrolment: true,
};

/// The one place that says what a user can sign in with: the policy decides from this.
pub async fn enrolled(db: &Db, user_id: &str) -> Result<Option<Enrolled>, AuthError> {
    let Some(u) = db.user_get(user_id).await? else {
        return Ok(None);
    };
    // A TOTP secret still pending its first code is not on yet.
    let totp = db.totp_get(user_id).await?.is_some_and(|c| c.enabled);
    let backup_codes = u32::try_from(db.backup_codes_count(user_id).await?).unwrap_or(0);
    Ok(Some(Enrolled {
        password: u.password_hash.is_some() && !u.password_pending,
        totp,
        backup_codes,
    }))
}

/// An attempt and the id its forms carry (only the hash is stored).
#[derive(Clone, Debug)]
pub struct Live {
    pub id: String,
    pub attempt: Attempt,
}

/// The login a finished attempt proved: what the session is made of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authenticated {
    pub user_id: String,
    pub amr: Vec<String>,
    pub acr: &'static str,
    pub request_id: Option<String>,
    /// A page to confirm on before going on (`done.signup`, `done.reset`).
    pub confirm: Option<&'static str>,
    /// A method to offer enrolling in.
    pub offer: Option<Method>,
}

/// What HTTP renders after a step.
#[derive(Debug)]
pub enum Step {
    /// Show the attempt's next step; `problem` and `notice` are catalogue keys.
    Show {
        live: Box<Live>,
        next: Next,
        problem: Option<&'static str>,
        notice: Option<&'static str>,
        mail_failed: bool,
    },
    /// A limit refused the try before any method ran; try again after `retry_after` seconds.
    Refused {
        live: Box<Live>,
        message: &'static str,
        retry_after: i64,
    },
    Finished(Authenticated),
    /// A re-authentication passed: its session's authentication time is now; back to `back`'s
    /// page, where the user submits the action afresh (no POST is replayed).
    Reauthenticated {
        user_id: String,
        back: super::attempt::Action,
    },
    /// The attempt is over (expired, finished by a racing post, too many wrong tries, a dead end).
    Over {
        why: Why,
        request_id: Option<String>,
    },
    // fed
    /// Off to an upstream provider's authorization endpoint (a 303).
    Redirect(String),
    /// An upstream login ended before clef could go on (`methods::upstream::Failure`).
    UpstreamFailed {
        failure: super::methods::upstream::Failure,
        request_id: Option<String>,
    },
    /// The account page's "Link": the identity is the signed-in user's now (or already was).
    Linked {
        user_id: String,
        already: bool,
    },
}

/// A new attempt, not yet stored: a password login that fails writes nothing.
pub fn begin_attempt(
    purpose: Purpose,
    request_id: Option<String>,
    requirement: Requirement,
    email: &str,
    browser_hash: &str,
    now: i64,
) -> Live {
    let id = random_token(24);
    let attempt = Attempt {
        attempt_hash: sha256_b64(&id),
        browser_hash: browser_hash.to_owned(),
        purpose,
        request_id,
        requirement,
        claimed_email: Some(email.to_owned()),
        user_id: None,
        factors: Vec::new(),
        pending: None,
        failures: 0,
        version: 0,
        created_at: now,
        expires_at: now + ATTEMPT_TTL,
    };
    Live { id, attempt }
}

/// The live attempt behind an id, only for the browser that started it.
pub async fn load(db: &Db, id: &str, browser_hash: &str, now: i64) -> Result<Option<Live>, AuthError> {
    if id.is_empty() || id.len() > MAX_ID {
        return Ok(None);
    }
    let Some(row) = db.attempt_get(&sha256_b64(id), browser_hash, now).await? else {
        return Ok(None);
    };
    Ok(Some(Live {
        id: id.to_owned(),
        attempt: Attempt::try_from(row)?,
    }))
}

/// The attempt behind a magic link, for the browser that opened it.
pub async fn load_by_link(db: &Db, token: &str, browser_hash: &str, now: i64) -> Result<Option<Attempt>, AuthError> {
    let Some(hash) = db.otp_link_attempt(&sha256_b64(token), now).await? else {
        return Ok(None);
    };
    db.attempt_get(&hash, browser_hash, now).await?.map(Attempt::try_from).transpose()
}

/// Stores the attempt: a first write creates the row, later ones need the version read.
/// `false`: another post changed it first, and nothing was written.
pub(in crate::auth) async fn save(db: &Db, a: &mut Attempt, now: i64) -> Result<bool, AuthError> {
    if a.version == 0 {
        a.version = 1;
        db.attempt_create(&AttemptRecord::try_from(&*a)?).await?;
        return Ok(true);
    }
    let won = db.attempt_update(&AttemptRecord::try_from(&*a)?, now).await?;
    if won {
        a.version += 1;
    }
    Ok(won)
}

pub(in crate::auth) fn over(a: &Attempt, why: Why) -> Step {
    Step::Over {
        why,
        request_id: a.request_id.clone(),
    }
}

fn show(live: Live, next: Next) -> Step {
    Step::Show {
        live: Box::new(live),
        next,
        problem: None,
        notice: None,
        mail_failed: false,
    }
}

/// What the limits said before a method ran, to settle after it.
enum Hold {
    Password(limits::Reservation),
    Code { failures: i64 },
    Nothing,
}

/// The one place the limits run: before any hashing or code comparison.
async fn gate(d: &Deps<'_>, c: Caller<'_>, limit: Limit, a: &Attempt, now: i64) -> Result<Result<Hold, (&'static str, i64)>, AuthError> {
    let email = a.claimed_email.as_deref().unwrap_or("");
    Ok(match limit {
        Limit::Password => match limits::password_gate(d.db, d.limits, email, c.ip, now).await? {
            Gate::Open(r) => Ok(Hold::Password(r)),
            // Which limit applies is said: the account's lock, or this address's throttle.
            Gate::AccountLocked { retry_after } => Err(("login.locked", retry_after)),
            Gate::AddressLimited { retry_after } => Err(("login.ip_limited", retry_after)),
            Gate::Busy => Err(("login.busy", 5)),
        },
        Limit::CodeCheck => match limits::code_check(d.db, d.limits, email, c.ip, now).await? {
            CodeGate::Allowed { failures } => Ok(Hold::Code { failures }),
            CodeGate::Wait { retry_after } => Err(("limited.too_many_tries", retry_after)),
            CodeGate::Locked { retry_after } => Err(("limited.codes_locked", retry_after)),
        },
        Limit::None => Ok(Hold::Nothing),
        Limit::SecondFactor => {
            let user_id = a.user_id.as_deref().unwrap_or("");
            match limits::second_factor(d.db, user_id, c.ip, now).await? {
                Sends::Allowed => Ok(Hold::Nothing),
                Sends::Limited { retry_after } => Err(("limited.too_many_tries", retry_after)),
            }
        }
    })
}

/// Settles the gate with the method's verdict; the owner of an account that just locked is
/// told by mail, after the answer (only a known address gets it, so waiting would tell).
async fn settle(d: &Deps<'_>, c: Caller<'_>, hold: Hold, verdict: &Verdict, email: &str, now: i64) -> Result<(), AuthError> {
    let passed = matches!(verdict, Verdict::Passed { .. });
    let locked = match (hold, verdict) {
        // The right password, so no failure; but nobody signs in with it yet: the places go back.
        (Hold::Password(r), Verdict::Held { .. }) => {
            drop(r);
            None
        }
        (Hold::Password(r), _) if passed => {
            r.succeeded().await?;
            None
        }
        (Hold::Password(r), _) => r.failed(d.limits, now).await?.then_some(Kind::Locked),
        (Hold::Code { .. }, _) if passed => {
            limits::code_succeeded(d.db, email).await?;
            None
        }
        (Hold::Code { failures }, _) => limits::code_lock_reached(d.limits, failures).then_some(Kind::CodesLocked),
        (Hold::Nothing, _) => None,
    };
    if let Some(kind) = locked
        && let Some(user) = d.db.user_by_email(email).await?
    {
        tracing::warn!(user_id = %user.user_id, client_ip = %c.ip, ?kind, "login locked after repeated failures");
        // ops
        let what = if kind == Kind::Locked { "password" } else { "codes" };
        crate::telemetry::lockout(what);
        audit(d, c, EventKind::LockedOut, Some(&user.user_id), email, what, now).await;
        let link = format!("{}{}", d.issuer, paths::LOGIN);
        let loc = user.locale.as_deref().unwrap_or(c.locale);
        notify::send_later(d.pages, d.mailer, d.issuer, kind, &user.email, loc, None, Some(&link));
    }
    Ok(())
}

/// Starts a method for the attempt (mails a code, for the emailed code) and shows its form.
/// Sending codes is limited per address and per client address, first.
pub async fn begin<M: AuthMethod>(d: &Deps<'_>, c: Caller<'_>, live: Live, now: i64) -> Result<Step, AuthError> {
    // Second-factor codes follow a passed factor and are not counted, as before.
    let counted = M::METHOD == Method::EmailCode && super::methods::email_code::code_for(&live.attempt) != CodeFor::SecondFactor;
    if counted && let Some(refused) = sends_limited(d, c, &live, now).await? {
        return Ok(Step::Refused {
            live: Box::new(live),
            message: "limited.too_many_codes",
            retry_after: refused,
        });
    }
    start::<M>(d, c, live, now).await
}

/// The code-send limit: sign-in, sign-up and reset codes share the count.
async fn sends_limited(d: &Deps<'_>, c: Caller<'_>, live: &Live, now: i64) -> Result<Option<i64>, AuthError> {
    let email = live.attempt.claimed_email.as_deref().unwrap_or("");
    Ok(match limits::code_send(d.db, d.limits, email, c.ip, now).await? {
        Sends::Limited { retry_after } => {
            tracing::info!(client_ip = %c.ip, "code sends limited");
            Some(retry_after)
        }
        Sends::Allowed => None,
    })
}

async fn start<M: AuthMethod>(d: &Deps<'_>, c: Caller<'_>, mut live: Live, now: i64) -> Result<Step, AuthError> {
    let a = &mut live.attempt;
    let begun = M::begin(d, c, a, now).await?;
    if !save(d.db, a, now).await? {
        return Ok(over(a, Why::Expired));
    }
    let (notice, mail_failed) = match begun {
        Begun::Form => (None, false),
        Begun::Sent { mail_failed } => (Some(notice_for(a)), mail_failed),
        Begun::Redirect(to) => return Ok(Step::Redirect(to)),
    };
    let next = if a.factors.is_empty() && !is_reauth(a) {
        policy::next(a, None, SETTINGS, now)
    } else {
        Next::Ask(vec![M::METHOD])
    };
    Ok(Step::Show {
        live: Box::new(live),
        next,
        problem: None,
        notice,
        mail_failed,
    })
}

/// The magic link: it finds its attempt through the code, in the browser that opened it.
/// `None`: no live link here (used, expired, another browser), said as one answer.
pub async fn link(d: &Deps<'_>, c: Caller<'_>, token: Secret, now: i64) -> Result<Option<Step>, AuthError> {
    let Some(attempt) = load_by_link(d.db, token.expose(), c.browser_hash, now).await? else {
        return Ok(None);
    };
    // A re-authentication's code is mailed without a link; one is never taken for it.
    if is_reauth(&attempt) {
        return Ok(None);
    }
    let live = Live {
        id: String::new(),
        attempt,
    };
    let mut step = submit::<super::methods::magic_link::MagicLink>(d, c, live, token, now).await?;
    match &mut step {
        Step::Show { problem: Some(_), .. } | Step::Refused { .. } => return Ok(None),
        // The attempt goes on (a further factor): only its hash was known, so it gets a new
        // id for the page's forms, and the old one stops working.
        Step::Show { live, .. } => {
            let id = random_token(24);
            let hash = sha256_b64(&id);
            if !d.db.attempt_rekey(&live.attempt.attempt_hash, &hash).await? {
                return Ok(None);
            }
            live.id = id;
            live.attempt.attempt_hash = hash;
        }
        Step::Finished(_)
        | Step::Reauthenticated { .. }
        | Step::Over { .. }
        | Step::Redirect(_)
        | Step::UpstreamFailed { .. }
        | Step::Linked { .. } => {}
    }
    Ok(Some(step))
}

fn notice_for(a: &Attempt) -> &'static str {
    match a.pending {
        Some(Pending::EmailCode {
            code_for: CodeFor::SecondFactor,
        }) => "login.second_factor",
        Some(Pending::EmailCode {
            code_for: CodeFor::VerifyEmail,
        }) => "signup.check_email_code",
        _ => "code.sent",
    }
}

/// One input for the attempt's current step: limits, then the method, then the policy.
pub async fn submit<M: AuthMethod>(d: &Deps<'_>, c: Caller<'_>, live: Live, input: M::Input, now: i64) -> Result<Step, AuthError> {
    if !in_order::<M>(&live.attempt) || !reauth_asks(d, &live.attempt, M::METHOD, now).await? {
        tracing::info!(method = M::NAME, "login input out of order refused");
        return Ok(over(&live.attempt, Why::Expired));
    }
    let email = live.attempt.claimed_email.clone().unwrap_or_default();
    let hold = match gate(d, c, M::LIMIT, &live.attempt, now).await? {
        Ok(h) => h,
        Err((message, retry_after)) => {
            tracing::info!(client_ip = %c.ip, limit = message, method = M::NAME, "login refused before the method ran");
            crate::telemetry::login(M::NAME, "refused");
            return Ok(Step::Refused {
                live: Box::new(live),
                message,
                retry_after,
            });
        }
    };
    let verdict = M::verify(d, c, &live.attempt, input, now).await?;
    // ops: the outcome counted and, for a failure, kept in the audit log before the limits
    // settle, so a failure that locks the account comes before its lockout.
    let outcome = match &verdict {
        Verdict::Passed { .. } => "success",
        Verdict::Held { .. } => "held",
        Verdict::Wrong(_) => "failure",
        Verdict::Locked => "locked",
    };
    crate::telemetry::login(M::NAME, outcome);
    if matches!(verdict, Verdict::Wrong(_) | Verdict::Locked) {
        let user_id = match &live.attempt.user_id {
            Some(id) => Some(id.clone()),
            None if !email.is_empty() => d.db.user_by_email(&email).await?.map(|u| u.user_id),
            None => None,
        };
        audit(d, c, EventKind::LoginFailed, user_id.as_deref(), &email, M::NAME, now).await;
    }
    settle(d, c, hold, &verdict, &email, now).await?;
    match verdict {
        Verdict::Passed { user_id } => passed(d, c, live, user_id, Factor::new(M::METHOD, now), now).await,
        Verdict::Held { user_id } => {
            // Nobody signs in on a pending password: the address is verified from here first.
            tracing::info!(user_id = %user_id, "password login held until the address is verified");
            // The account is proving its address, as after a sign-up.
            let mut live = live;
            live.attempt.user_id = Some(user_id);
            live.attempt.purpose = Purpose::Signup;
            Ok(match begin::<EmailCode>(d, c, live, now).await? {
                Step::Show {
                    live,
                    next,
                    problem,
                    mail_failed,
                    ..
                } => Step::Show {
                    live,
                    next,
                    problem,
                    notice: Some("login.verify_first"),
                    mail_failed,
                },
                other => other,
            })
        }
        Verdict::Wrong(problem) => wrong(d, live, problem, M::METHOD, now).await,
        Verdict::Locked => {
            // The lock outlives this attempt; going on with it would only meet the lock again.
            if live.attempt.version > 0 {
                d.db.attempt_drop(&live.attempt.attempt_hash).await?;
            }
            tracing::info!(method = M::NAME, "second factor locked; login attempt over");
            Ok(over(&live.attempt, Why::SecondFactorLocked))
        }
    }
}

/// Whether the attempt is waiting for this method: a first factor before any passed, a
/// further one after (kanidm refuses input in the wrong state the same way), and never the
/// same knowledge twice.
fn in_order<M: AuthMethod>(a: &Attempt) -> bool {
    use super::methods::Role;
    let role_fits = match M::ROLE {
        Role::First => a.factors.is_empty(),
        // A re-authentication's user is known before any factor, so a second factor may open it.
        Role::Second => !a.factors.is_empty() || is_reauth(a),
        Role::Both => true,
    };
    // The emailed code and its link need a code in flight (their `verify` checks which one).
    let waiting = match M::METHOD {
        Method::EmailCode => true,
        other => a.pending.is_none() && !a.passed(other),
    };
    role_fits && waiting
}

fn is_reauth(a: &Attempt) -> bool {
    matches!(a.purpose, Purpose::Reauth { .. })
}

/// A re-authentication takes only the method the policy asks for (the user's strongest), so a
/// password cannot stand in for the TOTP of a user who has it. Other purposes: true.
async fn reauth_asks(d: &Deps<'_>, a: &Attempt, method: Method, now: i64) -> Result<bool, AuthError> {
    if !is_reauth(a) {
        return Ok(true);
    }
    let enrolled = match &a.user_id {
        Some(id) => enrolled(d.db, id).await?,
        None => None,
    };
    Ok(matches!(policy::next(a, enrolled.as_ref(), SETTINGS, now), Next::Ask(m) if m.contains(&method)))
}

/// Starts a re-authentication the HTTP layer built (`begin_attempt` with `Purpose::Reauth`
/// and the session's user): the policy asks for the user's strongest method, and an emailed
/// code goes out at once when that is the one.
pub async fn reauth(d: &Deps<'_>, c: Caller<'_>, live: Live, now: i64) -> Result<Step, AuthError> {
    decide(d, c, live, now).await
}

/// A re-authentication's end, in one transaction: the attempt is spent (one of two racing
/// posts wins), the bound session's authentication time becomes now, and the event is kept.
/// No new session and no authorization request: the user goes back to the account page.
async fn reauthenticated(d: &Deps<'_>, c: Caller<'_>, a: &Attempt, amr: &[String], now: i64) -> Result<Step, AuthError> {
    let (Purpose::Reauth { session_hash, back }, Some(user_id)) = (&a.purpose, a.user_id.clone()) else {
        return Ok(over(a, Why::Expired));
    };
    let mut tx = d.db.begin().await?;
    if !tx.attempt_finish(&a.attempt_hash, a.version).await? || !tx.session_reauthenticated(session_hash, &user_id, now).await? {
        // Finished by a racing post, or the session ended (logged out) meanwhile.
        tx.rollback().await?;
        return Ok(over(a, Why::Expired));
    }
    let detail = format!("{} {}", amr.join(" "), back.as_str());
    let event = NewEvent {
        ip: Some(c.ip),
        user_agent: c.user_agent,
        detail: Some(&detail),
    };
    tx.event_record(&user_id, EventKind::Reauthenticated, &event, now).await?;
    tx.commit().await?;
    tracing::info!(user_id = %user_id, client_ip = %c.ip, ?amr, action = back.as_str(), "re-authenticated");
    Ok(Step::Reauthenticated { user_id, back: *back })
}

/// ops: an audit record for a login event. Best effort: a failed write is logged, and the
/// login goes on as it would have, since refusing it would not undo what happened.
async fn audit(d: &Deps<'_>, c: Caller<'_>, kind: EventKind, user_id: Option<&str>, email: &str, detail: &str, now: i64) {
    let e = crate::store::AuditEvent {
        user_id,
        email: (!email.is_empty()).then_some(email),
        client_id: None,
        ip: Some(c.ip),
        user_agent: c.user_agent,
        detail: Some(detail),
    };
    if let Err(err) = d.db.audit_record(kind, &e, now).await {
        tracing::warn!(error = %err, kind = kind.as_str(), "security event not recorded");
    }
}

/// A wrong input. Once the user is known (a further factor), each counts against the attempt,
/// atomically, so parallel guesses cannot exceed the limit.
async fn wrong(d: &Deps<'_>, live: Live, problem: &'static str, method: Method, now: i64) -> Result<Step, AuthError> {
    tracing::info!(method = ?method, "login factor failed");
    let a = &live.attempt;
    // A re-authentication's user is known from the start: every wrong try counts.
    if (!a.factors.is_empty() || is_reauth(a)) && a.version > 0 {
        let failures = d.db.attempt_fail(&a.attempt_hash).await?;
        if failures >= i64::from(SETTINGS.max_failures) {
            d.db.attempt_drop(&a.attempt_hash).await?;
            return Ok(over(a, Why::TooManyFailures));
        }
    }
    let next = if a.factors.is_empty() && !is_reauth(a) {
        policy::next(a, None, SETTINGS, now)
    } else {
        Next::Ask(vec![method])
    };
    Ok(Step::Show {
        live: Box::new(live),
        next,
        problem: Some(problem),
        notice: None,
        mail_failed: false,
    })
}

/// A factor passed: record it, then do what the policy says.
pub(in crate::auth) async fn passed(
    d: &Deps<'_>,
    c: Caller<'_>,
    mut live: Live,
    user_id: String,
    factor: Factor,
    now: i64,
) -> Result<Step, AuthError> {
    let a = &mut live.attempt;
    a.user_id = Some(user_id.clone());
    a.factors.push(factor);
    a.pending = None;
    decide(d, c, live, now).await
}

/// A reset's new password, typed with its code: saved, and every other session and token of
/// the account ended, in one transaction; then the policy goes on.
pub async fn new_password(d: &Deps<'_>, c: Caller<'_>, mut live: Live, password: Secret, now: i64) -> Result<Step, AuthError> {
    let a = &mut live.attempt;
    let Some(user_id) = a.user_id.clone() else {
        return Ok(over(a, Why::UserGone));
    };
    let hash = d.hasher.hash(password.expose()).await?;
    let ended = d.db.password_reset_apply(&user_id, &hash, now).await?;
    let email = a.claimed_email.clone().unwrap_or_default();
    limits::password_cleared(d.db, &email).await?;
    tracing::info!(user_id = %user_id, sessions_ended = ended, "password reset; sessions and tokens revoked");
    audit(d, c, EventKind::PasswordReset, Some(&user_id), &email, "email_code", now).await;
    if let Some(user) = d.db.user_get(&user_id).await? {
        let link = format!("{}{}", d.issuer, paths::PASSWORD_FORGOT);
        let loc = user.locale.as_deref().unwrap_or(c.locale);
        notify::send(
            d.pages,
            d.mailer,
            d.issuer,
            Kind::PasswordChanged,
            &user.email,
            loc,
            None,
            Some(&link),
        )
        .await;
    }
    // The code proved the mailbox: the address is verified (and the new password is no pending one).
    d.db.user_verify_email(&user_id, true, now).await?;
    a.purpose = Purpose::Reset { password_set: true };
    decide(d, c, live, now).await
}

/// Asks the policy and acts on its answer; every path that ends a login comes through here.
pub(in crate::auth) async fn decide(d: &Deps<'_>, c: Caller<'_>, mut live: Live, now: i64) -> Result<Step, AuthError> {
    let a = &mut live.attempt;
    let enrolled = match &a.user_id {
        Some(id) => enrolled(d.db, id).await?,
        None => None,
    };
    match policy::next(a, enrolled.as_ref(), SETTINGS, now) {
        Next::Done { amr, .. } if is_reauth(a) => reauthenticated(d, c, a, &amr, now).await,
        Next::Done { amr, acr, offer } => {
            if let Purpose::Link { .. } = a.purpose {
                // The local login is done: the identity is linked as the attempt ends.
                if let Some(why) = super::methods::upstream::confirm_link(d, c, a, now).await? {
                    return Ok(over(a, why));
                }
            } else if a.version > 0 && !d.db.attempt_finish(&a.attempt_hash, a.version).await? {
                // Of two posts finishing the same attempt, one deletes it and goes on.
                return Ok(over(a, Why::Expired));
            }
            let confirm = match a.purpose {
                Purpose::Reset { .. } => Some("done.reset"),
                Purpose::Signup => Some("done.signup"),
                Purpose::Login | Purpose::Reauth { .. } | Purpose::Link { .. } | Purpose::LinkFromAccount { .. } => None,
            };
            Ok(Step::Finished(Authenticated {
                user_id: a.user_id.clone().unwrap_or_default(),
                amr,
                acr,
                request_id: a.request_id.clone(),
                confirm,
                offer,
            }))
        }
        Next::Ask(methods) if methods.first() == Some(&Method::EmailCode) => {
            tracing::info!(user_id = ?a.user_id, "first factor accepted; second step by email code");
            begin::<EmailCode>(d, c, live, now).await
        }
        Next::Over(why) => {
            if a.version > 0 {
                d.db.attempt_drop(&a.attempt_hash).await?;
            }
            tracing::info!(user_id = ?a.user_id, ?why, "login attempt over");
            Ok(over(a, why))
        }
        next => {
            if !save(d.db, a, now).await? {
                return Ok(over(a, Why::Expired));
            }
            Ok(show(live, next))
        }
    }
}

/// Sign-up: a new account, or, for a taken address, a mail to its owner; the same page and the
/// same work either way. Limits first, then the hash, before the address is looked up, so a
/// taken address costs the same time as a new one. A lost race for the address comes back as
/// `StoreError::Conflict`.
pub async fn signup(
    d: &Deps<'_>,
    c: Caller<'_>,
    mut live: Live,
    name: Option<&str>,
    password: Option<Secret>,
    now: i64,
) -> Result<Step, AuthError> {
    if let Some(retry_after) = sends_limited(d, c, &live, now).await? {
        return Ok(Step::Refused {
            live: Box::new(live),
            message: "limited.too_many_codes",
            retry_after,
        });
    }
    let hash = match password {
        Some(p) => Some(d.hasher.hash(p.expose()).await?),
        None => None,
    };
    let email = live.attempt.claimed_email.clone().unwrap_or_default();
    // Mails after the answer, for both branches: a taken address must not show by time.
    match d.db.user_by_email(&email).await? {
        // Never say that the address is taken: the owner is told by mail instead.
        Some(existing) => {
            tracing::info!("sign-up for an existing email");
            let link = format!("{}{}", d.issuer, paths::LOGIN);
            let loc = existing.locale.as_deref().unwrap_or(c.locale);
            notify::send_later(
                d.pages,
                d.mailer,
                d.issuer,
                Kind::AccountExists,
                &existing.email,
                loc,
                None,
                Some(&link),
            );
            // The page waits for a code like any other; a code typed here is checked as usual.
            live.attempt.pending = Some(Pending::EmailCode {
                code_for: CodeFor::VerifyEmail,
            });
            if !save(d.db, &mut live.attempt, now).await? {
                return Ok(over(&live.attempt, Why::Expired));
            }
            Ok(Step::Show {
                live: Box::new(live),
                next: Next::Choose(vec![Method::EmailCode]),
                problem: None,
                notice: Some("signup.check_email_code"),
                mail_failed: false,
            })
        }
        None => {
            let user = NewUser {
                user_id: random_token(16),
                email: email.clone(),
                email_verified: false,
                name: name.map(str::to_owned),
                password_hash: hash,
                roles: vec![],
                locale: Some(c.locale.to_owned()),
                phone_number: None,
                address: None,
                // Chosen before the address is proven: pending until verified here.
                password_pending: true,
            };
            d.db.user_create(&user, now).await?;
            tracing::info!(user_id = %user.user_id, "account created by sign-up; verification sent");
            live.attempt.user_id = Some(user.user_id);
            start::<EmailCode>(d, c, live, now).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::methods::email_code::EmailCode;
    use crate::auth::methods::magic_link::MagicLink;
    use crate::auth::methods::password::Password;

    #[test]
    fn input_out_of_order_is_refused() {
        let fresh = begin_attempt(Purpose::Login, None, Requirement::ONE, "a@x.test", "b", 0).attempt;
        assert!(in_order::<Password>(&fresh), "a password opens a login");
        let mut waiting_code = fresh.clone();
        waiting_code.pending = Some(Pending::EmailCode { code_for: CodeFor::Login });
        assert!(in_order::<EmailCode>(&waiting_code) && in_order::<MagicLink>(&waiting_code));
        assert!(!in_order::<Password>(&waiting_code), "not while a code is awaited");
        let mut after_code = fresh.clone();
        after_code.factors.push(Factor::new(Method::EmailCode, 0));
        assert!(in_order::<Password>(&after_code), "the password as a further factor");
        let mut second = fresh.clone();
        second.factors.push(Factor::new(Method::Password, 0));
        second.pending = Some(Pending::EmailCode {
            code_for: CodeFor::SecondFactor,
        });
        assert!(!in_order::<Password>(&second), "the same knowledge twice");
        assert!(in_order::<EmailCode>(&second));
    }

    /// A re-authentication's user is known before any factor: TOTP and backup codes may open
    /// it (a login's cannot), and nothing is taken twice.
    #[test]
    fn reauth_opens_with_a_second_factor() {
        use crate::auth::attempt::Action;
        use crate::auth::methods::backup_code::BackupCode;
        use crate::auth::methods::totp::Totp;
        let login = begin_attempt(Purpose::Login, None, Requirement::ONE, "a@x.test", "b", 0).attempt;
        assert!(!in_order::<Totp>(&login), "not as a login's first factor");
        let purpose = Purpose::Reauth {
            session_hash: "s".into(),
            back: Action::Password,
        };
        let mut reauth = begin_attempt(purpose, None, Requirement::ONE, "a@x.test", "b", 0).attempt;
        reauth.user_id = Some("u".into());
        assert!(is_reauth(&reauth));
        assert!(in_order::<Totp>(&reauth) && in_order::<BackupCode>(&reauth) && in_order::<Password>(&reauth));
        reauth.factors.push(Factor::new(Method::Totp, 0));
        assert!(!in_order::<Totp>(&reauth), "the same factor twice");
    }
}
