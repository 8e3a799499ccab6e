-- A login attempt (issue 8): where one login stands, kept server-side so any instance can
-- continue it and no hidden form field steers it. The id travels in the page's forms; only
-- its SHA-256 is stored, and every load must also match the browser it was started in.
create table login_attempts (
    attempt_hash text primary key,
    -- The CSRF-seed hash of the browser that started it (as otp_codes.browser_hash).
    browser_hash text not null,
    -- json: "login" | "signup" | {"reset": {"password_set": false}}
    purpose text not null,
    -- The authorization request it serves; none for a login from the account page.
    request_id text,
    -- json: {"level": "one" | "two"}
    requirement text not null,
    -- Typed by the user, not yet proven.
    claimed_email text,
    -- Set only when a factor passed, never from a form field.
    user_id text references users (user_id) on delete cascade,
    -- json: [{"method": "password", "at": 1764590000}]
    factors text not null,
    -- json, tagged by method: the started method's server-side state.
    pending text,
    failures bigint not null,
    -- Every write is `... where version = $n`: of two racing posts, one wins.
    version bigint not null,
    created_at bigint not null,
    expires_at bigint not null
);
create index login_attempts_expiry on login_attempts (expires_at);

-- The attempt an emailed code (and its magic link) belongs to; none for codes issued before.
alter table otp_codes add column attempt_hash text;
