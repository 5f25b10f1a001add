//! The command line as a newcomer uses it: `check` and `trigger` against a running chatrun.

use std::process::Output;

use crate::helpers::{BUILD_JOB, TEAMS_TOKEN, TOKEN, spawn_app, spawn_app_with};

/// Runs the binary without blocking the test's runtime (the server under test shares it).
async fn chatrun(dir: &std::path::Path, args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_chatrun"))
        .args(args)
        .current_dir(dir)
        .env("RUST_LOG", "off")
        .output()
        .await
        .expect("the chatrun binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn check_lists_every_problem_of_config_and_jobs_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("jobs")).unwrap();
    std::fs::write(
        dir.path().join("jobs/build.toml"),
        "timeout = \"soon\"\n[[steps]]\nname = \"x\"\nrun = []\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("jobs/ok.toml"),
        "[[steps]]\nname = \"x\"\nrun = [\"true\"]\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("chatrun.toml"), "workers = 300\n").unwrap();

    let output = chatrun(dir.path(), &["check"]).await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("chatrun.toml: workers: 300 is out of range"),
        "{stderr}"
    );

    std::fs::write(dir.path().join("chatrun.toml"), "").unwrap();
    let output = chatrun(dir.path(), &["check"]).await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("2 problem(s)"), "{stderr}");
    assert!(
        stderr.contains("build.toml: timeout: `soon` is not a duration"),
        "{stderr}"
    );
    assert!(
        stderr.contains("build.toml: steps[0].run: must be a non-empty argv list"),
        "{stderr}"
    );

    std::fs::remove_file(dir.path().join("jobs/build.toml")).unwrap();
    let output = chatrun(dir.path(), &["check"]).await;
    assert!(output.status.success(), "{output:?}");
    assert!(stdout(&output).contains("ok; 1 job(s)"));
}

#[tokio::test]
async fn check_reports_every_unknown_key_and_the_jobs_despite_a_bad_config() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("jobs")).unwrap();
    std::fs::write(
        dir.path().join("jobs/build.toml"),
        "timeout = 600
descriptoin = \"x\"\n[[steps]]\nnme = \"x\"\nrun = [\"true\"]\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("jobs/deploy.yml"), "steps: []\n").unwrap();
    std::fs::write(
        dir.path().join("chatrun.toml"),
        "wrokers = 2\nlisten_addr = \"x\"\n[mattermost]\ntoken = [\"t\"]\n",
    )
    .unwrap();

    let output = chatrun(dir.path(), &["check"]).await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    for expected in [
        "chatrun.toml: wrokers: unknown key; did you mean `workers`?",
        "chatrun.toml: listen_addr: unknown key",
        "chatrun.toml: mattermost.token: unknown key; did you mean `tokens`?",
        "build.toml: descriptoin: unknown key; did you mean `description`?",
        "build.toml: steps[0].nme: unknown key; did you mean `name`?",
        "build.toml: timeout: `600` has no unit: write a duration such as \"600s\"",
        "warning: jobs/deploy.yml: not a .toml file, so not a job",
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected:?} in:\n{stderr}"
        );
    }
}

#[tokio::test]
async fn trigger_sends_a_mattermost_webhook_and_prints_the_acknowledgement() {
    let broken = "description = \"Fails\"\n[[steps]]\nname = \"Fail\"\nrun = [\"false\"]\n";
    let app = spawn_app_with(&[("build", BUILD_JOB), ("broken", broken)]).await;
    let url = format!("{}/hooks/mattermost", app.base);
    let dir = tempfile::tempdir().unwrap();

    let output = chatrun(
        dir.path(),
        &[
            "trigger", "--url", &url, "--token", TOKEN, "--user", "zoe", "#build",
        ],
    )
    .await;

    assert!(output.status.success(), "{output:?}");
    assert!(
        stdout(&output)
            .starts_with(":hourglass_flowing_sand: Queued run **#1** of **build** (branch=main target=all), asked by @zoe"),
        "{output:?}"
    );
    let run = app.finished_run(1).await;
    assert_eq!(run.status.as_str(), "succeeded");

    // --wait follows the run and prints its result as the chat shows it.
    let output = chatrun(
        dir.path(),
        &[
            "trigger", "--url", &url, "--token", TOKEN, "--wait", "#build",
        ],
    )
    .await;
    assert!(output.status.success(), "{output:?}");
    let printed = stdout(&output);
    assert!(printed.contains("Queued run **#2**"), "{printed}");
    assert!(printed.contains("**build** run #2 succeeded"), "{printed}");
    assert!(
        printed.contains(&format!("{}/runs/2", app.base)),
        "{printed}"
    );
    let progress = String::from_utf8_lossy(&output.stderr);
    assert!(progress.contains("run #2: succeeded"), "{progress}");
    // A run that fails exits 1, with its result.
    let output = chatrun(
        dir.path(),
        &[
            "trigger", "--url", &url, "--token", TOKEN, "--wait", "#broken",
        ],
    )
    .await;
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(
        stdout(&output).contains("**broken** run #3 failed"),
        "{output:?}"
    );

    let output = chatrun(
        dir.path(),
        &["trigger", "--url", &url, "--token", "wrong", "#build"],
    )
    .await;
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("401"),
        "{output:?}"
    );
}

#[tokio::test]
async fn trigger_can_send_a_signed_teams_activity() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("jobs")).unwrap();
    std::fs::write(
        dir.path().join("chatrun.toml"),
        format!("[[teams.webhooks]]\nname = \"platform-team\"\nsecret = \"{TEAMS_TOKEN}\"\n"),
    )
    .unwrap();
    let url = format!("{}/hooks/teams/platform-team", app.base);

    let output = chatrun(
        dir.path(),
        &[
            "trigger",
            "--teams",
            "platform-team",
            "--url",
            &url,
            "--user",
            "ada",
            "build",
            "web",
        ],
    )
    .await;

    assert!(output.status.success(), "{output:?}");
    assert!(
        stdout(&output).starts_with(
            "⏳ Queued run **#1** of **build** (branch=main target=web), asked by ada"
        ),
        "{output:?}"
    );
    let run = app.finished_run(1).await;
    assert_eq!(
        (run.origin.platform.as_str(), run.args.as_str()),
        ("teams", "branch=main target=web")
    );

    let output = chatrun(dir.path(), &["trigger", "--teams", "nobody", "build"]).await;
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("configured: platform-team"),
        "{output:?}"
    );
}
