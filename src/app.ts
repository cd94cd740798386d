import { timingSafeEqual } from 'node:crypto';
import fs from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { PGlite } from '@electric-sql/pglite';
import { getRequestListener } from '@hono/node-server';
import { Hono } from 'hono';
import type { DestinationStream } from 'pino';
import type { Config } from './config.js';
import { type Database, databaseOptions, openDatabase } from './db/database.js';
import { pendingMigrations } from './db/migrate.js';
import { startMaintenance } from './domain/maintenance/maintenance.js';
import { hnswIndexesToRestore, restoreHnswIndexes } from './domain/search/bulk-index.js';
import { startFreshMerger } from './domain/search/fresh-merger.js';
import { INDEX_ENTRY } from './domain/search/indexing.js';
import { REINDEX } from './domain/search/reindex.js';
import { bm25ScanScores, keywordRanking } from './domain/search/sql.js';
import type { Runtime, TestHooks } from './domain/shared/runtime.js';
import { pendingProvisioning, resumePendingProvisioning } from './domain/workspaces/workspaces.js';
import { createWsServer } from './graphql/ws-server.js';
import { createGraphQLServer } from './graphql/yoga.js';
import { createConsoleRoutes } from './http/console.js';
import { corsFor } from './http/cors.js';
import { currentRequest, noteRequest, type RequestRecord, withRequestLog } from './http/request-log.js';
import type { JobQueue } from './jobs/queue.js';
import { createLogger } from './logger.js';
import { createRestApp } from './rest/app.js';
import { createDialects } from './rest/dialects/index.js';
import { createDownloadRoutes } from './rest/download-route.js';
import { notFound } from './rest/errors.js';
import { buildRuntime, secretInDataDir } from './runtime.js';
import type { BlobStore } from './storage/blob-store.js';
import { GatewayMetrics } from './telemetry/metrics.js';
import { inSpan, startTracing, type TracingOptions } from './telemetry/tracing.js';

export interface AppOptions {
  /** Tests hand in a PGlite cloned from a migrated template. */
  pglite?: PGlite;
  /**
   * Tests count SQL statements. `request` is set for statements run on behalf of an HTTP request
   * (background work, such as job polls and sweeps, has none), so counts do not depend on timing.
   */
  onQuery?: (sql: string, request: RequestRecord | undefined) => void;
  /** Where log lines go (default stdout); tests read them. */
  logDestination?: DestinationStream;
  /**
   * The database, already being opened (main.ts starts it before importing this module, so the
   * database thread starts up while the module graph loads). Default: opened here.
   */
  database?: Promise<Database>;
  /** Tests: trace spans go to this exporter (tracing is otherwise on only with OTEL_EXPORTER_OTLP_ENDPOINT). */
  spanExporter?: TracingOptions['exporter'];
  /** Tests: seams in place from the start (the runtime's `hooks`, for those that run while the gateway starts). */
  hooks?: TestHooks;
}

/** True for a client on this host (the default guard of /metrics when METRICS_TOKEN is unset). */
function isLoopback(address: string | undefined): boolean {
  if (!address) return false;
  const v4 = address.startsWith('::ffff:') ? address.slice(7) : address;
  return v4.startsWith('127.') || address === '::1';
}

/** Constant-time comparison of a presented bearer token with the configured one. */
function tokenMatches(header: string | undefined, token: string): boolean {
  const given = Buffer.from(/^Bearer\s+(.+)$/i.exec(header ?? '')?.[1] ?? '');
  const want = Buffer.from(token);
  return given.length === want.length && timingSafeEqual(given, want);
}

export interface App {
  server: http.Server;
  /** The one runtime every request and job of this gateway runs on. */
  runtime: Runtime;
  database: Database;
  blobStore: BlobStore;
  /** This gateway's durable job queue and its workers (indexing, reindex, backups, bucket deletion). */
  jobs: JobQueue;
  /** Prometheus metrics (served at /metrics unless METRICS=false). */
  metrics: GatewayMetrics;
  /** The platform key in force, and whether it was generated into DATA_DIR on this start. */
  adminApiKey: string | undefined;
  adminKeyFile: string | undefined;
  /** Listens on `port` (default config.port; 0 picks a free one) and resolves to the base URL. */
  start(port?: number): Promise<string>;
  /** Graceful stop: refuse new work, finish in-flight requests, close WebSockets, then the database. */
  stop(): Promise<void>;
}

/** Wires database, blob store, events, REST, GraphQL (HTTP, SSE, WebSocket) and health checks on one server. */
export async function createApp(config: Config, opts: AppOptions = {}): Promise<App> {
  const log = createLogger(config.logLevel, opts.logDestination);
  // Before the database opens: Prisma's instrumentation must be in place before its client is made.
  const tracing =
    config.otel.endpoint || opts.spanExporter
      ? await startTracing({ serviceName: config.otel.serviceName, endpoint: config.otel.endpoint, exporter: opts.spanExporter })
      : undefined;
  if (tracing) log.info({ endpoint: config.otel.endpoint ?? 'in-process exporter' }, 'tracing: OpenTelemetry spans exported');
  const onQuery = opts.onQuery;
  await fs.mkdir(config.dataDir, { recursive: true });
  const database = await (opts.database ??
    openDatabase({
      ...databaseOptions(config),
      ...(opts.pglite ? { pglite: opts.pglite } : {}),
      ...(onQuery ? { onQuery: (sql: string) => onQuery(sql, currentRequest()) } : {}),
      log: (msg) => log.info(msg),
    }));

  let adminApiKey = config.adminApiKey;
  let adminKeyFile: string | undefined;
  if (!adminApiKey && database.mode === 'embedded' && !opts.pglite) {
    ({ key: adminApiKey, file: adminKeyFile } = await secretInDataDir(config.dataDir, 'admin-api-key', 'vga_'));
  }

  // Links handed out (download URLs) use PUBLIC_URL, else the address actually bound.
  let boundUrl = `http://${config.host}:${config.port}`;
  // Sources read at scrape time; `wss` is created below, with the server.
  let openSockets = () => 0;
  let jobs: JobQueue | undefined;
  const metrics = new GatewayMetrics({
    jobs: async () => (jobs ? jobs.depth() : []),
    indexingLagSeconds: async () => (jobs ? jobs.oldestAge(INDEX_ENTRY) : 0),
    pool: () => database.poolState(),
    websockets: () => openSockets(),
  });
  const built = await buildRuntime(config, database, log, () => config.publicUrl ?? boundUrl, {
    blobs: {
      around: (operation, run) =>
        inSpan(`blob ${operation}`, { 'blob.operation': operation, 'blob.store': config.s3 ? 's3' : 'local' }, run),
      onError: (operation) => metrics.blobErrors.inc({ operation }),
    },
    embedders: {
      around: (model, texts, run) => inSpan(`embed ${model}`, { 'embedding.model': model, 'embedding.texts': texts }, run),
      onError: (model) => metrics.embedderErrors.inc({ model }),
    },
    cpu: { onTask: (kind, place, outcome) => metrics.cpuTasks.inc({ kind, place, outcome }) },
  });
  jobs = built.rt.jobs;
  const { rt, localStore } = built;
  Object.assign(rt.hooks, opts.hooks);
  const ranking = await keywordRanking(rt);
  if (ranking === 'bm25')
    log.info(
      (await bm25ScanScores(rt))
        ? 'keyword search: BM25 (pg_textsearch index chunks_bm25_idx, scores as its scan computes them)'
        : 'keyword search: BM25 (pg_textsearch index chunks_bm25_idx; this version has no bm25_get_current_score(), so each hit is scored again)',
    );
  else if (ranking === 'bm25_sparsevec')
    log.info('keyword search: BM25 as pgvector sparse vectors (no pg_textsearch; HNSW index chunks_bm25_sparse_idx)');
  else
    log.warn(
      'keyword search: ts_rank_cd, every match ranked (this database has neither pg_textsearch nor pgvector >= 0.7; see README "Search")',
    );

  const yoga = createGraphQLServer(rt, {
    adminApiKey,
    graphiql: config.graphiql,
    introspection: config.introspection,
    maxDepth: config.maxDepth,
    maxCost: config.maxCost,
    production: config.env === 'production',
    metrics,
  });

  let stopping = false;
  /** Set while start-up builds HNSW indexes a crash left missing (below). */
  let restoring: Promise<void> | undefined;
  const root = new Hono();
  root.get('/healthz', (c) => c.json({ status: 'ok' }));
  root.get('/readyz', async (c) => {
    if (stopping) return c.json({ status: 'stopping' }, 503);
    // The build holds the embedded database: ready once it is done (asking the database would wait for it).
    if (restoring) return c.json({ status: 'building_indexes' }, 503);
    try {
      await database.prisma.$queryRawUnsafe('SELECT 1');
      const pending = await pendingMigrations((sql) => database.prisma.$queryRawUnsafe(sql));
      if (pending.length > 0) return c.json({ status: 'migrations_pending', pending }, 503);
      return c.json({ status: 'ready', database: database.mode, blob_store: rt.blobs.kind });
    } catch (err) {
      rt.log.warn({ err }, 'readiness check failed');
      return c.json({ status: 'database_unreachable' }, 503);
    }
  });
  if (config.metrics.enabled) {
    const token = config.metrics.token;
    root.get('/metrics', async (c) => {
      noteRequest({ route: '/metrics' });
      const incoming = (c.env as { incoming?: http.IncomingMessage } | undefined)?.incoming;
      const allowed = token ? tokenMatches(c.req.header('authorization'), token) : isLoopback(incoming?.socket.remoteAddress);
      if (!allowed)
        return c.text(
          token ? 'metrics need the METRICS_TOKEN bearer token\n' : 'metrics are served to this host only (set METRICS_TOKEN)\n',
          403,
        );
      return c.body(await metrics.registry.metrics(), 200, { 'content-type': metrics.registry.contentType });
    });
  }
  if (config.console.enabled) root.route('/', createConsoleRoutes({ dir: config.console.dir }));
  // The peer dialects (src/rest/dialects/) beside /v1, over the same domain; /v1's document lists them too.
  const dialects = createDialects(rt, { adminApiKey, maxJsonBytes: 1024 * 1024 });
  // Browsers on CORS_ORIGINS may call the REST API, the peer dialects and the blob routes (preflights
  // answered before auth; registered before the routes, which would otherwise answer first).
  const cors = corsFor(config.corsOrigins);
  if (cors) {
    const dialectPaths = dialects.filter((d) => !d.prefix.startsWith('/v1/')).flatMap((d) => [d.prefix, `${d.prefix}/*`]);
    for (const path of ['/v1/*', '/blobs/*', ...dialectPaths]) root.use(path, cors);
  }
  if (localStore) root.route('/', createDownloadRoutes(localStore));
  for (const dialect of dialects) root.route('/', dialect.app);
  root.route('/', createRestApp(rt, { adminApiKey, maxJsonBytes: 1024 * 1024, maxEntryBytes: 20 * 1024 * 1024, dialects }));
  root.notFound(notFound);
  const restListener = getRequestListener(root.fetch);

  // Health probes and metric scrapes come every few seconds whatever the load: they do not keep the
  // gateway from counting as quiet (maintenance/vacuum.ts).
  const isProbe = (url = '') => url === '/healthz' || url === '/readyz' || url === '/metrics' || url.startsWith('/metrics?');
  // One access line per request, X-Request-Id in and out (src/http/request-log.ts).
  const server = http.createServer(
    withRequestLog(
      log,
      (req, res) => {
        if (!isProbe(req.url)) rt.state.requests.inFlight++;
        if (stopping) res.setHeader('connection', 'close');
        const url = req.url ?? '/';
        if (url === '/graphql' || url.startsWith('/graphql?') || url.startsWith('/graphql/')) {
          noteRequest({ route: '/graphql' });
          void yoga(req, res);
        } else {
          void restListener(req, res);
        }
      },
      (record, status, seconds) => {
        if (!isProbe(record.url)) {
          rt.state.requests.inFlight--;
          rt.state.requests.lastEndedAt = Date.now();
        }
        metrics.httpDuration.observe({ method: record.method, route: record.route ?? 'unmatched', status: String(status) }, seconds);
        if (record.rateLimited)
          metrics.rateLimited.inc({ limit: record.rateLimited, transport: record.route === '/graphql' ? 'graphql' : 'rest' });
      },
    ),
  );

  // Idle keep-alive sockets stay open longer than clients' own idle timeouts (undici 4 s, load
  // balancers 60 s), so a client never sends a request on a socket the server is just closing.
  server.keepAliveTimeout = 65_000;
  // A request (an upload) may take as long as its temporary file is kept: the crash sweep removes
  // only temps older than this, so it can never remove one still being written. (Node's default,
  // 300 s, would cut a 5 GB upload off.) Slow headers are still cut off by headersTimeout.
  server.requestTimeout = config.uploadTempMaxAgeMs;
  server.headersTimeout = 66_000;

  // graphql-ws on the same path: credentials required, caps, keep-alive, idle timeout (src/graphql/ws-server.ts).
  const { wss, wsServer } = createWsServer({
    runtime: rt,
    server,
    path: '/graphql',
    yoga,
    adminApiKey,
    limits: config.ws,
    production: config.env === 'production',
    metrics,
  });
  openSockets = () => wss.clients.size;

  await resumePendingProvisioning(rt);
  // An HNSW index a bulk reindex dropped and will not build (it stopped in a crash) is built in the
  // background: at 100,000 rows that takes a minute or two, through which the gateway listens
  // (/healthz answers, so a liveness probe does not kill it mid-build and start the build again;
  // /readyz says `building_indexes`; requests wait for the database as during any bulk build). Jobs,
  // maintenance and the fresh-tier merger start once it is built, so no reindex drops or builds an
  // index beside it. A failed build leaves searches of those dimensions on exact scans, not the
  // gateway down.
  let maintenance: ReturnType<typeof startMaintenance> | undefined;
  let freshMerger: ReturnType<typeof startFreshMerger> | undefined;
  const startBackgroundWork = () => {
    maintenance = startMaintenance(rt, config.sweepIntervalMs);
    // Fresh chunks (written outside the HNSW indexes) go into them when indexing is quiet.
    freshMerger = startFreshMerger(rt);
    rt.jobs.start();
  };
  const failed = (err: unknown) =>
    rt.log.error({ err }, 'building a missing HNSW index failed; searches of its dimensions scan exactly until a restart builds it');
  const missing = await hnswIndexesToRestore(rt, REINDEX).catch((err: unknown) => {
    failed(err);
    return [];
  });
  if (missing.length === 0) startBackgroundWork();
  else {
    restoring = (async () => {
      await rt.hooks.beforeIndexRestore?.();
      await restoreHnswIndexes(rt, REINDEX, missing);
    })()
      .catch(failed)
      .finally(() => {
        restoring = undefined;
        if (!stopping) startBackgroundWork();
      });
  }

  const app: App = {
    server,
    runtime: rt,
    database,
    blobStore: built.rawBlobs,
    jobs: rt.jobs,
    metrics,
    adminApiKey,
    adminKeyFile,
    start: (port = config.port) =>
      new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, config.host, () => {
          server.off('error', reject);
          const { port: bound } = server.address() as AddressInfo;
          const host = config.host.includes(':') ? `[${config.host}]` : config.host;
          boundUrl = `http://${host}:${bound}`;
          resolve(boundUrl);
        });
      }),
    stop: async () => {
      if (stopping) return;
      stopping = true;
      // A start-up index build holds the database: it ends before the database closes (nothing was started after it).
      await restoring;
      await maintenance?.stop();
      await freshMerger?.stop();
      // Running jobs save their progress and go back to the queue for this or another replica
      // (their tasks in worker threads are aborted, so nothing CPU-bound holds the stop up).
      await rt.jobs.stop();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      await wsServer.dispose();
      wss.close();
      // In-flight requests get the shutdown budget less a second, left for closing the database.
      const grace = Math.max(0, config.shutdownTimeoutMs - 1000);
      const timeout = new Promise<void>((resolve) => setTimeout(resolve, grace).unref());
      await Promise.race([closed, timeout]);
      server.closeAllConnections();
      await pendingProvisioning(rt);
      await built.close();
      await database.close();
      // The spans of the last requests and jobs reach the collector before the process ends.
      await tracing?.shutdown().catch((err) => log.warn({ err }, 'tracing: could not flush spans'));
    },
  };
  return app;
}
