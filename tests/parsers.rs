//! Property tests of every parser that takes outside input: Mattermost payloads (form and
//! JSON), Teams activities, their signatures and mentions, the command grammar, JUnit reports,
//! the configuration and job files. Arbitrary bytes and arbitrary structured input must never
//! panic and must fail with the documented error; what a valid encoder wrote must read back.
//! Cases per property: proptest's default (256) or fewer, so `cargo test` stays quick.

#![allow(clippy::unwrap_used)] // a failed unwrap fails the property, by design

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chatrun::catalog::{self, args};
use chatrun::chat::{self, mattermost, teams};
use chatrun::config::Config;
use chatrun::domain::{self, Command};
use chatrun::report::junit;
use proptest::prelude::*;
use serde_json::{Value, json};

/// Any bytes, short enough for many cases.
fn bytes() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..400)
}

/// Any JSON value, nested a few levels.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,20}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            proptest::collection::btree_map(".{0,8}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A JSON object with some of `keys`, each holding any value (wrong types included).
fn object_with(keys: &'static [&'static str]) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::btree_map(proptest::sample::select(keys), json_value(), 0..keys.len())
        .prop_map(|map| {
            let object: serde_json::Map<String, Value> =
                map.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
            serde_json::to_vec(&object).unwrap()
        })
}

/// Text made of the pieces chat parsers treat specially, and anything else.
fn chat_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("<at>".to_string()),
        Just("</at>".to_string()),
        Just("<AT id=\"0\">".to_string()),
        Just("<img src=x>".to_string()),
        Just("&nbsp;".to_string()),
        Just("&amp;".to_string()),
        Just("&#x1F600;".to_string()),
        Just("&#99999999;".to_string()),
        Just("&".to_string()),
        Just("<".to_string()),
        Just(">".to_string()),
        Just("#".to_string()),
        Just("\"".to_string()),
        Just("“".to_string()),
        Just("'".to_string()),
        Just("=".to_string()),
        Just("\u{a0}".to_string()),
        Just(" ".to_string()),
        Just("\n".to_string()),
        "[a-z0-9]{1,6}",
        ".{1,4}",
    ];
    proptest::collection::vec(piece, 0..16).prop_map(|pieces| pieces.concat())
}

/// A value for a Mattermost field: any text.
fn field() -> impl Strategy<Value = String> {
    ".{0,30}"
}

/// A short Mattermost- or parser-style message must be non-empty, one line, and short.
fn assert_reason(message: &str) {
    assert!(!message.trim().is_empty(), "an empty message");
    assert!(!message.contains('\n'), "{message:?}");
    assert!(message.chars().count() < 400, "{message:?}");
}

const CONTENT_TYPES: &[Option<&str>] = &[
    None,
    Some("application/json"),
    Some("application/x-www-form-urlencoded"),
    Some("APPLICATION/JSON; charset=utf-8"),
    Some("text/plain"),
    Some(""),
];

proptest! {
    #[test]
    fn mattermost_payloads_from_any_bytes_parse_or_say_why(
        content_type in proptest::sample::select(CONTENT_TYPES),
        body in prop_oneof![
            bytes(),
            json_value().prop_map(|v| serde_json::to_vec(&v).unwrap()),
            object_with(&["token", "post_id", "text", "timestamp", "user_id", "channel_id"]),
            chat_text().prop_map(String::into_bytes),
        ],
    ) {
        match mattermost::parse_payload(content_type, &body) {
            Ok(payload) => {
                if let Err(err) = payload.check() {
                    assert_reason(&err.to_string());
                }
                if let Err(err) = payload.timestamp_ms() {
                    assert_reason(&err.to_string());
                }
            }
            Err(err) => assert_reason(&err.to_string()),
        }
    }

    #[test]
    fn a_mattermost_form_reads_back_what_was_encoded(
        token in field(), text in field(), user_name in field(), channel_name in field(),
        post_id in "[a-z0-9]{26}", seconds in 0i64..i64::MAX / 1000,
    ) {
        let body = serde_urlencoded::to_string([
            ("channel_name", channel_name.as_str()), ("post_id", &post_id),
            ("text", &text), ("timestamp", &seconds.to_string()), ("token", &token),
            ("user_id", "u1"), ("user_name", &user_name),
        ]).unwrap();
        let payload = mattermost::parse_payload(
            Some("application/x-www-form-urlencoded"), body.as_bytes()).unwrap();
        prop_assert_eq!(&payload.token, &token);
        prop_assert_eq!(&payload.text, &text);
        prop_assert_eq!(&payload.user_name, &user_name);
        prop_assert_eq!(&payload.channel_name, &channel_name);
        prop_assert_eq!(&payload.post_id, &post_id);
        prop_assert_eq!(payload.timestamp_ms(), Ok(seconds * 1000));
        prop_assert_eq!(payload.check(), Ok(()));
    }

    #[test]
    fn a_mattermost_json_body_reads_back_what_was_encoded(
        token in field(), text in field(), user_id in "[a-z0-9]{1,26}", ms in any::<i64>(),
    ) {
        let body = serde_json::to_vec(&json!({
            "token": token, "text": text, "user_id": user_id, "timestamp": ms,
            "post_id": "p1", "unknown": {"nested": [1, 2, {"x": null}]}
        })).unwrap();
        let payload = mattermost::parse_payload(Some("application/json"), &body).unwrap();
        prop_assert_eq!(&payload.token, &token);
        prop_assert_eq!(&payload.text, &text);
        prop_assert_eq!(&payload.user_id, &user_id);
        prop_assert_eq!(payload.timestamp_ms(), Ok(ms));
    }

    #[test]
    fn mattermost_tokens_match_only_themselves(
        given in ".{0,40}", accepted in proptest::collection::vec(".{0,40}", 0..4),
    ) {
        prop_assert_eq!(
            mattermost::token_matches(&given, &accepted),
            accepted.contains(&given)
        );
    }

    #[test]
    fn teams_activities_from_any_bytes_parse_or_say_why(
        body in prop_oneof![
            bytes(),
            json_value().prop_map(|v| serde_json::to_vec(&v).unwrap()),
            object_with(&["id", "timestamp", "text", "from", "conversation", "channelData",
                "entities", "type"]),
        ],
    ) {
        match teams::parse_activity(&body) {
            Ok(activity) => {
                prop_assert!(!activity.message_id().trim().is_empty());
                if let Err(err) = activity.check() {
                    assert_reason(&err.to_string());
                }
                if let Err(err) = activity.timestamp_ms() {
                    assert_reason(&err.to_string());
                }
                let _ = (activity.user_id(), activity.user_name(), activity.team(),
                    activity.channel(), activity.own_mention(), activity.thread_root());
            }
            Err(err) => assert_reason(&err.to_string()),
        }
    }

    #[test]
    fn a_teams_activity_reads_back_what_was_encoded(
        id in "[0-9]{1,16}", text in chat_text(), name in field(), aad in "[a-f0-9-]{1,36}",
        ms in 0u64..253_402_300_799_000,
    ) {
        let at = UNIX_EPOCH + Duration::from_millis(ms);
        let body = serde_json::to_vec(&json!({
            "type": "message", "id": id, "text": text,
            "timestamp": humantime::format_rfc3339_millis(at).to_string(),
            "from": {"id": "29:x", "name": name, "aadObjectId": aad},
            "conversation": {"id": format!("19:c@thread.tacv2;messageid={id}")},
        })).unwrap();
        let activity = teams::parse_activity(&body).unwrap();
        prop_assert_eq!(activity.message_id(), id.as_str());
        prop_assert_eq!(activity.text.as_deref(), Some(text.as_str()));
        prop_assert_eq!(activity.user_id(), aad);
        prop_assert_eq!(activity.user_name(), name);
        prop_assert_eq!(activity.thread_root(), Some(id));
        prop_assert_eq!(activity.timestamp_ms(), Ok(Some(i64::try_from(ms).unwrap())));
    }

    #[test]
    fn teams_timestamps_never_panic(text in prop_oneof![
        ".{0,40}",
        "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})?",
    ]) {
        let activity = teams::Activity { timestamp: Some(text), ..Default::default() };
        if let Err(err) = activity.timestamp_ms() {
            prop_assert_eq!(err, teams::ParseError::Timestamp);
        }
    }

    #[test]
    fn the_mention_is_stripped_from_any_text(text in chat_text(), name in proptest::option::of(".{0,10}")) {
        let (command, mention) = teams::command_text(&text, name.as_deref());
        for part in [&command, &mention] {
            prop_assert_eq!(part.trim(), part.as_str());
            prop_assert!(!part.contains("  "), "{:?}", part);
            prop_assert!(!part.contains('\n') && !part.contains('\u{a0}'), "{:?}", part);
        }
    }

    #[test]
    fn a_mention_and_a_command_read_back(
        name in "[A-Za-z][A-Za-z0-9]{0,12}",
        words in proptest::collection::vec("[a-z0-9./=-]{1,10}", 0..5),
        space in prop_oneof![Just(" "), Just("&nbsp;"), Just("\u{a0}"), Just(" \n ")],
    ) {
        let command = words.join(" ");
        let text = format!("<at>{name}</at>{space}{}\n", words.join(space));
        let (got, mention) = teams::command_text(&text, Some(&name));
        prop_assert_eq!(got, command);
        prop_assert_eq!(mention, name);
    }

    #[test]
    fn a_teams_signature_verifies_its_body_only(
        key in proptest::collection::vec(any::<u8>(), 1..64),
        other in proptest::collection::vec(any::<u8>(), 1..64),
        body in proptest::collection::vec(any::<u8>(), 1..200),
        flip in any::<prop::sample::Index>(),
    ) {
        let header = teams::sign(&key, &body);
        let keys: [&[u8]; 2] = [&other, &key];
        let found = teams::verify(Some(&header), &body, &keys).unwrap();
        prop_assert!(found == 1 || other == key);
        let mut changed = body.clone();
        let i = flip.index(changed.len());
        changed[i] ^= 0x01;
        prop_assert_eq!(teams::verify(Some(&header), &changed, &[&key]), Err(teams::AuthError::Mismatch));
    }

    #[test]
    fn teams_verify_takes_any_header_and_body(header in proptest::option::of(".{0,80}"), body in bytes()) {
        let key = [7u8; 32];
        prop_assert!(teams::verify(header.as_deref(), &body, &[&key]).is_err());
    }

    #[test]
    fn the_command_grammar_takes_any_text(
        text in prop_oneof![chat_text(), ".{0,60}"],
        jobs in proptest::collection::vec("[a-z][a-z0-9-]{0,8}", 0..4),
    ) {
        let jobs: Vec<&str> = jobs.iter().map(String::as_str).collect();
        for command in [domain::parse_command(&text, &jobs), domain::parse_after_trigger(&text, &jobs)] {
            if let Command::Run { job, .. } = &command {
                prop_assert!(jobs.contains(&job.as_str()));
            }
        }
        let _ = domain::parse_run_id(&text);
        let _ = args::split_words(&text);
    }

    #[test]
    fn a_job_and_its_arguments_read_back(
        job in "[a-z][a-z0-9-]{0,8}".prop_filter("not a command", |j| !domain::BUILT_INS.contains(&j.as_str())),
        sigil in prop_oneof![Just("#"), Just("!"), Just("/"), Just("@"), Just("")],
        args in proptest::collection::vec("[A-Za-z0-9._/=-]{1,12}", 0..4),
    ) {
        let args = args.join(" ");
        let command = domain::parse_command(&format!("{sigil}{job} {args}"), &[&job]);
        prop_assert_eq!(command, Command::Run { job: job.clone(), args: args.clone() });
        let words = args::split_words(&args).unwrap();
        prop_assert_eq!(words.join(" "), args);
    }

    #[test]
    fn run_numbers_read_back(n in any::<i64>()) {
        let expected = (n > 0).then_some(n);
        prop_assert_eq!(domain::parse_run_id(&n.to_string()), expected);
        prop_assert_eq!(domain::parse_run_id(&format!(" #{n} ")), expected);
    }

    #[test]
    fn the_replay_window_is_the_distance_either_way(
        sent in any::<i64>(), now in any::<i64>(), window_ms in 1u64..86_400_000,
    ) {
        let window = Duration::from_millis(window_ms);
        let distance = (i128::from(now) - i128::from(sent)).abs();
        let result = chat::check_replay_window(sent, now, window);
        prop_assert_eq!(result.is_ok(), distance <= i128::from(window_ms));
        if let Err(err) = result {
            assert_reason(&err.to_string());
        }
    }

    #[test]
    fn json_depth_never_panics(body in prop_oneof![
        bytes(),
        "[\\[\\]{}\"\\\\a]{0,100}".prop_map(String::into_bytes),
    ]) {
        let _ = chat::json_depth_within(&body, chat::MAX_JSON_DEPTH);
    }

    #[test]
    fn junit_from_any_bytes_parses_or_says_why(body in prop_oneof![
        bytes(),
        proptest::collection::vec(prop_oneof![
            Just("<testsuites>"), Just("</testsuites>"), Just("<testsuite name=\"s\">"),
            Just("</testsuite>"), Just("<testcase name=\"t\" time=\"1.5\">"), Just("</testcase>"),
            Just("<testcase name=\"u\"/>"), Just("<testcase name=\"v\" time=\"1e300\"/>"), Just("<failure message=\"m\">"), Just("</failure>"),
            Just("<error/>"), Just("<skipped/>"), Just("<![CDATA[x]]>"), Just("&amp;"),
            Just("&bogus;"), Just("<?xml version=\"1.0\"?>"), Just("<!-- c -->"), Just("text"),
            Just("<"), Just(">"), Just("\""),
        ], 0..20).prop_map(|pieces| pieces.concat().into_bytes()),
    ]) {
        match junit::parse(&body) {
            Ok(summary) => {
                prop_assert!(summary.failed + summary.skipped <= summary.tests);
                prop_assert_eq!(summary.failures.len() as u64, summary.failed);
            }
            Err(err) => assert_reason(&err.to_string()),
        }
    }

    #[test]
    fn a_junit_report_counts_what_it_lists(
        cases in proptest::collection::vec(("[a-z]{1,8}", 0u8..4, 0u32..5000), 0..12),
        wrapped in any::<bool>(),
    ) {
        let mut xml = String::from("<testsuite name=\"suite\">");
        for (name, outcome, ms) in &cases {
            let time = format!("{}.{:03}", ms / 1000, ms % 1000);
            let inner = match outcome {
                0 => "",
                1 => "<failure message=\"boom\">trace</failure>",
                2 => "<error message=\"crash\"/>",
                _ => "<skipped/>",
            };
            xml.push_str(&format!("<testcase classname=\"c\" name=\"{name}\" time=\"{time}\">{inner}</testcase>"));
        }
        xml.push_str("</testsuite>");
        if wrapped {
            xml = format!("<?xml version=\"1.0\"?><testsuites>{xml}</testsuites>");
        }
        let summary = junit::parse(xml.as_bytes()).unwrap();
        prop_assert_eq!(summary.tests, cases.len() as u64);
        let failed: Vec<&str> = cases.iter().filter(|c| c.1 == 1 || c.1 == 2).map(|c| c.0.as_str()).collect();
        prop_assert_eq!(summary.failed, failed.len() as u64);
        prop_assert_eq!(summary.skipped, cases.iter().filter(|c| c.1 == 3).count() as u64);
        let names: Vec<&str> = summary.failures.iter().map(|f| f.name.as_str()).collect();
        prop_assert_eq!(names, failed);
        prop_assert_eq!(summary.duration_ms, cases.iter().map(|c| i64::from(c.2)).sum::<i64>());
    }
}

/// Keys and section headers the configuration knows, to build plausible files from.
const CONFIG_KEYS: &[&str] = &[
    "listen",
    "workers",
    "public_url",
    "replay_window",
    "max_body_bytes",
    "busy_timeout_ms",
    "rate_limit_per_minute",
    "lease_secs",
    "[mattermost]",
    "tokens",
    "url",
    "bot_token",
    "[[teams.webhooks]]",
    "name",
    "secret",
    "[web]",
    "password",
    "open",
    "[outbox]",
    "give_up_after",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn the_configuration_from_any_text_parses_or_lists_problems(
        text in prop_oneof![
            ".{0,200}",
            proptest::collection::vec(
                (proptest::sample::select(CONFIG_KEYS), prop_oneof![
                    Just("\"\"".to_string()), Just("0".to_string()), Just("true".to_string()),
                    Just("[]".to_string()), Just("\"5m\"".to_string()),
                    "-?[0-9]{1,12}", "\"[a-z0-9:/.= +-]{0,20}\"",
                ]),
                0..10,
            ).prop_map(|lines| lines.iter().map(|(k, v)| {
                if k.starts_with('[') { format!("{k}\n") } else { format!("{k} = {v}\n") }
            }).collect::<String>()),
        ],
        env in proptest::collection::vec(("CHATRUN_[A-Z_]{1,24}", ".{0,20}"), 0..3),
    ) {
        match Config::parse("fuzz.toml", &text, env) {
            Ok(config) => {
                prop_assert!(config.workers <= 256);
                prop_assert!(config.replay_window >= Duration::from_secs(1));
            }
            Err(err) => {
                prop_assert!(!err.0.is_empty());
                for problem in &err.0 {
                    prop_assert!(!problem.message.trim().is_empty(), "{:?}", problem);
                }
            }
        }
    }

    #[test]
    fn numeric_keys_are_checked_against_their_range(workers in 0u64..300, window in 0u64..200_000) {
        let text = format!("workers = {workers}\nreplay_window = \"{window}s\"\n");
        let result = Config::parse("c.toml", &text, std::iter::empty());
        let valid = (0..=256).contains(&workers) && (1..=86_400).contains(&window);
        prop_assert_eq!(result.is_ok(), valid, "{:?}", result.err());
    }

    #[test]
    fn job_files_from_any_text_parse_or_list_problems(
        name in prop_oneof!["[a-z0-9._-]{0,10}", ".{0,10}"],
        text in prop_oneof![
            ".{0,200}",
            proptest::collection::vec(prop_oneof![
                Just("[[steps]]\n"), Just("name = \"x\"\n"), Just("run = [\"true\"]\n"),
                Just("run = []\n"), Just("run = [\"echo\", \"{branch}\"]\n"),
                Just("timeout = \"soon\"\n"), Just("timeout = \"1m\"\n"), Just("[params.branch]\n"),
                Just("pattern = \"[\"\n"), Just("pattern = \"[a-z]+\"\n"), Just("default = \"main\"\n"),
                Just("choices = [\"a\", \"b\"]\n"), Just("positional = 1\n"), Just("[allow]\n"),
                Just("users = [\"alice\"]\n"), Just("concurrency = 0\n"), Just("on_new = \"replace\"\n"),
                Just("junit = \"**/*.xml\"\n"), Just("junit = \"[\"\n"), Just("[steps.env]\n"),
                Just("\"A=B\" = \"c\"\n"), Just("keep_going = true\n"),
            ], 0..12).prop_map(|lines| lines.concat()),
        ],
    ) {
        match catalog::parse_job(&name, &text, Path::new("/jobs")) {
            Ok(job) => {
                prop_assert_eq!(&job.name, &name);
                prop_assert!(!job.steps.is_empty());
                prop_assert!(job.steps.iter().all(|s| !s.run.is_empty() && !s.run[0].is_empty()));
            }
            Err(problems) => {
                prop_assert!(!problems.is_empty());
                for (key, message) in &problems {
                    prop_assert!(!message.trim().is_empty(), "{}: {:?}", key, message);
                }
            }
        }
    }

    #[test]
    fn a_job_file_reads_back_its_steps(
        steps in proptest::collection::vec(
            ("[A-Za-z0-9][A-Za-z0-9 _.-]{0,20}", proptest::collection::vec("[^{}\\x00]{1,12}", 1..4)),
            1..5,
        ),
        description in "[^\\x00-\\x1f]{0,30}",
        timeout_secs in 1u64..100_000,
    ) {
        let mut job = toml::Table::new();
        job.insert("description".into(), description.clone().into());
        job.insert("timeout".into(), format!("{timeout_secs}s").into());
        let steps_toml: Vec<toml::Value> = steps.iter().map(|(name, run)| {
            let mut step = BTreeMap::new();
            step.insert("name".to_string(), toml::Value::from(name.clone()));
            step.insert("run".to_string(), toml::Value::from(run.clone()));
            toml::Value::Table(step.into_iter().collect())
        }).collect();
        job.insert("steps".into(), steps_toml.into());
        let text = toml::to_string(&job).unwrap();
        let parsed = catalog::parse_job("job", &text, Path::new("/jobs")).unwrap();
        prop_assert_eq!(parsed.description, description.trim());
        prop_assert_eq!(parsed.timeout, Duration::from_secs(timeout_secs));
        let got: Vec<(String, Vec<String>)> =
            parsed.steps.into_iter().map(|s| (s.name, s.run)).collect();
        let want: Vec<(String, Vec<String>)> =
            steps.into_iter().map(|(n, r)| (n.trim().to_string(), r)).collect();
        prop_assert_eq!(got, want);
    }
}

#[test]
fn a_timestamp_formatted_now_reads_back() {
    // The one time every test helper sends: not an edge case, but it must hold.
    let now = SystemTime::now();
    let activity = teams::Activity {
        timestamp: Some(humantime::format_rfc3339_millis(now).to_string()),
        ..Default::default()
    };
    let ms = now.duration_since(UNIX_EPOCH).unwrap().as_millis();
    assert_eq!(
        activity.timestamp_ms(),
        Ok(Some(i64::try_from(ms).unwrap()))
    );
}
