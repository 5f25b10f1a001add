//! Job output and misbehaving steps: a step that prints 1 GiB leaves a capped log with its head,
//! a marker with the exact count, and its tail; a run past the cap is followed live; steps that
//! close their output, ignore SIGTERM or fork into the background are stopped with none of
//! their processes left.

use std::time::Duration;

use chatrun::domain::{RunId, RunRow};
use chatrun::logs::{Cap, DEFAULT_MAX_LOG_BYTES};

use crate::helpers::{TestApp, spawn_app_with, start_with};

/// Waits up to `limit` for `check` to give a value (1 GiB through a debug build on a shared
/// machine takes longer than the helpers' usual deadline).
async fn wait_within<T, F, Fut>(limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn finished_within(app: &TestApp, id: i64, limit: Duration) -> RunRow {
    wait_within(limit, || async {
        let run = app.store.get_run(RunId(id)).await.unwrap()?;
        run.status.is_finished().then_some(run)
    })
    .await
}

/// 8388608 lines of 128 bytes: 1 GiB, written 1 MiB at a time.
const FLOOD_JOB: &str = r#"
timeout = "10m"
[[steps]]
name = "First"
run = ["echo", "FIRST LINE"]
[[steps]]
name = "Flood"
run = ["perl", "-e", "$l = ('x' x 127) . qq(\n); $m = $l x 8192; print $m for 1 .. 1024"]
[[steps]]
name = "Last"
run = ["echo", "LAST LINE"]
"#;

#[tokio::test]
async fn a_step_printing_1_gib_leaves_a_capped_log_with_head_marker_and_tail() {
    let app = spawn_app_with(&[("flood", FLOOD_JOB)]).await;
    app.trigger("#flood", "floodpost1").await;
    let run = finished_within(&app, 1, Duration::from_secs(600)).await;
    assert_eq!(run.status.as_str(), "succeeded", "{run:?}");

    // The database counts what was printed: 1 GiB and chatrun's notes.
    let printed = u64::try_from(run.log_bytes).unwrap();
    assert!(
        (1 << 30) < printed && printed < (1 << 30) + 1024,
        "{printed}"
    );
    assert!(run.log_lines > 8_388_608 + 2, "{}", run.log_lines);

    // The file holds the head, one marker with the exact count, and the tail.
    let path = app.dir.path().join("data/logs/1.log");
    let file = std::fs::read(&path).unwrap();
    assert!(file.len() as u64 <= DEFAULT_MAX_LOG_BYTES, "{}", file.len());
    let cap = Cap::new(DEFAULT_MAX_LOG_BYTES);
    let omitted = printed - cap.head - cap.tail;
    let text = String::from_utf8(file.clone()).unwrap();
    let marker = format!("[chatrun: {omitted} bytes omitted]\n");
    assert_eq!(text.matches("[chatrun: ").count(), 1);
    let at = text.find(&marker).expect("the marker");
    assert!(
        text[..at].ends_with('\n'),
        "the marker is a line of its own"
    );
    let (head, tail) = (cap.head as usize, cap.tail as usize);
    assert!(
        at == head || (at == head + 1 && file[head - 1] != b'\n'),
        "{at}"
    );
    assert_eq!(file.len() - at - marker.len(), tail);
    assert!(text.contains("FIRST LINE\n"));
    assert!(
        text.ends_with("LAST LINE\n[chatrun] Last: succeeded\n"),
        "{}",
        &text[text.len() - 300..]
    );
    assert!(!app.dir.path().join("data/logs/1.log.parts").exists());

    // The database's head and tail are the file's, and the tail's lines keep their numbers.
    assert!(text.starts_with(&run.log_head));
    assert!(text.ends_with(&run.log_tail));
    let page = app.get("/runs/1").await.text().await.unwrap();
    assert!(
        page.contains("1.0 GiB printed, 10 MiB kept"),
        "the page says what was kept"
    );
    assert!(page.contains("FIRST LINE") && page.contains("LAST LINE"));
    let last = run.log_lines;
    assert!(
        page.contains(&format!(
            r##"<span class="line" id="L{last}"><a class="ln" href="#L{last}">{last}</a>[chatrun] Last: succeeded"##
        )),
        "the last line is numbered as printed"
    );

    // The API serves the marker where the page's gap is, and the whole file.
    let offset = at - 100;
    let chunk: serde_json::Value = app
        .get(&format!("/api/runs/1/log?offset={offset}&length=200"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(chunk["size"], file.len());
    assert!(chunk["text"].as_str().unwrap().contains(marker.trim_end()));
    let whole = app.get("/runs/1/log").await.bytes().await.unwrap();
    assert_eq!(whole.len(), file.len());
}

/// Prints 100000 numbered lines (588895 bytes), then waits for the file `go` in its folder.
const PAUSE_JOB: &str = r#"
timeout = "1m"
[[steps]]
name = "Count"
run = ["sh", "-c", "seq 1 100000; while [ ! -e go ]; do sleep 0.05; done; echo done"]
"#;

#[tokio::test]
async fn a_run_past_the_cap_shows_its_latest_lines_live_numbered_as_printed() {
    let app = spawn_app_with(&[]).await;
    let (dir, mattermost) = app.stop().await;
    let app = start_with(
        dir,
        mattermost,
        &[("pause", PAUSE_JOB)],
        "max_log_bytes = 65536",
    )
    .await;
    app.trigger("#pause", "pausepost1").await;

    // Line 1 is chatrun's note of the step, so "100000" is line 100001.
    let last =
        r##"<span class="line" id="L100001"><a class="ln" href="#L100001">100001</a>100000"##;
    let page = wait_within(Duration::from_secs(30), || async {
        let page = app.get("/runs/1").await.text().await.unwrap();
        page.contains(last).then_some(page)
    })
    .await;
    assert!(
        page.contains(
            "The output has passed 64 KiB: the log will keep its first 32 KiB and its last 32 KiB."
        ),
        "the page says what the log keeps"
    );

    // The stream from the start: the head, the marker for what is no longer kept, then the
    // latest lines with their printed numbers.
    let mut stream = reqwest::get(format!("{}/runs/1/log/stream", app.base))
        .await
        .unwrap();
    let mut text = String::new();
    loop {
        let chunk = stream.chunk().await.unwrap().expect("the stream goes on");
        // Only the new text (and a little before it) is searched: the stream has 10000 events.
        let from = text.len().saturating_sub(16);
        text.push_str(&String::from_utf8_lossy(&chunk));
        if text[from..].contains("data: 100000\n") {
            break;
        }
    }
    drop(stream);
    let events: Vec<(String, String, String)> = text
        .split("\n\n")
        .filter(|block| block.contains("data:"))
        .map(|block| {
            let field = |name: &str| {
                block
                    .lines()
                    .find_map(|l| l.strip_prefix(name))
                    .unwrap_or_default()
                    .trim_start()
                    .to_string()
            };
            (field("event:"), field("id:"), field("data:"))
        })
        .collect();
    assert_eq!(events[1].2, "1");
    let gaps: Vec<&(String, String, String)> = events.iter().filter(|e| e.0 == "gap").collect();
    assert_eq!(gaps.len(), 1, "{gaps:?}");
    let (offset, line) = gaps[0].1.split_once(':').unwrap();
    let (offset, line): (u64, u64) = (offset.parse().unwrap(), line.parse().unwrap());
    let before = events.iter().take_while(|e| e.0 != "gap").last().unwrap();
    let resumed_at: u64 = before.1.split_once(':').unwrap().0.parse().unwrap();
    assert_eq!(
        gaps[0].2,
        format!("[chatrun: {} bytes omitted]", offset - resumed_at)
    );
    assert!(line > 90_000, "{line}");
    let last_event = events.last().unwrap();
    assert_eq!(last_event.1.split_once(':').unwrap().1, "100001");

    // Once it ends, the log keeps its head and tail, and the page says so.
    std::fs::write(app.dir.path().join("jobs/go"), "").unwrap();
    let run = finished_within(&app, 1, Duration::from_secs(30)).await;
    assert_eq!(run.status.as_str(), "succeeded");
    let file = std::fs::read_to_string(app.dir.path().join("data/logs/1.log")).unwrap();
    assert!(file.len() <= 65536, "{}", file.len());
    assert!(file.ends_with("100000\ndone\n[chatrun] Count: succeeded\n"));
    let page = app.get("/runs/1").await.text().await.unwrap();
    assert!(page.contains("575 KiB printed, 64 KiB kept"), "{page}");
}

/// Whether any process has `tag` in its command line.
fn alive(tag: &str) -> bool {
    !tagged(tag).is_empty()
}

/// The processes whose command line contains `tag`.
fn tagged(tag: &str) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|e| {
            let pid = e.file_name().to_string_lossy().parse::<i32>().ok()?;
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            String::from_utf8_lossy(&cmdline)
                .contains(tag)
                .then_some(pid)
        })
        .collect()
}

/// Kills the processes tagged with its tag when dropped, so a test that fails midway leaves
/// none of them running (a later run would find them).
struct KillTagged(&'static str);

impl Drop for KillTagged {
    fn drop(&mut self) {
        for pid in tagged(self.0) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// A job running `script` with a 2 s timeout.
fn job(script: &str) -> String {
    format!(
        "timeout = \"2s\"\n[[steps]]\nname = \"Stubborn\"\nrun = [\"sh\", \"-c\", {script:?}]\n"
    )
}

/// Runs `script` (tagged `tag`), checks its processes ran, and that none is left once the
/// run has ended with `status`.
async fn none_left(script: &str, tag: &'static str, status: &str) -> RunRow {
    assert!(script.contains(tag) && !alive(tag));
    let _left = KillTagged(tag);
    let app = spawn_app_with(&[("stubborn", &job(script))]).await;
    app.trigger("#stubborn", "stubbornpost1").await;
    if status == "timed out" {
        wait_within(Duration::from_secs(30), || async {
            alive(tag).then_some(())
        })
        .await;
    }
    let run = finished_within(&app, 1, Duration::from_secs(30)).await;
    assert_eq!(run.status.as_str(), status, "{run:?}");
    wait_within(Duration::from_secs(10), || async {
        (!alive(tag)).then_some(())
    })
    .await;
    run
}

#[tokio::test]
async fn a_step_that_closes_its_output_but_keeps_running_is_stopped_at_timeout() {
    none_left("exec >&- 2>&-; sleep 300.7301", "300.7301", "timed out").await;
}

#[tokio::test]
async fn a_step_that_ignores_sigterm_is_killed_after_the_grace_period() {
    let run = none_left(
        "trap '' TERM; echo ignoring; sleep 300.7302; echo survived",
        "300.7302",
        "timed out",
    )
    .await;
    assert!(
        run.log_head.contains("ignoring") && !run.log_head.contains("\nsurvived"),
        "{}",
        run.log_head
    );
}

#[tokio::test]
async fn a_step_waiting_for_its_background_children_is_stopped_at_timeout() {
    none_left(
        "sleep 300.7303 & (trap '' TERM; sleep 300.7303) & wait",
        "300.7303",
        "timed out",
    )
    .await;
}

#[tokio::test]
async fn what_a_step_leaves_in_the_background_is_killed_when_it_exits() {
    // The step is over when its own process exits: its result counts, and its group is
    // killed then, pipes held open by a child that ignores SIGTERM or not.
    let run = none_left(
        "(trap '' TERM; exec sleep 300.7304) & echo started $!",
        "300.7304",
        "succeeded",
    )
    .await;
    assert!(run.log_head.contains("started "), "{}", run.log_head);
}

#[tokio::test]
async fn a_process_that_leaves_the_group_escapes_and_its_output_stops_being_read() {
    // Out of chatrun's reach (documented): no cgroup contains it. The step still ends, and the
    // log says why its output was cut off.
    let tag = "300.7305";
    let escaped = KillTagged(tag);
    let app = spawn_app_with(&[(
        "escape",
        &job("setsid sh -c 'touch escaped; exec sleep 300.7305' & \
             while [ ! -e escaped ]; do sleep 0.05; done; echo started"),
    )])
    .await;
    app.trigger("#escape", "escapepost1").await;
    let run = finished_within(&app, 1, Duration::from_secs(30)).await;
    let pids = tagged(tag);
    drop(escaped);
    assert_eq!(pids.len(), 1, "the escaped process ran: {pids:?}");
    assert_eq!(run.status.as_str(), "succeeded", "{run:?}");
    assert!(
        run.log_head.contains("started\n") && run.log_head.contains("a process left its group"),
        "{}",
        run.log_head
    );
    wait_within(Duration::from_secs(10), || async {
        (!alive(tag)).then_some(())
    })
    .await;
}
