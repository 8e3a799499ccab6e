//! Client metadata for dynamic registration (RFC 7591 §2, OIDC Registration §2) and the
//! answers of RFC 7591 §3.2 and RFC 7592 §3. Pure: fetching documents is the caller's.

use serde_json::{Map, Value, json};
use url::Url;

use super::error::ErrorCode;
use super::jose::{CLIENT_KEY_ALGS, CLIENT_SECRET_ALGS, parse_jwks};
use super::{OAuthError, redirect_uri};
use crate::store::{Client, ClientMeta};

/// The methods clef implements at the token, revocation and introspection endpoints.
pub const AUTH_METHODS: &[&str] = &[
    "client_secret_basic",
    "client_secret_post",
    "client_secret_jwt",
    "private_key_jwt",
    "none",
];
/// The algorithms clef verifies in a client assertion (discovery's
/// `token_endpoint_auth_signing_alg_values_supported`).
pub const AUTH_SIGNING_ALGS: &[&str] = &["RS256", "PS256", "ES256", "HS256"];
/// What clef signs ID tokens and userinfo with (src/keys.rs).
pub const SIGNING_ALGS: &[&str] = &["RS256", "ES256"];
pub const GRANT_TYPES: &[&str] = &["authorization_code", "refresh_token"];

fn meta_err(d: impl Into<String>) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidClientMetadata, d.into())
}

fn uri_err(d: impl Into<String>) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidRedirectUri, d.into())
}

/// Registration metadata once every rule of RFC 7591 §2 and OIDC Registration §2 held.
#[derive(Debug, Clone)]
pub struct ValidMetadata {
    pub client_name: Option<String>,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub grant_types: Vec<String>,
    pub auth_method: String,
    pub id_token_alg: String,
    pub meta: ClientMeta,
    pub backchannel_logout_uri: Option<String>,
    pub backchannel_logout_session_required: bool,
}

impl ValidMetadata {
    pub fn is_public(&self) -> bool {
        self.auth_method == "none"
    }
    /// The display name: what the client registered, or its redirect URI's host.
    pub fn name(&self, client_id: &str) -> String {
        self.client_name.clone().unwrap_or_else(|| {
            self.redirect_uris
                .first()
                .and_then(|u| Url::parse(u).ok())
                .and_then(|u| u.host_str().map(str::to_owned))
                .unwrap_or_else(|| client_id.to_owned())
        })
    }
}

fn opt_str<'a>(doc: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, OAuthError> {
    match doc.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.chars().any(char::is_control) => Err(meta_err(format!("{name} holds a control character"))),
        Some(Value::String(s)) if s.len() > 2048 => Err(meta_err(format!("{name} is too long"))),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(meta_err(format!("{name} must be a string"))),
    }
}

fn str_list(doc: &Map<String, Value>, name: &str) -> Result<Option<Vec<String>>, OAuthError> {
    match doc.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) if items.len() <= 100 => items
            .iter()
            .map(|v| match v.as_str() {
                Some(s) if !s.chars().any(char::is_control) && s.len() <= 2048 => Ok(s.to_owned()),
                _ => Err(meta_err(format!("{name} must be an array of strings"))),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(meta_err(format!("{name} must be an array of strings"))),
    }
}

fn opt_bool(doc: &Map<String, Value>, name: &str) -> Result<bool, OAuthError> {
    match doc.get(name) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(meta_err(format!("{name} must be a boolean"))),
    }
}

/// A web page URL shown to users (logo, policy, terms): http or https, absolute.
fn web_url(doc: &Map<String, Value>, name: &str) -> Result<Option<String>, OAuthError> {
    let Some(s) = opt_str(doc, name)? else { return Ok(None) };
    match Url::parse(s) {
        Ok(u) if matches!(u.scheme(), "https" | "http") => Ok(Some(s.to_owned())),
        _ => Err(meta_err(format!("{name} must be an absolute http or https URL"))),
    }
}

/// Whether a logo may be shown as an `<img>`: https, or loopback http (RFC 8252 §8.3's rule
/// for redirect URIs), so a page of ours never loads a mixed-content image from the network.
pub fn displayable_logo(uri: &str) -> bool {
    Url::parse(uri).is_ok_and(|u| u.scheme() == "https" || (u.scheme() == "http" && crate::remote::is_loopback(&u)))
}

/// RFC 7591 §2 and §3.2.2. Unknown fields are ignored (§2); `check_fetchable` is the rule
/// for URIs clef will fetch (`jwks_uri`, `sector_identifier_uri`).
pub fn validate(doc: &Value, check_fetchable: &dyn Fn(&str) -> bool) -> Result<ValidMetadata, OAuthError> {
    let doc = doc.as_object().ok_or_else(|| meta_err("the metadata must be a JSON object"))?;

    let grant_types = str_list(doc, "grant_types")?.unwrap_or_else(|| vec!["authorization_code".into()]);
    if let Some(g) = grant_types.iter().find(|g| !GRANT_TYPES.contains(&g.as_str())) {
        return Err(meta_err(format!("grant_type {g:?} is not supported")));
    }
    let response_types = str_list(doc, "response_types")?.unwrap_or_else(|| vec!["code".into()]);
    if let Some(r) = response_types.iter().find(|r| r.as_str() != "code") {
        return Err(meta_err(format!("response_type {r:?} is not supported; only code is")));
    }
    // RFC 7591 §2.1: response type code goes with the authorization_code grant.
    let has_code = grant_types.iter().any(|g| g == "authorization_code");
    if response_types.is_empty() == has_code {
        return Err(meta_err("response_types code and grant_types authorization_code go together"));
    }

    let redirect_uris = str_list(doc, "redirect_uris")?.unwrap_or_default();
    if has_code && redirect_uris.is_empty() {
        return Err(uri_err("redirect_uris is required for the authorization code flow"));
    }
    for uri in &redirect_uris {
        redirect_uri::check_registrable(uri).map_err(uri_err)?;
    }
    let post_logout_redirect_uris = str_list(doc, "post_logout_redirect_uris")?.unwrap_or_default();
    for uri in &post_logout_redirect_uris {
        redirect_uri::check_registrable(uri).map_err(|e| meta_err(format!("post_logout_redirect_uris: {e}")))?;
    }

    let auth_method = opt_str(doc, "token_endpoint_auth_method")?
        .unwrap_or("client_secret_basic")
        .to_owned();
    if !AUTH_METHODS.contains(&auth_method.as_str()) {
        return Err(meta_err(format!("token_endpoint_auth_method {auth_method:?} is not supported")));
    }
    let jwks = match doc.get("jwks") {
        None | Some(Value::Null) => None,
        Some(v) => {
            parse_jwks(v).map_err(|e| meta_err(format!("jwks: {e}")))?;
            Some(v.clone())
        }
    };
    let jwks_uri = opt_str(doc, "jwks_uri")?.map(str::to_owned);
    if jwks.is_some() && jwks_uri.is_some() {
        // RFC 7591 §2: "MUST NOT both be present".
        return Err(meta_err("use jwks or jwks_uri, not both"));
    }
    if let Some(u) = &jwks_uri
        && !check_fetchable(u)
    {
        return Err(meta_err("jwks_uri must be an https URL"));
    }
    if auth_method == "private_key_jwt" && jwks.is_none() && jwks_uri.is_none() {
        return Err(meta_err("private_key_jwt needs jwks or jwks_uri"));
    }
    let signing_alg = opt_str(doc, "token_endpoint_auth_signing_alg")?.map(str::to_owned);
    if let Some(a) = &signing_alg {
        let fits = match auth_method.as_str() {
            "private_key_jwt" => CLIENT_KEY_ALGS.contains(&a.as_str()),
            "client_secret_jwt" => CLIENT_SECRET_ALGS.contains(&a.as_str()),
            _ => false,
        };
        if !fits {
            return Err(meta_err(format!(
                "token_endpoint_auth_signing_alg {a:?} does not fit token_endpoint_auth_method {auth_method}"
            )));
        }
    }

    let signing = |name: &str| -> Result<Option<String>, OAuthError> {
        match opt_str(doc, name)? {
            None => Ok(None),
            Some(a) if SIGNING_ALGS.contains(&a) => Ok(Some(a.to_owned())),
            // `none` included: an unsigned ID token proves nothing (OIDC Core §2 allows it
            // only for flows clef does not offer).
            Some(a) => Err(meta_err(format!("{name} {a:?} is not supported (RS256 or ES256)"))),
        }
    };
    let id_token_alg = signing("id_token_signed_response_alg")?.unwrap_or_else(|| "RS256".into());
    let userinfo_alg = signing("userinfo_signed_response_alg")?;
    // reqobj: OIDC Registration §2; `none` is a registered choice (OIDC Core §6.1).
    let request_object_alg = match opt_str(doc, "request_object_signing_alg")? {
        None => None,
        Some(a) if super::request_object::ALGS.contains(&a) => Some(a.to_owned()),
        Some(a) => return Err(meta_err(format!("request_object_signing_alg {a:?} is not supported"))),
    };
    for name in [
        "id_token_encrypted_response_alg",
        "userinfo_encrypted_response_alg",
        "request_object_encryption_alg",
        "authorization_encrypted_response_alg",
    ] {
        if opt_str(doc, name)?.is_some() {
            return Err(meta_err(format!("{name}: encrypted responses are not supported")));
        }
    }

    let subject_type = match opt_str(doc, "subject_type")? {
        None | Some("public") => None,
        Some("pairwise") => Some("pairwise".to_owned()),
        Some(other) => return Err(meta_err(format!("subject_type {other:?} is neither public nor pairwise"))),
    };
    let sector_identifier_uri = opt_str(doc, "sector_identifier_uri")?.map(str::to_owned);
    if let Some(u) = &sector_identifier_uri
        && !check_fetchable(u)
    {
        return Err(meta_err("sector_identifier_uri must be an https URL"));
    }

    let default_max_age = match doc.get("default_max_age") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_i64()
                .filter(|n| *n >= 0)
                .ok_or_else(|| meta_err("default_max_age must be a non-negative integer"))?,
        ),
    };
    let client_scope = opt_str(doc, "scope")?.map(str::to_owned);
    if let Some(s) = &client_scope
        && s.split(' ')
            .any(|t| t.is_empty() || !t.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b'"' && b != b'\\'))
    {
        return Err(meta_err("scope must be space-separated scope tokens"));
    }
    let contacts = str_list(doc, "contacts")?.unwrap_or_default();
    let client_name = opt_str(doc, "client_name")?.map(str::trim).filter(|s| !s.is_empty());
    if client_name.is_some_and(|n| n.chars().count() > 256) {
        return Err(meta_err("client_name is too long"));
    }

    let backchannel_logout_uri = opt_str(doc, "backchannel_logout_uri")?.map(str::to_owned);
    if let Some(u) = &backchannel_logout_uri {
        // OIDC Back-Channel Logout §2.2: absolute, no fragment; https unless on loopback.
        let ok = Url::parse(u)
            .is_ok_and(|p| p.fragment().is_none() && (p.scheme() == "https" || (p.scheme() == "http" && crate::remote::is_loopback(&p))));
        if !ok {
            return Err(meta_err("backchannel_logout_uri must be an absolute https URL without a fragment"));
        }
    }

    Ok(ValidMetadata {
        client_name: client_name.map(str::to_owned),
        redirect_uris,
        post_logout_redirect_uris,
        grant_types,
        auth_method: auth_method.clone(),
        id_token_alg,
        meta: ClientMeta {
            token_endpoint_auth_method: Some(auth_method),
            jwks,
            jwks_uri,
            logo_uri: web_url(doc, "logo_uri")?,
            policy_uri: web_url(doc, "policy_uri")?,
            tos_uri: web_url(doc, "tos_uri")?,
            client_uri: web_url(doc, "client_uri")?,
            contacts,
            scope: client_scope,
            default_max_age,
            require_auth_time: opt_bool(doc, "require_auth_time")?,
            subject_type,
            sector_identifier_uri,
            sector: None,
            userinfo_signed_response_alg: userinfo_alg,
            token_endpoint_auth_signing_alg: signing_alg,
            request_object_signing_alg: request_object_alg,
        },
        backchannel_logout_uri,
        backchannel_logout_session_required: opt_bool(doc, "backchannel_logout_session_required")?,
    })
}

fn host_of(uri: &str) -> Option<String> {
    let u = Url::parse(uri).ok()?;
    // A native app's private-use scheme has no host: the scheme names the app (RFC 8252 §7.1).
    Some(u.host_str().map(str::to_owned).unwrap_or_else(|| u.scheme().to_owned()))
}

/// OIDC Core §8.1: the sector of a pairwise client. With a `sector_identifier_uri`, its host,
/// once the document it holds (`listed`) contains every redirect URI; without one, the one
/// host of the redirect URIs.
pub fn sector(v: &ValidMetadata, listed: Option<&Value>) -> Result<String, OAuthError> {
    match (&v.meta.sector_identifier_uri, listed) {
        (Some(uri), Some(doc)) => {
            let list: Vec<&str> = doc
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .ok_or_else(|| meta_err("sector_identifier_uri must hold a JSON array of URIs"))?;
            if let Some(missing) = v.redirect_uris.iter().find(|r| !list.contains(&r.as_str())) {
                return Err(meta_err(format!("sector_identifier_uri does not list the redirect URI {missing}")));
            }
            host_of(uri).ok_or_else(|| meta_err("sector_identifier_uri has no host"))
        }
        (Some(_), None) => Err(meta_err("sector_identifier_uri could not be read")),
        (None, _) => {
            let mut hosts: Vec<String> = v.redirect_uris.iter().filter_map(|u| host_of(u)).collect();
            hosts.sort();
            hosts.dedup();
            match hosts.as_slice() {
                [one] => Ok(one.clone()),
                [] => Err(meta_err("a pairwise client needs redirect_uris or a sector_identifier_uri")),
                _ => Err(meta_err("redirect URIs on several hosts need a sector_identifier_uri")),
            }
        }
    }
}

/// The client information response (RFC 7591 §3.2.1, RFC 7592 §3): the metadata as stored,
/// plus the credentials that exist only at this moment (`secret`, `registration_token`).
pub fn client_information(c: &Client, secret: Option<&str>, registration_token: Option<&str>, client_uri: &str) -> Value {
    let mut out = json!({
        "client_id": c.client_id,
        "client_id_issued_at": c.created_at,
        "client_name": c.name,
        "redirect_uris": c.redirect_uris,
        "grant_types": c.grant_types,
        "response_types": if c.allows_grant("authorization_code") { vec!["code"] } else { vec![] },
        "token_endpoint_auth_method": c.meta.token_endpoint_auth_method.as_deref().unwrap_or(if c.is_public { "none" } else { "client_secret_basic" }),
        "id_token_signed_response_alg": c.id_token_alg,
        "subject_type": c.meta.subject_type.as_deref().unwrap_or("public"),
        "registration_client_uri": client_uri,
    });
    let Some(obj) = out.as_object_mut() else { return out };
    if let Ok(Value::Object(meta)) = serde_json::to_value(&c.meta) {
        for (k, v) in meta {
            // The computed sector is ours, not registered metadata.
            if k != "sector" && k != "token_endpoint_auth_method" && k != "subject_type" {
                obj.insert(k, v);
            }
        }
    }
    if !c.post_logout_redirect_uris.is_empty() {
        obj.insert("post_logout_redirect_uris".into(), json!(c.post_logout_redirect_uris));
    }
    if let Some(u) = &c.backchannel_logout_uri {
        obj.insert("backchannel_logout_uri".into(), json!(u));
        obj.insert(
            "backchannel_logout_session_required".into(),
            json!(c.backchannel_logout_session_required),
        );
    }
    if let Some(s) = secret {
        obj.insert("client_secret".into(), json!(s));
    }
    if c.secret_hash.is_some() {
        // RFC 7591 §3.2.1: 0 means the secret does not expire.
        obj.insert("client_secret_expires_at".into(), json!(0));
    }
    if let Some(t) = registration_token {
        obj.insert("registration_access_token".into(), json!(t));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(doc: Value) -> Result<ValidMetadata, OAuthError> {
        validate(&doc, &|u| u.starts_with("https://"))
    }

    #[test]
    fn defaults_and_unknown_fields() {
        let v = run(json!({"redirect_uris": ["https://rp.example/cb"], "whatever": 1})).unwrap();
        assert_eq!(v.auth_method, "client_secret_basic");
        assert_eq!(v.grant_types, ["authorization_code"]);
        assert_eq!(v.id_token_alg, "RS256");
        assert_eq!(v.name("x"), "rp.example");
    }

    #[test]
    fn refusals() {
        for (doc, code, why) in [
            (json!({}), ErrorCode::InvalidRedirectUri, "redirect_uris is required"),
            (
                json!({"redirect_uris": ["https://a/cb#f"]}),
                ErrorCode::InvalidRedirectUri,
                "fragment",
            ),
            (
                json!({"redirect_uris": ["http://rp.example/cb"]}),
                ErrorCode::InvalidRedirectUri,
                "plain http",
            ),
            (json!({"redirect_uris": ["/cb"]}), ErrorCode::InvalidRedirectUri, "absolute"),
            (json!({"redirect_uris": "https://a/cb"}), ErrorCode::InvalidClientMetadata, "array"),
            (
                json!({"redirect_uris": ["https://a/cb"], "response_types": ["id_token"]}),
                ErrorCode::InvalidClientMetadata,
                "only code",
            ),
            (
                json!({"redirect_uris": ["https://a/cb"], "grant_types": ["implicit"]}),
                ErrorCode::InvalidClientMetadata,
                "not supported",
            ),
            (
                json!({"redirect_uris": ["https://a/cb"], "grant_types": ["refresh_token"]}),
                ErrorCode::InvalidClientMetadata,
                "together",
            ),
            (
                json!({"redirect_uris": ["https://a/cb"], "id_token_signed_response_alg": "none"}),
                ErrorCode::InvalidClientMetadata,
                "RS256 or ES256",
            ),
            (
                json!({"redirect_uris": ["https://a/cb"], "userinfo_signed_response_alg": "HS256"}),
                ErrorCode::InvalidClientMetadata,
                "RS256 or ES256",
            ),
            (
                json!({"redirect_uris": ["https://a/cb"], "token_endpoint_auth_method": "private_key_jwt"}),
                ErrorCode::InvalidClientMetadata,
                "needs jwks",
            ),
            (
                json!({"redirect_uris": ["https://a/cb"], "token_endpoint_auth_method": "tls_client_auth"}),
                ErrorCode::InvalidClientMetadata,
                "not supported",
            ),
            (
                json!({"redirect_uris": ["https://a/cb"], "jwks_uri": "http://a/jwks"}),
                ErrorCode::InvalidClientMetadata,
                "https",
            ),
            (
                json!({"redirect_uris": ["https://a/cb"], "subject_type": "x"}),
                ErrorCode::InvalidClientMetadata,
                "pairwise",
            ),
            (
                json!({"redirect_uris": ["https://a/cb"], "default_max_age": -1}),
                ErrorCode::InvalidClientMetadata,
                "non-negative",
            ),
            (
                json!({"redirect_uris": ["https://a/cb"], "logo_uri": "javascript:alert(1)"}),
                ErrorCode::InvalidClientMetadata,
                "http or https",
            ),
            (
                json!({"redirect_uris": ["https://a/cb"], "backchannel_logout_uri": "https://a/x#y"}),
                ErrorCode::InvalidClientMetadata,
                "fragment",
            ),
            (json!(["x"]), ErrorCode::InvalidClientMetadata, "object"),
        ] {
            let e = run(doc.clone()).unwrap_err();
            assert_eq!(e.code, code, "{doc}");
            assert!(e.description.contains(why), "{doc}: {}", e.description);
        }
    }

    #[test]
    fn sectors() {
        let one = run(json!({"redirect_uris": ["https://a.example/1", "https://a.example/2"], "subject_type": "pairwise"})).unwrap();
        assert_eq!(sector(&one, None).unwrap(), "a.example");
        let two = run(json!({"redirect_uris": ["https://a.example/1", "https://b.example/2"], "subject_type": "pairwise"})).unwrap();
        assert!(sector(&two, None).is_err());
        let with = run(
            json!({"redirect_uris": ["https://a.example/1", "https://b.example/2"], "subject_type": "pairwise",
            "sector_identifier_uri": "https://s.example/list"}),
        )
        .unwrap();
        assert_eq!(
            sector(&with, Some(&json!(["https://a.example/1", "https://b.example/2"]))).unwrap(),
            "s.example"
        );
        assert!(sector(&with, Some(&json!(["https://a.example/1"]))).is_err());
    }
}
