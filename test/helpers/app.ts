import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { inject } from 'vitest';
import { type App, type AppOptions, createApp } from '../../src/app.js';
import { loadConfig } from '../../src/config.js';
import { PGLITE_EXTENSIONS } from '../../src/db/pglite-extensions.js';
import { ADMIN_KEY, call, type HttpResponse } from './http.js';

// Most tests take the admin key along with startGateway.
export { ADMIN_KEY };

/** A fresh, migrated PGlite cloned from the global template. */
export async function clonePglite(): Promise<PGlite> {
  const tar = await fs.readFile(inject('templatePath'));
  return PGlite.create({ loadDataDir: new Blob([new Uint8Array(tar)]), extensions: PGLITE_EXTENSIONS });
}

export interface TestGateway {
  url: string;
  app: App;
  dataDir: string;
  pg: PGlite | undefined;
  /**
   * Every SQL statement Prisma sent for an HTTP request since the last `queries.length = 0`
   * (background work such as job polls is left out, so counts do not depend on timing).
   */
  queries: string[];
  /** `call` (helpers/http.ts) against this gateway with the admin key, or `key` (null: none). */
  call(method: string, route: string, body?: unknown, key?: string | null): Promise<HttpResponse>;
  gql(query: string, variables?: Record<string, unknown>, key?: string | null): Promise<{ status: number; body: any }>;
  stop(): Promise<void>;
}

/**
 * Boots the real gateway on an ephemeral port over real HTTP, on its own PGlite (or the given
 * DATABASE_URL) and a local blob store in a temp dir.
 */
export async function startGateway(
  env: Record<string, string> = {},
  opts: {
    logs?: string[];
    spanExporter?: AppOptions['spanExporter'];
    /** Seams in place before the gateway starts (the runtime's hooks). */
    hooks?: AppOptions['hooks'];
    /** Runs on the embedded database (the migrated clone) before the gateway opens it. */
    prepare?: (pg: PGlite) => Promise<unknown>;
  } = {},
): Promise<TestGateway> {
  const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'vg-test-'));
  const config = loadConfig({
    NODE_ENV: 'test',
    LOG_LEVEL: 'silent',
    DATA_DIR: dataDir,
    ADMIN_API_KEY: ADMIN_KEY,
    GRAPHQL_INTROSPECTION: 'true',
    HOST: '127.0.0.1',
    // Keys stay cached for the longest TTL allowed (revoking still evicts at once): a test that counts
    // a request's statements must not see its key looked up again because a loaded machine took more
    // than the default 10 s between two of its requests. Tests of the TTL itself give their own.
    KEY_CACHE_TTL_MS: '300000',
    ...env,
  });
  const queries: string[] = [];
  const pg = config.databaseUrl ? undefined : await clonePglite();
  if (pg && opts.prepare) await opts.prepare(pg);
  // `logs` collects every JSON log line (give LOG_LEVEL too: tests are silent by default).
  const logDestination = opts.logs ? { write: (line: string) => void opts.logs?.push(line) } : undefined;
  const app = await createApp(config, {
    ...(pg ? { pglite: pg } : {}),
    ...(logDestination ? { logDestination } : {}),
    ...(opts.spanExporter ? { spanExporter: opts.spanExporter } : {}),
    ...(opts.hooks ? { hooks: opts.hooks } : {}),
    onQuery: (sql, request) => request && queries.push(sql),
  });
  const url = await app.start(0);

  const gwCall: TestGateway['call'] = (method, route, body, key) => call(url, method, route, body, { key });

  const gql: TestGateway['gql'] = async (query, variables, key) => {
    const { status, body } = await call(url, 'POST', '/graphql', { query, variables }, { key });
    return { status, body };
  };

  return {
    url,
    app,
    dataDir,
    pg,
    queries,
    call: gwCall,
    gql,
    stop: async () => {
      await app.stop();
      await pg?.close();
      await fs.rm(dataDir, { recursive: true, force: true });
    },
  };
}

/** Polls `check` until it returns a truthy value (no fixed sleeps), failing after `timeoutMs`. */
export async function waitFor<T>(check: () => Promise<T | undefined | null | false>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 25));
  }
}

/**
 * Waits until the gateway's job runner is idle: no job due, running or being cancelled in the
 * database, and none of this runner's workers busy. Tests wait for this before they reset shared
 * state (an embeddings server's counters, say) rather than resetting it under a request in flight.
 */
export async function jobsIdle(gw: TestGateway, timeoutMs = 30_000): Promise<void> {
  await waitFor(async () => {
    if (gw.app.jobs.busy > 0) return false;
    const open = await gw.app.database.prisma.job.count({
      where: { OR: [{ status: { in: ['running', 'cancelling'] } }, { status: 'queued', runAt: { lte: new Date() } }] },
    });
    return open === 0 && gw.app.jobs.busy === 0;
  }, timeoutMs);
}

/** Creates an org key through the API and returns its secret. */
export async function createKey(gw: TestGateway, org: string, scopes: string[], appId?: string): Promise<string> {
  const res = await gw.call('POST', `/v1/orgs/${org}/api-keys`, {
    name: `k-${scopes.join('-')}`,
    scopes,
    ...(appId ? { app_id: appId } : {}),
  });
  if (res.status !== 201) throw new Error(`key creation failed: ${JSON.stringify(res.body)}`);
  return res.body.api_key;
}
