-- Replies that arrive exactly once (issue #19).
--
-- `sending_since`: when the attempt in flight began (set by its claim). `unsure_at`: when the
-- first attempt whose outcome was never learnt began. Mattermost drops a post repeated with the
-- same `pending_post_id` for 30 s after it saw it, so within that window such an attempt is
-- simply repeated.
alter table outbox add column sending_since integer;
alter table outbox add column unsure_at integer;
-- The chatrun process (host:pid) whose claim this is: a restart releases the claims of its dead
-- predecessor at once instead of waiting for their hold to pass.
alter table outbox add column sending_owner text;
-- Searches for an earlier attempt's post that could not answer. After a few, the reply is sent
-- without knowing (`blind` = 1), and the run page says it may have been posted twice: at most
-- one duplicate, never a lost reply.
alter table outbox add column search_failures integer not null default 0;
alter table outbox add column blind integer not null default 0;
-- Finding the earlier pending deliveries of a thread (the claim's ordering rule).
create index outbox_thread on outbox (thread, status, outbox_id);

-- 1 when the trigger's thread could not be looked up (Mattermost slow or down): the outbox
-- looks again before it posts the run's result, so a brief outage does not un-thread it.
alter table run add column thread_unsettled integer not null default 0;
