//! Configuration: a TOML file (or the embedded defaults), then `CHATRUN_*` environment overrides,
//! then validation into a ready-to-use [`Config`].
//!
//! Two layers, as in ripgrep's `LowArgs`/`HiArgs`: `RawConfig` is exactly what the file may say
//! (serde, `deny_unknown_fields`), [`Config`] is what the rest of the program may rely on (paths
//! resolved, URLs checked, defaults filled in). Validation collects *every* problem so that
//! `chatrun check` can list them all at once.
//!
//! Environment overrides: `CHATRUN_KEY` sets a top-level key, `CHATRUN_SECTION__KEY` a key in a
//! section (`__` is the nesting), e.g. `CHATRUN_MATTERMOST__BOT_TOKEN`. Lists take a
//! comma-separated value (`CHATRUN_MATTERMOST__TOKENS=tok1,tok2`). The variables that chatrun sets
//! for job steps (`CHATRUN_RUN_ID`, `CHATRUN_JOB`, ...) are not configuration and are skipped.

mod de;
mod env;
mod raw;
mod validate;

use env::*;
use raw::*;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::domain::Problem;
use crate::domain::problem::take_unknown_keys;

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

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the HTTP server listens.
    pub listen: SocketAddr,
    /// sqlx URL: `sqlite://data/chatrun.db` (embedded, the default) or
    /// `postgres://user:password@host/db` (shared by several instances).
    pub database_url: String,
    /// Folder of `*.toml` job definitions.
    pub jobs_dir: PathBuf,
    /// Folder for run logs and the local trigger token.
    pub data_dir: PathBuf,
    /// Base of links in chat replies, without a trailing slash.
    pub public_url: String,
    /// How many runs may execute at once here; 0: none (other instances run them).
    pub workers: usize,
    /// Whether this server runs steps itself (its `workers`); false for a server that only
    /// dispatches to remote agents, which then also take the jobs without `runs_on`.
    pub local_agent: bool,
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
    /// How many of a job's latest finished runs with the same arguments (a run included) may
    /// show one of its failed tests flaky: failed, then not, then failed again.
    pub flaky_window: usize,
    /// Mattermost settings.
    pub mattermost: crate::chat::mattermost::Settings,
    /// Microsoft Teams outgoing webhooks, one per team.
    pub teams: Vec<crate::chat::teams::Webhook>,
    /// Slack: the signing secret and the bot's token.
    pub slack: crate::chat::slack::Settings,
    /// Reply delivery settings.
    pub outbox: Outbox,
    /// Who may see the history pages and the API.
    pub web: Web,
    /// Where the configuration came from, for messages.
    pub source: String,
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
        let problem = |source: &str, key: &str, message: String| Problem {
            source: source.to_string(),
            key: key.to_string(),
            message,
        };
        let mut table: toml::Table = toml::from_str(text)
            .map_err(|err| Error(vec![problem(source, "", toml_message(&err))]))?;
        // Every unknown key at once; the rest is still read and checked.
        let mut problems: Vec<Problem> = take_unknown_keys(&mut table, KEYS)
            .into_iter()
            .map(|(key, message)| problem(source, &key, message))
            .collect();
        // Which variable set which key, so a problem with its value names the variable.
        let mut set_by: Vec<(String, String)> = Vec::new();
        for (name, path, value) in env_overrides(env) {
            let mut alone = toml::Table::new();
            prepare_arrays(&mut alone, &path);
            set_path(&mut alone, &path, value.clone());
            if let Some((key, message)) = take_unknown_keys(&mut alone, KEYS).into_iter().next() {
                problems.push(problem(
                    &name,
                    &key,
                    message.replace("unknown key", "names no configuration key"),
                ));
                continue;
            }
            prepare_arrays(&mut table, &path);
            set_path(&mut table, &path, value);
            set_by.push((path.join("."), name));
        }
        let raw: RawConfig = match toml::Value::Table(table).try_into() {
            Ok(raw) => raw,
            Err(err) => {
                let names: Vec<&str> = set_by.iter().map(|(_, name)| name.as_str()).collect();
                let message = if names.is_empty() {
                    toml_message(&err)
                } else {
                    format!(
                        "{} (after applying {})",
                        toml_message(&err),
                        names.join(", ")
                    )
                };
                problems.push(problem(source, "", message));
                return Err(Error(problems));
            }
        };
        match Self::validate(source, raw) {
            Ok(config) if problems.is_empty() => Ok(config),
            Ok(_) => Err(Error(problems)),
            Err(Error(found)) => {
                // A value from the environment is the variable's problem, not the file's.
                problems.extend(found.into_iter().map(|mut p| {
                    if let Some((_, name)) = set_by.iter().find(|(key, _)| *key == p.key) {
                        p.source = format!("{name} (environment)");
                    }
                    p
                }));
                Err(Error(problems))
            }
        }
    }

    /// Where the jobs are, as far as the configuration can tell even when it has problems:
    /// `CHATRUN_JOBS_DIR`, else the file's `jobs_dir` if it reads as TOML, else `jobs`. For
    /// `chatrun check`, which checks the jobs whatever the configuration's problems.
    pub fn jobs_dir_hint(path: Option<&Path>) -> PathBuf {
        if let Some(dir) = std::env::var_os("CHATRUN_JOBS_DIR").filter(|d| !d.is_empty()) {
            return dir.into();
        }
        let path = path.map_or_else(|| PathBuf::from(DEFAULT_FILE), Path::to_path_buf);
        std::fs::read_to_string(path)
            .ok()
            .and_then(|text| text.parse::<toml::Table>().ok())
            .and_then(|table| table.get("jobs_dir")?.as_str().map(PathBuf::from))
            .unwrap_or_else(default_jobs_dir)
    }

    /// The local token's file: generated on first start, accepted while `mattermost.tokens` is
    /// empty, used by `chatrun trigger`.
    pub fn local_token_path(&self) -> PathBuf {
        self.data_dir.join("local-token")
    }

    /// The folder of the runs' log files (`logs/` in the data folder).
    pub fn logs_dir(&self) -> PathBuf {
        self.data_dir.join("logs")
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

fn toml_message(err: &toml::de::Error) -> String {
    err.to_string().trim_end().replace('\n', "\n    ")
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
    fn the_database_is_sqlite_or_postgres_and_its_password_is_never_repeated() {
        let url = "postgres://chatrun:s3cret@db/chatrun";
        let config = Config::parse("t", &format!("database_url = \"{url}\""), Vec::new()).unwrap();
        assert_eq!(config.database_url, url);
        let err = Config::parse("t", "database_url = \"mysql://u:s3cret@db/x\"", Vec::new())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("mysql://u:***@db/x") && err.contains("postgres://"),
            "{err}"
        );
        assert!(!err.contains("s3cret"), "{err}");
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
            "listen = \"nowhere\"\nworkers = 300\npublic_url = \"ftp://x\"\n[mattermost]\nurl = \"mm:8065\"\n",
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
        // Logs in Postgres keep their tail in memory while the run goes: 16 MiB at most.
        let postgres = "database_url = \"postgres://db/chatrun\"\n";
        let at_most = format!("{postgres}max_log_bytes = 16777216\n");
        assert!(Config::parse("c.toml", &at_most, env(&[])).is_ok());
        let over = format!("{postgres}max_log_bytes = 16777217\n");
        let err = Config::parse("c.toml", &over, env(&[])).unwrap_err();
        assert!(
            err.to_string()
                .contains("16777217 is too large for logs kept in Postgres: at most 16777216"),
            "{err}"
        );
        let sqlite = Config::parse("c.toml", "max_log_bytes = 16777217\n", env(&[]));
        assert!(sqlite.is_ok());
        let err = Config::parse("c.toml", "max_log_bytes = \"10MB\"\n", env(&[])).unwrap_err();
        assert!(
            err.to_string().contains("`10MB` is not a whole number"),
            "{err}"
        );
    }

    #[test]
    fn a_problem_with_a_value_from_the_environment_names_the_variable() {
        let err = Config::parse(
            "c.toml",
            "workers = 2\n",
            env(&[("CHATRUN_WORKERS", "300")]),
        )
        .unwrap_err();
        assert_eq!(err.0.len(), 1, "{err}");
        assert_eq!(err.0[0].source, "CHATRUN_WORKERS (environment)");
        assert_eq!(err.0[0].key, "workers");
    }

    #[test]
    fn every_unknown_key_is_listed_beside_the_other_problems() {
        let err = Config::parse(
            "c.toml",
            "wrokers = 2\nlisten = \"nowhere\"\n[outbox]\nretry_base = 5\n",
            env(&[("CHATRUN_MATTERMOST__TOKEN", "t")]),
        )
        .unwrap_err();
        let found: Vec<(&str, &str)> = err
            .0
            .iter()
            .map(|p| (p.source.as_str(), p.key.as_str()))
            .collect();
        assert_eq!(
            found,
            [
                ("c.toml", "wrokers"),
                ("c.toml", "outbox.retry_base"),
                ("CHATRUN_MATTERMOST__TOKEN", "mattermost.token"),
                ("c.toml", "listen"),
            ],
            "{err}"
        );
        assert!(err.to_string().contains("did you mean `workers`?"), "{err}");
        assert!(err.to_string().contains("did you mean `tokens`?"), "{err}");
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
        assert!(!config.slack.enabled());
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
            "[slack]",
            "signing_secret = ",
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
                "slack.bot_token",
                "slack.signing_secret",
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
