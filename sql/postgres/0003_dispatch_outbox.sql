-- PostgreSQL copy of sql/sqlite/0003_dispatch_outbox.sql (INTEGER -> BIGINT, REAL -> DOUBLE PRECISION).
-- Transactional outbox of hand-off documents (DESIGN.md §4): written in the same
-- transaction as the journal records of the call step that produced the document, then
-- delivered by the webhook worker, in (created_at, call_id, sequence) order, until the
-- dispatch system answers 2xx. Rows are kept after delivery (audit, REST "latest").
CREATE TABLE dispatch_outbox (
    call_id         TEXT NOT NULL,                 -- vigie's call id (ULID)
    sequence        BIGINT NOT NULL,              -- document rank in the call, from 1
    idempotency_key TEXT NOT NULL UNIQUE,          -- "{call_id}:{sequence}", the Idempotency-Key header
    event           TEXT NOT NULL,                 -- received, answered, location_update, ended
    created_at      TEXT NOT NULL,                 -- RFC 3339 UTC, milliseconds
    document        TEXT NOT NULL,                 -- the hand-off document (JSON)
    attempts        BIGINT NOT NULL DEFAULT 0,    -- delivery attempts so far
    last_error      TEXT,                          -- why the last attempt failed
    delivered_at    TEXT,                          -- NULL until a 2xx answered
    PRIMARY KEY (call_id, sequence)
);

CREATE INDEX dispatch_outbox_pending ON dispatch_outbox (delivered_at, created_at);

-- AML reports (ETSI TS 103 625) received on the AML endpoint, matched to a call or not.
CREATE TABLE aml_reports (
    id          TEXT PRIMARY KEY NOT NULL,         -- ULID given on receipt
    received_at TEXT NOT NULL,
    sender      TEXT,                              -- caller number (personal data)
    call_id     TEXT,                              -- the matched call, NULL when unmatched
    lat         DOUBLE PRECISION,                              -- WGS84 degrees
    lon         DOUBLE PRECISION,                              -- WGS84 degrees
    radius_m    DOUBLE PRECISION,                              -- metres
    raw         TEXT NOT NULL                      -- the message as received
);

CREATE INDEX aml_reports_received_at ON aml_reports (received_at);
