//! A login at an upstream OpenID Connect provider (amr `fed`, issue 9): the redirect, the
//! callback's checks, and which local account the verified identity is. A first factor only;
//! whatever the policy asks next (TOTP, a second kind of proof) follows as for any other.

use serde::{Deserialize, Serialize};

use super::{Begun, Caller, Deps};
use crate::auth::attempt::{Attempt, Pending, Purpose, UpstreamPending};
use crate::auth::engine::{self, Live, Step};
use crate::auth::policy::{Next, Why};
use crate::auth::{AuthError, Factor, Method, Vouched};
use crate::notify::{self, Kind};
use crate::paths;
use crate::secret::{Secret, ct_eq, random_token, sha256_b64};
use crate::secret_box;
use crate::store::{EventKind, Identity, NewEvent, NewUser, StoreError, User, normalize_email};
use crate::upstream::{PendingUpstream, UpstreamClient, UpstreamError, UpstreamIdentity};

/// Why an upstream login could not go on. Each is a page (`key`) with a way back to the login
/// page; the log says `reason`, never a code or token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// No such upstream is configured.
    Unknown,
    /// `state` unknown, tampered with, replayed, from another browser, or expired: one answer
    /// for all, as for magic links.
    State,
    /// The upstream answered `error=` (the user cancelled, `access_denied`).
    Denied,
    /// Down, or slower than `upstream::HTTP_TIMEOUT`.
    Unreachable,
    /// The code exchange or the ID token failed (wrong nonce, another key, bad claims).
    Rejected,
    /// No local account and `CLEF_SIGNUP=closed`.
    SignupClosed,
    /// The upstream shared no address: no account can be found or made for it.
    NoEmail,
    /// The identity belongs to another account here.
    LinkedElsewhere,
    /// Two first logins raced for one address; the loser tries again.
    Race,
}

impl Failure {
    pub fn key(self) -> &'static str {
        match self {
            Failure::Unknown => "upstream.unknown",
            Failure::State => "upstream.state",
            Failure::Denied => "upstream.denied",
            Failure::Unreachable => "upstream.unreachable",
            Failure::Rejected => "upstream.rejected",
            Failure::SignupClosed => "upstream.signup_closed",
            Failure::NoEmail => "upstream.no_email",
            Failure::LinkedElsewhere => "upstream.linked_elsewhere",
            Failure::Race => "signup.try_again",
        }
    }
}

/// What the callback's query brought.
#[derive(Debug, Default)]
pub struct Callback {
    pub state: String,
    pub code: Option<Secret>,
    pub error: Option<String>,
}

/// The nonce and PKCE verifier, sealed together in the attempt row.
#[derive(Serialize, Deserialize)]
struct Sealed {
    nonce: String,
    verifier: String,
}

fn failed(a: &Attempt, failure: Failure) -> Step {
    Step::UpstreamFailed {
        failure,
        request_id: a.request_id.clone(),
    }
}

fn client<'a>(d: &'a Deps<'_>, id: &str) -> Option<&'a UpstreamClient> {
    d.upstreams.get(id)
}

/// The redirect: an authorization URL with PKCE, `state` and `nonce` (OIDC Core §3.1.2.1),
/// and the attempt stored under the hash of `state`, so the callback finds it by `state`
/// alone and only in this browser (RFC 6749 §10.12). `live` is a new, unsaved attempt.
pub async fn begin(d: &Deps<'_>, live: &mut Live, id: &str) -> Result<Result<Begun, Failure>, AuthError> {
    let Some(client) = client(d, id) else {
        return Ok(Err(Failure::Unknown));
    };
    let start = match client.authorization_url().await {
        Ok(s) => s,
        Err(e) => {
            tracing::info!(upstream = id, reason = %e, "upstream login could not start");
            return Ok(Err(failure_of(&e)));
        }
    };
    let state_hash = sha256_b64(start.pending.state.expose());
    let sealed = serde_json::to_vec(&Sealed {
        nonce: start.pending.nonce.expose().to_owned(),
        verifier: start.pending.pkce_verifier.expose().to_owned(),
    })
    .map_err(|e| AuthError::Corrupt(e.to_string()))?;
    let a = &mut live.attempt;
    a.pending = Some(Pending::Upstream(UpstreamPending {
        upstream: id.to_owned(),
        sealed: secret_box::seal(d.hmac_key, state_hash.as_bytes(), &sealed)?,
        state_hash: state_hash.clone(),
    }));
    a.attempt_hash = state_hash;
    live.id = start.pending.state.expose().to_owned();
    Ok(Ok(Begun::Redirect(start.url.to_string())))
}

/// Starts an upstream login for a new attempt (a login's, or the account page's link).
pub async fn start(d: &Deps<'_>, mut live: Live, id: &str, now: i64) -> Result<Step, AuthError> {
    match begin(d, &mut live, id).await? {
        Err(f) => Ok(failed(&live.attempt, f)),
        Ok(begun) => {
            if !engine::save(d.db, &mut live.attempt, now).await? {
                return Ok(failed(&live.attempt, Failure::State));
            }
            tracing::info!(upstream = id, "off to the upstream provider");
            Ok(match begun {
                Begun::Redirect(to) => Step::Redirect(to),
                Begun::Form | Begun::Sent { .. } => failed(&live.attempt, Failure::Unknown),
            })
        }
    }
}

fn failure_of(e: &UpstreamError) -> Failure {
    match e {
        UpstreamError::Unreachable => Failure::Unreachable,
        UpstreamError::BadResponse | UpstreamError::Denied(_) | UpstreamError::InvalidToken(_) => Failure::Rejected,
    }
}

/// The upstream's `error` code for the log: a short token, or a placeholder for anything else.
fn error_code(e: &str) -> &str {
    if !e.is_empty() && e.len() <= 40 && e.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
        e
    } else {
        "other"
    }
}

/// GET /login/callback/{id}: the attempt behind `state` (this browser's, once), then the
/// upstream's answer, the code exchange and the ID token's checks, then the local account.
pub async fn callback(d: &Deps<'_>, c: Caller<'_>, id: &str, cb: Callback, now: i64) -> Result<Step, AuthError> {
    let none = Step::UpstreamFailed {
        failure: Failure::State,
        request_id: None,
    };
    // engine::load bounds the length, hashes, and binds the browser (attempt_get).
    let Some(mut live) = engine::load(d.db, &cb.state, c.browser_hash, now).await? else {
        tracing::info!(upstream = id, "upstream callback with an unknown state");
        return Ok(none);
    };
    let a = &mut live.attempt;
    let Some(Pending::Upstream(p)) = a.pending.clone() else {
        tracing::info!(upstream = id, "upstream callback for an attempt not waiting for it");
        return Ok(none);
    };
    if p.upstream != id || !ct_eq(&p.state_hash, &sha256_b64(&cb.state)) {
        tracing::info!(upstream = id, "upstream callback state does not match");
        return Ok(none);
    }
    // Single use (RFC 6749 §10.12): the pending state goes before anything else happens, so
    // of two callbacks with one `state` only one gets past here.
    a.pending = None;
    if !engine::save(d.db, a, now).await? {
        tracing::info!(upstream = id, "upstream callback state replayed");
        return Ok(none);
    }
    // The state travelled through the upstream and the address bar: a link page's forms get
    // a new id, and the state names nothing any more.
    let fresh = random_token(24);
    let fresh_hash = sha256_b64(&fresh);
    if !d.db.attempt_rekey(&a.attempt_hash, &fresh_hash).await? {
        return Ok(none);
    }
    a.attempt_hash = fresh_hash;
    live.id = fresh;
    match verified(d, id, &p, &cb, now).await? {
        Ok((client, identity)) => {
            if let Purpose::LinkFromAccount { .. } = a.purpose {
                return link_from_account(d, c, &live.attempt, client, &identity, now).await;
            }
            login(d, c, live, client, identity, now).await
        }
        Err(f) => {
            d.db.attempt_drop(&a.attempt_hash).await?;
            Ok(failed(a, f))
        }
    }
}

/// The upstream's answer, exchanged and verified (upstream::UpstreamClient::finish).
async fn verified<'a>(
    d: &'a Deps<'_>,
    id: &str,
    p: &UpstreamPending,
    cb: &Callback,
    now: i64,
) -> Result<Result<(&'a UpstreamClient, UpstreamIdentity), Failure>, AuthError> {
    if let Some(e) = &cb.error {
        // OIDC Core §3.1.2.6: the user said no, or the upstream did.
        tracing::info!(upstream = id, error = error_code(e), "upstream answered with an error");
        return Ok(Err(Failure::Denied));
    }
    let Some(code) = cb.code.as_ref().filter(|c| !c.expose().is_empty() && c.expose().len() <= 2048) else {
        tracing::info!(upstream = id, "upstream callback without a code");
        return Ok(Err(Failure::Rejected));
    };
    let Some(client) = client(d, id) else {
        return Ok(Err(Failure::Unknown));
    };
    let Ok(opened) = secret_box::open(d.hmac_key, p.state_hash.as_bytes(), &p.sealed) else {
        tracing::info!(upstream = id, "upstream pending secrets do not open (server key rotated?)");
        return Ok(Err(Failure::State));
    };
    let sealed: Sealed = serde_json::from_slice(&opened).map_err(|e| AuthError::Corrupt(e.to_string()))?;
    let pending = PendingUpstream {
        state: Secret::new(""),
        nonce: Secret::new(sealed.nonce),
        pkce_verifier: Secret::new(sealed.verifier),
    };
    match client.finish(code.expose(), &pending, now).await {
        Ok(identity) => Ok(Ok((client, identity))),
        Err(e) => {
            tracing::info!(upstream = id, reason = %e, "upstream login refused");
            Ok(Err(failure_of(&e)))
        }
    }
}

fn event<'a>(c: Caller<'a>, detail: &'a str) -> NewEvent<'a> {
    NewEvent {
        ip: Some(c.ip),
        user_agent: c.user_agent,
        detail: Some(detail),
    }
}

fn row(user_id: &str, upstream: &str, i: &UpstreamIdentity, now: i64) -> Identity {
    Identity {
        issuer: i.issuer.clone(),
        subject: i.subject.clone(),
        user_id: user_id.to_owned(),
        upstream_id: upstream.to_owned(),
        email: i.email.as_deref().map(normalize_email),
        linked_at: now,
        last_used_at: now,
    }
}

/// The identity is the user's: record the factor and let the policy say what comes next.
async fn pass(
    d: &Deps<'_>,
    c: Caller<'_>,
    mut live: Live,
    client: &UpstreamClient,
    i: &UpstreamIdentity,
    user: User,
    now: i64,
) -> Result<Step, AuthError> {
    let up = client.upstream();
    d.db.event_record(&user.user_id, EventKind::UpstreamLogin, &event(c, &up.id), now)
        .await?;
    tracing::info!(user_id = %user.user_id, upstream = %up.id, client_ip = %c.ip, "upstream login accepted");
    let factor = Factor {
        method: Method::Upstream,
        at: now,
        upstream: Some(Vouched {
            id: up.id.clone(),
            amr: i.amr.clone(),
            mfa: i.mfa_trusted(up),
        }),
    };
    // A further emailed code goes to the account's own address.
    live.attempt.claimed_email = Some(user.email);
    engine::passed(d, c, live, user.user_id, factor, now).await
}

/// Which account an upstream login is: the linked one; else one with the same address, only
/// when both sides have verified it (else the user logs in to it first); else a new one.
async fn login(
    d: &Deps<'_>,
    c: Caller<'_>,
    mut live: Live,
    client: &UpstreamClient,
    i: UpstreamIdentity,
    now: i64,
) -> Result<Step, AuthError> {
    let up = client.upstream();
    // The key is (issuer, sub), never the address (OIDC Core §5.7): a changed address upstream
    // still finds its account, and an address taken over upstream finds nobody's.
    if let Some(known) = d.db.identity_use(&i.issuer, &i.subject, now).await? {
        return match d.db.user_get(&known.user_id).await? {
            Some(user) => pass(d, c, live, client, &i, user, now).await,
            None => Ok(engine::over(&live.attempt, Why::UserGone)),
        };
    }
    let Some(email) = i.email.as_deref().map(normalize_email).filter(|e| !e.is_empty() && e.len() <= 254) else {
        tracing::info!(upstream = %up.id, "upstream identity without an email address");
        d.db.attempt_drop(&live.attempt.attempt_hash).await?;
        return Ok(failed(&live.attempt, Failure::NoEmail));
    };
    match d.db.user_by_email(&email).await? {
        // Both sides vouch for the address: the same person (Google's guidance for linking;
        // `trust_email_verified` says whether this upstream's word counts).
        Some(local) if i.email_verified && local.email_verified => {
            let mut tx = d.db.begin().await?;
            match tx.identity_link(&row(&local.user_id, &up.id, &i, now)).await {
                Ok(()) => {}
                Err(StoreError::Conflict(_)) => {
                    tx.rollback().await?;
                    d.db.attempt_drop(&live.attempt.attempt_hash).await?;
                    return Ok(failed(&live.attempt, Failure::LinkedElsewhere));
                }
                Err(e) => return Err(e.into()),
            }
            let detail = format!("{} automatic", up.id);
            tx.event_record(&local.user_id, EventKind::UpstreamLinked, &event(c, &detail), now)
                .await?;
            tx.commit().await?;
            tracing::info!(user_id = %local.user_id, upstream = %up.id, "upstream identity linked: address verified on both sides");
            pass(d, c, live, client, &i, local, now).await
        }
        // keycloak/keycloak#53041: linking on an unproven address hands the account to whoever
        // registered that address upstream. The user logs in to the local account first.
        Some(local) => {
            let why = if i.email_verified {
                "local address not verified"
            } else {
                "upstream address not verified (or not trusted)"
            };
            tracing::info!(upstream = %up.id, reason = why, "upstream identity matches a local account; its login comes first");
            let a = &mut live.attempt;
            a.purpose = Purpose::Link {
                upstream: up.id.clone(),
                issuer: i.issuer.clone(),
                subject: i.subject.clone(),
                email: Some(email),
            };
            a.claimed_email = Some(local.email);
            if !engine::save(d.db, a, now).await? {
                return Ok(failed(a, Failure::State));
            }
            Ok(Step::Show {
                live: Box::new(live),
                next: Next::Choose(vec![Method::Password, Method::EmailCode]),
                problem: None,
                notice: Some("upstream.link_first"),
                mail_failed: false,
            })
        }
        None if !d.signup_open => {
            tracing::info!(upstream = %up.id, "no account for the upstream identity and sign-up is closed");
            d.db.attempt_drop(&live.attempt.attempt_hash).await?;
            Ok(failed(&live.attempt, Failure::SignupClosed))
        }
        None => create(d, c, live, client, i, email, now).await,
    }
}

/// A first upstream login with no local account: the account, its identity and the events, in
/// one transaction; then the welcome mail (source document 003).
async fn create(
    d: &Deps<'_>,
    c: Caller<'_>,
    live: Live,
    client: &UpstreamClient,
    i: UpstreamIdentity,
    email: String,
    now: i64,
) -> Result<Step, AuthError> {
    let up = client.upstream();
    // Only a language clef speaks; else the page's.
    let locale = i
        .locale
        .as_deref()
        .and_then(|l| {
            let picked = crate::i18n::negotiate(Some(l), None);
            l.to_ascii_lowercase().starts_with(picked).then_some(picked)
        })
        .unwrap_or(c.locale);
    let user = NewUser {
        user_id: random_token(16),
        email: email.clone(),
        email_verified: i.email_verified,
        name: i.name.as_deref().map(|n| n.chars().filter(|c| !c.is_control()).take(200).collect()),
        password_hash: None,
        roles: vec![],
        locale: Some(locale.to_owned()),
        phone_number: None,
        address: None,
        password_pending: false,
    };
    let mut tx = d.db.begin().await?;
    if let Err(e) = tx.user_create(&user, now).await {
        tx.rollback().await?;
        d.db.attempt_drop(&live.attempt.attempt_hash).await?;
        return match e {
            StoreError::Conflict(_) => Ok(failed(&live.attempt, Failure::Race)),
            e => Err(e.into()),
        };
    }
    match tx.identity_link(&row(&user.user_id, &up.id, &i, now)).await {
        Ok(()) => {}
        Err(StoreError::Conflict(_)) => {
            tx.rollback().await?;
            d.db.attempt_drop(&live.attempt.attempt_hash).await?;
            return Ok(failed(&live.attempt, Failure::Race));
        }
        Err(e) => return Err(e.into()),
    }
    tx.event_record(&user.user_id, EventKind::AccountCreatedByUpstream, &event(c, &up.id), now)
        .await?;
    tx.commit().await?;
    tracing::info!(user_id = %user.user_id, upstream = %up.id, email_verified = i.email_verified, "account created by an upstream login");
    let link = format!("{}{}", d.issuer, paths::ACCOUNT);
    notify::send_later(
        d.pages,
        d.mailer,
        d.issuer,
        Kind::WelcomeUpstream,
        &email,
        locale,
        None,
        Some(&link),
    );
    let Some(created) = d.db.user_get(&user.user_id).await? else {
        return Ok(engine::over(&live.attempt, Why::UserGone));
    };
    pass(d, c, live, client, &i, created, now).await
}

/// The account page's link: the identity becomes the signed-in user's, unless it is someone
/// else's already, which is refused (an identity never moves between accounts).
async fn link_from_account(
    d: &Deps<'_>,
    c: Caller<'_>,
    a: &Attempt,
    client: &UpstreamClient,
    i: &UpstreamIdentity,
    now: i64,
) -> Result<Step, AuthError> {
    d.db.attempt_drop(&a.attempt_hash).await?;
    let up = client.upstream();
    let Some(user_id) = a.user_id.clone() else {
        return Ok(failed(a, Failure::State));
    };
    // The session that asked must still be this user's: logged out meanwhile, nothing links.
    let Purpose::LinkFromAccount { session_hash } = &a.purpose else {
        return Ok(failed(a, Failure::State));
    };
    if d.db.session_get(session_hash, now).await?.is_none_or(|s| s.user_id != user_id) {
        tracing::info!(user_id = %user_id, upstream = %up.id, "link refused: the session that asked has ended");
        return Ok(failed(a, Failure::State));
    }
    if let Some(known) = d.db.identity_use(&i.issuer, &i.subject, now).await? {
        if known.user_id == user_id {
            return Ok(Step::Linked { user_id, already: true });
        }
        tracing::info!(user_id = %user_id, upstream = %up.id, "link refused: the identity is another account's");
        return Ok(failed(a, Failure::LinkedElsewhere));
    }
    let mut tx = d.db.begin().await?;
    match tx.identity_link(&row(&user_id, &up.id, i, now)).await {
        Ok(()) => {}
        Err(StoreError::Conflict(_)) => {
            tx.rollback().await?;
            return Ok(failed(a, Failure::LinkedElsewhere));
        }
        Err(e) => return Err(e.into()),
    }
    tx.event_record(&user_id, EventKind::UpstreamLinked, &event(c, &up.id), now).await?;
    tx.commit().await?;
    tracing::info!(user_id = %user_id, upstream = %up.id, "upstream identity linked from the account page");
    Ok(Step::Linked { user_id, already: false })
}

/// A link attempt's local login is done: the attempt ends, the identity is linked and the event
/// kept, in one transaction. `Some(why)` when it cannot be (a racing post, or the identity was
/// linked to another account meanwhile).
pub(in crate::auth) async fn confirm_link(d: &Deps<'_>, c: Caller<'_>, a: &Attempt, now: i64) -> Result<Option<Why>, AuthError> {
    let (
        Purpose::Link {
            upstream,
            issuer,
            subject,
            email,
        },
        Some(user_id),
    ) = (&a.purpose, &a.user_id)
    else {
        return Ok(Some(Why::Expired));
    };
    let mut tx = d.db.begin().await?;
    if a.version > 0 && !tx.attempt_finish(&a.attempt_hash, a.version).await? {
        tx.rollback().await?;
        return Ok(Some(Why::Expired));
    }
    let identity = Identity {
        issuer: issuer.clone(),
        subject: subject.clone(),
        user_id: user_id.clone(),
        upstream_id: upstream.clone(),
        email: email.clone(),
        linked_at: now,
        last_used_at: now,
    };
    match tx.identity_link(&identity).await {
        Ok(()) => {}
        Err(StoreError::Conflict(_)) => {
            tx.rollback().await?;
            d.db.attempt_drop(&a.attempt_hash).await?;
            return Ok(Some(Why::IdentityTaken));
        }
        Err(e) => return Err(e.into()),
    }
    let detail = format!("{upstream} after login");
    tx.event_record(user_id, EventKind::UpstreamLinked, &event(c, &detail), now).await?;
    tx.commit().await?;
    tracing::info!(user_id = %user_id, upstream = %upstream, "upstream identity linked after the local login");
    Ok(None)
}
