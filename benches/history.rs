//! History at scale: fills a database with one million runs, then times the pages people and
//! scripts ask for (first page, a deep page, filtered pages) through the same query the
//! history and `/api/runs` use. Prints median and p99, and the ratio to a bare
//! `select … order by run_id desc limit 50` measured in the same run.
//!
//!     cargo bench --bench history            (RUNS=200000 for a quicker look)
//!
//! Test history (issue #24): `cargo bench --bench history -- tests` fills 10,000 finished runs
//! of one job (TEST_RUNS), a third of them with 300 failed tests, and times classing the 500
//! failures of a new run: writing its step (each failure finds its streak in the previous run)
//! next to the same write for a job without history, and reading them classed (the window's
//! failures read and compared) next to reading them bare.

use std::time::{Duration, Instant};

use chatrun::domain::{RunId, RunStatus};
use chatrun::store::{RunFilter, Store};

const PAGE: i64 = 50;
const ROUNDS: usize = 300;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

async fn time<F, Fut>(mut f: F) -> (Duration, Duration)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = usize>,
{
    // Warm the cache first: the figure is the steady state a busy server sees.
    for _ in 0..10 {
        f().await;
    }
    let mut times = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let start = Instant::now();
        let rows = f().await;
        times.push(start.elapsed());
        assert!(rows > 0, "a page with rows");
    }
    times.sort();
    (percentile(&times, 0.5), percentile(&times, 0.99))
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|arg| arg == "tests") {
        return test_history().await;
    }
    let runs: i64 = std::env::var("RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("a temporary folder");
    let url = format!("sqlite://{}/bench.db", dir.path().display());
    let store = Store::connect(&url).await.expect("the database opens");

    let fill = Instant::now();
    let pool = sqlx::SqlitePool::connect(&url)
        .await
        .expect("a second connection");
    sqlx::query(
        "with recursive n(i) as (select 1 union all select i + 1 from n where i < ?)
         insert into run (platform, channel_id, channel_name, user_id, user_name, message_id,
             message, job, args, status, ack_text, created_at, started_at, finished_at)
         select case i % 2 when 0 then 'mattermost' else 'teams' end,
                'c' || (i % 30), 'channel-' || (i % 30), 'u' || (i % 50), 'user-' || (i % 50),
                'm' || i, '#build', 'job-' || (i % 20), '',
                case i % 10 when 0 then 'failed' else 'succeeded' end, '',
                1700000000000 + i * 1000, 1700000000000 + i * 1000, 1700000000000 + i * 1000 + 5000
         from n",
    )
    .bind(runs)
    .execute(&pool)
    .await
    .expect("the runs are inserted");
    sqlx::query("analyze")
        .execute(&pool)
        .await
        .expect("analyze");
    println!("filled {runs} runs in {:.1?}", fill.elapsed());

    let (base_p50, base_p99) = time(|| {
        let pool = pool.clone();
        async move {
            let rows: Vec<(i64,)> =
                sqlx::query_as("select run_id from run order by run_id desc limit 50")
                    .fetch_all(&pool)
                    .await
                    .expect("baseline");
            rows.len()
        }
    })
    .await;

    let filtered = RunFilter {
        job: Some("job-10".into()),
        status: Some(RunStatus::Failed),
        user: Some("user-10".into()),
        ..RunFilter::default()
    };
    let by_user = RunFilter {
        user: Some("user-13".into()),
        ..RunFilter::default()
    };
    let by_time = RunFilter {
        since: Some(1700000000000 + (runs / 2) * 1000),
        until: Some(1700000000000 + (runs / 2 + 3600) * 1000),
        ..RunFilter::default()
    };
    let cases: Vec<(&str, RunFilter, Option<RunId>)> = vec![
        ("first page", RunFilter::default(), None),
        (
            "deep page (run_id < 1000)",
            RunFilter::default(),
            Some(RunId(1000)),
        ),
        ("filtered: job+status+user", filtered.clone(), None),
        (
            "filtered, deep (run_id < 100000)",
            filtered,
            Some(RunId(100_000)),
        ),
        ("filtered: user", by_user, Some(RunId(runs / 3))),
        ("filtered: one hour", by_time, None),
    ];
    println!(
        "{:<34} {:>10} {:>10} {:>12}",
        "page (50 runs)", "median", "p99", "p99/baseline"
    );
    println!(
        "{:<34} {:>10.2?} {:>10.2?} {:>12}",
        "baseline: bare select", base_p50, base_p99, "1.0"
    );
    for (name, filter, cursor) in cases {
        let (p50, p99) = time(|| {
            let store = store.clone();
            let filter = filter.clone();
            async move {
                store
                    .search_runs(&filter, cursor, PAGE)
                    .await
                    .expect("a page")
                    .len()
            }
        })
        .await;
        println!(
            "{name:<34} {p50:>10.2?} {p99:>10.2?} {:>12.1}",
            p99.as_secs_f64() / base_p99.as_secs_f64()
        );
    }
}

/// Classing a run's 500 failed tests against `TEST_RUNS` (10,000) finished runs of its job.
async fn test_history() {
    use chatrun::report::{FailedTest, TestSummary};
    use chatrun::store::samples::{claim, new_run};
    use chatrun::store::{JobSteps, NewRun, StepResult};

    let runs: i64 = std::env::var("TEST_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("a temporary folder");
    let url = format!("sqlite://{}/bench.db", dir.path().display());
    let store = Store::connect(&url).await.expect("the database opens");
    let pool = sqlx::SqlitePool::connect(&url)
        .await
        .expect("a second connection");

    // Runs 1..=runs of `web`: every third failed 300 tests, the next failed 5, the next
    // passed. The names shift with the run, so streaks start and end.
    let fill = Instant::now();
    for statement in [
        "with recursive n(i) as (select 1 union all select i + 1 from n where i < ?1)
         insert into run (platform, channel_id, channel_name, user_id, user_name, message_id,
             message, job, args, status, ack_text, created_at, started_at, finished_at)
         select 'mattermost', 'c', 'ci', 'u', 'alice', 'm' || i, '#web', 'web', '',
                case i % 3 when 2 then 'succeeded' else 'failed' end, '', i, i, i + 1
         from n",
        "insert into step (run_id, position, name, status, tests_run, tests_failed)
         select run_id, 0, 'Web', status, 1000,
                case run_id % 3 when 0 then 300 when 1 then 5 else 0 end
         from run where job = 'web'",
        "with recursive k(j) as (select 0 union all select j + 1 from k where j < 299)
         insert into test_failure (run_id, position, ordinal, suite, name, message, detail, since)
         select r.run_id, 0, k.j, 'web.api', 'test_' || (k.j + r.run_id % 7), 'boom', 'boom',
                r.run_id
         from run r join k on k.j < case r.run_id % 3 when 0 then 300 when 1 then 5 else 0 end
         where r.job = 'web'",
        "analyze",
    ] {
        sqlx::query(statement)
            .bind(runs)
            .execute(&pool)
            .await
            .expect("the history is filled");
    }
    let failures: i64 = sqlx::query_scalar("select count(*) from test_failure")
        .fetch_one(&pool)
        .await
        .expect("a count");
    println!(
        "filled {runs} finished runs of one job, {failures} failed tests, in {:.1?}",
        fill.elapsed()
    );

    // The run measured, of `web`, and one of a job without history; both running.
    let steps = JobSteps::new([("web", vec!["Web"]), ("fresh", vec!["Web"])]);
    let mut running = Vec::new();
    for job in ["web", "fresh"] {
        let new = NewRun {
            job: job.into(),
            message_id: format!("bench-{job}"),
            ..new_run("x")
        };
        store
            .insert_run(&new, 1, chatrun::store::samples::ack)
            .await
            .expect("a run");
        let run = store
            .try_claim(claim("bench", 2, i64::MAX, &steps))
            .await
            .expect("a claim")
            .expect("the run");
        running.push(run);
    }
    let step = StepResult {
        status: chatrun::domain::StepStatus::Failed,
        exit_code: Some(1),
        detail: None,
        finished_at: 3,
        tests: Some(TestSummary {
            tests: 1000,
            failed: 500,
            skipped: 0,
            duration_ms: 1,
            failures: (0..500)
                .map(|j| FailedTest {
                    suite: "web.api".into(),
                    name: format!("test_{j}"),
                    message: "boom".into(),
                    detail: "boom".into(),
                })
                .collect(),
            flaky: Vec::new(),
        }),
        report_error: None,
        output_tail: None,
    };
    let write = |run: RunId| {
        let (store, step) = (store.clone(), step.clone());
        async move {
            store.finish_step(run, 0, &step).await.expect("the step");
            500
        }
    };
    let (fresh_p50, fresh_p99) = time(|| write(running[1].run_id)).await;
    let (web_p50, web_p99) = time(|| write(running[0].run_id)).await;
    let run = store
        .get_run(running[0].run_id)
        .await
        .expect("the run")
        .expect("the run");
    let (bare_p50, bare_p99) = time(|| {
        let store = store.clone();
        async move {
            store
                .test_failures(RunId(runs + 1))
                .await
                .expect("failures")
                .len()
        }
    })
    .await;
    let (class_p50, class_p99) = time(|| {
        let (store, run) = (store.clone(), run.clone());
        async move {
            let failures = store
                .classified_failures(&run, chatrun::domain::DEFAULT_FLAKY_WINDOW)
                .await
                .expect("failures");
            assert!(failures.iter().all(|f| f.class.is_some()));
            failures.len()
        }
    })
    .await;
    let classed = store
        .classified_failures(&run, chatrun::domain::DEFAULT_FLAKY_WINDOW)
        .await
        .expect("failures");
    let count = |token: &str| {
        classed
            .iter()
            .filter(|f| f.class.is_some_and(|c| c.token() == token))
            .count()
    };
    println!(
        "the run's 500 failures: {} new, {} still failing, {} flaky",
        count("new"),
        count("still_failing"),
        count("flaky")
    );
    println!(
        "{:<52} {:>10} {:>10} {:>12}",
        "500 failed tests", "median", "p99", "p99/baseline"
    );
    for (name, p50, p99, base) in [
        (
            "baseline: write the step, job without history",
            fresh_p50,
            fresh_p99,
            fresh_p99,
        ),
        (
            "write the step, each failure finding its streak",
            web_p50,
            web_p99,
            fresh_p99,
        ),
        ("baseline: read the failures", bare_p50, bare_p99, bare_p99),
        (
            "read them classed (window of 10 runs)",
            class_p50,
            class_p99,
            bare_p99,
        ),
    ] {
        println!(
            "{name:<52} {p50:>10.2?} {p99:>10.2?} {:>12.1}",
            p99.as_secs_f64() / base.as_secs_f64()
        );
    }
}
