//! Issue 10, grants: client_credentials (RFC 6749 §4.4, RFC 9068), resource indicators
//! (RFC 8707), the refresh grace, and ES256 tokens as a client setting.

use clef::admin::{ClientSpec, CreatedClient};
use openidconnect::core::{CoreJsonWebKeySet, CoreJwsSigningAlgorithm};
use openidconnect::{JsonWebKey, OAuth2TokenResponse, TokenResponse};
use serde_json::{Value, json};

use crate::e2e;
use crate::support::browser::Browser;
use crate::support::rp::Rp;
use crate::support::{Backend, TestServer};

const PW: &str = "correct horse battery";
const API_A: &str = "https://api-a.example/";
const API_B: &str = "https://api-b.example/v2";

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// A service client: client_credentials only, no redirect URI.
async fn service(h: &TestServer, scopes: &[&str], resources: &[&str], token_alg: Option<&str>) -> CreatedClient {
    h.client(ClientSpec {
        name: "svc".into(),
        grant_types: vec!["client_credentials".into()],
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        resources: resources.iter().map(|s| (*s).to_owned()).collect(),
        token_alg: token_alg.map(str::to_owned),
        ..ClientSpec::default()
    })
    .await
}

/// A form POST to an endpoint with Basic client authentication.
async fn post(h: &TestServer, path: &str, c: &CreatedClient, form: &[(&str, &str)]) -> (u16, Value) {
    let mut r = http().post(h.url(path)).form(form);
    r = match &c.client_secret {
        Some(s) => r.basic_auth(&c.client_id, Some(s)),
        None => r,
    };
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn cc(h: &TestServer, c: &CreatedClient, extra: &[(&str, &str)]) -> (u16, Value) {
    let mut form = vec![("grant_type", "client_credentials")];
    form.extend_from_slice(extra);
    post(h, "/token", c, &form).await
}

fn assert_error(got: &(u16, Value), status: u16, error: &str) {
    assert_eq!((got.0, got.1["error"].as_str()), (status, Some(error)), "{}", got.1);
}

fn str_of(v: &Value, k: &str) -> String {
    v[k].as_str().unwrap_or_else(|| panic!("{k} in {v}")).to_owned()
}

fn part(jwt: &str, i: usize) -> Value {
    let seg = jwt.split('.').nth(i).unwrap();
    serde_json::from_slice(&clef::secret::b64url_decode(seg).unwrap()).unwrap()
}

/// Verifies a JWT's signature with the published JWKS through the `openidconnect` crate's
/// own key type, as a resource server would; returns header and claims.
async fn verify_with_jwks(h: &TestServer, jwt: &str) -> (Value, Value) {
    let jwks: CoreJsonWebKeySet = http().get(h.url("/jwks")).send().await.unwrap().json().await.unwrap();
    let header = part(jwt, 0);
    let kid = header["kid"].as_str().unwrap();
    let key = jwks
        .keys()
        .iter()
        .find(|k| k.key_id().map(|id| id.as_str()) == Some(kid))
        .unwrap_or_else(|| panic!("kid {kid} is published"));
    let alg: CoreJwsSigningAlgorithm = serde_json::from_value(header["alg"].clone()).unwrap();
    let (signed, sig) = jwt.rsplit_once('.').unwrap();
    key.verify_signature(&alg, signed.as_bytes(), &clef::secret::b64url_decode(sig).unwrap())
        .unwrap();
    (header, part(jwt, 1))
}

async fn exec(h: &TestServer, sql: &str) {
    use sqlx::Connection;
    let url = &h.state.config.database_url;
    match h.backend {
        Backend::Sqlite => {
            let mut c = sqlx::SqliteConnection::connect(url).await.unwrap();
            sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut c).await.unwrap();
        }
        Backend::Postgres => {
            let mut c = sqlx::PgConnection::connect(url).await.unwrap();
            sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut c).await.unwrap();
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

async fn userinfo_status(h: &TestServer, at: &str) -> u16 {
    http()
        .get(h.url("/userinfo"))
        .bearer_auth(at)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// RFC 6749 §4.4 and RFC 9068 §2.2: a JWT for the client itself, verified against the JWKS;
/// no refresh token, no ID token; introspection and revocation treat it as any access token.
async fn client_credentials_issues_a_verifiable_client_token(h: &TestServer) {
    let svc = service(h, &["invoices:read", "invoices:write"], &[], None).await;
    let got = cc(h, &svc, &[("scope", "invoices:read")]).await;
    assert_eq!(got.0, 200, "{}", got.1);
    let body = &got.1;
    assert_eq!(
        (body["token_type"].as_str(), body["scope"].as_str()),
        (Some("Bearer"), Some("invoices:read"))
    );
    assert!(body.get("refresh_token").is_none() && body.get("id_token").is_none(), "{body}");
    assert!(body["expires_in"].as_i64().unwrap() > 0);
    let at = str_of(body, "access_token");
    let (header, claims) = verify_with_jwks(h, &at).await;
    assert_eq!((header["typ"].as_str(), header["alg"].as_str()), (Some("at+jwt"), Some("RS256")));
    assert_eq!(claims["iss"], h.issuer);
    assert_eq!(claims["sub"], svc.client_id, "RFC 9068 §2.2: sub is the client");
    assert_eq!(claims["client_id"], svc.client_id);
    assert_eq!(claims["aud"], h.issuer, "no resource asked: clef itself");
    assert_eq!(claims["scope"], "invoices:read");
    assert!(claims["jti"].is_string());
    let (iat, exp) = (claims["iat"].as_i64().unwrap(), claims["exp"].as_i64().unwrap());
    assert_eq!(exp - iat, h.state.config.access_token_ttl);
    for user_claim in ["auth_time", "acr", "amr"] {
        assert!(claims.get(user_claim).is_none(), "{user_claim} in {claims}");
    }

    // No scope asked: the client's whole allow-list.
    let all = cc(h, &svc, &[]).await;
    assert_eq!(all.1["scope"], "invoices:read invoices:write", "{}", all.1);

    // No user behind it: userinfo refuses it.
    assert_eq!(userinfo_status(h, &at).await, 401);

    let intro = post(h, "/introspect", &svc, &[("token", &at)]).await.1;
    assert_eq!(intro["active"], true, "{intro}");
    assert_eq!((&intro["sub"], &intro["client_id"]), (&json!(svc.client_id), &json!(svc.client_id)));
    assert_eq!(intro["scope"], "invoices:read");
    assert_eq!(intro["aud"], h.issuer);
    let other = service(h, &["invoices:read"], &[], None).await;
    assert_eq!(post(h, "/introspect", &other, &[("token", &at)]).await.1, json!({"active": false}));

    // Another client's revocation does nothing; the owner's revokes it.
    assert_eq!(post(h, "/revoke", &other, &[("token", &at)]).await.0, 200);
    assert_eq!(post(h, "/introspect", &svc, &[("token", &at)]).await.1["active"], true);
    assert_eq!(post(h, "/revoke", &svc, &[("token", &at)]).await.0, 200);
    assert_eq!(post(h, "/introspect", &svc, &[("token", &at)]).await.1, json!({"active": false}));
    let second = str_of(&all.1, "access_token");
    assert_eq!(post(h, "/introspect", &svc, &[("token", &second)]).await.1["active"], true);
}

/// unauthorized_client without the grant or for a public client; invalid_scope outside the
/// allow-list and for the user scopes; the CLI's rules for such clients.
async fn client_credentials_refusals(h: &TestServer) {
    let web = h.confidential("web").await;
    assert_error(&cc(h, &web, &[]).await, 400, "unauthorized_client");

    // A public client can never be given the grant, and is refused even if its row says so.
    let spa = h
        .client(ClientSpec {
            name: "spa".into(),
            redirect_uris: vec!["http://127.0.0.1/spa/cb".into()],
            public: true,
            ..ClientSpec::default()
        })
        .await;
    let public_form = [("grant_type", "client_credentials"), ("client_id", spa.client_id.as_str())];
    let refused = http().post(h.url("/token")).form(&public_form).send().await.unwrap();
    assert_eq!(refused.status(), 400);
    assert_eq!(refused.json::<Value>().await.unwrap()["error"], "unauthorized_client");
    exec(
        h,
        &format!(
            "update clients set grant_types = '[\"authorization_code\",\"client_credentials\"]' where client_id = '{}'",
            spa.client_id
        ),
    )
    .await;
    let refused: Value = http()
        .post(h.url("/token"))
        .form(&public_form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(refused["error"], "unauthorized_client", "{refused}");
    assert_eq!(refused["error_description"], "public clients may not use client_credentials");

    let svc = service(h, &["reports"], &[], None).await;
    for bad in ["openid", "reports email", "reports:admin", "offline_access"] {
        assert_error(&cc(h, &svc, &[("scope", bad)]).await, 400, "invalid_scope");
    }
    // A client without an allow-list gets a token with no scope, and nothing it asks for.
    let bare = service(h, &[], &[], None).await;
    let scopeless = cc(h, &bare, &[]).await;
    assert_eq!(scopeless.0, 200, "{}", scopeless.1);
    assert!(scopeless.1.get("scope").is_none(), "no empty scope: {}", scopeless.1);
    assert_error(&cc(h, &bare, &[("scope", "reports")]).await, 400, "invalid_scope");

    for (spec, needle) in [
        (
            ClientSpec {
                name: "x".into(),
                public: true,
                grant_types: vec!["client_credentials".into()],
                ..ClientSpec::default()
            },
            "public client cannot use client_credentials",
        ),
        (
            ClientSpec {
                name: "x".into(),
                grant_types: vec!["client_credentials".into()],
                scopes: vec!["openid".into()],
                ..ClientSpec::default()
            },
            "not for client_credentials",
        ),
        (
            ClientSpec {
                name: "x".into(),
                grant_types: vec!["client_credentials,refresh_token".into()],
                ..ClientSpec::default()
            },
            "refresh_token needs authorization_code",
        ),
        (
            ClientSpec {
                name: "x".into(),
                grant_types: vec!["client_credentials".into()],
                resources: vec!["https://api.example/#x".into()],
                ..ClientSpec::default()
            },
            "fragment",
        ),
        (
            ClientSpec {
                name: "x".into(),
                grant_types: vec!["authorization_code".into()],
                ..ClientSpec::default()
            },
            "--redirect-uri is required",
        ),
        (
            ClientSpec {
                name: "x".into(),
                grant_types: vec!["client_credentials".into()],
                token_alg: Some("HS256".into()),
                ..ClientSpec::default()
            },
            "RS256 or ES256",
        ),
    ] {
        let e = clef::admin::create_client(&h.state.db, &spec, h.clock.now()).await.unwrap_err();
        assert!(e.to_string().contains(needle), "{e}");
    }
}

/// RFC 8707: `resource` sets `aud`, repeated gives an array, and anything unregistered,
/// relative or with a fragment is invalid_target.
async fn resource_sets_the_audience_of_client_tokens(h: &TestServer) {
    let svc = service(h, &["read"], &[API_A, API_B], None).await;
    let one = cc(h, &svc, &[("resource", API_A)]).await;
    assert_eq!(one.0, 200, "{}", one.1);
    assert_eq!(verify_with_jwks(h, &str_of(&one.1, "access_token")).await.1["aud"], API_A);
    let both = cc(h, &svc, &[("resource", API_A), ("resource", API_B)]).await;
    let at = str_of(&both.1, "access_token");
    assert_eq!(verify_with_jwks(h, &at).await.1["aud"], json!([API_A, API_B]));
    assert_eq!(
        post(h, "/introspect", &svc, &[("token", &at)]).await.1["aud"],
        json!([API_A, API_B])
    );
    for bad in [
        "https://api-c.example/",
        "https://api-a.example",
        "https://api-a.example/#f",
        "/relative",
        "api-a.example",
    ] {
        let got = cc(h, &svc, &[("resource", bad)]).await;
        assert_error(&got, 400, "invalid_target");
        assert!(!got.1.to_string().contains(bad), "the value is not echoed: {}", got.1);
    }
    assert_error(
        &cc(h, &svc, &[("resource", API_A), ("resource", "https://x.example/")]).await,
        400,
        "invalid_target",
    );
    let unregistered = service(h, &["read"], &[], None).await;
    let got = cc(h, &unregistered, &[("resource", API_A)]).await;
    assert_error(&got, 400, "invalid_target");
    assert_eq!(got.1["error_description"], "this client is registered for no resource");
}

/// A signed-in browser and a first-party code-flow client registered for both APIs.
async fn signed_in(h: &TestServer, name: &str) -> (Rp, Browser) {
    let email = format!("{name}@example.test");
    h.user(&email, PW).await;
    let created = h
        .client(ClientSpec {
            name: name.into(),
            redirect_uris: vec![format!("http://127.0.0.1/{name}/cb")],
            skip_consent: true,
            resources: vec![API_A.into(), API_B.into()],
            ..ClientSpec::default()
        })
        .await;
    let rp = Rp::discover(&h.issuer, &created, &format!("http://127.0.0.1/{name}/cb")).await;
    let b = h.browser();
    let login = b.get("/login").await;
    b.submit(&login, &[("email", email.as_str()), ("password", PW)])
        .await
        .assert_redirect_to("/account");
    (rp, b)
}

fn created(rp: &Rp) -> CreatedClient {
    CreatedClient {
        client_id: rp.client_id.clone(),
        client_secret: rp.client_secret.clone(),
    }
}

/// Code and tokens for the signed-in browser; `extra` goes on the authorization request.
async fn code_tokens(h: &TestServer, rp: &Rp, b: &Browser, extra: &[(&str, &str)], token_extra: &[(&str, &str)]) -> (u16, Value) {
    let start = rp.start_with(&["email"], extra);
    let back = b.get(&start.url).await;
    back.assert_redirect_to(&rp.redirect_uri);
    let code = back.location_param("code").unwrap_or_else(|| panic!("a code: {:?}", back.location));
    let verifier = start.verifier.secret().clone();
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", rp.redirect_uri.as_str()),
        ("code_verifier", verifier.as_str()),
    ];
    form.extend_from_slice(token_extra);
    post(h, "/token", &created(rp), &form).await
}

async fn refresh(h: &TestServer, rp: &Rp, token: &str, extra: &[(&str, &str)]) -> (u16, Value) {
    let mut form = vec![("grant_type", "refresh_token"), ("refresh_token", token)];
    form.extend_from_slice(extra);
    post(h, "/token", &created(rp), &form).await
}

fn aud_of(v: &Value) -> Value {
    part(&str_of(v, "access_token"), 1)["aud"].clone()
}

/// RFC 8707 §2.1, §2.2: resources at /authorize bound the grant; the code exchange and each
/// refresh may narrow them, never widen them; invalid_target is redirected from /authorize.
async fn resource_at_authorize_code_and_refresh(h: &TestServer) {
    let (rp, b) = signed_in(h, "res").await;
    let both = [("resource", API_A), ("resource", API_B)];
    let tokens = code_tokens(h, &rp, &b, &both, &[]).await;
    assert_eq!(tokens.0, 200, "{}", tokens.1);
    assert_eq!(aud_of(&tokens.1), json!([API_A, API_B]));
    let id_token = part(&str_of(&tokens.1, "id_token"), 1);
    assert_eq!(id_token["aud"], rp.client_id, "the ID token stays the client's");

    let r1 = str_of(&tokens.1, "refresh_token");
    let narrowed = refresh(h, &rp, &r1, &[("resource", API_B)]).await;
    assert_eq!(narrowed.0, 200, "{}", narrowed.1);
    assert_eq!(aud_of(&narrowed.1), API_B);
    // The refresh token keeps the whole grant: the next refresh may ask for the other one.
    let r2 = str_of(&narrowed.1, "refresh_token");
    let other = refresh(h, &rp, &r2, &[("resource", API_A)]).await;
    assert_eq!(aud_of(&other.1), API_A, "{}", other.1);
    let r3 = str_of(&other.1, "refresh_token");
    assert_error(
        &refresh(h, &rp, &r3, &[("resource", "https://api-c.example/")]).await,
        400,
        "invalid_target",
    );
    // A refused resource leaves the refresh token usable.
    let plain = refresh(h, &rp, &r3, &[]).await;
    assert_eq!(aud_of(&plain.1), json!([API_A, API_B]), "{}", plain.1);

    // Narrowed at the code exchange; a resource outside the grant is refused there.
    let one = code_tokens(h, &rp, &b, &[("resource", API_A)], &[("resource", API_A)]).await;
    assert_eq!(aud_of(&one.1), API_A, "{}", one.1);
    let wider = code_tokens(h, &rp, &b, &[("resource", API_A)], &[("resource", API_B)]).await;
    assert_error(&wider, 400, "invalid_target");
    // No resource at /authorize: the token request may pick among the registered ones.
    let later = code_tokens(h, &rp, &b, &[], &[("resource", API_B)]).await;
    assert_eq!(aud_of(&later.1), API_B, "{}", later.1);
    let none = code_tokens(h, &rp, &b, &[], &[]).await;
    assert_eq!(aud_of(&none.1), h.issuer);

    // At /authorize the error goes back to the client, with state and iss.
    for bad in ["https://api-c.example/", "https://api-a.example/#x"] {
        let start = rp.start_with(&["email"], &[("resource", bad)]);
        let back = b.get(&start.url).await;
        back.assert_redirect_to(&rp.redirect_uri);
        assert_eq!(back.location_param("error").as_deref(), Some("invalid_target"), "{bad}");
        assert_eq!(back.location_param("state").as_deref(), Some(start.state.as_str()));
        assert_eq!(back.location_param("iss").as_deref(), Some(h.issuer.as_str()));
    }
}

/// The refresh grace: presenting the just-rotated token again returns the very same
/// successor (and access token), once; a third use revokes the whole family. The successor
/// is kept sealed, never in plain, and wiped after its window.
async fn refresh_grace_returns_the_same_successor_once(h: &TestServer) {
    let (rp, b) = signed_in(h, "grace").await;
    let tokens = code_tokens(h, &rp, &b, &[], &[]).await.1;
    let r1 = str_of(&tokens, "refresh_token");
    let first = refresh(h, &rp, &r1, &[]).await;
    assert_eq!(first.0, 200, "{}", first.1);
    let (r2, a2) = (str_of(&first.1, "refresh_token"), str_of(&first.1, "access_token"));
    let sealed: i64 = count(h, "select count(*) from refresh_tokens where successor_sealed like 'v1.%'").await;
    assert_eq!(sealed, 1, "the successor is sealed for the grace");
    let plain = count(
        h,
        &format!("select count(*) from refresh_tokens where successor_sealed like '%{r2}%'"),
    )
    .await;
    assert_eq!(plain, 0, "never in plain");

    let again = refresh(h, &rp, &r1, &[]).await;
    assert_eq!(again.0, 200, "{}", again.1);
    assert_eq!(str_of(&again.1, "refresh_token"), r2, "the same successor");
    assert_eq!(str_of(&again.1, "access_token"), a2);
    assert_eq!(again.1["id_token"], first.1["id_token"]);
    assert_eq!(
        count(h, "select count(*) from refresh_tokens where successor_sealed is not null").await,
        0,
        "wiped after use"
    );
    assert_eq!(userinfo_status(h, &a2).await, 200);

    let third = refresh(h, &rp, &r1, &[]).await;
    assert_error(&third, 400, "invalid_grant");
    assert_error(&refresh(h, &rp, &r2, &[]).await, 400, "invalid_grant");
    assert_eq!(userinfo_status(h, &a2).await, 401, "the family is revoked");

    // Once the successor itself was rotated, an old copy of its predecessor is theft, grace
    // or not.
    let tokens = code_tokens(h, &rp, &b, &[], &[]).await.1;
    let r1 = str_of(&tokens, "refresh_token");
    let r2 = str_of(&refresh(h, &rp, &r1, &[]).await.1, "refresh_token");
    let r3 = str_of(&refresh(h, &rp, &r2, &[]).await.1, "refresh_token");
    assert_error(&refresh(h, &rp, &r1, &[]).await, 400, "invalid_grant");
    assert_error(&refresh(h, &rp, &r3, &[]).await, 400, "invalid_grant");

    // Past the window: the housekeeping wipe takes sealed successors away.
    let tokens = code_tokens(h, &rp, &b, &[], &[]).await.1;
    refresh(h, &rp, &str_of(&tokens, "refresh_token"), &[]).await;
    assert_eq!(
        count(h, "select count(*) from refresh_tokens where successor_sealed is not null").await,
        1
    );
    h.clock.advance(3);
    h.state
        .db
        .refresh_grace_wipe(h.clock.now() - h.state.config.refresh_grace)
        .await
        .unwrap();
    assert_eq!(
        count(h, "select count(*) from refresh_tokens where successor_sealed is not null").await,
        0
    );
}

/// After the grace window, reuse revokes the family as before.
async fn refresh_reuse_after_the_grace_revokes(h: &TestServer) {
    let (rp, b) = signed_in(h, "late").await;
    let tokens = code_tokens(h, &rp, &b, &[], &[]).await.1;
    let r1 = str_of(&tokens, "refresh_token");
    let next = refresh(h, &rp, &r1, &[]).await.1;
    let (r2, a2) = (str_of(&next, "refresh_token"), str_of(&next, "access_token"));
    h.clock.advance(h.state.config.refresh_grace + 1);
    assert_error(&refresh(h, &rp, &r1, &[]).await, 400, "invalid_grant");
    assert_error(&refresh(h, &rp, &r2, &[]).await, 400, "invalid_grant");
    assert_eq!(userinfo_status(h, &a2).await, 401);
}

/// `CLEF_REFRESH_GRACE=0` turns the grace off: the first reuse revokes, nothing is sealed.
async fn refresh_grace_zero_disables_it(h: &TestServer) {
    let graceless = TestServer::start_with(h.backend, |raw| raw.refresh_grace = Some(0)).await;
    graceless_reuse_revokes(&graceless).await;
    graceless.finish().await;
}

async fn graceless_reuse_revokes(h: &TestServer) {
    let (rp, b) = signed_in(h, "nograce").await;
    let tokens = code_tokens(h, &rp, &b, &[], &[]).await.1;
    let r1 = str_of(&tokens, "refresh_token");
    let next = refresh(h, &rp, &r1, &[]).await.1;
    assert_eq!(
        count(h, "select count(*) from refresh_tokens where successor_sealed is not null").await,
        0
    );
    let r2 = str_of(&next, "refresh_token");
    assert_error(&refresh(h, &rp, &r1, &[]).await, 400, "invalid_grant");
    assert_error(&refresh(h, &rp, &r2, &[]).await, 400, "invalid_grant");
}

/// Two concurrent refreshes of one token, one on each of two instances sharing the database
/// and the keys folder (so the server secret key): both get the one successor, which lives on.
async fn refresh_race_two_way_within_the_grace(h: &TestServer) {
    let (url, keys) = (h.state.config.database_url.clone(), h.state.config.keys_dir.display().to_string());
    let h2 = TestServer::start_with(h.backend, |raw| {
        raw.database_url = Some(url);
        raw.keys_dir = Some(keys);
    })
    .await;
    let (rp, b) = signed_in(h, "graceRace").await;
    for trial in 0..10 {
        let tokens = code_tokens(h, &rp, &b, &[], &[]).await.1;
        let r1 = str_of(&tokens, "refresh_token");
        let before = count(h, "select count(*) from access_tokens").await;
        let (x, y) = tokio::join!(refresh(h, &rp, &r1, &[]), refresh(&h2, &rp, &r1, &[]));
        assert_eq!((x.0, y.0), (200, 200), "trial {trial}: {x:?} / {y:?}");
        let r2 = str_of(&x.1, "refresh_token");
        assert_eq!(str_of(&y.1, "refresh_token"), r2, "trial {trial}: one successor");
        assert_eq!(count(h, "select count(*) from access_tokens").await, before + 1, "trial {trial}");
        let on = refresh(h, &rp, &r2, &[]).await;
        assert_eq!(on.0, 200, "trial {trial}: the successor lives: {}", on.1);
    }
    h2.finish().await;
}

/// 100 concurrent refreshes of one token: one successor, handed out at most twice (the
/// winner and one grace retry), every other answer invalid_grant, no 5xx.
async fn refresh_race_hundred_way_within_the_grace(h: &TestServer) {
    let (rp, b) = signed_in(h, "grace100").await;
    let tokens = code_tokens(h, &rp, &b, &[], &[]).await.1;
    let r1 = str_of(&tokens, "refresh_token");
    let before = count(h, "select count(*) from access_tokens").await;
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..100 {
        let (url, c, token) = (h.url("/token"), created(&rp), r1.clone());
        set.spawn(async move {
            let resp = http()
                .post(url)
                .basic_auth(&c.client_id, c.client_secret.as_deref())
                .form(&[("grant_type", "refresh_token"), ("refresh_token", token.as_str())])
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        });
    }
    let results = tokio::time::timeout(std::time::Duration::from_secs(120), set.join_all())
        .await
        .expect("100 refreshes finish in time");
    let statuses: Vec<u16> = results.iter().map(|r| r.0).collect();
    assert!(results.iter().all(|r| r.0 == 200 || r.1["error"] == "invalid_grant"), "{results:?}");
    let winners: Vec<String> = results
        .iter()
        .filter(|r| r.0 == 200)
        .map(|r| str_of(&r.1, "refresh_token"))
        .collect();
    assert!((1..=2).contains(&winners.len()), "{statuses:?}");
    assert!(winners.windows(2).all(|w| w[0] == w[1]), "one successor: {winners:?}");
    assert_eq!(
        count(h, "select count(*) from access_tokens").await,
        before + 1,
        "one successor family member"
    );
    // The third use revoked the family, the successor with it.
    assert_error(&refresh(h, &rp, &winners[0], &[]).await, 400, "invalid_grant");
}

/// `--token-alg ES256`: ID and access tokens signed with the JWKS EC key; the ID token is
/// verified by `openidconnect`, the access token against the JWKS; a service client too.
async fn es256_client_tokens_verify_with_the_ec_key(h: &TestServer) {
    h.user("ec@example.test", PW).await;
    let created = h
        .client(ClientSpec {
            name: "ec".into(),
            redirect_uris: vec!["http://127.0.0.1/ec/cb".into()],
            token_alg: Some("ES256".into()),
            ..ClientSpec::default()
        })
        .await;
    let rp = Rp::discover(&h.issuer, &created, "http://127.0.0.1/ec/cb").await;
    let start = rp.start(&["email"]);
    let back = h.browser().authorize(&start.url, "ec@example.test", PW).await;
    back.assert_redirect_to(&rp.redirect_uri);
    let tokens = rp.exchange(&back.location_param("code").unwrap(), start.verifier).await;
    let id_token = tokens.id_token().unwrap();
    let verifier = rp
        .oidc
        .id_token_verifier()
        .set_allowed_algs([CoreJwsSigningAlgorithm::EcdsaP256Sha256]);
    let claims = id_token.claims(&verifier, &start.nonce).unwrap();
    assert_eq!(claims.email().map(|e| e.as_str()), Some("ec@example.test"));
    assert_eq!(id_token.signing_alg().unwrap(), &CoreJwsSigningAlgorithm::EcdsaP256Sha256);
    // An RS256-only verifier refuses it: the algorithm really is ES256.
    let rs256_only = rp
        .oidc
        .id_token_verifier()
        .set_allowed_algs([CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256]);
    assert!(id_token.claims(&rs256_only, &start.nonce).is_err());
    let at = tokens.access_token().secret().clone();
    let (header, _) = verify_with_jwks(h, &at).await;
    assert_eq!((header["alg"].as_str(), header["typ"].as_str()), (Some("ES256"), Some("at+jwt")));
    let jwks: Value = http().get(h.url("/jwks")).send().await.unwrap().json().await.unwrap();
    let ec = jwks["keys"].as_array().unwrap().iter().find(|k| k["kid"] == header["kid"]).unwrap();
    assert_eq!((ec["kty"].as_str(), ec["crv"].as_str()), (Some("EC"), Some("P-256")));
    assert_eq!(rp.userinfo(&at).await.email().map(|e| e.as_str()), Some("ec@example.test"));

    let svc = service(h, &["read"], &[], Some("ES256")).await;
    let got = cc(h, &svc, &[]).await;
    let (header, claims) = verify_with_jwks(h, &str_of(&got.1, "access_token")).await;
    assert_eq!(header["alg"], "ES256");
    assert_eq!(claims["sub"], svc.client_id);
}

/// The exact CLI a service client is made with (the one the notes give for the benchmark):
/// comma lists, no redirect URI, `--token-alg`; then the client works at /token.
async fn cli_creates_a_service_client(h: &TestServer) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_clef"))
        .args([
            "clients",
            "create",
            "--name",
            "bench-svc",
            "--grant-type",
            "client_credentials",
            "--scope",
            "bench,reports",
            "--resource",
            API_A,
            "--token-alg",
            "ES256",
            "--json",
        ])
        .current_dir(h.dir())
        .env("CLEF_DATABASE_URL", &h.state.config.database_url)
        .env("CLEF_KEYS_DIR", &h.state.config.keys_dir)
        .env("CLEF_LOG", "warn,sqlx::query=error")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let svc: CreatedClient = {
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        CreatedClient {
            client_id: str_of(&v, "client_id"),
            client_secret: Some(str_of(&v, "client_secret")),
        }
    };
    let c = h.state.db.client_get(&svc.client_id).await.unwrap().unwrap();
    assert_eq!(c.grant_types, ["client_credentials"]);
    assert_eq!(
        (c.scopes.as_slice(), c.resources.as_slice()),
        (&["bench".to_owned(), "reports".to_owned()][..], &[API_A.to_owned()][..])
    );
    assert_eq!((c.access_token_alg.as_str(), c.id_token_alg.as_str()), ("ES256", "ES256"));
    let got = cc(h, &svc, &[("scope", "bench"), ("resource", API_A)]).await;
    let (header, claims) = verify_with_jwks(h, &str_of(&got.1, "access_token")).await;
    assert_eq!((header["alg"].as_str(), claims["aud"].as_str()), (Some("ES256"), Some(API_A)));
}

/// Discovery advertises the new grant, and only the grants clef does.
async fn discovery_lists_client_credentials(h: &TestServer) {
    let doc: Value = http()
        .get(h.url("/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        doc["grant_types_supported"],
        json!(["authorization_code", "refresh_token", "client_credentials"])
    );
}

e2e!(
    client_credentials_issues_a_verifiable_client_token,
    client_credentials_refusals,
    resource_sets_the_audience_of_client_tokens,
    resource_at_authorize_code_and_refresh,
    refresh_grace_returns_the_same_successor_once,
    refresh_reuse_after_the_grace_revokes,
    refresh_grace_zero_disables_it,
    refresh_race_two_way_within_the_grace,
    refresh_race_hundred_way_within_the_grace,
    es256_client_tokens_verify_with_the_ec_key,
    discovery_lists_client_credentials,
    cli_creates_a_service_client,
);
