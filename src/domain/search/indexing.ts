import { createHash, randomUUID } from 'node:crypto';
import type { Tx } from '../../db/client.js';
import { modelColumns } from '../../db/columns.js';
import { vectorArrayParam, vectorOid } from '../../db/vector-binary.js';
import { type Entry, type Job, Prisma, type Volume } from '../../generated/prisma/client.js';
import { chunkText, flattenJson } from '../../indexing/chunking.js';
import { type Embedder, embedAll } from '../../indexing/embedders/embedder.js';
import type { JobHandler } from '../../jobs/types.js';
import { isUniqueViolation } from '../shared/errors.js';
import type { KeywordRanking, Runtime } from '../shared/runtime.js';
import { refreshVolumeStatus } from '../volumes/status.js';
import { typicalChunkWords } from './bm25-sparse.js';
import { freshCounted, freshRoom, freshWriteStarted } from './fresh.js';
import { INDEXED_DIMS, keywordRanking } from './sql.js';

// Entry → chunks → vectors. Runs after a write commits (an `index_entry` job queued in the write's
// own transaction, so an acknowledged write is always indexed eventually) and from reindex jobs.
// Only chunks whose text changed are embedded again; the swap of an entry's chunks is one
// transaction that first checks the entry still has the version that was chunked.

export const INDEX_ENTRY = 'index_entry';

/** Queues indexing of an entry inside the transaction that wrote it (volumes in `auto` mode). */
export async function queueEntryIndexing(rt: Runtime, tx: Tx, volumeId: string, entryId: string): Promise<string> {
  return (await queueEntriesIndexing(rt, tx, volumeId, [entryId]))[0] as string;
}

/** Queues indexing of several entries of one volume in one statement (a batch write, in its transaction). */
export function queueEntriesIndexing(rt: Runtime, tx: Tx, volumeId: string, entryIds: readonly string[]): Promise<string[]> {
  return rt.jobs.enqueueMany(
    tx,
    entryIds.map((entryId) => ({ kind: INDEX_ENTRY, dedupeKey: `${INDEX_ENTRY}:${entryId}`, volumeId, payload: { entryId } })),
  );
}

/** The text an entry contributes to search: JSON flattened, text as is, files' extracted text. */
export function indexableText(entry: Pick<Entry, 'contentType' | 'content' | 'contentText'>): string {
  const parts: string[] = [];
  if (entry.contentType === 'json' && entry.content !== null) parts.push(flattenJson(entry.content));
  if (entry.contentText) parts.push(entry.contentText);
  return parts.join('\n\n');
}

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

export type VolumeChunking = Pick<Volume, 'chunkingStrategy' | 'chunkSize' | 'chunkOverlap'>;

/** Identifies the chunks an entry's text yields: same hash, same chunks (so indexing can be skipped). */
export function textHash(text: string, v: VolumeChunking): string {
  return sha256(`${v.chunkingStrategy}:${v.chunkSize}:${v.chunkOverlap}\n${text}`);
}

export type IndexOutcome = 'indexed' | 'unchanged' | 'stale' | 'gone';

export interface IndexOptions {
  /** Embedders to index for (default: the one the volume searches with and, during a model change, the one it moves to). */
  embedderIds?: string[];
  /** Re-chunk and re-embed even when the text is unchanged (reindex). */
  force?: boolean;
  signal?: AbortSignal;
  /** Rows may go into the fresh tier (default true; a bulk reindex writes past it: search/bulk-index.ts). */
  freshTier?: boolean;
  /**
   * Chunk rows per INSERT (default INSERT_BATCH, sized for rows that go into an HNSW graph; a bulk
   * reindex's rows go into none, and take BULK_INSERT_BATCH).
   */
  rowsPerStatement?: number;
}

/**
 * Brings an entry's chunks up to date (see indexEntries). Returns 'stale' when the entry changed
 * while it was being embedded (its newer version has its own job queued) and 'gone' when it no
 * longer exists. Embedding errors propagate (the job retries).
 */
export async function indexEntry(rt: Runtime, entryId: string, opts: IndexOptions = {}): Promise<IndexOutcome> {
  const [outcome] = await indexEntries(rt, [entryId], opts);
  if (outcome instanceof Error) throw outcome;
  return outcome as IndexOutcome;
}

/**
 * Rows of chunks per statement. Index upkeep (HNSW at 1024 dims, BM25, full text) costs several ms
 * per row on PGlite, which runs one statement at a time: a statement of this many rows holds other
 * connections back for ~100 ms at most there, while batching entries saves the round trips,
 * transactions and job bookkeeping that dominated small entries.
 */
const INSERT_BATCH = 16;
/**
 * Rows per statement of a bulk reindex, outside every HNSW index: ~0.3 ms a row on PGlite, so a
 * statement holds other connections back ~20 ms; four times fewer statements and round trips.
 */
export const BULK_INSERT_BATCH = 64;

/**
 * Indexes several entries with a fixed number of statements for the lot: one to load them, one (or
 * two) to find what they already have, one embedding call per embedder for all their new chunk
 * texts, and never-indexed entries' chunks and indexed state in one statement per INSERT_BATCH rows
 * (no transaction: the UPDATE takes each row lock and checks the version). Entries indexed before,
 * and those the one-statement swap missed, swap in a transaction that checks their versions under
 * their row locks. One outcome per id, in order: an Error fails only its own entry.
 */
export async function indexEntries(rt: Runtime, entryIds: string[], opts: IndexOptions = {}): Promise<(IndexOutcome | Error)[]> {
  const loaded = await loadEntriesForIndexing(rt, entryIds);
  const outcomes = new Map<string, IndexOutcome | Error>();
  const plans: Plan[] = [];
  for (const id of new Set(entryIds)) {
    const entry = loaded.get(id);
    if (!entry || entry.volume.deletedAt) {
      outcomes.set(id, 'gone');
      continue;
    }
    const vol = entry.volume;
    const searchWith = vol.activeEmbedderId ?? vol.embeddingModelId;
    const targets = opts.embedderIds ?? [...new Set([searchWith, vol.embeddingModelId])];
    const text = indexableText(entry);
    // An entry never indexed (content_hash null) has no chunks: nothing to compare or reuse.
    plans.push({ entry, targets, searchWith, text, hash: textHash(text, vol), fresh: entry.contentHash === null });
  }

  // Unchanged text with chunks for every target: only the bookkeeping is written.
  const known = plans.filter((p) => !p.fresh);
  if (!opts.force && known.length > 0) {
    const have = await rt.db.$queryRaw<{ entry_id: string; embedder_id: string }[]>`
      SELECT DISTINCT entry_id, embedder_id FROM chunks WHERE entry_id = ANY(${known.map((p) => p.entry.id)})`;
    for (const p of known) {
      p.unchanged =
        p.entry.contentHash === p.hash && p.targets.every((t) => have.some((h) => h.entry_id === p.entry.id && h.embedder_id === t));
    }
  }
  const changing = plans.filter((p) => !p.unchanged);
  const columns: ChunkColumns = {
    keyword: columnsFor(await keywordRanking(rt)),
    vectorOid: await vectorOid(rt.db),
    perStatement: opts.rowsPerStatement ?? INSERT_BATCH,
  };
  for (const [p, err] of await embedChunks(rt, changing, columns.keyword, opts.signal)) outcomes.set(p.entry.id, err);

  const ready = plans.filter((p) => !outcomes.has(p.entry.id));
  const fresh = opts.freshTier === false ? 0 : await placeInFreshTier(rt, ready.flatMap(newRowsOf));
  // Searches read the fresh tier again from now until these rows are written (search/fresh.ts).
  const written = fresh > 0 ? freshWriteStarted(rt) : () => undefined;
  try {
    await rt.hooks.beforeChunkSwap?.(ready.map((p) => p.entry.id));
    await writeChunks(rt, ready, outcomes, columns);
  } finally {
    written();
  }

  // An earlier failure is cleared: the volume may no longer be degraded (volume-status.ts).
  const cleared = new Set(
    ready
      .filter((p) => p.entry.indexError !== null && ['indexed', 'unchanged'].includes(outcomes.get(p.entry.id) as string))
      .map((p) => p.entry.volumeId),
  );
  for (const volumeId of cleared) await refreshVolumeStatus(rt, { volumeId });
  if (fresh > 0) rt.state.wakeFreshMerger?.();
  return entryIds.map((id) => outcomes.get(id) as IndexOutcome | Error);
}

/** Writes the planned entries' chunks and indexed state, recording each entry's outcome (indexEntries). */
async function writeChunks(rt: Runtime, ready: Plan[], outcomes: Map<string, IndexOutcome | Error>, columns: ChunkColumns): Promise<void> {
  for (const p of ready) {
    const searchable = p.rows && p.targets.includes(p.searchWith) ? p.rows.filter((r) => r.embedderId === p.searchWith).length : null;
    p.done = { hash: p.hash, isIndexed: p.targets.includes(p.searchWith) || p.entry.isIndexed, searchable };
    // Rows all in place (or unchanged) and the entry already records this state (a reindex of an
    // unchanged entry, a job run again): nothing to write.
    const e = p.entry;
    const recorded = e.contentHash === p.hash && e.isIndexed === p.done.isIndexed && e.indexError === null;
    if ((p.inPlace || p.unchanged) && recorded && (searchable === null || e.totalChunks === searchable)) outcomes.set(e.id, 'unchanged');
  }
  // The common cases, new entries of a few chunks and (a model change) entries gaining their first
  // rows for a model, swap in one statement per INSERT_BATCH rows.
  const per = columns.perStatement;
  const quick = (kind: 'fresh' | 'adding') =>
    ready.filter((p) => !outcomes.has(p.entry.id) && (kind === 'fresh' ? p.fresh : p.adding) && p.rows && p.rows.length <= per);
  for (const kind of ['fresh', 'adding'] as const) {
    for (const group of byRows(quick(kind), per)) {
      for (const id of await swapNew(rt, group, columns, kind)) outcomes.set(id, 'indexed');
    }
  }
  // The rest (and any the quick swap found changed or already indexed meanwhile) in transactions.
  const slow = ready.filter((p) => !outcomes.has(p.entry.id));
  for (const group of byRows(slow, per * 4)) {
    for (const [id, outcome] of await swapInTransaction(rt, group, columns)) outcomes.set(id, outcome);
  }
}

/**
 * Marks the rows that go into the fresh tier (search/fresh.ts): those of dimensions with an HNSW
 * index, as many as the tier has room for. Returns how many.
 */
async function placeInFreshTier(rt: Runtime, rows: ChunkRow[]): Promise<number> {
  const candidates = rows.filter((r) => INDEXED_DIMS.includes(r.dims));
  if (candidates.length === 0 || rt.settings.freshChunks <= 0) return 0;
  const room = await freshRoom(rt);
  const placed = candidates.slice(0, room);
  for (const r of placed) r.fresh = true;
  freshCounted(rt, placed.length);
  return placed.length;
}

interface Plan {
  entry: EntryForIndexing;
  targets: string[];
  searchWith: string;
  text: string;
  hash: string;
  fresh: boolean;
  unchanged?: boolean;
  /** The chunk rows to write (undefined when unchanged). */
  rows?: ChunkRow[];
  /** The entry has exactly these rows already, every one kept in place. */
  inPlace?: boolean;
  /** Indexed before but with no row for any of its targets (a model change): its rows only add. */
  adding?: boolean;
  done?: Done;
}

/** What a finished indexing records on the entry. */
interface Done {
  hash: string;
  isIndexed: boolean;
  /** Chunks searchable now (null: keep the count). */
  searchable: number | null;
}

/**
 * Consecutive groups of plans writing at most `max` rows each (a larger plan is a group of its own);
 * an entry that writes none counts as one.
 */
function* byRows(plans: Plan[], max: number): Generator<Plan[]> {
  let group: Plan[] = [];
  let rows = 0;
  for (const p of plans) {
    const n = Math.max(1, newRowsOf(p).length);
    if (group.length > 0 && rows + n > max) {
      yield group;
      group = [];
      rows = 0;
    }
    group.push(p);
    rows += n;
  }
  if (group.length > 0) yield group;
}

type EntryForIndexing = Entry & { volume: VolumeChunking & Pick<Volume, 'embeddingModelId' | 'activeEmbedderId' | 'deletedAt'> };

/** The entries and what their volumes say about chunking and embedders, in one statement. */
async function loadEntriesForIndexing(rt: Runtime, entryIds: string[]): Promise<Map<string, EntryForIndexing>> {
  const rows = await rt.db.$queryRaw<(Entry & { v: EntryForIndexing['volume'] })[]>`
    SELECT ${ENTRY_COLUMNS}, json_build_object('chunkingStrategy', v.chunking_strategy, 'chunkSize', v.chunk_size,
      'chunkOverlap', v.chunk_overlap, 'embeddingModelId', v.embedding_model_id, 'activeEmbedderId', v.active_embedder_id,
      'deletedAt', v.deleted_at) AS v
    FROM entries e JOIN volumes v ON v.id = e.volume_id WHERE e.id = ANY(${entryIds})`;
  return new Map(rows.map(({ v, ...entry }) => [entry.id, { ...entry, volume: v }]));
}

const ENTRY_COLUMNS = modelColumns(Object.values(Prisma.EntryScalarFieldEnum), 'e');

/** Per-entry values of what a finished indexing records, as arrays for unnest (raw SQL, so `updated_at` stays). */
function doneArrays(plans: Plan[]) {
  const done = plans.map((p) => p.done as Done);
  return Prisma.sql`unnest(${plans.map((p) => p.entry.id)}::text[], ${plans.map((p) => p.entry.version)}::int[],
    ${done.map((d) => d.hash)}::text[], ${done.map((d) => d.isIndexed)}::boolean[], ${done.map((d) => d.searchable)}::int[])
    AS d(id, version, hash, is_indexed, searchable)`;
}

const INDEXED_SET = Prisma.sql`content_hash = d.hash, is_indexed = d.is_indexed, total_chunks = coalesce(d.searchable, e.total_chunks), index_error = NULL`;

/**
 * Records entries' new chunks and indexed state in one statement (no transaction round trips): the
 * UPDATE locks the rows (in id order) and keeps those that are still the version that was chunked
 * and still as `kind` found them: never indexed (`fresh`), or without a row for any model they gain
 * rows for (`adding`: a model change); their chunks go in only then. Returns the ids it swapped; the
 * others (gone, changed, or indexed by another indexer meanwhile) are decided in a transaction.
 */
async function swapNew(rt: Runtime, plans: Plan[], columns: ChunkColumns, kind: 'fresh' | 'adding'): Promise<string[]> {
  const still =
    kind === 'fresh'
      ? Prisma.sql`e.content_hash IS NULL`
      : // A subplan probing the (entry_id, embedder_id, chunk_index) index per entry: as NOT EXISTS the
        // planner may make it an anti-join over a scan of every chunk (statistics lag on PGlite).
        Prisma.sql`(SELECT count(*) FROM (SELECT 1 FROM chunks c WHERE c.entry_id = e.id
                      AND c.embedder_id = ANY(${[...new Set(plans.flatMap((p) => p.targets))]}) LIMIT 1) x) = 0`;
  const swap = () => rt.db.$queryRaw<{ id: string }[]>`
    WITH d AS (SELECT * FROM ${doneArrays(plans)}),
    locked AS (SELECT e.id FROM entries e JOIN d ON d.id = e.id AND d.version = e.version
               WHERE ${still} ORDER BY e.id FOR UPDATE OF e),
    upd AS (UPDATE entries e SET ${INDEXED_SET}, indexed_at = ${new Date()}
            FROM d WHERE d.id = e.id AND e.id IN (SELECT id FROM locked) RETURNING e.id),
    ins AS (${chunkInsert(plans.flatMap(newRowsOf), columns)} WHERE t.entry_id IN (SELECT id FROM upd) RETURNING 1)
    SELECT id FROM upd`;
  // Another indexer that wrote such rows between this statement's snapshot and its row locks (server
  // mode) makes the insert collide: nothing of it is written, and the transaction decides them all.
  const rows = kind === 'adding' ? await swap().catch((err: unknown) => (isUniqueViolation(err) ? [] : Promise.reject(err))) : await swap();
  return rows.map((r) => r.id);
}

/** Swaps entries' chunks in one transaction, each entry checked against its version under its row lock. */
async function swapInTransaction(rt: Runtime, plans: Plan[], columns: ChunkColumns): Promise<Map<string, IndexOutcome>> {
  return rt.db.$transaction(
    async (tx) => {
      const out = new Map<string, IndexOutcome>();
      // Whether an entry still has no chunks is decided here, under its row lock: another indexer
      // (a reindex, say) may have indexed this same version meanwhile.
      const current = await tx.$queryRaw<{ id: string; version: number; unindexed: boolean }[]>`
        SELECT id, version, content_hash IS NULL AS unindexed FROM entries WHERE id = ANY(${plans.map((p) => p.entry.id)}) ORDER BY id FOR UPDATE`;
      const ok: Plan[] = [];
      for (const p of plans) {
        const row = current.find((c) => c.id === p.entry.id);
        if (!row) out.set(p.entry.id, 'gone');
        else if (row.version !== p.entry.version) out.set(p.entry.id, 'stale');
        else {
          ok.push(p);
          out.set(p.entry.id, p.rows ? 'indexed' : 'unchanged');
          p.fresh = row.unindexed;
        }
      }
      // A never-indexed entry has no chunks to remove (they are written only with its content_hash).
      // Rows kept in place (same position, same text, complete: embedChunks) stay; the rest go.
      const swapping = ok.filter((p) => p.rows && !p.fresh);
      const replaced = swapping.flatMap((p) => p.targets.map((t) => [p.entry.id, t] as const));
      if (replaced.length > 0) {
        const kept = swapping.flatMap((p) => (p.rows ?? []).filter((r) => r.kept));
        await tx.$executeRaw`DELETE FROM chunks WHERE (entry_id, embedder_id) IN (
            SELECT * FROM unnest(${replaced.map((r) => r[0])}::text[], ${replaced.map((r) => r[1])}::text[]))
          AND (entry_id, embedder_id, chunk_index, content_hash) NOT IN (
            SELECT * FROM unnest(${kept.map((r) => r.entryId)}::text[], ${kept.map((r) => r.embedderId)}::text[],
                                 ${kept.map((r) => r.chunkIndex)}::int[], ${kept.map((r) => r.contentHash)}::text[]))`;
      }
      // Statements of INSERT_BATCH rows, as outside a transaction: this path takes large entries
      // (thousands of chunks), and a PGlite on the event loop (tests: src/db/yielding-pglite.ts)
      // lets requests in only between statements.
      const rows = ok.flatMap(newRowsOf);
      const per = columns.perStatement;
      for (let i = 0; i < rows.length; i += per) await tx.$executeRaw`${chunkInsert(rows.slice(i, i + per), columns)}`;
      if (ok.length > 0) {
        await tx.$executeRaw`UPDATE entries e SET ${INDEXED_SET}, indexed_at = ${new Date()} FROM ${doneArrays(ok)} WHERE e.id = d.id`;
      }
      return out;
    },
    { timeout: 30_000, maxWait: 30_000 },
  );
}

/**
 * Each plan's entry id with each of its targets, as a row source `k(entry_id, embedder_id)` to join
 * chunks on, so the rows are read through the (entry_id, embedder_id, chunk_index) index. With
 * `entry_id = ANY(…) AND embedder_id = ANY(…)` the planner took the (volume_id, embedder_id) index
 * whenever its statistics said the embedder had few rows, as they do for the model a reindex is
 * writing: a scan of every row written so far, each batch (300–480 ms a batch at 100,000 chunks).
 */
function entryTargets(plans: Plan[]): Prisma.Sql {
  const pairs = plans.flatMap((p) => p.targets.map((t) => [p.entry.id, t] as const));
  return Prisma.sql`unnest(${pairs.map((k) => k[0])}::text[], ${pairs.map((k) => k[1])}::text[]) AS k(entry_id, embedder_id)`;
}

/**
 * Chunks each entry's text and embeds it for each of its embedders. A chunk an entry already has at
 * the same position with the same text (and the keyword columns `keyword` asks for) is kept in place
 * and not written again: a reindex into the same model, or an edit to one part of a long document,
 * rewrites only what changed (each rewritten row costs an HNSW insert and leaves a dead graph node).
 * Other chunks whose text is unchanged reuse their vectors; one embedding call per embedder for all
 * the entries' new texts (split per entry when it fails, so a bad entry fails alone). Returns the
 * entries that failed.
 */
async function embedChunks(rt: Runtime, plans: Plan[], keyword: KeywordColumns, signal?: AbortSignal): Promise<Map<Plan, Error>> {
  const failed = new Map<Plan, Error>();
  const pieces = new Map<Plan, { texts: string[]; hashes: string[] }>();
  for (const p of plans) {
    const vol = p.entry.volume;
    const chunking = { strategy: vol.chunkingStrategy, size: vol.chunkSize, overlap: vol.chunkOverlap };
    try {
      const texts = rt.cpu ? await rt.cpu.chunk(p.text, chunking, signal) : await chunkText(p.text, chunking);
      pieces.set(p, { texts, hashes: texts.map(sha256) });
    } catch (err) {
      if (signal?.aborted) throw err;
      failed.set(p, asError(err));
    }
  }
  const chunked = plans.filter((p) => pieces.has(p));
  const key = (entryId: string, embedderId: string, hash: string) => `${entryId}\u0000${embedderId}\u0000${hash}`;
  // What the entries indexed before have now: the rows to keep in place, and where a vector can be reused.
  const inPlace = new Set<string>(); // entry id, embedder, hash + position
  const rowsNow = new Map<string, number>(); // entry id → its rows for its targets
  const present = new Set<string>(); // entry id, embedder, hash: a vector to reuse
  const reusing = chunked.filter((p) => !p.fresh);
  if (reusing.length > 0) {
    const have = await rt.db.$queryRaw<
      { entry_id: string; embedder_id: string; chunk_index: number; content_hash: string; complete: boolean }[]
    >`
      SELECT c.entry_id, c.embedder_id, c.chunk_index, c.content_hash, ${keywordColumnsFilled(keyword)} AS complete
      FROM ${entryTargets(reusing)} JOIN chunks c ON c.entry_id = k.entry_id AND c.embedder_id = k.embedder_id`;
    const targetsOf = new Map(reusing.map((p) => [p.entry.id, p.targets]));
    for (const h of have) {
      if (!targetsOf.get(h.entry_id)?.includes(h.embedder_id)) continue;
      rowsNow.set(h.entry_id, (rowsNow.get(h.entry_id) ?? 0) + 1);
      present.add(key(h.entry_id, h.embedder_id, h.content_hash));
      if (h.complete) inPlace.add(key(h.entry_id, h.embedder_id, `${h.content_hash}@${h.chunk_index}`));
    }
  }
  const keptAt = (p: Plan, embedderId: string, i: number) =>
    inPlace.has(key(p.entry.id, embedderId, `${(pieces.get(p) as { hashes: string[] }).hashes[i]}@${i}`));
  // Vectors of other unchanged chunks are reused (pgvector text); every vector is encoded per insert
  // batch (chunkInsert, in binary), so thousands of vectors are never encoded in one go.
  const known = new Map<string, string | number[]>(); // entry id, embedder, content hash → vector
  // (Read only where a row with that text exists: none do for a model the entry was never indexed for.)
  const wanted = reusing.flatMap((p) =>
    p.targets.flatMap((t) =>
      (pieces.get(p) as { hashes: string[] }).hashes.filter((h, i) => !keptAt(p, t, i) && present.has(key(p.entry.id, t, h))),
    ),
  );
  if (wanted.length > 0) {
    const old = await rt.db.$queryRaw<{ entry_id: string; embedder_id: string; content_hash: string; embedding: string }[]>`
      SELECT DISTINCT ON (c.entry_id, c.embedder_id, c.content_hash) c.entry_id, c.embedder_id, c.content_hash, c.embedding::text AS embedding
      FROM ${entryTargets(reusing)} JOIN chunks c ON c.entry_id = k.entry_id AND c.embedder_id = k.embedder_id
      WHERE c.content_hash = ANY(${[...new Set(wanted)]})`;
    for (const o of old) known.set(key(o.entry_id, o.embedder_id, o.content_hash), o.embedding);
  }
  for (const embedderId of new Set(chunked.flatMap((p) => p.targets))) {
    const users = chunked.filter((p) => p.targets.includes(embedderId) && !failed.has(p));
    // Only new text goes to the embedder, each distinct text once.
    const missing = new Map<string, string>(); // hash → text
    for (const p of users) {
      const { texts, hashes } = pieces.get(p) as { texts: string[]; hashes: string[] };
      hashes.forEach((h, i) => {
        if (!keptAt(p, embedderId, i) && !known.has(key(p.entry.id, embedderId, h))) missing.set(h, texts[i] as string);
      });
    }
    let embedder: Embedder;
    try {
      embedder = await rt.embedders.get(embedderId);
    } catch (err) {
      for (const p of users) failed.set(p, asError(err));
      continue;
    }
    const vectors = new Map<string, number[]>();
    const embed = async (hashes: string[]) => {
      const out = await embedAll(
        embedder,
        hashes.map((h) => missing.get(h) as string),
        signal,
      );
      for (const [i, h] of hashes.entries()) vectors.set(h, out[i] as number[]);
    };
    try {
      await embed([...missing.keys()]);
    } catch (err) {
      if (signal?.aborted) throw err;
      // Which entry the provider refused is not known: each on its own, so only that one fails.
      for (const p of users) {
        const hashes = (pieces.get(p) as { hashes: string[] }).hashes.filter((h) => missing.has(h) && !vectors.has(h));
        try {
          if (users.length === 1) throw err;
          await embed([...new Set(hashes)]);
        } catch (e) {
          if (signal?.aborted) throw e;
          failed.set(p, asError(e));
        }
      }
    }
    for (const p of users) {
      if (failed.has(p)) continue;
      const { texts, hashes } = pieces.get(p) as { texts: string[]; hashes: string[] };
      p.rows ??= [];
      texts.forEach((content, i) => {
        const h = hashes[i] as string;
        const kept = keptAt(p, embedderId, i);
        const vector = kept ? null : (known.get(key(p.entry.id, embedderId, h)) ?? (vectors.get(h) as number[]));
        p.rows?.push({
          kept,
          entryId: p.entry.id,
          volumeId: p.entry.volumeId,
          chunkIndex: i,
          content,
          contentHash: h,
          embedderId,
          dims: embedder.dims,
          vector,
          avgdl: typicalChunkWords(p.entry.volume),
        });
      });
    }
  }
  for (const p of failed.keys()) p.rows = undefined;
  // An entry whose every row is kept and that has no other row needs no swap (see indexEntries).
  for (const p of reusing) {
    p.inPlace = !failed.has(p) && !!p.rows?.every((r) => r.kept) && p.rows.length === rowsNow.get(p.entry.id);
    p.adding = !failed.has(p) && !rowsNow.has(p.entry.id);
  }
  return failed;
}

const asError = (err: unknown) => (err instanceof Error ? err : new Error(String(err)));
const rowsOf = (p: Plan) => p.rows ?? [];
/** The rows a swap writes: all but those kept in place. */
const newRowsOf = (p: Plan) => rowsOf(p).filter((r) => !r.kept);

interface ChunkRow {
  entryId: string;
  volumeId: string;
  chunkIndex: number;
  content: string;
  contentHash: string;
  embedderId: string;
  dims: number;
  /** Already in the table, at this position with this text: not written again. */
  kept: boolean;
  /** pgvector text (a reused vector) or numbers (a new one); null for a row kept in place. */
  vector: string | number[] | null;
  /** Written into the fresh tier, outside the HNSW indexes until merged. */
  fresh?: boolean;
  /** The volume's typical chunk length in indexed words (BM25's average, bm25-sparse.ts). */
  avgdl: number;
}

/** A vector as numbers (a reused one comes back from pgvector as text, which is JSON); rows kept in place are never written. */
function vectorNumbers(v: string | number[] | null): number[] {
  if (v === null) throw new Error('a chunk row kept in place has no vector to write');
  return typeof v === 'string' ? (JSON.parse(v) as number[]) : v;
}

/**
 * Which keyword columns a chunk row fills: none where BM25 ranks from pg_textsearch's index (it
 * indexes `content` itself; migration chunks_tsv_without_bm25), the full-text column for ts_rank_cd,
 * and with it the BM25 sparse vector where keyword search ranks with those (bm25-sparse.ts).
 */
type KeywordColumns = 'none' | 'tsv' | 'tsv+bm25';
/** How chunk rows are written: their keyword columns, and the `vector` type's oid for their vectors in binary. */
interface ChunkColumns {
  keyword: KeywordColumns;
  vectorOid: number;
  /** Rows per INSERT (IndexOptions.rowsPerStatement). */
  perStatement: number;
}
/** Whether a chunk row has the keyword columns `keyword` fills (chunkInsert): a row without them is written again. */
const keywordColumnsFilled = (keyword: KeywordColumns): Prisma.Sql =>
  keyword === 'none'
    ? Prisma.sql`true`
    : keyword === 'tsv'
      ? Prisma.sql`tsv IS NOT NULL`
      : Prisma.sql`tsv IS NOT NULL AND bm25 IS NOT NULL`;
const columnsFor = (ranking: KeywordRanking): KeywordColumns =>
  ranking === 'bm25' ? 'none' : ranking === 'ts_rank_cd' ? 'tsv' : 'tsv+bm25';

/**
 * An INSERT of chunk rows, as a statement or a CTE body (`t` names the rows), with the keyword
 * columns `columns` asks for; the vectors go as one binary `vector[]` parameter (db/vector-binary.ts).
 */
function chunkInsert(batch: ChunkRow[], columns: ChunkColumns): Prisma.Sql {
  const { keyword } = columns;
  const tsv = keyword === 'none' ? Prisma.sql`NULL::tsvector` : Prisma.sql`to_tsvector('english', t.content)`;
  // The tsvector is computed once per row (a lateral subquery that OFFSET 0 keeps from being inlined)
  // and the BM25 vector made from it.
  const bm25 = keyword === 'tsv+bm25' ? Prisma.sql`chunk_bm25_vector(d.tsv, t.avgdl)` : Prisma.sql`NULL`;
  return Prisma.sql`
    INSERT INTO chunks (id, entry_id, volume_id, chunk_index, content, content_hash, embedder_id, dims, embedding, tsv, ${Prisma.raw(keyword === 'tsv+bm25' ? 'bm25, ' : '')}fresh, created_at)
    SELECT t.id, t.entry_id, t.volume_id, t.idx, t.content, t.hash, t.embedder, t.dims, t.vec,
           d.tsv, ${keyword === 'tsv+bm25' ? Prisma.sql`${bm25}, ` : Prisma.empty}t.fresh, ${new Date()}
    FROM unnest(${batch.map(() => randomUUID())}::text[], ${batch.map((r) => r.entryId)}::text[], ${batch.map((r) => r.volumeId)}::text[],
                ${batch.map((r) => r.chunkIndex)}::int[], ${batch.map((r) => r.content)}::text[],
                ${batch.map((r) => r.contentHash)}::text[], ${batch.map((r) => r.embedderId)}::text[], ${batch.map((r) => r.dims)}::int[],
                ${vectorArrayParam(
                  batch.map((r) => vectorNumbers(r.vector)),
                  columns.vectorOid,
                )}::vector[], ${batch.map((r) => r.fresh === true)}::boolean[],
                ${batch.map((r) => r.avgdl)}::float8[])
         AS t(id, entry_id, volume_id, idx, content, hash, embedder, dims, vec, fresh, avgdl)
         CROSS JOIN LATERAL (SELECT ${tsv} AS tsv OFFSET 0) d`;
}

/** Records why an entry could not be indexed (kept until a later attempt succeeds). */
export async function recordIndexFailure(rt: Runtime, entryId: string, error: Error): Promise<void> {
  await rt.db.$executeRaw`UPDATE entries SET index_error = ${error.message.slice(0, 1000)}, is_indexed = false WHERE id = ${entryId}`;
  await refreshVolumeStatus(rt, { entryId }); // now degraded
}

/** Most entries one `index_entry` run takes at once (see indexEntries). */
export const INDEX_BATCH = 32;

/** The `index_entry` job (registered by createApp): claimed and run up to INDEX_BATCH at a time. */
export const indexEntryJob = (rt: Runtime): JobHandler => ({
  async run(job: Job, ctx) {
    const { entryId } = job.payload as { entryId: string };
    await indexEntry(rt, entryId, { signal: ctx.signal });
  },
  batch: {
    max: INDEX_BATCH,
    async run(jobs, signal) {
      return indexEntries(
        rt,
        jobs.map((j) => (j.payload as { entryId: string }).entryId),
        { signal },
      );
    },
  },
  async onFinalFailure(job, error) {
    await recordIndexFailure(rt, (job.payload as { entryId: string }).entryId, error);
  },
});
