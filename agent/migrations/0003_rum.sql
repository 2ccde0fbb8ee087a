-- Web-vitals rollups: one row per app x page x metric x device x five-minute
-- bucket. `sketch` holds the bucket's quantile sketch (zeros, then key/count
-- pairs, little-endian), so buckets can be merged into any longer window.
CREATE TABLE IF NOT EXISTS rum_rollups (
    app TEXT NOT NULL,
    page TEXT NOT NULL,
    metric TEXT NOT NULL,
    device TEXT NOT NULL,
    bucket_start INTEGER NOT NULL,
    count INTEGER NOT NULL,
    good INTEGER NOT NULL,
    needs_improvement INTEGER NOT NULL,
    poor INTEGER NOT NULL,
    sketch BLOB NOT NULL,
    PRIMARY KEY (app, page, metric, device, bucket_start)
);
CREATE INDEX IF NOT EXISTS rum_rollups_by_time ON rum_rollups (bucket_start);
