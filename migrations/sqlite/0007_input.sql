-- Account pre-hijacking (Sudhodanan & Paverd, USENIX Security 2022): a password chosen at
-- sign-up, before the address was proven, is "pending". It signs nobody in until the address is
-- verified in the browser that chose it; a verification anywhere else removes it.
alter table users add column password_pending integer not null default 0;
