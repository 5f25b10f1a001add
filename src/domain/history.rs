//! A failed test against the earlier runs of its job with the same arguments (`feature/x` is
//! compared with `feature/x`, never with `main`): new, still failing since a run, or flaky.
//! Pure: the store supplies each failure's streak (`since`, kept when the failure is written)
//! and the failures of the runs in the window.

use std::collections::HashMap;

use serde::Serialize;

use super::{RunId, TestFailureRow};

/// How many of a job's latest finished runs with the same arguments (the run itself included)
/// are looked at to call a test flaky, unless `flaky_window` says otherwise.
pub const DEFAULT_FLAKY_WINDOW: usize = 10;

/// How a failed test stands against the job's earlier runs with the same arguments. Serialized
/// as its [`FailureClass::token`]; the streak's first run is the failure's `since`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureClass {
    /// It did not fail in the last finished run of the job with these arguments.
    New,
    /// It failed in every finished run since run `since`, the first of this streak.
    StillFailing {
        /// The first run of the streak.
        since: RunId,
    },
    /// Within the window it failed, then did not, then failed again (in this run).
    Flaky,
}

impl Serialize for FailureClass {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.token())
    }
}

impl FailureClass {
    /// The name the API and the pages' styles use: `new`, `still_failing`, `flaky`.
    pub fn token(self) -> &'static str {
        match self {
            Self::New => "new",
            Self::StillFailing { .. } => "still_failing",
            Self::Flaky => "flaky",
        }
    }

    /// Words for a reply or a page: `new`, `failing since #38`, `flaky`.
    pub fn words(self) -> String {
        match self {
            Self::New => "new".into(),
            Self::StillFailing { since } => format!("failing since #{since}"),
            Self::Flaky => "flaky".into(),
        }
    }

    /// The order replies list failures in: new first, then still failing, then flaky.
    pub fn rank(self) -> u8 {
        match self {
            Self::New => 0,
            Self::StillFailing { .. } => 1,
            Self::Flaky => 2,
        }
    }
}

/// A succeeded run whose job, with the same arguments, had failed before: the reply says
/// "back to green after 3 failed runs, since #38".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackToGreen {
    /// Failed runs in a row before this one.
    pub failed_runs: usize,
    /// The first of them.
    pub since: RunId,
    /// More failed runs than were looked at: at least `failed_runs`.
    pub at_least: bool,
}

impl BackToGreen {
    /// From the outcomes of the finished runs before a succeeded one (same job and arguments),
    /// newest first (`true`: failed), of which at most `looked` were read: `None` when the
    /// previous one did not fail.
    pub fn after(previous: &[(RunId, bool)], looked: usize) -> Option<Self> {
        let failed: Vec<RunId> = previous
            .iter()
            .take_while(|(_, failed)| *failed)
            .map(|(run, _)| *run)
            .collect();
        Some(Self {
            failed_runs: failed.len(),
            since: *failed.last()?,
            at_least: failed.len() >= looked,
        })
    }

    /// `back to green after 3 failed runs, since #38`.
    pub fn words(self) -> String {
        format!("back to green after {}", self.failed_runs_words())
    }

    /// `3 failed runs, since #38`.
    pub fn failed_runs_words(self) -> String {
        let runs = if self.failed_runs == 1 {
            "1 failed run".to_string()
        } else {
            format!(
                "{}{} failed runs",
                if self.at_least { "at least " } else { "" },
                self.failed_runs
            )
        };
        format!("{runs}, since #{}", self.since)
    }
}

/// A run whose outcome differs from the previous finished run of its job with the same
/// arguments: what a job's `notify` channels are told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusChange {
    /// It failed after a succeeded run.
    Broke {
        /// The last succeeded run.
        after: RunId,
    },
    /// It succeeded after failed ones.
    Fixed(BackToGreen),
}

impl StatusChange {
    /// The change run `succeeded` (or failed) makes after `previous` (the finished runs
    /// before it, newest first, `true`: failed, as [`BackToGreen::after`] reads them), of which
    /// at most `looked` were read; `None` when it changes nothing (or there is no run before).
    pub fn of(succeeded: bool, previous: &[(RunId, bool)], looked: usize) -> Option<Self> {
        if succeeded {
            BackToGreen::after(previous, looked).map(Self::Fixed)
        } else {
            match previous.first() {
                Some((after, false)) => Some(Self::Broke { after: *after }),
                _ => None,
            }
        }
    }
}

/// One failure of an earlier run in the window: `(run, suite, name)`.
pub type EarlierFailure = (RunId, String, String);

/// A test that failed, then did not, then failed again within a job's recent runs with one set
/// of arguments: the job page's "flaky tests".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlakyTest {
    pub suite: String,
    pub name: String,
    /// Runs it failed in, of `runs`.
    pub failed: usize,
    /// The finished runs looked at.
    pub runs: usize,
    /// The newest run it failed in.
    pub last_failed: RunId,
}

/// The flaky tests among `failures` of the finished `runs` (newest first, as
/// `(run, whether it failed)`) of one job with one set of arguments: those that failed in a
/// run, did not fail in a later one and failed again after it. Most often failing first.
pub fn flaky_tests(runs: &[(RunId, bool)], failures: &[EarlierFailure]) -> Vec<FlakyTest> {
    let mut by_test: HashMap<(&str, &str), Vec<RunId>> = HashMap::new();
    for (run, suite, name) in failures {
        by_test
            .entry((suite.as_str(), name.as_str()))
            .or_default()
            .push(*run);
    }
    let mut flaky: Vec<FlakyTest> = by_test
        .into_iter()
        .filter_map(|((suite, name), mut failed)| {
            failed.sort_unstable();
            failed.dedup();
            // A run between two of its failures that it did not fail in.
            let gap = failed.windows(2).any(|pair| {
                runs.iter()
                    .any(|(run, _)| *run > pair[0] && *run < pair[1] && !failed.contains(run))
            });
            gap.then(|| FlakyTest {
                suite: suite.to_string(),
                name: name.to_string(),
                failed: failed.len(),
                runs: runs.len(),
                last_failed: *failed.last().expect("a test with failures"),
            })
        })
        .collect();
    flaky.sort_by(|a, b| {
        b.failed
            .cmp(&a.failed)
            .then_with(|| b.last_failed.cmp(&a.last_failed))
            .then_with(|| (&a.suite, &a.name).cmp(&(&b.suite, &b.name)))
    });
    flaky
}

/// Classes each failure of run `run_id` (setting [`TestFailureRow::class`]):
///
/// - **flaky** when it passed on a retry in this very run, or when the same test (suite and
///   name) failed in one of the `earlier` runs (the window's, before this one) before its
///   current streak began: it failed, then did not fail in a run between, then failed again;
/// - else **new** when its streak begins with this run (it did not fail in the previous
///   finished run with the same arguments);
/// - else **still failing** since the first run of its streak.
///
/// A failure written before chatrun kept streaks (`since` unknown) stays unclassed. A test
/// that did not run at all in a run (removed for a while) counts as not failing there: the
/// reports name only what failed.
pub fn classify(run_id: RunId, failures: &mut [TestFailureRow], earlier: &[EarlierFailure]) {
    // Each test's first failure in the window.
    let mut first: HashMap<(&str, &str), RunId> = HashMap::with_capacity(earlier.len());
    for (run, suite, name) in earlier {
        first
            .entry((suite.as_str(), name.as_str()))
            .and_modify(|at| *at = (*at).min(*run))
            .or_insert(*run);
    }
    for failure in failures.iter_mut() {
        if failure.passed_on_retry {
            failure.class = Some(FailureClass::Flaky);
            continue;
        }
        let Some(since) = failure.since else {
            failure.class = None;
            continue;
        };
        let failed_before_streak = first
            .get(&(failure.suite.as_str(), failure.name.as_str()))
            .is_some_and(|at| *at < since);
        failure.class = Some(if failed_before_streak {
            FailureClass::Flaky
        } else if since >= run_id {
            FailureClass::New
        } else {
            FailureClass::StillFailing { since }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(suite: &str, name: &str, since: Option<i64>) -> TestFailureRow {
        TestFailureRow {
            position: 0,
            suite: suite.into(),
            name: name.into(),
            message: String::new(),
            detail: String::new(),
            since: since.map(RunId),
            passed_on_retry: false,
            class: None,
        }
    }

    fn earlier(list: &[(i64, &str)]) -> Vec<EarlierFailure> {
        list.iter()
            .map(|(run, name)| (RunId(*run), "s".to_string(), (*name).to_string()))
            .collect()
    }

    #[test]
    fn new_still_failing_and_flaky_follow_the_streak_and_the_window() {
        let mut failures = vec![
            failure("s", "fresh", Some(12)),
            failure("s", "broken", Some(9)),
            failure("s", "wobbly", Some(12)),
            failure("s", "old-row", None),
            // The same name in another suite is another test.
            failure("t", "wobbly", Some(12)),
        ];
        // "wobbly" failed in run 7, passed since, fails again now; "broken" has failed since 9.
        let window = earlier(&[(7, "wobbly"), (9, "broken"), (10, "broken"), (11, "broken")]);
        classify(RunId(12), &mut failures, &window);
        let classes: Vec<_> = failures.iter().map(|f| f.class).collect();
        assert_eq!(
            classes,
            [
                Some(FailureClass::New),
                Some(FailureClass::StillFailing { since: RunId(9) }),
                Some(FailureClass::Flaky),
                None,
                Some(FailureClass::New),
            ]
        );
        assert_eq!(failures[1].class.unwrap().words(), "failing since #9");
        // A streak that began before the window and failures older than the window: still
        // failing, not flaky (nothing in the window came before the streak).
        let mut long = vec![failure("s", "broken", Some(2))];
        classify(
            RunId(12),
            &mut long,
            &earlier(&[(8, "broken"), (11, "broken")]),
        );
        assert_eq!(
            long[0].class,
            Some(FailureClass::StillFailing { since: RunId(2) })
        );
        // Failed, passed, failed twice in a row since: flaky still.
        let mut again = vec![failure("s", "wobbly", Some(11))];
        classify(
            RunId(12),
            &mut again,
            &earlier(&[(8, "wobbly"), (11, "wobbly")]),
        );
        assert_eq!(again[0].class, Some(FailureClass::Flaky));
    }

    #[test]
    fn back_to_green_counts_the_failed_runs_just_before() {
        let runs = |list: &[(i64, bool)]| {
            list.iter()
                .map(|(id, failed)| (RunId(*id), *failed))
                .collect::<Vec<_>>()
        };
        let green = BackToGreen::after(
            &runs(&[(41, true), (40, true), (38, true), (37, false)]),
            50,
        )
        .unwrap();
        assert_eq!(
            green.words(),
            "back to green after 3 failed runs, since #38"
        );
        assert_eq!(
            BackToGreen::after(&runs(&[(9, true)]), 50).unwrap().words(),
            "back to green after 1 failed run, since #9"
        );
        assert_eq!(
            BackToGreen::after(&runs(&[(9, false), (8, true)]), 50),
            None
        );
        assert_eq!(BackToGreen::after(&[], 50), None);
        let long = BackToGreen::after(&runs(&[(3, true), (2, true)]), 2).unwrap();
        assert_eq!(
            long.words(),
            "back to green after at least 2 failed runs, since #2"
        );
    }

    #[test]
    fn a_test_is_flaky_when_a_run_between_two_of_its_failures_passed_it() {
        let runs: Vec<(RunId, bool)> = (1..=6).rev().map(|i| (RunId(i), true)).collect();
        let failures = earlier(&[
            (1, "wobbly"),
            (3, "wobbly"),
            (6, "wobbly"),
            (2, "broken"),
            (3, "broken"),
            (4, "broken"),
            (5, "once"),
        ]);
        let flaky = flaky_tests(&runs, &failures);
        assert_eq!(
            flaky,
            [FlakyTest {
                suite: "s".into(),
                name: "wobbly".into(),
                failed: 3,
                runs: 6,
                last_failed: RunId(6),
            }]
        );
        assert!(flaky_tests(&runs, &[]).is_empty());
    }

    #[test]
    fn only_a_change_of_outcome_is_a_status_change() {
        let previous = |list: &[(i64, bool)]| {
            list.iter()
                .map(|(id, failed)| (RunId(*id), *failed))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            StatusChange::of(false, &previous(&[(4, false), (3, true)]), 10),
            Some(StatusChange::Broke { after: RunId(4) })
        );
        assert_eq!(StatusChange::of(false, &previous(&[(4, true)]), 10), None);
        assert_eq!(StatusChange::of(true, &previous(&[(4, false)]), 10), None);
        assert_eq!(StatusChange::of(false, &[], 10), None);
        assert!(matches!(
            StatusChange::of(true, &previous(&[(4, true), (3, false)]), 10),
            Some(StatusChange::Fixed(BackToGreen { failed_runs: 1, .. }))
        ));
    }

    #[test]
    fn classes_sort_new_first_then_still_failing_then_flaky() {
        let mut classes = [
            FailureClass::Flaky,
            FailureClass::StillFailing { since: RunId(3) },
            FailureClass::New,
        ];
        classes.sort_by_key(|c| c.rank());
        assert_eq!(classes[0], FailureClass::New);
        assert_eq!(classes[2], FailureClass::Flaky);
    }
}
