//! From what the file says to what the program may rely on: every value checked, every problem
//! collected (so `chatrun check` lists them all at once), defaults filled in.

use super::*;
use crate::domain::problem::{PLACEHOLDER, is_http_url, is_placeholder};

impl Config {
    pub(super) fn validate(source: &str, raw: RawConfig) -> Result<Self, Error> {
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
        if !["sqlite:", "postgres://", "postgresql://"]
            .iter()
            .any(|scheme| raw.database_url.starts_with(scheme))
        {
            problem(
                "database_url",
                format!(
                    "`{}` is neither a SQLite URL (`sqlite://data/chatrun.db`) nor a Postgres \
                     one (`postgres://chatrun:secret@db/chatrun`)",
                    crate::store::shown_url(&raw.database_url)
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
        // 0: an instance that answers chat and serves pages while others on the same
        // database run the steps.
        if raw.workers > 256 {
            problem(
                "workers",
                format!("{} is out of range: 0 to 256", raw.workers),
            );
        }
        if raw.lease_secs < 2 {
            problem(
                "lease_secs",
                format!("{} is too short: at least 2", raw.lease_secs),
            );
        }

        let mattermost = crate::chat::mattermost::Settings::validate(
            raw.mattermost.tokens,
            raw.mattermost.url,
            raw.mattermost.bot_token,
            raw.mattermost.bot_user_id,
            raw.mattermost.pending_post_window_secs,
            &mut problem,
        );
        let slack = crate::chat::slack::Settings::validate(
            raw.slack.signing_secret,
            raw.slack.bot_token,
            raw.slack.app_id,
            raw.slack.api_url,
            &mut problem,
        );
        let mut teams: Vec<crate::chat::teams::Webhook> = Vec::new();
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
            let key_prefix = format!("teams.webhooks[{i}]");
            teams.push(crate::chat::teams::Webhook::validate(
                name,
                &hook.secret,
                hook.follow_up_url,
                &key_prefix,
                &mut problem,
            ));
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
        if !(2..=1000).contains(&raw.flaky_window) {
            problem(
                "flaky_window",
                format!(
                    "{} is out of range: 2 to 1000 runs (a test is flaky when it failed, passed \
                     and failed again within this many runs)",
                    raw.flaky_window
                ),
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
        if !raw.database_url.starts_with("sqlite:")
            && raw.max_log_bytes > crate::logs::MAX_DATABASE_LOG_BYTES
        {
            problem(
                "max_log_bytes",
                format!(
                    "{} is too large for logs kept in Postgres: at most {} (16 MiB)",
                    raw.max_log_bytes,
                    crate::logs::MAX_DATABASE_LOG_BYTES
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
            local_agent: raw.local_agent.unwrap_or(true),
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
            flaky_window: usize::try_from(raw.flaky_window.clamp(2, 1000)).unwrap_or(10),
            mattermost,
            teams,
            slack,
            web,
            outbox: Outbox {
                retry_base: Duration::from_millis(raw.outbox.retry_base_ms),
                retry_max: Duration::from_secs(raw.outbox.retry_max_secs.max(1)),
                give_up_after,
            },
            source: source.to_string(),
        })
    }
}

/// A name that can be part of a URL path and of an environment variable's name.
pub(super) fn is_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}
