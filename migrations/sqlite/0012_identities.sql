-- Upstream OpenID Connect identities linked to local accounts (issue 9). The key is
-- (issuer, subject), never the email: `sub` is never reassigned by its issuer (OIDC Core
-- §5.7), an address can be. `email` is the upstream's address when the link was made, shown
-- on the account page; `upstream_id` names the configured upstream (its button and name).
create table upstream_identities (
    issuer text not null,
    subject text not null,
    user_id text not null references users (user_id) on delete cascade,
    upstream_id text not null,
    email text,
    linked_at integer not null,
    last_used_at integer not null,
    primary key (issuer, subject)
);
create index upstream_identities_user on upstream_identities (user_id);
