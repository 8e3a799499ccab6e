//! Two-factor login: TOTP enrolment through the pages (codes computed here with totp-rs from
//! the page's otpauth URI), replay protection, backup codes, the lock (also under parallel
//! guesses) and its mail, regenerate, disable, the re-authentication redirect, reset-2fa.

use std::process::{Command, Stdio};

use clef::auth::backup_codes;
use clef::auth::totp::{self, SecondFactor, Verdict};
use clef::store::{EventKind, LoginSession};
use reqwest::StatusCode;

use crate::e2e;
use crate::support::browser::{Page, html_unescape};
use crate::support::{Browser, TestServer};

const PW: &str = "correct horse battery";
const EMAIL: &str = "ana@example.test";

/// A user and a browser holding a session that authenticated `age` seconds ago, made the way
/// a login makes one (the session row and its cookie): these tests are about what follows.
async fn signed_in(h: &TestServer, email: &str, age: i64) -> (String, Browser) {
    let user_id = h.user(email, PW).await;
    let b = session_for(h, &user_id, age).await;
    (user_id, b)
}

async fn session_for(h: &TestServer, user_id: &str, age: i64) -> Browser {
    let b = h.browser();
    let id = clef::secret::random_token(32);
    let now = h.clock.now();
    let s = LoginSession {
        session_hash: clef::secret::sha256_b64(&id),
        user_id: user_id.to_owned(),
        auth_time: now - age,
        amr: vec!["pwd".into()],
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
    b
}

/// The text of the element with this id.
fn by_id(page: &Page, id: &str) -> String {
    let at = page
        .body
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id} in {}", page.body));
    let start = at + page.body[at..].find('>').unwrap() + 1;
    let end = start + page.body[start..].find('<').unwrap();
    html_unescape(&page.body[start..end])
}

/// An attribute of the element with this id.
fn attr_of(page: &Page, id: &str, attr: &str) -> String {
    let at = page.body.find(&format!("id=\"{id}\"")).unwrap_or_else(|| panic!("no #{id}"));
    let tag = &page.body[at..at + page.body[at..].find('>').unwrap()];
    let v = tag.find(&format!("{attr}=\"")).unwrap() + attr.len() + 2;
    html_unescape(&tag[v..v + tag[v..].find('"').unwrap()])
}

fn codes_on(page: &Page) -> Vec<String> {
    let at = page.body.find("id=\"backup-codes\"").expect("a list of codes");
    let list = &page.body[at..at + page.body[at..].find("</ul>").unwrap()];
    list.split("<code>")
        .skip(1)
        .map(|c| c.split('<').next().unwrap().to_owned())
        .collect()
}

struct Enrolled {
    totp: totp_rs::Totp,
    codes: Vec<String>,
    /// Unix time of the code that turned TOTP on.
    at: i64,
}

impl Enrolled {
    fn code(&self, at: i64) -> String {
        self.totp.generate(at as u64).to_string()
    }
}

/// Status page → enable → the enrolment page's otpauth URI → the first code → the codes page.
async fn enrol(h: &TestServer, b: &Browser) -> Enrolled {
    let status = b.get("/account/two-factor").await;
    assert_eq!(status.status, StatusCode::OK, "{}", status.body);
    assert!(status.body.contains("data-state=\"off\""));
    let page = b.submit(&status, &[]).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("<svg"), "an inline QR code");
    assert!(page.body.contains("autocomplete=\"one-time-code\" inputmode=\"numeric\""));
    let uri = by_id(&page, "otpauth-uri");
    assert!(uri.starts_with("otpauth://totp/clef:ana%40example.test?secret="), "{uri}");
    assert!(uri.ends_with("&issuer=clef"), "{uri}");
    let t = totp_rs::Totp::from_url(&uri).unwrap();
    let grouped = by_id(&page, "totp-secret");
    assert_eq!(grouped.replace(' ', ""), t.secret().to_base32(), "the typed form is the same key");
    assert_eq!(t.secret().as_ref().len(), 20, "160 bits");

    // Pending until a right code: a wrong one keeps the form, TOTP stays off.
    let wrong = b.submit(&page, &[("code", "000000")]).await;
    assert_eq!(wrong.status, StatusCode::OK);
    assert!(wrong.body.contains("role=\"alert\""), "{}", wrong.body);
    assert_eq!(by_id(&wrong, "otpauth-uri"), uri, "the same pending secret");
    let user = h.state.db.user_by_email(EMAIL).await.unwrap().unwrap();
    assert!(!h.state.db.totp_get(&user.user_id).await.unwrap().unwrap().enabled);

    let at = h.clock.now();
    let code = t.generate(at as u64).to_string();
    let done = b.submit(&wrong, &[("code", &code)]).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    let codes = codes_on(&done);
    assert_eq!(codes.len(), 8, "{}", done.body);
    let href = attr_of(&done, "backup-codes-download", "href");
    assert!(href.starts_with("data:text/plain;charset=utf-8,"), "{href}");
    assert!(href.contains(&codes[0]), "the download holds the codes");
    assert!(done.body.contains("download=\"backup-codes.txt\""));
    Enrolled { totp: t, codes, at }
}

async fn enrolment_through_the_pages(h: &TestServer) {
    let (user_id, b) = signed_in(h, EMAIL, 0).await;
    let e = enrol(h, &b).await;
    let cred = h.state.db.totp_get(&user_id).await.unwrap().unwrap();
    assert!(cred.enabled);
    assert!(!cred.sealed_secret.contains(&e.totp.secret().to_base32()), "sealed at rest");
    assert_eq!(cred.last_step, Some(e.at / 30), "the first code's step is spent");
    for c in &e.codes {
        assert_eq!(c.len(), 11, "{c}");
    }
    let status = b.get("/account/two-factor").await;
    assert!(status.body.contains("data-state=\"on\""));
    assert!(status.body.contains("data-count=\"8\""));
    let events = h.state.db.events_recent(&user_id, 10).await.unwrap();
    assert_eq!(events[0].kind, EventKind::TotpEnabled);
    assert_eq!(h.mail.last_to(EMAIL).subject, "Two-factor login is on");
    // A second enrolment cannot replace the working one.
    let csrf = status.input("csrf").unwrap();
    let again = b.post("/account/two-factor/enable", &[("csrf", &csrf)]).await;
    assert!(again.status.is_redirection(), "{}", again.body);
    let again = b.follow(again).await;
    assert!(again.body.contains("data-state=\"on\""));
    assert_eq!(
        h.state.db.totp_get(&user_id).await.unwrap().unwrap().sealed_secret,
        cred.sealed_secret
    );
}

async fn a_replayed_step_is_refused(h: &TestServer) {
    let (user_id, b) = signed_in(h, EMAIL, 0).await;
    let e = enrol(h, &b).await;
    let (db, keys, now) = (&h.state.db, &h.state.hmac_key, h.clock.now());
    // The enrolment code's step was accepted: the same code cannot log in.
    let first = e.code(e.at);
    assert_eq!(
        totp::check_login(db, keys, &user_id, &first, now).await.unwrap(),
        Verdict::Wrong { locked: false }
    );
    // The next step's code passes once, then not again, not even in parallel.
    let next = e.code(now + 30);
    let (a, b2) = tokio::join!(
        totp::check_login(db, keys, &user_id, &next, now),
        totp::check_login(db, keys, &user_id, &next, now)
    );
    let mut both = [a.unwrap(), b2.unwrap()];
    both.sort_by_key(|v| format!("{v:?}"));
    assert_eq!(both, [Verdict::Passed, Verdict::Wrong { locked: false }]);
    assert_eq!(
        totp::check_login(db, keys, &user_id, &next, now).await.unwrap(),
        Verdict::Wrong { locked: false }
    );
    // A user without TOTP is not asked, and nothing is counted.
    let other = h.user("bob@example.test", PW).await;
    assert_eq!(
        totp::check_login(db, keys, &other, "123456", now).await.unwrap(),
        Verdict::NotEnrolled
    );
}

async fn a_backup_code_works_once(h: &TestServer) {
    let (user_id, b) = signed_in(h, EMAIL, 0).await;
    let e = enrol(h, &b).await;
    let (db, keys, now) = (&h.state.db, &h.state.hmac_key, h.clock.now());
    let typed = e.codes[3].to_uppercase().replace('-', " ");
    assert_eq!(
        backup_codes::check_login(db, keys, &user_id, &typed, now).await.unwrap(),
        Verdict::Passed
    );
    assert_eq!(
        backup_codes::check_login(db, keys, &user_id, &e.codes[3], now).await.unwrap(),
        Verdict::Wrong { locked: false },
        "spent"
    );
    assert_eq!(db.backup_codes_count(&user_id).await.unwrap(), 7);
    // Another user's code is no code of this user.
    let bob = h.user("bob@example.test", PW).await;
    assert_eq!(
        backup_codes::check_login(db, keys, &bob, &e.codes[0], now).await.unwrap(),
        Verdict::Wrong { locked: false }
    );
    let status = b.get("/account/two-factor").await;
    assert!(status.body.contains("data-count=\"7\""), "{}", status.body);
    assert!(
        db.events_recent(&user_id, 10)
            .await
            .unwrap()
            .iter()
            .any(|e| e.kind == EventKind::BackupCodeUsed)
    );
}

async fn five_wrong_codes_lock_and_mail_the_owner(h: &TestServer) {
    let (user_id, b) = signed_in(h, EMAIL, 0).await;
    let e = enrol(h, &b).await;
    let now = h.clock.now();
    let sent = h.mail.to(EMAIL).len();
    for i in 1..=5 {
        // TOTP and backup codes share one count.
        let factor = if i % 2 == 0 { SecondFactor::BackupCode } else { SecondFactor::Totp };
        let v = totp::check_login_notify(&h.state, &user_id, factor, "999999", "en", now)
            .await
            .unwrap();
        assert_eq!(v, Verdict::Wrong { locked: i == 5 }, "try {i}");
    }
    let right = e.code(now + 30);
    let until = now + 15 * 60;
    assert_eq!(
        totp::check_login_notify(&h.state, &user_id, SecondFactor::Totp, &right, "en", now)
            .await
            .unwrap(),
        Verdict::Locked { until },
        "locked: even the right code is not looked at"
    );
    assert_eq!(
        backup_codes::check_login(&h.state.db, &h.state.hmac_key, &user_id, &e.codes[0], now)
            .await
            .unwrap(),
        Verdict::Locked { until }
    );
    let mails = h.mail.to(EMAIL);
    assert_eq!(mails.len(), sent + 1, "one mail for one lock");
    assert_eq!(mails.last().unwrap().subject, "Two-factor login paused on your account");
    assert!(mails.last().unwrap().text.contains("/account/two-factor"));
    let status = b.get("/account/two-factor").await;
    assert!(status.body.contains("role=\"alert\""), "the page says it is paused");
    assert!(
        h.state
            .db
            .events_recent(&user_id, 10)
            .await
            .unwrap()
            .iter()
            .any(|e| e.kind == EventKind::SecondFactorLocked)
    );
    // After 15 minutes the right code passes, and the count starts again.
    h.clock.advance(15 * 60);
    let later = h.clock.now();
    let code = e.code(later);
    assert_eq!(
        totp::check_login(&h.state.db, &h.state.hmac_key, &user_id, &code, later)
            .await
            .unwrap(),
        Verdict::Passed
    );
    for _ in 0..4 {
        assert_eq!(
            totp::check_login(&h.state.db, &h.state.hmac_key, &user_id, "999999", later)
                .await
                .unwrap(),
            Verdict::Wrong { locked: false }
        );
    }
}

/// Twenty wrong codes at once: exactly five are checked, the fifth locks, fifteen are refused
/// unread, and one mail goes out.
async fn parallel_guesses_never_exceed_five(h: &TestServer) {
    let (user_id, b) = signed_in(h, EMAIL, 0).await;
    enrol(h, &b).await;
    let now = h.clock.now();
    let sent = h.mail.to(EMAIL).len();
    let mut tasks = Vec::new();
    for i in 0..20 {
        let (state, user_id) = (h.state.clone(), user_id.clone());
        let guess = format!("{:06}", 100_000 + i);
        tasks.push(tokio::spawn(async move {
            totp::check_login_notify(&state, &user_id, SecondFactor::Totp, &guess, "en", now)
                .await
                .unwrap()
        }));
    }
    let mut verdicts = Vec::new();
    for t in tasks {
        verdicts.push(t.await.unwrap());
    }
    let wrong = verdicts.iter().filter(|v| matches!(v, Verdict::Wrong { .. })).count();
    let locking = verdicts.iter().filter(|v| **v == Verdict::Wrong { locked: true }).count();
    let locked = verdicts.iter().filter(|v| matches!(v, Verdict::Locked { .. })).count();
    assert_eq!((wrong, locking, locked), (5, 1, 15), "{verdicts:?}");
    assert_eq!(h.mail.to(EMAIL).len(), sent + 1);
}

async fn regenerate_and_disable(h: &TestServer) {
    let (user_id, b) = signed_in(h, EMAIL, 0).await;
    let e = enrol(h, &b).await;
    let (db, keys, now) = (&h.state.db, &h.state.hmac_key, h.clock.now());
    let status = b.get("/account/two-factor").await;
    let csrf = status.input("csrf").unwrap();
    let fresh = b.post("/account/two-factor/backup-codes", &[("csrf", &csrf)]).await;
    assert_eq!(fresh.status, StatusCode::OK, "{}", fresh.body);
    let codes = codes_on(&fresh);
    assert_eq!(codes.len(), 8);
    assert!(codes.iter().all(|c| !e.codes.contains(c)));
    assert_eq!(
        backup_codes::check_login(db, keys, &user_id, &e.codes[0], now).await.unwrap(),
        Verdict::Wrong { locked: false },
        "old codes are void"
    );
    assert_eq!(
        backup_codes::check_login(db, keys, &user_id, &codes[0], now).await.unwrap(),
        Verdict::Passed
    );
    assert!(h.mail.to(EMAIL).iter().any(|m| m.subject == "New backup codes for your account"));

    // Without a CSRF token nothing happens.
    let forged = b.post("/account/two-factor/disable", &[]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert!(db.totp_get(&user_id).await.unwrap().is_some());

    let off = b.post("/account/two-factor/disable", &[("csrf", &csrf)]).await;
    assert_eq!(off.assert_redirect_to("/account/two-factor"), "/account/two-factor?done=disabled");
    let page = b.follow(off).await;
    assert!(page.body.contains("data-state=\"off\""));
    assert!(page.body.contains("role=\"status\""));
    assert!(db.totp_get(&user_id).await.unwrap().is_none());
    assert_eq!(db.backup_codes_count(&user_id).await.unwrap(), 0);
    assert_eq!(
        totp::check_login(db, keys, &user_id, &e.code(now + 30), now).await.unwrap(),
        Verdict::NotEnrolled
    );
    assert!(h.mail.to(EMAIL).iter().any(|m| m.subject == "Two-factor login is off"));
    let kinds: Vec<EventKind> = db.events_recent(&user_id, 10).await.unwrap().iter().map(|e| e.kind).collect();
    for k in [EventKind::TotpDisabled, EventKind::BackupCodesRegenerated, EventKind::TotpEnabled] {
        assert!(kinds.contains(&k), "{k:?} in {kinds:?}");
    }
}

/// Disable and regenerate with a session older than CLEF_REAUTH_AFTER (300 s): sent to
/// re-authenticate first, and nothing changes.
async fn an_old_session_is_sent_to_reauthenticate(h: &TestServer) {
    let (user_id, fresh) = signed_in(h, EMAIL, 0).await;
    enrol(h, &fresh).await;
    let old = session_for(h, &user_id, 301).await;
    let status = old.get("/account/two-factor").await;
    assert!(status.body.contains("data-state=\"on\""), "reading needs no recent login");
    let csrf = status.input("csrf").unwrap();
    let r = old.post("/account/two-factor/disable", &[("csrf", &csrf)]).await;
    assert_eq!(r.assert_redirect_to("/account/reauth"), "/account/reauth?then=disable_totp");
    let r = old.post("/account/two-factor/backup-codes", &[("csrf", &csrf)]).await;
    assert_eq!(
        r.assert_redirect_to("/account/reauth"),
        "/account/reauth?then=regenerate_backup_codes"
    );
    assert!(h.state.db.totp_get(&user_id).await.unwrap().unwrap().enabled);
    assert_eq!(h.state.db.backup_codes_count(&user_id).await.unwrap(), 8);
    // Signed out: the pages send to the login page.
    let anon = h.browser();
    anon.get("/account/two-factor").await.assert_redirect_to("/login");

    // Turning it on is sensitive too: an old session of an account without TOTP is sent to
    // re-authenticate before any secret is made.
    let (other_id, _) = signed_in(h, "enable@example.test", 0).await;
    let old = session_for(h, &other_id, 301).await;
    let page = old.get("/account/two-factor").await;
    let csrf = page.input("csrf").unwrap();
    let r = old.post("/account/two-factor/enable", &[("csrf", &csrf)]).await;
    assert_eq!(r.assert_redirect_to("/account/reauth"), "/account/reauth?then=enable_totp");
    assert!(h.state.db.totp_get(&other_id).await.unwrap().is_none(), "no secret was started");
}

fn clef_cli(h: &TestServer, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_clef"))
        .args(args)
        .current_dir(h.dir())
        .env("CLEF_DATABASE_URL", &h.state.config.database_url)
        .env("CLEF_KEYS_DIR", &h.state.config.keys_dir)
        .env("CLEF_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

async fn operator_reset_2fa(h: &TestServer) {
    let (user_id, b) = signed_in(h, EMAIL, 0).await;
    let e = enrol(h, &b).await;
    for _ in 0..5 {
        totp::check_login(&h.state.db, &h.state.hmac_key, &user_id, "999999", h.clock.now())
            .await
            .unwrap();
    }
    let (ok, stdout, stderr) = clef_cli(h, &["users", "reset-2fa", "ANA@example.test"]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("ana@example.test"), "{stdout}");
    assert!(stdout.contains("8 backup codes"), "{stdout}");
    assert!(!stdout.contains(&e.codes[0]) && !stderr.contains(&e.codes[0]));
    assert!(stderr.contains("second factor reset"), "logged at warn: {stderr}");
    assert!(h.state.db.totp_get(&user_id).await.unwrap().is_none());
    assert_eq!(h.state.db.backup_codes_count(&user_id).await.unwrap(), 0);
    assert_eq!(h.state.db.second_factor_locked_until(&user_id, h.clock.now()).await.unwrap(), None);
    // Events of one second come in no set order: find it by kind.
    let events = h.state.db.events_recent(&user_id, 10).await.unwrap();
    let reset = events
        .iter()
        .find(|e| e.kind == EventKind::SecondFactorReset)
        .expect("an audit event");
    assert!(reset.ip.is_none(), "an operator action, not a request");
    assert!(reset.detail.as_deref().unwrap().contains("8 backup codes"), "{reset:?}");
    // The user can enrol again.
    let status = b.get("/account/two-factor").await;
    assert!(status.body.contains("data-state=\"off\""));

    let (ok, _, stderr) = clef_cli(h, &["users", "reset-2fa", "nobody@example.test"]);
    assert!(!ok);
    assert!(stderr.contains("no user with the email nobody@example.test"), "{stderr}");
}

/// `clef keys rotate-secret`, twice: the TOTP secret is sealed again after the first, so the
/// second, which drops the first key, loses nothing; backup codes hold through one rotation.
async fn secret_rotation_keeps_totp_working(h: &TestServer) {
    let (user_id, b) = signed_in(h, EMAIL, 0).await;
    let e = enrol(h, &b).await;
    let (db, keys) = (&h.state.db, &h.state.hmac_key);
    let dir = h.state.config.keys_dir.clone();
    let before = db.totp_get(&user_id).await.unwrap().unwrap().sealed_secret;
    clef::secret_key::SecretKeys::rotate(&dir).unwrap();
    assert!(keys.reload().unwrap());
    // The housekeeping task does the same on its next tick; whichever runs first wins.
    totp::reseal_all(db, keys).await.unwrap();
    let after = db.totp_get(&user_id).await.unwrap().unwrap().sealed_secret;
    assert_ne!(after, before, "sealed again under the new key");
    assert_eq!(
        backup_codes::check_login(db, keys, &user_id, &e.codes[0], h.clock.now())
            .await
            .unwrap(),
        Verdict::Passed
    );
    clef::secret_key::SecretKeys::rotate(&dir).unwrap();
    assert!(keys.reload().unwrap());
    let now = h.clock.now();
    assert_eq!(
        totp::check_login(db, keys, &user_id, &e.code(now + 30), now).await.unwrap(),
        Verdict::Passed
    );
}

e2e!(
    secret_rotation_keeps_totp_working,
    enrolment_through_the_pages,
    a_replayed_step_is_refused,
    a_backup_code_works_once,
    five_wrong_codes_lock_and_mail_the_owner,
    parallel_guesses_never_exceed_five,
    regenerate_and_disable,
    an_old_session_is_sent_to_reauthenticate,
    operator_reset_2fa,
);
