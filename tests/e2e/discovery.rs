//! Discovery, JWKS and health endpoints.

use clef::oauth::metadata::ENDPOINT_FIELDS;
use serde_json::Value;

use crate::e2e;
use crate::support::TestServer;

async fn discovery_is_complete_and_consistent(h: &TestServer) {
    let b = h.browser();
    for path in ["/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"] {
        let page = b.get(path).await;
        assert_eq!(page.status, 200);
        let doc: Value = serde_json::from_str(&page.body).unwrap();
        assert_eq!(doc["issuer"], h.issuer);
        assert_eq!(doc["response_types_supported"], serde_json::json!(["code"]));
        assert_eq!(doc["code_challenge_methods_supported"], serde_json::json!(["S256"]));
        assert_eq!(doc["subject_types_supported"], serde_json::json!(["public", "pairwise"]));
        assert_eq!(doc["authorization_response_iss_parameter_supported"], true);
        assert_eq!(
            doc["token_endpoint_auth_methods_supported"],
            serde_json::json!([
                "client_secret_basic",
                "client_secret_post",
                "client_secret_jwt",
                "private_key_jwt",
                "none"
            ])
        );
        assert_eq!(doc["id_token_signing_alg_values_supported"], serde_json::json!(["RS256", "ES256"]));
        // dcr: registration is off by default, so no endpoint is advertised.
        assert!(doc.get("registration_endpoint").is_none());
        assert_eq!(doc["ui_locales_supported"], serde_json::json!(["en", "fr"]));
        for f in [
            "scopes_supported",
            "response_modes_supported",
            "grant_types_supported",
            "claims_supported",
        ] {
            assert!(doc[f].is_array(), "{f}");
        }
    }
}

/// Every URL the document advertises must answer: not 404, not 5xx.
async fn every_advertised_url_answers(h: &TestServer) {
    let b = h.browser();
    let doc: Value = serde_json::from_str(&b.get("/.well-known/openid-configuration").await.body).unwrap();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for field in ENDPOINT_FIELDS {
        let url = doc[field].as_str().unwrap_or_else(|| panic!("{field} missing"));
        assert!(url.starts_with(&h.issuer), "{field} = {url}");
        for resp in [
            http.get(url).send().await.unwrap(),
            http.post(url).form(&[("x", "y")]).send().await.unwrap(),
        ] {
            let s = resp.status();
            assert!(s != 404 && !s.is_server_error(), "{field} {url} answered {s}");
        }
    }
}

async fn jwks_publishes_public_keys_only(h: &TestServer) {
    let page = h.browser().get("/jwks").await;
    assert_eq!(page.status, 200);
    let jwks: Value = serde_json::from_str(&page.body).unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    for k in keys {
        for private in ["d", "p", "q", "dp", "dq", "qi"] {
            assert!(k.get(private).is_none(), "private member {private} published");
        }
        assert_eq!(k["use"], "sig");
        assert_eq!(k["kid"].as_str().unwrap().len(), 43, "RFC 7638 SHA-256 thumbprint");
    }
    let algs: Vec<&str> = keys.iter().map(|k| k["alg"].as_str().unwrap()).collect();
    assert!(algs.contains(&"RS256") && algs.contains(&"ES256"));
}

async fn health_and_readiness(h: &TestServer) {
    let b = h.browser();
    assert_eq!(b.get("/healthz").await.status, 200);
    assert_eq!(b.get("/readyz").await.status, 200);
}

e2e!(
    discovery_is_complete_and_consistent,
    every_advertised_url_answers,
    jwks_publishes_public_keys_only,
    health_and_readiness
);
