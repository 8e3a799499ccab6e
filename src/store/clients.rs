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
        })
    }
}

const COLUMNS: &str = "client_id, secret_hash, name, redirect_uris, post_logout_redirect_uris, \
    grant_types, is_public, skip_consent, id_token_alg, require_2fa, created_at, \
    backchannel_logout_uri, backchannel_logout_session_required, \
    scopes, resources, access_token_alg";

impl Db {
    /// The client row and its CORS origins in one transaction: an instance never sees a
    /// client without its origins.
    pub async fn client_create(&self, c: &NewClient, now: i64) -> Result<()> {
        let sql = format!("insert into clients ({COLUMNS}) values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)");
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
