//! The real `chatrun` binary as a child process, for what only a process shows: its resource
//! limits and everything it writes to stdout and stderr.

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};

/// A running `chatrun serve`; killed when dropped.
pub struct Spawned {
    pub child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// Everything it printed so far, stdout and stderr interleaved by line.
    output: Arc<Mutex<String>>,
    readers: Vec<tokio::task::JoinHandle<()>>,
}

impl Spawned {
    /// Starts `chatrun serve --config chatrun.toml` in `dir` (whose config must say
    /// `listen = "127.0.0.1:0"`) through `sh -c "<prefix> exec chatrun serve …"`, so `prefix`
    /// can set limits first; waits until it listens.
    pub async fn start(dir: &Path, prefix: &str, env: &[(&str, &str)]) -> Self {
        // For the test's own reqwest clients (chatrun installs it when built in-process).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(format!(r#"{prefix} exec "$0" serve --config chatrun.toml"#))
            .arg(env!("CARGO_BIN_EXE_chatrun"))
            .current_dir(dir)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("sh starts");
        let output = Arc::new(Mutex::new(String::new()));
        let readers = vec![
            collect(child.stdout.take().unwrap(), output.clone()),
            collect(child.stderr.take().unwrap(), output.clone()),
        ];
        let base = crate::helpers::wait_for(|| async {
            let text = output.lock().unwrap().clone();
            let line = text.lines().find(|l| l.contains("listening on"))?;
            let url = line.split_whitespace().last()?;
            Some(url.trim_end_matches('/').to_string())
        })
        .await;
        Self {
            child,
            base,
            output,
            readers,
        }
    }

    /// What it printed so far.
    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// Stops it as `systemctl stop` would (SIGTERM), waits for it to exit and for the last of
    /// its output; returns everything it printed.
    pub async fn stop(mut self) -> String {
        let pid = self.child.id().expect("still running");
        let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap());
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        let deadline = std::time::Duration::from_secs(30);
        let status = tokio::time::timeout(deadline, self.child.wait()).await;
        assert!(status.is_ok(), "chatrun exits on SIGTERM");
        for reader in self.readers.drain(..) {
            let _ = tokio::time::timeout(deadline, reader).await;
        }
        self.output()
    }
}

/// Appends every line of `stream` to `output`, until it closes.
fn collect(
    stream: impl AsyncRead + Unpin + Send + 'static,
    output: Arc<Mutex<String>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let mut output = output.lock().unwrap();
            output.push_str(&line);
            output.push('\n');
        }
    })
}
