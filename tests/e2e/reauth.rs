//! Step-up before sensitive account actions (issue 8 §4): a session older than
//! CLEF_REAUTH_AFTER is sent to /account/reauth, confirms with the strongest method the user
//! has (TOTP or a backup code, else the password, else an emailed code), lands back on the
//! action's page, and the action, submitted afresh, works. Bound to the browser and the session.

use clef::store::{EventKind, LoginSession};
use reqwest::StatusCode;

use crate::e2e;
use crate::support::browser::{Page, html_unescape};
use crate::support::{Browser, TestServer};

const PW: &str = "correct horse battery";
const NEW_PW: &str = "staple orbit lantern";
const EMAIL: &str = "ana@example.test";
/// Past CLEF_REAUTH_AFTER's default of 300 seconds.
const STALE: i64 = 301;

/// A fresh browser logged in by password through the login page.
async fn log_in(h: &TestServer, email: &str, password: &str) -> Browser {
    let b = h.browser();
    let page = b.get("/login").await;
    let csrf = page.input("csrf").unwrap();
    let done = b
        .post("/login", &[("csrf", &csrf), ("req", ""), ("email", email), ("password", password)])
        .await;
    assert_eq!(done.location.as_deref(), Some("/account"), "{}", done.body);
    b
}

/// A session row and its cookie in `b`, authenticated `age` seconds ago (for accounts the
/// login page would not let in by password alone).
async fn add_session(h: &TestServer, b: &Browser, user_id: &str, age: i64) -> String {
    let id = clef::secret::random_token(32);
    let now = h.clock.now();
    let s = LoginSession {
        session_hash: clef::secret::sha256_b64(&id),
        user_id: user_id.to_owned(),
        auth_time: now - age,
        amr: vec!["otp".into()],
        acr: clef::oauth::claims::ACR_1FA.into(),
        expires_at: now + 3600,
        sid: None,
    };
    h.state
        .db
        .session_create(&s, &clef::store::SessionMeta::default(), now)
        .await
        .unwrap();
    b.add_cookie(&format!("clef_session={id}; Path=/; HttpOnly"));
    s.session_hash
}

async fn csrf_of(b: &Browser, path: &str) -> String {
    let page = b.get(path).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    page.input("csrf").unwrap()
}

/// Posts a form of `page_path` (with that page's CSRF token).
async fn post_from(b: &Browser, page_path: &str, path: &str, fields: &[(&str, &str)]) -> Page {
    let csrf = csrf_of(b, page_path).await;
    let mut form = vec![("csrf", csrf.as_str())];
    form.extend_from_slice(fields);
    b.post(path, &form).await
}

/// The handle of a session listed on the account page that is not this browser's.
fn other_session(page: &Page) -> String {
    let list = page.body.split("<ul class=\"sessions\"").nth(1).unwrap();
    let li = list
        .split("<li")
        .skip(1)
        .find(|li| !li.contains("this-device"))
        .unwrap_or_else(|| panic!("no other session in {}", page.body));
    let at = li.find("name=\"session\" value=\"").unwrap() + 22;
    html_unescape(&li[at..at + li[at..].find('"').unwrap()])
}

/// The re-authentication page a refused action leads to (followed from its 303).
async fn reauth_page(b: &Browser, refused: &Page, then: &str) -> Page {
    assert_eq!(refused.status, StatusCode::SEE_OTHER, "{}", refused.body);
    assert_eq!(refused.location.as_deref(), Some(format!("/account/reauth?then={then}").as_str()));
    let page = b.get(refused.location.as_deref().unwrap()).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("id=\"reauth-reason\""), "{}", page.body);
    page
}

/// Posts `value` to the page's form for `method` (password, totp, backup-code, code).
async fn confirm(b: &Browser, page: &Page, method: &str, value: &str) -> Page {
    let field = if method == "password" { "password" } else { "code" };
    let attempt = page.input("attempt").unwrap();
    let csrf = page.input("csrf").unwrap();
    b.post(
        &format!("/account/reauth/{method}"),
        &[("csrf", &csrf), ("attempt", &attempt), (field, value)],
    )
    .await
}

async fn auth_time(h: &TestServer, session_hash: &str) -> i64 {
    h.state
        .db
        .session_get(session_hash, h.clock.now())
        .await
        .unwrap()
        .unwrap()
        .auth_time
}

fn session_hash_of(h: &TestServer, b: &Browser) -> String {
    clef::secret::sha256_b64(&b.cookie(&h.url("/"), "clef_session").unwrap())
}

/// A password-only user: each sensitive account action of an old session goes through the
/// password, lands back on the account page, and then works.
async fn password_user_confirms_then_each_action_works(h: &TestServer) {
    let user_id = h.user(EMAIL, PW).await;
    let a = log_in(h, EMAIL, PW).await;
    let _other = log_in(h, EMAIL, PW).await;
    let _third = log_in(h, EMAIL, PW).await;
    let hash = session_hash_of(h, &a);
    let other = other_session(&a.get("/account").await);
    // The password last: changing it ends the other sessions.
    let actions = [
        ("/account/sessions/end", vec![("session", other.as_str())], "session"),
        ("/account/sessions/end-others", vec![], "sessions"),
        ("/account/email", vec![("email", "new@example.test")], "email"),
        (
            "/account/password",
            vec![("current_password", PW), ("new_password", NEW_PW)],
            "password",
        ),
    ];
    let pw = PW;
    for (path, fields, then) in actions {
        h.clock.advance(STALE);
        let refused = post_from(&a, "/account", path, &fields).await;
        let page = reauth_page(&a, &refused, then).await;
        assert!(page.body.contains("id=\"reauth-password\""), "{}", page.body);
        assert!(!page.body.contains("id=\"reauth-totp\""));
        assert!(!page.body.contains("id=\"reauth-code\""));
        let before = h.clock.now();
        let back = confirm(&a, &page, "password", pw).await;
        assert_eq!(back.status, StatusCode::SEE_OTHER, "{then}: {}", back.body);
        assert_eq!(back.location.as_deref(), Some("/account"), "{then}");
        // The test clock also follows real time, so "now" is a range here.
        let renewed = auth_time(h, &hash).await;
        assert!((before..=h.clock.now()).contains(&renewed), "{then}: the same session, renewed");
        // A fresh form with a fresh token: the action now goes through.
        let done = post_from(&a, "/account", path, &fields).await;
        match then {
            "email" => {
                assert_eq!(done.status, StatusCode::OK, "{}", done.body);
                assert!(!h.mail.to("new@example.test").is_empty(), "the new address gets its code");
            }
            _ => {
                assert_eq!(done.status, StatusCode::SEE_OTHER, "{then}: {}", done.body);
                assert!(done.location.as_deref().unwrap().starts_with("/account?done="), "{then}");
            }
        }
    }
    let sessions = h.state.db.sessions_for_user(&user_id, h.clock.now()).await.unwrap();
    assert_eq!(sessions.len(), 1, "the others ended; no new session was made");
    let events = h.state.db.events_recent(&user_id, 40).await.unwrap();
    let reauths: Vec<_> = events.iter().filter(|e| e.kind == EventKind::Reauthenticated).collect();
    assert_eq!(reauths.len(), 4);
    assert!(reauths.iter().any(|e| e.detail.as_deref() == Some("pwd password")), "{reauths:?}");
    assert!(reauths.iter().all(|e| e.ip.is_some()));
    let logins = events.iter().filter(|e| e.kind == EventKind::Login).count();
    assert_eq!(logins, 3, "a re-authentication is not a login");
    // Shown on the account page, in both languages.
    assert!(
        a.get("/account")
            .await
            .body
            .contains("Confirmed it was me before a sensitive change")
    );
    let fr = a.get_with("/account", &[("accept-language", "fr")]).await;
    assert!(fr.body.contains("Identité confirmée avant une modification sensible"));
}

/// Status page → enable → the otpauth URI → a first code → the backup codes.
async fn enrol(h: &TestServer, b: &Browser) -> (totp_rs::Totp, Vec<String>) {
    let status = b.get("/account/two-factor").await;
    let page = b.submit(&status, &[]).await;
    let at = page.body.find("id=\"otpauth-uri\"").unwrap();
    let start = at + page.body[at..].find('>').unwrap() + 1;
    let uri = html_unescape(&page.body[start..start + page.body[start..].find('<').unwrap()]);
    let t = totp_rs::Totp::from_url(&uri).unwrap();
    let done = b.submit(&page, &[("code", &t.generate(h.clock.now() as u64).to_string())]).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    let at = done.body.find("id=\"backup-codes\"").unwrap();
    let list = &done.body[at..at + done.body[at..].find("</ul>").unwrap()];
    let codes = list
        .split("<code>")
        .skip(1)
        .map(|c| c.split('<').next().unwrap().to_owned())
        .collect();
    (t, codes)
}

/// A user with TOTP is asked TOTP, not the password (which is refused if posted anyway); a
/// backup code is the way out; then regenerate and disable work.
async fn totp_user_confirms_with_totp_or_a_backup_code(h: &TestServer) {
    let user_id = h.user(EMAIL, PW).await;
    let b = log_in(h, EMAIL, PW).await;
    let (t, codes) = enrol(h, &b).await;

    h.clock.advance(STALE);
    let refused = post_from(&b, "/account/two-factor", "/account/two-factor/backup-codes", &[]).await;
    let page = reauth_page(&b, &refused, "regenerate_backup_codes").await;
    assert!(page.body.contains("id=\"reauth-totp\""), "{}", page.body);
    assert!(page.body.contains("id=\"reauth-backup-code\""));
    assert!(!page.body.contains("id=\"reauth-password\""), "TOTP, not the password");
    assert!(page.body.contains("Confirm it’s you to make new backup codes."));
    assert!(page.body.contains("autocomplete=\"one-time-code\" inputmode=\"numeric\""));
    // The password is not what this user's confirmation takes.
    let pwd = confirm(&b, &page, "password", PW).await;
    assert_eq!(pwd.status, StatusCode::BAD_REQUEST, "{}", pwd.body);
    let wrong = confirm(&b, &page, "totp", "000000").await;
    assert_eq!(wrong.status, StatusCode::OK);
    assert!(wrong.body.contains("role=\"alert\""));
    let back = confirm(&b, &wrong, "backup-code", &codes[0]).await;
    assert_eq!(back.status, StatusCode::SEE_OTHER, "{}", back.body);
    assert_eq!(back.location.as_deref(), Some("/account/two-factor"));
    assert_eq!(h.state.db.backup_codes_count(&user_id).await.unwrap(), 7, "spent");
    let again = post_from(&b, "/account/two-factor", "/account/two-factor/backup-codes", &[]).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    assert_eq!(h.state.db.backup_codes_count(&user_id).await.unwrap(), 8, "regenerated");

    h.clock.advance(STALE);
    let refused = post_from(&b, "/account/two-factor", "/account/two-factor/disable", &[]).await;
    let page = reauth_page(&b, &refused, "disable_totp").await;
    let fr = b.get_with("/account/reauth?then=disable_totp", &[("accept-language", "fr")]).await;
    assert!(fr.body.contains("pour désactiver la connexion en deux étapes"), "{}", fr.body);
    let code = t.generate(h.clock.now() as u64).to_string();
    let back = confirm(&b, &page, "totp", &code).await;
    assert_eq!(back.location.as_deref(), Some("/account/two-factor"), "{}", back.body);
    let off = post_from(&b, "/account/two-factor", "/account/two-factor/disable", &[]).await;
    assert_eq!(off.location.as_deref(), Some("/account/two-factor?done=disabled"), "{}", off.body);
    assert!(h.state.db.totp_get(&user_id).await.unwrap().is_none_or(|c| !c.enabled));
    let events = h.state.db.events_recent(&user_id, 20).await.unwrap();
    let details: Vec<_> = events
        .iter()
        .filter(|e| e.kind == EventKind::Reauthenticated)
        .filter_map(|e| e.detail.clone())
        .collect();
    assert!(details.contains(&"otp disable_totp".to_owned()), "{details:?}");
    assert!(details.contains(&"otp regenerate_backup_codes".to_owned()), "{details:?}");
}

/// Wrong TOTP codes count as at login: the fifth ends the confirmation and locks the second
/// factor (its owner is told), so a right code right after is refused too; nothing changes.
async fn five_wrong_totp_codes_lock(h: &TestServer) {
    let user_id = h.user(EMAIL, PW).await;
    let b = log_in(h, EMAIL, PW).await;
    let (t, _) = enrol(h, &b).await;
    h.clock.advance(STALE);
    let mut page = b.get("/account/reauth?then=disable_totp").await;
    assert!(page.body.contains("id=\"reauth-totp\""), "{}", page.body);
    // A minute between tries keeps under the 4-a-minute limit, so it is the lock that answers.
    for i in 1..=4 {
        h.clock.advance(61);
        page = confirm(&b, &page, "totp", "000000").await;
        assert_eq!(page.status, StatusCode::OK, "try {i}: {}", page.body);
    }
    h.clock.advance(61);
    let fifth = confirm(&b, &page, "totp", "000000").await;
    assert_eq!(fifth.status, StatusCode::TOO_MANY_REQUESTS, "{}", fifth.body);
    h.state.mailer.settled().await;
    assert!(h.mail.to(EMAIL).iter().any(|m| m.subject.contains("paused")), "the owner is told");
    h.clock.advance(61);
    let page = b.get("/account/reauth?then=disable_totp").await;
    let code = t.generate(h.clock.now() as u64).to_string();
    let refused = confirm(&b, &page, "totp", &code).await;
    // During the lock even the right code is refused, and the page says two-factor login is paused.
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS, "{}", refused.body);
    assert!(
        refused.body.contains("role=\"alert\"") && refused.body.contains("paused"),
        "{}",
        refused.body
    );
    assert!(h.state.db.totp_get(&user_id).await.unwrap().unwrap().enabled, "still on");
}

/// Without TOTP or a password, the confirmation is a code mailed to the account's address,
/// without a link; a wrong code is said, the right one lands back.
async fn passwordless_user_gets_an_emailed_code(h: &TestServer) {
    let user_id = h
        .user_with(clef::admin::UserSpec {
            email: "otp@example.test".into(),
            ..clef::admin::UserSpec::default()
        })
        .await;
    let b = h.browser();
    let hash = add_session(h, &b, &user_id, STALE).await;
    add_session(h, &h.browser(), &user_id, 0).await;
    let refused = post_from(&b, "/account", "/account/sessions/end-others", &[]).await;
    let first = reauth_page(&b, &refused, "sessions").await;
    // Opening the page sends nothing (a link from any site could open it): a button does.
    assert!(first.body.contains("id=\"reauth-send\""), "{}", first.body);
    assert!(!first.body.contains("id=\"reauth-password\""));
    h.state.mailer.settled().await;
    assert!(h.mail.to("otp@example.test").is_empty(), "no mail before the button");
    let page = b.submit(&first, &[]).await;
    assert!(page.body.contains("id=\"reauth-code\""), "{}", page.body);
    let mail = h.mail.last_to("otp@example.test");
    assert_eq!(mail.subject, "Your confirmation code");
    assert!(!mail.text.contains("/login/link"), "no link: typed on this page only");
    let wrong = confirm(&b, &page, "code", "000000").await;
    assert_eq!(wrong.status, StatusCode::OK, "{}", wrong.body);
    assert!(wrong.body.contains("role=\"alert\""));
    let before = h.clock.now();
    let back = confirm(&b, &wrong, "code", &mail.six_digit_code()).await;
    assert_eq!(back.location.as_deref(), Some("/account"), "{}", back.body);
    assert!((before..=h.clock.now()).contains(&auth_time(h, &hash).await), "renewed");
    let done = post_from(&b, "/account", "/account/sessions/end-others", &[]).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(h.state.db.sessions_for_user(&user_id, h.clock.now()).await.unwrap().len(), 1);
}

/// Wrong passwords here count as wrong logins do: the fifth ends the attempt and locks
/// password login for the account, so a session cannot guess faster than the login page.
async fn wrong_passwords_count_toward_the_lock(h: &TestServer) {
    h.user(EMAIL, PW).await;
    let b = log_in(h, EMAIL, PW).await;
    h.clock.advance(STALE);
    let mut page = b.get("/account/reauth?then=password").await;
    for i in 1..=4 {
        page = confirm(&b, &page, "password", "not the password").await;
        assert_eq!(page.status, StatusCode::OK, "try {i}: {}", page.body);
        assert!(page.body.contains("This password is not right."), "{}", page.body);
    }
    let fifth = confirm(&b, &page, "password", "not the password").await;
    assert_eq!(fifth.status, StatusCode::TOO_MANY_REQUESTS, "{}", fifth.body);
    // A new confirmation with the right password now meets the login's own lock.
    let page = b.get("/account/reauth?then=password").await;
    let locked = confirm(&b, &page, "password", PW).await;
    assert_eq!(locked.status, StatusCode::TOO_MANY_REQUESTS, "{}", locked.body);
    assert!(locked.headers.contains_key("retry-after"));
    let other = h.browser();
    let login = other.get("/login").await;
    let csrf = login.input("csrf").unwrap();
    let r = other
        .post("/login", &[("csrf", &csrf), ("req", ""), ("email", EMAIL), ("password", PW)])
        .await;
    assert_ne!(r.location.as_deref(), Some("/account"), "password login is locked too");
}

/// The attempt is bound to its browser and to its session: another browser finds nothing,
/// another session in the same browser is refused, and the login routes do not take it.
async fn an_attempt_is_bound_to_its_browser_and_session(h: &TestServer) {
    let user_id = h.user(EMAIL, PW).await;
    let a = log_in(h, EMAIL, PW).await;
    h.clock.advance(STALE);
    let page = a.get("/account/reauth?then=password").await;
    let attempt = page.input("attempt").unwrap();

    let thief = log_in(h, EMAIL, PW).await;
    let csrf = csrf_of(&thief, "/account").await;
    let r = thief
        .post(
            "/account/reauth/password",
            &[("csrf", &csrf), ("attempt", &attempt), ("password", PW)],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);

    // The login form does not continue a re-authentication either.
    let csrf = page.input("csrf").unwrap();
    let r = a
        .post("/login/password", &[("csrf", &csrf), ("attempt", &attempt), ("password", PW)])
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);

    // Same browser, another session (logged in again meanwhile): refused, nothing renewed.
    let old_hash = session_hash_of(h, &a);
    let new_hash = add_session(h, &a, &user_id, STALE).await;
    let r = confirm(&a, &page, "password", PW).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert!(r.body.contains("belongs to another login session"), "{}", r.body);
    assert!(auth_time(h, &new_hash).await <= h.clock.now() - STALE);
    assert!(auth_time(h, &old_hash).await <= h.clock.now() - STALE);

    // Signed out: to the login page.
    h.browser().get("/account/reauth?then=password").await.assert_redirect_to("/login");
}

/// `then` names an account page from a fixed list; a URL in it lands on /account.
async fn then_never_leaves_the_account_pages(h: &TestServer) {
    h.user(EMAIL, PW).await;
    let b = log_in(h, EMAIL, PW).await;
    h.clock.advance(STALE);
    for then in ["https://evil.example", "%2F%2Fevil.example", "nonsense"] {
        let page = b.get(&format!("/account/reauth?then={then}")).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        assert!(!page.body.contains("evil.example"), "{}", page.body);
        let back = confirm(&b, &page, "password", PW).await;
        assert_eq!(back.status, StatusCode::SEE_OTHER, "{}", back.body);
        assert_eq!(back.location.as_deref(), Some("/account"), "{then}");
    }
}

e2e!(
    password_user_confirms_then_each_action_works,
    totp_user_confirms_with_totp_or_a_backup_code,
    five_wrong_totp_codes_lock,
    passwordless_user_gets_an_emailed_code,
    wrong_passwords_count_toward_the_lock,
    an_attempt_is_bound_to_its_browser_and_session,
    then_never_leaves_the_account_pages,
);
