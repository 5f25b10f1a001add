//! Microsoft Teams: the outgoing-webhook request (an HMAC-signed Bot Framework activity), the
//! command in its HTML-flavoured text, and the replies (a text message in the HTTP response,
//! the result as an Adaptive Card posted to a Workflows URL). See `shared/protocols/teams.md`.
//! Pure: no I/O here.
//!
//! Cards are typed values serialized by serde, never text templates: a quote or a backslash in
//! a branch name cannot break the JSON.

mod activity;
mod auth;
mod card;
mod client;
mod config;
mod hook;
mod reply;

pub use activity::*;
pub use auth::*;
pub use card::*;
pub use client::Client;
pub use config::*;
pub use reply::*;

use askama::Template;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::domain::{AckFacts, Address, Delivery};
use crate::domain::{RunRow, RunStatus, StepRow, StepStatus, TestFailureRow};
use crate::render::{self, ResultRow, ResultView};

/// Delivery targets `teams:<webhook name>`: POST to that webhook's `follow_up_url`.
pub const TARGET_PREFIX: &str = "teams:";

/// Teams' message size limit; cards are fitted under it, with room to spare.
pub const MAX_MESSAGE_BYTES: usize = 28 * 1024;

/// The Adaptive Card version Workflows and every Teams client accept.
pub const CARD_VERSION: &str = "1.4";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::RunId;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/teams");
    const SAMPLE_TOKEN: &str = "mEVCLCRJfhz1YDb7NUBtBS0y2u7unCXoab0DP21W1hA=";
    const WORKED_TOKEN: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const WORKED_BODY: &[u8] = br#"{"type":"message","text":"<at>BuildBot</at> ping"}"#;
    const WORKED_HEADER: &str = "HMAC N/BkNu/Z1Tf9XmccX2qigYsVUOslcs/rz7qK8IKChQ0=";

    fn key(token: &str) -> Vec<u8> {
        STANDARD.decode(token).unwrap()
    }

    fn sample(name: &str) -> Vec<u8> {
        std::fs::read(format!("{FIXTURES}/{name}")).unwrap()
    }

    #[test]
    fn the_worked_example_verifies() {
        let key = key(WORKED_TOKEN);
        assert_eq!(verify(Some(WORKED_HEADER), WORKED_BODY, &[&key]), Ok(0));
        // The scheme is case-insensitive; surrounding spaces are tolerated.
        let lower = WORKED_HEADER.replacen("HMAC", "hmac", 1);
        assert_eq!(
            verify(Some(&format!(" {lower} ")), WORKED_BODY, &[&key]),
            Ok(0)
        );
    }

    #[test]
    fn the_worked_examples_negatives_fail() {
        let key = key(WORKED_TOKEN);
        // Each header was computed the wrong way (protocol notes §8.3).
        for mac in [
            "Xa3InxP24rV7F4nkdyoxy0eLB5vo/jyRb29cmWMbcaI=", // key not base64-decoded
            "VTYZw4k4mMCI1J7WGa3vkas9U/ziQHrogXPbmgAd7YY=", // body + trailing newline
            "FF6one3vDogm4UbgOxCl3zQHkfZphHtiem0z6mnqo0E=", // body re-serialised
            "CdFF3I0FD3Ms4gNQol/9TEIJI+n5pC2LdMLzXHYz/lA=", // body pretty-printed
        ] {
            let header = format!("HMAC {mac}");
            assert_eq!(
                verify(Some(&header), WORKED_BODY, &[&key]),
                Err(AuthError::Mismatch),
                "{mac}"
            );
        }
        // And the other way round: the right MAC over a changed body.
        let mut with_newline = WORKED_BODY.to_vec();
        with_newline.push(b'\n');
        assert_eq!(
            verify(Some(WORKED_HEADER), &with_newline, &[&key]),
            Err(AuthError::Mismatch)
        );
        // The token's text used as the key.
        assert_eq!(
            verify(Some(WORKED_HEADER), WORKED_BODY, &[WORKED_TOKEN.as_bytes()]),
            Err(AuthError::Mismatch)
        );
    }

    #[test]
    fn both_full_samples_verify_with_their_token_and_pick_the_right_webhook() {
        let other = key(WORKED_TOKEN);
        let right = key(SAMPLE_TOKEN);
        for (body, header) in [
            (
                "sample1.json",
                "HMAC cNZs4wJSlBrtQkMUNjd0P4kPpj4p3RXjDQ+4OWfhbSg=",
            ),
            (
                "sample2.json",
                "HMAC H3dbCL/+f56yJz634HjI5BFbYaPBBlj5OdS37GDtQro=",
            ),
        ] {
            let body = sample(body);
            assert_eq!(verify(Some(header), &body, &[&other, &right]), Ok(1));
            assert_eq!(
                verify(Some(header), &body, &[&other]),
                Err(AuthError::Mismatch)
            );
        }
    }

    #[test]
    fn signing_gives_the_worked_examples_header() {
        assert_eq!(sign(&key(WORKED_TOKEN), WORKED_BODY), WORKED_HEADER);
        let (text, _) = command_text(
            &format!("<at>x</at> {}", crate::domain::text::escape_text("a & <b>")),
            None,
        );
        assert_eq!(text, "a & <b>");
    }

    #[test]
    fn malformed_headers_and_empty_bodies_fail() {
        let key = key(WORKED_TOKEN);
        let mac = WORKED_HEADER.trim_start_matches("HMAC ");
        let cases = [
            (None, AuthError::Missing),
            (Some(format!("Bearer {mac}")), AuthError::Malformed),
            (Some(format!("HMAC{mac}")), AuthError::Malformed),
            (Some(format!("HMAC {}", &mac[..20])), AuthError::Malformed),
            (Some("HMAC not-base64!".to_string()), AuthError::Malformed),
            (
                Some(format!("HMAC {}", STANDARD.encode([0u8; 31]))),
                AuthError::Malformed,
            ),
        ];
        for (header, expected) in cases {
            assert_eq!(
                verify(header.as_deref(), WORKED_BODY, &[&key]),
                Err(expected),
                "{header:?}"
            );
        }
        assert_eq!(
            verify(Some(WORKED_HEADER), b"", &[&key]),
            Err(AuthError::EmptyBody)
        );
        assert_eq!(
            verify(Some(WORKED_HEADER), WORKED_BODY, &[]),
            Err(AuthError::Mismatch)
        );
    }

    #[test]
    fn parses_the_samples_leniently() {
        let first = parse_activity(&sample("sample1.json")).unwrap();
        assert_eq!(first.message_id(), "1716220800123");
        assert_eq!(first.own_mention().as_deref(), Some("BuildBot"));
        assert_eq!(first.user_id(), "3a7c9e21-5b4d-4f60-8e12-9d0c1b2a3f45");
        assert_eq!(first.user_name(), "Ada Lovelace");
        assert_eq!(first.thread_root().as_deref(), Some("1716220800123"));
        assert_eq!(
            first.channel(),
            (
                "19:5e2f0c4d9b8a47e1a3c6d7f8091a2b3c@thread.tacv2".to_string(),
                "19:5e2f0c4d9b8a47e1a3c6d7f8091a2b3c@thread.tacv2".to_string()
            )
        );
        assert_eq!(
            first.team().0,
            "19:Qm9ndXNUZWFtSWQtb25seS1mb3ItZG9jcw1@thread.tacv2"
        );
        let second = parse_activity(&sample("sample2.json")).unwrap();
        assert_eq!(second.user_name(), "José Müller");
        assert_eq!(second.thread_root().as_deref(), Some("1716220800123"));
        assert_ne!(second.message_id(), "1716220800123");

        let bare = parse_activity(
            br#"{"id":"1","from":null,"channelData":null,"entities":[{"type":"clientInfo"}],"x":[1]}"#,
        )
        .unwrap();
        assert_eq!(bare.own_mention(), None);
        assert_eq!(
            (bare.user_id(), bare.channel().0),
            (String::new(), String::new())
        );
        assert!(matches!(
            parse_activity(br#"{"text":"hi"}"#),
            Err(ParseError::NoId)
        ));
        assert!(matches!(parse_activity(b"[1"), Err(ParseError::Json(_))));
        assert_eq!(bare.check(), Err(ParseError::NoSender));
        assert_eq!(first.check(), Ok(()));
    }

    #[test]
    fn the_timestamp_is_read_as_teams_writes_it() {
        let mut activity = parse_activity(&sample("sample1.json")).unwrap();
        assert_eq!(activity.timestamp_ms(), Ok(Some(1_716_220_800_123)));
        for (text, ms) in [
            ("2024-05-20T16:00:00Z", Some(1_716_220_800_000)),
            ("2024-05-20T16:00:00.1234567Z", Some(1_716_220_800_123)),
            ("2024-05-20T18:00:00.123+02:00", Some(1_716_220_800_123)),
            ("2024-05-20T14:30:00.123-01:30", Some(1_716_220_800_123)),
        ] {
            activity.timestamp = Some(text.into());
            assert_eq!(activity.timestamp_ms(), Ok(ms), "{text}");
        }
        // The last two put a multi-byte character where an offset would be (no panic).
        for bad in [
            "yesterday",
            "",
            "2024-05-20T16:00:00+2:000",
            "1716220800123",
            "€aaaaa",
            "2024-05-20T16:00:00+\u{20ac}:0",
        ] {
            activity.timestamp = Some(bad.into());
            assert_eq!(activity.timestamp_ms(), Err(ParseError::Timestamp), "{bad}");
        }
        activity.timestamp = None;
        assert_eq!(activity.timestamp_ms(), Ok(None));
    }

    #[test]
    fn oversized_fields_and_other_content_types_are_refused() {
        let mut activity = parse_activity(&sample("sample1.json")).unwrap();
        activity.text = Some("x".repeat(MAX_TEXT_BYTES + 1));
        assert_eq!(
            activity.check().unwrap_err().to_string(),
            "text is too long: at most 28672 bytes"
        );
        let mut activity = parse_activity(&sample("sample1.json")).unwrap();
        activity.from.as_mut().unwrap().name = Some("n".repeat(MAX_FIELD_BYTES + 1));
        assert_eq!(
            activity.check().unwrap_err().to_string(),
            "from.name is too long: at most 1024 bytes"
        );
        assert_eq!(check_content_type(None), Ok(()));
        assert_eq!(
            check_content_type(Some("Application/JSON; charset=utf-8")),
            Ok(())
        );
        assert_eq!(
            check_content_type(Some("text/plain"))
                .unwrap_err()
                .to_string(),
            "the Content-Type must be application/json, not text/plain"
        );
        let deep = format!(
            "{{\"id\":\"1\",\"x\":{}{}}}",
            "[".repeat(50_000),
            "]".repeat(50_000)
        );
        assert_eq!(
            parse_activity(deep.as_bytes()).unwrap_err().to_string(),
            "the body is not a Teams activity: nested deeper than 32 levels"
        );
    }

    #[test]
    fn the_mention_is_removed_and_the_text_cleaned() {
        let cases = [
            // The two samples.
            (
                "<at>BuildBot</at>&nbsp;build api-server main\n",
                "build api-server main",
            ),
            (
                "<at>BuildBot</at> test web-ui --branch feature/login",
                "test web-ui --branch feature/login",
            ),
            // No space after the mention.
            ("<at>BuildBot</at>build web", "build web"),
            // Several mentions: the command follows ours; other people's are not its words.
            (
                "<at>BuildBot</at> <at>Larry Brown</at> please build x",
                "please build x",
            ),
            (
                "<at>Pranav Smith</at> <AT>BuildBot</AT> build feature/y",
                "build feature/y",
            ),
            // Mention not first: what follows it.
            ("Hey <at>BuildBot</at> build x", "build x"),
            // Nothing after it: what came before.
            ("build x <at>BuildBot</at>&nbsp;\n", "build x"),
            // Only the mention.
            ("<at>BuildBot</at>&nbsp;\n", ""),
            // HTML inside the text, entities decoded once.
            (
                "<at>BuildBot</at> <b>build</b>&nbsp;web &amp;lt;x&amp;gt; a &amp; b",
                "build web &lt;x&gt; a & b",
            ),
            // Emoji inside a mention; non-ASCII kept.
            (
                "<at>CapCoins</at>&nbsp;testing go go go <at><img alt=\"😀\" itemtype=\"http://schema.skype.com/Emoji\"></at>&nbsp;&nbsp;\n",
                "testing go go go",
            ),
            (
                "<at>BuildBot</at> build café-ünï 日本 &#x1F680;",
                "build café-ünï 日本 🚀",
            ),
            // A shortened pill: the first mention is ours.
            ("<at>Build</at> status 42", "status 42"),
        ];
        for (input, expected) in cases {
            let (command, _) = command_text(input, Some("BuildBot"));
            assert_eq!(command, expected, "{input}");
        }
        let (_, mention) = command_text("<at>BuildBot</at> build", None);
        assert_eq!(mention, "BuildBot");
    }

    #[test]
    fn the_command_grammar_is_mattermosts() {
        let is_job = &["build"][..];
        let (text, _) = command_text("<at>BuildBot</at>&nbsp;build api-server main\n", None);
        assert_eq!(
            crate::domain::parse_after_trigger(&text, is_job),
            crate::domain::Command::Run {
                job: "build".into(),
                args: "api-server main".into()
            }
        );
        let (text, _) = command_text("<at>BuildBot</at>", None);
        assert_eq!(
            crate::domain::parse_after_trigger(&text, is_job),
            crate::domain::Command::Help { job: None }
        );
    }

    fn run(status: RunStatus) -> RunRow {
        RunRow {
            run_id: RunId(7),
            origin: crate::domain::Origin {
                platform: crate::domain::Platform::Teams,
                user_name: "José \"Quote\" Müller\\".into(),
                ..crate::render::samples::run(status).origin
            },
            args: "branch=\"x\\y\"".into(),
            hook: "team".into(),
            started_at: Some(0),
            finished_at: Some(65_000),
            ..crate::render::samples::run(status)
        }
    }

    fn step(position: i64, name: &str, status: StepStatus) -> StepRow {
        StepRow {
            run_id: RunId(7),
            started_at: Some(0),
            finished_at: Some(1500),
            ..crate::render::samples::step(
                position,
                name,
                status,
                (status == StepStatus::Failed).then_some(2),
            )
        }
    }

    fn schema() -> jsonschema::Validator {
        let schema: serde_json::Value =
            serde_json::from_slice(&sample("adaptive-card.json")).unwrap();
        jsonschema::draft6::options().build(&schema).unwrap()
    }

    #[test]
    fn renders_test_result_cards_as_checked_in_and_valid() {
        let schema = schema();
        for (name, run, steps, failures) in crate::render::samples::scenarios() {
            let message = render_result(&run, &steps, &failures, "http://ci/runs/42", 9_999);
            let json = serde_json::to_value(&message).unwrap();
            let card = &json["attachments"][0]["content"];
            let errors: Vec<String> = schema
                .iter_errors(card)
                .map(|e| format!("{e} at {}", e.instance_path()))
                .collect();
            assert!(errors.is_empty(), "{name}: {errors:?}");
            assert_eq!(card["version"], "1.4");
            let text = serde_json::to_string_pretty(&json).unwrap();
            let path = format!("{FIXTURES}/card-{name}.json");
            if std::env::var_os("UPDATE_FIXTURES").is_some() {
                std::fs::write(&path, format!("{text}\n")).unwrap();
            }
            let expected = std::fs::read_to_string(&path).unwrap();
            assert_eq!(text, expected.trim_end(), "differs from {path}");
        }
    }

    #[test]
    fn a_card_too_big_for_teams_leaves_out_detail_and_says_so() {
        let mut steps = Vec::new();
        let mut failures = Vec::new();
        for i in 0..20 {
            steps.push(crate::render::samples::tested(
                i,
                &format!("Component {i}"),
                500,
                10,
            ));
            failures.extend(crate::render::samples::failures(i, &"suite".repeat(20), 10));
        }
        let run = crate::render::samples::run(RunStatus::Failed);
        let body = serde_json::to_string(&render_result(
            &run,
            &steps,
            &failures,
            "http://ci/runs/42",
            0,
        ))
        .unwrap();
        assert!(body.len() <= MAX_MESSAGE_BYTES, "{}", body.len());
        assert!(body.contains("Left out to fit in one message: names of failed tests."));
        assert!(body.contains("Component 19"), "every row is still there");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert!(schema().is_valid(&json["attachments"][0]["content"]));
    }

    #[test]
    fn the_result_card_has_status_facts_rows_and_a_link() {
        let steps = [
            step(0, "Server", StepStatus::Succeeded),
            step(1, "Web", StepStatus::Failed),
        ];
        let message = render_result(&run(RunStatus::Failed), &steps, &[], "http://ci/runs/7", 0);
        let json = serde_json::to_value(&message).unwrap();
        assert_eq!(json["type"], "message");
        let attachment = &json["attachments"][0];
        assert_eq!(
            attachment["contentType"],
            "application/vnd.microsoft.card.adaptive"
        );
        assert!(attachment["contentUrl"].is_null());
        let card = &attachment["content"];
        assert_eq!(
            (card["type"].as_str(), card["version"].as_str()),
            (Some("AdaptiveCard"), Some("1.4"))
        );
        // No escape Teams does not need: `#` and `\\` are plain text on a card (and a
        // needless `\\#` shows as a backslash on Teams mobile).
        let title = &card["body"][0]["items"][0];
        assert_eq!(title["text"], "build run #7 failed");
        assert_eq!(title["color"], "Attention");
        let by = &card["body"][0]["items"][1];
        assert_eq!(by["text"], "asked by José \"Quote\" Müller\\ · 1m 05s");
        // The facts say only what the title and the line under it do not.
        let facts = &card["body"][1]["facts"];
        assert_eq!(facts.as_array().unwrap().len(), 1, "{facts}");
        assert_eq!(facts[0]["title"], "Arguments");
        assert_eq!(facts[0]["value"], "branch=\"x\\y\"");
        let web = &card["body"][4]["columns"];
        assert_eq!(web[0]["items"][0]["text"], "Web");
        assert_eq!(web[1]["items"][0]["text"], "failed (exit 2)");
        assert_eq!(web[1]["items"][0]["color"], "Attention");
        assert_eq!(card["actions"][0]["type"], "Action.OpenUrl");
        assert_eq!(card["actions"][0]["url"], "http://ci/runs/7");
    }

    #[test]
    fn card_text_escapes_only_what_a_card_would_read_as_markup() {
        assert_eq!(md("web_client #3 <b> ~x~ `y`"), "web_client #3 <b> ~x~ `y`");
        assert_eq!(md("_x_ a*b* [link](u)"), "\\_x\\_ a\\*b\\* \\[link\\](u)");
        assert_eq!(md("- not a list"), "\u{200B}- not a list");
        assert_eq!(md("12. nor this"), "\u{200B}12. nor this");
        assert_eq!(md("1.5 and -x"), "1.5 and -x");
    }

    #[test]
    fn a_huge_result_stays_under_the_teams_limit() {
        let steps: Vec<StepRow> = (0..2000)
            .map(|i| {
                step(
                    i,
                    &"step with a long name ".repeat(5),
                    StepStatus::Succeeded,
                )
            })
            .collect();
        let delivery = render_follow_up(
            "team",
            &run(RunStatus::Succeeded),
            &steps,
            &[],
            "http://ci/runs/7",
            0,
        );
        assert!(
            delivery.body.len() <= MAX_MESSAGE_BYTES,
            "{}",
            delivery.body.len()
        );
        assert!(delivery.body.contains("more steps on the run page"));
        let json: serde_json::Value = serde_json::from_str(&delivery.body).unwrap();
        assert_eq!(
            json["attachments"][0]["content"]["actions"][0]["url"],
            "http://ci/runs/7"
        );
        assert_eq!(delivery.target, "teams:team");
        assert_eq!(
            delivery.thread, "",
            "a card at the top of the channel is ordered with nothing"
        );
        let mut in_thread = run(RunStatus::Succeeded);
        in_thread.thread_root_id = Some("1716220800123".into());
        assert_eq!(
            render_follow_up("team", &in_thread, &[], &[], "http://ci/runs/7", 0).thread,
            "teams:team|c1;messageid=1716220800123",
            "a thread orders its replies"
        );
    }

    #[test]
    fn replies_are_text_messages() {
        let text = render_ack(
            &AckFacts {
                run_id: crate::domain::RunId(7),
                job: "build",
                user: "José <b>",
                place: 2,
                starts_now: false,
                wait: None,
                args: "target=web",
                no_agent: None,
            },
            "http://ci/runs/7",
        );
        assert_eq!(
            text,
            "⏳ Queued run **#7** of **build** (target=web), asked by José &#60;b&#62;, position 2 in the \
             queue. [Details](http://ci/runs/7)"
        );
        let body = render_response(&text);
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["type"], "message");
        assert_eq!(json["text"], text);
        let jobs = render_jobs(
            Some("biuld"),
            Some("build"),
            [("build", "Build it")].into_iter(),
            "BuildBot",
        );
        assert!(
            jobs.starts_with("❓ There is no job or command **biuld**. Did you mean **build**?"),
            "{jobs}"
        );
        assert!(jobs.contains("**build**: Build it"), "{jobs}");
    }
}
