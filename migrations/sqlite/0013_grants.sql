-- Issue 10 (grants): client_credentials, resource indicators (RFC 8707), the refresh grace,
-- and the signing algorithm of each client's access tokens.

-- What a client may ask for: API scopes for client_credentials, and the resources (RFC 8707)
-- its access tokens may be issued to; JSON lists like redirect_uris.
alter table clients add column scopes text not null default '[]';
alter table clients add column resources text not null default '[]';
-- id_token_alg maps to the registration metadata id_token_signed_response_alg; this one has
-- no registration name of its own (RFC 9068 defines none) and is set with --token-alg.
alter table clients add column access_token_alg text not null default 'RS256';

-- The resources the user's grant covers; each access token may name a subset (RFC 8707 §2.2).
alter table auth_codes add column resources text not null default '[]';
alter table refresh_tokens add column resources text not null default '[]';

-- The refresh grace (CLEF_REFRESH_GRACE): when a token was rotated, the hash of its successor,
-- and the successor's token response sealed with the server secret key (crate::secret_box)
-- for the grace window only, so a retry after a lost response gets the same successor once.
alter table refresh_tokens add column rotated_at integer;
alter table refresh_tokens add column successor_hash text;
alter table refresh_tokens add column successor_sealed text;
create index refresh_tokens_sealed on refresh_tokens (rotated_at) where successor_sealed is not null;

-- client_credentials tokens have no user (RFC 9068 §2.2: sub is the client): user_id becomes
-- nullable. SQLite cannot drop a NOT NULL constraint, so the table is rebuilt; no other
-- table references it.
create table access_tokens_new (
    token_hash text primary key,
    jti text not null unique,
    grant_id text not null,
    client_id text not null references clients (client_id) on delete cascade,
    user_id text references users (user_id) on delete cascade,
    scope text not null,
    revoked integer not null,
    created_at integer not null,
    expires_at integer not null
);
insert into access_tokens_new (token_hash, jti, grant_id, client_id, user_id, scope, revoked, created_at, expires_at)
select token_hash, jti, grant_id, client_id, user_id, scope, revoked, created_at, expires_at from access_tokens;
drop table access_tokens;
alter table access_tokens_new rename to access_tokens;
create index access_tokens_grant on access_tokens (grant_id);
create index access_tokens_user on access_tokens (user_id);
create index access_tokens_expiry on access_tokens (expires_at);
