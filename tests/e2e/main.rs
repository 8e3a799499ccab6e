//! End-to-end tests: one binary, every test on SQLite and on PostgreSQL.

// A failed unwrap in a test harness is a test failure with a backtrace, which is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

mod account;
mod account_api;
mod authorize_errors;
mod backchannel; // bcl
mod browser;
mod cli;
mod cors;
mod discovery;
mod email;
mod flow;
// grants
mod grants;
mod input;
mod login_chain;
mod login_totp;
// fed
mod login_upstream;
// ops
mod ops;
// multi
mod multi_instance;
mod page_details;
mod pages;
mod proxy;
mod reauth;
// reqobj
mod request_objects;
// dcr
mod registration;
mod server;
mod token_errors;
mod tokens;
mod two_factor;
mod upstream_client;
