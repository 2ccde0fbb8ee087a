-- The embedded database's own bookkeeping. Each capability that keeps data
-- across restarts (N+1 findings, web-vitals rollups, health history) adds its
-- tables in a later, numbered migration.
CREATE TABLE IF NOT EXISTS agent_starts (
    started_at_unix_ms INTEGER NOT NULL,
    version TEXT NOT NULL
);
