//! Operator actions shared by the CLI and the tests: create clients and users.

use crate::auth::password::Hasher;
use crate::keys::Alg;
use crate::oauth::redirect_uri;
use crate::secret::{random_token, sha256_b64};
use crate::store::{Db, NewClient, NewUser, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Auth(#[from] crate::auth::AuthError),
}

#[derive(Clone, Debug, Default)]
pub struct ClientSpec {
    pub name: String,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub grant_types: Vec<String>,
    pub public: bool,
    pub skip_consent: bool,
    pub id_token_alg: Option<String>,
    pub require_2fa: bool,
    /// Extra web origins allowed to call the JSON endpoints (CORS), beyond the redirect URIs'.
    pub allowed_origins: Vec<String>,
    // dcr
    /// `token_endpoint_auth_method` (RFC 7591 §2); `None`: Basic or POST, or none if public.
    pub auth_method: Option<String>,
    /// For `private_key_jwt`: the client's JWK Set URL, or the set itself.
    pub jwks_uri: Option<String>,
    pub jwks: Option<serde_json::Value>,
}

#[derive(Debug, serde::Serialize)]
pub struct CreatedClient {
    pub client_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
}

pub async fn create_client(db: &Db, spec: &ClientSpec, now: i64) -> Result<CreatedClient, AdminError> {
    if spec.name.trim().is_empty() {
        return Err(AdminError::Invalid("--name must not be empty".into()));
    }
    if spec.redirect_uris.is_empty() {
        return Err(AdminError::Invalid("at least one --redirect-uri is required".into()));
    }
    for uri in spec.redirect_uris.iter().chain(&spec.post_logout_redirect_uris) {
        redirect_uri::check_registrable(uri).map_err(AdminError::Invalid)?;
    }
    let allowed_origins = spec
        .allowed_origins
        .iter()
        .map(|o| crate::oauth::origin::check_registrable(o))
        .collect::<Result<Vec<_>, _>>()
        .map_err(AdminError::Invalid)?;
    let grant_types = if spec.grant_types.is_empty() {
        vec!["authorization_code".to_owned(), "refresh_token".to_owned()]
    } else {
        spec.grant_types.clone()
    };
    for g in &grant_types {
        if !crate::oauth::token::GRANT_TYPES.contains(&g.as_str()) {
            return Err(AdminError::Invalid(format!(
                "unsupported grant type {g:?} (supported: {})",
                crate::oauth::token::GRANT_TYPES.join(", ")
            )));
        }
    }
    let alg = spec.id_token_alg.clone().unwrap_or_else(|| "RS256".to_owned());
    if Alg::parse(&alg).is_none() {
        return Err(AdminError::Invalid(format!(
            "unsupported id_token_signed_response_alg {alg:?} (RS256 or ES256)"
        )));
    }
    // dcr
    let mut meta = crate::store::ClientMeta::default();
    if let Some(m) = &spec.auth_method {
        use crate::oauth::registration::AUTH_METHODS;
        if !AUTH_METHODS.contains(&m.as_str()) {
            return Err(AdminError::Invalid(format!(
                "unsupported --auth-method {m:?} (supported: {})",
                AUTH_METHODS.join(", ")
            )));
        }
        if (m == "none") != spec.public {
            return Err(AdminError::Invalid(
                "--public goes with --auth-method none, and only with it".into(),
            ));
        }
        if m == "client_secret_jwt" {
            return Err(AdminError::Invalid(
                "client_secret_jwt is for registered clients (POST /register); use private_key_jwt here".into(),
            ));
        }
        meta.token_endpoint_auth_method = Some(m.clone());
    }
    if let Some(doc) = &spec.jwks {
        crate::oauth::jose::parse_jwks(doc).map_err(|e| AdminError::Invalid(format!("--jwks-file: {e}")))?;
        meta.jwks = Some(doc.clone());
    }
    if let Some(u) = &spec.jwks_uri {
        match url::Url::parse(u) {
            Ok(p) if p.scheme() == "https" || (p.scheme() == "http" && crate::remote::is_loopback(&p)) => {}
            _ => return Err(AdminError::Invalid("--jwks-uri must be an https URL".into())),
        }
        meta.jwks_uri = Some(u.clone());
    }
    if spec.auth_method.as_deref() == Some("private_key_jwt") && (meta.jwks.is_none() == meta.jwks_uri.is_none()) {
        return Err(AdminError::Invalid("private_key_jwt needs one of --jwks-uri or --jwks-file".into()));
    }
    let client_id = random_token(16);
    // A private_key_jwt client proves itself with its key: no secret to leak.
    let secret = (!spec.public && spec.auth_method.as_deref() != Some("private_key_jwt")).then(|| random_token(32));
    db.client_create(
        &NewClient {
            client_id: client_id.clone(),
            secret_hash: secret.as_deref().map(sha256_b64),
            name: spec.name.trim().to_owned(),
            redirect_uris: spec.redirect_uris.clone(),
            post_logout_redirect_uris: spec.post_logout_redirect_uris.clone(),
            grant_types,
            is_public: spec.public,
            skip_consent: spec.skip_consent,
            id_token_alg: alg,
            require_2fa: spec.require_2fa,
            allowed_origins,
            meta,
            registration_token_hash: None,
            secret_sealed: None,
            backchannel_logout_uri: None,
            backchannel_logout_session_required: false,
        },
        now,
    )
    .await?;
    Ok(CreatedClient {
        client_id,
        client_secret: secret,
    })
}

#[derive(Clone, Debug, Default)]
pub struct UserSpec {
    pub email: String,
    pub password: Option<String>,
    pub name: Option<String>,
    pub roles: Vec<String>,
    pub verified: bool,
    pub phone: Option<String>,
    pub address: Option<String>,
}

pub async fn create_user(db: &Db, hasher: &Hasher, spec: &UserSpec, now: i64) -> Result<String, AdminError> {
    let email = spec.email.trim();
    match email.rsplit_once('@') {
        Some((l, d)) if !l.is_empty() && d.contains('.') && !email.contains(char::is_whitespace) => {}
        _ => return Err(AdminError::Invalid(format!("{email:?} is not an email address"))),
    }
    if let Some(p) = &spec.password
        && p.chars().count() < 8
    {
        return Err(AdminError::Invalid("the password must be at least 8 characters".into()));
    }
    // E.164 is what the phone_number claim should carry (OIDC Core §5.1).
    if let Some(p) = &spec.phone
        && !(p.starts_with('+') && (8..=16).contains(&p.len()) && p[1..].bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(AdminError::Invalid(format!(
            "{p:?} is not an E.164 phone number such as +33612345678"
        )));
    }
    for r in &spec.roles {
        if r.is_empty() || r.contains(char::is_whitespace) {
            return Err(AdminError::Invalid(format!("{r:?} is not a role name")));
        }
    }
    if db.user_by_email(email).await?.is_some() {
        return Err(AdminError::Invalid(format!("a user with email {email} already exists")));
    }
    let password_hash = match &spec.password {
        Some(p) => Some(hasher.hash(p).await?),
        None => None,
    };
    let user_id = random_token(16);
    db.user_create(
        &NewUser {
            user_id: user_id.clone(),
            email: email.to_owned(),
            email_verified: spec.verified,
            name: spec.name.clone(),
            password_hash,
            roles: spec.roles.clone(),
            locale: None,
            phone_number: spec.phone.clone(),
            address: spec.address.clone(),
            // The operator's word is trusted: the password works as set, verified or not.
            password_pending: false,
        },
        now,
    )
    .await?;
    Ok(user_id)
}
