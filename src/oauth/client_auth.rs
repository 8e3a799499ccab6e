//! Client authentication at the token, revocation and introspection endpoints (RFC 6749 §2.3).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use serde_json::Value;

use super::OAuthError;
use super::jose::{CLIENT_KEY_ALGS, JwsError, PublicJwk};
use crate::secret::{ct_eq, sha256_b64};
use crate::store::Client;

/// The credentials a request carried, before we know whether they are right.
#[derive(Debug, PartialEq, Eq)]
pub enum Presented {
    Basic {
        client_id: String,
        secret: String,
    },
    Post {
        client_id: String,
        secret: String,
    },
    None {
        client_id: String,
    },
    /// RFC 7523 §2.2: `client_assertion`, a JWT signed with the client's key or secret.
    Jwt {
        client_id: String,
        assertion: String,
    },
}

impl Presented {
    pub fn client_id(&self) -> &str {
        match self {
            Presented::Basic { client_id, .. }
            | Presented::Post { client_id, .. }
            | Presented::None { client_id }
            | Presented::Jwt { client_id, .. } => client_id,
        }
    }
    pub fn used_basic(&self) -> bool {
        matches!(self, Presented::Basic { .. })
    }
}

/// Decodes `Authorization: Basic …`; id and secret are form-urlencoded inside (RFC 6749 §2.3.1).
pub fn parse_basic(header: &str) -> Result<(String, String), OAuthError> {
    let bad = || OAuthError::invalid_client("malformed Basic authorization header");
    let (scheme, rest) = header.trim().split_once(' ').ok_or_else(bad)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(bad());
    }
    let raw = STANDARD.decode(rest.trim()).map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    let (id, secret) = text.split_once(':').ok_or_else(bad)?;
    let decode = |s: &str| {
        form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
    };
    let (id, secret) = (decode(id).ok_or_else(bad)?, decode(secret).ok_or_else(bad)?);
    // Same rule as every other parameter: no control characters (NUL would reach the database).
    if id.chars().chain(secret.chars()).any(char::is_control) {
        return Err(bad());
    }
    Ok((id, secret))
}

/// Works out which method the request used; more than one is an error (RFC 6749 §2.3).
pub fn presented(basic: Option<(String, String)>, body_id: Option<&str>, body_secret: Option<&str>) -> Result<Presented, OAuthError> {
    match (basic, body_id, body_secret) {
        (Some(_), _, Some(_)) => Err(OAuthError::invalid_request("use one client authentication method, not several")),
        (Some((id, _)), Some(body), None) if body != id => Err(OAuthError::invalid_request(
            "client_id in the body differs from the authenticated client",
        )),
        (Some((client_id, secret)), _, None) => Ok(Presented::Basic { client_id, secret }),
        (None, Some(id), Some(secret)) => Ok(Presented::Post {
            client_id: id.to_owned(),
            secret: secret.to_owned(),
        }),
        (None, Some(id), None) => Ok(Presented::None { client_id: id.to_owned() }),
        (None, None, _) => Err(OAuthError::invalid_client("client authentication required")),
    }
}

/// Checks the presented credentials against the registered client. A JWT assertion is only
/// matched to its method here; its signature is [`verify_assertion`]'s business.
pub fn authenticate(client: Option<&Client>, p: &Presented) -> Result<(), OAuthError> {
    let failed = || OAuthError::invalid_client("client authentication failed");
    let client = client.ok_or_else(failed)?;
    // RFC 7591 §2: a registered method is the only one accepted; operator-created clients
    // (no method recorded) take Basic or POST, as before.
    let method = client.meta.token_endpoint_auth_method.as_deref();
    let allowed = match (p, method) {
        (_, None) => !matches!(p, Presented::Jwt { .. }),
        (Presented::Basic { .. }, Some(m)) => m == "client_secret_basic",
        (Presented::Post { .. }, Some(m)) => m == "client_secret_post",
        (Presented::None { .. }, Some(m)) => m == "none",
        (Presented::Jwt { .. }, Some(m)) => m == "client_secret_jwt" || m == "private_key_jwt",
    };
    if !allowed {
        return Err(OAuthError::invalid_client(
            "client authentication failed: not the token_endpoint_auth_method the client registered",
        ));
    }
    match (p, &client.secret_hash) {
        (Presented::None { .. }, None) if client.is_public => Ok(()),
        (Presented::Basic { secret, .. } | Presented::Post { secret, .. }, Some(hash)) if !client.is_public => {
            if ct_eq(&sha256_b64(secret), hash) { Ok(()) } else { Err(failed()) }
        }
        (Presented::Jwt { .. }, _) if !client.is_public => Ok(()),
        _ => Err(failed()),
    }
}

/// RFC 7523 §2.2.
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// How far ahead an assertion may expire: a client signs one per request, so a long-lived one
/// is a token that could be replayed elsewhere until it ends (RFC 7523 §3 item 4 lets the
/// server bound it).
pub const MAX_ASSERTION_LIFETIME: i64 = 300;
/// Clock skew allowed on `iat` and `nbf`.
const SKEW: i64 = 60;

/// The `client_id` an assertion names as its issuer (RFC 7523 §3 items 1 and 2), read before
/// the signature is checked only to find the client and its keys.
pub fn assertion_client_id(assertion: &str) -> Result<String, OAuthError> {
    let bad = || OAuthError::invalid_client("client_assertion is not a signed JWT naming its client");
    let jws = super::jose::decode(assertion).map_err(|_| bad())?;
    jws.payload.get("sub").and_then(Value::as_str).map(str::to_owned).ok_or_else(bad)
}

/// What a verified assertion leaves to record: its `jti`, remembered until `exp`.
#[derive(Debug, PartialEq, Eq)]
pub struct VerifiedAssertion {
    pub jti: String,
    pub exp: i64,
}

/// The key material an assertion is checked with.
pub enum AssertionKey<'a> {
    /// `private_key_jwt`: the client's JWK Set.
    Keys(&'a [PublicJwk]),
    /// `client_secret_jwt`: the client secret, as HS256 key.
    Secret(&'a [u8]),
}

/// RFC 7523 §3 and OIDC Core §9: signature, then `iss` = `sub` = client_id, `aud` naming us,
/// a bounded `exp`, a sane `iat`, and a `jti` (whose first use the caller records).
/// `audiences` are the values accepted in `aud`: the token endpoint URL and the issuer.
pub fn verify_assertion(
    client: &Client,
    assertion: &str,
    key: AssertionKey<'_>,
    audiences: &[&str],
    now: i64,
) -> Result<VerifiedAssertion, AssertionError> {
    let jws = super::jose::decode(assertion).map_err(|_| AssertionError::Invalid("client_assertion is malformed"))?;
    let signed_alg = client.meta.token_endpoint_auth_signing_alg.as_deref();
    if signed_alg.is_some_and(|a| a != jws.alg) {
        return Err(AssertionError::Invalid(
            "client_assertion uses another alg than the client registered",
        ));
    }
    let checked = match key {
        AssertionKey::Keys(keys) => jws.verify_with_keys(keys, CLIENT_KEY_ALGS),
        AssertionKey::Secret(secret) => jws.verify_with_secret(secret),
    };
    match checked {
        Ok(()) => {}
        Err(JwsError::UnknownKey) => return Err(AssertionError::UnknownKey),
        Err(JwsError::Algorithm) => return Err(AssertionError::Invalid("client_assertion alg is not allowed for this client")),
        Err(_) => return Err(AssertionError::Invalid("client_assertion signature is invalid")),
    }
    let c = &jws.payload;
    let text = |name: &str| c.get(name).and_then(Value::as_str);
    let int = |name: &str| c.get(name).and_then(Value::as_i64);
    if text("iss") != Some(client.client_id.as_str()) || text("sub") != Some(client.client_id.as_str()) {
        return Err(AssertionError::Invalid("client_assertion iss and sub must be the client_id"));
    }
    let aud_ok = match c.get("aud") {
        Some(Value::String(a)) => audiences.contains(&a.as_str()),
        Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).any(|a| audiences.contains(&a)),
        _ => false,
    };
    if !aud_ok {
        return Err(AssertionError::Invalid(
            "client_assertion aud must name the token endpoint or the issuer",
        ));
    }
    let exp = int("exp").ok_or(AssertionError::Invalid("client_assertion exp is required"))?;
    if exp <= now {
        return Err(AssertionError::Invalid("client_assertion has expired"));
    }
    if exp > now + MAX_ASSERTION_LIFETIME + SKEW {
        return Err(AssertionError::Invalid("client_assertion exp is too far in the future"));
    }
    if let Some(iat) = c.get("iat") {
        let iat = iat
            .as_i64()
            .ok_or(AssertionError::Invalid("client_assertion iat is not a number"))?;
        if iat > now + SKEW || iat < now - MAX_ASSERTION_LIFETIME - SKEW {
            return Err(AssertionError::Invalid("client_assertion iat is not recent"));
        }
    }
    if int("nbf").is_some_and(|nbf| nbf > now + SKEW) {
        return Err(AssertionError::Invalid("client_assertion is not valid yet"));
    }
    let jti = text("jti")
        .filter(|j| !j.is_empty() && j.len() <= 256)
        .ok_or(AssertionError::Invalid("client_assertion jti is required"))?;
    Ok(VerifiedAssertion { jti: jti.to_owned(), exp })
}

#[derive(Debug, PartialEq, Eq)]
pub enum AssertionError {
    /// No key of the client's set fits: the caller may fetch its `jwks_uri` again.
    UnknownKey,
    Invalid(&'static str),
}

impl From<AssertionError> for OAuthError {
    fn from(e: AssertionError) -> Self {
        match e {
            AssertionError::UnknownKey => OAuthError::invalid_client("client_assertion is signed with an unknown key"),
            AssertionError::Invalid(why) => OAuthError::invalid_client(why),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oauth::ErrorCode;

    fn client(public: bool) -> Client {
        Client {
            client_id: "c1".into(),
            secret_hash: (!public).then(|| sha256_b64("s3cret")),
            name: "c".into(),
            redirect_uris: vec![],
            post_logout_redirect_uris: vec![],
            grant_types: vec![],
            is_public: public,
            skip_consent: false,
            id_token_alg: "RS256".into(),
            require_2fa: false,
            created_at: 0,
            meta: Default::default(),
            registration_token_hash: None,
            secret_sealed: None,
            backchannel_logout_uri: None,
            backchannel_logout_session_required: false,
            scopes: vec![],
            resources: vec![],
            access_token_alg: "RS256".into(),
        }
    }

    #[test]
    fn basic_is_urldecoded() {
        let h = format!("Basic {}", STANDARD.encode("my%20id:p%3Ass"));
        assert_eq!(parse_basic(&h).unwrap(), ("my id".to_owned(), "p:ss".to_owned()));
        assert_eq!(parse_basic("Bearer x").unwrap_err().code, ErrorCode::InvalidClient);
    }

    #[test]
    fn method_detection() {
        let basic = Some(("c1".to_owned(), "s".to_owned()));
        assert!(presented(basic.clone(), None, None).unwrap().used_basic());
        assert_eq!(presented(basic, None, Some("s")).unwrap_err().code, ErrorCode::InvalidRequest);
        assert_eq!(presented(None, None, None).unwrap_err().code, ErrorCode::InvalidClient);
        assert_eq!(
            presented(None, Some("c1"), None).unwrap(),
            Presented::None { client_id: "c1".into() }
        );
    }

    #[test]
    fn secrets_and_public_clients() {
        let ok = Presented::Post {
            client_id: "c1".into(),
            secret: "s3cret".into(),
        };
        let wrong = Presented::Post {
            client_id: "c1".into(),
            secret: "nope".into(),
        };
        let none = Presented::None { client_id: "c1".into() };
        authenticate(Some(&client(false)), &ok).unwrap();
        authenticate(Some(&client(true)), &none).unwrap();
        for (c, p) in [
            (Some(client(false)), &wrong),
            (Some(client(false)), &none),
            (Some(client(true)), &ok),
            (None, &ok),
        ] {
            assert_eq!(authenticate(c.as_ref(), p).unwrap_err().code, ErrorCode::InvalidClient);
        }
    }
}
