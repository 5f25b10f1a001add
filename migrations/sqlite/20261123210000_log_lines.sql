-- Lines in a run's whole log, so the run page can number the lines of the stored tail (their
-- anchors, #L1234, stay the same however much of the log a page shows).
alter table run add column log_lines integer not null default 0;
