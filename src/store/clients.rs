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
        })
    }
}

const COLUMNS: &str = "client_id, secret_hash, name, redirect_uris, post_logout_redirect_uris, \
    grant_types, is_public, skip_consent, id_token_alg, require_2fa, created_at";

impl Db {
    pub async fn client_create(&self, c: &NewClient, now: i64) -> Result<()> {
        let sql = format!("insert into clients ({COLUMNS}) values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)");
        on_db!(self, pool => sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
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
            .execute(pool)
            .await
            .map_err(|e| on_unique(e, "a client with this id already exists"))?
            .rows_affected());
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

    pub async fn client_delete(&self, client_id: &str) -> Result<()> {
        let n = on_db!(self, pool => sqlx::query("delete from clients where client_id = $1")
            .bind(client_id).execute(pool).await?.rows_affected());
        if n == 0 {
            return Err(StoreError::NotFound("client"));
        }
        Ok(())
    }
}
