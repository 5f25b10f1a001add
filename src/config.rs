//! Configuration: a TOML file (or the embedded defaults), then `CHATRUN_*` environment overrides,
//! then validation into a ready-to-use [`Config`].
//!
//! Two layers, as in ripgrep's `LowArgs`/`HiArgs`: [`RawConfig`] is exactly what the file may say
//! (serde, `deny_unknown_fields`), [`Config`] is what the rest of the program may rely on (paths
//! resolved, URLs checked, defaults filled in). Validation collects *every* problem so that
//! `chatrun check` can list them all at once.
//!
//! Environment overrides: `CHATRUN_KEY` sets a top-level key, `CHATRUN_SECTION__KEY` a key in a
//! section (`__` is the nesting), e.g. `CHATRUN_MATTERMOST__BOT_TOKEN`. Lists take a
//! comma-separated value (`CHATRUN_MATTERMOST__TOKENS=tok1,tok2`). The variables that chatrun sets
//! for job steps (`CHATRUN_RUN_ID`, `CHATRUN_JOB`, ...) are not configuration and are skipped.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::domain::Problem;

/// The file read when `--config` is not given, if it exists in the working directory.
pub const DEFAULT_FILE: &str = "chatrun.toml";

/// Environment variables chatrun sets for job steps (and `CHATRUN_PARAM_*`, reserved for job
/// parameters); never read as configuration, so a chatrun started from a step still starts.
const STEP_VARIABLES: &[&str] = &["RUN_ID", "JOB", "USER", "CHANNEL"];

/// Bounds of `max_body_bytes`: a Mattermost payload needs a few KiB; more than 64 MiB is a
/// mistake.
const MIN_BODY_BYTES: u64 = 4096;
const MAX_BODY_BYTES: u64 = 64 * 1024 * 1024;

/// Bounds of `replay_window`.
const MIN_REPLAY_WINDOW: Duration = Duration::from_secs(1);
const MAX_REPLAY_WINDOW: Duration = Duration::from_secs(24 * 60 * 60);

/// Every problem found while loading the configuration.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n{}", list(.0))]
pub struct Error(pub Vec<Problem>);

fn list(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("  - {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// What the TOML file may contain. Every field has a default, so an empty file is valid.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default = "default_listen")]
    listen: String,
    #[serde(default = "default_database_url")]
    database_url: String,
    #[serde(default = "default_jobs_dir")]
    jobs_dir: PathBuf,
    #[serde(default = "default_data_dir")]
    data_dir: PathBuf,
    #[serde(default)]
    public_url: Option<String>,
    #[serde(default = "default_workers", deserialize_with = "de::number")]
    workers: u64,
    #[serde(default = "default_lease_secs", deserialize_with = "de::number")]
    lease_secs: u64,
    #[serde(default = "default_kill_grace_secs", deserialize_with = "de::number")]
    kill_grace_secs: u64,
    #[serde(default = "default_job_nice", deserialize_with = "de::number")]
    job_nice: u64,
    #[serde(
        default = "default_shutdown_grace_secs",
        deserialize_with = "de::number"
    )]
    shutdown_grace_secs: u64,
    #[serde(default = "default_rate_limit", deserialize_with = "de::number")]
    rate_limit_per_minute: u64,
    #[serde(default = "default_max_body_bytes", deserialize_with = "de::number")]
    max_body_bytes: u64,
    #[serde(default = "default_replay_window")]
    replay_window: String,
    #[serde(default = "default_busy_timeout_ms", deserialize_with = "de::number")]
    busy_timeout_ms: u64,
    #[serde(default = "default_max_log_bytes", deserialize_with = "de::number")]
    max_log_bytes: u64,
    #[serde(default)]
    mattermost: RawMattermost,
    #[serde(default)]
    teams: RawTeams,
    #[serde(default)]
    outbox: RawOutbox,
    #[serde(default)]
    web: RawWeb,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWeb {
    #[serde(default, deserialize_with = "de::optional_bool")]
    open: Option<bool>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    users: Vec<RawWebUser>,
    #[serde(default)]
    trust_header: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebUser {
    #[serde(default)]
    name: String,
    #[serde(default)]
    password_hash: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTeams {
    #[serde(default)]
    webhooks: Vec<RawTeamsWebhook>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTeamsWebhook {
    #[serde(default)]
    name: String,
    #[serde(default)]
    secret: String,
    #[serde(default)]
    follow_up_url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMattermost {
    #[serde(default, deserialize_with = "de::list")]
    tokens: Vec<String>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    bot_token: Option<String>,
    #[serde(default)]
    bot_user_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOutbox {
    #[serde(default = "default_retry_base_ms", deserialize_with = "de::number")]
    retry_base_ms: u64,
    #[serde(default = "default_retry_max_secs", deserialize_with = "de::number")]
    retry_max_secs: u64,
    #[serde(default = "default_give_up_after")]
    give_up_after: String,
}

impl Default for RawOutbox {
    fn default() -> Self {
        Self {
            retry_base_ms: default_retry_base_ms(),
            retry_max_secs: default_retry_max_secs(),
            give_up_after: default_give_up_after(),
        }
    }
}

fn default_listen() -> String {
    "127.0.0.1:8080".into()
}
fn default_database_url() -> String {
    "sqlite://data/chatrun.db".into()
}
fn default_jobs_dir() -> PathBuf {
    "jobs".into()
}
fn default_data_dir() -> PathBuf {
    "data".into()
}
fn default_workers() -> u64 {
    2
}
fn default_lease_secs() -> u64 {
    30
}
fn default_kill_grace_secs() -> u64 {
    5
}
fn default_job_nice() -> u64 {
    10
}
fn default_shutdown_grace_secs() -> u64 {
    30
}
fn default_rate_limit() -> u64 {
    10
}
fn default_max_body_bytes() -> u64 {
    1024 * 1024
}
fn default_replay_window() -> String {
    "5m".into()
}
fn default_busy_timeout_ms() -> u64 {
    5000
}
fn default_max_log_bytes() -> u64 {
    crate::logs::DEFAULT_MAX_LOG_BYTES
}
fn default_retry_base_ms() -> u64 {
    1000
}
fn default_retry_max_secs() -> u64 {
    300
}
fn default_give_up_after() -> String {
    "24h".into()
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the HTTP server listens.
    pub listen: SocketAddr,
    /// sqlx SQLite URL, e.g. `sqlite://data/chatrun.db`.
    pub database_url: String,
    /// Folder of `*.toml` job definitions.
    pub jobs_dir: PathBuf,
    /// Folder for run logs and the local trigger token.
    pub data_dir: PathBuf,
    /// Base of links in chat replies, without a trailing slash.
    pub public_url: String,
    /// How many runs may execute at once.
    pub workers: usize,
    /// How long a worker's claim on a run lasts without a heartbeat.
    pub lease: Duration,
    /// Time between SIGTERM and SIGKILL when a step is stopped.
    pub kill_grace: Duration,
    /// Added to the server's nice value for every step and what it starts, so acknowledgements
    /// stay fast while builds load the machine; 0 to 19, 0 leaves steps at the server's priority.
    pub job_nice: u8,
    /// On SIGTERM or SIGINT, how long running steps may go on before they are stopped.
    pub shutdown_grace: Duration,
    /// Requests that start runs one user may make per minute; 0 for no limit.
    pub rate_limit_per_minute: usize,
    /// The largest request body accepted, in bytes; a larger one gets 413.
    pub max_body_bytes: usize,
    /// How far a webhook message's own timestamp may lie from now, either way, before it is
    /// refused as a replay (or as sent by a clock that is far off).
    pub replay_window: Duration,
    /// How long a database write waits for another writer's lock before it fails.
    pub busy_timeout: Duration,
    /// The most bytes a run's log file keeps: beyond it, its head and tail around a marker.
    pub max_log_bytes: u64,
    /// Mattermost settings.
    pub mattermost: Mattermost,
    /// Microsoft Teams outgoing webhooks, one per team.
    pub teams: Vec<TeamsWebhook>,
    /// Reply delivery settings.
    pub outbox: Outbox,
    /// Who may see the history pages and the API.
    pub web: Web,
    /// Where the configuration came from, for messages.
    pub source: String,
}

/// Mattermost settings.
#[derive(Clone, Default)]
pub struct Mattermost {
    /// Tokens of the outgoing webhooks we accept. Empty: only the local token is accepted.
    pub tokens: Vec<String>,
    /// Server base URL for the REST API, without a trailing slash.
    pub url: Option<String>,
    /// Access token of the bot account that posts results.
    pub bot_token: Option<String>,
    /// The bot account's user id; triggers from it are ignored. Looked up when not set.
    pub bot_user_id: Option<String>,
}

impl std::fmt::Debug for Mattermost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The webhook tokens and the bot's token stay out of logs.
        f.debug_struct("Mattermost")
            .field("tokens", &format!("<{} secret(s)>", self.tokens.len()))
            .field("url", &self.url)
            .field("bot_token", &self.bot_token.as_ref().map(|_| "<secret>"))
            .field("bot_user_id", &self.bot_user_id)
            .finish()
    }
}

impl Mattermost {
    /// The REST API base URL and bot token, when both are configured.
    pub fn rest(&self) -> Option<(&str, &str)> {
        Some((self.url.as_deref()?, self.bot_token.as_deref()?))
    }
}

/// One Teams outgoing webhook (Teams creates one per team).
#[derive(Clone)]
pub struct TeamsWebhook {
    /// Our name for it: `/hooks/teams/{name}`, and what runs and replies are filed under.
    pub name: String,
    /// The HMAC key: the security token Teams showed, base64-decoded.
    pub key: Vec<u8>,
    /// The Workflows URL results are posted to; without it results are only on the history
    /// page.
    pub follow_up_url: Option<String>,
}

impl std::fmt::Debug for TeamsWebhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key and the URL (whose `sig` is a credential) stay out of logs.
        f.debug_struct("TeamsWebhook")
            .field("name", &self.name)
            .field("key", &"<secret>")
            .field(
                "follow_up_url",
                &self.follow_up_url.as_ref().map(|_| "<secret>"),
            )
            .finish()
    }
}

/// Access to the history pages and the JSON API (webhooks have their own authentication).
#[derive(Clone, Default)]
pub struct Web {
    /// No login needed: by default when `listen` is a loopback address.
    pub open: bool,
    /// A shared password (any user name).
    pub password: Option<String>,
    /// Users and their Argon2 password hashes (`chatrun hash-password`).
    pub users: Vec<(String, String)>,
    /// A header a reverse proxy sets to the signed-in user, trusted as is.
    pub trust_header: Option<String>,
}

impl std::fmt::Debug for Web {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Web")
            .field("open", &self.open)
            .field("password", &self.password.as_ref().map(|_| "<secret>"))
            .field(
                "users",
                &self.users.iter().map(|u| &u.0).collect::<Vec<_>>(),
            )
            .field("trust_header", &self.trust_header)
            .finish()
    }
}

impl Web {
    /// Whether any way to log in is configured.
    pub fn has_login(&self) -> bool {
        self.password.is_some() || !self.users.is_empty() || self.trust_header.is_some()
    }
}

/// Reply delivery settings.
#[derive(Debug, Clone)]
pub struct Outbox {
    /// Delay before the first retry; doubles each attempt.
    pub retry_base: Duration,
    /// Longest delay between two attempts.
    pub retry_max: Duration,
    /// How long after it was queued a delivery that still fails is given up (marked dead).
    pub give_up_after: Duration,
}

impl Config {
    /// Loads `path`, or `chatrun.toml` in the working directory, or the embedded defaults, then
    /// applies the environment.
    ///
    /// # Errors
    ///
    /// Every problem found, each with its file and key.
    pub fn load(path: Option<&Path>) -> Result<Self, Error> {
        let path = path.map(Path::to_path_buf).or_else(|| {
            Path::new(DEFAULT_FILE)
                .exists()
                .then(|| DEFAULT_FILE.into())
        });
        let (source, text) = match path {
            Some(path) => {
                let source = path.display().to_string();
                let text = std::fs::read_to_string(&path).map_err(|err| {
                    Error(vec![Problem {
                        source: source.clone(),
                        key: String::new(),
                        message: format!("cannot read: {err}"),
                    }])
                })?;
                (source, text)
            }
            None => ("embedded defaults".to_string(), String::new()),
        };
        Self::parse(&source, &text, std::env::vars())
    }

    /// Parses configuration text and environment variables (pure: for tests and `check`).
    ///
    /// # Errors
    ///
    /// Every problem found, each with its source and key.
    pub fn parse(
        source: &str,
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, Error> {
        let problem = |key: &str, message: String| Problem {
            source: source.to_string(),
            key: key.to_string(),
            message,
        };
        let overrides = env_overrides(env);
        let raw: RawConfig = if overrides.is_empty() {
            toml::from_str(text).map_err(|err| Error(vec![problem("", toml_message(&err))]))?
        } else {
            let mut table: toml::Table =
                toml::from_str(text).map_err(|err| Error(vec![problem("", toml_message(&err))]))?;
            let names: Vec<String> = overrides.iter().map(|o| o.0.clone()).collect();
            for (_, path, value) in overrides {
                prepare_arrays(&mut table, &path);
                set_path(&mut table, &path, value);
            }
            toml::Value::Table(table).try_into().map_err(|err| {
                Error(vec![problem(
                    "",
                    format!(
                        "{} (after applying {})",
                        toml_message(&err),
                        names.join(", ")
                    ),
                )])
            })?
        };
        Self::validate(source, raw)
    }

    fn validate(source: &str, raw: RawConfig) -> Result<Self, Error> {
        let mut problems = Vec::new();
        let mut problem = |key: &str, message: String| {
            problems.push(Problem {
                source: source.to_string(),
                key: key.to_string(),
                message,
            })
        };

        let listen = match raw.listen.parse::<SocketAddr>() {
            Ok(addr) => addr,
            Err(_) => {
                problem(
                    "listen",
                    format!(
                        "`{}` is not an address with a port, e.g. `127.0.0.1:8080`",
                        raw.listen
                    ),
                );
                default_listen()
                    .parse()
                    .expect("the default address parses")
            }
        };
        if !raw.database_url.starts_with("sqlite:") {
            problem(
                "database_url",
                format!(
                    "`{}` is not a SQLite URL, e.g. `sqlite://data/chatrun.db`",
                    raw.database_url
                ),
            );
        }
        let public_url = match raw.public_url {
            Some(url) => {
                if !is_http_url(&url) {
                    problem(
                        "public_url",
                        format!("`{url}` must start with http:// or https://"),
                    );
                }
                url.trim_end_matches('/').to_string()
            }
            None => default_public_url(listen),
        };
        if raw.workers == 0 || raw.workers > 256 {
            problem(
                "workers",
                format!("{} is out of range: 1 to 256", raw.workers),
            );
        }
        if raw.lease_secs < 2 {
            problem(
                "lease_secs",
                format!("{} is too short: at least 2", raw.lease_secs),
            );
        }

        let mut tokens = Vec::new();
        for (i, token) in raw.mattermost.tokens.into_iter().enumerate() {
            let token = token.trim().to_string();
            if token.is_empty() {
                problem(&format!("mattermost.tokens[{i}]"), "is empty".into());
            } else if is_placeholder(&token) {
                problem(&format!("mattermost.tokens[{i}]"), PLACEHOLDER.into());
            } else {
                tokens.push(token);
            }
        }
        let url = raw.mattermost.url.filter(|u| !u.trim().is_empty());
        if let Some(url) = &url
            && !is_http_url(url)
        {
            problem(
                "mattermost.url",
                format!("`{url}` must start with http:// or https://"),
            );
        }
        let bot_token = raw.mattermost.bot_token.filter(|t| !t.trim().is_empty());
        if bot_token.as_deref().is_some_and(is_placeholder) {
            problem("mattermost.bot_token", PLACEHOLDER.into());
        }
        if url.is_some() != bot_token.is_some() {
            let missing = if url.is_some() {
                "mattermost.bot_token"
            } else {
                "mattermost.url"
            };
            problem(
                missing,
                "is needed too: results are posted through the REST API with both url and bot_token"
                    .into(),
            );
        }
        let mut teams: Vec<TeamsWebhook> = Vec::new();
        for (i, hook) in raw.teams.webhooks.into_iter().enumerate() {
            let key = |field: &str| format!("teams.webhooks[{i}].{field}");
            let name = hook.name.trim().to_string();
            if !is_name(&name) {
                problem(
                    &key("name"),
                    format!(
                        "`{name}` must be letters, digits, `-`, `_` or `.` (it is part of the URL /hooks/teams/NAME)"
                    ),
                );
            } else if let Some(other) = teams.iter().find(|t| env_form(&t.name) == env_form(&name))
            {
                problem(
                    &key("name"),
                    format!(
                        "`{name}` is too like `{}`: environment variables would name both CHATRUN_TEAMS__WEBHOOKS__{}__*",
                        other.name,
                        env_form(&name).to_uppercase()
                    ),
                );
            }
            use base64::Engine as _;
            let secret = base64::engine::general_purpose::STANDARD.decode(hook.secret.trim());
            let key_bytes = match secret {
                Ok(bytes) if bytes.iter().all(|&b| b == 0) && !bytes.is_empty() => {
                    problem(
                        &key("secret"),
                        "is the example file's placeholder (all zero bytes), with which anyone can sign requests: paste the security token Teams showed".into(),
                    );
                    Vec::new()
                }
                Ok(bytes) if !bytes.is_empty() => bytes,
                Ok(_) => {
                    problem(
                        &key("secret"),
                        "is missing: paste the security token Teams showed when the webhook was created".into(),
                    );
                    Vec::new()
                }
                Err(err) => {
                    problem(
                        &key("secret"),
                        format!(
                            "is not valid base64 ({err}): paste the security token exactly as Teams showed it"
                        ),
                    );
                    Vec::new()
                }
            };
            let follow_up_url = hook.follow_up_url.filter(|u| !u.trim().is_empty());
            if let Some(url) = &follow_up_url {
                if is_placeholder(url) {
                    problem(&key("follow_up_url"), PLACEHOLDER.into());
                } else if !is_http_url(url) {
                    problem(
                        &key("follow_up_url"),
                        "must start with http:// or https://".into(),
                    );
                }
            }
            teams.push(TeamsWebhook {
                name,
                key: key_bytes,
                follow_up_url,
            });
        }
        let mut web_users = Vec::new();
        for (i, user) in raw.web.users.into_iter().enumerate() {
            let key = |field: &str| format!("web.users[{i}].{field}");
            if user.name.trim().is_empty() {
                problem(&key("name"), "is missing".into());
            }
            if !user.password_hash.starts_with("$argon2") {
                problem(
                    &key("password_hash"),
                    "must be an Argon2 hash: make one with `chatrun hash-password`".into(),
                );
            }
            web_users.push((user.name.trim().to_string(), user.password_hash));
        }
        let password = raw.web.password.filter(|p| !p.is_empty());
        if password.as_deref().is_some_and(is_placeholder) {
            problem("web.password", PLACEHOLDER.into());
        }
        if password.as_ref().is_some_and(|p| p.len() < 12) {
            problem(
                "web.password",
                "is too short: at least 12 characters".into(),
            );
        }
        let trust_header = raw.web.trust_header.filter(|h| !h.trim().is_empty());
        let has_login = password.is_some() || !web_users.is_empty() || trust_header.is_some();
        let web = Web {
            // Open without a login only where nobody else can reach it, and only when no login
            // is configured (configuring one means wanting it used, also behind a local proxy).
            open: raw
                .web
                .open
                .unwrap_or_else(|| listen.ip().is_loopback() && !has_login),
            password,
            users: web_users,
            trust_header,
        };
        let give_up_after = match humantime::parse_duration(raw.outbox.give_up_after.trim()) {
            Ok(d) if d.is_zero() => {
                problem("outbox.give_up_after", "must be longer than 0".into());
                d
            }
            Ok(d) => d,
            Err(err) => {
                problem(
                    "outbox.give_up_after",
                    format!(
                        "`{}` is not a duration such as \"24h\" or \"90m\": {err}",
                        raw.outbox.give_up_after
                    ),
                );
                Duration::ZERO
            }
        };
        if !(MIN_BODY_BYTES..=MAX_BODY_BYTES).contains(&raw.max_body_bytes) {
            problem(
                "max_body_bytes",
                format!(
                    "{} is out of range: {MIN_BODY_BYTES} to {MAX_BODY_BYTES}",
                    raw.max_body_bytes
                ),
            );
        }
        let replay_window = match humantime::parse_duration(raw.replay_window.trim()) {
            Ok(window) if (MIN_REPLAY_WINDOW..=MAX_REPLAY_WINDOW).contains(&window) => window,
            Ok(_) => {
                problem(
                    "replay_window",
                    format!("`{}` is out of range: 1s to 1day", raw.replay_window.trim()),
                );
                MIN_REPLAY_WINDOW
            }
            Err(_) => {
                problem(
                    "replay_window",
                    format!(
                        "`{}` is not a duration, e.g. `5m`",
                        raw.replay_window.trim()
                    ),
                );
                MIN_REPLAY_WINDOW
            }
        };
        if raw.job_nice > 19 {
            problem(
                "job_nice",
                format!("{} is out of range: 0 to 19", raw.job_nice),
            );
        }
        if raw.busy_timeout_ms == 0 || raw.busy_timeout_ms > 60_000 {
            problem(
                "busy_timeout_ms",
                format!("{} is out of range: 1 to 60000", raw.busy_timeout_ms),
            );
        }
        if raw.max_log_bytes < crate::logs::MIN_MAX_LOG_BYTES {
            problem(
                "max_log_bytes",
                format!(
                    "{} is too small: at least {} (64 KiB)",
                    raw.max_log_bytes,
                    crate::logs::MIN_MAX_LOG_BYTES
                ),
            );
        }
        if raw.outbox.retry_base_ms == 0 {
            problem("outbox.retry_base_ms", "must be at least 1".into());
        }

        if !problems.is_empty() {
            return Err(Error(problems));
        }
        Ok(Config {
            listen,
            database_url: raw.database_url,
            jobs_dir: raw.jobs_dir,
            data_dir: raw.data_dir,
            public_url,
            workers: usize::try_from(raw.workers).expect("validated to at most 256"),
            lease: Duration::from_secs(raw.lease_secs),
            kill_grace: Duration::from_secs(raw.kill_grace_secs),
            job_nice: u8::try_from(raw.job_nice).expect("validated to at most 19"),
            shutdown_grace: Duration::from_secs(raw.shutdown_grace_secs),
            rate_limit_per_minute: usize::try_from(raw.rate_limit_per_minute).unwrap_or(usize::MAX),
            max_body_bytes: usize::try_from(raw.max_body_bytes)
                .expect("validated to at most 64 MiB"),
            replay_window,
            busy_timeout: Duration::from_millis(raw.busy_timeout_ms),
            max_log_bytes: raw.max_log_bytes,
            mattermost: Mattermost {
                tokens,
                url: url.map(|u| u.trim_end_matches('/').to_string()),
                bot_token,
                bot_user_id: raw.mattermost.bot_user_id.filter(|id| !id.is_empty()),
            },
            teams,
            web,
            outbox: Outbox {
                retry_base: Duration::from_millis(raw.outbox.retry_base_ms),
                retry_max: Duration::from_secs(raw.outbox.retry_max_secs.max(1)),
                give_up_after,
            },
            source: source.to_string(),
        })
    }

    /// The local token's file: generated on first start, accepted while `mattermost.tokens` is
    /// empty, used by `chatrun trigger`.
    pub fn local_token_path(&self) -> PathBuf {
        self.data_dir.join("local-token")
    }

    /// Run `run_id`'s log file (`logs/` in the data folder), when it has one (see
    /// `runner::output`).
    pub fn log_file(&self, run_id: impl std::fmt::Display) -> PathBuf {
        self.data_dir.join("logs").join(format!("{run_id}.log"))
    }
}

/// `http://<listen>`, with an unspecified address (0.0.0.0, ::) replaced by loopback so the link
/// opens on this machine.
pub fn default_public_url(listen: SocketAddr) -> String {
    let mut addr = listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    format!("http://{addr}")
}

/// A name that can be part of a URL path and of an environment variable's name.
fn is_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// What `check` says of a value still holding config/example.toml's placeholder text.
const PLACEHOLDER: &str = "is still the example file's placeholder (\"replace-with-…\"), known to anyone who read it: put your own value here, or remove the line";

/// Whether a value is one of config/example.toml's documented placeholders, which must never be
/// live: every one contains "replace-with".
fn is_placeholder(value: &str) -> bool {
    value.to_ascii_lowercase().contains("replace-with")
}

fn is_http_url(url: &str) -> bool {
    url.starts_with("http://") || url.starts_with("https://")
}

fn toml_message(err: &toml::de::Error) -> String {
    err.to_string().trim_end().replace('\n', "\n    ")
}

/// `(variable name, key path, value)` for each `CHATRUN_*` variable that is configuration.
fn env_overrides(
    env: impl IntoIterator<Item = (String, String)>,
) -> Vec<(String, Vec<String>, toml::Value)> {
    let mut out: Vec<_> = env
        .into_iter()
        .filter_map(|(name, value)| {
            let rest = name.strip_prefix("CHATRUN_")?;
            if STEP_VARIABLES.contains(&rest) || rest.starts_with("PARAM_") {
                return None;
            }
            let path = rest.split("__").map(str::to_lowercase).collect();
            Some((name, path, env_value(&value)))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// A list written as TOML (`["a","b"]`) stays a list; anything else is a string, converted by
/// the field's own deserializer (numbers, comma-separated lists).
fn env_value(value: &str) -> toml::Value {
    if value.trim_start().starts_with('[')
        && let Ok(mut table) = toml::from_str::<toml::Table>(&format!("v = {value}"))
        && let Some(list) = table.remove("v")
    {
        return list;
    }
    toml::Value::String(value.to_string())
}

/// Keys that hold arrays of tables, addressed from the environment by an entry's name.
const ARRAYS_OF_TABLES: &[&[&str]] = &[&["teams", "webhooks"]];

/// Makes sure an array of tables exists where `path` goes through one, so that environment
/// variables alone can configure it (no `[[teams.webhooks]]` in the file).
fn prepare_arrays(table: &mut toml::Table, path: &[String]) {
    for array in ARRAYS_OF_TABLES {
        if path.len() > array.len() && path.iter().zip(array.iter()).all(|(a, b)| a == b) {
            let (parents, last) = array.split_at(array.len() - 1);
            let mut current = &mut *table;
            for key in parents {
                let entry = current
                    .entry((*key).to_string())
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                let toml::Value::Table(inner) = entry else {
                    return;
                };
                current = inner;
            }
            current
                .entry(last[0].to_string())
                .or_insert_with(|| toml::Value::Array(Vec::new()));
        }
    }
}

fn set_path(table: &mut toml::Table, path: &[String], value: toml::Value) {
    match path {
        [] => {}
        [key] => {
            table.insert(key.clone(), value);
        }
        [key, rest @ ..] => {
            let entry = table
                .entry(key.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            match entry {
                toml::Value::Table(inner) => set_path(inner, rest, value),
                // An array of tables (`[[teams.webhooks]]`): the next segment is an entry's
                // `name`, e.g. CHATRUN_TEAMS__WEBHOOKS__PLATFORM_TEAM__SECRET.
                toml::Value::Array(entries) if !rest.is_empty() => {
                    set_named_entry(entries, rest, value);
                }
                other => {
                    let mut inner = toml::Table::new();
                    set_path(&mut inner, rest, value);
                    *other = toml::Value::Table(inner);
                }
            }
        }
    }
}

/// A name as it appears in an environment variable: lowercase, `-` and `.` as `_`.
fn env_form(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// Sets `rest[1..]` in the entry of `entries` whose `name` matches `rest[0]` (compared as an
/// environment variable name: case and `-`/`.`/`_` ignored), adding the entry if none does.
fn set_named_entry(entries: &mut Vec<toml::Value>, rest: &[String], value: toml::Value) {
    let wanted = env_form(&rest[0]);
    let position = entries.iter().position(|entry| {
        entry
            .get("name")
            .and_then(toml::Value::as_str)
            .is_some_and(|name| env_form(name) == wanted)
    });
    let index = position.unwrap_or_else(|| {
        let mut fresh = toml::Table::new();
        fresh.insert(
            "name".into(),
            toml::Value::String(rest[0].replace('_', "-")),
        );
        entries.push(toml::Value::Table(fresh));
        entries.len() - 1
    });
    if let toml::Value::Table(inner) = &mut entries[index] {
        set_path(inner, &rest[1..], value);
    }
}

/// Deserializers that also accept the string form environment variables arrive in.
mod de {
    use serde::{Deserialize, Deserializer, de::Error as _};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NumberOrString {
        Number(u64),
        String(String),
    }

    pub fn number<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        match NumberOrString::deserialize(d)? {
            NumberOrString::Number(n) => Ok(n),
            NumberOrString::String(s) => s
                .trim()
                .parse()
                .map_err(|_| D::Error::custom(format!("`{s}` is not a whole number"))),
        }
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum ListOrString {
        List(Vec<String>),
        String(String),
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum BoolOrString {
        Bool(bool),
        String(String),
    }

    pub fn optional_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
        match BoolOrString::deserialize(d)? {
            BoolOrString::Bool(b) => Ok(Some(b)),
            BoolOrString::String(s) => match s.trim() {
                "true" => Ok(Some(true)),
                "false" => Ok(Some(false)),
                "" => Ok(None),
                other => Err(D::Error::custom(format!("`{other}` is not true or false"))),
            },
        }
    }

    pub fn list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
        Ok(match ListOrString::deserialize(d)? {
            ListOrString::List(list) => list,
            ListOrString::String(s) => s
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn empty_text_gives_the_embedded_defaults() {
        let config = Config::parse("embedded defaults", "", env(&[])).unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.database_url, "sqlite://data/chatrun.db");
        assert_eq!(config.jobs_dir, PathBuf::from("jobs"));
        assert_eq!(config.public_url, "http://127.0.0.1:8080");
        assert_eq!(config.workers, 2);
        assert!(config.mattermost.tokens.is_empty());
    }

    #[test]
    fn environment_overrides_top_level_and_section_keys() {
        let config = Config::parse(
            "chatrun.toml",
            "workers = 4\n[mattermost]\ntokens = [\"a\"]\n",
            env(&[
                ("CHATRUN_WORKERS", "3"),
                ("CHATRUN_MATTERMOST__TOKENS", "tok1, tok2"),
                ("CHATRUN_MATTERMOST__URL", "http://mm:8065/"),
                ("CHATRUN_MATTERMOST__BOT_TOKEN", "secret"),
                ("CHATRUN_RUN_ID", "7"),
                ("CHATRUN_PARAM_BRANCH", "main"),
                ("HOME", "/root"),
            ]),
        )
        .unwrap();
        assert_eq!(config.workers, 3);
        assert_eq!(config.mattermost.tokens, vec!["tok1", "tok2"]);
        assert_eq!(config.mattermost.url.as_deref(), Some("http://mm:8065"));
        assert_eq!(config.mattermost.bot_token.as_deref(), Some("secret"));
        let debug = format!("{config:?}");
        assert!(
            !debug.contains("tok1") && !debug.contains("\"secret\""),
            "secrets stay out of Debug: {debug}"
        );
    }

    #[test]
    fn replies_are_given_up_after_a_duration_24_hours_unless_configured() {
        let default = Config::parse("c.toml", "", env(&[])).unwrap();
        assert_eq!(default.outbox.give_up_after, Duration::from_secs(24 * 3600));
        let config = Config::parse(
            "c.toml",
            "[outbox]\ngive_up_after = \"2h\"\n",
            env(&[("CHATRUN_OUTBOX__GIVE_UP_AFTER", "90m")]),
        )
        .unwrap();
        assert_eq!(config.outbox.give_up_after, Duration::from_secs(90 * 60));

        for bad in ["soon", "0s", "20"] {
            let err = Config::parse(
                "c.toml",
                &format!("[outbox]\ngive_up_after = \"{bad}\"\n"),
                env(&[]),
            )
            .unwrap_err();
            let keys: Vec<&str> = err.0.iter().map(|p| p.key.as_str()).collect();
            assert_eq!(keys, vec!["outbox.give_up_after"], "{bad}: {err}");
        }
        let err = Config::parse("c.toml", "[outbox]\nmax_attempts = 20\n", env(&[])).unwrap_err();
        assert!(err.to_string().contains("max_attempts"), "{err}");
    }

    #[test]
    fn lists_every_problem_with_its_key() {
        let err = Config::parse(
            "bad.toml",
            "listen = \"nowhere\"\nworkers = 0\npublic_url = \"ftp://x\"\n[mattermost]\nurl = \"mm:8065\"\n",
            env(&[]),
        )
        .unwrap_err();
        let keys: Vec<&str> = err.0.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            vec![
                "listen",
                "public_url",
                "workers",
                "mattermost.url",
                "mattermost.bot_token"
            ]
        );
        assert!(err.to_string().contains("bad.toml: listen: `nowhere`"));
    }

    #[test]
    fn max_log_bytes_defaults_to_10_mib_and_refuses_less_than_64_kib() {
        let config = Config::parse("c.toml", "", env(&[])).unwrap();
        assert_eq!(config.max_log_bytes, 10_485_760);
        let config = Config::parse("c.toml", "max_log_bytes = 65536\n", env(&[])).unwrap();
        assert_eq!(config.max_log_bytes, 65_536);
        let config =
            Config::parse("c.toml", "", env(&[("CHATRUN_MAX_LOG_BYTES", "1048576")])).unwrap();
        assert_eq!(config.max_log_bytes, 1_048_576);
        let err = Config::parse("c.toml", "max_log_bytes = 1000\n", env(&[])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid configuration:\n  - c.toml: max_log_bytes: 1000 is too small: at least 65536 (64 KiB)"
        );
        let err = Config::parse("c.toml", "max_log_bytes = \"10MB\"\n", env(&[])).unwrap_err();
        assert!(
            err.to_string().contains("`10MB` is not a whole number"),
            "{err}"
        );
    }

    #[test]
    fn rejects_an_unknown_key_naming_it() {
        let err = Config::parse("c.toml", "wrokers = 2\n", env(&[])).unwrap_err();
        assert!(err.to_string().contains("wrokers"), "{err}");
        let err = Config::parse("c.toml", "", env(&[("CHATRUN_WROKERS", "2")])).unwrap_err();
        assert!(err.to_string().contains("CHATRUN_WROKERS"), "{err}");
    }

    #[test]
    fn teams_webhooks_take_secrets_and_urls_from_the_environment() {
        let config = Config::parse(
            "c.toml",
            "[[teams.webhooks]]\nname = \"platform-team\"\nsecret = \"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\"\n",
            env(&[
                ("CHATRUN_TEAMS__WEBHOOKS__PLATFORM_TEAM__FOLLOW_UP_URL", "https://flow/1"),
                ("CHATRUN_TEAMS__WEBHOOKS__OPS__SECRET", "bWVFQ0xDUko="),
            ]),
        )
        .unwrap();
        assert_eq!(config.teams.len(), 2);
        assert_eq!(config.teams[0].name, "platform-team");
        assert_eq!(config.teams[0].key, (0u8..32).collect::<Vec<u8>>());
        assert_eq!(
            config.teams[0].follow_up_url.as_deref(),
            Some("https://flow/1")
        );
        assert_eq!(config.teams[1].name, "ops");
        assert_eq!(config.teams[1].key, b"meECLCRJ");
        assert!(
            !format!("{config:?}").contains("flow/1"),
            "secrets stay out of Debug"
        );
    }

    fn example_text() -> String {
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/example.toml"))
            .unwrap()
    }

    #[test]
    fn the_example_configuration_is_valid_and_has_no_live_placeholder() {
        let config = Config::parse("example.toml", &example_text(), env(&[])).unwrap();
        assert!(
            config.mattermost.tokens.is_empty(),
            "a copied example accepts no publicly known token"
        );
        assert!(config.mattermost.rest().is_none());
        assert!(config.teams.is_empty());
        assert_eq!(
            config.outbox.give_up_after,
            Duration::from_secs(24 * 3600),
            "[outbox] keys stay in [outbox]"
        );
    }

    #[test]
    fn every_placeholder_of_the_example_is_refused_once_uncommented() {
        let keys = [
            "[[teams.webhooks]]",
            "name = ",
            "secret = ",
            "follow_up_url = ",
            "tokens = ",
            "url = ",
            "bot_token = ",
            "password = ",
        ];
        let uncommented: String = example_text()
            .lines()
            .map(|line| {
                let bare = line.strip_prefix("# ").unwrap_or(line);
                if keys.iter().any(|key| bare.starts_with(key)) {
                    bare
                } else {
                    line
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        let err = Config::parse("example.toml", &uncommented, env(&[])).unwrap_err();
        let mut refused: Vec<&str> = err.0.iter().map(|p| p.key.as_str()).collect();
        refused.sort_unstable();
        assert_eq!(
            refused,
            [
                "mattermost.bot_token",
                "mattermost.tokens[0]",
                "teams.webhooks[0].follow_up_url",
                "teams.webhooks[0].secret",
                "web.password",
            ],
            "{err}"
        );
        assert!(err.0[0].message.contains("placeholder"), "{err}");
    }

    #[test]
    fn a_placeholder_from_the_environment_is_refused_too() {
        let err = Config::parse(
            "embedded defaults",
            "",
            env(&[(
                "CHATRUN_MATTERMOST__TOKENS",
                "replace-with-the-outgoing-webhook-token",
            )]),
        )
        .unwrap_err();
        assert_eq!(err.0[0].key, "mattermost.tokens[0]", "{err}");
    }

    #[test]
    fn teams_webhooks_can_come_from_the_environment_alone() {
        let config = Config::parse(
            "embedded defaults",
            "",
            env(&[
                (
                    "CHATRUN_TEAMS__WEBHOOKS__PLATFORM_TEAM__SECRET",
                    "bWVFQ0xDUko=",
                ),
                (
                    "CHATRUN_TEAMS__WEBHOOKS__PLATFORM_TEAM__FOLLOW_UP_URL",
                    "https://flow/1",
                ),
            ]),
        )
        .unwrap();
        assert_eq!(config.teams.len(), 1);
        assert_eq!(config.teams[0].name, "platform-team");
        assert_eq!(
            config.teams[0].follow_up_url.as_deref(),
            Some("https://flow/1")
        );
    }

    #[test]
    fn rejects_teams_names_the_environment_cannot_tell_apart() {
        let err = Config::parse(
            "c.toml",
            "[[teams.webhooks]]\nname = \"a-b\"\nsecret = \"bWVF\"\n[[teams.webhooks]]\nname = \"A_b\"\nsecret = \"bWVF\"\n",
            env(&[]),
        )
        .unwrap_err();
        assert!(err.to_string().contains("too like `a-b`"), "{err}");
    }

    #[test]
    fn rejects_a_teams_secret_that_is_not_base64() {
        let err = Config::parse(
            "c.toml",
            "[[teams.webhooks]]\nname = \"a b\"\nsecret = \"not base64!\"\nfollow_up_url = \"flow\"\n",
            env(&[]),
        )
        .unwrap_err();
        let keys: Vec<&str> = err.0.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            vec![
                "teams.webhooks[0].name",
                "teams.webhooks[0].secret",
                "teams.webhooks[0].follow_up_url"
            ]
        );
        assert!(err.to_string().contains("not valid base64"), "{err}");
    }

    #[test]
    fn the_pages_are_open_on_loopback_only_unless_configured() {
        let local = Config::parse("c", "", env(&[])).unwrap();
        assert!(local.web.open && !local.web.has_login());
        let public = Config::parse("c", "listen = \"0.0.0.0:8080\"\n", env(&[])).unwrap();
        assert!(!public.web.open);
        let with_login = Config::parse(
            "c",
            "[web]\npassword = \"a long shared secret\"\n",
            env(&[]),
        )
        .unwrap();
        assert!(
            !with_login.web.open,
            "a configured login is used, also on loopback"
        );
        let forced = Config::parse("c", "", env(&[("CHATRUN_WEB__OPEN", "false")])).unwrap();
        assert!(!forced.web.open);
        let err = Config::parse(
            "c",
            "[web]\npassword = \"short\"\nusers = [{ name = \"a\", password_hash = \"plain\" }]\n",
            env(&[]),
        )
        .unwrap_err();
        let keys: Vec<&str> = err.0.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, vec!["web.users[0].password_hash", "web.password"]);
    }

    #[test]
    fn job_nice_defaults_to_10_and_stays_within_what_nice_accepts() {
        assert_eq!(Config::parse("c", "", env(&[])).unwrap().job_nice, 10);
        let config = Config::parse("c", "job_nice = 5", env(&[("CHATRUN_JOB_NICE", "0")]));
        assert_eq!(config.unwrap().job_nice, 0);
        let err = Config::parse("c", "job_nice = 20", env(&[])).unwrap_err();
        let keys: Vec<&str> = err.0.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, vec!["job_nice"]);
    }

    #[test]
    fn request_limits_have_defaults_and_are_checked() {
        let config = Config::parse("c", "", env(&[])).unwrap();
        assert_eq!(config.max_body_bytes, 1024 * 1024);
        assert_eq!(config.replay_window, Duration::from_secs(300));
        assert_eq!(config.busy_timeout, Duration::from_secs(5));
        let config = Config::parse(
            "c",
            "max_body_bytes = 65536\nreplay_window = \"90s\"\n",
            env(&[("CHATRUN_BUSY_TIMEOUT_MS", "250")]),
        )
        .unwrap();
        assert_eq!(config.max_body_bytes, 65536);
        assert_eq!(config.replay_window, Duration::from_secs(90));
        assert_eq!(config.busy_timeout, Duration::from_millis(250));
        let err = Config::parse(
            "c",
            "max_body_bytes = 10\nreplay_window = \"soon\"\nbusy_timeout_ms = 0\n",
            env(&[]),
        )
        .unwrap_err();
        let keys: Vec<&str> = err.0.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            vec!["max_body_bytes", "replay_window", "busy_timeout_ms"]
        );
        assert!(
            err.to_string().contains("`soon` is not a duration"),
            "{err}"
        );
        let err = Config::parse("c", "replay_window = \"2days\"\n", env(&[])).unwrap_err();
        assert!(err.to_string().contains("out of range"), "{err}");
    }

    #[test]
    fn public_url_defaults_to_loopback_for_a_wildcard_listen() {
        let config = Config::parse("c.toml", "listen = \"0.0.0.0:9000\"\n", env(&[])).unwrap();
        assert_eq!(config.public_url, "http://127.0.0.1:9000");
    }
}
