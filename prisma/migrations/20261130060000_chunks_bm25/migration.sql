-- Hand-written: BM25 ranking for the keyword half of search, where the database has the
-- pg_textsearch extension (embedded PGlite always does: @electric-sql/pglite-pg_textsearch).
-- Elsewhere (most Postgres 15/16 servers) this does nothing, and keyword search ranks with
-- ts_rank_cd over "chunks_tsv_idx" instead; the gateway says which at start-up. A server that gets
-- pg_textsearch later can run the two statements below by hand; the gateway picks BM25 up at its
-- next start. One bm25 index per column: queries name it (to_bm25query(q, 'chunks_bm25_idx')).
DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pg_textsearch') THEN
    CREATE EXTENSION IF NOT EXISTS pg_textsearch;
    CREATE INDEX IF NOT EXISTS "chunks_bm25_idx" ON "chunks" USING bm25 ("content") WITH (text_config = 'english');
  END IF;
EXCEPTION WHEN OTHERS THEN
  -- e.g. installed but not in shared_preload_libraries: keep ts_rank_cd rather than fail the start.
  RAISE WARNING 'pg_textsearch is available but could not be set up (%): keyword search uses ts_rank_cd', SQLERRM;
END $$;
