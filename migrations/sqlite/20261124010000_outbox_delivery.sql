-- Replies in the order they were queued, per thread (issue #7).
-- `thread` names where a reply appears: for Mattermost the channel id and the thread's root id
-- (the channel alone for top-level posts), for Teams the webhook target and the conversation.
-- A delivery is not sent while an earlier one (lower outbox_id) to the same thread is still
-- pending, so a retried acknowledgement is never overtaken by its result. Null (rows queued
-- before this column): ordered with nothing, as before.
alter table outbox add column thread text;

-- Bounded duplicates: a delivery that was sent but whose success was not recorded is repeated
-- at most once. `sending` is 1 from a claim until its outcome is stored; a claim that finds it
-- still 1 (the sender died between the POST and recording the answer) adds that attempt to
-- `unsure`, as a timeout or a connection lost after the request was written does. Before
-- posting a delivery with unsure attempts again, the sender looks for the Mattermost post
-- (props.chatrun_delivery), or, for a Teams card it cannot look for, sends it once more at most.
alter table outbox add column sending integer not null default 0;
alter table outbox add column unsure integer not null default 0;
