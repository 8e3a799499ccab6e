//! The verified claims clef keeps from an upstream ID token.

use openidconnect::core::CoreIdTokenClaims;
use serde::Deserialize;

use super::UpstreamError;
use crate::config::Upstream;

/// Who the upstream says logged in. The key is (`issuer`, `subject`), never `email`: an
/// address can change hands, a `sub` is never reassigned (OIDC Core §5.7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamIdentity {
    pub issuer: String,
    pub subject: String,
    pub email: Option<String>,
    /// True only when the upstream says so *and* the operator trusts it to
    /// (`trust_email_verified`); linking to a local account relies on it.
    pub email_verified: bool,
    pub name: Option<String>,
    pub locale: Option<String>,
    /// The upstream's `amr` values (RFC 8176), for information and `trust_mfa`.
    pub amr: Vec<String>,
}

impl UpstreamIdentity {
    /// The upstream vouches for a multi-factor login and the operator trusts it to.
    pub fn mfa_trusted(&self, upstream: &Upstream) -> bool {
        upstream.trust_mfa && self.amr.iter().any(|a| a == "mfa")
    }
}

/// Claims the crate's core type does not carry.
#[derive(Deserialize)]
struct Extra {
    hd: Option<String>,
}

/// Reads the identity out of claims whose signature, `iss`, `aud`, `azp`, `exp` and `nonce`
/// were checked; adds `azp`, `iat`, `sub` and `hd`.
pub(super) fn from_claims(upstream: &Upstream, claims: &CoreIdTokenClaims, raw: &str, now: i64) -> Result<UpstreamIdentity, UpstreamError> {
    let invalid = |r: &str| {
        tracing::warn!(upstream = %upstream.id, reason = r, "upstream ID token rejected");
        UpstreamError::InvalidToken(r.to_owned())
    };
    // OIDC Core §3.1.3.7 step 10: an ID token issued in the future is refused.
    if claims.issue_time().timestamp() > now + super::IAT_SKEW {
        return Err(invalid("iat is in the future"));
    }
    if claims.expiration().timestamp() <= now {
        return Err(invalid("expired"));
    }
    // OIDC Core §3.1.3.7 steps 4-5, which openidconnect 4.1 leaves undone: `azp`, when
    // present, must be us, and must be present when there are several audiences.
    match claims.authorized_party() {
        Some(azp) if azp.as_str() != upstream.client_id => return Err(invalid("azp is another client")),
        None if claims.audiences().len() > 1 => return Err(invalid("azp is missing with several audiences")),
        _ => {}
    }
    // OIDC Core §2: `sub` is the key of the identity, at most 255 ASCII characters; an empty
    // one would make every such token the same user.
    let subject = claims.subject().as_str();
    if subject.is_empty() || subject.len() > 255 || !subject.is_ascii() {
        return Err(invalid("sub is empty, too long or not ASCII"));
    }
    if let Some(hd) = &upstream.hosted_domain {
        // The signature covers these very bytes, so reading the payload again is safe.
        let extra: Option<Extra> = raw
            .split('.')
            .nth(1)
            .and_then(crate::secret::b64url_decode)
            .and_then(|p| serde_json::from_slice(&p).ok());
        // Google: only `hd` proves Workspace membership; the email domain does not.
        if extra.and_then(|e| e.hd).as_deref() != Some(hd.as_str()) {
            return Err(invalid("hd is not the configured hosted domain"));
        }
    }
    Ok(UpstreamIdentity {
        issuer: claims.issuer().as_str().to_owned(),
        subject: subject.to_owned(),
        email: claims.email().map(|e| e.as_str().to_owned()),
        email_verified: upstream.trust_email_verified && claims.email_verified() == Some(true),
        name: claims.name().and_then(|n| n.get(None)).map(|n| n.as_str().to_owned()),
        locale: claims.locale().map(|l| l.as_str().to_owned()),
        amr: claims
            .auth_method_refs()
            .map(|v| v.iter().map(|a| a.as_str().to_owned()).collect())
            .unwrap_or_default(),
    })
}
