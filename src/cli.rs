//! The command line: `serve`, `check`, `trigger`, `agent` and `agent-token`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

use crate::app::App;
use crate::app::{shutdown, telemetry};
use crate::catalog;
use crate::chat::teams;
use crate::config::Config;
use crate::domain::random_id;

/// Run builds and tests from chat.
///
/// chatrun receives Mattermost outgoing webhooks (`#build` in a channel) and Microsoft Teams
/// outgoing webhooks (`@BuildBot build`), queues a run of the job, answers at once with the
/// run's number and link, runs the job's steps and posts the result in the trigger's thread (a
/// Markdown table in Mattermost, an Adaptive Card in Teams). Every run, with its live output,
/// is on the history pages at http://127.0.0.1:8080 (the JSON API under /api/runs).
///
/// Try it without a chat server: `chatrun serve` in one terminal, `chatrun trigger "#build"` in
/// another, then open the link it prints.
#[derive(Debug, Parser)]
#[command(
    name = "chatrun",
    version,
    propagate_version = true,
    after_help = "Configuration: ./chatrun.toml (or --config), every key documented in \
config/example.toml; environment variables override it: CHATRUN_KEY for a top-level key \
(CHATRUN_WORKERS=4), CHATRUN_SECTION__KEY for a key in a section \
(CHATRUN_MATTERMOST__BOT_TOKEN=…). `chatrun check` lists every problem."
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run the HTTP server and the workers.
    ///
    /// Without --config, reads ./chatrun.toml if it exists, else uses the embedded defaults:
    /// listen on 127.0.0.1:8080, database sqlite://data/chatrun.db, jobs from ./jobs, 2 workers.
    Serve {
        /// The configuration file (see config/example.toml).
        #[arg(long, short, value_name = "PATH")]
        config: Option<PathBuf>,
    },
    /// Check the configuration and every job file; list every error with its file and key.
    ///
    /// Exits with status 0 only when everything is valid.
    Check {
        /// The configuration file (see config/example.toml).
        #[arg(long, short, value_name = "PATH")]
        config: Option<PathBuf>,
    },
    /// Print an Argon2 hash of a password read from standard input, for `web.users`.
    ///
    /// `chatrun hash-password < file` or type the password and press Enter; nothing is stored.
    HashPassword,
    /// Send a trigger to a running chatrun, exactly as Mattermost (or Teams) would, and print
    /// the reply.
    ///
    /// Tries chatrun without a chat server: `chatrun trigger "#build"`. The Mattermost token
    /// is, in order: --token, the first of mattermost.tokens, or the local token chatrun serve
    /// created in the data folder. With --teams NAME, the message is sent as a Teams activity
    /// mentioning the webhook, signed with that configured webhook's secret:
    /// `chatrun trigger --teams platform-team build`. With --slack, as a Slack slash command
    /// signed with slack.signing_secret: `chatrun trigger --slack "/build feature/x"`.
    Trigger {
        /// The webhook URL [default: http://<listen>/hooks/mattermost, or
        /// /hooks/teams/NAME with --teams].
        #[arg(long, value_name = "URL")]
        url: Option<String>,
        /// Send as the Teams outgoing webhook NAME of the configuration.
        #[arg(long, value_name = "NAME", conflicts_with = "slack")]
        teams: Option<String>,
        /// Send as a Slack slash command (the text starts with the command, `/build`), signed
        /// with slack.signing_secret [URL default: http://<listen>/hooks/slack/commands].
        #[arg(long)]
        slack: bool,
        /// The configuration file (see config/example.toml).
        #[arg(long, short, value_name = "PATH")]
        config: Option<PathBuf>,
        /// The outgoing webhook's token.
        #[arg(long)]
        token: Option<String>,
        /// Who asks [default: $USER].
        #[arg(long)]
        user: Option<String>,
        /// The channel's name, as shown in the history.
        #[arg(long, default_value = "local")]
        channel: String,
        /// A real Mattermost channel id, to have the result posted there (needs the REST API
        /// configured); without it the result is only on the history page.
        #[arg(long, default_value = "")]
        channel_id: String,
        /// Wait for the run, showing where it is, then print its result reply as the chat
        /// shows it. Exits 0 only when the run succeeded (1 when it did not).
        #[arg(long)]
        wait: bool,
        /// The message, as typed in chat, e.g. "#build" (or "/build" with --slack).
        #[arg(required = true, value_name = "TEXT")]
        text: Vec<String>,
    },
    /// Run steps on this machine for a chatrun server: a build agent.
    ///
    /// The agent asks the server for runs of the jobs whose `runs_on` labels it has (all of
    /// them), runs their steps here (argv, no shell, as the server's own workers do), streams
    /// their output to the server and reports the results. It opens no port and needs no
    /// database: only the server's address and a token from `chatrun agent-token create`.
    /// Stops cleanly on SIGTERM or Ctrl-C (running steps get --shutdown-grace-secs).
    ///
    /// Example: `CHATRUN_AGENT_TOKEN=… chatrun agent --server https://ci.example.com --labels
    /// macos,arm64`
    Agent {
        /// The chatrun server's address (its public_url).
        #[arg(long, value_name = "URL")]
        server: String,
        /// The agent's token (`chatrun agent-token create NAME` prints one).
        #[arg(long, env = "CHATRUN_AGENT_TOKEN", hide_env_values = true)]
        token: String,
        /// The labels this machine has, comma-separated: `linux,x86_64`.
        #[arg(long, value_delimiter = ',', value_name = "LABELS")]
        labels: Vec<String>,
        /// The agent's name, shown on the agents page [default: this machine's host name].
        #[arg(long)]
        name: Option<String>,
        /// Where the steps' relative working folders are [default: the current folder].
        #[arg(long, value_name = "DIR")]
        workdir: Option<PathBuf>,
        /// Added to the agent's nice value for every step (0 to 19).
        #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=19))]
        nice: u8,
        /// On shutdown, how long running steps may go on before they are stopped.
        #[arg(long, default_value_t = 60)]
        shutdown_grace_secs: u64,
    },
    /// Make, list and revoke the tokens agents authenticate with.
    #[command(subcommand)]
    AgentToken(TokenCmd),
}

#[derive(Debug, Subcommand)]
enum TokenCmd {
    /// Make a token for agents: printed once; the server keeps only its SHA-256.
    Create {
        /// What the token is for (`mac-mini-1`, `linux-pool`): listed, and revoked by it.
        name: String,
        /// The configuration file (for its database).
        #[arg(long, short, value_name = "PATH")]
        config: Option<PathBuf>,
    },
    /// List the tokens (never the tokens themselves).
    List {
        /// The configuration file (for its database).
        #[arg(long, short, value_name = "PATH")]
        config: Option<PathBuf>,
    },
    /// Revoke a token: its agents' next requests are refused (401).
    Revoke {
        name: String,
        /// The configuration file (for its database).
        #[arg(long, short, value_name = "PATH")]
        config: Option<PathBuf>,
    },
}

/// Parses the command line and runs the command.
///
/// # Errors
///
/// The command failed; the error chain says why.
pub fn run() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    telemetry::init();
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    match cli.command {
        Cmd::Serve { config } => runtime.block_on(serve(config)),
        Cmd::Check { config } => Ok(check(config)),
        Cmd::HashPassword => hash_password(),
        Cmd::Trigger {
            url,
            teams,
            slack,
            config,
            token,
            user,
            channel,
            channel_id,
            wait,
            text,
        } => runtime.block_on(trigger(TriggerArgs {
            url,
            teams,
            slack,
            config,
            token,
            user,
            channel,
            channel_id,
            wait,
            text: text.join(" "),
        })),
        Cmd::Agent {
            server,
            token,
            labels,
            name,
            workdir,
            nice,
            shutdown_grace_secs,
        } => runtime.block_on(agent(crate::worker::remote::Options {
            server,
            token,
            name: name.unwrap_or_else(crate::runner::orphans::hostname),
            labels: labels.into_iter().filter(|l| !l.is_empty()).collect(),
            workdir: match workdir {
                Some(dir) => dir,
                None => std::env::current_dir().context("cannot read the current folder")?,
            },
            nice,
            shutdown_grace: std::time::Duration::from_secs(shutdown_grace_secs),
        })),
        Cmd::AgentToken(command) => runtime.block_on(agent_token(command)),
    }
}

async fn serve(config: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let config = Config::load(config.as_deref())?;
    let source = config.source.clone();
    let app = App::build(config).await?;
    let state = app.state();
    let base = &state.config.public_url;
    println!("chatrun {} ({source})", env!("CARGO_PKG_VERSION"));
    println!("  listening on   http://{}", app.addr());
    println!("  history        {base}/");
    println!(
        "  database       {}",
        crate::store::shown_url(&state.config.database_url)
    );
    println!("  Mattermost     {base}/hooks/mattermost  (outgoing webhook callback URL)");
    println!(
        "  jobs           {} from {}",
        state
            .catalog
            .jobs()
            .map(|j| j.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        state.config.jobs_dir.display()
    );
    if state.config.mattermost.tokens.is_empty() {
        println!(
            "  local token    {} (no mattermost.tokens configured); try: {} trigger \"#build\"",
            state.config.local_token_path().display(),
            invocation()
        );
    }
    for hook in &state.config.teams {
        println!(
            "  Teams          {base}/hooks/teams/{}  (outgoing webhook callback URL; results {})",
            hook.name,
            if hook.follow_up_url.is_some() {
                "to its Workflows URL"
            } else {
                "on the history page only: no follow_up_url"
            }
        );
    }
    if state.config.mattermost.rest().is_none() {
        println!(
            "  replies        results are not posted to chat: set mattermost.url and mattermost.bot_token"
        );
    }
    let shutdown = shutdown::on_signal().context("cannot install signal handlers")?;
    app.run(shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

async fn agent(options: crate::worker::remote::Options) -> anyhow::Result<ExitCode> {
    for label in options.labels.iter().chain([&options.name]) {
        crate::domain::check_label(label).map_err(|why| anyhow::anyhow!("{why}"))?;
    }
    if !options.server.starts_with("http://") && !options.server.starts_with("https://") {
        bail!("--server: `{}` is not an http(s) address", options.server);
    }
    println!(
        "chatrun agent {} for {}, labels: {}",
        options.name,
        options.server,
        if options.labels.is_empty() {
            "(none)".to_string()
        } else {
            options.labels.join(", ")
        }
    );
    let shutdown = shutdown::on_signal().context("cannot install signal handlers")?;
    crate::worker::remote::run(options, shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

async fn agent_token(command: TokenCmd) -> anyhow::Result<ExitCode> {
    let config = match &command {
        TokenCmd::Create { config, .. }
        | TokenCmd::List { config }
        | TokenCmd::Revoke { config, .. } => config.clone(),
    };
    let config = Config::load(config.as_deref())?;
    let store = crate::store::Store::connect_with(&config.database_url, config.busy_timeout)
        .await
        .with_context(|| {
            format!(
                "cannot open the database {}",
                crate::store::shown_url(&config.database_url)
            )
        })?;
    let now = crate::store::now_ms();
    let code = match command {
        TokenCmd::Create { name, .. } => {
            crate::domain::check_label(&name).map_err(|why| anyhow::anyhow!("{why}"))?;
            let token = crate::domain::agent_token()?;
            let hash = crate::domain::sha256_hex(&token);
            if !store.create_agent_token(&name, &hash, now).await? {
                bail!(
                    "a token named `{name}` exists already: revoke it first, or pick another name"
                );
            }
            println!("{token}");
            eprintln!(
                "The token `{name}` is shown this once; chatrun keeps only its SHA-256.\n\
                 Start an agent with it: CHATRUN_AGENT_TOKEN={token} chatrun agent --server {} --labels …",
                config.public_url
            );
            ExitCode::SUCCESS
        }
        TokenCmd::List { .. } => {
            let tokens = store.agent_tokens().await?;
            if tokens.is_empty() {
                println!("no agent tokens (chatrun agent-token create NAME)");
            }
            for token in tokens {
                let state = match token.revoked_at {
                    Some(at) => format!("revoked {}", crate::render::timestamp(at)),
                    None => "in use".to_string(),
                };
                println!(
                    "{}\tcreated {}\t{state}",
                    token.name,
                    crate::render::timestamp(token.created_at)
                );
            }
            ExitCode::SUCCESS
        }
        TokenCmd::Revoke { name, .. } => {
            if store.revoke_agent_token(&name, now).await? {
                println!("revoked `{name}`: its agents' next requests are refused");
                ExitCode::SUCCESS
            } else {
                eprintln!("no token `{name}` in use (chatrun agent-token list)");
                ExitCode::FAILURE
            }
        }
    };
    store.close().await;
    Ok(code)
}

fn check(config: Option<PathBuf>) -> ExitCode {
    let mut problems = Vec::new();
    // The jobs are checked even when the configuration has problems, in the folder it names
    // (or would name).
    let (source, jobs_dir) = match Config::load(config.as_deref()) {
        Ok(config) => (config.source, config.jobs_dir),
        Err(err) => {
            problems.extend(err.0);
            (String::new(), Config::jobs_dir_hint(config.as_deref()))
        }
    };
    let mut summary = None;
    match catalog::load(&jobs_dir) {
        Ok(catalog) => {
            let names: Vec<&str> = catalog.jobs().map(|j| j.name.as_str()).collect();
            summary = Some(format!(
                "{source}: ok; {} job(s) in {}: {}",
                names.len(),
                jobs_dir.display(),
                names.join(", ")
            ));
        }
        Err(found) => problems.extend(found),
    }
    for path in catalog::ignored_files(&jobs_dir) {
        eprintln!(
            "warning: {}: not a .toml file, so not a job (a job is {}/NAME.toml)",
            path.display(),
            jobs_dir.display()
        );
    }
    if problems.is_empty() {
        println!("{}", summary.unwrap_or_default());
        ExitCode::SUCCESS
    } else {
        eprintln!("{} problem(s):", problems.len());
        for problem in problems {
            eprintln!("  - {problem}");
        }
        ExitCode::FAILURE
    }
}

fn hash_password() -> anyhow::Result<ExitCode> {
    use std::io::IsTerminal;
    if std::io::stdin().is_terminal() {
        eprintln!("Password (it is shown as you type; press Enter):");
    }
    let mut password = String::new();
    std::io::stdin()
        .read_line(&mut password)
        .context("cannot read the password")?;
    let password = password.trim_end_matches(['\n', '\r']);
    if password.len() < 12 {
        bail!("the password is too short: at least 12 characters");
    }
    let hash = crate::http::auth::hash_password(password)?;
    println!("{hash}");
    eprintln!(
        "Put it in the configuration:\n  [[web.users]]\n  name = \"…\"\n  password_hash = \"{hash}\""
    );
    Ok(ExitCode::SUCCESS)
}

struct TriggerArgs {
    url: Option<String>,
    teams: Option<String>,
    slack: bool,
    config: Option<PathBuf>,
    token: Option<String>,
    user: Option<String>,
    channel: String,
    channel_id: String,
    wait: bool,
    text: String,
}

/// Who is at the terminal: `$USER`, else `$LOGNAME` (as in a container or under cron, where
/// `$USER` is often unset), when set and not empty.
fn login_name() -> Option<String> {
    ["USER", "LOGNAME"]
        .iter()
        .filter_map(|var| std::env::var(var).ok())
        .map(|name| name.trim().to_string())
        .find(|name| !name.is_empty())
}

/// How to run chatrun again as it was run now: `cargo run --` when it is cargo's build (so the
/// hint works as printed), else `chatrun`.
fn invocation() -> &'static str {
    let under_cargo = std::env::current_exe()
        .is_ok_and(|exe| exe.components().any(|c| c.as_os_str() == "target"))
        && std::env::var_os("CARGO").is_some();
    if under_cargo {
        "cargo run --"
    } else {
        "chatrun"
    }
}

async fn trigger(args: TriggerArgs) -> anyhow::Result<ExitCode> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = Config::load(args.config.as_deref())?;
    let user = args
        .user
        .clone()
        .or_else(login_name)
        .unwrap_or_else(|| "local".into());
    let request = match &args.teams {
        Some(name) => teams_request(&config, name, &args, &user)?,
        None if args.slack => slack_request(&config, &args, &user)?,
        None => mattermost_request(&config, &args, &user)?,
    };
    let url = request.url().to_string();
    let base = match &args.url {
        Some(url) => origin_of(url).with_context(|| format!("`{url}` is not a URL"))?,
        None => local_base(&config),
    };
    // Slack's acknowledgement is a message the bot posts, not the answer: a run this command
    // stored is the user's newest Slack run once it is answered, if it was not before.
    let newest_before = if args.slack {
        newest_slack_run(&base, &user).await
    } else {
        None
    };
    let response = reqwest::Client::new()
        .execute(request)
        .await
        .with_context(|| format!("cannot reach chatrun at {url}: is `chatrun serve` running?"))?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    if !status.is_success() {
        bail!("chatrun answered {status}: {}", text.trim());
    }
    // Slack's acknowledgement is an empty answer; the others are JSON.
    let reply: serde_json::Value = if args.slack && text.trim().is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(&text).with_context(|| format!("chatrun answered non-JSON: {text}"))?
    };
    let text = reply.get("text").and_then(|t| t.as_str());
    let run_id = match text {
        Some(text) => {
            println!("{text}");
            run_number(text)
        }
        None if args.slack => {
            let run = newest_slack_run(&base, &user)
                .await
                .filter(|id| Some(*id) != newest_before);
            match run {
                Some(id) => println!(
                    "acknowledged: run #{id}; the bot posts the acknowledgement in the channel \
                     and the result in its thread ({base}/runs/{id})"
                ),
                None => println!(
                    "sent; chatrun's answer is posted by the bot in the channel (see {base}/ for \
                     runs)"
                ),
            }
            run
        }
        None => {
            println!("(no text: the reply was posted in the thread)");
            None
        }
    };
    match run_id.filter(|_| args.wait) {
        Some(run_id) => wait_for_result(&base, run_id).await,
        None => Ok(ExitCode::SUCCESS),
    }
}

/// The number of `user`'s newest Slack run, from `/api/runs`.
async fn newest_slack_run(base: &str, user: &str) -> Option<i64> {
    let query =
        serde_urlencoded::to_string([("platform", "slack"), ("user", user), ("limit", "1")])
            .ok()?;
    let body: serde_json::Value = reqwest::Client::new()
        .get(format!("{base}/api/runs?{query}"))
        .timeout(std::time::Duration::from_secs(10))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    body["runs"][0]["id"].as_i64()
}

/// The run number an acknowledgement links to (`…/runs/42`).
fn run_number(ack: &str) -> Option<i64> {
    let (_, after) = ack.split_once("/runs/")?;
    let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// `scheme://host:port` of `url`.
fn origin_of(url: &str) -> Option<String> {
    let parsed = reqwest::Url::parse(url).ok()?;
    let origin = parsed.origin();
    origin.is_tuple().then(|| origin.ascii_serialization())
}

/// Follows run `run_id` through `/api/runs/{id}` until it ends, saying on standard error where
/// it is whenever that changes; then prints its result reply.
async fn wait_for_result(base: &str, run_id: i64) -> anyhow::Result<ExitCode> {
    let url = format!("{base}/api/runs/{run_id}");
    let client = reqwest::Client::new();
    let mut said = String::new();
    loop {
        let response = client
            .get(&url)
            .timeout(std::time::Duration::from_secs(10))
            .send()
            .await
            .with_context(|| format!("cannot follow run #{run_id} at {url}"))?;
        let status = response.status();
        if status == reqwest::StatusCode::UNAUTHORIZED {
            bail!(
                "{url} needs a login (chatrun is not listening on loopback): follow run #{run_id} \
                 in a browser, or leave out --wait"
            );
        }
        if !status.is_success() {
            bail!("{url} answered {status}");
        }
        let body: serde_json::Value = response
            .json()
            .await
            .with_context(|| format!("{url} answered something else than a run"))?;
        let state = body["run"]["status"].as_str().unwrap_or_default();
        let where_it_is = match state {
            "running" => {
                let steps = body["steps"].as_array().map_or(&[][..], Vec::as_slice);
                steps
                    .iter()
                    .position(|s| s["status"] == "running")
                    .map_or_else(
                        || "running".to_string(),
                        |n| {
                            format!(
                                "running step {}/{} ({})",
                                n + 1,
                                steps.len(),
                                steps[n]["name"].as_str().unwrap_or_default()
                            )
                        },
                    )
            }
            other => other.to_string(),
        };
        if where_it_is != said {
            eprintln!("run #{run_id}: {where_it_is}");
            said = where_it_is;
        }
        if !matches!(state, "queued" | "running") {
            match body["result_reply"].as_str() {
                Some(reply) => println!("\n{reply}"),
                None => println!("run #{run_id} {state}"),
            }
            return Ok(if state == "succeeded" {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            });
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

/// A form-encoded outgoing webhook, fields and encoding as Mattermost sends them.
fn mattermost_request(
    config: &Config,
    args: &TriggerArgs,
    user: &str,
) -> anyhow::Result<reqwest::Request> {
    let url = args
        .url
        .clone()
        .unwrap_or_else(|| format!("{}/hooks/mattermost", local_base(config)));
    let token = match (&args.token, config.mattermost.tokens.first()) {
        (Some(token), _) => token.clone(),
        (None, Some(token)) => token.clone(),
        (None, None) => {
            let path = config.local_token_path();
            std::fs::read_to_string(&path)
                .map(|t| t.trim().to_string())
                .with_context(|| {
                    format!(
                        "no token: {} does not exist yet; start `chatrun serve` once (it creates it) or pass --token",
                        path.display()
                    )
                })?
        }
    };
    let timestamp = (crate::store::now_ms() / 1000).to_string();
    let trigger_word = args.text.split_whitespace().next().unwrap_or("");
    // Keys sorted, as Go's url.Values encodes them.
    let form = [
        ("channel_id", args.channel_id.as_str()),
        ("channel_name", args.channel.as_str()),
        ("file_ids", ""),
        ("post_id", &random_id()?),
        ("team_domain", ""),
        ("team_id", ""),
        ("text", &args.text),
        ("timestamp", &timestamp),
        ("token", &token),
        ("trigger_word", trigger_word),
        ("user_id", &format!("local-{user}")),
        ("user_name", user),
    ];
    let body = serde_urlencoded::to_string(form).context("cannot encode the form")?;
    reqwest::Client::new()
        .post(&url)
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .header(reqwest::header::USER_AGENT, "Mattermost-Bot/1.1")
        .body(body)
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .with_context(|| format!("`{url}` is not a URL"))
}

/// A slash command, fields in the order and encoding Slack sends them, signed with
/// `slack.signing_secret` as Slack signs.
fn slack_request(
    config: &Config,
    args: &TriggerArgs,
    user: &str,
) -> anyhow::Result<reqwest::Request> {
    let Some(secret) = &config.slack.signing_secret else {
        bail!(
            "slack.signing_secret is not set in {}: --slack signs the command with it",
            config.source
        );
    };
    let url = args
        .url
        .clone()
        .unwrap_or_else(|| format!("{}/hooks/slack/commands", local_base(config)));
    let (command, text) = args
        .text
        .trim()
        .split_once(char::is_whitespace)
        .unwrap_or((args.text.trim(), ""));
    if !command.starts_with('/') {
        bail!("a slash command starts with `/`, e.g. \"/build feature/x\" (not `{command}`)");
    }
    let channel_id = if args.channel_id.is_empty() {
        "CLOCAL"
    } else {
        &args.channel_id
    };
    let trigger_id = random_id()?;
    let form = [
        ("token", "local"),
        ("team_id", "TLOCAL"),
        ("team_domain", "local"),
        ("channel_id", channel_id),
        ("channel_name", args.channel.as_str()),
        ("user_id", &format!("ULOCAL-{user}")),
        ("user_name", user),
        ("command", command),
        ("text", text.trim()),
        (
            "api_app_id",
            config.slack.app_id.as_deref().unwrap_or("ALOCAL"),
        ),
        ("response_url", "https://hooks.slack.com/commands/local"),
        ("trigger_id", &trigger_id),
    ];
    let body = serde_urlencoded::to_string(form).context("cannot encode the form")?;
    let timestamp = (crate::store::now_ms() / 1000).to_string();
    let signature = crate::chat::slack::auth::sign(secret.as_bytes(), &timestamp, body.as_bytes());
    reqwest::Client::new()
        .post(&url)
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .header("X-Slack-Request-Timestamp", timestamp)
        .header("X-Slack-Signature", signature)
        .header(
            reqwest::header::USER_AGENT,
            "Slackbot 1.0 (+https://api.slack.com/robots)",
        )
        .body(body)
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .with_context(|| format!("`{url}` is not a URL"))
}

/// A Teams activity mentioning the webhook, signed with webhook `name`'s secret.
fn teams_request(
    config: &Config,
    name: &str,
    args: &TriggerArgs,
    user: &str,
) -> anyhow::Result<reqwest::Request> {
    let Some(hook) = config.teams.iter().find(|hook| hook.name == name) else {
        let names: Vec<&str> = config.teams.iter().map(|h| h.name.as_str()).collect();
        bail!(
            "no Teams webhook `{name}` in {} (configured: {})",
            config.source,
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        );
    };
    let url = args
        .url
        .clone()
        .unwrap_or_else(|| format!("{}/hooks/teams/{name}", local_base(config)));
    let id = crate::store::now_ms().to_string();
    let now = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
    let activity = serde_json::json!({
        "type": "message",
        "id": id,
        "timestamp": now,
        "channelId": "msteams",
        "from": {"id": format!("29:local-{user}"), "name": user, "aadObjectId": format!("local-{user}")},
        "conversation": {"isGroup": true, "id": format!("19:local@thread.tacv2;messageid={id}")},
        "textFormat": "plain",
        "text": format!("<at>chatrun</at>&nbsp;{}", crate::domain::text::escape_text(&args.text)),
        "channelData": {"channel": {"id": args.channel}, "team": {"id": "local"}},
    });
    let body = serde_json::to_vec(&activity).context("cannot encode the activity")?;
    reqwest::Client::new()
        .post(&url)
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/json; charset=utf-8",
        )
        .header(
            reqwest::header::AUTHORIZATION,
            teams::sign(&hook.key, &body),
        )
        .body(body)
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .with_context(|| format!("`{url}` is not a URL"))
}

/// `http://<listen>` with a wildcard address replaced by loopback.
fn local_base(config: &Config) -> String {
    let mut addr = config.listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    format!("http://{addr}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hint_after_serve_names_the_command_that_works_here() {
        // These tests run from cargo's target/ with CARGO set, as `cargo run` does.
        assert_eq!(invocation(), "cargo run --");
    }

    #[test]
    fn the_help_says_teams_the_pages_and_the_environment() {
        use clap::CommandFactory;
        let help = Cli::command().render_long_help().to_string();
        for expected in [
            "Microsoft Teams",
            "history pages",
            "CHATRUN_SECTION__KEY",
            "trigger",
        ] {
            assert!(help.contains(expected), "{expected} missing from:\n{help}");
        }
    }
}
