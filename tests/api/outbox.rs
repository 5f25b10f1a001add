//! The outbox under faults: a chat server that is down, then failing, then throttling, then
//! back; answers lost after a post was made; replies given up after `outbox.give_up_after` and
//! shown as not delivered.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::helpers::{
    TEAMS_TOKEN, TestApp, WORKFLOW_PATH, spawn_app_configured, spawn_app_with_chat,
    teams_signature, wait_for,
};
use chatrun::domain::RunId;
use chatrun::store::DeliveryState;

/// The deliveries of run `id` once `done` holds for the first.
async fn first_delivery_when(
    app: &TestApp,
    id: i64,
    done: impl Fn(&DeliveryState) -> bool,
) -> DeliveryState {
    wait_for(|| async {
        let list = app.store.deliveries(RunId(id)).await.unwrap();
        list.into_iter().next().filter(|d| done(d))
    })
    .await
}

#[tokio::test]
async fn a_reply_still_failing_after_give_up_after_is_shown_as_not_delivered_with_why() {
    let app = spawn_app_configured("[outbox]\ngive_up_after = \"1s\"\n").await;
    Mock::given(method("POST"))
        .and(path("/api/v4/posts"))
        .respond_with(ResponseTemplate::new(500).set_body_string("database unavailable"))
        .with_priority(1)
        .mount(&app.mattermost)
        .await;

    app.trigger("#build", "giveup1").await;

    let dead = first_delivery_when(&app, 1, |d| d.status == "dead").await;
    assert!(dead.attempts > 1, "retried before giving up: {dead:?}");
    assert!(
        dead.sent_at.is_none() && dead.created_at + 1000 <= chatrun::store::now_ms(),
        "given up no sooner than give_up_after: {dead:?}"
    );
    let page = app.get("/runs/1").await.text().await.unwrap();
    assert!(
        page.contains(
            "not delivered: gave up after 1s: 500 Internal Server Error: database unavailable"
        ),
        "{page}"
    );
}

#[tokio::test]
async fn a_reply_being_retried_shows_its_last_error_and_next_attempt() {
    let app = spawn_app_configured("[outbox]\nretry_max_secs = 3600\n").await;
    Mock::given(method("POST"))
        .and(path("/api/v4/posts"))
        .respond_with(ResponseTemplate::new(503).set_body_string("maintenance"))
        .with_priority(1)
        .mount(&app.mattermost)
        .await;

    app.trigger("#build", "pending1").await;

    first_delivery_when(&app, 1, |d| d.status == "pending" && d.last_error.is_some()).await;
    let page = app.get("/runs/1").await.text().await.unwrap();
    assert!(
        page.contains("not delivered yet: 503 Service Unavailable: maintenance; next attempt"),
        "{page}"
    );
    assert!(page.contains(">pending<"), "{page}");
}

/// Sends `#build` as Mattermost post `post_id`, which the fake places in a thread: the
/// acknowledgement then goes through the outbox too.
async fn trigger_in_thread(app: &TestApp, post_id: &str) {
    let response = app.post_form(&app.payload("#build", post_id)).await;
    assert_eq!(response.status(), 200);
    let reply: Value = response.json().await.unwrap();
    assert_eq!(
        reply,
        json!({}),
        "a thread's acknowledgement is posted, not answered"
    );
}

/// Sends `#build` as Mattermost post `post_id`, wherever it turns out to be.
async fn trigger(app: &TestApp, post_id: &str) {
    let response = app.post_form(&app.payload("#build", post_id)).await;
    assert_eq!(response.status(), 200);
}

/// Mentions the Teams webhook in the thread of `root` with message `id`.
async fn trigger_teams(app: &TestApp, id: &str, root: &str) {
    let body = serde_json::to_vec(&json!({
        "type": "message", "id": id, "timestamp": crate::helpers::teams_now(),
        "channelId": "msteams",
        "from": {"id": "29:user", "name": "Ada Lovelace", "aadObjectId": "3a7c9e21-aad"},
        "conversation": {"isGroup": true, "id": format!("19:chan@thread.tacv2;messageid={root}")},
        "text": "<at>BuildBot</at>&nbsp;build\n",
        "channelData": {"teamsChannelId": "19:chan@thread.tacv2",
            "channel": {"id": "19:chan@thread.tacv2"}, "team": {"id": "19:team@thread.tacv2"}}
    }))
    .unwrap();
    let signature = teams_signature(TEAMS_TOKEN, &body);
    let response = app
        .post_teams("/hooks/teams", Some(&signature), &body)
        .await;
    assert_eq!(response.status(), 200);
}

/// Every delivery of runs `1..=runs`, with its run, oldest first.
async fn all_deliveries(app: &TestApp, runs: i64) -> Vec<(i64, DeliveryState)> {
    let mut all = Vec::new();
    for run in 1..=runs {
        for delivery in app.store.deliveries(RunId(run)).await.unwrap() {
            all.push((run, delivery));
        }
    }
    all.sort_by_key(|(_, d)| d.outbox_id);
    all
}

#[tokio::test]
async fn replies_arrive_once_and_in_order_per_thread_through_refusal_500_and_429() {
    let mut chat = FakeChat::start(Mode::Hold).await;
    chat.with(|chat| {
        for (post, root) in [("mm1a", "root1"), ("mm1b", "root1")] {
            chat.roots.insert(post.into(), root.into());
        }
        for (post, root) in [("mm2a", "root2"), ("mm2b", "root2")] {
            chat.roots.insert(post.into(), root.into());
        }
    });
    let app = spawn_app_with_chat(&chat.url(), "[outbox]\nretry_max_secs = 1\n").await;

    // Two runs in each of three threads: runs 1 and 4 in Mattermost thread root1, 2 and 5 in
    // root2 (each run an acknowledgement and a result there), 3 and 6 in one Teams
    // conversation (a result card each). The first acknowledgement's POST is held unanswered
    // while the rest queue up behind it.
    trigger_in_thread(&app, "mm1a").await;
    trigger_in_thread(&app, "mm2a").await;
    trigger_teams(&app, "1716220900101", "1716220900100").await;
    trigger_in_thread(&app, "mm1b").await;
    trigger_in_thread(&app, "mm2b").await;
    trigger_teams(&app, "1716220900102", "1716220900100").await;
    for run in 1..=6 {
        app.finished_run(run).await;
    }
    assert_eq!(all_deliveries(&app, 6).await.len(), 10);
    wait_for(|| async { chat.with(|chat| !chat.seen.is_empty()).then_some(()) }).await;

    // Down: the held request is hung up on (its outcome unknown), then connecting is refused.
    chat.down().await;
    wait_for(|| async {
        let refused = all_deliveries(&app, 6)
            .await
            .into_iter()
            .filter(|(_, d)| {
                d.last_error
                    .as_deref()
                    .is_some_and(|e| e.contains("cannot connect"))
            })
            .count();
        (refused >= 3).then_some(())
    })
    .await;
    // Back, but failing; then throttling; then well.
    chat.set(Mode::Fail);
    chat.up().await;
    chat.answered(500, 3).await;
    chat.set(Mode::Throttle);
    chat.answered(429, 3).await;
    chat.set(Mode::Ok);
    let deliveries = wait_for(|| async {
        let all = all_deliveries(&app, 6).await;
        all.iter().all(|(_, d)| d.status == "sent").then_some(all)
    })
    .await;

    let (posts, cards, seen) = chat.with(|c| (c.posts.clone(), c.cards.clone(), c.seen.clone()));
    // Each reply once: the key of every Mattermost delivery is on exactly one post, every
    // Teams card came once.
    let mut order: HashMap<String, i64> = HashMap::new();
    for (run, d) in &deliveries {
        let key = if d.target == "mattermost.post" {
            chatrun::outbox::delivery_key(Some(RunId(*run)), d.outbox_id, d.created_at)
        } else {
            format!("run {run}")
        };
        order.insert(key, d.outbox_id);
    }
    let keys: Vec<String> = posts
        .iter()
        .map(|p| p["props"]["chatrun_delivery"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(posts.len(), 8, "{keys:?}");
    let card_runs: Vec<String> = cards
        .iter()
        .map(|c| {
            let title = c["attachments"][0]["content"]["actions"][0]["title"]
                .as_str()
                .unwrap();
            format!("run {}", title.trim_start_matches("Open run #"))
        })
        .collect();
    assert_eq!(card_runs, ["run 3", "run 6"], "each card once, in order");
    let mut unique = keys.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 8, "no post twice: {keys:?}");
    assert!(keys.iter().all(|k| order.contains_key(k)), "{keys:?}");

    // In order per thread: the posts of each thread in the order they were queued.
    for root in ["root1", "root2"] {
        let queued: Vec<i64> = posts
            .iter()
            .filter(|p| p["root_id"] == root)
            .map(|p| order[p["props"]["chatrun_delivery"].as_str().unwrap()])
            .collect();
        assert_eq!(queued.len(), 4, "{root}: two acknowledgements, two results");
        assert!(
            queued.is_sorted(),
            "{root}: posted in queue order {queued:?}"
        );
    }

    // The held acknowledgement was posted again, within Mattermost's 30 s, with the same
    // pending_post_id (the key), so that a Mattermost that had made it would answer with it.
    let held = seen
        .iter()
        .find(|s| s.status == 0 && s.method == "POST")
        .expect("a request was left unanswered");
    assert!(
        seen.iter()
            .any(|s| s.at > held.at && s.key == held.key && s.status == 201),
        "{seen:?}"
    );
    assert!(
        posts
            .iter()
            .all(|p| p["pending_post_id"] == p["props"]["chatrun_delivery"]),
        "{posts:?}"
    );
    // Retry-After was honoured: after a 429, the same reply came no sooner than a second later.
    let throttled: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.status == 429 && s.key.is_some())
        .collect();
    assert!(!throttled.is_empty());
    for t in throttled {
        let next = seen
            .iter()
            .find(|s| s.at > t.at && s.key == t.key)
            .expect("tried again");
        assert!(
            next.at - t.at >= Duration::from_millis(950),
            "{:?} tried again after {:?}",
            t.key,
            next.at - t.at
        );
    }
}

#[tokio::test]
async fn drain_sends_what_is_due_leaves_failures_for_later_and_stops_at_its_deadline() {
    let chat = FakeChat::start(Mode::Ok).await;
    let dir = tempfile::tempdir().unwrap();
    let config = chatrun::config::Config::parse(
        "test",
        &format!(
            "data_dir = \"{dir}/data\"\n[mattermost]\nurl = \"{url}\"\nbot_token = \"bot\"\n\
             [outbox]\nretry_base_ms = 60000\n",
            dir = dir.path().display(),
            url = chat.url()
        ),
        std::iter::empty(),
    )
    .unwrap();
    let store = crate::helpers::open_store(dir.path()).await;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mattermost =
        chatrun::chat::mattermost::Client::new(reqwest::Client::new(), config.mattermost.clone());
    let sender = chatrun::outbox::Sender {
        store: store.clone(),
        config: Arc::new(config),
        chat: chatrun::chat::Registry::new(vec![Arc::new(mattermost)]),
        owner: chatrun::runner::orphans::owner("outbox"),
    };
    let post = |root: &str, message: &str| {
        chatrun::chat::mattermost::render_post("chan1", Some(root), message)
    };
    let now = chatrun::store::now_ms();
    for (root, message) in [("a", "a1"), ("a", "a2"), ("b", "b1")] {
        store
            .enqueue_delivery(&post(root, message), now)
            .await
            .unwrap();
    }
    // In queue order: a1, a2, then b1, which fails.
    chat.with(|c| c.script.extend([Mode::Ok, Mode::Ok, Mode::Fail]));

    let delivered = sender
        .drain(Instant::now() + Duration::from_secs(20))
        .await
        .unwrap();

    assert_eq!(delivered, 2);
    let messages: Vec<Value> =
        chat.with(|c| c.posts.iter().map(|p| p["message"].clone()).collect());
    assert_eq!(messages, ["a1", "a2"]);
    assert_eq!(
        store
            .next_delivery_at()
            .await
            .unwrap()
            .map(|at| at > now + 40_000),
        Some(true),
        "b1 failed once and waits for its retry"
    );

    // A chat server that never answers does not hold shutdown up past the deadline.
    chat.set(Mode::Hold);
    store
        .enqueue_delivery(&post("c", "c1"), chatrun::store::now_ms())
        .await
        .unwrap();
    let started = Instant::now();
    let delivered = sender
        .drain(started + Duration::from_millis(300))
        .await
        .unwrap();
    assert_eq!(delivered, 0);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        chat.with(|c| c.seen.iter().filter(|s| s.status == 0).count()),
        1
    );
}

#[tokio::test]
async fn a_post_whose_answer_was_lost_is_sent_again_with_its_pending_post_id_and_shows_once() {
    let chat = FakeChat::start(Mode::Ok).await;
    chat.with(|chat| {
        chat.roots.insert("lost1".into(), "lostroot".into());
        chat.script.push_back(Mode::TakeAndHangUp);
    });
    let app = spawn_app_with_chat(&chat.url(), "").await;

    trigger_in_thread(&app, "lost1").await;

    let deliveries = wait_for(|| async {
        let list = app.store.deliveries(RunId(1)).await.unwrap();
        (list.len() == 2 && list.iter().all(|d| d.status == "sent")).then_some(list)
    })
    .await;
    let (posts, seen) = chat.with(|c| (c.posts.clone(), c.seen.clone()));
    assert_eq!(
        posts.len(),
        2,
        "the acknowledgement and the result, once each"
    );
    let ack_key = chatrun::outbox::delivery_key(
        Some(RunId(1)),
        deliveries[0].outbox_id,
        deliveries[0].created_at,
    );
    // Sent twice with one pending_post_id: Mattermost answered the repeat with its post.
    assert_eq!(deliveries[0].attempts, 2);
    let sent: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.method == "POST" && s.key.as_deref() == Some(ack_key.as_str()))
        .collect();
    assert_eq!(sent.len(), 2, "{seen:?}");
    assert_eq!(posts[0]["pending_post_id"], ack_key);
    assert!(
        !seen
            .iter()
            .any(|s| s.method == "GET" && s.path.ends_with("/posts")),
        "no search within Mattermost's window: {seen:?}"
    );
    assert!(!deliveries[0].blind);
}

#[tokio::test]
async fn beyond_mattermosts_window_a_lost_post_is_looked_for_page_by_page_in_a_busy_channel() {
    let chat = FakeChat::start(Mode::Ok).await;
    chat.with(|chat| {
        chat.roots.insert("lost1".into(), "lostroot".into());
        chat.script.push_back(Mode::TakeAndHangUp);
        // 450 posts of others come right after the lost one: it is on the search's third page.
        chat.flood_after_take = 450;
    });
    let app =
        spawn_app_with_chat(&chat.url(), "[mattermost]\npending_post_window_secs = 0\n").await;

    trigger_in_thread(&app, "lost1").await;

    let deliveries = wait_for(|| async {
        let list = app.store.deliveries(RunId(1)).await.unwrap();
        (list.len() == 2 && list.iter().all(|d| d.status == "sent")).then_some(list)
    })
    .await;
    let (posts, seen) = chat.with(|c| (c.posts.clone(), c.seen.clone()));
    let ours: Vec<&Value> = posts
        .iter()
        .filter(|p| p["props"]["chatrun_delivery"].is_string())
        .collect();
    assert_eq!(
        ours.len(),
        2,
        "the acknowledgement and the result, once each"
    );
    let pages: Vec<&str> = seen
        .iter()
        .filter(|s| {
            s.method == "GET" && s.path == "/api/v4/channels/chan0000000000000000000000/posts"
        })
        .map(|s| s.query.as_str())
        .collect();
    assert_eq!(
        pages,
        [
            "page=0&per_page=200",
            "page=1&per_page=200",
            "page=2&per_page=200"
        ],
        "newest first, until the lost post was found"
    );
    assert_eq!(deliveries[0].attempts, 2);
    assert!(!deliveries[0].blind);
}

#[tokio::test]
async fn a_lost_post_that_cannot_be_looked_for_is_sent_once_more_and_marked_as_maybe_twice() {
    let chat = FakeChat::start(Mode::Ok).await;
    chat.with(|chat| {
        chat.roots.insert("lost1".into(), "lostroot".into());
        chat.script.push_back(Mode::TakeAndHangUp);
        // A bot that may post in the channel but not read it; an older Mattermost that does
        // not drop a repeated pending_post_id.
        chat.search_status = Some(403);
        chat.dedup = false;
    });
    let app =
        spawn_app_with_chat(&chat.url(), "[mattermost]\npending_post_window_secs = 0\n").await;

    trigger_in_thread(&app, "lost1").await;

    let ack = first_delivery_when(&app, 1, |d| d.status == "sent").await;
    let seen = chat.with(|c| c.seen.clone());
    let searches = seen
        .iter()
        .filter(|s| s.method == "GET" && s.path.ends_with("/posts") && s.status == 403)
        .count();
    assert_eq!(searches, 3, "{seen:?}");
    // Posted once more without knowing: never lost, at most one duplicate, and said so.
    let ack_posts = chat.with(|c| {
        c.posts
            .iter()
            .filter(|p| {
                p["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("Queued run"))
            })
            .count()
    });
    assert_eq!(ack_posts, 2);
    assert!(ack.blind);
    let page = app.get("/runs/1").await.text().await.unwrap();
    assert!(page.contains("it may show twice"), "{page}");
    let api: Value = app.get("/api/runs/1").await.json().await.unwrap();
    assert_eq!(api["replies"][0]["maybe_duplicate"], true, "{api}");
}

#[tokio::test]
async fn a_stuck_reply_at_the_top_of_a_channel_holds_back_no_other() {
    let chat = FakeChat::start(Mode::Ok).await;
    // The trigger posts are unknown to Mattermost: results go to the top of the channel. Run
    // 1's result keeps failing.
    chat.with(|chat| {
        chat.unknown_posts = true;
        chat.refuse = Some("run #1 ".into());
    });
    let app = spawn_app_with_chat(&chat.url(), "").await;

    trigger(&app, "top1").await;
    app.finished_run(1).await;
    first_delivery_when(&app, 1, |d| d.attempts >= 2).await;
    trigger(&app, "top2").await;

    let second = first_delivery_when(&app, 2, |d| d.status == "sent").await;
    let first = app.store.deliveries(RunId(1)).await.unwrap();
    assert_eq!(first[0].status, "pending", "{first:?}");
    assert_eq!(second.attempts, 1);
}

#[tokio::test]
async fn a_thread_that_could_not_be_looked_up_is_looked_up_again_before_the_result() {
    let chat = FakeChat::start(Mode::Ok).await;
    chat.with(|chat| {
        chat.roots.insert("late1".into(), "lateroot".into());
        // Mattermost is restarting when the trigger comes: its look-up fails.
        chat.lookup_failures = 1;
    });
    let app = spawn_app_with_chat(&chat.url(), "").await;

    trigger(&app, "late1").await;

    first_delivery_when(&app, 1, |d| d.status == "sent").await;
    let posts = chat.with(|c| c.posts.clone());
    assert_eq!(posts.len(), 1, "{posts:?}");
    assert_eq!(
        posts[0]["root_id"], "lateroot",
        "the result is in the thread"
    );
    let run = app.store.get_run(RunId(1)).await.unwrap().unwrap();
    assert_eq!(run.thread_root_id.as_deref(), Some("lateroot"));
    assert!(!run.thread_unsettled);
}

#[tokio::test]
async fn a_teams_card_whose_answer_was_lost_is_sent_again_at_most_once() {
    let chat = FakeChat::start(Mode::Ok).await;
    chat.with(|chat| {
        chat.script.push_back(Mode::TakeAndHangUp);
        chat.script.push_back(Mode::TakeAndHangUp);
    });
    let app = spawn_app_with_chat(&chat.url(), "").await;

    trigger_teams(&app, "1716220900201", "1716220900201").await;

    let dead = wait_for(|| async {
        let list = app.store.deliveries(RunId(1)).await.unwrap();
        list.into_iter().next().filter(|d| d.status == "dead")
    })
    .await;
    assert_eq!(chat.with(|c| c.cards.len()), 2, "one repeat, no more");
    let page = app.get("/runs/1").await.text().await.unwrap();
    assert!(
        page.contains(
            "not delivered: may already be delivered (2 attempts ended without an answer"
        ),
        "{page}"
    );
    assert!(
        page.contains("not sent again to avoid a duplicate"),
        "{page}"
    );
    assert_eq!(dead.attempts, 3);
}

// ---------------------------------------------------------------------------------------------
// A fake chat server: Mattermost's REST API (the trigger look-up, posts, the post search) and the
// Teams Workflows URL on one port, raw HTTP/1.1 with one request per connection, so that it can
// go down (connection refused), hang up on a request it has read, or never answer.

/// What the fake does with a delivery: a POST (post or card), or the search for a post.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Answers as the real server does.
    Ok,
    /// 500 Internal Server Error.
    Fail,
    /// 429 with `Retry-After`, in turn a number of seconds (1) and an HTTP date (1 to 2 s on).
    Throttle,
    /// Reads the request and never answers (until it goes down).
    Hold,
    /// Takes the post or card, then hangs up without answering: a lost answer.
    TakeAndHangUp,
}

/// A request the fake received, and its answer's status (0: none).
#[derive(Debug, Clone)]
struct Seen {
    at: Instant,
    method: String,
    path: String,
    query: String,
    /// For a POST, which reply it is: a post's `props.chatrun_delivery`, a card's `run N`.
    key: Option<String>,
    status: u16,
}

struct Chat {
    mode: Mode,
    /// Drops a post repeated with a `pending_post_id` seen in the last 30 s, answering with the
    /// post already made, as Mattermost does (`deduplicateCreatePost`). Off: an older server.
    dedup: bool,
    /// Pending post ids seen: the post made for each, and when.
    pending: HashMap<String, (Value, Instant)>,
    /// The status every channel search gets instead of the posts (a bot that may not read the
    /// channel: 403).
    search_status: Option<u16>,
    /// Trigger look-ups still to answer with 500 (Mattermost down when the trigger came).
    lookup_failures: usize,
    /// Trigger posts not in `roots` are unknown (404), as a `chatrun trigger` post is.
    unknown_posts: bool,
    /// Posts whose message holds this get 500, whatever the mode (a stuck reply).
    refuse: Option<String>,
    /// Posts of other users made right after the next post taken (a busy channel).
    flood_after_take: usize,
    /// Modes for the next POSTs, before `mode` applies again.
    script: VecDeque<Mode>,
    /// Trigger post id → its thread's root id, for the trigger look-up.
    roots: HashMap<String, String>,
    /// Posts taken, in order.
    posts: Vec<Value>,
    /// Teams cards taken, in order.
    cards: Vec<Value>,
    seen: Vec<Seen>,
    throttled: u64,
}

struct FakeChat {
    port: u16,
    chat: Arc<Mutex<Chat>>,
    server: Option<JoinHandle<()>>,
}

enum Answer {
    Reply(u16, String, String),
    Hold,
    HangUp,
}

impl FakeChat {
    async fn start(mode: Mode) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut fake = Self {
            port: listener.local_addr().unwrap().port(),
            chat: Arc::new(Mutex::new(Chat {
                mode,
                dedup: true,
                pending: HashMap::new(),
                search_status: None,
                lookup_failures: 0,
                unknown_posts: false,
                refuse: None,
                flood_after_take: 0,
                script: VecDeque::new(),
                roots: HashMap::new(),
                posts: Vec::new(),
                cards: Vec::new(),
                seen: Vec::new(),
                throttled: 0,
            })),
            server: None,
        };
        fake.serve(listener);
        fake
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn serve(&mut self, listener: TcpListener) {
        let chat = self.chat.clone();
        self.server = Some(tokio::spawn(async move {
            // Dropped with this task: every connection is hung up when the server goes down.
            let mut connections = JoinSet::new();
            loop {
                if let Ok((stream, _)) = listener.accept().await {
                    connections.spawn(handle(stream, chat.clone()));
                }
                while connections.try_join_next().is_some() {}
            }
        }));
    }

    /// Stops listening and hangs up every open connection: connecting is refused from now on.
    async fn down(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
            let _ = server.await;
        }
    }

    /// Listens on the same port again.
    async fn up(&mut self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).await.unwrap();
        self.serve(listener);
    }

    fn with<T>(&self, f: impl FnOnce(&mut Chat) -> T) -> T {
        f(&mut self.chat.lock().unwrap())
    }

    fn set(&self, mode: Mode) {
        self.with(|chat| chat.mode = mode);
    }

    /// Waits until `n` requests were answered with `status`.
    async fn answered(&self, status: u16, n: usize) {
        wait_for(|| async {
            let count = self.with(|chat| chat.seen.iter().filter(|s| s.status == status).count());
            (count >= n).then_some(())
        })
        .await;
    }
}

impl Drop for FakeChat {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

async fn handle(mut stream: TcpStream, chat: Arc<Mutex<Chat>>) {
    let Some((method, target, body)) = read_request(&mut stream).await else {
        return;
    };
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let answer = answer(&mut chat.lock().unwrap(), &method, path, query, &body);
    match answer {
        Answer::Reply(status, headers, body) => {
            let reason = match status {
                200 => "OK",
                201 => "Created",
                202 => "Accepted",
                429 => "Too Many Requests",
                500 => "Internal Server Error",
                _ => "Not Found",
            };
            let response = format!(
                "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n\
                 content-length: {}\r\nconnection: close\r\n{headers}\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        }
        Answer::Hold => std::future::pending::<()>().await,
        Answer::HangUp => {}
    }
}

/// One request: method, target and body (by `content-length`).
async fn read_request(stream: &mut TcpStream) -> Option<(String, String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).await.ok().filter(|n| *n > 0)?;
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let (method, target) = (request_line.next()?, request_line.next()?);
    let length: usize = lines
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk).await.ok().filter(|n| *n > 0)?;
        buf.extend_from_slice(&chunk[..n]);
    }
    Some((
        method.to_string(),
        target.to_string(),
        buf[head_end..head_end + length].to_vec(),
    ))
}

fn answer(chat: &mut Chat, method: &str, path: &str, query: &str, body: &[u8]) -> Answer {
    // The trigger look-up is no delivery: answered whatever the mode.
    if let Some(id) = path.strip_prefix("/api/v4/posts/") {
        if chat.lookup_failures > 0 {
            chat.lookup_failures -= 1;
            return Answer::Reply(500, String::new(), r#"{"message":"starting"}"#.into());
        }
        if chat.unknown_posts && !chat.roots.contains_key(id) {
            return Answer::Reply(404, String::new(), r#"{"message":"not found"}"#.into());
        }
        let root = chat.roots.get(id).cloned().unwrap_or_default();
        return Answer::Reply(
            200,
            String::new(),
            json!({"id": id, "root_id": root}).to_string(),
        );
    }
    let post: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let key = match path {
        "/api/v4/posts" => post["props"]["chatrun_delivery"].as_str().map(String::from),
        WORKFLOW_PATH => post["attachments"][0]["content"]["actions"][0]["title"]
            .as_str()
            .and_then(|title| title.strip_prefix("Open run #"))
            .map(|n| format!("run {n}")),
        _ => None,
    };
    let mode = match method {
        "POST" => chat.script.pop_front().unwrap_or(chat.mode),
        _ => chat.mode,
    };
    let refused = chat.refuse.as_deref().is_some_and(|refuse| {
        post["message"]
            .as_str()
            .is_some_and(|message| message.contains(refuse))
    });
    let mode = if refused { Mode::Fail } else { mode };
    let search_status = chat
        .search_status
        .filter(|_| method == "GET" && path.ends_with("/posts"));
    let answer = if let Some(status) = search_status {
        Answer::Reply(
            status,
            String::new(),
            r#"{"message":"You do not have the appropriate permissions."}"#.into(),
        )
    } else {
        match mode {
            Mode::Ok | Mode::TakeAndHangUp => {
                let taken = take(chat, method, path, query, post);
                if mode == Mode::TakeAndHangUp {
                    Answer::HangUp
                } else {
                    taken
                }
            }
            Mode::Fail => Answer::Reply(
                500,
                String::new(),
                r#"{"message":"database unavailable"}"#.into(),
            ),
            Mode::Throttle => {
                chat.throttled += 1;
                let retry_after = if chat.throttled.is_multiple_of(2) {
                    "1".to_string()
                } else {
                    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
                    http_date(i64::try_from(now.as_secs()).unwrap() + 2)
                };
                Answer::Reply(
                    429,
                    format!("retry-after: {retry_after}\r\n"),
                    r#"{"message":"limit exceeded"}"#.into(),
                )
            }
            Mode::Hold => Answer::Hold,
        }
    };
    chat.seen.push(Seen {
        at: Instant::now(),
        method: method.into(),
        path: path.into(),
        query: query.into(),
        key,
        status: match &answer {
            Answer::Reply(status, ..) => *status,
            _ => 0,
        },
    });
    answer
}

/// What the real server does: creates the post, takes the card, or lists a channel's posts.
fn take(chat: &mut Chat, method: &str, path: &str, query: &str, mut post: Value) -> Answer {
    let now = chatrun::store::now_ms();
    match (method, path) {
        ("POST", "/api/v4/posts") => {
            let pending_id = post["pending_post_id"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if chat.dedup
                && let Some((made, at)) = chat.pending.get(&pending_id)
                && at.elapsed() < Duration::from_secs(30)
            {
                return Answer::Reply(201, String::new(), made.to_string());
            }
            post["id"] = json!(format!("post{}", chat.posts.len() + 1));
            post["create_at"] = json!(now);
            post["update_at"] = json!(now);
            chat.posts.push(post.clone());
            if !pending_id.is_empty() {
                chat.pending
                    .insert(pending_id, (post.clone(), Instant::now()));
            }
            for n in 0..std::mem::take(&mut chat.flood_after_take) {
                let other = json!({
                    "id": format!("other{n}"), "channel_id": post["channel_id"],
                    "message": "chatter", "create_at": now + 1, "props": {},
                });
                chat.posts.push(other);
            }
            Answer::Reply(201, String::new(), post.to_string())
        }
        ("POST", WORKFLOW_PATH) => {
            chat.cards.push(post);
            Answer::Reply(202, String::new(), String::new())
        }
        ("GET", _) if path.starts_with("/api/v4/channels/") && path.ends_with("/posts") => {
            // Newest first, a page at a time, as Mattermost lists a channel's posts.
            let channel = &path["/api/v4/channels/".len()..path.len() - "/posts".len()];
            let param = |name: &str, default: usize| {
                query
                    .split('&')
                    .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(default)
            };
            let (page, per_page) = (param("page", 0), param("per_page", 60));
            let found: Vec<&Value> = chat
                .posts
                .iter()
                .rev()
                .filter(|p| p["channel_id"] == channel)
                .skip(page * per_page)
                .take(per_page)
                .collect();
            let order: Vec<&Value> = found.iter().map(|p| &p["id"]).collect();
            let posts: serde_json::Map<String, Value> = found
                .iter()
                .map(|p| (p["id"].as_str().unwrap().to_string(), (*p).clone()))
                .collect();
            let list =
                json!({"order": order, "posts": posts, "next_post_id": "", "prev_post_id": ""});
            Answer::Reply(200, String::new(), list.to_string())
        }
        _ => Answer::Reply(404, String::new(), "{}".into()),
    }
}

/// An IMF-fixdate, `Sun, 06 Nov 1994 08:49:37 GMT`, of `secs` since the Unix epoch.
fn http_date(secs: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{}, {day:02} {} {year} {:02}:{:02}:{:02} GMT",
        DAYS[usize::try_from(days.rem_euclid(7)).unwrap()],
        MONTHS[usize::try_from(month - 1).unwrap()],
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[test]
fn the_fakes_http_dates_are_imf_fixdates() {
    assert_eq!(http_date(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
    assert_eq!(http_date(951_868_799), "Tue, 29 Feb 2000 23:59:59 GMT");
    assert_eq!(
        chatrun::chat::transport::parse_http_date(&http_date(1_445_412_480)),
        Some(1_445_412_480)
    );
}
