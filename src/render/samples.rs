//! Sample runs for rendering tests: the same data feeds the Mattermost, Teams and Slack
//! fixtures.

use crate::domain::{RunId, RunRow, RunStatus, StepRow, StepStatus, TestFailureRow};

/// Run #42 of `build`, asked by alice, 3.5 s long.
pub fn run(status: RunStatus) -> RunRow {
    RunRow {
        run_id: RunId(42),
        origin: crate::domain::Origin {
            platform: crate::domain::Platform::Mattermost,
            team_id: String::new(),
            team_name: String::new(),
            channel_id: "c1".into(),
            channel_name: "ci".into(),
            user_id: "u1".into(),
            user_name: "alice".into(),
        },
        message_id: "p1".into(),
        thread_root_id: None,
        thread_unsettled: false,
        message: "#build".into(),
        job: "build".into(),
        args: String::new(),
        hook: String::new(),
        status,
        attempt: 1,
        ack_text: String::new(),
        error: None,
        log_head: String::new(),
        log_tail: String::new(),
        log_bytes: 0,
        log_lines: 0,
        log_path: None,
        created_at: 0,
        started_at: Some(1_000),
        finished_at: Some(4_500),
        agent: None,
        back_to_green: None,
    }
}

/// A step that ran 0.9 s (unless skipped), without test reports.
pub fn step(position: i64, name: &str, status: StepStatus, exit_code: Option<i64>) -> StepRow {
    let ran = status != StepStatus::Skipped;
    StepRow {
        status,
        exit_code,
        started_at: ran.then_some(1_000 + position * 1000),
        finished_at: ran.then_some(1_900 + position * 1000),
        ..StepRow::pending(RunId(42), position, name)
    }
}

/// A step whose report counted `run` tests, `failed` of them failed.
pub fn tested(position: i64, name: &str, run: i64, failed: i64) -> StepRow {
    let (status, exit_code) = if failed > 0 {
        (StepStatus::Failed, Some(1))
    } else {
        (StepStatus::Succeeded, Some(0))
    };
    StepRow {
        tests_run: Some(run),
        tests_failed: Some(failed),
        tests_skipped: Some(0),
        tests_duration_ms: Some(run),
        ..step(position, name, status, exit_code)
    }
}

/// `n` failed tests of step `position`.
pub fn failures(position: i64, suite: &str, n: usize) -> Vec<TestFailureRow> {
    (1..=n)
        .map(|i| TestFailureRow {
            position,
            suite: suite.into(),
            name: format!("test_case_{i}"),
            message: format!("assertion failed: expected 200, got 500 (case {i})"),
            detail: format!(
                "assertion failed: expected 200, got 500 (case {i})\nat src/api.rs:{i}"
            ),
            since: None,
            passed_on_retry: false,
            class: None,
        })
        .collect()
}

/// The rendering fixtures: `(name, run, steps, failed tests)`.
pub fn scenarios() -> Vec<(&'static str, RunRow, Vec<StepRow>, Vec<TestFailureRow>)> {
    let mut without_report = step(2, "Packaging", StepStatus::Failed, Some(2));
    without_report.output_tail = Some(
        "==> packaging build #42\n\u{1b}[31merror\u{1b}[0m: signing key not found\nsee ```docs``` for help"
            .replace("\u{1b}[31m", "")
            .replace("\u{1b}[0m", ""),
    );
    let mut missing = step(1, "Web Client", StepStatus::Succeeded, Some(0));
    missing.report_error =
        Some("report missing: no file matches `reports/web.xml` in /srv/jobs".into());
    vec![
        (
            "passing",
            run(RunStatus::Succeeded),
            vec![
                tested(0, "Server", 948, 0),
                tested(1, "Web Client", 123, 0),
                tested(2, "iOS Client", 78, 0),
            ],
            Vec::new(),
        ),
        (
            "failing",
            run(RunStatus::Failed),
            vec![
                tested(0, "Server", 948, 0),
                tested(1, "Web Client", 123, 2),
                tested(2, "iOS Client", 78, 3),
            ],
            [failures(1, "web.api", 2), failures(2, "ios.api", 3)].concat(),
        ),
        (
            "500-failures",
            run(RunStatus::Failed),
            vec![tested(0, "Server", 2000, 500)],
            // Classed, as they are once the job has history: the tags must fit too.
            classed(failures(0, "server.api", 500)),
        ),
        (
            "no-report",
            run(RunStatus::Failed),
            vec![tested(0, "Server", 948, 0), missing, without_report],
            Vec::new(),
        ),
        (
            "history",
            run(RunStatus::Failed),
            vec![tested(0, "Server", 948, 0), tested(1, "Web Client", 123, 3)],
            // Three classed failures, and one test that passed on a retry.
            [
                classed(failures(1, "web.api", 3)),
                failures(1, "web.retry", 1)
                    .into_iter()
                    .map(|f| TestFailureRow {
                        passed_on_retry: true,
                        class: Some(crate::domain::FailureClass::Flaky),
                        ..f
                    })
                    .collect(),
            ]
            .concat(),
        ),
    ]
}

/// `failures` classed in report order as flaky, still failing since #38 and new (a reply
/// lists them the other way round).
fn classed(mut failures: Vec<TestFailureRow>) -> Vec<TestFailureRow> {
    use crate::domain::FailureClass;
    let classes = [
        FailureClass::Flaky,
        FailureClass::StillFailing { since: RunId(38) },
        FailureClass::New,
    ];
    for (failure, class) in failures.iter_mut().zip(classes.into_iter().cycle()) {
        failure.since = Some(RunId(42));
        failure.class = Some(class);
    }
    failures
}

/// Compares rendered text with the checked-in file `dir/name` (`dir` under
/// `tests/fixtures/`); `UPDATE_FIXTURES=1` rewrites the file (then review the diff).
#[cfg(test)]
pub fn assert_matches_fixture(actual: &str, dir: &str, name: &str) {
    let path = format!("{}/tests/fixtures/{dir}/{name}", env!("CARGO_MANIFEST_DIR"));
    if std::env::var_os("UPDATE_FIXTURES").is_some() {
        std::fs::write(&path, format!("{actual}\n")).unwrap();
    }
    let expected = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        actual,
        expected.trim_end_matches('\n'),
        "differs from {path}"
    );
}
