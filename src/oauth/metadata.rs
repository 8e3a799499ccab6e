//! The discovery document (OIDC Discovery 1.0 §3, RFC 8414 §2): only what clef really does.

use serde_json::{Value, json};

use super::authorize::RESPONSE_MODES;
use super::claims::ACR_SUPPORTED;
use super::{registration, scope, token};
use crate::config::{Config, Registration};
use crate::i18n::LOCALES;
use crate::paths;

/// Every endpoint URL the document advertises, for the test that calls each of them.
pub const ENDPOINT_FIELDS: &[&str] = &[
    "authorization_endpoint",
    "token_endpoint",
    "userinfo_endpoint",
    "jwks_uri",
    "end_session_endpoint",
    "revocation_endpoint",
    "introspection_endpoint",
];

pub fn document(config: &Config) -> Value {
    let url = |p: &str| config.endpoint(p);
    let mut doc = json!({
        "issuer": config.issuer,
        "authorization_endpoint": url(paths::AUTHORIZE),
        "token_endpoint": url(paths::TOKEN),
        "userinfo_endpoint": url(paths::USERINFO),
        "jwks_uri": url(paths::JWKS),
        "end_session_endpoint": url(paths::END_SESSION),
        "revocation_endpoint": url(paths::REVOKE),
        "introspection_endpoint": url(paths::INTROSPECT),
        "scopes_supported": scope::SUPPORTED,
        "response_types_supported": ["code"],
        "response_modes_supported": RESPONSE_MODES,
        "grant_types_supported": token::GRANT_TYPES,
        "subject_types_supported": ["public", "pairwise"],
        "id_token_signing_alg_values_supported": registration::SIGNING_ALGS,
        "userinfo_signing_alg_values_supported": registration::SIGNING_ALGS,
        "token_endpoint_auth_methods_supported": registration::AUTH_METHODS,
        "token_endpoint_auth_signing_alg_values_supported": registration::AUTH_SIGNING_ALGS,
        "revocation_endpoint_auth_methods_supported": registration::AUTH_METHODS,
        "revocation_endpoint_auth_signing_alg_values_supported": registration::AUTH_SIGNING_ALGS,
        // RFC 7662 §2.1: introspection needs a confidential client.
        "introspection_endpoint_auth_methods_supported": &registration::AUTH_METHODS[..4],
        "introspection_endpoint_auth_signing_alg_values_supported": registration::AUTH_SIGNING_ALGS,
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": [
            "iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "at_hash", "azp", "acr", "amr",
            "name", "locale", "updated_at", "email", "email_verified", "phone_number", "phone_number_verified",
            "address", "roles", "sid"
        ],
        "claim_types_supported": ["normal"],
        "claims_parameter_supported": true,
        // reqobj: by value and by reference (RFC 9101 §5.1, §5.2), both per OIDC Core §6.
        "request_parameter_supported": true,
        "request_object_signing_alg_values_supported": super::request_object::ALGS,
        "request_uri_parameter_supported": true,
        "require_request_uri_registration": false,
        "acr_values_supported": ACR_SUPPORTED,
        "prompt_values_supported": ["none", "login", "consent", "select_account"],
        "display_values_supported": ["page", "popup", "touch", "wap"],
        "ui_locales_supported": LOCALES,
        "claims_locales_supported": LOCALES,
        "authorization_response_iss_parameter_supported": true,
        "frontchannel_logout_supported": false,
        // Back-Channel Logout 1.0 §2.1: logout tokens, and `sid` in them and in ID tokens.
        "backchannel_logout_supported": true,
        "backchannel_logout_session_supported": true,
    });
    // dcr: RFC 7591 §3 / OIDC Discovery §3: only when registration is on.
    if config.registration != Registration::Off
        && let Some(obj) = doc.as_object_mut()
    {
        obj.insert("registration_endpoint".into(), url(paths::REGISTER).into());
    }
    doc
}
