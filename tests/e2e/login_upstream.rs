//! "Continue with Google" wired into the login (issue 9): a second clef on loopback is the
//! upstream (`h`, on 127.0.0.1), and the clef under test runs on `localhost`, so the two keep
//! their own cookies in one browser. Accounts made, found by (issuer, sub), linked only on
//! proof, the clear pages for every failure, TOTP after the upstream, and the account page.

use clef::admin::{ClientSpec, UserSpec};
use clef::config::{RawConfig, RawUpstream};
use clef::keys::Keys;
use clef::store::EventKind;
use reqwest::StatusCode;

use crate::support::TestServer;
use crate::support::browser::{Browser, Page, html_unescape};
use crate::support::rp::Rp;

const PW: &str = "correct horse battery";
const LOCAL_PW: &str = "a local passphrase here";

/// The clef under test, with `up` as its Google (or, with `corp`, as a generic upstream).
struct Fed {
    down: TestServer,
    rp: Rp,
}

/// Starts the clef under test with `up` configured as Google, after registering it at `up`
/// with its callback. `adjust` changes anything else.
async fn fed_with(up: &TestServer, adjust: impl FnOnce(&mut RawConfig, &str, &str)) -> Fed {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://localhost:{}", listener.local_addr().unwrap().port());
    let created = up
        .client(ClientSpec {
            name: "clef under test".into(),
            redirect_uris: vec![format!("{issuer}/login/callback/google"), format!("{issuer}/login/callback/corp")],
            skip_consent: true,
            ..ClientSpec::default()
        })
        .await;
    let (id, secret) = (created.client_id.clone(), created.client_secret.clone().unwrap());
    let up_issuer = up.issuer.clone();
    let down = TestServer::start_on(up.backend, listener, issuer, |raw| {
        raw.google_client_id = Some(id.clone());
        raw.google_client_secret = Some(secret.clone());
        raw.google_issuer = Some(up_issuer);
        raw.upstream_key_refresh = Some(0);
        adjust(raw, &id, &secret);
    })
    .await;
    let rp = down.first_party().await;
    Fed { down, rp }
}

async fn fed(up: &TestServer) -> Fed {
    fed_with(up, |_, _, _| {}).await
}

/// A user at the upstream.
async fn up_user(up: &TestServer, email: &str, verified: bool) -> String {
    up.user_with(UserSpec {
        email: email.into(),
        password: Some(PW.into()),
        name: Some("Ana Upstream".into()),
        verified,
        ..UserSpec::default()
    })
    .await
}

/// A local account at the clef under test.
async fn local_user(f: &Fed, email: &str, verified: bool) -> String {
    f.down
        .user_with(UserSpec {
            email: email.into(),
            password: Some(LOCAL_PW.into()),
            verified,
            ..UserSpec::default()
        })
        .await
}

/// The login page's upstream button, pressed: the 303 to the upstream.
async fn press(b: &Browser, login: &Page, id: &str) -> Page {
    assert_eq!(login.status, StatusCode::OK, "{}", login.body);
    let marker = format!("action=\"/login/upstream/{id}\" id=\"login-upstream-{id}\"");
    assert!(html_unescape(&login.body).contains(&marker), "no {id} button: {}", login.body);
    let req = login.input("req").unwrap_or_default();
    b.post(
        &format!("/login/upstream/{id}"),
        &[("csrf", &login.input("csrf").unwrap()), ("req", &req)],
    )
    .await
}

/// From the button to the callback's answer: logs in at the upstream (with `totp` when it
/// asks), and returns what the clef under test answered on its callback.
async fn round_trip(f: &Fed, up: &TestServer, b: &Browser, login: &Page, email: &str, totp: Option<&str>) -> Page {
    let start = press(b, login, "google").await;
    let to = start.assert_redirect_to(&up.url("/authorize")).to_owned();
    let back = b.on(&up.issuer).authorize_with(&to, email, PW, totp).await;
    let cb = back.assert_redirect_to(&f.down.url("/login/callback/google")).to_owned();
    b.get(&cb).await
}

/// The RP's login at the clef under test, through the upstream: the ID token's claims.
async fn login_for_rp(f: &Fed, up: &TestServer, b: &Browser, email: &str) -> openidconnect::core::CoreIdTokenClaims {
    let started = f.rp.start(&["openid", "email"]);
    let login = b.follow(b.get(&started.url).await).await;
    let answer = round_trip(f, up, b, &login, email, None).await;
    let done = b.follow(answer).await;
    rp_claims(f, done, started).await
}

async fn rp_claims(f: &Fed, done: Page, started: crate::support::rp::Started) -> openidconnect::core::CoreIdTokenClaims {
    done.assert_redirect_to("http://127.0.0.1/fp/cb");
    assert_eq!(done.location_param("state").as_deref(), Some(started.state.as_str()));
    let code = done.location_param("code").unwrap();
    let tokens = f.rp.exchange(&code, started.verifier).await;
    f.rp.id_claims(&tokens, &started.nonce)
}

fn amr(c: &openidconnect::core::CoreIdTokenClaims) -> Vec<String> {
    c.auth_method_refs()
        .map(|v| v.iter().map(|a| a.as_str().to_owned()).collect())
        .unwrap_or_default()
}

async fn events(f: &Fed, user_id: &str) -> Vec<EventKind> {
    f.down
        .state
        .db
        .events_recent(user_id, 50)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect()
}

/// The first login makes the account (verified as the upstream says, no password, the
/// upstream's name) and sends the welcome mail; the RP's ID token says `fed`. The second,
/// after the address changed upstream, finds the same account by (issuer, sub).
async fn first_login_creates_then_sub_finds(h: &TestServer) {
    let f = fed(h).await;
    let up_id = up_user(h, "ana@gmail.example", true).await;
    let b = f.down.browser();
    let login = b.get("/login").await;
    assert!(login.body.contains("Continue with Google"), "{}", login.body);
    let signup = b.get("/signup").await;
    assert!(signup.body.contains("Continue with Google"), "{}", signup.body);

    let claims = login_for_rp(&f, h, &b, "ana@gmail.example").await;
    let a = amr(&claims);
    assert!(a.contains(&"fed".to_owned()), "{a:?}");
    assert!(a.contains(&"pwd".to_owned()), "the upstream's own amr, for information: {a:?}");
    assert!(!a.contains(&"mfa".to_owned()), "{a:?}");
    let user = f.down.state.db.user_by_email("ana@gmail.example").await.unwrap().unwrap();
    assert_eq!(claims.subject().as_str(), user.user_id);
    assert!(user.email_verified && user.password_hash.is_none());
    assert_eq!(user.name.as_deref(), Some("Ana Upstream"));
    let welcome = f.down.mail.last_to("ana@gmail.example");
    assert_eq!(welcome.subject, "Welcome");
    // Nothing was proven by mail here: the upstream's welcome does not claim the address was confirmed.
    assert!(welcome.text.contains("another provider"), "{}", welcome.text);
    let kinds = events(&f, &user.user_id).await;
    for k in [EventKind::AccountCreatedByUpstream, EventKind::UpstreamLogin, EventKind::Login] {
        assert!(kinds.contains(&k), "{k:?} in {kinds:?}");
    }

    // The address changes at the upstream; a new browser logs in again.
    let mut tx = h.state.db.begin().await.unwrap();
    tx.user_set_email(&up_id, "ana.new@gmail.example", h.clock.now()).await.unwrap();
    tx.commit().await.unwrap();
    let b2 = f.down.browser();
    let claims = login_for_rp(&f, h, &b2, "ana.new@gmail.example").await;
    assert_eq!(claims.subject().as_str(), user.user_id, "found by (issuer, sub)");
    assert_eq!(f.down.state.db.user_list().await.unwrap().len(), 1);
    let ids = f.down.state.db.identities_for_user(&user.user_id).await.unwrap();
    assert_eq!(ids.len(), 1);
    assert_eq!(ids[0].issuer, h.issuer);
    f.down.finish().await;
}

/// Verified on both sides: the upstream identity is linked to the local account at once.
async fn links_when_both_verified(h: &TestServer) {
    let f = fed(h).await;
    up_user(h, "bo@example.test", true).await;
    let local = local_user(&f, "bo@example.test", true).await;
    let claims = login_for_rp(&f, h, &f.down.browser(), "bo@example.test").await;
    assert_eq!(claims.subject().as_str(), local);
    assert_eq!(f.down.state.db.identities_for_user(&local).await.unwrap().len(), 1);
    assert!(events(&f, &local).await.contains(&EventKind::UpstreamLinked));
    f.down.finish().await;
}

/// Not verified upstream, or not verified here: no link until the user logs in to the local
/// account (keycloak#53041). With the password, or with an emailed code; then the next
/// upstream login goes straight in.
async fn no_link_without_proof_on_both_sides(h: &TestServer) {
    let f = fed(h).await;
    // Unverified upstream, verified local: the link page, then the local password.
    up_user(h, "cy@example.test", false).await;
    let local = local_user(&f, "cy@example.test", true).await;
    let b = f.down.browser();
    let started = f.rp.start(&["openid"]);
    let login = b.follow(b.get(&started.url).await).await;
    let page = round_trip(&f, h, &b, &login, "cy@example.test", None).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("log in to your existing account"), "{}", page.body);
    assert!(
        f.down.state.db.identities_for_user(&local).await.unwrap().is_empty(),
        "nothing linked yet"
    );
    let wrong = b.submit(&page, &[("password", "not the password")]).await;
    assert!(
        wrong.body.contains("log in to your existing account"),
        "the link page again: {}",
        wrong.body
    );
    let done = b.follow(b.submit(&wrong, &[("password", LOCAL_PW)]).await).await;
    let claims = rp_claims(&f, done, started).await;
    assert_eq!(claims.subject().as_str(), local);
    assert_eq!(f.down.state.db.identities_for_user(&local).await.unwrap().len(), 1);
    // The next upstream login goes straight in.
    let claims = login_for_rp(&f, h, &f.down.browser(), "cy@example.test").await;
    assert_eq!(claims.subject().as_str(), local);
    assert!(amr(&claims).contains(&"fed".to_owned()));

    // Verified upstream, unverified local: the link page, then an emailed code.
    up_user(h, "di@example.test", true).await;
    let local = local_user(&f, "di@example.test", false).await;
    let b = f.down.browser();
    let login = b.get("/login").await;
    let page = round_trip(&f, h, &b, &login, "di@example.test", None).await;
    assert!(page.body.contains("log in to your existing account"), "{}", page.body);
    let form = [("csrf", page.input("csrf").unwrap()), ("attempt", page.input("attempt").unwrap())];
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let code_page = b.post("/login/upstream-link/code", &form).await;
    assert_eq!(code_page.status, StatusCode::OK, "{}", code_page.body);
    let code = f.down.mail.last_to("di@example.test").six_digit_code();
    let done = b.submit(&code_page, &[("code", &code)]).await;
    done.assert_redirect_to("/account");
    assert_eq!(f.down.state.db.identities_for_user(&local).await.unwrap().len(), 1);
    f.down.finish().await;
}

/// CLEF_SIGNUP=closed: no account is made for an unknown identity, and the page says so.
async fn signup_closed_refuses_creation(h: &TestServer) {
    let f = fed_with(h, |raw, _, _| raw.signup = Some("closed".into())).await;
    up_user(h, "ed@example.test", true).await;
    let b = f.down.browser();
    let login = b.get("/login").await;
    let page = round_trip(&f, h, &b, &login, "ed@example.test", None).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.body);
    assert!(page.body.contains("new accounts cannot be created"), "{}", page.body);
    assert!(html_unescape(&page.body).contains("href=\"/login\""), "a way back: {}", page.body);
    assert!(f.down.state.db.user_list().await.unwrap().is_empty());
    f.down.finish().await;
}

const STATE_PAGE: &str = "Start again from the sign-in page";

/// Tampered, replayed and foreign `state`, and `error=access_denied`: the clear page, with
/// the way back into the authorization request.
async fn bad_state_and_denial_rejected(h: &TestServer) {
    let f = fed(h).await;
    up_user(h, "fa@example.test", true).await;
    let b = f.down.browser();
    let started = f.rp.start(&["openid"]);
    let login = b.follow(b.get(&started.url).await).await;
    let start = press(&b, &login, "google").await;
    let to = start.location.clone().unwrap();
    let back = b.on(&h.issuer).authorize(&to, "fa@example.test", PW).await;
    let cb = back.location.clone().unwrap();
    let state = back.location_param("state").unwrap();

    // Tampered: one character changed.
    let mut flipped = state.clone().into_bytes();
    flipped[0] = if flipped[0] == b'A' { b'B' } else { b'A' };
    let tampered = cb.replace(&state, std::str::from_utf8(&flipped).unwrap());
    let page = b.get(&tampered).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.body.contains(STATE_PAGE), "{}", page.body);
    // Another browser with the real callback URL: the same page, and nothing spent.
    let other = f.down.browser();
    let page = other.get(&cb).await;
    assert!(page.body.contains(STATE_PAGE), "{}", page.body);
    // The real one works, once.
    let done = b.follow(b.get(&cb).await).await;
    rp_claims(&f, done, started).await;
    let replay = b.get(&cb).await;
    assert_eq!(replay.status, StatusCode::BAD_REQUEST);
    assert!(replay.body.contains(STATE_PAGE), "{}", replay.body);

    // access_denied from the upstream, with the request kept for the way back.
    let b = f.down.browser();
    let started = f.rp.start(&["openid"]);
    let login = b.follow(b.get(&started.url).await).await;
    let req = login.input("req").unwrap();
    let start = press(&b, &login, "google").await;
    let q: std::collections::HashMap<String, String> = reqwest::Url::parse(start.location.as_deref().unwrap())
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    let denied = b
        .get(&format!("/login/callback/google?error=access_denied&state={}", q["state"]))
        .await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    assert!(denied.body.contains("cancelled or refused"), "{}", denied.body);
    assert!(
        html_unescape(&denied.body).contains(&format!("/login?req={req}")),
        "back into the request: {}",
        denied.body
    );
    f.down.finish().await;
}

/// The ID token's nonce is not this attempt's (the authorization URL's nonce was changed on
/// its way): refused. Keys the client cannot get (rotated twice upstream while its copy is
/// fresh): refused; with refreshes allowed, the rotation is followed.
async fn wrong_nonce_and_rotated_keys(h: &TestServer) {
    let f = fed(h).await;
    up_user(h, "gi@example.test", true).await;
    let b = f.down.browser();
    let login = b.get("/login").await;
    let start = press(&b, &login, "google").await;
    let mut url = reqwest::Url::parse(start.location.as_deref().unwrap()).unwrap();
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "nonce" { "another-nonce".to_owned() } else { v.into_owned() };
            (k.into_owned(), v)
        })
        .collect();
    url.query_pairs_mut().clear().extend_pairs(pairs);
    let back = b.on(&h.issuer).authorize(url.as_str(), "gi@example.test", PW).await;
    let page = b.get(back.location.as_deref().unwrap()).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST, "{}", page.body);
    assert!(page.body.contains("could not be verified"), "{}", page.body);
    assert!(f.down.state.db.user_list().await.unwrap().is_empty());

    // Rotation mid-test, refreshes allowed (this server): the new kid is fetched.
    let first = login_for_rp(&f, h, &f.down.browser(), "gi@example.test").await;
    let dir = h.dir().join("keys");
    for _ in 0..2 {
        Keys::rotate(&dir, h.state.config.max_signed_lifetime(), h.clock.now()).unwrap();
    }
    assert!(h.state.keys.reload(h.clock.now()).unwrap());
    let again = login_for_rp(&f, h, &f.down.browser(), "gi@example.test").await;
    assert_eq!(first.subject(), again.subject());

    // A server that fetched the keys a moment ago and may not refetch for an hour: a token
    // signed by a key it does not know is refused with the clear page.
    let slow = fed_with(h, |raw, _, _| raw.upstream_key_refresh = Some(3600)).await;
    login_for_rp(&slow, h, &slow.down.browser(), "gi@example.test").await;
    for _ in 0..2 {
        Keys::rotate(&dir, h.state.config.max_signed_lifetime(), h.clock.now()).unwrap();
    }
    assert!(h.state.keys.reload(h.clock.now()).unwrap());
    let b = slow.down.browser();
    let login = b.get("/login").await;
    let page = round_trip(&slow, h, &b, &login, "gi@example.test", None).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST, "{}", page.body);
    assert!(page.body.contains("could not be verified"), "{}", page.body);
    slow.down.finish().await;
    f.down.finish().await;
}

/// Nothing listens at the upstream: the button ends on the clear page, within the timeout.
async fn upstream_down(h: &TestServer) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let f = fed_with(h, |raw, _, _| raw.google_issuer = Some(format!("http://127.0.0.1:{port}"))).await;
    let b = f.down.browser();
    let started = f.rp.start(&["openid"]);
    let login = b.follow(b.get(&started.url).await).await;
    let at = std::time::Instant::now();
    let page = press(&b, &login, "google").await;
    assert!(at.elapsed() < clef::upstream::HTTP_TIMEOUT + std::time::Duration::from_secs(1));
    assert_eq!(page.status, StatusCode::BAD_GATEWAY, "{}", page.body);
    assert!(page.body.contains("did not answer in time"), "{}", page.body);
    assert!(html_unescape(&page.body).contains("/login?req="), "{}", page.body);
    f.down.finish().await;
}

/// TOTP turned on for `user_id` at `s`; returns the secret. The current step is unspent.
async fn totp_on(s: &TestServer, user_id: &str) -> Vec<u8> {
    let secret = clef::auth::totp::new_secret();
    let sealed = clef::auth::totp::seal(&s.state.hmac_key, user_id, &secret).unwrap();
    let now = s.clock.now();
    s.state.db.totp_begin(user_id, &sealed, now).await.unwrap();
    let mut tx = s.state.db.begin().await.unwrap();
    assert!(tx.totp_activate(user_id, &sealed, now / 30 - 2, now).await.unwrap());
    tx.commit().await.unwrap();
    secret
}

/// A user with TOTP on is still asked for it after the upstream; the RP's amr then has
/// `fed`, `otp` and `mfa`.
async fn totp_still_asked_after_upstream(h: &TestServer) {
    let f = fed(h).await;
    up_user(h, "hu@example.test", true).await;
    let first = login_for_rp(&f, h, &f.down.browser(), "hu@example.test").await;
    let secret = totp_on(&f.down, first.subject().as_str()).await;
    let b = f.down.browser();
    let started = f.rp.start(&["openid"]);
    let login = b.follow(b.get(&started.url).await).await;
    let page = round_trip(&f, h, &b, &login, "hu@example.test", None).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("id=\"login-totp\""), "{}", page.body);
    let code = clef::auth::totp::code_at(&secret, f.down.clock.now()).unwrap();
    let done = b.follow(b.submit(&page, &[("code", &code)]).await).await;
    let claims = rp_claims(&f, done, started).await;
    let a = amr(&claims);
    for v in ["fed", "otp", "mfa"] {
        assert!(a.contains(&v.to_owned()), "{v} in {a:?}");
    }
    f.down.finish().await;
}

/// An `[[upstream]]` trusted for MFA whose ID token has `mfa` stands in for the local TOTP;
/// the same upstream untrusted does not.
async fn trust_mfa_skips_totp(h: &TestServer) {
    let up_id = up_user(h, "io@example.test", true).await;
    let up_secret = totp_on(h, &up_id).await;
    for trusted in [true, false] {
        let f = fed_with(h, |raw, id, secret| {
            raw.google_client_id = None;
            raw.google_client_secret = None;
            raw.google_issuer = None;
            raw.upstream = Some(vec![RawUpstream {
                id: Some("corp".into()),
                display_name: Some("Corp".into()),
                issuer: Some(h.issuer.clone()),
                client_id: Some(id.to_owned()),
                client_secret: Some(secret.to_owned()),
                trust_email_verified: Some(true),
                trust_mfa: Some(trusted),
                ..RawUpstream::default()
            }]);
        })
        .await;
        let local = local_user(&f, "io@example.test", true).await;
        totp_on(&f.down, &local).await;
        let b = f.down.browser();
        let started = f.rp.start(&["openid"]);
        let login = b.follow(b.get(&started.url).await).await;
        assert!(login.body.contains("Continue with Corp"), "{}", login.body);
        let start = press(&b, &login, "corp").await;
        h.clock.advance(30);
        let up_code = clef::auth::totp::code_at(&up_secret, h.clock.now()).unwrap();
        let back = b
            .on(&h.issuer)
            .authorize_with(start.location.as_deref().unwrap(), "io@example.test", PW, Some(&up_code))
            .await;
        let page = b.get(back.location.as_deref().unwrap()).await;
        if trusted {
            let claims = rp_claims(&f, b.follow(page).await, started).await;
            let a = amr(&claims);
            assert!(a.contains(&"fed".to_owned()) && a.contains(&"mfa".to_owned()), "{a:?}");
            assert_eq!(claims.subject().as_str(), local);
        } else {
            assert!(
                page.body.contains("id=\"login-totp\""),
                "untrusted: TOTP still asked: {}",
                page.body
            );
        }
        f.down.finish().await;
    }
}

/// A `--require-2fa` client: after the upstream, the password is asked (the emailed code
/// would prove the same mailbox); then acr is two-factor.
async fn require_2fa_client_holds_for_upstream(h: &TestServer) {
    let f = fed(h).await;
    up_user(h, "ju@example.test", true).await;
    let local = local_user(&f, "ju@example.test", true).await;
    let strict = f.down.strict_client().await;
    let b = f.down.browser();
    let started = strict.start(&["openid"]);
    let login = b.follow(b.get(&started.url).await).await;
    let page = round_trip(&f, h, &b, &login, "ju@example.test", None).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("autocomplete=\"current-password\""), "{}", page.body);
    let done = b.follow(b.submit(&page, &[("password", LOCAL_PW)]).await).await;
    done.assert_redirect_to("http://127.0.0.1/strict/cb");
    let code = done.location_param("code").unwrap();
    let tokens = strict.exchange(&code, started.verifier).await;
    let claims = strict.id_claims(&tokens, &started.nonce);
    assert_eq!(claims.subject().as_str(), local);
    let a = amr(&claims);
    for v in ["fed", "pwd", "mfa"] {
        assert!(a.contains(&v.to_owned()), "{v} in {a:?}");
    }
    f.down.finish().await;
}

/// The account page lists the identity; unlinking the only way in is refused; "Link Google"
/// from the account page links another identity, and refuses one that is someone else's.
async fn account_page_link_and_unlink(h: &TestServer) {
    let f = fed(h).await;
    // Made by the upstream, address unverified there: the identity is the only way in.
    up_user(h, "ko@example.test", false).await;
    let b = f.down.browser();
    let login = b.get("/login").await;
    let landed = b.follow(round_trip(&f, h, &b, &login, "ko@example.test", None).await).await;
    assert_eq!(landed.status, StatusCode::OK, "{}", landed.body);
    let account = b.get("/account").await;
    assert!(account.body.contains("id=\"identities\""), "{}", account.body);
    assert!(account.body.contains("your only way to sign in"), "{}", account.body);
    assert!(!account.body.contains("identity-unlink"), "no unlink button");
    let user = f.down.state.db.user_by_email("ko@example.test").await.unwrap().unwrap();
    let ids = f.down.state.db.identities_for_user(&user.user_id).await.unwrap();
    let handle = f.down.state.hmac_key.mac(&["identity-handle", &ids[0].issuer, &ids[0].subject]);
    let refused = b
        .post(
            "/account/upstream/unlink",
            &[("csrf", &account.input("csrf").unwrap()), ("identity", &handle)],
        )
        .await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.body);
    assert_eq!(f.down.state.db.identities_for_user(&user.user_id).await.unwrap().len(), 1);

    // A local account with a password links a Google identity from its account page.
    let local = local_user(&f, "lu@example.test", true).await;
    up_user(h, "lu.google@example.test", true).await;
    let b = f.down.browser();
    // The login page's first form is the Google button's: the password form by hand.
    let csrf = b.get("/login").await.input("csrf").unwrap();
    let form = [
        ("csrf", csrf.as_str()),
        ("req", ""),
        ("email", "lu@example.test"),
        ("password", LOCAL_PW),
    ];
    let signed = b.post("/login", &form).await;
    signed.assert_redirect_to("/account");
    let account = b.get("/account").await;
    assert!(account.body.contains("Link Google"), "{}", account.body);
    let start = b
        .post("/account/upstream/google/link", &[("csrf", &account.input("csrf").unwrap())])
        .await;
    let to = start.assert_redirect_to(&h.url("/authorize")).to_owned();
    let back = b.on(&h.issuer).authorize(&to, "lu.google@example.test", PW).await;
    let linked = b.get(back.location.as_deref().unwrap()).await;
    linked.assert_redirect_to("/account?done=linked");
    let ids = f.down.state.db.identities_for_user(&local).await.unwrap();
    assert_eq!(ids.len(), 1);
    assert_eq!(ids[0].email.as_deref(), Some("lu.google@example.test"));
    let account = b.get("/account?done=linked").await;
    assert!(account.body.contains("lu.google@example.test") && account.body.contains("identity-unlink"));

    // ko's identity is someone else's: refused, and nothing moves.
    let account = b.get("/account").await;
    let start = b
        .post("/account/upstream/google/link", &[("csrf", &account.input("csrf").unwrap())])
        .await;
    // At the upstream, ko logs in afresh in this browser (prompt=login, OIDC Core §3.1.2.1).
    let to = format!("{}&prompt=login", start.location.as_deref().unwrap());
    let back = b.on(&h.issuer).authorize(&to, "ko@example.test", PW).await;
    let page = b.get(back.location.as_deref().unwrap()).await;
    assert_eq!(page.status, StatusCode::CONFLICT, "{}", page.body);
    assert!(page.body.contains("already linked to another account"), "{}", page.body);
    assert_eq!(f.down.state.db.identities_for_user(&user.user_id).await.unwrap().len(), 1);

    // Unlink is a sensitive action: an old login is asked to confirm it is them first.
    f.down.clock.advance(3600);
    let account = b.get("/account").await;
    let handle = f.down.state.hmac_key.mac(&["identity-handle", &ids[0].issuer, &ids[0].subject]);
    let asked = b
        .post(
            "/account/upstream/unlink",
            &[("csrf", &account.input("csrf").unwrap()), ("identity", &handle)],
        )
        .await;
    let to = asked.assert_redirect_to("/account/reauth?then=unlink").to_owned();
    let reauth = b.get(&to).await;
    b.submit(&reauth, &[("password", LOCAL_PW)]).await.assert_redirect_to("/account");
    assert_eq!(f.down.state.db.identities_for_user(&local).await.unwrap().len(), 1, "not before");
    let account = b.get("/account").await;
    let handle = f.down.state.hmac_key.mac(&["identity-handle", &ids[0].issuer, &ids[0].subject]);
    let done = b
        .post(
            "/account/upstream/unlink",
            &[("csrf", &account.input("csrf").unwrap()), ("identity", &handle)],
        )
        .await;
    done.assert_redirect_to("/account?done=unlinked");
    assert!(f.down.state.db.identities_for_user(&local).await.unwrap().is_empty());
    assert!(events(&f, &local).await.contains(&EventKind::UpstreamUnlinked));
    f.down.finish().await;
}

crate::e2e!(
    first_login_creates_then_sub_finds,
    links_when_both_verified,
    no_link_without_proof_on_both_sides,
    signup_closed_refuses_creation,
    bad_state_and_denial_rejected,
    wrong_nonce_and_rotated_keys,
    upstream_down,
    totp_still_asked_after_upstream,
    trust_mfa_skips_totp,
    require_2fa_client_holds_for_upstream,
    account_page_link_and_unlink,
);
