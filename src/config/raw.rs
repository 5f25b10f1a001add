//! What the file may say: serde structs with `deny_unknown_fields`, every field defaulted, so
//! an empty file is valid.

use super::*;
use crate::domain::problem::Key;

/// What the TOML file may contain. Every field has a default, so an empty file is valid.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default = "default_listen")]
    pub(super) listen: String,
    #[serde(default = "default_database_url")]
    pub(super) database_url: String,
    #[serde(default = "default_jobs_dir")]
    pub(super) jobs_dir: PathBuf,
    #[serde(default = "default_data_dir")]
    pub(super) data_dir: PathBuf,
    #[serde(default)]
    pub(super) public_url: Option<String>,
    #[serde(default = "default_workers", deserialize_with = "de::number")]
    pub(super) workers: u64,
    #[serde(default, deserialize_with = "de::optional_bool")]
    pub(super) local_agent: Option<bool>,
    #[serde(default = "default_lease_secs", deserialize_with = "de::number")]
    pub(super) lease_secs: u64,
    #[serde(default = "default_kill_grace_secs", deserialize_with = "de::number")]
    pub(super) kill_grace_secs: u64,
    #[serde(default = "default_job_nice", deserialize_with = "de::number")]
    pub(super) job_nice: u64,
    #[serde(
        default = "default_shutdown_grace_secs",
        deserialize_with = "de::number"
    )]
    pub(super) shutdown_grace_secs: u64,
    #[serde(default = "default_rate_limit", deserialize_with = "de::number")]
    pub(super) rate_limit_per_minute: u64,
    #[serde(default = "default_max_body_bytes", deserialize_with = "de::number")]
    pub(super) max_body_bytes: u64,
    #[serde(default = "default_replay_window")]
    pub(super) replay_window: String,
    #[serde(default = "default_busy_timeout_ms", deserialize_with = "de::number")]
    pub(super) busy_timeout_ms: u64,
    #[serde(default = "default_max_log_bytes", deserialize_with = "de::number")]
    pub(super) max_log_bytes: u64,
    #[serde(default = "default_flaky_window", deserialize_with = "de::number")]
    pub(super) flaky_window: u64,
    #[serde(default)]
    pub(super) mattermost: RawMattermost,
    #[serde(default)]
    pub(super) teams: RawTeams,
    #[serde(default)]
    pub(super) slack: RawSlack,
    #[serde(default)]
    pub(super) outbox: RawOutbox,
    #[serde(default)]
    pub(super) web: RawWeb,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWeb {
    #[serde(default, deserialize_with = "de::optional_bool")]
    pub(super) open: Option<bool>,
    #[serde(default)]
    pub(super) password: Option<String>,
    #[serde(default)]
    pub(super) users: Vec<RawWebUser>,
    #[serde(default)]
    pub(super) trust_header: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWebUser {
    #[serde(default)]
    pub(super) name: String,
    #[serde(default)]
    pub(super) password_hash: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTeams {
    #[serde(default)]
    pub(super) webhooks: Vec<RawTeamsWebhook>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTeamsWebhook {
    #[serde(default)]
    pub(super) name: String,
    #[serde(default)]
    pub(super) secret: String,
    #[serde(default)]
    pub(super) follow_up_url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSlack {
    #[serde(default)]
    pub(super) signing_secret: Option<String>,
    #[serde(default)]
    pub(super) bot_token: Option<String>,
    #[serde(default)]
    pub(super) app_id: Option<String>,
    #[serde(default)]
    pub(super) api_url: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMattermost {
    #[serde(default, deserialize_with = "de::list")]
    pub(super) tokens: Vec<String>,
    #[serde(default)]
    pub(super) url: Option<String>,
    #[serde(default)]
    pub(super) bot_token: Option<String>,
    #[serde(default)]
    pub(super) bot_user_id: Option<String>,
    #[serde(
        default = "default_pending_post_window_secs",
        deserialize_with = "de::number"
    )]
    pub(super) pending_post_window_secs: u64,
}

impl Default for RawMattermost {
    fn default() -> Self {
        Self {
            tokens: Vec::new(),
            url: None,
            bot_token: None,
            bot_user_id: None,
            pending_post_window_secs: default_pending_post_window_secs(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOutbox {
    #[serde(default = "default_retry_base_ms", deserialize_with = "de::number")]
    pub(super) retry_base_ms: u64,
    #[serde(default = "default_retry_max_secs", deserialize_with = "de::number")]
    pub(super) retry_max_secs: u64,
    #[serde(default = "default_give_up_after")]
    pub(super) give_up_after: String,
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

pub(super) fn default_listen() -> String {
    "127.0.0.1:8080".into()
}
pub(super) fn default_database_url() -> String {
    "sqlite://data/chatrun.db".into()
}
pub(super) fn default_jobs_dir() -> PathBuf {
    "jobs".into()
}
pub(super) fn default_data_dir() -> PathBuf {
    "data".into()
}
pub(super) fn default_workers() -> u64 {
    2
}
pub(super) fn default_lease_secs() -> u64 {
    30
}
pub(super) fn default_kill_grace_secs() -> u64 {
    5
}
pub(super) fn default_job_nice() -> u64 {
    10
}
pub(super) fn default_shutdown_grace_secs() -> u64 {
    30
}
pub(super) fn default_rate_limit() -> u64 {
    10
}
pub(super) fn default_max_body_bytes() -> u64 {
    1024 * 1024
}
pub(super) fn default_replay_window() -> String {
    "5m".into()
}
pub(super) fn default_busy_timeout_ms() -> u64 {
    5000
}
pub(super) fn default_max_log_bytes() -> u64 {
    crate::logs::DEFAULT_MAX_LOG_BYTES
}
pub(super) fn default_flaky_window() -> u64 {
    crate::domain::DEFAULT_FLAKY_WINDOW as u64
}
pub(super) fn default_pending_post_window_secs() -> u64 {
    crate::chat::mattermost::DEFAULT_PENDING_POST_WINDOW.as_secs()
}
pub(super) fn default_retry_base_ms() -> u64 {
    1000
}
pub(super) fn default_retry_max_secs() -> u64 {
    300
}
pub(super) fn default_give_up_after() -> String {
    "24h".into()
}

/// Every key the file may hold (the fields above), to report all unknown keys at once.
pub(super) const KEYS: &[Key] = &[
    Key::Value("listen"),
    Key::Value("database_url"),
    Key::Value("jobs_dir"),
    Key::Value("data_dir"),
    Key::Value("public_url"),
    Key::Value("workers"),
    Key::Value("local_agent"),
    Key::Value("lease_secs"),
    Key::Value("kill_grace_secs"),
    Key::Value("job_nice"),
    Key::Value("shutdown_grace_secs"),
    Key::Value("rate_limit_per_minute"),
    Key::Value("max_body_bytes"),
    Key::Value("replay_window"),
    Key::Value("busy_timeout_ms"),
    Key::Value("max_log_bytes"),
    Key::Value("flaky_window"),
    Key::Table(
        "mattermost",
        &[
            Key::Value("tokens"),
            Key::Value("url"),
            Key::Value("bot_token"),
            Key::Value("bot_user_id"),
            Key::Value("pending_post_window_secs"),
        ],
    ),
    Key::Table(
        "teams",
        &[Key::Tables(
            "webhooks",
            &[
                Key::Value("name"),
                Key::Value("secret"),
                Key::Value("follow_up_url"),
            ],
        )],
    ),
    Key::Table(
        "slack",
        &[
            Key::Value("signing_secret"),
            Key::Value("bot_token"),
            Key::Value("app_id"),
            Key::Value("api_url"),
        ],
    ),
    Key::Table(
        "outbox",
        &[
            Key::Value("retry_base_ms"),
            Key::Value("retry_max_secs"),
            Key::Value("give_up_after"),
        ],
    ),
    Key::Table(
        "web",
        &[
            Key::Value("open"),
            Key::Value("password"),
            Key::Tables("users", &[Key::Value("name"), Key::Value("password_hash")]),
            Key::Value("trust_header"),
        ],
    ),
];
