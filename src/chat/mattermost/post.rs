//! The bodies Mattermost takes: the webhook's JSON response, and a post for
//! `POST /api/v4/posts`, threaded where the trigger allows.

use super::*;

/// Where the trigger post sits, which decides how a reply can appear next to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Thread {
    /// The trigger is a root post: a `comment` reply threads under it.
    Root,
    /// The trigger was typed inside the thread of this root post: a `comment` reply would be
    /// dropped by Mattermost, so replies go through the REST API with this `root_id`.
    Reply(String),
    /// Not known (the REST API is not configured, or does not know the post): a top-level
    /// reply is the one that is always shown.
    Unknown,
    /// Not known yet: the REST API did not answer in time. Replied to as [`Thread::Unknown`]
    /// now; the result's delivery looks again.
    Unsettled,
}

impl Thread {
    /// From a post's `root_id` as `GET /api/v4/posts/{id}` returns it.
    pub fn from_root_id(root_id: &str) -> Self {
        if root_id.is_empty() {
            Self::Root
        } else {
            Self::Reply(root_id.to_string())
        }
    }

    /// The `root_id` for REST replies to post `post_id`, when it is known.
    pub fn root_for(&self, post_id: &str) -> Option<String> {
        match self {
            Self::Root => Some(post_id.to_string()),
            Self::Reply(root) => Some(root.clone()),
            Self::Unknown | Self::Unsettled => None,
        }
    }
}

#[derive(Serialize)]
pub(super) struct Response<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    response_type: Option<&'static str>,
    text: &'a str,
}

#[derive(Serialize)]
pub(super) struct CreatePost<'a> {
    channel_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    root_id: Option<&'a str>,
    message: &'a str,
}

/// The HTTP response body that shows `text` next to the trigger, and the delivery to queue
/// when the response cannot (a trigger inside a thread).
pub fn render_response(
    text: &str,
    thread: &Thread,
    channel_id: &str,
) -> (String, Option<Delivery>) {
    let json = |response: &Response| {
        serde_json::to_string(response).expect("a struct of strings serializes")
    };
    match thread {
        Thread::Root => (
            json(&Response {
                response_type: Some("comment"),
                text,
            }),
            None,
        ),
        Thread::Unknown | Thread::Unsettled => (
            json(&Response {
                response_type: None,
                text,
            }),
            None,
        ),
        // `{}` posts nothing; the REST delivery posts the text in the right thread.
        Thread::Reply(root) => ("{}".into(), Some(render_post(channel_id, Some(root), text))),
    }
}

/// A `POST /api/v4/posts` delivery, in the thread of `root_id` (or at the top of the channel,
/// whose top-level posts are one thread for ordering).
pub fn render_post(channel_id: &str, root_id: Option<&str>, message: &str) -> Delivery {
    Delivery {
        target: TARGET_POST.into(),
        body: serde_json::to_string(&CreatePost {
            channel_id,
            root_id,
            message,
        })
        .expect("a struct of strings serializes"),
        thread: post_thread(channel_id, root_id),
    }
}

/// `post` (a `POST /api/v4/posts` delivery) with `props` (an object) among its own.
pub fn with_props(mut post: Delivery, props: serde_json::Value) -> Delivery {
    if let Ok(mut body) = serde_json::from_str::<serde_json::Value>(&post.body)
        && let Some(map) = body.as_object_mut()
    {
        map.insert("props".into(), props);
        post.body = body.to_string();
    }
    post
}

/// Where a post goes: in the thread of `root_id`, or at the top of the channel.
pub fn post_address(channel_id: &str, root_id: Option<&str>) -> Address {
    Address {
        target: TARGET_POST.into(),
        thread: post_thread(channel_id, root_id),
    }
}

/// The thread a post is ordered in: its root's. A top-level post is ordered with nothing: the
/// channel is no thread, and a stuck reply there must not hold back the others.
fn post_thread(channel_id: &str, root_id: Option<&str>) -> String {
    root_id.map_or_else(String::new, |root| {
        format!("mattermost:{channel_id}/{root}")
    })
}
