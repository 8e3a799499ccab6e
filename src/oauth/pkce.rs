//! PKCE (RFC 7636). Only S256: `plain` gives no protection against a leaked code.

use sha2::{Digest, Sha256};

use super::OAuthError;
use crate::secret::{b64url, ct_eq};

/// RFC 7636 §4.1/§4.2: 43 to 128 characters of [A-Z a-z 0-9 - . _ ~].
fn well_formed(v: &str) -> bool {
    (43..=128).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

/// Checks the authorization request's challenge. `required` for public clients.
pub fn check_challenge(challenge: Option<&str>, method: Option<&str>, required: bool) -> Result<Option<String>, OAuthError> {
    match (challenge, method) {
        (None, Some(_)) => Err(OAuthError::invalid_request("code_challenge_method without code_challenge")),
        (None, None) if required => Err(OAuthError::invalid_request(
            "code_challenge is required for public clients (PKCE, S256)",
        )),
        (None, None) => Ok(None),
        (Some(_), None | Some("plain")) => Err(OAuthError::invalid_request(
            "code_challenge_method must be S256; plain is not supported",
        )),
        (Some(_), Some(m)) if m != "S256" => Err(OAuthError::invalid_request("unsupported code_challenge_method")),
        (Some(c), Some(_)) if c.len() != 43 || !well_formed_challenge(c) => {
            Err(OAuthError::invalid_request("code_challenge is not a base64url SHA-256 value"))
        }
        (Some(c), Some(_)) => Ok(Some(c.to_owned())),
    }
}

fn well_formed_challenge(c: &str) -> bool {
    c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// RFC 7636 §4.6, at the token endpoint.
pub fn verify(challenge: Option<&str>, verifier: Option<&str>) -> Result<(), OAuthError> {
    match (challenge, verifier) {
        (None, None) => Ok(()),
        // A verifier for a code that had no challenge means a confused or injected request.
        (None, Some(_)) => Err(OAuthError::invalid_grant(
            "code_verifier sent but the authorization request had no code_challenge",
        )),
        (Some(_), None) => Err(OAuthError::invalid_grant("code_verifier is required")),
        (Some(_), Some(v)) if !well_formed(v) => Err(OAuthError::invalid_grant("code_verifier is malformed")),
        (Some(c), Some(v)) => {
            if ct_eq(&b64url(&Sha256::digest(v.as_bytes())), c) {
                Ok(())
            } else {
                Err(OAuthError::invalid_grant("code_verifier does not match code_challenge"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oauth::ErrorCode;

    // Computed independently: base64url(SHA-256(verifier)).
    const VERIFIER: &str = "dBjftJeZ4CVP-mJ92K1s-iYgMTEW3Y6hXosNQ-1uCP8";
    const CHALLENGE: &str = "HNOgb1653uKOQeDgfNs3J8qaffv2c2-vRiDbfHNICRs";

    #[test]
    fn rfc_example_verifies() {
        verify(Some(CHALLENGE), Some(VERIFIER)).unwrap();
    }

    #[test]
    fn wrong_or_missing_verifier_is_invalid_grant() {
        for v in [None, Some("x"), Some("dBjftJeZ4CVP-mJ92K1s-iYgMTEW3Y6hXosNQ-1uCP9")] {
            assert_eq!(verify(Some(CHALLENGE), v).unwrap_err().code, ErrorCode::InvalidGrant, "{v:?}");
        }
        assert_eq!(verify(None, Some(VERIFIER)).unwrap_err().code, ErrorCode::InvalidGrant);
    }

    #[test]
    fn challenge_rules() {
        assert_eq!(
            check_challenge(Some(CHALLENGE), Some("S256"), true).unwrap().as_deref(),
            Some(CHALLENGE)
        );
        assert_eq!(check_challenge(None, None, false).unwrap(), None);
        for (c, m, req) in [
            (None, None, true),
            (Some(CHALLENGE), Some("plain"), false),
            (Some(CHALLENGE), None, false),
            (Some("short"), Some("S256"), false),
            (None, Some("S256"), false),
        ] {
            assert_eq!(
                check_challenge(c, m, req).unwrap_err().code,
                ErrorCode::InvalidRequest,
                "{c:?} {m:?}"
            );
        }
    }
}
