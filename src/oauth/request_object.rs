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
    if let Some(exp) = c.get("exp")
        && exp.as_i64().is_none_or(|e| e + SKEW <= now)
    {
        return Err(invalid("request object has expired"));
    }
    if let Some(nbf) = c.get("nbf")
        && nbf.as_i64().is_none_or(|n| n > now + SKEW)
    {
        return Err(invalid("request object is not valid yet"));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::b64url;

    fn client(registered: Option<&str>) -> Client {
        let meta = crate::store::ClientMeta {
            request_object_signing_alg: registered.map(str::to_owned),
            ..Default::default()
        };
        Client {
            client_id: "c1".into(),
            secret_hash: None,
            name: "c".into(),
            redirect_uris: vec![],
            post_logout_redirect_uris: vec![],
            grant_types: vec![],
            is_public: true,
            skip_consent: false,
            id_token_alg: "RS256".into(),
            require_2fa: false,
            created_at: 0,
            meta,
            registration_token_hash: None,
            secret_sealed: None,
            backchannel_logout_uri: None,
            backchannel_logout_session_required: false,
            scopes: vec![],
            resources: vec![],
            access_token_alg: "RS256".into(),
        }
    }

    fn jwt(alg: &str, claims: &Value, sig: &str) -> String {
        let h = serde_json::json!({ "alg": alg }).to_string();
        format!("{}.{}.{sig}", b64url(h.as_bytes()), b64url(claims.to_string().as_bytes()))
    }

    /// OIDC Core §6.1 / Registration §2: `none` unless the client registered a signing alg;
    /// a registered alg is the only one accepted.
    #[test]
    fn algorithm_rule() {
        let c = serde_json::json!({ "scope": "openid" });
        for (registered, alg, sig, ok) in [
            (None, "none", "", true),
            (Some("none"), "none", "", true),
            (Some("ES256"), "none", "", false),
            (None, "none", "c2ln", false),
            (None, "HS256", "c2ln", false),
            (Some("RS256"), "ES256", "c2ln", false),
            (Some("ES256"), "ES256", "c2ln", true),
            (None, "PS256", "c2ln", true),
        ] {
            let t = jwt(alg, &c, sig);
            let got = open(&client(registered), &t);
            assert_eq!(got.is_ok(), ok, "{registered:?} {alg} {sig:?}");
            if let Err(e) = got {
                assert_eq!(e.code, ErrorCode::InvalidRequestObject);
            }
        }
        assert!(open(&client(None), &"a".repeat(MAX_REQUEST + 1)).is_err());
    }

    #[test]
    fn parameters_replace_and_check() {
        let c = client(None);
        let t = jwt(
            "none",
            &serde_json::json!({ "client_id": "c1", "max_age": 30, "claims": {"userinfo": {"email": null}},
                "resource": ["https://a/", "https://b/"], "jti": "x" }),
            "",
        );
        let opened = open(&c, &t).unwrap();
        let p = parameters(&opened, &c, "https://idp", 0).unwrap();
        assert!(p.contains(&("client_id".into(), "c1".into())));
        assert!(p.contains(&("max_age".into(), "30".into())));
        assert!(p.contains(&("claims".into(), r#"{"userinfo":{"email":null}}"#.into())));
        assert_eq!(p.iter().filter(|(k, _)| k == "resource").count(), 2);
        assert!(!p.iter().any(|(k, _)| k == "jti"));
        for bad in [
            serde_json::json!({ "client_id": "c2" }),
            serde_json::json!({ "request_uri": "https://x" }),
            serde_json::json!({ "exp": -100 }),
            serde_json::json!({ "scope": null }),
        ] {
            let t = jwt("none", &bad, "");
            let opened = open(&c, &t).unwrap();
            assert_eq!(
                parameters(&opened, &c, "https://idp", 0).unwrap_err().code,
                ErrorCode::InvalidRequestObject,
                "{bad}"
            );
        }
    }
}
