-- The account page lists a user's active sessions: where each was opened (user agent and
-- client address, as the request gave them) and when it was last used. `last_seen_at` is
-- written at most once a minute; sessions from before this migration start at their creation.
alter table login_sessions add column user_agent text;
alter table login_sessions add column ip text;
alter table login_sessions add column last_seen_at bigint not null default 0;
update login_sessions set last_seen_at = created_at;
