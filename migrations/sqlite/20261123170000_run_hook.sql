-- Which configured webhook delivered the trigger: a Teams outgoing webhook's name picks the
-- Workflows URL the result card goes to. Empty for Mattermost (its replies go through the one
-- configured REST API).
alter table run add column hook text not null default '';
