import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { createRedisEventTarget } from '@graphql-yoga/redis-event-target';
import { createPubSub } from 'graphql-yoga';
import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Config } from './config.js';
import type { Database } from './db/database.js';
import { evictRevokedKeys } from './domain/access/authenticate.js';
import { createRateLimits } from './domain/access/rate-limits.js';
import { BACKUP, backupJob } from './domain/backups/job.js';
import { INDEX_ENTRY, indexEntryJob } from './domain/search/indexing.js';
import { REINDEX, reindexJob } from './domain/search/reindex.js';
import type { Events } from './domain/shared/events.js';
import { newRuntimeState, type Runtime } from './domain/shared/runtime.js';
import { bucketDeletionJob, DELETE_BUCKET } from './domain/workspaces/bucket-deletion.js';
import { type CpuPoolObserver, createCpuPool, defaultIndexingThreads } from './indexing/cpu-pool.js';
import { type EmbedderObserver, EmbedderRegistry } from './indexing/embedders/registry.js';
import { JobQueue } from './jobs/queue.js';
import type { BlobStore } from './storage/blob-store.js';
import { LocalBlobStore } from './storage/local.js';
import { type BlobStoreObserver, observedBlobStore } from './storage/observed.js';
import { LocalResumableStorage, type ResumableStorage, S3ResumableStorage } from './storage/resumable.js';
import { S3BlobStore } from './storage/s3.js';

// The one runtime of a gateway, built from its config and database: blob store, event bus, job
// queue (every handler registered here, explicitly), embedders, worker threads, settings.

/**
 * A secret kept in DATA_DIR (mode 0600): read it, or make it on first start. Used for the embedded
 * admin key, so a fresh clone works without setup, and for the local store's download-URL key.
 */
export async function secretInDataDir(dataDir: string, name: string, prefix: string): Promise<{ key: string; file: string }> {
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

/**
 * A Redis client whose publish/subscribe/unsubscribe never reject: the event target calls them
 * without awaiting, so while Redis is unreachable each would be an unhandled rejection (which ends
 * the process). A lost event is logged; subscribers see the next one once Redis is back, and what
 * depends on an event (key revocation) is bounded by its own TTL.
 */
function forgivingRedis(client: Redis, log: Logger): Redis {
  const guarded = new Set(['publish', 'subscribe', 'unsubscribe']);
  return new Proxy(client, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver);
      if (typeof prop !== 'string' || !guarded.has(prop) || typeof value !== 'function') return value;
      return (...args: unknown[]) =>
        (value as (...a: unknown[]) => Promise<unknown>).apply(target, args).catch((err: unknown) => {
          log.warn({ err, channel: args[0] }, `events: Redis ${prop} failed (event fan-out to other replicas is interrupted)`);
        });
    },
  });
}

/** Events in memory, or fanned out through Redis when REDIS_URL is set (replicas see each other's). */
function createEvents(redisUrl: string | undefined, log: Logger): { events: Runtime['events']; close(): Promise<void> } {
  if (!redisUrl) return { events: createPubSub<Events>(), close: async () => {} };
  // Separate connections: a subscribed Redis connection can do nothing but listen.
  const publishClient = new Redis(redisUrl, { lazyConnect: false, maxRetriesPerRequest: 3 });
  const subscribeClient = new Redis(redisUrl, { lazyConnect: false, maxRetriesPerRequest: 3 });
  // ioredis reconnects by itself; without listeners each failed attempt would print a stack trace.
  for (const c of [publishClient, subscribeClient]) c.on('error', (err) => log.warn({ err }, 'events: Redis connection error'));
  return {
    events: createPubSub<Events>({
      eventTarget: createRedisEventTarget({
        publishClient: forgivingRedis(publishClient, log),
        subscribeClient: forgivingRedis(subscribeClient, log),
      }),
    }),
    close: async () => {
      await Promise.allSettled([publishClient.quit(), subscribeClient.quit()]);
    },
  };
}

export interface BuiltRuntime {
  rt: Runtime;
  /** The local blob store, when there is one (the gateway serves its signed download URLs). */
  localStore: LocalBlobStore | undefined;
  /** The blob store itself (rt.blobs is it, seen by the observers). */
  rawBlobs: BlobStore;
  /** Releases what the runtime holds (worker threads, Redis connections); the database is the caller's. */
  close(): Promise<void>;
}

/**
 * Builds the runtime. `publicBaseUrl` gives the base of links handed out (download URLs), read
 * when a link is made (the bound port is known only once the server listens).
 */
/** What watches the runtime's outside calls (metrics and traces; see app.ts). */
export interface RuntimeObservers {
  blobs?: BlobStoreObserver;
  embedders?: EmbedderObserver;
  cpu?: CpuPoolObserver;
}

export async function buildRuntime(
  config: Config,
  database: Database,
  log: Logger,
  publicBaseUrl: () => string,
  observers: RuntimeObservers = {},
): Promise<BuiltRuntime> {
  let localStore: LocalBlobStore | undefined;
  let blobs: BlobStore;
  let resumable: ResumableStorage;
  if (config.s3) {
    const s3 = new S3BlobStore(config.s3, log);
    blobs = s3;
    resumable = new S3ResumableStorage(s3, config.s3, config.uploadSessionTtlMs);
  } else {
    const signingSecret = config.downloadSigningSecret ?? (await secretInDataDir(config.dataDir, 'download-signing-key', 'vgd_')).key;
    const root = path.join(config.dataDir, 'blobs');
    localStore = new LocalBlobStore({ root, baseUrl: publicBaseUrl, signingSecret });
    blobs = localStore;
    resumable = new LocalResumableStorage(localStore, root, config.uploadSessionTtlMs);
  }
  const bus = createEvents(config.redisUrl, log);
  // Its own connection: the limiter refuses at once (insurance limiter) rather than queue when Redis is down.
  const limitsRedis = config.redisUrl ? new Redis(config.redisUrl, { enableOfflineQueue: false, maxRetriesPerRequest: 1 }) : undefined;
  limitsRedis?.on('error', (err) => log.debug({ err }, 'rate-limit Redis connection error'));
  const cpu = createCpuPool({
    threads: config.indexing.threads ?? defaultIndexingThreads(),
    taskTimeoutMs: config.indexing.timeoutMs,
    observer: observers.cpu,
  });
  const rt: Runtime = {
    db: database.prisma,
    sql: database.query,
    sqlInOne: database.queryInOne,
    blobs: observers.blobs ? observedBlobStore(blobs, observers.blobs) : blobs,
    resumable,
    events: bus.events,
    jobs: new JobQueue(database.prisma, log, config.jobs),
    embedders: new EmbedderRegistry(config.embeddings, cpu, observers.embedders),
    cpu,
    log,
    settings: {
      maxUploadBytes: config.maxUploadBytes,
      uploadTempMaxAgeMs: config.uploadTempMaxAgeMs,
      uploadSessionTtlMs: config.uploadSessionTtlMs,
      bucketPrefix: config.bucketPrefix,
      defaultRegion: config.s3?.region ?? 'us-east-1',
      volumeRetentionDays: config.volumeRetentionDays,
      efSearch: config.efSearch,
      exactBelow: config.exactBelow,
      freshChunks: config.freshChunks,
      reindexBatchEntries: config.reindexBatchEntries,
      reindexBulkMinChunks: config.reindexBulkMinChunks,
      // One PGlite runs one statement at a time: two legs at once would only queue.
      parallelSearchLegs: database.mode === 'server' && config.parallelSearchLegs !== false,
      keyCacheTtlMs: config.keyCacheTtlMs,
      compiledReads: config.compiledReads,
      vacuum: { byGateway: database.mode === 'embedded', quietMs: config.vacuumQuietMs },
      soleWriter: database.mode === 'embedded',
    },
    limits: createRateLimits(config.rateLimits, limitsRedis),
    state: newRuntimeState(),
    hooks: {},
  };
  rt.jobs.register(INDEX_ENTRY, indexEntryJob(rt));
  rt.jobs.register(REINDEX, reindexJob(rt));
  rt.jobs.register(BACKUP, backupJob(rt));
  rt.jobs.register(DELETE_BUCKET, bucketDeletionJob(rt));
  const stopEvicting = new AbortController();
  const evicting = evictRevokedKeys(rt, stopEvicting.signal).catch((err) => log.error({ err }, 'key eviction stopped'));
  return {
    rt,
    localStore,
    rawBlobs: blobs,
    close: async () => {
      stopEvicting.abort();
      await evicting;
      await cpu.close();
      await bus.close();
      await limitsRedis?.quit().catch(() => {});
    },
  };
}
