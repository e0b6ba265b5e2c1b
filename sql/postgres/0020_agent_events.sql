-- Agent seat journal (DESIGN.md §3): every change of a seat's status (chosen by the
-- call-taker: logged_out, available, on_break with a reason) or state (set by the switch:
-- logged_out, idle, reserved, ringing, on_call, wrap_up), with its cause and time.
-- Append-only; times are RFC 3339 UTC text with milliseconds, as in call_events.
CREATE TABLE agent_events (
    id          TEXT PRIMARY KEY NOT NULL,  -- ULID of the change (time-ordered)
    node_id     TEXT NOT NULL,              -- vigie node that owned the seat
    seat        TEXT NOT NULL,              -- seat id (its SIP user)
    at          TIMESTAMPTZ NOT NULL,             -- when the change happened
    status      TEXT NOT NULL CHECK (status IN ('logged_out', 'available', 'on_break')),
    reason      TEXT,                       -- break reason code when on_break
    state       TEXT NOT NULL,              -- logged_out, idle, reserved, ringing, on_call, wrap_up
    pending     TEXT,                       -- status taking effect when the seat is next idle
    registered  INTEGER NOT NULL,          -- 1 when the seat has a registered contact (INTEGER as in SQLite: one query text for both)
    reachable   INTEGER NOT NULL,          -- 1 when it answers OPTIONS keep-alives
    cause       TEXT NOT NULL,              -- api, feature_code, registered, no_answer_policy, ...
    call_id     TEXT                        -- the call concerned (ULID), if any
);
CREATE INDEX agent_events_seat_at ON agent_events (seat, at);
