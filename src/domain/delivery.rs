//! A reply on its way to a chat server: what the outbox stores and sends.

/// A reply waiting to be sent: where (a target name, resolved to a URL and credentials from the
/// configuration when it is sent, so no secret is stored), the JSON body, and the thread it
/// goes to, in which replies are delivered in the order they were queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The name of where it goes, e.g. `mattermost:post` (`chat::mattermost::TARGET_POST`).
    pub target: String,
    /// The JSON to POST.
    pub body: String,
    /// Names the thread (or channel) the reply appears in: a reply is not sent while an earlier
    /// one to the same thread waits. Empty: ordered with nothing.
    pub thread: String,
}
