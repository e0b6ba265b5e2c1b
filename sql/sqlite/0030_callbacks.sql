-- Abandoned-call callback tasks (issue 5, src/acd/callback.rs): one row per task, upserted
-- by the journal writer on every change (opened, merged with a later abandon, claimed,
-- closed). Open tasks are loaded back at start; ids keep increasing across restarts.
-- Times are RFC 3339 UTC text with milliseconds, as in calls.
CREATE TABLE callbacks (
    id              INTEGER PRIMARY KEY NOT NULL, -- task id (1, 2, ... never reused)
    node_id         TEXT NOT NULL,                -- vigie node that opened the task
    call_id         TEXT NOT NULL,                -- the abandoned call (ULID)
    caller          TEXT NOT NULL,                -- caller number (personal data)
    queue           TEXT NOT NULL,
    abandoned_at    TEXT NOT NULL,                -- when the task was opened
    wait_ms         INTEGER NOT NULL,             -- longest wait before hang-up, milliseconds
    stage           TEXT NOT NULL CHECK (stage IN ('queued', 'ringing', 'announcement', 'overflowing')),
    location        TEXT,                         -- "lat,lon ±radius m" summary
    attempts        INTEGER NOT NULL DEFAULT 0,   -- failed call-back attempts (busy, no answer)
    abandons        INTEGER NOT NULL,             -- abandons of this caller merged into the task
    state           TEXT NOT NULL CHECK (state IN ('open', 'closed')),
    claimed_by      TEXT,                         -- seat working on the task
    outcome         TEXT,                         -- reached, no-answer, called-back, ... when closed
    closed_at       TEXT,
    linked_call_id  TEXT                          -- the caller's new call (called-back)
);
CREATE INDEX callbacks_state ON callbacks (state, id);
