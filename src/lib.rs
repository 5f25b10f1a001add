//! chatrun: run builds and tests from chat.
//!
//! # Layout
//!
//! Layers, lowest first; a module uses its own layer's peers (without a cycle) and anything
//! below, never above (`tests/architecture.rs` checks it):
//!
//! ```text
//!  domain                               runs, steps, platforms, deliveries, the command grammar
//!  chat · store · catalog · report · render      platforms · the only SQL · jobs · JUnit · wording
//!  service · logs · runner · config     use cases · run logs · processes · settings
//!  worker · outbox                      claim → run → finish · send stored replies
//!  http                                 one webhook handler, pages, API, login
//!  app → cli                            builds and runs everything · the command line
//! ```
//!
//! A trigger travels:
//!
//! ```text
//!  chat server ──POST /hooks/{platform}──> http::webhooks ──> chat::<platform> (verify, read)
//!                                              │
//!                                              ▼
//!                           service::execute (permissions, arguments, queue policies)
//!                                              │
//!                         store (run row + acknowledgement, one transaction)
//!                                              │ store::wait_for_work
//!                                              ▼
//!                         worker::Worker ──> runner (child processes) ──> logs::LogStore
//!                           (or, for a job with `runs_on`: http::agents <──HTTP── chatrun agent,
//!                            which runs the same worker::execute on its own machine)
//!                                              │
//!                                              ▼ finish: result + reply intent, one write
//!                         outbox ──> chat::Adapter (word the result from the stored run, send)
//!                                              │
//!                                              ▼
//!                                         chat server
//! ```
//!
//! - Pure (values in, values out): [`domain`], [`catalog`], [`report`], [`render`], and the
//!   parsing and wording half of each platform in [`chat`].
//! - I/O at the edges: [`store`] (SQL, and the wake-ups and cancel requests that follow its
//!   writes), [`runner`] (processes), [`logs::LogStore`] (files, or chunks in a shared
//!   database), each platform's `client.rs` (outgoing HTTP), [`http`] (incoming HTTP).
//! - Wiring: [`config`] (TOML + environment), [`app`] (builds and runs everything), [`cli`].
//!
//! # Adding a chat platform
//!
//! 1. A folder `src/chat/<platform>/`, as `mattermost/`, `teams/` and `slack/`: `config.rs` (its settings
//!    and their checks), `hook.rs` (verify and read a webhook request into a command, and this
//!    request's [`chat::Replies`]), `reply.rs` (wording), `client.rs` (its API), and an
//!    implementation of [`chat::Adapter`] on its client.
//! 2. A variant of [`domain::Platform`]: its name is the webhook's path, `/hooks/<name>`.
//! 3. Its section in `config/raw.rs` (the file's keys) and `config/validate.rs`.
//! 4. One line in `app::App::build`, where the [`chat::Registry`] is made.
//!
//! The handler, the use cases, the outbox and the workers need no change.
//!
//! # Adding a store backend
//!
//! 1. A folder `src/store/<backend>/` with a `Store` that has every method of
//!    [`store::Store`], and its migrations in `migrations/<backend>/`.
//! 2. A variant of `store::Backend` and an arm in [`store::Store::connect_with`] (chosen by
//!    `database_url`); the compiler then names each method the backend still lacks.
//! 3. Its line in the `suite!` of `tests/store_suite.rs`: every test there must pass unchanged.
//!
//! # Glossary
//!
//! - **job**: a definition in `jobs/NAME.toml`: steps to run, a timeout.
//! - **run**: one requested execution of a job, numbered (`#42`).
//! - **agent**: where a run's steps execute: the server's own workers (the local agent), or a
//!   `chatrun agent` on another machine that takes the runs of the jobs whose `runs_on`
//!   labels it has ([`worker::remote`], `docs/agents.md`); both run [`worker::execute`].
//! - **attempt**: one lease of a run by a worker; a run whose worker died is claimed again
//!   with the next attempt number.
//! - **trigger**: the chat message that asked for a run.
//! - **reply**: what chatrun says in chat: the acknowledgement (in the HTTP response, or posted
//!   through the outbox) and the result (posted later).
//! - **anchor**: the message a Slack slash command's acknowledgement is posted as (a slash
//!   command has no message of its own); its result threads under it ([`chat::Posted`]).
//! - **delivery**: one reply waiting in the outbox to be sent to a chat server: worded when
//!   queued, or a run's result, worded by its platform from the stored run when it is sent
//!   ([`domain::ReplyIntent`]).
//! - **acknowledgement**, as the types name its steps: a trigger's [`domain::NewRun`] is
//!   stored by [`store::Store::insert_run`], which learns its number and its place in the
//!   queue and hands them as [`domain::AckFacts`] to the platform's [`domain::AckWords`]; they
//!   give the [`domain::Ack`] (the text, and a delivery when the reply goes through the
//!   outbox), stored with the run, and the store answers [`store::Inserted`] (the run, or the
//!   one found again for a trigger sent twice) or [`store::Error::QueueFull`].
//! - **origin**: where a run was asked for: platform, team, channel, user.
//! - **platform**: a chat server chatrun serves (Mattermost, Teams, Slack), or its own pages
//!   (web).
//! - **adapter**: one platform's code behind [`chat::Adapter`] (hubot's word for it).
//! - **backend**: the database behind [`store::Store`].

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
