//! Output at scale: the real `chatrun serve` runs a job whose step prints 1 GiB as fast as it
//! can. Prints chatrun's peak memory (`VmHWM` of /proc/<pid>/status) and the wall time from the
//! trigger to the result, next to the same command writing to /dev/null directly, measured in
//! the same run. Targets (issues #8, #18): under 64 MiB; within 1.5x of the same output through a pipe to `cat`.
//!
//!     cargo bench --bench output              (MIB=256 for a quicker look; SECRET=1 to mask)

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::Command;

#[path = "common/mod.rs"]
mod common;

/// Prints `mib` MiB in lines of 128 bytes, 1 MiB per write, as fast as perl can.
fn flood(mib: u64) -> Vec<String> {
    vec![
        "perl".into(),
        "-e".into(),
        format!("$l = ('x' x 127) . qq(\\n); $m = $l x 8192; print $m for 1 .. {mib}"),
    ]
}

/// `VmHWM` (peak resident memory) of a process, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the process runs");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("a VmHWM line")
}

fn mib(bytes: f64) -> String {
    format!("{:.1} MiB", bytes / 1024.0 / 1024.0)
}

async fn get_json(client: &reqwest::Client, url: &str) -> Option<serde_json::Value> {
    client.get(url).send().await.ok()?.json().await.ok()
}

async fn chatrun(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(common::chatrun_bin())
        .args(args)
        .current_dir(dir)
        .env_remove("CHATRUN_BIN")
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("chatrun runs")
}

#[tokio::main]
async fn main() {
    let size: u64 = std::env::var("MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let secret = std::env::var("SECRET").is_ok_and(|v| v == "1");
    let argv = flood(size);
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("a temporary folder");
    std::fs::create_dir(dir.path().join("jobs")).expect("the jobs folder");
    let quoted: Vec<String> = argv.iter().map(|a| format!("{a:?}")).collect();
    let mut job = format!(
        "timeout = \"30m\"\n[[steps]]\nname = \"Flood\"\nrun = [{}]\n",
        quoted.join(", ")
    );
    if secret {
        // Never printed: the masking is what is measured.
        job = format!(
            "secret_env = [\"BENCH_TOKEN\"]\n{job}env = {{ BENCH_TOKEN = \"s3cr3t-value-0123456789\" }}\n"
        );
    }
    std::fs::write(dir.path().join("jobs/flood.toml"), job).expect("the job");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    std::fs::write(
        dir.path().join("chatrun.toml"),
        format!("listen = \"127.0.0.1:{port}\"\nworkers = 1\n"),
    )
    .expect("the configuration");

    let mut server = Command::new(common::chatrun_bin())
        .args(["serve", "--config", "chatrun.toml"])
        .current_dir(dir.path())
        // chatrun reads every CHATRUN_ variable as a setting, and has none by that name.
        .env_remove("CHATRUN_BIN")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("chatrun serve starts");
    let pid = server.id().expect("a pid");
    // reqwest is built without a TLS provider; chatrun brings ring (plain HTTP here anyway).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    while client.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "chatrun did not start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let idle = peak_rss_kib(pid);
    let (cpu_before, _) = common::cpu_secs(pid);

    let trigger = Instant::now();
    let output = chatrun(
        dir.path(),
        &[
            "trigger",
            "--config",
            "chatrun.toml",
            "--user",
            "bench",
            "#flood",
        ],
    )
    .await;
    assert!(output.status.success(), "{output:?}");
    let run = loop {
        if let Some(run) = get_json(&client, &format!("{base}/api/runs/1")).await
            && !run["run"]["finished_at"].is_null()
        {
            break run;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let through = trigger.elapsed();
    let peak = peak_rss_kib(pid);
    let cpu = common::cpu_secs(pid).0 - cpu_before;
    let _ = server.kill().await;
    assert_eq!(run["run"]["status"], "succeeded", "{run}");
    let kept = std::fs::metadata(dir.path().join("data/logs/1.log"))
        .expect("the log file")
        .len();

    let direct = Instant::now();
    let status = Command::new(&argv[0])
        .args(&argv[1..])
        .stdout(Stdio::from(
            std::fs::File::create("/dev/null").expect("/dev/null"),
        ))
        .status()
        .await
        .expect("the command runs");
    assert!(status.success());
    let baseline = direct.elapsed();

    // The cost of a pipe alone: the same command read by `cat` writing to /dev/null.
    let piped = Instant::now();
    let mut producer = Command::new(&argv[0])
        .args(&argv[1..])
        .stdout(Stdio::piped())
        .spawn()
        .expect("the command runs");
    let pipe: Stdio = producer
        .stdout
        .take()
        .expect("a pipe")
        .try_into()
        .expect("a pipe for cat");
    let cat = Command::new("cat")
        .stdin(pipe)
        .stdout(Stdio::from(
            std::fs::File::create("/dev/null").expect("/dev/null"),
        ))
        .status();
    let (cat, produced) = tokio::join!(cat, producer.wait());
    assert!(cat.expect("cat runs").success() && produced.expect("it runs").success());
    let through_pipe = piped.elapsed();

    println!(
        "{size} MiB printed{}: {:.2} s from trigger to result; to /dev/null directly: {:.2} s; ratio {:.2}x (for reference: writing to /dev/null copies nothing)",
        if secret { " (one secret masked)" } else { "" },
        through.as_secs_f64(),
        baseline.as_secs_f64(),
        through.as_secs_f64() / baseline.as_secs_f64()
    );
    println!(
        "through a pipe to cat: {:.2} s; chatrun to that: {:.2}x (target 1.5x); chatrun's CPU time: {cpu:.2} s",
        through_pipe.as_secs_f64(),
        through.as_secs_f64() / through_pipe.as_secs_f64()
    );
    println!(
        "chatrun peak RSS {} (idle {}; target under 64 MiB); log file {} bytes",
        mib(peak as f64 * 1024.0),
        mib(idle as f64 * 1024.0),
        kept
    );
}
