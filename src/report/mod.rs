//! Test reports: what a step's JUnit XML files say, summed up for replies and pages.
//!
//! [`junit::parse`] is pure (bytes in, summary out); [`collect`] finds a step's report files
//! (its `junit` glob, relative to its working directory, written since the step started) and
//! sums their summaries, or says why there is none.

pub mod junit;

use std::path::Path;
use std::time::SystemTime;

/// Messages and names are cut to this many characters.
const MAX_TEXT: usize = 8 * 1024;

/// What the test reports of one step say.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TestSummary {
    /// Test cases found.
    pub tests: u64,
    /// Failures plus errors.
    pub failed: u64,
    /// Skipped test cases.
    pub skipped: u64,
    /// Sum of the test cases' times.
    pub duration_ms: i64,
    /// Every failed or errored test, in report order.
    pub failures: Vec<FailedTest>,
    /// Tests that failed, then passed on a retry in the same run (Surefire's and nextest's
    /// `<flakyFailure>`/`<flakyError>`): counted as passed, their first failure kept. (An
    /// agent older than this field sends none.)
    #[serde(default)]
    pub flaky: Vec<FailedTest>,
}

/// One failed (or errored) test.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FailedTest {
    /// `classname`, else the enclosing suite's name.
    pub suite: String,
    /// The test's name.
    pub name: String,
    /// The first line of its message.
    pub message: String,
    /// The whole message and text (stack trace, assertion diff), cut to a few KiB.
    pub detail: String,
}

impl TestSummary {
    /// Adds another report's numbers to these (a step can write several files).
    pub fn merge(&mut self, other: TestSummary) {
        self.tests += other.tests;
        self.failed += other.failed;
        self.skipped += other.skipped;
        self.duration_ms = self.duration_ms.saturating_add(other.duration_ms);
        self.failures.extend(other.failures);
        self.flaky.extend(other.flaky);
    }
}

/// Reads the step's reports: every file matching `pattern` under `workdir` that was written at
/// or after `since` (an older file is a previous run's, not this step's).
///
/// # Errors
///
/// Why there is no usable report, for people: `report missing: …` or `report unreadable: …`.
pub fn collect(workdir: &Path, pattern: &str, since: SystemTime) -> Result<TestSummary, String> {
    let full = workdir.join(pattern);
    let full = full.to_string_lossy();
    let paths = glob::glob(&full)
        .map_err(|err| format!("report missing: `{pattern}` is not a valid pattern ({err})"))?;
    let mut found = Vec::new();
    let mut stale = 0;
    for path in paths.flatten() {
        if !path.is_file() {
            continue;
        }
        let fresh = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            // Coarse file systems round times down: allow a second.
            .map(|at| at + std::time::Duration::from_secs(1) >= since)
            .unwrap_or(false);
        if fresh {
            found.push(path);
        } else {
            stale += 1;
        }
    }
    if found.is_empty() {
        return Err(if stale > 0 {
            format!(
                "report missing: the {stale} file(s) matching `{pattern}` are older than this step"
            )
        } else {
            // Not the folder's path: it is the server's, and this is shown in chat and pages.
            format!("report missing: no file matches `{pattern}` in the step's working folder")
        });
    }
    found.sort();
    let mut summary = TestSummary::default();
    for path in found {
        let name = path
            .strip_prefix(workdir)
            .unwrap_or(&path)
            .display()
            .to_string();
        let bytes =
            std::fs::read(&path).map_err(|err| format!("report unreadable: {name}: {err}"))?;
        let report =
            junit::parse(&bytes).map_err(|err| format!("report unreadable: {name}: {err}"))?;
        summary.merge(report);
    }
    Ok(summary)
}

/// At most [`MAX_TEXT`] characters.
fn cap(text: &str) -> String {
    if text.chars().count() <= MAX_TEXT {
        text.to_string()
    } else {
        let mut out: String = text.chars().take(MAX_TEXT).collect();
        out.push('…');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const REPORT: &str = r#"<testsuite name="s"><testcase name="a"/><testcase name="b"><failure message="boom"/></testcase></testsuite>"#;

    #[test]
    fn sums_every_fresh_report_matching_the_pattern() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("reports")).unwrap();
        std::fs::write(dir.path().join("reports/one.xml"), REPORT).unwrap();
        std::fs::write(dir.path().join("reports/two.xml"), REPORT).unwrap();
        let since = SystemTime::now() - Duration::from_secs(60);
        let summary = collect(dir.path(), "reports/*.xml", since).unwrap();
        assert_eq!((summary.tests, summary.failed), (4, 2));
    }

    #[test]
    fn a_missing_stale_or_broken_report_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let err = collect(dir.path(), "junit.xml", SystemTime::now()).unwrap_err();
        assert!(
            err.starts_with("report missing: no file matches `junit.xml`"),
            "{err}"
        );
        // Shown in chat and on pages: not the server's path.
        assert!(!err.contains(&*dir.path().to_string_lossy()), "{err}");

        std::fs::write(dir.path().join("junit.xml"), REPORT).unwrap();
        let later = SystemTime::now() + Duration::from_secs(3600);
        let err = collect(dir.path(), "junit.xml", later).unwrap_err();
        assert!(err.contains("older than this step"), "{err}");

        std::fs::write(dir.path().join("junit.xml"), "<testsuite><testcase").unwrap();
        let err = collect(
            dir.path(),
            "junit.xml",
            SystemTime::now() - Duration::from_secs(60),
        )
        .unwrap_err();
        assert!(err.starts_with("report unreadable: junit.xml: "), "{err}");
    }
}
