//! What the outbox needs to post a reply once: the delivery key in the post's props, and
//! finding it again in the channel's posts.

use super::*;

/// The post property that marks a post chatrun made for one outbox delivery, so an attempt
/// whose answer was lost can be found before posting again.
pub const DELIVERY_PROP: &str = "chatrun_delivery";

/// A `POST /api/v4/posts` body with `props.chatrun_delivery` and `pending_post_id` set to
/// `key` (other props kept); `None` when `body` is not a JSON object. Mattermost keeps a seen
/// `pending_post_id` for 30 s and answers a repeat with the post it already made
/// (`deduplicateCreatePost` in its `app/post.go`).
pub fn with_delivery_key(body: &str, key: &str) -> Option<String> {
    let mut post: serde_json::Value = serde_json::from_str(body).ok()?;
    let post_map = post.as_object_mut()?;
    post_map.insert(
        "pending_post_id".into(),
        serde_json::Value::String(key.into()),
    );
    let props = post_map
        .entry("props")
        .or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()));
    if !props.is_object() {
        *props = serde_json::Value::Object(serde_json::Map::new());
    }
    props
        .as_object_mut()?
        .insert(DELIVERY_PROP.into(), serde_json::Value::String(key.into()));
    serde_json::to_string(&post).ok()
}

/// The `channel_id` of a `POST /api/v4/posts` body.
pub fn post_channel(body: &str) -> Option<String> {
    let post: serde_json::Value = serde_json::from_str(body).ok()?;
    post.get("channel_id")?.as_str().map(String::from)
}

/// What one page of a channel's posts told the search for a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    /// A post on it carries the delivery's key.
    pub found: bool,
    /// Posts on it.
    pub posts: usize,
    /// The oldest post's `create_at` (ms), when it has posts.
    pub oldest: Option<i64>,
}

/// Reads a page of posts, as `GET /api/v4/channels/{id}/posts?page=…` answers
/// (`{"order": [ids], "posts": {id: post}}`), for a post whose `props.chatrun_delivery` is `key`.
/// Only the posts of `order` count: `posts` also holds the roots of the threads they answer,
/// however old.
///
/// # Errors
///
/// The answer is not such a list.
pub fn scan_page(answer: &[u8], key: &str) -> Result<Page, serde_json::Error> {
    #[derive(Deserialize)]
    struct PostList {
        #[serde(default)]
        order: Option<Vec<String>>,
        #[serde(default)]
        posts: Option<std::collections::HashMap<String, serde_json::Value>>,
    }
    let list = serde_json::from_slice::<PostList>(answer)?;
    let posts = list.posts.unwrap_or_default();
    let order = list.order.unwrap_or_default();
    let listed = || order.iter().filter_map(|id| posts.get(id));
    Ok(Page {
        found: listed().any(|post| {
            post.get("props")
                .and_then(|props| props.get(DELIVERY_PROP))
                .and_then(serde_json::Value::as_str)
                == Some(key)
        }),
        posts: order.len(),
        oldest: listed()
            .filter_map(|post| post.get("create_at")?.as_i64())
            .min(),
    })
}
