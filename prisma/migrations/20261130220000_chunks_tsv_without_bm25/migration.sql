-- Hand-written: where keyword search ranks with BM25 (pg_textsearch's index "chunks_bm25_idx" on
-- chunks.content, migration chunks_bm25), nothing reads chunks.tsv or its GIN index: only the
-- ts_rank_cd fallback does. Keeping them up to date cost ~15% of writing a chunk row on PGlite
-- (bench/ingest-rows.ts), so such a database drops the GIN index and indexing leaves tsv null for
-- new chunks (src/domain/search/indexing.ts). Rows written before keep their tsv (rewriting every
-- chunk row here would also rewrite every HNSW entry). A Postgres without pg_textsearch keeps both.
DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_class WHERE relname = 'chunks_bm25_idx' AND relkind = 'i') THEN
    DROP INDEX IF EXISTS "chunks_tsv_idx";
  END IF;
END $$;
