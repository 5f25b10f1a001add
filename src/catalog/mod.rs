//! The job catalog: `jobs/NAME.toml` files turned into [`JobDef`]s.
//!
//! [`args`] checks what chat text passes to a job's parameters.
//!
//! [`parse_job`] is pure (text in, definition or problems out) and tested here; [`load`] only
//! reads the folder and hands each file to it, collecting every problem of every file so that
//! `chatrun check` can list them all at once. A job's name is its file's stem.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::domain::problem::{Key, take_unknown_keys};
use crate::domain::{BUILT_INS, Platform, Problem};

pub mod args;

pub use args::ParamDef;

/// Runs of one job that may wait, unless the job says otherwise.
pub const DEFAULT_QUEUE_LIMIT: usize = 10;

/// Timeout of a job that does not set one.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// A job: what `#NAME` runs.
#[derive(Debug, Clone, PartialEq)]
pub struct JobDef {
    /// The file stem; what users type.
    pub name: String,
    /// One line for lists of jobs.
    pub description: String,
    /// The whole run is stopped (every process of every step) after this long.
    pub timeout: Duration,
    /// Run every step even after one failed (a test matrix).
    pub keep_going: bool,
    /// Run it once more when chatrun stopped under it (crash, shutdown); otherwise such a run
    /// ends `interrupted`. For jobs that are safe to repeat.
    pub retry_interrupted: bool,
    /// At least one.
    pub steps: Vec<StepDef>,
    /// What chat text may set, by name.
    pub params: Vec<ParamDef>,
    /// Who may run it, where.
    pub allow: Allow,
    /// Runs of this job that may execute at once.
    pub concurrency: usize,
    /// Runs of this job that may wait; further requests are refused.
    pub queue_limit: usize,
    /// What a new request does to runs of the job already there.
    pub on_new: OnNew,
    /// Environment variables (of a step's `env`, or of chatrun's own environment) whose values
    /// are masked in logs and replies.
    pub secret_env: Vec<String>,
    /// The labels an agent must have, all of them, to run the job; none: the server's own
    /// (local) agent runs it.
    pub runs_on: Vec<String>,
    /// Channels told when the job's outcome for an argument set changes.
    pub notify: Notify,
}

/// Where a job's status changes (failed → succeeded, succeeded → failed, for one set of
/// arguments) are announced, besides the reply in the trigger's thread: at most one channel
/// per platform.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Notify {
    /// A Mattermost channel id (posted to through the REST API).
    #[serde(default)]
    pub mattermost: Option<String>,
    /// A Slack channel id (`C…`).
    #[serde(default)]
    pub slack: Option<String>,
    /// A Teams webhook's name: its Workflows URL posts in its channel.
    #[serde(default)]
    pub teams: Option<String>,
}

impl Notify {
    /// `(platform, channel)` for each configured one.
    pub fn channels(&self) -> impl Iterator<Item = (crate::domain::Platform, &str)> {
        use crate::domain::Platform;
        [
            (Platform::Mattermost, &self.mattermost),
            (Platform::Slack, &self.slack),
            (Platform::Teams, &self.teams),
        ]
        .into_iter()
        .filter_map(|(platform, channel)| Some((platform, channel.as_deref()?)))
    }
}

impl JobDef {
    /// Its steps' names, in order.
    pub fn step_names(&self) -> Vec<&str> {
        self.steps.iter().map(|step| step.name.as_str()).collect()
    }
}

/// What a new request does to the job's other runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnNew {
    /// Wait in line.
    #[default]
    Queue,
    /// Replace a still-queued run with the same arguments.
    Replace,
    /// Cancel the running ones: the latest request wins.
    CancelRunning,
}

/// Who may run a job, and where. An empty list allows everyone (or everywhere).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Allow {
    /// Mattermost user names or ids; Teams Entra object ids, written `aad:<id>` or bare.
    #[serde(default)]
    pub users: Vec<String>,
    /// Channel names or ids.
    #[serde(default)]
    pub channels: Vec<String>,
    /// Team names or ids.
    #[serde(default)]
    pub teams: Vec<String>,
    /// Users who may cancel anyone's run of this job (besides its requester).
    #[serde(default)]
    pub admins: Vec<String>,
}

/// Who asks, and where: what permissions are checked against.
pub type Caller = crate::domain::Origin;

impl Allow {
    /// Why `caller` may not run the job, naming the rule; `None` when allowed.
    pub fn denies(&self, caller: &Caller) -> Option<String> {
        if !self.users.is_empty() && !Self::user_in(&self.users, caller) {
            return Some(format!(
                "{} is not in the job's allow.users",
                display(&caller.user_name, &caller.user_id)
            ));
        }
        place_denied(
            &self.channels,
            "channel",
            &caller.channel_name,
            &caller.channel_id,
        )
        .or_else(|| place_denied(&self.teams, "team", &caller.team_name, &caller.team_id))
    }

    /// Whether `caller` is one of the job's admins.
    pub fn is_admin(&self, caller: &Caller) -> bool {
        Self::user_in(&self.admins, caller)
    }

    fn user_in(list: &[String], caller: &Caller) -> bool {
        // Teams and Slack names are display names anyone can change: ids only there.
        let by_name = !matches!(caller.platform, Platform::Teams | Platform::Slack);
        list.iter().any(|entry| {
            let entry = entry.strip_prefix("aad:").unwrap_or(entry);
            !entry.is_empty() && (entry == caller.user_id || (by_name && entry == caller.user_name))
        })
    }
}

/// Why a caller in place `name`/`id` is denied by `list` (`channels`, `teams`), if it is.
fn place_denied(list: &[String], what: &str, name: &str, id: &str) -> Option<String> {
    (!list.is_empty() && !list.iter().any(|entry| entry == name || entry == id)).then(|| {
        format!(
            "{what} {} is not in the job's allow.{what}s",
            display(name, id)
        )
    })
}

fn display(name: &str, id: &str) -> String {
    if name.is_empty() {
        id.to_string()
    } else {
        name.to_string()
    }
}

/// One step: one row of the result table.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct StepDef {
    /// Shown in replies and on the run page.
    pub name: String,
    /// argv, executed without a shell; never empty.
    pub run: Vec<String>,
    /// Absolute working directory.
    pub workdir: PathBuf,
    /// The working directory as the job file wrote it (relative to the jobs folder, or
    /// absolute): a remote agent finds it under its own `--workdir`.
    #[serde(skip)]
    pub workdir_in_job: Option<PathBuf>,
    /// Extra environment variables.
    pub env: BTreeMap<String, String>,
    /// Glob of the JUnit XML reports the step writes, relative to `workdir`.
    pub junit: Option<String>,
}

/// Every job found, by name.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    jobs: BTreeMap<String, JobDef>,
}

impl Catalog {
    /// A catalog of the given jobs (for tests).
    pub fn new(jobs: impl IntoIterator<Item = JobDef>) -> Self {
        Self {
            jobs: jobs.into_iter().map(|j| (j.name.clone(), j)).collect(),
        }
    }

    /// The job called `name` (case-sensitive, as chat trigger words are).
    pub fn get(&self, name: &str) -> Option<&JobDef> {
        self.jobs.get(name)
    }

    /// Every job, sorted by name.
    pub fn jobs(&self) -> impl Iterator<Item = &JobDef> {
        self.jobs.values()
    }

    /// Number of jobs.
    pub fn len(&self) -> usize {
        self.jobs.len()
    }

    /// True when there are no jobs.
    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }
}

/// Every key a job file may hold (the fields of the raw structs below), to report all unknown
/// keys at once.
const JOB_KEYS: &[Key] = &[
    Key::Value("description"),
    Key::Value("timeout"),
    Key::Value("keep_going"),
    Key::Value("retry_interrupted"),
    Key::Value("concurrency"),
    Key::Value("queue_limit"),
    Key::Value("on_new"),
    Key::Value("secret_env"),
    Key::Value("runs_on"),
    Key::Named(
        "params",
        &[
            Key::Value("description"),
            Key::Value("default"),
            Key::Value("pattern"),
            Key::Value("choices"),
            Key::Value("positional"),
        ],
    ),
    Key::Table(
        "notify",
        &[
            Key::Value("mattermost"),
            Key::Value("slack"),
            Key::Value("teams"),
        ],
    ),
    Key::Table(
        "allow",
        &[
            Key::Value("users"),
            Key::Value("channels"),
            Key::Value("teams"),
            Key::Value("admins"),
        ],
    ),
    Key::Tables(
        "steps",
        &[
            Key::Value("name"),
            Key::Value("run"),
            Key::Value("workdir"),
            Key::Value("env"),
            Key::Value("junit"),
        ],
    ),
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJob {
    #[serde(default)]
    description: String,
    #[serde(default)]
    timeout: Option<String>,
    #[serde(default)]
    keep_going: bool,
    #[serde(default)]
    retry_interrupted: bool,
    #[serde(default)]
    steps: Vec<RawStep>,
    #[serde(default)]
    params: BTreeMap<String, RawParam>,
    #[serde(default)]
    allow: Allow,
    #[serde(default)]
    concurrency: Option<usize>,
    #[serde(default)]
    queue_limit: Option<usize>,
    #[serde(default)]
    on_new: OnNew,
    #[serde(default)]
    secret_env: Vec<String>,
    #[serde(default)]
    runs_on: Vec<String>,
    #[serde(default)]
    notify: Notify,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawParam {
    #[serde(default)]
    description: String,
    #[serde(default)]
    default: Option<String>,
    #[serde(default)]
    pattern: Option<String>,
    #[serde(default)]
    choices: Vec<String>,
    #[serde(default)]
    positional: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    #[serde(default)]
    name: String,
    #[serde(default)]
    run: Vec<String>,
    #[serde(default)]
    workdir: Option<PathBuf>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    junit: Option<String>,
}

/// The files in `dir` that are not job files (not `*.toml`), which [`load`] ignores: worth a
/// warning, since `build.yml` or `build.toml.bak` looks like a job to whoever wrote it.
pub fn ignored_files(dir: &Path) -> Vec<PathBuf> {
    let mut ignored: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_none_or(|e| e != "toml"))
        .collect();
    ignored.sort();
    ignored
}

/// Reads every `*.toml` in `dir`.
///
/// # Errors
///
/// Every problem of every file (and a missing folder), each with its file and key.
pub fn load(dir: &Path) -> Result<Catalog, Vec<Problem>> {
    let base = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let folder_problem = |message: String| Problem {
        source: dir.display().to_string(),
        key: String::new(),
        message,
    };
    let entries = std::fs::read_dir(dir).map_err(|err| {
        vec![folder_problem(format!(
            "cannot read the jobs folder: {err} (set jobs_dir in the configuration)"
        ))]
    })?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml") && p.is_file())
        .collect();
    paths.sort();

    let mut jobs = Vec::new();
    let mut problems = Vec::new();
    for path in paths {
        let source = path.display().to_string();
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        match std::fs::read_to_string(&path) {
            Ok(text) => match parse_job(&name, &text, &base) {
                Ok(job) => jobs.push(job),
                Err(found) => problems.extend(found.into_iter().map(|(key, message)| Problem {
                    source: source.clone(),
                    key,
                    message,
                })),
            },
            Err(err) => problems.push(Problem {
                source,
                key: String::new(),
                message: format!("cannot read: {err}"),
            }),
        }
    }
    if problems.is_empty() {
        Ok(Catalog::new(jobs))
    } else {
        Err(problems)
    }
}

/// Parses one job file. Relative `workdir`s are resolved against `base` (the jobs folder), which
/// is also the default working directory.
///
/// # Errors
///
/// Every `(key, message)` problem found.
pub fn parse_job(name: &str, text: &str, base: &Path) -> Result<JobDef, Vec<(String, String)>> {
    let mut problems = Vec::new();
    if let Err(message) = check_name(name) {
        problems.push((String::new(), message));
    }
    let mut table: toml::Table = match toml::from_str(text) {
        Ok(table) => table,
        Err(err) => {
            problems.push((String::new(), err.to_string().trim_end().to_string()));
            return Err(problems);
        }
    };
    // Every unknown key at once; the rest is still read and checked.
    problems.extend(take_unknown_keys(&mut table, JOB_KEYS));
    // A number without a unit is the common slip: say how to write it.
    if let Some(toml::Value::Integer(n)) = table.get("timeout") {
        problems.push((
            "timeout".into(),
            format!("`{n}` has no unit: write a duration such as \"{n}s\" or \"{n}m\""),
        ));
        table.remove("timeout");
    }
    let raw: RawJob = match toml::Value::Table(table).try_into() {
        Ok(raw) => raw,
        Err(err) => {
            problems.push((String::new(), err.to_string().trim_end().to_string()));
            return Err(problems);
        }
    };
    let timeout = match raw.timeout.as_deref() {
        None => DEFAULT_TIMEOUT,
        Some(text) => match humantime::parse_duration(text) {
            Ok(d) if !d.is_zero() => d,
            Ok(_) => {
                problems.push(("timeout".into(), "must be longer than zero".into()));
                DEFAULT_TIMEOUT
            }
            Err(err) => {
                problems.push((
                    "timeout".into(),
                    format!("`{text}` is not a duration like \"90s\" or \"10m\": {err}"),
                ));
                DEFAULT_TIMEOUT
            }
        },
    };
    if raw.steps.is_empty() {
        problems.push((
            "steps".into(),
            "a job needs at least one [[steps]] entry".into(),
        ));
    }
    let mut steps = Vec::new();
    for (i, step) in raw.steps.into_iter().enumerate() {
        let key = |field: &str| format!("steps[{i}].{field}");
        if step.name.trim().is_empty() {
            problems.push((key("name"), "is missing or empty".into()));
        }
        if step.name.chars().any(char::is_control) {
            problems.push((key("name"), "must be one line".into()));
        }
        if step.run.is_empty() || step.run[0].is_empty() {
            problems.push((
                key("run"),
                "must be a non-empty argv list, e.g. [\"cargo\", \"test\"]".into(),
            ));
        }
        for var in step.env.keys() {
            if var.is_empty() || var.contains('=') || var.contains('\0') {
                problems.push((
                    key("env"),
                    format!("`{var}` is not an environment variable name"),
                ));
            }
        }
        let junit = step.junit.filter(|p| !p.trim().is_empty());
        if let Some(pattern) = &junit
            && let Err(err) = glob::Pattern::new(pattern)
        {
            problems.push((
                key("junit"),
                format!("`{pattern}` is not a file pattern: {err}"),
            ));
        }
        let workdir = match &step.workdir {
            Some(dir) if dir.is_absolute() => dir.clone(),
            Some(dir) => base.join(dir),
            None => base.to_path_buf(),
        };
        steps.push(StepDef {
            name: step.name.trim().to_string(),
            run: step.run,
            workdir,
            workdir_in_job: step.workdir,
            env: step.env,
            junit,
        });
    }
    let params = parse_params(raw.params, &mut problems);
    let concurrency = raw.concurrency.unwrap_or(1);
    if concurrency == 0 {
        problems.push(("concurrency".into(), "must be at least 1".into()));
    }
    let queue_limit = raw.queue_limit.unwrap_or(DEFAULT_QUEUE_LIMIT);
    for label in &raw.runs_on {
        if let Err(why) = crate::domain::check_label(label) {
            problems.push(("runs_on".into(), why));
        }
    }
    let mut runs_on = raw.runs_on;
    runs_on.sort();
    runs_on.dedup();
    for (platform, channel) in raw.notify.channels() {
        if channel.trim().is_empty() || channel.len() > 128 {
            problems.push((
                format!("notify.{platform}"),
                "must name a channel: 1 to 128 characters".into(),
            ));
        }
    }
    for (i, step) in steps.iter().enumerate() {
        for arg in &step.run {
            for placeholder in placeholders(arg) {
                if !params.iter().any(|p| p.name == placeholder) {
                    problems.push((
                        format!("steps[{i}].run"),
                        format!("`{{{placeholder}}}` names no parameter of this job (add [params.{placeholder}])"),
                    ));
                }
            }
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(JobDef {
        name: name.to_string(),
        description: raw.description.trim().to_string(),
        timeout,
        keep_going: raw.keep_going,
        retry_interrupted: raw.retry_interrupted,
        steps,
        params,
        allow: raw.allow,
        concurrency,
        queue_limit,
        on_new: raw.on_new,
        secret_env: raw.secret_env,
        runs_on,
        notify: raw.notify,
    })
}

fn parse_params(
    raw: BTreeMap<String, RawParam>,
    problems: &mut Vec<(String, String)>,
) -> Vec<ParamDef> {
    let mut params: Vec<ParamDef> = Vec::new();
    for (name, raw) in raw {
        let key = |field: &str| format!("params.{name}.{field}");
        if !args::is_param_name(&name) {
            problems.push((
                format!("params.{name}"),
                "a parameter name is lowercase letters, digits and `_`, starting with a letter"
                    .into(),
            ));
            continue;
        }
        if raw.pattern.is_some() && !raw.choices.is_empty() {
            problems.push((
                key("choices"),
                "give `pattern` or `choices`, not both".into(),
            ));
        }
        let written = raw
            .pattern
            .clone()
            .unwrap_or_else(|| args::DEFAULT_PATTERN.into());
        // Anchored, whatever was written: a value must match as a whole.
        let pattern = match regex::Regex::new(&format!("^(?:{written})$")) {
            Ok(pattern) => pattern,
            Err(err) => {
                problems.push((
                    key("pattern"),
                    format!("is not a regular expression: {err}"),
                ));
                continue;
            }
        };
        let allowed = if raw.choices.is_empty() {
            format!("like `{written}`")
        } else {
            format!("one of {}", raw.choices.join(", "))
        };
        if let Some(n) = raw.positional {
            if n == 0 {
                problems.push((key("positional"), "positions start at 1".into()));
            } else if params.iter().any(|p| p.positional == Some(n)) {
                problems.push((key("positional"), format!("position {n} is taken twice")));
            }
        }
        let param = ParamDef {
            name: name.clone(),
            description: raw.description.trim().to_string(),
            default: raw.default,
            pattern,
            allowed,
            choices: raw.choices,
            positional: raw.positional,
        };
        if let Some(default) = &param.default
            && !param.accepts(default)
        {
            problems.push((
                key("default"),
                format!("`{default}` is not allowed by its own pattern or choices"),
            ));
        }
        params.push(param);
    }
    params
}

/// The `{name}` placeholders in an argv element.
fn placeholders(arg: &str) -> Vec<&str> {
    let mut found = Vec::new();
    let mut rest = arg;
    while let Some(open) = rest.find('{') {
        rest = &rest[open + 1..];
        if let Some(close) = rest.find('}') {
            let name = &rest[..close];
            if args::is_param_name(name) {
                found.push(name);
            }
            rest = &rest[close + 1..];
        }
    }
    found
}

fn check_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !valid {
        return Err(format!(
            "job name `{name}` (the file name) must be letters, digits, `-`, `_` or `.`, \
             starting with a letter or digit, at most 64 characters"
        ));
    }
    if BUILT_INS.contains(&name) {
        return Err(format!(
            "job name `{name}` is a chat command ({}); rename the file",
            BUILT_INS.join(", ")
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "/srv/jobs";

    #[test]
    fn parses_a_job_with_defaults_and_resolved_workdirs() {
        let job = parse_job(
            "build",
            r#"
description = "Build and test everything"
timeout = "10m"
[[steps]]
name = "Server"
run = ["cargo", "test", "--workspace"]
workdir = "../server"
env = { RUST_LOG = "info" }
junit = "target/nextest/ci/*.xml"
[[steps]]
name = "Web"
run = ["npm", "test"]
"#,
            Path::new(BASE),
        )
        .unwrap();
        assert_eq!(job.name, "build");
        assert_eq!(job.timeout, Duration::from_secs(600));
        assert!(!job.keep_going);
        assert_eq!(job.steps[0].workdir, PathBuf::from("/srv/jobs/../server"));
        assert_eq!(job.steps[0].env["RUST_LOG"], "info");
        assert_eq!(job.steps[1].workdir, PathBuf::from(BASE));
        assert_eq!(
            job.steps[0].junit.as_deref(),
            Some("target/nextest/ci/*.xml")
        );
        assert_eq!(job.steps[1].junit, None);
    }

    #[test]
    fn reports_every_problem_with_its_key() {
        let problems = parse_job(
            "build",
            r#"
timeout = "soon"
[[steps]]
run = []
[[steps]]
name = "ok"
run = ["true"]
env = { "A=B" = "x" }
junit = "reports/[*.xml"
"#,
            Path::new(BASE),
        )
        .unwrap_err();
        let keys: Vec<&str> = problems.iter().map(|p| p.0.as_str()).collect();
        assert_eq!(
            keys,
            vec![
                "timeout",
                "steps[0].name",
                "steps[0].run",
                "steps[1].env",
                "steps[1].junit"
            ]
        );
    }

    #[test]
    fn parses_parameters_and_checks_their_use() {
        let job = parse_job(
            "deploy",
            r#"
[params.branch]
default = "main"
pattern = "[A-Za-z0-9._/-]{1,100}"
positional = 1
[params.env]
choices = ["staging", "production"]
[[steps]]
name = "Deploy"
run = ["deploy", "--branch={branch}", "{env}"]
"#,
            Path::new(BASE),
        )
        .unwrap();
        assert_eq!(job.params.len(), 2);
        assert!(job.params[0].accepts("feature/x") && !job.params[0].accepts("a b"));
        assert!(
            !job.params[0].accepts("xmain/y z"),
            "the pattern is anchored"
        );
        assert!(job.params[1].default.is_none(), "env is required");

        let problems = parse_job(
            "deploy",
            r#"
[params.Branch]
[params.env]
choices = ["a"]
pattern = "x"
default = "b"
[params.n]
pattern = "("
[[steps]]
name = "Deploy"
run = ["deploy", "{target}"]
"#,
            Path::new(BASE),
        )
        .unwrap_err();
        let keys: Vec<&str> = problems.iter().map(|p| p.0.as_str()).collect();
        assert_eq!(
            keys,
            vec![
                "params.Branch",
                "params.env.choices",
                "params.env.default",
                "params.n.pattern",
                "steps[0].run"
            ]
        );
    }

    #[test]
    fn allow_rules_name_what_denies() {
        let allow = Allow {
            users: vec!["alice".into(), "aad:3a7c".into()],
            channels: vec!["ci".into()],
            teams: vec![],
            admins: vec!["root".into()],
        };
        let caller = |user: &str, channel: &str| Caller {
            user_id: format!("{user}-id"),
            user_name: user.into(),
            channel_name: channel.into(),
            ..Caller::default()
        };
        assert_eq!(allow.denies(&caller("alice", "ci")), None);
        assert_eq!(
            allow.denies(&caller("bob", "ci")).as_deref(),
            Some("bob is not in the job's allow.users")
        );
        assert_eq!(
            allow.denies(&caller("alice", "random")).as_deref(),
            Some("channel random is not in the job's allow.channels")
        );
        let teams_user = Caller {
            platform: crate::domain::Platform::Teams,
            user_id: "3a7c".into(),
            user_name: "Ada".into(),
            channel_name: "ci".into(),
            ..Caller::default()
        };
        assert_eq!(allow.denies(&teams_user), None);
        // A Teams display name is not an identity.
        let impostor = Caller {
            user_id: "other".into(),
            user_name: "alice".into(),
            ..teams_user
        };
        assert!(allow.denies(&impostor).is_some());
        assert!(allow.is_admin(&caller("root", "x")));
        assert!(!allow.is_admin(&caller("alice", "x")));
        assert_eq!(Allow::default().denies(&caller("anyone", "anywhere")), None);
    }

    #[test]
    fn rejects_unknown_keys_and_built_in_names() {
        let problems =
            parse_job("build", "[[steps]]\nnmae = \"x\"\n", Path::new(BASE)).unwrap_err();
        assert_eq!(problems[0].0, "steps[0].nmae", "{problems:?}");
        assert!(
            problems[0].1.contains("did you mean `name`?"),
            "{problems:?}"
        );
        let problems = parse_job(
            "help",
            "[[steps]]\nname = \"x\"\nrun = [\"true\"]\n",
            Path::new(BASE),
        )
        .unwrap_err();
        assert!(problems[0].1.contains("chat command"), "{problems:?}");
    }

    #[test]
    fn loads_the_example_jobs_shipped_in_the_repository() {
        let catalog = load(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/jobs"))).unwrap();
        assert!(catalog.get("build").is_some());
        assert!(catalog.len() >= 2);
    }
}
