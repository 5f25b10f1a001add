//! Micro-benchmarks of the pure functions on the hot paths: what every trigger costs before its
//! run is stored (HMAC verification, payload parsing, mention stripping, command parsing, the
//! acknowledgement) and what every finished run costs (the result reply and card).
//!
//! Inputs are the protocol samples in `tests/fixtures/` and the sample runs of
//! `chatrun::render::samples`, the same data the rendering tests check.
//!
//!     cargo bench --bench micro                  (about a minute)
//!     cargo bench --bench micro -- teams         (only the names containing `teams`)

use std::hint::black_box;
use std::time::Duration;

use chatrun::chat::{mattermost, teams};
use chatrun::domain;
use chatrun::domain::{AckFacts, RunId};
use chatrun::render::samples;
use criterion::{Criterion, criterion_group, criterion_main};

const JOBS: &[&str] = &["build", "test", "deploy", "lint", "release", "docs"];
const LINK: &str = "http://ci.example.com/runs/42";

fn fixture(path: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|err| panic!("{path}: {err}"))
}

/// Teams: one configured webhook, and five (every key is tried, so five cost five MACs).
fn hmac(c: &mut Criterion) {
    let body = fixture("teams/sample1.json");
    let keys: Vec<Vec<u8>> = (0..5u8).map(|i| vec![b'k' + i; 32]).collect();
    let last = keys.last().expect("five keys");
    let authorization = teams::sign(last, &body);
    let one: Vec<&[u8]> = vec![last.as_slice()];
    let five: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();

    let mut group = c.benchmark_group("teams_verify");
    group.bench_function("1_key", |b| {
        b.iter(|| teams::verify(Some(black_box(&authorization)), black_box(&body), &one))
    });
    group.bench_function("5_keys", |b| {
        b.iter(|| teams::verify(Some(black_box(&authorization)), black_box(&body), &five))
    });
    group.finish();
}

fn parsing(c: &mut Criterion) {
    let form = fixture("mattermost/form-exact.txt");
    let json = fixture("mattermost/json.json");
    let activity = fixture("teams/sample1.json");

    let mut group = c.benchmark_group("parse");
    group.bench_function("mattermost_form", |b| {
        b.iter(|| {
            mattermost::parse_payload(Some("application/x-www-form-urlencoded"), black_box(&form))
                .expect("the form sample parses")
        })
    });
    group.bench_function("mattermost_json", |b| {
        b.iter(|| {
            mattermost::parse_payload(Some("application/json"), black_box(&json))
                .expect("the JSON sample parses")
        })
    });
    group.bench_function("teams_activity", |b| {
        b.iter(|| teams::parse_activity(black_box(&activity)).expect("the sample parses"))
    });
    group.finish();
}

fn commands(c: &mut Criterion) {
    let text = "<at>BuildBot</at>&nbsp;build api-server main\n";
    let mut group = c.benchmark_group("command");
    group.bench_function("teams_command_text", |b| {
        b.iter(|| teams::command_text(black_box(text), Some("BuildBot")))
    });
    group.bench_function("parse_command_job", |b| {
        b.iter(|| domain::parse_command(black_box("#build api-server branch=main"), JOBS))
    });
    group.bench_function("parse_command_typo", |b| {
        // The slow path: a mistyped trigger word is compared with every name.
        b.iter(|| domain::parse_command(black_box("#biuld"), JOBS))
    });
    group.bench_function("parse_after_trigger_status", |b| {
        b.iter(|| domain::parse_after_trigger(black_box("status 42"), JOBS))
    });
    group.bench_function("parse_after_trigger_job", |b| {
        b.iter(|| domain::parse_after_trigger(black_box("build api-server main"), JOBS))
    });
    group.finish();
}

fn replies(c: &mut Criterion) {
    let mut group = c.benchmark_group("render");
    let facts = AckFacts {
        run_id: RunId(42),
        job: "build",
        user: "alice",
        place: 1,
        starts_now: false,
        wait: Some(3_500),
        args: "api-server",
        no_agent: None,
    };
    group.bench_function("mattermost_ack", |b| {
        b.iter(|| mattermost::render_ack(black_box(&facts), LINK))
    });
    group.bench_function("teams_ack", |b| {
        b.iter(|| teams::render_ack(black_box(&facts), LINK))
    });
    for (name, run, steps, failures) in samples::scenarios() {
        if name == "no-report" {
            continue;
        }
        group.bench_function(format!("mattermost_result_{name}"), |b| {
            b.iter(|| mattermost::render_result(black_box(&run), &steps, &failures, LINK, 9_999))
        });
        // The card as it is sent: built, then serialised into the delivery's body.
        group.bench_function(format!("teams_card_{name}"), |b| {
            b.iter(|| {
                serde_json::to_string(&teams::render_result(
                    black_box(&run),
                    &steps,
                    &failures,
                    LINK,
                    9_999,
                ))
                .expect("a card serialises")
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = micro;
    // Short windows: these functions take micro- or nanoseconds, a second is plenty of samples.
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = hmac, parsing, commands, replies
}
criterion_main!(micro);
