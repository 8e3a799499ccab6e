//! The account security page: password and email changes, active sessions, security events,
//! and the recent-login rule for sensitive actions.

use reqwest::StatusCode;

use crate::e2e;
use crate::support::browser::{Page, html_unescape};
use crate::support::{Browser, TestServer};

const PW: &str = "correct horse battery";
const NEW_PW: &str = "staple orbit lantern";
const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
const SAFARI: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1";

/// A fresh browser logged in by password, its login sent with `ua` as its user agent.
async fn log_in(h: &TestServer, ua: &str, email: &str, password: &str) -> Browser {
    let b = h.browser();
    let page = b.get_with("/login", &[("user-agent", ua)]).await;
    let csrf = page.input("csrf").unwrap();
    let done = b
        .post_with(
            "/login",
            &[("csrf", &csrf), ("req", ""), ("email", email), ("password", password)],
            &[("user-agent", ua)],
        )
        .await;
    assert_eq!(done.location.as_deref(), Some("/account"), "{}", done.body);
    b
}

async fn account(b: &Browser) -> Page {
    let page = b.get("/account").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    page
}

fn signed_in(page: &Page) -> bool {
    page.body.contains("action=\"&#x2f;account&#x2f;password\"")
}

/// Posts one of the page's forms, with the page's CSRF token.
async fn post(b: &Browser, path: &str, fields: &[(&str, &str)]) -> Page {
    let csrf = account(b).await.input("csrf").unwrap();
    let mut form = vec![("csrf", csrf.as_str())];
    form.extend_from_slice(fields);
    b.post(path, &form).await
}

/// (device label, handle, this device?) for every session the page lists.
fn sessions(page: &Page) -> Vec<(String, String, bool)> {
    let list = page
        .body
        .split("<ul class=\"sessions\"")
        .nth(1)
        .unwrap()
        .split("</ul>")
        .next()
        .unwrap();
    list.split("<li")
        .skip(1)
        .map(|li| {
            let device = li
                .split("<strong class=\"device\">")
                .nth(1)
                .unwrap()
                .split("</strong>")
                .next()
                .unwrap();
            let at = li.find("name=\"session\" value=\"").unwrap() + 22;
            let handle = &li[at..at + li[at..].find('"').unwrap()];
            (html_unescape(device), html_unescape(handle), li.contains("this-device"))
        })
        .collect()
}

fn handle_of(page: &Page, device: &str) -> String {
    sessions(page)
        .into_iter()
        .find(|(d, _, _)| d == device)
        .unwrap_or_else(|| panic!("no {device} session in {}", page.body))
        .1
}

async fn password_login_works(h: &TestServer, email: &str, password: &str) -> bool {
    let b = h.browser();
    let page = b.get("/login").await;
    let csrf = page.input("csrf").unwrap();
    let done = b
        .post("/login", &[("csrf", &csrf), ("req", ""), ("email", email), ("password", password)])
        .await;
    done.location.as_deref() == Some("/account")
}

/// The page names each session's device from its user agent, its address and this device;
/// the address's verification state is shown.
async fn sessions_list_device_ip_and_this_device(h: &TestServer) {
    h.user("ana@example.test", PW).await;
    let a = log_in(h, FIREFOX, "ana@example.test", PW).await;
    let _b = log_in(h, CHROME, "ana@example.test", PW).await;
    let _c = log_in(h, "<script>alert(1)</script>", "ana@example.test", PW).await;
    let page = account(&a).await;
    assert!(page.body.contains("ana@example.test"));
    assert!(page.body.contains("not verified yet"), "{}", page.body);
    let list = sessions(&page);
    assert_eq!(list.len(), 3, "{list:?}");
    assert!(list[0].2, "this device first: {list:?}");
    assert_eq!(list[0].0, "Firefox on Linux");
    assert!(list.iter().any(|(d, _, this)| d == "Chrome on Windows" && !this));
    assert!(list.iter().any(|(d, _, _)| d == "Unknown device"), "{list:?}");
    assert!(!page.body.contains("<script>alert"), "escaped, never echoed");
    assert!(page.body.contains("<span class=\"ip\">127.0.0.1</span>"), "{}", page.body);
    assert!(page.body.contains("This device"));
    assert!(page.body.contains("href=\"&#x2f;account&#x2f;two-factor\""), "the two-factor line");
    // The handles are not the stored session hashes.
    let stored = h
        .state
        .db
        .sessions_for_user(
            &h.state.db.user_by_email("ana@example.test").await.unwrap().unwrap().user_id,
            h.clock.now(),
        )
        .await
        .unwrap();
    for s in stored {
        assert!(!page.body.contains(&s.session_hash));
    }
}

/// `last_seen_at` moves when the session is used, at most once a minute.
async fn last_seen_moves_at_most_once_a_minute(h: &TestServer) {
    let user_id = h.user("seen@example.test", PW).await;
    let b = log_in(h, FIREFOX, "seen@example.test", PW).await;
    let first = h.state.db.sessions_for_user(&user_id, h.clock.now()).await.unwrap()[0].clone();
    assert_eq!(first.last_seen_at, first.created_at);
    h.clock.advance(30);
    account(&b).await;
    let s = h.state.db.sessions_for_user(&user_id, h.clock.now()).await.unwrap()[0].clone();
    assert_eq!(s.last_seen_at, first.created_at, "not within the minute");
    h.clock.advance(31);
    account(&b).await;
    let s = h.state.db.sessions_for_user(&user_id, h.clock.now()).await.unwrap()[0].clone();
    assert!(s.last_seen_at >= first.created_at + 61, "{s:?}");
    assert_eq!(s.ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(s.user_agent.as_deref(), Some(FIREFOX));
}

/// A wrong current password changes nothing; the right one sets the new password, ends the
/// other sessions (not this one), mails the owner and lists the event.
async fn change_password_with_wrong_then_right_current(h: &TestServer) {
    h.user("pw@example.test", PW).await;
    let a = log_in(h, FIREFOX, "pw@example.test", PW).await;
    let other = log_in(h, CHROME, "pw@example.test", PW).await;

    let no_csrf = a
        .post("/account/password", &[("current_password", PW), ("new_password", NEW_PW)])
        .await;
    assert_eq!(no_csrf.status, StatusCode::FORBIDDEN);

    let weak = post(&a, "/account/password", &[("current_password", PW), ("new_password", "password")]).await;
    assert!(weak.body.contains("too easy to guess"), "{}", weak.body);

    let wrong = post(
        &a,
        "/account/password",
        &[("current_password", "not it at all"), ("new_password", NEW_PW)],
    )
    .await;
    assert_eq!(wrong.status, StatusCode::OK);
    assert!(wrong.body.contains("The current password is incorrect."), "{}", wrong.body);
    assert!(signed_in(&account(&other).await), "nothing changed");
    assert!(password_login_works(h, "pw@example.test", PW).await);

    let right = post(&a, "/account/password", &[("current_password", PW), ("new_password", NEW_PW)]).await;
    assert_eq!(right.status, StatusCode::SEE_OTHER, "{}", right.body);
    assert_eq!(right.location.as_deref(), Some("/account?done=password"));
    let page = a.get("/account?done=password").await;
    assert!(signed_in(&page), "this session stays");
    assert!(page.body.contains("Your password was changed."));
    assert!(page.body.contains("Password changed"), "the event is listed: {}", page.body);
    assert!(!signed_in(&account(&other).await), "the other session ended");
    assert_eq!(sessions(&page).len(), 1);
    assert_eq!(h.mail.last_to("pw@example.test").subject, "Your password was changed");
    assert!(password_login_works(h, "pw@example.test", NEW_PW).await);
    assert!(!password_login_works(h, "pw@example.test", PW).await);
}

/// Wrong current passwords count toward the login's own lock: the page cannot be used to guess.
async fn current_password_guesses_hit_the_login_lock(h: &TestServer) {
    h.user("guess@example.test", PW).await;
    let a = log_in(h, FIREFOX, "guess@example.test", PW).await;
    for _ in 0..5 {
        let r = post(
            &a,
            "/account/password",
            &[("current_password", "wrong guess"), ("new_password", NEW_PW)],
        )
        .await;
        assert_eq!(r.status, StatusCode::OK);
    }
    let locked = post(&a, "/account/password", &[("current_password", PW), ("new_password", NEW_PW)]).await;
    assert_eq!(locked.status, StatusCode::TOO_MANY_REQUESTS, "{}", locked.body);
    assert!(!password_login_works(h, "guess@example.test", PW).await, "login locked too");
    assert_eq!(
        h.mail.last_to("guess@example.test").subject,
        "Password login paused on your account"
    );
}

/// The new address gets a code; only that code, in this browser, changes the address; the old
/// address is told.
async fn change_email_by_code(h: &TestServer) {
    h.user("old@example.test", PW).await;
    let a = log_in(h, FIREFOX, "old@example.test", PW).await;
    let same = post(&a, "/account/email", &[("email", "OLD@example.test")]).await;
    assert!(same.body.contains("This is already your address."), "{}", same.body);
    let bad = post(&a, "/account/email", &[("email", "not an address")]).await;
    assert!(bad.body.contains("Enter a valid email address."));

    let code_page = post(&a, "/account/email", &[("email", "New@Example.test")]).await;
    assert_eq!(code_page.status, StatusCode::OK, "{}", code_page.body);
    assert!(code_page.body.contains("new@example.test"));
    assert!(code_page.body.contains("autocomplete=\"one-time-code\""));
    let mail = h.mail.last_to("new@example.test");
    assert_eq!(mail.subject, "Confirm your new email address");
    assert!(!mail.text.contains("/login/link"), "no magic link for this code");
    let code = mail.six_digit_code();
    let csrf = code_page.input("csrf").unwrap();
    let wrong = if code == "000000" { "111111" } else { "000000" };

    // Another browser of the same user cannot use it: the code is bound to the one that asked.
    let elsewhere = log_in(h, CHROME, "old@example.test", PW).await;
    let e_csrf = account(&elsewhere).await.input("csrf").unwrap();
    let r = elsewhere
        .post(
            "/account/email/verify",
            &[("csrf", &e_csrf), ("email", "new@example.test"), ("code", wrong)],
        )
        .await;
    assert!(r.body.contains("This code is not right."), "{}", r.body);

    let r = a
        .post(
            "/account/email/verify",
            &[("csrf", &csrf), ("email", "new@example.test"), ("code", &code)],
        )
        .await;
    assert_eq!(r.location.as_deref(), Some("/account?done=email"), "{}", r.body);
    let page = account(&a).await;
    assert!(
        page.body.contains("<strong class=\"address\">new@example.test</strong>"),
        "{}",
        page.body
    );
    assert!(page.body.contains("(verified)"));
    assert!(page.body.contains("Email address changed"), "the event");
    assert_eq!(h.mail.last_to("old@example.test").subject, "Your email address was changed");
    assert!(password_login_works(h, "new@example.test", PW).await);
    assert!(!password_login_works(h, "old@example.test", PW).await);

    // Spent: the same code again does nothing.
    let again = a
        .post(
            "/account/email/verify",
            &[("csrf", &csrf), ("email", "new@example.test"), ("code", &code)],
        )
        .await;
    assert!(again.body.contains("This code has expired"), "{}", again.body);
}

/// A code typed in another browser of the same account does not count: bound to the asker.
async fn change_email_code_is_bound_to_the_browser(h: &TestServer) {
    h.user("bound@example.test", PW).await;
    let a = log_in(h, FIREFOX, "bound@example.test", PW).await;
    let b = log_in(h, CHROME, "bound@example.test", PW).await;
    post(&a, "/account/email", &[("email", "moved@example.test")]).await;
    let code = h.mail.last_to("moved@example.test").six_digit_code();
    let r = post(&b, "/account/email/verify", &[("email", "moved@example.test"), ("code", &code)]).await;
    assert!(r.body.contains("This code has expired"), "{}", r.body);
    let page = account(&a).await;
    assert!(page.body.contains("bound@example.test"), "unchanged");
}

/// An address another account uses: the page answers as for a free one, the owner of that
/// address is told, no code goes out, and nothing can change.
async fn change_email_to_a_taken_address_reveals_nothing(h: &TestServer) {
    h.user("me@example.test", PW).await;
    h.user("taken@example.test", PW).await;
    let a = log_in(h, FIREFOX, "me@example.test", PW).await;
    let free = post(&a, "/account/email", &[("email", "free@example.test")]).await;
    let taken = post(&a, "/account/email", &[("email", "taken@example.test")]).await;
    assert_eq!(free.status, taken.status);
    let strip = |p: &Page, addr: &str| p.body.replace(addr, "ADDR").split("name=\"csrf\"").next().unwrap().to_owned();
    assert_eq!(strip(&free, "free@example.test"), strip(&taken, "taken@example.test"));
    let told = h.mail.last_to("taken@example.test");
    assert_eq!(told.subject, "Someone tried to use your address");
    assert!(
        !told
            .text
            .lines()
            .any(|l| l.trim().len() == 6 && l.trim().bytes().all(|c| c.is_ascii_digit()))
    );
    for code in ["000000", "123456"] {
        let r = post(&a, "/account/email/verify", &[("email", "taken@example.test"), ("code", code)]).await;
        assert_ne!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    }
    assert!(
        account(&a)
            .await
            .body
            .contains("<strong class=\"address\">me@example.test</strong>")
    );
}

/// "Log out this one" ends exactly that session; "everywhere else" ends the rest but this one.
async fn log_out_one_then_everywhere_else(h: &TestServer) {
    h.user("many@example.test", PW).await;
    let a = log_in(h, FIREFOX, "many@example.test", PW).await;
    let b = log_in(h, CHROME, "many@example.test", PW).await;
    let c = log_in(h, SAFARI, "many@example.test", PW).await;
    let page = account(&a).await;
    let chrome = handle_of(&page, "Chrome on Windows");
    let r = post(&a, "/account/sessions/end", &[("session", &chrome)]).await;
    assert_eq!(r.location.as_deref(), Some("/account?done=session"), "{}", r.body);
    assert!(!signed_in(&account(&b).await));
    assert!(signed_in(&account(&c).await));
    let page = account(&a).await;
    assert!(page.body.contains("A session was logged out"), "the event");
    assert_eq!(sessions(&page).len(), 2);

    let r = post(&a, "/account/sessions/end-others", &[]).await;
    assert_eq!(r.location.as_deref(), Some("/account?done=others"));
    assert!(!signed_in(&account(&c).await));
    let page = account(&a).await;
    assert!(signed_in(&page));
    assert!(page.body.contains("Other sessions were logged out"));
    assert_eq!(sessions(&page).len(), 1);

    // This device's own entry signs this browser out.
    let own = handle_of(&page, "Firefox on Linux");
    let r = post(&a, "/account/sessions/end", &[("session", &own)]).await;
    assert_eq!(r.location.as_deref(), Some("/account"));
    assert!(!signed_in(&account(&a).await));
    // Each of the three log-outs told the owner (issue 8 §4: every sensitive action mails a notice).
    h.state.mailer.settled().await;
    let notices = h
        .mail
        .to("many@example.test")
        .iter()
        .filter(|m| m.subject == "Sessions of your account were logged out")
        .count();
    assert_eq!(notices, 3);
}

/// A handle from another user's page, a made-up one or a stored session hash ends nothing.
async fn another_users_session_handle_is_refused(h: &TestServer) {
    h.user("one@example.test", PW).await;
    let two_id = h.user("two@example.test", PW).await;
    let one = log_in(h, FIREFOX, "one@example.test", PW).await;
    let two = log_in(h, CHROME, "two@example.test", PW).await;
    let theirs = handle_of(&account(&two).await, "Chrome on Windows");
    let hash = h.state.db.sessions_for_user(&two_id, h.clock.now()).await.unwrap()[0]
        .session_hash
        .clone();
    for presented in [theirs.as_str(), hash.as_str(), "made-up", ""] {
        let r = post(&one, "/account/sessions/end", &[("session", presented)]).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{presented}: {}", r.body);
        assert!(r.body.contains("is not one of yours"), "{}", r.body);
    }
    assert!(signed_in(&account(&two).await), "the other user's session lives");
    assert!(signed_in(&account(&one).await));
}

/// Posts from a signed-out browser go to the login page and change nothing.
async fn signed_out_posts_go_to_login(h: &TestServer) {
    let b = h.browser();
    let page = b.get("/account").await;
    assert!(page.body.contains("You are not signed in."));
    let csrf = b.get("/login").await.input("csrf").unwrap();
    for path in [
        "/account/password",
        "/account/email",
        "/account/sessions/end",
        "/account/sessions/end-others",
    ] {
        let r = b.post(path, &[("csrf", &csrf)]).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(r.location.as_deref(), Some("/login"), "{path}");
    }
}

/// A session whose login is older than five minutes is sent to re-authenticate first, for
/// every sensitive action, and nothing changes.
async fn stale_session_is_sent_to_reauthenticate(h: &TestServer) {
    h.user("stale@example.test", PW).await;
    let a = log_in(h, FIREFOX, "stale@example.test", PW).await;
    let other = log_in(h, CHROME, "stale@example.test", PW).await;
    let page = account(&a).await;
    let chrome = handle_of(&page, "Chrome on Windows");
    h.clock.advance(301);
    for (path, fields, then) in [
        (
            "/account/password",
            vec![("current_password", PW), ("new_password", NEW_PW)],
            "password",
        ),
        ("/account/email", vec![("email", "elsewhere@example.test")], "email"),
        (
            "/account/email/verify",
            vec![("email", "elsewhere@example.test"), ("code", "123456")],
            "email",
        ),
        ("/account/sessions/end", vec![("session", chrome.as_str())], "session"),
        ("/account/sessions/end-others", vec![], "sessions"),
    ] {
        let r = post(&a, path, &fields).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{path}: {}", r.body);
        assert_eq!(
            r.location.as_deref(),
            Some(format!("/account/reauth?then={then}").as_str()),
            "{path}"
        );
    }
    assert!(signed_in(&account(&other).await), "nothing ended");
    assert!(password_login_works(h, "stale@example.test", PW).await, "nothing changed");
    assert!(h.mail.to("elsewhere@example.test").is_empty());
}

/// Every login path records where its session was opened, not only the password form: here
/// an emailed code, whose handler knows nothing of user agents. A passwordless account then
/// sets a password without a current one.
async fn code_login_session_records_its_device(h: &TestServer) {
    h.user_with(clef::admin::UserSpec {
        email: "otp@example.test".into(),
        ..clef::admin::UserSpec::default()
    })
    .await;
    let b = h.browser();
    let page = b.get("/login").await;
    let csrf = page.input("csrf").unwrap();
    let code_page = b
        .post_with(
            "/login/code",
            &[("csrf", &csrf), ("req", ""), ("email", "otp@example.test")],
            &[("user-agent", SAFARI)],
        )
        .await;
    assert_eq!(code_page.status, StatusCode::OK, "{}", code_page.body);
    let code = h.mail.last_to("otp@example.test").six_digit_code();
    let done = b
        .post_with(
            "/login/code/verify",
            &[("csrf", &csrf), ("attempt", &code_page.input("attempt").unwrap()), ("code", &code)],
            &[("user-agent", SAFARI)],
        )
        .await;
    assert!(done.status.is_success() || done.status.is_redirection(), "{}", done.body);
    let page = account(&b).await;
    assert_eq!(sessions(&page)[0].0, "Safari on iOS", "{}", page.body);
    assert!(
        page.body.contains("Your account has no password yet"),
        "passwordless: {}",
        page.body
    );
    assert!(!page.body.contains("name=\"current_password\""), "no current password asked");
    let set = post(&b, "/account/password", &[("new_password", NEW_PW)]).await;
    assert_eq!(set.location.as_deref(), Some("/account?done=password"), "{}", set.body);
    assert!(password_login_works(h, "otp@example.test", NEW_PW).await);
}

e2e!(
    code_login_session_records_its_device,
    sessions_list_device_ip_and_this_device,
    last_seen_moves_at_most_once_a_minute,
    change_password_with_wrong_then_right_current,
    current_password_guesses_hit_the_login_lock,
    change_email_by_code,
    change_email_code_is_bound_to_the_browser,
    change_email_to_a_taken_address_reveals_nothing,
    log_out_one_then_everywhere_else,
    another_users_session_handle_is_refused,
    signed_out_posts_go_to_login,
    stale_session_is_sent_to_reauthenticate,
);
