-- OpenID Connect Back-Channel Logout 1.0. A client may register a URI that clef POSTs a
-- logout token to when a login session the client took part in ends (§2.2, §2.5).
alter table clients add column backchannel_logout_uri text;
alter table clients add column backchannel_logout_session_required integer not null default 0;

-- The session's `sid` claim (§2.1): random, unrelated to the cookie or its hash, so an ID
-- token read by a relying party gives no way to the session. Sessions already open get one.
alter table login_sessions add column sid text;
update login_sessions set sid = lower(hex(randomblob(16)));
create unique index login_sessions_sid on login_sessions (sid);

-- Codes, grants and refresh tokens remember the session they came from: refreshed ID tokens
-- carry the same sid, and ending the session revokes what it granted.
alter table auth_codes add column sid text;
alter table grants add column sid text;
alter table refresh_tokens add column sid text;
create index grants_sid on grants (sid);
create index auth_codes_sid on auth_codes (sid);

-- Which clients took part in a session: written when a code of the session is redeemed.
-- Deleted with the session's end; expires with the session otherwise.
create table session_clients (
    sid text not null,
    client_id text not null references clients (client_id) on delete cascade,
    user_id text not null references users (user_id) on delete cascade,
    created_at integer not null,
    expires_at integer not null,
    primary key (sid, client_id)
);
create index session_clients_expiry on session_clients (expires_at);

-- Logout tokens still to deliver, written in the transaction that ends the session, so a
-- restart loses none. A worker claims rows by setting claimed_until (a lease), so two
-- instances never send one at the same time; the token is signed at each attempt.
create table backchannel_pending (
    notification_id text primary key,
    client_id text not null references clients (client_id) on delete cascade,
    sub text not null,
    sid text not null,
    attempts integer not null,
    next_at integer not null,
    claimed_until integer not null,
    created_at integer not null
);
create index backchannel_pending_due on backchannel_pending (next_at);
