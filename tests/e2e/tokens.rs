//! One decision behind every code, and grants that are atomic and race-free (issues 6 and 7).

use clef::admin::ClientSpec;
use clef::keys::Alg;

use crate::e2e;
use crate::support::browser::{Browser, Page};
use crate::support::rp::Rp;
use crate::support::{Backend, TestServer};

const PW: &str = "correct horse battery";

async fn rp_with(h: &TestServer, name: &str, require_2fa: bool, skip_consent: bool) -> Rp {
    let created = h
        .client(ClientSpec {
            name: name.into(),
            redirect_uris: vec![format!("http://127.0.0.1/{name}/cb")],
            post_logout_redirect_uris: vec![format!("http://127.0.0.1/{name}/bye")],
            require_2fa,
            skip_consent,
            ..ClientSpec::default()
        })
        .await;
    Rp::discover(&h.issuer, &created, &format!("http://127.0.0.1/{name}/cb")).await
}

/// Logs in at /login with the password alone, outside any authorization request.
async fn sign_in(b: &Browser, email: &str) {
    let login = b.get("/login").await;
    let done = b.submit(&login, &[("email", email), ("password", PW)]).await;
    done.assert_redirect_to("/account");
}

/// Starts an authorization request that the server sends to the login page; returns its id.
async fn pending_login(b: &Browser, url: &str) -> String {
    let page = b.get(url).await;
    let loc = page.assert_redirect_to("/login?req=").to_owned();
    loc.trim_start_matches("/login?req=").to_owned()
}

/// Goes straight to the consent page and answers it, skipping the login the request needs.
async fn consent_directly(b: &Browser, req: &str) -> (Page, Page) {
    let got = b.get(&format!("/consent?req={req}")).await;
    // The CSRF token of this browser, from any form page.
    let login = b.get(&format!("/login?req={req}")).await;
    let csrf = login.input("csrf").unwrap();
    let posted = b
        .post("/consent", &[("csrf", csrf.as_str()), ("req", req), ("decision", "allow")])
        .await;
    (got, posted)
}

fn assert_sent_to_login(p: &Page, req: &str) {
    p.assert_redirect_to(&format!("/login?req={req}"));
}

/// Issue 7: a password-only session cannot take a code for a client that demands two factors
/// by answering the consent page itself.
async fn consent_cannot_skip_a_demanded_second_factor(h: &TestServer) {
    h.user("c2fa@example.test", PW).await;
    let rp = rp_with(h, "c2fa", true, false).await;
    let b = h.browser();
    sign_in(&b, "c2fa@example.test").await;
    let req = pending_login(&b, &rp.start(&["email"]).url).await;
    let (got, posted) = consent_directly(&b, &req).await;
    assert_sent_to_login(&got, &req);
    assert_sent_to_login(&posted, &req);
    // The request still waits for its login.
    let login = b.get(&format!("/login?req={req}")).await;
    assert_eq!(login.status, 200, "{}", login.body);
    assert_eq!(login.input("req").as_deref(), Some(req.as_str()));
}

/// Issue 7: prompt=login cannot be bypassed through the consent page.
async fn consent_cannot_skip_prompt_login(h: &TestServer) {
    h.user("cpl@example.test", PW).await;
    let rp = rp_with(h, "cpl", false, false).await;
    let b = h.browser();
    sign_in(&b, "cpl@example.test").await;
    let req = pending_login(&b, &rp.start_with(&[], &[("prompt", "login")]).url).await;
    let (got, posted) = consent_directly(&b, &req).await;
    assert_sent_to_login(&got, &req);
    assert_sent_to_login(&posted, &req);
}

/// Issue 7: a session older than max_age cannot get a code through the consent page, and
/// logging in for the request then gets one with the new auth_time.
async fn consent_cannot_skip_max_age(h: &TestServer) {
    h.user("cma@example.test", PW).await;
    let rp = rp_with(h, "cma", false, false).await;
    let b = h.browser();
    sign_in(&b, "cma@example.test").await;
    h.clock.advance(3);
    let start = rp.start_with(&[], &[("max_age", "1")]);
    let req = pending_login(&b, &start.url).await;
    let (got, posted) = consent_directly(&b, &req).await;
    assert_sent_to_login(&got, &req);
    assert_sent_to_login(&posted, &req);

    let login = b.get(&format!("/login?req={req}")).await;
    // The test clock follows the wall clock, so a busy machine may cross a second boundary
    // between the login and the check: the old session is 3 s older than `before`.
    let before = h.clock.now();
    let consent = b
        .follow(b.submit(&login, &[("email", "cma@example.test"), ("password", PW)]).await)
        .await;
    let back = b.submit(&consent, &[("decision", "allow")]).await;
    back.assert_redirect_to(&rp.redirect_uri);
    let tokens = rp.exchange(&back.location_param("code").unwrap(), start.verifier).await;
    let auth_time = rp.id_claims(&tokens, &start.nonce).auth_time().unwrap().timestamp();
    assert!(
        (before..=h.clock.now()).contains(&auth_time),
        "the new login's time, not the old session's: {auth_time} vs {before}"
    );
}

/// A malformed answer to the consent page is refused and leaves the request answerable.
async fn malformed_consent_keeps_the_request(h: &TestServer) {
    h.user("cbad@example.test", PW).await;
    let rp = rp_with(h, "cbad", false, false).await;
    let b = h.browser();
    let login = b.follow(b.get(&rp.start(&[]).url).await).await;
    let consent = b
        .follow(b.submit(&login, &[("email", "cbad@example.test"), ("password", PW)]).await)
        .await;
    assert!(consent.body.contains("value=\"allow\""), "{}", consent.body);
    for bad in [&[("decision", "maybe")][..], &[][..]] {
        let refused = b.submit(&consent, bad).await;
        assert_eq!(refused.status, 400, "{bad:?}: {}", refused.body);
    }
    let back = b.submit(&consent, &[("decision", "allow")]).await;
    back.assert_redirect_to(&rp.redirect_uri);
    assert!(back.location_param("code").is_some());
    // Answered once: the same form cannot be answered again.
    let again = b.submit(&consent, &[("decision", "allow")]).await;
    assert_eq!(again.status, 400);
}

/// Issue 6: `acr_values` listing both levels is met by a password login, with no second step,
/// and by an existing one-factor session.
async fn acr_values_accept_any_listed_level(h: &TestServer) {
    h.user("acr@example.test", PW).await;
    let rp = rp_with(h, "acr", false, true).await;
    let b = h.browser();
    let both = [("acr_values", "urn:clef:acr:2fa urn:clef:acr:1fa")];
    let start = rp.start_with(&[], &both);
    let back = b.authorize(&start.url, "acr@example.test", PW).await;
    let tokens = rp.exchange(&back.location_param("code").unwrap(), start.verifier).await;
    let claims = rp.id_claims(&tokens, &start.nonce);
    assert_eq!(claims.auth_context_ref().unwrap().as_str(), "urn:clef:acr:1fa");

    let start = rp.start_with(&[], &both);
    let back = b.follow(b.get(&start.url).await).await;
    back.assert_redirect_to(&rp.redirect_uri);
    assert!(back.location_param("code").is_some(), "signed-in user is not stopped");
    assert_eq!(h.mail.count(), 0, "no code was mailed");

    // Asking for the second factor alone still asks for it.
    let start = rp.start_with(&[], &[("acr_values", "urn:clef:acr:2fa")]);
    let page = b.follow(b.get(&start.url).await).await;
    assert!(page.body.contains("current-password"), "{}", page.body);
}

/// An ID token for the client, and the same claims signed as an access token and a logout token.
fn hints(h: &TestServer, client_id: &str, sub: &str) -> [(String, bool); 3] {
    let now = h.clock.now();
    let claims = serde_json::json!({
        "iss": h.issuer, "sub": sub, "aud": client_id, "iat": now, "exp": now + 300,
    });
    let keys = h.state.keys.get();
    let sign = |typ: &str| keys.sign(Alg::RS256, typ, &claims).unwrap();
    [(sign("JWT"), true), (sign("at+jwt"), false), (sign("logout+jwt"), false)]
}

/// Issue 7 item 18: an `id_token_hint` must be an ID token, not another JWT we signed.
async fn id_token_hint_must_be_an_id_token(h: &TestServer) {
    let sub = h.user("hint@example.test", PW).await;
    let rp = rp_with(h, "hint", false, true).await;
    let b = h.browser();
    sign_in(&b, "hint@example.test").await;
    for (hint, ok) in hints(h, &rp.client_id, &sub) {
        let start = rp.start_with(&[], &[("id_token_hint", hint.as_str())]);
        let back = b.get(&start.url).await;
        back.assert_redirect_to(&rp.redirect_uri);
        match ok {
            true => assert!(back.location_param("code").is_some(), "{:?}", back.location),
            false => assert_eq!(back.location_param("error").as_deref(), Some("invalid_request")),
        }
    }
    for (hint, ok) in hints(h, &rp.client_id, &sub) {
        let url = format!("/logout?id_token_hint={hint}&post_logout_redirect_uri=http://127.0.0.1/hint/bye");
        let page = b.get(&url).await;
        assert_eq!(page.status == 400, !ok, "{ok}: {} {}", page.status, page.body);
    }
}

/// Runs statements on the test's database from outside the server.
async fn exec(h: &TestServer, sqls: &[&str]) {
    use sqlx::Connection;
    let url = &h.state.config.database_url;
    match h.backend {
        Backend::Sqlite => {
            let mut c = sqlx::SqliteConnection::connect(url).await.unwrap();
            for sql in sqls {
                sqlx::query(sqlx::AssertSqlSafe(*sql)).execute(&mut c).await.unwrap();
            }
        }
        Backend::Postgres => {
            let mut c = sqlx::PgConnection::connect(url).await.unwrap();
            for sql in sqls {
                sqlx::query(sqlx::AssertSqlSafe(*sql)).execute(&mut c).await.unwrap();
            }
        }
    }
}

async fn count(h: &TestServer, sql: &str) -> i64 {
    use sqlx::Connection;
    let url = &h.state.config.database_url;
    match h.backend {
        Backend::Sqlite => {
            let mut c = sqlx::SqliteConnection::connect(url).await.unwrap();
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(&mut c).await.unwrap()
        }
        Backend::Postgres => {
            let mut c = sqlx::PgConnection::connect(url).await.unwrap();
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(&mut c).await.unwrap()
        }
    }
}

/// Makes every refresh-token insert fail, as a dying database would: after the code or the old
/// refresh token is taken and the access token stored, before the transaction could commit.
async fn break_refresh_inserts(h: &TestServer) {
    match h.backend {
        Backend::Sqlite => {
            exec(h, &["create trigger fail_refresh before insert on refresh_tokens begin select raise(abort, 'injected failure'); end"]).await
        }
        Backend::Postgres => {
            exec(
                h,
                &[
                    "create or replace function fail_refresh() returns trigger language plpgsql as $$ begin raise exception 'injected failure'; end $$",
                    "create trigger fail_refresh before insert on refresh_tokens for each row execute function fail_refresh()",
                ],
            )
            .await
        }
    }
}

async fn mend_refresh_inserts(h: &TestServer) {
    match h.backend {
        Backend::Sqlite => exec(h, &["drop trigger fail_refresh"]).await,
        Backend::Postgres => exec(h, &["drop trigger fail_refresh on refresh_tokens"]).await,
    }
}

/// A signed-in browser and a first-party client, ready to get codes without any page.
async fn signed_in(h: &TestServer, name: &str) -> (Rp, Browser) {
    let email = format!("{name}@example.test");
    h.user(&email, PW).await;
    let rp = rp_with(h, name, false, true).await;
    let b = h.browser();
    sign_in(&b, &email).await;
    (rp, b)
}

/// A code for the signed-in browser, with its PKCE verifier.
async fn code(rp: &Rp, b: &Browser) -> (String, String) {
    let start = rp.start(&["email"]);
    let back = b.get(&start.url).await;
    back.assert_redirect_to(&rp.redirect_uri);
    (back.location_param("code").unwrap(), start.verifier.secret().clone())
}

fn basic(rp: &Rp) -> Option<(&str, &str)> {
    Some((rp.client_id.as_str(), rp.client_secret.as_deref().unwrap()))
}

async fn redeem(h: &TestServer, rp: &Rp, code: &str, verifier: &str) -> (u16, serde_json::Value) {
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", rp.redirect_uri.as_str()),
        ("code_verifier", verifier),
    ];
    let (status, _, body) = rp.token_raw(&h.issuer, &form, basic(rp)).await;
    (status, body)
}

async fn refresh_at(issuer: &str, rp: &Rp, token: &str) -> (u16, serde_json::Value) {
    let form = [("grant_type", "refresh_token"), ("refresh_token", token)];
    let (status, _, body) = rp.token_raw(issuer, &form, basic(rp)).await;
    (status, body)
}

async fn userinfo_status(h: &TestServer, rp: &Rp, at: &str) -> u16 {
    rp.http
        .get(h.url("/userinfo"))
        .bearer_auth(at)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn str_of(v: &serde_json::Value, k: &str) -> String {
    v[k].as_str().unwrap_or_else(|| panic!("{k} in {v}")).to_owned()
}

/// Issue 7 item 4: a failure between taking the code and storing its tokens leaves the code
/// unused and nothing half-written; the retry gets the tokens. The same for a refresh.
async fn failed_issuance_leaves_the_grant_usable(h: &TestServer) {
    let (rp, b) = signed_in(h, "atomic").await;
    let (code, verifier) = code(&rp, &b).await;
    break_refresh_inserts(h).await;
    let (status, body) = redeem(h, &rp, &code, &verifier).await;
    assert_eq!((status, body["error"].as_str()), (500, Some("server_error")), "{body}");
    assert_eq!(
        count(h, "select count(*) from auth_codes where used = 0").await,
        1,
        "the code is still unused"
    );
    assert_eq!(
        count(h, "select count(*) from access_tokens").await,
        0,
        "no access token was left behind"
    );
    assert_eq!(count(h, "select count(*) from grants").await, 0);
    mend_refresh_inserts(h).await;
    let (status, tokens) = redeem(h, &rp, &code, &verifier).await;
    assert_eq!(status, 200, "the retry works: {tokens}");
    let at = str_of(&tokens, "access_token");
    assert_eq!(userinfo_status(h, &rp, &at).await, 200);

    let r1 = str_of(&tokens, "refresh_token");
    break_refresh_inserts(h).await;
    let (status, body) = refresh_at(&h.issuer, &rp, &r1).await;
    assert_eq!((status, body["error"].as_str()), (500, Some("server_error")), "{body}");
    assert_eq!(count(h, "select count(*) from access_tokens").await, 1);
    assert_eq!(count(h, "select count(*) from refresh_tokens where used = 0").await, 1);
    mend_refresh_inserts(h).await;
    let (status, next) = refresh_at(&h.issuer, &rp, &r1).await;
    assert_eq!(status, 200, "the refresh token was not spent: {next}");
    assert_eq!(userinfo_status(h, &rp, &at).await, 200, "and the grant was not revoked");
    let (status, _) = refresh_at(&h.issuer, &rp, &str_of(&next, "refresh_token")).await;
    assert_eq!(status, 200);
}

/// After a reuse, no token of the family works: the presented ones, the winner's successor,
/// and every access token of the grant.
async fn assert_family_dead(h: &TestServer, rp: &Rp, refresh_tokens: &[String], access_tokens: &[String], trial: usize) {
    for rt in refresh_tokens {
        let (status, body) = refresh_at(&h.issuer, rp, rt).await;
        assert_eq!(status, 400, "trial {trial}: a refresh token still works: {body}");
    }
    for at in access_tokens {
        assert_eq!(userinfo_status(h, rp, at).await, 401, "trial {trial}: an access token still works");
    }
}

/// Issue 7 item 3: two concurrent refreshes of one token, one on each of two instances
/// sharing the database, 40 times: one wins, and afterwards the winner's successor is dead too.
/// With the refresh grace off: within it, the loser gets the same successor (grants.rs).
async fn refresh_race_two_way_across_instances(h: &TestServer) {
    let h1 = TestServer::start_with(h.backend, |raw| raw.refresh_grace = Some(0)).await;
    let url = h1.state.config.database_url.clone();
    let graceless = |raw: &mut clef::config::RawConfig| {
        raw.database_url = Some(url.clone());
        raw.refresh_grace = Some(0);
    };
    let h2 = TestServer::start_with(h.backend, graceless).await;
    let h = &h1;
    let (rp, b) = signed_in(h, "race2").await;
    for trial in 0..40 {
        let (code, verifier) = code(&rp, &b).await;
        let (status, tokens) = redeem(h, &rp, &code, &verifier).await;
        assert_eq!(status, 200, "{tokens}");
        let r1 = str_of(&tokens, "refresh_token");
        let (x, y) = tokio::join!(refresh_at(&h.issuer, &rp, &r1), refresh_at(&h2.issuer, &rp, &r1));
        let winners: Vec<&serde_json::Value> = [&x, &y].into_iter().filter(|r| r.0 == 200).map(|r| &r.1).collect();
        assert_eq!(winners.len(), 1, "trial {trial}: {x:?} / {y:?}");
        let loser = if x.0 == 200 { &y } else { &x };
        assert_eq!((loser.0, loser.1["error"].as_str()), (400, Some("invalid_grant")), "trial {trial}");
        let refresh = vec![r1, str_of(winners[0], "refresh_token")];
        let access = vec![str_of(&tokens, "access_token"), str_of(winners[0], "access_token")];
        assert_family_dead(h, &rp, &refresh, &access, trial).await;
    }
    h2.finish().await;
    h1.finish().await;
}

/// Issue 7 item 3, many-way: 100 concurrent refreshes of one token; one wins, all die.
/// With the refresh grace off (grants.rs has the same race with it on).
async fn refresh_race_hundred_way(h: &TestServer) {
    let graceless = TestServer::start_with(h.backend, |raw| raw.refresh_grace = Some(0)).await;
    refresh_race_hundred_way_graceless(&graceless).await;
    graceless.finish().await;
}

async fn refresh_race_hundred_way_graceless(h: &TestServer) {
    let (rp, b) = signed_in(h, "race100").await;
    let (code, verifier) = code(&rp, &b).await;
    let (status, tokens) = redeem(h, &rp, &code, &verifier).await;
    assert_eq!(status, 200, "{tokens}");
    let r1 = str_of(&tokens, "refresh_token");
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..100 {
        let (http, url) = (rp.http.clone(), h.url("/token"));
        let (id, secret, token) = (rp.client_id.clone(), rp.client_secret.clone().unwrap(), r1.clone());
        set.spawn(async move {
            let resp = http
                .post(url)
                .basic_auth(id, Some(secret))
                .form(&[("grant_type", "refresh_token"), ("refresh_token", token.as_str())])
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<serde_json::Value>().await.unwrap())
        });
    }
    let results = tokio::time::timeout(std::time::Duration::from_secs(120), set.join_all())
        .await
        .expect("100 refreshes finish in time");
    let winners: Vec<&serde_json::Value> = results.iter().filter(|r| r.0 == 200).map(|r| &r.1).collect();
    assert_eq!(winners.len(), 1, "{:?}", results.iter().map(|r| r.0).collect::<Vec<_>>());
    assert!(results.iter().all(|r| r.0 == 200 || r.1["error"] == "invalid_grant"), "{results:?}");
    let refresh = vec![r1, str_of(winners[0], "refresh_token")];
    let access = vec![str_of(&tokens, "access_token"), str_of(winners[0], "access_token")];
    assert_family_dead(h, &rp, &refresh, &access, 0).await;
}

async fn introspect(h: &TestServer, rp: &Rp, token: &str) -> serde_json::Value {
    rp.http
        .post(h.url("/introspect"))
        .basic_auth(&rp.client_id, rp.client_secret.as_deref())
        .form(&[("token", token)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Issue 7 item 12: introspection answers only the token's own client, and with no email.
async fn introspection_is_for_the_tokens_own_client(h: &TestServer) {
    let (rp, b) = signed_in(h, "owner").await;
    let other = rp_with(h, "nosy", false, true).await;
    let (code, verifier) = code(&rp, &b).await;
    let (_, tokens) = redeem(h, &rp, &code, &verifier).await;
    let (at, rt) = (str_of(&tokens, "access_token"), str_of(&tokens, "refresh_token"));

    let mine = introspect(h, &rp, &at).await;
    let mut keys: Vec<&str> = mine.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["active", "aud", "client_id", "exp", "iat", "iss", "scope", "sub", "token_type"]
    );
    assert_eq!(
        (&mine["active"], &mine["client_id"]),
        (&serde_json::json!(true), &serde_json::json!(rp.client_id))
    );
    assert!(!mine.to_string().contains("owner@example.test"), "no email: {mine}");
    let mine = introspect(h, &rp, &rt).await;
    assert_eq!(mine["active"], true);
    assert!(mine.get("username").is_none());

    for token in [&at, &rt] {
        assert_eq!(introspect(h, &other, token).await, serde_json::json!({"active": false}));
    }
}

e2e!(
    introspection_is_for_the_tokens_own_client,
    failed_issuance_leaves_the_grant_usable,
    refresh_race_two_way_across_instances,
    refresh_race_hundred_way,
    consent_cannot_skip_a_demanded_second_factor,
    consent_cannot_skip_prompt_login,
    consent_cannot_skip_max_age,
    malformed_consent_keeps_the_request,
    acr_values_accept_any_listed_level,
    id_token_hint_must_be_an_id_token,
);
