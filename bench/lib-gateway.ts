import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { type App, createApp } from '../src/app.js';
import { loadConfig } from '../src/config.js';

// Talking to a running gateway over its public HTTP API only (REST under /v1, GraphQL at /graphql),
// the seed data the benchmarks share, SQL statement counting with pg_stat_statements, and an
// embedded gateway in this process for the benchmarks that measure one.

export class Api {
  constructor(
    readonly url: string,
    readonly key: string,
  ) {}

  async call(method: string, route: string, body?: unknown, key = this.key): Promise<any> {
    for (let attempt = 0; ; attempt++) {
      const res = await fetch(this.url + route, {
        method,
        headers: { authorization: `Bearer ${key}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const text = await res.text();
      if (res.status === 503 && attempt < 5) continue;
      if (res.status >= 300) throw new Error(`${method} ${route}: ${res.status} ${text.slice(0, 500)}`);
      return text ? JSON.parse(text) : undefined;
    }
  }

  async graphql(query: string, variables: Record<string, unknown> = {}, key = this.key): Promise<any> {
    const body = await this.call('POST', '/graphql', { query, variables }, key);
    if (body.errors) throw new Error(`GraphQL: ${JSON.stringify(body.errors).slice(0, 500)}`);
    return body.data;
  }
}

/** Runs `fn` over `items` with at most `limit` in flight. */
export async function pool<T>(items: T[], limit: number, fn: (item: T, i: number) => Promise<unknown>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        await fn(items[i]!, i);
      }
    }),
  );
}

export const ORG = 'bench';

/** The platform (admin) key of the gateways a benchmark starts, new for each run. */
export const ADMIN_KEY = `bench-admin-${Math.random().toString(36).slice(2)}-0123456789`;

/**
 * An embedded gateway in this process, on an ephemeral port: a new DATA_DIR (`vg-bench-<name>-…`),
 * ADMIN_KEY, warnings only, no maintenance sweep in the middle of a measurement (hourly), then `env`
 * (over `base`, which these defaults override: the process environment, say). `stop` also removes
 * the data dir.
 */
export async function embeddedGateway(
  name: string,
  env: Record<string, string | undefined> = {},
  base: Record<string, string | undefined> = {},
): Promise<{ app: App; url: string; dataDir: string; stop(): Promise<void> }> {
  const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), `vg-bench-${name}-`));
  const app = await createApp(
    loadConfig({
      ...base,
      NODE_ENV: 'production',
      LOG_LEVEL: 'warn',
      DATA_DIR: dataDir,
      ADMIN_API_KEY: ADMIN_KEY,
      HOST: '127.0.0.1',
      SWEEP_INTERVAL_MS: '3600000',
      ...env,
    }),
  );
  const url = await app.start(0);
  return {
    app,
    url,
    dataDir,
    stop: async () => {
      await app.stop();
      await fs.rm(dataDir, { recursive: true, force: true });
    },
  };
}

/** The nested read both read benchmarks send: a workspace's volumes with their entries, mounts and locks. */
export const NESTED = `query Nested($n: Int!) { workspaces(first: 1) { edges { node { id name
  volumes(first: $n) { edges { node { id name
    entries(first: 20) { edges { node { path sizeBytes version } } }
    mounts(first: 10) { edges { node { appId pathPattern accessLevel } } }
    locks { partition lockType holderAppId fencingToken expiresAt } } } } } } } }`;

export interface ReadSeed {
  orgKey: string;
  /** An app key whose app administers every nested volume whole: it sees what the org key sees. */
  appKey: string;
  workspaceId: string;
  volumeIds: string[];
  largeVolumeId: string;
  smallVolumeId: string;
}

/**
 * One org; workspace "nested" (created first) with `volumes` volumes of 20 small JSON/text entries,
 * 3 mounts (one a whole-volume admin mount for app `bench-app`) and 2 live locks each; workspace "listing" with a volume of 20 × 256 KiB text entries and
 * one of 20 small ones; an org key with read scopes, and an app key for `bench-app` with the same. Volumes are `manual` so no indexing runs later.
 */
export async function seedRead(api: Api, volumes: number): Promise<ReadSeed> {
  const ws = await api.call('POST', `/v1/orgs/${ORG}/workspaces`, { name: 'nested' });
  const listing = await api.call('POST', `/v1/orgs/${ORG}/workspaces`, { name: 'listing' });
  const base = (w: string) => `/v1/orgs/${ORG}/workspaces/${w}/volumes`;
  const volumeIds: string[] = [];
  for (let v = 0; v < volumes; v++) {
    const vol = await api.call('POST', base(ws.workspace_id), { name: `vol-${String(v).padStart(3, '0')}`, indexing_mode: 'manual' });
    volumeIds.push(vol.volume.volume_id);
  }
  await pool(volumeIds, 8, async (id) => {
    const vb = `${base(ws.workspace_id)}/${id}`;
    for (let e = 0; e < 20; e++) {
      const body =
        e % 2 === 0
          ? { content: { title: `note ${e}`, tags: ['a', 'b'], n: e, done: e % 3 === 0 } }
          : { content_text: `Entry ${e} of ${id}: a short line of text to read back.` };
      await api.call('PUT', `${vb}/entries/notes/e${String(e).padStart(2, '0')}.${e % 2 === 0 ? 'json' : 'md'}`, body);
    }
    for (let m = 0; m < 2; m++) {
      await api.call('POST', `${vb}/mounts`, { app_id: `app-${m}`, path_pattern: `/notes/${m}/**`, access_level: m ? 'write' : 'read' });
    }
    await api.call('POST', `${vb}/mounts`, { app_id: 'bench-app', path_pattern: '/**', access_level: 'admin' });
    for (let l = 0; l < 2; l++) await api.call('POST', `${vb}/locks`, { partition: `job-${l}`, app_id: `app-${l}`, ttl_seconds: 3600 });
  });
  const large = await api.call('POST', base(listing.workspace_id), { name: 'large', indexing_mode: 'manual' });
  const small = await api.call('POST', base(listing.workspace_id), { name: 'small', indexing_mode: 'manual' });
  const line = 'The quick brown fox jumps over the lazy dog; a line of filler text for a large entry.\n';
  const big = line.repeat(Math.ceil((256 * 1024) / line.length)).slice(0, 256 * 1024);
  for (const [vol, text] of [
    [large.volume.volume_id, big],
    [small.volume.volume_id, 'small'],
  ] as const) {
    await pool([...Array(20).keys()], 4, (i) =>
      api.call('PUT', `${base(listing.workspace_id)}/${vol}/entries/files/f${String(i).padStart(2, '0')}.txt`, {
        content_text: `${i} ${text}`,
      }),
    );
  }
  const key = await api.call('POST', `/v1/orgs/${ORG}/api-keys`, {
    name: 'bench-reader',
    scopes: ['workspaces:read', 'volumes:read', 'entries:read'],
  });
  const app = await api.call('POST', `/v1/orgs/${ORG}/api-keys`, {
    name: 'bench-app',
    scopes: ['workspaces:read', 'volumes:read', 'entries:read'],
    app_id: 'bench-app',
  });
  return {
    orgKey: key.api_key,
    appKey: app.api_key,
    workspaceId: ws.workspace_id,
    volumeIds,
    largeVolumeId: large.volume.volume_id,
    smallVolumeId: small.volume.volume_id,
  };
}

/**
 * Counts the SQL statements one request makes: the delta of pg_stat_statements `calls` for the
 * database, around the request, with nothing else running on it. Needs
 * shared_preload_libraries = 'pg_stat_statements' (bench/README.md); `adminUrl` is a database other
 * than the measured one (the counting queries are not counted).
 */
export class StatementCounter {
  private constructor(
    private readonly db: pg.Client,
    private readonly dbName: string,
  ) {}

  static async open(adminUrl: string, dbName: string): Promise<StatementCounter> {
    const db = new pg.Client({ connectionString: adminUrl });
    await db.connect();
    const { rows } = await db.query(`SELECT current_setting('shared_preload_libraries') AS libs`);
    if (!String(rows[0].libs).includes('pg_stat_statements')) {
      await db.end();
      throw new Error(
        "pg_stat_statements is not preloaded: set shared_preload_libraries = 'pg_stat_statements' and restart Postgres (bench/README.md)",
      );
    }
    await db.query('CREATE EXTENSION IF NOT EXISTS pg_stat_statements');
    return new StatementCounter(db, dbName);
  }

  private async snapshot(): Promise<Map<string, { calls: number; query: string }>> {
    const { rows } = await this.db.query(
      `SELECT queryid::text AS id, calls::float8 AS calls, query FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = $1`,
      [this.dbName],
    );
    return new Map(rows.map((r) => [r.id as string, { calls: r.calls as number, query: r.query as string }]));
  }

  /** Statements `fn` caused (and the busiest query shapes among them). */
  async count(fn: () => Promise<unknown>): Promise<{ total: number; top: { calls: number; query: string }[] }> {
    const before = await this.snapshot();
    await fn();
    await new Promise((r) => setTimeout(r, 30)); // stats are reported as each statement ends: a margin
    const after = await this.snapshot();
    const deltas = [...after].map(([id, s]) => ({ calls: s.calls - (before.get(id)?.calls ?? 0), query: s.query }));
    const changed = deltas.filter((d) => d.calls > 0).sort((a, b) => b.calls - a.calls);
    return { total: changed.reduce((n, d) => n + d.calls, 0), top: changed.slice(0, 8) };
  }

  close(): Promise<void> {
    return this.db.end();
  }
}
