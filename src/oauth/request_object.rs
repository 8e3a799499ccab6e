//! Request objects by value (RFC 9101, OIDC Core §6.1): a JWT whose claims are the
//! authorization request. Pure: the caller finds the client's keys (fetching a `jwks_uri`).
//!
//! Which objects are accepted (OIDC Core §6.1, OIDC Registration §2
//! `request_object_signing_alg`): a client that registered an algorithm must use exactly that
//! one; a client that registered none may send any of [`ALGS`], `none` included, since the
//! default "is that any algorithm supported by the OP and the RP MAY be used". An unsigned
//! object proves nothing more than query parameters would, so it gets no more trust than they
//! do: the same checks run on its parameters afterwards.

use serde_json::Value;

use super::jose::{JwsError, PublicJwk, UnverifiedJws};
use super::{ErrorCode, OAuthError};
use crate::store::Client;

/// What `request_object_signing_alg_values_supported` advertises.
pub const ALGS: &[&str] = &["none", "RS256", "PS256", "ES256"];
/// A request object is a few parameters and a signature: 16 KiB is ample.
pub const MAX_REQUEST: usize = 16 * 1024;
/// Clock skew allowed on `exp` / `nbf`.
const SKEW: i64 = 60;

/// Claims of the JWT itself, not request parameters (RFC 9101 §4).
const JWT_CLAIMS: &[&str] = &["iss", "aud", "exp", "iat", "nbf", "jti", "sub"];

pub fn invalid(why: &'static str) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidRequestObject, why)
}

/// A decoded object and whether it needs a signature check.
pub struct Opened<'a> {
    pub jws: UnverifiedJws<'a>,
    pub signed: bool,
}

/// Decodes the object and applies the client's algorithm rule; the signature is checked next.
pub fn open<'a>(client: &Client, jwt: &'a str) -> Result<Opened<'a>, OAuthError> {
    if jwt.len() > MAX_REQUEST {
        return Err(invalid("request object is too large"));
    }
    let jws = super::jose::decode(jwt).map_err(|_| invalid("request object is not a JWT"))?;
    if !ALGS.contains(&jws.alg.as_str()) {
        return Err(invalid("request object alg is not supported"));
    }
    if let Some(registered) = client.meta.request_object_signing_alg.as_deref()
        && registered != jws.alg
    {
        return Err(invalid("request object alg is not the one the client registered"));
    }
    let signed = jws.alg != "none";
    // RFC 7519 §6.1: an unsecured JWT has an empty signature part.
    if !signed && !jwt.ends_with('.') {
        return Err(invalid("an unsigned request object must have an empty signature"));
    }
    Ok(Opened { jws, signed })
}

/// The signature, with the client's keys (RFC 8725 §3.1: only the asymmetric algorithms).
pub fn verify(opened: &Opened<'_>, keys: &[PublicJwk]) -> Result<(), JwsError> {
    opened.jws.verify_with_keys(keys, &ALGS[1..])
}

/// The object's parameters as request pairs, after the JWT checks: for a signed object `iss`
/// is the client and `aud` names us (RFC 9101 §4); `exp`/`nbf` when present; a `client_id`
/// inside must be the one of the query (RFC 9101 §5).
pub fn parameters(opened: &Opened<'_>, client: &Client, issuer: &str, now: i64) -> Result<Vec<(String, String)>, OAuthError> {
    let c = &opened.jws.payload;
    let text = |name: &str| c.get(name).and_then(Value::as_str);
    if opened.signed {
        if text("iss") != Some(client.client_id.as_str()) {
            return Err(invalid("request object iss must be the client_id"));
        }
        let aud_ok = match c.get("aud") {
            Some(Value::String(a)) => a == issuer,
            Some(Value::Array(l)) => l.iter().any(|a| a.as_str() == Some(issuer)),
            _ => false,
        };
        if !aud_ok {
            return Err(invalid("request object aud must name the issuer"));
        }
    }
    if let Some(exp) = c.get("exp") {
        if exp.as_i64().is_none_or(|e| e + SKEW <= now) {
            return Err(invalid("request object has expired"));
        }
    }
    if let Some(nbf) = c.get("nbf") {
        if nbf.as_i64().is_none_or(|n| n > now + SKEW) {
            return Err(invalid("request object is not valid yet"));
        }
    }
    if c.get("client_id").is_some() && text("client_id") != Some(client.client_id.as_str()) {
        return Err(invalid("request object client_id does not match"));
    }
    let Some(obj) = c.as_object() else {
        return Err(invalid("request object is not a JSON object"));
    };
    let mut pairs = vec![("client_id".to_owned(), client.client_id.clone())];
    for (k, v) in obj {
        if JWT_CLAIMS.contains(&k.as_str()) || k == "client_id" {
            continue;
        }
        // RFC 9101 §4: no nesting.
        if k == "request" || k == "request_uri" {
            return Err(invalid("a request object cannot hold request or request_uri"));
        }
        match v {
            Value::String(s) => pairs.push((k.clone(), s.clone())),
            Value::Number(n) => pairs.push((k.clone(), n.to_string())),
            Value::Bool(b) => pairs.push((k.clone(), b.to_string())),
            // OIDC Core §6.1: `claims` is a JSON object inside the object.
            Value::Object(_) => pairs.push((k.clone(), v.to_string())),
            // RFC 8707 `resource` may be an array of strings.
            Value::Array(items) if k == "resource" => {
                for i in items {
                    let s = i.as_str().ok_or_else(|| invalid("resource values must be strings"))?;
                    pairs.push((k.clone(), s.to_owned()));
                }
            }
            Value::Array(_) | Value::Null => return Err(invalid("request object holds a value of the wrong type")),
        }
    }
    Ok(pairs)
}
