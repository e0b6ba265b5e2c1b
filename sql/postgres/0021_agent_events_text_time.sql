-- agent_events.at as RFC 3339 UTC text with milliseconds ("2026-11-29T14:05:03.123Z"), like
-- every other time of the journal (0001: the fixed-width form sorts lexically in time order,
-- and one query text serves SQLite and PostgreSQL through sqlx's Any driver). As TIMESTAMPTZ
-- the writer's text parameter was refused (column is timestamptz, expression is text), so
-- no seat change was ever stored on PostgreSQL; the reader expects text too.
ALTER TABLE agent_events ALTER COLUMN at TYPE TEXT
    USING to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"');
