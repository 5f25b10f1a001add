//! What the outbox needs to post a reply once: the delivery key in the post's props, and
//! finding it again in the channel's posts.

use super::*;

/// The post property that marks a post chatrun made for one outbox delivery, so an attempt
/// whose answer was lost can be found before posting again.
pub const DELIVERY_PROP: &str = "chatrun_delivery";

/// A `POST /api/v4/posts` body with `props.chatrun_delivery` set to `key` (other props kept);
/// `None` when `body` is not a JSON object.
pub fn with_delivery_key(body: &str, key: &str) -> Option<String> {
    let mut post: serde_json::Value = serde_json::from_str(body).ok()?;
    let post_map = post.as_object_mut()?;
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

/// Whether a post list, as `GET /api/v4/channels/{id}/posts` answers
/// (`{"order": [ids], "posts": {id: post}}`), holds a post whose `props.chatrun_delivery` is
/// `key`.
///
/// # Errors
///
/// The answer is not such a list.
pub fn posts_contain_delivery(answer: &[u8], key: &str) -> Result<bool, serde_json::Error> {
    #[derive(Deserialize)]
    struct PostList {
        #[serde(default)]
        posts: Option<std::collections::HashMap<String, serde_json::Value>>,
    }
    let list: PostList = serde_json::from_slice(answer)?;
    Ok(list.posts.unwrap_or_default().values().any(|post| {
        post.get("props")
            .and_then(|props| props.get(DELIVERY_PROP))
            .and_then(serde_json::Value::as_str)
            == Some(key)
    }))
}
