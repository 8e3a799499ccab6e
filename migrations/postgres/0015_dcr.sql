-- Dynamic client registration (RFC 7591/7592), JWT client authentication (RFC 7523) and the
-- client metadata of OIDC Registration §2. `metadata` holds the registered metadata clef acts
-- on (JSON, see store::clients::ClientMeta); secrets get columns of their own so the metadata
-- can be shown back without them. (The back-channel logout columns come from 0014.)
alter table clients add column metadata text not null default '{}';
-- SHA-256 of the RFC 7592 registration access token; null for operator-created clients.
alter table clients add column registration_token_hash text;
-- The client secret sealed with secret_box, only for client_secret_jwt (the HMAC key must be
-- known in clear to verify an HS256 assertion, RFC 7523 §2.2).
alter table clients add column secret_sealed text;
-- RFC 7523 §3 item 7: a client assertion's jti is accepted once; rows go after the assertion's exp.
create table client_assertion_jtis (
    client_id text not null references clients (client_id) on delete cascade,
    jti text not null,
    expires_at bigint not null,
    primary key (client_id, jti)
);
create index client_assertion_jtis_expiry on client_assertion_jtis (expires_at);
-- OIDC Core §8.1 pairwise subjects, remembered once computed: the value is an HMAC under the
-- server secret key, and rotating that key must not give a user a new identity at every
-- client of the sector.
create table pairwise_subjects (
    sector text not null,
    user_id text not null references users (user_id) on delete cascade,
    sub text not null,
    primary key (sector, user_id)
);
