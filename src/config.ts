import fs from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import type { EmbeddersConfig } from './indexing/embedders/registry.js';

/** Default UPLOAD_TEMP_MAX_AGE_MS: 24 hours. */
export const DEFAULT_UPLOAD_TEMP_MAX_AGE_MS = 24 * 60 * 60 * 1000;

const emptyAsUndefined = (v: unknown) => (v === '' ? undefined : v);
const optionalString = z.preprocess(emptyAsUndefined, z.string().optional());
const bool = (fallback: boolean) =>
  z.preprocess(
    emptyAsUndefined,
    z
      .enum(['true', 'false', '1', '0'])
      .optional()
      .transform((v) => (v === undefined ? fallback : v === 'true' || v === '1')),
  );

/**
 * Every setting the gateway reads, parsed once at start-up. `.env.example` documents each one;
 * keep the two in step.
 */
const ConfigSchema = z.object({
  NODE_ENV: z.enum(['development', 'production', 'test']).default('production'),
  PORT: z.coerce.number().int().min(0).max(65535).default(4000),
  HOST: z.string().min(1).default('127.0.0.1'),
  /** Public base URL used in links the gateway hands out (signed download URLs). Defaults to http://HOST:PORT. */
  PUBLIC_URL: optionalString.pipe(z.url().optional()),
  DATA_DIR: z.string().min(1).default('./data'),
  ADMIN_API_KEY: optionalString.pipe(z.string().min(16, 'ADMIN_API_KEY must be at least 16 characters').optional()),
  DATABASE_URL: optionalString.pipe(z.url().optional()),
  DATABASE_POOL_SIZE: z.coerce.number().int().min(1).max(100).default(10),
  DATABASE_POOL_TIMEOUT_MS: z.coerce.number().int().min(100).max(600_000).default(20_000),
  /** Embedded mode: PGlite's shared_buffers in MB (its memory is at most 2 GB, so at most 1 GB of it). */
  EMBEDDED_SHARED_BUFFERS_MB: z.coerce.number().int().min(16).max(1024).default(256),
  S3_ENDPOINT: optionalString.pipe(z.url().optional()),
  S3_REGION: z.string().default('us-east-1'),
  S3_ACCESS_KEY_ID: optionalString,
  S3_SECRET_ACCESS_KEY: optionalString,
  S3_FORCE_PATH_STYLE: bool(true),
  /** The S3 endpoint clients reach, when it differs from S3_ENDPOINT: presigned download and upload URLs are signed for its host. */
  S3_PUBLIC_ENDPOINT: optionalString.pipe(z.url().optional()),
  /** Prefix for the per-workspace bucket names (bucket = prefix + workspace id). */
  S3_BUCKET_PREFIX: z
    .string()
    .regex(/^[a-z0-9][a-z0-9-]{0,20}$/, 'lowercase letters, digits and dashes, at most 21 characters')
    .default('vg-'),
  REDIS_URL: optionalString.pipe(z.url().optional()),
  /** Largest file an upload may carry, in bytes (default 5 GiB). */
  MAX_UPLOAD_BYTES: z.coerce
    .number()
    .int()
    .min(1)
    .default(5 * 1024 ** 3),
  /**
   * Temporary upload files and incomplete multipart uploads older than this are assumed abandoned
   * (the longest an upload may take) and swept at start-up and by reconciliation.
   */
  UPLOAD_TEMP_MAX_AGE_MS: z.coerce.number().int().min(1000).default(DEFAULT_UPLOAD_TEMP_MAX_AGE_MS),
  /** How long a resumable (tus) or signed-URL upload may stay unfinished before it expires and is swept with its parts (default 24 h). */
  UPLOAD_SESSION_TTL_MS: z.coerce.number().int().min(1000).default(DEFAULT_UPLOAD_TEMP_MAX_AGE_MS),
  /** HMAC key for the local blob store's download URLs; generated into DATA_DIR when unset. */
  DOWNLOAD_SIGNING_SECRET: optionalString.pipe(z.string().min(32, 'at least 32 characters').optional()),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  GRAPHIQL: optionalString.pipe(z.enum(['true', 'false', '1', '0']).optional()),
  GRAPHQL_INTROSPECTION: optionalString.pipe(z.enum(['true', 'false', '1', '0']).optional()),
  GRAPHQL_MAX_DEPTH: z.coerce.number().int().min(1).max(100).default(12),
  GRAPHQL_MAX_COST: z.coerce.number().int().min(1).default(20_000),
  /** Reads of workspaces, volumes, entries, mounts and locks by API keys compiled into one statement (src/graphql/compiled/). */
  GRAPHQL_COMPILED_READS: optionalString.pipe(z.enum(['true', 'false', '1', '0']).optional()),
  SHUTDOWN_TIMEOUT_MS: z.coerce.number().int().min(0).default(10_000),
  /** How often expired entries are swept and failed bucket deletions retried. */
  SWEEP_INTERVAL_MS: z.coerce.number().int().min(100).default(30_000),
  /** How long without HTTP requests the embedded gateway counts as quiet, free to vacuum chunks early (maintenance/vacuum.ts). */
  VACUUM_QUIET_MS: z.coerce.number().int().min(0).default(10_000),
  /** Days a deleted volume stays restorable before the maintenance purge removes it (fractions allowed; 0: purge at once). */
  VOLUME_RETENTION_DAYS: z.coerce.number().min(0).max(3650).default(7),
  /** OpenAI-compatible embeddings endpoint (…/v1/embeddings); enables the `openai:<model>` embedder. */
  EMBEDDINGS_URL: optionalString.pipe(z.url().optional()),
  EMBEDDINGS_API_KEY: optionalString,
  EMBEDDINGS_MODEL: z.string().min(1).default('text-embedding-3-small'),
  /** Dimensions the provider returns for EMBEDDINGS_MODEL (asked for explicitly in each request). */
  EMBEDDINGS_DIMS: z.coerce.number().int().min(1).max(16_000).default(1536),
  EMBEDDINGS_BATCH_SIZE: z.coerce.number().int().min(1).max(2048).default(64),
  EMBEDDINGS_TIMEOUT_MS: z.coerce.number().int().min(100).default(30_000),
  /** Folder of local ONNX models (one sub-folder each) for the `onnx:<folder>` embedders; needs @huggingface/transformers. */
  ONNX_MODELS_DIR: optionalString,
  /** Worker threads for chunking and the hashing embedder (empty: one per core but one, at least one). */
  INDEXING_THREADS: z.preprocess(emptyAsUndefined, z.coerce.number().int().min(1).max(64).optional()),
  /** Longest one entry's chunking (or hashing) may run in a worker thread before it is stopped and recorded as its index_error. */
  INDEXING_TIMEOUT_MS: z.coerce.number().int().min(100).default(60_000),
  /**
   * Background jobs (indexing, reindex) this gateway runs at once. 0 = run none (another replica
   * does). Default: 8 in server mode (jobs wait on the database, so more overlap), 2 embedded (PGlite
   * runs one statement at a time, on the event loop requests also need).
   */
  JOB_CONCURRENCY: z.preprocess(emptyAsUndefined, z.coerce.number().int().min(0).max(64).optional()),
  /** How long a claimed job stays claimed without a heartbeat before another replica may take it over. */
  JOB_LEASE_MS: z.coerce.number().int().min(500).default(30_000),
  /** How often an idle worker looks for queued jobs (jobs queued by this process start at once). */
  JOB_POLL_MS: z.coerce.number().int().min(10).default(1_000),
  /**
   * Entries a reindex takes per batch (one embedding call, one progress save; fewer when their
   * content passes 4 MiB). A cancel stops the run within the batch in hand.
   */
  REINDEX_BATCH_ENTRIES: z.coerce.number().int().min(1).max(1_000).default(64),
  /**
   * Embedded only: a reindex writing at least this many chunks into an HNSW index that holds at
   * most a quarter as many other rows drops the index and builds it after loading (4× cheaper per
   * row on PGlite), holding the database for the build (~1 min per 100,000 chunks). 0: never.
   */
  REINDEX_BULK_MIN_CHUNKS: z.coerce.number().int().min(0).default(20_000),
  /** HNSW candidate list size for semantic search (pgvector hnsw.ef_search). */
  SEARCH_EF_SEARCH: z.coerce.number().int().min(10).max(1000).default(200),
  /**
   * Volumes (or a search's volumes together) with fewer chunks than this are searched by an exact
   * nearest-neighbour scan rather than the HNSW index they share with every other volume (0: never).
   */
  SEARCH_EXACT_BELOW_CHUNKS: z.coerce.number().int().min(0).max(100_000).default(1_000),
  /**
   * The same for keyword search's BM25: below this many chunks each is scored, not found through the
   * index (0: never; nor is the scan's starting depth sized for volumes under 5,000 chunks).
   */
  SEARCH_BM25_EXACT_BELOW_CHUNKS: z.coerce.number().int().min(0).max(100_000).default(200),
  /**
   * Most chunks kept in the fresh tier: written outside the HNSW indexes (searched exactly) and
   * merged into them in the background, so a burst of writes is searchable at once (0: off).
   */
  SEARCH_FRESH_CHUNKS: z.coerce.number().int().min(0).max(100_000).default(10_000),
  /**
   * Hybrid search sends its semantic and keyword legs as two statements on two pooled connections at
   * once (server mode; default on there), rather than one statement that runs them one after the other.
   */
  SEARCH_PARALLEL_LEGS: optionalString.pipe(z.enum(['true', 'false', '1', '0']).optional()),
  /** How long an API key lookup is reused; revoking evicts it at once on every replica (0: no cache). */
  KEY_CACHE_TTL_MS: z.coerce.number().int().min(0).max(300_000).default(10_000),
  /** graphql-ws: open WebSocket connections on this gateway; more are closed with 1013 (try again later). */
  WS_MAX_CONNECTIONS: z.coerce.number().int().min(1).default(10_000),
  /** graphql-ws: connections per API key (the platform key is one); more are closed with 4429. */
  WS_MAX_CONNECTIONS_PER_KEY: z.coerce.number().int().min(1).default(100),
  /** graphql-ws: live subscriptions per API key across its connections; more get an `error` message (RATE_LIMITED). */
  WS_MAX_SUBSCRIPTIONS_PER_KEY: z.coerce.number().int().min(1).default(200),
  /** graphql-ws: time a new socket has to send `connection_init` before it is closed with 4408. */
  WS_CONNECTION_INIT_TIMEOUT_MS: z.coerce.number().int().min(100).default(3_000),
  /** graphql-ws: ws ping interval; a socket that has not answered by the next ping is terminated. 0: off. */
  WS_KEEPALIVE_MS: z.coerce.number().int().min(0).default(30_000),
  /** graphql-ws: a connection with no live operation for this long is closed with 4408. 0: off. */
  WS_IDLE_TIMEOUT_MS: z.coerce.number().int().min(0).default(300_000),
  /** Serve Prometheus metrics at /metrics. */
  METRICS: bool(true),
  /** Bearer token /metrics requires; unset: /metrics answers only clients on this host (loopback). */
  METRICS_TOKEN: optionalString.pipe(z.string().min(16, 'METRICS_TOKEN must be at least 16 characters').optional()),
  /** Requests (REST, GraphQL, WebSocket subscribes) one API key may make per window; 0: no limit. The platform key is not limited. */
  RATE_LIMIT_REQUESTS: z.coerce.number().int().min(0).default(60_000),
  /** Upload bytes one API key may send per window; 0: no limit. */
  RATE_LIMIT_UPLOAD_BYTES: z.coerce
    .number()
    .int()
    .min(0)
    .default(20 * 1024 ** 3),
  /** The rate-limit window, in seconds (fixed windows; shared by every replica through REDIS_URL). */
  RATE_LIMIT_WINDOW_SECONDS: z.coerce.number().int().min(1).max(86_400).default(60),
  /** OpenTelemetry: traces are exported (OTLP over HTTP) when this is set, else not recorded at all. */
  OTEL_EXPORTER_OTLP_ENDPOINT: optionalString.pipe(z.url().optional()),
  /** OpenTelemetry service.name of this gateway's spans. */
  OTEL_SERVICE_NAME: z.string().min(1).default('volumes-gateway'),
  /** The web console at /console (on unless set to false; in every environment). */
  CONSOLE: bool(true),
  /** The built console (`npm run build` writes dist/console; default: that folder beside the gateway's code). */
  CONSOLE_DIR: optionalString,
  /**
   * Browser origins allowed to call the REST API and the blob routes cross-origin (CORS), comma
   * separated (`https://app.example.com,http://localhost:5173`), or `*` for any; unset: none (GraphQL
   * keeps graphql-yoga's own CORS). Browser tus clients (Uppy) on another origin need it.
   */
  CORS_ORIGINS: optionalString.pipe(
    z
      .string()
      .transform((s) =>
        s
          .split(',')
          .map((o) => o.trim())
          .filter(Boolean),
      )
      .pipe(z.array(z.string().regex(/^(\*|https?:\/\/[^/\s]+)$/, 'each origin is * or scheme://host[:port], with no path')))
      .optional(),
  ),
});

export type Env = z.input<typeof ConfigSchema>;

/** Every environment variable the gateway reads (documented one by one in .env.example). */
export const CONFIG_VARIABLES = Object.keys(ConfigSchema.shape);

export interface Config {
  env: 'development' | 'production' | 'test';
  port: number;
  host: string;
  publicUrl: string | undefined;
  dataDir: string;
  adminApiKey: string | undefined;
  databaseUrl: string | undefined;
  databasePoolSize: number;
  /** Longest a request waits for a pooled connection before it is answered 503 (overloaded). */
  databasePoolTimeoutMs: number;
  /** Embedded mode: the database's page cache (shared_buffers), in MB. */
  embeddedSharedBuffersMb: number;
  s3:
    | {
        endpoint: string;
        region: string;
        accessKeyId: string | undefined;
        secretAccessKey: string | undefined;
        forcePathStyle: boolean;
        publicEndpoint: string | undefined;
      }
    | undefined;
  bucketPrefix: string;
  redisUrl: string | undefined;
  maxUploadBytes: number;
  /** Upload temporaries (local `.tmp/` files, S3 multipart uploads) older than this are swept as abandoned. */
  uploadTempMaxAgeMs: number;
  /** Resumable and signed-URL uploads left unfinished this long expire (swept with their parts). */
  uploadSessionTtlMs: number;
  downloadSigningSecret: string | undefined;
  logLevel: string;
  graphiql: boolean;
  introspection: boolean;
  maxDepth: number;
  maxCost: number;
  shutdownTimeoutMs: number;
  sweepIntervalMs: number;
  vacuumQuietMs: number;
  volumeRetentionDays: number;
  embeddings: EmbeddersConfig;
  jobs: { concurrency: number; leaseMs: number; pollMs: number };
  /** Worker threads for CPU-bound indexing (undefined: one per core but one) and each task's time budget. */
  indexing: { threads: number | undefined; timeoutMs: number };
  efSearch: number;
  /** Exact nearest-neighbour and BM25 scans below these many chunks (search/sizing.ts). */
  exactBelow: { nearest: number; bm25: number };
  /** Entries a reindex takes per batch (search/reindex.ts). */
  reindexBatchEntries: number;
  reindexBulkMinChunks: number;
  /** Cap of the fresh tier of chunks (search/fresh.ts); 0 turns it off. */
  freshChunks: number;
  /** Hybrid legs as two concurrent statements; undefined: on in server mode, off embedded. */
  parallelSearchLegs: boolean | undefined;
  keyCacheTtlMs: number;
  /** GraphQL reads answered by one compiled statement where they can be (default on). */
  compiledReads: boolean;
  metrics: { enabled: boolean; token: string | undefined };
  /** Per-key limits per window (0: that limit is off). */
  rateLimits: { requests: number; uploadBytes: number; windowSeconds: number };
  /** OpenTelemetry trace export (off when endpoint is unset). */
  otel: { endpoint: string | undefined; serviceName: string };
  /** The web console at /console: served from `dir` (undefined: dist/console beside the code). */
  console: { enabled: boolean; dir: string | undefined };
  /** Origins allowed cross-origin on /v1 and /blobs (['*']: any; empty: CORS off there). */
  corsOrigins: string[];
  /** graphql-ws limits (WS_*). */
  ws: {
    /** Open WebSocket connections on this gateway, authenticated or not. */
    maxConnections: number;
    /** Acknowledged connections per principal (API key; the platform key is one principal). */
    maxConnectionsPerKey: number;
    /** Live `subscription` operations per principal, across all its connections. */
    maxSubscriptionsPerKey: number;
    /** Time a new socket has to send `connection_init` (graphql-ws closes it with 4408 after). */
    connectionInitTimeoutMs: number;
    /** ws ping interval; a socket that has not answered a ping by the next one is terminated. 0: off. */
    keepAliveMs: number;
    /** A connection with no live operation for this long is closed with 4408. 0: off. */
    idleTimeoutMs: number;
  };
}

/** Raised when the environment is invalid; names every bad variable. */
export class ConfigError extends Error {}

const flag = (v: string | undefined, fallback: boolean) => (v === undefined ? fallback : v === 'true' || v === '1');

/** Parses the environment (process.env by default) into a Config, or throws ConfigError naming each bad variable. */
/**
 * Reads `.env` from the working directory (or the file ENV_FILE names; `ENV_FILE=` reads none) into
 * process.env with Node's own parser. Variables already in the environment win over the file.
 * Returns the file read, if any. An ENV_FILE that does not exist is a configuration error; a
 * missing `.env` is not.
 */
export function loadEnvFile(env: Record<string, string | undefined> = process.env, cwd = process.cwd()): string | undefined {
  const named = env.ENV_FILE;
  if (named === '') return undefined;
  const file = path.resolve(cwd, named ?? '.env');
  if (!fs.existsSync(file)) {
    if (named !== undefined) throw new ConfigError(`ENV_FILE ${file} does not exist`);
    return undefined;
  }
  try {
    process.loadEnvFile(file);
  } catch (err) {
    throw new ConfigError(`Could not read ${file}: ${(err as Error).message}`);
  }
  return file;
}

export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  const parsed = ConfigSchema.safeParse(env);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${i.path.join('.')}: ${i.message}`);
    throw new ConfigError(`Invalid configuration:\n${lines.join('\n')}`);
  }
  const c = parsed.data;
  const dev = c.NODE_ENV === 'development';
  return {
    env: c.NODE_ENV,
    port: c.PORT,
    host: c.HOST,
    publicUrl: c.PUBLIC_URL?.replace(/\/$/, ''),
    dataDir: path.resolve(c.DATA_DIR),
    adminApiKey: c.ADMIN_API_KEY,
    databaseUrl: c.DATABASE_URL,
    databasePoolSize: c.DATABASE_POOL_SIZE,
    databasePoolTimeoutMs: c.DATABASE_POOL_TIMEOUT_MS,
    embeddedSharedBuffersMb: c.EMBEDDED_SHARED_BUFFERS_MB,
    s3: c.S3_ENDPOINT
      ? {
          endpoint: c.S3_ENDPOINT,
          region: c.S3_REGION,
          accessKeyId: c.S3_ACCESS_KEY_ID,
          secretAccessKey: c.S3_SECRET_ACCESS_KEY,
          forcePathStyle: c.S3_FORCE_PATH_STYLE,
          publicEndpoint: c.S3_PUBLIC_ENDPOINT,
        }
      : undefined,
    bucketPrefix: c.S3_BUCKET_PREFIX,
    redisUrl: c.REDIS_URL,
    maxUploadBytes: c.MAX_UPLOAD_BYTES,
    uploadTempMaxAgeMs: c.UPLOAD_TEMP_MAX_AGE_MS,
    uploadSessionTtlMs: c.UPLOAD_SESSION_TTL_MS,
    downloadSigningSecret: c.DOWNLOAD_SIGNING_SECRET,
    logLevel: c.LOG_LEVEL,
    graphiql: flag(c.GRAPHIQL, dev),
    introspection: flag(c.GRAPHQL_INTROSPECTION, dev),
    maxDepth: c.GRAPHQL_MAX_DEPTH,
    maxCost: c.GRAPHQL_MAX_COST,
    compiledReads: flag(c.GRAPHQL_COMPILED_READS, true),
    shutdownTimeoutMs: c.SHUTDOWN_TIMEOUT_MS,
    sweepIntervalMs: c.SWEEP_INTERVAL_MS,
    vacuumQuietMs: c.VACUUM_QUIET_MS,
    volumeRetentionDays: c.VOLUME_RETENTION_DAYS,
    embeddings: {
      url: c.EMBEDDINGS_URL,
      apiKey: c.EMBEDDINGS_API_KEY,
      model: c.EMBEDDINGS_MODEL,
      dims: c.EMBEDDINGS_DIMS,
      batchSize: c.EMBEDDINGS_BATCH_SIZE,
      timeoutMs: c.EMBEDDINGS_TIMEOUT_MS,
      onnxModelsDir: c.ONNX_MODELS_DIR ? path.resolve(c.ONNX_MODELS_DIR) : undefined,
    },
    jobs: { concurrency: c.JOB_CONCURRENCY ?? (c.DATABASE_URL ? 8 : 2), leaseMs: c.JOB_LEASE_MS, pollMs: c.JOB_POLL_MS },
    indexing: { threads: c.INDEXING_THREADS, timeoutMs: c.INDEXING_TIMEOUT_MS },
    efSearch: c.SEARCH_EF_SEARCH,
    exactBelow: { nearest: c.SEARCH_EXACT_BELOW_CHUNKS, bm25: c.SEARCH_BM25_EXACT_BELOW_CHUNKS },
    freshChunks: c.SEARCH_FRESH_CHUNKS,
    reindexBatchEntries: c.REINDEX_BATCH_ENTRIES,
    reindexBulkMinChunks: c.REINDEX_BULK_MIN_CHUNKS,
    parallelSearchLegs: c.SEARCH_PARALLEL_LEGS === undefined ? undefined : flag(c.SEARCH_PARALLEL_LEGS, true),
    keyCacheTtlMs: c.KEY_CACHE_TTL_MS,
    metrics: { enabled: c.METRICS, token: c.METRICS_TOKEN },
    rateLimits: { requests: c.RATE_LIMIT_REQUESTS, uploadBytes: c.RATE_LIMIT_UPLOAD_BYTES, windowSeconds: c.RATE_LIMIT_WINDOW_SECONDS },
    otel: { endpoint: c.OTEL_EXPORTER_OTLP_ENDPOINT, serviceName: c.OTEL_SERVICE_NAME },
    console: { enabled: c.CONSOLE, dir: c.CONSOLE_DIR ? path.resolve(c.CONSOLE_DIR) : undefined },
    corsOrigins: c.CORS_ORIGINS ?? [],
    ws: {
      maxConnections: c.WS_MAX_CONNECTIONS,
      maxConnectionsPerKey: c.WS_MAX_CONNECTIONS_PER_KEY,
      maxSubscriptionsPerKey: c.WS_MAX_SUBSCRIPTIONS_PER_KEY,
      connectionInitTimeoutMs: c.WS_CONNECTION_INIT_TIMEOUT_MS,
      keepAliveMs: c.WS_KEEPALIVE_MS,
      idleTimeoutMs: c.WS_IDLE_TIMEOUT_MS,
    },
  };
}

/**
 * How the GraphQL schema is built, fixed per process (the schema is built once, at import): an
 * unused Prisma selection is an error in tests (a resolver that drops `...query` fails loudly),
 * a warning in development, and ignored in production.
 */
export const schemaBuildOptions = {
  onUnusedQuery: process.env.NODE_ENV === 'production' ? null : process.env.NODE_ENV === 'test' ? ('error' as const) : ('warn' as const),
};
