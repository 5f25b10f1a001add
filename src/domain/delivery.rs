//! A reply on its way to a chat server: what the outbox stores and sends.

/// Where a reply goes: a target name (resolved to a URL and credentials from the configuration
/// when it is sent, so no secret is stored) and the thread it appears in, in which replies are
/// delivered in the order they were queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    /// The name of where it goes, e.g. `mattermost:post` (`chat::mattermost::TARGET_POST`).
    pub target: String,
    /// Names the thread (or channel) the reply appears in: a reply is not sent while an earlier
    /// one to the same thread waits. Empty: ordered with nothing.
    pub thread: String,
}

/// A reply ready to send: its address and the JSON body to POST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// As [`Address::target`].
    pub target: String,
    /// The JSON to POST.
    pub body: String,
    /// As [`Address::thread`].
    pub thread: String,
}

/// What the outbox stores: a reply worded when it was queued (an acknowledgement, an answer to
/// a command), or a run's result, worded by its platform from the stored run when it is sent,
/// so that nothing about the run's end is predicted before it is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyIntent {
    /// Sent as it is.
    Worded(Delivery),
    /// The result of the delivery's run, to this address.
    Result(Address),
}
