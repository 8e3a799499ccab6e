-- The HMAC key now lives outside the database (CLEF_SECRET_KEY or keys/secret.key): a stolen
-- database must not carry the key that protects its own code hashes. Codes and CSRF forms
-- issued under the old key stop verifying; codes live minutes, so users ask for a new one.
delete from settings where name = 'hmac_key';
