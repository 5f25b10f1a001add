//! Mattermost: the outgoing-webhook request (form or JSON), its token, and the replies
//! (the acknowledgement in the HTTP response, the result through `POST /api/v4/posts`).
//! See `shared/protocols/mattermost.md`. Pure: no I/O here.

pub mod actions;
mod auth;
mod client;
mod config;
mod delivery;
mod hook;
mod inbound;
mod post;
mod reply;

pub use auth::*;
pub use client::Client;
pub use config::*;
pub use delivery::*;
pub use inbound::*;
pub use post::*;
pub use reply::*;

use askama::Template;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::domain::text::truncate_runes;
use crate::domain::{AckFacts, Address, Delivery};
use crate::domain::{RunRow, StepRow, StepStatus, TestFailureRow};
use crate::render::{self, AckMessage, JobsMessage, ResultMessage, ResultRow, ResultView};

/// Delivery target: `POST {mattermost.url}/api/v4/posts` with the bot's token.
pub const TARGET_POST: &str = "mattermost.post";

/// Mattermost's longest post, in runes (`PostMessageMaxRunesV2`).
pub const MAX_RUNES: usize = 16383;

/// The longest value of a field other than `text` (ids are 26 characters, names at most 64).
pub const MAX_FIELD_BYTES: usize = 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_usage_example_follows_the_trigger_word_but_never_after_a_command_word() {
        assert_eq!(usage("#build", "build"), "#build");
        assert_eq!(usage("#ci", "build"), "#ci build");
        assert_eq!(usage("", "build"), "build");
        assert_eq!(usage("#help", "build"), "#build");
        assert_eq!(usage("!status", "deploy"), "!deploy");
        let jobs = render_jobs(None, None, [("build", "Build it")].into_iter(), "#help");
        assert!(jobs.contains("e.g. **\\#build**"), "{jobs}");
        assert!(!jobs.contains("help build"), "{jobs}");
    }
    use crate::domain::{RunStatus, StepStatus};

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/mattermost");

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!("{FIXTURES}/{name}")).unwrap()
    }

    fn assert_matches_fixture(actual: &str, name: &str) {
        crate::render::samples::assert_matches_fixture(actual, "mattermost", name);
    }

    #[test]
    fn parses_the_form_body_with_its_timestamp_in_seconds() {
        let payload = parse_payload(
            Some("application/x-www-form-urlencoded"),
            &fixture("form-exact.txt"),
        )
        .unwrap();
        assert_eq!(payload.text, "#build api-server branch=main");
        assert_eq!(payload.user_name, "alice");
        assert_eq!(payload.post_id, "axdygg1957njfe5pu38saikdho");
        assert_eq!(payload.trigger_word, "#build");
        assert_eq!(payload.timestamp_ms(), Ok(1_718_294_400_000));
    }

    #[test]
    fn parses_the_json_body_with_its_timestamp_in_milliseconds() {
        let payload = parse_payload(Some("application/json"), &fixture("json.json")).unwrap();
        assert_eq!(
            payload.text,
            "#build web --env=<staging> && notify @bob\nsecond line"
        );
        assert_eq!(payload.timestamp_ms(), Ok(1_718_294_405_789));
        assert_eq!(payload.channel_name, "ci-builds");
    }

    #[test]
    fn a_body_that_is_not_a_payload_is_an_error_not_a_panic() {
        assert!(matches!(
            parse_payload(Some("application/json"), b"[1,2"),
            Err(ParseError::Json(_))
        ));
        let payload = parse_payload(Some("application/json"), br#"{"post_id":"../../x"}"#).unwrap();
        assert!(matches!(payload.check(), Err(ParseError::PostId)));
        let payload = parse_payload(FORM, b"token=a&text=%23build").unwrap();
        assert!(matches!(payload.check(), Err(ParseError::PostId)));
    }

    const FORM: Option<&str> = Some("application/x-www-form-urlencoded");

    #[test]
    fn only_the_two_content_types_mattermost_sends_are_read() {
        let body = fixture("form-exact.txt");
        assert!(
            parse_payload(
                Some("Application/X-WWW-Form-Urlencoded; charset=utf-8"),
                &body
            )
            .is_ok()
        );
        for other in [
            None,
            Some(""),
            Some("text/plain"),
            Some("multipart/form-data; boundary=x"),
        ] {
            let err = parse_payload(other, &body).unwrap_err();
            assert!(
                matches!(err, ParseError::ContentType(_)),
                "{other:?}: {err}"
            );
        }
        assert_eq!(
            parse_payload(None, &body).unwrap_err().to_string(),
            "the Content-Type must be application/x-www-form-urlencoded or application/json, not none"
        );
    }

    #[test]
    fn a_form_or_json_that_is_not_utf8_is_refused_not_patched() {
        for body in [
            &b"text=%FF%FE&post_id=p1"[..],
            b"text=\xff&post_id=p1",
            b"te%C3xt=a",
        ] {
            assert_eq!(
                parse_payload(FORM, body).unwrap_err(),
                ParseError::Form("a value is not UTF-8".into()),
                "{body:?}"
            );
        }
        let payload = parse_payload(FORM, b"text=%C3%A9t%C3%A9+100%&post_id=p1").unwrap();
        assert_eq!(payload.text, "été 100%");
        assert!(matches!(
            parse_payload(Some("application/json"), b"{\"text\":\"\xff\"}"),
            Err(ParseError::Json(_))
        ));
    }

    #[test]
    fn deeply_nested_json_is_an_error_not_a_stack_overflow() {
        let depth = 100_000;
        let body = format!("{{\"x\":{}{}}}", "[".repeat(depth), "]".repeat(depth));
        let err = parse_payload(Some("application/json"), body.as_bytes()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the JSON body is not a Mattermost outgoing-webhook payload: nested deeper than 32 levels"
        );
    }

    #[test]
    fn a_missing_or_malformed_timestamp_is_an_error() {
        let payload = parse_payload(FORM, b"post_id=p1").unwrap();
        assert_eq!(
            payload.timestamp_ms().unwrap_err().to_string(),
            "timestamp is missing"
        );
        let payload = parse_payload(FORM, b"timestamp=soon").unwrap();
        assert_eq!(payload.timestamp_ms(), Err(ParseError::Timestamp));
        let payload = parse_payload(FORM, b"timestamp=99999999999999999").unwrap();
        assert_eq!(
            payload.timestamp_ms(),
            Ok(i64::MAX),
            "saturates, then is refused as ahead"
        );
        assert!(matches!(
            parse_payload(Some("application/json"), br#"{"timestamp":1.5}"#),
            Err(ParseError::Json(_))
        ));
    }

    #[test]
    fn missing_and_oversized_fields_are_named() {
        let good = parse_payload(FORM, &fixture("form-exact.txt")).unwrap();
        assert_eq!(good.check(), Ok(()));
        let mut payload = good.clone();
        payload.channel_id.clear();
        assert_eq!(
            payload.check(),
            Ok(()),
            "`chatrun trigger` sends no channel id"
        );
        let mut payload = good.clone();
        payload.user_id = " ".into();
        assert_eq!(
            payload.check().unwrap_err().to_string(),
            "user_id is missing"
        );
        let mut payload = good.clone();
        payload.text = "é".repeat(MAX_RUNES);
        assert_eq!(
            payload.check(),
            Ok(()),
            "the longest post Mattermost allows"
        );
        payload.text.push('x');
        assert_eq!(
            payload.check().unwrap_err().to_string(),
            "text is too long: at most 16383 characters"
        );
        let mut payload = good;
        payload.user_name = "a".repeat(MAX_FIELD_BYTES + 1);
        assert_eq!(
            payload.check().unwrap_err().to_string(),
            "user_name is too long: at most 1024 bytes"
        );
    }

    #[test]
    fn token_must_match_one_of_the_accepted() {
        let accepted = vec!["one".to_string(), "two".to_string()];
        assert!(token_matches("two", &accepted));
        assert!(!token_matches("three", &accepted));
        assert!(!token_matches("", &accepted));
        assert!(!token_matches("", &[]));
    }

    #[test]
    fn a_post_carries_its_delivery_key_and_is_found_by_it() {
        let body = render_post("c1", Some("r1"), "hi").body;
        assert_eq!(post_channel(&body).as_deref(), Some("c1"));
        let keyed = with_delivery_key(&body, "chatrun-7-12-1700000000000").unwrap();
        let post: serde_json::Value = serde_json::from_str(&keyed).unwrap();
        assert_eq!(
            post["props"]["chatrun_delivery"],
            "chatrun-7-12-1700000000000"
        );
        // The same key on every attempt: Mattermost drops a repeat within 30 s.
        assert_eq!(post["pending_post_id"], "chatrun-7-12-1700000000000");
        assert_eq!(post["message"], "hi");
        assert_eq!(post["root_id"], "r1");
        let with_props = with_delivery_key(r#"{"props":{"a":1}}"#, "k").unwrap();
        assert_eq!(
            with_props,
            r#"{"pending_post_id":"k","props":{"a":1,"chatrun_delivery":"k"}}"#
        );
        assert_eq!(with_delivery_key("[1]", "k"), None);

        // As Mattermost answers, with the post among others (props null, missing, other keys).
        let answer = br#"{"order":["p3","p2","p1"],"posts":{
            "p1":{"id":"p1","channel_id":"c1","root_id":"","message":"x","props":null,
                  "create_at":1700000000100},
            "p2":{"id":"p2","channel_id":"c1","root_id":"r1","message":"y","create_at":1700000000200},
            "p3":{"id":"p3","channel_id":"c1","root_id":"r1","message":"hi","create_at":1700000000300,
                  "props":{"from_bot":"true","chatrun_delivery":"chatrun-7-12-1700000000000"}}},
            "next_post_id":"","prev_post_id":""}"#;
        let page = scan_page(answer, "chatrun-7-12-1700000000000").unwrap();
        assert_eq!(
            page,
            Page {
                found: true,
                posts: 3,
                oldest: Some(1_700_000_000_100)
            }
        );
        assert!(
            !scan_page(answer, "chatrun-7-13-1700000000000")
                .unwrap()
                .found
        );
        let empty = Page {
            found: false,
            posts: 0,
            oldest: None,
        };
        assert_eq!(
            scan_page(br#"{"order":[],"posts":{}}"#, "k").unwrap(),
            empty
        );
        assert_eq!(
            scan_page(br#"{"order":[],"posts":null}"#, "k").unwrap(),
            empty
        );
        assert!(scan_page(b"<html>", "k").is_err());
    }

    #[test]
    fn replies_thread_as_mattermost_allows() {
        let (body, delivery) = render_response("hi", &Thread::Root, "c1");
        assert_eq!(body, r#"{"response_type":"comment","text":"hi"}"#);
        assert!(delivery.is_none());
        let (body, _) = render_response("hi", &Thread::Unknown, "c1");
        assert_eq!(body, r#"{"text":"hi"}"#);
        let (body, delivery) = render_response("hi", &Thread::Reply("r1".into()), "c1");
        assert_eq!(body, "{}");
        let delivery = delivery.unwrap();
        assert_eq!(
            delivery.body,
            r#"{"channel_id":"c1","root_id":"r1","message":"hi"}"#
        );
        assert_eq!(delivery.thread, "mattermost:c1/r1");
        // At the top of the channel: ordered with nothing, so a stuck reply holds back no other.
        assert_eq!(render_post("c1", None, "hi").thread, "");
    }

    use crate::render::samples::{run, scenarios, step, tested};

    #[test]
    fn renders_the_result_table_as_checked_in() {
        let steps = [
            step(0, "Server", StepStatus::Succeeded, Some(0)),
            step(1, "Web | Client", StepStatus::Failed, Some(2)),
            step(2, "iOS Client", StepStatus::Skipped, None),
        ];
        let text = render_result(
            &run(RunStatus::Failed),
            &steps,
            &[],
            "http://ci/runs/42",
            9_999,
        );
        assert_matches_fixture(&text, "result-failed.md");
    }

    #[test]
    fn renders_test_results_as_checked_in() {
        for (name, run, steps, failures) in scenarios() {
            let text = render_result(&run, &steps, &failures, "http://ci/runs/42", 9_999);
            assert!(text.chars().count() <= MAX_RUNES);
            assert_matches_fixture(&text, &format!("result-{name}.md"));
        }
    }

    #[test]
    fn a_reply_too_big_for_one_post_leaves_out_detail_in_order_and_says_so() {
        // 40 failing components of 10 failed tests with long names: the names must go.
        let mut steps = Vec::new();
        let mut failures = Vec::new();
        for i in 0..40 {
            let mut s = tested(i, &format!("Component {i}"), 500, 10);
            s.output_tail = Some("x".repeat(200));
            steps.push(s);
            failures.extend(
                crate::render::samples::failures(i, &"suite".repeat(20), 10)
                    .into_iter()
                    .map(|mut f| {
                        f.name = f.name.repeat(8);
                        f
                    }),
            );
        }
        let text = render_result(
            &run(RunStatus::Failed),
            &steps,
            &failures,
            "http://ci/runs/42",
            0,
        );
        assert!(text.chars().count() <= MAX_RUNES);
        assert!(
            text.contains("_Left out to fit in one message: names of failed tests._"),
            "{text}"
        );
        assert!(
            text.contains("| Component 39 | 500 |"),
            "every row is still there"
        );
        assert!(text.ends_with("(http://ci/runs/42)"));
        for line in text.lines().filter(|l| l.starts_with('|')) {
            assert!(line.ends_with('|'), "a cut table row: {line}");
        }
    }

    #[test]
    fn renders_the_acknowledgement_as_checked_in() {
        let facts = AckFacts {
            run_id: crate::domain::RunId(42),
            job: "build",
            user: "alice",
            place: 1,
            starts_now: false,
            wait: None,
            args: "",
            no_agent: None,
        };
        assert_matches_fixture(&render_ack(&facts, "http://ci/runs/42"), "ack.md");
        let text = render_ack(
            &AckFacts {
                run_id: crate::domain::RunId(7),
                place: 2,
                wait: Some(95_000),
                args: "target=web note=@channel",
                ..facts
            },
            "http://ci/runs/7",
        );
        assert!(
            text.contains("**build** (target=web note=@\u{200B}channel), asked by"),
            "{text}"
        );
        let text = render_ack(
            &AckFacts {
                starts_now: true,
                wait: Some(95_000),
                ..facts
            },
            "http://ci/runs/42",
        );
        assert!(
            text.contains(", asked by @alice, starting now. Details:"),
            "{text}"
        );
        // A job for build agents when none that could run it is connected.
        let text = render_ack(
            &AckFacts {
                no_agent: Some("macos,arm64"),
                ..facts
            },
            "http://ci/runs/42",
        );
        assert!(
            text.contains(
                ", asked by @alice, waiting for a build agent with the labels macos,arm64: none \
                 is connected. Details:"
            ),
            "{text}"
        );
        // The value shows as a code span, as written; the words around it are escaped.
        let text = render_refusal("deploy", "`x|y` is not allowed for env_name");
        assert_eq!(
            text,
            ":no_entry_sign: Not running **deploy**: `x|y` is not allowed for env\\_name. Nothing was started."
        );
        // A value cannot close its span: its backticks were replaced when it was quoted
        // (`catalog::args`), so what follows stays inside.
        let text = render_refusal("deploy", "`a\u{2CB}**b**` is not allowed");
        assert!(text.contains("`a\u{2CB}**b**` is not allowed"), "{text}");
        // Unbalanced backticks: everything is escaped.
        assert!(render_refusal("d", "`x").contains("\\`x"));
    }

    #[test]
    fn a_huge_result_drops_rows_and_stays_under_the_limit() {
        let steps: Vec<StepRow> = (0..3000)
            .map(|i| step(i, &"x".repeat(20), StepStatus::Succeeded, Some(0)))
            .collect();
        let text = render_result(
            &run(RunStatus::Succeeded),
            &steps,
            &[],
            "http://ci/runs/42",
            0,
        );
        assert!(text.chars().count() <= MAX_RUNES);
        assert!(text.contains("more steps on the run page"));
        assert!(text.ends_with("(http://ci/runs/42)"));
    }

    #[test]
    fn lists_jobs_for_an_unknown_name() {
        let text = render_jobs(
            Some("biuld"),
            Some("build"),
            [("build", "Build it"), ("lint", "")].into_iter(),
            "#ci",
        );
        assert!(
            text.starts_with(
                ":question: There is no job or command **biuld**. Did you mean **build**?"
            ),
            "{text}"
        );
        assert!(text.contains("| **build** | Build it |"));
        assert!(text.contains("e.g. **\\#ci build**"));
    }
}
