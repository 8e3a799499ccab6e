-- Two-factor login (RFC 6238 TOTP) with backup codes.
-- The TOTP secret is sealed with AES-256-GCM under a key derived from the server secret key
-- (crate::secret_box), never stored in the clear; enabled = 0 while enrolment waits for the
-- first valid code. last_step is the last accepted time step: a step is accepted once.
create table totp_credentials (
    user_id text primary key references users (user_id) on delete cascade,
    sealed_secret text not null,
    enabled integer not null,
    last_step integer,
    created_at integer not null,
    enabled_at integer
);
-- Backup codes, only as HMACs under the server secret key; each row is spent by a delete.
create table backup_codes (
    user_id text not null references users (user_id) on delete cascade,
    code_hash text not null,
    created_at integer not null,
    primary key (user_id, code_hash)
);
-- Consecutive second-factor tries (TOTP or backup code) since the last success, and the lock
-- they set; counted by one conditional upsert so parallel guesses cannot exceed the limit.
create table second_factor_locks (
    user_id text primary key references users (user_id) on delete cascade,
    failures integer not null,
    locked_until integer not null
);
