//! Pairwise subject identifiers (OIDC Core §8.1): a client of a pairwise sector sees a `sub`
//! no other sector can link to the same user.

use super::OAuthError;
use crate::secret_key::SecretKeys;
use crate::store::{Client, Db};

/// OIDC Core §8.1's suggested construction, keyed: HMAC-SHA256 under the server secret of
/// (sector, local user id), base64url. Not reversible without the key, the same on every
/// instance sharing it.
pub fn candidate(keys: &SecretKeys, sector: &str, user_id: &str) -> String {
    keys.mac(&["pairwise sub", sector, user_id])
}

/// The `sub` this client knows the user by: the local id, or the pairwise one for its sector.
/// A pairwise value is remembered once computed (0015_dcr.sql), so rotating the server secret
/// does not change anyone's identity at the client.
pub async fn subject(db: &Db, keys: &SecretKeys, client: &Client, user_id: &str) -> Result<String, OAuthError> {
    match (client.meta.is_pairwise(), client.meta.sector.as_deref()) {
        (true, Some(sector)) => Ok(db.pairwise_subject(sector, user_id, &candidate(keys, sector, user_id)).await?),
        _ => Ok(user_id.to_owned()),
    }
}
