//! Registered relying parties.

use super::{Db, Result, StoreError, json_list, on_db, on_unique, parse_list};

#[derive(Clone, Debug)]
pub struct Client {
    pub client_id: String,
    /// SHA-256 of the secret clef generated; `None` for public clients.
    pub secret_hash: Option<String>,
    pub name: String,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub grant_types: Vec<String>,
    pub is_public: bool,
    pub skip_consent: bool,
    pub id_token_alg: String,
    /// Every login for this client needs two factors.
    pub require_2fa: bool,
    pub created_at: i64,
    /// Back-Channel Logout 1.0 §2.2: where logout tokens are POSTed; `None`: not at all.
    pub backchannel_logout_uri: Option<String>,
    /// §2.2: the logout token must carry `sid`.
    pub backchannel_logout_session_required: bool,
    /// Scopes a `client_credentials` request may ask for (registration metadata `scope`).
    pub scopes: Vec<String>,
    /// RFC 8707 resources the client's access tokens may be issued to; none: no `resource`.
    pub resources: Vec<String>,
    /// RS256 or ES256, for the client's access tokens (`id_token_alg` is for ID tokens).
    pub access_token_alg: String,
    // dcr
    /// Registration metadata clef acts on (RFC 7591 §2, OIDC Registration §2).
    pub meta: ClientMeta,
    /// SHA-256 of the RFC 7592 registration access token; `None`: created by the operator.
    pub registration_token_hash: Option<String>,
    /// The secret sealed with `secret_box`, kept only for `client_secret_jwt` (see 0015_dcr.sql).
    pub secret_sealed: Option<String>,
}

/// The metadata a client registered beyond the columns above, stored as one JSON document
/// (every field optional, so an older row reads as the defaults).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct ClientMeta {
    /// RFC 7591 §2; `None` on operator-created clients: `none` if public, else Basic or POST.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_endpoint_auth_method: Option<String>,
    /// RFC 7591 §2 `jwks`, the JWK Set document itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwks: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logo_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tos_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_uri: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub contacts: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_max_age: Option<i64>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub require_auth_time: bool,
    /// OIDC Core §8: `pairwise`, or public when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sector_identifier_uri: Option<String>,
    /// The sector pairwise subjects are computed for (OIDC Core §8.1): the host of the
    /// redirect URIs or of the sector_identifier_uri, fixed at registration.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sector: Option<String>,
    /// OIDC Registration §2: userinfo as a signed JWT with this algorithm.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub userinfo_signed_response_alg: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_endpoint_auth_signing_alg: Option<String>,
    /// reqobj: OIDC Registration §2, the one algorithm its request objects must use.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_object_signing_alg: Option<String>,
}

impl ClientMeta {
    pub fn is_pairwise(&self) -> bool {
        self.subject_type.as_deref() == Some("pairwise")
    }
}

impl Client {
    pub fn allows_grant(&self, grant_type: &str) -> bool {
        self.grant_types.iter().any(|g| g == grant_type)
    }
}

#[derive(Debug)]
pub struct NewClient {
    pub client_id: String,
    pub secret_hash: Option<String>,
    pub name: String,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub grant_types: Vec<String>,
    pub is_public: bool,
    pub skip_consent: bool,
    pub id_token_alg: String,
    pub require_2fa: bool,
    /// Extra web origins for CORS, normalised; the redirect URIs' origins are added on write.
    pub allowed_origins: Vec<String>,
    pub backchannel_logout_uri: Option<String>,
    pub backchannel_logout_session_required: bool,
    pub scopes: Vec<String>,
    pub resources: Vec<String>,
    pub access_token_alg: String,
    // dcr
    pub meta: ClientMeta,
    pub registration_token_hash: Option<String>,
    pub secret_sealed: Option<String>,
}

#[derive(sqlx::FromRow)]
struct ClientRow {
    client_id: String,
    secret_hash: Option<String>,
    name: String,
    redirect_uris: String,
    post_logout_redirect_uris: String,
    grant_types: String,
    is_public: i64,
    skip_consent: i64,
    id_token_alg: String,
    require_2fa: i64,
    created_at: i64,
    backchannel_logout_uri: Option<String>,
    backchannel_logout_session_required: i64,
    scopes: String,
    resources: String,
    access_token_alg: String,
    metadata: String,
    registration_token_hash: Option<String>,
    secret_sealed: Option<String>,
}

impl TryFrom<ClientRow> for Client {
    type Error = StoreError;
    fn try_from(r: ClientRow) -> Result<Client> {
        Ok(Client {
            client_id: r.client_id,
            secret_hash: r.secret_hash,
            name: r.name,
            redirect_uris: parse_list(&r.redirect_uris)?,
            post_logout_redirect_uris: parse_list(&r.post_logout_redirect_uris)?,
            grant_types: parse_list(&r.grant_types)?,
            is_public: r.is_public != 0,
            skip_consent: r.skip_consent != 0,
            id_token_alg: r.id_token_alg,
            require_2fa: r.require_2fa != 0,
            created_at: r.created_at,
            backchannel_logout_uri: r.backchannel_logout_uri,
            backchannel_logout_session_required: r.backchannel_logout_session_required != 0,
            scopes: parse_list(&r.scopes)?,
            resources: parse_list(&r.resources)?,
            access_token_alg: r.access_token_alg,
            meta: serde_json::from_str(&r.metadata).map_err(|e| StoreError::Corrupt(format!("client metadata: {e}")))?,
            registration_token_hash: r.registration_token_hash,
            secret_sealed: r.secret_sealed,
        })
    }
}

fn meta_json(m: &ClientMeta) -> String {
    serde_json::to_string(m).unwrap_or_else(|_| "{}".to_owned())
}

const COLUMNS: &str = "client_id, secret_hash, name, redirect_uris, post_logout_redirect_uris, \
    grant_types, is_public, skip_consent, id_token_alg, require_2fa, created_at, \
    backchannel_logout_uri, backchannel_logout_session_required, \
    scopes, resources, access_token_alg, metadata, registration_token_hash, secret_sealed";

impl Db {
    /// The client row and its CORS origins in one transaction: an instance never sees a
    /// client without its origins.
    pub async fn client_create(&self, c: &NewClient, now: i64) -> Result<()> {
        let sql = format!(
            "insert into clients ({COLUMNS}) values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)"
        );
        let derived = crate::oauth::origin::for_client(&c.redirect_uris, &[]);
        let origins: Vec<(String, bool)> = crate::oauth::origin::for_client(&c.redirect_uris, &c.allowed_origins)
            .into_iter()
            .map(|o| {
                let explicit = !derived.contains(&o);
                (o, explicit)
            })
            .collect();
        on_db!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
                .bind(&c.client_id)
                .bind(&c.secret_hash)
                .bind(&c.name)
                .bind(json_list(&c.redirect_uris))
                .bind(json_list(&c.post_logout_redirect_uris))
                .bind(json_list(&c.grant_types))
                .bind(i64::from(c.is_public))
                .bind(i64::from(c.skip_consent))
                .bind(&c.id_token_alg)
                .bind(i64::from(c.require_2fa))
                .bind(now)
                .bind(&c.backchannel_logout_uri)
                .bind(i64::from(c.backchannel_logout_session_required))
                .bind(json_list(&c.scopes))
                .bind(json_list(&c.resources))
                .bind(&c.access_token_alg)
                .bind(meta_json(&c.meta))
                .bind(&c.registration_token_hash)
                .bind(&c.secret_sealed)
                .execute(&mut *tx)
                .await
                .map_err(|e| on_unique(e, "a client with this id already exists"))?;
            for (origin, explicit) in &origins {
                sqlx::query("insert into client_origins (origin, client_id, explicit) values ($1, $2, $3)")
                    .bind(origin)
                    .bind(&c.client_id)
                    .bind(i64::from(*explicit))
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Whether some client lists this normalised origin. Asked only for requests that carry
    /// `Origin`, so discovery and JWKS without one cost no query.
    pub async fn origin_allowed(&self, origin: &str) -> Result<bool> {
        let row: Option<(String,)> = on_db!(self, pool =>
            sqlx::query_as("select origin from client_origins where origin = $1 limit 1")
                .bind(origin).fetch_optional(pool).await?);
        Ok(row.is_some())
    }

    /// The operator's extra origins of a client (`clients list`).
    pub async fn client_allowed_origins(&self, client_id: &str) -> Result<Vec<String>> {
        let rows: Vec<(String,)> = on_db!(self, pool =>
            sqlx::query_as("select origin from client_origins where client_id = $1 and explicit = 1 order by origin")
                .bind(client_id).fetch_all(pool).await?);
        Ok(rows.into_iter().map(|r| r.0).collect())
    }

    /// Clients registered before `0003_cors` get their redirect URIs' origins once.
    pub(super) async fn client_origins_backfill(&self) -> Result<()> {
        let sql = format!(
            "select {COLUMNS} from clients c where not exists \
             (select 1 from client_origins o where o.client_id = c.client_id)"
        );
        let rows: Vec<ClientRow> = on_db!(self, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str())).fetch_all(pool).await?);
        for c in rows.into_iter().map(Client::try_from) {
            let c = c?;
            for origin in crate::oauth::origin::for_client(&c.redirect_uris, &[]) {
                on_db!(self, pool => sqlx::query(
                    "insert into client_origins (origin, client_id, explicit) values ($1, $2, 0) on conflict do nothing")
                    .bind(&origin).bind(&c.client_id).execute(pool).await?.rows_affected());
            }
        }
        Ok(())
    }

    pub async fn client_get(&self, client_id: &str) -> Result<Option<Client>> {
        let sql = format!("select {COLUMNS} from clients where client_id = $1");
        let row: Option<ClientRow> = on_db!(self, pool =>
            sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str())).bind(client_id).fetch_optional(pool).await?);
        row.map(Client::try_from).transpose()
    }

    pub async fn client_list(&self) -> Result<Vec<Client>> {
        let sql = format!("select {COLUMNS} from clients order by created_at, client_id");
        let rows: Vec<ClientRow> = on_db!(self, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str())).fetch_all(pool).await?);
        rows.into_iter().map(Client::try_from).collect()
    }

    /// `clients update`: the back-channel logout registration (§2.2). False: no such client.
    pub async fn client_set_backchannel(&self, client_id: &str, uri: Option<&str>, session_required: bool) -> Result<bool> {
        let n = on_db!(self, pool => sqlx::query(
            "update clients set backchannel_logout_uri = $1, backchannel_logout_session_required = $2 where client_id = $3")
            .bind(uri).bind(i64::from(session_required)).bind(client_id).execute(pool).await?.rows_affected());
        Ok(n == 1)
    }

    // dcr
    /// RFC 7592 §2.2: the registration replaced as a whole, and the redirect URIs' CORS
    /// origins with it (the operator's explicit ones stay), in one transaction.
    pub async fn client_update(&self, c: &NewClient) -> Result<()> {
        let derived = crate::oauth::origin::for_client(&c.redirect_uris, &[]);
        on_db!(self, pool => {
            let mut tx = pool.begin().await?;
            let n = sqlx::query(
                "update clients set secret_hash = $2, name = $3, redirect_uris = $4, post_logout_redirect_uris = $5, \
                 grant_types = $6, is_public = $7, id_token_alg = $8, metadata = $9, secret_sealed = $10, \
                 backchannel_logout_uri = $11, backchannel_logout_session_required = $12 where client_id = $1")
                .bind(&c.client_id)
                .bind(&c.secret_hash)
                .bind(&c.name)
                .bind(json_list(&c.redirect_uris))
                .bind(json_list(&c.post_logout_redirect_uris))
                .bind(json_list(&c.grant_types))
                .bind(i64::from(c.is_public))
                .bind(&c.id_token_alg)
                .bind(meta_json(&c.meta))
                .bind(&c.secret_sealed)
                .bind(&c.backchannel_logout_uri)
                .bind(i64::from(c.backchannel_logout_session_required))
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if n == 0 {
                return Err(StoreError::NotFound("client"));
            }
            sqlx::query("delete from client_origins where client_id = $1 and explicit = 0")
                .bind(&c.client_id)
                .execute(&mut *tx)
                .await?;
            for origin in &derived {
                sqlx::query("insert into client_origins (origin, client_id, explicit) values ($1, $2, 0) on conflict do nothing")
                    .bind(origin)
                    .bind(&c.client_id)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// RFC 7523 §3 item 7: records a client assertion's `jti`; `false` if it was seen before
    /// (the primary key refuses the second insert, so two concurrent uses cannot both pass).
    pub async fn client_assertion_jti_use(&self, client_id: &str, jti: &str, expires_at: i64) -> Result<bool> {
        let n = on_db!(self, pool => sqlx::query(
            "insert into client_assertion_jtis (client_id, jti, expires_at) values ($1, $2, $3) on conflict do nothing")
            .bind(client_id).bind(jti).bind(expires_at).execute(pool).await?.rows_affected());
        Ok(n == 1)
    }

    /// The pairwise `sub` of a user in a sector: the stored one, or `candidate`, stored now.
    pub async fn pairwise_subject(&self, sector: &str, user_id: &str, candidate: &str) -> Result<String> {
        let found: Option<(String,)> = on_db!(self, pool =>
            sqlx::query_as("select sub from pairwise_subjects where sector = $1 and user_id = $2")
                .bind(sector).bind(user_id).fetch_optional(pool).await?);
        if let Some((sub,)) = found {
            return Ok(sub);
        }
        on_db!(self, pool => sqlx::query(
            "insert into pairwise_subjects (sector, user_id, sub) values ($1, $2, $3) on conflict do nothing")
            .bind(sector).bind(user_id).bind(candidate).execute(pool).await?.rows_affected());
        // A concurrent first use may have stored its value first: read back the one that stands.
        let (sub,): (String,) = on_db!(self, pool =>
            sqlx::query_as("select sub from pairwise_subjects where sector = $1 and user_id = $2")
                .bind(sector).bind(user_id).fetch_one(pool).await?);
        Ok(sub)
    }

    /// Every sealed client secret (client_secret_jwt), for sealing again after a key rotation.
    pub async fn client_sealed_all(&self) -> Result<Vec<(String, String)>> {
        Ok(on_db!(self, pool => sqlx::query_as(
            "select client_id, secret_sealed from clients where secret_sealed is not null")
            .fetch_all(pool).await?))
    }

    /// Replaces a sealed secret if it is still `old` (a concurrent reseal wrote first otherwise).
    pub async fn client_reseal(&self, client_id: &str, old: &str, new: &str) -> Result<bool> {
        let n = on_db!(self, pool => sqlx::query(
            "update clients set secret_sealed = $3 where client_id = $1 and secret_sealed = $2")
            .bind(client_id).bind(old).bind(new).execute(pool).await?.rows_affected());
        Ok(n == 1)
    }

    /// The local user a pairwise `sub` of this sector stands for.
    pub async fn pairwise_user(&self, sector: &str, sub: &str) -> Result<Option<String>> {
        let row: Option<(String,)> = on_db!(self, pool =>
            sqlx::query_as("select user_id from pairwise_subjects where sector = $1 and sub = $2")
                .bind(sector).bind(sub).fetch_optional(pool).await?);
        Ok(row.map(|r| r.0))
    }

    pub async fn client_delete(&self, client_id: &str) -> Result<()> {
        let n = on_db!(self, pool => sqlx::query("delete from clients where client_id = $1")
            .bind(client_id).execute(pool).await?.rows_affected());
        if n == 0 {
            return Err(StoreError::NotFound("client"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client written before `0003_cors` has no origin rows; the next migrate adds its
    /// redirect URIs' origins, once.
    #[tokio::test]
    async fn migrate_backfills_origins_of_older_clients() {
        let db = Db::connect("sqlite::memory:").await.unwrap();
        db.migrate().await.unwrap();
        let c = NewClient {
            client_id: "c1".into(),
            secret_hash: None,
            name: "old".into(),
            redirect_uris: vec!["https://old.example/cb".into(), "com.example.app:/cb".into()],
            post_logout_redirect_uris: vec![],
            grant_types: vec!["authorization_code".into()],
            is_public: true,
            skip_consent: false,
            id_token_alg: "RS256".into(),
            require_2fa: false,
            allowed_origins: vec!["https://extra.example".into()],
            backchannel_logout_uri: None,
            backchannel_logout_session_required: false,
            scopes: vec![],
            resources: vec![],
            access_token_alg: "RS256".into(),
            meta: ClientMeta::default(),
            registration_token_hash: None,
            secret_sealed: None,
        };
        db.client_create(&c, 1).await.unwrap();
        assert!(db.origin_allowed("https://extra.example").await.unwrap());
        assert_eq!(db.client_allowed_origins("c1").await.unwrap(), ["https://extra.example"]);
        on_db!(&db, pool => sqlx::query("delete from client_origins").execute(pool).await.unwrap().rows_affected());
        assert!(!db.origin_allowed("https://old.example").await.unwrap());
        db.migrate().await.unwrap();
        db.migrate().await.unwrap();
        assert!(db.origin_allowed("https://old.example").await.unwrap());
        assert!(!db.origin_allowed("https://extra.example").await.unwrap());
    }
}
