-- A delivery holds the JSON to POST ('worded'), or, for a run's result, only where it goes: its
-- platform words the result from the stored run when it is sent ('result'), so nothing about
-- the run's end is predicted before it is written.
alter table outbox add column kind text not null default 'worded' check (kind in ('worded', 'result'));
