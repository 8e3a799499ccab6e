-- clef schema v1 (PostgreSQL). Timestamps are Unix seconds; flags are 0/1 bigints;
-- every secret, code and token is stored only as a hash.

create table settings (
    name text primary key,
    value text not null
);

create table clients (
    client_id text primary key,
    secret_hash text,
    name text not null,
    redirect_uris text not null,
    post_logout_redirect_uris text not null,
    grant_types text not null,
    is_public bigint not null,
    skip_consent bigint not null,
    id_token_alg text not null,
    created_at bigint not null
);

create table users (
    user_id text primary key,
    email text not null unique,
    email_verified bigint not null,
    name text,
    password_hash text,
    roles text not null,
    locale text,
    created_at bigint not null,
    updated_at bigint not null
);

create table login_sessions (
    session_hash text primary key,
    user_id text not null references users (user_id) on delete cascade,
    auth_time bigint not null,
    amr text not null,
    acr text not null,
    created_at bigint not null,
    expires_at bigint not null
);
create index login_sessions_user on login_sessions (user_id);
create index login_sessions_expiry on login_sessions (expires_at);

create table auth_requests (
    request_id text primary key,
    client_id text not null references clients (client_id) on delete cascade,
    params text not null,
    created_at bigint not null,
    expires_at bigint not null
);
create index auth_requests_expiry on auth_requests (expires_at);

create table auth_codes (
    code_hash text primary key,
    grant_id text not null,
    client_id text not null references clients (client_id) on delete cascade,
    user_id text not null references users (user_id) on delete cascade,
    redirect_uri text not null,
    scope text not null,
    nonce text,
    code_challenge text,
    auth_time bigint not null,
    amr text not null,
    acr text not null,
    session_hash text,
    used bigint not null,
    created_at bigint not null,
    expires_at bigint not null
);
create index auth_codes_expiry on auth_codes (expires_at);

create table access_tokens (
    -- SHA-256 of the whole JWT: userinfo and introspection match it exactly, which is
    -- stricter than a signature check and needs no RSA work per request.
    token_hash text primary key,
    jti text not null unique,
    grant_id text not null,
    client_id text not null references clients (client_id) on delete cascade,
    user_id text not null references users (user_id) on delete cascade,
    scope text not null,
    revoked bigint not null,
    created_at bigint not null,
    expires_at bigint not null
);
create index access_tokens_grant on access_tokens (grant_id);
create index access_tokens_user on access_tokens (user_id);
create index access_tokens_expiry on access_tokens (expires_at);

create table refresh_tokens (
    token_hash text primary key,
    grant_id text not null,
    client_id text not null references clients (client_id) on delete cascade,
    user_id text not null references users (user_id) on delete cascade,
    scope text not null,
    nonce text,
    auth_time bigint not null,
    amr text not null,
    acr text not null,
    used bigint not null,
    created_at bigint not null,
    expires_at bigint not null
);
create index refresh_tokens_grant on refresh_tokens (grant_id);
create index refresh_tokens_user on refresh_tokens (user_id);
create index refresh_tokens_expiry on refresh_tokens (expires_at);

create table consents (
    user_id text not null references users (user_id) on delete cascade,
    client_id text not null references clients (client_id) on delete cascade,
    scope text not null,
    updated_at bigint not null,
    primary key (user_id, client_id)
);
