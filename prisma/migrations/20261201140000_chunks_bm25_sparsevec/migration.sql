-- Hand-written: BM25 for keyword search where the database has no pg_textsearch (most Postgres 15/16
-- servers, whose pgvector >= 0.7 has sparsevec). Each chunk's BM25 term weights are a sparse vector
-- (one dimension per lexeme, by hash), the query's IDF weights another, and their inner product is the
-- chunk's BM25 score; an HNSW index over inner product answers top-k without scoring every match
-- (src/domain/search/sql.ts, keywordRanking 'bm25_sparsevec'). A database with pg_textsearch (embedded
-- PGlite) keeps its BM25 index and leaves the column null; one without sparsevec keeps ts_rank_cd.
DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_type WHERE typname = 'sparsevec') THEN
    -- 2^29 dimensions: lexemes hashed with hashtext (stable across Postgres versions: hash indexes
    -- survive pg_upgrade), so two lexemes share one with odds of ~1 in 500 million.
    ALTER TABLE "chunks" ADD COLUMN IF NOT EXISTS "bm25" sparsevec(536870912);
    -- A lexeme's dimension, the one rule chunks and queries (src/domain/search/bm25-sparse.ts) share.
    CREATE OR REPLACE FUNCTION bm25_dim(lexeme text) RETURNS int
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$ SELECT ((hashtext(lexeme)::bigint & 536870911) + 1)::int $fn$;

    -- A chunk's weights: Okapi BM25's term-frequency part (k1 1.2, b 0.75) against `avgdl`, the
    -- volume's typical chunk length in indexed words; the IDF part is the query's (sql.ts). HNSW indexes
    -- at most 1,000 non-zero elements: a longer chunk keeps its 1,000 heaviest terms.
    CREATE OR REPLACE FUNCTION chunk_bm25_vector(doc tsvector, avgdl float8) RETURNS sparsevec
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
      WITH t AS (
        SELECT bm25_dim(lexeme) AS dim, coalesce(array_length(positions, 1), 1) AS tf FROM unnest(doc)
      ), len AS (SELECT greatest(sum(tf), 1)::float8 AS dl FROM t),
      w AS (
        SELECT dim, (tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * len.dl / greatest(avgdl, 1))))::real AS x
        FROM (SELECT dim, sum(tf) AS tf FROM t GROUP BY dim) byd, len
        ORDER BY x DESC, dim LIMIT 1000
      )
      SELECT ('{' || coalesce(string_agg(dim || ':' || x, ',' ORDER BY dim), '') || '}/536870912')::sparsevec FROM w
    $fn$;

    IF NOT EXISTS (SELECT 1 FROM pg_class WHERE relname = 'chunks_bm25_idx' AND relkind = 'i') THEN
      -- Merged chunks only, like the embedding indexes: the fresh tier is scanned exactly until merged.
      CREATE INDEX IF NOT EXISTS "chunks_bm25_sparse_idx" ON "chunks" USING hnsw ("bm25" sparsevec_ip_ops)
        WHERE bm25 IS NOT NULL AND NOT fresh;
      -- IDF comes from the planner's statistics of tsv (most common lexemes and their frequencies):
      -- 10,000 lexemes tracked instead of 1,000.
      ALTER TABLE "chunks" ALTER COLUMN "tsv" SET STATISTICS 1000;
      -- Chunks written before: weighted against a 300-word average (512-token chunks, the default).
      UPDATE "chunks" SET "bm25" = chunk_bm25_vector("tsv", 300) WHERE "tsv" IS NOT NULL AND "bm25" IS NULL;
    END IF;
  END IF;
END $$;
