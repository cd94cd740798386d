import type { Extensions } from '@electric-sql/pglite';
import { pg_textsearch } from '@electric-sql/pglite-pg_textsearch';
import { vector } from '@electric-sql/pglite-pgvector';

/**
 * The extensions every PGlite of the gateway (and of its tests) loads: pgvector (vectors, HNSW) and
 * pg_textsearch (BM25 ranking for keyword search). A data dir that has one installed fails to open
 * without it.
 */
export const PGLITE_EXTENSIONS = { vector, pg_textsearch } satisfies Extensions;
