-- Replies in the order they were queued, per thread (issue #7).
-- `thread` names where a reply appears: for Mattermost the channel id and the thread's root id
-- (the channel alone for top-level posts), for Teams the webhook target and the conversation.
-- A delivery is not sent while an earlier one (lower outbox_id) to the same thread is still
-- pending, so a retried acknowledgement is never overtaken by its result. Null (rows queued
-- before this column): ordered with nothing, as before.
alter table outbox add column thread text;
