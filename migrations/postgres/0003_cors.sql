-- Web origins whose browser code may call the JSON endpoints (CORS). Written with the client
-- in one transaction, so every instance sees a client the CLI created in another process.
create table client_origins (
    origin text not null,
    client_id text not null references clients (client_id) on delete cascade,
    -- 1 for an operator's --allowed-origin, 0 for the origin of a redirect URI.
    explicit integer not null,
    primary key (origin, client_id)
);
