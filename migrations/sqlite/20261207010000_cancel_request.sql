-- Set by `cancel` while a run is running: its worker, on whichever chatrun holds it, sees it
-- when it renews its lease, stops the steps and gives this as the run's error.
alter table run add column cancel_reason text;
