//! End-to-end tests: one binary, every test on SQLite and on PostgreSQL.

// A failed unwrap in a test harness is a test failure with a backtrace, which is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

mod authorize_errors;
mod cli;
mod discovery;
mod email;
mod flow;
mod pages;
mod server;
mod token_errors;
