//! The OAuth 2.0 / OpenID Connect protocol rules: no HTTP framework, no SQL.

pub mod authorize;
pub mod backchannel; // bcl
pub mod claims;
pub mod client_auth;
pub mod error;
pub mod introspect;
pub mod metadata;
pub mod origin;
pub mod pkce;
pub mod redirect_uri;
// grants
pub mod resource;
pub mod scope;
pub mod token;
// dcr
pub mod jose;
pub mod pairwise;
pub mod registration;

pub use error::{ErrorCode, OAuthError};
// reqobj
pub mod request_object;
