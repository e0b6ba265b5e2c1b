-- vigie call journal, first schema (DESIGN.md §3): the PostgreSQL copy of
-- sql/sqlite/0001_call_journal.sql. Same tables, columns and meaning; types map
-- INTEGER -> BIGINT and REAL -> DOUBLE PRECISION. Times and JSON stay TEXT so the one
-- set of queries (sqlx Any driver) reads and writes both databases alike.
--
-- Times are RFC 3339 UTC text with milliseconds ("2026-11-29T14:05:03.123Z"); this
-- fixed-width form sorts lexically in time order.

-- One row per call, upserted at milestones by the journal writer.
CREATE TABLE calls (
    id                TEXT PRIMARY KEY NOT NULL,   -- vigie's call id (ULID)
    node_id           TEXT NOT NULL,               -- vigie node that owned the call
    sip_call_id       TEXT,                        -- Call-ID of the inbound leg
    caller            TEXT,                        -- caller number (personal data)
    caller_display    TEXT,
    called            TEXT,
    queue             TEXT,
    agent_seat        TEXT,
    received_at       TEXT,                        -- NULL only if a patch came before "received"
    queued_at         TEXT,
    answered_at       TEXT,
    ended_at          TEXT,
    outcome           TEXT CHECK (outcome IN ('answered', 'abandoned', 'overflowed', 'failed')),
    end_cause         TEXT,
    wait_seconds      DOUBLE PRECISION,
    talk_seconds      DOUBLE PRECISION,
    location_lat      DOUBLE PRECISION,                        -- WGS84 degrees
    location_lon      DOUBLE PRECISION,                        -- WGS84 degrees
    location_radius_m DOUBLE PRECISION                         -- uncertainty radius, metres
);

CREATE INDEX calls_received_at ON calls (received_at DESC);
CREATE INDEX calls_queue_received_at ON calls (queue, received_at DESC);
CREATE INDEX calls_outcome ON calls (outcome);

-- Append-only journal: every step of every call, in order.
CREATE TABLE call_events (
    call_id  TEXT NOT NULL,
    seq      BIGINT NOT NULL,                     -- per-call sequence, from 0
    at       TEXT NOT NULL,
    kind     TEXT NOT NULL,
    detail   TEXT NOT NULL DEFAULT '{}',           -- JSON object
    PRIMARY KEY (call_id, seq)
);

CREATE INDEX call_events_at ON call_events (at);

-- Every location received for a call (PIDF-LO, Geolocation, AML), with its source.
CREATE TABLE locations (
    call_id  TEXT NOT NULL,
    seq      BIGINT NOT NULL,                     -- per-call location sequence, from 0
    at       TEXT NOT NULL,
    source   TEXT NOT NULL,                        -- e.g. pidf-lo, geolocation-uri, aml
    shape    TEXT NOT NULL,                        -- e.g. point, circle, ellipse, civic
    lat      DOUBLE PRECISION,                                 -- WGS84 degrees
    lon      DOUBLE PRECISION,                                 -- WGS84 degrees
    alt_m    DOUBLE PRECISION,                                 -- metres
    radius_m DOUBLE PRECISION,                                 -- uncertainty radius, metres
    raw      TEXT,                                 -- original document, if kept
    PRIMARY KEY (call_id, seq)
);
