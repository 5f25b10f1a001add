//! chatrun: run builds and tests from chat.
//!
//! # Layout
//!
//! A trigger travels left to right through these modules:
//!
//! ```text
//!  chat server ──POST──> http::webhooks ──> chat::mattermost (verify, parse: pure)
//!                              │                   │
//!                              │             catalog (which job)
//!                              ▼
//!                         store::runs  (run row + acknowledgement, one transaction)
//!                              │ wake
//!                              ▼
//!                         queue::Worker ──> runner (child processes, logs)
//!                              │
//!                              ▼ finish: result + outbox row, one transaction
//!                         outbox (POST the reply, retry with backoff) ──> chat server
//! ```
//!
//! - Pure modules (bytes in, values out, no I/O): [`chat`], [`catalog`] (parsing), [`render`].
//! - I/O at the edges: [`store`] (the only SQL), [`runner`] (processes), [`outbox`]
//!   (outgoing HTTP), [`http`] (incoming HTTP).
//! - Wiring: [`config`] (TOML + environment), [`app`] (builds and runs everything), [`cli`].
//!
//! # Glossary
//!
//! - **job**: a definition in `jobs/NAME.toml`: steps to run, a timeout.
//! - **run**: one requested execution of a job, numbered (`#42`), stored in SQLite.
//! - **attempt**: one lease of a run by a worker; a run whose worker died is claimed again
//!   with the next attempt number.
//! - **trigger**: the chat message that asked for a run.
//! - **reply**: what chatrun says in chat: the acknowledgement (in the HTTP response) and the
//!   result (posted later).
//! - **delivery**: one reply waiting in the outbox to be sent to a chat server.

pub mod app;
pub mod catalog;
pub mod chat;
pub mod cli;
pub mod config;
pub mod domain;
pub mod http;
pub mod logs;
pub mod outbox;
pub mod render;
pub mod report;
pub mod runner;
pub mod service;
pub mod store;
pub mod worker;
