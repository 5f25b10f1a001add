//! JUnit XML, as pytest, cargo nextest, jest-junit, go-junit-report, Maven Surefire and Gradle
//! write it: a `<testsuites>` root or a bare `<testsuite>`, suites possibly nested, `<testcase>`
//! elements with `<failure>`, `<error>` or `<skipped>` children.
//!
//! Counts come from the `<testcase>` elements themselves, never from the suites' `tests=` /
//! `failures=` attributes, which some tools get wrong (jest-junit) or leave out.

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};

use super::{FailedTest, TestSummary, cap};

/// Why a file is not a usable JUnit report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not well-formed XML.
    #[error("not well-formed XML at byte {position}: {message}")]
    Xml {
        /// Where the parser stopped.
        position: u64,
        /// What it found.
        message: String,
    },
    /// The file ends inside an element.
    #[error("the file ends in the middle of <{0}> (cut short?)")]
    Truncated(String),
    /// Well-formed, but not JUnit.
    #[error("not a JUnit report: the root element is <{0}>, not <testsuites> or <testsuite>")]
    NotJunit(String),
    /// No root element at all.
    #[error("the file has no XML element")]
    Empty,
}

/// `text` (from the file, or the XML parser's words about it) fit for a one-line reason: line
/// breaks and other control characters as spaces, at most 200 characters.
fn one_line(text: &str) -> String {
    let line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    crate::domain::text::truncate_runes(&line, 200)
}

/// The test case being read.
#[derive(Default)]
struct Case {
    suite: String,
    name: String,
    time_ms: i64,
    failed: bool,
    /// It failed, then passed on a retry: a `<flakyFailure>` or `<flakyError>` child.
    flaky: bool,
    skipped: bool,
    message: String,
    text: String,
}

/// Parses one report.
///
/// # Errors
///
/// The bytes are not well-formed XML, are cut short, or are not a JUnit report.
pub fn parse(bytes: &[u8]) -> Result<TestSummary, ParseError> {
    let text = String::from_utf8_lossy(bytes);
    let mut reader = Reader::from_str(&text);
    let mut state = State::default();
    // Open elements, by local name.
    let mut open: Vec<String> = Vec::new();
    let mut seen_root = false;

    loop {
        let event = reader.read_event().map_err(|err| ParseError::Xml {
            position: reader.error_position(),
            message: one_line(&err.to_string()),
        })?;
        let (element, empty) = match event {
            Event::Start(element) => (element, false),
            Event::Empty(element) => (element, true),
            Event::End(_) => {
                if let Some(name) = open.pop() {
                    state.close(&name);
                }
                continue;
            }
            Event::Text(content) => {
                state.push_text(&content.xml10_content());
                continue;
            }
            Event::CData(content) => {
                state.push_text(&content.xml10_content());
                continue;
            }
            Event::GeneralRef(reference) => {
                let resolved = match reference.resolve_char_ref() {
                    Ok(Some(c)) => c.to_string(),
                    _ => {
                        let name = reference.xml10_content();
                        quick_xml::escape::resolve_predefined_entity(&name)
                            .map_or_else(|| format!("&{name};"), str::to_string)
                    }
                };
                state.push_text(&resolved);
                continue;
            }
            Event::Eof => break,
            _ => continue,
        };
        let name = local(&element);
        if !seen_root {
            seen_root = true;
            if name != "testsuites" && name != "testsuite" {
                return Err(ParseError::NotJunit(one_line(&name)));
            }
        }
        state.open(&element, &name);
        if empty {
            state.close(&name);
        } else {
            open.push(name);
        }
    }
    if let Some(name) = open.pop() {
        return Err(ParseError::Truncated(one_line(&name)));
    }
    if !seen_root {
        return Err(ParseError::Empty);
    }
    Ok(state.summary)
}

/// What has been read so far.
#[derive(Default)]
struct State {
    summary: TestSummary,
    /// Names of the enclosing `<testsuite>`s.
    suites: Vec<String>,
    case: Option<Case>,
    /// Inside a `<failure>`/`<error>` of the current case: its text is the detail.
    capturing: bool,
}

impl State {
    fn open(&mut self, element: &BytesStart<'_>, name: &str) {
        match name {
            "testsuite" => self
                .suites
                .push(attribute(element, "name").unwrap_or_default()),
            "testcase" => {
                let classname = attribute(element, "classname").unwrap_or_default();
                let name = attribute(element, "name").unwrap_or_default();
                // jest-junit repeats the test's name as its classname: the suite says more.
                self.case = Some(Case {
                    suite: if classname.is_empty() || classname == name {
                        self.suites.last().cloned().unwrap_or_default()
                    } else {
                        classname
                    },
                    name,
                    time_ms: attribute(element, "time")
                        .and_then(|t| t.trim().parse::<f64>().ok())
                        .filter(|t| t.is_finite() && *t >= 0.0)
                        .map_or(0, |t| (t * 1000.0).round() as i64),
                    ..Case::default()
                });
            }
            "failure" | "error" => {
                if let Some(case) = &mut self.case {
                    // A second failure child (jest-junit writes one) keeps the first message;
                    // a failure's message wins over a flaky attempt's.
                    if !case.failed {
                        case.message = message_of(element);
                        case.text.clear();
                    }
                    case.failed = true;
                    self.capturing = true;
                }
            }
            "flakyFailure" | "flakyError" => {
                if let Some(case) = &mut self.case
                    && !case.failed
                    && !case.flaky
                {
                    // The first attempt that failed, as the failure it would have been.
                    case.message = message_of(element);
                    case.flaky = true;
                    self.capturing = true;
                }
            }
            "skipped" => {
                if let Some(case) = &mut self.case {
                    case.skipped = true;
                }
            }
            _ => {}
        }
    }

    fn close(&mut self, name: &str) {
        match name {
            "testsuite" => {
                self.suites.pop();
            }
            "failure" | "error" | "flakyFailure" | "flakyError" => self.capturing = false,
            "testcase" => {
                if let Some(case) = self.case.take() {
                    self.finish(case);
                }
            }
            _ => {}
        }
    }

    fn push_text(&mut self, text: &str) {
        if let (true, Some(case)) = (self.capturing, &mut self.case)
            && case.text.len() < 64 * 1024
        {
            case.text.push_str(text);
        }
    }

    fn finish(&mut self, case: Case) {
        let summary = &mut self.summary;
        summary.tests += 1;
        // `time="1e300"` is read as i64::MAX ms: a sum of such must not overflow.
        summary.duration_ms = summary.duration_ms.saturating_add(case.time_ms);
        if case.failed || case.flaky {
            if case.failed {
                summary.failed += 1;
            }
            let first_line = |text: &str| {
                text.lines()
                    .map(str::trim)
                    .find(|line| !line.is_empty())
                    .unwrap_or_default()
                    .to_string()
            };
            let message = match first_line(&case.message) {
                line if line.is_empty() => first_line(&case.text),
                line => line,
            };
            let detail = match (case.message.trim(), case.text.trim()) {
                (message, "") => message.to_string(),
                ("", text) => text.to_string(),
                (message, text) if text.contains(message) => text.to_string(),
                (message, text) => format!("{message}\n{text}"),
            };
            let test = FailedTest {
                suite: cap(&case.suite),
                name: cap(&case.name),
                message: cap(&message),
                detail: cap(&detail),
            };
            if case.failed {
                summary.failures.push(test);
            } else {
                summary.flaky.push(test);
            }
        } else if case.skipped {
            summary.skipped += 1;
        }
    }
}

/// A failure element's message: its `message`, else its `type`.
fn message_of(element: &BytesStart<'_>) -> String {
    attribute(element, "message")
        .filter(|m| !m.trim().is_empty())
        .or_else(|| attribute(element, "type"))
        .unwrap_or_default()
}

/// An element's name without its namespace prefix.
fn local(element: &BytesStart<'_>) -> String {
    element.local_name().as_ref().to_string()
}

/// An attribute's value, unescaped.
fn attribute(element: &BytesStart<'_>, name: &str) -> Option<String> {
    element
        .attributes()
        .flatten()
        .find(|a| a.key.local_name().as_ref() == name)
        .and_then(|a| {
            a.normalized_value(quick_xml::XmlVersion::default())
                .ok()
                .map(|v| v.into_owned())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Result<TestSummary, ParseError> {
        let path = format!("{}/tests/fixtures/junit/{name}", env!("CARGO_MANIFEST_DIR"));
        parse(&std::fs::read(path).unwrap())
    }

    /// `(tests, failed, skipped)`.
    fn counts(summary: &TestSummary) -> (u64, u64, u64) {
        (summary.tests, summary.failed, summary.skipped)
    }

    fn failed(summary: &TestSummary) -> Vec<(&str, &str, &str)> {
        summary
            .failures
            .iter()
            .map(|f| (f.suite.as_str(), f.name.as_str(), f.message.as_str()))
            .collect()
    }

    #[test]
    fn absurd_times_add_up_without_overflowing() {
        let summary = parse(
            br#"<testsuite><testcase name="a" time="1e300"/><testcase name="b" time="1e300"/></testsuite>"#,
        )
        .unwrap();
        assert_eq!(summary.tests, 2);
        assert_eq!(summary.duration_ms, i64::MAX);
    }

    #[test]
    fn reads_pytest_reports_of_both_families() {
        for file in ["pytest.xml", "pytest-xunit1.xml"] {
            let summary = fixture(file).unwrap();
            assert_eq!(counts(&summary), (10, 3, 1), "{file}");
            assert_eq!(
                failed(&summary),
                vec![
                    (
                        "tests.test_math",
                        "test_multiply_fails",
                        "AssertionError: dicts differ"
                    ),
                    (
                        "tests.test_strings.TestStrings",
                        "test_split_fails",
                        "AssertionError: expected 4 parts"
                    ),
                    (
                        "tests.test_strings.TestStrings",
                        "test_uses_broken_fixture",
                        "failed on setup with \"RuntimeError: could not open resource"
                    ),
                ],
                "{file}"
            );
            assert!(summary.failures[0].detail.contains("assert"), "{file}");
        }
    }

    #[test]
    fn a_test_that_passed_on_a_retry_is_flaky_not_failed() {
        // nextest with retries: one passed, one failed on every attempt (a <failure> and two
        // <rerunFailure>), one failed three times and passed on the fourth (<flakyFailure>).
        let summary = fixture("flaky.xml").unwrap();
        assert_eq!(counts(&summary), (3, 1, 0));
        assert_eq!(
            failed(&summary)
                .iter()
                .map(|(_, name, _)| *name)
                .collect::<Vec<_>>(),
            ["test_failure_assert"]
        );
        assert_eq!(summary.flaky.len(), 1);
        assert_eq!(summary.flaky[0].name, "test_flaky_mod_4");
        assert_eq!(summary.flaky[0].suite, "nextest-tests::basic");
        assert!(
            summary.flaky[0]
                .detail
                .contains("Failed because attempt 1 % 4 != 0"),
            "the first failed attempt is kept: {}",
            summary.flaky[0].detail
        );
    }

    #[test]
    fn reads_a_nextest_report() {
        let summary = fixture("nextest.xml").unwrap();
        assert_eq!(counts(&summary), (9, 4, 0));
        let names: Vec<&str> = summary.failures.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            vec![
                "arithmetic::add_overflow_is_wrong",
                "parsing::rejects_out_of_range_port",
                "parsing::unwrap_on_error_panics",
                "process_abort_is_reported"
            ]
        );
        assert!(
            summary.failures[0]
                .message
                .starts_with("thread 'arithmetic::add_overflow_is_wrong'")
        );
        assert_eq!(
            summary.failures[3].message,
            "process aborted with signal 6 (SIGABRT)"
        );
    }

    #[test]
    fn reads_a_jest_junit_report_without_trusting_its_counts() {
        let summary = fixture("jest-junit.xml").unwrap();
        // jest-junit's own attributes say tests="7" failures="3".
        assert_eq!(counts(&summary), (9, 5, 1));
        let (suite, name, message) = failed(&summary)[0];
        assert_eq!(suite, "config parsing");
        assert_eq!(name, "config parsing objects are deeply equal");
        assert_eq!(
            message,
            "Error: expect(received).toEqual(expected) // deep equality"
        );
        assert!(summary.duration_ms > 0);
    }

    #[test]
    fn reads_surefire_gradle_and_nested_suites() {
        let surefire = fixture("surefire.xml").unwrap();
        assert_eq!(counts(&surefire), (6, 3, 1));
        assert_eq!(
            failed(&surefire)[1],
            (
                "com.example.CalculatorTest",
                "parses \"quoted\" & <angled> input",
                "parse result differs"
            )
        );
        let gradle = fixture("gradle.xml").unwrap();
        assert_eq!(counts(&gradle), (5, 1, 1));
        let nested = fixture("nested.xml").unwrap();
        assert_eq!(counts(&nested), (6, 2, 1));
        assert_eq!(nested.failures[1].name, "testMigrates");
    }

    #[test]
    fn empty_broken_and_foreign_files_are_told_apart() {
        assert_eq!(fixture("empty-suites.xml").unwrap(), TestSummary::default());
        let broken = fixture("broken.xml").unwrap_err();
        assert!(
            matches!(broken, ParseError::Xml { .. } | ParseError::Truncated(_)),
            "{broken}"
        );
        assert_eq!(parse(b"").unwrap_err(), ParseError::Empty);
        assert_eq!(
            parse(b"<html><body/></html>").unwrap_err(),
            ParseError::NotJunit("html".into())
        );
        assert!(matches!(
            parse(b"<testsuite><testcase name='a'>").unwrap_err(),
            ParseError::Truncated(_)
        ));
    }

    #[test]
    fn a_bare_testsuite_with_entities_and_no_message_attribute() {
        let summary = parse(
            br#"<?xml version="1.0"?>
<testsuite name="s" tests="99">
  <testcase name="a &amp; b" time="0.5"/>
  <testcase name="c" time="1.25"><failure>first &lt;line&gt;
second</failure></testcase>
  <testcase name="d"><skipped/></testcase>
</testsuite>"#,
        )
        .unwrap();
        assert_eq!(counts(&summary), (3, 1, 1));
        assert_eq!(summary.duration_ms, 1750);
        assert_eq!(summary.failures[0].suite, "s");
        assert_eq!(summary.failures[0].message, "first <line>");
        assert_eq!(summary.failures[0].detail, "first <line>\nsecond");
    }
}
