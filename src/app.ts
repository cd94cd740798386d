import { AsyncLocalStorage } from 'node:async_hooks';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import type { PGlite } from '@electric-sql/pglite';
import { createRedisEventTarget } from '@graphql-yoga/redis-event-target';
import { getRequestListener } from '@hono/node-server';
import { createPubSub } from 'graphql-yoga';
import { Hono } from 'hono';
import { Redis } from 'ioredis';
import type { Config } from './config.js';
import { setDb } from './db/client.js';
import { type Database, openDatabase } from './db/database.js';
import { pendingMigrations } from './db/migrate.js';
import { forgetKnownOrgs } from './domain/access/access.js';
import { configureUploads } from './domain/entries/uploads.js';
import { configureMaintenance, startMaintenance } from './domain/maintenance/maintenance.js';
import { configureIndexing } from './domain/search/indexing.js';
import { configureSearch } from './domain/search/sql.js';
import { type Events, setEvents } from './domain/shared/events.js';
import { configureVolumeRetention } from './domain/volumes/lifecycle.js';
import { configureWorkspaces, pendingProvisioning, resumePendingProvisioning } from './domain/workspaces/workspaces.js';
import { createWsServer } from './graphql/ws-server.js';
import { createGraphQLServer } from './graphql/yoga.js';
import { createCpuPool, defaultIndexingThreads } from './indexing/cpu-pool.js';
import { configureEmbedders } from './indexing/embedders/registry.js';
import { type JobRunner, startJobRunner } from './jobs/queue.js';
import { logger } from './logger.js';
import { createRestApp } from './rest/app.js';
import { createDownloadRoutes } from './rest/download-route.js';
import { notFound } from './rest/errors.js';
import { type BlobStore, setBlobStore } from './storage/blob-store.js';
import { LocalBlobStore } from './storage/local.js';
import { S3BlobStore } from './storage/s3.js';

export interface AppOptions {
  /** Tests hand in a PGlite cloned from a migrated template. */
  pglite?: PGlite;
  /**
   * Tests count SQL statements. `request` is set for statements run on behalf of an HTTP request
   * (background work, such as job polls and sweeps, has none), so counts do not depend on timing.
   */
  onQuery?: (sql: string, request: RequestScope | undefined) => void;
}

/** What is known about the HTTP request a piece of work runs for (AsyncLocalStorage). */
export interface RequestScope {
  method: string;
  url: string;
}

export interface App {
  server: http.Server;
  database: Database;
  blobStore: BlobStore;
  /** This process's background job workers (indexing, reindex). */
  jobs: JobRunner;
  /** The platform key in force, and whether it was generated into DATA_DIR on this start. */
  adminApiKey: string | undefined;
  adminKeyFile: string | undefined;
  /** Listens on `port` (default config.port; 0 picks a free one) and resolves to the base URL. */
  start(port?: number): Promise<string>;
  /** Graceful stop: refuse new work, finish in-flight requests, close WebSockets, then the database. */
  stop(): Promise<void>;
}

/**
 * A secret kept in DATA_DIR (mode 0600): read it, or make it on first start. Used for the embedded
 * admin key, so a fresh clone works without setup, and for the local store's download-URL key.
 */
async function secretInDataDir(dataDir: string, name: string, prefix: string): Promise<{ key: string; file: string }> {
  const file = path.join(dataDir, name);
  try {
    const key = (await fs.readFile(file, 'utf8')).trim();
    if (key.length >= 32) return { key, file };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const key = `${prefix}${randomBytes(32).toString('base64url')}`;
  await fs.writeFile(file, `${key}\n`, { mode: 0o600, flag: 'w' });
  await fs.chmod(file, 0o600);
  return { key, file };
}

function createEvents(redisUrl: string | undefined): { close(): Promise<void> } {
  if (!redisUrl) {
    setEvents(createPubSub<Events>());
    return { close: async () => {} };
  }
  // Separate connections: a subscribed Redis connection can do nothing but listen.
  const publishClient = new Redis(redisUrl, { lazyConnect: false, maxRetriesPerRequest: 3 });
  const subscribeClient = new Redis(redisUrl, { lazyConnect: false, maxRetriesPerRequest: 3 });
  setEvents(createPubSub<Events>({ eventTarget: createRedisEventTarget({ publishClient, subscribeClient }) }));
  return {
    close: async () => {
      await Promise.allSettled([publishClient.quit(), subscribeClient.quit()]);
    },
  };
}

/** Wires database, blob store, events, REST, GraphQL (HTTP, SSE, WebSocket) and health checks on one server. */
export async function createApp(config: Config, opts: AppOptions = {}): Promise<App> {
  logger.level = config.logLevel;
  const requestScope = new AsyncLocalStorage<RequestScope>();
  const onQuery = opts.onQuery;
  await fs.mkdir(config.dataDir, { recursive: true });
  const database = await openDatabase({
    databaseUrl: config.databaseUrl,
    dataDir: config.dataDir,
    poolSize: config.databasePoolSize,
    ...(opts.pglite ? { pglite: opts.pglite } : {}),
    ...(onQuery ? { onQuery: (sql: string) => onQuery(sql, requestScope.getStore()) } : {}),
    log: (msg) => logger.info(msg),
  });
  setDb(database.prisma);
  forgetKnownOrgs();

  let adminApiKey = config.adminApiKey;
  let adminKeyFile: string | undefined;
  if (!adminApiKey && database.mode === 'embedded' && !opts.pglite) {
    ({ key: adminApiKey, file: adminKeyFile } = await secretInDataDir(config.dataDir, 'admin-api-key', 'vga_'));
  }

  // Links handed out (download URLs) use PUBLIC_URL, else the address actually bound.
  let boundUrl = `http://${config.host}:${config.port}`;
  const baseUrl = () => config.publicUrl ?? boundUrl;
  let localStore: LocalBlobStore | undefined;
  let blobStore: BlobStore;
  if (config.s3) {
    blobStore = new S3BlobStore(config.s3);
  } else {
    const signingSecret = config.downloadSigningSecret ?? (await secretInDataDir(config.dataDir, 'download-signing-key', 'vgd_')).key;
    localStore = new LocalBlobStore({ root: path.join(config.dataDir, 'blobs'), baseUrl, signingSecret });
    blobStore = localStore;
  }
  setBlobStore(blobStore);
  configureUploads({ maxUploadBytes: config.maxUploadBytes });
  configureVolumeRetention({ retentionDays: config.volumeRetentionDays });
  configureWorkspaces({ bucketPrefix: config.bucketPrefix, defaultRegion: config.s3?.region ?? 'us-east-1' });
  const eventBus = createEvents(config.redisUrl);

  const yoga = createGraphQLServer({
    adminApiKey,
    graphiql: config.graphiql,
    introspection: config.introspection,
    maxDepth: config.maxDepth,
    maxCost: config.maxCost,
    production: config.env === 'production',
  });

  let stopping = false;
  const root = new Hono();
  root.get('/healthz', (c) => c.json({ status: 'ok' }));
  root.get('/readyz', async (c) => {
    if (stopping) return c.json({ status: 'stopping' }, 503);
    try {
      await database.prisma.$queryRawUnsafe('SELECT 1');
      const pending = await pendingMigrations((sql) => database.prisma.$queryRawUnsafe(sql));
      if (pending.length > 0) return c.json({ status: 'migrations_pending', pending }, 503);
      return c.json({ status: 'ready', database: database.mode, blob_store: blobStore.kind });
    } catch (err) {
      logger.warn({ err }, 'readiness check failed');
      return c.json({ status: 'database_unreachable' }, 503);
    }
  });
  if (localStore) root.route('/', createDownloadRoutes(localStore));
  root.route('/', createRestApp({ adminApiKey, maxJsonBytes: 1024 * 1024, maxEntryBytes: 20 * 1024 * 1024 }));
  root.notFound(notFound);
  const restListener = getRequestListener(root.fetch);

  const server = http.createServer((req, res) => {
    if (stopping) res.setHeader('connection', 'close');
    const url = req.url ?? '/';
    requestScope.run({ method: req.method ?? 'GET', url }, () => {
      if (url === '/graphql' || url.startsWith('/graphql?') || url.startsWith('/graphql/')) {
        void yoga(req, res);
      } else {
        void restListener(req, res);
      }
    });
  });

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
    server,
    path: '/graphql',
    yoga,
    adminApiKey,
    limits: config.ws,
    production: config.env === 'production',
  });

  await resumePendingProvisioning();
  configureMaintenance({ uploadTempMaxAgeMs: config.uploadTempMaxAgeMs });
  const maintenance = startMaintenance(config.sweepIntervalMs);
  const cpu = createCpuPool({ threads: config.indexing.threads ?? defaultIndexingThreads(), taskTimeoutMs: config.indexing.timeoutMs });
  configureEmbedders(config.embeddings, cpu);
  configureIndexing(cpu);
  configureSearch({ efSearch: config.efSearch });
  const jobs = startJobRunner(config.jobs);

  const app: App = {
    server,
    database,
    blobStore,
    jobs,
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
      await maintenance.stop();
      // Running jobs save their progress and go back to the queue for this or another replica
      // (their tasks in worker threads are aborted, so nothing CPU-bound holds the stop up).
      await jobs.stop();
      await cpu.close();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      await wsServer.dispose();
      wss.close();
      // In-flight requests get the shutdown budget less a second, left for closing the database.
      const grace = Math.max(0, config.shutdownTimeoutMs - 1000);
      const timeout = new Promise<void>((resolve) => setTimeout(resolve, grace).unref());
      await Promise.race([closed, timeout]);
      server.closeAllConnections();
      await pendingProvisioning();
      await eventBus.close();
      await database.close();
    },
  };
  return app;
}
