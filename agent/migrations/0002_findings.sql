-- N+1 findings (agent/src/nplusone): one row per fingerprint (service, route,
-- kind, template), upserted as occurrences come, deleted after
-- n_plus_one.retention without an occurrence.
CREATE TABLE IF NOT EXISTS n_plus_one_findings (
    id TEXT PRIMARY KEY NOT NULL,
    service TEXT NOT NULL,
    route TEXT NOT NULL,
    kind TEXT NOT NULL,
    template TEXT NOT NULL,
    source_template TEXT,
    system TEXT NOT NULL,
    parent_span_name TEXT NOT NULL,
    first_seen_unix_ms INTEGER NOT NULL,
    last_seen_unix_ms INTEGER NOT NULL,
    occurrences INTEGER NOT NULL,
    worst_count INTEGER NOT NULL,
    typical_count INTEGER NOT NULL,
    count INTEGER NOT NULL,
    total_duration_nanos INTEGER NOT NULL,
    per_call_nanos INTEGER NOT NULL,
    saved_nanos INTEGER NOT NULL,
    example_trace_id TEXT NOT NULL,
    example_span_ids TEXT NOT NULL,
    fix TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS n_plus_one_findings_last_seen
    ON n_plus_one_findings (last_seen_unix_ms);
