import type { PubSub } from 'graphql-yoga';
import type { Logger } from 'pino';
import type { RateLimiterAbstract } from 'rate-limiter-flexible';
import type { Db } from '../../db/client.js';
import type { InOneQuery, RawQuery } from '../../db/database.js';
import type { CpuPool } from '../../indexing/cpu-pool.js';
import type { EmbedderRegistry } from '../../indexing/embedders/registry.js';
import type { JobQueue } from '../../jobs/queue.js';
import type { BlobStore } from '../../storage/blob-store.js';
import type { ResumableStorage } from '../../storage/resumable.js';
import type { Events } from './events.js';

/**
 * Everything one gateway runs on, built once by `createApp(config)` and handed to what needs it:
 * domain functions take it as their first argument, transports carry it in their request context,
 * job handlers close over it. Nothing here is module state, so two gateways (two databases, two
 * blob stores) run side by side in one process.
 */
export interface Runtime {
  db: Db;
  /** One raw statement on the pool, past Prisma's client (compiled GraphQL reads); absent in scripts that build a runtime by hand. */
  sql?: RawQuery;
  /** Statements in one round trip and one implicit transaction, past Prisma's client (searches). */
  sqlInOne: InOneQuery;
  blobs: BlobStore;
  /** Where resumable (tus) uploads keep their bytes until complete (storage/resumable.ts). */
  resumable: ResumableStorage;
  events: PubSub<Events>;
  jobs: JobQueue;
  embedders: EmbedderRegistry;
  /** Worker threads for CPU-bound indexing; absent in scripts that chunk in line. */
  cpu: CpuPool | undefined;
  log: Logger;
  settings: Settings;
  /** Per-key rate limiters (access/rate-limits.ts). */
  limits: RateLimits;
  /** Per-gateway memory: caches and work in flight. */
  state: RuntimeState;
  /** Fault injection points for tests (never set in production). */
  hooks: TestHooks;
}

/** Per-key limiters per window; absent: that limit is off. */
export interface RateLimits {
  requests: RateLimiterAbstract | undefined;
  uploadBytes: RateLimiterAbstract | undefined;
  settings: { requests: number; uploadBytes: number; windowSeconds: number };
}

/** The settings domain rules depend on (from config.ts; defaults there). */
export interface Settings {
  maxUploadBytes: number;
  /** Temporary upload files and incomplete multipart uploads older than this are abandoned. */
  uploadTempMaxAgeMs: number;
  /** Resumable and signed-URL uploads left unfinished this long expire. */
  uploadSessionTtlMs: number;
  bucketPrefix: string;
  defaultRegion: string;
  volumeRetentionDays: number;
  /** pgvector `hnsw.ef_search` for semantic searches. */
  efSearch: number;
  /**
   * Searches whose volumes hold fewer chunks than these scan them exactly rather than through the
   * shared HNSW (`nearest`) or BM25 (`bm25`) index (search/sizing.ts); 0: never.
   */
  exactBelow: { nearest: number; bm25: number };
  /** Most chunks in the fresh tier, outside the HNSW indexes until merged (search/fresh.ts); 0: off. */
  freshChunks: number;
  /** Entries a reindex takes per batch, at most (search/reindex.ts; REINDEX_BATCH_ENTRIES). */
  reindexBatchEntries: number;
  /**
   * Embedded: a reindex of at least this many chunks builds their HNSW index after loading them
   * (search/bulk-index.ts; REINDEX_BULK_MIN_CHUNKS, 0 never).
   */
  reindexBulkMinChunks: number;
  /**
   * Hybrid search runs its semantic and keyword legs as two statements at once, each on its own
   * pooled connection (server mode; SEARCH_PARALLEL_LEGS), rather than one after the other in one.
   */
  parallelSearchLegs: boolean;
  /** How long an API key's lookup is reused (revocations evict it at once, on every replica, via events). */
  keyCacheTtlMs: number;
  /** GraphQL reads by API keys answered by one compiled statement where they can be (src/graphql/compiled/). */
  compiledReads: boolean;
  /**
   * Vacuuming by the gateway (maintenance/vacuum.ts): `byGateway` where the database runs no
   * autovacuum (embedded PGlite); `quietMs`, how long without HTTP requests counts as quiet.
   */
  vacuum: { byGateway: boolean; quietMs: number };
  /** This gateway is its database's only writer (embedded PGlite: the data dir has one owner). */
  soleWriter: boolean;
}

/**
 * How keyword search ranks on a database (search/sql.ts): BM25 from pg_textsearch's index (embedded
 * PGlite; Postgres 17+ with the extension), BM25 as pgvector sparse vectors (Postgres with pgvector
 * >= 0.7: search/bm25-sparse.ts), else ts_rank_cd.
 */
export type KeywordRanking = 'bm25' | 'bm25_sparsevec' | 'ts_rank_cd';

export interface RuntimeState {
  /** Organisations known to exist (ensureOrg creates one before its first workspace or API key). */
  knownOrgs: Set<string>;
  /** When each API key's last_used_at was last written (minute resolution). */
  keyLastUsedWrites: Map<string, number>;
  /** API keys recently looked up, by secret hash (see access/authenticate.ts). */
  keyCache: Map<string, CachedKey>;
  /** Keys revoked recently (id → until when to remember it): a lookup racing the revocation is not cached. */
  revokedKeys: Map<string, number>;
  /** Bucket provisioning and deletion under way, so shutdown can wait for it and tests can await it. */
  bucketWork: Set<Promise<void>>;
  /** Whether the database's pgvector can iterate HNSW scans (asked once). */
  iterativeScans?: Promise<boolean>;
  /** How keyword search ranks on this database (asked once, at start-up: search/sql.ts). */
  keywordRanking?: Promise<KeywordRanking>;
  /** Whether pg_textsearch hands on the scores its index scan computed (asked once: search/sql.ts). */
  bm25ScanScores?: Promise<boolean>;
  /** Wakes this gateway's merger of fresh chunks (search/fresh-merger.ts), set while it runs. */
  wakeFreshMerger?: () => void;
  /** The fresh tier's size as last counted (performance.now() ms), kept up to date by this gateway's writes and merges (search/fresh.ts). */
  freshCount?: { n: number; at: number };
  /** This gateway's writes into the fresh tier: begun in all, and not yet ended (search/fresh.ts, freshWriteStarted). */
  freshWrites: { started: number; inFlight: number };
  /** The last count found the fresh tier empty with none of this gateway's fresh writes under way (search/fresh.ts). */
  freshEmpty?: boolean;
  /** Chunks per volume and embedder, counted up to a bound, and when (performance.now() ms): search/sizing.ts. */
  chunkCounts: Map<string, { n: number; bound: number; at: number }>;
  /** The chunks table's size by the planner's statistics, as of the last count (search/sizing.ts). */
  chunksTotal?: number;
  /** HTTP requests in flight, and when the last one ended (epoch ms): whether the gateway is quiet. */
  requests: { inFlight: number; lastEndedAt: number };
}

/** A key's principal as authenticate built it (the access kernel's type; the kernel here knows only its id). */
export interface CachedKey {
  principal: { readonly keyId: string };
  until: number;
}

export interface TestHooks {
  /** Called inside an entry's commit transaction, before it commits (to inject a failure). */
  beforeEntryCommit?: (path: string) => Promise<void> | void;
  /**
   * Called before each backup snapshot transaction and again inside it, before any file is copied.
   * A test stands in for a writer whose old object is deleted after the snapshot began (PGlite lets
   * no other transaction commit meanwhile, so only such a seam can show the retry and the locked round).
   */
  backupSnapshot?: (at: { volumeId: string; round: number; locked: boolean; inTransaction: boolean }) => Promise<void> | void;
  /** Awaited by the fresh-chunk merger before each batch (a test holds chunks in the fresh tier with it). */
  beforeFreshMerge?: () => Promise<void> | void;
  /**
   * Awaited by indexing after a batch is chunked and embedded, before its rows are written (a test
   * stands in for another indexer that wrote rows for these entries meanwhile).
   */
  beforeChunkSwap?: (entryIds: string[]) => Promise<void> | void;
  /** Awaited at start-up before HNSW indexes a crash left missing are built (a test holds the build there). */
  beforeIndexRestore?: () => Promise<void> | void;
  /**
   * Awaited by acquireLock after its access check and before its transaction (a test removes a mount
   * there: PGlite runs one transaction at a time, so only such a seam shows the check inside it).
   */
  afterLockAccessCheck?: (volumeId: string, partition: string) => Promise<void> | void;
  /** Awaited by a reindex before each batch of entries, with what it has done so far (a test looks in mid-run). */
  beforeReindexBatch?: (volumeId: string, progress: { processed: number; bulk: number | undefined }) => Promise<void> | void;
}

export function newRuntimeState(): RuntimeState {
  return {
    knownOrgs: new Set(),
    keyLastUsedWrites: new Map(),
    keyCache: new Map(),
    revokedKeys: new Map(),
    bucketWork: new Set(),
    requests: { inFlight: 0, lastEndedAt: 0 },
    freshWrites: { started: 0, inFlight: 0 },
    chunkCounts: new Map(),
  };
}
