//! End-to-end tests: one binary, every test on SQLite and on PostgreSQL.

mod support;

mod authorize_errors;
mod cli;
mod discovery;
mod flow;
mod pages;
mod token_errors;
