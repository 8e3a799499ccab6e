//! What goes into ID tokens (OIDC Core §2), JWT access tokens (RFC 9068) and userinfo (§5.3).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::scope;
use crate::secret::b64url;
use crate::store::User;

/// RFC 8176 method references recorded by login.
pub const AMR_PASSWORD: &str = "pwd";
pub const AMR_OTP: &str = "otp";
/// RFC 8176 §2: "multiple-factor authentication", added when two kinds of proof passed.
pub const AMR_MFA: &str = "mfa";

/// Authentication context classes clef can assert.
pub const ACR_1FA: &str = "urn:clef:acr:1fa";
pub const ACR_2FA: &str = "urn:clef:acr:2fa";
pub const ACR_SUPPORTED: &[&str] = &[ACR_1FA, ACR_2FA];

/// OIDC Core §3.1.3.6: left half of SHA-256 (our algorithms all use it) of the token's ASCII.
pub fn at_hash(access_token: &str) -> String {
    let digest = Sha256::digest(access_token.as_bytes());
    b64url(&digest[..16])
}

/// Claims about the user that a scope releases, shared by ID token and userinfo.
#[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct UserClaims {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone_number: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone_number_verified: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<Address>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<String>>,
}

/// OIDC Core §5.1.1; clef keeps the address as one formatted text.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct Address {
    pub formatted: String,
}

impl UserClaims {
    pub fn for_scope(user: &User, granted: &str) -> UserClaims {
        let mut c = UserClaims::default();
        if scope::has(granted, "profile") {
            c.name = user.name.clone();
            c.locale = user.locale.clone();
            c.updated_at = Some(user.updated_at);
        }
        if scope::has(granted, "email") {
            c.email = Some(user.email.clone());
            c.email_verified = Some(user.email_verified);
        }
        if scope::has(granted, "phone") && user.phone_number.is_some() {
            c.phone_number = user.phone_number.clone();
            c.phone_number_verified = Some(user.phone_number_verified);
        }
        if scope::has(granted, "address") {
            c.address = user.address.clone().map(|formatted| Address { formatted });
        }
        if scope::has(granted, "roles") {
            c.roles = Some(user.roles.clone());
        }
        c
    }

    /// The scope's claims plus those a `claims` request named (OIDC Core §5.5), each only
    /// when the user has a value.
    pub fn for_request(user: &User, granted: &str, named: &[String]) -> UserClaims {
        let mut c = UserClaims::for_scope(user, granted);
        for n in named {
            match n.as_str() {
                "name" => c.name = user.name.clone(),
                "locale" => c.locale = user.locale.clone(),
                "updated_at" => c.updated_at = Some(user.updated_at),
                "email" => c.email = Some(user.email.clone()),
                "email_verified" => c.email_verified = Some(user.email_verified),
                "phone_number" => c.phone_number = user.phone_number.clone(),
                "phone_number_verified" if user.phone_number.is_some() => c.phone_number_verified = Some(user.phone_number_verified),
                "address" => c.address = user.address.clone().map(|formatted| Address { formatted }),
                "roles" => c.roles = Some(user.roles.clone()),
                _ => {}
            }
        }
        c
    }
}

/// The user claims a `claims` request may name (OIDC Core §5.5): those of `claims_supported`
/// that describe the user. Others are ignored, as §5.5 allows.
pub const REQUESTABLE: &[&str] = &[
    "name",
    "locale",
    "updated_at",
    "email",
    "email_verified",
    "phone_number",
    "phone_number_verified",
    "address",
    "roles",
];

/// A parsed `claims` request parameter (OIDC Core §5.5): which known claims go where. Only
/// names from [`REQUESTABLE`] are kept, so what is stored is bounded whatever was sent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimsRequest {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub userinfo: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub id_token: Vec<String>,
}

/// What the `acr` member of a claims request asks (OIDC Core §5.5.1.1).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct AcrRequest {
    pub values: Vec<String>,
    pub essential: bool,
}

impl ClaimsRequest {
    pub fn is_empty(&self) -> bool {
        self.userinfo.is_empty() && self.id_token.is_empty()
    }

    /// Parses the JSON text; `Err` carries a description for `invalid_request`.
    pub fn parse(text: &str) -> Result<(ClaimsRequest, AcrRequest), &'static str> {
        let v: serde_json::Value = serde_json::from_str(text).map_err(|_| "claims is not valid JSON")?;
        let obj = v.as_object().ok_or("claims must be a JSON object")?;
        let mut out = ClaimsRequest::default();
        let mut acr = AcrRequest::default();
        for (place, list) in [("userinfo", &mut out.userinfo), ("id_token", &mut out.id_token)] {
            let Some(member) = obj.get(place) else { continue };
            let member = member.as_object().ok_or("claims members must be JSON objects")?;
            for (name, req) in member {
                // §5.5.1: each claim is null (default request) or an object of its own.
                let req = match req {
                    serde_json::Value::Null => None,
                    serde_json::Value::Object(o) => Some(o),
                    _ => return Err("each requested claim must be null or a JSON object"),
                };
                if let Some(o) = req
                    && o.get("essential").is_some_and(|e| !e.is_boolean())
                {
                    return Err("essential must be a boolean");
                }
                if name == "acr" {
                    if let Some(o) = req {
                        acr.essential |= o.get("essential").and_then(serde_json::Value::as_bool).unwrap_or(false);
                        if let Some(v) = o.get("value").and_then(serde_json::Value::as_str) {
                            acr.values.push(v.to_owned());
                        }
                        if let Some(vs) = o.get("values").and_then(serde_json::Value::as_array) {
                            acr.values
                                .extend(vs.iter().filter_map(serde_json::Value::as_str).map(str::to_owned));
                        }
                    }
                    continue;
                }
                if let Some(known) = REQUESTABLE.iter().find(|k| **k == name.as_str())
                    && !list.iter().any(|n| n == known)
                {
                    list.push((*known).to_owned());
                }
            }
        }
        acr.values.truncate(8);
        Ok((out, acr))
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct IdTokenClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    pub auth_time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at_hash: Option<String>,
    pub azp: String,
    pub acr: String,
    pub amr: Vec<String>,
    /// Back-Channel Logout 1.0 §2.1: the login session, as logout tokens name it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    #[serde(flatten)]
    pub user: UserClaims,
}

/// RFC 9068 §2.2. A client_credentials token has no user, so no authentication claims
/// (§2.2.1: they describe the user's authentication), and `sub` is the client.
#[derive(Debug, Serialize, Deserialize)]
pub struct AccessTokenClaims {
    pub iss: String,
    pub sub: String,
    /// RFC 8707 §2: the resources asked for, else the issuer.
    pub aud: super::resource::Audience,
    pub exp: i64,
    pub iat: i64,
    pub jti: String,
    pub client_id: String,
    pub scope: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acr: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amr: Option<Vec<String>>,
}

/// Userinfo response body (OIDC Core §5.3.2).
#[derive(Debug, Serialize)]
pub struct UserinfoClaims {
    pub sub: String,
    #[serde(flatten)]
    pub user: UserClaims,
}

/// RFC 7515 §4.1.9 and RFC 8725 §3.11: a hint must be an ID token, whose `typ` is `JWT` or
/// absent, never an access token (`at+jwt`, RFC 9068) or a logout token (`logout+jwt`).
pub fn is_id_token_typ(typ: Option<&str>) -> bool {
    match typ {
        None => true,
        Some(t) => t.eq_ignore_ascii_case("JWT") || t.eq_ignore_ascii_case("application/jwt"),
    }
}

/// The few ID token claims an `id_token_hint` is read for.
#[derive(Debug, Deserialize)]
pub struct HintClaims {
    pub sub: String,
    #[serde(default)]
    pub aud: serde_json::Value,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_id_token_types_are_hints() {
        for (typ, ok) in [
            (None, true),
            (Some("JWT"), true),
            (Some("jwt"), true),
            (Some("application/jwt"), true),
            (Some("at+jwt"), false),
            (Some("application/at+jwt"), false),
            (Some("logout+jwt"), false),
            (Some(""), false),
        ] {
            assert_eq!(is_id_token_typ(typ), ok, "{typ:?}");
        }
    }

    #[test]
    fn at_hash_matches_oidc_example() {
        // OIDC Core Appendix A.3 uses RS256: access token and its at_hash.
        assert_eq!(at_hash("jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y"), "77QmUPtjPfzWtF2AnpK9RQ");
    }

    /// OIDC Core §5.5: known names kept per place, unknown ignored, `acr` read apart.
    #[test]
    fn claims_request_parsing() {
        let (c, acr) = ClaimsRequest::parse(
            r#"{"userinfo": {"email": {"essential": true}, "shoe": null},
                "id_token": {"name": null, "acr": {"essential": true, "values": ["urn:clef:acr:2fa"]}}}"#,
        )
        .unwrap();
        assert_eq!(c.userinfo, ["email"]);
        assert_eq!(c.id_token, ["name"]);
        assert_eq!(
            acr,
            AcrRequest {
                values: vec![ACR_2FA.into()],
                essential: true
            }
        );
        for bad in [
            "nope",
            "[]",
            r#"{"userinfo": 1}"#,
            r#"{"id_token": {"name": true}}"#,
            r#"{"id_token": {"name": {"essential": 1}}}"#,
        ] {
            assert!(ClaimsRequest::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn claims_follow_scope() {
        let user = User {
            user_id: "u".into(),
            email: "a@b.c".into(),
            email_verified: false,
            name: Some("Ana".into()),
            password_hash: None,
            roles: vec!["ADMIN".into()],
            locale: None,
            phone_number: Some("+33 6 12 34 56 78".into()),
            phone_number_verified: false,
            address: Some("1 rue de la Paix, Paris".into()),
            created_at: 0,
            updated_at: 5,
            password_pending: false,
        };
        let c = UserClaims::for_scope(&user, "openid email");
        assert_eq!(c.email.as_deref(), Some("a@b.c"));
        assert_eq!(c.email_verified, Some(false));
        assert!(c.name.is_none() && c.roles.is_none());
        let c = UserClaims::for_scope(&user, "openid profile roles");
        assert_eq!(c.name.as_deref(), Some("Ana"));
        assert_eq!(c.roles, Some(vec!["ADMIN".to_owned()]));
        assert!(c.phone_number.is_none() && c.address.is_none());
        let c = UserClaims::for_scope(&user, "openid phone address");
        assert_eq!(c.phone_number.as_deref(), Some("+33 6 12 34 56 78"));
        assert_eq!(c.phone_number_verified, Some(false));
        assert_eq!(c.address.unwrap().formatted, "1 rue de la Paix, Paris");
    }
}
