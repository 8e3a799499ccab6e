-- One row per grant: a code and every token that came from it. Rotating a refresh token and
-- revoking the grant both lock this row first, so a successor token is either stored before a
-- revocation (and then revoked with the rest) or refused: reuse detection holds under any
-- interleaving (RFC 9700 §4.14.2).

create table grants (
    grant_id text primary key,
    client_id text not null references clients (client_id) on delete cascade,
    user_id text not null references users (user_id) on delete cascade,
    revoked bigint not null,
    created_at bigint not null,
    expires_at bigint not null
);
create index grants_user on grants (user_id);
create index grants_expiry on grants (expires_at);

-- Grants already holding refresh tokens keep working after the upgrade.
insert into grants (grant_id, client_id, user_id, revoked, created_at, expires_at)
select grant_id, min(client_id), min(user_id), 0, min(created_at), max(expires_at)
from refresh_tokens group by grant_id;
