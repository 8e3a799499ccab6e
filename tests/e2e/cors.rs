//! CORS for browser apps: preflight and actual requests on the JSON endpoints, nothing on
//! the HTML pages, and a public client doing its whole code exchange from its own origin.

use std::process::{Command, Stdio};

use clef::admin::{ClientSpec, CreatedClient};
use reqwest::{Method, StatusCode, header};

use crate::e2e;
use crate::support::TestServer;
use crate::support::rp::Rp;

const SPA: &str = "http://localhost:5173";
const EXTRA: &str = "https://spa.example";
const STRANGER: &str = "https://evil.example";
const PW: &str = "correct horse battery";

/// Every CORS endpoint, with the method an app uses on it.
const ENDPOINTS: &[(&str, &str)] = &[
    ("GET", "/.well-known/openid-configuration"),
    ("GET", "/.well-known/oauth-authorization-server"),
    ("GET", "/jwks"),
    ("POST", "/token"),
    ("GET", "/userinfo"),
    ("POST", "/revoke"),
    ("POST", "/introspect"),
    ("GET", "/account/api/status"),
];

async fn spa(h: &TestServer) -> CreatedClient {
    h.client(ClientSpec {
        name: "spa".into(),
        redirect_uris: vec![format!("{SPA}/cb")],
        public: true,
        skip_consent: true,
        // Spelled oddly on purpose: stored normalised.
        allowed_origins: vec!["https://SPA.example:443/".into()],
        ..ClientSpec::default()
    })
    .await
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn acao(h: &header::HeaderMap) -> Option<&str> {
    h.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).map(|v| v.to_str().unwrap())
}

fn varies_on_origin(h: &header::HeaderMap) -> bool {
    h.get_all(header::VARY)
        .iter()
        .any(|v| v.to_str().unwrap().split(',').any(|p| p.trim().eq_ignore_ascii_case("origin")))
}

async fn preflight(h: &TestServer, path: &str, method: &str, origin: &str) -> reqwest::Response {
    http()
        .request(Method::OPTIONS, h.url(path))
        .header(header::ORIGIN, origin)
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, method)
        .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "authorization, content-type")
        .send()
        .await
        .unwrap()
}

async fn preflight_on_every_json_endpoint(h: &TestServer) {
    spa(h).await;
    for (method, path) in ENDPOINTS {
        for origin in [SPA, EXTRA] {
            let r = preflight(h, path, method, origin).await;
            assert_eq!(r.status(), StatusCode::NO_CONTENT, "{path} {origin}");
            let hd = r.headers();
            assert_eq!(acao(hd), Some(origin), "{path}");
            assert_eq!(hd[header::ACCESS_CONTROL_ALLOW_METHODS], "GET, POST", "{path}");
            assert_eq!(hd[header::ACCESS_CONTROL_ALLOW_HEADERS], "Authorization, Content-Type", "{path}");
            assert_eq!(hd[header::ACCESS_CONTROL_MAX_AGE], "600", "{path}");
            assert!(hd.get(header::ACCESS_CONTROL_ALLOW_CREDENTIALS).is_none(), "{path}");
            assert!(varies_on_origin(hd), "{path}");
        }
        for origin in [STRANGER, "null", "http://localhost:5174", "https://spa.example.evil.test"] {
            let r = preflight(h, path, method, origin).await;
            assert_eq!(r.status(), StatusCode::NO_CONTENT, "{path} {origin}");
            let hd = r.headers();
            for name in [
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                header::ACCESS_CONTROL_ALLOW_METHODS,
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            ] {
                assert!(hd.get(&name).is_none(), "{path} {origin} {name}");
            }
        }
        // No Origin: not a CORS preflight, so the route answers it as any OPTIONS.
        let bare = http()
            .request(Method::OPTIONS, h.url(path))
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, *method)
            .send()
            .await
            .unwrap();
        assert_eq!(bare.status(), StatusCode::METHOD_NOT_ALLOWED, "{path}");
        assert_eq!(acao(bare.headers()), None, "{path}");
        assert!(bare.headers().get(header::ACCESS_CONTROL_ALLOW_METHODS).is_none(), "{path}");
    }
}

async fn actual_requests_echo_only_allowed_origins(h: &TestServer) {
    spa(h).await;
    for (method, path) in ENDPOINTS {
        let send = |origin: Option<&str>| {
            let mut r = http().request(Method::from_bytes(method.as_bytes()).unwrap(), h.url(path));
            if *method == "POST" {
                r = r.form(&[("token", "nothing")]);
            }
            if let Some(o) = origin {
                r = r.header(header::ORIGIN, o);
            }
            r.send()
        };
        let allowed = send(Some(SPA)).await.unwrap();
        // Errors too: an app must be able to read invalid_request or the Bearer challenge.
        let status = allowed.status();
        assert!(
            status != StatusCode::INTERNAL_SERVER_ERROR && status != StatusCode::NOT_FOUND,
            "{path}: {status}"
        );
        assert_eq!(acao(allowed.headers()), Some(SPA), "{path}");
        assert!(allowed.headers().get(header::ACCESS_CONTROL_ALLOW_CREDENTIALS).is_none());
        assert_eq!(allowed.headers()[header::ACCESS_CONTROL_EXPOSE_HEADERS], "WWW-Authenticate");
        assert!(varies_on_origin(allowed.headers()), "{path}");

        let refused = send(Some(STRANGER)).await.unwrap();
        assert_eq!(refused.status(), status, "{path}: CORS never changes the answer itself");
        assert_eq!(acao(refused.headers()), None, "{path}");
        assert!(varies_on_origin(refused.headers()), "{path}");

        let plain = send(None).await.unwrap();
        assert_eq!(plain.status(), status, "{path}");
        assert_eq!(acao(plain.headers()), None, "{path}");
        assert!(varies_on_origin(plain.headers()), "{path}: caches must key on Origin");
    }
    let userinfo = http().get(h.url("/userinfo")).header(header::ORIGIN, EXTRA).send().await.unwrap();
    assert_eq!(userinfo.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(acao(userinfo.headers()), Some(EXTRA));
    assert!(userinfo.headers().contains_key(header::WWW_AUTHENTICATE));
}

async fn html_pages_never_get_cors(h: &TestServer) {
    let created = spa(h).await;
    let authorize = format!(
        "/authorize?client_id={}&redirect_uri={SPA}/cb&response_type=code&scope=openid&code_challenge=E9Melhoa2OwvFrEMTJguCQaoeWvWoM5V4L0mTwa3LtM&code_challenge_method=S256",
        created.client_id
    );
    for path in [
        authorize.as_str(),
        "/login",
        "/signup",
        "/account",
        "/password/forgot",
        "/logout",
        "/no-such-page",
    ] {
        let r = http().get(h.url(path)).header(header::ORIGIN, SPA).send().await.unwrap();
        assert_eq!(acao(r.headers()), None, "{path}");
        let r = preflight(h, path, "POST", SPA).await;
        assert_eq!(acao(r.headers()), None, "preflight {path}");
        assert!(r.headers().get(header::ACCESS_CONTROL_ALLOW_METHODS).is_none(), "{path}");
    }
}

/// What oidc-client-ts does from its own origin: discovery, the hosted pages, then the code
/// exchange, userinfo and revocation by `fetch`, each call carrying `Origin`.
async fn public_client_code_exchange_from_its_origin(h: &TestServer) {
    h.user("spa@example.test", PW).await;
    let created = spa(h).await;
    let with_origin = |r: reqwest::RequestBuilder| r.header(header::ORIGIN, SPA);
    let disco = with_origin(http().get(h.url("/.well-known/openid-configuration")))
        .send()
        .await
        .unwrap();
    assert_eq!(acao(disco.headers()), Some(SPA));
    let meta: serde_json::Value = disco.json().await.unwrap();
    let jwks = with_origin(http().get(meta["jwks_uri"].as_str().unwrap())).send().await.unwrap();
    assert_eq!(acao(jwks.headers()), Some(SPA));

    let rp = Rp::discover(&h.issuer, &created, &format!("{SPA}/cb")).await;
    let start = rp.start(&["email"]);
    let back = h.browser().authorize(&start.url, "spa@example.test", PW).await;
    assert_eq!(acao(&back.headers), None, "the authorization redirect is a page answer");
    let code = back.location_param("code").unwrap();

    let pre = preflight(h, "/token", "POST", SPA).await;
    assert_eq!(acao(pre.headers()), Some(SPA));
    let redirect_uri = format!("{SPA}/cb");
    let token = with_origin(http().post(meta["token_endpoint"].as_str().unwrap()))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", redirect_uri.as_str()),
            ("client_id", created.client_id.as_str()),
            ("code_verifier", start.verifier.secret().as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(token.status(), StatusCode::OK);
    assert_eq!(acao(token.headers()), Some(SPA));
    let tokens: serde_json::Value = token.json().await.unwrap();
    let access = tokens["access_token"].as_str().unwrap();
    assert!(tokens["id_token"].is_string());

    let pre = preflight(h, "/userinfo", "GET", SPA).await;
    assert_eq!(acao(pre.headers()), Some(SPA));
    let me = with_origin(http().get(h.url("/userinfo")))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), StatusCode::OK);
    assert_eq!(acao(me.headers()), Some(SPA));
    let me: serde_json::Value = me.json().await.unwrap();
    assert_eq!(me["email"], "spa@example.test");

    let revoke = with_origin(http().post(h.url("/revoke")))
        .form(&[("token", access), ("client_id", created.client_id.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(revoke.status(), StatusCode::OK);
    assert_eq!(acao(revoke.headers()), Some(SPA));
    let after = with_origin(http().get(h.url("/userinfo")))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(acao(after.headers()), Some(SPA));
}

/// A client the CLI registers in another process is allowed at once by the running server,
/// and `clients list` shows the extra origins.
async fn cli_allowed_origin_is_seen_by_a_running_server(h: &TestServer) {
    let origin = "https://cli-spa.example";
    let before = preflight(h, "/token", "POST", origin).await;
    assert_eq!(acao(before.headers()), None);
    let run = |args: &[&str]| {
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
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, _, err) = run(&[
        "clients",
        "create",
        "--name",
        "cli-spa",
        "--public",
        "--redirect-uri",
        "https://app.cli.example/cb",
        "--allowed-origin",
        "HTTPS://CLI-SPA.example/",
        "--json",
    ]);
    assert!(ok, "{err}");
    for o in [origin, "https://app.cli.example"] {
        let after = preflight(h, "/token", "POST", o).await;
        assert_eq!(acao(after.headers()), Some(o));
    }
    let (ok, list, err) = run(&["clients", "list", "--json"]);
    assert!(ok, "{err}");
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(list[0]["allowed_origins"], serde_json::json!([origin]));
    let (ok, text, _) = run(&["clients", "list"]);
    assert!(ok);
    assert!(text.contains(&format!("origins: {origin}")), "{text}");

    for bad in ["http://cli-spa.example", "https://cli-spa.example/app", "*"] {
        let (ok, _, err) = run(&[
            "clients",
            "create",
            "--name",
            "x",
            "--redirect-uri",
            "https://x.example/cb",
            "--allowed-origin",
            bad,
        ]);
        assert!(!ok, "{bad}");
        assert!(err.contains(bad), "{err}");
    }
    // Nothing half-written: the refused clients left no rows.
    let clients = h.state.db.client_list().await.unwrap();
    assert_eq!(clients.len(), 1);
    // Deleting the client takes its origins with it.
    let (ok, _, err) = run(&["clients", "delete", &clients[0].client_id]);
    assert!(ok, "{err}");
    for o in [origin, "https://app.cli.example"] {
        assert_eq!(acao(preflight(h, "/token", "POST", o).await.headers()), None, "{o}");
    }
    let long = format!("https://{}.example", "a".repeat(300));
    assert_eq!(acao(preflight(h, "/token", "POST", &long).await.headers()), None);
}

/// Runs one statement on the test database, outside clef's store.
async fn raw(h: &TestServer, sql: &'static str) -> i64 {
    let url = &h.state.config.database_url;
    if url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        let n: (i64,) = sqlx::query_as(sql).fetch_one(&pool).await.unwrap_or((0,));
        pool.close().await;
        n.0
    } else {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        let n: (i64,) = sqlx::query_as(sql).fetch_one(&pool).await.unwrap_or((0,));
        pool.close().await;
        n.0
    }
}

/// Instances starting together on a database whose clients predate `0003_cors` all
/// backfill the origins, and each origin is written once: exactly two at a time, then
/// eight, over several trials.
async fn concurrent_backfills_write_each_origin_once(h: &TestServer) {
    for i in 0..3 {
        h.client(ClientSpec {
            name: format!("old{i}"),
            redirect_uris: vec![format!("https://old{i}.example/cb"), format!("https://old{i}.example/cb2")],
            ..ClientSpec::default()
        })
        .await;
    }
    assert_eq!(raw(h, "select count(*) from client_origins").await, 3);
    let url = h.state.config.database_url.clone();
    for ways in [2usize, 8] {
        for trial in 0..4 {
            // `delete … returning` gives a row on neither backend when empty; the count is 0.
            raw(h, "delete from client_origins returning 0").await;
            assert_eq!(raw(h, "select count(*) from client_origins").await, 0);
            let mut set = tokio::task::JoinSet::new();
            for _ in 0..ways {
                let url = url.clone();
                set.spawn(async move {
                    let db = clef::store::Db::connect(&url).await.unwrap();
                    let r = db.migrate().await;
                    db.close().await;
                    r
                });
            }
            let done = tokio::time::timeout(std::time::Duration::from_secs(60), set.join_all())
                .await
                .expect("backfills finish");
            for r in done {
                r.unwrap_or_else(|e| panic!("{ways}-way trial {trial}: {e}"));
            }
            assert_eq!(raw(h, "select count(*) from client_origins").await, 3, "{ways}-way trial {trial}");
        }
    }
    assert_eq!(
        acao(preflight(h, "/token", "POST", "https://old1.example").await.headers()),
        Some("https://old1.example")
    );
}

e2e!(
    concurrent_backfills_write_each_origin_once,
    preflight_on_every_json_endpoint,
    actual_requests_echo_only_allowed_origins,
    html_pages_never_get_cors,
    public_client_code_exchange_from_its_origin,
    cli_allowed_origin_is_seen_by_a_running_server,
);
