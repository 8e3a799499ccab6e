//! Verifying JWS signed by clients (RFC 7515): their JWK Sets (RFC 7517) and HS256 with a
//! shared secret. Pure: fetching a `jwks_uri` is the caller's business.

use aws_lc_rs::hmac;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, RSA_PKCS1_2048_8192_SHA256, RSA_PSS_2048_8192_SHA256, RsaPublicKeyComponents, UnparsedPublicKey,
};
use serde::Deserialize;
use serde_json::Value;

use crate::secret::b64url_decode;

/// The asymmetric algorithms clef verifies for clients (RFC 7518 §3.3, §3.4, §3.5).
pub const CLIENT_KEY_ALGS: &[&str] = &["RS256", "PS256", "ES256"];
/// HMAC with the client secret (RFC 7518 §3.2), for `client_secret_jwt`.
pub const CLIENT_SECRET_ALGS: &[&str] = &["HS256"];

/// A client's public key, checked when registered so a bad set is refused there, not at use.
#[derive(Clone, Debug)]
pub struct PublicJwk {
    pub kid: Option<String>,
    /// The key's `alg`, when it names one (RFC 7517 §4.4); it then binds the key to it.
    pub alg: Option<String>,
    material: Material,
}

#[derive(Clone, Debug)]
enum Material {
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    /// Uncompressed SEC1 point 0x04 ‖ x ‖ y on P-256.
    P256(Vec<u8>),
}

#[derive(Deserialize)]
struct RawJwk {
    kty: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    alg: Option<String>,
    #[serde(default, rename = "use")]
    use_: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    y: Option<String>,
}

/// Parses a JWK Set. Keys of other types or for encryption (`use: enc`) are skipped, as RFC
/// 7517 §5 allows; a malformed RSA or P-256 key, or a set with no usable key, is an error.
pub fn parse_jwks(doc: &Value) -> Result<Vec<PublicJwk>, String> {
    let keys = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("a JWK Set is an object with a \"keys\" array")?;
    let mut out = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        let raw: RawJwk = serde_json::from_value(k.clone()).map_err(|e| format!("key {}: {e}", i + 1))?;
        if raw.use_.as_deref().is_some_and(|u| u != "sig") {
            continue;
        }
        let bytes = |v: &Option<String>, name: &str| {
            v.as_deref()
                .and_then(b64url_decode)
                .filter(|b| !b.is_empty())
                .ok_or_else(|| format!("key {}: {name} is missing or not base64url", i + 1))
        };
        let material = match raw.kty.as_str() {
            "RSA" => {
                let n = bytes(&raw.n, "n")?;
                // RFC 7518 §3.3: 2048 bits at least.
                if n.iter().skip_while(|b| **b == 0).count() < 256 {
                    return Err(format!("key {}: RSA keys must be 2048 bits or more", i + 1));
                }
                Material::Rsa { n, e: bytes(&raw.e, "e")? }
            }
            "EC" => {
                if raw.crv.as_deref() != Some("P-256") {
                    return Err(format!("key {}: only the P-256 curve is supported", i + 1));
                }
                let (x, y) = (bytes(&raw.x, "x")?, bytes(&raw.y, "y")?);
                if x.len() != 32 || y.len() != 32 {
                    return Err(format!("key {}: x and y must be 32 bytes", i + 1));
                }
                let mut point = vec![4u8];
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                Material::P256(point)
            }
            _ => continue,
        };
        if let Some(alg) = raw.alg.as_deref()
            && !alg_fits(alg, &material)
        {
            return Err(format!("key {}: alg {alg:?} is not supported for this key type", i + 1));
        }
        out.push(PublicJwk {
            kid: raw.kid,
            alg: raw.alg,
            material,
        });
    }
    if out.is_empty() {
        return Err("the JWK Set holds no RSA or P-256 signing key".into());
    }
    Ok(out)
}

fn alg_fits(alg: &str, m: &Material) -> bool {
    matches!((alg, m), ("RS256" | "PS256", Material::Rsa { .. }) | ("ES256", Material::P256(_)))
}

#[derive(Debug, PartialEq, Eq)]
pub enum JwsError {
    Malformed,
    /// No key of the set has this `kid` (or fits the algorithm): the set may have rotated.
    UnknownKey,
    BadSignature,
    /// The header's algorithm is not one the caller accepts.
    Algorithm,
}

/// The parts of a compact JWS, decoded but not yet trusted.
pub struct UnverifiedJws<'a> {
    pub alg: String,
    pub kid: Option<String>,
    pub payload: Value,
    signing_input: &'a str,
    signature: Vec<u8>,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    crit: Option<Value>,
}

pub fn decode(token: &str) -> Result<UnverifiedJws<'_>, JwsError> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(JwsError::Malformed);
    };
    let header: Header = b64url_decode(h)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(JwsError::Malformed)?;
    // RFC 7515 §4.1.11: extensions we do not understand make the token unusable.
    if header.crit.is_some() {
        return Err(JwsError::Malformed);
    }
    let payload: Value = b64url_decode(p)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .filter(Value::is_object)
        .ok_or(JwsError::Malformed)?;
    Ok(UnverifiedJws {
        alg: header.alg,
        kid: header.kid,
        payload,
        signing_input: &token[..h.len() + 1 + p.len()],
        signature: b64url_decode(s).ok_or(JwsError::Malformed)?,
    })
}

impl UnverifiedJws<'_> {
    /// Checks the signature with the key the `kid` names (or, without a `kid`, any key that
    /// fits the algorithm). RFC 8725 §3.1: the algorithm must be one the caller allows and
    /// one the key is for; `none` never is.
    pub fn verify_with_keys(&self, keys: &[PublicJwk], allowed: &[&str]) -> Result<(), JwsError> {
        if !allowed.contains(&self.alg.as_str()) || !CLIENT_KEY_ALGS.contains(&self.alg.as_str()) {
            return Err(JwsError::Algorithm);
        }
        let candidates: Vec<&PublicJwk> = keys
            .iter()
            .filter(|k| self.kid.is_none() || k.kid == self.kid)
            .filter(|k| alg_fits(&self.alg, &k.material) && k.alg.as_deref().is_none_or(|a| a == self.alg))
            .collect();
        if candidates.is_empty() {
            return Err(JwsError::UnknownKey);
        }
        let msg = self.signing_input.as_bytes();
        for k in candidates {
            let ok = match (&k.material, self.alg.as_str()) {
                (Material::Rsa { n, e }, "RS256") => RsaPublicKeyComponents { n, e }
                    .verify(&RSA_PKCS1_2048_8192_SHA256, msg, &self.signature)
                    .is_ok(),
                (Material::Rsa { n, e }, "PS256") => RsaPublicKeyComponents { n, e }
                    .verify(&RSA_PSS_2048_8192_SHA256, msg, &self.signature)
                    .is_ok(),
                (Material::P256(point), "ES256") => UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
                    .verify(msg, &self.signature)
                    .is_ok(),
                _ => false,
            };
            if ok {
                return Ok(());
            }
        }
        Err(JwsError::BadSignature)
    }

    /// HS256 with `secret` as the key (RFC 7518 §3.2); the tag is compared in constant time.
    pub fn verify_with_secret(&self, secret: &[u8]) -> Result<(), JwsError> {
        if !CLIENT_SECRET_ALGS.contains(&self.alg.as_str()) {
            return Err(JwsError::Algorithm);
        }
        let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
        hmac::verify(&key, self.signing_input.as_bytes(), &self.signature).map_err(|_| JwsError::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};

    use crate::secret::b64url;

    fn es256_key() -> (EcdsaKeyPair, Value) {
        let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new()).unwrap();
        let kp = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref()).unwrap();
        let p = kp.public_key().as_ref().to_vec();
        let jwk = serde_json::json!({"kty": "EC", "crv": "P-256", "kid": "k1", "x": b64url(&p[1..33]), "y": b64url(&p[33..])});
        (kp, jwk)
    }

    fn sign(kp: &EcdsaKeyPair, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            b64url(header.to_string().as_bytes()),
            b64url(claims.to_string().as_bytes())
        );
        let sig = kp.sign(&SystemRandom::new(), input.as_bytes()).unwrap();
        format!("{input}.{}", b64url(sig.as_ref()))
    }

    #[test]
    fn es256_by_kid_and_refusals() {
        let (kp, jwk) = es256_key();
        let keys = parse_jwks(&serde_json::json!({ "keys": [jwk] })).unwrap();
        let claims = serde_json::json!({"iss": "c"});
        let t = sign(&kp, &serde_json::json!({"alg": "ES256", "kid": "k1"}), &claims);
        decode(&t).unwrap().verify_with_keys(&keys, CLIENT_KEY_ALGS).unwrap();
        let other = sign(&kp, &serde_json::json!({"alg": "ES256", "kid": "k2"}), &claims);
        assert_eq!(
            decode(&other).unwrap().verify_with_keys(&keys, CLIENT_KEY_ALGS),
            Err(JwsError::UnknownKey)
        );
        let none = format!("{}.{}.", b64url(br#"{"alg":"none"}"#), b64url(claims.to_string().as_bytes()));
        assert_eq!(
            decode(&none).unwrap().verify_with_keys(&keys, CLIENT_KEY_ALGS),
            Err(JwsError::Algorithm)
        );
        let (other_kp, _) = es256_key();
        let forged = sign(&other_kp, &serde_json::json!({"alg": "ES256", "kid": "k1"}), &claims);
        assert_eq!(
            decode(&forged).unwrap().verify_with_keys(&keys, CLIENT_KEY_ALGS),
            Err(JwsError::BadSignature)
        );
        // A key-signed token is never checked as an HMAC one (RFC 8725 §2.1 algorithm confusion).
        assert_eq!(decode(&t).unwrap().verify_with_secret(b"x"), Err(JwsError::Algorithm));
    }

    #[test]
    fn rs256_and_ps256() {
        use aws_lc_rs::rsa::KeySize;
        use aws_lc_rs::signature::{RSA_PKCS1_SHA256, RSA_PSS_SHA256, RsaKeyPair};
        let kp = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
        let public = kp.public_key();
        let jwk = serde_json::json!({"kty": "RSA", "kid": "r",
            "n": b64url(public.modulus().big_endian_without_leading_zero()),
            "e": b64url(public.exponent().big_endian_without_leading_zero())});
        let keys = parse_jwks(&serde_json::json!({ "keys": [jwk] })).unwrap();
        for (alg, padding) in [
            ("RS256", &RSA_PKCS1_SHA256 as &dyn aws_lc_rs::signature::RsaEncoding),
            ("PS256", &RSA_PSS_SHA256),
        ] {
            let input = format!(
                "{}.{}",
                b64url(format!(r#"{{"alg":"{alg}","kid":"r"}}"#).as_bytes()),
                b64url(br#"{"iss":"c"}"#)
            );
            let mut sig = vec![0u8; kp.public_modulus_len()];
            kp.sign(padding, &SystemRandom::new(), input.as_bytes(), &mut sig).unwrap();
            let t = format!("{input}.{}", b64url(&sig));
            decode(&t).unwrap().verify_with_keys(&keys, CLIENT_KEY_ALGS).unwrap();
            assert_eq!(decode(&t).unwrap().verify_with_keys(&keys, &["ES256"]), Err(JwsError::Algorithm));
        }
    }

    #[test]
    fn hs256_round_trip() {
        let input = format!("{}.{}", b64url(br#"{"alg":"HS256"}"#), b64url(br#"{"iss":"c"}"#));
        let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, b"secret"), input.as_bytes());
        let t = format!("{input}.{}", b64url(tag.as_ref()));
        decode(&t).unwrap().verify_with_secret(b"secret").unwrap();
        assert_eq!(decode(&t).unwrap().verify_with_secret(b"other"), Err(JwsError::BadSignature));
        assert_eq!(decode(&t).unwrap().verify_with_keys(&[], CLIENT_KEY_ALGS), Err(JwsError::Algorithm));
    }

    #[test]
    fn bad_sets() {
        for bad in [
            serde_json::json!({}),
            serde_json::json!({"keys": []}),
            serde_json::json!({"keys": [{"kty": "RSA", "n": "AQAB", "e": "AQAB"}]}),
            serde_json::json!({"keys": [{"kty": "EC", "crv": "P-384", "x": "AA", "y": "AA"}]}),
            serde_json::json!({"keys": [{"kty": "oct", "k": "AA"}]}),
        ] {
            assert!(parse_jwks(&bad).is_err(), "{bad}");
        }
    }
}
