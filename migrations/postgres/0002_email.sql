-- Email codes (login, verify_email, reset_password, step_up) and shared rate-limit counters.

create table otp_codes (
    otp_id text primary key,
    email text not null,
    purpose text not null,
    user_id text references users (user_id) on delete cascade,
    -- HMAC-SHA256 with the server key: a stolen database does not give codes away.
    code_hash text not null,
    -- SHA-256 of the magic link's high-entropy token.
    link_hash text not null,
    -- Which browser asked for the code: the link completes the step only there.
    browser_hash text not null,
    request_id text,
    attempts bigint not null,
    used bigint not null,
    created_at bigint not null,
    expires_at bigint not null
);
-- One live code per email and purpose: issuing a new one replaces the old.
create unique index otp_codes_email_purpose on otp_codes (email, purpose);
create unique index otp_codes_link on otp_codes (link_hash);
create index otp_codes_expiry on otp_codes (expires_at);

create table rate_limits (
    bucket text primary key,
    window_start bigint not null,
    hits bigint not null
);
create index rate_limits_window on rate_limits (window_start);

-- A client may demand two factors for every login, whatever its requests say.
alter table clients add column require_2fa bigint not null default 0;

-- Claims for the phone and address scopes (OIDC Core §5.1).
alter table users add column phone_number text;
alter table users add column phone_number_verified bigint not null default 0;
alter table users add column address text;
