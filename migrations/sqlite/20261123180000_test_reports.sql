-- Test reports (JUnit XML) a step names with `junit = "..."`, summed up per step, and the
-- failed tests they list. Counts are null when the step names no report.
alter table step add column tests_run integer;
alter table step add column tests_failed integer;   -- failures + errors
alter table step add column tests_skipped integer;
alter table step add column tests_duration_ms integer;
alter table step add column report_error text;      -- "report missing: …" / "report unreadable: …"
alter table step add column output_tail text;       -- the step's last output lines, for failed steps

-- One failed (or errored) test of a step.
create table test_failure (
    run_id   integer not null,
    position integer not null,                    -- the step
    ordinal  integer not null,                    -- order in the reports
    suite    text not null,
    name     text not null,
    message  text not null,                       -- first line, for chat
    detail   text not null,                       -- whole message, for the run page
    primary key (run_id, position, ordinal),
    foreign key (run_id, position) references step (run_id, position) on delete cascade
);
