import { createHash, randomUUID } from 'node:crypto';
import type { Tx } from '../../db/client.js';
import { modelColumns } from '../../db/columns.js';
import { type Entry, type Job, Prisma, type Volume } from '../../generated/prisma/client.js';
import { chunkText, flattenJson } from '../../indexing/chunking.js';
import { embedAll } from '../../indexing/embedders/embedder.js';
import type { JobHandler } from '../../jobs/types.js';
import type { Runtime } from '../shared/runtime.js';
import { refreshVolumeStatus } from '../volumes/status.js';

// Entry → chunks → vectors. Runs after a write commits (an `index_entry` job queued in the write's
// own transaction, so an acknowledged write is always indexed eventually) and from reindex jobs.
// Only chunks whose text changed are embedded again; the swap of an entry's chunks is one
// transaction that first checks the entry still has the version that was chunked.

export const INDEX_ENTRY = 'index_entry';

/** Queues indexing of an entry inside the transaction that wrote it (volumes in `auto` mode). */
export function queueEntryIndexing(rt: Runtime, tx: Tx, volumeId: string, entryId: string): Promise<string> {
  return rt.jobs.enqueue(tx, { kind: INDEX_ENTRY, dedupeKey: `${INDEX_ENTRY}:${entryId}`, volumeId, payload: { entryId } });
}

/** The text an entry contributes to search: JSON flattened, text as is, files' extracted text. */
export function indexableText(entry: Pick<Entry, 'contentType' | 'content' | 'contentText'>): string {
  const parts: string[] = [];
  if (entry.contentType === 'json' && entry.content !== null) parts.push(flattenJson(entry.content));
  if (entry.contentText) parts.push(entry.contentText);
  return parts.join('\n\n');
}

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

type VolumeChunking = Pick<Volume, 'chunkingStrategy' | 'chunkSize' | 'chunkOverlap'>;

/** Identifies the chunks an entry's text yields: same hash, same chunks (so indexing can be skipped). */
function textHash(text: string, v: VolumeChunking): string {
  return sha256(`${v.chunkingStrategy}:${v.chunkSize}:${v.chunkOverlap}\n${text}`);
}

export type IndexOutcome = 'indexed' | 'unchanged' | 'stale' | 'gone';

/**
 * Brings an entry's chunks up to date for each embedder in `embedderIds` (default: the ones the
 * volume searches with now and, during a model change, the one it is moving to).
 * Returns 'stale' when the entry changed while it was being embedded (its newer version has its own
 * job queued) and 'gone' when it no longer exists. Embedding errors propagate (the job retries).
 */
export async function indexEntry(
  rt: Runtime,
  entryId: string,
  opts: { embedderIds?: string[]; force?: boolean; signal?: AbortSignal } = {},
): Promise<IndexOutcome> {
  const entry = await loadEntryForIndexing(rt, entryId);
  if (!entry || entry.volume.deletedAt) return 'gone';
  const vol = entry.volume;
  const searchWith = vol.activeEmbedderId ?? vol.embeddingModelId;
  const targets = opts.embedderIds ?? [...new Set([searchWith, vol.embeddingModelId])];
  const text = indexableText(entry);
  const hash = textHash(text, vol);

  // An entry never indexed (content_hash null) has no chunks: nothing to compare or reuse.
  const fresh = entry.contentHash === null;
  const have = fresh ? [] : await rt.db.chunk.groupBy({ by: ['embedderId'], where: { entryId }, _count: true });
  const unchanged = !opts.force && entry.contentHash === hash && targets.every((t) => have.some((h) => h.embedderId === t));
  const rows = unchanged ? undefined : await embedChunks(rt, entryId, text, vol, targets, { fresh, signal: opts.signal });

  const searchable = rows && targets.includes(searchWith) ? rows.filter((r) => r.embedderId === searchWith).length : null;
  const done = { hash, isIndexed: targets.includes(searchWith) || entry.isIndexed, searchable };
  // The common case, a new entry of a few chunks, swaps in one statement; the rest in a transaction.
  const swapped = rows && fresh && rows.length <= INSERT_BATCH ? await swapInOneStatement(rt, entry, rows, done) : false;
  const outcome = swapped
    ? 'indexed'
    : await rt.db.$transaction(
        async (tx): Promise<IndexOutcome> => {
          // Whether the entry still has no chunks is decided here, under its row lock: another indexer
          // (a reindex, say) may have indexed this same version meanwhile.
          const [current] = await tx.$queryRaw<{ version: number; unindexed: boolean }[]>`
            SELECT version, content_hash IS NULL AS unindexed FROM entries WHERE id = ${entryId} FOR UPDATE`;
          if (!current) return 'gone';
          if (current.version !== entry.version) return 'stale';
          if (rows) await replaceChunks(tx, entry, targets, rows, { fresh: current.unindexed });
          await tx.$executeRaw`UPDATE entries SET ${indexedSet(done)} WHERE id = ${entryId}`;
          return rows ? 'indexed' : 'unchanged';
        },
        { timeout: 30_000, maxWait: 30_000 },
      );
  // An earlier failure is cleared: the volume may no longer be degraded (volume-status.ts).
  if (entry.indexError !== null && (outcome === 'indexed' || outcome === 'unchanged')) {
    await refreshVolumeStatus(rt, { volumeId: entry.volumeId });
  }
  return outcome;
}

type EntryForIndexing = Entry & { volume: VolumeChunking & Pick<Volume, 'embeddingModelId' | 'activeEmbedderId' | 'deletedAt'> };

/** The entry and what its volume says about chunking and embedders, in one statement. */
async function loadEntryForIndexing(rt: Runtime, entryId: string): Promise<EntryForIndexing | undefined> {
  const [row] = await rt.db.$queryRaw<(Entry & { v: EntryForIndexing['volume'] })[]>`
    SELECT ${ENTRY_COLUMNS}, json_build_object('chunkingStrategy', v.chunking_strategy, 'chunkSize', v.chunk_size,
      'chunkOverlap', v.chunk_overlap, 'embeddingModelId', v.embedding_model_id, 'activeEmbedderId', v.active_embedder_id,
      'deletedAt', v.deleted_at) AS v
    FROM entries e JOIN volumes v ON v.id = e.volume_id WHERE e.id = ${entryId}`;
  if (!row) return undefined;
  const { v, ...entry } = row;
  return { ...entry, volume: v };
}

const ENTRY_COLUMNS = modelColumns(Object.values(Prisma.EntryScalarFieldEnum), 'e');

/** What a finished indexing records on the entry. Raw SQL, so bookkeeping does not move `updated_at`. */
function indexedSet(done: { hash: string; isIndexed: boolean; searchable: number | null }): Prisma.Sql {
  return Prisma.sql`content_hash = ${done.hash}, is_indexed = ${done.isIndexed}, indexed_at = ${new Date()},
    total_chunks = coalesce(${done.searchable}::int, total_chunks), index_error = NULL`;
}

/**
 * Records a never-indexed entry's few chunks and its indexed state in one statement (no
 * transaction round trips): the UPDATE locks the row and checks that it is still the version that
 * was chunked and still unindexed; the chunks go in only then. False when it was not (gone, changed,
 * or indexed by another indexer meanwhile): the caller decides in a transaction.
 */
async function swapInOneStatement(
  rt: Runtime,
  entry: Entry,
  rows: ChunkRow[],
  done: { hash: string; isIndexed: boolean; searchable: number | null },
): Promise<boolean> {
  const [result] = await rt.db.$queryRaw<{ updated: number }[]>`
    WITH upd AS (
      UPDATE entries SET ${indexedSet(done)}
      WHERE id = ${entry.id} AND version = ${entry.version} AND content_hash IS NULL RETURNING id),
    ins AS (${chunkInsert(entry, rows)} WHERE EXISTS (SELECT 1 FROM upd) RETURNING 1)
    SELECT (SELECT count(*) FROM upd)::int AS updated`;
  return result?.updated === 1;
}

/** Chunks the text and embeds it for each embedder, reusing the vectors of chunks whose text is unchanged. */
async function embedChunks(
  rt: Runtime,
  entryId: string,
  text: string,
  vol: VolumeChunking,
  targets: string[],
  opts: { fresh: boolean; signal?: AbortSignal | undefined },
): Promise<ChunkRow[]> {
  const { signal } = opts;
  const chunking = { strategy: vol.chunkingStrategy, size: vol.chunkSize, overlap: vol.chunkOverlap };
  const pieces = rt.cpu ? await rt.cpu.chunk(text, chunking, signal) : await chunkText(text, chunking);
  const hashes = pieces.map(sha256);
  const rows: ChunkRow[] = [];
  for (const embedderId of targets) {
    const embedder = await rt.embedders.get(embedderId);
    // Vectors of unchanged chunks are kept; only new text goes to the embedder.
    // Unchanged chunks keep their stored vector (pgvector text); new ones are turned into text per
    // insert batch (replaceChunks), so thousands of vectors are never formatted in one go.
    const known = new Map<string, string | number[]>();
    const old = opts.fresh
      ? []
      : await rt.db.$queryRaw<{ content_hash: string; embedding: string }[]>`
          SELECT DISTINCT ON (content_hash) content_hash, embedding::text AS embedding
          FROM chunks WHERE entry_id = ${entryId} AND embedder_id = ${embedderId} AND content_hash = ANY(${hashes})`;
    for (const o of old) known.set(o.content_hash, o.embedding);
    const missing = [...new Set(hashes.filter((h) => !known.has(h)))];
    const texts = missing.map((h) => pieces[hashes.indexOf(h)] as string);
    const vectors = await embedAll(embedder, texts, signal);
    missing.forEach((h, i) => {
      known.set(h, vectors[i] as number[]);
    });
    pieces.forEach((content, i) => {
      const h = hashes[i] as string;
      rows.push({ chunkIndex: i, content, contentHash: h, embedderId, dims: embedder.dims, vector: known.get(h) as string | number[] });
    });
  }

  return rows;
}

interface ChunkRow {
  chunkIndex: number;
  content: string;
  contentHash: string;
  embedderId: string;
  dims: number;
  /** pgvector text (a kept vector) or numbers (a new one). */
  vector: string | number[];
}

const vectorText = (v: string | number[]) => (typeof v === 'string' ? v : `[${v.join(',')}]`);

/**
 * Rows per INSERT when an entry's chunks are swapped. PGlite runs one statement at a time, and index
 * upkeep (HNSW, BM25, full text) costs several ms per row there (1024 dims): small statements let
 * other connections' statements in between them (and, for a PGlite on the event loop as in tests,
 * requests too: src/db/yielding-pglite.ts), so a 1 MiB entry's thousands of chunks never stall the
 * server for long.
 */
const INSERT_BATCH = 4;

/** An INSERT of chunk rows (the full-text column filled here), as a statement or a CTE body. */
function chunkInsert(entry: Pick<Entry, 'id' | 'volumeId'>, batch: ChunkRow[]): Prisma.Sql {
  return Prisma.sql`
    INSERT INTO chunks (id, entry_id, volume_id, chunk_index, content, content_hash, embedder_id, dims, embedding, tsv, created_at)
    SELECT t.id, ${entry.id}, ${entry.volumeId}, t.idx, t.content, t.hash, t.embedder, t.dims, t.vec::vector,
           to_tsvector('english', t.content), ${new Date()}
    FROM unnest(${batch.map(() => randomUUID())}::text[], ${batch.map((r) => r.chunkIndex)}::int[], ${batch.map((r) => r.content)}::text[],
                ${batch.map((r) => r.contentHash)}::text[], ${batch.map((r) => r.embedderId)}::text[], ${batch.map((r) => r.dims)}::int[],
                ${batch.map((r) => vectorText(r.vector))}::text[]) AS t(id, idx, content, hash, embedder, dims, vec)`;
}

/** Swaps an entry's chunks for the given embedders in one transaction (the full-text column is filled here). */
async function replaceChunks(tx: Tx, entry: Entry, embedderIds: string[], rows: ChunkRow[], opts: { fresh: boolean }): Promise<void> {
  // A never-indexed entry has no chunks to remove (they are written only with its content_hash).
  if (!opts.fresh) await tx.$executeRaw`DELETE FROM chunks WHERE entry_id = ${entry.id} AND embedder_id = ANY(${embedderIds})`;
  for (let i = 0; i < rows.length; i += INSERT_BATCH) {
    const batch = rows.slice(i, i + INSERT_BATCH);
    await tx.$executeRaw`${chunkInsert(entry, batch)}`;
  }
}

/** Records why an entry could not be indexed (kept until a later attempt succeeds). */
export async function recordIndexFailure(rt: Runtime, entryId: string, error: Error): Promise<void> {
  await rt.db.$executeRaw`UPDATE entries SET index_error = ${error.message.slice(0, 1000)}, is_indexed = false WHERE id = ${entryId}`;
  await refreshVolumeStatus(rt, { entryId }); // now degraded
}

/** The `index_entry` job (registered by createApp). */
export const indexEntryJob = (rt: Runtime): JobHandler => ({
  async run(job: Job, ctx) {
    const { entryId } = job.payload as { entryId: string };
    await indexEntry(rt, entryId, { signal: ctx.signal });
  },
  async onFinalFailure(job, error) {
    await recordIndexFailure(rt, (job.payload as { entryId: string }).entryId, error);
  },
});
