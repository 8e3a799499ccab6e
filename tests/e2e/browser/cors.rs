//! A browser app on another loopback origin exchanges its code at `/token` with `fetch()`:
//! the public-client flow of a single-page app, which needs CORS on the token endpoint.

use clef::admin::ClientSpec;

use crate::browser_tests;

use super::harness::Browsers;
use super::{Fixture, PW};

/// Runs in the client's page (origin `http://127.0.0.1:APP_PORT`), so the browser applies
/// CORS to the request. Resolves to `{status, body}` or `{error}` when CORS blocks it.
const EXCHANGE: &str = r#"
const [issuer, code, redirectUri, clientId, verifier, done] = arguments;
const body = new URLSearchParams({
  grant_type: "authorization_code", code, redirect_uri: redirectUri,
  client_id: clientId, code_verifier: verifier,
});
fetch(issuer + "/token", { method: "POST", body })
  .then(async r => done({ status: r.status, body: await r.json() }))
  .catch(e => done({ error: String(e) }));
"#;

async fn cors_code_exchange_from_another_origin(b: Browsers) {
    let f = Fixture::with(ClientSpec {
        public: true,
        skip_consent: true,
        ..ClientSpec::default()
    })
    .await;
    f.h.user("spa@example.test", PW).await;
    let s = b.open("main").await;
    let start = f.rp.start(&[]);
    s.goto(&start.url, "login").await;
    s.log_in("spa@example.test", PW, "after-login").await;
    let code = f.code_at_client(&s, &start).await;
    let out = s
        .client
        .execute_async(
            EXCHANGE,
            vec![
                f.h.issuer.clone().into(),
                code.into(),
                f.app.url("/cb").into(),
                f.created.client_id.clone().into(),
                start.verifier.secret().clone().into(),
            ],
        )
        .await
        .unwrap();
    assert_eq!(out["status"], 200, "fetch from {}: {out}", f.app.base);
    assert!(
        out["body"]["access_token"].is_string() && out["body"]["id_token"].is_string(),
        "{out}"
    );
    f.finish().await;
}

browser_tests!(cors_code_exchange_from_another_origin);
