-- reqobj: the `claims` request parameter (OIDC Core §5.5) as the code carries it to the token
-- endpoint, then kept on the grant for refreshed ID tokens and userinfo. JSON, null: none.
alter table auth_codes add column claims text;
alter table grants add column claims text;
