//! History at scale: fills a database with one million runs, then times the pages people and
//! scripts ask for (first page, a deep page, filtered pages) through the same query the
//! history and `/api/runs` use. Prints median and p99, and the ratio to a bare
//! `select … order by run_id desc limit 50` measured in the same run.
//!
//!     cargo bench --bench history            (RUNS=200000 for a quicker look)

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
