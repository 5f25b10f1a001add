//! Black-box tests: chatrun started on port 0 with a temporary SQLite file and jobs folder, a
//! local HTTP server (wiremock on 127.0.0.1) playing Mattermost, real child processes.

#![allow(clippy::unwrap_used)] // test helpers fail the test on any error, by design

mod agents;
mod browser;
mod cli;
mod commands;
mod crash;
mod helpers;
mod history;
mod input;
mod mattermost;
mod outbox;
mod output;
mod policies;
mod postgres;
mod queue;
mod secrets;
mod slack;
mod spawned;
mod teams;
#[path = "../support/postgres.rs"]
mod throwaway_postgres;
mod unavailable;
