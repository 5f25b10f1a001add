//! The part of storing triggers in batches that every backend shares, and no SQL: given what a
//! batch's transaction found (the runs already stored for its messages, each job's queue), which
//! request makes a new run, with which number and acknowledgement, and what each caller hears.
//! Each backend gathers the requests, looks up, inserts and commits (`sqlite/batch.rs`,
//! `postgres/batch.rs`).

use std::collections::HashMap;

use tokio::sync::oneshot;

use super::model::{AckFacts, AckWords, Inserted, NewRun};
use super::{Error, Result};
use crate::domain::{Ack, RunId};

/// The most triggers one transaction stores.
pub const MAX_BATCH: usize = 256;

/// A trigger waiting to be stored.
pub struct Request {
    pub new: NewRun,
    pub now: i64,
    /// Called when a run is made (not when the message was stored before, or the queue is
    /// full).
    pub words: AckWords,
    /// The outcome, once committed (and synced).
    pub done: oneshot::Sender<Result<Inserted>>,
}

/// Who waits for each request's outcome, in the batch's order.
pub type Dones = Vec<oneshot::Sender<Result<Inserted>>>;

/// A batch's requests taken apart: each trigger with its time, each caller's words, and who
/// waits for each outcome, in the same order.
pub fn split(
    requests: impl ExactSizeIterator<Item = Request>,
) -> (Vec<(NewRun, i64)>, Vec<AckWords>, Dones) {
    let mut news = Vec::with_capacity(requests.len());
    let mut words = Vec::with_capacity(requests.len());
    let mut dones = Vec::with_capacity(requests.len());
    for request in requests {
        news.push((request.new, request.now));
        words.push(request.words);
        dones.push(request.done);
    }
    (news, words, dones)
}

/// Where a message's run is found: platform and message id.
pub type Key<'a> = (&'a str, &'a str);

/// The key of `new`'s message.
pub fn key(new: &NewRun) -> Key<'_> {
    (new.origin.platform.as_str(), new.message_id.as_str())
}

/// A job's queue as a batch finds it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Queue {
    pub waiting: i64,
    pub running: i64,
    pub typical_ms: Option<i64>,
}

/// What happens to one request of a batch.
pub enum Fate {
    /// Its message was stored before: that run.
    Stored(Inserted),
    /// The same message as an earlier request of this batch: that request's run.
    SameAs(usize),
    /// Its job's queue is full.
    Full(i64),
    /// A new run whose caller went away before it was numbered: not stored.
    Gone,
    /// A new run with its acknowledgement.
    Worded { run_id: RunId, ack: Ack },
}

/// How many requests of `news` may make a new run: those whose message is neither stored
/// before nor an earlier request's (the most numbers [`decide`] takes).
pub fn at_most_new(news: &[(NewRun, i64)], stored: &HashMap<Key<'_>, Inserted>) -> usize {
    let mut seen = std::collections::HashSet::new();
    news.iter()
        .filter(|(new, _)| !stored.contains_key(&key(new)) && seen.insert(key(new)))
        .count()
}

/// Decides each request's fate in arrival order: a new run takes the next of `numbers` and
/// its place in its job's queue (`queues`, counted up as runs join), and is worded by its
/// caller's `words`.
pub fn decide<'a>(
    news: &'a [(NewRun, i64)],
    words: Vec<AckWords>,
    dones: &[oneshot::Sender<Result<Inserted>>],
    stored: &HashMap<Key<'a>, Inserted>,
    queues: &mut HashMap<&'a str, Queue>,
    mut numbers: impl Iterator<Item = RunId>,
) -> Vec<Fate> {
    let mut first_of: HashMap<Key<'a>, usize> = HashMap::new();
    let mut fates = Vec::with_capacity(news.len());
    for (i, (((new, _), words), done)) in news.iter().zip(words).zip(dones).enumerate() {
        let key = key(new);
        if let Some(existing) = stored.get(&key) {
            fates.push(Fate::Stored(existing.clone()));
            continue;
        }
        if let Some(&first) = first_of.get(&key) {
            fates.push(Fate::SameAs(first));
            continue;
        }
        let queue = queues.entry(new.job.as_str()).or_default();
        if new.denied.is_none() && new.queue_limit > 0 && queue.waiting >= new.queue_limit {
            fates.push(Fate::Full(queue.waiting));
            continue;
        }
        if done.is_closed() {
            fates.push(Fate::Gone);
            continue;
        }
        // (Never short: [`at_most_new`] counts every request that gets this far.)
        let Some(run_id) = numbers.next() else {
            fates.push(Fate::Gone);
            continue;
        };
        let facts = AckFacts::new(
            run_id,
            new,
            queue.waiting + 1,
            queue.running,
            queue.typical_ms,
        );
        if new.denied.is_none() {
            queue.waiting += 1;
        }
        first_of.insert(key, i);
        fates.push(Fate::Worded {
            run_id,
            ack: words(&facts),
        });
    }
    fates
}

/// What each caller hears, once the batch is committed.
pub fn outcomes(fates: &[Fate]) -> Vec<Result<Inserted>> {
    let outcome = |fate: &Fate| match fate {
        Fate::Stored(existing) => Ok(existing.clone()),
        Fate::Full(waiting) => Err(Error::QueueFull(*waiting)),
        Fate::Worded { run_id, ack } => Ok(Inserted {
            run_id: *run_id,
            ack_text: ack.text.clone(),
            created: true,
            reply_queued: ack.delivery.is_some(),
        }),
        // The twin of a request whose caller went away: nothing was stored for the message,
        // and the chat server's retry will be.
        Fate::Gone | Fate::SameAs(_) => Err(Error::Abandoned),
    };
    fates
        .iter()
        .map(|fate| match fate {
            // The same message twice: one run, as for a trigger delivered twice.
            Fate::SameAs(first) => outcome(&fates[*first]).map(|inserted| Inserted {
                created: false,
                reply_queued: false,
                ..inserted
            }),
            fate => outcome(fate),
        })
        .collect()
}
